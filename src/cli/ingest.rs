//! `labfeed ingest FILE...` (being written).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::cli::Outcome;

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// ASTM or HL7 files; they are left where they are.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

pub fn run(config_path: &Path, args: &IngestArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Outcome> {
    let _ = (config_path, args, out, err);
    anyhow::bail!("ingest is being built")
}
