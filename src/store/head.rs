//! The audit chain's head, recorded outside the database after each commit
//! (SPEC §9): a chain cannot show that its newest rows were deleted, but a
//! head file that names a row the chain no longer has does.
//!
//! ```text
//! labfeed audit head v1
//! seq 1234
//! hash 9f…
//! at 2026-12-07T12:00:00Z
//! hmac-sha256 5c…        (with an audit key; else "sha256 …", which anyone can recompute)
//! ```
//!
//! Several writers (the daemon, a data manager's command) may race: a head
//! is only ever replaced by a later one, through a rename.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::store::FILE_MODE;
use crate::store::audit::{AuditKey, sha256_hex};

const MAGIC: &str = "labfeed audit head v1";

/// One recorded head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub seq: i64,
    pub hash: String,
    pub at: String,
    /// The file's seal is an HMAC under the audit key.
    pub keyed: bool,
}

/// Why a head file cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    Unreadable(String),
    Malformed(String),
    /// Its seal does not match its content: it was edited.
    Altered,
    /// A key is configured but the file is sealed without one.
    NotKeyed,
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::Unreadable(e) => write!(f, "cannot be read: {e}"),
            HeadError::Malformed(what) => write!(f, "is not a labfeed head file: {what}"),
            HeadError::Altered => f.write_str("was altered: its seal does not match its content"),
            HeadError::NotKeyed => f.write_str("is not sealed with the audit key, though a key is configured"),
        }
    }
}

/// The default head file: beside the database, so that it moves with it.
pub fn default_path(database: &Path) -> PathBuf {
    let mut name = database.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".audit-head");
    database.with_file_name(name)
}

fn body(seq: i64, hash: &str, at: &str) -> String {
    format!("{MAGIC}\nseq {seq}\nhash {hash}\nat {at}\n")
}

fn seal(body: &str, key: Option<&AuditKey>) -> String {
    match key {
        Some(key) => format!("hmac-sha256 {}", key.mac_hex(body.as_bytes())),
        None => format!("sha256 {}", sha256_hex(body.as_bytes())),
    }
}

/// Record `seq`/`hash` as the head, unless the file already names a later
/// one. Written to a temporary file and renamed, so a reader never sees half.
pub fn record(path: &Path, key: Option<&AuditKey>, seq: i64, hash: &str, at: &str) -> std::io::Result<()> {
    record_after(path, key, read(path, key).ok().flatten().as_ref(), seq, hash, at)
}

/// [`record`], given the head the file holds now (as just read).
pub fn record_after(
    path: &Path,
    key: Option<&AuditKey>,
    current: Option<&Head>,
    seq: i64,
    hash: &str,
    at: &str,
) -> std::io::Result<()> {
    if current.is_some_and(|c| c.seq >= seq) {
        return Ok(());
    }
    let body = body(seq, hash, at);
    let text = format!("{body}{}\n", seal(&body, key));
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    // A replaced head keeps the mode it had (an administrator's stricter one
    // stays); a new one gets FILE_MODE, whatever the umask.
    let mode = std::fs::metadata(path).map_or(FILE_MODE, |m| m.permissions().mode() & 0o7777);
    {
        let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(text.as_bytes())?;
        // On disk before it takes the name: a crash never leaves an empty head.
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// The recorded head: `None` when there is no file yet. With `key`, the seal
/// must be an HMAC under it; without, a keyed seal cannot be checked and is
/// taken as it is (the caller says so).
pub fn read(path: &Path, key: Option<&AuditKey>) -> Result<Option<Head>, HeadError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(HeadError::Unreadable(e.to_string())),
    };
    let lines: Vec<&str> = text.lines().collect();
    let [magic, seq, hash, at, seal_line] = lines.as_slice() else {
        return Err(HeadError::Malformed(format!("{} lines, not 5", lines.len())));
    };
    if *magic != MAGIC {
        return Err(HeadError::Malformed("its first line".to_owned()));
    }
    let field = |line: &str, name: &str| line.strip_prefix(name).and_then(|v| v.strip_prefix(' ')).map(str::to_owned);
    let seq = field(seq, "seq").and_then(|s| s.parse::<i64>().ok()).ok_or(HeadError::Malformed("seq".into()))?;
    let hash = field(hash, "hash").ok_or(HeadError::Malformed("hash".into()))?;
    let at = field(at, "at").ok_or(HeadError::Malformed("at".into()))?;
    let body = body(seq, &hash, &at);
    let keyed = seal_line.starts_with("hmac-sha256 ");
    match (keyed, key) {
        (true, Some(key)) if *seal_line != seal(&body, Some(key)) => return Err(HeadError::Altered),
        (false, Some(_)) => return Err(HeadError::NotKeyed),
        (false, None) if *seal_line != seal(&body, None) => return Err(HeadError::Altered),
        _ => {}
    }
    Ok(Some(Head { seq, hash, at, keyed }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> AuditKey {
        AuditKey::new(vec![byte; 32]).unwrap()
    }

    #[test]
    fn a_head_reads_back_and_only_moves_forward() {
        let dir = tempfile::tempdir().unwrap();
        let path = default_path(&dir.path().join("labfeed.db"));
        assert_eq!(path.file_name().unwrap(), "labfeed.db.audit-head");
        assert_eq!(read(&path, None).unwrap(), None);
        record(&path, Some(&key(1)), 7, "abc", "2026-12-07T12:00:00Z").unwrap();
        record(&path, Some(&key(1)), 5, "old", "2026-12-07T11:00:00Z").unwrap();
        let head = read(&path, Some(&key(1))).unwrap().unwrap();
        assert_eq!((head.seq, head.hash.as_str(), head.keyed), (7, "abc", true));
        assert_eq!(read(&path, Some(&key(2))), Err(HeadError::Altered));
        let edited = std::fs::read_to_string(&path).unwrap().replace("seq 7", "seq 9");
        std::fs::write(&path, edited).unwrap();
        assert_eq!(read(&path, Some(&key(1))), Err(HeadError::Altered));
        std::fs::remove_file(&path).unwrap();
        record(&path, None, 3, "x", "t").unwrap();
        assert_eq!(read(&path, Some(&key(1))), Err(HeadError::NotKeyed));
    }
}
