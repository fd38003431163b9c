"""Where the package's SQL lives: sql/, migrations/ and tests/pgtap/ ship inside
the package as chatdesk/sql, chatdesk/migrations and chatdesk/pgtap (links to
the top-level folders in the source tree; see pyproject.toml)."""

from __future__ import annotations

import re
from importlib.resources import as_file, files
from pathlib import Path


def _dir(name: str) -> Path:
    # Plain files on disk in every install chatdesk supports (wheel,
    # editable); as_file would extract them from a zipped install.
    with as_file(files("chatdesk") / name) as path:
        return Path(path)


def sql_dir() -> Path:
    return _dir("sql")


def migrations_dir() -> Path:
    return _dir("migrations")


def pgtap_dir() -> Path:
    return _dir("pgtap")


def pgtap_helpers() -> Path:
    """The chatdesk_test schema the pgTAP files use (tests/pgtap_helpers.sql)."""
    return _dir("pgtap_helpers.sql")


_INCLUDE = re.compile(r"^\\ir\s+(\S+)\s*$")


def sql_files() -> list[Path]:
    """The sql/ files in the order sql/load.sql gives (its \\ir lines)."""
    base = sql_dir()
    files_ = []
    for line in (base / "load.sql").read_text().splitlines():
        match = _INCLUDE.match(line.strip())
        if match:
            files_.append(base / match.group(1))
    return files_
