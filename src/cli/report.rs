//! `labfeed report mismatches [--format text|csv] [--output PATH] [--all]`.
//!
//! Reads a snapshot of the study database (read-only, so it works while the
//! daemon writes). `--format html` is part of the contract but not built yet:
//! it is refused as a usage error (exit 2) rather than silently giving text.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};

use crate::cli::{Outcome, load_config};
use crate::report::{MismatchTextOptions, ReviewRow, review_rows, write_mismatches_csv, write_mismatches_text};
use crate::store::{MismatchReport, Store};
use crate::study::config::Config;
use crate::study::missing::{MissingResult, missing_results};

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(subcommand)]
    pub report: Report,
}

#[derive(Debug, Subcommand)]
pub enum Report {
    /// Mismatches waiting for a data manager (`--all`: resolved ones too).
    Mismatches(MismatchesArgs),
    /// MMTT AUC per participant, visit and analyte, with the change from baseline.
    Auc(AucArgs),
}

#[derive(Debug, Args)]
pub struct AucArgs {
    /// text: a readable table; csv: SPEC §5 columns.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,

    /// Write to this file (created or replaced) instead of standard output.
    #[arg(long, value_name = "PATH")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct MismatchesArgs {
    /// text: grouped by participant and visit, for reading; csv: SPEC §5 columns.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,

    /// Write to this file (created or replaced) instead of standard output.
    #[arg(long, value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// List resolved mismatches too.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Csv,
    /// Not built yet.
    Html,
}

pub fn run(config_path: &Path, args: &ReportArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Outcome> {
    match &args.report {
        Report::Mismatches(a) => mismatches(config_path, a, out, err),
        Report::Auc(a) => auc(config_path, a, out, err),
    }
}

fn auc(config_path: &Path, args: &AucArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Outcome> {
    if args.format == ReportFormat::Html {
        writeln!(err, "labfeed: report auc --format html is not built yet; use --format text or --format csv")?;
        return Ok(Outcome::Usage);
    }
    let (config, store) = open_for_reading(config_path)?;
    let current = store.read(|r| r.current_results()).context("reading the current results")?;
    let results: Vec<_> = current.into_iter().map(|c| c.result).collect();
    let rows = crate::study::auc::compute(&config, &results);
    let mut buffer = Vec::new();
    match args.format {
        ReportFormat::Csv => crate::report::auc::write_auc_csv(&mut buffer, &rows)?,
        ReportFormat::Text | ReportFormat::Html => {
            crate::report::auc::write_auc_text(&mut buffer, &rows, &config.study.id, jiff::Timestamp::now())?
        }
    }
    deliver(&buffer, args.output.as_deref(), rows.len(), "AUC rows", out, err)?;
    Ok(Outcome::Ok)
}

fn mismatches(
    config_path: &Path,
    args: &MismatchesArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<Outcome> {
    if args.format == ReportFormat::Html {
        writeln!(err, "labfeed: report mismatches --format html is not built yet; use --format text or --format csv")?;
        return Ok(Outcome::Usage);
    }
    let (config, store) = open_for_reading(config_path)?;
    let review = Review::load(&config, &store, args.all)?;
    let rows = review.rows();
    // The whole report is made before anything is written, so a failure never
    // leaves a half-written file behind.
    let mut buffer = Vec::new();
    match args.format {
        ReportFormat::Csv => write_mismatches_csv(&mut buffer, &rows)?,
        ReportFormat::Text | ReportFormat::Html => {
            let options = MismatchTextOptions {
                study: &config.study.id,
                generated_at: jiff::Timestamp::now(),
                include_resolved: args.all,
            };
            write_mismatches_text(&mut buffer, &rows, &options)?;
        }
    }
    let what = if args.all { "mismatches" } else { "open mismatches" };
    deliver(&buffer, args.output.as_deref(), rows.len(), what, out, err)?;
    Ok(Outcome::Ok)
}

/// What `report mismatches` lists: the stored mismatches (open, or all) and
/// the computed MISSING_RESULT rows, read from one snapshot.
pub struct Review {
    pub stored: Vec<MismatchReport>,
    pub missing: Vec<MissingResult>,
}

impl Review {
    pub fn load(config: &Config, store: &Store, include_resolved: bool) -> anyhow::Result<Review> {
        let now = jiff::Timestamp::now();
        store
            .read(|r| {
                let stored = r.mismatch_report(include_resolved)?;
                let missing = missing_results(config, &r.visits()?, &r.slot_states()?, now);
                Ok(Review { stored, missing })
            })
            .context("reading the mismatches")
    }

    /// Both kinds merged in report order.
    pub fn rows(&self) -> Vec<ReviewRow<'_>> {
        review_rows(&self.stored, &self.missing)
    }
}

/// Load the configuration and open the study database read-only. A database
/// that does not exist yet is a configuration problem (exit 2), not an empty
/// report: a wrong `storage.database` must not look like a study with no data.
pub fn open_for_reading(config_path: &Path) -> anyhow::Result<(Config, Store)> {
    let config = load_config(config_path)?;
    let database = &config.storage.database;
    if !database.exists() {
        anyhow::bail!(
            "the study database {} does not exist (storage.database in {}); nothing has been imported or received yet",
            database.display(),
            config_path.display()
        );
    }
    let store = Store::open_read_only(database)
        .with_context(|| format!("opening the study database (storage.database in {})", config_path.display()))?;
    Ok((config, store))
}

/// Write a finished report to `output` (created or replaced) or to `out`.
/// With a file, a one-line note on `err` says what went where.
pub fn deliver(
    bytes: &[u8],
    output: Option<&Path>,
    rows: usize,
    what: &str,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    match output {
        None => {
            out.write_all(bytes)?;
            out.flush()?;
        }
        Some(path) => {
            std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
            writeln!(err, "{}: {rows} {what}", path.display())?;
        }
    }
    Ok(())
}
