//! `labfeed run`: the daemon. Watches the inbox, takes each complete file
//! through the ingest pipeline, then archives or quarantines it.
//!
//! Threads and tasks:
//! - the tokio runtime runs the sources (the inbox watcher) as tasks that may
//!   fail and are restarted with a back-off, never taking the daemon down;
//! - one **writer thread** owns the database connection (SQLite has one
//!   writer anyway): it takes arrivals from a channel in batches, commits
//!   them, and only then moves the files out of the inbox.
//!
//! Exactly once: a file leaves the inbox only after its content is
//! committed. Killed before the commit, it is still in the inbox and is taken
//! again at start-up; killed after the commit but before the move, it is
//! taken again, recognised by its SHA-256 and archived without new rows.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::cli::Outcome;
use crate::ingest::{Delivery, Summary, ingest_batch};
use crate::service;
use crate::sources::inbox;
use crate::sources::tcp;
use crate::sources::watch::{self, Arrival};
use crate::store::{NewProcessing, ProcessingOutcome, Source, Store};
use crate::study::config::{Config, Watch};

/// What the writer thread is handed: a file from the inbox, or a message from
/// an analyzer link that waits for the commit before it is acknowledged.
#[derive(Debug)]
pub enum Work {
    File(Arrival),
    Link(LinkMessage),
    /// The raw bytes of a link session that ended incomplete: kept and audited, no results.
    Aborted {
        bytes: Vec<u8>,
        source: Source,
        origin: String,
        instrument: String,
        reason: String,
    },
}

/// One complete message from a link (serial or TCP).
#[derive(Debug)]
pub struct LinkMessage {
    pub bytes: Vec<u8>,
    pub source: Source,
    /// The device path or peer address.
    pub origin: String,
    /// The instrument of the port or listener: authoritative for what arrives on it.
    pub instrument: String,
    /// Answered after the commit (Err: not stored, do not acknowledge as accepted).
    pub reply: tokio::sync::oneshot::Sender<Result<Summary, String>>,
}

impl LinkMessage {
    /// Hand a link's message to the writer and wait for its commit: the
    /// answer an analyzer may be acknowledged on.
    pub async fn commit(
        work: &mpsc::Sender<Work>,
        bytes: Vec<u8>,
        source: Source,
        origin: String,
        instrument: String,
    ) -> Result<Summary, String> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let message = LinkMessage { bytes, source, origin, instrument, reply };
        if work.send(Work::Link(message)).await.is_err() {
            return Err("labfeed is stopping".to_owned());
        }
        answer.await.unwrap_or_else(|_| Err("labfeed is stopping".to_owned()))
    }
}

/// Arrivals committed together (two durable commits per batch).
const BATCH: usize = 200;
/// After SIGTERM the writer finishes what it holds; the service manager waits 10 s.
const STOP_GRACE: Duration = Duration::from_secs(4);
/// A batch still not committed after this long means the writer is stuck:
/// the watchdog stops pinging and systemd restarts the service.
const STUCK_AFTER: Duration = Duration::from_secs(120);

/// When the writer started its current batch (Unix seconds), 0 when idle:
/// the watchdog pings only while the writer is idle or making progress.
static WRITER_BUSY_SINCE: AtomicU64 = AtomicU64::new(0);

/// When commits started failing (Unix seconds), 0 while they work.
static FAILING_SINCE: AtomicU64 = AtomicU64::new(0);

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Not stuck on one batch, and not failing to commit for `failing_limit` or longer.
fn writer_is_healthy(failing_limit: Duration) -> bool {
    let since = WRITER_BUSY_SINCE.load(Ordering::Relaxed);
    let failing = FAILING_SINCE.load(Ordering::Relaxed);
    (since == 0 || unix_now().saturating_sub(since) < STUCK_AFTER.as_secs())
        && (failing == 0 || unix_now().saturating_sub(failing) < failing_limit.as_secs())
}

/// Start the daemon and return when it stops (signal, or `once` drained).
pub fn run(config: Config, once: bool) -> anyhow::Result<Outcome> {
    let watch_config = config.watch.clone().with_context(|| {
        format!("{}: [watch] is needed for `run` (inbox, archive, quarantine)", config.path.display())
    })?;
    inbox::ensure_dirs(&watch_config).map_err(anyhow::Error::msg)?;
    crate::cli::ensure_database_dir(&config)?;
    let _lock = lock_database(&config.storage.database)?;
    let mut store = crate::cli::open_store(&config, &config.path)?;
    // SPEC §7 Health: READY only once a commit has reached the disk; first, so
    // any reason it cannot (read-only, locked, disk full) names the database.
    store.prove_writable().map_err(|e| {
        anyhow::Error::new(e).context(format!(
            "the database {} cannot be written (a test commit before start failed)",
            config.storage.database.display()
        ))
    })?;
    let cannot_write = |e: anyhow::Error| read_only(e, &config.storage.database);
    close_interrupted_receipts(&mut store).map_err(cannot_write)?;
    // A configuration that gained timepoints or analytes gives their slots
    // MISSING_RESULT ids at start, not only with the first delivery.
    store
        .write(|tx| crate::ingest::allocate_missing_slot_ids(tx, &config))
        .context("giving scheduled slots their MISSING_RESULT ids")
        .map_err(cannot_write)?;
    // A health file left by a daemon that died while failing is stale.
    if let Err(e) = service::clear_cannot_commit(&config.storage.database) {
        warn!(error = %e, "could not remove the old health file");
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config, watch_config, store, once))
}

/// SPEC §7 Health: `run` names the database it cannot write at start.
/// [`crate::cli::open_store`] checks permissions first; this catches what
/// access(2) cannot see (a read-only mount, SQLite's own refusal).
fn read_only(e: anyhow::Error, database: &Path) -> anyhow::Error {
    let refused = e.chain().any(|cause| {
        cause.downcast_ref::<rusqlite::Error>().and_then(rusqlite::Error::sqlite_error_code)
            == Some(rusqlite::ErrorCode::ReadOnly)
    });
    if refused { e.context(format!("the database {} cannot be written", database.display())) } else { e }
}

/// The single-instance lock beside the database (`<database>.lock`); the OS
/// releases it when the process dies, even by SIGKILL.
fn lock_database(database: &Path) -> anyhow::Result<File> {
    let path = service::lock_path(database);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another `labfeed run` is already using {} (it holds {}); stop it first",
            database.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}

/// Receipts committed before a crash but never processed: their files are
/// still in the inbox and are processed again, so the old receipt is closed.
fn close_interrupted_receipts(store: &mut Store) -> anyhow::Result<()> {
    let pending = store.read(|r| r.unprocessed_receipts())?;
    if pending.is_empty() {
        return Ok(());
    }
    warn!(count = pending.len(), "closing receipts interrupted before processing; their files are taken again");
    store.write(|tx| {
        for receipt in &pending {
            tx.insert_processing(&NewProcessing::aborted(
                receipt.id,
                "interrupted before processing (labfeed stopped); the content is processed again when it arrives again",
            ))?;
        }
        Ok(())
    })?;
    Ok(())
}

async fn serve(config: Config, watch_config: Watch, store: Store, once: bool) -> anyhow::Result<Outcome> {
    let (tx, rx) = mpsc::channel::<Work>(4096);
    // Files whose commit failed go back to the watcher (with --once, they
    // simply stay in the inbox for the next run).
    let (retry_tx, retry_rx) = mpsc::unbounded_channel::<PathBuf>();
    let stopping = Arc::new(AtomicBool::new(false));
    let config = Arc::new(config);
    let writer = {
        let (config, stopping) = (Arc::clone(&config), Arc::clone(&stopping));
        let watch_config = watch_config.clone();
        std::thread::Builder::new()
            .name("labfeed-writer".into())
            .spawn(move || Writer::new(store, config, watch_config, stopping, retry_tx).run(rx))
            .context("starting the writer thread")?
    };

    if once {
        let arrivals = watch::scan_once(&watch_config).await?;
        info!(files = arrivals.len(), inbox = %watch_config.inbox.display(), "draining the inbox once");
        for arrival in arrivals {
            if tx.send(Work::File(arrival)).await.is_err() {
                break;
            }
        }
        drop(tx);
        return join_writer(writer);
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (arrival_tx, mut arrival_rx) = mpsc::channel::<Arrival>(1024);
    let forward = {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(arrival) = arrival_rx.recv().await {
                if tx.send(Work::File(arrival)).await.is_err() {
                    break;
                }
            }
        })
    };
    let mut listeners = Vec::new();
    let settings = |instrument: &str| config.instrument(instrument).map(|i| i.receiver_config()).unwrap_or_default();
    for listen in &config.listen {
        let task = tcp::serve(listen.clone(), settings(&listen.instrument), tx.clone(), stop_rx.clone());
        listeners.push(tokio::spawn(task));
    }
    for port in &config.serial {
        let task = crate::sources::serial::serve(port.clone(), settings(&port.instrument), tx.clone(), stop_rx.clone());
        listeners.push(tokio::spawn(task));
    }
    drop(tx);
    let sources = tokio::spawn(supervise_watch(watch_config.clone(), arrival_tx, retry_rx, stop_rx.clone()));
    let watchdog = tokio::spawn(watchdog(stop_rx));
    service::ready();
    service::status(&format!("watching {}", watch_config.inbox.display()));
    info!(inbox = %watch_config.inbox.display(), database = %config.storage.database.display(), "labfeed is running");

    wait_for_signal().await?;
    info!("stopping: no new input; finishing what is in hand");
    service::stopping();
    stopping.store(true, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(STOP_GRACE, sources).await;
    for listener in listeners {
        let _ = tokio::time::timeout(STOP_GRACE, listener).await;
    }
    forward.abort();
    watchdog.abort();
    // The writer finishes its current batch; arrivals still queued stay in the inbox.
    tokio::task::spawn_blocking(move || join_writer(writer)).await.context("waiting for the writer")??;
    info!("stopped");
    // Stopped by a signal after finishing its work: a clean exit, whatever files were quarantined.
    Ok(Outcome::Ok)
}

fn join_writer(writer: std::thread::JoinHandle<Outcome>) -> anyhow::Result<Outcome> {
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("the writer thread panicked; committed work is safe, the rest stays in the inbox"))
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => {}
        result = tokio::signal::ctrl_c() => result.context("waiting for SIGINT")?,
    }
    Ok(())
}

/// Runs the inbox watcher, restarting it with a back-off when it fails (a
/// removed or unmounted inbox), until told to stop.
async fn supervise_watch(
    config: Watch,
    tx: mpsc::Sender<Arrival>,
    mut retries: mpsc::UnboundedReceiver<PathBuf>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let mut stop_for_task = stop.clone();
        let shutdown = async move {
            let _ = stop_for_task.wait_for(|s| *s).await;
        };
        match watch::watch_with_retries(config.clone(), tx.clone(), &mut retries, shutdown).await {
            Ok(()) => return,
            Err(e) => {
                error!(error = %e, retry_in = ?backoff, "the inbox watcher failed; restarting it");
                service::status(&format!("inbox watcher failed: {e}; retrying"));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
        let _ = inbox::ensure_dirs(&config);
    }
}

async fn watchdog(mut stop: tokio::sync::watch::Receiver<bool>) {
    let Some(interval) = service::watchdog_interval() else { return };
    let mut ticks = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                // Pending work not committed for a whole WatchdogSec: let systemd restart us.
                if writer_is_healthy(interval * 2) {
                    service::watchdog_ping();
                } else {
                    error!("the writer is stuck on one batch (over {STUCK_AFTER:?}) or cannot commit (over {:?}); no watchdog ping", interval * 2);
                }
            }
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// The one thread that writes: commits arrivals, then moves their files.
struct Writer {
    store: Store,
    config: Arc<Config>,
    watch: Watch,
    stopping: Arc<AtomicBool>,
    /// Files whose commit failed, back to the watcher to be taken again.
    retry: mpsc::UnboundedSender<PathBuf>,
    outcome: Outcome,
}

impl Writer {
    fn new(
        store: Store,
        config: Arc<Config>,
        watch: Watch,
        stopping: Arc<AtomicBool>,
        retry: mpsc::UnboundedSender<PathBuf>,
    ) -> Writer {
        Writer { store, config, watch, stopping, retry, outcome: Outcome::Ok }
    }

    fn run(mut self, mut rx: mpsc::Receiver<Work>) -> Outcome {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            WRITER_BUSY_SINCE.store(unix_now(), Ordering::Relaxed);
            self.handle(batch);
            WRITER_BUSY_SINCE.store(0, Ordering::Relaxed);
            if self.stopping.load(Ordering::SeqCst) {
                break;
            }
        }
        self.outcome
    }

    fn handle(&mut self, batch: Vec<Work>) {
        let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
        let mut links: Vec<LinkMessage> = Vec::new();
        for work in batch {
            match work {
                Work::File(Arrival::Refused(path, reason)) => self.quarantine(&path, &reason),
                Work::File(Arrival::Ready(path)) => match read_inbox_file(&path, self.watch.max_file_bytes()) {
                    Ok(Some(bytes)) => files.push((path, bytes)),
                    Ok(None) => {}
                    Err(reason) => self.quarantine(&path, &reason),
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
            .map(|(path, bytes)| Delivery {
                bytes,
                source: Source::File,
                origin: file_name(path),
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
                error!(error = %e, files = files.len(), messages = links.len(), "could not commit; nothing acknowledged");
                self.outcome = Outcome::Usage;
                self.commit_failed(&e.to_string());
                for (path, _) in files {
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
        for ((path, _), summary) in files.iter().zip(file_summaries) {
            self.settle(path, summary);
        }
        self.report_status();
    }

    /// The first failure of a run of failed commits is told to systemd
    /// (`STATUS=`) and to `labfeed status` (the health file).
    fn commit_failed(&mut self, reason: &str) {
        if FAILING_SINCE.load(Ordering::Relaxed) != 0 {
            return;
        }
        let since = jiff::Timestamp::now();
        FAILING_SINCE.store(since.as_second().max(1).unsigned_abs(), Ordering::Relaxed);
        let line = format!("cannot commit since {}: {reason}", since.round(jiff::Unit::Second).unwrap_or(since));
        service::status(&line);
        if let Err(e) = service::record_cannot_commit(&self.config.storage.database, &line) {
            error!(error = %e, "could not write the health file for `labfeed status`");
        }
    }

    /// Recovery is automatic: the files of failed commits were taken again.
    fn commit_worked(&mut self) {
        let failing = FAILING_SINCE.swap(0, Ordering::Relaxed);
        if failing == 0 {
            return;
        }
        let since = i64::try_from(failing).ok().and_then(|s| jiff::Timestamp::from_second(s).ok());
        info!("commits work again (they failed since {})", since.map_or_else(|| "?".to_owned(), |t| t.to_string()));
        if let Err(e) = service::clear_cannot_commit(&self.config.storage.database) {
            error!(error = %e, "could not remove the health file; `labfeed status` still says commits fail");
        }
    }

    /// After the commit: archive, or quarantine with the reason.
    fn settle(&mut self, path: &Path, s: &Summary) {
        let name = file_name(path);
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

    fn quarantine(&mut self, path: &Path, reason: &str) {
        let name = file_name(path);
        self.outcome = self.outcome.max(Outcome::Rejected);
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
            let line = service::StatusLine::new().watching(&self.watch.inbox).files_today(today).open_mismatches(open);
            service::status(&line.to_string());
        }
    }
}

/// The name stored as a file's origin, control characters escaped: it is
/// shown in logs, `status` and reports.
fn file_name(path: &Path) -> String {
    let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    crate::model::printable(&name).into_owned()
}

/// Read a file the watcher found complete: `Ok(None)` if it is gone, an
/// error (the quarantine reason) if it is no longer a regular file or too big.
fn read_inbox_file(path: &Path, max_bytes: u64) -> Result<Option<Vec<u8>>, String> {
    match inbox::inspect(path, max_bytes) {
        inbox::Entry::Gone => Ok(None),
        inbox::Entry::Refuse(reason) => Err(reason),
        inbox::Entry::File { .. } => read_regular_file(path, max_bytes),
    }
}

/// Read what was inspected, without following a link or blocking on a FIFO
/// that took its place in between (the inbox is written by others).
fn read_regular_file(path: &Path, max_bytes: u64) -> Result<Option<Vec<u8>>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let flags = nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK;
    let cannot = |e: std::io::Error| format!("{} could not be read: {e}", file_name(path));
    let file = match std::fs::OpenOptions::new().read(true).custom_flags(flags.bits()).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(cannot(e)),
    };
    if !file.metadata().map_err(cannot)?.is_file() {
        return Err(format!("{} was replaced by something that is not a regular file", file_name(path)));
    }
    let mut bytes = Vec::new();
    file.take(max_bytes.saturating_add(1)).read_to_end(&mut bytes).map_err(cannot)?;
    if bytes.len() as u64 > max_bytes {
        return Err(format!("{} grew past the size limit while it was read", file_name(path)));
    }
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_sqlite_refuses_as_read_only_names_the_database() {
        let refused = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY),
            Some("attempt to write a readonly database".to_owned()),
        );
        let e = anyhow::Error::new(crate::store::StoreError::from(refused)).context("giving slots their ids");
        let shown = format!("{:#}", read_only(e, Path::new("/srv/labfeed.db")));
        assert!(shown.starts_with("the database /srv/labfeed.db cannot be written: giving slots"), "{shown}");
        let other = anyhow::anyhow!("disk full");
        assert_eq!(format!("{:#}", read_only(other, Path::new("/srv/labfeed.db"))), "disk full");
    }
}
