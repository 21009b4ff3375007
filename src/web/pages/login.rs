//! Signing in and out. A login is checked as the command line checks one
//! (`crate::login::authenticate`): a refusal is audited and counts towards
//! the account's lockout (SPEC §8); on top, one address may try ten times a
//! minute.

use std::net::SocketAddr;
use std::time::Instant;

use axum::Extension;
use axum::Form;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::{PageError, bare, check_csrf};
use crate::login::{LoginError, authenticate};
use crate::store::Role;
use crate::web::session::{COOKIE, LoginLimit, SignedIn, random_token};
use crate::web::{Access, Shared};

fn form(study: &str, message: Option<&str>, name: &str) -> Markup {
    bare(
        &format!("Sign in · labfeed {study}"),
        html! {
            main {
                h1 { "labfeed " (study) ": sign in" }
                @if let Some(message) = message { p role="alert" { (message) } }
                form.login method="post" action="/login" {
                    label for="name" { "Account" }
                    input id="name" name="name" autocomplete="username" required value=(name);
                    label for="password" { "Password" }
                    input id="password" name="password" type="password" autocomplete="current-password" required;
                    p { button type="submit" { "Sign in" } }
                }
            }
        },
    )
}

pub async fn page(State(console): State<Shared>) -> Markup {
    form(&console.config.study.id, None, "")
}

#[derive(Deserialize)]
pub struct Login {
    name: String,
    password: String,
}

/// The session cookie: not readable by scripts, sent to this site only,
/// and only over TLS when the console has it.
fn session_cookie(token: &str, tls: bool, max_age: Option<u64>) -> Result<HeaderValue, PageError> {
    let secure = if tls { "; Secure" } else { "" };
    let age = max_age.map_or(String::new(), |s| format!("; Max-Age={s}"));
    HeaderValue::from_str(&format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}{age}"))
        .map_err(|e| PageError::Failed(anyhow::anyhow!("cookie: {e}")))
}

pub async fn submit(
    State(console): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(login): Form<Login>,
) -> Result<Response, PageError> {
    let study = console.config.study.id.clone();
    if !console.logins.allow(peer.ip(), Instant::now()) {
        let message = format!(
            "too many sign-in attempts from this address; wait a minute ({} a minute at most)",
            LoginLimit::PER_MINUTE
        );
        return Ok((StatusCode::TOO_MANY_REQUESTS, form(&study, Some(&message), &login.name)).into_response());
    }
    let name = login.name.trim().to_owned();
    let password = login.password;
    let checked = console
        .with_store(Access::Write, move |store, _| {
            Ok(authenticate(store, &name, &password, Role::Viewer, "the web console"))
        })
        .await?;
    let account = match checked {
        Ok(account) => account,
        Err(LoginError::Store(e)) => return Err(PageError::Failed(e.into())),
        Err(refused) => {
            tracing::warn!(peer = %peer.ip(), "console sign-in refused: {refused}");
            return Ok(
                (StatusCode::UNAUTHORIZED, form(&study, Some(&refused.to_string()), &login.name)).into_response()
            );
        }
    };
    let who = SignedIn {
        account: account.name.clone(),
        full_name: account.full_name.clone(),
        role: account.role,
        csrf: random_token().map_err(|e| PageError::Failed(e.into()))?,
    };
    let token = console.sessions.start(who, Instant::now()).map_err(|e| PageError::Failed(e.into()))?;
    tracing::info!(account = %account.name, peer = %peer.ip(), "signed in to the console");
    let mut response = Redirect::to("/").into_response();
    response.headers_mut().insert(header::SET_COOKIE, session_cookie(&token, console.tls, None)?);
    Ok(response)
}

#[derive(Deserialize)]
pub struct Logout {
    /// Missing reads as empty, so it is refused as a wrong token (403), not a malformed form.
    #[serde(default)]
    csrf: String,
}

pub async fn logout(
    State(console): State<Shared>,
    Extension(who): Extension<SignedIn>,
    headers: axum::http::HeaderMap,
    Form(form): Form<Logout>,
) -> Result<Response, PageError> {
    check_csrf(&who, &form.csrf)?;
    if let Some(token) =
        headers.get(header::COOKIE).and_then(|c| c.to_str().ok()).and_then(|c| crate::web::session::cookie(c, COOKIE))
    {
        console.sessions.end(token);
    }
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(header::SET_COOKIE, session_cookie("", console.tls, Some(0))?);
    Ok(response)
}
