\set o random(1, {operators})
with p as (select id from bench.floor_queue
            where chat_state = 'waiting_assignment'
            order by queued_at, id
            limit 1
              for update skip locked),
     c as (update bench.floor_queue q
              set chat_state = 'assigned', assigned_at = now(), change_seq = q.change_seq + 1,
                  assigned_operator_id = (select operator_id from bench.claimers where n = :o)
             from p where q.id = p.id
           returning q.id, q.assigned_operator_id, q.change_seq),
     e as (insert into bench.floor_events (chat_id, from_state, to_state, operator_id)
           select id, 'waiting_assignment', 'assigned', assigned_operator_id from c),
     o as (update bench.floor_operators set assigned_chats = assigned_chats + 1
            where id = (select assigned_operator_id from c))
insert into bench.floor_changes (tx, chat_id, kind, chat_seq)
select pg_current_xact_id(), id, 'chat', change_seq from c;
