-- Who may do what (docs/contract.md): a trusted backend, a backend narrowed
-- to one operator, web callers (operators, visitors, no identity) through
-- PostgREST's per-request protocol, and reporting. Each rule is attacked as
-- another identity and as no identity.
begin;
select chatdesk_test.setup();
select plan(75);

insert into fixtures values ('ann_login', gen_random_uuid()), ('bob_login', gen_random_uuid()),
                            ('uma_login', gen_random_uuid()), ('ulf_login', gen_random_uuid()),
                            ('stranger', gen_random_uuid());
insert into fixtures values ('ann', create_operator('Ann', 3, chatdesk_test.id('ann_login'))),
                            ('bob', create_operator('Bob', 3, chatdesk_test.id('bob_login'))),
                            ('uma', create_real_user('Uma', chatdesk_test.id('uma_login'))),
                            ('ulf', create_real_user('Ulf', chatdesk_test.id('ulf_login')));
insert into fixtures select 'ann_chat', start_chat(chatdesk_test.id('uma'));
insert into fixtures select 'bob_chat', start_chat(chatdesk_test.id('ulf'));
insert into fixtures select 'queued_chat', start_chat(chatdesk_test.id('ulf'));
select send_user_message(chatdesk_test.id('ann_chat'), 'for ann');
select claim_next_chat(chatdesk_test.id('ann'));
select send_user_message(chatdesk_test.id('bob_chat'), 'for bob');
select claim_next_chat(chatdesk_test.id('bob'));
select send_user_message(chatdesk_test.id('queued_chat'), 'waiting');

-- ---- a trusted backend ----
select is(chatdesk_test.as_caller('backend', 'select count(*) from chats'), (select count(*)::text from chats), 'the backend reads every chat');
select lives_ok($$ select chatdesk_test.as_caller('backend', $q$ select send_user_message(chatdesk_test.id('ann_chat'), 'more') $q$) $$,
    'the backend calls the API for anyone');
select lives_ok($$ select chatdesk_test.as_caller('backend', $q$ insert into messages (chat_id, sender_type, body) values (chatdesk_test.id('ann_chat'), 'real_user', 'direct') returning id $q$) $$,
    'the backend inserts a message directly');
select is((select message_count from chats where id = chatdesk_test.id('ann_chat')), 3, 'and the triggers counted it');
select chatdesk_test.refuses($$ select chatdesk_test.as_caller('backend', $q$ insert into messages (chat_id, sender_type, handled_by_operator_id, body) values (chatdesk_test.id('ann_chat'), 'operator', chatdesk_test.id('bob'), 'x') returning id $q$) $$,
    'CD001', array[chatdesk_test.id('ann_chat'), chatdesk_test.id('bob')], 'a direct insert still meets every rule');
select throws_ok($$ select chatdesk_test.as_caller('backend', $q$ update chats set chat_state = 'closed' where id = chatdesk_test.id('ann_chat') returning 1 $q$) $$,
    '42501', null, 'the backend cannot update chat_state');
select throws_ok($$ select chatdesk_test.as_caller('backend', $q$ update operators set total_messages = 0 returning 1 $q$) $$,
    '42501', null, 'nor operator counters');
select throws_ok($$ select chatdesk_test.as_caller('backend', $q$ insert into operator_daily_stats (operator_id, stat_date) values (chatdesk_test.id('ann'), '2026-01-01') returning 1 $q$) $$,
    '42501', null, 'nor write stats directly');
select throws_ok($$ select chatdesk_test.as_caller('backend', $q$ delete from messages returning 1 $q$) $$,
    '42501', null, 'nor delete messages');
select throws_ok($$ select chatdesk_test.as_caller('backend', $q$ insert into chat_events (chat_id, to_state, reason, created_at) values (chatdesk_test.id('ann_chat'), 'closed', 'close', now()) returning 1 $q$) $$,
    '42501', null, 'nor forge chat events');
select throws_ok($$ select chatdesk_test.as_caller('backend', $q$ select count(*) from verify_counters(true) $q$) $$,
    '42501', null, 'repairing counters is for the owner only');
select lives_ok($$ select chatdesk_test.as_caller('backend', $q$ select rollup_operator_stats('2026-01-01') $q$) $$,
    'the backend (cron) runs the rollup');

-- ---- a backend narrowed to one operator for one transaction ----
select is(chatdesk_test.as_caller('backend:ann', 'select string_agg(id::text, '','') from chats'), chatdesk_test.id('ann_chat')::text,
    'a transaction acting for ann sees her chat only');
select is(chatdesk_test.as_caller('backend:ann', $q$ select count(*) from messages where chat_id = chatdesk_test.id('bob_chat') $q$), '0',
    'not bob''s messages');
select is(chatdesk_test.as_caller('backend:ann', 'select string_agg(display_name, '','') from real_users'), 'Uma',
    'only the users of her chats');
-- (ann answers having seen only the first message, so the chat stays hers)
select lives_ok($$ select chatdesk_test.as_caller('backend:ann', $q$ select message_id from send_operator_message(chatdesk_test.id('ann_chat'), chatdesk_test.id('ann'), 'hello', null, (select min(id) from messages where chat_id = chatdesk_test.id('ann_chat'))) $q$) $$,
    'ann answers her chat');
select chatdesk_test.refuses($$ select chatdesk_test.as_caller('backend:ann', $q$ select message_id from send_operator_message(chatdesk_test.id('bob_chat'), chatdesk_test.id('bob'), 'hi') $q$) $$,
    '42501', array[chatdesk_test.id('ann'), chatdesk_test.id('bob')], 'the transaction cannot write as bob');
select chatdesk_test.refuses($$ select chatdesk_test.as_caller('backend:ann', $q$ select send_user_message(chatdesk_test.id('ann_chat'), 'as the visitor') $q$) $$,
    '42501', array[chatdesk_test.id('ann'), chatdesk_test.id('ann_chat')], 'nor as the visitor, even in her own chat');
select chatdesk_test.refuses($$ select chatdesk_test.as_caller('backend:ann', $q$ select claim_next_chat(chatdesk_test.id('bob')) $q$) $$,
    '42501', array[chatdesk_test.id('ann'), chatdesk_test.id('bob')], 'nor claim for bob');
select chatdesk_test.refuses($$ select chatdesk_test.as_caller('backend:ann', $q$ select close_chat(chatdesk_test.id('bob_chat')) $q$) $$,
    'CD001', array[chatdesk_test.id('ann'), chatdesk_test.id('bob_chat')], 'nor close bob''s chat');
select throws_ok($$ select chatdesk_test.as_caller('backend:ann', $q$ select create_operator('Mallory') $q$) $$,
    '42501', null, 'nor create operators');
select throws_ok($$ select chatdesk_test.as_caller('backend:ann', $q$ select release_idle_chats('1 second') $q$) $$,
    '42501', null, 'nor release everyone''s idle chats');
select throws_ok($$ select chatdesk_test.as_caller('backend:ann', $q$ select update_operator_stats(chatdesk_test.id('bob'), '2026-01-01') $q$) $$,
    '42501', null, 'nor write anyone''s stats');
select set_config('chatdesk.operator_id', chatdesk_test.id('ann')::text, false);
select is(chatdesk_test.as_caller('backend', 'select count(*) from chats'), (select count(*)::text from chats),
    'a session-level chatdesk.operator_id is ignored: the backend still sees every chat');
select set_config('chatdesk.operator_scope', chatdesk_test.id('ann') || ' 1@2000-01-01 00:00:00+00', false);
select is(chatdesk_test.as_caller('backend', 'select count(*) from chats'), (select count(*)::text from chats),
    'a scope left by another transaction is ignored');
select set_config('chatdesk.operator_scope', '', false);

-- ---- a web operator, as PostgREST calls it ----
select is(chatdesk_test.as_caller('web:ann_login', 'select string_agg(id::text, '','' order by id) from chats'),
    (select string_agg(id::text, ',' order by id) from chats
      where id = chatdesk_test.id('ann_chat') or chat_state = 'waiting_assignment'),  -- queued_chat, and any other queued
    'a web operator sees the queue and her own chat, nothing else');
select is(chatdesk_test.as_caller('web:ann_login', 'select count(*) from messages'),
    (select count(*)::text from messages where chat_id = chatdesk_test.id('ann_chat')), 'the messages of her chat only');
select is(chatdesk_test.as_caller('web:ann_login', $q$ select count(*) from messages where chat_id = chatdesk_test.id('queued_chat') $q$), '0',
    'not the queued chat''s messages');
select is(chatdesk_test.as_caller('web:ann_login', 'select count(distinct chat_id) from chat_events'), '1', 'the events of her chat only');
select is(chatdesk_test.as_caller('web:ann_login', 'select string_agg(name, '','') from operators'), 'Ann', 'her own operator row only');
select is(chatdesk_test.as_caller('web:ann_login', 'select string_agg(name, '','') from operator_load'), 'Ann', 'through the load view too');
select is(chatdesk_test.as_caller('web:ann_login', 'select string_agg(display_name, '','') from real_users'), 'Uma', 'the users of her chats only');
select lives_ok($$ select chatdesk_test.as_caller('web:ann_login', $q$ select message_id from send_operator_message(chatdesk_test.id('ann_chat'), chatdesk_test.id('ann'), 'web hello', null, (select min(id) from messages where chat_id = chatdesk_test.id('ann_chat'))) $q$) $$,
    'she answers her chat as herself');
select chatdesk_test.refuses($$ select chatdesk_test.as_caller('web:ann_login', $q$ select message_id from send_operator_message(chatdesk_test.id('bob_chat'), chatdesk_test.id('bob'), 'hi') $q$) $$,
    '42501', array[chatdesk_test.id('ann'), chatdesk_test.id('bob')], 'she cannot write as bob');
select throws_ok($$ select chatdesk_test.as_caller('web:ann_login', $q$ select message_id from send_operator_message(chatdesk_test.id('ann_chat'), chatdesk_test.id('ann'), 'no seen id') $q$) $$,
    '23514', null, 'a web operator must say what it has seen: no seen id, no answer (the reply race)');
select throws_ok($$ select chatdesk_test.as_caller('web:ann_login', $q$ select message_id from send_operator_message(chatdesk_test.id('bob_chat'), chatdesk_test.id('ann'), 'hi', null, 1) $q$) $$,
    'CD001', format('chatdesk: operator %s is not the assignee of chat %s', chatdesk_test.id('ann'), chatdesk_test.id('bob_chat')),
    'writing into bob''s chat is CD001, naming only her and the chat she passed');
select throws_ok($$ select chatdesk_test.as_caller('web:ann_login', $q$ select message_id from send_operator_message(chatdesk_test.id('ann_chat'), chatdesk_test.id('ann'), E'\u200B\u00A0') $q$) $$,
    '23514', null, 'a body of invisible characters is blank, for web callers too');
select chatdesk_test.refuses($$ select chatdesk_test.as_caller('web:ann_login', $q$ select claim_next_chat(chatdesk_test.id('bob')) $q$) $$,
    '42501', array[chatdesk_test.id('ann'), chatdesk_test.id('bob')], 'she cannot claim as bob');
select throws_ok($$ select chatdesk_test.as_caller('web:ann_login', $q$ select release_chat(chatdesk_test.id('bob_chat'), chatdesk_test.id('ann')) $q$) $$,
    'CD001', format('chatdesk: operator %s is not the assignee of chat %s', chatdesk_test.id('ann'), chatdesk_test.id('bob_chat')),
    'nor release bob''s chat (told nothing about it)');
select throws_ok($$ select chatdesk_test.as_caller('web:ann_login', $q$ select release_chat('00000000-0000-0000-0000-000000000000', chatdesk_test.id('ann')) $q$) $$,
    'CD001', format('chatdesk: operator %s is not the assignee of chat %s', chatdesk_test.id('ann'), '00000000-0000-0000-0000-000000000000'),
    'an unknown chat gets the same answer');
select throws_ok($$ select chatdesk_test.as_caller('web:ann_login', $q$ select create_operator('Mallory') $q$) $$,
    '42501', null, 'a web operator cannot create operators');
select throws_ok($$ select chatdesk_test.as_caller('web:ann_login', $q$ select release_idle_chats('1 second') $q$) $$,
    '42501', null, 'nor release idle chats');
select throws_ok($$ select chatdesk_test.as_caller('web:ann_login', $q$ select rollup_operator_stats('2026-01-01') $q$) $$,
    '42501', null, 'nor roll up stats');
select throws_ok($$ select chatdesk_test.as_caller('web:ann_login', $q$ insert into messages (chat_id, sender_type, handled_by_operator_id, body) values (chatdesk_test.id('ann_chat'), 'operator', chatdesk_test.id('ann'), 'x') returning id $q$) $$,
    '42501', null, 'nor insert messages directly');
select set_config('chatdesk.operator_id', chatdesk_test.id('bob')::text, false);
select set_config('chatdesk.operator_scope', chatdesk_test.id('bob') || ' ' || chatdesk.transaction_mark(), false);
select is(chatdesk_test.as_caller('web:ann_login', 'select count(*) from chats'),
    (select count(*)::text from chats where id = chatdesk_test.id('ann_chat') or chat_state = 'waiting_assignment'),
    'chatdesk.operator_id or a forged scope never changes a web caller''s identity');
select set_config('chatdesk.operator_scope', '', false);
select set_config('chatdesk.operator_id', '', false);
select is(chatdesk_test.as_caller('web:ann_login', $q$ select claim_next_chat(chatdesk_test.id('ann'))::text $q$),
    chatdesk_test.id('queued_chat')::text, 'she claims the queued chat as herself');
select lives_ok($$ select chatdesk_test.as_caller('web:ann_login', $q$ select heartbeat(chatdesk_test.id('ann')) $q$) $$,
    'and sends her heartbeat');

-- ---- a web visitor ----
select is(chatdesk_test.as_caller('web:uma_login', 'select string_agg(id::text, '','') from chats'), chatdesk_test.id('ann_chat')::text,
    'a visitor sees her own chat only');
select is(chatdesk_test.as_caller('web:uma_login', 'select count(*) from messages'),
    (select count(*)::text from messages where chat_id = chatdesk_test.id('ann_chat')), 'and its messages');
select is(chatdesk_test.as_caller('web:uma_login', 'select count(*) from chat_events'), '0', 'no chat events');
select is(chatdesk_test.as_caller('web:uma_login', 'select count(*) from operators'), '0', 'no operators');
select is(chatdesk_test.as_caller('web:uma_login', 'select string_agg(display_name, '','') from real_users'), 'Uma', 'her own user row only');
select lives_ok($$ select chatdesk_test.as_caller('web:uma_login', $q$ select send_user_message(chatdesk_test.id('ann_chat'), 'from the browser', 'b-1') $q$) $$,
    'she writes to her chat');
select chatdesk_test.refuses($$ select chatdesk_test.as_caller('web:uma_login', $q$ select send_user_message(chatdesk_test.id('bob_chat'), 'hi') $q$) $$,
    '42501', array[chatdesk_test.id('uma'), chatdesk_test.id('bob_chat')], 'not to ulf''s chat');
select throws_ok($$ select chatdesk_test.as_caller('web:uma_login', $q$ select send_user_message('00000000-0000-0000-0000-000000000000', 'hi') $q$) $$,
    '42501', format('chatdesk: real user %s may not write to chat 00000000-0000-0000-0000-000000000000', chatdesk_test.id('uma')),
    'an unknown chat gets the same answer');
select isnt(chatdesk_test.as_caller('web:uma_login', $q$ select start_chat(chatdesk_test.id('uma'))::text $q$), null, 'she starts a chat as herself');
select chatdesk_test.refuses($$ select chatdesk_test.as_caller('web:uma_login', $q$ select start_chat(chatdesk_test.id('ulf')) $q$) $$,
    '42501', array[chatdesk_test.id('uma'), chatdesk_test.id('ulf')], 'not as ulf');
select throws_ok($$ select chatdesk_test.as_caller('web:uma_login', $q$ select message_id from send_operator_message(chatdesk_test.id('ann_chat'), chatdesk_test.id('ann'), 'pretending') $q$) $$,
    '42501', null, 'she cannot answer as an operator');
select throws_ok($$ select chatdesk_test.as_caller('web:uma_login', $q$ select close_chat(chatdesk_test.id('bob_chat')) $q$) $$,
    '42501', null, 'nor close ulf''s chat');
select lives_ok($$ select chatdesk_test.as_caller('web:uma_login', $q$ select close_chat(chatdesk_test.id('ann_chat')) $q$) $$,
    'she closes her own chat');

-- ---- web callers that are nobody: fail closed ----
select is(chatdesk_test.as_caller('web', 'select count(*) from chats'), '0', 'no claims: no chats');
select is(chatdesk_test.as_caller('web-claims:{not json', 'select count(*) from chats'), '0', 'malformed claims: no chats');
select is(chatdesk_test.as_caller('web-claims:{"sub": "not-a-uuid"}', 'select count(*) from chats'), '0', 'a sub that is not a uuid: no chats');
select is(chatdesk_test.as_caller('web-claims:[1, 2]', 'select count(*) from messages'), '0', 'claims that are not an object: no messages');
select is(chatdesk_test.as_caller('web:stranger', 'select count(*) from chats'), '0', 'an unknown sub: no chats');
select throws_ok($$ select chatdesk_test.as_caller('web', $q$ select send_user_message(chatdesk_test.id('ann_chat'), 'hi') $q$) $$,
    '42501', null, 'no identity cannot write');
select throws_ok($$ select chatdesk_test.as_caller('web:stranger', $q$ select claim_next_chat(chatdesk_test.id('ann')) $q$) $$,
    '42501', null, 'an unknown sub cannot claim for anyone');

-- ---- reporting ----
select lives_ok($$ select chatdesk_test.as_caller('reporting', 'select count(*) from operator_daily_stats') $$, 'reporting reads the stats');
select is(chatdesk_test.as_caller('reporting', 'select count(*) from chats'), (select count(*)::text from chats), 'and chat counts');
select throws_ok($$ select chatdesk_test.as_caller('reporting', 'select count(*) from messages') $$, '42501', null, 'but no messages');
select throws_ok($$ select chatdesk_test.as_caller('reporting', 'select count(*) from real_users') $$, '42501', null, 'nor who the visitors are');
select throws_ok($$ select chatdesk_test.as_caller('reporting', $q$ select rollup_operator_stats('2026-01-01') $q$) $$,
    '42501', null, 'and writes nothing');

-- ---- the catalog ----
select is_empty($$ select p.oid::regprocedure from pg_proc p
                   where p.pronamespace = 'chatdesk'::regnamespace
                     and has_function_privilege('public', p.oid, 'execute') $$,
    'no chatdesk function is executable by PUBLIC');
select is_empty($$ select p.oid::regprocedure from pg_proc p
                   where p.pronamespace = 'chatdesk'::regnamespace and p.prosecdef
                     and (not ('search_path=chatdesk, pg_temp' = any (p.proconfig))
                          or pg_get_userbyid(p.proowner) <> 'chatdesk_owner') $$,
    'every security definer function pins search_path and runs as chatdesk_owner');
select is_empty($$ select c.relname from pg_class c
                   where c.relnamespace = 'chatdesk'::regnamespace and c.relkind = 'r' and not c.relrowsecurity
                     and (has_table_privilege('chatdesk_web', c.oid, 'select')
                          or has_table_privilege('chatdesk_app', c.oid, 'select,insert')
                          and c.relname not in ('settings', 'state_transitions', 'business_hours', 'holidays',
                                                'hourly_load', 'queue_samples')) $$,
    'every table an application role reads (but configuration and identity-free aggregates) is under row-level security');

select * from finish();
rollback;
