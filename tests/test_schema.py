"""Drift: migrations plus sql/ must produce exactly the committed snapshot.

Every schema change then shows up in review as a diff of tests/schema.pgdump.
After a deliberate change: `make schema-snapshot`, and commit the diff.
"""

from __future__ import annotations

import os

from chatdesk import migrate
from conftest import ROOT
from helpers import normalised_schema

SNAPSHOT = ROOT / "tests" / "schema.pgdump"


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
