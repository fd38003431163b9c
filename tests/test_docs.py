"""The documentation agrees with the code: the README's command table with
`--help`, and docs/contract.md names what the database has."""

from __future__ import annotations

import re

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
