//! `labfeed verify-audit`: can the record be trusted? (SPEC §9.) Exit 0 when
//! everything checks out, 1 naming the first problem.

use std::io::Write;
use std::path::Path;

use crate::cli::{Outcome, audit_settings, open_for_reading};
use crate::store::head;

pub fn run(config_path: &Path, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    let (config, store) = open_for_reading(config_path)?;
    let audit = audit_settings(&config)?;
    let head_file = audit.head_file.clone().unwrap_or_else(|| head::default_path(&config.storage.database));
    let found = store.verify_integrity(audit.key.as_ref(), &head_file)?;
    if let Some(problem) = &found.problem {
        writeln!(out, "audit NOT verified: {problem}")?;
        writeln!(out, "(checked {} rows of the chain before it)", found.chain.rows_checked)?;
        return Ok(Outcome::Rejected);
    }
    let chain = &found.chain;
    let keyed = match (chain.keyed_from, &audit.key) {
        (Some(seq), Some(_)) => format!(", keyed from seq {seq} on"),
        (Some(seq), None) => {
            format!(", keyed from seq {seq} on ({} keyed rows not checked: no key)", chain.unchecked_keyed)
        }
        (None, _) => String::new(),
    };
    match &chain.head {
        Some((seq, hash)) => {
            writeln!(out, "audit chain intact: {} rows{keyed}; head seq {seq}, hash {hash}", chain.rows_checked)?
        }
        None => writeln!(out, "audit chain intact: the log is empty")?,
    }
    match &found.head {
        Some(h) => writeln!(out, "it reaches the head recorded in {} (seq {}, {})", head_file.display(), h.seq, h.at)?,
        None => writeln!(out, "no head recorded in {} yet", head_file.display())?,
    }
    writeln!(
        out,
        "{} rows of the study tables match what the chain vouches for; none is missing or unaccounted for",
        found.rows_checked
    )?;
    writeln!(out, "the schema and its triggers are the ones labfeed created")?;
    if audit.key.is_none() {
        writeln!(
            out,
            "no audit key is configured ([audit] key_file): someone with write access to the database could \
             rewrite the chain and the tables together; that cannot be ruled out"
        )?;
    } else if chain.keyed_from.is_none() && chain.head.is_some() {
        writeln!(out, "the chain is not keyed yet: nothing was written since the key was configured")?;
    }
    Ok(Outcome::Ok)
}
