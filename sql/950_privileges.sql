-- ---------------------------------------------------------------------------
-- Function privileges, re-applied on every migrate (functions are re-created
-- from sql/, and a new function is executable by PUBLIC until revoked).
-- Table privileges are in the migrations; row-level security in 940.
-- ---------------------------------------------------------------------------
revoke all on all functions in schema chatdesk from public;

-- What an operator or a visitor does as itself: a browser through PostgREST /
-- Supabase (each function checks who the JWT says the caller is), and a
-- trusted backend, for whom its parameters name.
grant execute on function
    chatdesk.start_chat(uuid),
    chatdesk.send_user_message(uuid, text, text),
    chatdesk.send_operator_message(uuid, uuid, text, text, bigint),
    chatdesk.claim_next_chat(uuid),
    chatdesk.release_chat(uuid, uuid),
    chatdesk.close_chat(uuid),
    chatdesk.heartbeat(uuid),
    -- the change feed (each call scopes its caller itself)
    chatdesk.changes_since(text, int),
    chatdesk.feed_position()
    to chatdesk_app, chatdesk_web;

-- The rest of the contract, for backends only. The writing functions run as
-- the owner (security definer); the rules in the triggers apply all the same.
grant execute on function
    chatdesk.create_operator(text, int, uuid),
    chatdesk.set_operator_active(uuid, boolean),
    chatdesk.create_real_user(text, uuid),
    chatdesk.link_auth_user(uuid, uuid, uuid),
    chatdesk.release_idle_chats(interval),
    chatdesk.update_operator_stats(uuid, date),
    chatdesk.rollup_operator_stats(date),
    chatdesk.try_rollup_operator_stats(date),
    chatdesk.scheduled_rollup(),
    chatdesk.act_as_operator(uuid),
    chatdesk.prune_changes(),
    chatdesk.sample_queue(),
    chatdesk.stats_today(),
    chatdesk.stats_time_zone(),
    chatdesk.clock(),
    chatdesk.current_operator_id(),
    -- what current_operator_id() reads, when a policy calls it as the caller
    chatdesk.transaction_mark(),
    chatdesk.is_web_caller(),
    chatdesk.caller_role(),
    chatdesk.is_unscoped_backend(),
    -- chatdesk serve: the feed with its audiences, and who a JWT's sub is
    chatdesk.serve_changes(text, int, boolean, uuid, uuid),
    chatdesk.web_identity(text)
    to chatdesk_app;

-- The identity functions web callers' row-level security policies call (each
-- tells a caller only who it is itself: "who am I" for a browser, too).
grant execute on function chatdesk.web_operator_id(), chatdesk.web_real_user_id() to chatdesk_web;

-- Views (re-created with their privileges kept; granted here so a new one is too).
grant select on chatdesk.operator_load to chatdesk_app, chatdesk_reporting, chatdesk_web;
grant select on chatdesk.chat_counters_actual, chatdesk.operator_counters_actual to chatdesk_app;
-- A visitor's view of its operator: id and name, nothing else of any operator.
grant select on chatdesk.chat_operators to chatdesk_web;

grant execute on function chatdesk.stats_time_zone() to chatdesk_reporting;
-- what the reporting policies call as the caller (a web caller sees nothing through them)
grant execute on function chatdesk.is_web_caller(), chatdesk.caller_role() to chatdesk_reporting;

-- Reading the reports' figures: business time and the histogram's buckets.
grant execute on function
    chatdesk.time_buckets(),
    chatdesk.business_seconds(timestamptz, timestamptz),
    chatdesk.business_clock(timestamptz[])
    to chatdesk_app, chatdesk_reporting;
