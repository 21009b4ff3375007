//! A small study driven through the real binary the way a data manager would:
//! `import` → `ingest` → `export results` / `report mismatches`, checking that
//! every mismatch code that can arise at ingest shows up in the report.

use super::support::{TempStudy as Study, csv_rows, path, text};

#[test]
fn a_small_study_from_import_to_report_shows_every_ingest_mismatch_code() {
    let s = Study::new(&[]);
    let participants = s.file("participants.csv", "participant,site\nU07,Uppsala\nU08,Uppsala\n");
    let visits =
        s.file("visits.csv", "participant,visit,meal_start\nU07,V4,2026-03-02T08:30\nU08,V0,2026-03-03T08:00\n");
    let samples = s.file("samples.csv", "sample_id,participant,visit,minute\nLAB-0001,U08,V0,60\n");
    for (kind, file) in [("participants", &participants), ("visits", &visits), ("samples", &samples)] {
        let out = s.run(&["import", kind, path(file)]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }

    let e411 = |patient: &str, body: &str| {
        format!("H|\\^&|||cobas-e411^1|||||host|RSUPL^BATCH|P|1|20260302120000\rP|1|{patient}\r{body}L|1|N\r")
    };
    let order = |n: usize, sample: &str| {
        format!("O|{n}|{sample}||^^^CPEP|R||20260302083000||||N||||1|||||||20260302100000|||F\r")
    };
    let r = |n: usize, test: &str, value: &str, unit: &str, status: &str, done: &str| {
        format!("R|{n}|^^^{test}|{value}|{unit}||N||{status}||ADMIN|20260302100000|{done}|E1\r")
    };
    let t = "20260302101500";
    let files = [
        s.file(
            "good.astm",
            &e411(
                "",
                &[
                    order(1, "U07-V4-T0"),
                    r(1, "CPEP", "<0.010", "nmol/L", "F", t),
                    order(2, "U07-V4-T90"),
                    r(1, "CPEP", "0.50", "nmol/L", "F", t),
                    order(3, "LAB-0001"),
                    r(1, "CPEP", "1.10", "ng/mL", "F", t),
                ]
                .concat(),
            ),
        ),
        s.file(
            "problems.astm",
            &e411(
                "",
                &[
                    order(1, "U07-V4-T15"),
                    r(1, "INS", "5", "mU/L", "F", t),
                    r(2, "CPEP", "0.4", "mg/dL", "F", t),
                    r(3, "GLUC", "-----", "mmol/L", "F", t),
                    order(2, "U07-V4-T60"),
                    r(1, "CPEP", "45", "nmol/L", "F", t),
                    r(2, "GLUC", "7.0", "mmol/L", "P", t),
                    order(3, "NOPE-1"),
                    r(1, "CPEP", "0.4", "nmol/L", "F", t),
                    order(4, "U07-V4-T45"),
                    r(1, "CPEP", "0.4", "nmol/L", "F", t),
                    order(5, "U07-V4-T90"),
                    r(1, "CPEP", "0.70", "nmol/L", "F", "20260302111500"),
                ]
                .concat(),
            ),
        ),
        s.file(
            "other-patient.astm",
            &e411(
                "H-99887",
                &[order(1, "U07-V4T-10"), order(2, "U07-V4-T-10"), r(1, "CPEP", "0.3", "nmol/L", "F", t)].concat(),
            ),
        ),
        s.file(
            "unknown-analyzer.astm",
            &e411("", &[order(1, "U07-V4-T30"), r(1, "CPEP", "0.4", "nmol/L", "F", t)].concat())
                .replace("cobas-e411", "cobas-x"),
        ),
        s.file(
            "central.hl7",
            "MSH|^~\\&|CENTRALLAB|CLAB|STUDYDB|T1D|20260312154500||ORU^R01^ORU_R01|C1|P|2.5.1\r\
PID|1||U07^^^TRIAL^PI\r\
OBR|1|U07-V4-T30^STUDY||MMTT|||202603020852\r\
OBX|1|NM|1986-9^C peptide^LN||0.8|nmol/L|||||F\r\
OBR|2|U07-V4-T0^STUDY||MMTT|||202603020830\r\
OBX|1|NM|2345-7^Glucose^LN||230|mg/dL|||||F\r\
OBR|3|U07-V4-T120^STUDY||MMTT|||202603021030\r\
OBX|1|NM|1986-9^C peptide^LN||0.6|nmol/L|||||C\r",
        ),
        s.file("truncated.hl7", "MSH|^~|BAD\rPID|1\r"),
    ];
    let mut args = vec!["ingest"];
    args.extend(files.iter().map(|f| path(f)));
    let out = s.run(&args);
    assert_eq!(out.status.code(), Some(1), "an unparseable file gives exit 1: {}", text(&out));
    assert!(text(&out).contains("good.astm: 3 accepted, 0 duplicates, 0 mismatches"), "{}", text(&out));

    let out = s.run(&["report", "mismatches", "--format", "csv"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let rows = csv_rows(&String::from_utf8_lossy(&out.stdout));
    let header = &rows[0];
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let mut codes: Vec<&str> = rows[1..].iter().map(|r| r[col("code")].as_str()).collect();
    codes.sort();
    codes.dedup();
    assert_eq!(
        codes,
        [
            "CORRECTION_WITHOUT_ORIGINAL",
            "DUPLICATE_CONFLICT",
            "IMPLAUSIBLE",
            "MISSING_RESULT",
            "NON_NUMERIC",
            "NOT_FINAL",
            "OUT_OF_WINDOW",
            "PARSE_ERROR",
            "PARTICIPANT_CONFLICT",
            "PRETEST_GLUCOSE",
            "UNKNOWN_INSTRUMENT",
            "UNKNOWN_SAMPLE",
            "UNKNOWN_TEST",
            "UNKNOWN_UNIT",
            "UNSCHEDULED_TIMEPOINT",
        ]
    );
    assert!(rows[1..].iter().all(|r| r[col("state")] == "open"));
    let window = rows.iter().find(|r| r[col("code")] == "OUT_OF_WINDOW").unwrap();
    assert_eq!(window[col("detail")], "collected 08:52, 22 min after meal start; nominal 30 ± 3 min");
    assert!(window[col("source")].starts_with("ingest:") && window[col("source")].ends_with("central.hl7"));

    let out = s.run(&["export", "results"]);
    let rows = csv_rows(&String::from_utf8_lossy(&out.stdout));
    let header = &rows[0];
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let slots: Vec<String> = rows[1..]
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {} {}",
                r[col("participant")],
                r[col("visit")],
                r[col("minute")],
                r[col("analyte")],
                r[col("value")]
            )
        })
        .collect();
    assert_eq!(
        slots,
        [
            "U07 V4 0 c_peptide 0.01",
            "U07 V4 0 glucose 12.7664298401421",
            "U07 V4 30 c_peptide 0.8",
            "U07 V4 90 c_peptide 0.5",
            "U08 V0 60 c_peptide 0.364199",
        ],
        "flagged values are accepted, held ones are not"
    );
    let censored = &rows[1];
    assert_eq!((censored[col("comparator")].as_str(), censored[col("blq")].as_str()), ("<", "true"));
    assert_eq!(censored[col("reported_value")], "<0.010");

    // The same files again: nothing changes, everything is a duplicate.
    let mut again = vec!["ingest"];
    again.extend(files.iter().take(5).map(|f| path(f)));
    let out = s.run(&again);
    assert!(text(&out).contains("good.astm: already received (identical content)"), "{}", text(&out));
    let after = s.run(&["export", "results"]);
    assert_eq!(String::from_utf8_lossy(&after.stdout), String::from_utf8_lossy(&s.run(&["export", "results"]).stdout));
    assert_eq!(csv_rows(&String::from_utf8_lossy(&after.stdout)).len(), rows.len());
}

#[test]
fn verify_audit_reports_an_intact_chain_after_real_work() {
    let s = Study::new(&[]);
    let participants = s.file("participants.csv", "participant\nU07\n");
    assert_eq!(s.run(&["import", "participants", path(&participants)]).status.code(), Some(0));
    let upload = s.file("u.astm", "H|\\^&|||cobas-e411\rP|1\rO|1|U07-V4-T0\rR|1|^^^CPEP|0.4|nmol/L||||F\rL|1\r");
    s.run(&["ingest", path(&upload)]);
    let out = s.run(&["verify-audit"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = text(&out);
    assert!(said.starts_with("audit chain intact: "), "{said}");
    let rows: u32 = said.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert!(rows >= 7, "import, store, receive, parse, observe, accept and process were all audited: {said}");
}

#[test]
fn the_mismatch_report_lists_visits_in_configuration_order() {
    let s = Study::new(&[(
        "code = \"V4\"\nname = \"2 years\"\n",
        "code = \"V4\"\nname = \"2 years\"\n\n[[visits]]\ncode = \"V10\"\nname = \"5 years\"\n",
    )]);
    let participants = s.file("p.csv", "participant\nU01\n");
    let visits = s.file("v.csv", "participant,visit,meal_start\nU01,V10,2026-03-02T08:30\nU01,V2,2026-03-01T08:30\n");
    for (kind, file) in [("participants", &participants), ("visits", &visits)] {
        assert_eq!(s.run(&["import", kind, path(file)]).status.code(), Some(0));
    }
    let out = s.run(&["report", "mismatches", "--format", "csv"]);
    let rows = csv_rows(&String::from_utf8_lossy(&out.stdout));
    let visits: Vec<&str> = rows[1..].iter().map(|r| r[4].as_str()).collect();
    let first_v10 = visits.iter().position(|v| *v == "V10").unwrap();
    assert!(visits[..first_v10].iter().all(|v| *v == "V2") && visits[first_v10..].iter().all(|v| *v == "V10"));
    assert_eq!(first_v10, 14, "V2 first (7 minutes × 2 analytes), as in [[visits]]: {visits:?}");
    let text = text(&s.run(&["report", "mismatches"]));
    assert!(text.find("Participant U01, visit V2").unwrap() < text.find("Participant U01, visit V10").unwrap());
}
