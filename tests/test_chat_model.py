"""Property-based: random sequences of chat events against a small model of the contract's table.

One connection, one transaction per example (rolled back at teardown), so
examples are independent and fast. After every step the database's states,
assignees and counters must equal the model's.
"""

from __future__ import annotations

import itertools

import psycopg
import pytest
from chatdesk.errors import AT_CAPACITY, BAD_TRANSITION, CHAT_CLOSED, NOT_ASSIGNEE
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

N_CHATS = 3
OPERATORS = {"ann": 2, "bob": 1}  # name -> capacity


class ChatModel:
    def __init__(self):
        self.state = "waiting_real_user_reply"
        self.assignee = None
        self.queue_seq = None  # order of entering the queue
        self.messages = []  # (id, sender_type, operator name or None)
        self.client_ids = {}  # (sender: "user" or the operator's name, client id) -> message id

    @property
    def last_user_id(self):
        return max((i for i, s, _ in self.messages if s == "real_user"), default=None)


@pytest.fixture
def model_conn(db_url):
    with psycopg.connect(db_url, options="-c search_path=chatdesk") as conn:
        yield conn


def test_chat_state_machine_matches_the_model(model_conn):
    conn = model_conn

    class ChatMachine(RuleBasedStateMachine):
        @initialize()
        def setup(self):
            conn.execute("savepoint example")
            self.ops = {name: conn.execute("select create_operator(%s, %s)", (name, cap)).fetchone()[0]
                        for name, cap in OPERATORS.items()}
            user = conn.execute("select create_real_user('u')").fetchone()[0]
            self.chat_ids = [conn.execute("select start_chat(%s)", (user,)).fetchone()[0] for _ in range(N_CHATS)]
            self.model = {c: ChatModel() for c in self.chat_ids}
            self.seq = itertools.count()

        def teardown(self):
            conn.execute("rollback to savepoint example")

        def expect_error(self, sqlstate, sql, params):
            conn.execute("savepoint step")
            try:
                conn.execute(sql, params)
            except psycopg.Error as error:
                conn.execute("rollback to savepoint step")
                assert error.sqlstate == sqlstate, error
                return
            raise AssertionError(f"expected {sqlstate} from {sql} {params}")

        def load(self, op_name):
            return sum(1 for m in self.model.values() if m.assignee == op_name)

        # "o" is also what operators use: client ids are kept per sender, so they never collide
        @rule(chat=st.integers(0, N_CHATS - 1), client=st.one_of(st.none(), st.sampled_from(["a", "b", "o"])))
        def user_message(self, chat, client):
            chat_id = self.chat_ids[chat]
            m = self.model[chat_id]
            got = conn.execute("select send_user_message(%s, 'hi', %s)", (chat_id, client)).fetchone()[0]
            if client is not None and ("user", client) in m.client_ids:
                assert got == m.client_ids["user", client], "a retry returns the first message"
                return
            m.messages.append((got, "real_user", None))
            if client is not None:
                m.client_ids["user", client] = got
            if m.state in ("waiting_real_user_reply", "closed"):
                m.state = "waiting_assignment"
                m.queue_seq = next(self.seq)

        @rule(op=st.sampled_from(sorted(OPERATORS)))
        def claim(self, op):
            if self.load(op) >= OPERATORS[op]:
                self.expect_error(AT_CAPACITY, "select claim_next_chat(%s)", (self.ops[op],))
                return
            got = conn.execute("select claim_next_chat(%s)", (self.ops[op],)).fetchone()[0]
            queued = [c for c, m in self.model.items() if m.state == "waiting_assignment"]
            if not queued:
                assert got is None
                return
            expected = min(queued, key=lambda c: self.model[c].queue_seq)
            assert got == expected, "claims are first come, first served"
            self.model[got].state, self.model[got].assignee = "assigned", op

        @rule(chat=st.integers(0, N_CHATS - 1), op=st.sampled_from(sorted(OPERATORS)),
              seen=st.sampled_from(["none", "latest", "stale"]), client=st.one_of(st.none(), st.just("o")))
        def operator_message(self, chat, op, seen, client):
            chat_id = self.chat_ids[chat]
            m = self.model[chat_id]
            if client is not None and (op, client) in m.client_ids:
                got = conn.execute("select message_id from send_operator_message(%s, %s, 'x', %s)",
                                   (chat_id, self.ops[op], client)).fetchone()[0]
                assert got == m.client_ids[op, client], "a retry returns the operator's own first message"
                return
            seen_id = {"none": None,
                       "latest": m.messages[-1][0] if m.messages else None,
                       "stale": m.messages[0][0] if m.messages else None}[seen]
            params = (chat_id, self.ops[op], client, seen_id)
            sql = "select * from send_operator_message(%s, %s, 'answer', %s, %s)"
            if m.state == "closed":
                self.expect_error(CHAT_CLOSED, sql, params)
                return
            if m.assignee != op:
                self.expect_error(NOT_ASSIGNEE, sql, params)
                return
            message_id, state, meanwhile = conn.execute(sql, params).fetchone()
            expected_meanwhile = seen_id is not None and (m.last_user_id or 0) > seen_id
            assert meanwhile == expected_meanwhile
            m.messages.append((message_id, "operator", op))
            if client is not None:
                m.client_ids[op, client] = message_id
            if not expected_meanwhile:
                m.state, m.assignee = "waiting_real_user_reply", None
            assert state == m.state

        @rule(chat=st.integers(0, N_CHATS - 1), op=st.sampled_from(sorted(OPERATORS)))
        def release(self, chat, op):
            chat_id = self.chat_ids[chat]
            m = self.model[chat_id]
            if m.assignee != op:
                self.expect_error(NOT_ASSIGNEE, "select release_chat(%s, %s)", (chat_id, self.ops[op]))
                return
            conn.execute("select release_chat(%s, %s)", (chat_id, self.ops[op]))
            m.state, m.assignee = "waiting_assignment", None  # queue_seq kept: its old place

        @rule(chat=st.integers(0, N_CHATS - 1))
        def close(self, chat):
            chat_id = self.chat_ids[chat]
            m = self.model[chat_id]
            if m.state == "closed":
                self.expect_error(BAD_TRANSITION, "select close_chat(%s)", (chat_id,))
                return
            conn.execute("select close_chat(%s)", (chat_id,))
            m.state, m.assignee = "closed", None

        @invariant()
        def database_equals_model(self):
            if not hasattr(self, "model"):
                return
            rows = conn.execute(
                "select c.id, c.chat_state, o.name, c.message_count from chats c "
                "left join operators o on o.id = c.assigned_operator_id where c.id = any(%s)",
                (self.chat_ids,)).fetchall()
            for chat_id, state, assignee, count in rows:
                m = self.model[chat_id]
                assert (state, assignee, count) == (m.state, m.assignee, len(m.messages)), chat_id
            totals = dict(conn.execute("select name, total_messages from operators where id = any(%s)",
                                       (list(self.ops.values()),)).fetchall())
            for name in OPERATORS:
                assert totals[name] == sum(1 for mm in self.model.values() for *_, by in mm.messages if by == name)
            assert conn.execute("select count(*) from verify_counters()").fetchone()[0] == 0

    ChatMachine.TestCase.settings = settings(
        max_examples=60, stateful_step_count=40, deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    ChatMachine.TestCase().runTest()
