-- Indexes for the reports' day scans: a BRIN on messages.created_at (hourly load; nearly free to keep up on insert) and chat_events by time for the queue, release and idle counts.
-- depends: 0012.reports
-- transactional: false

-- Built concurrently, so traffic keeps flowing (see 0009 for why there is no
-- SET here and why each index is dropped first).
-- squawk-ignore ban-concurrent-index-creation-in-transaction, require-timeout-settings
drop index concurrently if exists chatdesk.messages_created_brin;
-- squawk-ignore ban-concurrent-index-creation-in-transaction, require-timeout-settings
create index concurrently if not exists messages_created_brin on chatdesk.messages using brin (created_at)
    with (autosummarize = on);  -- each filled range is summarized soon, not at the next vacuum
-- squawk-ignore ban-concurrent-index-creation-in-transaction, require-timeout-settings
drop index concurrently if exists chatdesk.chat_events_day_idx;
-- squawk-ignore ban-concurrent-index-creation-in-transaction, require-timeout-settings
create index concurrently if not exists chat_events_day_idx on chatdesk.chat_events (created_at)
    include (operator_id, from_state, reason)
    where reason in ('user_message', 'release', 'idle');
