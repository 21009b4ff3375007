//! `labfeed ingest` end to end: the real binary on a real SQLite file, checked
//! through the store's own queries. Covers every mismatch code that can arise
//! at ingest, duplicates, corrections, order independence and privacy.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use labfeed::store::{CurrentResult, MismatchReport, Participant, Sample, Store, Visit};

struct Study {
    dir: tempfile::TempDir,
    config: PathBuf,
    database: PathBuf,
}

const CONFIG: &str = include_str!("../../config/labfeed.example.toml");

impl Study {
    fn new() -> Study {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("db").join("labfeed.db");
        let config = dir.path().join("labfeed.toml");
        let text = CONFIG.replace("/var/lib/labfeed/labfeed.db", database.to_str().unwrap());
        std::fs::write(&config, text).unwrap();
        let study = Study { dir, config, database };
        // Study data straight through the store (the import command has its own tests).
        std::fs::create_dir_all(study.database.parent().unwrap()).unwrap();
        let mut store = Store::open(&study.database).unwrap();
        store
            .write(|tx| {
                for code in ["U07", "U08"] {
                    tx.upsert_participant(&Participant { code: code.into(), site: None })?;
                }
                tx.upsert_visit(&Visit {
                    participant: "U07".into(),
                    visit: "V4".into(),
                    meal_start: Some("2026-03-02T08:30".parse().unwrap()),
                })?;
                tx.upsert_sample(&Sample {
                    sample_id: "LAB-0001".into(),
                    participant: "U08".into(),
                    visit: "V0".into(),
                    minute: 60,
                })?;
                Ok(())
            })
            .unwrap();
        study
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn ingest(&self, files: &[&Path]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_labfeed"));
        cmd.arg("--config").arg(&self.config).arg("ingest").args(files);
        cmd.output().unwrap()
    }

    fn results(&self) -> Vec<CurrentResult> {
        Store::open_read_only(&self.database).unwrap().read(|r| r.current_results()).unwrap()
    }

    fn mismatches(&self) -> Vec<MismatchReport> {
        Store::open_read_only(&self.database).unwrap().read(|r| r.mismatch_report(false)).unwrap()
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `(test, value, unit, status)` of one ASTM result.
type AstmResult<'a> = (&'a str, &'a str, &'a str, &'a str);
/// `(code, value type, value, unit, status)` of one OBX.
type Obx<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str);

/// An ASTM upload: one message, one O per sample with its results.
fn astm(sender: &str, patient: &str, samples: &[(&str, &[AstmResult<'_>])]) -> String {
    let mut text = format!("H|\\^&|||{sender}^1|||||host|RSUPL^BATCH|P|1|20260302120000\rP|1|{patient}\r");
    for (i, (sample, results)) in samples.iter().enumerate() {
        text.push_str(&format!("O|{}|{sample}||^^^CPEP|R||20260302083000||||N||||1|||||||20260302100000|||F\r", i + 1));
        for (j, (test, value, unit, status)) in results.iter().enumerate() {
            text.push_str(&format!(
                "R|{}|^^^{test}|{value}|{unit}||N||{status}||ADMIN|20260302100000|20260302101500|E1\r",
                j + 1
            ));
        }
    }
    text.push_str("L|1|N\r");
    text
}

/// An HL7 ORU from the central lab: one OBR per sample with its collection time.
fn hl7(control: &str, orders: &[(&str, &str, &[Obx<'_>])]) -> String {
    let mut text = format!(
        "MSH|^~\\&|CENTRALLAB|CLAB|STUDYDB|T1D|20260312154500||ORU^R01^ORU_R01|{control}|P|2.5.1\rPID|1||U07^^^TRIAL^PI\r"
    );
    for (i, (sample, collected, results)) in orders.iter().enumerate() {
        text.push_str(&format!("OBR|{}|{sample}^STUDY||MMTT|||{collected}\r", i + 1));
        for (j, (code, kind, value, unit, status)) in results.iter().enumerate() {
            text.push_str(&format!(
                "OBX|{}|{kind}|{code}^x^LN||{value}|{unit}|||||{status}|||||||||20260312120500\r",
                j + 1
            ));
        }
    }
    text
}

fn slot(r: &CurrentResult) -> String {
    format!("{} {} {} {}", r.result.slot.participant, r.result.slot.visit, r.result.slot.minute, r.result.slot.analyte)
}

#[test]
fn an_upload_is_matched_converted_and_stored_with_censored_values_kept() {
    let s = Study::new();
    let file = s.file(
        "e411.astm",
        &astm(
            "cobas-e411",
            "U07",
            &[
                ("U07-V4-T0", &[("CPEP", "<0.010", "nmol/L", "F"), ("GLUC", "6.1", "mmol/L", "F")]),
                ("U07-V4-T30", &[("CPEP", "1.20", "ng/mL", "F"), ("GLUC", "9.4", "mmol/L", "F")]),
            ],
        ),
    );
    let out = s.ingest(&[&file]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout(&out).contains("e411.astm: 4 accepted, 0 duplicates, 0 mismatches, 0 QC, 0 errors"),
        "{}",
        stdout(&out)
    );
    let results = s.results();
    let slots: Vec<String> = results.iter().map(slot).collect();
    assert_eq!(slots, ["U07 V4 0 c_peptide", "U07 V4 0 glucose", "U07 V4 30 c_peptide", "U07 V4 30 glucose"]);
    let censored = &results[0].result;
    assert_eq!((censored.value, censored.comparator.map(|c| c.as_str()), censored.blq), (0.010, Some("<"), true));
    assert!((results[2].result.value - 1.20 * 0.33109).abs() < 1e-12, "ng/mL converted with the molar mass");
    assert_eq!(results[2].provenance.reported_value.as_deref(), Some("1.20"));
    assert_eq!(results[2].provenance.reported_unit.as_deref(), Some("ng/mL"));
    assert!(s.mismatches().is_empty());
}

#[test]
fn every_ingest_mismatch_code_is_detected_with_a_plain_detail() {
    let s = Study::new();
    let files = [
        s.file("unknown-instrument.astm", &astm("cobas-x", "", &[("U07-V4-T0", &[("CPEP", "0.4", "nmol/L", "F")])])),
        s.file(
            "mixed.astm",
            &astm(
                "cobas-e411",
                "",
                &[
                    (
                        "U07-V4-T15",
                        &[("INS", "5", "mU/L", "F"), ("CPEP", "0.4", "mg/dL", "F"), ("GLUC", "-----", "mmol/L", "F")],
                    ),
                    ("U07-V4-T60", &[("CPEP", "45", "nmol/L", "F"), ("GLUC", "7.0", "mmol/L", "P")]),
                    ("NOPE-1", &[("CPEP", "0.4", "nmol/L", "F")]),
                    ("U07-V4-T45", &[("CPEP", "0.4", "nmol/L", "F")]),
                    ("LAB-0001", &[("CPEP", "0.9", "nmol/L", "F")]),
                ],
            ),
        ),
        s.file("conflict.astm", &astm("cobas-e411", "", &[("U07-V4-T90", &[("CPEP", "0.50", "nmol/L", "F")])])),
        s.file(
            "conflict-rerun.astm",
            &astm("cobas-e411", "", &[("U07-V4-T90", &[("CPEP", "0.70", "nmol/L", "F")])])
                .replace("20260302101500", "20260302111500"),
        ),
        s.file(
            "central.hl7",
            &hl7(
                "C1",
                &[
                    ("U07-V4-T30", "202603020852", &[("1986-9", "NM", "0.8", "nmol/L", "F")]),
                    ("U07-V4-T0", "202603020830", &[("2345-7", "NM", "230", "mg/dL", "F")]),
                    ("U07-V4-T120", "202603021030", &[("1986-9", "NM", "0.6", "nmol/L", "C")]),
                ],
            ),
        ),
        s.file("broken.hl7", "MSH|^~|BAD\rPID|1\r"),
    ];
    let conflict_patient =
        s.file("patient.astm", &astm("cobas-e411", "H-99887", &[("U07-V4-T-10", &[("CPEP", "0.3", "nmol/L", "F")])]));
    let mut paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    paths.push(&conflict_patient);
    let out = s.ingest(&paths);
    assert_eq!(out.status.code(), Some(1), "a file that cannot be parsed gives exit 1: {}", stdout(&out));
    let mut codes: Vec<(&str, String)> = Vec::new();
    let mismatches = s.mismatches();
    for m in &mismatches {
        codes.push((m.mismatch.code.as_str(), m.mismatch.detail.clone()));
    }
    let find = |code: &str| {
        codes
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, d)| d.clone())
            .unwrap_or_else(|| panic!("no {code} in {codes:#?}"))
    };
    assert!(find("UNKNOWN_INSTRUMENT").contains("\"cobas-x\""));
    assert!(find("UNKNOWN_TEST").contains("\"INS\""));
    assert!(find("UNKNOWN_UNIT").contains("\"mg/dL\""));
    assert!(find("NON_NUMERIC").contains("\"-----\""));
    assert!(find("IMPLAUSIBLE").contains("outside the plausible range"));
    assert!(find("NOT_FINAL").contains("P (preliminary)"));
    assert!(find("UNKNOWN_SAMPLE").contains("\"NOPE-1\""));
    assert!(find("UNSCHEDULED_TIMEPOINT").contains("minute 45"));
    assert!(find("PARTICIPANT_CONFLICT").contains("participant U07"));
    assert!(!find("PARTICIPANT_CONFLICT").contains("H-99887"), "the foreign patient ID is not repeated");
    assert!(find("DUPLICATE_CONFLICT").contains("0.7 nmol/L differs from 0.5 nmol/L"));
    assert_eq!(find("OUT_OF_WINDOW"), "collected 08:52, 22 min after meal start; nominal 30 ± 3 min");
    assert!(find("PRETEST_GLUCOSE").contains("12.766"), "230 mg/dL is 12.77 mmol/L: {}", find("PRETEST_GLUCOSE"));
    assert!(find("CORRECTION_WITHOUT_ORIGINAL").contains("no result yet"));
    assert!(find("PARSE_ERROR").contains("broken.hl7: message 1: byte"));
    // The manifest sample for U08 was accepted (its slot is U08 V0 60).
    let results = s.results();
    assert!(results.iter().any(|r| slot(r) == "U08 V0 60 c_peptide"));
    // Flagged results are accepted; held ones are not.
    assert!(results.iter().any(|r| slot(r) == "U07 V4 30 c_peptide"), "OUT_OF_WINDOW accepts the value");
    assert!(results.iter().any(|r| slot(r) == "U07 V4 0 glucose"), "PRETEST_GLUCOSE accepts the value");
    assert!(!results.iter().any(|r| slot(r) == "U07 V4 60 c_peptide"), "IMPLAUSIBLE holds the value");
    let standing: Vec<f64> =
        results.iter().filter(|r| slot(r) == "U07 V4 90 c_peptide").map(|r| r.result.value).collect();
    assert_eq!(standing, [0.50], "the first value stands");
}

#[test]
fn identical_redelivery_changes_nothing_and_is_counted_as_duplicate() {
    let s = Study::new();
    let text =
        astm("cobas-e411", "", &[("U07-V4-T0", &[("CPEP", "0.41", "nmol/L", "F"), ("GLUC", "5.5", "mmol/L", "F")])]);
    let first = s.file("a.astm", &text);
    let renamed = s.file("a-again.astm", &text);
    assert_eq!(s.ingest(&[&first]).status.code(), Some(0));
    let before = s.results();
    let out = s.ingest(&[&renamed]);
    assert!(
        stdout(&out).contains("a-again.astm: already received (identical content): 0 accepted, 2 duplicates"),
        "{}",
        stdout(&out)
    );
    // The same results inside a different file (another message header) are duplicates too.
    let other = s.file("b.astm", &text.replace("20260302120000", "20260302130000"));
    assert!(stdout(&s.ingest(&[&other])).contains("b.astm: 0 accepted, 2 duplicates"));
    assert_eq!(s.results(), before);
    assert!(s.mismatches().is_empty());
}

#[test]
fn an_hl7_correction_supersedes_the_original_in_either_order() {
    for reversed in [false, true] {
        let s = Study::new();
        let original = s.file(
            "orig.hl7",
            &hl7("O1", &[("U07-V4-T60", "202603020930", &[("1986-9", "NM", "0.90", "nmol/L", "F")])]),
        );
        let correction = s.file(
            "corr.hl7",
            &hl7("O2", &[("U07-V4-T60", "202603020930", &[("1986-9", "NM", "0.95", "nmol/L", "C")])]),
        );
        let order: [&Path; 2] = if reversed { [&correction, &original] } else { [&original, &correction] };
        for file in order {
            assert_eq!(s.ingest(&[file]).status.code(), Some(0));
        }
        let results = s.results();
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].result.value, 0.95, "reversed: {reversed}");
        assert_eq!(results[0].result.version, 2);
        assert!(s.mismatches().is_empty(), "a correction that came first is settled when the original comes");
    }
}

#[test]
fn results_come_out_the_same_whatever_order_the_files_arrive_in() {
    let texts = [
        astm("cobas-e411", "", &[("U07-V4-T90", &[("CPEP", "0.50", "nmol/L", "F")])]),
        astm("cobas-e411", "", &[("U07-V4-T90", &[("CPEP", "0.70", "nmol/L", "F")])])
            .replace("20260302101500", "20260302111500"),
        astm(
            "cobas-e411",
            "",
            &[("U07-V4-T0", &[("CPEP", "0.30", "nmol/L", "F")]), ("NOPE", &[("CPEP", "1", "nmol/L", "F")])],
        ),
        hl7("X1", &[("U07-V4-T120", "202603021030", &[("1986-9", "NM", "0.66", "nmol/L", "C")])]),
        hl7("X2", &[("U07-V4-T120", "202603021030", &[("1986-9", "NM", "0.60", "nmol/L", "F")])]),
    ];
    let run = |order: &[usize]| {
        let s = Study::new();
        for &i in order {
            let f = s.file(&format!("f{i}.txt"), &texts[i]);
            s.ingest(&[&f]);
        }
        let results: Vec<(String, f64)> = s.results().iter().map(|r| (slot(r), r.result.value)).collect();
        let mut open: Vec<(String, Option<String>, String)> = s
            .mismatches()
            .iter()
            .map(|m| {
                (m.mismatch.code.as_str().to_owned(), m.provenance.reported_value.clone(), m.mismatch.detail.clone())
            })
            .collect();
        open.sort();
        (results, open)
    };
    let forward = run(&[0, 1, 2, 3, 4]);
    assert_eq!(forward.0.iter().find(|(s, _)| s == "U07 V4 90 c_peptide").map(|r| r.1), Some(0.50));
    assert_eq!(forward.0.iter().find(|(s, _)| s == "U07 V4 120 c_peptide").map(|r| r.1), Some(0.66));
    assert_eq!(forward.1.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(), ["DUPLICATE_CONFLICT", "UNKNOWN_SAMPLE"]);
    for order in [[4, 3, 2, 1, 0], [2, 1, 4, 0, 3], [1, 0, 3, 4, 2]] {
        let other = run(&order);
        assert_eq!(other.0, forward.0, "results for order {order:?}");
        let codes = |v: &Vec<(String, Option<String>, String)>| {
            v.iter().map(|m| (m.0.clone(), m.1.clone())).collect::<Vec<_>>()
        };
        assert_eq!(codes(&other.1), codes(&forward.1), "open mismatches for order {order:?}");
    }
}

#[test]
fn personal_data_never_reaches_the_database_file() {
    let s = Study::new();
    let text = "H|\\^&|||cobas-e411^1\rP|1|U07||19650102-1234|Lindqvist^Astrid||19650102|F||Storgatan 1||018-555123\rO|1|U07-V4-T0||^^^CPEP\rR|1|^^^CPEP|0.4|nmol/L||N||F||||20260302101500\rL|1|N\r";
    let file = s.file("named.astm", text);
    assert_eq!(s.ingest(&[&file]).status.code(), Some(0));
    // Checkpoint the WAL into the main file, then look at every byte SQLite wrote.
    drop(Store::open(&s.database).unwrap());
    let mut bytes = std::fs::read(&s.database).unwrap();
    if let Ok(wal) = std::fs::read(s.database.with_extension("db-wal")) {
        bytes.extend(wal);
    }
    for secret in ["Lindqvist", "Astrid", "19650102", "Storgatan", "018-555123"] {
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret} is in the database file");
    }
    assert_eq!(s.results().len(), 1, "the result itself was accepted");
}

// Re-delivery after a configuration fix, files without any message, files
// with several broken messages: through `ingest` and the inbox (support.rs).

mod redelivery {
    use super::super::support::{TempStudy, csv_rows, e411, ingest_bytes, ok, order, text};

    /// A study with participant U01 and `edits` to the example config.
    fn study(edits: &[(&str, &str)]) -> TempStudy {
        let mut all = vec![("settle_seconds = 1.0", "settle_seconds = 0.1")];
        all.extend_from_slice(edits);
        let t = TempStudy::new(&all);
        let csv = t.file("participants.csv", "participant\nU01\n");
        ok(&t.run(&["import", "participants", csv.to_str().unwrap()]));
        t
    }

    /// Replace `from` with `to` in the study's config (the sysadmin's fix).
    fn fix_config(t: &TempStudy, from: &str, to: &str) {
        let text = std::fs::read_to_string(&t.config).unwrap();
        assert!(text.contains(from), "{from:?} not in the config");
        std::fs::write(&t.config, text.replacen(from, to, 1)).unwrap();
        ok(&t.run(&["check-config"]));
    }

    fn rows(t: &TempStudy, args: &[&str]) -> Vec<Vec<String>> {
        csv_rows(&ok(&t.run(args))).into_iter().skip(1).collect()
    }

    /// `(code, state, history)` of every mismatch but MISSING_RESULT.
    fn mismatches(t: &TempStudy) -> Vec<(String, String, String)> {
        rows(t, &["report", "mismatches", "--format", "csv", "--all"])
            .into_iter()
            .filter(|r| r[1] != "MISSING_RESULT")
            .map(|r| (r[1].clone(), r[14].clone(), r.get(19).cloned().unwrap_or_default()))
            .collect()
    }

    /// `(analyte, value)` of every exported result.
    fn exported(t: &TempStudy) -> Vec<(String, String)> {
        rows(t, &["export", "results"]).into_iter().map(|r| (r[3].clone(), r[4].clone())).collect()
    }

    fn result(test: &str, value: &str, unit: &str) -> String {
        format!("R|1|^^^{test}|{value}|{unit}||N||F||ADMIN||20260302101100\r")
    }

    /// The re-delivery's mismatch is closed by labfeed, saying why.
    fn assert_superseded(t: &TempStudy, code: &str) {
        let all = mismatches(t);
        let row = all.iter().find(|m| m.0 == code).unwrap_or_else(|| panic!("no {code}: {all:?}"));
        assert_eq!(row.1, "resolved", "{all:?}");
        assert!(row.2.contains("superseded by the re-delivery"), "{all:?}");
        assert!(all.iter().all(|m| m.1 == "resolved"), "nothing left open: {all:?}");
    }

    #[test]
    fn a_redelivery_after_mapping_the_test_is_read_again_and_an_accepted_one_stays_a_duplicate() {
        let t = study(&[(r#""CPEP" = "c_peptide", "GLUC" = "glucose""#, r#""CPEP" = "c_peptide""#)]);
        let upload = e411(&format!(
            "{}{}{}",
            order(1, "U01-V0-T30"),
            result("CPEP", "0.50", "nmol/L"),
            result("GLUC", "5.5", "mmol/L")
        ));
        let first = ingest_bytes(&t, "a.astm", upload.as_bytes());
        assert!(first.contains("1 accepted, 0 duplicates, 1 mismatch"), "{first}");
        assert_eq!(mismatches(&t).len(), 1);

        // Dropped again before the fix: a duplicate, the mismatch stays open, nothing twice.
        let again = ingest_bytes(&t, "a.astm", upload.as_bytes());
        assert!(again.contains("already received"), "{again}");
        assert_eq!(mismatches(&t)[0].1, "open");

        fix_config(&t, r#""CPEP" = "c_peptide""#, r#""CPEP" = "c_peptide", "GLUC" = "glucose""#);
        let fixed = ingest_bytes(&t, "a-copy.astm", upload.as_bytes());
        assert!(fixed.contains("1 accepted, 1 duplicate, 0 mismatches"), "{fixed}");
        assert_eq!(exported(&t), [("c_peptide".into(), "0.5".into()), ("glucose".into(), "5.5".into())]);
        assert_superseded(&t, "UNKNOWN_TEST");

        // Everything is in now: a truly identical re-delivery.
        let last = ingest_bytes(&t, "a.astm", upload.as_bytes());
        assert!(last.contains("already received (identical content): 0 accepted, 2 duplicates"), "{last}");
        assert_eq!(exported(&t).len(), 2);
        assert_eq!(mismatches(&t).len(), 1);
        ok(&t.run(&["verify-audit"]));
    }

    #[test]
    fn a_redelivery_to_the_inbox_after_setting_decimal_comma_is_read_again_and_archived() {
        let t = study(&[]);
        let upload = e411(&format!("{}{}", order(1, "U01-V0-T30"), result("CPEP", "0,25", "nmol/L")));
        let inbox = t.lib("inbox");
        std::fs::create_dir_all(&inbox).unwrap();
        std::fs::write(inbox.join("comma.astm"), &upload).unwrap();
        ok(&t.run(&["run", "--once"]));
        assert_eq!(mismatches(&t)[0].0, "NON_NUMERIC");
        assert!(exported(&t).is_empty());

        fix_config(&t, "decimal_comma = false", "decimal_comma = true");
        std::fs::write(inbox.join("comma.astm"), &upload).unwrap();
        let out = t.run(&["run", "--once"]);
        ok(&out);
        assert_eq!(exported(&t), [("c_peptide".into(), "0.25".into())]);
        assert_superseded(&t, "NON_NUMERIC");
        assert!(std::fs::read_dir(t.lib("quarantine")).unwrap().next().is_none(), "nothing quarantined");
    }

    #[test]
    fn a_redelivery_after_configuring_the_sender_is_read_again_and_the_advice_says_to_drop_it_again() {
        let t = study(&[]);
        let upload = e411(&format!("{}{}", order(1, "U01-V0-T30"), result("CPEP", "0.40", "nmol/L")))
            .replace("cobas-e411^1", "cobas-e601^1");
        let first = ingest_bytes(&t, "e601.astm", upload.as_bytes());
        assert!(first.contains("1 mismatch"), "{first}");
        let report = rows(&t, &["report", "mismatches", "--format", "csv"]);
        let detail = &report.iter().find(|r| r[1] == "UNKNOWN_INSTRUMENT").unwrap()[11];
        // The advice is what works: fix the config, then deliver the file again.
        assert!(detail.contains("[[instruments]]"), "{detail}");
        assert!(detail.contains("drop the file in the inbox again or `labfeed ingest` it"), "{detail}");
        assert!(!detail.contains("resend"), "{detail}");

        fix_config(
            &t,
            "[[instruments]]\nname = \"central-lab\"",
            "[[instruments]]\nname = \"cobas-e601\"\nsender = \"cobas-e601\"\ntests = { \"CPEP\" = \"c_peptide\" }\n\n[[instruments]]\nname = \"central-lab\"",
        );
        let fixed = ingest_bytes(&t, "e601.astm", upload.as_bytes());
        assert!(fixed.contains("1 accepted, 0 duplicates, 0 mismatches"), "{fixed}");
        assert_eq!(exported(&t), [("c_peptide".into(), "0.4".into())]);
        assert_superseded(&t, "UNKNOWN_INSTRUMENT");
    }

    #[test]
    fn a_redelivery_after_fixing_the_unit_is_read_again_and_a_new_problem_is_a_new_mismatch() {
        let t = study(&[
            (
                r#""CPEP" = "c_peptide", "GLUC" = "glucose""#,
                r#""CPEP" = "c_peptide", "GLUC" = "glucose", "INS" = "insulin""#,
            ),
            (
                "[analytes.glucose]",
                "[analytes.insulin]\nunit = \"pmol/L\"\nplausible = [0.0, 10.0]\n\n[analytes.glucose]",
            ),
        ]);
        let upload = e411(&format!("{}{}", order(1, "U01-V0-T30"), result("INS", "42", "mU/L")));
        ingest_bytes(&t, "ins.astm", upload.as_bytes());
        assert_eq!(mismatches(&t)[0].0, "UNKNOWN_UNIT");

        // The unit now fits, but the value is outside the plausible range: held again, for that.
        fix_config(&t, "unit = \"pmol/L\"", "unit = \"mU/L\"");
        let fixed = ingest_bytes(&t, "ins.astm", upload.as_bytes());
        assert!(fixed.contains("0 accepted, 0 duplicates, 1 mismatch"), "{fixed}");
        let all = mismatches(&t);
        assert_eq!(all.iter().filter(|m| m.1 == "open").map(|m| m.0.as_str()).collect::<Vec<_>>(), ["IMPLAUSIBLE"]);
        assert!(all.iter().any(|m| m.0 == "UNKNOWN_UNIT" && m.2.contains("superseded by the re-delivery")), "{all:?}");

        // Still implausible on the next delivery: a duplicate, no second mismatch.
        let again = ingest_bytes(&t, "ins.astm", upload.as_bytes());
        assert!(again.contains("already received"), "{again}");
        assert_eq!(mismatches(&t).len(), 2);
        fix_config(&t, "plausible = [0.0, 10.0]", "plausible = [0.0, 100.0]");
        let last = ingest_bytes(&t, "ins.astm", upload.as_bytes());
        assert!(last.contains("1 accepted"), "{last}");
        assert_eq!(exported(&t), [("insulin".into(), "42".into())]);
        assert_superseded(&t, "IMPLAUSIBLE");
    }

    #[test]
    fn a_file_without_any_message_is_rejected_not_archived() {
        let t = study(&[]);
        let cases: [(&str, &[u8]); 6] = [
            ("enq-eot.astm", b"\x05\x04"),
            ("nul.astm", b"\x00\x00\x00"),
            ("blank.hl7", b" \r\n\t\r\n"),
            ("empty.hl7", b""),
            ("empty-frame.hl7", b"\x0b\x1c\r"),
            ("batch-only.hl7", b"BHS|^~\\&\rBTS|0\r"),
        ];
        for (name, bytes) in cases {
            let path = t.dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let out = t.run(&["ingest", path.to_str().unwrap()]);
            assert_eq!(out.status.code(), Some(1), "{name}: {}", text(&out));
            assert!(text(&out).contains("no ASTM or HL7 message found"), "{name}: {}", text(&out));
        }
        let inbox = t.lib("inbox");
        std::fs::create_dir_all(&inbox).unwrap();
        for (name, bytes) in cases {
            std::fs::write(inbox.join(name), bytes).unwrap();
        }
        let out = t.run(&["run", "--once"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        for (name, _) in cases {
            let reason = std::fs::read_to_string(t.lib("quarantine").join(format!("{name}.reason.txt")))
                .unwrap_or_else(|e| panic!("{name} quarantined: {e}"));
            assert!(reason.contains("no ASTM or HL7 message found"), "{name}: {reason}");
        }
        assert!(std::fs::read_dir(t.lib("archive")).unwrap().next().is_none(), "nothing archived");
    }

    #[test]
    fn every_broken_message_of_a_file_is_named_with_its_position_and_nothing_quoted() {
        let t = study(&[]);
        let head = "H|\\^&|||cobas-e411^1|||||host|RSUPL^BATCH|P|1|20260302120000\rP|1\r";
        let orphan = format!("{head}R|1|^^^CPEP|0.31|nmol/L||N||F\rL|1|N\r");
        let good = e411(&format!("{}{}", order(1, "U01-V0-T30"), result("CPEP", "0.50", "nmol/L")));
        let late = format!("{head}{}R|1|^^^CPEP|0.33|nmol/L||N||F||ADMIN||2026133099\rL|1|N\r", order(1, "U01-V0-T60"));
        let file = format!("{orphan}{good}{late}");
        let second = orphan.len() + good.len();
        let out = ingest_bytes(&t, "three.astm", file.as_bytes());
        assert!(out.contains("1 accepted"), "{out}");
        assert!(out.contains("message 1: byte "), "{out}");
        assert!(
            out.contains(&format!("message 3: byte {}", second + head.len() + order(1, "U01-V0-T60").len())),
            "{out}"
        );
        assert!(!out.contains("2026133099"), "nothing quoted: {out}");
        let details: Vec<String> = rows(&t, &["report", "mismatches", "--format", "csv"])
            .into_iter()
            .filter(|r| r[1] == "PARSE_ERROR")
            .map(|r| r[11].clone())
            .collect();
        assert_eq!(details.len(), 2, "{details:?}");

        let inbox = t.lib("inbox");
        std::fs::create_dir_all(&inbox).unwrap();
        std::fs::write(inbox.join("three.astm"), file.replace("0.50", "0.51")).unwrap();
        let run = t.run(&["run", "--once"]);
        assert_eq!(run.status.code(), Some(1), "{}", text(&run));
        let reason = std::fs::read_to_string(t.lib("quarantine").join("three.astm.reason.txt")).unwrap();
        assert!(reason.contains("message 1: byte ") && reason.contains("message 3: byte "), "{reason}");
        assert!(!reason.contains("2026133099") && !reason.contains("0.31"), "nothing quoted: {reason}");

        // Dropped again: quarantined again, still naming both.
        std::fs::write(inbox.join("three.astm"), file.replace("0.50", "0.51")).unwrap();
        assert_eq!(t.run(&["run", "--once"]).status.code(), Some(1));
        let again = std::fs::read_to_string(t.lib("quarantine").join("three-1.astm.reason.txt")).unwrap();
        assert!(again.contains("message 1: byte ") && again.contains("message 3: byte "), "{again}");
    }

    #[test]
    fn an_hl7_message_type_that_is_not_read_is_named_and_r30_is_read() {
        let t = study(&[]);
        let oru = |kind: &str, control: &str, value: &str| {
            format!(
                "MSH|^~\\&|CENTRALLAB|CLAB|STUDYDB|T1D|20260312154500||{kind}|{control}|P|2.5.1\rPID|1||U01\rOBR|1|U01-V0-T30||MMTT\rOBX|1|NM|1986-9||{value}|nmol/L|||||F\r"
            )
        };
        let file = format!("{}{}", oru("ORU^R30^ORU_R30", "A", "0.61"), oru("ADT^A08", "B", "0.62"));
        let path = t.file("mixed.hl7", &file);
        let out = t.run(&["ingest", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let second = file.find("ADT^A08").unwrap();
        assert!(
            text(&out).contains(&format!("message 2: byte {second} (line 5): MSH-9 message type ADT^A08")),
            "{}",
            text(&out)
        );
        assert_eq!(exported(&t), [("c_peptide".into(), "0.61".into())]);
    }
}
