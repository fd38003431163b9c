-- The change feed: one row per new message and per chat state change, read in the order of the writing transactions by changes_since, kept for feed_retention.
-- depends: 0010.runner_bookkeeping

-- Never queue behind live traffic for long; a slow step fails and rolls back.
set local lock_timeout = '5s';
set local statement_timeout = '10min';

-- Per-chat sequence of changes, bumped under the chat's row lock, so a
-- client that sees n + 2 after n knows it missed one. A constant default:
-- catalog-only, no table rewrite.
alter table chatdesk.chats add column change_seq int not null default 0;
-- The feed position (tx) of the chat's newest change: the next change of the
-- chat is placed at or after it (see sql/600_feed.sql).
alter table chatdesk.chats add column change_tx xid8 not null default '0';

create table chatdesk.changes (
    tx           xid8 not null,          -- position: the writing transaction, or the chat's previous change's if later
    id           bigint generated always as identity,          -- order within it
    chat_id      uuid not null,
    chat_seq     int not null,          -- the chat's change_seq after this change
    kind         text not null
        constraint changes_kind_check check (kind in ('message', 'chat')),
    message_id   bigint,                -- for 'message'
    chat_state   text not null,         -- the chat's state after the change
    from_state   text,                  -- for 'chat': the state before (null: created)
    operator_id  uuid,                  -- the assignee after the change (who may see it)
    real_user_id uuid not null,         -- the chat's user (who may see it)
    created_at   timestamptz not null,
    primary key (tx, id, chat_id)  -- chat_id: the distribution column, should the feed be sharded (docs/scaling.md)
);
-- Pruning by age.
create index changes_created_idx on chatdesk.changes (created_at);

-- The newest position pruned: a cursor before it is refused (CD006).
create table chatdesk.changes_horizon (
    singleton boolean primary key default true constraint changes_horizon_singleton check (singleton),
    tx        xid8 not null default '0',
    id        bigint not null default 0
);
insert into chatdesk.changes_horizon default values;

-- When the last wake-up (NOTIFY) was sent: writers send one at most every
-- 50 ms instead of one per transaction (NOTIFY serialises commits).
create table chatdesk.feed_wakeup (
    singleton boolean primary key default true constraint feed_wakeup_singleton check (singleton),
    sent_at   timestamptz not null default '-infinity'
);
insert into chatdesk.feed_wakeup default values;

insert into chatdesk.settings (key, value) values ('feed_retention', '7 days') on conflict (key) do nothing;

alter table chatdesk.changes owner to chatdesk_owner;
alter table chatdesk.changes_horizon owner to chatdesk_owner;
alter table chatdesk.feed_wakeup owner to chatdesk_owner;
grant select on chatdesk.changes to chatdesk_app, chatdesk_web;
alter table chatdesk.changes enable row level security;

comment on table chatdesk.changes is 'The change feed: read it with changes_since(); a NOTIFY on channel chatdesk wakes readers.';
comment on column chatdesk.chats.change_seq is 'How many changes (messages, state changes) the chat has had: the chat_seq of its newest change.';
