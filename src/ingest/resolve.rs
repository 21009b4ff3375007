//! A data manager's decision on a mismatch (`labfeed resolve`, SPEC §1).
//!
//! One transaction per decision, by the data manager as actor, so the
//! resolution, any new result version and any new mismatch are audited
//! together or not at all:
//!
//! - **accept**: the reported value goes into its slot as it is (a held
//!   IMPLAUSIBLE or NOT_FINAL value, a conflicting rerun that replaces the
//!   first value, a correction without its original). The slot is found again
//!   with the current configuration, and the flag checks (OUT_OF_WINDOW,
//!   PRETEST_GLUCOSE) run on it. For a flag, the value is already in: the flag
//!   is closed.
//! - **assign**: the result belongs to another participant/visit/minute.
//!   Every check runs again there, as at ingest, except the patient-ID
//!   comparison (the data manager decided). A check that holds raises a new
//!   mismatch at the new slot; the old one is closed either way. An accepted
//!   value that moves is withdrawn from its old slot.
//! - **reject**: the value is not a study result. A held value stays out; an
//!   accepted (flagged) value is withdrawn from its slot.
//!
//! - **not done** (MISSING_RESULT ids only): the sample was not drawn or
//!   not analysed; the slot leaves the open list. A result that arrives later
//!   still fills the slot: data win over a note that there are none.
//! - **reopen**: the decision in force is undone and the mismatch is open
//!   again. What it wrote is put back as it was (see [`reopen`]); mismatches
//!   it raised are closed (`auto`), flags it closed along are reopened.
//!
//! Nothing is deleted or changed: decisions, withdrawals and new versions are
//! new rows, and the observation keeps what the analyzer sent. What each
//! decision wrote is recorded (`resolution_effect`) for a later reopen.

use std::collections::BTreeMap;

use crate::model::LabResult;
use crate::store::{
    DecisionEffects, Lock, LockScope, MISSING_RESULT_CODE, MismatchCode, MismatchId, MismatchRow, MissingSlotRow,
    NewMismatch, NewResolution, NewResult, ObservationId, ObservationRow, ResolutionAction, ResolutionRow, ResultId,
    ResultRow, Signature, Slot, Store, StoreError, Tx,
};
use crate::study::config::Config;
use crate::study::matching::{
    Assessment, Finding, MatchSource, SampleSlot, assess, assess_in_slot, resolve_instrument,
};

use super::correction::Corrections;
use super::reported::{PatientId, PatientIds, reported_result};
use super::{allocate_missing_slot_ids, manifest_row, same_value, sample_slot, slot_words, value_words, with_study};

/// What the data manager decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The result belongs to this participant, visit and MMTT minute.
    Assign { participant: String, visit: String, minute: i64 },
    /// The value is accepted as it is.
    Accept,
    /// The value is not a study result.
    Reject,
    /// A MISSING_RESULT slot: the sample was not drawn or not analysed.
    NotDone,
    /// Undo the decision in force; the mismatch is open again.
    Reopen,
}

impl Decision {
    fn action(&self) -> ResolutionAction {
        match self {
            Decision::Assign { .. } => ResolutionAction::Assign,
            Decision::Accept => ResolutionAction::Accept,
            Decision::Reject => ResolutionAction::Reject,
            Decision::NotDone => ResolutionAction::NotDone,
            Decision::Reopen => ResolutionAction::Reopen,
        }
    }

    /// What a signature on this decision means (SPEC §8).
    pub fn meaning(&self) -> &'static str {
        match self {
            Decision::Assign { .. } => "resolve assign",
            Decision::Accept => "resolve accept",
            Decision::Reject => "resolve reject",
            Decision::NotDone => "resolve not-done",
            Decision::Reopen => "resolve reopen",
        }
    }
}

/// What a decision did, for the command's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub mismatch_id: MismatchId,
    /// The SPEC §6 code (MISSING_RESULT included).
    pub code: &'static str,
    /// The slot and value version the decision put in place, if any.
    pub accepted: Option<(Slot, ResultId, i64)>,
    /// The slot a value was taken out of, if any.
    pub withdrawn: Option<Slot>,
    /// Mismatches the checks raised again (after an assignment or acceptance).
    pub raised: Vec<(MismatchId, MismatchCode, String)>,
    /// Other open mismatches closed with it (flags of a value that left its
    /// slot; on reopen, the mismatches the undone decision had raised).
    pub also_closed: Vec<MismatchId>,
    /// Mismatches opened again with it (on reopen: flags the undone decision
    /// had closed along).
    pub also_reopened: Vec<MismatchId>,
    /// Plain words on what happened.
    pub summary: String,
}

impl Resolved {
    /// A decision that has placed, withdrawn, raised and closed nothing (yet).
    fn nothing(mismatch_id: MismatchId, code: &'static str, summary: String) -> Resolved {
        Resolved {
            mismatch_id,
            code,
            accepted: None,
            withdrawn: None,
            raised: Vec::new(),
            also_closed: Vec::new(),
            also_reopened: Vec::new(),
            summary,
        }
    }
}

/// Refuse a decision that would touch a locked visit (SPEC §8).
fn refuse_if_locked<'a>(
    tx: &Tx<'_>,
    id: MismatchId,
    code: &'static str,
    visits: impl IntoIterator<Item = (Option<&'a String>, Option<&'a String>)>,
) -> Result<(), ResolveError> {
    for (participant, visit) in visits {
        let lock = match (participant, visit) {
            (Some(p), Some(v)) => tx.lock_on(p, v)?,
            (Some(p), None) => tx.lock_on_participant(p)?,
            _ => tx.locks()?.into_iter().find(|l| l.scope == LockScope::Study),
        };
        if let Some(lock) = lock {
            return Err(ResolveError::Locked { id, code, lock: Box::new(lock) });
        }
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("mismatch {id} ({code}) cannot be decided: {lock}; `labfeed unlock` it first")]
    Locked { id: MismatchId, code: &'static str, lock: Box<Lock> },
    #[error("there is no mismatch {0} (see `labfeed report mismatches`)")]
    NotFound(MismatchId),
    #[error("mismatch {id} was already resolved ({action}) by {by} at {at}; a decision is never changed")]
    AlreadyResolved { id: MismatchId, action: ResolutionAction, by: String, at: jiff::Timestamp },
    #[error("mismatch {0} is open: there is no decision to reopen")]
    NotDecided(MismatchId),
    #[error("a reason is required (--reason TEXT)")]
    NoReason,
    #[error("{option} must not contain control characters (found {found:?}): it is one line of plain text")]
    ControlCharacter { option: &'static str, found: char },
    #[error("mismatch {id} ({code}) cannot be {verb}: {why}")]
    Refused { id: MismatchId, code: &'static str, verb: &'static str, why: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Record `decision` on mismatch `id` in one transaction signed by
/// `signature`, whose reason is the decision's.
pub fn resolve(
    store: &mut Store,
    config: &Config,
    id: MismatchId,
    decision: &Decision,
    signature: &Signature,
) -> Result<Resolved, ResolveError> {
    let reason = signature.reason.as_deref().map(str::trim).unwrap_or_default();
    if reason.is_empty() {
        return Err(ResolveError::NoReason);
    }
    let on_behalf_of = signature.on_behalf_of.as_deref().unwrap_or_default();
    for (option, text) in [("--reason", reason), ("--by", on_behalf_of)] {
        if let Some(found) = super::control_character(text) {
            return Err(ResolveError::ControlCharacter { option, found });
        }
    }
    store.write_signed(signature, |tx| {
        // Slots of visits imported by an older labfeed get their ids here too.
        allocate_missing_slot_ids(tx, config)?;
        if let Some(slot) = tx.missing_slot(id)? {
            refuse_if_locked(tx, id, MISSING_RESULT_CODE, [(Some(&slot.slot.participant), Some(&slot.slot.visit))])?;
            return missing_slot_decision(tx, config, &slot, decision, reason);
        }
        let Some(mismatch) = tx.mismatch(id)? else { return Err(ResolveError::NotFound(id)) };
        // A decision touches the mismatch's visit, the one a decision in
        // force put the value in, and an assignment's target: none may be locked.
        let decided = mismatch.resolution.as_ref().map(|r| (r.participant.as_ref(), r.visit.as_ref()));
        let target = match decision {
            Decision::Assign { participant, visit, .. } => Some((Some(participant), Some(visit))),
            _ => None,
        };
        let visits =
            [(mismatch.participant.as_ref(), mismatch.visit.as_ref())].into_iter().chain(decided).chain(target);
        refuse_if_locked(tx, id, mismatch.code.as_str(), visits)?;
        let empty = Resolved::nothing(id, mismatch.code.as_str(), String::new());
        match (decision, &mismatch.resolution) {
            (Decision::Reopen, None) => return Err(ResolveError::NotDecided(id)),
            (Decision::Reopen, Some(d)) => return reopen(tx, config, &mismatch, d, reason, empty),
            (Decision::NotDone, _) => {
                return Err(ResolveError::Refused {
                    id,
                    code: mismatch.code.as_str(),
                    verb: "marked not done",
                    why: "--not-done is for MISSING_RESULT rows (a scheduled sample without a result); use --reject \
                          for a result that is not a study result"
                        .to_owned(),
                });
            }
            (_, Some(r)) => {
                return Err(ResolveError::AlreadyResolved {
                    id,
                    action: r.action,
                    by: r.resolved_by.clone(),
                    at: r.resolved_at,
                });
            }
            (_, None) => {}
        }
        let mut work =
            Work { config, mismatch: &mismatch, reason, resolved: empty, written: Vec::new(), closing: Vec::new() };
        let (result_id, target) = match decision {
            Decision::Reject => (work.reject(tx)?, None),
            Decision::Accept => (work.accept(tx)?, None),
            Decision::Assign { participant, visit, minute } => {
                let target = SampleSlot {
                    participant: participant.clone(),
                    visit: visit.clone(),
                    minute: i32::try_from(*minute)
                        .map_err(|_| work.refuse("assigned", "the minute is out of range"))?,
                    source: MatchSource::Assigned,
                };
                (work.assign(tx, target)?, Some((participant.clone(), visit.clone(), *minute)))
            }
            Decision::NotDone | Decision::Reopen => (None, None),
        };
        let resolution = tx.insert_resolution(&NewResolution {
            mismatch_id: id,
            action: decision.action(),
            participant: target.as_ref().map(|t| t.0.clone()),
            visit: target.as_ref().map(|t| t.1.clone()),
            minute: target.as_ref().map(|t| t.2),
            result_id,
            reason: reason.to_owned(),
            cause: None,
        })?;
        // The flags of a value that left its slot close with this decision,
        // which is their cause: reopening it reopens them.
        for (other, why, withdrawal) in std::mem::take(&mut work.closing) {
            tx.insert_resolution(&NewResolution {
                result_id: Some(withdrawal),
                cause: Some(resolution),
                ..NewResolution::auto(other, why)
            })?;
        }
        let effects = DecisionEffects {
            results: std::mem::take(&mut work.written),
            raised: work.resolved.raised.iter().map(|r| r.0).collect(),
        };
        tx.insert_decision_effects(resolution, &effects)?;
        Ok(work.resolved)
    })
}

/// `--not-done` or `--reopen` on a MISSING_RESULT id; any other decision is
/// refused (there is no result to accept, assign or reject).
fn missing_slot_decision(
    tx: &mut Tx<'_>,
    config: &Config,
    row: &MissingSlotRow,
    decision: &Decision,
    reason: &str,
) -> Result<Resolved, ResolveError> {
    let refuse =
        |verb: &'static str, why: String| ResolveError::Refused { id: row.id, code: MISSING_RESULT_CODE, verb, why };
    let slot = &row.slot;
    let cause = match (decision, &row.decision) {
        (Decision::NotDone, Some(d)) => {
            return Err(refuse(
                "marked not done",
                format!(
                    "{} is already marked not done (by {} at {}); reopen it first to change the mark",
                    slot_words(slot),
                    d.resolved_by,
                    d.resolved_at
                ),
            ));
        }
        (Decision::NotDone, None) => {
            if let Some(current) = tx.current_result(slot)? {
                return Err(refuse(
                    "marked not done",
                    format!(
                        "{} has a result ({}); nothing is missing",
                        slot_words(slot),
                        value_words(Some(current.value), current.comparator, Some(&current.unit))
                    ),
                ));
            }
            if let Some(held) = tx.open_mismatches(slot, None)?.into_iter().find(|m| m.holds) {
                return Err(refuse(
                    "marked not done",
                    format!(
                        "a result for {} is held for review (mismatch {}); decide that one first",
                        slot_words(slot),
                        held.id
                    ),
                ));
            }
            if let Some(held) = tx.unknown_samples_placed_in(slot)?.first() {
                return Err(refuse(
                    "marked not done",
                    format!(
                        "a result held as UNKNOWN_SAMPLE (mismatch {held}) has a sample the manifest now puts in {}; \
                         decide that one first (resolve {held} --accept)",
                        slot_words(slot)
                    ),
                ));
            }
            let started = tx
                .visit(&slot.participant, &slot.visit)?
                .and_then(|v| v.meal_start)
                .is_some_and(|t| crate::study::missing::meal_started(config, t, jiff::Timestamp::now()));
            if !started {
                return Err(refuse(
                    "marked not done",
                    format!(
                        "visit {} of {} has no meal start that has passed: nothing is missing yet",
                        slot.visit, slot.participant
                    ),
                ));
            }
            let scheduled = config.mmtt.timepoints.iter().any(|&m| i64::from(m) == slot.minute)
                && config.analytes.contains_key(&slot.analyte);
            if !scheduled {
                return Err(refuse(
                    "marked not done",
                    format!("{} is no longer scheduled in the configuration", slot_words(slot)),
                ));
            }
            None
        }
        (Decision::Reopen, None) => return Err(ResolveError::NotDecided(row.id)),
        (Decision::Reopen, Some(d)) => Some(d.id),
        _ => {
            return Err(refuse(
                "decided that way",
                "it is a missing result: there is no value to accept, assign or reject; use --not-done if the \
                 sample was not drawn or not analysed"
                    .to_owned(),
            ));
        }
    };
    tx.insert_resolution(&NewResolution { cause, ..NewResolution::unplaced(decision.action(), row.id, reason) })?;
    let summary = match decision {
        Decision::Reopen => format!("the not-done mark is undone: {} is missing again", slot_words(slot)),
        _ => format!("{} leaves the open list and `export lb` says NOT DONE", slot_words(slot)),
    };
    Ok(Resolved::nothing(row.id, MISSING_RESULT_CODE, summary))
}

struct Work<'a> {
    config: &'a Config,
    mismatch: &'a MismatchRow,
    reason: &'a str,
    resolved: Resolved,
    /// Result versions this decision added, for its effects.
    written: Vec<ResultId>,
    /// Other mismatches to close with it: id, why, the withdrawal that did it.
    closing: Vec<(MismatchId, String, ResultId)>,
}

impl Work<'_> {
    fn refuse(&self, verb: &'static str, why: impl Into<String>) -> ResolveError {
        ResolveError::Refused { id: self.mismatch.id, code: self.mismatch.code.as_str(), verb, why: why.into() }
    }

    /// The observation a mismatch is about; PARSE_ERROR has none.
    fn observation(&self, tx: &Tx<'_>, verb: &'static str) -> Result<ObservationRow, ResolveError> {
        let none = || {
            self.refuse(
                verb,
                "it is about a message that could not be parsed, so there is no result; have the lab send it \
                 again, then close this with --reject",
            )
        };
        let id = self.mismatch.observation_id.ok_or_else(none)?;
        tx.observation(id)?.ok_or_else(none)
    }

    /// A value that was not kept (its test or sender mapped to nothing when
    /// it arrived) cannot be placed from what is stored: only the file can.
    fn refuse_unkept(&self, o: &ObservationRow, verb: &'static str) -> Result<(), ResolveError> {
        let unkept = matches!(self.mismatch.code, MismatchCode::UnknownTest | MismatchCode::UnknownInstrument)
            && o.reported_value.is_none();
        if !unkept {
            return Ok(());
        }
        Err(self.refuse(
            verb,
            format!(
                "its value was not kept (its {} mapped to nothing when it arrived); fix the configuration, then {}",
                if self.mismatch.code == MismatchCode::UnknownTest { "test" } else { "sender" },
                crate::study::matching::REDELIVER
            ),
        ))
    }

    fn tag(&self, action: &str) -> String {
        format!("resolved mismatch {} ({action}): {}", self.mismatch.id, self.reason)
    }

    fn reject(&mut self, tx: &mut Tx<'_>) -> Result<Option<ResultId>, ResolveError> {
        if self.mismatch.holds || self.mismatch.observation_id.is_none() {
            self.resolved.summary = "rejected: the result stays out of the study tables".to_owned();
            return Ok(None);
        }
        let observation = self.observation(tx, "rejected")?;
        let withdrawn = self.withdraw(tx, &observation, "rejected")?;
        self.resolved.summary = match &withdrawn {
            Some((slot, _)) => format!("rejected: the value was withdrawn from {}", slot_words(slot)),
            None => "rejected: the value is no longer current in its slot; nothing else changed".to_owned(),
        };
        Ok(withdrawn.map(|(_, id)| id))
    }

    fn accept(&mut self, tx: &mut Tx<'_>) -> Result<Option<ResultId>, ResolveError> {
        if !self.mismatch.holds {
            // A flag: the value was accepted at ingest and stays.
            let slot = self.mismatch_slot();
            let current = match &slot {
                Some(slot) => tx.current_result(slot)?,
                None => None,
            };
            self.resolved.summary = "accepted: the flagged value stands".to_owned();
            return Ok(current.filter(|c| Some(c.observation_id) == self.mismatch.observation_id).map(|c| c.id));
        }
        let observation = self.observation(tx, "accepted")?;
        self.refuse_unkept(&observation, "accepted")?;
        let (mut result, sender, link) = self.reported(tx, &observation)?;
        let instrument = resolve_instrument(self.config, link.as_deref(), sender.as_deref());
        let (known_slot, compare_patient) = self.accept_place(tx, &observation)?;
        let mut unreadable = None;
        if compare_patient {
            // Accepting one problem is not accepting a participant the data
            // manager has not seen: the patient ID is compared as at ingest.
            match self.patient_id(tx, &observation)? {
                PatientId::Absent => {}
                PatientId::Sent(ids) => result.patient_ids = ids,
                PatientId::Unreadable => {
                    let differs = known_slot
                        .as_ref()
                        .is_some_and(|s| self.mismatch.participant.as_deref() != Some(s.participant.as_str()));
                    if let Some(s) = known_slot.as_ref().filter(|_| differs) {
                        unreadable = Some(Finding {
                            code: MismatchCode::ParticipantConflict,
                            detail: format!(
                                "the message's patient ID could not be read back from the stored copy to compare it \
                                 with participant {} of sample {}; check the sample before accepting it",
                                s.participant,
                                observation.sample_id.as_deref().unwrap_or("")
                            ),
                        });
                    }
                }
            }
        }
        let mut a = with_study(tx, |study| match known_slot {
            Some(slot) => assess_in_slot(self.config, instrument, sender.as_deref(), &result, slot, study),
            None => assess(self.config, instrument, sender.as_deref(), &result, study),
        })?;
        if let Some(finding) = unreadable {
            a.further_holds.insert(0, finding);
        }
        let Some(slot) = slot_of(&a) else {
            let why = match &a.hold {
                // Without an analyte an assignment is refused too.
                Some(f) if a.analyte.is_none() => format!("{}; or use --reject", f.detail),
                Some(f) => format!("{}; use --assign PARTICIPANT/VISIT/MINUTE or --reject", f.detail),
                None => "the result has no slot or value; use --assign or --reject".to_owned(),
            };
            return Err(self.refuse("accepted", why));
        };
        if a.value.is_none() || a.unit.is_none() {
            let why = a.hold.as_ref().map_or_else(|| "it has no number".to_owned(), |f| f.detail.clone());
            return Err(self.refuse("accepted", format!("{why}; use --reject")));
        }
        // Accepting one problem is not accepting the ones the data manager
        // has not seen: the next one the checks find holds it again.
        let accepted_before = tx.accepted_codes_of_observation(observation.id)?;
        let unseen = a
            .hold
            .iter()
            .chain(&a.further_holds)
            .find(|f| f.code != self.mismatch.code && !accepted_before.contains(&f.code))
            .cloned();
        if let Some(finding) = unseen {
            let detail = format!("{} (found when mismatch {} was accepted)", finding.detail, self.mismatch.id);
            self.raise(tx, &observation, &slot, finding.code, true, detail)?;
            self.resolved.summary = format!(
                "accepted as to {}, but another check holds it: {} (see the new mismatch)",
                self.mismatch.code, finding.code
            );
            return Ok(None);
        }
        let stored = self.put(tx, &observation, &slot, &a, "accept")?;
        self.raise_flags(tx, &observation, &slot, &a, &result, instrument)?;
        Ok(stored)
    }

    /// Where a held value goes when accepted: where a data manager assigned
    /// it; else where the manifest puts its sample now (it may have moved
    /// since the mismatch was raised); else the mismatch's slot; else `None`
    /// (looked up again). The flag says whether the patient ID is compared
    /// (not against a data manager's assignment).
    fn accept_place(
        &self,
        tx: &Tx<'_>,
        observation: &ObservationRow,
    ) -> Result<(Option<SampleSlot>, bool), ResolveError> {
        if tx.assignment_of_observation(observation.id)?.is_some() {
            let slot = self.mismatch_slot().and_then(|s| sample_slot(&s, MatchSource::Assigned));
            return Ok((slot, false));
        }
        if let Some(row) = manifest_row(tx, observation)? {
            let Ok(minute) = i32::try_from(row.minute) else { return Ok((None, true)) };
            let slot =
                SampleSlot { participant: row.participant, visit: row.visit, minute, source: MatchSource::Manifest };
            return Ok((Some(slot), true));
        }
        // No manifest row and no assignment: ingest found it by the sample ID.
        Ok((self.mismatch_slot().and_then(|s| sample_slot(&s, MatchSource::Pattern)), true))
    }

    /// The patient ID the observation was sent with (see [`PatientIds`]).
    fn patient_id(&self, tx: &Tx<'_>, o: &ObservationRow) -> Result<PatientId, ResolveError> {
        let Some(source) = tx.observation_source(o.id)? else { return Ok(PatientId::Unreadable) };
        Ok(PatientIds::default().of(tx, &source, o)?)
    }

    fn assign(&mut self, tx: &mut Tx<'_>, target: SampleSlot) -> Result<Option<ResultId>, ResolveError> {
        let observation = self.observation(tx, "assigned")?;
        if !tx.participant_exists(&target.participant)? {
            return Err(
                self.refuse("assigned", format!("participant {} is not in the participant list", target.participant))
            );
        }
        if !self.config.accepts_visit(&target.visit) {
            return Err(self.refuse("assigned", format!("visit {} is not a configured visit", target.visit)));
        }
        // The slot must exist before anything is written (issue 10, point 8).
        if tx.visit(&target.participant, &target.visit)?.is_none() {
            return Err(self.refuse(
                "assigned",
                format!(
                    "participant {} has no visit {} in the study data (import it with `labfeed import visits`)",
                    target.participant, target.visit
                ),
            ));
        }
        if !self.config.mmtt.timepoints.contains(&target.minute) {
            let scheduled: Vec<String> = self.config.mmtt.timepoints.iter().map(i32::to_string).collect();
            return Err(self.refuse(
                "assigned",
                format!("minute {} is not one of mmtt.timepoints ({})", target.minute, scheduled.join(", ")),
            ));
        }
        if let Some(analyte) = &self.mismatch.analyte
            && !self.config.analytes.contains_key(analyte)
        {
            return Err(self.refuse("assigned", format!("analyte {analyte} is not configured ([analytes.{analyte}])")));
        }
        self.refuse_unkept(&observation, "assigned")?;
        let (result, sender, link) = self.reported(tx, &observation)?;
        let instrument = resolve_instrument(self.config, link.as_deref(), sender.as_deref());
        let a = with_study(tx, |study| {
            assess_in_slot(self.config, instrument, sender.as_deref(), &result, target.clone(), study)
        })?;
        if a.analyte.is_none() {
            let why = a.hold.as_ref().map_or_else(|| "its analyte is not known".to_owned(), |f| f.detail.clone());
            return Err(self.refuse("assigned", format!("{why}; fix the configuration or use --reject")));
        }
        // An accepted value that moves leaves its old slot first.
        if !self.mismatch.holds {
            self.withdraw(tx, &observation, "moved")?;
        }
        let Some(slot) = slot_of(&a) else {
            return Err(self.refuse("assigned", "the result has no analyte"));
        };
        if let Some(finding) = &a.hold {
            let detail = format!("{} (after assignment in mismatch {})", finding.detail, self.mismatch.id);
            self.raise(tx, &observation, &slot, finding.code, true, detail)?;
            self.resolved.summary =
                format!("assigned to {}; a check holds it there again (see the new mismatch)", slot_words(&slot));
            return Ok(None);
        }
        let stored = self.put(tx, &observation, &slot, &a, "assign")?;
        self.raise_flags(tx, &observation, &slot, &a, &result, instrument)?;
        Ok(stored)
    }

    /// Put the assessed value into `slot`: nothing when the slot already has
    /// it; a new version otherwise. With `assign`, a different value already
    /// in the slot is a new DUPLICATE_CONFLICT (the data manager decides
    /// again); with `accept`, the data manager has decided: it replaces it.
    fn put(
        &mut self,
        tx: &mut Tx<'_>,
        observation: &ObservationRow,
        slot: &Slot,
        a: &Assessment,
        action: &'static str,
    ) -> Result<Option<ResultId>, ResolveError> {
        let (Some(value), Some(unit)) = (a.value, a.unit.clone()) else {
            return Err(self.refuse("accepted", "the result has no number"));
        };
        if let Some(current) = tx.current_result(slot)? {
            if same_value(current.value, current.comparator, Some(value), a.comparator) {
                self.resolved.summary =
                    format!("{} already holds this value (version {})", slot_words(slot), current.version);
                return Ok(Some(current.id));
            }
            let is_correction = observation.status.as_deref().map(str::trim) == Some("C");
            if action == "assign" && !is_correction {
                let detail = format!(
                    "{} differs from {} already accepted for {} (after assignment in mismatch {}); the first value \
                     stands until resolved",
                    value_words(Some(value), a.comparator, Some(&unit)),
                    value_words(Some(current.value), current.comparator, Some(&current.unit)),
                    slot_words(slot),
                    self.mismatch.id
                );
                self.raise(tx, observation, slot, MismatchCode::DuplicateConflict, true, detail)?;
                self.resolved.summary = format!(
                    "assigned to {}, which already has a different value (see the new mismatch)",
                    slot_words(slot)
                );
                return Ok(None);
            }
        }
        let stored = tx.insert_result(&NewResult {
            observation_id: observation.id,
            slot: slot.clone(),
            value,
            unit: unit.clone(),
            comparator: a.comparator,
            blq: a.blq,
            reason: self.tag(action),
        })?;
        self.written.push(stored.id);
        // A repeated local collection time is read by its (new) slot's meal start.
        if let Some(offset) = a.collected_offset.map(crate::local_time::offset_text)
            && tx.collected_offset(observation.id)?.as_deref() != Some(offset.as_str())
        {
            tx.record_collected_offset(observation.id, &offset, &self.tag(action))?;
        }
        self.resolved.accepted = Some((slot.clone(), stored.id, stored.version));
        self.resolved.summary = format!(
            "{} is now {} (version {})",
            slot_words(slot),
            value_words(Some(value), a.comparator, Some(&unit)),
            stored.version
        );
        Ok(Some(stored.id))
    }

    /// OUT_OF_WINDOW and PRETEST_GLUCOSE at the value's (new) slot.
    fn raise_flags(
        &mut self,
        tx: &mut Tx<'_>,
        observation: &ObservationRow,
        slot: &Slot,
        a: &Assessment,
        result: &LabResult,
        instrument: Option<&crate::study::config::Instrument>,
    ) -> Result<(), ResolveError> {
        let (Some(instrument), Some(sample_slot)) = (instrument, a.slot.as_ref()) else { return Ok(()) };
        if self.resolved.accepted.is_none() {
            return Ok(());
        }
        let findings = with_study(tx, |study| {
            crate::study::matching::flag_checks(
                self.config,
                instrument,
                &slot.analyte,
                sample_slot,
                result,
                a.value,
                study,
            )
        })?;
        for finding in findings {
            // The same flag on the same value is not raised twice (a flag
            // closing with this decision is not open any more).
            let open = tx.open_mismatches_of_observation(observation.id)?;
            let closing: Vec<MismatchId> = self.closing.iter().map(|c| c.0).collect();
            if open.iter().any(|m| m.code == finding.code && m.id != self.mismatch.id && !closing.contains(&m.id)) {
                continue;
            }
            self.raise(tx, observation, slot, finding.code, false, finding.detail)?;
        }
        Ok(())
    }

    fn raise(
        &mut self,
        tx: &mut Tx<'_>,
        observation: &ObservationRow,
        slot: &Slot,
        code: MismatchCode,
        holds: bool,
        detail: String,
    ) -> Result<(), ResolveError> {
        let id = tx.insert_mismatch(&NewMismatch {
            code,
            holds,
            observation_id: Some(observation.id),
            message_id: Some(observation.message_id),
            receipt_id: self.mismatch.receipt_id,
            participant: Some(slot.participant.clone()),
            visit: Some(slot.visit.clone()),
            minute: Some(slot.minute),
            analyte: Some(slot.analyte.clone()),
            detail: detail.clone(),
        })?;
        self.resolved.raised.push((id, code, detail));
        Ok(())
    }

    /// Withdraw the observation's value from the slot where it is current,
    /// and close the other open flags about it (they no longer apply there).
    fn withdraw(
        &mut self,
        tx: &mut Tx<'_>,
        observation: &ObservationRow,
        why: &str,
    ) -> Result<Option<(Slot, ResultId)>, ResolveError> {
        let Some(slot) = self.mismatch_slot() else { return Ok(None) };
        let Some(current) = tx.current_result(&slot)? else { return Ok(None) };
        if current.observation_id != observation.id {
            return Ok(None);
        }
        let Some(stored) = tx.withdraw_result(&slot, &self.tag(why))? else { return Ok(None) };
        self.written.push(stored.id);
        for other in tx.open_mismatches_of_observation(observation.id)? {
            if other.id == self.mismatch.id || other.holds {
                continue;
            }
            let reason = format!("its value was {why} from {} by mismatch {}", slot_words(&slot), self.mismatch.id);
            self.closing.push((other.id, reason, stored.id));
            self.resolved.also_closed.push(other.id);
        }
        self.resolved.withdrawn = Some(slot.clone());
        Ok(Some((slot, stored.id)))
    }

    fn mismatch_slot(&self) -> Option<Slot> {
        self.mismatch.slot()
    }

    /// The result as the analyzer reported it, its sender and its link's instrument.
    fn reported(
        &self,
        tx: &Tx<'_>,
        o: &ObservationRow,
    ) -> Result<(LabResult, Option<String>, Option<String>), ResolveError> {
        let link = tx.receipt_instrument(self.mismatch.receipt_id)?;
        Ok((reported_result(o), o.sender.clone(), link))
    }
}

/// Undo `decision`, the one in force on `mismatch`, and open it again:
///
/// - each slot the decision wrote goes back to its version before the
///   decision: a value it replaced or withdrew is put back (new version), a
///   value it put into an empty slot is withdrawn;
/// - mismatches it raised are closed (`auto`, caused by the reopen);
/// - flags it closed along (`auto` rows it caused) are reopened.
///
/// - a value it puts back whose sample the manifest has since moved goes
///   where the manifest says, as on import; flags still open afterwards are
///   checked against the meal start as it is now;
/// - a value it put in that an import has since moved on is taken out where
///   it is now; a held value is held where the manifest puts it now (the
///   reopened mismatch closes there and the checks raise its successor), and
///   a flag whose value left its slot closes.
///
/// Refused, with nothing written, when something happened since that a
/// reopen would silently undo too: a slot it wrote has a newer version, or a
/// mismatch it raised has been decided by a data manager. Those are undone
/// first, newest first. What labfeed already undid (an import closed a
/// mismatch it raised, or put a slot back as it was) is left as it is.
fn reopen(
    tx: &mut Tx<'_>,
    config: &Config,
    mismatch: &MismatchRow,
    decision: &ResolutionRow,
    reason: &str,
    mut resolved: Resolved,
) -> Result<Resolved, ResolveError> {
    let refuse =
        |why: String| ResolveError::Refused { id: mismatch.id, code: mismatch.code.as_str(), verb: "reopened", why };
    if decision.action == ResolutionAction::Auto {
        return Err(refuse(format!(
            "labfeed closed it, not a data manager ({}); reopen the decision that closed it",
            decision.reason
        )));
    }
    let effects = tx.decision_effects(decision.id)?;
    for raised in &effects.raised {
        if let Some(m) = tx.mismatch(*raised)?
            && let Some(d) = m.resolution.as_ref().filter(|d| d.action != ResolutionAction::Auto)
        {
            return Err(refuse(format!(
                "mismatch {raised} ({}), raised by this decision, was decided since ({} by {} at {}); reopen it \
                 first",
                m.code, d.action, d.resolved_by, d.resolved_at
            )));
        }
    }
    // The versions the decision wrote, per slot, oldest first.
    let mut per_slot: BTreeMap<Slot, Vec<ResultRow>> = BTreeMap::new();
    for id in &effects.results {
        if let Some(row) = tx.result(*id)? {
            per_slot.entry(row.slot.clone()).or_default().push(row);
        }
    }
    let corrections = Corrections::new(config, format!("on reopening mismatch {}", mismatch.id));
    // Slots labfeed already put back as they were before the decision.
    let mut already_back = Vec::new();
    // Values the decision put in that an import has since moved on with
    // their sample: undone where they are now.
    let mut followed: Vec<ObservationId> = Vec::new();
    for (slot, written) in &per_slot {
        // Unchanged since: the slot still says what the decision left there
        // (the same version, or a later one that put the same back).
        let last = written.last();
        let latest = tx.latest_version(slot)?;
        if let Some(latest) = latest.filter(|l| !last.is_some_and(|w| same_state(w, l))) {
            let before = match written.first().and_then(|w| w.supersedes) {
                Some(id) => tx.result(id)?,
                None => None,
            };
            // Only labfeed's own undoing counts: a data manager's later
            // decision there is undone first (it may rely on this one).
            let by_decision = tx.written_by_decision(latest.id)?;
            let moved_on = match last.filter(|w| !w.withdrawn && !by_decision) {
                Some(w) => !corrections.still_belongs(tx, w.observation_id, slot)?,
                None => false,
            };
            if let Some(w) = last.filter(|_| moved_on) {
                followed.push(w.observation_id);
            }
            let back = !by_decision
                && match &before {
                    None => latest.withdrawn,
                    Some(b) => same_state(b, &latest),
                };
            if back {
                already_back.push(slot.clone());
                continue;
            }
            // The move emptied the slot; the value before the decision goes
            // back and follows the manifest below.
            if moved_on && latest.withdrawn {
                continue;
            }
            // Advice that can be followed: labfeed's own changes cannot be reopened.
            let advice = match by_decision {
                true => "reopen or resolve that change first",
                false => {
                    "that change came from a delivery or an import, not a decision, so it cannot be reopened: \
                     decide the mismatches it raised (`labfeed report mismatches`), or correct the study data again"
                }
            };
            return Err(refuse(format!(
                "{} has changed since this decision (version {}: {}); {advice}",
                slot_words(slot),
                latest.version,
                latest.reason
            )));
        }
    }
    let closed_along = tx.closed_along_with(decision.id)?;

    let reopen_id = tx.insert_resolution(&NewResolution {
        cause: Some(decision.id),
        ..NewResolution::unplaced(ResolutionAction::Reopen, mismatch.id, reason)
    })?;
    let tag = format!("reopened mismatch {}: {reason}", mismatch.id);
    let mut written = Vec::new();
    let mut summary = Vec::new();
    // Values this reopen takes out of a slot: their flags no longer apply there.
    let mut taken_out: Vec<(Slot, ObservationId)> = Vec::new();
    for observation in &followed {
        if tx.assignment_of_observation(*observation)?.is_some() {
            continue;
        }
        for r in tx.current_results_of_observation(*observation)? {
            if let Some(id) = corrections.take_back(tx, &r, &tag)? {
                written.push(id);
                taken_out.push((r.slot.clone(), *observation));
                summary.push(format!("{} is as before the value came", slot_words(&r.slot)));
            }
        }
    }
    for (slot, versions) in &per_slot {
        if already_back.contains(slot) {
            summary.push(format!("{} is already as it was before", slot_words(slot)));
            continue;
        }
        let Some(first) = versions.first() else { continue };
        if let Some(now) = tx.current_result(slot)? {
            taken_out.push((slot.clone(), now.observation_id));
        }
        let before = match first.supersedes {
            Some(id) => tx.result(id)?,
            None => None,
        };
        // Empty before: "nothing received" again unless a data manager had emptied it.
        let unfilled = match &before {
            None => true,
            Some(b) => b.withdrawn && tx.is_unfilled(b.id)?,
        };
        match before.filter(|b| !b.withdrawn) {
            Some(b) => {
                let stored = tx.insert_result(&NewResult {
                    observation_id: b.observation_id,
                    slot: slot.clone(),
                    value: b.value,
                    unit: b.unit.clone(),
                    comparator: b.comparator,
                    blq: b.blq,
                    reason: tag.clone(),
                })?;
                written.push(stored.id);
                summary.push(format!(
                    "{} is {} again (version {})",
                    slot_words(slot),
                    value_words(Some(b.value), b.comparator, Some(&b.unit)),
                    stored.version
                ));
            }
            None => {
                if let Some(stored) = tx.withdraw_result_as(slot, &tag, unfilled)? {
                    written.push(stored.id);
                    summary.push(format!("{} is empty again", slot_words(slot)));
                }
            }
        }
    }
    for raised in &effects.raised {
        if tx.mismatch(*raised)?.is_some_and(|m| m.resolution.is_none()) {
            let why = format!("raised by the decision on mismatch {}, which was reopened: {reason}", mismatch.id);
            tx.insert_resolution(&NewResolution { cause: Some(reopen_id), ..NewResolution::auto(*raised, why) })?;
            resolved.also_closed.push(*raised);
        }
    }
    // Flags an import raised on a value this reopen took out of its slot.
    for (slot, observation) in &taken_out {
        if tx.current_result(slot)?.is_some_and(|r| r.observation_id == *observation) {
            continue;
        }
        for m in tx.open_mismatches_of_observation(*observation)? {
            if m.holds || m.id == mismatch.id || m.slot().as_ref() != Some(slot) {
                continue;
            }
            let why =
                format!("its value left {} when mismatch {} was reopened: {reason}", slot_words(slot), mismatch.id);
            tx.insert_resolution(&NewResolution { cause: Some(reopen_id), ..NewResolution::auto(m.id, why) })?;
            resolved.also_closed.push(m.id);
        }
    }
    for (other, auto) in closed_along {
        let why = format!("reopened with mismatch {}: {reason}", mismatch.id);
        tx.insert_resolution(&NewResolution {
            cause: Some(auto),
            ..NewResolution::unplaced(ResolutionAction::Reopen, other, why)
        })?;
        resolved.also_reopened.push(other);
    }
    let put_back: Vec<ObservationId> = {
        // A held value is held where the manifest puts its sample now.
        let mut ids: Vec<ObservationId> = mismatch.observation_id.filter(|_| mismatch.holds).into_iter().collect();
        for id in &written {
            if let Some(r) = tx.result(*id)?.filter(|r| !r.withdrawn)
                && !ids.contains(&r.observation_id)
            {
                ids.push(r.observation_id);
            }
        }
        ids
    };
    tx.insert_decision_effects(reopen_id, &DecisionEffects { results: written, raised: Vec::new() })?;
    // What changed while the decision stood applies to what it put back.
    for observation in put_back {
        if let Some(moved) = corrections.follow_manifest(tx, observation)? {
            summary.push(format!("the manifest has moved it since: {moved}"));
        }
    }
    for id in std::iter::once(mismatch.id).chain(resolved.also_reopened.iter().copied()) {
        // A flag whose value an import moved on while the decision stood
        // flags nothing at its slot: closed, as the move closes such flags.
        if let Some(m) = tx.mismatch(id)?.filter(|m| !m.holds && m.resolution.is_none())
            && let (Some(observation), Some(slot)) = (m.observation_id, m.slot())
            && tx.current_result(&slot)?.is_none_or(|r| r.observation_id != observation)
        {
            let why = format!("its value is no longer at {}: {reason}", slot_words(&slot));
            tx.insert_resolution(&NewResolution { cause: Some(reopen_id), ..NewResolution::auto(id, why) })?;
            summary.push(format!("mismatch {id} closed: its value is no longer at {}", slot_words(&slot)));
            continue;
        }
        if let Some(m) = tx.mismatch(id)?
            && let Some(said) = corrections.recheck_window(tx, &m)?
        {
            summary.push(said);
        }
    }
    let held = if mismatch.holds { "; its result is held again" } else { "" };
    resolved.summary = match summary.is_empty() {
        true => format!("the {} is undone; the mismatch is open{held}", decision.action),
        false => format!("the {} is undone: {}{held}", decision.action, summary.join("; ")),
    };
    Ok(resolved)
}

/// Two versions of a slot leave it in the same state: the same value from the
/// same observation, or both withdrawn.
fn same_state(a: &ResultRow, b: &ResultRow) -> bool {
    a.id == b.id
        || (a.withdrawn && b.withdrawn)
        || (!a.withdrawn
            && !b.withdrawn
            && a.observation_id == b.observation_id
            && a.value.to_bits() == b.value.to_bits()
            && a.comparator == b.comparator)
}

fn slot_of(a: &Assessment) -> Option<Slot> {
    let s = a.slot.as_ref()?;
    Some(Slot::new(&s.participant, &s.visit, i64::from(s.minute), a.analyte.as_deref()?))
}
