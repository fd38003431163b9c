"""Drift: migrations plus sql/ must produce exactly the committed snapshots.

Every schema change then shows up in review as a diff of tests/schema.pgdump
(pg_dump's text, exact, compared on PostgreSQL 15) and tests/schema.catalog
(the catalog's description, the same on every major version, compared on
each). After a deliberate change: `make schema-snapshot`, and commit the diff.
"""

from __future__ import annotations

import os

from chatdesk import migrate
from conftest import ROOT
from helpers import catalog_schema, normalised_schema

PGDUMP_SNAPSHOT = ROOT / "tests" / "schema.pgdump"
CATALOG_SNAPSHOT = ROOT / "tests" / "schema.catalog"


def compare(actual: str, snapshot) -> None:
    if os.environ.get("CHATDESK_UPDATE_SNAPSHOT"):
        snapshot.write_text(actual)
    assert actual == snapshot.read_text(), (
        f"schema drifted from tests/{snapshot.name}: run `make schema-snapshot` and review the diff")


def test_pg_dump_snapshot(db_url):
    compare(normalised_schema(db_url), PGDUMP_SNAPSHOT)


def test_catalog_snapshot(db_url):
    compare(catalog_schema(db_url), CATALOG_SNAPSHOT)


def test_migrating_again_changes_nothing(db_url):
    before = catalog_schema(db_url)
    result = migrate.migrate(db_url, echo=lambda *a, **k: None, reload_all=True)
    assert result.applied == []
    assert catalog_schema(db_url) == before
