"""The web surface's findings of 0.2.0 (#23), each as a regression test that
fails on 2cd538f, and the rule that keeps a web read's cost to the caller's
own rows, checked at a deployment's size with the planner's own statistics."""

from __future__ import annotations

import json
import sys
import threading
import time
import unicodedata
import uuid

import psycopg
import pytest
from chatdesk.errors import NOT_ALLOWED, OUT_OF_RANGE, TOO_MANY_OPEN_CHATS
from helpers import connect, run_threads, two_operators_two_visitors

HYBRID = "chatdesk_test_app_and_web"
HYBRID_REPORTING = "chatdesk_test_reporting_and_web"


def claims(sub) -> str:
    return json.dumps({"sub": str(sub), "role": "authenticated"})


def as_web(conn, sub, sql, params=(), role="chatdesk_web"):
    """One PostgREST request: a transaction, the role and the claims set locally."""
    with conn.transaction():
        conn.execute(f"set local role {role}")
        conn.execute("select set_config('request.jwt.claims', %s, true)", (claims(sub) if sub else "",))
        return conn.execute(sql, params).fetchall()


# -- 4: one visitor cannot flood the queue ----------------------------------------------
def test_open_chats_per_user_are_capped_even_when_started_at_once(db_url):
    with connect(db_url) as conn:
        user = conn.execute("select create_real_user('Flo')").fetchone()[0]
    outcomes = []

    def start(_):
        with connect(db_url) as conn:
            try:
                conn.execute("select start_chat(%s)", (user,))
                outcomes.append("ok")
            except psycopg.Error as error:
                outcomes.append(error.sqlstate)

    run_threads(8, start)
    assert sorted(outcomes) == sorted(["ok"] * 3 + [TOO_MANY_OPEN_CHATS] * 5)
    with connect(db_url) as conn:
        chats = [r[0] for r in conn.execute("select id from chats where real_user_id = %s", (user,))]
        assert len(chats) == 3
        # a closed chat reopened by a message is one more open chat: refused, nothing written
        conn.execute("select close_chat(%s)", (chats[0],))
        conn.execute("select start_chat(%s)", (user,))
        with pytest.raises(psycopg.Error) as refused:
            conn.execute("select send_user_message(%s, 'me again')", (chats[0],))
        assert refused.value.sqlstate == TOO_MANY_OPEN_CHATS
        assert conn.execute("select chat_state, message_count from chats where id = %s",
                            (chats[0],)).fetchone() == ("closed", 0)
        # the setting: 1 to 100
        for bad in ("0", "101", "three", "-1"):
            with pytest.raises(psycopg.Error) as refused:
                conn.execute("update settings set value = %s where key = 'max_open_chats_per_user'", (bad,))
            assert refused.value.sqlstate == OUT_OF_RANGE
        conn.execute("update settings set value = '5' where key = 'max_open_chats_per_user'")
        conn.execute("select send_user_message(%s, 'me again')", (chats[0],))  # now within the cap
        for bad in ("5 seconds", "25 hours", "soon"):
            with pytest.raises(psycopg.Error) as refused:
                conn.execute("update settings set value = %s where key = 'first_response_target'", (bad,))
            assert refused.value.sqlstate == OUT_OF_RANGE
        assert conn.execute("select value from settings where key = 'first_response_target'").fetchone() == ("5 minutes",)


# -- 6 and 11: an operator's view of a chat ends with the change that ends its hold ---------
def operator_feed(conn, login):
    return [(str(r[2]), r[0], r[4]) for r in as_web(conn, login, "select kind, message_id, chat_id, cursor, chat_state "
                                                           "from chatdesk.changes_since(null, 10000)")]


@pytest.mark.parametrize("ending", ["visitor closes", "answered", "released", "idle", "operator closes"])
def test_an_operators_feed_shows_the_change_that_ends_its_hold_and_nothing_after(db_url, ending):
    p = two_operators_two_visitors(db_url)
    chat = p["a_chat"]
    with connect(db_url) as backend, psycopg.connect(db_url, autocommit=True) as web:
        seen = backend.execute("select max(id) from messages where chat_id = %s", (chat,)).fetchone()[0]
        if ending == "visitor closes":
            as_web(web, p["v_login"], "select chatdesk.close_chat(%s)", (chat,))
        elif ending == "operator closes":
            as_web(web, p["a_login"], "select chatdesk.close_chat(%s)", (chat,))
        elif ending == "answered":
            as_web(web, p["a_login"], "select * from chatdesk.send_operator_message(%s, %s, 'done', 'a-1', %s)",
                   (chat, p["a"], seen))
        elif ending == "released":
            as_web(web, p["a_login"], "select chatdesk.release_chat(%s, %s)", (chat, p["a"]))
        else:
            backend.execute("update operators set last_active_at = now() - interval '1 hour', "
                            "last_seen_at = now() - interval '1 hour' where id = %s", (p["a"],))
            assert backend.execute("select release_idle_chats('5 minutes')").fetchone()[0] == 1
        after_end = {"visitor closes": "closed", "operator closes": "closed", "answered": "waiting_real_user_reply",
                     "released": "waiting_assignment", "idle": "waiting_assignment"}[ending]
        # afterwards the visitor writes again: A must not see it
        if ending != "released" and ending != "idle":
            backend.execute("select send_user_message(%s, 'one more thing')", (chat,))
        mine = [row for row in operator_feed(web, p["a_login"]) if row[0] == chat]
        # its view ends with the change that ends its hold; after it, only
        # what every operator sees of the queue (the chat joining it again)
        end = max(i for i, (_, kind, state) in enumerate(mine) if kind == "chat" and state == after_end)
        assert end > 0 and mine[end - 1][2] == "assigned" or ending == "answered", mine
        assert all(kind == "chat" and state == "waiting_assignment" for _, kind, state in mine[end + 1:]), mine
        if ending == "answered":
            # B takes the chat; A's retry answers from what it wrote, without a lock on B's chat
            backend.execute("select send_user_message(%s, 'hello again')", (chat,))
            if backend.execute("select chat_state from chats where id = %s", (chat,)).fetchone()[0] != "waiting_assignment":
                backend.execute("select send_user_message(%s, 'anyone?')", (chat,))
            while str(claimed := backend.execute("select claim_next_chat(%s)", (p["b"],)).fetchone()[0]) != chat:
                assert claimed is not None, "B claimed the chat"
            with psycopg.connect(db_url) as retrier, connect(db_url) as locker:
                retrier.execute("set local role chatdesk_web")
                retrier.execute("select set_config('request.jwt.claims', %s, true)", (claims(p["a_login"]),))
                rows = retrier.execute("select * from chatdesk.send_operator_message(%s, %s, 'done', 'a-1', %s)",
                                       (chat, p["a"], seen)).fetchall()
                assert rows[0][1:] == (None, None)
                locker.execute("select 1 from chats where id = %s for update nowait", (chat,))  # not locked by A
                retrier.rollback()
            # the retry, once the chat has moved on, tells nothing of the chat's present
            rows = as_web(web, p["a_login"], "select * from chatdesk.send_operator_message(%s, %s, 'done', 'a-1', %s)",
                          (chat, p["a"], seen))
            assert rows[0][1:] == (None, None) and rows[0][0] is not None


# -- 8: a role that is both a backend and a web caller is a web caller ----------------------
def test_a_role_that_is_both_backend_and_web_sees_and_writes_as_web(db_url):
    p = two_operators_two_visitors(db_url)
    with connect(db_url) as owner:
        owner.execute(f"""do $$ begin
            if not exists (select 1 from pg_roles where rolname = '{HYBRID}') then create role {HYBRID} nologin; end if;
            end $$""")
        owner.execute(f"grant chatdesk_app, chatdesk_web to {HYBRID}")
    with connect(db_url) as owner:
        owner.execute("select rollup_operator_stats(current_date)")
        for role in (HYBRID_REPORTING,):
            owner.execute(f"""do $$ begin
                if not exists (select 1 from pg_roles where rolname = '{role}') then create role {role} nologin; end if;
                end $$""")
        owner.execute(f"grant chatdesk_reporting, chatdesk_web to {HYBRID_REPORTING}")
    tables = ("messages", "chats", "real_users", "chat_events", "changes", "conversations", "operators",
              "operator_load", "operator_daily_stats", "operator_daily_times", "operator_counters_actual",
              "chat_counters_actual", "chat_operators")
    with psycopg.connect(db_url, autocommit=True) as conn:
        # nobody, and even with a real operator's or visitor's claims: such a role is nobody
        for role in (HYBRID, HYBRID_REPORTING):
            for sub in (uuid.uuid4(), None, p["a_login"], p["v_login"]):
                for table in tables:
                    try:
                        rows = as_web(conn, sub, f"select count(*) from chatdesk.{table}", role=role)
                    except psycopg.errors.InsufficientPrivilege:
                        continue
                    assert rows == [(0,)], (role, table, sub)
            with pytest.raises(psycopg.Error) as refused:
                as_web(conn, sub, "insert into chatdesk.messages (chat_id, sender_type, body) values (%s, 'real_user', 'x')",
                       (p["a_chat"],), role=HYBRID)
            assert refused.value.sqlstate == NOT_ALLOWED
        with pytest.raises(psycopg.Error) as refused:
            as_web(conn, p["a_login"], "select chatdesk.heartbeat(%s)", (p["a"],), role=HYBRID)
        assert refused.value.sqlstate == NOT_ALLOWED


def test_create_login_gives_a_login_exactly_one_kind(db_url):
    from chatdesk import logins
    name = f"cd_login_{uuid.uuid4().hex[:8]}"
    logins.create_login(db_url, name, "app")
    shown = logins.create_login(db_url, name, "web")
    assert f"revoke chatdesk_app from {name}" in " ".join(shown).replace('"', "")
    with connect(db_url) as conn:
        kinds = {r[0] for r in conn.execute(
            "select r.rolname from pg_auth_members m join pg_roles r on r.oid = m.roleid "
            "where m.member = %s::regrole", (name,))}
        conn.execute(f"drop role {name}")
    assert kinds == {"chatdesk_web"}


# -- 9, 10, 12: bad input --------------------------------------------------------------------
INVISIBLE_CATEGORIES = {"Cc", "Cf", "Zs", "Zl", "Zp"}
ALSO_INVISIBLE = ({*range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0), *range(0x180B, 0x1810), *range(0xE0000, 0xE0080)}
                  | {0x034F, 0x115F, 0x1160, 0x3164, 0xFFA0, 0x17B4, 0x17B5, 0x2800})


def invisible_code_points() -> list[int]:
    return [c for c in range(1, sys.maxunicode + 1)
            if not 0xD800 <= c <= 0xDFFF
            and (unicodedata.category(chr(c)) in INVISIBLE_CATEGORIES or c in ALSO_INVISIBLE)]


def sql_class(code_points: list[int]) -> str:
    """The regular-expression class of sql/030_identity.sql's is_blank."""
    ranges: list[list[int]] = []
    for c in code_points:
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1][1] = c
        else:
            ranges.append([c, c])
    esc = lambda c: f"\\u{c:04x}" if c <= 0xFFFF else f"\\U{c:08x}"  # noqa: E731
    return "".join(esc(a) if a == b else f"{esc(a)}-{esc(b)}" for a, b in ranges)


def test_blank_is_decided_by_unicode_category(conn):
    invisible = invisible_code_points()
    source = conn.execute("select prosrc from pg_proc where oid = 'chatdesk.is_blank(text)'::regprocedure").fetchone()[0]
    assert f"[^{sql_class(invisible)}]" in source, (
        "is_blank's class differs from Python's unicodedata " + unicodedata.unidata_version
        + "; the class is:\n" + sql_class(invisible))
    # each one alone, and all of them together, is blank
    assert conn.execute("select bool_and(is_blank(c)) from unnest(%s::text[]) c",
                        ([chr(c) for c in invisible],)).fetchone()[0]
    assert conn.execute("select is_blank(%s)", ("".join(chr(c) for c in invisible),)).fetchone()[0]
    # every other assigned code point is visible
    visible = [chr(c) for c in range(1, sys.maxunicode + 1)
               if c not in set(invisible) and not 0xD800 <= c <= 0xDFFF
               and unicodedata.category(chr(c)) not in ("Cn", "Co", "Cs")]
    assert conn.execute("select count(*) from unnest(%s::text[]) c where is_blank(c)", (visible,)).fetchone()[0] == 0
    chat = conn.execute("select start_chat(create_real_user('u'))").fetchone()[0]
    for body in ("\U000E0020" * 3, "\U000E0001\U000E007F", "\U0001D173\U0001D17A", "\uFFF9", "\U0001BCA0",
                 "\U00013430", "\U000E0100", "\u0001\u0002", "\u001C\u001F", " \u200b\ufeff "):
        with pytest.raises(psycopg.Error) as refused:
            conn.execute("select send_user_message(%s, %s)", (chat, body))
        assert refused.value.sqlstate == OUT_OF_RANGE, repr(body)
        with pytest.raises(psycopg.Error) as refused:
            conn.execute("select create_real_user(%s)", (body,))
        assert refused.value.sqlstate == OUT_OF_RANGE, repr(body)
    assert conn.execute("select count(*) from messages where chat_id = %s", (chat,)).fetchone() == (0,)


def test_business_time_is_bounded(conn):
    conn.execute("insert into business_hours (weekday, opens, closes) values (1, '09:00', '17:00')")
    for span in (("-infinity", "infinity"), ("2000-01-01", "infinity"), ("1900-01-01", "2100-01-01")):
        with pytest.raises(psycopg.Error) as refused:
            conn.execute("select business_seconds(%s, %s)", span)
        assert refused.value.sqlstate == OUT_OF_RANGE
    assert conn.execute("select business_seconds('2026-11-30 00:00Z', '2026-12-01 00:00Z')").fetchone()[0] == 8 * 3600


@pytest.mark.parametrize("cursor", ["1:9999999999999999999", "99999999999999999999:1", "1:-1", ":", "1:1:1"])
def test_a_malformed_cursor_is_23514(conn, cursor):
    with pytest.raises(psycopg.Error) as refused:
        conn.execute("select * from changes_since(%s)", (cursor,))
    assert refused.value.sqlstate == OUT_OF_RANGE


# -- 7: claims set for the whole session, on a pooled connection ----------------------------
def test_session_claims_do_not_outlive_a_client_behind_a_resetting_pooler(pgbouncer_reset, db_url):
    """PostgreSQL cannot tell set_config(..., false) from (..., true): a
    client that sets claims for the session leaves them on the server
    connection. PgBouncer with server_reset_query = DISCARD ALL and
    server_reset_query_always = 1 (docs/security.md) clears them before the
    next client gets that connection."""
    from psycopg.conninfo import conninfo_to_dict
    p = two_operators_two_visitors(db_url)
    pooled = pgbouncer_reset(conninfo_to_dict(db_url)["dbname"])
    for _ in range(10):  # a pool of one: the next client gets the same server connection
        with psycopg.connect(pooled, autocommit=True, prepare_threshold=None) as careless:
            with careless.transaction():  # claims set for the session, inside a request
                careless.execute("set local role chatdesk_web")
                careless.execute("select set_config('request.jwt.claims', %s, false)", (claims(p["v_login"]),))
                assert careless.execute("select count(*) from chatdesk.chats").fetchone()[0] > 0
            # the reset ran when the transaction ended: its own next request is nobody too
            with careless.transaction():
                careless.execute("set local role chatdesk_web")
                assert careless.execute("select count(*) from chatdesk.chats").fetchone()[0] == 0
            careless.execute("select set_config('request.jwt.claims', %s, false)", (claims(p["v_login"]),))
        with psycopg.connect(pooled, autocommit=True, prepare_threshold=None) as next_client:
            with next_client.transaction():
                next_client.execute("set local role chatdesk_web")
                assert next_client.execute("select current_setting('request.jwt.claims', true)").fetchone()[0] in ("", None)
                assert next_client.execute("select count(*) from chatdesk.chats").fetchone()[0] == 0


# -- 2: every web read costs the caller's own rows ----------------------------------------------
OTHERS_CHATS, OTHERS_MESSAGES, OTHERS_CHANGES, OTHERS_QUEUED = 20_000, 200_000, 400_000, 5_000


@pytest.fixture(scope="module")
def crowded(pg_server, template_db):
    """The fixture's two operators and two visitors, among 20,000 chats,
    200,000 messages and 400,000 feed changes of other people (written as raw
    history, then analyzed: the planner's own statistics, no hints)."""
    from conftest import _database_for_one_test
    databases = _database_for_one_test(pg_server, "chatdesk_crowded", template_db)
    url = next(databases)
    p = two_operators_two_visitors(url)
    with connect(url) as conn:
        conn.execute("set session_replication_role = replica")  # raw rows: no triggers
        conn.execute("insert into real_users (id, display_name) select gen_random_uuid(), 'other' from generate_series(1, 2000)")
        conn.execute("insert into operators (name) select 'other op ' || g from generate_series(1, 2000) g")
        conn.execute(f"""insert into chats (id, real_user_id, chat_state, assigned_operator_id, queued_at)
            select gen_random_uuid(), u.a[1 + g % 2000], case when g % 3 = 0 then 'assigned' else 'closed' end,
                   case when g % 3 = 0 then o.a[1 + g % 2000] end, now() - interval '1 day'
              from generate_series(1, {OTHERS_CHATS}) g,
                   (select array_agg(id) as a from real_users where display_name = 'other') u,
                   (select array_agg(id) as a from operators where name like 'other op %') o""")
        conn.execute(f"""insert into chats (id, real_user_id, chat_state, queued_at)
            select gen_random_uuid(), u.a[1 + g % 2000], 'waiting_assignment', now() - g * interval '1 second'
              from generate_series(1, {OTHERS_QUEUED}) g,
                   (select array_agg(id) as a from real_users where display_name = 'other') u""")
        conn.execute("insert into queue (chat_id, queued_at) select id, queued_at from chats "
                     "where chat_state = 'waiting_assignment' on conflict do nothing")
        conn.execute(f"""insert into messages (id, chat_id, sender_type, body, created_at)
            select nextval('messages_id_seq'), c.id, 'real_user', 'history', now() - interval '1 day'
              from (select id from chats where real_user_id not in (%s, %s)) c, generate_series(1, {OTHERS_MESSAGES // OTHERS_CHATS})""",
                     (p["v"], p["w"]))
        conn.execute(f"""insert into chat_events (chat_id, from_state, to_state, operator_id, reason, created_at)
            select c.id, 'waiting_assignment', 'assigned', c.assigned_operator_id, 'claim', now() - interval '1 day'
              from chats c where c.assigned_operator_id is not null and c.real_user_id not in (%s, %s)""", (p["v"], p["w"]))
        conn.execute(f"""insert into changes (tx, chat_id, chat_seq, kind, message_id, chat_state, from_state,
                                              operator_id, real_user_id, created_at)
            select '1'::xid8, c.id, g, case when g %% 4 = 0 then 'chat' else 'message' end, null,
                   case when g %% 8 = 0 then 'waiting_assignment' else 'assigned' end, null,
                   c.assigned_operator_id, c.real_user_id, now() - interval '1 day'
              from (select * from chats where real_user_id not in (%s, %s) limit 2000) c,
                   generate_series(1, {OTHERS_CHANGES // 2000}) g""", (p["v"], p["w"]))
        conn.execute("set session_replication_role = origin")
        conn.execute("vacuum analyze")
    yield url, p
    next(databases, None)


WEB_READS = {
    "feed": "select * from chatdesk.changes_since(null, 100)",
    "feed, from the current position": "select * from chatdesk.changes_since(chatdesk.feed_position(), 100)",
    "feed position": "select chatdesk.feed_position()",
    "messages": "select id, body from chatdesk.messages",
    "messages of one chat": "select id, body from chatdesk.messages where chat_id = %(chat)s order by id desc limit 20",
    "chat_events": "select id, to_state from chatdesk.chat_events",
    "chats": "select * from chatdesk.chats",
    "real_users": "select id, display_name from chatdesk.real_users",
    "operators": "select * from chatdesk.operators",
    "operator_load": "select * from chatdesk.operator_load",
    "chat_operators": "select * from chatdesk.chat_operators",
    "operator_daily_stats": "select * from chatdesk.operator_daily_stats",
}
TABLES = ("changes", "messages", "chat_events", "chats", "real_users", "operators")


@pytest.mark.parametrize("who", ["v_login", "a_login", "unknown", "none"])
def test_every_web_read_reads_only_the_callers_rows(crowded, who):
    """Counted by PostgreSQL itself (pg_stat_xact_user_tables, this
    transaction's scans): no web read scans a table sequentially, and none
    reads more than a few hundred rows, among 400,000 changes and 200,000
    messages of other people."""
    url, p = crowded
    sub = {"v_login": p["v_login"], "a_login": p["a_login"], "unknown": uuid.uuid4(), "none": None}[who]
    wrong = []
    with psycopg.connect(url, autocommit=True) as conn:
        for name, sql in WEB_READS.items():
            with conn.transaction(force_rollback=True):
                conn.execute("set local role chatdesk_web")
                conn.execute("select set_config('request.jwt.claims', %s, true)", (claims(sub) if sub else "",))
                count = """select relname, seq_scan, seq_tup_read, coalesce(idx_tup_fetch, 0)
                             from pg_stat_xact_user_tables where schemaname = 'chatdesk' and relname = any (%s)"""
                before = {r[0]: r[1:] for r in conn.execute(count, (list(TABLES),))}
                if who in ("unknown", "none") and name.startswith("feed"):  # nobody is refused the feed
                    with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                        conn.execute(sql, {"chat": p["a_chat"]})
                else:
                    conn.execute(sql, {"chat": p["a_chat"]}).fetchall()
                counted = conn.execute(
                    """select relname, seq_scan, seq_tup_read, coalesce(idx_tup_fetch, 0)
                         from pg_stat_xact_user_tables where schemaname = 'chatdesk' and relname = any (%s)""",
                    (list(TABLES),)).fetchall()
            for table, seq_scans, seq_rows, index_rows in counted:
                # (the counts not yet flushed include earlier transactions': the difference is this read's)
                seq_scans, seq_rows, index_rows = (now - then for now, then in
                                                   zip((seq_scans, seq_rows, index_rows), before.get(table, (0, 0, 0))))
                if seq_scans and seq_rows > 50:
                    wrong.append(f"{name}: a sequential scan of {table} ({seq_rows} rows)")
                # an operator's own rows include the whole queue ("see the queue")
                allowed = 300 + (OTHERS_QUEUED if who == "a_login" and name == "chats" else 0)
                if index_rows > allowed:
                    wrong.append(f"{name}: {index_rows} rows of {table} read through indexes")
    assert not wrong, f"as {who}:\n" + "\n".join(wrong)


def test_a_retry_racing_the_loss_of_its_chat_still_tells_nothing(db_url):
    """The race the pre-lock check cannot see: operator A still holds the
    chat when its retry starts, and loses it while the retry waits for the
    chat's lock. The answer is still the message id alone."""
    p = two_operators_two_visitors(db_url)
    chat = p["a_chat"]
    with connect(db_url) as backend:
        seen = backend.execute("select max(id) from messages where chat_id = %s", (chat,)).fetchone()[0]
        backend.execute("select send_user_message(%s, 'still there?')", (chat,))
        first = backend.execute("select message_id from send_operator_message(%s, %s, 'yes', 'race-1', %s)",
                                (chat, p["a"], seen)).fetchone()[0]  # stays assigned: the user wrote meanwhile
        assert backend.execute("select chat_state from chats where id = %s", (chat,)).fetchone()[0] == "assigned"
    holder = psycopg.connect(db_url, options="-c search_path=chatdesk")
    result = {}

    def retry():
        with psycopg.connect(db_url, autocommit=True) as web:
            result["rows"] = as_web(web, p["a_login"],
                                    "select * from chatdesk.send_operator_message(%s, %s, 'yes', 'race-1', %s)",
                                    (chat, p["a"], seen))

    try:
        holder.execute("select 1 from chats where id = %s for no key update", (chat,))
        thread = threading.Thread(target=retry)
        thread.start()
        time.sleep(0.5)  # the retry passed the pre-lock check and waits for the chat's lock
        holder.execute("select release_chat(%s, %s)", (chat, p["a"]))
        holder.commit()
        thread.join(10)
    finally:
        holder.close()
    assert result["rows"] == [(first, None, None)], result
