"""`chatdesk bench --only delivery` (#26): chatdesk serve under a thousand
subscribers. A real `chatdesk serve` (uvicorn) in its own process, and real
HTTP clients streaming /feed in this one (httpx, one asyncio loop):

- delivery: from a message's commit to its subscriber's receipt, p50 and p99,
  at 200 and at 1,000 changes a second (target: p99 < 100 ms at 200/s);
- load: the server's reads of the database per second, idle and under load
  (one per wake-up, whatever the number of subscribers), and its memory per
  subscriber;
- ingest: messages per second written as fast as 8 writers can, with the
  subscribers connected against without them, all on this machine; and the
  database's CPU spent for chatdesk serve meanwhile (target: it leaves
  >= 0.9 of the database to ingest).

The latency is measured from just before the writing call (an upper bound by
the call's own time, about half a millisecond) to the event's arrival.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg

SECRET = "chatdesk-bench-secret-0123456789abcdef"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Clients:
    """N SSE streams in one asyncio loop on a thread of their own; records
    each message's delivery latency by its client id."""

    def __init__(self, base: str, tokens: list[str]):
        self.base, self.tokens = base, tokens
        self.sent: dict[str, float] = {}
        self.latencies: list[float] = []
        self.received = 0
        self.connected = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.tasks: list = []

    async def _stream(self, client, bearer: str, opened: asyncio.Event) -> None:
        from httpx_sse import aconnect_sse

        async with aconnect_sse(client, "GET", f"{self.base}/feed", headers={"Authorization": f"Bearer {bearer}"}) \
                as source:
            source.response.raise_for_status()
            self.connected += 1
            opened.set()
            async for sse in source.aiter_sse():
                if sse.event != "change":
                    continue
                now = time.perf_counter()
                self.received += 1
                message = json.loads(sse.data).get("message")
                if message and message["client_message_id"] in self.sent:
                    self.latencies.append(now - self.sent[message["client_message_id"]])

    async def _open_all(self) -> None:
        import httpx

        self.client = httpx.AsyncClient(timeout=httpx.Timeout(30, read=None),
                                        limits=httpx.Limits(max_connections=None, max_keepalive_connections=None))
        for i in range(0, len(self.tokens), 50):  # 50 at a time, as browsers arrive
            events = []
            for bearer in self.tokens[i:i + 50]:
                opened = asyncio.Event()
                events.append(opened)
                self.tasks.append(asyncio.ensure_future(self._stream(self.client, bearer, opened)))
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 60)

    def open(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._open_all(), self.loop).result(300)

    def close(self) -> None:
        async def shut() -> None:
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            await self.client.aclose()
        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


WRITER = "chatdesk bench writer"


def _backend_cpu_ns(conn: psycopg.Connection, application_name: str) -> int:
    """CPU time so far of the server processes serving connections named
    application_name (/proc/PID/schedstat; the server runs on this machine)."""
    total = 0
    for (pid,) in conn.execute("select pid from pg_stat_activity where application_name = %s", (application_name,)):
        try:
            total += int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
        except (OSError, ValueError):
            pass
    return total


def _write(conninfo: str, options: str, chats: list, rate: float | None, seconds: float, sent: dict | None,
           writers: int, on_started=None) -> float:
    """Messages per second written by `writers` threads, at `rate` in all (None: as fast as they can)."""
    counts = [0] * writers

    def writer(w: int) -> None:
        with psycopg.connect(conninfo, autocommit=True, options=options, application_name=WRITER) as conn:
            ready.wait()
            start = time.perf_counter()
            n = 0
            while (elapsed := time.perf_counter() - start) < seconds:
                if rate is not None and elapsed < (n * writers + w) / rate:
                    time.sleep(0.0005)  # message k is due at k / rate: evenly spread, writers interleaved
                    continue
                cid = f"w{w}-{n}-{uuid.uuid4().hex[:6]}"
                if sent is not None:
                    sent[cid] = time.perf_counter()
                conn.execute("select chatdesk.send_user_message(%s, 'are you there?', %s)",
                             (chats[(n * writers + w) % len(chats)], cid))
                n += 1
            counts[w] = n

    ready = threading.Event()
    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    time.sleep(0.5)  # every writer connected
    if on_started:
        on_started()
    began = time.perf_counter()
    ready.set()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - began)


def delivery_section(b) -> None:
    import httpx
    import jwt

    from chatdesk.bench import Row

    conn, conninfo, scale, options, workdir, report, say = b.unpack()
    n = scale.subscribers
    say(f"delivery: chatdesk serve with {n} subscribers ...")
    conn.execute("insert into chatdesk.settings (key, value) values ('max_open_chats_per_user', '100') "
                 "on conflict (key) do update set value = excluded.value")
    logins = [uuid.uuid4() for _ in range(n)]
    chats = [r[0] for r in conn.execute(
        """select chatdesk.start_chat(chatdesk.create_real_user('subscriber', l)) from unnest(%s::uuid[]) l""",
        (logins,))]
    conn.execute("select chatdesk.send_user_message(c, 'hello') from unnest(%s::uuid[]) c", (chats,))
    conn.execute("vacuum analyze")
    tokens = [jwt.encode({"sub": str(login), "aud": "authenticated", "exp": int(time.time()) + 86400},
                         SECRET, algorithm="HS256") for login in logins]

    ingest_alone = _write(conninfo, options, chats, None, scale.seconds, None, 8)

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    chatdesk = str(Path(sys.executable).with_name("chatdesk"))
    server = subprocess.Popen([chatdesk, "serve", "--port", str(port), "--database-url", conninfo],
                              env={**os.environ, "CHATDESK_JWT_SECRET": SECRET},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    clients = None
    try:
        deadline = time.time() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.time() > deadline or server.poll() is not None:
                raise RuntimeError("chatdesk serve did not start")
            time.sleep(0.2)
        rss_before = _rss_kib(server.pid)
        clients = Clients(base, tokens)
        clients.open()
        time.sleep(2)
        per_subscriber_kib = (_rss_kib(server.pid) - rss_before) / n

        def reads() -> int:
            return httpx.get(f"{base}/healthz", timeout=5).json()["reads"]

        idle_seconds = 5.0
        before = reads()
        time.sleep(idle_seconds)
        idle_reads = (reads() - before) / idle_seconds
        say(f"  {clients.connected} subscribers; {per_subscriber_kib:.0f} KiB each; idle: {idle_reads:.1f} reads/s")
        report.rows.append(Row("delivery", f"{n} subscribers connected, idle", n, tps=idle_reads,
                               note=f"server reads/s; {per_subscriber_kib:.0f} KiB of memory per subscriber"))

        for rate in scale.delivery_rates:
            clients.latencies.clear()
            before = reads()
            achieved = _write(conninfo, options, chats, rate, scale.seconds, clients.sent, 4)
            time.sleep(1)  # the last ones arrive
            load_reads = (reads() - before) / (scale.seconds + 1)
            lat = sorted(clients.latencies)
            expected = achieved * scale.seconds
            p50 = statistics.median(lat) * 1000 if lat else float("nan")
            p99 = lat[int(len(lat) * 0.99)] * 1000 if lat else float("nan")
            report.rows.append(Row("delivery", f"commit to a subscriber's receipt at {rate} changes/s", n,
                                   tps=achieved, avg_ms=p50, p99_ms=p99,
                                   note=f"p50 in the avg column; {len(lat)} of ~{expected:.0f} received; "
                                        f"{load_reads:.1f} server reads/s"))
            if rate == 200:
                report.checks["delivery: p99 < 100 ms at 200 changes/s"] = p99 < 100
            say(f"  {rate}/s (achieved {achieved:.0f}/s): p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
                f"{len(lat)} delivered, {load_reads:.1f} reads/s")

        # The same ingest with the subscribers connected. Everything shares
        # this machine's two cores: the database, the writers, chatdesk
        # serve and the thousand clients (in a deployment the last two run
        # elsewhere). So also the database's own share: the CPU its
        # processes spent for chatdesk serve in those seconds, of all the
        # machine had.
        cpu = {}

        def started() -> None:
            cpu["serve"] = _backend_cpu_ns(conn, "chatdesk serve")

        ingest_with = _write(conninfo, options, chats, None, scale.seconds, None, 8, on_started=started)
        serve_ns = _backend_cpu_ns(conn, "chatdesk serve") - cpu["serve"]
        ratio = ingest_with / ingest_alone
        report.rows.append(Row("delivery", f"ingest with {n} subscribers, all on one machine", 8, tps=ingest_with,
                               ratio=ratio,
                               note=f"{ingest_alone:.0f}/s without them; the database, chatdesk serve and the "
                                    f"{n} clients share its cores"))
        say(f"  ingest: {ingest_with:.0f}/s with them, {ingest_alone:.0f}/s without ({ratio:.2f}, one machine)")
        serve_share = serve_ns / (scale.seconds * 1e9 * (os.cpu_count() or 1))
        report.rows.append(Row("delivery", f"the database's CPU spent serving {n} subscribers during that ingest", 1,
                               ratio=1 - serve_share,
                               note=f"{serve_ns / 1e9:.2f} CPU-s of {scale.seconds:.0f} s on {os.cpu_count()} cores "
                                    f"({serve_share:.1%}); target >= 0.9 of the database left for ingest"))
        report.checks["delivery: the database keeps >= 0.9 of its CPU for ingest with subscribers"] = \
            1 - serve_share >= 0.9
        say(f"  the database's processes for chatdesk serve: {serve_ns / 1e9:.2f} CPU-s in {scale.seconds:.0f} s "
            f"({serve_share:.1%} of the machine)")
    finally:
        if clients is not None:
            clients.close()
        server.terminate()
        server.wait(20)
