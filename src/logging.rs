//! Logging for the daemon: `tracing` events to the systemd journal when
//! labfeed runs as a service, to stderr otherwise.
//!
//! - Under systemd (`JOURNAL_STREAM` names our stderr), events go to journald
//!   as structured entries (priority from the level, `SYSLOG_IDENTIFIER=labfeed`,
//!   event fields as `F_NAME=value`), so `journalctl -u labfeed -p warning` works.
//!   If the journal socket cannot be reached, stderr is used instead, without
//!   timestamps or colours (journald adds its own time to stderr lines) and
//!   with a `<N>` syslog priority prefix that journald turns into the priority.
//! - Elsewhere (a terminal, a test, cron), stderr in a compact human format
//!   with UTC timestamps (RFC 3339), coloured only on a terminal.
//! - The filter is `RUST_LOG` when it is set and valid, else the configured
//!   `[logging] level` (already checked by the config loader). An invalid
//!   `RUST_LOG` is reported once and ignored rather than stopping a service.
//!
//! User fields keep journald's `F_` prefix: without it a field that happens to
//! be called `priority` or `message` would overwrite journald's own fields.

use std::fmt;
use std::io::IsTerminal;

use anyhow::Context;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
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
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .fmt_fields(PrintableFields::default())
            .event_format(SyslogPrefix(tracing_subscriber::fmt::format().compact().without_time().with_ansi(false)))
            .with_writer(std::io::stderr)
    });
    let stderr_human = (destination == Destination::Stderr).then(|| {
        tracing_subscriber::fmt::layer()
            .compact()
            .fmt_fields(PrintableFields::default())
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

/// Prefixes each event with its syslog priority (`<3>` error … `<7>` trace,
/// as tracing-journald maps them), which journald reads from a service's
/// stderr (`SyslogLevelPrefix=`, on by default): `journalctl -p warning`
/// works on the fallback too.
struct SyslogPrefix<F>(F);

fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 5,
        Level::DEBUG => 6,
        Level::TRACE => 7,
    }
}

impl<S, N, F> FormatEvent<S, N> for SyslogPrefix<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        write!(writer, "<{}>", syslog_priority(*event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// The default field formatting with control characters escaped
/// ([`crate::model::printable`]): a file name with a newline or an escape
/// sequence in it can neither forge a log line nor reach the terminal. (The
/// journal stores each field as it is, one entry per event.)
#[derive(Default)]
struct PrintableFields(DefaultFields);

impl<'w> FormatFields<'w> for PrintableFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut text = String::new();
        self.0.format_fields(Writer::new(&mut text), fields)?;
        writer.write_str(&crate::model::printable(&text))
    }
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

    /// Env var that makes [`logging_child`] act; set only on the child process.
    const CHILD: &str = "LABFEED_TEST_LOGGING_CHILD";

    /// Runs in a child process of the destination tests, with its own
    /// environment and stderr: sets up logging, says where it went, logs.
    #[test]
    #[ignore = "run by the destination tests in a child process"]
    fn logging_child() {
        if std::env::var_os(CHILD).is_none() {
            return;
        }
        let destination = init("info").unwrap();
        println!("destination={destination:?}");
        tracing::info!(sample_id = "U07-V4-T30", "child event");
        tracing::debug!("filtered out");
    }

    /// Run [`logging_child`] with stderr going to a file and `JOURNAL_STREAM`
    /// set to that file's device:inode (plus `delta` on the inode); returns the
    /// child's stdout and stderr.
    fn run_child(inode_delta: u64) -> (String, String) {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let err_path = dir.path().join("stderr");
        let err_file = std::fs::File::create(&err_path).unwrap();
        let meta = err_file.metadata().unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "logging::tests::logging_child", "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino() + inode_delta))
            .env_remove("RUST_LOG")
            .stderr(err_file)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{stdout}");
        (stdout, std::fs::read_to_string(&err_path).unwrap())
    }

    #[test]
    fn under_systemd_logs_go_to_the_journal_or_plain_stderr() {
        let (stdout, stderr) = run_child(0);
        if stdout.contains("destination=Journal") {
            // A real journald is listening: the event went there.
            assert!(!stderr.contains("child event"), "{stderr}");
            return;
        }
        assert!(stdout.contains("destination=StderrUnderSystemd"), "{stdout}");
        // The priority for journald, no timestamp (journald adds its own), no colours.
        let line = stderr.lines().find(|l| l.contains("child event")).unwrap_or_else(|| panic!("{stderr}"));
        assert!(line.starts_with("<5>") && line.contains("INFO"), "{line:?}");
        assert!(stderr.lines().any(|l| l.starts_with("<4>") && l.contains("journal socket")), "{stderr}");
        assert!(line.contains("sample_id=\"U07-V4-T30\"") || line.contains("sample_id=U07-V4-T30"), "{line:?}");
        assert!(!line.contains('\u{1b}'), "{line:?}");
        assert!(stderr.contains("journal socket is unavailable"), "{stderr}");
        assert!(!stderr.contains("filtered out"), "{stderr}");
    }

    #[test]
    fn a_journal_stream_that_is_not_our_stderr_is_ignored() {
        let (stdout, stderr) = run_child(1);
        assert!(stdout.contains("destination=Stderr\n"), "{stdout}");
        let line = stderr.lines().find(|l| l.contains("child event")).unwrap_or_else(|| panic!("{stderr}"));
        // The human format starts with an RFC 3339 UTC timestamp.
        assert!(line.starts_with("20") && line.contains('T'), "{line:?}");
        assert!(!stderr.contains("journal socket"), "{stderr}");
    }
}
