"""Assignment under real concurrency, the claim's query plan, and the CLI."""

from __future__ import annotations

import json
import random
import threading
import time

import psycopg
from chatdesk.errors import AT_CAPACITY
from helpers import (
    UNANSWERED_BUT_WAITING_FOR_USER,
    CapacityMonitor,
    connect,
    run_cli,
    run_threads,
)

N_OPERATORS = 10
N_CHATS = 320
CAPACITY = 3


def setup_queue(url, n_chats=N_CHATS):
    with connect(url) as conn:
        ops = [conn.execute("select create_operator(%s, %s)", (f"op{i}", CAPACITY)).fetchone()[0]
               for i in range(N_OPERATORS)]
        user = conn.execute("select create_real_user('u')").fetchone()[0]
        conn.execute("update chatdesk.settings set value = '100' where key = 'max_open_chats_per_user'")  # one user, many chats
        conn.execute("""select chatdesk.send_user_message(chatdesk.start_chat(chatdesk.create_real_user('u' || g)), 'help')
                          from generate_series(1, %s) g""", (n_chats,))
        return ops, user


def claim_and_answer(url, ops, claimed, writers_done=None):
    """Each worker: claim until the queue is empty, answering to free capacity."""

    def worker(index):
        op = ops[index]
        rng = random.Random(index)
        with connect(url) as conn:
            idle_rounds = 0
            while idle_rounds < 3:
                try:
                    chat = conn.execute("select claim_next_chat(%s)", (op,)).fetchone()[0]
                except psycopg.Error as error:
                    assert error.sqlstate == AT_CAPACITY, error
                    chat = None
                if chat is not None:
                    claimed[index].append(chat)
                    idle_rounds = 0
                mine = [r[0] for r in conn.execute(
                    "select id from chats where assigned_operator_id = %s and chat_state = 'assigned'", (op,))]
                if mine and (chat is None or rng.random() < 0.5):
                    conn.execute("select * from send_operator_message(%s, %s, 'done')", (rng.choice(mine), op))
                elif chat is None and not mine:
                    if writers_done is None or writers_done.is_set():
                        idle_rounds += 1
                    time.sleep(0.005)

    run_threads(len(ops), worker)


def test_ten_operators_claim_every_chat_exactly_once(db_url):
    ops, _ = setup_queue(db_url)
    claimed = [[] for _ in ops]
    monitor = CapacityMonitor(db_url)
    monitor.start()
    claim_and_answer(db_url, ops, claimed)
    monitor.stop.set()
    monitor.join()

    everything = [c for got in claimed for c in got]
    assert len(everything) == N_CHATS, "every chat was claimed"
    assert len(set(everything)) == N_CHATS, "no chat was claimed twice"
    assert all(claimed), "every operator got work"
    assert monitor.samples > 10 and monitor.over == [], monitor.over
    with connect(db_url) as conn:
        # what the chat_events say matches what each claimer was given
        logged = conn.execute("select chat_id, operator_id from chat_events where reason = 'claim'").fetchall()
        given = {(chat, ops[i]) for i, got in enumerate(claimed) for chat in got}
        assert sorted(logged) == sorted(given)
        assert conn.execute("select count(*) from chats where chat_state <> 'waiting_real_user_reply'").fetchone()[0] == 0
        assert conn.execute("select * from verify_counters()").fetchall() == []


def test_claims_while_users_keep_writing(db_url):
    ops, _ = setup_queue(db_url)
    claimed = [[] for _ in ops]
    writers_done = threading.Event()
    with connect(db_url) as conn:
        chat_ids = [r[0] for r in conn.execute("select id from chats")]

    def user_writer(index):
        rng = random.Random(100 + index)
        with connect(db_url) as conn:
            for _ in range(250):
                conn.execute("select send_user_message(%s, 'more')", (rng.choice(chat_ids),))

    monitor = CapacityMonitor(db_url)
    monitor.start()
    writers = threading.Thread(target=lambda: (run_threads(3, user_writer), writers_done.set()))
    writers.start()
    claim_and_answer(db_url, ops, claimed, writers_done)
    writers.join()
    monitor.stop.set()
    monitor.join()

    assert monitor.over == []
    with connect(db_url) as conn:
        logged = conn.execute("select chat_id, operator_id from chat_events where reason = 'claim' order by id").fetchall()
        given = [(chat, ops[i]) for i, got in enumerate(claimed) for chat in got]
        assert sorted(logged) == sorted(given), "the log and the claimers agree on every claim"
        # between two claims of one chat, it always left 'assigned' (never two owners)
        double = conn.execute("""
            select chat_id from (
                select chat_id, reason, lag(reason) over (partition by chat_id order by id) as prev
                  from chat_events where reason = 'claim' or from_state = 'assigned') e
             where reason = 'claim' and prev = 'claim'""").fetchall()
        assert double == []
        assert conn.execute("select count(*) from chats where chat_state in ('assigned', 'waiting_assignment')").fetchone()[0] == 0
        assert conn.execute(UNANSWERED_BUT_WAITING_FOR_USER).fetchall() == []
        assert conn.execute("select * from verify_counters()").fetchall() == []


def test_two_claims_by_one_operator_at_once_respect_capacity_one(db_url):
    with connect(db_url) as conn:
        op = conn.execute("select create_operator('solo', 1)").fetchone()[0]
        user = conn.execute("select create_real_user('u')").fetchone()[0]
        conn.execute("update chatdesk.settings set value = '100' where key = 'max_open_chats_per_user'")  # one user, many chats
    for _ in range(40):
        with connect(db_url) as conn:
            conn.execute("""select chatdesk.send_user_message(chatdesk.start_chat(chatdesk.create_real_user('u')), 'x')
                              from generate_series(1, 2)""")
        barrier = threading.Barrier(2)
        results = []

        def claim(_):
            with connect(db_url) as conn:
                barrier.wait()
                try:
                    results.append(conn.execute("select claim_next_chat(%s)", (op,)).fetchone()[0])
                except psycopg.Error as error:
                    results.append(error.sqlstate)

        run_threads(2, claim)
        assert results.count(AT_CAPACITY) == 1 and len(results) == 2, "exactly one of the two claims passes"
        with connect(db_url) as conn:
            assert conn.execute("select assigned_chats from operator_load where operator_id = %s", (op,)).fetchone()[0] == 1
            conn.execute("update chats set chat_state = 'closed', state_reason = 'close' where chat_state <> 'closed'")


def test_the_claim_walks_the_queue_index_and_reads_one_chat(db_url):
    """Measured by what the server did (its statistics), not read from the function's text."""
    with connect(db_url) as conn:
        op = conn.execute("select create_operator('Ann', 5)").fetchone()[0]
        user = conn.execute("select create_real_user('u')").fetchone()[0]
        conn.execute("update chatdesk.settings set value = '100' where key = 'max_open_chats_per_user'")  # one user, many chats
        # a realistic table: most chats long past the queue, a few waiting
        conn.execute("insert into chats (real_user_id) select %s from generate_series(1, 20000)", (user,))
        conn.execute("""select chatdesk.send_user_message(id, 'x') from chats
                         where id in (select id from chats order by id limit 2000)""")
        conn.execute("analyze chats; analyze queue")

        def stats():
            conn.execute("select pg_stat_force_next_flush()")
            conn.execute("select 1")  # the flush happens at the end of a transaction
            conn.execute("select pg_stat_clear_snapshot()")
            return conn.execute(
                """select (select seq_scan from pg_stat_user_tables where relid = 'chatdesk.chats'::regclass),
                          (select seq_scan from pg_stat_user_tables where relid = 'chatdesk.queue'::regclass),
                          (select idx_scan from pg_stat_user_indexes where indexrelid = 'chatdesk.queue_order_idx'::regclass),
                          (select idx_tup_fetch from pg_stat_user_tables where relid = 'chatdesk.chats'::regclass)""").fetchone()
        before = stats()
        oldest = conn.execute("select chat_id from queue order by queued_at, chat_id limit 1").fetchone()[0]
        after_lookup = stats()
        assert conn.execute("select claim_next_chat(%s)", (op,)).fetchone()[0] == oldest
        after = stats()
    claim = [a - b for a, b in zip(after, after_lookup)]
    assert claim[0] == 0 and claim[1] == 0, f"the claim scanned a table sequentially: {claim}"
    assert claim[2] >= 1, "the claim did not walk queue_order_idx"
    assert claim[3] < 20, f"the claim fetched {claim[3]} chat rows by index: it should read about one"
    assert before[0] == after_lookup[0]


def test_release_idle_and_status_commands(db_url):
    with connect(db_url) as conn:
        op = conn.execute("select create_operator('Ann', 2)").fetchone()[0]
        user = conn.execute("select create_real_user('u')").fetchone()[0]
        conn.execute("update chatdesk.settings set value = '100' where key = 'max_open_chats_per_user'")  # one user, many chats
        conn.execute("select chatdesk.send_user_message(chatdesk.start_chat(%s), 'x') from generate_series(1, 3)", (user,))
        conn.execute("select claim_next_chat(%s)", (op,))
        conn.execute("select claim_next_chat(%s)", (op,))
        conn.execute("update operators set last_active_at = now() - interval '10 minutes'")

    status = run_cli("--database-url", db_url, "status", "--json")
    assert status.returncode == 0, status.stderr
    snap = json.loads(status.stdout)
    assert snap["queue_depth"] == 1 and snap["oldest_waiting_seconds"] >= 0
    assert snap["operators"][0]["assigned"] == 2 and snap["operators"][0]["capacity"] == 2
    assert snap["chats_held_by_idle_operators"] == 2

    human = run_cli("--database-url", db_url, "status")
    assert "Queue: 1 waiting" in human.stdout and "2/2" in human.stdout and "IDLE" in human.stdout

    kept = run_cli("--database-url", db_url, "release-idle", "--idle-after", "1h")
    assert kept.stdout.strip() == "Released 0 chats of operators idle for over 1h00m."
    released = run_cli("--database-url", db_url, "release-idle", "--idle-after", "90s")
    assert released.returncode == 0
    assert released.stdout.strip() == "Released 2 chats of operators idle for over 90s."
    snap = json.loads(run_cli("--database-url", db_url, "status", "--json").stdout)
    assert snap["queue_depth"] == 3 and snap["chats_held_by_idle_operators"] == 0


def test_release_idle_rejects_a_bad_duration():
    result = run_cli("release-idle", "--idle-after", "soon")
    assert result.returncode == 2 and "Error: Invalid value for '--idle-after'" in result.stderr


def test_a_claim_passes_over_a_chat_being_written_to_at_once(db_url):
    """Claimers never wait: with the oldest queued chat's row held by a writer, a claim returns the next one."""
    with connect(db_url) as conn:
        op = conn.execute("select create_operator('Ann', 5)").fetchone()[0]
        user = conn.execute("select create_real_user('u')").fetchone()[0]
        conn.execute("update chatdesk.settings set value = '100' where key = 'max_open_chats_per_user'")  # one user, many chats
        chats = [conn.execute("select start_chat(%s)", (user,)).fetchone()[0] for _ in range(2)]
        for chat in chats:
            conn.execute("select send_user_message(%s, 'first')", (chat,))
    with connect(db_url) as writer, connect(db_url) as claimer:
        with writer.transaction():
            writer.execute("select send_user_message(%s, 'typing more')", (chats[0],))  # holds the oldest chat's row
            claimer.execute("set statement_timeout = '3s'")
            started = time.monotonic()
            assert claimer.execute("select claim_next_chat(%s)", (op,)).fetchone()[0] == chats[1]
            assert time.monotonic() - started < 1.0
        # the writer is done: the oldest chat is next, still first in line
        assert claimer.execute("select claim_next_chat(%s)", (op,)).fetchone()[0] == chats[0]


def test_an_idle_sweep_passes_over_a_chat_being_written_to_at_once(db_url):
    """A chat being written to is not idle: the sweep returns at once and releases the others."""
    with connect(db_url) as conn:
        op = conn.execute("select create_operator('Ann', 5)").fetchone()[0]
        user = conn.execute("select create_real_user('u')").fetchone()[0]
        conn.execute("update chatdesk.settings set value = '100' where key = 'max_open_chats_per_user'")  # one user, many chats
        chats = [conn.execute("select start_chat(%s)", (user,)).fetchone()[0] for _ in range(3)]
        for chat in chats:
            conn.execute("select send_user_message(%s, 'hello')", (chat,))
            conn.execute("select claim_next_chat(%s)", (op,))
        conn.execute("update operators set last_active_at = now() - interval '1 hour'")
    with connect(db_url) as writer, connect(db_url) as sweeper:
        with writer.transaction():
            writer.execute("select send_user_message(%s, 'still here')", (chats[0],))
            sweeper.execute("set statement_timeout = '3s'")
            started = time.monotonic()
            assert sweeper.execute("select release_idle_chats('5 minutes')").fetchone()[0] == 2
            assert time.monotonic() - started < 1.0
        states = dict(sweeper.execute("select id, chat_state from chats where id = any(%s)", (chats,)).fetchall())
    assert states == {chats[0]: "assigned", chats[1]: "waiting_assignment", chats[2]: "waiting_assignment"}
