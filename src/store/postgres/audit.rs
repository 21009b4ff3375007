//! Appending to the audit chain with several writers (SPEC §9, §10).
//!
//! On SQLite one writer at a time is the file's rule. Here several daemons
//! write at once, and two appenders reading the same head would both claim
//! its successor. So an append first takes a transaction-scoped advisory
//! lock on the chain: the next appender waits until this transaction ends,
//! then reads the head it left. An advisory lock needs no privilege, unlike
//! `LOCK TABLE` or a head row kept by UPDATE, which the daemon role lacks.
//!
//! Held from a transaction's first append to its commit: labfeed's own
//! transactions append once, at the end (the `commit` row), so they wait
//! for each other only that long. The rows of one transaction are
//! consecutive in the chain.

use ::postgres::Transaction;
use serde_json::Value;

use super::{LOCK_CLASS, PgError};
use crate::store::audit::{AuditKey, GENESIS_HASH, canonical_json, row_hash};

/// The second key of the chain lock.
const CHAIN_LOCK: i32 = 2;

fn query_err(what: &'static str) -> impl FnOnce(::postgres::Error) -> PgError {
    move |error| PgError::Query { target: "the PostgreSQL database".to_owned(), what, error }
}

/// Take the chain lock for the rest of `tx` (again is a no-op). The
/// transaction must be READ COMMITTED, so that each statement after the
/// wait sees what the previous holder committed; a snapshot taken before
/// the wait would not, and the append would fail on a taken seq.
pub fn lock_audit_chain(tx: &mut Transaction<'_>) -> Result<(), PgError> {
    let row = tx
        .query_one(
            "SELECT current_setting('transaction_isolation'), pg_advisory_xact_lock($1, $2)::text",
            &[&LOCK_CLASS, &CHAIN_LOCK],
        )
        .map_err(query_err("locking the audit chain"))?;
    let isolation: String = row.get(0);
    if isolation != "read committed" {
        return Err(PgError::Isolation { target: "the PostgreSQL database".to_owned(), isolation });
    }
    Ok(())
}

/// Append one row to the chain in `tx`, keyed when `key` is given, under
/// the chain lock. Returns its seq and hash. The hash is the one SQLite's
/// chain uses, so `verify-audit` checks both alike.
#[allow(clippy::too_many_arguments)]
pub fn append_audit(
    tx: &mut Transaction<'_>,
    key: Option<&AuditKey>,
    at: &str,
    actor: &str,
    action: &str,
    entity: &str,
    entity_id: Option<&str>,
    detail: &Value,
) -> Result<(i64, String), PgError> {
    lock_audit_chain(tx)?;
    let detail = canonical_json(detail);
    let last = tx
        .query_opt("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1", &[])
        .map_err(query_err("reading the audit chain's head"))?;
    let (seq, prev_hash) = match last {
        Some(row) => (row.get::<_, i64>(0) + 1, row.get::<_, String>(1)),
        None => (1, GENESIS_HASH.to_owned()),
    };
    let hash = row_hash(key, &prev_hash, seq, at, actor, action, entity, entity_id, &detail);
    let keyed = i64::from(key.is_some());
    tx.execute(
        "INSERT INTO audit_log (seq, at, actor, action, entity, entity_id, detail, prev_hash, hash, keyed)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &[&seq, &at, &actor, &action, &entity, &entity_id, &detail, &prev_hash, &hash, &keyed],
    )
    .map_err(query_err("appending to the audit chain"))?;
    Ok((seq, hash))
}
