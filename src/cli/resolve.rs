//! `labfeed resolve ID (--assign PARTICIPANT/VISIT/MINUTE | --accept | --reject | --not-done | --reopen)
//! --reason TEXT [--by NAME]`, signed by the logged-in data manager (SPEC §8).
//!
//! A data manager's decision on one mismatch (see [`crate::ingest::resolve`]).
//! Exit 0 when recorded; exit 2, with nothing written, when the decision
//! cannot be taken (unknown or already resolved mismatch, a reopen of an open
//! one, an action that does not fit it, an assignment to a slot that does not
//! exist).

use std::io::Write;
use std::path::Path;

use clap::{ArgGroup, Args};

use crate::cli::login::{Login, plain_text, refused};
use crate::cli::{Outcome, load_config, open_store, require_database};
use crate::ingest::resolve::{Decision, ResolveError, resolve};
use crate::login::LoginError;
use crate::store::{MismatchId, Role};

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("decision").required(true).args(["assign", "accept", "reject", "not_done", "reopen"])))]
pub struct ResolveArgs {
    /// The mismatch's id, as in `report mismatches` (`12` or `#12`).
    #[arg(value_name = "ID")]
    pub id: String,

    /// The result belongs to this slot: PARTICIPANT/VISIT/MINUTE (e.g. U07/V4/30); every check runs again there.
    #[arg(long, value_name = "PARTICIPANT/VISIT/MINUTE")]
    pub assign: Option<String>,

    /// Accept the value as it is (a conflicting rerun replaces the value in its slot).
    #[arg(long)]
    pub accept: bool,

    /// Keep the value out of the study (an accepted, flagged value is withdrawn from its slot).
    #[arg(long)]
    pub reject: bool,

    /// For a MISSING_RESULT id: the sample was not drawn or not analysed (`export lb` says NOT DONE).
    #[arg(long)]
    pub not_done: bool,

    /// Undo the decision in force: the mismatch is open again and its slot as it was before.
    #[arg(long)]
    pub reopen: bool,

    /// Why (required; kept in the audit log).
    #[arg(long, value_name = "TEXT")]
    pub reason: String,

    /// On whose behalf, as a note beside the signature; the signer is always the logged-in account.
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
}

pub fn run(
    config_path: &Path,
    login: &Login,
    args: &ResolveArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<Outcome> {
    let usage = |err: &mut dyn Write, text: String| -> anyhow::Result<Outcome> {
        writeln!(err, "labfeed: resolve: {text}")?;
        Ok(Outcome::Usage)
    };
    let Some(id) = parse_id(&args.id) else {
        return usage(err, format!("{:?} is not a mismatch id (a number from `report mismatches`)", args.id));
    };
    let decision = match &args.assign {
        Some(target) => match parse_target(target) {
            Ok(d) => d,
            Err(why) => return usage(err, why),
        },
        None if args.accept => Decision::Accept,
        None if args.not_done => Decision::NotDone,
        None if args.reopen => Decision::Reopen,
        None => Decision::Reject,
    };
    let reason = match plain_text("--reason", &args.reason) {
        Ok(reason) => reason,
        Err(_) if args.reason.trim().is_empty() => {
            return usage(err, "--reason needs a text (why this decision)".to_owned());
        }
        Err(why) => return usage(err, why),
    };
    let on_behalf_of = match args.by.as_deref().map(|by| plain_text("--by", by)).transpose() {
        Ok(by) => by,
        Err(why) => return usage(err, why),
    };
    // A wrong storage.database must not create an empty study to resolve nothing in.
    let config = load_config(config_path)?;
    require_database(&config, config_path)?;
    let mut store = open_store(&config, config_path)?;
    let account = match login.account(&mut store, Role::DataManager, "resolve") {
        Ok(account) => account,
        Err(LoginError::Store(e)) => return Err(anyhow::Error::new(e).context("logging in")),
        Err(e) => {
            refused(err, "resolve", &e)?;
            return Ok(Outcome::Usage);
        }
    };
    let signature =
        crate::login::signature(&account, decision.meaning(), Some(reason.as_str()), on_behalf_of.as_deref());
    match resolve(&mut store, &config, MismatchId(id), &decision, &signature) {
        Ok(done) => {
            let verb = match decision {
                Decision::Reopen => "reopened",
                Decision::NotDone => "marked not done",
                _ => "resolved",
            };
            let by = crate::cli::user::signed_by(&signature);
            writeln!(out, "mismatch {} ({}) {verb} by {by}: {}", done.mismatch_id, done.code, done.summary)?;
            for (id, code, detail) in &done.raised {
                writeln!(out, "  new mismatch {id} ({code}): {detail}")?;
            }
            for id in &done.also_closed {
                match decision {
                    Decision::Reopen => {
                        writeln!(out, "  mismatch {id} closed with it (the undone decision raised it)")?
                    }
                    _ => writeln!(out, "  mismatch {id} closed with it (its value left the slot)")?,
                }
            }
            for id in &done.also_reopened {
                writeln!(out, "  mismatch {id} reopened with it (the undone decision had closed it)")?;
            }
            Ok(Outcome::Ok)
        }
        Err(ResolveError::Store(e)) => Err(anyhow::Error::new(e).context("recording the decision")),
        Err(e) => usage(err, e.to_string()),
    }
}

fn parse_id(text: &str) -> Option<i64> {
    text.trim().trim_start_matches('#').parse::<i64>().ok().filter(|n| *n > 0)
}

/// `PARTICIPANT/VISIT/MINUTE`, split from the right so the minute is last.
fn parse_target(text: &str) -> Result<Decision, String> {
    let bad = || format!("--assign {text:?}: expected PARTICIPANT/VISIT/MINUTE, e.g. U07/V4/30");
    let mut parts = text.rsplitn(3, '/');
    let (Some(minute), Some(visit), Some(participant)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let (participant, visit) = (participant.trim(), visit.trim());
    if participant.is_empty() || visit.is_empty() {
        return Err(bad());
    }
    let minute = minute.trim().parse::<i64>().map_err(|_| format!("{}: the minute is not a whole number", bad()))?;
    Ok(Decision::Assign { participant: participant.to_owned(), visit: visit.to_owned(), minute })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_targets_are_read_strictly() {
        assert_eq!(parse_id("12"), Some(12));
        assert_eq!(parse_id("#12"), Some(12));
        assert_eq!(parse_id("0"), None);
        assert_eq!(parse_id("x"), None);
        assert_eq!(
            parse_target("U07/V4/-10").unwrap(),
            Decision::Assign { participant: "U07".into(), visit: "V4".into(), minute: -10 }
        );
        assert!(parse_target("U07/V4").unwrap_err().contains("PARTICIPANT/VISIT/MINUTE"));
        assert!(parse_target("U07/V4/3O").unwrap_err().contains("whole number"));
        assert!(parse_target("/V4/30").is_err());
    }
}
