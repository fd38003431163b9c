-- ---------------------------------------------------------------------------
-- API: chats and messages. The rules themselves live in the triggers
-- (110_messages.sql, 100_chats.sql); these are the friendly front doors.
-- ---------------------------------------------------------------------------
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
    -- (23503), and anyone but that user or a backend (42501).
    perform chatdesk.authorize('start a chat', 'real user', p_real_user_id);
    if p_real_user_id is null or not exists (select 1 from chatdesk.real_users where id = p_real_user_id) then
        raise exception using errcode = '23503',
            message = format('chatdesk: real user %s does not exist', coalesce(p_real_user_id::text, 'null'));
    end if;
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
    perform chatdesk.authorize('write messages', 'operator', p_operator_id);
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

comment on function chatdesk.send_operator_message(uuid, uuid, text, text, bigint) is
    'The assignee''s answer: message id, the chat''s state after it, and whether the user wrote after p_seen_message_id.';

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
    -- (CD002). A web caller may close its own user's chats and the chats
    -- assigned to it (42501 otherwise, the same answer for an unknown chat);
    -- a backend narrowed to an operator, only that operator's chats (CD001).
    select * into v_chat from chatdesk.chats c where c.id = p_chat_id for no key update;
    if chatdesk.is_web_caller() then
        if not found or (v_chat.real_user_id is distinct from chatdesk.web_real_user_id()
                         and v_chat.assigned_operator_id is distinct from chatdesk.web_operator_id()) then
            raise exception using errcode = '42501',
                message = format('chatdesk: %s may not close chat %s',
                                 chatdesk.web_caller_name(), coalesce(p_chat_id::text, 'null'));
        end if;
    elsif not found then
        raise exception using errcode = '23503',
            message = format('chatdesk: chat %s does not exist', coalesce(p_chat_id::text, 'null'));
    elsif chatdesk.current_operator_id() is not null
          and v_chat.assigned_operator_id is distinct from chatdesk.current_operator_id() then
        raise exception using errcode = 'CD001',
            message = format('chatdesk: operator %s is not the assignee of chat %s and cannot close it',
                             chatdesk.current_operator_id(), p_chat_id);
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
