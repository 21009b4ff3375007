//! Reversible and complete review (issue 10, points 2 and 8): `resolve
//! --reopen`, MISSING_RESULT ids and `--not-done`, `report mismatches --all`
//! history, and `--assign` checking its target first. Through the real
//! binary on real SQLite files, checked in the exports.

use std::collections::BTreeMap;

use labfeed::store::Store;

use super::resolve::{
    exported, has, id_of, ingest_preliminary_implausible_glucose, open_mismatches, r, resolve, study,
};
use super::support::{TempStudy as Study, csv_rows, e411, ok, order, path, text};

/// `export results` and `export lb`, as written.
fn exports(s: &Study) -> (String, String) {
    let results = s.run(&["export", "results"]);
    assert_eq!(results.status.code(), Some(0), "{}", text(&results));
    let lb = s.run(&["export", "lb"]);
    assert_eq!(lb.status.code(), Some(0), "{}", text(&lb));
    (String::from_utf8_lossy(&results.stdout).into_owned(), String::from_utf8_lossy(&lb.stdout).into_owned())
}

/// `report mismatches --format csv` (with `--all`), header included.
fn review_csv(s: &Study, all: bool) -> Vec<Vec<String>> {
    let mut args = vec!["report", "mismatches", "--format", "csv"];
    if all {
        args.push("--all");
    }
    let out = s.run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    csv_rows(&String::from_utf8_lossy(&out.stdout))
}

/// MISSING_RESULT rows: (participant, visit, minute, analyte) → id.
fn missing_ids(s: &Study) -> BTreeMap<(String, String, String, String), String> {
    review_csv(s, false)[1..]
        .iter()
        .filter(|r| r[1] == "MISSING_RESULT")
        .map(|r| ((r[3].clone(), r[4].clone(), r[5].clone(), r[6].clone()), r[0].clone()))
        .collect()
}

fn missing_id(s: &Study, participant: &str, visit: &str, minute: &str, analyte: &str) -> String {
    let ids = missing_ids(s);
    ids.get(&(participant.into(), visit.into(), minute.into(), analyte.into()))
        .cloned()
        .unwrap_or_else(|| panic!("no MISSING_RESULT for {participant} {visit} {minute} {analyte}: {ids:?}"))
}

/// `status`'s count of open MISSING_RESULT rows.
fn status_missing(s: &Study) -> u64 {
    let status = text(&s.run(&["status"]));
    status.lines().find_map(|l| l.trim().strip_prefix("MISSING_RESULT: ")).map_or(0, |n| n.trim().parse().unwrap())
}

/// LBSTAT and LBREASND of one LB record (USUBJID suffix, LBTESTCD, LBTPT).
fn lb_status(s: &Study, participant: &str, test: &str, timepoint: &str) -> Option<(String, String, String)> {
    let lb = csv_rows(&exports(s).1);
    let col = |name: &str| lb[0].iter().position(|h| h == name).unwrap();
    lb.iter()
        .find(|r| {
            r[col("USUBJID")].ends_with(&format!("-{participant}"))
                && r[col("LBTESTCD")] == test
                && r[col("LBTPT")] == timepoint
        })
        .map(|r| (r[col("LBSTAT")].clone(), r[col("LBREASND")].clone(), r[col("LBSTRESC")].clone()))
}

fn refused(out: &std::process::Output, says: &str) {
    assert_eq!(out.status.code(), Some(2), "{}", text(out));
    assert!(text(out).contains(says), "{:?} in {}", says, text(out));
}

#[test]
fn reopening_a_rejection_restores_the_exports_and_the_mismatch_can_be_decided_again() {
    let s = study();
    let before = exports(&s);
    let flagged = id_of(&s, "OUT_OF_WINDOW");
    refused(
        &resolve(&s, &[&flagged, "--reopen", "--reason", "x", "--by", "dm"]),
        &format!("mismatch {flagged} is open: there is no decision to reopen"),
    );
    // --reopen needs a reason like any decision.
    assert_eq!(resolve(&s, &[&flagged, "--reopen", "--by", "dm"]).status.code(), Some(2));

    ok(&resolve(&s, &[&flagged, "--reject", "--reason", "drawn late", "--by", "dm"]));
    assert_ne!(exports(&s), before);
    let out = resolve(&s, &[&flagged, "--reopen", "--reason", "the draw time was mistyped", "--by", "dm.lead"]);
    ok(&out);
    assert!(
        text(&out)
            .contains(&format!("mismatch {flagged} (OUT_OF_WINDOW) reopened by dm.anna (Anna Data, data-manager)")),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("U07 V4 minute 30 c_peptide is 0.8 nmol/L again"), "{}", text(&out));
    assert_eq!(exports(&s), before, "results and LB exactly as before the rejection");
    assert!(open_mismatches(&s).iter().any(|m| m.0 == flagged));
    refused(&resolve(&s, &[&flagged, "--reopen", "--reason", "again", "--by", "dm"]), "is open");

    // Decided again: one mismatch, several decisions over time.
    ok(&resolve(&s, &[&flagged, "--accept", "--reason", "within the protocol's tolerance", "--by", "dm"]));
    assert_eq!(exports(&s), before, "accepting a flag keeps the value");
    let report = text(&s.run(&["report", "mismatches", "--all"]));
    let lines: Vec<&str> = report.lines().collect();
    let at = lines.iter().position(|l| l.starts_with(&format!("  #{flagged} OUT_OF_WINDOW"))).expect(&report);
    assert!(lines[at + 1].starts_with("      resolved (reject) by dm.anna (Anna Data, data-manager) at "), "{report}");
    assert!(lines[at + 1].ends_with(": drawn late"), "{report}");
    assert!(lines[at + 2].starts_with("      reopened by dm.anna (Anna Data, data-manager) at "), "{report}");
    assert!(lines[at + 3].starts_with("      resolved (accept) by dm.anna (Anna Data, data-manager) at "), "{report}");
    // The CSV keeps the SPEC §5 columns first, then the latest decision and the history.
    let rows = review_csv(&s, true);
    assert_eq!(
        rows[0][15..],
        ["decided_by", "decided_at", "decision", "reason", "history", "decided_by_name", "decided_by_role"]
            .map(String::from),
        "{:?}",
        rows[0]
    );
    let row = rows.iter().find(|r| r[0] == flagged).unwrap();
    assert_eq!((row[14].as_str(), row[15].as_str(), row[17].as_str()), ("resolved", "dm.anna", "accept"));
    assert_eq!(row[19].matches(" | ").count(), 2, "{row:?}");
    assert!(row[19].contains("reopened by dm.anna"), "{row:?}");

    // Reopened again and rejected: still one audit chain.
    ok(&resolve(&s, &[&flagged, "--reopen", "--reason", "second thoughts", "--by", "dm"]));
    ok(&resolve(&s, &[&flagged, "--reject", "--reason", "drawn late after all", "--by", "dm"]));
    assert!(!exported(&s).iter().any(|r| r[..4] == ["U07", "V4", "30", "c_peptide"]));
    assert_eq!(s.run(&["verify-audit"]).status.code(), Some(0));

    // A value that arrived since in the emptied slot is not overwritten by a reopen.
    let late = s.file(
        "late.hl7",
        "MSH|^~\\&|CENTRALLAB|CLAB|STUDYDB|T1D|20260314154500||ORU^R01^ORU_R01|C3|P|2.5.1\r\
PID|1||U07^^^TRIAL^PI\r\
OBR|1|U07-V4-T30^STUDY||MMTT|||202603020900\r\
OBX|1|NM|1986-9^C peptide^LN||0.9|nmol/L|||||F\r",
    );
    ok(&s.run(&["ingest", path(&late)]));
    assert!(has(&exported(&s), ["U07", "V4", "30", "c_peptide"], "0.9"));
    let now = exports(&s);
    refused(&resolve(&s, &[&flagged, "--reopen", "--reason", "x", "--by", "dm"]), "has changed since this decision");
    assert_eq!(exports(&s), now, "nothing written");
}

#[test]
fn reopening_an_acceptance_or_an_assignment_withdraws_the_value_and_holds_it_again() {
    let s = study();
    let before = exports(&s);

    let implausible = id_of(&s, "IMPLAUSIBLE");
    ok(&resolve(&s, &[&implausible, "--accept", "--reason", "dilution confirmed", "--by", "dm"]));
    assert!(has(&exported(&s), ["U07", "V4", "60", "c_peptide"], "45"));
    let out = resolve(&s, &[&implausible, "--reopen", "--reason", "lab withdrew the confirmation", "--by", "dm"]);
    ok(&out);
    assert!(text(&out).contains("its result is held again"), "{}", text(&out));
    assert_eq!(exports(&s), before);
    assert_eq!(id_of(&s, "IMPLAUSIBLE"), implausible, "the same mismatch is open again");

    // A rerun accepted over the first value: reopening puts the first value back.
    let conflict = id_of(&s, "DUPLICATE_CONFLICT");
    ok(&resolve(&s, &[&conflict, "--accept", "--reason", "rerun", "--by", "dm"]));
    assert!(has(&exported(&s), ["U07", "V4", "90", "c_peptide"], "0.7"));
    ok(&resolve(&s, &[&conflict, "--reopen", "--reason", "wrong rerun", "--by", "dm"]));
    assert_eq!(exports(&s), before);

    // An unknown tube assigned to a slot: reopening empties the slot again.
    let unknown = id_of(&s, "UNKNOWN_SAMPLE");
    ok(&resolve(&s, &[&unknown, "--assign", "U08/V0/15", "--reason", "label", "--by", "dm"]));
    assert!(has(&exported(&s), ["U08", "V0", "15", "c_peptide"], "0.4"));
    ok(&resolve(&s, &[&unknown, "--reopen", "--reason", "wrong participant", "--by", "dm"]));
    assert_eq!(exports(&s), before);
    assert_eq!(id_of(&s, "UNKNOWN_SAMPLE"), unknown);

    // A held value rejected, then reopened: held again, nothing else changed.
    ok(&resolve(&s, &[&unknown, "--reject", "--reason", "not ours", "--by", "dm"]));
    ok(&resolve(&s, &[&unknown, "--reopen", "--reason", "it is ours", "--by", "dm"]));
    assert_eq!(exports(&s), before);
    assert_eq!(s.run(&["verify-audit"]).status.code(), Some(0));
}

#[test]
fn reopening_a_move_puts_the_value_back_and_closes_what_the_move_raised() {
    let s = study();
    let before = exports(&s);
    let late = id_of(&s, "OUT_OF_WINDOW");
    // 22 min after the meal, assigned to minute 15: flagged again there (a new mismatch).
    ok(&resolve(&s, &[&late, "--assign", "U07/V4/15", "--reason", "label says T15", "--by", "dm"]));
    let raised: Vec<_> = open_mismatches(&s).into_iter().filter(|m| m.1 == "OUT_OF_WINDOW").collect();
    assert_eq!(raised.len(), 1);
    assert_eq!(raised[0].2, "15");
    let out = resolve(&s, &[&late, "--reopen", "--reason", "label was right", "--by", "dm"]);
    ok(&out);
    assert!(text(&out).contains(&format!("mismatch {} closed with it", raised[0].0)), "{}", text(&out));
    assert_eq!(exports(&s), before);
    let flags: Vec<_> = open_mismatches(&s).into_iter().filter(|m| m.1 == "OUT_OF_WINDOW").collect();
    assert_eq!(flags, [(late.clone(), "OUT_OF_WINDOW".to_owned(), "30".to_owned())]);
    // The raised one says why it closed.
    let rows = review_csv(&s, true);
    let row = rows.iter().find(|r| r[0] == raised[0].0).unwrap();
    assert_eq!((row[14].as_str(), row[17].as_str()), ("resolved", "auto"), "{row:?}");
    assert!(row[18].contains("which was reopened"), "{row:?}");
}

#[test]
fn a_reopen_that_would_undo_a_later_decision_is_refused_until_that_one_is_reopened() {
    let s = study();
    let before = exports(&s);
    // The rerun goes to minute 120; then the unknown tube is assigned there too: a new
    // conflict at 120, which the data manager accepts.
    let conflict = id_of(&s, "DUPLICATE_CONFLICT");
    ok(&resolve(&s, &[&conflict, "--assign", "U07/V4/120", "--reason", "label", "--by", "dm"]));
    let unknown = id_of(&s, "UNKNOWN_SAMPLE");
    ok(&resolve(&s, &[&unknown, "--assign", "U07/V4/120", "--reason", "label", "--by", "dm"]));
    let raised = id_of(&s, "DUPLICATE_CONFLICT");
    ok(&resolve(&s, &[&raised, "--accept", "--reason", "the later assay", "--by", "dm"]));
    assert!(has(&exported(&s), ["U07", "V4", "120", "c_peptide"], "0.4"));

    let now = exports(&s);
    let csv = review_csv(&s, true);
    refused(
        &resolve(&s, &[&unknown, "--reopen", "--reason", "x", "--by", "dm"]),
        &format!("mismatch {raised} (DUPLICATE_CONFLICT), raised by this decision, was decided since"),
    );
    refused(&resolve(&s, &[&conflict, "--reopen", "--reason", "x", "--by", "dm"]), "has changed since");
    assert_eq!((exports(&s), review_csv(&s, true)), (now, csv), "nothing written");

    // Newest first, each one restores its own step.
    ok(&resolve(&s, &[&raised, "--reopen", "--reason", "x", "--by", "dm"]));
    assert!(has(&exported(&s), ["U07", "V4", "120", "c_peptide"], "0.7"));
    ok(&resolve(&s, &[&unknown, "--reopen", "--reason", "x", "--by", "dm"]));
    assert!(!open_mismatches(&s).iter().any(|m| m.0 == raised), "the conflict it raised is closed");
    ok(&resolve(&s, &[&conflict, "--reopen", "--reason", "x", "--by", "dm"]));
    assert_eq!(exports(&s), before);
    assert_eq!(s.run(&["verify-audit"]).status.code(), Some(0));
}

#[test]
fn missing_results_have_ids_that_stay_the_same_while_the_slot_is_empty() {
    let s = study();
    let first = missing_ids(&s);
    // 2 visits × 7 minutes × 2 analytes, less the 3 accepted values (U07 V4 30 and 90 C-peptide, 0 glucose).
    assert_eq!(first.len(), 25, "{first:?}");
    assert!(first.values().all(|id| !id.is_empty()), "{first:?}");
    assert_eq!(missing_ids(&s), first, "the same ids in every report");
    // One namespace with the stored mismatches: no id is used twice.
    let rows = review_csv(&s, true);
    let mut ids: Vec<&String> = rows[1..].iter().map(|r| &r[0]).collect();
    let count = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), count, "{rows:?}");

    // Another delivery fills one slot: that row goes, every other keeps its id.
    let file =
        s.file("more.astm", &e411(&[order(1, "U08-V0-T30"), r("CPEP", "0.6", "nmol/L", "20260303101500")].concat()));
    ok(&s.run(&["ingest", path(&file)]));
    let after = missing_ids(&s);
    let filled = ("U08".to_owned(), "V0".to_owned(), "30".to_owned(), "c_peptide".to_owned());
    assert!(!after.contains_key(&filled));
    assert_eq!(after.len(), first.len() - 1);
    assert!(after.iter().all(|(slot, id)| first.get(slot) == Some(id)), "{after:?} vs {first:?}");
    // The text report names the id too, so `resolve` can be given it.
    let report = text(&s.run(&["report", "mismatches"]));
    let id = missing_id(&s, "U08", "V0", "-10", "glucose");
    assert!(report.contains(&format!("  #{id} MISSING_RESULT  minute -10, glucose: ")), "{report}");

    // A timepoint added to the configuration: until labfeed next writes, its rows have no id;
    // the next write (here an import that changes nothing) gives them one, the rest stay.
    let config = std::fs::read_to_string(&s.config).unwrap();
    let more = "timepoints = [-10, 0, 15, 30, 60, 90, 120, 150]";
    std::fs::write(&s.config, config.replace("timepoints = [-10, 0, 15, 30, 60, 90, 120]", more)).unwrap();
    let pending = missing_ids(&s);
    let new: Vec<_> = pending.iter().filter(|(slot, _)| slot.2 == "150").collect();
    assert_eq!(new.len(), 4, "{pending:?}");
    assert!(new.iter().all(|(_, id)| id.is_empty()), "{new:?}");
    let visits = s.file("visits.csv", "participant,visit,meal_start\nU07,V4,2026-03-02T08:30\n");
    ok(&s.run(&["import", "visits", path(&visits)]));
    let allocated = missing_ids(&s);
    assert!(allocated.iter().all(|(_, id)| !id.is_empty()), "{allocated:?}");
    assert!(after.iter().all(|(slot, id)| allocated.get(slot) == Some(id)));
}

#[test]
fn missing_slot_ids_are_allocated_once_per_slot_and_audited() {
    use labfeed::store::{Participant, Visit};
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path().join("study.db")).unwrap();
    store
        .write(|tx| {
            tx.upsert_participant(&Participant { code: "U01".into(), site: None })?;
            let meal = Some("2026-03-02T08:30".parse().unwrap());
            tx.upsert_visit(&Visit { participant: "U01".into(), visit: "V0".into(), meal_start: meal })?;
            tx.upsert_visit(&Visit { participant: "U01".into(), visit: "V1".into(), meal_start: None })?;
            Ok(())
        })
        .unwrap();
    let analytes = ["c_peptide".to_owned()];
    assert_eq!(store.write(|tx| tx.allocate_missing_slot_ids(&[0, 30], &analytes)).unwrap(), 2, "V1 has no meal");
    assert_eq!(store.write(|tx| tx.allocate_missing_slot_ids(&[0, 30], &analytes)).unwrap(), 0);
    let before = store.read(|r| r.slot_states()).unwrap().ids;
    assert_eq!(store.write(|tx| tx.allocate_missing_slot_ids(&[0, 30, 60], &analytes)).unwrap(), 1);
    let after = store.read(|r| r.slot_states()).unwrap().ids;
    assert_eq!(after.len(), 3);
    assert!(before.iter().all(|(slot, id)| after.get(slot) == Some(id)), "{before:?} {after:?}");
    // labfeed's own rows are vouched for by the commit row of their transaction, not copied.
    for id in after.values() {
        assert!(store.read(|r| r.audit_trail("mismatch", &id.to_string())).unwrap().is_empty());
    }
    let verified = store.verify_integrity(None, &labfeed::store::head::default_path(store.path())).unwrap();
    assert_eq!(verified.problem, None);
    // They are slot ids, not findings: nothing is open because of them.
    assert_eq!(store.read(|r| r.open_mismatch_count()).unwrap(), 0);
    assert!(store.read(|r| r.mismatch_report(true)).unwrap().is_empty());
    assert!(store.verify_audit_chain().unwrap().is_intact());
}

#[test]
fn not_done_closes_a_missing_result_and_export_lb_says_why() {
    let s = study();
    let open_missing = status_missing(&s);
    assert_eq!(open_missing, 25);
    let id = missing_id(&s, "U08", "V0", "-10", "glucose");

    // Only for missing results, and a missing result takes no other decision.
    let flagged = id_of(&s, "OUT_OF_WINDOW");
    refused(
        &resolve(&s, &[&flagged, "--not-done", "--reason", "x", "--by", "dm"]),
        "--not-done is for MISSING_RESULT rows",
    );
    refused(&resolve(&s, &[&id, "--accept", "--reason", "x", "--by", "dm"]), "use --not-done");
    refused(&resolve(&s, &[&id, "--reopen", "--reason", "x", "--by", "dm"]), "is open");
    // A slot whose result is held for review is not "not done".
    let held = missing_id(&s, "U07", "V4", "60", "c_peptide");
    refused(&resolve(&s, &[&held, "--not-done", "--reason", "x", "--by", "dm"]), "is held for review");
    assert_eq!(lb_status(&s, "U08", "GLUC", "MMTT -10 MIN"), None, "an empty slot has no LB record");
    let before = exports(&s);

    let out = resolve(&s, &[&id, "--not-done", "--reason", "vein collapsed, no sample", "--by", "dm"]);
    ok(&out);
    assert!(text(&out).contains(&format!("mismatch {id} (MISSING_RESULT) marked not done by dm")), "{}", text(&out));
    assert!(!missing_ids(&s).values().any(|v| *v == id), "left the open list");
    assert_eq!(status_missing(&s), open_missing - 1);
    assert_eq!(
        lb_status(&s, "U08", "GLUC", "MMTT -10 MIN"),
        Some(("NOT DONE".to_owned(), "vein collapsed, no sample".to_owned(), String::new()))
    );
    let rows = review_csv(&s, true);
    let row = rows.iter().find(|r| r[0] == id).expect("listed with --all");
    assert_eq!((row[1].as_str(), row[14].as_str(), row[17].as_str()), ("MISSING_RESULT", "resolved", "not_done"));
    assert!(
        text(&s.run(&["report", "mismatches", "--all"]))
            .contains("      not done by dm.anna (Anna Data, data-manager) at ")
    );
    refused(&resolve(&s, &[&id, "--not-done", "--reason", "x", "--by", "dm"]), "is already marked not done");

    // Reopened: missing (and counted) again, with the same id.
    ok(&resolve(&s, &[&id, "--reopen", "--reason", "the sample was found", "--by", "dm"]));
    assert_eq!(missing_id(&s, "U08", "V0", "-10", "glucose"), id);
    assert_eq!(status_missing(&s), open_missing);
    assert_eq!(exports(&s), before);

    // A visit whose meal is still to come lacks nothing yet: its slots have ids, but are not missing.
    let future = s.file("future.csv", "participant,visit,meal_start\nU08,V1,2099-01-05T08:00\n");
    ok(&s.run(&["import", "visits", path(&future)]));
    assert!(!missing_ids(&s).keys().any(|k| k.1 == "V1"));
    let conn = rusqlite::Connection::open(s.lib("labfeed.db")).unwrap();
    let later: i64 = conn
        .query_row(
            "SELECT id FROM mismatch WHERE code = 'MISSING_RESULT' AND participant = 'U08' AND visit = 'V1' LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    drop(conn);
    refused(&resolve(&s, &[&later.to_string(), "--not-done", "--reason", "x", "--by", "dm"]), "nothing is missing yet");

    // Not done again, then a result arrives after all: the result stands.
    ok(&resolve(&s, &[&id, "--not-done", "--reason", "no sample", "--by", "dm"]));
    let file =
        s.file("found.astm", &e411(&[order(1, "U08-V0-T-10"), r("GLUC", "5.5", "mmol/L", "20260303101500")].concat()));
    ok(&s.run(&["ingest", path(&file)]));
    assert!(has(&exported(&s), ["U08", "V0", "-10", "glucose"], "5.5"));
    assert_eq!(lb_status(&s, "U08", "GLUC", "MMTT -10 MIN"), Some((String::new(), String::new(), "5.5".to_owned())));
    assert!(!review_csv(&s, true).iter().any(|r| r[0] == id), "the slot is not missing any more");
    assert_eq!(status_missing(&s), open_missing - 1);
    assert_eq!(s.run(&["verify-audit"]).status.code(), Some(0));
}

#[test]
fn assign_to_a_slot_that_does_not_exist_is_refused_and_writes_nothing() {
    let s = study();
    let unknown = id_of(&s, "UNKNOWN_SAMPLE");
    let before = (exports(&s), review_csv(&s, true));
    for (target, says) in [
        ("U99/V4/15", "participant U99 is not in the participant list"),
        ("U08/V9/15", "visit V9 is not a configured visit"),
        ("U08/V4/15", "participant U08 has no visit V4 in the study data"),
        ("U08/V0/45", "minute 45 is not one of mmtt.timepoints (-10, 0, 15, 30, 60, 90, 120)"),
    ] {
        refused(&resolve(&s, &[&unknown, "--assign", target, "--reason", "x", "--by", "dm"]), says);
        assert_eq!((exports(&s), review_csv(&s, true)), before, "{target}: nothing written");
    }

    // An analyte the configuration no longer has.
    let glucose = id_of(&s, "PRETEST_GLUCOSE");
    let config = std::fs::read_to_string(&s.config).unwrap();
    let renamed = config.replace("glucose", "plasma_glucose");
    let renamed = renamed.replace("[analytes.plasma_glucose]", "[analytes.plasma_glucose]\ntest_code = \"GLUC\"");
    std::fs::write(&s.config, renamed).unwrap();
    let before = (exports(&s), review_csv(&s, true));
    refused(
        &resolve(&s, &[&glucose, "--assign", "U07/V4/15", "--reason", "x", "--by", "dm"]),
        "analyte glucose is not configured",
    );
    assert_eq!((exports(&s), review_csv(&s, true)), before);
}

#[test]
fn a_version_2_database_with_decisions_is_migrated_and_its_decisions_can_be_reopened() {
    let s = Study::new(&[]);
    let db = s.lib("labfeed.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    for m in &labfeed::store::MIGRATIONS[..2] {
        conn.execute_batch(m.sql).unwrap();
    }
    conn.pragma_update(None, "user_version", 2).unwrap();
    conn.pragma_update(None, "application_id", labfeed::store::APPLICATION_ID).unwrap();
    // As labfeed v2 left it: a flagged value (OUT_OF_WINDOW and a second flag) rejected,
    // which withdrew it and closed the other flag; a held value still open.
    conn.execute_batch(
        "INSERT INTO raw (id, sha256, size, format, content, first_received_at)
           VALUES (1, printf('%064d', 0), 1, 'hl7', x'00', '2026-03-02T10:00:00Z');
         INSERT INTO receipt (id, raw_id, received_at, source, origin) VALUES (1, 1, '2026-03-02T10:00:00Z', 'ingest', 'a.hl7');
         INSERT INTO message (id, raw_id, number, span_start, span_end) VALUES (1, 1, 1, 0, 1);
         INSERT INTO observation (id, message_id, seq, byte_offset, qc, participant, visit, minute, analyte, value, unit,
                                  blq, outcome)
           VALUES (1, 1, 1, 0, 0, 'U07', 'V4', 30, 'c_peptide', 0.8, 'nmol/L', 0, 'accepted'),
                  (2, 1, 2, 0, 0, 'U07', 'V4', 60, 'c_peptide', 45, 'nmol/L', 0, 'mismatch');
         INSERT INTO participant (code) VALUES ('U07');
         INSERT INTO visit (participant, visit, meal_start) VALUES ('U07', 'V4', '2026-03-02T08:30:00');
         INSERT INTO result (id, observation_id, participant, visit, minute, analyte, value, unit, blq, version,
                             supersedes, accepted_at, accepted_by, reason, withdrawn)
           VALUES (1, 1, 'U07', 'V4', 30, 'c_peptide', 0.8, 'nmol/L', 0, 1, NULL, '2026-03-02T10:00:00Z', 'labfeed',
                   'ingest', 0),
                  (2, 1, 'U07', 'V4', 30, 'c_peptide', 0.8, 'nmol/L', 0, 2, 1, '2026-03-05T09:00:00Z', 'dm',
                   'resolved mismatch 1 (rejected): drawn late', 1);
         INSERT INTO mismatch (id, code, holds, observation_id, message_id, receipt_id, participant, visit, minute,
                               analyte, detail, created_at)
           VALUES (1, 'OUT_OF_WINDOW', 0, 1, 1, 1, 'U07', 'V4', 30, 'c_peptide', 'late', '2026-03-02T10:00:00Z'),
                  (2, 'PRETEST_GLUCOSE', 0, 1, 1, 1, 'U07', 'V4', 30, 'c_peptide', 'flag', '2026-03-02T10:00:00Z'),
                  (3, 'IMPLAUSIBLE', 1, 2, 1, 1, 'U07', 'V4', 60, 'c_peptide', '45', '2026-03-02T10:00:00Z');
         INSERT INTO resolution (id, mismatch_id, action, result_id, reason, resolved_by, resolved_at)
           VALUES (1, 2, 'auto', 2, 'its value was rejected from U07 V4 minute 30 c_peptide by mismatch 1', 'dm',
                   '2026-03-05T09:00:00Z'),
                  (2, 1, 'reject', 2, 'drawn late', 'dm', '2026-03-05T09:00:00Z');",
    )
    .unwrap();
    drop(conn);

    let store = Store::open(&db).unwrap();
    assert_eq!(store.schema_version().unwrap(), labfeed::store::latest_version());
    let m = store.read(|r| r.mismatch(labfeed::store::MismatchId(1))).unwrap().unwrap();
    assert_eq!(m.resolution.unwrap().action, labfeed::store::ResolutionAction::Reject);
    assert_eq!(store.read(|r| r.open_mismatch_count()).unwrap(), 1, "only the IMPLAUSIBLE");
    drop(store);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let broken: i64 = conn.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| r.get(0)).unwrap();
    assert_eq!(broken, 0);
    // The rebuilt tables keep their append-only triggers, indexes and the view.
    assert!(conn.execute("UPDATE mismatch SET detail = 'x' WHERE id = 1", []).is_err());
    assert!(conn.execute("DELETE FROM resolution WHERE id = 1", []).is_err());
    for (kind, name) in [
        ("index", "mismatch_slot"),
        ("index", "mismatch_missing_slot"),
        ("view", "open_mismatch"),
        ("trigger", "resolution_no_update"),
        ("trigger", "mismatch_no_delete"),
        ("trigger", "resolution_effect_no_delete"),
    ] {
        let n: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_schema WHERE type = ?1 AND name = ?2", [kind, name], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1, "{kind} {name}");
    }
    // What the old rejection did is known: the withdrawal, and the flag it closed along.
    let effects: i64 = conn
        .query_row("SELECT count(*) FROM resolution_effect WHERE resolution_id = 2 AND result_id = 2", [], |r| r.get(0))
        .unwrap();
    assert_eq!(effects, 1);
    let cause: Option<i64> = conn.query_row("SELECT cause FROM resolution WHERE id = 1", [], |r| r.get(0)).unwrap();
    assert_eq!(cause, Some(2));
    drop(conn);

    // So it can be reopened: the value is back and both flags are open again.
    ok(&resolve(&s, &["1", "--reopen", "--reason", "draw time mistyped", "--by", "dm"]));
    assert!(has(&exported(&s), ["U07", "V4", "30", "c_peptide"], "0.8"));
    let open: Vec<String> = open_mismatches(&s).into_iter().filter(|m| m.1 != "MISSING_RESULT").map(|m| m.0).collect();
    assert_eq!(open, ["1", "2", "3"]);
}

#[test]
fn reopening_an_acceptance_that_found_the_next_problem_closes_that_one() {
    let s = study();
    // Preliminary and implausible: accepting NOT_FINAL raises IMPLAUSIBLE and stores nothing.
    ingest_preliminary_implausible_glucose(&s);
    let before = exports(&s);
    let first = id_of(&s, "IMPLAUSIBLE");
    let not_final = id_of(&s, "NOT_FINAL");
    ok(&resolve(&s, &[&not_final, "--accept", "--reason", "lab says final", "--by", "dm"]));
    let raised: Vec<_> =
        open_mismatches(&s).into_iter().filter(|m| m.1 == "IMPLAUSIBLE" && m.2 == "60" && m.0 != first).collect();
    assert_eq!(raised.len(), 1, "{raised:?}");
    let out = resolve(&s, &[&not_final, "--reopen", "--reason", "not final after all", "--by", "dm"]);
    ok(&out);
    assert!(text(&out).contains(&format!("mismatch {} closed with it", raised[0].0)), "{}", text(&out));
    assert_eq!(exports(&s), before);
    assert_eq!(id_of(&s, "NOT_FINAL"), not_final);
    assert!(!open_mismatches(&s).iter().any(|m| m.0 == raised[0].0));
}
