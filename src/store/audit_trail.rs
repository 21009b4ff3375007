//! The audit trail as an inspector reads it (`report audit`): the rows in
//! order, filtered by time and actor, handed over one at a time so that a
//! trail of millions of rows never sits in memory.

use rusqlite::params;

use crate::store::{Reader, StoreError};

/// One audit row, without its chain hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub seq: i64,
    /// UTC RFC 3339 at whole seconds: text order is time order.
    pub at: String,
    pub actor: String,
    pub action: String,
    pub entity: String,
    pub entity_id: Option<String>,
    /// A JSON object.
    pub detail: String,
}

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
        mut f: impl FnMut(AuditRow) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut stmt = self
            .connection()
            .prepare(
                "SELECT seq, at, actor, action, entity, entity_id, detail FROM audit_log
                 WHERE (?1 IS NULL OR at >= ?1) AND (?2 IS NULL OR actor = ?2) ORDER BY seq",
            )
            .map_err(StoreError::from)?;
        let mut rows = stmt.query(params![filter.since, filter.actor]).map_err(StoreError::from)?;
        while let Some(row) = rows.next().map_err(StoreError::from)? {
            let read = || -> rusqlite::Result<AuditRow> {
                Ok(AuditRow {
                    seq: row.get(0)?,
                    at: row.get(1)?,
                    actor: row.get(2)?,
                    action: row.get(3)?,
                    entity: row.get(4)?,
                    entity_id: row.get(5)?,
                    detail: row.get(6)?,
                })
            };
            f(read().map_err(StoreError::from)?)?;
        }
        Ok(())
    }
}
