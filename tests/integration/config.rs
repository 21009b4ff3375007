//! `labfeed check-config` through the real binary: the config path rules
//! (SPEC §1) and messages that name the file, line and key.

use std::path::Path;
use std::process::{Command, Output};

fn labfeed(args: &[&str], env_config: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_labfeed"));
    cmd.args(args).env_remove("LABFEED_CONFIG");
    if let Some(path) = env_config {
        cmd.env("LABFEED_CONFIG", path);
    }
    cmd.output().expect("run the labfeed binary")
}

fn example() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/labfeed.example.toml").display().to_string()
}

/// The example config with its `/var/lib/labfeed` directories under `dir`, plus `edits`.
fn example_in(dir: &Path, edits: &[(&str, &str)]) -> (std::path::PathBuf, String) {
    let mut text = std::fs::read_to_string(example()).unwrap().replace("/var/lib/labfeed", dir.to_str().unwrap());
    for (from, to) in edits {
        assert!(text.contains(from), "the example has no {from:?}");
        text = text.replace(from, to);
    }
    let path = dir.join("labfeed.toml");
    std::fs::write(&path, &text).unwrap();
    (path, text)
}

fn line_of(text: &str, start: &str) -> usize {
    text.lines().position(|l| l.starts_with(start)).unwrap() + 1
}

#[test]
fn the_example_config_checks_out_and_is_summarised() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = example_in(dir.path(), &[]);
    let out = labfeed(&["--config", path.to_str().unwrap(), "check-config"], None);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    for expected in ["OK", "NCT02057211", "c_peptide in nmol/L", "cobas-e411", "15 (±2)", "V0 Baseline (baseline)"] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn spec_keys_this_version_does_not_use_are_accepted_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let (path, text) = example_in(
        dir.path(),
        &[
            ("protocol = \"mllp\"", "protocol = \"mllp\"\nallow = [\"127.0.0.1\"]\nidle_seconds = 60"),
            ("[watch]", "[web]\naddress = \"127.0.0.1:8080\"\n\n[watch]"),
        ],
    );
    let out = labfeed(&["--config", path.to_str().unwrap(), "check-config"], None);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for (key, start) in [("listen[0].allow", "allow ="), ("listen[0].idle_seconds", "idle_seconds"), ("web", "[web]")] {
        let note = format!("note: {key} (line {}) has no effect in this version of labfeed", line_of(&text, start));
        assert!(stdout.contains(&note), "missing {note:?} in:\n{stdout}");
    }
    assert!(!stdout.contains("keep_comments"), "{stdout}");
}

#[test]
fn problems_name_file_line_and_key_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(example()).unwrap().replace("baud = 9600", "baud = 9600\nbaud_rate = 9600");
    let path = dir.path().join("labfeed.toml");
    std::fs::write(&path, &text).unwrap();
    let line = text.lines().position(|l| l.starts_with("baud_rate")).unwrap() + 1;
    // $LABFEED_CONFIG is used when --config is not given.
    let out = labfeed(&["check-config"], Some(path.to_str().unwrap()));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:{line}: serial[0].baud_rate: unknown key; the keys here are", path.display())),
        "{err}"
    );
}

#[test]
fn two_misspelt_keys_and_two_type_errors_are_all_reported_with_lines_in_plain_words() {
    let dir = tempfile::tempdir().unwrap();
    let (path, text) = example_in(
        dir.path(),
        &[
            ("window_minutes = 5", "window_minuts = 5"),
            ("settle_seconds = 1.0", "setle_seconds = 1.0"),
            ("baud = 9600", "baud = \"9600\""),
            ("decimal_comma = false", "decimal_comma = 0"),
        ],
    );
    let file = path.display().to_string();
    let expected = [
        format!(
            "{file}:{}: watch.setle_seconds: unknown key; did you mean `settle_seconds`?",
            line_of(&text, "setle_")
        ),
        format!(
            "{file}:{}: instruments[0].decimal_comma: must be true or false, not the whole number 0",
            line_of(&text, "decimal_comma = 0")
        ),
        format!("{file}:{}: serial[0].baud: must be a whole number, not text (\"9600\")", line_of(&text, "baud =")),
        format!(
            "{file}:{}: mmtt.window_minuts: unknown key; did you mean `window_minutes`?",
            line_of(&text, "window_")
        ),
        format!("{file}: 4 problems found"),
    ];
    let out = labfeed(&["--config", &file, "check-config"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().collect::<Vec<_>>(), expected, "{err}");
    assert!(!err.contains("u32") && !err.contains("bool"), "no Rust type names: {err}");

    // Any command that loads the config refuses it the same way, with every problem.
    let out = labfeed(&["--config", &file, "export", "results"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for line in &expected[..4] {
        assert!(err.contains(line.as_str()), "missing {line:?} in:\n{err}");
    }
}

#[test]
fn missing_directories_are_reported_with_their_keys_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().display().to_string();
    let (path, text) = example_in(
        dir.path(),
        &[("labfeed.db\"", "no/such/labfeed.db\""), (&format!("{base}/inbox"), &format!("{base}/gone/inbox"))],
    );
    let out = labfeed(&["--config", path.to_str().unwrap(), "check-config"], None);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = path.display();
    let expected = [
        format!(
            "{file}:{}: storage.database: the database directory {base}/no/such does not exist, nor does its parent {base}/no",
            line_of(&text, "database =")
        ),
        format!(
            "{file}:{}: watch.inbox: the inbox {base}/gone/inbox does not exist, nor does its parent {base}/gone",
            line_of(&text, "inbox =")
        ),
        format!("{file}: 2 problems found"),
    ];
    assert_eq!(err.lines().collect::<Vec<_>>(), expected, "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("OK"));
    // Archive and quarantine do not exist either, but their parent does: `run` creates them.
    assert!(!dir.path().join("archive").exists());
}

#[test]
fn a_directory_the_user_cannot_write_is_reported() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::create_dir(locked.join("quarantine")).unwrap();
    let base = dir.path().display().to_string();
    let (path, _) = example_in(
        dir.path(),
        &[
            (&format!("{base}/archive"), &format!("{base}/locked/archive")),
            (&format!("{base}/quarantine"), &format!("{base}/locked/quarantine")),
        ],
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_labfeed"));
    cmd.args(["--config", path.to_str().unwrap(), "check-config"]).env_remove("LABFEED_CONFIG");
    // root may write anywhere (access(2) rightly says so), so as root the
    // check runs as `nobody`, who owns the study directory but not `locked`.
    let user = if nix::unistd::geteuid().is_root() {
        let nobody = nix::unistd::User::from_name("nobody").unwrap().expect("a nobody account");
        nix::unistd::chown(dir.path(), Some(nobody.uid), Some(nobody.gid)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        cmd.uid(nobody.uid.as_raw()).gid(nobody.gid.as_raw());
        nobody.name
    } else {
        nix::unistd::User::from_uid(nix::unistd::getuid()).unwrap().map_or(String::new(), |u| u.name)
    };
    for d in [locked.join("quarantine"), locked.clone()] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    let out = cmd.output().unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let file = path.display();
    assert_eq!(
        err.lines().map(|l| l.split_once(": ").map_or(l, |(_, rest)| rest)).collect::<Vec<_>>(),
        [
            format!(
                "watch.archive: the archive {base}/locked/archive does not exist, and its parent {base}/locked is not writable by user {user}, so it cannot be created"
            ),
            format!(
                "watch.quarantine: the quarantine directory {base}/locked/quarantine is not writable by user {user}"
            ),
            "2 problems found".to_owned(),
        ],
        "{err}"
    );
    assert!(err.starts_with(&format!("{file}:")), "{err}");
}
#[test]
fn a_poll_interval_too_large_for_a_timer_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(example())
        .unwrap()
        .replace("poll_interval_seconds = 2", "poll_interval_seconds = 18446744073709551615");
    let path = dir.path().join("labfeed.toml");
    std::fs::write(&path, &text).unwrap();
    let out = labfeed(&["--config", path.to_str().unwrap(), "check-config"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("watch.poll_interval_seconds: must be between 1 and 86400 seconds"), "{err}");
}

#[test]
fn a_missing_config_file_is_a_usage_error_naming_the_path() {
    let out = labfeed(&["--config", "/nonexistent/labfeed.toml", "check-config"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/labfeed.toml"));
}
