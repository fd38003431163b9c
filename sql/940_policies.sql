-- ---------------------------------------------------------------------------
-- Row-level security: what each application role sees (docs/contract.md,
-- "Who may do what"). chatdesk's own functions run as the owner, which
-- row-level security does not restrict. Each identity is read through one
-- small function, wrapped in (select ...) so it is evaluated once per
-- statement, not once per row. Fail closed: no identity, no rows.
-- "Assigned to X" is written chat_state = 'assigned' and
-- assigned_operator_id = X (the same rows: chats_assignee_check), so that it
-- reads chats_assigned_idx instead of every chat.
--   chatdesk_app        everything; a transaction narrowed by
--                       act_as_operator() sees that operator's chats only.
--   chatdesk_web        an operator: the queue (waiting chats, without their
--                       messages), its assigned chats with their messages,
--                       events and users, its own operator row and stats.
--                       A real user: its own row, chats and their messages.
--   chatdesk_reporting  stats and counts: operators, chats, chat_events,
--                       conversations, operator_daily_stats and _times;
--                       no messages, no real users.
-- ---------------------------------------------------------------------------

-- ---- chats ----
drop policy if exists chats_app_read on chatdesk.chats;
create policy chats_app_read on chatdesk.chats for select to chatdesk_app
    using ((select chatdesk.current_operator_id()) is null
           or (chat_state = 'assigned' and assigned_operator_id = (select chatdesk.current_operator_id())));
drop policy if exists chats_app_insert on chatdesk.chats;
create policy chats_app_insert on chatdesk.chats for insert to chatdesk_app
    with check ((select chatdesk.current_operator_id()) is null);
drop policy if exists chats_web_read on chatdesk.chats;
create policy chats_web_read on chatdesk.chats for select to chatdesk_web
    using (real_user_id = (select chatdesk.web_real_user_id())
           or (chat_state = 'assigned' and assigned_operator_id = (select chatdesk.web_operator_id()))
           or (chat_state = 'waiting_assignment' and (select chatdesk.web_operator_id()) is not null));
drop policy if exists chats_reporting_read on chatdesk.chats;
create policy chats_reporting_read on chatdesk.chats for select to chatdesk_reporting using (true);

-- ---- messages ----
drop policy if exists messages_app_read on chatdesk.messages;
create policy messages_app_read on chatdesk.messages for select to chatdesk_app
    using ((select chatdesk.current_operator_id()) is null
           or chat_id in (select c.id from chatdesk.chats c
                           where c.chat_state = 'assigned' and c.assigned_operator_id = (select chatdesk.current_operator_id())));
drop policy if exists messages_app_insert on chatdesk.messages;
create policy messages_app_insert on chatdesk.messages for insert to chatdesk_app
    with check ((select chatdesk.current_operator_id()) is null
                or (sender_type = 'operator' and handled_by_operator_id = (select chatdesk.current_operator_id())));
drop policy if exists messages_web_read on chatdesk.messages;
create policy messages_web_read on chatdesk.messages for select to chatdesk_web
    using (chat_id in (select c.id from chatdesk.chats c
                        where c.real_user_id = (select chatdesk.web_real_user_id())
                           or (c.chat_state = 'assigned'
                               and c.assigned_operator_id = (select chatdesk.web_operator_id()))));

-- ---- real users ----
drop policy if exists real_users_app_read on chatdesk.real_users;
create policy real_users_app_read on chatdesk.real_users for select to chatdesk_app
    using ((select chatdesk.current_operator_id()) is null
           or id in (select c.real_user_id from chatdesk.chats c
                      where c.chat_state = 'assigned' and c.assigned_operator_id = (select chatdesk.current_operator_id())));
drop policy if exists real_users_app_insert on chatdesk.real_users;
create policy real_users_app_insert on chatdesk.real_users for insert to chatdesk_app
    with check ((select chatdesk.current_operator_id()) is null);
drop policy if exists real_users_web_read on chatdesk.real_users;
create policy real_users_web_read on chatdesk.real_users for select to chatdesk_web
    using (id = (select chatdesk.web_real_user_id())
           or id in (select c.real_user_id from chatdesk.chats c
                      where c.chat_state = 'assigned' and c.assigned_operator_id = (select chatdesk.web_operator_id())));

-- ---- chat events (operators only: a visitor's window has no use for them) ----
drop policy if exists chat_events_app_read on chatdesk.chat_events;
create policy chat_events_app_read on chatdesk.chat_events for select to chatdesk_app
    using ((select chatdesk.current_operator_id()) is null
           or chat_id in (select c.id from chatdesk.chats c
                           where c.chat_state = 'assigned' and c.assigned_operator_id = (select chatdesk.current_operator_id())));
drop policy if exists chat_events_web_read on chatdesk.chat_events;
create policy chat_events_web_read on chatdesk.chat_events for select to chatdesk_web
    using (chat_id in (select c.id from chatdesk.chats c
                        where c.chat_state = 'assigned' and c.assigned_operator_id = (select chatdesk.web_operator_id())));
drop policy if exists chat_events_reporting_read on chatdesk.chat_events;
create policy chat_events_reporting_read on chatdesk.chat_events for select to chatdesk_reporting using (true);

-- ---- operators (loads are numbers every backend may see) ----
drop policy if exists operators_app_read on chatdesk.operators;
create policy operators_app_read on chatdesk.operators for select to chatdesk_app using (true);
drop policy if exists operators_reporting_read on chatdesk.operators;
create policy operators_reporting_read on chatdesk.operators for select to chatdesk_reporting using (true);
drop policy if exists operators_web_read on chatdesk.operators;
create policy operators_web_read on chatdesk.operators for select to chatdesk_web
    using (id = (select chatdesk.web_operator_id()));

-- ---- the change feed: what each caller may see of the tables, change by change ----
-- An operator: the queue's comings and goings (without messages) and its own
-- chats' changes while it holds them. A visitor: its own chats. A backend
-- narrowed to an operator: as that operator.
drop policy if exists changes_app_read on chatdesk.changes;
create policy changes_app_read on chatdesk.changes for select to chatdesk_app
    using ((select chatdesk.current_operator_id()) is null
           or operator_id = (select chatdesk.current_operator_id())
           or (kind = 'chat' and 'waiting_assignment' in (chat_state, from_state)));
drop policy if exists changes_web_read on chatdesk.changes;
create policy changes_web_read on chatdesk.changes for select to chatdesk_web
    using (real_user_id = (select chatdesk.web_real_user_id())
           or operator_id = (select chatdesk.web_operator_id())
           or (kind = 'chat' and 'waiting_assignment' in (chat_state, from_state)
               and (select chatdesk.web_operator_id()) is not null));

-- ---- daily stats ----
drop policy if exists operator_daily_stats_app_read on chatdesk.operator_daily_stats;
create policy operator_daily_stats_app_read on chatdesk.operator_daily_stats for select to chatdesk_app using (true);
drop policy if exists operator_daily_stats_reporting_read on chatdesk.operator_daily_stats;
create policy operator_daily_stats_reporting_read on chatdesk.operator_daily_stats for select to chatdesk_reporting
    using (true);
drop policy if exists operator_daily_stats_web_read on chatdesk.operator_daily_stats;
create policy operator_daily_stats_web_read on chatdesk.operator_daily_stats for select to chatdesk_web
    using (operator_id = (select chatdesk.web_operator_id()));
drop policy if exists operator_daily_times_app_read on chatdesk.operator_daily_times;
create policy operator_daily_times_app_read on chatdesk.operator_daily_times for select to chatdesk_app using (true);
drop policy if exists operator_daily_times_reporting_read on chatdesk.operator_daily_times;
create policy operator_daily_times_reporting_read on chatdesk.operator_daily_times for select to chatdesk_reporting
    using (true);
drop policy if exists operator_daily_times_web_read on chatdesk.operator_daily_times;
create policy operator_daily_times_web_read on chatdesk.operator_daily_times for select to chatdesk_web
    using (operator_id = (select chatdesk.web_operator_id()));

-- ---- conversations (backends and dashboards; a narrowed backend sees its operator's chats) ----
drop policy if exists conversations_app_read on chatdesk.conversations;
create policy conversations_app_read on chatdesk.conversations for select to chatdesk_app
    using ((select chatdesk.current_operator_id()) is null
           or chat_id in (select c.id from chatdesk.chats c
                           where c.chat_state = 'assigned' and c.assigned_operator_id = (select chatdesk.current_operator_id())));
drop policy if exists conversations_reporting_read on chatdesk.conversations;
create policy conversations_reporting_read on chatdesk.conversations for select to chatdesk_reporting using (true);
