-- labfeed study database, schema version 5: a repeated local collection time
-- read again.
--
-- `observation.collected_offset` (v4) is the occurrence chosen at ingest, by
-- the meal start and minute of that moment. When the meal start is corrected
-- or the sample moves to another minute, the choice is made again and
-- recorded here; observations stay as they arrived. The latest row of an
-- observation wins; without one, its `collected_offset` stands.
CREATE TABLE observation_offset (
    id               INTEGER PRIMARY KEY,
    observation_id   INTEGER NOT NULL REFERENCES observation(id),
    collected_offset TEXT NOT NULL CHECK (collected_offset GLOB '[+-][0-9][0-9]:[0-9][0-9]'),
    at               TEXT NOT NULL,
    reason           TEXT NOT NULL
) STRICT;

CREATE INDEX observation_offset_observation ON observation_offset (observation_id, id);

CREATE TRIGGER observation_offset_no_update BEFORE UPDATE ON observation_offset
BEGIN SELECT RAISE(ABORT, 'observation_offset is append-only: read the time again with a new row'); END;
CREATE TRIGGER observation_offset_no_delete BEFORE DELETE ON observation_offset
BEGIN SELECT RAISE(ABORT, 'observation_offset is append-only: read the time again with a new row'); END;

-- The audit rows of one entity (`report`'s history, and whether a slot was
-- filled after a not-done mark, in audit order) without a scan of the log.
CREATE INDEX audit_log_entity ON audit_log (entity, entity_id);
