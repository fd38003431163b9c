-- Client message ids are kept per sender (the chat's user, or each operator): one sender's id never matches another's message.
-- depends: 0008.web_access
-- transactional: false

-- Built concurrently, so messages keep flowing (yoyo runs this file outside a
-- transaction: "transactional: false" above). No session-level SET here:
-- through a transaction-mode pooler it would stay behind on a pooled server
-- connection. An interrupted build leaves an invalid index behind; dropping
-- it first makes a rerun start clean.
-- squawk-ignore ban-concurrent-index-creation-in-transaction, require-timeout-settings
drop index concurrently if exists chatdesk.messages_client_id_per_sender_idx;
-- squawk-ignore ban-concurrent-index-creation-in-transaction, require-timeout-settings
create unique index concurrently if not exists messages_client_id_per_sender_idx
    on chatdesk.messages (chat_id, sender_type, handled_by_operator_id, client_message_id) nulls not distinct
    where client_message_id is not null;
-- squawk-ignore ban-concurrent-index-creation-in-transaction, require-timeout-settings
drop index concurrently if exists chatdesk.messages_client_id_idx;
