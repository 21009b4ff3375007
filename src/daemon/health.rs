//! What the daemon leaves beside the database for other processes
//! (`labfeed status`): the single-instance lock, the health file and the
//! refused-peers file.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::notify::clean;
use crate::study::config::{Config, valid_instance};

/// This daemon's name (SPEC §10): `[storage] instance`, else the host name.
pub fn instance(config: &Config) -> String {
    if let Some(name) = &config.storage.instance {
        return name.clone();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    if valid_instance(host) { host.to_owned() } else { "labfeed".to_owned() }
}

/// The path this daemon's own files are named after (see [`Config::local_base`]).
pub fn local_base(config: &Config) -> PathBuf {
    config.local_base(&instance(config))
}

/// The single-instance lock file beside the database: the database path with
/// `.lock` appended (`/var/lib/labfeed/labfeed.db.lock`). `labfeed run` holds
/// an exclusive lock on it for as long as it runs.
pub fn lock_path(database: &Path) -> PathBuf {
    beside(database, ".lock")
}

/// The daemon's health file beside the database (`<database>.health`): one
/// line, `cannot commit since T: reason`, while commits fail, and blank
/// otherwise, for `labfeed status` (another process) to show.
pub fn health_path(database: &Path) -> PathBuf {
    beside(database, ".health")
}

/// The health file's fixed size. It is written at start and then only
/// overwritten in place, so that a disk that has since filled up (the
/// likeliest reason commits fail) still takes the line.
const HEALTH_FILE_BYTES: usize = 512;

/// At start: a blank health file of its full size (mode 0640).
pub fn prepare_health_file(database: &Path) -> io::Result<()> {
    let path = health_path(database);
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o640).open(&path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o640))?;
    file.write_all(&padded(""))?;
    file.sync_all()
}

/// Record that commits fail (written once when failing starts).
pub fn record_cannot_commit(database: &Path, line: &str) -> io::Result<()> {
    overwrite(database, &clean(line))
}

/// Commits work (again): a blank health file.
pub fn clear_cannot_commit(database: &Path) -> io::Result<()> {
    overwrite(database, "")
}

fn overwrite(database: &Path, line: &str) -> io::Result<()> {
    let mut file =
        OpenOptions::new().write(true).create(true).truncate(false).mode(0o640).open(health_path(database))?;
    file.write_all(&padded(line))?;
    file.sync_data()
}

/// `line`, a newline, then spaces up to [`HEALTH_FILE_BYTES`] (the line is
/// at most [`super::notify::STATUS_MAX_CHARS`] characters, so it fits).
fn padded(line: &str) -> Vec<u8> {
    let mut bytes = format!("{line}\n").into_bytes();
    bytes.truncate(HEALTH_FILE_BYTES);
    bytes.resize(HEALTH_FILE_BYTES, b' ');
    bytes
}

/// The daemon's `cannot commit since T: reason`, if it recorded one.
pub fn cannot_commit(database: &Path) -> Option<String> {
    let text = std::fs::read_to_string(health_path(database)).ok()?;
    let line = text.trim();
    (!line.is_empty()).then(|| line.to_owned())
}

/// The refused-peers file beside the database (`<database>.peers`): how many
/// TCP connections the running daemon refused since it started, per listener.
pub fn peers_path(database: &Path) -> PathBuf {
    beside(database, ".peers")
}

/// The database path with `suffix` appended.
fn beside(database: &Path, suffix: &str) -> PathBuf {
    let mut path = database.as_os_str().to_owned();
    path.push(suffix);
    PathBuf::from(path)
}

/// Replace the refused-peers file with `lines` (mode 0640, via a temporary
/// file and a rename, so a reader never sees half of it).
pub fn record_refused_peers(database: &Path, lines: &[String]) -> io::Result<()> {
    let path = peers_path(database);
    let mut temporary = path.clone().into_os_string();
    temporary.push(".tmp");
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o640).open(&temporary)?;
    for line in lines {
        writeln!(file, "{}", clean(line))?;
    }
    file.sync_all()?;
    std::fs::rename(&temporary, &path)
}

/// A daemon starting counts from zero: the file of an earlier run goes.
pub fn clear_refused_peers(database: &Path) -> io::Result<()> {
    match std::fs::remove_file(peers_path(database)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The lines of the refused-peers file (at most 64), if there is one.
pub fn refused_peers(database: &Path) -> Option<Vec<String>> {
    use std::io::Read;
    let mut text = String::new();
    File::open(peers_path(database)).ok()?.take(16 * 1024).read_to_string(&mut text).ok()?;
    Some(text.lines().take(64).map(str::to_owned).collect())
}

/// Whether a daemon holds the database's lock, as far as this process can tell.
#[derive(Debug)]
pub enum DaemonState {
    /// The lock is held (by `labfeed run`).
    Running,
    /// The lock file is absent or could be locked.
    NotRunning,
    /// The lock file could not be opened or probed (e.g. no permission).
    Unknown(io::Error),
}

/// Probe the lock of `database` without waiting and without creating the
/// lock file: a shared lock is taken and released at once, so neither a
/// running daemon nor another `status` is disturbed. (In the instant it is
/// held, a daemon starting up would find the database busy and exit 2.)
pub fn daemon_state(database: &Path) -> DaemonState {
    let file = match File::open(lock_path(database)) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return DaemonState::NotRunning,
        Err(e) => return DaemonState::Unknown(e),
    };
    match file.try_lock_shared() {
        Ok(()) => {
            // Closing the file releases it too; unlock says so explicitly.
            let _ = file.unlock();
            DaemonState::NotRunning
        }
        Err(TryLockError::WouldBlock) => DaemonState::Running,
        Err(TryLockError::Error(e)) => DaemonState::Unknown(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_file_is_the_database_path_plus_dot_lock() {
        assert_eq!(lock_path(Path::new("/var/lib/labfeed/labfeed.db")), Path::new("/var/lib/labfeed/labfeed.db.lock"));
        assert_eq!(lock_path(Path::new("study")), Path::new("study.lock"));
    }

    #[test]
    fn the_daemon_state_follows_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("labfeed.db");
        assert!(matches!(daemon_state(&db), DaemonState::NotRunning), "no lock file");
        let lock = File::create(lock_path(&db)).unwrap();
        assert!(matches!(daemon_state(&db), DaemonState::NotRunning), "lock file, not locked");
        // flock locks belong to the open file description, so a second open
        // in this process conflicts like another process would.
        lock.lock().unwrap();
        assert!(matches!(daemon_state(&db), DaemonState::Running));
        lock.unlock().unwrap();
        assert!(matches!(daemon_state(&db), DaemonState::NotRunning));
        assert!(lock_path(&db).exists(), "probing never removes the lock file");
    }

    #[test]
    fn the_health_file_is_one_line_beside_the_database_until_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("labfeed.db");
        assert_eq!(health_path(&db), dir.path().join("labfeed.db.health"));
        assert_eq!(cannot_commit(&db), None);
        std::fs::write(health_path(&db), "cannot commit since 2025-01-01T00:00:00Z: left by a crash, and long\n")
            .unwrap();
        prepare_health_file(&db).unwrap();
        assert_eq!(cannot_commit(&db), None, "blank after start");
        let size = || std::fs::metadata(health_path(&db)).unwrap().len();
        assert_eq!(size(), HEALTH_FILE_BYTES as u64);
        record_cannot_commit(&db, "cannot commit since 2026-01-01T00:00:00Z: disk\nfull").unwrap();
        assert_eq!(cannot_commit(&db).as_deref(), Some("cannot commit since 2026-01-01T00:00:00Z: disk full"));
        assert_eq!(size(), HEALTH_FILE_BYTES as u64, "overwritten in place");
        record_cannot_commit(&db, &"x".repeat(2000)).unwrap();
        assert_eq!(size(), HEALTH_FILE_BYTES as u64, "a long reason is cut");
        clear_cannot_commit(&db).unwrap();
        assert_eq!(cannot_commit(&db), None);
        assert_eq!(std::fs::metadata(health_path(&db)).unwrap().permissions().mode() & 0o777, 0o640);
    }

    #[test]
    fn the_peers_file_is_replaced_whole_and_readable_by_the_group_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("labfeed.db");
        assert_eq!(refused_peers(&db), None);
        record_refused_peers(&db, &["a".into(), "b\nc".into()]).unwrap();
        record_refused_peers(&db, &["refused 1".into()]).unwrap();
        assert_eq!(refused_peers(&db), Some(vec!["refused 1".to_owned()]));
        let mode = std::fs::metadata(peers_path(&db)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        clear_refused_peers(&db).unwrap();
        assert_eq!(refused_peers(&db), None);
    }
}
