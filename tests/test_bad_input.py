"""Bad input, systematically: every API function, nulls, empty strings, oversized
bodies, unknown ids, out-of-range numbers. Each must fail with the documented
SQLSTATE and leave every table of the schema exactly as it was."""

from __future__ import annotations

import psycopg
from chatdesk.errors import (
    AT_CAPACITY,
    BAD_TRANSITION,
    CHAT_CLOSED,
    NOT_ASSIGNEE,
    NOT_FOUND,
    OPERATOR_INACTIVE,
    OUT_OF_RANGE,
)
from helpers import connect

UNKNOWN = "00000000-0000-0000-0000-000000000000"

# (what, sql, expected SQLSTATE); {op}, {busy}, {idle_op}, {chat}, {queued}, {closed} are filled in below
CASES = [
    ("create_operator: null name", "select create_operator(null)", OUT_OF_RANGE),
    ("create_operator: empty name", "select create_operator('')", OUT_OF_RANGE),
    ("create_operator: blank name", "select create_operator('   ')", OUT_OF_RANGE),
    ("create_operator: name too long", "select create_operator(repeat('n', 201))", OUT_OF_RANGE),
    ("create_operator: null capacity", "select create_operator('x', null)", OUT_OF_RANGE),
    ("create_operator: zero capacity", "select create_operator('x', 0)", OUT_OF_RANGE),
    ("create_operator: negative capacity", "select create_operator('x', -3)", OUT_OF_RANGE),
    ("create_operator: capacity too large", "select create_operator('x', 1001)", OUT_OF_RANGE),
    ("set_operator_active: unknown operator", f"select set_operator_active('{UNKNOWN}', true)", NOT_FOUND),
    ("set_operator_active: null operator", "select set_operator_active(null, true)", NOT_FOUND),
    ("set_operator_active: null flag", "select set_operator_active('{op}', null)", OUT_OF_RANGE),
    ("create_real_user: null", "select create_real_user(null)", OUT_OF_RANGE),
    ("create_real_user: empty", "select create_real_user('')", OUT_OF_RANGE),
    ("create_real_user: too long", "select create_real_user(repeat('u', 201))", OUT_OF_RANGE),
    ("start_chat: null user", "select start_chat(null)", NOT_FOUND),
    ("start_chat: unknown user", f"select start_chat('{UNKNOWN}')", NOT_FOUND),
    ("send_user_message: null chat", "select send_user_message(null, 'hi')", NOT_FOUND),
    ("send_user_message: unknown chat", f"select send_user_message('{UNKNOWN}', 'hi')", NOT_FOUND),
    ("send_user_message: null body", "select send_user_message('{chat}', null)", OUT_OF_RANGE),
    ("send_user_message: empty body", "select send_user_message('{chat}', '')", OUT_OF_RANGE),
    ("send_user_message: blank body", "select send_user_message('{chat}', E'\\n \\t')", OUT_OF_RANGE),
    ("send_user_message: body over 10,000", "select send_user_message('{chat}', repeat('b', 10001))", OUT_OF_RANGE),
    ("send_user_message: empty client id", "select send_user_message('{chat}', 'hi', '')", OUT_OF_RANGE),
    ("send_user_message: client id too long", "select send_user_message('{chat}', 'hi', repeat('c', 201))", OUT_OF_RANGE),
    ("send_operator_message: null chat", "select * from send_operator_message(null, '{busy}', 'hi')", NOT_FOUND),
    ("send_operator_message: unknown chat", f"select * from send_operator_message('{UNKNOWN}', '{{busy}}', 'hi')", NOT_FOUND),
    ("send_operator_message: null operator", "select * from send_operator_message('{chat}', null, 'hi')", NOT_FOUND),
    ("send_operator_message: unknown operator", f"select * from send_operator_message('{{chat}}', '{UNKNOWN}', 'hi')", NOT_FOUND),
    ("send_operator_message: empty body", "select * from send_operator_message('{chat}', '{busy}', '')", OUT_OF_RANGE),
    ("send_operator_message: body over 10,000", "select * from send_operator_message('{chat}', '{busy}', repeat('b', 10001))", OUT_OF_RANGE),
    ("send_operator_message: unknown seen id", "select * from send_operator_message('{chat}', '{busy}', 'hi', null, 999999999)", NOT_FOUND),
    ("send_operator_message: negative seen id", "select * from send_operator_message('{chat}', '{busy}', 'hi', null, -1)", NOT_FOUND),
    ("send_operator_message: not the assignee", "select * from send_operator_message('{chat}', '{op}', 'hi')", NOT_ASSIGNEE),
    ("send_operator_message: queued chat", "select * from send_operator_message('{queued}', '{op}', 'hi')", NOT_ASSIGNEE),
    ("send_operator_message: closed chat", "select * from send_operator_message('{closed}', '{busy}', 'hi')", CHAT_CLOSED),
    ("claim_next_chat: null operator", "select claim_next_chat(null)", NOT_FOUND),
    ("claim_next_chat: unknown operator", f"select claim_next_chat('{UNKNOWN}')", NOT_FOUND),
    ("claim_next_chat: inactive operator", "select claim_next_chat('{idle_op}')", OPERATOR_INACTIVE),
    ("claim_next_chat: operator at capacity", "select claim_next_chat('{busy}')", AT_CAPACITY),
    ("release_chat: null chat", "select release_chat(null, '{busy}')", NOT_FOUND),
    ("release_chat: unknown chat", f"select release_chat('{UNKNOWN}', '{{busy}}')", NOT_FOUND),
    ("release_chat: null operator", "select release_chat('{chat}', null)", NOT_FOUND),
    ("release_chat: unknown operator", f"select release_chat('{{chat}}', '{UNKNOWN}')", NOT_FOUND),
    ("release_chat: not the assignee", "select release_chat('{chat}', '{op}')", NOT_ASSIGNEE),
    ("release_chat: queued chat", "select release_chat('{queued}', '{op}')", NOT_ASSIGNEE),
    ("close_chat: null chat", "select close_chat(null)", NOT_FOUND),
    ("close_chat: unknown chat", f"select close_chat('{UNKNOWN}')", NOT_FOUND),
    ("close_chat: already closed", "select close_chat('{closed}')", BAD_TRANSITION),
    ("heartbeat: null operator", "select heartbeat(null)", NOT_FOUND),
    ("heartbeat: unknown operator", f"select heartbeat('{UNKNOWN}')", NOT_FOUND),
    ("release_idle_chats: null interval", "select release_idle_chats(null)", OUT_OF_RANGE),
    ("release_idle_chats: zero interval", "select release_idle_chats('0 seconds')", OUT_OF_RANGE),
    ("release_idle_chats: negative interval", "select release_idle_chats('-5 minutes')", OUT_OF_RANGE),
    ("update_operator_stats: null operator", "select update_operator_stats(null, '2026-01-01')", NOT_FOUND),
    ("update_operator_stats: unknown operator", f"select update_operator_stats('{UNKNOWN}', '2026-01-01')", NOT_FOUND),
    ("update_operator_stats: null date", "select update_operator_stats('{op}', null)", OUT_OF_RANGE),
    ("rollup_operator_stats: null date", "select rollup_operator_stats(null)", OUT_OF_RANGE),
    # blank is blank in every script: Unicode spaces and invisible format characters
    *[(f"send_user_message: body of U+{ord(ch):04X} only", f"select send_user_message('{{chat}}', E'{ch * 3}')", OUT_OF_RANGE)
      for ch in ("\u00a0", "\u200b", "\u3000", "\ufeff", "\u2003", "\u2060", "\u180e")],
    ("send_user_message: a mix of invisible characters", "select send_user_message('{chat}', E' \\u200B\\u00A0\\t\\uFEFF\\u3000 ')", OUT_OF_RANGE),
    ("send_operator_message: invisible body", "select * from send_operator_message('{chat}', '{busy}', E'\\u200B\\u200C\\u200D')", OUT_OF_RANGE),
    ("create_operator: name of no-break spaces", "select create_operator(E'\\u00A0\\u00A0')", OUT_OF_RANGE),
    ("create_real_user: name of ideographic spaces", "select create_real_user(E'\\u3000')", OUT_OF_RANGE),
    ("create_operator: a web login already linked", "select create_operator('twin', 1, (select auth_user_id from operators where auth_user_id is not null limit 1))", "23505"),
    # dates and intervals: in range, or refused with 23514 (never 22008)
    ("rollup_operator_stats: infinity", "select rollup_operator_stats('infinity')", OUT_OF_RANGE),
    ("rollup_operator_stats: -infinity", "select rollup_operator_stats('-infinity')", OUT_OF_RANGE),
    ("rollup_operator_stats: before 2000", "select rollup_operator_stats('1999-12-31')", OUT_OF_RANGE),
    ("rollup_operator_stats: the day after tomorrow", "select rollup_operator_stats(current_date + 2)", OUT_OF_RANGE),
    ("update_operator_stats: infinity", "select update_operator_stats('{op}', 'infinity')", OUT_OF_RANGE),
    ("release_idle_chats: absurd interval", "select release_idle_chats('1 year')", OUT_OF_RANGE),
    ("direct insert: unknown sender type", "insert into messages (chat_id, sender_type, body) values ('{chat}', 'robot', 'x')", OUT_OF_RANGE),
    ("direct insert: null sender type", "insert into messages (chat_id, body) values ('{chat}', 'x')", OUT_OF_RANGE),
    ("direct update: queued -> assigned without naming the event", "update chats set chat_state = 'assigned', assigned_operator_id = '{op}' where id = '{queued}'", BAD_TRANSITION),
    ("direct update: a claim for an operator at capacity", "update chats set chat_state = 'assigned', state_reason = 'claim', assigned_operator_id = '{busy}' where id = '{queued}'", AT_CAPACITY),
    ("direct update: a claim for an inactive operator", "update chats set chat_state = 'assigned', state_reason = 'claim', assigned_operator_id = '{idle_op}' where id = '{queued}'", OPERATOR_INACTIVE),
    ("direct update: an operator reply without a message", "update chats set chat_state = 'waiting_real_user_reply', state_reason = 'operator_reply' where id = '{chat}'", BAD_TRANSITION),
    ("direct update: a user message without a message", "update chats set chat_state = 'waiting_assignment', state_reason = 'user_message' where id = '{closed}'", BAD_TRANSITION),
    ("direct update: a bare close", "update chats set chat_state = 'closed' where id = '{queued}'", BAD_TRANSITION),
    ("direct update: closed -> waiting_real_user_reply", "update chats set chat_state = 'waiting_real_user_reply' where id = '{closed}'", BAD_TRANSITION),
    ("direct update: hand an assigned chat to another operator", "update chats set assigned_operator_id = '{op}' where id = '{chat}'", BAD_TRANSITION),
    ("settings: unknown time zone", "update settings set value = 'Europe/Atlantis' where key = 'stats_time_zone'", OUT_OF_RANGE),
]

def snapshot(conn) -> list[tuple[str, int, str]]:
    """Every table of the schema: its row count and a hash of its rows."""
    tables = [r[0] for r in conn.execute(
        "select relname from pg_class where relnamespace = 'chatdesk'::regnamespace and relkind = 'r' order by 1")]
    return [(t, *conn.execute(
        f"select count(*), md5(coalesce(string_agg(t::text, '|' order by t::text), '')) from chatdesk.{t} t").fetchone())
        for t in tables]


def test_every_refusal_has_its_sqlstate_and_writes_nothing(db_url):
    with connect(db_url) as conn:
        ids = {
            "op": conn.execute("select create_operator('free', 2, gen_random_uuid())").fetchone()[0],
            "busy": conn.execute("select create_operator('busy', 1)").fetchone()[0],
            "idle_op": conn.execute("select create_operator('away')").fetchone()[0],
        }
        conn.execute("select set_operator_active(%s, false)", (ids["idle_op"],))
        user = conn.execute("select create_real_user('u')").fetchone()[0]
        for name in ("chat", "queued", "closed"):
            ids[name] = conn.execute("select start_chat(%s)", (user,)).fetchone()[0]
            conn.execute("select send_user_message(%s, 'hello')", (ids[name],))
            if name == "chat":
                assert conn.execute("select claim_next_chat(%s)", (ids["busy"],)).fetchone()[0] == ids["chat"]
        conn.execute("select close_chat(%s)", (ids["closed"],))

        before = snapshot(conn)
        assert len(before) == 20
        wrong = []
        for what, sql, sqlstate in CASES:
            named = [str(ids[k]) for k in ids if "{" + k + "}" in sql]
            try:
                conn.execute(sql.format(**ids))
            except psycopg.Error as error:
                if error.sqlstate != sqlstate:
                    wrong.append(f"{what}: {error.sqlstate} ({error}) instead of {sqlstate}")
                elif sqlstate.startswith("CD") and not any(i in str(error) for i in named):
                    wrong.append(f"{what}: the message names none of the ids involved: {error}")
            else:
                wrong.append(f"{what}: accepted, expected {sqlstate}")
            after = snapshot(conn)
            if after != before:
                changed = [b[0] for b, a in zip(before, after) if a != b]
                wrong.append(f"{what}: wrote to {changed}")
                before = after
    assert not wrong, "\n".join(wrong)
    assert len(CASES) >= 60
