-- The order in which chatdesk reloads sql/ on every migrate (in one transaction).
-- psql -v ON_ERROR_STOP=1 -f sql/load.sql works too.
\ir 010_clock.sql
\ir 020_settings.sql
\ir 030_identity.sql
\ir 100_chats.sql
\ir 105_counters.sql
\ir 110_messages.sql
\ir 200_api_people.sql
\ir 210_api_chats.sql
\ir 300_assignment.sql
\ir 310_views.sql
\ir 400_stats.sql
\ir 410_reports.sql
\ir 500_verify.sql
\ir 600_feed.sql
\ir 900_triggers.sql
\ir 940_policies.sql
\ir 950_privileges.sql
