//! `labfeed status`: what a sysadmin or data manager checks first (SPEC §1):
//! the database, whether the daemon runs, files waiting in the inbox and in
//! quarantine, the last arrival per source and what came of it, and the open
//! mismatches by code.
//!
//! It only reads: the database is opened read-only (so it works while `run`
//! writes), folders are listed, and the daemon's lock is probed without
//! waiting and without creating the lock file.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io::{self, Write};
use std::path::Path;

use crate::cli::Outcome;
use crate::daemon::health::{DaemonState, cannot_commit, daemon_state, lock_path};
use crate::daemon::sources::inbox::is_temporary_name;
use crate::model::printable;
use crate::report::MISSING_RESULT;
use crate::store::{LastArrival, ProcessingOutcome, Source, Store};
use crate::study::config::Config;
use crate::study::missing::missing_results;

pub fn run(config_path: &Path, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Outcome> {
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(e) => {
            writeln!(err, "{e}")?;
            writeln!(
                err,
                "labfeed status: fix the configuration first (labfeed --config {} check-config)",
                config_path.display()
            )?;
            return Ok(Outcome::Usage);
        }
    };
    let database = &config.storage.database;
    let problem = match std::fs::metadata(database) {
        _ if config.storage.is_postgres() => None,
        Ok(meta) if meta.is_file() => None,
        Ok(_) => Some("is not a file".to_owned()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Some("does not exist yet; `labfeed run`, `labfeed import` or `labfeed ingest` creates it".to_owned())
        }
        Err(e) => Some(format!("cannot be accessed: {e}")),
    };
    if let Some(problem) = problem {
        writeln!(
            err,
            "labfeed status: the study database {} (storage.database in {}) {problem}",
            database.display(),
            config_path.display()
        )?;
        return Ok(Outcome::Usage);
    }
    let store = match Store::open_read_only(database) {
        Ok(store) => store,
        // A central database that is away: what the daemon says is still worth showing (exit 1).
        Err(e) if e.is_unreachable() => {
            writeln!(out, "study {} (config {})", config.study.id, config.path.display())?;
            writeln!(out, "database {}: unreachable ({e})", config.storage.shown())?;
            writeln!(out, "instance {}", crate::daemon::health::instance(&config))?;
            let (daemon, cannot_commit) = daemon_health(&config);
            match daemon {
                DaemonState::Running => writeln!(out, "daemon: running")?,
                DaemonState::NotRunning => writeln!(out, "daemon: not running")?,
                DaemonState::Unknown(e) => writeln!(out, "daemon: unknown ({e})")?,
            }
            if let Some(line) = &cannot_commit {
                writeln!(out, "daemon: {}", printable(line))?;
            }
            writeln!(err, "labfeed status: the database {} is unreachable", config.storage.shown())?;
            return Ok(Outcome::Rejected);
        }
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context(format!("opening the study database (storage.database in {})", config_path.display())));
        }
    };
    let report = gather(&config, &store)?;
    print(&report, &config, &mut *out)?;
    // SPEC §7 Health: while the running daemon cannot commit, say so and exit 1.
    if let Some(line) = &report.cannot_commit {
        writeln!(err, "labfeed status: the daemon {}", printable(line))?;
        return Ok(Outcome::Rejected);
    }
    Ok(Outcome::Ok)
}

/// Whether the daemon runs, and the line it leaves while it cannot commit.
/// A health file without a running daemon is stale: only a live writer fails to commit.
fn daemon_health(config: &Config) -> (DaemonState, Option<String>) {
    let base = crate::daemon::health::local_base(config);
    let daemon = daemon_state(&base);
    let cannot_commit = matches!(daemon, DaemonState::Running).then(|| cannot_commit(&base)).flatten();
    (daemon, cannot_commit)
}

/// Everything `status` prints, gathered before printing.
struct Report {
    schema_version: i64,
    daemon: DaemonState,
    /// The running daemon's `cannot commit since T: reason` (its health file).
    cannot_commit: Option<String>,
    inbox: Option<FolderCount>,
    quarantine: Option<FolderCount>,
    arrivals: Vec<LastArrival>,
    unprocessed: usize,
    open_mismatches: BTreeMap<String, u64>,
    locks: Vec<crate::store::Lock>,
    now: jiff::Timestamp,
}

/// The number of waiting files in a folder, or why it is unknown.
type FolderCount = Result<usize, io::Error>;

fn gather(config: &Config, store: &Store) -> anyhow::Result<Report> {
    let now = jiff::Timestamp::now();
    let (arrivals, unprocessed, open_mismatches, locks) = store.read(|r| {
        let mut open = r.open_mismatches_by_code()?;
        // Computed, as in `report mismatches`: scheduled results not (yet) there.
        let missing = missing_results(config, &r.visits()?, &r.slot_states()?, now).len() as u64;
        if missing > 0 {
            open.insert(MISSING_RESULT.to_owned(), missing);
        }
        Ok((r.last_arrival_per_source()?, r.unprocessed_receipts()?.len(), open, r.locks()?))
    })?;
    let (daemon, cannot_commit) = daemon_health(config);
    Ok(Report {
        schema_version: store.schema_version()?,
        daemon,
        cannot_commit,
        inbox: config.watch.as_ref().map(|w| count_entries(&w.inbox, is_waiting_in_inbox)),
        quarantine: config.watch.as_ref().map(|w| count_quarantined(&w.quarantine)),
        arrivals,
        unprocessed,
        open_mismatches,
        locks,
        now,
    })
}

/// Not a temporary name (`.*`, `*.tmp`, `*.part`, `~*`), decided exactly as
/// the watcher decides it.
fn is_waiting_in_inbox(name: &OsStr, _all: &[OsString]) -> bool {
    !is_temporary_name(name)
}

const REASON_SUFFIX: &str = ".reason.txt";

/// A quarantined file, not the `NAME.reason.txt` beside one. A file that was
/// itself called `x.reason.txt` when it was quarantined counts: it has its
/// own `x.reason.txt.reason.txt`.
fn is_quarantined_file(name: &OsStr, all: &[OsString]) -> bool {
    let is_reason_of = |other: &OsString| {
        other.as_encoded_bytes().strip_suffix(REASON_SUFFIX.as_bytes()) == Some(name.as_encoded_bytes())
    };
    !name.as_encoded_bytes().ends_with(REASON_SUFFIX.as_bytes()) || all.iter().any(is_reason_of)
}

fn count_quarantined(folder: &Path) -> FolderCount {
    count_entries(folder, is_quarantined_file)
}

/// Entries directly in `folder` whose name `counts`, given all names there.
/// Every entry counts whatever its type: the watcher takes regular files and
/// quarantines anything else (links, folders, pipes), so all of them wait.
fn count_entries(folder: &Path, counts: fn(&OsStr, &[OsString]) -> bool) -> FolderCount {
    let names = std::fs::read_dir(folder)?.map(|entry| entry.map(|e| e.file_name())).collect::<io::Result<Vec<_>>>()?;
    Ok(names.iter().filter(|name| counts(name, &names)).count())
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `12 s ago`, `5 min ago`, `3 h ago`, `4 days ago`; empty when the time
/// cannot be read or lies in the future (clock changes).
fn age(received_at: &str, now: jiff::Timestamp) -> String {
    let Ok(then) = received_at.parse::<jiff::Timestamp>() else {
        return String::new();
    };
    let seconds = now.as_second() - then.as_second();
    match seconds {
        s if s < 0 => String::new(),
        s if s < 120 => format!(" ({s} s ago)"),
        s if s < 2 * 3600 => format!(" ({} min ago)", s / 60),
        s if s < 48 * 3600 => format!(" ({} h ago)", s / 3600),
        s => format!(" ({} days ago)", s / 86_400),
    }
}

/// What came of an arrival, e.g. `processed, 4 accepted, 1 mismatch`.
fn what_came_of_it(a: &LastArrival) -> String {
    // One line per arrival: the first broken message, and how many more.
    let detail = a.detail.as_deref().map(str::trim).filter(|d| !d.is_empty()).map(|d| {
        let mut lines = d.lines();
        let first = lines.next().unwrap_or_default();
        match lines.count() {
            0 => first.to_owned(),
            more => format!("{first} (and {more} more)"),
        }
    });
    match a.outcome {
        None => "not processed yet".to_owned(),
        Some(ProcessingOutcome::Duplicate) => "duplicate of an earlier delivery".to_owned(),
        Some(outcome @ (ProcessingOutcome::Rejected | ProcessingOutcome::Aborted)) => match detail {
            Some(d) => format!("{outcome}: {d}"),
            None => outcome.to_string(),
        },
        Some(ProcessingOutcome::Processed) => {
            let mut parts = vec!["processed".to_owned(), format!("{} accepted", a.accepted)];
            if a.duplicates > 0 {
                parts.push(plural(a.duplicates, "duplicate", "duplicates"));
            }
            if a.mismatches > 0 {
                parts.push(plural(a.mismatches, "mismatch", "mismatches"));
            }
            if a.qc > 0 {
                parts.push(format!("{} QC", a.qc));
            }
            if a.errors > 0 {
                parts.push(plural(a.errors, "error", "errors"));
            }
            parts.join(", ")
        }
    }
}

fn folder_line(label: &str, folder: &Path, count: &FolderCount, one: &str, many: &str) -> String {
    match count {
        Ok(n) => format!("{label} {}: {}", folder.display(), plural(*n as u64, one, many)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            format!("{label} {}: does not exist yet", folder.display())
        }
        Err(e) => format!("{label} {}: cannot be read: {e}", folder.display()),
    }
}

fn print(report: &Report, config: &Config, out: &mut dyn Write) -> io::Result<()> {
    let base = crate::daemon::health::local_base(config);
    writeln!(out, "study {} (config {})", config.study.id, config.path.display())?;
    writeln!(out, "database {} (schema version {})", config.storage.shown(), report.schema_version)?;
    if config.storage.is_postgres() {
        writeln!(out, "instance {}", crate::daemon::health::instance(config))?;
    }
    let lock = lock_path(&base);
    match &report.daemon {
        DaemonState::Running => writeln!(out, "daemon: running (holds {})", lock.display())?,
        DaemonState::NotRunning => writeln!(out, "daemon: not running")?,
        DaemonState::Unknown(e) => writeln!(out, "daemon: unknown (cannot probe {}: {e})", lock.display())?,
    }
    if let Some(line) = &report.cannot_commit {
        writeln!(out, "daemon: {}", printable(line))?;
    }
    print_refused_peers(&report.daemon, &base, out)?;

    match (&config.watch, &report.inbox, &report.quarantine) {
        (Some(w), Some(inbox), Some(quarantine)) => {
            writeln!(out, "{}", folder_line("inbox", &w.inbox, inbox, "file waiting", "files waiting"))?;
            writeln!(out, "archive {}", w.archive.display())?;
            writeln!(out, "{}", folder_line("quarantine", &w.quarantine, quarantine, "file", "files"))?;
        }
        _ => writeln!(out, "watch folder: not configured")?,
    }

    writeln!(out, "last arrival per source:")?;
    // A shared database holds every site's arrivals: say which daemon took each.
    let shared = config.storage.is_postgres();
    for a in &report.arrivals {
        let link = match (&a.source, &a.instrument) {
            (Source::Serial | Source::Tcp, Some(instrument)) => format!(" ({instrument})"),
            _ => String::new(),
        };
        let via = match &a.instance {
            Some(instance) if shared => format!(" via {instance}"),
            _ => String::new(),
        };
        writeln!(
            out,
            "  {}:{}{link}{via} at {}{}: {}",
            a.source,
            printable(&a.origin),
            a.received_at,
            age(&a.received_at, report.now),
            printable(&what_came_of_it(a))
        )?;
    }
    // This daemon's own inputs that never received anything.
    let here = crate::daemon::health::instance(config);
    let own: Vec<LastArrival> =
        report.arrivals.iter().filter(|a| !shared || a.instance.as_deref() == Some(here.as_str())).cloned().collect();
    let silent = silent_inputs(config, &own);
    for input in &silent {
        writeln!(out, "  {input}: nothing received yet")?;
    }
    if report.arrivals.is_empty() && silent.is_empty() {
        writeln!(out, "  nothing received yet")?;
    }
    if report.unprocessed > 0 {
        writeln!(
            out,
            "{} not processed yet (interrupted; `labfeed run` processes them at start-up)",
            plural(report.unprocessed as u64, "arrival", "arrivals")
        )?;
    }

    match report.locks.as_slice() {
        [] => writeln!(out, "data locks: none")?,
        locks => {
            writeln!(out, "data locks: {}", locks.len())?;
            for lock in locks {
                writeln!(out, "  {}", crate::report::mismatches::lock_words(lock, &config.study.timezone))?;
            }
        }
    }
    let total: u64 = report.open_mismatches.values().sum();
    writeln!(out, "open mismatches: {total}")?;
    for (code, n) in &report.open_mismatches {
        writeln!(out, "  {code}: {n}")?;
    }
    Ok(())
}

/// The running daemon's refused TCP connections (its `<database>.peers`
/// file), e.g. `refused connections since T: 3` and one line per listener
/// with the last refused address. Nothing when no daemon runs or none was refused.
fn print_refused_peers(daemon: &DaemonState, database: &Path, out: &mut dyn Write) -> io::Result<()> {
    if !matches!(daemon, DaemonState::Running) {
        return Ok(());
    }
    for line in crate::daemon::health::refused_peers(database).unwrap_or_default() {
        writeln!(out, "{}", printable(&line))?;
    }
    Ok(())
}

/// Configured inputs with no arrival at all: the watch folder, each serial
/// port (matched by device path or instrument), each listener (by instrument).
fn silent_inputs(config: &Config, arrivals: &[LastArrival]) -> Vec<String> {
    let heard = |source: Source, origin: Option<&Path>, instrument: &str| {
        arrivals.iter().any(|a| {
            a.source == source
                && (origin.is_some_and(|o| Path::new(&a.origin) == o) || a.instrument.as_deref() == Some(instrument))
        })
    };
    let mut silent = Vec::new();
    if let Some(w) = &config.watch
        && !arrivals.iter().any(|a| a.source == Source::File)
    {
        silent.push(format!("file (watch folder {})", w.inbox.display()));
    }
    for s in &config.serial {
        if !heard(Source::Serial, Some(&s.path), &s.instrument) {
            silent.push(format!("serial:{} ({})", s.path.display(), s.instrument));
        }
    }
    for l in &config.listen {
        if !heard(Source::Tcp, None, &l.instrument) {
            silent.push(format!("tcp:{} ({}, {})", l.address, l.instrument, l.protocol));
        }
    }
    silent
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn temporary_names_are_not_waiting_files() {
        let all = names(&["a.astm", ".hidden", "a.TMP", "a.astm.part", "~lock.astm", "part.astm"]);
        let counted: Vec<&OsString> = all.iter().filter(|n| is_waiting_in_inbox(n, &all)).collect();
        assert_eq!(counted, ["a.astm", "part.astm"]);
    }

    #[test]
    fn reason_files_are_not_quarantined_files() {
        let all = names(&["a.astm", "a.astm.reason.txt", "x.reason.txt", "x.reason.txt.reason.txt", "lone.reason.txt"]);
        let counted: Vec<&OsString> = all.iter().filter(|n| is_quarantined_file(n, &all)).collect();
        assert_eq!(counted, ["a.astm", "x.reason.txt"]);
    }

    #[test]
    fn counting_skips_temporary_names_only() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.astm", "b.hl7", ".c", "d.tmp", "e.part", "~f"] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        // The watcher quarantines a folder dropped in the inbox: it waits too.
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        assert_eq!(count_entries(dir.path(), is_waiting_in_inbox).unwrap(), 3);
        let missing = count_entries(&dir.path().join("missing"), is_waiting_in_inbox);
        assert_eq!(missing.unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    fn arrival(outcome: Option<ProcessingOutcome>) -> LastArrival {
        LastArrival {
            source: Source::Ingest,
            origin: "/data/e411.astm".into(),
            instrument: None,
            received_at: "2026-03-02T09:15:00Z".into(),
            outcome,
            accepted: 4,
            duplicates: 0,
            mismatches: 0,
            qc: 0,
            errors: 0,
            detail: None,
            instance: None,
        }
    }

    #[test]
    fn what_came_of_an_arrival() {
        assert_eq!(what_came_of_it(&arrival(Some(ProcessingOutcome::Processed))), "processed, 4 accepted");
        let mut a = arrival(Some(ProcessingOutcome::Processed));
        (a.accepted, a.duplicates, a.mismatches, a.qc, a.errors) = (0, 1, 2, 3, 1);
        assert_eq!(what_came_of_it(&a), "processed, 0 accepted, 1 duplicate, 2 mismatches, 3 QC, 1 error");
        assert_eq!(what_came_of_it(&arrival(None)), "not processed yet");
        assert_eq!(what_came_of_it(&arrival(Some(ProcessingOutcome::Duplicate))), "duplicate of an earlier delivery");
        let mut a = arrival(Some(ProcessingOutcome::Rejected));
        assert_eq!(what_came_of_it(&a), "rejected");
        a.detail = Some("no ASTM or HL7 message found".into());
        assert_eq!(what_came_of_it(&a), "rejected: no ASTM or HL7 message found");
    }

    #[test]
    fn ages_are_coarse() {
        let now: jiff::Timestamp = "2026-03-02T12:00:00Z".parse().unwrap();
        assert_eq!(age("2026-03-02T11:59:30Z", now), " (30 s ago)");
        assert_eq!(age("2026-03-02T11:15:00Z", now), " (45 min ago)");
        assert_eq!(age("2026-03-02T09:00:00Z", now), " (3 h ago)");
        assert_eq!(age("2026-02-20T12:00:00Z", now), " (10 days ago)");
        assert_eq!(age("2026-03-02T12:00:05Z", now), "");
        assert_eq!(age("garbage", now), "");
    }
}
