//! Shared scaffolding: a study in a temporary directory, driven through the
//! real `labfeed` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const EXAMPLE_CONFIG: &str = include_str!("../../config/labfeed.example.toml");

/// The example configuration with every `/var/lib/labfeed` path (database,
/// inbox, archive, quarantine) moved under `<tmp>/lib`, plus `edits`.
pub struct TempStudy {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl TempStudy {
    pub fn new(edits: &[(&str, &str)]) -> TempStudy {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("lib");
        std::fs::create_dir(&lib).unwrap();
        let mut text = EXAMPLE_CONFIG.replace("/var/lib/labfeed", lib.to_str().unwrap());
        for (from, to) in edits {
            assert!(text.contains(from), "the example config has no {from:?}");
            text = text.replace(from, to);
        }
        let config = dir.path().join("labfeed.toml");
        std::fs::write(&config, text).unwrap();
        TempStudy { dir, config }
    }

    /// `<tmp>/lib/<name>`: the database, inbox, archive and quarantine live here.
    pub fn lib(&self, name: &str) -> PathBuf {
        self.dir.path().join("lib").join(name)
    }

    /// Write a file in the temporary directory (not the inbox).
    pub fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    /// `labfeed --config <this study> ARGS`, with the caller's environment
    /// kept from leaking in (config, systemd sockets).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_labfeed"));
        cmd.arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("LABFEED_CONFIG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }
}

/// Standard output and error together, for assertion messages.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// CSV text as rows of fields, header included.
pub fn csv_rows(text: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

pub fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The standard output of a command that must succeed.
#[track_caller]
pub fn ok(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(0), "{}", text(out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A cobas e411 upload (no patient ID, no trusted draw time) around `body`.
pub fn e411(body: &str) -> String {
    format!("H|\\^&|||cobas-e411^1|||||host|RSUPL^BATCH|P|1|20260302120000\rP|1\r{body}L|1|N\r")
}

/// An e411 order record for `sample`.
pub fn order(n: usize, sample: &str) -> String {
    format!("O|{n}|{sample}||^^^CPEP|R||20260302083000||||N||||1|||||||20260302100000|||F\r")
}

/// A central-lab HL7 C-peptide result: patient ID, sample, collection time (OBR-7).
pub fn central(control: &str, patient: &str, sample: &str, collected: &str, value: &str) -> String {
    central_with_status(control, patient, sample, collected, value, "F")
}

pub fn central_with_status(
    control: &str,
    patient: &str,
    sample: &str,
    collected: &str,
    value: &str,
    status: &str,
) -> String {
    format!(
        "MSH|^~\\&|CENTRALLAB|CLAB|STUDYDB|T1D|20260312154500||ORU^R01^ORU_R01|{control}|P|2.5.1\r\
PID|1||{patient}^^^TRIAL^PI\r\
OBR|1|{sample}^STUDY||MMTT|||{collected}\r\
OBX|1|NM|1986-9^C peptide^LN||{value}|nmol/L|||||{status}\r"
    )
}

/// A study with U01 to U04 and a short settle time, no visits or samples.
pub fn four_participants() -> TempStudy {
    let t = TempStudy::new(&[("settle_seconds = 1.0", "settle_seconds = 0.1")]);
    let csv = t.file("participants.csv", "participant\nU01\nU02\nU03\nU04\n");
    let out = t.run(&["import", "participants", csv.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    t
}

/// `labfeed import WHAT NAME` with `content`, which must succeed.
pub fn import_csv(t: &TempStudy, what: &str, name: &str, content: &str) {
    let csv = t.file(name, content);
    let out = t.run(&["import", what, csv.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// `labfeed ingest NAME` with `bytes`: accepted or quarantined (exit 0 or 1); what it said.
pub fn ingest_bytes(t: &TempStudy, name: &str, bytes: &[u8]) -> String {
    let path = t.dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    let out = t.run(&["ingest", path.to_str().unwrap()]);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", text(&out));
    text(&out)
}

pub const MSH: &str = "MSH|^~\\&|CENTRALLAB|LAB|||20260302101500||ORU^R01|";

/// An HL7 C-peptide result of 0.25 for `sample` (its first three characters
/// are the patient ID), collected at `collected` (OBX-14).
pub fn hl7_at(control: &str, sample: &str, collected: &str) -> String {
    format!(
        "{MSH}{control}|P|2.5.1\rPID|1||{}\rOBR|1||{sample}\rOBX|1|NM|1986-9||0.25|nmol/L|||||F|||{collected}\r",
        &sample[..3]
    )
}
