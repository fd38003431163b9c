"""Connections: where the database is, and turning its errors into one line."""

from __future__ import annotations

import os

import psycopg

from chatdesk.errors import ChatdeskError, ConnectionFailed

APP_NAME = "chatdesk"


def first_line(error: BaseException) -> str:
    """The first line of a database error, with its SQLSTATE when it has one."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    sqlstate = getattr(error, "sqlstate", None)
    return f"{text} [{sqlstate}]" if sqlstate else text


def connect(conninfo: str | None, *, autocommit: bool = True, **kwargs) -> psycopg.Connection:
    """Connect with a libpq URL or keyword string; None or "" means the PG* variables and defaults.

    Never prepares statements (prepare_threshold=None): through a
    transaction-mode pooler a prepared statement lands on one server
    connection and the next transaction may run on another (42P05, 26000).
    A runner's few statements gain nothing from preparing."""
    try:
        return psycopg.connect(
            conninfo or "",
            autocommit=autocommit,
            prepare_threshold=None,
            application_name=APP_NAME,
            connect_timeout=kwargs.pop("connect_timeout", 10),
            **kwargs,
        )
    except psycopg.Error as error:
        raise ConnectionFailed(f"cannot connect to the database: {first_line(error)}") from None


async def connect_async(conninfo: str | None, *, application_name: str = APP_NAME) -> psycopg.AsyncConnection:
    """connect() for asyncio (chatdesk.feed.AsyncFeed, chatdesk serve): the
    same options, the same one-line error."""
    try:
        return await psycopg.AsyncConnection.connect(conninfo or "", autocommit=True, prepare_threshold=None,
                                                     application_name=application_name, connect_timeout=10)
    except psycopg.Error as error:
        raise ConnectionFailed(f"cannot connect to the database: {first_line(error)}") from None


def not_installed(conninfo: str | None, error: psycopg.Error) -> str | None:
    """For an error that says chatdesk's schema or tables are missing: the
    line that says so and leads to `chatdesk migrate`; None otherwise."""
    if getattr(error, "sqlstate", None) not in ("3F000", "42P01", "42883") or "chatdesk" not in str(error):
        return None
    try:
        with connect(conninfo) as conn:
            if conn.execute("select to_regclass('chatdesk.chats') is not null").fetchone()[0]:
                return None
            return (f"chatdesk is not installed in database {conn.info.dbname} at {conn.info.host}:{conn.info.port}; "
                    "run chatdesk migrate first")
    except (psycopg.Error, ChatdeskError):
        return None


def libpq_env(conninfo: str | None) -> dict:
    """The environment for a libpq client program (psql, pg_prove, pgbench) to reach `conninfo`."""
    from psycopg.conninfo import conninfo_to_dict

    names = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD", "dbname": "PGDATABASE"}
    params = conninfo_to_dict(conninfo or "")
    return {**os.environ, **{var: str(params[key]) for key, var in names.items() if params.get(key)}}


def where(conn: psycopg.Connection) -> str:
    """host:port/dbname of a connection, for messages."""
    info = conn.info
    return f"{info.host}:{info.port}/{info.dbname}"


def require_primary(conn: psycopg.Connection, command: str) -> None:
    """Refuse at once, before any work, on a hot standby: a write there fails
    only at its first statement (25006), possibly halfway through a job."""
    if conn.execute("select pg_is_in_recovery()").fetchone()[0]:
        raise ChatdeskError(f"{where(conn)} is a read-only standby; run chatdesk {command} against the primary")
