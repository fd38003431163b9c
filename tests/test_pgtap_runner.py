"""`chatdesk test`: runs pgTAP files, fails on every kind of failure; pg_prove runs the same files."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from chatdesk import cli, pgtap
from chatdesk.db import libpq_env
from click.testing import CliRunner
from conftest import PGTAP_DIR
from helpers import assert_one_error_line, connect, generate_traffic, run_cli

PASSING = """begin;
create extension if not exists pgtap;
select plan(2);
select ok(true, 'true is true');
select is(1 + 1, 2, 'arithmetic');
select * from finish();
rollback;
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_chatdesk_test_runs_the_projects_suite(db_url):
    result = run_cli("--database-url", db_url, "test", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith(f"Files={len(list(PGTAP_DIR.glob('*.sql')))}, ") and last.endswith("Result: PASS")
    assert "not ok" not in result.stdout


def test_the_projects_suite_passes_on_a_database_with_data(db_url):
    """The README tells you to run `chatdesk test` on your own database: each
    file must not depend on what else is there. Here: a day of traffic with
    closes, releases and idle releases, chats waiting in the queue since long
    ago and just now, queue samples, a rollup, with and without a pinned clock."""
    with connect(db_url) as conn:
        generate_traffic(conn, lifecycle=True, steps=400)
        user = conn.execute("select create_real_user('someone else')").fetchone()[0]
        for when in ("2000-01-01 00:00+00", "2026-02-01 08:00+00", None):  # old, among the files' times, now
            if when:
                conn.execute("select set_config('chatdesk.clock', %s, false)", (when,))
            chat = conn.execute("select start_chat(%s)", (user,)).fetchone()[0]
            conn.execute("select send_user_message(%s, 'still waiting')", (chat,))
            conn.execute("select sample_queue()")
            conn.execute("reset chatdesk.clock")
        conn.execute("select rollup_operator_stats(current_date)")
        assert conn.execute("select count(*) from chats where chat_state = 'waiting_assignment'").fetchone()[0] >= 3
    result = run_cli("--database-url", db_url, "test", timeout=300)
    assert result.returncode == 0, "\n".join(line for line in result.stdout.splitlines() if "not ok" in line
                                             or line.startswith("#"))[:4000]


def test_chatdesk_test_prints_tap_and_passes(db_url, tmp_path):
    path = write(tmp_path, "ok.sql", PASSING)
    result = run_cli("--database-url", db_url, "test", str(path))
    assert result.returncode == 0, result.stderr
    assert "1..2\nok 1 - true is true\nok 2 - arithmetic" in result.stdout
    assert "2 passed, 0 failed" in result.stdout


@pytest.mark.parametrize(
    "name, text, problem",
    [
        ("failing.sql", PASSING.replace("1 + 1, 2", "1 + 1, 3"), "not ok 2 - arithmetic"),
        ("plan.sql", PASSING.replace("plan(2)", "plan(3)"), "planned 3 tests but ran 2"),
        ("error.sql", PASSING.replace("select ok(true", "select ok(no_such_column"), "SQL error"),
        ("noplan.sql", "select 1;\n", "no plan"),
    ],
)
def test_chatdesk_test_fails_on_every_kind_of_failure(db_url, tmp_path, name, text, problem):
    path = write(tmp_path, name, text)
    result = run_cli("--database-url", db_url, "test", str(path))
    assert result.returncode == 1
    assert problem in result.stdout
    assert_one_error_line(result)


def test_a_failing_file_does_not_leak_into_the_next(db_url, tmp_path):
    leaky = write(tmp_path, "a.sql", "create table leak (id int);\nselect plan(1);\nselect ok(true, 'x');\ncommit;\n")
    checker = write(tmp_path, "b.sql", "select plan(1);\nselect hasnt_table('leak', 'nothing leaked');\n")
    result = run_cli("--database-url", db_url, "test", str(leaky), str(checker))
    assert result.returncode == 0, result.stdout
    assert "ok 1 - nothing leaked" in result.stdout


def test_an_empty_folder_fails(db_url, tmp_path):
    result = run_cli("--database-url", db_url, "test", str(tmp_path))
    assert result.returncode == 1
    assert "no pgTAP files found" in result.stderr


def test_missing_pgtap_says_how_to_install(db_url, tmp_path, monkeypatch):
    monkeypatch.setattr(pgtap, "pgtap_available", lambda conn: False)
    result = CliRunner().invoke(cli.cli, ["--database-url", db_url, "test", str(write(tmp_path, "x.sql", PASSING))])
    assert result.exit_code == 1
    assert re.search(r"apt-get install postgresql-1[5-9]-pgtap", result.output)  # the server's major version


def test_pg_prove_runs_the_same_files(db_url, tmp_path):
    pg_prove = shutil.which("pg_prove")
    assert pg_prove, "pg_prove is missing: `make system-deps` installs the pgtap package"
    # pg_prove hands its options to psql; the libpq variables reach it whole.
    env = libpq_env(db_url)
    files = sorted(str(p) for p in PGTAP_DIR.glob("*.sql"))
    ok = subprocess.run([pg_prove, *files], capture_output=True, text=True, timeout=300, env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "All tests successful." in ok.stdout
    broken = write(tmp_path, "broken.sql", PASSING.replace("1 + 1, 2", "1 + 1, 3"))
    bad = subprocess.run([pg_prove, str(broken)], capture_output=True, text=True, timeout=60, env=env)
    assert bad.returncode != 0
