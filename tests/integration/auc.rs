//! `labfeed report auc` end to end: participants imported, a full MMTT for
//! two visits ingested from an ASTM upload, then the AUC report as CSV.

use crate::support::{TempStudy, csv_rows, text};

const MINUTES: [i32; 7] = [-10, 0, 15, 30, 60, 90, 120];

/// One ASTM upload from the cobas e411: one O per sample, CPEP and GLUC.
fn astm(samples: &[(String, &str, &str)]) -> String {
    let mut t = "H|\\^&|||cobas-e411^1|||||host|RSUPL^BATCH|P|1|20260302120000\rP|1|\r".to_owned();
    for (i, (sample, cpep, gluc)) in samples.iter().enumerate() {
        t.push_str(&format!("O|{}|{sample}||^^^CPEP|R||20260302083000||||N||||1|||||||20260302100000|||F\r", i + 1));
        t.push_str(&format!("R|1|^^^CPEP|{cpep}|nmol/L||N||F||ADMIN|20260302100000|20260302101500|E1\r"));
        t.push_str(&format!("R|2|^^^GLUC|{gluc}|mmol/L||N||F||ADMIN|20260302100000|20260302101500|E1\r"));
    }
    t.push_str("L|1|N\r");
    t
}

fn number(field: &str) -> f64 {
    field.parse().unwrap_or_else(|_| panic!("not a number: {field:?}"))
}

#[test]
fn report_auc_gives_the_hand_computed_c_peptide_auc_and_change_from_baseline() {
    let s = TempStudy::new(&[]);
    let participants = s.file("participants.csv", "participant,site\nU07,Uppsala\n");
    let out = s.run(&["import", "participants", participants.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // V0: 0.30, 0.55, 0.80, 1.00, 0.90, 0.70 at 0…120 (−10: 0.25, not used with baseline = zero):
    //   7.5·0.30 + 15·0.55 + 22.5·0.80 + 30·1.00 + 30·0.90 + 15·0.70 = 96 nmol/L·min, mean 0.8.
    // V4: 0.32, 0.45, 0.70, 0.95, 0.90, 0.80: 2.4 + 6.75 + 15.75 + 28.5 + 27 + 12 = 92.4, mean 0.77;
    //   delta 0.77 − 0.8 = −0.03.
    // Glucose V0: 8.0, 9.5, 11.8, 14.2, 13.5, 12.0: 60 + 142.5 + 265.5 + 426 + 405 + 180 = 1479, mean 12.325.
    let v0_cpep = ["0.25", "0.30", "0.55", "0.80", "1.00", "0.90", "0.70"];
    let v4_cpep = ["0.28", "0.32", "0.45", "0.70", "0.95", "0.90", "0.80"];
    let gluc = ["7.9", "8.0", "9.5", "11.8", "14.2", "13.5", "12.0"];
    let mut samples = Vec::new();
    for (visit, cpep) in [("V0", v0_cpep), ("V4", v4_cpep)] {
        for (i, minute) in MINUTES.iter().enumerate() {
            samples.push((format!("U07-{visit}-T{minute}"), cpep[i], gluc[i]));
        }
    }
    let upload = s.file("mmtt.astm", &astm(&samples));
    let out = s.run(&["ingest", upload.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let out = s.run(&["report", "auc", "--format", "csv"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let rows = csv_rows(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        rows[0],
        [
            "participant",
            "visit",
            "analyte",
            "auc",
            "auc_mean",
            "ln_auc_mean_plus_1",
            "points",
            "complete",
            "missing_minutes",
            "delta_auc_mean"
        ]
    );
    let keys: Vec<String> = rows[1..].iter().map(|r| format!("{} {} {}", r[0], r[1], r[2])).collect();
    assert_eq!(keys, ["U07 V0 c_peptide", "U07 V0 glucose", "U07 V4 c_peptide", "U07 V4 glucose"], "{rows:?}");
    let close = |field: &str, expected: f64| {
        let v = number(field);
        assert!((v - expected).abs() < 1e-9, "{v} != {expected}: {rows:?}");
    };
    let v0 = &rows[1];
    close(&v0[3], 96.0);
    close(&v0[4], 0.8);
    close(&v0[5], 1.8f64.ln());
    assert_eq!((v0[6].as_str(), v0[7].as_str(), v0[8].as_str(), v0[9].as_str()), ("6", "true", "", ""));
    close(&rows[2][3], 1479.0);
    close(&rows[2][4], 12.325);
    let v4 = &rows[3];
    close(&v4[3], 92.4);
    close(&v4[4], 0.77);
    close(&v4[5], 1.77f64.ln());
    close(&v4[9], -0.03);
    assert_eq!((v4[6].as_str(), v4[7].as_str()), ("6", "true"));
    close(&rows[4][9], 0.0);

    // The text form says the same, and a file output goes where asked.
    let path = s.dir.path().join("auc.txt");
    let out = s.run(&["report", "auc", "--output", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let table = std::fs::read_to_string(&path).unwrap();
    assert!(table.contains("92.4") && table.contains("-0.03") && table.ends_with("4 AUC rows\n"), "{table}");
}

#[test]
fn report_auc_without_a_database_exits_2() {
    let s = TempStudy::new(&[]);
    let out = s.run(&["report", "auc", "--format", "csv"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}
