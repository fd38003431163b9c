-- ---------------------------------------------------------------------------
-- Proof that the counters are exact: recount everything, report any drift,
-- optionally repair it.
-- ---------------------------------------------------------------------------
create or replace function chatdesk.verify_counters(p_repair boolean default false)
returns table (object text, object_id uuid, counter text, stored text, actual text)
language plpgsql
as $$
#variable_conflict use_column
begin
    -- Compares every maintained counter with a recount from messages, in one
    -- snapshot (the triggers keep both in the same transaction, so a correct
    -- database reports no rows even under concurrent writes).
    -- p_repair: first blocks message writers (share lock on messages, until
    -- commit) so the recount cannot race them, then writes the recounted values.
    if p_repair then
        lock table chatdesk.messages in share mode;
    end if;

    return query
    with chat_drift as (
        select c.id, a.*, c.message_count as s_count, c.last_message_at as s_last,
               c.last_user_message_id as s_user, c.waiting_since as s_waiting
          from chatdesk.chats c
          join chatdesk.chat_counters_actual a on a.chat_id = c.id
    )
    select 'chat', id, 'message_count', s_count::text, message_count::text
      from chat_drift where s_count <> message_count
    union all
    select 'chat', id, 'last_message_at', s_last::text, last_message_at::text
      from chat_drift where s_last is distinct from last_message_at
    union all
    select 'chat', id, 'last_user_message_id', s_user::text, last_user_message_id::text
      from chat_drift where s_user is distinct from last_user_message_id
    union all
    select 'chat', id, 'waiting_since', s_waiting::text, waiting_since::text
      from chat_drift where s_waiting is distinct from waiting_since
    union all
    select 'operator', o.id, 'total_messages', o.total_messages::text, a.total_messages::text
      from chatdesk.operators o join chatdesk.operator_counters_actual a on a.operator_id = o.id
     where o.total_messages <> a.total_messages
    union all
    select 'operator', o.id, 'assigned_chats', o.assigned_chats::text, a.assigned_chats::text
      from chatdesk.operators o join chatdesk.operator_counters_actual a on a.operator_id = o.id
     where o.assigned_chats <> a.assigned_chats
    union all
    -- the queue table against the chats waiting for assignment (claim_next_chat pops it)
    select 'chat', coalesce(c.id, q.chat_id), 'queued',
           case when q.chat_id is null then 'no' else 'yes' end,
           case when c.id is null then 'no' else 'yes' end
      from (select id from chatdesk.chats where chat_state = 'waiting_assignment') c
      full join chatdesk.queue q on q.chat_id = c.id
     where c.id is null or q.chat_id is null
     order by 1, 2, 3;

    if p_repair then
        perform chatdesk.recount_chats(array(
            select c.id from chatdesk.chats c join chatdesk.chat_counters_actual a on a.chat_id = c.id
             where (c.message_count, c.last_message_at, c.last_user_message_id, c.waiting_since)
                   is distinct from (a.message_count, a.last_message_at, a.last_user_message_id, a.waiting_since)));
        perform chatdesk.recount_operators(array(
            select o.id from chatdesk.operators o join chatdesk.operator_counters_actual a on a.operator_id = o.id
             where (o.total_messages, o.assigned_chats) is distinct from (a.total_messages, a.assigned_chats)));
        perform chatdesk.sync_queue();
    end if;
end;
$$;

comment on function chatdesk.verify_counters(boolean) is
    'Recounts message_count, last_message_at, total_messages, assigned_chats (and write-time bookkeeping, and the queue table); returns drifted rows; p_repair fixes them.';
