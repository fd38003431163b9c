"""`chatdesk report`'s output: the report in a format, to a stream or to a
file. The data is chatdesk.report's, the HTML chatdesk.report_html's; this
module joins them (so neither imports the other's caller)."""

from __future__ import annotations

import csv
import json
import os
import tempfile

import psycopg

from chatdesk import report_html
from chatdesk.errors import ChatdeskError
from chatdesk.report import DAILY_COLUMNS, Range, build, daily_rows, to_table


def render(report: dict, fmt: str) -> str:
    """The totals as a table or one HTML file."""
    return report_html.render(report) if fmt == "html" else to_table(report)


def write(conn: psycopg.Connection, span: Range, fmt: str, out) -> None:
    """The report in `fmt` to the text stream `out`. CSV and JSON stream the
    daily rows as they come; the table and the HTML need only the totals."""
    report = build(conn, span)
    args = {"first": span.first, "last": span.last, "op": span.operator_id}
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=DAILY_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(daily_rows(conn, args))
    elif fmt == "json":
        head = json.dumps({**report, "daily": []}, indent=2)  # "daily" last: its rows follow
        out.write(head[:head.rindex("[]")] + "[")
        for i, row in enumerate(daily_rows(conn, args)):
            out.write(("," if i else "") + "\n    " + json.dumps(row))
        out.write("\n  ]\n}\n")
    else:
        text = render(report, fmt)
        out.write(text if text.endswith("\n") else text + "\n")


def write_file(conn: psycopg.Connection, span: Range, fmt: str, path: str) -> None:
    """write() to the file `path`, through a temporary file beside it: a
    failed report leaves no half file behind, and an old one stays whole."""
    target = os.path.abspath(path)
    try:
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=os.path.dirname(target),
                                         prefix=".chatdesk-report-", delete=False) as f:
            try:
                write(conn, span, fmt, f)
            except BaseException:
                os.unlink(f.name)
                raise
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(f.name, 0o666 & ~umask)  # as open() would have made it, not the temporary file's 0600
        os.replace(f.name, target)
    except OSError as error:
        raise ChatdeskError(f"cannot write {path}: {error.strerror}") from None
