"""Every row lock chatdesk's functions take has a behaviour test that holds
that very row from another connection (#24).

The locks are found in the functions' own text with PostgreSQL's parser
(pglast, as tests/test_scaling.py finds them): (function, table, wait
policy). Each must have a case below; a new lock without one fails
test_every_lock_has_a_behaviour_test. Each case holds the row in one
session and calls the function in another, then checks what was designed:
- a blocking lock waits for the holder (its backend is seen waiting on a
  lock), then finishes once the holder ends;
- a SKIP LOCKED lock passes over the held row at once, and does its work on
  the rest.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Callable

import psycopg
import pytest
from helpers import connect
from test_scaling import _queries, _relations, _walk, _for_the_parser, parse_plpgsql, parse_sql_json


def locks_in(sql: str) -> set[tuple[str, str]]:
    """(table, wait policy) of every locking clause in sql."""
    found = set()
    for node in _walk(json.loads(parse_sql_json(sql))):
        select = node.get("SelectStmt")
        if not select or not select.get("lockingClause"):
            continue
        relations = _relations(select.get("fromClause", []))
        for clause in select["lockingClause"]:
            lock = clause["LockingClause"]
            names = [rv["RangeVar"]["relname"] for rv in lock.get("lockedRels", [])] or list(relations)
            wait = {"LockWaitSkip": "skip locked", "LockWaitError": "nowait"}.get(lock.get("waitPolicy"), "waits")
            found |= {(relations.get(alias, alias), wait) for alias in names}
    return found


def function_locks(conn) -> set[tuple[str, str, str]]:
    out = set()
    for name, language, definition, body in conn.execute(
            """select p.proname, l.lanname, pg_get_functiondef(p.oid), p.prosrc
                 from pg_proc p join pg_language l on l.oid = p.prolang
                where p.pronamespace = 'chatdesk'::regnamespace and p.prokind = 'f'"""):
        queries = (_queries(parse_plpgsql(_for_the_parser(definition))) if language == "plpgsql"
                   else [body] if language == "sql" else [])
        for query in queries:
            out |= {(name, table, wait) for table, wait in locks_in(query)}
    return out


@dataclass
class Case:
    hold: str  # run by the holder, in an open transaction ({x} from the setup)
    call: str  # run by the caller
    check: Callable | None = None  # for skip locked: checks the call's result (and the database)


def world(conn) -> dict:
    """Operators A (holding chats X and Y) and B, a queue of Q1 then Q2, a user U."""
    w = {"a": conn.execute("select create_operator('A', 10)").fetchone()[0],
         "b": conn.execute("select create_operator('B', 10)").fetchone()[0]}
    for name in ("x", "y", "q1", "q2"):
        w[name] = conn.execute("select start_chat(create_real_user('u'))").fetchone()[0]
        conn.execute("select send_user_message(%s, 'hi')", (w[name],))
        if name in ("x", "y"):
            assert conn.execute("select claim_next_chat(%s)", (w["a"],)).fetchone()[0] == w[name]
    w["u"] = conn.execute("select create_real_user('U')").fetchone()[0]
    conn.execute("update operators set last_active_at = now() - interval '1 hour' where id = %s", (w["a"],))
    conn.execute("update feed_wakeup set sent_at = '-infinity'")
    return w


CASES = {
    ("check_open_chats", "real_users", "waits"): Case(
        "select 1 from chatdesk.real_users where id = '{u}' for no key update",
        "select chatdesk.start_chat('{u}')"),
    ("claim_next_chat", "queue", "skip locked"): Case(
        "select 1 from chatdesk.queue where chat_id = '{q1}' for update",
        "select chatdesk.claim_next_chat('{b}')", lambda w, got: got == w["q2"]),
    ("claim_next_chat", "chats", "skip locked"): Case(
        "select 1 from chatdesk.chats where id = '{q1}' for no key update",
        "select chatdesk.claim_next_chat('{b}')", lambda w, got: got == w["q2"]),
    ("close_chat", "chats", "waits"): Case(
        "select 1 from chatdesk.chats where id = '{x}' for no key update",
        "select chatdesk.close_chat('{x}')"),
    ("messages__accept", "chats", "waits"): Case(
        "select 1 from chatdesk.chats where id = '{x}' for no key update",
        "select chatdesk.send_user_message('{x}', 'while held')"),
    ("publish_change", "feed_wakeup", "skip locked"): Case(
        "select 1 from chatdesk.feed_wakeup for update",
        "select chatdesk.send_user_message('{q2}', 'no wake-up this time')", lambda w, got: got is not None),
    ("recount_chats", "chats", "waits"): Case(
        "select 1 from chatdesk.chats where id = '{x}' for no key update",
        "select chatdesk.recount_chats(array['{x}'::uuid])"),
    ("recount_operators", "operators", "waits"): Case(
        "select 1 from chatdesk.operators where id = '{a}' for no key update",
        "select chatdesk.recount_operators(array['{a}'::uuid])"),
    ("release_chat", "chats", "waits"): Case(
        "select 1 from chatdesk.chats where id = '{x}' for no key update",
        "select chatdesk.release_chat('{x}', '{a}')"),
    ("release_idle_chats", "chats", "skip locked"): Case(
        "select 1 from chatdesk.chats where id = '{x}' for no key update",
        "select chatdesk.release_idle_chats('5 minutes')", lambda w, got: got == 1),
    ("release_idle_chats", "operators", "waits"): Case(
        "select 1 from chatdesk.operators where id = '{a}' for no key update",
        "select chatdesk.release_idle_chats('5 minutes')"),
    ("rollup_operator_stats", "runner_locks", "waits"): Case(
        "select 1 from chatdesk.runner_locks where name = 'rollup' for update",
        "select chatdesk.rollup_operator_stats(current_date)"),
    ("try_rollup_operator_stats", "runner_locks", "skip locked"): Case(
        "select 1 from chatdesk.runner_locks where name = 'rollup' for update",
        "select chatdesk.try_rollup_operator_stats(current_date)", lambda w, got: got is None),
}


def test_every_lock_has_a_behaviour_test(db_url):
    with connect(db_url) as conn:
        found = function_locks(conn)
    assert found, "the parser found no locks at all"
    assert found == set(CASES), (f"locks without a behaviour test: {sorted(found - set(CASES))}; "
                                 f"cases for locks no longer taken: {sorted(set(CASES) - found)}")


def waiting_on_a_lock(conn, pid: int) -> bool:
    return conn.execute("select wait_event_type = 'Lock' from pg_stat_activity where pid = %s",
                        (pid,)).fetchone()[0] is True


@pytest.mark.parametrize("lock", sorted(CASES), ids=lambda lock: "-".join(lock).replace(" ", "_"))
def test_a_held_row(db_url, lock):
    case = CASES[lock]
    with connect(db_url) as setup:
        w = world(setup)
    holder = psycopg.connect(db_url, options="-c search_path=chatdesk")  # a transaction left open
    caller = psycopg.connect(db_url, autocommit=True, options="-c search_path=chatdesk")
    result: dict = {}

    def call():
        try:
            result["value"] = caller.execute(case.call.format(**w)).fetchone()[0]
        except psycopg.Error as error:
            result["error"] = error

    try:
        assert holder.execute(case.hold.format(**w)).fetchall(), "the holder holds a row"
        thread = threading.Thread(target=call)
        thread.start()
        if case.check is None:  # waits for the holder, then finishes
            deadline = time.monotonic() + 5
            with connect(db_url) as watcher:
                while not waiting_on_a_lock(watcher, caller.info.backend_pid):
                    assert time.monotonic() < deadline and thread.is_alive(), f"{lock}: did not wait ({result})"
                    time.sleep(0.02)
            holder.rollback()
            thread.join(10)
            assert not thread.is_alive() and "error" not in result, result
        else:  # passes over the held row at once
            thread.join(5)
            assert not thread.is_alive(), f"{lock}: waited for the held row"
            assert "error" not in result, result
            assert case.check(w, result["value"]), f"{lock}: {result['value']}"
    finally:
        holder.close()
        caller.close()
