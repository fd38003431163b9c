"""`chatdesk rollup`: daily operator stats, one committed day at a time, one run at a time."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date, timedelta

import psycopg

from chatdesk import db
from chatdesk.errors import BadRequest


@dataclass
class RollupResult:
    days: list[dict] = field(default_factory=list)  # {"date": "YYYY-MM-DD", "rows": n}
    skipped: bool = False  # another run held the lock and we did not wait
    time_zone: str | None = None


def today_and_zone(conn: psycopg.Connection) -> tuple[date, str]:
    """Today in stats_time_zone (by chatdesk.clock()), and that zone."""
    return conn.execute("select chatdesk.stats_today(), chatdesk.stats_time_zone()").fetchone()


def date_range(start: date, end: date) -> list[date]:
    """Every day from start through end."""
    if start > end:
        raise BadRequest(f"the first day {start} is after the last day {end}")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


@dataclass(frozen=True)
class DaySelection:
    """Which days a rollup covers. At most one way of choosing:

    - `day`: that day;
    - `start` (and `end`, default today): that range;
    - `catch_up`: from the last day rolled up (it may be partial) through today,
      or from the first message's day when nothing was rolled up yet;
    - none: yesterday and today in stats_time_zone, so a run just after
      midnight still closes the day that ended.
    """

    day: date | None = None
    start: date | None = None
    end: date | None = None
    catch_up: bool = False

    def __post_init__(self):
        chosen = [name for name, on in (("one day", self.day), ("a range", self.start or self.end),
                                        ("catch-up", self.catch_up)) if on]
        if len(chosen) > 1:
            raise BadRequest(f"choose one of one day, a range or catch-up, not {' and '.join(chosen)}")
        if self.end and not self.start:
            raise BadRequest("a range needs its first day")
        if self.start and self.end and self.start > self.end:
            raise BadRequest(f"the first day {self.start} is after the last day {self.end}")

    def days(self, conn: psycopg.Connection) -> list[date]:
        if self.day:
            return [self.day]
        today, zone = today_and_zone(conn)
        if self.start:
            return date_range(self.start, self.end or today)
        if self.catch_up:
            start = conn.execute(
                """select coalesce((select max(stat_date) from chatdesk.operator_daily_stats),
                                   (select (min(created_at) at time zone %s)::date from chatdesk.messages))""",
                (zone,),
            ).fetchone()[0]
            return date_range(min(start or today, today), today)
        return [today - timedelta(days=1), today]


def rollup(
    conninfo: str | None,
    pick_days: Callable[[psycopg.Connection], list[date]],
    *,
    wait: bool = True,
    track: Callable[[list[date]], AbstractContextManager[Iterable[date]]] = contextlib.nullcontext,
    on_day: Callable[[date, int], None] = lambda d, n: None,
) -> RollupResult:
    """Roll up each day in its own transaction, one rollup transaction at a time.

    `pick_days` chooses the days (a DaySelection's `days`, or the scheduler's
    own); `track` may wrap them in a progress display. Each day takes the
    rollup lock row inside its own transaction (try_rollup_operator_stats),
    so it works through a transaction-mode pooler and a killed run holds
    nothing. While another rollup holds it, the day is retried after a pause
    (polling: no statement waits), or, with wait=False and nothing done yet,
    the run does nothing and says so. Each day is a recomputation, never an
    increment, so a day rolled up twice is counted once; an interrupted run
    keeps every day it committed.
    """
    result = RollupResult()
    with db.connect(conninfo) as conn:
        db.require_primary(conn, "rollup")
        days = pick_days(conn)
        result.time_zone = today_and_zone(conn)[1]
        with track(days) as tracked:
            for day in tracked:
                pause = 0.05
                while True:
                    # its own transaction: a run killed mid-day leaves nothing of that day
                    with conn.transaction():
                        rows = conn.execute("select chatdesk.try_rollup_operator_stats(%s)", (day,)).fetchone()[0]
                    if rows is not None:
                        break
                    if not wait and not result.days:
                        result.skipped = True
                        return result
                    time.sleep(pause)
                    pause = min(pause * 2, 1.0)
                result.days.append({"date": day.isoformat(), "rows": rows})
                on_day(day, rows)
    return result
