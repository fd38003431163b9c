"""`make mutate`: does the suite notice a broken rule? Each mutant of tests/mutants.py is applied to
sql/ in turn, the behaviour tests run until the first failure, and the file is put back.

    python tests/mutate.py              # every mutant
    python tests/mutate.py capacity     # one (or several) by id
    python tests/mutate.py --list

The schema snapshot (it fails on any edit) and the static checks (plpgsql_check,
squawk: they read text, they do not run rules) are left out: a kill must come
from behaviour. Writes mutate-report.md; exits 1 when under 95% of the
non-equivalent mutants are killed. Refuses to start with uncommitted changes in
sql/, and always restores the file it changed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from mutants import MUTANTS  # noqa: E402

# fastest and broadest first, so most mutants die within seconds
SUITE = [
    "tests/test_pgtap.py", "tests/test_bad_input.py", "tests/test_access_matrix.py", "tests/test_assignment.py",
    "tests/test_stats.py", "tests/test_reports.py", "tests/test_feed.py", "tests/test_access.py",
    "tests/test_verify.py", "tests/test_schedule.py", "tests/test_chat_concurrency.py", "tests/test_chat_model.py",
    "tests/test_scaling.py",
]
TARGET = 0.95


def run_one(mutant) -> tuple[str, str, float]:
    """("killed", by which test) or ("survived", "")."""
    path = ROOT / "sql" / mutant.file
    original = path.read_text()
    if original.count(mutant.find) != 1:
        raise SystemExit(f"stale mutant {mutant.id}: its text occurs {original.count(mutant.find)} times in sql/{mutant.file}")
    started = time.monotonic()
    try:
        path.write_text(original.replace(mutant.find, mutant.replace))
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--timeout", "300", *SUITE],
            cwd=ROOT, capture_output=True, text=True, env={**os.environ, "CHATDESK_TORTURE_SECONDS": "5"})
    finally:
        path.write_text(original)
    took = time.monotonic() - started
    if result.returncode == 0:
        return "survived", "", took
    first = re.search(r"^(?:FAILED|ERROR) (\S+)", result.stdout, re.M)
    return "killed", first.group(1) if first else f"pytest exit {result.returncode}", took


def main(argv: list[str]) -> int:
    if "--list" in argv:
        for m in MUTANTS:
            print(f"{m.id:<28} sql/{m.file:<20} {m.breaks}")
        return 0
    dirty = subprocess.run(["git", "status", "--porcelain", "sql"], cwd=ROOT, capture_output=True, text=True).stdout
    if dirty.strip():
        print("Error: sql/ has uncommitted changes; commit or stash them first (mutants edit sql/ in place)")
        return 2
    chosen = [m for m in MUTANTS if not argv or m.id in argv]
    rows, killed, counted = [], 0, 0
    for m in chosen:
        if m.equivalent:
            rows.append((m, "equivalent", m.equivalent, 0.0))
            print(f"{m.id:<28} equivalent", flush=True)
            continue
        outcome, by, took = run_one(m)
        counted += 1
        killed += outcome == "killed"
        rows.append((m, outcome, by, took))
        print(f"{m.id:<28} {outcome:<9} {by} ({took:.0f} s)", flush=True)
    score = killed / counted if counted else 1.0
    lines = [f"{killed} of {counted} mutants killed by behaviour tests ({score:.0%}); "
             f"{sum(1 for r in rows if r[1] == 'equivalent')} marked equivalent.", "",
             "| mutant | file | breaks | outcome | by |", "|---|---|---|---|---|"]
    lines += [f"| `{m.id}` | `sql/{m.file}` | {m.breaks} | {outcome} | {by.replace('|', '/')} |"
              for m, outcome, by, _ in rows]
    (ROOT / "mutate-report.md").write_text("\n".join(lines) + "\n")
    print("\n" + lines[0])
    return 0 if score >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
