//! `labfeed run` through the real binary: files dropped the ways lab staff
//! and their tools drop them, quarantine, bursts, SIGKILL and restart
//! (exactly once), SIGTERM, a missing inbox, a second instance.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::support::{TempStudy, text};

/// A study with fast settling, 100 participants imported, and the daemon's folders.
struct Study {
    t: TempStudy,
}

impl Study {
    fn new() -> Study {
        Study::settling("0.3")
    }

    fn settling(seconds: &str) -> Study {
        Study::build(&[("settle_seconds = 1.0", &format!("settle_seconds = {seconds}"))], |_| {})
    }

    /// A study with these config edits; `prepare` runs before the database is made.
    fn build(edits: &[(&str, &str)], prepare: impl FnOnce(&TempStudy)) -> Study {
        let mut edits = edits.to_vec();
        edits.push(("poll_interval_seconds = 2", "poll_interval_seconds = 1"));
        let t = TempStudy::new(&edits);
        prepare(&t);
        let participants: String = std::iter::once("participant".to_owned())
            .chain((0..100).map(|i| format!("U{i:03}")))
            .collect::<Vec<_>>()
            .join("\n");
        let csv = t.file("participants.csv", &participants);
        let out = t.run(&["import", "participants", csv.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        Study { t }
    }

    fn inbox(&self) -> PathBuf {
        self.t.lib("inbox")
    }
    fn quarantine(&self) -> PathBuf {
        self.t.lib("quarantine")
    }
    fn archive(&self) -> PathBuf {
        self.t.lib("archive")
    }

    fn command(&self, args: &[&str]) -> Command {
        self.t.command(args)
    }

    fn run_once(&self) -> Output {
        self.command(&["run", "--once"]).output().unwrap()
    }

    fn start(&self) -> Child {
        self.start_with_env(&[])
    }

    fn start_with_env(&self, env: &[(&str, &Path)]) -> Child {
        // The log goes to a file: a pipe nobody reads would fill up and stall the daemon.
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.t.dir.path().join("daemon.log")).unwrap();
        let mut command = self.command(&["run"]);
        command.envs(env.iter().map(|(k, v)| (k, v.as_os_str())));
        let child = command.stdout(Stdio::null()).stderr(Stdio::from(log)).spawn().unwrap();
        // The daemon is watching once a probe file has been archived.
        wait_for(|| self.inbox().is_dir(), "the daemon to create the inbox");
        let probe = upload(99, 0);
        std::fs::write(self.inbox().join("probe.astm"), probe).unwrap();
        wait_for(
            || archived(&self.archive()).iter().any(|p| p.ends_with("probe.astm")),
            "the probe file to be archived",
        );
        child
    }

    fn export(&self) -> Vec<String> {
        let out = self.command(&["export", "results"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().skip(1).map(str::to_owned).collect()
    }
}

/// An e411 upload for participant `p`, 2 results, distinct per (p, n).
pub(crate) fn upload(p: usize, n: usize) -> String {
    let minute = [-10, 0, 15, 30, 60, 90, 120][n % 7];
    let visit = ["V0", "V1", "V2", "V3", "V4"][(n / 7) % 5];
    format!(
        "H|\\^&|||cobas-e411^1|||||host|RSUPL^BATCH|P|1|20260302101500\rP|1\rO|1|U{p:03}-{visit}-T{minute}||^^^CPEP\rR|1|^^^CPEP|0.{n:03}|nmol/L||N||F||ADMIN||20260302101000\rR|2|^^^GLUC|5.{n}|mmol/L||N||F||ADMIN||20260302101100\rL|1|N\r"
    )
}

#[test]
fn a_255_byte_name_keeps_its_reason_file_and_a_clash_leaves_nothing_in_the_inbox() {
    let s = Study::new();
    for dir in [s.inbox(), s.quarantine()] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let name = format!("{}.hl7", "n".repeat(251));
    assert_eq!(name.len(), 255);
    // The name is taken in the quarantine already: the new one gets a shortened, suffixed name.
    std::fs::write(s.quarantine().join(&name), "earlier").unwrap();
    std::fs::write(s.inbox().join(&name), "MSH|^~|BAD\rPID|1\r").unwrap();
    let out = s.run_once();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(files_in(&s.inbox()).is_empty(), "nothing is left in the inbox");
    let kept = files_in(&s.quarantine());
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert!(kept.contains(&name), "the earlier file is untouched");
    assert_eq!(std::fs::read_to_string(s.quarantine().join(&name)).unwrap(), "earlier");
    let moved = kept.iter().find(|n| n.ends_with("-1.hl7")).expect("a suffixed name");
    assert_eq!(moved.len(), 255);
    let reason = kept.iter().find(|n| n.ends_with(".reason.txt")).expect("a reason file");
    assert!(reason.len() <= 255 && reason.starts_with("nnnn"), "{reason}");
    let text = std::fs::read_to_string(s.quarantine().join(reason)).unwrap();
    assert!(text.contains("MSH-2") && text.contains(&name), "{text}");
}

#[test]
fn a_file_hard_linked_into_the_inbox_is_archived_without_a_restart() {
    let s = Study::new();
    let child = s.start();
    let outside = s.t.file("made-elsewhere.astm", &upload(7, 3));
    std::fs::hard_link(&outside, s.inbox().join("linked.astm")).unwrap();
    wait_for(
        || archived(&s.archive()).iter().any(|p| p.ends_with("linked.astm")),
        "the hard-linked file to be archived",
    );
    assert!(!s.inbox().join("linked.astm").exists());
    assert!(outside.exists(), "the other name stays");
    assert!(stop(child).success());
    assert_eq!(s.export().len(), 4, "the probe and the linked file");
}

pub(crate) fn archived(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() { stack.push(path) } else { found.push(path) }
        }
    }
    found
}

pub(crate) fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// Wait (bounded) for a condition; the bound is generous and never asserted as a speed.
fn wait_for(mut condition: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill").arg(format!("-{name}")).arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
}

fn stop(mut child: Child) -> std::process::ExitStatus {
    signal(&child, "TERM");
    child.wait().unwrap()
}

#[test]
fn run_once_archives_good_files_and_quarantines_bad_ones_with_a_reason() {
    let s = Study::new();
    std::fs::create_dir_all(s.inbox()).unwrap();
    std::fs::write(s.inbox().join("a.astm"), upload(1, 1)).unwrap();
    std::fs::write(s.inbox().join("b.hl7"), "MSH|^~|BAD\rPID|1\r").unwrap();
    std::fs::write(s.inbox().join("c.part"), upload(1, 2)).unwrap();
    let out = s.run_once();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a quarantined file makes the exit code 1: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let day = archived(&s.archive());
    assert_eq!(day.len(), 1, "{day:?}");
    let rel = day[0].strip_prefix(s.archive()).unwrap().to_string_lossy().into_owned();
    assert!(rel.len() == "YYYY/MM/DD/a.astm".len() && rel.ends_with("a.astm"), "{rel}");
    assert_eq!(files_in(&s.quarantine()), ["b.hl7", "b.hl7.reason.txt"]);
    let reason = std::fs::read_to_string(s.quarantine().join("b.hl7.reason.txt")).unwrap();
    assert!(reason.contains("MSH-2"), "{reason}");
    assert_eq!(files_in(&s.inbox()), ["c.part"], "temporary names are left alone");
    assert_eq!(s.export().len(), 2);
}

#[test]
fn a_missing_inbox_is_created_or_named_never_a_panic() {
    let s = Study::new();
    assert!(!s.inbox().exists());
    assert_eq!(s.run_once().status.code(), Some(0));
    assert!(s.inbox().is_dir() && s.archive().is_dir() && s.quarantine().is_dir());

    let text = std::fs::read_to_string(&s.t.config).unwrap().replace("/inbox\"", "/no/such/parent/inbox\"");
    std::fs::write(&s.t.config, text).unwrap();
    let out = s.run_once();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no/such/parent"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn the_daemon_takes_files_written_slowly_renamed_in_or_present_before_start() {
    let s = Study::new();
    std::fs::create_dir_all(s.inbox()).unwrap();
    std::fs::write(s.inbox().join("before.astm"), upload(2, 1)).unwrap();
    let daemon = s.start();
    wait_for(|| archived(&s.archive()).iter().any(|p| p.ends_with("before.astm")), "the file present before start");

    // Written slowly: nothing is taken while the writer still has it open.
    let text = upload(2, 2);
    let (head, tail) = text.split_at(text.len() / 2);
    let mut slow = std::fs::File::create(s.inbox().join("slow.astm")).unwrap();
    slow.write_all(head.as_bytes()).unwrap();
    slow.flush().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(s.inbox().join("slow.astm").exists(), "an open file is not taken");
    slow.write_all(tail.as_bytes()).unwrap();
    drop(slow);
    wait_for(|| archived(&s.archive()).iter().any(|p| p.ends_with("slow.astm")), "the slowly written file");

    // Written under a temporary name, then renamed in.
    std::fs::write(s.inbox().join("renamed.tmp"), upload(2, 3)).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert!(s.inbox().join("renamed.tmp").exists(), "a temporary name is not taken");
    std::fs::rename(s.inbox().join("renamed.tmp"), s.inbox().join("renamed.astm")).unwrap();
    wait_for(|| archived(&s.archive()).iter().any(|p| p.ends_with("renamed.astm")), "the renamed file");

    let status = stop(daemon);
    assert_eq!(status.code(), Some(0));
    // probe (2 results) + three uploads of 2 results, none lost, none twice.
    assert_eq!(s.export().len(), 8);
}

#[test]
fn with_a_long_settle_files_renamed_in_or_closed_after_writing_are_taken_at_once() {
    let s = Study::settling("30");
    let daemon = s.start();
    let within = |name: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !archived(&s.archive()).iter().any(|p| p.ends_with(name)) {
            assert!(Instant::now() < deadline, "{name} waited for the 30 s settle time");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    std::fs::write(s.inbox().join("renamed.part"), upload(3, 1)).unwrap();
    std::fs::rename(s.inbox().join("renamed.part"), s.inbox().join("renamed.astm")).unwrap();
    within("renamed.astm");
    std::fs::write(s.inbox().join("written.astm"), upload(3, 2)).unwrap();
    within("written.astm");
    assert_eq!(stop(daemon).code(), Some(0));
    // probe (2 results) + two uploads of 2 results.
    assert_eq!(s.export().len(), 6);
}

#[test]
fn a_burst_of_1000_files_is_taken_exactly_once_and_a_bad_file_is_quarantined() {
    let s = Study::new();
    let daemon = s.start();
    for i in 0..1000 {
        let tmp = s.inbox().join(format!("f{i:04}.tmp"));
        std::fs::write(&tmp, upload(i / 35, i)).unwrap();
        std::fs::rename(&tmp, s.inbox().join(format!("f{i:04}.astm"))).unwrap();
    }
    std::fs::write(s.inbox().join("broken.astm"), "H|\\^&\rP|1\rO|1|X\r").unwrap();
    wait_for(|| archived(&s.archive()).len() == 1001, "1000 files and the probe in the archive");
    wait_for(|| files_in(&s.quarantine()).len() == 2, "the broken file in quarantine");
    assert_eq!(stop(daemon).code(), Some(0));
    assert_eq!(s.export().len(), 2 + 2000);
    assert!(files_in(&s.inbox()).is_empty());
}

#[test]
fn sigkill_during_a_burst_then_restart_loses_nothing_and_duplicates_nothing() {
    let s = Study::new();
    let mut daemon = s.start();
    let drop_file = |i: usize| std::fs::write(s.inbox().join(format!("k{i:03}.astm")), upload(i / 35, i)).unwrap();
    (0..=200).for_each(drop_file);
    // Kill it in the middle of the burst, while it is committing and moving files.
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    (201..400).for_each(drop_file);
    let restarted = s.start();
    wait_for(|| files_in(&s.inbox()).is_empty(), "the inbox to drain after the restart");
    assert_eq!(stop(restarted).code(), Some(0));
    let rows = s.export();
    assert_eq!(rows.len(), 2 + 800, "every result exactly once");
    let mut unique = rows.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), rows.len());
    assert_eq!(archived(&s.archive()).len(), 400 + 2, "both probes and every file archived");
}

#[test]
fn sigterm_exits_0_within_5_seconds_and_a_second_instance_is_refused() {
    let s = Study::new();
    let daemon = s.start();
    let second = s.command(&["run"]).output().unwrap();
    assert_eq!(second.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&second.stderr).contains("already"), "{}", String::from_utf8_lossy(&second.stderr));
    let mut daemon = daemon;
    signal(&daemon, "TERM");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = daemon.try_wait().unwrap() {
            assert_eq!(status.code(), Some(0));
            break;
        }
        assert!(Instant::now() < deadline, "still running 5 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_file_whose_commit_failed_is_taken_again_while_the_daemon_runs() {
    let s = Study::new();
    let child = s.start();
    let status = || s.command(&["status"]).output().unwrap();
    assert_eq!(status().status.code(), Some(0), "healthy: {}", text(&status()));
    // Another process holds the database's write lock longer than the busy timeout (5 s).
    let blocker = rusqlite::Connection::open(s.t.lib("labfeed.db")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    std::fs::write(s.inbox().join("blocked.astm"), upload(7, 3)).unwrap();
    let log = s.t.dir.path().join("daemon.log");
    wait_for(
        || std::fs::read_to_string(&log).is_ok_and(|l| l.contains("could not commit")),
        "the commit to fail while the lock is held",
    );
    assert!(s.inbox().join("blocked.astm").exists(), "the file stays in the inbox");
    // SPEC §7 Health: `status` (another process) says so and exits 1.
    let failing = status();
    assert_eq!(failing.status.code(), Some(1), "{}", text(&failing));
    let said = String::from_utf8_lossy(&failing.stdout).into_owned();
    let line =
        said.lines().find(|l| l.starts_with("daemon: cannot commit since 20")).unwrap_or_else(|| panic!("{said}"));
    assert!(line.contains("the database is busy"), "the reason is given: {line}");
    assert!(String::from_utf8_lossy(&failing.stderr).contains("cannot commit since"), "{}", text(&failing));
    blocker.execute_batch("ROLLBACK").unwrap();
    drop(blocker);
    // Taken again at the next scan, without a restart: recovery is automatic and logged.
    wait_for(
        || archived(&s.archive()).iter().any(|p| p.ends_with("blocked.astm")),
        "the file to be taken again and archived",
    );
    assert!(s.export().iter().any(|row| row.starts_with("U007,")), "{:?}", s.export());
    assert!(std::fs::read_to_string(&log).unwrap().contains("commits work again"), "recovery is logged");
    let healthy = status();
    assert_eq!(healthy.status.code(), Some(0), "{}", text(&healthy));
    assert!(!String::from_utf8_lossy(&healthy.stdout).contains("cannot commit"), "{}", text(&healthy));
    stop(child);
}

#[test]
fn a_database_that_cannot_be_written_at_start_is_named_and_run_exits_2() {
    let s = Study::new();
    // Readable, but another process holds the write lock past the busy timeout:
    // the test commit before READY fails, so the daemon never says it runs.
    let blocker = rusqlite::Connection::open(s.t.lib("labfeed.db")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let out = s.command(&["run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let database = s.t.lib("labfeed.db");
    let said = text(&out);
    assert!(said.contains(&format!("the database {} cannot be written", database.display())), "{said}");
    assert!(said.contains("database is locked"), "and why: {said}");
    assert!(!said.contains("labfeed is running"), "{said}");
    blocker.execute_batch("ROLLBACK").unwrap();
}

/// `labfeed ARGS` for the study, run under `umask` (a shell sets it, then execs).
fn under_umask(t: &TempStudy, umask: &str, args: &[&str]) -> Command {
    let labfeed = t.command(args);
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("umask {umask}; exec \"$0\" \"$@\""))
        .arg(labfeed.get_program())
        .args(labfeed.get_args())
        .env_remove("LABFEED_CONFIG")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM");
    cmd
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o7777
}

#[test]
fn database_wal_shm_and_head_are_0640_and_kept_files_read_only_whatever_the_umask() {
    for umask in ["022", "000"] {
        let t = TempStudy::new(&[("settle_seconds = 1.0", "settle_seconds = 0.3")]);
        let s = Study { t };
        std::fs::create_dir_all(s.inbox()).unwrap();
        std::fs::write(s.inbox().join("bad.hl7"), "MSH|^~|BAD\rPID|1\r").unwrap();
        let log = std::fs::File::create(s.t.dir.path().join("daemon.log")).unwrap();
        let child = under_umask(&s.t, umask, &["run"]).stdout(Stdio::null()).stderr(log).spawn().unwrap();
        std::fs::write(s.inbox().join("a.astm"), upload(1, 1)).unwrap();
        wait_for(|| !archived(&s.archive()).is_empty(), "the file to be archived");
        wait_for(|| s.quarantine().join("bad.hl7.reason.txt").exists(), "the bad file to be quarantined");
        // While the daemon holds the database open, all four files exist.
        let db = s.t.lib("labfeed.db");
        let with = |suffix: &str| PathBuf::from(format!("{}{suffix}", db.display()));
        for file in [db.clone(), with("-wal"), with("-shm"), with(".audit-head")] {
            assert_eq!(mode(&file), 0o640, "umask {umask}: {}", file.display());
        }
        for kept in
            [&archived(&s.archive())[0], &s.quarantine().join("bad.hl7"), &s.quarantine().join("bad.hl7.reason.txt")]
        {
            assert_eq!(mode(kept) & 0o222, 0, "umask {umask}: {} is writable", kept.display());
            assert!(std::fs::OpenOptions::new().write(true).open(kept).is_err() || is_root(), "{}", kept.display());
        }
        assert!(stop(child).success());
    }
}

/// Root writes any file; the mode check above still holds.
fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

#[test]
fn a_stricter_mode_an_administrator_set_is_kept() {
    use std::os::unix::fs::PermissionsExt;
    let s = Study::new();
    let db = s.t.lib("labfeed.db");
    let head = s.t.lib("labfeed.db.audit-head");
    for file in [&db, &head] {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    std::fs::create_dir_all(s.inbox()).unwrap();
    std::fs::write(s.inbox().join("a.astm"), upload(2, 1)).unwrap();
    let out = under_umask(&s.t, "000", &["run", "--once"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!((mode(&db), mode(&head)), (0o600, 0o600));
}

#[test]
fn a_newline_or_escape_in_a_file_name_is_escaped_in_logs_ingest_status_and_reports() {
    let s = Study::new();
    let evil = "evil\nFORGED line\x1b[31m.astm";
    let shown = "evil\\nFORGED line\\u{1b}[31m.astm";
    // Participant U150 is not in the study: the result becomes a mismatch
    // whose report names the file.
    std::fs::create_dir_all(s.inbox()).unwrap();
    std::fs::write(s.inbox().join(evil), upload(150, 1)).unwrap();
    let out = s.run_once();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    let elsewhere = s.t.dir.path().join(evil);
    std::fs::write(&elsewhere, upload(151, 2)).unwrap();
    let ingest = s.t.run(&["ingest", elsewhere.to_str().unwrap()]);
    let status = s.t.run(&["status"]);
    let text = s.t.run(&["report", "mismatches"]);
    let csv = s.t.run(&["report", "mismatches", "--format", "csv"]);
    let html = s.t.run(&["report", "mismatches", "--format", "html"]);
    for (what, output, must_name) in [
        ("log", log.clone(), true),
        ("ingest", String::from_utf8_lossy(&ingest.stdout).into_owned(), true),
        ("status", String::from_utf8_lossy(&status.stdout).into_owned(), true),
        ("report", String::from_utf8_lossy(&text.stdout).into_owned(), true),
        ("csv", String::from_utf8_lossy(&csv.stdout).into_owned(), true),
        // HTML breaks long words with <wbr/>: the escaped ESC is there, split.
        ("html", String::from_utf8_lossy(&html.stdout).into_owned(), false),
    ] {
        assert!(!output.contains('\x1b'), "{what} has a raw ESC:\n{output}");
        assert!(!output.lines().any(|l| l.starts_with("FORGED")), "{what} has a forged line:\n{output}");
        assert!(!must_name || output.contains(shown), "{what} does not name the file as {shown}:\n{output}");
    }
    assert!(String::from_utf8_lossy(&html.stdout).contains("u{1b}[31m"));
    let archived = archived(&s.archive());
    assert!(archived.iter().any(|p| p.file_name().is_some_and(|n| n == evil)), "the file keeps its name: {archived:?}");
}

#[test]
fn files_refused_unread_get_a_receipt_and_show_in_status_and_the_mismatch_report() {
    let s = Study::new();
    std::fs::create_dir_all(s.inbox()).unwrap();
    let outside = s.t.file("outside.astm", &upload(1, 1));
    std::os::unix::fs::symlink(&outside, s.inbox().join("linked.astm")).unwrap();
    // Over the default 64 MiB limit without writing 64 MiB: a sparse file.
    let big = std::fs::File::create(s.inbox().join("huge.hl7")).unwrap();
    big.set_len(65 << 20).unwrap();
    drop(big);
    let out = s.run_once();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(files_in(&s.inbox()).is_empty());

    let status = text(&s.command(&["status"]).output().unwrap());
    assert!(status.contains("refused unread"), "{status}");
    let report = text(&s.command(&["report", "mismatches"]).output().unwrap());
    for expected in [
        "linked.astm: refused unread: linked.astm is a symbolic link",
        "huge.hl7: refused unread: huge.hl7 is 65.0 MiB",
    ] {
        assert!(report.contains(expected), "{expected:?} in {report}");
    }
    assert!(report.contains("PARSE_ERROR"), "{report}");
    assert!(!report.contains(&s.t.dir.path().display().to_string()), "no full paths: {report}");
    // The receipts are audited like any arrival, and the chain still verifies.
    let verify = s.command(&["verify-audit"]).output().unwrap();
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    /// `None` when this process may not mount (not root): the test says so and stops.
    fn mount(at: &Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(at).output();
        match out {
            Ok(out) if out.status.success() => Some(SmallDisk(at.to_owned())),
            Ok(out) if nix::unistd::geteuid().is_root() => panic!("root, but mount failed: {}", text(&out)),
            _ => None,
        }
    }

    /// Fill what is left with a file (written until the disk says it is full).
    fn fill(&self) -> PathBuf {
        let filler = self.0.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 << 10];
        while file.write_all(&chunk).is_ok() {}
        while file.write_all(&chunk[..512]).is_ok() {}
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// What the daemon sent to `NOTIFY_SOCKET` in the next `window`.
fn notifications(socket: &std::os::unix::net::UnixDatagram, window: Duration) -> Vec<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = Instant::now() + window;
    while Instant::now() < end {
        if let Ok(n) = socket.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    got
}

/// Bytes no compressor can shrink, and that are neither ASTM nor HL7.
fn incompressible(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn a_full_disk_is_reported_the_watchdog_stops_and_recovery_is_automatic() {
    let mut disk = None;
    let s = Study::build(&[("labfeed.db\"", "small/labfeed.db\"")], |t| {
        disk = SmallDisk::mount(&t.lib("small"), "24m");
    });
    let Some(disk) = disk else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let socket_path = s.t.dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    // systemd's WatchdogSec=2: a ping every second while healthy.
    let daemon = s.start_with_env(&[("NOTIFY_SOCKET", &socket_path), ("WATCHDOG_USEC", Path::new("2000000"))]);
    let pings = |window| notifications(&socket, window).iter().filter(|m| m.trim_end() == "WATCHDOG=1").count();
    let first = notifications(&socket, Duration::from_secs(3));
    assert!(first.iter().any(|m| m == "WATCHDOG=1\n"), "pings while healthy: {first:?}");

    let filler = disk.fill();
    std::fs::write(s.inbox().join("big.bin"), incompressible(3 << 20)).unwrap();
    let status = || s.command(&["status"]).output().unwrap();
    wait_for(
        || {
            // Polled gently: every `status` is a process that opens the database.
            std::thread::sleep(Duration::from_millis(500));
            status().status.code() == Some(1)
        },
        "status to say commits fail",
    );
    let said = text(&status());
    assert!(said.contains("cannot commit since") && said.contains("full"), "{said}");
    assert!(s.inbox().join("big.bin").exists(), "nothing acknowledged or moved");
    let sent = notifications(&socket, Duration::from_secs(3));
    assert!(sent.iter().any(|m| m.starts_with("STATUS=cannot commit since")), "{sent:?}");
    // Failing for longer than WatchdogSec: no more pings, so systemd would restart it.
    assert_eq!(pings(Duration::from_secs(3)), 0, "no pings while commits fail");

    std::fs::remove_file(filler).unwrap();
    wait_for(|| !s.inbox().join("big.bin").exists(), "the file to be taken once there is room");
    assert!(files_in(&s.quarantine()).iter().any(|n| n == "big.bin"), "neither ASTM nor HL7: quarantined");
    assert!(pings(Duration::from_secs(3)) > 0, "pings again after recovery");
    let healthy = status();
    assert_eq!(healthy.status.code(), Some(0), "{}", text(&healthy));
    assert!(std::fs::read_to_string(s.t.dir.path().join("daemon.log")).unwrap().contains("commits work again"));
    assert_eq!(stop(daemon).code(), Some(0));
}
