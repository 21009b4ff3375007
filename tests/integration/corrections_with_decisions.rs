//! Study-data changes (SPEC §7 "Study data change") combined with a data
//! manager's decisions and their reopening (review r1 of issue 10, points 1,
//! 2 and 8): each test is a bug a data manager ran into; through the real
//! binary on real SQLite files.

use std::process::Output;

use super::support::{TempStudy as Study, central, csv_rows, ok, path, text};

fn import(s: &Study, kind: &str, body: &str) -> String {
    let name = format!("{kind}.csv");
    s.file(&name, body);
    ok(&s.run_in(s.dir.path(), &["import", kind, &name, "--by", "dm"]))
}

fn ingest(s: &Study, name: &str, body: &str) -> String {
    let f = s.file(name, body);
    ok(&s.run(&["ingest", path(&f)]))
}

fn resolve(s: &Study, args: &[&str]) -> Output {
    let mut all = vec!["resolve"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--by", "dm"]);
    s.run(&all)
}

/// U01 and U02, visit V0 each with a meal at 2026-03-02 08:30, and this manifest.
fn study(samples: &str) -> Study {
    let s = Study::new(&[]);
    import(&s, "participants", "participant\nU01\nU02\n");
    import(&s, "visits", "participant,visit,meal_start\nU01,V0,2026-03-02T08:30\nU02,V0,2026-03-02T08:30\n");
    manifest(&s, samples);
    s
}

/// Import these `sample,participant,visit,minute` lines as the sample manifest.
fn manifest(s: &Study, rows: &str) -> String {
    import(s, "samples", &format!("sample_id,participant,visit,minute\n{rows}"))
}

/// U01's meal start corrected from 08:30 to 08:40.
const LATER_MEAL: &str = "participant,visit,meal_start\nU01,V0,2026-03-02T08:40\nU02,V0,2026-03-02T08:30\n";

/// S-30 moved onto S-60's slot, the DUPLICATE_CONFLICT accepted there, then
/// the move undone by the manifest: the conflict's id and what that import said.
fn accepted_conflict_then_moved_back() -> (Study, String, String) {
    let s = study("S-30,U01,V0,30\nS-60,U01,V0,60\n");
    ingest(&s, "r1.hl7", &central("C1", "U01", "S-30", "202603020900", "0.8"));
    ingest(&s, "r2.hl7", &central("C2", "U01", "S-60", "202603020930", "0.9"));
    manifest(&s, "S-30,U01,V0,60\nS-60,U01,V0,60\n");
    let conflict = id_of(&s, "DUPLICATE_CONFLICT");
    ok(&resolve(&s, &[&conflict, "--accept", "--reason", "S-30 is the 60-min tube"]));
    let back = manifest(&s, "S-30,U01,V0,30\nS-60,U01,V0,60\n");
    (s, conflict, back)
}

/// An unknown tube (S-99) assigned to U01/V0/30: the study and the UNKNOWN_SAMPLE id.
fn assigned_unknown_tube() -> (Study, String) {
    let s = study("");
    ingest(&s, "r.hl7", &central("C1", "U01", "S-99", "202603020900", "0.8"));
    let unknown = id_of(&s, "UNKNOWN_SAMPLE");
    ok(&resolve(&s, &[&unknown, "--assign", "U01/V0/30", "--reason", "label misread"]));
    (s, unknown)
}

/// The `export lb` record of U01's 30-min C-peptide, and its LBREASND.
fn lb_u01_cpeptide_30(s: &Study) -> (Vec<String>, String) {
    let lb = csv_rows(&ok(&s.run(&["export", "lb"])));
    let col = |name: &str| lb[0].iter().position(|h| h == name).unwrap();
    let row = lb.iter().find(|r| {
        r[col("USUBJID")].ends_with("-U01") && r[col("LBTESTCD")] == "CPEPTIDE" && r[col("LBTPT")] == "MMTT 30 MIN"
    });
    match row {
        Some(row) => (row.clone(), row[col("LBREASND")].clone()),
        None => (Vec::new(), NO_RECORD.to_owned()),
    }
}

/// What [`lb_at`] and [`lb_u01_cpeptide_30`] give for a slot with no LB
/// record: an empty, held or rejected slot that nobody marked not done.
const NO_RECORD: &str = "(no LB record)";

/// `report mismatches --format csv --all`, without the header.
fn review(s: &Study) -> Vec<Vec<String>> {
    csv_rows(&ok(&s.run(&["report", "mismatches", "--format", "csv", "--all"])))[1..].to_vec()
}

/// The id of the one stored mismatch with this code (any state).
fn id_of(s: &Study, code: &str) -> String {
    let rows: Vec<_> = review(s).into_iter().filter(|r| r[1] == code).collect();
    assert_eq!(rows.len(), 1, "one {code}: {rows:?}");
    rows[0][0].clone()
}

/// The MISSING_RESULT id of a slot.
fn missing_id(s: &Study, participant: &str, minute: &str) -> String {
    review(s)
        .into_iter()
        .find(|r| r[1] == "MISSING_RESULT" && r[3] == participant && r[5] == minute && r[6] == "c_peptide")
        .map(|r| r[0].clone())
        .unwrap_or_else(|| panic!("no MISSING_RESULT for {participant} minute {minute}"))
}

/// (participant, visit, minute, analyte, value, sample_id) from `export results`.
fn exported(s: &Study) -> Vec<[String; 6]> {
    csv_rows(&ok(&s.run(&["export", "results"])))[1..]
        .iter()
        .map(|r| [r[0].clone(), r[1].clone(), r[2].clone(), r[3].clone(), r[4].clone(), r[10].clone()])
        .collect()
}

/// Every exported result stands where the manifest (`sample,participant,visit,minute` lines) puts its sample.
#[track_caller]
fn exports_follow_the_manifest(s: &Study, manifest: &str) {
    let rows = exported(s);
    for row in &rows {
        let place = manifest.lines().find(|l| l.starts_with(&format!("{},", row[5])));
        if let Some(place) = place {
            let want: Vec<&str> = place.split(',').skip(1).collect();
            assert_eq!(
                [row[0].as_str(), row[1].as_str(), row[2].as_str()],
                [want[0], want[1], want[2]],
                "sample {} is exported at {}/{}/{} though the manifest puts it at {}: {rows:?}",
                row[5],
                row[0],
                row[1],
                row[2],
                want.join("/")
            );
        }
    }
}

/// A result held as UNKNOWN_SAMPLE whose sample the manifest names later, for
/// another participant than the message's patient ID: accepting it must not
/// skip the patient-ID comparison. The same data in the other order (manifest
/// first) is a PARTICIPANT_CONFLICT at ingest; accepting "unknown sample" is
/// not accepting a participant the data manager has not seen (README
/// "Resolving mismatches": the checks run again).
#[test]
fn an_unknown_sample_accepted_after_the_manifest_names_it_still_has_its_patient_id_compared() {
    let s = study("");
    ingest(&s, "late.hl7", &central("C1", "U02", "S-77", "202603021000", "0.7"));
    let unknown = id_of(&s, "UNKNOWN_SAMPLE");
    manifest(&s, "S-77,U01,V0,90\n");
    ok(&resolve(&s, &[&unknown, "--accept", "--reason", "the manifest has it now"]));
    let rows = exported(&s);
    assert!(
        !rows.iter().any(|r| r[0] == "U01" && r[5] == "S-77"),
        "U02's result (PID U02) was put into U01's slot without a PARTICIPANT_CONFLICT: {rows:?}"
    );
    assert!(
        review(&s).iter().any(|r| r[1] == "PARTICIPANT_CONFLICT" && r[14] == "open"),
        "the patient-ID conflict is raised: {:?}",
        review(&s)
    );
}

/// A flagged value rejected, its sample then moved by the manifest, then the
/// rejection reopened: the value must not come back at the slot the manifest
/// moved the sample away from (SPEC §7 "Study data change": nothing stays at
/// the old slot). Importing the manifest again cannot repair it (unchanged).
#[test]
fn reopening_a_rejection_after_the_sample_moved_does_not_put_the_value_back_at_the_old_slot() {
    let s = study("S-30,U01,V0,30\n");
    ingest(&s, "r.hl7", &central("C1", "U01", "S-30", "202603020910", "0.8"));
    let flag = id_of(&s, "OUT_OF_WINDOW");
    ok(&resolve(&s, &[&flag, "--reject", "--reason", "drawn late"]));
    let moved = "S-30,U01,V0,120\n";
    manifest(&s, moved);
    ok(&resolve(&s, &[&flag, "--reopen", "--reason", "rejected by mistake"]));
    exports_follow_the_manifest(&s, moved);
    assert_eq!(s.run(&["verify-audit"]).status.code(), Some(0));
}

/// The same with a held value: rejected, sample moved, reopened, accepted.
/// The accepted value goes to the mismatch's old slot, not where the
/// manifest now puts the sample.
#[test]
fn a_held_value_reopened_after_its_sample_moved_is_not_accepted_into_the_old_slot() {
    let s = study("S-30,U01,V0,30\n");
    ingest(&s, "r.hl7", &central("C1", "U01", "S-30", "202603021030", "45"));
    let implausible = id_of(&s, "IMPLAUSIBLE");
    ok(&resolve(&s, &[&implausible, "--reject", "--reason", "implausible"]));
    let moved = "S-30,U01,V0,120\n";
    manifest(&s, moved);
    ok(&resolve(&s, &[&implausible, "--reopen", "--reason", "lab confirmed the dilution"]));
    // Held again where the manifest puts the sample now, as an import moves a held value.
    let open = held(&s);
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0][1..], ["IMPLAUSIBLE", "U01", "120"], "{open:?}");
    ok(&resolve(&s, &[&open[0][0], "--accept", "--reason", "lab confirmed the dilution"]));
    exports_follow_the_manifest(&s, moved);
}

/// A window flag rejected, the meal start corrected (the value is now within
/// its window), the rejection reopened: the flag that comes back open still
/// says "40 min after meal start" for a value that is 30 min after the
/// corrected meal start (SPEC §7: a changed meal start re-checks OUT_OF_WINDOW).
#[test]
fn a_reopened_window_flag_is_checked_against_the_corrected_meal_start() {
    let s = study("S-30,U01,V0,30\n");
    ingest(&s, "r.hl7", &central("C1", "U01", "S-30", "202603020910", "0.8"));
    let flag = id_of(&s, "OUT_OF_WINDOW");
    ok(&resolve(&s, &[&flag, "--reject", "--reason", "drawn late"]));
    import(&s, "visits", LATER_MEAL);
    ok(&resolve(&s, &[&flag, "--reopen", "--reason", "the meal start was wrong, not the draw"]));
    let open: Vec<_> = review(&s).into_iter().filter(|r| r[1] == "OUT_OF_WINDOW" && r[14] == "open").collect();
    assert!(open.is_empty(), "a window flag that no longer applies is open again: {open:?}");
}

/// S-30 moved onto S-60's slot (DUPLICATE_CONFLICT), the data manager accepts
/// S-30's value there, then the move is found wrong and S-30 goes back. S-60,
/// which the manifest never moved, has its value 0.9 at minute 60; the slot
/// must not be left empty ("nothing lost").
#[test]
fn moving_a_sample_away_gives_back_the_value_it_had_replaced() {
    let (s, _, back) = accepted_conflict_then_moved_back();
    let rows = exported(&s);
    assert!(
        rows.iter().any(|r| r[..3] == ["U01", "V0", "60"] && r[4] == "0.9" && r[5] == "S-60"),
        "S-60's value is gone from U01/V0/60 ({back}): {rows:?}"
    );
}

/// A slot marked not done ("vein collapsed"), then a result arrives for it
/// (so the sample was drawn), then that result is rejected. `export lb` must
/// not say NOT DONE because "vein collapsed": that mark was overtaken by data.
#[test]
fn a_not_done_mark_does_not_come_back_after_a_result_arrived_and_was_rejected() {
    let s = study("S-30,U01,V0,30\n");
    let slot = missing_id(&s, "U01", "30");
    ok(&resolve(&s, &[&slot, "--not-done", "--reason", "vein collapsed"]));
    ingest(&s, "r.hl7", &central("C1", "U01", "S-30", "202603020910", "0.8"));
    let flag = id_of(&s, "OUT_OF_WINDOW");
    ok(&resolve(&s, &[&flag, "--reject", "--reason", "drawn 10 min late"]));
    let (row, reason) = lb_u01_cpeptide_30(&s);
    assert_ne!(
        reason, "vein collapsed",
        "LB says the sample was not drawn, but it was drawn, analysed and rejected: {row:?}"
    );
}

/// A result held as UNKNOWN_SAMPLE whose sample the manifest now puts in a
/// slot: `--not-done` on that slot's MISSING_RESULT is refused "while a result
/// for it is held for review" (README). It is accepted.
#[test]
fn not_done_is_refused_while_a_result_for_the_slot_is_held_as_an_unknown_sample() {
    let s = study("");
    ingest(&s, "late.hl7", &central("C1", "U01", "S-90", "202603021000", "0.7"));
    manifest(&s, "S-90,U01,V0,90\n");
    let slot = missing_id(&s, "U01", "90");
    let out = resolve(&s, &[&slot, "--not-done", "--reason", "vein collapsed"]);
    assert_eq!(out.status.code(), Some(2), "a held result for the slot exists: {}", text(&out));
}

/// A DUPLICATE_CONFLICT accepted (which raised a window flag), then the
/// manifest moves the sample back, which closes that flag (`auto`). Reopening
/// the acceptance is refused "reopen mismatch N first", and reopening N is
/// refused "reopen the decision that closed it", which was an import: the
/// advice goes in a circle and the decision can never be undone.
#[test]
fn the_advice_of_a_refused_reopen_after_an_import_can_be_followed() {
    let (s, conflict, _) = accepted_conflict_then_moved_back();
    let out = resolve(&s, &[&conflict, "--reopen", "--reason", "accepted by mistake"]);
    if out.status.code() == Some(0) {
        return;
    }
    let said = text(&out);
    let first = said
        .split("mismatch ")
        .skip(2)
        .find_map(|rest| rest.split_whitespace().next().filter(|id| id.chars().all(|c| c.is_ascii_digit())))
        .unwrap_or_else(|| panic!("refused without naming what to undo first: {said}"));
    let next = resolve(&s, &[first, "--reopen", "--reason", "as told"]);
    assert_eq!(
        next.status.code(),
        Some(0),
        "reopening {conflict} said: {said}\nfollowing that advice: {}",
        text(&next)
    );
}

/// An unknown tube assigned to U01/V0/30; the meal start is then corrected,
/// which flags the value there (OUT_OF_WINDOW, raised by the import); the
/// assignment is reopened, so the value leaves the slot and is held again.
/// The window flag about a value that is in no slot any more stays open
/// (a rejection or a move closes the flags of the value it withdraws).
#[test]
fn reopening_an_assignment_closes_the_flags_an_import_raised_on_the_value_it_withdraws() {
    let (s, unknown) = assigned_unknown_tube();
    let said = import(&s, "visits", LATER_MEAL);
    assert!(said.contains("1 raised"), "{said}");
    ok(&resolve(&s, &[&unknown, "--reopen", "--reason", "wrong slot"]));
    assert!(exported(&s).is_empty(), "{:?}", exported(&s));
    let stale: Vec<_> = review(&s).into_iter().filter(|r| r[1] == "OUT_OF_WINDOW" && r[14] == "open").collect();
    assert!(stale.is_empty(), "an open window flag on a value that is in no slot: {stale:?}");
}

/// The autumn night: a 120-min draw sent as 02:30 (no offset) is read as the
/// occurrence nearest its nominal minute, and the observation records which
/// (issue 10, point 3). The meal start is then corrected from 00:30 to 01:30:
/// the window check now reads the draw as the second 02:30 (+01:00) and
/// raises nothing, but the recorded choice stays +02:00, so `export results`
/// says the draw was 60 min after the corrected meal start.
#[test]
fn a_changed_meal_start_reads_a_repeated_draw_time_again_everywhere() {
    let s = study("");
    import(&s, "visits", "participant,visit,meal_start\nU01,V1,2026-10-25T00:30\n");
    ingest(&s, "r.hl7", &central("C1", "U01", "U01-V1-T120", "202610250230", "0.8"));
    import(&s, "visits", "participant,visit,meal_start\nU01,V1,2026-10-25T01:30\n");
    let flags: Vec<_> = review(&s).into_iter().filter(|r| r[1] == "OUT_OF_WINDOW").collect();
    assert!(flags.is_empty(), "{flags:?}");
    let rows = csv_rows(&ok(&s.run(&["export", "results"])));
    let collected = &rows[1][14];
    assert_eq!(
        collected, "2026-10-25T02:30+01:00",
        "120 min after a 01:30 (+02:00) meal start is the second 02:30; the window check read it so: {rows:?}"
    );
}

/// A tube mix-up fixed in the manifest: S-30 was never U01's 30-min sample.
/// `export lb` then says U01's 30-min C-peptide was NOT DONE because the
/// RESULT was REJECTED, though nobody rejected anything: the 30-min sample
/// has simply not been received (the move should leave the slot as "nothing
/// received", as a reopen does).
#[test]
fn a_slot_a_manifest_correction_vacated_is_not_reported_as_rejected_in_lb() {
    let s = study("S-30,U01,V0,30\n");
    ingest(&s, "r.hl7", &central("C1", "U01", "S-30", "202603020900", "0.8"));
    manifest(&s, "S-30,U01,V0,120\n");
    let (row, reason) = lb_u01_cpeptide_30(&s);
    assert_eq!(reason, NO_RECORD, "{row:?}");
}

/// Two swapped tubes corrected one row at a time (two imports, as a data
/// manager fixing a manifest line by line does): the first move conflicts
/// with the tube still there; the second takes that tube away. S-30 stays
/// held as a DUPLICATE_CONFLICT with a value that is no longer in the slot,
/// and U02's 30-min C-peptide is empty, where one file would have swapped them.
#[test]
fn a_swap_in_two_imports_ends_like_a_swap_in_one() {
    let s = study("S-30,U01,V0,30\nS-31,U02,V0,30\n");
    // A cobas upload: no patient ID, so nothing but the manifest says whose tube it is.
    let e411 = format!(
        "H|\\^&|||cobas-e411^1|||||host|RSUPL^BATCH|P|1|20260302120000\rP|1\r{}{}L|1|N\r",
        "O|1|S-30||^^^CPEP|R||20260302083000||||N||||1|||||||20260302100000|||F\r\
R|1|^^^CPEP|0.8|nmol/L||N||F||ADMIN|20260302100000|20260302101500|E1\r",
        "O|2|S-31||^^^CPEP|R||20260302083000||||N||||1|||||||20260302100000|||F\r\
R|1|^^^CPEP|0.5|nmol/L||N||F||ADMIN|20260302100000|20260302101500|E1\r"
    );
    ingest(&s, "tubes.astm", &e411);
    manifest(&s, "S-30,U02,V0,30\n");
    manifest(&s, "S-31,U01,V0,30\n");
    let rows = exported(&s);
    assert!(
        rows.iter().any(|r| r[0] == "U02" && r[2] == "30" && r[5] == "S-30"),
        "S-30 is not at U02/V0/30 after both rows were corrected: {rows:?}; open: {:?}",
        review(&s).into_iter().filter(|r| r[1] != "MISSING_RESULT" && r[14] == "open").collect::<Vec<_>>()
    );
}

/// An import that names a sample held as UNKNOWN_SAMPLE says which mismatch
/// to accept (it does not place it: accepting is a data manager's call).
#[test]
fn an_import_that_names_a_held_unknown_sample_says_which_mismatch_to_accept() {
    let s = study("");
    ingest(&s, "late.hl7", &central("C1", "U01", "S-77", "202603021000", "0.7"));
    let unknown = id_of(&s, "UNKNOWN_SAMPLE");
    let said = manifest(&s, "S-77,U01,V0,90\n");
    assert!(
        said.contains(&format!("1 result held as UNKNOWN_SAMPLE now matches S-77: resolve #{unknown} --accept")),
        "{said}"
    );
    assert!(exported(&s).is_empty(), "{:?}", exported(&s));
    ok(&resolve(&s, &[&unknown, "--accept", "--reason", "the manifest has it now"]));
    assert!(exported(&s).iter().any(|r| r[..3] == ["U01", "V0", "90"] && r[5] == "S-77"), "{:?}", exported(&s));
}

/// A reopen is not blocked by what labfeed itself undid (finding 7), but a
/// data manager's later decision at the slot still blocks it: here the
/// rejection of a window flag the meal-start correction raised emptied the
/// slot the assignment had filled; undoing the assignment under it would
/// leave that rejection about a value that was never there.
#[test]
fn a_later_decision_that_emptied_the_slot_still_blocks_reopening_the_assignment() {
    let (s, unknown) = assigned_unknown_tube();
    import(&s, "visits", LATER_MEAL);
    let flag = id_of(&s, "OUT_OF_WINDOW");
    ok(&resolve(&s, &[&flag, "--reject", "--reason", "drawn late"]));
    let out = resolve(&s, &[&unknown, "--reopen", "--reason", "wrong slot"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains(&format!("resolved mismatch {flag} (rejected)")), "{}", text(&out));
}

/// An assignment that was reopened no longer stands: once the manifest names
/// the sample, accepting the held value places it where the manifest says.
#[test]
fn a_reopened_assignment_no_longer_keeps_the_value_from_the_manifest() {
    let (s, unknown) = assigned_unknown_tube();
    ok(&resolve(&s, &[&unknown, "--reopen", "--reason", "wrong slot"]));
    let rows = "S-99,U01,V0,60\n";
    manifest(&s, rows);
    ok(&resolve(&s, &[&unknown, "--accept", "--reason", "the manifest has it now"]));
    exports_follow_the_manifest(&s, rows);
    assert!(exported(&s).iter().any(|r| r[..3] == ["U01", "V0", "60"] && r[5] == "S-99"), "{:?}", exported(&s));
}

/// A cobas e411 C-peptide result for `sample` (no patient ID, so a move to
/// another participant raises no PARTICIPANT_CONFLICT; no trusted draw time).
fn tube(sample: &str, value: &str) -> String {
    super::support::e411(&format!(
        "{}R|1|^^^CPEP|{value}|nmol/L||N||F||ADMIN|20260302100000|20260302101500|E1\r",
        super::support::order(1, sample)
    ))
}

/// The open mismatches other than MISSING_RESULT: (id, code, participant, minute).
fn held(s: &Study) -> Vec<[String; 4]> {
    review(s)
        .into_iter()
        .filter(|r| r[1] != "MISSING_RESULT" && r[14] == "open")
        .map(|r| [r[0].clone(), r[1].clone(), r[3].clone(), r[5].clone()])
        .collect()
}

/// The `export lb` (LBSTAT, LBREASND, LBORRES) of `participant`'s C-peptide
/// at `minute`; [`NO_RECORD`] twice when there is none.
fn lb_at(s: &Study, participant: &str, minute: &str) -> [String; 3] {
    let lb = csv_rows(&ok(&s.run(&["export", "lb"])));
    let col = |name: &str| lb[0].iter().position(|h| h == name).unwrap();
    let rows: Vec<_> = lb
        .iter()
        .filter(|r| {
            r[col("USUBJID")].ends_with(&format!("-{participant}"))
                && r[col("LBTESTCD")] == "CPEPTIDE"
                && r[col("LBTPT")] == format!("MMTT {minute} MIN")
        })
        .collect();
    assert!(rows.len() <= 1, "at most one LB record for {participant} minute {minute}: {rows:?}");
    match rows.first() {
        Some(row) => [row[col("LBSTAT")].clone(), row[col("LBREASND")].clone(), row[col("LBORRES")].clone()],
        None => [NO_RECORD.to_owned(), NO_RECORD.to_owned(), String::new()],
    }
}

/// Every C-peptide value in `report auc --format csv` (participant, auc, points).
fn aucs(s: &Study) -> Vec<[String; 3]> {
    let rows = csv_rows(&ok(&s.run(&["report", "auc", "--format", "csv"])));
    rows[1..].iter().filter(|r| r[2] == "c_peptide").map(|r| [r[0].clone(), r[3].clone(), r[6].clone()]).collect()
}

/// No trace of `value` in the exports or the AUC table, at any slot.
#[track_caller]
fn nowhere(s: &Study, value: &str) {
    let rows = exported(s);
    assert!(!rows.iter().any(|r| r[4] == value), "{value} is still exported: {rows:?}");
    for p in ["U01", "U02"] {
        let lb = lb_at(s, p, "30");
        assert_ne!(lb[2], value, "{value} is still in LB at {p}/30: {lb:?}");
    }
    let auc = aucs(s);
    assert!(auc.iter().all(|r| r[1].is_empty()), "an AUC is computed from {value}: {auc:?}");
}

/// Finding 1: a held value (IMPLAUSIBLE) whose sample the manifest moves to
/// U02, then rejected. The rejection is about the value where it is now.
#[test]
fn rejecting_a_held_value_after_its_sample_moved_keeps_it_out_everywhere() {
    let s = study("S-30,U01,V0,30\n");
    ingest(&s, "r.astm", &tube("S-30", "45"));
    manifest(&s, "S-30,U02,V0,30\n");
    let open = held(&s);
    assert_eq!(open.len(), 1, "one held copy after the move: {open:?}");
    assert_eq!(open[0][1..], ["IMPLAUSIBLE", "U02", "30"], "{open:?}");
    ok(&resolve(&s, &[&open[0][0], "--reject", "--reason", "implausible"]));
    assert!(held(&s).is_empty(), "{:?}", held(&s));
    nowhere(&s, "45");
    // A held value never was in a slot: rejecting it withdraws nothing (README, LBREASND).
    assert_eq!(lb_at(&s, "U01", "30")[1], NO_RECORD);
    assert_eq!(lb_at(&s, "U02", "30")[1], NO_RECORD);
}

/// Findings 1 and 2: a held value accepted, its sample moved (the value goes
/// with it), then the acceptance reopened: the value leaves the slot it is in
/// now, and it is held once, by the reopened mismatch.
#[test]
fn reopening_an_acceptance_after_the_sample_moved_withdraws_the_value_where_it_is_now() {
    let s = study("S-30,U01,V0,30\n");
    ingest(&s, "r.astm", &tube("S-30", "45"));
    let implausible = id_of(&s, "IMPLAUSIBLE");
    ok(&resolve(&s, &[&implausible, "--accept", "--reason", "lab confirmed"]));
    manifest(&s, "S-30,U02,V0,30\n");
    assert!(exported(&s).iter().any(|r| r[0] == "U02" && r[4] == "45"), "{:?}", exported(&s));
    let said = ok(&resolve(&s, &[&implausible, "--reopen", "--reason", "accepted by mistake"]));
    nowhere(&s, "45");
    // Held again once, where the sample is now (as an import moves a held
    // value: the reopened mismatch is closed there and checked again here).
    let open = held(&s);
    assert_eq!(open.len(), 1, "exactly one open mismatch holds the value: {open:?}");
    assert_eq!(open[0][1..], ["IMPLAUSIBLE", "U02", "30"], "{open:?}");
    assert!(said.contains(&format!("IMPLAUSIBLE #{}", open[0][0])), "{said}");
    let implausible = open[0][0].clone();
    assert_eq!(lb_at(&s, "U02", "30")[1], NO_RECORD);
    assert_eq!(lb_at(&s, "U01", "30")[1], NO_RECORD);
    // Decided again, it is rejected where it is now.
    ok(&resolve(&s, &[&implausible, "--reject", "--reason", "implausible after all"]));
    nowhere(&s, "45");
    assert!(held(&s).is_empty(), "{:?}", held(&s));
    assert_eq!(s.run(&["verify-audit"]).status.code(), Some(0));
}

/// Finding 1 with a conflicting rerun: held as DUPLICATE_CONFLICT, the
/// sample moved, the rerun rejected: the first value stands at the new slot.
#[test]
fn rejecting_a_conflicting_rerun_after_the_sample_moved_leaves_the_first_value_at_the_new_slot() {
    let s = study("S-30,U01,V0,30\n");
    ingest(&s, "r1.astm", &tube("S-30", "0.8"));
    ingest(&s, "r2.astm", &tube("S-30", "0.9"));
    manifest(&s, "S-30,U02,V0,30\n");
    let open = held(&s);
    assert_eq!(open.len(), 1, "one held copy after the move: {open:?}");
    ok(&resolve(&s, &[&open[0][0], "--reject", "--reason", "rerun out of range"]));
    let rows = exported(&s);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][..5], ["U02", "V0", "30", "c_peptide", "0.8"], "{rows:?}");
    assert_eq!(lb_at(&s, "U02", "30")[2], "0.8");
    assert_eq!(lb_at(&s, "U01", "30")[1], NO_RECORD);
}

/// Findings 1 and 2 with an accepted rerun: the rerun replaced the first
/// value, the sample moved, the acceptance reopened: the first value is back
/// at the new slot (not the old), the rerun is held once.
#[test]
fn reopening_an_accepted_rerun_after_the_sample_moved_gives_back_the_first_value_where_it_is_now() {
    let s = study("S-30,U01,V0,30\n");
    ingest(&s, "r1.astm", &tube("S-30", "0.8"));
    ingest(&s, "r2.astm", &tube("S-30", "0.9"));
    let conflict = id_of(&s, "DUPLICATE_CONFLICT");
    ok(&resolve(&s, &[&conflict, "--accept", "--reason", "the rerun is right"]));
    manifest(&s, "S-30,U02,V0,30\n");
    ok(&resolve(&s, &[&conflict, "--reopen", "--reason", "the first run is right"]));
    let rows = exported(&s);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][..5], ["U02", "V0", "30", "c_peptide", "0.8"], "{rows:?}");
    let open = held(&s);
    assert_eq!(open.len(), 1, "exactly one open mismatch: {open:?}");
    assert_eq!(open[0][1..], ["DUPLICATE_CONFLICT", "U02", "30"], "{open:?}");
    // Decided again: the rerun replaces the first value at the new slot only.
    ok(&resolve(&s, &[&open[0][0], "--accept", "--reason", "the rerun is right after all"]));
    let rows = exported(&s);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][..5], ["U02", "V0", "30", "c_peptide", "0.9"], "{rows:?}");
    assert_eq!(lb_at(&s, "U01", "30")[1], NO_RECORD);
}

/// Finding 1 with a flagged (accepted) value: moved, then its flag rejected:
/// withdrawn where it is now.
#[test]
fn rejecting_a_flag_after_the_sample_moved_withdraws_the_value_where_it_is_now() {
    let s = study("S-30,U01,V0,30\n");
    ingest(&s, "r.hl7", &central("C1", "U01", "S-30", "202603020910", "0.8"));
    manifest(&s, "S-30,U01,V0,60\n");
    let open = held(&s);
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0][1..], ["OUT_OF_WINDOW", "U01", "60"], "{open:?}");
    ok(&resolve(&s, &[&open[0][0], "--reject", "--reason", "drawn late"]));
    assert!(exported(&s).is_empty(), "{:?}", exported(&s));
    assert!(aucs(&s).iter().all(|r| r[1].is_empty()), "{:?}", aucs(&s));
    assert_eq!(lb_at(&s, "U01", "30")[1], NO_RECORD);
    assert_eq!(lb_at(&s, "U01", "60")[1], NO_RECORD);
}

/// Finding 3: a not-done mark survives an import that corrects another row,
/// and one that moves the visit's other sample.
#[test]
fn a_not_done_mark_survives_a_manifest_import_that_corrects_another_row() {
    let s = study("S-30,U01,V0,30\nS-60,U01,V0,60\nS-70,U02,V0,30\n");
    let slot = missing_id(&s, "U01", "30");
    let said = text(&resolve(&s, &[&slot, "--not-done", "--reason", "vein collapsed"]));
    assert!(said.contains("marked not done"), "{said}");
    let marked = |s: &Study| {
        assert_eq!(lb_at(s, "U01", "30")[..2], ["NOT DONE", "vein collapsed"]);
        let rows = review(s);
        let row = rows.iter().find(|r| r[0] == slot).expect("listed with --all");
        assert_eq!(row[14], "resolved", "{row:?}");
        let other = |r: &&Vec<String>| r[0] != slot && r[1] == "MISSING_RESULT" && r[3] == "U01" && r[5] == "30";
        assert!(!rows.iter().filter(other).any(|r| r[6] == "c_peptide"), "{rows:?}");
    };
    manifest(&s, "S-30,U01,V0,30\nS-60,U01,V0,60\nS-70,U02,V0,60\n");
    marked(&s);
    manifest(&s, "S-30,U01,V0,30\nS-60,U01,V0,90\nS-70,U02,V0,60\n");
    marked(&s);
    // The slot's own sample row moved away: the slot is still not done.
    manifest(&s, "S-30,U01,V0,120\nS-60,U01,V0,90\nS-70,U02,V0,60\n");
    marked(&s);
    let again = resolve(&s, &[&slot, "--not-done", "--reason", "vein collapsed"]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(text(&again).contains("already marked not done"), "{}", text(&again));
    ok(&resolve(&s, &[&slot, "--reopen", "--reason", "the sample was found"]));
    assert_eq!(missing_id(&s, "U01", "30"), slot);
    assert_eq!(lb_at(&s, "U01", "30")[1], NO_RECORD);
    let said = text(&resolve(&s, &[&slot, "--not-done", "--reason", "lost in transit"]));
    assert!(said.contains("marked not done"), "{said}");
    assert_eq!(lb_at(&s, "U01", "30")[..2], ["NOT DONE", "lost in transit"]);
}

/// Finding 4: a held value rejected then reopened is under review again in
/// LB, not rejected.
#[test]
fn a_rejection_reopened_is_under_review_again_in_lb() {
    let s = study("S-30,U01,V0,30\n");
    ingest(&s, "r.astm", &tube("S-30", "45"));
    let implausible = id_of(&s, "IMPLAUSIBLE");
    assert_eq!(lb_at(&s, "U01", "30")[1], NO_RECORD);
    ok(&resolve(&s, &[&implausible, "--reject", "--reason", "implausible"]));
    ok(&resolve(&s, &[&implausible, "--reopen", "--reason", "rejected by mistake"]));
    assert_eq!(lb_at(&s, "U01", "30")[..2], [NO_RECORD, NO_RECORD]);
    assert_eq!(held(&s).len(), 1, "{:?}", held(&s));
    // The same for a flagged value: back in its slot.
    let s = study("S-30,U01,V0,30\n");
    ingest(&s, "r.hl7", &central("C1", "U01", "S-30", "202603020910", "0.8"));
    let flag = id_of(&s, "OUT_OF_WINDOW");
    ok(&resolve(&s, &[&flag, "--reject", "--reason", "drawn late"]));
    ok(&resolve(&s, &[&flag, "--reopen", "--reason", "rejected by mistake"]));
    assert_eq!(lb_at(&s, "U01", "30"), [String::new(), String::new(), "0.8".to_owned()]);
    // And after the manifest moved the sample: the old slot was not rejected either.
    let s = study("S-30,U01,V0,30\n");
    ingest(&s, "r.hl7", &central("C1", "U01", "S-30", "202603020910", "0.8"));
    let flag = id_of(&s, "OUT_OF_WINDOW");
    ok(&resolve(&s, &[&flag, "--reject", "--reason", "drawn late"]));
    manifest(&s, "S-30,U02,V0,30\n");
    ok(&resolve(&s, &[&flag, "--reopen", "--reason", "rejected by mistake"]));
    assert_eq!(lb_at(&s, "U01", "30")[..2], [NO_RECORD, NO_RECORD]);
    assert_eq!(lb_at(&s, "U02", "30")[1], NO_RECORD, "held again at U02: no record until decided");
}

/// Finding 5: a slot marked not done then receiving a held value stays NOT
/// DONE with the data manager's reason while the value is held (the mark
/// lapses only when a value is accepted); the held value is listed in
/// `report mismatches`; rejecting it leaves the mark; accepting it ends it.
#[test]
fn a_held_value_for_a_slot_marked_not_done_leaves_the_mark_until_it_is_accepted() {
    let s = study("S-30,U01,V0,30\n");
    let slot = missing_id(&s, "U01", "30");
    ok(&resolve(&s, &[&slot, "--not-done", "--reason", "vein collapsed"]));
    ingest(&s, "r.astm", &tube("S-30", "45"));
    assert_eq!(lb_at(&s, "U01", "30"), ["NOT DONE".to_owned(), "vein collapsed".to_owned(), String::new()]);
    let open = held(&s);
    assert_eq!(open.len(), 1, "{open:?}");
    let missing = |r: &&Vec<String>| r[1] == "MISSING_RESULT" && r[14] == "open" && r[3] == "U01" && r[5] == "30";
    assert!(!review(&s).iter().filter(missing).any(|r| r[6] == "c_peptide"), "{:?}", review(&s));
    ok(&resolve(&s, &[&open[0][0], "--reject", "--reason", "implausible"]));
    assert_eq!(lb_at(&s, "U01", "30")[..2], ["NOT DONE", "vein collapsed"]);
    ok(&resolve(&s, &[&open[0][0], "--reopen", "--reason", "look again"]));
    assert_eq!(lb_at(&s, "U01", "30")[..2], ["NOT DONE", "vein collapsed"]);
    ok(&resolve(&s, &[&open[0][0], "--accept", "--reason", "lab confirmed"]));
    assert_eq!(lb_at(&s, "U01", "30"), [String::new(), String::new(), "45".to_owned()]);
}

/// Finding 2 with a flag: its acceptance reopened after the manifest moved
/// the value on. The flag is about a value that is no longer at its slot:
/// it does not come back open there (the move closed it as it closes every
/// flag it takes a value away from); the value stands where it is now.
#[test]
fn reopening_a_flag_acceptance_after_the_sample_moved_leaves_no_flag_at_the_old_slot() {
    let s = study("S-30,U01,V0,30\n");
    ingest(&s, "r.hl7", &central("C1", "U01", "S-30", "202603020910", "0.8"));
    let flag = id_of(&s, "OUT_OF_WINDOW");
    ok(&resolve(&s, &[&flag, "--accept", "--reason", "within tolerance"]));
    manifest(&s, "S-30,U01,V0,60\n");
    let before = held(&s);
    ok(&resolve(&s, &[&flag, "--reopen", "--reason", "accepted by mistake"]));
    let open = held(&s);
    assert!(!open.iter().any(|m| m[3] == "30"), "a flag is open at the slot the value left: {open:?}");
    assert_eq!(open, before, "{open:?}");
    let rows = exported(&s);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][..3], ["U01", "V0", "60"], "{rows:?}");
}

/// Finding 2 with a rejected rerun: the first value moved with its sample;
/// the rejection reopened holds the rerun once, against the first value at
/// the new slot (not at the old one).
#[test]
fn reopening_a_rejected_rerun_after_the_sample_moved_holds_it_once_at_the_new_slot() {
    let s = study("S-30,U01,V0,30\n");
    ingest(&s, "r1.astm", &tube("S-30", "0.8"));
    ingest(&s, "r2.astm", &tube("S-30", "0.9"));
    let conflict = id_of(&s, "DUPLICATE_CONFLICT");
    ok(&resolve(&s, &[&conflict, "--reject", "--reason", "rerun out of range"]));
    manifest(&s, "S-30,U02,V0,30\n");
    ok(&resolve(&s, &[&conflict, "--reopen", "--reason", "rejected by mistake"]));
    let open = held(&s);
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0][1..], ["DUPLICATE_CONFLICT", "U02", "30"], "{open:?}");
    let rows = exported(&s);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][..5], ["U02", "V0", "30", "c_peptide", "0.8"], "{rows:?}");
    assert_eq!(lb_at(&s, "U01", "30")[1], NO_RECORD);
}
