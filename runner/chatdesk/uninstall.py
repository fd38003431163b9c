"""`chatdesk uninstall`: chatdesk out of one database, and its cluster roles
out of the cluster when no other database uses them.

What goes, in one transaction: chatdesk's pg_cron jobs (when pg_cron is
there), the schema `chatdesk` with everything in it, yoyo's bookkeeping of
chatdesk's migrations, every privilege chatdesk's roles hold in this
database, and then each of the roles that nothing in another database
depends on (pg_shdepend: objects owned, privileges granted). A role another
database still uses is kept, and the plan says which database.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg import sql

from chatdesk import db
from chatdesk.errors import ChatdeskError

ROLES = ("chatdesk_app", "chatdesk_web", "chatdesk_reporting", "chatdesk_owner")  # owner last: it owns the rest
YOYO_TABLES = ("_yoyo_log", "_yoyo_migration", "_yoyo_version", "yoyo_lock")


@dataclass
class Plan:
    where: str
    schema: bool = False
    cron_jobs: list[str] = field(default_factory=list)
    yoyo_tables: list[str] = field(default_factory=list)  # tables dropped (only chatdesk's rows in them)
    yoyo_rows: list[str] = field(default_factory=list)  # tables of which only chatdesk's rows go
    roles_dropped: list[str] = field(default_factory=list)
    roles_kept: dict[str, list[str]] = field(default_factory=dict)  # role -> databases that use it
    members: dict[str, list[str]] = field(default_factory=dict)  # role -> logins that lose the membership

    def lines(self) -> list[str]:
        out = [f"in {self.where}:"]
        if self.cron_jobs:
            out.append(f"  unschedule pg_cron jobs {', '.join(self.cron_jobs)}")
        if self.schema:
            out.append("  drop schema chatdesk and everything in it (tables, functions, views, policies, grants)")
        for table in self.yoyo_tables:
            out.append(f"  drop table public.{table} (migration bookkeeping, chatdesk's only)")
        for table in self.yoyo_rows:
            out.append(f"  delete chatdesk's rows from public.{table} (other migrations stay)")
        for role in self.roles_dropped:
            members = self.members.get(role)
            out.append(f"  drop role {role}" + (f" (logins losing it: {', '.join(members)})" if members else ""))
        for role, databases in self.roles_kept.items():
            out.append(f"  keep role {role}: databases {', '.join(databases)} still use it")
        return out


def _plan(conn, migration_ids: set[str]) -> Plan:
    plan = Plan(db.where(conn))
    plan.schema = conn.execute("select to_regnamespace('chatdesk') is not null").fetchone()[0]
    if conn.execute("select to_regclass('cron.job') is not null").fetchone()[0]:
        plan.cron_jobs = [r[0] for r in conn.execute(
            "select jobname from cron.job where jobname like 'chatdesk%%' and database = current_database() order by 1")]
    for table in YOYO_TABLES:
        if not conn.execute("select to_regclass(%s) is not null", (f"public.{table}",)).fetchone()[0]:
            continue
        if table == "_yoyo_migration":
            others = [r[0] for r in conn.execute("select migration_id from public._yoyo_migration")
                      if r[0] not in migration_ids]
            (plan.yoyo_rows if others else plan.yoyo_tables).append(table)
        else:
            plan.yoyo_tables.append(table)
    if "_yoyo_migration" in plan.yoyo_rows:  # another project's migrations share yoyo's tables: keep them all
        plan.yoyo_rows = ["_yoyo_migration", *[t for t in plan.yoyo_tables if t == "_yoyo_log"]]
        plan.yoyo_tables = []
    for role in ROLES:
        if not conn.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone():
            continue
        elsewhere = [r[0] for r in conn.execute(
            """select distinct d.datname from pg_shdepend s join pg_database d on d.oid = s.dbid
                where s.refclassid = 'pg_authid'::regclass and s.refobjid = %s::regrole
                  and s.dbid <> (select oid from pg_database where datname = current_database())
                order by 1""", (role,))]
        if elsewhere:
            plan.roles_kept[role] = elsewhere
        else:
            plan.roles_dropped.append(role)
            members = [r[0] for r in conn.execute(
                """select m.rolname from pg_auth_members a join pg_roles m on m.oid = a.member
                    where a.roleid = %s::regrole and not m.rolname like 'chatdesk\\_%%' order by 1""", (role,))]
            if members:
                plan.members[role] = members
    return plan


def uninstall(conninfo: str | None, *, yes: bool) -> Plan:
    """Removes chatdesk from the database (with yes), or only says what it
    would remove. Returns the plan either way."""
    from chatdesk import resources

    migration_ids = {p.stem for p in resources.migrations_dir().glob("*.sql")}
    with db.connect(conninfo, autocommit=False) as conn:
        db.require_primary(conn, "uninstall")
        plan = _plan(conn, migration_ids)
        if not plan.schema and not plan.yoyo_tables and not plan.yoyo_rows and not plan.roles_dropped:
            raise ChatdeskError(f"chatdesk is not installed in {plan.where}; nothing to uninstall")
        if not yes:
            conn.rollback()
            return plan
        for job in plan.cron_jobs:
            conn.execute("select cron.unschedule(%s)", (job,))
        if plan.schema:
            conn.execute("drop schema chatdesk cascade")
        for table in plan.yoyo_tables:
            conn.execute(sql.SQL("drop table public.{}").format(sql.Identifier(table)))
        if plan.yoyo_rows:
            conn.execute("delete from public._yoyo_migration where migration_id = any (%s)", (list(migration_ids),))
            if "_yoyo_log" in plan.yoyo_rows:
                conn.execute("delete from public._yoyo_log where migration_id = any (%s)", (list(migration_ids),))
        present = [r for r in ROLES if conn.execute("select 1 from pg_roles where rolname = %s", (r,)).fetchone()]
        if present:  # privileges the roles hold here (the schema's are gone with it; the database's too)
            conn.execute(sql.SQL("drop owned by {}").format(sql.SQL(", ").join(map(sql.Identifier, present))))
        for role in plan.roles_dropped:
            conn.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))
        conn.commit()
    return plan
