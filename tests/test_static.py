"""Static checks: plpgsql_check over every PL/pgSQL function, squawk over migrations/."""

from __future__ import annotations

import shutil
import subprocess

import psycopg
from conftest import ROOT

# Every PL/pgSQL function of the schema; trigger functions with each table they are attached to.
FUNCTIONS = """
    select p.oid, p.oid::regprocedure::text, coalesce(t.tgrelid, 0), t.tgoldtable, t.tgnewtable
      from pg_proc p
      join pg_language l on l.oid = p.prolang and l.lanname = 'plpgsql'
      left join pg_trigger t on t.tgfoid = p.oid and not t.tgisinternal
     where p.pronamespace = 'chatdesk'::regnamespace
     order by 2, 3
"""


def test_plpgsql_check_finds_no_errors(db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("create extension if not exists plpgsql_check")
        functions = conn.execute(FUNCTIONS).fetchall()
        assert len(functions) >= 25
        problems = []
        for oid, name, relid, old_table, new_table in functions:
            for level, message, lineno, query in conn.execute(
                    """select level, message, lineno, query from plpgsql_check_function_tb(
                           %s::oid, relid => %s::oid, oldtable => %s, newtable => %s,
                           extra_warnings => true, performance_warnings => false)""",
                    (oid, relid, old_table, new_table)):
                if level == "error" or "warning" in level:
                    problems.append(f"{name} line {lineno}: {level}: {message} {query or ''}")
    assert not problems, "\n".join(problems)


def test_squawk_passes_on_the_migrations():
    squawk = shutil.which("squawk") or str(ROOT / ".venv" / "bin" / "squawk")
    migrations = sorted(str(p) for p in (ROOT / "migrations").glob("*.sql"))
    result = subprocess.run([squawk, "--config", str(ROOT / ".squawk.toml"), *migrations],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Found 0 issues in {len(migrations)} files" in result.stdout + result.stderr
