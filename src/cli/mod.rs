//! The commands behind `labfeed COMMAND` (SPEC §1).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::store::Store;
use crate::study::config::{Config, DEFAULT_CONFIG_PATH};

pub mod audit_key;
pub mod check_config;
pub mod demo;
pub mod export;
pub mod generate;
pub mod import;
pub mod ingest;
pub mod lock;
pub mod login;
pub mod migrate_store;
pub mod parse;
pub mod report;
pub mod resolve;
pub mod run;
pub mod serve;
pub mod simulate;
pub mod status;
pub mod user;
pub mod verify;

/// How a command ended; `main` turns it into the exit code scripts rely on
/// (SPEC §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Everything was accepted.
    Ok,
    /// The work ran, but some input was rejected (unparseable file or message).
    Rejected,
    /// Usage or configuration error, or an input that could not be read.
    Usage,
}

#[derive(Debug, Parser)]
#[command(
    name = "labfeed",
    version,
    about = "Gets MMTT C-peptide and glucose results from lab analyzers into the study database."
)]
struct Cli {
    /// Configuration file (default: $LABFEED_CONFIG, else /etc/labfeed/labfeed.toml).
    #[arg(long, global = true, value_name = "PATH", env = "LABFEED_CONFIG")]
    config: Option<PathBuf>,

    /// The account that signs a change (import, resolve, user); default: $LABFEED_USER.
    #[arg(long, global = true, value_name = "NAME", env = "LABFEED_USER")]
    user: Option<String>,

    /// Read your password from the first line of standard input instead of asking on the terminal.
    #[arg(long, global = true)]
    password_stdin: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse ASTM or HL7 files and show what they hold; needs no config and no database.
    Parse(parse::ParseArgs),
    /// Validate the configuration and say exactly what is wrong, or summarise the study.
    CheckConfig,
    /// Push files through the same pipeline as the watch folder; the files are left where they are.
    Ingest(ingest::IngestArgs),
    /// Recompute the audit log's hash chain and report the first broken row, if any (exit 1 when broken).
    VerifyAudit,
    /// Load study data: participants, visits or samples (idempotent, audited).
    Import(import::ImportArgs),
    /// Reports: mismatches for data managers, the MMTT AUC table (text, CSV or HTML).
    Report(report::ReportArgs),
    /// Exports: accepted results, or the CDISC SDTM LB domain, as CSV.
    Export(export::ExportArgs),
    /// A data manager's decision on a mismatch: assign, accept or reject it, reopen a decision, or mark a missing result not done, with a reason (audited).
    Resolve(resolve::ResolveArgs),
    /// Lock a visit, a participant or the whole study: deliveries are held as LOCKED and decisions refused (signed).
    Lock(lock::LockArgs),
    /// Lift a lock (signed, with a reason).
    Unlock(lock::LockArgs),
    /// Write a new audit key file (32 random bytes as hex, mode 0400) for [audit] key_file; never overwrites.
    NewAuditKey(audit_key::NewAuditKeyArgs),
    /// Copy the SQLite study into an empty PostgreSQL database (--to URL), audit chain intact, and verify the copy; the SQLite file is left untouched.
    MigrateStore(migrate_store::MigrateStoreArgs),
    /// Accounts: add, list, disable, set a password (admins; the first admin needs no login).
    User(user::UserArgs),
    /// Database, daemon, inbox and quarantine counts, last arrival per source, open mismatches.
    Status,
    /// Send a file as an analyzer would (ASTM E1381 framing with retries, or HL7 over MLLP) and report the answers.
    Simulate(simulate::SimulateArgs),
    /// The daemon: watch the inbox, serial ports and TCP listeners until SIGTERM/SIGINT.
    Run(run::RunArgs),
    /// A complete run on bundled example data: a study in a new folder, the daemon fed by files and a simulated analyzer, then the AUC table and the reports.
    Demo(demo::DemoArgs),
    /// Shell completions (bash, zsh, fish, …) or man pages, from these very definitions.
    Generate(generate::GenerateArgs),
    /// The web console on [web] address: today's arrivals, mismatches and decisions, signed in (SPEC §11).
    Serve,
}

/// Run the command line; `Err` is an unexpected failure (printed by `main`).
pub fn run(args: impl IntoIterator<Item = OsString>) -> anyhow::Result<Outcome> {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            // clap prints help/version to stdout and usage errors to stderr.
            let usage_error = err.use_stderr();
            err.print()?;
            return Ok(if usage_error { Outcome::Usage } else { Outcome::Ok });
        }
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let config_path = cli.config.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
    let login = login::Login { user: cli.user, password_stdin: cli.password_stdin };
    match cli.command {
        Command::Parse(args) => parse::run(&args, &mut stdout.lock(), &mut stderr.lock()),
        Command::CheckConfig => check_config::run(&config_path, &mut stdout.lock(), &mut stderr.lock()),
        Command::Ingest(args) => ingest::run(&config_path, &args, &mut stdout.lock(), &mut stderr.lock()),
        Command::VerifyAudit => verify::run(&config_path, &mut stdout.lock()),
        Command::Import(args) => import::run(&config_path, &login, &args, &mut stdout.lock(), &mut stderr.lock()),
        Command::Report(args) => report::run(&config_path, &args, &mut stdout.lock(), &mut stderr.lock()),
        Command::Export(args) => export::run(&config_path, &args, &mut stdout.lock(), &mut stderr.lock()),
        Command::Resolve(args) => resolve::run(&config_path, &login, &args, &mut stdout.lock(), &mut stderr.lock()),
        Command::Lock(args) => lock::run(&config_path, &login, &args, true, &mut stdout.lock(), &mut stderr.lock()),
        Command::Unlock(args) => lock::run(&config_path, &login, &args, false, &mut stdout.lock(), &mut stderr.lock()),
        Command::NewAuditKey(args) => audit_key::run(&args, &mut stdout.lock(), &mut stderr.lock()),
        Command::MigrateStore(args) => migrate_store::run(&config_path, &args, &mut stdout.lock(), &mut stderr.lock()),
        Command::User(args) => user::run(&config_path, &login, &args, &mut stdout.lock(), &mut stderr.lock()),
        Command::Status => status::run(&config_path, &mut stdout.lock(), &mut stderr.lock()),
        Command::Run(args) => run::run(&config_path, &args),
        Command::Simulate(args) => simulate::run(&args, &mut stdout.lock()),
        Command::Demo(args) => demo::run(&args, &mut stdout.lock(), &mut stderr.lock()),
        Command::Generate(args) => generate::run(&args, &mut stdout.lock()),
        Command::Serve => serve::run(&config_path, &mut stdout.lock()),
    }
}

/// Load the configuration (every problem is a usage error, exit 2).
pub fn load_config(path: &Path) -> anyhow::Result<Config> {
    Ok(Config::load(path)?)
}

/// Load the configuration and open the study database for writing, creating
/// the database's directory when its parent exists (SPEC §7).
pub fn open_study(config_path: &Path) -> anyhow::Result<(Config, Store)> {
    let config = load_config(config_path)?;
    let store = open_store(&config, config_path)?;
    Ok((config, store))
}

/// Open the study database of a loaded configuration for writing (see [`open_study`]).
pub fn open_store(config: &Config, config_path: &Path) -> anyhow::Result<Store> {
    ensure_database_dir(config)?;
    require_writable_database(config)?;
    let audit = audit_settings(config)?;
    let mut store = Store::open_with(&config.storage.database, audit)
        .with_context(|| format!("opening the study database (storage.database in {})", config_path.display()))?;
    store.receive_as(&crate::daemon::health::instance(config));
    Ok(store)
}

/// The audit key and head file of a configuration (SPEC §9). Under systemd,
/// a key passed with `LoadCredential=NAME:PATH` is read from
/// `$CREDENTIALS_DIRECTORY/NAME` when NAME is the key file's name, so the
/// service can read a key its users cannot.
pub fn audit_settings(config: &Config) -> anyhow::Result<crate::store::AuditSettings> {
    let key = match &config.audit.key_file {
        None => None,
        Some(path) => {
            let credential = std::env::var_os("CREDENTIALS_DIRECTORY")
                .zip(path.file_name())
                .map(|(dir, name)| Path::new(&dir).join(name))
                .filter(|p| p.is_file());
            let from = credential.as_deref().unwrap_or(path);
            let bytes = std::fs::read(from).with_context(|| {
                format!(
                    "cannot read the audit key {} ([audit] key_file in {}); run labfeed as the account the key \
                     belongs to (the service's), or give it through systemd's LoadCredential=",
                    from.display(),
                    config.path.display()
                )
            })?;
            // A trailing line break (an editor's, or the generated file's) is not part of the key.
            let mut bytes = bytes;
            while bytes.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
                bytes.pop();
            }
            let key = crate::store::AuditKey::new(bytes).map_err(|why| {
                anyhow::anyhow!(
                    "the audit key {} ([audit] key_file in {}): {why}",
                    from.display(),
                    config.path.display()
                )
            })?;
            Some(key)
        }
    };
    // Beside the database, or on PostgreSQL beside this instance's other files.
    let head_file = config
        .audit
        .head_file
        .clone()
        .unwrap_or_else(|| crate::store::head::default_path(&crate::daemon::health::local_base(config)));
    Ok(crate::store::AuditSettings { key, head_file: Some(head_file) })
}

/// Refuse, naming the database, when this user cannot write it or the
/// `-wal` / `-shm` beside it: SQLite would open it and fail only at the first
/// write, with "attempt to write a readonly database".
pub fn require_writable_database(config: &Config) -> anyhow::Result<()> {
    if config.storage.is_postgres() {
        return Ok(());
    }
    let database = &config.storage.database;
    let disk = check_config::Disk::new();
    let files = check_config::unwritable_database_files(database, &disk);
    if files.is_empty() {
        return Ok(());
    }
    let user = check_config::FileSystem::user(&disk);
    let shown: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    anyhow::bail!(
        "the database {} cannot be written by user {user}: {} {} not writable by that user \
         (storage.database in {}; as root: chown {user}: {}*)",
        database.display(),
        shown.join(" and "),
        if files.len() == 1 { "is" } else { "are" },
        config.path.display(),
        database.display()
    )
}

/// Refuse a database that does not exist yet: for commands that read or
/// decide on existing data, a wrong `storage.database` is a configuration
/// problem (exit 2), never an empty study.
pub fn require_database(config: &Config, config_path: &Path) -> anyhow::Result<()> {
    let database = &config.storage.database;
    // A PostgreSQL database without labfeed's schema is refused when opened.
    if !config.storage.is_postgres() && !database.exists() {
        anyhow::bail!(
            "the study database {} does not exist (storage.database in {}); nothing has been imported or received yet",
            database.display(),
            config_path.display()
        );
    }
    Ok(())
}

/// Create the database's directory when it is missing and its parent exists
/// (SPEC §7); otherwise say which path is missing.
pub fn ensure_database_dir(config: &Config) -> anyhow::Result<()> {
    if config.storage.is_postgres() {
        return Ok(());
    }
    let database = &config.storage.database;
    let Some(dir) = database.parent().filter(|d| !d.as_os_str().is_empty()) else { return Ok(()) };
    if dir.is_dir() {
        return Ok(());
    }
    match dir.parent() {
        Some(parent) if parent.as_os_str().is_empty() || parent.is_dir() => {
            std::fs::create_dir(dir).with_context(|| format!("cannot create the database directory {}", dir.display()))
        }
        _ => anyhow::bail!(
            "the database directory {} does not exist, nor does its parent (storage.database in {})",
            dir.display(),
            config.path.display()
        ),
    }
}

/// Load the configuration and open the study database read-only (reports,
/// exports, status and audit checks work while the daemon runs). The
/// database must exist ([`require_database`]).
pub fn open_for_reading(config_path: &Path) -> anyhow::Result<(Config, Store)> {
    let config = load_config(config_path)?;
    require_database(&config, config_path)?;
    let store = Store::open_read_only(&config.storage.database)
        .with_context(|| format!("opening the study database (storage.database in {})", config_path.display()))?;
    Ok((config, store))
}
