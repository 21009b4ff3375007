//! The read-and-download pages, locks and accounts: the AUC table, the
//! audit trail, the exports, a sample's trace, participant and visit views
//! (with the lock and unlock forms) and the account list.

mod accounts;
mod auc;
mod audit;
mod exports;
mod participants;
mod samples;

use axum::Router;
use axum::routing::{get, post};

use crate::web::Shared;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/auc", get(auc::page))
        .route("/audit", get(audit::page))
        .route("/exports", get(exports::page))
        .route("/exports/{name}", get(exports::download))
        .route("/samples", get(samples::page))
        .route("/participants", get(participants::list))
        .route("/participants/", get(participants::open))
        .route("/participants/{code}", get(participants::participant))
        .route("/participants/{code}/lock", post(participants::lock_participant))
        .route("/participants/{code}/unlock", post(participants::unlock_participant))
        .route("/participants/{code}/{visit}", get(participants::visit))
        .route("/participants/{code}/{visit}/lock", post(participants::lock_visit))
        .route("/participants/{code}/{visit}/unlock", post(participants::unlock_visit))
        .route("/accounts", get(accounts::page))
        .route("/accounts/add", post(accounts::add))
        .route("/accounts/disable", post(accounts::disable))
}

/// A stored UTC time in the study's zone.
fn local(t: jiff::Timestamp, zone: &str) -> String {
    crate::report::wording::zoned_time(t, zone)
}

/// A path segment for a link: study codes are plain, but a code with odd
/// characters still makes a working link.
fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_segment_is_percent_encoded() {
        assert_eq!(super::segment("U01"), "U01");
        assert_eq!(super::segment("a/b c"), "a%2Fb%20c");
    }
}
