-- labfeed study database, schema version 2: a slot's value can be withdrawn.
--
-- A data manager who rejects an accepted (flagged) value, or assigns it to
-- another slot, takes it out of its slot without deleting anything: a new
-- result version with withdrawn = 1 (carrying the value it withdraws, for the
-- record). The slot then has no current result until another value arrives.
ALTER TABLE result ADD COLUMN withdrawn INTEGER NOT NULL DEFAULT 0 CHECK (withdrawn IN (0, 1));

DROP VIEW current_result;
-- The latest version per slot, unless that version is a withdrawal: what
-- exports and AUCs use.
CREATE VIEW current_result AS
SELECT r.* FROM result r
WHERE r.withdrawn = 0
  AND r.version = (SELECT max(version) FROM result x
                   WHERE x.participant = r.participant AND x.visit = r.visit
                     AND x.minute = r.minute AND x.analyte = r.analyte);
