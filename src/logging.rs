//! Logging for the daemon: `tracing` events to the systemd journal when
//! labfeed runs as a service, to stderr otherwise.
//!
//! - Under systemd (`JOURNAL_STREAM` names our stderr), events go to journald
//!   as structured entries (priority from the level, `SYSLOG_IDENTIFIER=labfeed`,
//!   event fields as `F_NAME=value`), so `journalctl -u labfeed -p warning` works.
//!   If the journal socket cannot be reached, stderr is used instead, without
//!   timestamps or colours (journald adds its own time to stderr lines).
//! - Elsewhere (a terminal, a test, cron), stderr in a compact human format
//!   with UTC timestamps (RFC 3339), coloured only on a terminal.
//! - The filter is `RUST_LOG` when it is set and valid, else the configured
//!   `[logging] level` (already checked by the config loader). An invalid
//!   `RUST_LOG` is reported once and ignored rather than stopping a service.
//!
//! User fields keep journald's `F_` prefix: without it a field that happens to
//! be called `priority` or `message` would overwrite journald's own fields.

use std::io::IsTerminal;

use anyhow::Context;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// `SYSLOG_IDENTIFIER` of journal entries (`journalctl -t labfeed`).
pub const SYSLOG_IDENTIFIER: &str = "labfeed";

/// Where [`init`] sent the logs, for a first log line and for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// The systemd journal, natively.
    Journal,
    /// Stderr under systemd (the journal socket was unavailable): no timestamps, no colours.
    StderrUnderSystemd,
    /// Stderr for a person or a pipe: timestamps, colours on a terminal.
    Stderr,
}

/// Set up the global `tracing` subscriber, once per process. `level` is the
/// config's `[logging] level` (`info`, or a filter such as `labfeed=debug`);
/// `RUST_LOG` overrides it.
///
/// A second call returns `Err` (the first subscriber stays); it never panics.
pub fn init(level: &str) -> anyhow::Result<Destination> {
    let (filter, ignored_rust_log) = filter(std::env::var("RUST_LOG").ok().as_deref(), level)?;
    let under_systemd = std::env::var("JOURNAL_STREAM").is_ok_and(|v| journal_stream_is_stderr(&v));
    let journal = if under_systemd {
        tracing_journald::layer().ok().map(|l| l.with_syslog_identifier(SYSLOG_IDENTIFIER.to_owned()))
    } else {
        None
    };
    let destination = match (&journal, under_systemd) {
        (Some(_), _) => Destination::Journal,
        (None, true) => Destination::StderrUnderSystemd,
        (None, false) => Destination::Stderr,
    };
    // Exactly one of the optional layers is `Some`; `Option<Layer>` is a layer.
    let stderr_plain = (destination == Destination::StderrUnderSystemd).then(|| {
        tracing_subscriber::fmt::layer().compact().without_time().with_ansi(false).with_writer(std::io::stderr)
    });
    let stderr_human = (destination == Destination::Stderr).then(|| {
        tracing_subscriber::fmt::layer()
            .compact()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(journal)
        .with(stderr_plain)
        .with(stderr_human)
        .try_init()
        .context("logging was already set up in this process")?;
    if let Some(problem) = ignored_rust_log {
        tracing::warn!("RUST_LOG ignored ({problem}); using the configured level {level:?}");
    }
    if destination == Destination::StderrUnderSystemd {
        tracing::warn!("the systemd journal socket is unavailable; logging to stderr");
    }
    Ok(destination)
}

/// The filter: `RUST_LOG` when set, non-empty and valid, else `level`. The
/// second value says why a set `RUST_LOG` was not used.
fn filter(rust_log: Option<&str>, level: &str) -> anyhow::Result<(EnvFilter, Option<String>)> {
    let mut ignored = None;
    if let Some(spec) = rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        match EnvFilter::try_new(spec) {
            Ok(filter) => return Ok((filter, None)),
            Err(e) => ignored = Some(format!("{spec:?}: {e}")),
        }
    }
    let filter = EnvFilter::try_new(level)
        .with_context(|| format!("{level:?} is not a log level (error, warn, info, debug, trace) or filter"))?;
    Ok((filter, ignored))
}

/// Whether `JOURNAL_STREAM` (`DEVICE:INODE` of the journal's stream socket)
/// is our stderr. systemd sets it for the service's own stdout/stderr; a child
/// that inherited the variable but writes elsewhere must not take it as a sign.
/// When stderr cannot be inspected, the variable alone decides.
fn journal_stream_is_stderr(journal_stream: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata("/proc/self/fd/2") {
        Ok(meta) => journal_stream_matches(journal_stream, meta.dev(), meta.ino()),
        Err(_) => parse_journal_stream(journal_stream).is_some(),
    }
}

/// `JOURNAL_STREAM` is `DEVICE:INODE`, both decimal.
fn parse_journal_stream(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.trim().split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

fn journal_stream_matches(value: &str, dev: u64, ino: u64) -> bool {
    parse_journal_stream(value) == Some((dev, ino))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_is_device_colon_inode() {
        assert_eq!(parse_journal_stream("8:123456"), Some((8, 123456)));
        assert_eq!(parse_journal_stream(" 0:42\n"), Some((0, 42)));
        assert_eq!(parse_journal_stream("8"), None);
        assert_eq!(parse_journal_stream("8:x"), None);
        assert_eq!(parse_journal_stream(""), None);
        assert!(journal_stream_matches("8:123456", 8, 123456));
        assert!(!journal_stream_matches("8:123456", 8, 123457));
        assert!(!journal_stream_matches("9:123456", 8, 123456));
    }

    #[test]
    fn rust_log_overrides_the_configured_level_when_valid() {
        let (f, ignored) = filter(Some("labfeed=debug"), "warn").unwrap();
        assert_eq!(f.to_string(), "labfeed=debug");
        assert!(ignored.is_none());

        let (f, ignored) = filter(None, "warn").unwrap();
        assert_eq!(f.to_string(), "warn");
        assert!(ignored.is_none());

        // Empty RUST_LOG counts as unset.
        let (f, ignored) = filter(Some("  "), "info").unwrap();
        assert_eq!(f.to_string(), "info");
        assert!(ignored.is_none());
    }

    #[test]
    fn an_invalid_rust_log_falls_back_to_the_level_and_says_so() {
        let (f, ignored) = filter(Some("labfeed=loud"), "info").unwrap();
        assert_eq!(f.to_string(), "info");
        assert!(ignored.unwrap().contains("labfeed=loud"));
    }

    #[test]
    fn an_invalid_level_is_an_error() {
        let err = filter(None, "labfeed=loud").unwrap_err();
        assert!(err.to_string().contains("not a log level"), "{err}");
    }

    #[test]
    fn a_second_init_is_an_error_not_a_panic() {
        // No other unit test installs a global subscriber, so the first call
        // may succeed ("off": no noise in other tests' output); the second
        // must return Err.
        let _ = init("off");
        assert!(init("debug").is_err());
    }
}
