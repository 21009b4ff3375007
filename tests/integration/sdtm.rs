//! `labfeed export lb` end to end: study data imported, an ASTM upload from
//! the cobas e411 and an HL7 message from the central lab ingested, then the
//! SDTM LB domain checked field by field through the real binary.

use crate::support::{TempStudy, csv_rows, text};

const HEADER: [&str; 24] = [
    "STUDYID", "DOMAIN", "USUBJID", "LBSEQ", "LBTESTCD", "LBTEST", "LBCAT", "LBORRES", "LBORRESU", "LBSTRESC",
    "LBSTRESN", "LBSTRESU", "LBSPEC", "LBLLOQ", "LBSTAT", "LBREASND", "VISITNUM", "VISIT", "LBDTC", "LBTPT",
    "LBTPTNUM", "LBELTM", "LBTPTREF", "LBRFTDTC",
];

fn import(s: &TempStudy, kind: &str, name: &str, content: &str) {
    let file = s.file(name, content);
    let out = s.run(&["import", kind, file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// U07 has a baseline MMTT (meal 08:30) with three C-peptide and glucose
/// results in, one C-peptide held back, and one result at V4 (no meal start
/// yet); U08 has one result at V1 and a V2 whose meal is still to come.
fn study() -> TempStudy {
    let s = TempStudy::new(&[]);
    import(&s, "participants", "participants.csv", "participant,site\nU07,Uppsala\nU08,Uppsala\n");
    import(
        &s,
        "visits",
        "visits.csv",
        "participant,visit,meal_start\nU07,V0,2026-03-02T08:30\nU07,V4,\nU08,V1,\nU08,V2,2099-01-01T08:00\n",
    );
    let order = |n: usize, sample: &str| {
        format!("O|{n}|{sample}||^^^CPEP|R||20260302083000||||N||||1|||||||20260302100000|||F\r")
    };
    let r = |test: &str, value: &str, unit: &str| {
        format!("R|1|^^^{test}|{value}|{unit}||N||F||ADMIN|20260302100000|20260302101500|E1\r")
    };
    let astm = [
        "H|\\^&|||cobas-e411^1|||||host|RSUPL^BATCH|P|1|20260302120000\rP|1|\r".to_owned(),
        order(1, "U07-V0-T0"),
        r("CPEP", "0.52", "nmol/L"),
        order(2, "U07-V0-T120"),
        r("CPEP", "<0.010", "ng/mL"),
        order(3, "U07-V0-T15"),
        r("CPEP", "45", "nmol/L"), // IMPLAUSIBLE: held back, so that slot is NOT DONE (under review)
        order(4, "U07-V4-T30"),
        r("CPEP", "0.8", "nmol/L"),
        order(5, "U08-V1-T60"),
        r("GLUC", "6.1", "mmol/L"),
        "L|1|N\r".to_owned(),
    ]
    .concat();
    let hl7 = "MSH|^~\\&|CENTRALLAB|CLAB|STUDYDB|T1D|20260302154500||ORU^R01^ORU_R01|C1|P|2.5.1\r\
PID|1||U07^^^TRIAL^PI\r\
OBR|1|U07-V0-T0^STUDY||MMTT|||202603020830\r\
OBX|1|NM|2345-7^Glucose^LN||90|mg/dL|||||F\r";
    let files = [s.file("e411.astm", &astm), s.file("central.hl7", hl7)];
    let out = s.run(&["ingest", files[0].to_str().unwrap(), files[1].to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("e411.astm: 4 accepted, 0 duplicates, 1 mismatch,"), "{}", text(&out));
    s
}

/// A NOT DONE record of U07's baseline MMTT.
fn not_done(seq: u32, code: &str, name: &str, spec: &str, minute: i32, tptnum: u32, eltm: &str) -> Vec<String> {
    [
        "NCT02057211",
        "LB",
        "NCT02057211-U07",
        &seq.to_string(),
        code,
        name,
        "CHEMISTRY",
        "",
        "",
        "",
        "",
        "",
        spec,
        "",
        "NOT DONE",
        "RESULT NOT RECEIVED",
        "1",
        "Baseline",
        "",
        &format!("MMTT {minute} MIN"),
        &tptnum.to_string(),
        eltm,
        "START OF MIXED MEAL",
        "2026-03-02T08:30",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// The held-back slot: received, waiting for a data manager.
fn under_review(mut record: Vec<String>) -> Vec<String> {
    record[15] = "RESULT UNDER REVIEW".to_owned();
    record
}

fn owned(fields: [&str; 24]) -> Vec<String> {
    fields.map(str::to_owned).to_vec()
}

#[test]
fn export_lb_maps_results_and_missing_draws_to_sdtm_records() {
    let s = study();
    let out = s.run(&["export", "lb"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let rows = csv_rows(&String::from_utf8(out.stdout.clone()).unwrap());
    assert_eq!(rows[0], HEADER);
    let cpep = ("CPEPTIDE", "C-peptide", "SERUM");
    let gluc = ("GLUC", "Glucose", "PLASMA");
    let expected = vec![
        not_done(1, cpep.0, cpep.1, cpep.2, -10, 1, "-PT10M"),
        // Exact, from the e411: its O.8 is a registration time, so no LBDTC.
        owned([
            "NCT02057211",
            "LB",
            "NCT02057211-U07",
            "2",
            "CPEPTIDE",
            "C-peptide",
            "CHEMISTRY",
            "0.52",
            "nmol/L",
            "0.52",
            "0.52",
            "nmol/L",
            "SERUM",
            "0.017",
            "",
            "",
            "1",
            "Baseline",
            "",
            "MMTT 0 MIN",
            "2",
            "PT0M",
            "START OF MIXED MEAL",
            "2026-03-02T08:30",
        ]),
        under_review(not_done(3, cpep.0, cpep.1, cpep.2, 15, 3, "PT15M")),
        not_done(4, cpep.0, cpep.1, cpep.2, 30, 4, "PT30M"),
        not_done(5, cpep.0, cpep.1, cpep.2, 60, 5, "PT1H"),
        not_done(6, cpep.0, cpep.1, cpep.2, 90, 6, "PT1H30M"),
        // Censored in ng/mL: verbatim in LBORRES; 0.010 × 0.33109 = 0.0033109 nmol/L, no LBSTRESN.
        owned([
            "NCT02057211",
            "LB",
            "NCT02057211-U07",
            "7",
            "CPEPTIDE",
            "C-peptide",
            "CHEMISTRY",
            "<0.010",
            "ng/mL",
            "<0.0033109",
            "",
            "nmol/L",
            "SERUM",
            "0.017",
            "",
            "",
            "1",
            "Baseline",
            "",
            "MMTT 120 MIN",
            "7",
            "PT2H",
            "START OF MIXED MEAL",
            "2026-03-02T08:30",
        ]),
        not_done(8, gluc.0, gluc.1, gluc.2, -10, 1, "-PT10M"),
        // Glucose from the central lab: 90 mg/dL / 18.016 = 4.9955595026643 mmol/L, drawn 08:30.
        owned([
            "NCT02057211",
            "LB",
            "NCT02057211-U07",
            "9",
            "GLUC",
            "Glucose",
            "CHEMISTRY",
            "90",
            "mg/dL",
            "4.9955595026643",
            "4.9955595026643",
            "mmol/L",
            "PLASMA",
            "",
            "",
            "",
            "1",
            "Baseline",
            "2026-03-02T08:30",
            "MMTT 0 MIN",
            "2",
            "PT0M",
            "START OF MIXED MEAL",
            "2026-03-02T08:30",
        ]),
        not_done(10, gluc.0, gluc.1, gluc.2, 15, 3, "PT15M"),
        not_done(11, gluc.0, gluc.1, gluc.2, 30, 4, "PT30M"),
        not_done(12, gluc.0, gluc.1, gluc.2, 60, 5, "PT1H"),
        not_done(13, gluc.0, gluc.1, gluc.2, 90, 6, "PT1H30M"),
        not_done(14, gluc.0, gluc.1, gluc.2, 120, 7, "PT2H"),
        // V4 has no meal start: nothing is missing there and LBRFTDTC is empty.
        owned([
            "NCT02057211",
            "LB",
            "NCT02057211-U07",
            "15",
            "CPEPTIDE",
            "C-peptide",
            "CHEMISTRY",
            "0.8",
            "nmol/L",
            "0.8",
            "0.8",
            "nmol/L",
            "SERUM",
            "0.017",
            "",
            "",
            "5",
            "2 years",
            "",
            "MMTT 30 MIN",
            "4",
            "PT30M",
            "START OF MIXED MEAL",
            "",
        ]),
        // U08: LBSEQ starts again; V2's meal is in the future, so nothing is NOT DONE yet.
        owned([
            "NCT02057211",
            "LB",
            "NCT02057211-U08",
            "1",
            "GLUC",
            "Glucose",
            "CHEMISTRY",
            "6.1",
            "mmol/L",
            "6.1",
            "6.1",
            "mmol/L",
            "PLASMA",
            "",
            "",
            "",
            "2",
            "3 months",
            "",
            "MMTT 60 MIN",
            "5",
            "PT1H",
            "START OF MIXED MEAL",
            "",
        ]),
    ];
    let records = &rows[1..];
    assert_eq!(records.len(), expected.len(), "{records:#?}");
    for (i, (got, want)) in records.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "record {}", i + 1);
    }

    // The measured records are exactly the results `export results` lists.
    let out = s.run(&["export", "results"]);
    let results = csv_rows(&String::from_utf8(out.stdout.clone()).unwrap());
    let measured = records.iter().filter(|r| r[14].is_empty()).count();
    assert_eq!(measured, results.len() - 1);
}

#[test]
fn export_lb_output_writes_the_file_and_says_so() {
    let s = study();
    let stdout = s.run(&["export", "lb"]).stdout;
    let path = s.dir.path().join("lb.csv");
    let out = s.run(&["export", "lb", "--output", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(out.stdout.is_empty(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stderr), format!("{}: 16 LB records\n", path.display()));
    assert_eq!(std::fs::read(&path).unwrap(), stdout, "the file holds what standard output would");
}

#[test]
fn export_lb_of_an_empty_study_is_just_the_header_and_without_a_database_exits_2() {
    let s = TempStudy::new(&[]);
    let out = s.run(&["export", "lb"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(out.stdout.is_empty());

    drop(labfeed::store::Store::open(s.lib("labfeed.db")).unwrap());
    let out = s.run(&["export", "lb"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("{}\n", HEADER.join(",")));
}
