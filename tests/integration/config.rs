//! `labfeed check-config` through the real binary: the config path rules
//! (SPEC §1) and messages that name the file, line and key.

use std::path::Path;
use std::process::{Command, Output};

fn labfeed(args: &[&str], env_config: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_labfeed"));
    cmd.args(args).env_remove("LABFEED_CONFIG");
    if let Some(path) = env_config {
        cmd.env("LABFEED_CONFIG", path);
    }
    cmd.output().expect("run the labfeed binary")
}

fn example() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/labfeed.example.toml").display().to_string()
}

#[test]
fn the_example_config_checks_out_and_is_summarised() {
    let out = labfeed(&["--config", &example(), "check-config"], None);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    for expected in ["OK", "NCT02057211", "c_peptide in nmol/L", "cobas-e411", "15 (±2)", "V0 Baseline (baseline)"] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn problems_name_file_line_and_key_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(example()).unwrap().replace("baud = 9600", "baud = 9600\nbaud_rate = 9600");
    let path = dir.path().join("labfeed.toml");
    std::fs::write(&path, &text).unwrap();
    let line = text.lines().position(|l| l.starts_with("baud_rate")).unwrap() + 1;
    // $LABFEED_CONFIG is used when --config is not given.
    let out = labfeed(&["check-config"], Some(path.to_str().unwrap()));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:{line}: serial.baud_rate: unknown field", path.display())), "{err}");
}

#[test]
fn a_poll_interval_too_large_for_a_timer_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(example())
        .unwrap()
        .replace("poll_interval_seconds = 2", "poll_interval_seconds = 18446744073709551615");
    let path = dir.path().join("labfeed.toml");
    std::fs::write(&path, &text).unwrap();
    let out = labfeed(&["--config", path.to_str().unwrap(), "check-config"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("watch.poll_interval_seconds: must be between 1 and 86400 seconds"), "{err}");
}

#[test]
fn a_missing_config_file_is_a_usage_error_naming_the_path() {
    let out = labfeed(&["--config", "/nonexistent/labfeed.toml", "check-config"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/labfeed.toml"));
}
