CREATE SCHEMA chatdesk;

CREATE FUNCTION chatdesk.chats__guard_insert() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
begin
    -- A chat is born waiting for its user, with no assignee and zero counters
    -- (the counters belong to the message triggers).
    if new.chat_state is distinct from 'waiting_real_user_reply' or new.assigned_operator_id is not null then
        raise exception using
            errcode = 'CD002',
            message = format('chatdesk: chat %s must start in waiting_real_user_reply without an operator, not %s',
                             new.id, coalesce(new.chat_state, 'null'));
    end if;
    new.state_reason := 'start';
    new.message_count := 0;
    new.last_message_at := null;
    new.last_user_message_id := null;
    new.waiting_since := null;
    new.queued_at := null;
    new.assigned_at := null;
    new.created_at := chatdesk.clock();
    return new;
end;
$$;

CREATE FUNCTION chatdesk.chats__guard_state() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
declare
    v_event text;
    v_op    chatdesk.operators%rowtype;
begin
    -- Fires when chat_state or the assignee changes, from any source. The
    -- change must name its event in state_reason (chatdesk's functions and
    -- triggers do), and (event, old state) must lead to the new state in
    -- chatdesk.state_transitions; anything else is refused with CD002, a bare
    -- UPDATE included. A claim is checked like claim_next_chat checks it
    -- (CD003, CD004, under the operator's row lock); user_message and
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
            message = format('chatdesk: chat %s cannot go from %s to %s%s',
                             old.id, old.chat_state, new.chat_state,
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
        if v_op.id is null or not v_op.is_active or v_op.assigned_chats > v_op.max_concurrent_chats then
            perform chatdesk.refuse_claim(v_op, new.assigned_operator_id, old.id, v_op.assigned_chats);
        end if;
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

    -- One chat_events row per change. Written here rather than by an AFTER
    -- trigger (one trigger call less on every change); should the UPDATE
    -- still fail, the statement rolls back and the row goes with it.
    insert into chatdesk.chat_events (chat_id, from_state, to_state, operator_id, reason, created_at)
    values (old.id, old.chat_state, new.chat_state,
            coalesce(new.assigned_operator_id, old.assigned_operator_id), v_event, chatdesk.clock());
    return new;
end;
$$;

CREATE FUNCTION chatdesk.chats__log_insert() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    AS $$
begin
    -- The chat's first chat_events row: its creation (state changes are
    -- logged by chats__guard_state).
    insert into chatdesk.chat_events (chat_id, from_state, to_state, operator_id, reason, created_at)
    values (new.id, null, new.chat_state, null, new.state_reason, new.created_at);
    return null;
end;
$$;

CREATE FUNCTION chatdesk.claim_next_chat(p_operator_id uuid) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    SET lock_timeout TO '5s'
    AS $$
declare
    v_chat_id uuid;
    v_op      chatdesk.operators%rowtype;
begin
    -- Gives the operator the waiting chat with the oldest queued_at, or null
    -- when the queue is empty. Takes the chat with SKIP LOCKED, so claimers
    -- never wait on each other and no chat goes to two operators; the state
    -- guard then checks and counts the claim under the operator's row lock,
    -- so two claims by one operator cannot both pass its capacity. Refuses:
    -- unknown operator (23503), inactive (CD003), at max_concurrent_chats (CD004).
    if chatdesk.current_operator_id() is not null then  -- an operator-scoped session
        perform chatdesk.require_scope(p_operator_id, 'claim');
    end if;
    -- Checked first without a lock, so a refused claim takes no chat.
    select * into v_op from chatdesk.operators where id = p_operator_id;
    if v_op.id is null or not v_op.is_active or v_op.assigned_chats >= v_op.max_concurrent_chats then
        perform chatdesk.refuse_claim(v_op, p_operator_id, null, v_op.assigned_chats + 1);
    end if;

    select id into v_chat_id
      from chatdesk.chats
     where chat_state = 'waiting_assignment'
     order by queued_at, id
     limit 1
       for no key update skip locked;
    if v_chat_id is null then
        return null;
    end if;

    update chatdesk.chats
       set chat_state = 'assigned', state_reason = 'claim', assigned_operator_id = p_operator_id
     where id = v_chat_id;
    return v_chat_id;
end;
$$;

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
    v_state    text;
    v_assignee uuid;
begin
    -- Closes a chat from any open state. Refuses an unknown chat (23503) and
    -- a chat that is already closed (CD002). A later user message reopens it.
    select c.chat_state, c.assigned_operator_id into v_state, v_assignee
      from chatdesk.chats c where c.id = p_chat_id for no key update;
    if not found then
        raise exception using errcode = '23503',
            message = format('chatdesk: chat %s does not exist', coalesce(p_chat_id::text, 'null'));
    end if;
    if chatdesk.current_operator_id() is not null
       and v_assignee is distinct from chatdesk.current_operator_id() then
        raise exception using errcode = 'CD001',
            message = format('chatdesk: operator %s is not the assignee of chat %s and cannot close it',
                             chatdesk.current_operator_id(), p_chat_id);
    end if;
    if v_state = 'closed' then
        raise exception using errcode = 'CD002',
            message = format('chatdesk: chat %s is already closed', p_chat_id);
    end if;
    update chatdesk.chats set chat_state = 'closed', state_reason = 'close' where id = p_chat_id;
end;
$$;

CREATE FUNCTION chatdesk.compute_operator_stats(p_date date, p_operator_id uuid DEFAULT NULL::uuid) RETURNS integer
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
    -- every operator with messages that day, and every operator who already
    -- has a row for it; otherwise that one operator. Returns rows written.
    if p_date is null then
        raise exception using errcode = '23514', message = 'chatdesk: stats date must not be null';
    end if;
    v_from := p_date::timestamp at time zone v_tz;
    v_to := (p_date + 1)::timestamp at time zone v_tz;

    -- EXECUTE plans with the actual values, so "$3 is null" folds away and
    -- each variant gets its own index (day range, or operator + day range).
    execute $sql$
        with day as (
            select m.handled_by_operator_id as operator_id,
                   m.chat_id,
                   -- null when the message answered no run; never negative
                   case when m.reply_started_at is not null
                        then greatest(extract(epoch from m.created_at - m.reply_started_at), 0)
                   end as reply_seconds
              from chatdesk.messages m
             where m.handled_by_operator_id is not null
               and m.created_at >= $1 and m.created_at < $2
               and ($3::uuid is null or m.handled_by_operator_id = $3)
        ), per_operator as (
            select operator_id,
                   count(*)::int as messages_sent,
                   count(distinct chat_id)::int as chats_handled,
                   count(reply_seconds)::int as replies,
                   round(avg(reply_seconds), 3) as avg_s,
                   round((percentile_cont(0.5) within group (order by reply_seconds::float8))::numeric, 3) as p50_s,
                   round((percentile_cont(0.9) within group (order by reply_seconds::float8))::numeric, 3) as p90_s
              from day
             group by operator_id
        ), targets as (
            select o.id as operator_id
              from chatdesk.operators o
             where case when $3::uuid is null
                        then o.is_active
                             or exists (select 1 from per_operator p where p.operator_id = o.id)
                             or exists (select 1 from chatdesk.operator_daily_stats s
                                         where s.operator_id = o.id and s.stat_date = $4)
                        else o.id = $3 end
        ), written as (
            insert into chatdesk.operator_daily_stats as s
                   (operator_id, stat_date, messages_sent, chats_handled, replies,
                    reply_time_avg_seconds, reply_time_p50_seconds, reply_time_p90_seconds, computed_at)
            select t.operator_id, $4, coalesce(p.messages_sent, 0), coalesce(p.chats_handled, 0),
                   coalesce(p.replies, 0), p.avg_s, p.p50_s, p.p90_s, $5
              from targets t
              left join per_operator p using (operator_id)
            on conflict (operator_id, stat_date) do update
               set messages_sent = excluded.messages_sent,
                   chats_handled = excluded.chats_handled,
                   replies = excluded.replies,
                   reply_time_avg_seconds = excluded.reply_time_avg_seconds,
                   reply_time_p50_seconds = excluded.reply_time_p50_seconds,
                   reply_time_p90_seconds = excluded.reply_time_p90_seconds,
                   computed_at = excluded.computed_at
            returning 1
        )
        select count(*)::int from written
    $sql$
    into v_count
    using v_from, v_to, p_operator_id, p_date, chatdesk.clock();
    return v_count;
end;
$_$;

CREATE FUNCTION chatdesk.create_operator(p_name text, p_max_concurrent_chats integer DEFAULT 1) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    SET lock_timeout TO '5s'
    AS $$
declare
    v_id uuid;
begin
    -- A new active operator. Refuses a blank name or a capacity outside 1..1000 (23514).
    if chatdesk.current_operator_id() is not null then  -- an operator-scoped session
        perform chatdesk.require_scope(null, 'create operators');
    end if;
    if p_name is null or btrim(p_name) = '' or length(p_name) > 200 then
        raise exception using errcode = '23514',
            message = format('chatdesk: operator name must have 1 to 200 characters, not %s',
                             coalesce(quote_literal(p_name), 'null'));
    end if;
    if p_max_concurrent_chats is null or p_max_concurrent_chats not between 1 and 1000 then
        raise exception using errcode = '23514',
            message = format('chatdesk: max_concurrent_chats must be 1 to 1000, not %s',
                             coalesce(p_max_concurrent_chats::text, 'null'));
    end if;
    insert into chatdesk.operators (name, max_concurrent_chats)
    values (p_name, p_max_concurrent_chats)
    returning id into v_id;
    return v_id;
end;
$$;

CREATE FUNCTION chatdesk.create_real_user(p_display_name text) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    SET lock_timeout TO '5s'
    AS $$
declare
    v_id uuid;
begin
    -- A new real user. Refuses a blank or over-long name (23514).
    if chatdesk.current_operator_id() is not null then  -- an operator-scoped session
        perform chatdesk.require_scope(null, 'create users');
    end if;
    if p_display_name is null or btrim(p_display_name) = '' or length(p_display_name) > 200 then
        raise exception using errcode = '23514',
            message = format('chatdesk: display name must have 1 to 200 characters, not %s',
                             coalesce(quote_literal(p_display_name), 'null'));
    end if;
    insert into chatdesk.real_users (display_name) values (p_display_name) returning id into v_id;
    return v_id;
end;
$$;

CREATE FUNCTION chatdesk.current_operator_id() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$
    select nullif(current_setting('chatdesk.operator_id', true), '')::uuid;
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
    if chatdesk.current_operator_id() is not null then  -- an operator-scoped session
        perform chatdesk.require_scope(p_operator_id, 'send a heartbeat');
    end if;
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
    --   * a repeated (chat_id, client_message_id) writes nothing (returns null);
    --   * refuses: unknown chat/operator/seen message (23503), empty or
    --     over-long body and misplaced fields (23514), an operator who is not
    --     the assignee (CD001), an operator message to a closed chat (CD005);
    --   * hands out the id and created_at, so id order is commit order per chat;
    --   * moves the chat along the state table and keeps its counters exact.
    if new.sender_type is null or new.sender_type not in ('real_user', 'operator', 'system') then
        raise exception using errcode = '23514',
            message = format('chatdesk: sender_type %s is not real_user, operator or system (chat %s)',
                             coalesce(quote_literal(new.sender_type), 'null'), new.chat_id);
    end if;
    if new.body is null or btrim(new.body, E' \t\r\n') = '' or length(new.body) > 10000 then
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

    if new.client_message_id is not null and exists (
        select 1 from chatdesk.messages
         where chat_id = new.chat_id and client_message_id = new.client_message_id) then
        return null;  -- a client retry: the first message stands
    end if;

    if new.sender_type = 'operator' then
        if new.handled_by_operator_id is null
           or not exists (select 1 from chatdesk.operators where id = new.handled_by_operator_id) then
            raise exception using errcode = '23503',
                message = format('chatdesk: operator %s does not exist (chat %s)',
                                 coalesce(new.handled_by_operator_id::text, 'null'), new.chat_id);
        end if;
        if v_chat.chat_state = 'closed' then
            raise exception using errcode = 'CD005',
                message = format('chatdesk: chat %s is closed; operator %s cannot write to it',
                                 new.chat_id, new.handled_by_operator_id);
        end if;
        if v_chat.assigned_operator_id is distinct from new.handled_by_operator_id then
            raise exception using errcode = 'CD001',
                message = format('chatdesk: operator %s is not the assignee of chat %s (%s, assignee %s)',
                                 new.handled_by_operator_id, new.chat_id, v_chat.chat_state,
                                 coalesce(v_chat.assigned_operator_id::text, 'none'));
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
                message = format('chatdesk: seen message %s is not a message of chat %s',
                                 new.seen_message_id, new.chat_id);
        end if;
        -- The reply race: the user wrote after what the operator saw.
        v_meanwhile := v_chat.last_user_message_id > new.seen_message_id;
    end if;

    new.id := nextval('chatdesk.messages_id_seq');
    new.created_at := chatdesk.clock();
    new.reply_started_at := null;

    if new.sender_type = 'real_user' then
        -- where the state table sends a chat on a user message (null: it stays)
        select t.to_state into v_next from chatdesk.state_transitions t
         where t.event = 'user_message' and t.from_state = v_chat.chat_state;
        update chatdesk.chats
           set message_count = message_count + 1,
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
        -- Having seen everything, the operator hands the chat back to the user;
        -- with a newer user message unseen, the chat stays with the operator.
        v_next := null;
        if not v_meanwhile then
            select t.to_state into v_next from chatdesk.state_transitions t
             where t.event = 'operator_reply' and t.from_state = v_chat.chat_state;
        end if;
        update chatdesk.chats
           set message_count = message_count + 1,
               last_message_at = greatest(last_message_at, new.created_at),
               waiting_since = null,
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
            message = format('chatdesk: message %s (chat %s): only body and handled_by_operator_id may change',
                             old.id, old.chat_id);
    end if;
    if new.body is null or btrim(new.body, E' \t\r\n') = '' then
        raise exception using errcode = '23514',
            message = format('chatdesk: message %s (chat %s): body must not be empty', old.id, old.chat_id);
    end if;
    return new;
end;
$$;

CREATE FUNCTION chatdesk.recount_chats(p_chat_ids uuid[]) RETURNS void
    LANGUAGE plpgsql
    AS $$
begin
    -- Recomputes the counters and bookkeeping of the given chats from their
    -- messages. Locks the chats (in id order, so two recounts cannot
    -- deadlock) before reading, so the recount sees every committed message.
    perform 1 from chatdesk.chats where id = any (p_chat_ids) order by id for no key update;
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
    CONSTRAINT operators_assigned_chats_check CHECK ((assigned_chats >= 0)),
    CONSTRAINT operators_max_concurrent_chats_check CHECK (((max_concurrent_chats >= 1) AND (max_concurrent_chats <= 1000))),
    CONSTRAINT operators_name_check CHECK (((length(btrim(name)) >= 1) AND (length(btrim(name)) <= 200)))
);

CREATE FUNCTION chatdesk.refuse_claim(p_op chatdesk.operators, p_operator_id uuid, p_chat_id uuid, p_load_after integer) RETURNS void
    LANGUAGE plpgsql STABLE
    AS $$
begin
    -- Says why an operator may not take another chat: unknown (23503),
    -- inactive (CD003), or a load after the claim over max_concurrent_chats
    -- (CD004). Callers test the condition inline and call this to raise:
    -- claim_next_chat before it takes a chat, and the state guard under the
    -- operator's row lock for every claim (the check that counts).
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

CREATE FUNCTION chatdesk.release_chat(p_chat_id uuid, p_operator_id uuid) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    SET lock_timeout TO '5s'
    AS $$
declare
    v_chat chatdesk.chats%rowtype;
begin
    -- The assignee hands the chat back; it returns to its old place in the
    -- queue (queued_at kept). Refuses an unknown chat or operator (23503) and
    -- anyone but the assignee (CD001).
    if chatdesk.current_operator_id() is not null then  -- an operator-scoped session
        perform chatdesk.require_scope(p_operator_id, 'release chats');
    end if;
    select * into v_chat from chatdesk.chats where id = p_chat_id for no key update;
    if not found then
        raise exception using errcode = '23503',
            message = format('chatdesk: chat %s does not exist', coalesce(p_chat_id::text, 'null'));
    end if;
    if p_operator_id is null or not exists (select 1 from chatdesk.operators where id = p_operator_id) then
        raise exception using errcode = '23503',
            message = format('chatdesk: operator %s does not exist', coalesce(p_operator_id::text, 'null'));
    end if;
    if v_chat.assigned_operator_id is distinct from p_operator_id then
        raise exception using errcode = 'CD001',
            message = format('chatdesk: operator %s is not the assignee of chat %s (%s, assignee %s)',
                             p_operator_id, p_chat_id, v_chat.chat_state,
                             coalesce(v_chat.assigned_operator_id::text, 'none'));
    end if;
    update chatdesk.chats
       set chat_state = 'waiting_assignment', state_reason = 'release'
     where id = p_chat_id;
end;
$$;

CREATE FUNCTION chatdesk.release_idle_chats(p_idle_after interval DEFAULT '00:05:00'::interval) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    SET lock_timeout TO '5s'
    AS $$
declare
    v_cutoff    timestamptz;
    v_count     int;
    v_chats     uuid[];
    v_operators uuid[];
begin
    -- Returns to the queue (old place, reason idle) every assigned chat whose
    -- operator has not been active (heartbeat, message, claim) since
    -- clock() - p_idle_after. SKIP LOCKED lets several schedulers run at once:
    -- a chat being written to right now is not idle, and each chat is released
    -- by one of them. Refuses a missing or non-positive interval (23514).
    if p_idle_after is null or p_idle_after <= interval '0' then
        raise exception using errcode = '23514',
            message = format('chatdesk: idle_after must be a positive interval, not %s',
                             coalesce(p_idle_after::text, 'null'));
    end if;
    v_cutoff := chatdesk.clock() - p_idle_after;

    -- Take the idle chats (SKIP LOCKED: a chat being written to right now is
    -- not idle), then their operators in id order, as every statement that
    -- holds several operator rows does, so concurrent sweeps cannot deadlock.
    select coalesce(array_agg(x.id), '{}'), coalesce(array_agg(distinct x.assigned_operator_id), '{}')
      into v_chats, v_operators
      from (select c.id, c.assigned_operator_id
              from chatdesk.chats c
              join chatdesk.operators o on o.id = c.assigned_operator_id
             where c.chat_state = 'assigned'
               and coalesce(o.last_active_at, '-infinity') < v_cutoff
               for no key update of c skip locked) x;
    perform 1 from chatdesk.operators where id = any (v_operators) order by id for no key update;
    update chatdesk.chats
       set chat_state = 'waiting_assignment', state_reason = 'idle'
     where id = any (v_chats);
    get diagnostics v_count = row_count;
    return v_count;
end;
$$;

CREATE FUNCTION chatdesk.require_scope(p_operator_id uuid, p_what text) RETURNS void
    LANGUAGE plpgsql STABLE
    AS $$
declare
    v_scope uuid := chatdesk.current_operator_id();
begin
    -- Refuses (42501) when the session is scoped to an operator and p_what is
    -- done for another operator (or, with p_operator_id null, for no operator:
    -- things only a backend does).
    if v_scope is not null and p_operator_id is distinct from v_scope then
        raise exception using errcode = '42501',
            message = format('chatdesk: this session acts for operator %s and cannot %s%s',
                             v_scope, p_what, coalesce(' for operator ' || p_operator_id, ''));
    end if;
end;
$$;

CREATE FUNCTION chatdesk.rollup_operator_stats(p_date date) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    SET lock_timeout TO '5s'
    AS $$
begin
    -- Every operator's row for p_date in one set-based pass; returns rows written.
    return chatdesk.compute_operator_stats(p_date, null);
end;
$$;

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
    -- id returns the first message, even after the chat has moved on.
    if chatdesk.current_operator_id() is not null then  -- an operator-scoped session
        perform chatdesk.require_scope(p_operator_id, 'write');
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
         where m.chat_id = p_chat_id and m.client_message_id = p_client_message_id;
    end if;
    -- a retry: the first message, the chat as it is now, and whether the user
    -- had written after what the operator saw when the first one was sent
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

CREATE FUNCTION chatdesk.send_user_message(p_chat_id uuid, p_body text, p_client_message_id text DEFAULT NULL::text) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    SET lock_timeout TO '5s'
    AS $$
declare
    v_id bigint;
begin
    -- The user's message; moves a waiting or closed chat into the queue.
    -- The same (chat, client_message_id) again returns the first message's id.
    if chatdesk.current_operator_id() is not null then  -- an operator-scoped session
        perform chatdesk.require_scope(null, 'write as a user');
    end if;
    insert into chatdesk.messages (chat_id, sender_type, body, client_message_id)
    values (p_chat_id, 'real_user', p_body, p_client_message_id)
    returning id into v_id;
    if v_id is null then  -- the trigger recognised a retry and wrote nothing
        select id into v_id from chatdesk.messages
         where chat_id = p_chat_id and client_message_id = p_client_message_id;
    end if;
    return v_id;
end;
$$;

CREATE FUNCTION chatdesk.set_operator_active(p_operator_id uuid, p_is_active boolean) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    SET lock_timeout TO '5s'
    AS $$
begin
    -- Takes an operator off (or back on) duty. An inactive operator cannot
    -- claim; chats already assigned stay until answered, released or idle.
    if chatdesk.current_operator_id() is not null then  -- an operator-scoped session
        perform chatdesk.require_scope(null, 'change who is active');
    end if;
    if p_is_active is null then
        raise exception using errcode = '23514', message = 'chatdesk: is_active must be true or false';
    end if;
    update chatdesk.operators set is_active = p_is_active where id = p_operator_id;
    if not found then
        raise exception using errcode = '23503',
            message = format('chatdesk: operator %s does not exist', coalesce(p_operator_id::text, 'null'));
    end if;
end;
$$;

CREATE FUNCTION chatdesk.settings__check() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION chatdesk.start_chat(p_real_user_id uuid) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    SET lock_timeout TO '5s'
    AS $$
declare
    v_id uuid;
begin
    -- A new chat in waiting_real_user_reply. Refuses an unknown user (23503).
    if chatdesk.current_operator_id() is not null then  -- an operator-scoped session
        perform chatdesk.require_scope(null, 'start chats');
    end if;
    if p_real_user_id is null or not exists (select 1 from chatdesk.real_users where id = p_real_user_id) then
        raise exception using errcode = '23503',
            message = format('chatdesk: real user %s does not exist', coalesce(p_real_user_id::text, 'null'));
    end if;
    insert into chatdesk.chats (real_user_id) values (p_real_user_id) returning id into v_id;
    return v_id;
end;
$$;

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

CREATE FUNCTION chatdesk.update_operator_stats(p_operator_id uuid, p_date date) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'chatdesk', 'pg_temp'
    SET lock_timeout TO '5s'
    AS $$
begin
    -- One operator's row for p_date; the same figures the rollup writes.
    -- Refuses an unknown operator (23503) or a null date (23514).
    if p_operator_id is null or not exists (select 1 from chatdesk.operators where id = p_operator_id) then
        raise exception using errcode = '23503',
            message = format('chatdesk: operator %s does not exist', coalesce(p_operator_id::text, 'null'));
    end if;
    perform chatdesk.compute_operator_stats(p_date, p_operator_id);
end;
$$;

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
    select 'operator', o.id, 'total_messages', o.total_messages::text, n.n::text
      from chatdesk.operators o
     cross join lateral (select count(*) as n from chatdesk.messages m
                          where m.handled_by_operator_id = o.id) n
     where o.total_messages <> n.n
    union all
    select 'operator', o.id, 'assigned_chats', o.assigned_chats::text, a.n::text
      from chatdesk.operators o
     cross join lateral (select count(*) as n from chatdesk.chats c
                          where c.assigned_operator_id = o.id and c.chat_state = 'assigned') a
     where o.assigned_chats <> a.n
     order by 1, 2, 3;

    if p_repair then
        update chatdesk.chats c
           set message_count = a.message_count,
               last_message_at = a.last_message_at,
               last_user_message_id = a.last_user_message_id,
               waiting_since = a.waiting_since
          from chatdesk.chat_counters_actual a
         where a.chat_id = c.id
           and (c.message_count, c.last_message_at, c.last_user_message_id, c.waiting_since)
               is distinct from (a.message_count, a.last_message_at, a.last_user_message_id, a.waiting_since);
        lock table chatdesk.chats in share row exclusive mode;  -- no claim or release meanwhile
        update chatdesk.operators o
           set total_messages = n.n, assigned_chats = n.a
          from (select o2.id,
                       (select count(*) from chatdesk.messages m where m.handled_by_operator_id = o2.id) as n,
                       (select count(*) from chatdesk.chats c
                         where c.assigned_operator_id = o2.id and c.chat_state = 'assigned')::int as a
                  from chatdesk.operators o2) n
         where n.id = o.id and (o.total_messages, o.assigned_chats) is distinct from (n.n, n.a);
    end if;
end;
$$;

COMMENT ON FUNCTION chatdesk.verify_counters(p_repair boolean) IS 'Recounts message_count, last_message_at, total_messages, assigned_chats (and write-time bookkeeping); returns drifted rows; p_repair fixes them.';

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
    CONSTRAINT chats_assignee_check CHECK (((chat_state = 'assigned'::text) = (assigned_operator_id IS NOT NULL))),
    CONSTRAINT chats_chat_state_check CHECK ((chat_state = ANY (ARRAY['waiting_real_user_reply'::text, 'waiting_assignment'::text, 'assigned'::text, 'closed'::text])))
)
WITH (fillfactor='80');

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

CREATE TABLE chatdesk.chat_events (
    id bigint NOT NULL,
    chat_id uuid NOT NULL,
    from_state text,
    to_state text NOT NULL,
    operator_id uuid,
    reason text NOT NULL,
    created_at timestamp with time zone NOT NULL
);

ALTER TABLE chatdesk.chat_events ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME chatdesk.chat_events_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE SEQUENCE chatdesk.messages_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE chatdesk.messages_id_seq OWNED BY chatdesk.messages.id;

CREATE TABLE chatdesk.operator_daily_stats (
    operator_id uuid NOT NULL,
    stat_date date NOT NULL,
    messages_sent integer DEFAULT 0 NOT NULL,
    chats_handled integer DEFAULT 0 NOT NULL,
    reply_time_avg_seconds numeric,
    reply_time_p50_seconds numeric,
    reply_time_p90_seconds numeric,
    replies integer DEFAULT 0 NOT NULL,
    computed_at timestamp with time zone DEFAULT now() NOT NULL
);

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

CREATE TABLE chatdesk.real_users (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    display_name text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT real_users_display_name_check CHECK (((length(btrim(display_name)) >= 1) AND (length(btrim(display_name)) <= 200)))
);

CREATE TABLE chatdesk.settings (
    key text NOT NULL,
    value text NOT NULL
);

COMMENT ON TABLE chatdesk.settings IS 'Package settings. stats_time_zone: the IANA zone whose calendar days the daily stats use.';

CREATE TABLE chatdesk.state_transitions (
    event text NOT NULL,
    from_state text NOT NULL,
    to_state text NOT NULL
);

ALTER TABLE ONLY chatdesk.chat_events
    ADD CONSTRAINT chat_events_pkey PRIMARY KEY (id);

ALTER TABLE ONLY chatdesk.chats
    ADD CONSTRAINT chats_pkey PRIMARY KEY (id);

ALTER TABLE ONLY chatdesk.messages
    ADD CONSTRAINT messages_pkey PRIMARY KEY (id);

ALTER TABLE ONLY chatdesk.operator_daily_stats
    ADD CONSTRAINT operator_daily_stats_pkey PRIMARY KEY (operator_id, stat_date);

ALTER TABLE ONLY chatdesk.operators
    ADD CONSTRAINT operators_pkey PRIMARY KEY (id);

ALTER TABLE ONLY chatdesk.real_users
    ADD CONSTRAINT real_users_pkey PRIMARY KEY (id);

ALTER TABLE ONLY chatdesk.settings
    ADD CONSTRAINT settings_pkey PRIMARY KEY (key);

ALTER TABLE ONLY chatdesk.state_transitions
    ADD CONSTRAINT state_transitions_pkey PRIMARY KEY (event, from_state);

CREATE INDEX chat_events_chat_idx ON chatdesk.chat_events USING btree (chat_id, id);

CREATE INDEX chats_assigned_idx ON chatdesk.chats USING btree (assigned_operator_id) WHERE (chat_state = 'assigned'::text);

CREATE INDEX chats_queue_idx ON chatdesk.chats USING btree (queued_at, id) WHERE (chat_state = 'waiting_assignment'::text);

CREATE INDEX chats_real_user_idx ON chatdesk.chats USING btree (real_user_id);

CREATE INDEX messages_chat_idx ON chatdesk.messages USING btree (chat_id, id);

CREATE UNIQUE INDEX messages_client_id_idx ON chatdesk.messages USING btree (chat_id, client_message_id) WHERE (client_message_id IS NOT NULL);

CREATE INDEX messages_operator_day_idx ON chatdesk.messages USING btree (created_at) INCLUDE (handled_by_operator_id, chat_id, reply_started_at) WHERE (handled_by_operator_id IS NOT NULL);

CREATE INDEX messages_operator_idx ON chatdesk.messages USING btree (handled_by_operator_id, created_at) INCLUDE (chat_id, reply_started_at) WHERE (handled_by_operator_id IS NOT NULL);

CREATE INDEX operator_daily_stats_date_idx ON chatdesk.operator_daily_stats USING btree (stat_date);

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

ALTER TABLE ONLY chatdesk.messages
    ADD CONSTRAINT messages_chat_id_fkey FOREIGN KEY (chat_id) REFERENCES chatdesk.chats(id);

ALTER TABLE ONLY chatdesk.messages
    ADD CONSTRAINT messages_handled_by_operator_id_fkey FOREIGN KEY (handled_by_operator_id) REFERENCES chatdesk.operators(id);

ALTER TABLE ONLY chatdesk.operator_daily_stats
    ADD CONSTRAINT operator_daily_stats_operator_id_fkey FOREIGN KEY (operator_id) REFERENCES chatdesk.operators(id);

ALTER TABLE chatdesk.chat_events ENABLE ROW LEVEL SECURITY;

CREATE POLICY chat_events_app_read ON chatdesk.chat_events FOR SELECT TO chatdesk_app USING (((chatdesk.current_operator_id() IS NULL) OR (chat_id IN ( SELECT chats.id
   FROM chatdesk.chats
  WHERE (chats.assigned_operator_id = chatdesk.current_operator_id())))));

ALTER TABLE chatdesk.chats ENABLE ROW LEVEL SECURITY;

CREATE POLICY chats_app_insert ON chatdesk.chats FOR INSERT TO chatdesk_app WITH CHECK ((chatdesk.current_operator_id() IS NULL));

CREATE POLICY chats_app_read ON chatdesk.chats FOR SELECT TO chatdesk_app USING (((chatdesk.current_operator_id() IS NULL) OR (assigned_operator_id = chatdesk.current_operator_id())));

ALTER TABLE chatdesk.messages ENABLE ROW LEVEL SECURITY;

CREATE POLICY messages_app_insert ON chatdesk.messages FOR INSERT TO chatdesk_app WITH CHECK (((chatdesk.current_operator_id() IS NULL) OR ((sender_type = 'operator'::text) AND (handled_by_operator_id = chatdesk.current_operator_id()))));

CREATE POLICY messages_app_read ON chatdesk.messages FOR SELECT TO chatdesk_app USING (((chatdesk.current_operator_id() IS NULL) OR (chat_id IN ( SELECT chats.id
   FROM chatdesk.chats
  WHERE (chats.assigned_operator_id = chatdesk.current_operator_id())))));

ALTER TABLE chatdesk.real_users ENABLE ROW LEVEL SECURITY;

CREATE POLICY real_users_app_insert ON chatdesk.real_users FOR INSERT TO chatdesk_app WITH CHECK ((chatdesk.current_operator_id() IS NULL));

CREATE POLICY real_users_app_read ON chatdesk.real_users FOR SELECT TO chatdesk_app USING (((chatdesk.current_operator_id() IS NULL) OR (id IN ( SELECT chats.real_user_id
   FROM chatdesk.chats
  WHERE (chats.assigned_operator_id = chatdesk.current_operator_id())))));
