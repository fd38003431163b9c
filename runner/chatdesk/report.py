"""`chatdesk report`: what the rollup wrote, over a range of days, as a table, CSV, JSON or one HTML file.

It reads only the rollup's tables (operator_daily_stats, operator_daily_times,
hourly_load) and the queue samples, so a month's report costs a few thousand
rows whatever the number of messages behind it. Days the rollup has not seen
are listed in `days_not_rolled_up` rather than guessed at.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import date, timedelta
from uuid import UUID

import psycopg

from chatdesk.errors import BadRequest

METRICS = ("reply", "first_response", "resolution")
CLOCKS = ("wall", "business")
COUNTS = ("messages_sent", "chats_handled", "chats_closed", "chats_released", "chats_idle_released")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MAX_RANGE_DAYS = 366
QUEUE_POINTS = 1000  # queue depth is reduced to at most this many points (the max of each slice)


@dataclass(frozen=True)
class Range:
    first: date
    last: date
    operator_id: UUID | None = None

    def __post_init__(self):
        if self.first > self.last:
            raise BadRequest(f"the first day {self.first} is after the last day {self.last}")
        if (self.last - self.first).days + 1 > MAX_RANGE_DAYS:
            raise BadRequest(f"a report covers at most {MAX_RANGE_DAYS} days, not {(self.last - self.first).days + 1}")


def _num(value):
    return None if value is None else float(value)


def build(conn: psycopg.Connection, span: Range) -> dict:
    """The report's data: plain JSON-ready values."""
    zone, buckets = conn.execute("select chatdesk.stats_time_zone(), chatdesk.time_buckets()").fetchone()
    if span.operator_id and not conn.execute("select 1 from chatdesk.operators where id = %s",
                                             (span.operator_id,)).fetchone():
        raise BadRequest(f"operator {span.operator_id} does not exist")
    window = (span.first, span.last, span.operator_id)
    names = dict(conn.execute("select id, name from chatdesk.operators").fetchall())

    daily: dict[tuple, dict] = {}
    for row in conn.execute(
            f"""select stat_date, operator_id, {', '.join(COUNTS)}
                  from chatdesk.operator_daily_stats
                 where stat_date between %s and %s and (%s::uuid is null or operator_id = %s::uuid)
                 order by stat_date, operator_id""", (*window, span.operator_id)):
        day, op, *counts = row
        daily[(day, op)] = {"date": day.isoformat(), "operator_id": str(op), "operator": names.get(op),
                            **dict(zip(COUNTS, counts))}

    times: dict[tuple, dict] = {}
    for day, op, metric, clock, n, avg, p50, p90, histogram in conn.execute(
            """select stat_date, operator_id, metric, clock, n, avg_seconds, p50_seconds, p90_seconds, histogram
                 from chatdesk.operator_daily_times
                where stat_date between %s and %s and (%s::uuid is null or operator_id = %s::uuid)""",
            (*window, span.operator_id)):
        times[(day, op, metric, clock)] = {"n": n, "avg": _num(avg), "p50": _num(p50), "p90": _num(p90),
                                           "histogram": list(histogram)}

    # Per day and operator: counts, then each metric's n/avg/p50/p90 (flat, for CSV).
    for (day, op), row in daily.items():
        for metric in METRICS:
            for clock in CLOCKS:
                t = times.get((day, op, metric, clock), {})
                for part in ("n", "avg", "p50", "p90"):
                    row[f"{metric}_{clock}_{part}"] = t.get(part, 0 if part == "n" else None)

    # Over the whole range, per operator: sums, and exact means and histograms
    # (percentiles of a range are not sums of daily percentiles; they are per day).
    operators: dict = {}
    for (day, op), row in daily.items():
        total = operators.setdefault(op, {"operator_id": str(op), "operator": names.get(op),
                                          **{c: 0 for c in COUNTS}, "times": {}})
        for c in COUNTS:
            total[c] += row[c]
    for (day, op, metric, clock), t in times.items():
        total = operators.get(op)
        if total is None:
            continue
        agg = total["times"].setdefault(metric, {}).setdefault(
            clock, {"n": 0, "sum": 0.0, "histogram": [0] * (len(buckets) + 1)})
        agg["n"] += t["n"]
        agg["sum"] += (t["avg"] or 0.0) * t["n"]
        agg["histogram"] = [a + b for a, b in zip(agg["histogram"], t["histogram"])]
    for total in operators.values():
        for metric in METRICS:
            for clock in CLOCKS:
                agg = total["times"].setdefault(metric, {}).setdefault(
                    clock, {"n": 0, "sum": 0.0, "histogram": [0] * (len(buckets) + 1)})
                agg["avg"] = round(agg.pop("sum") / agg["n"], 3) if agg["n"] else None

    load = [{"weekday": w, "hour": h, "messages": m, "queue_entries": q} for w, h, m, q in conn.execute(
        """select extract(isodow from hour at time zone %(zone)s)::int, extract(hour from hour at time zone %(zone)s)::int,
                  sum(messages)::int, sum(queue_entries)::int
             from chatdesk.hourly_load
            where hour >= %(first)s::timestamp at time zone %(zone)s
              and hour < (%(last)s::date + 1)::timestamp at time zone %(zone)s
            group by 1, 2 order by 1, 2""", {"zone": zone, "first": span.first, "last": span.last})]

    # "at": local time in stats_time_zone, like the days
    queue = [{"at": at.isoformat(), "waiting": w, "assigned": a} for at, w, a in conn.execute(
        """with s as (
               select sampled_at, waiting, assigned,
                      ntile(%(points)s) over (order by sampled_at) as slice
                 from chatdesk.queue_samples
                where sampled_at >= %(first)s::timestamp at time zone %(zone)s
                  and sampled_at < (%(last)s::date + 1)::timestamp at time zone %(zone)s)
           select min(sampled_at) at time zone %(zone)s, max(waiting), max(assigned) from s group by slice order by 1""",
        {"zone": zone, "first": span.first, "last": span.last, "points": QUEUE_POINTS})]

    rolled = {d for (d,) in conn.execute(
        "select distinct stat_date from chatdesk.operator_daily_stats where stat_date between %s and %s",
        (span.first, span.last))}
    all_days = [span.first + timedelta(days=i) for i in range((span.last - span.first).days + 1)]
    hours = [{"weekday": w, "opens": o.strftime("%H:%M"), "closes": c.strftime("%H:%M")} for w, o, c in conn.execute(
        "select weekday, opens, closes from chatdesk.business_hours order by weekday, opens")]
    holidays = [{"date": d.isoformat(), "name": n} for d, n in conn.execute(
        "select day, name from chatdesk.holidays where day between %s and %s order by day", (span.first, span.last))]

    return {
        "from": span.first.isoformat(), "to": span.last.isoformat(), "time_zone": zone,
        "operator_id": str(span.operator_id) if span.operator_id else None,
        "business_hours": hours, "holidays": holidays,
        "buckets": [float(b) for b in buckets],
        "days_not_rolled_up": [d.isoformat() for d in all_days if d not in rolled],
        "operators": sorted(operators.values(), key=lambda o: (o["operator"] or "", o["operator_id"])),
        "daily": list(daily.values()),
        "load": load,
        "queue_depth": queue,
    }


# -- renderings ----------------------------------------------------------------

def seconds_text(value) -> str:
    """A duration for people: 42s, 3m 05s, 2h 10m, 1d 3h."""
    if value is None:
        return "-"
    s = int(round(value))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def to_json(report: dict) -> str:
    return json.dumps(report, indent=2)


def to_csv(report: dict) -> str:
    """One row per day and operator, every figure in its own column."""
    out = io.StringIO()
    columns = ["date", "operator_id", "operator", *COUNTS] + [
        f"{m}_{c}_{p}" for m in METRICS for c in CLOCKS for p in ("n", "avg", "p50", "p90")]
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in report["daily"]:
        writer.writerow(row)
    return out.getvalue()


def to_table(report: dict) -> str:
    """The range per operator: counts, and average times (wall clock / business time)."""
    lines = [f"chatdesk report {report['from']} to {report['to']} ({report['time_zone']})"]
    if report["days_not_rolled_up"]:
        lines.append(f"not rolled up yet: {', '.join(report['days_not_rolled_up'])} (run chatdesk rollup)")
    business = bool(report["business_hours"])
    head = ["operator", "sent", "chats", "closed", "released", "idle", "first resp avg", "reply avg",
            "resolution avg"]
    rows = []
    for op in report["operators"]:
        def avg(metric):
            t = op["times"][metric]
            text = seconds_text(t["wall"]["avg"])
            return f"{text} / {seconds_text(t['business']['avg'])}" if business else text
        rows.append([op["operator"] or op["operator_id"], *(str(op[c]) for c in COUNTS),
                     avg("first_response"), avg("reply"), avg("resolution")])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    if business:
        lines.append("times: wall clock / business hours")
    if not rows:
        lines.append("(no stats in this range)")
    return "\n".join(lines)


def render(report: dict, fmt: str) -> str:
    if fmt == "html":
        from chatdesk import report_html
        return report_html.render(report)
    return {"json": to_json, "csv": to_csv, "table": to_table}[fmt](report)
