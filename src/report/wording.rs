//! Words the text and HTML reports share: plurals, times in the study's zone
//! (one zone per line, always named), what a mismatch's value is now, and
//! the one line that stands for a visit with nothing received yet.

use crate::report::format::utc_time;
use crate::report::mismatches::ReviewRow;
use crate::store::{MismatchRow, ResolutionAction};
use crate::study::missing::Absence;

/// `1 file`, `2 files`, `0 files`.
pub fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `2026-03-02 10:15:00 Europe/Stockholm`: a stored (UTC) time in the study
/// zone, with the zone named, so it reads next to local meal and draw times.
/// Falls back to `…Z` (UTC) should the zone not load.
pub fn zoned_time(t: jiff::Timestamp, zone: &str) -> String {
    match jiff::tz::TimeZone::get(zone) {
        Ok(tz) => {
            let whole = jiff::Timestamp::from_second(t.as_second()).unwrap_or(t);
            format!("{} {zone}", tz.to_datetime(whole).strftime("%Y-%m-%d %H:%M:%S"))
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

/// The state of any review row: a missing result says why it is missing.
pub fn row_state(row: &ReviewRow<'_>) -> String {
    match row {
        ReviewRow::Stored(r) => current_state(&r.mismatch),
        ReviewRow::Missing(m) if m.not_done.is_some() => "not done".to_owned(),
        ReviewRow::Missing(m) => match m.absence {
            Absence::NotReceived => "not received".to_owned(),
            Absence::Held(_) => "held for review".to_owned(),
            Absence::Withdrawn => "withdrawn".to_owned(),
        },
    }
}

/// A visit's rows stand for "nothing received yet" when they are exactly its
/// `scheduled` slots, every one missing and nothing held or withdrawn: then
/// the reports say so in one line instead of a row per slot.
pub fn nothing_received(rows: &[&ReviewRow<'_>], scheduled: usize) -> bool {
    scheduled > 0
        && rows.len() == scheduled
        && rows
            .iter()
            .all(|r| matches!(r, ReviewRow::Missing(m) if m.absence == Absence::NotReceived && m.not_done.is_none()))
}

/// `V24: nothing received yet, 14 slots`.
pub fn nothing_received_line(visit: &str, slots: usize) -> String {
    format!("{visit}: nothing received yet, {}", plural(slots, "slot", "slots"))
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
        assert_eq!(nothing_received_line("V24", 14), "V24: nothing received yet, 14 slots");
        assert_eq!(nothing_received_line("V24", 1), "V24: nothing received yet, 1 slot");
    }
}
