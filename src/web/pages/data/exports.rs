//! Exports to download: the same bytes as the command line writes.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use crate::report::exports::{Csv, adam, adam_csv, auc_csv, define, lb, lb_csv, mismatches_csv, results_csv};
use crate::web::pages::{PageError, layout};
use crate::web::session::SignedIn;
use crate::web::{Access, Shared};

/// Each download: its name in the URL, what it is, the command that writes the same.
const FILES: &[(&str, &str, &str)] = &[
    ("results.csv", "Accepted results (latest version of each), SPEC §5 columns", "labfeed export results"),
    ("mismatches.csv", "Open mismatches, SPEC §5 columns", "labfeed report mismatches --format csv"),
    ("mismatches-all.csv", "All mismatches, resolved ones too", "labfeed report mismatches --all --format csv"),
    ("lb.csv", "CDISC SDTM LB domain, with NOT DONE records", "labfeed export lb"),
    ("lb.xpt", "The same LB domain as SAS transport (XPORT v5)", "labfeed export lb --format xpt"),
    ("auc.csv", "MMTT AUC per participant, visit and analyte", "labfeed report auc --format csv"),
    ("admmtt.csv", "ADaM BDS of the MMTT outcomes (AUCs, change from baseline)", "labfeed export adam"),
    ("admmtt.xpt", "The same ADaM dataset as SAS transport (XPORT v5)", "labfeed export adam --format xpt"),
    ("define.xml", "define.xml (Define-XML 2.1) describing lb.xpt and admmtt.xpt", "labfeed export define"),
    ("define.html", "The same definitions as a page to read", "labfeed export define --format html"),
];

pub async fn page(State(console): State<Shared>, Extension(who): Extension<SignedIn>) -> Markup {
    let config = &console.config;
    let body = html! {
        p { "Each file is made when you download it, from the study database as it is then: the same bytes as the command next to it." }
        table {
            thead { tr { th scope="col" { "File" } th scope="col" { "What it holds" } th scope="col" { "The same as" } } }
            tbody {
                @for (name, what, command) in FILES {
                    tr {
                        th scope="row" { a href=(format!("/exports/{name}")) download=(format!("{}-{name}", config.study.id)) { (name) } }
                        td { (what) }
                        td { code { (command) } }
                    }
                }
            }
        }
    };
    layout(&who, &config.study.id, &config.study.timezone, "Exports", "/exports", body)
}

/// A file name safe in a header: the study ID's plain characters only.
fn file_name(study: &str, name: &str) -> String {
    let study: String = study
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
        .collect();
    format!("{study}-{name}")
}

pub async fn download(
    State(console): State<Shared>,
    Extension(_who): Extension<SignedIn>,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    if !FILES.iter().any(|(n, ..)| *n == name) {
        return Err(PageError::NotFound(format!("there is no export named {name}")));
    }
    let chosen = name.clone();
    let bytes: Vec<u8> = console
        .with_store(Access::Read, move |store, config| {
            let now = jiff::Timestamp::now();
            let created = jiff::tz::TimeZone::UTC.to_datetime(now);
            // A value XPT cannot hold is named (variable and record), as on the command line.
            let xpt =
                |made: Result<Vec<u8>, String>| made.map_err(|e| anyhow::anyhow!("the XPT file cannot be made: {e}"));
            let csv = |made: anyhow::Result<Csv>| made.map(|c| c.bytes);
            match chosen.as_str() {
                "results.csv" => csv(results_csv(store)),
                "mismatches.csv" => csv(mismatches_csv(config, store, false)),
                "mismatches-all.csv" => csv(mismatches_csv(config, store, true)),
                "lb.csv" => csv(lb_csv(config, store, now)),
                "lb.xpt" => xpt(crate::report::lb_xpt(&lb(config, store, now)?, created)),
                "admmtt.csv" => csv(adam_csv(config, store, now)),
                "admmtt.xpt" => xpt(crate::report::adam::adam_xpt(&adam(config, store, now)?, created)),
                "define.xml" | "define.html" => define(config, store, now, chosen == "define.html")?
                    .map(String::into_bytes)
                    .map_err(|e| anyhow::anyhow!("{chosen} cannot be made: {e}")),
                _ => csv(auc_csv(config, store, now)),
            }
        })
        .await?;
    let content_type = match name.rsplit('.').next() {
        Some("xpt") => "application/octet-stream",
        Some("xml") => "application/xml; charset=utf-8",
        Some("html") => "text/html; charset=utf-8",
        _ => "text/csv; charset=utf-8",
    };
    let disposition = format!("attachment; filename=\"{}\"", file_name(&console.config.study.id, &name));
    let disposition = HeaderValue::from_str(&disposition)
        .map_err(|e| PageError::Failed(anyhow::anyhow!("the download's file name: {e}")))?;
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type)), (header::CONTENT_DISPOSITION, disposition)],
        bytes,
    )
        .into_response())
}
