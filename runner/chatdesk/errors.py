"""chatdesk's exceptions and the contract's SQLSTATEs, in one place.

The modules under the command line raise these (never click's); cli.py turns
each into one `Error: ...` line. Database refusals arrive as psycopg errors
whose `.sqlstate` is one of the constants below (docs/contract.md, "Errors").
"""

from __future__ import annotations

# -- the contract's SQLSTATEs ------------------------------------------------------
NOT_ASSIGNEE = "CD001"  # the operator is not the chat's assignee
BAD_TRANSITION = "CD002"  # a chat state change the state table does not allow
OPERATOR_INACTIVE = "CD003"  # the operator is not active
AT_CAPACITY = "CD004"  # the operator is already at max_concurrent_chats
CHAT_CLOSED = "CD005"  # an operator message to a closed chat
CURSOR_EXPIRED = "CD006"  # a change-feed cursor older than the feed keeps
TOO_MANY_OPEN_CHATS = "CD007"  # the real user already has max_open_chats_per_user open chats
NOT_FOUND = "23503"  # a chat, operator or user that does not exist, or a seen message not of that chat
OUT_OF_RANGE = "23514"  # an empty, blank or over-long value, a bad date or interval
NOT_ALLOWED = "42501"  # the caller may not do this (or not for that identity)

CONTRACT_SQLSTATES = frozenset({
    NOT_ASSIGNEE, BAD_TRANSITION, OPERATOR_INACTIVE, AT_CAPACITY, CHAT_CLOSED, CURSOR_EXPIRED, TOO_MANY_OPEN_CHATS,
    NOT_FOUND, OUT_OF_RANGE, NOT_ALLOWED,
})


# -- the runner's exceptions ---------------------------------------------------------
class ChatdeskError(Exception):
    """Something a user of the runner can act on; its text is the whole message."""


class ConnectionFailed(ChatdeskError):
    """The database could not be reached."""


class BadRequest(ChatdeskError):
    """A request that cannot be carried out as given (conflicting options, a bad range)."""


class MigrationFailed(ChatdeskError):
    """A migration or the sql/ reload failed and was rolled back."""


class TestsFailed(ChatdeskError):
    """`chatdesk test` found a failure, or nothing to test."""


class ToolMissing(ChatdeskError):
    """An outside program or extension chatdesk needs is not installed."""
