-- ---------------------------------------------------------------------------
-- Row-level security for applications (chatdesk_app). Unscoped sessions see
-- everything; a session with chatdesk.operator_id set sees only the chats
-- assigned to that operator, their messages, events and users, and inserts
-- only that operator's messages. chatdesk's own functions run as the owner,
-- which row-level security does not restrict.
-- ---------------------------------------------------------------------------
drop policy if exists chats_app_read on chatdesk.chats;
create policy chats_app_read on chatdesk.chats for select to chatdesk_app
    using (chatdesk.current_operator_id() is null or assigned_operator_id = chatdesk.current_operator_id());
drop policy if exists chats_app_insert on chatdesk.chats;
create policy chats_app_insert on chatdesk.chats for insert to chatdesk_app
    with check (chatdesk.current_operator_id() is null);

drop policy if exists messages_app_read on chatdesk.messages;
create policy messages_app_read on chatdesk.messages for select to chatdesk_app
    using (chatdesk.current_operator_id() is null
           or chat_id in (select id from chatdesk.chats where assigned_operator_id = chatdesk.current_operator_id()));
drop policy if exists messages_app_insert on chatdesk.messages;
create policy messages_app_insert on chatdesk.messages for insert to chatdesk_app
    with check (chatdesk.current_operator_id() is null
                or (sender_type = 'operator' and handled_by_operator_id = chatdesk.current_operator_id()));

drop policy if exists real_users_app_read on chatdesk.real_users;
create policy real_users_app_read on chatdesk.real_users for select to chatdesk_app
    using (chatdesk.current_operator_id() is null
           or id in (select real_user_id from chatdesk.chats where assigned_operator_id = chatdesk.current_operator_id()));
drop policy if exists real_users_app_insert on chatdesk.real_users;
create policy real_users_app_insert on chatdesk.real_users for insert to chatdesk_app
    with check (chatdesk.current_operator_id() is null);

drop policy if exists chat_events_app_read on chatdesk.chat_events;
create policy chat_events_app_read on chatdesk.chat_events for select to chatdesk_app
    using (chatdesk.current_operator_id() is null
           or chat_id in (select id from chatdesk.chats where assigned_operator_id = chatdesk.current_operator_id()));
