//! The one thread that writes. It owns the database connection (SQLite has
//! one writer anyway), takes work from the channel in batches, commits it,
//! answers the links, and only then moves files out of the inbox. It also
//! keeps the health the watchdog and `labfeed status` report.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use super::backoff::Backoff;
use super::sources::{Arrival, inbox};
use super::work::{LinkMessage, Work};
use super::{Finished, health, notify};
use crate::ingest::{Delivery, IngestError, Summary, ingest_batch};
use crate::store::{ProcessingOutcome, Source, Store};
use crate::study::config::{Config, Watch};

/// Arrivals committed together (two durable commits per batch).
const BATCH: usize = 200;

/// When the writer started its current batch (Unix seconds), 0 when idle.
static BUSY_SINCE: AtomicU64 = AtomicU64::new(0);

/// When commits started failing (Unix seconds), 0 while they work.
static FAILING_SINCE: AtomicU64 = AtomicU64::new(0);

/// Whether they fail because the database server is away.
static UNREACHABLE: AtomicBool = AtomicBool::new(false);

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Whether pending work was committed within `limit`: not stuck on one batch
/// (a frozen file system) and not failing to commit for that long. The
/// watchdog pings only while this holds. A database server that is away
/// does not count: a restart could not reach it either, and would close
/// the analyzers' links, which keep being answered (not acknowledged).
pub fn is_healthy(limit: Duration) -> bool {
    let within = |since: u64| since == 0 || unix_now().saturating_sub(since) < limit.as_secs().max(1);
    let failing_for_long = !within(FAILING_SINCE.load(Ordering::Relaxed)) && !UNREACHABLE.load(Ordering::Relaxed);
    within(BUSY_SINCE.load(Ordering::Relaxed)) && !failing_for_long
}

/// The database server is away: batches are not tried before `retry_at`
/// (files go back to the inbox, links are told at once), then one round trip
/// says whether it is back. The wait doubles up to 30 s ([`Backoff`]).
struct Outage {
    backoff: Backoff,
    retry_at: Instant,
    /// The last failed attempt's reason (`the database … is unreachable: why`).
    reason: String,
}

/// The one thread that writes: commits arrivals, then moves their files.
pub struct Writer {
    store: Store,
    config: Arc<Config>,
    watch: Watch,
    stopping: Arc<AtomicBool>,
    /// Files whose commit failed, back to the watcher to be taken again.
    retry: mpsc::UnboundedSender<PathBuf>,
    finished: Finished,
    /// Where the health file is (see [`health::local_base`]).
    local_base: PathBuf,
    /// Since when commits fail, and the reason shown (T is kept across retries).
    failing: Option<(jiff::Timestamp, String)>,
    outage: Option<Outage>,
}

impl Writer {
    pub fn new(
        store: Store,
        config: Arc<Config>,
        watch: Watch,
        stopping: Arc<AtomicBool>,
        retry: mpsc::UnboundedSender<PathBuf>,
    ) -> Writer {
        let local_base = health::local_base(&config);
        Writer {
            store,
            config,
            watch,
            stopping,
            retry,
            finished: Finished::Clean,
            local_base,
            failing: None,
            outage: None,
        }
    }

    pub fn run(mut self, mut rx: mpsc::Receiver<Work>) -> Finished {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            BUSY_SINCE.store(unix_now(), Ordering::Relaxed);
            self.handle(batch);
            BUSY_SINCE.store(0, Ordering::Relaxed);
            if self.stopping.load(Ordering::SeqCst) {
                break;
            }
        }
        self.finished
    }

    fn handle(&mut self, batch: Vec<Work>) {
        if let Some(reason) = self.still_away() {
            self.defer(batch, &reason);
            return;
        }
        let mut files: Vec<(PathBuf, Vec<u8>, inbox::Identity)> = Vec::new();
        let mut links: Vec<LinkMessage> = Vec::new();
        for work in batch {
            match work {
                Work::File(Arrival::Refused(path, reason)) => self.refuse(&path, &reason),
                Work::File(Arrival::Ready(path)) => match read_inbox_file(&path, self.watch.max_file_bytes()) {
                    Ok(Some((bytes, identity))) => files.push((path, bytes, identity)),
                    Ok(None) => {}
                    Err(reason) => self.refuse(&path, &reason),
                },
                Work::Link(message) => links.push(message),
                Work::Aborted { bytes, source, origin, instrument, reason } => {
                    let delivery = Delivery {
                        bytes: &bytes,
                        source,
                        origin: origin.clone(),
                        instrument: Some(instrument),
                        received_at: jiff::Timestamp::now(),
                    };
                    match crate::ingest::record_aborted(&mut self.store, &self.config, &delivery, &reason) {
                        Ok(_) => warn!("{source} {origin}: session aborted ({reason}); raw bytes kept, no results"),
                        Err(e) => error!(error = %e, "could not keep the raw bytes of an aborted session"),
                    }
                }
            }
        }
        if files.is_empty() && links.is_empty() {
            return;
        }
        let received_at = jiff::Timestamp::now();
        let deliveries: Vec<Delivery<'_>> = files
            .iter()
            .map(|(path, bytes, _)| Delivery {
                bytes,
                source: Source::File,
                origin: inbox::shown_name(path),
                instrument: None,
                received_at,
            })
            .chain(links.iter().map(|m| Delivery {
                bytes: &m.bytes,
                source: m.source,
                origin: m.origin.clone(),
                instrument: Some(m.instrument.clone()),
                received_at,
            }))
            .collect();
        let summaries = match ingest_batch(&mut self.store, &self.config, &deliveries) {
            Ok(summaries) => summaries,
            Err(e) => {
                // Nothing of this batch was processed: files stay in the inbox and are
                // retried; links are told, so the analyzer is not acknowledged and resends.
                let retry_in = self.note_outage(&e);
                let retry_in = retry_in.map(|d| format!("{} s", d.as_secs()));
                error!(error = %e, files = files.len(), messages = links.len(), retry_in, "could not commit; nothing acknowledged");
                self.finished = self.finished.max(Finished::CommitsFailed);
                self.commit_failed(&e.to_string());
                for (path, ..) in files {
                    let _ = self.retry.send(path);
                }
                for link in links {
                    let _ = link.reply.send(Err(format!("the message could not be stored: {e}")));
                }
                return;
            }
        };
        self.commit_worked();
        let (file_summaries, link_summaries) = summaries.split_at(files.len().min(summaries.len()));
        // Committed: analyzers get their answer before the file moves, which
        // only take time and do not change what is stored.
        for (link, summary) in links.into_iter().zip(link_summaries) {
            info!("{} from {} ({}): {}", link.source, link.origin, link.instrument, summary.counts());
            let _ = link.reply.send(Ok(summary.clone()));
        }
        for ((path, _, identity), summary) in files.iter().zip(file_summaries) {
            // Only the file that was committed leaves the inbox: one put in
            // its place since the read stays there and is taken in turn.
            if !inbox::is_still(path, *identity) {
                warn!(file = %inbox::shown_name(path), "replaced after it was read; the new file stays in the inbox");
                continue;
            }
            self.settle(path, summary);
        }
        self.report_status();
    }

    /// After a failed commit: a server that is away is tried again after the
    /// back-off (returned); any other failure ends an outage and is retried
    /// as before, with the next arrival or scan.
    fn note_outage(&mut self, e: &IngestError) -> Option<Duration> {
        if !matches!(e, IngestError::Store(s) if s.is_unreachable()) {
            self.outage = None;
            UNREACHABLE.store(false, Ordering::Relaxed);
            return None;
        }
        let outage = self.outage.get_or_insert_with(|| Outage {
            backoff: Backoff::default(),
            retry_at: Instant::now(),
            reason: String::new(),
        });
        let retry_in = outage.backoff.step();
        outage.retry_at = Instant::now() + retry_in;
        outage.reason = e.to_string();
        UNREACHABLE.store(true, Ordering::Relaxed);
        Some(retry_in)
    }

    /// While the server is away: `Some(reason)` until the back-off's time,
    /// then one cheap round trip decides (rather than every query of a batch
    /// trying to connect, each up to the connect timeout).
    fn still_away(&mut self) -> Option<String> {
        let outage = self.outage.as_mut()?;
        if Instant::now() < outage.retry_at {
            return Some(outage.reason.clone());
        }
        match self.store.read(|_| Ok(())) {
            Err(e) if e.is_unreachable() => {
                let retry_in = outage.backoff.step();
                outage.retry_at = Instant::now() + retry_in;
                outage.reason = e.to_string();
                warn!("{e}; nothing acknowledged, files stay in the inbox; next attempt in {} s", retry_in.as_secs());
                let reason = outage.reason.clone();
                self.commit_failed(&reason);
                Some(reason)
            }
            // Back (or failing otherwise): the batch is tried and says so.
            _ => None,
        }
    }

    /// A batch not tried while the server is away: files are taken again
    /// at a later scan, links are answered at once (not acknowledged).
    fn defer(&mut self, batch: Vec<Work>, reason: &str) {
        let (mut files, mut messages) = (0usize, 0usize);
        for work in batch {
            match work {
                Work::File(Arrival::Ready(path) | Arrival::Refused(path, _)) => {
                    files += 1;
                    let _ = self.retry.send(path);
                }
                Work::Link(link) => {
                    messages += 1;
                    let _ = link.reply.send(Err(format!("the message could not be stored: {reason}")));
                }
                Work::Aborted { source, origin, reason: why, .. } => {
                    warn!("{source} {origin}: session aborted ({why}); its raw bytes cannot be kept: {reason}")
                }
            }
        }
        debug!(files, messages, "waiting for the database server; nothing tried, nothing acknowledged");
    }

    /// Failed commits are told to systemd (`STATUS=`), to `labfeed status`
    /// (the health file) and to the log: at the first failure, and again
    /// when the reason changes, always with the time the failing began.
    fn commit_failed(&mut self, reason: &str) {
        let since = match &self.failing {
            Some((_, shown)) if shown == reason => return,
            Some((since, _)) => *since,
            None => {
                let now = jiff::Timestamp::now();
                FAILING_SINCE.store(now.as_second().max(1).unsigned_abs(), Ordering::Relaxed);
                now.round(jiff::Unit::Second).unwrap_or(now)
            }
        };
        self.failing = Some((since, reason.to_owned()));
        let line = format!("cannot commit since {since}: {reason}");
        error!("{line}");
        notify::status(&line);
        if let Err(e) = health::record_cannot_commit(&self.local_base, &line) {
            error!(error = %e, "could not write the health file for `labfeed status`");
        }
    }

    /// Recovery is automatic: the files of failed commits were taken again.
    fn commit_worked(&mut self) {
        self.failing = None;
        self.outage = None;
        UNREACHABLE.store(false, Ordering::Relaxed);
        let failing = FAILING_SINCE.swap(0, Ordering::Relaxed);
        if failing == 0 {
            return;
        }
        let since = i64::try_from(failing).ok().and_then(|s| jiff::Timestamp::from_second(s).ok());
        info!("commits work again (they failed since {})", since.map_or_else(|| "?".to_owned(), |t| t.to_string()));
        if let Err(e) = health::clear_cannot_commit(&self.local_base) {
            error!(error = %e, "could not remove the health file; `labfeed status` still says commits fail");
        }
    }

    /// After the commit: archive, or quarantine with the reason.
    fn settle(&mut self, path: &Path, s: &Summary) {
        let name = inbox::shown_name(path);
        let counts = s.counts();
        if s.outcome == ProcessingOutcome::Duplicate && s.errors > 0 {
            let reason = format!(
                "{name} is {}.\nNothing new was stored; fix or re-export the file and drop it again.",
                s.detail.as_deref().unwrap_or("identical to a file quarantined before")
            );
            self.quarantine(path, &reason);
            return;
        }
        if s.outcome == ProcessingOutcome::Rejected || s.errors > 0 {
            let stored = match s.outcome {
                ProcessingOutcome::Rejected => "Nothing of it could be read",
                _ => "Results from the messages that parsed were stored",
            };
            let reason = format!(
                "{name} could not be fully parsed ({counts}).\n{}\n{stored}; fix or re-export the file and drop it again.",
                s.detail.as_deref().unwrap_or("The file is neither ASTM nor HL7.")
            );
            self.quarantine(path, &reason);
            return;
        }
        let day = self.today();
        match inbox::archive(path, &self.watch.archive, day) {
            Ok(to) => info!("{name}: {counts} → {}", to.display()),
            Err(e) => {
                error!(file = %name, error = %e, "committed, but could not archive; it will be recognised as a duplicate next time")
            }
        }
    }

    /// A file refused unread gets its receipt (and a PARSE_ERROR) before it
    /// moves to quarantine; if even that cannot be committed, the quarantine
    /// and its reason file still say why.
    fn refuse(&mut self, path: &Path, reason: &str) {
        let name = inbox::shown_name(path);
        if let Err(e) = crate::ingest::record_refused(&mut self.store, &name, reason, jiff::Timestamp::now()) {
            error!(file = %name, error = %e, "could not record the receipt of a file refused unread");
        }
        self.quarantine(path, reason);
    }

    fn quarantine(&mut self, path: &Path, reason: &str) {
        let name = inbox::shown_name(path);
        self.finished = self.finished.max(Finished::SomeQuarantined);
        match inbox::quarantine(path, &self.watch.quarantine, reason) {
            Ok(to) => {
                warn!(file = %name, to = %to.display(), "{name} → quarantine: {}", reason.lines().next().unwrap_or(""))
            }
            Err(e) => error!(file = %name, error = %e, "could not quarantine"),
        }
    }

    fn today(&self) -> jiff::civil::Date {
        let zone = jiff::tz::TimeZone::get(&self.config.study.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
        zone.to_datetime(jiff::Timestamp::now()).date()
    }

    fn report_status(&self) {
        let zone = jiff::tz::TimeZone::get(&self.config.study.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
        let midnight = zone.to_timestamp(self.today().to_datetime(jiff::civil::Time::midnight())).ok();
        let counts = self.store.read(|r| {
            let today = match midnight {
                Some(m) => r.receipts_since(m)?,
                None => 0,
            };
            Ok((today, r.open_mismatch_count()?))
        });
        if let Ok((today, open)) = counts {
            let line = notify::StatusLine::new().watching(&self.watch.inbox).files_today(today).open_mismatches(open);
            notify::status(&line.to_string());
        }
    }
}

/// Read a file the watcher found complete: `Ok(None)` if it is gone, an
/// error (the quarantine reason) if it is no longer a regular file or too big.
fn read_inbox_file(path: &Path, max_bytes: u64) -> Result<Option<(Vec<u8>, inbox::Identity)>, String> {
    match inbox::inspect(path, max_bytes) {
        inbox::Entry::Gone => Ok(None),
        inbox::Entry::Refuse(reason) => Err(reason),
        inbox::Entry::File { .. } => read_regular_file(path, max_bytes),
    }
}

/// Read what was inspected, without following a link or blocking on a FIFO
/// that took its place in between (the inbox is written by others).
fn read_regular_file(path: &Path, max_bytes: u64) -> Result<Option<(Vec<u8>, inbox::Identity)>, String> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let flags = nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK;
    let cannot = |e: std::io::Error| format!("{} could not be read: {e}", inbox::shown_name(path));
    let file = match std::fs::OpenOptions::new().read(true).custom_flags(flags.bits()).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(cannot(e)),
    };
    let meta = file.metadata().map_err(cannot)?;
    if !meta.is_file() {
        return Err(format!("{} was replaced by something that is not a regular file", inbox::shown_name(path)));
    }
    let mut bytes = Vec::new();
    file.take(max_bytes.saturating_add(1)).read_to_end(&mut bytes).map_err(cannot)?;
    if bytes.len() as u64 > max_bytes {
        return Err(format!("{} grew past the size limit while it was read", inbox::shown_name(path)));
    }
    Ok(Some((bytes, (meta.dev(), meta.ino()))))
}
