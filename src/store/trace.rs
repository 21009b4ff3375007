//! A sample's trace (the console's sample search): every message, result,
//! mismatch and decision that concerns one sample ID.

use crate::store::read::{
    MISMATCH_COLUMNS, MISMATCH_FROM, NOT_MISSING, Scope, VERSIONS_ORDER, mismatch_row, result_row, result_table_columns,
};
use crate::store::sql::params;
use crate::store::{
    MessageId, MismatchRow, ObservationId, Participant, Reader, ResolutionRow, ResultRow, Sample, Source, StoreError,
};

/// One reported result of the sample, with the message and arrival it came in.
#[derive(Debug, Clone, PartialEq)]
pub struct TracedObservation {
    pub id: ObservationId,
    pub message_id: MessageId,
    /// The message's sender field (ASTM H.5 / HL7 MSH-3) and control ID.
    pub sender: Option<String>,
    pub control_id: Option<String>,
    pub instrument: Option<String>,
    pub test_code: Option<String>,
    pub reported_value: Option<String>,
    pub reported_unit: Option<String>,
    pub status: Option<String>,
    pub collected_at: Option<String>,
    /// `accepted`, `duplicate`, `mismatch` or `qc`.
    pub outcome: String,
    /// Where it was matched (participant/visit/minute analyte), if anywhere.
    pub participant: Option<String>,
    pub visit: Option<String>,
    pub minute: Option<i64>,
    pub analyte: Option<String>,
    /// The first arrival of its content.
    pub source: Option<Source>,
    pub received_at: Option<jiff::Timestamp>,
    pub origin: Option<String>,
}

/// Everything stored about one sample ID.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SampleTrace {
    /// The manifest row, if the sample is in the manifest.
    pub sample: Option<Sample>,
    pub observations: Vec<TracedObservation>,
    /// Every result version written from its observations, withdrawals
    /// included, oldest first, each with whether it is the slot's current one.
    pub results: Vec<(ResultRow, bool)>,
    /// The mismatches its observations raised, with the decision in force.
    pub mismatches: Vec<MismatchRow>,
    /// Every decision and reopen on those mismatches, oldest first.
    pub decisions: Vec<(crate::store::MismatchId, ResolutionRow)>,
}

impl Reader<'_> {
    /// Every message, result, mismatch and decision that concerns `sample_id`.
    pub fn sample_trace(&self, sample_id: &str) -> Result<SampleTrace, StoreError> {
        let observations: Vec<TracedObservation> = self.db().query_all(
            "SELECT o.id, o.message_id, msg.sender, msg.control_id, o.instrument, o.test_code, o.reported_value,
                    o.reported_unit, o.status, o.collected_at, o.outcome, o.participant, o.visit, o.minute,
                    o.analyte, rc.source, rc.received_at, rc.origin
             FROM observation o JOIN message msg ON msg.id = o.message_id
             LEFT JOIN receipt rc ON rc.id = (SELECT min(id) FROM receipt WHERE raw_id = msg.raw_id)
             WHERE o.sample_id = ?1 ORDER BY o.id",
            params![sample_id],
            |r| {
                Ok(TracedObservation {
                    id: r.get(0)?,
                    message_id: r.get(1)?,
                    sender: r.get(2)?,
                    control_id: r.get(3)?,
                    instrument: r.get(4)?,
                    test_code: r.get(5)?,
                    reported_value: r.get(6)?,
                    reported_unit: r.get(7)?,
                    status: r.get(8)?,
                    collected_at: r.get(9)?,
                    outcome: r.get(10)?,
                    participant: r.get(11)?,
                    visit: r.get(12)?,
                    minute: r.get(13)?,
                    analyte: r.get(14)?,
                    source: r.get(15)?,
                    received_at: r.get(16)?,
                    origin: r.get(17)?,
                })
            },
        )?;
        let columns = result_table_columns(self.db());
        let sql = format!(
            "SELECT {columns}, EXISTS (SELECT 1 FROM current_result c WHERE c.id = r.id)
             FROM result r JOIN observation o ON o.id = r.observation_id
             WHERE o.sample_id = ?1 ORDER BY r.id"
        );
        let results: Vec<(ResultRow, bool)> =
            self.db().query_all(&sql, params![sample_id], |r| Ok((result_row(r, 0)?, r.get(16)?)))?;
        let sql = format!(
            "SELECT {MISMATCH_COLUMNS} FROM {MISMATCH_FROM} JOIN observation o ON o.id = m.observation_id
             WHERE o.sample_id = ?1 AND {NOT_MISSING} ORDER BY m.id"
        );
        let mismatches: Vec<MismatchRow> = self.db().query_all(&sql, params![sample_id], |r| mismatch_row(r, 0))?;
        let mut decisions: Vec<(crate::store::MismatchId, ResolutionRow)> = Vec::new();
        for m in &mismatches {
            decisions.extend(self.decisions(m.id)?.into_iter().map(|d| (m.id, d)));
        }
        decisions.sort_by_key(|(_, d)| d.id);
        Ok(SampleTrace { sample: self.sample(sample_id)?, observations, results, mismatches, decisions })
    }

    /// The current results of one participant, by visit, minute and analyte.
    pub fn current_results_of_participant(&self, participant: &str) -> Result<Vec<ResultRow>, StoreError> {
        self.current_results_in(&Scope::Participant(participant.to_owned()))
    }

    /// The current results of `scope`, by participant, visit, minute and analyte.
    pub fn current_results_in(&self, scope: &Scope) -> Result<Vec<ResultRow>, StoreError> {
        let columns = result_table_columns(self.db());
        let sql = format!(
            "SELECT {columns} FROM result r WHERE 1 = 1{} ORDER BY {VERSIONS_ORDER}",
            scope.and("r.participant", 1)
        );
        let mut current = Vec::new();
        self.each_current(&sql, &scope.bind(params![]), |r| result_row(r, 0), |r| r, |r| current.push(r))?;
        Ok(current)
    }

    /// The open mismatches about one participant, by visit, minute, analyte and id.
    pub fn open_mismatches_of_participant(&self, participant: &str) -> Result<Vec<MismatchRow>, StoreError> {
        let sql = format!(
            "SELECT {MISMATCH_COLUMNS} FROM {MISMATCH_FROM}
             WHERE s.id IS NULL AND {NOT_MISSING} AND m.participant = ?1
             ORDER BY m.visit NULLS FIRST, m.minute NULLS FIRST, m.analyte NULLS FIRST, m.id"
        );
        self.db().query_all(&sql, params![participant], |r| mismatch_row(r, 0))
    }

    /// At most `limit` participants whose code sorts after `after`, by code
    /// (a page of the console's participant list).
    pub fn participants_after(&self, after: &str, limit: i64) -> Result<Vec<Participant>, StoreError> {
        self.db().query_all(
            "SELECT code, site FROM participant WHERE code > ?1 ORDER BY code LIMIT ?2",
            params![after, limit],
            |r| Ok(Participant { code: r.get(0)?, site: r.get(1)? }),
        )
    }
}
