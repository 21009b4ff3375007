//! What the audit chain vouches for (SPEC §9): every row labfeed writes.
//!
//! A transaction ends with one `commit` audit row that names the rows it
//! inserted or changed, table by table, as ranges of rowids with a SHA-256
//! of their content. A machine insert is vouched for by that hash, not by a
//! copy (a copy tripled the database); people's changes also keep their old
//! and new values in their own audit rows. `verify-audit` recomputes every
//! hash from the tables, so a row changed, added or removed behind
//! labfeed's back no longer matches what the chain vouches for.
//!
//! The digest of a row is over its rowid and the [`VOUCHED`] columns, each
//! with a type tag and length, in order; a range's digest is over its rows'
//! digests. Tables whose rows change (participants, visits, samples,
//! accounts) are vouched row by row, the latest commit naming a row wins.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::store::StoreError;
use crate::store::audit::hex;
use crate::store::sql::{Db, Value as SqlValue, params};

/// One table the chain vouches for.
#[derive(Debug, Clone, Copy)]
pub struct Vouched {
    pub table: &'static str,
    /// The column that names a row: `id`, or `rowid` where a table has no
    /// id (SQLite's own; PostgreSQL's schema adds a column of that name).
    pub key: &'static str,
    /// The columns hashed, in order (version 1 of the layout).
    pub columns: &'static str,
    /// Columns hashed after them from layout 2 on (added by schema 8).
    pub since_layout_2: &'static str,
    /// Rows change after they are written: vouched one by one.
    pub mutable: bool,
}

/// The layout version in each commit row (`"v"`): 2 since receipts name
/// their instance. A range is checked with its own commit row's layout.
pub const LAYOUT: i64 = 2;

impl Vouched {
    /// The columns hashed in `layout`.
    pub fn columns_in(&self, layout: i64) -> String {
        if layout >= 2 && !self.since_layout_2.is_empty() {
            format!("{}, {}", self.columns, self.since_layout_2)
        } else {
            self.columns.to_owned()
        }
    }
}

/// Every table labfeed writes, except the audit log itself. An account's
/// failed-login count and refusal change with every login attempt; they are
/// audited by their own rows and left out of the digest.
pub const VOUCHED: &[Vouched] = &[
    Vouched {
        table: "raw",
        key: "id",
        columns: "sha256, size, format, content, masked, first_received_at, encoding",
        mutable: false,
        since_layout_2: "",
    },
    Vouched {
        table: "receipt",
        key: "id",
        columns: "raw_id, received_at, source, origin, instrument",
        mutable: false,
        since_layout_2: "instance",
    },
    Vouched {
        table: "processing",
        key: "receipt_id",
        columns: "receipt_id, processed_at, outcome, accepted, duplicates, mismatches, qc, errors, detail",
        mutable: false,
        since_layout_2: "",
    },
    Vouched {
        table: "message",
        key: "id",
        columns: "raw_id, number, span_start, span_end, format, sender, control_id, error, error_offset",
        mutable: false,
        since_layout_2: "",
    },
    Vouched {
        table: "observation",
        key: "id",
        columns: "message_id, seq, byte_offset, instrument, sample_id, test_code, reported_value, reported_unit, \
                  comparator, reported_numeric, flags, status, collected_at, resulted_at, qc, participant, visit, \
                  minute, analyte, value, unit, blq, outcome, collected_offset",
        mutable: false,
        since_layout_2: "",
    },
    Vouched {
        table: "observation_offset",
        key: "id",
        columns: "observation_id, collected_offset, at, reason",
        mutable: false,
        since_layout_2: "",
    },
    Vouched {
        table: "result",
        key: "id",
        columns: "observation_id, participant, visit, minute, analyte, value, unit, comparator, blq, version, \
                  supersedes, accepted_at, accepted_by, reason, withdrawn, unfilled",
        mutable: false,
        since_layout_2: "",
    },
    Vouched {
        table: "mismatch",
        key: "id",
        columns: "code, holds, observation_id, message_id, receipt_id, participant, visit, minute, analyte, detail, \
                  created_at",
        mutable: false,
        since_layout_2: "",
    },
    Vouched {
        table: "resolution",
        key: "id",
        columns: "mismatch_id, action, participant, visit, minute, result_id, reason, resolved_by, resolved_at, cause, \
                  result_watermark",
        mutable: false,
        since_layout_2: "",
    },
    Vouched {
        table: "resolution_effect",
        key: "rowid",
        columns: "resolution_id, kind, result_id, mismatch_id",
        mutable: false,
        since_layout_2: "",
    },
    Vouched {
        table: "data_lock",
        key: "id",
        columns: "scope, participant, visit, locked, at, by, reason",
        mutable: false,
        since_layout_2: "",
    },
    Vouched { table: "participant", key: "rowid", columns: "code, site", mutable: true, since_layout_2: "" },
    Vouched {
        table: "visit",
        key: "rowid",
        columns: "participant, visit, meal_start",
        mutable: true,
        since_layout_2: "",
    },
    Vouched {
        table: "sample",
        key: "rowid",
        columns: "sample_id, participant, visit, minute",
        mutable: true,
        since_layout_2: "",
    },
    Vouched {
        table: "account",
        key: "rowid",
        columns: "name, full_name, role, password_hash, enabled, created_at",
        mutable: true,
        since_layout_2: "",
    },
];

pub fn vouched(table: &str) -> Option<&'static Vouched> {
    VOUCHED.iter().find(|v| v.table == table)
}

fn put(hasher: &mut Sha256, value: &SqlValue) {
    let mut field = |tag: u8, bytes: &[u8]| {
        hasher.update([tag]);
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    };
    match value {
        SqlValue::Null => field(0, &[]),
        SqlValue::Integer(i) => field(1, &i.to_be_bytes()),
        SqlValue::Real(f) => field(2, &f.to_bits().to_be_bytes()),
        SqlValue::Text(t) => field(3, t.as_bytes()),
        SqlValue::Blob(b) => field(4, b),
    }
}

/// The digests of the rows of an SQLite study in `layout` (see [`digests`]).
pub fn row_digests(
    conn: &rusqlite::Connection,
    v: &Vouched,
    layout: i64,
    first: i64,
    last: i64,
) -> Result<Vec<(i64, [u8; 32])>, StoreError> {
    digests(Db::sqlite(conn), v, layout, first, last)
}

/// The digests of the rows of `v.table` with keys in `first..=last`, by key.
pub(crate) fn digests(
    db: Db<'_>,
    v: &Vouched,
    layout: i64,
    first: i64,
    last: i64,
) -> Result<Vec<(i64, [u8; 32])>, StoreError> {
    let sql = format!(
        "SELECT {key}, {} FROM {} WHERE {key} BETWEEN ?1 AND ?2 ORDER BY {key}",
        v.columns_in(layout),
        v.table,
        key = v.key
    );
    db.query_all(&sql, params![first, last], |row| {
        let rowid: i64 = row.get(0)?;
        let mut hasher = Sha256::new();
        hasher.update(b"labfeed row v1\0");
        hasher.update(v.table.as_bytes());
        hasher.update([0u8]);
        hasher.update(rowid.to_be_bytes());
        for value in row.values.iter().skip(1) {
            put(&mut hasher, value);
        }
        Ok((rowid, hasher.finalize().into()))
    })
}

/// The digest of a range: over each row's rowid and digest, so a missing or
/// added row changes it as surely as a changed one.
pub fn range_digest(rows: &[(i64, [u8; 32])]) -> String {
    let mut hasher = Sha256::new();
    for (rowid, digest) in rows {
        hasher.update(rowid.to_be_bytes());
        hasher.update(digest);
    }
    hex(&hasher.finalize())
}

/// Rowids written in one transaction, table by table.
#[derive(Debug, Default, Clone)]
pub struct Written {
    rows: BTreeMap<&'static str, BTreeSet<i64>>,
    /// The key of the last row written (what an insert returns).
    pub(crate) last: Option<i64>,
}

impl Written {
    pub fn add(&mut self, table: &'static str, rowid: i64) {
        self.rows.entry(table).or_default().insert(rowid);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The `commit` row's detail: `{"v": 1, "rows": {table: [[first, last, digest], …]}}`,
    /// consecutive rowids of an append-only table in one range, a mutable
    /// table's rows one by one.
    pub(crate) fn detail(&self, db: Db<'_>) -> Result<Value, StoreError> {
        let mut tables = Map::new();
        for (table, rowids) in &self.rows {
            let Some(v) = vouched(table) else { continue };
            let mut ranges: Vec<(i64, i64)> = Vec::new();
            for &id in rowids {
                match ranges.last_mut() {
                    Some((_, last)) if !v.mutable && *last + 1 == id => *last = id,
                    _ => ranges.push((id, id)),
                }
            }
            let mut list = Vec::with_capacity(ranges.len());
            for (first, last) in ranges {
                let rows = digests(db, v, LAYOUT, first, last)?;
                list.push(json!([first, last, range_digest(&rows)]));
            }
            tables.insert((*table).to_owned(), Value::Array(list));
        }
        Ok(json!({ "v": LAYOUT, "rows": tables }))
    }
}

/// One range a commit row vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VouchedRange {
    pub seq: i64,
    /// The layout of the commit row that names it.
    pub layout: i64,
    pub first: i64,
    pub last: i64,
    pub digest: String,
}

/// The ranges of a `commit` row's detail, by table (malformed entries are
/// an error: the row was not written by labfeed).
pub fn ranges_of(seq: i64, detail: &str) -> Result<Vec<(String, VouchedRange)>, String> {
    let value: Value = serde_json::from_str(detail).map_err(|e| format!("its detail is not JSON ({e})"))?;
    let layout = match value.get("v").and_then(Value::as_i64) {
        Some(v) if (1..=LAYOUT).contains(&v) => v,
        _ => return Err(format!("its layout version is not one of 1 to {LAYOUT}")),
    };
    let Some(rows) = value.get("rows").and_then(Value::as_object) else {
        return Err("it names no rows".to_owned());
    };
    let mut out = Vec::new();
    for (table, list) in rows {
        if vouched(table).is_none() {
            return Err(format!("it names table {table:?}, which labfeed does not vouch for"));
        }
        for entry in list.as_array().into_iter().flatten() {
            let parts = entry.as_array().map(Vec::as_slice).unwrap_or_default();
            match parts {
                [first, last, digest] => match (first.as_i64(), last.as_i64(), digest.as_str()) {
                    (Some(first), Some(last), Some(digest)) if first <= last => {
                        out.push((table.clone(), VouchedRange { seq, layout, first, last, digest: digest.to_owned() }))
                    }
                    _ => return Err(format!("a range of {table} is malformed")),
                },
                _ => return Err(format!("a range of {table} is malformed")),
            }
        }
    }
    Ok(out)
}
