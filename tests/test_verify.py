"""`chatdesk verify`: drift is reported, exit 1, and repaired."""

from __future__ import annotations

import json

import psycopg
from helpers import run_cli


def test_verify_reports_drift_and_repairs_it(db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        user = conn.execute("select chatdesk.create_real_user('u')").fetchone()[0]
        conn.execute("update chatdesk.settings set value = '100' where key = 'max_open_chats_per_user'")  # one user, many chats
        chat = conn.execute("select chatdesk.start_chat(%s)", (user,)).fetchone()[0]
        conn.execute("select chatdesk.send_user_message(%s, 'hi')", (chat,))
    clean = run_cli("--database-url", db_url, "verify")
    assert clean.returncode == 0 and clean.stdout.strip() == "All counters equal their recounts."
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("update chatdesk.chats set message_count = 7 where id = %s", (chat,))
    drift = run_cli("--database-url", db_url, "verify", "--json")
    assert drift.returncode == 1
    assert json.loads(drift.stdout)["drift"] == [
        {"object": "chat", "id": str(chat), "counter": "message_count", "stored": "7", "actual": "1"}]
    repaired = run_cli("--database-url", db_url, "verify", "--repair")
    assert repaired.returncode == 0 and "Repaired 1 counters." in repaired.stdout
    assert run_cli("--database-url", db_url, "verify").returncode == 0
