//! The audit key (SPEC §9) through the real binary: `new-audit-key`,
//! `check-config`'s checks of the key file, and an older database taken
//! into the keyed chain at an audited point.

use std::os::unix::fs::PermissionsExt;

use super::support::{ADMIN, TempStudy, text};

/// A study whose config names `key` as its audit key.
fn keyed_study(key: &std::path::Path) -> TempStudy {
    let table = format!("[audit]\nkey_file = \"{}\"\n\n[watch]", key.display());
    TempStudy::new(&[("[watch]", table.as_str())])
}

#[test]
fn new_audit_key_writes_an_owner_only_key_once() {
    let t = TempStudy::new(&[]);
    let key = t.dir.path().join("audit.key");
    let out = t.run(&["new-audit-key", key.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let content = std::fs::read_to_string(&key).unwrap();
    assert_eq!(content.len(), 65, "{content:?}");
    assert!(content.trim_end().bytes().all(|b| b.is_ascii_hexdigit()), "{content:?}");
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o400);
    let out = t.run(&["new-audit-key", key.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("never overwritten"), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&key).unwrap(), content, "the first key is kept");
}

#[test]
fn check_config_names_a_missing_short_or_shared_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("audit.key");
    let t = keyed_study(&key);
    let check = |t: &TempStudy| {
        let out = t.run(&["check-config"]);
        (out.status.code(), text(&out))
    };
    let (code, said) = check(&t);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("audit.key_file") && said.contains("labfeed new-audit-key"), "{said}");
    std::fs::write(&key, "too short\n").unwrap();
    let (code, said) = check(&t);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("at least 32"), "{said}");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, said) = check(&t);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("can be read by others than its owner (mode 0644)"), "{said}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
    let (code, said) = check(&t);
    assert_eq!(code, Some(0), "{said}");
}

#[test]
fn an_older_unkeyed_database_is_vouched_for_and_continued_keyed_at_audited_points() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("audit.key");
    let t = keyed_study(&key);
    assert_eq!(t.run(&["new-audit-key", key.to_str().unwrap()]).status.code(), Some(0));

    // A database as labfeed with schema 6 left it: a participant and its audit row, unkeyed.
    let db = t.lib("labfeed.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        for m in &labfeed::store::MIGRATIONS[..6] {
            conn.execute_batch(m.sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 6).unwrap();
        conn.pragma_update(None, "application_id", labfeed::store::APPLICATION_ID).unwrap();
        conn.execute("INSERT INTO participant (code, site) VALUES ('U01', 'Uppsala')", []).unwrap();
        let detail = r#"{"change":"new","new":{"code":"U01","site":"Uppsala"},"old":null}"#;
        let at = "2026-03-01T10:00:00Z";
        let hash = labfeed::store::entry_hash(
            labfeed::store::GENESIS_HASH,
            1,
            at,
            "dm",
            "import",
            "participant",
            Some("U01"),
            detail,
        );
        conn.execute(
            "INSERT INTO audit_log (seq, at, actor, action, entity, entity_id, detail, prev_hash, hash)
             VALUES (1, ?1, 'dm', 'import', 'participant', 'U01', ?2, ?3, ?4)",
            rusqlite::params![at, detail, labfeed::store::GENESIS_HASH, hash],
        )
        .unwrap();
    }

    // The first keyed writer (here the first admin) upgrades it.
    let out = t.run_with_stdin(
        &["user", "add", ADMIN.0, "--role", "admin", "--new-password-stdin"],
        &format!("{}\n", ADMIN.1),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let conn = rusqlite::Connection::open(&db).unwrap();
    let points: Vec<(i64, String, bool)> = conn
        .prepare("SELECT seq, action, keyed FROM audit_log WHERE action IN ('vouch existing rows', 'key in use') ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(points.len(), 2, "{points:?}");
    assert_eq!((points[0].1.as_str(), points[1].1.as_str(), points[0].2), ("key in use", "vouch existing rows", true));
    let unkeyed_after: i64 = conn
        .query_row("SELECT count(*) FROM audit_log WHERE seq >= ?1 AND keyed = 0", [points[0].0], |r| r.get(0))
        .unwrap();
    assert_eq!(unkeyed_after, 0, "keyed from the audited point on");

    let out = t.run(&["verify-audit"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains(&format!("keyed from seq {} on", points[0].0)), "{}", text(&out));
    // The old participant row is vouched for: changing it behind labfeed's back is found.
    conn.execute("UPDATE participant SET site = 'Lund' WHERE code = 'U01'", []).unwrap();
    let out = t.run(&["verify-audit"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("participant row 1 does not match"), "{}", text(&out));
}

#[test]
fn a_writer_without_the_studys_key_or_with_another_is_refused_before_it_breaks_the_chain() {
    use labfeed::store::{AuditKey, AuditSettings, Participant, Store};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("labfeed.db");
    let key = |byte: u8| AuditKey::new(vec![byte; 32]).unwrap();
    let settings = |k: Option<AuditKey>| AuditSettings { key: k, head_file: Some(dir.path().join("head")) };
    let add = |store: &mut Store, code: &str| {
        store.write(|tx| tx.upsert_participant(&Participant { code: code.to_owned(), site: None })).map(|_| ())
    };
    let mut keyed = Store::open_with(&path, settings(Some(key(1)))).unwrap();
    add(&mut keyed, "P1").unwrap();
    drop(keyed);

    // No key: refused at the first write, and nothing is written.
    let mut plain = Store::open_with(&path, settings(None)).unwrap();
    let err = add(&mut plain, "P2").unwrap_err().to_string();
    assert!(err.contains("no [audit] key_file"), "{err}");
    assert_eq!(plain.read(|r| r.participant("P2")).unwrap(), None);
    drop(plain);

    // Another key: refused when the store opens.
    let err = Store::open_with(&path, settings(Some(key(2)))).unwrap_err().to_string();
    assert!(err.contains("not the key of this study's audit chain"), "{err}");

    // The study's own key goes on writing, and the chain verifies.
    let mut keyed = Store::open_with(&path, settings(Some(key(1)))).unwrap();
    add(&mut keyed, "P3").unwrap();
    assert!(keyed.verify_audit_chain().unwrap().is_intact());
}
