-- Daily stats: each metric on hand-made data, time-zone midnight, DST days,
-- zeros for idle operators, idempotency, and update_operator_stats = rollup.
begin;
select chatdesk_test.setup();
select plan(21);

insert into fixtures values ('ann', create_operator('Ann', 3)), ('bob', create_operator('Bob')),
                       ('cy', create_operator('Cy')), ('dan', create_operator('Dan')),
                       ('user', create_real_user('Uma'));
insert into fixtures select 'chat' || n, start_chat(id) from fixtures, generate_series(1, 8) n where name = 'user';
-- a user writes at a time
create function pg_temp.user_says(p_chat text, p_at text) returns void language sql as $$
    select chatdesk_test.at(p_at); select chatdesk.send_user_message(chatdesk_test.id(p_chat), 'question');
$$;
-- an operator answers at a time, claiming the chat first when it is queued
create function pg_temp.op_says(p_chat text, p_op text, p_at text) returns void language plpgsql as $$
begin
    perform chatdesk_test.at(p_at);
    if (select chat_state from chatdesk.chats where id = chatdesk_test.id(p_chat)) = 'waiting_assignment' then
        if chatdesk.claim_next_chat(chatdesk_test.id(p_op)) is distinct from chatdesk_test.id(p_chat) then
            raise exception 'test setup: % did not get %', p_op, p_chat;
        end if;
    end if;
    perform * from chatdesk.send_operator_message(chatdesk_test.id(p_chat), chatdesk_test.id(p_op), 'answer');
end $$;
create function pg_temp.row(text, date) returns table (sent int, chats int, avg numeric, p50 numeric, p90 numeric)
    language sql as $$
    select messages_sent, chats_handled, reply_time_avg_seconds, reply_time_p50_seconds, reply_time_p90_seconds
      from chatdesk.operator_daily_stats where operator_id = chatdesk_test.id($1) and stat_date = $2 $$;

-- ---- UTC: a run of two user messages, a second run, a chat across midnight ----
select pg_temp.user_says('chat1', '2026-01-10 09:00:00+00');
select pg_temp.user_says('chat1', '2026-01-10 09:00:30+00');   -- same run: reply time counts from 09:00:00
select pg_temp.op_says('chat1', 'ann', '2026-01-10 09:02:00+00');  -- 120 s
select pg_temp.user_says('chat1', '2026-01-10 09:05:00+00');
select pg_temp.op_says('chat1', 'ann', '2026-01-10 09:06:00+00');  -- 60 s
select pg_temp.user_says('chat2', '2026-01-10 23:59:00+00');
select pg_temp.op_says('chat2', 'ann', '2026-01-11 00:01:00+00');  -- 120 s, on the 11th
select pg_temp.user_says('chat3', '2026-01-10 10:00:00+00');
select pg_temp.op_says('chat3', 'cy', '2026-01-10 10:00:10+00');   -- 10 s
select set_operator_active(chatdesk_test.id('cy'), false);
select set_operator_active(chatdesk_test.id('dan'), false);

select is(rollup_operator_stats('2026-01-10'), 3, 'rollup writes ann, bob (active, idle) and cy (inactive, with messages)');
select results_eq($$ select * from pg_temp.row('ann', '2026-01-10') $$,
    $$ values (2, 1, 90.000, 90.000, 114.000) $$,
    'ann: 2 sent, 1 chat, replies 120 s and 60 s: avg 90, p50 90, p90 114');
select results_eq($$ select * from pg_temp.row('bob', '2026-01-10') $$,
    $$ values (0, 0, null::numeric, null::numeric, null::numeric) $$, 'an active operator without messages gets zeros');
select results_eq($$ select * from pg_temp.row('cy', '2026-01-10') $$,
    $$ values (1, 1, 10.000, 10.000, 10.000) $$, 'an inactive operator with messages gets a row');
select is_empty($$ select * from pg_temp.row('dan', '2026-01-10') $$, 'an inactive operator without messages gets none');
select is(rollup_operator_stats('2026-01-11'), 2, 'the next day: the two active operators');
select results_eq($$ select * from pg_temp.row('ann', '2026-01-11') $$,
    $$ values (1, 1, 120.000, 120.000, 120.000) $$, 'the answer after midnight counts on the day it was written');

-- a second answer in a row, and a stale-seen answer that keeps the chat
select pg_temp.user_says('chat4', '2026-01-12 08:00:00+00');
select pg_temp.op_says('chat4', 'ann', '2026-01-12 08:00:40+00');  -- 40 s
select pg_temp.user_says('chat4', '2026-01-12 08:01:00+00');
select chatdesk_test.at('2026-01-12 08:01:30+00');
select claim_next_chat(chatdesk_test.id('ann'));
select pg_temp.user_says('chat4', '2026-01-12 08:01:40+00');
select chatdesk_test.at('2026-01-12 08:02:00+00');
select * from send_operator_message(chatdesk_test.id('chat4'), chatdesk_test.id('ann'), 'missed one', null,
    (select min(id) from messages where chat_id = chatdesk_test.id('chat4') and created_at = '2026-01-12 08:01:00+00'));  -- 60 s, run 08:01:00..08:01:40
select pg_temp.op_says('chat4', 'ann', '2026-01-12 08:03:00+00');  -- no run left to answer: no reply time
select rollup_operator_stats('2026-01-12');
select results_eq($$ select * from pg_temp.row('ann', '2026-01-12') $$,
    $$ values (3, 1, 50.000, 50.000, 58.000) $$,
    'three messages, two reply times (40 s, 60 s): a follow-up answer is not a reply');

-- ---- idempotency and agreement ----
create temp table first_run as select * from operator_daily_stats;
select rollup_operator_stats(d) from (values ('2026-01-10'::date), ('2026-01-11'), ('2026-01-12')) v(d);
select results_eq(
    $$ select operator_id, stat_date, messages_sent, chats_handled, replies, reply_time_avg_seconds, reply_time_p50_seconds, reply_time_p90_seconds from operator_daily_stats order by 1, 2 $$,
    $$ select operator_id, stat_date, messages_sent, chats_handled, replies, reply_time_avg_seconds, reply_time_p50_seconds, reply_time_p90_seconds from first_run order by 1, 2 $$,
    're-running the rollup gives the same rows');
select ok((select bool_and(computed_at is not null) from operator_daily_stats), 'every row says when it was computed');
delete from operator_daily_stats;
select update_operator_stats(o.id, d)
  from operators o, (values ('2026-01-10'::date), ('2026-01-11'), ('2026-01-12')) v(d)
 where (o.id, d) in (select operator_id, stat_date from first_run);
select results_eq(
    $$ select operator_id, stat_date, messages_sent, chats_handled, replies, reply_time_avg_seconds, reply_time_p50_seconds, reply_time_p90_seconds from operator_daily_stats where operator_id in (select id from fixtures) order by 1, 2 $$,
    $$ select operator_id, stat_date, messages_sent, chats_handled, replies, reply_time_avg_seconds, reply_time_p50_seconds, reply_time_p90_seconds from first_run where operator_id in (select id from fixtures) order by 1, 2 $$,
    'update_operator_stats per operator writes exactly the rollup''s rows');
select chatdesk_test.refuses($$ select update_operator_stats('00000000-0000-0000-0000-000000000000', '2026-01-10') $$, '23503', array['00000000-0000-0000-0000-000000000000']::uuid[], 'update_operator_stats refuses an unknown operator');
select chatdesk_test.refuses($$ select rollup_operator_stats(null) $$, '23514', '{}'::uuid[], 'the rollup refuses a null date');

-- ---- time zones: midnight in Tokyo, and the two DST days of New York ----
select chatdesk_test.refuses($$ update settings set value = 'Mars/Olympus_Mons' where key = 'stats_time_zone' $$, '23514', '{}'::uuid[], 'an unknown time zone is refused');
select chatdesk_test.refuses($$ update settings set value = 'UTC+3' where key = 'stats_time_zone' $$, '23514', '{}'::uuid[], 'a POSIX offset string is refused: IANA names only');
update settings set value = 'Asia/Tokyo' where key = 'stats_time_zone';
select pg_temp.user_says('chat5', '2026-01-20 14:58:00+00');
select pg_temp.op_says('chat5', 'bob', '2026-01-20 14:59:59+00');   -- 23:59:59 in Tokyo, the 20th
select pg_temp.user_says('chat5', '2026-01-20 14:59:59.5+00');
select pg_temp.op_says('chat5', 'bob', '2026-01-20 15:00:00+00');   -- 00:00:00 in Tokyo, the 21st
select rollup_operator_stats(d) from (values ('2026-01-20'::date), ('2026-01-21')) v(d);
select results_eq($$ select stat_date, messages_sent from operator_daily_stats where operator_id = chatdesk_test.id('bob') and stat_date between '2026-01-20' and '2026-01-21' order by 1 $$,
    $$ values ('2026-01-20'::date, 1), ('2026-01-21', 1) $$, 'Tokyo midnight splits the days');

update settings set value = 'America/New_York' where key = 'stats_time_zone';
select pg_temp.user_says('chat6', '2026-03-08 05:00:00+00');
select pg_temp.op_says('chat6', 'bob', '2026-03-08 05:30:00+00');  -- 00:30 EST, Mar 8
select pg_temp.user_says('chat6', '2026-03-09 03:00:00+00');
select pg_temp.op_says('chat6', 'bob', '2026-03-09 03:30:00+00');  -- 23:30 EDT, Mar 8 (a 23-hour day)
select pg_temp.user_says('chat6', '2026-03-09 04:00:00+00');
select pg_temp.op_says('chat6', 'bob', '2026-03-09 04:30:00+00');  -- 00:30 EDT, Mar 9
select rollup_operator_stats(d) from (values ('2026-03-08'::date), ('2026-03-09')) v(d);
select results_eq($$ select stat_date, messages_sent from operator_daily_stats where operator_id = chatdesk_test.id('bob') and stat_date between '2026-03-08' and '2026-03-09' order by 1 $$,
    $$ values ('2026-03-08'::date, 2), ('2026-03-09', 1) $$, 'spring forward: the 23-hour day holds 00:30 EST and 23:30 EDT');

select pg_temp.user_says('chat7', '2026-11-01 04:00:00+00');
select pg_temp.op_says('chat7', 'bob', '2026-11-01 04:30:00+00');  -- 00:30 EDT, Nov 1
select pg_temp.user_says('chat7', '2026-11-02 04:00:00+00');
select pg_temp.op_says('chat7', 'bob', '2026-11-02 04:45:00+00');  -- 23:45 EST, Nov 1 (a 25-hour day)
select pg_temp.user_says('chat7', '2026-11-02 05:00:00+00');
select pg_temp.op_says('chat7', 'bob', '2026-11-02 05:10:00+00');  -- 00:10 EST, Nov 2
select rollup_operator_stats(d) from (values ('2026-11-01'::date), ('2026-11-02')) v(d);
select results_eq($$ select stat_date, messages_sent from operator_daily_stats where operator_id = chatdesk_test.id('bob') and stat_date between '2026-11-01' and '2026-11-02' order by 1 $$,
    $$ values ('2026-11-01'::date, 2), ('2026-11-02', 1) $$, 'fall back: the 25-hour day holds 00:30 EDT and 23:45 EST');
select results_eq($$ select reply_time_avg_seconds from operator_daily_stats where operator_id = chatdesk_test.id('bob') and stat_date = '2026-11-01' $$,
    $$ values (2250.000) $$, 'reply times are elapsed seconds across the DST change (1800 s and 2700 s: avg 2250)');
select is(stats_time_zone(), 'America/New_York', 'stats_time_zone() reads the setting');
select is((select count(*) from operator_daily_stats where stat_date = '2026-03-08'), 2::bigint,
    'only active operators (ann, bob) on a day when only bob wrote');

select * from finish();
rollback;
