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
    let row = lb
        .iter()
        .find(|r| {
            r[col("USUBJID")].ends_with("-U01") && r[col("LBTESTCD")] == "CPEPTIDE" && r[col("LBTPT")] == "MMTT 30 MIN"
        })
        .expect("an LB record for U01 C-peptide 30 min");
    (row.clone(), row[col("LBREASND")].clone())
}

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
    ok(&resolve(&s, &[&implausible, "--accept", "--reason", "lab confirmed the dilution"]));
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
    assert_eq!(reason, "RESULT NOT RECEIVED", "{row:?}");
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
