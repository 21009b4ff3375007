//! The console's pages: one module per page, a shared layout, and the
//! checks every handler makes (role, CSRF).

mod data;
mod login;
mod mismatches;
mod today;

pub use mismatches::QueueCache;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};

use super::Shared;
use super::session::{SignedIn, same};
use crate::store::Role;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/login", get(login::page).post(login::submit))
        .route("/logout", axum::routing::post(login::logout))
        .route("/", get(today::page))
        .route("/static/console.css", get(stylesheet))
        .merge(mismatches::routes())
        .merge(data::routes())
}

/// The stylesheet, compiled in: nothing is fetched from elsewhere.
async fn stylesheet() -> Response {
    ([(axum::http::header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("../../../static/console.css"))
        .into_response()
}

/// A page that could not be made: said plainly, logged, never a stack trace.
#[derive(Debug)]
pub enum PageError {
    /// The account's role does not allow this.
    Forbidden(String),
    /// The form's CSRF token is missing or wrong.
    Csrf,
    NotFound(String),
    BadRequest(String),
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for PageError {
    fn from(e: anyhow::Error) -> PageError {
        PageError::Failed(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, text) = match self {
            PageError::Forbidden(why) => (StatusCode::FORBIDDEN, why),
            PageError::Csrf => (
                StatusCode::FORBIDDEN,
                "the form was not sent from this console's own page (its security token is missing or old); \
                 reload the page and try again"
                    .to_owned(),
            ),
            PageError::NotFound(what) => (StatusCode::NOT_FOUND, what),
            PageError::BadRequest(why) => (StatusCode::BAD_REQUEST, why),
            PageError::Failed(e) => {
                tracing::error!(error = %format!("{e:#}"), "a console page failed");
                (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
            }
        };
        let body = bare(
            "labfeed",
            html! { main { h1 { "Not done" } p role="alert" { (text) } p { a href="/" { "Back to Today" } } } },
        );
        (status, body).into_response()
    }
}

/// The account may do what `needs` allows, or the request is refused.
pub fn require(who: &SignedIn, needs: Role, what: &str) -> Result<(), PageError> {
    if who.role >= needs {
        Ok(())
    } else {
        Err(PageError::Forbidden(format!("{what} needs the role {needs}; {} is {}", who.account, who.role)))
    }
}

/// The CSRF token of a submitted form must be the session's.
pub fn check_csrf(who: &SignedIn, sent: &str) -> Result<(), PageError> {
    if same(&who.csrf, sent) { Ok(()) } else { Err(PageError::Csrf) }
}

/// The hidden field every form carries.
pub fn csrf_field(who: &SignedIn) -> Markup {
    html! { input type="hidden" name="csrf" value=(who.csrf); }
}

/// A page without the navigation (the login page, errors).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                link rel="stylesheet" href="/static/console.css";
            }
            body { (body) }
        }
    }
}

/// The navigation, in the order people use it.
const NAV: &[(&str, &str)] = &[
    ("/", "Today"),
    ("/mismatches", "Mismatches"),
    ("/participants", "Participants"),
    ("/samples", "Sample trace"),
    ("/auc", "AUC"),
    ("/audit", "Audit trail"),
    ("/exports", "Exports"),
];

/// A page of the console: navigation, who is signed in, the study's time zone.
pub fn layout(who: &SignedIn, study: &str, zone: &str, title: &str, current: &str, body: Markup) -> Markup {
    bare(
        &format!("{title} · labfeed {study}"),
        html! {
            header {
                nav aria-label="Console" {
                    span.brand { "labfeed " (study) }
                    ul {
                        @for (href, label) in NAV {
                            li { a href=(href) aria-current=[(*href == current).then_some("page")] { (label) } }
                        }
                        @if who.role >= Role::Admin {
                            li { a href="/accounts" aria-current=[("/accounts" == current).then_some("page")] { "Accounts" } }
                        }
                    }
                    form.signout method="post" action="/logout" {
                        (csrf_field(who))
                        span { (who.full_name) " (" (who.account) ", " (who.role) ")" }
                        button type="submit" { "Sign out" }
                    }
                }
            }
            main {
                h1 { (title) }
                (body)
            }
            footer { p { "Times are shown in " (zone) "." } }
        },
    )
}
