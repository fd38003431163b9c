-- Chats and the table of allowed state transitions (the rules, written once).
-- depends: 0002.people

-- Never queue behind live traffic for long; a slow step fails and rolls back.
set local lock_timeout = '5s';
set local statement_timeout = '10min';

create table chatdesk.state_transitions (
    event      text not null,   -- the reason written to chat_events
    from_state text not null,
    to_state   text not null,
    primary key (event, from_state)
);

insert into chatdesk.state_transitions (event, from_state, to_state) values
    ('user_message',   'waiting_real_user_reply', 'waiting_assignment'),
    ('user_message',   'closed',                  'waiting_assignment'),
    ('claim',          'waiting_assignment',      'assigned'),
    ('operator_reply', 'assigned',                'waiting_real_user_reply'),
    ('release',        'assigned',                'waiting_assignment'),
    ('idle',           'assigned',                'waiting_assignment'),
    ('close',          'waiting_real_user_reply', 'closed'),
    ('close',          'waiting_assignment',      'closed'),
    ('close',          'assigned',                'closed');

create table chatdesk.chats (
    id                   uuid primary key default gen_random_uuid(),
    real_user_id         uuid not null references chatdesk.real_users (id),
    chat_state           text not null default 'waiting_real_user_reply'
        constraint chats_chat_state_check check (chat_state in (
            'waiting_real_user_reply',  -- new, or the operator has answered
            'waiting_assignment',       -- in the queue
            'assigned',                 -- one operator owns it
            'closed')),
    state_reason         text not null default 'start',  -- the event that put it in chat_state
    assigned_operator_id uuid references chatdesk.operators (id),
    assigned_at          timestamptz,
    message_count        int not null default 0,          -- maintained by triggers on messages
    last_message_at      timestamptz,                     -- maintained by triggers on messages
    queued_at            timestamptz,                     -- when it last entered the queue
    -- write-time bookkeeping that keeps the hot paths and the rollup cheap:
    last_user_message_id bigint,       -- newest real-user message (the reply race compares with it)
    waiting_since        timestamptz,  -- first real-user message not yet answered (reply time)
    created_at           timestamptz not null default now(),
    constraint chats_assignee_check
        check ((chat_state = 'assigned') = (assigned_operator_id is not null))
) with (fillfactor = 80);  -- room for HOT updates: every message updates its chat

-- The queue: claim_next_chat walks this partial index in FIFO order.
create index chats_queue_idx on chatdesk.chats (queued_at, id)
    where chat_state = 'waiting_assignment';
-- Load per operator (capacity) and idle release.
create index chats_assigned_idx on chatdesk.chats (assigned_operator_id)
    where chat_state = 'assigned';
create index chats_real_user_idx on chatdesk.chats (real_user_id);

create table chatdesk.chat_events (
    id          bigint generated always as identity primary key,
    chat_id     uuid not null references chatdesk.chats (id),
    from_state  text,              -- null for the chat's creation
    to_state    text not null,
    operator_id uuid references chatdesk.operators (id),
    reason      text not null,
    created_at  timestamptz not null
);

create index chat_events_chat_idx on chatdesk.chat_events (chat_id, id);
