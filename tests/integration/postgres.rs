//! The PostgreSQL store's foundation against a real server on
//! 127.0.0.1:5432 (user postgres, trust authentication): the schema and its
//! migration, append-only triggers and CHECKs, the instance lock, and the
//! audit chain under concurrent writers. Each test makes its own database
//! and drops it. Without a server the tests print one line and pass, unless
//! `LABFEED_REQUIRE_POSTGRES=1` (as in `.ci/run`) makes that a failure.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use labfeed::store::postgres::{self as pg, InstanceLock, PgError};
use labfeed::store::{GENESIS_HASH, NewRaw, Participant, Store, entry_hash};
use postgres::Client;

const SERVER: &str = "postgresql://postgres@127.0.0.1:5432";

/// The server's `test` database, or `None` (and the one line) when there is no server.
pub(crate) fn server() -> Option<Client> {
    match pg::connect(&format!("{SERVER}/test")) {
        Ok(client) => Some(client),
        Err(e) => {
            if std::env::var("LABFEED_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!("LABFEED_REQUIRE_POSTGRES=1 but PostgreSQL on 127.0.0.1:5432 is not there: {e}");
            }
            // Once per run, past the test harness's capture (it takes print!s only).
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                let _ = writeln!(std::io::stderr(), "skipped: no PostgreSQL on 127.0.0.1:5432");
            });
            None
        }
    }
}

/// A database of the test's own, dropped when the test ends (also on panic).
pub(crate) struct TestDb {
    name: String,
}

impl TestDb {
    pub(crate) fn create() -> Option<TestDb> {
        let mut admin = server()?;
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).unwrap();
        let name = format!("labfeed_test_{}", labfeed::store::hex(&bytes));
        admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        Some(TestDb { name })
    }

    pub(crate) fn url(&self) -> String {
        format!("{SERVER}/{}", self.name)
    }

    pub(crate) fn connect(&self) -> Client {
        pg::connect(&self.url()).unwrap()
    }

    fn migrated(&self) -> Client {
        let mut client = self.connect();
        assert_eq!(pg::migrate(&mut client).unwrap(), pg::latest_version());
        client
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = pg::connect(&format!("{SERVER}/test")) {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

fn strings(client: &mut Client, sql: &str) -> Vec<String> {
    client.query(sql, &[]).unwrap().iter().map(|r| r.get(0)).collect()
}

/// The server's message for a refused statement.
fn refusal(client: &mut Client, sql: &str) -> String {
    let err = client.batch_execute(sql).expect_err(sql);
    err.as_db_error().map(|d| d.message().to_owned()).unwrap_or_else(|| err.to_string())
}

/// The tables SQLite gives no integer id, which get an explicit `rowid` on PostgreSQL.
const ROWID_TABLES: &[&str] = &["account", "participant", "resolution_effect", "sample", "visit"];

#[test]
fn migration_gives_every_sqlite_table_view_index_and_trigger_with_the_same_columns() {
    let Some(db) = TestDb::create() else { return };
    let mut client = db.migrated();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("labfeed.db");
    drop(Store::open(&path).unwrap());
    let lite = rusqlite::Connection::open(&path).unwrap();
    let lite_names = |kind: &str| -> BTreeSet<String> {
        let mut stmt =
            lite.prepare("SELECT name FROM sqlite_schema WHERE type = ?1 AND name NOT LIKE 'sqlite_%'").unwrap();
        stmt.query_map([kind], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };

    let mut pg_tables: BTreeSet<String> = strings(
        &mut client,
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    .into_iter()
    .collect();
    assert!(pg_tables.remove(pg::VERSION_TABLE), "the version table is there");
    assert_eq!(pg_tables, lite_names("table"));

    for table in &pg_tables {
        // SQLite's text columns computed from compact ones (schema 10) are
        // PostgreSQL's stored ones.
        let lite_columns: Vec<String> = lite
            .prepare("SELECT name FROM pragma_table_xinfo(?1) ORDER BY cid")
            .unwrap()
            .query_map([table], |r| r.get::<_, String>(0))
            .unwrap()
            .map(Result::unwrap)
            .filter(|c| !labfeed::store::COMPACT_COLUMNS.contains(&(table.as_str(), c.as_str())))
            .collect();
        let mut pg_columns: Vec<String> = client
            .query(
                "SELECT column_name::text FROM information_schema.columns
                 WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
                &[table],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        if ROWID_TABLES.contains(&table.as_str()) {
            assert_eq!(pg_columns.pop().as_deref(), Some("rowid"), "{table}");
        }
        assert_eq!(pg_columns, lite_columns, "columns of {table}");
    }

    let views: BTreeSet<String> =
        strings(&mut client, "SELECT table_name::text FROM information_schema.views WHERE table_schema = 'public'")
            .into_iter()
            .collect();
    assert_eq!(views, lite_names("view"));

    // Indexes: SQLite's named ones; PostgreSQL also names its key and UNIQUE indexes.
    let indexes: BTreeSet<String> =
        strings(&mut client, "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public'")
            .into_iter()
            .collect();
    let mut lite_indexes = lite_names("index");
    // SQLite keeps `raw.sha256` unique with an index of the digest's first
    // bytes and a trigger (schema 10); PostgreSQL with its UNIQUE constraint,
    // checked below.
    assert!(lite_indexes.remove("raw_digest_prefix"), "SQLite's prefix index is there");
    let unique: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'raw'
                              AND indexdef LIKE 'CREATE UNIQUE INDEX % (sha256)')",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(unique, "raw.sha256 is UNIQUE on PostgreSQL");
    assert!(lite_indexes.is_subset(&indexes), "missing: {:?}", lite_indexes.difference(&indexes));

    // Triggers: every one of SQLite's, plus a TRUNCATE guard for every table that refuses DELETE.
    let triggers: BTreeSet<String> =
        strings(&mut client, "SELECT DISTINCT tgname::text FROM pg_trigger WHERE NOT tgisinternal")
            .into_iter()
            .collect();
    let mut lite_triggers = lite_names("trigger");
    assert!(lite_triggers.remove("raw_digest_unique"), "SQLite's uniqueness trigger is there");
    let extra: BTreeSet<String> = triggers.difference(&lite_triggers).cloned().collect();
    let expected_extra: BTreeSet<String> = lite_triggers
        .iter()
        .filter_map(|t| t.strip_suffix("_no_delete"))
        .map(|table| format!("{table}_no_truncate"))
        .collect();
    assert!(lite_triggers.is_subset(&triggers), "missing: {:?}", lite_triggers.difference(&triggers));
    assert_eq!(extra, expected_extra);
}

#[test]
fn migrating_again_is_a_no_op_and_two_daemons_migrate_a_new_database_once() {
    let Some(db) = TestDb::create() else { return };
    // Two sessions start on the empty database at once.
    let barrier = Arc::new(Barrier::new(2));
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let (url, barrier) = (db.url(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                let mut client = pg::connect(&url).unwrap();
                barrier.wait();
                pg::migrate(&mut client)
            })
        })
        .collect();
    for run in runs {
        assert_eq!(run.join().unwrap().unwrap(), pg::latest_version());
    }
    let mut client = db.connect();
    let applied = |client: &mut Client| -> Vec<i64> {
        client
            .query(&format!("SELECT version FROM {} ORDER BY version", pg::VERSION_TABLE), &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    assert_eq!(applied(&mut client), [1, 2, 3]);
    let objects =
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'";
    let before: i64 = client.query_one(objects, &[]).unwrap().get(0);
    assert_eq!(pg::migrate(&mut client).unwrap(), 3);
    assert_eq!(applied(&mut client), [1, 2, 3]);
    assert_eq!(client.query_one(objects, &[]).unwrap().get::<_, i64>(0), before);
    assert_eq!(pg::schema_version(&mut client).unwrap(), Some(3));

    // A newer labfeed's database is refused, not guessed at.
    client
        .batch_execute("INSERT INTO labfeed_schema (version, description, applied_at) VALUES (9, 'future', 't')")
        .unwrap();
    let err = pg::migrate(&mut client).unwrap_err();
    assert!(matches!(err, PgError::TooNew { found: 9, known: 3, .. }), "{err}");
    assert!(err.to_string().contains(&format!("postgresql://postgres@127.0.0.1:5432/{}", db.name)), "{err}");
}

#[test]
fn a_database_holding_other_tables_is_not_taken_over() {
    let Some(db) = TestDb::create() else { return };
    let mut client = db.connect();
    client.batch_execute("CREATE TABLE invoices (id BIGINT)").unwrap();
    let err = pg::migrate(&mut client).unwrap_err();
    assert!(matches!(err, PgError::NotLabfeed { .. }), "{err}");
    assert!(err.to_string().contains("invoices"), "{err}");
    assert_eq!(pg::schema_version(&mut client).unwrap(), None, "nothing was created");
}

/// One row in every table, so that row triggers have something to refuse.
const ONE_OF_EACH: &str = r#"
INSERT INTO raw (sha256, size, format, content, first_received_at) VALUES (repeat('a', 64), 3, 'astm', '\x616263', 't');
INSERT INTO receipt (raw_id, received_at, source, origin) VALUES (1, 't', 'file', 'x.txt');
INSERT INTO processing (receipt_id, processed_at, outcome, accepted, duplicates, mismatches, qc, errors)
    VALUES (1, 't', 'processed', 1, 0, 0, 0, 0);
INSERT INTO message (raw_id, number, span_start, span_end) VALUES (1, 1, 0, 3);
INSERT INTO participant (code) VALUES ('P001');
INSERT INTO visit (participant, visit) VALUES ('P001', 'V1');
INSERT INTO sample (sample_id, participant, visit, minute) VALUES ('S1', 'P001', 'V1', 0);
INSERT INTO observation (message_id, seq, byte_offset, qc, outcome) VALUES (1, 1, 0, 0, 'accepted');
INSERT INTO observation_offset (observation_id, collected_offset, at, reason) VALUES (1, '+01:00', 't', 'r');
INSERT INTO result (observation_id, participant, visit, minute, analyte, value, unit, blq, version, accepted_at,
                    accepted_by, reason)
    VALUES (1, 'P001', 'V1', 0, 'glucose', 5.5, 'mmol/L', 0, 1, 't', 'labfeed', 'ingest');
INSERT INTO mismatch (code, holds, receipt_id, detail, created_at) VALUES ('PARSE_ERROR', 1, 1, 'd', 't');
INSERT INTO resolution (mismatch_id, action, reason, resolved_by, resolved_at) VALUES (1, 'reject', 'bad', 'dm', 't');
INSERT INTO resolution_effect (resolution_id, kind, result_id) VALUES (1, 'result', 1);
INSERT INTO audit_log (seq, at, actor, action, entity, detail, prev_hash, hash)
    VALUES (1, 't', 'labfeed', 'commit', 'transaction', '{}', repeat('0', 64), repeat('1', 64));
INSERT INTO account (name, full_name, role, password_hash, created_at)
    VALUES ('dm', 'Dana Manager', 'data-manager', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', 't');
INSERT INTO data_lock (scope, locked, at, "by", reason) VALUES ('study', 1, 't', 'dm', 'database lock');
"#;

#[test]
fn append_only_tables_refuse_update_delete_and_truncate_as_on_sqlite() {
    let Some(db) = TestDb::create() else { return };
    let mut client = db.migrated();
    client.batch_execute(ONE_OF_EACH).unwrap();
    let append_only = [
        ("raw", "masked"),
        ("receipt", "origin"),
        ("processing", "detail"),
        ("message", "sender"),
        ("observation", "flags"),
        ("observation_offset", "reason"),
        ("result", "reason"),
        ("mismatch", "detail"),
        ("resolution", "reason"),
        ("resolution_effect", "kind"),
        ("audit_log", "actor"),
        ("data_lock", "reason"),
    ];
    for (table, column) in append_only {
        let update = refusal(&mut client, &format!("UPDATE {table} SET {column} = {column}"));
        assert!(update.starts_with(&format!("{table} is append-only")), "{table}: {update}");
        let delete = refusal(&mut client, &format!("DELETE FROM {table}"));
        assert!(delete.starts_with(&format!("{table} is append-only")), "{table}: {delete}");
        let truncate = refusal(&mut client, &format!("TRUNCATE {table} CASCADE"));
        assert!(truncate.contains("append-only") || truncate.contains("never deleted"), "{table}: {truncate}");
        let rows: i64 = client.query_one(&format!("SELECT count(*) FROM {table}"), &[]).unwrap().get(0);
        assert_eq!(rows, 1, "{table} keeps its row");
    }
    // Study data changes through imports but is never removed; accounts keep name, role, creation.
    client
        .batch_execute("UPDATE participant SET site = 'Lund'; UPDATE visit SET meal_start = '2026-03-02T08:00'")
        .unwrap();
    client.batch_execute("UPDATE sample SET minute = 30; UPDATE account SET failed_logins = 2, enabled = 0").unwrap();
    for table in ["participant", "visit", "sample"] {
        let delete = refusal(&mut client, &format!("DELETE FROM {table}"));
        assert!(delete.starts_with(&format!("{table} rows are never deleted")), "{table}: {delete}");
    }
    assert_eq!(refusal(&mut client, "DELETE FROM account"), "accounts are disabled, never deleted");
    assert_eq!(
        refusal(&mut client, "UPDATE account SET role = 'admin'"),
        "an account keeps its name, role and creation time"
    );
}

#[test]
fn check_constraints_refuse_values_outside_the_vocabulary() {
    let Some(db) = TestDb::create() else { return };
    let mut client = db.migrated();
    client.batch_execute(ONE_OF_EACH).unwrap();
    let refused = [
        (
            "receipt_source_check",
            "INSERT INTO receipt (raw_id, received_at, source, origin) VALUES (1, 't', 'pigeon', 'x')",
        ),
        (
            "mismatch_code_check",
            "INSERT INTO mismatch (code, holds, receipt_id, detail, created_at) VALUES ('SOMETHING_ELSE', 1, 1, 'd', 't')",
        ),
        (
            "resolution_action_check",
            "INSERT INTO resolution (mismatch_id, action, reason, resolved_by, resolved_at) VALUES (1, 'shrug', 'r', 'dm', 't')",
        ),
        (
            "resolution_check",
            "INSERT INTO resolution (mismatch_id, action, reason, resolved_by, resolved_at) VALUES (1, 'reopen', 'r', 'dm', 't')",
        ),
        (
            "account_password_hash_check",
            "INSERT INTO account (name, full_name, role, password_hash, created_at) VALUES ('x', 'X', 'admin', 'plain', 't')",
        ),
        (
            "observation_offset_collected_offset_check",
            "INSERT INTO observation_offset (observation_id, collected_offset, at, reason) VALUES (1, '+1:00', 't', 'r')",
        ),
        (
            "data_lock_check",
            "INSERT INTO data_lock (scope, locked, at, \"by\", reason) VALUES ('visit', 1, 't', 'dm', 'r')",
        ),
    ];
    for (constraint, sql) in refused {
        let err = client.batch_execute(sql).expect_err(sql);
        let db_error = err.as_db_error().unwrap_or_else(|| panic!("{sql}: {err}"));
        assert_eq!(db_error.code(), &postgres::error::SqlState::CHECK_VIOLATION, "{sql}: {err}");
        assert_eq!(db_error.constraint(), Some(constraint), "{sql}");
    }
}

#[test]
fn an_instance_name_runs_once_per_database_until_its_session_ends() {
    let Some(db) = TestDb::create() else { return };
    let mut first = InstanceLock::acquire(db.connect(), "site-lund").unwrap();
    assert!(first.is_held());

    let err = InstanceLock::acquire(db.connect(), "site-lund").unwrap_err();
    assert!(matches!(err, PgError::InstanceHeld { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("\"site-lund\" is already running"), "{text}");
    assert!(text.contains(&db.name) && text.contains("held by server process"), "{text}");
    let other = InstanceLock::acquire(db.connect(), "site-malmo").unwrap();
    assert_eq!(other.instance(), "site-malmo");

    // Closing the session releases the lock (the server notices at once; allow it a moment).
    drop(first);
    let mut second = acquire_within(&db, "site-lund", Duration::from_secs(10));
    assert!(second.is_held());

    // A session the server loses (killed process, cut network) releases it too, and its
    // holder can tell it no longer has it.
    let pid: i32 = holder_pid(&db, "site-lund");
    db.connect().execute("SELECT pg_terminate_backend($1)", &[&pid]).unwrap();
    assert!(!second.is_held());
    let third = acquire_within(&db, "site-lund", Duration::from_secs(10));
    assert_eq!(third.instance(), "site-lund");
}

/// The lock, once its previous holder's session has ended.
fn acquire_within(db: &TestDb, instance: &str, limit: Duration) -> InstanceLock {
    let start = Instant::now();
    loop {
        match InstanceLock::acquire(db.connect(), instance) {
            Ok(lock) => return lock,
            Err(e) if start.elapsed() < limit => {
                assert!(matches!(e, PgError::InstanceHeld { .. }), "{e}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("still held after {limit:?}: {e}"),
        }
    }
}

/// The server process holding `instance`'s lock.
fn holder_pid(db: &TestDb, instance: &str) -> i32 {
    let key = labfeed::store::postgres::instance_key(instance) as u64;
    let (classid, objid) = ((key >> 32) as u32, key as u32);
    db.connect()
        .query_one(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = $1 AND objid = $2",
            &[&classid, &objid],
        )
        .unwrap()
        .get(0)
}

/// One write transaction through the store: a participant named `label`
/// (an audited upsert, then the `commit` row).
fn append(store: &mut Store, label: &str) {
    store.write(|tx| tx.upsert_participant(&Participant { code: label.to_owned(), site: None })).unwrap();
}

/// Every row in seq order, checked link by link and hash by hash; returns each row's label.
fn verified_chain(client: &mut Client) -> Vec<(i64, String)> {
    let rows = client
        .query(
            "SELECT seq, at, actor, action, entity, entity_id, detail, prev_hash, hash, keyed FROM audit_log ORDER BY seq",
            &[],
        )
        .unwrap();
    let mut prev = GENESIS_HASH.to_owned();
    let mut out = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let seq: i64 = r.get(0);
        assert_eq!(seq, i as i64 + 1, "no gap in seq");
        let (at, actor, action, entity): (String, String, String, String) = (r.get(1), r.get(2), r.get(3), r.get(4));
        let (entity_id, detail, prev_hash, hash): (Option<String>, String, String, String) =
            (r.get(5), r.get(6), r.get(7), r.get(8));
        assert_eq!(prev_hash, prev, "seq {seq} links to the row before it");
        assert_eq!(hash, entry_hash(&prev_hash, seq, &at, &actor, &action, &entity, entity_id.as_deref(), &detail));
        assert_eq!(r.get::<_, i64>(9), 0);
        prev = hash;
        out.push((seq, entity_id.unwrap_or_default()));
    }
    out
}

#[test]
fn concurrent_writers_take_turns_and_keep_one_unbroken_chain() {
    let Some(db) = TestDb::create() else { return };
    let mut a = Store::open(db.url()).unwrap();

    // A holds the write lock; B's transaction waits for it (seen in pg_locks), then follows A's rows.
    let url = db.url();
    let mut watch = db.connect();
    a.write(|tx| {
        tx.upsert_participant(&Participant { code: "a1".to_owned(), site: None })?;
        let b = std::thread::spawn(move || append(&mut Store::open(url).unwrap(), "b"));
        let start = Instant::now();
        loop {
            let waiting: i64 = watch
                .query_one(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
                       AND classid = $1 AND objid = 2 AND objsubid = 2",
                    &[&0x4C42_4644_u32],
                )
                .unwrap()
                .get(0);
            if waiting == 1 {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "B never waited for the write lock");
            std::thread::sleep(Duration::from_millis(20));
        }
        tx.upsert_participant(&Participant { code: "a2".to_owned(), site: None })?;
        Ok(b)
    })
    .unwrap()
    .join()
    .unwrap();
    let labels: Vec<String> = verified_chain(&mut watch).into_iter().map(|(_, l)| l).collect();
    assert_eq!(labels, ["a1", "a2", "", "b", ""], "A's rows and its commit row, then B's");

    // Many transactions from two stores at once: one chain, each transaction's rows together.
    const TXS: usize = 40;
    let barrier = Arc::new(Barrier::new(2));
    let writers: Vec<_> = ["x", "y"]
        .into_iter()
        .map(|who| {
            let (url, barrier) = (db.url(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                let mut store = Store::open(url).unwrap();
                barrier.wait();
                for i in 0..TXS {
                    append(&mut store, &format!("{who}{i}"));
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let chain = verified_chain(&mut watch);
    assert_eq!(chain.len(), 5 + 2 * TXS * 2);
    let mut pairs = chain[5..].chunks(2);
    let mut seen = BTreeSet::new();
    for pair in &mut pairs {
        assert_eq!(pair[1].1, "", "each participant row is followed by its transaction's commit row: {pair:?}");
        seen.insert(pair[0].1.clone());
    }
    assert_eq!(seen.len(), 2 * TXS);
    let found = a.verify_integrity(None, &std::env::temp_dir().join("no-head")).unwrap();
    assert_eq!(found.problem, None);
}

#[test]
fn sslmode_require_never_falls_back_to_plain_text() {
    // The server here has no certificate a trusted root signed (or no TLS at
    // all): `require` must refuse it rather than talk in the clear.
    if server().is_none() {
        return;
    }
    let Err(err) = pg::connect(&format!("{SERVER}/test?sslmode=require")) else {
        panic!("sslmode=require connected to a server whose certificate nobody vouches for");
    };
    assert!(matches!(err, PgError::Connect { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("certificate") || text.contains("TLS"), "{text}");

    // Where the machine trusts the server's certificate for `localhost` (Debian's snakeoil
    // certificate lies in /etc/ssl/certs), `require` connects, and the session is encrypted.
    match pg::connect("postgresql://postgres@localhost:5432/test?sslmode=require") {
        Ok(mut client) => {
            let row = client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).unwrap();
            assert!(row.get::<_, bool>(0), "a session under sslmode=require is encrypted");
        }
        Err(err) => {
            let text = err.to_string();
            assert!(text.contains("certificate") || text.contains("TLS"), "{text}");
        }
    }
}

/// The roles of `config/postgres-roles.sql`, under names of this test's own
/// (roles are the server's, not one database's), dropped afterwards.
struct Roles {
    suffix: String,
}

impl Roles {
    fn name(&self, role: &str) -> String {
        format!("{role}_{}", self.suffix)
    }

    /// A documented file with this test's names in it.
    fn sql(&self, text: &str) -> String {
        text.replace("labfeed_study", &self.name("labfeed_study"))
            .replace("labfeed_owner", &self.name("labfeed_owner"))
            .replace("labfeed_daemon", &self.name("labfeed_daemon"))
            .replace("labfeed_manager", &self.name("labfeed_manager"))
    }

    fn connect(&self, role: &str) -> Client {
        pg::connect(&format!("postgresql://{}@127.0.0.1:5432/{}", self.name(role), self.name("labfeed_study"))).unwrap()
    }
}

impl Drop for Roles {
    fn drop(&mut self) {
        if let Ok(mut admin) = pg::connect(&format!("{SERVER}/test")) {
            let _ =
                admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name("labfeed_study")));
            for role in ["labfeed_manager", "labfeed_daemon", "labfeed_owner"] {
                let _ = admin.batch_execute(&format!("DROP ROLE IF EXISTS {}", self.name(role)));
            }
        }
    }
}

fn denied(client: &mut Client, sql: &str) {
    let err = client.batch_execute(sql).expect_err(sql);
    let code = err.as_db_error().map(|d| d.code().clone());
    assert_eq!(code, Some(postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{sql}: {err}");
}

#[test]
fn the_documented_roles_read_and_insert_and_change_nothing_else() {
    let Some(mut admin) = server() else { return };
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).unwrap();
    let roles = Roles { suffix: labfeed::store::hex(&bytes) };
    let root = env!("CARGO_MANIFEST_DIR");
    let step1 = roles.sql(&std::fs::read_to_string(format!("{root}/config/postgres-roles.sql")).unwrap());
    // CREATE DATABASE runs alone (psql sends each statement on its own, too).
    let code: String = step1.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n");
    for statement in code.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        admin.batch_execute(statement).unwrap_or_else(|e| panic!("{statement}: {e:?}"));
    }
    let mut owner = roles.connect("labfeed_owner");
    assert_eq!(pg::migrate(&mut owner).unwrap(), pg::latest_version());
    let step3 = roles.sql(&std::fs::read_to_string(format!("{root}/config/postgres-grants.sql")).unwrap());
    owner.batch_execute(&step3).unwrap();

    // The daemon: opens the current schema, inserts (identity ids too), appends to the chain, reads.
    let mut daemon = roles.connect("labfeed_daemon");
    assert_eq!(pg::migrate(&mut daemon).unwrap(), pg::latest_version(), "a current schema needs no DDL");
    daemon.batch_execute(ONE_OF_EACH).unwrap();
    let daemon_url =
        format!("postgresql://{}@127.0.0.1:5432/{}", roles.name("labfeed_daemon"), roles.name("labfeed_study"));
    let mut store = Store::open(&daemon_url).unwrap();
    append(&mut store, "P-DAEMON");
    // `labfeed run` under the daemon role: a delivery is committed and its file archived.
    let t = super::support::TempStudy::new(&[("settle_seconds = 1.0", "settle_seconds = 0.1")]);
    super::central::point_at(&t.config, &daemon_url, "site-daemon");
    std::fs::create_dir_all(t.lib("inbox")).unwrap();
    std::fs::write(t.lib("inbox").join("u.astm"), super::daemon::upload(1, 0)).unwrap();
    let out = t.command(&["run", "--once"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", super::support::text(&out));
    assert_eq!(super::daemon::archived(&t.lib("archive")).len(), 1, "the file is archived once committed");
    let rows: i64 = daemon.query_one("SELECT count(*) FROM current_result", &[]).unwrap().get(0);
    assert_eq!(rows, 1);
    // Keys are drawn from the sequences (so inserts go out together), never set back.
    denied(&mut daemon, "SELECT setval(pg_get_serial_sequence('raw', 'id'), 1)");
    // A role granted before that (tables only) still works, one insert at a time.
    let revoke = format!("REVOKE USAGE ON ALL SEQUENCES IN SCHEMA public FROM {}", roles.name("labfeed_daemon"));
    owner.batch_execute(&revoke).unwrap();
    let processed =
        |client: &mut Client| -> i64 { client.query_one("SELECT count(*) FROM processing", &[]).unwrap().get(0) };
    let before = processed(&mut daemon);
    std::fs::write(t.lib("inbox").join("v.astm"), super::daemon::upload(1, 1)).unwrap();
    let out = t.command(&["run", "--once"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", super::support::text(&out));
    assert_eq!(super::daemon::archived(&t.lib("archive")).len(), 2, "the file is archived once committed");
    assert_eq!(processed(&mut daemon), before + 1);
    for sql in [
        "UPDATE raw SET masked = ''",
        "UPDATE participant SET site = 'Lund'",
        "UPDATE account SET failed_logins = 1",
        "DELETE FROM audit_log",
        "DELETE FROM participant",
        "TRUNCATE receipt CASCADE",
        "CREATE TABLE notes (x TEXT)",
        "ALTER TABLE result DISABLE TRIGGER result_no_update",
        "DROP TRIGGER raw_no_update ON raw",
    ] {
        denied(&mut daemon, sql);
    }

    // People's commands: the few columns that change on SQLite too, and nothing else.
    let mut manager = roles.connect("labfeed_manager");
    manager
        .batch_execute(
            "UPDATE participant SET site = 'Lund'; UPDATE visit SET meal_start = '2026-03-02T08:00';
             UPDATE sample SET minute = 30; UPDATE account SET failed_logins = 1, refused_until = 't'",
        )
        .unwrap();
    for sql in [
        "UPDATE account SET full_name = 'Someone Else'",
        "UPDATE result SET value = 1",
        "DELETE FROM visit",
        "CREATE TABLE notes (x TEXT)",
    ] {
        denied(&mut manager, sql);
    }
}

/// Inserts held back take keys counted on from the sequence; a key drawn
/// behind labfeed's write lock meanwhile fails the commit (nothing lost:
/// the caller retries), and the session then inserts one row at a time.
#[test]
fn keys_taken_behind_the_write_lock_fail_the_commit_and_the_retry_goes_one_insert_at_a_time() {
    let Some(db) = TestDb::create() else { return };
    let mut store = Store::open(db.url()).unwrap();
    let raw = |text: &'static str| NewRaw {
        bytes: text.as_bytes(),
        format: None,
        personal: &[],
        received_at: jiff::Timestamp::now(),
    };
    let ids = store.write(|tx| Ok([tx.insert_raw(&raw("one"))?.id, tx.insert_raw(&raw("two"))?.id])).unwrap();
    assert_eq!(ids[1].get(), ids[0].get() + 1, "consecutive keys");

    let mut other = db.connect();
    let err = store
        .write(|tx| {
            tx.insert_raw(&raw("three"))?;
            tx.insert_raw(&raw("four"))?;
            other.batch_execute("SELECT nextval(pg_get_serial_sequence('raw', 'id'))").unwrap();
            Ok(())
        })
        .unwrap_err();
    assert!(err.to_string().contains("did not give keys"), "{err}");
    let stored: i64 = other.query_one("SELECT count(*) FROM raw", &[]).unwrap().get(0);
    assert_eq!(stored, 2, "nothing of the failed transaction is kept");

    let id = store.write(|tx| Ok(tx.insert_raw(&raw("three"))?.id)).unwrap();
    let stored: Vec<i64> =
        other.query("SELECT id FROM raw ORDER BY id", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(stored.len(), 3);
    assert_eq!(stored.last(), Some(&id.get()));
    assert!(store.verify_audit_chain().unwrap().broken.is_none());
}

/// Held-back inserts go out as arrays, one per column: every kind of value
/// (empty, NUL, quotes, backslashes, non-UTF-8, a megabyte) arrives byte for
/// byte under the key it was given, and the chain vouches for them.
#[test]
fn rows_held_back_arrive_byte_for_byte_under_their_keys() {
    let Some(db) = TestDb::create() else { return };
    let mut store = Store::open(db.url()).unwrap();
    let mut contents: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"a\0b".to_vec(),
        b"it's \"quoted\" {1,2} \\N NULL".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x80],
        vec![b'x'; 1 << 20],
    ];
    contents.extend((0..300).map(|n| format!("MSH|^~\\&|row {n}\r").into_bytes()));
    let ids = store
        .write(|tx| {
            let mut ids = Vec::new();
            for bytes in &contents {
                let raw = NewRaw { bytes, format: None, personal: &[], received_at: jiff::Timestamp::now() };
                ids.push(tx.insert_raw(&raw)?.id);
            }
            Ok(ids)
        })
        .unwrap();
    assert!(ids.windows(2).all(|w| w[1].get() == w[0].get() + 1), "keys in call order without gaps: {ids:?}");
    let fresh = Store::open(db.url()).unwrap();
    for (id, bytes) in ids.iter().zip(&contents) {
        let stored = fresh.read(|r| r.raw(*id)).unwrap().unwrap();
        assert_eq!(&stored.content, bytes, "raw {id:?}");
    }
    assert!(store.verify_audit_chain().unwrap().broken.is_none());
}
