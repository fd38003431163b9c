"""`make mutate` stays runnable: every mutant of the catalog (tests/mutants.py)
still applies to today's sql/: its `find` occurs exactly once in its file.
A rule rewritten without its mutant fails here, in `make test`, not later
in a mutation run that stops at "stale mutant"."""

from __future__ import annotations

from conftest import ROOT
from mutants import MUTANTS


def test_every_mutant_applies_to_todays_sql():
    stale = [f"{m.id}: occurs {(ROOT / 'sql' / m.file).read_text().count(m.find)} times in sql/{m.file}"
             for m in MUTANTS if (ROOT / "sql" / m.file).read_text().count(m.find) != 1]
    assert not stale, "stale mutants:\n" + "\n".join(stale)


def test_mutant_ids_are_unique_and_each_changes_its_text():
    ids = [m.id for m in MUTANTS]
    assert len(ids) == len(set(ids))
    assert all(m.find != m.replace for m in MUTANTS)
