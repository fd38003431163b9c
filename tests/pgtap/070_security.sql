-- Roles, privileges and row-level security: what an application, an
-- operator-scoped session and the reporting role may and may not do.
begin;
create extension if not exists pgtap;
set local search_path = chatdesk, public;
select plan(34);

create temp table ids (name text primary key, id uuid) on commit drop;
grant select on ids to public;
insert into ids values ('ann', create_operator('Ann', 3)), ('bob', create_operator('Bob', 3)),
                       ('uma', create_real_user('Uma')), ('ulf', create_real_user('Ulf'));
insert into ids select 'ann_chat', start_chat(id) from ids where name = 'uma';
insert into ids select 'bob_chat', start_chat(id) from ids where name = 'ulf';
create function pg_temp.id(text) returns uuid language sql as $$ select id from ids where name = $1 $$;
select send_user_message(pg_temp.id('ann_chat'), 'for ann');
select claim_next_chat(pg_temp.id('ann'));
select send_user_message(pg_temp.id('bob_chat'), 'for bob');
select claim_next_chat(pg_temp.id('bob'));

-- Run p_sql as p_role, acting for operator p_scope (null: unscoped), and
-- return its single value. A refusal rolls the role back with the statement.
create function pg_temp.as_role(p_role text, p_scope text, p_sql text) returns text language plpgsql as $$
declare v text;
begin
    perform set_config('chatdesk.operator_id', coalesce(pg_temp.id(p_scope)::text, ''), true);
    execute format('set local role %I', p_role);
    execute p_sql into v;
    reset role;
    perform set_config('chatdesk.operator_id', '', true);
    return v;
end $$;

-- ---- the application role, unscoped ----
select is(pg_temp.as_role('chatdesk_app', null, 'select count(*) from chats'), '2', 'the app reads every chat');
select lives_ok($$ select pg_temp.as_role('chatdesk_app', null, $q$ select send_user_message(pg_temp.id('ann_chat'), 'more') $q$) $$,
    'the app calls the API');
select lives_ok($$ select pg_temp.as_role('chatdesk_app', null, $q$ insert into messages (chat_id, sender_type, body) values (pg_temp.id('ann_chat'), 'real_user', 'direct') returning id $q$) $$,
    'the app inserts a message directly');
select is((select message_count from chats where id = pg_temp.id('ann_chat')), 3, 'and the triggers counted it');
select throws_ok($$ select pg_temp.as_role('chatdesk_app', null, $q$ insert into messages (chat_id, sender_type, handled_by_operator_id, body) values (pg_temp.id('ann_chat'), 'operator', pg_temp.id('bob'), 'x') returning id $q$) $$,
    'CD001', null, 'a direct insert still meets every rule');
select throws_ok($$ select pg_temp.as_role('chatdesk_app', null, $q$ update chats set chat_state = 'closed' where id = pg_temp.id('ann_chat') returning 1 $q$) $$,
    '42501', null, 'the app cannot update chat_state');
select throws_ok($$ select pg_temp.as_role('chatdesk_app', null, $q$ update chats set message_count = 0 returning 1 $q$) $$,
    '42501', null, 'the app cannot touch chat counters');
select throws_ok($$ select pg_temp.as_role('chatdesk_app', null, $q$ update operators set total_messages = 0 returning 1 $q$) $$,
    '42501', null, 'the app cannot touch operator counters');
select throws_ok($$ select pg_temp.as_role('chatdesk_app', null, $q$ insert into operator_daily_stats (operator_id, stat_date) values (pg_temp.id('ann'), '2026-01-01') returning 1 $q$) $$,
    '42501', null, 'the app cannot write stats directly');
select throws_ok($$ select pg_temp.as_role('chatdesk_app', null, $q$ delete from messages returning 1 $q$) $$,
    '42501', null, 'the app cannot delete messages');
select throws_ok($$ select pg_temp.as_role('chatdesk_app', null, $q$ delete from chats returning 1 $q$) $$,
    '42501', null, 'the app cannot delete chats');
select throws_ok($$ select pg_temp.as_role('chatdesk_app', null, $q$ insert into chat_events (chat_id, to_state, reason, created_at) values (pg_temp.id('ann_chat'), 'closed', 'close', now()) returning 1 $q$) $$,
    '42501', null, 'the app cannot forge chat events');
select throws_ok($$ select pg_temp.as_role('chatdesk_app', null, $q$ select count(*) from verify_counters(true) $q$) $$,
    '42501', null, 'repairing counters is for the owner only');
select lives_ok($$ select pg_temp.as_role('chatdesk_app', null, $q$ select rollup_operator_stats('2026-01-01') $q$) $$,
    'the app (cron) may run the rollup');

-- ---- an operator-scoped session ----
select is(pg_temp.as_role('chatdesk_app', 'ann', 'select count(*) from chats'), '1', 'ann''s session sees one chat');
select is(pg_temp.as_role('chatdesk_app', 'ann', 'select id::text from chats'), pg_temp.id('ann_chat')::text, 'her own');
select is(pg_temp.as_role('chatdesk_app', 'ann', $q$ select count(*) from messages where chat_id = pg_temp.id('bob_chat') $q$), '0',
    'she cannot read bob''s messages');
select is(pg_temp.as_role('chatdesk_app', 'ann', $q$ select count(*) from messages $q$),
    (select count(*)::text from messages where chat_id = pg_temp.id('ann_chat')), 'only her chat''s messages');
select is(pg_temp.as_role('chatdesk_app', 'ann', 'select string_agg(display_name, '','') from real_users'), 'Uma',
    'only the users of her chats');
select is(pg_temp.as_role('chatdesk_app', 'ann', $q$ select count(*) from chat_events where chat_id = pg_temp.id('bob_chat') $q$), '0',
    'nor bob''s chat events');
select is(pg_temp.as_role('chatdesk_app', 'ann', $q$ select assigned_chats from operator_load where operator_id = pg_temp.id('bob') $q$), '1',
    'operator loads are numbers every session may see (the chats behind them are not)');
select lives_ok($$ select pg_temp.as_role('chatdesk_app', 'ann', $q$ select message_id from send_operator_message(pg_temp.id('ann_chat'), pg_temp.id('ann'), 'hello', null, null) $q$) $$,
    'ann answers her chat');
select throws_ok($$ select pg_temp.as_role('chatdesk_app', 'ann', $q$ select message_id from send_operator_message(pg_temp.id('bob_chat'), pg_temp.id('ann'), 'hi') $q$) $$,
    'CD001', null, 'ann cannot write into bob''s chat');
select throws_ok($$ select pg_temp.as_role('chatdesk_app', 'ann', $q$ insert into messages (chat_id, sender_type, handled_by_operator_id, body) values (pg_temp.id('bob_chat'), 'operator', pg_temp.id('ann'), 'x') returning id $q$) $$,
    'CD001', null, 'nor by a direct insert');
select throws_ok($$ select pg_temp.as_role('chatdesk_app', 'ann', $q$ select message_id from send_operator_message(pg_temp.id('bob_chat'), pg_temp.id('bob'), 'hi') $q$) $$,
    '42501', null, 'ann''s session cannot write as bob');
select throws_ok($$ select pg_temp.as_role('chatdesk_app', 'ann', $q$ insert into messages (chat_id, sender_type, body) values (pg_temp.id('bob_chat'), 'real_user', 'x') returning id $q$) $$,
    '42501', null, 'nor as a user');
select throws_ok($$ select pg_temp.as_role('chatdesk_app', 'ann', $q$ select claim_next_chat(pg_temp.id('bob')) $q$) $$,
    '42501', null, 'nor claim for bob');
select throws_ok($$ select pg_temp.as_role('chatdesk_app', 'ann', $q$ select close_chat(pg_temp.id('bob_chat')) $q$) $$,
    'CD001', null, 'nor close bob''s chat');
select throws_ok($$ select pg_temp.as_role('chatdesk_app', 'ann', $q$ select create_operator('Mallory') $q$) $$,
    '42501', null, 'an operator session cannot create operators');

-- ---- reporting ----
select lives_ok($$ select pg_temp.as_role('chatdesk_reporting', null, 'select count(*) from operator_daily_stats') $$,
    'reporting reads the stats');
select throws_ok($$ select pg_temp.as_role('chatdesk_reporting', null, 'select count(*) from messages') $$,
    '42501', null, 'reporting cannot read messages');
select throws_ok($$ select pg_temp.as_role('chatdesk_reporting', null, $q$ select rollup_operator_stats('2026-01-01') $q$) $$,
    '42501', null, 'reporting cannot write stats');

-- ---- the functions themselves ----
select is_empty($$ select p.oid::regprocedure from pg_proc p
                   where p.pronamespace = 'chatdesk'::regnamespace
                     and has_function_privilege('public', p.oid, 'execute') $$,
    'no chatdesk function is executable by PUBLIC');
select is_empty($$ select p.oid::regprocedure from pg_proc p
                   where p.pronamespace = 'chatdesk'::regnamespace and p.prosecdef
                     and not ('search_path=chatdesk, pg_temp' = any (p.proconfig))
                      or p.pronamespace = 'chatdesk'::regnamespace and p.prosecdef
                     and pg_get_userbyid(p.proowner) <> 'chatdesk_owner' $$,
    'every security definer function pins search_path and runs as chatdesk_owner');

select * from finish();
rollback;
