-- labfeed on PostgreSQL, step 1 of 3: the roles and the study database
-- (docs/multi-site.md). Run once, as a superuser:
--   psql -v ON_ERROR_STOP=1 -d postgres -f config/postgres-roles.sql
-- Then set each password with psql's \password ROLE (never in a file).

-- Creates and migrates the schema; used for migrations and nothing else.
CREATE ROLE labfeed_owner LOGIN;
-- Every site daemon, and reports and exports: reads and inserts, nothing else.
CREATE ROLE labfeed_daemon LOGIN;
-- People's commands (import, resolve, user, any command that logs in): the
-- daemon's rights, and UPDATE of the few columns that change on SQLite too.
CREATE ROLE labfeed_manager LOGIN IN ROLE labfeed_daemon;

CREATE DATABASE labfeed_study OWNER labfeed_owner;
REVOKE ALL ON DATABASE labfeed_study FROM PUBLIC;
GRANT CONNECT ON DATABASE labfeed_study TO labfeed_daemon;
