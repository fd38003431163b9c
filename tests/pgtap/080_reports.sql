-- Reports: business time on hand-worked examples (split shifts, a window
-- across midnight, both daylight-saving changes, a holiday, overlapping
-- windows), conversations (first response, resolution, who is credited),
-- the day's closes, releases and idle releases, hourly load on a 23-hour day,
-- and queue samples.
begin;
select chatdesk_test.setup();
select plan(33);

update settings set value = 'Europe/Berlin' where key = 'stats_time_zone';

-- ---- business time ----
select is(business_seconds('2026-11-24 17:59+01', '2026-11-25 09:01+01'), 0::numeric,
    'no business hours set: no business time');
insert into business_hours (weekday, opens, closes) values
    (1, '09:00', '18:00'), (2, '09:00', '18:00'), (3, '09:00', '18:00'), (4, '09:00', '12:30'), (4, '13:30', '18:00'),
    (5, '09:00', '18:00'), (6, '22:00', '06:00');
insert into holidays (day, name) values ('2026-12-25', 'Christmas');

select is(business_seconds('2026-11-24 17:59+01', '2026-11-25 09:01+01'), 120::numeric,
    'written Tuesday 17:59, answered Wednesday 09:01: 2 minutes of business time');
select is(business_seconds('2026-11-26 12:00+01', '2026-11-26 14:00+01'), 3600::numeric,
    'a split shift: Thursday 12:00 to 14:00 holds 12:00-12:30 and 13:30-14:00');
select is(business_seconds('2026-11-28 23:00+01', '2026-11-29 05:00+01'), 21600::numeric,
    'a window across midnight: Saturday 22:00 to Sunday 06:00 counts after midnight too');
select is(business_seconds('2026-11-29 05:00+01', '2026-11-30 09:30+01'), 3600 + 1800::numeric,
    'Sunday 05:00 to Monday 09:30: the last hour of Saturday''s window and half an hour on Monday');
select is(business_seconds('2026-03-28 21:00+01', '2026-03-29 12:00+02'), 25200::numeric,
    'spring forward (29 March, 02:00 -> 03:00): the window Saturday 22:00 to 06:00 is 7 hours');
select is(business_seconds('2026-10-24 21:00+02', '2026-10-25 12:00+01'), 32400::numeric,
    'fall back (25 October, 03:00 -> 02:00): the same window is 9 hours');
select is(business_seconds('2026-03-30 08:00+02', '2026-03-30 19:00+02'), 32400::numeric,
    'a whole weekday after the change: 9 hours, 09:00 to 18:00 in summer time');
select is(business_seconds('2026-12-24 17:00+01', '2026-12-28 10:00+01'), 36000::numeric,
    'a holiday Friday: Thursday''s last hour, Saturday night''s 8 hours and Monday''s first hour');
select is(business_seconds('2026-12-25 10:00+01', '2026-12-25 16:00+01'), 0::numeric,
    'all day on the holiday: none');
insert into business_hours (weekday, opens, closes) values (2, '17:00', '20:00');
select is(business_seconds('2026-11-24 16:00+01', '2026-11-24 21:00+01'), 14400::numeric,
    'overlapping windows (09:00-18:00 and 17:00-20:00) count once');
delete from business_hours where weekday = 2 and opens = '17:00';
insert into business_hours (weekday, opens, closes) values (7, '10:00', '10:00');
select is(business_seconds('2026-11-29 10:00+01', '2026-11-30 08:00+01'), 79200::numeric,
    'a window that closes when it opens lasts 24 hours: all of Sunday 10:00 to Monday 08:00 counts');
delete from business_hours where weekday = 7;
select is(business_seconds('2026-11-25 10:00+01', '2026-11-25 10:00+01'), 0::numeric, 'no time, no business time');

-- ---- conversations ----
insert into fixtures values ('ann', create_operator('Ann', 3)), ('bob', create_operator('Bob', 3)),
                            ('uma', create_real_user('Uma'));
insert into fixtures select 'chat', start_chat(chatdesk_test.id('uma'));
select chatdesk_test.at('2026-11-24 17:00+01');
select send_user_message(chatdesk_test.id('chat'), 'hello');                      -- queued 17:00
select chatdesk_test.at('2026-11-24 17:05+01');
select claim_next_chat(chatdesk_test.id('ann'));
select chatdesk_test.at('2026-11-24 17:10+01');
select release_chat(chatdesk_test.id('chat'), chatdesk_test.id('ann'));                          -- a release by ann
select chatdesk_test.at('2026-11-24 17:20+01');
select claim_next_chat(chatdesk_test.id('bob'));
select chatdesk_test.at('2026-11-25 09:05+01');
select * from send_operator_message(chatdesk_test.id('chat'), chatdesk_test.id('bob'), 'sorry, here');  -- first answer, next morning
select send_user_message(chatdesk_test.id('chat'), 'thanks');                     -- queued again: same conversation
select claim_next_chat(chatdesk_test.id('ann'));
select * from send_operator_message(chatdesk_test.id('chat'), chatdesk_test.id('ann'), 'bye');
select chatdesk_test.at('2026-11-25 09:30+01');
select close_chat(chatdesk_test.id('chat'));                                       -- closed unassigned: ann had it last

select results_eq($$ select queued_at, first_response_at, first_response_operator_id, closed_at, closed_by_operator_id
                       from conversations where chat_id = chatdesk_test.id('chat') $$,
    $$ values ('2026-11-24 17:00+01'::timestamptz, '2026-11-25 09:05+01'::timestamptz, chatdesk_test.id('bob'),
               '2026-11-25 09:30+01'::timestamptz, chatdesk_test.id('ann')) $$,
    'one conversation from the first queueing to the close: bob answered first, ann had it last');

select chatdesk_test.at('2026-11-25 10:00+01');
select send_user_message(chatdesk_test.id('chat'), 'one more thing');              -- reopened: a second conversation
select chatdesk_test.at('2026-11-25 10:01+01');
select close_chat(chatdesk_test.id('chat'));                                       -- nobody had it
select results_eq($$ select queued_at, first_response_at, closed_by_operator_id from conversations
                      where chat_id = chatdesk_test.id('chat') order by id offset 1 $$,
    $$ values ('2026-11-25 10:00+01'::timestamptz, null::timestamptz, null::uuid) $$,
    'a reopened chat starts a new conversation; closed unanswered, it is credited to nobody');

select rollup_operator_stats('2026-11-24');
select rollup_operator_stats('2026-11-25');
select results_eq($$ select metric, clock, n, avg_seconds from operator_daily_times
                      where operator_id = chatdesk_test.id('bob') and stat_date = '2026-11-25' order by metric, clock $$,
    $$ values ('first_response', 'business', 1, 3900.000), ('first_response', 'wall', 1, 57900.000),
              ('reply', 'business', 1, 3900.000), ('reply', 'wall', 1, 57900.000) $$,
    'bob''s first response: 16 h 5 min on the wall clock, 1 h 5 min of business time (17:00-18:00, 09:00-09:05)');
select results_eq($$ select metric, clock, n, avg_seconds from operator_daily_times
                      where operator_id = chatdesk_test.id('ann') and stat_date = '2026-11-25' order by metric, clock $$,
    $$ values ('reply', 'business', 1, 0.000), ('reply', 'wall', 1, 0.000),
              ('resolution', 'business', 1, 5400.000), ('resolution', 'wall', 1, 59400.000) $$,
    'ann: the resolution from 17:00 to 09:30 next day, 1 h 30 min of business time; no first response');
select results_eq($$ select histogram from operator_daily_times
                      where operator_id = chatdesk_test.id('bob') and stat_date = '2026-11-25' and metric = 'first_response' and clock = 'wall' $$,
    $$ values ('{0,0,0,0,0,0,0,0,0,1,0}'::int[]) $$, 'the histogram puts 16 h in the 4 h - 1 day bucket');
select results_eq($$ select operator_id, stat_date, chats_closed, chats_released, chats_idle_released
                      from operator_daily_stats where operator_id in (chatdesk_test.id('ann'), chatdesk_test.id('bob')) order by stat_date, operator_id = chatdesk_test.id('bob') $$,
    $$ values (chatdesk_test.id('ann'), '2026-11-24'::date, 0, 1, 0), (chatdesk_test.id('bob'), '2026-11-24'::date, 0, 0, 0),
              (chatdesk_test.id('ann'), '2026-11-25'::date, 1, 0, 0), (chatdesk_test.id('bob'), '2026-11-25'::date, 0, 0, 0) $$,
    'closes credited to who had the chat last; releases to who released');

-- idle release counts for the operator whose chat was taken back
insert into fixtures select 'chat2', start_chat(chatdesk_test.id('uma'));
select chatdesk_test.at('2026-11-26 10:00+01');
select send_user_message(chatdesk_test.id('chat2'), 'anyone?');
select claim_next_chat(chatdesk_test.id('bob'));
select chatdesk_test.at('2026-11-26 11:00+01');
select release_idle_chats('30 minutes');
select rollup_operator_stats('2026-11-26');
select is((select chats_idle_released from operator_daily_stats where operator_id = chatdesk_test.id('bob') and stat_date = '2026-11-26'),
    1, 'an idle release is counted for the operator it took the chat from');

-- ---- hourly load ----
select rollup_operator_stats('2026-03-29');
select is((select count(*)::int from hourly_load where hour >= '2026-03-29 00:00+01' and hour < '2026-03-30 00:00+02'),
    23, 'the spring-forward day has 23 hourly rows');
select results_eq($$ select messages, real_user_messages, operator_messages, queue_entries from hourly_load
                      where hour = '2026-11-25 09:00+01' $$,
    $$ values (3, 1, 2, 1) $$,
    'an hour''s load: 09:00 on the 25th holds bob''s and ann''s answers and the user''s thanks, which queued the chat');
select is((select messages from hourly_load where hour = '2026-11-25 10:00+01'), 1, 'the 10:00 hour');

-- ---- queue samples ----
select chatdesk_test.at('2026-11-26 12:00+01');
-- the queue is the whole database's: other chats waiting or held are counted too (none on a new database)
create temp table others on commit drop as
select count(*) filter (where chat_state = 'waiting_assignment')::int as waiting,
       count(*) filter (where chat_state = 'assigned')::int as assigned,
       min(queued_at) filter (where chat_state = 'waiting_assignment') as oldest
  from chats where id not in (select id from fixtures);
select is(sample_queue(), 1 + (select waiting from others), 'sample_queue returns how many chats wait');
select results_eq($$ select waiting, assigned, oldest_wait_seconds from queue_samples where sampled_at = '2026-11-26 12:00+01' $$,
    $$ select 1 + waiting, assigned,
              round(extract(epoch from '2026-11-26 12:00+01'::timestamptz - least(oldest, '2026-11-26 10:00+01')), 3)
         from others $$,
    'and records the oldest wait, kept from its first queueing (10:00: two hours)');

-- ---- who may write what: only chatdesk's own functions and the owner ----
select throws_ok($$ select chatdesk_test.as_caller('backend', $q$ insert into business_hours values (7, '10:00', '11:00') returning 1 $q$) $$,
    '42501', null, 'a backend cannot change business hours (the owner does)');
select throws_ok($$ select chatdesk_test.as_caller('backend', $q$ delete from holidays returning 1 $q$) $$,
    '42501', null, 'nor holidays');
select throws_ok($$ select chatdesk_test.as_caller('backend', $q$ update operator_daily_times set n = 0 returning 1 $q$) $$,
    '42501', null, 'nor write the times');
select throws_ok($$ select chatdesk_test.as_caller('backend', $q$ update conversations set closed_at = null returning 1 $q$) $$,
    '42501', null, 'nor rewrite a conversation');
select throws_ok($$ select chatdesk_test.as_caller('reporting', 'select sample_queue()') $$,
    '42501', null, 'dashboards cannot sample the queue');
insert into fixtures values ('ann_login', gen_random_uuid());
select link_auth_user(chatdesk_test.id('ann'), null, chatdesk_test.id('ann_login'));
select throws_ok($$ select chatdesk_test.as_caller('web:ann_login', 'select scheduled_rollup()') $$,
    '42501', null, 'nor can a web operator run the scheduled rollup');
select is(chatdesk_test.as_caller('web:ann_login', 'select count(distinct operator_id) from operator_daily_times'), '1',
    'a web operator reads its own times');
select is(chatdesk_test.as_caller('web:ann_login', $q$ select count(*) from operator_daily_times where operator_id = chatdesk_test.id('bob') $q$), '0',
    'and not another operator''s');

select * from finish();
rollback;
