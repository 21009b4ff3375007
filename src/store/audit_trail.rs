//! The audit trail as an inspector reads it (`report audit`): the rows in
//! order, filtered by time and actor, handed over one at a time so that a
//! trail of millions of rows never sits in memory.

use crate::store::audit::{AUDIT_COLUMNS, AuditEntry};
use crate::store::sql::params;
use crate::store::{Reader, StoreError};

/// Which rows [`Reader::each_audit_row`] gives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Rows at or after this UTC time (`2026-03-02T00:00:00Z`).
    pub since: Option<String>,
    /// Rows written by this actor (an account, or labfeed itself).
    pub actor: Option<String>,
    /// Rows before this UTC time (the console's "until").
    pub before: Option<String>,
}

impl Reader<'_> {
    /// Call `f` with every audit row `filter` lets through, oldest first.
    /// A transaction's rows share its time and actor, so neither filter
    /// cuts one in two.
    pub fn each_audit_row<E: From<StoreError>>(
        &self,
        filter: &AuditFilter,
        mut f: impl FnMut(AuditEntry) -> Result<(), E>,
    ) -> Result<(), E> {
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log
             WHERE (CAST(?1 AS TEXT) IS NULL OR at >= ?1) AND (CAST(?2 AS TEXT) IS NULL OR actor = ?2)
               AND (CAST(?3 AS TEXT) IS NULL OR at < ?3) ORDER BY seq"
        );
        self.db().query_each(&sql, params![filter.since, filter.actor, filter.before], |row| -> Result<bool, E> {
            f(AuditEntry::from_row(row)?)?;
            Ok(true)
        })?;
        Ok(())
    }

    /// At most `limit` rows that `filter` lets through, from `seq` `from` on,
    /// oldest first: one page of the console, read with a LIMIT so that a
    /// trail of millions of rows is never sent whole.
    pub fn audit_batch(&self, filter: &AuditFilter, from: i64, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log
             WHERE (CAST(?1 AS TEXT) IS NULL OR at >= ?1) AND (CAST(?2 AS TEXT) IS NULL OR actor = ?2)
               AND (CAST(?3 AS TEXT) IS NULL OR at < ?3) AND seq >= ?4
             ORDER BY seq LIMIT ?5"
        );
        self.db().query_all(&sql, params![filter.since, filter.actor, filter.before, from, limit], AuditEntry::from_row)
    }

    /// The rows before `seq` of the transaction `seq` is in (its `sign` row
    /// first, if it has one), oldest first: what a page that starts inside
    /// a transaction needs to know who signed it. Rows are read back from
    /// `seq`, a few at a time, only while they share its time and actor.
    pub fn audit_transaction_before(&self, seq: i64) -> Result<Vec<AuditEntry>, StoreError> {
        const STEP: i64 = 64;
        let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq = ?1");
        let Some(first) = self.db().query_opt(&sql, params![seq], AuditEntry::from_row)? else {
            return Ok(Vec::new());
        };
        let mut rows = Vec::new();
        if first.action == "sign" {
            return Ok(rows);
        }
        let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2");
        let mut below = seq;
        'back: loop {
            let batch: Vec<AuditEntry> = self.db().query_all(&sql, params![below, STEP], AuditEntry::from_row)?;
            let Some(last) = batch.last() else { break };
            below = last.seq;
            let full = batch.len() as i64 == STEP;
            for row in batch {
                if row.at != first.at || row.actor != first.actor {
                    break 'back;
                }
                let sign = row.action == "sign";
                rows.push(row);
                if sign {
                    break 'back;
                }
            }
            if !full {
                break;
            }
        }
        rows.reverse();
        Ok(rows)
    }
}
