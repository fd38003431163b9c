-- ---------------------------------------------------------------------------
-- What the chat counters should be, recounted from messages. The delete
-- trigger and verify_counters() both read it, so "exact" has one definition.
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
