//! Today: the sources and their health, and the latest arrival of each.

use axum::Extension;
use axum::extract::State;
use maud::{Markup, html};

use super::{PageError, layout};
use crate::web::session::SignedIn;
use crate::web::{Access, Shared};

pub async fn page(State(console): State<Shared>, Extension(who): Extension<SignedIn>) -> Result<Markup, PageError> {
    let (arrivals, open) = console
        .with_store(Access::Read, |store, _| {
            Ok(store.read(|r| Ok((r.last_arrival_per_source()?, r.open_mismatch_count()?)))?)
        })
        .await?;
    let config = &console.config;
    let health = crate::daemon::health::cannot_commit(&crate::daemon::health::local_base(config));
    let body = html! {
        section aria-labelledby="health" {
            h2 id="health" { "Commit health" }
            @match &health {
                Some(line) => p role="alert" { "The daemon " (line) },
                None => p.ok { "No commit failure reported." },
            }
        }
        section aria-labelledby="sources" {
            h2 id="sources" { "Last arrival per source" }
            table {
                thead { tr { th scope="col" { "Source" } th scope="col" { "Origin" } th scope="col" { "Instrument" } th scope="col" { "Received (UTC)" } th scope="col" { "Outcome" } th scope="col" { "Accepted" } th scope="col" { "Mismatches" } } }
                tbody {
                    @for a in &arrivals {
                        tr {
                            td { (a.source) }
                            td { (crate::model::printable(&a.origin)) }
                            td { (a.instrument.as_deref().unwrap_or("")) }
                            td { (a.received_at) }
                            td { (a.outcome.map(|o| o.as_str()).unwrap_or("not processed")) }
                            td.num { (a.accepted) }
                            td.num { (a.mismatches) }
                        }
                    }
                }
            }
            @if arrivals.is_empty() { p { "Nothing received yet." } }
        }
        section aria-labelledby="queue" {
            h2 id="queue" { "Review" }
            p { a href="/mismatches" { (open) " open mismatches" } }
        }
    };
    Ok(layout(&who, &config.study.id, &config.study.timezone, "Today", "/", body))
}
