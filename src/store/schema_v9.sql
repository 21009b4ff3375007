-- labfeed study database, schema version 9: smaller indexes (issue 16).
--
-- * `observation_slot` goes: no query looks observations up by slot (a
--   slot's values are found through `result`, whose unique key is by slot;
--   observations are found by id, by message and by sample ID). It took
--   about 30 bytes per result.
-- * A content is found by the SHA-256 of its bytes through an index of the
--   hash's first 16 hex digits (64 bits) instead of all 64: a lookup reads
--   the prefix in the index and compares the whole hash in the row
--   (`substr(sha256, 1, 16) = substr(?1, 1, 16) AND sha256 = ?1`). The
--   whole hash stays unique: a trigger refuses a second row with it, found
--   through the same index. SQLite cannot drop the index a UNIQUE column
--   makes, so `raw` is rebuilt with the same rows under the same ids (the
--   audit chain's digests are over rowid and columns, which do not change).
--   PostgreSQL keeps its UNIQUE constraint (schema_pg_v3.sql).

DROP INDEX observation_slot;

CREATE TABLE raw_v9 (
    id          INTEGER PRIMARY KEY,
    sha256      TEXT NOT NULL CHECK (length(sha256) = 64),     -- of the bytes as received
    size        INTEGER NOT NULL CHECK (size >= 0),
    format      TEXT CHECK (format IN ('astm', 'hl7')),        -- NULL: neither
    content     BLOB NOT NULL,                                 -- masked copy (see encoding)
    masked      TEXT NOT NULL DEFAULT '',                      -- what was masked, e.g. 'P.6,P.8'
    first_received_at TEXT NOT NULL,
    encoding    TEXT CHECK (encoding IS NULL OR encoding = 'deflate')
) STRICT;
INSERT INTO raw_v9 (id, sha256, size, format, content, masked, first_received_at, encoding)
SELECT id, sha256, size, format, content, masked, first_received_at, encoding FROM raw ORDER BY id;
DROP TABLE raw;
ALTER TABLE raw_v9 RENAME TO raw;

CREATE INDEX raw_sha256_prefix ON raw (substr(sha256, 1, 16));

CREATE TRIGGER raw_sha256_unique BEFORE INSERT ON raw
WHEN EXISTS (SELECT 1 FROM raw r WHERE substr(r.sha256, 1, 16) = substr(NEW.sha256, 1, 16) AND r.sha256 = NEW.sha256)
BEGIN SELECT RAISE(ABORT, 'UNIQUE constraint failed: raw.sha256 (a content is stored once)'); END;
CREATE TRIGGER raw_no_update BEFORE UPDATE ON raw
BEGIN SELECT RAISE(ABORT, 'raw is append-only: received content is never changed'); END;
CREATE TRIGGER raw_no_delete BEFORE DELETE ON raw
BEGIN SELECT RAISE(ABORT, 'raw is append-only: received content is never deleted'); END;
