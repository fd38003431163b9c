"""Small helpers shared by the Python tests."""

from __future__ import annotations

import os
import subprocess
import sys

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

