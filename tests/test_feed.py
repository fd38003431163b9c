"""The change feed: exactly once, in commit order, after any cursor (a late
committer included), per-chat sequences without gaps, scoped, resumable,
pruned with CD006 for a cursor too old, and working through a pooler."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict

import psycopg
import pytest
from chatdesk.errors import AT_CAPACITY, CURSOR_EXPIRED, NOT_ASSIGNEE, OUT_OF_RANGE
from chatdesk.feed import Feed
from conftest import ROOT
from helpers import chatdesk_backends, connect, run_threads, two_operators_two_visitors
from psycopg.conninfo import conninfo_to_dict


def all_changes(url):
    """Every change row, in feed order, as the owner sees them."""
    with connect(url) as conn:
        return [r[0] for r in conn.execute("select tx || ':' || id from changes order by tx, id")]


def read(conn, cursor=None):
    return conn.execute("select cursor, kind, chat_id::text, chat_seq from chatdesk.changes_since(%s, 10000)",
                        (cursor,)).fetchall()


def test_a_late_committer_is_delivered_in_its_place_exactly_once(db_url):
    with connect(db_url) as conn:
        user = conn.execute("select create_real_user('u')").fetchone()[0]
        conn.execute("update chatdesk.settings set value = '100' where key = 'max_open_chats_per_user'")  # one user, many chats
        early, late = (conn.execute("select start_chat(%s)", (user,)).fetchone()[0] for _ in range(2))
        cursor = read(conn)[-1][0]
    slow = psycopg.connect(db_url)  # takes its transaction id first, commits last
    slow.execute("select chatdesk.send_user_message(%s, 'slow')", (early,))
    with connect(db_url) as fast, connect(db_url) as reader:
        fast.execute("select send_user_message(%s, 'fast')", (late,))
        assert read(reader, cursor) == [], "a committed change waits behind the running older transaction"
        assert fast.execute("select count(*) from changes where chat_id = %s", (late,)).fetchone()[0] == 3
        slow.commit()
        got = read(reader, cursor)
        chats = [chat for _, _, chat, _ in got]
        assert chats == [str(early)] * 2 + [str(late)] * 2, "the late committer first, in its place"
        assert read(reader, got[-1][0]) == []
    slow.close()


def test_concurrent_writers_and_a_following_reader(db_url):
    """8 writers for 4 s (longer, up to 30 s, until they have written 250
    changes: deadlocks between them cost a second each on a slow machine); a
    reader follows with the Python API. It gets every change once, in feed
    order, and each chat's sequence without a gap."""
    with connect(db_url) as conn:
        ops = [conn.execute("select create_operator(%s, 5)", (f"op{i}",)).fetchone()[0] for i in range(4)]
        user = conn.execute("select create_real_user('u')").fetchone()[0]
        conn.execute("update chatdesk.settings set value = '100' where key = 'max_open_chats_per_user'")  # one user, many chats
        chats = [conn.execute("select start_chat(%s)", (user,)).fetchone()[0] for _ in range(30)]
    delivered = []
    feed = Feed(db_url, poll=0.05)
    reader = threading.Thread(target=lambda: delivered.extend(feed), daemon=True)
    reader.start()
    deadline, last_call = time.monotonic() + 4, time.monotonic() + 30
    written = []  # one entry per committed transaction's changes (appends are atomic)

    def busy() -> bool:
        now = time.monotonic()
        return now < deadline or (sum(written) < 250 and now < last_call)

    def writer(index):
        rng = random.Random(index)
        with connect(db_url) as conn:
            while busy():
                changes = 0
                try:
                    with conn.transaction():  # a few changes per transaction, sometimes held open a while
                        for _ in range(rng.randint(1, 3)):
                            if rng.random() < 0.6:
                                conn.execute("select send_user_message(%s, 'q')", (rng.choice(chats),))
                                changes += 1
                            else:
                                op = rng.choice(ops)
                                chat = conn.execute("select claim_next_chat(%s)", (op,)).fetchone()[0]
                                if chat:
                                    conn.execute("select * from send_operator_message(%s, %s, 'a')", (chat, op))
                                    changes += 2
                        if rng.random() < 0.1:
                            time.sleep(0.05)
                    written.append(changes)
                except psycopg.Error as error:
                    assert error.sqlstate in (AT_CAPACITY, NOT_ASSIGNEE, "40P01"), error

    run_threads(8, writer)
    expected = all_changes(db_url)
    wait = time.monotonic() + 10
    while len(delivered) < len(expected) and time.monotonic() < wait:
        time.sleep(0.05)
    feed.stop()
    reader.join(timeout=5)
    assert [c.cursor for c in delivered] == expected, "every change once, in order"
    per_chat = defaultdict(list)
    for change in delivered:
        per_chat[change.chat_id].append(change.chat_seq)
    assert all(seqs == list(range(1, len(seqs) + 1)) for seqs in per_chat.values()), "no gap in a chat's sequence"
    assert len(expected) > 200


def request(conn, sub, sql, params=()):
    with conn.transaction():
        conn.execute("set local role chatdesk_web")
        conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps({"sub": sub}),))
        return conn.execute(sql, params).fetchall()


def test_each_web_caller_gets_its_own_part_of_the_feed(db_url):
    p = two_operators_two_visitors(db_url)
    with connect(db_url) as conn:
        # ann hands v's chat back; bob takes it (after his own chat's queue rival) and answers
        conn.execute("select release_chat(%s, %s)", (p["a_chat"], p["a"]))
        conn.execute("select * from send_operator_message(%s, %s, 'bye')", (p["b_chat"], p["b"]))
        claimed = {str(conn.execute("select claim_next_chat(%s)", (p["b"],)).fetchone()[0]) for _ in range(2)}
        assert claimed == {p["queued"], p["a_chat"]}
        conn.execute("select * from send_operator_message(%s, %s, 'bob here', null, 1)", (p["a_chat"], p["b"]))
        rows = conn.execute("""select kind, chat_id::text, chat_state, from_state, operator_id::text, real_user_id::text,
                                      tx || ':' || id from changes order by tx, id""").fetchall()
    feed = "select cursor from chatdesk.changes_since()"
    with connect(db_url) as conn:
        ann = {r[0] for r in request(conn, p["a_login"], feed)}
        bob = {r[0] for r in request(conn, p["b_login"], feed)}
        vic = {r[0] for r in request(conn, p["v_login"], feed)}
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # nobody is refused the feed (42501)
            request(conn, "00000000-0000-0000-0000-000000000000", feed)

    def queue(r):
        return r[0] == "chat" and "waiting_assignment" in (r[2], r[3])

    assert ann == {r[6] for r in rows if r[4] == p["a"] or queue(r)}
    assert bob == {r[6] for r in rows if r[4] == p["b"] or queue(r)}
    assert vic == {r[6] for r in rows if r[5] == p["v"]}
    bob_here = [r[6] for r in rows if r[0] == "message" and r[1] == p["a_chat"] and r[4] == p["b"]]
    assert bob_here and bob_here[0] in bob and bob_here[0] not in ann, "the chat moved from ann's feed to bob's"


def test_bad_cursors_and_limits(db_url):
    with connect(db_url) as conn:
        for args, state in ((("nonsense", 10), OUT_OF_RANGE), ((None, 0), OUT_OF_RANGE),
                            ((None, 10001), OUT_OF_RANGE)):
            with pytest.raises(psycopg.Error) as error:
                conn.execute("select * from changes_since(%s, %s)", args)
            assert error.value.sqlstate == state


def test_retention_prunes_and_an_old_cursor_gets_cd006(db_url):
    with connect(db_url) as conn:
        user = conn.execute("select create_real_user('u')").fetchone()[0]
        conn.execute("update chatdesk.settings set value = '100' where key = 'max_open_chats_per_user'")  # one user, many chats
        chat = conn.execute("select start_chat(%s)", (user,)).fetchone()[0]
        conn.execute("select send_user_message(%s, 'early')", (chat,))
        first = read(conn)[0][0]  # a reader that has seen the chat's creation only
        conn.execute("update settings set value = '1 minute' where key = 'feed_retention'")
        with pytest.raises(psycopg.Error) as bad:
            conn.execute("update settings set value = '2 seconds' where key = 'feed_retention'")
        assert bad.value.sqlstate == OUT_OF_RANGE
        conn.execute("select set_config('chatdesk.clock', (now() + interval '2 minutes')::text, false)")
        assert conn.execute("select prune_changes()").fetchone()[0] == 3
        conn.execute("select send_user_message(%s, 'later')", (chat,))
        with pytest.raises(psycopg.Error) as expired:
            conn.execute("select * from changes_since(%s)", (first,)).fetchall()
        assert expired.value.sqlstate == CURSOR_EXPIRED and "Resynchronise" in (expired.value.diag.message_hint or "")
        position = conn.execute("select feed_position()").fetchone()[0]
        assert [r[1] for r in read(conn)] == ["message"]  # null: from the oldest kept (the chat was queued already)
        assert read(conn, position) == []
        # half a minute later, inside the 1-minute retention: the newer change is kept
        conn.execute("select set_config('chatdesk.clock', (now() + interval '150 seconds')::text, false)")
        assert conn.execute("select prune_changes()").fetchone()[0] == 0
        assert [r[1] for r in read(conn)] == ["message"]


def watch(url, *args):
    return subprocess.Popen([sys.executable, "-m", "chatdesk", "--database-url", url, "watch", "--json", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def lines_until(proc, count, timeout=20):
    got, deadline = [], time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            got.append(json.loads(line))
    return got


def test_watch_killed_and_resumed_loses_and_repeats_nothing(db_url):
    with connect(db_url) as conn:
        user = conn.execute("select create_real_user('u')").fetchone()[0]
        conn.execute("update chatdesk.settings set value = '100' where key = 'max_open_chats_per_user'")  # one user, many chats
        chat = conn.execute("select start_chat(%s)", (user,)).fetchone()[0]
        for n in range(10):
            conn.execute("select send_user_message(%s, %s)", (chat, f"m{n}"))
    first = watch(db_url, "--from-start")
    seen = lines_until(first, 5)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    with connect(db_url) as conn:
        for n in range(10):
            conn.execute("select send_user_message(%s, %s)", (chat, f"n{n}"))
    second = watch(db_url, "--since", seen[-1]["cursor"])
    seen += lines_until(second, len(all_changes(db_url)) - len(seen))
    second.send_signal(signal.SIGTERM)
    _, err = second.communicate(timeout=10)
    assert second.returncode == 0, err
    assert [c["cursor"] for c in seen] == all_changes(db_url)
    assert [c["chat_seq"] for c in seen] == list(range(1, len(seen) + 1))


def test_watch_through_a_transaction_pooler_polls(pgbouncer, db_url):
    pooled = pgbouncer(conninfo_to_dict(db_url)["dbname"])
    proc = watch(pooled, "--from-start")
    try:
        with connect(db_url) as conn:
            user = conn.execute("select create_real_user('u')").fetchone()[0]
            conn.execute("update chatdesk.settings set value = '100' where key = 'max_open_chats_per_user'")  # one user, many chats
            chat = conn.execute("select start_chat(%s)", (user,)).fetchone()[0]
            conn.execute("select send_user_message(%s, 'through the pooler')", (chat,))
        got = lines_until(proc, 3)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert [c["kind"] for c in got] == ["chat", "message", "chat"]
    assert "LISTEN hears nothing on this connection" in err


def test_watch_survives_a_killed_backend(db_url):
    """The server ends watch's connection mid-stream (as a restart or a
    failover would): it reconnects and goes on from its cursor."""
    with connect(db_url) as conn:
        user = conn.execute("select create_real_user('u')").fetchone()[0]
        conn.execute("update chatdesk.settings set value = '100' where key = 'max_open_chats_per_user'")  # one user, many chats
        chat = conn.execute("select start_chat(%s)", (user,)).fetchone()[0]
        conn.execute("select send_user_message(%s, 'before')", (chat,))
    proc = watch(db_url, "--from-start")
    try:
        seen = lines_until(proc, 3)
        with connect(db_url) as admin:
            killed = admin.execute("select count(pg_terminate_backend(pid)) from pg_stat_activity "
                                   "where application_name = 'chatdesk' and pid <> pg_backend_pid()").fetchone()[0]
            assert killed >= 1
            for n in range(5):
                admin.execute("select send_user_message(%s, %s)", (chat, f"after {n}"))
        seen += lines_until(proc, len(all_changes(db_url)) - len(seen))
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert "connection lost" in err and "resuming from" in err, err
    assert [c["cursor"] for c in seen] == all_changes(db_url)


def test_watch_starts_at_the_current_position(db_url):
    """Without --since or --from-start, watch prints only what happens after it starts."""
    with connect(db_url) as conn:
        chat = conn.execute("select start_chat(create_real_user('u'))").fetchone()[0]
        conn.execute("select send_user_message(%s, 'before watch')", (chat,))
    proc = watch(db_url)
    try:
        chatdesk_backends(db_url)  # watch follows: it took its position before it connected to follow
        with connect(db_url) as conn:
            message = conn.execute("select send_user_message(%s, 'after watch')", (chat,)).fetchone()[0]
        got = lines_until(proc, 1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    assert [(c["kind"], c["message_id"]) for c in got] == [("message", message)]
    both = subprocess.run([sys.executable, "-m", "chatdesk", "watch", "--database-url", db_url, "--since", "1:1",
                           "--from-start"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert both.returncode == 2 and "--since and --from-start do not go together" in both.stderr


def test_async_feed_yields_what_feed_yields_and_stops(db_url):
    """chatdesk.feed.AsyncFeed, the asyncio counterpart of Feed: the same
    changes in the same order from the same cursor, woken by NOTIFY, and
    stop() ends the iteration."""
    import asyncio

    from chatdesk.feed import AsyncFeed

    with connect(db_url) as conn:
        user = conn.execute("select create_real_user('async')").fetchone()[0]
        chat = conn.execute("select start_chat(%s)", (user,)).fetchone()[0]
        start = conn.execute("select feed_position()").fetchone()[0]

        async def follow() -> tuple[list, bool, float]:
            feed = AsyncFeed(db_url, start)
            got, sent_at = [], {}

            async def write() -> None:
                await asyncio.sleep(0.5)
                for n in range(20):
                    await asyncio.to_thread(conn.execute, "select send_user_message(%s, %s)", (chat, f"m{n}"))
                    await asyncio.sleep(0.02)

            writer = asyncio.ensure_future(write())
            async for change in feed:
                got.append(change)
                if len(got) == 21:  # the queueing, and twenty messages
                    feed.stop()
            await writer
            return got, feed.listening, feed.reads

        got, listening, reads = asyncio.run(follow())
        want = conn.execute("select cursor from changes_since(%s, 1000)", (start,)).fetchall()
        assert [c.cursor for c in got] == [w[0] for w in want]
        assert listening
        assert reads < 60  # woken by NOTIFY, not spinning
