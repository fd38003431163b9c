"""`chatdesk verify`: every maintained counter against a recount."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from chatdesk import db


@dataclass(frozen=True)
class Drift:
    object: str  # "chat" or "operator"
    id: str
    counter: str
    stored: str | None
    actual: str | None

    asdict = asdict


def verify(conninfo: str | None, *, repair: bool = False) -> list[Drift]:
    """The counters that differ from their recount (verify_counters); with
    repair, they are rewritten in the same transaction."""
    with db.connect(conninfo, autocommit=False) as conn:
        if repair:
            db.require_primary(conn, "verify --repair")
        rows = conn.execute(
            "select object, object_id::text, counter, stored, actual from chatdesk.verify_counters(%s)",
            (repair,),
        ).fetchall()
        conn.commit()
    return [Drift(*row) for row in rows]
