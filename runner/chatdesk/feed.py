"""The change feed for Python backends, and `chatdesk watch`.

    from chatdesk.feed import Feed
    feed = Feed("postgresql://app@db/chat", since=saved_cursor)
    for change in feed:              # blocks, yields each change once, in order
        handle(change)
        save(change.cursor)          # resume from here after a restart

The loop every reader needs, written once: LISTEN first, then read
(`changes_since`), so a wake-up that fires in between is not lost; the
NOTIFY is only a wake-up and a timed poll is the backstop (a change can become
readable without a notification of its own: when an older transaction that
held it back ends). Each read is one batch query; the cursor is the only
state. Through a transaction-mode pooler LISTEN hears nothing: the feed finds
out with a probe and says so, and then polls.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import psycopg

from chatdesk import db
from chatdesk.errors import ConnectionFailed

CHANNEL = "chatdesk"
# Writers send at most one wake-up per 50 ms (publish_change): a reader that
# was woken reads once more this long after, for what committed in that window.
WAKE_FOLLOW_UP = 0.06


@dataclass(frozen=True)
class Change:
    cursor: str
    kind: str  # "message" or "chat"
    chat_id: UUID
    message_id: int | None
    chat_state: str
    created_at: datetime
    chat_seq: int

    def as_json(self) -> dict:
        return {"cursor": self.cursor, "kind": self.kind, "chat_id": str(self.chat_id),
                "message_id": self.message_id, "chat_state": self.chat_state,
                "created_at": self.created_at.isoformat(), "chat_seq": self.chat_seq}


class Feed:
    """Iterates the change feed from `since` (None: the oldest kept) until stop() is called.

    `poll` is the backstop between reads when nothing wakes the reader (0.1
    to 0.25 s keeps delivery well under a second even without NOTIFY).
    `on_notice` hears one line about how the feed runs (for example that
    LISTEN does not work on this connection)."""

    def __init__(self, conninfo: str | None, since: str | None = None, *, batch: int = 1000, poll: float = 0.2,
                 on_notice: Callable[[str], None] = lambda text: None, stop: threading.Event | None = None):
        self.conninfo, self.cursor, self.batch, self.poll = conninfo, since, batch, poll
        self.on_notice = on_notice
        self.listening = False
        self._stop = stop or threading.Event()  # set (or stop()) ends the iteration

    def stop(self) -> None:
        self._stop.set()

    def _listen(self, conn: psycopg.Connection) -> bool:
        """LISTEN, and prove it works: a transaction-mode pooler accepts
        LISTEN and then delivers nothing (pgbouncer#655). The probe comes from
        a second connection while this one is idle, as every wake-up will."""
        probe = f"chatdesk_probe_{os.getpid()}_{id(self)}"
        conn.execute(f"listen {CHANNEL}")
        conn.execute(f"listen {probe}")
        with db.connect(self.conninfo) as other:
            other.execute("select pg_notify(%s, '')", (probe,))
        heard = any(n.channel == probe for n in conn.notifies(timeout=1.0, stop_after=1))
        conn.execute(f"unlisten {probe}")
        return heard

    def __iter__(self) -> Iterator[Change]:
        with db.connect(self.conninfo) as conn:
            standby = conn.execute("select pg_is_in_recovery()").fetchone()[0]
            # NOTIFY does not reach a hot standby (nor may it LISTEN): poll.
            self.listening = not standby and self._listen(conn)
            if standby:
                self.on_notice(f"a read-only standby: NOTIFY does not reach it; polling every {self.poll:g} s "
                               f"(each change once, in order, as soon as it is replayed here)")
            elif not self.listening:
                self.on_notice(f"LISTEN hears nothing on this connection (a transaction-mode pooler?): "
                               f"polling every {self.poll:g} s; connect directly for wake-ups")
            woken = False
            while not self._stop.is_set():
                rows = conn.execute("select * from chatdesk.changes_since(%s, %s)", (self.cursor, self.batch)).fetchall()
                for row in rows:
                    change = Change(*row)
                    self.cursor = change.cursor
                    yield change
                    if self._stop.is_set():
                        return
                if len(rows) == self.batch:
                    continue  # more is waiting: read on at once
                timeout, woken = (WAKE_FOLLOW_UP if woken else self.poll), False
                if self.listening:
                    for _ in conn.notifies(timeout=timeout, stop_after=1):
                        woken = True  # read now, and once more a throttle window later
                else:
                    self._stop.wait(timeout)


def position(conninfo: str | None) -> str:
    """The feed's current position: follow from it for new changes only."""
    with db.connect(conninfo) as conn:
        return conn.execute("select chatdesk.feed_position()").fetchone()[0]


def follow(conninfo: str | None, since: str | None, emit: Callable[[Change], None], *,
           on_notice: Callable[[str], None] = lambda text: None, stop: threading.Event | None = None,
           retry: float = 1.0) -> str | None:
    """Emit every change from `since` until `stop` is set, reconnecting after
    a dropped connection or a server restart (nothing lost, nothing repeated:
    the cursor carries over). Returns the last cursor."""
    stop = stop or threading.Event()
    cursor = since
    while not stop.is_set():
        try:
            for change in Feed(conninfo, cursor, on_notice=on_notice, stop=stop):
                emit(change)
                cursor = change.cursor
        except (psycopg.OperationalError, ConnectionFailed) as error:
            on_notice(f"connection lost ({db.first_line(error)}); resuming from {cursor or 'the start'} ...")
            stop.wait(retry)
    return cursor


class AsyncFeed:
    """The async counterpart of Feed, for asyncio applications (FastAPI,
    Starlette):

        async for change in AsyncFeed(url, since=saved_cursor):
            await handle(change)

    The same loop: LISTEN (proved by a probe) before each read, one batch
    read at a time, the timed poll as the backstop. `listen_conninfo` is a
    direct connection for LISTEN when `conninfo` goes through a
    transaction-mode pooler (where LISTEN hears nothing); reads stay on
    `conninfo`. stop() ends the iteration within one poll."""

    query = "select * from chatdesk.changes_since(%s, %s)"
    application_name = db.APP_NAME

    def __init__(self, conninfo: str | None, since: str | None = None, *, listen_conninfo: str | None = None,
                 batch: int = 1000, poll: float = 0.2, on_notice: Callable[[str], None] = lambda text: None):
        self.conninfo, self.listen_conninfo = conninfo, listen_conninfo
        self.cursor, self.batch, self.poll, self.on_notice = since, batch, poll, on_notice
        self.listening = False
        self.reads = 0  # batch reads so far (the bench counts them)
        self._woken = False
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def connect(self, conninfo: str | None) -> psycopg.AsyncConnection:
        return await db.connect_async(conninfo, application_name=self.application_name)

    def make(self, row: tuple):
        """One change from one row of `query` (a subclass reads more columns)."""
        return Change(*row)

    async def _listen(self, conn: psycopg.AsyncConnection) -> bool:
        probe = f"chatdesk_probe_{os.getpid()}_{id(self)}"
        await conn.execute(f"listen {CHANNEL}")
        await conn.execute(f"listen {probe}")
        other = await self.connect(self.listen_conninfo or self.conninfo)
        async with other:
            await other.execute("select pg_notify(%s, '')", (probe,))
        heard = False
        async for n in conn.notifies(timeout=1.0, stop_after=1):
            heard = n.channel == probe
        await conn.execute(f"unlisten {probe}")
        return heard

    async def _wait(self, listener: psycopg.AsyncConnection | None) -> None:
        """Until a wake-up, or the poll's end (stop() takes effect by then).
        After a wake-up, the next read comes one throttle window later
        (WAKE_FOLLOW_UP): writers send at most one wake-up per 50 ms, so
        what commits just after one gets none of its own."""
        timeout = WAKE_FOLLOW_UP if self._woken else self.poll
        self._woken = False
        if listener is None:
            try:
                await asyncio.wait_for(self._stop.wait(), timeout)
            except asyncio.TimeoutError:
                pass
            return
        async for _ in listener.notifies(timeout=timeout, stop_after=1):
            self._woken = True

    async def __aiter__(self):
        reader = await self.connect(self.conninfo)
        listener = await self.connect(self.listen_conninfo) if self.listen_conninfo else reader
        try:
            standby = (await (await reader.execute("select pg_is_in_recovery()")).fetchone())[0]
            self.listening = not standby and await self._listen(listener)
            if standby:
                self.on_notice(f"a read-only standby: NOTIFY does not reach it; polling every {self.poll:g} s")
            elif not self.listening:
                self.on_notice(f"LISTEN hears nothing on this connection (a transaction-mode pooler?): "
                               f"polling every {self.poll:g} s; give a direct connection for LISTEN")
            while not self._stop.is_set():
                rows = await (await reader.execute(self.query, (self.cursor, self.batch))).fetchall()
                self.reads += 1
                for row in rows:
                    change = self.make(row)
                    self.cursor = change.cursor
                    yield change
                    if self._stop.is_set():
                        return
                if len(rows) < self.batch:
                    await self._wait(listener if self.listening else None)
        finally:
            await reader.close()
            if listener is not reader:
                await listener.close()


async def follow_async(conninfo: str | None, since: str | None, emit, *, listen_conninfo: str | None = None,
                       on_notice: Callable[[str], None] = lambda text: None, retry: float = 1.0,
                       feed_class: type[AsyncFeed] = AsyncFeed, started=None) -> None:
    """follow() for asyncio: await emit(change) for every change from `since`,
    reconnecting after a dropped connection or a server restart (the cursor
    carries over: nothing lost, nothing repeated). Runs until cancelled.
    `started(feed)` is called with each new feed (to stop it, say)."""
    cursor = since
    while True:
        feed = feed_class(conninfo, cursor, listen_conninfo=listen_conninfo, on_notice=on_notice)
        if started is not None:
            started(feed)
        try:
            async for change in feed:
                await emit(change)
                cursor = change.cursor
            return
        except (psycopg.OperationalError, ConnectionFailed) as error:
            on_notice(f"connection lost ({db.first_line(error)}); resuming from {cursor or 'the start'} ...")
            await asyncio.sleep(retry)
