//! What a reviewed value is now, from the report's one snapshot: where each
//! observation's value is current, which open mismatches hold it, and which
//! slots are marked not done. A decision is history; a later import, reject
//! or rerun may have moved, withdrawn or replaced the value since, and the
//! reports say what is true now ("moved to U02/V0/30, held there for review
//! (#9)"), not what the decision left.
//!
//! Pure: built from rows the report command has already read.

use std::collections::BTreeMap;

use crate::report::wording::current_state;
use crate::store::{MismatchId, MismatchReport, MismatchRow, ObservationId, ResolutionAction, ResultRow, Slot};

/// One stored mismatch, as far as "now" needs it.
#[derive(Debug, Clone)]
struct Brief {
    id: MismatchId,
    slot: Option<Slot>,
    holds: bool,
    /// The action in force (`None`: open).
    action: Option<ResolutionAction>,
}

/// Where values are now, and the not-done slots of each visit.
#[derive(Debug, Clone, Default)]
pub struct Now {
    /// False for an empty `Now` (a caller without a snapshot): the decision
    /// in force is then all the reports can say.
    known: bool,
    current: BTreeMap<ObservationId, Vec<Slot>>,
    at_slot: BTreeMap<Slot, ObservationId>,
    mismatches: BTreeMap<ObservationId, Vec<Brief>>,
    not_done: BTreeMap<(String, String), usize>,
}

/// `U02/V0/30`: a slot without its analyte, as `--assign` takes it.
fn place(slot: &Slot) -> String {
    format!("{}/{}/{}", slot.participant, slot.visit, slot.minute)
}

impl Now {
    /// From the current results, every stored mismatch the report read (all
    /// with `--all`, the open ones otherwise: enough to find what holds a
    /// value back) and the slots marked not done with nothing received.
    /// [`Now::value_now`] answers for the rows of `stored`: only the current
    /// results a decided one among them can ask about are kept (its
    /// observation's, and the one in its own slot), not the whole study's.
    pub fn new<'a>(
        results: &[ResultRow],
        stored: &[MismatchReport],
        not_done_never_received: impl IntoIterator<Item = &'a Slot>,
    ) -> Now {
        let decided = stored.iter().map(|s| &s.mismatch).filter(|m| m.resolution.is_some());
        let observations: std::collections::BTreeSet<ObservationId> =
            decided.clone().filter_map(|m| m.observation_id).collect();
        let slots: std::collections::BTreeSet<Slot> = decided.filter_map(MismatchRow::slot).collect();
        Now::of(
            results.iter().filter(|r| observations.contains(&r.observation_id) || slots.contains(&r.slot)),
            stored,
            not_done_never_received,
        )
    }

    /// [`Now::new`] from the given current results.
    fn of<'a, 'r>(
        results: impl Iterator<Item = &'r ResultRow>,
        stored: &[MismatchReport],
        not_done_never_received: impl IntoIterator<Item = &'a Slot>,
    ) -> Now {
        let mut now = Now { known: true, ..Now::default() };
        for r in results {
            now.current.entry(r.observation_id).or_default().push(r.slot.clone());
            now.at_slot.insert(r.slot.clone(), r.observation_id);
        }
        for s in stored {
            let m = &s.mismatch;
            let Some(o) = m.observation_id else { continue };
            let brief =
                Brief { id: m.id, slot: m.slot(), holds: m.holds, action: m.resolution.as_ref().map(|r| r.action) };
            now.mismatches.entry(o).or_default().push(brief);
        }
        for slot in not_done_never_received {
            *now.not_done.entry((slot.participant.clone(), slot.visit.clone())).or_default() += 1;
        }
        now
    }

    /// Slots of this visit marked not done, nothing ever received for them.
    pub fn not_done_in(&self, participant: &str, visit: &str) -> usize {
        self.not_done.get(&(participant.to_owned(), visit.to_owned())).copied().unwrap_or(0)
    }

    /// Open mismatches other than `except` on observation `o` that hold
    /// (`holds`) or flag its value.
    fn open(&self, o: ObservationId, except: MismatchId, holds: bool) -> impl Iterator<Item = &Brief> {
        self.mismatches
            .get(&o)
            .into_iter()
            .flatten()
            .filter(move |b| b.id != except && b.action.is_none() && b.holds == holds)
    }

    /// What `m`'s value is now. An open row is as ingest left it (held
    /// back, or accepted and flagged); a decided one says where the value is
    /// now, whoever moved it.
    pub fn value_now(&self, m: &MismatchRow) -> String {
        let (Some(decision), Some(o), true) = (&m.resolution, m.observation_id, self.known) else {
            return current_state(m);
        };
        let own = m.slot();
        let flags = |at: &Slot| -> String {
            let ids: Vec<String> = self
                .open(o, m.id, false)
                .filter(|b| b.slot.as_ref() == Some(at))
                .map(|b| format!("#{}", b.id))
                .collect();
            if ids.is_empty() { String::new() } else { format!(", flagged ({})", ids.join(", ")) }
        };
        let slots = self.current.get(&o).map(Vec::as_slice).unwrap_or_default();
        if let Some(first) = slots.first() {
            if let Some(at) = slots.iter().find(|s| Some(*s) == own.as_ref()) {
                let words = match (decision.action, m.holds) {
                    (ResolutionAction::Auto, true) => "accepted (closed by labfeed)",
                    (ResolutionAction::Auto, false) => "accepted (flag closed by labfeed)",
                    (_, true) => "accepted",
                    (_, false) => "accepted (flag closed)",
                };
                return format!("{words}{}", flags(at));
            }
            let at = slots.iter().find(|s| decision_target(decision) == Some(place(s))).unwrap_or(first);
            let words = match (decision.action, &own) {
                (ResolutionAction::Assign, _) if decision_target(decision) == Some(place(at)) => {
                    format!("moved to {}", place(at))
                }
                (ResolutionAction::Accept | ResolutionAction::Auto, None) => format!("accepted at {}", place(at)),
                _ => format!("moved to {} by a later change", place(at)),
            };
            return format!("{words}{}", flags(at));
        }
        if let Some(held) = self.open(o, m.id, true).next() {
            return match &held.slot {
                Some(at) if Some(at) != own.as_ref() => {
                    format!("moved to {}, held there for review (#{})", place(at), held.id)
                }
                _ => format!("held for review again (#{})", held.id),
            };
        }
        if let Some(other) = own.as_ref().and_then(|s| self.at_slot.get(s)) {
            let by = self.mismatches.get(other).and_then(|b| b.first()).map(|b| format!(" (#{})", b.id));
            return format!("replaced at its slot by a later value{}", by.unwrap_or_default());
        }
        match (decision.action, m.holds) {
            (ResolutionAction::Reject, true) => "rejected: kept out".to_owned(),
            (ResolutionAction::Reject, false) => "rejected: withdrawn from its slot".to_owned(),
            (ResolutionAction::Assign, _) => match decision_target(decision) {
                Some(to) => format!("moved to {to}, since withdrawn from there"),
                None => "moved, since withdrawn".to_owned(),
            },
            (ResolutionAction::Auto, true) => "kept out (closed by labfeed)".to_owned(),
            _ => {
                let rejected = self
                    .mismatches
                    .get(&o)
                    .into_iter()
                    .flatten()
                    .find(|b| b.id != m.id && b.action == Some(ResolutionAction::Reject));
                match rejected {
                    Some(b) => format!("withdrawn from its slot (rejected with #{})", b.id),
                    None => "withdrawn from its slot".to_owned(),
                }
            }
        }
    }
}

/// `U02/V0/30` of an assignment.
fn decision_target(r: &crate::store::ResolutionRow) -> Option<String> {
    match (&r.participant, &r.visit, r.minute) {
        (Some(p), Some(v), Some(n)) => Some(format!("{p}/{v}/{n}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::test_rows::{accepted, decided};
    use crate::store::{MismatchCode, Provenance, ReceiptId};

    fn at() -> jiff::Timestamp {
        "2026-03-02T09:00:00Z".parse().unwrap()
    }

    fn mismatch(id: i64, code: MismatchCode, slot: &Slot, action: Option<ResolutionAction>) -> MismatchReport {
        MismatchReport {
            mismatch: MismatchRow {
                id: MismatchId(id),
                code,
                holds: code.holds_by_default(),
                observation_id: Some(ObservationId(7)),
                message_id: None,
                receipt_id: ReceiptId(1),
                participant: Some(slot.participant.clone()),
                visit: Some(slot.visit.clone()),
                minute: Some(slot.minute),
                analyte: Some(slot.analyte.clone()),
                detail: String::new(),
                created_at: at(),
                resolution: action.map(|action| decided(id, action, "", at())),
            },
            provenance: Provenance::default(),
        }
    }

    fn result(slot: &Slot, observation: i64) -> ResultRow {
        accepted(slot.clone(), observation, 0.5, "", at())
    }

    #[test]
    fn a_decided_row_says_where_its_value_is_now() {
        let u01 = Slot::new("U01", "V0", 30, "c_peptide");
        let u02 = Slot::new("U02", "V0", 30, "c_peptide");
        let flag = mismatch(1, MismatchCode::OutOfWindow, &u01, Some(ResolutionAction::Accept));
        let held = mismatch(2, MismatchCode::ParticipantConflict, &u02, None);
        let stored = [flag.clone(), held];
        // Accepted, then moved by an import and held at U02.
        let now = Now::new(&[], &stored, []);
        assert_eq!(now.value_now(&flag.mismatch), "moved to U02/V0/30, held there for review (#2)");
        // Accepted and still there.
        let now = Now::new(&[result(&u01, 7)], &stored[..1], []);
        assert_eq!(now.value_now(&flag.mismatch), "accepted (flag closed)");
        // Moved and accepted at U02.
        let now = Now::new(&[result(&u02, 7)], &stored[..1], []);
        assert_eq!(now.value_now(&flag.mismatch), "moved to U02/V0/30 by a later change");
        // Replaced by a rerun, or withdrawn.
        let now = Now::new(&[result(&u01, 8)], &stored[..1], []);
        assert_eq!(now.value_now(&flag.mismatch), "replaced at its slot by a later value");
        let now = Now::new(&[], &stored[..1], []);
        assert_eq!(now.value_now(&flag.mismatch), "withdrawn from its slot");
        // Without a snapshot: the decision in force.
        assert_eq!(Now::default().value_now(&flag.mismatch), "accepted (flag closed)");
        // A flag closed along with a rejection of the same value.
        let other = mismatch(3, MismatchCode::PretestGlucose, &u01, Some(ResolutionAction::Reject));
        let closed = mismatch(4, MismatchCode::OutOfWindow, &u01, Some(ResolutionAction::Auto));
        let now = Now::new(&[], &[other, closed.clone()], []);
        assert_eq!(now.value_now(&closed.mismatch), "withdrawn from its slot (rejected with #3)");
    }

    #[test]
    fn keeping_only_the_results_decided_rows_ask_about_says_the_same_as_keeping_all() {
        let slots: Vec<Slot> =
            ["U01", "U02", "U03"].iter().flat_map(|p| [0, 30].map(|m| Slot::new(*p, "V0", m, "c_peptide"))).collect();
        let actions = [
            None,
            Some(ResolutionAction::Accept),
            Some(ResolutionAction::Reject),
            Some(ResolutionAction::Assign),
            Some(ResolutionAction::Auto),
            Some(ResolutionAction::Reopen),
        ];
        let codes = [MismatchCode::OutOfWindow, MismatchCode::ParticipantConflict, MismatchCode::PretestGlucose];
        let mut checked = 0;
        // Every mix of a few rows and results over a handful of slots and observations.
        for seed in 0u64..3000 {
            let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut next = |n: usize| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % n as u64) as usize
            };
            let stored: Vec<MismatchReport> = (0..1 + next(4))
                .map(|i| {
                    let mut m = mismatch(i as i64 + 1, codes[next(3)], &slots[next(6)], actions[next(6)]);
                    m.mismatch.observation_id = Some(ObservationId(next(4) as i64));
                    m
                })
                .collect();
            let results: Vec<ResultRow> = (0..next(5)).map(|_| result(&slots[next(6)], next(4) as i64)).collect();
            let kept = Now::new(&results, &stored, []);
            let whole = Now::of(results.iter(), &stored, []);
            for m in &stored {
                assert_eq!(kept.value_now(&m.mismatch), whole.value_now(&m.mismatch), "seed {seed}");
                checked += 1;
            }
        }
        assert!(checked > 5000);
    }
}
