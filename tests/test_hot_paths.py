"""The hot paths plan their statements once per session, not on every call.

PostgreSQL re-plans a statement inside a function on every call when a custom
plan always looks cheaper than the generic one (a test on a value that is
usually null, folded away in the custom plan), and plans a security definer
SQL function's query afresh on every call. Either costs 6 to 50 µs of CPU on
every message or web request (docs/benchmarks.md, "Hot paths"). This test runs
every hot path forty times and asks pg_stat_statements how often each
statement inside chatdesk's functions was planned.

Speed itself is measured by `chatdesk bench`, not here.
"""

from __future__ import annotations

import json
import uuid

import psycopg
from helpers import connect, two_operators_two_visitors

ROUNDS = 40


def _as_web(conn: psycopg.Connection, login: str, sql: str, params=()) -> None:
    """One PostgREST-style request: set local role, the claims, the call."""
    with conn.transaction():
        conn.execute("set local role chatdesk_web")
        conn.execute("select set_config('request.jwt.claims', %s, true)",
                     (json.dumps({"sub": login, "role": "authenticated"}),))
        conn.execute(sql, params).fetchall()


def test_no_statement_on_a_hot_path_is_planned_on_every_call(db_url):
    p = two_operators_two_visitors(db_url)
    # messages with client ids come from a session of their own: the plans
    # of the one without them must hold on their own (most messages have none)
    with connect(db_url) as retrier, connect(db_url) as conn:
        retrier.autocommit = True
        retrier.execute("set pg_stat_statements.track = 'all'")
        conn.autocommit = True
        conn.execute("create extension if not exists pg_stat_statements")
        conn.execute("set pg_stat_statements.track = 'all'")
        conn.execute("set pg_stat_statements.track_planning = on")
        conn.execute("select pg_stat_statements_reset()")
        seen = conn.execute("select min(id) from chatdesk.messages where chat_id = %s", (p["a_chat"],)).fetchone()[0]
        for _ in range(ROUNDS):
            # a backend: messages with and without client ids, a claim and its release
            conn.execute("select chatdesk.send_user_message(%s, 'hi')", (p["a_chat"],))
            retrier.execute("select chatdesk.send_user_message(%s, 'hi', %s)", (p["a_chat"], str(uuid.uuid4())))
            conn.execute("select * from chatdesk.send_operator_message(%s, %s, 'ok', null, %s)",
                         (p["a_chat"], p["a"], seen))
            retrier.execute("select * from chatdesk.send_operator_message(%s, %s, 'ok', %s, %s)",
                            (p["a_chat"], p["a"], str(uuid.uuid4()), seen))
            assert conn.execute("select chatdesk.claim_next_chat(%s)", (p["b"],)).fetchone()[0] is not None
            conn.execute("select chatdesk.release_chat(%s, %s)", (p["queued"], p["b"]))
            conn.execute("select chatdesk.heartbeat(%s)", (p["a"],))
            # web callers: writes, the reads a browser makes, the change feed
            _as_web(conn, p["v_login"], "select chatdesk.send_user_message(%s, 'hi')", (p["a_chat"],))
            _as_web(conn, p["a_login"], "select * from chatdesk.send_operator_message(%s, %s, 'ok', null, %s)",
                    (p["a_chat"], p["a"], seen))
            _as_web(conn, p["v_login"], "select id, body from chatdesk.messages where chat_id = %s order by id desc limit 20",
                    (p["a_chat"],))
            _as_web(conn, p["a_login"], "select * from chatdesk.chats")
            _as_web(conn, p["a_login"], "select id, to_state from chatdesk.chat_events where chat_id = %s", (p["a_chat"],))
            _as_web(conn, p["v_login"], "select * from chatdesk.chat_operators")
            _as_web(conn, p["v_login"], "select * from chatdesk.changes_since(null, 100)")
            _as_web(conn, p["a_login"], "select * from chatdesk.changes_since(null, 100)")
            _as_web(conn, p["a_login"], "select chatdesk.feed_position()")
        replanned = conn.execute(
            """select calls, plans, left(regexp_replace(query, '\\s+', ' ', 'g'), 160)
                 from pg_stat_statements
                where dbid = (select oid from pg_database where datname = current_database())
                  and not toplevel and calls >= %s and plans > calls / 2
                order by plans desc""", (ROUNDS,)).fetchall()
        planned = conn.execute(
            """select count(*) from pg_stat_statements
                where dbid = (select oid from pg_database where datname = current_database())
                  and not toplevel and calls >= %s and plans > 0""", (ROUNDS,)).fetchone()[0]
    assert planned > 20, "pg_stat_statements saw the statements inside chatdesk's functions"
    assert replanned == [], "\n".join(f"{calls} calls, {plans} plans: {query}" for calls, plans, query in replanned)
