//! Accounts (admins only): the list `labfeed user list` shows, never a
//! password or its hash; adding an account and disabling one, each signed
//! by the admin with the password again, as `labfeed user add|disable` do.
//! Changing a password stays on the command line (`labfeed user passwd`).

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use maud::{Markup, html};
use serde::Deserialize;

use crate::login::{
    LoginError, add_refusal, authenticate, check_new_password, disable_refusal, hash_password, signature,
};
use crate::store::{Account, Role};
use crate::web::pages::{PageError, check_csrf, csrf_field, layout, require};
use crate::web::session::SignedIn;
use crate::web::{Access, Shared};

/// `enabled`, `disabled` or `refused until … UTC`, as `user list` says it.
fn state(a: &Account, now: jiff::Timestamp) -> String {
    match (a.enabled, a.refused_until) {
        (false, _) => "disabled".to_owned(),
        (true, Some(until)) if until > now => format!("refused until {} UTC", until.strftime("%Y-%m-%d %H:%M")),
        (true, _) => "enabled".to_owned(),
    }
}

pub async fn page(State(console): State<Shared>, Extension(who): Extension<SignedIn>) -> Result<Markup, PageError> {
    require(&who, Role::Admin, "the account list")?;
    let accounts = console.with_store(Access::Read, |store, _| Ok(store.read(|r| r.accounts())?)).await?;
    let now = jiff::Timestamp::now();
    let config = &console.config;
    let signer = html! { (who.full_name) " (" (who.account) ", " (who.role) ")" };
    let body = html! {
        p { "The same list as " code { "labfeed user list" } ". Passwords are changed with "
            code { "labfeed user passwd" } " on the command line." }
        table.accounts {
            thead { tr {
                th scope="col" { "Name" } th scope="col" { "Full name" } th scope="col" { "Role" }
                th scope="col" { "State" } th scope="col" { "Created (UTC)" }
            } }
            tbody {
                @for a in &accounts {
                    tr {
                        th scope="row" { (a.name) }
                        td { (a.full_name) }
                        td { (a.role) }
                        td { (state(a, now)) }
                        td { (a.created_at.strftime("%Y-%m-%d %H:%M").to_string()) }
                    }
                }
            }
        }
        form.signed method="post" action="/accounts/add" aria-labelledby="add-title" {
            h2 id="add-title" { "Add an account" }
            p.meaning { "You sign: " strong { "user add" } ", as " (signer) "." }
            (csrf_field(&who))
            label for="add-name" { "Account name (letters, digits, '.', '_', '-')" }
            input id="add-name" name="name" required maxlength="64" autocomplete="off";
            label for="add-full-name" { "Full name" }
            input id="add-full-name" name="full_name" maxlength="200" autocomplete="off";
            label for="add-role" { "Role" }
            select id="add-role" name="role" {
                @for role in Role::ALL { option value=(role.as_str()) { (role.as_str()) } }
            }
            label for="add-new-password" { "The new account's password (at least " (crate::login::MIN_PASSWORD_CHARS) " characters)" }
            input id="add-new-password" name="new_password" type="password" autocomplete="new-password" required;
            label for="add-new-password-again" { "The same password again" }
            input id="add-new-password-again" name="new_password_again" type="password" autocomplete="new-password" required;
            label for="add-reason" { "Reason (optional, kept with the signature)" }
            input id="add-reason" name="reason" maxlength="500";
            label for="add-password" { "Your password (the signature)" }
            input id="add-password" name="password" type="password" autocomplete="current-password" required;
            p { button type="submit" { "Sign and add" } }
        }
        form.signed method="post" action="/accounts/disable" aria-labelledby="disable-title" {
            h2 id="disable-title" { "Disable an account" }
            p.meaning { "You sign: " strong { "user disable" } ", as " (signer) ". Accounts are never deleted: a disabled one can no longer sign in." }
            (csrf_field(&who))
            label for="disable-name" { "Account to disable" }
            select id="disable-name" name="name" {
                @for a in accounts.iter().filter(|a| a.enabled) { option value=(a.name) { (a.name) " (" (a.full_name) ", " (a.role) ")" } }
            }
            label for="disable-reason" { "Reason (optional, kept with the signature)" }
            input id="disable-reason" name="reason" maxlength="500";
            label for="disable-password" { "Your password (the signature)" }
            input id="disable-password" name="password" type="password" autocomplete="current-password" required;
            p { button type="submit" { "Sign and disable" } }
        }
    };
    Ok(layout(&who, &config.study.id, &config.study.timezone, "Accounts", "/accounts", body))
}

#[derive(Debug, Default, Deserialize)]
pub struct AddForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    full_name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    new_password_again: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    password: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct DisableForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    password: String,
}

/// An optional reason: none when empty, else one line of plain text.
fn optional_reason(text: &str) -> Result<Option<String>, PageError> {
    match text.trim() {
        "" => Ok(None),
        text => crate::ingest::lock::plain_reason(text)
            .map(Some)
            .map_err(|why| PageError::BadRequest(format!("{why}; nothing changed"))),
    }
}

/// Why a signed account change did not happen.
enum Refused {
    Nothing(String),
    Login(LoginError),
}

fn answer(done: Result<(), Refused>) -> Result<Response, PageError> {
    match done {
        Ok(()) => Ok(Redirect::to("/accounts").into_response()),
        Err(Refused::Nothing(why)) => Err(PageError::BadRequest(format!("{why}; nothing changed"))),
        Err(Refused::Login(e)) => Err(PageError::Forbidden(format!("{e}; nothing changed"))),
    }
}

pub async fn add(
    State(console): State<Shared>,
    Extension(who): Extension<SignedIn>,
    Form(form): Form<AddForm>,
) -> Result<Response, PageError> {
    check_csrf(&who, &form.csrf)?;
    require(&who, Role::Admin, "adding an account")?;
    let bad = |why: String| PageError::BadRequest(format!("{why}; nothing changed"));
    let name = form.name.trim().to_owned();
    let role = Role::from_name(form.role.trim())
        .ok_or_else(|| bad(format!("role {:?}: expected viewer, lab, data-manager or admin", form.role)))?;
    let full_name = match form.full_name.trim() {
        "" => name.clone(),
        text => crate::ingest::lock::plain_reason(text)
            .map_err(|_| bad("the full name must be one line of plain text".to_owned()))?,
    };
    let reason = optional_reason(&form.reason)?;
    if form.new_password != form.new_password_again {
        return Err(bad("the two new passwords differ".to_owned()));
    }
    check_new_password(&name, &form.new_password).map_err(bad)?;
    let account = who.account.clone();
    let done = console
        .with_store(Access::Write, move |store, _| {
            if let Some(why) = add_refusal(store, &name)? {
                return Ok(Err(Refused::Nothing(why)));
            }
            let admin = match authenticate(store, &account, &form.password, Role::Admin, "user add") {
                Ok(a) => a,
                Err(LoginError::Store(e)) => return Err(e.into()),
                Err(e) => return Ok(Err(Refused::Login(e))),
            };
            let hash = hash_password(&form.new_password).map_err(|e| anyhow::anyhow!("{e}"))?;
            let signature = signature(&admin, "user add", reason.as_deref(), None);
            store.write_signed(&signature, |tx| tx.add_account(&name, &full_name, role, &hash))?;
            tracing::info!(account = %admin.name, added = %name, "account added in the console");
            Ok(Ok(()))
        })
        .await?;
    answer(done)
}

pub async fn disable(
    State(console): State<Shared>,
    Extension(who): Extension<SignedIn>,
    Form(form): Form<DisableForm>,
) -> Result<Response, PageError> {
    check_csrf(&who, &form.csrf)?;
    require(&who, Role::Admin, "disabling an account")?;
    let reason = optional_reason(&form.reason)?;
    let name = form.name.trim().to_owned();
    let account = who.account.clone();
    let done = console
        .with_store(Access::Write, move |store, _| {
            if let Some(why) = disable_refusal(store, &name)? {
                return Ok(Err(Refused::Nothing(why)));
            }
            let admin = match authenticate(store, &account, &form.password, Role::Admin, "user disable") {
                Ok(a) => a,
                Err(LoginError::Store(e)) => return Err(e.into()),
                Err(e) => return Ok(Err(Refused::Login(e))),
            };
            let signature = signature(&admin, "user disable", reason.as_deref(), None);
            store.write_signed(&signature, |tx| tx.disable_account(&name))?;
            tracing::info!(account = %admin.name, disabled = %name, "account disabled in the console");
            Ok(Ok(()))
        })
        .await?;
    // Its sessions end at their next request (see `web::guard`).
    answer(done)
}
