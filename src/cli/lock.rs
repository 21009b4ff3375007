//! `labfeed lock|unlock (--visit P/V | --participant P | --study) --reason TEXT`:
//! the data lock (SPEC §8), signed by a data manager.

use std::io::Write;
use std::path::Path;

use clap::{ArgGroup, Args};

use crate::cli::login::{Login, plain_text, refused};
use crate::cli::{Outcome, load_config, open_store, require_database};
use crate::login::LoginError;
use crate::store::{LockScope, Role, StoreError};

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("scope").required(true).args(["visit", "participant", "study"])))]
pub struct LockArgs {
    /// One visit: PARTICIPANT/VISIT (e.g. U07/V24).
    #[arg(long, value_name = "PARTICIPANT/VISIT")]
    pub visit: Option<String>,
    /// Every visit of one participant.
    #[arg(long, value_name = "PARTICIPANT")]
    pub participant: Option<String>,
    /// The whole study.
    #[arg(long)]
    pub study: bool,
    /// Why (required; kept with the signature).
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
}

/// Lock (`lock`) or unlock the scope `args` names.
pub fn run(
    config_path: &Path,
    login: &Login,
    args: &LockArgs,
    lock: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<Outcome> {
    let command = if lock { "lock" } else { "unlock" };
    let usage = |err: &mut dyn Write, text: String| -> anyhow::Result<Outcome> {
        writeln!(err, "labfeed: {command}: {text}")?;
        Ok(Outcome::Usage)
    };
    let scope = match (&args.visit, &args.participant) {
        (Some(v), _) => match v.split_once('/').map(|(p, v)| (p.trim(), v.trim())) {
            Some((p, v)) if !p.is_empty() && !v.is_empty() && !v.contains('/') => {
                LockScope::Visit { participant: p.to_owned(), visit: v.to_owned() }
            }
            _ => return usage(err, format!("--visit {v:?}: expected PARTICIPANT/VISIT, e.g. U07/V24")),
        },
        (None, Some(p)) if !p.trim().is_empty() => LockScope::Participant(p.trim().to_owned()),
        (None, Some(_)) => return usage(err, "--participant needs a participant code".to_owned()),
        (None, None) => LockScope::Study,
    };
    let reason = match plain_text("--reason", &args.reason) {
        Ok(reason) => reason,
        Err(why) => return usage(err, why),
    };
    let config = load_config(config_path)?;
    require_database(&config, config_path)?;
    let mut store = open_store(&config, config_path)?;
    // What is to be locked must exist; what is to be unlocked must be locked itself.
    if let Some(why) = crate::ingest::lock::refusal(&store, &scope, lock)? {
        return usage(err, format!("{why}; nothing changed"));
    }
    let account = match login.account(&mut store, Role::DataManager, command) {
        Ok(account) => account,
        Err(LoginError::Store(e)) => return Err(anyhow::Error::new(e).context("logging in")),
        Err(e) => {
            refused(err, command, &e)?;
            return Ok(Outcome::Usage);
        }
    };
    let signature = crate::login::signature(&account, command, Some(&reason), None);
    crate::ingest::lock::set_lock(&mut store, &signature, &scope, lock, &reason).map_err(|e: StoreError| {
        anyhow::Error::new(e).context(format!("{command}: recording it in the study database"))
    })?;
    let done = if lock { "locked" } else { "unlocked" };
    writeln!(out, "{scope} {done}, signed by {}: {reason}", crate::cli::user::signed_by(&signature))?;
    Ok(Outcome::Ok)
}
