//! `labfeed demo` through the real binary: the bundled study from
//! `fixtures/demo/`, the real daemon, files dropped into its inbox and an
//! upload over a pseudo-terminal, then the printed AUC table and mismatches.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::support::{csv_rows, text};

fn labfeed() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_labfeed"));
    cmd.env_remove("LABFEED_CONFIG").env_remove("NOTIFY_SOCKET").env_remove("JOURNAL_STREAM");
    cmd
}

fn demo(dir: &Path) -> Output {
    labfeed().arg("demo").arg("--dir").arg(dir).output().unwrap()
}

/// The AUC table's data rows (participant, visit, analyte, then the numbers), from stdout:
/// the baseline mark and the unit column left out.
fn auc_rows(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .skip_while(|l| !(l.starts_with("participant ") && l.contains(" analyte ") && l.contains(" unit ")))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| {
            let mut fields: Vec<String> =
                l.split_whitespace().filter(|f| *f != "(baseline)").map(str::to_owned).collect();
            assert!(fields.len() > 3 && fields[3].ends_with("/L"), "a unit after the analyte: {l}");
            fields.remove(3);
            fields
        })
        .collect()
}

fn auc_of(rows: &[Vec<String>], participant: &str, visit: &str, analyte: &str) -> Vec<String> {
    rows.iter()
        .find(|r| r[0] == participant && r[1] == visit && r[2] == analyte)
        .unwrap_or_else(|| panic!("no AUC row for {participant} {visit} {analyte}: {rows:?}"))
        .clone()
}

fn number(field: &str) -> f64 {
    field.parse().unwrap_or_else(|_| panic!("{field:?} is not a number"))
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { files.extend(files_under(&path)) } else { files.push(path) }
    }
    files
}

#[test]
fn the_demo_runs_the_whole_product_on_its_bundled_study() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("new").join("demo");
    let out = demo(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let said = text(&out);

    // Every participant and visit, both analytes, ordered by code only.
    let rows = auc_rows(&stdout);
    let keys: Vec<String> = rows.iter().map(|r| r[..3].join(" ")).collect();
    let mut expected = Vec::new();
    for p in ["U01", "U02", "U03", "U04"] {
        for v in ["V0", "V24"] {
            for a in ["c_peptide", "glucose"] {
                expected.push(format!("{p} {v} {a}"));
            }
        }
    }
    assert_eq!(keys, expected, "{said}");

    // U01 V0 C-peptide (nmol/L) at 0, 15, 30, 60, 90, 120 min: 0.40, 0.62, 0.88, 1.05, 0.96, 0.81.
    // AUC = 7.5×0.40 + 15×0.62 + 22.5×0.88 + 30×1.05 + 30×0.96 + 15×0.81
    //     = 3.0 + 9.3 + 19.8 + 31.5 + 28.8 + 12.15 = 104.55; auc_mean = 104.55 / 120 = 0.87125.
    let u01 = auc_of(&rows, "U01", "V0", "c_peptide");
    assert!((number(&u01[3]) - 104.55).abs() < 1e-9, "{u01:?}");
    assert!((number(&u01[4]) - 0.87125).abs() < 1e-9, "{u01:?}");
    assert_eq!(u01[7], "true");
    // U02 V0: the 120-min value came as 620 pmol/L and counts as 0.62 nmol/L.
    // 7.5×0.31 + 15×0.45 + 22.5×0.66 + 30×0.79 + 30×0.74 + 15×0.62
    //   = 2.325 + 6.75 + 14.85 + 23.7 + 22.2 + 9.3 = 79.125.
    assert!((number(&auc_of(&rows, "U02", "V0", "c_peptide")[3]) - 79.125).abs() < 1e-9, "{said}");
    // U02 V24: 0 min was <0.017 (BLQ), counted as half the LLOQ, 0.0085.
    // 7.5×0.0085 + 15×0.028 + 22.5×0.045 + 30×0.061 + 30×0.057 + 15×0.044
    //   = 0.06375 + 0.42 + 1.0125 + 1.83 + 1.71 + 0.66 = 5.69625.
    assert!((number(&auc_of(&rows, "U02", "V24", "c_peptide")[3]) - 5.69625).abs() < 1e-9, "{said}");
    // U03 V24 60 min: the serial upload's 0.44 stands; the rerun's 0.47 is a DUPLICATE_CONFLICT.
    // 7.5×0.13 + 15×0.19 + 22.5×0.29 + 30×0.44 + 30×0.36 + 15×0.28
    //   = 0.975 + 2.85 + 6.525 + 13.2 + 10.8 + 4.2 = 38.55.
    assert!((number(&auc_of(&rows, "U03", "V24", "c_peptide")[3]) - 38.55).abs() < 1e-9, "{said}");
    // U04 V24 glucose at 120 min was never measured: no AUC, and it says why.
    let u04 = auc_of(&rows, "U04", "V24", "glucose");
    assert_eq!(u04[3..].to_vec(), ["-", "-", "-", "5", "false", "120", "-"], "{said}");

    // Open mismatches: OUT_OF_WINDOW ×2 (one late draw, two results), PRETEST_GLUCOSE,
    // DUPLICATE_CONFLICT, UNKNOWN_SAMPLE, PARSE_ERROR (the cut-off file) and MISSING_RESULT.
    assert!(
        stdout.contains(
            "Open mismatches: 7 (DUPLICATE_CONFLICT 1, MISSING_RESULT 1, OUT_OF_WINDOW 2, PARSE_ERROR 1, PRETEST_GLUCOSE 1, UNKNOWN_SAMPLE 1)"
        ),
        "{said}"
    );

    // The broken export is in quarantine with its reason; the other four files are archived.
    let quarantined = dir.join("quarantine").join("cobas-e411-export-cut-off.astm");
    assert!(quarantined.is_file(), "{said}");
    let reason =
        std::fs::read_to_string(dir.join("quarantine").join("cobas-e411-export-cut-off.astm.reason.txt")).unwrap();
    assert!(reason.contains("message has no L record"), "{reason}");
    let mut archived: Vec<String> = files_under(&dir.join("archive"))
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    archived.sort();
    assert_eq!(
        archived,
        [
            "central-lab-baseline-U01-U02.hl7",
            "central-lab-month24-U01-U02.hl7",
            "cobas-e411-baseline-U03-U04.astm",
            "cobas-e411-rerun-2026-11-04.astm"
        ]
    );
    assert_eq!(std::fs::read_dir(dir.join("inbox")).unwrap().count(), 0, "the inbox is empty");

    // The upload over the pseudo-terminal: U03 and U04 at month 24, 27 results (one never measured).
    let config = dir.join("labfeed.toml");
    let export = labfeed().arg("--config").arg(&config).args(["export", "results"]).output().unwrap();
    assert_eq!(export.status.code(), Some(0), "{}", text(&export));
    let results = csv_rows(&String::from_utf8_lossy(&export.stdout));
    let source = results[0].iter().position(|c| c == "source").unwrap();
    let serial: Vec<&Vec<String>> = results.iter().skip(1).filter(|r| r[source].starts_with("serial:/dev/")).collect();
    assert_eq!(serial.len(), 27, "{results:?}");
    assert!(serial.iter().all(|r| (r[0] == "U03" || r[0] == "U04") && r[1] == "V24"), "{serial:?}");
    assert_eq!(results.len() - 1, 111, "112 scheduled results, one never measured");

    assert!(dir.join("mismatches.txt").is_file() && dir.join("auc.csv").is_file(), "{said}");
    // The HTML reports come from the HTML report work: until it is merged,
    // `--format html` is refused, the demo fails at this step and exits 2
    // (and prints neither the report paths nor the commands below).
    assert!(dir.join("mismatches.html").is_file() && dir.join("auc.html").is_file(), "{said}");
    assert!(stdout.contains(&format!("labfeed --config {} report mismatches", config.display())), "{said}");
    assert!(stdout.contains(&format!("  {}", dir.join("auc.html").display())), "{said}");
    // The console: the command to start it and the demo login.
    assert!(stdout.contains(&format!("labfeed --config {} serve", config.display())), "{said}");
    assert!(stdout.contains("open http://127.0.0.1:8080/ and sign in as demo.dm"), "{said}");
    assert!(std::fs::read_to_string(dir.join("accounts.txt")).unwrap().contains("demo.dm"), "{said}");
    assert_eq!(out.status.code(), Some(0), "{said}");
}

#[test]
fn the_demo_refuses_a_folder_that_is_not_empty() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("notes.txt"), "mine").unwrap();
    let out = demo(tmp.path());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not empty"), "{}", text(&out));
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "nothing was written beside the file");
    assert!(out.stdout.is_empty());
}
