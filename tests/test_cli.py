"""The command line as a whole: one `Error:` line for bad input, help and version."""

from __future__ import annotations

import pytest
from helpers import assert_one_error_line, run_cli


@pytest.mark.parametrize(
    "args",
    [
        ["--database-url", "postgresql://nobody@127.0.0.1:1/nowhere", "migrate"],
        ["--database-url", "this is not a url", "status"],
        ["--database-url", "postgresql://nobody@127.0.0.1:1/nowhere", "verify"],
        ["no-such-command"],
    ],
)
def test_bad_input_is_one_error_line(args):
    assert_one_error_line(run_cli(*args))


def test_help_and_version():
    assert run_cli("--version").stdout.startswith("chatdesk, version ")
    helped = run_cli("-h")
    assert helped.returncode == 0 and "migrate" in helped.stdout and "DATABASE_URL" in helped.stdout
