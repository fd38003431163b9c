-- Web callers read only their own rows, through indexes of their own rows: the feed's per-identity indexes (built concurrently), no direct read of the feed's table, no column naming another identity, and the settings max_open_chats_per_user and first_response_target.
-- depends: 0015.distribution_keys
-- transactional: false

-- The feed, read per identity (sql/600_feed.sql, changes_since): a visitor
-- through its own chats' rows, an operator through the rows of the chats it
-- holds or held (operator_id: who may see the change) and the queue's
-- comings and goings. Each in feed order, so a poll reads only the caller's
-- changes after its cursor. Built concurrently: writers keep flowing. An
-- index of these names left invalid by an interrupted run is dropped first.
-- squawk-ignore ban-concurrent-index-creation-in-transaction, require-timeout-settings
drop index concurrently if exists chatdesk.changes_real_user_idx;
-- squawk-ignore ban-concurrent-index-creation-in-transaction, require-timeout-settings
create index concurrently if not exists changes_real_user_idx on chatdesk.changes (real_user_id, tx, id);
-- squawk-ignore ban-concurrent-index-creation-in-transaction, require-timeout-settings
drop index concurrently if exists chatdesk.changes_operator_idx;
-- squawk-ignore ban-concurrent-index-creation-in-transaction, require-timeout-settings
create index concurrently if not exists changes_operator_idx on chatdesk.changes (operator_id, tx, id)
    where operator_id is not null;
-- squawk-ignore ban-concurrent-index-creation-in-transaction, require-timeout-settings
drop index concurrently if exists chatdesk.changes_queue_idx;
-- squawk-ignore ban-concurrent-index-creation-in-transaction, require-timeout-settings
create index concurrently if not exists changes_queue_idx on chatdesk.changes (tx, id)
    where kind = 'chat' and (chat_state = 'waiting_assignment' or from_state = 'waiting_assignment');

-- The feed's table names every chat's user and operator: web callers read it
-- only through changes_since(), which shows each caller its own changes and
-- none of those columns.
revoke select on chatdesk.changes from chatdesk_web;

-- Columns that name other identities are not granted to web callers: a
-- visitor sees nothing of an operator but the one assigned to its chat now
-- (the view chat_operators, sql/310_views.sql), an operator nothing of the
-- colleagues who held a chat before it, nor a visitor's login.
revoke select on chatdesk.messages, chatdesk.chat_events, chatdesk.real_users from chatdesk_web;
grant select (id, chat_id, sender_type, body, client_message_id, seen_message_id, created_at, reply_started_at)
    on chatdesk.messages to chatdesk_web;
grant select (id, chat_id, from_state, to_state, reason, created_at) on chatdesk.chat_events to chatdesk_web;
grant select (id, display_name, created_at) on chatdesk.real_users to chatdesk_web;

-- How many chats that are not closed one real user may have (start_chat
-- refuses more with CD007), and the first-response goal of the reports.
insert into chatdesk.settings (key, value) values
    ('max_open_chats_per_user', '3'),
    ('first_response_target', '5 minutes')
on conflict (key) do nothing;
