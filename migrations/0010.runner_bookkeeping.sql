-- The runner's bookkeeping inside the database: the rollup's lock row (held by a rollup's own transaction, so it works through a pooler), and the hash of each sql/ file as last loaded (migrate reloads only what changed).
-- depends: 0009.client_ids_per_sender

-- Never queue behind live traffic for long; a slow step fails and rolls back.
set local lock_timeout = '5s';
set local statement_timeout = '10min';

-- One row per lock. Only the owner may touch it: applications take it only
-- by calling the function that needs it (rollup_operator_stats), and lose it
-- at that transaction's end.
create table chatdesk.runner_locks (
    name text primary key  -- 'rollup': one rollup transaction at a time
);
insert into chatdesk.runner_locks (name) values ('rollup');

create table chatdesk.sql_loaded (
    file      text primary key,        -- a file of sql/ (as sql/load.sql names it)
    sha256    text not null,           -- of its text when it was last loaded
    loaded_at timestamptz not null
);

alter table chatdesk.runner_locks owner to chatdesk_owner;
alter table chatdesk.sql_loaded owner to chatdesk_owner;

comment on table chatdesk.runner_locks is 'Lock rows the runner''s jobs take inside their own transactions (rollup).';
comment on table chatdesk.sql_loaded is 'What chatdesk migrate last loaded from each sql/ file (sha256), so unchanged files are left alone.';
