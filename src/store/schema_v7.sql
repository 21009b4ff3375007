-- labfeed study database, schema version 7: the keyed audit chain and
-- vouched rows (SPEC §9).
--
-- `audit_log.keyed`: the row's hash is an HMAC under the audit key. Older
-- rows stay as they were (plain SHA-256) and are verified as before.
ALTER TABLE audit_log ADD COLUMN keyed INTEGER NOT NULL DEFAULT 0 CHECK (keyed IN (0, 1));

-- How a raw copy is kept: NULL as is, 'deflate' compressed (DEFLATE, RFC
-- 1951). Analyzer text packs to about half; a raw copy is the largest part
-- of the database.
ALTER TABLE raw ADD COLUMN encoding TEXT CHECK (encoding IS NULL OR encoding = 'deflate');

-- The largest result id when a decision was recorded: a result with a
-- larger id came after it (a not-done mark lapses once a value is put in).
-- Machine inserts are vouched by one `commit` audit row per transaction, so
-- the audit log no longer orders single results.
ALTER TABLE resolution ADD COLUMN result_watermark INTEGER;

-- Decisions recorded before: their watermark from audit order (the largest
-- result audited before the decision), so one rule serves old and new rows.
DROP TRIGGER resolution_no_update;
UPDATE resolution SET result_watermark = (
    SELECT coalesce(max(CAST(a.entity_id AS INTEGER)), 0) FROM audit_log a
    WHERE a.entity = 'result'
      AND a.seq < (SELECT max(b.seq) FROM audit_log b
                   WHERE b.entity = 'resolution' AND b.entity_id = CAST(resolution.id AS TEXT)));
UPDATE resolution SET result_watermark = 0 WHERE result_watermark IS NULL;
CREATE TRIGGER resolution_no_update BEFORE UPDATE ON resolution
BEGIN SELECT RAISE(ABORT, 'resolution is append-only: a decision is never changed, it is reopened'); END;
