"""The runner's pure logic, without a database: durations, the rollup's day selection, the scheduler's slots.

Fast on purpose: mutation testing of the Python (docs/testing.md) runs these for every mutant.
"""

from __future__ import annotations

import time
from datetime import date, timedelta

import pytest
from chatdesk import durations
from chatdesk.errors import BadRequest
from chatdesk.rollup import DaySelection, date_range
from chatdesk.schedule import MAX_BACKOFF, Job, Scheduler


@pytest.mark.parametrize("text, seconds", [
    ("90s", 90), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("2d", 172800), (" 10M ", 600), ("1d1h1m1s", 90061),
])
def test_durations_parse(text, seconds):
    assert durations.parse(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "  ", "soon", "5", "5x", "-5m", "0s", "0m0s", "5m soon", "m5"])
def test_durations_refuse(text):
    with pytest.raises(ValueError):
        durations.parse(text)


@pytest.mark.parametrize("seconds, text", [
    (0, "0s"), (59, "59s"), (119, "119s"), (120, "2m"), (121, "2m01s"), (3599, "59m59s"),
    (3600, "1h00m"), (5400, "1h30m"), (90061, "25h01m"), (172799, "47h59m"), (172800, "2d 0h"),
    (6379 * 3600 + 21 * 60, "265d 19h"),
])
def test_durations_human(seconds, text):
    assert durations.human(timedelta(seconds=seconds)) == text


def test_durations_human_of_nothing():
    assert durations.human(None) == "-"


def test_date_range():
    assert date_range(date(2026, 2, 27), date(2026, 3, 1)) == [date(2026, 2, 27), date(2026, 2, 28), date(2026, 3, 1)]
    assert date_range(date(2026, 3, 1), date(2026, 3, 1)) == [date(2026, 3, 1)]
    with pytest.raises(BadRequest, match="after the last day"):
        date_range(date(2026, 3, 2), date(2026, 3, 1))


@pytest.mark.parametrize("kwargs, message", [
    ({"day": date(2026, 3, 1), "start": date(2026, 3, 1)}, "not one day and a range"),
    ({"day": date(2026, 3, 1), "catch_up": True}, "not one day and catch-up"),
    ({"start": date(2026, 3, 1), "catch_up": True}, "not a range and catch-up"),
    ({"end": date(2026, 3, 1)}, "a range needs its first day"),
    ({"start": date(2026, 3, 2), "end": date(2026, 3, 1)}, "after the last day"),
])
def test_day_selection_refuses_what_does_not_make_sense(kwargs, message):
    with pytest.raises(BadRequest, match=message):
        DaySelection(**kwargs)


def test_day_selection_of_one_day_needs_no_database():
    assert DaySelection(day=date(2026, 3, 1)).days(None) == [date(2026, 3, 1)]


class Clock:
    def __init__(self, t: float):
        self.t = t

    def now(self) -> float:
        return self.t


def scheduler_with(jobs, clock) -> Scheduler:
    lines = []
    s = Scheduler(None, now=clock.now, log=lines.append)
    s.jobs = jobs
    s.lines = lines
    return s


def test_scheduler_slots_never_drift_and_skip_what_was_missed():
    clock, runs = Clock(1000.0), []

    def job(name, takes):
        def run():
            runs.append((name, clock.t))
            clock.t += takes
            return "ok"
        return run

    s = scheduler_with([Job("a", 60, job("a", 7)), Job("b", 300, job("b", 1))], clock)
    s.start()
    for _ in range(20):
        s.run_due()
        clock.t += s.wait_seconds()
    a = [t for n, t in runs if n == "a"]
    b = [t for n, t in runs if n == "b"]
    assert [t - 1000 for t in a[:5]] == [0, 60, 120, 180, 240]  # 7 s per run, still on the minute
    assert [t - 1000 for t in b[:3]] == [7, 307, 607]
    # a run far longer than its interval: the next slot is the first one after now, not a burst of missed ones
    clock2, runs2 = Clock(0.0), []

    def slow():
        runs2.append(clock2.t)
        clock2.t += 150
        return "ok"

    s2 = scheduler_with([Job("slow", 60, slow)], clock2)
    s2.start()
    for _ in range(4):
        s2.run_due()
        clock2.t = max(clock2.t, s2.jobs[0].next_at)
    assert runs2 == [0, 180, 360, 540]
    assert s2.wait_seconds() == 0  # its slot has come: no wait


def test_scheduler_backs_off_and_recovers():
    clock, outcomes = Clock(0.0), iter([False] * 9 + [True, True])

    def flaky():
        if not next(outcomes):
            raise BadRequest("database away")
        return "ok"

    s = scheduler_with([Job("j", 60, flaky)], clock)
    s.start()
    waits = []
    for _ in range(11):
        s.run_due()
        waits.append(s.jobs[0].next_at - clock.t)
        clock.t = s.jobs[0].next_at
    assert waits[:9] == [1, 2, 4, 8, 16, 32, MAX_BACKOFF, MAX_BACKOFF, MAX_BACKOFF]
    assert waits[9] == 60 and s.jobs[0].failures == 0  # back on its interval once it succeeds
    assert sum("failed (database away); retrying in" in line for line in s.lines) == 9


def test_scheduler_stops_between_jobs():
    clock, ran = Clock(0.0), []
    s = scheduler_with([], clock)

    def first():
        ran.append("first")
        s.stop.set()
        return "ok"

    s.jobs = [Job("first", 60, first), Job("second", 60, lambda: ran.append("second") or "ok")]
    s.start()
    s.run_due()
    assert ran == ["first"]


def test_duration_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match="is not a duration like 90s, 5m, 1h or 1h30m"):
        durations.parse("soon")
    with pytest.raises(ValueError, match="must be longer than zero"):
        durations.parse("0m")


def test_day_selection_messages_and_ranges_of_one_day():
    with pytest.raises(BadRequest, match="^a range needs its first day$"):
        DaySelection(end=date(2026, 3, 1))
    assert DaySelection(start=date(2026, 3, 1), end=date(2026, 3, 1)).start == date(2026, 3, 1)  # one day is a range
    assert DaySelection(start=date(2026, 3, 1)).end is None  # open-ended: through today


class FakeConn:
    """Answers the two queries DaySelection asks, in order: (today, zone), then the catch-up start."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.asked = []

    def execute(self, sql, params=None):
        self.asked.append((sql, params))
        answer = self.answers.pop(0)

        class Result:
            def fetchone(self):
                return answer
        return Result()


TODAY = date(2026, 3, 10)


def test_day_selection_days():
    assert DaySelection().days(FakeConn((TODAY, "UTC"))) == [date(2026, 3, 9), TODAY]
    assert DaySelection(start=date(2026, 3, 8)).days(FakeConn((TODAY, "UTC"))) == [date(2026, 3, 8), date(2026, 3, 9), TODAY]
    assert DaySelection(start=date(2026, 3, 1), end=date(2026, 3, 2)).days(FakeConn((TODAY, "UTC"))) == [
        date(2026, 3, 1), date(2026, 3, 2)]
    conn = FakeConn((TODAY, "Europe/Berlin"), (date(2026, 3, 8),))
    assert DaySelection(catch_up=True).days(conn) == [date(2026, 3, 8), date(2026, 3, 9), TODAY]
    assert conn.asked[1][1] == ("Europe/Berlin",)  # the first message's day counted in stats_time_zone
    assert DaySelection(catch_up=True).days(FakeConn((TODAY, "UTC"), (None,))) == [TODAY]  # nothing yet
    assert DaySelection(catch_up=True).days(FakeConn((TODAY, "UTC"), (date(2026, 3, 12),))) == [TODAY]


def test_scheduler_jobs_and_their_intervals():
    s = Scheduler(None, idle_every=30, rollup_every=600)
    assert [(j.name, j.interval) for j in s.jobs] == [
        ("release-idle", 30), ("rollup", 600), ("prune-feed", 600), ("sample-queue", 30)]


def test_scheduler_log_lines():
    clock = Clock(86400.0 + 3661)
    s = scheduler_with([], clock)
    assert s._stamp() == "1970-01-02T01:01:01Z"

    def pause():
        time.sleep(0.03)
        return "done"

    s.jobs = [Job("later", 60, lambda: "no", next_at=10**9), Job("now", 60, pause)]
    assert s.wait_seconds() == 0  # a job is due now
    s.run_due()  # the first job is not due: the second runs all the same
    (line,) = s.lines
    ms = int(line.rsplit("(", 1)[1].split(" ms")[0])
    assert line.startswith("1970-01-02T01:01:01Z now: done (") and 20 <= ms < 1000


def test_a_failing_job_does_not_keep_the_next_from_running():
    clock, ran = Clock(0.0), []

    def broken():
        raise BadRequest("no")

    s = scheduler_with([Job("broken", 60, broken), Job("fine", 60, lambda: ran.append(1) or "ok")], clock)
    s.start()
    s.run_due()
    assert ran == [1]
