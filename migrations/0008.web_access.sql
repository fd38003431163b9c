-- Web clients (PostgREST / Supabase): the chatdesk_web role, and auth_user_id linking operators and real users to the JWT's sub.
-- depends: 0007.retire_and_describe

-- Never queue behind live traffic for long; a slow step fails and rolls back.
set local lock_timeout = '5s';
set local statement_timeout = '10min';

do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'chatdesk_web') then
        create role chatdesk_web nologin;
    end if;
end
$$;

-- Nullable, no default: a catalog-only change. The unique indexes are built
-- on the people tables, which stay small next to chats and messages.
alter table chatdesk.operators add column auth_user_id uuid;
alter table chatdesk.real_users add column auth_user_id uuid;
-- squawk-ignore require-concurrent-index-creation
create unique index operators_auth_user_id_idx on chatdesk.operators (auth_user_id);
-- squawk-ignore require-concurrent-index-creation
create unique index real_users_auth_user_id_idx on chatdesk.real_users (auth_user_id);

comment on column chatdesk.operators.auth_user_id is 'The web login (the JWT''s sub) that acts as this operator through chatdesk_web; null: none.';
comment on column chatdesk.real_users.auth_user_id is 'The web login (the JWT''s sub) that acts as this real user through chatdesk_web; null: none.';

-- chatdesk_web reads through row-level security only (sql/940_policies.sql)
-- and writes only through the API functions: no INSERT, UPDATE or DELETE.
grant usage on schema chatdesk to chatdesk_web;
grant select on chatdesk.operators, chatdesk.real_users, chatdesk.chats, chatdesk.messages,
                chatdesk.chat_events, chatdesk.operator_daily_stats to chatdesk_web;

-- Reporting: stats and counts, never message bodies or who the visitors are.
grant select on chatdesk.chats, chatdesk.chat_events, chatdesk.state_transitions to chatdesk_reporting;

-- Every table an application role can reach is under row-level security.
alter table chatdesk.operators enable row level security;
alter table chatdesk.operator_daily_stats enable row level security;

-- Replaced in sql/: the session-level operator scope (chatdesk.operator_id)
-- is no longer read; act_as_operator() narrows one transaction instead.
-- create_operator and create_real_user gained p_auth_user_id: the old
-- signatures would make every call ambiguous.
-- squawk-ignore ban-drop-function
drop function if exists chatdesk.require_scope(uuid, text);
-- squawk-ignore ban-drop-function
drop function if exists chatdesk.create_operator(text, int);
-- squawk-ignore ban-drop-function
drop function if exists chatdesk.create_real_user(text);
