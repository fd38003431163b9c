"""The `chatdesk` command line: one click group, one subcommand per job.

This module parses options and prints; nothing else. Each command's work lives
in its own module, which returns data and raises chatdesk.errors exceptions;
they become one `Error: ...` line here.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta

import click
import psycopg

from chatdesk import __version__, db, durations
from chatdesk.durations import human
from chatdesk.errors import BadRequest, ChatdeskError


GLOBAL_OPTIONS = ("--database-url",)  # each takes one value


def global_options_first(args: list[str]) -> list[str]:
    """The arguments with the global options moved in front of the
    subcommand, so `chatdesk status --database-url URL` works as well as
    `chatdesk --database-url URL status` (the contract allows both)."""
    front, rest, i = [], [], 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest += args[i:]
            break
        if arg in GLOBAL_OPTIONS and i + 1 < len(args):
            front += args[i:i + 2]
            i += 2
            continue
        if arg.startswith(tuple(f"{o}=" for o in GLOBAL_OPTIONS)):
            front.append(arg)
        else:
            rest.append(arg)
        i += 1
    return front + rest


# `chatdesk --help` lists the commands in the order a deployment meets them.
WORKFLOW_ORDER = ("migrate", "create-login", "status", "watch", "serve", "rollup", "report", "schedule", "cron",
                  "release-idle", "verify", "test", "demo", "bench", "uninstall")


# `chatdesk` alone shows the help (click 8.2+ raises this to do so): not a mistake
HELP_FOR_NO_ARGS = getattr(click.exceptions, "NoArgsIsHelpError", ())


def one_line(error: click.UsageError) -> click.UsageError:
    """The error without its usage line and hint: a mistake prints one line,
    `Error: ...` (the contract), and exits 2. --help still shows the usage."""
    if not isinstance(error, HELP_FOR_NO_ARGS):
        error.ctx = None
    return error


class Group(click.Group):
    """Turns chatdesk's errors and any database error escaping a command into one `Error:` line."""

    def list_commands(self, ctx):
        known = [name for name in WORKFLOW_ORDER if name in self.commands]
        return known + sorted(name for name in self.commands if name not in known)

    def format_commands(self, ctx, formatter):
        # Whole one-line summaries (click cuts them at the terminal's width
        # less the names' column; the formatter wraps instead).
        rows = [(name, self.commands[name].get_short_help_str(limit=200)) for name in self.list_commands(ctx)
                if not self.commands[name].hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, global_options_first(args))
        except click.UsageError as error:
            raise one_line(error) from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as error:  # an option or argument click could not parse
            raise one_line(error) from None
        except BadRequest as error:
            raise one_line(click.UsageError(str(error))) from None
        except ChatdeskError as error:
            raise click.ClickException(str(error)) from None
        except psycopg.Error as error:
            raise click.ClickException(db.not_installed(ctx.obj, error) or db.first_line(error)) from None


class Duration(click.ParamType):
    """90s, 5m, 1h, 1h30m, 2d."""

    name = "duration"

    def convert(self, value, param, ctx):
        if isinstance(value, timedelta):
            return value
        try:
            return durations.parse(value)
        except ValueError as error:
            self.fail(str(error), param, ctx)


def _quiet(*args, **kwargs) -> None:
    pass


def _to_stderr(text: str, **kwargs) -> None:
    click.echo(text, err=True, **kwargs)


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
@click.option("--plan", "plan_only", is_flag=True,
              help="Show what a run would change (pending migrations, changed sql/ files); change nothing.")
@click.option("--reload-all", is_flag=True, help="Re-create every sql/ file, changed or not.")
@click.pass_obj
def migrate(database_url: str | None, list_only: bool, plan_only: bool, reload_all: bool) -> None:
    """Apply pending migrations and reload what changed in sql/ (safe to run twice, or twice at once)."""
    from chatdesk import migrate as migrations

    if list_only:
        for migration_id, applied in migrations.status(database_url):
            click.echo(f"{'applied' if applied else 'pending'}  {migration_id}")
        return
    if plan_only:
        planned = migrations.plan(database_url)
        for migration_id in planned.pending:
            click.echo(f"apply   migrations/{migration_id}.sql")
        for name in planned.changed:
            click.echo(f"reload  sql/{name}")
        for role in planned.roles:
            click.echo(f"create  role {role} (cluster-wide, NOLOGIN; chatdesk uninstall removes it)")
        if not planned.pending and not planned.changed:
            click.echo("Nothing to do: no pending migrations, sql/ is up to date.")
        return
    migrations.migrate(database_url, echo=click.echo, reload_all=reload_all)


@cli.command("test")
@click.argument("paths", nargs=-1, type=click.Path())
@click.pass_obj
def test_(database_url: str | None, paths: tuple[str, ...]) -> None:
    """Run pgTAP files (default: chatdesk's own suite); TAP on stdout, exit 1 on any failure."""
    from chatdesk import pgtap, resources

    pgtap.run(database_url, paths or [resources.pgtap_dir()], echo=click.echo)


@cli.command()
@click.option("--repair", is_flag=True, help="Write the recounted values where they differ.")
@click.option("--json", "as_json", is_flag=True, help="Print the drift as JSON.")
@click.pass_obj
def verify(database_url: str | None, repair: bool, as_json: bool) -> None:
    """Recount every counter from messages and report drift (exit 1 if any, unless repaired)."""
    from chatdesk.verify import verify as recount

    drift = recount(database_url, repair=repair)
    if as_json:
        click.echo(json.dumps({"drift": [d.asdict() for d in drift], "repaired": repair and bool(drift)}))
    else:
        for d in drift:
            click.echo(f"{d.object} {d.id}: {d.counter} is {d.stored}, recount says {d.actual}")
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
    from chatdesk import idle

    with db.connect(database_url) as conn:
        released = idle.release_idle(conn, idle_after)
    click.echo(f"Released {released} chat{'s' if released != 1 else ''} of operators idle for over {human(idle_after)}.")


@cli.command()
@click.option("--idle-after", type=Duration(), default="5m", show_default=True,
              help="Silence after which an operator counts as idle.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def status(database_url: str | None, idle_after, as_json: bool) -> None:
    """Queue depth, oldest waiting chat, operators' load, chats held by idle operators."""
    from chatdesk import status as queue_status

    with db.connect(database_url) as conn:
        snap = queue_status.snapshot(conn, idle_after)
    if as_json:
        click.echo(json.dumps(snap, indent=2))
        return
    repl = snap["replication"]
    if repl["role"] == "standby":
        age = repl["last_replayed_commit_age_seconds"]
        click.echo(f"Replication: a read-only standby, {repl['replay_behind_bytes'] or 0} bytes of WAL received "
                   f"but not replayed yet; newest replayed commit "
                   f"{human(timedelta(seconds=age)) + ' ago' if age is not None else 'none yet'}")
    elif repl["standbys"]:
        click.echo("Replication: primary; standbys " + ", ".join(
            f"{s['name'] or s['address'] or '?'} ({s['state'] or 'hidden'}, replay lag "
            f"{human(timedelta(seconds=s['replay_lag_seconds'])) if s['replay_lag_seconds'] is not None else '-'})"
            for s in repl["standbys"]))
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
    click.echo(f"Change feed: {snap['feed_held_back']} changes held back by running transactions"
               + (f", the oldest for {human(timedelta(seconds=snap['feed_lag_seconds']))}" if snap["feed_held_back"] else ""))
    click.echo("Stats: " + ", ".join(
        f"{s['date']} " + (f"rolled up {human(timedelta(seconds=s['age_seconds']))} ago" if s["computed_at"]
                           else "not rolled up") for s in snap["stats"]))


@cli.command()
@click.option("--date", "one_day", type=click.DateTime(["%Y-%m-%d"]), metavar="YYYY-MM-DD", help="Roll up this day (YYYY-MM-DD).")
@click.option("--from", "start", type=click.DateTime(["%Y-%m-%d"]), metavar="YYYY-MM-DD", help="Backfill from this day ...")
@click.option("--to", "end", type=click.DateTime(["%Y-%m-%d"]), metavar="YYYY-MM-DD", help="... through this day (default: today).")
@click.option("--catch-up", is_flag=True, help="Every day since the last one rolled up, through today.")
@click.option("--no-wait", is_flag=True, help="If another rollup is running, exit 0 at once instead of waiting.")
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
@click.pass_obj
def rollup(database_url, one_day, start, end, catch_up, no_wait, as_json) -> None:
    """Daily operator stats. Without a date: yesterday and today in stats_time_zone."""
    import contextlib

    from chatdesk import rollup as rollups

    selection = rollups.DaySelection(day=one_day and one_day.date(), start=start and start.date(),
                                     end=end and end.date(), catch_up=catch_up)

    def track(days):
        if as_json or len(days) <= 3:
            return contextlib.nullcontext(days)
        return click.progressbar(days, label="Rolling up", show_pos=True, file=click.get_text_stream("stderr"))

    result = rollups.rollup(database_url, selection.days, wait=not no_wait, track=track,
                            on_day=_quiet if as_json else lambda d, n: click.echo(f"{d}: {n} operator rows"))
    if as_json:
        click.echo(json.dumps({"skipped": result.skipped, "time_zone": result.time_zone, "days": result.days}))
    elif result.skipped:
        click.echo("Another rollup holds the lock; nothing done (--no-wait).")
    else:
        click.echo(f"Rolled up {len(result.days)} day{'s' if len(result.days) != 1 else ''} in {result.time_zone}.")


@cli.command()
@click.option("--from", "first", type=click.DateTime(["%Y-%m-%d"]), metavar="YYYY-MM-DD", required=True, help="First day (YYYY-MM-DD).")
@click.option("--to", "last", type=click.DateTime(["%Y-%m-%d"]), metavar="YYYY-MM-DD", required=True, help="Last day, included.")
@click.option("--operator", "operator", metavar="NAME|ID", help="Only this operator's figures: its name or id.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv", "html"]), default="table", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="Write to this file, not stdout.")
@click.pass_obj
def report(database_url, first, last, operator, fmt, output) -> None:
    """First response, reply and resolution times, closes, load by hour, queue depth, from the rollup's tables."""
    from chatdesk import report as reports
    from chatdesk import report_output

    reports.Range(first.date(), last.date())  # a bad range is refused before connecting
    with db.connect(database_url) as conn:
        span = reports.Range(first.date(), last.date(), operator and reports.find_operator(conn, operator))
        if not output:
            report_output.write(conn, span, fmt, click.get_text_stream("stdout"))
            return
        report_output.write_file(conn, span, fmt, output)
    click.echo(f"Wrote {output}", err=True)


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


@cli.group()
def cron() -> None:
    """The schedule inside the database: idle release, rollups, feed pruning and queue samples as pg_cron jobs."""


@cron.command("install")
@click.option("--idle-after", type=Duration(), default="5m", show_default=True,
              help="Silence after which an operator counts as idle.")
@click.pass_obj
def cron_install(database_url, idle_after) -> None:
    """Schedule chatdesk's jobs in pg_cron (again: replaces them)."""
    from chatdesk import cron as crons

    for job in crons.install(database_url, int(idle_after.total_seconds())):
        click.echo(f"{job['job']:<24} {job['schedule']:<12} in {job['database']} as {job['runs_as']}: {job['command']}")


@cron.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def cron_status(database_url, as_json) -> None:
    """chatdesk's pg_cron jobs, their last runs and the failures of the last day."""
    from chatdesk import cron as crons

    state = crons.status(database_url)
    if as_json:
        click.echo(json.dumps(state, indent=2))
        return
    if not state["jobs"]:
        click.echo("No chatdesk jobs in pg_cron (chatdesk cron install).")
    for job in state["jobs"]:
        last = job["last_runs"][0] if job["last_runs"] else None
        click.echo(f"{job['job']:<24} {job['schedule']:<12} "
                   + (f"last run {last['started']}: {last['status']}" + (f" ({last['message']})" if last["message"] else "")
                      if last else "not run yet")
                   + (f"; {job['failures_24h']} failed in the last day" if job["failures_24h"] else ""))


@cron.command("remove")
@click.pass_obj
def cron_remove(database_url) -> None:
    """Unschedule chatdesk's pg_cron jobs."""
    from chatdesk import cron as crons

    n = crons.remove(database_url)
    click.echo(f"Removed {n} pg_cron job{'s' if n != 1 else ''}.")


@cli.command()
@click.option("--since", metavar="CURSOR", help="Resume after this cursor (the cursor of the last change you handled).")
@click.option("--from-start", is_flag=True, help="Replay every change the feed keeps, then follow.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, with its cursor.")
@click.pass_obj
def watch(database_url, since, from_start, as_json) -> None:
    """Print the change feed as it happens, one line per change, until SIGINT/SIGTERM.

    Starts at the current position (new changes only), or after --since, or
    with every change kept (--from-start)."""
    import signal
    import threading

    from chatdesk import feed

    if since and from_start:
        raise BadRequest("--since and --from-start do not go together: choose where to start")
    if not since and not from_start:
        since = feed.position(database_url)

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *args: stop.set())

    def emit(change) -> None:
        if as_json:
            click.echo(json.dumps(change.as_json()))
        else:
            click.echo(f"{change.cursor}  {change.created_at.isoformat()}  chat {change.chat_id} #{change.chat_seq}  "
                       + (f"message {change.message_id}" if change.kind == "message" else f"-> {change.chat_state}"))
        sys.stdout.flush()

    feed.follow(database_url, since, emit, on_notice=lambda text: click.echo(text, err=True), stop=stop)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--listen-url", envvar="CHATDESK_LISTEN_URL", show_envvar=True, metavar="URL",
              help="A direct connection for LISTEN when --database-url goes through a transaction-mode pooler.")
@click.pass_obj
def serve(database_url, host, port, listen_url) -> None:
    """Stream the change feed to browsers as Server-Sent Events (GET /feed).

    Each browser's JWT (CHATDESK_JWT_SECRET, HS256; audience
    CHATDESK_JWT_AUDIENCE, default authenticated) decides what it gets:
    exactly changes_since for its identity. Stops within 10 s of
    SIGTERM/SIGINT. Needs pip install 'chatdesk[serve]'."""
    try:
        import uvicorn

        from chatdesk import serve as serving
    except ImportError as error:
        raise BadRequest(f"chatdesk serve needs its extra: pip install 'chatdesk[serve]' ({error.name} is missing)")
    try:
        settings = serving.settings_from_env(database_url, listen_url)
    except ValueError as error:
        raise BadRequest(str(error)) from None
    db.connect(database_url).close()  # a database that does not answer: one Error line, not a stack of them
    # No access log: a browser's EventSource carries its token in the URL
    # (?access_token=), which an access log would keep.
    config = uvicorn.Config(serving.App(settings), host=host, port=port, log_level="info", lifespan="on",
                            timeout_graceful_shutdown=5, proxy_headers=True, access_log=False)
    server = uvicorn.Server(config)
    click.echo(f"chatdesk serve: http://{host}:{port}/feed (Server-Sent Events), /healthz; Ctrl-C stops", err=True)
    server.run()
    if not server.started:
        raise click.ClickException("the server did not start (see the lines above)")


@cli.command()
@click.option("--yes", is_flag=True, help="Really remove it; without it, only say what would go.")
@click.pass_obj
def uninstall(database_url, yes) -> None:
    """Remove chatdesk from the database, and its roles where no other database uses them."""
    from chatdesk import uninstall as removal

    plan = removal.uninstall(database_url, yes=yes)
    for line in plan.lines():
        click.echo(line if yes else line.replace("  drop", "  would drop").replace("  delete", "  would delete")
                   .replace("  unschedule", "  would unschedule"))
    if not yes:
        raise click.ClickException("nothing removed: run chatdesk uninstall --yes to remove the above")
    click.echo("chatdesk is uninstalled; chatdesk migrate installs it again.")


@cli.command("create-login")
@click.argument("name")
@click.option("--kind", type=click.Choice(["app", "web", "reporting"]), required=True,
              help="app: a trusted backend; web: PostgREST's authenticator (switches into chatdesk_web); "
                   "reporting: dashboards.")
@click.option("--password", envvar="CHATDESK_LOGIN_PASSWORD", show_envvar=True, default=None,
              help="Its password (better from the environment than the command line).")
@click.pass_obj
def create_login(database_url, name, kind, password) -> None:
    """Create a login role for one kind of caller, with statement, lock and idle-in-transaction timeouts."""
    from chatdesk.logins import create_login as create

    for statement in create(database_url, name, kind, password):
        click.echo(statement + ";")


@cli.command()
@click.option("--seed", type=int, default=7, show_default=True, help="Random seed: the same seed, the same day.")
@click.option("--operators", type=click.IntRange(1, 500), default=24, show_default=True)
@click.option("--users", type=click.IntRange(1, 20000), default=400, show_default=True)
@click.option("--demo-db", default="chatdesk_demo", show_default=True,
              help="With a configured server: the database the demo creates there.")
@click.option("--yes", is_flag=True, help="Replace --demo-db if it already exists.")
@click.option("--keep", is_flag=True, help="Leave the embedded database running and say how to connect.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--report", "report_file", type=click.Path(dir_okay=False, writable=True),
              default="chatdesk-demo-report.html", show_default=True, help="Where to write the day's HTML report.")
@click.pass_obj
def demo(database_url, seed, operators, users, demo_db, yes, keep, as_json, report_file) -> None:
    """A simulated working day of chats, rolled up, with the proof that every rule held.

    With no database configured (no --database-url, DATABASE_URL or PG* variables)
    it runs on an embedded PostgreSQL in a temporary directory (pip install
    'chatdesk[embedded]'); otherwise in a new database on the configured server.
    """
    from chatdesk import demo as day
    from chatdesk import migrate as migrations
    from chatdesk.scratch import scratch_database

    config = day.DemoConfig(seed=seed, operators=operators, users=users)
    say = _quiet if as_json else _to_stderr
    with scratch_database(database_url, demo_db, replace=yes, keep=keep, say=say, purpose="demo") as url:
        migrations.migrate(url)
        say("Simulating the day ...")
        with db.connect(url) as conn:
            report = day.simulate(conn, config, os.path.abspath(report_file))
        # inside: with --keep, how to connect and stop comes after the report, not scrolled above it
        click.echo(json.dumps(report, indent=2) if as_json else day.render(report))
    if any(report["violations"].values()):
        raise click.ClickException("a rule was broken during the demo (see above)")


@cli.command()
@click.option("--smoke", is_flag=True, help="Tiny sizes and 1-second runs: checks that it works, not the speed.")
@click.option("--seconds", type=float, help="Length of each pgbench run (default 15, smoke 1).")
@click.option("--messages", type=int, help="Messages in the rollup's 30 days (default 5,000,000).")
@click.option("--synchronous-commit", type=click.Choice(["on", "off"]), default="off", show_default=True,
              help="For both sides of every comparison: off measures the work, on measures the disk's fsync.")
@click.option("--bench-db", default="chatdesk_bench", show_default=True, help="The database the benchmark creates.")
@click.option("--yes", is_flag=True, help="Replace --bench-db if it already exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--only", multiple=True, metavar="SECTION",
              help="Run only this section (repeatable): cpu, ingest, feed, migrate, claim, rollup, growth, web, web-load, delivery. "
                   "The data it needs is set up anyway.")
@click.pass_obj
def bench(database_url, smoke, seconds, messages, synchronous_commit, bench_db, yes, as_json, only) -> None:
    """How close each hot path comes to bare PostgreSQL, measured in one run on one server."""
    import dataclasses

    from chatdesk import bench as benchmark
    from chatdesk.scratch import scratch_database

    benchmark.check_sections(only)
    scale = dataclasses.replace(benchmark.SMOKE if smoke else benchmark.Scale())
    if seconds:
        scale.seconds = seconds
    if messages:
        scale.messages = messages
    say = _quiet if as_json else _to_stderr
    with scratch_database(database_url, bench_db, replace=yes, keep=False, say=say, purpose="bench") as url:
        report = benchmark.run(url, scale, say=say, synchronous_commit=synchronous_commit, only=only)
    if as_json:
        click.echo(json.dumps({"rows": [dataclasses.asdict(r) for r in report.rows],
                               "checks": report.checks, "settings": report.settings}, indent=2))
    else:
        click.echo(benchmark.render(report))
    bad = {k: v for k, v in report.checks.items() if v not in (0, True)}
    if bad:
        raise click.ClickException(f"benchmark checks failed: {bad}")


def main() -> None:
    cli(prog_name="chatdesk")
