-- chatdesk_test: the shared fixtures of chatdesk's pgTAP files. It installs,
-- it tests nothing, so it has no begin/ROLLBACK of its own: `chatdesk test`
-- runs it inside each file's transaction, which ends in ROLLBACK (a deployed
-- database keeps nothing); for pg_prove, install it once per database:
--   psql -v ON_ERROR_STOP=1 -f tests/pgtap_helpers.sql
-- Modelled on basejump's tests.authenticate_as: a file names its fixtures
-- once and refers to them by name.
create schema if not exists chatdesk_test;
grant usage on schema chatdesk_test to public;

create or replace function chatdesk_test.begin_fixtures()
returns void
language plpgsql
as $$
begin
    -- A temp table `fixtures (name, id)` for this transaction: insert the
    -- ids a file creates (insert into fixtures values ('ann', chatdesk.create_operator('Ann'))),
    -- read them with chatdesk_test.id('ann'). Readable by every role the file
    -- switches to.
    create temp table if not exists fixtures (name text primary key, id uuid not null) on commit drop;
    grant select on pg_temp.fixtures to public;
end;
$$;

create or replace function chatdesk_test.setup()
returns void
language plpgsql
as $$
begin
    -- What every chatdesk pgTAP file does first, right after `begin`: pgTAP
    -- itself (created inside the file's transaction when the database lacks
    -- it), search_path chatdesk, public for the rest of the transaction, and
    -- the fixtures table.
    --
    -- The files run on any migrated database, one with chats of its own
    -- too (`chatdesk test` on yours), so for the file's transaction only,
    -- rolled back with it, the database is put in the state the files
    -- assume: the settings at their defaults (but for the cap on open chats
    -- the cap), no business hours or holidays, other chats out of the queue
    -- (a claim takes the oldest chat queued in the whole database) and other
    -- operators off duty (a rollup writes a row for every active operator).
    -- Nothing else is touched: where an assertion counts rows, it counts the
    -- file's own.
    create extension if not exists pgtap;
    perform set_config('search_path', 'chatdesk, public', true);
    perform chatdesk_test.begin_fixtures();
    update chatdesk.settings s
       set value = d.value
      from (values ('stats_time_zone', 'UTC'), ('max_open_chats_per_user', '100'),
                   ('first_response_target', '5 minutes'), ('feed_retention', '7 days')) d(key, value)
     where s.key = d.key and s.value is distinct from d.value;
    delete from chatdesk.business_hours;
    delete from chatdesk.holidays;
    delete from chatdesk.queue;
    update chatdesk.operators set is_active = false where is_active;
end;
$$;

create or replace function chatdesk_test.id(p_name text)
returns uuid
language plpgsql
stable
as $$
declare
    v_id uuid;
begin
    select f.id into v_id from pg_temp.fixtures f where f.name = p_name;
    if not found then
        raise exception 'chatdesk_test: no fixture named %', p_name;
    end if;
    return v_id;
end;
$$;

create or replace function chatdesk_test.at(p_time text)
returns void
language sql
as $$
    -- Pins chatdesk.clock() for the rest of the transaction.
    select set_config('chatdesk.clock', p_time, true);
$$;

create or replace function chatdesk_test.refuses(p_sql text, p_sqlstate text, p_ids uuid[], p_description text)
returns text
language plpgsql
as $$
declare
    v_state   text;
    v_message text;
    v_missing uuid[];
begin
    -- One assertion: p_sql raises p_sqlstate, and its message names every id
    -- in p_ids (the contract: a refusal says which ids were involved).
    begin
        execute p_sql;
    exception when others then
        get stacked diagnostics v_state = returned_sqlstate, v_message = message_text;
    end;
    if v_state is null then
        return ok(false, p_description) || E'\n' || diag('    no error was raised');
    end if;
    v_missing := array(select i from unnest(p_ids) i where strpos(v_message, i::text) = 0);
    if v_state <> p_sqlstate or cardinality(v_missing) > 0 then
        return ok(false, p_description) || E'\n'
            || diag(format('    raised %s: %s%s', v_state, v_message,
                           case when cardinality(v_missing) > 0 then E'\n    missing ids: ' || v_missing::text else '' end));
    end if;
    return ok(true, p_description);
end;
$$;

create or replace function chatdesk_test.as_caller(p_caller text, p_sql text)
returns text
language plpgsql
as $$
declare
    v_role   text;
    v_claims text := '';
    v_value  text;
begin
    -- Runs p_sql as one kind of caller and returns its first value as text.
    -- A web caller is set up the way PostgREST makes a request: one
    -- transaction, `set local role`, then the claims with set_config(.., true).
    --   backend            chatdesk_app
    --   backend:NAME       chatdesk_app, narrowed to operator NAME (act_as_operator)
    --   reporting          chatdesk_reporting
    --   web                chatdesk_web without claims
    --   web:NAME           chatdesk_web, claims {"sub": <fixture NAME>}
    --   web-claims:TEXT    chatdesk_web, claims TEXT as given (malformed ones too)
    -- A refusal aborts the statement, and the role goes with it.
    v_role := case when p_caller = 'backend' or p_caller like 'backend:%' then 'chatdesk_app'
                   when p_caller = 'reporting' then 'chatdesk_reporting'
                   when p_caller = 'web' or p_caller like 'web:%' or p_caller like 'web-claims:%' then 'chatdesk_web'
              end;
    if v_role is null then
        raise exception 'chatdesk_test: unknown caller %', p_caller;
    end if;
    if p_caller like 'web:%' then
        v_claims := json_build_object('sub', chatdesk_test.id(substr(p_caller, 5)), 'role', 'authenticated')::text;
    elsif p_caller like 'web-claims:%' then
        v_claims := substr(p_caller, 12);
    end if;
    execute format('set local role %I', v_role);
    perform set_config('request.jwt.claims', v_claims, true);
    if p_caller like 'backend:%' then
        perform chatdesk.act_as_operator(chatdesk_test.id(substr(p_caller, 9)));
    end if;
    execute p_sql into v_value;
    reset role;
    perform set_config('request.jwt.claims', '', true);
    perform set_config('chatdesk.operator_scope', '', true);
    return v_value;
end;
$$;

grant execute on all functions in schema chatdesk_test to public;
