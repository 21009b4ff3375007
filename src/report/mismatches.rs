//! `report mismatches`: what a data manager has to look at, as CSV or text.
//!
//! The stored mismatches and the computed MISSING_RESULT rows are merged into
//! one list of [`ReviewRow`]s in the store's neutral order (participant code,
//! visit, minute, analyte). A MISSING_RESULT row carries its slot's id (the
//! same while the slot stays empty) and, once marked not done, that mark.
//! Every row's decisions over time (decide, reopen, decide again) come as a
//! [`History`], shown under the row in text and in extra CSV columns.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::ops::Deref;

use crate::report::format::utc_time;
use crate::report::now::Now;
use crate::report::wording::{Signers, absence_words, nothing_received, nothing_received_line, plural, zoned_time};
use crate::store::{Lock, MismatchId, MismatchReport, NotDoneMark, ResolutionAction, ResolutionRow, Slot};
use crate::study::missing::MissingResult;

/// The code of a MISSING_RESULT row.
pub const MISSING_RESULT: &str = "MISSING_RESULT";

/// Every resolution row (decisions, reopens, automatic closings) of each
/// mismatch that has one, oldest first, and who signed them.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub decisions: BTreeMap<MismatchId, Vec<ResolutionRow>>,
    pub signers: Signers,
}

impl History {
    pub fn new() -> History {
        History::default()
    }

    /// Mismatch `id`'s entries, oldest first.
    pub fn get(&self, id: &MismatchId) -> Option<&Vec<ResolutionRow>> {
        self.decisions.get(id)
    }
}

/// One line of the review list: a stored mismatch or a missing result.
#[derive(Debug, Clone, Copy)]
pub enum ReviewRow<'a> {
    Stored(&'a MismatchReport),
    Missing(MissingRow<'a>),
}

/// A missing (or not-done) scheduled result with its slot's id. Derefs to
/// the [`MissingResult`] it is about.
#[derive(Debug, Clone, Copy)]
pub struct MissingRow<'a> {
    pub missing: &'a MissingResult,
    /// `None` when no writer has allocated the slot's id yet (a database no
    /// labfeed write has touched since the visit or the schedule changed).
    pub id: Option<MismatchId>,
    /// Set when a data manager marked it not done: the row is resolved.
    pub not_done: Option<&'a NotDoneMark>,
}

impl Deref for MissingRow<'_> {
    type Target = MissingResult;

    fn deref(&self) -> &MissingResult {
        self.missing
    }
}

impl ReviewRow<'_> {
    /// Sort key: participant, visit, minute, analyte (absent first, as in SQL).
    fn key(&self) -> (Option<&str>, Option<&str>, Option<i64>, Option<&str>) {
        match self {
            ReviewRow::Stored(r) => {
                let m = &r.mismatch;
                (m.participant.as_deref(), m.visit.as_deref(), m.minute, m.analyte.as_deref())
            }
            ReviewRow::Missing(m) => {
                (Some(&m.participant), Some(&m.visit), Some(i64::from(m.minute)), Some(&m.analyte))
            }
        }
    }

    /// The SPEC §6 code.
    pub fn code(&self) -> &str {
        match self {
            ReviewRow::Stored(r) => r.mismatch.code.as_str(),
            ReviewRow::Missing(_) => MISSING_RESULT,
        }
    }

    pub fn participant(&self) -> Option<&str> {
        self.key().0
    }

    pub fn visit(&self) -> Option<&str> {
        self.key().1
    }

    /// Open until resolved (a reopen opens it again); a missing result is
    /// open until it arrives or is marked not done.
    pub fn is_open(&self) -> bool {
        match self {
            ReviewRow::Stored(r) => r.mismatch.resolution.is_none(),
            ReviewRow::Missing(m) => m.not_done.is_none(),
        }
    }

    /// The id `resolve` takes, if the row has one.
    pub fn id(&self) -> Option<MismatchId> {
        match self {
            ReviewRow::Stored(r) => Some(r.mismatch.id),
            ReviewRow::Missing(m) => m.id,
        }
    }
}

/// Merge stored mismatches (already in report order) and missing results
/// into one list in report order; at equal keys stored rows come first.
/// The missing rows have no ids here (see [`review_rows_with_ids`]).
pub fn review_rows<'a>(stored: &'a [MismatchReport], missing: &'a [MissingResult]) -> Vec<ReviewRow<'a>> {
    review_rows_with_ids(stored, missing, &[], &BTreeMap::new())
}

/// [`review_rows`] with the MISSING_RESULT ids (`ids`, by slot) and the
/// slots marked not done (listed as resolved; pass none for the open list).
pub fn review_rows_with_ids<'a>(
    stored: &'a [MismatchReport],
    missing: &'a [MissingResult],
    not_done: &'a [(MissingResult, NotDoneMark)],
    ids: &BTreeMap<Slot, MismatchId>,
) -> Vec<ReviewRow<'a>> {
    let open = missing.iter().map(|m| MissingRow { missing: m, id: ids.get(&m.slot()).copied(), not_done: None });
    let marked = not_done.iter().map(|(m, mark)| MissingRow { missing: m, id: Some(mark.id), not_done: Some(mark) });
    let mut rows: Vec<ReviewRow<'a>> =
        stored.iter().map(ReviewRow::Stored).chain(open.chain(marked).map(ReviewRow::Missing)).collect();
    // Stable: equal keys keep stored-before-missing and the store's id order.
    rows.sort_by(|a, b| a.key().cmp(&b.key()));
    rows
}

/// SPEC §5, in order.
pub const MISMATCH_COLUMNS: [&str; 15] = [
    "id",
    "code",
    "sample_id",
    "participant",
    "visit",
    "minute",
    "analyte",
    "instrument",
    "test_code",
    "reported_value",
    "reported_unit",
    "detail",
    "source",
    "received_at",
    "state",
];

/// `open`, or `resolved` once a data manager's decision is recorded.
pub fn state(row: &ReviewRow<'_>) -> &'static str {
    if row.is_open() { "open" } else { "resolved" }
}

/// Appended after the SPEC §5 columns: the latest entry of the row's
/// history (a reopen included) and the whole history in one cell, then the
/// latest signer's full name and role (from the account).
pub const HISTORY_COLUMNS: [&str; 7] =
    ["decided_by", "decided_at", "decision", "reason", "history", "decided_by_name", "decided_by_role"];

/// The fields of one row, in [`MISMATCH_COLUMNS`] order; absent ones empty.
/// A missing result's id is its slot's (empty if none is allocated yet).
pub fn mismatch_record(row: &ReviewRow<'_>) -> [String; 15] {
    let state = state(row).to_owned();
    let row = match row {
        ReviewRow::Stored(r) => r,
        ReviewRow::Missing(m) => {
            return [
                m.id.map(|id| id.to_string()).unwrap_or_default(),
                MISSING_RESULT.to_owned(),
                String::new(),
                m.participant.clone(),
                m.visit.clone(),
                m.minute.to_string(),
                m.analyte.clone(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                m.detail.clone(),
                String::new(),
                String::new(),
                state,
            ];
        }
    };
    let m = &row.mismatch;
    let p = &row.provenance;
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    [
        m.id.to_string(),
        m.code.as_str().to_owned(),
        text(&p.sample_id),
        text(&m.participant),
        text(&m.visit),
        m.minute.map(|n| n.to_string()).unwrap_or_default(),
        text(&m.analyte),
        text(&p.instrument),
        text(&p.test_code),
        text(&p.reported_value),
        text(&p.reported_unit),
        m.detail.clone(),
        p.source_text(),
        p.received_at.map(utc_time).unwrap_or_default(),
        state,
    ]
}

/// What one history entry did, in words: `resolved (reject)`, `reopened`, `not done`.
pub fn decision_label(r: &ResolutionRow) -> String {
    match r.action {
        ResolutionAction::Reopen => "reopened".to_owned(),
        ResolutionAction::NotDone => "not done".to_owned(),
        action => format!("resolved ({action})"),
    }
}

/// `resolved (assign) by dm.anna (Anna Data, data-manager) at 2026-…Z,
/// assigned to U02/V1/90: reason`
pub fn history_entry(r: &ResolutionRow, zone: Option<&str>, signers: &Signers) -> String {
    let at = match zone {
        Some(zone) => zoned_time(r.resolved_at, zone),
        None => utc_time(r.resolved_at),
    };
    let mut line = format!("{} by {} at {at}", decision_label(r), signers.who(&r.resolved_by));
    if let (Some(p), Some(v), Some(n)) = (&r.participant, &r.visit, r.minute) {
        line.push_str(&format!(", assigned to {p}/{v}/{n}"));
    }
    if !r.reason.is_empty() {
        line.push_str(&format!(": {}", r.reason));
    }
    line
}

/// The [`HISTORY_COLUMNS`] of one row.
pub fn history_record(row: &ReviewRow<'_>, history: &History) -> [String; 7] {
    let entries = row.id().and_then(|id| history.get(&id)).map(Vec::as_slice).unwrap_or_default();
    let Some(last) = entries.last() else { return Default::default() };
    let (name, role) = history.signers.name_and_role(&last.resolved_by);
    [
        last.resolved_by.clone(),
        utc_time(last.resolved_at),
        last.action.as_str().to_owned(),
        last.reason.clone(),
        entries.iter().map(|e| history_entry(e, None, &history.signers)).collect::<Vec<_>>().join(" | "),
        name,
        role,
    ]
}

/// Write the header row, then one row per mismatch, in the order given: the
/// SPEC §5 columns, then [`HISTORY_COLUMNS`].
pub fn write_mismatches_csv(out: impl Write, rows: &[ReviewRow<'_>], history: &History) -> csv::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(MISMATCH_COLUMNS.iter().chain(&HISTORY_COLUMNS))?;
    for row in rows {
        w.write_record(mismatch_record(row).iter().chain(&history_record(row, history)))?;
    }
    w.flush()?;
    Ok(())
}

/// What the text report says about itself in its first line, and what it
/// needs to word its lines.
#[derive(Debug, Clone)]
pub struct MismatchTextOptions<'a> {
    /// The study id from the configuration.
    pub study: &'a str,
    /// When the report was made.
    pub generated_at: jiff::Timestamp,
    /// Resolved mismatches are listed too (`--all`).
    pub include_resolved: bool,
    /// `study.timezone`: every time on a line is in it, and says so.
    pub timezone: &'a str,
    /// Scheduled slots of a visit (minutes × analytes): a visit whose rows
    /// are all of them, nothing received, is one line.
    pub scheduled_slots: usize,
    /// The data locks in force (SPEC §8), listed under the title.
    pub locks: &'a [Lock],
}

/// `Locked: visit U01/V0 since 2026-… Europe/Stockholm by dm.anna: data cleaned`.
pub fn lock_line(lock: &Lock, zone: &str) -> String {
    format!("Locked: {}", lock_words(lock, zone))
}

/// `visit U01/V0 since 2026-… Europe/Stockholm by dm.anna: data cleaned`.
pub fn lock_words(lock: &Lock, zone: &str) -> String {
    format!("{} since {} by {}: {}", lock.scope, zoned_time(lock.at, zone), lock.by, lock.reason)
}

/// A readable listing for a data manager: grouped by participant and visit
/// in the order given (the store's neutral participant-code order), one
/// line per mismatch, its resolution and what its value is now on the next
/// line, a visit with nothing received yet as one line, and a count at the
/// end. Times are in the study's zone, named on every line that has one.
pub fn write_mismatches_text(
    out: &mut dyn Write,
    rows: &[ReviewRow<'_>],
    options: &MismatchTextOptions<'_>,
) -> io::Result<()> {
    write_mismatches_text_with_history(out, rows, options, &History::new(), &Now::default())
}

/// [`write_mismatches_text`], with each row's whole history (decisions,
/// reopens, not done) on the lines under it instead of only the decision
/// in force, and what each value is now (`now`: where the snapshot has it).
pub fn write_mismatches_text_with_history(
    out: &mut dyn Write,
    rows: &[ReviewRow<'_>],
    options: &MismatchTextOptions<'_>,
    history: &History,
    now: &Now,
) -> io::Result<()> {
    let zone = options.timezone;
    let scope = if options.include_resolved { "open and resolved" } else { "open" };
    writeln!(
        out,
        "Mismatches ({scope}) for study {}, as of {}",
        options.study,
        zoned_time(options.generated_at, zone)
    )?;
    for lock in options.locks {
        writeln!(out, "{}", lock_line(lock, zone))?;
    }
    for group in rows.chunk_by(|a, b| (a.participant(), a.visit()) == (b.participant(), b.visit())) {
        let Some(first) = group.first() else { continue };
        let key = (first.participant(), first.visit());
        writeln!(out)?;
        writeln!(out, "{}", group_title(key))?;
        let refs: Vec<&ReviewRow<'_>> = group.iter().collect();
        let not_done = match key {
            (Some(p), Some(v)) => now.not_done_in(p, v),
            _ => 0,
        };
        if let (Some(visit), Some(n)) = (key.1, nothing_received(&refs, options.scheduled_slots, not_done)) {
            writeln!(out, "  -- {MISSING_RESULT}  {}", nothing_received_line(visit, n))?;
            // With `--all`, the slots marked not done, each with its reason.
            for row in group.iter().filter(|r| !r.is_open()) {
                write_row(out, row, zone, history, now)?;
            }
            continue;
        }
        for row in group {
            write_row(out, row, zone, history, now)?;
        }
    }
    writeln!(out)?;
    writeln!(out, "{}", count_line(rows, options.include_resolved))?;
    Ok(())
}

/// One row of the text report and the lines of its history under it.
fn write_row(out: &mut dyn Write, row: &ReviewRow<'_>, zone: &str, history: &History, now: &Now) -> io::Result<()> {
    let entries = row.id().and_then(|id| history.get(&id));
    match row {
        ReviewRow::Stored(r) => {
            writeln!(out, "  {}", mismatch_line(r, zone))?;
            let in_force = r.mismatch.resolution.as_ref();
            let lines: Vec<&ResolutionRow> = match entries {
                Some(entries) => entries.iter().collect(),
                None => in_force.into_iter().collect(),
            };
            for entry in lines {
                writeln!(out, "      {}", history_entry(entry, Some(zone), &history.signers))?;
            }
            if in_force.is_some() {
                writeln!(out, "      now {}", now.value_now(&r.mismatch))?;
            }
        }
        ReviewRow::Missing(m) => {
            let id = m.id.map_or_else(|| "--".to_owned(), |id| format!("#{id}"));
            writeln!(out, "  {id} {MISSING_RESULT}  {}", missing_line(m, zone))?;
            match entries {
                Some(entries) => {
                    for entry in entries {
                        writeln!(out, "      {}", history_entry(entry, Some(zone), &history.signers))?;
                    }
                }
                None => {
                    if let Some(mark) = m.not_done {
                        writeln!(
                            out,
                            "      not done by {} at {}: {}",
                            history.signers.who(&mark.by),
                            zoned_time(mark.at, zone),
                            mark.reason
                        )?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// `minute 120, glucose: no accepted result (meal start 2026-11-03 08:30 Europe/Stockholm)`,
/// with why when something did arrive. Said here rather than with the
/// stored detail, so the meal start names its zone like every time on a line.
fn missing_line(m: &MissingResult, zone: &str) -> String {
    let why = absence_words(m.absence);
    let meal = m.meal_start.display_minutes();
    format!("minute {}, {}: no accepted result (meal start {meal} {zone}){why}", m.minute, m.analyte)
}

fn group_title((participant, visit): (Option<&str>, Option<&str>)) -> String {
    match (participant, visit) {
        (Some(p), Some(v)) => format!("Participant {p}, visit {v}"),
        (Some(p), None) => format!("Participant {p}, visit not known"),
        (None, _) => "Not matched to a participant".to_owned(),
    }
}

/// `#12 UNKNOWN_SAMPLE  sample X-1, minute 30, c_peptide, reported <0.010 nmol/L: detail [file, received …]`
fn mismatch_line(row: &MismatchReport, zone: &str) -> String {
    let m = &row.mismatch;
    let p = &row.provenance;
    let mut parts = Vec::new();
    match &p.sample_id {
        Some(s) => parts.push(format!("sample {s}")),
        None => parts.push("no sample ID".to_owned()),
    }
    if let Some(n) = m.minute {
        parts.push(format!("minute {n}"));
    }
    if let Some(a) = &m.analyte {
        parts.push(a.clone());
    } else if let Some(t) = &p.test_code {
        parts.push(format!("test {t}"));
    }
    match (&p.reported_value, &p.reported_unit) {
        (Some(v), Some(u)) => parts.push(format!("reported {v} {u}")),
        (Some(v), None) => parts.push(format!("reported {v} (no unit)")),
        (None, Some(u)) => parts.push(format!("reported no value ({u})")),
        (None, None) => {}
    }
    let mut line = format!("#{} {}  {}: {}", m.id, m.code, parts.join(", "), m.detail);
    let mut origin = Vec::new();
    if p.source.is_some() {
        origin.push(p.source_text());
    }
    if let Some(i) = &p.instrument {
        origin.push(i.clone());
    }
    if let Some(t) = p.received_at {
        origin.push(format!("received {}", zoned_time(t, zone)));
    }
    if !origin.is_empty() {
        line.push_str(&format!(" [{}]", origin.join(", ")));
    }
    line
}

fn count_line(rows: &[ReviewRow<'_>], include_resolved: bool) -> String {
    let open = rows.iter().filter(|r| r.is_open()).count();
    let resolved = rows.len() - open;
    if !include_resolved {
        return match open {
            0 => "No open mismatches.".to_owned(),
            n => plural(n, "open mismatch", "open mismatches"),
        };
    }
    match rows.len() {
        0 => "No mismatches.".to_owned(),
        n => format!("{}: {open} open, {resolved} resolved", plural(n, "mismatch", "mismatches")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::test_rows::decided;
    use crate::store::{MismatchCode, MismatchId, MismatchRow, Provenance, ReceiptId, ResolutionAction, ResolutionRow};

    fn row(id: i64, participant: Option<&str>, resolved: bool) -> MismatchReport {
        let at: jiff::Timestamp = "2026-03-02T08:00:00Z".parse().unwrap();
        MismatchReport {
            mismatch: MismatchRow {
                id: MismatchId(id),
                code: MismatchCode::NotFinal,
                holds: true,
                observation_id: None,
                message_id: None,
                receipt_id: ReceiptId(1),
                participant: participant.map(str::to_owned),
                visit: participant.map(|_| "V1".to_owned()),
                minute: Some(60),
                analyte: Some("glucose".into()),
                detail: "status P".into(),
                created_at: at,
                resolution: resolved.then(|| ResolutionRow {
                    participant: Some("U02".into()),
                    visit: Some("V1".into()),
                    minute: Some(90),
                    ..decided(1, ResolutionAction::Assign, "", at)
                }),
            },
            provenance: Provenance::default(),
        }
    }

    /// Open and resolved rows, times in UTC.
    fn utc_options(at: jiff::Timestamp) -> MismatchTextOptions<'static> {
        MismatchTextOptions {
            study: "S",
            generated_at: at,
            include_resolved: true,
            timezone: "UTC",
            scheduled_slots: 14,
            locks: &[],
        }
    }

    fn text(rows: &[MismatchReport], include_resolved: bool) -> String {
        let rows = review_rows(rows, &[]);
        let mut out = Vec::new();
        let options = MismatchTextOptions {
            study: "S",
            generated_at: "2026-03-02T09:00:00Z".parse().unwrap(),
            include_resolved,
            timezone: "Europe/Stockholm",
            scheduled_slots: 14,
            locks: &[],
        };
        write_mismatches_text(&mut out, &rows, &options).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_whole_history_is_under_the_row_and_in_the_last_csv_columns() {
        let at: jiff::Timestamp = "2026-03-05T09:00:00Z".parse().unwrap();
        let entry = |id: i64, action: ResolutionAction, reason: &str| decided(id, action, reason, at);
        let mut decided = row(7, Some("U01"), false);
        decided.mismatch.resolution = Some(entry(3, ResolutionAction::Accept, "fine after all"));
        let decisions = [(
            MismatchId(7),
            vec![
                entry(1, ResolutionAction::Reject, "late"),
                entry(2, ResolutionAction::Reopen, "mistyped"),
                entry(3, ResolutionAction::Accept, "fine after all"),
            ],
        )]
        .into();
        let history = History { decisions, ..History::default() };
        let stored = [decided];
        let rows = review_rows(&stored, &[]);
        let mut out = Vec::new();
        let options = utc_options(at);
        write_mismatches_text_with_history(&mut out, &rows, &options, &history, &Now::default()).unwrap();
        let t = String::from_utf8(out).unwrap();
        assert!(
            t.contains(
                "      resolved (reject) by dm at 2026-03-05 09:00:00 UTC: late\n      reopened by dm at \
                 2026-03-05 09:00:00 UTC: mistyped\n      resolved (accept) by dm at 2026-03-05 09:00:00 UTC: fine after \
                 all\n      now accepted\n"
            ),
            "{t}"
        );
        let mut out = Vec::new();
        write_mismatches_csv(&mut out, &rows, &history).unwrap();
        let csv = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert!(
            lines[0].ends_with(",state,decided_by,decided_at,decision,reason,history,decided_by_name,decided_by_role"),
            "{csv}"
        );
        assert!(
            lines[1].ends_with(
                ",dm,2026-03-05T09:00:00Z,accept,fine after all,resolved (reject) by dm at \
             2026-03-05T09:00:00Z: late | reopened by dm at 2026-03-05T09:00:00Z: mistyped | resolved (accept) by dm \
             at 2026-03-05T09:00:00Z: fine after all,,"
            ),
            "{csv}"
        );
    }

    #[test]
    fn a_missing_result_shows_its_slot_id_and_a_not_done_one_is_resolved() {
        let at: jiff::Timestamp = "2026-03-05T09:00:00Z".parse().unwrap();
        let missing = |minute: i32| MissingResult {
            participant: "U01".into(),
            visit: "V1".into(),
            minute,
            analyte: "glucose".into(),
            meal_start: "2026-03-02T08:30".parse().unwrap(),
            absence: crate::study::missing::Absence::NotReceived,
            detail: "no result".into(),
        };
        let open = [missing(30)];
        let mark = NotDoneMark { id: MismatchId(41), reason: "no sample".into(), by: "dm".into(), at };
        let not_done = [(missing(60), mark)];
        let ids: BTreeMap<Slot, MismatchId> = [(open[0].slot(), MismatchId(40))].into();
        let rows = review_rows_with_ids(&[], &open, &not_done, &ids);
        assert_eq!(
            rows.iter().map(|r| (r.id(), r.is_open())).collect::<Vec<_>>(),
            [(Some(MismatchId(40)), true), (Some(MismatchId(41)), false)]
        );
        assert_eq!(mismatch_record(&rows[0])[0], "40");
        assert_eq!(mismatch_record(&rows[1])[14], "resolved");
        let mut out = Vec::new();
        write_mismatches_text(&mut out, &rows, &utc_options(at)).unwrap();
        let t = String::from_utf8(out).unwrap();
        let line = |minute| {
            format!("MISSING_RESULT  minute {minute}, glucose: no accepted result (meal start 2026-03-02 08:30 UTC)\n")
        };
        assert!(t.contains(&format!("  #40 {}", line(30))), "{t}");
        assert!(
            t.contains(&format!("  #41 {}      not done by dm at 2026-03-05 09:00:00 UTC: no sample\n", line(60))),
            "{t}"
        );
    }

    #[test]
    fn counts_are_singular_or_plural() {
        assert!(text(&[row(1, Some("U01"), false)], false).ends_with("\n1 open mismatch\n"));
        assert!(text(&[row(1, Some("U01"), false), row(2, None, false)], false).ends_with("\n2 open mismatches\n"));
        assert!(text(&[row(1, Some("U01"), true)], true).ends_with("\n1 mismatch: 0 open, 1 resolved\n"));
    }

    #[test]
    fn one_title_per_participant_and_visit_and_assignments_shown() {
        let t = text(&[row(1, Some("U01"), false), row(2, Some("U01"), true), row(3, Some("U02"), false)], true);
        assert_eq!(t.matches("Participant U01, visit V1").count(), 1, "{t}");
        assert_eq!(t.matches("Participant U02, visit V1").count(), 1, "{t}");
        let title = "Mismatches (open and resolved) for study S, as of 2026-03-02 10:00:00 Europe/Stockholm\n";
        assert!(t.starts_with(title), "{t}");
        assert!(t.contains("  #2 NOT_FINAL  no sample ID, minute 60, glucose: status P\n"), "{t}");
        let decision = "      resolved (assign) by dm at 2026-03-02 09:00:00 Europe/Stockholm, assigned to U02/V1/90\n      now \
                        moved to U02/V1/90\n";
        assert!(t.contains(decision), "{t}");
    }
}
