"""`chatdesk bench`: each hot path against the bare minimum PostgreSQL can do, in one run.

Every comparison pairs a chatdesk workload with a bare baseline of the same
shape on the same server in the same run, so the ratios hold on any machine:

1. ingest: send_user_message / send_operator_message over N chats vs. a bare
   INSERT into `create table (like chatdesk.messages including all)`;
2. claiming: claim_next_chat from a queue vs. a bare
   UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED) pop;
3. rollup of one day vs. a bare GROUP BY over that day, then again with ten
   times the history;
4. rollup_operator_stats vs. one update_operator_stats call per operator;
5. the runner's peak RSS during a 31-day backfill.

Load generation is pgbench (custom scripts, per-transaction latency logs).
Bulk data for the rollup is written raw, with triggers off
(session_replication_role = replica): only its shape matters to the planner,
and pushing millions of rows through the rules would measure the loader.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import psycopg

from chatdesk import db, migrate
from chatdesk.bench import serve as bench_serve, web as bench_web
from chatdesk.errors import BadRequest, ChatdeskError, ToolMissing


@dataclass
class Scale:
    chats: int = 10_000  # ingest
    queue: int = 200_000  # claiming
    operators: int = 1_000
    messages: int = 5_000_000  # rollup: over `days`
    days: int = 30
    history_factor: int = 10
    seconds: float = 15.0  # per pgbench run
    clients: tuple[int, ...] = (1, 8)
    growth_base: int = 10_000  # queue and open chats, then ten times as many
    growth_changes: int = 1_000_000  # kept feed rows, then ten times as many
    long_chat: int = 100_000  # CPU per message: a chat this long against a short one
    many_operators: int = 10_000  # CPU per message: 10 operators, then this many
    cost_calls: int = 5_000  # calls per CPU-per-message measurement
    gate_cpu: bool = True  # fail the run when CPU per message is not flat (off for the smoke run's tiny samples)
    web_rows: int = 1_000_000  # web calls: rows of other people, then ten times as many
    web_calls: int = 200  # web calls: requests per measurement
    load_changes: int = 5_000_000  # web load: feed rows kept while visitors poll
    pollers: int = 1_000  # web load: visitors polling once a second
    poll_threads: int = 8  # web load: connections they poll through (a PostgREST pool)
    load_rate: int = 300  # web load: messages written per second meanwhile
    subscribers: int = 1_000  # delivery: chatdesk serve's subscribers, one chat each
    delivery_rates: tuple[int, ...] = (200, 1_000)  # delivery: changes per second written


SMOKE = Scale(chats=500, queue=5_000, operators=50, messages=60_000, days=30, history_factor=2,
              seconds=1.0, clients=(1, 2), growth_base=1_000, growth_changes=20_000,
              long_chat=5_000, many_operators=200, cost_calls=300, gate_cpu=False,
              web_rows=5_000, web_calls=20, load_changes=20_000, pollers=50, poll_threads=2, load_rate=50,
              subscribers=20, delivery_rates=(20, 50))


@dataclass
class Row:
    workload: str
    variant: str
    clients: int | str
    tps: float | None = None
    avg_ms: float | None = None
    p99_ms: float | None = None
    ratio: float | None = None  # chatdesk / bare (throughput), or time ratio for the rollup rows
    note: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    checks: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)


def pgbench_binary() -> str:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"), key=lambda p: int(p.split("/")[4]))
    found = shutil.which("pgbench") or (candidates[-1] if candidates else None)
    if not found:
        raise ToolMissing("pgbench not found: install postgresql-client (it ships with PostgreSQL)")
    return found


def run_pgbench(conninfo: str, script: str, clients: int, seconds: float, workdir: Path, options: str,
                rate: int | None = None) -> tuple[float, float, float]:
    """tps, average and p99 latency (ms) of one pgbench run of `script`."""
    run_dir = Path(tempfile.mkdtemp(dir=workdir))
    (run_dir / "script.sql").write_text(script)
    env = {**db.libpq_env(conninfo), "PGOPTIONS": options}
    result = subprocess.run(
        [pgbench_binary(), "-n", "-M", "prepared", "-c", str(clients), "-j", str(min(clients, os.cpu_count() or 1)),
         "-T", str(max(1, round(seconds))), "-f", str(run_dir / "script.sql"), "-l", "--log-prefix", str(run_dir / "log")]
        + (["-R", str(rate)] if rate else []),
        capture_output=True, text=True, env=env, cwd=run_dir)
    if result.returncode != 0:
        raise ChatdeskError(f"pgbench failed: {(result.stderr or result.stdout).strip().splitlines()[-1]}")
    tps = next(float(line.split("=")[1].split()[0]) for line in result.stdout.splitlines() if line.startswith("tps ="))
    latencies = sorted(int(line.split()[2]) / 1000.0
                       for log in run_dir.glob("log*") for line in log.read_text().splitlines() if line.strip())
    shutil.rmtree(run_dir, ignore_errors=True)
    if not latencies:
        raise ChatdeskError("pgbench ran no transactions")
    return tps, statistics.fmean(latencies), latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]


def stall_during(conninfo: str, script: str, clients: int, seconds: float, workdir: Path, options: str,
                 rate: int | None, action) -> tuple[float, float, float]:
    """Run pgbench (at `rate` transactions/s, or flat out) and, once it is
    under way, action(). Returns the longest latency (ms) of a transaction that
    ended while action() ran or within a second after it, action()'s own
    seconds, and pgbench's tps."""
    run_dir = Path(tempfile.mkdtemp(dir=workdir))
    (run_dir / "script.sql").write_text(script)
    env = {**db.libpq_env(conninfo), "PGOPTIONS": options}
    command = [pgbench_binary(), "-n", "-c", str(clients), "-j", str(min(clients, os.cpu_count() or 1)),
               "-T", str(max(4, round(seconds))), "-f", str(run_dir / "script.sql"),
               "-l", "--log-prefix", str(run_dir / "log")] + (["-R", str(rate)] if rate else [])
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=run_dir)
    time.sleep(1.5)
    started = time.time()
    action()
    ended = time.time()
    out, err = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise ChatdeskError(f"pgbench failed while migrate ran: {(err or out).strip().splitlines()[-1]}")
    tps = next(float(line.split("=")[1].split()[0]) for line in out.splitlines() if line.startswith("tps ="))
    longest = 0.0
    for log in run_dir.glob("log*"):
        for line in log.read_text().splitlines():
            fields = line.split()
            finished = int(fields[4]) + int(fields[5]) / 1e6
            if started <= finished <= ended + 1.0:
                longest = max(longest, int(fields[2]) / 1000.0)
    shutil.rmtree(run_dir, ignore_errors=True)
    return longest, ended - started, tps


def feed_latency(conninfo: str, script: str, clients: int, seconds: float, workdir: Path, options: str,
                 rate: int) -> tuple[float, float, float, int, int]:
    """pgbench at `rate` transactions/s while a Feed (chatdesk.feed, as
    `chatdesk watch` uses it) follows from the current position. Returns the
    p50, p95 and p99 of commit-to-delivery latency (ms: delivery time minus
    the change's created_at, taken just before its commit), the changes
    delivered, and pgbench's transactions."""
    import threading

    from chatdesk.feed import Feed

    with psycopg.connect(conninfo, autocommit=True) as conn:
        start = conn.execute("select chatdesk.feed_position()").fetchone()[0]
    latencies = []
    feed = Feed(conninfo, start, poll=0.2)

    def follow():
        for change in feed:
            latencies.append((time.time() - change.created_at.timestamp()) * 1000)

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    time.sleep(1.5)  # the probe and the first read
    tps = run_pgbench(conninfo, script, clients, seconds, workdir, options + "", rate=rate)[0]
    time.sleep(1.0)
    feed.stop()
    reader.join(timeout=10)
    ordered = sorted(latencies) or [0.0]

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return pct(0.5), pct(0.95), pct(0.99), len(latencies), round(tps * max(1, round(seconds)))


def timed(conn: psycopg.Connection, sql: str, params=(), repeat: int = 5) -> float:
    """Median seconds of `sql` over `repeat` runs, after one warm-up."""
    conn.execute(sql, params)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        conn.execute(sql, params)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_sql(name: str) -> str:
    """One of the bench's SQL files (chatdesk/bench/sql/): a setup, or a
    pgbench script with {placeholders} (Bench.fill)."""
    return (Path(__file__).parent / "sql" / name).read_text()


# -- 1. ingest -------------------------------------------------------------------

BARE_SETUP = """
    create schema if not exists bench;
    create table if not exists bench.bare_messages (like chatdesk.messages including all);
    create sequence if not exists bench.bare_messages_seq;
"""
INGEST_SETUP = BARE_SETUP + """
    create table bench.operators (n int primary key, operator_id uuid not null);
    create table bench.chats (n int primary key, chat_id uuid not null, operator_id uuid not null, seen bigint not null);
"""

CHATDESK_USER = """\\set n random(1, {chats})
select chatdesk.send_user_message(chat_id, 'hello, is anyone there?') from bench.chats where n = :n;
"""
CHATDESK_OPERATOR = """\\set n random(1, {chats})
select m.message_id from bench.chats b,
       chatdesk.send_operator_message(b.chat_id, b.operator_id, 'happy to help', null, b.seen) m where b.n = :n;
"""
BARE_USER = """\\set n random(1, {chats})
insert into bench.bare_messages (id, chat_id, sender_type, body, created_at)
select nextval('bench.bare_messages_seq'), chat_id, 'real_user', 'hello, is anyone there?', now() from bench.chats where n = :n;
"""
BARE_OPERATOR = """\\set n random(1, {chats})
insert into bench.bare_messages (id, chat_id, sender_type, handled_by_operator_id, body, seen_message_id, created_at)
select nextval('bench.bare_messages_seq'), chat_id, 'operator', operator_id, 'happy to help', seen, now() from bench.chats where n = :n;
"""


# What users run today: the design chatdesk replaces (../seed), plain tables
# with its two counter triggers and no other rule.
LEGACY_SETUP = """
    create table bench.legacy_operators (id uuid primary key, total_messages int not null default 0);
    create table bench.legacy_chats (id uuid primary key, message_count int not null default 0,
                                     last_message_at timestamptz);
    create table bench.legacy_messages (
        id uuid primary key default gen_random_uuid(),
        chat_id uuid not null references bench.legacy_chats (id),
        sender_type text not null check (sender_type in ('real_user', 'operator', 'system')),
        handled_by_operator_id uuid references bench.legacy_operators (id),
        body text not null,
        created_at timestamptz not null default now());
    create index on bench.legacy_messages (chat_id, created_at);
    create function bench.increment_operator_messages() returns trigger language plpgsql as $$
    begin
        if new.handled_by_operator_id is not null then
            update bench.legacy_operators set total_messages = total_messages + 1
             where id = new.handled_by_operator_id;
        end if;
        return new;
    end $$;
    create function bench.update_chat_message_count() returns trigger language plpgsql as $$
    begin
        update bench.legacy_chats set message_count = message_count + 1, last_message_at = new.created_at
         where id = new.chat_id;
        return new;
    end $$;
    create trigger trigger_increment_operator_messages after insert on bench.legacy_messages
        for each row execute function bench.increment_operator_messages();
    create trigger trigger_update_chat_message_count after insert on bench.legacy_messages
        for each row execute function bench.update_chat_message_count();
"""
LEGACY_USER = """\\set n random(1, {chats})
insert into bench.legacy_messages (chat_id, sender_type, body)
select chat_id, 'real_user', 'hello, is anyone there?' from bench.chats where n = :n;
"""
LEGACY_OPERATOR = """\\set n random(1, {chats})
insert into bench.legacy_messages (chat_id, sender_type, handled_by_operator_id, body)
select chat_id, 'operator', operator_id, 'happy to help' from bench.chats where n = :n;
"""


def mixed(user: str, operator: str) -> str:
    """Half user messages, half operator messages, in one pgbench script."""
    return ("\\set kind random(0, 1)\n\\if :kind = 0\n" + user.replace("\\set n", "  \\set n") +
            "\\else\n" + operator.replace("\\set n", "  \\set n") + "\\endif\n")


def set_up_floor(conn: psycopg.Connection) -> None:
    """The contract's floor's tables (bench/sql/floor_setup.sql), once."""
    if conn.execute("select to_regclass('bench.floor_chats') is null").fetchone()[0]:
        conn.execute(bench_sql("floor_setup.sql"))


def setup_ingest(conn: psycopg.Connection, scale: Scale) -> None:
    conn.execute(INGEST_SETUP)
    per_operator = -(-scale.chats // scale.operators)
    conn.execute("""insert into bench.operators
                    select g, chatdesk.create_operator('op ' || g, %s) from generate_series(1, %s) g""",
                 (min(1000, max(per_operator, 1)), scale.operators))
    # Each chat: two user messages, then claimed. Operators answer with the
    # first message as "seen", so every answer finds a newer user message and
    # the chat stays assigned: a steady state for a timed run.
    conn.execute("""create temp table new_chats as
                    select g as n, chatdesk.start_chat(chatdesk.create_real_user('visitor ' || g)) as chat_id
                      from generate_series(1, %s) g""", (scale.chats,))
    conn.execute("select chatdesk.send_user_message(chat_id, 'hi') from new_chats order by n")
    conn.execute("select chatdesk.send_user_message(chat_id, 'anyone?') from new_chats order by n")
    conn.execute("select chatdesk.claim_next_chat(o.operator_id) from bench.operators o, generate_series(1, %s)",
                 (per_operator,))
    conn.execute("""insert into bench.chats
                    select n.n, n.chat_id, c.assigned_operator_id,
                           (select min(id) from chatdesk.messages m where m.chat_id = n.chat_id)
                      from new_chats n join chatdesk.chats c on c.id = n.chat_id""")
    set_up_floor(conn)
    conn.execute("""insert into bench.floor_chats (id, n, operator_id, message_count, change_seq)
                    select chat_id, n, operator_id, 2, 3 from bench.chats""")
    conn.execute("""insert into bench.floor_operators (id) select operator_id from bench.operators
                    on conflict do nothing""")
    missing = conn.execute("select count(*) from bench.chats where operator_id is null").fetchone()[0]
    assert missing == 0, f"{missing} chats were not claimed in the setup"
    conn.execute(LEGACY_SETUP)
    conn.execute("insert into bench.legacy_operators (id) select operator_id from bench.operators")
    conn.execute("insert into bench.legacy_chats (id) select chat_id from bench.chats")
    conn.execute("vacuum analyze")


# -- CPU per message, and how it grows with chat length and operators --------------

def backend_cpu_ns(pid: int) -> int | None:
    """Nanoseconds on CPU so far of server process `pid`, when the server runs
    on this machine (the scheduler's own count, /proc/PID/schedstat)."""
    try:
        if not Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"postgres"):
            return None
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    except (OSError, ValueError):
        return None


def cpu_per_call_us(conninfo: str, options: str, sql: str, params: list, rounds: int = 3) -> float | None:
    """Microseconds of the server's CPU per call of `sql`, one call per
    transaction on one connection (prepared after five, as pgbench -M
    prepared), after a warm-up: the median of `rounds` runs through `params`.
    None when the server is not on this machine."""
    with psycopg.connect(conninfo, autocommit=True, options=options) as conn:
        pid = conn.info.backend_pid
        for p in params[:50]:
            conn.execute(sql, p)
        if backend_cpu_ns(pid) is None:
            return None
        per_round = []
        for _ in range(rounds):
            before = backend_cpu_ns(pid)
            for p in params:
                conn.execute(sql, p)
            per_round.append((backend_cpu_ns(pid) - before) / 1000 / len(params))
        return statistics.median(per_round)


COST_SEND = {
    "user": "select chatdesk.send_user_message(%s, 'hello, is anyone there?')",
    "operator": "select message_id from chatdesk.send_operator_message(%s, %s, 'happy to help', null, %s)",
    "bare": """insert into bench.bare_messages (id, chat_id, sender_type, body, created_at)
               values (nextval('bench.bare_messages_seq'), %s, 'real_user', 'hello, is anyone there?', now())""",
    "legacy": """insert into bench.legacy_messages (chat_id, sender_type, body)
                 values (%s, 'real_user', 'hello, is anyone there?')""",
}


def web_options(options: str, login) -> str:
    """Connection options that make every call a web caller's, as PostgREST's
    requests are: role chatdesk_web and JWT claims whose sub is `login`
    (quotes escaped for libpq's options)."""
    return options + ' -c role=chatdesk_web -c request.jwt.claims={\\"sub\\":\\"%s\\"}' % login


def cost_chats(conn: psycopg.Connection, operators: list, chats_each: int) -> list[tuple]:
    """chats_each chats for each operator, with two user messages, claimed:
    (chat, operator, first message) for each."""
    chats = [r[0] for r in conn.execute(
        "select chatdesk.start_chat(chatdesk.create_real_user('cost visitor')) from generate_series(1, %s)",
        (len(operators) * chats_each,))]
    for chat in chats:
        conn.execute("select chatdesk.send_user_message(%s, 'hi')", (chat,))
        conn.execute("select chatdesk.send_user_message(%s, 'anyone?')", (chat,))
    conn.execute("select chatdesk.claim_next_chat(o) from unnest(%s::uuid[]) o, generate_series(1, %s)",
                 (operators, chats_each))
    return conn.execute("""select c.id, c.assigned_operator_id, (select min(m.id) from chatdesk.messages m
                                                                  where m.chat_id = c.id)
                             from chatdesk.chats c where c.id = any (%s::uuid[]) order by c.id""",
                        (chats,)).fetchall()


@dataclass
class Costs:
    """µs of server CPU per call (None: the server is not on this machine)."""
    bare: float | None
    # kind ("user", "operator") -> [(case, µs)], the cases in the order
    # 10 operators, many operators, one short chat, one long chat
    by_kind: dict[str, list[tuple[str, float | None]]]
    # the same calls made by web callers, as PostgREST makes them: [(what, µs)]
    web: list[tuple[str, float | None]]


def cpu_costs(conn: psycopg.Connection, conninfo: str, scale: Scale, options: str,
              say=lambda text: None) -> Costs:
    """A bare INSERT, then a user and an operator message with 10 operators,
    with scale.many_operators operators, into one short chat and into one
    chat of scale.long_chat messages. Run on a fresh database, before the
    other workloads."""
    n = scale.cost_calls
    conn.execute(BARE_SETUP)
    few = [r[0] for r in conn.execute(
        "select chatdesk.create_operator('cost op ' || g, 1000) from generate_series(1, 10) g")]
    chats = cost_chats(conn, few, 10)
    conn.execute("vacuum analyze")

    def measure(kind: str, pairs: list[tuple]) -> float | None:
        params = [(chat,) if kind in ("user", "bare") else (chat, op, seen) for chat, op, seen in pairs]
        return cpu_per_call_us(conninfo, options, COST_SEND[kind], (params * (n // len(params) + 1))[:n])

    say("CPU per message: 10 operators ...")
    bare = measure("bare", chats)
    by_kind = {kind: [("10 operators", measure(kind, chats))] for kind in ("user", "operator")}

    say("CPU per message: web callers (role chatdesk_web and JWT claims, as PostgREST) ...")
    web = []
    chat, operator, seen = chats[0]
    visitor, visitor_login, operator_login = conn.execute(
        "select real_user_id, gen_random_uuid(), gen_random_uuid() from chatdesk.chats where id = %s",
        (chat,)).fetchone()
    conn.execute("select chatdesk.link_auth_user(null, %s, %s)", (visitor, visitor_login))
    conn.execute("select chatdesk.link_auth_user(%s, null, %s)", (operator, operator_login))
    for kind, login, args in (("user", visitor_login, (chat,)), ("operator", operator_login, (chat, operator, seen))):
        web.append((f"{kind} message, a web {'visitor' if kind == 'user' else 'operator'}",
                    cpu_per_call_us(conninfo, web_options(options, login), COST_SEND[kind], [args] * n)))
    # with statistics that know the chat's length: on statistics from when
    # every chat had two messages, the generic plan of this read sorts the
    # whole chat (8 ms at 30,000 messages; docs/benchmarks.md)
    conn.execute("analyze chatdesk.messages")
    read = ("select id, sender_type, body, client_message_id, created_at from chatdesk.messages"
            " where chat_id = %s order by id desc limit 20")  # the columns a web caller is granted
    web.append(("a web visitor reads her chat's last 20 messages",
                cpu_per_call_us(conninfo, web_options(options, visitor_login), read, [(chat,)] * n)))

    say(f"CPU per message: {scale.many_operators:,} operators ...")
    more = [r[0] for r in conn.execute(
        "select chatdesk.create_operator('cost op ' || g, 1000) from generate_series(11, %s) g",
        (scale.many_operators,))]
    cost_chats(conn, more, 1)  # every operator holds a chat
    conn.execute("vacuum analyze")
    for kind in by_kind:
        by_kind[kind].append((f"{scale.many_operators:,} operators", measure(kind, chats)))

    say(f"CPU per message: one chat of {scale.long_chat:,} messages ...")
    short, long_ = chats[0], chats[1]
    conn.execute("set session_replication_role = replica")  # raw history, then an exact recount
    conn.execute("""insert into chatdesk.messages (id, chat_id, sender_type, body, created_at)
                    select nextval('chatdesk.messages_id_seq'), %s, 'real_user', 'history',
                           now() - interval '30 days' + g * interval '1 second'
                      from generate_series(1, %s) g""", (long_[0], scale.long_chat))
    conn.execute("set session_replication_role = origin")
    conn.execute("select chatdesk.recount_chats(array[%s]::uuid[])", (long_[0],))
    conn.execute("vacuum analyze chatdesk.messages")
    short_length = conn.execute("select message_count from chatdesk.chats where id = %s", (short[0],)).fetchone()[0]
    for label, pair in ((f"one chat of {short_length:,} messages", short),
                        (f"one chat of {scale.long_chat:,} messages", long_)):
        for kind in by_kind:
            by_kind[kind].append((label, measure(kind, [pair])))
    # off duty, so that the later sections' rollups and reports see the
    # operators they set up, not these 10,000 as well
    conn.execute("select chatdesk.set_operator_active(id, false) from chatdesk.operators where name like 'cost op %'")
    return Costs(bare, by_kind, web)


# -- the ladder: what each rule of a message costs ------------------------------------

# The message trigger cut down to its first rungs, each the one before plus
# one rule. Installed in the benchmark's own database for the measurement,
# then the real trigger function is put back.
LADDER = (
    ("a trigger that checks and numbers the message (no chat lock, counters or feed)", """
        if new.sender_type is null or new.sender_type not in ('real_user', 'operator', 'system')
           or chatdesk.is_blank(new.body) or length(new.body) > 10000
           or chatdesk.current_operator_id() is not null then
            raise exception using errcode = '23514', message = 'refused';
        end if;
        new.id := nextval('chatdesk.messages_id_seq');
        new.created_at := chatdesk.clock();"""),
    ("+ the chat row's lock", """
        select * into v_chat from chatdesk.chats where id = new.chat_id for no key update;"""),
    ("+ the change-feed row", """
        v_chat.change_seq := v_chat.change_seq + 1;
        v_chat.change_tx := chatdesk.publish_change(v_chat, 'message', new.id, null);"""),
    ("+ the chat's update (its counters and feed position)", """
        update chatdesk.chats
           set message_count = message_count + 1, last_message_at = greatest(last_message_at, new.created_at),
               last_user_message_id = new.id, waiting_since = coalesce(waiting_since, new.created_at),
               change_seq = v_chat.change_seq, change_tx = v_chat.change_tx
         where id = new.chat_id;"""),
)


@contextlib.contextmanager
def swapped(conn: psycopg.Connection, function: str, cut: Callable[[str], str]):
    """`function` (a regprocedure, e.g. 'chatdesk.messages__accept()')
    replaced for the block by cut(its real definition), then put back."""
    real = conn.execute("select pg_get_functiondef(%s::regprocedure)", (function,)).fetchone()[0]
    conn.execute(cut(real))
    try:
        yield
    finally:
        conn.execute(real)


def rung(steps: int) -> str:
    """The message trigger cut to the ladder's first `steps` rungs (a
    definition for swapped(), which passes it the real one)."""
    body = "".join(step for _, step in LADDER[:steps])
    return f"""create or replace function chatdesk.messages__accept()
               returns trigger language plpgsql security definer set search_path = chatdesk, pg_temp
               as $rung$ declare v_chat chatdesk.chats%rowtype; begin {body} return new; end $rung$"""


def ladder(conn: psycopg.Connection, conninfo: str, scale: Scale, options: str) -> list[tuple[str, float | None]]:
    """(rung, µs of server CPU per user message) over the ingest's chats: a
    bare INSERT, what users run today, then the message trigger rule by rule
    up to the real one."""
    pairs = conn.execute("select chat_id from bench.chats order by n").fetchall()
    params = (pairs * (scale.cost_calls // len(pairs) + 1))[:scale.cost_calls]
    rungs = [("bare INSERT", cpu_per_call_us(conninfo, options, COST_SEND["bare"], params)),
             ("what users run today (two counter triggers)",
              cpu_per_call_us(conninfo, options, COST_SEND["legacy"], params))]
    for steps, (name, _) in enumerate(LADDER, start=1):
        with swapped(conn, "chatdesk.messages__accept()", lambda _: rung(steps)):
            rungs.append((name, cpu_per_call_us(conninfo, options, COST_SEND["user"], params)))
    rungs.append(("everything (the real trigger)", cpu_per_call_us(conninfo, options, COST_SEND["user"], params)))
    conn.execute("select count(*) from chatdesk.verify_counters(true)")  # the cut-down rungs kept no counters
    return rungs


# -- 2. claiming -------------------------------------------------------------------

CLAIM_SETUP = """
    create schema if not exists bench;
    create table bench.bare_chats (like chatdesk.chats including all);
    create table bench.claimers (n int primary key, operator_id uuid not null);
"""
CHATDESK_CLAIM = """\\set o random(1, {operators})
select chatdesk.claim_next_chat(operator_id) from bench.claimers where n = :o;
"""
BARE_CLAIM = """\\set o random(1, {operators})
update bench.bare_chats
   set chat_state = 'assigned', assigned_at = now(),
       assigned_operator_id = (select operator_id from bench.claimers where n = :o)
 where id = (select id from bench.bare_chats
              where chat_state = 'waiting_assignment'
              order by queued_at, id
              limit 1
                for update skip locked);
"""


def setup_claims(conn: psycopg.Connection, scale: Scale) -> None:
    conn.execute(CLAIM_SETUP)
    conn.execute("""insert into bench.claimers
                    select g, chatdesk.create_operator('claimer ' || g, 1000) from generate_series(1, %s) g""",
                 (scale.operators,))
    user = conn.execute("select chatdesk.create_real_user('queue')").fetchone()[0]
    # The queue is loaded raw (triggers off): 200,000 chats already waiting.
    conn.execute("set session_replication_role = replica")
    set_up_floor(conn)
    conn.execute("create table bench.floor_queue (like bench.bare_chats including all)")
    conn.execute("insert into bench.floor_operators (id) select operator_id from bench.claimers on conflict do nothing")
    for table in ("chatdesk.chats", "bench.bare_chats", "bench.floor_queue"):
        conn.execute(f"""insert into {table} (id, real_user_id, chat_state, state_reason, queued_at, created_at)
                         select gen_random_uuid(), %s, 'waiting_assignment', 'user_message',
                                now() - interval '1 day' + g * interval '1 millisecond', now()
                           from generate_series(1, %s) g""", (user, scale.queue))
    conn.execute("set session_replication_role = origin")
    conn.execute("select chatdesk.sync_queue()")  # the queue table, as the triggers would have kept it
    conn.execute("vacuum analyze")


# -- 3./4. rollup -------------------------------------------------------------------

BARE_GROUP_BY = """
    select handled_by_operator_id, count(*), count(distinct chat_id),
           avg(extract(epoch from created_at - reply_started_at))
      from chatdesk.messages
     where handled_by_operator_id is not null and created_at >= %s and created_at < %s
     group by 1
"""


# -- 5. how cost grows: ten times the queue, the open chats, the kept changes --------

def raw_chats(conn: psycopg.Connection, user, n: int, state: str) -> None:
    """n chats loaded raw (triggers off) in `state`, queued a day ago in order."""
    conn.execute("set session_replication_role = replica")
    conn.execute("""insert into chatdesk.chats (id, real_user_id, chat_state, state_reason, queued_at, created_at)
                    select gen_random_uuid(), %s, %s, case when %s = 'waiting_assignment' then 'user_message' else 'start' end,
                           now() - interval '1 day' + g * interval '1 millisecond', now()
                      from generate_series(1, %s) g""", (user, state, state, n))
    conn.execute("set session_replication_role = origin")


def claim_latency_ms(conn: psycopg.Connection, operator, claims: int) -> float:
    """Median milliseconds of one claim_next_chat, one client."""
    times = []
    for _ in range(claims):
        started = time.perf_counter()
        conn.execute("select chatdesk.claim_next_chat(%s)", (operator,))
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def feed_read_ms(conn: psycopg.Connection) -> float:
    """Median milliseconds of a 1,000-row changes_since near the newest change."""
    cursor = conn.execute("""select tx || ':' || id from chatdesk.changes
                              order by tx desc, id desc offset 5000 limit 1""").fetchone()[0]
    return timed(conn, "select count(*) from chatdesk.changes_since(%s, 1000)", (cursor,), repeat=21) * 1000


def load_changes(conn: psycopg.Connection, first: int, n: int) -> None:
    """n feed rows loaded raw, 100 per (old, committed) transaction position."""
    conn.execute("""insert into chatdesk.changes (tx, chat_id, chat_seq, kind, message_id, chat_state,
                                                  real_user_id, created_at)
                    select (3 + g / 100)::text::xid8, gen_random_uuid(), 1, 'message', g, 'assigned',
                           gen_random_uuid(), now()
                      from generate_series(%s::bigint, %s::bigint) g""", (first, first + n - 1))
    conn.execute("vacuum analyze chatdesk.changes")


def growth(conn: psycopg.Connection, conninfo: str, scale: Scale, workdir: Path, options: str,
           say=lambda text: None) -> list[tuple[str, str, float, float]]:
    """(what, unit, at 1x, at 10x) for the claim, ingest and the feed's read."""
    small, large = scale.growth_base, scale.growth_base * 10
    results = []
    user = conn.execute("select chatdesk.create_real_user('growth')").fetchone()[0]
    claimer = conn.execute("select chatdesk.create_operator('growth claimer', 1000)").fetchone()[0]

    say(f"growth: claim latency, {small:,} then {large:,} chats queued ...")
    conn.execute("set session_replication_role = replica")
    conn.execute("update chatdesk.chats set chat_state = 'closed' where chat_state = 'waiting_assignment'")
    conn.execute("set session_replication_role = origin")
    conn.execute("select chatdesk.sync_queue()")
    per_size = []
    for size in (small, large):
        have = conn.execute("select count(*) from chatdesk.queue").fetchone()[0]
        raw_chats(conn, user, size - have, "waiting_assignment")
        conn.execute("select chatdesk.sync_queue()")
        conn.execute("vacuum analyze chatdesk.queue")
        conn.execute("vacuum analyze chatdesk.chats")
        per_size.append(claim_latency_ms(conn, claimer, 300))
    results.append(("claim latency", "ms", *per_size))

    say(f"growth: ingest with {small:,} then {large:,} open chats ...")
    conn.execute("create schema if not exists bench")
    conn.execute("create table bench.open_chats (n int primary key, chat_id uuid not null)")
    raw_chats(conn, user, large, "waiting_real_user_reply")
    conn.execute("""insert into bench.open_chats
                    select row_number() over (order by created_at, id), id from chatdesk.chats
                     where chat_state = 'waiting_real_user_reply' and real_user_id = %s""", (user,))
    # one message each first: every timed message then writes to a chat already queued
    conn.execute("select chatdesk.send_user_message(chat_id, 'first') from bench.open_chats")
    conn.execute("vacuum analyze")
    script = """\\set n random(1, {chats})
select chatdesk.send_user_message(chat_id, 'still there?') from bench.open_chats where n = :n;
"""
    tps = [run_pgbench(conninfo, script.format(chats=size), max(scale.clients), scale.seconds, workdir, options)[0]
           for size in (small, large)]
    results.append(("message ingest", "tps", *tps))

    say(f"growth: the feed's read with {scale.growth_changes:,} then {scale.growth_changes * 10:,} kept changes ...")
    load_changes(conn, 1, scale.growth_changes)
    first = feed_read_ms(conn)
    load_changes(conn, scale.growth_changes + 1, scale.growth_changes * 9)
    results.append(("changes_since, 1,000 rows", "ms", first, feed_read_ms(conn)))
    return results


def load_history(conn: psycopg.Connection, scale: Scale, first_day: date, days: int, operators: list) -> None:
    """`scale.messages / scale.days` messages a day over `days` days, half from operators, raw."""
    per_day = scale.messages // scale.days
    conn.execute("set session_replication_role = replica")
    chat_pool = conn.execute("select array_agg(id) from (select id from chatdesk.chats limit 20000) c").fetchone()[0]
    for day in range(days):
        start = first_day + timedelta(days=day)
        conn.execute(
            """insert into chatdesk.messages (id, chat_id, sender_type, handled_by_operator_id, body, created_at, reply_started_at)
               select nextval('chatdesk.messages_id_seq'),
                      (%(chats)s::uuid[])[1 + (g * 7919) %% array_length(%(chats)s::uuid[], 1)],
                      case when g %% 2 = 0 then 'operator' else 'real_user' end,
                      case when g %% 2 = 0 then (%(ops)s::uuid[])[1 + (g / 2) %% array_length(%(ops)s::uuid[], 1)] end,
                      'x',
                      %(start)s::timestamptz + (g * interval '86399 seconds') / %(n)s,
                      case when g %% 4 = 0 then %(start)s::timestamptz + (g * interval '86399 seconds') / %(n)s
                                                - (g %% 600) * interval '1 second' end
                 from generate_series(1, %(n)s) g""",
            {"chats": chat_pool, "ops": operators, "start": start.isoformat() + " 00:00:00+00", "n": per_day})
    conn.execute("set session_replication_role = origin")
    conn.execute("vacuum analyze chatdesk.messages")


def peak_rss_of_cli(conninfo: str, *args: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of `chatdesk ARGS` as its own process.

    Read from the child's own /proc/PID/status VmHWM while it runs: the
    rusage of a child also counts the parent's pages it had between fork and
    exec, which would report this (large) benchmark process instead."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "chatdesk", "--database-url", conninfo, *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    status, peak_kb = Path(f"/proc/{proc.pid}/status"), 0
    while proc.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak_kb = max(peak_kb, int(line.split()[1]))
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(0.01)
    if proc.wait() != 0:
        raise ChatdeskError(f"chatdesk {args[0]} failed: {proc.stderr.read().decode().strip()}")
    return time.perf_counter() - started, peak_kb / 1024.0


FEED_READER = """
import sys
from chatdesk.feed import Feed

def hwm():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024

total, seen = int(sys.argv[3]), 0
feed = Feed(sys.argv[1], sys.argv[2], poll=0.05)
for change in feed:
    seen += 1
    if seen == total // 10:
        print(f"{hwm():.1f}", flush=True)
    if seen == total:
        print(f"{hwm():.1f}", flush=True)
        break
"""


def feed_reader_memory(conninfo: str, changes: int) -> tuple[float, float, float]:
    """Write `changes` feed rows at once, then read them with chatdesk.feed.Feed
    in a process of its own: its peak RSS (MB) after a tenth of them and after
    all of them, and the seconds it took."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        since = conn.execute("select chatdesk.feed_position()").fetchone()[0]
        chat, user = conn.execute("select id, real_user_id from chatdesk.chats limit 1").fetchone()
        conn.execute("""insert into chatdesk.changes (tx, chat_id, chat_seq, kind, message_id, chat_state,
                                                      real_user_id, created_at)
                        select pg_current_xact_id(), %s, g, 'message', g, 'assigned', %s, now()
                          from generate_series(1, %s) g""", (chat, user, changes))
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", FEED_READER, conninfo, since, str(changes)],
                            capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise ChatdeskError(f"the feed reader failed: {result.stderr.strip().splitlines()[-1:]}")
    early, late = (float(v) for v in result.stdout.split())
    return early, late, time.perf_counter() - started


# -- the whole run, section by section -----------------------------------------------

@dataclass
class Bench:
    """What every section of a run works with."""
    conn: psycopg.Connection
    conninfo: str
    scale: Scale
    options: str  # connection options of both sides of every comparison
    workdir: Path
    report: Report
    say: Callable[[str], None]
    ready: set[str] = field(default_factory=set)  # setups done: "ingest", "claim"

    @property
    def fill(self) -> dict:
        """What the pgbench scripts' {placeholders} stand for."""
        return {"chats": self.scale.chats, "operators": self.scale.operators}

    def unpack(self) -> tuple:
        return self.conn, self.conninfo, self.scale, self.options, self.workdir, self.report, self.say

    def set_up(self, what: str) -> None:
        """The data a section works on, made once: the ingest's chats, or the claim queue."""
        if what not in self.ready:
            if what == "ingest":
                self.say(f"ingest: {self.scale.chats} chats ...")
                setup_ingest(self.conn, self.scale)
            else:
                self.say(f"claiming: a queue of {self.scale.queue} chats ...")
                setup_claims(self.conn, self.scale)
            self.ready.add(what)


def cpu_section(b: Bench) -> None:
    """CPU per message with 10 and with many operators, in a short and in a
    long chat, and for web callers. First, on the fresh database."""
    conn, conninfo, scale, options, workdir, report, say = b.unpack()
    costs = cpu_costs(conn, conninfo, scale, options, say)
    for kind, cases in costs.by_kind.items():
        for case, us in cases:
            report.rows.append(Row(
                "CPU per message", f"{kind} message, {case}", 1,
                ratio=us / costs.bare if us and costs.bare else None,
                note=f"{us:.0f} µs (bare INSERT {costs.bare:.0f} µs); ratio: / bare" if us and costs.bare
                else "n/a: the server is not on this machine"))
        (_, few), (_, many), (_, short), (_, long_) = cases
        if few and many and short and long_:
            for growth_of, before, after in (("operators", few, many), ("chat length", short, long_)):
                report.rows.append(Row("CPU per message", f"{kind} message: growth with {growth_of}", 1,
                                       ratio=after / before,
                                       note=f"{before:.0f} -> {after:.0f} µs; target: flat (<= 1.2)"))
                if scale.gate_cpu:
                    report.checks[f"{kind} message CPU flat with {growth_of}"] = after / before <= 1.2
        say(f"  {kind}: " + "; ".join(f"{case} {us or 0:.0f} µs" for case, us in cases))
    for what, us in costs.web:
        report.rows.append(Row("CPU per message", what, 1,
                               note=f"{us:.0f} µs" if us else "n/a: the server is not on this machine"))
    say("  web: " + "; ".join(f"{what} {us or 0:.0f} µs" for what, us in costs.web))


# Contract changes, measured: the message trigger cut to the ladder's first
# rungs (name, how many rungs).
CONTRACT_CHANGES = (
    ("chatdesk keeping only the chat row's lock (no counters, no feed row)", 2),
    ("chatdesk without per-message chat bookkeeping (no lock, counters or feed row)", 1),
)


def contract_change(b: Bench) -> None:
    """User messages at the most clients: chatdesk as it is and as the
    contract changes above would make it, against a bare INSERT
    (synchronous_commit off) and against what users run today (the server's
    own synchronous_commit)."""
    conn, conninfo, scale, options, workdir, report, say = b.unpack()
    clients = max(scale.clients)

    def pgbench(script: str, run_options: str) -> tuple[float, float, float]:
        return run_pgbench(conninfo, script.format(**b.fill), clients, scale.seconds, workdir, run_options)

    for label, run_options, baseline, script in (
            ("", options, "bare INSERT", BARE_USER),
            (" (server's synchronous_commit)", "", "what users run today (two counter triggers)", LEGACY_USER)):
        tps = {baseline: pgbench(script, run_options), "chatdesk": pgbench(CHATDESK_USER, run_options)}
        for change, steps in CONTRACT_CHANGES:
            with swapped(conn, "chatdesk.messages__accept()", lambda _: rung(steps)):
                tps[change] = pgbench(CHATDESK_USER, run_options)
        conn.execute("select count(*) from chatdesk.verify_counters(true)")  # the cut-down triggers kept no counters
        for variant, result in tps.items():
            report.rows.append(Row("message ingest, user messages" + label, variant, clients, *result,
                                   ratio=None if variant == baseline else result[0] / tps[baseline][0],
                                   note="" if variant == baseline else f"ratio: / {baseline}"))
        say(f"  {clients} clients, user messages{label}: " + ", ".join(f"{v} {t[0]:.0f}" for v, t in tps.items()))


def ingest_section(b: Bench) -> None:
    """Ingest against a bare INSERT and what users run today; the ladder;
    what a contract change would give."""
    conn, conninfo, scale, options, workdir, report, say = b.unpack()
    fill = b.fill
    scripts = {"bare INSERT": mixed(BARE_USER, BARE_OPERATOR).format(**fill),
               "what users run today (two counter triggers)": mixed(LEGACY_USER, LEGACY_OPERATOR).format(**fill),
               "the contract's floor (its writes, one plain statement)":
                   mixed(bench_sql("floor_user.sql"), bench_sql("floor_operator.sql")).format(**fill),
               "chatdesk": mixed(CHATDESK_USER, CHATDESK_OPERATOR).format(**fill)}

    def ingest(clients: int, run_options: str, label: str = "") -> None:
        tps = {variant: run_pgbench(conninfo, script, clients, scale.seconds, workdir, run_options)
               for variant, script in scripts.items()}
        bare, legacy, floor, _ = (result[0] for result in tps.values())
        for variant, result in tps.items():
            report.rows.append(Row(
                "message ingest" + label, variant, clients, *result,
                ratio=None if variant == "bare INSERT" else result[0] / bare,
                note=(f"{result[0] / legacy:.2f} of what users run today, {result[0] / floor:.2f} of the floor "
                      "(targets, #25: 0.75 and 0.8)") if variant == "chatdesk" else ""))
        say(f"  {clients} clients{label}: " + ", ".join(f"{v} {t[0]:.0f}" for v, t in tps.items()) + " tps")

    for clients in scale.clients:
        ingest(clients, options)
    # the same at the server's own synchronous_commit (its default: on)
    ingest(max(scale.clients), "", " (server's synchronous_commit)")
    report.checks["ingest counters drift"] = conn.execute(
        "select count(*) from chatdesk.verify_counters()").fetchone()[0]

    say("the ladder: what each rule of a user message costs ...")
    rungs = ladder(conn, conninfo, scale, options)
    bare_us = rungs[0][1]
    for rung, us in rungs:
        report.rows.append(Row("ladder (user message, CPU)", rung, 1,
                               ratio=bare_us / us if us and bare_us else None,
                               note=f"{us:.0f} µs; ratio: bare / this" if us else "n/a"))
    say("  " + "; ".join(f"{rung}: {us or 0:.0f} µs" for rung, us in rungs))
    contract_change(b)


def feed_section(b: Bench) -> None:
    """The change feed: the wake-up's cost, commit-to-delivery latency, a reader's memory."""
    conn, conninfo, scale, options, workdir, report, say = b.unpack()
    fill = b.fill
    say("change feed: the NOTIFY's cost, and commit-to-delivery latency ...")
    script = mixed(CHATDESK_USER, CHATDESK_OPERATOR).format(**fill)
    clients = max(scale.clients)
    off = run_pgbench(conninfo, script, clients, scale.seconds, workdir, options + " -c chatdesk.feed_notify=off")
    on = run_pgbench(conninfo, script, clients, scale.seconds, workdir, options)
    report.rows.append(Row("change feed", "ingest, NOTIFY off", clients, *off))
    report.rows.append(Row("change feed", "ingest, NOTIFY on (one per transaction)", clients, *on,
                           ratio=on[0] / off[0], note="ratio: on / off"))
    say(f"  NOTIFY on: {on[0]:.0f} tps, p99 {on[2]:.1f} ms; off: {off[0]:.0f} tps, p99 {off[2]:.1f} ms")
    user_only = CHATDESK_USER.format(**fill)
    for rate in (100, 1000, 5000):
        p50, p95, p99, delivered, sent = feed_latency(conninfo, user_only, clients, scale.seconds, workdir,
                                                      options, rate)
        report.rows.append(Row("change feed", f"commit to delivery at {rate} messages/s", clients,
                               note=f"p50 {p50:.0f} ms, p95 {p95:.0f} ms, p99 {p99:.0f} ms; "
                                    f"{delivered} changes delivered for ~{sent} messages"))
        say(f"  {rate}/s: p50 {p50:.0f} ms, p95 {p95:.0f} ms, p99 {p99:.0f} ms ({delivered} changes)")

    changes = 20_000 if scale.chats < 1000 else 1_000_000
    early, late, took = feed_reader_memory(conninfo, changes)
    report.rows.append(Row("change feed", f"a reader over {changes:,} changes (peak RSS)", 1,
                           note=f"{early:.0f} MB after {changes // 10:,}, {late:.0f} MB after {changes:,}; "
                                f"{changes / took:,.0f} changes/s"))
    report.checks["feed reader memory flat"] = late <= early * 1.2 + 5
    say(f"  a reader over {changes:,} changes: {early:.0f} MB -> {late:.0f} MB ({took:.0f} s)")
    conn.execute("delete from chatdesk.changes where kind = 'message' and message_id is not null "
                 "and chat_seq > 0 and tx = (select max(tx) from chatdesk.changes)")


def migrate_section(b: Bench) -> None:
    """The longest stall of message writers while migrate runs."""
    conn, conninfo, scale, options, workdir, report, say = b.unpack()
    script = mixed(CHATDESK_USER, CHATDESK_OPERATOR).format(**b.fill)
    clients = max(scale.clients)
    say("migrate while messages flow ...")
    for rate in (1000, None):
        for pending in (False, True):
            def run_migrate(pending=pending):
                if pending:  # as a release that changes trigger functions, triggers and policies
                    conn.execute("delete from chatdesk.sql_loaded where file in "
                                 "('110_messages.sql', '900_triggers.sql', '940_policies.sql')")
                migrate.migrate(conninfo)
            longest, took, tps = stall_during(conninfo, script, clients, scale.seconds, workdir, options,
                                              rate, run_migrate)
            report.rows.append(Row(
                "migrate under traffic", "a pending sql/ change" if pending else "nothing pending", clients,
                tps=tps,
                note=f"{'1,000 calls/s' if rate else 'flat out'}; longest stall {longest:.0f} ms, "
                     f"migrate took {took * 1000:.0f} ms"))
            say(f"  {'1000/s' if rate else 'flat out'}, {'pending' if pending else 'nothing pending'}: "
                f"longest stall {longest:.0f} ms (migrate {took * 1000:.0f} ms)")
    report.checks["counters drift after migrates under traffic"] = conn.execute(
        "select count(*) from chatdesk.verify_counters()").fetchone()[0]


def claim_section(b: Bench) -> None:
    """claim_next_chat against a bare SKIP LOCKED pop, and the claims' invariants."""
    conn, conninfo, scale, options, workdir, report, say = b.unpack()
    fill = b.fill
    clients = max(scale.clients)

    def claims(script: str) -> tuple[float, float, float]:
        # each run from a vacuumed queue: the entries an earlier run claimed
        # leave dead index entries at the queue's head that every pop steps over
        conn.execute("vacuum bench.bare_chats, bench.floor_queue, chatdesk.queue, chatdesk.chats")
        return run_pgbench(conninfo, script.format(**fill), clients, scale.seconds, workdir, options)

    bare = claims(BARE_CLAIM)
    floor = claims(bench_sql("floor_claim.sql"))
    ours = claims(CHATDESK_CLAIM)
    report.rows.append(Row("claim next chat", "bare SKIP LOCKED pop", clients, *bare))
    report.rows.append(Row("claim next chat", "the contract's floor (pop, update, event, load, feed row: "
                                              "one plain statement)", clients, *floor, ratio=floor[0] / bare[0]))
    report.rows.append(Row("claim next chat", "chatdesk", clients, *ours, ratio=ours[0] / bare[0],
                           note=f"{ours[0] / floor[0]:.2f} of the floor (targets, #25: 0.7 of the pop, 0.8 of "
                                "the floor)"))
    say(f"  {clients} clients: {ours[0]:.0f} vs bare {bare[0]:.0f}, floor {floor[0]:.0f} tps")
    report.checks["chats claimed twice"] = conn.execute(
        """select count(*) from (select chat_id from chatdesk.chat_events where reason = 'claim'
                                  group by chat_id having count(*) > 1) d""").fetchone()[0]
    report.checks["claimed chats without exactly one claim event"] = conn.execute(
        """select count(*) from chatdesk.chats c
            where c.state_reason = 'claim'
              and (select count(*) from chatdesk.chat_events e
                    where e.chat_id = c.id and e.reason = 'claim') <> 1""").fetchone()[0]
    report.checks["operators over capacity"] = conn.execute(
        "select count(*) from chatdesk.operator_load where assigned_chats > max_concurrent_chats").fetchone()[0]

    # What a contract change would give: claims (every state change, in
    # fact) without their chat_events row and change-feed row. After the
    # checks above, which these claims would fail.
    with swapped(conn, "chatdesk.chats__guard_state()", without_event_and_feed_rows):
        cut = claims(CHATDESK_CLAIM)
    report.rows.append(Row("claim next chat", "chatdesk without the event and feed rows (a contract change)",
                           clients, *cut, ratio=cut[0] / bare[0]))
    say(f"  {clients} clients, without the event and feed rows: {cut[0]:.0f} tps")


def without_event_and_feed_rows(guard: str) -> str:
    """The state guard's definition with its chat_events insert and its
    change-feed row cut out."""
    event = guard.index("    insert into chatdesk.chat_events")
    event_end = guard.index(";", event) + 1
    feed = "new.change_tx := chatdesk.publish_change(v_audience, 'chat', null, old.chat_state);"
    if feed not in guard:
        raise ChatdeskError("the state guard no longer publishes its change as bench.py expects; update the bench")
    guard = guard[:event] + guard[event_end:]
    return guard.replace(feed, "new.change_tx := greatest(pg_current_xact_id(), new.change_tx);")


def rollup_section(b: Bench) -> None:
    """The rollup against a bare GROUP BY and the original design; the
    backfill's memory; the month's report."""
    conn, conninfo, scale, options, workdir, report, say = b.unpack()
    say(f"rollup: {scale.messages} messages over {scale.days} days ...")
    operators = [r[0] for r in conn.execute("select operator_id from bench.claimers order by n")]
    history_days = scale.days * scale.history_factor
    first = date(2026, 1, 1) + timedelta(days=history_days - scale.days)  # the recent `days` days
    load_history(conn, scale, first, scale.days, operators)
    # business hours, so the rollup's cost includes business time for every reply
    conn.execute("""insert into chatdesk.business_hours (weekday, opens, closes)
                    select d, '09:00', '17:00' from generate_series(1, 5) d on conflict do nothing""")
    day = first + timedelta(days=scale.days // 2)
    bounds = (f"{day} 00:00:00+00", f"{day + timedelta(days=1)} 00:00:00+00")
    bare_s = timed(conn, BARE_GROUP_BY, bounds)
    ours_s = timed(conn, "select chatdesk.rollup_operator_stats(%s)", (day,))
    day_rows = conn.execute("select count(*) from chatdesk.messages where handled_by_operator_id is not null "
                            "and created_at >= %s and created_at < %s", bounds).fetchone()[0]
    report.rows.append(Row("rollup one day", f"bare GROUP BY ({day_rows} operator messages)", 1,
                           avg_ms=bare_s * 1000))
    report.rows.append(Row("rollup one day", "rollup_operator_stats", 1, avg_ms=ours_s * 1000,
                           ratio=ours_s / bare_s,
                           note="time ratio; the stats alone were <= 3, reports' metrics in business time added"))

    loop_s = timed(conn, "select chatdesk.update_operator_stats(operator_id, %s) from bench.claimers", (day,), repeat=1)
    started = time.perf_counter()
    for op in operators:  # one remote call per operator, as the original cron endpoint did
        conn.execute("select chatdesk.update_operator_stats(%s, %s)", (op, day))
    remote_s = time.perf_counter() - started
    report.rows.append(Row("original design", f"update_operator_stats x {len(operators)} calls", 1,
                           avg_ms=remote_s * 1000, ratio=remote_s / ours_s, note="time vs one rollup"))
    report.rows.append(Row("original design", f"update_operator_stats x {len(operators)} in one statement", 1,
                           avg_ms=loop_s * 1000, ratio=loop_s / ours_s, note="time vs one rollup"))

    span = (first.isoformat(), (first + timedelta(days=30)).isoformat())
    _, rss = peak_rss_of_cli(conninfo, "rollup", "--from", span[0], "--to", span[1], "--json")
    report.rows.append(Row("31-day backfill", "chatdesk rollup --from --to (peak RSS)", 1,
                           note=f"{rss:.0f} MB, target < 100 MB"))
    report.checks["backfill peak RSS under 100 MB"] = rss < 100
    # the month's report, as a support lead would ask for it (HTML with every chart)
    # a queue sample a minute, as chatdesk schedule takes them
    conn.execute("""insert into chatdesk.queue_samples (sampled_at, waiting, assigned, oldest_wait_seconds)
                    select %s::timestamptz + g * interval '1 minute', g %% 40, g %% 25, g %% 600
                      from generate_series(0, 31 * 24 * 60 - 1) g on conflict do nothing""",
                 (f"{first} 00:00:00+00",))
    html = workdir / "month.html"
    seconds, rss = peak_rss_of_cli(conninfo, "report", "--from", span[0], "--to", span[1],
                                   "--format", "html", "-o", str(html))
    report.rows.append(Row("31-day report", f"chatdesk report --format html ({scale.messages} messages)", 1,
                           avg_ms=seconds * 1000,
                           note=f"{rss:.0f} MB; targets < 2 s, < 100 MB (a whole process, Python's start included)"))
    report.checks["31-day report under 2 s"] = seconds < 2
    report.checks["31-day report under 100 MB"] = rss < 100

    say(f"rollup: ten times the history ({history_days} days) ...")
    day_stats = """select operator_id, messages_sent, chats_handled, replies, reply_time_avg_seconds,
                          reply_time_p50_seconds, reply_time_p90_seconds
                     from chatdesk.operator_daily_stats where stat_date = %s order by operator_id"""
    before = conn.execute(day_stats, (day,)).fetchall()
    load_history(conn, scale, date(2026, 1, 1), history_days - scale.days, operators)
    ours_10x = timed(conn, "select chatdesk.rollup_operator_stats(%s)", (day,))
    after = conn.execute(day_stats, (day,)).fetchall()
    report.rows.append(Row("rollup one day", f"with {scale.history_factor}x the history", 1,
                           avg_ms=ours_10x * 1000, ratio=ours_10x / ours_s, note="growth, target <= 1.3"))
    report.checks["the day's stats unchanged by older history"] = before == after and len(before) > 0


def growth_section(b: Bench) -> None:
    """How cost grows with ten times the queue, the open chats and the kept changes."""
    conn, conninfo, scale, options, workdir, report, say = b.unpack()
    for what, unit, one, ten in growth(conn, conninfo, scale, workdir, options, say):
        # throughput falls as cost grows: compare cost either way
        factor = one / ten if unit == "tps" else ten / one
        sizes = (f"{scale.growth_changes:,} -> {scale.growth_changes * 10:,} kept changes"
                 if what.startswith("changes_since") else
                 f"{scale.growth_base:,} -> {scale.growth_base * 10:,} "
                 + ("queued chats" if what.startswith("claim") else "open chats"))
        report.rows.append(Row("growth (10x)", f"{what}: {sizes}", max(scale.clients) if unit == "tps" else 1,
                               ratio=factor,
                               note=f"{one:.2f} -> {ten:.2f} {unit}; cost ratio, target <= 1.2"))
        report.checks[f"{what} flat within 1.2x at 10x"] = factor <= 1.2
        say(f"  {what}: {one:.2f} -> {ten:.2f} {unit}")


# name -> (the setup it needs, the section), in the order a full run takes them
SECTIONS: dict[str, tuple[str | None, Callable[[Bench], None]]] = {
    "cpu": (None, cpu_section),
    "ingest": ("ingest", ingest_section),
    "feed": ("ingest", feed_section),
    "migrate": ("ingest", migrate_section),
    "claim": ("claim", claim_section),
    "rollup": ("claim", rollup_section),
    "growth": (None, growth_section),
    "web": (None, bench_web.web_section),
    "web-load": (None, bench_web.web_load_section),
    "delivery": (None, bench_serve.delivery_section),
}


def check_sections(only: tuple[str, ...]) -> None:
    unknown = [name for name in only if name not in SECTIONS]
    if unknown:
        raise BadRequest(f"no benchmark section {unknown[0]!r}; the sections are {', '.join(SECTIONS)}")


def run(conninfo: str, scale: Scale, say=lambda text: None, synchronous_commit: str = "off",
        only: tuple[str, ...] = ()) -> Report:
    """Every section (or those named in `only`), in SECTIONS' order."""
    check_sections(only)
    report = Report()
    options = f"-c synchronous_commit={synchronous_commit}"
    with psycopg.connect(conninfo, autocommit=True, options=options) as conn:
        report.settings = dict(conn.execute(
            """select name, setting || coalesce(' ' || unit, '') from pg_settings
                where name in ('server_version', 'shared_buffers', 'work_mem', 'max_connections', 'fsync',
                               'synchronous_commit', 'max_wal_size', 'effective_cache_size', 'jit')""").fetchall())
        migrate.migrate(conninfo, echo=lambda *a, **k: None)
        workdir = Path(tempfile.mkdtemp(prefix="chatdesk-bench-"))
        bench = Bench(conn, conninfo, scale, options, workdir, report, say)
        try:
            for name, (needs, section) in SECTIONS.items():
                if only and name not in only:
                    continue
                if needs:
                    bench.set_up(needs)
                section(bench)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return report

def render(report: Report) -> str:
    def f(value, fmt):
        return format(value, fmt) if value is not None else "-"

    lines = ["| workload | variant | clients | tps | avg ms | p99 ms | ratio | note |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in report.rows:
        lines.append(f"| {r.workload} | {r.variant} | {r.clients} | {f(r.tps, '.0f')} | {f(r.avg_ms, '.2f')} | "
                     f"{f(r.p99_ms, '.2f')} | {f(r.ratio, '.2f')} | {r.note} |")
    lines.append("")
    lines.append("Checks: " + ", ".join(f"{k}: {v}" for k, v in report.checks.items()))
    lines.append("Server: " + ", ".join(f"{k}={v}" for k, v in sorted(report.settings.items())))
    return "\n".join(lines)
