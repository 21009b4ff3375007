//! The daemon, measured from outside like lab staff see it: the release
//! binary `labfeed run` on a temporary study with the example configuration
//! as shipped (`settle_seconds = 1.0`). Reports the latency from a file's
//! drop until it has been committed and moved to the archive (median and p99
//! over single files on an idle daemon), for files renamed in and for files
//! written in place, and the throughput for a 10,000-file burst. Run:
//!
//! ```text
//! cargo build --release && cargo bench --bench daemon
//! LABFEED_BENCH_FILES=2000 cargo bench --bench daemon
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn upload(p: usize, n: usize) -> String {
    let minute = [-10, 0, 15, 30, 60, 90, 120][n % 7];
    let visit = ["V0", "V1", "V2", "V3", "V4"][(n / 7) % 5];
    format!(
        "H|\\^&|||cobas-e411^1|||||host|RSUPL^BATCH|P|1|20260302101500\rP|1\rO|1|U{p:03}-{visit}-T{minute}||^^^CPEP\rR|1|^^^CPEP|0.{:03}|nmol/L||N||F||ADMIN||20260302101000\rR|2|^^^GLUC|5.{}|mmol/L||N||F||ADMIN||20260302101100\rL|1|N\r",
        n % 1000,
        n % 10
    )
}

fn count_files(root: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            // The entry's own type: no extra stat per file while the daemon is measured.
            if entry.file_type().is_ok_and(|t| t.is_dir()) { stack.push(entry.path()) } else { n += 1 }
        }
    }
    n
}

fn wait_until(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while !done() {
        assert!(Instant::now() < deadline, "the daemon did not finish");
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    // The binary cargo built for this bench (release), wherever the target dir is.
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_labfeed"));
    let files: usize = std::env::var("LABFEED_BENCH_FILES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("labfeed");
    std::fs::create_dir(&root).expect("root");
    let config = dir.path().join("labfeed.toml");
    let text =
        include_str!("../config/labfeed.example.toml").replace("/var/lib/labfeed", root.to_str().expect("utf-8"));
    std::fs::write(&config, text).expect("config");
    let participants: Vec<String> =
        std::iter::once("participant".to_owned()).chain((0..=files / 35 + 1).map(|i| format!("U{i:03}"))).collect();
    let csv = dir.path().join("participants.csv");
    std::fs::write(&csv, participants.join("\n")).expect("csv");
    let labfeed = |args: &[&str]| {
        let mut cmd = Command::new(&binary);
        cmd.arg("--config").arg(&config).args(args);
        cmd
    };
    // Importing needs a data manager's login, created by the first admin.
    let with_stdin = |mut cmd: Command, input: &str| {
        let mut child =
            cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().expect("labfeed");
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), input.as_bytes()).expect("stdin");
        assert!(child.wait().expect("labfeed").success());
    };
    let add = ["user", "add", "--new-password-stdin", "--full-name", "Bench"];
    with_stdin(labfeed(&[&add[..], &["admin.bench", "--role", "admin"]].concat()), "admin-password-1\n");
    with_stdin(
        labfeed(
            &[&["--user", "admin.bench", "--password-stdin"][..], &add, &["dm.bench", "--role", "data-manager"]]
                .concat(),
        ),
        "admin-password-1\ndm-password-0001\n",
    );
    let import = ["--user", "dm.bench", "--password-stdin", "import", "participants", csv.to_str().expect("utf-8")];
    with_stdin(labfeed(&import), "dm-password-0001\n");
    let log = std::fs::File::create(dir.path().join("daemon.log")).expect("log");
    let mut daemon = labfeed(&["run"]).stdout(Stdio::null()).stderr(Stdio::from(log)).spawn().expect("run");
    let inbox = root.join("inbox");
    let archive = root.join("archive");
    wait_until(|| inbox.is_dir());
    // The inbox exists before its watch is armed: a file dropped in between is
    // found by the first scan and waits the settle time. Measure after a warm-up.
    std::fs::write(inbox.join("warmup.astm"), upload(0, 0)).expect("write");
    wait_until(|| count_files(&archive) > 0);

    // Latency: one file at a time on an idle daemon, drop to archived.
    let report = |what: &str, mut latencies: Vec<Duration>| {
        latencies.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "latency {what} → committed and archived, {} single files, default settle_seconds: \
             median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            latencies.len(),
            ms(latencies[latencies.len() / 2]),
            ms(latencies[latencies.len() * 99 / 100]),
            ms(latencies[latencies.len() - 1])
        );
    };
    let mut renamed = Vec::new();
    for i in 0..200 {
        let tmp = inbox.join(format!("single{i}.tmp"));
        std::fs::write(&tmp, upload(i / 35, i)).expect("write");
        let before = count_files(&archive);
        let start = Instant::now();
        std::fs::rename(&tmp, inbox.join(format!("single{i}.astm"))).expect("rename");
        wait_until(|| count_files(&archive) > before);
        renamed.push(start.elapsed());
    }
    report("rename", renamed);
    let mut written = Vec::new();
    for i in 200..400 {
        let text = upload(i / 35, i);
        let before = count_files(&archive);
        let start = Instant::now();
        std::fs::write(inbox.join(format!("single{i}.astm")), text).expect("write");
        wait_until(|| count_files(&archive) > before);
        written.push(start.elapsed());
    }
    report("written in place (create, write, close)", written);

    // Burst: `files` files renamed in as fast as possible.
    let staging = dir.path().join("staging");
    std::fs::create_dir(&staging).expect("staging");
    for i in 0..files {
        std::fs::write(staging.join(format!("b{i:05}.astm")), upload(i / 35, i + 7)).expect("write");
    }
    let before = count_files(&archive);
    let start = Instant::now();
    for i in 0..files {
        let name = format!("b{i:05}.astm");
        std::fs::rename(staging.join(&name), inbox.join(&name)).expect("rename");
    }
    wait_until(|| count_files(&archive) >= before + files);
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "burst: {files} files ({} results) committed and archived in {seconds:.2} s = {:.0} files/s",
        2 * files,
        files as f64 / seconds
    );
    let _ = Command::new("kill").arg("-TERM").arg(daemon.id().to_string()).status();
    let _ = daemon.wait();
}
