"""Where the package's SQL lives: sql/, migrations/ and tests/pgtap/ ship inside the wheel."""

from __future__ import annotations

import re
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def _dir(installed: str, source: str) -> Path:
    """The folder inside an installed wheel (chatdesk/<installed>), else in the source tree."""
    for candidate in (_HERE / installed, _HERE.parent / source):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"chatdesk: cannot find its {source}/ folder next to {_HERE}")


def sql_dir() -> Path:
    return _dir("sql", "sql")


def migrations_dir() -> Path:
    return _dir("migrations", "migrations")


def pgtap_dir() -> Path:
    return _dir("pgtap", "tests/pgtap")


_INCLUDE = re.compile(r"^\\ir\s+(\S+)\s*$")


def sql_files() -> list[Path]:
    """The sql/ files in the order sql/load.sql gives (its \\ir lines)."""
    base = sql_dir()
    files = []
    for line in (base / "load.sql").read_text().splitlines():
        match = _INCLUDE.match(line.strip())
        if match:
            files.append(base / match.group(1))
    return files
