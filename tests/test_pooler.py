"""Behind a real PgBouncer in transaction mode (pool of 5): the CLI, and an
application loop of scoped and unscoped transactions on the same chats.

Every transaction may land on another server connection, and every server
connection serves many clients one after another: nothing chatdesk does may
depend on a session surviving between transactions."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time

import psycopg
import pytest
from chatdesk.errors import AT_CAPACITY, NOT_ALLOWED, NOT_ASSIGNEE
from conftest import ROOT, admin_execute
from helpers import INVARIANTS, run_cli, run_threads
from psycopg.conninfo import conninfo_to_dict


@pytest.fixture
def pooled(pgbouncer, db_url, empty_db_url):
    """(conninfo of a migrated database through the pooler, of an empty one through the pooler)."""
    return (pgbouncer(conninfo_to_dict(db_url)["dbname"]),
            pgbouncer(conninfo_to_dict(empty_db_url)["dbname"]))


def cli(url, *args, **kwargs):
    result = run_cli("--database-url", url, *args, **kwargs)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_the_runner_works_through_the_pooler(pooled, db_url):
    migrated, empty = pooled
    first = cli(empty, "migrate")
    assert "Applying 0009.client_ids_per_sender ... ok" in first.stdout, first.stdout
    again = cli(empty, "migrate")
    assert "No pending migrations." in again.stdout and "sql/ is up to date." in again.stdout
    assert "Nothing to do" in cli(empty, "migrate", "--plan").stdout
    assert "applied  0010.runner_bookkeeping" in cli(empty, "migrate", "--list").stdout
    with psycopg.connect(migrated, autocommit=True, prepare_threshold=None) as conn:
        op = conn.execute("select chatdesk.create_operator('a', 2)").fetchone()[0]
        user = conn.execute("select chatdesk.create_real_user('u')").fetchone()[0]
        conn.execute("update chatdesk.settings set value = '100' where key = 'max_open_chats_per_user'")  # one user, many chats
        for _ in range(3):
            conn.execute("select chatdesk.send_user_message(chatdesk.start_chat(%s), 'hi')", (user,))
        conn.execute("select chatdesk.claim_next_chat(%s)", (op,))
    # many commands in a row, each with enough statements to have been prepared
    for _ in range(3):
        assert json.loads(cli(migrated, "rollup", "--json").stdout)["days"]
        assert json.loads(cli(migrated, "status", "--json").stdout)["queue_depth"] == 2
        cli(migrated, "verify")
        cli(migrated, "release-idle", "--idle-after", "1h")
    backfill = cli(migrated, "rollup", "--from", "2026-01-01", "--to", "2026-02-15", "--json")
    assert len(json.loads(backfill.stdout)["days"]) == 46
    tap = cli(empty, "test", timeout=300)  # the suite expects a database without chats
    assert "Result: PASS" in tap.stdout


def test_two_rollups_and_a_holder_through_the_pooler(pooled):
    migrated, _ = pooled
    with psycopg.connect(migrated, autocommit=True, prepare_threshold=None) as conn:
        conn.execute("select chatdesk.create_operator('a')")
    args = ["--database-url", migrated, "rollup", "--from", "2026-01-01", "--to", "2026-01-20", "--json"]
    procs = [subprocess.Popen([sys.executable, "-m", "chatdesk", *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    # another rollup's transaction holds the lock: --no-wait skips, a plain rollup waits for it
    holder = psycopg.connect(migrated, prepare_threshold=None)
    holder.execute("select chatdesk.rollup_operator_stats('2026-01-01')")
    skipped = cli(migrated, "rollup", "--no-wait", "--json")
    assert json.loads(skipped.stdout)["skipped"] is True
    waiting = subprocess.Popen([sys.executable, "-m", "chatdesk", "--database-url", migrated, "rollup", "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    time.sleep(1.0)
    assert waiting.poll() is None, "the rollup did not wait for the holder"
    holder.commit()
    holder.close()
    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0 and len(json.loads(out)["days"]) == 2, err


def test_an_app_login_cannot_take_the_runners_locks(pooled, pgbouncer, app_login, db_url):
    """Advisory locks on the keys 0.1.0 used ("chat" + 1, + 2), or the lock rows themselves: an app login
    blocks neither migrate nor rollup."""
    migrated, _ = pooled
    app_url = pgbouncer(conninfo_to_dict(db_url)["dbname"], user=app_login)
    app = psycopg.connect(app_url, prepare_threshold=None)
    app.execute("select pg_advisory_lock(x) from unnest(array[109299962740737, 109299962740738]) x")
    with pytest.raises(psycopg.Error) as refused:
        app.execute("select * from chatdesk.runner_locks for update")
    assert refused.value.sqlstate == NOT_ALLOWED
    app.rollback()
    app.execute("select pg_advisory_lock(x) from unnest(array[109299962740737, 109299962740738]) x")
    assert json.loads(cli(migrated, "rollup", "--no-wait", "--json", timeout=30).stdout)["skipped"] is False
    cli(migrated, "migrate", timeout=60)
    app.close()


@pytest.fixture
def app_login(db_url):
    """The pooler's test login chatdesk_pool_app, a member of chatdesk_app (roles are cluster-wide)."""
    login = "chatdesk_pool_app"
    admin_execute(db_url, f"drop role if exists {login}", f"create role {login} login in role chatdesk_app")
    yield login
    admin_execute(db_url, f"drop role if exists {login}")


def test_scoped_and_unscoped_transactions_on_pooled_connections(pgbouncer, app_login, db_url):
    """Operator consoles (each transaction narrowed with act_as_operator),
    unscoped backends and visitors, all through the pooler at once, some
    clients also setting chatdesk.operator_id at session level. Every scoped
    read sees only its operator's chats; every unscoped read sees them all."""
    migrated = pgbouncer(conninfo_to_dict(db_url)["dbname"], user=app_login)
    with psycopg.connect(db_url, autocommit=True) as conn:
        ops = [str(conn.execute("select chatdesk.create_operator(%s, 3)", (f"op{i}",)).fetchone()[0]) for i in range(4)]
        user = conn.execute("select chatdesk.create_real_user('u')").fetchone()[0]
        conn.execute("update chatdesk.settings set value = '100' where key = 'max_open_chats_per_user'")  # one user, many chats
        chats = [str(conn.execute("select chatdesk.start_chat(%s)", (user,)).fetchone()[0]) for _ in range(40)]
    leaks, reads = [], {"scoped": 0, "unscoped": 0}
    deadline = time.monotonic() + 8

    def worker(index):
        rng = random.Random(index)
        op = ops[index % len(ops)]
        scoped = index % 3 != 2
        with psycopg.connect(migrated, autocommit=True, prepare_threshold=None) as conn:
            if index % 4 == 0:  # a careless client: session-level settings must change nothing
                conn.execute("select set_config('chatdesk.operator_id', %s, false)", (op,))
            while time.monotonic() < deadline:
                try:
                    with conn.transaction():
                        if scoped:
                            conn.execute("select chatdesk.act_as_operator(%s)", (op,))
                            foreign = conn.execute(
                                "select count(*) from chatdesk.chats where assigned_operator_id is distinct from %s",
                                (op,)).fetchone()[0]
                            if foreign:
                                leaks.append(f"worker {index} acting for {op} saw {foreign} chats of others")
                            reads["scoped"] += 1
                            # one write per transaction, as the API is meant to be used
                            mine = conn.execute("select id from chatdesk.chats").fetchall()
                            if rng.random() < 0.5 or not mine:
                                conn.execute("select chatdesk.claim_next_chat(%s)", (op,))
                            else:
                                conn.execute("select * from chatdesk.send_operator_message(%s, %s, 'hi')",
                                             (rng.choice(mine)[0], op))
                        else:
                            total = conn.execute("select count(*) from chatdesk.chats").fetchone()[0]
                            if total != len(chats):
                                leaks.append(f"unscoped worker {index} saw {total} of {len(chats)} chats")
                            reads["unscoped"] += 1
                            conn.execute("select chatdesk.send_user_message(%s, 'q')", (rng.choice(chats),))
                except psycopg.Error as error:
                    assert error.sqlstate in (AT_CAPACITY, NOT_ASSIGNEE), error

    run_threads(12, worker)
    assert not leaks, leaks[:5]
    assert reads["scoped"] > 100 and reads["unscoped"] > 50, reads
    with psycopg.connect(db_url, autocommit=True, options="-c search_path=chatdesk") as conn:
        broken = {name: conn.execute(sql).fetchone()[0] for name, sql in INVARIANTS.items()}
    assert all(v == 0 for v in broken.values()), broken


def test_schedule_runs_through_the_pooler(pooled):
    migrated, _ = pooled
    proc = subprocess.Popen([sys.executable, "-m", "chatdesk", "--database-url", migrated, "schedule",
                             "--idle-every", "1s", "--rollup-every", "1s"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    lines = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sum("rolled up" in line for line in lines) < 3:
            lines.append(proc.stdout.readline())
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    lines += out.splitlines()
    assert proc.returncode == 0, err
    assert sum("rolled up" in line for line in lines) >= 3 and any("release-idle: released" in line for line in lines)
    assert not any("failed" in line for line in lines), lines
