-- ---------------------------------------------------------------------------
-- The change feed. Every new message and every chat state change writes one
-- row of chatdesk.changes (publish_change, called by the triggers that own
-- those changes) and wakes readers with a NOTIFY on channel chatdesk.
--
-- Gap-free: rows are read in the order of their position (tx, then id),
-- and only below the oldest transaction still running (pg_snapshot_xmin).
-- A row's tx is its writing transaction's id, or the chat's previous
-- change's tx when that is later (taken under the chat's row lock): so
-- within a chat the feed follows the lock order, which is the commit order,
-- and the per-chat sequence never runs backwards (a transaction may take its
-- id, then lose the race for the chat's lock to a later one). Every row's tx
-- is at or above its writer's id and every later transaction's id is above
-- the snapshot's bound: after any cursor, every change appears exactly once,
-- a late committer included, in its place. Ids from a sequence alone are not
-- commit-ordered (the postgresql-event-sourcing design, emmett#336).
-- ---------------------------------------------------------------------------
create or replace function chatdesk.publish_change(p_chat chatdesk.chats, p_kind text, p_message_id bigint,
                                                   p_from_state text)
returns xid8
language plpgsql
as $$
declare
    v_tx xid8 := greatest(pg_current_xact_id(), p_chat.change_tx);
begin
    -- One change-feed row for chat p_chat as it is after the change (its
    -- change_seq already bumped by the caller, under the chat's row lock),
    -- and the wake-up. Returns the row's position, which the caller stores
    -- as the chat's change_tx.
    --
    -- The wake-up is a NOTIFY with a constant payload, sent by at most one
    -- transaction every 50 ms: NOTIFY takes a database-wide lock at commit,
    -- which serialises every notifying transaction (measured: one NOTIFY per
    -- transaction cost 30% of the message throughput at 8 clients). The
    -- writer that finds the last wake-up older than 50 ms, and the wake-up
    -- row not locked by another writer, sends it; the rest skip at once.
    -- Readers poll as well, so a change committed just after a wake-up is
    -- read at the next one or at the poll. chatdesk.feed_notify = off (a
    -- session setting, for measuring) leaves the wake-up out.
    insert into chatdesk.changes (tx, chat_id, chat_seq, kind, message_id, chat_state, from_state,
                                  operator_id, real_user_id, created_at)
    values (v_tx, p_chat.id, p_chat.change_seq, p_kind, p_message_id, p_chat.chat_state, p_from_state,
            p_chat.assigned_operator_id, p_chat.real_user_id, chatdesk.clock());
    if coalesce(current_setting('chatdesk.feed_notify', true), '') <> 'off' then
        perform 1 from chatdesk.feed_wakeup
         where sent_at < clock_timestamp() - interval '50 milliseconds'
           for update skip locked;
        if found then
            update chatdesk.feed_wakeup set sent_at = clock_timestamp();
            perform pg_notify('chatdesk', '');
        end if;
    end if;
    return v_tx;
end;
$$;

create or replace function chatdesk.parse_cursor(p_cursor text)
returns chatdesk.changes_horizon
language plpgsql
immutable
as $$
begin
    -- A cursor is "<transaction>:<id>" as changes_since hands it out; null
    -- is the very beginning. Anything else is refused (23514).
    if p_cursor is null then
        return row(true, '0'::xid8, 0)::chatdesk.changes_horizon;
    end if;
    if p_cursor !~ '^[0-9]{1,19}:[0-9]{1,19}$' then
        raise exception using errcode = '23514',
            message = format('chatdesk: %L is not a change-feed cursor (the cursor column of changes_since)', p_cursor);
    end if;
    return row(true, split_part(p_cursor, ':', 1)::xid8, split_part(p_cursor, ':', 2)::bigint)::chatdesk.changes_horizon;
exception when numeric_value_out_of_range or invalid_text_representation then  -- 19 digits past bigint or xid8
    raise exception using errcode = '23514',
        message = format('chatdesk: %L is not a change-feed cursor (the cursor column of changes_since)', p_cursor);
end;
$$;

create or replace function chatdesk.feed_horizon()
returns chatdesk.changes_horizon
language plpgsql
stable
security definer  -- reads the horizon, a table no application role reads
set search_path = chatdesk, pg_temp
as $$
begin
    -- The newest position pruned from the feed. (PL/pgSQL: a security
    -- definer SQL function is planned afresh on every call, 20 µs a read.)
    return (select h from chatdesk.changes_horizon h);
end;
$$;

create or replace function chatdesk.feed_start(p_cursor text, p_limit int)
returns chatdesk.changes_horizon
language plpgsql
stable
security definer  -- reads the horizon, a table no application role reads
set search_path = chatdesk, pg_temp
as $$
declare
    v_from chatdesk.changes_horizon := chatdesk.parse_cursor(p_cursor);
    v_horizon chatdesk.changes_horizon;
begin
    -- Where a read of the feed starts: p_cursor parsed (23514 if malformed),
    -- refused with CD006 when it is older than the feed keeps; and p_limit
    -- checked (1 to 10000). Every reader of the feed starts here.
    if p_limit is null or p_limit not between 1 and 10000 then
        raise exception using errcode = '23514',
            message = format('chatdesk: changes_since takes 1 to 10000 rows at a time, not %s',
                             coalesce(p_limit::text, 'null'));
    end if;
    v_horizon := chatdesk.feed_horizon();
    if p_cursor is not null and (v_from.tx, v_from.id) < (v_horizon.tx, v_horizon.id) then
        raise exception using errcode = 'CD006',
            message = format('chatdesk: cursor %s is older than the change feed keeps (feed_retention)', p_cursor),
            hint = 'Resynchronise: take chatdesk.feed_position(), read the tables, then continue from that position.';
    end if;
    return v_from;
end;
$$;

create or replace function chatdesk.audience_changes(p_from chatdesk.changes_horizon, p_bound xid8, p_limit int,
                                                     p_operator uuid, p_user uuid)
returns setof chatdesk.changes
language sql
stable
as $$
    -- Who sees which change: the one statement of it (docs/contract.md,
    -- "Change feed"), used by changes_since and by chatdesk serve. The
    -- changes after p_from and below p_bound, oldest first, at most p_limit,
    -- that these may see:
    --   real user p_user   its own chats' changes;
    --   operator p_operator  the changes of the chats it holds, up to and
    --                      including the one that ends its hold
    --                      (changes.operator_id), and the queue's comings and
    --                      goings (a chat change into or out of
    --                      waiting_assignment; the same test as
    --                      changes_queue_idx, so that index serves it).
    -- Each audience is read through its own index in feed order, so a read
    -- costs the caller's own changes after p_from, never the feed's size.
    -- UNION: a claim is both the queue's and its operator's change.
    select f.*
      from ((select c.* from chatdesk.changes c
              where c.real_user_id = p_user
                and (c.tx, c.id) > (p_from.tx, p_from.id) and c.tx < p_bound
              order by c.tx, c.id
              limit p_limit)
            union
            (select c.* from chatdesk.changes c
              where c.operator_id = p_operator
                and (c.tx, c.id) > (p_from.tx, p_from.id) and c.tx < p_bound
              order by c.tx, c.id
              limit p_limit)
            union
            (select c.* from chatdesk.changes c
              where p_operator is not null
                and c.kind = 'chat' and (c.chat_state = 'waiting_assignment' or c.from_state = 'waiting_assignment')
                and (c.tx, c.id) > (p_from.tx, p_from.id) and c.tx < p_bound
              order by c.tx, c.id
              limit p_limit)) f
     order by f.tx, f.id
     limit p_limit;
$$;

create or replace function chatdesk.changes_since(p_cursor text default null, p_limit int default 1000)
returns table (cursor text, kind text, chat_id uuid, message_id bigint, chat_state text,
               created_at timestamptz, chat_seq int)
language plpgsql
stable
security definer  -- reads the feed's table, which web callers may not read; scopes every caller itself
set search_path = chatdesk, pg_temp
as $$
#variable_conflict use_column
declare
    v_from     chatdesk.changes_horizon := chatdesk.feed_start(p_cursor, p_limit);
    v_bound    xid8 := pg_snapshot_xmin(pg_current_snapshot());
    v_operator uuid;
    v_user     uuid;
begin
    -- The changes committed after p_cursor (null: from the oldest kept),
    -- oldest first, at most p_limit (1 to 10000), only those the caller may
    -- see. Pass the last row's cursor to get the next ones. A cursor older
    -- than what the feed keeps is refused (CD006).
    --
    -- The caller's audience (audience_changes says who sees what):
    --   a web caller           its operator and its real user (its JWT's sub);
    --   a backend acting for   that operator;
    --   one (act_as_operator)
    --   a backend              everything;
    --   any other web caller   refused (42501).
    if chatdesk.is_web_caller() then
        v_operator := chatdesk.web_operator_id();
        v_user := chatdesk.web_real_user_id();
        if v_operator is null and v_user is null then
            perform chatdesk.refuse_nobody('read the change feed');
        end if;
    else
        v_operator := chatdesk.current_operator_id();
        if v_operator is null then
            return query
            select c.tx || ':' || c.id, c.kind, c.chat_id, c.message_id, c.chat_state, c.created_at, c.chat_seq
              from chatdesk.changes c
             where (c.tx, c.id) > (v_from.tx, v_from.id) and c.tx < v_bound
             order by c.tx, c.id
             limit p_limit;
            return;
        end if;
    end if;

    return query
    select f.tx || ':' || f.id, f.kind, f.chat_id, f.message_id, f.chat_state, f.created_at, f.chat_seq
      from chatdesk.audience_changes(v_from, v_bound, p_limit, v_operator, v_user) f
     order by f.tx, f.id;
end;
$$;

create or replace function chatdesk.serve_changes(p_cursor text, p_limit int, p_everyone boolean,
                                                  p_operator_id uuid default null, p_real_user_id uuid default null)
returns table (cursor text, kind text, chat_id uuid, message_id bigint, chat_state text,
               created_at timestamptz, chat_seq int,
               operator_id uuid, real_user_id uuid, queue boolean,
               sender_type text, body text, client_message_id text, message_created_at timestamptz,
               holder uuid)
language plpgsql
stable
security definer  -- reads the feed's start and horizon like changes_since; backends only (authorize)
set search_path = chatdesk, pg_temp
as $$
#variable_conflict use_column
declare
    v_from  chatdesk.changes_horizon := chatdesk.feed_start(p_cursor, p_limit);
    v_bound xid8 := pg_snapshot_xmin(pg_current_snapshot());
begin
    -- The feed as chatdesk serve reads it (a backend: it reads what
    -- changes_since reads, with each change's audience and its message):
    --   p_everyone   every change after p_cursor, with who may see it
    --                (operator_id, real_user_id, queue: the tests of
    --                audience_changes), for one read per wake-up whatever
    --                the number of subscribers;
    --   otherwise    what operator p_operator_id and real user
    --                p_real_user_id may see (audience_changes), for one
    --                subscriber catching up from its own cursor.
    -- Same cursors, order and exactly-once as changes_since. holder: the
    -- chat's operator now, so a message's body goes only to whom may read
    -- it now (its visitor; the operator holding the chat), as the messages
    -- policy says.
    perform chatdesk.authorize('read the feed for others', 'backend');
    return query
    select c.tx || ':' || c.id, c.kind, c.chat_id, c.message_id, c.chat_state, c.created_at, c.chat_seq,
           c.operator_id, c.real_user_id,
           c.kind = 'chat' and (c.chat_state = 'waiting_assignment' or c.from_state = 'waiting_assignment'),
           m.sender_type, m.body, m.client_message_id, m.created_at,
           case when c.kind = 'message' then (select h.assigned_operator_id from chatdesk.chats h where h.id = c.chat_id) end
      from ((select * from chatdesk.changes c
              where p_everyone and (c.tx, c.id) > (v_from.tx, v_from.id) and c.tx < v_bound
              order by c.tx, c.id
              limit p_limit)
            union all
            (select * from chatdesk.audience_changes(v_from, v_bound, p_limit, p_operator_id, p_real_user_id)
              where not p_everyone)) c
      left join chatdesk.messages m on m.id = c.message_id
     order by c.tx, c.id;
end;
$$;

create or replace function chatdesk.feed_position()
returns text
language plpgsql
stable
security definer  -- reads the feed's table, which web callers may not read
set search_path = chatdesk, pg_temp
as $$
begin
    -- The feed's current position: the cursor of the newest change readable
    -- now (at least the pruned horizon). Take it, read the tables, then
    -- follow changes_since from it: every caller gets the same position, and
    -- what comes after it is scoped by changes_since. One step back along
    -- the primary key, whatever the feed's size and whoever calls. A web
    -- caller who is nobody is refused (42501).
    if chatdesk.is_web_caller() and chatdesk.web_operator_id() is null and chatdesk.web_real_user_id() is null then
        perform chatdesk.refuse_nobody('read the change feed');
    end if;
    return coalesce((select c.tx || ':' || c.id from chatdesk.changes c
                      where c.tx < pg_snapshot_xmin(pg_current_snapshot())
                      order by c.tx desc, c.id desc limit 1),
                    (select h.tx || ':' || h.id from chatdesk.changes_horizon h));
end;
$$;

create or replace function chatdesk.feed_retention()
returns interval
language sql
stable
as $$
    select coalesce((select value::interval from chatdesk.settings where key = 'feed_retention'), interval '7 days');
$$;

create or replace function chatdesk.prune_changes()
returns int
language sql
security definer  -- deletes feed rows and moves the horizon, which applications may not write
set search_path = chatdesk, pg_temp
as $$
    -- Deletes the feed rows older than feed_retention and remembers the
    -- newest position deleted: a cursor before it gets CD006. For backends
    -- (chatdesk schedule runs it).
    select chatdesk.authorize('prune the change feed', 'backend');
    with gone as (
        delete from chatdesk.changes
         where created_at < chatdesk.clock() - chatdesk.feed_retention()
        returning tx, id
    ), newest as (
        select tx, id from gone order by tx desc, id desc limit 1
    ), moved as (
        update chatdesk.changes_horizon h set tx = n.tx, id = n.id
          from newest n where (n.tx, n.id) > (h.tx, h.id)
    )
    select count(*)::int from gone;
$$;

comment on function chatdesk.changes_since(text, int) is
    'The change feed after a cursor, in commit order, exactly once, only what the caller may see; CD006 for a cursor older than what is kept.';
comment on function chatdesk.serve_changes(text, int, boolean, uuid, uuid) is
    'For chatdesk serve (backends only): the feed with each change''s audience and message, for everyone or one identity.';
comment on function chatdesk.feed_position() is
    'The cursor of the newest change readable now: resynchronise from the tables, then follow changes_since from it.';
comment on function chatdesk.prune_changes() is
    'Deletes change-feed rows older than feed_retention (chatdesk schedule runs it).';
