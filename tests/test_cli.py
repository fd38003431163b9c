"""The command line as a whole: one `Error:` line for bad input, help and version."""

from __future__ import annotations

import pytest
from helpers import assert_one_error_line, run_cli


@pytest.mark.parametrize(
    "args",
    [
        ["--database-url", "postgresql://nobody@127.0.0.1:1/nowhere", "migrate"],
        ["--database-url", "this is not a url", "status"],
        ["--database-url", "postgresql://nobody@127.0.0.1:1/nowhere", "verify"],
        ["no-such-command"],
    ],
)
def test_bad_input_is_one_error_line(args):
    assert_one_error_line(run_cli(*args))


def test_help_and_version():
    assert run_cli("--version").stdout.startswith("chatdesk, version ")
    helped = run_cli("-h")
    assert helped.returncode == 0 and "migrate" in helped.stdout and "DATABASE_URL" in helped.stdout


@pytest.mark.parametrize("command", [["status"], ["rollup"], ["report", "--from", "2026-01-01", "--to", "2026-01-02"],
                                     ["verify"], ["release-idle"], ["watch"]])
def test_a_database_without_chatdesk_leads_to_migrate(empty_db_url, command):
    from psycopg.conninfo import conninfo_to_dict
    result = run_cli("--database-url", empty_db_url, *command, timeout=60)
    assert_one_error_line(result)
    dbname = conninfo_to_dict(empty_db_url)["dbname"]
    assert f"chatdesk is not installed in database {dbname} at " in result.stderr, result.stderr
    assert "run chatdesk migrate" in result.stderr


def test_global_options_go_before_or_after_the_subcommand(db_url):
    before = run_cli("--database-url", db_url, "status", "--json")
    after = run_cli("status", "--database-url", db_url, "--json")
    equals = run_cli("status", "--json", f"--database-url={db_url}")
    assert before.returncode == after.returncode == equals.returncode == 0, after.stderr
    assert before.stdout.splitlines()[0][:20] == after.stdout.splitlines()[0][:20] == equals.stdout.splitlines()[0][:20]
    # nested commands too
    assert run_cli("cron", "status", "--database-url", "postgresql://nobody@127.0.0.1:1/x").stderr.startswith("Error:")
