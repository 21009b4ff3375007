//! The AUC table: the rows of `labfeed report auc`, with the settings that
//! made them (window, baseline, BLQ rule, missing points) above.

use axum::Extension;
use axum::extract::{Query, State};
use maud::{Markup, html};
use serde::Deserialize;

use super::segment;
use crate::report::auc::{AUC_COLUMNS, auc_heading, auc_record, auc_rows};
use crate::store::Scope;
use crate::study::config::{BaselineSample, BlqRule, Config, MissingRule};
use crate::web::pages::{PageError, layout};
use crate::web::session::SignedIn;
use crate::web::{Access, Shared};

/// The `[mmtt]` settings in words.
fn settings(config: &Config) -> Vec<(&'static str, String)> {
    let m = &config.mmtt;
    let baseline_sample = match m.baseline {
        BaselineSample::Zero => "the 0 min sample (baseline = \"zero\")".to_owned(),
        BaselineSample::Mean => "the mean of the −10 and 0 min samples (baseline = \"mean\")".to_owned(),
    };
    let blq = match m.blq {
        BlqRule::HalfLloq => "half the LLOQ (blq = \"half_lloq\")",
        BlqRule::Lloq => "the LLOQ (blq = \"lloq\")",
        BlqRule::Zero => "zero (blq = \"zero\")",
    };
    let missing = match m.missing {
        MissingRule::None => "no AUC for that visit and analyte (missing = \"none\")",
        MissingRule::Interpolate => "interpolated from its neighbours (missing = \"interpolate\")",
    };
    let visit = match config.baseline_visit() {
        Some(v) => format!("{} ({}): delta_auc_mean is a visit's auc_mean minus this visit's", v.code, v.name),
        None => "none configured: no delta_auc_mean".to_owned(),
    };
    let timepoints = m.timepoints.iter().map(i32::to_string).collect::<Vec<_>>().join(", ");
    vec![
        (
            "AUC window",
            format!(
                "{} to {} min after meal start (auc_mean = auc / {} min)",
                m.auc_from,
                m.auc_to,
                m.auc_to - m.auc_from
            ),
        ),
        ("Scheduled timepoints", format!("{timepoints} min")),
        ("Collection window", format!("± {} min unless set per timepoint", m.window_minutes)),
        ("Baseline visit", visit),
        ("Pre-meal value", baseline_sample),
        ("A value below the LLOQ counts as", blq.to_owned()),
        ("A missing point gives", missing.to_owned()),
    ]
}

/// Participants per page: every AUC row of each.
const PARTICIPANTS_PER_PAGE: usize = 100;

#[derive(Debug, Default, Deserialize)]
pub struct Params {
    /// The page continues after this participant code.
    #[serde(default)]
    after: String,
}

pub async fn page(
    State(console): State<Shared>,
    Extension(who): Extension<SignedIn>,
    Query(params): Query<Params>,
) -> Result<Markup, PageError> {
    let after = params.after.clone();
    let (rows, locks, now, last) = console
        .with_store(Access::Read, move |store, config| {
            let now = jiff::Timestamp::now();
            // One page of participants, and the results and visits of those
            // only (a visit's delta needs its baseline: the same participant's).
            let (results, visits, locks, last) = store.read(|r| {
                let mut page = r.participants_after(&after, PARTICIPANTS_PER_PAGE as i64 + 1)?;
                let more = page.len() > PARTICIPANTS_PER_PAGE;
                page.truncate(PARTICIPANTS_PER_PAGE);
                let (Some(first), Some(last)) = (page.first(), page.last()) else {
                    return Ok((Vec::new(), Vec::new(), r.locks()?, None));
                };
                let scope = Scope::Participants { first: first.code.clone(), last: last.code.clone() };
                // The next page starts after the last of these, when there is one.
                let last = more.then(|| last.code.clone());
                Ok((r.current_results_in(&scope)?, r.visits_in(&scope)?, r.locks()?, last))
            })?;
            Ok((auc_rows(config, &results, &visits, now), locks, now, last))
        })
        .await?;
    let config = &console.config;
    let zone = config.study.timezone.as_str();
    let baseline = config.baseline_visit().map(|v| v.code.as_str());
    let (names, numbers) = AUC_COLUMNS.split_at(3);
    let body = html! {
        p { "As of " (super::local(now, zone)) ". The same rows as " code { "labfeed report auc" } "." }
        section aria-labelledby="settings" {
            h2 id="settings" { "Settings" }
            dl.settings {
                @for (name, value) in settings(config) {
                    dt { (name) }
                    dd { (value) }
                }
            }
            @if !locks.is_empty() {
                h3 { "Data locks in force" }
                ul {
                    @for lock in &locks {
                        li { (crate::report::mismatches::lock_words(lock, zone)) }
                    }
                }
            }
        }
        section aria-labelledby="table" {
            h2 id="table" { "AUC per participant, visit and analyte" }
            p.muted { "auc in the analyte's unit × min; auc_mean and delta_auc_mean in the analyte's unit." }
            table.auc {
                thead {
                    tr {
                        @for c in names { th scope="col" { (auc_heading(c)) } }
                        th scope="col" { "unit" }
                        @for c in numbers { th scope="col" { (auc_heading(c)) } }
                    }
                }
                tbody {
                    @for row in &rows {
                        @let fields = auc_record(row);
                        @let unit = config.analytes.get(&row.analyte).map(|a| a.unit.as_str()).unwrap_or("");
                        tr {
                            th scope="row" { a href=(format!("/participants/{}", segment(&row.participant))) { (row.participant) } }
                            td {
                                a href=(format!("/participants/{}/{}", segment(&row.participant), segment(&row.visit))) { (row.visit) }
                                @if baseline == Some(row.visit.as_str()) { " (baseline)" }
                            }
                            td { (row.analyte) }
                            td { (unit) }
                            @for (i, f) in fields.iter().enumerate().skip(3) {
                                @if i == 7 && row.interpolated() {
                                    td { "interpolated" }
                                } @else if i == 3 || i == 4 || i == 5 || i == 6 || i == 9 {
                                    td.num { (if f.is_empty() { "–" } else { f.as_str() }) }
                                } @else {
                                    td { (if f.is_empty() { "–" } else { f.as_str() }) }
                                }
                            }
                        }
                    }
                }
            }
            @if rows.is_empty() && params.after.is_empty() && last.is_none() { p { "No AUC rows yet: no visit's meal has started." } }
            @else if rows.is_empty() { p { "No AUC rows for these participants." } }
            @else { p { (crate::report::wording::plural(rows.len(), "AUC row", "AUC rows")) " shown." } }
            nav.pages aria-label="AUC pages" {
                @if !params.after.is_empty() { a href="/auc" { "First page" } }
                @if let Some(last) = &last {
                    a href=(format!("/auc?after={}", segment(last))) rel="next" { "Next " (PARTICIPANTS_PER_PAGE) " participants" }
                }
            }
            p { a href="/exports/auc.csv" download { "Download the AUC table (CSV, as report auc --format csv)" } }
        }
    };
    Ok(layout(&who, &config.study.id, zone, "AUC", "/auc", body))
}
