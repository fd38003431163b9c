"""Drift: migrations plus sql/ must produce exactly the committed snapshot.

Every schema change then shows up in review as a diff of tests/schema.pgdump.
After a deliberate change: `make schema-snapshot`, and commit the diff.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess

from conftest import ROOT
from chatdesk import migrate

SNAPSHOT = ROOT / "tests" / "schema.pgdump"


def pg_dump_binary() -> str:
    # The throwaway server is the newest installed major; pg_dump must match it.
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_dump"), key=lambda p: int(p.split("/")[4]))
    return candidates[-1] if candidates and not os.environ.get("CHATDESK_TEST_DATABASE_URL") else shutil.which("pg_dump")


def normalised_schema(conninfo: str) -> str:
    """pg_dump --schema-only of the chatdesk schema, without comments, SETs or blank-line noise."""
    dump = subprocess.run(
        [pg_dump_binary(), "--schema-only", "--schema=chatdesk", "--no-owner", "--no-privileges", "-d", conninfo],
        check=True, capture_output=True, text=True,
    ).stdout
    keep = []
    for line in dump.splitlines():
        if line.startswith(("--", "SET ", "SELECT pg_catalog.set_config", "\\restrict", "\\unrestrict")):
            continue
        keep.append(line.rstrip())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(keep)).strip() + "\n"


def test_schema_matches_snapshot(db_url):
    actual = normalised_schema(db_url)
    if os.environ.get("CHATDESK_UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(actual)
    expected = SNAPSHOT.read_text()
    assert actual == expected, "schema drifted from tests/schema.pgdump: run `make schema-snapshot` and review the diff"


def test_migrating_again_changes_nothing(db_url):
    before = normalised_schema(db_url)
    result = migrate.migrate(db_url, echo=lambda *a, **k: None)
    assert result.applied == []
    assert normalised_schema(db_url) == before
