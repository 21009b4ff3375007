-- labfeed on PostgreSQL, step 3 of 3, after labfeed has migrated the study
-- database as labfeed_owner (step 2). Run as labfeed_owner, in that database:
--   psql -v ON_ERROR_STOP=1 -U labfeed_owner -d labfeed_study -f config/postgres-grants.sql
-- Run it again after a labfeed upgrade that adds columns that may change.

-- Nobody else creates objects in the study's schema (PostgreSQL 15 and later
-- already say so; on older servers a superuser runs this line).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO labfeed_daemon;

-- Read and insert: every table now, and every table a later migration adds.
GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA public TO labfeed_daemon;
ALTER DEFAULT PRIVILEGES FOR ROLE labfeed_owner IN SCHEMA public GRANT SELECT, INSERT ON TABLES TO labfeed_daemon;

-- Draw keys from the tables' sequences (nextval; not setval), so that a
-- transaction's inserts go to the server together. Without it labfeed still
-- works, one insert at a time.
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO labfeed_daemon;
ALTER DEFAULT PRIVILEGES FOR ROLE labfeed_owner IN SCHEMA public GRANT USAGE ON SEQUENCES TO labfeed_daemon;

-- The columns people's commands change, as on SQLite: study data corrected
-- by an import (audited with old and new values), and an account's
-- password, state and failed logins. No UPDATE of anything else, no DELETE,
-- no TRUNCATE, no DDL, for either role.
GRANT UPDATE (site) ON participant TO labfeed_manager;
GRANT UPDATE (meal_start) ON visit TO labfeed_manager;
GRANT UPDATE (participant, visit, minute) ON sample TO labfeed_manager;
GRANT UPDATE (password_hash, enabled, failed_logins, refused_until) ON account TO labfeed_manager;
