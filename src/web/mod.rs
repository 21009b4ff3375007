//! `labfeed serve`: the web console (SPEC §11).
//!
//! axum on the tokio runtime, pages rendered on the server by maud (every
//! interpolation escaped), one small stylesheet and no script needed. The
//! rules every request meets, in [`guard`]:
//! - security headers on every response (a Content-Security-Policy that
//!   allows this origin only, no framing, no referrer, no sniffing, no caching);
//! - every page but the login page needs a session: a GET without one is
//!   sent to the login page, anything else gets 401;
//! - a state-changing request carries the session's CSRF token (checked by
//!   the handler, see [`pages::check_csrf`]) and, when the browser says
//!   where it comes from, comes from this origin;
//! - the session's account must still be enabled in the store (read on
//!   every request: a `labfeed user disable` elsewhere ends its sessions);
//! - roles are checked on every request by the handler ([`pages::require`]).
//!
//! The store is opened per request on a blocking thread, read-only for
//! pages, for writing for actions: `Store` is one connection, and a
//! console's traffic is a few requests a minute.

pub mod pages;
pub mod session;
mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};

use crate::store::Store;
use crate::study::config::Config;
use session::{COOKIE, LoginLimit, Sessions, SignedIn};

/// What a handler opens the study database for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Opens the study database (given by the command that serves).
pub type Opener = Arc<dyn Fn(Access) -> anyhow::Result<Store> + Send + Sync>;

/// Largest request body: forms are small; nothing is uploaded.
pub const MAX_BODY: usize = 64 * 1024;

pub struct Console {
    pub config: Arc<Config>,
    pub open: Opener,
    pub sessions: Sessions,
    pub logins: LoginLimit,
    /// Served over TLS: cookies get `Secure`, responses HSTS.
    pub tls: bool,
    pub queue: pages::QueueCache,
}

pub type Shared = Arc<Console>;

impl Console {
    /// Run `f` on the store, on a blocking thread.
    pub async fn with_store<T: Send + 'static>(
        self: &Arc<Self>,
        access: Access,
        f: impl FnOnce(&mut Store, &Config) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let console = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let mut store = (console.open)(access)?;
            f(&mut store, &console.config)
        })
        .await
        .map_err(|e| anyhow::anyhow!("the request's worker failed: {e}"))?
    }

    /// Whether `account` may still use its session: an account disabled
    /// since (by `labfeed user disable` in another process, or another
    /// console) loses it on its next request.
    async fn still_enabled(self: &Arc<Self>, account: &str) -> anyhow::Result<bool> {
        let account = account.to_owned();
        self.with_store(Access::Read, move |store, _| {
            Ok(store.read(|r| r.account(&account))?.is_some_and(|a| a.enabled))
        })
        .await
    }
}

/// The console's routes, with every rule of [`guard`] applied.
pub fn router(console: Shared) -> Router {
    Router::new()
        .merge(pages::routes())
        .layer(middleware::from_fn_with_state(Arc::clone(&console), guard))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(console)
}

/// The headers every response carries.
fn secure_headers(headers: &mut HeaderMap, tls: bool) {
    let set = |headers: &mut HeaderMap, name: header::HeaderName, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
    );
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::CACHE_CONTROL, "no-store");
    if tls {
        set(headers, header::STRICT_TRANSPORT_SECURITY, "max-age=31536000");
    }
}

/// Paths that need no session: the login page and the stylesheet it uses.
fn is_public(path: &str) -> bool {
    path == "/login" || path.starts_with("/static/")
}

/// A request that says it comes from another origin (a form posted from
/// another site) is refused, whatever its cookie.
fn foreign_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    // Set by the browser itself (no page can forge it): only this origin, or the person.
    let fetch_site = headers.get("sec-fetch-site").and_then(|s| s.to_str().ok());
    if fetch_site.is_some_and(|s| s != "same-origin" && s != "none") {
        return true;
    }
    match headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        None => false,
        // Chromium sends `Origin: null` for its own forms under `Referrer-Policy:
        // no-referrer`; taken only with the browser's word (above) that it is this origin.
        Some("null") => fetch_site.is_none(),
        Some(origin) => {
            let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            host != Some(origin_host)
        }
    }
}

async fn guard(State(console): State<Shared>, mut request: Request, next: Next) -> Response {
    let changes = request.method() != Method::GET && request.method() != Method::HEAD;
    let mut response = if changes && foreign_origin(request.headers()) {
        (StatusCode::FORBIDDEN, "refused: the request comes from another site").into_response()
    } else if is_public(request.uri().path()) {
        next.run(request).await
    } else {
        let token = request
            .headers()
            .get(header::COOKIE)
            .and_then(|c| c.to_str().ok())
            .and_then(|c| session::cookie(c, COOKIE))
            .map(str::to_owned);
        let found = token.and_then(|t| console.sessions.find(&t, Instant::now()).map(|who| (t, who)));
        let alive = match found {
            Some((token, who)) => match console.still_enabled(&who.account).await {
                Ok(true) => Ok(Some(who)),
                Ok(false) => {
                    console.sessions.end(&token);
                    Ok(None)
                }
                Err(e) => Err(pages::PageError::Failed(e)),
            },
            None => Ok(None),
        };
        match alive {
            Ok(Some(who)) => {
                request.extensions_mut().insert::<SignedIn>(who);
                next.run(request).await
            }
            Ok(None) if !changes => Redirect::to("/login").into_response(),
            Ok(None) => (StatusCode::UNAUTHORIZED, "sign in first").into_response(),
            Err(e) => e.into_response(),
        }
    };
    secure_headers(response.headers_mut(), console.tls);
    response
}

/// Why `serve` cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("web.address in {config}: {why}")]
    Address { config: String, why: String },
    #[error("cannot listen on {address}: {error}")]
    Bind { address: SocketAddr, error: std::io::Error },
    #[error("{0}")]
    Tls(String),
}

/// Bind `[web] address` and serve until `shutdown`. A non-loopback address
/// without TLS is refused (SPEC §11). `ready` gets the bound address.
pub async fn serve(
    config: Arc<Config>,
    open: Opener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    let config_name = config.path.display().to_string();
    let address =
        config.web.socket_address().map_err(|why| ServeError::Address { config: config_name.clone(), why })?;
    let acceptor = match config.web.tls() {
        Some((cert, key)) => Some(tls::acceptor(cert, key).map_err(ServeError::Tls)?),
        None if !address.ip().is_loopback() => {
            return Err(ServeError::Address {
                config: config_name,
                why: format!(
                    "{address} is not a loopback address: the console needs TLS there (set [web] tls_cert and \
                     tls_key), or listen on 127.0.0.1"
                ),
            });
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(address).await.map_err(|error| ServeError::Bind { address, error })?;
    let bound = listener.local_addr().unwrap_or(address);
    let console = Arc::new(Console {
        config,
        open,
        sessions: Sessions::default(),
        logins: LoginLimit::default(),
        tls: acceptor.is_some(),
        queue: pages::QueueCache::default(),
    });
    let warm = Arc::clone(&console);
    tokio::task::spawn_blocking(move || match (warm.open)(Access::Read) {
        Ok(store) => warm.queue.warm(&store, &warm.config),
        Err(error) => tracing::warn!(error = format!("{error:#}"), "the mismatch queue could not be computed at start"),
    });
    let app = router(console);
    ready(bound);
    tracing::info!(address = %bound, tls = acceptor.is_some(), "the web console is listening");
    tls::accept_loop(listener, acceptor, app, shutdown).await;
    Ok(())
}
