-- Counters: exact after inserts, deletes, re-credited messages and truncate;
-- verify_counters() finds drift and repairs it.
begin;
select chatdesk_test.setup();
select plan(19);

insert into fixtures values ('ann', create_operator('Ann', 5)), ('bob', create_operator('Bob', 5)),
                       ('user', create_real_user('Uma'));
insert into fixtures select 'c1', start_chat(id) from fixtures where name = 'user';
insert into fixtures select 'c2', start_chat(id) from fixtures where name = 'user';
create function pg_temp.chat(text) returns table (message_count int, last_message_at timestamptz) language sql as
    $$ select message_count, last_message_at from chatdesk.chats where id = chatdesk_test.id($1) $$;
create function pg_temp.total(text) returns bigint language sql as
    $$ select total_messages from chatdesk.operators where id = chatdesk_test.id($1) $$;

select chatdesk_test.at('2026-01-05 10:00:00+00');
select send_user_message(chatdesk_test.id('c1'), 'one');
select claim_next_chat(chatdesk_test.id('ann'));
select chatdesk_test.at('2026-01-05 10:01:00+00');
select send_user_message(chatdesk_test.id('c1'), 'two');
select chatdesk_test.at('2026-01-05 10:02:00+00');
select * from send_operator_message(chatdesk_test.id('c1'), chatdesk_test.id('ann'), 'answer');
select chatdesk_test.at('2026-01-05 10:03:00+00');
select send_user_message(chatdesk_test.id('c1'), 'three');
select chatdesk_test.at('2026-01-05 10:04:00+00');  -- c2 queues after c1
select send_user_message(chatdesk_test.id('c2'), 'other chat');
insert into messages (chat_id, sender_type, body) values (chatdesk_test.id('c1'), 'system', 'note');

select results_eq($$ select * from pg_temp.chat('c1') $$,
    $$ values (5, '2026-01-05 10:04:00+00'::timestamptz) $$, 'message_count and last_message_at after inserts');
select is(pg_temp.total('ann'), 1::bigint, 'ann has one message');
select is_empty($$ select * from verify_counters() where object_id in (select id from fixtures) $$, 'verify finds no drift');

-- deletes
delete from messages where chat_id = chatdesk_test.id('c1') and body in ('three', 'note');
select results_eq($$ select * from pg_temp.chat('c1') $$,
    $$ values (3, '2026-01-05 10:02:00+00'::timestamptz) $$, 'deleting the newest messages recounts and moves last_message_at back');
delete from messages where chat_id = chatdesk_test.id('c1') and sender_type = 'operator';
select is(pg_temp.total('ann'), 0::bigint, 'deleting an operator message decrements total_messages');
select is((select waiting_since from chats where id = chatdesk_test.id('c1')), '2026-01-05 10:00:00+00'::timestamptz,
    'with the answer gone, the run waits from its first message again');

-- re-crediting an operator message
select claim_next_chat(chatdesk_test.id('ann'));
select * from send_operator_message(chatdesk_test.id('c1'), chatdesk_test.id('ann'), 'answer again');
update messages set handled_by_operator_id = chatdesk_test.id('bob') where body = 'answer again';
select is(pg_temp.total('ann'), 0::bigint, 'ann loses the re-credited message');
select is(pg_temp.total('bob'), 1::bigint, 'bob gains it');
select chatdesk_test.refuses($$ update messages set handled_by_operator_id = null where body = 'answer again' $$, '23514', '{}'::uuid[], 'an operator message must stay credited to an operator');
update messages set body = 'edited' where body = 'answer again';
select is(pg_temp.total('bob'), 1::bigint, 'editing a body leaves counters alone');
select is_empty($$ select * from verify_counters() where object_id in (select id from fixtures) $$, 'still no drift');

-- drift is found and repaired
update chats set message_count = 42 where id = chatdesk_test.id('c2');
update operators set total_messages = 7 where id = chatdesk_test.id('ann');
select results_eq($$ select object, object_id, counter, stored, actual from verify_counters() where object_id in (select id from fixtures) order by object $$,
    $$ values ('chat', chatdesk_test.id('c2'), 'message_count', '42', '1'),
              ('operator', chatdesk_test.id('ann'), 'total_messages', '7', '0') $$,
    'verify reports each drifted counter with stored and recounted values');
select is((select count(*) from verify_counters(true) where object_id in (select id from fixtures)), 2::bigint, 'repair reports what it fixed');
select is_empty($$ select * from verify_counters() $$, 'and afterwards nothing drifts (the repair mends everything)');

-- the queue table is derived state too: a lost or a stale entry is drift
insert into fixtures select 'q1', start_chat(id) from fixtures where name = 'user';
insert into fixtures select 'q2', start_chat(id) from fixtures where name = 'user';
select send_user_message(chatdesk_test.id('q1'), 'queue me');
delete from queue where chat_id = chatdesk_test.id('q1');
insert into queue values (chatdesk_test.id('q2'), now());
select results_eq($$ select object_id, counter, stored, actual from verify_counters() order by stored $$,
    $$ values (chatdesk_test.id('q1'), 'queued', 'no', 'yes'), (chatdesk_test.id('q2'), 'queued', 'yes', 'no') $$,
    'a waiting chat missing from the queue, and a queue entry for a chat that does not wait');
select is((select count(*) from verify_counters(true)) + (select count(*) from verify_counters()), 2::bigint,
    'repair puts the queue right (sync_queue)');

-- truncate
truncate messages;
select results_eq($$ select * from pg_temp.chat('c1') $$, $$ values (0, null::timestamptz) $$, 'truncate zeroes chat counters');
select is(pg_temp.total('bob'), 0::bigint, 'and operator totals');
select is_empty($$ select * from verify_counters() $$, 'no drift after truncate');

select * from finish();
rollback;
