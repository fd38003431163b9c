"""`chatdesk status`: the queue and the operators at a glance."""

from __future__ import annotations

from datetime import timedelta

import psycopg


def snapshot(conn: psycopg.Connection, idle_after: timedelta) -> dict:
    """Queue depth, the oldest waiting chat's age, operators' load, chats held by idle operators."""
    queue = conn.execute(
        """select count(*), chatdesk.clock() - min(queued_at)
             from chatdesk.chats where chat_state = 'waiting_assignment'"""
    ).fetchone()
    operators = conn.execute(
        """select operator_id::text, name, assigned_chats, max_concurrent_chats,
                  chatdesk.clock() - last_active_at,
                  coalesce(last_active_at, '-infinity') < chatdesk.clock() - %s
             from chatdesk.operator_load
            where is_active or assigned_chats > 0
            order by name, operator_id""",
        (idle_after,),
    ).fetchall()
    by_state = dict(conn.execute("select chat_state, count(*) from chatdesk.chats group by 1").fetchall())
    # How fresh the stats of yesterday and today are: a rollup that keeps
    # being skipped (or never runs) shows here.
    freshness = conn.execute(
        """select d::date, max(s.computed_at), chatdesk.clock() - max(s.computed_at)
             from generate_series(chatdesk.stats_today() - 1, chatdesk.stats_today(), interval '1 day') d
             left join chatdesk.operator_daily_stats s on s.stat_date = d::date
            group by 1 order by 1""").fetchall()
    # The change feed: changes written but held back by a transaction still
    # running (anywhere on the server), and how long the oldest has waited.
    held = conn.execute(
        """select count(*), chatdesk.clock() - min(created_at) from chatdesk.changes
            where tx >= pg_snapshot_xmin(pg_current_snapshot())""").fetchone()
    return {
        "replication": replication(conn),
        "feed_held_back": held[0],
        "feed_lag_seconds": held[1].total_seconds() if held[1] is not None else 0.0,
        "queue_depth": queue[0],
        "oldest_waiting_seconds": queue[1].total_seconds() if queue[1] is not None else None,
        "chats_by_state": {s: by_state.get(s, 0) for s in
                           ("waiting_real_user_reply", "waiting_assignment", "assigned", "closed")},
        "operators": [
            {"id": o[0], "name": o[1], "assigned": o[2], "capacity": o[3],
             "idle_seconds": o[4].total_seconds() if o[4] is not None else None, "idle": o[5]}
            for o in operators
        ],
        "chats_held_by_idle_operators": sum(o[2] for o in operators if o[5]),
        "stats": [{"date": d.isoformat(), "computed_at": at.isoformat() if at else None,
                   "age_seconds": age.total_seconds() if age is not None else None} for d, at, age in freshness],
        "idle_after_seconds": idle_after.total_seconds(),
    }


def replication(conn: psycopg.Connection) -> dict:
    """On a hot standby: how far behind the primary it is. On a primary: its
    standbys' replay lag (the details need pg_monitor; without it, just how many)."""
    standby, age, behind, last = conn.execute(
        """select pg_is_in_recovery(),
                  extract(epoch from now() - pg_last_xact_replay_timestamp()),
                  pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()),
                  pg_last_xact_replay_timestamp()""").fetchone()
    if standby:
        return {"role": "standby",
                # WAL received but not applied yet: what readers here do not see
                "replay_behind_bytes": int(behind) if behind is not None else None,
                # how old the newest replayed commit is: the lag while the primary writes
                "last_replayed_commit": last.isoformat() if last else None,
                "last_replayed_commit_age_seconds": float(age) if age is not None else None}
    standbys = conn.execute(
        """select application_name, client_addr::text, state, extract(epoch from replay_lag)
             from pg_stat_replication order by application_name""").fetchall()
    return {"role": "primary",
            "standbys": [{"name": n, "address": a, "state": st,
                          "replay_lag_seconds": float(lag) if lag is not None else None} for n, a, st, lag in standbys]}
