//! Queries. Lists for reports are ordered by participant code, visit, minute
//! and analyte: a neutral order that cannot reveal allocation.

use crate::store::memo::{Known, Memo};
use crate::store::sql::Db;

use crate::store::sql::{Row, params};

use crate::model::Format;
use crate::store::StoreError;
use crate::store::audit::{AUDIT_COLUMNS, AuditEntry};
use crate::store::types::*;
use crate::value::Comparator;

/// UTC RFC 3339 at whole seconds (`2026-03-02T07:45:00Z`): fixed width, so
/// text order is time order.
pub(crate) fn utc_text(t: jiff::Timestamp) -> String {
    jiff::Timestamp::from_second(t.as_second()).unwrap_or(t).to_string()
}

/// A message's bytes in its stored content: start and end offsets.
pub type MessageSpan = (i64, i64);

/// Whose rows a review reads: the whole study's, one participant's, or
/// those matched to no participant (a page about one mismatch reads only
/// its participant's, so it takes the same time in a study of any size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Study,
    Participant(String),
    /// The participants whose codes sort from `first` to `last`, both included (a page).
    Participants {
        first: String,
        last: String,
    },
    Unmatched,
}

impl Scope {
    /// ` AND COLUMN = ?N` (see [`Scope::bind`]), a range, ` AND COLUMN IS NULL`, or nothing.
    pub(super) fn and(&self, column: &str, n: usize) -> String {
        match self {
            Scope::Study => String::new(),
            Scope::Participant(_) => format!(" AND {column} = ?{n}"),
            Scope::Participants { .. } => format!(" AND {column} >= ?{n} AND {column} <= ?{}", n + 1),
            Scope::Unmatched => format!(" AND {column} IS NULL"),
        }
    }

    /// `params` and the codes [`Scope::and`] names.
    pub(super) fn bind<'p>(
        &'p self,
        params: &[&'p dyn crate::store::sql::Param],
    ) -> Vec<&'p dyn crate::store::sql::Param> {
        let mut all = params.to_vec();
        match self {
            Scope::Participant(code) => all.push(code),
            Scope::Participants { first, last } => all.extend([first as &dyn crate::store::sql::Param, last]),
            Scope::Study | Scope::Unmatched => {}
        }
        all
    }
}

fn conversion_error(idx: usize, problem: String) -> StoreError {
    StoreError::Invalid { what: "column", problem: format!("{idx}: {problem}") }
}

fn get_comparator(row: &Row, idx: usize) -> Result<Option<Comparator>, StoreError> {
    match row.get::<Option<String>>(idx)? {
        None => Ok(None),
        Some(text) => Comparator::from_symbol(&text)
            .map(Some)
            .ok_or_else(|| conversion_error(idx, format!("comparator {text:?}"))),
    }
}

fn get_format(row: &Row, idx: usize) -> Result<Option<Format>, StoreError> {
    match row.get::<Option<String>>(idx)?.as_deref() {
        None => Ok(None),
        Some("astm") => Ok(Some(Format::Astm)),
        Some("hl7") => Ok(Some(Format::Hl7)),
        Some(other) => Err(conversion_error(idx, format!("format {other:?}"))),
    }
}

pub(super) const RESULT_COLUMNS: &str = "r.id, r.observation_id, r.participant, r.visit, r.minute, r.analyte, r.value, r.unit, \
     r.comparator, r.blq, r.version, r.supersedes, r.accepted_at, r.accepted_by, r.reason, r.withdrawn";
const RESULT_WIDTH: usize = 16;

/// [`RESULT_COLUMNS`] for reading the `result` table itself. On SQLite
/// (schema 10) the acceptance time is read as stored, seconds since 1970:
/// the generated text column costs a date formatting per row, more than the
/// rest of a report's read, and the value read is the same.
pub(super) fn result_table_columns(db: Db<'_>) -> &'static str {
    if db.is_sqlite() { RESULT_COLUMNS_SQLITE_TABLE } else { RESULT_COLUMNS }
}

const RESULT_COLUMNS_SQLITE_TABLE: &str = "r.id, r.observation_id, r.participant, r.visit, r.minute, r.analyte, r.value, r.unit, \
     r.comparator, r.blq, r.version, r.supersedes, r.accepted_unix, r.accepted_by, r.reason, r.withdrawn";
/// Where a result is in its stored copy: the copy, the message's number in
/// it and the result's order in the message.
pub type InCopy = (RawId, i64, i64);

/// Every version of a slot together, the latest last (see [`Reader::each_current`]).
pub(super) const VERSIONS_ORDER: &str = "r.participant, r.visit, r.minute, r.analyte, r.version";

pub(super) fn result_row(row: &Row, at: usize) -> Result<ResultRow, StoreError> {
    Ok(ResultRow {
        id: row.get(at)?,
        observation_id: row.get(at + 1)?,
        slot: Slot {
            participant: row.get(at + 2)?,
            visit: row.get(at + 3)?,
            minute: row.get(at + 4)?,
            analyte: row.get(at + 5)?,
        },
        value: row.get(at + 6)?,
        unit: row.get(at + 7)?,
        comparator: get_comparator(row, at + 8)?,
        blq: row.get(at + 9)?,
        version: row.get(at + 10)?,
        supersedes: row.get(at + 11)?,
        accepted_at: row.get(at + 12)?,
        accepted_by: row.get(at + 13)?,
        reason: row.get(at + 14)?,
        withdrawn: row.get(at + 15)?,
    })
}

pub(super) const MISMATCH_COLUMNS: &str = "m.id, m.code, m.holds, m.observation_id, m.message_id, m.receipt_id, m.participant, \
     m.visit, m.minute, m.analyte, m.detail, m.created_at, \
     s.id, s.action, s.participant, s.visit, s.minute, s.result_id, s.reason, s.resolved_by, s.resolved_at";
const MISMATCH_WIDTH: usize = 21;
/// A mismatch with the decision in force: its latest resolution, unless that
/// is a reopen (then none: open again). MISSING_RESULT id rows are left out
/// (see [`Reader::missing_slot`]).
pub(super) const MISMATCH_FROM: &str = "mismatch m LEFT JOIN resolution s \
     ON s.id = (SELECT max(x.id) FROM resolution x WHERE x.mismatch_id = m.id) AND s.action <> 'reopen'";
/// Leaves out the MISSING_RESULT id rows.
pub(super) const NOT_MISSING: &str = "m.code <> 'MISSING_RESULT'";

pub(super) fn mismatch_row(row: &Row, at: usize) -> Result<MismatchRow, StoreError> {
    let resolution = match row.get::<Option<ResolutionId>>(at + 12)? {
        None => None,
        Some(_) => Some(resolution_row(row, at + 12)?),
    };
    Ok(MismatchRow {
        id: row.get(at)?,
        code: row.get(at + 1)?,
        holds: row.get(at + 2)?,
        observation_id: row.get(at + 3)?,
        message_id: row.get(at + 4)?,
        receipt_id: row.get(at + 5)?,
        participant: row.get(at + 6)?,
        visit: row.get(at + 7)?,
        minute: row.get(at + 8)?,
        analyte: row.get(at + 9)?,
        detail: row.get(at + 10)?,
        created_at: row.get(at + 11)?,
        resolution,
    })
}

/// Observation fields with `receipt`'s three columns (source, time,
/// origin) in their place, as [`provenance`] reads them.
fn provenance_columns(receipt: &str) -> String {
    format!(
        "o.sample_id, o.instrument, o.test_code, o.reported_value, o.reported_unit, \
         o.status, o.collected_at, o.resulted_at, {receipt}, \
         coalesce((SELECT x.collected_offset FROM observation_offset x WHERE x.observation_id = o.id \
                   ORDER BY x.id DESC LIMIT 1), o.collected_offset), o.flags"
    )
}
/// The receipt columns of [`provenance_columns`]: the joined `rc`'s. On
/// SQLite the arrival as stored, seconds since 1970 (see [`result_table_columns`]).
fn receipt_columns(db: Db<'_>) -> &'static str {
    if db.is_sqlite() { "rc.source, rc.received_unix, rc.origin" } else { "rc.source, rc.received_at, rc.origin" }
}
/// The receipt columns of [`provenance_columns`] when none is read.
const NO_RECEIPT: &str = "NULL, NULL, NULL";
const PROVENANCE_WIDTH: usize = 13;

/// A slot from a row's first four columns (participant, visit, minute, analyte).
fn slot_row(r: &Row) -> Result<Slot, StoreError> {
    Ok(Slot { participant: r.get(0)?, visit: r.get(1)?, minute: r.get(2)?, analyte: r.get(3)? })
}

fn provenance(row: &Row, at: usize) -> Result<Provenance, StoreError> {
    Ok(Provenance {
        sample_id: row.get(at)?,
        instrument: row.get(at + 1)?,
        test_code: row.get(at + 2)?,
        reported_value: row.get(at + 3)?,
        reported_unit: row.get(at + 4)?,
        status: row.get(at + 5)?,
        collected_at: row.get(at + 6)?,
        resulted_at: row.get(at + 7)?,
        source: row.get(at + 8)?,
        received_at: row.get(at + 9)?,
        origin: row.get(at + 10)?,
        collected_offset: row.get(at + 11)?,
        flags: row.get(at + 12)?,
    })
}

const RESOLUTION_COLUMNS: &str =
    "s.id, s.action, s.participant, s.visit, s.minute, s.result_id, s.reason, s.resolved_by, s.resolved_at";

fn resolution_row(row: &Row, at: usize) -> Result<ResolutionRow, StoreError> {
    Ok(ResolutionRow {
        id: row.get(at)?,
        action: row.get(at + 1)?,
        participant: row.get(at + 2)?,
        visit: row.get(at + 3)?,
        minute: row.get(at + 4)?,
        result_id: row.get(at + 5)?,
        reason: row.get(at + 6)?,
        resolved_by: row.get(at + 7)?,
        resolved_at: row.get(at + 8)?,
    })
}

fn visit_row(r: &Row) -> Result<Visit, StoreError> {
    let meal_start = match r.get::<Option<String>>(2)? {
        None => None,
        Some(text) => Some(text.parse().map_err(|e| conversion_error(2, format!("bad meal_start {text:?}: {e}")))?),
    };
    Ok(Visit { participant: r.get(0)?, visit: r.get(1)?, meal_start })
}

/// A receipt and its processing row (outer-joined): source, origin,
/// instrument, received_at, outcome, the five counts, detail, instance.
fn arrival_row(row: &Row, at: usize) -> Result<LastArrival, StoreError> {
    let count = |i: usize| -> Result<u64, StoreError> {
        Ok(row.get::<Option<i64>>(at + i)?.unwrap_or(0).max(0).unsigned_abs())
    };
    Ok(LastArrival {
        source: row.get(at)?,
        origin: row.get(at + 1)?,
        instrument: row.get(at + 2)?,
        received_at: row.get(at + 3)?,
        outcome: row.get(at + 4)?,
        accepted: count(5)?,
        duplicates: count(6)?,
        mismatches: count(7)?,
        qc: count(8)?,
        errors: count(9)?,
        detail: row.get(at + 10)?,
        instance: row.get(at + 11)?,
    })
}

/// Values per `IN (…)` list: one statement text for every batch (prepared
/// once on PostgreSQL), well within both engines' parameter limits.
const IN_LIST: usize = 128;

/// `?from, ?from+1, …` for [`IN_LIST`] values.
fn in_list(from: usize) -> String {
    (from..from + IN_LIST).map(|n| format!("?{n}")).collect::<Vec<_>>().join(", ")
}

/// A SHA-256 as labfeed writes it (64 lowercase hex digits) as the 32 bytes
/// SQLite stores; anything else is no hash labfeed made, and is looked up as
/// bytes no digest has (empty), so it is found on neither engine.
fn hex_bytes(text: &str) -> Vec<u8> {
    let value = |d: &u8| match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'a'..=b'f' => Some(d - b'a' + 10),
        _ => None,
    };
    let digits = text.as_bytes();
    let bytes: Option<Vec<u8>> =
        digits.chunks(2).map(|pair| Some(value(pair.first()?)? * 16 + value(pair.get(1)?)?)).collect();
    bytes.filter(|b| b.len() == 32).unwrap_or_default()
}

/// `values` as [`IN_LIST`] parameters, the last repeated to fill the list.
fn padded<P: crate::store::sql::Param>(values: &[P]) -> Vec<&dyn crate::store::sql::Param> {
    let mut out: Vec<&dyn crate::store::sql::Param> =
        values.iter().map(|v| v as &dyn crate::store::sql::Param).collect();
    if let Some(last) = values.last() {
        while out.len() < IN_LIST {
            out.push(last);
        }
    }
    out
}

/// Read access to the database, inside a transaction: a [`Tx`](crate::store::Tx)
/// (sees its own writes) or [`Store::read`](crate::store::Store::read) (a snapshot).
#[derive(Clone, Copy)]
pub struct Reader<'c> {
    db: Db<'c>,
}

impl<'c> Reader<'c> {
    pub(crate) fn new(db: Db<'c>) -> Reader<'c> {
        Reader { db }
    }

    /// The latest receipt per source: one line for dropped files, one for
    /// `ingest`, one per serial device (its origin), one per TCP instrument (the
    /// peer address changes with every connection). Oldest source kind first.
    pub fn last_arrival_per_source(&self) -> Result<Vec<LastArrival>, StoreError> {
        self.db().query_all(
            "SELECT rc.source, rc.origin, rc.instrument, rc.received_at,
                    p.outcome, p.accepted, p.duplicates, p.mismatches, p.qc, p.errors, p.detail, rc.instance
             FROM receipt rc LEFT JOIN processing p ON p.receipt_id = rc.id
             WHERE rc.id IN (
                 SELECT max(id) FROM receipt
                 GROUP BY coalesce(instance, ''), source,
                          CASE source WHEN 'serial' THEN origin
                                      WHEN 'tcp' THEN coalesce(instrument, '')
                                      ELSE '' END)
             ORDER BY CASE rc.source WHEN 'file' THEN 0 WHEN 'serial' THEN 1 WHEN 'tcp' THEN 2 ELSE 3 END,
                      coalesce(rc.instance, ''), rc.id",
            params![],
            |row| arrival_row(row, 0),
        )
    }

    /// Every receipt at or after `since`, newest first, at most `limit`,
    /// each with what became of it (the Today page: "did it arrive, and
    /// what happened to it?").
    pub fn arrivals_since(&self, since: jiff::Timestamp, limit: u32) -> Result<Vec<Arrival>, StoreError> {
        self.db().query_all(
            "SELECT rc.source, rc.origin, rc.instrument, rc.received_at,
                    p.outcome, p.accepted, p.duplicates, p.mismatches, p.qc, p.errors, p.detail, rc.instance, rc.id
             FROM receipt rc LEFT JOIN processing p ON p.receipt_id = rc.id
             WHERE rc.received_at >= ?1
             ORDER BY rc.received_at DESC, rc.id DESC
             LIMIT ?2",
            params![utc_text(since), i64::from(limit)],
            |row| Ok(Arrival { receipt_id: row.get(12)?, arrival: arrival_row(row, 0)? }),
        )
    }

    /// Open (unresolved) mismatches per code.
    pub fn open_mismatches_by_code(&self) -> Result<std::collections::BTreeMap<String, u64>, StoreError> {
        self.db().query_all("SELECT code, count(*) FROM open_mismatch GROUP BY code", params![], |row| {
            Ok((row.get::<String>(0)?, row.get::<i64>(1)?.max(0).unsigned_abs()))
        })
    }

    /// The connection, engine-neutral (see [`crate::store::sql`]).
    pub(crate) fn db(&self) -> Db<'c> {
        self.db
    }

    fn memo(&self) -> Option<&'c std::cell::RefCell<Memo>> {
        self.db.memo()
    }

    /// Look up these contents (SHA-256 of their bytes) and their receipts
    /// at once, for the inserts of a batch that follow (a write transaction's
    /// memo; elsewhere nothing).
    pub fn expect_contents(&self, sha256: &[&str]) -> Result<(), StoreError> {
        let Some(memo) = self.memo() else { return Ok(()) };
        for chunk in sha256.chunks(IN_LIST) {
            // SQLite (schema 10) indexes the first 8 bytes of the hash; PostgreSQL the hex.
            let sqlite = self.db().is_sqlite();
            let (column, prefix) = if sqlite { ("digest", 8) } else { ("sha256", 16) };
            let digests: Vec<Vec<u8>> =
                if sqlite { chunk.iter().map(|sha| hex_bytes(sha)).collect() } else { Vec::new() };
            let sql = format!(
                "SELECT raw.sha256, raw.id, (SELECT count(*) FROM receipt WHERE receipt.raw_id = raw.id)
                 FROM raw WHERE substr(raw.{column}, 1, {prefix}) IN ({}) AND raw.{column} IN ({})",
                (1..=IN_LIST).map(|n| format!("substr(?{n}, 1, {prefix})")).collect::<Vec<_>>().join(", "),
                in_list(1)
            );
            let keys = if sqlite { padded(&digests) } else { padded(chunk) };
            let found: Vec<(String, RawId, i64)> =
                self.db().query_all(&sql, &keys, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            let mut memo = memo.borrow_mut();
            for sha in chunk {
                memo.set_content(sha, None);
            }
            for (sha, id, receipts) in found {
                memo.set_content(&sha, Some(id));
                memo.set_receipts(id, receipts);
            }
        }
        Ok(())
    }

    /// Look up these manifest samples at once (see [`Reader::expect_contents`]).
    pub fn expect_samples(&self, sample_ids: &[&str]) -> Result<(), StoreError> {
        let Some(memo) = self.memo() else { return Ok(()) };
        for chunk in sample_ids.chunks(IN_LIST) {
            let found: Vec<Sample> = self.db().query_all(
                &format!(
                    "SELECT sample_id, participant, visit, minute FROM sample WHERE sample_id IN ({})",
                    in_list(1)
                ),
                &padded(chunk),
                |r| Ok(Sample { sample_id: r.get(0)?, participant: r.get(1)?, visit: r.get(2)?, minute: r.get(3)? }),
            )?;
            let mut memo = memo.borrow_mut();
            for id in chunk {
                memo.set_sample(id, None);
            }
            for sample in found {
                let id = sample.sample_id.clone();
                memo.set_sample(&id, Some(sample));
            }
        }
        Ok(())
    }

    /// Read the slots of these visits (participant, visit) into the memo at
    /// once: before a batch writes anything, so that on PostgreSQL no read
    /// in the middle waits for its held-back rows (see [`Reader::expect_contents`]).
    pub fn expect_visit_slots(&self, visits: &[(String, String)]) -> Result<(), StoreError> {
        let Some(memo) = self.memo() else { return Ok(()) };
        // Visits read already (in this transaction) are not asked for again, nor twice.
        let wanted: Vec<&(String, String)> = {
            let known = memo.borrow();
            let mut seen = std::collections::HashSet::new();
            visits.iter().filter(|(p, v)| !known.visit_slots_read(p, v) && seen.insert((p, v))).collect()
        };
        let pairs = IN_LIST / 2;
        let list = (0..pairs)
            .map(|i| format!("(CAST(?{} AS TEXT), CAST(?{} AS TEXT))", 2 * i + 1, 2 * i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        for chunk in wanted.chunks(pairs) {
            let mut values: Vec<&dyn crate::store::sql::Param> = Vec::with_capacity(IN_LIST);
            for i in 0..pairs {
                if let Some((p, v)) = chunk.get(i).or(chunk.last()).copied() {
                    values.push(p);
                    values.push(v);
                }
            }
            let columns = result_table_columns(self.db());
            let history: Vec<ResultRow> = self.db().query_all(
                &format!(
                    "SELECT {columns} FROM result r WHERE (r.participant, r.visit) IN (VALUES {list})
                     ORDER BY r.participant, r.visit, r.minute, r.analyte, r.version"
                ),
                &values,
                |r| result_row(r, 0),
            )?;
            let open: Vec<MismatchRow> = self.db().query_all(
                &format!(
                    "SELECT {MISMATCH_COLUMNS} FROM {MISMATCH_FROM}
                     WHERE s.id IS NULL AND {NOT_MISSING} AND (m.participant, m.visit) IN (VALUES {list})
                       AND m.minute IS NOT NULL AND m.analyte IS NOT NULL
                     ORDER BY m.id"
                ),
                &values,
                |r| mismatch_row(r, 0),
            )?;
            // Each visit's rows, sorted out once.
            type Rows = (Vec<ResultRow>, Vec<(Slot, MismatchRow)>);
            let mut by_visit: std::collections::HashMap<(String, String), Rows> = std::collections::HashMap::new();
            for row in history {
                let key = (row.slot.participant.clone(), row.slot.visit.clone());
                by_visit.entry(key).or_default().0.push(row);
            }
            for m in open {
                if let Some(slot) = m.slot() {
                    by_visit.entry((slot.participant.clone(), slot.visit.clone())).or_default().1.push((slot, m));
                }
            }
            let mut memo = memo.borrow_mut();
            for &(p, v) in chunk {
                let (rows, mismatches) = by_visit.remove(&(p.clone(), v.clone())).unwrap_or_default();
                memo.set_visit_slots(p, v, rows, mismatches);
            }
        }
        Ok(())
    }

    /// Which of these contents an earlier receipt processed to the end (then
    /// a new arrival of it is a duplicate), in one query per few hundred.
    pub fn raws_processed(&self, raw_ids: &[RawId]) -> Result<std::collections::HashSet<RawId>, StoreError> {
        let mut processed = std::collections::HashSet::new();
        for chunk in raw_ids.chunks(IN_LIST) {
            let found: Vec<RawId> = self.db().query_all(
                &format!(
                    "SELECT DISTINCT r.raw_id FROM receipt r JOIN processing p ON p.receipt_id = r.id
                     WHERE r.raw_id IN ({}) AND p.outcome IN ('processed', 'rejected')",
                    in_list(1)
                ),
                &padded(chunk),
                |r| r.get(0),
            )?;
            processed.extend(found);
        }
        Ok(processed)
    }

    /// Read every version and every open mismatch of a visit's slots into
    /// the memo: two queries for all the results of an upload.
    fn read_visit_slots(&self, participant: &str, visit: &str) -> Result<(), StoreError> {
        self.expect_visit_slots(&[(participant.to_owned(), visit.to_owned())])
    }

    /// The id of the content whose original bytes hash to `sha256` (lowercase hex).
    pub fn raw_id_by_sha256(&self, sha256: &str) -> Result<Option<RawId>, StoreError> {
        // The index holds the hash's first 8 bytes on SQLite (schema 10), the
        // row the whole; PostgreSQL's the whole hex.
        if self.db().is_sqlite() {
            return self.db().query_opt(
                "SELECT id FROM raw WHERE substr(digest, 1, 8) = substr(?1, 1, 8) AND digest = ?1",
                params![hex_bytes(sha256)],
                |r| r.get(0),
            );
        }
        self.db().query_opt(
            "SELECT id FROM raw WHERE substr(sha256, 1, 16) = substr(?1, 1, 16) AND sha256 = ?1",
            params![sha256],
            |r| r.get(0),
        )
    }

    /// A stored content (its masked copy).
    pub fn raw(&self, id: RawId) -> Result<Option<RawRow>, StoreError> {
        self.db().query_opt(
            "SELECT id, sha256, size, format, content, masked, first_received_at, encoding FROM raw WHERE id = ?1",
            params![id],
            |r| {
                let size: i64 = r.get(2)?;
                let stored: Vec<u8> = r.get(4)?;
                let encoding: Option<String> = r.get(7)?;
                let content = crate::store::mask::unpack(stored, encoding.as_deref(), size)
                    .map_err(|why| conversion_error(4, format!("raw content: {why}")))?;
                Ok(RawRow {
                    id: r.get(0)?,
                    sha256: r.get(1)?,
                    size,
                    format: get_format(r, 3)?,
                    content,
                    masked: r.get(5)?,
                    first_received_at: r.get(6)?,
                })
            },
        )
    }

    /// The stored (masked) content a mismatch came from, and the byte span of
    /// its message in it when it names one (a file may hold several).
    pub fn mismatch_raw(&self, m: &MismatchRow) -> Result<Option<(RawRow, Option<MessageSpan>)>, StoreError> {
        let (raw_id, span): (RawId, Option<MessageSpan>) = match m.message_id {
            Some(message) => {
                let found = self.db().query_opt(
                    "SELECT raw_id, span_start, span_end FROM message WHERE id = ?1",
                    params![message],
                    |r| Ok((r.get::<RawId>(0)?, r.get::<i64>(1)?, r.get::<i64>(2)?)),
                )?;
                match found {
                    Some((raw, start, end)) => (raw, Some((start, end))),
                    None => return Ok(None),
                }
            }
            None => {
                match self.db().query_opt("SELECT raw_id FROM receipt WHERE id = ?1", params![m.receipt_id], |r| {
                    r.get::<RawId>(0)
                })? {
                    Some(raw) => (raw, None),
                    None => return Ok(None),
                }
            }
        };
        Ok(self.raw(raw_id)?.map(|raw| (raw, span)))
    }

    /// Receipts that have no processing row (interrupted: process them again),
    /// oldest first.
    pub fn unprocessed_receipts(&self) -> Result<Vec<ReceiptRow>, StoreError> {
        self.db().query_all(
            "SELECT r.id, r.raw_id, r.received_at, r.source, r.origin, r.instrument, r.instance FROM receipt r
             WHERE NOT EXISTS (SELECT 1 FROM processing p WHERE p.receipt_id = r.id) ORDER BY r.id",
            params![],
            |r| {
                Ok(ReceiptRow {
                    id: r.get(0)?,
                    raw_id: r.get(1)?,
                    received_at: r.get(2)?,
                    source: r.get(3)?,
                    origin: r.get(4)?,
                    instrument: r.get(5)?,
                    instance: r.get(6)?,
                })
            },
        )
    }

    pub fn participant(&self, code: &str) -> Result<Option<Participant>, StoreError> {
        self.db().query_opt("SELECT code, site FROM participant WHERE code = ?1", params![code], |r| {
            Ok(Participant { code: r.get(0)?, site: r.get(1)? })
        })
    }

    pub fn participant_exists(&self, code: &str) -> Result<bool, StoreError> {
        if let Some(known) = self.memo().and_then(|m| m.borrow().participant(code)) {
            return Ok(known);
        }
        let exists =
            self.db()
                .query_row("SELECT EXISTS (SELECT 1 FROM participant WHERE code = ?1)", params![code], |r| r.get(0))?;
        if let Some(memo) = self.memo() {
            memo.borrow_mut().set_participant(code, exists);
        }
        Ok(exists)
    }

    pub fn visit(&self, participant: &str, visit: &str) -> Result<Option<Visit>, StoreError> {
        if let Some(known) = self.memo().and_then(|m| m.borrow().visit(participant, visit)) {
            return Ok(known);
        }
        let found = self.db().query_opt(
            "SELECT participant, visit, meal_start FROM visit WHERE participant = ?1 AND visit = ?2",
            params![participant, visit],
            visit_row,
        )?;
        if let Some(memo) = self.memo() {
            memo.borrow_mut().set_visit(participant, visit, found.clone());
        }
        Ok(found)
    }

    /// Every visit of the study data, ordered by participant code and visit.
    pub fn visits(&self) -> Result<Vec<Visit>, StoreError> {
        self.visits_in(&Scope::Study)
    }

    /// [`Reader::visits`] of `scope` (none are unmatched).
    pub fn visits_in(&self, scope: &Scope) -> Result<Vec<Visit>, StoreError> {
        let sql = format!(
            "SELECT participant, visit, meal_start FROM visit WHERE 1 = 1{} ORDER BY participant, visit",
            scope.and("participant", 1)
        );
        self.db().query_all(&sql, &scope.bind(params![]), visit_row)
    }

    pub fn sample(&self, sample_id: &str) -> Result<Option<Sample>, StoreError> {
        if let Some(known) = self.memo().and_then(|m| m.borrow().sample(sample_id)) {
            return Ok(known);
        }
        let found = self.db().query_opt(
            "SELECT sample_id, participant, visit, minute FROM sample WHERE sample_id = ?1",
            params![sample_id],
            |r| Ok(Sample { sample_id: r.get(0)?, participant: r.get(1)?, visit: r.get(2)?, minute: r.get(3)? }),
        )?;
        if let Some(memo) = self.memo() {
            memo.borrow_mut().set_sample(sample_id, found.clone());
        }
        Ok(found)
    }

    /// The latest version in a slot (the `current_result` view).
    pub fn current_result(&self, slot: &Slot) -> Result<Option<ResultRow>, StoreError> {
        let sql = format!(
            "SELECT {RESULT_COLUMNS} FROM current_result r
             WHERE r.participant = ?1 AND r.visit = ?2 AND r.minute = ?3 AND r.analyte = ?4"
        );
        self.db()
            .query_opt(&sql, params![slot.participant, slot.visit, slot.minute, slot.analyte], |r| result_row(r, 0))
    }

    /// Every version in a slot, oldest first.
    pub fn result_history(&self, slot: &Slot) -> Result<Vec<ResultRow>, StoreError> {
        match self.memo().map(|m| m.borrow().history(slot)) {
            Some(Known::Yes(rows)) => return Ok(rows),
            Some(Known::No { visit_read: false }) => {
                self.read_visit_slots(&slot.participant, &slot.visit)?;
                if let Some(Known::Yes(rows)) = self.memo().map(|m| m.borrow().history(slot)) {
                    return Ok(rows);
                }
            }
            _ => {}
        }
        let columns = result_table_columns(self.db());
        let sql = format!(
            "SELECT {columns} FROM result r
             WHERE r.participant = ?1 AND r.visit = ?2 AND r.minute = ?3 AND r.analyte = ?4 ORDER BY r.version"
        );
        self.db()
            .query_all(&sql, params![slot.participant, slot.visit, slot.minute, slot.analyte], |r| result_row(r, 0))
    }

    /// Open (unresolved) mismatches in a slot, optionally of one code, oldest first.
    pub fn open_mismatches(&self, slot: &Slot, code: Option<MismatchCode>) -> Result<Vec<MismatchRow>, StoreError> {
        let of_code = |rows: Vec<MismatchRow>| rows.into_iter().filter(|m| code.is_none_or(|c| m.code == c)).collect();
        match self.memo().map(|m| m.borrow().open(slot)) {
            Some(Known::Yes(rows)) => return Ok(of_code(rows)),
            Some(Known::No { visit_read: false }) => {
                self.read_visit_slots(&slot.participant, &slot.visit)?;
                if let Some(Known::Yes(rows)) = self.memo().map(|m| m.borrow().open(slot)) {
                    return Ok(of_code(rows));
                }
            }
            _ => {}
        }
        let sql = format!(
            "SELECT {MISMATCH_COLUMNS} FROM {MISMATCH_FROM}
             WHERE s.id IS NULL AND {NOT_MISSING} AND m.participant = ?1 AND m.visit = ?2 AND m.minute = ?3 AND m.analyte = ?4
               AND (CAST(?5 AS TEXT) IS NULL OR m.code = ?5)
             ORDER BY m.id"
        );
        self.db().query_all(&sql, params![slot.participant, slot.visit, slot.minute, slot.analyte, code], |r| {
            mismatch_row(r, 0)
        })
    }

    /// One mismatch with its resolution, if any.
    pub fn mismatch(&self, id: MismatchId) -> Result<Option<MismatchRow>, StoreError> {
        let sql = format!("SELECT {MISMATCH_COLUMNS} FROM {MISMATCH_FROM} WHERE m.id = ?1 AND {NOT_MISSING}");
        self.db().query_opt(&sql, params![id], |r| mismatch_row(r, 0))
    }

    /// Mismatches for `report mismatches`: the open ones, or all with
    /// `include_resolved`; with the observation's fields and the arrival that
    /// raised them. Ordered by participant, visit, minute, analyte (rows
    /// without a participant first), then id.
    pub fn mismatch_report(&self, include_resolved: bool) -> Result<Vec<MismatchReport>, StoreError> {
        self.mismatch_report_in(include_resolved, &Scope::Study)
    }

    /// [`Reader::mismatch_report`] of `scope`.
    pub fn mismatch_report_in(&self, include_resolved: bool, scope: &Scope) -> Result<Vec<MismatchReport>, StoreError> {
        let sql = format!(
            "SELECT {MISMATCH_COLUMNS}, {} FROM {MISMATCH_FROM}
             LEFT JOIN observation o ON o.id = m.observation_id
             LEFT JOIN receipt rc ON rc.id = m.receipt_id
             WHERE (?1 OR s.id IS NULL) AND {NOT_MISSING}{}
             ORDER BY m.participant NULLS FIRST, m.visit NULLS FIRST, m.minute NULLS FIRST, m.analyte NULLS FIRST, m.id",
            provenance_columns(receipt_columns(self.db())),
            scope.and("m.participant", 2)
        );
        self.db().query_all(&sql, &scope.bind(params![include_resolved]), |r| {
            Ok(MismatchReport { mismatch: mismatch_row(r, 0)?, provenance: provenance(r, MISMATCH_WIDTH)? })
        })
    }

    /// The current version of every slot, with the observation's fields and
    /// the first arrival of its content (`export results`). Ordered by
    /// participant, visit, minute, analyte.
    pub fn current_results(&self) -> Result<Vec<CurrentResult>, StoreError> {
        let columns = result_table_columns(self.db());
        let sql = format!(
            "SELECT {columns}, {} FROM result r
             JOIN observation o ON o.id = r.observation_id
             JOIN message msg ON msg.id = o.message_id
             LEFT JOIN receipt rc ON rc.id = (SELECT min(id) FROM receipt WHERE raw_id = msg.raw_id)
             ORDER BY {VERSIONS_ORDER}",
            provenance_columns(receipt_columns(self.db()))
        );
        let mut current = Vec::new();
        self.each_current(
            &sql,
            params![],
            |r| Ok(CurrentResult { result: result_row(r, 0)?, provenance: provenance(r, RESULT_WIDTH)? }),
            |c| &c.result,
            |c| current.push(c),
        )?;
        Ok(current)
    }

    /// [`Reader::current_results`] as `export lb` needs them, without the
    /// first receipt's source, arrival and origin (`None`); and, in the
    /// same order, each one's stored copy, message number and order in the
    /// message.
    pub fn current_results_from_copies(&self) -> Result<(Vec<CurrentResult>, Vec<InCopy>), StoreError> {
        let columns = result_table_columns(self.db());
        let sql = format!(
            "SELECT {columns}, {}, msg.raw_id, msg.number, o.seq FROM result r
             JOIN observation o ON o.id = r.observation_id
             JOIN message msg ON msg.id = o.message_id
             ORDER BY {VERSIONS_ORDER}",
            provenance_columns(NO_RECEIPT)
        );
        let (mut results, mut copies) = (Vec::new(), Vec::new());
        let at = RESULT_WIDTH + PROVENANCE_WIDTH;
        self.each_current(
            &sql,
            params![],
            |r| {
                let current = CurrentResult { result: result_row(r, 0)?, provenance: provenance(r, RESULT_WIDTH)? };
                Ok((current, (r.get(at)?, r.get(at + 1)?, r.get(at + 2)?)))
            },
            |(current, _)| &current.result,
            |(current, copy)| {
                results.push(current);
                copies.push(copy);
            },
        )?;
        Ok((results, copies))
    }

    /// The current results a query of every version gives (ordered by
    /// [`VERSIONS_ORDER`], each slot's latest last), each read by `read`
    /// and handed to `keep`: a slot's latest version unless it is a
    /// withdrawal. This is the current_result view, read along the slots'
    /// unique index rather than with its max(version) for every row.
    pub(super) fn each_current<T>(
        &self,
        sql: &str,
        params: &[&dyn crate::store::sql::Param],
        mut read: impl FnMut(&Row) -> Result<T, StoreError>,
        result: impl Fn(&T) -> &ResultRow,
        mut keep: impl FnMut(T),
    ) -> Result<(), StoreError> {
        let mut latest: Option<T> = None;
        let mut settle = |last: Option<T>| {
            if let Some(last) = last.filter(|t| !result(t).withdrawn) {
                keep(last);
            }
        };
        self.db().query_each(sql, params, |r| {
            let row = read(r)?;
            if latest.as_ref().is_some_and(|l| result(l).slot != result(&row).slot) {
                settle(latest.take());
            }
            latest = Some(row);
            Ok::<_, StoreError>(true)
        })?;
        settle(latest);
        Ok(())
    }

    /// The audit rows about one entity (`entity` is the table name, `entity_id`
    /// its key as text), oldest first.
    pub fn audit_trail(&self, entity: &str, entity_id: &str) -> Result<Vec<AuditEntry>, StoreError> {
        let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE entity = ?1 AND entity_id = ?2 ORDER BY seq");
        self.db().query_all(&sql, crate::store::sql::params![entity, entity_id], AuditEntry::from_row)
    }

    /// The first processing of this content that found unparseable messages,
    /// so an identical re-delivery is rejected (and quarantined) again.
    pub fn earlier_rejection(&self, raw_id: RawId) -> Result<Option<EarlierRejection>, StoreError> {
        self.db().query_opt(
            "SELECT r.received_at, r.origin, r.source, p.errors, p.detail
                 FROM receipt r JOIN processing p ON p.receipt_id = r.id
                 WHERE r.raw_id = ?1 AND p.outcome IN ('processed', 'rejected') AND p.errors > 0
                 ORDER BY r.id LIMIT 1",
            params![raw_id],
            |r| {
                Ok(EarlierRejection {
                    received_at: r.get(0)?,
                    origin: r.get(1)?,
                    from_inbox: r.get::<String>(2)? == "file",
                    errors: r.get(3)?,
                    detail: r.get(4)?,
                })
            },
        )
    }

    /// What the ingest pipeline needs to know about an earlier observation:
    /// its matched value and where it came from (to order measurements of one
    /// slot the same way whatever order their files arrive in).
    pub fn observation_facts(&self, id: ObservationId) -> Result<Option<ObservationFacts>, StoreError> {
        self.db().query_opt(
            "SELECT o.id, o.status, o.resulted_at, o.value, o.unit, o.comparator, o.blq, raw.sha256, o.byte_offset
                 FROM observation o JOIN message m ON m.id = o.message_id JOIN raw ON raw.id = m.raw_id
                 WHERE o.id = ?1",
            params![id],
            |r| {
                Ok(ObservationFacts {
                    id: r.get(0)?,
                    status: r.get(1)?,
                    resulted_at: r.get(2)?,
                    value: r.get(3)?,
                    unit: r.get(4)?,
                    comparator: get_comparator(r, 5)?,
                    blq: r.get::<Option<bool>>(6)?.unwrap_or(false),
                    raw_sha256: r.get(7)?,
                    byte_offset: r.get(8)?,
                })
            },
        )
    }

    /// Filled, held and withdrawn slots (see [`SlotStates`]).
    pub fn slot_states(&self) -> Result<SlotStates, StoreError> {
        self.slot_states_in(&Scope::Study)
    }

    /// The slots of `scope` whose latest version is a withdrawal (the AUC
    /// chart's marks need only these, not every slot's state).
    pub fn withdrawn_slots_in(&self, scope: &Scope) -> Result<std::collections::BTreeSet<Slot>, StoreError> {
        let sql = format!(
            "SELECT r.participant, r.visit, r.minute, r.analyte FROM result r
             WHERE r.withdrawn = 1 AND r.unfilled = 0{}
               AND r.version = (SELECT max(version) FROM result x
                                WHERE x.participant = r.participant AND x.visit = r.visit
                                  AND x.minute = r.minute AND x.analyte = r.analyte)",
            scope.and("r.participant", 1)
        );
        self.db().query_all(&sql, &scope.bind(params![]), slot_row)
    }

    /// [`Reader::slot_states`] of `scope`.
    pub fn slot_states_in(&self, scope: &Scope) -> Result<SlotStates, StoreError> {
        let filled = self.db().query_all(
            &format!(
                "SELECT participant, visit, minute, analyte FROM current_result WHERE 1 = 1{}",
                scope.and("participant", 1)
            ),
            &scope.bind(params![]),
            slot_row,
        )?;
        self.slot_states_filled(scope, filled)
    }

    /// [`Reader::slot_states_in`] for a caller that has read the current
    /// results of `scope` in this snapshot already: `filled` is their slots.
    pub fn slot_states_filled(
        &self,
        scope: &Scope,
        filled: std::collections::BTreeSet<Slot>,
    ) -> Result<SlotStates, StoreError> {
        self.slot_states_of(scope, filled, true)
    }

    /// [`Reader::slot_states_filled`] without the MISSING_RESULT ids
    /// (`ids` is left empty): only the rows marked not done are read, not
    /// one row per slot of the study (`export lb` needs no ids).
    pub fn slot_states_without_ids(
        &self,
        scope: &Scope,
        filled: std::collections::BTreeSet<Slot>,
    ) -> Result<SlotStates, StoreError> {
        self.slot_states_of(scope, filled, false)
    }

    fn slot_states_of(
        &self,
        scope: &Scope,
        filled: std::collections::BTreeSet<Slot>,
        with_ids: bool,
    ) -> Result<SlotStates, StoreError> {
        let mut states = SlotStates { filled, ..SlotStates::default() };
        let db = self.db();
        let at = scope.bind(params![]);
        states.held = db.query_all(
            &format!(
                "SELECT participant, visit, minute, analyte, min(id) FROM open_mismatch
                 WHERE holds = 1 AND participant IS NOT NULL AND visit IS NOT NULL AND minute IS NOT NULL
                   AND analyte IS NOT NULL{}
                 GROUP BY participant, visit, minute, analyte",
                scope.and("participant", 1)
            ),
            &at,
            |r| Ok((slot_row(r)?, r.get::<MismatchId>(4)?)),
        )?;
        states.withdrawn = self.withdrawn_slots_in(scope)?;
        let sql = format!(
            "SELECT m.participant, m.visit, m.minute, m.analyte, m.id, {RESOLUTION_COLUMNS}
             FROM {MISMATCH_FROM} WHERE m.code = 'MISSING_RESULT'{}{}",
            if with_ids { "" } else { " AND s.action = 'not_done'" },
            scope.and("m.participant", 1)
        );
        let rows: Vec<_> = db.query_all(&sql, &at, |r| {
            let decision = match r.get::<Option<ResolutionId>>(5)? {
                Some(_) => Some(resolution_row(r, 5)?),
                None => None,
            };
            Ok((slot_row(r)?, r.get::<MismatchId>(4)?, decision))
        })?;
        for (s, id, decision) in rows {
            if let Some(d) = decision.filter(|d| d.action == ResolutionAction::NotDone)
                && !self.filled_since(&s, d.id)?
            {
                states
                    .not_done
                    .insert(s.clone(), NotDoneMark { id, reason: d.reason, by: d.resolved_by, at: d.resolved_at });
            }
            if with_ids {
                states.ids.insert(s, id);
            }
        }
        Ok(states)
    }

    /// Whether a value was put into `slot` after decision `id` (a result id
    /// above the decision's watermark, which is exact where times tie): a
    /// not-done mark lapses once data show the sample was drawn, even if
    /// that value is rejected later.
    fn filled_since(&self, slot: &Slot, id: ResolutionId) -> Result<bool, StoreError> {
        self.db().query_row(
            "SELECT EXISTS (
                   SELECT 1 FROM result r, resolution d
                   WHERE d.id = ?5 AND r.id > d.result_watermark
                     AND r.participant = ?1 AND r.visit = ?2 AND r.minute = ?3 AND r.analyte = ?4 AND r.withdrawn = 0)",
            params![slot.participant, slot.visit, slot.minute, slot.analyte, id],
            |r| r.get(0),
        )
    }

    /// The MISSING_RESULT id row `id`, with the decision in force on it;
    /// `None` when `id` is not such a row.
    pub fn missing_slot(&self, id: MismatchId) -> Result<Option<MissingSlotRow>, StoreError> {
        let sql = format!(
            "SELECT m.id, m.participant, m.visit, m.minute, m.analyte, {RESOLUTION_COLUMNS}
             FROM {MISMATCH_FROM} WHERE m.id = ?1 AND m.code = 'MISSING_RESULT'"
        );
        self.db().query_opt(&sql, params![id], |r| {
            let decision = match r.get::<Option<ResolutionId>>(5)? {
                Some(_) => Some(resolution_row(r, 5)?),
                None => None,
            };
            Ok(MissingSlotRow {
                id: r.get(0)?,
                slot: Slot { participant: r.get(1)?, visit: r.get(2)?, minute: r.get(3)?, analyte: r.get(4)? },
                decision,
            })
        })
    }

    /// Every resolution row of one mismatch (decisions, reopens, automatic
    /// closings), oldest first.
    pub fn decisions(&self, id: MismatchId) -> Result<Vec<ResolutionRow>, StoreError> {
        let sql = format!("SELECT {RESOLUTION_COLUMNS} FROM resolution s WHERE s.mismatch_id = ?1 ORDER BY s.id");
        self.db().query_all(&sql, params![id], |r| resolution_row(r, 0))
    }

    /// The whole decision history of every mismatch that has one (for
    /// `report mismatches --all`), each oldest first.
    pub fn decision_history(&self) -> Result<std::collections::BTreeMap<MismatchId, Vec<ResolutionRow>>, StoreError> {
        self.decision_history_in(&Scope::Study)
    }

    /// [`Reader::decision_history`] of the mismatches of `scope`.
    pub fn decision_history_in(
        &self,
        scope: &Scope,
    ) -> Result<std::collections::BTreeMap<MismatchId, Vec<ResolutionRow>>, StoreError> {
        let of = match scope {
            Scope::Study => String::new(),
            _ => {
                format!(" WHERE s.mismatch_id IN (SELECT id FROM mismatch WHERE 1 = 1{})", scope.and("participant", 1))
            }
        };
        let sql = format!("SELECT s.mismatch_id, {RESOLUTION_COLUMNS} FROM resolution s{of} ORDER BY s.id");
        let mut history: std::collections::BTreeMap<MismatchId, Vec<ResolutionRow>> = Default::default();
        let rows: Vec<_> = self
            .db()
            .query_all(&sql, &scope.bind(params![]), |r| Ok((r.get::<MismatchId>(0)?, resolution_row(r, 1)?)))?;
        for (id, resolution) in rows {
            history.entry(id).or_default().push(resolution);
        }
        Ok(history)
    }

    /// What decision `id` wrote and raised (see [`DecisionEffects`]).
    pub fn decision_effects(&self, id: ResolutionId) -> Result<DecisionEffects, StoreError> {
        let rows: Vec<_> = self.db().query_all(
            "SELECT result_id, mismatch_id FROM resolution_effect WHERE resolution_id = ?1 ORDER BY rowid",
            params![id],
            |r| Ok((r.get::<Option<ResultId>>(0)?, r.get::<Option<MismatchId>>(1)?)),
        )?;
        let mut effects = DecisionEffects::default();
        for row in rows {
            match row {
                (Some(result), _) => effects.results.push(result),
                (None, Some(mismatch)) => effects.raised.push(mismatch),
                (None, None) => {}
            }
        }
        Ok(effects)
    }

    /// Mismatches that decision `id` closed along with its own ('auto' rows
    /// whose cause it is) and that are still closed by that row.
    pub fn closed_along_with(&self, id: ResolutionId) -> Result<Vec<(MismatchId, ResolutionId)>, StoreError> {
        self.db().query_all(
            "SELECT s.mismatch_id, s.id FROM resolution s
             WHERE s.cause = ?1 AND s.action = 'auto'
               AND s.id = (SELECT max(x.id) FROM resolution x WHERE x.mismatch_id = s.mismatch_id)
             ORDER BY s.id",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    /// One result version.
    pub fn result(&self, id: ResultId) -> Result<Option<ResultRow>, StoreError> {
        let columns = result_table_columns(self.db());
        let sql = format!("SELECT {columns} FROM result r WHERE r.id = ?1");
        self.db().query_opt(&sql, params![id], |r| result_row(r, 0))
    }

    /// Whether version `id` is a withdrawal that left its slot as if never
    /// filled (see [`Tx::withdraw_result_as`](crate::store::Tx::withdraw_result_as)).
    pub fn is_unfilled(&self, id: ResultId) -> Result<bool, StoreError> {
        Ok(self
            .db()
            .query_opt("SELECT unfilled FROM result WHERE id = ?1", params![id], |r| r.get(0))?
            .unwrap_or(false))
    }

    /// The latest version in a slot, a withdrawal included.
    pub fn latest_version(&self, slot: &Slot) -> Result<Option<ResultRow>, StoreError> {
        if self.memo().is_some() {
            return Ok(self.result_history(slot)?.pop());
        }
        let columns = result_table_columns(self.db());
        let sql = format!(
            "SELECT {columns} FROM result r
             WHERE r.participant = ?1 AND r.visit = ?2 AND r.minute = ?3 AND r.analyte = ?4
             ORDER BY r.version DESC LIMIT 1"
        );
        self.db()
            .query_opt(&sql, params![slot.participant, slot.visit, slot.minute, slot.analyte], |r| result_row(r, 0))
    }

    /// One observation as stored, with its message's sender.
    pub fn observation(&self, id: ObservationId) -> Result<Option<ObservationRow>, StoreError> {
        self.db().query_opt(
            "SELECT o.id, o.message_id, o.byte_offset, msg.sender, o.instrument, o.sample_id, o.test_code,
                        o.reported_value, o.reported_unit, o.comparator, o.reported_numeric, o.flags, o.status,
                        o.collected_at, o.resulted_at, o.qc, o.participant, o.visit, o.minute, o.analyte, o.value,
                        o.unit, o.blq, o.outcome
                 FROM observation o JOIN message msg ON msg.id = o.message_id WHERE o.id = ?1",
            params![id],
            |r| {
                Ok(ObservationRow {
                    id: r.get(0)?,
                    message_id: r.get(1)?,
                    byte_offset: r.get(2)?,
                    sender: r.get(3)?,
                    instrument: r.get(4)?,
                    sample_id: r.get(5)?,
                    test_code: r.get(6)?,
                    reported_value: r.get(7)?,
                    reported_unit: r.get(8)?,
                    comparator: get_comparator(r, 9)?,
                    reported_numeric: r.get(10)?,
                    flags: r.get(11)?,
                    status: r.get(12)?,
                    collected_at: r.get(13)?,
                    resulted_at: r.get(14)?,
                    qc: r.get(15)?,
                    matched: Matched {
                        participant: r.get(16)?,
                        visit: r.get(17)?,
                        minute: r.get(18)?,
                        analyte: r.get(19)?,
                        value: r.get(20)?,
                        unit: r.get(21)?,
                        blq: r.get(22)?,
                    },
                    outcome: r.get(23)?,
                })
            },
        )
    }

    /// The instrument of the link a receipt came through (`None` for files).
    pub fn receipt_instrument(&self, id: ReceiptId) -> Result<Option<String>, StoreError> {
        Ok(self.db().query_opt("SELECT instrument FROM receipt WHERE id = ?1", params![id], |r| r.get(0))?.flatten())
    }

    /// The codes of mismatches about one observation that a data manager
    /// accepted: problems already seen and let through.
    pub fn accepted_codes_of_observation(&self, id: ObservationId) -> Result<Vec<MismatchCode>, StoreError> {
        let sql = format!(
            "SELECT DISTINCT m.code FROM {MISMATCH_FROM}
             WHERE m.observation_id = ?1 AND s.action = 'accept' ORDER BY m.code"
        );
        self.db().query_all(&sql, params![id], |r| r.get(0))
    }

    /// Open mismatches about one observation, oldest first.
    pub fn open_mismatches_of_observation(&self, id: ObservationId) -> Result<Vec<MismatchRow>, StoreError> {
        let sql = format!(
            "SELECT {MISMATCH_COLUMNS} FROM {MISMATCH_FROM} WHERE s.id IS NULL AND m.observation_id = ?1 ORDER BY m.id"
        );
        self.db().query_all(&sql, params![id], |r| mismatch_row(r, 0))
    }

    /// Whether the same report (instrument, sample, test, value, unit, status,
    /// result time) already has an open mismatch with `code`: a re-delivery of
    /// a held result is a duplicate, not a second mismatch.
    pub fn open_mismatch_for_same_report(&self, code: MismatchCode, o: &NewObservation) -> Result<bool, StoreError> {
        let resulted_at = o.resulted_at.map(|t| t.to_iso());
        self.db().query_row(
            "SELECT EXISTS (
                   SELECT 1 FROM open_mismatch m JOIN observation o ON o.id = m.observation_id
                   WHERE m.code = ?1
                     AND o.instrument IS NOT DISTINCT FROM ?2 AND o.sample_id IS NOT DISTINCT FROM ?3 AND o.test_code IS NOT DISTINCT FROM ?4
                     AND o.reported_value IS NOT DISTINCT FROM ?5 AND o.reported_unit IS NOT DISTINCT FROM ?6 AND o.status IS NOT DISTINCT FROM ?7
                     AND o.resulted_at IS NOT DISTINCT FROM ?8)",
            params![
                code,
                o.instrument,
                o.sample_id,
                o.test_code,
                o.reported_value,
                o.reported_unit,
                o.status,
                resulted_at
            ],
            |r| r.get(0),
        )
    }

    /// Results of this content still held by a mismatch that a change of
    /// configuration or study data may clear (see
    /// [`MismatchCode::depends_on_setup`]), and that no person has decided on:
    /// a re-delivery reads them again.
    pub fn held_for_setup(&self, raw_id: RawId) -> Result<Vec<HeldForSetup>, StoreError> {
        let codes: Vec<String> =
            MismatchCode::ALL.iter().filter(|c| c.depends_on_setup()).map(|c| format!("'{}'", c.as_str())).collect();
        let sql = format!(
            "SELECT m.id, m.code, o.id, o.message_id, msg.number, o.seq
             FROM open_mismatch m JOIN observation o ON o.id = m.observation_id
             JOIN message msg ON msg.id = o.message_id
             WHERE msg.raw_id = ?1 AND m.holds = 1 AND m.code IN ({})
               AND NOT EXISTS (SELECT 1 FROM mismatch x JOIN resolution r ON r.mismatch_id = x.id
                               WHERE x.observation_id = o.id AND r.action <> 'auto')
             ORDER BY m.id",
            codes.join(", ")
        );
        self.db().query_all(&sql, params![raw_id], |r| {
            Ok(HeldForSetup {
                mismatch_id: r.get(0)?,
                code: r.get(1)?,
                observation_id: r.get(2)?,
                message_id: r.get(3)?,
                message_number: r.get(4)?,
                seq: r.get(5)?,
            })
        })
    }

    /// The audit chain's last row: every transaction that writes ends with
    /// one (its `commit` row), so this changes whenever the data do.
    pub fn last_audit_seq(&self) -> Result<i64, StoreError> {
        self.db().query_row("SELECT coalesce(max(seq), 0) FROM audit_log", params![], |r| r.get(0))
    }

    /// The `commit` audit rows with `after < seq <= upto`, oldest first, at
    /// most `limit`: each seq and detail (see [`crate::store::vouch::ranges_of`]).
    pub fn commits_between(&self, after: i64, upto: i64, limit: i64) -> Result<Vec<(i64, String)>, StoreError> {
        self.db().query_all(
            "SELECT seq, detail FROM audit_log WHERE seq > ?1 AND seq <= ?2 AND action = 'commit' ORDER BY seq LIMIT ?3",
            params![after, upto, limit],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    /// The participants (`None`: a mismatch matched to none) that the rows
    /// `first..=last` (by the key a `commit` row names them by) of `table`
    /// put a value, a mismatch or a decision on, or a visit's meal start;
    /// `None` for a table whose rows do none of that.
    pub fn participants_of_rows(
        &self,
        table: &str,
        first: i64,
        last: i64,
    ) -> Result<Option<Vec<Option<String>>>, StoreError> {
        let sql = match table {
            "result" => "SELECT DISTINCT participant FROM result WHERE id BETWEEN ?1 AND ?2",
            "mismatch" => "SELECT DISTINCT participant FROM mismatch WHERE id BETWEEN ?1 AND ?2",
            "visit" => "SELECT DISTINCT participant FROM visit WHERE rowid BETWEEN ?1 AND ?2",
            // The decided mismatch's, and the slot an assignment moved a value to.
            "resolution" => {
                "SELECT m.participant FROM resolution s JOIN mismatch m ON m.id = s.mismatch_id
                     WHERE s.id BETWEEN ?1 AND ?2
                 UNION SELECT s.participant FROM resolution s
                     WHERE s.id BETWEEN ?1 AND ?2 AND s.participant IS NOT NULL"
            }
            "resolution_effect" => {
                "SELECT m.participant FROM resolution_effect e JOIN resolution s ON s.id = e.resolution_id
                     JOIN mismatch m ON m.id = s.mismatch_id WHERE e.rowid BETWEEN ?1 AND ?2
                 UNION SELECT r.participant FROM resolution_effect e JOIN result r ON r.id = e.result_id
                     WHERE e.rowid BETWEEN ?1 AND ?2
                 UNION SELECT m.participant FROM resolution_effect e JOIN mismatch m ON m.id = e.mismatch_id
                     WHERE e.rowid BETWEEN ?1 AND ?2"
            }
            // A corrected draw time shows in the provenance of the observation's mismatches.
            "observation_offset" => {
                "SELECT DISTINCT m.participant FROM observation_offset x
                     JOIN mismatch m ON m.observation_id = x.observation_id WHERE x.id BETWEEN ?1 AND ?2"
            }
            _ => return Ok(None),
        };
        self.db().query_all(sql, params![first, last], |r| r.get(0)).map(Some)
    }

    /// How many mismatches are open.
    pub fn open_mismatch_count(&self) -> Result<u64, StoreError> {
        self.db()
            .query_row("SELECT count(*) FROM open_mismatch", params![], |r| r.get::<i64>(0))
            .map(|n| n.max(0) as u64)
    }

    /// How many arrivals (receipts) there were at or after `since`.
    pub fn receipts_since(&self, since: jiff::Timestamp) -> Result<u64, StoreError> {
        self.db()
            .query_row("SELECT count(*) FROM receipt WHERE received_at >= ?1", params![utc_text(since)], |r| {
                r.get::<i64>(0)
            })
            .map(|n| n.max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::hex_bytes;

    #[test]
    fn only_a_hash_as_labfeed_writes_it_becomes_its_bytes() {
        let hash = "00ff".repeat(16);
        assert_eq!(hex_bytes(&hash), [0x00, 0xff].repeat(16));
        for not_a_hash in
            [hash.to_uppercase(), hash[..62].to_owned(), format!("{hash}00"), "zz".repeat(32), String::new()]
        {
            assert!(hex_bytes(&not_a_hash).is_empty(), "{not_a_hash}");
        }
    }
}
