//! The study database on real SQLite files: migrations, durability settings,
//! append-only tables, result versions, audited study data, the audit chain,
//! masking, concurrent reading and blindness.

use std::path::{Path, PathBuf};

use labfeed::model::Format;
use labfeed::store::*;
use labfeed::value::{Comparator, Number};
use rusqlite::Connection;
use tempfile::TempDir;

fn temp_db() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("labfeed.db");
    (dir, path)
}

fn raw_conn(path: &Path) -> Connection {
    Connection::open(path).unwrap()
}

fn count(conn: &Connection, table: &str) -> i64 {
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).unwrap()
}

fn time(text: &str) -> jiff::Timestamp {
    text.parse().unwrap()
}

fn participant(code: &str) -> Participant {
    Participant { code: code.to_owned(), site: Some("Lund".to_owned()) }
}

/// One arrival of `bytes`, one message in it. Returns (raw, receipt, message).
fn arrival(tx: &mut Tx<'_>, bytes: &[u8]) -> (RawId, ReceiptId, MessageId) {
    let raw = tx
        .insert_raw(&NewRaw {
            bytes,
            format: Some(Format::Astm),
            personal: &[],
            received_at: time("2026-03-02T08:00:00Z"),
        })
        .unwrap();
    let receipt = tx
        .insert_receipt(&NewReceipt {
            raw_id: raw.id,
            received_at: time("2026-03-02T08:00:00Z"),
            source: Source::File,
            origin: "in/a.astm".to_owned(),
            instrument: None,
        })
        .unwrap();
    let message = tx
        .insert_message(&NewMessage {
            raw_id: raw.id,
            number: 1,
            span: 0..bytes.len(),
            format: Some(Format::Astm),
            sender: Some("cobas-e411".to_owned()),
            control_id: None,
            error: None,
            error_offset: None,
        })
        .unwrap();
    (raw.id, receipt, message)
}

fn observation(tx: &mut Tx<'_>, message: MessageId, seq: u32, slot: &Slot, value: f64) -> ObservationId {
    tx.insert_observation(&NewObservation {
        message_id: message,
        seq,
        byte_offset: 10 * seq as usize,
        instrument: Some("cobas-e411".to_owned()),
        sample_id: Some(format!("{}-{}-T{:03}", slot.participant, slot.visit, slot.minute)),
        test_code: Some("CPEP".to_owned()),
        reported_value: Some(value.to_string()),
        reported_unit: Some("nmol/L".to_owned()),
        comparator: None,
        reported_numeric: Number::parse(&value.to_string(), false),
        flags: None,
        status: Some("F".to_owned()),
        collected_at: labfeed::timestamp::Timestamp::parse("20260302084500").unwrap(),
        collected_offset: None,
        resulted_at: None,
        qc: false,
        matched: Matched {
            participant: Some(slot.participant.clone()),
            visit: Some(slot.visit.clone()),
            minute: Some(slot.minute),
            analyte: Some(slot.analyte.clone()),
            value: Some(value),
            unit: Some("nmol/L".to_owned()),
            blq: Some(false),
        },
        outcome: ObservationOutcome::Accepted,
    })
    .unwrap()
}

fn new_result(observation_id: ObservationId, slot: &Slot, value: f64, reason: &str) -> NewResult {
    NewResult {
        observation_id,
        slot: slot.clone(),
        value,
        unit: "nmol/L".to_owned(),
        comparator: None,
        blq: false,
        reason: reason.to_owned(),
    }
}

fn mismatch(receipt: ReceiptId, slot: &Slot, code: MismatchCode) -> NewMismatch {
    NewMismatch {
        code,
        holds: code.holds_by_default(),
        observation_id: None,
        message_id: None,
        receipt_id: receipt,
        participant: Some(slot.participant.clone()),
        visit: Some(slot.visit.clone()),
        minute: Some(slot.minute),
        analyte: Some(slot.analyte.clone()),
        detail: format!("{code} for {slot}"),
    }
}

/// A database with one of everything; returns the slot that has two versions.
fn populated(store: &mut Store) -> Slot {
    let slot = Slot::new("U07", "V4", 30, "c_peptide");
    store
        .write(|tx| {
            tx.upsert_participant(&participant("U07"))?;
            tx.upsert_visit(&Visit { participant: "U07".into(), visit: "V4".into(), meal_start: None })?;
            tx.upsert_sample(&Sample {
                sample_id: "U07-V4-T030".into(),
                participant: "U07".into(),
                visit: "V4".into(),
                minute: 30,
            })?;
            let (_, receipt, message) = arrival(tx, b"H|\\^&|||cobas-e411\rL|1|N\r");
            tx.insert_processing(&NewProcessing {
                receipt_id: receipt,
                outcome: ProcessingOutcome::Processed,
                accepted: 1,
                duplicates: 0,
                mismatches: 1,
                qc: 0,
                errors: 0,
                detail: None,
            })?;
            let o1 = observation(tx, message, 1, &slot, 0.5);
            let r1 = tx.insert_result(&new_result(o1, &slot, 0.5, "ingest"))?;
            let o2 = observation(tx, message, 2, &slot, 0.6);
            tx.insert_result(&new_result(o2, &slot, 0.6, "correction"))?;
            let m = tx.insert_mismatch(&mismatch(receipt, &slot, MismatchCode::DuplicateConflict))?;
            tx.insert_resolution(&NewResolution {
                mismatch_id: m,
                action: ResolutionAction::Accept,
                participant: None,
                visit: None,
                minute: None,
                result_id: Some(r1.id),
                reason: "checked with the lab".into(),
                cause: None,
            })?;
            Ok(())
        })
        .unwrap();
    slot
}

#[test]
fn a_new_file_is_migrated_to_the_latest_version_and_reopening_changes_nothing() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), latest_version());
    assert_eq!(latest_version(), 10);
    drop(store);

    let conn = raw_conn(&path);
    let schema = |conn: &Connection| -> Vec<(String, String)> {
        let mut stmt = conn.prepare("SELECT name, sql FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY name").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
    };
    let before = schema(&conn);
    assert!(before.iter().any(|(name, _)| name == "current_result"));
    let user_version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(user_version, latest_version());

    for _ in 0..2 {
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), latest_version());
    }
    assert_eq!(schema(&conn), before);
    assert_eq!(count(&conn, "audit_log"), 0, "opening is not a change");

    // With no writer open (no -wal/-shm files), a read-only open works too.
    drop(conn);
    let reader = Store::open_read_only(&path).unwrap();
    assert_eq!(reader.schema_version().unwrap(), latest_version());
    assert!(!reader.read(|r| r.participant_exists("U01")).unwrap());
    assert!(reader.verify_audit_chain().unwrap().is_intact());
}

#[test]
fn a_database_from_a_newer_labfeed_is_refused_with_a_clear_message() {
    let (_dir, path) = temp_db();
    drop(Store::open(&path).unwrap());
    raw_conn(&path).pragma_update(None, "user_version", latest_version() + 1).unwrap();

    let err = Store::open(&path).unwrap_err();
    assert!(
        matches!(err, StoreError::TooNew { found, known, .. } if known == latest_version() && found == known + 1),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("newer than this labfeed") && text.contains(&path.display().to_string()), "{text}");

    let err = Store::open_read_only(&path).unwrap_err();
    assert!(matches!(err, StoreError::TooNew { .. }), "{err:?}");
    // Refusing did not touch it.
    let uv: i64 = raw_conn(&path).pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(uv, latest_version() + 1);
}

#[test]
fn opening_a_missing_directory_or_a_non_database_names_the_path() {
    let (dir, _) = temp_db();
    let missing = dir.path().join("no/such/dir/labfeed.db");
    let err = Store::open(&missing).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    assert!(err.to_string().contains("no/such/dir/labfeed.db"), "{err}");

    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, b"this is not an SQLite database, just some text that is long enough").unwrap();
    let err = Store::open(&junk).unwrap_err();
    assert!(err.to_string().contains("junk.db"), "{err}");

    let err = Store::open_read_only(dir.path().join("absent.db")).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
}

#[test]
fn the_writer_uses_wal_full_sync_foreign_keys_and_a_busy_timeout() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path).unwrap();
    let settings = store.settings().unwrap();
    assert_eq!(settings.journal_mode, "WAL");
    assert_eq!(settings.synchronous, "FULL");
    assert!(settings.foreign_keys);
    assert_eq!(settings.busy_timeout_ms, 5000);
    // WAL is persistent in the file.
    let mode: String = raw_conn(&path).pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");

    // Foreign keys are enforced: a receipt of a content that does not exist.
    let err = store
        .write(|tx| {
            tx.insert_receipt(&NewReceipt {
                raw_id: RawId(42),
                received_at: jiff::Timestamp::now(),
                source: Source::Tcp,
                origin: "127.0.0.1:5001".into(),
                instrument: Some("cobas-e411".into()),
            })
        })
        .unwrap_err();
    assert!(err.constraint_message().is_some_and(|m| m.contains("FOREIGN KEY")), "{err:?}");
}

#[test]
fn every_append_only_table_refuses_update_and_delete() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path).unwrap();
    populated(&mut store);
    drop(store);
    let conn = raw_conn(&path);
    for table in
        ["raw", "receipt", "processing", "message", "observation", "result", "mismatch", "resolution", "audit_log"]
    {
        assert!(count(&conn, table) > 0, "{table} has a row to try on");
        let column = if table == "processing" {
            "detail"
        } else if table == "raw" {
            "masked"
        } else {
            "rowid"
        };
        let update = format!("UPDATE {table} SET {column} = {column}");
        let delete = format!("DELETE FROM {table}");
        for sql in [update, delete] {
            let err = conn.execute(&sql, []).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(&format!("{table} is append-only")), "{sql}: {text}");
            let err = StoreError::from(err);
            assert!(matches!(err, StoreError::Constraint { .. }), "{err:?}");
        }
        assert!(count(&conn, table) > 0);
    }
    // Study data can be corrected but never removed.
    for table in ["participant", "visit", "sample"] {
        let err = conn.execute(&format!("DELETE FROM {table}"), []).unwrap_err();
        assert!(err.to_string().contains("never deleted"), "{table}: {err}");
    }
}

#[test]
fn a_correction_is_a_new_version_that_supersedes_the_current_one() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path).unwrap();
    let slot = Slot::new("U07", "V4", 30, "c_peptide");
    let other = Slot::new("U07", "V4", 60, "c_peptide");
    let (first, second, third) = store
        .write(|tx| {
            tx.upsert_participant(&participant("U07"))?;
            let (_, _, message) = arrival(tx, b"one");
            assert_eq!(tx.current_result(&slot)?, None);
            let o = observation(tx, message, 1, &slot, 0.5);
            let first = tx.insert_result(&new_result(o, &slot, 0.5, "ingest"))?;
            let o = observation(tx, message, 2, &slot, 0.55);
            let second = tx.insert_result(&new_result(o, &slot, 0.55, "correction"))?;
            let o = observation(tx, message, 3, &other, 0.9);
            let third = tx.insert_result(&new_result(o, &other, 0.9, "ingest"))?;
            Ok((first, second, third))
        })
        .unwrap();
    assert_eq!((first.version, first.supersedes), (1, None));
    assert_eq!((second.version, second.supersedes), (2, Some(first.id)));
    assert_eq!((third.version, third.supersedes), (1, None), "another slot has its own versions");

    store
        .read(|r| {
            let current = r.current_result(&slot)?.unwrap();
            assert_eq!((current.id, current.version, current.value), (second.id, 2, 0.55));
            assert_eq!(current.accepted_by, "labfeed");
            assert_eq!(current.reason, "correction");
            let history = r.result_history(&slot)?;
            assert_eq!(history.iter().map(|h| h.version).collect::<Vec<_>>(), vec![1, 2]);
            assert_eq!(history[1].supersedes, Some(history[0].id));
            let all = r.current_results()?;
            assert_eq!(all.iter().map(|c| c.result.id).collect::<Vec<_>>(), vec![second.id, third.id]);
            assert_eq!(all[0].provenance.source, Some(Source::File));
            assert_eq!(all[0].provenance.test_code.as_deref(), Some("CPEP"));
            assert_eq!(all[0].provenance.collected_at.as_deref(), Some("2026-03-02T08:45:00"));
            assert_eq!(all[0].provenance.received_at, Some(time("2026-03-02T08:00:00Z")));
            // labfeed's own insert has no audit row of its own: its transaction's commit row vouches for it.
            assert!(r.audit_trail("result", &second.id.to_string())?.is_empty());
            Ok(())
        })
        .unwrap();

    // The view agrees, straight from SQL.
    let conn = raw_conn(&path);
    let ids: Vec<i64> = conn
        .prepare("SELECT id FROM current_result ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(ids, vec![second.id.get(), third.id.get()]);
}

#[test]
fn results_need_a_known_participant_and_a_finite_value() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path).unwrap();
    let slot = Slot::new("U99", "V1", 0, "glucose");
    let err = store
        .write(|tx| {
            let (_, _, message) = arrival(tx, b"x");
            let o = observation(tx, message, 1, &slot, 5.0);
            tx.insert_result(&new_result(o, &slot, 5.0, "ingest"))
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { entity: "participant", .. }), "{err:?}");
    let err = store
        .write(|tx| {
            tx.upsert_participant(&participant("U99"))?;
            let (_, _, message) = arrival(tx, b"x");
            let o = observation(tx, message, 1, &slot, 5.0);
            tx.insert_result(&new_result(o, &slot, f64::NAN, "ingest"))
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
}

#[test]
fn study_data_upserts_are_idempotent_and_audit_old_and_new_values() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path).unwrap();
    let meal = |t: &str| Some(t.parse::<labfeed::local_time::LocalTime>().unwrap());
    let visit = Visit { participant: "U07".into(), visit: "V0".into(), meal_start: meal("2026-03-02T07:45") };
    let sample = Sample { sample_id: "U07-V0-T000".into(), participant: "U07".into(), visit: "V0".into(), minute: 0 };
    let import = |store: &mut Store, visit: &Visit| {
        store
            .write(|tx| {
                Ok([tx.upsert_participant(&participant("U07"))?, tx.upsert_visit(visit)?, tx.upsert_sample(&sample)?])
            })
            .unwrap()
    };
    assert_eq!(import(&mut store, &visit), [Change::New; 3]);
    let conn = raw_conn(&path);
    assert_eq!(count(&conn, "audit_log"), 4, "three changes and the commit row");

    assert_eq!(import(&mut store, &visit), [Change::Unchanged; 3]);
    assert_eq!(count(&conn, "audit_log"), 4, "an identical import writes no audit row");

    let moved = Visit { meal_start: meal("2026-03-02T08:05"), ..visit.clone() };
    assert_eq!(import(&mut store, &moved), [Change::Unchanged, Change::Changed, Change::Unchanged]);
    assert_eq!(count(&conn, "audit_log"), 6, "the change and its commit row");
    let (action, entity, entity_id, detail): (String, String, String, String) = conn
        .query_row("SELECT action, entity, entity_id, detail FROM audit_log WHERE action <> 'commit' ORDER BY seq DESC LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .unwrap();
    assert_eq!((action.as_str(), entity.as_str(), entity_id.as_str()), ("import", "visit", "U07/V0"));
    let detail: serde_json::Value = serde_json::from_str(&detail).unwrap();
    assert_eq!(detail["change"], "changed");
    assert_eq!(detail["old"]["meal_start"], "2026-03-02T07:45:00");
    assert_eq!(detail["new"]["meal_start"], "2026-03-02T08:05:00");

    store
        .read(|r| {
            assert_eq!(r.visit("U07", "V0")?, Some(moved.clone()));
            assert_eq!(r.sample("U07-V0-T000")?, Some(sample.clone()));
            assert!(r.participant_exists("U07")?);
            assert!(!r.participant_exists("U08")?);
            assert_eq!(r.sample("nope")?, None);
            Ok(())
        })
        .unwrap();

    // A sample or visit of an unknown participant is refused in plain words.
    let err = store
        .write(|tx| {
            tx.upsert_sample(&Sample {
                sample_id: "X".into(),
                participant: "U08".into(),
                visit: "V0".into(),
                minute: 0,
            })
        })
        .unwrap_err();
    assert_eq!(err.to_string(), "participant U08 does not exist");
}

#[test]
fn raw_content_is_stored_once_by_sha256_of_the_original_bytes_and_masked() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path).unwrap();
    let bytes = b"H|\\^&|||cobas-e411\rP|1||PAT-7||Doe^Jane||19800101|F\rL|1|N\r";
    let find = |needle: &[u8]| bytes.windows(needle.len()).position(|w| w == needle).unwrap();
    let name = find(b"Doe^Jane")..find(b"Doe^Jane") + 8;
    let birth = find(b"19800101")..find(b"19800101") + 8;
    assert_eq!(&bytes[name.clone()], b"Doe^Jane");
    assert_eq!(&bytes[birth.clone()], b"19800101");
    let personal = [
        PersonalField { field: "P.6".into(), span: name.clone() },
        PersonalField { field: "P.8".into(), span: birth.clone() },
        PersonalField { field: "P.11".into(), span: 500..600 },
    ];
    let new = NewRaw { bytes, format: Some(Format::Astm), personal: &personal, received_at: jiff::Timestamp::now() };
    let (a, b) = store.write(|tx| Ok((tx.insert_raw(&new)?, tx.insert_raw(&new)?))).unwrap();
    assert!(a.new);
    assert_eq!(b, RawStored { id: a.id, new: false });
    let again = store.write(|tx| tx.insert_raw(&NewRaw { personal: &[], ..new.clone() })).unwrap();
    assert_eq!(again, RawStored { id: a.id, new: false }, "same bytes, same content, whatever the masking");

    let stored = store.read(|r| r.raw(a.id)).unwrap().unwrap();
    assert_eq!(stored.sha256, sha256_hex(bytes));
    assert_eq!(stored.size, bytes.len() as i64);
    assert_eq!(stored.content.len(), bytes.len());
    assert_eq!(stored.masked, "P.6,P.8");
    assert_eq!(stored.format, Some(Format::Astm));
    for (i, (&orig, &kept)) in bytes.iter().zip(&stored.content).enumerate() {
        if name.contains(&i) || birth.contains(&i) {
            assert_eq!(kept, b'*', "byte {i}");
        } else {
            assert_eq!(kept, orig, "byte {i}");
        }
    }
    let text = String::from_utf8(stored.content).unwrap();
    assert!(!text.contains("Doe") && !text.contains("1980"), "{text}");
    assert!(text.contains("PAT-7") && text.ends_with("L|1|N\r"));

    let conn = raw_conn(&path);
    assert_eq!(count(&conn, "raw"), 1);
    assert_eq!(store.read(|r| r.raw_id_by_sha256(&sha256_hex(bytes))).unwrap(), Some(a.id));
    assert_eq!(store.read(|r| r.raw_id_by_sha256(&sha256_hex(b"other"))).unwrap(), None);
    // The raw row says what was masked; the audit vouches for it by hash, never a copy.
    let masked: String = conn.query_row("SELECT masked FROM raw", [], |r| r.get(0)).unwrap();
    assert!(masked.contains("P.6,P.8"), "{masked}");
    let detail: String = conn.query_row("SELECT group_concat(detail) FROM audit_log", [], |r| r.get(0)).unwrap();
    assert!(detail.contains("\"raw\"") && !detail.contains("Doe") && !detail.contains("PAT-7"), "{detail}");
}

#[test]
fn receipts_without_processing_are_listed_for_reprocessing() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path).unwrap();
    let (r1, r2) = store
        .write(|tx| {
            let (raw, r1, _) = arrival(tx, b"content");
            let r2 = tx.insert_receipt(&NewReceipt {
                raw_id: raw,
                received_at: time("2026-03-02T09:00:00Z"),
                source: Source::Serial,
                origin: "/dev/ttyUSB0".into(),
                instrument: Some("cobas-e411".into()),
            })?;
            Ok((r1, r2))
        })
        .unwrap();
    let pending = store.read(|r| r.unprocessed_receipts()).unwrap();
    assert_eq!(pending.iter().map(|p| p.id).collect::<Vec<_>>(), vec![r1, r2]);
    assert_eq!(pending[1].source, Source::Serial);
    assert_eq!(pending[1].received_at, time("2026-03-02T09:00:00Z"));

    store
        .write(|tx| {
            tx.insert_processing(&NewProcessing {
                receipt_id: r1,
                outcome: ProcessingOutcome::Duplicate,
                accepted: 0,
                duplicates: 1,
                mismatches: 0,
                qc: 0,
                errors: 0,
                detail: None,
            })
        })
        .unwrap();
    let pending = store.read(|r| r.unprocessed_receipts()).unwrap();
    assert_eq!(pending.iter().map(|p| p.id).collect::<Vec<_>>(), vec![r2]);
}

#[test]
fn mismatches_stay_open_until_resolved_once() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path).unwrap();
    let slot = Slot::new("U07", "V4", 30, "c_peptide");
    let (window, conflict) = store
        .write(|tx| {
            tx.upsert_participant(&participant("U07"))?;
            let (_, receipt, _) = arrival(tx, b"m");
            let window = tx.insert_mismatch(&mismatch(receipt, &slot, MismatchCode::OutOfWindow))?;
            let conflict = tx.insert_mismatch(&mismatch(receipt, &slot, MismatchCode::DuplicateConflict))?;
            Ok((window, conflict))
        })
        .unwrap();
    store
        .read(|r| {
            assert_eq!(r.open_mismatches(&slot, None)?.len(), 2);
            let only = r.open_mismatches(&slot, Some(MismatchCode::DuplicateConflict))?;
            assert_eq!(only.iter().map(|m| m.id).collect::<Vec<_>>(), vec![conflict]);
            assert!(only[0].holds);
            assert!(!r.open_mismatches(&slot, Some(MismatchCode::OutOfWindow))?[0].holds);
            Ok(())
        })
        .unwrap();

    let resolve = |store: &mut Store| {
        store.write_as("A. Manager", |tx| {
            tx.insert_resolution(&NewResolution {
                mismatch_id: conflict,
                action: ResolutionAction::Reject,
                participant: None,
                visit: None,
                minute: None,
                result_id: None,
                reason: "haemolysed sample".into(),
                cause: None,
            })
        })
    };
    resolve(&mut store).unwrap();
    let err = resolve(&mut store).unwrap_err();
    assert!(matches!(err, StoreError::AlreadyResolved(id) if id == conflict), "{err:?}");

    store
        .read(|r| {
            assert_eq!(r.open_mismatches(&slot, None)?.iter().map(|m| m.id).collect::<Vec<_>>(), vec![window]);
            let resolved = r.mismatch(conflict)?.unwrap().resolution.unwrap();
            assert_eq!(resolved.resolved_by, "A. Manager");
            assert_eq!(resolved.action, ResolutionAction::Reject);
            assert_eq!(r.mismatch_report(false)?.len(), 1);
            let all = r.mismatch_report(true)?;
            assert_eq!(all.len(), 2);
            assert_eq!(all[0].provenance.source, Some(Source::File));
            let trail = r.audit_trail("resolution", &resolved.id.to_string())?;
            assert_eq!(trail[0].actor, "A. Manager");
            Ok(())
        })
        .unwrap();
    let err = store.write(|tx| {
        tx.insert_resolution(&NewResolution {
            mismatch_id: MismatchId(999),
            action: ResolutionAction::Accept,
            participant: None,
            visit: None,
            minute: None,
            result_id: None,
            reason: "x".into(),
            cause: None,
        })
    });
    assert!(matches!(err, Err(StoreError::NotFound { entity: "mismatch", .. })), "{err:?}");
}

#[test]
fn reports_list_in_a_neutral_order() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path).unwrap();
    // Inserted in an order that is not the report order.
    let slots = [
        Slot::new("U09", "V0", 0, "glucose"),
        Slot::new("U01", "V4", 30, "glucose"),
        Slot::new("U01", "V4", 30, "c_peptide"),
        Slot::new("U01", "V0", 120, "c_peptide"),
        Slot::new("U01", "V0", -10, "c_peptide"),
    ];
    store
        .write(|tx| {
            tx.upsert_participant(&participant("U01"))?;
            tx.upsert_participant(&participant("U09"))?;
            let (_, receipt, message) = arrival(tx, b"order");
            for (i, slot) in slots.iter().enumerate() {
                let o = observation(tx, message, i as u32 + 1, slot, 1.0);
                tx.insert_result(&new_result(o, slot, 1.0, "ingest"))?;
                tx.insert_mismatch(&mismatch(receipt, slot, MismatchCode::OutOfWindow))?;
            }
            Ok(())
        })
        .unwrap();
    let mut expected = slots.to_vec();
    expected.sort();
    let results: Vec<Slot> = store.read(|r| r.current_results()).unwrap().into_iter().map(|c| c.result.slot).collect();
    assert_eq!(results, expected);
    let mismatches: Vec<Slot> = store
        .read(|r| r.mismatch_report(false))
        .unwrap()
        .into_iter()
        .map(|m| {
            let m = m.mismatch;
            Slot::new(m.participant.unwrap(), m.visit.unwrap(), m.minute.unwrap(), m.analyte.unwrap())
        })
        .collect();
    assert_eq!(mismatches, expected);
}

#[test]
fn the_audit_chain_verifies_and_names_the_tampered_row() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path).unwrap();
    populated(&mut store);
    store
        .write(|tx| {
            for i in 0..40 {
                tx.upsert_participant(&Participant { code: format!("P{i:03}"), site: None })?;
            }
            Ok(())
        })
        .unwrap();
    let report = store.verify_audit_chain().unwrap();
    assert!(report.is_intact(), "{report:?}");
    let conn = raw_conn(&path);
    let rows = count(&conn, "audit_log");
    assert!(rows > 40);
    assert_eq!(report.rows_checked, rows as u64);
    let (head_seq, head_hash) = report.head.clone().unwrap();
    assert_eq!(head_seq, rows);
    let first_prev: String = conn.query_row("SELECT prev_hash FROM audit_log WHERE seq = 1", [], |r| r.get(0)).unwrap();
    assert_eq!(first_prev, GENESIS_HASH);
    let stored_head: String =
        conn.query_row("SELECT hash FROM audit_log WHERE seq = ?1", [head_seq], |r| r.get(0)).unwrap();
    assert_eq!(stored_head, head_hash);
    assert!(head_hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));

    // Someone with file access drops the trigger and edits one detail.
    let seq: i64 = conn
        .query_row("SELECT seq FROM audit_log WHERE entity = 'participant' AND entity_id = 'P020'", [], |r| r.get(0))
        .unwrap();
    assert!(seq > 1 && seq < rows);
    conn.execute_batch("DROP TRIGGER audit_log_no_update").unwrap();
    let changed =
        conn.execute("UPDATE audit_log SET detail = replace(detail, 'P020', 'P021') WHERE seq = ?1", [seq]).unwrap();
    assert_eq!(changed, 1);
    let report = verify_audit_chain(&conn, None).unwrap();
    let broken = report.broken.clone().unwrap();
    assert_eq!(broken.seq, seq, "{report:?}");
    assert!(matches!(broken.problem, ChainProblem::HashMismatch { .. }));
    assert_eq!(report.rows_checked, seq as u64);
    assert!(broken.to_string().contains(&format!("seq {seq}")), "{broken}");

    // Rewriting that row's hash too moves the break to the next row.
    let forged: (String, String, String, String, String, Option<String>, String) = conn
        .query_row(
            "SELECT prev_hash, at, actor, action, entity, entity_id, detail FROM audit_log WHERE seq = ?1",
            [seq],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)),
        )
        .unwrap();
    let hash = entry_hash(&forged.0, seq, &forged.1, &forged.2, &forged.3, &forged.4, forged.5.as_deref(), &forged.6);
    conn.execute("UPDATE audit_log SET hash = ?1 WHERE seq = ?2", rusqlite::params![hash, seq]).unwrap();
    let broken = store.verify_audit_chain().unwrap().broken.unwrap();
    assert_eq!(broken.seq, seq + 1);
    assert!(matches!(broken.problem, ChainProblem::PrevHashMismatch { .. }));
}

#[test]
fn deleting_an_audit_row_breaks_the_chain_at_the_next_one() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path).unwrap();
    populated(&mut store);
    let conn = raw_conn(&path);
    conn.execute_batch("DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log WHERE seq = 3;").unwrap();
    let broken = store.verify_audit_chain().unwrap().broken.unwrap();
    assert_eq!(broken.seq, 4);
}

#[test]
fn a_reader_reads_committed_data_while_a_write_transaction_is_open() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path).unwrap();
    store.write(|tx| tx.upsert_participant(&participant("U01"))).unwrap();
    let started = std::time::Instant::now();
    store
        .write(|tx| {
            tx.upsert_participant(&participant("U02"))?;
            // Another connection, as `labfeed report` would open one, mid-transaction.
            let reader = Store::open_read_only(&path)?;
            assert!(reader.is_read_only());
            reader.read(|r| {
                assert!(r.participant_exists("U01")?);
                assert!(!r.participant_exists("U02")?, "uncommitted rows are not visible");
                Ok(())
            })?;
            assert!(reader.verify_audit_chain()?.is_intact());
            // This transaction sees its own row.
            assert!(tx.participant_exists("U02")?);
            Ok(())
        })
        .unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "the reader did not wait for the writer");

    let mut reader = Store::open_read_only(&path).unwrap();
    assert!(reader.read(|r| r.participant_exists("U02")).unwrap());
    let err = store.write_as("  ", |tx| tx.upsert_participant(&participant("U03"))).unwrap_err();
    assert!(matches!(err, StoreError::Invalid { what: "actor", .. }), "{err:?}");
    let err = reader.write(|tx| tx.upsert_participant(&participant("U03"))).unwrap_err();
    assert!(matches!(err, StoreError::ReadOnly { .. }), "{err:?}");
}

#[test]
fn a_second_writer_waits_for_the_first_and_then_proceeds() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path).unwrap();
    let other_path = path.clone();
    let handle = store
        .write(|tx| {
            tx.upsert_participant(&participant("U01"))?;
            let handle = std::thread::spawn(move || {
                let mut other = Store::open(&other_path).unwrap();
                other.write(|tx| tx.upsert_participant(&participant("U02"))).unwrap()
            });
            std::thread::sleep(std::time::Duration::from_millis(100));
            assert!(!handle.is_finished(), "BEGIN IMMEDIATE makes the second writer wait");
            Ok(handle)
        })
        .unwrap();
    // Our commit lets the other writer in.
    assert_eq!(handle.join().unwrap(), Change::New);
    assert!(store.read(|r| r.participant_exists("U02")).unwrap());
    assert!(store.verify_audit_chain().unwrap().is_intact());
}

#[test]
fn a_rolled_back_transaction_leaves_nothing_behind() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path).unwrap();
    let err = store
        .write(|tx| {
            tx.upsert_participant(&participant("U01"))?;
            arrival(tx, b"doomed");
            Err::<(), _>(StoreError::Invalid { what: "test", problem: "the pipeline gave up".into() })
        })
        .unwrap_err();
    assert!(err.to_string().contains("the pipeline gave up"));

    // A failure inside a primitive rolls back the earlier ones too.
    let err = store
        .write(|tx| {
            tx.upsert_participant(&participant("U01"))?;
            tx.insert_processing(&NewProcessing {
                receipt_id: ReceiptId(77),
                outcome: ProcessingOutcome::Processed,
                accepted: 0,
                duplicates: 0,
                mismatches: 0,
                qc: 0,
                errors: 0,
                detail: None,
            })
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::Constraint { .. }), "{err:?}");

    // And a panic in the closure.
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = store.write(|tx| {
            tx.upsert_participant(&participant("U01"))?;
            panic!("bug in the pipeline");
            #[allow(unreachable_code)]
            Ok(())
        });
    }));
    assert!(panicked.is_err());

    let conn = raw_conn(&path);
    for table in ["participant", "raw", "receipt", "message", "audit_log"] {
        assert_eq!(count(&conn, table), 0, "{table}");
    }
    // The store is still usable and the chain starts at seq 1.
    store.write(|tx| tx.upsert_participant(&participant("U01"))).unwrap();
    let seq: i64 = conn.query_row("SELECT seq FROM audit_log", [], |r| r.get(0)).unwrap();
    assert_eq!(seq, 1);
    assert!(store.verify_audit_chain().unwrap().is_intact());
}

/// Name parts (split on `_` and non-letters) of every table, view, index,
/// trigger and column in a fresh database.
fn schema_names(path: &Path) -> Vec<(String, String)> {
    let conn = raw_conn(path);
    let mut names = Vec::new();
    let objects: Vec<(String, String)> = conn
        .prepare("SELECT type, name FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (kind, name) in &objects {
        names.push((format!("{kind} {name}"), name.clone()));
        if kind == "table" || kind == "view" {
            let mut stmt = conn.prepare("SELECT name FROM pragma_table_xinfo(?1)").unwrap();
            for column in stmt.query_map([name], |r| r.get::<_, String>(0)).unwrap() {
                let column = column.unwrap();
                names.push((format!("column {name}.{column}"), column));
            }
        }
    }
    assert!(names.len() > 100, "the schema was read: {}", names.len());
    names
}

fn has_part(name: &str, words: &[&str]) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    lower
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|p| !p.is_empty())
        .find(|part| words.iter().any(|w| part.starts_with(w) || part.ends_with(w)))
        .map(str::to_owned)
}

#[test]
fn the_schema_has_no_place_for_allocation_data() {
    let (_dir, path) = temp_db();
    drop(Store::open(&path).unwrap());
    let blinded = ["arm", "alloc", "treat", "random", "kit", "group", "cohort"];
    for (what, name) in schema_names(&path) {
        assert_eq!(has_part(&name, &blinded), None, "{what} could hold allocation data");
        let lower = name.to_ascii_lowercase();
        for word in ["alloc", "treat", "random", "cohort", "group"] {
            assert!(!lower.contains(word), "{what} contains {word:?}");
        }
    }
    // The check itself catches what it is meant to.
    assert!(has_part("treatment_arm", &blinded).is_some());
    assert!(has_part("kit_number", &blinded).is_some());
    assert!(has_part("RandomisationGroup", &blinded).is_some());
    assert!(has_part("format", &blinded).is_none());
}

#[test]
fn study_tables_have_no_place_for_personal_data() {
    let (_dir, path) = temp_db();
    drop(Store::open(&path).unwrap());
    let personal = ["name", "birth", "dob", "address", "phone", "ssn"];
    let study = ["participant", "visit", "sample", "observation", "result", "current_result"];
    let names = schema_names(&path);
    let mut checked = 0;
    for (what, name) in &names {
        let Some(table) = what.strip_prefix("column ").and_then(|c| c.split('.').next()) else { continue };
        if !study.contains(&table) {
            continue;
        }
        checked += 1;
        assert_eq!(has_part(name, &personal), None, "{what} could hold personal data");
    }
    assert!(checked > 40, "{checked}");
    assert!(has_part("date_of_birth", &personal).is_some());
    assert!(has_part("patient_name", &personal).is_some());
    assert!(has_part("dob", &personal).is_some());
}

#[test]
fn a_busy_write_of_a_whole_file_is_fast() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path).unwrap();
    let started = std::time::Instant::now();
    store
        .write(|tx| {
            tx.upsert_participant(&participant("U01"))?;
            let (_, _, message) = arrival(tx, b"a file with many results");
            for i in 0..200u32 {
                let slot = Slot::new("U01", "V0", i64::from(i), "c_peptide");
                let o = observation(tx, message, i + 1, &slot, 0.5);
                tx.insert_result(&NewResult {
                    comparator: Some(Comparator::Lt),
                    ..new_result(o, &slot, 0.5, "ingest")
                })?;
            }
            Ok(())
        })
        .unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(store.read(|r| r.current_results()).unwrap().len(), 200);
    assert!(store.verify_audit_chain().unwrap().is_intact());
}

#[test]
fn a_version_1_database_with_results_is_migrated_and_keeps_them_current() {
    let (_dir, path) = temp_db();
    let conn = raw_conn(&path);
    conn.execute_batch(labfeed::store::MIGRATIONS[0].sql).unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
    conn.execute_batch(
        "INSERT INTO raw (id, sha256, size, format, content, first_received_at)
           VALUES (1, printf('%064d', 0), 1, 'astm', x'00', '2026-03-02T10:00:00Z');
         INSERT INTO message (id, raw_id, number, span_start, span_end) VALUES (1, 1, 1, 0, 1);
         INSERT INTO observation (id, message_id, seq, byte_offset, qc, outcome) VALUES (1, 1, 1, 0, 0, 'accepted');
         INSERT INTO participant (code) VALUES ('U01');
         INSERT INTO result (observation_id, participant, visit, minute, analyte, value, unit, blq, version,
                             accepted_at, accepted_by, reason)
           VALUES (1, 'U01', 'V0', 30, 'c_peptide', 0.5, 'nmol/L', 0, 1, '2026-03-02T10:00:00Z', 'labfeed', 'ingest');",
    )
    .unwrap();
    drop(conn);

    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), latest_version());
    let slot = labfeed::store::Slot::new("U01", "V0", 30, "c_peptide");
    let current = store.read(|r| r.current_result(&slot)).unwrap().unwrap();
    assert_eq!((current.value, current.version, current.withdrawn), (0.5, 1, false));
    assert_eq!(store.read(|r| r.current_results()).unwrap().len(), 1);
}
