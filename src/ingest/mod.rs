//! The ingest pipeline: one received file (or link message) from bytes to
//! the study tables. `labfeed ingest`, the watch folder and the analyzer
//! links all use it.
//!
//! 1. Parse in memory (pure; the parsers never panic) and find the personal
//!    data to mask.
//! 2. **Raw first**: commit the content (masked copy, SHA-256 of the
//!    original) and the receipt in their own transaction, so "did it
//!    arrive?" has an answer whatever happens next.
//! 3. Process in one transaction: messages, one observation per reported
//!    result, accepted results (versioned), mismatches, and the processing
//!    row with the counts. A crash before this commit leaves a receipt
//!    without processing, which is processed again.
//!
//! Order independence: for a slot (participant, visit, minute, analyte) the
//! value that stands is the one measured first (by result time, then by the
//! content's SHA-256), whatever order the files arrive in; a correction that
//! arrives before its original is applied when the original comes.

pub mod correction;
pub mod lock;
pub mod privacy;
mod reported;
pub mod resolve;

use std::cell::RefCell;
use std::cmp::Ordering;

use crate::model::{Format, LabResult, LineCounter, MessageOutcome, ParseOptions, ParsedMessage};
use crate::parse::{detect, parse_bytes};
use crate::store::{
    HeldForSetup, Matched, MessageId, MismatchCode, NewMessage, NewMismatch, NewObservation, NewProcessing, NewRaw,
    NewReceipt, NewResolution, NewResult, ObservationFacts, ObservationOutcome, ObservationRow, ProcessingOutcome,
    RawId, Reader, ReceiptId, Sample, Slot, Source, Store, StoreError, Tx, sha256_hex,
};
use crate::study::config::Config;
use crate::study::matching::{Assessment, Finding, MatchSource, SampleSlot, StudyData, assess, resolve_instrument};
use crate::timestamp::Timestamp;

/// One arrival of content.
#[derive(Debug, Clone)]
pub struct Delivery<'a> {
    pub bytes: &'a [u8],
    pub source: Source,
    /// File name, device path or peer address.
    pub origin: String,
    /// The instrument of the serial port or listener it came through; `None`
    /// for files, whose sender field chooses the instrument.
    pub instrument: Option<String>,
    pub received_at: jiff::Timestamp,
}

/// What happened to one arrival.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub receipt_id: ReceiptId,
    pub outcome: ProcessingOutcome,
    pub format: Option<Format>,
    pub messages: u32,
    pub accepted: u32,
    pub duplicates: u32,
    pub mismatches: u32,
    pub qc: u32,
    /// Messages that could not be parsed.
    pub errors: u32,
    /// Mismatches of an earlier delivery of the same content that this one
    /// read again and closed (after a configuration fix).
    pub superseded: u32,
    /// Why each broken message was rejected (one line each, where and what,
    /// no content), or why an identical content was rejected before.
    pub detail: Option<String>,
}

impl Summary {
    /// `4 accepted, 0 duplicates, 1 mismatch, 0 QC, 0 errors`: for logs and `ingest`.
    pub fn counts(&self) -> String {
        counts(self.accepted, self.duplicates, self.mismatches, self.qc, self.errors)
    }
}

/// `4 accepted, 1 duplicate, 2 mismatches, 0 QC, 1 error`: one for one, as a reader says it.
pub fn counts(accepted: u32, duplicates: u32, mismatches: u32, qc: u32, errors: u32) -> String {
    let n = |n: u32, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    format!(
        "{accepted} accepted, {}, {}, {qc} QC, {}",
        n(duplicates, "duplicate", "duplicates"),
        n(mismatches, "mismatch", "mismatches"),
        n(errors, "error", "errors")
    )
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Take several arrivals through the pipeline with two transactions for the
/// whole batch (raw content and receipts first, then processing), so a
/// backlog is not limited by one disk sync per file. Summaries come back in
/// the order of `deliveries`.
pub fn ingest_batch(
    store: &mut Store,
    config: &Config,
    deliveries: &[Delivery<'_>],
) -> Result<Vec<Summary>, IngestError> {
    let study_codes = std::cell::RefCell::new(std::collections::HashMap::new());
    let prepared: Vec<Prepared> = deliveries
        .iter()
        .map(|d| {
            let format = detect(d.bytes);
            let parsed = parse_all(config, d, format);
            Ok(Prepared {
                format,
                personal: personal_fields(store, config, d, &parsed, &study_codes)?,
                parsed,
                sha256: sha256_hex(d.bytes),
            })
        })
        .collect::<Result<_, StoreError>>()?;

    // Raw first: committed before anything is processed.
    let received = store.write(|tx| {
        tx.expect_contents(&prepared.iter().map(|p| p.sha256.as_str()).collect::<Vec<_>>())?;
        deliveries
            .iter()
            .zip(&prepared)
            .map(|(d, p)| receive(tx, d, p.format, &p.personal))
            .collect::<Result<Vec<_>, _>>()
    })?;

    let summaries = store.write(|tx| {
        allocate_missing_slot_ids(tx, config)?;
        // What the batch will ask, asked at once (a round trip each on PostgreSQL).
        let raw_ids: Vec<RawId> = received.iter().map(|&(raw_id, _)| raw_id).collect();
        let mut processed = tx.raws_processed(&raw_ids)?;
        let samples: Vec<&str> = prepared
            .iter()
            .flat_map(|p| p.parsed.iter().flatten())
            .flat_map(|m| m.results.iter().filter_map(|r| r.sample_id.as_deref()))
            .collect();
        tx.expect_samples(&samples)?;
        let mut assessed = Vec::with_capacity(deliveries.len());
        for ((d, p), (raw_id, _)) in deliveries.iter().zip(&prepared).zip(&received) {
            let new = !processed.contains(raw_id);
            assessed.push(if new { assess_all(tx, config, d, p)? } else { Assessed::new() });
        }
        let visits: std::collections::BTreeSet<(String, String)> = assessed
            .iter()
            .flat_map(|a| a.values())
            .filter_map(|a| a.slot.as_ref().map(|s| (s.participant.clone(), s.visit.clone())))
            .collect();
        tx.expect_visit_slots(&visits.into_iter().collect::<Vec<_>>())?;
        let mut summaries = Vec::with_capacity(deliveries.len());
        for (((d, p), &(raw_id, receipt_id)), assessed) in deliveries.iter().zip(&prepared).zip(&received).zip(assessed)
        {
            let mut run = Run {
                assessed,
                config,
                delivery: d,
                raw_id,
                raw_sha256: &p.sha256,
                receipt_id,
                summary: empty_summary(receipt_id, p.format),
                lines: LineCounter::new(d.bytes),
                broken: Vec::new(),
            };
            run.summary.messages = p.parsed.len() as u32;
            // Processed before (now or earlier in this batch): a duplicate delivery,
            // except for results held by what a configuration fix may clear.
            if processed.contains(&raw_id) {
                run.summary.outcome = ProcessingOutcome::Duplicate;
                let held = tx.held_for_setup(raw_id)?;
                for m in p.parsed.iter().flatten() {
                    for (i, result) in m.results.iter().enumerate() {
                        let again = held.iter().find(|h| h.message_number == m.number as i64 && h.seq == i as i64 + 1);
                        match again {
                            Some(h) => run.result(tx, m, h.message_id, i as u32 + 1, result, Some(h))?,
                            None => run.summary.duplicates += 1,
                        }
                    }
                }
                if run.summary.superseded > 0 {
                    run.summary.outcome = ProcessingOutcome::Processed;
                }
                // Content that was rejected before is rejected again (and
                // quarantined again), not waved through as a duplicate.
                if let Some(earlier) = tx.earlier_rejection(raw_id)? {
                    run.summary.outcome = ProcessingOutcome::Duplicate;
                    run.summary.errors = earlier.errors;
                    run.summary.detail = Some(format!(
                        "identical to a file {} on {} ({}): {}",
                        if earlier.from_inbox { "quarantined" } else { "rejected" },
                        earlier.received_at,
                        earlier.origin,
                        earlier.detail.as_deref().unwrap_or("it could not be parsed")
                    ));
                }
            } else {
                for outcome in &p.parsed {
                    run.message(tx, outcome)?;
                }
                if run.summary.errors > 0 && run.summary.errors == run.summary.messages {
                    run.summary.outcome = ProcessingOutcome::Rejected;
                }
                run.summary.detail = broken_list(&run.broken);
            }
            let s = &run.summary;
            tx.insert_processing(&NewProcessing {
                receipt_id,
                outcome: s.outcome,
                accepted: s.accepted,
                duplicates: s.duplicates,
                mismatches: s.mismatches,
                qc: s.qc,
                errors: s.errors,
                detail: s.detail.clone(),
            })?;
            if matches!(s.outcome, ProcessingOutcome::Processed | ProcessingOutcome::Rejected) {
                processed.insert(raw_id);
            }
            summaries.push(run.summary);
        }
        Ok(summaries)
    })?;
    Ok(summaries)
}

/// Each result's assessment, by message number and result number.
type Assessed = std::collections::HashMap<(usize, u32), Assessment>;

/// Match and check every result of a new delivery before the batch writes
/// anything: matching reads only study data, which the batch does not change,
/// and the slots found are read at once ([`Reader::expect_visit_slots`]).
fn assess_all(tx: &Tx<'_>, config: &Config, d: &Delivery<'_>, p: &Prepared) -> Result<Assessed, StoreError> {
    let mut assessed = Assessed::new();
    for m in p.parsed.iter().flatten() {
        let instrument = resolve_instrument(config, d.instrument.as_deref(), m.sender.as_deref());
        for (i, result) in m.results.iter().enumerate() {
            let a = with_study(tx, |study| assess(config, instrument, m.sender.as_deref(), result, study))?;
            assessed.insert((m.number, i as u32 + 1), a);
        }
    }
    Ok(assessed)
}

/// A delivery parsed, before anything of it is stored.
struct Prepared {
    format: Option<Format>,
    parsed: Vec<MessageOutcome>,
    personal: Vec<crate::store::PersonalField>,
    sha256: String,
}

/// A file refused unread (too large, a link, a folder, a pipe): nothing of
/// it is stored, but its arrival is, so "did it arrive, and if not, why?"
/// has an answer in `status` and the mismatch report. The receipt points at
/// the empty content, because that is what was read.
pub fn record_refused(
    store: &mut Store,
    origin: &str,
    reason: &str,
    received_at: jiff::Timestamp,
) -> Result<ReceiptId, IngestError> {
    let detail = format!("refused unread: {reason}");
    Ok(store.write(|tx| {
        let delivery =
            Delivery { bytes: &[], source: Source::File, origin: origin.to_owned(), instrument: None, received_at };
        let (_, receipt_id) = receive(tx, &delivery, None, &[])?;
        tx.insert_processing(&NewProcessing {
            receipt_id,
            outcome: ProcessingOutcome::Rejected,
            accepted: 0,
            duplicates: 0,
            mismatches: 1,
            qc: 0,
            errors: 1,
            detail: Some(detail.clone()),
        })?;
        tx.insert_mismatch(&NewMismatch {
            code: MismatchCode::ParseError,
            holds: true,
            observation_id: None,
            message_id: None,
            receipt_id,
            participant: None,
            visit: None,
            minute: None,
            analyte: None,
            detail: format!("{origin}: {detail}"),
        })?;
        Ok(receipt_id)
    })?)
}

/// Keep the raw bytes of an aborted link session (EOT mid-message, timeout,
/// too many failed tries): stored and audited, never processed into results.
pub fn record_aborted(
    store: &mut Store,
    config: &Config,
    delivery: &Delivery<'_>,
    reason: &str,
) -> Result<ReceiptId, IngestError> {
    let format = detect(delivery.bytes);
    let personal = personal_fields(store, config, delivery, &parse_all(config, delivery, format), &Default::default())?;
    Ok(store.write(|tx| {
        let (_, receipt_id) = receive(tx, delivery, format, &personal)?;
        tx.insert_processing(&NewProcessing::aborted(receipt_id, reason))?;
        Ok(receipt_id)
    })?)
}

/// What to mask in the stored copy of `d` (see [`privacy`]), parsed as `parsed`.
fn personal_fields(
    store: &Store,
    config: &Config,
    d: &Delivery<'_>,
    parsed: &[MessageOutcome],
    known: &std::cell::RefCell<std::collections::HashMap<String, bool>>,
) -> Result<Vec<crate::store::PersonalField>, StoreError> {
    // A lookup that fails (a database gone away) fails the delivery: what
    // to mask is never guessed.
    let failure = std::cell::RefCell::new(None);
    let is_study_code = |code: &str| {
        if let Some(&answer) = known.borrow().get(code) {
            return answer;
        }
        match store.read(|r| r.participant_exists(code)) {
            Ok(answer) => {
                known.borrow_mut().insert(code.to_owned(), answer);
                answer
            }
            Err(e) => {
                failure.borrow_mut().get_or_insert(e);
                false
            }
        }
    };
    let policy = privacy::StudyPolicy { config, instrument: d.instrument.as_deref(), is_study_code: &is_study_code };
    let failed: Vec<_> = parsed.iter().filter_map(|o| o.as_ref().err()).map(|e| e.span.clone()).collect();
    let fields = privacy::personal_fields(d.bytes, &policy, &failed);
    match failure.into_inner() {
        Some(e) => Err(e),
        None => Ok(fields),
    }
}

/// Store the content (masked) and the arrival: the "raw first" step.
fn receive(
    tx: &mut Tx<'_>,
    d: &Delivery<'_>,
    format: Option<Format>,
    personal: &[crate::store::PersonalField],
) -> Result<(RawId, ReceiptId), StoreError> {
    let raw = tx.insert_raw(&NewRaw { bytes: d.bytes, format, personal, received_at: d.received_at })?;
    let receipt = tx.insert_receipt(&NewReceipt {
        raw_id: raw.id,
        received_at: d.received_at,
        source: d.source,
        origin: d.origin.clone(),
        instrument: d.instrument.clone(),
    })?;
    Ok((raw.id, receipt))
}

fn empty_summary(receipt_id: ReceiptId, format: Option<Format>) -> Summary {
    Summary {
        receipt_id,
        outcome: ProcessingOutcome::Processed,
        format,
        messages: 0,
        accepted: 0,
        duplicates: 0,
        mismatches: 0,
        qc: 0,
        errors: 0,
        superseded: 0,
        detail: None,
    }
}

/// Parse with the options of the instrument each message comes from: a
/// message from an instrument set up for a decimal comma is read with one.
fn parse_all(config: &Config, delivery: &Delivery<'_>, format: Option<Format>) -> Vec<MessageOutcome> {
    let collect = |opts: ParseOptions| {
        let mut all = Vec::new();
        parse_bytes(delivery.bytes, &opts, &mut |o| all.push(o));
        all
    };
    let plain = collect(ParseOptions::default());
    if format.is_none() || !config.instruments.iter().any(|i| i.decimal_comma) {
        return plain;
    }
    let comma = collect(ParseOptions { decimal_comma: true, ..ParseOptions::default() });
    plain
        .into_iter()
        .zip(comma)
        .map(|(plain, comma)| {
            let wants_comma = match &plain {
                Ok(m) => resolve_instrument(config, delivery.instrument.as_deref(), m.sender.as_deref())
                    .is_some_and(|i| i.decimal_comma),
                Err(_) => false,
            };
            if wants_comma { comma } else { plain }
        })
        .collect()
}

/// The state of processing one arrival.
struct Run<'a> {
    config: &'a Config,
    /// Results assessed before the batch wrote anything (see [`assess_all`]).
    assessed: Assessed,
    delivery: &'a Delivery<'a>,
    raw_id: RawId,
    raw_sha256: &'a str,
    receipt_id: ReceiptId,
    summary: Summary,
    /// Line numbers for PARSE_ERROR details, counted once through the file.
    lines: LineCounter<'a>,
    /// Why each broken message was rejected, in file order.
    broken: Vec<String>,
}

/// How a result that passed every per-result check fits its slot.
enum SlotDecision {
    /// Accept as the next version.
    Accept { reason: String },
    /// Accept, displacing a value measured later (which becomes the conflict).
    TakeOver { displaced: ObservationFacts },
    /// The same value is already there (or already held).
    Duplicate,
    /// Held: a different value for a slot that has one, or a correction of nothing.
    Hold(Finding),
}

impl Run<'_> {
    fn message(&mut self, tx: &mut Tx<'_>, outcome: &MessageOutcome) -> Result<(), StoreError> {
        match outcome {
            Err(e) => {
                let line = self.lines.line_at(e.offset);
                let detail = format!("message {}: byte {} (line {line}): {}", e.number, e.offset, e.text);
                let message_id = tx.insert_message(&NewMessage {
                    raw_id: self.raw_id,
                    number: e.number as u32,
                    span: e.span.clone(),
                    format: self.summary.format,
                    sender: None,
                    control_id: None,
                    error: Some(e.text.clone()),
                    error_offset: Some(e.offset),
                })?;
                tx.insert_mismatch(&NewMismatch {
                    code: MismatchCode::ParseError,
                    holds: true,
                    observation_id: None,
                    message_id: Some(message_id),
                    receipt_id: self.receipt_id,
                    participant: None,
                    visit: None,
                    minute: None,
                    analyte: None,
                    detail: format!("{}: {detail}", self.delivery.origin),
                })?;
                self.summary.errors += 1;
                self.summary.mismatches += 1;
                self.broken.push(detail);
            }
            Ok(m) => {
                let message_id = tx.insert_message(&NewMessage {
                    raw_id: self.raw_id,
                    number: m.number as u32,
                    span: m.span.clone(),
                    format: Some(m.format),
                    sender: m.sender.clone(),
                    control_id: m.control_id.clone(),
                    error: None,
                    error_offset: None,
                })?;
                for (i, result) in m.results.iter().enumerate() {
                    self.result(tx, m, message_id, i as u32 + 1, result, None)?;
                }
            }
        }
        Ok(())
    }

    /// One reported result. `again`: a result of an earlier delivery of this
    /// content, held by a mismatch the setup decides, read again now; its
    /// observation is reused and the old mismatch closed unless it still holds.
    fn result(
        &mut self,
        tx: &mut Tx<'_>,
        message: &ParsedMessage,
        message_id: MessageId,
        seq: u32,
        result: &LabResult,
        again: Option<&HeldForSetup>,
    ) -> Result<(), StoreError> {
        let config = self.config;
        let instrument = resolve_instrument(config, self.delivery.instrument.as_deref(), message.sender.as_deref());
        let a = match self.assessed.remove(&(message.number, seq)) {
            Some(a) => a,
            None => with_study(tx, |study| assess(config, instrument, message.sender.as_deref(), result, study))?,
        };
        let mut observation = NewObservation {
            message_id,
            seq,
            byte_offset: result.offset,
            instrument: a.instrument.clone(),
            sample_id: result.sample_id.clone(),
            test_code: result.test_code.clone(),
            reported_value: result.value.clone(),
            reported_unit: result.unit.clone(),
            comparator: result.comparator,
            reported_numeric: result.numeric.clone(),
            flags: result.flags.clone(),
            status: result.status.clone(),
            collected_at: result.collected_at,
            collected_offset: a.collected_offset,
            resulted_at: result.resulted_at,
            qc: result.qc,
            matched: Matched {
                participant: a.slot.as_ref().map(|s| s.participant.clone()),
                visit: a.slot.as_ref().map(|s| s.visit.clone()),
                minute: a.slot.as_ref().map(|s| i64::from(s.minute)),
                analyte: a.analyte.clone(),
                value: a.value,
                unit: a.unit.clone(),
                blq: a.value.map(|_| a.blq),
            },
            outcome: ObservationOutcome::Accepted,
        };
        // The value of a test that maps to nothing is not kept (it may be a
        // name or a national ID, whatever OBX-2 says) unless the instrument
        // keeps comments (an unknown sender's never); the stored copy masks it.
        if a.analyte.is_none() && !instrument.is_some_and(|i| i.keep_comments) {
            observation.reported_value = None;
            observation.comparator = None;
            observation.reported_numeric = None;
        }
        if a.qc {
            observation.outcome = ObservationOutcome::Qc;
            observe(tx, &observation, again)?;
            self.summary.qc += 1;
            return self.supersede(tx, again, "it is a QC result".into(), None);
        }
        if let Some(hold) = &a.hold {
            return self.hold(tx, observation, hold.clone(), again);
        }
        // A locked visit takes no change (SPEC §8): a result that would
        // change it is held as LOCKED, unless the slot already has it. (A
        // result held for another reason changes nothing there anyway.)
        if let (Some(found), Some(analyte)) = (&a.slot, &a.analyte)
            && let Some(lock) = tx.lock_on(&found.participant, &found.visit)?
        {
            let slot = Slot::new(&found.participant, &found.visit, i64::from(found.minute), analyte);
            if let SlotDecision::Duplicate = self.decide(tx, &slot, &a, result)? {
                observation.outcome = ObservationOutcome::Duplicate;
                observe(tx, &observation, again)?;
                self.summary.duplicates += 1;
                let now = format!("{} already holds this value", slot_words(&slot));
                return self.supersede(tx, again, now, None);
            }
            let detail = format!("{lock}: the result is held and changes nothing until it is unlocked");
            return self.hold(tx, observation, Finding { code: MismatchCode::Locked, detail }, again);
        }
        let (Some(slot), Some(analyte), Some(value), Some(unit)) = (&a.slot, &a.analyte, a.value, &a.unit) else {
            // assess() only leaves these empty together with a hold.
            return self.hold(
                tx,
                observation,
                Finding { code: MismatchCode::NonNumeric, detail: "the result could not be matched".into() },
                again,
            );
        };
        let slot = Slot::new(&slot.participant, &slot.visit, i64::from(slot.minute), analyte);
        let (reason, displaced) = match self.decide(tx, &slot, &a, result)? {
            SlotDecision::Duplicate => {
                observation.outcome = ObservationOutcome::Duplicate;
                observe(tx, &observation, again)?;
                self.summary.duplicates += 1;
                let now = format!("{} already holds this value", slot_words(&slot));
                return self.supersede(tx, again, now, None);
            }
            SlotDecision::Hold(finding) => return self.hold(tx, observation, finding, again),
            SlotDecision::Accept { reason } => (reason, None),
            SlotDecision::TakeOver { displaced } => (
                "measured before the value it replaces, which arrived first; the first measurement stands".to_owned(),
                Some(displaced),
            ),
        };
        let observation_id = observe(tx, &observation, again)?;
        let stored = tx.insert_result(&NewResult {
            observation_id,
            slot: slot.clone(),
            value,
            unit: unit.clone(),
            comparator: a.comparator,
            blq: a.blq,
            reason,
        })?;
        self.summary.accepted += 1;
        self.supersede(tx, again, format!("it was accepted for {}", slot_words(&slot)), Some(stored.id))?;
        self.flag(tx, observation_id, &slot, &a.flags)?;
        match displaced {
            None => self.apply_pending_corrections(tx, &slot)?,
            Some(displaced) => {
                let detail = format!(
                    "{} differs from {} accepted for {}, which was measured earlier{}; the earlier measurement stands",
                    value_words(displaced.value, displaced.comparator, displaced.unit.as_deref()),
                    value_words(Some(value), a.comparator, Some(unit)),
                    slot_words(&slot),
                    result.resulted_at.map(|t| format!(" (resulted {t})")).unwrap_or_default(),
                );
                tx.insert_mismatch(&self.slot_mismatch(MismatchCode::DuplicateConflict, displaced.id, &slot, detail))?;
                self.summary.mismatches += 1;
            }
        }
        Ok(())
    }

    /// Decide how an accepted-looking result fits the slot's history.
    fn decide(&self, tx: &Tx<'_>, slot: &Slot, a: &Assessment, result: &LabResult) -> Result<SlotDecision, StoreError> {
        let is_correction = result.status.as_deref().map(str::trim) == Some("C");
        let history = tx.result_history(slot)?;
        if history.iter().any(|r| same_value(r.value, r.comparator, a.value, a.comparator)) {
            return Ok(SlotDecision::Duplicate);
        }
        // A withdrawn slot (rejected or moved by a data manager) has no current value.
        let Some(current) = history.last().filter(|r| !r.withdrawn) else {
            if is_correction {
                return Ok(SlotDecision::Hold(Finding {
                    code: MismatchCode::CorrectionWithoutOriginal,
                    detail: format!(
                        "a correction ({}) arrived for {} which has no result yet; it is applied when the original arrives",
                        value_words(a.value, a.comparator, a.unit.as_deref()),
                        slot_words(slot)
                    ),
                }));
            }
            return Ok(SlotDecision::Accept { reason: "ingest".into() });
        };
        if is_correction {
            return Ok(SlotDecision::Accept {
                reason: format!(
                    "correction of version {} ({})",
                    current.version,
                    value_words(Some(current.value), current.comparator, Some(&current.unit))
                ),
            });
        }
        if current.version == 1
            && let Some(standing) = tx.observation_facts(current.observation_id)?
            && self.measured_before(result, &standing) == Ordering::Less
        {
            return Ok(SlotDecision::TakeOver { displaced: standing });
        }
        Ok(SlotDecision::Hold(Finding {
            code: MismatchCode::DuplicateConflict,
            detail: format!(
                "{} differs from {} already accepted for {}; the first value stands until resolved",
                value_words(a.value, a.comparator, a.unit.as_deref()),
                value_words(Some(current.value), current.comparator, Some(&current.unit)),
                slot_words(slot)
            ),
        }))
    }

    /// Order two measurements of one slot independently of arrival: by result
    /// time (a missing time counts as later), then by content hash and offset.
    fn measured_before(&self, result: &LabResult, standing: &ObservationFacts) -> Ordering {
        let zone = jiff::tz::TimeZone::get(&self.config.study.timezone).ok();
        let instant = |t: Option<Timestamp>| t.and_then(|t| zone.as_ref().and_then(|z| t.to_instant(z)));
        let new_time = instant(result.resulted_at);
        let old_time = instant(standing.resulted_at.as_deref().and_then(Timestamp::from_iso));
        let by_time = match (new_time, old_time) {
            (Some(a), Some(b)) => a.cmp(&b),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        by_time
            .then_with(|| self.raw_sha256.cmp(standing.raw_sha256.as_str()))
            .then_with(|| (result.offset as i64).cmp(&standing.byte_offset))
    }

    fn hold(
        &mut self,
        tx: &mut Tx<'_>,
        mut observation: NewObservation,
        finding: Finding,
        again: Option<&HeldForSetup>,
    ) -> Result<(), StoreError> {
        let still_held = match again {
            Some(h) => h.code == finding.code,
            None => tx.open_mismatch_for_same_report(finding.code, &observation)?,
        };
        if still_held {
            observation.outcome = ObservationOutcome::Duplicate;
            if again.is_none() {
                tx.insert_observation(&observation)?;
            }
            self.summary.duplicates += 1;
            return Ok(());
        }
        observation.outcome = ObservationOutcome::Mismatch;
        let observation_id = observe(tx, &observation, again)?;
        let m = &observation.matched;
        let code = finding.code;
        let id = tx.insert_mismatch(&NewMismatch {
            code: finding.code,
            holds: true,
            observation_id: Some(observation_id),
            message_id: Some(observation.message_id),
            receipt_id: self.receipt_id,
            participant: m.participant.clone(),
            visit: m.visit.clone(),
            minute: m.minute,
            analyte: m.analyte.clone(),
            detail: finding.detail,
        })?;
        self.summary.mismatches += 1;
        self.supersede(tx, again, format!("it is held as {code} instead (mismatch {id})"), None)
    }

    /// Close the mismatch of an earlier delivery that this re-delivery read
    /// again: labfeed's own decision (`auto`), saying what came of it `now`.
    fn supersede(
        &mut self,
        tx: &mut Tx<'_>,
        again: Option<&HeldForSetup>,
        now: String,
        result_id: Option<crate::store::ResultId>,
    ) -> Result<(), StoreError> {
        let Some(h) = again else { return Ok(()) };
        let why = format!(
            "superseded by the re-delivery of the same content ({}, received {}): read with the current \
             configuration, {now}",
            self.delivery.origin,
            self.delivery.received_at.round(jiff::Unit::Second).unwrap_or(self.delivery.received_at)
        );
        tx.insert_resolution(&NewResolution { result_id, ..NewResolution::auto(h.mismatch_id, why) })?;
        self.summary.superseded += 1;
        Ok(())
    }

    /// A mismatch about an observation matched to `slot`, raised by this arrival;
    /// it holds the result back unless its code only flags.
    fn slot_mismatch(
        &self,
        code: MismatchCode,
        observation_id: crate::store::ObservationId,
        slot: &Slot,
        detail: String,
    ) -> NewMismatch {
        NewMismatch {
            code,
            holds: code.holds_by_default(),
            observation_id: Some(observation_id),
            message_id: None,
            receipt_id: self.receipt_id,
            participant: Some(slot.participant.clone()),
            visit: Some(slot.visit.clone()),
            minute: Some(slot.minute),
            analyte: Some(slot.analyte.clone()),
            detail,
        }
    }

    /// OUT_OF_WINDOW and PRETEST_GLUCOSE: accepted, and flagged for review.
    fn flag(
        &mut self,
        tx: &mut Tx<'_>,
        observation_id: crate::store::ObservationId,
        slot: &Slot,
        flags: &[Finding],
    ) -> Result<(), StoreError> {
        for finding in flags {
            tx.insert_mismatch(&self.slot_mismatch(finding.code, observation_id, slot, finding.detail.clone()))?;
            self.summary.mismatches += 1;
        }
        Ok(())
    }

    /// A correction held for want of its original is applied once the
    /// original is in, so arrival order does not change the outcome.
    fn apply_pending_corrections(&mut self, tx: &mut Tx<'_>, slot: &Slot) -> Result<(), StoreError> {
        for pending in tx.open_mismatches(slot, Some(MismatchCode::CorrectionWithoutOriginal))? {
            let Some(observation_id) = pending.observation_id else { continue };
            let Some(facts) = tx.observation_facts(observation_id)? else { continue };
            let (Some(value), Some(unit)) = (facts.value, facts.unit.clone()) else { continue };
            let stored = tx.insert_result(&NewResult {
                observation_id,
                slot: slot.clone(),
                value,
                unit,
                comparator: facts.comparator,
                blq: facts.blq,
                reason: "correction that arrived before its original, applied when the original came".into(),
            })?;
            let why = format!("the original result arrived ({})", self.delivery.origin);
            tx.insert_resolution(&NewResolution {
                result_id: Some(stored.id),
                ..NewResolution::auto(pending.id, why)
            })?;
        }
        Ok(())
    }
}

/// The observation of a result: the one an earlier delivery stored when the
/// result is read again (one per result of a content), else a new one.
fn observe(
    tx: &mut Tx<'_>,
    observation: &NewObservation,
    again: Option<&HeldForSetup>,
) -> Result<crate::store::ObservationId, StoreError> {
    match again {
        Some(h) => Ok(h.observation_id),
        None => tx.insert_observation(observation),
    }
}

/// At most this many broken messages are listed in a file's summary; the
/// PARSE_ERROR mismatches name every one.
const BROKEN_LISTED: usize = 100;

/// Every broken message, one per line, for the summary, the log and the
/// reason file; `None` when none was.
fn broken_list(broken: &[String]) -> Option<String> {
    if broken.is_empty() {
        return None;
    }
    let mut lines: Vec<String> = broken.iter().take(BROKEN_LISTED).cloned().collect();
    if broken.len() > BROKEN_LISTED {
        lines.push(format!(
            "and {} more broken messages (`labfeed report mismatches` lists each as PARSE_ERROR)",
            broken.len() - BROKEN_LISTED
        ));
    }
    Some(lines.join("\n"))
}

/// Give the scheduled slots of every visit with a meal start their
/// MISSING_RESULT ids (see [`Tx::allocate_missing_slot_ids`]), from the
/// configuration's `mmtt.timepoints` and analytes. Any write transaction that
/// may add visits or follow a configuration change calls this.
pub fn allocate_missing_slot_ids(tx: &mut Tx<'_>, config: &Config) -> Result<u64, StoreError> {
    let timepoints: Vec<i64> = config.mmtt.timepoints.iter().map(|&m| i64::from(m)).collect();
    let analytes: Vec<String> = config.analytes.keys().cloned().collect();
    tx.allocate_missing_slot_ids(&timepoints, &analytes)
}

fn same_value(
    a: f64,
    ac: Option<crate::value::Comparator>,
    b: Option<f64>,
    bc: Option<crate::value::Comparator>,
) -> bool {
    let Some(b) = b else { return false };
    ac == bc && (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn value_words(value: Option<f64>, comparator: Option<crate::value::Comparator>, unit: Option<&str>) -> String {
    let number = value.map_or_else(|| "(no value)".to_owned(), |v| format!("{}", (v * 1e6).round() / 1e6));
    let cmp = comparator.map(|c| c.as_str()).unwrap_or("");
    match unit {
        Some(unit) => format!("{cmp}{number} {unit}"),
        None => format!("{cmp}{number}"),
    }
}

/// The first character of `text` that would break a one-line reason or name
/// in the audit log and the reports: a control character (C0, DEL, C1) or a
/// line or paragraph separator.
pub fn control_character(text: &str) -> Option<char> {
    text.chars().find(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
}

/// The manifest row of `o`'s sample, when it has a sample ID and a row.
fn manifest_row(tx: &Tx<'_>, o: &ObservationRow) -> Result<Option<Sample>, StoreError> {
    match o.sample_id.as_deref() {
        Some(sample) => tx.sample(sample),
        None => Ok(None),
    }
}

/// `s` as a place to match at, found by `source`; `None` when its minute
/// does not fit the matcher's.
fn sample_slot(s: &Slot, source: MatchSource) -> Option<SampleSlot> {
    Some(SampleSlot {
        participant: s.participant.clone(),
        visit: s.visit.clone(),
        minute: i32::try_from(s.minute).ok()?,
        source,
    })
}

fn slot_words(slot: &Slot) -> String {
    format!("{} {} minute {} {}", slot.participant, slot.visit, slot.minute, slot.analyte)
}

/// Study data for matching, read inside the processing transaction. A
/// database error is kept and returned after matching, never read as "not found".
struct StoreStudy<'r, 'c> {
    reader: &'r Reader<'c>,
    error: RefCell<Option<StoreError>>,
}

/// Run `f` on the study data read through `reader`, then return the first
/// database error it met, if any.
fn with_study<T>(reader: &Reader<'_>, f: impl FnOnce(&StoreStudy<'_, '_>) -> T) -> Result<T, StoreError> {
    let study = StoreStudy { reader, error: RefCell::new(None) };
    let value = f(&study);
    match study.error.into_inner() {
        Some(e) => Err(e),
        None => Ok(value),
    }
}

impl StoreStudy<'_, '_> {
    fn keep<T>(&self, result: Result<Option<T>, StoreError>) -> Option<T> {
        match result {
            Ok(value) => value,
            Err(e) => {
                self.error.borrow_mut().get_or_insert(e);
                None
            }
        }
    }
}

impl StudyData for StoreStudy<'_, '_> {
    fn manifest_sample(&self, sample_id: &str) -> Option<SampleSlot> {
        let sample = self.keep(self.reader.sample(sample_id))?;
        Some(SampleSlot {
            participant: sample.participant,
            visit: sample.visit,
            minute: i32::try_from(sample.minute).ok()?,
            source: MatchSource::Manifest,
        })
    }

    fn participant_exists(&self, code: &str) -> bool {
        self.keep(self.reader.participant_exists(code).map(Some)).unwrap_or(false)
    }

    fn meal_start(&self, participant: &str, visit: &str) -> Option<crate::local_time::LocalTime> {
        self.keep(self.reader.visit(participant, visit))?.meal_start
    }
}

#[cfg(test)]
mod tests {
    use super::control_character;

    #[test]
    fn control_characters_are_found_plain_text_is_not() {
        for bad in ["a\0b", "a\nb", "a\rb", "a\tb", "a\x1b[31mb", "a\u{7f}b", "a\u{85}b", "a\u{2028}b"] {
            assert!(control_character(bad).is_some(), "{bad:?}");
        }
        assert_eq!(control_character("haemolysed; Örebro lab, 30-min tube (A. Andersson)"), None);
    }
}
