//! `labfeed verify-audit`: recompute the audit log's hash chain and say
//! whether it is intact (an extension of the contract, for monitors and
//! auditors).

use std::io::Write;
use std::path::Path;

use crate::cli::{Outcome, open_for_reading};

pub fn run(config_path: &Path, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    let (_, store) = open_for_reading(config_path)?;
    let report = store.verify_audit_chain()?;
    match (&report.broken, &report.head) {
        (None, Some((seq, hash))) => {
            writeln!(out, "audit chain intact: {} rows; head seq {seq}, hash {hash}", report.rows_checked)?;
            Ok(Outcome::Ok)
        }
        (None, None) => {
            writeln!(out, "audit chain intact: the log is empty")?;
            Ok(Outcome::Ok)
        }
        (Some(broken), _) => {
            writeln!(out, "audit chain BROKEN after {} rows: {broken}", report.rows_checked)?;
            Ok(Outcome::Rejected)
        }
    }
}
