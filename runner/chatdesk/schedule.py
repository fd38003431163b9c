"""`chatdesk schedule`: idle release, rollups, feed pruning and queue samples for a container without cron.

Runs until SIGTERM/SIGINT. Each job runs on fixed slots (start + k * interval),
so time spent running never accumulates into drift; a job that fell more than
a slot behind skips to the next future slot rather than bursting. Every run
opens its own connection, so a restarted database costs one failed run: the
job retries with backoff (1 s, 2 s, 4 s ... 60 s) until it connects again.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import psycopg

from chatdesk import db, idle, rollup
from chatdesk.durations import human
from chatdesk.errors import ChatdeskError

MAX_BACKOFF = 60.0


@dataclass
class Job:
    name: str
    interval: float
    run: Callable[[], str]  # does one run, returns the log line's text
    next_at: float = 0.0
    failures: int = 0


@dataclass
class Scheduler:
    conninfo: str | None
    idle_every: float = 60.0
    idle_after: timedelta = timedelta(minutes=5)
    rollup_every: float = 300.0
    now: Callable[[], float] = time.time
    stop: threading.Event = field(default_factory=threading.Event)
    log: Callable[[str], None] = lambda line: print(line, flush=True)
    last_rolled_day: date | None = None  # today's date at the previous rollup run
    last_rollup_at: float | None = None  # when a rollup last completed (self.now())
    started_at: float = 0.0

    def __post_init__(self):
        self.jobs = [
            Job("release-idle", self.idle_every, self.release_idle),
            Job("rollup", self.rollup_every, self.rollup),
            Job("prune-feed", self.rollup_every, self.prune_feed),
            Job("sample-queue", self.idle_every, self.sample_queue),
        ]

    # -- the jobs --------------------------------------------------------------

    def release_idle(self) -> str:
        with db.connect(self.conninfo) as conn:
            n = idle.release_idle(conn, self.idle_after)
        return f"released {n} chat{'s' if n != 1 else ''} idle over {human(self.idle_after)}"

    def prune_feed(self) -> str:
        with db.connect(self.conninfo) as conn:
            n = conn.execute("select chatdesk.prune_changes()").fetchone()[0]
        return f"pruned {n} change-feed row{'s' if n != 1 else ''} older than feed_retention"

    def sample_queue(self) -> str:
        with db.connect(self.conninfo) as conn:
            n = conn.execute("select chatdesk.sample_queue()").fetchone()[0]
        return f"{n} chat{'s' if n != 1 else ''} waiting"

    def _rollup_days(self, conn: psycopg.Connection) -> list[date]:
        today, _ = rollup.today_and_zone(conn)
        # First run: close yesterday too (a restart near midnight loses nothing).
        # Later runs: every day since the previous run's day, so the first run
        # after midnight finalises the day that just ended.
        first = self.last_rolled_day or today - timedelta(days=1)
        return rollup.date_range(min(first, today), today)

    def rollup(self) -> str:
        result = rollup.rollup(self.conninfo, self._rollup_days, wait=False)
        if result.skipped:
            since = self.now() - (self.last_rollup_at or self.started_at)
            if since > self.rollup_every:
                return (f"WARNING: skipped again, another rollup holds the lock; no rollup completed here for "
                        f"{human(timedelta(seconds=since))} (chatdesk status shows how fresh the stats are)")
            return "skipped: another rollup holds the lock"
        self.last_rollup_at = self.now()
        self.last_rolled_day = date.fromisoformat(result.days[-1]["date"])
        return "rolled up " + ", ".join(f"{d['date']} ({d['rows']} rows)" for d in result.days)

    # -- the loop --------------------------------------------------------------

    def _stamp(self) -> str:
        return datetime.fromtimestamp(self.now(), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    def run_due(self) -> None:
        """Run every job whose slot has come, then book its next slot."""
        for job in self.jobs:
            if self.stop.is_set() or self.now() < job.next_at:
                continue
            started = time.monotonic()
            try:
                text = job.run()
            except (ChatdeskError, psycopg.Error) as error:
                job.failures += 1
                backoff = min(MAX_BACKOFF, 2.0 ** (job.failures - 1))
                message = db.first_line(error)
                self.log(f"{self._stamp()} {job.name}: failed ({message}); retrying in {backoff:g}s")
                job.next_at = self.now() + backoff
                continue
            job.failures = 0
            self.log(f"{self._stamp()} {job.name}: {text} ({(time.monotonic() - started) * 1000:.0f} ms)")
            # Fixed slots: the next one after now, counted from the previous slot.
            slots_passed = int((self.now() - job.next_at) // job.interval) + 1
            job.next_at += slots_passed * job.interval

    def start(self) -> None:
        start = self.started_at = self.now()
        for job in self.jobs:
            job.next_at = start

    def wait_seconds(self) -> float:
        return max(0.0, min(job.next_at for job in self.jobs) - self.now())

    def run_forever(self) -> None:
        # Every job writes: on a standby, say so once and stop, rather than
        # fail every run. (A database that is down is retried, as always.)
        try:
            with db.connect(self.conninfo) as conn:
                db.require_primary(conn, "schedule")
        except db.ConnectionFailed:
            pass
        self.start()
        self.log(f"{self._stamp()} schedule: started (release-idle every {human(timedelta(seconds=self.idle_every))}, "
                 f"rollup every {human(timedelta(seconds=self.rollup_every))})")
        while not self.stop.is_set():
            self.run_due()
            self.stop.wait(self.wait_seconds())
        self.log(f"{self._stamp()} schedule: stopped")


def install_signal_handlers(scheduler: Scheduler) -> None:
    """SIGTERM/SIGINT end the loop after the run in progress (its transaction commits or rolls back)."""

    def handle(signum, frame):
        scheduler.log(f"{scheduler._stamp()} schedule: {signal.Signals(signum).name} received, stopping")
        scheduler.stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
