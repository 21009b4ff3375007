//! The mismatch queue, one mismatch, and a data manager's decisions on it
//! (SPEC §6, §8, §11).
//!
//! The queue is what `labfeed report mismatches` lists (stored mismatches and
//! the computed MISSING_RESULT rows, read by [`Review`]), filtered, sorted and
//! paged here. A decision is the same call `labfeed resolve` makes
//! ([`crate::ingest::resolve::resolve`]), signed by the signed-in account
//! after its password is checked again ([`authenticate`], which audits a
//! refusal and counts it towards the lockout).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use anyhow::Context;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use maud::{Markup, PreEscaped, html};
use serde::Deserialize;

use super::{PageError, check_csrf, csrf_field, layout, require};
use crate::ingest::resolve::{Decision, ResolveError, resolve};
use crate::login::{LoginError, authenticate};
use crate::report::html::{Marks, flagged_slots, visit_curves_figure};
use crate::report::mismatches::{History, ReviewRow, decision_label, history_entry, lock_words};
use crate::report::now::Now;
use crate::report::review::Review;
use crate::report::wording::{Signers, zoned_time};
use crate::store::vouch::ranges_of;
use crate::store::{MessageSpan, MismatchId, RawRow, Reader, Role, Scope, Store, StoreError};
use crate::study::config::Config;
use crate::study::missing::{meal_started, missing_results};
use crate::web::session::SignedIn;
use crate::web::{Access, Shared};

/// Rows on one page of the queue.
pub const PER_PAGE: usize = 50;

/// At most this much of a stored message is shown (a file may be large).
const RAW_SHOWN: usize = 64 * 1024;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/mismatches", get(list))
        .route("/mismatches/{id}", get(detail))
        .route("/mismatches/{id}/decide", post(decide))
}

/// The whole study's open queue, kept between requests: computing it reads
/// every slot of the study (for the MISSING_RESULT rows), hundreds of ms
/// with 2,000 participants, while a page shows 50 rows. It is brought up to
/// date by reading again only the participants whose rows may differ: those
/// the `commit` rows since name rows of (every writing transaction ends
/// with one), and once it is a minute old, those with a meal start passed
/// meanwhile (only then do a visit's results become missing). It is
/// computed whole when that cannot be said or they are many.
#[derive(Default)]
pub struct QueueCache(Mutex<Option<Arc<Queue>>>);

/// How long a queue is shown for its time while the data stay the same.
const QUEUE_FOR: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);

/// With more `commit` rows than this since the kept queue, or more
/// participants touched, the queue is computed whole (each participant is
/// a few small reads; the whole study is a few hundred ms).
const SPLICE_COMMITS: usize = 200;
const SPLICE_PARTICIPANTS: usize = 100;

/// Tables whose rows change no open queue row, so a `commit` row naming
/// them touches no participant's rows; any table neither here nor known to
/// [`crate::store::Reader::participants_of_rows`] has the queue computed whole.
const QUEUE_UNRELATED: &[&str] =
    &["raw", "receipt", "processing", "message", "observation", "data_lock", "participant", "sample", "account"];

struct Queue {
    /// The audit chain's last row when it was read.
    stamp: i64,
    /// The time the MISSING_RESULT rows are computed for.
    now: jiff::Timestamp,
    /// In report order: a participant's rows are together (unmatched first).
    lines: Vec<Line>,
}

impl QueueCache {
    /// Compute the queue now, so that the first person to open it does not
    /// wait for the whole study to be read (`serve` calls it at start).
    pub fn warm(&self, store: &Store, config: &Config) {
        if let Err(error) = self.get(store, config) {
            tracing::warn!(error = format!("{error:#}"), "the mismatch queue could not be computed at start");
        }
    }

    /// The queue as of the store's current data.
    fn get(&self, store: &Store, config: &Config) -> anyhow::Result<Arc<Queue>> {
        self.get_at(store, config, jiff::Timestamp::now())
    }

    /// The queue as of the store's current data and about `now`.
    fn get_at(&self, store: &Store, config: &Config, now: jiff::Timestamp) -> anyhow::Result<Arc<Queue>> {
        let kept = self.0.lock().ok().and_then(|k| k.clone());
        let queue = store
            .read(|r| {
                // Read before the rows: a change in between is read again next time.
                let stamp = r.last_audit_seq()?;
                if let Some(kept) = kept {
                    let age = now.duration_since(kept.now);
                    if kept.stamp == stamp && age >= jiff::SignedDuration::ZERO && age < QUEUE_FOR {
                        return Ok(kept);
                    }
                    if kept.stamp <= stamp
                        && let Some(touched) = touched_since(r, config, &kept, stamp, now)?
                    {
                        return Ok(Arc::new(kept.splice(r, config, stamp, now, &touched)?));
                    }
                }
                let lines = open_lines(r, config, &Scope::Study, now)?;
                Ok(Arc::new(Queue { stamp, now, lines }))
            })
            .context("reading the mismatches")?;
        if let Ok(mut kept) = self.0.lock() {
            *kept = Some(Arc::clone(&queue));
        }
        Ok(queue)
    }
}

impl Queue {
    /// This queue with the rows of `touched` read again, as of `stamp` and
    /// for `now` (the others are the same for it: see [`touched_since`]).
    fn splice(
        &self,
        r: &Reader<'_>,
        config: &Config,
        stamp: i64,
        now: jiff::Timestamp,
        touched: &BTreeSet<Option<String>>,
    ) -> Result<Queue, StoreError> {
        let mut fresh = BTreeMap::new();
        for participant in touched {
            let scope = match participant {
                Some(code) => Scope::Participant(code.clone()),
                None => Scope::Unmatched,
            };
            fresh.insert(participant.clone(), open_lines(r, config, &scope, now)?);
        }
        let mut fresh = fresh.into_iter().peekable();
        let mut lines = Vec::with_capacity(self.lines.len());
        for line in &self.lines {
            while let Some((_, block)) = fresh.next_if(|(p, _)| *p < line.participant) {
                lines.extend(block);
            }
            if !touched.contains(&line.participant) {
                lines.push(line.clone());
            }
        }
        lines.extend(fresh.flat_map(|(_, block)| block));
        Ok(Queue { stamp, now, lines })
    }
}

/// The participants (`None`: unmatched rows) whose rows in `kept` may
/// differ as of `stamp` and for `now`: those the `commit` rows since name
/// rows of ([`touched_between`]) and, if the time moved, those with a meal
/// start on one side of it and not the other. `None`: compute it whole.
fn touched_since(
    r: &Reader<'_>,
    config: &Config,
    kept: &Queue,
    stamp: i64,
    now: jiff::Timestamp,
) -> Result<Option<BTreeSet<Option<String>>>, StoreError> {
    let Some(mut touched) = touched_between(r, kept.stamp, stamp)? else { return Ok(None) };
    if now != kept.now {
        for visit in r.visits()? {
            if let Some(meal) = visit.meal_start
                && meal_started(config, meal, kept.now) != meal_started(config, meal, now)
            {
                touched.insert(Some(visit.participant));
            }
        }
    }
    Ok((touched.len() <= SPLICE_PARTICIPANTS).then_some(touched))
}

/// The participants (`None`: unmatched rows) whose queue rows the `commit`
/// rows after `after` up to `upto` may have changed; `None` when that
/// cannot be said or they are too many (then the queue is computed whole).
fn touched_between(r: &Reader<'_>, after: i64, upto: i64) -> Result<Option<BTreeSet<Option<String>>>, StoreError> {
    let commits = r.commits_between(after, upto, SPLICE_COMMITS as i64 + 1)?;
    if commits.len() > SPLICE_COMMITS {
        return Ok(None);
    }
    let mut touched = BTreeSet::new();
    for (seq, detail) in commits {
        let Ok(ranges) = ranges_of(seq, &detail) else { return Ok(None) };
        for (table, range) in ranges {
            if QUEUE_UNRELATED.contains(&table.as_str()) {
                continue;
            }
            let Some(participants) = r.participants_of_rows(&table, range.first, range.last)? else {
                return Ok(None);
            };
            touched.extend(participants);
            if touched.len() > SPLICE_PARTICIPANTS {
                return Ok(None);
            }
        }
    }
    Ok(Some(touched))
}

/// The open rows of `scope`, as `report mismatches` lists them, with the
/// missing results as of `now`.
fn open_lines(r: &Reader<'_>, config: &Config, scope: &Scope, now: jiff::Timestamp) -> Result<Vec<Line>, StoreError> {
    let stored = r.mismatch_report_in(false, scope)?;
    let visits = r.visits_in(scope)?;
    let states = r.slot_states_in(scope)?;
    let missing = missing_results(config, &visits, &states, now);
    // A Review of only what the queue shows, for its order of rows.
    let review = Review {
        stored,
        missing,
        not_done: Vec::new(),
        ids: states.ids,
        history: History::new(),
        results: Vec::new(),
        visits,
        now,
        whereabouts: Now::default(),
        locks: Vec::new(),
        withdrawn: states.withdrawn,
    };
    let rows = review.rows(config);
    Ok(rows.iter().filter(|r| r.is_open()).map(|r| Line::of(r, config)).collect())
}

/// One row of the queue, as the page shows and filters it.
#[derive(Debug, Clone, PartialEq)]
struct Line {
    id: Option<MismatchId>,
    code: String,
    participant: Option<String>,
    visit: Option<String>,
    minute: Option<i64>,
    analyte: Option<String>,
    sample: Option<String>,
    instrument: Option<String>,
    /// The value as reported, with its unit.
    reported: String,
    detail: String,
    /// When the row came up: the mismatch raised, or the meal start of a
    /// missing result.
    since: Option<jiff::Timestamp>,
}

impl Line {
    fn of(row: &ReviewRow<'_>, config: &Config) -> Line {
        match row {
            ReviewRow::Stored(r) => {
                let (m, p) = (&r.mismatch, &r.provenance);
                Line {
                    id: Some(m.id),
                    code: m.code.as_str().to_owned(),
                    participant: m.participant.clone(),
                    visit: m.visit.clone(),
                    minute: m.minute,
                    analyte: m.analyte.clone(),
                    sample: p.sample_id.clone(),
                    instrument: p.instrument.clone(),
                    reported: reported(p.reported_value.as_deref(), p.reported_unit.as_deref()),
                    detail: m.detail.clone(),
                    since: Some(m.created_at),
                }
            }
            ReviewRow::Missing(m) => {
                let zone = jiff::tz::TimeZone::get(&config.study.timezone).ok();
                Line {
                    id: m.id,
                    code: row.code().to_owned(),
                    participant: Some(m.participant.clone()),
                    visit: Some(m.visit.clone()),
                    minute: Some(i64::from(m.minute)),
                    analyte: Some(m.analyte.clone()),
                    sample: None,
                    instrument: None,
                    reported: String::new(),
                    detail: m.detail.clone(),
                    since: zone.and_then(|z| m.meal_start.to_instant(&z)),
                }
            }
        }
    }

    /// `U02/V0/30 min`, as far as the row names its slot.
    fn slot_words(&self) -> Option<String> {
        match (&self.participant, &self.visit, self.minute) {
            (Some(p), Some(v), Some(n)) => Some(format!("{p}/{v}/{n} min")),
            (Some(p), Some(v), None) => Some(format!("{p}/{v}")),
            (Some(p), None, _) => Some(p.clone()),
            _ => None,
        }
    }
}

/// `0.55 nmol/L`, `0.55 (no unit)`, or empty.
fn reported(value: Option<&str>, unit: Option<&str>) -> String {
    match (value, unit) {
        (Some(v), Some(u)) => format!("{v} {u}"),
        (Some(v), None) => format!("{v} (no unit)"),
        (None, Some(u)) => format!("no value ({u})"),
        (None, None) => String::new(),
    }
}

/// `3 days`, `5 h`, `under 1 h`.
fn age_words(since: Option<jiff::Timestamp>, now: jiff::Timestamp) -> String {
    let Some(since) = since else { return String::new() };
    let seconds = now.as_second().saturating_sub(since.as_second()).max(0);
    match (seconds / 86_400, seconds / 3_600) {
        (1, _) => "1 day".to_owned(),
        (d, _) if d > 1 => format!("{d} days"),
        (_, 0) => "under 1 h".to_owned(),
        (_, h) => format!("{h} h"),
    }
}

/// The queue's GET parameters. All text, read leniently: a bad value is
/// said on the page, not answered with a bare 400.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    code: Option<String>,
    participant: Option<String>,
    visit: Option<String>,
    instrument: Option<String>,
    /// Only rows at least this many days old.
    older: Option<String>,
    /// `participant` (the report's order), `id` or `age` (oldest first).
    sort: Option<String>,
    page: Option<String>,
    /// The mismatch just decided (after the redirect): its decision is shown.
    decided: Option<String>,
}

/// A filter value, or `None` when empty.
fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl ListQuery {
    /// The query string of these filters and sort, with `page` (for links).
    fn link(&self, page: usize) -> String {
        let mut query = String::new();
        let fields = [
            ("code", &self.code),
            ("participant", &self.participant),
            ("visit", &self.visit),
            ("instrument", &self.instrument),
            ("older", &self.older),
            ("sort", &self.sort),
        ];
        for (name, value) in fields {
            if let Some(v) = given(value) {
                let _ = write!(query, "{name}={}&", percent(v));
            }
        }
        format!("/mismatches?{query}page={page}")
    }
}

/// Percent-encoding for a query value: all but the unreserved characters.
fn percent(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn same(a: Option<&str>, filter: Option<&str>) -> bool {
    match filter {
        None => true,
        Some(f) => a.is_some_and(|a| a.eq_ignore_ascii_case(f)),
    }
}

pub async fn list(
    State(console): State<Shared>,
    Extension(who): Extension<SignedIn>,
    Query(query): Query<ListQuery>,
) -> Result<Markup, PageError> {
    let cache = Arc::clone(&console);
    let decided_id = given(&query.decided).and_then(|d| d.trim_start_matches('#').parse::<i64>().ok()).map(MismatchId);
    let (queue, decision) = console
        .with_store(Access::Read, move |store, config| {
            let queue = cache.queue.get(store, config)?;
            let decision = match decided_id {
                None => None,
                Some(id) => store.read(|r| match r.decisions(id)?.pop() {
                    Some(last) => Ok(Some((last, Signers::new(r.accounts()?)))),
                    None => Ok(None),
                })?,
            };
            Ok((queue, decision))
        })
        .await?;
    let config = &console.config;
    let zone = config.study.timezone.as_str();
    let now = queue.now;
    let all = &queue.lines;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for line in all {
        *counts.entry(line.code.as_str()).or_default() += 1;
    }
    let instruments: BTreeSet<&str> = all.iter().filter_map(|l| l.instrument.as_deref()).collect();
    let mut problems = Vec::new();
    let older = match given(&query.older) {
        None => None,
        Some(text) => match text.parse::<u32>() {
            Ok(days) => Some(i64::from(days) * 86_400),
            Err(_) => {
                problems.push(format!("\"{text}\" is not a number of days: the age filter is not applied"));
                None
            }
        },
    };
    let mut shown: Vec<&Line> = all
        .iter()
        .filter(|l| same(Some(&l.code), given(&query.code)))
        .filter(|l| same(l.participant.as_deref(), given(&query.participant)))
        .filter(|l| same(l.visit.as_deref(), given(&query.visit)))
        .filter(|l| same(l.instrument.as_deref(), given(&query.instrument)))
        .filter(|l| match older {
            None => true,
            Some(seconds) => l.since.is_some_and(|s| now.as_second().saturating_sub(s.as_second()) >= seconds),
        })
        .collect();
    let sort = given(&query.sort).unwrap_or("participant");
    match sort {
        "id" => shown.sort_by_key(|l| (l.id.is_none(), l.id.map(|i| i.0))),
        "age" => shown.sort_by_key(|l| (l.since.is_none(), l.since)),
        "participant" => {}
        other => problems.push(format!("\"{other}\" is not a sort order: listed by participant")),
    }
    let pages = shown.len().div_ceil(PER_PAGE).max(1);
    let page = given(&query.page).and_then(|p| p.parse::<usize>().ok()).unwrap_or(1).clamp(1, pages);
    let on_page = shown.iter().skip((page - 1) * PER_PAGE).take(PER_PAGE);
    let decided = decided_id.map(|id| match &decision {
        Some((last, signers)) => format!("Mismatch #{id} {}", history_entry(last, Some(zone), signers)),
        None => format!("Mismatch #{id}: the decision is recorded."),
    });
    let first = (page - 1) * PER_PAGE + 1;
    let last = (page * PER_PAGE).min(shown.len());
    let body = html! {
        @if let Some(done) = &decided { p.confirm role="status" { (done) } }
        @for problem in &problems { p role="alert" { (problem) } }
        section aria-labelledby="counts" {
            h2 id="counts" { "Open by code" }
            @if all.is_empty() {
                p.ok { "No open mismatches." }
            } @else {
                table.counts {
                    thead { tr { th scope="col" { "Code" } th scope="col" { "Open" } } }
                    tbody {
                        @for (code, n) in &counts {
                            tr {
                                th scope="row" { a href={ "/mismatches?code=" (percent(code)) } { (code) } }
                                td.num { (n) }
                            }
                        }
                    }
                    tfoot { tr { th scope="row" { "All" } td.num { (all.len()) } } }
                }
            }
        }
        section aria-labelledby="filter" {
            h2 id="filter" { "Filter and sort" }
            form.filters method="get" action="/mismatches" {
                div {
                    label for="f-code" { "Code" }
                    select id="f-code" name="code" {
                        option value="" { "any" }
                        @for code in counts.keys() {
                            option value=(code) selected[given(&query.code) == Some(*code)] { (code) }
                        }
                    }
                }
                div {
                    label for="f-participant" { "Participant" }
                    input id="f-participant" name="participant" value=(given(&query.participant).unwrap_or(""));
                }
                div {
                    label for="f-visit" { "Visit" }
                    input id="f-visit" name="visit" value=(given(&query.visit).unwrap_or(""));
                }
                div {
                    label for="f-instrument" { "Instrument" }
                    select id="f-instrument" name="instrument" {
                        option value="" { "any" }
                        @for name in &instruments {
                            option value=(name) selected[given(&query.instrument) == Some(*name)] { (name) }
                        }
                    }
                }
                div {
                    label for="f-older" { "Older than (days)" }
                    input id="f-older" name="older" type="number" min="0" step="1" value=(given(&query.older).unwrap_or(""));
                }
                div {
                    label for="f-sort" { "Sort by" }
                    select id="f-sort" name="sort" {
                        option value="participant" selected[sort == "participant"] { "participant, visit, minute" }
                        option value="id" selected[sort == "id"] { "id" }
                        option value="age" selected[sort == "age"] { "age (oldest first)" }
                    }
                }
                div { button type="submit" { "Show" } " " a href="/mismatches" { "Clear" } }
            }
        }
        section aria-labelledby="queue" {
            h2 id="queue" { "Open mismatches" }
            @if shown.is_empty() {
                p { "No open mismatch matches." }
            } @else {
                p.muted { "Showing " (first) "–" (last) " of " (shown.len()) " (page " (page) " of " (pages) "). Times in " (zone) "." }
                table.queue {
                    thead {
                        tr {
                            th scope="col" { "ID" } th scope="col" { "Code" } th scope="col" { "Participant" }
                            th scope="col" { "Visit" } th scope="col" { "Minute" } th scope="col" { "Analyte" }
                            th scope="col" { "Sample" } th scope="col" { "Instrument" } th scope="col" { "Reported" }
                            th scope="col" { "Detail" } th scope="col" { "Since" } th scope="col" { "Age" }
                        }
                    }
                    tbody {
                        @for l in on_page {
                            tr {
                                td {
                                    @match l.id {
                                        Some(id) => a href={ "/mismatches/" (id) } aria-label={ "Mismatch " (id) } { "#" (id) },
                                        None => span.muted { "no id yet" },
                                    }
                                }
                                td { (l.code) }
                                td { (l.participant.as_deref().unwrap_or("")) }
                                td { (l.visit.as_deref().unwrap_or("")) }
                                td.num { @if let Some(n) = l.minute { (n) } }
                                td { (l.analyte.as_deref().unwrap_or("")) }
                                td { (l.sample.as_deref().unwrap_or("")) }
                                td { (l.instrument.as_deref().unwrap_or("")) }
                                td { (l.reported) }
                                td { (crate::model::printable(&l.detail)) }
                                td { @if let Some(t) = l.since { (zoned_time(t, zone)) } }
                                td { (age_words(l.since, now)) }
                            }
                        }
                    }
                }
                nav.pages aria-label="Pages" {
                    @if page > 1 { a rel="prev" href=(query.link(page - 1)) { "Previous page" } }
                    " "
                    @if page < pages { a rel="next" href=(query.link(page + 1)) { "Next page" } }
                }
            }
        }
    };
    Ok(layout(&who, &config.study.id, zone, "Mismatches", "/mismatches", body))
}

fn parse_id(text: &str) -> Option<MismatchId> {
    text.trim().trim_start_matches('#').parse::<i64>().ok().filter(|n| *n > 0).map(MismatchId)
}

pub async fn detail(
    State(console): State<Shared>,
    Extension(who): Extension<SignedIn>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let id = parse_id(&id).ok_or_else(|| PageError::NotFound(format!("{id:?} is not a mismatch id")))?;
    detail_page(&console, &who, id, None, StatusCode::OK).await
}

/// What a refused decision form gets back: the message and what was typed
/// (never the password).
#[derive(Debug, Default)]
struct Retry {
    action: String,
    message: String,
    reason: String,
    participant: String,
    visit: String,
    minute: String,
}

/// The page of mismatch `id`, with `retry`'s message and values when a
/// decision was refused.
async fn detail_page(
    console: &Shared,
    who: &SignedIn,
    id: MismatchId,
    retry: Option<Retry>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let (review, raw) = console
        .with_store(Access::Read, move |store, config| {
            // Only the rows of the mismatch's participant: what the page shows.
            let scope = store.read(|rd| {
                let participant = match rd.mismatch(id)? {
                    Some(m) => m.participant,
                    None => rd.missing_slot(id)?.map(|m| m.slot.participant),
                };
                Ok(participant.map_or(Scope::Unmatched, Scope::Participant))
            })?;
            let review = Review::load_in(config, store, true, true, &scope)?;
            let raw = match review.stored.iter().find(|r| r.mismatch.id == id) {
                Some(r) => store.read(|rd| rd.mismatch_raw(&r.mismatch))?,
                None => None,
            };
            Ok((review, raw))
        })
        .await?;
    let config = &console.config;
    let zone = config.study.timezone.as_str();
    let rows = review.rows(config);
    let Some(row) = rows.iter().find(|r| r.id() == Some(id)) else {
        return Err(PageError::NotFound(format!("there is no mismatch {id} (see the Mismatches page)")));
    };
    let line = Line::of(row, config);
    let open = row.is_open();
    let locks: Vec<String> = review
        .locks
        .iter()
        .filter(|lock| lock_applies(lock, line.participant.as_deref(), line.visit.as_deref()))
        .map(|lock| lock_words(lock, zone))
        .collect();
    let flagged = flagged_slots(&review.stored);
    let marks = Marks { flagged: &flagged, withdrawn: &review.withdrawn };
    let figure = match (&line.participant, &line.visit) {
        (Some(p), Some(v)) => visit_curves_figure(config, &review.results, &marks, p, v),
        _ => None,
    };
    let history: Vec<String> = match row.id().and_then(|i| review.history.get(&i)) {
        Some(entries) => entries.iter().map(|e| history_entry(e, Some(zone), &review.history.signers)).collect(),
        None => match row {
            ReviewRow::Missing(m) => m
                .not_done
                .iter()
                .map(|mark| {
                    format!(
                        "not done by {} at {}: {}",
                        review.history.signers.who(&mark.by),
                        zoned_time(mark.at, zone),
                        mark.reason
                    )
                })
                .collect(),
            ReviewRow::Stored(_) => Vec::new(),
        },
    };
    let in_force = match row {
        ReviewRow::Stored(r) => r.mismatch.resolution.as_ref().map(decision_label),
        ReviewRow::Missing(m) => m.not_done.map(|_| "not done".to_owned()),
    };
    let provenance = match row {
        ReviewRow::Stored(r) => Some(&r.provenance),
        ReviewRow::Missing(_) => None,
    };
    let may_decide = who.role >= Role::DataManager;
    let retry = retry.unwrap_or_default();
    let title = format!("Mismatch #{id} ({})", line.code);
    let body = html! {
        p { a href="/mismatches" { "Back to the open mismatches" } }
        @if !retry.message.is_empty() { p role="alert" { (retry.message) } }
        section aria-labelledby="what" {
            h2 id="what" { "Detail" }
            table.detail {
                tbody {
                    tr { th scope="row" { "Code" } td { (line.code) } }
                    tr { th scope="row" { "State" } td { @if open { "open" } @else { "resolved" @if let Some(d) = &in_force { " (" (d) ")" } } } }
                    tr { th scope="row" { "Slot" } td { (line.slot_words().unwrap_or_else(|| "not matched to a participant".to_owned())) } }
                    tr { th scope="row" { "Analyte" } td { (line.analyte.as_deref().unwrap_or("")) } }
                    tr { th scope="row" { "Reported value" } td { (line.reported) } }
                    tr { th scope="row" { "Instrument" } td { (line.instrument.as_deref().unwrap_or("")) } }
                    tr { th scope="row" { "Sample" } td { (line.sample.as_deref().unwrap_or("")) } }
                    @if let Some(p) = provenance {
                        tr { th scope="row" { "Test code" } td { (p.test_code.as_deref().unwrap_or("")) } }
                        tr { th scope="row" { "Status" } td { (p.status.as_deref().unwrap_or("")) } }
                        tr { th scope="row" { "Collected (as sent)" } td { (p.collected_time().unwrap_or_default()) } }
                        tr { th scope="row" { "Received" } td { @if let Some(t) = p.received_at { (zoned_time(t, zone)) } } }
                        tr { th scope="row" { "Source" } td { (p.source_text()) } }
                    }
                    tr { th scope="row" { "Since" } td { @if let Some(t) = line.since { (zoned_time(t, zone)) " (" (age_words(line.since, review.now)) ")" } } }
                    tr { th scope="row" { "Detail" } td { (crate::model::printable(&line.detail)) } }
                }
            }
            @for lock in &locks { p role="alert" { "Locked: " (lock) ". A decision is refused until it is unlocked." } }
        }
        section aria-labelledby="curves" {
            h2 id="curves" { "MMTT curves" }
            @match &figure {
                Some(svg) => (PreEscaped(svg.as_str())),
                None => p { "No results received yet for this visit or the baseline visit: no curve to draw." },
            }
        }
        @if provenance.is_some() {
            section aria-labelledby="raw" {
                h2 id="raw" { "The message as stored (masked)" }
                (raw_section(raw.as_ref()))
            }
        }
        section aria-labelledby="history" {
            h2 id="history" { "History" }
            @if history.is_empty() { p { "No decision yet." } }
            @else { ol.history { @for entry in &history { li { (entry) } } } }
        }
        section aria-labelledby="decide" {
            h2 id="decide" { "Decide" }
            @if !may_decide {
                p { "Deciding a mismatch needs the role data-manager; " (who.account) " is " (who.role) "." }
            } @else {
                p.muted { "Each decision is signed: give the reason and your password again." }
                @for form in forms(row, &line, open) {
                    (decision_form(who, id, &form, &retry))
                }
            }
        }
    };
    Ok((status, layout(who, &config.study.id, zone, &title, "/mismatches", body)).into_response())
}

/// A lock on the study, or on the row's participant or visit.
fn lock_applies(lock: &crate::store::Lock, participant: Option<&str>, visit: Option<&str>) -> bool {
    use crate::store::LockScope;
    match &lock.scope {
        LockScope::Study => true,
        LockScope::Participant(p) => participant == Some(p.as_str()),
        LockScope::Visit { participant: p, visit: v } => participant == Some(p.as_str()) && visit == Some(v.as_str()),
    }
}

/// The stored content (its message only, when the file holds several),
/// shown as text: line ends as lines, other control characters as their
/// visible pictures.
fn raw_section(raw: Option<&(RawRow, Option<MessageSpan>)>) -> Markup {
    let Some((raw, span)) = raw else { return html! { p { "No stored message for this mismatch." } } };
    let bytes = span
        .and_then(|(start, end)| {
            let (start, end) = (usize::try_from(start).ok()?, usize::try_from(end).ok()?);
            raw.content.get(start..end)
        })
        .unwrap_or(&raw.content);
    let cut = bytes.len() > RAW_SHOWN;
    let shown = bytes.get(..RAW_SHOWN).unwrap_or(bytes);
    let masked = if raw.masked.is_empty() { "nothing".to_owned() } else { raw.masked.replace(',', ", ") };
    html! {
        p.muted { (shown.len()) " bytes" @if cut { " (the first " (RAW_SHOWN) " of " (bytes.len()) ")" } "; masked: " (masked) "." }
        pre.raw { code { (visible_text(shown)) } }
    }
}

fn visible_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes).replace("\r\n", "\n").replace('\r', "\n");
    text.chars()
        .map(|c| match c {
            '\n' | '\t' => c,
            '\u{7F}' => '\u{2421}',
            c if c.is_control() => {
                char::from_u32(0x2400 + u32::from(c)).filter(|_| u32::from(c) < 0x20).unwrap_or('\u{FFFD}')
            }
            c => c,
        })
        .collect()
}

/// One decision the page offers, with the meaning its signature carries.
struct Offer {
    action: &'static str,
    button: &'static str,
    meaning: String,
    /// Assign asks for the new participant, visit and minute.
    target: bool,
}

fn forms(row: &ReviewRow<'_>, line: &Line, open: bool) -> Vec<Offer> {
    let value = if line.reported.is_empty() { "the value".to_owned() } else { format!("value {}", line.reported) };
    let slot = line.slot_words().map(|s| format!(" for {s}")).unwrap_or_default();
    let of_sample = line.sample.as_deref().map(|s| format!(" of sample {s}")).unwrap_or_default();
    let id = line.id.map(|i| i.to_string()).unwrap_or_default();
    if !open {
        return vec![Offer {
            action: "reopen",
            button: "Reopen and sign",
            meaning: format!(
                "I reopen mismatch #{id}: the decision in force is undone and the mismatch is open again{slot}."
            ),
            target: false,
        }];
    }
    match row {
        ReviewRow::Missing(_) => vec![Offer {
            action: "not-done",
            button: "Mark not done and sign",
            meaning: format!(
                "I declare that no {} result{slot} was obtained: the sample was not drawn or not analysed.",
                line.analyte.as_deref().unwrap_or("")
            ),
            target: false,
        }],
        ReviewRow::Stored(_) => vec![
            Offer {
                action: "accept",
                button: "Accept and sign",
                meaning: format!("I accept {value}{of_sample}{slot}."),
                target: false,
            },
            Offer {
                action: "reject",
                button: "Reject and sign",
                meaning: format!("I reject {value}{of_sample}{slot}: it is not a study result."),
                target: false,
            },
            Offer {
                action: "assign",
                button: "Assign and sign",
                meaning: format!(
                    "I assign {value}{of_sample} to the participant, visit and minute entered below; every check runs \
                     again there."
                ),
                target: true,
            },
        ],
    }
}

fn decision_form(who: &SignedIn, id: MismatchId, offer: &Offer, retry: &Retry) -> Markup {
    let a = offer.action;
    let again = retry.action == a;
    let keep = |v: &str| if again { v.to_owned() } else { String::new() };
    html! {
        form.decision method="post" action={ "/mismatches/" (id) "/decide" } aria-labelledby={ "meaning-" (a) } {
            (csrf_field(who))
            input type="hidden" name="action" value=(a);
            fieldset {
                legend id={ "meaning-" (a) } { (offer.meaning) }
                @if offer.target {
                    label for={ (a) "-participant" } { "Participant" }
                    input id={ (a) "-participant" } name="participant" required value=(keep(&retry.participant));
                    label for={ (a) "-visit" } { "Visit" }
                    input id={ (a) "-visit" } name="visit" required value=(keep(&retry.visit));
                    label for={ (a) "-minute" } { "Minute (after meal start)" }
                    input id={ (a) "-minute" } name="minute" type="number" step="1" required value=(keep(&retry.minute));
                }
                label for={ (a) "-reason" } { "Reason" }
                input id={ (a) "-reason" } name="reason" required maxlength="500" value=(keep(&retry.reason));
                label for={ (a) "-password" } { "Your password (" (who.account) ")" }
                input id={ (a) "-password" } name="password" type="password" autocomplete="current-password" required;
                p { button type="submit" { (offer.button) } }
            }
        }
    }
}

/// The decision form as sent. Every field may be missing: a form without
/// its CSRF token is refused as such, not as a malformed request.
#[derive(Debug, Default, Deserialize)]
pub struct DecideForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    participant: String,
    #[serde(default)]
    visit: String,
    #[serde(default)]
    minute: String,
}

/// Why a decision was not recorded, and the status it is answered with.
enum Refusal {
    Login(String),
    Decision(String),
}

pub async fn decide(
    State(console): State<Shared>,
    Extension(who): Extension<SignedIn>,
    Path(id): Path<String>,
    Form(form): Form<DecideForm>,
) -> Result<Response, PageError> {
    check_csrf(&who, &form.csrf)?;
    require(&who, Role::DataManager, "deciding a mismatch")?;
    let id = parse_id(&id).ok_or_else(|| PageError::NotFound(format!("{id:?} is not a mismatch id")))?;
    let mut retry = Retry {
        action: form.action.clone(),
        message: String::new(),
        reason: form.reason.clone(),
        participant: form.participant.clone(),
        visit: form.visit.clone(),
        minute: form.minute.clone(),
    };
    let decision = match read_decision(&form) {
        Ok(decision) => decision,
        Err(why) => {
            retry.message = why;
            return detail_page(&console, &who, id, Some(retry), StatusCode::BAD_REQUEST).await;
        }
    };
    let reason = form.reason.trim().to_owned();
    let (account, password) = (who.account.clone(), form.password);
    let done = console
        .with_store(Access::Write, move |store, config| {
            let signer = match authenticate(store, &account, &password, Role::DataManager, "resolve") {
                Ok(signer) => signer,
                Err(LoginError::Store(e)) => return Err(anyhow::Error::new(e).context("checking the password")),
                Err(refused) => return Ok(Err(Refusal::Login(refused.to_string()))),
            };
            let signature = crate::login::signature(&signer, decision.meaning(), Some(&reason), None);
            match resolve(store, config, id, &decision, &signature) {
                Ok(done) => Ok(Ok(done)),
                Err(ResolveError::Store(e)) => Err(anyhow::Error::new(e).context("recording the decision")),
                Err(e) => Ok(Err(Refusal::Decision(e.to_string()))),
            }
        })
        .await?;
    match done {
        Ok(done) => {
            tracing::info!(account = %who.account, mismatch = %done.mismatch_id, "decision recorded in the console");
            Ok(Redirect::to(&format!("/mismatches?decided={}", done.mismatch_id)).into_response())
        }
        Err(Refusal::Login(why)) => {
            retry.message = format!("Not signed: {why}. Nothing was changed.");
            detail_page(&console, &who, id, Some(retry), StatusCode::UNAUTHORIZED).await
        }
        Err(Refusal::Decision(why)) => {
            retry.message = format!("Not recorded: {why}.");
            detail_page(&console, &who, id, Some(retry), StatusCode::CONFLICT).await
        }
    }
}

/// The decision the form asks for, or why it cannot be read.
fn read_decision(form: &DecideForm) -> Result<Decision, String> {
    let reason = form.reason.trim();
    if reason.is_empty() {
        return Err("A reason is required: say why.".to_owned());
    }
    if reason.chars().any(char::is_control) {
        return Err("The reason must be one line of plain text.".to_owned());
    }
    match form.action.as_str() {
        "accept" => Ok(Decision::Accept),
        "reject" => Ok(Decision::Reject),
        "not-done" => Ok(Decision::NotDone),
        "reopen" => Ok(Decision::Reopen),
        "assign" => {
            let (participant, visit) = (form.participant.trim(), form.visit.trim());
            if participant.is_empty() || visit.is_empty() {
                return Err("An assignment needs the participant, the visit and the minute.".to_owned());
            }
            let minute = form
                .minute
                .trim()
                .parse::<i64>()
                .map_err(|_| format!("The minute \"{}\" is not a whole number.", form.minute.trim()))?;
            Ok(Decision::Assign { participant: participant.to_owned(), visit: visit.to_owned(), minute })
        }
        other => Err(format!("\"{other}\" is not a decision (accept, reject, assign, not-done or reopen).")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded_and_links_keep_the_filters() {
        assert_eq!(percent("U 01&x=/é"), "U%2001%26x%3D%2F%C3%A9");
        let q = ListQuery { code: Some("MISSING_RESULT".into()), older: Some(" ".into()), ..ListQuery::default() };
        assert_eq!(q.link(2), "/mismatches?code=MISSING_RESULT&page=2");
    }

    #[test]
    fn ages_and_raw_text_read_plainly() {
        let now: jiff::Timestamp = "2026-03-05T09:00:00Z".parse().unwrap();
        let at = |s: &str| Some(s.parse::<jiff::Timestamp>().unwrap());
        assert_eq!(age_words(at("2026-03-05T08:30:00Z"), now), "under 1 h");
        assert_eq!(age_words(at("2026-03-05T04:00:00Z"), now), "5 h");
        assert_eq!(age_words(at("2026-03-04T08:00:00Z"), now), "1 day");
        assert_eq!(age_words(at("2026-03-01T08:00:00Z"), now), "4 days");
        assert_eq!(visible_text(b"H|\\^&\r\x02P|1\r\n\x7F"), "H|\\^&\n\u{2402}P|1\n\u{2421}");
    }

    #[test]
    fn a_decision_needs_a_reason_and_an_assignment_its_slot() {
        let form = |action: &str, reason: &str, minute: &str| DecideForm {
            action: action.into(),
            reason: reason.into(),
            participant: "U02".into(),
            visit: "V0".into(),
            minute: minute.into(),
            ..DecideForm::default()
        };
        assert_eq!(read_decision(&form("accept", "ok", "")), Ok(Decision::Accept));
        assert!(read_decision(&form("accept", "  ", "")).unwrap_err().contains("reason"));
        assert!(read_decision(&form("reject", "a\nb", "")).unwrap_err().contains("one line"));
        assert_eq!(
            read_decision(&form("assign", "moved", "-10")),
            Ok(Decision::Assign { participant: "U02".into(), visit: "V0".into(), minute: -10 })
        );
        assert!(read_decision(&form("assign", "moved", "3O")).unwrap_err().contains("whole number"));
        assert!(read_decision(&form("delete", "x", "")).is_err());
    }

    /// A study of `participants`, each with a clean baseline and a
    /// follow-up with queue rows (as the console bench's), and one result
    /// whose sample matches nobody.
    mod queue {
        use super::*;
        use crate::ingest::{Delivery, ingest_batch};
        use crate::report::mismatches::MISSING_RESULT;
        use crate::store::{Participant, Signature, Source, Visit};

        const MINUTES: [i64; 7] = [-10, 0, 15, 30, 60, 90, 120];

        fn meal(p: usize, visit: usize) -> jiff::civil::DateTime {
            jiff::civil::date(2025, 3, 3 + p as i8).at(8, 0, 0, 0) + jiff::Span::new().days(91 * visit as i64)
        }

        /// Visit `visit` of participant `p`; `minutes` the tubes sent.
        fn message(p: usize, visit: usize, minutes: &[i64]) -> String {
            let at = |t: jiff::civil::DateTime| t.strftime("%Y%m%d%H%M").to_string();
            let start = meal(p, visit);
            let resulted = at(start + jiff::Span::new().hours(6));
            let mut m = format!(
                "MSH|^~\\&|CENTRALLAB|UAS-KEM|LABFEED|TEST|{resulted}||ORU^R01^ORU_R01|Q{p}V{visit}N{}|P|2.5.1|||NE|NE||UNICODE UTF-8\r\
                 PID|1||U{p:02}^^^TEST^PI\r",
                minutes.len()
            );
            for (n, &minute) in minutes.iter().enumerate() {
                let drawn = at(start + jiff::Span::new().minutes(minute));
                let (mut status, mut cpep, mut unit, mut gluc) = ("F", "0.80", "mmol/L", "6.1");
                if visit == 1 {
                    match (minute, p % 3) {
                        (0, _) => gluc = "12.5",
                        (-10, 0) => status = "P",
                        (60, 1) => cpep = "45.0",
                        (120, 2) => unit = "mmol/mol",
                        _ => {}
                    }
                }
                let sample = if p == 0 && minute == 30 && visit == 1 {
                    "NOBODY-1".to_owned()
                } else {
                    format!("U{p:02}-V{visit}-T{minute}")
                };
                m.push_str(&format!(
                    "OBR|{n}||{sample}^CENTRALLAB|MMTT^MMTT C-peptide and glucose^L|||{drawn}|||||||{drawn}||||||||{resulted}|||F\r\
                     OBX|1|NM|1986-9^C peptide^LN||{cpep}|nmol/L^^UCUM|0.37-1.47|N|||{status}|||{drawn}\r\
                     OBX|2|NM|14749-6^Glucose^LN||{gluc}|{unit}^^UCUM|4.0-6.0|N|||F|||{drawn}\r",
                    n = n + 1
                ));
            }
            m
        }

        fn ingest(store: &mut Store, config: &Config, messages: &[String]) {
            let deliveries: Vec<Delivery<'_>> = messages
                .iter()
                .enumerate()
                .map(|(i, text)| Delivery {
                    bytes: text.as_bytes(),
                    source: Source::Ingest,
                    origin: format!("central/{i}.hl7"),
                    instrument: None,
                    received_at: jiff::Timestamp::now(),
                })
                .collect();
            for summary in ingest_batch(store, config, &deliveries).unwrap() {
                assert_eq!(summary.errors, 0, "{summary:?}");
            }
        }

        fn config(dir: &std::path::Path) -> Config {
            let text =
                include_str!("../../../config/labfeed.example.toml").replace("/var/lib/labfeed", dir.to_str().unwrap());
            Config::from_toml(&text, &dir.join("labfeed.toml")).unwrap()
        }

        fn study(store: &mut Store, config: &Config, participants: usize) {
            store
                .write(|tx| {
                    for p in 0..participants {
                        tx.upsert_participant(&Participant { code: format!("U{p:02}"), site: None })?;
                        for v in 0..2 {
                            let meal_start = Some(meal(p, v).into());
                            tx.upsert_visit(&Visit {
                                participant: format!("U{p:02}"),
                                visit: format!("V{v}"),
                                meal_start,
                            })?;
                        }
                    }
                    tx.add_account("dm", "Data Manager", Role::DataManager, "$argon2id$not-a-real-hash")
                })
                .unwrap();
            let follow_up: Vec<i64> = MINUTES.iter().copied().filter(|&m| m != 90).collect();
            let messages: Vec<String> =
                (0..participants).flat_map(|p| [message(p, 0, &MINUTES), message(p, 1, &follow_up)]).collect();
            ingest(store, config, &messages);
        }

        fn decide(store: &mut Store, config: &Config, id: MismatchId, decision: Decision) {
            let signature = Signature {
                account: "dm".into(),
                full_name: "Data Manager".into(),
                role: Role::DataManager,
                os_account: "test".into(),
                meaning: decision.meaning().into(),
                reason: Some("checked".into()),
                on_behalf_of: None,
            };
            resolve(store, config, id, &decision, &signature).unwrap();
        }

        /// The first open row of `code` (at `minute`, if given).
        fn row(queue: &Queue, code: &str, minute: Option<i64>) -> MismatchId {
            let found = queue
                .lines
                .iter()
                .find(|l| l.code == code && minute.is_none_or(|m| l.minute == Some(m)) && l.id.is_some());
            found.and_then(|l| l.id).unwrap_or_else(|| panic!("no open {code} row at {minute:?}"))
        }

        /// Each change between two requests: the kept queue, with the
        /// touched participants read again, is the queue computed whole for
        /// the same time.
        fn kept_queue_is_the_whole_queue(store: &mut Store, config: &Config) {
            study(store, config, 6);
            let cache = QueueCache::default();
            let at = jiff::Timestamp::now();
            let first = cache.get_at(store, config, at).unwrap();
            assert!(first.lines.iter().any(|l| l.participant.is_none()), "an unmatched row");
            let check_at = |store: &mut Store, what: &str, at: jiff::Timestamp| {
                let kept = cache.0.lock().unwrap().clone().unwrap();
                let head = store.read(|r| r.last_audit_seq()).unwrap();
                let touched = store.read(|r| touched_since(r, config, &kept, head, at)).unwrap();
                assert!(touched.is_some(), "{what}: brought up to date, not computed whole");
                let queue = cache.get_at(store, config, at).unwrap();
                assert_eq!((queue.stamp, queue.now), (head, at), "{what}");
                let whole = store.read(|r| open_lines(r, config, &Scope::Study, at)).unwrap();
                assert_eq!(queue.lines, whole, "{what}");
                queue
            };
            let check = |store: &mut Store, what: &str| check_at(store, what, at);

            let q = check(store, "nothing changed");
            let not_final = row(&q, "NOT_FINAL", None);
            decide(store, config, not_final, Decision::Accept);
            let q = check(store, "a value accepted");
            assert!(q.lines.iter().all(|l| l.id != Some(not_final)));

            decide(store, config, row(&q, "MISSING_RESULT", Some(90)), Decision::NotDone);
            check(store, "a missing result not done");
            decide(store, config, not_final, Decision::Reopen);
            let q = check(store, "a decision reopened");
            assert!(q.lines.iter().any(|l| l.id == Some(not_final)));
            decide(store, config, row(&q, "IMPLAUSIBLE", None), Decision::Reject);
            let q = check(store, "a value rejected");

            // The unmatched sample's value goes to U03's empty 90-minute slot.
            let unmatched = q.lines.iter().find(|l| l.participant.is_none()).and_then(|l| l.id).unwrap();
            let to = Decision::Assign { participant: "U03".into(), visit: "V1".into(), minute: 90 };
            decide(store, config, unmatched, to);
            let q = check(store, "an unmatched value assigned");
            assert!(q.lines.iter().all(|l| l.id != Some(unmatched)));

            // The missing tubes arrive; a meal start moves; a new participant's visit comes in.
            ingest(store, config, &[message(4, 1, &[90]), message(6, 1, &MINUTES)]);
            check(store, "results arrived");
            store
                .write(|tx| tx.upsert_visit(&Visit { participant: "U05".into(), visit: "V1".into(), meal_start: None }))
                .unwrap();
            let q = check(store, "a meal start cleared");
            assert!(q.lines.iter().all(|l| l.participant.as_deref() != Some("U05")
                || l.visit.as_deref() != Some("V1")
                || l.code != MISSING_RESULT));
            store.write(|tx| tx.add_account("dm2", "Another", Role::DataManager, "$argon2id$not-a-real-hash")).unwrap();
            check(store, "an account added");

            // A visit planned for later lacks everything once its meal has started.
            let planned = jiff::civil::date(2031, 1, 6).at(8, 0, 0, 0);
            let visit = Visit { participant: "U02".into(), visit: "V2".into(), meal_start: Some(planned.into()) };
            store.write(|tx| tx.upsert_visit(&visit)).unwrap();
            let q = check(store, "a visit planned");
            assert!(q.lines.iter().all(|l| l.visit.as_deref() != Some("V2")));
            let q = check_at(store, "the meal started", "2031-01-07T00:00:00Z".parse().unwrap());
            assert_eq!(q.lines.iter().filter(|l| l.visit.as_deref() == Some("V2")).count(), 14);
        }

        /// A PostgreSQL database of its own on the test server, dropped at the end.
        struct TestDb(String);

        const SERVER: &str = "postgresql://postgres@127.0.0.1:5432";

        impl Drop for TestDb {
            fn drop(&mut self) {
                if let Ok(mut admin) = crate::store::postgres::connect(&format!("{SERVER}/test")) {
                    let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0));
                }
            }
        }

        #[test]
        fn the_kept_queue_is_spliced_exactly_on_postgresql() {
            let mut admin = match crate::store::postgres::connect(&format!("{SERVER}/test")) {
                Ok(admin) => admin,
                Err(e) => {
                    let required = std::env::var("LABFEED_REQUIRE_POSTGRES").as_deref() == Ok("1");
                    assert!(!required, "LABFEED_REQUIRE_POSTGRES=1 but PostgreSQL on 127.0.0.1:5432 is not there: {e}");
                    eprintln!("skipped: no PostgreSQL on 127.0.0.1:5432");
                    return;
                }
            };
            let mut bytes = [0u8; 8];
            getrandom::fill(&mut bytes).unwrap();
            let db = TestDb(format!("labfeed_test_{}", crate::store::hex(&bytes)));
            admin.batch_execute(&format!("CREATE DATABASE {}", db.0)).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let config = config(dir.path());
            let mut store = Store::open(format!("{SERVER}/{}", db.0)).unwrap();
            kept_queue_is_the_whole_queue(&mut store, &config);
        }

        #[test]
        fn the_kept_queue_is_spliced_exactly_on_sqlite() {
            let dir = tempfile::tempdir().unwrap();
            let config = config(dir.path());
            let mut store = Store::open(&config.storage.database).unwrap();
            kept_queue_is_the_whole_queue(&mut store, &config);
        }

        #[test]
        fn warming_keeps_the_whole_queue_for_the_first_request() {
            let dir = tempfile::tempdir().unwrap();
            let config = config(dir.path());
            let mut store = Store::open(&config.storage.database).unwrap();
            study(&mut store, &config, 3);
            let cache = QueueCache::default();
            assert!(cache.0.lock().unwrap().is_none());
            cache.warm(&store, &config);
            let kept = cache.0.lock().unwrap().clone().expect("a queue kept");
            assert_eq!(kept.stamp, store.read(|r| r.last_audit_seq()).unwrap());
            let whole = store.read(|r| open_lines(r, &config, &Scope::Study, kept.now)).unwrap();
            assert!(!whole.is_empty());
            assert_eq!(kept.lines, whole);
        }
    }
}
