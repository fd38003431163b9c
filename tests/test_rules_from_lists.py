"""Tests generated from the contract's and the catalog's own lists, so that a
new rule cannot go untested (#24):

- every (event, from, to) the state table lacks, tried as a direct UPDATE
  that names the event: refused with CD002; every row it has that a direct
  UPDATE may take, taken;
- every counter the recount views name, corrupted one at a time: verify
  reports exactly it, and --repair mends it;
- client ids across every pair of senders (the user, operator A, operator B,
  the system): one sender's id never matches another's message.
"""

from __future__ import annotations

import itertools
import uuid

import psycopg
import pytest
from chatdesk.errors import BAD_TRANSITION
from helpers import connect

STATES = ("waiting_real_user_reply", "waiting_assignment", "assigned", "closed")


def transition_lists(conn) -> tuple[set, set, set]:
    """(events, the state table's triples, the states the chats' CHECK allows)."""
    table = set(conn.execute("select event, from_state, to_state from chatdesk.state_transitions").fetchall())
    check = conn.execute("""select pg_get_constraintdef(oid) from pg_constraint
                             where conname = 'chats_chat_state_check'""").fetchone()[0]
    states = {s for s in STATES if f"'{s}'" in check}
    events = {e for e, _, _ in table} | {"start"}
    return events, table, states


@pytest.fixture
def chats_in_every_state(db_url):
    """A chat in each state, an operator A holding the assigned one, and B free."""
    with connect(db_url) as conn:
        a = conn.execute("select create_operator('Ann', 10)").fetchone()[0]
        b = conn.execute("select create_operator('Bob', 10)").fetchone()[0]
        chats = {}
        for state in ("assigned", "waiting_assignment", "waiting_real_user_reply", "closed"):
            chat = conn.execute("select start_chat(create_real_user('u'))").fetchone()[0]
            if state != "waiting_real_user_reply":
                conn.execute("select send_user_message(%s, 'hi')", (chat,))
            if state == "assigned":
                assert conn.execute("select claim_next_chat(%s)", (a,)).fetchone()[0] == chat
            if state == "closed":
                conn.execute("select close_chat(%s)", (chat,))
            chats[state] = chat
    return db_url, chats, a, b


def test_every_transition_the_state_table_lacks_is_refused(chats_in_every_state):
    url, chats, a, b = chats_in_every_state
    wrong, tried = [], 0
    with connect(url) as conn:
        events, table, states = transition_lists(conn)
        assert states == set(STATES)
        for event, from_state, to_state in itertools.product(sorted(events), sorted(states), sorted(states)):
            if from_state == to_state:
                continue
            allowed = (event, from_state, to_state) in table and event not in ("user_message", "operator_reply")
            operator = b if to_state == "assigned" else None
            try:
                with conn.transaction(force_rollback=True):
                    conn.execute("""update chatdesk.chats set chat_state = %s, state_reason = %s,
                                           assigned_operator_id = %s where id = %s""",
                                 (to_state, event, operator, chats[from_state]))
                    outcome = "ok"
            except psycopg.Error as error:
                outcome = error.sqlstate
            tried += 1
            want = "ok" if allowed else BAD_TRANSITION
            if outcome != want:
                wrong.append(f"{event}: {from_state} -> {to_state}: {outcome}, should be {want}")
    assert tried == len(events) * 12
    assert not wrong, "\n".join(wrong)


def counters(conn) -> list[tuple[str, str]]:
    """(table, column) of every counter: the columns of the recount views."""
    out = []
    for view, table in (("chat_counters_actual", "chats"), ("operator_counters_actual", "operators")):
        out += [(table, r[0]) for r in conn.execute(
            """select attname from pg_attribute where attrelid = ('chatdesk.' || %s)::regclass
                and attnum > 0 and attname not in ('chat_id', 'operator_id') order by attnum""", (view,))]
    return out


def corrupt(conn, table: str, column: str, row_id) -> None:
    kind = conn.execute("""select format_type(atttypid, atttypmod) from pg_attribute
                            where attrelid = ('chatdesk.' || %s)::regclass and attname = %s""",
                        (table, column)).fetchone()[0]
    wrong = {"integer": "coalesce({0}, 0) + 7", "bigint": "coalesce({0}, 0) + 7",
             "timestamp with time zone": "coalesce({0}, now()) - interval '1 hour'"}[kind]
    conn.execute("set session_replication_role = replica")  # past the guards: drift as a bug would leave it
    conn.execute(f"update chatdesk.{table} set {column} = {wrong.format(column)} where id = %s", (row_id,))
    conn.execute("set session_replication_role = origin")


def test_every_counter_drift_is_reported_and_repaired(db_url):
    with connect(db_url) as conn:
        op = conn.execute("select create_operator('Ann', 5)").fetchone()[0]
        chat = conn.execute("select start_chat(create_real_user('u'))").fetchone()[0]
        conn.execute("select send_user_message(%s, 'hi')", (chat,))
        conn.execute("select claim_next_chat(%s)", (op,))
        conn.execute("select send_user_message(%s, 'still there?')", (chat,))
        first = conn.execute("select min(id) from messages where chat_id = %s", (chat,)).fetchone()[0]
        conn.execute("select send_operator_message(%s, %s, 'yes', null, %s)", (chat, op, first))
        listed = counters(conn)
        assert {("chats", "message_count"), ("chats", "last_message_at"), ("operators", "total_messages"),
                ("operators", "assigned_chats")} <= set(listed)
        assert conn.execute("select count(*) from verify_counters()").fetchone()[0] == 0
        for table, column in listed:
            row_id = chat if table == "chats" else op
            corrupt(conn, table, column, row_id)
            drift = conn.execute("select object_id, counter from verify_counters()").fetchall()
            assert drift == [(row_id, column)], (table, column, drift)
            conn.execute("select verify_counters(true)")
            assert conn.execute("select count(*) from verify_counters()").fetchone()[0] == 0, (table, column)
        # the queue table is derived state too: a lost entry and a stale one
        conn.execute("delete from queue")
        queued = conn.execute("select start_chat(create_real_user('q'))").fetchone()[0]
        conn.execute("select send_user_message(%s, 'in line')", (queued,))
        conn.execute("delete from queue where chat_id = %s", (queued,))
        conn.execute("insert into queue (chat_id, queued_at) values (%s, now())", (chat,))
        assert sorted(conn.execute("select object_id::text, counter from verify_counters()").fetchall()) == sorted(
            [(str(queued), "queued"), (str(chat), "queued")])
        conn.execute("select verify_counters(true)")
        assert conn.execute("select count(*) from verify_counters()").fetchone()[0] == 0


SENDERS = ("user", "operator A", "operator B", "system")


def send(conn, chat, sender: str, ops: dict, client_id: str):
    """Writes as `sender` with client_message_id; returns the id it got back (the first message's on a retry)."""
    if sender == "user":
        return conn.execute("select send_user_message(%s, 'u', %s)", (chat, client_id)).fetchone()[0]
    if sender == "system":  # a direct insert: a retry writes nothing, and the first message stands
        row = conn.execute("""insert into messages (chat_id, sender_type, body, client_message_id)
                              values (%s, 'system', 's', %s) returning id""", (chat, client_id)).fetchone()
        return row[0] if row else conn.execute(
            "select id from messages where chat_id = %s and client_message_id = %s and sender_type = 'system'",
            (chat, client_id)).fetchone()[0]
    op = ops[sender]
    return conn.execute("select message_id from send_operator_message(%s, %s, 'o', %s, "
                        "(select max(id) from messages where chat_id = %s))", (chat, op, client_id, chat)).fetchone()[0]


def hand_to(conn, chat, op) -> None:
    """Puts the chat in op's hands by the rules: release by whoever holds it, then claim."""
    holder = conn.execute("select assigned_operator_id from chats where id = %s", (chat,)).fetchone()[0]
    if holder == op:
        return
    if holder is not None:
        conn.execute("select release_chat(%s, %s)", (chat, holder))
    state = conn.execute("select chat_state from chats where id = %s", (chat,)).fetchone()[0]
    if state != "waiting_assignment":
        conn.execute("select send_user_message(%s, 'back in line')", (chat,))
    assert conn.execute("select claim_next_chat(%s)", (op,)).fetchone()[0] == chat


@pytest.mark.parametrize("first,second", [(x, y) for x in SENDERS for y in SENDERS if x != y])
def test_a_client_id_is_kept_per_sender(db_url, first, second):
    with connect(db_url) as conn:
        ops = {"operator A": conn.execute("select create_operator('A', 5)").fetchone()[0],
               "operator B": conn.execute("select create_operator('B', 5)").fetchone()[0]}
        chat = conn.execute("select start_chat(create_real_user('u'))").fetchone()[0]
        conn.execute("select send_user_message(%s, 'hello')", (chat,))
        client_id = f"same-{uuid.uuid4()}"
        ids = []
        for sender in (first, second, first):
            if sender in ops:
                hand_to(conn, chat, ops[sender])
            ids.append(send(conn, chat, sender, ops, client_id))
        # the second sender's message is its own; the first's retry returns the first's message
        assert ids[1] is not None and ids[1] != ids[0], (first, second, ids)
        assert ids[2] == ids[0], (first, second, ids)
        assert conn.execute("select count(*) from messages where chat_id = %s and client_message_id = %s",
                            (chat, client_id)).fetchone()[0] == 2
