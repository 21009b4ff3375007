-- labfeed study database, schema version 1.
--
-- Invariants, stated as absences:
-- * No table or column holds treatment allocation, arm, kit or randomisation data.
-- * No table holds names, dates of birth, addresses, phone numbers or patient identifiers
--   other than the study's participant codes; raw copies have those fields masked.
-- * No row of raw, receipt, processing, message, observation, result, mismatch, resolution or audit_log is
--   ever updated or deleted (triggers refuse it): a change is a new row that points at the old one.
-- Times are UTC RFC 3339 text ('2026-03-02T07:45:00Z') unless a column says "local".

-- Every distinct content ever received, exactly once, with personal data masked.
CREATE TABLE raw (
    id          INTEGER PRIMARY KEY,
    sha256      TEXT NOT NULL UNIQUE CHECK (length(sha256) = 64),  -- of the bytes as received
    size        INTEGER NOT NULL CHECK (size >= 0),
    format      TEXT CHECK (format IN ('astm', 'hl7')),            -- NULL: neither
    content     BLOB NOT NULL,                                     -- masked copy, same length
    masked      TEXT NOT NULL DEFAULT '',                          -- what was masked, e.g. 'P.6,P.8'
    first_received_at TEXT NOT NULL
) STRICT;

-- Every arrival, duplicate or not, committed before its content is processed:
-- "did it arrive?" has an answer even if processing fails.
CREATE TABLE receipt (
    id          INTEGER PRIMARY KEY,
    raw_id      INTEGER NOT NULL REFERENCES raw(id),
    received_at TEXT NOT NULL,
    source      TEXT NOT NULL CHECK (source IN ('file', 'ingest', 'serial', 'tcp')),
    origin      TEXT NOT NULL,            -- file name, device path or peer address
    instrument  TEXT                      -- the link's instrument; NULL for files (the sender decides)
) STRICT;

-- What processing a receipt did ("and if not, why?"). A receipt without a row here was
-- interrupted and is processed again at start-up.
CREATE TABLE processing (
    receipt_id  INTEGER PRIMARY KEY REFERENCES receipt(id),
    processed_at TEXT NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN ('processed', 'duplicate', 'rejected', 'aborted')),
    accepted    INTEGER NOT NULL CHECK (accepted >= 0),
    duplicates  INTEGER NOT NULL CHECK (duplicates >= 0),
    mismatches  INTEGER NOT NULL CHECK (mismatches >= 0),
    qc          INTEGER NOT NULL CHECK (qc >= 0),
    errors      INTEGER NOT NULL CHECK (errors >= 0),
    detail      TEXT                      -- plain words when rejected or aborted
) STRICT;

-- Each ASTM H…L or HL7 MSH message within a raw content.
CREATE TABLE message (
    id          INTEGER PRIMARY KEY,
    raw_id      INTEGER NOT NULL REFERENCES raw(id),
    number      INTEGER NOT NULL CHECK (number >= 1),
    span_start  INTEGER NOT NULL,
    span_end    INTEGER NOT NULL CHECK (span_end >= span_start),
    format      TEXT CHECK (format IN ('astm', 'hl7')),
    sender      TEXT,
    control_id  TEXT,
    error       TEXT,                     -- NULL when the message parsed
    error_offset INTEGER,
    UNIQUE (raw_id, number)
) STRICT;

-- Study data (SPEC §4): study codes only.
CREATE TABLE participant (
    code        TEXT PRIMARY KEY CHECK (length(code) BETWEEN 1 AND 64),
    site        TEXT
) STRICT;

CREATE TABLE visit (
    participant TEXT NOT NULL REFERENCES participant(code),
    visit       TEXT NOT NULL,
    meal_start  TEXT,                     -- local time of MMTT minute 0, ISO 8601
    PRIMARY KEY (participant, visit)
) STRICT;

CREATE TABLE sample (
    sample_id   TEXT PRIMARY KEY,
    participant TEXT NOT NULL REFERENCES participant(code),
    visit       TEXT NOT NULL,
    minute      INTEGER NOT NULL
) STRICT;

-- Every result as reported (ASTM R, HL7 OBX), with how it was matched. Never updated.
CREATE TABLE observation (
    id              INTEGER PRIMARY KEY,
    message_id      INTEGER NOT NULL REFERENCES message(id),
    seq             INTEGER NOT NULL,     -- order within the message, from 1
    byte_offset     INTEGER NOT NULL,     -- of the R record / OBX segment in the raw content
    instrument      TEXT,
    sample_id       TEXT,
    test_code       TEXT,
    reported_value  TEXT,
    reported_unit   TEXT,
    comparator      TEXT CHECK (comparator IN ('<', '<=', '>', '>=')),
    reported_numeric TEXT,                -- the number as sent, canonical decimal text
    flags           TEXT,
    status          TEXT,
    collected_at    TEXT,                 -- as sent (ISO 8601, offset only if sent)
    resulted_at     TEXT,
    qc              INTEGER NOT NULL CHECK (qc IN (0, 1)),
    participant     TEXT,                 -- the match, when there is one
    visit           TEXT,
    minute          INTEGER,
    analyte         TEXT,
    value           REAL,                 -- in the analyte's canonical unit
    unit            TEXT,
    blq             INTEGER CHECK (blq IN (0, 1)),
    outcome         TEXT NOT NULL CHECK (outcome IN ('accepted', 'duplicate', 'mismatch', 'qc')),
    UNIQUE (message_id, seq)
) STRICT;

-- Accepted values, versioned: a correction is a new version that supersedes the old one.
CREATE TABLE result (
    id              INTEGER PRIMARY KEY,
    observation_id  INTEGER NOT NULL REFERENCES observation(id),
    participant     TEXT NOT NULL REFERENCES participant(code),
    visit           TEXT NOT NULL,
    minute          INTEGER NOT NULL,
    analyte         TEXT NOT NULL,
    value           REAL NOT NULL,
    unit            TEXT NOT NULL,
    comparator      TEXT CHECK (comparator IN ('<', '<=', '>', '>=')),
    blq             INTEGER NOT NULL CHECK (blq IN (0, 1)),
    version         INTEGER NOT NULL CHECK (version >= 1),
    supersedes      INTEGER REFERENCES result(id),
    accepted_at     TEXT NOT NULL,
    accepted_by     TEXT NOT NULL,
    reason          TEXT NOT NULL,        -- 'ingest', 'correction', 'resolved: …'
    UNIQUE (participant, visit, minute, analyte, version)
) STRICT;

-- The latest version per slot: what exports and AUCs use.
CREATE VIEW current_result AS
SELECT r.* FROM result r
WHERE r.version = (SELECT max(version) FROM result x
                   WHERE x.participant = r.participant AND x.visit = r.visit
                     AND x.minute = r.minute AND x.analyte = r.analyte);

-- Held or flagged results for a data manager (SPEC §6). Open until a resolution row exists.
CREATE TABLE mismatch (
    id              INTEGER PRIMARY KEY,
    code            TEXT NOT NULL CHECK (code IN (
                        'PARSE_ERROR', 'UNKNOWN_INSTRUMENT', 'UNKNOWN_TEST', 'UNKNOWN_SAMPLE',
                        'UNKNOWN_UNIT', 'NON_NUMERIC', 'IMPLAUSIBLE', 'NOT_FINAL',
                        'PARTICIPANT_CONFLICT', 'OUT_OF_WINDOW', 'UNSCHEDULED_TIMEPOINT',
                        'DUPLICATE_CONFLICT', 'CORRECTION_WITHOUT_ORIGINAL', 'PRETEST_GLUCOSE')),
    holds           INTEGER NOT NULL CHECK (holds IN (0, 1)),  -- 0: accepted and flagged
    observation_id  INTEGER REFERENCES observation(id),
    message_id      INTEGER REFERENCES message(id),
    receipt_id      INTEGER NOT NULL REFERENCES receipt(id),
    participant     TEXT,
    visit           TEXT,
    minute          INTEGER,
    analyte         TEXT,
    detail          TEXT NOT NULL,
    created_at      TEXT NOT NULL
) STRICT;

CREATE TABLE resolution (
    id              INTEGER PRIMARY KEY,
    mismatch_id     INTEGER NOT NULL UNIQUE REFERENCES mismatch(id),
    action          TEXT NOT NULL CHECK (action IN ('assign', 'accept', 'reject', 'auto')),
    participant     TEXT,                 -- for 'assign'
    visit           TEXT,
    minute          INTEGER,
    result_id       INTEGER REFERENCES result(id),  -- the version it produced, if any
    reason          TEXT NOT NULL CHECK (length(trim(reason)) > 0),
    resolved_by     TEXT NOT NULL,
    resolved_at     TEXT NOT NULL
) STRICT;

-- Append-only audit trail, hash-chained: hash = sha256(prev_hash || canonical row).
CREATE TABLE audit_log (
    seq             INTEGER PRIMARY KEY,
    at              TEXT NOT NULL,
    actor           TEXT NOT NULL,
    action          TEXT NOT NULL,        -- 'receive', 'accept', 'supersede', 'duplicate', 'mismatch', 'import', 'resolve', …
    entity          TEXT NOT NULL,        -- table name
    entity_id       TEXT,
    detail          TEXT NOT NULL,        -- JSON
    prev_hash       TEXT NOT NULL CHECK (length(prev_hash) = 64),
    hash            TEXT NOT NULL CHECK (length(hash) = 64)
) STRICT;

CREATE INDEX observation_slot ON observation (participant, visit, minute, analyte);
CREATE INDEX mismatch_slot ON mismatch (participant, visit, minute, analyte);
CREATE INDEX receipt_raw ON receipt (raw_id);

-- Mismatches a data manager has not yet decided on.
CREATE VIEW open_mismatch AS
SELECT m.* FROM mismatch m
WHERE NOT EXISTS (SELECT 1 FROM resolution r WHERE r.mismatch_id = m.id);

-- Append-only: what was stored stays as stored. Corrections are new rows.
CREATE TRIGGER raw_no_update BEFORE UPDATE ON raw
BEGIN SELECT RAISE(ABORT, 'raw is append-only: received content is never changed'); END;
CREATE TRIGGER raw_no_delete BEFORE DELETE ON raw
BEGIN SELECT RAISE(ABORT, 'raw is append-only: received content is never deleted'); END;
CREATE TRIGGER receipt_no_update BEFORE UPDATE ON receipt
BEGIN SELECT RAISE(ABORT, 'receipt is append-only: an arrival is never changed'); END;
CREATE TRIGGER receipt_no_delete BEFORE DELETE ON receipt
BEGIN SELECT RAISE(ABORT, 'receipt is append-only: an arrival is never deleted'); END;
CREATE TRIGGER processing_no_update BEFORE UPDATE ON processing
BEGIN SELECT RAISE(ABORT, 'processing is append-only: a processing outcome is never changed'); END;
CREATE TRIGGER processing_no_delete BEFORE DELETE ON processing
BEGIN SELECT RAISE(ABORT, 'processing is append-only: a processing outcome is never deleted'); END;
CREATE TRIGGER message_no_update BEFORE UPDATE ON message
BEGIN SELECT RAISE(ABORT, 'message is append-only: a parsed message is never changed'); END;
CREATE TRIGGER message_no_delete BEFORE DELETE ON message
BEGIN SELECT RAISE(ABORT, 'message is append-only: a parsed message is never deleted'); END;
CREATE TRIGGER observation_no_update BEFORE UPDATE ON observation
BEGIN SELECT RAISE(ABORT, 'observation is append-only: a reported result is never changed'); END;
CREATE TRIGGER observation_no_delete BEFORE DELETE ON observation
BEGIN SELECT RAISE(ABORT, 'observation is append-only: a reported result is never deleted'); END;
CREATE TRIGGER result_no_update BEFORE UPDATE ON result
BEGIN SELECT RAISE(ABORT, 'result is append-only: insert a new version that supersedes it'); END;
CREATE TRIGGER result_no_delete BEFORE DELETE ON result
BEGIN SELECT RAISE(ABORT, 'result is append-only: insert a new version that supersedes it'); END;
CREATE TRIGGER mismatch_no_update BEFORE UPDATE ON mismatch
BEGIN SELECT RAISE(ABORT, 'mismatch is append-only: resolve it with a resolution row'); END;
CREATE TRIGGER mismatch_no_delete BEFORE DELETE ON mismatch
BEGIN SELECT RAISE(ABORT, 'mismatch is append-only: resolve it with a resolution row'); END;
CREATE TRIGGER resolution_no_update BEFORE UPDATE ON resolution
BEGIN SELECT RAISE(ABORT, 'resolution is append-only: a decision is never changed'); END;
CREATE TRIGGER resolution_no_delete BEFORE DELETE ON resolution
BEGIN SELECT RAISE(ABORT, 'resolution is append-only: a decision is never deleted'); END;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: the audit trail is never changed'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: the audit trail is never deleted'); END;

-- Study data may be corrected (through labfeed, audited with old and new values) but never removed:
-- results and mismatches refer to it.
CREATE TRIGGER participant_no_delete BEFORE DELETE ON participant
BEGIN SELECT RAISE(ABORT, 'participant rows are never deleted: correct them with an import'); END;
CREATE TRIGGER visit_no_delete BEFORE DELETE ON visit
BEGIN SELECT RAISE(ABORT, 'visit rows are never deleted: correct them with an import'); END;
CREATE TRIGGER sample_no_delete BEFORE DELETE ON sample
BEGIN SELECT RAISE(ABORT, 'sample rows are never deleted: correct them with an import'); END;
