"""`chatdesk migrate`: yoyo migrations, then a reload of sql/, under one advisory lock."""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from yoyo import read_migrations
from yoyo.backends.core.postgresql import PostgresqlPsycopgBackend
from yoyo.connections import parse_uri

from chatdesk import db, resources
from chatdesk.errors import MigrationFailed

YOYO_LOCK_TABLE = "yoyo_lock"


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


def status(conninfo: str | None) -> list[tuple[str, bool]]:
    """Every migration with whether it is applied."""
    backend = _backend(conninfo)
    try:
        migrations = read_migrations(str(resources.migrations_dir()))
        return [(m.id, backend.is_applied(m)) for m in migrations]
    finally:
        backend.connection.close()


def migrate(conninfo: str | None, echo=lambda *args, **kwargs: None) -> MigrateResult:
    """Apply pending migrations, then re-create everything in sql/.

    All under one advisory lock, so concurrent runs queue up and the later
    ones find nothing to apply. yoyo's own lock is a table row that a killed
    run leaves behind (and that makes the next run wait 10 s, then fail);
    holding our lock, no other chatdesk migrate can own such a row, so it is
    stale and is cleared.
    """
    result = MigrateResult()
    with db.connect(conninfo) as conn, db.advisory_lock(conn, db.LOCK_MIGRATE):
        if conn.execute("select to_regclass(%s)", (YOYO_LOCK_TABLE,)).fetchone()[0]:
            stale = conn.execute(f"delete from {YOYO_LOCK_TABLE}").rowcount
            if stale:
                echo("Cleared a stale yoyo lock left by an interrupted run.")

        backend = _backend(conninfo)
        try:
            migrations = read_migrations(str(resources.migrations_dir()))
            with backend.lock():
                pending = backend.to_apply(migrations)
                for migration in pending:
                    echo(f"Applying {migration.id} ... ", nl=False)
                    try:
                        backend.apply_one(migration)
                    except psycopg.Error as error:
                        echo("failed")
                        raise MigrationFailed(
                            f"migration {migration.id} failed and was rolled back: {db.first_line(error)}"
                        ) from None
                    echo("ok")
                    result.applied.append(migration.id)
        finally:
            backend.connection.close()
        if not result.applied:
            echo("No pending migrations.")

        # Functions, triggers and views: re-created every time, in one transaction.
        files = resources.sql_files()
        try:
            with conn.transaction():
                # Everything in sql/ belongs to chatdesk_owner: security definer
                # functions then run with its rights, never a superuser's.
                conn.execute("set local role chatdesk_owner")
                for path in files:
                    conn.execute(path.read_text())
        except psycopg.Error as error:
            raise MigrationFailed(f"loading sql/{path.name} failed: {db.first_line(error)}") from None
        echo(f"Reloaded {len(files)} files from sql/.")
    return result
