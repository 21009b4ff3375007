//! `labfeed export results [--output PATH]`: accepted results as CSV (SPEC §5).
//! `labfeed export lb [--output PATH]`: the same results as the CDISC SDTM LB
//! domain, with a NOT DONE record for each scheduled result still missing.
//!
//! One row per slot (participant, visit, minute, analyte) with its latest
//! version, in participant code order. Held-back results (open mismatches)
//! are not accepted and so are not here.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::cli::Outcome;
use crate::cli::open_for_reading;
use crate::cli::report::deliver;
use crate::report::{lb_records_with_not_done, write_lb_csv, write_results_csv};
use crate::study::missing::{missing_results, not_done_results};

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(subcommand)]
    pub export: Export,
}

#[derive(Debug, Subcommand)]
pub enum Export {
    /// Accepted results (latest version of each), CSV.
    Results(ResultsArgs),
    /// CDISC SDTM LB domain: accepted results and NOT DONE records for missing ones, CSV.
    Lb(LbArgs),
}

#[derive(Debug, Args)]
pub struct ResultsArgs {
    /// Write to this file (created or replaced) instead of standard output.
    #[arg(long, value_name = "PATH")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LbArgs {
    /// Write to this file (created or replaced) instead of standard output.
    #[arg(long, value_name = "PATH")]
    pub output: Option<PathBuf>,
}

pub fn run(config_path: &Path, args: &ExportArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Outcome> {
    match &args.export {
        Export::Results(a) => results(config_path, a, out, err),
        Export::Lb(a) => lb(config_path, a, out, err),
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

fn lb(config_path: &Path, args: &LbArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Outcome> {
    let (config, store) = open_for_reading(config_path)?;
    let now = jiff::Timestamp::now();
    // Results, visits and the missing slots from one snapshot, so a result
    // arriving meanwhile is never both a record and NOT DONE.
    let records = store
        .read(|r| {
            let results = r.current_results()?;
            let visits = r.visits()?;
            let states = r.slot_states()?;
            let missing = missing_results(&config, &visits, &states, now);
            let not_done = not_done_results(&config, &visits, &states, now);
            Ok(lb_records_with_not_done(&config, &results, &visits, &missing, &not_done))
        })
        .context("reading the accepted results and visits")?;
    let mut buffer = Vec::new();
    write_lb_csv(&mut buffer, &records)?;
    deliver(&buffer, args.output.as_deref(), records.len(), "LB records", out, err)?;
    Ok(Outcome::Ok)
}
