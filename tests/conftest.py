"""Test databases: never DATABASE_URL (it may be production).

CHATDESK_TEST_DATABASE_URL, when set, names a server to use (any database on
it; tests create and drop their own). Otherwise a throwaway PostgreSQL server
is started for the session with pytest-postgresql. Either way one template
database is migrated once per session and cloned for every test.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest
from chatdesk import migrate
from port_for import get_port
from psycopg.conninfo import make_conninfo
from pytest_postgresql.executors import PostgreSQLExecutor

ROOT = Path(__file__).resolve().parent.parent
PGTAP_DIR = ROOT / "tests" / "pgtap"

# Settings for a server that holds nothing worth keeping: fast, and room for
# the concurrency tests' many connections.
THROWAWAY_OPTIONS = (
    " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    " -c max_connections=200 -c shared_buffers=256MB"
)


def _real_pg_ctl() -> str:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    found = os.environ.get("CHATDESK_PG_CTL") or (candidates[-1] if candidates else shutil.which("pg_ctl"))
    if not found:
        pytest.exit("no pg_ctl found: install PostgreSQL or set CHATDESK_TEST_DATABASE_URL", returncode=3)
    return found


@pytest.fixture(scope="session")
def pg_server():
    """A conninfo string for a maintenance connection to the test server."""
    url = os.environ.get("CHATDESK_TEST_DATABASE_URL")
    if url:
        yield url
        return
    os.environ["CHATDESK_PG_CTL"] = _real_pg_ctl()
    base = Path(tempfile.mkdtemp(prefix="chatdesk-pg-"))
    if os.geteuid() == 0:
        postgres = pwd.getpwnam("postgres")
        os.chown(base, postgres.pw_uid, postgres.pw_gid)
    port = get_port(None)
    executor = PostgreSQLExecutor(
        executable=str(ROOT / "tests" / "pg_ctl_as_postgres"),
        host="127.0.0.1",
        port=port,
        datadir=str(base / "data"),
        unixsocketdir=str(base),
        logfile=str(base / "postgresql.log"),
        startparams="-w",
        dbname="postgres",
        user="postgres",
        postgres_options=THROWAWAY_OPTIONS,
    )
    executor.start()
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        executor.stop()
        shutil.rmtree(base, ignore_errors=True)


def admin_execute(server: str, *statements: str) -> None:
    with psycopg.connect(server, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def url_for(server: str, dbname: str) -> str:
    return make_conninfo(server, dbname=dbname)


@pytest.fixture(scope="session")
def template_db(pg_server):
    """A database with chatdesk migrated (and pgTAP installed), cloned per test."""
    name = f"chatdesk_template_{os.getpid()}"
    admin_execute(pg_server, f"drop database if exists {name} with (force)", f"create database {name}")
    url = url_for(pg_server, name)
    migrate.migrate(url, echo=lambda *args, **kwargs: None)
    admin_execute(url, "create extension if not exists pgtap", (ROOT / "tests" / "pgtap_helpers.sql").read_text())
    yield name
    admin_execute(pg_server, f"drop database if exists {name} with (force)")


_clone_numbers = itertools.count()


def _database_for_one_test(server: str, prefix: str, template: str | None = None):
    name = f"{prefix}_{os.getpid()}_{next(_clone_numbers)}"
    admin_execute(server, f"create database {name}" + (f" template {template}" if template else ""))
    yield url_for(server, name)
    admin_execute(server, f"drop database if exists {name} with (force)")


@pytest.fixture
def db_url(pg_server, template_db):
    """A fresh clone of the migrated template, dropped after the test."""
    yield from _database_for_one_test(pg_server, "chatdesk_test", template_db)


@pytest.fixture
def empty_db_url(pg_server):
    """An empty database (no chatdesk schema), dropped after the test."""
    yield from _database_for_one_test(pg_server, "chatdesk_empty")


@pytest.fixture
def conn(db_url):
    """An autocommit connection to a fresh test database, search_path chatdesk."""
    with psycopg.connect(db_url, autocommit=True, options="-c search_path=chatdesk,public") as connection:
        yield connection
