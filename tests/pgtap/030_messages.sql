-- Message rules: validation, unknown ids, assignee only, closed chats,
-- idempotent retries, the reply race, and direct INSERTs under the same rules.
begin;
select chatdesk_test.setup();
select plan(39);

insert into fixtures values ('ann', create_operator('Ann', 5)), ('bob', create_operator('Bob', 5)),
                       ('user', create_real_user('Uma'));
insert into fixtures select 'c1', start_chat(id) from fixtures where name = 'user';
insert into fixtures select 'c2', start_chat(id) from fixtures where name = 'user';
create temp table before_counts as select (select count(*) from messages) as messages, (select count(*) from chat_events) as events;

-- bodies and ids
select chatdesk_test.refuses($$ select send_user_message(chatdesk_test.id('c1'), '') $$, '23514', array[chatdesk_test.id('c1')]::uuid[], 'an empty body is refused');
select chatdesk_test.refuses($$ select send_user_message(chatdesk_test.id('c1'), E' \n\t ') $$, '23514', array[chatdesk_test.id('c1')]::uuid[], 'a blank body is refused');
select chatdesk_test.refuses($$ select send_user_message(chatdesk_test.id('c1'), null) $$, '23514', array[chatdesk_test.id('c1')]::uuid[], 'a null body is refused');
select chatdesk_test.refuses($$ select send_user_message(chatdesk_test.id('c1'), repeat('x', 10001)) $$, '23514', array[chatdesk_test.id('c1')]::uuid[], 'a body over 10,000 characters is refused');
select lives_ok($$ select send_user_message(chatdesk_test.id('c1'), repeat('x', 10000)) $$, 'a body of exactly 10,000 characters is accepted');
select chatdesk_test.refuses($$ select send_user_message('00000000-0000-0000-0000-000000000000', 'hi') $$, '23503', array['00000000-0000-0000-0000-000000000000']::uuid[], 'an unknown chat is refused');
select throws_like($$ select send_user_message('00000000-0000-0000-0000-000000000000', 'hi') $$,
    '%00000000-0000-0000-0000-000000000000%', 'the refusal names the chat');
select chatdesk_test.refuses($$ select send_user_message(null, 'hi') $$, '23503', '{}'::uuid[], 'a null chat is refused');
select chatdesk_test.refuses($$ select start_chat('00000000-0000-0000-0000-000000000000') $$, '23503', array['00000000-0000-0000-0000-000000000000']::uuid[], 'start_chat refuses an unknown user');
select chatdesk_test.refuses($$ select create_operator('  ') $$, '23514', '{}'::uuid[], 'a blank operator name is refused');
select chatdesk_test.refuses($$ select create_operator('Cy', 0) $$, '23514', '{}'::uuid[], 'a capacity of 0 is refused');
select chatdesk_test.refuses($$ select create_real_user('') $$, '23514', '{}'::uuid[], 'a blank display name is refused');
select is((select count(*) from messages), (select messages + 1 from before_counts), 'refusals wrote no messages (only the 10,000-character one is there)');

-- operators: only the assignee, never into a closed chat
select send_user_message(chatdesk_test.id('c1'), 'hello', 'u-1');
select chatdesk_test.refuses($$ select * from send_operator_message(chatdesk_test.id('c1'), chatdesk_test.id('ann'), 'hi') $$, 'CD001', array[chatdesk_test.id('c1'), chatdesk_test.id('ann')]::uuid[], 'an operator cannot answer a queued chat it does not own');
select is(claim_next_chat(chatdesk_test.id('ann')), chatdesk_test.id('c1'), 'ann claims c1');
select chatdesk_test.refuses($$ select * from send_operator_message(chatdesk_test.id('c1'), chatdesk_test.id('bob'), 'hi') $$, 'CD001', array[chatdesk_test.id('c1'), chatdesk_test.id('bob')]::uuid[], 'bob cannot write into ann''s chat');
select throws_like($$ select * from send_operator_message(chatdesk_test.id('c1'), chatdesk_test.id('bob'), 'hi') $$,
    '%' || chatdesk_test.id('bob') || '%' || chatdesk_test.id('c1') || '%', 'the refusal names the operator and the chat');
select chatdesk_test.refuses($$ insert into messages (chat_id, sender_type, handled_by_operator_id, body) values (chatdesk_test.id('c1'), 'operator', chatdesk_test.id('bob'), 'sneaky') $$, 'CD001', array[chatdesk_test.id('c1'), chatdesk_test.id('bob')]::uuid[], 'a direct INSERT gets the same refusal');
select chatdesk_test.refuses($$ select * from send_operator_message(chatdesk_test.id('c1'), '00000000-0000-0000-0000-000000000000', 'hi') $$, '23503', array[chatdesk_test.id('c1'), '00000000-0000-0000-0000-000000000000']::uuid[], 'an unknown operator is refused');
select chatdesk_test.refuses($$ insert into messages (chat_id, sender_type, handled_by_operator_id, body) values (chatdesk_test.id('c1'), 'real_user', chatdesk_test.id('ann'), 'x') $$, '23514', array[chatdesk_test.id('c1'), chatdesk_test.id('ann')]::uuid[], 'a user message cannot carry an operator');

-- the reply race: the user wrote after what the operator saw
create temp table seen as select max(id) as id from messages where chat_id = chatdesk_test.id('c1');
select send_user_message(chatdesk_test.id('c1'), 'wait, one more thing!');
select results_eq(
    $$ select chat_state, user_replied_meanwhile from send_operator_message(chatdesk_test.id('c1'), chatdesk_test.id('ann'), 'sure', 'o-1', (select id from seen)) $$,
    $$ values ('assigned'::text, true) $$,
    'an answer that missed a newer user message keeps the chat assigned and says so');
select is((select assigned_operator_id from chats where id = chatdesk_test.id('c1')), chatdesk_test.id('ann'), 'still ann''s');
select chatdesk_test.refuses($$ select * from send_operator_message(chatdesk_test.id('c1'), chatdesk_test.id('ann'), 'x', null, 999999999) $$, '23503', array[chatdesk_test.id('c1'), chatdesk_test.id('ann')]::uuid[], 'a seen id that is not a message of the chat is refused');
select results_eq(
    $$ select chat_state, user_replied_meanwhile from send_operator_message(chatdesk_test.id('c1'), chatdesk_test.id('ann'), 'and the other thing', 'o-2',
           (select max(id) from messages where chat_id = chatdesk_test.id('c1') and sender_type = 'real_user')) $$,
    $$ values ('waiting_real_user_reply'::text, false) $$,
    'having seen everything, the answer hands the chat back');

-- idempotent retries
select is(send_user_message(chatdesk_test.id('c1'), 'hello', 'u-1'),
          (select id from messages where chat_id = chatdesk_test.id('c1') and client_message_id = 'u-1'),
          'a user retry returns the first message''s id');
select results_eq(
    $$ select message_id, user_replied_meanwhile from send_operator_message(chatdesk_test.id('c1'), chatdesk_test.id('ann'), 'sure', 'o-1', (select id from seen)) $$,
    $$ select id, true from messages where chat_id = chatdesk_test.id('c1') and client_message_id = 'o-1' $$,
    'an operator retry returns the first message, with its result, after the chat moved on');
select lives_ok($$ insert into messages (chat_id, sender_type, body, client_message_id) values (chatdesk_test.id('c1'), 'real_user', 'hello', 'u-1') $$,
    'a direct INSERT of a retry is accepted');
select is((select count(*) from messages where chat_id = chatdesk_test.id('c1') and client_message_id = 'u-1'), 1::bigint,
    'and writes nothing');
select is((select message_count from chats where id = chatdesk_test.id('c1')), 5, 'retries did not count');
select lives_ok($$ select send_user_message(chatdesk_test.id('c2'), 'hello', 'u-1') $$, 'the same client id in another chat is another message');
-- a message is history: its time may not be rewritten
select chatdesk_test.refuses($$ update messages set created_at = created_at - interval '1 hour'
                                where id = (select min(id) from messages where chat_id = chatdesk_test.id('c1')) $$,
    '23514', array[chatdesk_test.id('c1')], 'a message''s created_at cannot change');
-- a system message is a sender of its own: its client id is not the user's
insert into messages (chat_id, sender_type, body, client_message_id) values (chatdesk_test.id('c2'), 'system', 'note', 's-1');
select isnt(send_user_message(chatdesk_test.id('c2'), 'my own', 's-1'),
            (select id from messages where chat_id = chatdesk_test.id('c2') and sender_type = 'system'),
            'a user message with a system message''s client id is a new message');
select is((select count(*) from messages where chat_id = chatdesk_test.id('c2') and client_message_id = 's-1'), 2::bigint,
    'both are kept, one per sender');

-- operator message to a closed chat
select send_user_message(chatdesk_test.id('c2'), 'help');
select is(claim_next_chat(chatdesk_test.id('bob')), chatdesk_test.id('c2'), 'bob claims c2');
select close_chat(chatdesk_test.id('c2'));
select chatdesk_test.refuses($$ select * from send_operator_message(chatdesk_test.id('c2'), chatdesk_test.id('bob'), 'hi') $$, 'CD005', array[chatdesk_test.id('c2'), chatdesk_test.id('bob')]::uuid[], 'nobody writes as operator into a closed chat');

-- ids, times, and the direct-insert path's state change
select ok((select bool_and(created_at is not null) from messages), 'every message got a created_at');
select lives_ok($$ insert into messages (chat_id, sender_type, body) values (chatdesk_test.id('c1'), 'real_user', 'direct') $$,
    'a direct INSERT of a user message');
select is((select chat_state from chats where id = chatdesk_test.id('c1')), 'waiting_assignment',
    'moves the chat exactly as send_user_message does');
select chatdesk_test.refuses($$ update messages set chat_id = chatdesk_test.id('c2') where chat_id = chatdesk_test.id('c1') $$, '23514', array[chatdesk_test.id('c2'), chatdesk_test.id('c1')]::uuid[], 'a message cannot move to another chat');

select * from finish();
rollback;
