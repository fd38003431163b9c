-- ---------------------------------------------------------------------------
-- Assignment: claiming queued chats, handing them back, idle release.
-- ---------------------------------------------------------------------------
create or replace function chatdesk.check_claim(p_op chatdesk.operators, p_operator_id uuid, p_chat_id uuid,
                                                p_load_after int)
returns void
language plpgsql
stable
as $$
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

create or replace function chatdesk.claim_next_chat(p_operator_id uuid)
returns uuid
language plpgsql
security definer  -- updates chats and operators, which applications may not update
set search_path = chatdesk, pg_temp
set lock_timeout = '5s'  -- a stuck session cannot hang every operator
as $$
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
    -- Only that operator, or a backend, may claim for p_operator_id (42501).
    perform chatdesk.authorize('claim', 'operator', p_operator_id);
    -- Checked first without a lock, so a refused claim takes no chat.
    select * into v_op from chatdesk.operators where id = p_operator_id;
    perform chatdesk.check_claim(v_op, p_operator_id, null, v_op.assigned_chats + 1);

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

comment on function chatdesk.claim_next_chat(uuid) is
    'Gives the operator the oldest queued chat (null: empty queue); SKIP LOCKED, capacity checked (CD003, CD004).';

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
    -- queue (queued_at kept). Refuses an unknown chat or operator (23503),
    -- anyone but the assignee (CD001), and acting as another operator
    -- (42501). A web caller hears only "not the assignee" about chats it does
    -- not hold, unknown ones included.
    perform chatdesk.authorize('release chats', 'operator', p_operator_id);
    select * into v_chat from chatdesk.chats where id = p_chat_id for no key update;
    if v_chat.assigned_operator_id is distinct from p_operator_id then
        perform chatdesk.refuse_not_assignee(v_chat, p_chat_id, p_operator_id, 'release');
    end if;
    update chatdesk.chats
       set chat_state = 'waiting_assignment', state_reason = 'release'
     where id = p_chat_id;
end;
$$;

comment on function chatdesk.release_chat(uuid, uuid) is
    'The assignee hands the chat back to its old place in the queue.';

create or replace function chatdesk.release_idle_chats(p_idle_after interval default '5 minutes')
returns int
language plpgsql
security definer  -- updates chats, which applications may not update
set search_path = chatdesk, pg_temp
set lock_timeout = '5s'  -- a stuck session cannot hang every operator
as $$
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
    -- by one of them. Refuses a missing, non-positive or absurd (over 30
    -- days) interval (23514); web callers and narrowed backends (42501).
    perform chatdesk.authorize('release idle chats', 'backend');
    if p_idle_after is null or p_idle_after <= interval '0' or p_idle_after > interval '30 days' then
        raise exception using errcode = '23514',
            message = format('chatdesk: idle_after must be a positive interval of at most 30 days, not %s',
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

comment on function chatdesk.release_idle_chats(interval) is
    'Returns to the queue every chat whose operator has been silent longer than p_idle_after; returns how many.';
