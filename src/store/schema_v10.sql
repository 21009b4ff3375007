-- labfeed study database, schema version 10: compact storage of hashes, times
-- and outcomes (issue 16).
--
-- The columns users and exports read keep their names, types and values;
-- some are now computed from a compact column beside them (SQLite VIRTUAL
-- generated columns, which take no space):
-- * `raw.sha256` (64 hex digits) from `raw.digest`, the 32 bytes themselves.
--   A content is found through an index of the digest's first 8 bytes, and a
--   trigger keeps the digest unique, as schema 9 did with the hex prefix.
-- * `raw.first_received_at`, `receipt.received_at`, `processing.processed_at`
--   and `result.accepted_at` (UTC RFC 3339 text) from `…_unix`: the seconds
--   since 1970-01-01T00:00:00Z, or, for a time that is not such a whole
--   second in 1970–9999, its text as it was.
-- * `observation.collected_at` and `resulted_at` (local times as sent) from
--   `…_secs`: a time sent to the second without an offset
--   ('2026-03-02T08:45:00') as the seconds from 1970-01-01T00:00:00 to it,
--   any other (a date, minutes, a fraction, an offset) as its text.
-- * `observation.outcome` and `processing.outcome` from `outcome_code`, the
--   outcome's place in its list from 0 (the common ones, 'accepted' and
--   'processed', take no bytes at all).
-- Readers and the audit chain's digests see the same text as before, so
-- every row written before verifies as it did, and a compact value changed
-- behind labfeed's back changes the text the chain vouches for. A generated
-- column cannot be written: labfeed inserts the compact ones.
-- SQLite cannot turn a column into a generated one in place: the five tables
-- are rebuilt with the same rows under the same ids, with their triggers,
-- indexes and the view over `result`. PostgreSQL keeps its columns.

DROP VIEW current_result;

CREATE TABLE raw_v10 (
    id          INTEGER PRIMARY KEY,
    sha256      TEXT NOT NULL GENERATED ALWAYS AS (lower(hex(digest))) VIRTUAL,  -- of the bytes as received
    size        INTEGER NOT NULL CHECK (size >= 0),
    format      TEXT CHECK (format IN ('astm', 'hl7')),        -- NULL: neither
    content     BLOB NOT NULL,                                 -- masked copy (see encoding)
    masked      TEXT NOT NULL DEFAULT '',                      -- what was masked, e.g. 'P.6,P.8'
    first_received_at TEXT NOT NULL GENERATED ALWAYS AS (
        CASE typeof(first_received_unix) WHEN 'integer'
        THEN strftime('%Y-%m-%dT%H:%M:%SZ', first_received_unix, 'unixepoch') ELSE first_received_unix END) VIRTUAL,
    encoding    TEXT CHECK (encoding IS NULL OR encoding = 'deflate'),
    digest      BLOB NOT NULL CHECK (length(digest) = 32),     -- SHA-256 of the bytes as received
    first_received_unix ANY NOT NULL CHECK (typeof(first_received_unix) IN ('integer', 'text'))
) STRICT;
INSERT INTO raw_v10 (id, size, format, content, masked, encoding, digest, first_received_unix)
SELECT id, size, format, content, masked, encoding,
       CASE WHEN lower(hex(unhex(sha256))) = sha256 THEN unhex(sha256) END,  -- NULL (refused) if not as labfeed wrote it
       CASE WHEN unixepoch(first_received_at) >= 0
             AND strftime('%Y-%m-%dT%H:%M:%SZ', unixepoch(first_received_at), 'unixepoch') IS first_received_at
            THEN unixepoch(first_received_at) ELSE first_received_at END
FROM raw ORDER BY id;

CREATE TABLE receipt_v10 (
    id          INTEGER PRIMARY KEY,
    raw_id      INTEGER NOT NULL REFERENCES raw(id),
    received_at TEXT NOT NULL GENERATED ALWAYS AS (
        CASE typeof(received_unix) WHEN 'integer'
        THEN strftime('%Y-%m-%dT%H:%M:%SZ', received_unix, 'unixepoch') ELSE received_unix END) VIRTUAL,
    source      TEXT NOT NULL CHECK (source IN ('file', 'ingest', 'serial', 'tcp')),
    origin      TEXT NOT NULL,            -- file name, device path or peer address
    instrument  TEXT,                     -- the link's instrument; NULL for files (the sender decides)
    instance    TEXT,
    received_unix ANY NOT NULL CHECK (typeof(received_unix) IN ('integer', 'text'))
) STRICT;
INSERT INTO receipt_v10 (id, raw_id, source, origin, instrument, instance, received_unix)
SELECT id, raw_id, source, origin, instrument, instance,
       CASE WHEN unixepoch(received_at) >= 0
             AND strftime('%Y-%m-%dT%H:%M:%SZ', unixepoch(received_at), 'unixepoch') IS received_at
            THEN unixepoch(received_at) ELSE received_at END
FROM receipt ORDER BY id;

CREATE TABLE processing_v10 (
    receipt_id  INTEGER PRIMARY KEY REFERENCES receipt(id),
    processed_at TEXT NOT NULL GENERATED ALWAYS AS (
        CASE typeof(processed_unix) WHEN 'integer'
        THEN strftime('%Y-%m-%dT%H:%M:%SZ', processed_unix, 'unixepoch') ELSE processed_unix END) VIRTUAL,
    outcome     TEXT NOT NULL GENERATED ALWAYS AS (
        CASE outcome_code WHEN 0 THEN 'processed' WHEN 1 THEN 'duplicate' WHEN 2 THEN 'rejected' WHEN 3 THEN 'aborted'
        END) VIRTUAL CHECK (outcome IN ('processed', 'duplicate', 'rejected', 'aborted')),
    accepted    INTEGER NOT NULL CHECK (accepted >= 0),
    duplicates  INTEGER NOT NULL CHECK (duplicates >= 0),
    mismatches  INTEGER NOT NULL CHECK (mismatches >= 0),
    qc          INTEGER NOT NULL CHECK (qc >= 0),
    errors      INTEGER NOT NULL CHECK (errors >= 0),
    detail      TEXT,                     -- plain words when rejected or aborted
    processed_unix ANY NOT NULL CHECK (typeof(processed_unix) IN ('integer', 'text')),
    outcome_code INTEGER NOT NULL CHECK (outcome_code BETWEEN 0 AND 3)
) STRICT;
INSERT INTO processing_v10 (receipt_id, outcome_code, accepted, duplicates, mismatches, qc, errors, detail,
                            processed_unix)
SELECT receipt_id,
       CASE outcome WHEN 'processed' THEN 0 WHEN 'duplicate' THEN 1 WHEN 'rejected' THEN 2 WHEN 'aborted' THEN 3 END,
       accepted, duplicates, mismatches, qc, errors, detail,
       CASE WHEN unixepoch(processed_at) >= 0
             AND strftime('%Y-%m-%dT%H:%M:%SZ', unixepoch(processed_at), 'unixepoch') IS processed_at
            THEN unixepoch(processed_at) ELSE processed_at END
FROM processing ORDER BY receipt_id;

CREATE TABLE result_v10 (
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
    accepted_at     TEXT NOT NULL GENERATED ALWAYS AS (
        CASE typeof(accepted_unix) WHEN 'integer'
        THEN strftime('%Y-%m-%dT%H:%M:%SZ', accepted_unix, 'unixepoch') ELSE accepted_unix END) VIRTUAL,
    accepted_by     TEXT NOT NULL,
    reason          TEXT NOT NULL,        -- 'ingest', 'correction', 'resolved: …'
    withdrawn       INTEGER NOT NULL DEFAULT 0 CHECK (withdrawn IN (0, 1)),
    unfilled        INTEGER NOT NULL DEFAULT 0 CHECK (unfilled IN (0, 1)),
    accepted_unix   ANY NOT NULL CHECK (typeof(accepted_unix) IN ('integer', 'text')),
    UNIQUE (participant, visit, minute, analyte, version)
) STRICT;
INSERT INTO result_v10 (id, observation_id, participant, visit, minute, analyte, value, unit, comparator, blq, version,
                        supersedes, accepted_by, reason, withdrawn, unfilled, accepted_unix)
SELECT id, observation_id, participant, visit, minute, analyte, value, unit, comparator, blq, version,
       supersedes, accepted_by, reason, withdrawn, unfilled,
       CASE WHEN unixepoch(accepted_at) >= 0
             AND strftime('%Y-%m-%dT%H:%M:%SZ', unixepoch(accepted_at), 'unixepoch') IS accepted_at
            THEN unixepoch(accepted_at) ELSE accepted_at END
FROM result ORDER BY id;

CREATE TABLE observation_v10 (
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
    collected_at    TEXT GENERATED ALWAYS AS (           -- as sent (ISO 8601, offset only if sent)
        CASE typeof(collected_secs) WHEN 'integer'
        THEN strftime('%Y-%m-%dT%H:%M:%S', collected_secs, 'unixepoch') ELSE collected_secs END) VIRTUAL,
    resulted_at     TEXT GENERATED ALWAYS AS (
        CASE typeof(resulted_secs) WHEN 'integer'
        THEN strftime('%Y-%m-%dT%H:%M:%S', resulted_secs, 'unixepoch') ELSE resulted_secs END) VIRTUAL,
    qc              INTEGER NOT NULL CHECK (qc IN (0, 1)),
    participant     TEXT,                 -- the match, when there is one
    visit           TEXT,
    minute          INTEGER,
    analyte         TEXT,
    value           REAL,                 -- in the analyte's canonical unit
    unit            TEXT,
    blq             INTEGER CHECK (blq IN (0, 1)),
    outcome         TEXT NOT NULL GENERATED ALWAYS AS (
        CASE outcome_code WHEN 0 THEN 'accepted' WHEN 1 THEN 'duplicate' WHEN 2 THEN 'mismatch' WHEN 3 THEN 'qc' END)
        VIRTUAL CHECK (outcome IN ('accepted', 'duplicate', 'mismatch', 'qc')),
    collected_offset TEXT CHECK (collected_offset IS NULL OR collected_offset GLOB '[+-][0-9][0-9]:[0-9][0-9]'),
    collected_secs  ANY CHECK (typeof(collected_secs) IN ('null', 'integer', 'text')),
    resulted_secs   ANY CHECK (typeof(resulted_secs) IN ('null', 'integer', 'text')),
    outcome_code    INTEGER NOT NULL CHECK (outcome_code BETWEEN 0 AND 3),
    UNIQUE (message_id, seq)
) STRICT;
INSERT INTO observation_v10 (id, message_id, seq, byte_offset, instrument, sample_id, test_code, reported_value,
                             reported_unit, comparator, reported_numeric, flags, status, qc, participant, visit, minute,
                             analyte, value, unit, blq, outcome_code, collected_offset, collected_secs, resulted_secs)
SELECT id, message_id, seq, byte_offset, instrument, sample_id, test_code, reported_value, reported_unit, comparator,
       reported_numeric, flags, status, qc, participant, visit, minute, analyte, value, unit, blq,
       CASE outcome WHEN 'accepted' THEN 0 WHEN 'duplicate' THEN 1 WHEN 'mismatch' THEN 2 WHEN 'qc' THEN 3 END,
       collected_offset,
       CASE WHEN length(collected_at) = 19 AND unixepoch(collected_at) >= 0
             AND strftime('%Y-%m-%dT%H:%M:%S', unixepoch(collected_at), 'unixepoch') IS collected_at
            THEN unixepoch(collected_at) ELSE collected_at END,
       CASE WHEN length(resulted_at) = 19 AND unixepoch(resulted_at) >= 0
             AND strftime('%Y-%m-%dT%H:%M:%S', unixepoch(resulted_at), 'unixepoch') IS resulted_at
            THEN unixepoch(resulted_at) ELSE resulted_at END
FROM observation ORDER BY id;

DROP TABLE result;
DROP TABLE observation;
DROP TABLE processing;
DROP TABLE receipt;
DROP TABLE raw;
ALTER TABLE raw_v10 RENAME TO raw;
ALTER TABLE receipt_v10 RENAME TO receipt;
ALTER TABLE processing_v10 RENAME TO processing;
ALTER TABLE observation_v10 RENAME TO observation;
ALTER TABLE result_v10 RENAME TO result;

CREATE INDEX raw_digest_prefix ON raw (substr(digest, 1, 8));
CREATE INDEX receipt_raw ON receipt (raw_id);

-- The latest version per slot, unless that version is a withdrawal: what
-- exports and AUCs use. Its columns are those of schema 9.
CREATE VIEW current_result AS
SELECT r.id, r.observation_id, r.participant, r.visit, r.minute, r.analyte, r.value, r.unit, r.comparator, r.blq,
       r.version, r.supersedes, r.accepted_at, r.accepted_by, r.reason, r.withdrawn, r.unfilled
FROM result r
WHERE r.withdrawn = 0
  AND r.version = (SELECT max(version) FROM result x
                   WHERE x.participant = r.participant AND x.visit = r.visit
                     AND x.minute = r.minute AND x.analyte = r.analyte);

CREATE TRIGGER raw_digest_unique BEFORE INSERT ON raw
WHEN EXISTS (SELECT 1 FROM raw r WHERE substr(r.digest, 1, 8) = substr(NEW.digest, 1, 8) AND r.digest = NEW.digest)
BEGIN SELECT RAISE(ABORT, 'UNIQUE constraint failed: raw.sha256 (a content is stored once)'); END;
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
CREATE TRIGGER observation_no_update BEFORE UPDATE ON observation
BEGIN SELECT RAISE(ABORT, 'observation is append-only: a reported result is never changed'); END;
CREATE TRIGGER observation_no_delete BEFORE DELETE ON observation
BEGIN SELECT RAISE(ABORT, 'observation is append-only: a reported result is never deleted'); END;
CREATE TRIGGER result_no_update BEFORE UPDATE ON result
BEGIN SELECT RAISE(ABORT, 'result is append-only: insert a new version that supersedes it'); END;
CREATE TRIGGER result_no_delete BEFORE DELETE ON result
BEGIN SELECT RAISE(ABORT, 'result is append-only: insert a new version that supersedes it'); END;
