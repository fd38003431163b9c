"""The documentation agrees with the code: the README's command table with
`--help`, and docs/contract.md names what the database has."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import click
from chatdesk.cli import cli
from conftest import ROOT


def readme_commands() -> dict[str, str]:
    """The README's command table: command name -> its 'does' text."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("## The command line"):]
    table = table[:table.index("\n## ", 5)]
    rows = re.findall(r"^\| `chatdesk ([a-z-]+)[^`]*` \| (.+?) \|$", table, re.M)
    return dict(rows)


def test_the_readme_lists_every_command_with_its_help():
    documented = readme_commands()
    commands = {name: command for name, command in cli.commands.items() if not command.hidden}
    assert sorted(documented) == sorted(commands), "README command table and `chatdesk --help` differ"
    for name, command in commands.items():
        short = command.get_short_help_str(limit=200).rstrip(".")
        assert documented[name].startswith(short), f"{name}: README says {documented[name]!r}, --help says {short!r}"


def test_every_readme_option_exists():
    """Each `--option` the README names in a command's row is an option of that command."""
    for name, does in readme_commands().items():
        command = cli.commands[name]
        options = {opt for param in command.params if isinstance(param, click.Option) for opt in param.opts}
        for mentioned in re.findall(r"`(--[a-z-]+)", does):
            assert mentioned in options, f"README names {mentioned} for chatdesk {name}; it has {sorted(options)}"


def test_the_generated_pages_are_current():
    """docs/index.md, cli.md and errors.md are what docs/generate.py makes of
    the README, the CLI and errors.py (run `make docs` after changing those)."""
    result = subprocess.run([sys.executable, str(ROOT / "docs" / "generate.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_site_builds_strict(tmp_path):
    """mkdocs build --strict: a broken link, a missing anchor or a page left
    out of the nav fails."""
    mkdocs = os.path.join(os.path.dirname(sys.executable), "mkdocs")
    result = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                            capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "realtime" / "index.html").exists()


def test_the_readme_is_a_front_door():
    """At most 200 lines: what it is, the two commands, the first five minutes, links."""
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def test_every_setting_chatdesk_serve_reads_is_documented():
    """docs/realtime.md's settings table names every variable serve.py reads."""
    source = (ROOT / "runner" / "chatdesk" / "serve.py").read_text()
    read = set(re.findall(r'"(CHATDESK_[A-Z_]+)"', source))
    page = (ROOT / "docs" / "realtime.md").read_text()
    documented = set(re.findall(r"^\| `(CHATDESK_[A-Z_]+)`", page, re.M))
    assert read and read <= documented, f"not in docs/realtime.md's table: {sorted(read - documented)}"
