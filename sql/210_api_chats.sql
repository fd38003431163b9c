-- ---------------------------------------------------------------------------
-- API: chats and messages. The rules themselves live in the triggers
-- (110_messages.sql, 100_chats.sql); these are the friendly front doors.
-- ---------------------------------------------------------------------------
create or replace function chatdesk.check_open_chats(p_real_user_id uuid, p_chat_id uuid)
returns void
language plpgsql
as $$
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

create or replace function chatdesk.start_chat(p_real_user_id uuid)
returns uuid
language plpgsql
security definer  -- inserts chats regardless of the caller's row-level security scope
set search_path = chatdesk, pg_temp
set lock_timeout = '5s'  -- a stuck session cannot hang every operator
as $$
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

comment on function chatdesk.start_chat(uuid) is
    'A new chat of the real user, in waiting_real_user_reply.';

create or replace function chatdesk.send_user_message(
    p_chat_id uuid, p_body text, p_client_message_id text default null)
returns bigint
language plpgsql
security definer  -- inserts and reads back messages past row-level security (retries)
set search_path = chatdesk, pg_temp
set lock_timeout = '5s'  -- a stuck session cannot hang every operator
as $$
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

comment on function chatdesk.send_user_message(uuid, text, text) is
    'The user''s message (returns its id); a retry with the same client id returns the first message''s id and writes nothing.';

create or replace function chatdesk.holds_chat(p_chat_id uuid, p_operator_id uuid)
returns boolean
language plpgsql
stable
as $$
begin
    -- Whether operator p_operator_id holds chat p_chat_id now (no lock: a
    -- first look; the message trigger decides under the chat's lock).
    -- PL/pgSQL: its plan is kept for the session (a SQL function's is made
    -- afresh on every web answer; tests/test_hot_paths.py).
    return exists (select 1 from chatdesk.chats c
                    where c.id = p_chat_id and c.chat_state = 'assigned' and c.assigned_operator_id = p_operator_id);
end;
$$;

create or replace function chatdesk.send_operator_message(
    p_chat_id uuid, p_operator_id uuid, p_body text,
    p_client_message_id text default null, p_seen_message_id bigint default null)
returns table (message_id bigint, chat_state text, user_replied_meanwhile boolean)
language plpgsql
security definer  -- reads back a retried message after the chat left the operator's scope
set search_path = chatdesk, pg_temp
set lock_timeout = '5s'  -- a stuck session cannot hang every operator
as $$
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

comment on function chatdesk.send_operator_message(uuid, uuid, text, text, bigint) is
    'The assignee''s answer: message id, the chat''s state after it, and whether the user wrote after p_seen_message_id.';

create or replace function chatdesk.web_may_close(p_chat chatdesk.chats)
returns boolean
language sql
stable
as $$
    -- Whether a web caller may close chat p_chat: a chat of its own real
    -- user, or the chat it holds now. False for no chat (a row of nulls), and
    -- for a caller who is nobody: every comparison with a null identity fails.
    select coalesce(p_chat.real_user_id = chatdesk.web_real_user_id()
                    or (p_chat.chat_state = 'assigned' and p_chat.assigned_operator_id = chatdesk.web_operator_id()),
                    false);
$$;

create or replace function chatdesk.close_chat(p_chat_id uuid)
returns void
language plpgsql
security definer  -- updates chats, which applications may not update
set search_path = chatdesk, pg_temp
set lock_timeout = '5s'  -- a stuck session cannot hang every operator
as $$
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

comment on function chatdesk.close_chat(uuid) is
    'Closes a chat from any open state (CD002 when already closed).';
