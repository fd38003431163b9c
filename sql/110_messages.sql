-- ---------------------------------------------------------------------------
-- Messages: every rule of a message write, whether it comes through
-- send_user_message / send_operator_message or a direct INSERT.
-- ---------------------------------------------------------------------------
create or replace function chatdesk.refuse_not_assignee(p_chat chatdesk.chats, p_chat_id uuid,
                                                        p_operator_id uuid, p_action text)
returns void
language plpgsql
stable
as $$
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

create or replace function chatdesk.messages__accept()
returns trigger
language plpgsql
security definer  -- updates chats and operators counters/state, which applications may not update
set search_path = chatdesk, pg_temp
as $$
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

create or replace function chatdesk.messages__guard_update()
returns trigger
language plpgsql
as $$
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

create or replace function chatdesk.messages__after_delete()
returns trigger
language plpgsql
security definer  -- recounts chats and operators, which applications may not update
set search_path = chatdesk, pg_temp
as $$
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

create or replace function chatdesk.messages__after_update()
returns trigger
language plpgsql
security definer  -- moves operators.total_messages, which applications may not update
set search_path = chatdesk, pg_temp
as $$
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

create or replace function chatdesk.messages__after_truncate()
returns trigger
language plpgsql
security definer  -- zeroes counters, which applications may not update
set search_path = chatdesk, pg_temp
as $$
begin
    -- With every message gone, every counter is zero.
    update chatdesk.chats
       set message_count = 0, last_message_at = null, last_user_message_id = null, waiting_since = null
     where message_count <> 0 or last_message_at is not null or waiting_since is not null;
    update chatdesk.operators set total_messages = 0 where total_messages <> 0;
    return null;
end;
$$;
