//! `labfeed ingest FILE...`: push files through the same pipeline as the
//! watch folder. The files are left where they are.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{Outcome, open_study};
use crate::ingest::{Delivery, Summary, ingest};
use crate::store::{ProcessingOutcome, Source};

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// ASTM or HL7 files; they are left where they are.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

pub fn run(config_path: &Path, args: &IngestArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Outcome> {
    let (config, mut store) = open_study(config_path)?;
    let mut outcome = Outcome::Ok;
    let mut total = Totals::default();
    // A progress bar only for people watching a long backlog on a terminal.
    let bar = (args.files.len() > 1 && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(args.files.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} files ({per_sec}, {eta} left) {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    for path in &args.files {
        let name = path.display().to_string();
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) => {
                writeln!(err, "labfeed: {name}: cannot read: {e}")?;
                outcome = outcome.max(Outcome::Usage);
                continue;
            }
        };
        let delivery = Delivery {
            bytes: &bytes,
            source: Source::Ingest,
            origin: name.clone(),
            instrument: None,
            received_at: jiff::Timestamp::now(),
        };
        let summary = ingest(&mut store, &config, &delivery)?;
        if summary.errors > 0 {
            outcome = outcome.max(Outcome::Rejected);
        }
        total.add(&summary);
        let line = describe(&name, &summary);
        match &bar {
            Some(bar) => {
                bar.inc(1);
                if summary.errors > 0 {
                    bar.println(&line);
                }
            }
            None => writeln!(out, "{line}")?,
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if args.files.len() > 1 {
        writeln!(
            out,
            "{} files: {} accepted, {} duplicates, {} mismatches, {} QC, {} errors",
            total.files, total.accepted, total.duplicates, total.mismatches, total.qc, total.errors
        )?;
    }
    Ok(outcome)
}

#[derive(Default)]
struct Totals {
    files: u32,
    accepted: u32,
    duplicates: u32,
    mismatches: u32,
    qc: u32,
    errors: u32,
}

impl Totals {
    fn add(&mut self, s: &Summary) {
        self.files += 1;
        self.accepted += s.accepted;
        self.duplicates += s.duplicates;
        self.mismatches += s.mismatches;
        self.qc += s.qc;
        self.errors += s.errors;
    }
}

/// One line per file: what came of its results, and why if it was rejected.
fn describe(name: &str, s: &Summary) -> String {
    let counts = format!(
        "{} accepted, {} duplicates, {} mismatches, {} QC, {} errors",
        s.accepted, s.duplicates, s.mismatches, s.qc, s.errors
    );
    match s.outcome {
        ProcessingOutcome::Duplicate => format!("{name}: already received (identical content): {counts}"),
        ProcessingOutcome::Rejected => {
            format!("{name}: rejected: {}", s.detail.as_deref().unwrap_or("not an ASTM or HL7 file"))
        }
        _ => match &s.detail {
            Some(detail) => format!("{name}: {counts}; first error: {detail}"),
            None => format!("{name}: {counts}"),
        },
    }
}
