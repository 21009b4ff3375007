//! `labfeed demo [--dir DIR]`: the whole product on bundled, synthetic example
//! data (`fixtures/demo/`), for a newcomer on a fresh clone.
//!
//! In a new folder it writes the study configuration, imports participants,
//! visits and samples (the code behind `labfeed import`), starts the real
//! daemon (`labfeed run`, a child process of this same binary), drops result
//! files into its inbox the way a lab does (`NAME.part`, then rename), sends
//! one upload through the E1381 sender over a pseudo-terminal as an analyzer
//! on a serial line would, waits until every dropped file is archived or
//! quarantined, stops the daemon with SIGTERM, and writes the reports.
//!
//! The daemon runs as a child process rather than in-process: `daemon::run`
//! stops only on SIGTERM/SIGINT, and a child is exactly what a lab runs, with
//! its own single-instance lock and its log in `<dir>/daemon.log`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

use crate::astm::sender::{Outcome as SendOutcome, Report as SendReport};
use crate::cli::import::{ImportArgs, KindArg};
use crate::cli::report::{self, AucArgs, MismatchesArgs, Report, ReportArgs, ReportFormat, Review};
use crate::cli::simulate::Line;
use crate::cli::{Outcome, load_config};
use crate::store::{Account, Role, Signature, Store};
use crate::study::config::Watch;

/// `labfeed demo [--dir DIR]`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder for the demo study (created if missing; must be empty). Default: a new folder under the system temp dir, kept afterwards.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// The configuration template: `@DEMO_DIR@` and `@SERIAL_PATH@` are filled in.
const CONFIG_TEMPLATE: &str = include_str!("../../fixtures/demo/labfeed.toml");

/// Study data, imported in this order (participants first: the others refer to them).
const STUDY_FILES: [(KindArg, &str, &str); 3] = [
    (KindArg::Participants, "participants.csv", include_str!("../../fixtures/demo/participants.csv")),
    (KindArg::Visits, "visits.csv", include_str!("../../fixtures/demo/visits.csv")),
    (KindArg::Samples, "samples.csv", include_str!("../../fixtures/demo/samples.csv")),
];

/// Dropped into the inbox before the serial upload.
const DROPPED_BEFORE: [(&str, &[u8]); 3] = [
    ("central-lab-baseline-U01-U02.hl7", include_bytes!("../../fixtures/demo/central-lab-baseline-U01-U02.hl7")),
    ("cobas-e411-baseline-U03-U04.astm", include_bytes!("../../fixtures/demo/cobas-e411-baseline-U03-U04.astm")),
    ("central-lab-month24-U01-U02.hl7", include_bytes!("../../fixtures/demo/central-lab-month24-U01-U02.hl7")),
];

/// Sent over the serial line by the simulated analyzer.
const SERIAL_UPLOAD: (&str, &[u8]) = (
    "cobas-e411-serial-month24-U03-U04.astm",
    include_bytes!("../../fixtures/demo/cobas-e411-serial-month24-U03-U04.astm"),
);

/// Dropped after the serial upload: a rerun of one of its samples, and a broken export.
const DROPPED_AFTER: [(&str, &[u8]); 2] = [
    ("cobas-e411-rerun-2026-11-04.astm", include_bytes!("../../fixtures/demo/cobas-e411-rerun-2026-11-04.astm")),
    ("cobas-e411-export-cut-off.astm", include_bytes!("../../fixtures/demo/cobas-e411-export-cut-off.astm")),
];

/// The demo's accounts: an admin, and the data manager who imports and resolves.
const DEMO_ADMIN: (&str, &str) = ("demo.admin", "Demo Admin");
const DEMO_DATA_MANAGER: (&str, &str) = ("demo.dm", "Demo Data Manager");
/// How long the daemon may take to archive or quarantine every dropped file.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the daemon may take to stop after SIGTERM (it promises 5 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Run the demo: progress on `err`, the AUC table, open mismatches and report
/// paths on `out`. `Usage` when `--dir` is not empty; `Err` when a step fails.
pub fn run(args: &DemoArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Outcome> {
    let dir = match prepare_dir(args.dir.as_deref())? {
        Ok(dir) => dir,
        Err(refusal) => {
            writeln!(err, "labfeed: demo: {refusal}")?;
            return Ok(Outcome::Usage);
        }
    };
    writeln!(err, "demo: study folder {}", dir.display())?;

    let line = SerialLine::open()?;
    let config_path = dir.join("labfeed.toml");
    let text = CONFIG_TEMPLATE
        .replace("@DEMO_DIR@", &toml_string_body(&utf8(&dir)?))
        .replace("@SERIAL_PATH@", &toml_string_body(&utf8(&line.path)?));
    std::fs::write(&config_path, text).with_context(|| format!("cannot write {}", config_path.display()))?;
    let config = load_config(&config_path)?;
    let watch = config.watch.clone().context("the demo configuration has no [watch] table")?;
    writeln!(err, "demo: wrote {} (analyzer line {})", config_path.display(), line.path.display())?;

    let (data_manager, accounts_file) = create_accounts(&dir, &config)?;
    writeln!(
        err,
        "demo: created accounts {} (admin) and {} (data-manager); their passwords are in {}",
        DEMO_ADMIN.0,
        DEMO_DATA_MANAGER.0,
        accounts_file.display()
    )?;
    import_study(&dir, &config_path, &data_manager)?;
    writeln!(err, "demo: imported participants, visits and samples from {}", dir.join("study").display())?;

    // The inbox exists before the daemon starts, so files can be dropped at once:
    // the daemon takes what is already there at start-up.
    crate::daemon::sources::inbox::ensure_dirs(&watch).map_err(anyhow::Error::msg)?;
    let mut daemon = Daemon::start(&config_path, &dir.join("daemon.log"))?;
    writeln!(err, "demo: started the daemon (pid {}; log {})", daemon.child.id(), daemon.log.display())?;

    for (name, bytes) in DROPPED_BEFORE {
        drop_file(&watch.inbox, name, bytes)?;
    }
    writeln!(err, "demo: dropped {} files into {}", DROPPED_BEFORE.len(), watch.inbox.display())?;

    let (name, bytes) = SERIAL_UPLOAD;
    let sent = line.send(bytes, &mut daemon).with_context(|| format!("sending {name} over {}", line.path.display()))?;
    if sent.outcome != SendOutcome::Delivered {
        bail!(
            "{name} was not delivered over {}: {:?}; see {}",
            line.path.display(),
            sent.outcome,
            daemon.log.display()
        );
    }
    writeln!(
        err,
        "demo: sent {name} over {} as the analyzer (E1381): delivered, {} frames ACKed, the last after the commit",
        line.path.display(),
        sent.frames_acked
    )?;

    for (name, bytes) in DROPPED_AFTER {
        drop_file(&watch.inbox, name, bytes)?;
    }
    writeln!(err, "demo: dropped {} more files", DROPPED_AFTER.len())?;

    let names: Vec<&str> = DROPPED_BEFORE.iter().chain(&DROPPED_AFTER).map(|(name, _)| *name).collect();
    let fates = wait_until_settled(&watch, &names, &mut daemon)?;
    let quarantined: Vec<&PathBuf> =
        fates.iter().filter_map(|f| if let Fate::Quarantined(p) = f { Some(p) } else { None }).collect();
    writeln!(err, "demo: {} files archived, {} quarantined", fates.len() - quarantined.len(), quarantined.len())?;

    daemon.stop()?;
    writeln!(err, "demo: stopped the daemon")?;

    // The AUC table, the open mismatches, then the reports written as files.
    let auc = report_to_buffer(&config_path, Report::Auc(AucArgs { format: ReportFormat::Text, output: None }))?;
    out.write_all(&auc)?;
    writeln!(out)?;
    let (open, by_code) = open_mismatches(&config_path)?;
    let codes: Vec<String> = by_code.iter().map(|(code, n)| format!("{code} {n}")).collect();
    writeln!(out, "Open mismatches: {open} ({})", codes.join(", "))?;
    for path in &quarantined {
        let reason = reason_path(path);
        writeln!(out, "Quarantined: {} (why: {})", path.display(), reason.display())?;
    }
    out.flush()?;

    let text_reports =
        [(dir.join("mismatches.txt"), ReportFormat::Text, true), (dir.join("auc.csv"), ReportFormat::Csv, false)];
    let html_reports =
        [(dir.join("mismatches.html"), ReportFormat::Html, true), (dir.join("auc.html"), ReportFormat::Html, false)];
    for (path, format, mismatches) in text_reports.iter().chain(&html_reports) {
        let output = Some(path.clone());
        let which = if *mismatches {
            Report::Mismatches(MismatchesArgs { format: *format, output, all: false })
        } else {
            Report::Auc(AucArgs { format: *format, output })
        };
        report_to_buffer(&config_path, which).with_context(|| format!("writing {}", path.display()))?;
    }
    writeln!(err, "demo: wrote the reports")?;

    writeln!(out)?;
    writeln!(out, "Reports:")?;
    for (path, _, _) in html_reports.iter().chain(&text_reports) {
        writeln!(out, "  {}", path.display())?;
    }
    writeln!(out)?;
    let config_arg = shell_word(&config_path.display().to_string());
    writeln!(out, "The demo study stays in {}. Look at it again with:", dir.display())?;
    for command in ["report mismatches", "report auc", "export results", "status"] {
        writeln!(out, "  labfeed --config {config_arg} {command}")?;
    }
    writeln!(
        out,
        "Decide on a mismatch as the demo's data manager (password in {}):",
        shell_word(&accounts_file.display().to_string())
    )?;
    writeln!(out, "  labfeed --config {config_arg} --user {} resolve ID --accept --reason TEXT", DEMO_DATA_MANAGER.0)?;
    let console =
        config.web.socket_address().map_or_else(|_| "the [web] address".to_owned(), |a| format!("http://{a}/"));
    writeln!(
        out,
        "Or in the browser: start the console, open {console} and sign in as {} (same password):",
        DEMO_DATA_MANAGER.0
    )?;
    writeln!(out, "  labfeed --config {config_arg} serve")?;
    out.flush()?;
    Ok(Outcome::Ok)
}

/// The demo folder: `dir` (created if missing, refused unless empty), or a
/// new folder under the system temp dir. The inner `Err` is a usage refusal.
fn prepare_dir(dir: Option<&Path>) -> anyhow::Result<Result<PathBuf, String>> {
    let dir = match dir {
        Some(dir) => {
            match std::fs::read_dir(dir) {
                Ok(mut entries) => {
                    if entries.next().is_some() {
                        return Ok(Err(format!(
                            "{} is not empty; give a new or empty folder (the demo writes a whole study there)",
                            dir.display()
                        )));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
                }
                Err(e) if dir.exists() && !dir.is_dir() => {
                    return Ok(Err(format!("{} is not a folder ({e})", dir.display())));
                }
                Err(e) => return Err(e).with_context(|| format!("cannot read the folder {}", dir.display())),
            }
            dir.to_path_buf()
        }
        None => new_temp_dir()?,
    };
    // The configuration needs absolute paths: the daemon may run from anywhere.
    Ok(Ok(std::fs::canonicalize(&dir).with_context(|| format!("cannot resolve {}", dir.display()))?))
}

/// `<temp>/labfeed-demo-YYYYMMDD-HHMMSS[-N]`, created here and kept.
fn new_temp_dir() -> anyhow::Result<PathBuf> {
    let stamp = jiff::Timestamp::now().strftime("%Y%m%d-%H%M%S").to_string();
    let base = std::env::temp_dir();
    for n in 1..100 {
        let name = if n == 1 { format!("labfeed-demo-{stamp}") } else { format!("labfeed-demo-{stamp}-{n}") };
        let dir = base.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", dir.display())),
        }
    }
    bail!("cannot find a free folder name for the demo under {}", base.display())
}

fn utf8(path: &Path) -> anyhow::Result<String> {
    path.to_str()
        .map(str::to_owned)
        .with_context(|| format!("{} is not valid UTF-8; give --dir a plain path", path.display()))
}

/// Text for inside a TOML basic string (`"…"`).
fn toml_string_body(text: &str) -> String {
    let mut body = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => body.push_str("\\\\"),
            '"' => body.push_str("\\\""),
            c if c.is_control() => body.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => body.push(c),
        }
    }
    body
}

/// A path as one shell word, quoted only when needed.
fn shell_word(text: &str) -> String {
    if text.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+:,@%".contains(c)) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// A password nobody has to remember: 20 letters and digits.
fn random_password() -> anyhow::Result<String> {
    const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut bytes = [0u8; 20];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for the demo passwords: {e}"))?;
    Ok(bytes.iter().map(|b| char::from(ALPHABET[usize::from(b % 32)])).collect())
}

/// A demo account with a random password, not yet stored.
fn demo_account((name, full_name): (&str, &str), role: Role) -> anyhow::Result<(Account, String)> {
    let password = random_password()?;
    let account = Account {
        name: name.to_owned(),
        full_name: full_name.to_owned(),
        role,
        password_hash: crate::login::hash_password(&password)?,
        enabled: true,
        created_at: jiff::Timestamp::now(),
        failed_logins: 0,
        refused_until: None,
    };
    Ok((account, password))
}

/// The demo's admin (the first admin signs its own account) and data
/// manager, with random passwords written to `<dir>/accounts.txt` (readable
/// by its owner only); the data manager signs the study imports.
fn create_accounts(dir: &Path, config: &crate::study::config::Config) -> anyhow::Result<(Signature, PathBuf)> {
    let mut store = Store::open(&config.storage.database)?;
    let (admin, admin_password) = demo_account(DEMO_ADMIN, Role::Admin)?;
    let (manager, manager_password) = demo_account(DEMO_DATA_MANAGER, Role::DataManager)?;
    for (account, meaning) in [(&admin, "user add (first admin)"), (&manager, "user add")] {
        let signature = crate::login::signature(&admin, meaning, Some("labfeed demo"), None);
        store.write_signed(&signature, |tx| {
            tx.add_account(&account.name, &account.full_name, account.role, &account.password_hash)
        })?;
    }
    let file = dir.join("accounts.txt");
    let text = format!(
        "# labfeed demo accounts: --user NAME, then the password when asked (or on stdin with --password-stdin)\n\
         {}\tadmin\t{admin_password}\n{}\tdata-manager\t{manager_password}\n",
        admin.name, manager.name
    );
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .with_context(|| format!("cannot create {}", file.display()))?;
        f.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", file.display()))?;
    }
    Ok((crate::login::signature(&manager, "import", Some("labfeed demo study data"), None), file))
}

/// Write the study CSVs into `<dir>/study/` and import them as `labfeed
/// import` does, signed by the demo's data manager.
fn import_study(dir: &Path, config_path: &Path, data_manager: &Signature) -> anyhow::Result<()> {
    let study = dir.join("study");
    std::fs::create_dir(&study).with_context(|| format!("cannot create {}", study.display()))?;
    for (kind, name, text) in STUDY_FILES {
        let file = study.join(name);
        std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
        let args = ImportArgs { kind, file, reason: None, by: None };
        let (mut said, mut complained) = (Vec::new(), Vec::new());
        let outcome =
            crate::cli::import::import_signed(config_path, &args, &mut said, &mut complained, |_, _, meaning| {
                Ok(Signature { meaning: meaning.to_owned(), ..data_manager.clone() })
            })?;
        if outcome != Outcome::Ok {
            bail!("importing {name} failed: {}", String::from_utf8_lossy(&complained).trim());
        }
    }
    Ok(())
}

/// Put a file into the inbox as lab tools do: written under a `.part` name
/// (which the daemon ignores), then renamed, so it is never seen half-written.
fn drop_file(inbox: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let part = inbox.join(format!("{name}.part"));
    std::fs::write(&part, bytes).with_context(|| format!("cannot write {}", part.display()))?;
    let target = inbox.join(name);
    std::fs::rename(&part, &target).with_context(|| format!("cannot rename {} to {}", part.display(), target.display()))
}

/// The daemon, `labfeed --config CONFIG run`, as a child process. Dropped
/// while still running (the demo failed), it is killed.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(config_path: &Path, log: &Path) -> anyhow::Result<Daemon> {
        let exe = std::env::current_exe().context("cannot find the labfeed binary to start the daemon")?;
        let log_file = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let child = Command::new(exe)
            .arg("--config")
            .arg(config_path)
            .arg("run")
            // The daemon logs to its file, at the configured level, and is not a systemd service.
            .env_remove("LABFEED_CONFIG")
            .env_remove("RUST_LOG")
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .spawn()
            .context("cannot start the daemon")?;
        Ok(Daemon { child, log: log.to_path_buf() })
    }

    /// An error if the daemon has exited, with the end of its log.
    fn check_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait().context("checking on the daemon")? {
            None => Ok(()),
            Some(status) => bail!("the daemon stopped unexpectedly ({status}); its log ends:\n{}", self.log_tail()),
        }
    }

    /// SIGTERM, then wait for a clean exit (code 0).
    fn stop(&mut self) -> anyhow::Result<()> {
        self.check_running()?;
        let pid = i32::try_from(self.child.id()).context("the daemon's process id is out of range")?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM)
            .context("cannot send SIGTERM to the daemon")?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().context("waiting for the daemon")? {
                if status.success() {
                    return Ok(());
                }
                bail!("the daemon exited with {status} after SIGTERM; its log ends:\n{}", self.log_tail());
            }
            if Instant::now() >= deadline {
                bail!("the daemon did not stop within {STOP_TIMEOUT:?} of SIGTERM; its log ends:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines.get(lines.len().saturating_sub(12)..).unwrap_or_default();
        tail.join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The analyzer's end of a serial line: a pseudo-terminal whose slave path
/// goes into `[[serial]]` for the daemon, and whose master this process
/// drives with the E1381 sender.
struct SerialLine {
    master: File,
    /// Kept open so the line does not look unplugged before the daemon opens it.
    _slave: OwnedFd,
    path: PathBuf,
}

impl SerialLine {
    fn open() -> anyhow::Result<SerialLine> {
        use nix::fcntl::{FcntlArg, FdFlag, fcntl};
        use nix::sys::termios;

        let pty = nix::pty::openpty(None, None).context("cannot open a pseudo-terminal for the analyzer's line")?;
        // The daemon must not inherit either end: only its own open of the path counts.
        for fd in [pty.master.as_fd(), pty.slave.as_fd()] {
            fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).context("marking the pseudo-terminal close-on-exec")?;
        }
        // A serial line has no echo and no line editing; without raw mode our
        // ENQ, written before the daemon has set up the port, would echo back.
        let mut settings = termios::tcgetattr(pty.slave.as_fd()).context("reading the pseudo-terminal's settings")?;
        termios::cfmakeraw(&mut settings);
        termios::tcsetattr(pty.slave.as_fd(), termios::SetArg::TCSANOW, &settings)
            .context("setting the pseudo-terminal to raw mode")?;
        let path = nix::unistd::ttyname(pty.slave.as_fd()).context("cannot name the pseudo-terminal")?;
        Ok(SerialLine { master: File::from(pty.master), _slave: pty.slave, path })
    }

    /// Send `text` (ASTM records) as one E1381 session and return the sender's report.
    fn send(&self, text: &[u8], daemon: &mut Daemon) -> anyhow::Result<SendReport> {
        let mut line = PtyLine { master: &self.master, wait: Duration::ZERO };
        let to = self.path.display().to_string();
        crate::cli::simulate::drive_sender(&mut line, text, &to, &mut || daemon.check_running())
    }
}

/// The pty's master end as a [`Line`]: reads wait with poll(2), at most
/// 200 ms at a time, so the daemon is checked on between them.
struct PtyLine<'a> {
    master: &'a File,
    wait: Duration,
}

impl Read for PtyLine<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let timeout = PollTimeout::try_from(self.wait).unwrap_or(PollTimeout::ZERO);
        let mut fds = [PollFd::new(self.master.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, timeout)? == 0 {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.master.read(buf)
    }
}

impl Write for PtyLine<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.master.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.master.flush()
    }
}

impl Line for PtyLine<'_> {
    fn set_wait(&mut self, wait: Duration) {
        self.wait = wait.min(Duration::from_millis(200));
    }
}

/// Where a dropped file ended up.
enum Fate {
    Archived,
    Quarantined(PathBuf),
}

/// Wait until each of `names` has left the inbox, into the archive or the quarantine.
fn wait_until_settled(watch: &Watch, names: &[&str], daemon: &mut Daemon) -> anyhow::Result<Vec<Fate>> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let waiting: Vec<&str> = names.iter().copied().filter(|n| watch.inbox.join(n).exists()).collect();
        if waiting.is_empty() {
            let archived = files_under(&watch.archive);
            let mut fates = Vec::new();
            for name in names {
                let quarantined = watch.quarantine.join(name);
                if quarantined.is_file() {
                    fates.push(Fate::Quarantined(quarantined));
                } else if archived.iter().any(|p| p.file_name().is_some_and(|f| f == *name)) {
                    fates.push(Fate::Archived);
                }
            }
            // A move in progress shows in neither place for an instant.
            if fates.len() == names.len() {
                return Ok(fates);
            }
        }
        daemon.check_running()?;
        if Instant::now() >= deadline {
            bail!(
                "after {SETTLE_TIMEOUT:?}, the daemon has still not archived or quarantined {}; its log ends:\n{}",
                if waiting.is_empty() { names.join(", ") } else { waiting.join(", ") },
                daemon.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Every file under `dir`, at any depth (the archive is `YYYY/MM/DD/NAME`).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else { continue };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => folders.push(entry.path()),
                Ok(t) if t.is_file() => files.push(entry.path()),
                _ => {}
            }
        }
    }
    files
}

/// `NAME.reason.txt` beside a quarantined file.
fn reason_path(quarantined: &Path) -> PathBuf {
    let mut name = quarantined.as_os_str().to_owned();
    name.push(".reason.txt");
    PathBuf::from(name)
}

/// Run a report as `labfeed report` does; its standard output is returned.
/// Any outcome but Ok is an error with what the report said.
fn report_to_buffer(config_path: &Path, which: Report) -> anyhow::Result<Vec<u8>> {
    let (mut said, mut complained) = (Vec::new(), Vec::new());
    let outcome = report::run(config_path, &ReportArgs { report: which }, &mut said, &mut complained)?;
    if outcome != Outcome::Ok {
        let complaint = String::from_utf8_lossy(&complained);
        bail!("{}", complaint.trim().trim_start_matches("labfeed: "));
    }
    Ok(said)
}

/// Open mismatches as `report mismatches` counts them (stored and
/// MISSING_RESULT), in all and by code.
fn open_mismatches(config_path: &Path) -> anyhow::Result<(usize, BTreeMap<String, usize>)> {
    let (config, store) = crate::cli::open_for_reading(config_path)?;
    let review = Review::load(&config, &store, false, false)?;
    let rows = review.rows(&config);
    let mut by_code = BTreeMap::new();
    for row in &rows {
        *by_code.entry(row.code().to_owned()).or_insert(0) += 1;
    }
    Ok((rows.len(), by_code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_escaped_for_a_toml_basic_string() {
        assert_eq!(toml_string_body("/tmp/plain"), "/tmp/plain");
        assert_eq!(toml_string_body("/tmp/a \"b\"\\c\u{7}"), "/tmp/a \\\"b\\\"\\\\c\\u0007");
        let text = format!("p = \"{}\"", toml_string_body("/tmp/x\"y\\z"));
        let value: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(value["p"].as_str(), Some("/tmp/x\"y\\z"));
    }

    #[test]
    fn the_template_has_both_placeholders_and_no_others() {
        assert!(CONFIG_TEMPLATE.contains("\"@DEMO_DIR@/labfeed.db\""));
        assert!(CONFIG_TEMPLATE.contains("path = \"@SERIAL_PATH@\""));
        let filled = CONFIG_TEMPLATE.replace("@DEMO_DIR@", "/d").replace("@SERIAL_PATH@", "/dev/pts/9");
        assert!(!filled.contains('@'), "{filled}");
        let config = crate::study::config::Config::from_toml(&filled, Path::new("demo.toml")).unwrap();
        assert_eq!(config.storage.database, Path::new("/d/labfeed.db"));
        assert_eq!(config.serial.first().map(|s| s.path.as_path()), Some(Path::new("/dev/pts/9")));
    }

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("/tmp/labfeed-demo-1/labfeed.toml"), "/tmp/labfeed-demo-1/labfeed.toml");
        assert_eq!(shell_word("/tmp/my demo/it's"), "'/tmp/my demo/it'\\''s'");
    }
}
