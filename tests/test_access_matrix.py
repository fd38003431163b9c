"""Who may do what, as a matrix generated from the catalog: every function,
table and view of the chatdesk schema against every kind of caller.

Each cell is either allowed or refused with 42501, and nothing of another
identity shows: not in rows, not through views, not in EXPLAIN, not in a
refusal's message. A function or relation the matrix does not classify fails
the test, so a new one cannot escape it.

Web callers are set up as PostgREST does per request: one transaction,
`set local role chatdesk_web`, then the claims with set_config(..., true).
"""

from __future__ import annotations

import json
import re
import uuid

import psycopg
import pytest
from chatdesk.errors import NOT_ALLOWED
from helpers import two_operators_two_visitors

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# caller -> (role, claims as a function of the fixture ids; None: no claims)
CALLERS = {
    "backend": ("chatdesk_app", None),
    "reporting": ("chatdesk_reporting", None),
    "web_op_a": ("chatdesk_web", lambda f: json.dumps({"sub": f["a_login"], "role": "authenticated"})),
    "web_op_b": ("chatdesk_web", lambda f: json.dumps({"sub": f["b_login"], "role": "authenticated"})),
    "web_visitor": ("chatdesk_web", lambda f: json.dumps({"sub": f["v_login"], "role": "authenticated"})),
    "web_nobody": ("chatdesk_web", None),
    "web_malformed": ("chatdesk_web", lambda f: '{"sub": "' + f["a_login"]),
    "web_unknown": ("chatdesk_web", lambda f: json.dumps({"sub": str(uuid.uuid4())})),
}
WEB = {c for c, (role, _) in CALLERS.items() if role == "chatdesk_web"}
NOBODY = {"web_nobody", "web_malformed", "web_unknown"}

# The fixture ids each web caller may see named: itself, its chats, the queue
# (operators: each waiting chat's row, its real_user_id included; "w" is the
# queued chat's visitor), and the visitors of its chats.
VISIBLE = {
    "web_op_a": {"a", "a_login", "a_chat", "queued", "v", "w"},
    "web_op_b": {"b", "b_login", "b_chat", "queued", "w"},
    "web_visitor": {"v", "v_login", "a_chat", "a"},  # a: the operator assigned to its chat now
}

# Every function: one call (acting for operator A or visitor V), and who may make it.
BACKEND = {"backend"}
FUNCTIONS = {
    # the contract, as operator A or visitor V
    "claim_next_chat": ("claim_next_chat('{a}')", BACKEND | {"web_op_a"}),
    "heartbeat": ("heartbeat('{a}')", BACKEND | {"web_op_a"}),
    "send_operator_message": ("send_operator_message('{a_chat}', '{a}', 'hi')", BACKEND | {"web_op_a"}),
    "release_chat": ("release_chat('{a_chat}', '{a}')", BACKEND | {"web_op_a"}),
    "close_chat": ("close_chat('{a_chat}')", BACKEND | {"web_op_a", "web_visitor"}),
    "start_chat": ("start_chat('{v}')", BACKEND | {"web_visitor"}),
    # the change feed: everyone but reporting reads it (row-level security says what)
    "changes_since": ("changes_since()", BACKEND | WEB - NOBODY),
    "feed_position": ("feed_position()", BACKEND | WEB - NOBODY),
    "prune_changes": ("prune_changes()", BACKEND),
    # chatdesk serve's: the feed with its audiences and bodies, and who a login is
    "serve_changes": ("serve_changes(null, 10, true)", BACKEND),
    "web_identity": ("web_identity('{a_login}')", BACKEND),
    "send_user_message": ("send_user_message('{a_chat}', 'hi')", BACKEND | {"web_visitor"}),
    # maintenance: backends only
    "create_operator": ("create_operator('X')", BACKEND),
    "set_operator_active": ("set_operator_active('{a}', true)", BACKEND),
    "create_real_user": ("create_real_user('X')", BACKEND),
    "link_auth_user": ("link_auth_user(null, '{w}', gen_random_uuid())", BACKEND),
    "release_idle_chats": ("release_idle_chats('5 minutes')", BACKEND),
    "update_operator_stats": ("update_operator_stats('{a}', current_date)", BACKEND),
    "rollup_operator_stats": ("rollup_operator_stats(current_date)", BACKEND),
    "try_rollup_operator_stats": ("try_rollup_operator_stats(current_date)", BACKEND),
    "scheduled_rollup": ("scheduled_rollup()", BACKEND),
    "sync_queue": ("sync_queue()", set()),
    "act_as_operator": ("act_as_operator('{a}')", BACKEND),
    "stats_today": ("stats_today()", BACKEND),
    "stats_time_zone": ("stats_time_zone()", BACKEND | {"reporting"}),
    "clock": ("clock()", BACKEND),
    # reports: sampling is maintenance; business time and buckets are for reading the figures
    "sample_queue": ("sample_queue()", BACKEND),
    "time_buckets": ("time_buckets()", BACKEND | {"reporting"}),
    "business_seconds": ("business_seconds(now() - interval '1 day', now())", BACKEND | {"reporting"}),
    "business_clock": ("business_clock(array[now()])", BACKEND | {"reporting"}),
    # what policies call as the caller (each tells a caller only about itself)
    "current_operator_id": ("current_operator_id()", BACKEND),
    "transaction_mark": ("transaction_mark()", BACKEND),
    "is_web_caller": ("is_web_caller()", BACKEND | {"reporting"}),
    "caller_role": ("caller_role()", BACKEND | {"reporting"}),
    "is_unscoped_backend": ("is_unscoped_backend()", BACKEND),
    "web_operator_id": ("web_operator_id()", WEB),
    "web_real_user_id": ("web_real_user_id()", WEB),
    # the owner's alone
    "verify_counters": ("verify_counters()", set()),
    # internal: helpers of the functions above, and trigger functions
    "jwt_subject": ("jwt_subject()", set()),
    "login_of": ("login_of('x')", set()),
    "may_have_web_identity": ("may_have_web_identity()", set()),
    "refuse_nobody": ("refuse_nobody('x')", set()),
    "parse_cursor": ("parse_cursor('1:1')", set()),
    "feed_horizon": ("feed_horizon()", set()),
    "feed_start": ("feed_start(null, 10)", set()),
    "audience_changes": ("audience_changes(row(true, '0', 0), '1', 10, null, null)", set()),
    "max_open_chats_per_user": ("max_open_chats_per_user()", set()),
    "check_open_chats": ("check_open_chats('{v}', null)", set()),
    "web_may_close": ("web_may_close(null)", set()),
    "holds_chat": ("holds_chat('{a_chat}', '{a}')", set()),
    "web_caller_name": ("web_caller_name()", set()),
    "authorize": ("authorize('x', 'operator', '{a}')", set()),
    "require_own_chat": ("require_own_chat('{a_chat}', 'x')", set()),
    "is_blank": ("is_blank('x')", set()),
    "check_name": ("check_name('x', 'y')", set()),
    "is_interval_between": ("is_interval_between('1 day', '1 minute', '2 days')", set()),
    "feed_retention": ("feed_retention()", set()),
    "publish_change": ("publish_change(null, 'chat', null, null)", set()),
    "check_claim": ("check_claim(null, '{a}', null, 1)", set()),
    "refuse_not_assignee": ("refuse_not_assignee(null, '{a_chat}', '{a}', 'release')", set()),
    "recount_chats": ("recount_chats(array['{a_chat}'::uuid])", set()),
    "recount_operators": ("recount_operators(array['{a}'::uuid])", set()),
    "write_operator_stats": ("write_operator_stats(current_date, null)", set()),
    "write_operator_times": ("write_operator_times(current_date, null, now() - interval '1 day', now())", set()),
    "write_hourly_load": ("write_hourly_load(now() - interval '1 hour', now())", set()),
    "histogram": ("histogram('{{1}}')", set()),
    "settings__check": ("settings__check()", set()),
    "chats__guard_insert": ("chats__guard_insert()", set()),
    "chats__guard_state": ("chats__guard_state()", set()),
    "chats__log_insert": ("chats__log_insert()", set()),
    "messages__accept": ("messages__accept()", set()),
    "messages__guard_update": ("messages__guard_update()", set()),
    "messages__after_delete": ("messages__after_delete()", set()),
    "messages__after_update": ("messages__after_update()", set()),
    "messages__after_truncate": ("messages__after_truncate()", set()),
}

# Every table and view: for each caller, the rows it must see exactly (a
# condition on the relation, evaluated by the owner), or None for 42501.
ALL, NONE = "true", "false"
OWN_QUEUE_A = "id in ('{a_chat}', '{queued}')"
RELATIONS = {
    "chats": {"backend": ALL, "reporting": ALL, "web_op_a": OWN_QUEUE_A,
              "web_op_b": "id in ('{b_chat}', '{queued}')", "web_visitor": "real_user_id = '{v}'"},
    "messages": {"backend": ALL, "reporting": None, "web_op_a": "chat_id = '{a_chat}'",
                 "web_op_b": "chat_id = '{b_chat}'", "web_visitor": "chat_id = '{a_chat}'"},
    "chat_events": {"backend": ALL, "reporting": ALL, "web_op_a": "chat_id = '{a_chat}'",
                    "web_op_b": "chat_id = '{b_chat}'", "web_visitor": NONE},
    "real_users": {"backend": ALL, "reporting": None, "web_op_a": "id = '{v}'", "web_op_b": "id = '{w}'",
                   "web_visitor": "id = '{v}'"},
    "operators": {"backend": ALL, "reporting": ALL, "web_op_a": "id = '{a}'", "web_op_b": "id = '{b}'",
                  "web_visitor": NONE},
    "operator_load": {"backend": ALL, "reporting": ALL, "web_op_a": "operator_id = '{a}'",
                      "web_op_b": "operator_id = '{b}'", "web_visitor": NONE},
    "operator_daily_stats": {"backend": ALL, "reporting": ALL, "web_op_a": "operator_id = '{a}'",
                             "web_op_b": "operator_id = '{b}'", "web_visitor": NONE},
    "settings": {"backend": ALL, "reporting": ALL},
    "operator_daily_times": {"backend": ALL, "reporting": ALL, "web_op_a": "operator_id = '{a}'",
                             "web_op_b": "operator_id = '{b}'", "web_visitor": NONE},
    "conversations": {"backend": ALL, "reporting": ALL},
    "business_hours": {"backend": ALL, "reporting": ALL},
    "holidays": {"backend": ALL, "reporting": ALL},
    "hourly_load": {"backend": ALL, "reporting": ALL},
    "queue_samples": {"backend": ALL, "reporting": ALL},
    "queue": {},
    "state_transitions": {"backend": ALL, "reporting": ALL},
    "chat_counters_actual": {"backend": ALL},
    "operator_counters_actual": {"backend": ALL},
    "runner_locks": {},
    "changes_horizon": {},
    "feed_wakeup": {},
    # web callers read the feed only through changes_since (tests/test_feed.py: who sees what)
    "changes": {"backend": ALL},
    # a visitor's operator, id and name: for web callers only
    "chat_operators": {"web_op_a": "chat_id = '{a_chat}'", "web_op_b": "chat_id = '{b_chat}'",
                       "web_visitor": "chat_id = '{a_chat}'"},
    "sql_loaded": {},
}


# What the owner reads in place of a view whose rows follow the caller.
OWNER_SOURCE = {
    "chat_operators": """(select c.id as chat_id, o.id as operator_id, o.name from chatdesk.chats c
                            join chatdesk.operators o on o.id = c.assigned_operator_id)""",
}


def expected_rows(relation: str, caller: str) -> str | None:
    """The caller's condition on the relation; web callers that are nobody see
    nothing of what web may read, and roles a relation does not name get 42501."""
    cells = RELATIONS[relation]
    if caller in NOBODY:
        return NONE if "web_visitor" in cells else None
    return cells.get(caller)


@pytest.fixture
def world(db_url):
    """The cast of helpers.two_operators_two_visitors, and a day of stats."""
    f = two_operators_two_visitors(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("select chatdesk.rollup_operator_stats(current_date)")
    return db_url, f


def as_caller(conn: psycopg.Connection, caller: str, f: dict, sql: str):
    """Run sql as the caller, PostgREST's way, in a transaction that is rolled
    back. Returns ("ok", rows) or (sqlstate, message)."""
    role, claims = CALLERS[caller]
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(f"set local role {role}")
            conn.execute("select set_config('request.jwt.claims', %s, true)", (claims(f) if claims else "",))
            return "ok", conn.execute(sql).fetchall()
    except psycopg.Error as error:
        return error.sqlstate, error.diag.message_primary or ""


# The feed also tells operators of the queue's comings and goings: every chat
# that ever waited in the queue (each did, and each was in the queue every
# operator reads then), not to whom it went.
FEED_FUNCTIONS = {"changes_since", "feed_position"}
QUEUE_HISTORY = {"a_chat", "b_chat", "queued"}


def foreign_ids(text: str, f: dict, caller: str, passed: str, name: str = "") -> set[str]:
    """Fixture ids in text that the caller may not see, nor passed in the call."""
    visible = set(VISIBLE.get(caller, set()))
    if name in FEED_FUNCTIONS and caller in ("web_op_a", "web_op_b"):
        visible |= QUEUE_HISTORY
    allowed = {f[k] for k in visible} | set(UUID.findall(passed))
    return {i for i in UUID.findall(text) if i in f.values() and i not in allowed}


def test_the_matrix_covers_the_whole_catalog(world):
    url, _ = world
    with psycopg.connect(url) as conn:
        functions = {r[0] for r in conn.execute(
            "select proname from pg_proc where pronamespace = 'chatdesk'::regnamespace")}
        relations = {r[0] for r in conn.execute(
            "select relname from pg_class where relnamespace = 'chatdesk'::regnamespace and relkind in ('r', 'v', 'm')")}
    assert functions == set(FUNCTIONS), f"unclassified: {functions - set(FUNCTIONS)}; gone: {set(FUNCTIONS) - functions}"
    assert relations == set(RELATIONS), f"unclassified: {relations - set(RELATIONS)}; gone: {set(RELATIONS) - relations}"


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_function_against_every_caller(world, name):
    url, f = world
    template, allowed = FUNCTIONS[name]
    call = "select chatdesk." + template.format(**f)
    wrong = []
    with psycopg.connect(url, autocommit=True) as conn:
        for caller in CALLERS:
            outcome, detail = as_caller(conn, caller, f, call)
            if caller in allowed:
                if outcome == NOT_ALLOWED:
                    wrong.append(f"{caller}: refused, should be allowed ({detail})")
            elif outcome != NOT_ALLOWED:
                wrong.append(f"{caller}: {outcome}, should be refused with 42501 ({detail})")
            leaked = foreign_ids(str(detail), f, caller, call, name) if caller in WEB else set()
            if leaked:
                wrong.append(f"{caller}: the answer names ids it may not see: {detail}")
    assert not wrong, f"{call}\n" + "\n".join(wrong)


def test_identity_functions_tell_a_caller_only_about_itself(world):
    url, f = world
    with psycopg.connect(url, autocommit=True) as conn:
        for caller, expect_op, expect_user in [("web_op_a", f["a"], None), ("web_op_b", f["b"], None),
                                               ("web_visitor", None, f["v"]), ("web_nobody", None, None),
                                               ("web_malformed", None, None), ("web_unknown", None, None)]:
            outcome, rows = as_caller(conn, caller, f, "select chatdesk.web_operator_id(), chatdesk.web_real_user_id()")
            assert outcome == "ok", rows
            assert [str(v) if v else None for v in rows[0]] == [expect_op, expect_user], caller


def granted_columns(conn, role: str, relation: str) -> str:
    """The columns of relation that role may read, as a select list (* when none:
    the read is then refused)."""
    columns = [r[0] for r in conn.execute(
        """select quote_ident(attname) from pg_attribute
            where attrelid = ('chatdesk.' || %s)::regclass and attnum > 0 and not attisdropped
              and has_column_privilege(%s, attrelid, attnum, 'select') order by attnum""", (relation, role))]
    return ", ".join(columns) or "*"


# Columns that name other identities: never granted to web callers (the
# contract: no other identity's ids are readable anywhere).
WEB_HIDDEN_COLUMNS = {("messages", "handled_by_operator_id"), ("chat_events", "operator_id"),
                      ("real_users", "auth_user_id")}


def test_no_column_naming_another_identity_is_granted_to_web_callers(world):
    url, _ = world
    with psycopg.connect(url) as conn:
        granted = set(conn.execute(
            """select c.relname, a.attname from pg_class c join pg_attribute a on a.attrelid = c.oid
                where c.relnamespace = 'chatdesk'::regnamespace and a.attnum > 0
                  and has_column_privilege('chatdesk_web', c.oid, a.attnum, 'select')""").fetchall())
    assert not granted & WEB_HIDDEN_COLUMNS, granted & WEB_HIDDEN_COLUMNS
    assert not {r for r in granted if r[0] in ("changes", "changes_horizon", "queue", "feed_wakeup")}


@pytest.mark.parametrize("relation", sorted(RELATIONS))
def test_every_relation_against_every_caller(world, relation):
    url, f = world
    wrong = []
    with psycopg.connect(url, autocommit=True) as conn:
        for caller in CALLERS:
            condition = expected_rows(relation, caller)
            columns = granted_columns(conn, CALLERS[caller][0], relation)
            read = f"select row_to_json(t)::text from (select {columns} from chatdesk.{relation}) t"
            outcome, seen = as_caller(conn, caller, f, read)
            if condition is None:
                if outcome != NOT_ALLOWED:
                    wrong.append(f"{caller}: {outcome}, should be refused with 42501")
                continue
            if outcome != "ok":
                wrong.append(f"{caller}: {outcome} {seen}, should read")
                continue
            source = OWNER_SOURCE.get(relation, f"chatdesk.{relation}")
            expected = {r[0] for r in conn.execute(
                f"select row_to_json(t)::text from (select {columns} from {source} x"
                f" where {condition.format(**f)}) t")}
            got = {r[0] for r in seen}
            if got != expected:
                wrong.append(f"{caller}: sees {len(got)} rows, should see exactly {len(expected)}; "
                             f"extra {sorted(got - expected)[:2]}, missing {sorted(expected - got)[:2]}")
            if caller in WEB:
                leaked = foreign_ids(" ".join(got), f, caller, "")
                if leaked:
                    wrong.append(f"{caller}: rows name ids it may not see: {leaked}")
                outcome, plan = as_caller(conn, caller, f, f"explain (verbose, costs off) select {columns} from chatdesk.{relation}")
                leaked = foreign_ids(" ".join(r[0] for r in plan), f, caller, "") if outcome == "ok" else set()
                if leaked:
                    wrong.append(f"{caller}: EXPLAIN names ids it may not see: {leaked}")
    assert not wrong, f"{relation}\n" + "\n".join(wrong)
