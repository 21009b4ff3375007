//! The audit trail, filtered by time, account and entity, a page at a time:
//! the rows of `labfeed report audit --format csv`, oldest first, each with
//! the signature of its transaction. A page is read with a LIMIT and the
//! next one starts at a `seq` (a keyset): a trail of millions of rows is
//! never read whole.

use axum::Extension;
use axum::extract::{Query, State};
use maud::{Markup, html};
use serde::Deserialize;

use crate::report::audit::{AuditRecords, EntityFilter};
use crate::store::AuditFilter;
use crate::web::pages::{PageError, layout};
use crate::web::session::SignedIn;
use crate::web::{Access, Shared};

/// Rows per page.
pub const PAGE: usize = 100;
/// Rows read per query while a page fills (the entity filter is applied
/// after reading, so a page may take several).
const BATCH: i64 = 500;

#[derive(Debug, Default, Deserialize)]
pub struct Params {
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    account: String,
    #[serde(default)]
    entity: String,
    /// The first `seq` of the page.
    from: Option<i64>,
}

/// A date or time typed in the filter, as UTC text for the audit log's
/// `at`: a date is its midnight in the study's zone; a time without an
/// offset is the study's local time. `end` (the exclusive upper bound of
/// "until") moves a date to the next midnight and a time one second on:
/// until includes the day or second it names.
fn bound(text: &str, zone: &str, end: bool) -> Result<Option<String>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let tz = jiff::tz::TimeZone::get(zone).map_err(|e| format!("the study's time zone {zone}: {e}"))?;
    let mut through = end;
    let time = if let Ok(t) = text.parse::<jiff::Timestamp>() {
        t
    } else if let Ok(d) = text.parse::<jiff::civil::Date>()
        && !text.contains(['T', 't', ' '])
    {
        // Before the DateTime reading, which takes a bare date as its midnight.
        through = false;
        let d = if end { d.tomorrow().map_err(|e| format!("{text}: {e}"))? } else { d };
        tz.to_timestamp(d.at(0, 0, 0, 0)).map_err(|e| format!("{text}: {e}"))?
    } else if let Ok(dt) = text.parse::<jiff::civil::DateTime>() {
        tz.to_timestamp(dt).map_err(|e| format!("{text}: {e}"))?
    } else {
        return Err(format!(
            "{text:?} is not a date (2026-03-02) or a time (2026-03-02T08:00, the study's local time, or with an offset)"
        ));
    };
    // Whole seconds, rounded up, as the log's text is; until a time includes that second.
    let second = time.as_second() + i64::from(time.subsec_nanosecond() > 0) + i64::from(through);
    let time = jiff::Timestamp::from_second(second).map_err(|e| e.to_string())?;
    Ok(Some(crate::report::utc_time(time)))
}

/// One page of records and the `seq` the next page starts at, if any.
struct Page {
    rows: Vec<[String; 13]>,
    next: Option<i64>,
}

fn read_page(
    store: &crate::store::Store,
    filter: &AuditFilter,
    entity: Option<EntityFilter>,
    from: i64,
) -> anyhow::Result<Page> {
    Ok(store.read(|r| {
        let mut records = AuditRecords::new(entity);
        // A page that starts inside a transaction learns who signed it.
        for row in r.audit_transaction_before(from)? {
            records.prime(&row);
        }
        let mut rows: Vec<[String; 13]> = Vec::new();
        let mut next = None;
        let mut at = from;
        'fill: loop {
            let batch = r.audit_batch(filter, at, BATCH)?;
            let full = batch.len() as i64 == BATCH;
            for row in batch {
                at = row.seq + 1;
                let mut given: Vec<(i64, [String; 13])> = Vec::new();
                records.push(row, |seq, record| -> Result<(), crate::store::StoreError> {
                    given.push((seq, record));
                    Ok(())
                })?;
                for (seq, record) in given {
                    if rows.len() == PAGE {
                        next = Some(seq);
                        break 'fill;
                    }
                    rows.push(record);
                }
            }
            if !full {
                break;
            }
        }
        Ok(Page { rows, next })
    })?)
}

/// The page's query string with another `from`.
fn link(p: &Params, from: Option<i64>) -> String {
    let mut pairs = url_pairs(p);
    if let Some(from) = from {
        pairs.push(("from", from.to_string()));
    }
    let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={}", query_value(v))).collect();
    format!("/audit?{}", query.join("&"))
}

fn url_pairs(p: &Params) -> Vec<(&'static str, String)> {
    [("since", &p.since), ("until", &p.until), ("account", &p.account), ("entity", &p.entity)]
        .into_iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| (k, v.trim().to_owned()))
        .collect()
}

fn query_value(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(char::from(b)),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

pub async fn page(
    State(console): State<Shared>,
    Extension(who): Extension<SignedIn>,
    Query(params): Query<Params>,
) -> Result<Markup, PageError> {
    let config = &console.config;
    let zone = config.study.timezone.clone();
    let since = bound(&params.since, &zone, false).map_err(PageError::BadRequest)?;
    let before = bound(&params.until, &zone, true).map_err(PageError::BadRequest)?;
    let account = Some(params.account.trim().to_owned()).filter(|a| !a.is_empty());
    let entity = Some(params.entity.trim()).filter(|e| !e.is_empty()).map(EntityFilter::parse);
    let filter = AuditFilter { since, actor: account, before };
    let from = params.from.unwrap_or(1);
    let page = console.with_store(Access::Read, move |store, _| read_page(store, &filter, entity, from)).await?;
    let local = |at: &str| match at.parse::<jiff::Timestamp>() {
        Ok(t) => super::local(t, &zone),
        Err(_) => at.to_owned(),
    };
    let body = html! {
        form.filters method="get" action="/audit" role="search" aria-label="Filter the audit trail" {
            div {
                label for="since" { "Since (" (zone) " time)" }
                input id="since" name="since" value=(params.since) placeholder="2026-03-02 or 2026-03-02T08:00";
            }
            div {
                label for="until" { "Until (" (zone) " time; a date includes that day)" }
                input id="until" name="until" value=(params.until) placeholder="2026-03-31";
            }
            div {
                label for="account" { "Account (labfeed: its own rows)" }
                input id="account" name="account" value=(params.account);
            }
            div {
                label for="entity" { "Entity, or entity/ID" }
                input id="entity" name="entity" value=(params.entity) placeholder="mismatch/12, visit/U01/V0, lock";
            }
            p { button type="submit" { "Show" } }
        }
        p.muted {
            "Oldest first, " (PAGE) " rows a page; each row with the signature of its transaction. "
            "The same rows as " code { "labfeed report audit --format csv" } "."
        }
        table.audit {
            thead {
                tr {
                    th scope="col" { "seq" }
                    th scope="col" { "When" }
                    th scope="col" { "Who" }
                    th scope="col" { "Meaning" }
                    th scope="col" { "Reason" }
                    th scope="col" { "Action" }
                    th scope="col" { "Entity" }
                    th scope="col" { "Change" }
                }
            }
            tbody {
                @for r in &page.rows {
                    tr {
                        td.num { (r[0]) }
                        td { time datetime=(r[1]) { (local(&r[1])) } }
                        td {
                            (r[2])
                            @if !r[3].is_empty() && r[3] != r[2] { " (" (r[3]) @if !r[4].is_empty() { ", " (r[4]) } ")" }
                            @if !r[5].is_empty() { br; span.muted { "OS account " (r[5]) } }
                        }
                        td { (r[6]) @if !r[8].is_empty() { br; span.muted { "on behalf of " (r[8]) } } }
                        td { (r[7]) }
                        td { (r[9]) }
                        td { (r[10]) @if !r[11].is_empty() { " " (r[11]) } }
                        td { (r[12]) }
                    }
                }
            }
        }
        @if page.rows.is_empty() { p { "No audit rows match." } }
        nav.pages aria-label="Audit trail pages" {
            @if from > 1 { a href=(link(&params, None)) { "First page" } " " }
            @if let Some(next) = page.next { a href=(link(&params, Some(next))) rel="next" { "Next " (PAGE) " rows" } }
        }
    };
    Ok(layout(&who, &config.study.id, &config.study.timezone, "Audit trail", "/audit", body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_times_are_the_study_zone_unless_they_say_otherwise() {
        let zone = "Europe/Stockholm";
        assert_eq!(bound("2026-03-02", zone, false).unwrap().unwrap(), "2026-03-01T23:00:00Z");
        assert_eq!(bound("2026-03-02", zone, true).unwrap().unwrap(), "2026-03-02T23:00:00Z");
        assert_eq!(bound("2026-03-02T08:00", zone, false).unwrap().unwrap(), "2026-03-02T07:00:00Z");
        assert_eq!(bound("2026-03-02T08:00:00Z", zone, false).unwrap().unwrap(), "2026-03-02T08:00:00Z");
        assert_eq!(bound("2026-03-02T08:00:00Z", zone, true).unwrap().unwrap(), "2026-03-02T08:00:01Z");
        assert_eq!(bound(" ", zone, false).unwrap(), None);
        assert!(bound("yesterday", zone, false).is_err());
    }
}
