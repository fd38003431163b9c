-- ---------------------------------------------------------------------------
-- Who is calling, and what it may do. A caller never chooses its identity
-- (docs/contract.md, "Who may do what"):
--   * a web caller (the role it runs as is chatdesk_web, or a member of it,
--     such as Supabase's `authenticated`) is the JWT's `sub` that PostgREST
--     sets per request in request.jwt.claims, matched to
--     operators.auth_user_id / real_users.auth_user_id. No claims, a
--     malformed claim or an unknown sub: nobody, refused everything (42501).
--   * anyone else who may call the functions (chatdesk_app, the owner) is a
--     trusted backend acting for whom its parameters name. It may narrow
--     itself to one operator for one transaction with act_as_operator(): a
--     self-check for its own code, not a security boundary.
-- ---------------------------------------------------------------------------

create or replace function chatdesk.caller_role()
returns name
language sql
stable
as $$
    -- The role the caller runs as: what `set [local] role` chose (PostgREST
    -- switches per request), else the login. Inside a security definer
    -- function current_user is the owner, but the role setting is the caller's.
    select case when current_setting('role') = 'none' then session_user
                else current_setting('role')::name end;
$$;

create or replace function chatdesk.is_web_caller()
returns boolean
language sql
stable
as $$
    -- True for a caller that acts with chatdesk_web's rights: it runs as
    -- chatdesk_web (PostgREST's `set local role`) or as a role that inherits
    -- it (Supabase's `authenticated`). A role that inherits both chatdesk_web
    -- and chatdesk_app is web: fail closed. Not web: a superuser
    -- (is_superuser follows `set role`, not security definer), and a role
    -- that holds chatdesk_web only to administer it (on PostgreSQL 16+ its
    -- creator does, without inheriting it).
    select current_setting('is_superuser') = 'off'
       and pg_has_role(chatdesk.caller_role(), 'chatdesk_web', 'usage');
$$;

create or replace function chatdesk.may_have_web_identity()
returns boolean
language sql
stable
as $$
    -- Whether a web caller can be anyone at all: not when its role also
    -- inherits chatdesk_app or chatdesk_reporting, whose table-wide grants
    -- would undo the columns withheld from web callers (other identities'
    -- ids). Such a role is a web caller (is_web_caller) who is nobody: it
    -- sees nothing and is refused everything. Fail closed: chatdesk
    -- create-login never makes one.
    select chatdesk.is_web_caller()
       and not pg_has_role(chatdesk.caller_role(), 'chatdesk_app', 'usage')
       and not pg_has_role(chatdesk.caller_role(), 'chatdesk_reporting', 'usage');
$$;

create or replace function chatdesk.login_of(p_sub text)
returns uuid
language plpgsql
immutable
as $$
begin
    -- A JWT's `sub` as a login (operators.auth_user_id,
    -- real_users.auth_user_id): PostgreSQL's own reading of it as a uuid;
    -- null when it is none. The one place of this rule: jwt_subject() for
    -- web callers, web_identity() for chatdesk serve.
    return p_sub::uuid;
exception when invalid_text_representation then
    return null;
end;
$$;

create or replace function chatdesk.jwt_subject()
returns uuid
language plpgsql
stable
as $$
declare
    v_claims text := current_setting('request.jwt.claims', true);
begin
    -- The `sub` of this request's JWT claims as a uuid; null when there are
    -- no claims, they are not JSON, or sub is missing or not a uuid.
    if v_claims is null or v_claims = '' then
        return null;
    end if;
    return chatdesk.login_of(v_claims::jsonb ->> 'sub');
exception when others then  -- malformed claims identify nobody
    return null;
end;
$$;

create or replace function chatdesk.web_operator_id()
returns uuid
language plpgsql
stable
security definer  -- reads operators past row-level security (the policies call it)
set search_path = chatdesk, pg_temp
as $$
begin
    -- The operator a web caller is (null for anyone else, or no match).
    -- PL/pgSQL rather than SQL, here and in web_real_user_id: PostgreSQL
    -- plans a security definer SQL function's query afresh on every call
    -- (about 50 µs, on every web call and in every policy), PL/pgSQL once
    -- per session.
    return (select o.id from chatdesk.operators o
             where chatdesk.may_have_web_identity() and o.auth_user_id = chatdesk.jwt_subject());
end;
$$;

create or replace function chatdesk.web_real_user_id()
returns uuid
language plpgsql
stable
security definer  -- reads real_users past row-level security (the policies call it)
set search_path = chatdesk, pg_temp
as $$
begin
    -- The real user a web caller is (null for anyone else, or no match).
    return (select u.id from chatdesk.real_users u
             where chatdesk.may_have_web_identity() and u.auth_user_id = chatdesk.jwt_subject());
end;
$$;

create or replace function chatdesk.web_identity(p_sub text, out operator_id uuid, out real_user_id uuid)
language sql
stable
security definer  -- calls login_of, a helper no application role may call; granted to backends only
set search_path = chatdesk, pg_temp
as $$
    -- Who a web login is, for a backend that checks the JWT itself (chatdesk
    -- serve): the operator and the real user whose auth_user_id is the JWT's
    -- sub, read and matched as web_operator_id() and web_real_user_id() do
    -- for a web caller (login_of). Both null: nobody.
    select (select o.id from chatdesk.operators o where o.auth_user_id = s.login),
           (select u.id from chatdesk.real_users u where u.auth_user_id = s.login)
      from (select chatdesk.login_of(p_sub) as login) s;
$$;

create or replace function chatdesk.web_caller_name()
returns text
language sql
stable
as $$
    -- How a refusal names a web caller: only its own ids.
    select coalesce('operator ' || chatdesk.web_operator_id(), 'real user ' || chatdesk.web_real_user_id(),
                    'a web caller without a known identity');
$$;

create or replace function chatdesk.refuse_nobody(p_action text)
returns void
language plpgsql
as $$
begin
    -- A web caller without a known identity is refused everything (42501).
    raise exception using errcode = '42501',
        message = format('chatdesk: a web caller without a known identity may not %s', p_action);
end;
$$;

create or replace function chatdesk.transaction_mark()
returns text
language sql
stable
as $$
    -- Tells this transaction from every other one of the same session.
    select pg_backend_pid() || '@' || extract(epoch from transaction_timestamp());
$$;

create or replace function chatdesk.act_as_operator(p_operator_id uuid)
returns void
language plpgsql
as $$
begin
    -- For the rest of this transaction only, the backend acts for
    -- p_operator_id: row-level security shows it that operator's chats, and
    -- the functions refuse to act for anyone else (42501). Ends at commit or
    -- rollback, so a pooled connection never carries it to another client.
    if p_operator_id is null or not exists (select 1 from chatdesk.operators where id = p_operator_id) then
        raise exception using errcode = '23503',
            message = format('chatdesk: operator %s does not exist', coalesce(p_operator_id::text, 'null'));
    end if;
    perform set_config('chatdesk.operator_scope', p_operator_id || ' ' || chatdesk.transaction_mark(), true);
end;
$$;

create or replace function chatdesk.current_operator_id()
returns uuid
language sql
stable
as $$
    -- The operator a backend transaction acts for (act_as_operator), else
    -- null. Honoured only in the transaction that set it: a session-level
    -- setting, or one left from an earlier transaction, is ignored. Never
    -- for web callers: their identity is their JWT.
    select case when coalesce(current_setting('chatdesk.operator_scope', true), '') <> ''
                     and split_part(current_setting('chatdesk.operator_scope', true), ' ', 2) = chatdesk.transaction_mark()
                     and not chatdesk.is_web_caller()
                then split_part(current_setting('chatdesk.operator_scope', true), ' ', 1)::uuid end;
$$;

create or replace function chatdesk.is_unscoped_backend()
returns boolean
language sql
stable
as $$
    -- A backend acting for everyone: not a web caller (a role that inherits
    -- both chatdesk_app and chatdesk_web is one) and not narrowed to an
    -- operator by act_as_operator(). The backend policies' "everything".
    select not chatdesk.is_web_caller() and chatdesk.current_operator_id() is null;
$$;

create or replace function chatdesk.authorize(p_action text, p_as text, p_id uuid default null)
returns void
language plpgsql
stable
as $$
declare
    v_self uuid;
begin
    -- The one rule of who may act as whom (42501 otherwise). p_as names the
    -- identity p_action needs:
    --   'backend'    maintenance (creating people, idle release, stats): no
    --                web caller, no transaction narrowed to an operator;
    --   'operator'   acting as operator p_id: a web caller whose JWT is that
    --                operator's login, or a backend (narrowed to p_id, if at all);
    --   'real user'  acting as real user p_id: a web caller whose JWT is that
    --                user's login, or a backend not narrowed to an operator.
    -- A refusal names only the caller's own ids and p_id.
    if chatdesk.is_web_caller() then
        v_self := case p_as when 'operator' then chatdesk.web_operator_id()
                            when 'real user' then chatdesk.web_real_user_id() end;
        if v_self is null or p_id is distinct from v_self then
            raise exception using errcode = '42501',
                message = format('chatdesk: %s may not %s%s', chatdesk.web_caller_name(), p_action,
                                 case when p_as <> 'backend' then format(' as %s %s', p_as, coalesce(p_id::text, 'null')) end);
        end if;
        return;
    end if;
    v_self := chatdesk.current_operator_id();
    if v_self is not null and (p_as <> 'operator' or p_id is distinct from v_self) then
        raise exception using errcode = '42501',
            message = format('chatdesk: this transaction acts for operator %s and may not %s%s', v_self, p_action,
                             case when p_as <> 'backend' then format(' as %s %s', p_as, coalesce(p_id::text, 'null')) end);
    end if;
end;
$$;

create or replace function chatdesk.require_own_chat(p_chat_id uuid, p_action text)
returns void
language plpgsql
stable
as $$
begin
    -- For a web caller: refuses (42501) unless p_chat_id is a chat of the
    -- caller's own real user. An unknown chat gets the same answer as
    -- another's, so a refusal tells nothing about chats the caller cannot see.
    -- Backends pass (the message trigger checks operator-narrowed ones);
    -- hot paths test is_web_caller() before calling it at all.
    if chatdesk.is_web_caller()
       and not exists (select 1 from chatdesk.chats c
                        where c.id = p_chat_id and c.real_user_id = chatdesk.web_real_user_id()) then
        raise exception using errcode = '42501',
            message = format('chatdesk: %s may not %s chat %s',
                             chatdesk.web_caller_name(), p_action, coalesce(p_chat_id::text, 'null'));
    end if;
end;
$$;

create or replace function chatdesk.is_blank(p_text text)
returns boolean
language sql
immutable
parallel safe
as $$
    -- True when p_text has nothing a person can see. Invisible, by Unicode
    -- category: control (Cc), format (Cf: U+200B, U+FEFF, the Egyptian and
    -- musical format controls ...) and space separators (Zs, Zl, Zp); and the
    -- variation selectors (U+FE00..FE0F, U+E0100..E01EF, Mongolian FVS), the
    -- whole tag block (U+E0000..E007F), the Hangul fillers, U+034F, U+17B4/5
    -- and the blank braille pattern U+2800. PostgreSQL's regular expressions
    -- know no categories: the class below is generated from Python's
    -- unicodedata, and tests/test_bad_input.py checks every code point of it
    -- against that (and prints the class anew when Unicode grows). Null is blank.
    select p_text is null
        or p_text !~ '[^\u0001-\u0020\u007f-\u00a0\u00ad\u034f\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u115f-\u1160\u1680\u17b4-\u17b5\u180b-\u180f\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u2800\u3000\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e007f\U000e0100-\U000e01ef]';
$$;

comment on function chatdesk.act_as_operator(uuid) is
    'For the rest of this transaction, a backend acts only for this operator (row-level security and the functions follow). A self-check, not a security boundary.';
comment on function chatdesk.current_operator_id() is
    'The operator this backend transaction acts for (act_as_operator), else null.';
comment on function chatdesk.web_operator_id() is
    'The operator whose auth_user_id is the JWT''s sub of this web request; null otherwise.';
comment on function chatdesk.web_real_user_id() is
    'The real user whose auth_user_id is the JWT''s sub of this web request; null otherwise.';
