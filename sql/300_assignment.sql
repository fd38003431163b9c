-- ---------------------------------------------------------------------------
-- Assignment: claiming queued chats, handing them back, idle release.
-- ---------------------------------------------------------------------------
create or replace function chatdesk.lock_operator_for_claim(p_operator_id uuid, p_chat_id uuid default null)
returns void
language plpgsql
as $$
declare
    v_op   chatdesk.operators%rowtype;
    v_load int;
begin
    -- The one place that decides whether an operator may take another chat.
    -- Locks the operator row (until commit) by recording the claim as the
    -- operator's latest activity, so two claims for one operator serialise
    -- and cannot both pass; then refuses an unknown operator (23503), an
    -- inactive one (CD003), or one at max_concurrent_chats (CD004). A refusal
    -- rolls the activity back with everything else.
    update chatdesk.operators
       set last_active_at = greatest(last_active_at, chatdesk.clock())
     where id = p_operator_id
    returning * into v_op;
    if not found then
        raise exception using errcode = '23503',
            message = format('chatdesk: operator %s does not exist%s',
                             coalesce(p_operator_id::text, 'null'), coalesce(' (chat ' || p_chat_id || ')', ''));
    end if;
    if not v_op.is_active then
        raise exception using errcode = 'CD003',
            message = format('chatdesk: operator %s is not active%s', p_operator_id,
                             coalesce(' (chat ' || p_chat_id || ')', ''));
    end if;
    select count(*) into v_load
      from chatdesk.chats
     where assigned_operator_id = p_operator_id and chat_state = 'assigned';
    if v_load >= v_op.max_concurrent_chats then
        raise exception using errcode = 'CD004',
            message = format('chatdesk: operator %s already has %s of %s chats%s',
                             p_operator_id, v_load, v_op.max_concurrent_chats,
                             coalesce(' (chat ' || p_chat_id || ')', ''));
    end if;
end;
$$;

create or replace function chatdesk.claim_next_chat(p_operator_id uuid)
returns uuid
language plpgsql
security definer  -- updates chats and operators, which applications may not update
set search_path = chatdesk, pg_temp
set lock_timeout = '5s'  -- a stuck session cannot hang every operator
as $$
declare
    v_chat_id uuid;
begin
    -- Gives the operator the waiting chat with the oldest queued_at, or null
    -- when the queue is empty. Locks the operator row first, so two claims by
    -- one operator serialise and cannot both pass the capacity check; takes
    -- the chat with SKIP LOCKED, so claimers never wait on each other and no
    -- chat goes to two operators. Refuses: unknown operator (23503), inactive
    -- (CD003), at max_concurrent_chats (CD004).
    if chatdesk.current_operator_id() is not null then  -- an operator-scoped session
        perform chatdesk.require_scope(p_operator_id, 'claim');
    end if;
    -- Checked before a chat is taken, so a refused claim locks no chat.
    perform chatdesk.lock_operator_for_claim(p_operator_id);

    select id into v_chat_id
      from chatdesk.chats
     where chat_state = 'waiting_assignment'
     order by queued_at, id
     limit 1
       for no key update skip locked;
    if v_chat_id is null then
        return null;
    end if;

    -- The operator was checked above, under its row lock: tell the state
    -- guard, so it does not count the operator's chats a second time.
    perform set_config('chatdesk.claim_checked', v_chat_id::text, true);
    update chatdesk.chats
       set chat_state = 'assigned', state_reason = 'claim', assigned_operator_id = p_operator_id
     where id = v_chat_id;
    perform set_config('chatdesk.claim_checked', '', true);
    return v_chat_id;
end;
$$;

create or replace function chatdesk.release_chat(p_chat_id uuid, p_operator_id uuid)
returns void
language plpgsql
security definer  -- updates chats, which applications may not update
set search_path = chatdesk, pg_temp
set lock_timeout = '5s'  -- a stuck session cannot hang every operator
as $$
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

create or replace function chatdesk.release_idle_chats(p_idle_after interval default '5 minutes')
returns int
language plpgsql
security definer  -- updates chats, which applications may not update
set search_path = chatdesk, pg_temp
set lock_timeout = '5s'  -- a stuck session cannot hang every operator
as $$
declare
    v_cutoff timestamptz;
    v_count  int;
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

    with idle as (
        select c.id
          from chatdesk.chats c
          join chatdesk.operators o on o.id = c.assigned_operator_id
         where c.chat_state = 'assigned'
           and coalesce(o.last_active_at, '-infinity') < v_cutoff
         order by c.id
           for no key update of c skip locked
    )
    update chatdesk.chats c
       set chat_state = 'waiting_assignment', state_reason = 'idle'
      from idle
     where c.id = idle.id;
    get diagnostics v_count = row_count;
    return v_count;
end;
$$;
