//! The write primitives: each inserts (or updates study data) inside the
//! caller's transaction. A person's transaction audits every change with
//! its content; every transaction ends with a `commit` audit row that
//! vouches for the rows it wrote ([`crate::store::vouch`]).

use std::cell::{Cell, RefCell};
use std::ops::Deref;

use crate::store::Transaction;
use crate::store::sql::{self, Db, params};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::store::StoreError;
use crate::store::account::{Signature, signature_json};
use crate::store::audit::{self, AuditKey};
use crate::store::mask::{mask, masked_label};
use crate::store::read::{Reader, utc_text};
use crate::store::types::*;

/// One open write transaction (SQLite's `BEGIN IMMEDIATE`, PostgreSQL's
/// write lock). Obtained from
/// [`Store::write`](crate::store::Store::write); derefs to a [`Reader`] for
/// queries that see its own uncommitted rows.
pub struct Tx<'c> {
    transaction: Transaction<'c>,
    reader: Reader<'c>,
    actor: String,
    at: String,
    /// A person's signature, written before the first row it signs: a
    /// signed transaction that changes nothing leaves no trace.
    signature: Option<Signature>,
    signed: Cell<bool>,
    key: Option<AuditKey>,
    /// The daemon (or machine) receiving, recorded with each receipt.
    instance: Option<String>,
    /// Seq and hash of the last audit row this transaction appended.
    last: RefCell<Option<(i64, String)>>,
    /// `at` as the engine stores it (see [`stored_time`]).
    at_stored: sql::Value,
}

/// The last second SQLite's `strftime` writes as a four-digit year (9999-12-31T23:59:59Z).
const LAST_FOUR_DIGIT_SECOND: i64 = 253_402_300_799;

/// The outcomes of schema 10's `observation.outcome_code` and
/// `processing.outcome_code`: each one's place in its list.
const OBSERVATION_OUTCOMES: [&str; 4] = ["accepted", "duplicate", "mismatch", "qc"];
const PROCESSING_OUTCOMES: [&str; 4] = ["processed", "duplicate", "rejected", "aborted"];

/// An outcome as `db` stores it: on SQLite (schema 10) its place in
/// `outcomes`, which the `outcome` column reads back as the name; otherwise
/// the name (one not in the list is refused by either).
fn stored_outcome(db: Db<'_>, outcomes: &[&str], outcome: &str) -> sql::Value {
    match outcomes.iter().position(|o| *o == outcome) {
        Some(code) if db.is_sqlite() => sql::Value::Integer(code as i64),
        _ => sql::Value::Text(outcome.to_owned()),
    }
}

/// A local time as sent (ISO 8601 text) as `db` stores it: on SQLite
/// (schema 10) one to the second without an offset, in 1970–9999, as the
/// seconds from 1970-01-01T00:00:00 to it, which the `…_at` column reads back
/// as the same text; otherwise the text.
fn stored_local(db: Db<'_>, text: Option<&str>) -> sql::Value {
    let Some(text) = text else { return sql::Value::Null };
    let seconds = (db.is_sqlite() && text.len() == 19)
        .then(|| text.parse::<jiff::civil::DateTime>().ok())
        .flatten()
        .filter(|dt| dt.strftime("%Y-%m-%dT%H:%M:%S").to_string() == text)
        .and_then(|dt| jiff::tz::TimeZone::UTC.to_timestamp(dt).ok())
        .map(|t| t.as_second())
        .filter(|s| (0..=LAST_FOUR_DIGIT_SECOND).contains(s));
    seconds.map_or_else(|| sql::Value::Text(text.to_owned()), sql::Value::Integer)
}

/// A UTC time as `db` stores it: on SQLite (schema 10) a whole second of
/// 1970–9999 as its seconds since 1970, which the `…_at` column reads back as
/// the text [`utc_text`] writes; otherwise that text.
fn stored_time(db: Db<'_>, t: jiff::Timestamp) -> sql::Value {
    let seconds = t.as_second();
    if db.is_sqlite() && (0..=LAST_FOUR_DIGIT_SECOND).contains(&seconds) {
        sql::Value::Integer(seconds)
    } else {
        sql::Value::Text(utc_text(t))
    }
}

/// Audit entities of machine inserts: in labfeed's own transactions they are
/// vouched for by the `commit` row alone (a copy of each tripled the database).
/// In an order where every reference points to a table before it (or to its
/// own), which the inserts held back on PostgreSQL go out in.
pub(crate) const MACHINE_ENTITIES: &[&str] = &[
    "raw",
    "receipt",
    "processing",
    "message",
    "observation",
    "observation_offset",
    "result",
    "mismatch",
    "resolution",
    "resolution_effect",
];

impl<'c> Deref for Tx<'c> {
    type Target = Reader<'c>;

    fn deref(&self) -> &Reader<'c> {
        &self.reader
    }
}

fn finite(what: &'static str, value: f64) -> Result<f64, StoreError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(StoreError::Invalid { what, problem: format!("{value} is not a finite number") })
    }
}

fn participant_json(p: &Participant) -> Value {
    json!({ "code": p.code, "site": p.site })
}

fn visit_json(v: &Visit) -> Value {
    json!({ "participant": v.participant, "visit": v.visit, "meal_start": v.meal_start.map(|t| t.to_string()) })
}

fn sample_json(s: &Sample) -> Value {
    json!({ "sample_id": s.sample_id, "participant": s.participant, "visit": s.visit, "minute": s.minute })
}

impl<'c> Tx<'c> {
    /// `db` notes the rows written (see [`Db::noting`]); its log starts empty.
    pub(crate) fn new(
        transaction: Transaction<'c>,
        db: Db<'c>,
        actor: &str,
        key: Option<AuditKey>,
        instance: Option<String>,
    ) -> Tx<'c> {
        db.take_written();
        let now = jiff::Timestamp::now();
        Tx {
            transaction,
            reader: Reader::new(db),
            actor: actor.to_owned(),
            at: utc_text(now),
            at_stored: stored_time(db, now),
            signature: None,
            signed: Cell::new(false),
            key,
            instance,
            last: RefCell::new(None),
        }
    }

    /// Sign this transaction: `signature` is audited before its first change.
    pub(crate) fn set_signature(&mut self, signature: &Signature) {
        self.signature = Some(signature.clone());
    }

    /// Vouch for the rows written (one `commit` audit row), then commit.
    /// Returns the chain's new head, if this transaction appended to it.
    pub(crate) fn commit(self) -> Result<Option<(i64, String)>, StoreError> {
        let written = self.db().take_written();
        if !written.is_empty() {
            let detail = written.detail(self.db())?;
            self.append("commit", "transaction", None, &detail)?;
        }
        let head = self.last.take();
        self.transaction.commit()?;
        Ok(head)
    }

    /// An audit row about the audit itself (an upgrade, the key taken into use).
    pub(crate) fn note(&self, action: &str, entity: &str, detail: Value) -> Result<i64, StoreError> {
        self.append(action, entity, None, &detail)
    }

    /// Have the `commit` row vouch for every row of every vouched table (an
    /// upgrade from before schema 7). Returns how many rows.
    pub(crate) fn vouch_every_row(&self) -> Result<u64, StoreError> {
        let mut n = 0;
        for v in crate::store::vouch::VOUCHED {
            let rowids: Vec<i64> =
                self.db().query_all(&format!("SELECT {} FROM {}", v.key, v.table), params![], |r| r.get(0))?;
            n += rowids.len() as u64;
            self.db().note_written(v.table, rowids);
        }
        Ok(n)
    }

    /// Append one audit row, keyed when the store has a key.
    fn append(&self, action: &str, entity: &str, entity_id: Option<&str>, detail: &Value) -> Result<i64, StoreError> {
        let (seq, hash) =
            audit::append(self.db(), self.key.as_ref(), &self.at, &self.actor, action, entity, entity_id, detail)?;
        *self.last.borrow_mut() = Some((seq, hash));
        Ok(seq)
    }

    /// The transaction's time: every row it writes carries it.
    pub(super) fn now(&self) -> jiff::Timestamp {
        self.at.parse().unwrap_or_else(|_| jiff::Timestamp::now())
    }

    /// Who this transaction writes as (an account name, or labfeed itself).
    pub(super) fn actor(&self) -> &str {
        &self.actor
    }

    pub(super) fn audit(
        &self,
        action: &str,
        entity: &str,
        entity_id: impl ToString,
        detail: Value,
    ) -> Result<i64, StoreError> {
        if let Some(signature) = self.signature.as_ref().filter(|_| !self.signed.replace(true)) {
            self.append("sign", "account", Some(&signature.account), &signature_json(signature))?;
        }
        self.append(action, entity, Some(&entity_id.to_string()), &detail)
    }

    /// The audit row of an insert into a table of [`MACHINE_ENTITIES`]: in a
    /// person's transaction as [`Tx::audit`]; in labfeed's own, none (its
    /// `commit` row vouches for the row), and `detail` is never built.
    fn audit_insert(
        &self,
        action: &str,
        entity: &'static str,
        entity_id: impl ToString,
        detail: impl FnOnce() -> Value,
    ) -> Result<(), StoreError> {
        debug_assert!(MACHINE_ENTITIES.contains(&entity), "{entity} is audited by audit()");
        if self.actor != crate::store::SYSTEM_ACTOR {
            self.audit(action, entity, entity_id, detail())?;
        }
        Ok(())
    }

    /// The next write to `result` or `mismatch` changes `slot` alone, or
    /// with `None` no slot; for `raw` and `receipt`, that the writer keeps
    /// the memo itself (see [`crate::store::memo`]).
    fn about(&self, slot: Option<Slot>) {
        if let Some(memo) = self.db().memo() {
            memo.borrow_mut().about(slot);
        }
    }

    fn require_participant(&self, code: &str) -> Result<(), StoreError> {
        if self.participant_exists(code)? {
            Ok(())
        } else {
            Err(StoreError::NotFound { entity: "participant", key: code.to_owned() })
        }
    }

    /// Store a content as received, or find it by the SHA-256 of its bytes.
    /// The stored copy has `personal` masked; the hash is of the original.
    /// Audited (`store raw`) only when new.
    pub fn insert_raw(&mut self, raw: &NewRaw<'_>) -> Result<RawStored, StoreError> {
        let digest: [u8; 32] = Sha256::digest(raw.bytes).into();
        let sha256 = audit::hex(&digest);
        let known = self.db().memo().and_then(|m| m.borrow().content(&sha256));
        let found = match known {
            Some(found) => found,
            None => self.raw_id_by_sha256(&sha256)?,
        };
        if let Some(id) = found {
            return Ok(RawStored { id, new: false });
        }
        let spans: Vec<_> = raw.personal.iter().map(|p| p.span.clone()).collect();
        let (content, encoding) = crate::store::mask::pack(mask(raw.bytes, &spans));
        let masked = masked_label(raw.personal.iter().map(|p| (p.field.as_str(), &p.span)), raw.bytes.len());
        let size = raw.bytes.len() as i64;
        let format = raw.format.map(|f| f.as_str());
        let received_at = utc_text(raw.received_at);
        self.about(None);
        let id = RawId(if self.db().is_sqlite() {
            // Schema 10: the hash's bytes and the time's seconds; `sha256`
            // and `first_received_at` read them back as text.
            self.db().insert(
                "INSERT INTO raw (digest, size, format, content, masked, first_received_unix, encoding)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    digest.as_slice(),
                    size,
                    format,
                    content,
                    masked,
                    stored_time(self.db(), raw.received_at),
                    encoding
                ],
            )?
        } else {
            self.db().insert(
                "INSERT INTO raw (sha256, size, format, content, masked, first_received_at, encoding)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![sha256, size, format, content, masked, received_at, encoding],
            )?
        });
        if let Some(memo) = self.db().memo() {
            let mut memo = memo.borrow_mut();
            memo.set_content(&sha256, Some(id));
            memo.set_receipts(id, 0);
        }
        self.audit_insert("store", "raw", id, || {
            json!({ "sha256": sha256, "size": size, "format": format, "masked": masked,
                    "first_received_at": received_at })
        })?;
        Ok(RawStored { id, new: true })
    }

    /// Record one arrival (duplicate or not). Audited as `receive`.
    pub fn insert_receipt(&mut self, receipt: &NewReceipt) -> Result<ReceiptId, StoreError> {
        let received_at = utc_text(receipt.received_at);
        let known = self.db().memo().and_then(|m| m.borrow().receipts(receipt.raw_id));
        let earlier: i64 = match known {
            Some(count) => count,
            None => {
                self.db().query_row("SELECT count(*) FROM receipt WHERE raw_id = ?1", params![receipt.raw_id], |r| {
                    r.get(0)
                })?
            }
        };
        self.about(None);
        let sql = if self.db().is_sqlite() {
            "INSERT INTO receipt (raw_id, received_unix, source, origin, instrument, instance)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
        } else {
            "INSERT INTO receipt (raw_id, received_at, source, origin, instrument, instance)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
        };
        let id = ReceiptId(self.db().insert(
            sql,
            params![
                receipt.raw_id,
                stored_time(self.db(), receipt.received_at),
                receipt.source,
                receipt.origin,
                receipt.instrument,
                self.instance
            ],
        )?);
        if let Some(memo) = self.db().memo() {
            memo.borrow_mut().set_receipts(receipt.raw_id, earlier + 1);
        }
        self.audit_insert("receive", "receipt", id, || {
            json!({ "raw_id": receipt.raw_id.get(), "received_at": received_at, "source": receipt.source.as_str(),
                    "origin": receipt.origin, "instrument": receipt.instrument, "instance": self.instance,
                    "earlier_receipts": earlier })
        })?;
        Ok(id)
    }

    /// Record what processing a receipt did (at most once per receipt).
    /// Audited as `process`.
    pub fn insert_processing(&mut self, p: &NewProcessing) -> Result<(), StoreError> {
        let sql = if self.db().is_sqlite() {
            "INSERT INTO processing
                   (receipt_id, processed_unix, outcome_code, accepted, duplicates, mismatches, qc, errors, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
        } else {
            "INSERT INTO processing
                   (receipt_id, processed_at, outcome, accepted, duplicates, mismatches, qc, errors, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
        };
        self.db().execute(
            sql,
            params![
                p.receipt_id,
                self.at_stored,
                stored_outcome(self.db(), &PROCESSING_OUTCOMES, p.outcome.as_str()),
                p.accepted,
                p.duplicates,
                p.mismatches,
                p.qc,
                p.errors,
                p.detail
            ],
        )?;
        self.audit_insert("process", "processing", p.receipt_id, || {
            json!({ "outcome": p.outcome.as_str(), "accepted": p.accepted, "duplicates": p.duplicates,
                    "mismatches": p.mismatches, "qc": p.qc, "errors": p.errors, "detail": p.detail })
        })?;
        Ok(())
    }

    /// Record one message of a raw content. Audited as `parse`.
    pub fn insert_message(&mut self, m: &NewMessage) -> Result<MessageId, StoreError> {
        let (start, end) = (m.span.start as i64, m.span.end as i64);
        let format = m.format.map(|f| f.as_str());
        let error_offset = m.error_offset.map(|o| o as i64);
        let id = MessageId(self.db().insert(
            "INSERT INTO message
                   (raw_id, number, span_start, span_end, format, sender, control_id, error, error_offset)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![m.raw_id, m.number, start, end, format, m.sender, m.control_id, m.error, error_offset],
        )?);
        self.audit_insert("parse", "message", id, || {
            json!({ "raw_id": m.raw_id.get(), "number": m.number, "span": [start, end], "format": format,
                    "sender": m.sender, "control_id": m.control_id, "error": m.error, "error_offset": error_offset })
        })?;
        Ok(id)
    }

    /// Record one reported result and how it was matched. Audited as `observe`.
    pub fn insert_observation(&mut self, o: &NewObservation) -> Result<ObservationId, StoreError> {
        let value = o.matched.value.map(|v| finite("observation value", v)).transpose()?;
        let comparator = o.comparator.map(|c| c.as_str());
        let numeric = o.reported_numeric.as_ref().map(|n| n.as_str().to_owned());
        let collected_at = o.collected_at.map(|t| t.to_iso());
        let collected_offset = o.collected_offset.map(crate::local_time::offset_text);
        let resulted_at = o.resulted_at.map(|t| t.to_iso());
        let m = &o.matched;
        let sql = if self.db().is_sqlite() {
            "INSERT INTO observation
                   (message_id, seq, byte_offset, instrument, sample_id, test_code, reported_value, reported_unit,
                    comparator, reported_numeric, flags, status, collected_secs, resulted_secs, qc,
                    participant, visit, minute, analyte, value, unit, blq, outcome_code, collected_offset)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
                         ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)"
        } else {
            "INSERT INTO observation
                   (message_id, seq, byte_offset, instrument, sample_id, test_code, reported_value, reported_unit,
                    comparator, reported_numeric, flags, status, collected_at, resulted_at, qc,
                    participant, visit, minute, analyte, value, unit, blq, outcome, collected_offset)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
                         ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)"
        };
        let id = ObservationId(self.db().insert(
            sql,
            params![
                o.message_id,
                o.seq,
                o.byte_offset as i64,
                o.instrument,
                o.sample_id,
                o.test_code,
                o.reported_value,
                o.reported_unit,
                comparator,
                numeric,
                o.flags,
                o.status,
                stored_local(self.db(), collected_at.as_deref()),
                stored_local(self.db(), resulted_at.as_deref()),
                o.qc,
                m.participant,
                m.visit,
                m.minute,
                m.analyte,
                value,
                m.unit,
                m.blq,
                stored_outcome(self.db(), &OBSERVATION_OUTCOMES, o.outcome.as_str()),
                collected_offset,
            ],
        )?);
        self.audit_insert(
            "observe",
            "observation",
            id,
            || json!({ "message_id": o.message_id.get(), "seq": o.seq, "byte_offset": o.byte_offset,
                    "instrument": o.instrument, "sample_id": o.sample_id, "test_code": o.test_code,
                    "reported_value": o.reported_value, "reported_unit": o.reported_unit, "status": o.status,
                    "collected_at": collected_at, "collected_offset": collected_offset, "qc": o.qc, "participant": m.participant, "visit": m.visit,
                    "minute": m.minute, "analyte": m.analyte, "value": value, "unit": m.unit, "blq": m.blq,
                    "outcome": o.outcome.as_str() }),
        )?;
        Ok(id)
    }

    /// Record that a repeated local collection time of observation `id` is
    /// now read with `offset` (`+01:00`): the meal start or minute it was
    /// chosen by changed. Audited as `reread`.
    pub fn record_collected_offset(&mut self, id: ObservationId, offset: &str, reason: &str) -> Result<(), StoreError> {
        let row = self.db().insert(
            "INSERT INTO observation_offset (observation_id, collected_offset, at, reason) VALUES (?1, ?2, ?3, ?4)",
            params![id, offset, self.at, reason],
        )?;
        self.audit_insert(
            "reread",
            "observation_offset",
            row,
            || json!({ "observation_id": id.get(), "collected_offset": offset, "reason": reason }),
        )?;
        Ok(())
    }

    /// Accept a value into its slot as the next version: `version` is the
    /// slot's highest + 1 and `supersedes` the current version's id.
    /// Audited as `accept` (first version) or `supersede`.
    pub fn insert_result(&mut self, r: &NewResult) -> Result<ResultStored, StoreError> {
        let value = finite("result value", r.value)?;
        self.require_participant(&r.slot.participant)?;
        let s = &r.slot;
        let previous = self.latest_version(s)?;
        let version = previous.as_ref().map_or(1, |p| p.version + 1);
        let supersedes = previous.map(|p| p.id);
        let comparator = r.comparator.map(|c| c.as_str());
        self.about(Some(s.clone()));
        // Every column given: a default changed behind labfeed's back
        // (withdrawn = 1) must not decide what a result is.
        let sql = if self.db().is_sqlite() {
            "INSERT INTO result
                   (observation_id, participant, visit, minute, analyte, value, unit, comparator, blq,
                    version, supersedes, accepted_unix, accepted_by, reason, withdrawn, unfilled)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, 0, 0)"
        } else {
            "INSERT INTO result
                   (observation_id, participant, visit, minute, analyte, value, unit, comparator, blq,
                    version, supersedes, accepted_at, accepted_by, reason, withdrawn, unfilled)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, 0, 0)"
        };
        let id = ResultId(self.db().insert(
            sql,
            params![
                r.observation_id,
                s.participant,
                s.visit,
                s.minute,
                s.analyte,
                value,
                r.unit,
                comparator,
                r.blq,
                version,
                supersedes,
                self.at_stored,
                self.actor,
                r.reason
            ],
        )?);
        self.audit_insert(if supersedes.is_some() { "supersede" } else { "accept" }, "result", id, || {
            json!({ "observation_id": r.observation_id.get(), "participant": s.participant, "visit": s.visit,
                    "minute": s.minute, "analyte": s.analyte, "value": value, "unit": r.unit,
                    "comparator": comparator, "blq": r.blq, "version": version,
                    "supersedes": supersedes.map(ResultId::get), "reason": r.reason })
        })?;
        Ok(ResultStored { id, version, supersedes })
    }

    /// Take the current value out of `slot` (a data manager rejected it or
    /// moved it elsewhere): a new version with `withdrawn = 1` that carries the
    /// withdrawn value for the record. `None` when the slot has no current
    /// value. Audited as `withdraw`.
    pub fn withdraw_result(&mut self, slot: &Slot, reason: &str) -> Result<Option<ResultStored>, StoreError> {
        self.withdraw_result_as(slot, reason, false)
    }

    /// [`Tx::withdraw_result`]; with `unfilled`, the slot reads as never
    /// filled afterwards (reports say "not received", not "rejected"): a
    /// reopen undoing the decision that first filled it.
    pub fn withdraw_result_as(
        &mut self,
        slot: &Slot,
        reason: &str,
        unfilled: bool,
    ) -> Result<Option<ResultStored>, StoreError> {
        let Some(current) = self.current_result(slot)? else { return Ok(None) };
        let version = current.version + 1;
        let comparator = current.comparator.map(|c| c.as_str());
        self.about(Some(slot.clone()));
        let sql = if self.db().is_sqlite() {
            "INSERT INTO result
                   (observation_id, participant, visit, minute, analyte, value, unit, comparator, blq,
                    version, supersedes, accepted_unix, accepted_by, reason, withdrawn, unfilled)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, 1, ?15)"
        } else {
            "INSERT INTO result
                   (observation_id, participant, visit, minute, analyte, value, unit, comparator, blq,
                    version, supersedes, accepted_at, accepted_by, reason, withdrawn, unfilled)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, 1, ?15)"
        };
        let id = ResultId(self.db().insert(
            sql,
            params![
                current.observation_id,
                slot.participant,
                slot.visit,
                slot.minute,
                slot.analyte,
                current.value,
                current.unit,
                comparator,
                current.blq,
                version,
                current.id,
                self.at_stored,
                self.actor,
                reason,
                unfilled
            ],
        )?);
        self.audit_insert("withdraw", "result", id, || {
            json!({ "observation_id": current.observation_id.get(), "participant": slot.participant,
                    "visit": slot.visit, "minute": slot.minute, "analyte": slot.analyte, "value": current.value,
                    "unit": current.unit, "comparator": comparator, "version": version,
                    "supersedes": current.id.get(), "reason": reason, "unfilled": unfilled })
        })?;
        Ok(Some(ResultStored { id, version, supersedes: Some(current.id) }))
    }

    /// Record a mismatch for a data manager. Audited as `mismatch`.
    pub fn insert_mismatch(&mut self, m: &NewMismatch) -> Result<MismatchId, StoreError> {
        let slot = match (&m.participant, &m.visit, m.minute, &m.analyte) {
            (Some(p), Some(v), Some(minute), Some(a)) => Some(Slot::new(p, v, minute, a)),
            _ => None,
        };
        // The memo learns the new row below rather than forgetting the slot's.
        self.about(None);
        let id = MismatchId(self.db().insert(
            "INSERT INTO mismatch
                   (code, holds, observation_id, message_id, receipt_id, participant, visit, minute, analyte,
                    detail, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                m.code,
                m.holds,
                m.observation_id,
                m.message_id,
                m.receipt_id,
                m.participant,
                m.visit,
                m.minute,
                m.analyte,
                m.detail,
                self.at
            ],
        )?);
        self.audit_insert("mismatch", "mismatch", id, || {
            json!({ "code": m.code.as_str(), "holds": m.holds, "observation_id": m.observation_id.map(|i| i.get()),
                    "message_id": m.message_id.map(|i| i.get()), "receipt_id": m.receipt_id.get(),
                    "participant": m.participant, "visit": m.visit, "minute": m.minute, "analyte": m.analyte,
                    "detail": m.detail })
        })?;
        if let (Some(slot), Some(memo)) = (slot, self.db().memo()) {
            let row = MismatchRow {
                id,
                code: m.code,
                holds: m.holds,
                observation_id: m.observation_id,
                message_id: m.message_id,
                receipt_id: m.receipt_id,
                participant: m.participant.clone(),
                visit: m.visit.clone(),
                minute: m.minute,
                analyte: m.analyte.clone(),
                detail: m.detail.clone(),
                created_at: self.now(),
                resolution: None,
            };
            memo.borrow_mut().opened(slot, row);
        }
        Ok(id)
    }

    /// Record a decision on a mismatch, by this transaction's actor: on an
    /// open one (never decided, or reopened), or a `reopen` of a decided one.
    /// A mismatch may so have several rows over time; the latest is in force.
    /// Audited as `resolve` (`reopen` for a reopen).
    pub fn insert_resolution(&mut self, r: &NewResolution) -> Result<ResolutionId, StoreError> {
        let state: Option<(String, Option<String>)> = self.db().query_opt(
            "SELECT m.code, (SELECT s.action FROM resolution s WHERE s.mismatch_id = m.id ORDER BY s.id DESC LIMIT 1)
                 FROM mismatch m WHERE m.id = ?1",
            params![r.mismatch_id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        let Some((code, latest)) = state else {
            return Err(StoreError::NotFound { entity: "mismatch", key: r.mismatch_id.to_string() });
        };
        let open = latest.as_deref().is_none_or(|a| a == ResolutionAction::Reopen.as_str());
        if open == (r.action == ResolutionAction::Reopen) {
            return Err(if open {
                StoreError::Invalid { what: "reopen", problem: format!("mismatch {} is open", r.mismatch_id) }
            } else {
                StoreError::AlreadyResolved(r.mismatch_id)
            });
        }
        let id = ResolutionId(self.db().insert(
            "INSERT INTO resolution
                   (mismatch_id, action, participant, visit, minute, result_id, reason, resolved_by, resolved_at,
                    cause, result_watermark)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, (SELECT coalesce(max(id), 0) FROM result))",
            params![
                r.mismatch_id,
                r.action,
                r.participant,
                r.visit,
                r.minute,
                r.result_id,
                r.reason,
                self.actor,
                self.at,
                r.cause
            ],
        )?);
        self.audit_insert(
            if r.action == ResolutionAction::Reopen { "reopen" } else { "resolve" },
            "resolution",
            id,
            || {
                json!({ "mismatch_id": r.mismatch_id.get(), "code": code, "action": r.action.as_str(),
                    "participant": r.participant, "visit": r.visit, "minute": r.minute,
                    "result_id": r.result_id.map(|i| i.get()), "reason": r.reason,
                    "cause": r.cause.map(|i| i.get()) })
            },
        )?;
        Ok(id)
    }

    /// Record what decision `resolution` wrote and raised, so that a reopen
    /// can undo exactly that. Audited as `effect` (one row per decision).
    pub fn insert_decision_effects(
        &mut self,
        resolution: ResolutionId,
        effects: &DecisionEffects,
    ) -> Result<(), StoreError> {
        if effects.results.is_empty() && effects.raised.is_empty() {
            return Ok(());
        }
        for result in &effects.results {
            self.db().execute(
                "INSERT INTO resolution_effect (resolution_id, kind, result_id) VALUES (?1, 'result', ?2)",
                params![resolution, result],
            )?;
        }
        for mismatch in &effects.raised {
            self.db().execute(
                "INSERT INTO resolution_effect (resolution_id, kind, mismatch_id) VALUES (?1, 'raised', ?2)",
                params![resolution, mismatch],
            )?;
        }
        self.audit_insert("effect", "resolution_effect", resolution, || {
            json!({ "results": effects.results.iter().map(|i| i.get()).collect::<Vec<_>>(),
                    "raised": effects.raised.iter().map(|i| i.get()).collect::<Vec<_>>() })
        })?;
        Ok(())
    }

    /// Give every scheduled slot a MISSING_RESULT id: one `mismatch` row
    /// (code MISSING_RESULT, holds nothing, no receipt) per `timepoints` ×
    /// `analytes` of each visit that has a meal start and no such row yet,
    /// so `resolve ID --not-done` has an id that never changes for that slot.
    ///
    /// Call it in any write transaction that may add visits, meal starts or
    /// (after a configuration change) timepoints and analytes: import,
    /// ingest batches, resolve. Cheap when nothing is new (one indexed
    /// `INSERT … SELECT`). Whether a slot is shown as missing is decided by
    /// the reports (empty slot, meal start passed), not here. Each new row is
    /// audited as `allocate`. Returns how many were added.
    pub fn allocate_missing_slot_ids(&mut self, timepoints: &[i64], analytes: &[String]) -> Result<u64, StoreError> {
        if timepoints.is_empty() || analytes.is_empty() {
            return Ok(0);
        }
        let before: i64 = self.db().query_row("SELECT coalesce(max(id), 0) FROM mismatch", params![], |r| r.get(0))?;
        // The slots as a VALUES list (`column1`, `column2` on both engines).
        let mut slots = Vec::with_capacity(timepoints.len() * analytes.len());
        let mut values: Vec<sql::Value> = vec![sql::Value::Text(self.at.clone())];
        for &minute in timepoints {
            for analyte in analytes {
                let n = values.len();
                slots.push(format!("(CAST(?{} AS BIGINT), CAST(?{} AS TEXT))", n + 1, n + 2));
                values.push(sql::Value::Integer(minute));
                values.push(sql::Value::Text(analyte.clone()));
            }
        }
        let params: Vec<&dyn sql::Param> = values.iter().map(|v| v as &dyn sql::Param).collect();
        let added = self.db().execute(
            &format!(
                "INSERT INTO mismatch (code, holds, participant, visit, minute, analyte, detail, created_at)
                 SELECT 'MISSING_RESULT', 0, v.participant, v.visit, t.column1, t.column2, 'scheduled result slot', ?1
                 FROM visit v, (VALUES {}) AS t
                 WHERE v.meal_start IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM mismatch m
                                   WHERE m.code = 'MISSING_RESULT' AND m.participant = v.participant
                                     AND m.visit = v.visit AND m.minute = t.column1 AND m.analyte = t.column2)
                 ORDER BY v.participant, v.visit, t.column1, t.column2",
                slots.join(", ")
            ),
            &params,
        )?;
        if added == 0 {
            return Ok(0);
        }
        let new: Vec<(MismatchId, String, String, i64, String)> = self.db().query_all(
            "SELECT id, participant, visit, minute, analyte FROM mismatch
             WHERE id > ?1 AND code = 'MISSING_RESULT' ORDER BY id",
            params![before],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )?;
        for (id, participant, visit, minute, analyte) in &new {
            self.audit_insert("allocate", "mismatch", id, || {
                json!({ "code": MISSING_RESULT_CODE, "holds": false, "participant": participant, "visit": visit,
                        "minute": minute, "analyte": analyte, "detail": "scheduled result slot" })
            })?;
        }
        Ok(new.len() as u64)
    }

    fn audit_change(&self, entity: &str, key: &str, old: Option<Value>, new: Value) -> Result<(), StoreError> {
        let change = if old.is_some() { "changed" } else { "new" };
        self.audit("import", entity, key, json!({ "change": change, "old": old, "new": new }))?;
        Ok(())
    }

    /// Insert or update a participant by code. Writes (and audits old and
    /// new values) only when something differs.
    pub fn upsert_participant(&mut self, p: &Participant) -> Result<Change, StoreError> {
        let old = self.participant(&p.code)?;
        match old {
            Some(ref o) if o == p => return Ok(Change::Unchanged),
            Some(_) => {
                self.db().execute("UPDATE participant SET site = ?2 WHERE code = ?1", params![p.code, p.site])?;
            }
            None => {
                self.db().execute("INSERT INTO participant (code, site) VALUES (?1, ?2)", params![p.code, p.site])?;
            }
        }
        self.audit_change("participant", &p.code, old.as_ref().map(participant_json), participant_json(p))?;
        Ok(if old.is_some() { Change::Changed } else { Change::New })
    }

    /// Insert or update a visit by (participant, visit); the participant must
    /// exist. Writes (and audits old and new values) only when something differs.
    pub fn upsert_visit(&mut self, v: &Visit) -> Result<Change, StoreError> {
        self.require_participant(&v.participant)?;
        let old = self.visit(&v.participant, &v.visit)?;
        let meal_start = v.meal_start.map(|t| t.to_string());
        match old {
            Some(ref o) if o == v => return Ok(Change::Unchanged),
            Some(_) => {
                self.db().execute(
                    "UPDATE visit SET meal_start = ?3 WHERE participant = ?1 AND visit = ?2",
                    params![v.participant, v.visit, meal_start],
                )?;
            }
            None => {
                self.db().execute(
                    "INSERT INTO visit (participant, visit, meal_start) VALUES (?1, ?2, ?3)",
                    params![v.participant, v.visit, meal_start],
                )?;
            }
        }
        let key = format!("{}/{}", v.participant, v.visit);
        self.audit_change("visit", &key, old.as_ref().map(visit_json), visit_json(v))?;
        Ok(if old.is_some() { Change::Changed } else { Change::New })
    }

    /// Insert or update a manifest sample by sample ID; the participant must
    /// exist. Writes (and audits old and new values) only when something differs.
    pub fn upsert_sample(&mut self, s: &Sample) -> Result<Change, StoreError> {
        self.require_participant(&s.participant)?;
        let old = self.sample(&s.sample_id)?;
        match old {
            Some(ref o) if o == s => return Ok(Change::Unchanged),
            Some(_) => {
                self.db().execute(
                    "UPDATE sample SET participant = ?2, visit = ?3, minute = ?4 WHERE sample_id = ?1",
                    params![s.sample_id, s.participant, s.visit, s.minute],
                )?;
            }
            None => {
                self.db().execute(
                    "INSERT INTO sample (sample_id, participant, visit, minute) VALUES (?1, ?2, ?3, ?4)",
                    params![s.sample_id, s.participant, s.visit, s.minute],
                )?;
            }
        }
        self.audit_change("sample", &s.sample_id, old.as_ref().map(sample_json), sample_json(s))?;
        Ok(if old.is_some() { Change::Changed } else { Change::New })
    }
}
