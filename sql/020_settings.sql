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
    return new;
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
