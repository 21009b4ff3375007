//! `labfeed status` through the real binary on a real database file: folder
//! counts (temporary names and reason files left out), the last arrival per
//! source, open mismatches by code, the daemon's lock, and exit 2 when the
//! database or the configuration is not there.

use std::path::PathBuf;
use std::process::{Command, Output};

use super::support::{EXAMPLE_CONFIG as CONFIG, TempStudy, text};

/// A study whose database and watch folders live in a temporary directory.
struct Study {
    t: TempStudy,
}

impl Study {
    fn new() -> Study {
        Study { t: TempStudy::new(&[]) }
    }

    fn lib(&self, name: &str) -> PathBuf {
        self.t.lib(name)
    }

    fn database(&self) -> PathBuf {
        self.lib("labfeed.db")
    }

    fn lock(&self) -> PathBuf {
        self.lib("labfeed.db.lock")
    }

    /// Create the database the way a data manager would: import participants.
    fn create_database(&self) {
        let csv = self.file("participants.csv", "participant,site\nU07,Uppsala\n");
        let out = self.run(&["import", "participants", csv.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(self.database().is_file());
    }

    fn file(&self, name: &str, content: &str) -> PathBuf {
        self.t.file(name, content)
    }

    fn drop_files(&self, folder: &str, names: &[&str]) -> PathBuf {
        let folder = self.lib(folder);
        std::fs::create_dir_all(&folder).unwrap();
        for name in names {
            std::fs::write(folder.join(name), "H|\\^&\r").unwrap();
        }
        folder
    }

    fn run(&self, args: &[&str]) -> Output {
        self.t.run(args)
    }

    /// `labfeed status`, which must succeed; its stdout.
    fn status(&self) -> String {
        let out = self.run(&["status"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(out.stderr.is_empty(), "{}", text(&out));
        String::from_utf8(out.stdout).unwrap()
    }
}

fn lines(out: &str) -> Vec<&str> {
    out.lines().collect()
}

/// The one line starting with `prefix`.
fn line<'a>(out: &'a str, prefix: &str) -> &'a str {
    let found: Vec<&str> = out.lines().filter(|l| l.starts_with(prefix)).collect();
    assert_eq!(found.len(), 1, "one line starting {prefix:?} in:\n{out}");
    found[0]
}

fn astm(body: &str) -> String {
    format!("H|\\^&|||cobas-e411^1|||||host|RSUPL^BATCH|P|1|20260302120000\rP|1|\r{body}L|1|N\r")
}

fn order(n: usize, sample: &str) -> String {
    format!("O|{n}|{sample}||^^^CPEP|R||20260302083000||||N||||1|||||||20260302100000|||F\r")
}

fn result(n: usize, test: &str, value: &str, unit: &str) -> String {
    format!("R|{n}|^^^{test}|{value}|{unit}||N||F||ADMIN|20260302100000|20260302101500|E1\r")
}

#[test]
fn a_fresh_study_shows_paths_waiting_files_and_no_arrivals() {
    let s = Study::new();
    s.create_database();
    let inbox = s.drop_files("inbox", &["a.astm", "b.hl7", "c.astm.part", "d.tmp", "D.TMP", ".e.astm", "~f.astm"]);
    let quarantine = s.drop_files(
        "quarantine",
        &["bad.astm", "bad.astm.reason.txt", "worse.hl7", "worse.hl7.reason.txt", "odd.bin", "odd.bin.reason.txt"],
    );

    let out = s.status();
    assert_eq!(
        line(&out, "database "),
        format!("database {} (schema version {})", s.database().display(), labfeed::store::latest_version())
    );
    assert_eq!(line(&out, "daemon:"), "daemon: not running");
    assert_eq!(line(&out, "inbox "), format!("inbox {}: 2 files waiting", inbox.display()));
    assert_eq!(line(&out, "archive "), format!("archive {}", s.lib("archive").display()));
    assert_eq!(line(&out, "quarantine "), format!("quarantine {}: 3 files", quarantine.display()));
    assert!(out.contains(&format!("  file (watch folder {}): nothing received yet\n", inbox.display())), "{out}");
    assert!(
        out.contains("  serial:/dev/serial/by-id/usb-FTDI_FT232R-if00-port0 (cobas-e411): nothing received yet\n"),
        "{out}"
    );
    assert!(out.contains("  tcp:127.0.0.1:5001 (central-lab, mllp): nothing received yet\n"), "{out}");
    assert_eq!(lines(&out).last(), Some(&"open mismatches: 0"), "{out}");
    assert!(!s.lock().exists(), "status must not create the daemon's lock file");
}

#[test]
fn a_health_file_left_without_a_running_daemon_is_ignored() {
    let s = Study::new();
    s.create_database();
    let mut health = s.database().into_os_string();
    health.push(".health");
    std::fs::write(&health, "cannot commit since 2026-01-01T00:00:00Z: disk full\n").unwrap();
    // Only a live writer can fail to commit: status stays 0 (SPEC §7 Health).
    let out = s.status();
    assert!(!out.contains("cannot commit"), "{out}");
}

#[test]
fn missing_folders_are_reported_not_fatal() {
    let s = Study::new();
    s.create_database();
    let out = s.status();
    assert_eq!(line(&out, "inbox "), format!("inbox {}: does not exist yet", s.lib("inbox").display()));
    assert_eq!(line(&out, "quarantine "), format!("quarantine {}: does not exist yet", s.lib("quarantine").display()));
}

#[test]
fn the_last_arrival_per_source_says_what_came_of_it_and_mismatches_count_by_code() {
    let s = Study::new();
    s.create_database();
    let first = s.file(
        "first.astm",
        &astm(
            &[order(1, "U07-V4-T30"), result(1, "CPEP", "0.50", "nmol/L"), result(2, "GLUC", "5.5", "mmol/L")].concat(),
        ),
    );
    let out = s.run(&["ingest", first.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let status = s.status();
    let arrival = line(&status, "  ingest:");
    assert!(arrival.starts_with(&format!("  ingest:{} at 20", first.display())), "{status}");
    assert!(arrival.ends_with(": processed, 2 accepted"), "{status}");
    assert_eq!(lines(&status).last(), Some(&"open mismatches: 0"));

    // A later file with problems replaces it as the last arrival of `ingest`.
    let second = s.file(
        "second.astm",
        &astm(
            &[
                order(1, "U07-V4-T60"),
                result(1, "CPEP", "0.70", "nmol/L"),
                result(2, "INS", "5", "mU/L"),
                order(2, "NOPE-1"),
                result(1, "CPEP", "0.40", "nmol/L"),
                result(2, "GLUC", "5.0", "mmol/L"),
            ]
            .concat(),
        ),
    );
    let out = s.run(&["ingest", second.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let status = s.status();
    let arrival = line(&status, "  ingest:");
    assert!(arrival.starts_with(&format!("  ingest:{} at 20", second.display())), "{status}");
    assert!(arrival.ends_with(": processed, 1 accepted, 3 mismatches"), "{status}");
    let tail: Vec<&str> = lines(&status).into_iter().skip_while(|l| !l.starts_with("open mismatches")).collect();
    assert_eq!(tail, ["open mismatches: 3", "  UNKNOWN_SAMPLE: 2", "  UNKNOWN_TEST: 1"], "{status}");

    // The same bytes again: a duplicate delivery, and still one line per source.
    let out = s.run(&["ingest", second.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let status = s.status();
    assert!(line(&status, "  ingest:").ends_with(": duplicate of an earlier delivery"), "{status}");
    assert!(status.contains("open mismatches: 3\n"), "{status}");
}

#[test]
fn the_daemon_is_running_while_its_lock_is_held() {
    let s = Study::new();
    s.create_database();
    let lock = std::fs::File::create(s.lock()).unwrap();
    assert_eq!(line(&s.status(), "daemon:"), "daemon: not running", "an unlocked lock file is a stopped daemon");

    lock.lock().unwrap();
    assert_eq!(line(&s.status(), "daemon:"), format!("daemon: running (holds {})", s.lock().display()));
    // Probing twice does not disturb the holder.
    assert!(line(&s.status(), "daemon:").starts_with("daemon: running"));

    lock.unlock().unwrap();
    assert_eq!(line(&s.status(), "daemon:"), "daemon: not running");
}

#[test]
fn status_reads_while_a_writer_holds_a_transaction() {
    let s = Study::new();
    s.create_database();
    let mut store = labfeed::store::Store::open(s.database()).unwrap();
    let out = store
        .write(|_tx| {
            // BEGIN IMMEDIATE is in force: a WAL reader must still get through.
            Ok(s.run(&["status"]))
        })
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("open mismatches: 0"), "{}", text(&out));
}

#[test]
fn a_missing_database_is_exit_2_naming_the_path_and_the_key() {
    let s = Study::new();
    let out = s.run(&["status"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&s.database().display().to_string()), "{err}");
    assert!(err.contains("does not exist yet"), "{err}");
    assert!(err.contains(&format!("storage.database in {}", s.t.config.display())), "{err}");
    assert!(out.stdout.is_empty());
    assert!(!s.database().exists(), "status must not create the database");
}

#[test]
fn a_bad_config_is_exit_2_naming_the_file_and_key() {
    let s = Study::new();
    std::fs::write(&s.t.config, CONFIG.replace("[storage]\n", "[storage]\ndatabse = \"x\"\n")).unwrap();
    let out = s.run(&["status"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&s.t.config.display().to_string()), "{err}");
    assert!(err.contains("databse"), "{err}");

    let missing = s.t.dir.path().join("nowhere.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_labfeed"))
        .args(["--config", missing.to_str().unwrap(), "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&missing.display().to_string()));
}
