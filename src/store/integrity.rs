//! `verify-audit` (SPEC §9): is the record what labfeed wrote?
//!
//! In order, the first failure being the answer: the schema and triggers
//! are the ones labfeed created; the chain is unbroken (keyed rows checked
//! with the key); it reaches the head recorded outside the database; and
//! every row of every vouched table matches a `commit` row of the chain,
//! with no row unaccounted for and no vouched row missing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use rusqlite::Connection;

use crate::store::sql::{Db, params};

use crate::store::StoreError;
use crate::store::audit::{AuditKey, ChainReport, verify_chain};
use crate::store::head::{self, Head};
use crate::store::vouch::{VOUCHED, Vouched, VouchedRange, digests, range_digest, ranges_of};

/// What `verify-audit` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Integrity {
    pub chain: ChainReport,
    /// The head recorded outside the database, if there is one.
    pub head: Option<Head>,
    /// Rows of the vouched tables checked against the chain.
    pub rows_checked: u64,
    /// The first problem, in plain words naming the table and row; `None`: verified.
    pub problem: Option<String>,
}

/// Check everything (see the module doc); `key` checks keyed rows and the
/// head file's seal. `recorded` is the head file as read *before* the
/// database snapshot began: a head is written after its commit, so one read
/// first is never ahead of the snapshot while labfeed keeps writing.
pub fn verify(
    db: Db<'_>,
    key: Option<&AuditKey>,
    head_file: &Path,
    recorded: Result<Option<Head>, head::HeadError>,
) -> Result<Integrity, StoreError> {
    let chain = verify_chain(db, key)?;
    let mut found = Integrity { chain: chain.clone(), head: None, rows_checked: 0, problem: None };
    if let Some(problem) = schema_problem(db)? {
        found.problem = Some(problem);
        return Ok(found);
    }
    if let Some(broken) = &chain.broken {
        found.problem = Some(broken.to_string());
        return Ok(found);
    }
    // A keyed writer keys the chain as soon as it opens the database, so
    // with a key, a chain without a keyed row was rewritten without it (or
    // labfeed has not opened it since the key was configured).
    if key.is_some() && chain.head.is_some() && chain.keyed_from.is_none() {
        found.problem = Some(
            "the audit chain has no keyed row although a key is configured: it was rewritten without the key, \
             or labfeed has not written to it since the key was configured (start the service once, then verify again)"
                .to_owned(),
        );
        return Ok(found);
    }
    match recorded {
        Err(e) => {
            found.problem = Some(format!("the head file {} {e}", head_file.display()));
            return Ok(found);
        }
        Ok(None) if key.is_some() && chain.head.is_some() => {
            found.problem = Some(format!(
                "the head file {} is missing: without it, deleted newest rows cannot be ruled out",
                head_file.display()
            ));
            return Ok(found);
        }
        Ok(None) => {}
        Ok(Some(recorded)) => {
            if let Some(problem) = head_problem(db, &recorded, &chain)? {
                found.problem = Some(problem);
                return Ok(found);
            }
            found.head = Some(recorded);
        }
    }
    let (rows_checked, problem) = rows_problem(db)?;
    found.rows_checked = rows_checked;
    found.problem = problem;
    Ok(found)
}

/// The chain must still hold the recorded head, row for row.
fn head_problem(db: Db<'_>, recorded: &Head, chain: &ChainReport) -> Result<Option<String>, StoreError> {
    let last = chain.head.as_ref().map_or(0, |(seq, _)| *seq);
    if recorded.seq > last {
        return Ok(Some(format!(
            "the audit chain ends at seq {last}, before the head recorded outside the database at seq {} \
             ({}): its newest rows were deleted",
            recorded.seq, recorded.at
        )));
    }
    let hash: Option<String> =
        db.query_opt("SELECT hash FROM audit_log WHERE seq = ?1", params![recorded.seq], |r| r.get(0))?;
    if hash.as_deref() != Some(recorded.hash.as_str()) {
        return Ok(Some(format!(
            "audit_log seq {}: its hash is not the one recorded outside the database at {} (the chain was rewritten)",
            recorded.seq, recorded.at
        )));
    }
    Ok(None)
}

/// The schema labfeed creates: every table, index, view and trigger.
fn expected_schema() -> Result<BTreeMap<String, (String, String)>, StoreError> {
    let mut conn = Connection::open_in_memory()?;
    crate::store::schema::migrate(&mut conn, Path::new(":memory:"))?;
    schema_of(Db::sqlite(&conn))
}

fn schema_of(db: Db<'_>) -> Result<BTreeMap<String, (String, String)>, StoreError> {
    db.query_all(
        "SELECT type, name, coalesce(sql, '') FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' ORDER BY name",
        params![],
        |r| Ok((r.get::<String>(1)?, (r.get::<String>(0)?, r.get::<String>(2)?))),
    )
}

fn schema_problem(db: Db<'_>) -> Result<Option<String>, StoreError> {
    if db.session().is_some() {
        return crate::store::postgres::schema_problem(db);
    }
    let expected = expected_schema()?;
    let actual = schema_of(db)?;
    // SQL text is compared without layout: ALTER TABLE rewrites it.
    let squeeze = |sql: &str| sql.split_whitespace().collect::<Vec<_>>().join(" ");
    for (name, (kind, sql)) in &expected {
        match actual.get(name) {
            None => return Ok(Some(format!("{kind} {name} is missing: the schema is not the one labfeed created"))),
            Some((k, s)) if k != kind || squeeze(s) != squeeze(sql) => {
                return Ok(Some(format!("{kind} {name} differs from the one labfeed created")));
            }
            Some(_) => {}
        }
    }
    if let Some((name, (kind, _))) = actual.iter().find(|(name, _)| !expected.contains_key(*name)) {
        return Ok(Some(format!("{kind} {name} was not created by labfeed")));
    }
    Ok(None)
}

/// Every `commit` row's ranges, by table, oldest first.
fn vouched_ranges(db: Db<'_>) -> Result<Result<BTreeMap<String, Vec<VouchedRange>>, String>, StoreError> {
    let mut by_table: BTreeMap<String, Vec<VouchedRange>> = BTreeMap::new();
    let mut foreign = None;
    db.query_each(
        "SELECT seq, detail FROM audit_log WHERE action = 'commit' ORDER BY seq",
        params![],
        |row| -> Result<bool, StoreError> {
            let (seq, detail): (i64, String) = (row.get(0)?, row.get(1)?);
            match ranges_of(seq, &detail) {
                Ok(ranges) => {
                    for (table, range) in ranges {
                        by_table.entry(table).or_default().push(range);
                    }
                    Ok(true)
                }
                Err(why) => {
                    foreign = Some(format!("audit_log seq {seq}: a commit row labfeed did not write: {why}"));
                    Ok(false)
                }
            }
        },
    )?;
    Ok(foreign.map_or(Ok(by_table), Err))
}

fn rows_problem(db: Db<'_>) -> Result<(u64, Option<String>), StoreError> {
    let by_table = match vouched_ranges(db)? {
        Ok(by_table) => by_table,
        Err(problem) => return Ok((0, Some(problem))),
    };
    let mut checked = 0;
    for v in VOUCHED {
        let ranges = by_table.get(v.table).map(Vec::as_slice).unwrap_or_default();
        let (n, problem) =
            if v.mutable { mutable_problem(db, v, ranges)? } else { append_only_problem(db, v, ranges)? };
        checked += n;
        if problem.is_some() {
            return Ok((checked, problem));
        }
    }
    Ok((checked, None))
}

fn rowids(db: Db<'_>, v: &Vouched) -> Result<Vec<i64>, StoreError> {
    db.query_all(&format!("SELECT {key} FROM {} ORDER BY {key}", v.table, key = v.key), params![], |r| r.get(0))
}

/// Append-only tables: disjoint ranges that cover every row exactly.
fn append_only_problem(db: Db<'_>, v: &Vouched, ranges: &[VouchedRange]) -> Result<(u64, Option<String>), StoreError> {
    let mut sorted: Vec<&VouchedRange> = ranges.iter().collect();
    sorted.sort_by_key(|r| r.first);
    let present = rowids(db, v)?;
    let mut previous_last = 0;
    for range in &sorted {
        if range.first <= previous_last {
            return Ok((
                0,
                Some(format!(
                    "audit_log seq {}: vouches again for {} rows {}–{}, which an earlier commit vouched for",
                    range.seq, v.table, range.first, range.last
                )),
            ));
        }
        previous_last = range.last;
        let rows = digests(db, v, range.layout, range.first, range.last)?;
        if range_digest(&rows) != range.digest {
            let have: BTreeSet<i64> = rows.iter().map(|(id, _)| *id).collect();
            let problem = match (range.first..=range.last).find(|id| !have.contains(id)) {
                Some(id) => format!(
                    "{} row {id} is missing: audit_log seq {} vouches for rows {}–{} (it was deleted)",
                    v.table, range.seq, range.first, range.last
                ),
                None => format!(
                    "{} rows {}–{} do not match what audit_log seq {} vouches for (changed behind labfeed's back)",
                    v.table, range.first, range.last, range.seq
                ),
            };
            return Ok((0, Some(problem)));
        }
    }
    // The ranges are sorted and disjoint: walk them beside the rowids.
    let mut next = sorted.iter().peekable();
    let uncovered = present.iter().find(|&&id| {
        while next.peek().is_some_and(|r| r.last < id) {
            next.next();
        }
        next.peek().is_none_or(|r| r.first > id)
    });
    if let Some(id) = uncovered {
        return Ok((
            0,
            Some(format!("{} row {id} has no audit entry (it was written behind labfeed's back)", v.table)),
        ));
    }
    Ok((present.len() as u64, None))
}

/// Tables whose rows change: the latest commit naming a row vouches for it.
fn mutable_problem(db: Db<'_>, v: &Vouched, ranges: &[VouchedRange]) -> Result<(u64, Option<String>), StoreError> {
    let mut latest: BTreeMap<i64, &VouchedRange> = BTreeMap::new();
    for range in ranges {
        // labfeed vouches for these rows one by one; a wide range (a forged
        // row) is named, never walked.
        if range.first != range.last {
            return Ok((
                0,
                Some(format!(
                    "audit_log seq {}: vouches for {} rows {}–{} at once, which labfeed never writes",
                    range.seq, v.table, range.first, range.last
                )),
            ));
        }
        latest.insert(range.first, range);
    }
    let present = rowids(db, v)?;
    for id in &present {
        let Some(range) = latest.get(id) else {
            return Ok((
                0,
                Some(format!("{} row {id} has no audit entry (it was written behind labfeed's back)", v.table)),
            ));
        };
        let rows = digests(db, v, range.layout, range.first, range.last)?;
        if range_digest(&rows) != range.digest {
            return Ok((
                0,
                Some(format!(
                    "{} row {id} does not match what audit_log seq {} vouches for (changed behind labfeed's back)",
                    v.table, range.seq
                )),
            ));
        }
    }
    let have: BTreeSet<i64> = present.iter().copied().collect();
    if let Some((id, range)) = latest.iter().find(|(id, _)| !have.contains(id)) {
        return Ok((
            0,
            Some(format!(
                "{} row {id} is missing: audit_log seq {} vouches for it (it was deleted)",
                v.table, range.seq
            )),
        ));
    }
    Ok((present.len() as u64, None))
}
