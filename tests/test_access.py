"""Access through real login roles and real connections: PostgREST's requests
on one pooled connection, a backend narrowed for one transaction, and the
findings of attacking the old access model, each kept as a regression test."""

from __future__ import annotations

import json
import os
import uuid

import psycopg
import pytest
from chatdesk.errors import NOT_ALLOWED, NOT_ASSIGNEE
from chatdesk.logins import create_login
from helpers import connect, two_operators_two_visitors
from psycopg.conninfo import make_conninfo


@pytest.fixture
def people(db_url):
    return two_operators_two_visitors(db_url)


@pytest.fixture
def login(db_url):
    """Makes login roles with `chatdesk create-login`'s code; yields a function
    kind -> conninfo for that login; drops them afterwards (roles are cluster-wide)."""
    made = []

    def make(kind: str) -> str:
        name = f"t_{kind}_{os.getpid()}_{len(made)}"
        create_login(db_url, name, kind)
        made.append(name)
        return make_conninfo(db_url, user=name)

    yield make
    with psycopg.connect(db_url, autocommit=True) as conn:
        for name in made:
            conn.execute(f"drop role if exists {name}")


def request(conn: psycopg.Connection, claims: str | None, sql: str, params=()):
    """One request the way PostgREST makes it: a transaction, `set local role`,
    the claims with set_config(..., true), the query, commit."""
    with conn.transaction():
        conn.execute("set local role chatdesk_web")
        conn.execute("select set_config('request.jwt.claims', %s, true)", (claims or "",))
        return conn.execute(sql, params).fetchall()


def claims(sub: str) -> str:
    return json.dumps({"sub": sub, "role": "authenticated", "aud": "authenticated"})


def test_postgrest_requests_on_one_pooled_connection(people, login):
    """Requests of different identities, one after another on one authenticator
    connection: each sees only its own, and nothing carries over to the next."""
    p = people
    visible = "select coalesce(string_agg(id::text, ',' order by id::text), '') from chatdesk.chats"
    with psycopg.connect(login("web"), autocommit=True) as conn:
        assert conn.execute("show statement_timeout").fetchone()[0] == "10s"
        assert conn.execute("show idle_in_transaction_session_timeout").fetchone()[0] == "30s"
        assert request(conn, claims(p["v_login"]), visible)[0][0] == p["a_chat"]
        assert request(conn, claims(p["a_login"]), visible)[0][0] == ",".join(sorted([p["a_chat"], p["queued"]]))
        assert request(conn, None, visible)[0][0] == "", "a request without claims inherits nothing"
        assert request(conn, '{"sub": ', visible)[0][0] == "", "malformed claims are nobody"
        assert request(conn, claims(str(uuid.uuid4())), visible)[0][0] == "", "an unknown sub is nobody"
        # whatever the connection's session says about itself changes nothing
        conn.execute("select set_config('chatdesk.operator_id', %s, false)", (p["b"],))
        conn.execute("select set_config('chatdesk.operator_scope', %s, false)", (p["b"] + " 1@1",))
        assert request(conn, claims(p["a_login"]), visible)[0][0] == ",".join(sorted([p["a_chat"], p["queued"]]))
        with pytest.raises(psycopg.Error) as refused:
            request(conn, claims(p["v_login"]), "select chatdesk.send_user_message(%s, 'hi')", (p["b_chat"],))
        assert refused.value.sqlstate == NOT_ALLOWED
        # the authenticator itself, outside a request, can do nothing
        with pytest.raises(psycopg.Error) as bare:
            conn.execute("select count(*) from chatdesk.chats")
        assert bare.value.sqlstate == NOT_ALLOWED


def test_a_backend_acts_for_an_operator_for_one_transaction_only(people, login):
    p = people
    with psycopg.connect(login("app"), autocommit=True) as conn:
        count = "select count(*) from chatdesk.chats"
        with conn.transaction():
            conn.execute("select chatdesk.act_as_operator(%s)", (p["a"],))
            assert conn.execute(count).fetchone()[0] == 1
            with pytest.raises(psycopg.Error) as refused, conn.transaction():
                conn.execute("select chatdesk.claim_next_chat(%s)", (p["b"],))
            assert refused.value.sqlstate == NOT_ALLOWED
        assert conn.execute(count).fetchone()[0] == 3, "the scope ended with its transaction"
        conn.execute("set chatdesk.operator_id = %s" % psycopg.sql.Literal(p["a"]).as_string(conn))
        assert conn.execute(count).fetchone()[0] == 3, "a session-level operator_id is ignored"
        with conn.transaction():
            conn.execute("select set_config('chatdesk.operator_scope', %s, false)",
                         (p["a"] + " " + conn.execute("select chatdesk.transaction_mark()").fetchone()[0],))
        assert conn.execute(count).fetchone()[0] == 3, "a scope written at session level ends with its transaction"


def test_a_refused_retry_returns_nothing(people, db_url, login):
    """Operator A replaying B's client id on B's chat used to get B's message
    id back. (That a refusal takes no lock first is tested where it can
    fail: while another session holds the chat, the refusal must not wait,
    tests/test_access_states.py. A statement that fails releases its row
    locks at once, so checking after the refusal could not fail.)"""
    p = people
    with connect(db_url) as backend:
        (b_message,) = backend.execute(
            "select message_id from send_operator_message(%s, %s, 'answer', 'op-7')", (p["b_chat"], p["b"])).fetchone()
    for how in ("backend", "web"):
        attacker = psycopg.connect(login("app") if how == "backend" else login("web"))
        try:
            with pytest.raises(psycopg.Error) as refused:
                if how == "web":
                    attacker.execute("set local role chatdesk_web")
                    attacker.execute("select set_config('request.jwt.claims', %s, true)", (claims(p["a_login"]),))
                attacker.execute("select * from chatdesk.send_operator_message(%s, %s, 'x', 'op-7', %s)",
                                 (p["b_chat"], p["a"], b_message))
            assert refused.value.sqlstate == NOT_ASSIGNEE  # not B's message id back
            if how == "web":
                assert p["b"] not in str(refused.value) and "assigned" not in str(refused.value)
        finally:
            attacker.close()


def test_client_ids_are_kept_per_sender(people, db_url):
    """A user's client id 'op-19' used to swallow the operator's later answer with the same id."""
    p = people
    with connect(db_url) as conn:
        user_message = conn.execute("select send_user_message(%s, 'q', 'op-19')", (p["a_chat"],)).fetchone()[0]
        (answer, _, _) = conn.execute("select * from send_operator_message(%s, %s, 'a', 'op-19')",
                                      (p["a_chat"], p["a"])).fetchone()
        assert answer != user_message and answer > user_message
        assert conn.execute("select count(*) from messages where chat_id = %s and client_message_id = 'op-19'",
                            (p["a_chat"],)).fetchone()[0] == 2
        assert conn.execute("select send_user_message(%s, 'q again', 'op-19')", (p["a_chat"],)).fetchone()[0] == user_message
        assert conn.execute("select message_id from send_operator_message(%s, %s, 'a again', 'op-19')",
                            (p["a_chat"], p["a"])).fetchone()[0] == answer
        # another operator's id space: B takes the chat over and uses the same id
        conn.execute("select send_user_message(%s, 'more')", (p["a_chat"],))
        assert str(conn.execute("select claim_next_chat(%s)", (p["b"],)).fetchone()[0]) == p["queued"]
        assert str(conn.execute("select claim_next_chat(%s)", (p["b"],)).fetchone()[0]) == p["a_chat"]
        (b_answer, _, _) = conn.execute("select * from send_operator_message(%s, %s, 'b', 'op-19')",
                                        (p["a_chat"], p["b"])).fetchone()
        assert b_answer not in (answer, user_message)


def test_realtime_postgres_changes_deliver_a_visitor_only_her_own_messages(people, db_url, login):
    """Supabase Realtime's Postgres Changes checks each change against RLS as
    the subscriber: `set local role authenticated` (here chatdesk_web),
    the subscriber's claims with set_config(..., true), then a select of the
    changed row by its key. A visitor subscribed to messages gets her own."""
    p = people
    with connect(db_url) as owner:
        owner.execute("select send_user_message(%s, 'again')", (p["b_chat"],))
        owner.execute("select * from send_operator_message(%s, %s, 'hello')", (p["a_chat"], p["a"]))
        changes = owner.execute("select id, chat_id::text from messages order by id").fetchall()
        held = dict(owner.execute("select assigned_operator_id::text, array_agg(id::text) from chats "
                                  "where chat_state = 'assigned' group by 1").fetchall())
    assert len(changes) >= 5
    with psycopg.connect(login("web"), autocommit=True) as realtime:
        # visitors: their chats; operators: the chats assigned to them now
        for subscriber, own_chats in (("v_login", {p["a_chat"]}), ("w_login", {p["b_chat"], p["queued"]}),
                                      ("a_login", set(held.get(p["a"], []))),
                                      ("b_login", set(held.get(p["b"], [])))):
            delivered = {message_id for message_id, _ in changes
                         if request(realtime, claims(p[subscriber]),
                                    "select exists (select 1 from chatdesk.messages where id = %s)", (message_id,))[0][0]}
            assert delivered == {m for m, chat in changes if chat in own_chats}, subscriber


def test_a_callers_search_path_cannot_hijack_a_definer_function(db_url):
    """A caller puts a schema of its own first, with a format() that would run with the owner's rights
    inside claim_next_chat's refusal; the definer function's pinned search_path never looks there."""
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute("create schema evil")
        admin.execute("create table evil.hijacked (at timestamptz default now())")
        admin.execute("""create function evil.format(text, uuid, text) returns text language sql
                         as $$ insert into evil.hijacked default values; select 'hijacked' $$""")
        admin.execute("grant usage on schema evil to public")
        admin.execute("grant insert on evil.hijacked to public")
        op = admin.execute("select chatdesk.create_operator('Ann')").fetchone()[0]
        admin.execute("select chatdesk.set_operator_active(%s, false)", (op,))
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("set role chatdesk_app")
        conn.execute("set search_path = evil, pg_catalog, chatdesk")
        with pytest.raises(psycopg.Error) as refused:
            conn.execute("select chatdesk.claim_next_chat(%s)", (op,))
    assert refused.value.sqlstate == "CD003" and "is not active" in str(refused.value)
    with psycopg.connect(db_url, autocommit=True) as admin:
        assert admin.execute("select count(*) from evil.hijacked").fetchone()[0] == 0


def _scans_of(plan: dict) -> set[tuple[str, str]]:
    """(node type, relation) of every scan in an EXPLAIN (format json) plan."""
    found = {(plan["Node Type"], plan["Relation Name"])} if "Relation Name" in plan else set()
    for child in plan.get("Plans", []):
        found |= _scans_of(child)
    return found


def test_row_level_security_finds_a_callers_chats_through_an_index(people, login):
    """What a policy lets a caller see is found through an index, never by
    reading every chat: a visitor's or an operator's read of one chat's
    messages cost 22 ms with 200,000 chats when the policy's "chats assigned
    to X" could not use chats_assigned_idx. With sequential scans disabled, a
    policy that can only be answered by one still gets one, which this catches."""
    p = people
    reads = {
        # (the columns web callers are granted)
        "messages": "select id, body from chatdesk.messages where chat_id = %s order by id desc limit 20",
        "chat_events": "select id, to_state from chatdesk.chat_events where chat_id = %s",
        "conversations": "select * from chatdesk.conversations where chat_id = %s",
        "real_users": "select id, display_name from chatdesk.real_users"
                      " where id = (select real_user_id from chatdesk.chats where id = %s)",
        "chats": "select * from chatdesk.chats where %s::uuid is not null",
    }

    def scans(conn, sql, chat):
        conn.execute("set local enable_seqscan = off")
        plan = conn.execute("explain (format json) " + sql, (chat,)).fetchone()[0][0]["Plan"]
        return _scans_of(plan)

    checked = 0
    with psycopg.connect(login("web"), autocommit=True) as web:
        for who in ("v_login", "a_login"):
            for table, sql in reads.items():
                with web.transaction():
                    web.execute("set local role chatdesk_web")
                    web.execute("select set_config('request.jwt.claims', %s, true)", (claims(p[who]),))
                    if table == "conversations":
                        continue  # web callers have no grant on it
                    found = scans(web, sql, p["a_chat"])
                    assert ("Seq Scan", "chats") not in found, (who, table, found)
                    checked += 1
    # A narrowed backend's list of every chat it may see stays a scan of all
    # chats (its policy starts "no operator named, or ..."); it reads one.
    reads["chats"] = "select * from chatdesk.chats where id = %s"
    with psycopg.connect(login("app"), autocommit=True) as app:
        for table, sql in reads.items():
            with app.transaction():
                app.execute("select chatdesk.act_as_operator(%s)", (p["a"],))
                found = scans(app, sql, p["a_chat"])
                assert ("Seq Scan", "chats") not in found, ("narrowed backend", table, found)
                checked += 1
    assert checked == 13
