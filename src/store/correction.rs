//! Queries for study-data corrections (`import` of a changed sample row or
//! meal start): which results belong to a sample or a visit, and what a data
//! manager already decided about them.

use std::collections::BTreeSet;

use crate::store::sql::params;

use crate::store::StoreError;
use crate::store::read::{MISMATCH_COLUMNS, MISMATCH_FROM, RESULT_COLUMNS, Reader, mismatch_row, result_row};
use crate::store::types::*;

/// Where an observation's content came from: enough to read the reported
/// result again from the stored copy and to raise a mismatch about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservationSource {
    pub raw_id: RawId,
    /// The message's number within the content (from 1).
    pub message_number: i64,
    /// The result's order within the message (from 1).
    pub seq: i64,
    /// The first arrival of the content.
    pub receipt_id: ReceiptId,
    /// That arrival's link instrument (`None` for files).
    pub link_instrument: Option<String>,
}

impl Reader<'_> {
    /// The observations of `sample_id` that a sample move concerns: study
    /// results (not QC) that were accepted or held, not re-deliveries. Oldest first.
    pub fn movable_observations_of_sample(&self, sample_id: &str) -> Result<Vec<ObservationId>, StoreError> {
        self.db().query_all(
            "SELECT id FROM observation WHERE sample_id = ?1 AND qc = 0 AND outcome IN ('accepted', 'mismatch')
             ORDER BY id",
            params![sample_id],
            |r| r.get(0),
        )
    }

    /// Every sample ID that has movable observations (see
    /// [`Reader::movable_observations_of_sample`]): one scan, so a large
    /// manifest import does not scan the observations once per row.
    pub fn sample_ids_with_movable_observations(&self) -> Result<BTreeSet<String>, StoreError> {
        self.db().query_all(
            "SELECT DISTINCT sample_id FROM observation
             WHERE sample_id IS NOT NULL AND qc = 0 AND outcome IN ('accepted', 'mismatch')",
            params![],
            |r| r.get(0),
        )
    }

    /// The slots where the observation's value is the current result.
    pub fn current_results_of_observation(&self, id: ObservationId) -> Result<Vec<ResultRow>, StoreError> {
        let sql = format!("SELECT {RESULT_COLUMNS} FROM current_result r WHERE r.observation_id = ?1 ORDER BY r.id");
        self.db().query_all(&sql, params![id], |r| result_row(r, 0))
    }

    /// The latest `resolve --assign` in force (not reopened) of a mismatch
    /// about this observation, if a data manager placed it by hand: its
    /// mismatch id.
    pub fn assignment_of_observation(&self, id: ObservationId) -> Result<Option<MismatchId>, StoreError> {
        self.db().query_opt(
            "SELECT m.id FROM mismatch m JOIN resolution s ON s.mismatch_id = m.id
                 WHERE m.observation_id = ?1 AND s.action = 'assign'
                   AND s.id = (SELECT max(id) FROM resolution WHERE mismatch_id = m.id)
                 ORDER BY s.id DESC LIMIT 1",
            params![id],
            |r| r.get(0),
        )
    }

    /// The current results of one visit, by minute and analyte.
    pub fn current_results_of_visit(&self, participant: &str, visit: &str) -> Result<Vec<ResultRow>, StoreError> {
        let sql = format!(
            "SELECT {RESULT_COLUMNS} FROM current_result r WHERE r.participant = ?1 AND r.visit = ?2
             ORDER BY r.minute, r.analyte"
        );
        self.db().query_all(&sql, params![participant, visit], |r| result_row(r, 0))
    }

    /// Open mismatches of one code about one visit, by minute, analyte and id.
    pub fn open_mismatches_of_visit(
        &self,
        participant: &str,
        visit: &str,
        code: MismatchCode,
    ) -> Result<Vec<MismatchRow>, StoreError> {
        let sql = format!(
            "SELECT {MISMATCH_COLUMNS} FROM {MISMATCH_FROM}
             WHERE s.id IS NULL AND m.participant = ?1 AND m.visit = ?2 AND m.code = ?3
             ORDER BY m.minute NULLS FIRST, m.analyte NULLS FIRST, m.id"
        );
        self.db().query_all(&sql, params![participant, visit, code], |r| mismatch_row(r, 0))
    }

    /// Open UNKNOWN_SAMPLE mismatches whose sample the manifest now places
    /// in `slot` (the analyte too, when the mismatch knows it), by id.
    pub fn unknown_samples_placed_in(&self, slot: &Slot) -> Result<Vec<MismatchId>, StoreError> {
        self.db().query_all(
            "SELECT m.id FROM open_mismatch m JOIN observation o ON o.id = m.observation_id
             JOIN sample s ON s.sample_id = o.sample_id
             WHERE m.code = 'UNKNOWN_SAMPLE' AND m.holds = 1 AND s.participant = ?1 AND s.visit = ?2
               AND s.minute = ?3 AND (m.analyte IS NULL OR m.analyte = ?4)
             ORDER BY m.id",
            params![slot.participant, slot.visit, slot.minute, slot.analyte],
            |r| r.get(0),
        )
    }

    /// Open UNKNOWN_SAMPLE mismatches about results of `sample_id`, by id.
    pub fn unknown_sample_mismatches_of(&self, sample_id: &str) -> Result<Vec<MismatchId>, StoreError> {
        self.db().query_all(
            "SELECT m.id FROM open_mismatch m JOIN observation o ON o.id = m.observation_id
             WHERE m.code = 'UNKNOWN_SAMPLE' AND m.holds = 1 AND o.sample_id = ?1 ORDER BY m.id",
            params![sample_id],
            |r| r.get(0),
        )
    }

    /// The offset a repeated local collection time of observation `id` is
    /// read with now: the latest one read again, else the one of ingest.
    pub fn collected_offset(&self, id: ObservationId) -> Result<Option<String>, StoreError> {
        Ok(self
            .db()
            .query_opt(
                "SELECT coalesce((SELECT x.collected_offset FROM observation_offset x WHERE x.observation_id = o.id
                                  ORDER BY x.id DESC LIMIT 1), o.collected_offset)
                 FROM observation o WHERE o.id = ?1",
                params![id],
                |r| r.get(0),
            )?
            .flatten())
    }

    /// Whether result version `id` was written by a data manager's decision
    /// or a reopen (it is in `resolution_effect`), not by labfeed on its own.
    pub fn written_by_decision(&self, id: ResultId) -> Result<bool, StoreError> {
        self.db().query_row("SELECT EXISTS (SELECT 1 FROM resolution_effect WHERE result_id = ?1)", params![id], |r| {
            r.get(0)
        })
    }

    /// Where an observation came from (see [`ObservationSource`]).
    pub fn observation_source(&self, id: ObservationId) -> Result<Option<ObservationSource>, StoreError> {
        self.db().query_opt(
            "SELECT msg.raw_id, msg.number, o.seq, rc.id, rc.instrument
                 FROM observation o JOIN message msg ON msg.id = o.message_id
                 JOIN receipt rc ON rc.id = (SELECT min(id) FROM receipt WHERE raw_id = msg.raw_id)
                 WHERE o.id = ?1",
            params![id],
            |r| {
                Ok(ObservationSource {
                    raw_id: r.get(0)?,
                    message_number: r.get(1)?,
                    seq: r.get(2)?,
                    receipt_id: r.get(3)?,
                    link_instrument: r.get(4)?,
                })
            },
        )
    }
}
