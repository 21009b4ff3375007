//! Participant and visit views: the MMTT curves (a chart and a table of
//! values per timepoint), the results, the open mismatches and the data
//! locks, with the lock and unlock forms. Locking is signed as on the
//! command line (`labfeed lock|unlock`): a reason and the password again,
//! by a data manager or an admin.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use maud::{Markup, PreEscaped, html};
use serde::Deserialize;

use super::samples::value_text;
use super::{local, segment};
use crate::login::{LoginError, authenticate, signature};
use crate::report::html::{Marks, participant_chart};
use crate::report::plot::chart_svg;
use crate::report::wording::{Signers, current_state};
use crate::store::{Lock, LockScope, MismatchRow, Participant, ResultRow, Role, Scope, Visit};
use crate::study::config::Config;
use crate::web::pages::{PageError, check_csrf, csrf_field, layout, require};
use crate::web::session::SignedIn;
use crate::web::{Access, Shared};

/// Participants per page of the list.
const PER_PAGE: i64 = 200;

#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    /// The list continues after this code.
    #[serde(default)]
    after: String,
}

pub async fn list(
    State(console): State<Shared>,
    Extension(who): Extension<SignedIn>,
    Query(params): Query<ListParams>,
) -> Result<Markup, PageError> {
    let after = params.after.clone();
    let (participants, locks): (Vec<Participant>, Vec<Lock>) = console
        .with_store(Access::Read, move |store, _| {
            Ok(store.read(|r| Ok((r.participants_after(&after, PER_PAGE + 1)?, r.locks()?)))?)
        })
        .await?;
    let more = participants.len() as i64 > PER_PAGE;
    let shown: Vec<&Participant> = participants.iter().take(PER_PAGE as usize).collect();
    let config = &console.config;
    let locked = |code: &str| locks.iter().any(|l| matches!(&l.scope, LockScope::Participant(p) if p == code));
    let body = html! {
        form.search method="get" action="/participants/" role="search" aria-label="Open a participant" {
            label for="code" { "Participant code" }
            input id="code" name="code" autocomplete="off";
            " " button type="submit" { "Open" }
        }
        @if locks.iter().any(|l| l.scope == LockScope::Study) { p role="status" { "The whole study is locked." } }
        table {
            thead { tr { th scope="col" { "Participant" } th scope="col" { "Site" } th scope="col" { "Lock" } } }
            tbody {
                @for p in &shown {
                    tr {
                        th scope="row" { a href=(format!("/participants/{}", segment(&p.code))) { (p.code) } }
                        td { (p.site.as_deref().unwrap_or("")) }
                        td { @if locked(&p.code) { "locked" } }
                    }
                }
            }
        }
        @if shown.is_empty() { p { "No participants." } }
        nav.pages aria-label="Participant pages" {
            @if !params.after.is_empty() { a href="/participants" { "First page" } " " }
            @if more { @if let Some(last) = shown.last() {
                a href=(format!("/participants?after={}", segment(&last.code))) rel="next" { "Next " (PER_PAGE) " participants" }
            } }
        }
    };
    Ok(layout(&who, &config.study.id, &config.study.timezone, "Participants", "/participants", body))
}

#[derive(Debug, Default, Deserialize)]
pub struct Open {
    #[serde(default)]
    code: String,
}

/// `/participants/?code=U01` (the search form) goes to the participant.
pub async fn open(Query(open): Query<Open>) -> Response {
    match open.code.trim() {
        "" => Redirect::to("/participants").into_response(),
        code => Redirect::to(&format!("/participants/{}", segment(code))).into_response(),
    }
}

/// What a participant or visit page shows, read in one snapshot.
struct View {
    participant: Participant,
    visits: Vec<Visit>,
    results: Vec<ResultRow>,
    open: Vec<MismatchRow>,
    locks: Vec<Lock>,
    signers: Signers,
}

async fn view(console: &Shared, code: String) -> Result<View, PageError> {
    let wanted = code.clone();
    let found = console
        .with_store(Access::Read, move |store, _| {
            Ok(store.read(|r| {
                let Some(participant) = r.participant(&wanted)? else { return Ok(None) };
                let visits: Vec<Visit> = r.visits_in(&Scope::Participant(wanted.clone()))?;
                Ok(Some(View {
                    participant,
                    visits,
                    results: r.current_results_of_participant(&wanted)?,
                    open: r.open_mismatches_of_participant(&wanted)?,
                    locks: r.locks()?,
                    signers: Signers::new(r.accounts()?),
                }))
            })?)
        })
        .await?;
    found.ok_or_else(|| PageError::NotFound(format!("there is no participant {code} in the study database")))
}

/// The locks that cover `scope` (the study's, the participant's, the visit's own).
fn covering<'l>(locks: &'l [Lock], participant: &str, visit: Option<&str>) -> Vec<&'l Lock> {
    locks
        .iter()
        .filter(|l| match &l.scope {
            LockScope::Study => true,
            LockScope::Participant(p) => p == participant,
            LockScope::Visit { participant: p, visit: v } => p == participant && visit.is_none_or(|x| x == v),
        })
        .collect()
}

/// Visits in configuration order (V2 before V10), unknown ones last.
fn visit_order(config: &Config, visits: &mut [Visit]) {
    visits.sort_by_key(|v| (config.visit_index(&v.visit).unwrap_or(usize::MAX), v.visit.clone()));
}

/// The chart of the given visits, as inline SVG (no style attributes).
fn chart(config: &Config, participant: &str, visits: &[&str], results: &[ResultRow], open: &[MismatchRow]) -> Markup {
    let mut by_visit: BTreeMap<(&str, &str), Vec<&ResultRow>> = BTreeMap::new();
    for r in results.iter().filter(|r| visits.contains(&r.slot.visit.as_str())) {
        by_visit.entry((r.slot.participant.as_str(), r.slot.visit.as_str())).or_default().push(r);
    }
    let flagged: BTreeSet<_> = open.iter().filter_map(MismatchRow::slot).collect();
    let withdrawn = BTreeSet::new();
    let marks = Marks { flagged: &flagged, withdrawn: &withdrawn };
    match participant_chart(config, participant, visits, &by_visit, &marks) {
        Some(c) => html! {
            figure.curve {
                (PreEscaped(chart_svg(&c, &format!("MMTT curves of participant {participant}"))))
                figcaption { "Values against minutes after meal start; the same values are in the table below." }
            }
        },
        None => html! { p { "No results received yet: no curve to draw." } },
    }
}

/// Values per timepoint: one row per scheduled minute, one column per analyte (with its unit).
fn curve_table(config: &Config, visit: &str, results: &[ResultRow], open: &[MismatchRow]) -> Markup {
    let analytes: Vec<(&String, &String)> = config.analytes.iter().map(|(name, a)| (name, &a.unit)).collect();
    let value = |minute: i32, analyte: &str| {
        results
            .iter()
            .find(|r| r.slot.visit == visit && r.slot.minute == i64::from(minute) && r.slot.analyte == analyte)
    };
    let held = |minute: i32, analyte: &str| {
        open.iter().any(|m| {
            m.visit.as_deref() == Some(visit)
                && m.minute == Some(i64::from(minute))
                && m.analyte.as_deref() == Some(analyte)
        })
    };
    html! {
        table.curve-values {
            caption { "MMTT values of visit " (visit) }
            thead { tr {
                th scope="col" { "Minute" }
                @for (name, unit) in &analytes { th scope="col" { (name) " (" (unit) ")" } }
            } }
            tbody {
                @for minute in &config.mmtt.timepoints {
                    tr {
                        th scope="row" { (minute) " min" }
                        @for (name, _) in &analytes {
                            td.num {
                                @match value(*minute, name) {
                                    Some(r) => { (value_text(r)) }
                                    None => span.muted { "–" },
                                }
                                @if held(*minute, name) { " " span.flag { "(open mismatch)" } }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn locks_list(locks: &[&Lock], zone: &str) -> Markup {
    html! {
        @if locks.is_empty() { p { "Not locked." } }
        @else {
            ul.locks { @for l in locks { li { (crate::report::mismatches::lock_words(l, zone)) } } }
        }
    }
}

/// The signed lock or unlock form for `scope` (posted to `action`).
fn lock_form(who: &SignedIn, scope: &LockScope, lock: bool, action: &str) -> Markup {
    let (verb, id) = if lock { ("lock", "lock") } else { ("unlock", "unlock") };
    html! {
        form.signed method="post" action=(action) aria-labelledby=(format!("{id}-title")) {
            h3 id=(format!("{id}-title")) { @if lock { "Lock " } @else { "Unlock " } (scope) }
            p.meaning { "You sign: " strong { (verb) " " (scope) } ", as " (who.full_name) " (" (who.account) ", " (who.role) ")." }
            (csrf_field(who))
            label for=(format!("{id}-reason")) { "Reason (kept with the signature)" }
            input id=(format!("{id}-reason")) name="reason" required maxlength="500";
            label for=(format!("{id}-password")) { "Your password (the signature)" }
            input id=(format!("{id}-password")) name="password" type="password" autocomplete="current-password" required;
            p { button type="submit" { "Sign and " (verb) } }
        }
    }
}

fn results_table(results: &[&ResultRow], signers: &Signers, zone: &str) -> Markup {
    html! {
        @if results.is_empty() { p { "No results accepted yet." } }
        @else {
            table {
                thead { tr {
                    th scope="col" { "Visit" } th scope="col" { "Minute" } th scope="col" { "Analyte" } th scope="col" { "Value" }
                    th scope="col" { "Version" } th scope="col" { "Accepted" } th scope="col" { "Why" }
                } }
                tbody {
                    @for r in results {
                        tr {
                            td { (r.slot.visit) } td.num { (r.slot.minute) } td { (r.slot.analyte) }
                            td.num { (value_text(r)) } td.num { (r.version) }
                            td { (local(r.accepted_at, zone)) " by " (signers.who(&r.accepted_by)) }
                            td { (r.reason) }
                        }
                    }
                }
            }
        }
    }
}

fn open_table(open: &[&MismatchRow]) -> Markup {
    html! {
        @if open.is_empty() { p { "No open mismatches." } }
        @else {
            table {
                thead { tr { th scope="col" { "ID" } th scope="col" { "Code" } th scope="col" { "Slot" } th scope="col" { "Detail" } th scope="col" { "State" } } }
                tbody {
                    @for m in open {
                        tr {
                            td.num { a href=(format!("/mismatches/{}", m.id)) { (m.id) } }
                            td { (m.code) }
                            td { (m.visit.as_deref().unwrap_or("")) @if let Some(n) = m.minute { "/" (n) } " " (m.analyte.as_deref().unwrap_or("")) }
                            td { (crate::model::printable(&m.detail)) }
                            td { (current_state(m)) }
                        }
                    }
                }
            }
        }
    }
}

pub async fn participant(
    State(console): State<Shared>,
    Extension(who): Extension<SignedIn>,
    Path(code): Path<String>,
) -> Result<Response, PageError> {
    if code.is_empty() {
        return Ok(Redirect::to("/participants").into_response());
    }
    let mut v = view(&console, code.clone()).await?;
    let config = &console.config;
    let zone = config.study.timezone.as_str();
    visit_order(config, &mut v.visits);
    let codes: Vec<&str> = v.visits.iter().map(|x| x.visit.as_str()).collect();
    let scope = LockScope::Participant(code.clone());
    let own_lock = v.locks.iter().any(|l| l.scope == scope);
    let results: Vec<&ResultRow> = v.results.iter().collect();
    let open: Vec<&MismatchRow> = v.open.iter().collect();
    let body = html! {
        @if let Some(site) = &v.participant.site { p { "Site " (site) "." } }
        section aria-labelledby="locks" {
            h2 id="locks" { "Data lock" }
            (locks_list(&covering(&v.locks, &code, None), zone))
            @if who.role >= Role::DataManager {
                (lock_form(&who, &scope, !own_lock, &format!("/participants/{}/{}", segment(&code), if own_lock { "unlock" } else { "lock" })))
            }
        }
        section aria-labelledby="visits" {
            h2 id="visits" { "Visits" }
            @if v.visits.is_empty() { p { "No visits imported." } }
            @else {
                table {
                    thead { tr { th scope="col" { "Visit" } th scope="col" { "Meal start (local)" } th scope="col" { "Results" } th scope="col" { "Lock" } } }
                    tbody {
                        @for visit in &v.visits {
                            tr {
                                th scope="row" { a href=(format!("/participants/{}/{}", segment(&code), segment(&visit.visit))) { (visit.visit) } }
                                td { @match &visit.meal_start { Some(t) => { (t.to_string()) }, None => span.muted { "not set" } } }
                                td.num { (v.results.iter().filter(|r| r.slot.visit == visit.visit).count()) }
                                td { @if v.locks.iter().any(|l| matches!(&l.scope, LockScope::Visit { participant, visit: x } if *participant == code && *x == visit.visit)) { "locked" } }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="curves" {
            h2 id="curves" { "MMTT curves" }
            (chart(config, &code, &codes, &v.results, &v.open))
            @for visit in &codes { (curve_table(config, visit, &v.results, &v.open)) }
        }
        section aria-labelledby="open" { h2 id="open" { "Open mismatches" } (open_table(&open)) }
        section aria-labelledby="results" { h2 id="results" { "Current results" } (results_table(&results, &v.signers, zone)) }
    };
    let title = format!("Participant {code}");
    Ok(layout(&who, &config.study.id, zone, &title, "/participants", body).into_response())
}

pub async fn visit(
    State(console): State<Shared>,
    Extension(who): Extension<SignedIn>,
    Path((code, visit)): Path<(String, String)>,
) -> Result<Markup, PageError> {
    let v = view(&console, code.clone()).await?;
    let Some(this) = v.visits.iter().find(|x| x.visit == visit) else {
        return Err(PageError::NotFound(format!("participant {code} has no visit {visit} in the study database")));
    };
    let config = &console.config;
    let zone = config.study.timezone.as_str();
    let scope = LockScope::Visit { participant: code.clone(), visit: visit.clone() };
    let own_lock = v.locks.iter().any(|l| l.scope == scope);
    let results: Vec<&ResultRow> = v.results.iter().filter(|r| r.slot.visit == visit).collect();
    let open: Vec<&MismatchRow> = v.open.iter().filter(|m| m.visit.as_deref() == Some(visit.as_str())).collect();
    let mut shown = vec![visit.as_str()];
    // Baseline against follow-up: the baseline visit's curve is drawn too.
    if let Some(b) = config.baseline_visit().map(|b| b.code.as_str())
        && b != visit
        && v.visits.iter().any(|x| x.visit == b)
    {
        shown.insert(0, b);
    }
    let body = html! {
        p {
            a href=(format!("/participants/{}", segment(&code))) { "Participant " (code) } ". Meal start (minute 0): "
            @match &this.meal_start { Some(t) => { (t.to_string()) " (local)" }, None => "not set" }
            "."
        }
        section aria-labelledby="locks" {
            h2 id="locks" { "Data lock" }
            (locks_list(&covering(&v.locks, &code, Some(&visit)), zone))
            @if who.role >= Role::DataManager {
                (lock_form(&who, &scope, !own_lock, &format!("/participants/{}/{}/{}", segment(&code), segment(&visit), if own_lock { "unlock" } else { "lock" })))
            }
        }
        section aria-labelledby="curves" {
            h2 id="curves" { "MMTT curve" }
            (chart(config, &code, &shown, &v.results, &v.open))
            (curve_table(config, &visit, &v.results, &v.open))
        }
        section aria-labelledby="open" { h2 id="open" { "Open mismatches" } (open_table(&open)) }
        section aria-labelledby="results" { h2 id="results" { "Current results" } (results_table(&results, &v.signers, zone)) }
    };
    let title = format!("Visit {code}/{visit}");
    Ok(layout(&who, &config.study.id, zone, &title, "/participants", body))
}

#[derive(Debug, Default, Deserialize)]
pub struct LockForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    password: String,
}

/// Why a signed lock or unlock did not happen.
enum Refused {
    Nothing(String),
    Login(LoginError),
}

/// Lock or unlock `scope`: the CSRF token, the role, the reason, whether
/// there is anything to change, then the password (the signature), then
/// the change in one signed transaction; back to `back`.
async fn change_lock(
    console: Shared,
    who: SignedIn,
    form: LockForm,
    scope: LockScope,
    lock: bool,
    back: String,
) -> Result<Response, PageError> {
    check_csrf(&who, &form.csrf)?;
    let command = if lock { "lock" } else { "unlock" };
    require(&who, Role::DataManager, &format!("to {command}"))?;
    let reason = crate::ingest::lock::plain_reason(&form.reason)
        .map_err(|why| PageError::BadRequest(format!("{why}; nothing changed")))?;
    let account = who.account.clone();
    let done = console
        .with_store(Access::Write, move |store, _| {
            if let Some(why) = crate::ingest::lock::refusal(store, &scope, lock)? {
                return Ok(Err(Refused::Nothing(why)));
            }
            let signer = match authenticate(store, &account, &form.password, Role::DataManager, command) {
                Ok(a) => a,
                Err(LoginError::Store(e)) => return Err(e.into()),
                Err(e) => return Ok(Err(Refused::Login(e))),
            };
            let signature = signature(&signer, command, Some(&reason), None);
            crate::ingest::lock::set_lock(store, &signature, &scope, lock, &reason)?;
            tracing::info!(account = %signer.name, "{scope} {command}ed in the console");
            Ok(Ok(()))
        })
        .await?;
    match done {
        Ok(()) => Ok(Redirect::to(&back).into_response()),
        Err(Refused::Nothing(why)) => Err(PageError::BadRequest(format!("{why}; nothing changed"))),
        Err(Refused::Login(e)) => Err(PageError::Forbidden(format!("{e}; nothing changed"))),
    }
}

pub async fn lock_participant(
    State(console): State<Shared>,
    Extension(who): Extension<SignedIn>,
    Path(code): Path<String>,
    Form(form): Form<LockForm>,
) -> Result<Response, PageError> {
    let back = format!("/participants/{}", segment(&code));
    change_lock(console, who, form, LockScope::Participant(code), true, back).await
}

pub async fn unlock_participant(
    State(console): State<Shared>,
    Extension(who): Extension<SignedIn>,
    Path(code): Path<String>,
    Form(form): Form<LockForm>,
) -> Result<Response, PageError> {
    let back = format!("/participants/{}", segment(&code));
    change_lock(console, who, form, LockScope::Participant(code), false, back).await
}

pub async fn lock_visit(
    State(console): State<Shared>,
    Extension(who): Extension<SignedIn>,
    Path((participant, visit)): Path<(String, String)>,
    Form(form): Form<LockForm>,
) -> Result<Response, PageError> {
    let back = format!("/participants/{}/{}", segment(&participant), segment(&visit));
    change_lock(console, who, form, LockScope::Visit { participant, visit }, true, back).await
}

pub async fn unlock_visit(
    State(console): State<Shared>,
    Extension(who): Extension<SignedIn>,
    Path((participant, visit)): Path<(String, String)>,
    Form(form): Form<LockForm>,
) -> Result<Response, PageError> {
    let back = format!("/participants/{}/{}", segment(&participant), segment(&visit));
    change_lock(console, who, form, LockScope::Visit { participant, visit }, false, back).await
}
