\set n random(1, {chats})
with c as (update bench.floor_chats set message_count = message_count + 1, last_message_at = now(),
                                        change_seq = change_seq + 1
            where n = :n returning id, change_seq),
     m as (insert into bench.bare_messages (id, chat_id, sender_type, body, created_at)
           select nextval('bench.bare_messages_seq'), id, 'real_user', 'hello, is anyone there?', now() from c
           returning id, chat_id)
insert into bench.floor_changes (tx, chat_id, message_id, kind, chat_seq)
select pg_current_xact_id(), m.chat_id, m.id, 'message', c.change_seq from m, c;
