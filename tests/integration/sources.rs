//! The real inbox watcher (`labfeed::daemon::sources::watch`) on a temporary folder:
//! complete files handed over exactly once, temporary names and open files
//! waited for, refusals, poll mode, shutdown, and the `run --once` pass.
//!
//! No timing assertions: waits are bounded loops, and "nothing arrives" is
//! checked over a window that spans at least one safety-net rescan.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use labfeed::daemon::sources::inbox;
use labfeed::daemon::sources::watch::{self, Arrival, WatchError};
use labfeed::study::config::{Watch, WatchMode};
use tempfile::TempDir;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// The longest wait for something that should happen.
const WAIT: Duration = Duration::from_secs(6);
/// A window spanning a safety-net rescan (`poll_interval_seconds = 1`) and
/// several settle times: what has not arrived by then was held back.
const QUIET: Duration = Duration::from_millis(1300);

fn config(root: &Path, mode: WatchMode) -> Watch {
    Watch {
        inbox: root.join("inbox"),
        archive: root.join("archive"),
        quarantine: root.join("quarantine"),
        mode,
        poll_interval_seconds: 1,
        settle_seconds: 0.2,
        max_file_size_mib: 1,
    }
}

struct Running {
    rx: mpsc::Receiver<Arrival>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), WatchError>>,
    inbox: PathBuf,
    _root: TempDir,
}

/// Start the watcher on a new inbox holding `before` (names and contents),
/// and wait until those have arrived: the watch is then armed, since arming
/// comes before the first scan.
async fn start(mode: WatchMode, before: &[(&str, &str)]) -> (Running, Vec<Arrival>) {
    start_settling(mode, 0.2, before).await
}

async fn start_settling(mode: WatchMode, settle_seconds: f64, before: &[(&str, &str)]) -> (Running, Vec<Arrival>) {
    let root = tempfile::tempdir().unwrap();
    let cfg = Watch { settle_seconds, ..config(root.path(), mode) };
    inbox::ensure_dirs(&cfg).unwrap();
    for (name, content) in before {
        fs::write(cfg.inbox.join(name), content).unwrap();
    }
    let (tx, rx) = mpsc::channel(1000);
    let (stop, stopped) = oneshot::channel::<()>();
    let inbox = cfg.inbox.clone();
    let task = tokio::spawn(watch::watch(cfg, tx, async move {
        let _ = stopped.await;
    }));
    let mut running = Running { rx, stop: Some(stop), task, inbox, _root: root };
    let first = running.take(before.len()).await;
    (running, first)
}

impl Running {
    fn path(&self, name: &str) -> PathBuf {
        self.inbox.join(name)
    }

    /// The next arrival, or panic after `WAIT`.
    async fn next(&mut self) -> Arrival {
        match tokio::time::timeout(WAIT, self.rx.recv()).await {
            Ok(Some(arrival)) => arrival,
            Ok(None) => panic!("the watcher stopped: {:?}", self.task.is_finished()),
            Err(_) => panic!("nothing arrived within {WAIT:?}"),
        }
    }

    async fn take(&mut self, n: usize) -> Vec<Arrival> {
        let mut out = Vec::new();
        while out.len() < n {
            out.push(self.next().await);
        }
        out
    }

    /// Whatever arrives within `QUIET` (expected: nothing).
    async fn quiet(&mut self) -> Vec<Arrival> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + QUIET;
        while let Ok(Some(arrival)) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
            out.push(arrival);
        }
        out
    }

    async fn stop(mut self) -> Result<(), WatchError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(WAIT, self.task).await.expect("the watcher ends after shutdown").unwrap()
    }
}

fn ready(path: PathBuf) -> Arrival {
    Arrival::Ready(path)
}

fn sorted(mut arrivals: Vec<Arrival>) -> Vec<Arrival> {
    arrivals.sort_by(|a, b| a.path().cmp(b.path()));
    arrivals
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_present_before_start_are_handed_over_once_and_odd_entries_refused() {
    let root = tempfile::tempdir().unwrap();
    let outside = root.path().join("outside.astm");
    fs::write(&outside, "not in the inbox").unwrap();
    let mut cfg = config(root.path(), WatchMode::Inotify);
    // No safety-net rescan during the test: only the first scan can find them.
    cfg.poll_interval_seconds = 60;
    inbox::ensure_dirs(&cfg).unwrap();
    fs::write(cfg.inbox.join("a.astm"), "H|\\^&\r").unwrap();
    fs::write(cfg.inbox.join("b.hl7"), "MSH|^~\\&\r").unwrap();
    fs::write(cfg.inbox.join(".hidden"), "x").unwrap();
    fs::write(cfg.inbox.join("c.tmp"), "x").unwrap();
    fs::write(cfg.inbox.join("~lock"), "x").unwrap();
    std::os::unix::fs::symlink(&outside, cfg.inbox.join("link.astm")).unwrap();
    fs::create_dir(cfg.inbox.join("folder")).unwrap();
    let inbox_dir = cfg.inbox.clone();

    let (tx, mut rx) = mpsc::channel(100);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(watch::watch(cfg, tx, async move {
        let _ = stopped.await;
    }));
    let mut got = Vec::new();
    while got.len() < 4 {
        match tokio::time::timeout(WAIT, rx.recv()).await {
            Ok(Some(arrival)) => got.push(arrival),
            other => panic!("expected 4 arrivals, got {got:?} then {other:?}"),
        }
    }
    let got = sorted(got);
    assert_eq!(got[0], ready(inbox_dir.join("a.astm")));
    assert_eq!(got[1], ready(inbox_dir.join("b.hl7")));
    match &got[2] {
        Arrival::Refused(path, reason) => {
            assert_eq!(path, &inbox_dir.join("folder"));
            assert!(reason.contains("is a directory"), "{reason}");
        }
        other => panic!("expected the folder refused, got {other:?}"),
    }
    match &got[3] {
        Arrival::Refused(path, reason) => {
            assert_eq!(path, &inbox_dir.join("link.astm"));
            assert!(reason.contains("symbolic link"), "{reason}");
        }
        other => panic!("expected the link refused, got {other:?}"),
    }
    // Nothing again while they stay in the inbox (the daemon has not moved
    // them yet); the other tests cover this across safety-net rescans.
    let deadline = tokio::time::Instant::now() + QUIET;
    if let Ok(Some(arrival)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        panic!("handed over again: {arrival:?}");
    }
    assert_eq!(fs::read_to_string(&outside).unwrap(), "not in the inbox");
    let _ = stop.send(());
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowly_written_file_is_handed_over_only_after_its_close() {
    let (mut w, _) = start(WatchMode::Inotify, &[("sentinel.astm", "x")]).await;
    let path = w.path("slow.astm");
    let mut file = File::create(&path).unwrap();
    let mut expected = String::new();
    for i in 0..5 {
        let chunk = format!("R|{i}|^^^CPEP|0.5|nmol/L\r");
        file.write_all(chunk.as_bytes()).unwrap();
        file.flush().unwrap();
        expected.push_str(&chunk);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Still open: idle far longer than the settle time, across a rescan.
    assert_eq!(w.quiet().await, vec![], "handed over while still open");
    file.write_all(b"L|1|N\r").unwrap();
    expected.push_str("L|1|N\r");
    drop(file);
    assert_eq!(w.next().await, ready(path.clone()));
    assert_eq!(fs::read_to_string(&path).unwrap(), expected);
    assert_eq!(w.quiet().await, vec![]);
    w.stop().await.unwrap();
}

/// Long enough that a file handed over within `WAIT` did not wait for it.
const LONG_SETTLE: f64 = 30.0;

/// The inotify watcher with `LONG_SETTLE`, once its watch is armed: probes
/// are renamed in until one arrives (a probe dropped before the watch was
/// armed is found by the first scan and waits the settle time; it is ignored).
async fn start_armed_with_long_settle() -> Running {
    let (mut w, _) = start_settling(WatchMode::Inotify, LONG_SETTLE, &[]).await;
    for i in 0..30 {
        let tmp = w.path(&format!("probe-{i}.tmp"));
        fs::write(&tmp, "x").unwrap();
        fs::rename(&tmp, w.path(&format!("probe-{i}.astm"))).unwrap();
        if let Ok(Some(arrival)) = tokio::time::timeout(Duration::from_millis(200), w.rx.recv()).await {
            assert!(arrival.path().file_name().unwrap().to_string_lossy().starts_with("probe-"), "{arrival:?}");
            return w;
        }
    }
    panic!("no probe arrived: the watch was never armed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_long_settle_a_file_renamed_in_or_closed_after_writing_is_taken_at_once() {
    let mut w = start_armed_with_long_settle().await;
    // Renamed in (IN_MOVED_TO).
    let tmp = w.path("renamed.astm.part");
    fs::write(&tmp, "H|\\^&\rL|1|N\r").unwrap();
    fs::rename(&tmp, w.path("renamed.astm")).unwrap();
    assert_eq!(w.next().await, ready(w.path("renamed.astm")), "taken well before the settle time");
    // Written in place and closed (IN_CLOSE_WRITE).
    let mut file = File::create(w.path("written.astm")).unwrap();
    file.write_all(b"H|\\^&\r").unwrap();
    file.write_all(b"L|1|N\r").unwrap();
    drop(file);
    assert_eq!(w.next().await, ready(w.path("written.astm")), "taken well before the settle time");
    assert_eq!(fs::read_to_string(w.path("written.astm")).unwrap(), "H|\\^&\rL|1|N\r");
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_long_settle_a_file_still_open_or_written_again_waits_for_its_close() {
    let mut w = start_armed_with_long_settle().await;
    let path = w.path("open.astm");
    let mut file = File::create(&path).unwrap();
    file.write_all(b"H|\\^&\r").unwrap();
    file.flush().unwrap();
    // Created and written, still open: not taken, across a rescan.
    assert_eq!(w.quiet().await, vec![], "handed over while still open");
    file.write_all(b"L|1|N\r").unwrap();
    drop(file);
    assert_eq!(w.next().await, ready(path.clone()));
    // Opened again and written after its close, held open: waited for again.
    let mut file = fs::OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(b"H|\\^&\r").unwrap();
    file.flush().unwrap();
    assert_eq!(w.quiet().await, vec![], "handed over again while written");
    file.write_all(b"L|1|N\r").unwrap();
    drop(file);
    assert_eq!(w.next().await, ready(path.clone()));
    assert_eq!(fs::read_to_string(&path).unwrap(), "H|\\^&\rL|1|N\rH|\\^&\rL|1|N\r");
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_mode_keeps_the_settle_time() {
    let (mut w, _) = start_settling(WatchMode::Poll, LONG_SETTLE, &[]).await;
    let tmp = w.path("renamed.astm.part");
    fs::write(&tmp, "H|\\^&\r").unwrap();
    fs::rename(&tmp, w.path("renamed.astm")).unwrap();
    // Polls see no close or rename: the file must stay unchanged for the settle time.
    assert_eq!(w.quiet().await, vec![]);
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_name_renamed_in_is_handed_over_once_under_its_final_name() {
    let (mut w, _) = start(WatchMode::Inotify, &[("sentinel.astm", "x")]).await;
    let tmp = w.path("x.astm.tmp");
    fs::write(&tmp, "H|\\^&\rL|1|N\r").unwrap();
    let part = w.path("y.part");
    fs::write(&part, "H|\\^&\r").unwrap();
    let dot = w.path(".z.astm");
    fs::write(&dot, "H|\\^&\r").unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let final_name = w.path("x.astm");
    fs::rename(&tmp, &final_name).unwrap();
    assert_eq!(w.next().await, ready(final_name));
    assert_eq!(w.quiet().await, vec![], "the temporary names are never handed over, nor x.astm twice");
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_moved_out_and_delivered_again_is_handed_over_again() {
    let (mut w, first) = start(WatchMode::Inotify, &[("r.astm", "one")]).await;
    let path = w.path("r.astm");
    assert_eq!(first, vec![ready(path.clone())]);
    // The daemon archives it; the lab drops the same name again.
    let archive = w._root.path().join("archive");
    inbox::archive(&path, &archive, jiff::civil::date(2026, 3, 2)).unwrap();
    fs::write(&path, "two").unwrap();
    assert_eq!(w.next().await, ready(path.clone()));
    assert_eq!(fs::read_to_string(&path).unwrap(), "two");
    // Changed in place after handover (appended): taken again once complete.
    let mut file = fs::OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(b" and three").unwrap();
    drop(file);
    assert_eq!(w.next().await, ready(path.clone()));
    assert_eq!(w.quiet().await, vec![]);
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_300_files_arrives_exactly_once_each() {
    let (mut w, _) = start(WatchMode::Inotify, &[("sentinel.astm", "x")]).await;
    let names: Vec<String> = (0..300).map(|i| format!("burst-{i:03}.astm")).collect();
    for name in &names {
        fs::write(w.path(name), format!("H|\\^&|||{name}\r")).unwrap();
    }
    let mut seen: BTreeMap<PathBuf, usize> = BTreeMap::new();
    for arrival in w.take(names.len()).await {
        match arrival {
            Arrival::Ready(path) => *seen.entry(path).or_default() += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    for arrival in w.quiet().await {
        *seen.entry(arrival.path().to_path_buf()).or_default() += 1;
    }
    let expected: BTreeMap<PathBuf, usize> = names.iter().map(|n| (w.path(n), 1)).collect();
    assert_eq!(seen, expected);
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_dropped_later_is_refused_once() {
    let (mut w, _) = start(WatchMode::Inotify, &[("sentinel.astm", "x")]).await;
    let target = w._root.path().join("elsewhere.astm");
    fs::write(&target, "secret").unwrap();
    let link = w.path("link.astm");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    match w.next().await {
        Arrival::Refused(path, reason) => {
            assert_eq!(path, link);
            assert!(reason.contains("is a symbolic link; labfeed never follows links"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(w.quiet().await, vec![]);
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_hard_linked_in_is_taken_once_settled_and_one_still_open_is_not() {
    let (mut w, _) = start(WatchMode::Inotify, &[("sentinel.astm", "x")]).await;
    let outside = w._root.path().join("elsewhere.astm");
    fs::write(&outside, "made elsewhere").unwrap();
    // link(2) sends a create and nothing after it: no close will come.
    fs::hard_link(&outside, w.path("linked.astm")).unwrap();
    assert_eq!(w.next().await, ready(w.path("linked.astm")));
    // A file created and still open is not taken on its create alone.
    let mut open = File::create(w.path("open.astm")).unwrap();
    open.write_all(b"half").unwrap();
    open.flush().unwrap();
    assert_eq!(w.quiet().await, vec![]);
    drop(open);
    assert_eq!(w.next().await, ready(w.path("open.astm")));
    assert_eq!(w.quiet().await, vec![]);
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_mode_finds_present_and_new_files() {
    let (mut w, first) = start(WatchMode::Poll, &[("old.astm", "x")]).await;
    assert_eq!(first, vec![ready(w.path("old.astm"))]);
    fs::write(w.path("new.hl7"), "MSH|^~\\&\r").unwrap();
    fs::write(w.path("new.hl7.part"), "MSH|").unwrap();
    assert_eq!(w.next().await, ready(w.path("new.hl7")));
    assert_eq!(w.quiet().await, vec![]);
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_the_task_and_a_missing_inbox_is_an_error() {
    let (w, _) = start(WatchMode::Inotify, &[]).await;
    w.stop().await.unwrap();

    for mode in [WatchMode::Inotify, WatchMode::Poll] {
        let root = tempfile::tempdir().unwrap();
        let cfg = config(root.path(), mode);
        let (tx, _rx) = mpsc::channel(1);
        let result = tokio::time::timeout(WAIT, watch::watch(cfg, tx, std::future::pending())).await;
        let err = result.expect("returns at once").unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&root.path().join("inbox").display().to_string()), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_removed_while_watched_ends_the_task_with_an_error() {
    let (w, _) = start(WatchMode::Inotify, &[]).await;
    fs::remove_dir(&w.inbox).unwrap();
    let result = tokio::time::timeout(WAIT, w.task).await.expect("the watcher notices");
    let err = result.unwrap().unwrap_err();
    assert!(err.to_string().contains("inbox"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_once_returns_settled_files_sorted_and_refusals() {
    let root = tempfile::tempdir().unwrap();
    let cfg = config(root.path(), WatchMode::Inotify);
    inbox::ensure_dirs(&cfg).unwrap();
    fs::write(cfg.inbox.join("b.astm"), "b").unwrap();
    fs::write(cfg.inbox.join("a.hl7"), "a").unwrap();
    fs::write(cfg.inbox.join("c.tmp"), "c").unwrap();
    fs::write(cfg.inbox.join("d.astm"), vec![b'x'; (1 << 20) + 1]).unwrap();
    std::os::unix::fs::symlink(root.path().join("nowhere"), cfg.inbox.join("e.astm")).unwrap();
    let got = watch::scan_once(&cfg).await.unwrap();
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[0], ready(cfg.inbox.join("a.hl7")));
    assert_eq!(got[1], ready(cfg.inbox.join("b.astm")));
    match &got[2] {
        Arrival::Refused(path, reason) => {
            assert_eq!(path, &cfg.inbox.join("d.astm"));
            assert!(reason.contains("the limit is watch.max_file_size_mib = 1"), "{reason}");
        }
        other => panic!("expected d.astm refused, got {other:?}"),
    }
    assert!(matches!(&got[3], Arrival::Refused(path, _) if path == &cfg.inbox.join("e.astm")));
    // Nothing was moved or deleted.
    assert_eq!(fs::read_dir(&cfg.inbox).unwrap().count(), 5);
}
