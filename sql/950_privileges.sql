-- ---------------------------------------------------------------------------
-- Function privileges, re-applied on every migrate (functions are re-created
-- from sql/, and a new function is executable by PUBLIC until revoked).
-- ---------------------------------------------------------------------------
revoke all on all functions in schema chatdesk from public;

-- What applications call. The writing ones run as the owner (security
-- definer); the rules in the triggers apply all the same.
grant execute on function
    chatdesk.create_operator(text, int),
    chatdesk.set_operator_active(uuid, boolean),
    chatdesk.create_real_user(text),
    chatdesk.start_chat(uuid),
    chatdesk.send_user_message(uuid, text, text),
    chatdesk.send_operator_message(uuid, uuid, text, text, bigint),
    chatdesk.claim_next_chat(uuid),
    chatdesk.release_chat(uuid, uuid),
    chatdesk.close_chat(uuid),
    chatdesk.heartbeat(uuid),
    chatdesk.release_idle_chats(interval),
    chatdesk.update_operator_stats(uuid, date),
    chatdesk.rollup_operator_stats(date),
    chatdesk.stats_today(),
    chatdesk.stats_time_zone(),
    chatdesk.clock(),
    chatdesk.current_operator_id()
    to chatdesk_app;

-- Helpers that row-level security policies and invoker-rights views call.
grant execute on function chatdesk.current_operator_id() to chatdesk_reporting;
grant select on chatdesk.operator_load to chatdesk_app, chatdesk_reporting;
grant select on chatdesk.chat_counters_actual to chatdesk_app;
grant execute on function chatdesk.stats_time_zone() to chatdesk_reporting;
