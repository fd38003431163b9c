"""`chatdesk bench` sections for web callers (#23): what each call a browser
can make costs among N and then 10 N rows of other people, and a thousand
visitors polling the feed while messages are written.

Each call is made the way PostgREST makes it: one transaction, the role and
the JWT claims set locally, the statement. Other people's rows are written
raw (triggers off): only their number and shape matter to the planner.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
import uuid

import psycopg

# What a browser reads, by who reads it. Named so the report says what grew.
WEB_CALLS = (
    ("visitor", "feed poll from now", "select count(*) from chatdesk.changes_since(%(position)s, 100)"),
    ("visitor", "feed from the oldest kept", "select count(*) from chatdesk.changes_since(null, 100)"),
    ("operator", "feed poll from now", "select count(*) from chatdesk.changes_since(%(position)s, 100)"),
    ("visitor", "feed position", "select chatdesk.feed_position()"),
    ("visitor", "messages, no filter", "select count(*) from (select id, body from chatdesk.messages) m"),
    ("visitor", "last 20 messages of a chat",
     "select count(*) from (select id, body from chatdesk.messages where chat_id = %(chat)s"
     " order by id desc limit 20) m"),
    ("operator", "chat_events, no filter", "select count(*) from (select id, to_state from chatdesk.chat_events) e"),
    ("operator", "chats, no filter", "select count(*) from chatdesk.chats"),
    ("operator", "real_users, no filter", "select count(*) from (select id, display_name from chatdesk.real_users) u"),
    ("visitor", "chat_operators", "select count(*) from chatdesk.chat_operators"),
    ("unknown", "messages, no filter", "select count(*) from (select id, body from chatdesk.messages) m"),
)


def web_request(conn: psycopg.Connection, login, sql: str, params: dict) -> None:
    """One PostgREST request: the role and claims for this transaction only."""
    with conn.transaction():
        conn.execute("select set_config('role', 'chatdesk_web', true), set_config('request.jwt.claims', %s, true)",
                     (json.dumps({"sub": str(login), "role": "authenticated"}),))
        conn.execute(sql, params).fetchall()


def median_ms(conninfo: str, login, sql: str, params: dict, calls: int) -> float:
    """Median milliseconds of one web request, after a warm-up."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for _ in range(10):
            web_request(conn, login, sql, params)
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            web_request(conn, login, sql, params)
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def web_cast(conn: psycopg.Connection) -> dict:
    """A visitor with a web login whose chat an operator with a web login
    holds, with 20 messages: the caller's own rows among everyone's."""
    ids = {"visitor_login": uuid.uuid4(), "operator_login": uuid.uuid4()}
    ids["operator"] = conn.execute("select chatdesk.create_operator('web bench op', 10, %s)",
                                   (ids["operator_login"],)).fetchone()[0]
    ids["visitor"] = conn.execute("select chatdesk.create_real_user('web bench visitor', %s)",
                                  (ids["visitor_login"],)).fetchone()[0]
    chat = conn.execute("select chatdesk.start_chat(%s)", (ids["visitor"],)).fetchone()[0]
    conn.execute("select chatdesk.send_user_message(%s, 'hello ' || g) from generate_series(1, 10) g", (chat,))
    conn.execute("""update chatdesk.chats set chat_state = 'assigned', state_reason = 'claim',
                           assigned_operator_id = %s where id = %s""", (ids["operator"], chat))
    # seen: the first message, so each answer finds a newer one and the chat stays held
    conn.execute("""select chatdesk.send_operator_message(%s, %s, 'hi ' || g, null,
                                                          (select min(id) from chatdesk.messages where chat_id = %s))
                      from generate_series(1, 10) g""", (chat, ids["operator"], chat))
    ids["chat"] = chat
    return ids


def load_others(conn: psycopg.Connection, first: int, n: int) -> None:
    """n rows of other people in each of the feed, messages and chat events
    (n / 10 chats of n / 100 visitors, a third held by 100 operators), raw."""
    chats = max(n // 10, 1)
    conn.execute("set session_replication_role = replica")
    try:
        conn.execute("""insert into chatdesk.real_users (id, display_name)
                        select gen_random_uuid(), 'web bench other' from generate_series(1, %s)""",
                     (max(n // 100, 1),))
        conn.execute("""insert into chatdesk.operators (name)
                        select 'web bench other op' from generate_series(1, 100)""")
        conn.execute("""insert into chatdesk.chats (id, real_user_id, chat_state, assigned_operator_id, created_at)
                        select gen_random_uuid(), u.a[1 + g %% cardinality(u.a)],
                               case when g %% 3 = 0 then 'assigned' else 'closed' end,
                               case when g %% 3 = 0 then o.a[1 + g %% cardinality(o.a)] end, now()
                          from generate_series(1, %s) g,
                               (select array_agg(id) as a from chatdesk.real_users
                                 where display_name = 'web bench other') u,
                               (select array_agg(id) as a from chatdesk.operators
                                 where name = 'web bench other op') o""", (chats,))
        conn.execute("""create temp table if not exists other_chats as
                        select id, real_user_id, assigned_operator_id from chatdesk.chats where false""")
        conn.execute("truncate other_chats")
        conn.execute("""insert into other_chats select id, real_user_id, assigned_operator_id from chatdesk.chats c
                         where c.real_user_id in (select id from chatdesk.real_users
                                                   where display_name = 'web bench other')
                         order by random() limit %s""", (chats,))
        per_chat = max(n // chats, 1)
        conn.execute("""insert into chatdesk.messages (id, chat_id, sender_type, body, created_at)
                        select nextval('chatdesk.messages_id_seq'), c.id, 'real_user', 'someone else', now()
                          from other_chats c, generate_series(1, %s)""", (per_chat,))
        conn.execute("""insert into chatdesk.chat_events (chat_id, from_state, to_state, operator_id, reason, created_at)
                        select c.id, 'waiting_assignment', 'assigned', c.assigned_operator_id, 'claim', now()
                          from other_chats c, generate_series(1, %s)""", (per_chat,))
        conn.execute("""insert into chatdesk.changes (tx, chat_id, chat_seq, kind, message_id, chat_state,
                                                      operator_id, real_user_id, created_at)
                        select (3 + (%s + g) / 100)::text::xid8, c.id, g, 'message', null, 'assigned',
                               c.assigned_operator_id, c.real_user_id, now()
                          from other_chats c, generate_series(1, %s) g""", (first, per_chat))
    finally:
        conn.execute("set session_replication_role = origin")
    conn.execute("vacuum analyze")


def web_calls_ms(conn: psycopg.Connection, conninfo: str, cast: dict, calls: int) -> dict[tuple[str, str], float]:
    logins = {"visitor": cast["visitor_login"], "operator": cast["operator_login"], "unknown": uuid.uuid4()}
    position = conn.execute("select chatdesk.feed_position()").fetchone()[0]
    params = {"position": position, "chat": cast["chat"]}
    return {(who, what): median_ms(conninfo, logins[who], sql, params, calls) for who, what, sql in WEB_CALLS}


def web_section(b) -> None:
    """Each web call among N rows of other people, then 10 N: milliseconds,
    and the growth. Targets: under 5 ms, and at most 1.5x at 10 N."""
    from chatdesk.bench import Row

    conn, conninfo, scale, options, workdir, report, say = b.unpack()
    cast = web_cast(conn)
    n = scale.web_rows
    say(f"web calls: {n:,} rows of other people ...")
    load_others(conn, 0, n)
    small = web_calls_ms(conn, conninfo, cast, scale.web_calls)
    say(f"web calls: {10 * n:,} rows of other people ...")
    load_others(conn, n, 9 * n)
    large = web_calls_ms(conn, conninfo, cast, scale.web_calls)
    for who, what, _ in WEB_CALLS:
        one, ten = small[(who, what)], large[(who, what)]
        growth = ten / one
        report.rows.append(Row("web call", f"{who}: {what}", 1, avg_ms=ten, ratio=growth,
                               note=f"{one:.2f} -> {ten:.2f} ms at {n:,} -> {10 * n:,} rows of others; "
                                    "growth, target <= 1.5; < 5 ms"))
        report.checks[f"web {who} {what}: flat within 1.5x at 10x"] = growth <= 1.5 or ten - one < 0.2
        report.checks[f"web {who} {what}: under 5 ms"] = ten < 5
        say(f"  {who}, {what}: {one:.2f} -> {ten:.2f} ms")


def web_load_section(b) -> None:
    """A thousand visitors poll changes_since once a second, with many
    changes kept, while messages are written at a steady rate: the polls'
    p50/p99, and the writes achieved against the same run without pollers.
    Targets: poll p99 < 20 ms; writes >= 0.9 of the run without pollers."""
    from chatdesk.bench import Row

    conn, conninfo, scale, options, workdir, report, say = b.unpack()
    visitors = scale.pollers
    say(f"web load: {scale.load_changes:,} changes kept, {visitors} visitors ...")
    load_others(conn, 10**9, scale.load_changes)
    logins = [uuid.uuid4() for _ in range(visitors)]
    chats = [r[0] for r in conn.execute(
        """select chatdesk.start_chat(chatdesk.create_real_user('polling visitor', l))
             from unnest(%s::uuid[]) l""", (logins,))]
    conn.execute("vacuum analyze")

    def write(rate: float, seconds: float, out: list) -> None:
        with psycopg.connect(conninfo, autocommit=True, options=options) as writer:
            start, sent = time.perf_counter(), 0
            while (elapsed := time.perf_counter() - start) < seconds:
                if sent < elapsed * rate:
                    writer.execute("select chatdesk.send_user_message(%s, 'still there?')", (chats[sent % len(chats)],))
                    sent += 1
                else:
                    time.sleep(0.0005)
            out.append(sent / (time.perf_counter() - start))

    def poll(mine: list[int], seconds: float, stop: threading.Event, latencies: list) -> None:
        with psycopg.connect(conninfo, autocommit=True) as c:
            position = c.execute("select chatdesk.feed_position()").fetchone()[0]
            cursors = {i: position for i in mine}
            start = time.perf_counter()
            rounds = 0
            while not stop.is_set() and time.perf_counter() - start < seconds:
                for i in mine:
                    began = time.perf_counter()
                    with c.transaction():
                        c.execute("select set_config('role', 'chatdesk_web', true), "
                                  "set_config('request.jwt.claims', %s, true)",
                                  (json.dumps({"sub": str(logins[i]), "role": "authenticated"}),))
                        rows = c.execute("select cursor from chatdesk.changes_since(%s, 100)", (cursors[i],)).fetchall()
                    if rows:
                        cursors[i] = rows[-1][0]
                    latencies.append(time.perf_counter() - began)
                rounds += 1
                # once a second each (a round that ran late starts the next at once)
                time.sleep(max(0.0, start + rounds - time.perf_counter()))

    seconds = scale.seconds
    alone: list = []
    write(scale.load_rate, seconds, alone)
    latencies: list = []
    written: list = []
    stop = threading.Event()
    threads = [threading.Thread(target=poll, args=(list(range(t, visitors, scale.poll_threads)), seconds + 2, stop,
                                                   latencies))
               for t in range(scale.poll_threads)]
    for t in threads:
        t.start()
    time.sleep(1)  # the pollers at their pace first
    write(scale.load_rate, seconds, written)
    stop.set()
    for t in threads:
        t.join()
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    polls_per_second = len(latencies) / (seconds + 1)
    ratio = written[0] / alone[0]
    report.rows.append(Row("web load", f"{visitors} visitors polling changes_since, {scale.load_changes:,} changes kept",
                           visitors, tps=polls_per_second, avg_ms=p50, p99_ms=p99,
                           note="polls/s; p99 target < 20 ms"))
    report.rows.append(Row("web load", f"messages written at {scale.load_rate}/s while they poll", 1,
                           tps=written[0], ratio=ratio,
                           note=f"{alone[0]:.0f}/s without pollers; ratio target >= 0.9"))
    report.checks["web load: poll p99 under 20 ms"] = p99 < 20
    report.checks["web load: writes >= 0.9 of the run without pollers"] = ratio >= 0.9
    say(f"  polls: {polls_per_second:.0f}/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms; "
        f"writes {written[0]:.0f}/s against {alone[0]:.0f}/s alone")
