-- The chatdesk schema and its settings table (stats_time_zone and friends).

-- Never queue behind live traffic for long; a slow step fails and rolls back.
set local lock_timeout = '5s';
set local statement_timeout = '10min';
create schema if not exists chatdesk;

create table chatdesk.settings (
    key   text primary key,
    value text not null
);

comment on table chatdesk.settings is
    'Package settings. stats_time_zone: the IANA zone whose calendar days the daily stats use.';

insert into chatdesk.settings (key, value) values ('stats_time_zone', 'UTC');
