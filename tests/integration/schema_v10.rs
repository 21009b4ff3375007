//! Schema 10 (issue 16): hashes, times and outcomes kept compact in SQLite, read
//! back as the same text. A study written under schema 9 is migrated, keeps
//! every row under the same id with the same text, answers the same, and its
//! audit chain still verifies; a compact value changed behind labfeed's back
//! is found, in an old row and in a new one.

use std::path::Path;

use labfeed::store::{MIGRATIONS, Store};
use rusqlite::Connection;

use super::central::{outputs, scenario};
use super::support::{TempStudy, central, ingest_bytes, text};

/// The tables schema 10 rebuilt, and their columns as users read them.
const TEXT_COLUMNS: &[(&str, &str)] = &[
    ("raw", "id, sha256, size, format, content, masked, first_received_at, encoding"),
    ("receipt", "id, raw_id, received_at, source, origin, instrument, instance"),
    ("processing", "receipt_id, processed_at, outcome, accepted, duplicates, mismatches, qc, errors, detail"),
    (
        "observation",
        "id, message_id, seq, byte_offset, instrument, sample_id, test_code, reported_value, reported_unit, \
         comparator, reported_numeric, flags, status, collected_at, resulted_at, qc, participant, visit, minute, \
         analyte, value, unit, blq, outcome, collected_offset",
    ),
    (
        "result",
        "id, observation_id, participant, visit, minute, analyte, value, unit, comparator, blq, version, supersedes, \
         accepted_at, accepted_by, reason, withdrawn, unfilled",
    ),
];

/// Put an SQLite study back into the form schema 9 gave it: the five tables
/// (with their indexes, triggers and the view over `result`) as labfeed's
/// own first nine migrations create them, holding the same rows as text.
pub fn back_to_schema_9(path: &Path) {
    let fresh = Connection::open_in_memory().unwrap();
    for m in &MIGRATIONS[..9] {
        fresh.execute_batch(m.sql).unwrap();
    }
    let tables: Vec<&str> = TEXT_COLUMNS.iter().map(|(t, _)| *t).collect();
    let sql_of = |kind: &str| -> Vec<String> {
        let mut stmt = fresh
            .prepare("SELECT tbl_name, sql FROM sqlite_schema WHERE type = ?1 AND sql IS NOT NULL ORDER BY name")
            .unwrap();
        stmt.query_map([kind], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .filter(|(table, _)| tables.contains(&table.as_str()) || kind == "view")
            .map(|(_, sql)| sql)
            .collect()
    };
    let mut script = String::from("BEGIN; DROP VIEW current_result; DROP VIEW open_mismatch;\n");
    for (table, _) in TEXT_COLUMNS {
        script.push_str(&format!("ALTER TABLE {table} RENAME TO {table}_v10;\n"));
    }
    for sql in sql_of("table") {
        script.push_str(&format!("{sql};\n"));
    }
    for (table, columns) in TEXT_COLUMNS {
        script.push_str(&format!("INSERT INTO {table} ({columns}) SELECT {columns} FROM {table}_v10 ORDER BY 1;\n"));
    }
    for (table, _) in TEXT_COLUMNS.iter().rev() {
        script.push_str(&format!("DROP TABLE {table}_v10;\n"));
    }
    for kind in ["index", "trigger", "view"] {
        for sql in sql_of(kind) {
            script.push_str(&format!("{sql};\n"));
        }
    }
    script.push_str("PRAGMA user_version = 9; COMMIT;");
    let conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "foreign_keys", false).unwrap();
    // Renaming a table would rewrite the references to it in the others.
    conn.pragma_update(None, "legacy_alter_table", true).unwrap();
    conn.execute_batch(&script).unwrap();
}

/// Every row of the five tables, each value tagged with its type.
fn text_rows(conn: &Connection) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for (table, columns) in TEXT_COLUMNS {
        let sql = format!("SELECT {columns} FROM {table} ORDER BY 1");
        let mut stmt = conn.prepare(&sql).unwrap();
        let n = stmt.column_count();
        let all = stmt
            .query_map([], |r| {
                (0..n)
                    .map(|i| {
                        Ok(match r.get_ref(i)? {
                            rusqlite::types::ValueRef::Null => "NULL".to_owned(),
                            rusqlite::types::ValueRef::Integer(x) => format!("i{x}"),
                            rusqlite::types::ValueRef::Real(x) => format!("r{x}"),
                            rusqlite::types::ValueRef::Text(t) => format!("t{}", String::from_utf8_lossy(t)),
                            rusqlite::types::ValueRef::Blob(b) => format!("b{b:?}"),
                        })
                    })
                    .collect::<rusqlite::Result<Vec<String>>>()
            })
            .unwrap();
        for row in all {
            let mut row = row.unwrap();
            row.insert(0, (*table).to_owned());
            rows.push(row);
        }
    }
    rows
}

fn scalar(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn a_schema_9_study_migrates_with_the_same_rows_read_as_the_same_text() {
    let t = TempStudy::new(&[("settle_seconds = 1.0", "settle_seconds = 0.1")]);
    scenario(&t);
    let db = t.lib("labfeed.db");
    back_to_schema_9(&db);
    let rows_before = {
        let conn = Connection::open(&db).unwrap();
        assert_eq!(scalar(&conn, "PRAGMA user_version"), 9);
        assert_eq!(scalar(&conn, "SELECT count(*) FROM pragma_table_info('raw') WHERE name = 'sha256'"), 1);
        text_rows(&conn)
    };
    assert!(rows_before.len() >= 30, "{} rows", rows_before.len());
    // A time labfeed never wrote (a fraction of a second) is kept as it was.
    Connection::open(&db)
        .unwrap()
        .execute_batch(
            "DROP TRIGGER receipt_no_update;
             UPDATE receipt SET received_at = '2026-03-02T10:00:00.5Z' WHERE id = 1;",
        )
        .unwrap();

    // Opening it as a writer migrates it (rebuilding `receipt` with its
    // triggers); the same rows under the same ids read as the same text,
    // now from the compact columns.
    drop(Store::open(&db).unwrap());
    let conn = Connection::open(&db).unwrap();
    assert_eq!(scalar(&conn, "PRAGMA user_version"), labfeed::store::latest_version());
    let rows_after = text_rows(&conn);
    assert_eq!(scalar(&conn, "SELECT typeof(received_unix) = 'text' FROM receipt WHERE id = 1"), 1);
    assert_eq!(scalar(&conn, "SELECT count(*) FROM receipt WHERE id > 1 AND typeof(received_unix) <> 'integer'"), 0);
    assert_eq!(scalar(&conn, "SELECT count(*) FROM raw WHERE length(digest) <> 32"), 0);
    let mut expected = rows_before.clone();
    for row in expected.iter_mut().filter(|r| r[0] == "receipt" && r[1] == "i1") {
        row[3] = "t2026-03-02T10:00:00.5Z".to_owned();
    }
    assert_eq!(rows_after, expected, "the same rows, the same text");
    drop(conn);
    // The changed time is not what the chain vouched for: verify-audit says
    // so (receipt 1).
    let verify = t.run(&["verify-audit"]);
    assert_eq!(verify.status.code(), Some(1), "{}", text(&verify));
    assert!(text(&verify).contains("receipt"), "{}", text(&verify));
}

#[test]
fn a_migrated_study_answers_the_same_verifies_and_goes_on() {
    let t = TempStudy::new(&[("settle_seconds = 1.0", "settle_seconds = 0.1")]);
    scenario(&t);
    let before = outputs(&t);
    let db = t.lib("labfeed.db");
    back_to_schema_9(&db);
    drop(Store::open(&db).unwrap());
    // Exports, reports and verify-audit's verdict: the chain's digests are
    // over the text, which did not change.
    assert_eq!(outputs(&t), before);

    // Ingest goes on: a known file is a duplicate, a new one is stored
    // compact, and the chain verifies.
    let known = std::fs::read(t.dir.path().join("C1")).unwrap();
    let said = ingest_bytes(&t, "C1-again", &known);
    assert!(said.contains("duplicate"), "{said}");
    let new = central("C9", "U04", "S-97", "20260302083000", "0.42");
    ingest_bytes(&t, "C9", new.as_bytes());
    let verify = t.run(&["verify-audit"]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    let conn = Connection::open(&db).unwrap();
    for (table, column) in labfeed::store::COMPACT_COLUMNS {
        let text_kept = scalar(
            &conn,
            &format!("SELECT count(*) FROM {table} WHERE typeof({column}) = 'text' AND length({column}) IN (19, 20)"),
        );
        assert_eq!(text_kept, 0, "{table}.{column}: every whole second is kept as a number");
    }
    let sent: i64 = scalar(&conn, "SELECT count(*) FROM observation WHERE typeof(collected_secs) = 'integer'");
    assert!(sent > 0, "collection times sent to the second are numbers");

    // A content is found by its hash through the index of its first bytes,
    // and stored once.
    let sha: String = conn.query_row("SELECT sha256 FROM raw ORDER BY id DESC LIMIT 1", [], |r| r.get(0)).unwrap();
    let plan: Vec<String> = conn
        .prepare("EXPLAIN QUERY PLAN SELECT id FROM raw WHERE substr(digest, 1, 8) = substr(?1, 1, 8) AND digest = ?1")
        .unwrap()
        .query_map([vec![0u8; 32]], |r| r.get(3))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(plan.iter().any(|step| step.contains("USING INDEX raw_digest_prefix")), "{plan:?}");
    let again = conn.execute(
        "INSERT INTO raw (digest, size, content, first_received_unix) VALUES (unhex(?1), 1, x'00', 0)",
        [&sha],
    );
    assert!(again.unwrap_err().to_string().contains("UNIQUE constraint failed: raw.sha256"));
    assert!(
        conn.execute(
            "INSERT INTO raw (sha256, digest, size, content, first_received_unix) VALUES ('', x'', 1, x'', 0)",
            []
        )
        .is_err(),
        "sha256 is computed, never written"
    );

    // Tampering with a compact column, in a migrated row and in a new one,
    // is found; undone, the study verifies again.
    let newest: i64 = conn.query_row("SELECT max(id) FROM raw", [], |r| r.get(0)).unwrap();
    for (table, change, undo) in [
        ("result", "accepted_unix = accepted_unix + 1 WHERE id = 1", "accepted_unix = accepted_unix - 1 WHERE id = 1"),
        (
            "raw",
            &*format!("digest = zeroblob(32) WHERE id = {newest}"),
            &*format!("digest = unhex('{sha}') WHERE id = {newest}"),
        ),
    ] {
        let trigger: String = conn
            .query_row("SELECT sql FROM sqlite_schema WHERE name = ?1", [format!("{table}_no_update")], |r| r.get(0))
            .unwrap();
        // Behind labfeed's back, its trigger put back as it was.
        let update = |set: &str| {
            conn.execute_batch(&format!("DROP TRIGGER {table}_no_update; UPDATE {table} SET {set}; {trigger};"))
                .unwrap()
        };
        update(change);
        let verify = t.run(&["verify-audit"]);
        assert_eq!(verify.status.code(), Some(1), "{table}: {}", text(&verify));
        assert!(text(&verify).contains(table), "{table}: {}", text(&verify));
        update(undo);
        let verify = t.run(&["verify-audit"]);
        assert_eq!(verify.status.code(), Some(0), "{table} undone: {}", text(&verify));
    }
}
