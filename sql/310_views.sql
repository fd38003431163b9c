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
