"""Drift: migrations plus sql/ must produce exactly the committed snapshots.

Every schema change then shows up in review as a diff of docs/schema.sql
(pg_dump's text, exact, compared on PostgreSQL 15: also the one readable
description of the current schema, for people) and tests/schema.catalog
(the catalog's description, the same on every major version, compared on
each). After a deliberate change: `make schema-snapshot`, and commit the diff.
"""

from __future__ import annotations

import os

from chatdesk import migrate
from conftest import ROOT
from helpers import catalog_schema, normalised_schema

PGDUMP_SNAPSHOT = ROOT / "docs" / "schema.sql"
SCHEMA_HEADER = """-- chatdesk's schema, as `chatdesk migrate` leaves a database: every table,
-- index, function, trigger, policy and grant, in pg_dump's words. Read the
-- current design here rather than in the migrations. Generated (make
-- schema-snapshot); tests/test_schema.py fails when it differs from what the
-- migrations and sql/ make.

"""
CATALOG_SNAPSHOT = ROOT / "tests" / "schema.catalog"


def compare(actual: str, snapshot) -> None:
    if os.environ.get("CHATDESK_UPDATE_SNAPSHOT"):
        snapshot.write_text(actual)
    assert actual == snapshot.read_text(), (
        f"schema drifted from {snapshot.relative_to(ROOT)}: run `make schema-snapshot` and review the diff")


def test_pg_dump_snapshot(db_url):
    compare(SCHEMA_HEADER + normalised_schema(db_url), PGDUMP_SNAPSHOT)


def test_catalog_snapshot(db_url):
    compare(catalog_schema(db_url), CATALOG_SNAPSHOT)


def test_migrating_again_changes_nothing(db_url):
    before = catalog_schema(db_url)
    result = migrate.migrate(db_url, echo=lambda *a, **k: None, reload_all=True)
    assert result.applied == []
    assert catalog_schema(db_url) == before


def test_a_new_database_has_the_contracts_default_settings(db_url):
    """docs/contract.md, settings: the defaults a new database starts with.
    (The pgTAP files cannot check them: they run on databases whose settings
    someone may have changed, and put the defaults back for their transaction.)"""
    import psycopg
    with psycopg.connect(db_url) as conn:
        settings = dict(conn.execute("select key, value from chatdesk.settings"))
    assert settings == {"stats_time_zone": "UTC", "max_open_chats_per_user": "3",
                        "first_response_target": "5 minutes", "feed_retention": "7 days"}
