"""Faults: a rollup killed mid-backfill, and who may pin the clock."""

from __future__ import annotations

import signal
import subprocess
import sys

import psycopg
from conftest import ROOT, admin_execute
from helpers import chatdesk_backends, connect, generate_traffic, run_cli
from psycopg.conninfo import make_conninfo


def stats_rows(url):
    with connect(url) as conn:
        return conn.execute("""select operator_id, stat_date, messages_sent, chats_handled, replies,
                                      reply_time_avg_seconds, reply_time_p50_seconds, reply_time_p90_seconds
                                 from operator_daily_stats order by 2, 1""").fetchall()


def test_a_rollup_killed_mid_backfill_keeps_whole_days_only(db_url):
    with connect(db_url) as conn:
        ops, _ = generate_traffic(conn, steps=600)  # Mar 27 .. Mar 31
        active = conn.execute("select count(*) from operators where is_active").fetchone()[0]
    # Block the backfill on its third day: hold one of that day's rows in an open transaction.
    blocker = psycopg.connect(db_url)
    blocker.execute("insert into chatdesk.operator_daily_stats (operator_id, stat_date) values (%s, '2026-03-29')",
                    (ops[0],))
    proc = subprocess.Popen([sys.executable, "-m", "chatdesk", "--database-url", db_url, "rollup",
                             "--from", "2026-03-27", "--to", "2026-03-31"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    chatdesk_backends(db_url, "wait_event_type = 'Lock'")  # the backfill reached the blocked day
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    blocker.rollback()
    blocker.close()
    chatdesk_backends(db_url, present=False)  # the orphaned backend finds its client gone and rolls back

    kept = stats_rows(db_url)
    days = sorted({r[1].isoformat() for r in kept})
    assert days == ["2026-03-27", "2026-03-28"], "the finished days stay, the interrupted one left nothing"
    assert len(kept) == 2 * active, "each finished day is whole"
    # and they are exactly what a clean run writes
    assert run_cli("--database-url", db_url, "rollup", "--from", "2026-03-27", "--to", "2026-03-31").returncode == 0
    rerun = stats_rows(db_url)
    assert [r for r in rerun if r[1].isoformat() in days] == kept


def test_only_owners_can_pin_the_clock(db_url):
    # a login role that is an application, nothing more
    admin_execute(db_url, "do $$ begin if not exists (select from pg_roles where rolname = 'chatdesk_test_app') "
                          "then create role chatdesk_test_app login in role chatdesk_app; end if; end $$")
    app_url = make_conninfo(db_url, user="chatdesk_test_app")
    pinned = "-c chatdesk.clock=2001-01-01T00:00:00Z"
    with psycopg.connect(app_url, autocommit=True, options=pinned) as app:
        assert app.execute("select chatdesk.clock() > '2020-01-01'").fetchone()[0], "an app cannot backdate"
        user = app.execute("select chatdesk.create_real_user('u')").fetchone()[0]
        chat = app.execute("select chatdesk.start_chat(%s)", (user,)).fetchone()[0]
        app.execute("select chatdesk.send_user_message(%s, 'hi')", (chat,))
    with psycopg.connect(db_url, autocommit=True, options=pinned) as owner:
        assert owner.execute("select chatdesk.clock()::date::text").fetchone()[0] == "2001-01-01"
        assert owner.execute("select min(created_at) > '2020-01-01' from chatdesk.messages").fetchone()[0]
