//! The one place the store talks to its database engine: statements with
//! `?N` parameters, values in and typed columns out, whatever the engine.
//!
//! Queries elsewhere in `store` go through [`Db`] rather than an engine's
//! own API, so that one set of SQL and row readers can serve SQLite today
//! and PostgreSQL next (SPEC §10): parameters become [`Value`]s, and a row
//! is read by column index into any type that is a [`Column`].

use std::cell::{OnceCell, RefCell};

use rusqlite::Connection;
use rusqlite::types::{ToSqlOutput, ValueRef};

use crate::store::StoreError;
use crate::store::memo::Memo;
use crate::store::postgres::Session;
use crate::store::vouch::{self, Vouched, Written};

/// A value as the engines exchange it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Integer(_) => "an integer",
            Value::Real(_) => "a real",
            Value::Text(_) => "text",
            Value::Blob(_) => "a blob",
        }
    }
}

/// Something a statement can take as a parameter.
pub(crate) trait Param {
    fn to_value(&self) -> Value;
}

/// Something a column can be read into.
pub(crate) trait Column: Sized {
    /// `Err` says what the value was instead (the caller adds where).
    fn from_value(value: Value) -> Result<Self, String>;
}

/// `params![a, b]`: a statement's parameters, in order (`?1`, `?2`, …).
macro_rules! params {
    () => { &[] as &[&dyn $crate::store::sql::Param] };
    ($($p:expr),+ $(,)?) => { &[$(&$p as &dyn $crate::store::sql::Param),+] as &[&dyn $crate::store::sql::Param] };
}
pub(crate) use params;

/// One row, so that readers need not know the engine's row type. A
/// SQLite row is read where it lies: a column becomes a [`Value`] when it
/// is asked for, its text copied once.
pub(crate) struct Row<'r> {
    /// Every column, for readers that take the row whole.
    pub(crate) values: Values<'r>,
}

/// A row's columns as [`Value`]s; a SQLite row's are made on first use.
pub(crate) struct Values<'r> {
    source: Source<'r>,
    made: OnceCell<Vec<Value>>,
}

enum Source<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    Values(&'r [Value]),
}

impl Values<'_> {
    /// How many columns. A SQLite text column that is not UTF-8 ends the
    /// row: it has fewer columns than its query asked for (a copy refuses
    /// it, a digest of it does not match; [`Row::get`] of the column says
    /// why).
    pub(crate) fn len(&self) -> usize {
        self.all().len()
    }

    pub(crate) fn iter(&self) -> std::slice::Iter<'_, Value> {
        self.all().iter()
    }

    fn all(&self) -> &[Value] {
        match self.source {
            Source::Sqlite(row) => self
                .made
                .get_or_init(|| (0..row.as_ref().column_count()).map_while(|i| sqlite_value(row, i).ok()).collect()),
            Source::Values(values) => values,
        }
    }
}

impl<'r> Row<'r> {
    fn sqlite(row: &'r rusqlite::Row<'r>) -> Row<'r> {
        Row { values: Values { source: Source::Sqlite(row), made: OnceCell::new() } }
    }

    fn of_values(values: &'r [Value]) -> Row<'r> {
        Row { values: Values { source: Source::Values(values), made: OnceCell::new() } }
    }

    /// Column `index` (from 0) as `T`.
    pub(crate) fn get<T: Column>(&self, index: usize) -> Result<T, StoreError> {
        let (value, count) = match self.values.source {
            Source::Sqlite(row) => {
                let count = row.as_ref().column_count();
                (if index < count { Some(sqlite_value(row, index)?) } else { None }, count)
            }
            Source::Values(values) => (values.get(index).cloned(), values.len()),
        };
        let value = value.ok_or_else(|| StoreError::Invalid {
            what: "query",
            problem: format!("it has no column {index} (it has {count})"),
        })?;
        T::from_value(value)
            .map_err(|problem| StoreError::Invalid { what: "column", problem: format!("{index}: {problem}") })
    }
}

fn sqlite_value(row: &rusqlite::Row<'_>, index: usize) -> Result<Value, StoreError> {
    Ok(match row.get_ref(index)? {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(n) => Value::Integer(n),
        ValueRef::Real(x) => Value::Real(x),
        ValueRef::Text(t) => {
            Value::Text(std::str::from_utf8(t).map_err(|e| rusqlite::Error::Utf8Error(index, e))?.to_owned())
        }
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    })
}

/// A connection as the store's queries see it (borrowed from the `Store`).
/// In a write transaction it also notes every row written to a vouched
/// table ([`crate::store::vouch`]): each such INSERT or UPDATE gets a
/// `RETURNING` of the row's key, which is how both engines tell it.
#[derive(Clone, Copy)]
pub(crate) struct Db<'c> {
    engine: Engine<'c>,
    written: Option<&'c RefCell<Written>>,
    /// In a write transaction, what it has read (see [`crate::store::memo`]).
    memo: Option<&'c RefCell<Memo>>,
}

#[derive(Clone, Copy)]
enum Engine<'c> {
    Sqlite(&'c Connection),
    Postgres(&'c Session),
}

fn bind(params: &[&dyn Param]) -> Vec<Value> {
    params.iter().map(|p| p.to_value()).collect()
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Integer(n) => ToSqlOutput::Borrowed(ValueRef::Integer(*n)),
            Value::Real(x) => ToSqlOutput::Borrowed(ValueRef::Real(*x)),
            Value::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
            Value::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

/// The vouched table an INSERT or UPDATE writes, if it writes one.
fn written_table(sql: &str) -> Option<&'static Vouched> {
    vouch::vouched(changed_table(sql)?)
}

/// The table an INSERT or UPDATE writes.
pub(crate) fn changed_table(sql: &str) -> Option<&str> {
    let mut words = sql.split_ascii_whitespace();
    let table = match words.next()? {
        w if w.eq_ignore_ascii_case("INSERT") => {
            let into = words.next()?;
            if !into.eq_ignore_ascii_case("INTO") {
                return None;
            }
            words.next()?
        }
        w if w.eq_ignore_ascii_case("UPDATE") => words.next()?,
        _ => return None,
    };
    table.split('(').next()
}

impl<'c> Db<'c> {
    pub(crate) fn sqlite(conn: &'c Connection) -> Db<'c> {
        Db { engine: Engine::Sqlite(conn), written: None, memo: None }
    }

    pub(crate) fn postgres(session: &'c Session) -> Db<'c> {
        Db { engine: Engine::Postgres(session), written: None, memo: None }
    }

    /// The same connection, noting the rows it writes in `written`.
    pub(crate) fn noting(self, written: &'c RefCell<Written>) -> Db<'c> {
        Db { written: Some(written), ..self }
    }

    /// The same connection, remembering what it reads in `memo` (a write
    /// transaction's, which nothing else changes while it runs).
    pub(crate) fn remembering(self, memo: &'c RefCell<Memo>) -> Db<'c> {
        Db { memo: Some(memo), ..self }
    }

    /// What this transaction has read, if it keeps a memo.
    pub(crate) fn memo(&self) -> Option<&'c RefCell<Memo>> {
        self.memo
    }

    /// Whether the engine is SQLite, whose schema 10 keeps hashes, times and
    /// outcomes in compact columns (PostgreSQL keeps the text columns).
    pub(crate) fn is_sqlite(&self) -> bool {
        matches!(self.engine, Engine::Sqlite(_))
    }

    /// The PostgreSQL session, when that is the engine.
    pub(crate) fn session(&self) -> Option<&'c Session> {
        match self.engine {
            Engine::Postgres(session) => Some(session),
            Engine::Sqlite(_) => None,
        }
    }

    /// The rows noted so far, leaving the log empty.
    pub(crate) fn take_written(&self) -> Written {
        self.written.map(|w| std::mem::take(&mut *w.borrow_mut())).unwrap_or_default()
    }

    /// Note rows as written (to vouch for rows written before the log was kept).
    pub(crate) fn note_written(&self, table: &'static str, keys: impl IntoIterator<Item = i64>) {
        if let Some(w) = self.written {
            let mut log = w.borrow_mut();
            for key in keys {
                log.add(table, key);
            }
        }
    }

    /// Run statements without parameters or rows (BEGIN, COMMIT, DDL).
    pub(crate) fn batch(&self, sql: &str) -> Result<(), StoreError> {
        match self.engine {
            Engine::Sqlite(conn) => Ok(conn.execute_batch(sql)?),
            Engine::Postgres(session) => session.batch(sql),
        }
    }

    /// Run a statement that returns no rows; how many rows it changed.
    pub(crate) fn execute(&self, sql: &str, params: &[&dyn Param]) -> Result<usize, StoreError> {
        if let (Some(memo), Some(table)) = (self.memo, changed_table(sql)) {
            memo.borrow_mut().wrote(table);
        }
        if let (Some(written), Some(v)) = (self.written, written_table(sql)) {
            if let Engine::Postgres(session) = self.engine
                && let Some(key) = session.defer(v.table, v.key, sql, bind(params))?
            {
                let mut log = written.borrow_mut();
                log.add(v.table, key);
                log.last = Some(key);
                return Ok(1);
            }
            let keys: Vec<i64> = self.query_all(&format!("{sql} RETURNING {}", v.key), params, |r| r.get::<i64>(0))?;
            let mut log = written.borrow_mut();
            for &key in &keys {
                log.add(v.table, key);
            }
            log.last = keys.last().copied();
            return Ok(keys.len());
        }
        let values = bind(params);
        match self.engine {
            Engine::Sqlite(conn) => Ok(conn.prepare_cached(sql)?.execute(rusqlite::params_from_iter(values.iter()))?),
            Engine::Postgres(session) => session.execute(sql, &values),
        }
    }

    /// Run an INSERT into a vouched table, in a write transaction; the new row's key.
    pub(crate) fn insert(&self, sql: &str, params: &[&dyn Param]) -> Result<i64, StoreError> {
        let Some(written) = self.written.filter(|_| written_table(sql).is_some()) else {
            return Err(StoreError::Invalid {
                what: "insert",
                problem: "it is not an INSERT into a vouched table in a write transaction".to_owned(),
            });
        };
        self.execute(sql, params)?;
        written
            .borrow()
            .last
            .ok_or_else(|| StoreError::Invalid { what: "insert", problem: "it inserted no row".to_owned() })
    }

    /// The one row a query returns; an error when it returns none.
    pub(crate) fn query_row<T>(
        &self,
        sql: &str,
        params: &[&dyn Param],
        read: impl FnOnce(&Row) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.query_opt(sql, params, read)?
            .ok_or_else(|| StoreError::Invalid { what: "query", problem: "it returned no row".to_owned() })
    }

    /// The first row a query returns, if any.
    pub(crate) fn query_opt<T>(
        &self,
        sql: &str,
        params: &[&dyn Param],
        read: impl FnOnce(&Row) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        // The first row is read where it lies: no copy of its values.
        let mut read = Some(read);
        let mut first = None;
        self.query_each(sql, params, |row| {
            first = read.take().map(|read| read(row));
            Ok::<_, StoreError>(false)
        })?;
        first.transpose()
    }

    /// Every row a query returns, each read by `read`, collected (a `Vec`, a set, a map).
    pub(crate) fn query_all<T, C: FromIterator<T>>(
        &self,
        sql: &str,
        params: &[&dyn Param],
        mut read: impl FnMut(&Row) -> Result<T, StoreError>,
    ) -> Result<C, StoreError> {
        let mut out = Vec::new();
        self.query_each(sql, params, |row| {
            out.push(read(row)?);
            Ok::<_, StoreError>(true)
        })?;
        Ok(out.into_iter().collect())
    }

    /// Hand each row to `each` as it comes, never holding them all (an
    /// audit trail of millions of rows), while it returns `Ok(true)`.
    /// `each` must not query the database itself.
    pub(crate) fn query_each<E: From<StoreError>>(
        &self,
        sql: &str,
        params: &[&dyn Param],
        mut each: impl FnMut(&Row) -> Result<bool, E>,
    ) -> Result<(), E> {
        let values = bind(params);
        match self.engine {
            Engine::Sqlite(conn) => {
                let mut statement = conn.prepare_cached(sql).map_err(StoreError::from)?;
                let mut rows = statement.query(rusqlite::params_from_iter(values.iter())).map_err(StoreError::from)?;
                while let Some(row) = rows.next().map_err(StoreError::from)? {
                    if !each(&Row::sqlite(row))? {
                        break;
                    }
                }
                Ok(())
            }
            Engine::Postgres(session) => session.query_each(sql, &values, |values| each(&Row::of_values(&values))),
        }
    }
}

// Parameters.

impl<T: Param + ?Sized> Param for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

impl<T: Param> Param for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, Param::to_value)
    }
}

macro_rules! integer_param {
    ($($t:ty),+) => {$(
        impl Param for $t {
            fn to_value(&self) -> Value {
                Value::Integer(i64::from(*self))
            }
        }
    )+};
}
integer_param!(i64, i32, u32, u16, u8, bool);

impl Param for usize {
    fn to_value(&self) -> Value {
        Value::Integer(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}

impl Param for u64 {
    fn to_value(&self) -> Value {
        Value::Integer(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}

impl Param for f64 {
    fn to_value(&self) -> Value {
        Value::Real(*self)
    }
}

impl Param for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_owned())
    }
}

impl Param for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}

impl Param for [u8] {
    fn to_value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}

impl Param for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Blob(self.clone())
    }
}

impl Param for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}

// Columns.

impl<T: Column> Column for Option<T> {
    fn from_value(value: Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

impl Column for i64 {
    fn from_value(value: Value) -> Result<Self, String> {
        match value {
            Value::Integer(n) => Ok(n),
            other => Err(format!("expected an integer, found {}", other.kind())),
        }
    }
}

impl Column for u32 {
    fn from_value(value: Value) -> Result<Self, String> {
        let n = i64::from_value(value)?;
        u32::try_from(n).map_err(|_| format!("{n} is out of range"))
    }
}

impl Column for bool {
    fn from_value(value: Value) -> Result<Self, String> {
        match i64::from_value(value)? {
            0 => Ok(false),
            1 => Ok(true),
            n => Err(format!("expected 0 or 1, found {n}")),
        }
    }
}

impl Column for f64 {
    fn from_value(value: Value) -> Result<Self, String> {
        match value {
            Value::Real(x) => Ok(x),
            // An integral REAL may come back as an integer.
            Value::Integer(n) => Ok(n as f64),
            other => Err(format!("expected a number, found {}", other.kind())),
        }
    }
}

impl Column for String {
    fn from_value(value: Value) -> Result<Self, String> {
        match value {
            Value::Text(t) => Ok(t),
            other => Err(format!("expected text, found {}", other.kind())),
        }
    }
}

impl Column for Vec<u8> {
    fn from_value(value: Value) -> Result<Self, String> {
        match value {
            Value::Blob(b) => Ok(b),
            other => Err(format!("expected a blob, found {}", other.kind())),
        }
    }
}

/// Times are stored as UTC RFC 3339 text.
impl Column for jiff::Timestamp {
    fn from_value(value: Value) -> Result<Self, String> {
        // SQLite keeps most UTC times as seconds since 1970 (schema 10).
        if let Value::Integer(seconds) = value {
            return jiff::Timestamp::from_second(seconds).map_err(|e| format!("bad UTC time {seconds}: {e}"));
        }
        let text = String::from_value(value)?;
        text.parse().map_err(|e| format!("bad UTC time {text:?}: {e}"))
    }
}

impl Column for Value {
    fn from_value(value: Value) -> Result<Self, String> {
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_utc_time_reads_the_same_from_seconds_or_text() {
        let text = "2026-03-02T07:45:00Z";
        let from_text = jiff::Timestamp::from_value(Value::Text(text.to_owned()));
        let seconds = text.parse::<jiff::Timestamp>().map(|t| t.as_second()).unwrap_or_default();
        assert_eq!(jiff::Timestamp::from_value(Value::Integer(seconds)), from_text);
        assert!(from_text.is_ok_and(|t| t.to_string() == text));
        assert!(jiff::Timestamp::from_value(Value::Integer(i64::MAX)).is_err());
    }

    fn db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER, x REAL, s TEXT, b BLOB) STRICT")
            .unwrap();
        conn
    }

    #[test]
    fn values_go_in_and_come_out_typed() {
        let conn = db();
        let db = Db::sqlite(&conn);
        let none: Option<String> = None;
        let changed = db
            .execute("INSERT INTO t (n, x, s, b) VALUES (?1, ?2, ?3, ?4)", params![true, 2.5, "a", vec![0u8, 1]])
            .unwrap();
        assert_eq!(changed, 1);
        db.execute("INSERT INTO t (n, x, s, b) VALUES (?1, ?2, ?3, NULL)", params![7i64, 3.0, none]).unwrap();
        let rows: Vec<_> = db
            .query_all("SELECT n, x, s, b FROM t ORDER BY id", params![], |r| {
                Ok((r.get::<i64>(0)?, r.get::<f64>(1)?, r.get::<Option<String>>(2)?, r.get::<Option<Vec<u8>>>(3)?))
            })
            .unwrap();
        assert_eq!(rows, [(1, 2.5, Some("a".to_owned()), Some(vec![0, 1])), (7, 3.0, None, None)]);
        let first: bool = db.query_row("SELECT n FROM t WHERE id = ?1", params![1i64], |r| r.get(0)).unwrap();
        assert!(first);
        let gone: Option<i64> = db.query_opt("SELECT n FROM t WHERE id = ?1", params![9i64], |r| r.get(0)).unwrap();
        assert_eq!(gone, None);
        assert!(db.query_row("SELECT n FROM t WHERE id = 9", params![], |r| r.get::<i64>(0)).is_err());
    }

    #[test]
    fn a_row_is_read_whole_or_by_column_and_text_that_is_not_utf8_is_refused() {
        let conn = db();
        let db = Db::sqlite(&conn);
        let sql = "SELECT 7, 'a', NULL, CAST(x'ff' AS TEXT), x'00'";
        let whole: Vec<Value> = db.query_row(sql, params![], |r| Ok(r.values.iter().cloned().collect())).unwrap();
        // The row ends at the column that is not UTF-8: shorter than asked for.
        assert_eq!(whole, [Value::Integer(7), Value::Text("a".into()), Value::Null]);
        let len = db.query_row(sql, params![], |r| Ok(r.values.len())).unwrap();
        assert_eq!(len, 3);
        let err = db.query_row(sql, params![], |r| r.get::<String>(3)).unwrap_err();
        assert!(err.to_string().contains("UTF-8") || err.to_string().contains("utf"), "{err}");
        let blob: Vec<u8> = db.query_row(sql, params![], |r| r.get(4)).unwrap();
        assert_eq!(blob, [0]);
        let err = db.query_row(sql, params![], |r| r.get::<i64>(5)).unwrap_err();
        assert!(err.to_string().contains("it has no column 5 (it has 5)"), "{err}");
    }

    #[test]
    fn a_column_of_the_wrong_kind_is_an_error_naming_it() {
        let conn = db();
        let db = Db::sqlite(&conn);
        db.execute("INSERT INTO t (n, s) VALUES (2, 'x')", params![]).unwrap();
        let err = db.query_row("SELECT n, s FROM t", params![], |r| r.get::<i64>(1)).unwrap_err();
        assert!(err.to_string().contains("1: expected an integer, found text"), "{err}");
        let err = db.query_row("SELECT n FROM t", params![], |r| r.get::<bool>(0)).unwrap_err();
        assert!(err.to_string().contains("expected 0 or 1, found 2"), "{err}");
    }
}
