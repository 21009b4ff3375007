//! `labfeed check-config` through the real binary: the config path rules
//! (SPEC §1) and messages that name the file, line and key.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

use super::support::{TempStudy as Study, text};

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
fn every_spec_key_is_in_effect_and_the_console_is_summarised() {
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
    assert!(stdout.contains("web console http://127.0.0.1:8080/ (labfeed serve)"), "{stdout}");
    assert!(!stdout.contains("has no effect"), "{stdout}");
    assert!(line_of(&text, "[web]") > 1);

    // A console on the network without TLS is refused, naming the key.
    let (path, _) = example_in(dir.path(), &[("[watch]", "[web]\naddress = \"0.0.0.0:8443\"\n\n[watch]")]);
    let out = labfeed(&["--config", path.to_str().unwrap(), "check-config"], None);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stdout));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("web.address") && said.contains("needs TLS"), "{said}");
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

/// SQLite writes the `-wal` and `-shm` beside the database too: a read-only
/// command run as root leaves them root-owned, and then `run` as the
/// service user cannot write ("attempt to write a readonly database") even
/// though the database file itself is the user's.
#[test]
fn a_database_wal_the_user_cannot_write_is_reported_like_the_database() {
    if !nix::unistd::geteuid().is_root() {
        return; // the scenario needs two users
    }
    let nobody = nix::unistd::User::from_name("nobody").unwrap().expect("a nobody account");
    let study = Study::new(&[]);
    let participants = study.file("participants.csv", "participant,site\nU01,UPP\n");
    let out = study.run(&["import", "participants", participants.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = study.run(&["export", "results"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let wal = study.lib("labfeed.db-wal");
    assert!(wal.exists(), "the read-only export left {} behind", wal.display());

    // The admin gives the service user the study directory and the database, not its -wal.
    std::fs::set_permissions(study.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let lib = study.lib("");
    let inbox = study.lib("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let upload = inbox.join("e411.astm");
    std::fs::write(&upload, "H|\\^&|||cobas-e411\rL|1|N\r").unwrap();
    for p in [&lib, &study.lib("labfeed.db"), &inbox, &upload] {
        nix::unistd::chown(p, Some(nobody.uid), Some(nobody.gid)).unwrap();
    }
    let as_nobody = |args: &[&str]| {
        let mut cmd = study.command(args);
        cmd.uid(nobody.uid.as_raw()).gid(nobody.gid.as_raw());
        cmd.output().unwrap()
    };
    let check = as_nobody(&["check-config"]);
    let run = as_nobody(&["run", "--once"]);
    assert_eq!(run.status.code(), Some(2), "run as nobody cannot write here: {}", text(&run));
    let database = study.lib("labfeed.db").display().to_string();
    assert!(text(&run).contains(&database) && text(&run).contains("cannot be written"), "{}", text(&run));
    assert_eq!(
        check.status.code(),
        Some(2),
        "check-config as nobody must find what stops `run`, but said:\n{}\nwhile run said:\n{}",
        text(&check),
        text(&run)
    );
    let err = String::from_utf8_lossy(&check.stderr);
    let said =
        format!("storage.database: SQLite's file {} beside the database is not writable by user nobody", wal.display());
    assert!(err.contains(&said), "missing {said:?} in:\n{err}");
    assert!(err.contains(&format!("chown nobody: {database}*")), "the fix is named:\n{err}");

    // Once the admin follows the advice, both agree.
    for p in [study.lib("labfeed.db-wal"), study.lib("labfeed.db-shm")] {
        if p.exists() {
            nix::unistd::chown(&p, Some(nobody.uid), Some(nobody.gid)).unwrap();
        }
    }
    let check = as_nobody(&["check-config"]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));
}

/// SPEC §1: "the message names the file, line and key", also for a value
/// inside an inline table, not the line of the table's header.
#[test]
fn a_bad_value_in_an_inline_table_is_named_at_its_own_line() {
    let study = Study::new(&[
        (
            r#"tests = { "CPEP" = "c_peptide", "GLUC" = "glucose" }"#,
            r#"tests = { "CPEP" = "c_peptid", "GLUC" = "glucose" }"#,
        ),
        (r#"windows = { "15" = 2, "30" = 3 }"#, r#"windows = { "15" = 2, "45" = 3 }"#),
    ]);
    let config = std::fs::read_to_string(&study.config).unwrap();
    let out = study.run(&["check-config"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let file = study.config.display();
    let tests_line = line_of(&config, r#"tests = { "CPEP""#);
    let windows_line = line_of(&config, "windows =");
    assert_eq!(
        err.lines().collect::<Vec<_>>(),
        [
            format!(
                "{file}:{tests_line}: instruments[0].tests.CPEP: analyte \"c_peptid\" is not defined; defined analytes: c_peptide, glucose"
            ),
            format!(
                "{file}:{windows_line}: mmtt.windows.45: \"45\" is not one of mmtt.timepoints [-10, 0, 15, 30, 60, 90, 120]"
            ),
            format!("{file}: 2 problems found"),
        ],
        "{err}"
    );
}

/// "In plain words": a directory under a file, or one the user may not look
/// into, is explained, never quoted as Rust's "Not a directory (os error 20)".
#[test]
fn an_unreachable_directory_is_explained_in_plain_words() {
    let study = Study::new(&[]);
    let file = study.file("afile", "x");
    let quarantine = study.lib("quarantine").display().to_string();
    let config =
        std::fs::read_to_string(&study.config).unwrap().replace(&quarantine, &format!("{}/quarantine", file.display()));
    std::fs::write(&study.config, config).unwrap();
    let out = study.run(&["check-config"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let said = format!(
        "watch.quarantine: the quarantine directory {}/quarantine cannot be reached: {} is a file, not a directory",
        file.display(),
        file.display()
    );
    assert!(err.contains(&said), "missing {said:?} in:\n{err}");
    assert!(!err.contains("os error"), "not plain words:\n{err}");

    if !nix::unistd::geteuid().is_root() {
        return;
    }
    // A parent the user may not search: it exists, so it is not "missing".
    let nobody = nix::unistd::User::from_name("nobody").unwrap().expect("a nobody account");
    let study = Study::new(&[]);
    std::fs::set_permissions(study.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let lib = study.lib("");
    std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut cmd = study.command(&["check-config"]);
    cmd.uid(nobody.uid.as_raw()).gid(nobody.gid.as_raw());
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let lib = lib.display().to_string();
    let lib = lib.trim_end_matches('/');
    let said =
        format!("watch.inbox: the inbox {lib}/inbox cannot be reached by user nobody: permission denied on {lib}");
    assert!(err.contains(&said), "missing {said:?} in:\n{err}");
    assert!(!err.contains("os error") && !err.contains("does not exist"), "{err}");
}

/// A sysadmin who names the folder instead of the file
/// (`database = "/var/lib/labfeed"`) is told so before every command fails
/// with SQLite's "unable to open database file".
#[test]
fn a_database_path_that_is_a_directory_is_refused() {
    let study = Study::new(&[]);
    let lib = study.lib("");
    let lib = lib.to_str().unwrap().trim_end_matches('/');
    let config = std::fs::read_to_string(&study.config).unwrap().replace(&format!("{lib}/labfeed.db"), lib);
    std::fs::write(&study.config, config).unwrap();
    let report = study.run(&["report", "mismatches"]);
    assert_ne!(report.status.code(), Some(0), "{}", text(&report));
    let out = study.run(&["check-config"]);
    assert_eq!(out.status.code(), Some(2), "the database is a directory, yet:\n{}", text(&out));
    let said = format!("storage.database: {lib} is a directory; name the database file in it, e.g. {lib}/labfeed.db");
    assert!(text(&out).contains(&said), "missing {said:?} in:\n{}", text(&out));
}

/// A quarantine inside the inbox is named by its own key.
#[test]
fn a_quarantine_inside_the_inbox_is_named_by_its_key() {
    let study = Study::new(&[]);
    let inbox = study.lib("inbox").display().to_string();
    let quarantine = study.lib("quarantine").display().to_string();
    let config = std::fs::read_to_string(&study.config).unwrap().replace(&quarantine, &format!("{inbox}/quarantine"));
    std::fs::write(&study.config, &config).unwrap();
    let out = study.run(&["check-config"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let said = format!(
        "{}:{}: watch.quarantine: must not be inside the inbox (watch.inbox = \"{inbox}\")",
        study.config.display(),
        line_of(&config, "quarantine =")
    );
    assert!(err.contains(&said), "missing {said:?} in:\n{err}");
    assert!(!err.contains("watch.archive"), "{err}");
}

#[test]
fn a_listener_off_loopback_needs_allow_and_a_bad_block_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (path, text) = example_in(dir.path(), &[("127.0.0.1:5001", "0.0.0.0:5001")]);
    let out = labfeed(&["--config", path.to_str().unwrap(), "check-config"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:{}: listen[0].allow: is required", path.display(), line_of(&text, "[[listen]]"))),
        "{err}"
    );
    let (path, text) = example_in(
        dir.path(),
        &[
            ("127.0.0.1:5001", "0.0.0.0:5001"),
            ("protocol = \"mllp\"", "protocol = \"mllp\"\nallow = [\"192.168.10.0/33\"]"),
        ],
    );
    let out = labfeed(&["--config", path.to_str().unwrap(), "check-config"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:{}: listen[0].allow[0]: \"192.168.10.0/33\"",
            path.display(),
            line_of(&text, "allow =")
        )),
        "{err}"
    );
    assert!(!err.contains("is required"), "{err}");
}
