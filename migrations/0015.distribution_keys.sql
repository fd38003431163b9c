-- Every key of the chat-owned tables includes chat_id: messages and chat_events get primary keys (chat_id, id), built concurrently, so the tables can be distributed by chat (docs/scaling.md). No function changes its signature.
-- depends: 0014.claim_queue
-- transactional: false

-- The unique indexes are built concurrently (traffic keeps flowing); each
-- key is then swapped in one short transaction that waits at most 5 s for
-- its lock (SET LOCAL inside the DO block: nothing stays behind on a pooled
-- connection). They replace the (chat_id, id) indexes of the same columns.
-- An index of these names is left only by an interrupted run (a swapped one
-- takes the key's name): dropped first, so a rerun starts clean.
-- squawk-ignore ban-concurrent-index-creation-in-transaction, require-timeout-settings
drop index concurrently if exists chatdesk.messages_chat_id_id_key;
-- squawk-ignore ban-concurrent-index-creation-in-transaction, require-timeout-settings
create unique index concurrently if not exists messages_chat_id_id_key on chatdesk.messages (chat_id, id);
-- squawk-ignore ban-concurrent-index-creation-in-transaction, require-timeout-settings
drop index concurrently if exists chatdesk.chat_events_chat_id_id_key;
-- squawk-ignore ban-concurrent-index-creation-in-transaction, require-timeout-settings
create unique index concurrently if not exists chat_events_chat_id_id_key on chatdesk.chat_events (chat_id, id);

do $$
begin
    set local lock_timeout = '5s';
    if to_regclass('chatdesk.messages_chat_id_id_key') is not null then
        alter table chatdesk.messages drop constraint messages_pkey,
            add constraint messages_pkey primary key using index messages_chat_id_id_key;
    end if;
end $$;

do $$
begin
    set local lock_timeout = '5s';
    if to_regclass('chatdesk.chat_events_chat_id_id_key') is not null then
        alter table chatdesk.chat_events drop constraint chat_events_pkey,
            add constraint chat_events_pkey primary key using index chat_events_chat_id_id_key;
    end if;
end $$;

-- squawk-ignore ban-concurrent-index-creation-in-transaction, require-timeout-settings
drop index concurrently if exists chatdesk.messages_chat_idx;
-- squawk-ignore ban-concurrent-index-creation-in-transaction, require-timeout-settings
drop index concurrently if exists chatdesk.chat_events_chat_idx;
