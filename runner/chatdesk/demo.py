"""`chatdesk demo`: a simulated working day, compressed in time, then the stats and the proof.

The simulation is a discrete-event loop in Python. Every action is one call of
chatdesk's public functions, run at its simulated moment by pinning
chatdesk.clock, so timing is realistic (reply times, idle operators, queue
waits) while the whole day takes seconds. The database decides everything;
the simulation only asks, as an application would.
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from time import sleep
from time import time as wall_clock
from zoneinfo import ZoneInfo

import psycopg
from psycopg.conninfo import make_conninfo

from chatdesk.errors import AT_CAPACITY, NOT_ASSIGNEE
from chatdesk.feed import Feed

SPARKS = "▁▂▃▄▅▆▇█"


@dataclass
class DemoConfig:
    seed: int = 7
    operators: int = 24
    users: int = 400
    day: date = date(2026, 3, 10)
    zone: str = "Europe/Amsterdam"


@dataclass
class Operator:
    id: str
    name: str
    capacity: int
    shift: tuple[datetime, datetime]
    away: tuple[datetime, datetime] | None  # a stretch without heartbeat: goes idle
    answering: set = field(default_factory=set)  # chats with an answer being typed
    walked_off: bool = False


@dataclass
class Tally:
    user_messages: int = 0
    operator_messages: int = 0
    retries: int = 0
    retry_ids_matched: int = 0
    races: int = 0  # user wrote while the answer was in flight
    races_kept_assigned: int = 0
    idle_released: int = 0
    claims: int = 0
    capacity_refusals: int = 0
    not_assignee_refusals: int = 0  # an answer to a chat that idle release took away
    over_capacity_seen: int = 0
    queue_samples: list = field(default_factory=list)  # (time, depth)


class Simulation:
    def __init__(self, conn: psycopg.Connection, cfg: DemoConfig):
        self.conn, self.cfg = conn, cfg
        self.rng = random.Random(cfg.seed)
        self.tz = ZoneInfo(cfg.zone)
        self.events: list = []
        self.seq = itertools.count()
        self.tally = Tally()
        self.now: datetime | None = None
        self.operators: list[Operator] = []
        self.chat_user: dict[str, int] = {}
        self.pending_rounds: dict[str, int] = {}  # chat -> times its user will still write back
        self.committed_at: dict[int, float] = {}  # message id -> wall time its call returned (committed)

    # -- plumbing --------------------------------------------------------------

    def local(self, hour: float) -> datetime:
        return datetime.combine(self.cfg.day, time(0), self.tz) + timedelta(hours=hour)

    def at(self, when: datetime, action: Callable, *args) -> None:
        heapq.heappush(self.events, (when, next(self.seq), action, args))

    def sql(self, query: str, params=()):
        return self.conn.execute(query, params)

    def one(self, query: str, params=()):
        return self.sql(query, params).fetchone()[0]

    def run(self) -> None:
        while self.events:
            when, _, action, args = heapq.heappop(self.events)
            if self.now is None or when > self.now:
                self.now = when
                self.sql("select set_config('chatdesk.clock', %s, false)", (when.isoformat(),))
            action(*args)
        self.sql("reset chatdesk.clock")

    # -- the cast --------------------------------------------------------------

    def setup(self) -> None:
        rng, cfg = self.rng, self.cfg
        self.sql("update chatdesk.settings set value = %s where key = 'stats_time_zone'", (cfg.zone,))
        # Business hours with a lunch break, Monday to Friday; the day's
        # early and late visitors wait partly outside them.
        self.sql("""insert into chatdesk.business_hours (weekday, opens, closes)
                    select d, o::time, c::time from generate_series(1, 5) d,
                           (values ('09:00', '12:30'), ('13:30', '18:00')) w(o, c)""")
        self.sql("select set_config('chatdesk.clock', %s, false)", (self.local(7).isoformat(),))
        for i in range(cfg.operators):
            # staggered part-time shifts: thin cover early and late, queues at the peaks
            start = rng.choice([8, 9, 10, 11, 12, 13, 14, 15])
            shift = (self.local(start + rng.random() / 2), self.local(min(start + rng.choice([4, 5, 6]), 20)))
            away = None
            if rng.random() < 0.3:  # a third of them walk away mid-shift without telling the console
                leave = self.local(start + 0.5 + rng.random() * 3)
                away = (leave, leave + timedelta(minutes=rng.randrange(8, 25)))
            capacity = rng.choice([1, 2, 2, 3, 3, 4])
            name = f"{rng.choice(FIRST)} {chr(65 + i % 26)}."
            op_id = self.one("select chatdesk.create_operator(%s, %s)", (name, capacity))
            self.operators.append(Operator(op_id, name, capacity, shift, away))
            self.at(shift[0], self.operator_tick, self.operators[-1])
        for u in range(cfg.users):
            hour = rng.choice([rng.gauss(11, 0.8), rng.gauss(15, 1.0), rng.uniform(8, 19.5)])
            self.at(self.local(min(max(hour, 8.0), 19.7)), self.user_arrives, u)
        t = self.local(8)
        while t <= self.local(21):
            self.at(t, self.sweep_idle)
            self.at(t + timedelta(seconds=30), self.sample)
            t += timedelta(minutes=1)

    # -- users -----------------------------------------------------------------

    def user_arrives(self, u: int) -> None:
        user = self.one("select chatdesk.create_real_user(%s)", (f"visitor {u}",))
        chat = self.one("select chatdesk.start_chat(%s)", (user,))
        self.chat_user[chat] = u
        self.user_writes(chat, rounds_left=self.rng.choice([0, 1, 1, 2, 3]))

    def user_writes(self, chat: str, rounds_left: int, retry: bool = False) -> None:
        client_id = f"u{self.chat_user[chat]}-{next(self.seq)}"
        first = self.one("select chatdesk.send_user_message(%s, %s, %s)", (chat, self.rng.choice(QUESTIONS), client_id))
        self.committed_at.setdefault(first, wall_clock())  # autocommit: the call has returned, so it has committed
        self.tally.user_messages += 1
        if retry or self.rng.random() < 0.08:  # a flaky network: the client sends it again
            again = self.one("select chatdesk.send_user_message(%s, %s, %s)", (chat, "(retry)", client_id))
            self.tally.retries += 1
            self.tally.retry_ids_matched += again == first
        if self.rng.random() < 0.25:  # a follow-up before anyone answered
            self.at(self.now + timedelta(seconds=self.rng.randrange(10, 90)), self.user_follow_up, chat)
        self.pending_rounds[chat] = rounds_left

    def user_follow_up(self, chat: str) -> None:
        if self.one("select chat_state from chatdesk.chats where id = %s", (chat,)) != "closed":
            self.sql("select chatdesk.send_user_message(%s, %s)", (chat, "also…"))
            self.tally.user_messages += 1

    def user_reads_answer(self, chat: str) -> None:
        rounds_left = self.pending_rounds.get(chat, 0)
        if rounds_left > 0:
            self.at(self.now + timedelta(seconds=self.rng.randrange(20, 300)), self.user_writes, chat, rounds_left - 1)
        elif self.rng.random() < 0.6:
            self.at(self.now + timedelta(seconds=self.rng.randrange(5, 60)), self.user_closes, chat)

    def user_closes(self, chat: str) -> None:
        if self.one("select chat_state from chatdesk.chats where id = %s", (chat,)) == "waiting_real_user_reply":
            self.sql("select chatdesk.close_chat(%s)", (chat,))

    # -- operators ---------------------------------------------------------------

    def is_away(self, op: Operator) -> bool:
        return op.away is not None and op.away[0] <= self.now < op.away[1]

    def operator_tick(self, op: Operator) -> None:
        if self.now >= op.shift[1]:
            return
        if self.is_away(op) and not op.walked_off:
            # opens one more chat, then walks away from the console without a word
            op.walked_off = True
            try:
                if self.one("select chatdesk.claim_next_chat(%s)", (op.id,)) is not None:
                    self.tally.claims += 1
            except psycopg.Error as error:
                if error.sqlstate != AT_CAPACITY:
                    raise
        elif not self.is_away(op):
            self.sql("select chatdesk.heartbeat(%s)", (op.id,))
            load = self.one("select assigned_chats from chatdesk.operator_load where operator_id = %s", (op.id,))
            while load < op.capacity:
                chat = self.one("select chatdesk.claim_next_chat(%s)", (op.id,))
                if chat is None:
                    break
                self.tally.claims += 1
                load += 1
            if self.rng.random() < 0.05:  # a console that claims once too often
                try:
                    self.sql("select chatdesk.claim_next_chat(%s)", (op.id,))
                except psycopg.Error as error:
                    if error.sqlstate != AT_CAPACITY:
                        raise
                    self.tally.capacity_refusals += 1
            for (chat,) in self.sql("""select id from chatdesk.chats
                                        where assigned_operator_id = %s and chat_state = 'assigned'""", (op.id,)):
                if chat not in op.answering:
                    op.answering.add(chat)
                    seen = self.one("select max(id) from chatdesk.messages where chat_id = %s", (chat,))
                    think = timedelta(seconds=self.rng.randrange(40, 300))
                    self.at(self.now + think, self.operator_answers, op, chat, seen)
        self.at(self.now + timedelta(seconds=self.rng.randrange(20, 45)), self.operator_tick, op)

    def operator_answers(self, op: Operator, chat: str, seen: int) -> None:
        op.answering.discard(chat)
        if self.is_away(op):  # walked away mid-answer; idle release will hand the chat on
            return
        race = self.rng.random() < 0.12
        if race:  # the user writes while the answer is being sent
            self.sql("select chatdesk.send_user_message(%s, %s)", (chat, "wait, one more thing!"))
            self.tally.user_messages += 1
            self.tally.races += 1
        try:
            message_id, state, meanwhile = self.sql(
                "select * from chatdesk.send_operator_message(%s, %s, %s, %s, %s)",
                (chat, op.id, self.rng.choice(ANSWERS), f"op-{next(self.seq)}", seen)).fetchone()
            self.committed_at.setdefault(message_id, wall_clock())
        except psycopg.Error as error:
            if error.sqlstate != NOT_ASSIGNEE:  # the chat went back to the queue while we typed
                raise
            self.tally.not_assignee_refusals += 1
            return
        self.tally.operator_messages += 1
        if meanwhile:
            self.tally.races_kept_assigned += race and state == "assigned"
            op.answering.add(chat)
            newest = self.one("select max(id) from chatdesk.messages where chat_id = %s", (chat,))
            self.at(self.now + timedelta(seconds=self.rng.randrange(15, 60)), self.operator_answers, op, chat, newest)
        else:
            self.user_reads_answer(chat)

    # -- the house -------------------------------------------------------------

    def sweep_idle(self) -> None:
        self.tally.idle_released += self.one("select chatdesk.release_idle_chats('5 minutes')")

    def sample(self) -> None:
        depth = self.one("select chatdesk.sample_queue()")  # as chatdesk schedule does, every minute
        self.tally.queue_samples.append((self.now, depth))
        self.tally.over_capacity_seen += self.one(
            "select count(*) from chatdesk.operator_load where assigned_chats > max_concurrent_chats")


FIRST = ["Ada", "Ben", "Cleo", "Dev", "Eva", "Finn", "Gala", "Hugo", "Iris", "Jon", "Kai", "Lea", "Milo",
         "Nora", "Omar", "Pia", "Quinn", "Rosa", "Sam", "Tia", "Uri", "Vera", "Wim", "Xena", "Yuki", "Zoe"]
QUESTIONS = ["Hi, my order has not arrived", "How do I reset my password?", "Can I change my plan?",
             "The app crashes on start", "Is there a discount for students?", "Where is my invoice?"]
ANSWERS = ["Let me check that for you.", "Done! Anything else?", "Here is the link you need.",
           "I have passed this to our team.", "Could you send me your order number?"]


# -- the proof -----------------------------------------------------------------

INVARIANTS = {
    "chats claimed while already assigned (double assignment)": """
        select count(*) from chatdesk.chat_events where reason = 'claim' and from_state <> 'waiting_assignment'""",
    "chats waiting for their user while the user's newest message is unanswered": """
        select count(*) from chatdesk.chats c
         where c.chat_state = 'waiting_real_user_reply'
           and (select max(id) from chatdesk.messages m where m.chat_id = c.id and m.sender_type = 'real_user')
             > coalesce((select max(id) from chatdesk.messages m where m.chat_id = c.id and m.sender_type = 'operator'), 0)""",
    "counters that differ from a recount (verify_counters)": "select count(*) from chatdesk.verify_counters()",
    "operators over capacity now": """
        select count(*) from chatdesk.operator_load where assigned_chats > max_concurrent_chats""",
    "chats whose state differs from their last logged event": """
        select count(*) from chatdesk.chats c
         where c.chat_state <> (select e.to_state from chatdesk.chat_events e where e.chat_id = c.id order by e.id desc limit 1)""",
    "duplicate (chat, sender, client_message_id) messages": """
        select count(*) from (select 1 from chatdesk.messages where client_message_id is not null
                               group by chat_id, sender_type, handled_by_operator_id, client_message_id
                               having count(*) > 1) d""",
    "conversations answered before they were queued, or closed before their first answer": """
        select count(*) from chatdesk.conversations
         where first_response_at < queued_at or closed_at < coalesce(first_response_at, queued_at)""",
    "assigned chats without an operator, or unassigned chats with one": """
        select count(*) from chatdesk.chats where (chat_state = 'assigned') <> (assigned_operator_id is not null)""",
}


def simulate(conn: psycopg.Connection, cfg: DemoConfig, report_file: str | None = None) -> dict:
    """Run the day, roll it up, and return everything the report shows."""
    # A demo day is not worth an fsync per statement.
    conn.execute("set synchronous_commit = off")
    sim = Simulation(conn, cfg)
    sim.setup()
    # A reader follows the feed while the day runs, as an operator console
    # would: wall-clock time from each message's commit to its delivery.
    delivered_at: dict[int, float] = {}
    info = conn.info
    reader = Feed(make_conninfo(info.dsn, **({"password": info.password} if info.password else {})),
                  conn.execute("select chatdesk.feed_position()").fetchone()[0], poll=0.2)
    follower = threading.Thread(target=lambda: delivered_at.update(
        (c.message_id, wall_clock()) for c in reader if c.kind == "message"), daemon=True)
    follower.start()
    sim.run()
    # until the reader has seen every message of the day (10 s at most), so
    # the latency covers them all, the same count on every run of a seed
    deadline = wall_clock() + 10
    while wall_clock() < deadline and not all(m in delivered_at for m in list(sim.committed_at)):
        sleep(0.05)
    reader.stop()
    follower.join(timeout=10)
    latencies = sorted((delivered_at[m] - t) * 1000 for m, t in sim.committed_at.items() if m in delivered_at)
    rows = conn.execute("select chatdesk.rollup_operator_stats(%s)", (cfg.day,)).fetchone()[0]
    t = sim.tally
    stats = conn.execute(
        """select o.name, o.max_concurrent_chats, s.messages_sent, s.chats_handled,
                  s.reply_time_p50_seconds, s.reply_time_p90_seconds
             from chatdesk.operator_daily_stats s join chatdesk.operators o on o.id = s.operator_id
            where s.stat_date = %s order by s.messages_sent desc, o.name""", (cfg.day,)).fetchall()
    per_hour = dict(conn.execute(
        """select extract(hour from created_at at time zone %s)::int, count(*)
             from chatdesk.messages group by 1 order by 1""", (cfg.zone,)).fetchall())
    violations = {name: conn.execute(query).fetchone()[0] for name, query in INVARIANTS.items()}
    feed = read_feed(conn)
    feed["latency_ms"] = {"p50": round(latencies[len(latencies) // 2], 1) if latencies else None,
                          "p99": round(latencies[int(0.99 * (len(latencies) - 1))], 1) if latencies else None,
                          "measured": len(latencies)}
    violations["changes the feed did not deliver exactly once"] = abs(feed["written"] - feed["delivered"])
    violations["chats whose feed sequence has a gap"] = feed["chats_with_gaps"]
    violations["operators seen over capacity during the day"] = t.over_capacity_seen
    violations["retried messages that got a new id"] = t.retries - t.retry_ids_matched
    violations["races where the chat did not stay with the operator"] = t.races - t.races_kept_assigned
    times = {metric: [float(v) if v is not None else None for v in row] for metric, *row in conn.execute(
        """select metric, sum(n), round(sum(avg_seconds * n) / nullif(sum(n), 0), 1)
             from chatdesk.operator_daily_times
            where stat_date = %s and clock = %s group by metric""", (cfg.day, "business"))}
    if report_file:
        from chatdesk import report as reports
        from chatdesk import report_output
        report_output.write_file(conn, reports.Range(cfg.day, cfg.day), "html", report_file)
    totals = conn.execute(
        """select (select count(*) from chatdesk.messages), (select count(*) from chatdesk.chats),
                  (select count(*) from chatdesk.chat_events where reason = 'idle')""").fetchone()
    return {
        "day": cfg.day.isoformat(), "time_zone": cfg.zone, "seed": cfg.seed,
        "operators": cfg.operators, "users": cfg.users,
        "messages": totals[0], "chats": totals[1], "stats_rows": rows,
        "claims": t.claims, "retries": t.retries, "races": t.races, "idle_releases": totals[2],
        "capacity_refusals": t.capacity_refusals, "answers_refused_after_idle_release": t.not_assignee_refusals,
        "stats": [{"operator": r[0], "capacity": r[1], "messages_sent": r[2], "chats_handled": r[3],
                   "reply_p50_seconds": float(r[4]) if r[4] is not None else None,
                   "reply_p90_seconds": float(r[5]) if r[5] is not None else None} for r in stats],
        "business_times": {m: {"n": int(v[0]), "avg_seconds": v[1]} for m, v in sorted(times.items())},
        "report_file": report_file,
        "messages_per_hour": {str(h): n for h, n in per_hour.items()},
        "queue_depth": [(ts.astimezone(sim.tz).strftime("%H:%M"), d) for ts, d in t.queue_samples],
        "feed": feed,
        "violations": violations,
    }


def read_feed(conn: psycopg.Connection) -> dict:
    """The day as a feed reader sees it: every change read with changes_since
    in batches, from the start, against what was written."""
    cursor, delivered, seqs = None, 0, {}
    gaps = set()
    while rows := conn.execute("select cursor, chat_id, chat_seq from chatdesk.changes_since(%s, 5000)",
                               (cursor,)).fetchall():
        for cursor, chat, seq in rows:
            if seq != seqs.get(chat, 0) + 1:
                gaps.add(chat)
            seqs[chat] = seq
        delivered += len(rows)
    written = conn.execute("select count(*) from chatdesk.changes").fetchone()[0]
    return {"written": written, "delivered": delivered, "chats_with_gaps": len(gaps)}


def render(report: dict) -> str:
    """The report for people: stats table, charts, and the invariant counts."""
    out = []
    out.append(f"A day at the help desk: {report['day']} ({report['time_zone']}), seed {report['seed']}")
    out.append(f"{report['operators']} operators, {report['users']} visitors, {report['chats']} chats, "
               f"{report['messages']} messages, {report['claims']} claims, {report['idle_releases']} idle releases, "
               f"{report['retries']} client retries, {report['races']} reply races")
    out.append("")
    out.append(f"{'operator':<12} {'cap':>3} {'sent':>5} {'chats':>5} {'reply p50':>10} {'reply p90':>10}")
    for s in report["stats"]:
        p50 = f"{s['reply_p50_seconds']:.0f}s" if s["reply_p50_seconds"] is not None else "-"
        p90 = f"{s['reply_p90_seconds']:.0f}s" if s["reply_p90_seconds"] is not None else "-"
        out.append(f"{s['operator']:<12} {s['capacity']:>3} {s['messages_sent']:>5} {s['chats_handled']:>5} {p50:>10} {p90:>10}")
    business = report["business_times"]
    if business:
        out.append("In business hours (Mon-Fri 09:00-12:30, 13:30-18:00), on average: " + ", ".join(
            f"{m.replace('_', ' ')} {v['avg_seconds']:.0f}s (n={v['n']})" for m, v in business.items()))
    out.append("")
    out.append("Messages per hour")
    hours = {int(h): n for h, n in report["messages_per_hour"].items()}
    peak = max(hours.values(), default=1)
    for h in range(min(hours, default=8), max(hours, default=20) + 1):
        n = hours.get(h, 0)
        out.append(f"  {h:02d}:00 {'█' * round(40 * n / peak):<40} {n}")
    out.append("")
    depths = [d for _, d in report["queue_depth"]]
    top = max(depths, default=0) or 1
    by_ten = [max(depths[i:i + 10]) for i in range(0, len(depths), 10)]
    line = "".join(SPARKS[min(len(SPARKS) - 1, round((len(SPARKS) - 1) * d / top))] for d in by_ten)
    first, last = (report["queue_depth"][0][0], report["queue_depth"][-1][0]) if depths else ("", "")
    out.append(f"Queue depth, every 10 minutes (max {max(depths, default=0)})")
    out.append(f"  {first} {line} {last}")
    out.append("")
    feed = report["feed"]
    latency = feed["latency_ms"]
    out.append(f"The change feed: {feed['written']} changes written, {feed['delivered']} delivered to a reader "
               f"following it from the start, in order; from commit to a live reader, p50 {latency['p50']} ms, "
               f"p99 {latency['p99']} ms (over {latency['measured']} messages)")
    if report["report_file"]:
        out.append("")
        out.append(f"The HTML report of the day (charts, open it in a browser): {report['report_file']}")
    out.append("")
    out.append("The rules held:")
    for name, count in report["violations"].items():
        out.append(f"  {'ok  ' if count == 0 else 'FAIL'} {count:>3}  {name}")
    return "\n".join(out)
