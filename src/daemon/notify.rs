//! sd-notify for `labfeed run` under systemd (`Type=notify`): thin wrappers,
//! the watchdog interval and the `STATUS=` line.
//!
//! Every notification is a no-op outside systemd (no `NOTIFY_SOCKET`), so the
//! daemon calls them unconditionally. A failed send is logged, never fatal:
//! the worst case is systemd's own timeout (start or watchdog), which is what
//! it would do anyway if the daemon were stuck. Watchdog failures are logged
//! once per run of failures, not every 15 s.
//!
//! Nothing here unsets the environment (`*_and_unset_env` are `unsafe` and
//! the crate forbids `unsafe`): children of the daemon, if any, must not be
//! given `NOTIFY_SOCKET`/`WATCHDOG_*`.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sd_notify::NotifyState;

/// Longest `STATUS=` text sent; `systemctl status` shows one line.
pub const STATUS_MAX_CHARS: usize = 200;

/// Whether systemd asked for notifications (`NOTIFY_SOCKET` is set).
pub fn under_systemd() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// Start-up is finished: inputs are open and the first status is known.
/// With `Type=notify`, `systemctl start` returns (and dependants start) only now.
pub fn ready() {
    send("READY", &[NotifyState::Ready]);
}

/// The one-line status `systemctl status labfeed` shows (see [`StatusLine`]).
pub fn status(text: &str) {
    let text = clean(text);
    send("STATUS", &[NotifyState::Status(&text)]);
}

/// Shutdown has begun (SIGTERM): systemd shows "deactivating" instead of
/// treating the exit as a crash.
pub fn stopping() {
    send("STOPPING", &[NotifyState::Stopping]);
}

/// How often to call [`watchdog_ping`]: half of `WATCHDOG_USEC`, when systemd
/// set a watchdog for this process (`WatchdogSec=` in the unit; `WATCHDOG_PID`,
/// when present, must be ours). `None` outside systemd or without a watchdog.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().and_then(ping_interval)
}

/// Half the watchdog timeout (systemd's recommendation), or `None` for a zero
/// timeout (which means "disabled").
fn ping_interval(timeout: Duration) -> Option<Duration> {
    (!timeout.is_zero()).then(|| timeout / 2)
}

/// "Still alive" (`WATCHDOG=1`). Call it from the loop that does the work,
/// not from a timer task of its own: a ping should mean the pipeline moves,
/// not merely that the runtime can schedule a timer.
pub fn watchdog_ping() {
    send("WATCHDOG", &[NotifyState::Watchdog]);
}

/// Whether the previous send failed (so a run of failures logs once).
static LAST_SEND_FAILED: AtomicBool = AtomicBool::new(false);

fn send(what: &str, states: &[NotifyState<'_>]) {
    match sd_notify::notify(states) {
        Ok(()) => {
            if LAST_SEND_FAILED.swap(false, Ordering::Relaxed) {
                tracing::info!("sd_notify works again ({what})");
            }
        }
        Err(e) => {
            if !LAST_SEND_FAILED.swap(true, Ordering::Relaxed) {
                tracing::warn!("sd_notify {what} failed: {e} (further failures are not logged until one succeeds)");
            }
        }
    }
}

/// A notification value is one line: control characters (a newline would
/// start another `KEY=VALUE`) become spaces, and it is cut at
/// [`STATUS_MAX_CHARS`].
pub(crate) fn clean(text: &str) -> String {
    let mut out: String = text.chars().take(STATUS_MAX_CHARS).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if text.chars().nth(STATUS_MAX_CHARS).is_some() {
        out.pop();
        out.push('…');
    }
    out
}

/// The daemon's `STATUS=` line, e.g.
/// `watching /var/lib/labfeed/inbox, 1 serial port; 12 files today; 2 open mismatches`.
///
/// Parts that were not set are left out; [`StatusLine::note`] adds a free
/// text at the end (a problem, or a phase such as "stopping: committing").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusLine {
    inbox: Option<PathBuf>,
    serial_ports: usize,
    listeners: usize,
    files_today: Option<u64>,
    results_today: Option<u64>,
    open_mismatches: Option<u64>,
    notes: Vec<String>,
}

impl StatusLine {
    pub fn new() -> StatusLine {
        StatusLine::default()
    }

    /// The watch folder's inbox.
    pub fn watching(mut self, inbox: impl Into<PathBuf>) -> StatusLine {
        self.inbox = Some(inbox.into());
        self
    }

    /// Open serial ports and TCP listeners.
    pub fn links(mut self, serial_ports: usize, listeners: usize) -> StatusLine {
        self.serial_ports = serial_ports;
        self.listeners = listeners;
        self
    }

    /// Files (arrivals of any source) received since local midnight.
    pub fn files_today(mut self, n: u64) -> StatusLine {
        self.files_today = Some(n);
        self
    }

    /// Results accepted since local midnight.
    pub fn results_today(mut self, n: u64) -> StatusLine {
        self.results_today = Some(n);
        self
    }

    /// Mismatches waiting for a data manager.
    pub fn open_mismatches(mut self, n: u64) -> StatusLine {
        self.open_mismatches = Some(n);
        self
    }

    /// A free text at the end, e.g. `serial /dev/ttyUSB0: cannot open, retrying`.
    pub fn note(mut self, text: impl Into<String>) -> StatusLine {
        self.notes.push(text.into());
        self
    }
}

fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl fmt::Display for StatusLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut inputs = Vec::new();
        if let Some(inbox) = &self.inbox {
            inputs.push(format!("watching {}", inbox.display()));
        }
        if self.serial_ports > 0 {
            inputs.push(count(self.serial_ports as u64, "serial port", "serial ports"));
        }
        if self.listeners > 0 {
            inputs.push(count(self.listeners as u64, "listener", "listeners"));
        }
        let mut parts = vec![if inputs.is_empty() { "no inputs".to_owned() } else { inputs.join(", ") }];
        if let Some(n) = self.files_today {
            parts.push(count(n, "file today", "files today"));
        }
        if let Some(n) = self.results_today {
            parts.push(count(n, "result today", "results today"));
        }
        if let Some(n) = self.open_mismatches {
            parts.push(count(n, "open mismatch", "open mismatches"));
        }
        parts.extend(self.notes.iter().map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()));
        f.write_str(&clean(&parts.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_joins_what_was_set() {
        let line = StatusLine::new().watching("/var/lib/labfeed/inbox").files_today(12).open_mismatches(2).to_string();
        assert_eq!(line, "watching /var/lib/labfeed/inbox; 12 files today; 2 open mismatches");
    }

    #[test]
    fn the_status_line_counts_in_the_singular_and_lists_links() {
        let line = StatusLine::new()
            .watching("/in")
            .links(1, 2)
            .files_today(1)
            .results_today(1)
            .open_mismatches(1)
            .note("serial /dev/ttyUSB0: cannot open, retrying")
            .to_string();
        assert_eq!(
            line,
            "watching /in, 1 serial port, 2 listeners; 1 file today; 1 result today; 1 open mismatch; \
             serial /dev/ttyUSB0: cannot open, retrying"
        );
        assert_eq!(StatusLine::new().links(2, 0).files_today(0).to_string(), "2 serial ports; 0 files today");
    }

    #[test]
    fn the_status_line_without_inputs_says_so_and_skips_empty_notes() {
        assert_eq!(StatusLine::new().to_string(), "no inputs");
        assert_eq!(StatusLine::new().note("  ").note("stopping").to_string(), "no inputs; stopping");
    }

    #[test]
    fn status_text_is_one_line_and_bounded() {
        // A newline would let a note forge another KEY=VALUE (e.g. READY=1).
        assert_eq!(clean("ok\nREADY=1\r\t"), "ok READY=1  ");
        let line = StatusLine::new().note("a\nb").to_string();
        assert_eq!(line, "no inputs; a b");
        let long = "é".repeat(STATUS_MAX_CHARS + 10);
        let cut = clean(&long);
        assert_eq!(cut.chars().count(), STATUS_MAX_CHARS);
        assert!(cut.ends_with('…'));
        let exact = "x".repeat(STATUS_MAX_CHARS);
        assert_eq!(clean(&exact), exact);
    }

    #[test]
    fn the_watchdog_is_pinged_at_half_its_timeout() {
        assert_eq!(ping_interval(Duration::from_secs(30)), Some(Duration::from_secs(15)));
        assert_eq!(ping_interval(Duration::from_micros(1)), Some(Duration::from_nanos(500)));
        assert_eq!(ping_interval(Duration::ZERO), None);
    }

    #[test]
    fn notifications_are_no_ops_outside_systemd() {
        if under_systemd() {
            // The tests themselves run under a service manager that asked
            // for notifications; sending it READY would be wrong.
            return;
        }
        ready();
        status("status");
        stopping();
        watchdog_ping();
        assert!(!LAST_SEND_FAILED.load(Ordering::Relaxed));
    }

    /// Env var that makes [`notify_child`] act; set only on the child process.
    const CHILD: &str = "LABFEED_TEST_NOTIFY_CHILD";

    /// Runs in a child process of [`messages_reach_the_notify_socket`], with
    /// `NOTIFY_SOCKET` and `WATCHDOG_USEC` set for it alone.
    #[test]
    #[ignore = "run by messages_reach_the_notify_socket in a child process"]
    fn notify_child() {
        if std::env::var_os(CHILD).is_none() {
            return;
        }
        let interval = watchdog_interval().map(|d| d.as_secs());
        status(&format!("watchdog every {interval:?} s"));
        ready();
        watchdog_ping();
        status(&StatusLine::new().watching("/in").files_today(3).to_string());
        status("stopping\nREADY=1");
        stopping();
    }

    #[test]
    fn messages_reach_the_notify_socket() {
        use std::os::unix::net::UnixDatagram;
        use std::process::Command;

        let dir = tempfile::tempdir().unwrap();
        let socket_path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&socket_path).unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "daemon::notify::tests::notify_child", "--nocapture"])
            .env(CHILD, "1")
            .env("NOTIFY_SOCKET", &socket_path)
            .env("WATCHDOG_USEC", "30000000")
            .env_remove("WATCHDOG_PID")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"), "{}", String::from_utf8_lossy(&out.stdout));

        let mut received = Vec::new();
        let mut buf = [0u8; 4096];
        for _ in 0..6 {
            let n = socket.recv(&mut buf).unwrap();
            received.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        assert_eq!(
            received,
            [
                "STATUS=watchdog every Some(15) s\n",
                "READY=1\n",
                "WATCHDOG=1\n",
                "STATUS=watching /in; 3 files today\n",
                "STATUS=stopping READY=1\n",
                "STOPPING=1\n",
            ]
        );
    }
}
