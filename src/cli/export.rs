//! `labfeed export results [--output PATH]`: accepted results as CSV (SPEC §5).
//!
//! One row per slot (participant, visit, minute, analyte) with its latest
//! version, in participant code order. Held-back results (open mismatches)
//! are not accepted and so are not here.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::cli::Outcome;
use crate::cli::report::{deliver, open_for_reading};
use crate::report::write_results_csv;

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(subcommand)]
    pub export: Export,
}

#[derive(Debug, Subcommand)]
pub enum Export {
    /// Accepted results (latest version of each), CSV.
    Results(ResultsArgs),
}

#[derive(Debug, Args)]
pub struct ResultsArgs {
    /// Write to this file (created or replaced) instead of standard output.
    #[arg(long, value_name = "PATH")]
    pub output: Option<PathBuf>,
}

pub fn run(config_path: &Path, args: &ExportArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Outcome> {
    match &args.export {
        Export::Results(a) => results(config_path, a, out, err),
    }
}

fn results(
    config_path: &Path,
    args: &ResultsArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<Outcome> {
    let (_, store) = open_for_reading(config_path)?;
    let rows = store.read(|r| r.current_results()).context("reading the accepted results")?;
    let mut buffer = Vec::new();
    write_results_csv(&mut buffer, &rows)?;
    deliver(&buffer, args.output.as_deref(), rows.len(), "results", out, err)?;
    Ok(Outcome::Ok)
}
