//! Words the text and HTML reports share: plurals, times in the study's zone
//! (one zone per line, always named), what a mismatch's value is now, and
//! the one line that stands for a visit with nothing received yet.

use std::collections::BTreeMap;

use crate::report::format::utc_time;
use crate::report::mismatches::ReviewRow;
pub use crate::report::now::Now;
use crate::store::{Account, MismatchRow, ResolutionAction, Role, SYSTEM_ACTOR};
use crate::study::missing::{Absence, MissingResult};

/// The full name and role of each account that may have signed something
/// (accounts are never deleted or renamed, so an old signature finds its own).
#[derive(Debug, Clone, Default)]
pub struct Signers(BTreeMap<String, (String, Role)>);

impl Signers {
    pub fn new(accounts: impl IntoIterator<Item = Account>) -> Signers {
        Signers(accounts.into_iter().map(|a| (a.name, (a.full_name, a.role))).collect())
    }

    /// `dm.anna (Anna Data, data-manager)`, `labfeed (system)`, or the bare
    /// name for an actor that is no account (a name given before accounts).
    pub fn who(&self, name: &str) -> String {
        match self.0.get(name) {
            Some((full_name, role)) => signer_words(name, full_name, role.as_str()),
            None if name == SYSTEM_ACTOR => format!("{SYSTEM_ACTOR} (system)"),
            None => name.to_owned(),
        }
    }

    /// The full name and role of `name` (`labfeed`, `system`), empty if unknown.
    pub fn name_and_role(&self, name: &str) -> (String, String) {
        match self.0.get(name) {
            Some((full_name, role)) => (full_name.clone(), role.as_str().to_owned()),
            None if name == SYSTEM_ACTOR => (SYSTEM_ACTOR.to_owned(), "system".to_owned()),
            None => Default::default(),
        }
    }
}

/// `dm.anna (Anna Data, data-manager)`; without a full name, `dm.anna (data-manager)`.
pub fn signer_words(account: &str, full_name: &str, role: &str) -> String {
    // An account added without a full name has its own name as one.
    let full_name = if full_name.trim() == account { "" } else { full_name };
    match (full_name.trim(), role.trim()) {
        ("", "") => account.to_owned(),
        ("", role) => format!("{account} ({role})"),
        (full_name, "") => format!("{account} ({full_name})"),
        (full_name, role) => format!("{account} ({full_name}, {role})"),
    }
}

/// `1 file`, `2 files`, `0 files`.
pub fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `2026-03-02 10:15:00 Europe/Stockholm`: a stored (UTC) time in the study
/// zone, with the zone named, so it reads next to local meal and draw times.
/// A local time that occurs twice (the autumn hour) names its offset too,
/// `02:30:00 Europe/Stockholm (+01:00)`, or it could be either.
/// Falls back to `…Z` (UTC) should the zone not load.
pub fn zoned_time(t: jiff::Timestamp, zone: &str) -> String {
    match jiff::tz::TimeZone::get(zone) {
        Ok(tz) => {
            let whole = jiff::Timestamp::from_second(t.as_second()).unwrap_or(t);
            let local = tz.to_datetime(whole);
            let text = format!("{} {zone}", local.strftime("%Y-%m-%d %H:%M:%S"));
            match tz.to_ambiguous_timestamp(local).is_ambiguous() {
                true => format!("{text} ({})", crate::local_time::offset_text(tz.to_offset(whole))),
                false => text,
            }
        }
        Err(_) => utc_time(t),
    }
}

/// What a stored mismatch's value is now, from the decision taken on it,
/// not as it was at ingest: a flagged value that was later rejected reads
/// "rejected: withdrawn from its slot".
pub fn current_state(m: &MismatchRow) -> String {
    let Some(r) = &m.resolution else {
        return if m.holds { "held back" } else { "accepted, flagged" }.to_owned();
    };
    match (r.action, m.holds) {
        (ResolutionAction::Accept, true) => "accepted".to_owned(),
        (ResolutionAction::Accept, false) => "accepted (flag closed)".to_owned(),
        (ResolutionAction::Reject, true) => "rejected: kept out".to_owned(),
        (ResolutionAction::Reject, false) => "rejected: withdrawn from its slot".to_owned(),
        (ResolutionAction::Assign, _) => match (&r.participant, &r.visit, r.minute) {
            (Some(p), Some(v), Some(n)) => format!("moved to {p}/{v}/{n}"),
            _ => "moved".to_owned(),
        },
        (ResolutionAction::Auto, true) => "closed by labfeed".to_owned(),
        (ResolutionAction::Auto, false) => "accepted (flag closed by labfeed)".to_owned(),
        (ResolutionAction::NotDone, _) => "not done".to_owned(),
        // Never in force (a reopen leaves the mismatch open); said for completeness.
        (ResolutionAction::Reopen, _) => "open again".to_owned(),
    }
}

/// The state of any review row now: a stored one where its value is now
/// (see [`Now`]), a missing result why it is missing.
pub fn row_state(row: &ReviewRow<'_>, now: &Now) -> String {
    match row {
        ReviewRow::Stored(r) => now.value_now(&r.mismatch),
        ReviewRow::Missing(m) if m.not_done.is_some() => "not done".to_owned(),
        ReviewRow::Missing(m) => match m.absence {
            Absence::NotReceived => "not received".to_owned(),
            Absence::Held(_) => "held for review".to_owned(),
            Absence::Withdrawn => "withdrawn".to_owned(),
        },
    }
}

/// Why a slot is empty, after a `;` (empty when nothing arrived).
pub fn absence_words(absence: Absence) -> String {
    match absence {
        Absence::NotReceived => String::new(),
        Absence::Held(id) => format!("; a result for it is held for review (mismatch {id})"),
        Absence::Withdrawn => "; its value was withdrawn by a data manager".to_owned(),
    }
}

/// A missing result's detail with its meal start written as every time in
/// the text and HTML reports, `(meal start 2026-01-20 08:45 Europe/Stockholm)`,
/// not the stored ISO form (which the CSV keeps and a narrow cell would
/// break at its `T`).
pub fn missing_detail(m: &MissingResult, zone: &str) -> String {
    let stored = format!("(meal start {})", m.meal_start.iso_minutes());
    let shown = format!("(meal start {} {zone})", m.meal_start.display_minutes());
    m.detail.replacen(&stored, &shown, 1)
}

/// The slots of a visit with nothing received: open, and marked not done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NothingReceived {
    pub open: usize,
    pub not_done: usize,
}

/// A visit's rows stand for "nothing received yet" when every one is a
/// missing slot that nothing arrived for (nothing held or withdrawn) and,
/// with the slots marked not done (`not_done`, listed or not), they are all
/// its `scheduled` slots: then the reports say so in one line instead of a
/// row per slot. A not-done mark does not make a visit received.
pub fn nothing_received(rows: &[&ReviewRow<'_>], scheduled: usize, not_done: usize) -> Option<NothingReceived> {
    let never_received = rows.iter().all(|r| matches!(r, ReviewRow::Missing(m) if m.absence == Absence::NotReceived));
    if scheduled == 0 || rows.is_empty() || !never_received {
        return None;
    }
    let open = rows.iter().filter(|r| r.is_open()).count();
    // With `--all` the not-done slots are rows too; without, only counted.
    let not_done = not_done.max(rows.len() - open);
    (open + not_done == scheduled).then_some(NothingReceived { open, not_done })
}

/// `V24: nothing received yet, 14 slots`, or with a slot marked not done
/// `V24: nothing received yet, 13 slots open, 1 not done`.
pub fn nothing_received_line(visit: &str, n: NothingReceived) -> String {
    match (n.open, n.not_done) {
        (open, 0) => format!("{visit}: nothing received yet, {}", plural(open, "slot", "slots")),
        (0, not_done) => format!("{visit}: nothing received, {} not done", plural(not_done, "slot", "slots")),
        (open, not_done) => {
            format!("{visit}: nothing received yet, {} open, {not_done} not done", plural(open, "slot", "slots"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals_and_zones() {
        assert_eq!(plural(1, "file", "files"), "1 file");
        assert_eq!(plural(2, "file", "files"), "2 files");
        assert_eq!(plural(0, "slot", "slots"), "0 slots");
        let t: jiff::Timestamp = "2026-03-02T09:15:00.5Z".parse().unwrap();
        assert_eq!(zoned_time(t, "Europe/Stockholm"), "2026-03-02 10:15:00 Europe/Stockholm");
        assert_eq!(zoned_time(t, "UTC"), "2026-03-02 09:15:00 UTC");
        assert_eq!(zoned_time(t, "Nowhere/Else"), "2026-03-02T09:15:00Z");
        let line = |open, not_done| nothing_received_line("V24", NothingReceived { open, not_done });
        assert_eq!(line(14, 0), "V24: nothing received yet, 14 slots");
        assert_eq!(line(1, 0), "V24: nothing received yet, 1 slot");
        assert_eq!(line(13, 1), "V24: nothing received yet, 13 slots open, 1 not done");
        assert_eq!(line(0, 14), "V24: nothing received, 14 slots not done");
    }

    #[test]
    fn a_time_in_the_repeated_autumn_hour_names_its_offset() {
        let first: jiff::Timestamp = "2026-10-25T00:30:00Z".parse().unwrap();
        let second: jiff::Timestamp = "2026-10-25T01:30:00Z".parse().unwrap();
        assert_eq!(zoned_time(first, "Europe/Stockholm"), "2026-10-25 02:30:00 Europe/Stockholm (+02:00)");
        assert_eq!(zoned_time(second, "Europe/Stockholm"), "2026-10-25 02:30:00 Europe/Stockholm (+01:00)");
        let after: jiff::Timestamp = "2026-10-25T02:30:00Z".parse().unwrap();
        assert_eq!(zoned_time(after, "Europe/Stockholm"), "2026-10-25 03:30:00 Europe/Stockholm");
    }
}
