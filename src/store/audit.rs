//! The audit log: one row per change, hash-chained so that an edit, an
//! insertion or a deletion in the middle of the trail is detected.
//!
//! `hash = sha256(canonical(prev_hash, seq, at, actor, action, entity,
//! entity_id, detail))`, lowercase hex; with an audit key (SPEC §9) a row is
//! `keyed` and its hash is HMAC-SHA256 under the key instead, so nobody
//! without the key can recompute the chain. The canonical form starts with a
//! version tag and writes every field as a type byte, an 8-byte big-endian
//! length and the bytes, so no two different rows serialise alike (no
//! concatenation ambiguity, NULL distinct from empty text). Deleting the
//! newest rows is the one change a chain cannot show by itself: the head is
//! also recorded outside the database ([`crate::store::head`]).

use std::fmt;

use hmac::{KeyInit, Mac};
use rusqlite::Connection;

use crate::store::sql::{Db, params};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::store::StoreError;

/// `prev_hash` of the first row.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const DOMAIN: &[u8] = b"labfeed audit_log v1\0";
const KEYED_DOMAIN: &[u8] = b"labfeed audit_log v2 keyed\0";

/// The secret that keys the chain and the head file (`[audit] key_file`).
/// Never printed: its `Debug` says only that it is there.
#[derive(Clone)]
pub struct AuditKey(Vec<u8>);

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditKey(..)")
    }
}

/// The fewest secret bytes a key file holds (SPEC §9).
pub const MIN_KEY_BYTES: usize = 32;

impl AuditKey {
    /// A key of at least [`MIN_KEY_BYTES`] bytes (a key file's content, as is).
    pub fn new(bytes: Vec<u8>) -> Result<AuditKey, String> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(format!("it holds {} bytes; an audit key needs at least {MIN_KEY_BYTES}", bytes.len()));
        }
        Ok(AuditKey(bytes))
    }

    /// HMAC-SHA256 of `data` under this key, lowercase hex.
    pub fn mac_hex(&self, data: &[u8]) -> String {
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(data);
        hex(&mac.finalize().into_bytes())
    }
}

/// One audit row, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub seq: i64,
    /// UTC RFC 3339.
    pub at: String,
    pub actor: String,
    pub action: String,
    pub entity: String,
    pub entity_id: Option<String>,
    /// Canonical JSON object.
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
    /// The hash is an HMAC under the audit key (SPEC §9).
    pub keyed: bool,
}

/// The audit columns, in the order [`AuditEntry::from_row`] reads them.
impl AuditEntry {
    /// The row's hash recomputed: keyed with `key`, plain without.
    pub(crate) fn hash_with(&self, key: Option<&AuditKey>) -> String {
        let e = self;
        row_hash(key, &e.prev_hash, e.seq, &e.at, &e.actor, &e.action, &e.entity, e.entity_id.as_deref(), &e.detail)
    }
}

pub(crate) const AUDIT_COLUMNS: &str = "seq, at, actor, action, entity, entity_id, detail, prev_hash, hash, keyed";

impl AuditEntry {
    /// One row selected with [`AUDIT_COLUMNS`].
    pub(crate) fn from_row(row: &crate::store::sql::Row) -> Result<AuditEntry, StoreError> {
        Ok(AuditEntry {
            seq: row.get(0)?,
            at: row.get(1)?,
            actor: row.get(2)?,
            action: row.get(3)?,
            entity: row.get(4)?,
            entity_id: row.get(5)?,
            detail: row.get(6)?,
            prev_hash: row.get(7)?,
            hash: row.get(8)?,
            keyed: row.get(9)?,
        })
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn put_text(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        None => out.push(0),
        Some(t) => {
            out.push(1);
            out.extend_from_slice(&(t.len() as u64).to_be_bytes());
            out.extend_from_slice(t.as_bytes());
        }
    }
}

/// The bytes a row's hash is taken over.
#[allow(clippy::too_many_arguments)]
fn canonical(
    domain: &[u8],
    prev_hash: &str,
    seq: i64,
    at: &str,
    actor: &str,
    action: &str,
    entity: &str,
    entity_id: Option<&str>,
    detail: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(domain.len() + 200 + detail.len());
    out.extend_from_slice(domain);
    put_text(&mut out, Some(prev_hash));
    out.push(2);
    out.extend_from_slice(&seq.to_be_bytes());
    for field in [Some(at), Some(actor), Some(action), Some(entity), entity_id, Some(detail)] {
        put_text(&mut out, field);
    }
    out
}

/// The hash of an unkeyed audit row whose predecessor's hash is `prev_hash`.
#[allow(clippy::too_many_arguments)]
pub fn entry_hash(
    prev_hash: &str,
    seq: i64,
    at: &str,
    actor: &str,
    action: &str,
    entity: &str,
    entity_id: Option<&str>,
    detail: &str,
) -> String {
    sha256_hex(&canonical(DOMAIN, prev_hash, seq, at, actor, action, entity, entity_id, detail))
}

/// The hash of a keyed audit row: HMAC-SHA256 under `key`.
#[allow(clippy::too_many_arguments)]
pub fn keyed_entry_hash(
    key: &AuditKey,
    prev_hash: &str,
    seq: i64,
    at: &str,
    actor: &str,
    action: &str,
    entity: &str,
    entity_id: Option<&str>,
    detail: &str,
) -> String {
    key.mac_hex(&canonical(KEYED_DOMAIN, prev_hash, seq, at, actor, action, entity, entity_id, detail))
}

/// The hash of a new row: keyed when the store has a key, plain otherwise.
#[allow(clippy::too_many_arguments)]
pub(crate) fn row_hash(
    key: Option<&AuditKey>,
    prev_hash: &str,
    seq: i64,
    at: &str,
    actor: &str,
    action: &str,
    entity: &str,
    entity_id: Option<&str>,
    detail: &str,
) -> String {
    match key {
        Some(key) => keyed_entry_hash(key, prev_hash, seq, at, actor, action, entity, entity_id, detail),
        None => entry_hash(prev_hash, seq, at, actor, action, entity, entity_id, detail),
    }
}

/// JSON text with object keys sorted (by their UTF-8 bytes) at every level and
/// no insignificant whitespace: the same value always gives the same text,
/// whatever order the keys were built in.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Append one row to the chain, in the caller's transaction, keyed when a
/// key is given. Returns its seq and hash.
#[allow(clippy::too_many_arguments)]
pub(crate) fn append(
    db: Db<'_>,
    key: Option<&AuditKey>,
    at: &str,
    actor: &str,
    action: &str,
    entity: &str,
    entity_id: Option<&str>,
    detail: &Value,
) -> Result<(i64, String), StoreError> {
    let detail = canonical_json(detail);
    let last: Option<(i64, String, bool)> =
        db.query_opt("SELECT seq, hash, keyed FROM audit_log ORDER BY seq DESC LIMIT 1", params![], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    let (seq, prev_hash) = match last {
        // A writer without the key would break a keyed chain for good (on a
        // shared database: one site configured without it).
        Some((_, _, true)) if key.is_none() => {
            return Err(StoreError::Invalid {
                what: "audit key",
                problem: "the audit chain is keyed, but no [audit] key_file is configured here: every writer of a \
                      study needs the study's key"
                    .to_owned(),
            });
        }
        Some((seq, hash, _)) => (seq + 1, hash),
        None => (1, GENESIS_HASH.to_owned()),
    };
    let hash = row_hash(key, &prev_hash, seq, at, actor, action, entity, entity_id, &detail);
    db.execute(
        "INSERT INTO audit_log (seq, at, actor, action, entity, entity_id, detail, prev_hash, hash, keyed)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![seq, at, actor, action, entity, entity_id, detail, prev_hash, hash, key.is_some()],
    )?;
    Ok((seq, hash))
}

/// What [`verify_audit_chain`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Rows examined: all of them when the chain is intact, else up to and
    /// including the first broken one.
    pub rows_checked: u64,
    /// Seq and hash of the last row checked (the head when intact).
    pub head: Option<(i64, String)>,
    /// The first row that does not fit the chain, if any.
    pub broken: Option<ChainBreak>,
    /// The first keyed row, if any (the chain is keyed from there on).
    pub keyed_from: Option<i64>,
    /// Keyed rows whose hash could not be checked: no key was given.
    pub unchecked_keyed: u64,
}

impl ChainReport {
    pub fn is_intact(&self) -> bool {
        self.broken.is_none()
    }
}

/// Where and how the chain is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub seq: i64,
    pub problem: ChainProblem,
}

/// Why a row does not fit the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainProblem {
    /// The row's `prev_hash` is not the previous row's `hash`: a row before it
    /// was removed, inserted or rewritten.
    PrevHashMismatch { expected: String, found: String },
    /// The row's content does not give its stored `hash`: the row was edited.
    HashMismatch { computed: String, stored: String },
    /// An unkeyed row after a keyed one: the chain was rewritten without the key.
    UnkeyedAfterKeyed { keyed_from: i64 },
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            ChainProblem::PrevHashMismatch { expected, found } => write!(
                f,
                "audit_log seq {}: prev_hash {found} is not the previous row's hash {expected} \
                 (a row before it was removed, inserted or rewritten)",
                self.seq
            ),
            ChainProblem::HashMismatch { computed, stored } => write!(
                f,
                "audit_log seq {}: content hashes to {computed}, but the row says {stored} (the row was edited)",
                self.seq
            ),
            ChainProblem::UnkeyedAfterKeyed { keyed_from } => write!(
                f,
                "audit_log seq {}: the row is not keyed, but the chain is keyed from seq {keyed_from} on \
                 (rows were rewritten without the key)",
                self.seq
            ),
        }
    }
}

/// Recompute every hash of the audit log, oldest first, and report the first
/// row that breaks the chain. Keyed rows are checked with `key`; without it
/// only their links are (and [`ChainReport::unchecked_keyed`] counts them).
pub fn verify_audit_chain(conn: &Connection, key: Option<&AuditKey>) -> Result<ChainReport, StoreError> {
    verify_chain(Db::sqlite(conn), key)
}

/// [`verify_audit_chain`] on either engine.
pub(crate) fn verify_chain(db: Db<'_>, key: Option<&AuditKey>) -> Result<ChainReport, StoreError> {
    let mut expected_prev = GENESIS_HASH.to_owned();
    let mut report = ChainReport { rows_checked: 0, head: None, broken: None, keyed_from: None, unchecked_keyed: 0 };
    let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_log ORDER BY seq");
    db.query_each(&sql, crate::store::sql::params![], |row| {
        let e = AuditEntry::from_row(row)?;
        report.rows_checked += 1;
        report.head = Some((e.seq, e.hash.clone()));
        let problem = if e.prev_hash != expected_prev {
            Some(ChainProblem::PrevHashMismatch { expected: expected_prev.clone(), found: e.prev_hash.clone() })
        } else if let (false, Some(keyed_from)) = (e.keyed, report.keyed_from) {
            Some(ChainProblem::UnkeyedAfterKeyed { keyed_from })
        } else {
            // A keyed row cannot be checked without the key; a plain one always can.
            let computed = match (e.keyed, key) {
                (true, None) => None,
                (keyed, key) => Some(e.hash_with(key.filter(|_| keyed))),
            };
            match computed {
                None => {
                    report.unchecked_keyed += 1;
                    None
                }
                Some(computed) if computed != e.hash => {
                    Some(ChainProblem::HashMismatch { computed, stored: e.hash.clone() })
                }
                Some(_) => None,
            }
        };
        if let Some(problem) = problem {
            report.broken = Some(ChainBreak { seq: e.seq, problem });
            return Ok::<bool, StoreError>(false);
        }
        if e.keyed && report.keyed_from.is_none() {
            report.keyed_from = Some(e.seq);
        }
        expected_prev = e.hash;
        Ok(true)
    })?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sha256_hex_is_lowercase_and_known() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(GENESIS_HASH.len(), 64);
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a = json!({"b": 1, "a": {"z": null, "y": [1, {"d": "x", "c": 2.5}]}});
        assert_eq!(canonical_json(&a), r#"{"a":{"y":[1,{"c":2.5,"d":"x"}],"z":null},"b":1}"#);
        assert_eq!(canonical_json(&json!({"q": "say \"hi\"\n"})), r#"{"q":"say \"hi\"\n"}"#);
    }

    #[test]
    fn field_boundaries_matter() {
        let h = |actor: &str, action: &str, id: Option<&str>| {
            entry_hash(GENESIS_HASH, 1, "t", actor, action, "e", id, "{}")
        };
        assert_ne!(h("ab", "c", None), h("a", "bc", None));
        assert_ne!(h("a", "b", None), h("a", "b", Some("")));
        assert_eq!(h("a", "b", Some("1")), h("a", "b", Some("1")));
        assert_ne!(
            entry_hash(GENESIS_HASH, 1, "t", "a", "b", "e", None, "{}"),
            entry_hash(GENESIS_HASH, 2, "t", "a", "b", "e", None, "{}")
        );
    }
}
