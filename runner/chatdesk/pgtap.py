"""`chatdesk test`: run pgTAP files, each in its own transaction that is rolled back.

The files are written for pg_prove too (begin; plan; ...; finish(); rollback),
so they run unchanged under both. Here each file's own transaction-control
statements are left out and the file runs inside one transaction of ours,
which is always rolled back: a file can never leak state into the next one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import sqlparse

from chatdesk import db, resources
from chatdesk.errors import BadRequest, TestsFailed, ToolMissing

_PLAN = re.compile(r"^1\.\.(\d+)")
_RESULT = re.compile(r"^(not )?ok\b(?:\s+(\d+))?(.*)$")
_TX_CONTROL = re.compile(
    r"^(begin|start\s+transaction|commit|end|rollback|abort)(\s+(work|transaction))?\s*;?$",
    re.IGNORECASE,
)

INSTALL_HINT = (
    "the pgTAP extension is not available on this server. Install it with "
    "'apt-get install postgresql-{major}-pgtap' (Debian/Ubuntu) or from https://pgtap.org, "
    "then run chatdesk test again."
)


@dataclass
class FileResult:
    path: Path
    planned: int | None = None
    passed: int = 0
    failed: list[str] = field(default_factory=list)  # the failing assertions, as TAP lines
    error: str | None = None  # an SQL error that stopped the file
    tap: list[str] = field(default_factory=list)

    @property
    def run(self) -> int:
        return self.passed + len(self.failed)

    @property
    def problems(self) -> list[str]:
        """Why this file failed; empty when it passed."""
        out = list(self.failed)
        if self.error:
            out.append(f"SQL error: {self.error}")
        if self.planned is None:
            out.append("no plan: the file printed no 1..N line")
        elif self.planned == 0 or self.run == 0:
            out.append("no tests ran")
        elif self.planned != self.run:
            out.append(f"planned {self.planned} tests but ran {self.run}")
        return out

    @property
    def ok(self) -> bool:
        return not self.problems


def find_files(paths: Iterable[str | Path]) -> list[Path]:
    """The .sql files named, or found (sorted) in the folders named."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(path.rglob("*.sql")))
        elif path.is_file():
            found.append(path)
        else:
            raise BadRequest(f"no such pgTAP file or folder: {path}")
    return found


def statements(sql: str) -> list[str]:
    """The file's statements, without its own begin/commit/rollback."""
    out = []
    for statement in sqlparse.split(sql):
        stripped = sqlparse.format(statement, strip_comments=True).strip()
        if not stripped or _TX_CONTROL.match(stripped):
            continue
        out.append(statement)
    return out


def _record(result: FileResult, line: str) -> None:
    result.tap.append(line)
    if (plan := _PLAN.match(line)) and result.planned is None:
        result.planned = int(plan.group(1))
        return
    if match := _RESULT.match(line):
        skipped_or_todo = re.search(r"#\s*(TODO|SKIP)", match.group(3), re.IGNORECASE)
        if match.group(1) and not skipped_or_todo:
            result.failed.append(line)
        else:
            result.passed += 1


def run_file(conn: psycopg.Connection, path: Path, emit: Callable[[str], None] = lambda line: None) -> FileResult:
    """Run one pgTAP file in a transaction that is rolled back (conn must be in autocommit).

    The chatdesk_test helpers are installed in the same transaction, so they
    go with it."""
    result = FileResult(path)
    conn.execute("begin")
    try:
        conn.execute(resources.pgtap_helpers().read_text())
        for statement in statements(path.read_text()):
            cur = conn.execute(statement)
            while True:
                if cur.description is not None:
                    for row in cur.fetchall():
                        for value in row:
                            for line in str(value).splitlines() if value is not None else []:
                                _record(result, line)
                                emit(line)
                if not cur.nextset():
                    break
    except psycopg.Error as error:
        result.error = db.first_line(error)
        if "permission denied to set role" in result.error:
            result.error += (" (the access tests act as each kind of caller: as an admin, run "
                             f"grant chatdesk_app, chatdesk_web, chatdesk_reporting to {conn.info.user})")
        emit(f"# SQL error: {result.error}")
    finally:
        conn.execute("rollback")  # always: the file leaves nothing behind
    return result


def pgtap_available(conn: psycopg.Connection) -> bool:
    return bool(conn.execute("select 1 from pg_available_extensions where name = 'pgtap'").fetchone())


def run(conninfo: str | None, paths: Iterable[str | Path], echo: Callable[[str], None] = lambda line: None) -> list[FileResult]:
    """Run every file, handing `echo` TAP as pg_prove prints it; raise TestsFailed on any failure."""
    files = find_files(paths)
    if not files:
        raise TestsFailed("no pgTAP files found: nothing was tested")
    with db.connect(conninfo) as conn:
        if not pgtap_available(conn):
            raise ToolMissing(INSTALL_HINT.format(major=conn.info.server_version // 10000))
        results = []
        for path in files:
            echo(f"# {path}")
            result = run_file(conn, path, emit=echo)
            verdict = "ok" if result.ok else "FAILED: " + "; ".join(result.problems)
            echo(f"# {path.name}: {result.passed}/{result.planned or 0} passed, {verdict}")
            results.append(result)
    failed_files = [r for r in results if not r.ok]
    total_passed = sum(r.passed for r in results)
    total_failed = sum(len(r.failed) for r in results) + sum(1 for r in results if r.error)
    echo(f"Files={len(results)}, Tests={sum(r.run for r in results)}, "
         f"{total_passed} passed, {total_failed} failed, "
         f"Result: {'FAIL' if failed_files else 'PASS'}")
    if failed_files:
        raise TestsFailed(
            f"{len(failed_files)} of {len(results)} pgTAP files failed: "
            + ", ".join(r.path.name for r in failed_files)
        )
    return results
