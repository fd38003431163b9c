"""`make mutate`: does the suite notice a broken rule? Each mutant of tests/mutants.py is applied to
sql/ in turn, the behaviour tests run until the first failure, and the file is put back.

    python tests/mutate.py              # every mutant
    python tests/mutate.py capacity     # one (or several) by id
    python tests/mutate.py --list
    python tests/mutate.py --python     # mutmut on the runner's logic (durations, day selection, slots)

The schema snapshot (it fails on any edit) and the static checks (plpgsql_check,
squawk: they read text, they do not run rules) are left out: a kill must come
from behaviour. Writes mutate-report.md; exits 1 when under 95% of the
non-equivalent mutants are killed. Refuses to start with uncommitted changes in
sql/, and always restores the file it changed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from mutants import MUTANTS  # noqa: E402

# fastest and broadest first, so most mutants die within seconds
SUITE = [
    "tests/test_pgtap.py", "tests/test_bad_input.py", "tests/test_access_matrix.py", "tests/test_access_states.py",
    "tests/test_rules_from_lists.py", "tests/test_locks.py", "tests/test_feed_audiences.py", "tests/test_assignment.py",
    "tests/test_stats.py", "tests/test_feed.py", "tests/test_access.py", "tests/test_verify.py",
    "tests/test_web_surface.py", "tests/test_reports.py", "tests/test_schedule.py", "tests/test_chat_concurrency.py",
    "tests/test_chat_model.py", "tests/test_scaling.py", "tests/test_faults.py",
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


PY_MODULES = ["durations.py", "rollup.py", "schedule.py"]  # the runner's logic (docs/testing.md)
PY_TESTS = "tests/test_units.py"
# the package's modules those import, copied beside the mutated ones
PY_ALSO = ["__init__.py", "errors.py", "db.py", "idle.py", "resources.py", "migrate.py", "scratch.py"]


def run_python() -> tuple[dict, list[str]]:
    """mutmut (a maintained tool) on the runner's logic, in a scratch copy of the tree whose src/ is
    runner/ (the layout mutmut understands; tests/conftest.py imports src/ first when it exists).
    Returns the counts by outcome and the survivors."""
    with tempfile.TemporaryDirectory(prefix="chatdesk-mutmut-") as tmp:
        files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.split()
        for name in files:
            source, target = ROOT / name, Path(tmp) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_symlink():
                target.symlink_to(os.readlink(source))
            elif source.is_file():
                shutil.copy2(source, target)
        (Path(tmp) / "src").symlink_to("runner")
        with open(Path(tmp) / "pyproject.toml", "a") as config:
            config.write("\n[tool.mutmut]\n"
                         f"paths_to_mutate = {[f'src/chatdesk/{m}' for m in PY_MODULES]!r}\n"
                         f"tests_dir = [{PY_TESTS!r}]\n"
                         f"pytest_add_cli_args = [{PY_TESTS!r}]\n"
                         f"also_copy = {['tests/', 'sql/', 'migrations/', 'README.md'] + [f'src/chatdesk/{m}' for m in PY_ALSO]!r}\n")
        run = subprocess.run([sys.executable, "-m", "mutmut", "run"], cwd=tmp, capture_output=True, text=True)
        progress = [line for line in run.stdout.replace("\r", "\n").splitlines() if "🎉" in line]
        if not progress:
            raise SystemExit(f"mutmut did not run: {(run.stdout + run.stderr).strip()[-500:]}")
        counts = dict(zip(["killed", "no tests", "timeout", "suspicious", "survived", "skipped"],
                          map(int, re.findall(r"[🎉🫥⏰🤔🙁🔇] (\d+)", progress[-1]))))
        listed = subprocess.run([sys.executable, "-m", "mutmut", "results"], cwd=tmp, capture_output=True, text=True)
        survivors = [line.split(":")[0].strip() for line in listed.stdout.splitlines() if line.strip().endswith("survived")]
    return counts, survivors


def main(argv: list[str]) -> int:
    if "--python" in argv:
        counts, survivors = run_python()
        covered = counts["killed"] + counts["survived"] + counts["timeout"]
        print(f"Python: {counts['killed'] + counts['timeout']} of {covered} mutants that the unit tests reach were "
              f"killed; {counts['no tests']} are in code those tests do not reach (the database's part, tested "
              f"against a server). Survivors:")
        for name in survivors:
            print(f"  {name}")
        return 0
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
