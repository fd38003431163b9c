-- ---------------------------------------------------------------------------
-- What the counters should be, recounted from messages and chats, and the
-- functions that write the recount back. The delete trigger, verify_counters()
-- and its repair all read these, so "exact" has one definition.
-- ---------------------------------------------------------------------------
create or replace view chatdesk.chat_counters_actual with (security_invoker = true) as
select c.id as chat_id,
       coalesce(a.message_count, 0)::int as message_count,
       a.last_message_at,
       a.last_user_message_id,
       -- the first real-user message after the last operator message: the
       -- start of the run that the next operator message will answer
       (select min(u.created_at)
          from chatdesk.messages u
         where u.chat_id = c.id
           and u.sender_type = 'real_user'
           and u.id > coalesce(a.last_operator_message_id, 0)) as waiting_since
  from chatdesk.chats c
  left join lateral (
        select count(*) as message_count,
               max(m.created_at) as last_message_at,
               max(m.id) filter (where m.sender_type = 'real_user') as last_user_message_id,
               max(m.id) filter (where m.sender_type = 'operator') as last_operator_message_id
          from chatdesk.messages m
         where m.chat_id = c.id) a on true;

comment on view chatdesk.chat_counters_actual is
    'Each chat''s message_count, last_message_at and write-time bookkeeping, recounted from messages.';

create or replace view chatdesk.operator_counters_actual with (security_invoker = true) as
select o.id as operator_id,
       (select count(*) from chatdesk.messages m where m.handled_by_operator_id = o.id) as total_messages,
       (select count(*) from chatdesk.chats c
         where c.assigned_operator_id = o.id and c.chat_state = 'assigned')::int as assigned_chats
  from chatdesk.operators o;

comment on view chatdesk.operator_counters_actual is
    'Each operator''s total_messages and assigned_chats, recounted from messages and chats.';

create or replace function chatdesk.recount_chats(p_chat_ids uuid[])
returns void
language plpgsql
as $$
declare
    v_chat_id uuid;
begin
    -- Recomputes the counters and bookkeeping of the given chats from their
    -- messages. Locks the chats (in id order, so two recounts cannot
    -- deadlock) before reading, so the recount sees every committed message;
    -- one chat per statement, as a sharded chats table needs.
    for v_chat_id in select distinct x from unnest(p_chat_ids) x where x is not null order by 1 loop
        perform 1 from chatdesk.chats c where c.id = v_chat_id for no key update;
    end loop;
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

create or replace function chatdesk.recount_operators(p_operator_ids uuid[])
returns void
language plpgsql
as $$
begin
    -- Recomputes total_messages and assigned_chats of the given operators.
    -- Blocks claims and releases for the rest of the transaction (share row
    -- exclusive on chats), and locks the operators in id order, so the
    -- recount cannot race a claim and two recounts cannot deadlock.
    lock table chatdesk.chats in share row exclusive mode;
    perform 1 from chatdesk.operators where id = any (p_operator_ids) order by id for no key update;
    update chatdesk.operators o
       set total_messages = a.total_messages, assigned_chats = a.assigned_chats
      from chatdesk.operator_counters_actual a
     where a.operator_id = o.id
       and o.id = any (p_operator_ids)
       and (o.total_messages, o.assigned_chats) is distinct from (a.total_messages, a.assigned_chats);
end;
$$;
