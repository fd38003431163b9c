-- ---------------------------------------------------------------------------
-- Read models for consoles and `chatdesk status`.
-- ---------------------------------------------------------------------------
create or replace view chatdesk.operator_load with (security_invoker = true) as
select o.id as operator_id,
       o.name,
       o.is_active,
       o.max_concurrent_chats,
       o.assigned_chats,
       o.last_seen_at,
       o.last_active_at
  from chatdesk.operators o;

comment on view chatdesk.operator_load is
    'Each operator''s current load (assigned chats) against max_concurrent_chats, and last activity.';

create or replace view chatdesk.chat_operators with (security_barrier = true) as
select c.id as chat_id,
       c.assigned_operator_id as operator_id,
       -- one operator row per chat, through its key (a join may hash every operator)
       (select o.name from chatdesk.operators o where o.id = c.assigned_operator_id) as name
  from chatdesk.chats c
 where c.chat_state = 'assigned'
   and (c.real_user_id = (select chatdesk.web_real_user_id())
        or c.assigned_operator_id = (select chatdesk.web_operator_id()));

comment on view chatdesk.chat_operators is
    'For web callers: the operator assigned now to each of the caller''s chats, id and name only ("You''re chatting with Ada"): a visitor''s chats, or an operator''s own.';
