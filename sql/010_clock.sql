-- ---------------------------------------------------------------------------
-- The one clock every rule reads.
-- ---------------------------------------------------------------------------
create or replace function chatdesk.clock()
returns timestamptz
language sql
volatile
as $$
    -- Time is an input: a test or the demo pins it with
    --   set [local] chatdesk.clock = '2026-03-29 01:30+00';
    -- Unset (or empty), it is the wall clock at the moment of the call, not the
    -- transaction's start: a message written after waiting for a chat lock gets
    -- a time after the message it waited for.
    -- Only a session whose login role can act as chatdesk_owner may pin it, so
    -- an application cannot backdate its messages.
    select case when nullif(current_setting('chatdesk.clock', true), '') is not null
                     and pg_has_role(session_user, 'chatdesk_owner', 'member')
                then current_setting('chatdesk.clock', true)::timestamptz
                else clock_timestamp() end;
$$;

comment on function chatdesk.clock() is
    'Current time for chatdesk rules; pinned by the chatdesk.clock setting when set (tests, demo).';
