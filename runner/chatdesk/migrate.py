"""`chatdesk migrate`: yoyo migrations, then a reload of what changed in sql/.

Safe to run against a live database, and through a transaction-mode pooler:

- One run at a time, by a lease on yoyo's own lock row (a committed row, so
  it holds across transactions and pooled connections). The holder renews it
  every few seconds from a second connection; a row nobody renewed for
  LEASE_STALE seconds was left by a killed run and is taken over. A waiting
  run polls, so it never sits inside a statement (a CREATE INDEX
  CONCURRENTLY of the holder waits for every open snapshot).
- sql/ files are reloaded only when their text changed since the last load
  (their sha256 is kept in chatdesk.sql_loaded): with nothing pending, a
  migrate touches nothing that live traffic uses.
- Functions and views are re-created in one transaction that locks no
  table. Triggers and policies, which must lock their table, are re-created
  one table per transaction, so the reload never holds one table while
  waiting for another: the application takes operators before chats on some
  paths and chats before operators on others, and any fixed order of two
  table locks could close a cycle with it. Each table lock waits at most
  RELOAD_LOCK_TIMEOUT, so live traffic never queues behind it for long; a
  busy table is retried with backoff, then the run stops with a clear error.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import sqlparse
from yoyo import read_migrations
from yoyo.backends.core.postgresql import PostgresqlPsycopgBackend
from yoyo.connections import parse_uri

from chatdesk import db, resources
from chatdesk.errors import MigrationFailed

YOYO_LOCK_TABLE = "yoyo_lock"
# The roles the migrations create when the cluster lacks them (0006, 0008): cluster-wide, NOLOGIN.
CLUSTER_ROLES = ("chatdesk_owner", "chatdesk_app", "chatdesk_reporting", "chatdesk_web")
# A lease not renewed for this long belongs to a dead run; renewed six times as often.
LEASE_STALE = float(os.environ.get("CHATDESK_MIGRATE_LEASE_SECONDS", "30"))
LEASE_RENEW = LEASE_STALE / 6

# sql/ files whose statements lock their table, and the lock they need.
TABLE_LOCKING_FILES = {"900_triggers.sql": "share row exclusive", "940_policies.sql": "access exclusive"}
_ON_TABLE = re.compile(r"\bon\s+chatdesk\.(\w+)", re.IGNORECASE)
RELOAD_LOCK_TIMEOUT = "300ms"  # how long live traffic may queue behind one attempt
RELOAD_ATTEMPTS = int(os.environ.get("CHATDESK_MIGRATE_RELOAD_ATTEMPTS", "8"))  # backoff 0.25 s .. 4 s between


def _backend(conninfo: str | None) -> PostgresqlPsycopgBackend:
    """A yoyo backend on our own libpq conninfo.

    yoyo wants a postgresql+psycopg:// URL and rebuilds connection arguments
    from it; handing it the libpq string instead means every form libpq
    accepts (postgresql:// URLs with any options, key=value strings, PG*
    variables) works the same for migrate as for every other command.
    """

    class Backend(PostgresqlPsycopgBackend):
        def connect(self, dburi):
            return db.connect(conninfo, autocommit=True)

    backend = Backend(parse_uri("postgresql+psycopg://"), "_yoyo_migration")
    backend.init_database()
    return backend


@dataclass
class MigrateResult:
    applied: list[str] = field(default_factory=list)  # migration ids, in the order applied
    reloaded: list[str] = field(default_factory=list)  # sql/ files re-created


@dataclass
class Plan:
    pending: list[str]  # migrations not applied yet
    changed: list[str]  # sql/ files whose text differs from what was last loaded
    roles: list[str] = field(default_factory=list)  # cluster-wide roles the migrations would create


def status(conninfo: str | None) -> list[tuple[str, bool]]:
    """Every migration with whether it is applied."""
    backend = _backend(conninfo)
    try:
        migrations = read_migrations(str(resources.migrations_dir()))
        return [(m.id, backend.is_applied(m)) for m in migrations]
    finally:
        backend.connection.close()


def sql_hashes() -> dict[str, str]:
    """sha256 of each sql/ file, in load order."""
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in resources.sql_files()}


def _loaded_hashes(conn: psycopg.Connection) -> dict[str, str]:
    if not conn.execute("select to_regclass('chatdesk.sql_loaded')").fetchone()[0]:
        return {}
    return dict(conn.execute("select file, sha256 from chatdesk.sql_loaded").fetchall())


def plan(conninfo: str | None) -> Plan:
    """What a migrate would do now, changing nothing."""
    pending = [migration_id for migration_id, applied in status(conninfo) if not applied]
    with db.connect(conninfo) as conn:
        loaded = _loaded_hashes(conn)
        roles = [r for r in CLUSTER_ROLES
                 if not conn.execute("select 1 from pg_roles where rolname = %s", (r,)).fetchone()]
    changed = [name for name, digest in sql_hashes().items() if loaded.get(name) != digest]
    return Plan(pending, changed, roles if pending else [])


class _Lease:
    """One migrate at a time: yoyo's lock row, renewed while we hold it."""

    def __init__(self, conninfo: str | None, echo: Callable):
        self.conninfo, self.echo = conninfo, echo
        self.pid = os.getpid()
        self.stop = threading.Event()
        self.renewer: threading.Thread | None = None

    def acquire(self, conn: psycopg.Connection) -> None:
        said = False
        pause = 0.1
        while True:
            try:
                with conn.transaction():
                    conn.execute(f"insert into {YOYO_LOCK_TABLE} (locked, ctime, pid) "
                                 "values (1, now() at time zone 'utc', %s)", (self.pid,))
                return
            except psycopg.errors.UniqueViolation:
                pass
            # Someone holds it. A lease left unrenewed by a dead run is taken over.
            row = conn.execute(f"select pid, extract(epoch from (now() at time zone 'utc') - ctime) "
                               f"from {YOYO_LOCK_TABLE} where locked = 1").fetchone()
            if row and row[1] > LEASE_STALE:
                deleted = conn.execute(f"delete from {YOYO_LOCK_TABLE} where locked = 1 and pid = %s and "
                                       "extract(epoch from (now() at time zone 'utc') - ctime) > %s",
                                       (row[0], LEASE_STALE)).rowcount
                if deleted:
                    self.echo(f"Took over the migrate lock of an interrupted run (pid {row[0]}, "
                              f"silent for {row[1]:.0f} s).")
                continue
            if row and not said:
                self.echo(f"Waiting for another migrate (pid {row[0]}) to finish ...")
                said = True
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    def _renew(self) -> None:
        try:
            with db.connect(self.conninfo) as conn:
                while not self.stop.wait(LEASE_RENEW):
                    conn.execute(f"update {YOYO_LOCK_TABLE} set ctime = now() at time zone 'utc' "
                                 "where locked = 1 and pid = %s", (self.pid,))
        except Exception:  # noqa: BLE001 - a failed renewal only shortens the lease
            return

    def __enter__(self):
        self.renewer = threading.Thread(target=self._renew, name="chatdesk-migrate-lease", daemon=True)
        self.renewer.start()
        return self

    def release(self, conn: psycopg.Connection) -> None:
        self.stop.set()
        if not conn.closed:
            conn.execute(f"delete from {YOYO_LOCK_TABLE} where locked = 1 and pid = %s", (self.pid,))

    def __exit__(self, *exc):
        self.stop.set()


def _statements_by_table(path: Path) -> dict[str, list[str]]:
    """The statements of a trigger or policy file, grouped by the one chatdesk table each names."""
    groups: dict[str, list[str]] = {}
    for statement in sqlparse.split(path.read_text()):
        code = sqlparse.format(statement, strip_comments=True).strip()
        if not code:
            continue
        tables = set(_ON_TABLE.findall(code))
        if len(tables) != 1:
            raise MigrationFailed(f"sql/{path.name}: each statement must name one chatdesk table "
                                  f"(on chatdesk.<table>), this one names {sorted(tables) or 'none'}: {code[:80]}")
        groups.setdefault(tables.pop(), []).append(statement)
    return groups


def _with_retries(conn: psycopg.Connection, what: str, work: Callable[[], None], echo: Callable) -> None:
    """Run work() in a transaction as chatdesk_owner; a lock it cannot get within
    RELOAD_LOCK_TIMEOUT rolls it back and is retried with backoff."""
    pause = 0.25
    for attempt in range(1, RELOAD_ATTEMPTS + 1):
        try:
            with conn.transaction():
                conn.execute(f"set local lock_timeout = '{RELOAD_LOCK_TIMEOUT}'")
                # Everything in sql/ belongs to chatdesk_owner: security definer
                # functions then run with its rights, never a superuser's.
                conn.execute("set local role chatdesk_owner")
                work()
            return
        except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected) as error:
            if attempt == RELOAD_ATTEMPTS:
                raise MigrationFailed(
                    f"could not lock chatdesk's tables to reload {what} in {RELOAD_ATTEMPTS} attempts "
                    f"(long transactions hold them: see pg_stat_activity): {db.first_line(error)}") from None
            echo(f"{what}: table busy (attempt {attempt}); retrying in {pause:g} s ...")
            time.sleep(pause)
            pause = min(pause * 2, 4.0)
        except psycopg.Error as error:
            raise MigrationFailed(f"loading {what} failed: {db.first_line(error)}") from None


def _reload(conn: psycopg.Connection, files: list[Path], hashes: dict[str, str], echo: Callable) -> None:
    """Re-create `files`, then record their hashes: the functions and views in
    one transaction (no table locks), then the triggers and policies one table
    per transaction (one table lock each, never two at once)."""

    def record(paths: list[Path]) -> None:
        for path in paths:
            conn.execute("insert into chatdesk.sql_loaded (file, sha256, loaded_at) values (%s, %s, now()) "
                         "on conflict (file) do update set sha256 = excluded.sha256, loaded_at = excluded.loaded_at",
                         (path.name, hashes[path.name]))

    table_locking = [p for p in files if p.name in TABLE_LOCKING_FILES]
    plain = [p for p in files if p.name not in TABLE_LOCKING_FILES]

    def load_plain() -> None:
        for path in plain:
            try:
                conn.execute(path.read_text())
            except psycopg.errors.LockNotAvailable:
                raise
            except psycopg.Error as error:
                raise MigrationFailed(f"loading sql/{path.name} failed: {db.first_line(error)}") from None
        conn.execute("reset role")
        record(plain)

    if plain:
        _with_retries(conn, "sql/ functions and views", load_plain, echo)
    for path in table_locking:
        mode = TABLE_LOCKING_FILES[path.name]
        for table, statements in _statements_by_table(path).items():
            def load_table(table=table, statements=statements) -> None:
                conn.execute(f"lock table chatdesk.{table} in {mode} mode")
                for statement in statements:
                    conn.execute(statement)
            _with_retries(conn, f"sql/{path.name} on {table}", load_table, echo)
        record([path])  # every table of the file is done


def migrate(conninfo: str | None, echo=lambda *args, **kwargs: None, *, reload_all: bool = False) -> MigrateResult:
    """Apply pending migrations, then re-create the sql/ files that changed (all with reload_all)."""
    result = MigrateResult()
    with db.connect(conninfo) as conn:
        db.require_primary(conn, "migrate")
    # yoyo's tables (its lock table among them), and its internal schema,
    # which yoyo upgrades under its own lock: before we hold that lock row.
    backend = _backend(conninfo)
    try:
        backend.ensure_internal_schema_updated()
    finally:
        backend.connection.close()
    with db.connect(conninfo) as conn:
        lease = _Lease(conninfo, echo)
        lease.acquire(conn)
        try:
            with lease:
                _apply_pending(conninfo, result, echo)
                hashes = sql_hashes()
                loaded = {} if reload_all else _loaded_hashes(conn)
                changed = [p for p in resources.sql_files() if loaded.get(p.name) != hashes[p.name]]
                if changed:
                    # New functions are executable by PUBLIC until 950 revokes it: always with them.
                    privileges = resources.sql_dir() / "950_privileges.sql"
                    if privileges not in changed:
                        changed.append(privileges)
                    _reload(conn, changed, hashes, echo)
                    result.reloaded = [p.name for p in changed]
                    echo(f"Reloaded {len(changed)} of {len(hashes)} files from sql/: "
                         + ", ".join(result.reloaded) + ".")
                    # Chats that joined or left the queue while the older
                    # triggers ran (between a migration and this reload).
                    fixed = conn.execute("select chatdesk.sync_queue()").fetchone()[0]
                    if fixed:
                        echo(f"Put {fixed} queue entr{'ies' if fixed != 1 else 'y'} right after the reload.")
                else:
                    echo("sql/ is up to date.")
        finally:
            lease.release(conn)
    return result


# The roles the migrations create (when missing) and hand objects to.
CHATDESK_ROLES = ("chatdesk_owner", "chatdesk_app", "chatdesk_reporting", "chatdesk_web")


def missing_privileges(conn: psycopg.Connection, *, grants_owner: bool) -> list[str]:
    """What the migrating role lacks to install chatdesk here; empty when it can.

    Checked before any migration runs, so a role that cannot finish leaves
    nothing half-applied. The roles are cluster-wide: the first install
    creates them (CREATEROLE); the migrating role must then be able to act as
    chatdesk_owner: already a member, or able to grant it to itself
    (superuser; CREATEROLE before PostgreSQL 16; from 16 on, the ADMIN option
    on chatdesk_owner, which the role that created it has). `grants_owner`:
    migration 0006, which grants chatdesk_owner to the migrating role, is pending."""
    me, superuser, createrole, version = conn.execute(
        "select current_user, rolsuper, rolcreaterole, current_setting('server_version_num')::int "
        "from pg_roles where rolname = current_user").fetchone()
    if superuser:
        return []
    problems = []
    existing = {r[0] for r in conn.execute("select rolname from pg_roles where rolname = any(%s)",
                                           (list(CHATDESK_ROLES),))}
    missing = [r for r in CHATDESK_ROLES if r not in existing]
    if missing and not createrole:
        problems.append(f"create the roles {', '.join(missing)} (needs CREATEROLE, once per cluster)")
    if "chatdesk_owner" in existing:
        member, admin = conn.execute(
            "select pg_has_role(current_user, 'chatdesk_owner', 'member'), "
            "pg_has_role(current_user, 'chatdesk_owner', 'member with admin option')").fetchone()
        if grants_owner and not admin and not (createrole and version < 160000):
            problems.append(f"grant chatdesk_owner to itself (as chatdesk_owner's admin, run: "
                            f"grant chatdesk_owner to {me} with admin option)")
        elif not grants_owner and not member:
            problems.append(f"act as chatdesk_owner (grant chatdesk_owner to {me})")
    if not conn.execute("select has_database_privilege(current_database(), 'create')").fetchone()[0]:
        problems.append(f"create schemas in database {conn.info.dbname} (grant create on database … to {me})")
    return problems


def _apply_pending(conninfo: str | None, result: MigrateResult, echo: Callable) -> None:
    backend = _backend(conninfo)
    try:
        migrations = read_migrations(str(resources.migrations_dir()))
        pending = backend.to_apply(migrations)
        if pending:
            with db.connect(conninfo) as conn:
                me = conn.execute("select current_user").fetchone()[0]
                problems = missing_privileges(conn, grants_owner=any(m.id == "0006.roles" for m in pending))
            if problems:
                raise MigrationFailed(f"role {me} cannot install chatdesk here, so nothing was applied; "
                                      "it must be able to " + "; and to ".join(problems))
        for migration in pending:
            echo(f"Applying {migration.id} ... ", nl=False)
            try:
                backend.apply_one(migration)
            except psycopg.Error as error:
                echo("failed")
                raise MigrationFailed(
                    f"migration {migration.id} failed and was rolled back: {db.first_line(error)}") from None
            echo("ok")
            result.applied.append(migration.id)
    finally:
        backend.connection.close()
    if not result.applied:
        echo("No pending migrations.")

