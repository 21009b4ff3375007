//! `labfeed report mismatches [--format text|csv|html] [--output PATH] [--all]`,
//! `labfeed report auc [--format text|csv|html] [--output PATH]` and
//! `labfeed report audit [--format text|csv] [--output PATH] [--since T]
//! [--account A] [--entity E[/ID]]`.
//!
//! Each report reads one snapshot of the study database (read-only, so it
//! works while the daemon writes): the rows and, for HTML, the current
//! results and visits its curves are drawn from come from the same read.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};

use crate::cli::{Outcome, open_for_reading};
use crate::report::audit::{AuditCsv, AuditOptions, AuditText, EntityFilter};
use crate::report::html::{Marks, Snapshot, flagged_slots, write_auc_html, write_mismatches_html};
use crate::report::mismatches::{History, write_mismatches_text_with_history};
use crate::report::now::Now;
pub use crate::report::review::Review;
use crate::report::{MismatchTextOptions, write_mismatches_csv};
use crate::store::{AuditFilter, ResultRow};

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
    /// The audit trail: who signed what, when and why, with old and new values (labfeed's own rows counted).
    Audit(AuditArgs),
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// text: one block per transaction, labfeed's machine rows counted; csv: one line per audit row.
    #[arg(long, value_enum, default_value_t = AuditFormat::Text)]
    pub format: AuditFormat,

    /// Write to this file (created or replaced) instead of standard output.
    #[arg(long, value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// Only what happened at or after this time: a date (2026-03-02, from midnight UTC) or an
    /// RFC 3339 time (2026-03-02T08:00:00+01:00; UTC when it has no offset).
    #[arg(long, value_name = "TIME", value_parser = parse_since)]
    pub since: Option<String>,

    /// Only the transactions signed by this account (`labfeed`: labfeed's own).
    #[arg(long, value_name = "ACCOUNT")]
    pub account: Option<String>,

    /// Only rows about this entity (result, mismatch, account, lock, participant, visit, sample, …),
    /// or about one of them: ENTITY/ID (mismatch/12, visit/U01/V0).
    #[arg(long, value_name = "ENTITY[/ID]")]
    pub entity: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuditFormat {
    Text,
    Csv,
}

/// `--since`: a date or an RFC 3339 time (UTC without an offset), as the
/// audit log's UTC text at whole seconds (a fraction rounds up, so the
/// comparison stays exact).
fn parse_since(text: &str) -> Result<String, String> {
    let text = text.trim();
    let time = if let Ok(t) = text.parse::<jiff::Timestamp>() {
        Some(t)
    } else if let Ok(dt) = text.parse::<jiff::civil::DateTime>() {
        jiff::tz::TimeZone::UTC.to_timestamp(dt).ok()
    } else if let Ok(d) = text.parse::<jiff::civil::Date>() {
        jiff::tz::TimeZone::UTC.to_timestamp(d.at(0, 0, 0, 0)).ok()
    } else {
        None
    };
    let Some(time) = time else {
        return Err(
            "expected a date (2026-03-02) or an RFC 3339 time (2026-03-02T08:00:00Z; UTC without an offset)".to_owned()
        );
    };
    let second = time.as_second() + i64::from(time.subsec_nanosecond() > 0);
    jiff::Timestamp::from_second(second).map(crate::report::utc_time).map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub struct AucArgs {
    /// text: a readable table; csv: SPEC §5 columns; html: a page with each visit's curve.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,

    /// Write to this file (created or replaced) instead of standard output.
    #[arg(long, value_name = "PATH")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct MismatchesArgs {
    /// text: grouped by participant and visit, for reading; csv: SPEC §5 columns;
    /// html: a page grouped the same way, with each visit's MMTT curve.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,

    /// Write to this file (created or replaced) instead of standard output.
    #[arg(long, value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// List resolved mismatches too (and not-done missing results), each with its whole history
    /// of decisions and reopens.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Csv,
    /// One self-contained page (inline CSS and SVG).
    Html,
}

pub fn run(config_path: &Path, args: &ReportArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Outcome> {
    match &args.report {
        Report::Mismatches(a) => mismatches(config_path, a, out, err),
        Report::Auc(a) => auc(config_path, a, out, err),
        Report::Audit(a) => audit(config_path, a, out, err),
    }
}

/// The audit trail, read in one snapshot and written as it is read (a large
/// study's CSV has millions of lines). A file that could not be finished is
/// removed.
fn audit(config_path: &Path, args: &AuditArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Outcome> {
    let (config, store) = open_for_reading(config_path)?;
    let filter = AuditFilter { since: args.since.clone(), actor: args.account.clone(), before: None };
    let entity = args.entity.as_deref().map(EntityFilter::parse);
    let mut file = match &args.output {
        Some(path) => Some(std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?),
        None => None,
    };
    let mut sink: Box<dyn Write + '_> = match file.as_mut() {
        Some(f) => Box::new(std::io::BufWriter::new(f)),
        None => Box::new(std::io::BufWriter::new(&mut *out)),
    };
    let options = AuditOptions {
        study: &config.study.id,
        generated_at: jiff::Timestamp::now(),
        since: args.since.as_deref(),
        account: args.account.as_deref(),
        entity: args.entity.as_deref(),
    };
    let written = store
        .read(|r| {
            Ok(match args.format {
                AuditFormat::Csv => AuditCsv::new(&mut sink, entity.clone())
                    .map_err(anyhow::Error::from)
                    .and_then(|mut w| {
                        r.each_audit_row(&filter, |row| w.push(row).map_err(anyhow::Error::from))?;
                        Ok(w.finish()?)
                    })
                    .map(|n| (n, if n == 1 { "audit row" } else { "audit rows" })),
                AuditFormat::Text => AuditText::new(&mut sink, &options, entity.clone())
                    .map_err(anyhow::Error::from)
                    .and_then(|mut w| {
                        r.each_audit_row(&filter, |row| w.push(row).map_err(anyhow::Error::from))?;
                        Ok(w.finish()?)
                    })
                    .map(|n| (n, if n == 1 { "transaction" } else { "transactions" })),
            })
        })
        .context("reading the audit trail")
        .and_then(|result| result)
        .and_then(|n| {
            sink.flush()?;
            Ok(n)
        });
    drop(sink);
    match (written, &args.output) {
        (Ok((n, what)), Some(path)) => writeln!(err, "{}: {n} {what}", path.display())?,
        (Ok(_), None) => {}
        (Err(e), path) => {
            if let Some(path) = path {
                let _ = std::fs::remove_file(path);
            }
            return Err(e);
        }
    }
    Ok(Outcome::Ok)
}

fn auc(config_path: &Path, args: &AucArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Outcome> {
    let (config, store) = open_for_reading(config_path)?;
    let now = jiff::Timestamp::now();
    let mut buffer = Vec::new();
    let (results, visits, flagged, withdrawn, locks) = store
        .read(|r| {
            let results: Vec<ResultRow> = r.current_results_in(&crate::store::Scope::Study)?;
            // Only the chart marks open mismatches and withdrawn slots.
            let (flagged, withdrawn) = match args.format {
                ReportFormat::Html => {
                    (flagged_slots(&r.mismatch_report(false)?), r.withdrawn_slots_in(&crate::store::Scope::Study)?)
                }
                ReportFormat::Csv | ReportFormat::Text => Default::default(),
            };
            Ok((results, r.visits()?, flagged, withdrawn, r.locks()?))
        })
        .context("reading the current results")?;
    // Every visit whose meal has started has its rows, received or not.
    let rows = crate::report::auc::auc_rows(&config, &results, &visits, now);
    match args.format {
        ReportFormat::Csv => crate::report::auc::write_auc_csv(&mut buffer, &rows)?,
        ReportFormat::Text => crate::report::auc::write_auc_text(&mut buffer, &rows, &config, now, &locks)?,
        ReportFormat::Html => {
            let (history, whereabouts) = (History::new(), Now::default());
            let snapshot = Snapshot { results: &results, visits: &visits, history: &history, now: &whereabouts };
            let marks = Marks { flagged: &flagged, withdrawn: &withdrawn };
            write_auc_html(&mut buffer, &rows, snapshot, marks, &config, now)?;
        }
    }
    let count = rows.len();
    let what = if count == 1 { "AUC row" } else { "AUC rows" };
    deliver(&buffer, args.output.as_deref(), count, what, out, err)?;
    Ok(Outcome::Ok)
}

fn mismatches(
    config_path: &Path,
    args: &MismatchesArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<Outcome> {
    let (config, store) = open_for_reading(config_path)?;
    let review = Review::load(&config, &store, args.all, args.format == ReportFormat::Html)?;
    let rows = review.rows(&config);
    // The whole report is made before anything is written, so a failure never
    // leaves a half-written file behind.
    let mut buffer = Vec::new();
    let options = MismatchTextOptions {
        study: &config.study.id,
        generated_at: review.now,
        include_resolved: args.all,
        timezone: &config.study.timezone,
        scheduled_slots: config.mmtt.timepoints.len() * config.analytes.len(),
        locks: &review.locks,
    };
    match args.format {
        ReportFormat::Csv => write_mismatches_csv(&mut buffer, &rows, &review.history)?,
        ReportFormat::Text => {
            write_mismatches_text_with_history(&mut buffer, &rows, &options, &review.history, &review.whereabouts)?
        }
        ReportFormat::Html => {
            let snapshot = Snapshot {
                results: &review.results,
                visits: &review.visits,
                history: &review.history,
                now: &review.whereabouts,
            };
            write_mismatches_html(&mut buffer, &rows, snapshot, &config, &options)?;
        }
    }
    let what = match (args.all, rows.len() == 1) {
        (true, true) => "mismatch",
        (true, false) => "mismatches",
        (false, true) => "open mismatch",
        (false, false) => "open mismatches",
    };
    deliver(&buffer, args.output.as_deref(), rows.len(), what, out, err)?;
    Ok(Outcome::Ok)
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
