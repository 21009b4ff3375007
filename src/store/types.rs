//! The values that go into and come out of the store: typed row ids, the
//! closed vocabularies of the schema's CHECK constraints, new-row structs and
//! read-back rows.

use std::fmt;
use std::ops::Range;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

use crate::model::Format;
pub use crate::model::{
    MISSING_RESULT_CODE, MessageId, MismatchCode, MismatchId, NotDoneMark, ObservationId, RawId, ReceiptId,
    ResolutionId, ResultId, ResultRow, Slot, SlotStates, Visit,
};

/// Row ids are INTEGER columns.
macro_rules! sql_integer {
    ($($name:ident),+) => {$(
        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.0))
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                i64::column_result(value).map($name)
            }
        }

        impl crate::store::sql::Param for $name {
            fn to_value(&self) -> crate::store::sql::Value {
                crate::store::sql::Value::Integer(self.0)
            }
        }

        impl crate::store::sql::Column for $name {
            fn from_value(value: crate::store::sql::Value) -> Result<Self, String> {
                i64::from_value(value).map($name)
            }
        }
    )+};
}

/// Vocabularies are TEXT columns with a `CHECK (x IN (…))`.
macro_rules! sql_text {
    ($($name:ident),+) => {$(
        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let text = value.as_str()?;
                $name::parse(text).ok_or_else(|| FromSqlError::Other(format!("unknown {} {text:?}", stringify!($name)).into()))
            }
        }

        impl crate::store::sql::Param for $name {
            fn to_value(&self) -> crate::store::sql::Value {
                crate::store::sql::Value::Text(self.as_str().to_owned())
            }
        }

        impl crate::store::sql::Column for $name {
            fn from_value(value: crate::store::sql::Value) -> Result<Self, String> {
                let text = String::from_value(value)?;
                $name::parse(&text).ok_or_else(|| format!("unknown {} {text:?}", stringify!($name)))
            }
        }
    )+};
}
use crate::timestamp::Timestamp as ReportedTime;
use crate::value::{Comparator, Number};

sql_integer!(RawId, ReceiptId, MessageId, ObservationId, ResultId, MismatchId, ResolutionId);
sql_text!(Source, ProcessingOutcome, ObservationOutcome, ResolutionAction, MismatchCode);

crate::model::vocabulary!(
    /// How content arrived (`receipt.source`).
    Source {
        /// Dropped in the watch folder.
        File = "file",
        /// `labfeed ingest FILE`.
        Ingest = "ingest",
        /// A serial port (ASTM E1381).
        Serial = "serial",
        /// A TCP listener (ASTM or MLLP).
        Tcp = "tcp",
    }
);

crate::model::vocabulary!(
    /// What processing a receipt did (`processing.outcome`).
    ProcessingOutcome {
        Processed = "processed",
        /// The content had been received before.
        Duplicate = "duplicate",
        /// The content could not be parsed (quarantined).
        Rejected = "rejected",
        /// The link session broke off before the message was complete.
        Aborted = "aborted",
    }
);

crate::model::vocabulary!(
    /// What became of one reported result (`observation.outcome`).
    ObservationOutcome {
        Accepted = "accepted",
        Duplicate = "duplicate",
        Mismatch = "mismatch",
        Qc = "qc",
    }
);

/// A result of some content held by a mismatch that [`MismatchCode::depends_on_setup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldForSetup {
    pub mismatch_id: MismatchId,
    pub code: MismatchCode,
    pub observation_id: ObservationId,
    pub message_id: MessageId,
    /// The message's number in its file and the result's order in it.
    pub message_number: i64,
    pub seq: i64,
}

crate::model::vocabulary!(
    /// A data manager's decision on a mismatch (`resolution.action`).
    ResolutionAction {
        /// The result belongs to the given participant/visit/minute.
        Assign = "assign",
        /// The value is accepted as it is.
        Accept = "accept",
        /// The value is not a study result.
        Reject = "reject",
        /// Resolved by labfeed itself (e.g. a later delivery settled it).
        Auto = "auto",
        /// A MISSING_RESULT slot: the sample was not drawn or not analysed.
        NotDone = "not_done",
        /// An earlier decision undone: the mismatch is open again.
        Reopen = "reopen",
    }
);

/// A MISSING_RESULT slot's id row and the decision in force on it.
#[derive(Debug, Clone, PartialEq)]
pub struct MissingSlotRow {
    pub id: MismatchId,
    pub slot: Slot,
    /// The latest decision, unless that is a reopen (then `None`: open).
    pub decision: Option<ResolutionRow>,
}

/// What a decision wrote, so that reopening it can undo exactly that.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecisionEffects {
    /// Result versions it added (values and withdrawals), oldest first.
    pub results: Vec<ResultId>,
    /// Mismatches it raised.
    pub raised: Vec<MismatchId>,
}

/// An earlier arrival of some content that had unparseable messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarlierRejection {
    /// UTC, as stored.
    pub received_at: String,
    pub origin: String,
    /// Came through the watch folder (so it went to quarantine).
    pub from_inbox: bool,
    pub errors: u32,
    pub detail: Option<String>,
}

/// One personal-data field to mask in the stored copy: its name for the
/// record (`P.6`, `PID.5`) and its byte range in the content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonalField {
    pub field: String,
    pub span: Range<usize>,
}

/// Content as received. The store hashes `bytes` as they are and keeps a
/// copy with `personal` masked.
#[derive(Debug, Clone)]
pub struct NewRaw<'a> {
    pub bytes: &'a [u8],
    pub format: Option<Format>,
    pub personal: &'a [PersonalField],
    pub received_at: jiff::Timestamp,
}

/// Whether `insert_raw` stored the content or found it already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawStored {
    pub id: RawId,
    /// `false`: the same bytes were received before (a duplicate delivery).
    pub new: bool,
}

/// One arrival.
#[derive(Debug, Clone)]
pub struct NewReceipt {
    pub raw_id: RawId,
    pub received_at: jiff::Timestamp,
    pub source: Source,
    /// File name, device path or peer address.
    pub origin: String,
    /// The link's instrument; `None` for files (the sender field decides).
    pub instrument: Option<String>,
}

/// What processing one receipt did. `processed_at` is the transaction's time.
#[derive(Debug, Clone)]
pub struct NewProcessing {
    pub receipt_id: ReceiptId,
    pub outcome: ProcessingOutcome,
    pub accepted: u32,
    pub duplicates: u32,
    pub mismatches: u32,
    pub qc: u32,
    pub errors: u32,
    /// Plain words when rejected or aborted.
    pub detail: Option<String>,
}

impl NewProcessing {
    /// An arrival that yielded nothing (an aborted link session, an
    /// interrupted receipt), with why.
    pub fn aborted(receipt_id: ReceiptId, detail: impl Into<String>) -> NewProcessing {
        NewProcessing {
            receipt_id,
            outcome: ProcessingOutcome::Aborted,
            accepted: 0,
            duplicates: 0,
            mismatches: 0,
            qc: 0,
            errors: 0,
            detail: Some(detail.into()),
        }
    }
}

/// One message found in a raw content.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub raw_id: RawId,
    /// 1-based within the content.
    pub number: u32,
    /// Byte range in the content.
    pub span: Range<usize>,
    pub format: Option<Format>,
    pub sender: Option<String>,
    pub control_id: Option<String>,
    /// Why it did not parse; `None` when it parsed.
    pub error: Option<String>,
    pub error_offset: Option<usize>,
}

/// The study match of an observation and its value in the analyte's
/// canonical unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Matched {
    pub participant: Option<String>,
    pub visit: Option<String>,
    pub minute: Option<i64>,
    pub analyte: Option<String>,
    pub value: Option<f64>,
    pub unit: Option<String>,
    pub blq: Option<bool>,
}

/// One result as reported, with how it was matched.
#[derive(Debug, Clone)]
pub struct NewObservation {
    pub message_id: MessageId,
    /// Order within the message, from 1.
    pub seq: u32,
    /// Of the R record / OBX segment in the raw content.
    pub byte_offset: usize,
    pub instrument: Option<String>,
    pub sample_id: Option<String>,
    pub test_code: Option<String>,
    pub reported_value: Option<String>,
    pub reported_unit: Option<String>,
    pub comparator: Option<Comparator>,
    pub reported_numeric: Option<Number>,
    pub flags: Option<String>,
    pub status: Option<String>,
    pub collected_at: Option<ReportedTime>,
    /// The offset read for an offset-less `collected_at` that the study zone
    /// has twice (the occurrence nearer the nominal minute); `None` otherwise.
    pub collected_offset: Option<jiff::tz::Offset>,
    pub resulted_at: Option<ReportedTime>,
    pub qc: bool,
    pub matched: Matched,
    pub outcome: ObservationOutcome,
}

/// A value to accept into a slot. `version`, `supersedes`, `accepted_at`
/// and `accepted_by` (the transaction's actor) are filled in by the store.
#[derive(Debug, Clone)]
pub struct NewResult {
    pub observation_id: ObservationId,
    pub slot: Slot,
    /// In the analyte's canonical unit; for a censored value, the bound.
    pub value: f64,
    pub unit: String,
    pub comparator: Option<Comparator>,
    pub blq: bool,
    /// `ingest`, `correction`, `resolved: …`
    pub reason: String,
}

/// What `insert_result` stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResultStored {
    pub id: ResultId,
    pub version: i64,
    /// The version this one replaces as current, if any.
    pub supersedes: Option<ResultId>,
}

/// A mismatch to record. `created_at` is the transaction's time.
#[derive(Debug, Clone)]
pub struct NewMismatch {
    pub code: MismatchCode,
    /// `true`: the result is held back; `false`: accepted and flagged.
    pub holds: bool,
    pub observation_id: Option<ObservationId>,
    pub message_id: Option<MessageId>,
    pub receipt_id: ReceiptId,
    pub participant: Option<String>,
    pub visit: Option<String>,
    pub minute: Option<i64>,
    pub analyte: Option<String>,
    pub detail: String,
}

/// A data manager's decision. `resolved_by` is the transaction's actor and
/// `resolved_at` its time.
#[derive(Debug, Clone)]
pub struct NewResolution {
    pub mismatch_id: MismatchId,
    pub action: ResolutionAction,
    /// For `assign`: where the result belongs.
    pub participant: Option<String>,
    pub visit: Option<String>,
    pub minute: Option<i64>,
    /// The result version the decision produced, if any.
    pub result_id: Option<ResultId>,
    pub reason: String,
    /// For `reopen`: the decision undone; for `auto`: the decision whose
    /// effect closed this mismatch along with its own.
    pub cause: Option<ResolutionId>,
}

impl NewResolution {
    /// A decision that places nothing (no target, no result, no cause): the
    /// common case of closes and reopens, which set the rest when they have it.
    pub fn unplaced(action: ResolutionAction, mismatch_id: MismatchId, reason: impl Into<String>) -> NewResolution {
        NewResolution {
            mismatch_id,
            action,
            participant: None,
            visit: None,
            minute: None,
            result_id: None,
            reason: reason.into(),
            cause: None,
        }
    }

    /// An `auto` close: labfeed closed it because what it was about changed.
    pub fn auto(mismatch_id: MismatchId, reason: impl Into<String>) -> NewResolution {
        NewResolution::unplaced(ResolutionAction::Auto, mismatch_id, reason)
    }
}

/// A participant (SPEC §4): study code only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    pub code: String,
    pub site: Option<String>,
}

/// A manifest sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub sample_id: String,
    pub participant: String,
    pub visit: String,
    pub minute: i64,
}

/// What an upsert of study data did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The row did not exist and was inserted.
    New,
    /// The row existed with other values and was updated.
    Changed,
    /// The row existed with the same values; nothing was written.
    Unchanged,
}

/// A stored mismatch, with its resolution if there is one.
#[derive(Debug, Clone, PartialEq)]
pub struct MismatchRow {
    pub id: MismatchId,
    pub code: MismatchCode,
    pub holds: bool,
    pub observation_id: Option<ObservationId>,
    pub message_id: Option<MessageId>,
    pub receipt_id: ReceiptId,
    pub participant: Option<String>,
    pub visit: Option<String>,
    pub minute: Option<i64>,
    pub analyte: Option<String>,
    pub detail: String,
    pub created_at: jiff::Timestamp,
    pub resolution: Option<ResolutionRow>,
}

impl MismatchRow {
    /// The slot the mismatch is about, when it names all of it.
    pub fn slot(&self) -> Option<Slot> {
        Some(Slot::new(self.participant.clone()?, self.visit.clone()?, self.minute?, self.analyte.clone()?))
    }
}

/// A stored decision on a mismatch.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolutionRow {
    pub id: ResolutionId,
    pub action: ResolutionAction,
    pub participant: Option<String>,
    pub visit: Option<String>,
    pub minute: Option<i64>,
    pub result_id: Option<ResultId>,
    pub reason: String,
    pub resolved_by: String,
    pub resolved_at: jiff::Timestamp,
}

/// A receipt, as needed to process it (again).
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiptRow {
    pub id: ReceiptId,
    pub raw_id: RawId,
    pub received_at: jiff::Timestamp,
    pub source: Source,
    pub origin: String,
    pub instrument: Option<String>,
    /// The daemon that received it, when recorded (schema 8).
    pub instance: Option<String>,
}

/// A stored content: the masked copy and what it was.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRow {
    pub id: RawId,
    /// Lowercase hex SHA-256 of the bytes as received (before masking).
    pub sha256: String,
    pub size: i64,
    pub format: Option<Format>,
    /// The masked copy: same length as received, personal data as `*`.
    pub content: Vec<u8>,
    /// Which fields were masked, e.g. `P.6,P.8`.
    pub masked: String,
    pub first_received_at: jiff::Timestamp,
}

/// Where a reported value came from, for reports and exports.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Provenance {
    pub sample_id: Option<String>,
    pub instrument: Option<String>,
    pub test_code: Option<String>,
    pub reported_value: Option<String>,
    pub reported_unit: Option<String>,
    pub status: Option<String>,
    /// As sent (ISO 8601, offset only if sent).
    pub collected_at: Option<String>,
    /// The offset read for a repeated local `collected_at` (`+01:00`), if any.
    pub collected_offset: Option<String>,
    pub resulted_at: Option<String>,
    /// How the content first arrived (`file`, `serial`, …).
    pub source: Option<Source>,
    /// When the content first arrived.
    pub received_at: Option<jiff::Timestamp>,
    /// The file name, device path or peer address it arrived from.
    pub origin: Option<String>,
    /// Abnormal flags as sent (HL7 OBX-8, ASTM R.7), `~` between several.
    pub flags: Option<String>,
}

impl Provenance {
    /// The collection time as sent, with the offset read for it appended
    /// when it fell in a repeated hour, so exports name the instant used.
    pub fn collected_time(&self) -> Option<String> {
        let sent = self.collected_at.as_deref()?;
        Some(match &self.collected_offset {
            Some(offset) => format!("{sent}{offset}"),
            None => sent.to_owned(),
        })
    }

    /// `source:origin`, e.g. `ingest:/data/e411.astm` or `serial:/dev/ttyUSB0`:
    /// enough to find the raw bytes again. Control characters in the origin
    /// are escaped ([`crate::model::printable`]): reports show it as it is.
    pub fn source_text(&self) -> String {
        match (&self.source, &self.origin) {
            (Some(s), Some(o)) => format!("{s}:{}", crate::model::printable(o)),
            (Some(s), None) => s.to_string(),
            (None, _) => String::new(),
        }
    }
}

/// One current result with where it came from (`export results`).
#[derive(Debug, Clone, PartialEq)]
pub struct CurrentResult {
    pub result: ResultRow,
    pub provenance: Provenance,
}

/// One mismatch with where it came from (`report mismatches`).
#[derive(Debug, Clone, PartialEq)]
pub struct MismatchReport {
    pub mismatch: MismatchRow,
    pub provenance: Provenance,
}

/// An earlier observation as the ingest pipeline compares it with a new one.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservationFacts {
    pub id: ObservationId,
    pub status: Option<String>,
    /// As sent (ISO 8601).
    pub resulted_at: Option<String>,
    /// In the canonical unit.
    pub value: Option<f64>,
    pub unit: Option<String>,
    pub comparator: Option<Comparator>,
    pub blq: bool,
    /// SHA-256 of the content that carried it: a tie-break that does not
    /// depend on arrival order.
    pub raw_sha256: String,
    pub byte_offset: i64,
}

/// A stored observation: one result as reported, with how ingest matched it
/// and the sender of its message (to find its instrument again).
#[derive(Debug, Clone, PartialEq)]
pub struct ObservationRow {
    pub id: ObservationId,
    pub message_id: MessageId,
    pub byte_offset: i64,
    /// The sender field of its message (ASTM H.5.1, HL7 MSH-3.1).
    pub sender: Option<String>,
    pub instrument: Option<String>,
    pub sample_id: Option<String>,
    pub test_code: Option<String>,
    pub reported_value: Option<String>,
    pub reported_unit: Option<String>,
    pub comparator: Option<Comparator>,
    /// The number as sent, canonical decimal text.
    pub reported_numeric: Option<String>,
    pub flags: Option<String>,
    pub status: Option<String>,
    /// As sent (ISO 8601, offset only if sent).
    pub collected_at: Option<String>,
    pub resulted_at: Option<String>,
    pub qc: bool,
    pub matched: Matched,
    pub outcome: ObservationOutcome,
}

/// One receipt and what became of it (its processing row, if any yet).
#[derive(Debug, Clone, PartialEq)]
pub struct Arrival {
    pub receipt_id: ReceiptId,
    /// What arrived and how it was processed; named as for [`LastArrival`].
    pub arrival: LastArrival,
}

/// The latest receipt of one source, with its processing row if any.
#[derive(Debug, Clone, PartialEq)]
pub struct LastArrival {
    pub source: Source,
    pub origin: String,
    pub instrument: Option<String>,
    pub received_at: String,
    pub outcome: Option<ProcessingOutcome>,
    pub accepted: u64,
    pub duplicates: u64,
    pub mismatches: u64,
    pub qc: u64,
    pub errors: u64,
    pub detail: Option<String>,
    /// The daemon that received it (`[storage] instance`), when recorded.
    pub instance: Option<String>,
}
