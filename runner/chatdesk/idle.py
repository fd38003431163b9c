"""`chatdesk release-idle`: chats of silent operators go back to the queue."""

from __future__ import annotations

from datetime import timedelta

import psycopg

from chatdesk import db


def release_idle(conn: psycopg.Connection, idle_after: timedelta) -> int:
    """Chats released (release_idle_chats: each at its old place in the queue)."""
    db.require_primary(conn, "release-idle")
    return conn.execute("select chatdesk.release_idle_chats(%s)", (idle_after,)).fetchone()[0]
