//! Watching the inbox: deciding when a dropped file is complete, and handing
//! each complete file to the daemon once.
//!
//! # When a file is complete
//!
//! [`Settler`] decides, without I/O, from what the watcher sees:
//!
//! - inotify `Close(Write)` (closed after writing) or a rename into the inbox
//!   (`Modify(Name(To))`, or the new name of `Modify(Name(Both))`): the file
//!   is complete now and taken at once, with no settle time.
//! - inotify `Create` and `Modify(Data)` mean a writer is at work: the path is
//!   *not* complete, whatever its state before, until one of the above. A
//!   `Create` of a file that has another name too (hard-linked in with
//!   `link(2)`, which sends nothing after the create) is found, as below;
//!   writes to it that follow still make it wait for a close.
//! - The first scan (files present before start), a rescan after lost events
//!   (queue overflow) and every look in `poll` mode, where no events exist,
//!   find a path: it is taken once unchanged (size and modification time) for
//!   `watch.settle_seconds`. So is a path closed or renamed in whose size or
//!   modification time then moved without a new close: the close vouched
//!   only for what it closed.
//! - The periodic safety-net rescan in inotify mode keeps what events said:
//!   a writer holding a file open is waited for. A path it finds that no
//!   event announced is found, as above. A path waiting for its writer longer
//!   than ten minutes is logged (once).
//!
//! Before a settled file is handed over it is looked at again (`lstat`); if
//! its size or modification time moved, the clock restarts.
//!
//! # Exactly once
//!
//! A handed-over path is remembered with its size, modification time and
//! inode until it disappears from the inbox (an event or a scan shows it
//! gone), so a file the daemon has not moved out yet is not handed over
//! again. If a handed-over file changes, or the name reappears with a new
//! file, it is taken again once complete. A path the daemon receives may
//! already be gone or replaced when it opens it; the daemon should treat
//! "not found" as "nothing to do" and rely on the content hash.
//!
//! # `poll` mode
//!
//! Network shares (CIFS/NFS) send no inotify events. In `poll` mode the
//! watcher arms no notify watch at all and scans the inbox itself every
//! `poll_interval_seconds`, which is what notify's `PollWatcher` would do
//! (without following symlinks, and without stat-ing the folder twice).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::inbox::{self, Stamp, Stat};
use crate::study::config::{Watch, WatchMode};

/// A path waiting this long for its writer to close it is logged.
const STALL_WARNING: Duration = Duration::from_secs(600);

/// `scan_once` gives up on a file still changing after this many settle periods.
const ONCE_MAX_ROUNDS: u32 = 10;

/// Events taken from the queue in one go (one `lstat` batch).
const MAX_BATCH: usize = 4096;

/// Decides, without I/O, when a file in the inbox is complete. Time is passed
/// in, so it is testable without sleeping.
#[derive(Debug)]
pub struct Settler {
    settle: Duration,
    files: HashMap<PathBuf, Pending>,
}

/// How far a path is known to be complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// A writer is at work (created or written, not closed yet): never ready.
    Writing,
    /// Found where no event said it is complete: ready once unchanged for the settle time.
    Found,
    /// Closed after writing or renamed in: ready at once.
    Closed,
}

#[derive(Debug)]
struct Pending {
    size: u64,
    modified: SystemTime,
    state: Completion,
    /// Last change of size, mtime or `state`.
    since: Instant,
    /// Returned by `ready` since the last change.
    returned: bool,
    /// Returned by `stalled` since the last change.
    stall_reported: bool,
}

impl Settler {
    pub fn new(settle: Duration) -> Settler {
        Settler { settle, files: HashMap::new() }
    }

    /// The path was seen with this size and mtime, in this state
    /// ([`Completion::Writing`] undoes an earlier close). A change of size or
    /// mtime, or of state, restarts the clock.
    pub fn observe(&mut self, path: PathBuf, size: u64, modified: SystemTime, state: Completion, now: Instant) {
        match self.files.get_mut(&path) {
            Some(p) if p.size == size && p.modified == modified => {
                if p.state != state {
                    p.state = state;
                    p.since = now;
                    p.returned = false;
                    p.stall_reported = false;
                }
            }
            _ => {
                let pending = Pending { size, modified, state, since: now, returned: false, stall_reported: false };
                self.files.insert(path, pending);
            }
        }
    }

    /// The path was removed or renamed away (or handed over for good).
    pub fn forget(&mut self, path: &Path) {
        self.files.remove(path);
    }

    /// Keep only the paths for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&Path) -> bool) {
        self.files.retain(|path, _| keep(path));
    }

    /// The path's state; `None` when it is not tracked.
    pub fn state(&self, path: &Path) -> Option<Completion> {
        self.files.get(path).map(|p| p.state)
    }

    /// The size and mtime last observed for the path.
    pub fn stamp(&self, path: &Path) -> Option<(u64, SystemTime)> {
        self.files.get(path).map(|p| (p.size, p.modified))
    }

    /// When the path becomes ready if nothing changes; `None` while written.
    fn due(&self, p: &Pending) -> Option<Instant> {
        match p.state {
            Completion::Writing => None,
            Completion::Found => Some(p.since.checked_add(self.settle).unwrap_or(p.since)),
            Completion::Closed => Some(p.since),
        }
    }

    /// Paths closed or renamed in, and paths found and unchanged for the
    /// settle time, sorted; each returned once until it is observed changed
    /// or forgotten.
    pub fn ready(&mut self, now: Instant) -> Vec<PathBuf> {
        let settle = self.settle;
        let mut out: Vec<PathBuf> = self
            .files
            .iter_mut()
            .filter(|(_, p)| {
                !p.returned
                    && match p.state {
                        Completion::Writing => false,
                        Completion::Found => now.saturating_duration_since(p.since) >= settle,
                        Completion::Closed => true,
                    }
            })
            .map(|(path, p)| {
                p.returned = true;
                path.clone()
            })
            .collect();
        out.sort();
        out
    }

    /// When the next path becomes ready (if nothing changes).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.files.values().filter(|p| !p.returned).filter_map(|p| self.due(p)).min()
    }

    /// Unfinished paths unchanged for `after` (a writer holds them open, or
    /// their close went unseen), sorted; each returned once until it changes.
    pub fn stalled(&mut self, now: Instant, after: Duration) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = self
            .files
            .iter_mut()
            .filter(|(_, p)| {
                p.state == Completion::Writing && !p.stall_reported && now.saturating_duration_since(p.since) >= after
            })
            .map(|(path, p)| {
                p.stall_reported = true;
                path.clone()
            })
            .collect();
        out.sort();
        out
    }
}

/// What the watcher hands to the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arrival {
    /// A complete regular file, to be ingested, then archived or quarantined.
    Ready(PathBuf),
    /// An entry that must not be read (symlink, directory, FIFO, too large…),
    /// with the reason in plain words; to be quarantined.
    Refused(PathBuf, String),
}

impl Arrival {
    pub fn path(&self) -> &Path {
        match self {
            Arrival::Ready(path) | Arrival::Refused(path, _) => path,
        }
    }
}

/// Why the inbox cannot be watched (each message names the path).
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch the inbox {} (watch.inbox): {source}", path.display())]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("cannot read the inbox {} (watch.inbox): {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the inbox {} was removed or renamed while labfeed was watching it", path.display())]
    InboxGone { path: PathBuf },
    #[error("the file-system watcher for the inbox {} stopped unexpectedly", path.display())]
    Stopped { path: PathBuf },
}

/// What an event or a scan says about a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    /// A writer is at work (data written).
    Writing,
    /// Created: a writer is at work, unless the file has another name too
    /// (`link(2)` sends a create and nothing after it): then found.
    Created,
    /// Closed after writing or renamed in: complete now.
    Closed,
    /// Found by a scan or poll, where no events exist: stability decides.
    Found,
    /// Something happened; keep what was known (an untracked path is found).
    Recheck,
}

type Listing = Vec<(PathBuf, io::Result<Option<Stat>>)>;

/// The watcher's memory: what is settling, and what was handed over.
struct Tracker {
    max_bytes: u64,
    settler: Settler,
    sent: HashMap<PathBuf, Stamp>,
}

impl Tracker {
    /// Take in one look at a path. Returns a refusal to send now.
    fn see(&mut self, path: PathBuf, stat: io::Result<Option<Stat>>, signal: Signal, now: Instant) -> Option<Arrival> {
        let stat = match stat {
            Ok(Some(stat)) => stat,
            Ok(None) => {
                self.settler.forget(&path);
                self.sent.remove(&path);
                return None;
            }
            Err(e) => {
                tracing::warn!("cannot examine {}: {e}; trying again at the next scan", inbox::shown_name(&path));
                return None;
            }
        };
        if let Some(old) = self.sent.get(&path) {
            if *old == stat.stamp {
                return None;
            }
            tracing::info!(
                "{} changed after it was handed over; it will be handed over again once complete",
                inbox::shown_name(&path)
            );
            self.sent.remove(&path);
        }
        if let Some(reason) = stat.not_regular {
            self.settler.forget(&path);
            self.sent.insert(path.clone(), stat.stamp);
            tracing::info!("refused: {reason}");
            return Some(Arrival::Refused(path, reason));
        }
        let state = match signal {
            Signal::Writing => Completion::Writing,
            Signal::Created if stat.nlink > 1 => Completion::Found,
            Signal::Created => Completion::Writing,
            Signal::Closed => Completion::Closed,
            Signal::Found => Completion::Found,
            Signal::Recheck => self.kept(&path, stat.stamp.size, stat.stamp.modified),
        };
        self.settler.observe(path, stat.stamp.size, stat.stamp.modified, state, now);
        None
    }

    /// The state a path keeps when seen with this size and mtime and no new
    /// signal. A close vouches only for what it closed: changed since, the
    /// path must settle.
    fn kept(&self, path: &Path, size: u64, modified: SystemTime) -> Completion {
        match self.settler.state(path) {
            None => Completion::Found,
            Some(Completion::Closed) if self.settler.stamp(path) != Some((size, modified)) => Completion::Found,
            Some(state) => state,
        }
    }

    /// Take in a complete listing of the inbox: paths not in it are gone.
    fn listed(&mut self, listing: Listing, signal: Signal, now: Instant) -> Vec<Arrival> {
        let present: HashSet<PathBuf> = listing.iter().map(|(path, _)| path.clone()).collect();
        self.settler.retain(|path| present.contains(path));
        self.sent.retain(|path, _| present.contains(path));
        listing.into_iter().filter_map(|(path, stat)| self.see(path, stat, signal, now)).collect()
    }

    /// A settled path looked at again: hand it over if it is unchanged.
    fn confirm(&mut self, path: PathBuf, stat: io::Result<Option<Stat>>, now: Instant) -> Option<Arrival> {
        let Ok(Some(Stat { stamp, not_regular: None, .. })) = stat else {
            // Gone, unreadable or replaced by something else: the usual path.
            self.settler.forget(&path);
            return self.see(path, stat, Signal::Recheck, now);
        };
        let (size, modified) = self.settler.stamp(&path)?;
        if (size, modified) != (stamp.size, stamp.modified) {
            let state = self.kept(&path, stamp.size, stamp.modified);
            self.settler.observe(path, stamp.size, stamp.modified, state, now);
            return None;
        }
        self.settler.forget(&path);
        self.sent.insert(path.clone(), stamp);
        match inbox::too_big(&path, stamp.size, self.max_bytes) {
            Some(reason) => {
                tracing::info!("refused: {reason}");
                Some(Arrival::Refused(path, reason))
            }
            None => {
                tracing::debug!("{} is complete ({} bytes)", inbox::shown_name(&path), stamp.size);
                Some(Arrival::Ready(path))
            }
        }
    }
}

/// What a batch of notify events says.
#[derive(Default)]
struct Batch {
    signals: BTreeMap<PathBuf, Signal>,
    vanished: HashSet<PathBuf>,
    rescan: bool,
    inbox_gone: bool,
}

impl Batch {
    fn take(&mut self, inbox: &Path, res: notify::Result<notify::Event>) {
        let event = match res {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!("the inbox watcher reported an error ({e}); rescanning {}", inbox.display());
                self.rescan = true;
                return;
            }
        };
        tracing::debug!(kind = ?event.kind, paths = ?event.paths, "inbox event");
        if event.need_rescan() {
            tracing::warn!("inbox events were lost (queue overflow); rescanning {}", inbox.display());
            self.rescan = true;
        }
        for (i, path) in event.paths.iter().enumerate() {
            if path.as_path() == inbox {
                if matches!(event.kind, EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))) {
                    self.inbox_gone = true;
                }
                continue;
            }
            if path.parent() != Some(inbox) || path.file_name().is_none_or(inbox::is_temporary_name) {
                continue;
            }
            let (signal, vanished) = match event.kind {
                EventKind::Access(AccessKind::Close(AccessMode::Write)) => (Signal::Closed, false),
                // Opens (also the daemon's own reads) say nothing.
                EventKind::Access(_) => continue,
                EventKind::Create(_) => (Signal::Created, false),
                EventKind::Modify(ModifyKind::Data(_)) => (Signal::Writing, false),
                EventKind::Modify(ModifyKind::Name(RenameMode::To)) => (Signal::Closed, false),
                EventKind::Modify(ModifyKind::Name(RenameMode::From)) => (Signal::Recheck, true),
                EventKind::Modify(ModifyKind::Name(RenameMode::Both)) if i == 0 => (Signal::Recheck, true),
                EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => (Signal::Closed, false),
                EventKind::Remove(_) => (Signal::Recheck, true),
                _ => (Signal::Recheck, false),
            };
            if vanished {
                self.vanished.insert(path.clone());
            }
            let slot = self.signals.entry(path.clone()).or_insert(signal);
            if signal != Signal::Recheck {
                *slot = signal;
            }
        }
    }
}

fn settle_duration(seconds: f64) -> Duration {
    Duration::try_from_secs_f64(seconds).unwrap_or(Duration::from_secs(1))
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Run blocking file-system work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(io::Error::other)
}

/// Every non-temporary entry in the inbox with its `lstat`, sorted by name.
fn list(inbox: &Path) -> io::Result<Listing> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(inbox)? {
        let entry = entry?;
        if inbox::is_temporary_name(&entry.file_name()) {
            continue;
        }
        let path = entry.path();
        let stat = inbox::stat(&path);
        out.push((path, stat));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

async fn scan(inbox: &Path) -> Result<Listing, WatchError> {
    let dir = inbox.to_path_buf();
    blocking(move || list(&dir))
        .await
        .and_then(|r| r)
        .map_err(|source| WatchError::Read { path: inbox.to_path_buf(), source })
}

async fn stat_all(paths: Vec<PathBuf>) -> Listing {
    let fallback = paths.clone();
    match blocking(move || paths.into_iter().map(|p| (p.clone(), inbox::stat(&p))).collect()).await {
        Ok(listing) => listing,
        Err(e) => {
            let kind = e.kind();
            fallback.into_iter().map(|p| (p, Err(io::Error::new(kind, e.to_string())))).collect()
        }
    }
}

/// The inbox watcher task. Arms the notify watch (inotify mode), THEN scans
/// what is already there; rescans on lost events and every
/// `poll_interval_seconds` (the safety net in inotify mode, the only source in
/// `poll` mode); ignores temporary names until renamed; looks at a settled
/// file again before handing it over; sends each complete regular file once
/// while it stays in the inbox, and each refused entry once with its reason.
/// Returns `Ok` when `shutdown` completes or the receiver is dropped, and an
/// error if the inbox cannot be watched or read (or vanishes).
pub async fn watch(
    watch: Watch,
    tx: mpsc::Sender<Arrival>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WatchError> {
    let (_no_retries, mut retries) = mpsc::unbounded_channel();
    watch_with_retries(watch, tx, &mut retries, shutdown).await
}

/// [`watch`], also taking back paths whose hand-over came to nothing (their
/// commit failed): they are forgotten as handed over, so the next scan takes
/// them again.
pub async fn watch_with_retries(
    watch: Watch,
    tx: mpsc::Sender<Arrival>,
    retries: &mut mpsc::UnboundedReceiver<PathBuf>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WatchError> {
    tokio::select! {
        biased;
        () = shutdown => {
            tracing::debug!("inbox watcher stopped");
            Ok(())
        }
        result = run(watch, tx, retries) => result,
    }
}

/// The watcher proper; cancelled (dropped) at shutdown, which is safe at any
/// await point: all that is lost is memory, and the files stay in the inbox.
async fn run(
    watch: Watch,
    tx: mpsc::Sender<Arrival>,
    retries: &mut mpsc::UnboundedReceiver<PathBuf>,
) -> Result<(), WatchError> {
    let inbox = watch.inbox.clone();
    let period = Duration::from_secs(watch.poll_interval_seconds.max(1));
    let (event_tx, mut events) = mpsc::unbounded_channel();
    // The notify callback runs on notify's thread: it must never block.
    let watcher = match watch.mode {
        WatchMode::Inotify => {
            let to_error = |source| WatchError::Watch { path: inbox.clone(), source };
            let mut watcher = notify::recommended_watcher(move |res| {
                let _ = event_tx.send(res);
            })
            .map_err(to_error)?;
            // 1. Arm the watch (synchronous), 2. then scan: nothing slips between.
            watcher.watch(&inbox, RecursiveMode::NonRecursive).map_err(to_error)?;
            Some(watcher)
        }
        WatchMode::Poll => None,
    };
    let armed = watcher.is_some();
    let rescan_signal = if armed { Signal::Recheck } else { Signal::Found };
    tracing::info!(
        "watching the inbox {} ({})",
        inbox.display(),
        if armed { "inotify".to_string() } else { format!("polling every {} s", period.as_secs()) }
    );

    let mut tracker = Tracker {
        max_bytes: watch.max_file_bytes(),
        settler: Settler::new(settle_duration(watch.settle_seconds)),
        sent: HashMap::new(),
    };
    let mut out = tracker.listed(scan(&inbox).await?, Signal::Found, now());
    let start = tokio::time::Instant::now() + period;
    let mut tick = tokio::time::interval_at(start, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut queued = Vec::new();

    loop {
        for arrival in out.drain(..) {
            if tx.send(arrival).await.is_err() {
                tracing::debug!("nobody takes inbox arrivals any more; the watcher stops");
                return Ok(());
            }
        }

        let deadline = tracker.settler.next_deadline().map(tokio::time::Instant::from_std);
        let mut scan_due = false;
        tokio::select! {
            event = events.recv(), if armed => match event {
                Some(event) => queued.push(event),
                None => return Err(WatchError::Stopped { path: inbox }),
            },
            _ = tick.tick() => scan_due = true,
            Some(path) = retries.recv() => {
                // The writer logs the failure once per batch; a line per file would flood the log.
                tracing::debug!("{} is taken again at the next scan (not committed)", inbox::shown_name(&path));
                tracker.sent.remove(&path);
            }
            () = tokio::time::sleep_until(deadline.unwrap_or(start)), if deadline.is_some() => {}
        }

        // A scan first, then the events queued meanwhile: they are newer.
        if scan_due {
            let listing = scan(&inbox).await?;
            out.extend(tracker.listed(listing, rescan_signal, now()));
            for path in tracker.settler.stalled(now(), STALL_WARNING) {
                tracing::warn!(
                    "{} has been written to but not closed for {} minutes; labfeed takes it once \
                     the writer closes it or renames it into the inbox",
                    inbox::shown_name(&path),
                    STALL_WARNING.as_secs() / 60
                );
            }
        }
        while queued.len() < MAX_BATCH {
            match events.try_recv() {
                Ok(event) => queued.push(event),
                Err(_) => break,
            }
        }
        if !queued.is_empty() {
            let mut batch = Batch::default();
            for event in queued.drain(..) {
                batch.take(&inbox, event);
            }
            if batch.inbox_gone {
                return Err(WatchError::InboxGone { path: inbox });
            }
            let paths: Vec<PathBuf> = batch.signals.keys().cloned().collect();
            let stats = stat_all(paths).await;
            let now = now();
            for (path, stat) in stats {
                if batch.vanished.contains(&path) {
                    tracker.settler.forget(&path);
                    tracker.sent.remove(&path);
                }
                let signal = batch.signals.get(&path).copied().unwrap_or(Signal::Recheck);
                out.extend(tracker.see(path, stat, signal, now));
            }
            if batch.rescan {
                // Events were lost, a close among them maybe: stability decides.
                let listing = scan(&inbox).await?;
                out.extend(tracker.listed(listing, Signal::Found, now));
            }
        }

        let due = tracker.settler.ready(now());
        if !due.is_empty() {
            let stats = stat_all(due).await;
            let now = now();
            for (path, stat) in stats {
                out.extend(tracker.confirm(path, stat, now));
            }
        }
    }
}

/// One complete pass for `run --once`: every non-temporary entry now in the
/// inbox, sorted by name. Regular files are looked at twice, a settle time
/// apart, and handed over once unchanged (a file still changing after ten
/// settle periods is left for the next run, with a warning); other entries and
/// files over the size limit come back refused.
pub async fn scan_once(watch: &Watch) -> Result<Vec<Arrival>, WatchError> {
    let settle = settle_duration(watch.settle_seconds);
    let max_bytes = watch.max_file_bytes();
    let mut result: BTreeMap<PathBuf, Arrival> = BTreeMap::new();
    let refuse = |result: &mut BTreeMap<PathBuf, Arrival>, path: PathBuf, reason: String| {
        tracing::info!("refused: {reason}");
        result.insert(path.clone(), Arrival::Refused(path, reason));
    };
    let mut pending: Vec<(PathBuf, Stamp)> = Vec::new();
    for (path, stat) in scan(&watch.inbox).await? {
        match stat {
            Ok(None) => {}
            Ok(Some(Stat { not_regular: Some(reason), .. })) => refuse(&mut result, path, reason),
            Ok(Some(Stat { stamp, not_regular: None, .. })) => pending.push((path, stamp)),
            Err(e) => tracing::warn!("cannot examine {}: {e}; it stays in the inbox", inbox::shown_name(&path)),
        }
    }
    let mut ready = Vec::new();
    for _ in 0..ONCE_MAX_ROUNDS {
        if pending.is_empty() {
            break;
        }
        tokio::time::sleep(settle).await;
        let stats = stat_all(pending.iter().map(|(path, _)| path.clone()).collect()).await;
        let mut changed = Vec::new();
        for ((path, before), (_, stat)) in pending.into_iter().zip(stats) {
            match stat {
                Ok(None) => {}
                Ok(Some(Stat { not_regular: Some(reason), .. })) => refuse(&mut result, path, reason),
                Ok(Some(Stat { stamp, not_regular: None, .. })) if stamp == before => ready.push((path, stamp)),
                Ok(Some(Stat { stamp, .. })) => changed.push((path, stamp)),
                Err(e) => tracing::warn!("cannot examine {}: {e}; it stays in the inbox", inbox::shown_name(&path)),
            }
        }
        pending = changed;
    }
    for (path, stamp) in ready {
        match inbox::too_big(&path, stamp.size, max_bytes) {
            Some(reason) => refuse(&mut result, path, reason),
            None => {
                result.insert(path.clone(), Arrival::Ready(path));
            }
        }
    }
    for (path, _) in pending {
        tracing::warn!("{} is still being written; it stays in the inbox for the next run", inbox::shown_name(&path));
    }
    Ok(result.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTLE: Duration = Duration::from_secs(2);

    fn t0() -> Instant {
        Instant::now()
    }

    fn mtime(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn p(name: &str) -> PathBuf {
        PathBuf::from("/inbox").join(name)
    }

    #[test]
    fn not_ready_before_settle_ready_after() {
        let start = t0();
        let mut s = Settler::new(SETTLE);
        s.observe(p("a"), 10, mtime(1), Completion::Found, start);
        assert_eq!(s.next_deadline(), Some(start + SETTLE));
        assert!(s.ready(start).is_empty());
        assert!(s.ready(start + SETTLE - Duration::from_millis(1)).is_empty());
        assert_eq!(s.ready(start + SETTLE), vec![p("a")]);
    }

    #[test]
    fn a_change_restarts_the_clock() {
        let start = t0();
        let mut s = Settler::new(SETTLE);
        s.observe(p("a"), 10, mtime(1), Completion::Found, start);
        s.observe(p("a"), 20, mtime(2), Completion::Found, start + Duration::from_secs(1));
        assert!(s.ready(start + SETTLE).is_empty());
        assert_eq!(s.next_deadline(), Some(start + Duration::from_secs(1) + SETTLE));
        // Only the mtime moving restarts it too.
        s.observe(p("a"), 20, mtime(3), Completion::Found, start + Duration::from_secs(2));
        assert!(s.ready(start + Duration::from_secs(3)).is_empty());
        assert_eq!(s.ready(start + Duration::from_secs(4)), vec![p("a")]);
    }

    #[test]
    fn the_same_observation_does_not_restart_the_clock() {
        let start = t0();
        let mut s = Settler::new(SETTLE);
        s.observe(p("a"), 10, mtime(1), Completion::Found, start);
        s.observe(p("a"), 10, mtime(1), Completion::Found, start + Duration::from_secs(1));
        assert_eq!(s.ready(start + SETTLE), vec![p("a")]);
    }

    #[test]
    fn a_path_being_written_is_never_ready_and_a_closed_one_is_ready_at_once() {
        let start = t0();
        let mut s = Settler::new(SETTLE);
        s.observe(p("a"), 10, mtime(1), Completion::Writing, start);
        assert_eq!(s.next_deadline(), None);
        assert!(s.ready(start + Duration::from_secs(3600)).is_empty());
        let closed = start + Duration::from_secs(3600);
        s.observe(p("a"), 10, mtime(1), Completion::Closed, closed);
        assert_eq!(s.next_deadline(), Some(closed));
        assert_eq!(s.ready(closed), vec![p("a")], "no settle time after a close");
        // Found after a writer (events lost): the clock starts then.
        s.observe(p("b"), 10, mtime(1), Completion::Writing, start);
        s.observe(p("b"), 10, mtime(1), Completion::Found, closed);
        assert!(s.ready(closed + SETTLE - Duration::from_millis(1)).is_empty());
        assert_eq!(s.ready(closed + SETTLE), vec![p("b")]);
    }

    #[test]
    fn a_writer_at_work_unfinishes_a_finished_path() {
        let start = t0();
        let mut s = Settler::new(SETTLE);
        s.observe(p("a"), 10, mtime(1), Completion::Found, start);
        s.observe(p("a"), 10, mtime(1), Completion::Writing, start + Duration::from_secs(1));
        assert_eq!(s.state(&p("a")), Some(Completion::Writing));
        assert!(s.ready(start + Duration::from_secs(100)).is_empty());
    }

    #[test]
    fn each_path_is_returned_once_until_it_changes() {
        let start = t0();
        let mut s = Settler::new(SETTLE);
        s.observe(p("b"), 1, mtime(1), Completion::Found, start);
        s.observe(p("a"), 1, mtime(1), Completion::Found, start);
        assert_eq!(s.ready(start + SETTLE), vec![p("a"), p("b")], "sorted");
        assert!(s.ready(start + SETTLE * 2).is_empty());
        assert_eq!(s.next_deadline(), None);
        // Seen again unchanged: still not returned again.
        s.observe(p("a"), 1, mtime(1), Completion::Found, start + SETTLE * 3);
        assert!(s.ready(start + SETTLE * 10).is_empty());
        // Changed: returned again once settled.
        let later = start + SETTLE * 10;
        s.observe(p("a"), 2, mtime(2), Completion::Found, later);
        assert_eq!(s.ready(later + SETTLE), vec![p("a")]);
    }

    #[test]
    fn forget_and_retain_drop_paths() {
        let start = t0();
        let mut s = Settler::new(SETTLE);
        s.observe(p("a"), 1, mtime(1), Completion::Found, start);
        s.observe(p("b"), 1, mtime(1), Completion::Found, start);
        s.observe(p("c"), 1, mtime(1), Completion::Found, start);
        s.forget(&p("a"));
        s.retain(|path| path != p("b"));
        assert_eq!(s.state(&p("a")), None);
        assert_eq!(s.ready(start + SETTLE), vec![p("c")]);
        // Forgotten then seen again: a new file, returned again.
        s.forget(&p("c"));
        s.observe(p("c"), 1, mtime(1), Completion::Found, start + SETTLE);
        assert_eq!(s.ready(start + SETTLE * 2), vec![p("c")]);
    }

    #[test]
    fn zero_settle_is_ready_at_once() {
        let start = t0();
        let mut s = Settler::new(Duration::ZERO);
        s.observe(p("a"), 1, mtime(1), Completion::Found, start);
        assert_eq!(s.ready(start), vec![p("a")]);
    }

    #[test]
    fn stalled_reports_unfinished_paths_once() {
        let start = t0();
        let mut s = Settler::new(SETTLE);
        s.observe(p("open"), 1, mtime(1), Completion::Writing, start);
        s.observe(p("done"), 1, mtime(1), Completion::Found, start);
        let after = Duration::from_secs(600);
        assert!(s.stalled(start + after - Duration::from_secs(1), after).is_empty());
        assert_eq!(s.stalled(start + after, after), vec![p("open")]);
        assert!(s.stalled(start + after * 2, after).is_empty());
    }

    fn stat_of(size: u64, secs: u64, inode: u64) -> io::Result<Option<Stat>> {
        Ok(Some(Stat { stamp: Stamp { size, modified: mtime(secs), inode }, nlink: 1, not_regular: None }))
    }

    fn tracker() -> Tracker {
        Tracker { max_bytes: 100, settler: Settler::new(SETTLE), sent: HashMap::new() }
    }

    #[test]
    fn tracker_hands_over_once_while_the_file_stays() {
        let start = t0();
        let mut t = tracker();
        assert!(t.see(p("a"), stat_of(5, 1, 7), Signal::Found, start).is_none());
        let due = t.settler.ready(start + SETTLE);
        assert_eq!(due, vec![p("a")]);
        assert_eq!(t.confirm(p("a"), stat_of(5, 1, 7), start + SETTLE), Some(Arrival::Ready(p("a"))));
        // Still there at later scans: nothing more.
        let listing = vec![(p("a"), stat_of(5, 1, 7))];
        assert!(t.listed(listing, Signal::Found, start + SETTLE * 2).is_empty());
        assert!(t.settler.ready(start + SETTLE * 10).is_empty());
        // Gone from a scan, then a new file under the same name: taken again.
        assert!(t.listed(Vec::new(), Signal::Found, start + SETTLE * 10).is_empty());
        t.see(p("a"), stat_of(5, 1, 8), Signal::Found, start + SETTLE * 10);
        assert_eq!(t.settler.ready(start + SETTLE * 11), vec![p("a")]);
    }

    #[test]
    fn tracker_restarts_when_the_file_moved_before_handover() {
        let start = t0();
        let mut t = tracker();
        t.see(p("a"), stat_of(5, 1, 7), Signal::Found, start);
        assert_eq!(t.settler.ready(start + SETTLE), vec![p("a")]);
        assert_eq!(t.confirm(p("a"), stat_of(9, 2, 7), start + SETTLE), None);
        assert!(t.settler.ready(start + SETTLE).is_empty());
        assert_eq!(t.settler.ready(start + SETTLE * 2), vec![p("a")]);
        assert_eq!(t.confirm(p("a"), stat_of(9, 2, 7), start + SETTLE * 2), Some(Arrival::Ready(p("a"))));
    }

    #[test]
    fn tracker_refuses_oversized_files_after_settling() {
        let start = t0();
        let mut t = tracker();
        t.see(p("big"), stat_of(101, 1, 7), Signal::Found, start);
        t.settler.ready(start + SETTLE);
        match t.confirm(p("big"), stat_of(101, 1, 7), start + SETTLE) {
            Some(Arrival::Refused(path, reason)) => {
                assert_eq!(path, p("big"));
                assert!(reason.contains("the limit is 100 bytes"), "{reason}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn tracker_hands_over_a_closed_file_at_once_unless_it_moved_since() {
        let start = t0();
        let mut t = tracker();
        t.see(p("a"), stat_of(5, 1, 7), Signal::Closed, start);
        assert_eq!(t.settler.ready(start), vec![p("a")]);
        assert_eq!(t.confirm(p("a"), stat_of(5, 1, 7), start), Some(Arrival::Ready(p("a"))));
        // Moved between the close and the look before handover: it settles.
        t.see(p("b"), stat_of(5, 1, 8), Signal::Closed, start);
        assert_eq!(t.settler.ready(start), vec![p("b")]);
        assert_eq!(t.confirm(p("b"), stat_of(9, 2, 8), start), None);
        assert!(t.settler.ready(start + SETTLE - Duration::from_millis(1)).is_empty());
        assert_eq!(t.settler.ready(start + SETTLE), vec![p("b")]);
        // Moved, seen by a rescan without a new close: it settles too.
        t.see(p("c"), stat_of(5, 1, 9), Signal::Closed, start);
        t.see(p("c"), stat_of(6, 2, 9), Signal::Recheck, start);
        assert!(t.settler.ready(start + SETTLE - Duration::from_millis(1)).is_empty());
        assert_eq!(t.settler.ready(start + SETTLE), vec![p("c")]);
        // Unchanged at a rescan: the close still holds.
        t.see(p("d"), stat_of(5, 1, 10), Signal::Closed, start);
        t.see(p("d"), stat_of(5, 1, 10), Signal::Recheck, start);
        assert_eq!(t.settler.ready(start), vec![p("d")]);
        // Written again after the close: waited for.
        t.see(p("e"), stat_of(5, 1, 11), Signal::Closed, start);
        t.see(p("e"), stat_of(6, 2, 11), Signal::Writing, start);
        assert!(t.settler.ready(start + SETTLE * 100).is_empty());
    }

    #[test]
    fn a_created_file_with_another_name_settles_and_a_new_one_waits_for_its_writer() {
        let start = t0();
        let mut t = tracker();
        let linked =
            Ok(Some(Stat { stamp: Stamp { size: 5, modified: mtime(1), inode: 7 }, nlink: 2, not_regular: None }));
        t.see(p("linked"), linked, Signal::Created, start);
        t.see(p("new"), stat_of(5, 1, 8), Signal::Created, start);
        assert!(t.settler.ready(start + SETTLE - Duration::from_millis(1)).is_empty());
        assert_eq!(t.settler.ready(start + SETTLE * 100), vec![p("linked")]);
        // Written to after the link: waited for like any writer.
        t.see(p("linked2"), stat_of(5, 1, 9), Signal::Created, start);
        t.see(p("linked2"), stat_of(6, 2, 9), Signal::Writing, start);
        assert!(t.settler.ready(start + SETTLE * 100).is_empty());
    }

    #[test]
    fn recheck_keeps_a_writer_waited_for_but_finishes_unknown_paths() {
        let start = t0();
        let mut t = tracker();
        t.see(p("open"), stat_of(5, 1, 7), Signal::Writing, start);
        t.see(p("open"), stat_of(5, 1, 7), Signal::Recheck, start);
        t.see(p("found"), stat_of(5, 1, 8), Signal::Recheck, start);
        assert_eq!(t.settler.ready(start + SETTLE * 100), vec![p("found")]);
    }

    #[test]
    fn batch_maps_events_to_signals() {
        use notify::event::{CreateKind, DataChange, RemoveKind};
        let inbox = Path::new("/inbox");
        let ev = |kind, paths: &[&str]| {
            let mut event = notify::Event::new(kind);
            for path in paths {
                event = event.add_path(inbox.join(path));
            }
            Ok(event)
        };
        let mut b = Batch::default();
        b.take(inbox, ev(EventKind::Create(CreateKind::File), &["a"]));
        b.take(inbox, ev(EventKind::Modify(ModifyKind::Data(DataChange::Any)), &["a"]));
        b.take(inbox, ev(EventKind::Access(AccessKind::Close(AccessMode::Write)), &["a"]));
        b.take(inbox, ev(EventKind::Modify(ModifyKind::Metadata(notify::event::MetadataKind::Any)), &["a"]));
        b.take(inbox, ev(EventKind::Access(AccessKind::Close(AccessMode::Write)), &["b"]));
        b.take(inbox, ev(EventKind::Modify(ModifyKind::Data(DataChange::Any)), &["b"]));
        b.take(inbox, ev(EventKind::Modify(ModifyKind::Name(RenameMode::Both)), &["c.tmp", "c"]));
        b.take(inbox, ev(EventKind::Remove(RemoveKind::File), &["d"]));
        b.take(inbox, ev(EventKind::Access(AccessKind::Open(AccessMode::Any)), &["e"]));
        b.take(inbox, ev(EventKind::Create(CreateKind::File), &["f"]));
        assert_eq!(b.signals.get(&inbox.join("a")), Some(&Signal::Closed));
        assert_eq!(b.signals.get(&inbox.join("b")), Some(&Signal::Writing));
        assert_eq!(b.signals.get(&inbox.join("c")), Some(&Signal::Closed));
        assert_eq!(b.signals.get(&inbox.join("c.tmp")), None, "temporary names are ignored");
        assert_eq!(b.signals.get(&inbox.join("d")), Some(&Signal::Recheck));
        assert!(b.vanished.contains(&inbox.join("d")));
        assert_eq!(b.signals.get(&inbox.join("e")), None, "opens say nothing");
        assert_eq!(b.signals.get(&inbox.join("f")), Some(&Signal::Created), "nothing followed the create");
        assert!(!b.rescan && !b.inbox_gone);

        let overflow = notify::Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan);
        b.take(inbox, Ok(overflow));
        assert!(b.rescan);
        b.take(inbox, ev(EventKind::Remove(RemoveKind::Folder), &[""]));
        assert!(b.inbox_gone, "the inbox itself removed");
    }
}
