"""`chatdesk serve`: the change feed to browsers as Server-Sent Events
(docs/realtime.md; the contract's "Realtime over HTTP").

    CHATDESK_JWT_SECRET=... chatdesk serve --port 8000
    uvicorn chatdesk.serve:app                       # the same ASGI application
    Mount("/realtime", app=chatdesk.serve.create_app(...))   # inside your own app

A browser opens `GET /feed` with its JWT (the same one PostgREST takes) and
receives, as `change` events, exactly what `changes_since` returns for its
identity, each with its message when it is one, resumable with Last-Event-ID.

How one process serves thousands:
- one hub reads the whole feed once per wake-up (one LISTEN connection, one
  read whatever the number of subscribers: `serve_changes(..., everyone)`),
  each change with its audience, and hands it to the subscribers in that
  audience. Who is in which audience is decided in SQL (audience_changes and
  the columns serve_changes returns); the hub only looks the ids up, and
  tests/test_serve.py proves each subscriber gets exactly changes_since;
- a subscriber that arrives with a cursor catches up from the database first
  (its own audience, through its indexes), then joins the live stream: it is
  registered before it catches up, and the two are joined by position, so
  nothing is lost or repeated;
- a subscriber's buffer is bounded: one that cannot keep up has its stream
  ended, and its browser's reconnect (Last-Event-ID) catches up from the
  database. No subscriber ever waits for another.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import jwt
import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from chatdesk import db
from chatdesk.errors import CURSOR_EXPIRED, OUT_OF_RANGE
from chatdesk.feed import AsyncFeed, Change, follow_async

log = logging.getLogger("chatdesk.serve")


class _RedactTokens(logging.Filter):
    """An EventSource carries its token in the URL (?access_token=): keep it
    out of uvicorn's access log when the application runs under uvicorn
    directly (chatdesk serve turns that log off altogether)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(re.sub(r"(access_token=)[^&\s]+", r"\1[redacted]", a) if isinstance(a, str) else a
                                for a in record.args)
        return True


logging.getLogger("uvicorn.access").addFilter(_RedactTokens())

CATCH_UP_BATCH = 100  # rows per catch-up read (bodies up to 10 kB each: about 1 MB held at most)
CATCH_UP_READS = 4    # catch-up reads at once: the pool (8) keeps room for identifying and /healthz
BUFFER = int(os.environ.get("CHATDESK_SERVE_BUFFER", 2000))  # events a subscriber may fall behind before its stream ends
MAX_STREAMS = int(os.environ.get("CHATDESK_SERVE_MAX_STREAMS", 10_000))  # in all (503 beyond)
MAX_STREAMS_PER_LOGIN = int(os.environ.get("CHATDESK_SERVE_MAX_PER_LOGIN", 10))  # one login's tabs (429 beyond)
# how often open streams' logins are looked up again (one read for all)
REVALIDATE_SECONDS = float(os.environ.get("CHATDESK_SERVE_REVALIDATE_SECONDS", 60))
RETRY_MS = 1000       # how soon a browser reconnects (the SSE retry field)
PING_SECONDS = 15     # a comment line, so proxies keep an idle stream open
MIN_SECRET = 32       # characters, as PostgREST requires of an HS256 secret


def position_key(cursor: str) -> tuple[int, int]:
    """A cursor's place in feed order ("<tx>:<id>", compared as numbers)."""
    tx, _, row = cursor.partition(":")
    return int(tx), int(row)


@dataclass(frozen=True)
class ServedChange(Change):
    """A change as serve_changes returns it: with its audience and message."""
    operator_id: uuid.UUID | None = None
    real_user_id: uuid.UUID | None = None
    queue: bool = False
    sender_type: str | None = None
    body: str | None = None
    client_message_id: str | None = None
    message_created_at: datetime | None = None
    holder: uuid.UUID | None = None  # the chat's operator now (for message changes)

    def may_read_message(self, ident: Identity) -> bool:
        """The messages policy, now: a visitor reads its own chats'
        messages; an operator those of the chats it holds now. (An operator's
        feed shows a chat's changes up to the end of its hold; the bodies of
        a chat it no longer holds are not its to read.)"""
        return self.kind == "message" and self.sender_type is not None and (
            (ident.real_user_id is not None and self.real_user_id == ident.real_user_id)
            or (ident.operator_id is not None and self.holder == ident.operator_id))

    def event_text(self, with_message: bool) -> str:
        """The event's data: the change as JSON, with its message or not."""
        data = self.as_json()
        if with_message:
            data["message"] = {"id": self.message_id, "sender_type": self.sender_type, "body": self.body,
                               "client_message_id": self.client_message_id,
                               "created_at": self.message_created_at.isoformat()}
        return json.dumps(data)


class HubFeed(AsyncFeed):
    """The whole feed, with each change's audience (one read per wake-up)."""
    query = "select * from chatdesk.serve_changes(%s, %s, true)"
    application_name = "chatdesk serve"

    def make(self, row: tuple) -> ServedChange:
        return ServedChange(*row)


@dataclass(frozen=True)
class Identity:
    sub: str
    operator_id: uuid.UUID | None
    real_user_id: uuid.UUID | None
    expires_at: float | None


@dataclass(eq=False)
class Subscriber:
    identity: Identity
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(BUFFER))
    overflowed: bool = False  # fell BUFFER behind: the stream ends after what it holds
    ended: bool = False  # its login names someone else now (Hub.revalidate): the stream ends at once


class Hub:
    """Follows the feed and fans each change out to the subscribers in its
    audience, found by id (a visitor's id, an operator's id, every operator
    for a change of the queue): the cost of a change is its audience, not
    the number of subscribers."""

    def __init__(self, conninfo: str | None, listen_conninfo: str | None):
        self.conninfo, self.listen_conninfo = conninfo, listen_conninfo
        self.cursor: str | None = None
        self.ready = asyncio.Event()
        self.by_user: dict[uuid.UUID, set[Subscriber]] = defaultdict(set)
        self.by_operator: dict[uuid.UUID, set[Subscriber]] = defaultdict(set)
        self.operators: set[Subscriber] = set()
        self.feed: AsyncFeed | None = None
        self._earlier_reads = 0  # reads of feeds before a reconnect
        self.per_login: dict[str, int] = defaultdict(int)
        self.all: set[Subscriber] = set()

    def add(self, sub: Subscriber) -> str:
        """Registers sub; returns the hub's position: every change after it
        reaches sub's buffer (no await in between: nothing slips past)."""
        ident = sub.identity
        self.all.add(sub)
        self.per_login[ident.sub] += 1
        if ident.real_user_id:
            self.by_user[ident.real_user_id].add(sub)
        if ident.operator_id:
            self.by_operator[ident.operator_id].add(sub)
            self.operators.add(sub)
        return self.cursor

    def remove(self, sub: Subscriber) -> None:
        if sub not in self.all:
            return
        ident = sub.identity
        self.all.discard(sub)
        self.per_login[ident.sub] -= 1
        if not self.per_login[ident.sub]:
            del self.per_login[ident.sub]
        if ident.real_user_id:
            self.by_user[ident.real_user_id].discard(sub)
            if not self.by_user[ident.real_user_id]:
                del self.by_user[ident.real_user_id]
        if ident.operator_id:
            self.by_operator[ident.operator_id].discard(sub)
            if not self.by_operator[ident.operator_id]:
                del self.by_operator[ident.operator_id]
            self.operators.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self.all)

    def audience(self, change: ServedChange) -> set[Subscriber]:
        # The columns audience_changes tests, read off the row: the visitor,
        # the operator whose hold the change starts, is in or ends, and every
        # operator for the queue's comings and goings.
        found = set(self.by_user.get(change.real_user_id, ()))
        if change.operator_id is not None:
            found |= self.by_operator.get(change.operator_id, set())
        if change.queue:
            found |= self.operators
        return found

    async def deliver(self, change: ServedChange) -> None:
        self.cursor = change.cursor
        if not (self.by_user or self.operators):
            return
        key = position_key(change.cursor)
        events = {}  # the event's text with and without the message, each made once for every subscriber
        for sub in self.audience(change):
            if sub.overflowed:
                continue
            readable = change.may_read_message(sub.identity)
            if readable not in events:
                events[readable] = change.event_text(readable)
            try:
                sub.queue.put_nowait((key, change.cursor, events[readable]))
            except asyncio.QueueFull:
                sub.overflowed = True  # its stream ends; the browser resumes from its last id

    async def revalidate(self, pool: AsyncConnectionPool) -> None:
        """Every REVALIDATE_SECONDS, the logins of the open streams looked up
        again, all in one read: a stream whose login now names someone else,
        or nobody (unlinked, relinked), ends; its browser's reconnect is
        identified afresh (403 for nobody)."""
        while True:
            await asyncio.sleep(REVALIDATE_SECONDS)
            subs = list(self.all)
            if not subs:
                continue
            try:
                async with pool.connection() as conn:
                    now = {row[0]: (row[1], row[2]) for row in await (await conn.execute(
                        "select s, i.operator_id, i.real_user_id from unnest(%s::text[]) s, "
                        "chatdesk.web_identity(s) i", (sorted({x.identity.sub for x in subs}),))).fetchall()}
            except psycopg.Error as error:
                log.warning("could not look the streams' logins up again: %s", db.first_line(error))
                continue
            for x in subs:
                if now.get(x.identity.sub) != (x.identity.operator_id, x.identity.real_user_id):
                    x.ended = True
                    self._wake(x)

    @staticmethod
    def _wake(sub: Subscriber) -> None:
        """Ends a waiting stream now (an item it will not send)."""
        try:
            sub.queue.put_nowait((None, None, None))
        except asyncio.QueueFull:
            pass  # it is not waiting: it sees `ended` before it sends another

    async def run(self, pool: AsyncConnectionPool) -> None:
        async with pool.connection() as conn:
            self.cursor = (await (await conn.execute("select chatdesk.feed_position()")).fetchone())[0]
        self.ready.set()
        revalidating = asyncio.create_task(self.revalidate(pool))
        try:
            await self._follow()
        finally:
            revalidating.cancel()

    async def _follow(self) -> None:
        def started(feed: AsyncFeed) -> None:
            if self.feed is not None:
                self._earlier_reads += self.feed.reads
            self.feed = feed

        await follow_async(self.conninfo, self.cursor, self.deliver, listen_conninfo=self.listen_conninfo,
                           on_notice=log.warning, feed_class=HubFeed, started=started)

    @property
    def reads(self) -> int:
        """The hub's reads of the feed so far (one per wake-up or poll)."""
        return self._earlier_reads + (self.feed.reads if self.feed else 0)


class Refused(Exception):
    def __init__(self, status: int, body: dict, headers: dict | None = None):
        self.status, self.body, self.headers = status, body, headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status, headers=self.headers)


def unauthorized(why: str) -> Refused:
    """401 with one of this module's own texts (never the token's: a header
    must not carry what a caller wrote)."""
    return Refused(401, {"error": "invalid_token", "message": why},
                   {"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{why}"'})


class FeedResponse(EventSourceResponse):
    """The stream, with its subscriber removed from the hub however the
    response ends: finished, cancelled, a client gone before the stream
    began, or a HEAD request (whose body never starts)."""

    def __init__(self, *args, on_close, **kwargs):
        super().__init__(*args, **kwargs)
        self.on_close = on_close

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()


@dataclass
class Settings:
    conninfo: str | None
    listen_conninfo: str | None
    secret: str
    audience: str = "authenticated"
    cors_origins: tuple[str, ...] = ()


def busy() -> JSONResponse:
    return JSONResponse({"error": "unavailable", "message": "too busy to open a stream now; retry shortly"},
                        status_code=503, headers={"Retry-After": "5"})


def token_of(request: Request) -> str:
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("the Authorization header is not 'Bearer <token>'")
        return token.strip()
    token = request.query_params.get("access_token")
    if not token:
        raise unauthorized("no token: send Authorization: Bearer <JWT>, or ?access_token=<JWT> from EventSource")
    return token


class App:
    """The ASGI application: GET /feed and GET /healthz."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.pool: AsyncConnectionPool | None = None
        self.hub = Hub(settings.conninfo, settings.listen_conninfo)
        self.hub_task: asyncio.Task | None = None
        routes = [Route("/feed", self.feed), Route("/healthz", self.healthz)]
        middleware = []
        if settings.cors_origins:
            from starlette.middleware import Middleware
            from starlette.middleware.cors import CORSMiddleware
            middleware.append(Middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                                         allow_headers=["Authorization", "Last-Event-ID"], allow_methods=["GET"]))
        self.starlette = Starlette(routes=routes, middleware=middleware, lifespan=self.lifespan)

    async def __call__(self, scope, receive, send):
        await self.starlette(scope, receive, send)

    # -- lifetime -------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, _app=None):
        """Opens the pool and starts the hub; mounted inside another app, enter
        it from that app's lifespan (Starlette runs no lifespan of a Mount)."""
        # Reads go through a small pool (a transaction-mode pooler is fine:
        # nothing is prepared); LISTEN needs a direct connection.
        # check: a connection the database dropped is replaced before use,
        # not handed to a request (one round trip each time).
        self.pool = AsyncConnectionPool(self.settings.conninfo or "", min_size=1, max_size=8, open=False,
                                        check=AsyncConnectionPool.check_connection,
                                        kwargs={"autocommit": True, "prepare_threshold": None,
                                                "application_name": "chatdesk serve"})
        self.catching_up = asyncio.Semaphore(CATCH_UP_READS)
        await self.pool.open(wait=True, timeout=30)
        self.hub_task = asyncio.create_task(self.hub.run(self.pool))
        await asyncio.wait([self.hub_task, asyncio.ensure_future(self.hub.ready.wait())],
                           return_when=asyncio.FIRST_COMPLETED)
        if self.hub_task.done():
            self.hub_task.result()  # it failed before it started: say why
        try:
            yield
        finally:
            self.hub_task.cancel()
            await asyncio.gather(self.hub_task, return_exceptions=True)
            await self.pool.close()

    # -- who is asking --------------------------------------------------------

    async def identify(self, request: Request) -> Identity:
        """The JWT checked as PostgREST checks it (HS256, the audience), its
        `sub` matched as the database matches it (web_identity: the same
        match as web_operator_id and web_real_user_id)."""
        token = token_of(request)
        try:
            claims = jwt.decode(token, self.settings.secret, algorithms=["HS256"], audience=self.settings.audience,
                                options={"require": ["sub"]})
        except jwt.ExpiredSignatureError:
            raise unauthorized("the token has expired") from None
        except jwt.InvalidAudienceError:
            raise unauthorized(f"the token's audience is not {self.settings.audience!r}") from None
        except jwt.InvalidTokenError:
            raise unauthorized("the token is not valid (malformed, wrongly signed, or missing a claim)") from None
        # the sub read and matched by the database, as for PostgREST's callers
        sub = str(claims["sub"])
        async with self.pool.connection(timeout=10) as conn:
            operator_id, real_user_id = await (await conn.execute(
                "select operator_id, real_user_id from chatdesk.web_identity(%s)", (sub,))).fetchone()
        if operator_id is None and real_user_id is None:
            raise Refused(403, {"error": "forbidden",
                                "message": "the token's sub is no chatdesk operator or real user"})
        expires = claims.get("exp")
        return Identity(sub, operator_id, real_user_id, float(expires) if expires else None)

    # -- the endpoints --------------------------------------------------------

    async def healthz(self, request: Request) -> JSONResponse:
        try:
            async with self.pool.connection(timeout=5) as conn:
                await conn.execute("select 1")
        except Exception as error:  # any failure to answer is "not healthy"
            return JSONResponse({"status": "unavailable", "error": db.first_line(error)}, status_code=503)
        return JSONResponse({"status": "ok", "position": self.hub.cursor, "subscribers": self.hub.subscribers,
                             "listening": bool(self.hub.feed and self.hub.feed.listening), "reads": self.hub.reads})

    async def catch_up(self, ident: Identity, cursor: str) -> list[ServedChange]:
        """The subscriber's own changes after cursor (one batch), from the database."""
        async with self.catching_up, self.pool.connection(timeout=10) as conn:
            rows = await (await conn.execute(
                "select * from chatdesk.serve_changes(%s, %s, false, %s, %s)",
                (cursor, CATCH_UP_BATCH, ident.operator_id, ident.real_user_id))).fetchall()
        return [ServedChange(*row) for row in rows]

    async def feed(self, request: Request):
        try:
            ident = await self.identify(request)
        except Refused as refused:
            return refused.response()
        except (PoolTimeout, psycopg.OperationalError):  # the database is busy or away: retry shortly
            return busy()
        if self.hub.subscribers >= MAX_STREAMS:
            return busy()
        if self.hub.per_login.get(ident.sub, 0) >= MAX_STREAMS_PER_LOGIN:
            return JSONResponse({"error": "too_many_streams",
                                 "message": f"this login has {MAX_STREAMS_PER_LOGIN} streams open already"},
                                status_code=429, headers={"Retry-After": "5"})
        since = request.headers.get("last-event-id") or request.query_params.get("since")
        sub = Subscriber(ident)
        live_from = self.hub.add(sub)  # before the catch-up read: nothing committed meanwhile slips past
        try:
            first = await self.catch_up(ident, since) if since else []
        except BaseException as error:
            self.hub.remove(sub)  # no stream will start
            if isinstance(error, (PoolTimeout, psycopg.OperationalError)):
                return busy()
            sqlstate = getattr(error, "sqlstate", None)
            if sqlstate == CURSOR_EXPIRED:
                return JSONResponse({"error": sqlstate, "message": db.first_line(error), "position": self.hub.cursor},
                                    status_code=409)
            if sqlstate == OUT_OF_RANGE:
                return JSONResponse({"error": sqlstate, "message": db.first_line(error)}, status_code=400)
            raise
        return FeedResponse(self.stream(sub, since or live_from, first), on_close=lambda: self.hub.remove(sub),
                            ping=PING_SECONDS, send_timeout=30,
                            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def stream(self, sub: Subscriber, since: str, first: list[ServedChange]):
        """The subscriber's events: its catch-up from the database, then the
        hub's, joined by position (each once, in order)."""
        ident = sub.identity
        last = position_key(since)
        # (FeedResponse removes the subscriber from the hub however the stream ends.)
        yield ServerSentEvent(comment="chatdesk", retry=RETRY_MS)
        batch = first
        while batch:  # catching up
            for change in batch:
                last = position_key(change.cursor)
                text = change.event_text(change.may_read_message(ident))
                yield ServerSentEvent(data=text, event="change", id=change.cursor)
            if len(batch) < CATCH_UP_BATCH:
                break
            batch = await self.catch_up(ident, batch[-1].cursor)
        while not sub.ended:  # live
            if sub.overflowed and sub.queue.empty():
                return  # fell too far behind: the browser resumes from its last id
            timeout = None if ident.expires_at is None else ident.expires_at - time.time()
            if timeout is not None and timeout <= 0:
                return  # the token has expired: a new one, a new stream
            try:
                key, cursor, text = await asyncio.wait_for(sub.queue.get(), timeout)
            except asyncio.TimeoutError:
                return
            if key is None or sub.ended:
                return  # its login changed (Hub.revalidate)
            if key <= last:
                continue  # already sent while catching up
            last = key
            yield ServerSentEvent(data=text, event="change", id=cursor)


def checked_secret(secret: str) -> str:
    """The HS256 secret, refused when missing or too weak (ValueError)."""
    if not secret:
        raise ValueError("CHATDESK_JWT_SECRET is not set: chatdesk serve checks each browser's JWT with it "
                         "(the HS256 secret PostgREST or Supabase signs with)")
    if len(secret.strip()) < MIN_SECRET:
        raise ValueError(f"CHATDESK_JWT_SECRET is shorter than {MIN_SECRET} characters: too weak for HS256 "
                         "(PostgREST refuses it too)")
    return secret


def settings_from_env(conninfo: str | None = None, listen_conninfo: str | None = None) -> Settings:
    secret = checked_secret(os.environ.get("CHATDESK_JWT_SECRET", ""))
    origins = tuple(o.strip() for o in os.environ.get("CHATDESK_CORS_ORIGINS", "").split(",") if o.strip())
    return Settings(conninfo=conninfo if conninfo is not None else os.environ.get("DATABASE_URL"),
                    listen_conninfo=listen_conninfo or os.environ.get("CHATDESK_LISTEN_URL") or None,
                    secret=secret, audience=os.environ.get("CHATDESK_JWT_AUDIENCE", "authenticated"),
                    cors_origins=origins)


def create_app(conninfo: str | None = None, *, listen_conninfo: str | None = None, secret: str | None = None,
               audience: str | None = None, cors_origins: tuple[str, ...] = ()) -> App:
    """The ASGI application. Unset arguments come from the environment
    (DATABASE_URL, CHATDESK_LISTEN_URL, CHATDESK_JWT_SECRET,
    CHATDESK_JWT_AUDIENCE, CHATDESK_CORS_ORIGINS)."""
    if secret is None:
        settings = settings_from_env(conninfo, listen_conninfo)
    else:
        settings = Settings(conninfo, listen_conninfo, checked_secret(secret), audience or "authenticated",
                            cors_origins)
    if audience is not None:
        settings.audience = audience
    if cors_origins:
        settings.cors_origins = cors_origins
    return App(settings)


class _FromEnvironment:
    """`uvicorn chatdesk.serve:app`: the application, configured from the
    environment when the server first calls it."""

    def __init__(self):
        self._app: App | None = None

    async def __call__(self, scope, receive, send):
        if self._app is None:
            self._app = create_app()
        await self._app(scope, receive, send)


app = _FromEnvironment()
