"""The benchmark's smoke run: it works end to end and no chat is claimed twice (not the speed)."""

from __future__ import annotations

import json
import os

from conftest import admin_execute
from helpers import run_cli


def test_bench_smoke_runs_and_claims_nothing_twice(pg_server):
    name = f"chatdesk_bench_{os.getpid()}"
    try:
        result = run_cli("--database-url", pg_server, "bench", "--smoke", "--bench-db", name, "--json", timeout=600)
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        workloads = {(r["workload"], r["variant"]) for r in report["rows"]}
        for workload in ("message ingest", "claim next chat", "rollup one day", "original design", "31-day backfill",
                         "CPU per message", "ladder (user message, CPU)", "message ingest, user messages",
                         "message ingest, user messages (server's synchronous_commit)",
                         "message ingest (server's synchronous_commit)"):
            assert any(w == workload for w, _ in workloads), workload
        assert ("message ingest", "what users run today (two counter triggers)") in workloads
        # the server runs on this machine: every CPU figure is there, and the growth rows
        cpu = [r for r in report["rows"] if r["workload"].startswith(("CPU per message", "ladder"))]
        assert len(cpu) >= 15 and all("µs" in r["note"] for r in cpu), cpu
        for kind in ("user", "operator"):
            for growth in ("operators", "chat length"):
                assert (("CPU per message", f"{kind} message: growth with {growth}") in workloads), (kind, growth)
        ratios = [r["ratio"] for r in report["rows"] if r["variant"] == "chatdesk"]
        assert ratios and all(r > 0 for r in ratios)
        assert report["checks"]["chats claimed twice"] == 0
        assert report["checks"]["claimed chats without exactly one claim event"] == 0
        assert report["checks"]["ingest counters drift"] == 0
        assert report["checks"]["operators over capacity"] == 0
        assert report["checks"]["the day's stats unchanged by older history"] is True
    finally:
        admin_execute(pg_server, f"drop database if exists {name} with (force)")
