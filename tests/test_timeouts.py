"""Lock timeouts: a session stuck on a chat cannot hang everyone else."""

from __future__ import annotations

import time

import psycopg
import pytest
from test_chat_concurrency import connect

API = ["create_operator", "set_operator_active", "create_real_user", "start_chat", "send_user_message",
       "send_operator_message", "claim_next_chat", "release_chat", "close_chat", "heartbeat",
       "release_idle_chats", "update_operator_stats", "rollup_operator_stats"]


def test_every_api_function_sets_a_lock_timeout(db_url):
    with connect(db_url) as conn:
        rows = dict(conn.execute(
            """select proname, proconfig from pg_proc
                where pronamespace = 'chatdesk'::regnamespace and proname = any(%s)""", (API,)).fetchall())
    assert sorted(rows) == sorted(API)
    assert {name for name, config in rows.items() if "lock_timeout=5s" not in (config or [])} == set()


def test_a_stuck_session_makes_a_writer_fail_fast_not_hang(db_url):
    with connect(db_url) as conn:
        user = conn.execute("select create_real_user('u')").fetchone()[0]
        conn.execute("update chatdesk.settings set value = '100' where key = 'max_open_chats_per_user'")  # one user, many chats
        chat = conn.execute("select start_chat(%s)", (user,)).fetchone()[0]
    stuck = psycopg.connect(db_url)  # holds the chat and never commits
    stuck.execute("select 1 from chatdesk.chats where id = %s for update", (chat,))
    try:
        with connect(db_url) as conn:
            started = time.monotonic()
            with pytest.raises(psycopg.errors.LockNotAvailable):
                conn.execute("select send_user_message(%s, 'hello?')", (chat,))
            waited = time.monotonic() - started
        assert 4.5 < waited < 8, waited
    finally:
        stuck.rollback()
        stuck.close()
    with connect(db_url) as conn:
        assert conn.execute("select message_count from chats where id = %s", (chat,)).fetchone()[0] == 0
