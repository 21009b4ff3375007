//! `labfeed migrate-store --to URL` through the real binary against the real
//! PostgreSQL server on 127.0.0.1:5432: a keyed study with results,
//! mismatches, a signed decision, accounts and a lock is copied, verifies,
//! matches the source table by table, takes new writes; the source is not
//! changed; a target that is not empty, or a copy that fails half-way,
//! leaves the target as it was. Without a server the tests print one line
//! and pass, unless `LABFEED_REQUIRE_POSTGRES=1`.

use std::path::{Path, PathBuf};

use labfeed::store::postgres as pg;
use labfeed::store::{AuditKey, AuditSettings, COPY_ORDER, NewRaw, NewReceipt, Participant, Source, Store};
use postgres::Client;
use postgres::types::Type;

use super::postgres::TestDb;
use super::support::{TempStudy, ok, text};
use super::tamper::{add_key, fill};

const SERVER: &str = "postgresql://postgres@127.0.0.1:5432";
const PASSWORD: &str = "s3cret-not-shown";

/// The URL of `db` with a password (the server trusts loopback, so any will do).
fn url_with_password(db: &TestDb) -> String {
    db.url().replacen("postgres@", &format!("postgres:{PASSWORD}@"), 1)
}

/// A value as both engines give it back.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Int(i64),
    Real(u64),
    Text(String),
    Blob(Vec<u8>),
}

/// Every row of `table` on PostgreSQL, every column, in key order.
fn pg_rows(client: &mut Client, table: &str) -> Vec<Vec<Cell>> {
    let key = key_of(table);
    let rows = client.query(&format!("SELECT * FROM {table} ORDER BY {key}"), &[]).unwrap();
    rows.iter()
        .map(|row| {
            (0..row.len())
                .map(|i| {
                    let ty = row.columns()[i].type_().clone();
                    match ty {
                        Type::INT8 => row.get::<_, Option<i64>>(i).map_or(Cell::Null, Cell::Int),
                        Type::FLOAT8 => row.get::<_, Option<f64>>(i).map_or(Cell::Null, |x| Cell::Real(x.to_bits())),
                        Type::BYTEA => row.get::<_, Option<Vec<u8>>>(i).map_or(Cell::Null, Cell::Blob),
                        _ => row.get::<_, Option<String>>(i).map_or(Cell::Null, Cell::Text),
                    }
                })
                .collect()
        })
        .collect()
}

/// The same from SQLite, the implicit rowid last where PostgreSQL has it as a column.
fn sqlite_rows(conn: &rusqlite::Connection, table: &str, with_rowid: bool) -> Vec<Vec<Cell>> {
    let key = key_of(table);
    // The columns as read (SQLite's compact storage, schema 10, left out).
    let mut columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_xinfo(?1) ORDER BY cid")
        .unwrap()
        .query_map([table], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .filter(|c| !labfeed::store::COMPACT_COLUMNS.contains(&(table, c.as_str())))
        .map(|c| format!("\"{c}\""))
        .collect();
    if with_rowid {
        columns.push("rowid".to_owned());
    }
    let mut stmt = conn.prepare(&format!("SELECT {} FROM {table} ORDER BY {key}", columns.join(", "))).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |row| {
        (0..n)
            .map(|i| {
                Ok(match row.get::<_, rusqlite::types::Value>(i)? {
                    rusqlite::types::Value::Null => Cell::Null,
                    rusqlite::types::Value::Integer(v) => Cell::Int(v),
                    rusqlite::types::Value::Real(x) => Cell::Real(x.to_bits()),
                    rusqlite::types::Value::Text(t) => Cell::Text(t),
                    rusqlite::types::Value::Blob(b) => Cell::Blob(b),
                })
            })
            .collect()
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn key_of(table: &str) -> &'static str {
    match table {
        "audit_log" => "seq",
        "processing" => "receipt_id",
        "participant" | "visit" | "sample" | "resolution_effect" | "account" => "rowid",
        _ => "id",
    }
}

/// Every table of the copy equals the source's, row by row and value by value.
fn assert_same_tables(source: &Path, client: &mut Client) {
    let lite = rusqlite::Connection::open_with_flags(source, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    for table in COPY_ORDER {
        let with_rowid = key_of(table) == "rowid";
        let want = sqlite_rows(&lite, table, with_rowid);
        let have = pg_rows(client, table);
        assert_eq!(have, want, "table {table}");
    }
}

fn row_count(client: &mut Client, table: &str) -> i64 {
    client.query_one(&format!("SELECT count(*) FROM {table}"), &[]).unwrap().get(0)
}

/// The study's files that must not change: the database and the head file,
/// and the WAL's content (an absent WAL and an empty one hold the same).
fn source_files(t: &TempStudy) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    ["labfeed.db", "labfeed.db.audit-head", "labfeed.db-wal"]
        .iter()
        .map(|name| {
            let path = t.lib(name);
            let bytes = std::fs::read(&path).ok().filter(|b| !b.is_empty());
            (path, bytes)
        })
        .collect()
}

fn key_of_study(t: &TempStudy) -> AuditKey {
    let text = std::fs::read_to_string(t.dir.path().join("audit.key")).unwrap();
    AuditKey::new(text.trim_end().as_bytes().to_vec()).unwrap()
}

/// The keyed study of the tamper tests: results (HL7 and ASTM), mismatches,
/// a signed decision, accounts and a locked visit.
fn rich_study() -> TempStudy {
    let t = TempStudy::new(&[("settle_seconds = 1.0", "settle_seconds = 0.1")]);
    add_key(&t);
    fill(&t);
    t
}

#[test]
fn a_study_is_copied_with_its_chain_verified_and_the_source_untouched() {
    let Some(db) = TestDb::create() else { return };
    let t = rich_study();
    let source = t.lib("labfeed.db");
    let before = source_files(&t);
    assert!(before[..2].iter().all(|(_, bytes)| bytes.is_some()), "the study has its database and head file");

    let out = t.run(&["migrate-store", "--to", &url_with_password(&db)]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(!said.contains(PASSWORD), "the password is never shown: {said}");
    assert!(said.contains("copy verified"), "{said}");
    assert!(said.contains(&format!("[storage] database = \"{}\"", db.url())), "the next step: {said}");
    assert!(said.contains("result: "), "progress per table on stderr: {said}");

    // The source: not a byte changed.
    assert_eq!(source_files(&t), before, "the source study is unchanged");

    // verify-audit's checks on both: the same head, the same rows vouched for.
    let key = key_of_study(&t);
    let head_file = t.lib("labfeed.db.audit-head");
    let on_source = Store::open_read_only(&source).unwrap().verify_integrity(Some(&key), &head_file).unwrap();
    let on_copy = Store::open_read_only(db.url()).unwrap().verify_integrity(Some(&key), &head_file).unwrap();
    assert_eq!(on_source.problem, None);
    assert_eq!(on_copy.problem, None);
    assert!(on_copy.chain.head.is_some());
    assert_eq!(on_copy.chain.head, on_source.chain.head);
    assert_eq!(on_copy.chain.rows_checked, on_source.chain.rows_checked);
    assert_eq!(on_copy.rows_checked, on_source.rows_checked);
    let (seq, hash) = on_copy.chain.head.clone().unwrap();
    assert!(said.contains(&format!("head seq {seq}, hash {hash}")), "{said}");

    // Table by table, value by value (account's login counters too).
    let mut client = db.connect();
    assert_same_tables(&source, &mut client);
    assert!(row_count(&mut client, "resolution") >= 1 && row_count(&mut client, "data_lock") >= 1);
    assert!(row_count(&mut client, "account") >= 2 && row_count(&mut client, "mismatch") >= 2);

    // What exports and reports read is the same on both.
    let lite = Store::open_read_only(&source).unwrap();
    let copy = Store::open_read_only(db.url()).unwrap();
    let results = |s: &Store| s.read(|r| r.current_results()).unwrap();
    let mismatches = |s: &Store| s.read(|r| r.mismatch_report(true)).unwrap();
    assert!(!results(&lite).is_empty());
    assert_eq!(results(&copy), results(&lite));
    assert_eq!(mismatches(&copy), mismatches(&lite));
    drop((lite, copy));

    // The copy takes new writes: every identity is past the copied keys.
    let max_raw: i64 = client.query_one("SELECT max(id) FROM raw", &[]).unwrap().get(0);
    let max_participant: i64 = client.query_one("SELECT max(rowid) FROM participant", &[]).unwrap().get(0);
    let new_head = t.dir.path().join("copy.audit-head");
    std::fs::copy(&head_file, &new_head).unwrap();
    let mut store =
        Store::open_with(db.url(), AuditSettings { key: Some(key.clone()), head_file: Some(new_head.clone()) })
            .unwrap();
    store
        .write(|tx| {
            let raw = tx.insert_raw(&NewRaw {
                bytes: b"a delivery after the move",
                format: None,
                personal: &[],
                received_at: jiff::Timestamp::now(),
            })?;
            tx.insert_receipt(&NewReceipt {
                raw_id: raw.id,
                received_at: jiff::Timestamp::now(),
                source: Source::File,
                origin: "after-move.txt".to_owned(),
                instrument: None,
            })?;
            tx.upsert_participant(&Participant { code: "U09".to_owned(), site: None })
        })
        .unwrap();
    drop(store);
    let new_raw: i64 = client.query_one("SELECT max(id) FROM raw", &[]).unwrap().get(0);
    let new_participant: i64 =
        client.query_one("SELECT rowid FROM participant WHERE code = 'U09'", &[]).unwrap().get(0);
    assert_eq!(new_raw, max_raw + 1);
    assert_eq!(new_participant, max_participant + 1);
    let after = Store::open_read_only(db.url()).unwrap().verify_integrity(Some(&key), &new_head).unwrap();
    assert_eq!(after.problem, None);
    assert!(after.chain.head.as_ref().unwrap().0 > seq, "the chain went on from the copied head");
    assert_eq!(source_files(&t), before, "writing to the copy leaves the source alone");
}

#[test]
fn a_target_that_is_not_empty_is_refused_and_left_as_it_was() {
    let Some(db) = TestDb::create() else { return };
    let t = rich_study();
    ok(&t.run(&["migrate-store", "--to", &db.url()]));
    let mut client = db.connect();
    let dump = |client: &mut Client| COPY_ORDER.iter().map(|table| pg_rows(client, table)).collect::<Vec<_>>();
    let before = dump(&mut client);

    let out = t.run(&["migrate-store", "--to", &url_with_password(&db)]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains(&format!("{} is not empty", db.url())), "{said}");
    assert!(!said.contains(PASSWORD), "{said}");
    assert_eq!(dump(&mut client), before, "the target is unchanged");

    // A database with someone else's tables is refused too.
    let Some(other) = TestDb::create() else { return };
    other.connect().batch_execute("CREATE TABLE patients (id BIGINT)").unwrap();
    let out = t.run(&["migrate-store", "--to", &other.url()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("not a labfeed database"), "{}", text(&out));
}

#[test]
fn a_copy_that_fails_half_way_leaves_the_target_empty() {
    let Some(db) = TestDb::create() else { return };
    let t = rich_study();
    let mut client = db.connect();
    pg::migrate(&mut client).unwrap();
    // The server refuses results: everything before them must go too.
    client
        .batch_execute(
            "CREATE FUNCTION no_results() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION 'no results here'; END; $$;
             CREATE TRIGGER no_results BEFORE INSERT ON result FOR EACH ROW EXECUTE FUNCTION no_results();",
        )
        .unwrap();
    let out = t.run(&["migrate-store", "--to", &db.url()]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("copying table result"), "{said}");
    for table in COPY_ORDER {
        assert_eq!(row_count(&mut client, table), 0, "{table} is empty after the failed copy");
    }
}

#[test]
fn a_source_that_does_not_verify_is_not_copied() {
    let Some(db) = TestDb::create() else { return };
    let t = rich_study();
    let lite = rusqlite::Connection::open(t.lib("labfeed.db")).unwrap();
    lite.execute_batch("DROP TRIGGER result_no_update; UPDATE result SET value = 9.9 WHERE id = 1;").unwrap();
    drop(lite);
    let out = t.run(&["migrate-store", "--to", &db.url()]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("source NOT verified: trigger result_no_update is missing"), "{said}");
    let tables: i64 = db
        .connect()
        .query_one("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'", &[])
        .unwrap()
        .get(0);
    assert_eq!(tables, 0, "the target was not touched");
}

#[test]
fn the_source_must_be_an_sqlite_file_and_the_target_a_url() {
    let t = TempStudy::new(&[]);
    let out = t.run(&["migrate-store", "--to", "/tmp/elsewhere.db"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--to must be a postgresql:// URL"), "{}", text(&out));

    let url = format!("postgresql://site:{PASSWORD}@127.0.0.1:5432/study");
    let on_pg = TempStudy::new(&[]);
    let config = std::fs::read_to_string(&on_pg.config).unwrap();
    let config: Vec<String> = config
        .lines()
        .map(|line| if line.starts_with("database = ") { format!("database = \"{url}\"") } else { line.to_owned() })
        .collect();
    std::fs::write(&on_pg.config, config.join("\n")).unwrap();
    let out = on_pg.run(&["migrate-store", "--to", &format!("{SERVER}/other")]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("is already a PostgreSQL database (postgresql://site@127.0.0.1:5432/study)"), "{said}");
    assert!(!said.contains(PASSWORD), "{said}");
}

/// How long a copy of a study of 100 000 results takes (run by hand:
/// `cargo test --release --test integration migrate_store::measure -- --ignored --nocapture`).
/// The rows are made with SQL, so the chain is not a real one: this times
/// the copy, not the verification.
#[test]
#[ignore]
fn measure_a_copy_of_100_000_results() {
    let Some(db) = TestDb::create() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("labfeed.db");
    drop(Store::open(&path).unwrap());
    let lite = rusqlite::Connection::open(&path).unwrap();
    lite.execute_batch(
        "BEGIN;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
         INSERT INTO participant (code) SELECT printf('P%04d', i) FROM n;
         INSERT INTO visit (participant, visit) SELECT code, 'V0' FROM participant;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000)
         INSERT INTO raw (digest, size, format, content, masked, first_received_unix)
         SELECT unhex(printf('%064d', i)), 300, 'hl7', randomblob(300), '', unixepoch('2026-03-02T10:00:00Z') FROM n;
         INSERT INTO receipt (raw_id, received_unix, source, origin)
         SELECT id, unixepoch('2026-03-02T10:00:00Z'), 'file', 'f.hl7' FROM raw;
         INSERT INTO processing (receipt_id, processed_unix, outcome_code, accepted, duplicates, mismatches, qc, errors)
         SELECT id, unixepoch('2026-03-02T10:00:01Z'), 0, 10, 0, 0, 0, 0 FROM receipt;
         INSERT INTO message (raw_id, number, span_start, span_end, format, sender, control_id)
         SELECT id, 1, 0, 300, 'hl7', 'LAB', 'C' || id FROM raw;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
         INSERT INTO observation (message_id, seq, byte_offset, instrument, sample_id, test_code, reported_value,
             reported_unit, reported_numeric, status, collected_secs, qc, participant, visit, minute, analyte, value,
             unit, blq, outcome_code)
         SELECT (i - 1) / 10 + 1, (i - 1) % 10 + 1, 40, 'central', 'S' || i, '1986-9', '0.25', 'nmol/L', '0.25', 'F',
             '2026-03-02T08:30:00Z', 0, printf('P%04d', (i - 1) % 1000 + 1), 'V0', (i - 1) / 1000, 'c_peptide', 0.25,
             'nmol/L', 0, 0 FROM n;
         INSERT INTO result (observation_id, participant, visit, minute, analyte, value, unit, blq, version,
             accepted_unix, accepted_by, reason)
         SELECT id, participant, visit, minute, analyte, value, unit, 0, 1, unixepoch('2026-03-02T10:00:01Z'), 'labfeed',
             'ingest'
         FROM observation;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 220000)
         INSERT INTO audit_log (seq, at, actor, action, entity, entity_id, detail, prev_hash, hash)
         SELECT i, '2026-03-02T10:00:01Z', 'labfeed', 'accept', 'result', i,
             '{\"participant\":\"P0001\",\"visit\":\"V0\",\"minute\":30,\"value\":0.25}', printf('%064d', i - 1),
             printf('%064d', i) FROM n;
         COMMIT;",
    )
    .unwrap();
    drop(lite);
    let started = std::time::Instant::now();
    let mut progress = |p: labfeed::store::Progress| {
        if p.done {
            println!("{}: {} rows at {:?}", p.table, p.rows, started.elapsed());
        }
    };
    let copied = Store::copy_to_postgres(&path, &db.url(), &mut progress).unwrap();
    let copy_time = started.elapsed();
    let total: u64 = copied.tables.iter().map(|t| t.rows).sum();
    let check = labfeed::store::verify_copy(&copied, &db.url(), None, &dir.path().join("none")).unwrap();
    println!(
        "copied {total} rows in {copy_time:?}; checked in {:?} ({:?})",
        started.elapsed() - copy_time,
        check.problem
    );
}

#[test]
fn a_study_whose_daemon_runs_is_not_copied() {
    let Some(db) = TestDb::create() else { return };
    let study = super::daemon::Study::build(&[], |_| {});
    let daemon = study.start();
    let out = study.command(&["migrate-store", "--to", &db.url()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stop it first"), "{}", text(&out));
    assert!(super::daemon::stop(daemon).success());
    let mut client = db.connect();
    let tables: i64 = client
        .query_one("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'", &[])
        .unwrap()
        .get(0);
    assert_eq!(tables, 0, "the target was not touched");
}
