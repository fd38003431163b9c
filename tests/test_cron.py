"""`chatdesk cron`: chatdesk's schedule as real pg_cron jobs (Debian's pg_cron, preloaded by the test server)."""

from __future__ import annotations

import json
import time

import psycopg
import pytest
from conftest import admin_execute, url_for
from helpers import assert_one_error_line, run_cli
from psycopg.conninfo import conninfo_to_dict

JOBS = ["chatdesk-prune-feed", "chatdesk-release-idle", "chatdesk-rollup", "chatdesk-sample-queue"]


@pytest.fixture
def cron_db(pg_server, db_url):
    """pg_cron created in its database (postgres, cron.database_name); chatdesk's jobs removed afterwards."""
    admin_execute(pg_server, "create extension if not exists pg_cron")
    yield url_for(pg_server, "postgres")
    with psycopg.connect(url_for(pg_server, "postgres"), autocommit=True) as conn:
        for (name,) in conn.execute("select jobname from cron.job where jobname like 'chatdesk-%'").fetchall():
            conn.execute("select cron.unschedule(%s)", (name,))


def test_cron_install_runs_the_jobs_in_chatdesks_database_and_remove_undoes_it(db_url, cron_db):
    dbname = conninfo_to_dict(db_url)["dbname"]
    installed = run_cli("--database-url", db_url, "cron", "install", "--idle-after", "10m")
    assert installed.returncode == 0, installed.stderr
    again = run_cli("--database-url", db_url, "cron", "install", "--idle-after", "10m")
    assert again.returncode == 0 and again.stdout == installed.stdout  # replaced, not doubled
    with psycopg.connect(cron_db, autocommit=True) as conn:
        rows = conn.execute("""select jobname, schedule, command, database from cron.job
                                where jobname like 'chatdesk-%' order by jobname""").fetchall()
    assert [r[0] for r in rows] == JOBS
    assert {r[3] for r in rows} == {dbname}
    assert dict((r[0], r[1]) for r in rows) == {"chatdesk-prune-feed": "*/5 * * * *", "chatdesk-release-idle": "* * * * *",
                                                "chatdesk-rollup": "*/5 * * * *", "chatdesk-sample-queue": "* * * * *"}
    assert "release_idle_chats(interval '600 seconds')" in dict((r[0], r[2]) for r in rows)["chatdesk-release-idle"]

    # pg_cron runs them, in chatdesk's database: wait for the next minute's runs (at most ~70 s)
    deadline = time.monotonic() + 75
    while True:
        state = json.loads(run_cli("--database-url", db_url, "cron", "status", "--json").stdout)
        runs = {j["job"]: j["last_runs"] for j in state["jobs"]}
        if all(runs[j] and runs[j][0]["status"] == "succeeded" for j in ("chatdesk-sample-queue", "chatdesk-release-idle")):
            break
        assert time.monotonic() < deadline, runs
        time.sleep(2)
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute("select count(*) from chatdesk.queue_samples").fetchone()[0] >= 1
    text = run_cli("--database-url", db_url, "cron", "status").stdout
    assert "chatdesk-sample-queue" in text and "succeeded" in text

    removed = run_cli("--database-url", db_url, "cron", "remove")
    assert removed.returncode == 0 and "Removed 4 pg_cron jobs." in removed.stdout
    with psycopg.connect(cron_db, autocommit=True) as conn:
        assert conn.execute("select count(*) from cron.job where jobname like 'chatdesk-%'").fetchone()[0] == 0
    assert "No chatdesk jobs in pg_cron" in run_cli("--database-url", db_url, "cron", "status").stdout


def test_cron_failures_show_in_status(db_url, cron_db):
    """A job that fails (here: the rollup with a broken time-zone setting) is counted and its error shown."""
    with psycopg.connect(cron_db, autocommit=True) as conn:
        dbname = conninfo_to_dict(db_url)["dbname"]
        assert run_cli("--database-url", db_url, "cron", "install").returncode == 0
        job = conn.execute("select jobid from cron.job where jobname = 'chatdesk-rollup'").fetchone()[0]
        # a finished run as pg_cron records it, so the test need not wait five minutes
        conn.execute("""insert into cron.job_run_details (jobid, runid, job_pid, database, username, command, status,
                                                          return_message, start_time, end_time)
                        values (%s, nextval('cron.runid_seq'), 1, %s, current_user, 'select chatdesk.scheduled_rollup()',
                                'failed', 'ERROR:  canceling statement due to lock timeout', now(), now())""",
                     (job, dbname))
    text = run_cli("--database-url", db_url, "cron", "status").stdout
    assert "chatdesk-rollup" in text and "failed (ERROR:  canceling statement due to lock timeout)" in text
    assert "1 failed in the last day" in text


def test_cron_without_chatdesk_is_one_error_line(empty_db_url, cron_db):
    result = run_cli("--database-url", empty_db_url, "cron", "install")
    assert_one_error_line(result)
    assert "has no chatdesk schema: run chatdesk migrate first" in result.stderr
