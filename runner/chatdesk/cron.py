"""`chatdesk cron`: the schedule inside the database, as pg_cron jobs.

The jobs call the same SQL functions `chatdesk schedule` calls, at the same
intervals: idle release and a queue sample every minute, the rollup
(`scheduled_rollup()`: today, and yesterday until a rollup after midnight
closed it) and feed pruning every five minutes. pg_cron never starts a job
while its previous run is still going, and the rollup skips while another
rollup (from anywhere) holds its lock, so runs never overlap.

pg_cron lives in one database of the server (`cron.database_name`). When
chatdesk's database is another, the jobs are scheduled from there with
`cron.schedule_in_database`. Jobs run as the role that installs them.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg.conninfo import make_conninfo

from chatdesk import db
from chatdesk.errors import ChatdeskError

PREFIX = "chatdesk-"


@dataclass(frozen=True)
class CronJob:
    name: str
    schedule: str
    command: str


def jobs(idle_after_seconds: int) -> list[CronJob]:
    return [
        CronJob(PREFIX + "release-idle", "* * * * *",
                f"select chatdesk.release_idle_chats(interval '{int(idle_after_seconds)} seconds')"),
        CronJob(PREFIX + "sample-queue", "* * * * *", "select chatdesk.sample_queue()"),
        CronJob(PREFIX + "rollup", "*/5 * * * *", "select chatdesk.scheduled_rollup()"),
        CronJob(PREFIX + "prune-feed", "*/5 * * * *", "select chatdesk.prune_changes()"),
    ]


def _cron_connection(conninfo: str | None) -> tuple[psycopg.Connection, str]:
    """A connection to the database that holds pg_cron, and chatdesk's database name."""
    with db.connect(conninfo) as conn:
        db.require_primary(conn, "cron")
        dbname = conn.info.dbname
        row = conn.execute("select current_setting('cron.database_name', true)").fetchone()
        if not row or not row[0]:
            raise ChatdeskError(f"pg_cron is not loaded on {db.where(conn)} "
                                "(shared_preload_libraries = 'pg_cron'; on managed PostgreSQL, enable the extension); "
                                "use cron or chatdesk schedule instead")
        cron_db = row[0]
        if not conn.execute("select 1 from pg_namespace where nspname = 'chatdesk'").fetchone():
            raise ChatdeskError(f"{db.where(conn)} has no chatdesk schema: run chatdesk migrate first")
    cron_conn = db.connect(make_conninfo(conninfo or "", dbname=cron_db))
    if not cron_conn.execute("select 1 from pg_extension where extname = 'pg_cron'").fetchone():
        where = db.where(cron_conn)
        cron_conn.close()
        raise ChatdeskError(f"the pg_cron extension is not created in {where}: create extension pg_cron there")
    return cron_conn, dbname


def install(conninfo: str | None, idle_after_seconds: int = 300) -> list[dict]:
    """(Re)schedule chatdesk's jobs; a second install replaces the first."""
    conn, dbname = _cron_connection(conninfo)
    with conn:
        same = conn.info.dbname == dbname
        with conn.transaction():
            _unschedule(conn)
            for job in jobs(idle_after_seconds):
                if same:
                    conn.execute("select cron.schedule(%s, %s, %s)", (job.name, job.schedule, job.command))
                else:
                    conn.execute("select cron.schedule_in_database(%s, %s, %s, %s)",
                                 (job.name, job.schedule, job.command, dbname))
        return _jobs(conn)


def _unschedule(conn: psycopg.Connection) -> int:
    names = [r[0] for r in conn.execute("select jobname from cron.job where jobname like %s", (PREFIX + "%",))]
    for name in names:
        conn.execute("select cron.unschedule(%s)", (name,))
    return len(names)


def remove(conninfo: str | None) -> int:
    conn, _ = _cron_connection(conninfo)
    with conn:
        return _unschedule(conn)


def _jobs(conn: psycopg.Connection) -> list[dict]:
    return [{"job": n, "schedule": s, "command": c, "database": d, "runs_as": u, "active": a}
            for n, s, c, d, u, a in conn.execute(
                """select jobname, schedule, command, database, username, active from cron.job
                    where jobname like %s order by jobname""", (PREFIX + "%",))]


def status(conninfo: str | None, runs: int = 3) -> dict:
    """The installed jobs, each with its last runs and its failures of the last 24 hours."""
    conn, _ = _cron_connection(conninfo)
    with conn:
        installed = _jobs(conn)
        for job in installed:
            job["last_runs"] = [
                {"status": st, "started": b.isoformat() if b else None, "ended": e.isoformat() if e else None,
                 "message": m}
                for st, b, e, m in conn.execute(
                    """select d.status, d.start_time, d.end_time, d.return_message
                         from cron.job_run_details d join cron.job j using (jobid)
                        where j.jobname = %s order by d.runid desc limit %s""", (job["job"], runs))]
            job["failures_24h"] = conn.execute(
                """select count(*) from cron.job_run_details d join cron.job j using (jobid)
                    where j.jobname = %s and d.status = 'failed' and d.start_time > now() - interval '1 day'""",
                (job["job"],)).fetchone()[0]
        return {"jobs": installed}
