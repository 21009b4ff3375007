//! Machine inserts on PostgreSQL, sent together instead of one round trip
//! each.
//!
//! A backlog writes a raw copy, a receipt, a message, observations, results
//! and a processing row per file; on a network each INSERT waiting for its
//! answer is most of the time spent. Inside a write transaction an INSERT
//! into one of [`DEFERRED`] is held back: its key is counted on from the
//! table's sequence (see `Session::next_key`), and the rows go out as one
//! chained statement, tables in the order their references need, before
//! the next statement that may read them ([`may_read_held_back`]) or write.
//! An error (a constraint) then surfaces at that statement and fails the
//! transaction as it would have anyway: PostgreSQL ends a transaction at
//! its first error.

use std::sync::Arc;

use crate::store::sql::Value;

/// The tables held back: the machine inserts, in an order where every
/// reference points to a table before it (or to its own, checked at the end
/// of the statement).
pub(crate) const DEFERRED: &[&str] = crate::store::write::MACHINE_ENTITIES;

/// The most bytes of values one statement carries: an array parameter
/// holds at most 1 GB, and memory on a lab PC is small.
const MAX_BYTES: usize = 64 << 20;

/// An `INSERT INTO t (c, …) VALUES (…)` of one row, taken apart.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Shape {
    pub(crate) table: String,
    pub(crate) columns: Vec<String>,
    /// Each column's value: a parameter number (from 1) or a literal.
    pub(crate) values: Vec<Item>,
    /// Each column's type, as the server names it (see [`Shape::typed`]).
    pub(crate) types: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Item {
    Param(usize),
    Literal(String),
}

impl Shape {
    /// `sql` taken apart, when it is a plain one-row insert into a table of
    /// [`DEFERRED`] whose values are parameters 1 to N (each used) and
    /// quoted or numeric literals.
    pub(crate) fn parse(sql: &str) -> Option<Shape> {
        let rest = strip_word(sql.trim_start(), "INSERT")?;
        let rest = strip_word(rest, "INTO")?;
        let open = rest.find('(')?;
        let table = rest.get(..open)?.trim();
        if !DEFERRED.contains(&table) {
            return None;
        }
        let rest = rest.get(open + 1..)?;
        let close = rest.find(')')?;
        let columns: Vec<String> = rest.get(..close)?.split(',').map(|c| c.trim().to_owned()).collect();
        let rest = strip_word(rest.get(close + 1..)?.trim_start(), "VALUES")?.trim();
        let inner = rest.strip_prefix('(')?.strip_suffix(')')?;
        let values: Vec<Item> = inner.split(',').map(item).collect::<Option<_>>()?;
        let plain = |c: &String| !c.is_empty() && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        let shape = Shape { table: table.to_owned(), columns, values, types: Vec::new() };
        let numbered = (1..=shape.params()).all(|n| shape.values.contains(&Item::Param(n)));
        (shape.columns.len() == shape.values.len() && shape.columns.iter().all(plain) && shape.params() > 0 && numbered)
            .then_some(shape)
    }

    /// How many parameters one row takes (the highest number used).
    pub(crate) fn params(&self) -> usize {
        self.values.iter().map(|v| if let Item::Param(n) = v { *n } else { 0 }).max().unwrap_or(0)
    }

    /// The same insert with `column` given as one more parameter.
    pub(crate) fn with_column(&self, column: &str) -> Shape {
        let mut shape = self.clone();
        let n = self.params() + 1;
        shape.columns.push(column.to_owned());
        shape.values.push(Item::Param(n));
        shape
    }

    /// The position of `column`'s value: its parameter number, if it is one.
    pub(crate) fn param_of(&self, column: &str) -> Option<usize> {
        let i = self.columns.iter().position(|c| c == column)?;
        match self.values.get(i)? {
            Item::Param(n) => Some(*n),
            Item::Literal(_) => None,
        }
    }

    /// The insert of one row with every column a parameter: prepared, it
    /// tells each column's type (see [`Shape::typed`]).
    pub(crate) fn probe(&self) -> String {
        let params: Vec<String> = (1..=self.columns.len()).map(|i| format!("?{i}")).collect();
        format!("INSERT INTO {} ({}) VALUES ({})", self.table, self.columns.join(", "), params.join(", "))
    }

    /// The same insert knowing its columns' types, one per column.
    pub(crate) fn typed(mut self, types: Vec<String>) -> Option<Shape> {
        (types.len() == self.columns.len()).then(|| {
            self.types = types;
            self
        })
    }

    /// The insert of any number of rows, each row's parameter N an element
    /// of array parameter `?first-1+N`:
    ///
    /// ```text
    /// INSERT INTO t (a, b, c) SELECT u.p1, CAST('x' AS text), u.p2
    /// FROM unnest(CAST(?7 AS int8[]), CAST(?8 AS text[])) AS u(p1, p2)
    /// ```
    ///
    /// One text for any number of rows, so the server prepares it once, and
    /// a few array parameters instead of one per value.
    pub(crate) fn sql(&self, first: usize) -> String {
        let type_of = |n: usize| {
            let at = self.values.iter().position(|v| *v == Item::Param(n));
            at.and_then(|i| self.types.get(i)).map_or("text", String::as_str)
        };
        let select: Vec<String> = self
            .values
            .iter()
            .zip(&self.types)
            .map(|(value, ty)| match value {
                Item::Param(n) => format!("u.p{n}"),
                Item::Literal(text) => format!("CAST({text} AS {ty})"),
            })
            .collect();
        let arrays: Vec<String> =
            (1..=self.params()).map(|n| format!("CAST(?{} AS {}[])", first - 1 + n, type_of(n))).collect();
        let names: Vec<String> = (1..=self.params()).map(|n| format!("p{n}")).collect();
        format!(
            "INSERT INTO {} ({}) SELECT {} FROM unnest({}) AS u({})",
            self.table,
            self.columns.join(", "),
            select.join(", "),
            arrays.join(", "),
            names.join(", ")
        )
    }
}

/// The views over [`DEFERRED`] tables.
const VIEWS: &[&str] = &["current_result", "open_mismatch"];

/// Whether `sql` may read rows held back: it is not a plain SELECT, or it
/// names a [`DEFERRED`] table or a view over one. Other reads (study data,
/// accounts, the audit log) need not wait for them.
pub(crate) fn may_read_held_back(sql: &str) -> bool {
    if strip_word(sql.trim_start(), "SELECT").is_none() {
        return true;
    }
    sql.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|word| DEFERRED.iter().chain(VIEWS).any(|t| word.eq_ignore_ascii_case(t)))
}

fn strip_word<'a>(text: &'a str, word: &str) -> Option<&'a str> {
    let head = text.get(..word.len())?;
    let rest = text.get(word.len()..)?;
    (head.eq_ignore_ascii_case(word) && rest.starts_with(|c: char| c.is_ascii_whitespace())).then(|| rest.trim_start())
}

fn item(text: &str) -> Option<Item> {
    let text = text.trim();
    if let Some(n) = text.strip_prefix('?') {
        return n.parse().ok().filter(|&n| n >= 1).map(Item::Param);
    }
    let quoted = text.len() >= 2
        && text.starts_with('\'')
        && text.ends_with('\'')
        && text.get(1..text.len() - 1).is_some_and(|inner| !inner.contains('\''));
    let number = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    (quoted || number).then(|| Item::Literal(text.to_owned()))
}

/// One row held back.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) shape: Arc<Shape>,
    pub(crate) values: Vec<Value>,
}

/// The rows of one insert, each its values.
type Group = (Arc<Shape>, Vec<Vec<Value>>);

/// One statement to send: its text, and its parameters, each an array of
/// one value per row.
#[derive(Debug, PartialEq)]
pub(crate) struct Chain {
    pub(crate) sql: String,
    pub(crate) arrays: Vec<Vec<Value>>,
}

/// The rows of `pending` as statements to send: one, unless they carry more
/// than [`MAX_BYTES`]. A statement is a chain of inserts (`WITH i0 AS
/// (INSERT …) INSERT …`), one per table and insert, in [`DEFERRED`] order
/// and rows in call order within each. References between the rows of one
/// statement are checked at its end.
pub(crate) fn statements(pending: Vec<Row>) -> Vec<Chain> {
    // The rows of each insert, by table in DEFERRED order.
    let mut by_table: Vec<Vec<Group>> = DEFERRED.iter().map(|_| Vec::new()).collect();
    for row in pending {
        let at = DEFERRED.iter().position(|t| *t == row.shape.table).unwrap_or(0);
        let Some(groups) = by_table.get_mut(at) else { continue };
        match groups.iter_mut().find(|(shape, _)| Arc::ptr_eq(shape, &row.shape) || **shape == *row.shape) {
            Some((_, rows)) => rows.push(row.values),
            None => groups.push((row.shape, vec![row.values])),
        }
    }
    let mut out = Vec::new();
    let mut parts: Vec<String> = Vec::new();
    let mut arrays: Vec<Vec<Value>> = Vec::new();
    let mut bytes = 0;
    for (shape, rows) in by_table.into_iter().flatten() {
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let mut part: Vec<Vec<Value>> = (0..shape.params()).map(|_| Vec::new()).collect();
            // Only raw copies are big, and only between them is a cut safe: other
            // tables' rows may point at rows of their own table sent after them
            // (a new version at a withdrawal), checked at the statement's end.
            let may_cut = shape.table == "raw";
            while let Some(row) = rows.next_if(|row| bytes == 0 || !may_cut || bytes + size(row) <= MAX_BYTES) {
                bytes += size(&row);
                for (array, value) in part.iter_mut().zip(row) {
                    array.push(value);
                }
            }
            if part.first().is_some_and(|a| !a.is_empty()) {
                parts.push(shape.sql(arrays.len() + 1));
                arrays.extend(part);
            }
            if rows.peek().is_some() {
                out.push(Chain { sql: chain(&mut parts), arrays: std::mem::take(&mut arrays) });
                bytes = 0;
            }
        }
    }
    if !parts.is_empty() {
        out.push(Chain { sql: chain(&mut parts), arrays });
    }
    out
}

/// About how many bytes `row`'s values take.
fn size(row: &[Value]) -> usize {
    row.iter()
        .map(|v| match v {
            Value::Text(t) => t.len(),
            Value::Blob(b) => b.len(),
            _ => 8,
        })
        .sum()
}

/// One statement of `parts` (inserts), leaving `parts` empty.
fn chain(parts: &mut Vec<String>) -> String {
    let last = parts.pop().unwrap_or_default();
    let mut sql = String::new();
    for (i, part) in parts.drain(..).enumerate() {
        sql.push_str(if i == 0 { "WITH " } else { ", " });
        sql.push_str(&format!("i{i} AS ({part})"));
    }
    if !sql.is_empty() {
        sql.push(' ');
    }
    sql.push_str(&last);
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_inserts_are_taken_apart_and_others_are_not() {
        let shape = Shape::parse(
            "INSERT INTO resolution_effect (resolution_id, kind, result_id)\n     VALUES (?1, 'result', ?2)",
        )
        .unwrap();
        assert_eq!(shape.table, "resolution_effect");
        assert_eq!(shape.columns, ["resolution_id", "kind", "result_id"]);
        assert_eq!(shape.values, [Item::Param(1), Item::Literal("'result'".into()), Item::Param(2)]);
        assert_eq!(shape.params(), 2);
        for other in [
            "INSERT INTO participant (code, site) VALUES (?1, ?2)",
            "INSERT INTO result (a) SELECT ?1",
            "INSERT INTO result (a, b) VALUES (?1, coalesce(?2, 0))",
            "INSERT INTO result (a, b) VALUES (?1)",
            "INSERT INTO result (a) VALUES (?1) ON CONFLICT DO NOTHING",
            "UPDATE result SET a = ?1",
            "INSERT INTO result (a) VALUES ('it''s')",
        ] {
            assert_eq!(Shape::parse(other), None, "{other}");
        }
    }

    /// `shape` with every column typed `t`.
    fn typed(shape: Shape) -> Arc<Shape> {
        let types = shape.columns.iter().map(|c| format!("t_{c}")).collect();
        Arc::new(shape.typed(types).unwrap())
    }

    #[test]
    fn a_key_column_is_one_more_parameter_and_rows_go_in_as_arrays() {
        let shape = Shape::parse("INSERT INTO message (raw_id, format) VALUES (?1, 'astm')").unwrap().with_column("id");
        assert_eq!(shape.param_of("id"), Some(2));
        assert_eq!(shape.param_of("format"), None);
        assert_eq!(shape.probe(), "INSERT INTO message (raw_id, format, id) VALUES (?1, ?2, ?3)");
        assert_eq!(shape.clone().typed(vec!["int8".into()]), None, "one type per column");
        assert_eq!(
            typed(shape).sql(3),
            "INSERT INTO message (raw_id, format, id) SELECT u.p1, CAST('astm' AS t_format), u.p2 \
             FROM unnest(CAST(?3 AS t_raw_id[]), CAST(?4 AS t_id[])) AS u(p1, p2)"
        );
    }

    #[test]
    fn parameters_must_be_numbered_from_one_without_gaps() {
        assert!(Shape::parse("INSERT INTO result (a, b) VALUES (?2, ?1)").is_some());
        assert!(Shape::parse("INSERT INTO result (a, b) VALUES (?1, ?1)").is_some());
        assert_eq!(Shape::parse("INSERT INTO result (a, b) VALUES (?1, ?3)"), None);
        assert_eq!(Shape::parse("INSERT INTO result (a) VALUES (7)"), None);
    }

    #[test]
    fn rows_go_out_in_one_chain_in_reference_order() {
        let result = typed(Shape::parse("INSERT INTO result (observation_id) VALUES (?1)").unwrap());
        let observation = typed(Shape::parse("INSERT INTO observation (message_id) VALUES (?1)").unwrap());
        let corrected = typed(Shape::parse("INSERT INTO result (observation_id, kind) VALUES (?1, 'c')").unwrap());
        let mut pending = Vec::new();
        for n in 0..3 {
            pending.push(Row { shape: observation.clone(), values: vec![Value::Integer(n)] });
            pending.push(Row { shape: result.clone(), values: vec![Value::Integer(100 + n)] });
            pending.push(Row { shape: corrected.clone(), values: vec![Value::Integer(200 + n)] });
        }
        let out = statements(pending);
        assert_eq!(out.len(), 1);
        let Chain { sql, arrays } = &out[0];
        assert_eq!(
            sql,
            "WITH i0 AS (INSERT INTO observation (message_id) SELECT u.p1 \
             FROM unnest(CAST(?1 AS t_message_id[])) AS u(p1)), \
             i1 AS (INSERT INTO result (observation_id) SELECT u.p1 \
             FROM unnest(CAST(?2 AS t_observation_id[])) AS u(p1)) \
             INSERT INTO result (observation_id, kind) SELECT u.p1, CAST('c' AS t_kind) \
             FROM unnest(CAST(?3 AS t_observation_id[])) AS u(p1)"
        );
        let numbers: Vec<Vec<i64>> = arrays
            .iter()
            .map(|a| a.iter().map(|v| if let Value::Integer(n) = v { *n } else { -1 }).collect())
            .collect();
        assert_eq!(numbers, [[0, 1, 2], [100, 101, 102], [200, 201, 202]]);
    }

    #[test]
    fn reads_of_study_data_need_not_wait_for_rows_held_back() {
        for waits in [
            "SELECT id FROM raw WHERE sha256 = ?1",
            "SELECT r.id FROM current_result r",
            "select count(*) from Receipt",
            "INSERT INTO participant (code) VALUES (?1) RETURNING rowid",
            "WITH x AS (SELECT 1) SELECT * FROM x",
        ] {
            assert!(may_read_held_back(waits), "{waits}");
        }
        for free in [
            "SELECT participant, visit, meal_start FROM visit WHERE participant = ?1 AND visit = ?2",
            "SELECT EXISTS (SELECT 1 FROM participant WHERE code = ?1)",
            "SELECT seq, hash, keyed FROM audit_log ORDER BY seq DESC LIMIT 1",
            "SELECT raw_id FROM sample",
        ] {
            assert!(!may_read_held_back(free), "{free}");
        }
    }

    #[test]
    fn statements_keep_within_the_byte_limit() {
        let raw = typed(Shape::parse("INSERT INTO raw (content, id) VALUES (?1, ?2)").unwrap());
        let receipt = typed(Shape::parse("INSERT INTO receipt (raw_id) VALUES (?1)").unwrap());
        let big = MAX_BYTES / 2 + 1;
        let mut pending: Vec<Row> = (0..3)
            .map(|n| Row { shape: raw.clone(), values: vec![Value::Blob(vec![0; big]), Value::Integer(n)] })
            .collect();
        pending.push(Row { shape: receipt.clone(), values: vec![Value::Integer(0)] });
        let out = statements(pending);
        let rows: Vec<Vec<usize>> = out.iter().map(|c| c.arrays.iter().map(Vec::len).collect()).collect();
        // Each big row alone; the small one joins the last.
        assert_eq!(rows, [vec![1, 1], vec![1, 1], vec![1, 1, 1]]);
        assert!(!out[0].sql.starts_with("WITH") && out[2].sql.starts_with("WITH i0 AS (INSERT INTO raw"));
    }
}
