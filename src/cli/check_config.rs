//! `labfeed check-config`: say exactly what is wrong, or what the study is.
//!
//! Besides the file itself, it checks the directories `run` writes to, as
//! the user it runs as: a config that loads but points at a folder the
//! service cannot write would otherwise only fail when the daemon starts.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use nix::unistd::AccessFlags;

use crate::cli::Outcome;
use crate::study::config::{Config, ConfigError, FlowControl, Parity, Problem};
use crate::study::config_schema::{NOT_YET_USED, key_line, keys_present};

pub fn run(path: &Path, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Outcome> {
    let problems = match Config::load(path) {
        Ok(config) => {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let mut problems = directory_problems(&config, &text, &Disk::new());
            problems.extend(audit_key_problem(&config, &text));
            if problems.is_empty() {
                print_summary(&config, out)?;
                // Accepted so that one file serves several versions, but a
                // reader must not believe e.g. `allow` protects a listener.
                for (key, line) in keys_present(&text, NOT_YET_USED) {
                    writeln!(out, "note: {key} (line {line}) has no effect in this version of labfeed")?;
                }
                return Ok(Outcome::Ok);
            }
            ConfigError { path: path.to_owned(), problems }
        }
        Err(e) => e,
    };
    writeln!(err, "{problems}")?;
    let n = problems.problems.len();
    writeln!(err, "{}: {n} problem{} found", path.display(), if n == 1 { "" } else { "s" })?;
    Ok(Outcome::Usage)
}

/// `[audit] key_file` must be a key this user can read, of at least 32
/// bytes, that nobody else can (SPEC §9).
fn audit_key_problem(config: &Config, text: &str) -> Option<Problem> {
    use std::os::unix::fs::PermissionsExt;
    let path = config.audit.key_file.as_ref()?;
    let problem = |message: String| Problem {
        line: key_line(text, &["audit", "key_file"]),
        key: "audit.key_file".to_owned(),
        message,
    };
    if let Err(e) = crate::cli::audit_settings(config) {
        let why = match std::fs::metadata(path) {
            Err(m) if m.kind() == io::ErrorKind::NotFound => format!(
                "the audit key {} does not exist (make one with `labfeed new-audit-key {}`)",
                path.display(),
                path.display()
            ),
            _ => format!("{e:#}"),
        };
        return Some(problem(why));
    }
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        problem(format!(
            "the audit key {} can be read by others than its owner (mode {:04o}); chmod 0400 {}",
            path.display(),
            mode & 0o7777,
            path.display()
        ))
    })
}

/// What the directory check asks of the file system (a seam for tests).
pub trait FileSystem {
    /// `Ok(true)` a directory, `Ok(false)` something else, `Err` missing or unreadable.
    fn is_dir(&self, path: &Path) -> io::Result<bool>;
    /// Whether this process's user may create and remove entries in `path` (or write the file).
    fn writable(&self, path: &Path) -> bool;
    /// The user named in messages.
    fn user(&self) -> String;
}

/// The real file system, checked with access(2) as the user running labfeed.
pub struct Disk {
    user: String,
}

impl Disk {
    pub fn new() -> Disk {
        let uid = nix::unistd::getuid();
        let user = match nix::unistd::User::from_uid(uid) {
            Ok(Some(user)) => user.name,
            _ => format!("uid {uid}"),
        };
        Disk { user }
    }
}

impl Default for Disk {
    fn default() -> Self {
        Disk::new()
    }
}

impl FileSystem for Disk {
    fn is_dir(&self, path: &Path) -> io::Result<bool> {
        std::fs::metadata(path).map(|m| m.is_dir())
    }

    fn writable(&self, path: &Path) -> bool {
        let dir = std::fs::metadata(path).is_ok_and(|m| m.is_dir());
        let mode = if dir { AccessFlags::W_OK | AccessFlags::X_OK } else { AccessFlags::W_OK };
        nix::unistd::access(path, mode).is_ok()
    }

    fn user(&self) -> String {
        self.user.clone()
    }
}

/// Every directory `run` writes to (the database's, inbox, archive,
/// quarantine) must exist, or have an existing parent so that `run` can
/// create it (SPEC §7), and be writable by this user; so must the database
/// file and SQLite's `-wal` and `-shm` beside it, when they exist.
pub fn directory_problems(config: &Config, text: &str, fs: &dyn FileSystem) -> Vec<Problem> {
    let mut problems = Vec::new();
    let database = &config.storage.database;
    let mut dirs: Vec<(&str, &str, &str, PathBuf)> = Vec::new();
    if config.storage.is_postgres() {
        let url = database.to_str().unwrap_or_default();
        if let Err(e) = crate::store::postgres::parse_url(url) {
            problems.push(Problem {
                line: key_line(text, &["storage", "database"]),
                key: "storage.database".to_owned(),
                message: e.to_string(),
            });
        }
        let base = crate::daemon::health::local_base(config);
        let dir = base.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        dirs.push(("storage", "state_dir", "the state directory", dir.to_owned()));
    } else {
        let dir = database.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        dirs.push(("storage", "database", "the database directory", dir.to_owned()));
        let problem = |message| Problem {
            line: key_line(text, &["storage", "database"]),
            key: "storage.database".to_owned(),
            message,
        };
        if fs.is_dir(database).is_ok_and(|is_dir| is_dir) {
            problems.push(problem(format!(
                "{} is a directory; name the database file in it, e.g. {}",
                database.display(),
                database.join("labfeed.db").display()
            )));
        } else {
            problems.extend(database_file_problems(database, fs).into_iter().map(problem));
        }
    }
    if let Some(w) = &config.watch {
        dirs.push(("watch", "inbox", "the inbox", w.inbox.clone()));
        dirs.push(("watch", "archive", "the archive", w.archive.clone()));
        dirs.push(("watch", "quarantine", "the quarantine directory", w.quarantine.clone()));
    }
    for (table, key, what, dir) in dirs {
        if let Some(message) = directory_problem(what, &dir, fs) {
            problems.push(Problem { line: key_line(text, &[table, key]), key: format!("{table}.{key}"), message });
        }
    }
    problems.sort_by_key(|p| p.line);
    problems
}

/// The database file and SQLite's `-wal` and `-shm` beside it that exist
/// but this user cannot write. A read-only command run as root leaves
/// root-owned `-wal` and `-shm`, and SQLite then refuses every write
/// ("attempt to write a readonly database").
pub fn unwritable_database_files(database: &Path, fs: &dyn FileSystem) -> Vec<PathBuf> {
    ["", "-wal", "-shm"]
        .into_iter()
        .map(|suffix| {
            let mut name = database.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        })
        .filter(|path| fs.is_dir(path).is_ok_and(|is_dir| !is_dir) && !fs.writable(path))
        .collect()
}

/// Each unwritable database file in plain words, with the fix.
fn database_file_problems(database: &Path, fs: &dyn FileSystem) -> Vec<String> {
    let user = fs.user();
    let fix = format!("as root: chown {user}: {}*", database.display());
    unwritable_database_files(database, fs)
        .into_iter()
        .map(|path| {
            if path == database {
                format!("the database {} is not writable by user {user} ({fix})", path.display())
            } else {
                format!(
                    "SQLite's file {} beside the database is not writable by user {user}, so the database cannot be written either ({fix})",
                    path.display()
                )
            }
        })
        .collect()
}

fn directory_problem(what: &str, dir: &Path, fs: &dyn FileSystem) -> Option<String> {
    let user = fs.user();
    let shown = dir.display();
    match fs.is_dir(dir) {
        Ok(true) if fs.writable(dir) => None,
        Ok(true) => Some(format!("{what} {shown} is not writable by user {user}")),
        Ok(false) => Some(format!("{what} {shown} exists but is not a directory")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            match fs.is_dir(parent) {
                Ok(true) if fs.writable(parent) => None,
                Ok(true) => Some(format!(
                    "{what} {shown} does not exist, and its parent {} is not writable by user {user}, so it cannot be created",
                    parent.display()
                )),
                Ok(false) => Some(format!(
                    "{what} {shown} does not exist, and its parent {} is not a directory",
                    parent.display()
                )),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    Some(format!("{what} {shown} does not exist, nor does its parent {}", parent.display()))
                }
                Err(e) => Some(format!("{what} {shown} {}", unreachable(dir, e.kind(), fs))),
            }
        }
        Err(e) => Some(format!("{what} {shown} {}", unreachable(dir, e.kind(), fs))),
    }
}

/// Why `path` cannot be looked at, in plain words: the ancestor that is a
/// file, or the one this user may not look into.
fn unreachable(path: &Path, kind: io::ErrorKind, fs: &dyn FileSystem) -> String {
    let user = fs.user();
    let mut ancestors: Vec<&Path> = path.ancestors().filter(|a| !a.as_os_str().is_empty()).collect();
    ancestors.reverse();
    match kind {
        io::ErrorKind::NotADirectory => match ancestors.iter().find(|a| fs.is_dir(a).is_ok_and(|is_dir| !is_dir)) {
            Some(file) => format!("cannot be reached: {} is a file, not a directory", file.display()),
            None => "cannot be reached: part of the path is a file, not a directory".to_owned(),
        },
        io::ErrorKind::PermissionDenied => {
            // The first ancestor that cannot be looked at lies in the one that refuses.
            let denied = ancestors
                .iter()
                .find(|a| fs.is_dir(a).is_err_and(|e| e.kind() == io::ErrorKind::PermissionDenied))
                .and_then(|a| a.parent());
            match denied {
                Some(dir) => format!("cannot be reached by user {user}: permission denied on {}", dir.display()),
                None => format!("cannot be reached by user {user}: permission denied"),
            }
        }
        io::ErrorKind::InvalidFilename => "cannot be reached: the path or one of its names is too long".to_owned(),
        other => format!("cannot be examined by user {user} ({other})"),
    }
}

fn print_summary(c: &Config, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "{}: OK", c.path.display())?;
    writeln!(out, "study {} (times without an offset are read in {})", c.study.id, c.study.timezone)?;
    writeln!(out, "database {}", c.storage.shown())?;
    if let Ok(address) = c.web.socket_address() {
        let scheme = if c.web.tls().is_some() { "https" } else { "http" };
        writeln!(out, "web console {scheme}://{address}/ (labfeed serve)")?;
    }
    if c.storage.is_postgres() {
        let base = crate::daemon::health::local_base(c);
        writeln!(out, "instance {} (its files: {}.*)", crate::daemon::health::instance(c), base.display())?;
    }
    if let Some(w) = &c.watch {
        writeln!(
            out,
            "watch folder {} (archive {}, quarantine {})",
            w.inbox.display(),
            w.archive.display(),
            w.quarantine.display()
        )?;
    }
    writeln!(out, "analytes:")?;
    for (name, a) in &c.analytes {
        let mut line = format!("  {name} in {}", a.unit);
        if let Some(lloq) = a.lloq {
            line.push_str(&format!(", LLOQ {lloq}"));
        }
        if let Some([low, high]) = a.plausible {
            line.push_str(&format!(", plausible {low} to {high}"));
        }
        writeln!(out, "{line}")?;
    }
    writeln!(out, "instruments:")?;
    for i in &c.instruments {
        let tests: Vec<String> = i.tests.iter().map(|(code, analyte)| format!("{code} → {analyte}")).collect();
        let mut line = format!("  {} (sender {:?}): {}", i.name, i.sender, tests.join(", "));
        if i.decimal_comma {
            line.push_str("; decimal comma");
        }
        if !i.trust_collection_time {
            line.push_str("; collection times not trusted (no window check)");
        }
        writeln!(out, "{line}")?;
    }
    for s in &c.serial {
        let parity = match s.parity {
            Parity::None => 'N',
            Parity::Even => 'E',
            Parity::Odd => 'O',
        };
        let flow = match s.flow_control {
            FlowControl::None => "no flow control",
            FlowControl::Software => "XON/XOFF",
            FlowControl::Hardware => "RTS/CTS",
        };
        writeln!(
            out,
            "serial {} for {}: {} baud {}{}{}, {flow}",
            s.path.display(),
            s.instrument,
            s.baud,
            s.data_bits,
            parity,
            s.stop_bits
        )?;
    }
    for l in &c.listen {
        writeln!(out, "listen {} ({}) for {}", l.address, l.protocol, l.instrument)?;
    }
    let m = &c.mmtt;
    let points: Vec<String> = m.timepoints.iter().map(|&t| format!("{t} (±{})", m.window(t))).collect();
    writeln!(out, "MMTT timepoints (min): {}", points.join(", "))?;
    writeln!(
        out,
        "AUC {} to {} min, baseline sample {}, BLQ as {}, missing points {}",
        m.auc_from, m.auc_to, m.baseline, m.blq, m.missing
    )?;
    let visits: Vec<String> = c
        .visits
        .iter()
        .map(|v| format!("{} {}{}", v.code, v.name, if v.baseline { " (baseline)" } else { "" }))
        .collect();
    writeln!(out, "visits: {}", if visits.is_empty() { "none".to_owned() } else { visits.join(", ") })?;
    match &c.sample_id_pattern {
        Some(re) => writeln!(out, "sample IDs: the sample manifest, then the pattern {}", re.as_str())?,
        None => writeln!(out, "sample IDs: the sample manifest only")?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// Directories by path: `true` writable.
    struct Fake(BTreeMap<&'static str, bool>);

    impl FileSystem for Fake {
        fn is_dir(&self, path: &Path) -> io::Result<bool> {
            match path.to_str().and_then(|p| self.0.get(p)) {
                Some(_) => Ok(true),
                None => Err(io::Error::from(io::ErrorKind::NotFound)),
            }
        }
        fn writable(&self, path: &Path) -> bool {
            path.to_str().and_then(|p| self.0.get(p)).copied().unwrap_or(false)
        }
        fn user(&self) -> String {
            "labfeed".to_owned()
        }
    }

    const TEXT: &str = "[study]\nid = \"X\"\ntimezone = \"UTC\"\n[storage]\ndatabase = \"/x/y/labfeed.db\"\n\
                        [watch]\ninbox = \"/srv/in\"\narchive = \"/srv/ro/archive\"\nquarantine = \"/srv/q\"\n";

    #[test]
    fn missing_and_unwritable_directories_are_each_named_with_their_key() {
        let config = Config::from_toml(TEXT, Path::new("c.toml")).unwrap();
        let fs = Fake(BTreeMap::from([("/srv", true), ("/srv/q", false), ("/srv/ro", false), ("/", false)]));
        let problems = directory_problems(&config, TEXT, &fs);
        let shown: Vec<(usize, &str, &str)> =
            problems.iter().map(|p| (p.line, p.key.as_str(), p.message.as_str())).collect();
        assert_eq!(
            shown,
            [
                (5, "storage.database", "the database directory /x/y does not exist, nor does its parent /x"),
                (
                    8,
                    "watch.archive",
                    "the archive /srv/ro/archive does not exist, and its parent /srv/ro is not writable by user labfeed, so it cannot be created"
                ),
                (9, "watch.quarantine", "the quarantine directory /srv/q is not writable by user labfeed"),
            ]
        );
        // The inbox is missing but its parent is writable: `run` creates it.
        let fs = Fake(BTreeMap::from([("/x/y", true), ("/srv", true), ("/srv/ro", true), ("/srv/q", true)]));
        assert_eq!(directory_problems(&config, TEXT, &fs), []);
    }
}
