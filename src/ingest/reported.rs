//! The result as the analyzer reported it, rebuilt from its stored
//! observation and, for the patient ID, from the stored (masked) copy: every
//! check that runs again (a sample move, a decision) sees what ingest saw.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::model::{LabResult, ParseOptions};
use crate::parse::parse_bytes;
use crate::store::{ObservationRow, ObservationSource, RawId, Reader, StoreError};
use crate::timestamp::Timestamp;
use crate::value::Number;

/// The result as the analyzer reported it, rebuilt from its observation.
/// The patient ID is not stored on its own: it is `None` here (see
/// [`PatientIds`]).
pub(crate) fn reported_result(o: &ObservationRow) -> LabResult {
    LabResult {
        sender: o.sender.clone(),
        sample_id: o.sample_id.clone(),
        patient_ids: Vec::new(),
        test_code: o.test_code.clone(),
        value: o.reported_value.clone(),
        comparator: o.comparator,
        numeric: o.reported_numeric.as_deref().and_then(|n| Number::parse(n, false)),
        unit: o.reported_unit.clone(),
        // Not stored: read from the stored copy where needed (`export lb`).
        reference_range: None,
        flags: o.flags.clone(),
        status: o.status.clone(),
        collected_at: o.collected_at.as_deref().and_then(Timestamp::from_iso),
        resulted_at: o.resulted_at.as_deref().and_then(Timestamp::from_iso),
        qc: o.qc,
        specimen_type: None,
        comments: Vec::new(),
        offset: usize::try_from(o.byte_offset).unwrap_or(0),
    }
}

/// The patient IDs a result was sent with, read again from the stored copy
/// (it is never stored on its own: it may be a hospital number).
pub(crate) enum PatientId {
    /// The message carried none.
    Absent,
    /// As they stand in the stored copy: a study code, or masked (`***`),
    /// which was not a study code when it arrived.
    Sent(Vec<String>),
    /// The stored copy does not parse again (e.g. framing checksums that no
    /// longer match after masking).
    Unreadable,
}

/// What the stored copy of one content says about each result that parsed
/// again: (message number, order) → (sample ID, test code, patient ID).
type ReadBack = HashMap<(i64, i64), (Option<String>, Option<String>, Vec<String>)>;

/// Patient IDs read back from stored copies; each copy is parsed once.
#[derive(Default)]
pub(crate) struct PatientIds {
    read_back: RefCell<HashMap<RawId, ReadBack>>,
}

impl PatientIds {
    /// The patient ID of observation `o` as its stored copy gives it back:
    /// the message by number, the result by its order.
    pub(crate) fn of(
        &self,
        tx: &Reader<'_>,
        source: &ObservationSource,
        o: &ObservationRow,
    ) -> Result<PatientId, StoreError> {
        if !self.read_back.borrow().contains_key(&source.raw_id) {
            let parsed = read_back(tx, source.raw_id)?;
            self.read_back.borrow_mut().insert(source.raw_id, parsed);
        }
        let cache = self.read_back.borrow();
        let Some((sample, test, patient)) =
            cache.get(&source.raw_id).and_then(|r| r.get(&(source.message_number, source.seq)))
        else {
            return Ok(PatientId::Unreadable);
        };
        // The same result as stored, or the copy cannot be trusted for this.
        if *sample != o.sample_id || *test != o.test_code {
            return Ok(PatientId::Unreadable);
        }
        Ok(if patient.is_empty() { PatientId::Absent } else { PatientId::Sent(patient.clone()) })
    }
}

/// Read the stored (masked) copy of a content again.
fn read_back(tx: &Reader<'_>, raw_id: RawId) -> Result<ReadBack, StoreError> {
    let mut found = ReadBack::new();
    let Some(raw) = tx.raw(raw_id)? else { return Ok(found) };
    parse_bytes(&raw.content, &ParseOptions::default(), &mut |outcome| {
        let Ok(message) = outcome else { return };
        let Ok(number) = i64::try_from(message.number) else { return };
        for (i, r) in message.results.into_iter().enumerate() {
            let Ok(seq) = i64::try_from(i + 1) else { return };
            found.insert((number, seq), (r.sample_id, r.test_code, r.patient_ids));
        }
    });
    Ok(found)
}
