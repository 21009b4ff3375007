//! The study database on PostgreSQL (SPEC §10): the foundation only.
//!
//! - [`connect`] opens a session from a `postgresql://USER@HOST:PORT/DB` URL,
//!   TLS by rustls (ring) as `?sslmode=` says;
//! - [`migrate`] brings the database to [`latest_version`]
//!   (`schema_pg_v1.sql`: SQLite's schema 7 in one step);
//! - [`InstanceLock`] keeps two daemons with one instance name off one database;
//! - [`Session`] runs the store's queries, and takes the write lock that
//!   makes writers from every site take turns (one unbroken audit chain,
//!   slot decisions that see every earlier commit).

mod catalog;
mod deferred;
mod instance;
mod migrate;
mod session;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use ::postgres::config::{Host, SslMode};
use ::postgres::{Client, Config, NoTls};

pub(crate) use catalog::schema_problem;
pub use instance::{InstanceLock, instance_key};
pub use migrate::{MIGRATIONS, Migration, VERSION_TABLE, latest_version, migrate, schema_version};
pub use session::Session;

/// The first key of labfeed's two-key advisory locks ("LBFD", as SQLite's
/// `application_id`). Instance locks use the one-key form, whose key space
/// PostgreSQL keeps apart from this one.
pub(crate) const LOCK_CLASS: i32 = 0x4C42_4644;

/// How long a connection attempt may take unless the URL says `connect_timeout`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Unless the URL says otherwise: a server that went silent (no reset, a
/// cable or VPN gone) is noticed within about this long, by unacknowledged
/// data (`tcp_user_timeout`) or by keepalives on an idle session, instead of
/// the kernel's 15 minutes or 2 hours.
pub const SILENCE_TIMEOUT: Duration = Duration::from_secs(20);

/// What can go wrong with a PostgreSQL study database. Messages name the
/// database as `postgresql://USER@HOST:PORT/DB`, never with a password.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("the database URL {0}")]
    Url(String),

    #[error("cannot set up TLS for {target}: {why}")]
    Tls { target: String, why: String },

    #[error("cannot connect to {target}: {}", chain(.error))]
    Connect { target: String, error: ::postgres::Error },

    #[error("{target}: {what}: {}", chain(.error))]
    Query { target: String, what: &'static str, error: ::postgres::Error },

    #[error("{target} is not a labfeed database: {why}")]
    NotLabfeed { target: String, why: String },

    #[error(
        "the database {target} has schema version {found}, newer than this labfeed knows (up to {known}); \
         use the newer labfeed that wrote it"
    )]
    TooNew { target: String, found: i64, known: i64 },

    #[error("cannot migrate the database {target} to schema version {version}: {}", chain(.error))]
    Migrate { target: String, version: i64, error: ::postgres::Error },

    #[error(
        "instance {instance:?} is already running on {target}{holder}; give each daemon its own [storage] instance"
    )]
    InstanceHeld { instance: String, target: String, holder: String },
}

/// A client error with its causes ("error connecting to server" alone
/// does not say that the connection was refused). Fields of the server's
/// message, such as DETAIL, are left out: they may quote row values.
pub(crate) fn chain(error: &::postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// The database a session is connected to, for messages: user, host, port
/// and database name, never the password.
pub fn target(config: &Config) -> String {
    let user = config.get_user().unwrap_or("");
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or(user);
    format!("postgresql://{user}@{host}:{port}/{db}")
}

/// The name the session has in messages (see [`target`]).
pub(crate) fn client_target(client: &mut Client) -> String {
    let row = client.query_one(
        "SELECT current_user::text, coalesce(inet_server_addr()::text, 'localhost'), \
                coalesce(inet_server_port(), 5432), current_database()::text",
        &[],
    );
    match row {
        Ok(r) => {
            let host: String = r.get(1);
            let host = host.strip_suffix("/32").or_else(|| host.strip_suffix("/128")).unwrap_or(&host).to_owned();
            format!("postgresql://{}@{}:{}/{}", r.get::<_, String>(0), host, r.get::<_, i32>(2), r.get::<_, String>(3))
        }
        Err(_) => "the PostgreSQL database".to_owned(),
    }
}

/// Parse a `postgresql://` (or `postgres://`) URL. A URL without `sslmode`
/// gets `require`, or `disable` when the server is on this machine (a
/// loopback address or a Unix socket): secure by default, and no
/// certificate to set up for a local server.
pub fn parse_url(url: &str) -> Result<Config, PgError> {
    let Some(rest) = url.strip_prefix("postgresql://").or_else(|| url.strip_prefix("postgres://")) else {
        return Err(PgError::Url("does not start with postgresql://".to_owned()));
    };
    let mut config =
        Config::from_str(url).map_err(|e| PgError::Url(format!("is not a valid postgresql:// URL: {e}")))?;
    let query = rest.split_once('?').map_or("", |(_, q)| q);
    let given = |key: &str| query.split('&').any(|kv| kv.split('=').next() == Some(key));
    if !given("sslmode") {
        config.ssl_mode(if is_local(&config) { SslMode::Disable } else { SslMode::Require });
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if !given("tcp_user_timeout") {
        config.tcp_user_timeout(SILENCE_TIMEOUT);
    }
    if !given("keepalives_idle") {
        config.keepalives_idle(SILENCE_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("labfeed");
    }
    Ok(config)
}

fn is_local(config: &Config) -> bool {
    !config.get_hosts().is_empty()
        && config.get_hosts().iter().all(|h| match h {
            Host::Unix(_) => true,
            Host::Tcp(name) => {
                name == "localhost"
                    || name.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
            }
        })
}

/// Trust anchors for `sslmode=require`/`prefer`: the system's (where a
/// hospital installs its own CA) and Mozilla's (webpki-roots). The server's
/// certificate is always verified, also for `require` (libpq's `require`
/// does not verify; labfeed's does).
fn tls_config(target: &str) -> Result<rustls::ClientConfig, PgError> {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let native = rustls_native_certs::load_native_certs();
    let (_added, _unparsable) = roots.add_parsable_certificates(native.certs);
    // ring, not aws-lc-rs: no C/cmake build. rustls deprecates ring's provider
    // for lacking post-quantum key exchange, which the PostgreSQL servers
    // labfeed meets (OpenSSL 3.0 on Debian 12) do not offer either; see
    // docs/multi-site.md for the switch.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PgError::Tls { target: target.to_owned(), why: e.to_string() })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// Open a session on the database `url` names (see [`parse_url`]).
pub fn connect(url: &str) -> Result<Client, PgError> {
    connect_with(&parse_url(url)?)
}

/// Open a session with a parsed configuration.
pub fn connect_with(config: &Config) -> Result<Client, PgError> {
    let target = target(config);
    let connected = match config.get_ssl_mode() {
        SslMode::Disable => config.connect(NoTls),
        _ => config.connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(&target)?)),
    };
    connected.map_err(|error| PgError::Connect { target, error })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_defaults_to_require_off_this_machine() {
        let remote = parse_url("postgresql://labfeed@db.example.org:5432/study").unwrap();
        assert_eq!(remote.get_ssl_mode(), SslMode::Require);
        for local in ["postgresql://u@127.0.0.1:5432/s", "postgresql://u@localhost/s", "postgres://u@[::1]:5433/s"] {
            assert_eq!(parse_url(local).unwrap().get_ssl_mode(), SslMode::Disable, "{local}");
        }
        let asked = parse_url("postgresql://u@127.0.0.1/s?sslmode=require").unwrap();
        assert_eq!(asked.get_ssl_mode(), SslMode::Require);
        let plain = parse_url("postgresql://u@db.example.org/s?sslmode=disable").unwrap();
        assert_eq!(plain.get_ssl_mode(), SslMode::Disable);
    }

    #[test]
    fn messages_never_carry_the_password() {
        let config = parse_url("postgresql://site:s3cret@db.example.org:6432/study?sslmode=prefer").unwrap();
        assert_eq!(target(&config), "postgresql://site@db.example.org:6432/study");
        assert_eq!(config.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        assert_eq!(config.get_tcp_user_timeout(), Some(&SILENCE_TIMEOUT));
        assert_eq!(config.get_keepalives_idle(), SILENCE_TIMEOUT);
        let asked = parse_url("postgresql://u@db/s?keepalives_idle=600&tcp_user_timeout=5").unwrap();
        assert_eq!(asked.get_keepalives_idle(), Duration::from_secs(600));
        assert_eq!(asked.get_tcp_user_timeout(), Some(&Duration::from_secs(5)));
        let err = parse_url("postgresql://site:s3cret@db/study?sslmode=verify-full").unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
        assert!(parse_url("/var/lib/labfeed/study.db").is_err());
    }
}
