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
mod copy;
mod correction;
mod error;
pub mod head;
mod integrity;
mod lock;
mod mask;
mod memo;
pub mod postgres;
mod read;
mod schema;
pub(crate) mod sql;
mod trace;
mod types;
pub mod vouch;
mod write;

use std::path::{Path, PathBuf};

use std::cell::RefCell;

use rusqlite::{Connection, OpenFlags};
use serde_json::json;

use sql::{Db, params};

pub use account::{Account, Role, Signature};
pub use audit::{
    AuditEntry, AuditKey, ChainBreak, ChainProblem, ChainReport, GENESIS_HASH, MIN_KEY_BYTES, canonical_json,
    entry_hash, hex, keyed_entry_hash, sha256_hex, verify_audit_chain,
};
pub use audit_trail::AuditFilter;
pub use copy::{COPY_ORDER, Copied, CopyCheck, CopyError, Progress, TableRows, verify_copy};
pub use correction::ObservationSource;
pub use error::StoreError;
pub use integrity::Integrity;
pub use lock::{Lock, LockScope};
pub use mask::{MASK_BYTE, mask};
pub use read::{MessageSpan, Reader, Scope};
pub use schema::{APPLICATION_ID, BUSY_TIMEOUT, COMPACT_COLUMNS, MIGRATIONS, Migration, latest_version};
pub use trace::{SampleTrace, TracedObservation};
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

/// How often a daemon on PostgreSQL asks whether it still holds its instance name.
const INSTANCE_CHECK: std::time::Duration = std::time::Duration::from_secs(30);

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

/// Where a study lives: an SQLite file, or a PostgreSQL database (SPEC §10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    File(PathBuf),
    /// A `postgresql://` URL, which may hold a password: never shown.
    Postgres(String),
}

impl Location {
    /// `[storage] database`: a `postgresql://` (or `postgres://`) URL, else a file path.
    pub fn of(database: &Path) -> Location {
        match database.to_str() {
            Some(url) if url.starts_with("postgresql://") || url.starts_with("postgres://") => {
                Location::Postgres(url.to_owned())
            }
            _ => Location::File(database.to_owned()),
        }
    }

    /// The location for messages: the path, or the URL without its password.
    pub fn display(&self) -> String {
        match self {
            Location::File(path) => path.display().to_string(),
            Location::Postgres(url) => {
                postgres::parse_url(url).map_or_else(|_| "a postgresql:// URL".to_owned(), |c| postgres::target(&c))
            }
        }
    }
}

enum Engine {
    Sqlite(Connection),
    Postgres(Box<postgres::Session>),
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Engine::Sqlite(_) => f.write_str("Sqlite"),
            Engine::Postgres(s) => write!(f, "Postgres({})", s.target()),
        }
    }
}

/// An open study database.
#[derive(Debug)]
pub struct Store {
    engine: Engine,
    /// The SQLite file, or the PostgreSQL target (for messages).
    path: PathBuf,
    read_only: bool,
    key: Option<AuditKey>,
    head_file: PathBuf,
    /// The rows the open transaction writes.
    written: RefCell<vouch::Written>,
    /// What the open write transaction has read.
    memo: RefCell<memo::Memo>,
    /// On PostgreSQL, the instance this store runs as (see [`Store::claim_instance`]),
    /// and the session count when it was last known to hold it.
    instance: Option<postgres::InstanceLock>,
    claimed: Option<(String, u64, std::time::Instant)>,
    /// The instance name receipts record (see [`Store::receive_as`]).
    receiving_as: Option<String>,
}

/// An open transaction: rolled back when dropped uncommitted (an error or a panic).
pub(crate) struct Transaction<'c> {
    db: Db<'c>,
    open: bool,
}

impl<'c> Transaction<'c> {
    fn begin(db: Db<'c>, write: bool) -> Result<Transaction<'c>, StoreError> {
        match (db.session(), write) {
            (Some(session), true) => session.begin_write()?,
            (Some(session), false) => session.begin_read()?,
            (None, true) => db.batch("BEGIN IMMEDIATE")?,
            (None, false) => db.batch("BEGIN DEFERRED")?,
        }
        Ok(Transaction { db, open: true })
    }

    pub(crate) fn commit(mut self) -> Result<(), StoreError> {
        self.open = false;
        // PostgreSQL answers COMMIT of a failed transaction with ROLLBACK and
        // no error: a statement before it in the same message fails instead.
        let committed = match self.db.session() {
            Some(_) => self.db.batch("SELECT 1; COMMIT"),
            None => self.db.batch("COMMIT"),
        };
        if committed.is_err() {
            self.rollback();
        }
        committed
    }

    fn rollback(&self) {
        match self.db.session() {
            Some(session) => session.rollback(),
            None => {
                let _ = self.db.batch("ROLLBACK");
            }
        }
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if self.open {
            self.rollback();
        }
    }
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
    /// row that says so. A `postgresql://` URL opens that database.
    pub fn open_with(path: impl AsRef<Path>, audit: AuditSettings) -> Result<Store, StoreError> {
        let path = match Location::of(path.as_ref()) {
            Location::File(path) => path,
            Location::Postgres(url) => return Store::open_postgres(&url, audit, false),
        };
        create_private(&path);
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(&path, flags)
            .map_err(|source| StoreError::Open { path: path.clone(), source })?;
        schema::configure_writer(&conn, &path)?;
        let before: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|source| StoreError::Open { path: path.clone(), source })?;
        schema::migrate(&mut conn, &path)?;
        let head_file = audit.head_file.unwrap_or_else(|| head::default_path(&path));
        let mut store = Store::new(Engine::Sqlite(conn), path, false, audit.key, head_file);
        store.upgrade_audit(before)?;
        Ok(store)
    }

    /// Open a PostgreSQL study database; for writing, migrate it first
    /// (a current one needs no privilege to do so).
    fn open_postgres(url: &str, audit: AuditSettings, read_only: bool) -> Result<Store, StoreError> {
        let config = postgres::parse_url(url)?;
        let target = postgres::target(&config);
        let session = postgres::Session::open(config).map_err(|e| match e {
            postgres::PgError::Connect { target, error } => {
                StoreError::Unreachable { target, why: postgres::chain(&error) }
            }
            other => StoreError::Pg(other),
        })?;
        let before = {
            let mut client = session.client()?;
            if read_only {
                let found = postgres::schema_version(&mut client)?;
                let known = postgres::latest_version();
                match found {
                    Some(v) if v == known => v,
                    Some(v) if v > known => {
                        return Err(postgres::PgError::TooNew { target, found: v, known }.into());
                    }
                    Some(v) => {
                        return Err(StoreError::NotMigrated { path: target.into(), found: v, known });
                    }
                    None => {
                        return Err(StoreError::NotLabfeed {
                            path: target.into(),
                            why: "it has no labfeed schema".to_owned(),
                        });
                    }
                }
            } else {
                let before = postgres::schema_version(&mut client)?.unwrap_or(0);
                postgres::migrate(&mut client)?;
                before
            }
        };
        let head_file = audit.head_file.unwrap_or_else(|| head::default_path(Path::new(&target)));
        let mut store =
            Store::new(Engine::Postgres(Box::new(session)), PathBuf::from(target), read_only, audit.key, head_file);
        if !read_only {
            // PostgreSQL's schema starts at SQLite's 7: nothing to vouch for.
            store.upgrade_audit(before.max(7))?;
        }
        Ok(store)
    }

    fn new(engine: Engine, path: PathBuf, read_only: bool, key: Option<AuditKey>, head_file: PathBuf) -> Store {
        Store {
            engine,
            path,
            read_only,
            key,
            head_file,
            written: RefCell::default(),
            memo: RefCell::default(),
            instance: None,
            claimed: None,
            receiving_as: None,
        }
    }

    fn db(&self) -> Db<'_> {
        match &self.engine {
            Engine::Sqlite(conn) => Db::sqlite(conn),
            Engine::Postgres(session) => Db::postgres(session),
        }
    }

    /// Run as daemon `name` on this database: on PostgreSQL, refused while
    /// another session holds the name (SPEC §10); the lock lasts as long as
    /// the store (or its session) does. On SQLite, the lock file beside the
    /// database already says it: nothing to do.
    pub fn claim_instance(&mut self, name: &str) -> Result<(), StoreError> {
        self.receive_as(name);
        let Engine::Postgres(session) = &self.engine else { return Ok(()) };
        self.claimed = Some((name.to_owned(), session.sessions(), std::time::Instant::now()));
        let client = postgres::connect_with(session.config())
            .map_err(|e| StoreError::Unreachable { target: session.target().to_owned(), why: e.to_string() })?;
        self.instance = Some(postgres::InstanceLock::acquire(client, name)?);
        Ok(())
    }

    /// Record `name` as the receiving instance of every receipt written from now on.
    pub fn receive_as(&mut self, name: &str) {
        self.receiving_as = Some(name.to_owned());
    }

    /// After the connection was lost: take the instance name again (the
    /// server released it with the lost session).
    /// Checked when the store's own session was made anew (a network
    /// failure ends both) or the lock's session is known closed; a claim
    /// that fails (the server still away, or the name taken meanwhile) is
    /// tried again at the next write, which it fails until then.
    fn reclaim_instance(&mut self) -> Result<(), StoreError> {
        let (Engine::Postgres(session), Some((name, seen, checked))) = (&self.engine, self.claimed.clone()) else {
            return Ok(());
        };
        // Reconnect first: a transaction after an outage must not run
        // before the name is known to be held again.
        session.with_client(true, |_| Ok(()))?;
        let now = session.sessions();
        // An idle lock session learns of its end only when used: ask the
        // server now and then, and after every new session of our own.
        let due = checked.elapsed() >= INSTANCE_CHECK;
        let held = match self.instance.as_mut() {
            Some(lock) if now == seen && !due && !lock.is_lost() => return Ok(()),
            Some(lock) => lock.is_held(),
            None => false,
        };
        if held {
            self.claimed = Some((name, now, std::time::Instant::now()));
            return Ok(());
        }
        self.instance = None;
        tracing::warn!(instance = %name, "the instance lock was lost with the connection; taking it again");
        self.claim_instance(&name)
    }

    /// Whether the study is on PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self.engine, Engine::Postgres(_))
    }

    /// The audited points where the chain changed: every row of a database
    /// from before schema 7 vouched for at once, and the first keyed row.
    fn upgrade_audit(&mut self, schema_before: i64) -> Result<(), StoreError> {
        let sql = format!("SELECT {} FROM audit_log ORDER BY seq DESC LIMIT 1", audit::AUDIT_COLUMNS);
        let newest = self.db().query_opt(&sql, params![], AuditEntry::from_row)?;
        // A key that did not make the newest keyed row is not this study's:
        // writing with it would break the chain (a site with another key).
        if let (Some(key), Some(e)) = (&self.key, newest.as_ref().filter(|e| e.keyed))
            && e.hash_with(Some(key)) != e.hash
        {
            return Err(StoreError::Invalid {
                what: "audit key",
                problem: format!(
                    "the configured [audit] key_file is not the key of this study's audit chain (audit_log seq {} \
                     was not made with it); use the study's key",
                    e.seq
                ),
            });
        }
        let last = newest.map(|e| e.keyed);
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
        let path = match Location::of(path.as_ref()) {
            Location::File(path) => path,
            Location::Postgres(url) => return Store::open_postgres(&url, AuditSettings::default(), true),
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags)
            .map_err(|source| StoreError::Open { path: path.clone(), source })?;
        schema::configure_reader(&conn, &path)?;
        schema::check_current(&conn, &path)?;
        let head_file = head::default_path(&path);
        Ok(Store::new(Engine::Sqlite(conn), path, true, None, head_file))
    }

    /// The database file (for PostgreSQL, `postgresql://USER@HOST:PORT/DB`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Prove a commit reaches the disk. On SQLite: rewrite `user_version`
    /// with its own value in a write transaction. That dirties the header
    /// page, so SQLite takes the write lock, appends to the WAL and syncs,
    /// as a real commit does (an empty transaction writes nothing and proves
    /// nothing). On PostgreSQL: take the write lock on a server that is
    /// not a read-only standby.
    pub fn prove_writable(&mut self) -> Result<(), StoreError> {
        let tx = Transaction::begin(self.db(), true)?;
        match &self.engine {
            Engine::Sqlite(conn) => {
                let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
                conn.pragma_update(None, "user_version", version)?;
            }
            Engine::Postgres(_) => {
                let read_only: String =
                    self.db().query_row("SELECT current_setting('transaction_read_only')", params![], |r| r.get(0))?;
                if read_only != "off" {
                    return Err(StoreError::ReadOnly { path: self.path.clone() });
                }
            }
        }
        tx.commit()
    }

    /// The schema version recorded in the database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        match &self.engine {
            Engine::Sqlite(conn) => Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?),
            Engine::Postgres(session) => Ok(postgres::schema_version(&mut *session.client()?)?.unwrap_or(0)),
        }
    }

    /// The connection's durability settings, for `status` and tests (SQLite's).
    pub fn settings(&self) -> Result<Settings, StoreError> {
        let Engine::Sqlite(conn) = &self.engine else {
            return Err(StoreError::Invalid { what: "settings", problem: "they are SQLite's".to_owned() });
        };
        let get = |name: &str| -> Result<String, StoreError> {
            Ok(conn.pragma_query_value(None, name, |r| r.get::<_, rusqlite::types::Value>(0)).map(|v| match v {
                rusqlite::types::Value::Integer(i) => i.to_string(),
                rusqlite::types::Value::Text(t) => t,
                other => format!("{other:?}"),
            })?)
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
        self.reclaim_instance()?;
        // `&mut self` guarantees one transaction at a time. Dropping it
        // without commit (error or panic) rolls back.
        self.memo.borrow_mut().clear();
        let db = self.db().noting(&self.written).remembering(&self.memo);
        let transaction = Transaction::begin(db, true)?;
        let mut tx = Tx::new(transaction, db, actor, self.key.clone(), self.receiving_as.clone());
        let value = f(&mut tx)?;
        if let Some((seq, hash)) = tx.commit()? {
            self.record_head(seq, &hash);
        }
        Ok(value)
    }

    /// Run read-only queries on one consistent snapshot of the database.
    pub fn read<T>(&self, f: impl FnOnce(&Reader<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let transaction = Transaction::begin(self.db(), false)?;
        let value = f(&Reader::new(self.db()))?;
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
                .db()
                .query_opt("SELECT hash FROM audit_log WHERE seq = ?1", params![recorded.seq], |r| r.get(0))
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
        self.read(|r| integrity::verify(r.db(), key, head_file, recorded))
    }

    /// Recompute the audit log's hash chain (see [`verify_audit_chain`]), keyed rows with `key`.
    pub fn verify_audit_chain(&self) -> Result<ChainReport, StoreError> {
        self.read(|r| audit::verify_chain(r.db(), self.key.as_ref()))
    }
}
