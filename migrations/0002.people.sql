-- Operators (who answer) and real users (who write in).
-- depends: 0001.schema

-- Never queue behind live traffic for long; a slow step fails and rolls back.
set local lock_timeout = '5s';
set local statement_timeout = '10min';

create table chatdesk.operators (
    id                   uuid primary key default gen_random_uuid(),
    name                 text not null
        constraint operators_name_check check (length(btrim(name)) between 1 and 200),
    is_active            boolean not null default true,
    max_concurrent_chats int not null default 1
        constraint operators_max_concurrent_chats_check check (max_concurrent_chats between 1 and 1000),
    total_messages       bigint not null default 0,          -- maintained by triggers on messages
    assigned_chats       int not null default 0              -- maintained by the chat state guard
        constraint operators_assigned_chats_check check (assigned_chats >= 0),
    last_seen_at         timestamptz,                        -- set by heartbeat()
    last_active_at       timestamptz,                        -- latest of heartbeat, own message, claim
    created_at           timestamptz not null default now()
);

create table chatdesk.real_users (
    id           uuid primary key default gen_random_uuid(),
    display_name text not null
        constraint real_users_display_name_check check (length(btrim(display_name)) between 1 and 200),
    created_at   timestamptz not null default now()
);
