"""Calling chatdesk from each client an application uses, through a real
transaction-mode pooler, with the settings the README shows: a correct call,
and how to read a contract error's SQLSTATE."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import psycopg
import pytest
import sqlalchemy as sa
from chatdesk.errors import NOT_ALLOWED, NOT_ASSIGNEE, OUT_OF_RANGE
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.pool import NullPool


@pytest.fixture
def world(db_url, pgbouncer):
    """Operators ann (holding a chat) and bob, and the pooled URL (postgresql://) of the database."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        ann = conn.execute("select chatdesk.create_operator('ann', 2, gen_random_uuid())").fetchone()[0]
        bob = conn.execute("select chatdesk.create_operator('bob', 2)").fetchone()[0]
        user = conn.execute("select chatdesk.create_real_user('u', gen_random_uuid())").fetchone()[0]
        chat = conn.execute("select chatdesk.start_chat(%s)", (user,)).fetchone()[0]
        conn.execute("select chatdesk.send_user_message(%s, 'hi')", (chat,))
        assert conn.execute("select chatdesk.claim_next_chat(%s)", (ann,)).fetchone()[0] == chat
        logins = conn.execute("""select (select auth_user_id from chatdesk.operators where id = %s),
                                        (select auth_user_id from chatdesk.real_users where id = %s)""",
                              (ann, user)).fetchone()
    return {"url": pgbouncer(conninfo_to_dict(db_url)["dbname"]), "ann": ann, "bob": bob, "chat": chat,
            "user": user, "ann_login": logins[0], "user_login": logins[1]}


def test_psycopg_sync(world):
    # prepare_threshold=None: a transaction-mode pooler cannot keep prepared statements
    with psycopg.connect(world["url"], autocommit=True, prepare_threshold=None) as conn:
        for n in range(10):  # more than psycopg's default threshold of 5
            conn.execute("select chatdesk.send_user_message(%s, %s, %s)", (world["chat"], "more", f"c-{n}"))
        with pytest.raises(psycopg.Error) as error:
            conn.execute("select * from chatdesk.send_operator_message(%s, %s, %s)", (world["chat"], world["bob"], "x"))
        assert error.value.sqlstate == NOT_ASSIGNEE  # CD001
        row = conn.execute("select * from chatdesk.send_operator_message(%s, %s, %s)",
                           (world["chat"], world["ann"], "hello")).fetchone()
        assert row[1] == "waiting_real_user_reply" and row[2] is False


def test_psycopg_async(world):
    async def main():
        async with await psycopg.AsyncConnection.connect(world["url"], autocommit=True, prepare_threshold=None) as conn:
            for n in range(10):
                await conn.execute("select chatdesk.send_user_message(%s, %s)", (world["chat"], f"async {n}"))
            with pytest.raises(psycopg.Error) as error:
                await conn.execute("select chatdesk.claim_next_chat(%s)", (uuid.uuid4(),))
            assert error.value.sqlstate == "23503"
            cur = await conn.execute("select * from chatdesk.send_operator_message(%s, %s, %s)",
                                     (world["chat"], world["ann"], "hi"))
            return await cur.fetchone()

    assert asyncio.run(main())[1] == "waiting_real_user_reply"


def test_asyncpg(world):
    async def main():
        # statement_cache_size=0: asyncpg prepares every statement otherwise
        conn = await asyncpg.connect(world["url"], statement_cache_size=0)
        try:
            for n in range(10):
                await conn.fetchval("select chatdesk.send_user_message($1, $2)", world["chat"], f"asyncpg {n}")
            try:
                await conn.fetchrow("select * from chatdesk.send_operator_message($1, $2, $3)",
                                    world["chat"], world["bob"], "x")
            except asyncpg.PostgresError as error:
                # chatdesk's own SQLSTATEs are unknown to asyncpg: UnknownPostgresError, .sqlstate set
                assert type(error).__name__ == "UnknownPostgresError" and error.sqlstate == NOT_ASSIGNEE
            else:
                raise AssertionError("bob is not the assignee")
            row = await conn.fetchrow("select * from chatdesk.send_operator_message($1, $2, $3)",
                                      world["chat"], world["ann"], "hi")
            assert isinstance(row["message_id"], int) and row["chat_state"] == "waiting_real_user_reply"
            chat = await conn.fetchval("select chatdesk.start_chat($1)", world["user"])  # uuid.UUID in and out
            assert isinstance(chat, uuid.UUID)
        finally:
            await conn.close()

    asyncio.run(main())


def test_sqlalchemy(world):
    url = "postgresql+psycopg://" + world["url"].removeprefix("postgresql://")
    # NullPool: the pooler pools; prepare_threshold=None as for plain psycopg
    engine = sa.create_engine(url, poolclass=NullPool, connect_args={"prepare_threshold": None})
    with engine.begin() as conn:
        # uuid.UUID, not str: the dialect sends a str as varchar, and uuid = varchar does not resolve
        message_id = conn.execute(sa.select(sa.func.chatdesk.send_user_message(world["chat"], "from SQLAlchemy"))).scalar_one()
        assert isinstance(message_id, int)
        answer = sa.func.chatdesk.send_operator_message(world["chat"], world["ann"], "ok").table_valued(
            "message_id", "chat_state", "user_replied_meanwhile")
        row = conn.execute(sa.select(answer)).one()
        assert row.chat_state == "waiting_real_user_reply"
    with pytest.raises(sa.exc.DBAPIError) as error, engine.begin() as conn:
        conn.execute(sa.select(sa.func.chatdesk.release_chat(world["chat"], world["bob"])))
    assert error.value.orig.sqlstate == NOT_ASSIGNEE
    engine.dispose()


def postgrest_rpc(conn, claims: dict | None, function: str, body: dict):
    """A POST /rpc/<function> the way PostgREST runs it: one transaction, the
    role and the claims set locally, the JSON body turned into named arguments."""
    with conn.transaction():
        conn.execute("set local role chatdesk_web")
        conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps(claims) if claims else "",))
        columns = ", ".join(f"{name} {kind}" for name, kind in body["types"].items())
        named = ", ".join(f"{name} := a.{name}" for name in body["types"])
        return conn.execute(
            f"select row_to_json(r) from json_to_record(%s::json) as a({columns}), "
            f"lateral (select * from chatdesk.{function}({named})) r", (json.dumps(body["values"]),)).fetchall()


def test_postgrest_rpc_shape(world):
    with psycopg.connect(world["url"], autocommit=True, prepare_threshold=None) as conn:
        visitor = {"sub": str(world["user_login"]), "role": "authenticated"}
        rows = postgrest_rpc(conn, visitor, "send_user_message", {
            "types": {"p_chat_id": "uuid", "p_body": "text", "p_client_message_id": "text"},
            "values": {"p_chat_id": str(world["chat"]), "p_body": "via PostgREST", "p_client_message_id": "w-1"}})
        seen = rows[0][0]["send_user_message"]
        assert isinstance(seen, int)
        operator = {"sub": str(world["ann_login"]), "role": "authenticated"}
        answer = {"types": {"p_chat_id": "uuid", "p_operator_id": "uuid", "p_body": "text"},
                  "values": {"p_chat_id": str(world["chat"]), "p_operator_id": str(world["ann"]), "p_body": "hi"}}
        # a client that leaves the seen id out (PostGraphile makes every
        # argument optional) is refused, and nothing is written
        with pytest.raises(psycopg.Error) as error:
            postgrest_rpc(conn, operator, "send_operator_message", answer)
        assert error.value.sqlstate == OUT_OF_RANGE
        answer["types"]["p_seen_message_id"] = "bigint"
        answer["values"]["p_seen_message_id"] = seen
        rows = postgrest_rpc(conn, operator, "send_operator_message", answer)
        assert set(rows[0][0]) == {"message_id", "chat_state", "user_replied_meanwhile"}
        with pytest.raises(psycopg.Error) as error:  # PostgREST answers 403 with {"code": "42501", ...}
            postgrest_rpc(conn, operator, "claim_next_chat", {
                "types": {"p_operator_id": "uuid"}, "values": {"p_operator_id": str(world["bob"])}})
        assert error.value.sqlstate == NOT_ALLOWED
