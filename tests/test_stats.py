"""Daily stats: an independent Python computation, the rollup's plan, the CLI and the scheduler."""

from __future__ import annotations

import json
import math
import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import psycopg
import pytest

from chatdesk import db
from chatdesk.schedule import Scheduler
from conftest import ROOT
from helpers import assert_one_error_line, chatdesk_backends, run_cli
from test_chat_concurrency import connect

ZONE = "Europe/Berlin"
START = datetime(2026, 3, 27, 20, 0, tzinfo=timezone.utc)  # across the EU spring-forward night (Mar 29)


def generate_traffic(conn, seed=7, steps=900):
    """Random users, claims and answers (fresh, stale and no seen ids), on a pinned, advancing clock."""
    rng = random.Random(seed)
    conn.execute("update settings set value = %s where key = 'stats_time_zone'", (ZONE,))
    ops = [conn.execute("select create_operator(%s, 3)", (f"op{i}",)).fetchone()[0] for i in range(5)]
    conn.execute("select set_operator_active(%s, false)", (ops[4],))  # inactive, never writes
    user = conn.execute("select create_real_user('u')").fetchone()[0]
    chats = [conn.execute("select start_chat(%s)", (user,)).fetchone()[0] for _ in range(25)]
    now = START
    for _ in range(steps):
        now += timedelta(seconds=rng.randrange(1, 900))
        conn.execute("select set_config('chatdesk.clock', %s, false)", (now.isoformat(),))
        roll = rng.random()
        if roll < 0.45:
            conn.execute("select send_user_message(%s, 'q')", (rng.choice(chats),))
        elif roll < 0.6:
            try:
                conn.execute("select claim_next_chat(%s)", (rng.choice(ops[:4]),))
            except psycopg.Error as error:
                assert error.sqlstate == "CD004"
        else:
            row = conn.execute("""select id, assigned_operator_id from chats where chat_state = 'assigned'
                                  order by random() limit 1""").fetchone()
            if row:
                seen = conn.execute("select min(id) from messages where chat_id = %s", (row[0],)).fetchone()[0] \
                    if rng.random() < 0.3 else None
                conn.execute("select * from send_operator_message(%s, %s, 'a', null, %s)", (row[0], row[1], seen))
    conn.execute("reset chatdesk.clock")
    return ops, now


def percentile_cont(values, fraction):
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def q3(value) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.001"), rounding=ROUND_HALF_UP)


def expected_stats(conn, ops):
    """The contract's definition, computed here from the raw messages, independently of the SQL."""
    tz = ZoneInfo(ZONE)
    per_day = defaultdict(lambda: {"sent": 0, "chats": set(), "replies": []})
    run_start = {}
    for chat, sender, op, created in conn.execute(
            "select chat_id, sender_type, handled_by_operator_id, created_at from messages order by id"):
        if sender == "real_user":
            run_start.setdefault(chat, created)
        elif sender == "operator":
            day = per_day[(op, created.astimezone(tz).date())]
            day["sent"] += 1
            day["chats"].add(chat)
            if chat in run_start:
                day["replies"].append(Decimal(str((created - run_start.pop(chat)).total_seconds())))
    return per_day


def test_rollup_matches_an_independent_computation(conn):
    ops, end = generate_traffic(conn)
    expected = expected_stats(conn, ops)
    days = sorted({d for _, d in expected})
    assert len(days) >= 4 and date(2026, 3, 29) in days, days
    for day in days:
        conn.execute("select rollup_operator_stats(%s)", (day,))
    rows = conn.execute("""select operator_id, stat_date, messages_sent, chats_handled, replies,
                                  reply_time_avg_seconds, reply_time_p50_seconds, reply_time_p90_seconds
                             from operator_daily_stats""").fetchall()
    got = {(r[0], r[1]): r[2:] for r in rows}
    active = ops[:4]
    assert set(got) == {(op, d) for op in active for d in days}, "active operators, every day; never the inactive one"
    replies_seen = 0
    for (op, day), values in got.items():
        e = expected.get((op, day), {"sent": 0, "chats": set(), "replies": []})
        replies = e["replies"]
        replies_seen += len(replies)
        want = (e["sent"], len(e["chats"]), len(replies),
                q3(sum(replies) / len(replies)) if replies else None,
                q3(percentile_cont([float(r) for r in replies], 0.5)) if replies else None,
                q3(percentile_cont([float(r) for r in replies], 0.9)) if replies else None)
        assert values == want, (op, day)
    assert replies_seen > 50


def test_the_rollup_reads_only_the_days_messages(conn):
    """auto_explain shows the plan of the statement the rollup really runs."""
    # 30 days of history, 2,000 operator messages a day. Loaded raw (rules off)
    # because only the shape of the data matters to the planner.
    ops = [conn.execute("select create_operator(%s)", (f"op{i}",)).fetchone()[0] for i in range(20)]
    user = conn.execute("select create_real_user('u')").fetchone()[0]
    chat = conn.execute("select start_chat(%s)", (user,)).fetchone()[0]
    conn.execute("alter table messages disable trigger user")
    conn.execute("""insert into messages (id, chat_id, sender_type, handled_by_operator_id, body, created_at)
                    select nextval('messages_id_seq'), %s, 'operator', (%s::uuid[])[1 + n %% 20], 'x',
                           '2026-03-01'::timestamptz + n * interval '43 seconds'
                      from generate_series(1, 60000) n""", (chat, ops))
    conn.execute("alter table messages enable trigger user")
    conn.execute("analyze")
    plans = []
    conn.add_notice_handler(lambda notice: plans.append(notice.message_primary))
    conn.execute("load 'auto_explain'")
    for setting in ("log_min_duration = 0", "log_nested_statements = on", "log_analyze = off"):
        conn.execute(f"set auto_explain.{setting}")
    conn.execute("set client_min_messages = log")
    conn.execute("select rollup_operator_stats('2026-03-15')")
    conn.execute("reset client_min_messages")
    rollup_plan = next(p for p in plans if "operator_daily_stats" in p and "Insert" in p)
    assert "messages_operator_day_idx" in rollup_plan, rollup_plan
    assert "Seq Scan on messages" not in rollup_plan, rollup_plan


def test_default_dates_are_yesterday_and_today_in_the_stats_zone(db_url):
    with connect(db_url) as conn:
        conn.execute("update settings set value = 'Pacific/Kiritimati' where key = 'stats_time_zone'")  # UTC+14
    # 12:00 UTC on Mar 1 is already Mar 2 on Kiritimati
    env = {"PGOPTIONS": "-c chatdesk.clock=2026-03-01T12:00:00Z"}
    result = run_cli("--database-url", db_url, "rollup", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert [d["date"] for d in json.loads(result.stdout)["days"]] == ["2026-03-01", "2026-03-02"]


def test_catch_up_rolls_every_day_since_the_last(db_url):
    with connect(db_url) as conn:
        conn.execute("select create_operator('a')")
    env = {"PGOPTIONS": "-c chatdesk.clock=2026-03-05T12:00:00Z"}
    assert run_cli("--database-url", db_url, "rollup", "--date", "2026-03-02", env=env).returncode == 0
    result = run_cli("--database-url", db_url, "rollup", "--catch-up", "--json", env=env)
    assert [d["date"] for d in json.loads(result.stdout)["days"]] == [
        "2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05"]


@pytest.mark.parametrize("args, message", [
    (["--date", "2026-02-30"], "Invalid value for '--date'"),
    (["--from", "2026-03-05", "--to", "2026-03-01"], "--from 2026-03-05 is after --to 2026-03-01"),
    (["--date", "2026-03-01", "--catch-up"], "use one of"),
])
def test_rollup_bad_dates(db_url, args, message):
    result = run_cli("--database-url", db_url, "rollup", *args)
    assert_one_error_line(result)
    assert message in result.stderr
    with connect(db_url) as conn:
        assert conn.execute("select count(*) from operator_daily_stats").fetchone()[0] == 0


def test_rollup_with_a_broken_time_zone_setting_writes_nothing(db_url):
    with connect(db_url) as conn:
        conn.execute("select create_operator('a')")
        # only by going around the settings trigger can a bad zone get in
        conn.execute("alter table settings disable trigger settings_100_check")
        conn.execute("update settings set value = 'Mars/Base' where key = 'stats_time_zone'")
    result = run_cli("--database-url", db_url, "rollup")
    assert_one_error_line(result)
    assert 'time zone "Mars/Base" not recognized' in result.stderr
    with connect(db_url) as conn:
        assert conn.execute("select count(*) from operator_daily_stats").fetchone()[0] == 0


def test_overlapping_rollups_wait_or_skip(db_url):
    with connect(db_url) as conn:
        conn.execute("select create_operator('a')")
    holder = psycopg.connect(db_url, autocommit=True)
    holder.execute("select pg_advisory_lock(%s)", (db.LOCK_ROLLUP,))
    skipped = run_cli("--database-url", db_url, "rollup", "--no-wait")
    assert skipped.returncode == 0 and "Another rollup holds the lock" in skipped.stdout
    waiting = subprocess.Popen([sys.executable, "-m", "chatdesk", "--database-url", db_url, "rollup", "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    chatdesk_backends(db_url, "wait_event = 'advisory'")  # the second rollup waits for the lock
    with connect(db_url) as watcher:
        assert watcher.execute("select count(*) from operator_daily_stats").fetchone()[0] == 0
    holder.close()  # releases the lock
    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err
    assert len(json.loads(out)["days"]) == 2


def test_two_rollups_at_once_count_nothing_twice(db_url):
    with connect(db_url) as conn:
        generate_traffic(conn, steps=300)
    args = ["--database-url", db_url, "rollup", "--from", "2026-03-27", "--to", "2026-03-31", "--json"]
    procs = [subprocess.Popen([sys.executable, "-m", "chatdesk", *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    with connect(db_url) as conn:
        total = conn.execute("select sum(messages_sent) from operator_daily_stats").fetchone()[0]
        assert total == conn.execute("select count(*) from messages where sender_type = 'operator'").fetchone()[0]


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
