-- ---------------------------------------------------------------------------
-- Reports: time metrics per operator and day (reply, first response,
-- resolution; wall clock and business time), load per hour, queue samples.
-- Written by the rollup (write_operator_stats), read by `chatdesk report`.
-- Every figure of a day comes from that day's rows through an index, so a
-- rollup stays flat whatever the size of history.
-- ---------------------------------------------------------------------------
create or replace function chatdesk.time_buckets()
returns numeric[]
language sql
immutable
as $$
    -- Upper bounds (seconds) of the histogram buckets of operator_daily_times:
    -- bucket 1 is under 10 s, bucket k under time_buckets()[k] and at least
    -- the bound before it, the last bucket 1 day or more.
    select '{10,30,60,120,300,600,1800,3600,14400,86400}'::numeric[];
$$;

comment on function chatdesk.time_buckets() is
    'Upper bounds in seconds of operator_daily_times.histogram''s buckets (one more bucket: 1 day or more).';

create or replace function chatdesk.histogram(p_seconds numeric[])
returns int[]
language sql
immutable
as $$
    -- How many of p_seconds fall in each bucket of time_buckets().
    select array_agg(coalesce(n, 0) order by b)
      from generate_series(0, cardinality(chatdesk.time_buckets())) b
      left join (select width_bucket(s, chatdesk.time_buckets()) as b, count(*)::int as n
                   from unnest(p_seconds) s
                  where s is not null
                  group by 1) counted using (b);
$$;

create or replace function chatdesk.business_clock(p_times timestamptz[])
returns table (at timestamptz, seconds numeric)
language plpgsql
stable
as $$
#variable_conflict use_column
begin
    -- For each distinct time in p_times, the business seconds before it,
    -- counted from a common origin: the business time between two of them is
    -- the difference. Business hours are chatdesk.business_hours' windows in
    -- stats_time_zone, on each day that is not a holiday; overlapping windows
    -- count once. Local times are turned into instants by the zone's rules
    -- of that date, so a window on a daylight-saving day is as long as the
    -- clock on the wall says (a window over the change is an hour shorter or
    -- longer). One sort of the times and the windows together: set-based,
    -- for the rollup's thousands of times at once. Its cost grows with the
    -- days between the earliest and the latest time: an infinite time, or
    -- more than 100 years between them, is refused (23514).
    if exists (select 1 from unnest(p_times) t where not isfinite(t))
       or (select max(t) - min(t) from unnest(p_times) t) > interval '100 years' then
        raise exception using errcode = '23514',
            message = format('chatdesk: business time is counted over at most 100 years of finite times, not from %s to %s',
                             (select min(t) from unnest(p_times) t), (select max(t) from unnest(p_times) t));
    end if;
    return query
    with zone as (
        select chatdesk.stats_time_zone() as name
    ), span as (
        select (min(t) at time zone zone.name)::date - 1 as first_day,  -- a window of the day before may reach in
               (max(t) at time zone zone.name)::date as last_day
          from unnest(p_times) t, zone
         group by zone.name
    ), windows as (
        select unnest(range_agg(tstzrange(
                   (d + h.opens) at time zone zone.name,
                   (d + h.closes + case when h.closes <= h.opens then interval '1 day' else interval '0' end)
                       at time zone zone.name))) as w
          from span, zone,
               generate_series(span.first_day::timestamp, span.last_day::timestamp, interval '1 day') d
          join chatdesk.business_hours h on h.weekday = extract(isodow from d)
         where not exists (select 1 from chatdesk.holidays x where x.day = d::date)
    ), points as (
        -- kind 0: a time asked for; 1: a window opens; 2: a window closes (with its length)
        select t, 0 as kind, null::numeric as length from unnest(p_times) t where t is not null
        union all
        select lower(w), 1, null from windows
        union all
        select upper(w), 2, extract(epoch from upper(w) - lower(w)) from windows
    ), swept as (
        select t, kind,
               coalesce(sum(length) over sweep, 0) as closed_windows,
               max(t) filter (where kind = 1) over sweep as last_open,
               max(t) filter (where kind = 2) over sweep as last_close
          from points
        window sweep as (order by t, kind desc rows unbounded preceding)
    )
    select distinct t,
           closed_windows + case when last_open > coalesce(last_close, '-infinity')
                                 then extract(epoch from t - last_open) else 0 end
      from swept
     where kind = 0;
end;
$$;

comment on function chatdesk.business_clock(timestamptz[]) is
    'Business seconds before each of the times from a common origin (differences are business time).';

create or replace function chatdesk.business_seconds(p_from timestamptz, p_to timestamptz)
returns numeric
language sql
stable
as $$
    -- The business time from p_from to p_to, in seconds (see business_clock).
    select max(seconds) filter (where at = p_to) - max(seconds) filter (where at = p_from)
      from chatdesk.business_clock(array[p_from, p_to]);
$$;

comment on function chatdesk.business_seconds(timestamptz, timestamptz) is
    'Seconds of business hours (business_hours, holidays, stats_time_zone) from p_from to p_to.';

create or replace function chatdesk.write_operator_times(p_date date, p_operator_id uuid,
                                                         p_from timestamptz, p_to timestamptz)
returns void
language plpgsql
as $$
begin
    -- operator_daily_times for p_date (p_from .. p_to): replaces the rows of
    -- p_operator_id, or with null of every operator, with the day's
    --   reply           operator messages of the day that answered a run of
    --                   real-user messages: from the run's first message;
    --   first_response  conversations first answered that day: from their
    --                   first queueing, credited to the operator who answered;
    --   resolution      conversations closed that day: from their first
    --                   queueing, credited to whoever had the chat last;
    -- on the wall clock, and in business time when business_hours has windows.
    -- A row only where the operator has at least one such time.
    delete from chatdesk.operator_daily_times d
     where d.stat_date = p_date and (p_operator_id is null or d.operator_id = p_operator_id);
    execute $sql$
        with samples as (
            select m.handled_by_operator_id as operator_id, 'reply' as metric,
                   m.reply_started_at as started, m.created_at as ended
              from chatdesk.messages m
             where m.handled_by_operator_id is not null and m.reply_started_at is not null
               and m.created_at >= $1 and m.created_at < $2
               and ($3::uuid is null or m.handled_by_operator_id = $3)
            union all
            select c.first_response_operator_id, 'first_response', c.queued_at, c.first_response_at
              from chatdesk.conversations c
             where c.first_response_at >= $1 and c.first_response_at < $2
               and ($3::uuid is null or c.first_response_operator_id = $3)
            union all
            select c.closed_by_operator_id, 'resolution', c.queued_at, c.closed_at
              from chatdesk.conversations c
             where c.closed_at >= $1 and c.closed_at < $2 and c.closed_by_operator_id is not null
               and ($3::uuid is null or c.closed_by_operator_id = $3)
        ), business as (
            select * from chatdesk.business_clock(
                       case when exists (select 1 from chatdesk.business_hours)
                            then array(select started from samples union select ended from samples)
                            else '{}' end)
        ), timed as (
            select s.operator_id, s.metric, t.clock, greatest(t.seconds, 0) as seconds
              from samples s
              left join business b1 on b1.at = s.started
              left join business b2 on b2.at = s.ended
             cross join lateral (values ('wall', extract(epoch from s.ended - s.started)),
                                        ('business', b2.seconds - b1.seconds)) t(clock, seconds)
             where t.seconds is not null
        )
        insert into chatdesk.operator_daily_times
               (operator_id, stat_date, metric, clock, n, avg_seconds, p50_seconds, p90_seconds, histogram)
        select operator_id, $4, metric, clock, count(*)::int,
               round(avg(seconds), 3),
               round((percentile_cont(0.5) within group (order by seconds::float8))::numeric, 3),
               round((percentile_cont(0.9) within group (order by seconds::float8))::numeric, 3),
               chatdesk.histogram(array_agg(seconds))
          from timed
         group by operator_id, metric, clock
    $sql$
    using p_from, p_to, p_operator_id, p_date;
end;
$$;

create or replace function chatdesk.write_hourly_load(p_from timestamptz, p_to timestamptz)
returns void
language sql
as $$
    -- hourly_load for each hour from p_from to p_to (a day's 23, 24 or 25
    -- hours), zeros included: messages by sender, and chats that joined the
    -- queue by a real-user message (returns by release or idle do not count).
    -- Hours are counted from p_from (local midnight) in elapsed time, which
    -- is the local hour in every zone whose offsets are whole hours apart
    -- (four times cheaper than date_trunc in a time zone, row by row).
    -- The messages are found through a BRIN index on created_at: ranges
    -- not yet summarized would all be read, so they are summarized first
    -- (only the new ones: cheap). BRIN relies on rows arriving in time order,
    -- as messages do; docs/scaling.md says what undoes that.
    select brin_summarize_new_values('chatdesk.messages_created_brin');
    insert into chatdesk.hourly_load as l
           (hour, messages, real_user_messages, operator_messages, queue_entries, computed_at)
    select h.hour, coalesce(m.messages, 0), coalesce(m.real_user_messages, 0), coalesce(m.operator_messages, 0),
           coalesce(q.entries, 0), chatdesk.clock()
      from generate_series(p_from, p_to - interval '1 hour', interval '1 hour') h(hour)
      left join (select p_from + floor(extract(epoch from created_at - p_from) / 3600) * interval '1 hour' as hour,
                        count(*)::int as messages,
                        count(*) filter (where sender_type = 'real_user')::int as real_user_messages,
                        count(*) filter (where sender_type = 'operator')::int as operator_messages
                   from chatdesk.messages
                  where created_at >= p_from and created_at < p_to
                  group by 1) m using (hour)
      left join (select p_from + floor(extract(epoch from created_at - p_from) / 3600) * interval '1 hour' as hour,
                        count(*)::int as entries
                   from chatdesk.chat_events
                  where created_at >= p_from and created_at < p_to and reason = 'user_message'
                  group by 1) q using (hour)
    on conflict (hour) do update
       set messages = excluded.messages,
           real_user_messages = excluded.real_user_messages,
           operator_messages = excluded.operator_messages,
           queue_entries = excluded.queue_entries,
           computed_at = excluded.computed_at;
$$;

create or replace function chatdesk.sample_queue()
returns int
language plpgsql
security definer  -- writes queue_samples, which applications may not write
set search_path = chatdesk, pg_temp
as $$
declare
    v_waiting int;
begin
    -- Records the queue's depth now (queue_samples); returns how many chats
    -- wait. chatdesk schedule calls it every minute. For backends only (42501).
    perform chatdesk.authorize('sample the queue', 'backend');
    insert into chatdesk.queue_samples as s (sampled_at, waiting, assigned, oldest_wait_seconds)
    select chatdesk.clock(),
           count(*) filter (where chat_state = 'waiting_assignment'),
           count(*) filter (where chat_state = 'assigned'),
           round(extract(epoch from chatdesk.clock() - min(queued_at) filter (where chat_state = 'waiting_assignment')), 3)
      from chatdesk.chats
     where chat_state in ('waiting_assignment', 'assigned')
    on conflict (sampled_at) do update
       set waiting = excluded.waiting, assigned = excluded.assigned, oldest_wait_seconds = excluded.oldest_wait_seconds
    returning waiting into v_waiting;
    return v_waiting;
end;
$$;

comment on function chatdesk.sample_queue() is
    'Records the queue''s depth now in queue_samples; returns how many chats wait.';
