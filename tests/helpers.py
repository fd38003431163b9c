"""Small helpers shared by the Python tests."""

from __future__ import annotations

import glob
import math
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import uuid
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal

import psycopg
from chatdesk.errors import AT_CAPACITY
from conftest import ROOT


def run_cli(*args: str, env: dict | None = None, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """Run `chatdesk ARGS` in a subprocess, as a user would (DATABASE_URL removed unless given)."""
    full_env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("PG")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "chatdesk", *args],
        capture_output=True, text=True, env=full_env, timeout=timeout, cwd=ROOT, **kwargs,
    )


def assert_one_error_line(result) -> None:
    """A user's mistake: non-zero exit, an `Error:` line, no traceback."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr


def chatdesk_backends(conninfo: str, where: str = "true", timeout: float = 10.0, present: bool = True) -> list[int]:
    """Wait until chatdesk's own backends matching `where` (a pg_stat_activity
    condition) exist (present=True) or are gone (present=False); their pids.
    Fails the test after `timeout` seconds."""
    import time

    import psycopg
    import pytest

    deadline = time.monotonic() + timeout
    with psycopg.connect(conninfo, autocommit=True) as watcher:
        while True:
            pids = [r[0] for r in watcher.execute(
                f"select pid from pg_stat_activity where application_name = 'chatdesk' and ({where})")]
            if bool(pids) == present:
                return pids
            if time.monotonic() > deadline:
                pytest.fail(f"no chatdesk backend {'reached' if present else 'left'} the state: {where}")
            time.sleep(0.05)


# -- connections and threads ---------------------------------------------------------

# The invariant the reply race threatens: a chat waiting for its user while
# the user's newest message came after the last operator message.
UNANSWERED_BUT_WAITING_FOR_USER = """
    select c.id
      from chatdesk.chats c
     where c.chat_state = 'waiting_real_user_reply'
       and (select max(id) from chatdesk.messages m where m.chat_id = c.id and m.sender_type = 'real_user')
         > coalesce((select max(id) from chatdesk.messages m where m.chat_id = c.id and m.sender_type = 'operator'), 0)
"""


def connect(url):
    return psycopg.connect(url, autocommit=True, options="-c search_path=chatdesk")


def run_threads(count, target):
    errors = []

    def wrapped(index):
        try:
            target(index)
        except BaseException as error:  # surfaced below, with the thread's index
            errors.append((index, error))

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a worker hung"
    assert not errors, errors


# What must hold after any mix of concurrent traffic (search_path chatdesk).
INVARIANTS = {
    "counters equal recounts": "select count(*) from verify_counters()",
    "assigned iff an assignee": "select count(*) from chats where (chat_state = 'assigned') <> (assigned_operator_id is not null)",
    "nobody over capacity": "select count(*) from operator_load where assigned_chats > max_concurrent_chats",
    "no unanswered chat waits for its user": f"select count(*) from ({UNANSWERED_BUT_WAITING_FOR_USER}) x",
    "state equals the last event": """
        select count(*) from chats c
         where c.chat_state is distinct from
               (select e.to_state from chat_events e where e.chat_id = c.id order by e.id desc limit 1)""",
    "events chain up": """
        select count(*) from (select from_state, lag(to_state) over (partition by chat_id order by id) as prev
                                from chat_events) e
         where e.prev is not null and e.from_state is distinct from e.prev""",
    "one message per client id and sender": """
        select count(*) from (select 1 from messages where client_message_id is not null
                               group by chat_id, sender_type, handled_by_operator_id, client_message_id
                               having count(*) > 1) d""",
}


class CapacityMonitor(threading.Thread):
    """Samples every operator's load in one snapshot, over and over, while the workers run."""

    def __init__(self, url):
        super().__init__(daemon=True)
        self.url, self.stop, self.samples, self.over = url, threading.Event(), 0, []

    def run(self):
        with connect(self.url) as conn:
            while not self.stop.is_set():
                self.over += conn.execute(
                    """select l.operator_id, l.assigned_chats from operator_load l
                        where l.assigned_chats > l.max_concurrent_chats""").fetchall()
                self.samples += 1


# -- traffic for the stats tests ------------------------------------------------------

ZONE = "Europe/Berlin"
START = datetime(2026, 3, 27, 20, 0, tzinfo=timezone.utc)  # across the EU spring-forward night (Mar 29)


def percentile_cont(values, fraction):
    """PostgreSQL's percentile_cont: linear interpolation between the two nearest ranks."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def q3(value) -> Decimal:
    """Rounded as the rollup rounds: three decimals, half up."""
    return Decimal(str(value)).quantize(Decimal("0.001"), rounding=ROUND_HALF_UP)


def generate_traffic(conn, seed=7, steps=900, lifecycle=False):
    """Random users, claims and answers (fresh, stale and no seen ids), on a pinned, advancing clock.

    With `lifecycle`, chats are also closed (and reopened by their users),
    released, and taken back by idle release."""
    rng = random.Random(seed)
    conn.execute("update settings set value = %s where key = 'stats_time_zone'", (ZONE,))
    ops = [conn.execute("select create_operator(%s, 3)", (f"op{i}",)).fetchone()[0] for i in range(5)]
    conn.execute("select set_operator_active(%s, false)", (ops[4],))  # inactive, never writes
    user = conn.execute("select create_real_user('u')").fetchone()[0]
    conn.execute("update chatdesk.settings set value = '100' where key = 'max_open_chats_per_user'")  # one user, many chats
    chats = [conn.execute("select start_chat(%s)", (user,)).fetchone()[0] for _ in range(25)]
    now = START
    for _ in range(steps):
        now += timedelta(seconds=rng.randrange(1, 900))
        conn.execute("select set_config('chatdesk.clock', %s, false)", (now.isoformat(),))
        roll = rng.random()
        if lifecycle and roll > 0.88:
            if roll < 0.94:
                row = conn.execute("""select id from chats where chat_state <> 'closed'
                                      order by random() limit 1""").fetchone()
                if row:
                    conn.execute("select close_chat(%s)", row)
            elif roll < 0.98:
                row = conn.execute("""select id, assigned_operator_id from chats where chat_state = 'assigned'
                                      order by random() limit 1""").fetchone()
                if row:
                    conn.execute("select release_chat(%s, %s)", row)
            else:
                conn.execute("select release_idle_chats('20 minutes')")
        elif roll < 0.45:
            conn.execute("select send_user_message(%s, 'q')", (rng.choice(chats),))
        elif roll < 0.6:
            try:
                conn.execute("select claim_next_chat(%s)", (rng.choice(ops[:4]),))
            except psycopg.Error as error:
                assert error.sqlstate == AT_CAPACITY
        else:
            row = conn.execute("""select id, assigned_operator_id from chats where chat_state = 'assigned'
                                  order by random() limit 1""").fetchone()
            if row:
                seen = conn.execute("select min(id) from messages where chat_id = %s", (row[0],)).fetchone()[0] \
                    if rng.random() < 0.3 else None
                conn.execute("select * from send_operator_message(%s, %s, 'a', null, %s)", (row[0], row[1], seen))
    conn.execute("reset chatdesk.clock")
    return ops, now


# -- the schema as pg_dump prints it ---------------------------------------------------

def pg_dump_binary() -> str:
    # The throwaway server is the newest installed major; pg_dump must match it.
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_dump"), key=lambda p: int(p.split("/")[4]))
    return candidates[-1] if candidates and not os.environ.get("CHATDESK_TEST_DATABASE_URL") else shutil.which("pg_dump")


def normalised_schema(conninfo: str) -> str:
    """pg_dump --schema-only of the chatdesk schema, without comments, SETs or blank-line noise."""
    dump = subprocess.run(
        [pg_dump_binary(), "--schema-only", "--schema=chatdesk", "--no-owner", "--no-privileges", "-d", conninfo],
        check=True, capture_output=True, text=True,
    ).stdout
    keep = []
    for line in dump.splitlines():
        if line.startswith(("--", "SET ", "SELECT pg_catalog.set_config", "\\restrict", "\\unrestrict")):
            continue
        keep.append(line.rstrip())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(keep)).strip() + "\n"


# -- the schema as the catalog describes it, the same on PostgreSQL 15 to 18 ---------

CATALOG_DESCRIPTION = """
with ns as (select 'chatdesk'::regnamespace as oid)
select 'relation ' || c.relname || ' ' || c.relkind::text || ' rls=' || c.relrowsecurity
       || ' options=' || coalesce(array_to_string(c.reloptions, ','), '')
       -- PostgreSQL 17 gives owners MAINTAIN (m) too
       || ' acl=' || coalesce(replace(c.relacl::text, 'Dxtm/', 'Dxt/'), '')
  from pg_class c, ns where c.relnamespace = ns.oid and c.relkind in ('r', 'v', 'S', 'm')
union all
select 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || case when a.attnotnull then ' not null' else '' end
       || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '') || ' identity=' || a.attidentity::text
  from pg_attribute a join pg_class c on c.oid = a.attrelid join ns on c.relnamespace = ns.oid
  left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
 where c.relkind in ('r', 'v') and a.attnum > 0 and not a.attisdropped
union all
select 'constraint ' || c.relname || '.' || k.conname || ' ' || pg_get_constraintdef(k.oid)
  from pg_constraint k join pg_class c on c.oid = k.conrelid join ns on c.relnamespace = ns.oid
 where k.contype <> 'n'  -- PostgreSQL 18 records NOT NULL here too; attnotnull says it
union all
select 'index ' || pg_get_indexdef(i.indexrelid)
  from pg_index i join pg_class c on c.oid = i.indrelid join ns on c.relnamespace = ns.oid
union all
select 'function ' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ') '
       || pg_get_function_result(p.oid) || ' ' || p.provolatile::text || case when p.prosecdef then ' definer' else '' end
       || ' config=' || coalesce(array_to_string(p.proconfig, ','), '') || ' acl=' || coalesce(p.proacl::text, '')
       || ' owner=' || pg_get_userbyid(p.proowner) || ' body=' || md5(p.prosrc)
       || ' comment=' || coalesce(md5(obj_description(p.oid, 'pg_proc')), '')
  from pg_proc p, ns where p.pronamespace = ns.oid
union all
select 'trigger ' || pg_get_triggerdef(t.oid)
  from pg_trigger t join pg_class c on c.oid = t.tgrelid join ns on c.relnamespace = ns.oid where not t.tgisinternal
union all
select 'policy ' || c.relname || '.' || p.polname || ' ' || p.polcmd::text || ' permissive=' || p.polpermissive
       || ' to=' || (select string_agg(r.rolname, ',' order by r.rolname) from pg_roles r where r.oid = any (p.polroles))
       || ' using=' || coalesce(pg_get_expr(p.polqual, p.polrelid), '')
       || ' check=' || coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '')
  from pg_policy p join pg_class c on c.oid = p.polrelid join ns on c.relnamespace = ns.oid
order by 1
"""


def catalog_schema(conninfo: str) -> str:
    """The chatdesk schema as the catalog describes it: tables, columns,
    constraints, indexes, functions (their bodies by hash), triggers, policies
    and privileges. Unlike pg_dump's text, the same on every major version
    (view bodies, which PostgreSQL 18 prints differently, are left out)."""
    with psycopg.connect(conninfo) as conn:
        return "\n".join(r[0] for r in conn.execute(CATALOG_DESCRIPTION)) + "\n"


# -- a cast for the access tests -------------------------------------------------------

def two_operators_two_visitors(url: str) -> dict[str, str]:
    """Operators A and B and visitors V and W, each with a web login (the JWT's
    sub); A holds V's chat, B holds W's, and one chat of W's waits in the
    queue. Returns every id as text: a, b, v, w, a_login .. w_login, a_chat,
    b_chat, queued."""
    with connect(url) as conn:
        p = {k: str(uuid.uuid4()) for k in ("a_login", "b_login", "v_login", "w_login")}
        one = lambda sql, *args: str(conn.execute(sql, args).fetchone()[0])  # noqa: E731
        p["a"] = one("select create_operator('Ann', 5, %s)", p["a_login"])
        p["b"] = one("select create_operator('Bob', 5, %s)", p["b_login"])
        p["v"] = one("select create_real_user('Vic', %s)", p["v_login"])
        p["w"] = one("select create_real_user('Wes', %s)", p["w_login"])
        for chat, user, op in (("a_chat", "v", "a"), ("b_chat", "w", "b")):
            p[chat] = one("select start_chat(%s)", p[user])
            conn.execute("select send_user_message(%s, 'help')", (p[chat],))
            assert one("select claim_next_chat(%s)", p[op]) == p[chat]
        p["queued"] = one("select start_chat(%s)", p["w"])
        conn.execute("select send_user_message(%s, 'waiting')", (p["queued"],))
    return p
