//! A sample's trace: search a sample ID and see every message, result,
//! mismatch and decision that concerns it.

use axum::Extension;
use axum::extract::{Query, State};
use maud::{Markup, html};
use serde::Deserialize;

use super::{local, segment};
use crate::model::printable;
use crate::report::wording::{Signers, current_state};
use crate::store::{ResultRow, SampleTrace};
use crate::web::pages::{PageError, layout};
use crate::web::session::SignedIn;
use crate::web::{Access, Shared};

#[derive(Debug, Default, Deserialize)]
pub struct Params {
    #[serde(default)]
    id: String,
}

/// `0.25 nmol/L`, `<0.01 nmol/L`, with the BLQ flag.
pub fn value_text(r: &ResultRow) -> String {
    let comparator = r.comparator.map(|c| c.as_str()).unwrap_or("");
    let blq = if r.blq { " (BLQ)" } else { "" };
    format!("{comparator}{} {}{blq}", crate::report::format_value(r.value), r.unit)
}

fn opt(v: &Option<String>) -> String {
    v.as_deref().map(|t| printable(t).into_owned()).unwrap_or_default()
}

fn slot_link(p: &Option<String>, v: &Option<String>, minute: Option<i64>, analyte: &Option<String>) -> Markup {
    html! {
        @match (p, v) {
            (Some(p), Some(v)) => {
                a href=(format!("/participants/{}/{}", segment(p), segment(v))) { (p) "/" (v) }
                @if let Some(m) = minute { "/" (m) }
                @if let Some(a) = analyte { " " (a) }
            }
            (Some(p), None) => { a href=(format!("/participants/{}", segment(p))) { (p) } }
            _ => span.muted { "not matched" },
        }
    }
}

pub async fn page(
    State(console): State<Shared>,
    Extension(who): Extension<SignedIn>,
    Query(params): Query<Params>,
) -> Result<Markup, PageError> {
    let id = params.id.trim().to_owned();
    let config = &console.config;
    let zone = config.study.timezone.clone();
    let trace: Option<(SampleTrace, Signers)> = if id.is_empty() {
        None
    } else {
        let wanted = id.clone();
        Some(
            console
                .with_store(Access::Read, move |store, _| {
                    Ok(store.read(|r| Ok((r.sample_trace(&wanted)?, Signers::new(r.accounts()?))))?)
                })
                .await?,
        )
    };
    let body = html! {
        form.search method="get" action="/samples" role="search" aria-label="Find a sample" {
            label for="id" { "Sample ID" }
            input id="id" name="id" value=(id) required autocomplete="off";
            " "
            button type="submit" { "Trace" }
        }
        @if let Some((t, signers)) = &trace {
            h2 { "Sample " (printable(&id)) }
            @match &t.sample {
                Some(s) => p {
                    "In the sample manifest: "
                    a href=(format!("/participants/{}/{}", segment(&s.participant), segment(&s.visit))) { (s.participant) "/" (s.visit) }
                    ", minute " (s.minute) "."
                },
                None => p { "Not in the sample manifest." },
            }
            @if t.observations.is_empty() && t.sample.is_none() {
                p role="status" { "Nothing has arrived for this sample ID." }
            }
            section aria-labelledby="messages" {
                h3 id="messages" { "Messages and reported results" }
                @if t.observations.is_empty() { p { "No result has arrived for this sample." } }
                @else {
                    table {
                        thead { tr {
                            th scope="col" { "Received" } th scope="col" { "Source" } th scope="col" { "Message" }
                            th scope="col" { "Instrument" } th scope="col" { "Test" } th scope="col" { "Reported" }
                            th scope="col" { "Status" } th scope="col" { "Collected (as sent)" } th scope="col" { "Matched to" }
                            th scope="col" { "Outcome" }
                        } }
                        tbody {
                            @for o in &t.observations {
                                tr {
                                    td { @if let Some(at) = o.received_at { (local(at, &zone)) } }
                                    td { (o.source.map(|s| s.as_str()).unwrap_or("")) " " (opt(&o.origin)) }
                                    td { "message " (o.message_id) @if let Some(c) = &o.control_id { ", control ID " (printable(c)) } @if let Some(s) = &o.sender { ", from " (printable(s)) } }
                                    td { (opt(&o.instrument)) }
                                    td { (opt(&o.test_code)) }
                                    td { (opt(&o.reported_value)) " " (opt(&o.reported_unit)) }
                                    td { (opt(&o.status)) }
                                    td { (opt(&o.collected_at)) }
                                    td { (slot_link(&o.participant, &o.visit, o.minute, &o.analyte)) }
                                    td { (o.outcome) }
                                }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="results" {
                h3 id="results" { "Results" }
                @if t.results.is_empty() { p { "No result of this sample was accepted." } }
                @else {
                    table {
                        thead { tr {
                            th scope="col" { "Result" } th scope="col" { "Slot" } th scope="col" { "Value" }
                            th scope="col" { "Version" } th scope="col" { "Accepted" } th scope="col" { "Why" } th scope="col" { "Now" }
                        } }
                        tbody {
                            @for (r, current) in &t.results {
                                tr {
                                    td.num { (r.id) }
                                    td { (slot_link(&Some(r.slot.participant.clone()), &Some(r.slot.visit.clone()), Some(r.slot.minute), &Some(r.slot.analyte.clone()))) }
                                    td.num { @if r.withdrawn { "withdrawn" } @else { (value_text(r)) } }
                                    td.num { (r.version) }
                                    td { (local(r.accepted_at, &zone)) " by " (signers.who(&r.accepted_by)) }
                                    td { (r.reason) }
                                    td { @if *current { "current" } @else { "superseded" } }
                                }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="mismatches" {
                h3 id="mismatches" { "Mismatches" }
                @if t.mismatches.is_empty() { p { "None." } }
                @else {
                    table {
                        thead { tr {
                            th scope="col" { "ID" } th scope="col" { "Code" } th scope="col" { "Slot" }
                            th scope="col" { "Detail" } th scope="col" { "Raised" } th scope="col" { "State" }
                        } }
                        tbody {
                            @for m in &t.mismatches {
                                tr {
                                    td.num { a href=(format!("/mismatches/{}", m.id)) { (m.id) } }
                                    td { (m.code) }
                                    td { (slot_link(&m.participant, &m.visit, m.minute, &m.analyte)) }
                                    td { (printable(&m.detail)) }
                                    td { (local(m.created_at, &zone)) }
                                    td { @if m.resolution.is_none() { strong { "open: " } } (current_state(m)) }
                                }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="decisions" {
                h3 id="decisions" { "Decisions" }
                @if t.decisions.is_empty() { p { "None." } }
                @else {
                    ul {
                        @for (mismatch, d) in &t.decisions {
                            li { "Mismatch " (mismatch) ": " (crate::report::mismatches::history_entry(d, Some(&zone), signers)) }
                        }
                    }
                }
            }
        }
    };
    Ok(layout(&who, &config.study.id, &config.study.timezone, "Sample trace", "/samples", body))
}
