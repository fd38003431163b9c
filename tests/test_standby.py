"""A real hot standby (pg_basebackup -R): readers work there, writers refuse at once, status shows the lag,
and watch delivers every change once, in order, through the standby's lag."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import psycopg
import pytest
from conftest import ROOT, url_for, wait_for_replay
from helpers import assert_one_error_line, generate_traffic, run_cli
from psycopg.conninfo import conninfo_to_dict


def on_standby(db_url: str, standby: str) -> str:
    return url_for(standby, conninfo_to_dict(db_url)["dbname"])


@pytest.fixture
def replicated(db_url, standby):
    """Traffic and a rollup on the primary, replayed on the standby: (primary url, standby url)."""
    with psycopg.connect(db_url, autocommit=True, options="-c search_path=chatdesk,public") as conn:
        generate_traffic(conn, steps=200, lifecycle=True)
        conn.execute("select rollup_operator_stats('2026-03-28')")
    replica = on_standby(db_url, standby)
    wait_for_replay(db_url, replica)
    return db_url, replica


def test_readers_work_on_the_standby(replicated):
    primary, replica = replicated
    status = run_cli("--database-url", replica, "status", "--json")
    assert status.returncode == 0, status.stderr
    snap = json.loads(status.stdout)
    # caught up, bar WAL that keeps arriving (the primary's own background records)
    assert snap["replication"]["role"] == "standby" and 0 <= snap["replication"]["replay_behind_bytes"] < 1_000_000
    mine = json.loads(run_cli("--database-url", primary, "status", "--json").stdout)
    assert mine["replication"]["role"] == "primary"
    def timeless(s):  # ages differ by the time between the two calls
        return (s["queue_depth"], s["chats_by_state"], [{**o, "idle_seconds": None} for o in s["operators"]],
                [{**d, "age_seconds": None} for d in s["stats"]])
    assert timeless(snap) == timeless(mine)

    verify = run_cli("--database-url", replica, "verify")
    assert verify.returncode == 0 and "All counters equal their recounts" in verify.stdout, verify.stdout + verify.stderr

    args = ["report", "--from", "2026-03-27", "--to", "2026-03-29", "--format", "json"]
    assert json.loads(run_cli("--database-url", replica, *args).stdout) == \
        json.loads(run_cli("--database-url", primary, *args).stdout)

    query = """select row_to_json(s)::text from chatdesk.operator_daily_stats s order by operator_id, stat_date"""
    rows = {}
    for name, url in (("primary", primary), ("standby", replica)):
        with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
            conn.execute("set local role chatdesk_reporting")
            rows[name] = conn.execute(query).fetchall()
            conn.execute("reset role")
            rows[name + " feed"] = conn.execute("select cursor from chatdesk.changes_since(null, 10000)").fetchall()
    assert rows["standby"] == rows["primary"] and len(rows["primary"]) == 4  # the four active operators
    assert rows["standby feed"] == rows["primary feed"] and len(rows["primary feed"]) > 100


@pytest.mark.parametrize("args, command", [
    (["migrate"], "migrate"),
    (["rollup"], "rollup"),
    (["rollup", "--date", "2026-03-28"], "rollup"),
    (["release-idle"], "release-idle"),
    (["verify", "--repair"], "verify --repair"),
    (["create-login", "someone", "--kind", "app"], "create-login"),
    (["schedule"], "schedule"),
])
def test_writers_refuse_at_once_on_the_standby(replicated, args, command):
    primary, replica = replicated
    started = time.monotonic()
    result = run_cli("--database-url", replica, *args, timeout=30)
    assert_one_error_line(result)
    host = conninfo_to_dict(replica)
    assert (f"{host['host']}:{host['port']}/{host['dbname']} is a read-only standby; "
            f"run chatdesk {command} against the primary") in result.stderr
    assert time.monotonic() - started < 10


def test_status_shows_the_standbys_lag(replicated, standby):
    primary, replica = replicated
    with psycopg.connect(standby, autocommit=True) as admin:
        admin.execute("select pg_wal_replay_pause()")
        try:
            with psycopg.connect(primary, autocommit=True) as conn:
                conn.execute("select chatdesk.create_operator('late')")
                conn.execute("select pg_switch_wal()")  # ship it now
            deadline = time.monotonic() + 20
            while True:
                snap = json.loads(run_cli("--database-url", replica, "status", "--json").stdout)
                if snap["replication"]["replay_behind_bytes"] or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert snap["replication"]["replay_behind_bytes"] > 0
            text = run_cli("--database-url", replica, "status").stdout
            assert "Replication: a read-only standby" in text and "bytes of WAL received but not replayed" in text
            assert "late" not in json.dumps(snap["operators"])  # not replayed yet: not seen
        finally:
            admin.execute("select pg_wal_replay_resume()")
    wait_for_replay(primary, replica)
    snap = json.loads(run_cli("--database-url", replica, "status", "--json").stdout)
    assert snap["replication"]["replay_behind_bytes"] < 1_000_000 and "late" in json.dumps(snap["operators"])


def test_watch_on_the_standby_delivers_every_change_once_in_order(db_url, standby, tmp_path):
    """Four writers on the primary; the standby's replay is paused for a while
    in the middle (lag of seconds); watch follows the standby throughout."""
    replica = on_standby(db_url, standby)
    with psycopg.connect(db_url, autocommit=True) as conn:
        ops = [conn.execute("select chatdesk.create_operator(%s, 50)", (f"op{i}",)).fetchone()[0] for i in range(4)]
        user = conn.execute("select chatdesk.create_real_user('u')").fetchone()[0]
        conn.execute("update chatdesk.settings set value = '100' where key = 'max_open_chats_per_user'")  # one user, many chats
        start = conn.execute("select chatdesk.feed_position()").fetchone()[0]
    wait_for_replay(db_url, replica)
    # stdout to a file: thousands of lines would fill a pipe nobody reads until the end
    out_file = (tmp_path / "watch.out").open("w+")
    watch = subprocess.Popen([sys.executable, "-m", "chatdesk", "--database-url", replica, "watch", "--json",
                              "--since", start], stdout=out_file, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    stop, errors = threading.Event(), []

    def writer(op):
        try:
            with psycopg.connect(db_url, autocommit=True) as conn:
                while not stop.is_set():
                    chat = conn.execute("select chatdesk.start_chat(%s)", (user,)).fetchone()[0]
                    conn.execute("select chatdesk.send_user_message(%s, 'hi')", (chat,))
                    claimed = conn.execute("select chatdesk.claim_next_chat(%s)", (op,)).fetchone()[0]
                    if claimed:
                        conn.execute("select chatdesk.close_chat(%s)", (claimed,))
        except psycopg.Error as error:
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(op,)) for op in ops]
    for t in threads:
        t.start()
    try:
        time.sleep(1.5)
        with psycopg.connect(standby, autocommit=True) as admin:
            admin.execute("select pg_wal_replay_pause()")
            time.sleep(2.0)
            admin.execute("select pg_wal_replay_resume()")
        time.sleep(1.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    wait_for_replay(db_url, replica)
    time.sleep(1.0)  # the watcher's poll
    watch.send_signal(signal.SIGINT)
    _, err = watch.communicate(timeout=30)
    out_file.seek(0)
    out = out_file.read()
    assert "a read-only standby: NOTIFY does not reach it" in err, err
    seen = [json.loads(line)["cursor"] for line in out.splitlines()]
    with psycopg.connect(db_url, autocommit=True) as conn:
        written, cursor = [], start
        while batch := [r[0] for r in conn.execute("select cursor from chatdesk.changes_since(%s, 10000)", (cursor,))]:
            written += batch
            cursor = batch[-1]
    assert len(written) > 200
    assert seen == written, err  # every change, once, in the primary's order
