//! What can go wrong with the study database, said in plain words.

use std::path::PathBuf;

use rusqlite::ErrorCode;

use crate::store::types::MismatchId;

/// An error from the store. Errors about the database file carry its path.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file could not be opened or configured (missing directory, not a
    /// database, no permission, WAL not available).
    #[error("cannot open the database {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    /// The file system does not support write-ahead logging (WAL), which
    /// labfeed needs so reports can read while the daemon writes.
    #[error("cannot use write-ahead logging for the database {}: journal_mode stayed {mode:?}", path.display())]
    NoWal { path: PathBuf, mode: String },

    /// The file is an SQLite database, but not one of labfeed's.
    #[error("{} is not a labfeed database: {why}", path.display())]
    NotLabfeed { path: PathBuf, why: String },

    /// The file was written by a newer labfeed; this one does not know its schema.
    #[error(
        "the database {} has schema version {found}, newer than this labfeed knows (up to {known}); \
         use the newer labfeed that wrote it",
        path.display()
    )]
    TooNew { path: PathBuf, found: i64, known: i64 },

    /// A read-only open found a database that has not been brought up to date yet.
    #[error(
        "the database {} has schema version {found}, older than this labfeed needs ({known}); \
         open it once for writing (e.g. `labfeed run`) to migrate it",
        path.display()
    )]
    NotMigrated { path: PathBuf, found: i64, known: i64 },

    /// A migration failed; the database was left at the previous version.
    #[error("cannot migrate the database {} to schema version {version}: {source}", path.display())]
    Migrate {
        path: PathBuf,
        version: i64,
        #[source]
        source: rusqlite::Error,
    },

    /// A write was attempted on a store opened with `Store::open_read_only`.
    #[error("the database {} is open read-only; it cannot be written", path.display())]
    ReadOnly { path: PathBuf },

    /// Another connection held the write lock for longer than the busy timeout.
    #[error("the database is busy: another process held it for more than 5 seconds ({message})")]
    Busy { message: String },

    /// The database refused the change: an append-only trigger, a CHECK, a
    /// UNIQUE or a FOREIGN KEY constraint. `message` is SQLite's own text.
    #[error("constraint violation: {message}")]
    Constraint { message: String },

    /// A value handed to the store is not acceptable (NaN, empty actor, …).
    #[error("invalid {what}: {problem}")]
    Invalid { what: &'static str, problem: String },

    /// A row the operation refers to does not exist.
    #[error("{entity} {key} does not exist")]
    NotFound { entity: &'static str, key: String },

    /// A data manager's decision was already recorded for this mismatch.
    #[error("mismatch {0} is already resolved")]
    AlreadyResolved(MismatchId),

    /// A stored value could not be read back as the type it should have.
    #[error("unexpected value in {table}.{column}: {value:?}")]
    Corrupt { table: &'static str, column: &'static str, value: String },

    /// Any other SQLite error.
    #[error("database error: {0}")]
    Sqlite(#[source] rusqlite::Error),

    /// The PostgreSQL server cannot be reached, or the connection was lost.
    #[error("the database {target} is unreachable: {why}")]
    Unreachable { target: String, why: String },

    /// Any other PostgreSQL error.
    #[error(transparent)]
    Pg(#[from] crate::store::postgres::PgError),
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> StoreError {
        match &err {
            rusqlite::Error::SqliteFailure(e, message) => match e.code {
                ErrorCode::ConstraintViolation => {
                    StoreError::Constraint { message: message.clone().unwrap_or_else(|| e.to_string()) }
                }
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                    StoreError::Busy { message: message.clone().unwrap_or_else(|| e.to_string()) }
                }
                _ => StoreError::Sqlite(err),
            },
            _ => StoreError::Sqlite(err),
        }
    }
}

impl StoreError {
    /// The SQLite message of a constraint violation (e.g. an append-only
    /// trigger's text), if this is one.
    pub fn constraint_message(&self) -> Option<&str> {
        match self {
            StoreError::Constraint { message } => Some(message),
            _ => None,
        }
    }

    /// The PostgreSQL server is away: worth trying again later.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, StoreError::Unreachable { .. } | StoreError::Pg(crate::store::postgres::PgError::Connect { .. }))
    }

    /// The database refused a write because it (or its file system) is read-only.
    pub fn is_read_only(&self) -> bool {
        match self {
            StoreError::ReadOnly { .. } => true,
            StoreError::Sqlite(e) => e.sqlite_error_code() == Some(ErrorCode::ReadOnly),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlites_read_only_refusal_is_read_only() {
        let refused = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY),
            Some("attempt to write a readonly database".to_owned()),
        );
        assert!(StoreError::from(refused).is_read_only());
        let busy = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY), None);
        assert!(!StoreError::from(busy).is_read_only());
    }
}
