//! The AUC table: the rows of `labfeed report auc`, with the settings that
//! made them (window, baseline, BLQ rule, missing points) above.

use axum::Extension;
use axum::extract::{Query, State};
use maud::{Markup, html};
use serde::Deserialize;

use super::segment;
use crate::report::auc::{AUC_COLUMNS, auc_heading, auc_record, auc_rows};
use crate::store::ResultRow;
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
    let (rows, locks, now) = console
        .with_store(Access::Read, |store, config| {
            let now = jiff::Timestamp::now();
            let (results, visits, locks) = store.read(|r| {
                let results: Vec<ResultRow> = r.current_results()?.into_iter().map(|c| c.result).collect();
                Ok((results, r.visits()?, r.locks()?))
            })?;
            Ok((auc_rows(config, &results, &visits, now), locks, now))
        })
        .await?;
    let config = &console.config;
    let zone = config.study.timezone.as_str();
    let baseline = config.baseline_visit().map(|v| v.code.as_str());
    let (names, numbers) = AUC_COLUMNS.split_at(3);
    // The whole table is computed (a visit's delta needs its baseline); a
    // page shows the rows of up to PARTICIPANTS_PER_PAGE participants.
    let total = rows.len();
    let mut codes: Vec<&str> =
        rows.iter().map(|r| r.participant.as_str()).filter(|p| *p > params.after.as_str()).collect();
    codes.dedup();
    let more = codes.len() > PARTICIPANTS_PER_PAGE;
    codes.truncate(PARTICIPANTS_PER_PAGE);
    let last = codes.last().map(|c| (*c).to_owned());
    let rows: Vec<&crate::study::auc::AucRow> =
        rows.iter().filter(|r| codes.binary_search(&r.participant.as_str()).is_ok()).collect();
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
                    @for row in rows.iter().copied() {
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
            @if total == 0 { p { "No AUC rows yet: no visit's meal has started." } }
            @else { p { (crate::report::wording::plural(rows.len(), "AUC row", "AUC rows")) " shown of " (total) "." } }
            nav.pages aria-label="AUC pages" {
                @if !params.after.is_empty() { a href="/auc" { "First page" } }
                @if more { @if let Some(last) = &last {
                    a href=(format!("/auc?after={}", segment(last))) rel="next" { "Next " (PARTICIPANTS_PER_PAGE) " participants" }
                } }
            }
            p { a href="/exports/auc.csv" download { "Download the AUC table (CSV, as report auc --format csv)" } }
        }
    };
    Ok(layout(&who, &config.study.id, zone, "AUC", "/auc", body))
}
