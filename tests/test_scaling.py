"""Ready for Citus, checked on paper: the catalog and every function against Citus' documented rules.

The plan (docs/scaling.md): the chat-owned tables distributed by chat and
co-located, people and settings as reference tables, the queue and the
runner's bookkeeping on the coordinator. The rules checked, from Citus'
documentation:

- a distributed table's primary key and unique constraints include its
  distribution column;
- foreign keys between distributed tables only on the distribution columns
  (co-located); from distributed or coordinator tables to reference tables;
  never from reference or coordinator tables to distributed ones;
- SELECT ... FOR UPDATE / FOR SHARE on a distributed table only within one
  shard: the statement pins the distribution column with an equality.

Every table must be placed in the plan: a new one fails here until it is.
"""

from __future__ import annotations

import json
import re

import psycopg
from pglast import parse_plpgsql
from pglast.parser import parse_sql_json

DISTRIBUTED = {"chats": "id", "messages": "chat_id", "chat_events": "chat_id", "changes": "chat_id",
               "conversations": "chat_id"}
REFERENCE = {"operators", "real_users", "settings", "state_transitions", "business_hours", "holidays"}
COORDINATOR = {"queue", "runner_locks", "sql_loaded", "feed_wakeup", "changes_horizon", "operator_daily_stats",
               "operator_daily_times", "hourly_load", "queue_samples"}


def placement(table: str) -> str:
    return "distributed" if table in DISTRIBUTED else "reference" if table in REFERENCE else "coordinator"


def key_violations(conn) -> list[str]:
    out = []
    for table, index, columns in conn.execute(
            """select t.relname, i.relname, array(select a.attname from unnest(x.indkey) k
                                                  join pg_attribute a on a.attrelid = x.indrelid and a.attnum = k)
                 from pg_index x join pg_class i on i.oid = x.indexrelid join pg_class t on t.oid = x.indrelid
                where t.relnamespace = 'chatdesk'::regnamespace and x.indisunique"""):
        if table in DISTRIBUTED and DISTRIBUTED[table] not in columns:
            out.append(f"unique index {index} on {table} {columns} lacks the distribution column {DISTRIBUTED[table]}")
    return out


def foreign_key_violations(conn) -> list[str]:
    out = []
    for name, src, dst, src_cols, dst_cols in conn.execute(
            """select c.conname, s.relname, d.relname,
                      array(select a.attname from unnest(c.conkey) with ordinality k(n, i)
                             join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.n order by k.i),
                      array(select a.attname from unnest(c.confkey) with ordinality k(n, i)
                             join pg_attribute a on a.attrelid = c.confrelid and a.attnum = k.n order by k.i)
                 from pg_constraint c join pg_class s on s.oid = c.conrelid join pg_class d on d.oid = c.confrelid
                where c.contype = 'f' and s.relnamespace = 'chatdesk'::regnamespace"""):
        kinds = (placement(src), placement(dst))
        if kinds == ("distributed", "distributed"):
            if (DISTRIBUTED[src], DISTRIBUTED[dst]) not in zip(src_cols, dst_cols):
                out.append(f"{name}: {src} -> {dst} is not on the distribution columns (not co-located)")
        elif kinds[1] == "distributed" or (kinds[0] == "reference" and kinds[1] != "reference") \
                or (kinds[0] == "distributed" and kinds[1] == "coordinator"):
            out.append(f"{name}: a foreign key from a {kinds[0]} table ({src}) to a {kinds[1]} one ({dst})")
    return out


def _walk(node):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def _relations(from_clause) -> dict[str, str]:
    """alias (or name) -> table, for chatdesk tables named in a FROM list (joins included)."""
    found = {}
    for node in _walk(from_clause):
        if "RangeVar" in node:
            rv = node["RangeVar"]
            found[rv.get("alias", {}).get("aliasname", rv["relname"])] = rv["relname"]
    return found


def _pins(where, alias: str, column: str, single: bool) -> bool:
    """Whether the WHERE clause has `alias.column = ...` (or `column = ...` with one relation) at its top level."""
    terms = [where]
    if where and "BoolExpr" in where and where["BoolExpr"]["boolop"] == "AND_EXPR":
        terms = where["BoolExpr"]["args"]
    for term in terms:
        expr = (term or {}).get("A_Expr")
        if not expr or expr.get("kind") != "AEXPR_OP" or expr["name"][0]["String"]["sval"] != "=":
            continue
        for side in (expr.get("lexpr", {}), expr.get("rexpr", {})):
            fields = [f.get("String", {}).get("sval") for f in side.get("ColumnRef", {}).get("fields", [])]
            if fields == [alias, column] or (single and fields == [column]):
                return True
    return False


def locking_violations_in(sql: str, where: str) -> list[str]:
    out = []
    for node in _walk(json.loads(parse_sql_json(sql))):
        select = node.get("SelectStmt")
        if not select or not select.get("lockingClause"):
            continue
        relations = _relations(select.get("fromClause", []))
        locked = set()
        for clause in select["lockingClause"]:
            names = [rv["RangeVar"]["relname"] for rv in clause["LockingClause"].get("lockedRels", [])]
            locked |= set(names) if names else set(relations)
        for alias in locked:
            table = relations.get(alias, alias)
            if table in DISTRIBUTED and not _pins(select.get("whereClause"), alias, DISTRIBUTED[table],
                                                  len(relations) == 1):
                out.append(f"{where}: locks {table} rows without pinning {DISTRIBUTED[table]} (more than one shard)")
    return out


def _queries(plpgsql_tree) -> list[str]:
    queries = []
    for node in _walk(plpgsql_tree):
        if "PLpgSQL_stmt_dynexecute" in node:  # EXECUTE '<literal>': the literal's statement
            text = node["PLpgSQL_stmt_dynexecute"]["query"]["PLpgSQL_expr"]["query"]
            for const in _walk(json.loads(parse_sql_json(f"select {text}"))):
                if "A_Const" in const and "sval" in const["A_Const"]:
                    queries.append(const["A_Const"]["sval"]["sval"])
        elif "PLpgSQL_expr" in node:
            expr, mode = node["PLpgSQL_expr"], node["PLpgSQL_expr"].get("parseMode", 0)
            # parseMode 0: a statement; 2: an expression; 3 to 5: an assignment "target := expression"
            text = re.sub(r'^\s*[\w."\[\]]+\s*:?=', "", expr["query"], count=1) if mode >= 3 else expr["query"]
            queries.append(text if mode == 0 else f"select {text}")
    return queries


def _for_the_parser(definition: str) -> str:
    """libpg_query's PL/pgSQL parser has no catalog: it knows a row variable's
    fields only of a `record`, and no type outside pg_catalog. Parameters and
    variables of chatdesk's row types become records (the SQL is unchanged)."""
    head, sep, body = definition.partition("AS $function$")
    head = re.sub(r"chatdesk\.(\w+)(?=[,)\s\[])", "record", head.replace("FUNCTION chatdesk.", "FUNCTION "))
    # only in the declarations: "from chatdesk.queue q" in the body is SQL, not a variable
    declare, begin, rest = body.partition("\nbegin\n")
    declare = re.sub(r"\b(\w+)\s+[\w.]+%rowtype", r"\1 record", declare)
    declare = re.sub(r"(?m)^(\s+\w+\s+)chatdesk\.\w+", r"\1record", declare)
    return head + sep + declare + begin + rest


def function_violations(conn) -> list[str]:
    out = []
    for name, language, definition, body in conn.execute(
            """select p.oid::regprocedure::text, l.lanname, pg_get_functiondef(p.oid), p.prosrc
                 from pg_proc p join pg_language l on l.oid = p.prolang
                where p.pronamespace = 'chatdesk'::regnamespace and p.prokind = 'f'"""):
        if language == "plpgsql":
            for query in _queries(parse_plpgsql(_for_the_parser(definition))):
                out += locking_violations_in(query, name)
        elif language == "sql":
            out += locking_violations_in(body, name)
    return out


def test_every_table_has_a_place_in_the_distribution_plan(db_url):
    with psycopg.connect(db_url) as conn:
        tables = {r[0] for r in conn.execute(
            "select relname from pg_class where relnamespace = 'chatdesk'::regnamespace and relkind in ('r', 'p')")}
    placed = set(DISTRIBUTED) | REFERENCE | COORDINATOR
    assert tables == placed, f"unplaced: {tables - placed}; gone: {placed - tables}"


def test_the_schema_follows_citus_rules(db_url):
    with psycopg.connect(db_url) as conn:
        problems = key_violations(conn) + foreign_key_violations(conn) + function_violations(conn)
    assert problems == []


def test_the_checker_catches_what_breaks_the_rules(db_url):
    """The checks themselves, attacked: each rule broken once, on purpose."""
    assert locking_violations_in(
        "select id from chatdesk.chats where chat_state = 'waiting_assignment' order by queued_at limit 1 "
        "for no key update skip locked", "claim as it was")
    assert locking_violations_in("select 1 from chatdesk.messages m join chatdesk.chats c on c.id = m.chat_id "
                                 "where m.chat_id = $1 for update", "joined") != []  # chats locked, not pinned
    assert locking_violations_in("select 1 from chatdesk.messages m join chatdesk.chats c on c.id = m.chat_id "
                                 "where m.chat_id = $1 for update of m", "only m") == []
    assert locking_violations_in("select 1 from chatdesk.chats c where c.id = $1 for update", "pinned") == []
    assert locking_violations_in("select 1 from chatdesk.queue q order by queued_at for update skip locked",
                                 "coordinator") == []
    with psycopg.connect(db_url, autocommit=True) as conn, conn.transaction(force_rollback=True):
        conn.execute("create unique index bad_key on chatdesk.messages (id)")
        conn.execute("alter table chatdesk.operators add column last_chat uuid references chatdesk.chats (id)")
        conn.execute("""create function chatdesk.bad_claim() returns uuid language plpgsql as $$
                        declare v uuid; begin
                            select id into v from chatdesk.chats where chat_state = 'x' limit 1 for update skip locked;
                            return v; end $$""")
        assert any("bad_key" in p for p in key_violations(conn))
        assert any("operators_last_chat_fkey" in p for p in foreign_key_violations(conn))
        assert any("bad_claim" in p for p in function_violations(conn))
