"""`chatdesk serve` (#26), against a real uvicorn server started by the CLI,
real HTTP clients streaming /feed, and (test_a_browser_*) Debian's Chromium:

- a randomized property test: identities and traffic at random (chats moving
  between operators, closes and reopenings, releases and idle release); every
  subscriber, live from the start or joining later with a cursor, receives
  exactly what changes_since returns for its identity, in order, each once;
- every kind of bad token (401), a sub that is nobody (403), a stale cursor
  (409, CD006) and a malformed one (400);
- the queue seen by operators carries no message bodies;
- a browser's EventSource across a kill and restart of the server;
- SIGTERM with open streams; PgBouncer in transaction mode.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import jwt
import psycopg
import pytest
from helpers import connect
from httpx_sse import connect_sse

SECRET = "a-test-secret-of-at-least-32-bytes-long!"
CHATDESK = str(Path(sys.executable).with_name("chatdesk"))


def token(sub, *, secret=SECRET, audience="authenticated", expires_in=3600, **extra) -> str:
    claims = {"sub": str(sub), "aud": audience, "role": "authenticated", "exp": int(time.time()) + expires_in, **extra}
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, secret, algorithm="HS256")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`chatdesk serve` in a subprocess, on its own port."""

    def __init__(self, database_url: str, *, port: int | None = None, listen_url: str | None = None,
                 env: dict | None = None):
        self.database_url, self.listen_url = database_url, listen_url
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "CHATDESK_JWT_SECRET": SECRET, **(env or {})}
        self.proc: subprocess.Popen | None = None

    def start(self) -> Server:
        args = [CHATDESK, "serve", "--port", str(self.port), "--database-url", self.database_url]
        if self.listen_url:
            args += ["--listen-url", self.listen_url]
        self.proc = subprocess.Popen(args, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + 30
        while time.time() < deadline:
            assert self.proc.poll() is None, self.proc.stdout.read()
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError("chatdesk serve did not answer /healthz within 30 s")

    def health(self) -> dict:
        return httpx.get(f"{self.base}/healthz", timeout=5).json()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def serve(db_url):
    servers = []

    def start(**kwargs) -> Server:
        server = Server(kwargs.pop("database_url", db_url), **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


class Subscriber(threading.Thread):
    """A real HTTP client streaming /feed (httpx, httpx-sse)."""

    def __init__(self, base: str, bearer: str | None, *, since: str | None = None, last_event_id: str | None = None,
                 query_token: bool = False):
        super().__init__(daemon=True)
        params, headers = {}, {}
        if bearer and query_token:
            params["access_token"] = bearer
        elif bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        if since:
            params["since"] = since
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        self.url, self.params, self.headers = f"{base}/feed", params, headers
        self.events: list[dict] = []
        self.status: int | None = None
        self.body: dict | None = None
        self.connected = threading.Event()
        self.ended = threading.Event()

    def run(self) -> None:
        try:
            with httpx.Client(timeout=httpx.Timeout(5, read=None)) as client, \
                    connect_sse(client, "GET", self.url, params=self.params, headers=self.headers) as source:
                self.status = source.response.status_code
                if self.status != 200:
                    self.body = json.loads(source.response.read())
                    return
                self.connected.set()
                for sse in source.iter_sse():
                    if sse.event == "change":
                        assert sse.id == json.loads(sse.data)["cursor"]
                        self.events.append(json.loads(sse.data))
        except httpx.HTTPError:
            pass  # the server went away
        finally:
            self.connected.set()
            self.ended.set()

    def open(self) -> Subscriber:
        self.start()
        assert self.connected.wait(10)
        return self


def expected_feed(conn, login, cursor) -> list[tuple]:
    """What changes_since returns to this web identity after cursor."""
    with conn.transaction():
        conn.execute("set local role chatdesk_web")
        conn.execute("select set_config('request.jwt.claims', %s, true)",
                     (json.dumps({"sub": str(login), "role": "authenticated"}),))
        return conn.execute("select cursor, kind, chat_id::text, message_id, chat_state, chat_seq, created_at "
                            "from chatdesk.changes_since(%s, 10000)", (cursor,)).fetchall()


def received(sub: Subscriber) -> list[tuple]:
    from datetime import datetime
    return [(e["cursor"], e["kind"], e["chat_id"], e["message_id"], e["chat_state"], e["chat_seq"],
             datetime.fromisoformat(e["created_at"])) for e in sub.events]


def wait_for(condition, timeout=15.0, what="condition") -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# --------------------------------------------------------------------------
# exactly changes_since, for every identity, under random traffic


def people(conn, operators=3, visitors=4):
    ops = [(conn.execute("select create_operator(%s, 3, %s)", (f"op{i}", login)).fetchone()[0], login)
           for i, login in enumerate(uuid.uuid4() for _ in range(operators))]
    vis = [(conn.execute("select create_real_user(%s, %s)", (f"visitor{i}", login)).fetchone()[0], login)
           for i, login in enumerate(uuid.uuid4() for _ in range(visitors))]
    return ops, vis


def random_traffic(conn, rng: random.Random, ops, vis, steps: int) -> None:
    """Chats started, written to, claimed, answered (seen or not), released,
    idle-released, closed and reopened, at random, through the functions."""
    conn.execute("update settings set value = '100' where key = 'max_open_chats_per_user'")
    for step in range(steps):
        chats = conn.execute("select id, chat_state, assigned_operator_id, real_user_id from chats").fetchall()
        action = rng.choice(["start", "write", "write", "claim", "claim", "answer", "answer", "release", "idle",
                             "close"])
        try:
            if action == "start" or not chats:
                chat = conn.execute("select start_chat(%s)", (rng.choice(vis)[0],)).fetchone()[0]
                conn.execute("select send_user_message(%s, %s, %s)", (chat, f"hello {step}", f"c{step}"))
            elif action == "write":
                chat = rng.choice(chats)[0]
                conn.execute("select send_user_message(%s, %s, %s)", (chat, f"more {step}", f"c{step}"))
            elif action == "claim":
                conn.execute("select claim_next_chat(%s)", (rng.choice(ops)[0],))
            elif action in ("answer", "release", "idle"):
                held = [c for c in chats if c[1] == "assigned"]
                if not held:
                    continue
                chat, _, operator, _ = rng.choice(held)
                if action == "answer":
                    ids = [r[0] for r in conn.execute(
                        "select id from messages where chat_id = %s order by id desc limit 2", (chat,))]
                    seen = ids[0] if rng.random() < 0.7 else ids[-1]  # or not the newest: it stays held
                    conn.execute("select * from send_operator_message(%s, %s, %s, %s, %s)",
                                 (chat, operator, f"answer {step}", f"o{step}", seen))
                elif action == "release":
                    conn.execute("select release_chat(%s, %s)", (chat, operator))
                else:
                    conn.execute("update operators set last_active_at = now() - interval '1 hour', "
                                 "last_seen_at = now() - interval '1 hour' where id = %s", (operator,))
                    conn.execute("select release_idle_chats('5 minutes')")
                    conn.execute("update operators set last_active_at = now(), last_seen_at = now() where id = %s",
                                 (operator,))
            else:
                chat = rng.choice(chats)[0]
                conn.execute("select close_chat(%s)", (chat,))
        except psycopg.Error as error:
            # a move the state machine refuses (closing a closed chat, an
            # operator at capacity): the feed has nothing of it
            assert error.sqlstate in ("CD002", "CD004", "CD005", "CD007"), error


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_each_subscriber_receives_exactly_changes_since_for_its_identity(db_url, serve, seed):
    rng = random.Random(seed)
    with connect(db_url) as conn:
        ops, vis = people(conn)
        # one login that is both an operator and a visitor: the database gives
        # it both audiences, and so does serve
        both = uuid.uuid4()
        conn.execute("select create_operator('both', 3, %s)", (both,))
        conn.execute("select create_real_user('both', %s)", (both,))
        random_traffic(conn, rng, ops, vis, 20)  # some history before anyone subscribes
        start = conn.execute("select feed_position()").fetchone()[0]
        server = serve()
        logins = [login for _, login in ops + vis] + [both]
        live = {login: Subscriber(server.base, token(login)).open() for login in logins}
        random_traffic(conn, rng, ops, vis, 60)
        # late joiners: from the start cursor, in the middle of the traffic
        late = {login: Subscriber(server.base, token(login), since=start, query_token=True).open()
                for login in logins}
        random_traffic(conn, rng, ops, vis, 60)
        # one that drops and comes back with Last-Event-ID, as a browser does
        resumed_login = vis[0][1]
        wait_for(lambda: live[resumed_login].events, what="an event for the visitor")
        cut = live[resumed_login].events[len(live[resumed_login].events) // 2]["cursor"]
        resumed = Subscriber(server.base, token(resumed_login), last_event_id=cut).open()
        random_traffic(conn, rng, ops, vis, 40)

        for login in logins:
            want = expected_feed(conn, login, start)
            for sub in (live[login], late[login]):
                wait_for(lambda: len(sub.events) >= len(want), what=f"{len(want)} events for {login}")
                time.sleep(0.3)  # and nothing more arrives
                assert received(sub) == want, login
        want = expected_feed(conn, resumed_login, cut)
        wait_for(lambda: len(resumed.events) >= len(want), what="the resumed stream")
        assert received(resumed) == want

        # The message travels with its change, for a window to reconcile by
        # client id: always for a visitor (its own chats); for an operator only
        # while it may read it (the chat is its own when the server reads it).
        messages = {r[0]: r[1:] for r in conn.execute(
            "select id, sender_type, body, client_message_id from messages")}
        visitors = {login for _, login in vis}
        for login in logins:
            for sub in (live[login], late[login]):
                for event in sub.events:
                    if event["kind"] != "message":
                        assert "message" not in event
                        continue
                    if login in visitors:
                        assert "message" in event
                    if "message" in event:
                        m = event["message"]
                        assert (m["sender_type"], m["body"], m["client_message_id"]) == messages[event["message_id"]]
                        assert m["id"] == event["message_id"]
        # With the traffic over: an operator catching up from the start reads
        # the bodies of the chats it holds now, and of no other (its feed
        # still shows the other chats' changes up to the end of its holds).
        for operator, login in ops:
            held = {str(r[0]) for r in conn.execute("select id from chats where assigned_operator_id = %s",
                                                     (operator,))}
            again = Subscriber(server.base, token(login), since=start).open()
            want = expected_feed(conn, login, start)
            wait_for(lambda: len(again.events) >= len(want), what="an operator's catch-up")
            for event in again.events:
                if event["kind"] == "message":
                    assert ("message" in event) == (event["chat_id"] in held), event
        assert server.health()["subscribers"] == 2 * len(logins) + 1 + len(ops)


def test_a_catch_up_longer_than_one_read_then_live(db_url, serve):
    with connect(db_url) as conn:
        (visitor, v_login), = people(conn, operators=0, visitors=1)[1]
        chat = conn.execute("select start_chat(%s)", (visitor,)).fetchone()[0]
        start = conn.execute("select feed_position()").fetchone()[0]
        conn.execute("select send_user_message(%s, 'old ' || g) from generate_series(1, 2500) g", (chat,))
        server = serve()
        sub = Subscriber(server.base, token(v_login), since=start).open()
        conn.execute("select send_user_message(%s, 'new')", (chat,))
        want = expected_feed(conn, v_login, start)
        assert len(want) == 2502
        wait_for(lambda: len(sub.events) >= len(want), what="2,502 events")
        time.sleep(0.3)
        assert received(sub) == want


def test_the_queue_reaches_every_operator_without_bodies(db_url, serve):
    with connect(db_url) as conn:
        (op, op_login), = people(conn, operators=1, visitors=0)[0]
        visitor = conn.execute("select create_real_user('v', %s)", (uuid.uuid4(),)).fetchone()[0]
        server = serve()
        sub = Subscriber(server.base, token(op_login)).open()
        chat = conn.execute("select start_chat(%s)", (visitor,)).fetchone()[0]
        conn.execute("select send_user_message(%s, 'my card number is 1234')", (chat,))
        wait_for(lambda: sub.events, what="the queue change")
        time.sleep(0.5)
        assert [(e["kind"], e["chat_state"]) for e in sub.events] == [("chat", "waiting_assignment")]
        assert "message" not in sub.events[0] and "1234" not in json.dumps(sub.events)
        conn.execute("select claim_next_chat(%s)", (op,))
        wait_for(lambda: len(sub.events) == 2, what="the claim")
        assert sub.events[1]["chat_state"] == "assigned"


# --------------------------------------------------------------------------
# refusals


def test_tokens_that_are_refused(db_url, serve):
    with connect(db_url) as conn:
        (_, op_login), = people(conn, operators=1, visitors=0)[0]
    server = serve()
    unknown = uuid.uuid4()
    cases = {
        "no token": (None, 401),
        "not a JWT": ("not-a-jwt", 401),
        "wrong signature": (token(op_login, secret="another-secret-of-at-least-32-bytes!"), 401),
        "expired": (token(op_login, expires_in=-60), 401),
        "wrong audience": (token(op_login, audience="anon"), 401),
        "no sub": (jwt.encode({"aud": "authenticated", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256"), 401),
        "alg none": (jwt.encode({"sub": str(op_login), "aud": "authenticated"}, None, algorithm="none"), 401),
        "unknown sub": (token(unknown), 403),
        "sub that is no uuid": (token("admin"), 403),
    }
    for name, (bearer, status) in cases.items():
        for query_token in (False, True):
            sub = Subscriber(server.base, bearer, query_token=query_token)
            sub.run()
            assert sub.status == status, name
            assert str(op_login) not in json.dumps(sub.body), name
    response = httpx.get(f"{server.base}/feed", headers={"Authorization": "Basic abc"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_sub_is_read_as_the_database_reads_it(db_url, serve):
    """The same forms of a login are someone for serve and for changes_since
    (PostgreSQL's uuid input); the rest are nobody for both (403)."""
    with connect(db_url) as conn:
        (_, v_login), = people(conn, operators=0, visitors=1)[1]
        server = serve()
        plain = str(v_login)
        forms = [plain, plain.upper(), "{" + plain + "}", plain.replace("-", ""), "urn:uuid:" + plain,
                 "{" + plain, plain + "}", plain[:3] + "-" + plain[3:], "0x" + plain[2:], " " + plain,
                 plain[:8] + "_" + plain[9:]]
        for form in forms:
            try:
                with conn.transaction():
                    conn.execute("set local role chatdesk_web")
                    conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps({"sub": form}),))
                    conn.execute("select chatdesk.feed_position()")
                database_says = 200
            except psycopg.errors.InsufficientPrivilege:
                database_says = 403
            sub = Subscriber(server.base, token(form))
            if database_says == 200:
                sub.open()
                assert sub.status == 200, form
            else:
                sub.run()
                assert sub.status == 403, form


def test_head_requests_and_too_many_tabs_leave_nothing_behind(db_url, serve):
    with connect(db_url) as conn:
        (_, v_login), = people(conn, operators=0, visitors=1)[1]
    server = serve(env={"CHATDESK_SERVE_MAX_PER_LOGIN": "3"})
    for _ in range(20):  # HEAD answers with headers and no stream: no subscriber may stay behind
        assert httpx.head(f"{server.base}/feed", headers={"Authorization": f"Bearer {token(v_login)}"}).status_code \
            == 200
    wait_for(lambda: server.health()["subscribers"] == 0, what="no subscriber left by HEAD requests")
    tabs = [Subscriber(server.base, token(v_login)).open() for _ in range(3)]
    fourth = Subscriber(server.base, token(v_login))
    fourth.run()
    assert fourth.status == 429 and fourth.body["error"] == "too_many_streams"
    assert server.health()["subscribers"] == 3 and all(t.status == 200 for t in tabs)


def test_a_stream_ends_when_its_login_no_longer_names_it(db_url, serve):
    """Logins are looked up again (one read for all streams): a visitor whose
    login is unlinked loses its open stream, and a new one is 403."""
    with connect(db_url) as conn:
        (visitor, v_login), = people(conn, operators=0, visitors=1)[1]
        server = serve(env={"CHATDESK_SERVE_REVALIDATE_SECONDS": "0.5"})
        sub = Subscriber(server.base, token(v_login)).open()
        time.sleep(1)
        assert not sub.ended.is_set()
        conn.execute("select link_auth_user(null, %s, null)", (visitor,))
        assert sub.ended.wait(5)
        again = Subscriber(server.base, token(v_login))
        again.run()
        assert again.status == 403


def test_what_a_caller_sends_never_reaches_a_header_or_the_log(db_url, serve):
    import base64

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    server = serve()
    for ext in ("snow\u2603man", 'foo"bar, error="x', "a\r\nSet-Cookie: x=1"):
        forged = b64(json.dumps({"alg": "HS256", "crit": [ext]}).encode()) + "." + b64(b"{}") + ".AAAA"
        response = httpx.get(f"{server.base}/feed", headers={"Authorization": f"Bearer {forged}"})
        assert response.status_code == 401
        assert ext not in response.headers["www-authenticate"] and "foo" not in response.headers["www-authenticate"]
    secret_looking = token(uuid.uuid4())
    httpx.get(f"{server.base}/feed", params={"access_token": secret_looking})
    server.stop()
    assert secret_looking not in server.proc.stdout.read()


def test_a_weak_secret_is_refused(db_url):
    env = {**os.environ, "CHATDESK_JWT_SECRET": "short"}
    result = subprocess.run([CHATDESK, "serve", "--database-url", db_url], env=env, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode != 0 and result.stderr.startswith("Error: CHATDESK_JWT_SECRET is shorter")


def test_a_cursor_the_feed_no_longer_keeps_is_409_and_a_malformed_one_400(db_url, serve):
    with connect(db_url) as conn:
        (_, v_login), = people(conn, operators=0, visitors=1)[1]
        conn.execute("update changes_horizon set tx = '100000', id = 5")
        server = serve()
        stale = Subscriber(server.base, token(v_login), since="99999:1")
        stale.run()
        assert stale.status == 409
        assert stale.body["error"] == "CD006" and stale.body["position"]
        bad = Subscriber(server.base, token(v_login), last_event_id="12:x")
        bad.run()
        assert bad.status == 400 and bad.body["error"] == "23514"


def test_without_a_secret_it_refuses_to_start(db_url):
    env = {k: v for k, v in os.environ.items() if k != "CHATDESK_JWT_SECRET"}
    result = subprocess.run([CHATDESK, "serve", "--database-url", db_url], env=env, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("Error: CHATDESK_JWT_SECRET")


# --------------------------------------------------------------------------
# the server's life


def test_sigterm_stops_it_within_ten_seconds_with_streams_open(db_url, serve):
    with connect(db_url) as conn:
        (_, v_login), = people(conn, operators=0, visitors=1)[1]
    server = serve()
    subs = [Subscriber(server.base, token(v_login)).open() for _ in range(5)]
    began = time.time()
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(15)
    assert time.time() - began < 10
    for sub in subs:
        assert sub.ended.wait(5)


def test_a_dropped_database_connection_is_resumed_from_the_cursor(db_url, serve):
    with connect(db_url) as conn:
        (visitor, v_login), = people(conn, operators=0, visitors=1)[1]
        chat = conn.execute("select start_chat(%s)", (visitor,)).fetchone()[0]
        start = conn.execute("select feed_position()").fetchone()[0]
        server = serve()
        sub = Subscriber(server.base, token(v_login)).open()
        conn.execute("select send_user_message(%s, 'one')", (chat,))
        wait_for(lambda: len(sub.events) == 2, what="two events")
        # every connection of the server's, killed by the database
        conn.execute("select pg_terminate_backend(pid) from pg_stat_activity "
                     "where application_name = 'chatdesk serve' or (application_name = 'chatdesk' "
                     "and pid <> pg_backend_pid() and datname = current_database())")
        for n in range(5):
            conn.execute("select send_user_message(%s, %s)", (chat, f"after {n}"))
        wait_for(lambda: len(sub.events) == 7, what="the changes after the drop")
        assert received(sub) == expected_feed(conn, v_login, start)
        fresh = Subscriber(server.base, token(v_login), since=start).open()  # not a 500 from a dead connection
        assert fresh.status == 200
        wait_for(lambda: len(fresh.events) == 7, what="a new stream after the drop")
        assert [e["message"]["body"] for e in sub.events if e["kind"] == "message"] == \
            ["one"] + [f"after {n}" for n in range(5)]


def test_a_subscriber_that_stops_reading_delays_nobody_and_resumes_whole(db_url, serve):
    """A browser tab that stops reading (a frozen tab, a stalled proxy) while
    its chat is busy: the others on the same chat get every change at once;
    the stalled stream's buffer is bounded (CHATDESK_SERVE_BUFFER, 40 here);
    a reconnect with Last-Event-ID gets everything after its last event."""
    with connect(db_url) as conn:
        (visitor, v_login), = people(conn, operators=0, visitors=1)[1]
        conn.execute("update settings set value = '100' where key = 'max_open_chats_per_user'")
        chat = conn.execute("select start_chat(%s)", (visitor,)).fetchone()[0]
        start = conn.execute("select feed_position()").fetchone()[0]
        server = serve(env={"CHATDESK_SERVE_BUFFER": "40"})
        # the stalled one: a raw socket with a tiny receive buffer that never reads
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", server.port))
        stalled.sendall(f"GET /feed HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token(v_login)}\r\n\r\n".encode())
        wait_for(lambda: server.health()["subscribers"] == 1, what="the stalled subscriber")
        fast = Subscriber(server.base, token(v_login)).open()
        body = "x" * 9000
        began = time.time()
        for n in range(600):  # 5.4 MB for the stalled one: past its socket buffers (4 MB at most here)
            conn.execute("select send_user_message(%s, %s, %s)", (chat, body, f"m{n}"))
            time.sleep(0.005)  # about 150 a second: a busy chat, not one batch past the buffer
        wait_for(lambda: len(fast.events) == 601, timeout=30, what="every change for the fast subscriber")
        assert time.time() - began < 20
        assert received(fast) == expected_feed(conn, v_login, start)
        # a reconnect (the stalled one, or a new tab) from any cursor gets all that followed it
        resumed = Subscriber(server.base, token(v_login), last_event_id=start).open()
        wait_for(lambda: len(resumed.events) == 601, what="the resumed stream")
        assert received(resumed) == received(fast)
        stalled.close()


def test_through_pgbouncer_reads_are_pooled_and_listen_goes_direct(db_url, serve, pgbouncer):
    from psycopg.conninfo import conninfo_to_dict
    pooled = pgbouncer(conninfo_to_dict(db_url)["dbname"])
    with connect(db_url) as conn:
        (visitor, v_login), = people(conn, operators=0, visitors=1)[1]
        chat = conn.execute("select start_chat(%s)", (visitor,)).fetchone()[0]
    # LISTEN through the pooler hears nothing: serve says so and polls
    polling = serve(database_url=pooled)
    assert polling.health()["listening"] is False
    # with a direct connection for LISTEN it is woken
    woken = serve(database_url=pooled, listen_url=db_url)
    assert woken.health()["listening"] is True
    subs = [Subscriber(s.base, token(v_login)).open() for s in (polling, woken)]
    with connect(db_url) as conn:
        for n in range(10):
            conn.execute("select send_user_message(%s, %s)", (chat, f"m{n}"))
        for sub in subs:
            wait_for(lambda: len(sub.events) == 11, what="every change through the pooler")
        assert received(subs[0]) == received(subs[1])


# --------------------------------------------------------------------------
# a real browser


def test_a_browser_eventsource_loses_and_repeats_nothing_across_a_server_restart(db_url, serve):
    playwright = pytest.importorskip("playwright.sync_api")
    with connect(db_url) as conn:
        (visitor, v_login), = people(conn, operators=0, visitors=1)[1]
        chat = conn.execute("select start_chat(%s)", (visitor,)).fetchone()[0]
        server = serve()
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(f"{server.base}/healthz")  # the page's origin: the feed is same-origin
            page.evaluate("""token => {
                window.got = []; window.opened = 0;
                const source = new EventSource('/feed?access_token=' + token);
                source.onopen = () => { window.opened += 1; };
                source.addEventListener('change', e => window.got.push(JSON.parse(e.data)));
            }""", token(v_login))
            page.wait_for_function("window.opened === 1")
            for n in range(5):
                conn.execute("select send_user_message(%s, %s, %s)", (chat, f"before {n}", f"b{n}"))
            page.wait_for_function("window.got.length === 6")
            server.kill()  # mid-stream, no goodbye
            for n in range(5):  # written while it is down
                conn.execute("select send_user_message(%s, %s, %s)", (chat, f"down {n}", f"d{n}"))
            serve(port=server.port)
            page.wait_for_function("window.opened === 2", timeout=20000)
            for n in range(5):
                conn.execute("select send_user_message(%s, %s, %s)", (chat, f"after {n}", f"a{n}"))
            page.wait_for_function("window.got.length >= 16", timeout=20000)
            time.sleep(0.5)
            got = page.evaluate("window.got")
            browser.close()
        bodies = [e["message"]["body"] for e in got if e["kind"] == "message"]
        assert bodies == [f"{w} {n}" for w in ("before", "down", "after") for n in range(5)]
        cursors = [e["cursor"] for e in got]
        assert len(cursors) == len(set(cursors)) == 16
        position = conn.execute("select feed_position()").fetchone()[0]
        assert cursors[-1] == position


def test_under_plain_uvicorn_the_access_log_keeps_no_token(db_url):
    """`uvicorn chatdesk.serve:app` logs requests (chatdesk serve does not):
    an EventSource's ?access_token= is blanked out of those lines."""
    port = free_port()
    env = {**os.environ, "CHATDESK_JWT_SECRET": SECRET, "DATABASE_URL": db_url}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "chatdesk.serve:app", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), timeout=30, what="uvicorn")
        secret_looking = token(uuid.uuid4())
        assert httpx.get(f"http://127.0.0.1:{port}/feed", params={"access_token": secret_looking}).status_code == 403
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=15)[0]
    assert "GET /feed?access_token=[redacted]" in out, out
    assert secret_looking not in out


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False
