"""The catalog of SQL mutants for `make mutate` (tests/mutate.py).

Each mutant is one edit of one file in sql/ that breaks one guarantee of
docs/contract.md. `find` must occur exactly once in its file (the harness
refuses a stale catalog). A mutant a behaviour test cannot tell apart from the
original is marked `equivalent`, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    id: str
    file: str
    find: str
    replace: str
    breaks: str
    equivalent: str | None = None


MUTANTS = [
    # ---- the state machine ----
    Mutant("guard-same-state", "100_chats.sql", "    if new.chat_state = old.chat_state then",
           "    if false then", "a change of assignee without a change of state is refused (CD002)",
           equivalent="the transition check right after it refuses the same updates with the same CD002: "
                      "no (event, state -> same state) row exists in state_transitions"),
    Mutant("guard-trigger-depth", "100_chats.sql",
           "or (v_event in ('user_message', 'operator_reply') and pg_trigger_depth() < 2) then",
           "or false then", "user_message / operator_reply happen only through a message"),
    Mutant("release-keeps-place", "100_chats.sql", "            new.queued_at := old.queued_at;            -- released: back to its old place",
           "            new.queued_at := chatdesk.clock();", "a released chat goes back to its old place in the queue"),
    Mutant("queue-row-on-leave", "100_chats.sql", "        delete from chatdesk.queue where chat_id = old.id;",
           "        null;", "a chat that leaves the queue leaves the queue table"),
    Mutant("close-credit-this-conversation", "100_chats.sql",
           "                     where e.chat_id = old.id and e.operator_id is not null and e.created_at >= c.queued_at",
           "                     where e.chat_id = old.id and e.operator_id is not null",
           "a close is credited only to who had the chat in that conversation"),
    # ---- messages: the reply race, idempotency, counters, history ----
    Mutant("reply-race", "110_messages.sql", "        v_meanwhile := v_chat.last_user_message_id > new.seen_message_id;",
           "        v_meanwhile := false;", "an answer that missed a newer user message keeps the chat assigned"),
    Mutant("retry-per-sender", "110_messages.sql", "           and m.sender_type = new.sender_type",
           "           and true", "client ids are kept per sender"),
    Mutant("retry-returns-first", "110_messages.sql", "        return null;  -- the first message stands",
           "        null;", "a retried client id writes nothing"),
    Mutant("not-assignee", "110_messages.sql",
           "        if v_chat.assigned_operator_id is distinct from new.handled_by_operator_id then",
           "        if false then", "only the assignee may write (CD001)"),
    Mutant("blank-body", "110_messages.sql", "    if chatdesk.is_blank(new.body) or length(new.body) > 10000 then",
           "    if length(new.body) > 10000 then", "a blank body is refused (23514)"),
    Mutant("narrowed-scope", "110_messages.sql", "    if v_scope is not null\n",
           "    if false and v_scope is not null\n", "a narrowed backend writes only as its operator (42501)"),
    Mutant("message-count", "110_messages.sql",
           "        update chatdesk.chats\n           set message_count = message_count + 1,\n               change_seq = v_chat.change_seq,\n               change_tx = v_chat.change_tx,\n               last_message_at = greatest(last_message_at, new.created_at),\n               last_user_message_id",
           "        update chatdesk.chats\n           set message_count = message_count + 2,\n               change_seq = v_chat.change_seq,\n               change_tx = v_chat.change_tx,\n               last_message_at = greatest(last_message_at, new.created_at),\n               last_user_message_id",
           "chats.message_count is exact"),
    Mutant("total-messages", "110_messages.sql", "           set total_messages = total_messages + 1,",
           "           set total_messages = total_messages,", "operators.total_messages is exact"),
    Mutant("reply-run-start", "110_messages.sql", "               waiting_since = coalesce(waiting_since, new.created_at),",
           "               waiting_since = new.created_at,", "reply time counts from the first message of the run"),
    Mutant("queue-fifo-kept", "110_messages.sql",
           "               queued_at = case when v_next is null then queued_at else new.created_at end",
           "               queued_at = new.created_at",
           "a user message to a queued chat keeps its queued_at (first come, first served)"),
    Mutant("history-created-at", "110_messages.sql", "       or new.created_at <> old.created_at\n",
           "       or false\n", "a message's created_at is history: it may not change"),
    Mutant("first-response-credit", "110_messages.sql",
           "               set first_response_at = new.created_at, first_response_operator_id = new.handled_by_operator_id",
           "               set first_response_at = new.created_at, first_response_operator_id = null",
           "first response is credited to the operator who answered first"),
    # ---- assignment ----
    Mutant("capacity", "300_assignment.sql", "    if p_load_after > p_op.max_concurrent_chats then",
           "    if p_load_after > p_op.max_concurrent_chats + 1 then", "nobody is ever over capacity (CD004)"),
    Mutant("inactive", "300_assignment.sql", "    if not p_op.is_active then", "    if false then",
           "an inactive operator cannot claim (CD003)"),
    Mutant("claim-skip-locked", "300_assignment.sql",
           "        select c.chat_state into v_state from chatdesk.chats c where c.id = v_chat_id for no key update skip locked;",
           "        select c.chat_state into v_state from chatdesk.chats c where c.id = v_chat_id for no key update;",
           "claimers never wait on a chat being written to"),
    Mutant("claim-fifo", "300_assignment.sql", "         order by q.queued_at, q.chat_id",
           "         order by q.queued_at desc, q.chat_id", "claims are first come, first served"),
    Mutant("idle-cutoff", "300_assignment.sql", "           and coalesce(o.last_active_at, '-infinity') < v_cutoff",
           "           and coalesce(o.last_active_at, '-infinity') <= v_cutoff + interval '1 minute'",
           "only operators silent longer than idle_after lose their chats"),
    Mutant("idle-skip-locked", "300_assignment.sql",
           "           and c.assigned_operator_id = v_candidate.assigned_operator_id\n           for no key update skip locked;",
           "           and c.assigned_operator_id = v_candidate.assigned_operator_id\n           for no key update;",
           "a sweep never waits on a chat being written to"),
    Mutant("idle-interval-check", "300_assignment.sql",
           "p_idle_after <= interval '0' or p_idle_after > interval '30 days' then",
           "p_idle_after < interval '0' or p_idle_after > interval '30 days' then",
           "a non-positive idle interval is refused (23514)"),
    # ---- counters' recount ----
    Mutant("recount-operators", "105_counters.sql",
           "    perform 1 from chatdesk.operators where id = any (p_operator_ids) order by id for no key update;",
           "    return;", "verify --repair recounts operators"),
    Mutant("verify-queue", "500_verify.sql", "     where c.id is null or q.chat_id is null",
           "     where false", "verify reports a queue table out of step"),
    # ---- stats and reports ----
    Mutant("stats-p90", "410_reports.sql",
           "               round((percentile_cont(0.9) within group (order by seconds::float8))::numeric, 3),",
           "               round((percentile_cont(0.8) within group (order by seconds::float8))::numeric, 3),",
           "p90 is the 90th percentile"),
    Mutant("stats-day-zone", "400_stats.sql", "    v_from := p_date::timestamp at time zone v_tz;",
           "    v_from := p_date::timestamp at time zone 'UTC';", "a stats day is a day in stats_time_zone"),
    Mutant("business-overnight", "410_reports.sql",
           "(d + h.closes + case when h.closes <= h.opens then interval '1 day' else interval '0' end)",
           "(d + h.closes + case when h.closes < h.opens then interval '1 day' else interval '0' end)",
           "a window whose closing time equals its opening time lasts 24 hours",
           equivalent=None),
    Mutant("business-holiday", "410_reports.sql", "         where not exists (select 1 from chatdesk.holidays x where x.day = d::date)",
           "         where true", "holidays have no business hours"),
    Mutant("business-never-negative", "410_reports.sql", "            select s.operator_id, s.metric, t.clock, greatest(t.seconds, 0) as seconds",
           "            select s.operator_id, s.metric, t.clock, t.seconds as seconds",
           "a time is never negative",
           equivalent="every sample ends at or after it starts (clock() is monotonic per chat under its row lock), so the greatest() never changes a value; it guards against a clock set backwards"),
    Mutant("hourly-queue-entries", "410_reports.sql",
           "                  where created_at >= p_from and created_at < p_to and reason = 'user_message'",
           "                  where created_at >= p_from and created_at < p_to and reason in ('user_message', 'release')",
           "queue entries count chats that joined the queue, not returns"),
    # ---- the change feed ----
    Mutant("feed-snapshot", "600_feed.sql", "       and c.tx < pg_snapshot_xmin(pg_current_snapshot())\n     order by c.tx, c.id",
           "     order by c.tx, c.id", "a change is readable only when every earlier writer has finished"),
    Mutant("feed-horizon", "600_feed.sql", "    if p_cursor is not null and (v_from.tx, v_from.id) < (v_horizon.tx, v_horizon.id) then",
           "    if false then", "a cursor older than the feed keeps is refused (CD006)"),
    Mutant("feed-retention", "600_feed.sql", "         where created_at < chatdesk.clock() - chatdesk.feed_retention()",
           "         where created_at < chatdesk.clock()", "pruning keeps feed_retention"),
    # ---- the clock ----
    Mutant("clock-owner-only", "010_clock.sql", "                     and pg_has_role(session_user, 'chatdesk_owner', 'member')\n",
           "\n", "only the owner may pin the clock (an application cannot backdate its messages)"),
    Mutant("clock-now", "010_clock.sql", "                else clock_timestamp() end;",
           "                else now() end;",
           "a message written after waiting for a chat lock gets a time after the message it waited for"),
    # ---- more counters, and their recount ----
    Mutant("assigned-chats", "100_chats.sql", "           set assigned_chats = assigned_chats + 1,",
           "           set assigned_chats = assigned_chats,", "operators.assigned_chats is exact (capacity rests on it)"),
    Mutant("last-message-at", "110_messages.sql",
           "               last_message_at = greatest(last_message_at, new.created_at),\n               last_user_message_id = new.id,",
           "               last_message_at = last_message_at,\n               last_user_message_id = new.id,",
           "chats.last_message_at is the newest message's time"),
    Mutant("recount-chats", "105_counters.sql", "       set message_count = a.message_count,",
           "       set message_count = c.message_count,", "a recount (after deletes, verify --repair) fixes message_count"),
    Mutant("stats-p50", "410_reports.sql",
           "               round((percentile_cont(0.5) within group (order by seconds::float8))::numeric, 3),",
           "               round((percentile_cont(0.4) within group (order by seconds::float8))::numeric, 3),",
           "p50 is the median"),
    Mutant("search-path-pinned", "300_assignment.sql",
           "security definer  -- updates chats and operators, which applications may not update\nset search_path = chatdesk, pg_temp\nset lock_timeout = '5s'  -- a stuck session cannot hang every operator\nas $$\ndeclare\n    v_chat_id uuid;",
           "security definer  -- updates chats and operators, which applications may not update\nset lock_timeout = '5s'  -- a stuck session cannot hang every operator\nas $$\ndeclare\n    v_chat_id uuid;",
           "a definer function pins search_path: a caller's schema cannot hijack what it calls"),
    # ---- who may do what ----
    Mutant("grants-public", "950_privileges.sql", "revoke all on all functions in schema chatdesk from public;",
           "grant execute on all functions in schema chatdesk to public;", "no function is executable by PUBLIC"),
    Mutant("authorize-web", "030_identity.sql", "        if v_self is null or p_id is distinct from v_self then",
           "        if v_self is null then", "a web caller acts only as itself (42501)"),
    Mutant("own-chat", "210_api_chats.sql", "        perform chatdesk.require_own_chat(p_chat_id, 'write to');",
           "        null;", "a visitor writes only to its own chats"),
    Mutant("policy-chats-web", "940_policies.sql",
           "    using (real_user_id = (select chatdesk.web_real_user_id())\n           or assigned_operator_id = (select chatdesk.web_operator_id())\n           or (chat_state = 'waiting_assignment' and (select chatdesk.web_operator_id()) is not null));",
           "    using (true);", "a web caller sees only its chats and, as an operator, the queue"),
]
