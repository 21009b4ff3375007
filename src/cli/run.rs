//! `labfeed run [--once]`: the daemon (see `crate::daemon`).

use std::path::Path;

use clap::Args;

use crate::cli::{Outcome, ensure_database_dir, load_config, open_store};
use crate::daemon::Finished;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Drain the inbox once (files already there, once complete), then exit.
    #[arg(long)]
    pub once: bool,
}

pub fn run(config_path: &Path, args: &RunArgs) -> anyhow::Result<Outcome> {
    let config = load_config(config_path)?;
    crate::logging::init(&config.logging.level)?;
    ensure_database_dir(&config)?;
    let finished = crate::daemon::run(config, |config| open_store(config, &config.path), args.once)?;
    Ok(match finished {
        Finished::Clean => Outcome::Ok,
        Finished::SomeQuarantined => Outcome::Rejected,
        Finished::CommitsFailed => Outcome::Usage,
    })
}
