//! `labfeed run [--once]`: the daemon (see `crate::daemon`).

use std::path::Path;

use clap::Args;

use crate::cli::{Outcome, load_config};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Drain the inbox once (files already there, once complete), then exit.
    #[arg(long)]
    pub once: bool,
}

pub fn run(config_path: &Path, args: &RunArgs) -> anyhow::Result<Outcome> {
    let config = load_config(config_path)?;
    crate::logging::init(&config.logging.level)?;
    crate::daemon::run(config, args.once)
}
