"""The change feed, by audience and by wake-up (#24):

- every change of a chat reaches every audience it belongs to: the visitor,
  the operator whose hold it starts or ends, and the operators watching the
  queue; for each function that changes a chat and for the direct UPDATE
  (claim, release, idle release, answer, close by either side, reopen);
- a session that may set its identity several ways (claims, the
  chatdesk.operator_id setting, act_as_operator, role switches) is who the
  rules say, with and without claims, on a connection another caller used;
- the wake-up: a LISTEN on channel chatdesk hears a commit with changes, at
  most one wake-up per 50 ms, and the next commit after 50 ms of quiet sends
  one.
"""

from __future__ import annotations

import json
import time
import uuid

import psycopg
import pytest
from helpers import connect, two_operators_two_visitors


def claims(sub) -> str:
    return json.dumps({"sub": str(sub), "role": "authenticated"})


def feed_of(conn, sub, cursor) -> list[tuple[str, str, str]]:
    """(chat_id, kind, chat_state) of what a web caller's feed holds after cursor."""
    with conn.transaction():
        conn.execute("set local role chatdesk_web")
        conn.execute("select set_config('request.jwt.claims', %s, true)", (claims(sub),))
        return [(str(r[0]), r[1], r[2]) for r in conn.execute(
            "select chat_id, kind, chat_state from chatdesk.changes_since(%s, 10000)", (cursor,))]


# change -> (how it is made on chat "a_chat" (held by A) or "queued" (waiting), the state after,
#            whether A, B (watching the queue) and the visitor see it)
CHANGES = {
    "claim": ("select claim_next_chat('{b}')", "queued", "assigned", {"b", "a", "visitor_w"}),
    "release": ("select release_chat('{a_chat}', '{a}')", "a_chat", "waiting_assignment", {"a", "b", "visitor_v"}),
    "idle release": ("select release_idle_chats('5 minutes')", "a_chat", "waiting_assignment", {"a", "b", "visitor_v"}),
    "answer": ("select send_operator_message('{a_chat}', '{a}', 'done', null, null)", "a_chat",
               "waiting_real_user_reply", {"a", "visitor_v"}),
    "visitor closes": ("web:{v_login}:select chatdesk.close_chat('{a_chat}')", "a_chat", "closed", {"a", "visitor_v"}),
    "operator closes": ("web:{a_login}:select chatdesk.close_chat('{a_chat}')", "a_chat", "closed", {"a", "visitor_v"}),
    "backend closes": ("select close_chat('{queued}')", "queued", "closed", {"a", "b", "visitor_w"}),
    "direct update": ("update chats set chat_state = 'closed', state_reason = 'close' where id = '{a_chat}'", "a_chat",
                      "closed", {"a", "visitor_v"}),
    "reopen": ("select close_chat('{queued}'); select send_user_message('{queued}', 'me again')", "queued",
               "waiting_assignment", {"a", "b", "visitor_w"}),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_every_change_reaches_every_audience(db_url, change):
    make, target, state, audience = CHANGES[change]
    p = two_operators_two_visitors(db_url)
    who = {"a": p["a_login"], "b": p["b_login"], "visitor_v": p["v_login"], "visitor_w": p["w_login"]}
    with connect(db_url) as backend, psycopg.connect(db_url, autocommit=True) as web:
        backend.execute("update operators set last_active_at = now() - interval '1 hour' where id = %s", (p["a"],))
        backend.execute("update operators set last_active_at = now() where id = %s", (p["b"],))
        if change == "claim":
            backend.execute("update operators set max_concurrent_chats = 10 where id = %s", (p["b"],))
        position = backend.execute("select feed_position()").fetchone()[0]
        for statement in make.format(**p).split("; "):
            if statement.startswith("web:"):
                _, sub, sql = statement.split(":", 2)
                with web.transaction():
                    web.execute("set local role chatdesk_web")
                    web.execute("select set_config('request.jwt.claims', %s, true)", (claims(sub),))
                    web.execute(sql)
            else:
                backend.execute(statement)
        everything = [(str(r[0]), r[1], r[2]) for r in backend.execute(
            "select chat_id, kind, chat_state from changes_since(%s, 10000)", (position,))]
        chat_change = (p[target], "chat", state)
        assert chat_change in everything, (change, everything)
        for name, sub in who.items():
            seen = feed_of(web, sub, position)
            assert (chat_change in seen) == (name in audience), (change, name, seen)
            # nobody sees a change of a chat that is not theirs, the queue's or their user's
            assert all(row in everything for row in seen)


def test_an_identity_comes_only_from_the_claims(db_url):
    """chatdesk.operator_id (the setting 0.1.0 read), act_as_operator and role
    switches never make a web caller someone; on a connection a backend used
    first, with or without claims."""
    p = two_operators_two_visitors(db_url)
    bad_claims = ["", "{}", '{"sub": null}', '{"sub": "' + p["a_login"], json.dumps({"sub": str(uuid.uuid4())}),
                  json.dumps({"sub": "not a uuid"})]
    with psycopg.connect(db_url, autocommit=True) as conn:
        for level in ("session", "transaction"):
            for bad in bad_claims:
                # a backend used the connection first, narrowed to A
                with conn.transaction():
                    conn.execute("set local role chatdesk_app")
                    conn.execute("select chatdesk.act_as_operator(%s)", (p["a"],))
                if level == "session":
                    conn.execute("select set_config('chatdesk.operator_id', %s, false)", (p["a"],))
                with conn.transaction():
                    conn.execute("set local role chatdesk_web")
                    conn.execute("select set_config('chatdesk.operator_id', %s, true)", (p["a"],))
                    conn.execute("select set_config('request.jwt.claims', %s, true)", (bad,))
                    who = conn.execute("select chatdesk.web_operator_id(), chatdesk.web_real_user_id()").fetchone()
                    assert who == (None, None), (level, bad, who)
                    assert conn.execute("select count(*) from chatdesk.chats").fetchone()[0] == 0
                    for refused_call in ("select count(*) from chatdesk.changes_since()",
                                         f"select chatdesk.heartbeat('{p['a']}')"):
                        with pytest.raises(psycopg.Error) as refused:
                            with conn.transaction():
                                conn.execute(refused_call)
                        assert refused.value.sqlstate == "42501", refused_call
                conn.execute("reset chatdesk.operator_id")
            # valid claims are that visitor, whatever chatdesk.operator_id says
            with conn.transaction():
                conn.execute("set local role chatdesk_web")
                conn.execute("select set_config('chatdesk.operator_id', %s, true)", (p["a"],))
                conn.execute("select set_config('request.jwt.claims', %s, true)", (claims(p["v_login"]),))
                assert conn.execute("select chatdesk.web_operator_id(), chatdesk.web_real_user_id()::text").fetchone() \
                    == (None, p["v"])
        # act_as_operator is for backends: a web caller cannot narrow itself into someone
        with pytest.raises(psycopg.Error) as refused:
            with conn.transaction():
                conn.execute("set local role chatdesk_web")
                conn.execute("select chatdesk.act_as_operator(%s)", (p["a"],))
        assert refused.value.sqlstate == "42501"
        # a backend's narrowing ends with its transaction: the next one is a whole backend again
        with conn.transaction():
            conn.execute("set local role chatdesk_app")
            conn.execute("select chatdesk.act_as_operator(%s)", (p["a"],))
            assert conn.execute("select count(*) from chatdesk.chats").fetchone()[0] == 1
        with conn.transaction():
            conn.execute("set local role chatdesk_app")
            assert conn.execute("select count(*) from chatdesk.chats").fetchone()[0] == 3


def notifications(listener, seconds: float) -> list[float]:
    """Arrival times of the wake-ups heard within `seconds`."""
    heard = []
    for _ in listener.notifies(timeout=seconds):
        heard.append(time.monotonic())
    return heard


def test_listen_hears_a_wakeup_at_most_every_50_ms(db_url):
    with connect(db_url) as setup:
        chat = setup.execute("select start_chat(create_real_user('u'))").fetchone()[0]
    with psycopg.connect(db_url, autocommit=True) as listener, connect(db_url) as writer:
        listener.execute("listen chatdesk")
        time.sleep(0.1)  # more than 50 ms since the last wake-up (the chat's start)
        notifications(listener, 0.01)  # drop what came before
        writer.execute("select send_user_message(%s, 'one')", (chat,))
        first = notifications(listener, 1.0)
        assert len(first) == 1, "a commit with changes after 50 ms of quiet wakes the listener"
        # a burst of commits: one wake-up per 50 ms at most
        start = time.monotonic()
        sent = 0
        while time.monotonic() - start < 0.3:
            writer.execute("select send_user_message(%s, 'burst')", (chat,))
            sent += 1
        burst = time.monotonic() - start
        heard = notifications(listener, 0.5)
        assert sent > 20, "the burst wrote many commits"
        assert 1 <= len(heard) <= burst / 0.05 + 2, (sent, len(heard), burst)
        # quiet again, then one commit: heard
        time.sleep(0.1)
        notifications(listener, 0.01)
        writer.execute("select send_user_message(%s, 'after the quiet')", (chat,))
        assert len(notifications(listener, 1.0)) == 1
