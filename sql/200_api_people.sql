-- ---------------------------------------------------------------------------
-- API: operators and real users.
-- ---------------------------------------------------------------------------
create or replace function chatdesk.create_operator(p_name text, p_max_concurrent_chats int default 1)
returns uuid
language plpgsql
security definer  -- inserts operators, which applications may not insert directly
set search_path = chatdesk, pg_temp
set lock_timeout = '5s'  -- a stuck session cannot hang every operator
as $$
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

comment on function chatdesk.create_operator(text, int) is
    'A new active operator. Refuses a blank name or a capacity outside 1..1000 (23514).';

create or replace function chatdesk.set_operator_active(p_operator_id uuid, p_is_active boolean)
returns void
language plpgsql
security definer  -- updates operators, which applications may not update
set search_path = chatdesk, pg_temp
set lock_timeout = '5s'  -- a stuck session cannot hang every operator
as $$
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

comment on function chatdesk.set_operator_active(uuid, boolean) is
    'Takes an operator off or back on duty; an inactive operator cannot claim (CD003).';

create or replace function chatdesk.create_real_user(p_display_name text)
returns uuid
language plpgsql
security definer  -- inserts users regardless of the caller's row-level security scope
set search_path = chatdesk, pg_temp
set lock_timeout = '5s'  -- a stuck session cannot hang every operator
as $$
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

comment on function chatdesk.create_real_user(text) is
    'A new real user. Refuses a blank or over-long name (23514).';

create or replace function chatdesk.heartbeat(p_operator_id uuid)
returns void
language plpgsql
security definer  -- updates operators, which applications may not update
set search_path = chatdesk, pg_temp
set lock_timeout = '5s'  -- a stuck session cannot hang every operator
as $$
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

comment on function chatdesk.heartbeat(uuid) is
    'Marks the operator as present (last_seen_at); idle release measures from it.';
