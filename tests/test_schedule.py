"""`chatdesk schedule`: fixed slots, closing yesterday, backoff, a killed backend, SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import pytest
from chatdesk.schedule import Scheduler
from conftest import ROOT
from helpers import chatdesk_backends, connect


class FakeTime:
    def __init__(self, start: float):
        self.t = start

    def now(self) -> float:
        return self.t


def test_scheduler_keeps_fixed_slots_and_closes_yesterday(db_url):
    clock = FakeTime(1_000_000.0)
    lines = []
    url = db_url
    scheduler = Scheduler(url, idle_every=60, rollup_every=300, now=clock.now, log=lines.append)
    runs = []

    def slow_job(name):
        def run():
            runs.append((name, clock.t))
            clock.t += 7  # every run takes 7 s
            return "ok"
        return run

    real_rollup = scheduler.jobs[1].run
    scheduler.jobs[0].run, scheduler.jobs[1].run = slow_job("idle"), slow_job("rollup")
    scheduler.start()
    for _ in range(40):
        scheduler.run_due()
        clock.t += scheduler.wait_seconds()
    idle_times = [t for name, t in runs if name == "idle"]
    # each run took 7 s, yet runs stay on the minute slots: no drift
    assert [t - idle_times[0] for t in idle_times[:6]] == [0, 60, 120, 180, 240, 300]
    rollup_times = [t for name, t in runs if name == "rollup"]
    assert [t - idle_times[0] for t in rollup_times[:3]] == [7, 307, 607]  # its own slots (it waited for idle's run)

    # the rollup job: first run rolls yesterday and today; after midnight, it closes the day that ended
    with connect(db_url) as conn:
        conn.execute("select create_operator('a')")
    scheduler.conninfo = f"{url} options='-c chatdesk.clock=2026-03-01T23:58:00Z'"
    assert real_rollup() == "rolled up 2026-02-28 (1 rows), 2026-03-01 (1 rows)"
    scheduler.conninfo = f"{url} options='-c chatdesk.clock=2026-03-02T00:03:00Z'"
    assert scheduler.rollup() == "rolled up 2026-03-01 (1 rows), 2026-03-02 (1 rows)"
    assert scheduler.rollup() == "rolled up 2026-03-02 (1 rows)"


def test_scheduler_retries_with_backoff_when_the_database_is_gone():
    clock = FakeTime(0.0)
    lines = []
    scheduler = Scheduler("postgresql://nobody@127.0.0.1:1/x?connect_timeout=1", now=clock.now, log=lines.append)
    scheduler.start()
    waits = []
    for _ in range(8):
        scheduler.run_due()
        waits.append(scheduler.jobs[0].next_at - clock.t)
        clock.t = min(job.next_at for job in scheduler.jobs)
    assert waits[:7] == [1, 2, 4, 8, 16, 32, 60]
    assert all("failed (cannot connect to the database" in line for line in lines)


def test_schedule_survives_a_killed_backend_and_stops_on_sigterm(db_url):
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatdesk", "--database-url", db_url, "schedule", "--idle-every", "1s", "--rollup-every", "1s"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        with connect(db_url) as admin:
            # Hold the chats table so the scheduler's next run blocks inside the
            # database, then terminate exactly that backend, as a restart would.
            admin.execute("begin")
            admin.execute("lock table chatdesk.chats in access exclusive mode")
            pids = chatdesk_backends(db_url, "wait_event_type = 'Lock'")  # the scheduler blocked on the table
            with connect(db_url) as watcher:
                watcher.execute("select pg_terminate_backend(%s)", (pids[0],))
            admin.execute("rollback")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            failed_at = next((i for i, line in enumerate(lines) if ": failed (" in line), None)
            if failed_at is not None and any("release-idle: released" in line for line in lines[failed_at:]) \
                    and any("rollup: rolled up" in line for line in lines[failed_at:]):
                break
            time.sleep(0.1)
        else:
            pytest.fail("the scheduler did not carry on after its backend was killed:\n" + "".join(lines))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        reader.join(timeout=5)
    assert proc.returncode == 0, proc.stderr.read()
    assert any("SIGTERM received, stopping" in line for line in lines)
    assert lines[-1].rstrip().endswith("schedule: stopped")


def test_scheduled_rollup_closes_yesterday_once_after_midnight_and_never_overlaps(conn):
    """The pg_cron job's function (chatdesk cron): midnight in stats_time_zone, and a rollup already running."""
    conn.execute("update settings set value = 'Europe/Berlin' where key = 'stats_time_zone'")
    conn.execute("select create_operator('Ann')")

    def at(when):
        conn.execute("select set_config('chatdesk.clock', %s, false)", (when,))
        return conn.execute("select scheduled_rollup()").fetchone()[0]

    assert at("2026-03-10 23:50+01") == "rolled up 2026-03-09 (1 rows), 2026-03-10 (1 rows)"
    assert at("2026-03-10 23:55+01") == "rolled up 2026-03-10 (1 rows)"   # yesterday already closed, after its midnight
    assert at("2026-03-11 00:00+01") == "rolled up 2026-03-10 (1 rows), 2026-03-11 (1 rows)"  # the day that ended
    assert at("2026-03-11 00:05+01") == "rolled up 2026-03-11 (1 rows)"
    with connect(conn.info.dsn) as holder, holder.transaction():
        holder.execute("select chatdesk.try_rollup_operator_stats('2026-03-11')")  # holds the rollup lock
        started = time.monotonic()
        assert at("2026-03-11 00:10+01") == "skipped: another rollup holds the lock"
        assert time.monotonic() - started < 1
    conn.execute("reset chatdesk.clock")
