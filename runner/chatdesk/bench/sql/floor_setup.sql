-- The contract's floor (#25): the writes the contract requires of a message
-- and of a claim, on minimal tables with no function, trigger or check, so
-- that chatdesk's cost is measured against what its promises must write
-- (the chat's row locked and counted, the message, one feed row; for a
-- claim also its event and the operator's load), not against a bare INSERT.
create table bench.floor_chats (
    id uuid primary key, n int not null unique, operator_id uuid,
    message_count int not null default 0, last_message_at timestamptz, change_seq int not null default 0
) with (fillfactor = 80);
create table bench.floor_operators (
    id uuid primary key, total_messages bigint not null default 0, assigned_chats int not null default 0
) with (fillfactor = 80);
create table bench.floor_changes (
    id bigint generated always as identity primary key, tx xid8 not null, chat_id uuid not null,
    message_id bigint, kind text not null, chat_seq int not null, created_at timestamptz not null default now());
create index on bench.floor_changes (tx, id);
create table bench.floor_events (
    id bigint generated always as identity primary key, chat_id uuid not null, from_state text, to_state text,
    operator_id uuid, created_at timestamptz not null default now());
