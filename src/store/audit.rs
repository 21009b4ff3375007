//! The audit log: one row per change, hash-chained so that an edit, an
//! insertion or a deletion in the middle of the trail is detected.
//!
//! `hash = sha256(canonical(prev_hash, seq, at, actor, action, entity,
//! entity_id, detail))`, lowercase hex. The canonical form starts with a
//! version tag and writes every field as a type byte, an 8-byte big-endian
//! length and the bytes, so no two different rows serialise alike (no
//! concatenation ambiguity, NULL distinct from empty text). Deleting the
//! newest rows is the one change a chain cannot show by itself: log the head
//! hash ([`ChainReport::head`]) outside the database now and then.

use std::fmt;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::store::StoreError;

/// `prev_hash` of the first row.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const DOMAIN: &[u8] = b"labfeed audit_log v1\0";

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
}

/// The audit columns, in the order [`AuditEntry::from_row`] reads them.
pub(crate) const AUDIT_COLUMNS: &str = "seq, at, actor, action, entity, entity_id, detail, prev_hash, hash";

impl AuditEntry {
    /// One row selected with [`AUDIT_COLUMNS`].
    pub(crate) fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEntry> {
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

fn put_text(hasher: &mut Sha256, text: Option<&str>) {
    match text {
        None => hasher.update([0u8]),
        Some(t) => {
            hasher.update([1u8]);
            hasher.update((t.len() as u64).to_be_bytes());
            hasher.update(t.as_bytes());
        }
    }
}

/// The hash of an audit row whose predecessor's hash is `prev_hash`.
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
    let mut hasher = Sha256::new();
    hasher.update(DOMAIN);
    put_text(&mut hasher, Some(prev_hash));
    hasher.update([2u8]);
    hasher.update(seq.to_be_bytes());
    for field in [Some(at), Some(actor), Some(action), Some(entity), entity_id, Some(detail)] {
        put_text(&mut hasher, field);
    }
    hex(&hasher.finalize())
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

/// Append one row to the chain, in the caller's transaction. Returns its seq.
pub(crate) fn append(
    conn: &Connection,
    at: &str,
    actor: &str,
    action: &str,
    entity: &str,
    entity_id: Option<&str>,
    detail: &Value,
) -> Result<i64, StoreError> {
    let detail = canonical_json(detail);
    let last: Option<(i64, String)> = conn
        .prepare_cached("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (seq, prev_hash) = match last {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, GENESIS_HASH.to_owned()),
    };
    let hash = entry_hash(&prev_hash, seq, at, actor, action, entity, entity_id, &detail);
    conn.prepare_cached(
        "INSERT INTO audit_log (seq, at, actor, action, entity, entity_id, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![seq, at, actor, action, entity, entity_id, detail, prev_hash, hash])?;
    Ok(seq)
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
        }
    }
}

/// Recompute every hash of the audit log, oldest first, and report the first
/// row that breaks the chain.
pub fn verify_audit_chain(conn: &Connection) -> Result<ChainReport, StoreError> {
    let mut stmt = conn.prepare(&format!("SELECT {AUDIT_COLUMNS} FROM audit_log ORDER BY seq"))?;
    let mut rows = stmt.query([])?;
    let mut expected_prev = GENESIS_HASH.to_owned();
    let mut report = ChainReport { rows_checked: 0, head: None, broken: None };
    while let Some(row) = rows.next()? {
        let entry = AuditEntry::from_row(row)?;
        report.rows_checked += 1;
        report.head = Some((entry.seq, entry.hash.clone()));
        if entry.prev_hash != expected_prev {
            report.broken = Some(ChainBreak {
                seq: entry.seq,
                problem: ChainProblem::PrevHashMismatch { expected: expected_prev, found: entry.prev_hash },
            });
            break;
        }
        let computed = entry_hash(
            &entry.prev_hash,
            entry.seq,
            &entry.at,
            &entry.actor,
            &entry.action,
            &entry.entity,
            entry.entity_id.as_deref(),
            &entry.detail,
        );
        if computed != entry.hash {
            report.broken = Some(ChainBreak {
                seq: entry.seq,
                problem: ChainProblem::HashMismatch { computed, stored: entry.hash },
            });
            break;
        }
        expected_prev = entry.hash;
    }
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
