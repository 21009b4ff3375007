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

use crate::store::sql::Value;

/// The tables held back: the machine inserts, in an order where every
/// reference points to a table before it (or to its own, checked at the end
/// of the statement).
pub(crate) const DEFERRED: &[&str] = crate::store::write::MACHINE_ENTITIES;

/// PostgreSQL's limit on parameters per statement.
const MAX_PARAMS: usize = 65_535;

/// An `INSERT INTO t (c, …) VALUES (…)` of one row, taken apart.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Shape {
    pub(crate) table: String,
    pub(crate) columns: Vec<String>,
    /// Each column's value: a parameter number (from 1) or a literal.
    pub(crate) values: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Item {
    Param(usize),
    Literal(String),
}

impl Shape {
    /// `sql` taken apart, when it is a plain one-row insert into a table of
    /// [`DEFERRED`] whose values are parameters and quoted or numeric literals.
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
        (columns.len() == values.len() && columns.iter().all(plain)).then(|| Shape {
            table: table.to_owned(),
            columns,
            values,
        })
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

    /// The insert of `rows` rows, parameters numbered from `?first` on.
    pub(crate) fn sql(&self, rows: usize, first: usize) -> String {
        let per_row = self.params();
        let mut sql = format!("INSERT INTO {} ({}) VALUES ", self.table, self.columns.join(", "));
        for r in 0..rows {
            if r > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for (i, v) in self.values.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                match v {
                    Item::Param(n) => sql.push_str(&format!("?{}", first - 1 + n + r * per_row)),
                    Item::Literal(text) => sql.push_str(text),
                }
            }
            sql.push(')');
        }
        sql
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
    pub(crate) shape: std::sync::Arc<Shape>,
    pub(crate) values: Vec<Value>,
}

/// The rows of `pending` as statements to send: as few as the parameter
/// limit allows, each a chain of inserts (`WITH a AS (INSERT …) INSERT …`)
/// in [`DEFERRED`] order, rows in call order within a table. References
/// between the rows of one statement are checked at its end.
pub(crate) fn statements(pending: Vec<Row>) -> Vec<(String, Vec<Value>)> {
    let mut by_table: Vec<Vec<Row>> = DEFERRED.iter().map(|_| Vec::new()).collect();
    for row in pending {
        let at = DEFERRED.iter().position(|t| *t == row.shape.table).unwrap_or(0);
        if let Some(rows) = by_table.get_mut(at) {
            rows.push(row);
        }
    }
    let mut out = Vec::new();
    let mut parts: Vec<String> = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    for rows in by_table {
        let mut rows = rows.into_iter().peekable();
        while let Some(first) = rows.next() {
            // A run of rows of the same insert, as many as fit in a statement.
            let shape = first.shape.clone();
            let per_row = shape.params().max(1);
            if values.len() + per_row > MAX_PARAMS {
                out.push((chain(&mut parts), std::mem::take(&mut values)));
            }
            let start = values.len();
            values.extend(first.values);
            let mut n = 1;
            while values.len() + per_row <= MAX_PARAMS
                && let Some(next) = rows.next_if(|r| r.shape == shape)
            {
                values.extend(next.values);
                n += 1;
            }
            parts.push(shape.sql(n, start + 1));
        }
    }
    if !parts.is_empty() {
        out.push((chain(&mut parts), values));
    }
    out
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

    #[test]
    fn a_key_column_is_one_more_parameter_and_rows_are_numbered_on() {
        let shape = Shape::parse("INSERT INTO message (raw_id, format) VALUES (?1, 'astm')").unwrap().with_column("id");
        assert_eq!(shape.param_of("id"), Some(2));
        assert_eq!(shape.param_of("format"), None);
        assert_eq!(
            shape.sql(2, 3),
            "INSERT INTO message (raw_id, format, id) VALUES (?3, 'astm', ?4), (?5, 'astm', ?6)"
        );
    }

    #[test]
    fn rows_go_out_in_one_chain_in_reference_order() {
        let result = std::sync::Arc::new(Shape::parse("INSERT INTO result (observation_id) VALUES (?1)").unwrap());
        let observation =
            std::sync::Arc::new(Shape::parse("INSERT INTO observation (message_id) VALUES (?1)").unwrap());
        let mut pending = Vec::new();
        for n in 0..3 {
            pending.push(Row { shape: observation.clone(), values: vec![Value::Integer(n)] });
            pending.push(Row { shape: result.clone(), values: vec![Value::Integer(100 + n)] });
        }
        let out = statements(pending);
        assert_eq!(out.len(), 1);
        let (sql, values) = &out[0];
        assert_eq!(
            sql,
            "WITH i0 AS (INSERT INTO observation (message_id) VALUES (?1), (?2), (?3)) \
             INSERT INTO result (observation_id) VALUES (?4), (?5), (?6)"
        );
        let numbers: Vec<i64> = values.iter().map(|v| if let Value::Integer(n) = v { *n } else { -1 }).collect();
        assert_eq!(numbers, [0, 1, 2, 100, 101, 102]);
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
    fn statements_keep_within_the_parameter_limit() {
        let columns: Vec<String> = (1..=300).map(|i| format!("c{i}")).collect();
        let values: Vec<String> = (1..=300).map(|i| format!("?{i}")).collect();
        let sql = format!("INSERT INTO raw ({}) VALUES ({})", columns.join(", "), values.join(", "));
        let shape = std::sync::Arc::new(Shape::parse(&sql).unwrap());
        let pending: Vec<Row> =
            (0..500).map(|_| Row { shape: shape.clone(), values: vec![Value::Null; 300] }).collect();
        let out = statements(pending);
        let rows: Vec<usize> = out.iter().map(|(_, v)| v.len() / 300).collect();
        assert_eq!(rows, [218, 218, 64]);
        assert!(out.iter().all(|(sql, v)| !sql.starts_with("WITH") && v.len() <= MAX_PARAMS));
    }
}
