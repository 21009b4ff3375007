//! Study-data corrections through `labfeed import` (SPEC §7 "Study data
//! change"): a re-imported manifest row moves its sample's results, a
//! changed meal start re-checks OUT_OF_WINDOW, all in one audited transaction.

use std::process::Output;

use super::support::{TempStudy as Study, central, central_with_status, csv_rows, e411, ok, order, path, text};

fn r(test: &str, value: &str, unit: &str) -> String {
    format!("R|1|^^^{test}|{value}|{unit}||N||F||ADMIN|20260302100000|20260302101500|E1\r")
}

/// A study with U01 and U02 (visit V0 each, meal at 08:30 on 2 and 3
/// March), the given sample manifest, and `files` ingested.
fn study(samples: &str, files: &[(&str, String)]) -> Study {
    let s = Study::new(&[]);
    import(&s, "participants", "participant\nU01\nU02\n");
    import(&s, "visits", "participant,visit,meal_start\nU01,V0,2026-03-02T08:30\nU02,V0,2026-03-03T08:30\n");
    import(&s, "samples", &format!("sample_id,participant,visit,minute\n{samples}"));
    let paths: Vec<_> = files.iter().map(|(name, body)| s.file(name, body)).collect();
    let mut args = vec!["ingest"];
    args.extend(paths.iter().map(|p| path(p)));
    ok(&s.run(&args));
    s
}

/// `labfeed import KIND KIND.csv --by dm.anna` with `body`; its standard output.
fn import(s: &Study, kind: &str, body: &str) -> String {
    ok(&import_output(s, kind, body))
}

fn import_output(s: &Study, kind: &str, body: &str) -> Output {
    let name = format!("{kind}.csv");
    s.file(&name, body);
    s.run_in(s.dir.path(), &["import", kind, &name, "--by", "dm.anna"])
}

/// (participant, visit, minute, analyte, value, sample) from `export results`.
fn exported(s: &Study) -> Vec<[String; 6]> {
    let out = ok(&s.run(&["export", "results"]));
    csv_rows(&out)[1..]
        .iter()
        .map(|r| [r[0].clone(), r[1].clone(), r[2].clone(), r[3].clone(), r[4].clone(), r[10].clone()])
        .collect()
}

fn at(rows: &[[String; 6]], participant: &str, minute: &str) -> Vec<(String, String)> {
    rows.iter().filter(|r| r[0] == participant && r[2] == minute).map(|r| (r[3].clone(), r[4].clone())).collect()
}

/// Stored mismatches (with an id) as (id, code, sample, participant, minute, state).
fn mismatches(s: &Study) -> Vec<[String; 6]> {
    let out = ok(&s.run(&["report", "mismatches", "--format", "csv", "--all"]));
    csv_rows(&out)[1..]
        .iter()
        .filter(|r| r[1] != "MISSING_RESULT")
        .map(|r| [r[0].clone(), r[1].clone(), r[2].clone(), r[3].clone(), r[5].clone(), r[14].clone()])
        .collect()
}

fn open_codes(s: &Study) -> Vec<(String, String, String)> {
    mismatches(s).into_iter().filter(|m| m[5] == "open").map(|m| (m[1].clone(), m[3].clone(), m[4].clone())).collect()
}

fn db(s: &Study) -> rusqlite::Connection {
    rusqlite::Connection::open(s.lib("labfeed.db")).unwrap()
}

fn count(s: &Study, sql: &str) -> i64 {
    db(s).query_row(sql, [], |r| r.get(0)).unwrap()
}

fn audit_rows(s: &Study) -> i64 {
    count(s, "SELECT count(*) FROM audit_log")
}

const MANIFEST: &str = "S-30,U01,V0,30\nS-60,U01,V0,60\n";

fn tubes() -> Vec<(&'static str, String)> {
    vec![(
        "e411.astm",
        e411(
            &[
                order(1, "S-30"),
                r("CPEP", "0.52", "nmol/L"),
                r("GLUC", "5.2", "mmol/L"),
                order(2, "S-60"),
                r("CPEP", "0.80", "nmol/L"),
            ]
            .concat(),
        ),
    )]
}

#[test]
fn a_tube_mix_up_fixed_in_the_manifest_moves_every_result_of_the_sample() {
    let s = study(MANIFEST, &tubes());
    let before = exported(&s);
    assert_eq!(at(&before, "U01", "30"), [("c_peptide".into(), "0.52".into()), ("glucose".into(), "5.2".into())]);
    assert!(at(&before, "U02", "30").is_empty());
    let audited = audit_rows(&s);

    let out = import(&s, "samples", "sample_id,participant,visit,minute\nS-30,U02,V0,30\nS-60,U01,V0,60\n");
    assert_eq!(
        out,
        "samples.csv: comma-separated, UTF-8, LF\nsamples.csv: 2 rows: 0 new, 1 changed, 1 unchanged\n\
         samples.csv: S-30 moved U01/V0/30 → U02/V0/30 (2 results moved)\n"
    );
    let after = exported(&s);
    assert!(at(&after, "U01", "30").is_empty(), "nothing stays at the old slot: {after:?}");
    assert_eq!(at(&after, "U02", "30"), [("c_peptide".into(), "0.52".into()), ("glucose".into(), "5.2".into())]);
    assert_eq!(at(&after, "U01", "60"), [("c_peptide".into(), "0.8".into())], "the other tube stays");
    assert!(after.iter().filter(|r| r[0] == "U02").all(|r| r[5] == "S-30"));

    // The old slot is empty (MISSING_RESULT there now), and no stored mismatch was raised.
    assert!(open_codes(&s).is_empty(), "{:?}", open_codes(&s));
    let report = ok(&s.run(&["report", "mismatches", "--format", "csv"]));
    assert!(csv_rows(&report).iter().any(|r| r[1] == "MISSING_RESULT" && r[3] == "U01" && r[5] == "30"), "{report}");

    // One audited transaction under the importing user: the manifest row,
    // two withdrawals at U01 and two accepted versions at U02.
    assert_eq!(count(&s, "SELECT count(*) FROM audit_log WHERE actor = 'dm.anna' AND action = 'withdraw'"), 2);
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM audit_log WHERE actor = 'dm.anna' AND action = 'accept' AND entity = 'result' \
             AND detail LIKE '%\"participant\":\"U02\"%' AND detail LIKE '%moved here from U01/V0/30 (import of samples.csv)%'"
        ),
        2
    );
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM audit_log WHERE actor = 'dm.anna' AND action = 'import' AND entity_id = 'S-30'"
        ),
        2,
        "new, then changed"
    );
    assert_eq!(audit_rows(&s), audited + 7, "five changes, the signature and the commit row");
    assert_eq!(
        count(&s, "SELECT count(*) FROM result WHERE participant = 'U01' AND minute = 30 AND withdrawn = 1"),
        2,
        "withdrawn versions, nothing deleted"
    );
    ok(&s.run(&["verify-audit"]));

    // Importing the corrected file again changes nothing.
    let out = import(&s, "samples", "sample_id,participant,visit,minute\nS-30,U02,V0,30\nS-60,U01,V0,60\n");
    assert_eq!(out, "samples.csv: comma-separated, UTF-8, LF\nsamples.csv: 2 rows: 0 new, 0 changed, 2 unchanged\n");
    assert_eq!(audit_rows(&s), audited + 7, "no audit row");
    assert_eq!(exported(&s), after);
}

#[test]
fn two_swapped_tubes_change_places_without_a_conflict() {
    let s = study(MANIFEST, &tubes());
    let out = import(&s, "samples", "sample_id,participant,visit,minute\nS-30,U01,V0,60\nS-60,U01,V0,30\n");
    assert!(out.contains("S-30 moved U01/V0/30 → U01/V0/60 (2 results moved)"), "{out}");
    assert!(out.contains("S-60 moved U01/V0/60 → U01/V0/30 (1 result moved)"), "{out}");
    let after = exported(&s);
    assert_eq!(at(&after, "U01", "30"), [("c_peptide".into(), "0.8".into())]);
    assert_eq!(at(&after, "U01", "60"), [("c_peptide".into(), "0.52".into()), ("glucose".into(), "5.2".into())]);
    assert!(open_codes(&s).is_empty(), "{:?}", open_codes(&s));
}

#[test]
fn a_move_onto_a_different_value_is_a_duplicate_conflict_and_the_value_there_stays() {
    let upload =
        e411(&[order(1, "S-1"), r("CPEP", "0.52", "nmol/L"), order(2, "S-2"), r("CPEP", "0.70", "nmol/L")].concat());
    let s = study("S-1,U01,V0,30\nS-2,U02,V0,30\n", &[("e411.astm", upload)]);
    let out = import(&s, "samples", "sample_id,participant,visit,minute\nS-1,U02,V0,30\n");
    let open = mismatches(&s);
    let conflict = open.iter().find(|m| m[1] == "DUPLICATE_CONFLICT").expect("a conflict");
    assert_eq!((conflict[2].as_str(), conflict[3].as_str(), conflict[4].as_str()), ("S-1", "U02", "30"));
    assert_eq!(
        out,
        format!(
            "samples.csv: comma-separated, UTF-8, LF\nsamples.csv: 1 row: 0 new, 1 changed, 0 unchanged\n\
             samples.csv: S-1 moved U01/V0/30 → U02/V0/30 (1 result moved; 1 new mismatch DUPLICATE_CONFLICT #{})\n",
            conflict[0]
        )
    );
    let after = exported(&s);
    assert_eq!(at(&after, "U02", "30"), [("c_peptide".into(), "0.7".into())], "never overwritten");
    assert!(at(&after, "U01", "30").is_empty());
    let detail: String =
        db(&s).query_row("SELECT detail FROM mismatch WHERE code = 'DUPLICATE_CONFLICT'", [], |r| r.get(0)).unwrap();
    assert!(detail.contains("after sample S-1 moved to U02/V0/30, import of samples.csv"), "{detail}");

    // The data manager can settle it as any conflict: accept replaces the value.
    let out = s.run(&["resolve", &conflict[0], "--accept", "--reason", "S-1 is the right tube", "--by", "dm"]);
    ok(&out);
    assert_eq!(at(&exported(&s), "U02", "30"), [("c_peptide".into(), "0.52".into())]);
}

#[test]
fn a_move_onto_the_same_value_is_a_duplicate() {
    let upload =
        e411(&[order(1, "S-1"), r("CPEP", "0.52", "nmol/L"), order(2, "S-2"), r("CPEP", "0.52", "nmol/L")].concat());
    let s = study("S-1,U01,V0,30\nS-2,U02,V0,30\n", &[("e411.astm", upload)]);
    let out = import(&s, "samples", "sample_id,participant,visit,minute\nS-1,U02,V0,30\n");
    assert!(
        out.ends_with(
            "S-1 moved U01/V0/30 → U02/V0/30 (1 result moved; 1 already there with the same value (duplicate))\n"
        ),
        "{out}"
    );
    assert!(mismatches(&s).is_empty(), "{:?}", mismatches(&s));
    let after = exported(&s);
    assert!(at(&after, "U01", "30").is_empty());
    assert_eq!(at(&after, "U02", "30"), [("c_peptide".into(), "0.52".into())]);
}

#[test]
fn a_move_to_an_unscheduled_minute_holds_the_results_and_closes_the_old_mismatches() {
    // Glucose 99 mmol/L is held as IMPLAUSIBLE at U01/V0/30; C-peptide is accepted.
    let upload = e411(&[order(1, "S-1"), r("CPEP", "0.52", "nmol/L"), r("GLUC", "99", "mmol/L")].concat());
    let s = study("S-1,U01,V0,30\n", &[("e411.astm", upload)]);
    let implausible = mismatches(&s);
    assert_eq!(implausible.len(), 1);
    assert_eq!(implausible[0][1], "IMPLAUSIBLE");

    let out = import(&s, "samples", "sample_id,participant,visit,minute\nS-1,U01,V0,45\n");
    assert!(
        out.contains("S-1 moved U01/V0/30 → U01/V0/45 (2 results moved; 2 new mismatches UNSCHEDULED_TIMEPOINT #"),
        "{out}"
    );
    assert!(out.contains(&format!("1 mismatch closed at the old slot (#{})", implausible[0][0])), "{out}");
    let open = open_codes(&s);
    assert_eq!(open.len(), 2, "{open:?}");
    assert!(open.iter().all(|m| m.0 == "UNSCHEDULED_TIMEPOINT" && m.1 == "U01" && m.2 == "45"), "{open:?}");
    let after = exported(&s);
    assert!(after.is_empty(), "held, nothing at 30 or 45: {after:?}");
    let (action, reason, by): (String, String, String) = db(&s)
        .query_row(
            "SELECT action, reason, resolved_by FROM resolution WHERE mismatch_id = ?1",
            [&implausible[0][0]],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(action, "auto");
    assert_eq!(reason, "sample S-1 moved from U01/V0/30 to U01/V0/45 (import of samples.csv)");
    assert_eq!(by, "dm.anna");
    ok(&s.run(&["verify-audit"]));
}

#[test]
fn the_patient_id_is_compared_again_at_the_new_participant() {
    // S-7 was sent for patient U02 but the manifest said U01 (held);
    // S-8 was sent for U01 and accepted there.
    let s = study(
        "S-7,U01,V0,30\nS-8,U01,V0,60\n",
        &[
            ("s7.hl7", central("C7", "U02", "S-7", "202603030900", "0.61")),
            ("s8.hl7", central("C8", "U01", "S-8", "202603020930", "0.91")),
        ],
    );
    let held = mismatches(&s);
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!((held[0][1].as_str(), held[0][3].as_str()), ("PARTICIPANT_CONFLICT", "U01"));

    let out = import(&s, "samples", "sample_id,participant,visit,minute\nS-7,U02,V0,30\nS-8,U02,V0,60\n");
    // S-7 now agrees with its patient ID: accepted at U02.
    assert!(
        out.contains(&format!(
            "S-7 moved U01/V0/30 → U02/V0/30 (1 result moved; 1 mismatch closed at the old slot (#{}))",
            held[0][0]
        )),
        "{out}"
    );
    let after = exported(&s);
    assert_eq!(at(&after, "U02", "30"), [("c_peptide".into(), "0.61".into())]);
    // S-8 was sent for U01: the new manifest row disagrees, so it is held for a data manager.
    assert!(
        out.contains("S-8 moved U01/V0/60 → U02/V0/60 (1 result moved; 1 new mismatch PARTICIPANT_CONFLICT #"),
        "{out}"
    );
    assert!(at(&after, "U01", "60").is_empty() && at(&after, "U02", "60").is_empty(), "{after:?}");
    let open = open_codes(&s);
    assert_eq!(open, [("PARTICIPANT_CONFLICT".into(), "U02".into(), "60".into())]);
}

#[test]
fn a_result_a_data_manager_assigned_stays_where_it_was_put() {
    // S-1 is listed at an unscheduled minute; the data manager assigns it to 30.
    let upload = e411(&[order(1, "S-1"), r("CPEP", "0.52", "nmol/L")].concat());
    let s = study("S-1,U01,V0,45\n", &[("e411.astm", upload)]);
    let unscheduled = mismatches(&s);
    assert_eq!(unscheduled[0][1], "UNSCHEDULED_TIMEPOINT");
    let id = unscheduled[0][0].clone();
    ok(&s.run(&["resolve", &id, "--assign", "U01/V0/30", "--reason", "the 30-min tube", "--by", "dm"]));
    assert_eq!(at(&exported(&s), "U01", "30"), [("c_peptide".into(), "0.52".into())]);

    let out = import(&s, "samples", "sample_id,participant,visit,minute\nS-1,U02,V0,15\n");
    assert!(
        out.ends_with(&format!(
            "samples.csv: S-1 moved U01/V0/45 → U02/V0/15 (1 result kept at U01/V0/30/c_peptide, where a data \
             manager assigned it (#{id}))\n"
        )),
        "{out}"
    );
    let after = exported(&s);
    assert_eq!(at(&after, "U01", "30"), [("c_peptide".into(), "0.52".into())]);
    assert!(at(&after, "U02", "15").is_empty());
    assert!(open_codes(&s).is_empty());
}

#[test]
fn a_corrected_result_moves_as_its_current_version_and_stale_flags_close() {
    // Drawn at 10:00: 90 min after the meal, so out of the 60-min window; then corrected.
    let s = study(
        "S-60,U01,V0,60\n",
        &[
            ("orig.hl7", central("C1", "U01", "S-60", "202603021000", "0.5")),
            ("corr.hl7", central_with_status("C2", "U01", "S-60", "202603021000", "0.55", "C")),
        ],
    );
    let flags: Vec<String> = mismatches(&s).into_iter().map(|m| m[0].clone()).collect();
    assert_eq!(window_flags(&s), ["60", "60"], "the original and its correction are both flagged");
    assert_eq!(at(&exported(&s), "U01", "60"), [("c_peptide".into(), "0.55".into())]);

    let out = import(&s, "samples", "sample_id,participant,visit,minute\nS-60,U01,V0,90\n");
    assert!(
        out.ends_with(&format!(
            "S-60 moved U01/V0/60 → U01/V0/90 (1 result moved; 2 mismatches closed at the old slot (#{}, #{}))\n",
            flags[0], flags[1]
        )),
        "{out}"
    );
    let after = exported(&s);
    assert!(at(&after, "U01", "60").is_empty());
    assert_eq!(at(&after, "U01", "90"), [("c_peptide".into(), "0.55".into())], "on time at 90, no flag");
    assert!(open_codes(&s).is_empty(), "{:?}", open_codes(&s));
}

#[test]
fn a_cleared_meal_start_also_closes_the_flag_of_a_value_a_correction_replaced() {
    let s = study(
        "S-60,U01,V0,60\n",
        &[
            ("orig.hl7", central("C1", "U01", "S-60", "202603021000", "0.5")),
            ("corr.hl7", central_with_status("C2", "U01", "S-60", "202603021000", "0.55", "C")),
        ],
    );
    assert_eq!(window_flags(&s), ["60", "60"]);
    let out = import(&s, "visits", &format!("{VISITS}U01,V0,\n"));
    assert!(
        out.ends_with(
            "visits.csv: U01/V0 meal_start 2026-03-02T08:30 → (none): 1 result re-checked, 2 OUT_OF_WINDOW flags \
             closed, 0 raised (no meal start: no window can be checked)\n"
        ),
        "{out}"
    );
    assert!(window_flags(&s).is_empty());
}

/// U01's C-peptide at 15, 30 and 60 min, drawn 08:50, 09:00 and 09:30 (central lab, trusted times).
fn drawn() -> Vec<(&'static str, String)> {
    vec![
        ("t15.hl7", central("C15", "U01", "U01-V0-T15", "202603020850", "0.3")),
        ("t30.hl7", central("C30", "U01", "U01-V0-T30", "202603020900", "0.5")),
        ("t60.hl7", central("C60", "U01", "U01-V0-T60", "202603020930", "0.7")),
    ]
}

fn window_flags(s: &Study) -> Vec<String> {
    let mut minutes: Vec<String> = open_codes(s).into_iter().filter(|m| m.0 == "OUT_OF_WINDOW").map(|m| m.2).collect();
    minutes.sort();
    minutes
}

const VISITS: &str = "participant,visit,meal_start\nU02,V0,2026-03-03T08:30\n";

#[test]
fn a_changed_meal_start_closes_flags_that_no_longer_apply_and_raises_new_ones() {
    let s = study("", &drawn());
    // Meal at 08:30: the 15-min tube (08:50, 20 min) is out of its ±2 min window.
    assert_eq!(window_flags(&s), ["15"]);
    let flagged = mismatches(&s);

    // Meal at 08:35: 15 min is now on time; 30 min (25 min, ±3) is not; 60 min (55, ±5) is.
    let out = import(&s, "visits", &format!("{VISITS}U01,V0,2026-03-02T08:35\n"));
    assert_eq!(
        out,
        "visits.csv: comma-separated, UTF-8, LF\nvisits.csv: 2 rows: 0 new, 1 changed, 1 unchanged\n\
         visits.csv: U01/V0 meal_start 2026-03-02T08:30 → 2026-03-02T08:35: 3 results re-checked, 1 OUT_OF_WINDOW \
         flag closed, 1 raised\n"
    );
    assert_eq!(window_flags(&s), ["30"]);
    let (action, reason): (String, String) = db(&s)
        .query_row("SELECT action, reason FROM resolution WHERE mismatch_id = ?1", [&flagged[0][0]], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(action, "auto");
    assert!(reason.contains("meal start of U01/V0 changed from 2026-03-02T08:30 to 2026-03-02T08:35"), "{reason}");
    let (holds, detail): (bool, String) = db(&s)
        .query_row("SELECT holds, detail FROM mismatch WHERE code = 'OUT_OF_WINDOW' AND minute = 30", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert!(!holds, "accepted and flagged, as at ingest");
    assert!(detail.starts_with("collected 09:00, 25 min after meal start; nominal 30 ± 3 min"), "{detail}");
    // Flags accept: every value is still exported.
    assert_eq!(exported(&s).len(), 3);
    assert_eq!(
        count(&s, "SELECT count(*) FROM audit_log WHERE actor = 'dm.anna' AND action IN ('mismatch', 'resolve')"),
        2
    );

    // Back to 08:30: the 30-min flag closes and the 15-min one comes back.
    let out = import(&s, "visits", &format!("{VISITS}U01,V0,2026-03-02T08:30\n"));
    assert!(out.ends_with("3 results re-checked, 1 OUT_OF_WINDOW flag closed, 1 raised\n"), "{out}");
    assert_eq!(window_flags(&s), ["15"]);
    ok(&s.run(&["verify-audit"]));
}

#[test]
fn a_cleared_meal_start_closes_the_window_flags() {
    let s = study("", &drawn());
    // Meal at 08:00: every tube is late.
    import(&s, "visits", &format!("{VISITS}U01,V0,2026-03-02T08:00\n"));
    assert_eq!(window_flags(&s), ["15", "30", "60"]);
    let audited = audit_rows(&s);

    let out = import(&s, "visits", &format!("{VISITS}U01,V0,\n"));
    assert_eq!(
        out,
        "visits.csv: comma-separated, UTF-8, LF\nvisits.csv: 2 rows: 0 new, 1 changed, 1 unchanged\n\
         visits.csv: U01/V0 meal_start 2026-03-02T08:00 → (none): 3 results re-checked, 3 OUT_OF_WINDOW flags \
         closed, 0 raised (no meal start: no window can be checked)\n"
    );
    assert!(window_flags(&s).is_empty());
    assert_eq!(audit_rows(&s), audited + 6, "the signature, the visit row, three closures and the commit row");
    let reasons: Vec<String> = db(&s)
        .prepare("SELECT reason FROM resolution WHERE action = 'auto'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("was cleared (import of visits.csv): no window can be checked")),
        "{reasons:?}"
    );
    // No MISSING_RESULT without a meal start; the values stay.
    let report = ok(&s.run(&["report", "mismatches", "--format", "csv"]));
    assert!(!report.contains("MISSING_RESULT,,U01"), "{report}");
    assert_eq!(exported(&s).len(), 3);

    // Unchanged again: nothing written.
    let out = import(&s, "visits", &format!("{VISITS}U01,V0,\n"));
    assert_eq!(out, "visits.csv: comma-separated, UTF-8, LF\nvisits.csv: 2 rows: 0 new, 0 changed, 2 unchanged\n");
    assert_eq!(audit_rows(&s), audited + 6);
}

#[test]
fn a_refused_file_moves_nothing_and_rechecks_nothing() {
    let s = study(MANIFEST, &tubes());
    let audited = audit_rows(&s);
    let before = exported(&s);

    // A bad row: refused before the database is touched.
    let out = import_output(&s, "samples", "sample_id,participant,visit,minute\nS-30,U02,V0,30\nS-60,U01,V0,half\n");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // A row the store refuses (unknown participant) after a moving row: all rolled back.
    let out = import_output(&s, "samples", "sample_id,participant,visit,minute\nS-30,U02,V0,30\nS-60,U99,V0,60\n");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("nothing imported"), "{}", text(&out));
    // A visits file whose first row changes a meal start and whose second is refused.
    let out = import_output(&s, "visits", "participant,visit,meal_start\nU01,V0,2026-03-02T07:00\nU99,V0,\n");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    assert_eq!(audit_rows(&s), audited, "nothing written");
    assert_eq!(exported(&s), before);
    assert!(mismatches(&s).is_empty());
    assert_eq!(count(&s, "SELECT count(*) FROM sample WHERE sample_id = 'S-30' AND participant = 'U01'"), 1);
}

#[test]
fn a_framed_capture_reads_its_patient_id_back_and_holds_a_move_to_another_participant() {
    // Captured E1381 frames: the frames whose name was masked get new checksums,
    // so the patient ID (U01) is read again from the stored copy.
    let text = "H|\\^&|||cobas-e411^1|||||host|RSUPL^BATCH|P|1|20260302120000\rP|1|U01|||Andersson^Anna\r".to_owned()
        + &order(1, "S-1")
        + &r("CPEP", "0.52", "nmol/L")
        + &order(2, "S-2")
        + &r("CPEP", "0.80", "nmol/L")
        + "L|1|N\r";
    let mut framed = vec![0x05];
    for f in labfeed::astm::encode_frames(text.as_bytes(), 240) {
        framed.extend(f);
    }
    framed.push(0x04);
    let s = Study::new(&[]);
    import(&s, "participants", "participant\nU01\nU02\n");
    import(&s, "visits", "participant,visit,meal_start\nU01,V0,2026-03-02T08:30\nU02,V0,2026-03-03T08:30\n");
    import(&s, "samples", "sample_id,participant,visit,minute\nS-1,U01,V0,30\nS-2,U01,V0,60\n");
    let file = s.dir.path().join("framed.astm");
    std::fs::write(&file, &framed).unwrap();
    ok(&s.run(&["ingest", path(&file)]));
    assert_eq!(exported(&s).len(), 2, "{:?}", exported(&s));

    let out = import(&s, "samples", "sample_id,participant,visit,minute\nS-1,U02,V0,30\nS-2,U01,V0,90\n");
    assert!(
        out.contains("S-1 moved U01/V0/30 → U02/V0/30 (1 result moved; 1 new mismatch PARTICIPANT_CONFLICT #"),
        "{out}"
    );
    assert!(out.contains("S-2 moved U01/V0/60 → U01/V0/90 (1 result moved)"), "same participant: {out}");
    let detail: String =
        db(&s).query_row("SELECT detail FROM mismatch WHERE code = 'PARTICIPANT_CONFLICT'", [], |r| r.get(0)).unwrap();
    assert!(detail.contains("the message's patient ID differs from participant U02"), "{detail}");
    assert!(!detail.contains("Andersson"), "{detail}");
    let after = exported(&s);
    assert!(at(&after, "U02", "30").is_empty() && at(&after, "U01", "30").is_empty(), "{after:?}");
    assert_eq!(at(&after, "U01", "90"), [("c_peptide".into(), "0.8".into())]);
}
