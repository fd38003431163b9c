"""Bad input, systematically: every API function, nulls, empty strings, oversized
bodies, unknown ids, out-of-range numbers. Each must fail with the documented
SQLSTATE and leave every table of the schema exactly as it was."""

from __future__ import annotations

import psycopg

from test_chat_concurrency import connect

UNKNOWN = "00000000-0000-0000-0000-000000000000"

# (what, sql, expected SQLSTATE); {op}, {busy}, {idle_op}, {chat}, {queued}, {closed} are filled in below
CASES = [
    ("create_operator: null name", "select create_operator(null)", "23514"),
    ("create_operator: empty name", "select create_operator('')", "23514"),
    ("create_operator: blank name", "select create_operator('   ')", "23514"),
    ("create_operator: name too long", "select create_operator(repeat('n', 201))", "23514"),
    ("create_operator: null capacity", "select create_operator('x', null)", "23514"),
    ("create_operator: zero capacity", "select create_operator('x', 0)", "23514"),
    ("create_operator: negative capacity", "select create_operator('x', -3)", "23514"),
    ("create_operator: capacity too large", "select create_operator('x', 1001)", "23514"),
    ("set_operator_active: unknown operator", f"select set_operator_active('{UNKNOWN}', true)", "23503"),
    ("set_operator_active: null operator", "select set_operator_active(null, true)", "23503"),
    ("set_operator_active: null flag", "select set_operator_active('{op}', null)", "23514"),
    ("create_real_user: null", "select create_real_user(null)", "23514"),
    ("create_real_user: empty", "select create_real_user('')", "23514"),
    ("create_real_user: too long", "select create_real_user(repeat('u', 201))", "23514"),
    ("start_chat: null user", "select start_chat(null)", "23503"),
    ("start_chat: unknown user", f"select start_chat('{UNKNOWN}')", "23503"),
    ("send_user_message: null chat", "select send_user_message(null, 'hi')", "23503"),
    ("send_user_message: unknown chat", f"select send_user_message('{UNKNOWN}', 'hi')", "23503"),
    ("send_user_message: null body", "select send_user_message('{chat}', null)", "23514"),
    ("send_user_message: empty body", "select send_user_message('{chat}', '')", "23514"),
    ("send_user_message: blank body", "select send_user_message('{chat}', E'\\n \\t')", "23514"),
    ("send_user_message: body over 10,000", "select send_user_message('{chat}', repeat('b', 10001))", "23514"),
    ("send_user_message: empty client id", "select send_user_message('{chat}', 'hi', '')", "23514"),
    ("send_user_message: client id too long", "select send_user_message('{chat}', 'hi', repeat('c', 201))", "23514"),
    ("send_operator_message: null chat", "select * from send_operator_message(null, '{busy}', 'hi')", "23503"),
    ("send_operator_message: unknown chat", f"select * from send_operator_message('{UNKNOWN}', '{{busy}}', 'hi')", "23503"),
    ("send_operator_message: null operator", "select * from send_operator_message('{chat}', null, 'hi')", "23503"),
    ("send_operator_message: unknown operator", f"select * from send_operator_message('{{chat}}', '{UNKNOWN}', 'hi')", "23503"),
    ("send_operator_message: empty body", "select * from send_operator_message('{chat}', '{busy}', '')", "23514"),
    ("send_operator_message: body over 10,000", "select * from send_operator_message('{chat}', '{busy}', repeat('b', 10001))", "23514"),
    ("send_operator_message: unknown seen id", "select * from send_operator_message('{chat}', '{busy}', 'hi', null, 999999999)", "23503"),
    ("send_operator_message: negative seen id", "select * from send_operator_message('{chat}', '{busy}', 'hi', null, -1)", "23503"),
    ("send_operator_message: not the assignee", "select * from send_operator_message('{chat}', '{op}', 'hi')", "CD001"),
    ("send_operator_message: queued chat", "select * from send_operator_message('{queued}', '{op}', 'hi')", "CD001"),
    ("send_operator_message: closed chat", "select * from send_operator_message('{closed}', '{busy}', 'hi')", "CD005"),
    ("claim_next_chat: null operator", "select claim_next_chat(null)", "23503"),
    ("claim_next_chat: unknown operator", f"select claim_next_chat('{UNKNOWN}')", "23503"),
    ("claim_next_chat: inactive operator", "select claim_next_chat('{idle_op}')", "CD003"),
    ("claim_next_chat: operator at capacity", "select claim_next_chat('{busy}')", "CD004"),
    ("release_chat: null chat", "select release_chat(null, '{busy}')", "23503"),
    ("release_chat: unknown chat", f"select release_chat('{UNKNOWN}', '{{busy}}')", "23503"),
    ("release_chat: null operator", "select release_chat('{chat}', null)", "23503"),
    ("release_chat: unknown operator", f"select release_chat('{{chat}}', '{UNKNOWN}')", "23503"),
    ("release_chat: not the assignee", "select release_chat('{chat}', '{op}')", "CD001"),
    ("release_chat: queued chat", "select release_chat('{queued}', '{op}')", "CD001"),
    ("close_chat: null chat", "select close_chat(null)", "23503"),
    ("close_chat: unknown chat", f"select close_chat('{UNKNOWN}')", "23503"),
    ("close_chat: already closed", "select close_chat('{closed}')", "CD002"),
    ("heartbeat: null operator", "select heartbeat(null)", "23503"),
    ("heartbeat: unknown operator", f"select heartbeat('{UNKNOWN}')", "23503"),
    ("release_idle_chats: null interval", "select release_idle_chats(null)", "23514"),
    ("release_idle_chats: zero interval", "select release_idle_chats('0 seconds')", "23514"),
    ("release_idle_chats: negative interval", "select release_idle_chats('-5 minutes')", "23514"),
    ("update_operator_stats: null operator", "select update_operator_stats(null, '2026-01-01')", "23503"),
    ("update_operator_stats: unknown operator", f"select update_operator_stats('{UNKNOWN}', '2026-01-01')", "23503"),
    ("update_operator_stats: null date", "select update_operator_stats('{op}', null)", "23514"),
    ("rollup_operator_stats: null date", "select rollup_operator_stats(null)", "23514"),
    ("direct insert: unknown sender type", "insert into messages (chat_id, sender_type, body) values ('{chat}', 'robot', 'x')", "23514"),
    ("direct insert: null sender type", "insert into messages (chat_id, body) values ('{chat}', 'x')", "23514"),
    ("direct update: queued -> assigned without naming the event", "update chats set chat_state = 'assigned', assigned_operator_id = '{op}' where id = '{queued}'", "CD002"),
    ("direct update: a claim for an operator at capacity", "update chats set chat_state = 'assigned', state_reason = 'claim', assigned_operator_id = '{busy}' where id = '{queued}'", "CD004"),
    ("direct update: a claim for an inactive operator", "update chats set chat_state = 'assigned', state_reason = 'claim', assigned_operator_id = '{idle_op}' where id = '{queued}'", "CD003"),
    ("direct update: an operator reply without a message", "update chats set chat_state = 'waiting_real_user_reply', state_reason = 'operator_reply' where id = '{chat}'", "CD002"),
    ("direct update: a user message without a message", "update chats set chat_state = 'waiting_assignment', state_reason = 'user_message' where id = '{closed}'", "CD002"),
    ("direct update: a bare close", "update chats set chat_state = 'closed' where id = '{queued}'", "CD002"),
    ("direct update: closed -> waiting_real_user_reply", "update chats set chat_state = 'waiting_real_user_reply' where id = '{closed}'", "CD002"),
    ("direct update: hand an assigned chat to another operator", "update chats set assigned_operator_id = '{op}' where id = '{chat}'", "CD002"),
    ("settings: unknown time zone", "update settings set value = 'Europe/Atlantis' where key = 'stats_time_zone'", "23514"),
]

SNAPSHOT = """
    select c.relname, (xpath('/row/n/text()', query_to_xml(format('select count(*) as n from chatdesk.%I', c.relname), false, true, '')))[1]::text,
           (xpath('/row/h/text()', query_to_xml(format('select md5(coalesce(string_agg(t::text, ''|'' order by t::text), '''')) as h from chatdesk.%I t', c.relname), false, true, '')))[1]::text
      from pg_class c
     where c.relnamespace = 'chatdesk'::regnamespace and c.relkind = 'r'
     order by 1
"""


def test_every_refusal_has_its_sqlstate_and_writes_nothing(db_url):
    with connect(db_url) as conn:
        ids = {
            "op": conn.execute("select create_operator('free', 2)").fetchone()[0],
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

        before = conn.execute(SNAPSHOT).fetchall()
        assert len(before) == 8
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
            after = conn.execute(SNAPSHOT).fetchall()
            if after != before:
                changed = [b[0] for b, a in zip(before, after) if a != b]
                wrong.append(f"{what}: wrote to {changed}")
                before = after
    assert not wrong, "\n".join(wrong)
    assert len(CASES) >= 60
