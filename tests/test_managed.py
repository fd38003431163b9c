"""Managed PostgreSQL (RDS, Cloud SQL, Supabase): the admin is not a superuser.
What each step needs is checked before anything is applied."""

from __future__ import annotations

import itertools
import json
import os

import psycopg
import pytest
from conftest import admin_execute, url_for
from helpers import run_cli
from psycopg.conninfo import make_conninfo

_numbers = itertools.count()


@pytest.fixture
def role_and_database(pg_server, template_db):
    """Makes a login role with the given attributes and a database it owns;
    yields a function attributes -> conninfo as that role; drops both after.
    (template_db: the chatdesk roles exist, as on a cluster where chatdesk was installed.)"""
    made = []

    def make(attributes: str) -> str:
        name = f"t_managed_{os.getpid()}_{next(_numbers)}"
        admin_execute(pg_server, f"create role {name} login {attributes}", f"create database {name} owner {name}")
        made.append(name)
        return make_conninfo(url_for(pg_server, name), user=name)

    yield make
    for name in made:
        admin_execute(pg_server, f"drop database if exists {name} with (force)")
        admin_execute(pg_server, f"drop role if exists {name}")


def test_an_admin_without_createrole_gets_nothing_half_applied(role_and_database, pg_server):
    """A database owner who cannot grant chatdesk_owner to itself is told so
    before the first migration: no schema, nothing recorded as applied."""
    url = role_and_database("")
    refused = run_cli("--database-url", url, "migrate")
    assert refused.returncode == 1
    assert "nothing was applied" in refused.stderr and "with admin option" in refused.stderr, refused.stderr
    with psycopg.connect(url) as conn:
        assert conn.execute("select to_regnamespace('chatdesk')").fetchone()[0] is None
        assert conn.execute("select count(*) from _yoyo_migration").fetchone()[0] == 0
    # doing what the message says makes it work
    name = psycopg.conninfo.conninfo_to_dict(url)["user"]
    admin_execute(pg_server, f"grant chatdesk_owner to {name} with admin option")
    done = run_cli("--database-url", url, "migrate")
    assert done.returncode == 0, done.stderr


def test_a_createrole_admin_runs_every_command(role_and_database, pg_server):
    """LOGIN CREATEDB CREATEROLE, not a superuser: migrate, rollup, status,
    verify, release-idle and create-login work. From PostgreSQL 16 on, CREATEROLE
    no longer lets a role grant roles it did not create: a second admin needs
    the ADMIN option on the chatdesk roles, and is told so before anything is applied."""
    url = role_and_database("createdb createrole")
    name = psycopg.conninfo.conninfo_to_dict(url)["user"]
    with psycopg.connect(url) as conn:
        version = conn.info.server_version
    if version >= 160000:
        refused = run_cli("--database-url", url, "migrate")
        assert refused.returncode == 1 and "nothing was applied" in refused.stderr
        assert f"grant chatdesk_owner to {name} with admin option" in refused.stderr, refused.stderr
        admin_execute(pg_server, f"grant chatdesk_owner, chatdesk_app to {name} with admin option")
    for args in (["migrate"], ["migrate"], ["rollup", "--json"], ["status", "--json"], ["verify"],
                 ["release-idle"], ["create-login", f"t_managed_app_{os.getpid()}", "--kind", "app"]):
        result = run_cli("--database-url", url, *args)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("select rolsuper from pg_roles where rolname = current_user").fetchone()[0] is False
        op = conn.execute("select chatdesk.create_operator('a')").fetchone()[0]
        assert conn.execute("select chatdesk.claim_next_chat(%s)", (op,)).fetchone()[0] is None
    assert json.loads(run_cli("--database-url", url, "status", "--json").stdout)["queue_depth"] == 0
    admin_execute(url, f"drop role if exists t_managed_app_{os.getpid()}")
