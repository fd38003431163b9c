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


def test_uninstall_says_what_it_would_drop_then_drops_it(db_url):
    import psycopg
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("select chatdesk.create_operator('Ann')")
    dry = run_cli("--database-url", db_url, "uninstall")
    assert_one_error_line(dry)
    assert "would drop schema chatdesk" in dry.stdout and "_yoyo_migration" in dry.stdout, dry.stdout
    # the roles stay: the test server's other databases (the template) use them
    assert "keep role chatdesk_app: databases" in dry.stdout
    with psycopg.connect(db_url) as conn:
        assert conn.execute("select count(*) from chatdesk.operators").fetchone()[0] == 1  # nothing removed
    done = run_cli("--database-url", db_url, "uninstall", "--yes")
    assert done.returncode == 0, done.stderr
    with psycopg.connect(db_url) as conn:
        assert conn.execute("select to_regnamespace('chatdesk'), to_regclass('public._yoyo_migration')").fetchone() \
            == (None, None)
        assert conn.execute("select count(*) from pg_roles where rolname like 'chatdesk\\_%'").fetchone()[0] >= 4
    again = run_cli("--database-url", db_url, "uninstall", "--yes")
    assert_one_error_line(again)
    assert "chatdesk is not installed" in again.stderr
    # and it installs again from scratch
    assert run_cli("--database-url", db_url, "migrate").returncode == 0
    with psycopg.connect(db_url) as conn:
        assert conn.execute("select count(*) from chatdesk.operators").fetchone()[0] == 0


def test_migrate_plan_on_an_empty_database_names_the_roles_it_creates(empty_db_url, pg_server, template_db):
    """The roles are cluster-wide: a first install creates what the cluster
    lacks. One is renamed away for the test, as on a cluster that never had it."""
    import psycopg
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute("alter role chatdesk_reporting rename to chatdesk_reporting_away")
        try:
            planned = run_cli("--database-url", empty_db_url, "migrate", "--plan")
        finally:
            admin.execute("alter role chatdesk_reporting_away rename to chatdesk_reporting")
    assert planned.returncode == 0, planned.stderr
    assert "apply   migrations/0001.schema.sql" in planned.stdout
    assert "create  role chatdesk_reporting (cluster-wide, NOLOGIN" in planned.stdout
    assert "create  role chatdesk_app" not in planned.stdout  # the cluster has it


@pytest.mark.parametrize("args", [
    ["report", "--from", "2026-13-01", "--to", "2026-01-01"],  # a date that is no date
    ["release-idle", "--idle-after", "5x"],
    ["status", "--bogus"],
    ["--bogus", "status"],
    ["nosuch"],
    ["report", "--to", "2026-01-01"],  # a missing option
    ["rollup", "--date", "2026-01-01", "--from", "2026-01-01"],
])
def test_a_mistake_is_exactly_one_error_line(args):
    """The contract: errors print one line, `Error: ...`, and exit non-zero;
    not click's usage line and hint before it."""
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and result.stderr.startswith("Error: "), \
        result.stderr
