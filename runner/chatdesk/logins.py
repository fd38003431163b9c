"""`chatdesk create-login`: a login role for one kind of caller, with timeouts.

Role-level settings apply when a role logs in (not on `set role`), so the
timeouts go on the login itself: a PostgREST authenticator carries them into
every request it makes as chatdesk_web.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from psycopg import sql

from chatdesk import db
from chatdesk.errors import BadRequest


@dataclass(frozen=True)
class Kind:
    role: str  # the chatdesk role it gets
    inherit: bool  # PostgREST's authenticator must not inherit what it may switch to
    statement_timeout: str
    lock_timeout: str
    idle_in_transaction_session_timeout: str
    what: str


KINDS = {
    "app": Kind("chatdesk_app", True, "10s", "5s", "60s", "a trusted backend (the web app's server, cron, the runner)"),
    "web": Kind("chatdesk_web", False, "10s", "5s", "30s",
                "PostgREST's authenticator: switches into chatdesk_web per request"),
    "reporting": Kind("chatdesk_reporting", True, "60s", "5s", "300s", "dashboards: stats and counts"),
}


def create_login(conninfo: str | None, name: str, kind: str, password: str | None = None) -> list[str]:
    """Create login role `name` for `kind` (app, web or reporting), or bring an
    existing one's membership and timeouts up to date: exactly that kind, the
    other chatdesk roles revoked. Returns the statements run.
    Needs CREATEROLE and the admin option on the chatdesk role (the role that migrated has it)."""
    if kind not in KINDS:
        raise BadRequest(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name) or name.startswith(("pg_", "chatdesk_")):
        raise BadRequest(f"the login must be a plain lower-case role name not starting with pg_ or chatdesk_, not {name!r}")
    spec = KINDS[kind]
    role = sql.Identifier(name)
    with db.connect(conninfo, autocommit=False) as conn:
        db.require_primary(conn, "create-login")
        exists = conn.execute("select 1 from pg_roles where rolname = %s", (name,)).fetchone()
        statements = [
            sql.SQL("alter role {} login {}") if exists else sql.SQL("create role {} login {}"),
        ]
        statements = [statements[0].format(role, sql.SQL("inherit" if spec.inherit else "noinherit"))]
        if password:
            statements.append(sql.SQL("alter role {} password {}").format(role, sql.Literal(password)))
        statements.append(sql.SQL("grant {} to {}").format(sql.Identifier(spec.role), role))
        # Exactly one kind: a login that kept another kind's membership would
        # be both (and a web caller everywhere, with the backend's grants).
        for other in (k.role for k in KINDS.values() if k.role != spec.role):
            if exists and conn.execute(
                    "select exists (select 1 from pg_auth_members where member = %s::regrole and roleid = %s::regrole)",
                    (name, other)).fetchone()[0]:
                statements.append(sql.SQL("revoke {} from {}").format(sql.Identifier(other), role))
        for setting in ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout"):
            statements.append(sql.SQL("alter role {} set {} = {}").format(
                role, sql.Identifier(setting), sql.Literal(getattr(spec, setting))))
        for statement in statements:
            conn.execute(statement)
        conn.commit()
        shown = [s.as_string(conn) for s in statements]
    return [re.sub(r"password '.*'", "password '…'", s) for s in shown]
