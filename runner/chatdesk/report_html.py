"""The HTML report: one self-contained file (inline CSS and SVG, no script, no network).

Charts are drawn here as SVG so the file opens anywhere, offline, and prints.
Each chart is a <figure data-chart="..."> whose marks carry a <title> (the
browser shows it on hover) and data-value attributes the browser test reads.
"""

from __future__ import annotations

from html import escape

from datetime import date, timedelta

from chatdesk.report import CLOCKS, COUNTS, WEEKDAYS, headline_figures, seconds_text, title, totals

COLOURS = {"wall": "#2f6db5", "business": "#e08a1e", "messages": "#2f6db5", "closed": "#3a9a5b"}
STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; max-width: 1100px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; }
.meta { color: #666; } .warn { color: #a33; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; align-items: start; }
figure { margin: 0; border: 1px solid #ddd; border-radius: 6px; padding: 10px; background: #fff; }
figcaption { font-weight: 600; margin-bottom: 6px; }
svg text { font: 11px system-ui, sans-serif; fill: #444; }
table { border-collapse: collapse; margin-top: 8px; font-size: 12px; } td, th { padding: 3px 8px; border-bottom: 1px solid #eee; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.legend span { display: inline-block; margin-right: 12px; } .legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
.headline { display: flex; flex-wrap: wrap; gap: 12px; margin: 14px 0 18px; }
.headline div { border: 1px solid #ddd; border-radius: 6px; padding: 8px 14px; background: #fafafa; min-width: 130px; }
.headline b { display: block; font-size: 22px; } .headline span { color: #666; font-size: 12px; }
tr.total td { font-weight: 600; border-top: 2px solid #ccc; }
"""


def short_duration(seconds: float) -> str:
    """10s, 5m, 4h, 1d: a bucket bound."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def bucket_labels(bounds: list[float]) -> list[str]:
    """<10s, 10-30s, 30s-1m, ... 4h-1d, 1d+"""
    labels, low = [], None
    for b in bounds:
        if low is None:
            labels.append(f"<{short_duration(b)}")
        else:
            a, z = short_duration(low), short_duration(b)
            labels.append(f"{a[:-1] if a[-1] == z[-1] else a}-{z}")  # 10-30s, 30s-1m
        low = b
    labels.append(f"{short_duration(low)}+")
    return labels


def hours_text(hours: list[dict]) -> str:
    """Business hours with the weekdays that share their windows grouped: Mon-Fri 09:00-17:00; Sat 10:00-14:00."""
    by_day: dict[int, list[str]] = {}
    for h in hours:
        by_day.setdefault(h["weekday"], []).append(f"{h['opens']}-{h['closes']}")
    groups: list[tuple[list[int], list[str]]] = []
    for day in sorted(by_day):
        if groups and groups[-1][1] == by_day[day] and groups[-1][0][-1] == day - 1:
            groups[-1][0].append(day)
        else:
            groups.append(([day], by_day[day]))
    return "; ".join((WEEKDAYS[d[0] - 1] + (f"-{WEEKDAYS[d[-1] - 1]}" if len(d) > 1 else "")) + " " + ", ".join(w)
                     for d, w in groups)


def _legend(series: list[str]) -> str:
    return '<div class="legend">' + "".join(
        f'<span><i style="background:{COLOURS[s]}"></i>{escape(s.replace("wall", "wall clock").replace("business", "business hours"))}</span>'
        for s in series) + "</div>"


def _figure(name: str, caption: str, width: float, height: float, body: str, legend: str = "") -> str:
    """A chart: <figure data-chart=name> with its caption, an optional legend and an SVG of width x height."""
    return (f'<figure data-chart="{name}"><figcaption>{escape(caption)}</figcaption>{legend}'
            f'<svg viewBox="0 0 {width} {height}" width="100%" role="img">{body}</svg></figure>')


def histogram_chart(name: str, caption: str, bounds: list[float], series: dict[str, list[int]]) -> str:
    """Grouped vertical bars: how many times fell in each bucket, per series."""
    labels = bucket_labels(bounds)
    width, height, left, bottom = 520, 200, 40, 22
    top = max([max(v) for v in series.values() if v] + [1])
    slot = (width - left) / len(labels)
    bar = (slot - 6) / max(len(series), 1)
    marks = []
    for i, label in enumerate(labels):
        x0 = left + i * slot + 3
        for k, (clock, counts) in enumerate(series.items()):
            value = counts[i] if i < len(counts) else 0
            h = (height - bottom - 10) * value / top
            marks.append(f'<rect class="mark" data-value="{value}" x="{x0 + k * bar:.1f}" y="{height - bottom - h:.1f}" '
                         f'width="{bar:.1f}" height="{h:.1f}" fill="{COLOURS[clock]}">'
                         f'<title>{escape(label)}: {value} ({clock})</title></rect>')
        marks.append(f'<text x="{x0 + slot / 2 - 3:.1f}" y="{height - bottom + 14}" text-anchor="middle" '
                     f'style="font-size:10px">{escape(label)}</text>')
    axis = (f'<line x1="{left}" y1="{height - bottom}" x2="{width}" y2="{height - bottom}" stroke="#999"/>'
            f'<text x="{left - 4}" y="14" text-anchor="end">{top}</text><text x="{left - 4}" y="{height - bottom}" text-anchor="end">0</text>')
    return _figure(name, caption, width, height, axis + "".join(marks), _legend(list(series)))


def bar_chart(name: str, caption: str, items: list[tuple[str, dict[str, float]]]) -> str:
    """Horizontal grouped bars, one group per operator."""
    series = list(items[0][1]) if items else []
    row, left, width = 14 * max(len(series), 1) + 8, 130, 520
    height = max(row * len(items), 30) + 10
    top = max([v for _, values in items for v in values.values()] + [1])
    marks = []
    for i, (label, values) in enumerate(items):
        y0 = 5 + i * row
        marks.append(f'<text x="{left - 6}" y="{y0 + row / 2 + 3:.1f}" text-anchor="end">{escape(label[:20])}</text>')
        for k, (key, value) in enumerate(values.items()):
            w = (width - left - 50) * value / top
            y = y0 + k * 14
            marks.append(f'<rect class="mark" data-value="{value:g}" x="{left}" y="{y}" width="{w:.1f}" height="12" '
                         f'fill="{COLOURS[key]}"><title>{escape(label)}: {value:g} {key}</title></rect>'
                         f'<text x="{left + w + 4:.1f}" y="{y + 10}">{value:g}</text>')
    return _figure(name, caption, width, height, "".join(marks), _legend(series))


def weekdays_in(first: str, last: str) -> list[int]:
    """The ISO weekdays (1 Monday ... 7 Sunday) a range of days covers: in the
    range's order when it is shorter than a week (Fri, Sat, Sun, Mon), else
    Monday to Sunday."""
    start, end = date.fromisoformat(first), date.fromisoformat(last)
    if (end - start).days >= 6:
        return list(range(1, 8))
    return [(start + timedelta(days=i)).isoweekday() for i in range((end - start).days + 1)]


def heatmap(name: str, caption: str, load: list[dict], weekdays: list[int]) -> str:
    """Messages per hour of day (columns) and weekday (rows: those in the range)."""
    cells = {(c["weekday"], c["hour"]): c for c in load}
    top = max([c["messages"] for c in load] + [1])
    size, left, topm = 20, 34, 18
    marks = [f'<text x="{left + h * size + size / 2}" y="12" text-anchor="middle">{h}</text>' for h in range(0, 24, 3)]
    for row, w in enumerate(weekdays):
        marks.append(f'<text x="{left - 6}" y="{topm + row * size + 14}" text-anchor="end">{WEEKDAYS[w - 1]}</text>')
        for h in range(24):
            c = cells.get((w, h), {"messages": 0, "queue_entries": 0})
            shade = c["messages"] / top
            marks.append(f'<rect class="mark" data-value="{c["messages"]}" x="{left + h * size}" y="{topm + row * size}" '
                         f'width="{size - 1}" height="{size - 1}" fill="rgba(47,109,181,{0.06 + 0.94 * shade:.3f})">'
                         f'<title>{WEEKDAYS[w - 1]} {h:02d}:00: {c["messages"]} messages, {c["queue_entries"]} new in queue</title></rect>')
    return _figure(name, caption, left + 24 * size + 4, topm + len(weekdays) * size + 4, "".join(marks))


def line_chart(name: str, caption: str, points: list[dict]) -> str:
    """Chats waiting in the queue over the range (the max of each slice of samples)."""
    width, height, left, bottom = 1040, 180, 40, 24
    if not points:
        body = f'<text x="{left}" y="40">no queue samples in this range (chatdesk schedule takes one a minute)</text>'
    else:
        top = max(max(p["waiting"] for p in points), 1)
        n = max(len(points) - 1, 1)
        xy = [(left + (width - left - 10) * i / n, height - bottom - (height - bottom - 10) * p["waiting"] / top)
              for i, p in enumerate(points)]
        body = (f'<polyline class="mark" data-value="{len(points)}" fill="none" stroke="{COLOURS["wall"]}" stroke-width="1.5" '
                f'points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in xy)}"/>'
                f'<line x1="{left}" y1="{height - bottom}" x2="{width}" y2="{height - bottom}" stroke="#999"/>'
                f'<text x="{left - 4}" y="14" text-anchor="end">{top}</text>'
                f'<text x="{left - 4}" y="{height - bottom}" text-anchor="end">0</text>'
                f'<text x="{left}" y="{height - 6}">{escape(points[0]["at"][:16].replace("T", " "))}</text>'
                f'<text x="{width}" y="{height - 6}" text-anchor="end">{escape(points[-1]["at"][:16].replace("T", " "))}</text>')
    return _figure(name, caption, width, height, body)


def _summed(report: dict, metric: str) -> dict[str, list[int]]:
    size = len(report["buckets"]) + 1
    clocks = CLOCKS if report["business_hours"] else ("wall",)
    out = {clock: [0] * size for clock in clocks}
    for op in report["operators"]:
        for clock in clocks:
            out[clock] = [a + b for a, b in zip(out[clock], op["times"][metric][clock]["histogram"])]
    return out


def _summary_table(report: dict) -> str:
    business = bool(report["business_hours"])
    head = ["operator", *(c.replace("_", " ") for c in COUNTS)]
    for metric in ("first response", "reply", "resolution"):
        head += [f"{metric} n", f"{metric} avg"] + ([f"{metric} avg (business)"] if business else [])
    rows = []
    for op in report["operators"]:
        cells = [escape(op["operator"] or op["operator_id"]), *(str(op[c]) for c in COUNTS)]
        for metric in ("first_response", "reply", "resolution"):
            t = op["times"][metric]
            cells += [str(t["wall"]["n"]), seconds_text(t["wall"]["avg"])]
            if business:
                cells.append(seconds_text(t["business"]["avg"]))
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    if rows:
        sums = totals(report)
        blanks = len(head) - 1 - len(COUNTS)
        rows.append('<tr class="total"><td>total</td>' + "".join(f"<td>{sums[c]}</td>" for c in COUNTS)
                    + "<td></td>" * blanks + "</tr>")
    return ("<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>")


def headline(report: dict) -> str:
    """The strip a lead reads first."""
    return ('<div class="headline" data-chart="headline">'
            + "".join(f'<div><b>{escape(value)}</b><span>{escape(label)}</span></div>'
                      for label, value in headline_figures(report)) + "</div>")


def render(report: dict) -> str:
    ops = report["operators"]
    heading = title(report)
    hours = hours_text(report["business_hours"])
    notes = [f"Days in {escape(report['time_zone'])}.",
             f"Business hours: {escape(hours)}. The business-time series count only the seconds inside them: a "
             f"chat that waits from 18:00 to 09:05 the next working morning waited 5 minutes of business time."
             if hours else "No business hours set: wall-clock times only."]
    if report["holidays"]:
        notes.append("Holidays: " + ", ".join(escape(h["date"]) for h in report["holidays"]) + ".")
    warn = (f'<p class="warn">Not rolled up yet: {escape(", ".join(report["days_not_rolled_up"]))} (run chatdesk rollup).</p>'
            if report["days_not_rolled_up"] else "")
    charts = [
        histogram_chart("first-response", "First response time (queue to first answer)", report["buckets"],
                        _summed(report, "first_response")),
        histogram_chart("reply", "Reply time", report["buckets"], _summed(report, "reply")),
        bar_chart("operators", "Per operator: messages sent and conversations closed",
                  [(op["operator"] or op["operator_id"], {"messages": op["messages_sent"], "closed": op["chats_closed"]})
                   for op in ops]),
        heatmap("load", "Messages by hour and weekday", report["load"], weekdays_in(report["from"], report["to"])),
    ]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(heading)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>
<body>
<h1>{escape(heading)}</h1>
<p class="meta">{" ".join(notes)}</p>{warn}
{headline(report)}
<div class="grid">{"".join(charts)}</div>
<h2>Queue depth</h2>
{line_chart("queue", "Chats waiting in the queue", report["queue_depth"])}
<h2>Operators over the range</h2>
<p class="meta">Averages over every day; per-day medians and 90th percentiles are in the CSV and JSON.</p>
{_summary_table(report)}
</body></html>
"""
