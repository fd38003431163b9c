-- Drops the objects sql/ no longer defines (create or replace cannot remove them), and describes every table and column of the contract.
-- depends: 0006.roles

-- Never queue behind live traffic for long; a slow step fails and rolls back.
set local lock_timeout = '5s';
set local statement_timeout = '10min';

-- Internal helpers, not part of the contract: no client calls them.
-- Retired before 0.1.0; sql/900_triggers.sql used to drop them on every reload.
drop trigger if exists chats_500_log_state on chatdesk.chats;
-- squawk-ignore ban-drop-function
drop function if exists chatdesk.chats__log_event();
-- squawk-ignore ban-drop-function
drop function if exists chatdesk.lock_operator_for_claim(uuid, uuid);
-- Renamed in 0.2.0: check_claim and write_operator_stats replace them.
-- squawk-ignore ban-drop-function
drop function if exists chatdesk.refuse_claim(chatdesk.operators, uuid, uuid, int);
-- squawk-ignore ban-drop-function
drop function if exists chatdesk.compute_operator_stats(date, uuid);

comment on schema chatdesk is 'chatdesk: the database core of a live-chat platform (docs/contract.md).';

comment on table chatdesk.operators is 'People who answer chats. Counters are maintained by triggers; write through create_operator / set_operator_active / heartbeat.';
comment on column chatdesk.operators.max_concurrent_chats is 'How many chats the operator may hold at once (1 to 1000); claims beyond it are refused (CD004).';
comment on column chatdesk.operators.total_messages is 'Number of messages credited to the operator (handled_by_operator_id); exact, maintained by triggers.';
comment on column chatdesk.operators.assigned_chats is 'Chats assigned to the operator now; exact, maintained by the chat state guard.';
comment on column chatdesk.operators.last_seen_at is 'Last heartbeat().';
comment on column chatdesk.operators.last_active_at is 'Latest of heartbeat, own message and claim; idle release measures from it.';

comment on table chatdesk.real_users is 'People who write in (visitors).';

comment on table chatdesk.chats is 'Conversations between a real user and operators. chat_state follows chatdesk.state_transitions; write through the API functions.';
comment on column chatdesk.chats.chat_state is 'waiting_real_user_reply (new, or answered), waiting_assignment (queued), assigned (one operator owns it), closed.';
comment on column chatdesk.chats.state_reason is 'The event that put the chat in chat_state; a change must name its event.';
comment on column chatdesk.chats.assigned_operator_id is 'The operator who owns the chat; null unless assigned.';
comment on column chatdesk.chats.message_count is 'Number of the chat''s messages; exact, maintained by triggers.';
comment on column chatdesk.chats.last_message_at is 'created_at of the chat''s newest message; maintained by triggers.';
comment on column chatdesk.chats.queued_at is 'When the chat last entered the queue; claims take the oldest first, a released chat keeps it.';

comment on table chatdesk.messages is 'Messages of chats. Every insert, through the API or direct, meets the same rules (the messages_100_accept trigger).';
comment on column chatdesk.messages.id is 'Increasing; within a chat, id order is commit order.';
comment on column chatdesk.messages.sender_type is 'real_user, operator or system.';
comment on column chatdesk.messages.handled_by_operator_id is 'The operator who wrote (and is credited with) an operator message.';
comment on column chatdesk.messages.client_message_id is 'The sender''s idempotency key: a retry with the same key returns the first message.';
comment on column chatdesk.messages.seen_message_id is 'For an operator message: the newest message the operator had seen (the reply race).';
comment on column chatdesk.messages.reply_started_at is 'For an operator message that answers a run of real-user messages: when the run began.';

comment on table chatdesk.chat_events is 'One row per chat state change (and one for the chat''s creation); history, never changed.';
comment on table chatdesk.state_transitions is 'The chat state machine: (event, from_state) leads to to_state. Anything else is refused (CD002).';
comment on table chatdesk.operator_daily_stats is 'Per operator and day (in stats_time_zone): messages, chats and reply times; written by the rollup.';
comment on column chatdesk.operator_daily_stats.replies is 'How many reply times the avg/p50/p90 figures cover.';
