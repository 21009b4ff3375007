//! `labfeed import`, `export results` and `report mismatches` through the
//! real binary, on a real SQLite file in a temporary directory: summaries,
//! idempotency, whole-file refusal, the SPEC §5 columns and the exit codes.

use std::path::PathBuf;
use std::process::{Command, Output};

use labfeed::model::Format;
use labfeed::store::*;
use labfeed::value::{Comparator, Number};
use tempfile::TempDir;

use crate::support::{DATA_MANAGER, Signer};

const RESULTS_HEADER: &str = "participant,visit,minute,analyte,value,unit,comparator,blq,reported_value,reported_unit,\
sample_id,instrument,test_code,status,collected_at,resulted_at,source,received_at";
const MISMATCHES_HEADER: &str = "id,code,sample_id,participant,visit,minute,analyte,instrument,test_code,\
reported_value,reported_unit,detail,source,received_at,state,decided_by,decided_at,decision,reason,history,\
decided_by_name,decided_by_role";

/// A study in a temporary directory: the example configuration with every
/// path pointing inside it.
struct Study {
    dir: TempDir,
    config: PathBuf,
    db: PathBuf,
    signer: Signer,
}

impl Study {
    fn new() -> Study {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("lib");
        std::fs::create_dir(&root).unwrap();
        let text = include_str!("../../config/labfeed.example.toml")
            .replace("/var/lib/labfeed", root.to_str().expect("UTF-8 temp path"));
        assert!(text.contains("labfeed.db"), "the example config names the database");
        let config = dir.path().join("labfeed.toml");
        std::fs::write(&config, text).unwrap();
        let db = root.join("labfeed.db");
        let signer = Signer::new(&config);
        Study { dir, config, db, signer }
    }

    /// `labfeed ARGS` from the study directory; changes are signed by [`DATA_MANAGER`].
    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_labfeed"));
        cmd.arg("--config").arg(&self.config).args(args).env_remove("LABFEED_CONFIG").current_dir(self.dir.path());
        self.signer.output(cmd, args)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Import `text` as `name` (relative to the study directory, so messages
    /// name it as given).
    fn import(&self, kind: &str, name: &str, text: &str) -> Output {
        self.file(name, text);
        self.run(&["import", kind, name])
    }

    fn store(&self) -> Store {
        Store::open(&self.db).unwrap()
    }

    fn audit_rows(&self) -> u64 {
        self.store().verify_audit_chain().unwrap().rows_checked
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("UTF-8 stdout")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exit code")
}

#[track_caller]
fn assert_exit(out: &Output, expected: i32) {
    assert_eq!(code(out), expected, "stdout:\n{}\nstderr:\n{}", stdout(out), stderr(out));
}

fn csv_rows(text: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

const PARTICIPANTS: &str = "participant,site\nU01,Uppsala\nU02,Uppsala\nU03,\n";
const VISITS: &str = "participant,visit,meal_start\nU01,V0,2026-03-02T08:30\nU02,V0,2026-03-03 09:00\nU02,V4,\n";
const SAMPLES: &str = "sample_id,participant,visit,minute\nS-1,U01,V0,0\nS-2,U01,V0,30\n";

#[test]
fn study_data_imports_with_a_summary_and_a_second_import_changes_nothing() {
    let s = Study::new();
    let out = s.import("participants", "participants.csv", PARTICIPANTS);
    assert_exit(&out, 0);
    assert_eq!(
        stdout(&out),
        "participants.csv: comma-separated, UTF-8, LF\nparticipants.csv: 3 rows: 3 new, 0 changed, 0 unchanged\n"
    );
    let out = s.import("visits", "visits.csv", VISITS);
    assert_exit(&out, 0);
    assert_eq!(
        stdout(&out),
        "visits.csv: comma-separated, UTF-8, LF\nvisits.csv: 3 rows: 3 new, 0 changed, 0 unchanged\n"
    );
    let out = s.import("samples", "samples.csv", SAMPLES);
    assert_exit(&out, 0);
    assert_eq!(
        stdout(&out),
        "samples.csv: comma-separated, UTF-8, LF\nsamples.csv: 2 rows: 2 new, 0 changed, 0 unchanged\n"
    );

    let audited = s.audit_rows();
    // The two accounts (a signature and an account row each); per import a signature;
    // one audit row per new participant, visit and sample, and one per MISSING_RESULT id
    // given to the slots of the two visits with a meal start (7 minutes × 2 analytes each).
    // Each of those five transactions ends with a commit row.
    assert_eq!(audited, 2 * 2 + 3 + 8 + 2 * 7 * 2 + 5);
    for (kind, name, rows) in
        [("participants", "participants.csv", 3), ("visits", "visits.csv", 3), ("samples", "samples.csv", 2)]
    {
        let out = s.run(&["import", kind, name]);
        assert_exit(&out, 0);
        assert_eq!(
            stdout(&out),
            format!("{name}: comma-separated, UTF-8, LF\n{name}: {rows} rows: 0 new, 0 changed, {rows} unchanged\n")
        );
    }
    assert_eq!(s.audit_rows(), audited, "re-importing the same files wrote no audit row");

    let store = s.store();
    store
        .read(|r| {
            assert_eq!(r.participant("U03")?, Some(Participant { code: "U03".into(), site: None }));
            let visit = r.visit("U02", "V0")?.unwrap();
            assert_eq!(visit.meal_start, Some("2026-03-03T09:00".parse().unwrap()));
            assert_eq!(r.visit("U02", "V4")?.unwrap().meal_start, None);
            assert_eq!(r.sample("S-2")?.unwrap().minute, 30);
            let trail = r.audit_trail("participant", "U01")?;
            assert_eq!(trail.len(), 1);
            assert_eq!((trail[0].actor.as_str(), trail[0].action.as_str()), (DATA_MANAGER.0, "import"));
            Ok(())
        })
        .unwrap();
    assert!(store.verify_audit_chain().unwrap().is_intact());
}

#[test]
fn a_changed_row_is_counted_and_audited_with_old_and_new_values_under_by() {
    let s = Study::new();
    assert_exit(&s.import("participants", "p.csv", PARTICIPANTS), 0);
    let out = s.import("participants", "p.csv", "participant,site\nU01,Lund\nU02,Uppsala\nU04,Umea\n");
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "p.csv: comma-separated, UTF-8, LF\np.csv: 3 rows: 1 new, 1 changed, 1 unchanged\n");
    let out = s.run(&["import", "participants", "p.csv", "--by", "A. Manager"]);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "p.csv: comma-separated, UTF-8, LF\np.csv: 3 rows: 0 new, 0 changed, 3 unchanged\n");
    let out = s.import("participants", "one.csv", "participant,site\nU01,Uppsala\n");
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "one.csv: comma-separated, UTF-8, LF\none.csv: 1 row: 0 new, 1 changed, 0 unchanged\n");

    // --by is only a note: the logged-in account is the actor.
    s.file("p5.csv", "participant\nU05\n");
    assert_exit(&s.run(&["import", "participants", "p5.csv", "--by", "A. Manager"]), 0);
    s.store()
        .read(|r| {
            let trail = r.audit_trail("participant", "U01")?;
            assert_eq!(trail.len(), 3);
            let detail: serde_json::Value = serde_json::from_str(&trail[1].detail).unwrap();
            assert_eq!(detail["change"], "changed");
            assert_eq!(detail["old"]["site"], "Uppsala");
            assert_eq!(detail["new"]["site"], "Lund");
            assert_eq!(r.audit_trail("participant", "U05")?[0].actor, DATA_MANAGER.0);
            Ok(())
        })
        .unwrap();
    // The participant not in the later file is left alone (imports never delete).
    assert!(s.store().read(|r| r.participant_exists("U03")).unwrap());

    let out = s.run(&["import", "participants", "p.csv", "--by", " "]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("--by"), "{}", stderr(&out));
}

#[test]
fn an_unknown_participant_refuses_the_whole_file_and_names_its_line() {
    let s = Study::new();
    assert_exit(&s.import("participants", "participants.csv", PARTICIPANTS), 0);
    let audited = s.audit_rows();
    // Line 2 is fine and is applied first in the transaction; line 3 is not.
    let out = s.import("visits", "visits.csv", "participant,visit,meal_start\nU01,V0,2026-03-02T08:30\nU99,V1,\n");
    assert_exit(&out, 1);
    assert_eq!(stdout(&out), "");
    let err = stderr(&out);
    assert!(err.starts_with("visits.csv:3: column participant: U99 "), "{err}");
    assert!(err.contains("nothing imported"), "{err}");
    assert!(s.store().read(|r| r.visit("U01", "V0")).unwrap().is_none(), "line 2 was rolled back");
    assert_eq!(s.audit_rows(), audited);

    let out = s.import("samples", "samples.csv", "sample_id,participant,visit,minute\nS-1,U01,V0,0\nS-2,U77,V0,30\n");
    assert_exit(&out, 1);
    assert!(stderr(&out).starts_with("samples.csv:3: column participant: U77 "), "{}", stderr(&out));
    assert!(s.store().read(|r| r.sample("S-1")).unwrap().is_none());
}

#[test]
fn a_bad_row_refuses_the_whole_file_with_file_line_and_column() {
    let s = Study::new();
    let out = s.import("participants", "participants.csv", "participant,site\nU01,Uppsala\nU 02,Uppsala\n");
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(err.starts_with("participants.csv:3: column participant: "), "{err}");
    assert!(err.contains("nothing imported"), "{err}");

    assert_exit(&s.import("participants", "participants.csv", PARTICIPANTS), 0);
    assert_exit(&s.import("visits", "visits.csv", VISITS), 0);
    let audited = s.audit_rows();
    let out = s.import("samples", "samples.csv", "sample_id,participant,visit,minute\nS-1,U01,V0,0\nS-2,U01,V0,half\n");
    assert_exit(&out, 1);
    assert!(
        stderr(&out).starts_with("samples.csv:3: column minute: \"half\" is not a whole number"),
        "{}",
        stderr(&out)
    );
    // A column outside the format (personal data) is refused at the header.
    let out = s.import("participants", "names.csv", "participant,name\nU09,Anna\n");
    assert_exit(&out, 1);
    assert!(stderr(&out).starts_with("names.csv:1: column name: "), "{}", stderr(&out));
    assert_eq!(s.audit_rows(), audited, "nothing was written");
    assert!(s.store().read(|r| r.sample("S-1")).unwrap().is_none());
    assert!(!s.store().read(|r| r.participant_exists("U09")).unwrap());

    // Nothing reached the outputs either.
    let out = s.run(&["export", "results"]);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), format!("{RESULTS_HEADER}\n"));
    let out = s.run(&["report", "mismatches", "--format", "csv", "--all"]);
    assert_exit(&out, 0);
    let rows = csv_rows(&stdout(&out));
    assert_eq!(rows[0].join(","), MISMATCHES_HEADER);
    // Only the missing results of the imported visits (their ids given at import): no other mismatch.
    assert!(rows[1..].iter().all(|r| r[1] == "MISSING_RESULT" && !r[0].is_empty()), "{}", stdout(&out));
}

#[test]
fn usage_and_configuration_problems_exit_2() {
    let s = Study::new();
    // A file that cannot be read is a usage error, like `parse`.
    // (Named users: no account is created, so no database either.)
    let out = s.run(&["import", "participants", "missing.csv", "--user", "nobody"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("missing.csv: cannot read"), "{}", stderr(&out));
    let out = s.run(&["import", "arms", "x.csv", "--user", "nobody"]);
    assert_exit(&out, 2);
    let out = s.run(&["report", "mismatches", "--format", "html"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains(&s.db.display().to_string()), "no database yet: {}", stderr(&out));
    let out = s.run(&["report", "mismatches", "--format", "pdf"]);
    assert_exit(&out, 2);

    // No database yet: a report would look like an empty study, so it is refused.
    let out = s.run(&["export", "results"]);
    assert_exit(&out, 2);
    assert_eq!(stdout(&out), "");
    assert!(stderr(&out).contains(&s.db.display().to_string()), "{}", stderr(&out));
    assert!(!s.db.exists(), "reading never creates the database");

    // A broken configuration.
    let bad = s.file("bad.toml", "[study]\nid = \"X\"\n");
    for args in [&["import", "participants", "p.csv"][..], &["export", "results"], &["report", "mismatches"]] {
        s.file("p.csv", PARTICIPANTS);
        let out = Command::new(env!("CARGO_BIN_EXE_labfeed"))
            .arg("--config")
            .arg(&bad)
            .args(args)
            .env_remove("LABFEED_CONFIG")
            .current_dir(s.dir.path())
            .output()
            .unwrap();
        assert_exit(&out, 2);
        assert!(stderr(&out).contains("bad.toml"), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn empty_outputs_print_exactly_their_header_row() {
    let s = Study::new();
    drop(s.store()); // a fresh, migrated database
    let out = s.run(&["export", "results"]);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), format!("{RESULTS_HEADER}\n"));
    for args in
        [&["report", "mismatches", "--format", "csv"][..], &["report", "mismatches", "--format", "csv", "--all"]]
    {
        let out = s.run(args);
        assert_exit(&out, 0);
        assert_eq!(stdout(&out), format!("{MISMATCHES_HEADER}\n"), "{args:?}");
    }
    let out = s.run(&["report", "mismatches"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.starts_with("Mismatches (open) for study NCT02057211, as of "), "{text}");
    assert!(text.ends_with("\nNo open mismatches.\n"), "{text}");
    let out = s.run(&["report", "mismatches", "--all"]);
    assert!(stdout(&out).ends_with("\nNo mismatches.\n"), "{}", stdout(&out));
}

// ---- non-empty outputs, from rows written with the store API ----

fn time(text: &str) -> jiff::Timestamp {
    text.parse().unwrap()
}

fn reported_time(text: &str) -> Option<labfeed::timestamp::Timestamp> {
    labfeed::timestamp::Timestamp::parse(text).unwrap()
}

struct Reported<'a> {
    sample_id: &'a str,
    test_code: &'a str,
    value: &'a str,
    unit: &'a str,
    comparator: Option<Comparator>,
    slot: Option<&'a Slot>,
    outcome: ObservationOutcome,
}

fn observation(tx: &mut Tx<'_>, message: MessageId, seq: u32, r: &Reported<'_>) -> ObservationId {
    let numeric = Number::parse(r.value.trim_start_matches(['<', '>', '=']), false);
    tx.insert_observation(&NewObservation {
        message_id: message,
        seq,
        byte_offset: 100 * seq as usize,
        instrument: Some("cobas-e411".into()),
        sample_id: Some(r.sample_id.into()),
        test_code: Some(r.test_code.into()),
        reported_value: Some(r.value.into()),
        reported_unit: Some(r.unit.into()),
        comparator: r.comparator,
        reported_numeric: numeric,
        flags: None,
        status: Some("F".into()),
        collected_at: reported_time("20260302084500"),
        collected_offset: None,
        resulted_at: reported_time("202603021010+0100"),
        qc: false,
        matched: Matched {
            participant: r.slot.map(|s| s.participant.clone()),
            visit: r.slot.map(|s| s.visit.clone()),
            minute: r.slot.map(|s| s.minute),
            analyte: r.slot.map(|s| s.analyte.clone()),
            value: None,
            unit: None,
            blq: None,
        },
        outcome: r.outcome,
    })
    .unwrap()
}

/// Results and mismatches for U01 and U02, written in an order that is not
/// the report order. Returns the ids of (open unknown sample, resolved
/// conflict, open out of window).
fn populate(s: &Study) -> (MismatchId, MismatchId, MismatchId) {
    assert_exit(&s.import("participants", "participants.csv", PARTICIPANTS), 0);
    let mut store = s.store();
    let u02 = Slot::new("U02", "V0", 0, "c_peptide");
    let u01_glucose = Slot::new("U01", "V0", 30, "glucose");
    let u01_cpep = Slot::new("U01", "V0", 30, "c_peptide");
    let ids = store
        .write(|tx| {
            let bytes = b"H|\\^&|||cobas-e411\rL|1|N\r";
            let raw = tx.insert_raw(&NewRaw {
                bytes,
                format: Some(Format::Astm),
                personal: &[],
                received_at: time("2026-03-02T09:15:00.400Z"),
            })?;
            let receipt = tx.insert_receipt(&NewReceipt {
                raw_id: raw.id,
                received_at: time("2026-03-02T09:15:00.400Z"),
                source: Source::Serial,
                origin: "/dev/ttyUSB0".into(),
                instrument: Some("cobas-e411".into()),
            })?;
            let message = tx.insert_message(&NewMessage {
                raw_id: raw.id,
                number: 1,
                span: 0..bytes.len(),
                format: Some(Format::Astm),
                sender: Some("cobas-e411".into()),
                control_id: None,
                error: None,
                error_offset: None,
            })?;
            // U02: censored, converted from ng/mL, BLQ.
            let o = observation(
                tx,
                message,
                1,
                &Reported {
                    sample_id: "S-20",
                    test_code: "CPEP",
                    value: "<0.010",
                    unit: "ng/mL",
                    comparator: Some(Comparator::Lt),
                    slot: Some(&u02),
                    outcome: ObservationOutcome::Accepted,
                },
            );
            tx.insert_result(&NewResult {
                observation_id: o,
                slot: u02.clone(),
                value: 0.010 * 0.33109,
                unit: "nmol/L".into(),
                comparator: Some(Comparator::Lt),
                blq: true,
                reason: "ingest".into(),
            })?;
            // U01 glucose: two versions, the export shows the latest.
            for (seq, value) in [(2, "5.4"), (3, "5.6")] {
                let o = observation(
                    tx,
                    message,
                    seq,
                    &Reported {
                        sample_id: "S-2",
                        test_code: "GLUC",
                        value,
                        unit: "mmol/L",
                        comparator: None,
                        slot: Some(&u01_glucose),
                        outcome: ObservationOutcome::Accepted,
                    },
                );
                tx.insert_result(&NewResult {
                    observation_id: o,
                    slot: u01_glucose.clone(),
                    value: value.parse().unwrap(),
                    unit: "mmol/L".into(),
                    comparator: None,
                    blq: false,
                    reason: if seq == 2 { "ingest".into() } else { "correction".into() },
                })?;
            }
            // An unknown sample: no participant.
            let o = observation(
                tx,
                message,
                4,
                &Reported {
                    sample_id: "X99",
                    test_code: "CPEP",
                    value: "0.52",
                    unit: "nmol/L",
                    comparator: None,
                    slot: None,
                    outcome: ObservationOutcome::Mismatch,
                },
            );
            let unknown = tx.insert_mismatch(&NewMismatch {
                code: MismatchCode::UnknownSample,
                holds: true,
                observation_id: Some(o),
                message_id: Some(message),
                receipt_id: receipt,
                participant: None,
                visit: None,
                minute: None,
                analyte: None,
                detail: "X99 is not in the sample manifest, nor does it match the pattern".into(),
            })?;
            // U01 c-peptide: a conflict a data manager resolved.
            let o = observation(
                tx,
                message,
                5,
                &Reported {
                    sample_id: "S-2",
                    test_code: "CPEP",
                    value: "0.61",
                    unit: "nmol/L",
                    comparator: None,
                    slot: Some(&u01_cpep),
                    outcome: ObservationOutcome::Mismatch,
                },
            );
            let conflict = tx.insert_mismatch(&NewMismatch {
                code: MismatchCode::DuplicateConflict,
                holds: true,
                observation_id: Some(o),
                message_id: Some(message),
                receipt_id: receipt,
                participant: Some("U01".into()),
                visit: Some("V0".into()),
                minute: Some(30),
                analyte: Some("c_peptide".into()),
                detail: "0.61, \"differs\" from 0.58".into(),
            })?;
            // U02: out of window (accepted and flagged).
            let window = tx.insert_mismatch(&NewMismatch {
                code: MismatchCode::OutOfWindow,
                holds: false,
                observation_id: None,
                message_id: Some(message),
                receipt_id: receipt,
                participant: Some("U02".into()),
                visit: Some("V0".into()),
                minute: Some(0),
                analyte: Some("c_peptide".into()),
                detail: "collected 9 min after the nominal time".into(),
            })?;
            Ok((unknown, conflict, window))
        })
        .unwrap();
    store
        .write_as("A. Manager", |tx| {
            tx.insert_resolution(&NewResolution {
                mismatch_id: ids.1,
                action: ResolutionAction::Reject,
                participant: None,
                visit: None,
                minute: None,
                result_id: None,
                reason: "haemolysed".into(),
                cause: None,
            })
        })
        .unwrap();
    ids
}

#[test]
fn export_results_lists_the_latest_version_of_each_slot_with_every_column() {
    let s = Study::new();
    populate(&s);
    let out = s.run(&["export", "results"]);
    assert_exit(&out, 0);
    let rows = csv_rows(&stdout(&out));
    assert_eq!(rows[0].join(","), RESULTS_HEADER);
    assert_eq!(rows.len(), 3, "{rows:?}");
    // Participant code order: U01 before U02, though written after.
    assert_eq!(
        rows[1],
        [
            "U01",
            "V0",
            "30",
            "glucose",
            "5.6",
            "mmol/L",
            "",
            "false",
            "5.6",
            "mmol/L",
            "S-2",
            "cobas-e411",
            "GLUC",
            "F",
            "2026-03-02T08:45:00",
            "2026-03-02T10:10+01:00",
            "serial:/dev/ttyUSB0",
            "2026-03-02T09:15:00Z",
        ]
    );
    assert_eq!(
        rows[2],
        [
            "U02",
            "V0",
            "0",
            "c_peptide",
            "0.0033109",
            "nmol/L",
            "<",
            "true",
            "<0.010",
            "ng/mL",
            "S-20",
            "cobas-e411",
            "CPEP",
            "F",
            "2026-03-02T08:45:00",
            "2026-03-02T10:10+01:00",
            "serial:/dev/ttyUSB0",
            "2026-03-02T09:15:00Z",
        ]
    );
    // Held-back results (the unknown sample, the conflict) are not exported.
    assert!(!stdout(&out).contains("X99") && !stdout(&out).contains("0.61"));
}

#[test]
fn report_mismatches_csv_lists_open_ones_and_with_all_the_resolved_too() {
    let s = Study::new();
    let (unknown, conflict, window) = populate(&s);
    let out = s.run(&["report", "mismatches", "--format", "csv"]);
    assert_exit(&out, 0);
    let rows = csv_rows(&stdout(&out));
    assert_eq!(rows[0].join(","), MISMATCHES_HEADER);
    let ids: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(ids, [unknown.to_string(), window.to_string()], "no participant first, then by code");
    assert_eq!(
        rows[1][..15],
        [
            unknown.to_string().as_str(),
            "UNKNOWN_SAMPLE",
            "X99",
            "",
            "",
            "",
            "",
            "cobas-e411",
            "CPEP",
            "0.52",
            "nmol/L",
            "X99 is not in the sample manifest, nor does it match the pattern",
            "serial:/dev/ttyUSB0",
            "2026-03-02T09:15:00Z",
            "open",
        ]
    );
    // No observation: the provenance fields are empty, the arrival is known.
    assert_eq!(
        rows[2][..15],
        [
            window.to_string().as_str(),
            "OUT_OF_WINDOW",
            "",
            "U02",
            "V0",
            "0",
            "c_peptide",
            "",
            "",
            "",
            "",
            "collected 9 min after the nominal time",
            "serial:/dev/ttyUSB0",
            "2026-03-02T09:15:00Z",
            "open",
        ]
    );

    let out = s.run(&["report", "mismatches", "--format", "csv", "--all"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    let rows = csv_rows(&text);
    assert_eq!(rows.len(), 4);
    let states: Vec<(&str, &str)> = rows[1..].iter().map(|r| (r[0].as_str(), r[14].as_str())).collect();
    assert_eq!(
        states,
        [
            (unknown.to_string().as_str(), "open"),
            (conflict.to_string().as_str(), "resolved"),
            (window.to_string().as_str(), "open")
        ]
    );
    assert_eq!(rows[2][1], "DUPLICATE_CONFLICT");
    assert_eq!(rows[2][3..7], ["U01", "V0", "30", "c_peptide"]);
    // RFC 4180 quoting of a detail with a comma and quotes.
    assert_eq!(rows[2][11], "0.61, \"differs\" from 0.58");
    assert!(text.contains(",\"0.61, \"\"differs\"\" from 0.58\","), "{text}");
}

#[test]
fn output_writes_the_file_and_replaces_what_was_there() {
    let s = Study::new();
    populate(&s);
    let path = s.file("results.csv", &"stale line that must disappear\n".repeat(100));
    let out = s.run(&["export", "results", "--output", "results.csv"]);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "", "nothing on stdout with --output");
    assert_eq!(stderr(&out), "results.csv: 2 results\n");
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(written.starts_with(&format!("{RESULTS_HEADER}\nU01,V0,30,glucose,5.6,")), "{written}");
    assert_eq!(written.lines().count(), 3);
    assert!(!written.contains("stale"));
    assert_eq!(written, stdout(&s.run(&["export", "results"])), "the file holds what stdout would");

    let out = s.run(&["report", "mismatches", "--format", "csv", "--all", "--output", "m.csv"]);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "");
    let written = std::fs::read_to_string(s.dir.path().join("m.csv")).unwrap();
    assert_eq!(csv_rows(&written).len(), 4);
    let out = s.run(&["report", "mismatches", "--output", "m.txt"]);
    assert_exit(&out, 0);
    let written = std::fs::read_to_string(s.dir.path().join("m.txt")).unwrap();
    assert!(written.ends_with("\n2 open mismatches\n"), "{written}");

    // An output that cannot be written is a usage error.
    let out = s.run(&["export", "results", "--output", "no/such/dir/r.csv"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("no/such/dir/r.csv"), "{}", stderr(&out));
}

#[test]
fn report_mismatches_text_groups_by_participant_and_visit_and_counts() {
    let s = Study::new();
    let (unknown, conflict, window) = populate(&s);
    let out = s.run(&["report", "mismatches"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("Mismatches (open) for study NCT02057211, as of 20"), "{text}");
    assert!(lines[0].ends_with(" Europe/Stockholm"), "one zone, named: {text}");
    assert_eq!(
        lines[1..],
        [
            "",
            "Not matched to a participant",
            &format!(
                "  #{unknown} UNKNOWN_SAMPLE  sample X99, test CPEP, reported 0.52 nmol/L: \
                 X99 is not in the sample manifest, nor does it match the pattern \
                 [serial:/dev/ttyUSB0, cobas-e411, received 2026-03-02 10:15:00 Europe/Stockholm]"
            ),
            "",
            "Participant U02, visit V0",
            &format!(
                "  #{window} OUT_OF_WINDOW  no sample ID, minute 0, c_peptide: \
                 collected 9 min after the nominal time [serial:/dev/ttyUSB0, received 2026-03-02 10:15:00 Europe/Stockholm]"
            ),
            "",
            "2 open mismatches",
        ]
    );
    assert!(!text.contains("DUPLICATE_CONFLICT"));

    let out = s.run(&["report", "mismatches", "--format", "text", "--all"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.starts_with("Mismatches (open and resolved) for study NCT02057211"), "{text}");
    let u01 = text.find("Participant U01, visit V0").expect("U01 group");
    let u02 = text.find("Participant U02, visit V0").expect("U02 group");
    assert!(u01 < u02, "participant code order");
    assert!(
        text.contains(&format!(
            "  #{conflict} DUPLICATE_CONFLICT  sample S-2, minute 30, c_peptide, reported 0.61 nmol/L: "
        )),
        "{text}"
    );
    assert!(text.contains("\n      resolved (reject) by A. Manager at 20"), "{text}");
    // What the value is now, not as it was at ingest; the time in the study zone.
    assert!(text.contains(" Europe/Stockholm: haemolysed\n      now rejected: kept out\n"), "{text}");
    assert!(text.ends_with("\n3 mismatches: 2 open, 1 resolved\n"), "{text}");
}

#[test]
fn results_ingested_by_the_pipeline_are_exported_and_its_mismatches_reported() {
    let s = Study::new();
    assert_exit(&s.import("participants", "participants.csv", PARTICIPANTS), 0);
    assert_exit(&s.import("visits", "visits.csv", VISITS), 0);
    // ASTM from the e411: C-peptide censored in ng/mL, glucose in mg/dL, and a
    // test code the configuration does not map.
    s.file(
        "run.astm",
        "H|\\^&|||cobas-e411^1|||||host|RSUPL^BATCH|P|1|20260302101500\r\
         P|1|U01\r\
         O|1|U01-V0-T030|12^0012^2^^S1^SC|^^^CPEP^1|R||20260302090000||||N||||1|||||||20260302101200|||F\r\
         R|1|^^^CPEP|<0.010|ng/mL||L||F||ADMIN|20260302100000|20260302101000|E1\r\
         R|2|^^^GLUC|97|mg/dL||N||F||ADMIN|20260302100000|20260302101100|E1\r\
         R|3|^^^XYZ|1.0|mg/dL||N||F||ADMIN|20260302100000|20260302101100|E1\r\
         L|1|N\r",
    );
    assert_exit(&s.run(&["ingest", "run.astm"]), 0);

    let out = s.run(&["export", "results"]);
    assert_exit(&out, 0);
    let export = stdout(&out);
    let rows = csv_rows(&export);
    assert_eq!(rows.len(), 3, "{export}");
    assert_eq!(
        rows[1][..16],
        [
            "U01",
            "V0",
            "30",
            "c_peptide",
            "0.0033109",
            "nmol/L",
            "<",
            "true",
            "<0.010",
            "ng/mL",
            "U01-V0-T030",
            "cobas-e411",
            "CPEP",
            "F",
            "2026-03-02T09:00:00",
            "2026-03-02T10:10:00",
        ]
    );
    assert!(rows[1][16].starts_with("ingest:") && rows[1][16].ends_with("run.astm"), "{}", rows[1][16]);
    let received = &rows[1][17];
    assert!(received.len() == 20 && received.ends_with('Z') && received.as_bytes()[10] == b'T', "{received}");
    assert_eq!(rows[2][..8], ["U01", "V0", "30", "glucose", "5.38410301953819", "mmol/L", "", "false"]);

    let out = s.run(&["report", "mismatches", "--format", "csv"]);
    assert_exit(&out, 0);
    let all_rows = csv_rows(&stdout(&out));
    let (missing, rows): (Vec<_>, Vec<_>) = all_rows.into_iter().partition(|r| r[1] == "MISSING_RESULT");
    assert!(missing.iter().all(|r| !r[0].is_empty() && r[14] == "open"), "{missing:?}");
    assert!(!missing.iter().any(|r| r[3] == "U01" && r[5] == "30"), "U01 minute 30 has both results: {missing:?}");
    assert!(missing.iter().any(|r| r[3] == "U02" && r[5] == "30"), "U02 has none: {missing:?}");
    assert_eq!(rows.len(), 2, "{}", stdout(&out));
    assert_eq!(rows[1][1], "UNKNOWN_TEST");
    // The value of a test that maps to nothing is not kept (it could be an identifier).
    assert_eq!(rows[1][7..11], ["cobas-e411", "XYZ", "", "mg/dL"]);
    assert!(rows[1].iter().any(|c| c.contains("value not kept: the test is not mapped")), "{:?}", rows[1]);
    assert_eq!(rows[1][14], "open");

    // The same file again is a duplicate: the export does not change.
    assert_exit(&s.run(&["ingest", "run.astm"]), 0);
    assert_eq!(stdout(&s.run(&["export", "results"])), export);
}

/// The scheduled minutes of the example configuration, as in samples.
const MINUTES: [i32; 7] = [-10, 0, 15, 30, 60, 90, 120];

/// An HL7 result file for one participant's visit: every minute, C-peptide
/// `cpep[i]` nmol/L and glucose 100 mg/dL, drawn on time after `meal` (HHMM).
fn visit_file(participant: &str, visit: &str, day: &str, meal_minutes: i32, cpep: &[f64; 7]) -> String {
    let mut t = format!(
        "MSH|^~\\&|CENTRALLAB|CLAB|STUDYDB|T1D|{day}1545||ORU^R01^ORU_R01|{participant}{visit}|P|2.5.1\r\
         PID|1||{participant}^^^TRIAL^PI\r"
    );
    for (i, (minute, value)) in MINUTES.iter().zip(cpep).enumerate() {
        let at = meal_minutes + minute;
        let clock = format!("{:02}{:02}", at / 60, at % 60);
        t.push_str(&format!("OBR|{}|{participant}-{visit}-T{minute}^STUDY||MMTT|||{day}{clock}\r", i + 1));
        t.push_str(&format!("OBX|1|NM|1986-9^C peptide^LN||{value}|nmol/L|||||F\r"));
        t.push_str("OBX|2|NM|2345-7^Glucose^LN||100|mg/dL|||||F\r");
    }
    t
}

/// U01 with a complete baseline and a complete two-year visit; U02 with a
/// complete baseline and a two-year visit that nothing has arrived for.
fn two_visit_study() -> Study {
    let s = Study::new();
    assert_exit(&s.import("participants", "participants.csv", PARTICIPANTS), 0);
    let visits = "participant,visit,meal_start\nU01,V0,2026-03-02T08:30\nU01,V4,2026-09-01T08:00\n\
                  U02,V0,2026-03-03T08:30\nU02,V4,2026-09-02T08:00\n";
    assert_exit(&s.import("visits", "visits.csv", visits), 0);
    let baseline = [0.25, 0.3, 0.55, 0.8, 1.0, 0.9, 0.7];
    let follow_up = baseline.map(|v| v / 14.0);
    s.file("u01-v0.hl7", &visit_file("U01", "V0", "20260302", 8 * 60 + 30, &baseline));
    s.file("u01-v4.hl7", &visit_file("U01", "V4", "20260901", 8 * 60, &follow_up));
    s.file("u02-v0.hl7", &visit_file("U02", "V0", "20260303", 8 * 60 + 30, &baseline));
    let out = s.run(&["ingest", "u01-v0.hl7", "u01-v4.hl7", "u02-v0.hl7"]);
    assert_exit(&out, 0);
    s
}

#[test]
fn a_visit_with_nothing_received_is_one_line_in_the_text_and_a_row_per_slot_in_the_csv() {
    let s = two_visit_study();
    let out = s.run(&["report", "mismatches"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    let title = lines.iter().position(|l| *l == "Participant U02, visit V4").unwrap_or_else(|| panic!("{text}"));
    assert_eq!(lines[title + 1], "  -- MISSING_RESULT  V4: nothing received yet, 14 slots", "{text}");
    assert_eq!(lines[title + 2], "", "one line, not fourteen: {text}");
    assert_eq!(text.matches("MISSING_RESULT").count(), 1, "{text}");
    // The count still counts every open slot.
    assert!(text.ends_with("\n14 open mismatches\n"), "{text}");
    // The CSV keeps one row per slot (SPEC §6).
    let out = s.run(&["report", "mismatches", "--format", "csv"]);
    let rows = csv_rows(&stdout(&out));
    let v4: Vec<_> = rows.iter().filter(|r| r[1] == "MISSING_RESULT" && r[3] == "U02" && r[4] == "V4").collect();
    assert_eq!(v4.len(), 14, "{rows:?}");
}

#[test]
fn a_partly_received_visit_lists_each_missing_slot_and_counts_in_the_singular() {
    let s = two_visit_study();
    // One result of U02 V4 arrives: 13 slots stay missing, listed one by one.
    let mut one = visit_file("U02", "V4", "20260902", 8 * 60, &[0.02; 7]);
    let cut = one.find("OBR|2|").unwrap();
    one.truncate(cut);
    let cut = one.find("OBX|2|").unwrap();
    one.truncate(cut);
    s.file("u02-v4.hl7", &one);
    assert_exit(&s.run(&["ingest", "u02-v4.hl7"]), 0);
    let text = stdout(&s.run(&["report", "mismatches"]));
    assert!(!text.contains("nothing received yet"), "{text}");
    assert_eq!(text.matches(" MISSING_RESULT  minute ").count(), 13, "{text}");
    // The meal start names its zone, as every time on a line does.
    assert!(
        text.contains(
            " MISSING_RESULT  minute 120, glucose: no accepted result (meal start 2026-09-02 08:00 Europe/Stockholm)\n"
        ),
        "{text}"
    );
    assert!(text.ends_with("\n13 open mismatches\n"), "{text}");
}

#[test]
fn the_auc_text_table_has_units_and_marks_the_baseline_visit() {
    let s = two_visit_study();
    let out = s.run(&["report", "auc"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("MMTT AUC for study NCT02057211, as of 20"), "{text}");
    assert!(lines[0].ends_with(" Europe/Stockholm"), "{text}");
    assert_eq!(lines[1], "Baseline visit V0: delta_auc_mean is a visit's auc_mean minus V0's.", "{text}");
    let header = lines.iter().find(|l| l.starts_with("participant")).unwrap();
    let columns: Vec<&str> = header.split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(
        columns,
        [
            "participant",
            "visit",
            "analyte",
            "unit",
            "auc (unit·min)",
            "auc_mean (unit)",
            "ln_auc_mean_plus_1",
            "points",
            "complete",
            "missing_minutes",
            "delta_auc_mean (unit)"
        ],
        "{text}"
    );
    let row = |prefix: &str| -> Vec<String> {
        let line = lines.iter().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("{prefix}: {text}"));
        line.split("  ").map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned).collect()
    };
    let base = row("U01          V0 (baseline)  c_peptide");
    assert_eq!(base[..5], ["U01", "V0 (baseline)", "c_peptide", "nmol/L", "96"], "{text}");
    let glucose = row("U01          V0 (baseline)  glucose");
    assert_eq!(glucose[3], "mmol/L", "{text}");
    let follow = row("U01          V4             c_peptide");
    assert_eq!(follow[1], "V4", "not marked: {text}");
    // U02 V4: its meal has started, nothing received: rows without an AUC.
    let nothing = row("U02          V4             c_peptide");
    assert_eq!(nothing[3..], ["nmol/L", "-", "-", "-", "0", "false", "0;15;30;60;90;120", "-"], "{text}");
    assert!(text.ends_with("\n8 AUC rows\n"), "{text}");
}

/// Review r3: a visit whose meal has started and that nothing has arrived
/// for has its AUC rows (one per analyte, empty AUC, every minute missing),
/// like a partly received visit, in CSV, text and HTML; a visit whose meal
/// is still to come has none.
#[test]
fn a_visit_with_nothing_received_has_auc_rows_without_an_auc() {
    let s = two_visit_study();
    let visits = "participant,visit,meal_start\nU01,V0,2026-03-02T08:30\nU01,V4,2026-09-01T08:00\n\
                  U02,V0,2026-03-03T08:30\nU02,V4,2026-09-02T08:00\nU02,V3,2099-09-02T08:00\n";
    assert_exit(&s.import("visits", "visits.csv", visits), 0);
    let out = s.run(&["report", "auc", "--format", "csv"]);
    assert_exit(&out, 0);
    let rows = csv_rows(&stdout(&out));
    let keys: Vec<String> = rows.iter().skip(1).map(|r| format!("{} {} {}", r[0], r[1], r[2])).collect();
    assert_eq!(
        keys,
        [
            "U01 V0 c_peptide",
            "U01 V0 glucose",
            "U01 V4 c_peptide",
            "U01 V4 glucose",
            "U02 V0 c_peptide",
            "U02 V0 glucose",
            "U02 V4 c_peptide",
            "U02 V4 glucose"
        ],
        "no row for V3, whose meal is to come: {rows:?}"
    );
    let v4 = rows.iter().find(|r| r[0] == "U02" && r[1] == "V4" && r[2] == "c_peptide").unwrap();
    assert_eq!(v4[3..], ["", "", "", "0", "false", "0;15;30;60;90;120", ""], "{rows:?}");
    let out = s.run(&["report", "auc", "--format", "html"]);
    assert_exit(&out, 0);
    let html = stdout(&out);
    let options = roxmltree::ParsingOptions { allow_dtd: true, ..roxmltree::ParsingOptions::default() };
    let doc = roxmltree::Document::parse_with_options(&html, options).unwrap();
    let cells: Vec<Vec<String>> = doc
        .descendants()
        .filter(|n| n.has_tag_name("tr"))
        .map(|tr| tr.children().filter(|c| c.has_tag_name("td")).map(|td| td.text().unwrap_or("").to_owned()).collect())
        .filter(|r: &Vec<String>| {
            r.first().map(String::as_str) == Some("U02") && r.get(1).map(String::as_str) == Some("V4")
        })
        .collect();
    assert_eq!(cells.len(), 2, "{html}");
}

#[test]
fn one_of_a_kind_is_said_in_the_singular() {
    let s = two_visit_study();
    // U02 V4 arrives complete but for glucose at 120: one open mismatch, one slot.
    let mut file = visit_file("U02", "V4", "20260902", 8 * 60, &[0.02; 7]);
    let last = file.rfind("OBX|2|").unwrap();
    file.truncate(last);
    s.file("u02-v4.hl7", &file);
    assert_exit(&s.run(&["ingest", "u02-v4.hl7"]), 0);
    let out = s.run(&["report", "mismatches", "--output", "m.txt"]);
    assert_exit(&out, 0);
    assert!(stderr(&out).ends_with("m.txt: 1 open mismatch\n"), "{}", stderr(&out));
    let text = std::fs::read_to_string(s.dir.path().join("m.txt")).unwrap();
    assert!(text.ends_with("\n1 open mismatch\n"), "{text}");
    let out = s.run(&["report", "mismatches", "--format", "html"]);
    let html = stdout(&out);
    assert!(html.contains(". 1 open mismatch. "), "{html}");
    assert!(html.contains("Participant U02</a> (1 row)") || !html.contains("<nav>"), "{html}");
}

/// Review r3: once one slot of a visit is marked not done (the tube was
/// never drawn), nothing has been received still: the visit stays one line
/// in the open report, and `--all` lists the not-done slot under that line.
#[test]
fn a_visit_with_nothing_received_stays_one_line_after_one_slot_is_marked_not_done() {
    let s = Study::new();
    assert_exit(&s.import("participants", "participants.csv", "participant,site\nU01,UPP\n"), 0);
    assert_exit(&s.import("visits", "visits.csv", "participant,visit,meal_start\nU01,V0,2026-03-02T08:30\n"), 0);
    let before = stdout(&s.run(&["report", "mismatches"]));
    assert!(before.contains("  -- MISSING_RESULT  V0: nothing received yet, 14 slots\n"), "{before}");

    let rows = csv_rows(&stdout(&s.run(&["report", "mismatches", "--format", "csv"])));
    let id = rows.get(1).and_then(|r| r.first()).expect("a MISSING_RESULT row").clone();
    let minute = rows.get(1).and_then(|r| r.get(5)).expect("its minute").clone();
    assert_exit(&s.run(&["resolve", &id, "--not-done", "--reason", "vein collapsed; no -10 sample"]), 0);

    let after = stdout(&s.run(&["report", "mismatches"]));
    assert_eq!(after.matches("MISSING_RESULT").count(), 1, "still nothing received for U01 V0:\n{after}");
    assert!(after.contains("  -- MISSING_RESULT  V0: nothing received yet, 13 slots open, 1 not done\n"), "{after}");
    assert!(after.ends_with("\n13 open mismatches\n"), "{after}");

    // --all: the one line, then the not-done slot with its reason.
    let all = stdout(&s.run(&["report", "mismatches", "--all"]));
    let lines: Vec<&str> = all.lines().collect();
    let at = lines.iter().position(|l| l.contains("nothing received yet")).unwrap_or_else(|| panic!("{all}"));
    assert_eq!(lines[at], "  -- MISSING_RESULT  V0: nothing received yet, 13 slots open, 1 not done", "{all}");
    assert!(lines[at + 1].starts_with(&format!("  #{id} MISSING_RESULT  minute {minute}, ")), "{all}");
    assert!(lines[at + 2].starts_with("      not done by "), "{all}");
    assert!(lines[at + 2].ends_with(": vein collapsed; no -10 sample"), "{all}");
    assert_eq!(all.matches("MISSING_RESULT").count(), 2, "{all}");

    // The CSV keeps a row per slot (SPEC §6).
    let rows = csv_rows(&stdout(&s.run(&["report", "mismatches", "--format", "csv"])));
    assert_eq!(rows.len(), 1 + 13, "{rows:?}");

    // HTML: the same line; with --all the not-done slot in a table under it.
    for (all, listed) in [(false, 0), (true, 1)] {
        let args: &[&str] = if all {
            &["report", "mismatches", "--format", "html", "--all"]
        } else {
            &["report", "mismatches", "--format", "html"]
        };
        let html = stdout(&s.run(args));
        let options = roxmltree::ParsingOptions { allow_dtd: true, ..roxmltree::ParsingOptions::default() };
        let doc = roxmltree::Document::parse_with_options(&html, options).unwrap();
        let line = doc
            .descendants()
            .find(|n| {
                n.has_tag_name("p") && n.attribute("class") == Some("nothing") && n.attribute("data-slots").is_some()
            })
            .unwrap_or_else(|| panic!("{html}"));
        assert_eq!(
            line.text(),
            Some(
                "V0: nothing received yet, 13 slots open, 1 not done (MISSING_RESULT for every open minute and analyte)."
            )
        );
        let rows: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("tr") && n.attribute("data-code") == Some("MISSING_RESULT"))
            .collect();
        // The summary table has a MISSING_RESULT row too (it has no class).
        let listed_rows: Vec<_> = rows.iter().filter(|r| r.attribute("class").is_some()).collect();
        assert_eq!(listed_rows.len(), listed, "{html}");
        if let Some(row) = listed_rows.first() {
            assert_eq!(row.attribute("class"), Some("resolved"));
            let text: String = row.descendants().filter_map(|n| n.text()).collect();
            assert!(text.contains("vein collapsed; no -10 sample"), "{text}");
        }
    }
}

/// Review r3: a value flagged OUT_OF_WINDOW whose tube the manifest then
/// moves to another participant is held there as PARTICIPANT_CONFLICT, and
/// the import closes the flag at the old slot. `--all` says where the value
/// is now (moved, held there), not "accepted": it is accepted nowhere.
#[test]
fn with_all_a_flag_whose_value_a_manifest_correction_moved_says_it_is_held_at_its_new_slot() {
    let s = Study::new();
    let imports = [
        ("participants", "participant\nU01\nU02\n"),
        ("visits", "participant,visit,meal_start\nU01,V0,2026-03-02T08:30\nU02,V0,2026-03-03T08:30\n"),
        ("samples", "sample_id,participant,visit,minute\nS-30,U01,V0,30\n"),
    ];
    for (kind, body) in imports {
        assert_exit(&s.import(kind, &format!("{kind}.csv"), body), 0);
    }
    // Drawn at 09:30, 60 min after the meal: the 30-min value is flagged.
    s.file(
        "t30.hl7",
        "MSH|^~\\&|CENTRALLAB|CLAB|STUDYDB|T1D|20260312154500||ORU^R01^ORU_R01|C30|P|2.5.1\r\
         PID|1||U01^^^TRIAL^PI\r\
         OBR|1|S-30^STUDY||MMTT|||202603020930\r\
         OBX|1|NM|1986-9^C peptide^LN||0.5|nmol/L|||||F\r",
    );
    assert_exit(&s.run(&["ingest", "t30.hl7"]), 0);
    let report = stdout(&s.run(&["report", "mismatches"]));
    assert!(report.contains("OUT_OF_WINDOW"), "{report}");

    // The tube was U02's.
    assert_exit(&s.import("samples", "samples.csv", "sample_id,participant,visit,minute\nS-30,U02,V0,30\n"), 0);
    let exported = stdout(&s.run(&["export", "results"]));
    assert_eq!(exported.lines().count(), 1, "the value is accepted nowhere now:\n{exported}");
    let rows = csv_rows(&stdout(&s.run(&["report", "mismatches", "--format", "csv"])));
    let held = rows.iter().find(|r| r[1] == "PARTICIPANT_CONFLICT").unwrap_or_else(|| panic!("{rows:?}"));
    assert_eq!((held[3].as_str(), held[4].as_str(), held[5].as_str()), ("U02", "V0", "30"), "{rows:?}");

    let all = stdout(&s.run(&["report", "mismatches", "--all"]));
    let flag = all.lines().position(|l| l.contains("OUT_OF_WINDOW")).expect("the flag is listed");
    let now = all.lines().skip(flag + 1).find(|l| l.trim_start().starts_with("now ")).unwrap_or("");
    assert!(!now.contains("accepted"), "the value was moved and is held at U02, yet --all says:\n{now}\n\n{all}");
    assert_eq!(now, format!("      now moved to U02/V0/30, held there for review (#{})", held[0]), "{all}");

    // The HTML state column says the same.
    let html = stdout(&s.run(&["report", "mismatches", "--all", "--format", "html"]));
    let options = roxmltree::ParsingOptions { allow_dtd: true, ..roxmltree::ParsingOptions::default() };
    let doc = roxmltree::Document::parse_with_options(&html, options).unwrap();
    let row = doc
        .descendants()
        .find(|n| {
            n.has_tag_name("tr") && n.attribute("data-code") == Some("OUT_OF_WINDOW") && n.attribute("class").is_some()
        })
        .unwrap_or_else(|| panic!("{html}"));
    let effect =
        row.descendants().find(|n| n.attribute("class") == Some("effect")).and_then(|n| n.text()).unwrap_or_default();
    assert_eq!(effect, format!("moved to U02/V0/30, held there for review (#{})", held[0]), "{html}");
}
