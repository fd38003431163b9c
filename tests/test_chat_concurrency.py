"""Concurrency on the chat core: real threads, one connection each, the same rows."""

from __future__ import annotations

import random
import threading

import psycopg
from chatdesk.errors import AT_CAPACITY, CHAT_CLOSED, NOT_ASSIGNEE
from helpers import UNANSWERED_BUT_WAITING_FOR_USER, connect, run_cli, run_threads


def test_many_writers_on_the_same_chats_keep_counters_exact(db_url):
    with connect(db_url) as conn:
        operators = [conn.execute("select create_operator(%s, 3)", (f"op{i}",)).fetchone()[0] for i in range(4)]
        user = conn.execute("select create_real_user('u')").fetchone()[0]
        conn.execute("update chatdesk.settings set value = '100' where key = 'max_open_chats_per_user'")  # one user, many chats
        chats = [conn.execute("select start_chat(%s)", (user,)).fetchone()[0] for _ in range(6)]
    sent = [0] * 8
    expected_errors = {NOT_ASSIGNEE, AT_CAPACITY, CHAT_CLOSED}

    def worker(index):
        rng = random.Random(index)
        with connect(db_url) as conn:
            for step in range(150):
                chat = rng.choice(chats)
                action = rng.random()
                try:
                    if action < 0.5:
                        # some client ids repeat across threads: retries must not double-count
                        client_id = f"c{rng.randrange(40)}" if rng.random() < 0.3 else None
                        conn.execute("select send_user_message(%s, 'hi', %s)", (chat, client_id))
                    elif action < 0.65:
                        conn.execute("select claim_next_chat(%s)", (rng.choice(operators),))
                    elif action < 0.9:
                        op = conn.execute("select assigned_operator_id from chats where id = %s", (chat,)).fetchone()[0]
                        if op:
                            conn.execute("select * from send_operator_message(%s, %s, 'answer')", (chat, op))
                    elif action < 0.95:
                        conn.execute("delete from messages where id = (select min(id) from messages where chat_id = %s)", (chat,))
                    else:
                        conn.execute("update messages set handled_by_operator_id = %s where id = "
                                      "(select max(id) from messages where chat_id = %s and sender_type = 'operator')",
                                      (rng.choice(operators), chat))
                    sent[index] += 1
                except psycopg.Error as error:
                    # losing a race for a chat is a documented refusal, nothing else is
                    assert error.sqlstate in expected_errors, error

    run_threads(8, worker)
    assert sum(sent) > 500
    with connect(db_url) as conn:
        assert conn.execute("select * from verify_counters()").fetchall() == []
        counts = conn.execute("select sum(message_count) from chats").fetchone()[0]
        assert counts == conn.execute("select count(*) from messages").fetchone()[0]
        assert conn.execute("select sum(total_messages) from operators").fetchone()[0] == \
            conn.execute("select count(*) from messages where sender_type = 'operator'").fetchone()[0]
        assert conn.execute(UNANSWERED_BUT_WAITING_FOR_USER).fetchall() == []
    assert run_cli("--database-url", db_url, "verify").returncode == 0


ROUNDS = 300


def test_the_reply_race_never_leaves_a_message_unanswered(db_url):
    """Operator answers while the user writes again, both released by one barrier, ROUNDS times."""
    with connect(db_url) as conn:
        op = conn.execute("select create_operator('racer', 1)").fetchone()[0]
        user = conn.execute("select create_real_user('u')").fetchone()[0]
        conn.execute("update chatdesk.settings set value = '100' where key = 'max_open_chats_per_user'")  # one user, many chats
    barrier = threading.Barrier(2)
    rounds = []  # (chat, seen id, operator result, user message id)
    state = {}

    def operator(_):
        with connect(db_url) as conn:
            for _ in range(ROUNDS):
                chat = conn.execute("select start_chat(%s)", (user,)).fetchone()[0]
                seen = conn.execute("select send_user_message(%s, 'help!')", (chat,)).fetchone()[0]
                assert conn.execute("select claim_next_chat(%s)", (op,)).fetchone()[0] == chat
                state["chat"] = chat
                barrier.wait()
                result = conn.execute(
                    "select message_id, chat_state, user_replied_meanwhile "
                    "from send_operator_message(%s, %s, 'here you go', null, %s)", (chat, op, seen)).fetchone()
                barrier.wait()  # the user's message is in too
                rounds.append((chat, seen, result, state["user_message"]))
                assert conn.execute(UNANSWERED_BUT_WAITING_FOR_USER + " and c.id = %s", (chat,)).fetchall() == []
                # finish the round: answer whatever is left, so capacity frees up
                while True:
                    row = conn.execute("select chat_state, assigned_operator_id from chats where id = %s", (chat,)).fetchone()
                    if row[0] == "assigned":
                        conn.execute("select * from send_operator_message(%s, %s, 'and that')", (chat, op))
                    else:
                        conn.execute("select close_chat(%s)", (chat,)) if row[0] != "closed" else None
                        break

    def real_user(_):
        with connect(db_url) as conn:
            for _ in range(ROUNDS):
                barrier.wait()
                state["user_message"] = conn.execute(
                    "select send_user_message(%s, 'wait, one more thing!')", (state["chat"],)).fetchone()[0]
                barrier.wait()

    run_threads(2, lambda i: (operator, real_user)[i](i))
    assert len(rounds) == ROUNDS
    user_first = 0
    for chat, seen, (answer, chat_state, meanwhile), user_message in rounds:
        if user_message < answer:
            # the user's message landed first: the operator must stay on the chat
            user_first += 1
            assert (chat_state, meanwhile) == ("assigned", True), (chat, seen, answer, user_message)
        else:
            # the answer landed first: the user's message re-queued the chat
            assert (chat_state, meanwhile) == ("waiting_real_user_reply", False)
    with connect(db_url) as conn:
        assert conn.execute(UNANSWERED_BUT_WAITING_FOR_USER).fetchall() == []
        assert conn.execute("select * from verify_counters()").fetchall() == []
    # Both orders must actually have happened, or the race was never run.
    print(f"user's message first in {user_first} of {ROUNDS} rounds")
    assert 0 < user_first < ROUNDS, f"user first in {user_first} of {ROUNDS} rounds"
