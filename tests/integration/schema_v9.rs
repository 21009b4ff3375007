//! Schema 9 (issue 16): a study written under schema 8 is migrated (to the
//! latest schema), keeps every row under the same id, answers the same, and
//! its audit chain still verifies; contents are still stored once, found
//! through the smaller index (schema 10's, of the hash's bytes).

use std::path::Path;

use labfeed::store::Store;
use rusqlite::Connection;

use super::central::{on_postgres, outputs, scenario};
use super::postgres::TestDb;
use super::support::{TempStudy, central, ingest_bytes, raw_copies, text};

/// Put an SQLite study back into the form schema 8 gave it: `raw.sha256`
/// UNIQUE (SQLite's own index), the slot index of observations, no hash
/// prefix index or trigger. Schema 9 changed no row, so this is the file
/// labfeed of schema 8 would have written.
fn back_to_schema_8(path: &Path) {
    super::schema_v10::back_to_schema_9(path);
    let conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "foreign_keys", false).unwrap();
    conn.execute_batch(
        "BEGIN;
         DROP TRIGGER raw_sha256_unique;
         DROP INDEX raw_sha256_prefix;
         CREATE TABLE raw_v8 (
             id          INTEGER PRIMARY KEY,
             sha256      TEXT NOT NULL UNIQUE CHECK (length(sha256) = 64),
             size        INTEGER NOT NULL CHECK (size >= 0),
             format      TEXT CHECK (format IN ('astm', 'hl7')),
             content     BLOB NOT NULL,
             masked      TEXT NOT NULL DEFAULT '',
             first_received_at TEXT NOT NULL,
             encoding    TEXT CHECK (encoding IS NULL OR encoding = 'deflate')
         ) STRICT;
         INSERT INTO raw_v8 SELECT * FROM raw ORDER BY id;
         DROP TABLE raw;
         ALTER TABLE raw_v8 RENAME TO raw;
         CREATE TRIGGER raw_no_update BEFORE UPDATE ON raw
         BEGIN SELECT RAISE(ABORT, 'raw is append-only: received content is never changed'); END;
         CREATE TRIGGER raw_no_delete BEFORE DELETE ON raw
         BEGIN SELECT RAISE(ABORT, 'raw is append-only: received content is never deleted'); END;
         CREATE INDEX observation_slot ON observation (participant, visit, minute, analyte);
         PRAGMA user_version = 8;
         COMMIT;",
    )
    .unwrap();
}

fn names(conn: &Connection, kind: &str) -> Vec<String> {
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = ?1 AND tbl_name IN ('raw', 'observation') ORDER BY name")
        .unwrap();
    stmt.query_map([kind], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

/// Every raw row as stored: id, hash, size and the copy read back.
fn raw_rows(conn: &Connection) -> Vec<(i64, String, i64, Vec<u8>)> {
    let copies = raw_copies(conn);
    let mut stmt = conn.prepare("SELECT id, sha256, size FROM raw ORDER BY id").unwrap();
    let rows: Vec<(i64, String, i64)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect();
    rows.into_iter().zip(copies).map(|((id, sha, size), copy)| (id, sha, size, copy)).collect()
}

#[test]
fn a_schema_8_study_migrates_keeps_its_rows_and_answers_and_its_chain_verifies() {
    let t = TempStudy::new(&[("settle_seconds = 1.0", "settle_seconds = 0.1")]);
    scenario(&t);
    let before = outputs(&t);
    let db = t.lib("labfeed.db");
    back_to_schema_8(&db);
    let (rows_before, indexes_8) = {
        let conn = Connection::open(&db).unwrap();
        let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(v, 8);
        (raw_rows(&conn), names(&conn, "index"))
    };
    assert!(indexes_8.contains(&"observation_slot".to_owned()), "{indexes_8:?}");
    assert!(indexes_8.contains(&"sqlite_autoindex_raw_1".to_owned()), "{indexes_8:?}");
    assert!(rows_before.len() >= 8, "{} contents", rows_before.len());

    // Opening it as a writer (the daemon, `ingest`) migrates it.
    drop(Store::open(&db).unwrap());
    let conn = Connection::open(&db).unwrap();
    let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(v, labfeed::store::latest_version());
    assert_eq!(names(&conn, "index"), ["raw_digest_prefix", "sqlite_autoindex_observation_1"]);
    assert_eq!(
        names(&conn, "trigger"),
        ["observation_no_delete", "observation_no_update", "raw_digest_unique", "raw_no_delete", "raw_no_update"]
    );
    assert_eq!(raw_rows(&conn), rows_before, "the same contents under the same ids");
    // Exports, reports and verify-audit's verdict (the chain's digests are
    // over rows that did not change) are the same.
    assert_eq!(outputs(&t), before);

    // A content is found by its hash through the prefix index, and stored once.
    let plan: Vec<String> = conn
        .prepare(
            "EXPLAIN QUERY PLAN SELECT id FROM raw WHERE substr(digest, 1, 8) = substr(unhex(?1), 1, 8) AND digest = unhex(?1)",
        )
        .unwrap()
        .query_map([&rows_before[0].1], |r| r.get(3))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(plan.iter().any(|step| step.contains("USING INDEX raw_digest_prefix")), "{plan:?}");
    conn.execute_batch("BEGIN").unwrap();
    let again = conn.execute(
        "INSERT INTO raw (digest, size, content, first_received_unix)
         SELECT digest, size, content, first_received_unix FROM raw WHERE id = ?1",
        [rows_before[0].0],
    );
    let refused = again.unwrap_err().to_string();
    assert!(refused.contains("UNIQUE constraint failed: raw.sha256"), "{refused}");
    // The same prefix with another hash is another content.
    let mut other = rows_before[0].1.clone();
    other.replace_range(63.., if other.ends_with('0') { "1" } else { "0" });
    conn.execute(
        "INSERT INTO raw (digest, size, content, first_received_unix)
         VALUES (unhex(?1), 1, x'00', '2026-03-02T10:00:00Z')",
        [&other],
    )
    .unwrap();
    conn.execute_batch("ROLLBACK").unwrap();
    drop(conn);

    // Ingest goes on: a known file is a duplicate, a new one is stored, and
    // the chain verifies.
    let known = std::fs::read(t.dir.path().join("C1")).unwrap();
    let said = ingest_bytes(&t, "C1-again", &known);
    assert!(said.contains("duplicate"), "{said}");
    let new = central("C9", "U04", "S-97", "20260302083000", "0.42");
    ingest_bytes(&t, "C9", new.as_bytes());
    let conn = Connection::open(&db).unwrap();
    assert_eq!(raw_rows(&conn).len(), rows_before.len() + 1);
    let verify = t.run(&["verify-audit"]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
}

#[test]
fn a_postgresql_schema_2_study_migrates_to_3_and_answers_the_same() {
    let Some(db) = TestDb::create() else { return };
    let t = on_postgres(&db, "site-a");
    scenario(&t);
    let before = outputs(&t);
    // Back to schema 2, as labfeed of SQLite schema 8 left it: the slot
    // index of observations (schema 3 changed no row).
    let mut client = db.connect();
    client
        .batch_execute(
            "CREATE INDEX observation_slot ON observation (participant, visit, minute, analyte);
             DELETE FROM labfeed_schema WHERE version = 3;",
        )
        .unwrap();
    assert_eq!(labfeed::store::postgres::schema_version(&mut client).unwrap(), Some(2));

    drop(Store::open(db.url()).unwrap());
    assert_eq!(labfeed::store::postgres::schema_version(&mut client).unwrap(), Some(3));
    let slot_index: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public' AND indexname = 'observation_slot'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(slot_index, 0);
    assert_eq!(outputs(&t), before, "exports, reports and verify-audit's verdict");
}
