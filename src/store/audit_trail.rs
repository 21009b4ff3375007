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
             WHERE (CAST(?1 AS TEXT) IS NULL OR at >= ?1) AND (CAST(?2 AS TEXT) IS NULL OR actor = ?2) ORDER BY seq"
        );
        self.db().query_each(&sql, params![filter.since, filter.actor], |row| -> Result<bool, E> {
            f(AuditEntry::from_row(row)?)?;
            Ok(true)
        })?;
        Ok(())
    }
}
