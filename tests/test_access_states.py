"""Who may do what, in every state of the target: the state-complete matrix.

tests/test_access_matrix.py calls every function once, on a chat its caller
may touch. Here every function that acts on a chat, an operator or a real
user runs, for every kind of caller, against every state its target can be
in: a chat of the caller's visitor waiting for the user, queued, held by the
caller, held by another operator, closed; chats of a visitor without a web
login (auth_user_id null); an unknown id; null. Operators and users are tried
with and without a login. Callers include a role that is both a backend and
a web caller, and claims without a sub, empty, or not JSON.

The expected answer of each cell comes from one oracle (expected()) written
from the contract, not from the code. Besides the SQLSTATE, every cell checks:
- a refusal of a web caller names no id it may not see, and is the same
  answer for every target it may not see (another's chat in any state, or an
  unknown id): it tells nothing about rows the caller cannot see;
- a refused web call is decided before any lock: it is answered at once
  while another session holds the chat's row;
- an allowed close closes, an allowed message is written.
"""

from __future__ import annotations

import json
import re
import uuid

import psycopg
import pytest
from chatdesk.errors import (BAD_TRANSITION, CHAT_CLOSED, NOT_ALLOWED, NOT_ASSIGNEE, NOT_FOUND)
from helpers import connect

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
HYBRID = "chatdesk_test_app_and_web"  # a role that inherits both chatdesk_app and chatdesk_web

# caller -> (role, claims as a function of the world; None: no claims at all)
CALLERS = {
    "backend": ("chatdesk_app", None),
    "reporting": ("chatdesk_reporting", None),
    "web_op_a": ("chatdesk_web", lambda w: json.dumps({"sub": w["a_login"], "role": "authenticated"})),
    "web_op_b": ("chatdesk_web", lambda w: json.dumps({"sub": w["b_login"], "role": "authenticated"})),
    "web_visitor_v": ("chatdesk_web", lambda w: json.dumps({"sub": w["v_login"], "role": "authenticated"})),
    "web_visitor_w": ("chatdesk_web", lambda w: json.dumps({"sub": w["w_login"], "role": "authenticated"})),
    "web_no_claims": ("chatdesk_web", None),
    "web_empty_claims": ("chatdesk_web", lambda w: "{}"),
    "web_no_sub": ("chatdesk_web", lambda w: json.dumps({"role": "authenticated"})),
    "web_not_json": ("chatdesk_web", lambda w: '{"sub": "' + w["v_login"]),
    "web_unknown_sub": ("chatdesk_web", lambda w: json.dumps({"sub": str(uuid.uuid4())})),
    "web_null_sub": ("chatdesk_web", lambda w: json.dumps({"sub": None})),
    "hybrid_unknown_sub": (HYBRID, lambda w: json.dumps({"sub": str(uuid.uuid4())})),
    "hybrid_no_claims": (HYBRID, None),
}
WEB = {c for c, (role, _) in CALLERS.items() if role != "chatdesk_app" and role != "chatdesk_reporting"}
# who each caller is: its operator (it acts as) and its visitor
SELF_OPERATOR = {"web_op_a": "a", "web_op_b": "b"}
SELF_VISITOR = {"web_visitor_v": "v", "web_visitor_w": "w"}

# The chats every state of a target can be in. v_*: visitor V's (it has a web
# login), x_*: visitor X's (no login: auth_user_id null), held by A, B or C
# (C has no login).
CHAT_TARGETS = ("v_reply", "v_queued", "v_held_a", "v_held_b", "v_closed",
                "x_reply", "x_queued", "x_held_c", "x_closed", "unknown", "null")
OPERATOR_TARGETS = ("a", "b", "c", "unknown", "null")
USER_TARGETS = ("v", "w", "x", "unknown", "null")


def chat_owner(target: str) -> str | None:
    return {"v": "v", "x": "x"}.get(target.split("_")[0])


def chat_holder(target: str) -> str | None:
    return target.rsplit("_", 1)[1] if "_held_" in target else None


@pytest.fixture(scope="module")
def world(pg_server, template_db):
    """One database for the whole module (every cell runs in a transaction
    that is rolled back): operators A, B (web logins), C (none); visitors V, W
    (web logins), X (none); V's and X's chats in every state."""
    from conftest import _database_for_one_test
    databases = _database_for_one_test(pg_server, "chatdesk_states", template_db)
    url = next(databases)
    with connect(url) as conn:
        conn.execute(f"""do $$ begin
            if not exists (select 1 from pg_roles where rolname = '{HYBRID}') then
                create role {HYBRID} nologin;
            end if; end $$""")
        conn.execute(f"grant chatdesk_app, chatdesk_web to {HYBRID}")
        conn.execute("update settings set value = '20' where key = 'max_open_chats_per_user'")
        w = {k: str(uuid.uuid4()) for k in ("a_login", "b_login", "v_login", "w_login")}
        one = lambda sql, *args: str(conn.execute(sql, args).fetchone()[0])  # noqa: E731
        w["a"] = one("select create_operator('Ann', 50, %s)", w["a_login"])
        w["b"] = one("select create_operator('Bob', 50, %s)", w["b_login"])
        w["c"] = one("select create_operator('Cid', 50)")
        w["v"] = one("select create_real_user('Vic', %s)", w["v_login"])
        w["w"] = one("select create_real_user('Wes', %s)", w["w_login"])
        w["x"] = one("select create_real_user('Xia')")
        # held chats first: each claim takes the oldest queued chat
        for user, holder in (("v", "a"), ("v", "b"), ("x", "c")):
            chat = one("select start_chat(%s)", w[user])
            conn.execute("select send_user_message(%s, 'help')", (chat,))
            assert one("select claim_next_chat(%s)", w[holder]) == chat
            w[f"{user}_held_{holder}"] = chat
        for user in ("v", "x"):
            w[f"{user}_reply"] = one("select start_chat(%s)", w[user])
            w[f"{user}_queued"] = one("select start_chat(%s)", w[user])
            conn.execute("select send_user_message(%s, 'waiting')", (w[f"{user}_queued"],))
            w[f"{user}_closed"] = one("select start_chat(%s)", w[user])
            conn.execute("select send_user_message(%s, 'bye')", (w[f"{user}_closed"],))
            conn.execute("select close_chat(%s)", (w[f"{user}_closed"],))
        w["unknown"] = str(uuid.uuid4())
        # the newest message of each chat: what an operator has seen
        w["seen"] = {t: one("select coalesce(max(id), 1) from messages where chat_id = %s", w[t])
                     for t in CHAT_TARGETS if t not in ("unknown", "null")}
    yield url, w
    next(databases, None)


def sql_value(w: dict, key: str) -> str:
    return "null" if key == "null" else f"'{w[key]}'"


# -- the oracle: what the contract says each cell answers ----------------------------
def expected(function: str, caller: str, target: str) -> str:
    """'ok' or the SQLSTATE of the contract for function on target by caller."""
    if caller == "reporting":
        return NOT_ALLOWED
    backend = caller == "backend"
    me_op = "a" if backend else SELF_OPERATOR.get(caller)
    me_user = SELF_VISITOR.get(caller)
    if function in ("claim_next_chat", "heartbeat"):
        if backend:
            return NOT_FOUND if target in ("unknown", "null") else "ok"
        return "ok" if target == me_op else NOT_ALLOWED
    if function == "start_chat":
        if backend:
            return NOT_FOUND if target in ("unknown", "null") else "ok"
        return "ok" if target == me_user else NOT_ALLOWED
    owner, holder, closed = chat_owner(target), chat_holder(target), target.endswith("_closed")
    if function == "close_chat":
        if backend:
            return NOT_FOUND if owner is None else BAD_TRANSITION if closed else "ok"
        if me_user is not None and owner == me_user:
            return BAD_TRANSITION if closed else "ok"
        return "ok" if me_op is not None and holder == me_op else NOT_ALLOWED
    if function == "send_user_message":
        if backend:
            return NOT_FOUND if owner is None else "ok"
        return "ok" if me_user is not None and owner == me_user else NOT_ALLOWED
    if function in ("send_operator_message", "release_chat"):
        if me_op is None:  # a visitor or nobody acting as operator A
            return NOT_ALLOWED
        if holder == me_op:
            return "ok"
        if backend:
            if owner is None:
                return NOT_FOUND
            return CHAT_CLOSED if closed and function == "send_operator_message" else NOT_ASSIGNEE
        return NOT_ASSIGNEE  # a web operator hears only "not the assignee", whatever the chat
    raise AssertionError(function)


def call_sql(function: str, caller: str, target: str, w: dict) -> str:
    me = SELF_OPERATOR.get(caller, "a")
    if function in ("claim_next_chat", "heartbeat", "start_chat"):
        return f"select chatdesk.{function}({sql_value(w, target)})"
    chat = sql_value(w, target)
    if function == "close_chat":
        return f"select chatdesk.close_chat({chat})"
    if function == "send_user_message":
        return f"select chatdesk.send_user_message({chat}, 'hi')"
    if function == "send_operator_message":
        seen = w["seen"].get(target, "1")
        return f"select * from chatdesk.send_operator_message({chat}, '{w[me]}', 'hi', null, {seen})"
    if function == "release_chat":
        return f"select chatdesk.release_chat({chat}, '{w[me]}')"
    raise AssertionError(function)


CHAT_FUNCTIONS = ("close_chat", "send_user_message", "send_operator_message", "release_chat")
CELLS = ([(f, t) for f in CHAT_FUNCTIONS for t in CHAT_TARGETS]
         + [(f, t) for f in ("claim_next_chat", "heartbeat") for t in OPERATOR_TARGETS]
         + [("start_chat", t) for t in USER_TARGETS])


def visible_ids(caller: str, w: dict, passed: str) -> set[str]:
    """The ids a web caller may see named in an answer: its own, and those it passed."""
    own = {SELF_OPERATOR.get(caller), SELF_VISITOR.get(caller)} - {None}
    return {w[k] for k in own} | set(UUID.findall(passed))


def run_cell(conn, locker, w: dict, function: str, caller: str, target: str):
    """Runs one cell PostgREST's way; returns (outcome, message, waited).
    A web caller's refusal is decided before any lock: while another session
    holds the chat's row (as a writer would), a call the oracle refuses must
    be answered at once, not wait for that lock (a lock taken before the
    check would: up to the functions' lock_timeout)."""
    role, claims = CALLERS[caller]
    sql = call_sql(function, caller, target, w)
    # (an authority refusal; a visitor closing its own closed chat is told CD002 under the lock)
    hold = (caller in WEB and expected(function, caller, target) in (NOT_ALLOWED, NOT_ASSIGNEE)
            and chat_owner(target) is not None and target in w)
    if hold:
        locker.execute("select 1 from chatdesk.chats where id = %s for no key update", (w[target],))
    conn.execute("begin")
    waited = False
    try:
        conn.execute("set local statement_timeout = '1s'" if hold else "select 1")
        conn.execute(f"set local role {role}")
        conn.execute("select set_config('request.jwt.claims', %s, true)", (claims(w) if claims else "",))
        rows = conn.execute(sql).fetchall()
        outcome, message = "ok", rows
        conn.execute("reset role")
        if function == "close_chat":
            effect = conn.execute("select chat_state from chatdesk.chats where id = %s", (w[target],)).fetchone()[0]
            assert effect == "closed", f"{caller} closed {target}, which is now {effect}"
    except psycopg.errors.QueryCanceled as error:
        outcome, message, waited = error.sqlstate, "waited for the chat's lock", True
    except psycopg.Error as error:
        outcome, message = error.sqlstate, error.diag.message_primary or ""
    finally:
        conn.execute("rollback")
        if hold:
            locker.rollback()
    return outcome, message, waited


@pytest.mark.parametrize("caller", sorted(CALLERS))
def test_every_function_in_every_state(world, caller):
    url, w = world
    wrong = []
    refusals: dict[str, set] = {}
    with psycopg.connect(url, autocommit=True) as conn, psycopg.connect(url) as locker:
        for function, target in CELLS:
            outcome, message, waited = run_cell(conn, locker, w, function, caller, target)
            want = expected(function, caller, target)
            cell = f"{function}({target}) by {caller}"
            if outcome != want:
                wrong.append(f"{cell}: {outcome}, should be {want} ({message})")
            if caller in WEB and outcome != "ok":
                passed = call_sql(function, caller, target, w)
                leaked = {i for i in UUID.findall(str(message)) if i not in visible_ids(caller, w, passed)}
                if leaked:
                    wrong.append(f"{cell}: the refusal names ids the caller may not see: {message}")
                if waited:
                    wrong.append(f"{cell}: waited for another session's lock on the chat before refusing")
                # one answer for every target the caller may not see (others'
                # chats in any state, an unknown id): ids aside, nothing differs
                may_see = (chat_owner(target) == SELF_VISITOR.get(caller)
                           or chat_holder(target) == SELF_OPERATOR.get(caller)
                           or target in (SELF_OPERATOR.get(caller), SELF_VISITOR.get(caller)))
                if not may_see and target != "null":
                    refusals.setdefault(function, set()).add((outcome, UUID.sub("<id>", str(message))))
    for function, answers in refusals.items():
        if len(answers) > 1:
            wrong.append(f"{function} by {caller}: refusals differ by the state of what it may not see: {sorted(answers)}")
    assert not wrong, "\n".join(wrong)
