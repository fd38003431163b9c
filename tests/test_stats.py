"""Daily stats: an independent Python computation, the rollup's plan, the CLI and the scheduler."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import defaultdict
from datetime import date
from decimal import Decimal
from zoneinfo import ZoneInfo

import psycopg
import pytest
from conftest import ROOT
from helpers import (
    ZONE,
    assert_one_error_line,
    chatdesk_backends,
    connect,
    generate_traffic,
    percentile_cont,
    q3,
    run_cli,
)


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
    conn.execute("update chatdesk.settings set value = '100' where key = 'max_open_chats_per_user'")  # one user, many chats
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
    (["--from", "2026-03-05", "--to", "2026-03-01"], "the first day 2026-03-05 is after the last day 2026-03-01"),
    (["--date", "2026-03-01", "--catch-up"], "choose one of one day, a range or catch-up"),
    (["--to", "2026-03-01"], "a range needs its first day"),
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
    # another rollup's transaction, holding the lock row
    holder = psycopg.connect(db_url)
    holder.execute("select 1 from chatdesk.runner_locks where name = 'rollup' for update")
    skipped = run_cli("--database-url", db_url, "rollup", "--no-wait")
    assert skipped.returncode == 0 and "Another rollup holds the lock" in skipped.stdout
    waiting = subprocess.Popen([sys.executable, "-m", "chatdesk", "--database-url", db_url, "rollup", "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    chatdesk_backends(db_url)  # the second rollup is connected, and polls for the lock
    time.sleep(1.0)
    assert waiting.poll() is None, "the second rollup did not wait"
    with connect(db_url) as watcher:
        assert watcher.execute("select count(*) from operator_daily_stats").fetchone()[0] == 0
    holder.commit()  # releases the lock
    holder.close()
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
