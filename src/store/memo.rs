//! What one write transaction has already read, so that it asks the
//! database once: the study data a result is matched against (participants,
//! visits, samples, locks) and the state of the slots it lands in.
//!
//! A write transaction holds the write lock (SQLite's `BEGIN IMMEDIATE`,
//! PostgreSQL's advisory lock), so nothing but the transaction itself
//! changes these rows while it runs. Its own writes keep the memo true:
//! a write to a slot forgets that slot, and any other write to a table a
//! part of the memo comes from forgets that part ([`Memo::wrote`]).
//!
//! Slots are read a visit at a time: an upload carries a visit's samples,
//! and a backlog comes visit by visit, so one query serves every result of
//! the visit instead of three per result. On PostgreSQL each query is a
//! round trip; this is most of what makes a backlog fast there.

use std::collections::{HashMap, HashSet};

use crate::model::{ResultRow, Slot, Visit};
use crate::store::lock::Lock;
use crate::store::types::{MismatchRow, RawId, Sample};

/// A visit's key: participant code and visit name.
type VisitKey = (String, String);

#[derive(Debug, Default)]
pub(crate) struct Memo {
    participants: HashMap<String, bool>,
    visits: HashMap<VisitKey, Option<Visit>>,
    samples: HashMap<String, Option<Sample>>,
    locks: Option<Vec<Lock>>,
    /// Visits whose slots were read; a slot of one that is absent from
    /// `history` (or `open`) has no rows there.
    slots_read: HashSet<VisitKey>,
    history: HashMap<Slot, Vec<ResultRow>>,
    open: HashMap<Slot, Vec<MismatchRow>>,
    /// Slots whose versions (or open mismatches) were written since: read
    /// from the database again.
    forgotten_history: HashSet<Slot>,
    forgotten_open: HashSet<Slot>,
    /// Contents by the SHA-256 of their bytes (`None`: not stored), with
    /// how many receipts each has.
    contents: HashMap<String, Option<RawId>>,
    receipts: HashMap<RawId, i64>,
    /// The slot the next write to `result` or `mismatch` is about, if it is
    /// about one (see [`Memo::about`]); unsaid, it may change any.
    about: Option<Option<Slot>>,
}

/// What the memo knows of a slot.
pub(crate) enum Known<T> {
    Yes(T),
    /// Not known: its visit was never read, or the slot was written since.
    No {
        visit_read: bool,
    },
}

impl Memo {
    pub(crate) fn clear(&mut self) {
        *self = Memo::default();
    }

    pub(crate) fn participant(&self, code: &str) -> Option<bool> {
        self.participants.get(code).copied()
    }

    pub(crate) fn set_participant(&mut self, code: &str, exists: bool) {
        self.participants.insert(code.to_owned(), exists);
    }

    pub(crate) fn visit(&self, participant: &str, visit: &str) -> Option<Option<Visit>> {
        self.visits.get(&(participant.to_owned(), visit.to_owned())).cloned()
    }

    pub(crate) fn set_visit(&mut self, participant: &str, visit: &str, found: Option<Visit>) {
        self.visits.insert((participant.to_owned(), visit.to_owned()), found);
    }

    pub(crate) fn sample(&self, sample_id: &str) -> Option<Option<Sample>> {
        self.samples.get(sample_id).cloned()
    }

    pub(crate) fn set_sample(&mut self, sample_id: &str, found: Option<Sample>) {
        self.samples.insert(sample_id.to_owned(), found);
    }

    pub(crate) fn content(&self, sha256: &str) -> Option<Option<RawId>> {
        self.contents.get(sha256).copied()
    }

    /// A content looked up (`id`: stored, `None`: not), or just stored.
    pub(crate) fn set_content(&mut self, sha256: &str, id: Option<RawId>) {
        self.contents.insert(sha256.to_owned(), id);
    }

    pub(crate) fn receipts(&self, raw: RawId) -> Option<i64> {
        self.receipts.get(&raw).copied()
    }

    pub(crate) fn set_receipts(&mut self, raw: RawId, count: i64) {
        self.receipts.insert(raw, count);
    }

    pub(crate) fn locks(&self) -> Option<Vec<Lock>> {
        self.locks.clone()
    }

    pub(crate) fn set_locks(&mut self, locks: Vec<Lock>) {
        self.locks = Some(locks);
    }

    /// A slot's versions, oldest first.
    pub(crate) fn history(&self, slot: &Slot) -> Known<Vec<ResultRow>> {
        self.known(slot, &self.history, &self.forgotten_history)
    }

    /// A slot's open mismatches, oldest first.
    pub(crate) fn open(&self, slot: &Slot) -> Known<Vec<MismatchRow>> {
        self.known(slot, &self.open, &self.forgotten_open)
    }

    fn known<T: Clone>(&self, slot: &Slot, rows: &HashMap<Slot, Vec<T>>, forgotten: &HashSet<Slot>) -> Known<Vec<T>> {
        let visit_read = self.slots_read.contains(&(slot.participant.clone(), slot.visit.clone()));
        if !visit_read || forgotten.contains(slot) {
            return Known::No { visit_read };
        }
        Known::Yes(rows.get(slot).cloned().unwrap_or_default())
    }

    /// Whether a visit's slots have been read into the memo.
    pub(crate) fn visit_slots_read(&self, participant: &str, visit: &str) -> bool {
        self.slots_read.contains(&(participant.to_owned(), visit.to_owned()))
    }

    /// Record a visit's slots as read: every version and every open mismatch
    /// with a slot in it.
    pub(crate) fn set_visit_slots(
        &mut self,
        participant: &str,
        visit: &str,
        history: Vec<ResultRow>,
        open: Vec<(Slot, MismatchRow)>,
    ) {
        if !self.slots_read.insert((participant.to_owned(), visit.to_owned())) {
            return; // Already known: its rows again would count twice.
        }
        for row in history {
            if !self.forgotten_history.contains(&row.slot) {
                self.history.entry(row.slot.clone()).or_default().push(row);
            }
        }
        for (slot, row) in open {
            if !self.forgotten_open.contains(&slot) {
                self.open.entry(slot).or_default().push(row);
            }
        }
    }

    /// A mismatch just written, open, about `slot`: known with the rest of
    /// its slot's (or read with them later).
    pub(crate) fn opened(&mut self, slot: Slot, row: MismatchRow) {
        let visit_read = self.slots_read.contains(&(slot.participant.clone(), slot.visit.clone()));
        if visit_read && !self.forgotten_open.contains(&slot) {
            self.open.entry(slot).or_default().push(row);
        }
    }

    /// The next write to `result` or `mismatch` changes `slot` alone (or,
    /// with `None`, a row of no slot: a mismatch of a whole message or file).
    pub(crate) fn about(&mut self, slot: Option<Slot>) {
        self.about = Some(slot);
    }

    /// A write to `table` (an INSERT or UPDATE): forget what it may change.
    pub(crate) fn wrote(&mut self, table: &str) {
        let about = self.about.take();
        match table {
            "participant" => self.participants.clear(),
            "visit" => self.visits.clear(),
            "sample" => self.samples.clear(),
            // Kept by the inserts themselves (see `Tx::insert_raw`); a row
            // from elsewhere is read again.
            "raw" | "receipt" if about.is_none() => {
                self.contents.clear();
                self.receipts.clear();
            }
            "data_lock" => self.locks = None,
            // A version changes a slot's history, a mismatch its open ones.
            "result" => match about {
                Some(Some(slot)) => {
                    self.history.remove(&slot);
                    self.forgotten_history.insert(slot);
                }
                Some(None) => {}
                None => self.forget_slots(),
            },
            "mismatch" => match about {
                Some(Some(slot)) => {
                    self.open.remove(&slot);
                    self.forgotten_open.insert(slot);
                }
                Some(None) => {}
                None => self.forget_slots(),
            },
            // A decision closes or reopens mismatches of any slot.
            "resolution" | "resolution_effect" => self.forget_slots(),
            _ => {}
        }
    }

    fn forget_slots(&mut self) {
        self.slots_read.clear();
        self.history.clear();
        self.open.clear();
        self.forgotten_history.clear();
        self.forgotten_open.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(minute: i64) -> Slot {
        Slot { participant: "P1".into(), visit: "V1".into(), minute, analyte: "c_peptide".into() }
    }

    #[test]
    fn a_slot_written_is_read_again_and_its_visit_neighbours_are_not() {
        let mut memo = Memo::default();
        assert!(matches!(memo.history(&slot(0)), Known::No { visit_read: false }));
        memo.set_visit_slots("P1", "V1", Vec::new(), Vec::new());
        assert!(matches!(memo.history(&slot(0)), Known::Yes(rows) if rows.is_empty()));
        memo.about(Some(slot(0)));
        memo.wrote("result");
        assert!(matches!(memo.history(&slot(0)), Known::No { visit_read: true }));
        assert!(matches!(memo.open(&slot(0)), Known::Yes(_)), "a version leaves the open mismatches as they are");
        assert!(matches!(memo.history(&slot(15)), Known::Yes(_)));
        memo.about(Some(slot(0)));
        memo.wrote("mismatch");
        assert!(matches!(memo.open(&slot(0)), Known::No { visit_read: true }));
    }

    #[test]
    fn a_write_not_said_to_be_about_a_slot_or_a_decision_forgets_every_slot() {
        for (about, table) in [(false, "result"), (false, "mismatch"), (true, "resolution")] {
            let mut memo = Memo::default();
            memo.set_visit_slots("P1", "V1", Vec::new(), Vec::new());
            if about {
                memo.about(Some(slot(0)));
            }
            memo.wrote(table);
            assert!(matches!(memo.history(&slot(15)), Known::No { visit_read: false }), "{table}");
        }
    }

    #[test]
    fn a_mismatch_written_is_known_open_in_its_slot() {
        let mut memo = Memo::default();
        let row = |id: i64| MismatchRow {
            id: crate::store::types::MismatchId(id),
            code: crate::store::types::MismatchCode::OutOfWindow,
            holds: false,
            observation_id: None,
            message_id: None,
            receipt_id: crate::store::types::ReceiptId(1),
            participant: Some("P1".into()),
            visit: Some("V1".into()),
            minute: Some(0),
            analyte: Some("c_peptide".into()),
            detail: String::new(),
            created_at: jiff::Timestamp::UNIX_EPOCH,
            resolution: None,
        };
        memo.opened(slot(0), row(1));
        assert!(matches!(memo.open(&slot(0)), Known::No { visit_read: false }), "its visit is read later");
        memo.set_visit_slots("P1", "V1", Vec::new(), Vec::new());
        memo.opened(slot(0), row(2));
        assert!(matches!(memo.open(&slot(0)), Known::Yes(rows) if rows == [row(2)]));
    }

    #[test]
    fn a_mismatch_of_no_slot_forgets_nothing() {
        let mut memo = Memo::default();
        memo.set_visit_slots("P1", "V1", Vec::new(), Vec::new());
        memo.about(None);
        memo.wrote("mismatch");
        assert!(matches!(memo.history(&slot(0)), Known::Yes(_)));
        // Said once: the next write is not about it.
        memo.wrote("mismatch");
        assert!(matches!(memo.history(&slot(0)), Known::No { visit_read: false }));
    }

    #[test]
    fn study_data_written_is_read_again() {
        let mut memo = Memo::default();
        memo.set_participant("P1", false);
        memo.set_locks(Vec::new());
        memo.wrote("observation");
        assert_eq!(memo.participant("P1"), Some(false));
        memo.wrote("participant");
        memo.wrote("data_lock");
        assert_eq!(memo.participant("P1"), None);
        assert!(memo.locks().is_none());
    }
}
