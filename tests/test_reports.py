"""Reports: every metric against an independent computation, `chatdesk report`, and the HTML in a real browser."""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections import defaultdict
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from conftest import ROOT
from helpers import (
    ZONE,
    assert_one_error_line,
    generate_traffic,
    percentile_cont,
    q3,
    run_cli,
)

# Berlin, across the spring-forward night of 2026-03-29 (02:00 -> 03:00):
# split weekday shifts, a Saturday window that crosses midnight, an
# overlapping Sunday window over the missing hour, and a holiday Monday.
HOURS = [(d, "08:00", "12:00") for d in range(1, 6)] + [(d, "13:00", "17:00") for d in range(1, 6)] + [
    (6, "22:00", "01:30"), (7, "01:00", "04:00")]
HOLIDAY = date(2026, 3, 30)
BOUNDS = [10, 30, 60, 120, 300, 600, 1800, 3600, 14400, 86400]


def business_seconds(start: datetime, end: datetime) -> float:
    """Business time from start to end, worked out here with zoneinfo, not by the SQL."""
    tz = ZoneInfo(ZONE)
    windows = []
    day = start.astimezone(tz).date() - timedelta(days=1)
    while day <= end.astimezone(tz).date():
        if day != HOLIDAY:
            for weekday, opens, closes in HOURS:
                if weekday == day.isoweekday():
                    o, c = time.fromisoformat(opens), time.fromisoformat(closes)
                    # in UTC: Python subtracts two times of one zone as wall clocks
                    w0 = datetime.combine(day, o, tz).astimezone(timezone.utc)
                    w1 = datetime.combine(day + timedelta(days=1 if c <= o else 0), c, tz).astimezone(timezone.utc)
                    windows.append((w0, w1))
        day += timedelta(days=1)
    merged = []
    for w0, w1 in sorted(windows):
        if merged and w0 <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], w1))
        else:
            merged.append((w0, w1))
    return sum(max(0.0, (min(end, w1) - max(start, w0)).total_seconds()) for w0, w1 in merged)


def histogram(values) -> list[int]:
    counts = [0] * (len(BOUNDS) + 1)
    for v in values:
        counts[sum(1 for b in BOUNDS if v >= b)] += 1
    return counts


def expected_reports(conn):
    """The contract's definitions, from the raw messages and chat_events, in Python."""
    tz = ZoneInfo(ZONE)
    samples = []  # (operator, metric, local day of the end, start, end)
    items = [(created, 0, mid, chat, sender, op) for mid, chat, sender, op, created in conn.execute(
        "select id, chat_id, sender_type, handled_by_operator_id, created_at from messages")]
    items += [(created, 1, eid, chat, (frm, to, reason), op) for eid, chat, frm, to, op, reason, created in conn.execute(
        "select id, chat_id, from_state, to_state, operator_id, reason, created_at from chat_events")]
    # per chat, in time order; a message and the state change it causes share a
    # timestamp, and the message comes first
    items.sort(key=lambda i: (i[3], i[0], i[1], i[2]))
    run_start, conversation, answered, holder = {}, {}, {}, {}
    moves = defaultdict(int)  # (operator, day, what) -> count
    load = defaultdict(lambda: [0, 0, 0, 0])  # local hour start (UTC) -> messages, user, operator, queue entries
    for created, kind, _, chat, what, op in items:
        hour = created.astimezone(tz).replace(minute=0, second=0, microsecond=0)
        if kind == 0:
            load[hour][0] += 1
            load[hour][1 if what == "real_user" else 2] += what in ("real_user", "operator")
            if what == "real_user":
                run_start.setdefault(chat, created)
            elif what == "operator":
                if chat in run_start:
                    started = run_start.pop(chat)
                    samples.append((op, "reply", started, created))
                if chat in conversation and chat not in answered:
                    answered[chat] = True
                    samples.append((op, "first_response", conversation[chat], created))
            continue
        frm, to, reason = what
        if reason == "user_message":
            load[hour][3] += 1
        if op is not None and chat in conversation:
            holder[chat] = op
        if to == "waiting_assignment" and chat not in conversation:
            conversation[chat], holder[chat] = created, None
        elif to == "closed" and chat in conversation:
            by = op if frm == "assigned" else holder[chat]
            started = conversation.pop(chat)
            answered.pop(chat, None)
            if by is not None:
                samples.append((by, "resolution", started, created))
                moves[(by, created.astimezone(tz).date(), "closed")] += 1
        if reason in ("release", "idle"):
            moves[(op, created.astimezone(tz).date(), reason)] += 1
    times = defaultdict(list)  # (operator, day, metric, clock) -> seconds
    for op, metric, started, ended in samples:
        day = ended.astimezone(tz).date()
        times[(op, day, metric, "wall")].append(max(0.0, (ended - started).total_seconds()))
        times[(op, day, metric, "business")].append(business_seconds(started, ended))
    return times, moves, load


def test_every_report_metric_matches_an_independent_computation(conn):
    conn.execute("insert into business_hours (weekday, opens, closes) select * from unnest(%s::int[], %s::time[], %s::time[])",
                 ([h[0] for h in HOURS], [h[1] for h in HOURS], [h[2] for h in HOURS]))
    conn.execute("insert into holidays (day, name) values (%s, 'Easter Monday, say')", (HOLIDAY,))
    generate_traffic(conn, steps=1100, lifecycle=True)
    times, moves, load = expected_reports(conn)
    days = sorted({k[1] for k in times})
    assert date(2026, 3, 29) in days and HOLIDAY in days, days
    for day in days:
        conn.execute("select rollup_operator_stats(%s)", (day,))

    got = {(r[0], r[1], r[2], r[3]): r[4:] for r in conn.execute(
        """select operator_id, stat_date, metric, clock, n, avg_seconds, p50_seconds, p90_seconds, histogram
             from operator_daily_times""")}
    assert set(got) == {k for k in times if k[1] in days}
    for key, values in times.items():
        want = (len(values), q3(sum(Decimal(str(v)) for v in values) / len(values)),
                q3(percentile_cont(values, 0.5)), q3(percentile_cont(values, 0.9)), histogram(values))
        n, avg, p50, p90, hist = got[key]
        assert (n, hist) == (want[0], want[4]), key
        # avg over Decimal seconds; the SQL's exact microseconds may round the third decimal differently
        for mine, theirs in zip((avg, p50, p90), want[1:4]):
            assert abs(mine - theirs) <= Decimal("0.001"), (key, mine, theirs)
    metrics = {(k[2], k[3]) for k in got}
    assert metrics == {(m, c) for m in ("reply", "first_response", "resolution") for c in ("wall", "business")}
    # business time is really less than wall time somewhere (nights, the holiday)
    assert any(got[(o, d, m, "business")][1] < got[(o, d, m, "wall")][1] for o, d, m, c in got if c == "business")

    counts = {(r[0], r[1]): r[2:] for r in conn.execute(
        "select operator_id, stat_date, chats_closed, chats_released, chats_idle_released from operator_daily_stats")}
    for (op, day), (closed, released, idle) in counts.items():
        assert (closed, released, idle) == (moves[(op, day, "closed")], moves[(op, day, "release")],
                                            moves[(op, day, "idle")]), (op, day)
    assert sum(c[0] for c in counts.values()) > 10 and sum(c[1] for c in counts.values()) > 5
    assert sum(c[2] for c in counts.values()) > 0

    hours = {r[0]: list(r[1:]) for r in conn.execute(
        "select hour, messages, real_user_messages, operator_messages, queue_entries from hourly_load")}
    tz = ZoneInfo(ZONE)
    for day in days:
        start = datetime.combine(day, time(0), tz)
        expected_hours = {h: v for h, v in load.items() if h.date() == day}
        day_rows = {h: v for h, v in hours.items() if h.astimezone(tz).date() == day}
        assert len(day_rows) == (23 if day == date(2026, 3, 29) else 24), day
        for h, v in day_rows.items():
            assert v == expected_hours.get(h.astimezone(tz), [0, 0, 0, 0]), (h, start)

    # the range's figures (chatdesk report): every sample of every day, each counted once
    from chatdesk import report as reports
    several = [k for k, v in times.items() if len(v) >= 2 and k[2] == "resolution"]
    assert several, "some operator resolved several chats on one day"
    summary = reports.build(conn, reports.Range(days[0], days[-1]))
    by_operator = {o["operator_id"]: o for o in summary["operators"]} if isinstance(summary["operators"], list) \
        else {str(k): v for k, v in summary["operators"].items()}
    for op in {k[0] for k in times}:
        for metric in ("reply", "first_response", "resolution"):
            for clock in ("wall", "business"):
                values = [v for k, vs in times.items() if k[0] == op and k[2] == metric and k[3] == clock for v in vs]
                shown = by_operator[str(op)]["times"][metric][clock]
                assert shown["n"] == len(values), (op, metric, clock)
                if values:
                    want = sum(Decimal(str(v)) for v in values) / len(values)
                    assert abs(Decimal(str(shown["avg"])) - want) <= Decimal("0.002"), (op, metric, clock, shown, want)
                    assert shown["histogram"] == histogram(values), (op, metric, clock)

    # a second rollup of a day writes the same rows
    before = conn.execute("select * from operator_daily_times order by 1, 2, 3, 4").fetchall()
    conn.execute("select rollup_operator_stats(%s)", (days[2],))
    assert conn.execute("select * from operator_daily_times order by 1, 2, 3, 4").fetchall() == before


@pytest.fixture
def reported(db_url):
    """A database with a few days of traffic, rolled up, queue samples included."""
    import psycopg
    with psycopg.connect(db_url, autocommit=True, options="-c search_path=chatdesk,public") as conn:
        conn.execute("insert into business_hours values (1, '09:00', '17:00'), (2, '09:00', '17:00'), "
                     "(3, '09:00', '17:00'), (4, '09:00', '17:00'), (5, '09:00', '17:00')")
        generate_traffic(conn, steps=500, lifecycle=True)
        for day in range(27, 31):
            conn.execute("select rollup_operator_stats(%s)", (date(2026, 3, day),))
        for minute in range(0, 3 * 24 * 60, 7):
            conn.execute("select set_config('chatdesk.clock', %s, false)",
                         ((datetime(2026, 3, 27, 12, tzinfo=ZoneInfo("UTC")) + timedelta(minutes=minute)).isoformat(),))
            conn.execute("select sample_queue()")
        conn.execute("reset chatdesk.clock")
    return db_url


def test_report_formats_agree(reported, tmp_path):
    args = ["--database-url", reported, "report", "--from", "2026-03-27", "--to", "2026-03-31"]
    as_json = run_cli(*args, "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["days_not_rolled_up"] == ["2026-03-31"]
    assert report["time_zone"] == ZONE and len(report["load"]) > 20 and len(report["queue_depth"]) > 100
    ops = report["operators"]
    assert len(ops) == 4 and all(o["messages_sent"] > 0 for o in ops)
    rows = list(csv.DictReader(io.StringIO(run_cli(*args, "--format", "csv").stdout)))
    assert len(rows) == len(report["daily"]) >= 16
    for op in ops:  # the CSV's days add up to the range's totals
        mine = [r for r in rows if r["operator_id"] == op["operator_id"]]
        assert sum(int(r["messages_sent"]) for r in mine) == op["messages_sent"]
        assert sum(int(r["reply_wall_n"]) for r in mine) == op["times"]["reply"]["wall"]["n"]
    table = run_cli(*args)
    assert table.returncode == 0 and "first resp avg" in table.stdout
    assert all(o["operator"] in table.stdout for o in ops)
    one = json.loads(run_cli(*args, "--format", "json", "--operator", ops[0]["operator_id"]).stdout)
    assert [o["operator_id"] for o in one["operators"]] == [ops[0]["operator_id"]]
    assert one["operators"][0] == ops[0]
    # a support lead knows names: the name, in any case, is the same operator
    by_name = json.loads(run_cli(*args, "--format", "json", "--operator", ops[0]["operator"].upper()).stdout)
    assert by_name == one

    out = tmp_path / "r.html"
    written = run_cli(*args, "--format", "html", "-o", str(out))
    assert written.returncode == 0 and f"Wrote {out}" in written.stderr
    page = out.read_text()
    assert "<script" not in page and "http://" not in page and "https://" not in page  # nothing to fetch


@pytest.mark.parametrize("args, message", [
    (["--from", "2026-03-02", "--to", "2026-03-01"], "after the last day"),
    (["--from", "2025-01-01", "--to", "2026-03-01"], "at most 366 days"),
    (["--from", "2026-03-01", "--to", "2026-03-02", "--operator", "00000000-0000-0000-0000-000000000001"],
     "operator 00000000-0000-0000-0000-000000000001 does not exist"),
    (["--from", "2026-03-01", "--to", "2026-03-02", "--operator", "nobody"], "no operator is named 'nobody'"),
    (["--from", "2026-03-01", "--to", "2026-03-02", "--operator", "Twin"], "2 operators are named 'Twin': Twin ("),
    (["--from", "2026-03-01", "--to", "2026-03-02", "-o", "/nonexistent/dir/r.html"], "cannot write /nonexistent/dir/r.html"),
    (["--from", "yesterday", "--to", "2026-03-02"], "Invalid value for '--from'"),
])
def test_report_bad_input_is_one_error_line(db_url, args, message):
    import psycopg
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("select chatdesk.create_operator('Twin'), chatdesk.create_operator('Twin')")
    result = run_cli("--database-url", db_url, "report", *args)
    assert_one_error_line(result)
    assert message in result.stderr


def test_the_html_report_renders_in_chromium(reported, tmp_path):
    """Debian's Chromium, driven by Playwright: every chart draws, nothing is fetched, nothing logs an error."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "make system-deps installs Debian's chromium"
    out = tmp_path / "report.html"
    result = run_cli("--database-url", reported, "report", "--from", "2026-03-27", "--to", "2026-03-30",
                     "--format", "html", "-o", str(out))
    assert result.returncode == 0, result.stderr
    problems, requests = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(out.as_uri())
        charts = page.evaluate("""() => [...document.querySelectorAll('figure[data-chart]')].map(f => {
            const svg = f.querySelector('svg').getBoundingClientRect();
            const marks = [...f.querySelectorAll('.mark')];
            return {name: f.dataset.chart, width: svg.width, height: svg.height, marks: marks.length,
                    drawn: marks.filter(m => { const b = m.getBoundingClientRect();
                                               return Number(m.dataset.value) > 0 && (b.width > 0 || b.height > 0); }).length};
        })""")
        strip = page.evaluate("""() => [...document.querySelectorAll('[data-chart=headline] div')]
                                     .map(d => [d.querySelector('span').textContent, d.querySelector('b').textContent,
                                                d.getBoundingClientRect().width])""")
        totals_row = page.evaluate("() => [...document.querySelectorAll('tr.total td')].map(td => td.textContent)")
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert not problems, problems
    assert requests == [out.as_uri()], requests
    names = {c["name"]: c for c in charts}
    assert set(names) == {"first-response", "reply", "operators", "load", "queue"}
    for c in charts:
        assert c["width"] > 200 and c["height"] > 100, c
        assert c["drawn"] > 0, c  # marks with data are visible, not zero-sized
    assert names["load"]["marks"] == 4 * 24  # the range's four weekdays (Fri to Mon), not seven
    assert names["operators"]["marks"] == 4 * 2
    assert [label for label, _, _ in strip] == ["conversations answered", "first response, median",
                                                 "first response, p90", "answered within 5 minutes",
                                                 "resolution, median"]
    assert all(width > 80 and value not in ("", "-") for _, value, width in strip), strip
    assert totals_row[0] == "total" and int(totals_row[1]) > 0
    assert shot.stat().st_size > 20_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if (ROOT / "docs").is_dir() and __import__("os").environ.get("CHATDESK_UPDATE_SCREENSHOT"):
        shutil.copy(shot, ROOT / "docs" / "report.png")


def test_the_headline_is_the_conversations_own_figures(reported):
    """The headline strip, computed again here from the conversations: median
    and p90 first response, the share within first_response_target, the
    median resolution; busiest operator first; one day titled as one day."""
    import psycopg
    with psycopg.connect(reported, autocommit=True) as conn:
        conn.execute("update chatdesk.settings set value = '20 minutes' where key = 'first_response_target'")
        first = [float(r[0]) for r in conn.execute(
            """select extract(epoch from first_response_at - queued_at) from chatdesk.conversations
                where first_response_at >= '2026-03-27'::timestamp at time zone %s
                  and first_response_at < '2026-03-31'::timestamp at time zone %s""", (ZONE, ZONE))]
        resolved = [float(r[0]) for r in conn.execute(
            """select extract(epoch from closed_at - queued_at) from chatdesk.conversations
                where closed_at >= '2026-03-27'::timestamp at time zone %s
                  and closed_at < '2026-03-31'::timestamp at time zone %s""", (ZONE, ZONE))]
    assert len(first) > 10 and len(resolved) > 3
    result = run_cli("--database-url", reported, "report", "--from", "2026-03-27", "--to", "2026-03-30", "--format", "json")
    report = json.loads(result.stdout)
    h = report["headline"]
    assert h["conversations_answered"] == len(first) and h["conversations_closed"] == len(resolved)
    assert h["first_response_p50"] == pytest.approx(percentile_cont(first, 0.5))
    assert h["first_response_p90"] == pytest.approx(percentile_cont(first, 0.9))
    assert h["answered_within_target"] == pytest.approx(sum(s <= 1200 for s in first) / len(first))
    assert h["first_response_target"] == "20 minutes"
    assert h["resolution_p50"] == pytest.approx(percentile_cont(resolved, 0.5))
    sent = [o["messages_sent"] for o in report["operators"]]
    assert sent == sorted(sent, reverse=True)
    table = run_cli("--database-url", reported, "report", "--from", "2026-03-28", "--to", "2026-03-28").stdout
    assert table.splitlines()[0].startswith("chatdesk report 2026-03-28 (") and " to " not in table.splitlines()[0]
    assert "conversations answered" in table.splitlines()[1]
    assert any(line.startswith("total ") for line in table.splitlines()), table
