//! `report audit`: the audit trail as an inspector reads it. Who (account,
//! full name, role, OS account), what (the signature's meaning, the action
//! and entity), when (UTC), why (the reason), and for people's changes the
//! old and new values in plain words.
//!
//! A person's transaction starts with its `sign` row; the rows after it with
//! the same time and actor belong to it. labfeed's own rows (ingest, failed
//! logins) have no signature: consecutive ones with one time are one
//! transaction, and the text form counts their machine rows instead of
//! listing them, so a large study stays readable. CSV has every row.
//!
//! Never shown: the password hash fingerprints of account rows, and raw
//! content (audit rows hold none; they hold study codes only).

use std::io::{self, Write};

use serde_json::Value;

use crate::report::format::format_value;
use crate::report::wording::{plural, signer_words};
use crate::store::{AuditEntry, SYSTEM_ACTOR};

/// The CSV columns, in order.
pub const AUDIT_COLUMNS: [&str; 13] = [
    "seq",
    "at",
    "actor",
    "full_name",
    "role",
    "os_account",
    "meaning",
    "reason",
    "on_behalf_of",
    "action",
    "entity",
    "entity_id",
    "change",
];

/// Who answers for a transaction: the signature of its `sign` row,
/// labfeed itself, or (in a trail from before accounts) a bare actor name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signer {
    pub account: String,
    pub full_name: String,
    pub role: String,
    pub os_account: String,
    pub meaning: String,
    pub reason: String,
    pub on_behalf_of: String,
}

impl Signer {
    fn signed(row: &AuditEntry, detail: &Value) -> Signer {
        let field = |key: &str| text(detail, key).unwrap_or_default();
        Signer {
            account: row.actor.clone(),
            full_name: field("full_name"),
            role: field("role"),
            os_account: field("os_account"),
            meaning: field("meaning"),
            reason: field("reason"),
            on_behalf_of: field("on_behalf_of"),
        }
    }

    fn unsigned(actor: &str) -> Signer {
        match actor == SYSTEM_ACTOR {
            true => Signer {
                account: SYSTEM_ACTOR.to_owned(),
                full_name: SYSTEM_ACTOR.to_owned(),
                role: "system".to_owned(),
                ..Signer::default()
            },
            false => Signer { account: actor.to_owned(), ..Signer::default() },
        }
    }

    fn is_system(&self) -> bool {
        self.account == SYSTEM_ACTOR && self.role == "system"
    }

    /// `dm.anna (Anna Data, data-manager), OS account anna`; `labfeed (system)`.
    fn who(&self) -> String {
        if self.is_system() {
            return format!("{SYSTEM_ACTOR} (system)");
        }
        let mut who = signer_words(&self.account, &self.full_name, &self.role);
        if !self.os_account.is_empty() {
            who.push_str(&format!(", OS account {}", self.os_account));
        }
        who
    }

    /// `means: resolve accept; reason: …; on behalf of: …`, or nothing unsigned.
    fn signature_line(&self) -> Option<String> {
        if self.meaning.is_empty() {
            return None;
        }
        let mut line = format!("means: {}", self.meaning);
        if !self.reason.is_empty() {
            line.push_str(&format!("; reason: {}", self.reason));
        }
        if !self.on_behalf_of.is_empty() {
            line.push_str(&format!("; on behalf of: {}", self.on_behalf_of));
        }
        Some(line)
    }
}

/// `--entity E` or `--entity E/ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityFilter {
    pub entity: String,
    pub id: Option<String>,
}

impl EntityFilter {
    /// `mismatch`, `mismatch/12`, `visit/U01/V0` (the id may hold a `/`).
    pub fn parse(text: &str) -> EntityFilter {
        match text.split_once('/') {
            Some((entity, id)) => EntityFilter { entity: entity.trim().to_owned(), id: Some(id.trim().to_owned()) },
            None => EntityFilter { entity: text.trim().to_owned(), id: None },
        }
    }

    /// A decision is about its mismatch, a lock about what it locks, a
    /// result or mismatch about its participant and visit too.
    fn matches(&self, row: &AuditEntry, detail: &Value) -> bool {
        let Some(id) = &self.id else {
            return row.entity == self.entity
                || (self.entity == "mismatch" && matches!(row.entity.as_str(), "resolution" | "resolution_effect"));
        };
        let mut subjects: Vec<(String, Option<String>)> = vec![(row.entity.clone(), row.entity_id.clone())];
        if row.entity == "resolution" {
            subjects.push(("mismatch".to_owned(), text(detail, "mismatch_id")));
        }
        if row.entity == "lock" {
            subjects.push((text(detail, "scope").unwrap_or_default(), row.entity_id.clone()));
        }
        if let (Some(p), Some(v)) = (text(detail, "participant"), text(detail, "visit")) {
            subjects.push(("visit".to_owned(), Some(format!("{p}/{v}"))));
            subjects.push(("participant".to_owned(), Some(p)));
        }
        subjects.iter().any(|(e, i)| *e == self.entity && i.as_deref() == Some(id.as_str()))
    }
}

/// What the report was asked for, said under its title.
#[derive(Debug, Clone, Default)]
pub struct AuditOptions<'a> {
    pub study: &'a str,
    pub generated_at: jiff::Timestamp,
    pub since: Option<&'a str>,
    pub account: Option<&'a str>,
    pub entity: Option<&'a str>,
}

/// A string, number or boolean field of a JSON object as text; `None` when
/// absent or null.
fn text(detail: &Value, key: &str) -> Option<String> {
    match detail.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.as_f64().filter(|_| !n.is_i64()).map_or_else(|| n.to_string(), format_value)),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `U01/V0/30 c_peptide` (the parts the detail has).
fn slot_words(d: &Value) -> String {
    let place = ["participant", "visit", "minute"].iter().filter_map(|k| text(d, k)).collect::<Vec<_>>().join("/");
    match text(d, "analyte") {
        Some(a) if !place.is_empty() => format!("{place} {a}"),
        Some(a) => a,
        None => place,
    }
}

/// How a study-data record reads: a sample as `U01/V0/30`, a visit by its
/// meal start, a participant by its site.
fn record_fields(entity: &str, v: &Value) -> Vec<(&'static str, String)> {
    let field = |k: &str| text(v, k).unwrap_or_else(|| "none".to_owned());
    match entity {
        "sample" => vec![("", ["participant", "visit", "minute"].map(field).join("/"))],
        "visit" => vec![("meal start", field("meal_start"))],
        "participant" => vec![("site", field("site"))],
        _ => Vec::new(),
    }
}

/// `participant U05: site Lund → Uppsala`, `sample S-30 added: U01/V0/30`.
fn import_words(entity: &str, id: &str, d: &Value) -> String {
    let new = record_fields(entity, d.get("new").unwrap_or(&Value::Null));
    let Some(old) = d.get("old").filter(|o| !o.is_null()) else {
        let fields = new.iter().filter(|(_, v)| v != "none");
        let fields: Vec<String> =
            fields.map(|(k, v)| if k.is_empty() { v.clone() } else { format!("{k} {v}") }).collect();
        return match fields.is_empty() {
            true => format!("{entity} {id} added"),
            false => format!("{entity} {id} added: {}", fields.join(", ")),
        };
    };
    let old = record_fields(entity, old);
    let changes: Vec<String> = old
        .iter()
        .zip(&new)
        .filter(|(o, n)| o.1 != n.1)
        .map(|((k, o), (_, n))| if k.is_empty() { format!("{o} → {n}") } else { format!("{k} {o} → {n}") })
        .collect();
    format!("{entity} {id}: {}", if changes.is_empty() { "changed".to_owned() } else { changes.join(", ") })
}

/// One audit row in plain words. Unknown rows say their action and entity.
pub fn change_words(row: &AuditEntry, d: &Value) -> String {
    let id = row.entity_id.clone().unwrap_or_default();
    let f = |k: &str| text(d, k);
    let or = |v: Option<String>, default: &str| v.unwrap_or_else(|| default.to_owned());
    let value = || {
        let mut v = [f("comparator"), f("value"), f("unit")].into_iter().flatten().collect::<Vec<_>>().join(" ");
        if v.starts_with(['<', '>']) {
            v = v.replacen(' ', "", 1);
        }
        v
    };
    match (row.action.as_str(), row.entity.as_str()) {
        ("sign", _) => format!("signed: {}", or(f("meaning"), "a change")),
        ("import", entity) => import_words(entity, &id, d),
        ("resolve", _) => {
            let mismatch = or(f("mismatch_id"), "?");
            let mut words = match f("action").as_deref() {
                Some("auto") => format!("mismatch {mismatch}: closed by labfeed"),
                Some("not_done") => format!("mismatch {mismatch}: marked not done"),
                Some(action) => format!("mismatch {mismatch}: resolved {action}"),
                None => format!("mismatch {mismatch}: resolved"),
            };
            if let (Some(p), Some(v), Some(n)) = (f("participant"), f("visit"), f("minute")) {
                words.push_str(&format!(", assigned to {p}/{v}/{n}"));
            }
            words
        }
        ("reopen", _) => format!("mismatch {}: reopened", or(f("mismatch_id"), "?")),
        ("effect", _) => {
            let ids = |k: &str| {
                d.get(k).and_then(Value::as_array).map(|a| a.iter().map(|i| i.to_string()).collect::<Vec<_>>())
            };
            let mut parts = Vec::new();
            if let Some(r) = ids("results").filter(|r| !r.is_empty()) {
                parts.push(format!("wrote results {}", r.join(", ")));
            }
            if let Some(m) = ids("raised").filter(|m| !m.is_empty()) {
                parts.push(format!("raised mismatches {}", m.join(", ")));
            }
            format!("decision {id}: {}", parts.join("; "))
        }
        (action @ ("lock" | "unlock"), _) => match f("scope") {
            Some(scope) if scope == "study" => format!("{action} the whole study"),
            None if id == "study" => format!("{action} the whole study"),
            Some(scope) => format!("{action} {scope} {id}"),
            None => format!("{action} {id}"),
        },
        ("user add", _) => {
            let new = d.get("new").unwrap_or(&Value::Null);
            let who = signer_words(&id, &or(text(new, "full_name"), ""), &or(text(new, "role"), ""));
            format!("account {} added{}", id, who.strip_prefix(id.as_str()).map(|s| s.to_owned()).unwrap_or_default())
        }
        ("user passwd", _) => format!("account {id}: password changed"),
        ("user disable", _) => format!("account {id} disabled"),
        ("login failed", _) => {
            let mut words = format!("login failed for {id}: {}", or(f("why"), "refused"));
            if let Some(n) = f("failed_in_a_row") {
                words.push_str(&format!(" ({n} in a row)"));
            }
            if let Some(until) = f("refused_until") {
                words.push_str(&format!(", refused until {until}"));
            }
            words
        }
        ("login", _) => format!("login as {id} ({} failed logins cleared)", or(f("failed_logins_cleared"), "?")),
        ("accept", _) => format!("result {id}: {} = {} (version {})", slot_words(d), value(), or(f("version"), "1")),
        ("supersede", _) => format!(
            "result {id}: {} = {} (version {}, replaces result {})",
            slot_words(d),
            value(),
            or(f("version"), "?"),
            or(f("supersedes"), "?")
        ),
        ("withdraw", _) => {
            format!("result {id}: {} {} withdrawn (version {})", slot_words(d), value(), or(f("version"), "?"))
        }
        ("mismatch", _) => format!("mismatch {id} raised: {} {}", or(f("code"), "?"), slot_words(d)).trim().to_owned(),
        ("allocate", _) => format!("mismatch {id}: slot id for {}", slot_words(d)),
        ("store", _) => {
            format!(
                "content {id} stored ({} bytes{})",
                or(f("size"), "?"),
                f("format").map(|x| format!(", {x}")).unwrap_or_default()
            )
        }
        ("receive", _) => format!("receipt {id} of content {} ({})", or(f("raw_id"), "?"), or(f("source"), "?")),
        ("process", _) => format!(
            "receipt {id} processed: {}, {} accepted, {} duplicates, {} mismatches",
            or(f("outcome"), "?"),
            or(f("accepted"), "0"),
            or(f("duplicates"), "0"),
            or(f("mismatches"), "0")
        ),
        ("parse", _) => format!("message {id} of content {}", or(f("raw_id"), "?")),
        ("observe", _) => format!("observation {id}: sample {} {}", or(f("sample_id"), "?"), or(f("test_code"), "?")),
        ("reread", _) => format!(
            "observation {}: collection time read with {}",
            or(f("observation_id"), "?"),
            or(f("collected_offset"), "?")
        ),
        ("commit", _) => {
            let tables: Vec<String> = commit_counts(d).into_iter().map(|(a, n)| counted_words(a, n)).collect();
            format!("vouches for the rows written: {}", tables.join(", "))
        }
        (action, entity) => format!("{action} {entity} {id}").trim().to_owned(),
    }
}

/// The rows a `commit` row vouches for, counted under the action words of
/// [`counted_words`] (`raw` rows are contents stored, and so on).
fn commit_counts(d: &Value) -> Vec<(&'static str, usize)> {
    let Some(tables) = d.get("rows").and_then(Value::as_object) else { return Vec::new() };
    let mut counts = Vec::new();
    for (table, ranges) in tables {
        let n: i64 = ranges
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| Some(r.get(1)?.as_i64()? - r.get(0)?.as_i64()? + 1))
            .sum();
        let action = match table.as_str() {
            "raw" => "store",
            "receipt" => "receive",
            "processing" => "process",
            "message" => "parse",
            "observation" => "observe",
            "observation_offset" => "reread",
            "result" => "accept",
            "mismatch" => "mismatch",
            "resolution" => "resolve",
            "resolution_effect" => "effect",
            "data_lock" => "lock",
            "participant" => "participant",
            "visit" => "visit",
            "sample" => "sample",
            "account" => "account",
            _ => "row",
        };
        counts.push((action, usize::try_from(n).unwrap_or(0)));
    }
    counts
}

/// Rows a person's transaction lists one by one; the rest (machine rows)
/// are counted. labfeed's own transactions list only logins and decisions.
fn listed(action: &str, system: bool) -> bool {
    let always = matches!(
        action,
        "import"
            | "resolve"
            | "reopen"
            | "lock"
            | "unlock"
            | "user add"
            | "user passwd"
            | "user disable"
            | "login failed"
            | "login"
    );
    always || (!system && matches!(action, "accept" | "supersede" | "withdraw" | "mismatch"))
}

/// How counted rows are summed up: `4 results`.
fn counted_words(action: &str, n: usize) -> String {
    match action {
        "store" => plural(n, "content stored", "contents stored"),
        "receive" => plural(n, "receipt", "receipts"),
        "process" => plural(n, "receipt processed", "receipts processed"),
        "parse" => plural(n, "message", "messages"),
        "observe" => plural(n, "observation", "observations"),
        "reread" => plural(n, "time re-read", "times re-read"),
        "accept" => plural(n, "result", "results"),
        "supersede" => plural(n, "new result version", "new result versions"),
        "withdraw" => plural(n, "withdrawn result", "withdrawn results"),
        "mismatch" => plural(n, "mismatch", "mismatches"),
        "allocate" => plural(n, "missing-result slot id", "missing-result slot ids"),
        "effect" => plural(n, "decision effect", "decision effects"),
        "resolve" => plural(n, "decision", "decisions"),
        "participant" | "visit" | "sample" | "account" => {
            format!("{n} {action} {}", if n == 1 { "row" } else { "rows" })
        }
        other => format!("{n} × {other}"),
    }
}

/// The meaning of a row labfeed wrote by itself.
fn system_meaning(action: &str) -> &'static str {
    match action {
        "login failed" => "login failed",
        "login" => "login",
        _ => "ingest",
    }
}

/// Walks the rows in order and knows which transaction each belongs to.
struct Transactions {
    key: Option<(String, String)>,
    signer: Signer,
}

impl Transactions {
    fn new() -> Transactions {
        Transactions { key: None, signer: Signer::default() }
    }

    /// Whether `row` starts a new transaction (then [`Transactions::signer`] is its).
    fn step(&mut self, row: &AuditEntry, detail: &Value) -> bool {
        let key = (row.at.clone(), row.actor.clone());
        if row.action == "sign" {
            self.signer = Signer::signed(row, detail);
        } else if self.key.as_ref() != Some(&key) {
            self.signer = Signer::unsigned(&row.actor);
        } else {
            return false;
        }
        self.key = Some(key);
        true
    }
}

fn detail_of(row: &AuditEntry) -> Value {
    serde_json::from_str(&row.detail).unwrap_or(Value::Null)
}

/// Every audit row the entity filter lets through as the 13 fields of
/// [`AUDIT_COLUMNS`], each with its transaction's signature; a `sign` row
/// is given when a row it signs is. The CSV writes these; the console shows
/// a page of them.
pub struct AuditRecords {
    transactions: Transactions,
    entity: Option<EntityFilter>,
    pending_sign: Option<AuditEntry>,
}

impl AuditRecords {
    pub fn new(entity: Option<EntityFilter>) -> AuditRecords {
        AuditRecords { transactions: Transactions::new(), entity, pending_sign: None }
    }

    /// Learn who signed from a row before the first one to give (a page
    /// that starts inside a transaction); nothing is given for it.
    pub fn prime(&mut self, row: &AuditEntry) {
        self.transactions.step(row, &detail_of(row));
    }

    /// The records `row` gives (none, one, or its pending `sign` row and it).
    pub fn push<E>(
        &mut self,
        row: AuditEntry,
        mut give: impl FnMut(i64, [String; 13]) -> Result<(), E>,
    ) -> Result<(), E> {
        let detail = detail_of(&row);
        self.transactions.step(&row, &detail);
        if row.action == "sign" {
            self.pending_sign = Some(row);
            return Ok(());
        }
        if self.entity.as_ref().is_some_and(|e| !e.matches(&row, &detail)) {
            return Ok(());
        }
        if let Some(sign) = self.pending_sign.take() {
            let detail = detail_of(&sign);
            give(sign.seq, self.record(&sign, &detail))?;
        }
        give(row.seq, self.record(&row, &detail))
    }

    fn record(&self, row: &AuditEntry, detail: &Value) -> [String; 13] {
        let s = &self.transactions.signer;
        let meaning = if s.is_system() { system_meaning(&row.action) } else { s.meaning.as_str() };
        [
            row.seq.to_string(),
            row.at.clone(),
            row.actor.clone(),
            s.full_name.clone(),
            s.role.clone(),
            s.os_account.clone(),
            meaning.to_owned(),
            s.reason.clone(),
            s.on_behalf_of.clone(),
            row.action.clone(),
            row.entity.clone(),
            row.entity_id.clone().unwrap_or_default(),
            change_words(row, detail),
        ]
    }
}

/// The CSV form: one line per audit row, every row with its transaction's
/// signature. A `sign` row is written when a row it signs is.
pub struct AuditCsv<W: Write> {
    out: csv::Writer<W>,
    records: AuditRecords,
    pub rows: usize,
}

impl<W: Write> AuditCsv<W> {
    pub fn new(out: W, entity: Option<EntityFilter>) -> csv::Result<AuditCsv<W>> {
        let mut out = csv::Writer::from_writer(out);
        out.write_record(AUDIT_COLUMNS)?;
        Ok(AuditCsv { out, records: AuditRecords::new(entity), rows: 0 })
    }

    pub fn push(&mut self, row: AuditEntry) -> csv::Result<()> {
        let (out, rows) = (&mut self.out, &mut self.rows);
        self.records.push(row, |_, record| {
            out.write_record(&record)?;
            *rows += 1;
            Ok(())
        })
    }

    pub fn finish(mut self) -> csv::Result<usize> {
        self.out.flush()?;
        Ok(self.rows)
    }
}

/// One transaction of the text form, as far as it is shown.
#[derive(Default)]
struct Block {
    at: String,
    first_seq: i64,
    last_seq: i64,
    signer: Signer,
    lines: Vec<String>,
    /// Counted rows by action, in order of first appearance.
    counts: Vec<(String, usize)>,
    /// Rows shown or counted, its `sign` row included.
    rows: usize,
}

impl Block {
    fn is_shown(&self) -> bool {
        !self.lines.is_empty() || !self.counts.is_empty()
    }

    fn write(&self, out: &mut dyn Write) -> io::Result<()> {
        let seqs = match self.first_seq == self.last_seq {
            true => format!("seq {}", self.first_seq),
            false => format!("seq {}–{}", self.first_seq, self.last_seq),
        };
        writeln!(out)?;
        writeln!(out, "{}  {}  ({seqs})", self.at, self.signer.who())?;
        if let Some(line) = self.signer.signature_line() {
            writeln!(out, "  {line}")?;
        }
        for line in &self.lines {
            writeln!(out, "  {line}")?;
        }
        if !self.counts.is_empty() {
            let counts = self.counts.iter().map(|(a, n)| counted_words(a, *n)).collect::<Vec<_>>().join(", ");
            let ingest = self.counts.iter().any(|(a, _)| matches!(a.as_str(), "store" | "receive" | "parse"));
            let label = match (self.signer.is_system(), ingest) {
                (true, true) => "ingest: ",
                (true, false) => "",
                (false, _) => "also: ",
            };
            writeln!(out, "  {label}{counts}")?;
        }
        Ok(())
    }
}

/// The text form: one block per transaction, who and why at its head, the
/// people's changes one per line, machine rows counted.
pub struct AuditText<'o> {
    out: &'o mut dyn Write,
    transactions: Transactions,
    entity: Option<EntityFilter>,
    block: Block,
    pub blocks: usize,
    rows: usize,
}

impl<'o> AuditText<'o> {
    pub fn new(out: &'o mut dyn Write, options: &AuditOptions<'_>, entity: Option<EntityFilter>) -> io::Result<Self> {
        writeln!(
            out,
            "Audit trail of study {}, as of {} (all times UTC)",
            options.study,
            crate::report::format::utc_time(options.generated_at)
        )?;
        let filters: Vec<String> = [
            options.since.map(|s| format!("since {s}")),
            options.account.map(|a| format!("account {a}")),
            options.entity.map(|e| format!("entity {e}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !filters.is_empty() {
            writeln!(out, "Only: {}", filters.join(", "))?;
        }
        Ok(AuditText { out, transactions: Transactions::new(), entity, block: Block::default(), blocks: 0, rows: 0 })
    }

    pub fn push(&mut self, row: AuditEntry) -> io::Result<()> {
        let detail = detail_of(&row);
        if self.transactions.step(&row, &detail) {
            self.flush()?;
            self.block.at = row.at.clone();
            self.block.signer = self.transactions.signer.clone();
            self.block.first_seq = row.seq;
        }
        self.block.last_seq = row.seq;
        if row.action == "sign" {
            self.block.rows += 1;
            return Ok(());
        }
        if self.entity.as_ref().is_some_and(|e| !e.matches(&row, &detail)) {
            return Ok(());
        }
        self.block.rows += 1;
        if row.action == "commit" {
            // A person's changes are listed one by one; labfeed's are counted from what its commit vouches for.
            if self.block.signer.is_system() {
                for (action, n) in commit_counts(&detail) {
                    match self.block.counts.iter_mut().find(|(a, _)| a == action) {
                        Some((_, m)) => *m += n,
                        None => self.block.counts.push((action.to_owned(), n)),
                    }
                }
            }
            return Ok(());
        }
        if listed(&row.action, self.block.signer.is_system()) {
            self.block.lines.push(change_words(&row, &detail));
        } else {
            match self.block.counts.iter_mut().find(|(a, _)| *a == row.action) {
                Some((_, n)) => *n += 1,
                None => self.block.counts.push((row.action.clone(), 1)),
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        let block = std::mem::take(&mut self.block);
        if block.is_shown() {
            block.write(self.out)?;
            self.blocks += 1;
            self.rows += block.rows;
        }
        Ok(())
    }

    /// Write the last transaction and the count; how many transactions were shown.
    pub fn finish(mut self) -> io::Result<usize> {
        self.flush()?;
        writeln!(self.out)?;
        writeln!(
            self.out,
            "{}, {}.",
            plural(self.blocks, "transaction", "transactions"),
            plural(self.rows, "audit row", "audit rows")
        )?;
        Ok(self.blocks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(action: &str, entity: &str, id: &str, detail: &str) -> AuditEntry {
        AuditEntry {
            seq: 1,
            at: "2026-03-02T07:45:00Z".to_owned(),
            actor: "dm.anna".to_owned(),
            action: action.to_owned(),
            entity: entity.to_owned(),
            entity_id: Some(id.to_owned()),
            detail: detail.to_owned(),
            prev_hash: String::new(),
            hash: String::new(),
            keyed: false,
        }
    }

    fn words(r: &AuditEntry) -> String {
        change_words(r, &detail_of(r))
    }

    #[test]
    fn changes_read_as_plain_words() {
        let sample = r#"{"change":"changed","old":{"sample_id":"S-30","participant":"U01","visit":"V0","minute":30},
                        "new":{"sample_id":"S-30","participant":"U02","visit":"V0","minute":30}}"#;
        assert_eq!(words(&row("import", "sample", "S-30", sample)), "sample S-30: U01/V0/30 → U02/V0/30");
        let site = r#"{"change":"changed","old":{"code":"U05","site":"Lund"},"new":{"code":"U05","site":"Uppsala"}}"#;
        assert_eq!(words(&row("import", "participant", "U05", site)), "participant U05: site Lund → Uppsala");
        let resolve = r#"{"mismatch_id":12,"action":"accept","reason":"ok"}"#;
        assert_eq!(words(&row("resolve", "resolution", "3", resolve)), "mismatch 12: resolved accept");
        let lock = r#"{"scope":"visit","locked":true,"reason":"clean"}"#;
        assert_eq!(words(&row("lock", "lock", "U01/V0", lock)), "lock visit U01/V0");
        let add = r#"{"new":{"name":"lab.lars","full_name":"","role":"lab","password_hash_sha256":"abc123"}}"#;
        assert_eq!(words(&row("user add", "account", "lab.lars", add)), "account lab.lars added (lab)");
        let failed = r#"{"why":"wrong password","failed_in_a_row":5,"refused_until":null}"#;
        assert_eq!(
            words(&row("login failed", "account", "dm.anna", failed)),
            "login failed for dm.anna: wrong password (5 in a row)"
        );
        let accept = r#"{"participant":"U01","visit":"V0","minute":30,"analyte":"c_peptide","value":0.30000000000000004,"unit":"nmol/L","comparator":null,"version":1}"#;
        assert_eq!(
            words(&row("accept", "result", "7", accept)),
            "result 7: U01/V0/30 c_peptide = 0.3 nmol/L (version 1)"
        );
    }

    #[test]
    fn an_entity_filter_takes_a_decision_for_its_mismatch_and_a_lock_for_its_visit() {
        let resolve = row("resolve", "resolution", "3", r#"{"mismatch_id":12}"#);
        let d = detail_of(&resolve);
        assert!(EntityFilter::parse("mismatch").matches(&resolve, &d));
        assert!(EntityFilter::parse("mismatch/12").matches(&resolve, &d));
        assert!(!EntityFilter::parse("mismatch/13").matches(&resolve, &d));
        let lock = row("lock", "lock", "U01/V0", r#"{"scope":"visit"}"#);
        let d = detail_of(&lock);
        assert!(EntityFilter::parse("visit/U01/V0").matches(&lock, &d));
        assert!(!EntityFilter::parse("visit").matches(&lock, &d));
    }
}
