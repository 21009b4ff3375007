//! SPEC §10: every command works the same on PostgreSQL as on SQLite. One
//! scenario (imports, HL7 and ASTM deliveries, a rerun accepted by a data
//! manager, a conflict left open, a lock) runs through the real binary on
//! each engine; the exports, reports and `verify-audit`'s verdict agree.

use std::path::Path;

use super::daemon::{Study, archived, files_in, signal, stop, upload, wait_for};
use super::postgres::TestDb;
use super::resolve::r;
use super::support::{TempStudy, central, csv_rows, e411, import_csv, ingest_bytes, ok, order, text};

const SETTLE: (&str, &str) = ("settle_seconds = 1.0", "settle_seconds = 0.1");

/// The example study, on the PostgreSQL database `db` as instance `instance`.
pub(crate) fn on_postgres(db: &TestDb, instance: &str) -> TempStudy {
    let t = TempStudy::new(&[SETTLE]);
    point_at(&t.config, &db.url(), instance);
    t
}

/// Rewrite `[storage] database` of `config` to `url`, naming the instance.
pub(crate) fn point_at(config: &Path, url: &str, instance: &str) {
    let text = std::fs::read_to_string(config).unwrap();
    let text: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with("database = ") {
                format!("database = \"{url}\"\ninstance = \"{instance}\"")
            } else {
                l.to_owned()
            }
        })
        .collect();
    std::fs::write(config, text.join("\n") + "\n").unwrap();
}

/// The open mismatches' ids with `code`, from the data manager's own report.
fn open_mismatch_ids(t: &TempStudy, code: &str) -> Vec<String> {
    let out = ok(&t.run(&["report", "mismatches", "--format", "csv"]));
    let rows = csv_rows(&out);
    let id = rows[0].iter().position(|c| c == "id").expect("an id column");
    let kind = rows[0].iter().position(|c| c == "code").expect("a code column");
    rows[1..].iter().filter(|r| r[kind] == code).map(|r| r[id].clone()).collect()
}

pub(crate) fn scenario(t: &TempStudy) {
    import_csv(t, "participants", "participants.csv", "participant\nU01\nU02\nU03\nU04\n");
    import_csv(
        t,
        "visits",
        "visits.csv",
        "participant,visit,meal_start\nU01,V0,2026-03-02T08:00\nU02,V0,2026-03-02T08:00\nU03,V0,2026-03-02T08:00\n",
    );
    import_csv(
        t,
        "samples",
        "samples.csv",
        "sample_id,participant,visit,minute\nS-1,U01,V0,30\nS-2,U02,V0,30\nS-3,U03,V0,60\nS-4,U01,V0,0\n",
    );
    let deliver = |name: &str, patient: &str, sample: &str, value: &str| {
        ingest_bytes(t, name, central(name, patient, sample, "20260302083000", value).as_bytes())
    };
    assert!(deliver("C1", "U01", "S-1", "0.25").contains("1 accepted"));
    assert!(deliver("C2", "U02", "S-2", "0.40").contains("1 accepted"));
    assert!(deliver("C5", "U01", "S-4", "<0.01").contains("1 accepted"));
    let cobas = e411(&[order(1, "S-3"), r("CPEP", "0.50", "nmol/L", "20260302101500")].concat());
    assert!(ingest_bytes(t, "cobas.astm", cobas.as_bytes()).contains("1 accepted"));
    assert!(deliver("C3", "U02", "S-2", "0.55").contains("1 mismatch"));
    assert!(deliver("C4", "U01", "S-1", "0.31").contains("1 mismatch"));
    // Tubes nobody knows: mismatches without a participant, listed first on both engines.
    assert!(deliver("C6", "X99", "S-99", "0.70").contains("mismatch"));
    assert!(deliver("C7", "U01", "S-98", "0.71").contains("mismatch"));
    // The same file again: a duplicate, not a second result.
    deliver("C1", "U01", "S-1", "0.25");
    let conflicts = open_mismatch_ids(t, "DUPLICATE_CONFLICT");
    assert_eq!(conflicts.len(), 2, "{conflicts:?}");
    ok(&t.run(&["resolve", &conflicts[0], "--accept", "--reason", "rerun confirmed by the lab"]));
    let missing = open_mismatch_ids(t, "MISSING_RESULT");
    let last = missing.last().expect("missing results");
    ok(&t.run(&["resolve", last, "--not-done", "--reason", "sample haemolysed"]));
    ok(&t.run(&["lock", "--visit", "U03/V0", "--reason", "visit cleaned"]));
}

/// What users take away, with the times of this run's own writes (which
/// differ between the two runs) masked.
pub(crate) fn outputs(t: &TempStudy) -> Vec<(String, String)> {
    let today = jiff::Timestamp::now().strftime("%Y-%m-%d").to_string();
    let now = regex::Regex::new(&format!(r"{today}[T ][0-9:.]+Z?")).unwrap();
    let commands: &[&[&str]] = &[
        &["export", "results"],
        &["export", "lb"],
        &["report", "auc", "--format", "csv"],
        &["report", "mismatches", "--all", "--format", "csv"],
    ];
    let mut out = Vec::new();
    for args in commands {
        let o = t.run(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o));
        let shown = String::from_utf8_lossy(&o.stdout).replace(t.dir.path().to_str().unwrap(), "<dir>");
        out.push((args.join(" "), now.replace_all(&shown, "<now>").into_owned()));
    }
    let verify = t.run(&["verify-audit"]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    // The verdict and the counts; the hashes cover this run's times.
    let verdict = String::from_utf8_lossy(&verify.stdout)
        .lines()
        .map(|l| l.split("; head seq").next().unwrap_or(l).split(" recorded in ").next().unwrap_or(l).to_owned())
        .collect::<Vec<_>>()
        .join("\n");
    out.push(("verify-audit".to_owned(), verdict));
    out
}

#[test]
fn the_same_deliveries_give_the_same_exports_reports_and_verdict_on_both_engines() {
    let Some(db) = TestDb::create() else { return };
    let lite = TempStudy::new(&[SETTLE]);
    scenario(&lite);
    let central = on_postgres(&db, "site-a");
    scenario(&central);
    let (a, b) = (outputs(&lite), outputs(&central));
    for ((what, on_sqlite), (_, on_postgres)) in a.iter().zip(&b) {
        assert!(on_sqlite.lines().count() > 1 || what == "verify-audit", "{what} is not empty: {on_sqlite}");
        assert_eq!(on_sqlite, on_postgres, "{what} differs between SQLite and PostgreSQL");
    }
    // Nothing of the central study lives beside a file: the instance's own files are in the config's directory.
    let status = ok(&central.run(&["status"]));
    assert!(status.contains("instance site-a"), "{status}");
    assert!(!status.contains("127.0.0.1:5432/test"), "the study's own database, not the server's: {status}");
}

#[test]
fn two_sites_write_one_study_and_an_instance_name_runs_once_until_its_session_ends() {
    let Some(db) = TestDb::create() else { return };
    let url = db.url();
    let a = Study::build(&[], |t| point_at(&t.config, &url, "site-a"));
    let b = Study::bare(&[], |t| point_at(&t.config, &url, "site-b"));
    let mut daemon_a = a.start();
    let daemon_b = b.start();
    // Each site its own inbox, archive and quarantine; one study.
    for n in 0..10 {
        std::fs::write(a.inbox().join(format!("a{n}.astm")), upload(1, n)).unwrap();
        std::fs::write(b.inbox().join(format!("b{n}.astm")), upload(2, n)).unwrap();
    }
    for (site, prefix) in [(&a, "a"), (&b, "b")] {
        wait_for(
            || {
                let names = archived(&site.archive());
                names.iter().filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix))).count()
                    == 10
            },
            "each site to archive its own files",
        );
    }
    assert!(files_in(&a.quarantine()).is_empty() && files_in(&b.quarantine()).is_empty());

    // site-a again, from another machine (its own state directory): refused, exit 2.
    let twin = Study::bare(&[], |t| point_at(&t.config, &url, "site-a"));
    let refused = twin.command(&["run"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("instance \"site-a\" is already running"), "{said}");
    assert!(!twin.archive().exists() || archived(&twin.archive()).is_empty(), "the refused daemon took nothing");

    // A killed daemon's session ends, and the name with it.
    signal(&daemon_a, "KILL");
    daemon_a.wait().unwrap();
    let daemon_twin = twin.start();
    assert!(stop(daemon_twin).success());
    assert!(stop(daemon_b).success());
    let status = ok(&b.t.run(&["status"]));
    assert!(status.contains("instance site-b"), "{status}");
    // Every receipt names the daemon that took it.
    assert!(status.contains("via site-b"), "{status}");
    assert!(status.contains("via site-a"), "{status}");
    // 10 uploads of 2 results per site, and the probe (the later probes are its duplicates).
    assert_eq!(a.export().len(), 2 * 10 * 2 + 2);
    assert_eq!(a.export(), b.export(), "one study, seen alike from both sites");
}

#[test]
fn two_sites_delivering_for_one_slot_at_once_leave_one_result_and_a_conflict() {
    let Some(db) = TestDb::create() else { return };
    let url = db.url();
    let a = Study::build(&[], |t| point_at(&t.config, &url, "site-a"));
    let b = Study::bare(&[], |t| point_at(&t.config, &url, "site-b"));
    const SLOTS: usize = 12;
    let barrier = std::sync::Barrier::new(2);
    let ingests = |site: &Study, rerun: bool| -> Vec<std::process::Command> {
        (0..SLOTS)
            .map(|n| {
                // The same sample from both sites: C-peptide differs, glucose agrees.
                let mut body = upload(5, n);
                if rerun {
                    body = body.replacen(&format!("|0.{n:03}|"), &format!("|1.{n:03}|"), 1);
                }
                let file = site.t.file(&format!("slot{n}.astm"), &body);
                site.command(&["ingest", file.to_str().unwrap()])
            })
            .collect()
    };
    std::thread::scope(|scope| {
        for commands in [ingests(&a, false), ingests(&b, true)] {
            let barrier = &barrier;
            scope.spawn(move || {
                for mut command in commands {
                    barrier.wait();
                    let out = command.output().unwrap();
                    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
                }
            });
        }
    });
    // Per slot: the first measurement stands, one per analyte; the other
    // C-peptide value is held as a conflict, the equal glucose is a duplicate.
    let results = a.export();
    assert_eq!(results.len(), SLOTS * 2, "{results:#?}");
    let mut slots = std::collections::BTreeSet::new();
    for line in &results {
        let cells: Vec<&str> = line.split(',').collect();
        assert!(slots.insert((cells[1].to_owned(), cells[2].to_owned(), cells[3].to_owned())), "twice: {line}");
    }
    let mismatches = ok(&a.t.run(&["report", "mismatches", "--format", "csv"]));
    let rows = csv_rows(&mismatches);
    let code = rows[0].iter().position(|c| c == "code").unwrap();
    let conflicts = rows[1..].iter().filter(|r| r[code] == "DUPLICATE_CONFLICT").count();
    assert_eq!(conflicts, SLOTS, "{mismatches}");
    assert!(ok(&a.t.run(&["verify-audit"])).contains("audit chain intact"));
}

#[test]
fn verify_audit_on_postgresql_names_rows_changed_behind_labfeeds_back_and_a_lifted_guard() {
    let Some(db) = TestDb::create() else { return };
    let t = on_postgres(&db, "site-a");
    scenario(&t);
    assert!(ok(&t.run(&["verify-audit"])).contains("audit chain intact"));

    // An owner lifts a guard, changes a value, and puts the guard back: the rows say so.
    let mut owner = db.connect();
    owner
        .batch_execute(
            "ALTER TABLE result DISABLE TRIGGER result_no_update;
             UPDATE result SET value = 9.9 WHERE id = (SELECT min(id) FROM result);
             ALTER TABLE result ENABLE TRIGGER result_no_update;",
        )
        .unwrap();
    let found = t.run(&["verify-audit"]);
    assert_eq!(found.status.code(), Some(1), "{}", text(&found));
    let said = String::from_utf8_lossy(&found.stdout);
    assert!(said.contains("audit NOT verified") && said.contains("result row"), "{said}");

    // A guard left lifted is named even before any row changes.
    let fresh = TestDb::create().unwrap();
    let u = on_postgres(&fresh, "site-b");
    scenario(&u);
    fresh.connect().batch_execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_delete").unwrap();
    let found = u.run(&["verify-audit"]);
    assert_eq!(found.status.code(), Some(1), "{}", text(&found));
    assert!(
        String::from_utf8_lossy(&found.stdout).contains("trigger audit_log_no_delete is disabled"),
        "{}",
        text(&found)
    );
}

#[test]
fn a_nul_byte_in_an_astm_field_is_stored_on_postgresql_as_on_sqlite_and_blocks_nothing() {
    let Some(db) = TestDb::create() else { return };
    for t in [TempStudy::new(&[SETTLE]), on_postgres(&db, "site-a")] {
        import_csv(&t, "participants", "participants.csv", "participant\nU01\n");
        import_csv(&t, "visits", "visits.csv", "participant,visit,meal_start\nU01,V0,2026-03-02T08:00\n");
        import_csv(&t, "samples", "samples.csv", "sample_id,participant,visit,minute\nS-1,U01,V0,30\nS-2,U01,V0,60\n");
        let nul = e411(&[order(1, "S-1"), r("CPEP", "0.2\u{0}5", "nmol/L\u{0}", "20260302101500")].concat());
        let good = e411(&[order(1, "S-2"), r("CPEP", "0.50", "nmol/L", "20260302101500")].concat());
        let (a, b) = (t.dir.path().join("nul.astm"), t.dir.path().join("good.astm"));
        std::fs::write(&a, nul).unwrap();
        std::fs::write(&b, good).unwrap();
        // One command, one batch: the file with a NUL does not take the other down with it.
        let out = t.run(&["ingest", a.to_str().unwrap(), b.to_str().unwrap()]);
        assert!(matches!(out.status.code(), Some(0 | 1)), "{}", text(&out));
        let results = ok(&t.run(&["export", "results"]));
        assert!(results.contains("0.5,nmol/L"), "{results}");
        assert!(!results.contains("0.25"), "no number is made of the digits around a NUL: {results}");
    }
}
