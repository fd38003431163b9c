-- ---------------------------------------------------------------------------
-- Triggers. Postgres fires same-event triggers in name order, so the names
-- carry the order: _100 guards run before _500 bookkeeping.
-- ---------------------------------------------------------------------------
create or replace trigger settings_100_check
    before insert or update on chatdesk.settings
    for each row execute function chatdesk.settings__check();

create or replace trigger chats_100_guard_insert
    before insert on chatdesk.chats
    for each row execute function chatdesk.chats__guard_insert();

create or replace trigger chats_100_guard_state
    before update on chatdesk.chats
    for each row
    when (old.chat_state is distinct from new.chat_state
          or old.assigned_operator_id is distinct from new.assigned_operator_id)
    execute function chatdesk.chats__guard_state();

create or replace trigger chats_500_log_insert
    after insert on chatdesk.chats
    for each row execute function chatdesk.chats__log_insert();

create or replace trigger messages_100_accept
    before insert on chatdesk.messages
    for each row execute function chatdesk.messages__accept();

create or replace trigger messages_100_guard_update
    before update on chatdesk.messages
    for each row execute function chatdesk.messages__guard_update();

create or replace trigger messages_500_after_delete
    after delete on chatdesk.messages
    referencing old table as deleted
    for each statement execute function chatdesk.messages__after_delete();

create or replace trigger messages_500_after_update
    after update on chatdesk.messages
    referencing old table as old_rows new table as new_rows
    for each statement execute function chatdesk.messages__after_update();

create or replace trigger messages_500_after_truncate
    after truncate on chatdesk.messages
    for each statement execute function chatdesk.messages__after_truncate();
