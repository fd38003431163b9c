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
                if self.listening:
                    for _ in conn.notifies(timeout=self.poll, stop_after=1):
                        pass
                else:
                    self._stop.wait(self.poll)


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
