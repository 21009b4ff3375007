//! Signatures in the reports (SPEC §8) through the real binary: who decided
//! a mismatch, by full name and role, and `report audit`, the trail an
//! inspector reads, with its filters.

use std::process::Output;

use super::support::{ADMIN, DATA_MANAGER, TempStudy, csv_rows, e411, import_csv, ok, order, path, text};

const SIGNED: &str = "dm.anna (Anna Data, data-manager)";

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

/// `labfeed --user USER --password-stdin ARGS` with `input` on stdin.
fn as_user(t: &TempStudy, user: &str, args: &[&str], input: &str) -> Output {
    t.run_with_stdin(&[&["--user", user, "--password-stdin"][..], args].concat(), input)
}

/// U01 and U02 with visit V0, sample S-30 moved from U01 to U02 by a second
/// import, an unknown sample delivered (one mismatch) and rejected.
fn study() -> (TempStudy, String) {
    let t = TempStudy::new(&[]);
    import_csv(&t, "participants", "participants.csv", "participant\nU01\nU02\n");
    import_csv(
        &t,
        "visits",
        "visits.csv",
        "participant,visit,meal_start\nU01,V0,2026-03-02T08:30\nU02,V0,2026-03-02T08:30\n",
    );
    import_csv(&t, "samples", "samples.csv", "sample_id,participant,visit,minute\nS-30,U01,V0,30\n");
    import_csv(&t, "samples", "samples2.csv", "sample_id,participant,visit,minute\nS-30,U02,V0,30\n");
    let upload = t.file(
        "cobas.astm",
        &e411(
            &[order(1, "NOPE-1"), "R|1|^^^CPEP|0.4|nmol/L||N||F||ADMIN|20260302100000|20260302101500|E1\r".to_owned()]
                .concat(),
        ),
    );
    let said = text(&t.run(&["ingest", path(&upload)]));
    assert!(said.contains("1 mismatch"), "{said}");
    let csv = ok(&t.run(&["report", "mismatches", "--format", "csv"]));
    let id = csv_rows(&csv)[1][0].clone();
    ok(&t.run(&["resolve", &id, "--reject", "--reason", "not a study sample"]));
    (t, id)
}

fn audit(t: &TempStudy, args: &[&str]) -> String {
    ok(&t.run(&[&["report", "audit"][..], args].concat()))
}

#[test]
fn a_decision_in_the_mismatch_report_names_the_account_its_full_name_and_role() {
    let (t, id) = study();
    let report = ok(&t.run(&["report", "mismatches", "--all"]));
    assert!(report.contains(&format!("      resolved (reject) by {SIGNED} at ")), "{report}");
    assert!(report.contains(": not a study sample"), "{report}");

    let rows = csv_rows(&ok(&t.run(&["report", "mismatches", "--all", "--format", "csv"])));
    let header = &rows[0];
    assert_eq!(
        header[..15].join(","),
        "id,code,sample_id,participant,visit,minute,analyte,instrument,test_code,\
reported_value,reported_unit,detail,source,received_at,state"
    );
    assert_eq!(
        header[15..],
        ["decided_by", "decided_at", "decision", "reason", "history", "decided_by_name", "decided_by_role"]
    );
    let row = rows.iter().find(|r| r[0] == id).unwrap();
    assert_eq!((row[15].as_str(), row[17].as_str()), ("dm.anna", "reject"));
    assert_eq!((row[20].as_str(), row[21].as_str()), ("Anna Data", "data-manager"));
    assert!(row[19].starts_with(&format!("resolved (reject) by {SIGNED} at ")), "{row:?}");

    let html = ok(&t.run(&["report", "mismatches", "--all", "--format", "html"])).replace("<wbr/>", "");
    assert!(html.contains(&format!("resolved (reject) by {SIGNED} at ")), "{html}");
}

#[test]
fn the_audit_trail_says_who_what_when_and_why_in_plain_words() {
    let (t, id) = study();
    // An account added by the admin, a lock and an unlock, a failed login.
    let out = as_user(
        &t,
        ADMIN.0,
        &["user", "add", "lab.lars", "--role", "lab", "--new-password-stdin"],
        &format!("{}\nlab-password-0001\n", ADMIN.1),
    );
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    ok(&t.run(&["lock", "--visit", "U01/V0", "--reason", "visit cleaned"]));
    ok(&t.run(&["unlock", "--visit", "U01/V0", "--reason", "late result expected"]));
    let out = as_user(&t, DATA_MANAGER.0, &["lock", "--study", "--reason", "x"], "not-the-password\n");
    assert_eq!(code(&out), Some(2), "{}", text(&out));

    let trail = audit(&t, &[]);
    for expected in [
        "dm.anna (Anna Data, data-manager), OS account ",
        "admin.ada (Ada Admin, admin), OS account ",
        "means: user add",
        "account lab.lars added (lab)",
        "means: import samples",
        "sample S-30 added: U01/V0/30",
        "sample S-30: U01/V0/30 → U02/V0/30",
        "participant U01 added",
        "means: resolve reject; reason: not a study sample",
        &format!("mismatch {id}: resolved reject"),
        "means: lock; reason: visit cleaned",
        "lock visit U01/V0",
        "unlock visit U01/V0",
        "labfeed (system)",
        "ingest: 1 content stored, 1 receipt",
        "login failed for dm.anna: wrong password (1 in a row)",
    ] {
        assert!(trail.contains(expected), "{expected:?} missing from:\n{trail}");
    }
    assert!(!trail.contains("password_hash") && !trail.contains("argon2"), "{trail}");
    assert!(trail.lines().last().unwrap().ends_with("audit rows."), "{trail}");

    let rows = csv_rows(&audit(&t, &["--format", "csv"]));
    assert_eq!(
        rows[0],
        [
            "seq",
            "at",
            "actor",
            "full_name",
            "role",
            "os_account",
            "meaning",
            "reason",
            "on_behalf_of",
            "action",
            "entity",
            "entity_id",
            "change"
        ]
    );
    let find = |change: &str| {
        rows.iter().find(|r| r[12] == change).unwrap_or_else(|| panic!("no {change:?} in {rows:?}")).clone()
    };
    let moved = find("sample S-30: U01/V0/30 → U02/V0/30");
    assert_eq!(moved[2..5], ["dm.anna", "Anna Data", "data-manager"]);
    assert_eq!((moved[6].as_str(), moved[9].as_str(), moved[10].as_str()), ("import samples", "import", "sample"));
    let decided = find(&format!("mismatch {id}: resolved reject"));
    assert_eq!((decided[6].as_str(), decided[7].as_str()), ("resolve reject", "not a study sample"));
    assert!(decided[1].ends_with('Z') && decided[1].len() == 20, "{decided:?}");
    let added = find("account lab.lars added (lab)");
    assert_eq!((added[2].as_str(), added[6].as_str()), ("admin.ada", "user add"));
    assert_eq!(find("lock visit U01/V0")[7], "visit cleaned");
    assert_eq!(find("unlock visit U01/V0")[7], "late result expected");
    let failed = find("login failed for dm.anna: wrong password (1 in a row)");
    assert_eq!((failed[2].as_str(), failed[4].as_str(), failed[10].as_str()), ("labfeed", "system", "account"));
    // Every audit row once, in order; no password hash fingerprint.
    let seqs: Vec<i64> = rows[1..].iter().map(|r| r[0].parse().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] + 1 == w[1]), "{seqs:?}");
    assert!(rows.iter().flatten().all(|f| !f.contains("password_hash")), "{rows:?}");
    // labfeed's own rows are vouched for by one commit row per transaction, in plain words too.
    let commit = rows.iter().find(|r| r[2] == "labfeed" && r[9] == "commit").expect("a commit row of labfeed's");
    assert!(
        commit[12].starts_with("vouches for the rows written: ") && commit[12].contains("1 content stored"),
        "{commit:?}"
    );
}

#[test]
fn the_audit_trail_filters_by_time_account_and_entity() {
    let (t, id) = study();

    // --account: only the transactions that account signed (or labfeed's own).
    let mine = csv_rows(&audit(&t, &["--format", "csv", "--account", "admin.ada"]));
    assert!(mine.len() > 1 && mine[1..].iter().all(|r| r[2] == "admin.ada"), "{mine:?}");
    assert!(mine.iter().any(|r| r[12] == "account dm.anna added (Anna Data, data-manager)"), "{mine:?}");
    let system = audit(&t, &["--account", "labfeed"]);
    assert!(system.contains("labfeed (system)") && !system.contains(SIGNED), "{system}");

    // --entity: one kind, or one of them; a decision is about its mismatch.
    let samples = csv_rows(&audit(&t, &["--format", "csv", "--entity", "sample"]));
    let changes: Vec<&str> = samples[1..].iter().filter(|r| r[9] != "sign").map(|r| r[12].as_str()).collect();
    assert_eq!(changes, ["sample S-30 added: U01/V0/30", "sample S-30: U01/V0/30 → U02/V0/30"]);
    assert!(samples[1..].iter().all(|r| r[10] == "sample" || r[9] == "sign"), "{samples:?}");
    let one = audit(&t, &["--entity", &format!("mismatch/{id}")]);
    assert!(one.contains(&format!("mismatch {id}: resolved reject")), "{one}");
    assert!(!one.contains("sample S-30"), "{one}");
    let visit = audit(&t, &["--entity", "visit/U02/V0"]);
    assert!(visit.contains("visit U02/V0 added") && !visit.contains("visit U01/V0"), "{visit}");

    // --since: a date or an RFC 3339 time; the future gives nothing.
    let all = audit(&t, &["--format", "csv"]);
    assert_eq!(audit(&t, &["--format", "csv", "--since", "2000-01-01"]), all);
    assert_eq!(audit(&t, &["--format", "csv", "--since", "2000-01-01T00:00:00+01:00"]), all);
    let future = audit(&t, &["--format", "csv", "--since", "2999-01-01T00:00:00"]);
    assert_eq!(csv_rows(&future).len(), 1, "{future}");
    let future = audit(&t, &["--since", "2999-01-01"]);
    assert!(future.contains("0 transactions, 0 audit rows."), "{future}");

    let out = t.run(&["report", "audit", "--since", "last tuesday"]);
    assert_eq!(code(&out), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--since"), "{}", text(&out));
}

#[test]
fn the_audit_report_can_go_to_a_file_and_needs_no_login() {
    let (t, _) = study();
    let file = t.dir.path().join("audit.csv");
    let out = t.command(&["report", "audit", "--format", "csv", "--output", path(&file)]).output().unwrap();
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert!(text(&out).contains("audit rows"), "{}", text(&out));
    let written = std::fs::read_to_string(&file).unwrap();
    assert_eq!(written, audit(&t, &["--format", "csv"]));
}
