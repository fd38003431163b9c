-- The chatdesk schema and its settings table (stats_time_zone and friends).
create schema if not exists chatdesk;

create table chatdesk.settings (
    key   text primary key,
    value text not null
);

comment on table chatdesk.settings is
    'Package settings. stats_time_zone: the IANA zone whose calendar days the daily stats use.';

insert into chatdesk.settings (key, value) values ('stats_time_zone', 'UTC');
