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

comment on function chatdesk.release_idle_chats(interval) is
    'Returns to the queue every chat whose operator has been silent longer than p_idle_after; returns how many.';

create or replace function chatdesk.sync_queue()
returns int
language sql
security definer  -- writes the queue table, which applications may not write
set search_path = chatdesk, pg_temp
set lock_timeout = '5s'
as $$
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

comment on function chatdesk.sync_queue() is
    'Puts the queue table right against the chats waiting for assignment; returns rows fixed (chatdesk migrate runs it).';
