//! Shared scaffolding: a study in a temporary directory, driven through the
//! real `labfeed` binary.

use std::cell::Cell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const EXAMPLE_CONFIG: &str = include_str!("../../config/labfeed.example.toml");

/// The example configuration with every `/var/lib/labfeed` path (database,
/// inbox, archive, quarantine) moved under `<tmp>/lib`, plus `edits`.
pub struct TempStudy {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    signer: Signer,
}

/// The first admin of every test study, and its password.
pub const ADMIN: (&str, &str) = ("admin.ada", "admin-password-1");
/// The data manager that signs the tests' changes unless a test logs in itself.
pub const DATA_MANAGER: (&str, &str) = ("dm.anna", "dm-password-0001");

/// Commands that change study data and so need a login (SPEC §1).
fn needs_login(args: &[&str]) -> bool {
    matches!(args.first(), Some(&("import" | "resolve" | "lock" | "unlock")))
        && !args.iter().any(|a| *a == "--user" || a.starts_with("--user="))
}

impl TempStudy {
    pub fn new(edits: &[(&str, &str)]) -> TempStudy {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("lib");
        std::fs::create_dir(&lib).unwrap();
        let mut text = EXAMPLE_CONFIG.replace("/var/lib/labfeed", lib.to_str().unwrap());
        for (from, to) in edits {
            assert!(text.contains(from), "the example config has no {from:?}");
            text = text.replace(from, to);
        }
        let config = dir.path().join("labfeed.toml");
        std::fs::write(&config, text).unwrap();
        let signer = Signer::new(&config);
        TempStudy { dir, config, signer }
    }

    /// `<tmp>/lib/<name>`: the database, inbox, archive and quarantine live here.
    pub fn lib(&self, name: &str) -> PathBuf {
        self.dir.path().join("lib").join(name)
    }

    /// Write a file in the temporary directory (not the inbox).
    pub fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    /// `labfeed --config <this study> ARGS`, with the caller's environment
    /// kept from leaking in (config, systemd sockets).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_labfeed"));
        cmd.arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("LABFEED_CONFIG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM");
        cmd
    }

    /// Run `labfeed ARGS`; a command that needs a login is signed by
    /// [`DATA_MANAGER`] (created, with [`ADMIN`], on first use).
    pub fn run(&self, args: &[&str]) -> Output {
        self.signed(self.command(args), args)
    }

    /// Like [`TempStudy::run`], from `dir` (relative paths in ARGS).
    pub fn run_in(&self, dir: &Path, args: &[&str]) -> Output {
        let mut cmd = self.command(args);
        cmd.current_dir(dir);
        self.signed(cmd, args)
    }

    /// `cmd`, logged in as [`DATA_MANAGER`] when `args` need a login.
    pub fn signed(&self, cmd: Command, args: &[&str]) -> Output {
        self.signer.output(cmd, args)
    }

    /// `labfeed ARGS` with `input` on standard input.
    pub fn run_with_stdin(&self, args: &[&str], input: &str) -> Output {
        with_stdin(self.command(args), input)
    }

    /// [`ADMIN`] and [`DATA_MANAGER`], once per study.
    pub fn create_accounts(&self) {
        self.signer.create_accounts();
    }
}

/// Logs the tests' changes in as [`DATA_MANAGER`], creating the study's
/// accounts on first use.
pub struct Signer {
    config: PathBuf,
    done: Cell<bool>,
}

impl Signer {
    pub fn new(config: &Path) -> Signer {
        Signer { config: config.to_owned(), done: Cell::new(false) }
    }

    fn labfeed(&self, args: &[&str], input: &str) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_labfeed"));
        cmd.arg("--config").arg(&self.config).args(args).env_remove("LABFEED_CONFIG").env_remove("LABFEED_USER");
        with_stdin(cmd, input)
    }

    /// `cmd` (a `labfeed ARGS`), logged in as [`DATA_MANAGER`] when `args`
    /// need a login and name no user.
    pub fn output(&self, mut cmd: Command, args: &[&str]) -> Output {
        if !needs_login(args) {
            return cmd.output().unwrap();
        }
        self.create_accounts();
        cmd.args(["--user", DATA_MANAGER.0, "--password-stdin"]);
        with_stdin(cmd, &format!("{}\n", DATA_MANAGER.1))
    }

    pub fn create_accounts(&self) {
        if self.done.get() {
            return;
        }
        let out = self.labfeed(
            &["user", "add", ADMIN.0, "--role", "admin", "--full-name", "Ada Admin", "--new-password-stdin"],
            &format!("{}\n", ADMIN.1),
        );
        assert!(out.status.success(), "creating the first admin: {}", text(&out));
        let out = self.labfeed(
            &[
                "--user",
                ADMIN.0,
                "--password-stdin",
                "user",
                "add",
                DATA_MANAGER.0,
                "--role",
                "data-manager",
                "--full-name",
                "Anna Data",
                "--new-password-stdin",
            ],
            &format!("{}\n{}\n", ADMIN.1, DATA_MANAGER.1),
        );
        assert!(out.status.success(), "creating the data manager: {}", text(&out));
        self.done.set(true);
    }
}

/// Run `cmd` with `input` written to its standard input.
pub fn with_stdin(mut cmd: Command, input: &str) -> Output {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // The child may exit before reading (a refused command): ignore a broken pipe.
    let _ = stdin.write_all(input.as_bytes());
    drop(stdin);
    child.wait_with_output().unwrap()
}

/// The binary run with `--config config` and `args`, without whatever the
/// caller's environment says about configuration or systemd.
pub fn labfeed_on(config: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_labfeed"));
    cmd.env_remove("LABFEED_CONFIG").env_remove("NOTIFY_SOCKET").env_remove("JOURNAL_STREAM");
    cmd.arg("--config").arg(config).args(args).output().unwrap()
}

/// The demo study made in `dir` by `labfeed demo`; its configuration.
pub fn demo_study(dir: &Path) -> PathBuf {
    let out = Command::new(env!("CARGO_BIN_EXE_labfeed")).arg("demo").arg("--dir").arg(dir).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    dir.join("labfeed.toml")
}

/// Standard output and error together, for assertion messages.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// CSV text as rows of fields, header included.
pub fn csv_rows(text: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

pub fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The standard output of a command that must succeed.
#[track_caller]
pub fn ok(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(0), "{}", text(out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A cobas e411 upload (no patient ID, no trusted draw time) around `body`.
pub fn e411(body: &str) -> String {
    format!("H|\\^&|||cobas-e411^1|||||host|RSUPL^BATCH|P|1|20260302120000\rP|1\r{body}L|1|N\r")
}

/// An e411 order record for `sample`.
pub fn order(n: usize, sample: &str) -> String {
    format!("O|{n}|{sample}||^^^CPEP|R||20260302083000||||N||||1|||||||20260302100000|||F\r")
}

/// A central-lab HL7 C-peptide result: patient ID, sample, collection time (OBR-7).
pub fn central(control: &str, patient: &str, sample: &str, collected: &str, value: &str) -> String {
    central_with_status(control, patient, sample, collected, value, "F")
}

pub fn central_with_status(
    control: &str,
    patient: &str,
    sample: &str,
    collected: &str,
    value: &str,
    status: &str,
) -> String {
    format!(
        "MSH|^~\\&|CENTRALLAB|CLAB|STUDYDB|T1D|20260312154500||ORU^R01^ORU_R01|{control}|P|2.5.1\r\
PID|1||{patient}^^^TRIAL^PI\r\
OBR|1|{sample}^STUDY||MMTT|||{collected}\r\
OBX|1|NM|1986-9^C peptide^LN||{value}|nmol/L|||||{status}\r"
    )
}

/// A study with U01 to U04 and a short settle time, no visits or samples.
pub fn four_participants() -> TempStudy {
    let t = TempStudy::new(&[("settle_seconds = 1.0", "settle_seconds = 0.1")]);
    let csv = t.file("participants.csv", "participant\nU01\nU02\nU03\nU04\n");
    let out = t.run(&["import", "participants", csv.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    t
}

/// `labfeed import WHAT NAME` with `content`, which must succeed.
pub fn import_csv(t: &TempStudy, what: &str, name: &str, content: &str) {
    let csv = t.file(name, content);
    let out = t.run(&["import", what, csv.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// `labfeed ingest NAME` with `bytes`: accepted or quarantined (exit 0 or 1); what it said.
pub fn ingest_bytes(t: &TempStudy, name: &str, bytes: &[u8]) -> String {
    let path = t.dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    let out = t.run(&["ingest", path.to_str().unwrap()]);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", text(&out));
    text(&out)
}

pub const MSH: &str = "MSH|^~\\&|CENTRALLAB|LAB|||20260302101500||ORU^R01|";

/// An HL7 C-peptide result of 0.25 for `sample` (its first three characters
/// are the patient ID), collected at `collected` (OBX-14).
pub fn hl7_at(control: &str, sample: &str, collected: &str) -> String {
    format!(
        "{MSH}{control}|P|2.5.1\rPID|1||{}\rOBR|1||{sample}\rOBX|1|NM|1986-9||0.25|nmol/L|||||F|||{collected}\r",
        &sample[..3]
    )
}

/// Every stored raw copy as labfeed reads it back: inflated where it is kept
/// deflated (`raw.encoding`), in id order.
pub fn raw_copies(conn: &rusqlite::Connection) -> Vec<Vec<u8>> {
    let mut stmt = conn.prepare("SELECT content, encoding FROM raw ORDER BY id").unwrap();
    let rows = stmt.query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Option<String>>(1)?))).unwrap();
    rows.map(|row| match row.unwrap() {
        (content, None) => content,
        (packed, Some(encoding)) => {
            assert_eq!(encoding, "deflate");
            miniz_oxide::inflate::decompress_to_vec(&packed).unwrap()
        }
    })
    .collect()
}
