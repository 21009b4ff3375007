//! `labfeed report mismatches [--format text|csv|html] [--output PATH] [--all]`
//! and `labfeed report auc [--format text|csv|html] [--output PATH]`.
//!
//! Each report reads one snapshot of the study database (read-only, so it
//! works while the daemon writes): the rows and, for HTML, the current
//! results and visits its curves are drawn from come from the same read.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};

use crate::cli::{Outcome, open_for_reading};
use crate::report::html::{Marks, Snapshot, flagged_slots, write_auc_html, write_mismatches_html};
use crate::report::mismatches::{History, review_rows_with_ids, write_mismatches_text_with_history};
use crate::report::now::Now;
use crate::report::{MismatchTextOptions, ReviewRow, write_mismatches_csv};
use crate::store::{MismatchId, MismatchReport, NotDoneMark, ResultRow, Slot, Store, Visit};
use crate::study::config::Config;
use crate::study::missing::{Absence, MissingResult, meal_started, missing_results, not_done_results};

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
    }
}

fn auc(config_path: &Path, args: &AucArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Outcome> {
    let (config, store) = open_for_reading(config_path)?;
    let now = jiff::Timestamp::now();
    let mut buffer = Vec::new();
    let (results, visits, flagged, withdrawn) = store
        .read(|r| {
            let results: Vec<ResultRow> = r.current_results()?.into_iter().map(|c| c.result).collect();
            // Only the chart marks open mismatches and withdrawn slots.
            let (flagged, withdrawn) = match args.format {
                ReportFormat::Html => (flagged_slots(&r.mismatch_report(false)?), r.slot_states()?.withdrawn),
                ReportFormat::Csv | ReportFormat::Text => Default::default(),
            };
            Ok((results, r.visits()?, flagged, withdrawn))
        })
        .context("reading the current results")?;
    // Every visit whose meal has started has its rows, received or not.
    let started = visits
        .iter()
        .filter(|v| v.meal_start.is_some_and(|t| meal_started(&config, t, now)))
        .map(|v| (v.participant.as_str(), v.visit.as_str()));
    let rows = crate::study::auc::compute_with_visits(&config, &results, started);
    match args.format {
        ReportFormat::Csv => crate::report::auc::write_auc_csv(&mut buffer, &rows)?,
        ReportFormat::Text => crate::report::auc::write_auc_text(&mut buffer, &rows, &config, now)?,
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

/// What `report mismatches` lists: the stored mismatches (open, or all) and
/// the computed MISSING_RESULT rows, with the visits and (for the HTML
/// curves) the current results, all read from one snapshot.
pub struct Review {
    pub stored: Vec<MismatchReport>,
    pub missing: Vec<MissingResult>,
    /// Slots marked not done (listed with `include_resolved` only).
    pub not_done: Vec<(MissingResult, NotDoneMark)>,
    /// The MISSING_RESULT id of each slot that has one.
    pub ids: std::collections::BTreeMap<Slot, MismatchId>,
    /// Every row's decisions, reopens and not-done marks.
    pub history: History,
    /// Read only for the curves (`with_curves`): the costliest query.
    pub results: Vec<ResultRow>,
    pub visits: Vec<Visit>,
    /// The time the missing results were computed for (the report's "as of").
    pub now: jiff::Timestamp,
    /// Where each decided value is now, and the not-done slots of each visit.
    pub whereabouts: Now,
    /// The data locks in force.
    pub locks: Vec<crate::store::Lock>,
}

impl Review {
    pub fn load(config: &Config, store: &Store, include_resolved: bool, with_curves: bool) -> anyhow::Result<Review> {
        let now = jiff::Timestamp::now();
        store
            .read(|r| {
                let stored = r.mismatch_report(include_resolved)?;
                // `--all` says where each decided value is now: from the current results.
                let results: Vec<ResultRow> = match with_curves || include_resolved {
                    true => r.current_results()?.into_iter().map(|c| c.result).collect(),
                    false => Vec::new(),
                };
                let visits = r.visits()?;
                let states = r.slot_states()?;
                let missing = missing_results(config, &visits, &states, now);
                let mut not_done = not_done_results(config, &visits, &states, now);
                let never_received =
                    not_done.iter().filter(|(m, _)| m.absence == Absence::NotReceived).map(|(m, _)| m.slot());
                let never_received: Vec<Slot> = never_received.collect();
                let whereabouts = Now::new(&results, &stored, &never_received);
                if !include_resolved {
                    not_done.clear();
                }
                let history = r.decision_history()?;
                let locks = r.locks()?;
                Ok(Review {
                    stored,
                    missing,
                    not_done,
                    ids: states.ids,
                    history,
                    results,
                    visits,
                    now,
                    whereabouts,
                    locks,
                })
            })
            .context("reading the mismatches")
    }

    /// Both kinds merged in report order, visits in configuration order
    /// (V2 before V10), as in `report auc` and `export lb`.
    pub fn rows(&self, config: &Config) -> Vec<ReviewRow<'_>> {
        let mut rows = review_rows_with_ids(&self.stored, &self.missing, &self.not_done, &self.ids);
        let rank = |visit: Option<&str>| match visit {
            None => (0, None),
            Some(v) => match config.visit_index(v) {
                Some(i) => (1, Some(i)),
                None => (2, None),
            },
        };
        // Stable: within a participant and visit, the minute and analyte order stays.
        rows.sort_by(|a, b| (a.participant(), rank(a.visit())).cmp(&(b.participant(), rank(b.visit()))));
        rows
    }
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
