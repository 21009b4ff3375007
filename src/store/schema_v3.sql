-- labfeed study database, schema version 3: reversible decisions and
-- MISSING_RESULT ids.
--
-- * A mismatch may be decided, reopened and decided again: `resolution` loses
--   UNIQUE (mismatch_id); its latest row is the one in force, and a mismatch
--   is open when it has none or the latest is a 'reopen'. New actions:
--   'reopen' and 'not_done' (a MISSING_RESULT slot whose sample was not drawn
--   or not analysed). `cause` ties a row to the decision it follows from: for
--   'reopen' the decision it undoes, for 'auto' the decision whose effect
--   closed it along (NULL when ingest closed it).
-- * `resolution_effect` records what a decision wrote (result versions) and
--   raised (new mismatches), so that reopening it can put back exactly that.
-- * `mismatch` also holds one MISSING_RESULT row per scheduled slot
--   (participant, visit, minute, analyte) of a visit with a meal start, so
--   the slot has an id in the same namespace as every other mismatch. Such a
--   row has no receipt and never holds anything; whether it is shown depends
--   on the slot being empty and the meal start having passed (reports).
--   LOCKED is allowed for the data lock.
--
-- SQLite cannot alter constraints in place: both tables are rebuilt (the
-- migration runs with foreign keys off and checks them before commit), and
-- the view, index and triggers that depend on them are created again.

DROP VIEW open_mismatch;

-- A withdrawal that puts a slot back to "nothing received" rather than
-- "rejected": a reopen undoing the decision that first filled it.
ALTER TABLE result ADD COLUMN unfilled INTEGER NOT NULL DEFAULT 0 CHECK (unfilled IN (0, 1));

CREATE TABLE mismatch_v3 (
    id              INTEGER PRIMARY KEY,
    code            TEXT NOT NULL CHECK (code IN (
                        'PARSE_ERROR', 'UNKNOWN_INSTRUMENT', 'UNKNOWN_TEST', 'UNKNOWN_SAMPLE',
                        'UNKNOWN_UNIT', 'NON_NUMERIC', 'IMPLAUSIBLE', 'NOT_FINAL',
                        'PARTICIPANT_CONFLICT', 'OUT_OF_WINDOW', 'UNSCHEDULED_TIMEPOINT',
                        'DUPLICATE_CONFLICT', 'CORRECTION_WITHOUT_ORIGINAL', 'PRETEST_GLUCOSE',
                        'MISSING_RESULT', 'LOCKED')),
    holds           INTEGER NOT NULL CHECK (holds IN (0, 1)),  -- 0: accepted and flagged
    observation_id  INTEGER REFERENCES observation(id),
    message_id      INTEGER REFERENCES message(id),
    receipt_id      INTEGER REFERENCES receipt(id),            -- NULL only for MISSING_RESULT
    participant     TEXT,
    visit           TEXT,
    minute          INTEGER,
    analyte         TEXT,
    detail          TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    CHECK (receipt_id IS NOT NULL OR code = 'MISSING_RESULT'),
    CHECK (code <> 'MISSING_RESULT' OR (holds = 0 AND observation_id IS NULL AND participant IS NOT NULL
                                         AND visit IS NOT NULL AND minute IS NOT NULL AND analyte IS NOT NULL))
) STRICT;
INSERT INTO mismatch_v3 (id, code, holds, observation_id, message_id, receipt_id, participant, visit, minute,
                         analyte, detail, created_at)
SELECT id, code, holds, observation_id, message_id, receipt_id, participant, visit, minute, analyte, detail,
       created_at
FROM mismatch;

CREATE TABLE resolution_v3 (
    id              INTEGER PRIMARY KEY,
    mismatch_id     INTEGER NOT NULL REFERENCES mismatch(id),
    action          TEXT NOT NULL CHECK (action IN ('assign', 'accept', 'reject', 'auto', 'not_done', 'reopen')),
    participant     TEXT,                 -- for 'assign'
    visit           TEXT,
    minute          INTEGER,
    result_id       INTEGER REFERENCES result(id),  -- the version it produced, if any
    reason          TEXT NOT NULL CHECK (length(trim(reason)) > 0),
    resolved_by     TEXT NOT NULL,
    resolved_at     TEXT NOT NULL,
    cause           INTEGER REFERENCES resolution(id),
    CHECK (action <> 'reopen' OR cause IS NOT NULL)
) STRICT;
-- A pre-v3 'auto' closing that a data manager's decision caused (a flag of a
-- value that was rejected or moved) names that decision: same withdrawn
-- version, same transaction time.
INSERT INTO resolution_v3 (id, mismatch_id, action, participant, visit, minute, result_id, reason, resolved_by,
                           resolved_at, cause)
SELECT s.id, s.mismatch_id, s.action, s.participant, s.visit, s.minute, s.result_id, s.reason, s.resolved_by,
       s.resolved_at,
       CASE WHEN s.action = 'auto' AND s.result_id IS NOT NULL THEN
           (SELECT min(d.id) FROM resolution d
            WHERE d.action IN ('reject', 'assign') AND d.mismatch_id <> s.mismatch_id
              AND d.resolved_at = s.resolved_at
              AND EXISTS (SELECT 1 FROM result w WHERE w.id = s.result_id AND w.withdrawn = 1
                            AND w.accepted_at = d.resolved_at AND w.accepted_by = d.resolved_by
                            AND w.reason LIKE 'resolved mismatch ' || d.mismatch_id || ' (%'))
       END
FROM resolution s;

DROP TABLE resolution;
DROP TABLE mismatch;
ALTER TABLE mismatch_v3 RENAME TO mismatch;
ALTER TABLE resolution_v3 RENAME TO resolution;

-- What a decision wrote: the result versions it added ('result') and the
-- mismatches it raised ('raised'). Reopening undoes exactly these.
CREATE TABLE resolution_effect (
    resolution_id   INTEGER NOT NULL REFERENCES resolution(id),
    kind            TEXT NOT NULL CHECK (kind IN ('result', 'raised')),
    result_id       INTEGER REFERENCES result(id),
    mismatch_id     INTEGER REFERENCES mismatch(id),
    CHECK ((kind = 'result') = (result_id IS NOT NULL)),
    CHECK ((kind = 'raised') = (mismatch_id IS NOT NULL))
) STRICT;
-- Effects of pre-v3 decisions, recovered from what the decision wrote in its
-- own transaction: versions tagged with its mismatch, and mismatches about
-- the same result created at the same time.
INSERT INTO resolution_effect (resolution_id, kind, result_id)
SELECT s.id, 'result', r.id FROM resolution s JOIN result r
  ON r.accepted_at = s.resolved_at AND r.accepted_by = s.resolved_by
 AND r.reason LIKE 'resolved mismatch ' || s.mismatch_id || ' (%'
WHERE s.action IN ('assign', 'accept', 'reject')
ORDER BY s.id, r.id;
INSERT INTO resolution_effect (resolution_id, kind, mismatch_id)
SELECT s.id, 'raised', n.id FROM resolution s JOIN mismatch m ON m.id = s.mismatch_id
JOIN mismatch n ON n.observation_id = m.observation_id AND n.id > m.id AND n.created_at = s.resolved_at
WHERE s.action IN ('assign', 'accept', 'reject')
ORDER BY s.id, n.id;

CREATE INDEX mismatch_slot ON mismatch (participant, visit, minute, analyte);
CREATE INDEX mismatch_observation ON mismatch (observation_id);
-- One MISSING_RESULT id per slot, for ever.
CREATE UNIQUE INDEX mismatch_missing_slot ON mismatch (participant, visit, minute, analyte)
    WHERE code = 'MISSING_RESULT';
CREATE INDEX resolution_mismatch ON resolution (mismatch_id, id);
CREATE INDEX resolution_cause ON resolution (cause);
CREATE INDEX resolution_effect_resolution ON resolution_effect (resolution_id);

-- Mismatches a data manager has not yet decided on, or reopened: no
-- resolution, or the latest one is a 'reopen'. MISSING_RESULT rows are not
-- here: whether a slot is missing depends on the clock and the configuration
-- (see study::missing).
CREATE VIEW open_mismatch AS
SELECT m.* FROM mismatch m
WHERE m.code <> 'MISSING_RESULT'
  AND coalesce((SELECT r.action FROM resolution r WHERE r.mismatch_id = m.id ORDER BY r.id DESC LIMIT 1),
               'reopen') = 'reopen';

CREATE TRIGGER mismatch_no_update BEFORE UPDATE ON mismatch
BEGIN SELECT RAISE(ABORT, 'mismatch is append-only: resolve it with a resolution row'); END;
CREATE TRIGGER mismatch_no_delete BEFORE DELETE ON mismatch
BEGIN SELECT RAISE(ABORT, 'mismatch is append-only: resolve it with a resolution row'); END;
CREATE TRIGGER resolution_no_update BEFORE UPDATE ON resolution
BEGIN SELECT RAISE(ABORT, 'resolution is append-only: a decision is never changed, it is reopened'); END;
CREATE TRIGGER resolution_no_delete BEFORE DELETE ON resolution
BEGIN SELECT RAISE(ABORT, 'resolution is append-only: a decision is never deleted, it is reopened'); END;
CREATE TRIGGER resolution_effect_no_update BEFORE UPDATE ON resolution_effect
BEGIN SELECT RAISE(ABORT, 'resolution_effect is append-only: what a decision did is never changed'); END;
CREATE TRIGGER resolution_effect_no_delete BEFORE DELETE ON resolution_effect
BEGIN SELECT RAISE(ABORT, 'resolution_effect is append-only: what a decision did is never deleted'); END;
