-- Every transition of the contract's table: allowed ones move and log,
-- everything else (a direct UPDATE too) is refused with CD002 and writes nothing.
begin;
select chatdesk_test.setup();
select plan(30);

insert into fixtures values ('ann', create_operator('Ann', 5)), ('bob', create_operator('Bob', 5)),
                       ('user', create_real_user('Uma'));
insert into fixtures select 'c1', start_chat(id) from fixtures where name = 'user';
create function pg_temp.state(text) returns text language sql as
    $$ select chat_state from chatdesk.chats where id = chatdesk_test.id($1) $$;
create function pg_temp.events(text) returns bigint language sql as
    $$ select count(*) from chatdesk.chat_events where chat_id = chatdesk_test.id($1) $$;

-- start
select is(pg_temp.state('c1'), 'waiting_real_user_reply', 'a new chat waits for its user');
select results_eq($$ select from_state, to_state, reason from chat_events where chat_id = chatdesk_test.id('c1') $$,
    $$ values (null::text, 'waiting_real_user_reply'::text, 'start'::text) $$, 'its creation is logged');
select chatdesk_test.refuses($$ insert into chats (real_user_id, chat_state) values (chatdesk_test.id('user'), 'assigned') $$, 'CD002', array[chatdesk_test.id('user')]::uuid[], 'a chat cannot be born assigned');

-- refused from waiting_real_user_reply
select chatdesk_test.refuses($$ update chats set chat_state = 'assigned', assigned_operator_id = chatdesk_test.id('ann') where id = chatdesk_test.id('c1') $$, 'CD002', array[chatdesk_test.id('ann'), chatdesk_test.id('c1')]::uuid[], 'waiting_real_user_reply -> assigned is refused');
select throws_like($$ update chats set chat_state = 'assigned', assigned_operator_id = chatdesk_test.id('ann') where id = chatdesk_test.id('c1') $$,
    '%' || chatdesk_test.id('c1') || '%', 'the refusal names the chat');
select is(pg_temp.events('c1'), 1::bigint, 'refusals wrote no events');

-- real-user message: waiting_real_user_reply -> waiting_assignment
select ok(send_user_message(chatdesk_test.id('c1'), 'hello') > 0, 'user message accepted');
select is(pg_temp.state('c1'), 'waiting_assignment', 'a user message queues the chat');
select isnt((select queued_at from chats where id = chatdesk_test.id('c1')), null, 'queued_at is set');
create temp table q as select queued_at from chats where id = chatdesk_test.id('c1');

-- real-user message while waiting_assignment: unchanged, queued_at kept
do $$ begin perform set_config('chatdesk.clock', (now() + interval '1 minute')::text, true); end $$;
select lives_ok($$ select send_user_message(chatdesk_test.id('c1'), 'anyone?') $$, 'second user message accepted');
select is(pg_temp.state('c1'), 'waiting_assignment', 'still queued');
select is((select queued_at from chats where id = chatdesk_test.id('c1')), (select queued_at from q),
    'queued_at unchanged: first come, first served');

-- refused from waiting_assignment
select chatdesk_test.refuses($$ update chats set chat_state = 'waiting_real_user_reply' where id = chatdesk_test.id('c1') $$, 'CD002', array[chatdesk_test.id('c1')]::uuid[], 'waiting_assignment -> waiting_real_user_reply is refused');
select chatdesk_test.refuses($$ update chats set chat_state = 'closed', state_reason = 'idle' where id = chatdesk_test.id('c1') $$, 'CD002', array[chatdesk_test.id('c1')]::uuid[], 'a transition under the wrong reason is refused');

-- claim: waiting_assignment -> assigned
select is(claim_next_chat(chatdesk_test.id('ann')), chatdesk_test.id('c1'), 'ann claims the chat');
select is(pg_temp.state('c1'), 'assigned', 'claimed chat is assigned');

-- real-user message while assigned: unchanged, same operator
select lives_ok($$ select send_user_message(chatdesk_test.id('c1'), 'still there?') $$, 'user writes to an assigned chat');
select results_eq($$ select chat_state, assigned_operator_id from chats where id = chatdesk_test.id('c1') $$,
    $$ select 'assigned'::text, chatdesk_test.id('ann') $$, 'still assigned to ann');
select chatdesk_test.refuses($$ update chats set assigned_operator_id = chatdesk_test.id('bob') where id = chatdesk_test.id('c1') $$, 'CD002', array[chatdesk_test.id('bob'), chatdesk_test.id('c1')]::uuid[], 'an assigned chat cannot be handed to another operator by UPDATE');
select is(pg_temp.state('c1'), 'assigned', 'refused updates left the state alone');

-- operator reply: assigned -> waiting_real_user_reply, operator unassigned
select is((select chat_state from send_operator_message(chatdesk_test.id('c1'), chatdesk_test.id('ann'), 'hi!')),
    'waiting_real_user_reply', 'the answer hands the chat back to the user');
select is((select assigned_operator_id from chats where id = chatdesk_test.id('c1')), null, 'and unassigns ann');

-- close from every open state, and reopen by a user message
select lives_ok($$ select close_chat(chatdesk_test.id('c1')) $$, 'waiting_real_user_reply -> closed');
select chatdesk_test.refuses($$ select close_chat(chatdesk_test.id('c1')) $$, 'CD002', array[chatdesk_test.id('c1')]::uuid[], 'closing a closed chat is refused');
select chatdesk_test.refuses($$ update chats set chat_state = 'assigned', assigned_operator_id = chatdesk_test.id('ann') where id = chatdesk_test.id('c1') $$, 'CD002', array[chatdesk_test.id('ann'), chatdesk_test.id('c1')]::uuid[], 'closed -> assigned is refused');
select lives_ok($$ select send_user_message(chatdesk_test.id('c1'), 'me again') $$, 'a user writes to a closed chat');
select is(pg_temp.state('c1'), 'waiting_assignment', 'closed -> waiting_assignment by a user message');
select lives_ok($$ select close_chat(chatdesk_test.id('c1')) $$, 'waiting_assignment -> closed');
select lives_ok($$ select send_user_message(chatdesk_test.id('c1'), 'hello?'); select claim_next_chat(chatdesk_test.id('bob')); select close_chat(chatdesk_test.id('c1')) $$,
    'assigned -> closed');

select results_eq(
    $$ select from_state, to_state, reason from chat_events where chat_id = chatdesk_test.id('c1') order by id $$,
    $$ values (null, 'waiting_real_user_reply', 'start'),
              ('waiting_real_user_reply', 'waiting_assignment', 'user_message'),
              ('waiting_assignment', 'assigned', 'claim'),
              ('assigned', 'waiting_real_user_reply', 'operator_reply'),
              ('waiting_real_user_reply', 'closed', 'close'),
              ('closed', 'waiting_assignment', 'user_message'),
              ('waiting_assignment', 'closed', 'close'),
              ('closed', 'waiting_assignment', 'user_message'),
              ('waiting_assignment', 'assigned', 'claim'),
              ('assigned', 'closed', 'close') $$,
    'one chat_events row per change, with its reason, and none for refusals');

select * from finish();
rollback;
