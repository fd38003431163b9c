"""Torture: 10 connections doing everything at once to a few dozen chats, then every invariant.

Runs CHATDESK_TORTURE_SECONDS (default 30; CI sets it shorter). Only the
contract's refusals (CD001..CD005) are acceptable errors: a deadlock, a lock
timeout or any other error fails the test.
"""

from __future__ import annotations

import collections
import os
import random
import time

import psycopg
from chatdesk.errors import (
    AT_CAPACITY,
    BAD_TRANSITION,
    CHAT_CLOSED,
    NOT_ASSIGNEE,
    OPERATOR_INACTIVE,
)
from helpers import INVARIANTS, CapacityMonitor, connect, run_threads

SECONDS = float(os.environ.get("CHATDESK_TORTURE_SECONDS", "30"))
WORKERS = 10
ACCEPTABLE = {NOT_ASSIGNEE, BAD_TRANSITION, OPERATOR_INACTIVE, AT_CAPACITY, CHAT_CLOSED}

def test_torture(db_url):
    with connect(db_url) as conn:
        ops = [conn.execute("select create_operator(%s, %s)", (f"op{i}", 1 + i % 3)).fetchone()[0] for i in range(6)]
        # claims now and then, never answers: its chats must come back through idle release
        sleepy = conn.execute("select create_operator('sleepy', 2)").fetchone()[0]
        users = [conn.execute("select create_real_user(%s)", (f"u{i}",)).fetchone()[0] for i in range(12)]
        chats = [conn.execute("select start_chat(%s)", (users[i % 12],)).fetchone()[0] for i in range(36)]
    deadline = time.monotonic() + SECONDS
    done = collections.Counter()
    refused = collections.Counter()

    def worker(index):
        rng = random.Random(index)
        with connect(db_url) as conn:
            next_nap = time.monotonic()
            while time.monotonic() < deadline:
                if index == 0 and time.monotonic() >= next_nap:
                    next_nap += 0.5
                    try:
                        conn.execute("select claim_next_chat(%s)", (sleepy,))
                    except psycopg.Error as error:
                        assert error.sqlstate in ACCEPTABLE, error

                chat, op = rng.choice(chats), rng.choice(ops)
                action = rng.choices(
                    ["user", "claim", "reply", "release", "close", "heartbeat", "sweep", "deactivate"],
                    weights=[40, 15, 30, 4, 3, 5, 2, 1])[0]
                try:
                    if action == "user":
                        client = f"c{rng.randrange(30)}" if rng.random() < 0.3 else None  # repeated client ids
                        conn.execute("select send_user_message(%s, 'q', %s)", (chat, client))
                    elif action == "claim":
                        conn.execute("select claim_next_chat(%s)", (op,))
                    elif action == "reply":
                        row = conn.execute("select assigned_operator_id from chats where id = %s", (chat,)).fetchone()
                        who = row[0] if row[0] and row[0] != sleepy and rng.random() < 0.9 else op  # sometimes the wrong one
                        seen = conn.execute(
                            "select min(id) from messages where chat_id = %s" if rng.random() < 0.3 else
                            "select max(id) from messages where chat_id = %s", (chat,)).fetchone()[0]
                        conn.execute("select * from send_operator_message(%s, %s, 'a', %s, %s)",
                                     (chat, who, f"r{rng.randrange(50)}" if rng.random() < 0.2 else None, seen))
                    elif action == "release":
                        row = conn.execute("select assigned_operator_id from chats where id = %s", (chat,)).fetchone()
                        conn.execute("select release_chat(%s, %s)", (chat, row[0] if row[0] not in (None, sleepy) else op))
                    elif action == "close":
                        conn.execute("select close_chat(%s)", (chat,))
                    elif action == "heartbeat":
                        conn.execute("select heartbeat(%s)", (op,))
                    elif action == "sweep":
                        conn.execute("select release_idle_chats('300 milliseconds')")
                    else:
                        conn.execute("select set_operator_active(%s, %s)", (op, rng.random() < 0.7))
                    done[action] += 1
                except psycopg.Error as error:
                    assert error.sqlstate in ACCEPTABLE, f"{action}: {error.sqlstate} {error}"
                    refused[error.sqlstate] += 1

    monitor = CapacityMonitor(db_url)
    monitor.start()
    run_threads(WORKERS, worker)
    monitor.stop.set()
    monitor.join()
    print(f"\ntorture {SECONDS:g}s: done {dict(done)}, refused {dict(refused)}, capacity samples {monitor.samples}")

    assert sum(done.values()) > 100 * SECONDS
    assert all(done[a] > 0 for a in ("user", "claim", "reply", "release", "close", "sweep"))
    assert monitor.over == [], monitor.over
    with connect(db_url) as conn:
        broken = {name: conn.execute(sql).fetchone()[0] for name, sql in INVARIANTS.items()}
        assert all(v == 0 for v in broken.values()), broken
        reasons = dict(conn.execute("select reason, count(*) from chat_events group by 1").fetchall())
    assert reasons.get("idle", 0) > 0 and reasons.get("operator_reply", 0) > 0, reasons
