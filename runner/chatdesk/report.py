"""`chatdesk report`: what the rollup wrote, over a range of days, as a table, CSV, JSON or one HTML file.

It reads only the rollup's tables (operator_daily_stats, operator_daily_times,
hourly_load) and the queue samples, so a month's report costs a few thousand
rows whatever the number of messages behind it. Days the rollup has not seen
are listed in `days_not_rolled_up` rather than guessed at.
"""

from __future__ import annotations

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


def find_operator(conn: psycopg.Connection, name_or_id: str) -> UUID:
    """The operator a support lead names: its id, or its name (exactly, then
    ignoring case). A name that fits several is refused with the candidates."""
    try:
        wanted = UUID(name_or_id)
    except ValueError:
        wanted = None
    if wanted is not None:
        if not conn.execute("select 1 from chatdesk.operators where id = %s", (wanted,)).fetchone():
            raise BadRequest(f"operator {wanted} does not exist")
        return wanted
    found = conn.execute("select id, name from chatdesk.operators where name = %s order by name, id",
                         (name_or_id,)).fetchall() or conn.execute(
        "select id, name from chatdesk.operators where lower(name) = lower(%s) order by name, id", (name_or_id,)).fetchall()
    if not found:
        raise BadRequest(f"no operator is named {name_or_id!r}")
    if len(found) > 1:
        raise BadRequest(f"{len(found)} operators are named {name_or_id!r}: "
                         + ", ".join(f"{name} ({op})" for op, name in found) + "; pass the id")
    return found[0][0]


def _num(value):
    return None if value is None else float(value)


# Per day and operator, every figure in its own column (CSV, JSON): one row per
# operator_daily_stats row, its times pivoted beside it.
DAILY_SQL = f"""
    select s.stat_date, s.operator_id, o.name, {', '.join('s.' + c for c in COUNTS)},
           {', '.join(f"max(t.{part}) filter (where t.metric = '{m}' and t.clock = '{c}')"
                      for m in METRICS for c in CLOCKS for part in ('n', 'avg_seconds', 'p50_seconds', 'p90_seconds'))}
      from chatdesk.operator_daily_stats s
      join chatdesk.operators o on o.id = s.operator_id
      left join chatdesk.operator_daily_times t on t.operator_id = s.operator_id and t.stat_date = s.stat_date
     where s.stat_date between %(first)s and %(last)s and (%(op)s::uuid is null or s.operator_id = %(op)s::uuid)
     group by s.stat_date, s.operator_id, o.name, {', '.join('s.' + c for c in COUNTS)}
     order by s.stat_date, s.operator_id"""

# Over the range, per operator: sums, exact means, and summed histograms,
# added up by the server (a month of a thousand operators is 31,000 rows).
TOTALS_SQL = f"""
    select s.operator_id, o.name, {', '.join(f'sum(s.{c})::bigint' for c in COUNTS)}
      from chatdesk.operator_daily_stats s join chatdesk.operators o on o.id = s.operator_id
     where s.stat_date between %(first)s and %(last)s and (%(op)s::uuid is null or s.operator_id = %(op)s::uuid)
     group by s.operator_id, o.name"""
TIMES_SQL = """
    with t as (
        select operator_id, metric, clock, n, avg_seconds, histogram
          from chatdesk.operator_daily_times
         where stat_date between %(first)s and %(last)s and (%(op)s::uuid is null or operator_id = %(op)s::uuid)
    ), buckets as (
        select operator_id, metric, clock, array_agg(c order by i) as histogram
          from (select operator_id, metric, clock, i, sum(c)::int as c
                  from t, unnest(histogram) with ordinality u(c, i) group by 1, 2, 3, 4) x
         group by 1, 2, 3
    )
    select operator_id, metric, clock, sum(n)::bigint, round(sum(avg_seconds * n) / nullif(sum(n), 0), 3), b.histogram
      from t join buckets b using (operator_id, metric, clock)
     group by operator_id, metric, clock, b.histogram"""


# The headline a lead reads first, from the conversations themselves (their
# indexes on first_response_at and closed_at): conversations answered in the
# range, median and p90 first response, the share answered within
# first_response_target, and the median resolution. One operator: those it
# answered first, and those closed while it had them.
HEADLINE_SQL = """
    with span as (select %(first)s::timestamp at time zone %(zone)s as a,
                         (%(last)s::date + 1)::timestamp at time zone %(zone)s as b),
    answered as (select extract(epoch from c.first_response_at - c.queued_at) as s
                   from chatdesk.conversations c, span
                  where c.first_response_at >= span.a and c.first_response_at < span.b
                    and (%(op)s::uuid is null or c.first_response_operator_id = %(op)s::uuid)),
    resolved as (select extract(epoch from c.closed_at - c.queued_at) as s
                   from chatdesk.conversations c, span
                  where c.closed_at >= span.a and c.closed_at < span.b
                    and (%(op)s::uuid is null or c.closed_by_operator_id = %(op)s::uuid))
    select (select count(*) from answered),
           (select percentile_cont(0.5) within group (order by s) from answered),
           (select percentile_cont(0.9) within group (order by s) from answered),
           (select count(*) filter (where s <= extract(epoch from %(target)s::interval))::float / nullif(count(*), 0)
              from answered),
           (select count(*) from resolved),
           (select percentile_cont(0.5) within group (order by s) from resolved),
           extract(epoch from %(target)s::interval)"""


DAILY_COLUMNS = ["date", "operator_id", "operator", *COUNTS] + [
    f"{m}_{c}_{p}" for m in METRICS for c in CLOCKS for p in ("n", "avg", "p50", "p90")]


def daily_rows(conn: psycopg.Connection, args: dict):
    """Each day's row per operator, streamed from a server-side cursor (a month of
    a thousand operators is 31,000 rows: never all in memory at once)."""
    with conn.transaction(), conn.cursor(name="chatdesk_report_daily") as cursor:
        cursor.itersize = 2000
        cursor.execute(DAILY_SQL, args)
        for row in cursor:
            values = dict(zip(DAILY_COLUMNS, row))
            values.update(date=row[0].isoformat(), operator_id=str(row[1]))
            yield {k: (0 if k.endswith("_n") and v is None else _num(v) if k.endswith(("_avg", "_p50", "_p90")) else v)
                   for k, v in values.items()}


def build(conn: psycopg.Connection, span: Range) -> dict:
    """The range's totals as plain JSON-ready values (what the table and the
    HTML show; CSV and JSON add the daily rows, streamed by write())."""
    zone, buckets, target = conn.execute(
        """select chatdesk.stats_time_zone(), chatdesk.time_buckets(),
                  coalesce((select value from chatdesk.settings where key = 'first_response_target'), '5 minutes')"""
    ).fetchone()
    if span.operator_id and not conn.execute("select 1 from chatdesk.operators where id = %s",
                                             (span.operator_id,)).fetchone():
        raise BadRequest(f"operator {span.operator_id} does not exist")
    args = {"first": span.first, "last": span.last, "op": span.operator_id}

    empty = {"n": 0, "avg": None, "histogram": [0] * (len(buckets) + 1)}
    operators = {op: {"operator_id": str(op), "operator": name, **dict(zip(COUNTS, (int(v) for v in counts))),
                      "times": {m: {c: dict(empty) for c in CLOCKS} for m in METRICS}}
                 for op, name, *counts in conn.execute(TOTALS_SQL, args)}
    for op, metric, clock, n, avg, histogram in conn.execute(TIMES_SQL, args):
        if op in operators:
            operators[op]["times"][metric][clock] = {"n": int(n), "avg": _num(avg), "histogram": list(histogram)}

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

    answered, fr_p50, fr_p90, within, closed, res_p50, target_seconds = conn.execute(
        HEADLINE_SQL, {**args, "zone": zone, "target": target}).fetchone()
    headline = {"conversations_answered": int(answered), "first_response_p50": _num(fr_p50),
                "first_response_p90": _num(fr_p90), "first_response_target": target,
                "first_response_target_seconds": float(target_seconds),
                "answered_within_target": _num(within), "conversations_closed": int(closed),
                "resolution_p50": _num(res_p50)}

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
        "headline": headline,
        "business_hours": hours, "holidays": holidays,
        "buckets": [float(b) for b in buckets],
        "days_not_rolled_up": [d.isoformat() for d in all_days if d not in rolled],
        # by volume: who carried the range first
        "operators": sorted(operators.values(),
                            key=lambda o: (-o["messages_sent"], o["operator"] or "", o["operator_id"])),
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


def title(report: dict) -> str:
    """One day is titled as one day."""
    if report["from"] == report["to"]:
        return f"chatdesk report {report['from']}"
    return f"chatdesk report {report['from']} to {report['to']}"


def headline_figures(report: dict) -> list[tuple[str, str]]:
    """The figures a lead reads first, (label, value), for the table and the HTML."""
    h = report["headline"]
    within = "-" if h["answered_within_target"] is None else f"{h['answered_within_target']:.0%}"
    return [("conversations answered", str(h["conversations_answered"])),
            ("first response, median", seconds_text(h["first_response_p50"])),
            ("first response, p90", seconds_text(h["first_response_p90"])),
            (f"answered within {h['first_response_target']}", within),
            ("resolution, median", seconds_text(h["resolution_p50"]))]


def totals(report: dict) -> dict:
    """The operators' counts added up (the table's and the HTML's last row)."""
    return {c: sum(op[c] for op in report["operators"]) for c in COUNTS}


def to_table(report: dict) -> str:
    """The headline, then the range per operator: counts, and average times
    (wall clock / business time), busiest first, and the totals."""
    lines = [f"{title(report)} ({report['time_zone']})",
             "; ".join(f"{label}: {value}" for label, value in headline_figures(report))]
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
    if rows:
        sums = totals(report)
        rows.append(["total", *(str(sums[c]) for c in COUNTS), "", "", ""])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    if business:
        lines.append("times: wall clock / business hours")
    if not rows:
        lines.append("(no stats in this range)")
    return "\n".join(lines)
