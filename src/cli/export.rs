//! `labfeed export results [--output PATH]`: accepted results as CSV (SPEC §5).
//! `labfeed export lb [--format csv|xpt] [--output PATH]`: the same results
//! as the CDISC SDTM LB domain, with a NOT DONE record for each slot marked
//! not done; as CSV or as a SAS XPORT v5 file.
//! `labfeed export adam [--format csv|xpt] [--output PATH]`: the MMTT
//! outcomes of `report auc` as an ADaM BDS dataset (ADMMTT).
//! `labfeed export define [--format xml|html] [--output PATH]`: define.xml
//! (Define-XML 2.1) describing those two datasets, or the same as HTML.
//!
//! One row per slot (participant, visit, minute, analyte) with its latest
//! version, in participant code order. Held-back results (open mismatches)
//! are not accepted and so are not here.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};

use crate::cli::Outcome;
use crate::cli::open_for_reading;
use crate::cli::report::deliver;

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(subcommand)]
    pub export: Export,
}

#[derive(Debug, Subcommand)]
pub enum Export {
    /// Accepted results (latest version of each), CSV.
    Results(ResultsArgs),
    /// CDISC SDTM LB domain: accepted results and NOT DONE records for slots marked not done.
    Lb(LbArgs),
    /// CDISC ADaM BDS dataset of the MMTT outcomes (AUC, AUC mean, log AUC mean by visit).
    Adam(AdamArgs),
    /// define.xml (Define-XML 2.1) describing the LB and ADaM datasets, or the same as an HTML page.
    Define(DefineArgs),
}

#[derive(Debug, Args)]
pub struct DefineArgs {
    /// xml: define.xml (Define-XML 2.1); html: the same metadata as one HTML page a browser shows
    /// without the CDISC stylesheet.
    #[arg(long, value_enum, default_value_t = DefineFormat::Xml)]
    pub format: DefineFormat,

    /// Write to this file (created or replaced) instead of standard output.
    #[arg(long, value_name = "PATH")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DefineFormat {
    Xml,
    Html,
}

#[derive(Debug, Args)]
pub struct AdamArgs {
    /// csv: a header row and one line per record; xpt: SAS XPORT v5 (dataset ADMMTT), written to
    /// admmtt.xpt unless --output says where.
    #[arg(long, value_enum, default_value_t = DatasetFormat::Csv)]
    pub format: DatasetFormat,

    /// Write to this file (created or replaced) instead of standard output (csv) or admmtt.xpt (xpt).
    #[arg(long, value_name = "PATH")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ResultsArgs {
    /// Write to this file (created or replaced) instead of standard output.
    #[arg(long, value_name = "PATH")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LbArgs {
    /// csv: a header row and one line per record; xpt: SAS XPORT v5 (dataset LB), written to lb.xpt
    /// unless --output says where.
    #[arg(long, value_enum, default_value_t = DatasetFormat::Csv)]
    pub format: DatasetFormat,

    /// Write to this file (created or replaced) instead of standard output (csv) or lb.xpt (xpt).
    #[arg(long, value_name = "PATH")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DatasetFormat {
    Csv,
    /// SAS XPORT version 5, as FDA and CDISC take datasets.
    Xpt,
}

pub fn run(config_path: &Path, args: &ExportArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Outcome> {
    match &args.export {
        Export::Results(a) => results(config_path, a, out, err),
        Export::Lb(a) => lb(config_path, a, out, err),
        Export::Adam(a) => adam(config_path, a, out, err),
        Export::Define(a) => define(config_path, a, out, err),
    }
}

fn results(
    config_path: &Path,
    args: &ResultsArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<Outcome> {
    let (_, store) = open_for_reading(config_path)?;
    let csv = crate::report::exports::results_csv(&store)?;
    deliver(&csv.bytes, args.output.as_deref(), csv.rows, "results", out, err)?;
    Ok(Outcome::Ok)
}

fn lb(config_path: &Path, args: &LbArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Outcome> {
    let (config, store) = open_for_reading(config_path)?;
    let now = jiff::Timestamp::now();
    if args.format == DatasetFormat::Csv {
        let csv = crate::report::exports::lb_csv(&config, &store, now)?;
        deliver(&csv.bytes, args.output.as_deref(), csv.rows, "LB records", out, err)?;
        return Ok(Outcome::Ok);
    }
    let records = crate::report::exports::lb(&config, &store, now)?;
    let xpt = crate::report::lb_xpt(&records, jiff::tz::TimeZone::UTC.to_datetime(now));
    write_xpt(xpt, args.output.as_deref(), "lb.xpt", records.len(), "LB records", err)
}

fn adam(config_path: &Path, args: &AdamArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Outcome> {
    let (config, store) = open_for_reading(config_path)?;
    let now = jiff::Timestamp::now();
    if args.format == DatasetFormat::Csv {
        let csv = crate::report::exports::adam_csv(&config, &store, now)?;
        deliver(&csv.bytes, args.output.as_deref(), csv.rows, "ADaM records", out, err)?;
        return Ok(Outcome::Ok);
    }
    let records = crate::report::exports::adam(&config, &store, now)?;
    let xpt = crate::report::adam::adam_xpt(&records, jiff::tz::TimeZone::UTC.to_datetime(now));
    write_xpt(xpt, args.output.as_deref(), "admmtt.xpt", records.len(), "ADaM records", err)
}

fn define(config_path: &Path, args: &DefineArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Outcome> {
    let (config, store) = open_for_reading(config_path)?;
    let html = args.format == DefineFormat::Html;
    match crate::report::exports::define(&config, &store, jiff::Timestamp::now(), html)? {
        Ok(text) => {
            deliver(text.as_bytes(), args.output.as_deref(), 2, "datasets described", out, err)?;
            Ok(Outcome::Ok)
        }
        Err(problem) => {
            // The XPT files it would describe cannot be written either.
            let what = args.output.as_deref().map_or_else(|| "define.xml".to_owned(), |p| p.display().to_string());
            writeln!(err, "labfeed: {what} not written: {problem}")?;
            Ok(Outcome::Rejected)
        }
    }
}

/// Write a finished XPT file to `output`, else `default` in the current
/// directory. A value the format cannot hold is the data's problem, not
/// usage (exit 1): nothing is written, so no half-right file is left behind.
fn write_xpt(
    xpt: Result<Vec<u8>, String>,
    output: Option<&Path>,
    default: &str,
    rows: usize,
    what: &str,
    err: &mut dyn Write,
) -> anyhow::Result<Outcome> {
    let path = output.map_or_else(|| PathBuf::from(default), Path::to_path_buf);
    match xpt {
        Ok(bytes) => {
            deliver(&bytes, Some(&path), rows, what, &mut std::io::sink(), err)?;
            Ok(Outcome::Ok)
        }
        Err(problem) => {
            writeln!(err, "labfeed: {} not written: {problem}", path.display())?;
            Ok(Outcome::Rejected)
        }
    }
}
