-- chatdesk's schema, as `chatdesk migrate` leaves a database: every table,
-- index, function, trigger, policy and grant, in pg_dump's words. Read the
-- current design here rather than in the migrations. Generated (make
-- schema-snapshot); tests/test_schema.py fails when it differs from what the
-- migrations and sql/ make.

CREATE SCHEMA chatdesk;

COMMENT ON SCHEMA chatdesk IS 'chatdesk: the database core of a live-chat platform (docs/contract.md).';

CREATE FUNCTION chatdesk.act_as_operator(p_operator_id uuid) RETURNS void
    LANGUAGE plpgsql
    AS $$
begin
    -- For the rest of this transaction only, the backend acts for
    -- p_operator_id: row-level security shows it that operator's chats, and
    -- the functions refuse to act for anyone else (42501). Ends at commit or
    -- rollback, so a pooled connection never carries it to another client.
    if p_operator_id is null or not exists (select 1 from chatdesk.operators where id = p_operator_id) then
        raise exception using errcode = '23503',
            message = format('chatdesk: operator %s does not exist', coalesce(p_operator_id::text, 'null'));
    end if;
    perform set_config('chatdesk.operator_scope', p_operator_id || ' ' || chatdesk.transaction_mark(), true);
end;
$$;

COMMENT ON FUNCTION chatdesk.act_as_operator(p_operator_id uuid) IS 'For the rest of this transaction, a backend acts only for this operator (row-level security and the functions follow). A self-check, not a security boundary.';

CREATE TABLE chatdesk.changes (
    tx xid8 NOT NULL,
    id bigint NOT NULL,
    chat_id uuid NOT NULL,
    chat_seq integer NOT NULL,
    kind text NOT NULL,
    message_id bigint,
    chat_state text NOT NULL,
    from_state text,
    operator_id uuid,
    real_user_id uuid NOT NULL,
    created_at timestamp with time zone NOT NULL,
    CONSTRAINT changes_kind_check CHECK ((kind = ANY (ARRAY['message'::text, 'chat'::text])))
);

COMMENT ON TABLE chatdesk.changes IS 'The change feed: read it with changes_since(); a NOTIFY on channel chatdesk wakes readers.';

CREATE TABLE chatdesk.changes_horizon (
    singleton boolean DEFAULT true NOT NULL,
    tx xid8 DEFAULT '0'::xid8 NOT NULL,
    id bigint DEFAULT 0 NOT NULL,
    CONSTRAINT changes_horizon_singleton CHECK (singleton)
);

CREATE FUNCTION chatdesk.audience_changes(p_from chatdesk.changes_horizon, p_bound xid8, p_limit integer, p_operator uuid, p_user uuid) RETURNS SETOF chatdesk.changes
    LANGUAGE sql STABLE
    AS $$
    -- Who sees which change: the one statement of it (docs/contract.md,
    -- "Change feed"), used by changes_since and by chatdesk serve. The
    -- changes after p_from and below p_bound, oldest first, at most p_limit,
    -- that these may see:
    --   real user p_user   its own chats' changes;
    --   operator p_operator  the changes of the chats it holds, up to and
    --                      including the one that ends its hold
    --                      (changes.operator_id), and the queue's comings and
    --                      goings (a chat change into or out of
    --                      waiting_assignment; the same test as
    --                      changes_queue_idx, so that index serves it).
    -- Each audience is read through its own index in feed order, so a read
    -- costs the caller's own changes after p_from, never the feed's size.
    -- UNION: a claim is both the queue's and its operator's change.
    select f.*
      from ((select c.* from chatdesk.changes c
              where c.real_user_id = p_user
                and (c.tx, c.id) > (p_from.tx, p_from.id) and c.tx < p_bound
              order by c.tx, c.id
              limit p_limit)
            union
            (select c.* from chatdesk.changes c
              where c.operator_id = p_operator
                and (c.tx, c.id) > (p_from.tx, p_from.id) and c.tx < p_bound
              order by c.tx, c.id
              limit p_limit)
            union
            (select c.* from chatdesk.changes c
              where p_operator is not null
                and c.kind = 'chat' and (c.chat_state = 'waiting_assignment' or c.from_state = 'waiting_assignment')
                and (c.tx, c.id) > (p_from.tx, p_from.id) and c.tx < p_bound
              order by c.tx, c.id
              limit p_limit)) f
     order by f.tx, f.id
     limit p_limit;
$$;

CREATE FUNCTION chatdesk.authorize(p_action text, p_as text, p_id uuid DEFAULT NULL::uuid) RETURNS void
    LANGUAGE plpgsql STABLE
    AS $$
declare
    v_self uuid;
begin
    -- The one rule of who may act as whom (42501 otherwise). p_as names the
    -- identity p_action needs:
    --   'backend'    maintenance (creating people, idle release, stats): no
    --                web caller, no transaction narrowed to an operator;
    --   'operator'   acting as operator p_id: a web caller whose JWT is that
    --                operator's login, or a backend (narrowed to p_id, if at all);
    --   'real user'  acting as real user p_id: a web caller whose JWT is that
    --                user's login, or a backend not narrowed to an operator.
    -- A refusal names only the caller's own ids and p_id.
    if chatdesk.is_web_caller() then
        v_self := case p_as when 'operator' then chatdesk.web_operator_id()
                            when 'real user' then chatdesk.web_real_user_id() end;
        if v_self is null or p_id is distinct from v_self then
            raise exception using errcode = '42501',
                message = format('chatdesk: %s may not %s%s', chatdesk.web_caller_name(), p_action,
                                 case when p_as <> 'backend' then format(' as %s %s', p_as, coalesce(p_id::text, 'null')) end);
        end if;
        return;
    end if;
    v_self := chatdesk.current_operator_id();
    if v_self is not null and (p_as <> 'operator' or p_id is distinct from v_self) then
        raise exception using errcode = '42501',
            message = format('chatdesk: this transaction acts for operator %s and may not %s%s', v_self, p_action,
                             case when p_as <> 'backend' then format(' as %s %s', p_as, coalesce(p_id::text, 'null')) end);
    end if;
end;
$$;

CREATE FUNCTION chatdesk.business_clock(p_times timestamp with time zone[]) RETURNS TABLE(at timestamp with time zone, seconds numeric)
    LANGUAGE plpgsql STABLE
    AS $$
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

COMMENT ON FUNCTION chatdesk.business_clock(p_times timestamp with time zone[]) IS 'Business seconds before each of the times from a common origin (differences are business time).';

CREATE FUNCTION chatdesk.business_seconds(p_from timestamp with time zone, p_to timestamp with time zone) RETURNS numeric
    LANGUAGE sql STABLE
    AS $$
    -- The business time from p_from to p_to, in seconds (see business_clock).
    select max(seconds) filter (where at = p_to) - max(seconds) filter (where at = p_from)
      from chatdesk.business_clock(array[p_from, p_to]);
$$;

COMMENT ON FUNCTION chatdesk.business_seconds(p_from timestamp with time zone, p_to timestamp with time zone) IS 'Seconds of business hours (business_hours, holidays, stats_time_zone) from p_from to p_to.';

CREATE FUNCTION chatdesk.caller_role() RETURNS name
    LANGUAGE sql STABLE
    AS $$
    -- The role the caller runs as: what `set [local] role` chose (PostgREST
    -- switches per request), else the login. Inside a security definer
    -- function current_user is the owner, but the role setting is the caller's.
    select case when current_setting('role') = 'none' then session_user
                else current_setting('role')::name end;
$$;

CREATE FUNCTION chatdesk.changes_since(p_cursor text DEFAULT NULL::text, p_limit integer DEFAULT 1000) RETURNS TABLE(cursor text, kind text, chat_id uuid, message_id bigint, chat_state text, created_at timestamp with time zone, chat_seq integer)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    AS $$
#variable_conflict use_column
declare
    v_from     chatdesk.changes_horizon := chatdesk.feed_start(p_cursor, p_limit);
    v_bound    xid8 := pg_snapshot_xmin(pg_current_snapshot());
    v_operator uuid;
    v_user     uuid;
begin
    -- The changes committed after p_cursor (null: from the oldest kept),
    -- oldest first, at most p_limit (1 to 10000), only those the caller may
    -- see. Pass the last row's cursor to get the next ones. A cursor older
    -- than what the feed keeps is refused (CD006).
    --
    -- The caller's audience (audience_changes says who sees what):
    --   a web caller           its operator and its real user (its JWT's sub);
    --   a backend acting for   that operator;
    --   one (act_as_operator)
    --   a backend              everything;
    --   any other web caller   refused (42501).
    if chatdesk.is_web_caller() then
        v_operator := chatdesk.web_operator_id();
        v_user := chatdesk.web_real_user_id();
        if v_operator is null and v_user is null then
            perform chatdesk.refuse_nobody('read the change feed');
        end if;
    else
        v_operator := chatdesk.current_operator_id();
        if v_operator is null then
            return query
            select c.tx || ':' || c.id, c.kind, c.chat_id, c.message_id, c.chat_state, c.created_at, c.chat_seq
              from chatdesk.changes c
             where (c.tx, c.id) > (v_from.tx, v_from.id) and c.tx < v_bound
             order by c.tx, c.id
             limit p_limit;
            return;
        end if;
    end if;

    return query
    select f.tx || ':' || f.id, f.kind, f.chat_id, f.message_id, f.chat_state, f.created_at, f.chat_seq
      from chatdesk.audience_changes(v_from, v_bound, p_limit, v_operator, v_user) f
     order by f.tx, f.id;
end;
$$;

COMMENT ON FUNCTION chatdesk.changes_since(p_cursor text, p_limit integer) IS 'The change feed after a cursor, in commit order, exactly once, only what the caller may see; CD006 for a cursor older than what is kept.';

CREATE FUNCTION chatdesk.chats__guard_insert() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
begin
    -- A chat is born waiting for its user, with no assignee and zero counters
    -- (the counters belong to the message triggers).
    if new.chat_state is distinct from 'waiting_real_user_reply' or new.assigned_operator_id is not null then
        raise exception using
            errcode = 'CD002',
            message = format('chatdesk: chat %s of real user %s must start in waiting_real_user_reply without an operator, not %s%s',
                             new.id, new.real_user_id, coalesce(new.chat_state, 'null'),
                             coalesce(' (operator ' || new.assigned_operator_id || ')', ''));
    end if;
    new.state_reason := 'start';
    new.message_count := 0;
    new.last_message_at := null;
    new.last_user_message_id := null;
    new.waiting_since := null;
    new.queued_at := null;
    new.assigned_at := null;
    new.conversation_id := null;
    new.awaiting_first_response := false;
    new.created_at := chatdesk.clock();
    new.change_seq := 1;  -- its creation is its first change (chats__log_insert)
    new.change_tx := pg_current_xact_id();
    return new;
end;
$$;

CREATE FUNCTION chatdesk.chats__guard_state() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
declare
    v_event    text;
    v_op       chatdesk.operators%rowtype;
    v_audience chatdesk.chats;
begin
    -- Fires when chat_state or the assignee changes, from any source. The
    -- change must name its event in state_reason (chatdesk's functions and
    -- triggers do), and (event, old state) must lead to the new state in
    -- chatdesk.state_transitions; anything else is refused with CD002, a bare
    -- UPDATE included. A claim is checked by check_claim (CD003, CD004),
    -- under the operator's row lock; user_message and
    -- operator_reply happen only through a message. Then records the side
    -- effects of the new state.
    if new.chat_state = old.chat_state then
        raise exception using
            errcode = 'CD002',
            message = format('chatdesk: chat %s: the operator cannot change from %s to %s while %s',
                             old.id, coalesce(old.assigned_operator_id::text, 'none'),
                             coalesce(new.assigned_operator_id::text, 'none'), old.chat_state);
    end if;

    v_event := case when new.state_reason is distinct from old.state_reason then new.state_reason end;
    if v_event is null
       or not exists (select 1 from chatdesk.state_transitions t
                       where t.event = v_event and t.from_state = old.chat_state and t.to_state = new.chat_state)
       or (v_event in ('user_message', 'operator_reply') and pg_trigger_depth() < 2) then
        raise exception using
            errcode = 'CD002',
            message = format('chatdesk: chat %s cannot go from %s to %s%s%s',
                             old.id, old.chat_state, new.chat_state,
                             coalesce(' (operator ' || new.assigned_operator_id || ')', ''),
                             case when v_event is null then ' without naming its event (use chatdesk''s functions)'
                                  else ' by ' || v_event end);
    end if;

    if new.chat_state = 'assigned' then
        -- Every claim, a direct UPDATE included: count it on the operator and
        -- check it, under the operator's row lock (held until commit).
        update chatdesk.operators
           set assigned_chats = assigned_chats + 1,
               last_active_at = greatest(last_active_at, chatdesk.clock())
         where id = new.assigned_operator_id
        returning * into v_op;
        perform chatdesk.check_claim(v_op, new.assigned_operator_id, old.id, v_op.assigned_chats);
        new.assigned_at := chatdesk.clock();
    else
        if old.chat_state = 'assigned' then
            update chatdesk.operators set assigned_chats = assigned_chats - 1
             where id = old.assigned_operator_id;
        end if;
        new.assigned_operator_id := null;
        new.assigned_at := null;
    end if;

    if new.chat_state = 'waiting_assignment' then
        if old.chat_state = 'assigned' then
            new.queued_at := old.queued_at;            -- released: back to its old place
        elsif new.queued_at is not distinct from old.queued_at then
            new.queued_at := chatdesk.clock();         -- (re)joins the queue at the end
        end if;
    end if;

    -- The queue table (claim_next_chat pops it): a row while the chat waits,
    -- at its place (queued_at, kept on a release).
    if new.chat_state = 'waiting_assignment' then
        insert into chatdesk.queue (chat_id, queued_at) values (old.id, new.queued_at)
        on conflict (chat_id) do update set queued_at = excluded.queued_at;
    elsif old.chat_state = 'waiting_assignment' then
        delete from chatdesk.queue where chat_id = old.id;
    end if;

    -- Conversations (the reports' first response and resolution): the first
    -- queueing since the chat began or was closed opens one; a close ends it,
    -- credited to whoever had the chat last in it.
    if new.chat_state = 'waiting_assignment' and old.conversation_id is null then
        insert into chatdesk.conversations (chat_id, queued_at) values (old.id, new.queued_at)
        returning id into new.conversation_id;
        new.awaiting_first_response := true;
    elsif new.chat_state = 'closed' and old.conversation_id is not null then
        update chatdesk.conversations c
           set closed_at = chatdesk.clock(),
               closed_by_operator_id = coalesce(old.assigned_operator_id,
                   (select e.operator_id from chatdesk.chat_events e
                     where e.chat_id = old.id and e.operator_id is not null and e.created_at >= c.queued_at
                     order by e.id desc limit 1))
         where c.chat_id = old.id and c.id = old.conversation_id;
        new.conversation_id := null;
        new.awaiting_first_response := false;
    end if;

    -- One chat_events row and one change-feed row per change. Written here
    -- rather than by an AFTER trigger (one trigger call less on every
    -- change); should the UPDATE still fail, the statement rolls back and the
    -- rows go with it.
    insert into chatdesk.chat_events (chat_id, from_state, to_state, operator_id, reason, created_at)
    values (old.id, old.chat_state, new.chat_state,
            coalesce(new.assigned_operator_id, old.assigned_operator_id), v_event, chatdesk.clock());
    -- The feed row is seen by the operator who holds the chat after the
    -- change, or, for the change that ends a hold (answered and handed back,
    -- released, idle, closed), by the operator who held it: an operator's
    -- view of a chat ends with that change.
    new.change_seq := new.change_seq + 1;
    v_audience := new;
    v_audience.assigned_operator_id := coalesce(new.assigned_operator_id, old.assigned_operator_id);
    new.change_tx := chatdesk.publish_change(v_audience, 'chat', null, old.chat_state);
    return new;
end;
$$;

CREATE FUNCTION chatdesk.chats__log_insert() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    AS $$
begin
    -- The chat's first chat_events row and change-feed row: its creation
    -- (state changes are logged by chats__guard_state).
    insert into chatdesk.chat_events (chat_id, from_state, to_state, operator_id, reason, created_at)
    values (new.id, null, new.chat_state, null, new.state_reason, new.created_at);
    perform chatdesk.publish_change(new, 'chat', null, null);
    return null;
end;
$$;

CREATE TABLE chatdesk.operators (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    name text NOT NULL,
    is_active boolean DEFAULT true NOT NULL,
    max_concurrent_chats integer DEFAULT 1 NOT NULL,
    total_messages bigint DEFAULT 0 NOT NULL,
    assigned_chats integer DEFAULT 0 NOT NULL,
    last_seen_at timestamp with time zone,
    last_active_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    auth_user_id uuid,
    CONSTRAINT operators_assigned_chats_check CHECK ((assigned_chats >= 0)),
    CONSTRAINT operators_max_concurrent_chats_check CHECK (((max_concurrent_chats >= 1) AND (max_concurrent_chats <= 1000))),
    CONSTRAINT operators_name_check CHECK (((length(btrim(name)) >= 1) AND (length(btrim(name)) <= 200)))
);

COMMENT ON TABLE chatdesk.operators IS 'People who answer chats. Counters are maintained by triggers; write through create_operator / set_operator_active / heartbeat.';

COMMENT ON COLUMN chatdesk.operators.max_concurrent_chats IS 'How many chats the operator may hold at once (1 to 1000); claims beyond it are refused (CD004).';

COMMENT ON COLUMN chatdesk.operators.total_messages IS 'Number of messages credited to the operator (handled_by_operator_id); exact, maintained by triggers.';

COMMENT ON COLUMN chatdesk.operators.assigned_chats IS 'Chats assigned to the operator now; exact, maintained by the chat state guard.';

COMMENT ON COLUMN chatdesk.operators.last_seen_at IS 'Last heartbeat().';

COMMENT ON COLUMN chatdesk.operators.last_active_at IS 'Latest of heartbeat, own message and claim; idle release measures from it.';

COMMENT ON COLUMN chatdesk.operators.auth_user_id IS 'The web login (the JWT''s sub) that acts as this operator through chatdesk_web; null: none.';

CREATE FUNCTION chatdesk.check_claim(p_op chatdesk.operators, p_operator_id uuid, p_chat_id uuid, p_load_after integer) RETURNS void
    LANGUAGE plpgsql STABLE
    AS $$
begin
    -- The one claim check. Refuses a claim that would give operator
    -- p_operator_id (its row p_op; all null when there is none) a load of
    -- p_load_after chats: unknown (23503), inactive (CD003), over
    -- max_concurrent_chats (CD004). claim_next_chat calls it before taking a
    -- chat, so a refused claim takes none; the state guard calls it for every
    -- claim under the operator's row lock, which is the check that counts.
    if p_op.id is null then
        raise exception using errcode = '23503',
            message = format('chatdesk: operator %s does not exist%s',
                             coalesce(p_operator_id::text, 'null'), coalesce(' (chat ' || p_chat_id || ')', ''));
    end if;
    if not p_op.is_active then
        raise exception using errcode = 'CD003',
            message = format('chatdesk: operator %s is not active%s', p_operator_id,
                             coalesce(' (chat ' || p_chat_id || ')', ''));
    end if;
    if p_load_after > p_op.max_concurrent_chats then
        raise exception using errcode = 'CD004',
            message = format('chatdesk: operator %s already has %s of %s chats%s',
                             p_operator_id, p_load_after - 1, p_op.max_concurrent_chats,
                             coalesce(' (chat ' || p_chat_id || ')', ''));
    end if;
end;
$$;

CREATE FUNCTION chatdesk.check_name(p_what text, p_name text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    AS $$
begin
    -- Refuses a null, blank (only whitespace or invisible characters) or
    -- over-long (over 200 characters) name (23514).
    if chatdesk.is_blank(p_name) or length(p_name) > 200 then
        raise exception using errcode = '23514',
            message = format('chatdesk: %s must have 1 to 200 visible characters, not %s',
                             p_what, coalesce(quote_literal(left(p_name, 210)), 'null'));
    end if;
end;
$$;

CREATE FUNCTION chatdesk.check_open_chats(p_real_user_id uuid, p_chat_id uuid) RETURNS void
    LANGUAGE plpgsql
    AS $$
declare
    v_open int;
    v_max  int := chatdesk.max_open_chats_per_user();
begin
    -- The one rule of how many chats one real user may have open (not
    -- closed): refuses one more, a new chat (p_chat_id null) or a closed chat
    -- p_chat_id reopened by a message, when the user already has
    -- max_open_chats_per_user (CD007); an unknown user is 23503. Locks the
    -- user's row until commit, so the user's concurrent starts and reopenings
    -- are counted one at a time (a message's caller holds the chat's lock
    -- first: chat, then user, never the other way round).
    perform 1 from chatdesk.real_users u where u.id = p_real_user_id for no key update;
    if not found then
        raise exception using errcode = '23503',
            message = format('chatdesk: real user %s does not exist', coalesce(p_real_user_id::text, 'null'));
    end if;
    select count(*) into v_open from chatdesk.chats c
     where c.real_user_id = p_real_user_id and c.chat_state <> 'closed';
    if v_open >= v_max then
        raise exception using errcode = 'CD007',
            message = format('chatdesk: real user %s already has %s open chats (max_open_chats_per_user %s)%s',
                             p_real_user_id, v_open, v_max,
                             coalesce('; chat ' || p_chat_id || ' stays closed', '')),
            hint = 'Close one of them, or write to one that is open.';
    end if;
end;
$$;

CREATE FUNCTION chatdesk.claim_next_chat(p_operator_id uuid) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    SET lock_timeout TO '5s'
    AS $$
declare
    v_chat_id uuid;
    v_state   text;
    v_passed  uuid[] := '{}'::uuid[];  -- entries whose chat is being written to right now
    v_op      chatdesk.operators%rowtype;
begin
    -- Gives the operator the waiting chat with the oldest queued_at, or null
    -- when the queue is empty. Takes it with SKIP LOCKED, so claimers
    -- never wait on each other and no chat goes to two operators; the state
    -- guard then checks and counts the claim under the operator's row lock,
    -- so two claims by one operator cannot both pass its capacity. Refuses:
    -- unknown operator (23503), inactive (CD003), at max_concurrent_chats (CD004).
    -- Only that operator, or a backend, may claim for p_operator_id (42501).
    perform chatdesk.authorize('claim', 'operator', p_operator_id);
    -- Checked first without a lock, so a refused claim takes no chat.
    select * into v_op from chatdesk.operators where id = p_operator_id;
    perform chatdesk.check_claim(v_op, p_operator_id, null, v_op.assigned_chats + 1);

    -- The queue in claim order, one entry at a time with SKIP LOCKED (another
    -- claimer has it: skip; one at a time, as a FOR loop's cursor would
    -- lock ten ahead), then its one chat, also SKIP LOCKED (a message is
    -- being written to it right now: take the next). Never waits, and no
    -- statement locks rows of more than one chat. An entry whose chat has
    -- moved on (left behind while migrating) is dropped.
    loop
        select q.chat_id into v_chat_id
          from chatdesk.queue q
         where q.chat_id <> all (v_passed)
         order by q.queued_at, q.chat_id
         limit 1
           for update skip locked;
        if v_chat_id is null then
            return null;
        end if;
        select c.chat_state into v_state from chatdesk.chats c where c.id = v_chat_id for no key update skip locked;
        if not found then
            v_passed := v_passed || v_chat_id;
            continue;
        elsif v_state <> 'waiting_assignment' then
            delete from chatdesk.queue where chat_id = v_chat_id;
            continue;
        end if;
        update chatdesk.chats
           set chat_state = 'assigned', state_reason = 'claim', assigned_operator_id = p_operator_id
         where id = v_chat_id;
        return v_chat_id;
    end loop;
end;
$$;

COMMENT ON FUNCTION chatdesk.claim_next_chat(p_operator_id uuid) IS 'Gives the operator the oldest queued chat (null: empty queue); SKIP LOCKED, capacity checked (CD003, CD004).';

CREATE FUNCTION chatdesk.clock() RETURNS timestamp with time zone
    LANGUAGE sql
    AS $$
    -- Time is an input: a test or the demo pins it with
    --   set [local] chatdesk.clock = '2026-03-29 01:30+00';
    -- Unset (or empty), it is the wall clock at the moment of the call, not the
    -- transaction's start: a message written after waiting for a chat lock gets
    -- a time after the message it waited for.
    -- Only a session whose login role can act as chatdesk_owner may pin it, so
    -- an application cannot backdate its messages.
    select case when nullif(current_setting('chatdesk.clock', true), '') is not null
                     and pg_has_role(session_user, 'chatdesk_owner', 'member')
                then current_setting('chatdesk.clock', true)::timestamptz
                else clock_timestamp() end;
$$;

COMMENT ON FUNCTION chatdesk.clock() IS 'Current time for chatdesk rules; pinned by the chatdesk.clock setting when set (tests, demo).';

CREATE FUNCTION chatdesk.close_chat(p_chat_id uuid) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    SET lock_timeout TO '5s'
    AS $$
declare
    v_chat chatdesk.chats%rowtype;
begin
    -- Closes a chat from any open state. A later user message reopens it.
    -- Refuses an unknown chat (23503) and a chat that is already closed
    -- (CD002). A web caller may close its own user's chats and the chat it
    -- holds now (web_may_close); anything else, an unknown chat included, is
    -- refused with 42501 before any lock is taken, and again under the lock
    -- should the chat have moved meanwhile. A backend narrowed to an
    -- operator closes only that operator's chats (CD001).
    if chatdesk.is_web_caller() then
        select * into v_chat from chatdesk.chats c where c.id = p_chat_id;
        if chatdesk.web_may_close(v_chat) then
            select * into v_chat from chatdesk.chats c where c.id = p_chat_id for no key update;
        end if;
        if not chatdesk.web_may_close(v_chat) then
            raise exception using errcode = '42501',
                message = format('chatdesk: %s may not close chat %s',
                                 chatdesk.web_caller_name(), coalesce(p_chat_id::text, 'null'));
        end if;
    else
        select * into v_chat from chatdesk.chats c where c.id = p_chat_id for no key update;
        if not found then
            raise exception using errcode = '23503',
                message = format('chatdesk: chat %s does not exist', coalesce(p_chat_id::text, 'null'));
        elsif chatdesk.current_operator_id() is not null
              and v_chat.assigned_operator_id is distinct from chatdesk.current_operator_id() then
            raise exception using errcode = 'CD001',
                message = format('chatdesk: operator %s is not the assignee of chat %s and cannot close it',
                                 chatdesk.current_operator_id(), p_chat_id);
        end if;
    end if;
    if v_chat.chat_state = 'closed' then
        raise exception using errcode = 'CD002',
            message = format('chatdesk: chat %s is already closed', p_chat_id);
    end if;
    update chatdesk.chats set chat_state = 'closed', state_reason = 'close' where id = p_chat_id;
end;
$$;

COMMENT ON FUNCTION chatdesk.close_chat(p_chat_id uuid) IS 'Closes a chat from any open state (CD002 when already closed).';

CREATE FUNCTION chatdesk.create_operator(p_name text, p_max_concurrent_chats integer DEFAULT 1, p_auth_user_id uuid DEFAULT NULL::uuid) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    SET lock_timeout TO '5s'
    AS $$
declare
    v_id uuid;
begin
    -- A new active operator; p_auth_user_id links a web login (the JWT's
    -- sub). Refuses a blank name or a capacity outside 1..1000 (23514), a
    -- login already linked (23505), web callers and narrowed backends (42501).
    perform chatdesk.authorize('create operators', 'backend');
    perform chatdesk.check_name('operator name', p_name);
    if p_max_concurrent_chats is null or p_max_concurrent_chats not between 1 and 1000 then
        raise exception using errcode = '23514',
            message = format('chatdesk: max_concurrent_chats must be 1 to 1000, not %s',
                             coalesce(p_max_concurrent_chats::text, 'null'));
    end if;
    insert into chatdesk.operators (name, max_concurrent_chats, auth_user_id)
    values (p_name, p_max_concurrent_chats, p_auth_user_id)
    returning id into v_id;
    return v_id;
end;
$$;

COMMENT ON FUNCTION chatdesk.create_operator(p_name text, p_max_concurrent_chats integer, p_auth_user_id uuid) IS 'A new active operator (capacity 1..1000); p_auth_user_id links a web login (the JWT''s sub).';

CREATE FUNCTION chatdesk.create_real_user(p_display_name text, p_auth_user_id uuid DEFAULT NULL::uuid) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    SET lock_timeout TO '5s'
    AS $$
declare
    v_id uuid;
begin
    -- A new real user; p_auth_user_id links a web login (the JWT's sub).
    -- Refuses a blank or over-long name (23514), a login already linked
    -- (23505), web callers and narrowed backends (42501).
    perform chatdesk.authorize('create real users', 'backend');
    perform chatdesk.check_name('display name', p_display_name);
    insert into chatdesk.real_users (display_name, auth_user_id)
    values (p_display_name, p_auth_user_id)
    returning id into v_id;
    return v_id;
end;
$$;

COMMENT ON FUNCTION chatdesk.create_real_user(p_display_name text, p_auth_user_id uuid) IS 'A new real user; p_auth_user_id links a web login (the JWT''s sub).';

CREATE FUNCTION chatdesk.current_operator_id() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$
    -- The operator a backend transaction acts for (act_as_operator), else
    -- null. Honoured only in the transaction that set it: a session-level
    -- setting, or one left from an earlier transaction, is ignored. Never
    -- for web callers: their identity is their JWT.
    select case when coalesce(current_setting('chatdesk.operator_scope', true), '') <> ''
                     and split_part(current_setting('chatdesk.operator_scope', true), ' ', 2) = chatdesk.transaction_mark()
                     and not chatdesk.is_web_caller()
                then split_part(current_setting('chatdesk.operator_scope', true), ' ', 1)::uuid end;
$$;

COMMENT ON FUNCTION chatdesk.current_operator_id() IS 'The operator this backend transaction acts for (act_as_operator), else null.';

CREATE FUNCTION chatdesk.feed_horizon() RETURNS chatdesk.changes_horizon
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    AS $$
begin
    -- The newest position pruned from the feed. (PL/pgSQL: a security
    -- definer SQL function is planned afresh on every call, 20 µs a read.)
    return (select h from chatdesk.changes_horizon h);
end;
$$;

CREATE FUNCTION chatdesk.feed_position() RETURNS text
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    AS $$
begin
    -- The feed's current position: the cursor of the newest change readable
    -- now (at least the pruned horizon). Take it, read the tables, then
    -- follow changes_since from it: every caller gets the same position, and
    -- what comes after it is scoped by changes_since. One step back along
    -- the primary key, whatever the feed's size and whoever calls. A web
    -- caller who is nobody is refused (42501).
    if chatdesk.is_web_caller() and chatdesk.web_operator_id() is null and chatdesk.web_real_user_id() is null then
        perform chatdesk.refuse_nobody('read the change feed');
    end if;
    return coalesce((select c.tx || ':' || c.id from chatdesk.changes c
                      where c.tx < pg_snapshot_xmin(pg_current_snapshot())
                      order by c.tx desc, c.id desc limit 1),
                    (select h.tx || ':' || h.id from chatdesk.changes_horizon h));
end;
$$;

COMMENT ON FUNCTION chatdesk.feed_position() IS 'The cursor of the newest change readable now: resynchronise from the tables, then follow changes_since from it.';

CREATE FUNCTION chatdesk.feed_retention() RETURNS interval
    LANGUAGE sql STABLE
    AS $$
    select coalesce((select value::interval from chatdesk.settings where key = 'feed_retention'), interval '7 days');
$$;

CREATE FUNCTION chatdesk.feed_start(p_cursor text, p_limit integer) RETURNS chatdesk.changes_horizon
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    AS $$
declare
    v_from chatdesk.changes_horizon := chatdesk.parse_cursor(p_cursor);
    v_horizon chatdesk.changes_horizon;
begin
    -- Where a read of the feed starts: p_cursor parsed (23514 if malformed),
    -- refused with CD006 when it is older than the feed keeps; and p_limit
    -- checked (1 to 10000). Every reader of the feed starts here.
    if p_limit is null or p_limit not between 1 and 10000 then
        raise exception using errcode = '23514',
            message = format('chatdesk: changes_since takes 1 to 10000 rows at a time, not %s',
                             coalesce(p_limit::text, 'null'));
    end if;
    v_horizon := chatdesk.feed_horizon();
    if p_cursor is not null and (v_from.tx, v_from.id) < (v_horizon.tx, v_horizon.id) then
        raise exception using errcode = 'CD006',
            message = format('chatdesk: cursor %s is older than the change feed keeps (feed_retention)', p_cursor),
            hint = 'Resynchronise: take chatdesk.feed_position(), read the tables, then continue from that position.';
    end if;
    return v_from;
end;
$$;

CREATE FUNCTION chatdesk.heartbeat(p_operator_id uuid) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    SET lock_timeout TO '5s'
    AS $$
declare
    v_now timestamptz := chatdesk.clock();
begin
    -- Marks the operator as present: idle release measures from the latest
    -- of this, their last message and their last claim.
    perform chatdesk.authorize('send a heartbeat', 'operator', p_operator_id);
    update chatdesk.operators
       set last_seen_at = v_now,
           last_active_at = greatest(last_active_at, v_now)
     where id = p_operator_id;
    if not found then
        raise exception using errcode = '23503',
            message = format('chatdesk: operator %s does not exist', coalesce(p_operator_id::text, 'null'));
    end if;
end;
$$;

COMMENT ON FUNCTION chatdesk.heartbeat(p_operator_id uuid) IS 'Marks the operator as present (last_seen_at); idle release measures from it.';

CREATE FUNCTION chatdesk.histogram(p_seconds numeric[]) RETURNS integer[]
    LANGUAGE sql IMMUTABLE
    AS $$
    -- How many of p_seconds fall in each bucket of time_buckets().
    select array_agg(coalesce(n, 0) order by b)
      from generate_series(0, cardinality(chatdesk.time_buckets())) b
      left join (select width_bucket(s, chatdesk.time_buckets()) as b, count(*)::int as n
                   from unnest(p_seconds) s
                  where s is not null
                  group by 1) counted using (b);
$$;

CREATE FUNCTION chatdesk.holds_chat(p_chat_id uuid, p_operator_id uuid) RETURNS boolean
    LANGUAGE plpgsql STABLE
    AS $$
begin
    -- Whether operator p_operator_id holds chat p_chat_id now (no lock: a
    -- first look; the message trigger decides under the chat's lock).
    -- PL/pgSQL: its plan is kept for the session (a SQL function's is made
    -- afresh on every web answer; tests/test_hot_paths.py).
    return exists (select 1 from chatdesk.chats c
                    where c.id = p_chat_id and c.chat_state = 'assigned' and c.assigned_operator_id = p_operator_id);
end;
$$;

CREATE FUNCTION chatdesk.is_blank(p_text text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    -- True when p_text has nothing a person can see. Invisible, by Unicode
    -- category: control (Cc), format (Cf: U+200B, U+FEFF, the Egyptian and
    -- musical format controls ...) and space separators (Zs, Zl, Zp); and the
    -- variation selectors (U+FE00..FE0F, U+E0100..E01EF, Mongolian FVS), the
    -- whole tag block (U+E0000..E007F), the Hangul fillers, U+034F, U+17B4/5
    -- and the blank braille pattern U+2800. PostgreSQL's regular expressions
    -- know no categories: the class below is generated from Python's
    -- unicodedata, and tests/test_bad_input.py checks every code point of it
    -- against that (and prints the class anew when Unicode grows). Null is blank.
    select p_text is null
        or p_text !~ '[^\u0001-\u0020\u007f-\u00a0\u00ad\u034f\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u115f-\u1160\u1680\u17b4-\u17b5\u180b-\u180f\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u2800\u3000\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e007f\U000e0100-\U000e01ef]';
$$;

CREATE FUNCTION chatdesk.is_interval_between(p_text text, p_low interval, p_high interval) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE
    AS $$
begin
    -- Whether p_text is an interval from p_low to p_high (false when it is no interval at all).
    return p_text::interval between p_low and p_high;
exception when others then
    return false;
end;
$$;

CREATE FUNCTION chatdesk.is_unscoped_backend() RETURNS boolean
    LANGUAGE sql STABLE
    AS $$
    -- A backend acting for everyone: not a web caller (a role that inherits
    -- both chatdesk_app and chatdesk_web is one) and not narrowed to an
    -- operator by act_as_operator(). The backend policies' "everything".
    select not chatdesk.is_web_caller() and chatdesk.current_operator_id() is null;
$$;

CREATE FUNCTION chatdesk.is_web_caller() RETURNS boolean
    LANGUAGE sql STABLE
    AS $$
    -- True for a caller that acts with chatdesk_web's rights: it runs as
    -- chatdesk_web (PostgREST's `set local role`) or as a role that inherits
    -- it (Supabase's `authenticated`). A role that inherits both chatdesk_web
    -- and chatdesk_app is web: fail closed. Not web: a superuser
    -- (is_superuser follows `set role`, not security definer), and a role
    -- that holds chatdesk_web only to administer it (on PostgreSQL 16+ its
    -- creator does, without inheriting it).
    select current_setting('is_superuser') = 'off'
       and pg_has_role(chatdesk.caller_role(), 'chatdesk_web', 'usage');
$$;

CREATE FUNCTION chatdesk.jwt_subject() RETURNS uuid
    LANGUAGE plpgsql STABLE
    AS $$
declare
    v_claims text := current_setting('request.jwt.claims', true);
begin
    -- The `sub` of this request's JWT claims as a uuid; null when there are
    -- no claims, they are not JSON, or sub is missing or not a uuid.
    if v_claims is null or v_claims = '' then
        return null;
    end if;
    return chatdesk.login_of(v_claims::jsonb ->> 'sub');
exception when others then  -- malformed claims identify nobody
    return null;
end;
$$;

CREATE FUNCTION chatdesk.link_auth_user(p_operator_id uuid, p_real_user_id uuid, p_auth_user_id uuid) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    SET lock_timeout TO '5s'
    AS $$
begin
    -- Links (or with p_auth_user_id null, unlinks) a web login to an existing
    -- operator or real user: name exactly one of the two. Refuses an unknown
    -- person (23503), a login already linked elsewhere (23505), web callers
    -- and narrowed backends (42501).
    perform chatdesk.authorize('link web logins', 'backend');
    if (p_operator_id is null) = (p_real_user_id is null) then
        raise exception using errcode = '23514',
            message = format('chatdesk: name either an operator or a real user to link, not %s and %s',
                             coalesce(p_operator_id::text, 'null'), coalesce(p_real_user_id::text, 'null'));
    end if;
    if p_operator_id is not null then
        update chatdesk.operators set auth_user_id = p_auth_user_id where id = p_operator_id;
    else
        update chatdesk.real_users set auth_user_id = p_auth_user_id where id = p_real_user_id;
    end if;
    if not found then
        raise exception using errcode = '23503',
            message = format('chatdesk: %s does not exist',
                             coalesce('operator ' || p_operator_id, 'real user ' || p_real_user_id));
    end if;
end;
$$;

COMMENT ON FUNCTION chatdesk.link_auth_user(p_operator_id uuid, p_real_user_id uuid, p_auth_user_id uuid) IS 'Links a web login (the JWT''s sub) to an existing operator or real user (name one); null unlinks.';

CREATE FUNCTION chatdesk.login_of(p_sub text) RETURNS uuid
    LANGUAGE plpgsql IMMUTABLE
    AS $$
begin
    -- A JWT's `sub` as a login (operators.auth_user_id,
    -- real_users.auth_user_id): PostgreSQL's own reading of it as a uuid;
    -- null when it is none. The one place of this rule: jwt_subject() for
    -- web callers, web_identity() for chatdesk serve.
    return p_sub::uuid;
exception when invalid_text_representation then
    return null;
end;
$$;

CREATE FUNCTION chatdesk.max_open_chats_per_user() RETURNS integer
    LANGUAGE sql STABLE
    AS $$
    select coalesce((select value::int from chatdesk.settings where key = 'max_open_chats_per_user'), 3);
$$;

COMMENT ON FUNCTION chatdesk.max_open_chats_per_user() IS 'How many chats that are not closed one real user may have (settings.max_open_chats_per_user, default 3).';

CREATE FUNCTION chatdesk.may_have_web_identity() RETURNS boolean
    LANGUAGE sql STABLE
    AS $$
    -- Whether a web caller can be anyone at all: not when its role also
    -- inherits chatdesk_app or chatdesk_reporting, whose table-wide grants
    -- would undo the columns withheld from web callers (other identities'
    -- ids). Such a role is a web caller (is_web_caller) who is nobody: it
    -- sees nothing and is refused everything. Fail closed: chatdesk
    -- create-login never makes one.
    select chatdesk.is_web_caller()
       and not pg_has_role(chatdesk.caller_role(), 'chatdesk_app', 'usage')
       and not pg_has_role(chatdesk.caller_role(), 'chatdesk_reporting', 'usage');
$$;

CREATE FUNCTION chatdesk.messages__accept() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    AS $$
declare
    v_chat      chatdesk.chats%rowtype;
    v_next      text;
    v_meanwhile boolean := false;
    v_scope     uuid;
begin
    -- Locks the chat row, so writes to one chat serialise and no interleaving
    -- can lose a message; then, under that lock:
    --   * a repeated client_message_id of the same sender (the chat's user, or
    --     that operator) writes nothing (returns null); client ids are kept
    --     per sender, so one sender's id never matches another's message;
    --   * refuses: unknown chat/operator/seen message (23503), empty, blank or
    --     over-long body and misplaced fields (23514), an operator who is not
    --     the assignee (CD001), an operator message to a closed chat (CD005);
    --     a backend narrowed to an operator writing as anyone else (42501);
    --   * hands out the id and created_at, so id order is commit order per chat;
    --   * moves the chat along the state table and keeps its counters exact.
    if new.sender_type is null or new.sender_type not in ('real_user', 'operator', 'system') then
        raise exception using errcode = '23514',
            message = format('chatdesk: sender_type %s is not real_user, operator or system (chat %s)',
                             coalesce(quote_literal(new.sender_type), 'null'), new.chat_id);
    end if;
    if chatdesk.is_blank(new.body) or length(new.body) > 10000 then
        raise exception using errcode = '23514',
            message = format('chatdesk: message body for chat %s must have 1 to 10000 characters, not %s',
                             new.chat_id,
                             case when new.body is null then 'null'
                                  when length(new.body) > 10000 then length(new.body)::text
                                  else 'blank' end);
    end if;

    v_scope := chatdesk.current_operator_id();
    if v_scope is not null
       and (new.sender_type <> 'operator' or new.handled_by_operator_id is distinct from v_scope) then
        raise exception using errcode = '42501',
            message = format('chatdesk: this session acts for operator %s and cannot write a %s message as %s (chat %s)',
                             v_scope, new.sender_type,
                             coalesce(new.handled_by_operator_id::text, 'nobody'), new.chat_id);
    end if;

    select * into v_chat from chatdesk.chats where id = new.chat_id for no key update;
    if not found then
        raise exception using errcode = '23503',
            message = format('chatdesk: chat %s does not exist', coalesce(new.chat_id::text, 'null'));
    end if;

    -- A retry: the same sender's own earlier message with this client id
    -- (the index is per sender). Looked up only among the sender's own
    -- messages, so a caller learns nothing of anyone else's. Two IFs, not
    -- one AND: with the test in one expression PostgreSQL plans it afresh on
    -- every message (a custom plan folds a null client id to false, and
    -- always looks cheaper than the generic one), 6 µs each time.
    if new.client_message_id is not null then
        if exists (select 1 from chatdesk.messages m
                    where m.chat_id = new.chat_id and m.client_message_id = new.client_message_id
                      and m.sender_type = new.sender_type
                      and (case when new.handled_by_operator_id is null then m.handled_by_operator_id is null
                                else m.handled_by_operator_id = new.handled_by_operator_id end)) then
            return null;  -- the first message stands
        end if;
    end if;

    if new.sender_type = 'operator' then
        if v_chat.assigned_operator_id is distinct from new.handled_by_operator_id then
            perform chatdesk.refuse_not_assignee(v_chat, new.chat_id, new.handled_by_operator_id, 'write to');
        end if;
    elsif new.handled_by_operator_id is not null then
        raise exception using errcode = '23514',
            message = format('chatdesk: a %s message cannot carry handled_by_operator_id %s (chat %s)',
                             new.sender_type, new.handled_by_operator_id, new.chat_id);
    end if;

    if new.seen_message_id is not null then
        if new.sender_type <> 'operator' then
            raise exception using errcode = '23514',
                message = format('chatdesk: only operator messages carry seen_message_id (chat %s)', new.chat_id);
        end if;
        if not exists (select 1 from chatdesk.messages
                        where chat_id = new.chat_id and id = new.seen_message_id) then
            raise exception using errcode = '23503',
                message = format('chatdesk: seen message %s of operator %s is not a message of chat %s',
                                 new.seen_message_id, new.handled_by_operator_id, new.chat_id);
        end if;
        -- The reply race: the user wrote after what the operator saw.
        v_meanwhile := v_chat.last_user_message_id > new.seen_message_id;
    end if;

    new.id := nextval('chatdesk.messages_id_seq');
    new.created_at := chatdesk.clock();
    new.reply_started_at := null;

    -- The message's change-feed row, before the chat's update below: a state
    -- change it causes follows it, in the feed and in the chat's sequence.
    v_chat.change_seq := v_chat.change_seq + 1;
    v_chat.change_tx := chatdesk.publish_change(v_chat, 'message', new.id, null);

    if new.sender_type = 'real_user' then
        -- reopening a closed chat opens one more of the user's chats
        if v_chat.chat_state = 'closed' then
            perform chatdesk.check_open_chats(v_chat.real_user_id, v_chat.id);
        end if;
        -- where the state table sends a chat on a user message (null: it stays)
        select t.to_state into v_next from chatdesk.state_transitions t
         where t.event = 'user_message' and t.from_state = v_chat.chat_state;
        update chatdesk.chats
           set message_count = message_count + 1,
               change_seq = v_chat.change_seq,
               change_tx = v_chat.change_tx,
               last_message_at = greatest(last_message_at, new.created_at),
               last_user_message_id = new.id,
               waiting_since = coalesce(waiting_since, new.created_at),
               chat_state = coalesce(v_next, chat_state),
               state_reason = case when v_next is null then state_reason else 'user_message' end,
               queued_at = case when v_next is null then queued_at else new.created_at end
         where id = new.chat_id;
    elsif new.sender_type = 'operator' then
        -- This message answers the run of real-user messages that began at
        -- waiting_since (the reply time the daily stats aggregate).
        new.reply_started_at := v_chat.waiting_since;
        -- The conversation's first answer (first response time, credited to this operator).
        if v_chat.awaiting_first_response then
            update chatdesk.conversations
               set first_response_at = new.created_at, first_response_operator_id = new.handled_by_operator_id
             where chat_id = new.chat_id and id = v_chat.conversation_id;
        end if;
        -- Having seen everything, the operator hands the chat back to the user;
        -- with a newer user message unseen, the chat stays with the operator.
        v_next := null;
        if not v_meanwhile then
            select t.to_state into v_next from chatdesk.state_transitions t
             where t.event = 'operator_reply' and t.from_state = v_chat.chat_state;
        end if;
        update chatdesk.chats
           set message_count = message_count + 1,
               change_seq = v_chat.change_seq,
               change_tx = v_chat.change_tx,
               last_message_at = greatest(last_message_at, new.created_at),
               waiting_since = null,
               awaiting_first_response = false,
               chat_state = coalesce(v_next, chat_state),
               state_reason = case when v_next is null then state_reason else 'operator_reply' end
         where id = new.chat_id;
        update chatdesk.operators
           set total_messages = total_messages + 1,
               last_active_at = greatest(last_active_at, new.created_at)
         where id = new.handled_by_operator_id;
        -- Hands send_operator_message its result without a second look at
        -- the chat: "<message id>,<chat state>,<user replied meanwhile>".
        perform set_config('chatdesk.operator_message_result',
                           concat_ws(',', new.id, coalesce(v_next, v_chat.chat_state), v_meanwhile), true);
    else
        update chatdesk.chats
           set message_count = message_count + 1,
               change_seq = v_chat.change_seq,
               change_tx = v_chat.change_tx,
               last_message_at = greatest(last_message_at, new.created_at)
         where id = new.chat_id;
    end if;
    return new;
end;
$$;

CREATE FUNCTION chatdesk.messages__after_delete() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    AS $$
begin
    -- Set-based, once per statement: a purge of a long chat costs one recount
    -- per chat, not one per deleted message.
    perform chatdesk.recount_chats(array(select distinct chat_id from deleted));
    update chatdesk.operators o
       set total_messages = o.total_messages - d.n
      from (select handled_by_operator_id as id, count(*) as n
              from deleted
             where handled_by_operator_id is not null
             group by 1
             order by 1) d
     where o.id = d.id;
    return null;
end;
$$;

CREATE FUNCTION chatdesk.messages__after_truncate() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    AS $$
begin
    -- With every message gone, every counter is zero.
    update chatdesk.chats
       set message_count = 0, last_message_at = null, last_user_message_id = null, waiting_since = null
     where message_count <> 0 or last_message_at is not null or waiting_since is not null;
    update chatdesk.operators set total_messages = 0 where total_messages <> 0;
    return null;
end;
$$;

CREATE FUNCTION chatdesk.messages__after_update() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    AS $$
begin
    -- Moves operators.total_messages when messages are credited to another operator.
    update chatdesk.operators o
       set total_messages = o.total_messages + d.delta
      from (select id, sum(delta) as delta
              from (select n.handled_by_operator_id as id, 1 as delta
                      from new_rows n join old_rows o using (id)
                     where n.handled_by_operator_id is distinct from o.handled_by_operator_id
                    union all
                    select o.handled_by_operator_id, -1
                      from new_rows n join old_rows o using (id)
                     where n.handled_by_operator_id is distinct from o.handled_by_operator_id) x
             where id is not null
             group by id
            having sum(delta) <> 0
             order by id) d
     where o.id = d.id;
    return null;
end;
$$;

CREATE FUNCTION chatdesk.messages__guard_update() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
begin
    -- A message is history: only its body (still 1..10000 characters) and the
    -- operator it is credited to may change. Everything else is refused.
    if new.id <> old.id or new.chat_id <> old.chat_id or new.sender_type <> old.sender_type
       or new.created_at <> old.created_at
       or new.client_message_id is distinct from old.client_message_id
       or new.seen_message_id is distinct from old.seen_message_id
       or new.reply_started_at is distinct from old.reply_started_at then
        raise exception using errcode = '23514',
            message = format('chatdesk: message %s (chat %s%s): only body and handled_by_operator_id may change',
                             old.id, old.chat_id,
                             case when new.chat_id is distinct from old.chat_id then ', not to chat ' || coalesce(new.chat_id::text, 'null') else '' end);
    end if;
    if chatdesk.is_blank(new.body) then
        raise exception using errcode = '23514',
            message = format('chatdesk: message %s (chat %s): body must not be blank', old.id, old.chat_id);
    end if;
    return new;
end;
$$;

CREATE FUNCTION chatdesk.parse_cursor(p_cursor text) RETURNS chatdesk.changes_horizon
    LANGUAGE plpgsql IMMUTABLE
    AS $_$
begin
    -- A cursor is "<transaction>:<id>" as changes_since hands it out; null
    -- is the very beginning. Anything else is refused (23514).
    if p_cursor is null then
        return row(true, '0'::xid8, 0)::chatdesk.changes_horizon;
    end if;
    if p_cursor !~ '^[0-9]{1,19}:[0-9]{1,19}$' then
        raise exception using errcode = '23514',
            message = format('chatdesk: %L is not a change-feed cursor (the cursor column of changes_since)', p_cursor);
    end if;
    return row(true, split_part(p_cursor, ':', 1)::xid8, split_part(p_cursor, ':', 2)::bigint)::chatdesk.changes_horizon;
exception when numeric_value_out_of_range or invalid_text_representation then  -- 19 digits past bigint or xid8
    raise exception using errcode = '23514',
        message = format('chatdesk: %L is not a change-feed cursor (the cursor column of changes_since)', p_cursor);
end;
$_$;

CREATE FUNCTION chatdesk.prune_changes() RETURNS integer
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    AS $$
    -- Deletes the feed rows older than feed_retention and remembers the
    -- newest position deleted: a cursor before it gets CD006. For backends
    -- (chatdesk schedule runs it).
    select chatdesk.authorize('prune the change feed', 'backend');
    with gone as (
        delete from chatdesk.changes
         where created_at < chatdesk.clock() - chatdesk.feed_retention()
        returning tx, id
    ), newest as (
        select tx, id from gone order by tx desc, id desc limit 1
    ), moved as (
        update chatdesk.changes_horizon h set tx = n.tx, id = n.id
          from newest n where (n.tx, n.id) > (h.tx, h.id)
    )
    select count(*)::int from gone;
$$;

COMMENT ON FUNCTION chatdesk.prune_changes() IS 'Deletes change-feed rows older than feed_retention (chatdesk schedule runs it).';

CREATE TABLE chatdesk.chats (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    real_user_id uuid NOT NULL,
    chat_state text DEFAULT 'waiting_real_user_reply'::text NOT NULL,
    state_reason text DEFAULT 'start'::text NOT NULL,
    assigned_operator_id uuid,
    assigned_at timestamp with time zone,
    message_count integer DEFAULT 0 NOT NULL,
    last_message_at timestamp with time zone,
    queued_at timestamp with time zone,
    last_user_message_id bigint,
    waiting_since timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    change_seq integer DEFAULT 0 NOT NULL,
    change_tx xid8 DEFAULT '0'::xid8 NOT NULL,
    conversation_id bigint,
    awaiting_first_response boolean DEFAULT false NOT NULL,
    CONSTRAINT chats_assignee_check CHECK (((chat_state = 'assigned'::text) = (assigned_operator_id IS NOT NULL))),
    CONSTRAINT chats_chat_state_check CHECK ((chat_state = ANY (ARRAY['waiting_real_user_reply'::text, 'waiting_assignment'::text, 'assigned'::text, 'closed'::text])))
)
WITH (fillfactor='80');

COMMENT ON TABLE chatdesk.chats IS 'Conversations between a real user and operators. chat_state follows chatdesk.state_transitions; write through the API functions.';

COMMENT ON COLUMN chatdesk.chats.chat_state IS 'waiting_real_user_reply (new, or answered), waiting_assignment (queued), assigned (one operator owns it), closed.';

COMMENT ON COLUMN chatdesk.chats.state_reason IS 'The event that put the chat in chat_state; a change must name its event.';

COMMENT ON COLUMN chatdesk.chats.assigned_operator_id IS 'The operator who owns the chat; null unless assigned.';

COMMENT ON COLUMN chatdesk.chats.message_count IS 'Number of the chat''s messages; exact, maintained by triggers.';

COMMENT ON COLUMN chatdesk.chats.last_message_at IS 'created_at of the chat''s newest message; maintained by triggers.';

COMMENT ON COLUMN chatdesk.chats.queued_at IS 'When the chat last entered the queue; claims take the oldest first, a released chat keeps it.';

COMMENT ON COLUMN chatdesk.chats.change_seq IS 'How many changes (messages, state changes) the chat has had: the chat_seq of its newest change.';

CREATE FUNCTION chatdesk.publish_change(p_chat chatdesk.chats, p_kind text, p_message_id bigint, p_from_state text) RETURNS xid8
    LANGUAGE plpgsql
    AS $$
declare
    v_tx xid8 := greatest(pg_current_xact_id(), p_chat.change_tx);
begin
    -- One change-feed row for chat p_chat as it is after the change (its
    -- change_seq already bumped by the caller, under the chat's row lock),
    -- and the wake-up. Returns the row's position, which the caller stores
    -- as the chat's change_tx.
    --
    -- The wake-up is a NOTIFY with a constant payload, sent by at most one
    -- transaction every 50 ms: NOTIFY takes a database-wide lock at commit,
    -- which serialises every notifying transaction (measured: one NOTIFY per
    -- transaction cost 30% of the message throughput at 8 clients). The
    -- writer that finds the last wake-up older than 50 ms, and the wake-up
    -- row not locked by another writer, sends it; the rest skip at once.
    -- Readers poll as well, so a change committed just after a wake-up is
    -- read at the next one or at the poll. chatdesk.feed_notify = off (a
    -- session setting, for measuring) leaves the wake-up out.
    insert into chatdesk.changes (tx, chat_id, chat_seq, kind, message_id, chat_state, from_state,
                                  operator_id, real_user_id, created_at)
    values (v_tx, p_chat.id, p_chat.change_seq, p_kind, p_message_id, p_chat.chat_state, p_from_state,
            p_chat.assigned_operator_id, p_chat.real_user_id, chatdesk.clock());
    if coalesce(current_setting('chatdesk.feed_notify', true), '') <> 'off' then
        perform 1 from chatdesk.feed_wakeup
         where sent_at < clock_timestamp() - interval '50 milliseconds'
           for update skip locked;
        if found then
            update chatdesk.feed_wakeup set sent_at = clock_timestamp();
            perform pg_notify('chatdesk', '');
        end if;
    end if;
    return v_tx;
end;
$$;

CREATE FUNCTION chatdesk.recount_chats(p_chat_ids uuid[]) RETURNS void
    LANGUAGE plpgsql
    AS $$
declare
    v_chat_id uuid;
begin
    -- Recomputes the counters and bookkeeping of the given chats from their
    -- messages. Locks the chats (in id order, so two recounts cannot
    -- deadlock) before reading, so the recount sees every committed message;
    -- one chat per statement, as a sharded chats table needs.
    for v_chat_id in select distinct x from unnest(p_chat_ids) x where x is not null order by 1 loop
        perform 1 from chatdesk.chats c where c.id = v_chat_id for no key update;
    end loop;
    update chatdesk.chats c
       set message_count = a.message_count,
           last_message_at = a.last_message_at,
           last_user_message_id = a.last_user_message_id,
           waiting_since = a.waiting_since
      from chatdesk.chat_counters_actual a
     where a.chat_id = c.id
       and c.id = any (p_chat_ids);
end;
$$;

CREATE FUNCTION chatdesk.recount_operators(p_operator_ids uuid[]) RETURNS void
    LANGUAGE plpgsql
    AS $$
begin
    -- Recomputes total_messages and assigned_chats of the given operators.
    -- Blocks claims and releases for the rest of the transaction (share row
    -- exclusive on chats), and locks the operators in id order, so the
    -- recount cannot race a claim and two recounts cannot deadlock.
    lock table chatdesk.chats in share row exclusive mode;
    perform 1 from chatdesk.operators where id = any (p_operator_ids) order by id for no key update;
    update chatdesk.operators o
       set total_messages = a.total_messages, assigned_chats = a.assigned_chats
      from chatdesk.operator_counters_actual a
     where a.operator_id = o.id
       and o.id = any (p_operator_ids)
       and (o.total_messages, o.assigned_chats) is distinct from (a.total_messages, a.assigned_chats);
end;
$$;

CREATE FUNCTION chatdesk.refuse_nobody(p_action text) RETURNS void
    LANGUAGE plpgsql
    AS $$
begin
    -- A web caller without a known identity is refused everything (42501).
    raise exception using errcode = '42501',
        message = format('chatdesk: a web caller without a known identity may not %s', p_action);
end;
$$;

CREATE FUNCTION chatdesk.refuse_not_assignee(p_chat chatdesk.chats, p_chat_id uuid, p_operator_id uuid, p_action text) RETURNS void
    LANGUAGE plpgsql STABLE
    AS $$
begin
    -- Says why p_operator_id may not p_action ('write to', 'release') chat
    -- p_chat_id (its row p_chat, all null when there is none), of which it is
    -- not the assignee: unknown chat or operator (23503), closed chat when
    -- writing (CD005), someone else's or a queued chat (CD001, naming its
    -- state and assignee). A web caller is told only CD001 with its own id
    -- and the chat's it passed: nothing of a chat it cannot see.
    if chatdesk.is_web_caller() then
        raise exception using errcode = 'CD001',
            message = format('chatdesk: operator %s is not the assignee of chat %s',
                             p_operator_id, coalesce(p_chat_id::text, 'null'));
    end if;
    if p_chat.id is null then
        raise exception using errcode = '23503',
            message = format('chatdesk: chat %s does not exist (operator %s)',
                             coalesce(p_chat_id::text, 'null'), coalesce(p_operator_id::text, 'null'));
    end if;
    if p_operator_id is null or not exists (select 1 from chatdesk.operators where id = p_operator_id) then
        raise exception using errcode = '23503',
            message = format('chatdesk: operator %s does not exist (chat %s)',
                             coalesce(p_operator_id::text, 'null'), p_chat.id);
    end if;
    if p_chat.chat_state = 'closed' and p_action = 'write to' then
        raise exception using errcode = 'CD005',
            message = format('chatdesk: chat %s is closed; operator %s cannot write to it', p_chat.id, p_operator_id);
    end if;
    raise exception using errcode = 'CD001',
        message = format('chatdesk: operator %s is not the assignee of chat %s (%s, assignee %s) and cannot %s it',
                         p_operator_id, p_chat.id, p_chat.chat_state,
                         coalesce(p_chat.assigned_operator_id::text, 'none'), p_action);
end;
$$;

CREATE FUNCTION chatdesk.release_chat(p_chat_id uuid, p_operator_id uuid) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    SET lock_timeout TO '5s'
    AS $$
declare
    v_chat chatdesk.chats%rowtype;
begin
    -- The assignee hands the chat back; it returns to its old place in the
    -- queue (queued_at kept). Refuses an unknown chat or operator (23503),
    -- anyone but the assignee (CD001), and acting as another operator
    -- (42501). A web caller hears only "not the assignee" about chats it does
    -- not hold, unknown ones included.
    perform chatdesk.authorize('release chats', 'operator', p_operator_id);
    -- a web caller is refused a chat it does not hold before any lock is taken
    if chatdesk.is_web_caller() and not chatdesk.holds_chat(p_chat_id, p_operator_id) then
        perform chatdesk.refuse_not_assignee(null, p_chat_id, p_operator_id, 'release');
    end if;
    select * into v_chat from chatdesk.chats where id = p_chat_id for no key update;
    if v_chat.assigned_operator_id is distinct from p_operator_id then
        perform chatdesk.refuse_not_assignee(v_chat, p_chat_id, p_operator_id, 'release');
    end if;
    update chatdesk.chats
       set chat_state = 'waiting_assignment', state_reason = 'release'
     where id = p_chat_id;
end;
$$;

COMMENT ON FUNCTION chatdesk.release_chat(p_chat_id uuid, p_operator_id uuid) IS 'The assignee hands the chat back to its old place in the queue.';

CREATE FUNCTION chatdesk.release_idle_chats(p_idle_after interval DEFAULT '00:05:00'::interval) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    SET lock_timeout TO '5s'
    AS $$
declare
    v_cutoff    timestamptz;
    v_candidate record;
    v_count     int;
    v_chats     uuid[];
    v_operators uuid[];
begin
    -- Returns to the queue (old place, reason idle) every assigned chat whose
    -- operator has not been active (heartbeat, message, claim) since
    -- clock() - p_idle_after. SKIP LOCKED lets several schedulers run at once:
    -- a chat being written to right now is not idle, and each chat is released
    -- by one of them. Refuses a missing, non-positive or absurd (over 30
    -- days) interval (23514); web callers and narrowed backends (42501).
    perform chatdesk.authorize('release idle chats', 'backend');
    if p_idle_after is null or p_idle_after <= interval '0' or p_idle_after > interval '30 days' then
        raise exception using errcode = '23514',
            message = format('chatdesk: idle_after must be a positive interval of at most 30 days, not %s',
                             coalesce(p_idle_after::text, 'null'));
    end if;
    v_cutoff := chatdesk.clock() - p_idle_after;

    -- Take the idle chats one by one (SKIP LOCKED: a chat being written to
    -- right now is not idle; one chat per lock, as a sharded table needs),
    -- then their operators in id order, as every statement that holds
    -- several operator rows does, so concurrent sweeps cannot deadlock.
    v_chats := '{}';
    v_operators := '{}';
    for v_candidate in
        select c.id, c.assigned_operator_id
          from chatdesk.chats c
          join chatdesk.operators o on o.id = c.assigned_operator_id
         where c.chat_state = 'assigned'
           and coalesce(o.last_active_at, '-infinity') < v_cutoff
    loop
        perform 1 from chatdesk.chats c
         where c.id = v_candidate.id and c.chat_state = 'assigned'
           and c.assigned_operator_id = v_candidate.assigned_operator_id
           for no key update skip locked;
        if found then
            v_chats := v_chats || v_candidate.id;
            v_operators := v_operators || v_candidate.assigned_operator_id;
        end if;
    end loop;
    perform 1 from chatdesk.operators where id = any (v_operators) order by id for no key update;
    update chatdesk.chats
       set chat_state = 'waiting_assignment', state_reason = 'idle'
     where id = any (v_chats);
    get diagnostics v_count = row_count;
    return v_count;
end;
$$;

COMMENT ON FUNCTION chatdesk.release_idle_chats(p_idle_after interval) IS 'Returns to the queue every chat whose operator has been silent longer than p_idle_after; returns how many.';

CREATE FUNCTION chatdesk.require_own_chat(p_chat_id uuid, p_action text) RETURNS void
    LANGUAGE plpgsql STABLE
    AS $$
begin
    -- For a web caller: refuses (42501) unless p_chat_id is a chat of the
    -- caller's own real user. An unknown chat gets the same answer as
    -- another's, so a refusal tells nothing about chats the caller cannot see.
    -- Backends pass (the message trigger checks operator-narrowed ones);
    -- hot paths test is_web_caller() before calling it at all.
    if chatdesk.is_web_caller()
       and not exists (select 1 from chatdesk.chats c
                        where c.id = p_chat_id and c.real_user_id = chatdesk.web_real_user_id()) then
        raise exception using errcode = '42501',
            message = format('chatdesk: %s may not %s chat %s',
                             chatdesk.web_caller_name(), p_action, coalesce(p_chat_id::text, 'null'));
    end if;
end;
$$;

CREATE FUNCTION chatdesk.rollup_operator_stats(p_date date) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    SET lock_timeout TO '5s'
    AS $$
begin
    -- Every operator's row for p_date in one set-based pass; returns rows
    -- written. One rollup at a time: waits (up to lock_timeout) for another
    -- rollup's transaction. For backends only (42501).
    perform chatdesk.authorize('roll up stats', 'backend');
    perform 1 from chatdesk.runner_locks where name = 'rollup' for update;
    return chatdesk.write_operator_stats(p_date, null);
end;
$$;

COMMENT ON FUNCTION chatdesk.rollup_operator_stats(p_date date) IS 'Every operator''s operator_daily_stats row for the day, in one set-based pass; returns rows written.';

CREATE FUNCTION chatdesk.sample_queue() RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    AS $$
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

COMMENT ON FUNCTION chatdesk.sample_queue() IS 'Records the queue''s depth now in queue_samples; returns how many chats wait.';

CREATE FUNCTION chatdesk.scheduled_rollup() RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    SET lock_timeout TO '5s'
    AS $$
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

COMMENT ON FUNCTION chatdesk.scheduled_rollup() IS 'Today''s rollup, and yesterday''s until one after midnight closed it; skips while another rollup runs (pg_cron''s job).';

CREATE FUNCTION chatdesk.send_operator_message(p_chat_id uuid, p_operator_id uuid, p_body text, p_client_message_id text DEFAULT NULL::text, p_seen_message_id bigint DEFAULT NULL::bigint) RETURNS TABLE(message_id bigint, chat_state text, user_replied_meanwhile boolean)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    SET lock_timeout TO '5s'
    AS $$
#variable_conflict use_column
declare
    v_id     bigint;
    v_seen   bigint := p_seen_message_id;
    v_result text[];
begin
    -- The assignee's answer. p_seen_message_id is the newest message the
    -- operator had seen (null: everything). If the user wrote after it, the
    -- chat stays assigned and user_replied_meanwhile is true; otherwise the
    -- chat goes back to waiting_real_user_reply. A retry with the same client
    -- id returns the first message, even after the chat has moved on. Only
    -- that operator, or a backend, may act as p_operator_id (42501).
    --
    -- For a web caller (docs/contract.md): p_seen_message_id is required
    -- (23514), or a client that leaves it out would give up the reply race;
    -- a chat it does not hold is refused (CD001) before any lock, unless this
    -- is a retry of its own, which returns the message id alone (nothing of
    -- the chat's present), also without a lock.
    perform chatdesk.authorize('write messages', 'operator', p_operator_id);
    if chatdesk.is_web_caller() then
        if p_seen_message_id is null then
            raise exception using errcode = '23514',
                message = format('chatdesk: operator %s must pass p_seen_message_id (the newest message it has seen of chat %s)',
                                 p_operator_id, coalesce(p_chat_id::text, 'null')),
                hint = 'Without it the answer would hand the chat back even if the user wrote meanwhile.';
        end if;
        if not chatdesk.holds_chat(p_chat_id, p_operator_id) then
            -- its own retry: the first message's id, nothing of the chat's
            -- present, and no lock on a chat someone else may hold now
            select m.id into v_id from chatdesk.messages m
             where m.chat_id = p_chat_id and m.client_message_id = p_client_message_id
               and m.sender_type = 'operator' and m.handled_by_operator_id = p_operator_id;
            if v_id is null then
                perform chatdesk.refuse_not_assignee(null, p_chat_id, p_operator_id, 'write to');
            end if;
            message_id := v_id;
            return next;
            return;
        end if;
    end if;
    insert into chatdesk.messages (chat_id, sender_type, handled_by_operator_id, body,
                                   client_message_id, seen_message_id)
    values (p_chat_id, 'operator', p_operator_id, p_body, p_client_message_id, p_seen_message_id)
    returning id into v_id;
    if v_id is not null then
        -- a new message: the trigger left its result (see messages__accept)
        v_result := string_to_array(current_setting('chatdesk.operator_message_result'), ',');
        if v_result[1]::bigint = v_id then
            message_id := v_id;
            chat_state := v_result[2];
            user_replied_meanwhile := v_result[3]::boolean;
            return next;
            return;
        end if;
    else
        select m.id, m.seen_message_id into v_id, v_seen from chatdesk.messages m
         where m.chat_id = p_chat_id and m.client_message_id = p_client_message_id
           and m.sender_type = 'operator' and m.handled_by_operator_id = p_operator_id;
    end if;
    -- a retry: the first message, the chat as it is now, and whether the user
    -- had written after what the operator saw when the first one was sent;
    -- for a web operator that no longer holds the chat, the message id alone
    if chatdesk.is_web_caller() and not chatdesk.holds_chat(p_chat_id, p_operator_id) then
        message_id := v_id;
        return next;
        return;
    end if;
    return query
    select v_id,
           c.chat_state,
           v_seen is not null and exists (
               select 1 from chatdesk.messages u
                where u.chat_id = p_chat_id and u.id > v_seen and u.id < v_id
                  and u.sender_type = 'real_user')
      from chatdesk.chats c
     where c.id = p_chat_id;
end;
$$;

COMMENT ON FUNCTION chatdesk.send_operator_message(p_chat_id uuid, p_operator_id uuid, p_body text, p_client_message_id text, p_seen_message_id bigint) IS 'The assignee''s answer: message id, the chat''s state after it, and whether the user wrote after p_seen_message_id.';

CREATE FUNCTION chatdesk.send_user_message(p_chat_id uuid, p_body text, p_client_message_id text DEFAULT NULL::text) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    SET lock_timeout TO '5s'
    AS $$
declare
    v_id bigint;
begin
    -- The user's message; moves a waiting or closed chat into the queue.
    -- The same (chat, client_message_id) from the user again returns the
    -- first message's id. A web caller may write only to its own chats
    -- (42501); a backend narrowed to an operator is refused by the message
    -- trigger (42501).
    if chatdesk.is_web_caller() then  -- (inlined test: a backend pays no function call here)
        perform chatdesk.require_own_chat(p_chat_id, 'write to');
    end if;
    insert into chatdesk.messages (chat_id, sender_type, body, client_message_id)
    values (p_chat_id, 'real_user', p_body, p_client_message_id)
    returning id into v_id;
    if v_id is null then  -- the trigger recognised a retry and wrote nothing
        select m.id into v_id from chatdesk.messages m
         where m.chat_id = p_chat_id and m.client_message_id = p_client_message_id
           and m.sender_type = 'real_user' and m.handled_by_operator_id is null;
    end if;
    return v_id;
end;
$$;

COMMENT ON FUNCTION chatdesk.send_user_message(p_chat_id uuid, p_body text, p_client_message_id text) IS 'The user''s message (returns its id); a retry with the same client id returns the first message''s id and writes nothing.';

CREATE FUNCTION chatdesk.serve_changes(p_cursor text, p_limit integer, p_everyone boolean, p_operator_id uuid DEFAULT NULL::uuid, p_real_user_id uuid DEFAULT NULL::uuid) RETURNS TABLE(cursor text, kind text, chat_id uuid, message_id bigint, chat_state text, created_at timestamp with time zone, chat_seq integer, operator_id uuid, real_user_id uuid, queue boolean, sender_type text, body text, client_message_id text, message_created_at timestamp with time zone, holder uuid)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    AS $$
#variable_conflict use_column
declare
    v_from  chatdesk.changes_horizon := chatdesk.feed_start(p_cursor, p_limit);
    v_bound xid8 := pg_snapshot_xmin(pg_current_snapshot());
begin
    -- The feed as chatdesk serve reads it (a backend: it reads what
    -- changes_since reads, with each change's audience and its message):
    --   p_everyone   every change after p_cursor, with who may see it
    --                (operator_id, real_user_id, queue: the tests of
    --                audience_changes), for one read per wake-up whatever
    --                the number of subscribers;
    --   otherwise    what operator p_operator_id and real user
    --                p_real_user_id may see (audience_changes), for one
    --                subscriber catching up from its own cursor.
    -- Same cursors, order and exactly-once as changes_since. holder: the
    -- chat's operator now, so a message's body goes only to whom may read
    -- it now (its visitor; the operator holding the chat), as the messages
    -- policy says.
    perform chatdesk.authorize('read the feed for others', 'backend');
    return query
    select c.tx || ':' || c.id, c.kind, c.chat_id, c.message_id, c.chat_state, c.created_at, c.chat_seq,
           c.operator_id, c.real_user_id,
           c.kind = 'chat' and (c.chat_state = 'waiting_assignment' or c.from_state = 'waiting_assignment'),
           m.sender_type, m.body, m.client_message_id, m.created_at,
           case when c.kind = 'message' then (select h.assigned_operator_id from chatdesk.chats h where h.id = c.chat_id) end
      from ((select * from chatdesk.changes c
              where p_everyone and (c.tx, c.id) > (v_from.tx, v_from.id) and c.tx < v_bound
              order by c.tx, c.id
              limit p_limit)
            union all
            (select * from chatdesk.audience_changes(v_from, v_bound, p_limit, p_operator_id, p_real_user_id)
              where not p_everyone)) c
      left join chatdesk.messages m on m.id = c.message_id
     order by c.tx, c.id;
end;
$$;

COMMENT ON FUNCTION chatdesk.serve_changes(p_cursor text, p_limit integer, p_everyone boolean, p_operator_id uuid, p_real_user_id uuid) IS 'For chatdesk serve (backends only): the feed with each change''s audience and message, for everyone or one identity.';

CREATE FUNCTION chatdesk.set_operator_active(p_operator_id uuid, p_is_active boolean) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    SET lock_timeout TO '5s'
    AS $$
begin
    -- Takes an operator off (or back on) duty. An inactive operator cannot
    -- claim; chats already assigned stay until answered, released or idle.
    perform chatdesk.authorize('change who is active', 'backend');
    if p_is_active is null then
        raise exception using errcode = '23514',
            message = format('chatdesk: is_active of operator %s must be true or false', p_operator_id);
    end if;
    update chatdesk.operators set is_active = p_is_active where id = p_operator_id;
    if not found then
        raise exception using errcode = '23503',
            message = format('chatdesk: operator %s does not exist', coalesce(p_operator_id::text, 'null'));
    end if;
end;
$$;

COMMENT ON FUNCTION chatdesk.set_operator_active(p_operator_id uuid, p_is_active boolean) IS 'Takes an operator off or back on duty; an inactive operator cannot claim (CD003).';

CREATE FUNCTION chatdesk.settings__check() RETURNS trigger
    LANGUAGE plpgsql
    AS $_$
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
$_$;

CREATE FUNCTION chatdesk.start_chat(p_real_user_id uuid) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    SET lock_timeout TO '5s'
    AS $$
declare
    v_id uuid;
begin
    -- A new chat in waiting_real_user_reply. Refuses an unknown user
    -- (23503), anyone but that user or a backend (42501), and a user who
    -- already has max_open_chats_per_user chats that are not closed (CD007).
    perform chatdesk.authorize('start a chat', 'real user', p_real_user_id);
    perform chatdesk.check_open_chats(p_real_user_id, null);
    insert into chatdesk.chats (real_user_id) values (p_real_user_id) returning id into v_id;
    return v_id;
end;
$$;

COMMENT ON FUNCTION chatdesk.start_chat(p_real_user_id uuid) IS 'A new chat of the real user, in waiting_real_user_reply.';

CREATE FUNCTION chatdesk.stats_time_zone() RETURNS text
    LANGUAGE sql STABLE
    AS $$
    select coalesce((select value from chatdesk.settings where key = 'stats_time_zone'), 'UTC');
$$;

COMMENT ON FUNCTION chatdesk.stats_time_zone() IS 'The IANA zone whose calendar days the daily stats count (settings.stats_time_zone, default UTC).';

CREATE FUNCTION chatdesk.stats_today() RETURNS date
    LANGUAGE sql
    AS $$
    -- Today's date in stats_time_zone, by chatdesk.clock().
    select (chatdesk.clock() at time zone chatdesk.stats_time_zone())::date;
$$;

COMMENT ON FUNCTION chatdesk.stats_today() IS 'Today''s date in stats_time_zone, by chatdesk.clock().';

CREATE FUNCTION chatdesk.sync_queue() RETURNS integer
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    SET lock_timeout TO '5s'
    AS $$
    -- Puts the queue table right against the chats (chatdesk migrate runs it
    -- after each reload of sql/: chats that changed while older triggers ran
    -- are fixed here): adds waiting chats it lacks, drops entries whose chat
    -- no longer waits. Returns how many rows it fixed (0 when in step).
    with missing as (
        insert into chatdesk.queue (chat_id, queued_at)
        select c.id, c.queued_at from chatdesk.chats c
         where c.chat_state = 'waiting_assignment'
           and not exists (select 1 from chatdesk.queue q where q.chat_id = c.id)
        on conflict (chat_id) do nothing
        returning 1
    ), stale as (
        delete from chatdesk.queue q
         where not exists (select 1 from chatdesk.chats c
                            where c.id = q.chat_id and c.chat_state = 'waiting_assignment')
        returning 1
    )
    select ((select count(*) from missing) + (select count(*) from stale))::int;
$$;

COMMENT ON FUNCTION chatdesk.sync_queue() IS 'Puts the queue table right against the chats waiting for assignment; returns rows fixed (chatdesk migrate runs it).';

CREATE FUNCTION chatdesk.time_buckets() RETURNS numeric[]
    LANGUAGE sql IMMUTABLE
    AS $$
    -- Upper bounds (seconds) of the histogram buckets of operator_daily_times:
    -- bucket 1 is under 10 s, bucket k under time_buckets()[k] and at least
    -- the bound before it, the last bucket 1 day or more.
    select '{10,30,60,120,300,600,1800,3600,14400,86400}'::numeric[];
$$;

COMMENT ON FUNCTION chatdesk.time_buckets() IS 'Upper bounds in seconds of operator_daily_times.histogram''s buckets (one more bucket: 1 day or more).';

CREATE FUNCTION chatdesk.transaction_mark() RETURNS text
    LANGUAGE sql STABLE
    AS $$
    -- Tells this transaction from every other one of the same session.
    select pg_backend_pid() || '@' || extract(epoch from transaction_timestamp());
$$;

CREATE FUNCTION chatdesk.try_rollup_operator_stats(p_date date) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    SET lock_timeout TO '5s'
    AS $$
begin
    -- rollup_operator_stats, but null at once, writing nothing, while another
    -- transaction is rolling up (the runner polls with it: a waiting rollup
    -- never sits inside a statement). Once it holds the lock row,
    -- rollup_operator_stats takes it again without waiting.
    perform 1 from chatdesk.runner_locks where name = 'rollup' for update skip locked;
    return case when found then chatdesk.rollup_operator_stats(p_date) end;
end;
$$;

COMMENT ON FUNCTION chatdesk.try_rollup_operator_stats(p_date date) IS 'rollup_operator_stats, or null at once while another rollup runs.';

CREATE FUNCTION chatdesk.update_operator_stats(p_operator_id uuid, p_date date) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    SET lock_timeout TO '5s'
    AS $$
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

COMMENT ON FUNCTION chatdesk.update_operator_stats(p_operator_id uuid, p_date date) IS 'One operator''s operator_daily_stats row for the day (the figures the rollup writes).';

CREATE FUNCTION chatdesk.verify_counters(p_repair boolean DEFAULT false) RETURNS TABLE(object text, object_id uuid, counter text, stored text, actual text)
    LANGUAGE plpgsql
    AS $$
#variable_conflict use_column
begin
    -- Compares every maintained counter with a recount from messages, in one
    -- snapshot (the triggers keep both in the same transaction, so a correct
    -- database reports no rows even under concurrent writes).
    -- p_repair: first blocks message writers (share lock on messages, until
    -- commit) so the recount cannot race them, then writes the recounted values.
    if p_repair then
        lock table chatdesk.messages in share mode;
    end if;

    return query
    with chat_drift as (
        select c.id, a.*, c.message_count as s_count, c.last_message_at as s_last,
               c.last_user_message_id as s_user, c.waiting_since as s_waiting
          from chatdesk.chats c
          join chatdesk.chat_counters_actual a on a.chat_id = c.id
    )
    select 'chat', id, 'message_count', s_count::text, message_count::text
      from chat_drift where s_count <> message_count
    union all
    select 'chat', id, 'last_message_at', s_last::text, last_message_at::text
      from chat_drift where s_last is distinct from last_message_at
    union all
    select 'chat', id, 'last_user_message_id', s_user::text, last_user_message_id::text
      from chat_drift where s_user is distinct from last_user_message_id
    union all
    select 'chat', id, 'waiting_since', s_waiting::text, waiting_since::text
      from chat_drift where s_waiting is distinct from waiting_since
    union all
    select 'operator', o.id, 'total_messages', o.total_messages::text, a.total_messages::text
      from chatdesk.operators o join chatdesk.operator_counters_actual a on a.operator_id = o.id
     where o.total_messages <> a.total_messages
    union all
    select 'operator', o.id, 'assigned_chats', o.assigned_chats::text, a.assigned_chats::text
      from chatdesk.operators o join chatdesk.operator_counters_actual a on a.operator_id = o.id
     where o.assigned_chats <> a.assigned_chats
    union all
    -- the queue table against the chats waiting for assignment (claim_next_chat pops it)
    select 'chat', coalesce(c.id, q.chat_id), 'queued',
           case when q.chat_id is null then 'no' else 'yes' end,
           case when c.id is null then 'no' else 'yes' end
      from (select id from chatdesk.chats where chat_state = 'waiting_assignment') c
      full join chatdesk.queue q on q.chat_id = c.id
     where c.id is null or q.chat_id is null
     order by 1, 2, 3;

    if p_repair then
        perform chatdesk.recount_chats(array(
            select c.id from chatdesk.chats c join chatdesk.chat_counters_actual a on a.chat_id = c.id
             where (c.message_count, c.last_message_at, c.last_user_message_id, c.waiting_since)
                   is distinct from (a.message_count, a.last_message_at, a.last_user_message_id, a.waiting_since)));
        perform chatdesk.recount_operators(array(
            select o.id from chatdesk.operators o join chatdesk.operator_counters_actual a on a.operator_id = o.id
             where (o.total_messages, o.assigned_chats) is distinct from (a.total_messages, a.assigned_chats)));
        perform chatdesk.sync_queue();
    end if;
end;
$$;

COMMENT ON FUNCTION chatdesk.verify_counters(p_repair boolean) IS 'Recounts message_count, last_message_at, total_messages, assigned_chats (and write-time bookkeeping, and the queue table); returns drifted rows; p_repair fixes them.';

CREATE FUNCTION chatdesk.web_caller_name() RETURNS text
    LANGUAGE sql STABLE
    AS $$
    -- How a refusal names a web caller: only its own ids.
    select coalesce('operator ' || chatdesk.web_operator_id(), 'real user ' || chatdesk.web_real_user_id(),
                    'a web caller without a known identity');
$$;

CREATE FUNCTION chatdesk.web_identity(p_sub text, OUT operator_id uuid, OUT real_user_id uuid) RETURNS record
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    AS $$
    -- Who a web login is, for a backend that checks the JWT itself (chatdesk
    -- serve): the operator and the real user whose auth_user_id is the JWT's
    -- sub, read and matched as web_operator_id() and web_real_user_id() do
    -- for a web caller (login_of). Both null: nobody.
    select (select o.id from chatdesk.operators o where o.auth_user_id = s.login),
           (select u.id from chatdesk.real_users u where u.auth_user_id = s.login)
      from (select chatdesk.login_of(p_sub) as login) s;
$$;

CREATE FUNCTION chatdesk.web_may_close(p_chat chatdesk.chats) RETURNS boolean
    LANGUAGE sql STABLE
    AS $$
    -- Whether a web caller may close chat p_chat: a chat of its own real
    -- user, or the chat it holds now. False for no chat (a row of nulls), and
    -- for a caller who is nobody: every comparison with a null identity fails.
    select coalesce(p_chat.real_user_id = chatdesk.web_real_user_id()
                    or (p_chat.chat_state = 'assigned' and p_chat.assigned_operator_id = chatdesk.web_operator_id()),
                    false);
$$;

CREATE FUNCTION chatdesk.web_operator_id() RETURNS uuid
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    AS $$
begin
    -- The operator a web caller is (null for anyone else, or no match).
    -- PL/pgSQL rather than SQL, here and in web_real_user_id: PostgreSQL
    -- plans a security definer SQL function's query afresh on every call
    -- (about 50 µs, on every web call and in every policy), PL/pgSQL once
    -- per session.
    return (select o.id from chatdesk.operators o
             where chatdesk.may_have_web_identity() and o.auth_user_id = chatdesk.jwt_subject());
end;
$$;

COMMENT ON FUNCTION chatdesk.web_operator_id() IS 'The operator whose auth_user_id is the JWT''s sub of this web request; null otherwise.';

CREATE FUNCTION chatdesk.web_real_user_id() RETURNS uuid
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    AS $$
begin
    -- The real user a web caller is (null for anyone else, or no match).
    return (select u.id from chatdesk.real_users u
             where chatdesk.may_have_web_identity() and u.auth_user_id = chatdesk.jwt_subject());
end;
$$;

COMMENT ON FUNCTION chatdesk.web_real_user_id() IS 'The real user whose auth_user_id is the JWT''s sub of this web request; null otherwise.';

CREATE FUNCTION chatdesk.write_hourly_load(p_from timestamp with time zone, p_to timestamp with time zone) RETURNS void
    LANGUAGE sql
    AS $$
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

CREATE FUNCTION chatdesk.write_operator_stats(p_date date, p_operator_id uuid DEFAULT NULL::uuid) RETURNS integer
    LANGUAGE plpgsql
    AS $_$
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
$_$;

CREATE FUNCTION chatdesk.write_operator_times(p_date date, p_operator_id uuid, p_from timestamp with time zone, p_to timestamp with time zone) RETURNS void
    LANGUAGE plpgsql
    AS $_$
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
$_$;

CREATE TABLE chatdesk.business_hours (
    weekday integer NOT NULL,
    opens time without time zone NOT NULL,
    closes time without time zone NOT NULL,
    CONSTRAINT business_hours_weekday_check CHECK (((weekday >= 1) AND (weekday <= 7)))
);

COMMENT ON TABLE chatdesk.business_hours IS 'Business-hours windows per ISO weekday in stats_time_zone; closes <= opens ends the next day.';

ALTER TABLE chatdesk.changes ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME chatdesk.changes_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE chatdesk.messages (
    id bigint NOT NULL,
    chat_id uuid NOT NULL,
    sender_type text NOT NULL,
    handled_by_operator_id uuid,
    body text NOT NULL,
    client_message_id text,
    seen_message_id bigint,
    created_at timestamp with time zone NOT NULL,
    reply_started_at timestamp with time zone,
    CONSTRAINT messages_body_check CHECK (((length(body) >= 1) AND (length(body) <= 10000))),
    CONSTRAINT messages_client_message_id_check CHECK (((length(client_message_id) >= 1) AND (length(client_message_id) <= 200))),
    CONSTRAINT messages_operator_check CHECK (((sender_type = 'operator'::text) = (handled_by_operator_id IS NOT NULL))),
    CONSTRAINT messages_sender_type_check CHECK ((sender_type = ANY (ARRAY['real_user'::text, 'operator'::text, 'system'::text])))
);

COMMENT ON TABLE chatdesk.messages IS 'Messages of chats. Every insert, through the API or direct, meets the same rules (the messages_100_accept trigger).';

COMMENT ON COLUMN chatdesk.messages.id IS 'Increasing; within a chat, id order is commit order.';

COMMENT ON COLUMN chatdesk.messages.sender_type IS 'real_user, operator or system.';

COMMENT ON COLUMN chatdesk.messages.handled_by_operator_id IS 'The operator who wrote (and is credited with) an operator message.';

COMMENT ON COLUMN chatdesk.messages.client_message_id IS 'The sender''s idempotency key: a retry with the same key returns the first message.';

COMMENT ON COLUMN chatdesk.messages.seen_message_id IS 'For an operator message: the newest message the operator had seen (the reply race).';

COMMENT ON COLUMN chatdesk.messages.reply_started_at IS 'For an operator message that answers a run of real-user messages: when the run began.';

CREATE VIEW chatdesk.chat_counters_actual WITH (security_invoker='true') AS
 SELECT c.id AS chat_id,
    (COALESCE(a.message_count, (0)::bigint))::integer AS message_count,
    a.last_message_at,
    a.last_user_message_id,
    ( SELECT min(u.created_at) AS min
           FROM chatdesk.messages u
          WHERE ((u.chat_id = c.id) AND (u.sender_type = 'real_user'::text) AND (u.id > COALESCE(a.last_operator_message_id, (0)::bigint)))) AS waiting_since
   FROM (chatdesk.chats c
     LEFT JOIN LATERAL ( SELECT count(*) AS message_count,
            max(m.created_at) AS last_message_at,
            max(m.id) FILTER (WHERE (m.sender_type = 'real_user'::text)) AS last_user_message_id,
            max(m.id) FILTER (WHERE (m.sender_type = 'operator'::text)) AS last_operator_message_id
           FROM chatdesk.messages m
          WHERE (m.chat_id = c.id)) a ON (true));

COMMENT ON VIEW chatdesk.chat_counters_actual IS 'Each chat''s message_count, last_message_at and write-time bookkeeping, recounted from messages.';

CREATE TABLE chatdesk.chat_events (
    id bigint NOT NULL,
    chat_id uuid NOT NULL,
    from_state text,
    to_state text NOT NULL,
    operator_id uuid,
    reason text NOT NULL,
    created_at timestamp with time zone NOT NULL
);

COMMENT ON TABLE chatdesk.chat_events IS 'One row per chat state change (and one for the chat''s creation); history, never changed.';

ALTER TABLE chatdesk.chat_events ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME chatdesk.chat_events_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE VIEW chatdesk.chat_operators WITH (security_barrier='true') AS
 SELECT c.id AS chat_id,
    c.assigned_operator_id AS operator_id,
    ( SELECT o.name
           FROM chatdesk.operators o
          WHERE (o.id = c.assigned_operator_id)) AS name
   FROM chatdesk.chats c
  WHERE ((c.chat_state = 'assigned'::text) AND ((c.real_user_id = ( SELECT chatdesk.web_real_user_id() AS web_real_user_id)) OR (c.assigned_operator_id = ( SELECT chatdesk.web_operator_id() AS web_operator_id))));

COMMENT ON VIEW chatdesk.chat_operators IS 'For web callers: the operator assigned now to each of the caller''s chats, id and name only ("You''re chatting with Ada"): a visitor''s chats, or an operator''s own.';

CREATE TABLE chatdesk.conversations (
    id bigint NOT NULL,
    chat_id uuid NOT NULL,
    queued_at timestamp with time zone NOT NULL,
    first_response_at timestamp with time zone,
    first_response_operator_id uuid,
    closed_at timestamp with time zone,
    closed_by_operator_id uuid
);

COMMENT ON TABLE chatdesk.conversations IS 'A chat from its first queueing until it is closed: first response and resolution times.';

ALTER TABLE chatdesk.conversations ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME chatdesk.conversations_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE chatdesk.feed_wakeup (
    singleton boolean DEFAULT true NOT NULL,
    sent_at timestamp with time zone DEFAULT '-infinity'::timestamp with time zone NOT NULL,
    CONSTRAINT feed_wakeup_singleton CHECK (singleton)
);

CREATE TABLE chatdesk.holidays (
    day date NOT NULL,
    name text
);

COMMENT ON TABLE chatdesk.holidays IS 'Days whose business-hours windows do not count.';

CREATE TABLE chatdesk.hourly_load (
    hour timestamp with time zone NOT NULL,
    messages integer NOT NULL,
    real_user_messages integer NOT NULL,
    operator_messages integer NOT NULL,
    queue_entries integer NOT NULL,
    computed_at timestamp with time zone NOT NULL
);

COMMENT ON TABLE chatdesk.hourly_load IS 'Messages and new queue entries per hour, written by the rollup.';

CREATE SEQUENCE chatdesk.messages_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE chatdesk.messages_id_seq OWNED BY chatdesk.messages.id;

CREATE VIEW chatdesk.operator_counters_actual WITH (security_invoker='true') AS
 SELECT o.id AS operator_id,
    ( SELECT count(*) AS count
           FROM chatdesk.messages m
          WHERE (m.handled_by_operator_id = o.id)) AS total_messages,
    (( SELECT count(*) AS count
           FROM chatdesk.chats c
          WHERE ((c.assigned_operator_id = o.id) AND (c.chat_state = 'assigned'::text))))::integer AS assigned_chats
   FROM chatdesk.operators o;

COMMENT ON VIEW chatdesk.operator_counters_actual IS 'Each operator''s total_messages and assigned_chats, recounted from messages and chats.';

CREATE TABLE chatdesk.operator_daily_stats (
    operator_id uuid NOT NULL,
    stat_date date NOT NULL,
    messages_sent integer DEFAULT 0 NOT NULL,
    chats_handled integer DEFAULT 0 NOT NULL,
    reply_time_avg_seconds numeric,
    reply_time_p50_seconds numeric,
    reply_time_p90_seconds numeric,
    replies integer DEFAULT 0 NOT NULL,
    computed_at timestamp with time zone DEFAULT now() NOT NULL,
    chats_closed integer DEFAULT 0 NOT NULL,
    chats_released integer DEFAULT 0 NOT NULL,
    chats_idle_released integer DEFAULT 0 NOT NULL
);

COMMENT ON TABLE chatdesk.operator_daily_stats IS 'Per operator and day (in stats_time_zone): messages, chats and reply times; written by the rollup.';

COMMENT ON COLUMN chatdesk.operator_daily_stats.replies IS 'How many reply times the avg/p50/p90 figures cover.';

CREATE TABLE chatdesk.operator_daily_times (
    operator_id uuid NOT NULL,
    stat_date date NOT NULL,
    metric text NOT NULL,
    clock text NOT NULL,
    n integer NOT NULL,
    avg_seconds numeric,
    p50_seconds numeric,
    p90_seconds numeric,
    histogram integer[] NOT NULL,
    CONSTRAINT operator_daily_times_clock_check CHECK ((clock = ANY (ARRAY['wall'::text, 'business'::text]))),
    CONSTRAINT operator_daily_times_metric_check CHECK ((metric = ANY (ARRAY['reply'::text, 'first_response'::text, 'resolution'::text])))
);

COMMENT ON TABLE chatdesk.operator_daily_times IS 'Reply, first-response and resolution times per operator and day, wall clock and business time.';

CREATE VIEW chatdesk.operator_load WITH (security_invoker='true') AS
 SELECT o.id AS operator_id,
    o.name,
    o.is_active,
    o.max_concurrent_chats,
    o.assigned_chats,
    o.last_seen_at,
    o.last_active_at
   FROM chatdesk.operators o;

COMMENT ON VIEW chatdesk.operator_load IS 'Each operator''s current load (assigned chats) against max_concurrent_chats, and last activity.';

CREATE TABLE chatdesk.queue (
    chat_id uuid NOT NULL,
    queued_at timestamp with time zone NOT NULL
);

COMMENT ON TABLE chatdesk.queue IS 'The chats waiting for an operator, in claim order (queued_at, chat_id); kept by the chat triggers.';

CREATE TABLE chatdesk.queue_samples (
    sampled_at timestamp with time zone NOT NULL,
    waiting integer NOT NULL,
    assigned integer NOT NULL,
    oldest_wait_seconds numeric
);

COMMENT ON TABLE chatdesk.queue_samples IS 'Queue depth over time, one row per sample_queue() call.';

CREATE TABLE chatdesk.real_users (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    display_name text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    auth_user_id uuid,
    CONSTRAINT real_users_display_name_check CHECK (((length(btrim(display_name)) >= 1) AND (length(btrim(display_name)) <= 200)))
);

COMMENT ON TABLE chatdesk.real_users IS 'People who write in (visitors).';

COMMENT ON COLUMN chatdesk.real_users.auth_user_id IS 'The web login (the JWT''s sub) that acts as this real user through chatdesk_web; null: none.';

CREATE TABLE chatdesk.runner_locks (
    name text NOT NULL
);

COMMENT ON TABLE chatdesk.runner_locks IS 'Lock rows the runner''s jobs take inside their own transactions (rollup).';

CREATE TABLE chatdesk.settings (
    key text NOT NULL,
    value text NOT NULL
);

COMMENT ON TABLE chatdesk.settings IS 'Package settings. stats_time_zone: the IANA zone whose calendar days the daily stats use.';

CREATE TABLE chatdesk.sql_loaded (
    file text NOT NULL,
    sha256 text NOT NULL,
    loaded_at timestamp with time zone NOT NULL
);

COMMENT ON TABLE chatdesk.sql_loaded IS 'What chatdesk migrate last loaded from each sql/ file (sha256), so unchanged files are left alone.';

CREATE TABLE chatdesk.state_transitions (
    event text NOT NULL,
    from_state text NOT NULL,
    to_state text NOT NULL
);

COMMENT ON TABLE chatdesk.state_transitions IS 'The chat state machine: (event, from_state) leads to to_state. Anything else is refused (CD002).';

ALTER TABLE ONLY chatdesk.business_hours
    ADD CONSTRAINT business_hours_pkey PRIMARY KEY (weekday, opens);

ALTER TABLE ONLY chatdesk.changes_horizon
    ADD CONSTRAINT changes_horizon_pkey PRIMARY KEY (singleton);

ALTER TABLE ONLY chatdesk.changes
    ADD CONSTRAINT changes_pkey PRIMARY KEY (tx, id, chat_id);

ALTER TABLE ONLY chatdesk.chat_events
    ADD CONSTRAINT chat_events_pkey PRIMARY KEY (chat_id, id);

ALTER TABLE ONLY chatdesk.chats
    ADD CONSTRAINT chats_pkey PRIMARY KEY (id);

ALTER TABLE ONLY chatdesk.conversations
    ADD CONSTRAINT conversations_pkey PRIMARY KEY (chat_id, id);

ALTER TABLE ONLY chatdesk.feed_wakeup
    ADD CONSTRAINT feed_wakeup_pkey PRIMARY KEY (singleton);

ALTER TABLE ONLY chatdesk.holidays
    ADD CONSTRAINT holidays_pkey PRIMARY KEY (day);

ALTER TABLE ONLY chatdesk.hourly_load
    ADD CONSTRAINT hourly_load_pkey PRIMARY KEY (hour);

ALTER TABLE ONLY chatdesk.messages
    ADD CONSTRAINT messages_pkey PRIMARY KEY (chat_id, id);

ALTER TABLE ONLY chatdesk.operator_daily_stats
    ADD CONSTRAINT operator_daily_stats_pkey PRIMARY KEY (operator_id, stat_date);

ALTER TABLE ONLY chatdesk.operator_daily_times
    ADD CONSTRAINT operator_daily_times_pkey PRIMARY KEY (operator_id, stat_date, metric, clock);

ALTER TABLE ONLY chatdesk.operators
    ADD CONSTRAINT operators_pkey PRIMARY KEY (id);

ALTER TABLE ONLY chatdesk.queue
    ADD CONSTRAINT queue_pkey PRIMARY KEY (chat_id);

ALTER TABLE ONLY chatdesk.queue_samples
    ADD CONSTRAINT queue_samples_pkey PRIMARY KEY (sampled_at);

ALTER TABLE ONLY chatdesk.real_users
    ADD CONSTRAINT real_users_pkey PRIMARY KEY (id);

ALTER TABLE ONLY chatdesk.runner_locks
    ADD CONSTRAINT runner_locks_pkey PRIMARY KEY (name);

ALTER TABLE ONLY chatdesk.settings
    ADD CONSTRAINT settings_pkey PRIMARY KEY (key);

ALTER TABLE ONLY chatdesk.sql_loaded
    ADD CONSTRAINT sql_loaded_pkey PRIMARY KEY (file);

ALTER TABLE ONLY chatdesk.state_transitions
    ADD CONSTRAINT state_transitions_pkey PRIMARY KEY (event, from_state);

CREATE INDEX changes_created_idx ON chatdesk.changes USING btree (created_at);

CREATE INDEX changes_operator_idx ON chatdesk.changes USING btree (operator_id, tx, id) WHERE (operator_id IS NOT NULL);

CREATE INDEX changes_queue_idx ON chatdesk.changes USING btree (tx, id) WHERE ((kind = 'chat'::text) AND ((chat_state = 'waiting_assignment'::text) OR (from_state = 'waiting_assignment'::text)));

CREATE INDEX changes_real_user_idx ON chatdesk.changes USING btree (real_user_id, tx, id);

CREATE INDEX chat_events_day_idx ON chatdesk.chat_events USING btree (created_at) INCLUDE (operator_id, from_state, reason) WHERE (reason = ANY (ARRAY['user_message'::text, 'release'::text, 'idle'::text]));

CREATE INDEX chats_assigned_idx ON chatdesk.chats USING btree (assigned_operator_id) WHERE (chat_state = 'assigned'::text);

CREATE INDEX chats_queue_idx ON chatdesk.chats USING btree (queued_at, id) WHERE (chat_state = 'waiting_assignment'::text);

CREATE INDEX chats_real_user_idx ON chatdesk.chats USING btree (real_user_id);

CREATE INDEX conversations_closed_idx ON chatdesk.conversations USING btree (closed_at) WHERE (closed_at IS NOT NULL);

CREATE INDEX conversations_first_response_idx ON chatdesk.conversations USING btree (first_response_at) WHERE (first_response_at IS NOT NULL);

CREATE UNIQUE INDEX messages_client_id_per_sender_idx ON chatdesk.messages USING btree (chat_id, sender_type, handled_by_operator_id, client_message_id) NULLS NOT DISTINCT WHERE (client_message_id IS NOT NULL);

CREATE INDEX messages_created_brin ON chatdesk.messages USING brin (created_at) WITH (autosummarize='on');

CREATE INDEX messages_operator_day_idx ON chatdesk.messages USING btree (created_at) INCLUDE (handled_by_operator_id, chat_id, reply_started_at) WHERE (handled_by_operator_id IS NOT NULL);

CREATE INDEX messages_operator_idx ON chatdesk.messages USING btree (handled_by_operator_id, created_at) INCLUDE (chat_id, reply_started_at) WHERE (handled_by_operator_id IS NOT NULL);

CREATE INDEX operator_daily_stats_date_idx ON chatdesk.operator_daily_stats USING btree (stat_date);

CREATE INDEX operator_daily_times_date_idx ON chatdesk.operator_daily_times USING btree (stat_date);

CREATE UNIQUE INDEX operators_auth_user_id_idx ON chatdesk.operators USING btree (auth_user_id);

CREATE INDEX queue_order_idx ON chatdesk.queue USING btree (queued_at, chat_id);

CREATE UNIQUE INDEX real_users_auth_user_id_idx ON chatdesk.real_users USING btree (auth_user_id);

CREATE TRIGGER chats_100_guard_insert BEFORE INSERT ON chatdesk.chats FOR EACH ROW EXECUTE FUNCTION chatdesk.chats__guard_insert();

CREATE TRIGGER chats_100_guard_state BEFORE UPDATE ON chatdesk.chats FOR EACH ROW WHEN (((old.chat_state IS DISTINCT FROM new.chat_state) OR (old.assigned_operator_id IS DISTINCT FROM new.assigned_operator_id))) EXECUTE FUNCTION chatdesk.chats__guard_state();

CREATE TRIGGER chats_500_log_insert AFTER INSERT ON chatdesk.chats FOR EACH ROW EXECUTE FUNCTION chatdesk.chats__log_insert();

CREATE TRIGGER messages_100_accept BEFORE INSERT ON chatdesk.messages FOR EACH ROW EXECUTE FUNCTION chatdesk.messages__accept();

CREATE TRIGGER messages_100_guard_update BEFORE UPDATE ON chatdesk.messages FOR EACH ROW EXECUTE FUNCTION chatdesk.messages__guard_update();

CREATE TRIGGER messages_500_after_delete AFTER DELETE ON chatdesk.messages REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT EXECUTE FUNCTION chatdesk.messages__after_delete();

CREATE TRIGGER messages_500_after_truncate AFTER TRUNCATE ON chatdesk.messages FOR EACH STATEMENT EXECUTE FUNCTION chatdesk.messages__after_truncate();

CREATE TRIGGER messages_500_after_update AFTER UPDATE ON chatdesk.messages REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION chatdesk.messages__after_update();

CREATE TRIGGER settings_100_check BEFORE INSERT OR UPDATE ON chatdesk.settings FOR EACH ROW EXECUTE FUNCTION chatdesk.settings__check();

ALTER TABLE ONLY chatdesk.chat_events
    ADD CONSTRAINT chat_events_chat_id_fkey FOREIGN KEY (chat_id) REFERENCES chatdesk.chats(id);

ALTER TABLE ONLY chatdesk.chat_events
    ADD CONSTRAINT chat_events_operator_id_fkey FOREIGN KEY (operator_id) REFERENCES chatdesk.operators(id);

ALTER TABLE ONLY chatdesk.chats
    ADD CONSTRAINT chats_assigned_operator_id_fkey FOREIGN KEY (assigned_operator_id) REFERENCES chatdesk.operators(id);

ALTER TABLE ONLY chatdesk.chats
    ADD CONSTRAINT chats_real_user_id_fkey FOREIGN KEY (real_user_id) REFERENCES chatdesk.real_users(id);

ALTER TABLE ONLY chatdesk.conversations
    ADD CONSTRAINT conversations_chat_id_fkey FOREIGN KEY (chat_id) REFERENCES chatdesk.chats(id);

ALTER TABLE ONLY chatdesk.conversations
    ADD CONSTRAINT conversations_closed_by_operator_id_fkey FOREIGN KEY (closed_by_operator_id) REFERENCES chatdesk.operators(id);

ALTER TABLE ONLY chatdesk.conversations
    ADD CONSTRAINT conversations_first_response_operator_id_fkey FOREIGN KEY (first_response_operator_id) REFERENCES chatdesk.operators(id);

ALTER TABLE ONLY chatdesk.messages
    ADD CONSTRAINT messages_chat_id_fkey FOREIGN KEY (chat_id) REFERENCES chatdesk.chats(id);

ALTER TABLE ONLY chatdesk.messages
    ADD CONSTRAINT messages_handled_by_operator_id_fkey FOREIGN KEY (handled_by_operator_id) REFERENCES chatdesk.operators(id);

ALTER TABLE ONLY chatdesk.operator_daily_stats
    ADD CONSTRAINT operator_daily_stats_operator_id_fkey FOREIGN KEY (operator_id) REFERENCES chatdesk.operators(id);

ALTER TABLE ONLY chatdesk.operator_daily_times
    ADD CONSTRAINT operator_daily_times_operator_id_fkey FOREIGN KEY (operator_id) REFERENCES chatdesk.operators(id);

ALTER TABLE chatdesk.changes ENABLE ROW LEVEL SECURITY;

CREATE POLICY changes_app_read ON chatdesk.changes FOR SELECT TO chatdesk_app USING ((( SELECT chatdesk.is_unscoped_backend() AS is_unscoped_backend) OR (operator_id = ( SELECT chatdesk.current_operator_id() AS current_operator_id)) OR ((kind = 'chat'::text) AND ((chat_state = 'waiting_assignment'::text) OR (from_state = 'waiting_assignment'::text)) AND (( SELECT chatdesk.current_operator_id() AS current_operator_id) IS NOT NULL))));

ALTER TABLE chatdesk.chat_events ENABLE ROW LEVEL SECURITY;

CREATE POLICY chat_events_app_read ON chatdesk.chat_events FOR SELECT TO chatdesk_app USING ((( SELECT chatdesk.is_unscoped_backend() AS is_unscoped_backend) OR (chat_id = ANY (ARRAY( SELECT c.id
   FROM chatdesk.chats c
  WHERE ((c.chat_state = 'assigned'::text) AND (c.assigned_operator_id = ( SELECT chatdesk.current_operator_id() AS current_operator_id))))))));

CREATE POLICY chat_events_reporting_read ON chatdesk.chat_events FOR SELECT TO chatdesk_reporting USING (( SELECT (NOT chatdesk.is_web_caller())));

CREATE POLICY chat_events_web_read ON chatdesk.chat_events FOR SELECT TO chatdesk_web USING ((chat_id = ANY (ARRAY( SELECT c.id
   FROM chatdesk.chats c
  WHERE ((c.chat_state = 'assigned'::text) AND (c.assigned_operator_id = ( SELECT chatdesk.web_operator_id() AS web_operator_id)))))));

ALTER TABLE chatdesk.chats ENABLE ROW LEVEL SECURITY;

CREATE POLICY chats_app_insert ON chatdesk.chats FOR INSERT TO chatdesk_app WITH CHECK (( SELECT chatdesk.is_unscoped_backend() AS is_unscoped_backend));

CREATE POLICY chats_app_read ON chatdesk.chats FOR SELECT TO chatdesk_app USING ((( SELECT chatdesk.is_unscoped_backend() AS is_unscoped_backend) OR ((chat_state = 'assigned'::text) AND (assigned_operator_id = ( SELECT chatdesk.current_operator_id() AS current_operator_id)))));

CREATE POLICY chats_reporting_read ON chatdesk.chats FOR SELECT TO chatdesk_reporting USING (( SELECT (NOT chatdesk.is_web_caller())));

CREATE POLICY chats_web_read ON chatdesk.chats FOR SELECT TO chatdesk_web USING (((real_user_id = ( SELECT chatdesk.web_real_user_id() AS web_real_user_id)) OR ((chat_state = 'assigned'::text) AND (assigned_operator_id = ( SELECT chatdesk.web_operator_id() AS web_operator_id))) OR ((chat_state = 'waiting_assignment'::text) AND (queued_at >= ( SELECT
        CASE
            WHEN (chatdesk.web_operator_id() IS NOT NULL) THEN '-infinity'::timestamp with time zone
            ELSE 'infinity'::timestamp with time zone
        END AS "case")))));

ALTER TABLE chatdesk.conversations ENABLE ROW LEVEL SECURITY;

CREATE POLICY conversations_app_read ON chatdesk.conversations FOR SELECT TO chatdesk_app USING ((( SELECT chatdesk.is_unscoped_backend() AS is_unscoped_backend) OR (chat_id = ANY (ARRAY( SELECT c.id
   FROM chatdesk.chats c
  WHERE ((c.chat_state = 'assigned'::text) AND (c.assigned_operator_id = ( SELECT chatdesk.current_operator_id() AS current_operator_id))))))));

CREATE POLICY conversations_reporting_read ON chatdesk.conversations FOR SELECT TO chatdesk_reporting USING (( SELECT (NOT chatdesk.is_web_caller())));

ALTER TABLE chatdesk.messages ENABLE ROW LEVEL SECURITY;

CREATE POLICY messages_app_insert ON chatdesk.messages FOR INSERT TO chatdesk_app WITH CHECK ((( SELECT chatdesk.is_unscoped_backend() AS is_unscoped_backend) OR ((sender_type = 'operator'::text) AND (handled_by_operator_id = ( SELECT chatdesk.current_operator_id() AS current_operator_id)))));

CREATE POLICY messages_app_read ON chatdesk.messages FOR SELECT TO chatdesk_app USING ((( SELECT chatdesk.is_unscoped_backend() AS is_unscoped_backend) OR (chat_id = ANY (ARRAY( SELECT c.id
   FROM chatdesk.chats c
  WHERE ((c.chat_state = 'assigned'::text) AND (c.assigned_operator_id = ( SELECT chatdesk.current_operator_id() AS current_operator_id))))))));

CREATE POLICY messages_web_read ON chatdesk.messages FOR SELECT TO chatdesk_web USING ((chat_id = ANY (ARRAY( SELECT c.id
   FROM chatdesk.chats c
  WHERE ((c.real_user_id = ( SELECT chatdesk.web_real_user_id() AS web_real_user_id)) OR ((c.chat_state = 'assigned'::text) AND (c.assigned_operator_id = ( SELECT chatdesk.web_operator_id() AS web_operator_id))))))));

ALTER TABLE chatdesk.operator_daily_stats ENABLE ROW LEVEL SECURITY;

CREATE POLICY operator_daily_stats_app_read ON chatdesk.operator_daily_stats FOR SELECT TO chatdesk_app USING (( SELECT (NOT chatdesk.is_web_caller())));

CREATE POLICY operator_daily_stats_reporting_read ON chatdesk.operator_daily_stats FOR SELECT TO chatdesk_reporting USING (( SELECT (NOT chatdesk.is_web_caller())));

CREATE POLICY operator_daily_stats_web_read ON chatdesk.operator_daily_stats FOR SELECT TO chatdesk_web USING ((operator_id = ( SELECT chatdesk.web_operator_id() AS web_operator_id)));

ALTER TABLE chatdesk.operator_daily_times ENABLE ROW LEVEL SECURITY;

CREATE POLICY operator_daily_times_app_read ON chatdesk.operator_daily_times FOR SELECT TO chatdesk_app USING (( SELECT (NOT chatdesk.is_web_caller())));

CREATE POLICY operator_daily_times_reporting_read ON chatdesk.operator_daily_times FOR SELECT TO chatdesk_reporting USING (( SELECT (NOT chatdesk.is_web_caller())));

CREATE POLICY operator_daily_times_web_read ON chatdesk.operator_daily_times FOR SELECT TO chatdesk_web USING ((operator_id = ( SELECT chatdesk.web_operator_id() AS web_operator_id)));

ALTER TABLE chatdesk.operators ENABLE ROW LEVEL SECURITY;

CREATE POLICY operators_app_read ON chatdesk.operators FOR SELECT TO chatdesk_app USING (( SELECT (NOT chatdesk.is_web_caller())));

CREATE POLICY operators_reporting_read ON chatdesk.operators FOR SELECT TO chatdesk_reporting USING (( SELECT (NOT chatdesk.is_web_caller())));

CREATE POLICY operators_web_read ON chatdesk.operators FOR SELECT TO chatdesk_web USING ((id = ( SELECT chatdesk.web_operator_id() AS web_operator_id)));

ALTER TABLE chatdesk.real_users ENABLE ROW LEVEL SECURITY;

CREATE POLICY real_users_app_insert ON chatdesk.real_users FOR INSERT TO chatdesk_app WITH CHECK (( SELECT chatdesk.is_unscoped_backend() AS is_unscoped_backend));

CREATE POLICY real_users_app_read ON chatdesk.real_users FOR SELECT TO chatdesk_app USING ((( SELECT chatdesk.is_unscoped_backend() AS is_unscoped_backend) OR (id = ANY (ARRAY( SELECT c.real_user_id
   FROM chatdesk.chats c
  WHERE ((c.chat_state = 'assigned'::text) AND (c.assigned_operator_id = ( SELECT chatdesk.current_operator_id() AS current_operator_id))))))));

CREATE POLICY real_users_web_read ON chatdesk.real_users FOR SELECT TO chatdesk_web USING (((id = ( SELECT chatdesk.web_real_user_id() AS web_real_user_id)) OR (id = ANY (ARRAY( SELECT c.real_user_id
   FROM chatdesk.chats c
  WHERE ((c.chat_state = 'assigned'::text) AND (c.assigned_operator_id = ( SELECT chatdesk.web_operator_id() AS web_operator_id))))))));
