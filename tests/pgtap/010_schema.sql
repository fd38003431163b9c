-- The contract's names: schema, tables, columns, functions.
begin;
select chatdesk_test.setup();
select plan(36);

select has_schema('chatdesk', 'schema chatdesk exists');
select has_table('chatdesk', t, 'table chatdesk.' || t || ' exists')
  from unnest(array['operators', 'real_users', 'chats', 'messages', 'operator_daily_stats',
                    'chat_events', 'settings']) as t;
select columns_are('chatdesk', 'operators',
    array['id', 'name', 'is_active', 'max_concurrent_chats', 'total_messages', 'assigned_chats', 'last_seen_at',
          'last_active_at', 'created_at', 'auth_user_id'], 'operators has the contract''s columns (and assigned_chats)');
select has_column('chatdesk', 'real_users', 'auth_user_id', 'real_users.auth_user_id links a web login');
select has_column('chatdesk', 'chats', c, 'chats.' || c || ' exists')
  from unnest(array['id', 'real_user_id', 'chat_state', 'assigned_operator_id', 'message_count',
                    'last_message_at', 'queued_at']) as c;
select has_column('chatdesk', 'messages', c, 'messages.' || c || ' exists')
  from unnest(array['handled_by_operator_id', 'client_message_id', 'seen_message_id']) as c;
select ok(exists (select 1 from settings where key = 'stats_time_zone'), 'the stats_time_zone setting exists (its default: tests/test_schema.py)');
select has_function('chatdesk', f, 'function chatdesk.' || f || ' exists')
  from unnest(array['create_operator', 'create_real_user', 'start_chat', 'send_user_message',
                    'send_operator_message', 'claim_next_chat', 'release_chat', 'close_chat',
                    'heartbeat', 'release_idle_chats', 'update_operator_stats',
                    'rollup_operator_stats']) as f;
select function_returns('chatdesk', 'send_user_message', array['uuid', 'text', 'text'], 'bigint',
    'send_user_message returns the message id');
select function_returns('chatdesk', 'create_operator', array['text', 'integer', 'uuid'], 'uuid',
    'create_operator takes an optional auth_user_id');
select function_returns('chatdesk', 'create_real_user', array['text', 'uuid'], 'uuid',
    'create_real_user takes an optional auth_user_id');

select * from finish();
rollback;
