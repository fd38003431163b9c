"""The pgTAP suite as pytest items: one per file, each on a fresh database."""

from __future__ import annotations

import psycopg
import pytest
from chatdesk import pgtap
from conftest import PGTAP_DIR

PGTAP_FILES = sorted(PGTAP_DIR.glob("*.sql"))


def test_the_pgtap_suite_is_not_empty():
    # An empty parameter list would make the test below skip, and a skipped
    # suite must not pass as green.
    assert len(PGTAP_FILES) >= 5


@pytest.mark.parametrize("path", PGTAP_FILES, ids=lambda p: p.name)
def test_pgtap_file(path, db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        result = pgtap.run_file(conn, path)
    assert result.ok, f"{path.name}:\n" + "\n".join(result.problems) + "\n--- TAP ---\n" + "\n".join(result.tap)
