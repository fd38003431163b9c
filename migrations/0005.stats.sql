-- Daily operator stats, written by update_operator_stats / rollup_operator_stats.
-- depends: 0004.messages

-- Never queue behind live traffic for long; a slow step fails and rolls back.
set local lock_timeout = '5s';
set local statement_timeout = '10min';

create table chatdesk.operator_daily_stats (
    operator_id            uuid not null references chatdesk.operators (id),
    stat_date              date not null,
    messages_sent          int not null default 0,
    chats_handled          int not null default 0,
    reply_time_avg_seconds numeric,   -- null when no reply that day
    reply_time_p50_seconds numeric,
    reply_time_p90_seconds numeric,
    replies                int not null default 0,  -- how many reply times the figures cover
    computed_at            timestamptz not null default now(),
    primary key (operator_id, stat_date)
);

create index operator_daily_stats_date_idx on chatdesk.operator_daily_stats (stat_date);
