-- Assignment: FIFO claims, capacity, inactive operators, the empty queue,
-- release keeps the place, idle release with a controlled clock.
begin;
select chatdesk_test.setup();
select plan(27);

insert into fixtures values ('ann', create_operator('Ann', 2)), ('bob', create_operator('Bob', 1)),
                       ('cy', create_operator('Cy', 3)), ('user', create_real_user('Uma'));
insert into fixtures select 'c' || n, start_chat(id) from fixtures, generate_series(1, 4) n where name = 'user';

select chatdesk_test.at('2026-02-01 08:59:00+00');
select is(claim_next_chat(chatdesk_test.id('ann')), null, 'an empty queue gives null');

-- queue c3, c1, c2 in that order (c4 stays with its user)
select chatdesk_test.at('2026-02-01 09:00:00+00');
select send_user_message(chatdesk_test.id('c3'), 'first');
select chatdesk_test.at('2026-02-01 09:01:00+00');
select send_user_message(chatdesk_test.id('c1'), 'second');
select chatdesk_test.at('2026-02-01 09:02:00+00');
select send_user_message(chatdesk_test.id('c2'), 'third');
select send_user_message(chatdesk_test.id('c3'), 'first again, keeps its place');

select chatdesk_test.at('2026-02-01 09:10:00+00');
select is(claim_next_chat(chatdesk_test.id('ann')), chatdesk_test.id('c3'), 'the oldest queued_at comes first');
select is(claim_next_chat(chatdesk_test.id('ann')), chatdesk_test.id('c1'), 'then the next oldest');
select chatdesk_test.refuses($$ select claim_next_chat(chatdesk_test.id('ann')) $$, 'CD004', array[chatdesk_test.id('ann')]::uuid[], 'ann at capacity 2 is refused');
select throws_like($$ select claim_next_chat(chatdesk_test.id('ann')) $$, '%' || chatdesk_test.id('ann') || '%2 of 2%',
    'the refusal names the operator and the load');
select is((select count(*) from chats where chat_state = 'waiting_assignment' and id in (select id from fixtures)), 1::bigint, 'the refused claim took nothing');
select is((select chat_state from chats where id = chatdesk_test.id('c2')), 'waiting_assignment', 'c2 still queued');

select set_operator_active(chatdesk_test.id('cy'), false);
select chatdesk_test.refuses($$ select claim_next_chat(chatdesk_test.id('cy')) $$, 'CD003', array[chatdesk_test.id('cy')]::uuid[], 'an inactive operator cannot claim');
select chatdesk_test.refuses($$ select claim_next_chat('00000000-0000-0000-0000-000000000000') $$, '23503', array['00000000-0000-0000-0000-000000000000']::uuid[], 'an unknown operator cannot claim');
select chatdesk_test.refuses($$ select claim_next_chat(null) $$, '23503', '{}'::uuid[], 'a null operator cannot claim');

-- release keeps the place
select chatdesk_test.refuses($$ select release_chat(chatdesk_test.id('c3'), chatdesk_test.id('bob')) $$, 'CD001', array[chatdesk_test.id('c3'), chatdesk_test.id('bob')]::uuid[], 'only the assignee can release');
select chatdesk_test.refuses($$ select release_chat('00000000-0000-0000-0000-000000000000', chatdesk_test.id('ann')) $$, '23503', array[chatdesk_test.id('ann'), '00000000-0000-0000-0000-000000000000']::uuid[], 'releasing an unknown chat is refused');
select lives_ok($$ select release_chat(chatdesk_test.id('c3'), chatdesk_test.id('ann')) $$, 'ann releases c3');
select is((select queued_at from chats where id = chatdesk_test.id('c3')), '2026-02-01 09:00:00+00'::timestamptz,
    'a released chat keeps its queued_at');
select is(claim_next_chat(chatdesk_test.id('bob')), chatdesk_test.id('c3'), 'and is claimed again before c2');
select chatdesk_test.refuses($$ select claim_next_chat(chatdesk_test.id('bob')) $$, 'CD004', array[chatdesk_test.id('bob')]::uuid[], 'bob at capacity 1 is refused');
select results_eq($$ select reason, operator_id from chat_events where chat_id = chatdesk_test.id('c3') and reason in ('claim', 'release') order by id $$,
    $$ values ('claim', chatdesk_test.id('ann')), ('release', chatdesk_test.id('ann')), ('claim', chatdesk_test.id('bob')) $$,
    'claims and the release are logged with their operator');

-- idle release, with time as an input
select chatdesk_test.at('2026-02-01 09:14:00+00');
select heartbeat(chatdesk_test.id('bob'));
select chatdesk_test.refuses($$ select heartbeat('00000000-0000-0000-0000-000000000000') $$, '23503', array['00000000-0000-0000-0000-000000000000']::uuid[], 'heartbeat of an unknown operator is refused');
select chatdesk_test.at('2026-02-01 09:16:00+00');
select chatdesk_test.refuses($$ select release_idle_chats('0 seconds') $$, '23514', '{}'::uuid[], 'a zero idle interval is refused');
select is(release_idle_chats('5 minutes'), 1, 'ann (last active 09:10) is idle at 09:16; bob (heartbeat 09:14) is not');
select is((select chat_state from chats where id = chatdesk_test.id('c1')), 'waiting_assignment', 'ann''s chat is back in the queue');
select is((select queued_at from chats where id = chatdesk_test.id('c1')), '2026-02-01 09:01:00+00'::timestamptz, 'at its old place');
select results_eq($$ select from_state, to_state, operator_id from chat_events where chat_id = chatdesk_test.id('c1') and reason = 'idle' $$,
    $$ values ('assigned', 'waiting_assignment', chatdesk_test.id('ann')) $$, 'the idle release is logged with reason idle');
select is(release_idle_chats('5 minutes'), 0, 'a second sweep finds nothing');
select chatdesk_test.at('2026-02-01 09:18:30+00');
select is(release_idle_chats('5 minutes'), 0, 'bob, silent for 4 min 30 s, keeps his chat');
select chatdesk_test.at('2026-02-01 09:20:00+00');
select is(release_idle_chats(), 1, 'bob idle since 09:14 goes at 09:20 with the default 5 minutes');
select is((select count(*) from chats where chat_state = 'assigned' and id in (select id from fixtures)), 0::bigint, 'nothing is assigned any more');

select * from finish();
rollback;
