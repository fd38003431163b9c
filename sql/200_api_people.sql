-- ---------------------------------------------------------------------------
-- API: operators and real users. Creating and changing people is
-- maintenance (a backend's); heartbeat is the operator's own.
-- ---------------------------------------------------------------------------
create or replace function chatdesk.check_name(p_what text, p_name text)
returns void
language plpgsql
immutable
as $$
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

create or replace function chatdesk.create_operator(p_name text, p_max_concurrent_chats int default 1,
                                                    p_auth_user_id uuid default null)
returns uuid
language plpgsql
security definer  -- inserts operators, which applications may not insert directly
set search_path = chatdesk, pg_temp
set lock_timeout = '5s'  -- a stuck session cannot hang every operator
as $$
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

comment on function chatdesk.create_operator(text, int, uuid) is
    'A new active operator (capacity 1..1000); p_auth_user_id links a web login (the JWT''s sub).';

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

comment on function chatdesk.set_operator_active(uuid, boolean) is
    'Takes an operator off or back on duty; an inactive operator cannot claim (CD003).';

create or replace function chatdesk.create_real_user(p_display_name text, p_auth_user_id uuid default null)
returns uuid
language plpgsql
security definer  -- inserts users regardless of the caller's row-level security scope
set search_path = chatdesk, pg_temp
set lock_timeout = '5s'  -- a stuck session cannot hang every operator
as $$
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

comment on function chatdesk.create_real_user(text, uuid) is
    'A new real user; p_auth_user_id links a web login (the JWT''s sub).';

create or replace function chatdesk.link_auth_user(p_operator_id uuid, p_real_user_id uuid, p_auth_user_id uuid)
returns void
language plpgsql
security definer  -- updates people, which applications may not update
set search_path = chatdesk, pg_temp
set lock_timeout = '5s'  -- a stuck session cannot hang every operator
as $$
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

comment on function chatdesk.link_auth_user(uuid, uuid, uuid) is
    'Links a web login (the JWT''s sub) to an existing operator or real user (name one); null unlinks.';

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

comment on function chatdesk.heartbeat(uuid) is
    'Marks the operator as present (last_seen_at); idle release measures from it.';
