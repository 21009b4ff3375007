//! Versioned migrations on PostgreSQL.
//!
//! Each applied version is a row of [`VERSION_TABLE`]. A step runs in one
//! transaction (DDL is transactional here) under an advisory lock, and
//! re-reads the version once it holds the lock: two daemons starting at
//! once on a new database run each step once. A database already current
//! needs no lock and no DDL, so the daemon role (no CREATE) opens it.

use ::postgres::{Client, Transaction};

use super::{LOCK_CLASS, PgError, client_target};
use crate::store::read::utc_text;

/// One schema step.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The version after this step.
    pub version: i64,
    pub description: &'static str,
    pub sql: &'static str,
}

/// Every step, in order; `MIGRATIONS[i].version == i + 1`.
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, description: "the study schema (SQLite schema 7)", sql: include_str!("schema_pg_v1.sql") },
    Migration {
        version: 2,
        description: "the instance that received each arrival (SQLite schema 8)",
        sql: include_str!("schema_pg_v2.sql"),
    },
    Migration {
        version: 3,
        description: "no slot index on observations (SQLite schema 9)",
        sql: include_str!("schema_pg_v3.sql"),
    },
];

/// The table that records which steps ran.
pub const VERSION_TABLE: &str = "labfeed_schema";

/// The second key of the migration lock.
const MIGRATE_LOCK: i32 = 1;

/// The schema version this code reads and writes.
pub fn latest_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// The version recorded in the database; `None` when it has no labfeed schema.
pub fn schema_version(client: &mut Client) -> Result<Option<i64>, PgError> {
    let target = client_target(client);
    let failed = |error| PgError::Query { target: target.clone(), what: "reading the schema version", error };
    let mut tx = client.transaction().map_err(failed)?;
    let version = version_in(&mut tx, &target)?;
    tx.commit().map_err(failed)?;
    Ok(version)
}

fn version_in(tx: &mut Transaction<'_>, target: &str) -> Result<Option<i64>, PgError> {
    let failed = |error| PgError::Query { target: target.to_owned(), what: "reading the schema version", error };
    let exists: bool = tx.query_one("SELECT to_regclass($1) IS NOT NULL", &[&VERSION_TABLE]).map_err(failed)?.get(0);
    if !exists {
        return Ok(None);
    }
    let row = tx.query_one(&format!("SELECT coalesce(max(version), 0) FROM {VERSION_TABLE}"), &[]).map_err(failed)?;
    Ok(Some(row.get(0)))
}

/// Bring the database up to [`latest_version`]; returns it.
pub fn migrate(client: &mut Client) -> Result<i64, PgError> {
    migrate_with(client, MIGRATIONS)
}

fn migrate_with(client: &mut Client, migrations: &[Migration]) -> Result<i64, PgError> {
    let known = migrations.len() as i64;
    let target = client_target(client);
    let now = schema_version(client)?.unwrap_or(0);
    if now > known {
        return Err(PgError::TooNew { target, found: now, known });
    }
    for m in migrations.iter().filter(|m| m.version > now) {
        let failed = |error| PgError::Migrate { target: target.clone(), version: m.version, error };
        let mut tx = client.transaction().map_err(failed)?;
        tx.execute("SELECT pg_advisory_xact_lock($1, $2)", &[&LOCK_CLASS, &MIGRATE_LOCK]).map_err(failed)?;
        let version = match version_in(&mut tx, &target)? {
            Some(v) => v,
            None => {
                refuse_foreign(&mut tx, &target)?;
                tx.batch_execute(&format!(
                    "CREATE TABLE {VERSION_TABLE} (
                         version     BIGINT PRIMARY KEY,
                         description TEXT NOT NULL,
                         applied_at  TEXT NOT NULL,
                         applied_by  TEXT NOT NULL DEFAULT current_user
                     )"
                ))
                .map_err(failed)?;
                0
            }
        };
        if version > known {
            return Err(PgError::TooNew { target, found: version, known });
        }
        if version >= m.version {
            continue; // another daemon got there first; dropping `tx` rolls back
        }
        tx.batch_execute(m.sql).map_err(failed)?;
        let at = utc_text(jiff::Timestamp::now());
        tx.execute(
            &format!("INSERT INTO {VERSION_TABLE} (version, description, applied_at) VALUES ($1, $2, $3)"),
            &[&m.version, &m.description, &at],
        )
        .map_err(failed)?;
        tx.commit().map_err(failed)?;
    }
    Ok(known)
}

/// A schema that already holds tables but no labfeed version is someone else's.
fn refuse_foreign(tx: &mut Transaction<'_>, target: &str) -> Result<(), PgError> {
    let row = tx
        .query_one(
            "SELECT count(*), min(c.relname::text) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'v', 'm', 'p', 'f')",
            &[],
        )
        .map_err(|error| PgError::Query { target: target.to_owned(), what: "listing tables", error })?;
    let count: i64 = row.get(0);
    if count > 0 {
        let first: Option<String> = row.get(1);
        return Err(PgError::NotLabfeed {
            target: target.to_owned(),
            why: format!(
                "its schema already holds {count} tables or views (such as {}) but no {VERSION_TABLE}",
                first.unwrap_or_default()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "{}", m.description);
            assert!(!m.sql.trim().is_empty());
        }
    }
}
