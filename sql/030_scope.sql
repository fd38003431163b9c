-- ---------------------------------------------------------------------------
-- Operator-scoped sessions. An operator console's connection says who it
-- acts for:   set chatdesk.operator_id = '<operator uuid>';
-- From then on row-level security shows it only the chats assigned to that
-- operator (with their messages, events and users), and the functions refuse
-- to act for anyone else (42501). Unset, the session is a trusted backend.
-- ---------------------------------------------------------------------------
create or replace function chatdesk.current_operator_id()
returns uuid
language sql
stable
as $$
    select nullif(current_setting('chatdesk.operator_id', true), '')::uuid;
$$;

create or replace function chatdesk.require_scope(p_operator_id uuid, p_what text)
returns void
language plpgsql
stable
as $$
declare
    v_scope uuid := chatdesk.current_operator_id();
begin
    -- Refuses (42501) when the session is scoped to an operator and p_what is
    -- done for another operator (or, with p_operator_id null, for no operator:
    -- things only a backend does).
    if v_scope is not null and p_operator_id is distinct from v_scope then
        raise exception using errcode = '42501',
            message = format('chatdesk: this session acts for operator %s and cannot %s%s',
                             v_scope, p_what, coalesce(' for operator ' || p_operator_id, ''));
    end if;
end;
$$;
