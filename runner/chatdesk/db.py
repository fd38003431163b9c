"""Connections: where the database is, and turning its errors into one line."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

import psycopg

from chatdesk.errors import ConnectionFailed

APP_NAME = "chatdesk"


def first_line(error: BaseException) -> str:
    """The first line of a database error, with its SQLSTATE when it has one."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    sqlstate = getattr(error, "sqlstate", None)
    return f"{text} [{sqlstate}]" if sqlstate else text


def connect(conninfo: str | None, *, autocommit: bool = True, **kwargs) -> psycopg.Connection:
    """Connect with a libpq URL or keyword string; None or "" means the PG* variables and defaults."""
    try:
        return psycopg.connect(
            conninfo or "",
            autocommit=autocommit,
            application_name=APP_NAME,
            connect_timeout=kwargs.pop("connect_timeout", 10),
            **kwargs,
        )
    except psycopg.Error as error:
        raise ConnectionFailed(f"cannot connect to the database: {first_line(error)}") from None


def libpq_env(conninfo: str | None) -> dict:
    """The environment for a libpq client program (psql, pg_prove, pgbench) to reach `conninfo`."""
    from psycopg.conninfo import conninfo_to_dict

    names = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD", "dbname": "PGDATABASE"}
    params = conninfo_to_dict(conninfo or "")
    return {**os.environ, **{var: str(params[key]) for key, var in names.items() if params.get(key)}}


@contextlib.contextmanager
def advisory_lock(conn: psycopg.Connection, key: int, *, wait: bool = True) -> Iterator[bool]:
    """Hold a session-level advisory lock; yields False (and holds nothing) if wait=False and it is taken.

    Waiting polls with pg_try_advisory_lock rather than blocking in
    pg_advisory_lock: a blocked statement keeps a snapshot open, and a
    CREATE INDEX CONCURRENTLY run by the lock's holder waits for every such
    snapshot, so two migrates would wait on each other until lock_timeout.
    """
    got = conn.execute("select pg_try_advisory_lock(%s)", (key,)).fetchone()[0]
    pause = 0.05
    while wait and not got:
        time.sleep(pause)
        pause = min(pause * 2, 0.5)
        got = conn.execute("select pg_try_advisory_lock(%s)", (key,)).fetchone()[0]
    try:
        yield got
    finally:
        if got and not conn.closed:
            # A broken connection has released the lock with itself.
            with contextlib.suppress(psycopg.Error):
                conn.execute("select pg_advisory_unlock(%s)", (key,))


# Advisory lock keys (one bigint space per database); fixed so every runner agrees.
LOCK_MIGRATE = 0x63686174_0001  # "chat" + 1
LOCK_ROLLUP = 0x63686174_0002
