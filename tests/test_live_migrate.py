"""`chatdesk migrate` on a database that is serving: it must not deadlock
with the application, nor queue its queries behind a lock for long, nor leave
anything behind when it gives up. And an upgrade from release 0.1.0, under
traffic, loses nothing."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import psycopg
import pytest
from chatdesk.errors import AT_CAPACITY, NOT_ASSIGNEE
from conftest import ROOT
from helpers import INVARIANTS, run_cli

RELEASE_0_1_0 = "4e5fc30"


def forget_loaded(url: str, *files: str) -> None:
    """Make migrate believe these sql/ files changed (as a new release's would)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("delete from chatdesk.sql_loaded where file = any(%s)", (list(files),))


class Traffic(threading.Thread):
    """Users writing, operators claiming and answering, as fast as `rate` allows
    (None: flat out); records every call's latency and every error."""

    def __init__(self, url: str, rate: float | None = None, workers: int = 4):
        super().__init__(daemon=True)
        self.url, self.rate, self.workers = url, rate, workers
        self.stop = threading.Event()
        self.latencies: list[tuple[float, float]] = []  # (started, seconds)
        self.errors: list[str] = []
        with psycopg.connect(url, autocommit=True) as conn:
            self.ops = [conn.execute("select chatdesk.create_operator(%s, 50)", (f"t{i}",)).fetchone()[0]
                        for i in range(workers)]
            user = conn.execute("select chatdesk.create_real_user('traffic')").fetchone()[0]
            conn.execute("update chatdesk.settings set value = '100' where key = 'max_open_chats_per_user'")  # one user, many chats
            self.chats = [conn.execute("select chatdesk.start_chat(%s)", (user,)).fetchone()[0] for _ in range(60)]

    def worker(self, index: int) -> None:
        op = self.ops[index]
        interval = self.workers / self.rate if self.rate else 0
        with psycopg.connect(self.url, autocommit=True) as conn:
            n = 0
            while not self.stop.is_set():
                n += 1
                started = time.monotonic()
                try:
                    if n % 3 == 0:
                        chat = conn.execute("select chatdesk.claim_next_chat(%s)", (op,)).fetchone()[0]
                        if chat:
                            conn.execute("select * from chatdesk.send_operator_message(%s, %s, 'a')", (chat, op))
                    else:
                        conn.execute("select chatdesk.send_user_message(%s, 'q')", (self.chats[(n * 7 + index) % 60],))
                except psycopg.Error as error:
                    if error.sqlstate not in (AT_CAPACITY, NOT_ASSIGNEE):
                        self.errors.append(f"{error.sqlstate}: {error}")
                took = time.monotonic() - started
                self.latencies.append((started, took))
                if interval > took:
                    time.sleep(interval - took)

    def run(self) -> None:
        threads = [threading.Thread(target=self.worker, args=(i,), daemon=True) for i in range(self.workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def longest_stall(self, since: float, until: float) -> float:
        return max((took for started, took in self.latencies if since <= started <= until), default=0.0)


def test_nothing_pending_touches_nothing_even_behind_an_open_transaction(db_url):
    """An application transaction sits idle after reading every table: a migrate
    with nothing to do finishes at once, and takes no lock the application waits on."""
    reader = psycopg.connect(db_url)
    for table in ("chats", "messages", "operators", "real_users", "chat_events", "operator_daily_stats"):
        reader.execute(f"select count(*) from chatdesk.{table}")
    try:
        started = time.monotonic()
        result = run_cli("--database-url", db_url, "migrate", timeout=60)
        assert result.returncode == 0, result.stderr
        assert "No pending migrations." in result.stdout and "sql/ is up to date." in result.stdout
        assert time.monotonic() - started < 20
    finally:
        reader.rollback()
        reader.close()


def test_a_reload_gives_way_to_a_long_transaction_and_says_so(db_url):
    """A pending policy change needs the tables; an application transaction
    holds them. Migrate retries with short waits, so the application's other
    queries never queue behind it for long, then gives up with one Error line,
    having changed nothing; once the transaction ends, it goes through."""
    forget_loaded(db_url, "940_policies.sql")
    planned = run_cli("--database-url", db_url, "migrate", "--plan")
    assert planned.returncode == 0 and planned.stdout.strip() == "reload  sql/940_policies.sql", planned.stdout
    holder = psycopg.connect(db_url)
    holder.execute("select count(*) from chatdesk.chats")  # an idle transaction keeps its lock
    stalls = []
    done = threading.Event()

    def app():
        with psycopg.connect(db_url, autocommit=True) as conn:
            while not done.is_set():
                started = time.monotonic()
                conn.execute("select count(*) from chatdesk.messages")
                stalls.append(time.monotonic() - started)
                time.sleep(0.02)

    reader = threading.Thread(target=app, daemon=True)
    reader.start()
    try:
        result = run_cli("--database-url", db_url, "migrate", env={"CHATDESK_MIGRATE_RELOAD_ATTEMPTS": "3"}, timeout=60)
    finally:
        done.set()
        reader.join(timeout=10)
    assert result.returncode == 1
    assert "could not lock chatdesk's tables" in result.stderr and "Traceback" not in result.stderr
    assert max(stalls) < 2.0, f"the application queued behind migrate for {max(stalls):.2f} s"
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute("select count(*) from chatdesk.sql_loaded where file = '940_policies.sql'").fetchone()[0] == 0
    holder.rollback()
    holder.close()
    again = run_cli("--database-url", db_url, "migrate", timeout=60)
    assert again.returncode == 0 and "940_policies.sql" in again.stdout, again.stderr


@pytest.mark.parametrize("rate", [1000, None], ids=["1000 calls/s", "flat out"])
def test_migrates_under_traffic_never_deadlock_and_lose_nothing(db_url, rate):
    """Traffic at 1,000 calls/s and flat out, while migrate runs again and again,
    half the runs reloading triggers and policies: no run fails, the
    application sees no error, and every invariant holds afterwards."""
    traffic = Traffic(db_url, rate)
    traffic.start()
    try:
        time.sleep(0.5)
        for run in range(6):
            if run % 2:
                forget_loaded(db_url, "900_triggers.sql", "940_policies.sql", "110_messages.sql")
            result = run_cli("--database-url", db_url, "migrate", timeout=120)
            assert result.returncode == 0, result.stdout + result.stderr
    finally:
        traffic.stop.set()
        traffic.join(timeout=30)
    assert not traffic.errors, traffic.errors[:5]
    assert len(traffic.latencies) > 200
    with psycopg.connect(db_url, autocommit=True, options="-c search_path=chatdesk") as conn:
        broken = {name: conn.execute(sql).fetchone()[0] for name, sql in INVARIANTS.items()}
    assert all(v == 0 for v in broken.values()), broken


def test_an_upgrade_from_0_1_0_under_traffic(empty_db_url, db_url, tmp_path):
    """A database built by release 0.1.0 (its migrations and sql/ from git),
    serving traffic, upgraded to this version while the traffic runs."""
    release = tmp_path / "0.1.0"
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", RELEASE_0_1_0, "runner", "sql",
                              "migrations", "tests/pgtap"], capture_output=True, check=False)
    assert archive.returncode == 0, f"release 0.1.0 must be in the git history: {archive.stderr.decode()}"
    release.mkdir()
    subprocess.run(["tar", "-x", "-C", str(release)], input=archive.stdout, check=True)
    # 0.1.0's runner kept its package in runner/ and read sql/ next to it
    (release / "chatdesk").symlink_to(release / "runner")
    old = subprocess.run([sys.executable, "-c", "from chatdesk.cli import main; main()",
                          "--database-url", empty_db_url, "migrate"],
                         capture_output=True, text=True, cwd=release, env={"PYTHONPATH": str(release),
                                                                            "PATH": "/usr/bin:/bin"}, timeout=120)
    assert old.returncode == 0, old.stdout + old.stderr
    assert "0006.roles ... ok" in old.stdout
    traffic = Traffic(empty_db_url, rate=500)
    traffic.start()
    try:
        time.sleep(1.0)
        before = len(traffic.latencies)
        upgrade = run_cli("--database-url", empty_db_url, "migrate", timeout=120)
        assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
        assert "Applying 0010.runner_bookkeeping ... ok" in upgrade.stdout
        time.sleep(1.0)
    finally:
        traffic.stop.set()
        traffic.join(timeout=30)
    assert not traffic.errors, traffic.errors[:5]
    assert len(traffic.latencies) > before
    with psycopg.connect(empty_db_url, autocommit=True, options="-c search_path=chatdesk") as conn:
        written = conn.execute("select count(*) from messages").fetchone()[0]
        broken = {name: conn.execute(sql).fetchone()[0] for name, sql in INVARIANTS.items()}
    assert written > 0 and all(v == 0 for v in broken.values()), broken
    verify = run_cli("--database-url", empty_db_url, "verify")
    assert verify.returncode == 0, verify.stdout
    assert run_cli("--database-url", empty_db_url, "migrate", "--plan").stdout.startswith("Nothing to do")
