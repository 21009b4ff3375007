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

//! Modules: [`sources`] (inbox, TCP, serial) feed [`work`]'s channel;
//! [`writer`] commits; [`notify`] talks to systemd; [`health`] is what
//! `labfeed status` reads beside the database; [`backoff`] is how every
//! source retries.

pub mod backoff;
pub mod health;
pub mod notify;
pub mod sources;
pub mod work;
pub mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use backoff::Backoff;
use sources::peers::Refusals;
use sources::watch::{self, Arrival};
use sources::{inbox, tcp};
use work::Work;
use writer::Writer;

use crate::store::{NewProcessing, Store, StoreError};
use crate::study::config::{Config, Watch};

/// After SIGTERM the writer finishes what it holds; the service manager waits 10 s.
const STOP_GRACE: Duration = Duration::from_secs(4);

/// How a run ended, worst first wins; the command line turns it into an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Finished {
    /// Everything taken was stored and archived (or it was stopped by a signal).
    Clean,
    /// Some file went to quarantine (`--once`).
    SomeQuarantined,
    /// Some commit failed; those files stay in the inbox (`--once`).
    CommitsFailed,
}

/// Start the daemon and return when it stops (signal, or `once` drained).
/// `open` opens the study database; it is called once this process holds
/// the database's single-instance lock.
pub fn run(
    config: Config,
    open: impl FnOnce(&Config) -> anyhow::Result<Store>,
    once: bool,
) -> anyhow::Result<Finished> {
    let watch_config = config.watch.clone().with_context(|| {
        format!("{}: [watch] is needed for `run` (inbox, archive, quarantine)", config.path.display())
    })?;
    inbox::ensure_dirs(&watch_config).map_err(anyhow::Error::msg)?;
    let base = health::local_base(&config);
    let shown = config.storage.shown();
    let _lock = lock_database(&base, &shown)?;
    let mut store = open(&config)?;
    // On a shared database, one daemon per instance name (SPEC §10).
    store.claim_instance(&health::instance(&config))?;
    // SPEC §7 Health: READY only once a commit has reached the disk; first, so
    // any reason it cannot (read-only, locked, disk full) names the database.
    store.prove_writable().map_err(|e| {
        anyhow::Error::new(e)
            .context(format!("the database {shown} cannot be written (a test commit before start failed)"))
    })?;
    let cannot_write = |e: anyhow::Error| read_only(e, &shown);
    close_interrupted_receipts(&mut store, &health::instance(&config), config.storage.is_postgres())
        .map_err(cannot_write)?;
    // A configuration that gained timepoints or analytes gives their slots
    // MISSING_RESULT ids at start, not only with the first delivery.
    store
        .write(|tx| crate::ingest::allocate_missing_slot_ids(tx, &config))
        .context("giving scheduled slots their MISSING_RESULT ids")
        .map_err(cannot_write)?;
    // Blank (a file left by a daemon that died while failing is stale) and
    // of full size, so it can still be written once the disk is full.
    health::prepare_health_file(&base)
        .with_context(|| format!("cannot write {}", health::health_path(&base).display()))?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config, watch_config, store, once))
}

/// SPEC §7 Health: `run` names the database it cannot write at start.
/// The opener checks permissions first; this catches what
/// access(2) cannot see (a read-only mount, SQLite's own refusal).
fn read_only(e: anyhow::Error, database: &str) -> anyhow::Error {
    let refused = e.chain().any(|cause| cause.downcast_ref::<StoreError>().is_some_and(StoreError::is_read_only));
    if refused { e.context(format!("the database {database} cannot be written")) } else { e }
}

/// The single-instance lock beside the database (`<database>.lock`; on
/// PostgreSQL `<state_dir>/<instance>.lock`); the OS releases it when the
/// process dies, even by SIGKILL.
fn lock_database(base: &Path, database: &str) -> anyhow::Result<File> {
    let path = health::lock_path(base);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another `labfeed run` is already using {database} (it holds {}); stop it first",
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}

/// Receipts committed before a crash but never processed: their files are
/// still in the inbox and are processed again, so the old receipt is closed.
fn close_interrupted_receipts(store: &mut Store, instance: &str, shared: bool) -> anyhow::Result<()> {
    // On a shared database, another site's receipts may be in flight: only
    // this daemon's own (or those from before receipts named one) are closed.
    let pending: Vec<_> = store
        .read(|r| r.unprocessed_receipts())?
        .into_iter()
        .filter(|r| !shared || r.instance.as_deref().is_none_or(|i| i == instance))
        .collect();
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

async fn serve(config: Config, watch_config: Watch, store: Store, once: bool) -> anyhow::Result<Finished> {
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
    // Created even without listeners: it removes an earlier run's counts.
    let refusals = Refusals::new(health::local_base(&config));
    if !config.listen.is_empty() {
        for listen in &config.listen {
            let refusals = Arc::clone(&refusals);
            let task = tcp::serve(listen.clone(), settings(&listen.instrument), tx.clone(), refusals, stop_rx.clone());
            listeners.push(tokio::spawn(task));
        }
        listeners.push(tokio::spawn(refusals.keep_file(stop_rx.clone())));
    }
    for port in &config.serial {
        let task = sources::serial::serve(port.clone(), settings(&port.instrument), tx.clone(), stop_rx.clone());
        listeners.push(tokio::spawn(task));
    }
    drop(tx);
    let sources = tokio::spawn(supervise_watch(watch_config.clone(), arrival_tx, retry_rx, stop_rx.clone()));
    let watchdog = tokio::spawn(watchdog(stop_rx));
    notify::ready();
    notify::status(&format!("watching {}", watch_config.inbox.display()));
    info!(inbox = %watch_config.inbox.display(), database = %config.storage.shown(), instance = %health::instance(&config), "labfeed is running");

    wait_for_signal().await?;
    info!("stopping: no new input; finishing what is in hand");
    notify::stopping();
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
    Ok(Finished::Clean)
}

fn join_writer(writer: std::thread::JoinHandle<Finished>) -> anyhow::Result<Finished> {
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
    let mut backoff = Backoff::default();
    loop {
        let mut stop_for_task = stop.clone();
        let shutdown = async move {
            let _ = stop_for_task.wait_for(|s| *s).await;
        };
        match watch::watch_with_retries(config.clone(), tx.clone(), &mut retries, shutdown).await {
            Ok(()) => return,
            Err(e) => {
                error!(error = %e, retry_in = ?backoff.delay(), "the inbox watcher failed; restarting it");
                notify::status(&format!("inbox watcher failed: {e}; retrying"));
            }
        }
        if !backoff.wait(&mut stop).await {
            return;
        }
        let _ = inbox::ensure_dirs(&config);
    }
}

async fn watchdog(mut stop: tokio::sync::watch::Receiver<bool>) {
    let Some(interval) = notify::watchdog_interval() else { return };
    let mut ticks = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                // Pending work not committed for a whole WatchdogSec: let systemd restart us.
                if writer::is_healthy(interval * 2) {
                    notify::watchdog_ping();
                } else {
                    error!("the writer has not committed pending work for over {:?} (stuck or failing); no watchdog ping", interval * 2);
                }
            }
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_the_store_refuses_as_read_only_names_the_database() {
        let refused = StoreError::ReadOnly { path: "labfeed.db".into() };
        let e = anyhow::Error::new(refused).context("giving slots their ids");
        let shown = format!("{:#}", read_only(e, "/srv/labfeed.db"));
        assert!(shown.starts_with("the database /srv/labfeed.db cannot be written: giving slots"), "{shown}");
        let other = anyhow::anyhow!("disk full");
        assert_eq!(format!("{:#}", read_only(other, "/srv/labfeed.db")), "disk full");
    }
}
