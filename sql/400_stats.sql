-- ---------------------------------------------------------------------------
-- Daily operator stats. Reply times are worked out when the operator's
-- message is written (messages.reply_started_at), so a day's rollup only
-- aggregates that day's operator messages, through messages_operator_day_idx,
-- whatever the size of history or the length of the chats.
-- ---------------------------------------------------------------------------
create or replace function chatdesk.write_operator_stats(p_date date, p_operator_id uuid default null)
returns int
language plpgsql
as $$
declare
    v_tz    text := chatdesk.stats_time_zone();
    v_from  timestamptz;
    v_to    timestamptz;
    v_count int;
begin
    -- Upserts operator_daily_stats for p_date (a calendar day in
    -- stats_time_zone: 23 or 25 hours on a daylight-saving change) in one
    -- set-based statement. With p_operator_id null: every active operator,
    -- every operator with messages, closes, releases or idle releases that
    -- day, and every operator who already has a row for it; otherwise that
    -- one operator. Also that day's operator_daily_times (410_reports.sql)
    -- and, for every operator, its hourly_load. Returns stats rows written.
    if p_date is null or not isfinite(p_date) or p_date < date '2000-01-01' or p_date > chatdesk.stats_today() + 1 then
        raise exception using errcode = '23514',
            message = format('chatdesk: stats date must be a day from 2000-01-01 to tomorrow in %s, not %s',
                             v_tz, coalesce(p_date::text, 'null'));
    end if;
    v_from := p_date::timestamp at time zone v_tz;
    v_to := (p_date + 1)::timestamp at time zone v_tz;

    perform chatdesk.write_operator_times(p_date, p_operator_id, v_from, v_to);

    -- EXECUTE plans with the actual values, so "$3 is null" folds away and
    -- each variant gets its own index (day range, or operator + day range).
    execute $sql$
        with per_operator as (
            select m.handled_by_operator_id as operator_id,
                   count(*)::int as messages_sent,
                   count(distinct m.chat_id)::int as chats_handled
              from chatdesk.messages m
             where m.handled_by_operator_id is not null
               and m.created_at >= $1 and m.created_at < $2
               and ($3::uuid is null or m.handled_by_operator_id = $3)
             group by 1
        ), replies as (
            -- reply times, as write_operator_times (just run) worked them out
            select operator_id, n as replies, avg_seconds as avg_s, p50_seconds as p50_s, p90_seconds as p90_s
              from chatdesk.operator_daily_times
             where stat_date = $4 and metric = 'reply' and clock = 'wall'
               and ($3::uuid is null or operator_id = $3)
        ), moves as (
            -- conversations closed (credited to whoever had the chat last),
            -- chats handed back (release) and taken back by idle release
            select operator_id, count(*) filter (where what = 'close')::int as closed,
                   count(*) filter (where what = 'release')::int as released,
                   count(*) filter (where what = 'idle')::int as idle_released
              from (select c.closed_by_operator_id as operator_id, 'close' as what
                      from chatdesk.conversations c
                     where c.closed_at >= $1 and c.closed_at < $2 and c.closed_by_operator_id is not null
                    union all
                    select e.operator_id, e.reason
                      from chatdesk.chat_events e
                     where e.created_at >= $1 and e.created_at < $2 and e.reason in ('release', 'idle')) x
             where ($3::uuid is null or operator_id = $3)
             group by operator_id
        ), targets as (
            select o.id as operator_id
              from chatdesk.operators o
             where case when $3::uuid is null
                        then o.is_active
                             or exists (select 1 from per_operator p where p.operator_id = o.id)
                             or exists (select 1 from moves v where v.operator_id = o.id)
                             or exists (select 1 from chatdesk.operator_daily_stats s
                                         where s.operator_id = o.id and s.stat_date = $4)
                        else o.id = $3 end
        ), written as (
            insert into chatdesk.operator_daily_stats as s
                   (operator_id, stat_date, messages_sent, chats_handled, replies,
                    reply_time_avg_seconds, reply_time_p50_seconds, reply_time_p90_seconds,
                    chats_closed, chats_released, chats_idle_released, computed_at)
            select t.operator_id, $4, coalesce(p.messages_sent, 0), coalesce(p.chats_handled, 0),
                   coalesce(r.replies, 0), r.avg_s, r.p50_s, r.p90_s,
                   coalesce(v.closed, 0), coalesce(v.released, 0), coalesce(v.idle_released, 0), $5
              from targets t
              left join per_operator p using (operator_id)
              left join replies r using (operator_id)
              left join moves v using (operator_id)
            on conflict (operator_id, stat_date) do update
               set messages_sent = excluded.messages_sent,
                   chats_handled = excluded.chats_handled,
                   replies = excluded.replies,
                   reply_time_avg_seconds = excluded.reply_time_avg_seconds,
                   reply_time_p50_seconds = excluded.reply_time_p50_seconds,
                   reply_time_p90_seconds = excluded.reply_time_p90_seconds,
                   chats_closed = excluded.chats_closed,
                   chats_released = excluded.chats_released,
                   chats_idle_released = excluded.chats_idle_released,
                   computed_at = excluded.computed_at
            returning 1
        )
        select count(*)::int from written
    $sql$
    into v_count
    using v_from, v_to, p_operator_id, p_date, chatdesk.clock();
    if p_operator_id is null then
        perform chatdesk.write_hourly_load(v_from, v_to);
    end if;
    return v_count;
end;
$$;

create or replace function chatdesk.rollup_operator_stats(p_date date)
returns int
language plpgsql
security definer  -- writes operator_daily_stats, which applications may not write
set search_path = chatdesk, pg_temp
set lock_timeout = '5s'  -- a stuck session cannot hang every operator
as $$
begin
    -- Every operator's row for p_date in one set-based pass; returns rows
    -- written. One rollup at a time: waits (up to lock_timeout) for another
    -- rollup's transaction. For backends only (42501).
    perform chatdesk.authorize('roll up stats', 'backend');
    perform 1 from chatdesk.runner_locks where name = 'rollup' for update;
    return chatdesk.write_operator_stats(p_date, null);
end;
$$;

create or replace function chatdesk.try_rollup_operator_stats(p_date date)
returns int
language plpgsql
security definer  -- takes the rollup lock row, which applications may not lock
set search_path = chatdesk, pg_temp
set lock_timeout = '5s'  -- a stuck session cannot hang every operator
as $$
begin
    -- rollup_operator_stats, but null at once, writing nothing, while another
    -- transaction is rolling up (the runner polls with it: a waiting rollup
    -- never sits inside a statement). Once it holds the lock row,
    -- rollup_operator_stats takes it again without waiting.
    perform 1 from chatdesk.runner_locks where name = 'rollup' for update skip locked;
    return case when found then chatdesk.rollup_operator_stats(p_date) end;
end;
$$;

create or replace function chatdesk.scheduled_rollup()
returns text
language plpgsql
security definer  -- reads operator_daily_stats' freshness and rolls up, for backends and pg_cron
set search_path = chatdesk, pg_temp
set lock_timeout = '5s'
as $$
declare
    v_today    date := chatdesk.stats_today();
    v_midnight timestamptz := v_today::timestamp at time zone chatdesk.stats_time_zone();
    v_day      date;
    v_rows     int;
    v_done     text[] := '{}'::text[];
begin
    -- The rollup a schedule runs every few minutes (chatdesk cron's job):
    -- today, and yesterday too until a rollup after midnight in
    -- stats_time_zone has closed it. Skips, writing nothing, while another
    -- rollup runs (try_rollup_operator_stats): runs never overlap. Returns
    -- one line for the job's log. For backends only (42501).
    perform chatdesk.authorize('roll up stats', 'backend');
    for v_day in
        select v_today - 1
         where not exists (select 1 from chatdesk.operator_daily_stats
                            where stat_date = v_today - 1 and computed_at >= v_midnight)
        union all
        select v_today
    loop
        v_rows := chatdesk.try_rollup_operator_stats(v_day);
        if v_rows is null then
            return 'skipped: another rollup holds the lock';
        end if;
        v_done := v_done || format('%s (%s rows)', v_day, v_rows);
    end loop;
    return 'rolled up ' || array_to_string(v_done, ', ');
end;
$$;

comment on function chatdesk.scheduled_rollup() is
    'Today''s rollup, and yesterday''s until one after midnight closed it; skips while another rollup runs (pg_cron''s job).';

comment on function chatdesk.try_rollup_operator_stats(date) is
    'rollup_operator_stats, or null at once while another rollup runs.';

comment on function chatdesk.rollup_operator_stats(date) is
    'Every operator''s operator_daily_stats row for the day, in one set-based pass; returns rows written.';

create or replace function chatdesk.update_operator_stats(p_operator_id uuid, p_date date)
returns void
language plpgsql
security definer  -- writes operator_daily_stats, which applications may not write
set search_path = chatdesk, pg_temp
set lock_timeout = '5s'  -- a stuck session cannot hang every operator
as $$
begin
    -- One operator's row for p_date; the same figures the rollup writes.
    -- Refuses an unknown operator (23503), a date out of range (23514), web
    -- callers and narrowed backends (42501).
    perform chatdesk.authorize('write stats', 'backend');
    if p_operator_id is null or not exists (select 1 from chatdesk.operators where id = p_operator_id) then
        raise exception using errcode = '23503',
            message = format('chatdesk: operator %s does not exist', coalesce(p_operator_id::text, 'null'));
    end if;
    perform chatdesk.write_operator_stats(p_date, p_operator_id);
end;
$$;

comment on function chatdesk.update_operator_stats(uuid, date) is
    'One operator''s operator_daily_stats row for the day (the figures the rollup writes).';

create or replace function chatdesk.stats_today()
returns date
language sql
volatile
as $$
    -- Today's date in stats_time_zone, by chatdesk.clock().
    select (chatdesk.clock() at time zone chatdesk.stats_time_zone())::date;
$$;

comment on function chatdesk.stats_today() is
    'Today''s date in stats_time_zone, by chatdesk.clock().';
