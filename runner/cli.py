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


def main() -> None:
    cli(prog_name="chatdesk")
