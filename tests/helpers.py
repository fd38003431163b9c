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
