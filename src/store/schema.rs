//! Connection settings and schema migrations.
//!
//! The schema version lives in SQLite's `PRAGMA user_version`. Migration N
//! brings a database from version N-1 to N in one transaction, so a failed
//! migration leaves the previous version intact. A database newer than the
//! code is refused rather than guessed at. Migrations run with foreign keys
//! off (a table rebuild drops and renames referenced tables) and each step
//! checks `PRAGMA foreign_key_check` before it commits.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::store::StoreError;

/// `PRAGMA application_id` of a labfeed database ("LBFD").
pub const APPLICATION_ID: i64 = 0x4C42_4644;

/// How long a connection waits for another one's lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// One schema step.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The `user_version` after this migration.
    pub version: i64,
    pub description: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order; `MIGRATIONS[i].version == i + 1`.
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, description: "study database schema v1", sql: include_str!("schema_v1.sql") },
    Migration { version: 2, description: "withdrawn result versions", sql: include_str!("schema_v2.sql") },
    Migration {
        version: 3,
        description: "reversible decisions and MISSING_RESULT ids",
        sql: include_str!("schema_v3.sql"),
    },
    Migration {
        version: 4,
        description: "the offset chosen for a repeated local collection time",
        sql: include_str!("schema_v4.sql"),
    },
    Migration {
        version: 5,
        description: "a repeated local collection time read again",
        sql: include_str!("schema_v5.sql"),
    },
    Migration { version: 6, description: "accounts and data locks", sql: include_str!("schema_v6.sql") },
    Migration { version: 7, description: "keyed audit chain and vouched rows", sql: include_str!("schema_v7.sql") },
    Migration {
        version: 8,
        description: "the instance that received each arrival",
        sql: include_str!("schema_v8.sql"),
    },
    Migration {
        version: 9,
        description: "smaller indexes: none on observation slots, a hash prefix for raw contents",
        sql: include_str!("schema_v9.sql"),
    },
    Migration {
        version: 10,
        description: "compact hashes, times and outcomes, read back as before",
        sql: include_str!("schema_v10.sql"),
    },
];

/// Columns of schema 10 that hold what a generated column of the same table
/// reads back (`raw.sha256` from `raw.digest`, …): SQLite's storage, which
/// the PostgreSQL schema has no need of (it keeps the text columns).
pub const COMPACT_COLUMNS: &[(&str, &str)] = &[
    ("raw", "digest"),
    ("raw", "first_received_unix"),
    ("receipt", "received_unix"),
    ("processing", "processed_unix"),
    ("processing", "outcome_code"),
    ("observation", "collected_secs"),
    ("observation", "resulted_secs"),
    ("observation", "outcome_code"),
    ("result", "accepted_unix"),
];

/// The schema version this code reads and writes.
pub fn latest_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// Settings for a connection that writes. WAL is set here, outside any
/// migration transaction (it cannot change inside one).
pub(crate) fn configure_writer(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let open_err = |source| StoreError::Open { path: path.to_owned(), source };
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)).map_err(open_err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::NoWal { path: path.to_owned(), mode });
    }
    conn.pragma_update(None, "synchronous", "FULL").map_err(open_err)?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(open_err)?;
    Ok(())
}

/// Settings for a read-only connection.
pub(crate) fn configure_reader(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let open_err = |source| StoreError::Open { path: path.to_owned(), source };
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
    conn.pragma_update(None, "query_only", "ON").map_err(open_err)?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(open_err)?;
    Ok(())
}

/// `user_version` and `application_id`, and whether the file holds any schema objects.
fn header(conn: &Connection) -> rusqlite::Result<(i64, i64, bool)> {
    let version = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let app_id = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    let has_objects = conn.query_row("SELECT EXISTS (SELECT 1 FROM sqlite_schema)", [], |r| r.get(0))?;
    Ok((version, app_id, has_objects))
}

/// Refuse files that are not labfeed's or are newer than `known`.
fn check_header(path: &Path, version: i64, app_id: i64, has_objects: bool, known: i64) -> Result<(), StoreError> {
    if app_id != 0 && app_id != APPLICATION_ID {
        return Err(StoreError::NotLabfeed {
            path: path.to_owned(),
            why: format!("its application_id is {app_id:#x}, not labfeed's {APPLICATION_ID:#x}"),
        });
    }
    if version == 0 && has_objects {
        return Err(StoreError::NotLabfeed {
            path: path.to_owned(),
            why: "it already holds tables but has no labfeed schema version".to_owned(),
        });
    }
    if version > known {
        return Err(StoreError::TooNew { path: path.to_owned(), found: version, known });
    }
    Ok(())
}

/// Bring the database up to [`latest_version`]. Each step re-reads the
/// version inside its own `BEGIN IMMEDIATE` transaction, so two processes
/// opening a new file at once do not both run the same migration.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<i64, StoreError> {
    migrate_with(conn, path, MIGRATIONS)
}

fn migrate_with(conn: &mut Connection, path: &Path, migrations: &[Migration]) -> Result<i64, StoreError> {
    let known = migrations.len() as i64;
    let open_err = |source| StoreError::Open { path: path.to_owned(), source };
    let (version, app_id, has_objects) = header(conn).map_err(open_err)?;
    check_header(path, version, app_id, has_objects, known)?;
    // Table rebuilds (v3) drop and rename referenced tables: SQLite wants
    // foreign keys off for that, and they cannot change inside a
    // transaction. Each step checks them before it commits instead.
    let foreign_keys: bool = conn.pragma_query_value(None, "foreign_keys", |r| r.get(0)).map_err(open_err)?;
    let pending = migrations.iter().any(|m| m.version > version);
    if pending && foreign_keys {
        conn.pragma_update(None, "foreign_keys", false).map_err(open_err)?;
    }
    let result = run_migrations(conn, path, migrations, version, known);
    if pending && foreign_keys {
        conn.pragma_update(None, "foreign_keys", true).map_err(open_err)?;
    }
    result?;
    Ok(known)
}

fn run_migrations(
    conn: &mut Connection,
    path: &Path,
    migrations: &[Migration],
    version: i64,
    known: i64,
) -> Result<(), StoreError> {
    for migration in migrations.iter().filter(|m| m.version > version) {
        let migrate_err = |source| StoreError::Migrate { path: path.to_owned(), version: migration.version, source };
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(migrate_err)?;
        let (now, app_id, has_objects) = header(&tx).map_err(migrate_err)?;
        check_header(path, now, app_id, has_objects, known)?;
        if now >= migration.version {
            continue; // another process got there first
        }
        tx.execute_batch(migration.sql).map_err(migrate_err)?;
        let broken: Option<String> = tx
            .query_row(
                "SELECT \"table\" || ' row ' || rowid || ' -> ' || parent FROM pragma_foreign_key_check",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(migrate_err)?;
        if let Some(broken) = broken {
            return Err(StoreError::Invalid {
                what: "migration",
                problem: format!("step {} leaves a broken reference ({broken})", migration.version),
            });
        }
        tx.pragma_update(None, "application_id", APPLICATION_ID).map_err(migrate_err)?;
        tx.pragma_update(None, "user_version", migration.version).map_err(migrate_err)?;
        tx.commit().map_err(migrate_err)?;
    }
    Ok(())
}

/// For a read-only open: the database must be labfeed's and exactly current.
pub(crate) fn check_current(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let (version, app_id, has_objects) =
        header(conn).map_err(|source| StoreError::Open { path: path.to_owned(), source })?;
    check_header(path, version, app_id, has_objects, latest_version())?;
    if version < latest_version() {
        return Err(StoreError::NotMigrated { path: path.to_owned(), found: version, known: latest_version() });
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

    #[test]
    fn every_migration_runs_on_an_empty_database() {
        let mut conn = Connection::open_in_memory().unwrap();
        let v = migrate(&mut conn, Path::new(":memory:")).unwrap();
        assert_eq!(v, latest_version());
        let uv: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(uv, latest_version());
        let app: i64 = conn.pragma_query_value(None, "application_id", |r| r.get(0)).unwrap();
        assert_eq!(app, APPLICATION_ID);
    }

    #[test]
    fn a_failing_migration_leaves_the_previous_version_whole() {
        let steps = [
            Migration { version: 1, description: "one", sql: "CREATE TABLE a (x INTEGER) STRICT;" },
            Migration { version: 2, description: "two", sql: "CREATE TABLE b (x INTEGER) STRICT; SELECT nonsense(" },
        ];
        let mut conn = Connection::open_in_memory().unwrap();
        let err = migrate_with(&mut conn, Path::new("t.db"), &steps).unwrap_err();
        assert!(matches!(err, StoreError::Migrate { version: 2, .. }), "{err:?}");
        let uv: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(uv, 1);
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_schema ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(tables, ["a"], "table b of the failed step is not left behind");
        // Fixed, the step runs from where it stopped.
        let fixed = [steps[0], Migration { sql: "CREATE TABLE b (x INTEGER) STRICT;", ..steps[1] }];
        assert_eq!(migrate_with(&mut conn, Path::new("t.db"), &fixed).unwrap(), 2);
        let err = migrate_with(&mut conn, Path::new("t.db"), &fixed[..1]).unwrap_err();
        assert!(matches!(err, StoreError::TooNew { found: 2, known: 1, .. }), "{err:?}");
    }

    #[test]
    fn a_foreign_database_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x)").unwrap();
        let err = migrate(&mut conn, Path::new("other.db")).unwrap_err();
        assert!(matches!(err, StoreError::NotLabfeed { .. }), "{err}");
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "application_id", 42).unwrap();
        let err = migrate(&mut conn, Path::new("other.db")).unwrap_err();
        assert!(err.to_string().contains("application_id"), "{err}");
    }
}
