//! Exports to download: the same bytes as the command line writes.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use crate::report::exports::{Csv, auc_csv, lb_csv, mismatches_csv, results_csv};
use crate::web::pages::{PageError, layout};
use crate::web::session::SignedIn;
use crate::web::{Access, Shared};

/// Each download: its name in the URL, what it is, the command that writes the same.
const FILES: &[(&str, &str, &str)] = &[
    ("results.csv", "Accepted results (latest version of each), SPEC §5 columns", "labfeed export results"),
    ("mismatches.csv", "Open mismatches, SPEC §5 columns", "labfeed report mismatches --format csv"),
    ("mismatches-all.csv", "All mismatches, resolved ones too", "labfeed report mismatches --all --format csv"),
    ("lb.csv", "CDISC SDTM LB domain, with NOT DONE records", "labfeed export lb"),
    ("auc.csv", "MMTT AUC per participant, visit and analyte", "labfeed report auc --format csv"),
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
        p.muted { "SAS transport (XPT) files are not offered yet." }
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
    let csv: Csv = console
        .with_store(Access::Read, move |store, config| {
            let now = jiff::Timestamp::now();
            match chosen.as_str() {
                "results.csv" => results_csv(store),
                "mismatches.csv" => mismatches_csv(config, store, false),
                "mismatches-all.csv" => mismatches_csv(config, store, true),
                "lb.csv" => lb_csv(config, store, now),
                _ => auc_csv(config, store, now),
            }
        })
        .await?;
    let disposition = format!("attachment; filename=\"{}\"", file_name(&console.config.study.id, &name));
    let disposition = HeaderValue::from_str(&disposition)
        .map_err(|e| PageError::Failed(anyhow::anyhow!("the download's file name: {e}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8")),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        csv.bytes,
    )
        .into_response())
}
