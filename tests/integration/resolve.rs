//! `labfeed resolve`: a data manager's decisions through the real binary,
//! checked in the exports, the reports and the audit log.

use labfeed::store::Store;

use super::support::{DATA_MANAGER, TempStudy as Study, csv_rows, e411, order, path, text, with_stdin};

pub(crate) fn r(test: &str, value: &str, unit: &str, done: &str) -> String {
    format!("R|1|^^^{test}|{value}|{unit}||N||F||ADMIN|20260302100000|{done}|E1\r")
}

/// A study with U07 (visit V4, meal 08:30) and U08 (V0), and these held or
/// flagged results: IMPLAUSIBLE, UNKNOWN_SAMPLE, DUPLICATE_CONFLICT (cobas),
/// OUT_OF_WINDOW and PRETEST_GLUCOSE (central lab, which has draw times).
pub(crate) fn study() -> Study {
    let s = Study::new(&[]);
    let files = [
        ("participants", "participant\nU07\nU08\n"),
        ("visits", "participant,visit,meal_start\nU07,V4,2026-03-02T08:30\nU08,V0,2026-03-03T08:00\n"),
        ("samples", "sample_id,participant,visit,minute\n"),
    ];
    for (kind, body) in files {
        let f = s.file(&format!("{kind}.csv"), body);
        let out = s.run(&["import", kind, path(&f)]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    let cobas = s.file(
        "cobas.astm",
        &e411(
            &[
                order(1, "U07-V4-T60"),
                r("CPEP", "45", "nmol/L", "20260302101500"),
                order(2, "NOPE-1"),
                r("CPEP", "0.4", "nmol/L", "20260302101500"),
                order(3, "U07-V4-T90"),
                r("CPEP", "0.50", "nmol/L", "20260302101500"),
                order(4, "U07-V4-T90"),
                r("CPEP", "0.70", "nmol/L", "20260302111500"),
            ]
            .concat(),
        ),
    );
    let central = s.file(
        "central.hl7",
        "MSH|^~\\&|CENTRALLAB|CLAB|STUDYDB|T1D|20260312154500||ORU^R01^ORU_R01|C1|P|2.5.1\r\
PID|1||U07^^^TRIAL^PI\r\
OBR|1|U07-V4-T30^STUDY||MMTT|||202603020852\r\
OBX|1|NM|1986-9^C peptide^LN||0.8|nmol/L|||||F\r\
OBR|2|U07-V4-T0^STUDY||MMTT|||202603020830\r\
OBX|1|NM|2345-7^Glucose^LN||230|mg/dL|||||F\r",
    );
    let out = s.run(&["ingest", path(&cobas), path(&central)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    s
}

/// Open mismatches (stored ones, with an id) as (id, code, minute).
pub(crate) fn open_mismatches(s: &Study) -> Vec<(String, String, String)> {
    let out = s.run(&["report", "mismatches", "--format", "csv"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    csv_rows(&String::from_utf8_lossy(&out.stdout))[1..]
        .iter()
        .filter(|r| !r[0].is_empty())
        .map(|r| (r[0].clone(), r[1].clone(), r[5].clone()))
        .collect()
}

pub(crate) fn id_of(s: &Study, code: &str) -> String {
    let all = open_mismatches(s);
    let found: Vec<_> = all.iter().filter(|m| m.1 == code).collect();
    assert_eq!(found.len(), 1, "one open {code}: {all:?}");
    found[0].0.clone()
}

/// (participant, visit, minute, analyte) → value, from `export results`.
pub(crate) fn exported(s: &Study) -> Vec<[String; 5]> {
    let out = s.run(&["export", "results"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    csv_rows(&String::from_utf8_lossy(&out.stdout))[1..]
        .iter()
        .map(|r| [r[0].clone(), r[1].clone(), r[2].clone(), r[3].clone(), r[4].clone()])
        .collect()
}

pub(crate) fn has(rows: &[[String; 5]], slot: [&str; 4], value: &str) -> bool {
    rows.iter().any(|r| r[..4] == slot && r[4] == value)
}

pub(crate) fn resolve(s: &Study, args: &[&str]) -> std::process::Output {
    let mut all = vec!["resolve"];
    all.extend_from_slice(args);
    s.run(&all)
}

#[test]
fn accept_puts_a_held_value_in_its_slot_and_a_conflicting_rerun_replaces_the_first() {
    let s = study();
    let codes: Vec<String> = open_mismatches(&s).into_iter().map(|m| m.1).collect();
    for code in ["IMPLAUSIBLE", "UNKNOWN_SAMPLE", "DUPLICATE_CONFLICT", "OUT_OF_WINDOW", "PRETEST_GLUCOSE"] {
        assert!(codes.iter().any(|c| c == code), "{code} in {codes:?}");
    }
    let before = exported(&s);
    assert!(!before.iter().any(|r| r[2] == "60"), "IMPLAUSIBLE is held: {before:?}");
    assert!(has(&before, ["U07", "V4", "90", "c_peptide"], "0.5"), "{before:?}");

    let implausible = id_of(&s, "IMPLAUSIBLE");
    let out = resolve(&s, &["--accept", &implausible, "--reason", "lab confirmed the dilution", "--by", "dm.anna"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("mismatch {implausible} (IMPLAUSIBLE) resolved by dm.anna")),
        "{}",
        text(&out)
    );
    assert!(has(&exported(&s), ["U07", "V4", "60", "c_peptide"], "45"));

    let conflict = id_of(&s, "DUPLICATE_CONFLICT");
    let out = resolve(&s, &[&format!("#{conflict}"), "--accept", "--reason", "rerun after QC failure", "--by", "dm"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let after = exported(&s);
    assert!(has(&after, ["U07", "V4", "90", "c_peptide"], "0.7"), "the rerun replaces the first value: {after:?}");
    assert!(!has(&after, ["U07", "V4", "90", "c_peptide"], "0.5"));

    // Both left the open list; --all shows them resolved with who and why.
    let open: Vec<String> = open_mismatches(&s).into_iter().map(|m| m.0).collect();
    assert!(!open.contains(&implausible) && !open.contains(&conflict), "{open:?}");
    let out = s.run(&["report", "mismatches", "--all"]);
    let report = text(&out);
    assert!(report.contains("resolved (accept) by dm.anna"), "{report}");
    assert!(report.contains("lab confirmed the dilution"), "{report}");

    // A decision is never changed.
    let out = resolve(&s, &[&implausible, "--reject", "--reason", "changed my mind", "--by", "dm"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("already resolved (accept) by dm.anna"), "{}", text(&out));

    // Audited under the data manager's name, and the chain holds.
    let store = Store::open_read_only(s.lib("labfeed.db")).unwrap();
    let entries = store.read(|r| r.audit_trail("mismatch", &implausible)).unwrap();
    assert!(entries.is_empty(), "labfeed's own insert is vouched for by its commit row");
    let conn = rusqlite::Connection::open(s.lib("labfeed.db")).unwrap();
    let conn_rows: i64 = conn
        .query_row(
            "SELECT count(*) FROM audit_log WHERE action = 'resolve' AND actor = 'dm.anna' \
             AND detail LIKE '%lab confirmed the dilution%'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(conn_rows, 1);
    assert_eq!(s.run(&["verify-audit"]).status.code(), Some(0));
}

#[test]
fn assign_moves_a_result_and_runs_the_checks_again() {
    let s = study();
    let unknown = id_of(&s, "UNKNOWN_SAMPLE");

    // There is no slot to accept it into; nothing is written.
    let out = resolve(&s, &[&unknown, "--accept", "--reason", "x", "--by", "dm"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("use --assign"), "{}", text(&out));
    assert!(open_mismatches(&s).iter().any(|m| m.0 == unknown));

    // Unknown participants and visits are refused.
    let out = resolve(&s, &[&unknown, "--assign", "U99/V4/15", "--reason", "x", "--by", "dm"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("participant U99 is not in the participant list"), "{}", text(&out));
    let out = resolve(&s, &[&unknown, "--assign", "U08/V9/15", "--reason", "x", "--by", "dm"]);
    assert!(text(&out).contains("visit V9 is not a configured visit"), "{}", text(&out));

    // A minute that is not scheduled is refused up front too: the slot must exist.
    let out = resolve(&s, &[&unknown, "--assign", "U08/V0/45", "--reason", "tube label misread", "--by", "dm"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("minute 45 is not one of mmtt.timepoints"), "{}", text(&out));
    assert!(open_mismatches(&s).iter().any(|m| m.0 == unknown));

    // Assigned to minute 15: accepted there.
    let out = resolve(&s, &[&unknown, "--assign", "U08/V0/15", "--reason", "it was the 15-min tube", "--by", "dm"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!open_mismatches(&s).iter().any(|m| m.0 == unknown));
    assert!(has(&exported(&s), ["U08", "V0", "15", "c_peptide"], "0.4"));
    // The missing-result row for that slot is gone.
    let out = s.run(&["report", "mismatches", "--format", "csv"]);
    let rows = csv_rows(&String::from_utf8_lossy(&out.stdout));
    assert!(
        !rows.iter().any(|r| r[1] == "MISSING_RESULT" && r[3] == "U08" && r[5] == "15" && r[6] == "c_peptide"),
        "{rows:?}"
    );
    assert!(rows.iter().any(|r| r[1] == "MISSING_RESULT" && r[3] == "U08" && r[5] == "30" && r[6] == "c_peptide"));

    // The checks run again at the new slot: 45 nmol/L is still implausible there.
    let implausible = id_of(&s, "IMPLAUSIBLE");
    let out = resolve(&s, &[&implausible, "--assign", "U08/V0/30", "--reason", "x", "--by", "dm"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let again: Vec<_> = open_mismatches(&s).into_iter().filter(|m| m.1 == "IMPLAUSIBLE").collect();
    assert_eq!(again.len(), 1, "{again:?}");
    assert!(again[0].0 != implausible && again[0].2 == "30", "{again:?}");

    // Assigning onto a slot that has a different value is a new conflict, not an overwrite.
    let conflict = id_of(&s, "DUPLICATE_CONFLICT");
    let out = resolve(&s, &[&conflict, "--assign", "U08/V0/15", "--reason", "x", "--by", "dm"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(has(&exported(&s), ["U08", "V0", "15", "c_peptide"], "0.4"));
    let conflicts: Vec<_> = open_mismatches(&s).into_iter().filter(|m| m.1 == "DUPLICATE_CONFLICT").collect();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert!(conflicts[0].0 != conflict && conflicts[0].2 == "15", "{conflicts:?}");
}

#[test]
fn reject_keeps_a_held_value_out_and_withdraws_an_accepted_flagged_one() {
    let s = study();
    let flagged = id_of(&s, "OUT_OF_WINDOW");
    assert!(has(&exported(&s), ["U07", "V4", "30", "c_peptide"], "0.8"), "a flag accepts the value");

    // --reason is required, by clap and in substance.
    let out = resolve(&s, &[&flagged, "--reject", "--by", "dm"]);
    assert_eq!(out.status.code(), Some(2));
    let out = resolve(&s, &[&flagged, "--reject", "--reason", "  ", "--by", "dm"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("--reason"), "{}", text(&out));
    // One decision at a time.
    let out = resolve(&s, &[&flagged, "--reject", "--accept", "--reason", "x", "--by", "dm"]);
    assert_eq!(out.status.code(), Some(2));

    let out = resolve(&s, &[&flagged, "--reject", "--reason", "drawn 22 min late, not usable", "--by", "dm"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("withdrawn from U07 V4 minute 30 c_peptide"), "{}", text(&out));
    assert!(!exported(&s).iter().any(|r| r[..4] == ["U07", "V4", "30", "c_peptide"]));
    let out = s.run(&["report", "mismatches", "--format", "csv"]);
    let rows = csv_rows(&String::from_utf8_lossy(&out.stdout));
    assert!(rows.iter().any(|r| r[1] == "MISSING_RESULT" && r[3] == "U07" && r[5] == "30" && r[6] == "c_peptide"));
    // In the LB export neither the rejected, the held nor the empty slot has a
    // record: none was marked not done.
    let out = s.run(&["export", "lb"]);
    let lb = csv_rows(&String::from_utf8_lossy(&out.stdout));
    let col = |name: &str| lb[0].iter().position(|h| h == name).unwrap();
    let reason = |minute: &str| {
        lb.iter()
            .find(|r| {
                r[col("USUBJID")].ends_with("-U07") && r[col("LBTESTCD")] == "CPEPTIDE" && r[col("LBTPT")] == minute
            })
            .map(|r| (r[col("LBSTAT")].clone(), r[col("LBREASND")].clone()))
    };
    assert_eq!(reason("MMTT 30 MIN"), None);
    assert_eq!(reason("MMTT 60 MIN"), None);
    assert_eq!(reason("MMTT 15 MIN"), None);
    assert!(reason("MMTT 90 MIN").is_some(), "the accepted one has");
    // 2 visits × 7 minutes × 2 analytes, less the 2 values still accepted (U07 V4 90 C-peptide, 0 glucose).
    let status = text(&s.run(&["status"]));
    assert!(status.contains("\n  MISSING_RESULT: 26\n"), "{status}");

    // The withdrawn value is still on record as a result version.
    let store = Store::open_read_only(s.lib("labfeed.db")).unwrap();
    let slot = labfeed::store::Slot::new("U07", "V4", 30, "c_peptide");
    let history = store.read(|r| r.result_history(&slot)).unwrap();
    assert_eq!(history.len(), 2);
    assert!(!history[0].withdrawn && history[1].withdrawn && history[1].value == history[0].value);
    assert!(store.read(|r| r.current_result(&slot)).unwrap().is_none());
    drop(store);

    // The same value delivered again stays out (a duplicate of a rejected value).
    let again = s.file(
        "again.hl7",
        "MSH|^~\\&|CENTRALLAB|CLAB|STUDYDB|T1D|20260313154500||ORU^R01^ORU_R01|C2|P|2.5.1\r\
PID|1||U07^^^TRIAL^PI\r\
OBR|1|U07-V4-T30^STUDY||MMTT|||202603020852\r\
OBX|1|NM|1986-9^C peptide^LN||0.8|nmol/L|||||F\r",
    );
    let out = s.run(&["ingest", path(&again)]);
    assert!(text(&out).contains("1 duplicate"), "{}", text(&out));
    assert!(!exported(&s).iter().any(|r| r[..4] == ["U07", "V4", "30", "c_peptide"]));

    // A held value rejected stays out; PRETEST_GLUCOSE accepted keeps its value.
    let unknown = id_of(&s, "UNKNOWN_SAMPLE");
    assert_eq!(
        resolve(&s, &[&unknown, "--reject", "--reason", "not a study tube", "--by", "dm"]).status.code(),
        Some(0)
    );
    let glucose = id_of(&s, "PRETEST_GLUCOSE");
    let out = resolve(&s, &[&glucose, "--accept", "--reason", "PI decided to run the test", "--by", "dm"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(exported(&s).iter().any(|r| r[..4] == ["U07", "V4", "0", "glucose"]));
    let codes: Vec<String> = open_mismatches(&s).into_iter().map(|m| m.1).collect();
    assert!(!codes.iter().any(|c| c == "PRETEST_GLUCOSE" || c == "UNKNOWN_SAMPLE"), "{codes:?}");

    // A message that could not be parsed has nothing to accept or assign; it is closed with --reject.
    let broken = s.file("broken.hl7", "MSH|^~|BAD\rPID|1\r");
    assert_eq!(s.run(&["ingest", path(&broken)]).status.code(), Some(1));
    let parse_error = id_of(&s, "PARSE_ERROR");
    let out = resolve(&s, &[&parse_error, "--accept", "--reason", "x", "--by", "dm"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("could not be parsed"), "{}", text(&out));
    let out = resolve(&s, &[&parse_error, "--assign", "U07/V4/15", "--reason", "x", "--by", "dm"]);
    assert_eq!(out.status.code(), Some(2));
    let out = resolve(&s, &[&parse_error, "--reject", "--reason", "the lab sent it again", "--by", "dm"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Unknown ids are a usage error.
    let out = resolve(&s, &["9999", "--reject", "--reason", "x", "--by", "dm"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("there is no mismatch 9999"), "{}", text(&out));
}

#[test]
fn an_accepted_value_assigned_elsewhere_moves_and_is_checked_again_there() {
    let s = study();
    let late = id_of(&s, "OUT_OF_WINDOW");
    // Drawn at 08:52, 22 min after the meal: not the 30-min sample; say it was the 15-min one.
    let out = resolve(&s, &[&late, "--assign", "U07/V4/15", "--reason", "label says T15", "--by", "dm"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let rows = exported(&s);
    assert!(has(&rows, ["U07", "V4", "15", "c_peptide"], "0.8"), "{rows:?}");
    assert!(!rows.iter().any(|r| r[..4] == ["U07", "V4", "30", "c_peptide"]), "withdrawn from 30: {rows:?}");
    // 22 min is outside 15 ± 2 too: flagged again at its new minute, with the clock time.
    let open = open_mismatches(&s);
    let flags: Vec<_> = open.iter().filter(|m| m.1 == "OUT_OF_WINDOW").collect();
    assert_eq!(flags.len(), 1, "{open:?}");
    assert!(flags[0].0 != late && flags[0].2 == "15", "{flags:?}");
    let out = s.run(&["report", "mismatches"]);
    assert!(text(&out).contains("collected 08:52, 22 min after meal start; nominal 15 ± 2 min"), "{}", text(&out));
}

#[test]
fn user_logname_and_by_never_name_the_signer() {
    let s = study();
    let flagged = id_of(&s, "PRETEST_GLUCOSE");
    s.create_accounts();
    let by = ["--by", "Dr. Chief Investigator", "--user", DATA_MANAGER.0, "--password-stdin"];
    let mut cmd = s.command(&[&["resolve", flagged.as_str(), "--accept", "--reason", "checked"][..], &by[..]].concat());
    cmd.env("USER", "mallory").env("LOGNAME", "mallory");
    let out = with_stdin(cmd, &format!("{}\n", DATA_MANAGER.1));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("resolved by dm.anna (Anna Data, data-manager)"), "{}", text(&out));
    assert!(!text(&out).contains("mallory") && !text(&out).contains("Chief"), "{}", text(&out));
    let conn = rusqlite::Connection::open(s.lib("labfeed.db")).unwrap();
    let (actor, detail): (String, String) = conn
        .query_row("SELECT actor, detail FROM audit_log WHERE action = 'sign' ORDER BY seq DESC LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let detail: serde_json::Value = serde_json::from_str(&detail).unwrap();
    assert_eq!(actor, DATA_MANAGER.0);
    assert_eq!(detail["full_name"], "Anna Data");
    assert_eq!(detail["role"], "data-manager");
    assert_eq!(detail["meaning"], "resolve accept");
    assert_eq!(detail["reason"], "checked");
    assert_eq!(detail["on_behalf_of"], "Dr. Chief Investigator");
    let os = detail["os_account"].as_str().unwrap();
    assert!(os.contains(&format!("uid {}", nix::unistd::getuid())) && !os.contains("mallory"), "{os}");
    let resolver: String =
        conn.query_row("SELECT actor FROM audit_log WHERE action = 'resolve'", [], |r| r.get(0)).unwrap();
    assert_eq!(resolver, DATA_MANAGER.0);

    // No login: refused, whatever $USER says, and nothing changes.
    let other = id_of(&s, "UNKNOWN_SAMPLE");
    let audited: i64 = conn.query_row("SELECT count(*) FROM audit_log", [], |r| r.get(0)).unwrap();
    let out =
        s.command(&["resolve", &other, "--reject", "--reason", "not ours"]).env("USER", "mallory").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--user NAME"), "{}", text(&out));
    let after: i64 = conn.query_row("SELECT count(*) FROM audit_log", [], |r| r.get(0)).unwrap();
    assert_eq!(after, audited);
}

#[test]
fn accepting_a_mismatch_raised_at_an_assigned_slot_accepts_it_there() {
    let s = study();
    // The rerun (0.70, held as a conflict at U07 V4 90) was really the 120-min tube.
    let conflict = id_of(&s, "DUPLICATE_CONFLICT");
    let out = resolve(&s, &[&conflict, "--assign", "U07/V4/120", "--reason", "label", "--by", "dm"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(has(&exported(&s), ["U07", "V4", "120", "c_peptide"], "0.7"));

    // An unknown tube assigned where a value already stands: a new conflict there; accepting it
    // replaces the value at the assigned slot, never at a slot looked up from the sample ID.
    let unknown = id_of(&s, "UNKNOWN_SAMPLE");
    let out = resolve(&s, &[&unknown, "--assign", "U07/V4/120", "--reason", "label", "--by", "dm"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let raised = id_of(&s, "DUPLICATE_CONFLICT");
    let out = resolve(&s, &[&raised, "--accept", "--reason", "the later assay counts", "--by", "dm"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("U07 V4 minute 120 c_peptide is now 0.4 nmol/L"), "{}", text(&out));
    let rows = exported(&s);
    assert!(has(&rows, ["U07", "V4", "120", "c_peptide"], "0.4"), "{rows:?}");
    assert!(has(&rows, ["U07", "V4", "90", "c_peptide"], "0.5"), "{rows:?}");
}

/// U08's 60-min glucose of 80 mmol/L, preliminary (held as NOT_FINAL) and
/// also implausible, which ingest never gets to say.
pub(crate) fn ingest_preliminary_implausible_glucose(s: &Study) {
    let file = s.file(
        "prelim.astm",
        &e411(
            &[
                order(1, "U08-V0-T60"),
                "R|1|^^^GLUC|80|mmol/L||N||P||ADMIN|20260303100000|20260303101500|E1\r".to_owned(),
            ]
            .concat(),
        ),
    );
    let out = s.run(&["ingest", path(&file)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn accepting_one_problem_does_not_accept_the_next_one_the_checks_find() {
    let s = study();
    ingest_preliminary_implausible_glucose(&s);
    let not_final = id_of(&s, "NOT_FINAL");
    let out = resolve(&s, &[&not_final, "--accept", "--reason", "lab says final", "--by", "dm"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("another check holds it: IMPLAUSIBLE"), "{}", text(&out));
    assert!(!exported(&s).iter().any(|r| r[..4] == ["U08", "V0", "60", "glucose"]), "not stored");
    let implausible: Vec<_> = open_mismatches(&s).into_iter().filter(|m| m.1 == "IMPLAUSIBLE" && m.2 == "60").collect();
    assert_eq!(implausible.len(), 2, "the first one (U07) and the new one: {implausible:?}");
    let new = implausible.iter().map(|m| m.0.parse::<i64>().unwrap()).max().unwrap().to_string();
    // Seen and accepted too: now it is stored.
    let out = resolve(&s, &[&new, "--accept", "--reason", "confirmed by the lab", "--by", "dm"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(has(&exported(&s), ["U08", "V0", "60", "glucose"], "80"));
}

#[test]
fn resolve_with_a_wrong_database_path_creates_nothing() {
    let s = Study::new(&[]);
    let out = resolve(&s, &["1", "--reject", "--reason", "x", "--user", "dm.anna"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("does not exist"), "{}", text(&out));
    assert!(!s.lib("labfeed.db").exists());
}

/// Control characters in `--reason` or `--by` would break the one-line
/// history of `report mismatches --all` and could forge lines in it: refused
/// (exit 2) with a message naming the option, and nothing is written.
#[test]
fn control_characters_in_the_reason_or_the_name_are_refused_and_nothing_changes() {
    let s = study();
    let id = id_of(&s, "IMPLAUSIBLE");
    let before = (exported(&s), open_mismatches(&s));
    let audit = |s: &Study| -> i64 {
        let conn = rusqlite::Connection::open(s.lib("labfeed.db")).unwrap();
        conn.query_row("SELECT count(*) FROM audit_log", [], |r| r.get(0)).unwrap()
    };
    let rows = audit(&s);
    for bad in ["a\nresolved (accept) by x", "a\rb", "a\tb", "a\x1b[2Jb", "a\u{7f}b", "a\u{85}b"] {
        for (option, args) in [
            ("--reason", ["--reject", "--reason", bad, "--by", "dm"]),
            ("--by", ["--reject", "--reason", "implausible", "--by", bad]),
        ] {
            let mut all = vec![id.as_str()];
            all.extend_from_slice(&args);
            let out = resolve(&s, &all);
            assert_eq!(out.status.code(), Some(2), "{option} {bad:?}: {}", text(&out));
            assert!(text(&out).contains(&format!("{option} must not contain control characters")), "{}", text(&out));
        }
    }
    assert_eq!((exported(&s), open_mismatches(&s)), before);
    assert_eq!(audit(&s), rows);
    // A name with a control character is refused by import too.
    let f = s.file("more.csv", "participant\nU09\n");
    let out = s.run(&["import", "participants", path(&f), "--by", "dm\nroot"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--by must not contain control characters"), "{}", text(&out));
}

#[test]
fn an_unkept_value_is_not_accepted_from_what_is_stored_and_the_advice_is_to_deliver_it_again() {
    let s = Study::new(&[(r#""CPEP" = "c_peptide", "GLUC" = "glucose""#, r#""CPEP" = "c_peptide""#)]);
    let f = s.file("participants.csv", "participant\nU07\n");
    assert_eq!(s.run(&["import", "participants", path(&f)]).status.code(), Some(0));
    let v = s.file("visits.csv", "participant,visit,meal_start\nU07,V4,2026-03-02T08:30\n");
    assert_eq!(s.run(&["import", "visits", path(&v)]).status.code(), Some(0));
    let upload =
        s.file("g.astm", &e411(&[order(1, "U07-V4-T60"), r("GLUC", "5.5", "mmol/L", "20260302101500")].concat()));
    assert_eq!(s.run(&["ingest", path(&upload)]).status.code(), Some(0));
    let id = id_of(&s, "UNKNOWN_TEST");
    for action in [&["--accept"][..], &["--assign", "U07/V4/60"]] {
        let mut args = vec![id.as_str()];
        args.extend_from_slice(action);
        args.extend_from_slice(&["--reason", "mapped now"]);
        let out = resolve(&s, &args);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains("its value was not kept"), "{}", text(&out));
        assert!(text(&out).contains("drop the file in the inbox again or `labfeed ingest` it"), "{}", text(&out));
    }
    // What the advice says works.
    let config = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(&s.config, config.replace(r#""CPEP" = "c_peptide""#, r#""CPEP" = "c_peptide", "GLUC" = "glucose""#))
        .unwrap();
    assert_eq!(s.run(&["ingest", path(&upload)]).status.code(), Some(0));
    assert!(has(&exported(&s), ["U07", "V4", "60", "glucose"], "5.5"), "{:?}", exported(&s));
    assert!(open_mismatches(&s).iter().all(|m| m.1 != "UNKNOWN_TEST"));
    // labfeed closed it: there is no person's decision to reopen.
    let out = resolve(&s, &[&id, "--reopen", "--reason", "check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}
