-- ---------------------------------------------------------------------------
-- Settings: validated on write, read through small functions.
-- ---------------------------------------------------------------------------
create or replace function chatdesk.settings__check()
returns trigger
language plpgsql
as $$
begin
    -- Refuses a stats_time_zone that is not an IANA zone name, so the rollup
    -- can never meet one (a POSIX string like 'UTC+3' would silently flip signs).
    if new.key = 'stats_time_zone'
       and not exists (select 1 from pg_catalog.pg_timezone_names where name = new.value) then
        raise exception using
            errcode = '23514',
            message = format('chatdesk: stats_time_zone %L is not an IANA time zone name', new.value),
            hint = 'Use a name such as UTC, Europe/Berlin or America/New_York.';
    end if;
    -- feed_retention: how long change-feed rows are kept, 1 minute to 365 days.
    if new.key = 'feed_retention'
       and (new.value !~ '^[0-9a-z :.-]+$' or not chatdesk.is_interval_between(new.value, '1 minute', '365 days')) then
        raise exception using
            errcode = '23514',
            message = format('chatdesk: feed_retention %L must be an interval from 1 minute to 365 days', new.value);
    end if;
    -- max_open_chats_per_user: how many chats that are not closed one real
    -- user may have (start_chat and a reopening message refuse more: CD007).
    if new.key = 'max_open_chats_per_user' and (new.value !~ '^[0-9]{1,3}$' or new.value::int not between 1 and 100) then
        raise exception using
            errcode = '23514',
            message = format('chatdesk: max_open_chats_per_user %L must be a whole number from 1 to 100', new.value);
    end if;
    -- first_response_target: the reports' first-response goal, 10 seconds to 24 hours.
    if new.key = 'first_response_target'
       and (new.value !~ '^[0-9a-z :.-]+$' or not chatdesk.is_interval_between(new.value, '10 seconds', '24 hours')) then
        raise exception using
            errcode = '23514',
            message = format('chatdesk: first_response_target %L must be an interval from 10 seconds to 24 hours', new.value);
    end if;
    return new;
end;
$$;

create or replace function chatdesk.max_open_chats_per_user()
returns int
language sql
stable
as $$
    select coalesce((select value::int from chatdesk.settings where key = 'max_open_chats_per_user'), 3);
$$;

comment on function chatdesk.max_open_chats_per_user() is
    'How many chats that are not closed one real user may have (settings.max_open_chats_per_user, default 3).';

create or replace function chatdesk.is_interval_between(p_text text, p_low interval, p_high interval)
returns boolean
language plpgsql
immutable
as $$
begin
    -- Whether p_text is an interval from p_low to p_high (false when it is no interval at all).
    return p_text::interval between p_low and p_high;
exception when others then
    return false;
end;
$$;

create or replace function chatdesk.stats_time_zone()
returns text
language sql
stable
as $$
    select coalesce((select value from chatdesk.settings where key = 'stats_time_zone'), 'UTC');
$$;

comment on function chatdesk.stats_time_zone() is
    'The IANA zone whose calendar days the daily stats count (settings.stats_time_zone, default UTC).';
