"""`chatdesk migrate`: concurrent runs, a killed run, a failing migration."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import psycopg
from chatdesk import cli, migrate, resources
from click.testing import CliRunner
from conftest import ROOT
from helpers import catalog_schema, chatdesk_backends, run_cli


def applied_ids(conninfo: str) -> list[str]:
    with psycopg.connect(conninfo) as conn:
        return [r[0] for r in conn.execute("select migration_id from _yoyo_migration order by 1")]


def test_two_migrates_at_once_both_succeed_and_apply_once(empty_db_url, db_url):
    procs = [
        subprocess.Popen([sys.executable, "-m", "chatdesk", "--database-url", empty_db_url, "migrate"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    stdout = "".join(out for out, _ in outputs)
    every = sorted(p.name.removesuffix(".sql") for p in resources.migrations_dir().glob("*.sql"))
    for migration_id in every:
        assert stdout.count(f"Applying {migration_id} ... ok") == 1, stdout
    assert "No pending migrations." in stdout
    with psycopg.connect(empty_db_url) as conn:
        applies = conn.execute("select migration_id, count(*) from _yoyo_log where operation = 'apply' group by 1").fetchall()
    assert sorted(applies) == [(m, 1) for m in every]
    assert catalog_schema(empty_db_url) == catalog_schema(db_url)


def test_a_killed_migrate_leaves_nothing_to_clean_by_hand(empty_db_url, db_url):
    # Hold "create schema chatdesk" open in another transaction, so the first
    # migration blocks inside its own transaction, after yoyo wrote its lock row.
    # A short lease, so the test need not wait the default 30 s for it to lapse.
    lease = {**os.environ, "CHATDESK_MIGRATE_LEASE_SECONDS": "3"}
    blocker = psycopg.connect(empty_db_url)
    blocker.execute("create schema chatdesk")
    proc = subprocess.Popen([sys.executable, "-m", "chatdesk", "--database-url", empty_db_url, "migrate"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=lease)
    chatdesk_backends(empty_db_url, "wait_event_type = 'Lock'")  # blocked inside the first migration
    with psycopg.connect(empty_db_url, autocommit=True) as watcher:
        assert watcher.execute("select count(*) from yoyo_lock").fetchone()[0] == 1
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    blocker.rollback()
    blocker.close()

    result = run_cli("--database-url", empty_db_url, "migrate", env={"CHATDESK_MIGRATE_LEASE_SECONDS": "3"})
    assert result.returncode == 0, result.stderr
    assert "Took over the migrate lock of an interrupted run" in result.stdout
    assert catalog_schema(empty_db_url) == catalog_schema(db_url)


def test_a_failing_migration_rolls_back_and_says_why(empty_db_url, tmp_path, monkeypatch):
    broken = tmp_path / "migrations"
    shutil.copytree(resources.migrations_dir(), broken)
    (broken / "0999.broken.sql").write_text(
        "-- A migration that fails half-way.\n"
        "create table chatdesk.half_done (id int);\n"
        "insert into chatdesk.nonexistent values (1);\n"
    )
    monkeypatch.setattr(resources, "migrations_dir", lambda: broken)
    result = CliRunner().invoke(cli.cli, ["--database-url", empty_db_url, "migrate"])
    assert result.exit_code == 1
    assert "Error: migration 0999.broken failed and was rolled back:" in result.output
    assert 'relation "chatdesk.nonexistent" does not exist' in result.output
    assert "Traceback" not in result.output
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("select to_regclass('chatdesk.half_done')").fetchone()[0] is None
        assert conn.execute("select count(*) from yoyo_lock").fetchone()[0] == 0
    assert "0999.broken" not in applied_ids(empty_db_url)
    assert "0005.stats" in applied_ids(empty_db_url)


def test_migrate_list_shows_applied_and_pending(empty_db_url):
    result = run_cli("--database-url", empty_db_url, "migrate", "--list")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "pending  0001.schema"
    migrate.migrate(empty_db_url, echo=lambda *a, **k: None)
    result = run_cli("--database-url", empty_db_url, "migrate", "--list")
    assert all(line.startswith("applied  ") for line in result.stdout.splitlines())


def test_released_migrations_never_change():
    """Migrations are append-only once released: each file listed in
    migrations/released.sha256 still has the checksum it was released with."""
    import hashlib

    listed = (ROOT / "migrations" / "released.sha256").read_text().split("\n")
    entries = [line.split() for line in listed if line.strip()]
    assert entries, "no released migrations listed"
    changed = [name for digest, name, release in entries
               if hashlib.sha256((ROOT / "migrations" / name).read_bytes()).hexdigest() != digest]
    assert not changed, f"released migrations changed (add a new migration instead): {changed}"
    released = {name for _, name, _ in entries}
    on_disk = sorted(p.name for p in (ROOT / "migrations").glob("*.sql"))
    # every released file is still there, and new ones sort after all of them
    assert released <= set(on_disk)
    assert on_disk[:len(released)] == sorted(released), "a new migration must sort after every released one"
