//! Tamper evidence (SPEC §9) through the real binary. One keyed study is
//! built once; each test changes a copy of its files the way someone with
//! write access and the sqlite3 shell would, and `verify-audit` must exit 1
//! naming what was done.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use labfeed::store::vouch::{range_digest, row_digests, vouched};
use labfeed::store::{AuditKey, canonical_json, entry_hash, keyed_entry_hash, sha256_hex};
use rusqlite::{Connection, params};

use super::resolve::r;
use super::support::{TempStudy, central, e411, import_csv, ingest_bytes, ok, order, text};

const SETTLE: (&str, &str) = ("settle_seconds = 1.0", "settle_seconds = 0.1");
const RESOLVE_REASON: &str = "rerun confirmed by the lab";

/// Participants, visits and samples; three results (HL7 and ASTM), two
/// reruns with other values (one mismatch accepted, one left open), and a
/// locked visit.
pub(super) fn fill(t: &TempStudy) {
    import_csv(t, "participants", "participants.csv", "participant\nU01\nU02\nU03\nU04\n");
    import_csv(
        t,
        "visits",
        "visits.csv",
        "participant,visit,meal_start\nU01,V0,2026-03-02T08:00\nU02,V0,2026-03-02T08:00\nU03,V0,2026-03-02T08:00\n",
    );
    import_csv(
        t,
        "samples",
        "samples.csv",
        "sample_id,participant,visit,minute\nS-1,U01,V0,30\nS-2,U02,V0,30\nS-3,U03,V0,60\n",
    );
    let deliver = |name: &str, patient: &str, sample: &str, value: &str| {
        ingest_bytes(t, name, central(name, patient, sample, "20260302083000", value).as_bytes())
    };
    assert!(deliver("C1", "U01", "S-1", "0.25").contains("1 accepted"));
    assert!(deliver("C2", "U02", "S-2", "0.40").contains("1 accepted"));
    let cobas = e411(&[order(1, "S-3"), r("CPEP", "0.50", "nmol/L", "20260302101500")].concat());
    assert!(ingest_bytes(t, "cobas.astm", cobas.as_bytes()).contains("1 accepted"));
    assert!(deliver("C3", "U02", "S-2", "0.55").contains("1 mismatch"));
    assert!(deliver("C4", "U01", "S-1", "0.31").contains("1 mismatch"));
    let open = open_mismatches(&t.lib("labfeed.db"));
    assert_eq!(open.len(), 2, "{open:?}");
    ok(&t.run(&["resolve", &open[0].to_string(), "--accept", "--reason", RESOLVE_REASON]));
    ok(&t.run(&["lock", "--visit", "U03/V0", "--reason", "visit cleaned"]));
}

fn open_mismatches(db: &Path) -> Vec<i64> {
    let conn = Connection::open(db).unwrap();
    let mut stmt = conn.prepare("SELECT id FROM open_mismatch ORDER BY id").unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
}

/// Give `t` an audit key made by `labfeed new-audit-key` (before anything is written).
pub(super) fn add_key(t: &TempStudy) {
    let key = t.dir.path().join("audit.key");
    ok(&t.command(&["new-audit-key", key.to_str().unwrap()]).output().unwrap());
    let mut config = std::fs::read_to_string(&t.config).unwrap();
    config.push_str(&format!("\n[audit]\nkey_file = \"{}\"\n", key.display()));
    std::fs::write(&t.config, config).unwrap();
}

/// The keyed study, built once per test run under Cargo's test scratch
/// directory (a run's copy replaces the ones of finished runs).
fn master() -> &'static Path {
    static MASTER: OnceLock<PathBuf> = OnceLock::new();
    MASTER.get_or_init(|| {
        let t = TempStudy::new(&[SETTLE]);
        add_key(&t);
        fill(&t);
        let scratch = Path::new(env!("CARGO_TARGET_TMPDIR"));
        for old in std::fs::read_dir(scratch).into_iter().flatten().flatten() {
            let name = old.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("tamper-")
                && !Path::new("/proc").join(pid).exists()
            {
                let _ = std::fs::remove_dir_all(old.path());
            }
        }
        let to = scratch.join(format!("tamper-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&to);
        copy_study(t.dir.path(), &to);
        to
    })
}

/// The configuration, key, database (with its -wal and -shm) and head file
/// of the study in `from`, in `to`, paths rewritten.
fn copy_study(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("lib")).unwrap();
    let config = std::fs::read_to_string(from.join("labfeed.toml")).unwrap();
    std::fs::write(to.join("labfeed.toml"), config.replace(from.to_str().unwrap(), to.to_str().unwrap())).unwrap();
    if from.join("audit.key").exists() {
        std::fs::write(to.join("audit.key"), std::fs::read(from.join("audit.key")).unwrap()).unwrap();
    }
    for entry in std::fs::read_dir(from.join("lib")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join("lib").join(entry.file_name())).unwrap();
        }
    }
}

/// A copy of the keyed study, removed when dropped.
struct Copy {
    dir: tempfile::TempDir,
}

impl Copy {
    fn new() -> Copy {
        let dir = tempfile::tempdir().unwrap();
        copy_study(master(), dir.path());
        Copy { dir }
    }

    fn db(&self) -> Connection {
        Connection::open(self.dir.path().join("lib/labfeed.db")).unwrap()
    }

    fn head_file(&self) -> PathBuf {
        self.dir.path().join("lib/labfeed.db.audit-head")
    }

    fn key(&self) -> AuditKey {
        let text = std::fs::read_to_string(self.dir.path().join("audit.key")).unwrap();
        AuditKey::new(text.trim_end().as_bytes().to_vec()).unwrap()
    }

    fn verify(&self) -> Output {
        verify(&self.dir.path().join("labfeed.toml"))
    }

    /// What `verify-audit` said, which must be a refusal.
    #[track_caller]
    fn refused(&self) -> String {
        let out = self.verify();
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let said = text(&out);
        assert!(said.starts_with("audit NOT verified: "), "{said}");
        said
    }
}

fn verify(config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_labfeed"))
        .arg("--config")
        .arg(config)
        .arg("verify-audit")
        .env_remove("LABFEED_CONFIG")
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap()
}

/// Run `f` with trigger `name` dropped, then create it again with the very
/// SQL labfeed stored for it.
fn without_trigger(conn: &Connection, name: &str, f: impl FnOnce(&Connection)) {
    let sql: String = conn
        .query_row("SELECT sql FROM sqlite_schema WHERE type = 'trigger' AND name = ?1", [name], |r| r.get(0))
        .unwrap();
    conn.execute_batch(&format!("DROP TRIGGER {name}")).unwrap();
    f(conn);
    conn.execute_batch(&sql).unwrap();
}

fn scalar(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// One audit row's hashed fields.
struct Row {
    seq: i64,
    at: String,
    actor: String,
    action: String,
    entity: String,
    entity_id: Option<String>,
    detail: String,
}

/// Recompute the chain from `from_seq` on, as someone without the key
/// would: plain SHA-256 (`key` None, rows marked unkeyed) or HMAC under a
/// key of their own (rows still marked keyed).
fn recompute_chain(conn: &Connection, from_seq: i64, key: Option<&AuditKey>) {
    let mut prev: String = conn
        .query_row(
            "SELECT coalesce((SELECT hash FROM audit_log WHERE seq = ?1 - 1), ?2)",
            params![from_seq, "0".repeat(64)],
            |r| r.get(0),
        )
        .unwrap();
    let rows: Vec<Row> = {
        let mut stmt = conn
            .prepare(
                "SELECT seq, at, actor, action, entity, entity_id, detail FROM audit_log WHERE seq >= ?1 ORDER BY seq",
            )
            .unwrap();
        stmt.query_map([from_seq], |r| {
            Ok(Row {
                seq: r.get(0)?,
                at: r.get(1)?,
                actor: r.get(2)?,
                action: r.get(3)?,
                entity: r.get(4)?,
                entity_id: r.get(5)?,
                detail: r.get(6)?,
            })
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    };
    without_trigger(conn, "audit_log_no_update", |conn| {
        for row in &rows {
            let id = row.entity_id.as_deref();
            let hash = match key {
                Some(key) => keyed_entry_hash(
                    key,
                    &prev,
                    row.seq,
                    &row.at,
                    &row.actor,
                    &row.action,
                    &row.entity,
                    id,
                    &row.detail,
                ),
                None => entry_hash(&prev, row.seq, &row.at, &row.actor, &row.action, &row.entity, id, &row.detail),
            };
            conn.execute(
                "UPDATE audit_log SET prev_hash = ?1, hash = ?2, keyed = ?3 WHERE seq = ?4",
                params![prev, hash, key.is_some(), row.seq],
            )
            .unwrap();
            prev = hash;
        }
    });
}

/// Change the data manager's reason in the signature of the decision; its seq.
fn edit_the_decision_reason(conn: &Connection) -> i64 {
    let seq = conn
        .query_row("SELECT seq FROM audit_log WHERE action = 'sign' AND instr(detail, ?1) > 0", [RESOLVE_REASON], |r| {
            r.get(0)
        })
        .unwrap();
    without_trigger(conn, "audit_log_no_update", |conn| {
        let n = conn
            .execute(
                "UPDATE audit_log SET detail = replace(detail, ?1, 'value entered by mistake') WHERE seq = ?2",
                params![RESOLVE_REASON, seq],
            )
            .unwrap();
        assert_eq!(n, 1);
    });
    seq
}

fn last_result_version(conn: &Connection) -> i64 {
    scalar(conn, "SELECT max(id) FROM result")
}

/// Insert a copy of result `id` with another value as its next version; the new row's id.
fn insert_result_version(conn: &Connection, id: i64) -> i64 {
    conn.execute(
        "INSERT INTO result (observation_id, participant, visit, minute, analyte, value, unit, comparator, blq,
                             version, supersedes, accepted_unix, accepted_by, reason, withdrawn, unfilled)
         SELECT observation_id, participant, visit, minute, analyte, 0.99, unit, comparator, blq,
                version + 1, id, accepted_unix, accepted_by, reason, withdrawn, unfilled FROM result WHERE id = ?1",
        [id],
    )
    .unwrap();
    conn.last_insert_rowid()
}

#[test]
fn the_untouched_keyed_study_verifies() {
    let s = Copy::new();
    let out = s.verify();
    let said = ok(&out);
    assert!(said.contains("audit chain intact: ") && said.contains(", keyed from seq 1 on;"), "{said}");
    assert!(said.contains("it reaches the head recorded in "), "{said}");
    assert!(said.contains("none is missing or unaccounted for"), "{said}");
    assert!(said.contains("the schema and its triggers are the ones labfeed created"), "{said}");
    assert!(!said.contains("cannot be ruled out"), "{said}");
}

#[test]
fn a_result_changed_under_a_dropped_and_recreated_trigger_is_found() {
    let s = Copy::new();
    let conn = s.db();
    let id = scalar(&conn, "SELECT min(id) FROM result");
    without_trigger(&conn, "result_no_update", |conn| {
        assert_eq!(conn.execute("UPDATE result SET value = 0.35 WHERE id = ?1", [id]).unwrap(), 1);
    });
    drop(conn);
    let said = s.refused();
    assert!(said.contains("result rows ") && said.contains("changed behind labfeed's back"), "{said}");
}

#[test]
fn an_inserted_result_version_is_found() {
    let s = Copy::new();
    let conn = s.db();
    let id = insert_result_version(&conn, last_result_version(&conn));
    drop(conn);
    let said = s.refused();
    assert!(said.contains(&format!("result row {id} has no audit entry")), "{said}");
}

#[test]
fn a_deleted_result_version_is_found() {
    let s = Copy::new();
    let conn = s.db();
    let id = last_result_version(&conn);
    without_trigger(&conn, "result_no_delete", |conn| {
        conn.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
        assert_eq!(conn.execute("DELETE FROM result WHERE id = ?1", [id]).unwrap(), 1);
    });
    drop(conn);
    let said = s.refused();
    assert!(said.contains(&format!("result row {id} is missing")), "{said}");
}

#[test]
fn a_resolution_closing_a_mismatch_under_another_name_is_found() {
    let s = Copy::new();
    let open = open_mismatches(&s.dir.path().join("lib/labfeed.db"));
    assert_eq!(open.len(), 1, "{open:?}");
    let conn = s.db();
    conn.execute(
        "INSERT INTO resolution (mismatch_id, action, reason, resolved_by, resolved_at, result_watermark)
         VALUES (?1, 'reject', 'lab error', 'dm.bob', '2026-03-05T09:00:00Z', (SELECT max(id) FROM result))",
        [open[0]],
    )
    .unwrap();
    let id = conn.last_insert_rowid();
    drop(conn);
    assert!(open_mismatches(&s.dir.path().join("lib/labfeed.db")).is_empty(), "the forged decision closes it");
    let said = s.refused();
    assert!(said.contains(&format!("resolution row {id} has no audit entry")), "{said}");
}

#[test]
fn deleting_the_newest_audit_rows_is_found() {
    let s = Copy::new();
    let conn = s.db();
    let last = scalar(&conn, "SELECT max(seq) FROM audit_log");
    without_trigger(&conn, "audit_log_no_delete", |conn| {
        assert_eq!(conn.execute("DELETE FROM audit_log WHERE seq > ?1", [last - 3]).unwrap(), 3);
    });
    drop(conn);
    let said = s.refused();
    assert!(
        said.contains(&format!(
            "the audit chain ends at seq {}, before the head recorded outside the database at seq {last}",
            last - 3
        )),
        "{said}"
    );
}

#[test]
fn deleting_the_newest_audit_rows_and_the_head_file_is_found() {
    let s = Copy::new();
    let conn = s.db();
    without_trigger(&conn, "audit_log_no_delete", |conn| {
        conn.execute("DELETE FROM audit_log WHERE seq > (SELECT max(seq) - 3 FROM audit_log)", []).unwrap();
    });
    drop(conn);
    std::fs::remove_file(s.head_file()).unwrap();
    let said = s.refused();
    assert!(said.contains("is missing: without it, deleted newest rows cannot be ruled out"), "{said}");
}

#[test]
fn an_edited_audit_row_with_the_rest_of_the_chain_recomputed_without_the_key_is_found() {
    let s = Copy::new();
    let conn = s.db();
    let seq = edit_the_decision_reason(&conn);
    recompute_chain(&conn, seq, None);
    drop(conn);
    let said = s.refused();
    assert!(said.contains(&format!("audit_log seq {seq}: the row is not keyed")), "{said}");
}

#[test]
fn an_edited_audit_row_with_the_whole_chain_recomputed_without_the_key_is_found() {
    let s = Copy::new();
    let conn = s.db();
    let seq = edit_the_decision_reason(&conn);
    let last = scalar(&conn, "SELECT max(seq) FROM audit_log");
    recompute_chain(&conn, 1, None);
    drop(conn);
    let said = s.refused();
    assert!(
        said.contains("no keyed row although a key is configured")
            || said.contains(&format!("audit_log seq {last}: its hash is not the one recorded outside the database")),
        "edited seq {seq}: {said}"
    );
}

#[test]
fn an_unkeyed_rewrite_of_a_keyed_study_without_its_head_file_is_found() {
    let s = Copy::new();
    let conn = s.db();
    edit_the_decision_reason(&conn);
    recompute_chain(&conn, 1, None);
    drop(conn);
    std::fs::remove_file(s.head_file()).unwrap();
    s.refused();
}

#[test]
fn an_edited_audit_row_with_the_chain_recomputed_under_another_key_is_found() {
    let s = Copy::new();
    let conn = s.db();
    let seq = edit_the_decision_reason(&conn);
    let forger = AuditKey::new(vec![7; 32]).unwrap();
    recompute_chain(&conn, seq, Some(&forger));
    drop(conn);
    let said = s.refused();
    assert!(
        said.contains(&format!("audit_log seq {seq}: content hashes to ")) && said.contains("(the row was edited)"),
        "{said}"
    );
}

/// Insert a result version and append a well-formed `commit` row vouching
/// for it, its hash made by `hash` from (prev_hash, seq, at, detail); the seq.
fn forge_commit(conn: &Connection, keyed: bool, hash: impl Fn(&str, i64, &str, &str) -> String) -> i64 {
    let id = insert_result_version(conn, last_result_version(conn));
    let rows = row_digests(conn, vouched("result").unwrap(), 1, id, id).unwrap();
    let detail = canonical_json(&serde_json::json!({"v": 1, "rows": {"result": [[id, id, range_digest(&rows)]]}}));
    let (seq, prev): (i64, String) = conn
        .query_row("SELECT seq + 1, hash FROM audit_log ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    let at = "2026-03-05T09:00:00Z";
    conn.execute(
        "INSERT INTO audit_log (seq, at, actor, action, entity, entity_id, detail, prev_hash, hash, keyed)
         VALUES (?1, ?2, 'labfeed', 'commit', 'transaction', NULL, ?3, ?4, ?5, ?6)",
        params![seq, at, detail, prev, hash(&prev, seq, at, &detail), keyed],
    )
    .unwrap();
    seq
}

#[test]
fn a_forged_commit_row_hashed_without_the_key_is_found() {
    let s = Copy::new();
    let conn = s.db();
    let seq = forge_commit(&conn, false, |prev, seq, at, detail| {
        entry_hash(prev, seq, at, "labfeed", "commit", "transaction", None, detail)
    });
    drop(conn);
    let said = s.refused();
    assert!(said.contains(&format!("audit_log seq {seq}: the row is not keyed")), "{said}");
}

#[test]
fn a_forged_commit_row_marked_keyed_but_hashed_under_another_key_is_found() {
    let s = Copy::new();
    let forger = AuditKey::new(vec![7; 32]).unwrap();
    let conn = s.db();
    let seq = forge_commit(&conn, true, |prev, seq, at, detail| {
        keyed_entry_hash(&forger, prev, seq, at, "labfeed", "commit", "transaction", None, detail)
    });
    drop(conn);
    let said = s.refused();
    assert!(said.contains(&format!("audit_log seq {seq}: content hashes to ")), "{said}");
}

#[test]
fn a_forged_commit_row_with_the_real_key_would_pass_which_is_why_the_key_is_secret() {
    // The control: the same forgery made with the study's own key verifies,
    // so the two tests above fail for the key alone.
    let s = Copy::new();
    let key = s.key();
    let conn = s.db();
    forge_commit(&conn, true, |prev, seq, at, detail| {
        keyed_entry_hash(&key, prev, seq, at, "labfeed", "commit", "transaction", None, detail)
    });
    drop(conn);
    ok(&s.verify());
}

#[test]
fn rewritten_raw_content_is_found() {
    let s = Copy::new();
    let conn = s.db();
    let id = scalar(&conn, "SELECT min(id) FROM raw");
    without_trigger(&conn, "raw_no_update", |conn| {
        // As someone who knows the format would: inflate, edit, deflate again.
        let (stored, encoding): (Vec<u8>, Option<String>) = conn
            .query_row("SELECT content, encoding FROM raw WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        let plain = match encoding.as_deref() {
            Some("deflate") => miniz_oxide::inflate::decompress_to_vec(&stored).unwrap(),
            _ => stored,
        };
        let text = String::from_utf8(plain).unwrap();
        assert!(text.contains("0.25"), "the first delivery holds 0.25");
        let edited = text.replace("0.25", "0.35").into_bytes();
        let stored = match encoding.as_deref() {
            Some("deflate") => miniz_oxide::deflate::compress_to_vec(&edited, 6),
            _ => edited,
        };
        let n = conn.execute("UPDATE raw SET content = ?2 WHERE id = ?1", rusqlite::params![id, stored]).unwrap();
        assert_eq!(n, 1);
    });
    drop(conn);
    let said = s.refused();
    assert!(said.contains("raw rows ") && said.contains("changed behind labfeed's back"), "{said}");
}

#[test]
fn a_swapped_password_hash_is_found() {
    let s = Copy::new();
    let conn = s.db();
    let id = scalar(&conn, "SELECT rowid FROM account WHERE name = 'dm.anna'");
    conn.execute(
        "UPDATE account SET password_hash = (SELECT password_hash FROM account WHERE name = 'admin.ada') WHERE rowid = ?1",
        [id],
    )
    .unwrap();
    drop(conn);
    let said = s.refused();
    assert!(said.contains(&format!("account row {id} does not match")), "{said}");
}

#[test]
fn a_dropped_trigger_is_found() {
    let s = Copy::new();
    s.db().execute_batch("DROP TRIGGER result_no_delete").unwrap();
    let said = s.refused();
    assert!(said.contains("trigger result_no_delete is missing"), "{said}");
}

#[test]
fn an_added_trigger_is_found() {
    let s = Copy::new();
    s.db().execute_batch("CREATE TRIGGER quiet AFTER INSERT ON result BEGIN SELECT 1; END").unwrap();
    let said = s.refused();
    assert!(said.contains("trigger quiet was not created by labfeed"), "{said}");
}

#[test]
fn a_head_file_edited_by_hand_is_found() {
    let s = Copy::new();
    let head = std::fs::read_to_string(s.head_file()).unwrap();
    let seq = head.lines().find_map(|l| l.strip_prefix("seq ")).unwrap().parse::<i64>().unwrap();
    std::fs::write(s.head_file(), head.replace(&format!("seq {seq}"), &format!("seq {}", seq - 3))).unwrap();
    let said = s.refused();
    assert!(said.contains("was altered: its seal does not match its content"), "{said}");
}

#[test]
fn without_a_key_the_study_verifies_but_a_rewrite_cannot_be_ruled_out() {
    let t = TempStudy::new(&[SETTLE]);
    fill(&t);
    let said = ok(&t.run(&["verify-audit"]));
    assert!(said.contains("audit chain intact: ") && !said.contains("keyed from"), "{said}");
    assert!(said.contains("could rewrite the chain and the tables together; that cannot be ruled out"), "{said}");

    // And it can indeed be done: an edited row, the chain recomputed and the head re-sealed.
    let conn = Connection::open(t.lib("labfeed.db")).unwrap();
    edit_the_decision_reason(&conn);
    recompute_chain(&conn, 1, None);
    let (seq, hash): (i64, String) = conn
        .query_row("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    drop(conn);
    let body = format!("labfeed audit head v1\nseq {seq}\nhash {hash}\nat 2026-03-05T09:00:00Z\n");
    std::fs::write(t.lib("labfeed.db.audit-head"), format!("{body}sha256 {}\n", sha256_hex(body.as_bytes()))).unwrap();
    let said = ok(&t.run(&["verify-audit"]));
    assert!(said.contains("cannot be ruled out"), "{said}");
}

#[test]
fn deleting_the_newest_transaction_stays_found_after_labfeed_writes_again() {
    let s = Copy::new();
    let conn = s.db();
    // The lock, its signature and its commit row, gone as if never made.
    let first = scalar(
        &conn,
        "SELECT min(seq) FROM audit_log WHERE seq > (SELECT max(seq) FROM audit_log WHERE action = 'commit' AND seq < (SELECT max(seq) FROM audit_log))",
    );
    without_trigger(&conn, "audit_log_no_delete", |conn| {
        without_trigger(conn, "data_lock_no_delete", |conn| {
            conn.execute_batch("DELETE FROM data_lock").unwrap();
            conn.execute("DELETE FROM audit_log WHERE seq >= ?1", [first]).unwrap();
        });
    });
    drop(conn);
    assert!(s.refused().contains("its newest rows were deleted"));
    // The service goes on receiving results.
    for n in 5..9 {
        let file = s.dir.path().join(format!("C{n}.hl7"));
        std::fs::write(&file, central(&format!("C{n}"), "U02", "S-2", "20260302083000", "0.55")).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_labfeed"))
            .arg("--config")
            .arg(s.dir.path().join("labfeed.toml"))
            .arg("ingest")
            .arg(&file)
            .output()
            .unwrap();
        assert!(matches!(out.status.code(), Some(0 | 1)), "{}", text(&out));
    }
    s.refused();
}
