//! `labfeed ingest FILE...`: push files through the same pipeline as the
//! watch folder. The files are left where they are.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{Outcome, open_study};
use crate::ingest::{Delivery, Summary, ingest_batch};
use crate::store::{ProcessingOutcome, Source};

/// Files per transaction pair.
const BATCH_FILES: usize = 500;
/// Bytes per transaction pair (the batch is held in memory).
const BATCH_BYTES: usize = 32 << 20;

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
    // Files are committed in batches (two transactions per batch), so a
    // backlog is not limited by one disk sync per file.
    let mut batch: Vec<(String, Vec<u8>)> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut paths = args.files.iter().peekable();
    while let Some(path) = paths.next() {
        // The name as it is shown and stored, control characters escaped.
        let name = crate::model::printable(&path.display().to_string()).into_owned();
        match std::fs::read(path) {
            Ok(bytes) => {
                batch_bytes += bytes.len();
                batch.push((name, bytes));
            }
            Err(e) => {
                writeln!(err, "labfeed: {name}: cannot read: {e}")?;
                outcome = outcome.max(Outcome::Usage);
            }
        }
        let full = batch.len() >= BATCH_FILES || batch_bytes >= BATCH_BYTES;
        if batch.is_empty() || (!full && paths.peek().is_some()) {
            continue;
        }
        let received_at = jiff::Timestamp::now();
        let deliveries: Vec<Delivery<'_>> = batch
            .iter()
            .map(|(name, bytes)| Delivery {
                bytes,
                source: Source::Ingest,
                origin: name.clone(),
                instrument: None,
                received_at,
            })
            .collect();
        let summaries = ingest_batch(&mut store, &config, &deliveries)?;
        for ((name, _), summary) in batch.iter().zip(&summaries) {
            if summary.errors > 0 {
                outcome = outcome.max(Outcome::Rejected);
            }
            total.add(summary);
            let line = describe(name, summary);
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
        batch.clear();
        batch_bytes = 0;
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if args.files.len() > 1 {
        let counts = crate::ingest::counts(total.accepted, total.duplicates, total.mismatches, total.qc, total.errors);
        writeln!(out, "{} file{}: {counts}", total.files, if total.files == 1 { "" } else { "s" })?;
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

/// One line per file: what came of its results, and why if it was rejected
/// (every broken message on a line of its own).
fn describe(name: &str, s: &Summary) -> String {
    let counts = s.counts();
    let detail = |fallback: &str| s.detail.as_deref().unwrap_or(fallback).replace('\n', "\n  ");
    match s.outcome {
        ProcessingOutcome::Duplicate if s.errors > 0 => {
            format!("{name}: rejected again: {}", detail("identical to a rejected file"))
        }
        ProcessingOutcome::Duplicate => format!("{name}: already received (identical content): {counts}"),
        ProcessingOutcome::Rejected => format!("{name}: rejected: {}", detail("not an ASTM or HL7 file")),
        _ => {
            let again = match s.superseded {
                0 => String::new(),
                n => format!(
                    "; read again with the current configuration ({} of an earlier delivery closed)",
                    if n == 1 { "1 mismatch".to_owned() } else { format!("{n} mismatches") }
                ),
            };
            match &s.detail {
                Some(_) => format!("{name}: {counts}{again}; broken messages:\n  {}", detail("")),
                None => format!("{name}: {counts}{again}"),
            }
        }
    }
}
