-- Messages. Ids are handed out by the insert trigger after it locks the chat,
-- so within a chat id order is commit order.
-- depends: 0003.chats

-- Never queue behind live traffic for long; a slow step fails and rolls back.
set local lock_timeout = '5s';
set local statement_timeout = '10min';

create sequence chatdesk.messages_id_seq as bigint;

create table chatdesk.messages (
    id                     bigint primary key,
    chat_id                uuid not null references chatdesk.chats (id),
    sender_type            text not null
        constraint messages_sender_type_check check (sender_type in ('real_user', 'operator', 'system')),
    handled_by_operator_id uuid references chatdesk.operators (id),
    body                   text not null
        constraint messages_body_check check (length(body) between 1 and 10000),
    client_message_id      text
        constraint messages_client_message_id_check check (length(client_message_id) between 1 and 200),
    seen_message_id        bigint,
    created_at             timestamptz not null,
    -- for an operator message that answers a run of real-user messages: when the run began
    reply_started_at       timestamptz,
    constraint messages_operator_check
        check ((sender_type = 'operator') = (handled_by_operator_id is not null))
);

alter sequence chatdesk.messages_id_seq owned by chatdesk.messages.id;

create index messages_chat_idx on chatdesk.messages (chat_id, id);
create unique index messages_client_id_idx on chatdesk.messages (chat_id, client_message_id)
    where client_message_id is not null;
-- Daily stats: one day of all operators (rollup), one operator's day (update_operator_stats).
create index messages_operator_day_idx on chatdesk.messages (created_at)
    include (handled_by_operator_id, chat_id, reply_started_at)
    where handled_by_operator_id is not null;
create index messages_operator_idx on chatdesk.messages (handled_by_operator_id, created_at)
    include (chat_id, reply_started_at)
    where handled_by_operator_id is not null;
