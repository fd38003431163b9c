-- The queue as a table of its own: claim_next_chat pops it with SKIP LOCKED and then locks one chat, so no statement locks rows of many chats (the shape a sharded chats table needs; docs/scaling.md).
-- depends: 0013.report_indexes

-- Never queue behind live traffic for long; a slow step fails and rolls back.
set local lock_timeout = '5s';
set local statement_timeout = '10min';

-- One row per chat in waiting_assignment, kept by the chat state guard in
-- the same transaction as the chat's change. No foreign key to chats: on a
-- sharded database this table stays on the coordinator, and a local table
-- cannot reference a distributed one.
create table chatdesk.queue (
    chat_id   uuid primary key,
    queued_at timestamptz not null
);
create index queue_order_idx on chatdesk.queue (queued_at, chat_id);

-- What is queued now. Chats that join or leave the queue between this
-- commit and the reload of sql/ (the old triggers know nothing of this
-- table) are put right by sync_queue(), which chatdesk migrate runs after
-- every reload, and claim_next_chat skips entries whose chat has moved on.
insert into chatdesk.queue (chat_id, queued_at)
select id, queued_at from chatdesk.chats where chat_state = 'waiting_assignment';

alter table chatdesk.queue owner to chatdesk_owner;
comment on table chatdesk.queue is 'The chats waiting for an operator, in claim order (queued_at, chat_id); kept by the chat triggers.';
