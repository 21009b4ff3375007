//! `migrate-store` (issue 13): a SQLite study copied into an empty
//! PostgreSQL database, then checked.
//!
//! The audit chain vouches for rows by their key (`id`, `receipt_id`, or
//! SQLite's implicit `rowid`) and a digest of their values, so every row is
//! copied with its key and every value as it is: `audit_log` verbatim, the
//! implicit rowids into PostgreSQL's explicit `rowid` columns. The copy is
//! one write transaction on the target (a failure leaves it empty) over one
//! read snapshot of the source, which is opened read-only and never changed.

use std::path::Path;

use crate::store::sql::{Db, Param, Value, params};
use crate::store::{AuditKey, AuditSettings, Integrity, Location, Store, StoreError, Transaction};

/// Every table of a study, parents before the tables that reference them.
pub const COPY_ORDER: &[&str] = &[
    "raw",
    "receipt",
    "processing",
    "message",
    "participant",
    "visit",
    "sample",
    "observation",
    "observation_offset",
    "result",
    "mismatch",
    "resolution",
    "resolution_effect",
    "account",
    "data_lock",
    "audit_log",
];

/// At most this many rows go in one INSERT (fewer for wide tables).
const BATCH_ROWS: usize = 500;
/// At most this many parameters in one INSERT (PostgreSQL takes 65 535).
const BATCH_VALUES: usize = 30_000;
/// A long table reports its progress every this many rows.
const PROGRESS_EVERY: u64 = 50_000;

/// What went wrong with a copy. Databases are named without passwords.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("the study to copy must be an SQLite file; {0} is a PostgreSQL database")]
    SourceNotFile(String),

    #[error("the target must be a postgresql:// URL, not {0}")]
    TargetNotPostgres(String),

    #[error(
        "{target} is not empty: table {table} already holds rows; migrate-store copies a study only into an empty \
         database (nothing was changed there)"
    )]
    NotEmpty { target: String, table: &'static str },

    #[error("the schema of {table} differs between {source_db} and {target}: {why}")]
    Schema { table: &'static str, source_db: String, target: String, why: String },

    #[error("copying table {table} into {target} failed (the target was left as it was): {error}")]
    Table {
        table: &'static str,
        target: String,
        #[source]
        error: Box<StoreError>,
    },

    #[error(transparent)]
    Store(Box<StoreError>),
}

impl From<StoreError> for CopyError {
    fn from(error: StoreError) -> CopyError {
        CopyError::Store(Box::new(error))
    }
}

/// Rows of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRows {
    pub table: &'static str,
    pub rows: u64,
}

/// What was copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// The source file, as given.
    pub source: String,
    /// `postgresql://USER@HOST:PORT/DB`.
    pub target: String,
    /// Rows per table, in [`COPY_ORDER`].
    pub tables: Vec<TableRows>,
    /// The last audit row copied (seq and hash), `None` for an empty log.
    pub head: Option<(i64, String)>,
}

/// Progress of a copy: `rows` of `total` rows of `table` are copied.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub table: &'static str,
    pub rows: u64,
    pub total: u64,
    /// The table is complete.
    pub done: bool,
}

/// The check after a copy.
#[derive(Debug, Clone)]
pub struct CopyCheck {
    /// `verify-audit` on the copy.
    pub integrity: Integrity,
    /// Rows per table in the copy, in [`COPY_ORDER`].
    pub tables: Vec<TableRows>,
    /// The first problem; `None`: the copy is the study, verified.
    pub problem: Option<String>,
}

/// The key that names a table's rows, for a stable copy order.
fn key_of(table: &str) -> &'static str {
    match table {
        "audit_log" => "seq",
        "processing" => "receipt_id",
        _ => crate::store::vouch::vouched(table).map_or("rowid", |v| v.key),
    }
}

fn quoted(column: &str) -> String {
    format!("\"{column}\"")
}

impl Store {
    /// Copy the SQLite study at `source` into the empty PostgreSQL database
    /// at `url` (migrated first), calling `progress` as rows go in. The
    /// source is opened read-only. See [`verify_copy`] for the check after.
    pub fn copy_to_postgres(source: &Path, url: &str, progress: &mut dyn FnMut(Progress)) -> Result<Copied, CopyError> {
        let source_path = match Location::of(source) {
            Location::File(path) => path,
            location @ Location::Postgres(_) => return Err(CopyError::SourceNotFile(location.display())),
        };
        let target_location = Location::of(Path::new(url));
        if !matches!(target_location, Location::Postgres(_)) {
            return Err(CopyError::TargetNotPostgres(target_location.display()));
        }
        let from = Store::open_read_only(&source_path)?;
        // No key: the target's chain is the copied one, nothing is appended.
        let to = Store::open_with(url, AuditSettings::default())?;
        let target = to.path.display().to_string();
        let source_name = source_path.display().to_string();

        let write = Transaction::begin(to.db(), true)?;
        let read = Transaction::begin(from.db(), false)?;
        // Checked under the write lock: no writer can slip in before the copy.
        for &table in COPY_ORDER {
            let any: bool =
                to.db().query_row(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), params![], |r| r.get(0))?;
            if any {
                return Err(CopyError::NotEmpty { target, table });
            }
        }
        let mut tables = Vec::with_capacity(COPY_ORDER.len());
        for &table in COPY_ORDER {
            let columns = columns(from.db(), to.db(), table).map_err(|why| CopyError::Schema {
                table,
                source_db: source_name.clone(),
                target: target.clone(),
                why,
            })?;
            let rows = copy_table(from.db(), to.db(), table, &columns, progress).map_err(|error| CopyError::Table {
                table,
                target: target.clone(),
                error: Box::new(error),
            })?;
            advance_identities(to.db(), table).map_err(|error| CopyError::Table {
                table,
                target: target.clone(),
                error: Box::new(error),
            })?;
            tables.push(TableRows { table, rows });
        }
        let head =
            from.db().query_opt("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1", params![], |r| {
                Ok((r.get::<i64>(0)?, r.get::<String>(1)?))
            })?;
        read.commit()?;
        write.commit()?;
        Ok(Copied { source: source_name, target, tables, head })
    }
}

/// The target's columns of `table`, which the source must have too (the
/// target's `rowid` being SQLite's implicit one, and its text columns the
/// source's generated ones); `Err` says what differs.
fn columns(from: Db<'_>, to: Db<'_>, table: &str) -> Result<Vec<String>, String> {
    let text = |e: StoreError| e.to_string();
    let target: Vec<String> = to
        .query_all(
            "SELECT column_name::text FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = ?1 ORDER BY ordinal_position",
            params![table],
            |r| r.get(0),
        )
        .map_err(text)?;
    // SQLite's compact columns (schema 10) are read through the generated
    // text columns PostgreSQL stores as they are.
    let compact = |c: &String| crate::store::schema::COMPACT_COLUMNS.contains(&(table, c.as_str()));
    let source: Vec<String> = from
        .query_all::<String, Vec<_>>("SELECT name FROM pragma_table_xinfo(?1) ORDER BY cid", params![table], |r| {
            r.get(0)
        })
        .map_err(text)?
        .into_iter()
        .filter(|c| !compact(c))
        .collect();
    let implicit: Vec<String> =
        target.iter().filter(|c| c.as_str() != "rowid" || source.contains(c)).cloned().collect();
    if implicit != source {
        return Err(format!("columns ({}) against ({})", source.join(", "), target.join(", ")));
    }
    Ok(target)
}

/// Copy every row of `table` in key order (a row's parent, also in the same
/// table, goes in first), in multi-row INSERTs; how many rows.
fn copy_table(
    from: Db<'_>,
    to: Db<'_>,
    table: &'static str,
    columns: &[String],
    progress: &mut dyn FnMut(Progress),
) -> Result<u64, StoreError> {
    let total: i64 = from.query_row(&format!("SELECT count(*) FROM {table}"), params![], |r| r.get(0))?;
    let total = u64::try_from(total).unwrap_or(0);
    let source_columns: Vec<String> =
        columns.iter().map(|c| if c == "rowid" { c.clone() } else { quoted(c) }).collect();
    let select = format!("SELECT {} FROM {table} ORDER BY {}", source_columns.join(", "), key_of(table));
    let width = columns.len().max(1);
    let per_batch = (BATCH_VALUES / width).clamp(1, BATCH_ROWS);
    let insert_head =
        format!("INSERT INTO {table} ({}) VALUES ", columns.iter().map(|c| quoted(c)).collect::<Vec<_>>().join(", "));

    let mut batch: Vec<Value> = Vec::with_capacity(per_batch * width);
    let mut copied = 0u64;
    let mut flush = |batch: &mut Vec<Value>, copied: &mut u64| -> Result<(), StoreError> {
        let rows = batch.len() / width;
        if rows == 0 {
            return Ok(());
        }
        let sql = insert_sql(&insert_head, rows, width);
        let values: Vec<&dyn Param> = batch.iter().map(|v| v as &dyn Param).collect();
        let inserted = to.execute(&sql, &values)?;
        if inserted != rows {
            return Err(StoreError::Invalid {
                what: "copy",
                problem: format!("{table}: {inserted} rows went in of {rows}"),
            });
        }
        batch.clear();
        let before = *copied;
        *copied += rows as u64;
        if before / PROGRESS_EVERY != *copied / PROGRESS_EVERY {
            progress(Progress { table, rows: *copied, total, done: false });
        }
        Ok(())
    };
    from.query_each(&select, params![], |row| -> Result<bool, StoreError> {
        if row.values.len() != width {
            return Err(StoreError::Invalid {
                what: "copy",
                problem: format!("{table}: a row has {} columns, expected {width}", row.values.len()),
            });
        }
        batch.extend(row.values.iter().cloned());
        if batch.len() >= per_batch * width {
            flush(&mut batch, &mut copied)?;
        }
        Ok(true)
    })?;
    flush(&mut batch, &mut copied)?;
    progress(Progress { table, rows: copied, total: total.max(copied), done: true });
    Ok(copied)
}

/// `PREFIX (?1, ?2), (?3, ?4)` for `rows` rows of `width` values.
fn insert_sql(prefix: &str, rows: usize, width: usize) -> String {
    let mut sql = String::with_capacity(prefix.len() + rows * width * 7);
    sql.push_str(prefix);
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..width {
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push('?');
            sql.push_str(&(row * width + column + 1).to_string());
        }
        sql.push(')');
    }
    sql
}

/// Move every identity of `table` past the largest value copied, so the
/// next row labfeed writes does not collide with a copied one.
fn advance_identities(to: Db<'_>, table: &str) -> Result<(), StoreError> {
    let identities: Vec<String> = to.query_all(
        "SELECT column_name::text FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = ?1 AND is_identity = 'YES'",
        params![table],
        |r| r.get(0),
    )?;
    for column in identities {
        // setval(…, NULL) changes nothing: an empty table keeps its start.
        to.query_opt(
            &format!("SELECT setval(pg_get_serial_sequence(?1, ?2), (SELECT max({}) FROM {table}))", quoted(&column)),
            params![table, column.as_str()],
            |r| r.get::<Option<i64>>(0),
        )?;
    }
    Ok(())
}

/// Check a copy: everything `verify-audit` checks, on the copy (with the
/// source's `key` and `head_file`: the chain is the same), the same head
/// as the source's, and as many rows in every table as were copied.
pub fn verify_copy(
    copied: &Copied,
    url: &str,
    key: Option<&AuditKey>,
    head_file: &Path,
) -> Result<CopyCheck, StoreError> {
    let store = Store::open_read_only(url)?;
    let integrity = store.verify_integrity(key, head_file)?;
    let tables: Vec<TableRows> = store.read(|r| {
        COPY_ORDER
            .iter()
            .map(|&table| {
                let n: i64 = r.db().query_row(&format!("SELECT count(*) FROM {table}"), params![], |row| row.get(0))?;
                Ok(TableRows { table, rows: u64::try_from(n).unwrap_or(0) })
            })
            .collect()
    })?;
    let mut problem = integrity.problem.clone();
    if problem.is_none() && integrity.chain.head != copied.head {
        let show = |head: &Option<(i64, String)>| match head {
            Some((seq, hash)) => format!("seq {seq} ({hash})"),
            None => "nothing (an empty log)".to_owned(),
        };
        problem = Some(format!(
            "the copy's audit chain ends at {}, the source's at {}",
            show(&integrity.chain.head),
            show(&copied.head)
        ));
    }
    if problem.is_none() {
        for (want, have) in copied.tables.iter().zip(&tables) {
            if want.rows != have.rows {
                problem = Some(format!(
                    "table {} has {} rows in the copy, {} in the source",
                    have.table, have.rows, want.rows
                ));
                break;
            }
        }
    }
    Ok(CopyCheck { integrity, tables, problem })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_values_are_numbered_in_order() {
        assert_eq!(insert_sql("INSERT INTO t (a, b) VALUES ", 2, 2), "INSERT INTO t (a, b) VALUES (?1, ?2), (?3, ?4)");
        assert_eq!(insert_sql("X ", 1, 3), "X (?1, ?2, ?3)");
    }

    #[test]
    fn every_vouched_table_is_copied_after_the_tables_it_references() {
        for v in crate::store::vouch::VOUCHED {
            assert!(COPY_ORDER.contains(&v.table), "{}", v.table);
        }
        let at = |t: &str| COPY_ORDER.iter().position(|x| *x == t).unwrap();
        for (child, parent) in [
            ("receipt", "raw"),
            ("processing", "receipt"),
            ("observation", "message"),
            ("result", "participant"),
            ("resolution", "result"),
            ("resolution_effect", "mismatch"),
            ("data_lock", "account"),
        ] {
            assert!(at(parent) < at(child), "{parent} before {child}");
        }
    }

    #[test]
    fn a_source_that_is_a_url_or_a_target_that_is_a_file_is_refused_without_the_password() {
        let mut none = |_: Progress| {};
        let err =
            Store::copy_to_postgres(Path::new("postgresql://u:s3cret@127.0.0.1:1/x"), "postgresql://u@h/y", &mut none)
                .unwrap_err();
        assert!(matches!(err, CopyError::SourceNotFile(_)), "{err}");
        assert!(!err.to_string().contains("s3cret"), "{err}");
        let err = Store::copy_to_postgres(Path::new("/nonexistent/labfeed.db"), "/tmp/x.db", &mut none).unwrap_err();
        assert!(matches!(err, CopyError::TargetNotPostgres(_)), "{err}");
    }
}
