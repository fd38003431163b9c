-- Reports: conversations (first queueing to close), business hours and holidays, per-operator time metrics with histograms, hourly load, and queue-depth samples.
-- depends: 0011.change_feed

-- Never queue behind live traffic for long; a slow step fails and rolls back.
set local lock_timeout = '5s';
set local statement_timeout = '10min';

-- Lock order under live traffic: chats first (its ALTERs), then the foreign
-- keys' SHARE ROW EXCLUSIVE on operators, the order in which the message and
-- claim paths lock them. The other way round deadlocks with a message that
-- holds its chat and waits for its operator's row.

-- The chat's open conversation, and whether it still waits for its first
-- answer: read from the chat row the message trigger has locked anyway, so a
-- message costs one boolean test. Nullable / constant default: catalog-only.
alter table chatdesk.chats add column conversation_id bigint;
alter table chatdesk.chats add column awaiting_first_response boolean not null default false;

alter table chatdesk.operator_daily_stats add column chats_closed int not null default 0;
alter table chatdesk.operator_daily_stats add column chats_released int not null default 0;
alter table chatdesk.operator_daily_stats add column chats_idle_released int not null default 0;

-- A conversation: a chat from its first queueing (its first real-user
-- message, or the first after a close) until it is closed. First response and
-- resolution times are measured on it. Written by the chat triggers.
create table chatdesk.conversations (
    id                         bigint generated always as identity,
    chat_id                    uuid not null references chatdesk.chats (id),
    queued_at                  timestamptz not null,   -- the conversation begins
    first_response_at          timestamptz,            -- the first operator message in it
    first_response_operator_id uuid references chatdesk.operators (id),
    closed_at                  timestamptz,
    closed_by_operator_id      uuid references chatdesk.operators (id),  -- who had it last
    primary key (chat_id, id)  -- led by chat_id: its chat's shard, should chats be sharded (docs/scaling.md)
);
create index conversations_first_response_idx on chatdesk.conversations (first_response_at)
    where first_response_at is not null;
create index conversations_closed_idx on chatdesk.conversations (closed_at)
    where closed_at is not null;

-- Business hours: windows per ISO weekday (1 Monday .. 7 Sunday) in
-- stats_time_zone. A window whose closing time is at or before its opening
-- time ends on the next day. None at all: no business-time figures.
create table chatdesk.business_hours (
    weekday int not null constraint business_hours_weekday_check check (weekday between 1 and 7),
    opens   time not null,
    closes  time not null,
    primary key (weekday, opens)
);

-- Days without business hours (the windows that open on them do not count).
create table chatdesk.holidays (
    day  date primary key,
    name text
);

-- Time metrics per operator and day, on the wall clock and in business time:
-- how many, avg, p50, p90, and counts per bucket of chatdesk.time_buckets().
create table chatdesk.operator_daily_times (
    operator_id uuid not null references chatdesk.operators (id),
    stat_date   date not null,
    metric      text not null
        constraint operator_daily_times_metric_check check (metric in ('reply', 'first_response', 'resolution')),
    clock       text not null
        constraint operator_daily_times_clock_check check (clock in ('wall', 'business')),
    n           int not null,
    avg_seconds numeric,
    p50_seconds numeric,
    p90_seconds numeric,
    histogram   int[] not null,
    primary key (operator_id, stat_date, metric, clock)
);
create index operator_daily_times_date_idx on chatdesk.operator_daily_times (stat_date);

-- Load per hour (the hour's start; hours of a day in stats_time_zone), written by the rollup.
create table chatdesk.hourly_load (
    hour              timestamptz primary key,
    messages          int not null,
    real_user_messages int not null,
    operator_messages int not null,
    queue_entries     int not null,   -- chats that joined the queue (not returns to it)
    computed_at       timestamptz not null
);

-- Queue depth over time, sampled by sample_queue() (chatdesk schedule, every minute).
create table chatdesk.queue_samples (
    sampled_at          timestamptz primary key,
    waiting             int not null,
    assigned            int not null,
    oldest_wait_seconds numeric
);

alter table chatdesk.conversations owner to chatdesk_owner;
alter table chatdesk.business_hours owner to chatdesk_owner;
alter table chatdesk.holidays owner to chatdesk_owner;
alter table chatdesk.operator_daily_times owner to chatdesk_owner;
alter table chatdesk.hourly_load owner to chatdesk_owner;
alter table chatdesk.queue_samples owner to chatdesk_owner;

grant select on chatdesk.conversations, chatdesk.business_hours, chatdesk.holidays, chatdesk.operator_daily_times,
    chatdesk.hourly_load, chatdesk.queue_samples to chatdesk_app, chatdesk_reporting;
grant select on chatdesk.operator_daily_times to chatdesk_web;
alter table chatdesk.conversations enable row level security;
alter table chatdesk.operator_daily_times enable row level security;

comment on table chatdesk.conversations is 'A chat from its first queueing until it is closed: first response and resolution times.';
comment on table chatdesk.business_hours is 'Business-hours windows per ISO weekday in stats_time_zone; closes <= opens ends the next day.';
comment on table chatdesk.holidays is 'Days whose business-hours windows do not count.';
comment on table chatdesk.operator_daily_times is 'Reply, first-response and resolution times per operator and day, wall clock and business time.';
comment on table chatdesk.hourly_load is 'Messages and new queue entries per hour, written by the rollup.';
comment on table chatdesk.queue_samples is 'Queue depth over time, one row per sample_queue() call.';
