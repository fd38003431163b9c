-- Roles: chatdesk_owner owns everything, chatdesk_app is what applications log in as (through membership), chatdesk_reporting reads stats.
-- depends: 0005.stats
--
-- Roles are cluster-wide, so they are created only when missing. Later
-- migrations that create objects end with "alter ... owner to chatdesk_owner".
-- Privileges on functions are granted by sql/950_privileges.sql on every
-- migrate, because functions are re-created there.

-- Never queue behind live traffic for long; a slow step fails and rolls back.
set local lock_timeout = '5s';
set local statement_timeout = '10min';

do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'chatdesk_owner') then
        create role chatdesk_owner nologin;
    end if;
    if not exists (select 1 from pg_roles where rolname = 'chatdesk_app') then
        create role chatdesk_app nologin;
    end if;
    if not exists (select 1 from pg_roles where rolname = 'chatdesk_reporting') then
        create role chatdesk_reporting nologin;
    end if;
end
$$;

-- The migrating user must be able to act as the owner (sql/ is loaded as it).
grant chatdesk_owner to current_user;

alter schema chatdesk owner to chatdesk_owner;
alter table chatdesk.settings owner to chatdesk_owner;
alter table chatdesk.operators owner to chatdesk_owner;
alter table chatdesk.real_users owner to chatdesk_owner;
alter table chatdesk.state_transitions owner to chatdesk_owner;
alter table chatdesk.chats owner to chatdesk_owner;
alter table chatdesk.chat_events owner to chatdesk_owner;
alter table chatdesk.messages owner to chatdesk_owner;
alter table chatdesk.operator_daily_stats owner to chatdesk_owner;
alter sequence chatdesk.messages_id_seq owner to chatdesk_owner;

revoke all on schema chatdesk from public;
grant usage on schema chatdesk to chatdesk_app, chatdesk_reporting;

-- Applications read everything (row-level security narrows operator sessions)
-- and may insert messages, chats and users directly: the triggers enforce
-- every rule. No UPDATE, no DELETE: state, counters and stats change only
-- through chatdesk's functions.
grant select on all tables in schema chatdesk to chatdesk_app;
grant insert on chatdesk.messages, chatdesk.chats, chatdesk.real_users to chatdesk_app;

-- Reporting reads the stats and who the operators are, nothing else.
grant select on chatdesk.operator_daily_stats, chatdesk.operators, chatdesk.settings to chatdesk_reporting;

-- Operator-scoped sessions (chatdesk.operator_id set) see only their own chats.
alter table chatdesk.chats enable row level security;
alter table chatdesk.messages enable row level security;
alter table chatdesk.real_users enable row level security;
alter table chatdesk.chat_events enable row level security;
