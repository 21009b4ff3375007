//! A session on the PostgreSQL study database as [`crate::store::sql::Db`]
//! uses it: the store's `?N` statements prepared once as `$N`, values typed
//! by what the server expects, rows read back as the engine-neutral
//! [`Value`]s. A lost connection is noticed and made anew at the next
//! transaction, so the daemon's retry rhythm alone brings it back.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::postgres::fallible_iterator::FallibleIterator;
use ::postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use ::postgres::{Client, Config, Statement};
use bytes::BytesMut;

use super::deferred::{self, Shape};
use super::{LOCK_CLASS, PgError, connect_with, target};
use crate::store::StoreError;
use crate::store::sql::Value;

/// The second key of the write lock (see [`Session::begin_write`]).
pub(crate) const WRITE_LOCK: i32 = 2;

/// After a reconnect failed, the queries of the next moment fail at once with
/// its reason: a batch asks many, and on a silent network each attempt
/// would wait out the connect timeout again. Callers retry later anyway.
const RECONNECT_PAUSE: Duration = Duration::from_secs(5);

pub struct Session {
    config: Config,
    target: String,
    /// `None` after the connection was lost, until the next transaction.
    client: RefCell<Option<Client>>,
    statements: RefCell<HashMap<String, Statement>>,
    /// When the last reconnect failed, and why (see [`RECONNECT_PAUSE`]).
    failed_reconnect: RefCell<Option<(Instant, String)>>,
    /// Sessions opened so far (see [`Session::sessions`]).
    sessions: std::cell::Cell<u64>,
    /// Inserts held back until the next statement (see [`deferred`]).
    pending: RefCell<Vec<deferred::Row>>,
    /// Each statement as a deferrable insert, and whether its key column was
    /// added (drawn from the sequence) or is one of its parameters; or not.
    shapes: RefCell<HashMap<String, Option<Deferrable>>>,
    /// The keys each table's inserts were given in this transaction.
    keys: RefCell<HashMap<&'static str, Keys>>,
    /// `false` once keys were found not to be countable on session number
    /// `.0` (see [`Session::read_next_keys`]): inserts are not held back.
    may_draw_keys: std::cell::Cell<Option<(u64, bool)>>,
}

/// The held-back tables keyed by a sequence, with their key column.
fn keyed_tables() -> impl Iterator<Item = (&'static str, &'static str)> {
    deferred::DEFERRED
        .iter()
        .filter_map(|t| crate::store::vouch::vouched(t))
        .filter(|v| matches!(v.key, "id" | "rowid"))
        .map(|v| (v.table, v.key))
}

/// An insert that can be held back, and whether its key column was added.
type Deferrable = (Arc<Shape>, bool);

/// A table's keys in this transaction (see [`Session::next_key`]).
#[derive(Debug, Clone, Copy)]
struct Keys {
    key: &'static str,
    /// The next key to give.
    next: i64,
    /// The last key drawn from the sequence.
    drawn: i64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("target", &self.target).finish_non_exhaustive()
    }
}

/// `?N` placeholders as PostgreSQL's `$N`, outside quoted text.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    for c in sql.chars() {
        match c {
            '\'' => quoted = !quoted,
            '?' if !quoted => {
                out.push('$');
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

/// A store value as a parameter of the type the server inferred for it.
struct Param<'a>(&'a Value);

impl std::fmt::Debug for Param<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values may be study data: say only their kind.
        f.write_str(self.0.kind())
    }
}

impl ToSql for Param<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self.0 {
            Value::Null => Ok(IsNull::Yes),
            Value::Integer(n) => match *ty {
                Type::INT8 => n.to_sql(ty, out),
                Type::INT4 => i32::try_from(*n)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*n)?.to_sql(ty, out),
                Type::BOOL => (*n != 0).to_sql(ty, out),
                Type::FLOAT8 => (*n as f64).to_sql(ty, out),
                _ => Err(format!("an integer cannot be a parameter of type {ty}").into()),
            },
            Value::Real(x) => match *ty {
                Type::FLOAT8 => x.to_sql(ty, out),
                _ => Err(format!("a real cannot be a parameter of type {ty}").into()),
            },
            Value::Text(t) if <&str as ToSql>::accepts(ty) => t.as_str().to_sql(ty, out),
            Value::Blob(b) if *ty == Type::BYTEA => b.as_slice().to_sql(ty, out),
            other => Err(format!("{} cannot be a parameter of type {ty}", other.kind()).into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Column `i` of a row as a store value.
fn value(row: &::postgres::Row, i: usize, ty: &Type) -> Result<Value, ::postgres::Error> {
    let or_null = |v: Option<Value>| v.unwrap_or(Value::Null);
    Ok(match *ty {
        Type::INT8 => or_null(row.try_get::<_, Option<i64>>(i)?.map(Value::Integer)),
        Type::INT4 => or_null(row.try_get::<_, Option<i32>>(i)?.map(|n| Value::Integer(n.into()))),
        Type::INT2 => or_null(row.try_get::<_, Option<i16>>(i)?.map(|n| Value::Integer(n.into()))),
        Type::BOOL => or_null(row.try_get::<_, Option<bool>>(i)?.map(|b| Value::Integer(b.into()))),
        Type::FLOAT8 => or_null(row.try_get::<_, Option<f64>>(i)?.map(Value::Real)),
        Type::FLOAT4 => or_null(row.try_get::<_, Option<f32>>(i)?.map(|x| Value::Real(x.into()))),
        Type::BYTEA => or_null(row.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Blob)),
        // Text, and anything else the store does not use (a mistake in
        // its SQL, reported by the conversion).
        _ => or_null(row.try_get::<_, Option<String>>(i)?.map(Value::Text)),
    })
}

impl Session {
    /// Connect to the database `config` names.
    pub fn open(config: Config) -> Result<Session, PgError> {
        let client = connect_with(&config)?;
        Ok(Session {
            target: target(&config),
            config,
            client: RefCell::new(Some(client)),
            statements: RefCell::default(),
            failed_reconnect: RefCell::default(),
            sessions: std::cell::Cell::new(1),
            pending: RefCell::default(),
            shapes: RefCell::default(),
            keys: RefCell::default(),
            may_draw_keys: std::cell::Cell::new(None),
        })
    }

    /// How many sessions this has opened: a new one after a lost connection.
    pub(crate) fn sessions(&self) -> u64 {
        self.sessions.get()
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// `postgresql://USER@HOST:PORT/DB`, without the password.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Use the client (reconnecting first if `reconnect` and it was lost).
    pub(crate) fn with_client<T>(
        &self,
        reconnect: bool,
        f: impl FnOnce(&mut Client) -> Result<T, ::postgres::Error>,
    ) -> Result<T, StoreError> {
        let mut slot = self.client.try_borrow_mut().map_err(|_| StoreError::Invalid {
            what: "query",
            problem: "it ran while another query's rows were being read".to_owned(),
        })?;
        if slot.as_ref().is_none_or(Client::is_closed) {
            if !reconnect {
                return Err(self.lost("the connection was lost during the transaction"));
            }
            self.statements.borrow_mut().clear();
            let mut failed = self.failed_reconnect.borrow_mut();
            if let Some((at, why)) = failed.as_ref()
                && at.elapsed() < RECONNECT_PAUSE
            {
                return Err(StoreError::Unreachable { target: self.target.clone(), why: why.clone() });
            }
            match connect_with(&self.config) {
                Ok(client) => {
                    *failed = None;
                    *slot = Some(client);
                    self.sessions.set(self.sessions.get() + 1);
                }
                Err(e) => {
                    // The target is in Unreachable's own message: only the causes here.
                    let why = match e {
                        PgError::Connect { error, .. } => super::chain(&error),
                        other => other.to_string(),
                    };
                    *failed = Some((Instant::now(), why.clone()));
                    return Err(StoreError::Unreachable { target: self.target.clone(), why });
                }
            }
        }
        let Some(client) = slot.as_mut() else { return Err(self.lost("no connection")) };
        let result = f(client);
        if let Err(error) = &result
            && (error.is_closed() || client.is_closed())
        {
            *slot = None;
        }
        result.map_err(|error| self.error(error))
    }

    fn lost(&self, why: &str) -> StoreError {
        StoreError::Unreachable { target: self.target.clone(), why: why.to_owned() }
    }

    /// A client error as a store error: refusals by a constraint or an
    /// append-only trigger as on SQLite, a lost connection as unreachable.
    fn error(&self, error: ::postgres::Error) -> StoreError {
        use ::postgres::error::SqlState;
        if let Some(db) = error.as_db_error() {
            let code = db.code();
            if code.code().starts_with("23") || *code == SqlState::RAISE_EXCEPTION {
                return StoreError::Constraint { message: db.message().to_owned() };
            }
            if matches!(*code, SqlState::T_R_SERIALIZATION_FAILURE | SqlState::T_R_DEADLOCK_DETECTED) {
                return StoreError::Busy { message: db.message().to_owned() };
            }
            // The server shutting down or ending the session, or a connection
            // failure it reports itself: away, to be tried again later.
            if code.code().starts_with("57P0") || code.code().starts_with("08") {
                return StoreError::Unreachable { target: self.target.clone(), why: db.message().to_owned() };
            }
        } else if error.is_closed() || std::error::Error::source(&error).is_some_and(|s| s.is::<std::io::Error>()) {
            return StoreError::Unreachable { target: self.target.clone(), why: super::chain(&error) };
        }
        StoreError::Pg(PgError::Query { target: self.target.clone(), what: "a query", error })
    }

    fn statement(&self, client: &mut Client, sql: &str) -> Result<Statement, ::postgres::Error> {
        if let Some(statement) = self.statements.borrow().get(sql) {
            return Ok(statement.clone());
        }
        // The statement has placeholders, never values: safe to log.
        let statement = client
            .prepare(&numbered(sql))
            .inspect_err(|e| tracing::debug!(error = %e, sql, "PostgreSQL refused a statement"))?;
        self.statements.borrow_mut().insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// Statements without parameters: BEGIN, COMMIT, DDL.
    pub(crate) fn batch(&self, sql: &str) -> Result<(), StoreError> {
        self.flush()?;
        self.settle_keys()?;
        self.with_client(false, |client| client.batch_execute(sql))
    }

    /// Hold back an insert of `values` by `sql` into `table`, keyed by
    /// `key` (see [`deferred`]): the row's key, or `None` when `sql` is not
    /// an insert that can wait (then run it now).
    pub(crate) fn defer(
        &self,
        table: &'static str,
        key: &'static str,
        sql: &str,
        mut values: Vec<Value>,
    ) -> Result<Option<i64>, StoreError> {
        let known = self.shapes.borrow().get(sql).cloned();
        let shape = match known {
            Some(shape) => shape,
            None => {
                let shape = match Shape::parse(sql).filter(|s| s.table == table) {
                    Some(s) => {
                        let added = !s.columns.iter().any(|c| c == key);
                        let s = if added { s.with_column(key) } else { s };
                        if s.params() == values.len() + usize::from(added) {
                            let types = self.column_types(&s)?;
                            s.typed(types).map(|s| (Arc::new(s), added))
                        } else {
                            None
                        }
                    }
                    None => None,
                };
                self.shapes.borrow_mut().insert(sql.to_owned(), shape.clone());
                shape
            }
        };
        let Some((shape, added)) = shape else { return Ok(None) };
        let row_key = if added {
            let Some(next) = self.next_key(table)? else { return Ok(None) };
            values.push(Value::Integer(next));
            next
        } else {
            match shape.param_of(key).and_then(|at| values.get(at - 1)) {
                Some(Value::Integer(n)) => *n,
                _ => return Ok(None),
            }
        };
        self.pending.borrow_mut().push(deferred::Row { shape, values });
        Ok(Some(row_key))
    }

    /// The types of `shape`'s columns, as SQL names, from the server.
    fn column_types(&self, shape: &Shape) -> Result<Vec<String>, StoreError> {
        self.with_client(false, |client| {
            let probe = self.statement(client, &shape.probe())?;
            Ok(probe.params().iter().map(|ty| format!("\"{}\".\"{}\"", ty.schema(), ty.name())).collect())
        })
    }

    /// The key each table's next insert gets, read for every held-back table
    /// at once at the first insert of a transaction (and after an insert sent
    /// at once, which may draw keys itself). `false` when keys cannot be
    /// counted on: the role lacks `USAGE` on the sequences (granted by
    /// docs/multi-site.md; without it labfeed works, one insert at a time),
    /// or a sequence steps by more than one or caches values.
    fn read_next_keys(&self) -> Result<bool, StoreError> {
        let session = self.sessions.get();
        if let Some((checked, false)) = self.may_draw_keys.get()
            && checked == session
        {
            return Ok(false);
        }
        let sql = format!(
            "SELECT v.t, s.seqincrement = 1 AND s.seqcache = 1 AND has_sequence_privilege(s.seqrelid, 'USAGE'),
                    CASE WHEN has_sequence_privilege(s.seqrelid, 'USAGE')
                         THEN coalesce(pg_sequence_last_value(s.seqrelid) + 1, s.seqstart) END
             FROM (VALUES {}) v(t, k)
             JOIN pg_sequence s ON s.seqrelid = CAST(pg_get_serial_sequence(v.t, v.k) AS regclass)",
            keyed_tables().map(|(t, k)| format!("('{t}', '{k}')")).collect::<Vec<_>>().join(", ")
        );
        let mut found: Vec<(String, bool, Option<i64>)> = Vec::new();
        self.query_now(&sql, &[], |row| {
            let mut row = row.into_iter();
            if let (Some(Value::Text(t)), Some(ok), Some(next)) = (row.next(), row.next(), row.next()) {
                let next = if let Value::Integer(n) = next { Some(n) } else { None };
                found.push((t, ok == Value::Integer(1), next));
            }
            Ok::<_, StoreError>(true)
        })?;
        let may = found.len() == keyed_tables().count() && found.iter().all(|(_, ok, next)| *ok && next.is_some());
        if !may {
            tracing::info!(
                target = %self.target,
                "keys cannot be counted on from the sequences (GRANT USAGE ON ALL SEQUENCES, docs/multi-site.md; \
                 no CACHE or INCREMENT other than 1): inserts are sent one at a time"
            );
            self.may_draw_keys.set(Some((session, false)));
            return Ok(false);
        }
        let mut keys = self.keys.borrow_mut();
        for (table, _, next) in found {
            if let (Some((t, key)), Some(next)) = (keyed_tables().find(|(t, _)| *t == table), next) {
                keys.insert(t, Keys { key, next, drawn: next - 1 });
            }
        }
        Ok(true)
    }

    /// The next key of `table`: counted on from the sequence's position
    /// ([`Session::read_next_keys`]) and drawn just before anything else may
    /// draw ([`Session::settle_keys`]), so that the sequence moves on exactly
    /// as one insert at a time would move it and keys have no gaps. Under
    /// the write lock nobody else draws meanwhile, which the draw checks.
    fn next_key(&self, table: &'static str) -> Result<Option<i64>, StoreError> {
        if self.keys.borrow().is_empty() && !self.read_next_keys()? {
            return Ok(None);
        }
        let mut keys = self.keys.borrow_mut();
        let Some(keys) = keys.get_mut(table) else { return Ok(None) };
        let next = keys.next;
        keys.next += 1;
        Ok(Some(next))
    }

    /// Draw the keys counted on since the last draw (one statement for every
    /// table), checking that the sequences give exactly those.
    fn draw_counted_keys(&self) -> Result<(), StoreError> {
        let keys = self.keys.borrow().clone();
        if keys.values().all(|k| k.next - 1 == k.drawn) {
            return Ok(());
        }
        let owed = |t: &str| keys.get(t).map_or(0, |k| k.next - 1 - k.drawn);
        let tables: Vec<(&'static str, &'static str)> = keyed_tables().collect();
        let sql = format!(
            "SELECT v.t, min(d.n), max(d.n), count(d.n)
             FROM (VALUES {}) v(t, k, c)
             CROSS JOIN LATERAL (SELECT nextval(pg_get_serial_sequence(v.t, v.k)) AS n FROM generate_series(1, v.c)) d
             GROUP BY v.t",
            tables
                .iter()
                .enumerate()
                .map(|(i, (t, k))| format!("('{t}', '{k}', CAST(?{} AS BIGINT))", i + 1))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let counts: Vec<Value> = tables.iter().map(|(t, _)| Value::Integer(owed(t))).collect();
        let mut drawn: HashMap<String, Vec<Value>> = HashMap::new();
        self.query_now(&sql, &counts, |row| {
            if let Some(Value::Text(t)) = row.first() {
                drawn.insert(t.clone(), row.get(1..).map(<[Value]>::to_vec).unwrap_or_default());
            }
            Ok::<_, StoreError>(true)
        })?;
        for (table, k) in &keys {
            let count = k.next - 1 - k.drawn;
            if count == 0 {
                continue;
            }
            let expected = [Value::Integer(k.drawn + 1), Value::Integer(k.next - 1), Value::Integer(count)];
            if drawn.get(*table).map(Vec::as_slice) != Some(&expected[..]) {
                // Not again on this session: one insert at a time from now on.
                self.may_draw_keys.set(Some((self.sessions.get(), false)));
                return Err(StoreError::Invalid {
                    what: "sequence",
                    problem: format!(
                        "the sequence of {table}.{} did not give keys {} to {}: something draws from it without \
                         labfeed's write lock; this session now sends inserts one at a time, and the transaction can be run again",
                        k.key,
                        k.drawn + 1,
                        k.next - 1
                    ),
                });
            }
        }
        Ok(())
    }

    /// Send the inserts held back (one statement, unless very many).
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        for chain in deferred::statements(pending) {
            let arrays: Vec<Vec<Param<'_>>> = chain.arrays.iter().map(|a| a.iter().map(Param).collect()).collect();
            let refs: Vec<&(dyn ToSql + Sync)> = arrays.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
            self.with_client(false, |client| {
                let statement = self.statement(client, &chain.sql)?;
                client.execute(&statement, &refs)
            })?;
        }
        Ok(())
    }

    /// Before anything that may draw keys itself (an insert sent now, or
    /// the end of the transaction, after which other writers draw): draw
    /// the keys counted on, and count on from a new draw afterwards.
    fn settle_keys(&self) -> Result<(), StoreError> {
        self.draw_counted_keys()?;
        self.keys.borrow_mut().clear();
        Ok(())
    }

    /// Forget what this transaction held back or drew (it ended).
    fn forget_pending(&self) {
        self.pending.borrow_mut().clear();
        self.keys.borrow_mut().clear();
    }

    pub(crate) fn execute(&self, sql: &str, values: &[Value]) -> Result<usize, StoreError> {
        self.flush()?;
        self.settle_keys_before(sql)?;
        self.execute_now(sql, values)
    }

    /// [`Session::settle_keys`] before an insert that may draw from the
    /// sequences counted on (an insert into another table, such as the
    /// audit log's, draws none of them).
    fn settle_keys_before(&self, sql: &str) -> Result<(), StoreError> {
        let insert = sql.trim_start().get(..6).is_some_and(|w| w.eq_ignore_ascii_case("INSERT"));
        if insert && crate::store::sql::changed_table(sql).is_none_or(|t| keyed_tables().any(|(k, _)| k == t)) {
            self.settle_keys()?;
        }
        Ok(())
    }

    fn execute_now(&self, sql: &str, values: &[Value]) -> Result<usize, StoreError> {
        let params: Vec<Param<'_>> = values.iter().map(Param).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let changed = self.with_client(false, |client| {
            let statement = self.statement(client, sql)?;
            client.execute(&statement, &refs)
        })?;
        Ok(usize::try_from(changed).unwrap_or(usize::MAX))
    }

    pub(crate) fn query_each<E: From<StoreError>>(
        &self,
        sql: &str,
        values: &[Value],
        each: impl FnMut(Vec<Value>) -> Result<bool, E>,
    ) -> Result<(), E> {
        if deferred::may_read_held_back(sql) {
            self.flush()?;
            self.settle_keys_before(sql)?;
        }
        self.query_now(sql, values, each)
    }

    fn query_now<E: From<StoreError>>(
        &self,
        sql: &str,
        values: &[Value],
        mut each: impl FnMut(Vec<Value>) -> Result<bool, E>,
    ) -> Result<(), E> {
        let mut failed = None;
        self.with_client(false, |client| {
            let statement = self.statement(client, sql)?;
            let types: Vec<Type> = statement.columns().iter().map(|c| c.type_().clone()).collect();
            let mut rows = client.query_raw(&statement, values.iter().map(Param))?;
            while let Some(row) = rows.next()? {
                let mut out = Vec::with_capacity(types.len());
                for (i, ty) in types.iter().enumerate() {
                    out.push(value(&row, i, ty)?);
                }
                match each(out) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            Ok(())
        })?;
        failed.map_or(Ok(()), Err)
    }

    /// Begin a write transaction, reconnecting first if the connection was
    /// lost. It takes labfeed's write lock, held to the end: writers from
    /// every site take turns, as SQLite's `BEGIN IMMEDIATE` makes them, so
    /// slot decisions and the audit chain see every earlier commit. The
    /// transaction is READ COMMITTED, so each statement after the wait sees
    /// what the previous holder committed.
    ///
    /// BEGIN and the lock go in one message, one round trip (a daemon's
    /// small transactions are mostly round trips); a lock that failed
    /// leaves the transaction open and aborted, hence the rollback.
    pub(crate) fn begin_write(&self) -> Result<(), StoreError> {
        self.forget_pending();
        let begun = self.with_client(true, |client| {
            client.batch_execute(&format!(
                "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock({LOCK_CLASS}, {WRITE_LOCK})"
            ))
        });
        if begun.is_err() {
            self.rollback();
        }
        begun
    }

    /// Begin a read-only transaction on one snapshot.
    pub(crate) fn begin_read(&self) -> Result<(), StoreError> {
        self.forget_pending();
        self.with_client(true, |client| client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"))
    }

    /// End a transaction that failed; nothing to do when the connection is gone.
    pub(crate) fn rollback(&self) {
        self.forget_pending();
        let _ = self.with_client(false, |client| client.batch_execute("ROLLBACK"));
    }

    /// The session itself, for what only PostgreSQL has (migrations, locks).
    pub(crate) fn client(&self) -> Result<std::cell::RefMut<'_, Client>, StoreError> {
        self.flush()?;
        self.settle_keys()?;
        let slot = self.client.try_borrow_mut().map_err(|_| self.lost("the session is in use"))?;
        std::cell::RefMut::filter_map(slot, Option::as_mut).map_err(|_| self.lost("no connection"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_outside_quotes() {
        assert_eq!(numbered("SELECT ?1, '?' || ?12 WHERE a = ?2"), "SELECT $1, '?' || $12 WHERE a = $2");
    }
}
