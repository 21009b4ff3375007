//! The study database: persistence primitives over `schema_v1.sql` and the
//! migrations after it (`schema_v2.sql`, `schema_v3.sql`).
//!
//! - [`Store::open`] creates or opens the file (WAL, `synchronous=FULL`,
//!   foreign keys on, 5 s busy timeout) and migrates it;
//!   [`Store::open_read_only`] is for reports and status while the daemon runs.
//! - [`Store::write`] runs a closure inside `BEGIN IMMEDIATE … COMMIT`: one
//!   file (or one message) is one transaction, rolled back on error or panic.
//!   The closure gets a [`Tx`] with the insert/upsert primitives; every one
//!   of them appends a hash-chained [`audit_log`](audit) row in the same
//!   transaction, so a rollback leaves no orphan audit rows.
//! - Queries live on [`Reader`], reachable from a [`Tx`] (it derefs to one) and
//!   from [`Store::read`] (a consistent snapshot).
//!
//! Invariants, stated as absences:
//! - The store never updates or deletes a row of raw, receipt, processing,
//!   message, observation, result, mismatch, resolution, resolution_effect
//!   or audit_log (and triggers refuse it from anyone else); participant,
//!   visit and sample rows
//!   change only through the upserts, which audit old and new values.
//! - No allocation, arm, kit or randomisation data and no names, birth dates,
//!   addresses or phone numbers have a column; raw copies are stored masked.
//! - No write happens outside a `BEGIN IMMEDIATE` transaction.

mod account;
mod audit;
mod audit_trail;
mod correction;
mod error;
pub mod head;
mod integrity;
mod lock;
mod mask;
pub mod postgres;
mod read;
mod schema;
pub(crate) mod sql;
mod types;
pub mod vouch;
mod write;

use std::path::{Path, PathBuf};

use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior};
use serde_json::json;

pub use account::{Account, Role, Signature};
pub use audit::{
    AuditEntry, AuditKey, ChainBreak, ChainProblem, ChainReport, GENESIS_HASH, MIN_KEY_BYTES, canonical_json,
    entry_hash, hex, keyed_entry_hash, sha256_hex, verify_audit_chain,
};
pub use audit_trail::AuditFilter;
pub use correction::ObservationSource;
pub use error::StoreError;
pub use integrity::Integrity;
pub use lock::{Lock, LockScope};
pub use mask::{MASK_BYTE, mask};
pub use read::Reader;
pub use schema::{APPLICATION_ID, BUSY_TIMEOUT, MIGRATIONS, Migration, latest_version};
pub use types::*;
pub use write::Tx;

/// The mode of the files labfeed creates for a study: the database, its
/// `-wal` and `-shm`, and the audit head file. Owner and group read it;
/// nobody else may, whatever the umask.
pub const FILE_MODE: u32 = 0o640;

/// Create a missing database file as an empty one with [`FILE_MODE`]:
/// SQLite then gives `-wal` and `-shm` the database's mode, also against the
/// umask. An existing file keeps its mode (a stricter one set by an
/// administrator stays). Errors are left for SQLite's open to report.
fn create_private(path: &Path) {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let created = std::fs::OpenOptions::new().write(true).create_new(true).mode(FILE_MODE).open(path);
    // `mode` is masked by the umask; set it outright on the file just made.
    if let Ok(file) = created {
        let _ = file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE));
    }
}

/// The actor recorded for changes labfeed makes by itself.
pub const SYSTEM_ACTOR: &str = "labfeed";

/// How a connection is set up (see [`Store::settings`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `WAL` for a labfeed database.
    pub journal_mode: String,
    /// `FULL` for a writer: a commit survives power loss.
    pub synchronous: String,
    pub foreign_keys: bool,
    pub busy_timeout_ms: i64,
}

/// How the audit chain of a store is kept (SPEC §9).
#[derive(Debug, Clone, Default)]
pub struct AuditSettings {
    /// Keys the chain and the head file (`[audit] key_file`).
    pub key: Option<AuditKey>,
    /// Where the head is recorded (`[audit] head_file`); default beside the database.
    pub head_file: Option<PathBuf>,
}

/// An open study database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
    read_only: bool,
    key: Option<AuditKey>,
    head_file: PathBuf,
    /// The rows the open transaction writes (the connection's update hook).
    written: Arc<Mutex<vouch::Written>>,
}

impl Store {
    /// Create or open the database at `path` for reading and writing, and
    /// migrate it to the latest schema. The directory must exist.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        Store::open_with(path, AuditSettings::default())
    }

    /// [`Store::open`] with an audit key and head file. A database from
    /// before schema 7 gets one audited row that vouches for every row it
    /// holds; a chain that was not keyed is continued keyed from an audited
    /// row that says so.
    pub fn open_with(path: impl AsRef<Path>, audit: AuditSettings) -> Result<Store, StoreError> {
        let path = path.as_ref().to_owned();
        create_private(&path);
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(&path, flags)
            .map_err(|source| StoreError::Open { path: path.clone(), source })?;
        schema::configure_writer(&conn, &path)?;
        let before: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|source| StoreError::Open { path: path.clone(), source })?;
        schema::migrate(&mut conn, &path)?;
        let written = Arc::new(Mutex::new(vouch::Written::default()));
        let log = Arc::clone(&written);
        conn.update_hook(Some(move |_: rusqlite::hooks::Action, _: &str, table: &str, rowid: i64| {
            if let (Some(v), Ok(mut w)) = (vouch::vouched(table), log.lock()) {
                w.add(v.table, rowid);
            }
        }))
        .map_err(|source| StoreError::Open { path: path.clone(), source })?;
        let head_file = audit.head_file.unwrap_or_else(|| head::default_path(&path));
        let mut store = Store { conn, path, read_only: false, key: audit.key, head_file, written };
        store.upgrade_audit(before)?;
        Ok(store)
    }

    /// The audited points where the chain changed: every row of a database
    /// from before schema 7 vouched for at once, and the first keyed row.
    fn upgrade_audit(&mut self, schema_before: i64) -> Result<(), StoreError> {
        let last: Option<bool> = self
            .conn
            .query_row("SELECT keyed FROM audit_log ORDER BY seq DESC LIMIT 1", [], |r| r.get(0))
            .optional()?;
        let vouch_all = (1..7).contains(&schema_before) && last.is_some();
        let start_keyed = self.key.is_some() && last == Some(false);
        if !vouch_all && !start_keyed {
            return Ok(());
        }
        self.write(|tx| {
            if start_keyed {
                tx.note("key in use", "audit_log", json!({ "keyed": "this row and every later row" }))?;
            }
            if vouch_all {
                let rows = tx.vouch_every_row()?;
                tx.note("vouch existing rows", "audit_log", json!({ "schema_before": schema_before, "rows": rows }))?;
            }
            Ok(())
        })
    }

    /// Open an existing, migrated database for reading only (reports, status,
    /// exports while the daemon writes). Never creates or migrates.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref().to_owned();
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags)
            .map_err(|source| StoreError::Open { path: path.clone(), source })?;
        schema::configure_reader(&conn, &path)?;
        schema::check_current(&conn, &path)?;
        let head_file = head::default_path(&path);
        let written = Arc::new(Mutex::new(vouch::Written::default()));
        Ok(Store { conn, path, read_only: true, key: None, head_file, written })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Prove a commit reaches the disk: rewrite `user_version` with its own
    /// value in a write transaction. That dirties the header page, so SQLite
    /// takes the write lock, appends to the WAL and syncs, as a real commit
    /// does (an empty transaction writes nothing and proves nothing).
    pub fn prove_writable(&mut self) -> Result<(), StoreError> {
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        Ok(())
    }

    /// The schema version recorded in the file (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self.conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    /// The connection's durability settings, for `status` and tests.
    pub fn settings(&self) -> Result<Settings, StoreError> {
        let get = |name: &str| -> Result<String, StoreError> {
            Ok(self.conn.pragma_query_value(None, name, |r| r.get::<_, rusqlite::types::Value>(0)).map(
                |v| match v {
                    rusqlite::types::Value::Integer(i) => i.to_string(),
                    rusqlite::types::Value::Text(t) => t,
                    other => format!("{other:?}"),
                },
            )?)
        };
        let synchronous = match get("synchronous")?.as_str() {
            "0" => "OFF".to_owned(),
            "1" => "NORMAL".to_owned(),
            "2" => "FULL".to_owned(),
            "3" => "EXTRA".to_owned(),
            other => other.to_owned(),
        };
        Ok(Settings {
            journal_mode: get("journal_mode")?.to_ascii_uppercase(),
            synchronous,
            foreign_keys: get("foreign_keys")? == "1",
            busy_timeout_ms: get("busy_timeout")?.parse().unwrap_or(0),
        })
    }

    /// Run `f` in one write transaction as labfeed itself
    /// ([`SYSTEM_ACTOR`]). Commits if `f` returns `Ok`, rolls back otherwise.
    pub fn write<T>(&mut self, f: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.write_with(SYSTEM_ACTOR, f)
    }

    /// Run `f` in one write transaction on behalf of `actor` (a data
    /// manager's name): audit rows, `accepted_by` and `resolved_by` say so.
    pub fn write_as<T>(
        &mut self,
        actor: &str,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.write_with(actor, f)
    }

    /// Run `f` in one write transaction signed by a person (SPEC §8): the
    /// signature is its first audit row (none if nothing changes), the
    /// account its actor.
    pub fn write_signed<T, E: From<StoreError>>(
        &mut self,
        signature: &Signature,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.write_with(&signature.account, |tx| {
            tx.set_signature(signature);
            f(tx)
        })
    }

    /// Like [`Store::write_as`], for closures with their own error type
    /// (anything a [`StoreError`] converts into). Any `Err` rolls back.
    pub fn write_with<T, E: From<StoreError>>(
        &mut self,
        actor: &str,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        if self.read_only {
            return Err(StoreError::ReadOnly { path: self.path.clone() }.into());
        }
        let actor = actor.trim();
        if actor.is_empty() {
            return Err(StoreError::Invalid { what: "actor", problem: "it is empty".to_owned() }.into());
        }
        // `new_unchecked` takes `&Connection`, so the `Tx` can also lend a
        // `Reader`; `&mut self` still guarantees one transaction at a time.
        // Dropping it without commit (error or panic) rolls back.
        let transaction =
            Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate).map_err(StoreError::from)?;
        let mut tx = Tx::new(transaction, &self.conn, actor, self.key.clone(), Arc::clone(&self.written));
        let value = f(&mut tx)?;
        if let Some((seq, hash)) = tx.commit()? {
            self.record_head(seq, &hash);
        }
        Ok(value)
    }

    /// Run read-only queries on one consistent snapshot of the database.
    pub fn read<T>(&self, f: impl FnOnce(&Reader<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let transaction = Transaction::new_unchecked(&self.conn, TransactionBehavior::Deferred)?;
        let value = f(&Reader::new(&self.conn))?;
        transaction.commit()?;
        Ok(value)
    }

    /// A head file that fails its check is evidence too: it is never written over.
    fn keep_head_file(&self, problem: &head::HeadError) {
        tracing::error!(
            head_file = %self.head_file.display(),
            "the audit head file {problem}; it is kept as evidence and not updated (run labfeed verify-audit)"
        );
    }

    /// Record the chain's head outside the database, and in the log. A head
    /// that cannot be written does not undo the commit: it is logged.
    fn record_head(&self, seq: i64, hash: &str) {
        // A head the chain no longer holds is evidence: never write over it.
        let current = match head::read(&self.head_file, self.key.as_ref()) {
            Ok(current) => current,
            // The key was configured since: a plain head is continued keyed,
            // once its plain seal checks out.
            Err(head::HeadError::NotKeyed) => match head::read(&self.head_file, None) {
                Ok(plain) => plain,
                Err(e) => return self.keep_head_file(&e),
            },
            Err(e) => return self.keep_head_file(&e),
        };
        if let Some(recorded) = &current {
            let held: Option<String> = self
                .conn
                .query_row("SELECT hash FROM audit_log WHERE seq = ?1", [recorded.seq], |r| r.get(0))
                .optional()
                .ok()
                .flatten();
            if held.as_deref() != Some(recorded.hash.as_str()) {
                tracing::error!(
                    recorded_seq = recorded.seq,
                    seq,
                    hash,
                    head_file = %self.head_file.display(),
                    "the audit chain no longer holds the head recorded outside the database; the head file is kept \
                     as evidence (run labfeed verify-audit)"
                );
                return;
            }
        }
        let at = read::utc_text(jiff::Timestamp::now());
        match head::record_after(&self.head_file, self.key.as_ref(), current.as_ref(), seq, hash, &at) {
            Ok(()) => tracing::info!(seq, hash, head_file = %self.head_file.display(), "audit head"),
            Err(e) => tracing::error!(
                seq,
                hash,
                head_file = %self.head_file.display(),
                "audit head not recorded: {e}"
            ),
        }
    }

    /// Everything `verify-audit` checks (SPEC §9), with `key` for keyed rows
    /// and the head file's seal, the head read from `head_file`.
    pub fn verify_integrity(&self, key: Option<&AuditKey>, head_file: &Path) -> Result<Integrity, StoreError> {
        let recorded = head::read(head_file, key);
        self.read(|r| integrity::verify(r.connection(), key, head_file, recorded))
    }

    /// Recompute the audit log's hash chain (see [`verify_audit_chain`]), keyed rows with `key`.
    pub fn verify_audit_chain(&self) -> Result<ChainReport, StoreError> {
        self.read(|r| verify_audit_chain(r.connection(), self.key.as_ref()))
    }
}
