//! The data lock (SPEC §8) through the real binary: what a lock holds back,
//! what it refuses, where it is shown, and unlocking.

use super::support::{TempStudy, central, four_participants, import_csv, ingest_bytes, ok, text};

fn study() -> TempStudy {
    let t = four_participants();
    import_csv(
        &t,
        "visits",
        "visits.csv",
        "participant,visit,meal_start\nU01,V0,2026-03-02T08:00\nU02,V0,2026-03-02T08:00\n",
    );
    import_csv(&t, "samples", "samples.csv", "sample_id,participant,visit,minute\nS-1,U01,V0,30\nS-2,U02,V0,30\n");
    t
}

fn deliver(t: &TempStudy, name: &str, patient: &str, sample: &str, value: &str) -> String {
    ingest_bytes(t, name, central(name, patient, sample, "20260302083000", value).as_bytes())
}

/// Everything a statistician takes away.
fn outputs(t: &TempStudy) -> [String; 3] {
    [
        ok(&t.run(&["export", "results"])),
        ok(&t.run(&["export", "lb"])),
        ok(&t.run(&["report", "auc", "--format", "csv"])),
    ]
}

fn open_ids(t: &TempStudy, code: &str) -> Vec<String> {
    let csv = ok(&t.run(&["report", "mismatches", "--format", "csv"]));
    csv.lines()
        .filter(|l| l.split(',').nth(1) == Some(code))
        .filter_map(|l| l.split(',').next())
        .map(String::from)
        .collect()
}

#[test]
fn a_locked_visit_holds_deliveries_as_locked_and_changes_nothing() {
    let t = study();
    deliver(&t, "first", "U01", "S-1", "0.25");
    let out = t.run(&["lock", "--visit", "U01/V0", "--reason", "visit cleaned and reviewed"]);
    assert!(ok(&out).contains("visit U01/V0 locked, signed by dm.anna (Anna Data, data-manager)"), "{}", text(&out));
    let before = outputs(&t);

    // A rerun with another value is held as LOCKED; the same value again is a duplicate.
    let said = deliver(&t, "rerun", "U01", "S-1", "0.31");
    assert!(said.contains("1 mismatch"), "{said}");
    let locked = open_ids(&t, "LOCKED");
    assert_eq!(locked.len(), 1);
    let said = deliver(&t, "again", "U01", "S-1", "0.25");
    assert!(said.contains("1 duplicate"), "{said}");
    assert_eq!(outputs(&t), before, "exports, LB and AUCs do not change");

    // Another participant's visit is not locked.
    let said = deliver(&t, "other", "U02", "S-2", "0.40");
    assert!(said.contains("1 accepted"), "{said}");

    // No decision and no manifest change on a locked visit.
    let out = t.run(&["resolve", &locked[0], "--accept", "--reason", "rerun is right"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("visit U01/V0 is locked since"), "{}", text(&out));
    let moved = t.file("moved.csv", "sample_id,participant,visit,minute\nS-1,U01,V0,60\n");
    let out = t.run(&["import", "samples", moved.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("moved.csv:2") && text(&out).contains("locked"), "{}", text(&out));
    let visits = t.file("v2.csv", "participant,visit,meal_start\nU01,V0,2026-03-02T08:10\n");
    assert_eq!(t.run(&["import", "visits", visits.to_str().unwrap()]).status.code(), Some(1));

    // Shown where a data manager and a sysadmin look.
    let report = ok(&t.run(&["report", "mismatches"]));
    assert!(
        report.contains("Locked: visit U01/V0 since ") && report.contains("by dm.anna: visit cleaned and reviewed"),
        "{report}"
    );
    let html = ok(&t.run(&["report", "mismatches", "--format", "html"]));
    assert!(html.contains("Locked: visit U01/V0 since "), "{html}");
    let auc = ok(&t.run(&["report", "auc"]));
    assert!(auc.contains("Locked: visit U01/V0 since "), "{auc}");
    let status = ok(&t.run(&["status"]));
    assert!(status.contains("data locks: 1\n  visit U01/V0 since "), "{status}");

    // Unlocked, the held rerun can be decided.
    let out = t.run(&["unlock", "--visit", "U01/V0", "--reason", "query from the monitor"]);
    assert!(ok(&out).contains("visit U01/V0 unlocked"), "{}", text(&out));
    assert!(ok(&t.run(&["status"])).contains("data locks: none"));
    let out = t.run(&["resolve", &locked[0], "--reject", "--reason", "the first measurement stands"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    ok(&t.run(&["import", "samples", moved.to_str().unwrap()]));
}

#[test]
fn a_study_lock_covers_every_visit_and_is_lifted_where_it_was_set() {
    let t = study();
    let out = t.run(&["lock", "--study", "--reason", "database lock before unblinding"]);
    assert!(ok(&out).contains("the whole study locked"), "{}", text(&out));
    let said = deliver(&t, "late", "U02", "S-2", "0.40");
    assert!(said.contains("0 accepted") && said.contains("1 mismatch"), "{said}");
    assert_eq!(open_ids(&t, "LOCKED").len(), 1);

    // A visit under the study lock has no lock of its own to lift.
    let out = t.run(&["unlock", "--visit", "U02/V0", "--reason", "x"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("covered by the lock on the whole study"), "{}", text(&out));
    // Locking twice says so.
    let out = t.run(&["lock", "--study", "--reason", "again"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("is locked since"), "{}", text(&out));
    // The study's participant list takes no change either.
    let more = t.file("more.csv", "participant\nU05\n");
    assert_eq!(t.run(&["import", "participants", more.to_str().unwrap()]).status.code(), Some(1));
    ok(&t.run(&["unlock", "--study", "--reason", "monitor query"]));
    ok(&t.run(&["import", "participants", more.to_str().unwrap()]));
}

#[test]
fn locking_needs_a_data_manager_a_reason_and_something_that_exists() {
    let t = study();
    let out = t.command(&["lock", "--participant", "U01", "--reason", "done"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "no login: {}", text(&out));
    let out = t.run(&["lock", "--participant", "U09", "--reason", "done"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("there is no participant U09"), "{}", text(&out));
    let out = t.run(&["lock", "--visit", "U01", "--reason", "done"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = t.run(&["lock", "--participant", "U01", "--reason", " "]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = t.run(&["unlock", "--participant", "U01", "--reason", "x"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("participant U01 is not locked"), "{}", text(&out));

    ok(&t.run(&["lock", "--participant", "U01", "--reason", "all visits done"]));
    // The lock rows are append-only, and every lock is signed in the audit.
    let conn = rusqlite::Connection::open(t.lib("labfeed.db")).unwrap();
    assert!(conn.execute("DELETE FROM data_lock", []).is_err());
    let meaning: String = conn
        .query_row(
            "SELECT json_extract(detail, '$.meaning') FROM audit_log WHERE action = 'sign' ORDER BY seq DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(meaning, "lock");
    assert_eq!(t.run(&["verify-audit"]).status.code(), Some(0));
}
