"""`chatdesk demo`: a small day on the test server, the embedded path, and its safety with existing data."""

from __future__ import annotations

import json
import os

import psycopg
from conftest import admin_execute, url_for
from helpers import assert_one_error_line, run_cli

SMALL = ["--users", "60", "--operators", "6", "--json"]


def test_demo_on_a_configured_server_holds_every_rule(pg_server, tmp_path):
    name = f"chatdesk_demo_{os.getpid()}"
    html = tmp_path / "day.html"
    try:
        first = run_cli("--database-url", pg_server, "demo", "--demo-db", name, *SMALL, "--report", str(html),
                        timeout=300)
        assert first.returncode == 0, first.stderr
        report = json.loads(first.stdout)
        assert report["report_file"] == str(html) and "<title>chatdesk report 2026-03-10</title>" in html.read_text()
        assert set(report["business_times"]) == {"first_response", "reply", "resolution"}
        assert report["violations"] and all(v == 0 for v in report["violations"].values()), report["violations"]
        assert report["messages"] > 200 and report["claims"] > 30 and report["races"] > 0 and report["retries"] > 0
        assert len(report["stats"]) >= 5
        assert sum(s["messages_sent"] for s in report["stats"]) > 0
        with psycopg.connect(url_for(pg_server, name)) as conn:
            assert conn.execute("select count(*) from chatdesk.messages").fetchone()[0] == report["messages"]

        # existing data is never touched without --yes
        again = run_cli("--database-url", pg_server, "demo", "--demo-db", name, *SMALL, "--report", str(html),
                        timeout=300)
        assert_one_error_line(again)
        assert f"database {name} already exists" in again.stderr
        with psycopg.connect(url_for(pg_server, name)) as conn:
            assert conn.execute("select count(*) from chatdesk.messages").fetchone()[0] == report["messages"]

        # the same seed gives the same day
        replaced = run_cli("--database-url", pg_server, "demo", "--demo-db", name, "--yes", *SMALL,
                           "--report", str(html), timeout=300)
        assert replaced.returncode == 0, replaced.stderr
        again = json.loads(replaced.stdout)
        # the same seed, the same day; only the feed's wall-clock latencies vary, not how many were measured
        assert again["feed"]["latency_ms"]["measured"] == report["feed"]["latency_ms"]["measured"] > 0
        again["feed"].pop("latency_ms"), report["feed"].pop("latency_ms")
        assert again == report
    finally:
        admin_execute(pg_server, f"drop database if exists {name} with (force)")


def test_demo_without_a_database_runs_on_an_embedded_server(tmp_path):
    # run_cli removes DATABASE_URL and PG*: nothing is configured
    html = tmp_path / "day.html"
    result = run_cli("demo", "--users", "30", "--operators", "4", "--seed", "3", "--report", str(html), timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Starting an embedded PostgreSQL" in result.stderr
    assert "operator     cap  sent chats  reply p50  reply p90" in result.stdout
    assert "Messages per hour" in result.stdout and "Queue depth" in result.stdout
    assert "FAIL" not in result.stdout and result.stdout.count("ok     0") == 13
    assert f"The HTML report of the day (charts, open it in a browser): {html}" in result.stdout and html.exists()
