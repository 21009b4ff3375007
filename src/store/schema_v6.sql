-- labfeed study database, schema version 6: accounts (SPEC §8).
--
-- A person changes study data only under an account of this table. Accounts
-- are disabled, never deleted, so every old signature keeps its name; the
-- name and creation time never change. The password is kept only as an
-- argon2id PHC string. `failed_logins` counts failures in a row;
-- `refused_until` (UTC RFC 3339) is set after the fifth.
CREATE TABLE account (
    name          TEXT PRIMARY KEY NOT NULL,
    full_name     TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('viewer', 'lab', 'data-manager', 'admin')),
    password_hash TEXT NOT NULL CHECK (password_hash GLOB '$argon2id$*'),
    enabled       INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created_at    TEXT NOT NULL,
    failed_logins INTEGER NOT NULL DEFAULT 0 CHECK (failed_logins >= 0),
    refused_until TEXT
) STRICT;

CREATE TRIGGER account_no_delete BEFORE DELETE ON account
BEGIN SELECT RAISE(ABORT, 'accounts are disabled, never deleted'); END;
CREATE TRIGGER account_name_fixed BEFORE UPDATE OF name, created_at, role ON account
BEGIN SELECT RAISE(ABORT, 'an account keeps its name, role and creation time'); END;

-- Data locks (SPEC §8): each lock and unlock is a new row, never changed; a
-- scope is locked while its latest row locks it. A visit is locked by its
-- own lock, its participant's or the study's.
CREATE TABLE data_lock (
    id          INTEGER PRIMARY KEY,
    scope       TEXT NOT NULL CHECK (scope IN ('study', 'participant', 'visit')),
    participant TEXT,
    visit       TEXT,
    locked      INTEGER NOT NULL CHECK (locked IN (0, 1)),
    at          TEXT NOT NULL,
    by          TEXT NOT NULL REFERENCES account(name),
    reason      TEXT NOT NULL CHECK (length(trim(reason)) > 0),
    CHECK ((scope = 'study' AND participant IS NULL AND visit IS NULL)
        OR (scope = 'participant' AND participant IS NOT NULL AND visit IS NULL)
        OR (scope = 'visit' AND participant IS NOT NULL AND visit IS NOT NULL))
) STRICT;

CREATE INDEX data_lock_scope ON data_lock (scope, participant, visit, id);

CREATE TRIGGER data_lock_no_update BEFORE UPDATE ON data_lock
BEGIN SELECT RAISE(ABORT, 'data_lock is append-only: unlock with a new row'); END;
CREATE TRIGGER data_lock_no_delete BEFORE DELETE ON data_lock
BEGIN SELECT RAISE(ABORT, 'data_lock is append-only: unlock with a new row'); END;
