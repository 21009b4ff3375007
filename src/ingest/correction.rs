//! Study-data corrections that follow the data (SPEC §7 "Study data change"):
//! an imported sample row that moves a sample, and a changed meal start.
//!
//! Runs inside the import's own write transaction, under the importing user,
//! so the study-data row and every move and re-check it causes are audited
//! together or not at all.
//!
//! - **A sample moves** (another participant, visit or minute): every result
//!   of the sample leaves its old slot (an accepted value is withdrawn with a
//!   withdrawn version; open mismatches about it there are closed as `auto`,
//!   naming the import), and every check runs again at the new slot, as after
//!   `resolve --assign`. Unlike an assignment, the patient ID the analyzer
//!   sent is compared again: the manifest changed, not a data manager's mind,
//!   and a patient ID that disagrees with the new participant is exactly what
//!   a wrong correction looks like. A different value already in the new slot
//!   is a DUPLICATE_CONFLICT; it is never overwritten.
//! - **A data manager's assignment stands**: a result that `resolve --assign`
//!   placed stays where it was put, and the import says so.
//! - **A meal start changes**: OUT_OF_WINDOW is checked again for the visit's
//!   accepted results. A flag that no longer applies is closed (`auto`), a
//!   value now out of window gets a new flag (accepted and flagged, as at
//!   ingest), and a flag whose numbers changed is replaced. A cleared meal
//!   start closes the visit's window flags: there is no window to check.
//!   MISSING_RESULT follows by itself (reports compute it from the meal start).

use std::fmt;

use crate::local_time::{LocalTime, offset_text};
use crate::model::LabResult;
use crate::store::{
    MismatchCode, MismatchId, MismatchRow, NewMismatch, NewResolution, NewResult, ObservationId, ObservationRow,
    ObservationSource, ResultId, ResultRow, Sample, Slot, StoreError, Tx, Visit,
};
use crate::study::config::{Config, Instrument};
use crate::study::matching::{
    Finding, MatchSource, SampleSlot, assess_in_slot, chosen_offset, flag_checks, resolve_instrument,
};

use super::reported::{PatientId, PatientIds, reported_result};
use super::{manifest_row, same_value, sample_slot, slot_words, value_words, with_study};

/// A participant, visit and minute: where a sample belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub participant: String,
    pub visit: String,
    pub minute: i64,
}

impl Place {
    fn of_sample(s: &Sample) -> Place {
        Place { participant: s.participant.clone(), visit: s.visit.clone(), minute: s.minute }
    }

    fn of_slot(s: &Slot) -> Place {
        Place { participant: s.participant.clone(), visit: s.visit.clone(), minute: s.minute }
    }

    /// The place a mismatch is about, when it names one.
    fn of_mismatch(m: &MismatchRow) -> Option<Place> {
        Some(Place { participant: m.participant.clone()?, visit: m.visit.clone()?, minute: m.minute? })
    }

    fn holds(&self, slot: &Slot) -> bool {
        self.participant == slot.participant && self.visit == slot.visit && self.minute == slot.minute
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.participant, self.visit, self.minute)
    }
}

/// What moving one sample did, for the import's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleMove {
    pub sample_id: String,
    /// The old manifest row, else where its results were.
    pub from: Option<Place>,
    pub to: Place,
    /// Results taken out of their old slot and checked again at the new one.
    pub moved: usize,
    /// Of those, how many found the same value already in the new slot.
    pub duplicates: usize,
    /// Mismatches the checks raised at the new slot.
    pub raised: Vec<(MismatchId, MismatchCode)>,
    /// Open mismatches closed at the old slot.
    pub closed: Vec<MismatchId>,
    /// Results left where a data manager assigned them: their slot and the
    /// mismatch the assignment resolved.
    pub kept: Vec<(Slot, MismatchId)>,
    /// Old slots that got back the value the moved one had replaced.
    pub restored: Vec<Slot>,
    /// Old slots left empty.
    pub vacated: Vec<Slot>,
    /// DUPLICATE_CONFLICTs closed because the value they conflicted with
    /// left; their values were checked again in the vacated slot.
    pub unblocked: Vec<MismatchId>,
    /// Results of the sample held as UNKNOWN_SAMPLE: the manifest names it
    /// now, so `resolve --accept` can place them (with every check).
    pub unknown: Vec<MismatchId>,
}

impl SampleMove {
    /// A move of `sample_id` before any of its results is touched.
    fn nothing_yet(sample_id: &str, from: Option<Place>, to: Place) -> SampleMove {
        SampleMove {
            sample_id: sample_id.to_owned(),
            from,
            to,
            moved: 0,
            duplicates: 0,
            raised: Vec::new(),
            closed: Vec::new(),
            kept: Vec::new(),
            restored: Vec::new(),
            vacated: Vec::new(),
            unblocked: Vec::new(),
            unknown: Vec::new(),
        }
    }

    /// Whether anything about results changed or was kept back.
    pub fn touched_results(&self) -> bool {
        self.moved > 0 || !self.kept.is_empty() || !self.closed.is_empty() || !self.unknown.is_empty()
    }
}

impl fmt::Display for SampleMove {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.from {
            Some(from) => write!(f, "{} moved {from} → {}", self.sample_id, self.to)?,
            None => write!(f, "{} placed at {}", self.sample_id, self.to)?,
        }
        let mut parts = Vec::new();
        if !self.touched_results() {
            parts.push("no results to move".to_owned());
        }
        if self.moved > 0 {
            parts.push(format!("{} moved", count(self.moved, "result", "results")));
        }
        if self.duplicates > 0 {
            parts.push(format!("{} already there with the same value (duplicate)", self.duplicates));
        }
        if !self.raised.is_empty() {
            let list: Vec<String> = self.raised.iter().map(|(id, code)| format!("{code} #{id}")).collect();
            parts.push(format!("{} {}", count(self.raised.len(), "new mismatch", "new mismatches"), list.join(", ")));
        }
        if !self.closed.is_empty() {
            parts.push(format!(
                "{} at the old slot ({})",
                count(self.closed.len(), "mismatch closed", "mismatches closed"),
                id_list(&self.closed)
            ));
        }
        for slot in &self.restored {
            parts.push(format!("{slot} has the value back that it had replaced"));
        }
        if !self.unblocked.is_empty() {
            parts.push(format!(
                "{} closed: the value it conflicted with left ({})",
                count(self.unblocked.len(), "DUPLICATE_CONFLICT", "DUPLICATE_CONFLICTs"),
                id_list(&self.unblocked)
            ));
        }
        if !self.unknown.is_empty() {
            parts.push(format!(
                "{} held as UNKNOWN_SAMPLE now {} {}: resolve {} --accept",
                count(self.unknown.len(), "result", "results"),
                if self.unknown.len() == 1 { "matches" } else { "match" },
                self.sample_id,
                id_list(&self.unknown)
            ));
        }
        for (slot, id) in &self.kept {
            parts.push(format!("1 result kept at {slot}, where a data manager assigned it (#{id})"));
        }
        write!(f, " ({})", parts.join("; "))
    }
}

/// What a changed meal start did to its visit's flags.
#[derive(Debug, Clone, PartialEq)]
pub struct MealStartChange {
    pub participant: String,
    pub visit: String,
    pub old: Option<LocalTime>,
    pub new: Option<LocalTime>,
    /// Accepted results of the visit whose window was checked again.
    pub rechecked: usize,
    /// OUT_OF_WINDOW flags that no longer apply.
    pub closed: Vec<MismatchId>,
    /// New OUT_OF_WINDOW flags.
    pub raised: Vec<MismatchId>,
    /// Flags that still apply with other numbers: (closed, its replacement).
    pub replaced: Vec<(MismatchId, MismatchId)>,
}

impl fmt::Display for MealStartChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} meal_start {} → {}: {} re-checked, {} closed, {} raised",
            self.participant,
            self.visit,
            local_words(self.old),
            local_words(self.new),
            count(self.rechecked, "result", "results"),
            count(self.closed.len(), "OUT_OF_WINDOW flag", "OUT_OF_WINDOW flags"),
            self.raised.len()
        )?;
        if !self.replaced.is_empty() {
            let list: Vec<String> = self.replaced.iter().map(|(old, new)| format!("#{old} → #{new}")).collect();
            write!(f, ", {} with new times ({})", self.replaced.len(), list.join(", "))?;
        }
        if self.new.is_none() && self.old.is_some() {
            write!(f, " (no meal start: no window can be checked)")?;
        }
        Ok(())
    }
}

/// `1 result`, `2 results`.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `#3, #4`.
fn id_list(ids: &[MismatchId]) -> String {
    ids.iter().map(|id| format!("#{id}")).collect::<Vec<_>>().join(", ")
}

/// A new OUT_OF_WINDOW flag on `o`'s accepted value at `slot`.
fn out_of_window(o: &ObservationRow, source: &ObservationSource, slot: &Slot, detail: String) -> NewMismatch {
    NewMismatch {
        code: MismatchCode::OutOfWindow,
        holds: false,
        observation_id: Some(o.id),
        message_id: Some(o.message_id),
        receipt_id: source.receipt_id,
        participant: Some(slot.participant.clone()),
        visit: Some(slot.visit.clone()),
        minute: Some(slot.minute),
        analyte: Some(slot.analyte.clone()),
        detail,
    }
}

/// `2026-03-02T08:30` (seconds only when there are some; the offset when
/// there is one), `(none)`.
fn local_words(t: Option<LocalTime>) -> String {
    match t {
        None => "(none)".to_owned(),
        Some(t) => t.iso_minutes(),
    }
}

/// An observation taken out of its old slot, to be checked at its new one.
struct TakenOut {
    observation: ObservationRow,
    source: ObservationSource,
    to: Place,
    participant_changed: bool,
    minute_changed: bool,
    /// Why it is checked again, for the details of what that raises.
    after: String,
    /// The reason of the result version that places it.
    placed: String,
}

/// Study-data corrections inside one import transaction.
pub struct Corrections<'a> {
    config: &'a Config,
    /// What made the change, for reasons and details: `import of samples.csv`.
    because: String,
    /// Patient IDs read back from stored copies.
    patients: PatientIds,
}

impl<'a> Corrections<'a> {
    pub fn new(config: &'a Config, because: impl Into<String>) -> Corrections<'a> {
        Corrections { config, because: because.into(), patients: PatientIds::default() }
    }

    /// The manifest rows of these samples are now `new` (they were `old`):
    /// move every result of each sample that is somewhere else. All of them
    /// leave their old slots before any is checked at its new one, so two
    /// swapped tubes change places instead of conflicting with each other.
    pub fn samples_moved(
        &self,
        tx: &mut Tx<'_>,
        changes: &[(Option<Sample>, Sample)],
    ) -> Result<Vec<SampleMove>, StoreError> {
        let mut reports = Vec::with_capacity(changes.len());
        let mut pending = Vec::new();
        let observed = if changes.is_empty() { Default::default() } else { tx.sample_ids_with_movable_observations()? };
        for (index, (old, new)) in changes.iter().enumerate() {
            let to = Place::of_sample(new);
            let mut report = SampleMove::nothing_yet(&new.sample_id, old.as_ref().map(Place::of_sample), to.clone());
            let ids = if observed.contains(&new.sample_id) {
                report.unknown = tx.unknown_sample_mismatches_of(&new.sample_id)?;
                tx.movable_observations_of_sample(&new.sample_id)?
            } else {
                Vec::new()
            };
            for id in ids {
                if let Some(out) = self.take_out(tx, id, &to, &mut report)? {
                    pending.push((index, out));
                }
            }
            reports.push(report);
        }
        for (index, out) in pending {
            if let Some(report) = reports.get_mut(index) {
                self.check_at(tx, &out, report)?;
            }
        }
        for report in &mut reports {
            for slot in report.vacated.clone() {
                self.unblock(tx, &slot, report)?;
            }
        }
        Ok(reports)
    }

    /// Take an observation of a moving sample out of its old slot: withdraw
    /// its value there and close its open mismatches there. `None` when it
    /// stays (already at `to`, nothing current or open, or assigned by a data
    /// manager); otherwise what [`Self::check_at`] needs.
    fn take_out(
        &self,
        tx: &mut Tx<'_>,
        id: ObservationId,
        to: &Place,
        report: &mut SampleMove,
    ) -> Result<Option<TakenOut>, StoreError> {
        let current = tx.current_results_of_observation(id)?;
        let open = tx.open_mismatches_of_observation(id)?;
        // Only what has a place moves; a result held before it had one
        // (unknown instrument, test or sample) stays held where it is.
        let results_elsewhere: Vec<_> = current.iter().filter(|r| !to.holds(&r.slot)).cloned().collect();
        let open_elsewhere: Vec<_> =
            open.iter().filter(|m| Place::of_mismatch(m).is_some_and(|p| p != *to)).cloned().collect();
        if results_elsewhere.is_empty() && open_elsewhere.is_empty() {
            return Ok(None);
        }
        if let Some(assigned) = tx.assignment_of_observation(id)? {
            for r in &current {
                report.kept.push((r.slot.clone(), assigned));
            }
            for m in open.iter().filter(|m| current.iter().all(|r| m.slot().as_ref() != Some(&r.slot))) {
                if let Some(slot) = m.slot() {
                    report.kept.push((slot, assigned));
                }
            }
            return Ok(None);
        }
        let Some(observation) = tx.observation(id)? else { return Ok(None) };
        let Some(source) = tx.observation_source(id)? else { return Ok(None) };
        let old_place = results_elsewhere
            .first()
            .map(|r| Place::of_slot(&r.slot))
            .or_else(|| open_elsewhere.iter().find_map(Place::of_mismatch));
        if report.from.is_none() {
            report.from = old_place.clone();
        }
        let sample = observation.sample_id.as_deref().unwrap_or("");
        let from_words = old_place.as_ref().map_or_else(String::new, |p| format!(" from {p}"));
        let reason = format!("sample {sample} moved{from_words} to {to} ({})", self.because);

        let mut withdrawn: Vec<(Slot, ResultId)> = Vec::new();
        for r in &results_elsewhere {
            if let Some(id) = self.vacate(tx, r, &reason, report)? {
                withdrawn.push((r.slot.clone(), id));
            }
        }
        for m in &open_elsewhere {
            let result_id = withdrawn.iter().find(|(slot, _)| m.slot().as_ref() == Some(slot)).map(|(_, id)| *id);
            tx.insert_resolution(&NewResolution { result_id, ..NewResolution::auto(m.id, reason.clone()) })?;
            report.closed.push(m.id);
        }
        // Only flags left, on a value that is no longer current (a later
        // correction replaced it): closed, nothing to place.
        if results_elsewhere.is_empty() && !open_elsewhere.iter().any(|m| m.holds) {
            return Ok(None);
        }
        report.moved += 1;
        if current.iter().any(|r| to.holds(&r.slot)) {
            // Its value is already current at the new place.
            return Ok(None);
        }
        Ok(Some(TakenOut {
            after: format!("after sample {sample} moved to {to}, {}", self.because),
            placed: format!(
                "sample {sample} moved here{} ({})",
                report.from.as_ref().map_or_else(String::new, |p| format!(" from {p}")),
                self.because
            ),
            participant_changed: old_place.as_ref().is_some_and(|p| p.participant != to.participant),
            minute_changed: old_place.as_ref().is_some_and(|p| p.minute != to.minute),
            observation,
            source,
            to: to.clone(),
        }))
    }

    /// Take `r`, current at its slot, out because its sample moved. The value
    /// it had replaced comes back when that one's sample still belongs there
    /// (nothing is lost); else the slot is empty as before it came: never
    /// filled (its sample is still to come) unless a data manager had
    /// rejected a value there. The new version.
    fn vacate(
        &self,
        tx: &mut Tx<'_>,
        r: &ResultRow,
        reason: &str,
        report: &mut SampleMove,
    ) -> Result<Option<ResultId>, StoreError> {
        // The slot before this value first came: a rejection of the same
        // value that a reopen undid is not "a data manager emptied it".
        let mut before = match r.supersedes {
            Some(id) => tx.result(id)?,
            None => None,
        };
        while let Some(b) = before.as_ref().filter(|b| b.observation_id == r.observation_id) {
            before = match b.supersedes {
                Some(id) => tx.result(id)?,
                None => None,
            };
        }
        if let Some(b) = before.as_ref().filter(|b| !b.withdrawn)
            && self.still_belongs(tx, b.observation_id, &r.slot)?
        {
            let stored = tx.insert_result(&NewResult {
                observation_id: b.observation_id,
                slot: r.slot.clone(),
                value: b.value,
                unit: b.unit.clone(),
                comparator: b.comparator,
                blq: b.blq,
                reason: format!("{reason}: the value it had replaced is back"),
            })?;
            report.restored.push(r.slot.clone());
            return Ok(Some(stored.id));
        }
        // A slot a data manager had emptied before reads so again.
        let unfilled = match &before {
            Some(b) if b.withdrawn => tx.is_unfilled(b.id)?,
            _ => true,
        };
        let Some(stored) = tx.withdraw_result_as(&r.slot, reason, unfilled)? else { return Ok(None) };
        report.vacated.push(r.slot.clone());
        Ok(Some(stored.id))
    }

    /// Take `r` out of its slot as a move does ([`Self::vacate`]): a reopen
    /// undoing the decision whose value the manifest has moved here since.
    pub fn take_back(&self, tx: &mut Tx<'_>, r: &ResultRow, reason: &str) -> Result<Option<ResultId>, StoreError> {
        let here = Place::of_slot(&r.slot);
        let mut report = SampleMove::nothing_yet("", None, here);
        self.vacate(tx, r, reason, &mut report)
    }

    /// Whether the manifest (as it is now) leaves observation `id` at `slot`:
    /// its sample's row names that place, or it has no row (its place came
    /// from the sample ID or a data manager, which a manifest change does
    /// not concern).
    pub fn still_belongs(&self, tx: &Tx<'_>, id: ObservationId, slot: &Slot) -> Result<bool, StoreError> {
        let Some(o) = tx.observation(id)? else { return Ok(false) };
        Ok(manifest_row(tx, &o)?.is_none_or(|row| Place::of_sample(&row).holds(slot)))
    }

    /// A slot a move left empty: a value held there as a DUPLICATE_CONFLICT
    /// with the one that left is no longer in conflict. The oldest such
    /// conflict is closed (`auto`) and its value checked again there.
    fn unblock(&self, tx: &mut Tx<'_>, slot: &Slot, report: &mut SampleMove) -> Result<(), StoreError> {
        if tx.current_result(slot)?.is_some() {
            return Ok(());
        }
        let held = tx.open_mismatches(slot, Some(MismatchCode::DuplicateConflict))?;
        for m in held.iter().filter(|m| m.holds) {
            let Some(id) = m.observation_id else { continue };
            if !self.still_belongs(tx, id, slot)? {
                continue;
            }
            let (Some(observation), Some(source)) = (tx.observation(id)?, tx.observation_source(id)?) else {
                continue;
            };
            let why = format!("the value it conflicted with left {} ({})", slot_words(slot), self.because);
            tx.insert_resolution(&NewResolution::auto(m.id, why.clone()))?;
            report.unblocked.push(m.id);
            let out = TakenOut {
                observation,
                source,
                to: Place::of_slot(slot),
                participant_changed: false,
                minute_changed: false,
                placed: format!("{why}: its value takes the slot (mismatch {})", m.id),
                after: why,
            };
            return self.check_at(tx, &out, report);
        }
        Ok(())
    }

    /// Every check again at `to`, as after `resolve --assign`, but with the
    /// patient ID compared; then the slot decision and the flags.
    fn check_at(&self, tx: &mut Tx<'_>, out: &TakenOut, report: &mut SampleMove) -> Result<(), StoreError> {
        let TakenOut { observation: o, source, to, participant_changed, minute_changed, after, placed } = out;
        let (participant_changed, minute_changed) = (*participant_changed, *minute_changed);
        let config = self.config;
        let sample = o.sample_id.clone().unwrap_or_default();
        let mut result = reported_result(o);
        let patient = self.patients.of(tx, source, o)?;
        let mut unreadable_conflict = None;
        match patient {
            PatientId::Absent => {}
            PatientId::Sent(ids) => result.patient_ids = ids,
            PatientId::Unreadable if participant_changed => {
                unreadable_conflict = Some(Finding {
                    code: MismatchCode::ParticipantConflict,
                    detail: format!(
                        "the message's patient ID could not be read back from the stored copy to compare it with \
                         participant {} of sample {sample}; check the sample before accepting it",
                        to.participant
                    ),
                });
            }
            // The participant is the same: the comparison at ingest stands.
            PatientId::Unreadable => {}
        }
        let instrument = resolve_instrument(config, source.link_instrument.as_deref(), o.sender.as_deref());
        let Ok(minute) = i32::try_from(to.minute) else { return Ok(()) };
        let target = SampleSlot {
            participant: to.participant.clone(),
            visit: to.visit.clone(),
            minute,
            source: MatchSource::Manifest,
        };
        let a = with_study(tx, |study| {
            assess_in_slot(config, instrument, o.sender.as_deref(), &result, target.clone(), study)
        })?;
        let analyte = a.analyte.clone().or_else(|| o.matched.analyte.clone());
        let accepted = tx.accepted_codes_of_observation(o.id)?;
        // A problem a data manager accepted stays accepted, unless it is about
        // the part of the place that changed.
        let still_accepted = |code: MismatchCode| {
            accepted.contains(&code)
                && !(code == MismatchCode::ParticipantConflict && participant_changed)
                && !(code == MismatchCode::UnscheduledTimepoint && minute_changed)
        };
        let hold = unreadable_conflict
            .into_iter()
            .chain(a.hold.iter().cloned())
            .chain(a.further_holds.iter().cloned())
            .find(|f| !still_accepted(f.code));
        let raise = |tx: &mut Tx<'_>, code: MismatchCode, holds: bool, detail: String| {
            tx.insert_mismatch(&NewMismatch {
                code,
                holds,
                observation_id: Some(o.id),
                message_id: Some(o.message_id),
                receipt_id: source.receipt_id,
                participant: Some(to.participant.clone()),
                visit: Some(to.visit.clone()),
                minute: Some(to.minute),
                analyte: analyte.clone(),
                detail,
            })
        };
        if let Some(finding) = hold {
            let id = raise(tx, finding.code, true, format!("{} ({after})", finding.detail))?;
            report.raised.push((id, finding.code));
            return Ok(());
        }
        let (Some(analyte_name), Some(value), Some(unit)) = (analyte.clone(), a.value, a.unit.clone()) else {
            return Ok(());
        };
        let slot = Slot::new(&to.participant, &to.visit, to.minute, &analyte_name);
        if let Some(current) = tx.current_result(&slot)? {
            if same_value(current.value, current.comparator, Some(value), a.comparator) {
                report.duplicates += 1;
                return Ok(());
            }
            let detail = format!(
                "{} differs from {} already accepted for {} ({after}); the value already there stands until resolved",
                value_words(Some(value), a.comparator, Some(&unit)),
                value_words(Some(current.value), current.comparator, Some(&current.unit)),
                slot_words(&slot),
            );
            let id = raise(tx, MismatchCode::DuplicateConflict, true, detail)?;
            report.raised.push((id, MismatchCode::DuplicateConflict));
            return Ok(());
        }
        tx.insert_result(&NewResult {
            observation_id: o.id,
            slot: slot.clone(),
            value,
            unit,
            comparator: a.comparator,
            blq: a.blq,
            reason: placed.clone(),
        })?;
        self.reread_offset(tx, o, &slot, after)?;
        let Some(instrument) = instrument else { return Ok(()) };
        let flags =
            with_study(tx, |study| flag_checks(config, instrument, &analyte_name, &target, &result, a.value, study))?;
        let open_here = tx.open_mismatches(&slot, None)?;
        for finding in flags {
            if open_here.iter().any(|m| m.observation_id == Some(o.id) && m.code == finding.code) {
                continue;
            }
            let id = raise(tx, finding.code, false, format!("{} ({after})", finding.detail))?;
            report.raised.push((id, finding.code));
        }
        Ok(())
    }

    /// A visit's meal start is now `new.meal_start` (it was `old`): check the
    /// window of its accepted results again.
    pub fn meal_start_changed(
        &self,
        tx: &mut Tx<'_>,
        old: Option<LocalTime>,
        new: &Visit,
    ) -> Result<MealStartChange, StoreError> {
        let mut report = MealStartChange {
            participant: new.participant.clone(),
            visit: new.visit.clone(),
            old,
            new: new.meal_start,
            rechecked: 0,
            closed: Vec::new(),
            raised: Vec::new(),
            replaced: Vec::new(),
        };
        let change = match new.meal_start {
            Some(_) => format!(
                "the meal start of {}/{} changed from {} to {} ({})",
                new.participant,
                new.visit,
                local_words(old),
                local_words(new.meal_start),
                self.because
            ),
            None => format!(
                "the meal start of {}/{} was cleared ({}): no window can be checked",
                new.participant, new.visit, self.because
            ),
        };
        // The visit's accepted values, then any value that still has an open
        // window flag though it is no longer current (a correction replaced it).
        let mut values: Vec<(ObservationId, Slot, Option<f64>, bool)> = tx
            .current_results_of_visit(&new.participant, &new.visit)?
            .into_iter()
            .map(|r| (r.observation_id, r.slot, Some(r.value), true))
            .collect();
        for m in tx.open_mismatches_of_visit(&new.participant, &new.visit, MismatchCode::OutOfWindow)? {
            let (Some(id), Some(slot)) = (m.observation_id, m.slot()) else { continue };
            if !values.iter().any(|(o, s, _, _)| *o == id && *s == slot) {
                values.push((id, slot, None, false));
            }
        }
        for (observation_id, slot, value, is_current) in values {
            if is_current {
                report.rechecked += 1;
            }
            let Some(o) = tx.observation(observation_id)? else { continue };
            let Some(source) = tx.observation_source(o.id)? else { continue };
            if is_current {
                self.reread_offset(tx, &o, &slot, &change)?;
            }
            let value = value.or(o.matched.value);
            let finding = self.window_finding(tx, &o, &source, &slot, value)?;
            let open: Vec<MismatchRow> = tx
                .open_mismatches(&slot, Some(MismatchCode::OutOfWindow))?
                .into_iter()
                .filter(|m| m.observation_id == Some(o.id))
                .collect();
            let raise =
                |tx: &mut Tx<'_>, detail: String| tx.insert_mismatch(&out_of_window(&o, &source, &slot, detail));
            // Nothing new is produced: the value stands.
            let close = |tx: &mut Tx<'_>, id: MismatchId, reason: String| {
                tx.insert_resolution(&NewResolution::auto(id, reason))
            };
            match finding {
                None => {
                    let why = match new.meal_start {
                        Some(_) => format!("{change}: the collection time is within the window now"),
                        None => change.clone(),
                    };
                    for m in &open {
                        close(tx, m.id, why.clone())?;
                        report.closed.push(m.id);
                    }
                }
                Some(_) if !is_current => {}
                Some(finding) if open.is_empty() => {
                    // A data manager who accepted this value's window once is not asked again.
                    if tx.accepted_codes_of_observation(o.id)?.contains(&MismatchCode::OutOfWindow) {
                        continue;
                    }
                    let id = raise(tx, format!("{} ({change})", finding.detail))?;
                    report.raised.push(id);
                }
                Some(finding) => {
                    for m in open.iter().filter(|m| !m.detail.starts_with(&finding.detail)) {
                        let id = raise(tx, format!("{} ({change})", finding.detail))?;
                        close(tx, m.id, format!("{change}: checked again as mismatch {id}"))?;
                        report.replaced.push((m.id, id));
                    }
                }
            }
        }
        Ok(report)
    }

    /// Where the manifest puts observation `id`'s sample now, when that is
    /// not where its value stands (or is held) and no data manager assigned
    /// it: a value a reopen put back, or holds again, at a slot its sample
    /// has since moved away from. The
    /// sample's results then move as on import (see [`Self::samples_moved`]).
    pub fn follow_manifest(&self, tx: &mut Tx<'_>, id: ObservationId) -> Result<Option<SampleMove>, StoreError> {
        let Some(o) = tx.observation(id)? else { return Ok(None) };
        let Some(row) = manifest_row(tx, &o)? else { return Ok(None) };
        let to = Place::of_sample(&row);
        let held_elsewhere = tx
            .open_mismatches_of_observation(id)?
            .iter()
            .any(|m| m.holds && Place::of_mismatch(m).is_some_and(|p| p != to));
        let elsewhere = held_elsewhere || tx.current_results_of_observation(id)?.iter().any(|r| !to.holds(&r.slot));
        if !elsewhere || tx.assignment_of_observation(id)?.is_some() {
            return Ok(None);
        }
        Ok(self.samples_moved(tx, &[(None, row)])?.pop())
    }

    /// Check an open OUT_OF_WINDOW flag again with the meal start as it is
    /// now (a reopened flag may have been raised against an older one):
    /// closed (`auto`) when it no longer applies, replaced when its numbers
    /// changed. What became of it: `None` when it stands as it is.
    pub fn recheck_window(&self, tx: &mut Tx<'_>, m: &MismatchRow) -> Result<Option<String>, StoreError> {
        let (Some(id), Some(slot)) = (m.observation_id, m.slot()) else { return Ok(None) };
        if m.code != MismatchCode::OutOfWindow || m.resolution.is_some() {
            return Ok(None);
        }
        let (Some(o), Some(source)) = (tx.observation(id)?, tx.observation_source(id)?) else { return Ok(None) };
        // Nothing to check it with: it stands as it was raised.
        let instrument = resolve_instrument(self.config, source.link_instrument.as_deref(), o.sender.as_deref());
        if instrument.is_none() || o.collected_at.is_none() {
            return Ok(None);
        }
        let value = tx.current_result(&slot)?.filter(|r| r.observation_id == id).map(|r| r.value);
        let finding = self.window_finding(tx, &o, &source, &slot, value.or(o.matched.value))?;
        let close = |tx: &mut Tx<'_>, reason: String| tx.insert_resolution(&NewResolution::auto(m.id, reason));
        match finding {
            None => {
                close(tx, format!("checked again ({}): the collection time is within the window", self.because))?;
                Ok(Some(format!("mismatch {} no longer applies and is closed", m.id)))
            }
            Some(f) if m.detail.starts_with(&f.detail) => Ok(None),
            Some(f) => {
                let new =
                    tx.insert_mismatch(&out_of_window(&o, &source, &slot, format!("{} ({})", f.detail, self.because)))?;
                close(tx, format!("checked again as mismatch {new} ({})", self.because))?;
                Ok(Some(format!("mismatch {} is replaced by mismatch {new} (new times)", m.id)))
            }
        }
    }

    /// Read a repeated local collection time of `o` again at `slot` (its
    /// meal start or minute changed) and record the offset when the choice
    /// differs from the one in force.
    fn reread_offset(&self, tx: &mut Tx<'_>, o: &ObservationRow, slot: &Slot, why: &str) -> Result<(), StoreError> {
        let Some(at) = sample_slot(slot, MatchSource::Manifest) else { return Ok(()) };
        let result = reported_result(o);
        let Some(offset) = with_study(tx, |study| chosen_offset(self.config, &at, &result, study))? else {
            return Ok(());
        };
        let offset = offset_text(offset);
        if tx.collected_offset(o.id)?.as_deref() != Some(offset.as_str()) {
            tx.record_collected_offset(o.id, &offset, why)?;
        }
        Ok(())
    }

    /// OUT_OF_WINDOW for one accepted value at its slot, with the meal start
    /// as it is now in this transaction.
    fn window_finding(
        &self,
        tx: &Tx<'_>,
        o: &ObservationRow,
        source: &ObservationSource,
        slot: &Slot,
        value: Option<f64>,
    ) -> Result<Option<Finding>, StoreError> {
        let config = self.config;
        let instrument: Option<&Instrument> =
            resolve_instrument(config, source.link_instrument.as_deref(), o.sender.as_deref());
        let (Some(instrument), Some(at)) = (instrument, sample_slot(slot, MatchSource::Manifest)) else {
            return Ok(None);
        };
        let result: LabResult = reported_result(o);
        let flags = with_study(tx, |study| flag_checks(config, instrument, &slot.analyte, &at, &result, value, study))?;
        Ok(flags.into_iter().find(|f| f.code == MismatchCode::OutOfWindow))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(participant: &str, minute: i64) -> Place {
        Place { participant: participant.into(), visit: "V0".into(), minute }
    }

    fn moved(n: usize) -> SampleMove {
        SampleMove { moved: n, ..SampleMove::nothing_yet("S-30", Some(place("U01", 30)), place("U02", 30)) }
    }

    #[test]
    fn a_move_is_said_in_one_line_with_plurals_right() {
        assert_eq!(moved(0).to_string(), "S-30 moved U01/V0/30 → U02/V0/30 (no results to move)");
        assert_eq!(moved(1).to_string(), "S-30 moved U01/V0/30 → U02/V0/30 (1 result moved)");
        let mut m = moved(2);
        m.raised.push((MismatchId(17), MismatchCode::DuplicateConflict));
        assert_eq!(
            m.to_string(),
            "S-30 moved U01/V0/30 → U02/V0/30 (2 results moved; 1 new mismatch DUPLICATE_CONFLICT #17)"
        );
        m.raised.push((MismatchId(18), MismatchCode::OutOfWindow));
        m.closed.extend([MismatchId(3), MismatchId(4)]);
        m.from = None;
        assert_eq!(
            m.to_string(),
            "S-30 placed at U02/V0/30 (2 results moved; 2 new mismatches DUPLICATE_CONFLICT #17, OUT_OF_WINDOW \
             #18; 2 mismatches closed at the old slot (#3, #4))"
        );
    }

    #[test]
    fn what_a_move_gave_back_unblocked_or_found_held_is_said() {
        let mut m = moved(1);
        m.restored.push(Slot::new("U01", "V0", 30, "c_peptide"));
        m.unblocked.push(MismatchId(9));
        m.unknown.extend([MismatchId(12), MismatchId(13)]);
        assert_eq!(
            m.to_string(),
            "S-30 moved U01/V0/30 → U02/V0/30 (1 result moved; U01/V0/30/c_peptide has the value back that it had \
             replaced; 1 DUPLICATE_CONFLICT closed: the value it conflicted with left (#9); 2 results held as \
             UNKNOWN_SAMPLE now match S-30: resolve #12, #13 --accept)"
        );
    }

    #[test]
    fn a_meal_start_change_is_said_with_old_and_new_time() {
        let mut c = MealStartChange {
            participant: "U01".into(),
            visit: "V24".into(),
            old: Some("2026-03-02T08:30".parse().unwrap()),
            new: Some("2026-03-02T09:00:30".parse().unwrap()),
            rechecked: 14,
            closed: vec![MismatchId(1)],
            raised: vec![MismatchId(2), MismatchId(3)],
            replaced: Vec::new(),
        };
        assert_eq!(
            c.to_string(),
            "U01/V24 meal_start 2026-03-02T08:30 → 2026-03-02T09:00:30: 14 results re-checked, 1 OUT_OF_WINDOW \
             flag closed, 2 raised"
        );
        c.new = None;
        c.rechecked = 1;
        c.closed.push(MismatchId(4));
        c.raised.clear();
        c.replaced.push((MismatchId(5), MismatchId(6)));
        assert_eq!(
            c.to_string(),
            "U01/V24 meal_start 2026-03-02T08:30 → (none): 1 result re-checked, 2 OUT_OF_WINDOW flags closed, 0 \
             raised, 1 with new times (#5 → #6) (no meal start: no window can be checked)"
        );
    }
}
