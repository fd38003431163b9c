-- ---------------------------------------------------------------------------
-- Row-level security: what each application role sees (docs/contract.md,
-- "Who may do what"). chatdesk's own functions run as the owner, which
-- row-level security does not restrict. Each identity is read through one
-- small function, wrapped in (select ...) so it is evaluated once per
-- statement, not once per row. Fail closed: no identity, no rows.
-- "Assigned to X" is written chat_state = 'assigned' and
-- assigned_operator_id = X (the same rows: chats_assignee_check), so that it
-- reads chats_assigned_idx instead of every chat. A table read through the
-- caller's chats says chat_id = any (array(<the caller's chats>)): the
-- caller's chats are found once, through their indexes, and the table is
-- read through its chat_id index, so the cost of a read follows the caller's
-- own rows and never the table's size (an IN (subquery) would be a filter
-- on a scan of every row).
-- A role that is both a backend (or reporting) and a web caller is a web
-- caller, and nobody (may_have_web_identity): the backend and reporting
-- policies hold only for callers that are not web (is_unscoped_backend(),
-- not is_web_caller()), and its web identity is null.
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
    using ((select chatdesk.is_unscoped_backend())
           or (chat_state = 'assigned' and assigned_operator_id = (select chatdesk.current_operator_id())));
drop policy if exists chats_app_insert on chatdesk.chats;
create policy chats_app_insert on chatdesk.chats for insert to chatdesk_app
    with check ((select chatdesk.is_unscoped_backend()));
drop policy if exists chats_web_read on chatdesk.chats;
create policy chats_web_read on chatdesk.chats for select to chatdesk_web
    using (real_user_id = (select chatdesk.web_real_user_id())
           or (chat_state = 'assigned' and assigned_operator_id = (select chatdesk.web_operator_id()))
           -- the queue, for operators: a range of the queue's index that is
           -- empty (from infinity) for anyone else, so a visitor's or
           -- nobody's read never walks the queue
           or (chat_state = 'waiting_assignment'
               and queued_at >= (select case when chatdesk.web_operator_id() is not null
                                             then '-infinity'::timestamptz else 'infinity' end)));
drop policy if exists chats_reporting_read on chatdesk.chats;
create policy chats_reporting_read on chatdesk.chats for select to chatdesk_reporting
    using ((select not chatdesk.is_web_caller()));

-- ---- messages ----
drop policy if exists messages_app_read on chatdesk.messages;
create policy messages_app_read on chatdesk.messages for select to chatdesk_app
    using ((select chatdesk.is_unscoped_backend())
           or chat_id = any (array(select c.id from chatdesk.chats c
                                    where c.chat_state = 'assigned'
                                      and c.assigned_operator_id = (select chatdesk.current_operator_id()))));
drop policy if exists messages_app_insert on chatdesk.messages;
create policy messages_app_insert on chatdesk.messages for insert to chatdesk_app
    with check ((select chatdesk.is_unscoped_backend())
                or (sender_type = 'operator' and handled_by_operator_id = (select chatdesk.current_operator_id())));
drop policy if exists messages_web_read on chatdesk.messages;
create policy messages_web_read on chatdesk.messages for select to chatdesk_web
    using (chat_id = any (array(select c.id from chatdesk.chats c
                                 where c.real_user_id = (select chatdesk.web_real_user_id())
                                    or (c.chat_state = 'assigned'
                                        and c.assigned_operator_id = (select chatdesk.web_operator_id())))));

-- ---- real users ----
drop policy if exists real_users_app_read on chatdesk.real_users;
create policy real_users_app_read on chatdesk.real_users for select to chatdesk_app
    using ((select chatdesk.is_unscoped_backend())
           or id = any (array(select c.real_user_id from chatdesk.chats c
                               where c.chat_state = 'assigned'
                                 and c.assigned_operator_id = (select chatdesk.current_operator_id()))));
drop policy if exists real_users_app_insert on chatdesk.real_users;
create policy real_users_app_insert on chatdesk.real_users for insert to chatdesk_app
    with check ((select chatdesk.is_unscoped_backend()));
drop policy if exists real_users_web_read on chatdesk.real_users;
create policy real_users_web_read on chatdesk.real_users for select to chatdesk_web
    using (id = (select chatdesk.web_real_user_id())
           or id = any (array(select c.real_user_id from chatdesk.chats c
                               where c.chat_state = 'assigned'
                                 and c.assigned_operator_id = (select chatdesk.web_operator_id()))));

-- ---- chat events (operators only: a visitor's window has no use for them) ----
drop policy if exists chat_events_app_read on chatdesk.chat_events;
create policy chat_events_app_read on chatdesk.chat_events for select to chatdesk_app
    using ((select chatdesk.is_unscoped_backend())
           or chat_id = any (array(select c.id from chatdesk.chats c
                                    where c.chat_state = 'assigned'
                                      and c.assigned_operator_id = (select chatdesk.current_operator_id()))));
drop policy if exists chat_events_web_read on chatdesk.chat_events;
create policy chat_events_web_read on chatdesk.chat_events for select to chatdesk_web
    using (chat_id = any (array(select c.id from chatdesk.chats c
                                 where c.chat_state = 'assigned'
                                   and c.assigned_operator_id = (select chatdesk.web_operator_id()))));
drop policy if exists chat_events_reporting_read on chatdesk.chat_events;
create policy chat_events_reporting_read on chatdesk.chat_events for select to chatdesk_reporting
    using ((select not chatdesk.is_web_caller()));

-- ---- operators (loads are numbers every backend may see) ----
drop policy if exists operators_app_read on chatdesk.operators;
create policy operators_app_read on chatdesk.operators for select to chatdesk_app
    using ((select not chatdesk.is_web_caller()));
drop policy if exists operators_reporting_read on chatdesk.operators;
create policy operators_reporting_read on chatdesk.operators for select to chatdesk_reporting
    using ((select not chatdesk.is_web_caller()));
drop policy if exists operators_web_read on chatdesk.operators;
create policy operators_web_read on chatdesk.operators for select to chatdesk_web
    using (id = (select chatdesk.web_operator_id()));

-- ---- the change feed ----
-- Read through changes_since() and feed_position(), which scope every caller
-- themselves (sql/600_feed.sql); chatdesk_web has no grant on the table. A
-- backend reading the table directly sees everything, or, narrowed to an
-- operator, the same changes changes_since shows that operator.
drop policy if exists changes_web_read on chatdesk.changes;
drop policy if exists changes_app_read on chatdesk.changes;
create policy changes_app_read on chatdesk.changes for select to chatdesk_app
    using ((select chatdesk.is_unscoped_backend())
           or operator_id = (select chatdesk.current_operator_id())
           or (kind = 'chat' and (chat_state = 'waiting_assignment' or from_state = 'waiting_assignment')
               and (select chatdesk.current_operator_id()) is not null));

-- ---- daily stats ----
drop policy if exists operator_daily_stats_app_read on chatdesk.operator_daily_stats;
create policy operator_daily_stats_app_read on chatdesk.operator_daily_stats for select to chatdesk_app
    using ((select not chatdesk.is_web_caller()));
drop policy if exists operator_daily_stats_reporting_read on chatdesk.operator_daily_stats;
create policy operator_daily_stats_reporting_read on chatdesk.operator_daily_stats for select to chatdesk_reporting
    using ((select not chatdesk.is_web_caller()));
drop policy if exists operator_daily_stats_web_read on chatdesk.operator_daily_stats;
create policy operator_daily_stats_web_read on chatdesk.operator_daily_stats for select to chatdesk_web
    using (operator_id = (select chatdesk.web_operator_id()));
drop policy if exists operator_daily_times_app_read on chatdesk.operator_daily_times;
create policy operator_daily_times_app_read on chatdesk.operator_daily_times for select to chatdesk_app
    using ((select not chatdesk.is_web_caller()));
drop policy if exists operator_daily_times_reporting_read on chatdesk.operator_daily_times;
create policy operator_daily_times_reporting_read on chatdesk.operator_daily_times for select to chatdesk_reporting
    using ((select not chatdesk.is_web_caller()));
drop policy if exists operator_daily_times_web_read on chatdesk.operator_daily_times;
create policy operator_daily_times_web_read on chatdesk.operator_daily_times for select to chatdesk_web
    using (operator_id = (select chatdesk.web_operator_id()));

-- ---- conversations (backends and dashboards; a narrowed backend sees its operator's chats) ----
drop policy if exists conversations_app_read on chatdesk.conversations;
create policy conversations_app_read on chatdesk.conversations for select to chatdesk_app
    using ((select chatdesk.is_unscoped_backend())
           or chat_id = any (array(select c.id from chatdesk.chats c
                                    where c.chat_state = 'assigned'
                                      and c.assigned_operator_id = (select chatdesk.current_operator_id()))));
drop policy if exists conversations_reporting_read on chatdesk.conversations;
create policy conversations_reporting_read on chatdesk.conversations for select to chatdesk_reporting
    using ((select not chatdesk.is_web_caller()));
