"""`chatdesk rollup`: daily operator stats, one committed day at a time, one run at a time."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta

import click
import psycopg

from chatdesk import db


@dataclass
class RollupResult:
    days: list[dict] = field(default_factory=list)  # {"date": "YYYY-MM-DD", "rows": n}
    skipped: bool = False  # another run held the lock and we did not wait
    time_zone: str | None = None


def today_and_zone(conn: psycopg.Connection) -> tuple[date, str]:
    """Today in stats_time_zone (by chatdesk.clock()), and that zone."""
    return conn.execute("select chatdesk.stats_today(), chatdesk.stats_time_zone()").fetchone()


def default_days(conn: psycopg.Connection) -> list[date]:
    """Yesterday and today in stats_time_zone: a run just after midnight still closes the day that ended."""
    today, _ = today_and_zone(conn)
    return [today - timedelta(days=1), today]


def catch_up_days(conn: psycopg.Connection) -> list[date]:
    """From the last day rolled up (it may have been rolled up part-way) through today.

    With nothing rolled up yet: from the first message's day."""
    today, zone = today_and_zone(conn)
    start = conn.execute(
        """select coalesce((select max(stat_date) from chatdesk.operator_daily_stats),
                           (select (min(created_at) at time zone %s)::date from chatdesk.messages))""",
        (zone,),
    ).fetchone()[0]
    return date_range(min(start or today, today), today)


def date_range(start: date, end: date) -> list[date]:
    if start > end:
        raise click.UsageError(f"--from {start} is after --to {end}")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


@contextlib.contextmanager
def _progress(days: list[date], show: bool) -> Iterator:
    if show:
        with click.progressbar(days, label="Rolling up", show_pos=True, file=click.get_text_stream("stderr")) as bar:
            yield bar
    else:
        yield days


def rollup(
    conninfo: str | None,
    pick_days: Callable[[psycopg.Connection], list[date]],
    *,
    wait: bool = True,
    progress: bool = False,
    on_day: Callable[[date, int], None] = lambda d, n: None,
) -> RollupResult:
    """Roll up each day in its own transaction, holding the rollup advisory lock for the whole run.

    A second run waits for the first (or, with wait=False, does nothing and says
    so). Each day is a recomputation, never an increment, so a day rolled up
    twice is counted once; an interrupted run keeps every day it committed.
    """
    result = RollupResult()
    with db.connect(conninfo) as conn:
        with db.advisory_lock(conn, db.LOCK_ROLLUP, wait=wait) as got:
            if not got:
                result.skipped = True
                return result
            days = pick_days(conn)
            result.time_zone = today_and_zone(conn)[1]
            with _progress(days, progress and len(days) > 3) as bar:
                for day in bar:
                    with conn.transaction():
                        rows = conn.execute("select chatdesk.rollup_operator_stats(%s)", (day,)).fetchone()[0]
                    result.days.append({"date": day.isoformat(), "rows": rows})
                    on_day(day, rows)
    return result
