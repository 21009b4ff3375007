//! The inbox folder on disk: which names to ignore, what an entry is, and how
//! a file leaves the inbox (archive or quarantine) without ever being lost or
//! overwriting another file.
//!
//! Everything here is blocking file-system work; from async code call it
//! through `tokio::task::spawn_blocking`.
//!
//! Moves are "hard link to the new name, then remove the old one": the link
//! fails if the target exists, so nothing is ever overwritten, and the file
//! exists under at least one name at every moment. A crash between the two
//! steps leaves the file in both places; the inbox copy is then taken again
//! at the next start (an identical re-delivery, archived again). When a hard
//! link is impossible (another file system, or `fs.protected_hardlinks`
//! refusing a file owned by another user), the file is copied to a new name
//! opened with `create_new`, fsynced, and only then removed from the inbox.
//! So is a file with another name besides the inbox one (hard-linked in): a
//! write to that name must not change the archived file. A suffixed name, and
//! a reason file's name, is shortened to fit in 255 bytes.
//! An archived or quarantined regular file, and a reason file, is read-only:
//! owner and group may read it (0440 at most), nobody may write it.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::study::config::Watch;

const MIB: u64 = 1 << 20;

/// How many suffixed names (`NAME-1.ext` …) to try before giving up.
const MAX_SUFFIX: u32 = 100_000;

/// Names tools use while still writing: `.*`, `*.tmp`, `*.part`, `~*`
/// (ignored until renamed). The endings are matched case-insensitively, so
/// `X.TMP` from a Windows tool is ignored too.
pub fn is_temporary_name(name: &OsStr) -> bool {
    let bytes = name.as_encoded_bytes();
    let ends_with =
        |suffix: &[u8]| bytes.len() >= suffix.len() && bytes[bytes.len() - suffix.len()..].eq_ignore_ascii_case(suffix);
    bytes.is_empty() || bytes.starts_with(b".") || bytes.starts_with(b"~") || ends_with(b".tmp") || ends_with(b".part")
}

/// What an inbox entry is, WITHOUT following symlinks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A regular file within the size limit.
    File { size: u64, modified: SystemTime },
    /// Not to be read; the reason in plain words (it names the path).
    Refuse(String),
    /// Nothing is there (any more).
    Gone,
}

/// Size, modification time and inode of an entry, as `lstat` sees it: what
/// "unchanged" means for the watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub size: u64,
    pub modified: SystemTime,
    pub inode: u64,
}

/// One `lstat` of an inbox entry, with no size check.
#[derive(Debug, Clone)]
pub(crate) struct Stat {
    pub stamp: Stamp,
    /// How many names the file has (more than one: hard-linked in, or out).
    pub nlink: u64,
    /// Why it is not a regular file (`None` for a regular file).
    pub not_regular: Option<String>,
}

/// `lstat` the path: `Ok(None)` when it is gone.
pub(crate) fn stat(path: &Path) -> io::Result<Option<Stat>> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let ft = meta.file_type();
    let what = if ft.is_file() {
        None
    } else if ft.is_symlink() {
        Some("is a symbolic link; labfeed never follows links")
    } else if ft.is_dir() {
        Some("is a directory; only regular files are taken from the inbox")
    } else if ft.is_fifo() {
        Some("is a named pipe (FIFO); only regular files are taken from the inbox")
    } else if ft.is_socket() {
        Some("is a socket; only regular files are taken from the inbox")
    } else if ft.is_block_device() || ft.is_char_device() {
        Some("is a device; only regular files are taken from the inbox")
    } else {
        Some("is not a regular file; only regular files are taken from the inbox")
    };
    Ok(Some(Stat {
        stamp: Stamp {
            size: meta.len(),
            // A file system without modification times: the size alone decides.
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            inode: meta.ino(),
        },
        nlink: meta.nlink(),
        not_regular: what.map(|what| format!("{} {what}", shown_name(path))),
    }))
}

/// The refusal for a regular file of `size` bytes, when it is over `max_bytes`.
pub(crate) fn too_big(path: &Path, size: u64, max_bytes: u64) -> Option<String> {
    if size <= max_bytes {
        return None;
    }
    let limit = if max_bytes.is_multiple_of(MIB) {
        format!("watch.max_file_size_mib = {}", max_bytes / MIB)
    } else {
        format!("{max_bytes} bytes")
    };
    Some(format!("{} is {}; the limit is {limit}", shown_name(path), human_size(size)))
}

fn human_size(bytes: u64) -> String {
    if bytes >= MIB / 10 { format!("{:.1} MiB", bytes as f64 / MIB as f64) } else { format!("{bytes} bytes") }
}

/// What an inbox entry is, WITHOUT following symlinks (`symlink_metadata`).
///
/// Refuses (with a plain-words reason naming the file) a symlink, a
/// directory, FIFO, socket or device, and a regular file larger than
/// `max_bytes`. An entry that cannot be examined at all is refused with the
/// error.
pub fn inspect(path: &Path, max_bytes: u64) -> Entry {
    match stat(path) {
        Ok(None) => Entry::Gone,
        Err(e) => Entry::Refuse(format!("{} cannot be examined: {e}", shown_name(path))),
        Ok(Some(Stat { not_regular: Some(reason), .. })) => Entry::Refuse(reason),
        Ok(Some(Stat { stamp, not_regular: None, .. })) => match too_big(path, stamp.size, max_bytes) {
            Some(reason) => Entry::Refuse(reason),
            None => Entry::File { size: stamp.size, modified: stamp.modified },
        },
    }
}

/// Move a processed file to `archive_root/YYYY/MM/DD/NAME`, creating the day
/// folders, never overwriting: on a name clash a suffix is added
/// (`NAME-1.ext`, `NAME-2.ext`, …). The new name and the folders are fsynced
/// before the inbox entry is removed. Returns the new path.
pub fn archive(file: &Path, archive_root: &Path, day: jiff::civil::Date) -> io::Result<PathBuf> {
    let name = file_name(file)?;
    let parts = [format!("{:04}", day.year()), format!("{:02}", day.month()), format!("{:02}", day.day())];
    let mut dir = archive_root.to_path_buf();
    for part in parts {
        let parent = dir.clone();
        dir.push(part);
        match fs::create_dir(&dir) {
            Ok(()) => sync_dir(&parent)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(with_path(e, "cannot create", &dir)),
        }
    }
    move_no_clobber(file, &dir, name, |_| true)
}

/// Move a file (or a symlink itself, never its target; or a FIFO, socket or
/// directory) to `quarantine_root/NAME` with the same no-clobber rule as
/// [`archive`], and write `NAME.reason.txt` beside it: the reason in plain
/// words, the original path and when (fsynced). Returns the new path.
pub fn quarantine(file: &Path, quarantine_root: &Path, reason: &str) -> io::Result<PathBuf> {
    let name = file_name(file)?;
    // A name whose reason file is taken (left over from something else) is
    // skipped, so each quarantined entry gets its own reason file.
    let target = move_no_clobber(file, quarantine_root, name, |candidate| {
        fs::symlink_metadata(reason_path(candidate)).is_err()
    })?;
    let when = jiff::ZonedDateTime::now().strftime("%Y-%m-%d %H:%M:%S %:z");
    // Control characters in a name stay escaped in the file too (`cat` shows it).
    let reason: Vec<_> = reason.lines().map(crate::model::printable).collect();
    let arrived = crate::model::printable(&file.display().to_string()).into_owned();
    let text = format!("{}\n\nQuarantined by labfeed at {when}.\nIt arrived as {arrived}.\n", reason.join("\n"));
    let reason_file = reason_path(&target);
    // `create_new` never overwrites, nor follows a link planted under that name.
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(READ_ONLY)
        .open(&reason_file)
        .map_err(|e| with_path(e, "cannot write", &reason_file))?;
    out.write_all(text.as_bytes())
        .and_then(|()| out.set_permissions(fs::Permissions::from_mode(READ_ONLY)))
        .and_then(|()| out.sync_all())
        .map_err(|e| with_path(e, "cannot write", &reason_file))?;
    sync_dir(quarantine_root)?;
    Ok(target)
}

const REASON_SUFFIX: &str = ".reason.txt";

/// `dir/NAME.reason.txt` for `dir/NAME`. When that is longer than a file
/// name may be, `dir/PREFIX-HASH.reason.txt`: a prefix of NAME and 8 hex
/// digits of the SHA-256 of the whole name, so two long names that share a
/// prefix still get distinct reason files.
fn reason_path(target: &Path) -> PathBuf {
    let name = target.file_name().map(OsStr::to_os_string).unwrap_or_default();
    let bytes = name.as_encoded_bytes();
    let mut out = if bytes.len() + REASON_SUFFIX.len() <= NAME_MAX {
        name.clone()
    } else {
        use sha2::{Digest, Sha256};
        let hash: String = Sha256::digest(bytes).iter().take(4).map(|b| format!("{b:02x}")).collect();
        let mut short = os_str(prefix(bytes, NAME_MAX - REASON_SUFFIX.len() - 1 - hash.len())).to_os_string();
        short.push(format!("-{hash}"));
        short
    };
    out.push(REASON_SUFFIX);
    target.with_file_name(out)
}

/// The longest file name most Linux file systems allow, in bytes.
const NAME_MAX: usize = 255;

/// At most `max` leading bytes, not cutting a UTF-8 character in two.
fn prefix(bytes: &[u8], max: usize) -> &[u8] {
    let cut = bytes.get(..max).unwrap_or(bytes);
    match std::str::from_utf8(cut) {
        Err(e) if e.error_len().is_none() => cut.get(..e.valid_up_to()).unwrap_or(cut),
        _ => cut,
    }
}

fn os_str(bytes: &[u8]) -> &OsStr {
    std::os::unix::ffi::OsStrExt::from_bytes(bytes)
}

/// Create inbox, archive and quarantine when missing and their parent exists.
/// Otherwise an error naming the path and the config key.
pub fn ensure_dirs(watch: &Watch) -> Result<(), String> {
    for (key, dir) in
        [("watch.inbox", &watch.inbox), ("watch.archive", &watch.archive), ("watch.quarantine", &watch.quarantine)]
    {
        ensure_dir(key, dir)?;
    }
    Ok(())
}

fn ensure_dir(key: &str, dir: &Path) -> Result<(), String> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => return Err(format!("{key} = {} exists but is not a directory", dir.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{key} = {}: cannot examine it: {e}", dir.display())),
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(format!(
            "{key} = {} does not exist, and neither does its parent folder {}; \
             create it, or change {key} in the config",
            dir.display(),
            parent.display()
        ));
    }
    match fs::create_dir(dir) {
        Ok(()) => {
            tracing::info!("created {} ({key})", dir.display());
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(format!("{key} = {}: cannot create it: {e}", dir.display())),
    }
}

/// An entry's name as logs, receipts and reports show it: the name alone
/// (the inbox is known), control characters escaped.
pub fn shown_name(path: &Path) -> String {
    let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    crate::model::printable(&name).into_owned()
}

/// A file's identity (device, inode), to tell it from one put in its place.
pub type Identity = (u64, u64);

/// Whether `path` is still the file that was read (not replaced since).
pub fn is_still(path: &Path, identity: Identity) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| (m.dev(), m.ino()) == identity)
}

fn file_name(file: &Path) -> io::Result<&OsStr> {
    file.file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{} does not name a file", file.display())))
}

fn with_path(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// `NAME` for `n == 0`, else `STEM-n.EXT` (or `NAME-n` without an
/// extension). The stem is shortened so the result fits in a file name
/// (`NAME_MAX` bytes); a name too long to keep its extension is shortened
/// as a whole.
fn candidate_name(name: &OsStr, n: u32) -> OsString {
    if n == 0 {
        return name.to_os_string();
    }
    let suffix = format!("-{n}");
    let path = Path::new(name);
    let stem = path.file_stem().unwrap_or(name).as_encoded_bytes();
    let ext = path.extension().map(OsStr::as_encoded_bytes);
    let ext_len = ext.map_or(0, |e| e.len() + 1);
    let (stem, ext) = match NAME_MAX.checked_sub(suffix.len() + ext_len) {
        Some(room) if room > 0 => (prefix(stem, room), ext),
        _ => (prefix(name.as_encoded_bytes(), NAME_MAX - suffix.len()), None),
    };
    let mut out = os_str(stem).to_os_string();
    out.push(suffix);
    if let Some(ext) = ext {
        out.push(".");
        out.push(os_str(ext));
    }
    out
}

/// Move `file` into `dir` as `name` (or the first free suffixed name that
/// `acceptable` allows), never replacing anything. Returns the new path.
fn move_no_clobber(file: &Path, dir: &Path, name: &OsStr, acceptable: impl Fn(&Path) -> bool) -> io::Result<PathBuf> {
    let meta = fs::symlink_metadata(file).map_err(|e| with_path(e, "cannot move", file))?;
    let source_dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // A file with another name outside the inbox is copied: a link would
    // let a write there change the archived file, and making it read-only
    // would change the other name too.
    let shared = meta.is_file() && meta.nlink() > 1;
    // Another user's file is copied too: its owner could make a linked
    // archive copy writable again, whatever mode labfeed gave it.
    let theirs = meta.is_file() && meta.uid() != nix::unistd::geteuid().as_raw();
    let mut linkable = !meta.is_dir() && !shared && !theirs;
    for n in 0..=MAX_SUFFIX {
        let target = dir.join(candidate_name(name, n));
        // Linked there before a crash, but not yet removed from the inbox:
        // it is archived already, and a copy would archive it twice.
        let already = fs::symlink_metadata(&target).is_ok_and(|t| t.dev() == meta.dev() && t.ino() == meta.ino());
        if !already && !acceptable(&target) {
            continue;
        }
        let placed = if already {
            Ok(true)
        } else if meta.is_dir() {
            place_dir(file, &target)
        } else if linkable {
            match fs::hard_link(file, &target) {
                Ok(()) if !meta.is_file() => Ok(true),
                Ok(()) => match fs::set_permissions(&target, read_only(&meta)) {
                    Ok(()) => Ok(true),
                    // Another user's file cannot be made read-only: a copy of our own can.
                    Err(_) => {
                        linkable = false;
                        fs::remove_file(&target).and_then(|()| copy_new(file, &meta, &target))
                    }
                },
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
                // Another file system, a file system without hard links, or
                // `fs.protected_hardlinks` refusing another user's file.
                Err(_) => {
                    linkable = false;
                    copy_new(file, &meta, &target)
                }
            }
        } else {
            copy_new(file, &meta, &target)
        };
        match placed {
            Ok(false) => continue,
            Ok(true) => {}
            Err(e) => return Err(with_path(e, &format!("cannot move {} to", file.display()), &target)),
        }
        sync_dir(dir)?;
        if !meta.is_dir() {
            fs::remove_file(file)
                .map_err(|e| with_path(e, &format!("copied to {}, but cannot remove", target.display()), file))?;
        }
        sync_dir(source_dir)?;
        return Ok(target);
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("cannot move {} into {}: {MAX_SUFFIX} names are taken", file.display(), dir.display()),
    ))
}

/// Move a directory: claim the name with an empty directory (`mkdir` fails
/// if it exists), then rename onto it (replacing only that empty placeholder).
/// `Ok(false)` when the name is taken.
fn place_dir(source: &Path, target: &Path) -> io::Result<bool> {
    match fs::create_dir(target) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e),
    }
    fs::rename(source, target).inspect_err(|_| {
        let _ = fs::remove_dir(target);
    })?;
    Ok(true)
}

/// Copy to a new name (never replacing one): a regular file with its contents
/// and modification time, fsynced; a symlink as a new link to the same
/// target. `Ok(false)` when the name is taken.
fn copy_new(source: &Path, meta: &fs::Metadata, target: &Path) -> io::Result<bool> {
    if meta.file_type().is_symlink() {
        let points_to = fs::read_link(source)?;
        return match std::os::unix::fs::symlink(points_to, target) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        };
    }
    if !meta.is_file() {
        return Err(io::Error::new(io::ErrorKind::Unsupported, "only regular files and symbolic links can be copied"));
    }
    let mut out = match OpenOptions::new().write(true).create_new(true).mode(READ_ONLY).open(target) {
        Ok(out) => out,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e),
    };
    let copied = (|| {
        // Never through a link planted since `meta` was taken, nor from another file.
        let mut input = OpenOptions::new().read(true).custom_flags(nix::libc::O_NOFOLLOW).open(source)?;
        let opened = input.metadata()?;
        if (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
            return Err(io::Error::other("it was replaced while it was being moved"));
        }
        io::copy(&mut input, &mut out)?;
        if let Ok(modified) = meta.modified() {
            out.set_modified(modified)?;
        }
        out.set_permissions(read_only(meta))?;
        out.sync_all()
    })();
    if let Err(e) = copied {
        // Only our own half-written copy is removed; the source is untouched.
        drop(out);
        let _ = fs::remove_file(target);
        return Err(e);
    }
    Ok(true)
}

/// The most an archived or quarantined file, or a reason file, allows:
/// owner and group read it, nobody writes it.
const READ_ONLY: u32 = 0o440;

/// The file's mode without any write bit or access for others, never
/// looser than it was; the owner keeps read access.
fn read_only(meta: &fs::Metadata) -> fs::Permissions {
    fs::Permissions::from_mode((meta.mode() & READ_ONLY) | 0o400)
}

/// fsync a directory, so the names in it survive a power cut.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| with_path(e, "cannot sync the folder", dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn write(path: &Path, text: &str) {
        fs::write(path, text).unwrap();
    }

    #[test]
    fn temporary_names() {
        for name in [".hidden", ".x.astm", "x.tmp", "x.TMP", "x.astm.part", "~lock.astm", "~"] {
            assert!(is_temporary_name(OsStr::new(name)), "{name} should be temporary");
        }
        for name in ["x.astm", "x.hl7", "tmp", "x.tmpl", "x.partial", "a~b", "x-tmp", "part"] {
            assert!(!is_temporary_name(OsStr::new(name)), "{name} should not be temporary");
        }
    }

    #[test]
    fn inspect_regular_file_and_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.astm");
        write(&path, "0123456789");
        match inspect(&path, 100) {
            Entry::File { size, .. } => assert_eq!(size, 10),
            other => panic!("expected a file, got {other:?}"),
        }
        assert_eq!(inspect(&dir.path().join("nope"), 100), Entry::Gone);
    }

    #[test]
    fn inspect_refuses_symlink_without_following_it() {
        let outside = tempfile::tempdir().unwrap();
        let inbox = tempfile::tempdir().unwrap();
        let target = outside.path().join("secret.astm");
        write(&target, "data");
        let link = inbox.path().join("link.astm");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        match inspect(&link, 1 << 20) {
            Entry::Refuse(reason) => {
                assert!(reason.contains("is a symbolic link; labfeed never follows links"), "{reason}");
                assert!(reason.contains("link.astm"), "{reason}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        // A dangling link is refused too, not reported as gone.
        fs::remove_file(&target).unwrap();
        assert!(matches!(inspect(&link, 1 << 20), Entry::Refuse(_)));
    }

    #[test]
    fn inspect_refuses_directory_and_fifo() {
        let inbox = tempfile::tempdir().unwrap();
        let sub = inbox.path().join("sub");
        fs::create_dir(&sub).unwrap();
        match inspect(&sub, 1 << 20) {
            Entry::Refuse(reason) => assert!(reason.contains("is a directory"), "{reason}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        let fifo = inbox.path().join("pipe.astm");
        let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(status.success());
        match inspect(&fifo, 1 << 20) {
            Entry::Refuse(reason) => assert!(reason.contains("named pipe"), "{reason}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn inspect_refuses_oversized_file() {
        let inbox = tempfile::tempdir().unwrap();
        let path = inbox.path().join("big.astm");
        write(&path, &"x".repeat(101));
        match inspect(&path, 100) {
            Entry::Refuse(reason) => {
                assert!(reason.contains("big.astm is 101 bytes; the limit is 100 bytes"), "{reason}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(matches!(inspect(&path, 101), Entry::File { size: 101, .. }));
    }

    #[test]
    fn oversize_reason_in_mib() {
        let reason = too_big(Path::new("/in/x.astm"), 70 * MIB + MIB / 5, 64 * MIB).unwrap();
        assert_eq!(reason, "x.astm is 70.2 MiB; the limit is watch.max_file_size_mib = 64");
        assert_eq!(too_big(Path::new("x"), 64 * MIB, 64 * MIB), None);
    }

    #[test]
    fn candidate_names() {
        assert_eq!(candidate_name(OsStr::new("r.astm"), 0), "r.astm");
        assert_eq!(candidate_name(OsStr::new("r.astm"), 2), "r-2.astm");
        assert_eq!(candidate_name(OsStr::new("r"), 1), "r-1");
        assert_eq!(candidate_name(OsStr::new("a.b.hl7"), 1), "a.b-1.hl7");
    }

    #[test]
    fn long_names_are_shortened_to_fit() {
        let long = format!("{}.astm", "a".repeat(250));
        let second = candidate_name(OsStr::new(&long), 12);
        assert_eq!(second.len(), NAME_MAX);
        assert_eq!(second, format!("{}-12.astm", "a".repeat(247)).as_str());
        // An extension too long to keep: the whole name is shortened.
        let dotted = format!("a.{}", "b".repeat(253));
        assert_eq!(candidate_name(OsStr::new(&dotted), 1).len(), NAME_MAX);
        // A multi-byte character is never cut in two.
        let wide = format!("{}.hl7", "é".repeat(125));
        let cut = candidate_name(OsStr::new(&wide), 1);
        assert!(cut.len() <= NAME_MAX && cut.to_str().is_some(), "{cut:?}");

        let reason = reason_path(&Path::new("/q").join(&long));
        let reason_name = reason.file_name().unwrap().to_str().unwrap();
        assert_eq!(reason_name.len(), NAME_MAX);
        assert!(reason_name.starts_with("aaaa") && reason_name.ends_with(".reason.txt"), "{reason_name}");
        let other = reason_path(&Path::new("/q").join(format!("{}.hl7", "a".repeat(250))));
        assert_ne!(reason, other, "the hash tells long names with one prefix apart");
        assert_eq!(reason_path(Path::new("/q/x.astm")), Path::new("/q/x.astm.reason.txt"));
    }

    #[test]
    fn a_255_byte_name_is_quarantined_with_a_reason_and_clashes_get_a_suffix() {
        let inbox = tempfile::tempdir().unwrap();
        let q = tempfile::tempdir().unwrap();
        let name = format!("{}.hl7", "n".repeat(251));
        let src = inbox.path().join(&name);
        for round in 0..3 {
            write(&src, &format!("garbage {round}"));
            let placed = quarantine(&src, q.path(), "not HL7").unwrap();
            assert!(!src.exists(), "nothing is left in the inbox");
            assert_eq!(fs::read_to_string(&placed).unwrap(), format!("garbage {round}"));
            let reason = fs::read_to_string(reason_path(&placed)).unwrap();
            assert!(reason.starts_with("not HL7\n"), "{reason}");
        }
        assert_eq!(fs::read_dir(q.path()).unwrap().count(), 6);
        fs::create_dir(q.path().join("archive")).unwrap();
        let day = jiff::civil::date(2026, 1, 2);
        for _ in 0..2 {
            write(&src, "data");
            archive(&src, &q.path().join("archive"), day).unwrap();
            assert!(!src.exists());
        }
    }

    #[test]
    fn archive_into_day_folders_with_suffixes_never_overwriting() {
        let inbox = tempfile::tempdir().unwrap();
        let archive_root = tempfile::tempdir().unwrap();
        let day = jiff::civil::date(2026, 3, 2);
        let mut placed = Vec::new();
        for content in ["first", "second", "third"] {
            let src = inbox.path().join("run.astm");
            write(&src, content);
            placed.push(archive(&src, archive_root.path(), day).unwrap());
            assert!(!src.exists(), "the inbox entry is removed");
        }
        let day_dir = archive_root.path().join("2026").join("03").join("02");
        assert_eq!(placed, vec![day_dir.join("run.astm"), day_dir.join("run-1.astm"), day_dir.join("run-2.astm")]);
        for (path, content) in placed.iter().zip(["first", "second", "third"]) {
            assert_eq!(fs::read_to_string(path).unwrap(), content);
            assert_eq!(fs::metadata(path).unwrap().mode() & 0o777, 0o440, "read-only");
        }
    }

    #[test]
    fn a_file_with_another_name_is_archived_as_a_copy_leaving_that_name_alone() {
        let root = tempfile::tempdir().unwrap();
        let outside = root.path().join("outside.astm");
        write(&outside, "shared");
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o644)).unwrap();
        let src = root.path().join("in.astm");
        fs::hard_link(&outside, &src).unwrap();
        fs::create_dir(root.path().join("archive")).unwrap();
        let placed = archive(&src, &root.path().join("archive"), jiff::civil::date(2026, 1, 2)).unwrap();
        assert!(!src.exists());
        assert_ne!(fs::metadata(&placed).unwrap().ino(), fs::metadata(&outside).unwrap().ino());
        assert_eq!(fs::metadata(&outside).unwrap().mode() & 0o777, 0o644, "the other name keeps its mode");
        assert_eq!(fs::metadata(&placed).unwrap().mode() & 0o222, 0, "read-only");
        assert_eq!(fs::read_to_string(&placed).unwrap(), "shared");
    }

    #[test]
    fn a_file_linked_into_the_archive_before_a_crash_is_archived_once() {
        let inbox = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let day_dir = root.path().join("2026/12/31");
        fs::create_dir_all(&day_dir).unwrap();
        write(&day_dir.join("x"), "older file of that name");
        let src = inbox.path().join("x");
        write(&src, "new");
        // The crash came after the link into the archive, before the unlink.
        fs::hard_link(&src, day_dir.join("x-1")).unwrap();
        let placed = archive(&src, root.path(), jiff::civil::date(2026, 12, 31)).unwrap();
        assert_eq!(placed, day_dir.join("x-1"));
        assert!(!src.exists());
        assert_eq!(fs::read_dir(&day_dir).unwrap().count(), 2, "no second copy");
        assert_eq!(fs::read_to_string(day_dir.join("x")).unwrap(), "older file of that name");
    }

    #[test]
    fn another_users_file_is_archived_as_our_own_copy() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: giving a file to another user needs root");
            return;
        }
        let inbox = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let src = inbox.path().join("theirs.astm");
        write(&src, "dropped by lab staff");
        fs::set_permissions(&src, fs::Permissions::from_mode(0o664)).unwrap();
        std::os::unix::fs::chown(&src, Some(65534), Some(65534)).unwrap();
        let dropped = fs::metadata(&src).unwrap().ino();
        let placed = archive(&src, root.path(), jiff::civil::date(2026, 1, 2)).unwrap();
        let meta = fs::metadata(&placed).unwrap();
        assert_ne!(meta.ino(), dropped, "a copy, not a link the owner could chmod back");
        assert_eq!(meta.uid(), 0);
        assert_eq!(meta.mode() & 0o222, 0, "read-only");
        assert_eq!(fs::read_to_string(&placed).unwrap(), "dropped by lab staff");
        assert!(!src.exists());
    }

    #[test]
    fn archive_skips_a_taken_suffix() {
        let inbox = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let day_dir = root.path().join("2026/12/31");
        fs::create_dir_all(&day_dir).unwrap();
        write(&day_dir.join("x"), "old");
        write(&day_dir.join("x-1"), "old-1");
        let src = inbox.path().join("x");
        write(&src, "new");
        let placed = archive(&src, root.path(), jiff::civil::date(2026, 12, 31)).unwrap();
        assert_eq!(placed, day_dir.join("x-2"));
        assert_eq!(fs::read_to_string(day_dir.join("x")).unwrap(), "old");
        assert_eq!(fs::read_to_string(day_dir.join("x-1")).unwrap(), "old-1");
        assert_eq!(fs::read_to_string(placed).unwrap(), "new");
    }

    #[test]
    fn archive_of_a_missing_file_fails_and_names_it() {
        let root = tempfile::tempdir().unwrap();
        let err = archive(&root.path().join("gone.astm"), root.path(), jiff::civil::date(2026, 1, 1)).unwrap_err();
        assert!(err.to_string().contains("gone.astm"), "{err}");
    }

    #[test]
    fn copy_fallback_places_a_fresh_copy_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a.astm");
        write(&src, "payload");
        let meta = fs::symlink_metadata(&src).unwrap();
        let taken = dir.path().join("taken.astm");
        write(&taken, "keep me");
        assert!(!copy_new(&src, &meta, &taken).unwrap());
        assert_eq!(fs::read_to_string(&taken).unwrap(), "keep me");
        let fresh = dir.path().join("fresh.astm");
        assert!(copy_new(&src, &meta, &fresh).unwrap());
        assert_eq!(fs::read_to_string(&fresh).unwrap(), "payload");
        assert_eq!(fs::metadata(&fresh).unwrap().modified().unwrap(), meta.modified().unwrap());
        assert_eq!(fs::metadata(&fresh).unwrap().mode() & 0o222, 0, "read-only");
    }

    #[test]
    fn quarantine_writes_reason_and_suffixes() {
        let inbox = tempfile::tempdir().unwrap();
        let q = tempfile::tempdir().unwrap();
        let src = inbox.path().join("bad.hl7");
        write(&src, "garbage");
        let placed = quarantine(&src, q.path(), "bad.hl7 is not HL7").unwrap();
        assert_eq!(placed, q.path().join("bad.hl7"));
        assert!(!src.exists());
        assert_eq!(fs::read_to_string(&placed).unwrap(), "garbage");
        let reason = fs::read_to_string(q.path().join("bad.hl7.reason.txt")).unwrap();
        assert!(reason.starts_with("bad.hl7 is not HL7\n"), "{reason}");
        assert!(reason.contains("Quarantined by labfeed at "), "{reason}");

        write(&src, "garbage again");
        let second = quarantine(&src, q.path(), "still not HL7").unwrap();
        assert_eq!(second, q.path().join("bad-1.hl7"));
        let reason = fs::read_to_string(q.path().join("bad-1.hl7.reason.txt")).unwrap();
        assert!(reason.starts_with("still not HL7"), "{reason}");
        assert_eq!(fs::read_to_string(&placed).unwrap(), "garbage", "the first one is untouched");
    }

    #[test]
    fn quarantine_skips_a_name_whose_reason_file_exists() {
        let inbox = tempfile::tempdir().unwrap();
        let q = tempfile::tempdir().unwrap();
        write(&q.path().join("x.astm.reason.txt"), "someone else's");
        let src = inbox.path().join("x.astm");
        write(&src, "data");
        let placed = quarantine(&src, q.path(), "why").unwrap();
        assert_eq!(placed, q.path().join("x-1.astm"));
        assert_eq!(fs::read_to_string(q.path().join("x.astm.reason.txt")).unwrap(), "someone else's");
    }

    #[test]
    fn quarantine_moves_the_symlink_itself_not_its_target() {
        let outside = tempfile::tempdir().unwrap();
        let inbox = tempfile::tempdir().unwrap();
        let q = tempfile::tempdir().unwrap();
        let target = outside.path().join("target.astm");
        write(&target, "precious");
        let link = inbox.path().join("link.astm");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let placed = quarantine(&link, q.path(), "a link").unwrap();
        assert!(fs::symlink_metadata(&link).is_err(), "the link left the inbox");
        assert!(fs::symlink_metadata(&placed).unwrap().file_type().is_symlink());
        assert_eq!(fs::read_link(&placed).unwrap(), target);
        assert_eq!(fs::read_to_string(&target).unwrap(), "precious");
        assert!(q.path().join("link.astm.reason.txt").exists());
    }

    #[test]
    fn quarantine_moves_a_directory_and_a_fifo() {
        let inbox = tempfile::tempdir().unwrap();
        let q = tempfile::tempdir().unwrap();
        let sub = inbox.path().join("sub");
        fs::create_dir(&sub).unwrap();
        write(&sub.join("inner.astm"), "inner");
        fs::create_dir(q.path().join("sub")).unwrap(); // a clash
        let placed = quarantine(&sub, q.path(), "a directory").unwrap();
        assert_eq!(placed, q.path().join("sub-1"));
        assert_eq!(fs::read_to_string(placed.join("inner.astm")).unwrap(), "inner");
        assert!(!sub.exists());

        let fifo = inbox.path().join("p");
        assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let placed = quarantine(&fifo, q.path(), "a fifo").unwrap();
        assert!(fs::symlink_metadata(&placed).unwrap().file_type().is_fifo());
        assert!(fs::symlink_metadata(&fifo).is_err());
    }

    fn watch_config(root: &Path) -> Watch {
        Watch {
            inbox: root.join("inbox"),
            archive: root.join("archive"),
            quarantine: root.join("quarantine"),
            mode: crate::study::config::WatchMode::Inotify,
            poll_interval_seconds: 2,
            settle_seconds: 1.0,
            max_file_size_mib: 64,
        }
    }

    #[test]
    fn ensure_dirs_creates_missing_dirs() {
        let root = tempfile::tempdir().unwrap();
        let watch = watch_config(root.path());
        fs::create_dir(&watch.archive).unwrap();
        ensure_dirs(&watch).unwrap();
        assert!(watch.inbox.is_dir() && watch.archive.is_dir() && watch.quarantine.is_dir());
        ensure_dirs(&watch).unwrap(); // idempotent
    }

    #[test]
    fn ensure_dirs_names_path_and_key_when_parent_is_missing() {
        let root = tempfile::tempdir().unwrap();
        let mut watch = watch_config(root.path());
        watch.quarantine = root.path().join("no/such/quarantine");
        let err = ensure_dirs(&watch).unwrap_err();
        assert!(err.contains("watch.quarantine"), "{err}");
        assert!(err.contains("no/such/quarantine"), "{err}");
        assert!(!root.path().join("no").exists());
    }

    #[test]
    fn ensure_dirs_refuses_a_file_in_the_way() {
        let root = tempfile::tempdir().unwrap();
        let watch = watch_config(root.path());
        write(&watch.inbox, "not a folder");
        let err = ensure_dirs(&watch).unwrap_err();
        assert!(err.contains("watch.inbox") && err.contains("not a directory"), "{err}");
    }
}
