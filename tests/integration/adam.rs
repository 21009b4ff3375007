//! `labfeed export adam` through the real binary, on the bundled demo study:
//! the ADaM numbers are `report auc`'s, and `admmtt.xpt` reads back with
//! an independent reader.

use super::sdtm::read_with_pyreadstat;
use super::support::{csv_rows, demo_study, labfeed_on, text};

#[test]
fn export_adam_holds_the_auc_numbers_with_baseline_and_change() {
    let tmp = tempfile::tempdir().unwrap();
    let config = demo_study(&tmp.path().join("demo"));
    let out = labfeed_on(&config, &["export", "adam"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let adam = csv_rows(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(
        adam[0],
        [
            "STUDYID", "USUBJID", "ASEQ", "PARAMCD", "PARAM", "AVISIT", "AVISITN", "AVAL", "BASE", "CHG", "PCHG",
            "ABLFL", "DTYPE", "BLQIMPFL", "SRCDOM", "SRCSEQ", "SRCSEQS"
        ]
    );
    let auc = csv_rows(&String::from_utf8(labfeed_on(&config, &["report", "auc", "--format", "csv"]).stdout).unwrap());
    let col = |name: &str| adam[0].iter().position(|h| h == name).unwrap();
    let find = |participant: &str, visit_number: &str, paramcd: &str| {
        adam.iter()
            .find(|r| {
                r[col("USUBJID")] == format!("LABFEED-DEMO-{participant}")
                    && r[col("AVISITN")] == visit_number
                    && r[col("PARAMCD")] == paramcd
            })
            .unwrap_or_else(|| panic!("{participant} {visit_number} {paramcd} in {adam:?}"))
    };
    let mut checked = 0;
    for row in &auc[1..] {
        let (participant, visit, analyte) = (&row[0], &row[1], &row[2]);
        let visit_number = if visit == "V0" { "1" } else { "2" };
        let params: &[(&str, usize)] = match analyte.as_str() {
            "c_peptide" => &[("CPAUC", 3), ("CPAUCM", 4), ("CPLAUCM", 5)],
            _ => &[("GLAUC", 3), ("GLAUCM", 4)],
        };
        for &(paramcd, at) in params {
            let record = find(participant, visit_number, paramcd);
            assert_eq!(record[col("AVAL")], row[at], "{participant} {visit} {paramcd}");
            assert_eq!(record[col("ABLFL")], if visit == "V0" && !row[at].is_empty() { "Y" } else { "" });
            checked += 1;
        }
        // delta_auc_mean is CHG of the AUC mean.
        let mean = if analyte == "c_peptide" { "CPAUCM" } else { "GLAUCM" };
        assert_eq!(find(participant, visit_number, mean)[col("CHG")], row[9], "{participant} {visit} {mean}");
    }
    assert_eq!(adam.len() - 1, checked, "one record per AUC number");
    // U02's month-24 0-min C-peptide is `<0.017` (BLQ): its AUC used half the LLOQ.
    assert_eq!(find("U02", "2", "CPAUC")[col("BLQIMPFL")], "Y");
    assert_eq!(find("U02", "2", "GLAUC")[col("BLQIMPFL")], "");
    assert_eq!(find("U01", "2", "CPAUC")[col("BLQIMPFL")], "");
    // Hand-computed for U01's C-peptide: AUC 104.55 at baseline, 62.775 at month 24:
    // CHG −41.775, PCHG −41.775 / 104.55 × 100 = −39.9569583931.
    let u01 = find("U01", "2", "CPAUC");
    assert_eq!(
        [&u01[col("AVAL")], &u01[col("BASE")], &u01[col("CHG")], &u01[col("PCHG")]],
        ["62.775", "104.55", "-41.775", "-39.9569583931"]
    );
}

/// With no `[[visits]] baseline = true`, every AUC is still there, with no
/// ABLFL, BASE, CHG or PCHG (nothing to compare against), and LB flags no
/// LBLOBXFL.
#[test]
fn export_adam_without_a_baseline_visit_has_the_aucs_and_no_change() {
    let tmp = tempfile::tempdir().unwrap();
    let config = demo_study(&tmp.path().join("demo"));
    let with_baseline = csv_rows(&String::from_utf8(labfeed_on(&config, &["export", "adam"]).stdout).unwrap());
    let text_of = std::fs::read_to_string(&config).unwrap();
    assert!(text_of.contains("baseline = true"));
    std::fs::write(&config, text_of.replace("baseline = true", "baseline = false")).unwrap();
    let out = labfeed_on(&config, &["export", "adam"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let adam = csv_rows(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(adam.len(), with_baseline.len());
    let col = |name: &str| adam[0].iter().position(|h| h == name).unwrap();
    for (record, before) in adam[1..].iter().zip(&with_baseline[1..]) {
        assert_eq!(record[col("AVAL")], before[col("AVAL")]);
        for c in ["BASE", "CHG", "PCHG", "ABLFL"] {
            assert_eq!(record[col(c)], "", "{c} of {record:?}");
        }
    }
    let lb = csv_rows(&String::from_utf8(labfeed_on(&config, &["export", "lb"]).stdout).unwrap());
    let flag = lb[0].iter().position(|h| h == "LBLOBXFL").unwrap();
    assert!(lb[1..].iter().all(|r| r[flag].is_empty()));
    let out = labfeed_on(&config, &["export", "define"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// SRCSEQS names LB records of `export lb` (same study, same LBSEQ), and
/// the AUC recomputed from exactly those records' values is AVAL.
#[test]
fn each_auc_links_to_the_lb_records_it_was_computed_from() {
    let tmp = tempfile::tempdir().unwrap();
    let config = demo_study(&tmp.path().join("demo"));
    let adam = csv_rows(&String::from_utf8(labfeed_on(&config, &["export", "adam"]).stdout).unwrap());
    let lb = csv_rows(&String::from_utf8(labfeed_on(&config, &["export", "lb"]).stdout).unwrap());
    let a = |name: &str| adam[0].iter().position(|h| h == name).unwrap();
    let l = |name: &str| lb[0].iter().position(|h| h == name).unwrap();
    let mut checked = 0;
    for record in &adam[1..] {
        if record[a("AVAL")].is_empty() {
            assert_eq!([&record[a("SRCDOM")], &record[a("SRCSEQS")]], ["", ""]);
            continue;
        }
        assert_eq!((record[a("SRCDOM")].as_str(), record[a("SRCSEQ")].as_str()), ("LB", ""));
        let sources: Vec<&Vec<String>> = record[a("SRCSEQS")]
            .split(' ')
            .map(|seq| {
                lb.iter()
                    .find(|r| r[l("USUBJID")] == record[a("USUBJID")] && r[l("LBSEQ")] == seq)
                    .unwrap_or_else(|| panic!("LBSEQ {seq} of {record:?}"))
            })
            .collect();
        let testcd = if record[a("PARAMCD")].starts_with("CP") { "CPEPTIDE" } else { "GLUC" };
        for source in &sources {
            assert_eq!((source[l("LBTESTCD")].as_str(), &source[l("VISIT")]), (testcd, &record[a("AVISIT")]));
        }
        if !["CPAUC", "GLAUC"].contains(&record[a("PARAMCD")].as_str()) || !record[a("DTYPE")].is_empty() {
            continue;
        }
        // The demo's rules: minute 0 is the 0-min value, BLQ is half the LLOQ.
        let points: Vec<(f64, f64)> = sources
            .iter()
            .map(|r| {
                let minute: f64 = r[l("LBTPT")].trim_start_matches("MMTT ").trim_end_matches(" MIN").parse().unwrap();
                let value = match r[l("LBSTRESN")].parse::<f64>() {
                    Ok(v) => v,
                    Err(_) => r[l("LBLLOQ")].parse::<f64>().unwrap() / 2.0,
                };
                (minute, value)
            })
            .collect();
        let mut points = points;
        points.sort_by(|x, y| x.0.total_cmp(&y.0));
        let auc: f64 = points.windows(2).map(|w| (w[0].1 + w[1].1) / 2.0 * (w[1].0 - w[0].0)).sum();
        let aval: f64 = record[a("AVAL")].parse().unwrap();
        assert!((auc - aval).abs() < 1e-9 * aval.abs().max(1.0), "{record:?}: {auc} from {points:?}");
        checked += 1;
    }
    assert!(checked >= 8, "{checked} AUCs recomputed");
}

#[test]
#[ignore = "needs python3 with pyreadstat (pip install pyreadstat); .ci/run installs it and runs ignored tests"]
fn export_adam_xpt_reads_back_with_pyreadstat_as_the_csv() {
    let tmp = tempfile::tempdir().unwrap();
    let config = demo_study(&tmp.path().join("demo"));
    let csv = csv_rows(&String::from_utf8(labfeed_on(&config, &["export", "adam"]).stdout).unwrap());
    let path = tmp.path().join("admmtt.xpt");
    let out = labfeed_on(&config, &["export", "adam", "--format", "xpt", "--output", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let read = read_with_pyreadstat(&path);
    assert_eq!(read["name"], "ADMMTT");
    assert_eq!(read["label"], "MMTT Outcomes Analysis Dataset");
    assert_eq!(read["columns"], serde_json::json!(csv[0]));
    assert_eq!(read["labels"][7], "Analysis Value");
    let rows = read["rows"].as_array().unwrap();
    assert_eq!(rows.len(), csv.len() - 1);
    let numeric = ["ASEQ", "AVISITN", "AVAL", "BASE", "CHG", "PCHG", "SRCSEQ"];
    for (xpt, csv_row) in rows.iter().zip(&csv[1..]) {
        for ((x, v), name) in xpt.as_array().unwrap().iter().zip(csv_row).zip(&csv[0]) {
            match x {
                serde_json::Value::Null => assert!(v.is_empty(), "{name}: {v:?}"),
                serde_json::Value::String(x) if numeric.contains(&name.as_str()) => {
                    assert_eq!(x.parse::<f64>().unwrap(), v.parse::<f64>().unwrap(), "{name}")
                }
                other => assert_eq!(other.as_str(), Some(v.as_str()), "{name}"),
            }
        }
    }
}
