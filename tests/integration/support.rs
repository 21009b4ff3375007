//! Shared scaffolding: a study in a temporary directory, driven through the
//! real `labfeed` binary.

use std::path::PathBuf;
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
