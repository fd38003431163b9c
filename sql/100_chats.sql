-- ---------------------------------------------------------------------------
-- Chats: the state machine guard and the event log.
-- The allowed changes live in chatdesk.state_transitions, written once. The
-- guard checks every change against it; the message trigger reads it to know
-- where a message moves its chat (and the guard then checks that move too).
-- ---------------------------------------------------------------------------
create or replace function chatdesk.chats__guard_insert()
returns trigger
language plpgsql
as $$
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

create or replace function chatdesk.chats__guard_state()
returns trigger
language plpgsql
as $$
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

create or replace function chatdesk.chats__log_insert()
returns trigger
language plpgsql
security definer  -- writes chat_events, which applications may not write
set search_path = chatdesk, pg_temp
as $$
begin
    -- The chat's first chat_events row and change-feed row: its creation
    -- (state changes are logged by chats__guard_state).
    insert into chatdesk.chat_events (chat_id, from_state, to_state, operator_id, reason, created_at)
    values (new.id, null, new.chat_state, null, new.state_reason, new.created_at);
    perform chatdesk.publish_change(new, 'chat', null, null);
    return null;
end;
$$;
