"""The `chatdesk` command line: one click group, one subcommand per job."""

from __future__ import annotations

import json
import sys

import click
import psycopg

from datetime import timedelta

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


def main() -> None:
    cli(prog_name="chatdesk")
