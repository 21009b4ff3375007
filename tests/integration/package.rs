//! `labfeed generate` (completions, man pages) through the real binary, and
//! the Debian package from `packaging/build-deb`: what it installs must agree
//! with the unit, the example configuration and docs/install.md.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Run `cmd`; its standard output, or a panic naming it and its stderr.
fn run(cmd: &mut Command) -> Vec<u8> {
    let out: Output = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn labfeed(args: &[&str]) -> Vec<u8> {
    run(Command::new(env!("CARGO_BIN_EXE_labfeed")).args(args).env_remove("LABFEED_CONFIG"))
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("UTF-8 output")
}

/// The commands `labfeed --help` lists (clap's own `help` left out: the man
/// pages have no page for it).
fn commands() -> Vec<String> {
    let help = text(labfeed(&["--help"]));
    let list: Vec<String> = help
        .lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect();
    assert!(list.len() > 10 && list.iter().any(|c| c == "resolve"), "commands from --help: {list:?}");
    list
}

/// A man page's `.TH` line: its name, section and source.
fn title(page: &str) -> &str {
    page.lines().find(|l| l.starts_with(".TH ")).unwrap_or_else(|| panic!("no .TH line: {page}"))
}

#[test]
fn man_page_names_every_command_with_exit_codes_and_files() {
    let page = text(labfeed(&["generate", "man"]));
    assert_eq!(title(&page), format!(".TH labfeed 1  \"labfeed {}\" ", env!("CARGO_PKG_VERSION")));
    for command in commands() {
        // roff writes a hyphen as \-.
        let name = format!("labfeed\\-{}(1)", command.replace('-', "\\-"));
        assert!(page.contains(&name), "labfeed(1) does not list {name}");
    }
    for section in [".SH SYNOPSIS", ".SH OPTIONS", ".SH \"EXIT STATUS\"", ".SH ENVIRONMENT", ".SH FILES"] {
        assert!(page.contains(section), "labfeed(1) has no {section}");
    }
    assert!(page.contains("LABFEED_CONFIG") && page.contains("/etc/labfeed/labfeed.toml"));
}

#[test]
fn man_out_writes_a_page_per_command() {
    let dir = tempfile::tempdir().unwrap();
    labfeed(&["generate", "man", "--out", dir.path().to_str().unwrap()]);
    assert!(std::fs::read(dir.path().join("labfeed.1")).unwrap() == labfeed(&["generate", "man"]), "labfeed.1 differs");
    for command in commands() {
        let page = dir.path().join(format!("labfeed-{command}.1"));
        let expected = format!(".TH labfeed-{command} 1  \"labfeed {}\" ", env!("CARGO_PKG_VERSION"));
        assert_eq!(title(&read(&page)), expected, "{}", page.display());
    }
    for page in ["labfeed-report-auc.1", "labfeed-user-add.1", "labfeed-export-lb.1"] {
        assert!(dir.path().join(page).is_file(), "no {page}");
    }
}

#[test]
fn man_out_into_a_missing_directory_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let out = Command::new(env!("CARGO_BIN_EXE_labfeed"))
        .args(["generate", "man", "--out", missing.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(missing.to_str().unwrap()));
}

#[test]
fn bash_completion_parses_and_completes_commands() {
    let script = text(labfeed(&["generate", "completions", "bash"]));
    for command in commands() {
        assert!(script.contains(&command), "the bash completion does not know {command}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("labfeed.bash");
    std::fs::write(&file, &script).unwrap();
    run(Command::new("bash").arg("-n").arg(&file));
    // What bash does on `labfeed re<TAB>`.
    let probe = format!(
        "source '{}'; COMP_WORDS=(labfeed re); COMP_CWORD=1; COMP_LINE='labfeed re'; COMP_POINT=10; \
         _labfeed labfeed re labfeed; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file.display()
    );
    let offered = text(run(Command::new("bash").arg("-c").arg(probe)));
    assert_eq!(offered.lines().collect::<Vec<_>>(), ["report", "resolve"]);
}

#[test]
fn zsh_and_fish_completions_know_every_command() {
    let zsh = text(labfeed(&["generate", "completions", "zsh"]));
    assert!(zsh.starts_with("#compdef labfeed"), "{zsh}");
    let fish = text(labfeed(&["generate", "completions", "fish"]));
    assert!(fish.contains("complete -c labfeed"), "{fish}");
    for command in commands() {
        assert!(zsh.contains(&format!("'{command}:")), "zsh: no {command}");
        assert!(fish.contains(&format!("-a \"{command}\"")), "fish: no {command}");
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_labfeed")).args(["generate", "completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bash"), "the error lists the shells");
}

/// `dpkg-deb --contents`: path (without the leading `.`) → mode string.
fn contents(deb: &Path) -> BTreeMap<String, String> {
    text(run(Command::new("dpkg-deb").arg("--contents").arg(deb)))
        .lines()
        .filter_map(|l| {
            let mode = l.split_whitespace().next()?;
            let path = l.split_whitespace().nth(5)?.strip_prefix('.')?;
            Some((path.trim_end_matches('/').to_owned(), mode.to_owned()))
        })
        .collect()
}

/// `Key=value` lines of a unit file, every value of each key.
fn unit_keys(unit: &str) -> BTreeMap<String, Vec<String>> {
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in unit.lines().filter(|l| !l.starts_with('#') && !l.starts_with('[')) {
        if let Some((key, value)) = line.split_once('=') {
            keys.entry(key.to_owned()).or_default().push(value.to_owned());
        }
    }
    keys
}

fn one<'a>(keys: &'a BTreeMap<String, Vec<String>>, key: &str) -> &'a str {
    match keys.get(key).map(Vec::as_slice) {
        Some([value]) => value,
        other => panic!("the unit has {other:?} for {key}, expected one value"),
    }
}

fn gunzip(path: &Path) -> Vec<u8> {
    run(Command::new("gzip").arg("-dc").arg(path))
}

/// `<target>/debian/labfeed_<version>-1_<arch>.deb` as packaging/build-deb
/// leaves it, or `$LABFEED_DEB`.
fn built_deb() -> PathBuf {
    if let Some(deb) = std::env::var_os("LABFEED_DEB") {
        return PathBuf::from(deb);
    }
    let arch = text(run(Command::new("dpkg").arg("--print-architecture")));
    let target = Path::new(env!("CARGO_BIN_EXE_labfeed")).parent().and_then(Path::parent).expect("target directory");
    let deb = target.join("debian").join(format!("labfeed_{}-1_{}.deb", env!("CARGO_PKG_VERSION"), arch.trim()));
    assert!(deb.is_file(), "no package at {}: build it with packaging/build-deb (needs cargo-deb)", deb.display());
    deb
}

#[test]
#[ignore = "needs the .deb of packaging/build-deb (cargo-deb), dpkg-deb and root; .ci/run runs it"]
fn package_installs_what_the_unit_the_config_and_the_docs_name() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "run as root: the test creates the labfeed user and its folders (owned by it) in a throwaway root"
    );
    let deb = built_deb();
    let version = env!("CARGO_PKG_VERSION");

    // Control data: name, version, dependencies, the conffile, maintainer scripts that parse.
    let field = |name: &str| text(run(Command::new("dpkg-deb").arg("--field").arg(&deb).arg(name))).trim().to_owned();
    assert_eq!(field("Package"), "labfeed");
    assert_eq!(field("Version"), format!("{version}-1"));
    assert!(field("Depends").contains("systemd (>= 252)"), "Depends: {}", field("Depends"));
    let control = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb").arg("--control").arg(&deb).arg(control.path()));
    assert_eq!(read(&control.path().join("conffiles")), "/etc/labfeed/labfeed.toml\n");
    for script in ["postinst", "prerm", "postrm"] {
        let path = control.path().join(script);
        run(Command::new("sh").arg("-n").arg(&path));
        assert!(!read(&path).contains("#DEBHELPER#"), "{script} still has the #DEBHELPER# token");
    }
    let postinst = read(&control.path().join("postinst"));
    for needed in [
        "systemd-sysusers ${DPKG_ROOT:+--root=\"$DPKG_ROOT\"} labfeed.conf",
        "systemd-tmpfiles --create labfeed.conf",
        "dpkg-statoverride --update --add root labfeed 0640 /etc/labfeed/labfeed.toml",
        "dpkg-statoverride --update --add root labfeed 0750 /etc/labfeed",
        "deb-systemd-invoke try-restart labfeed.service",
    ] {
        assert!(postinst.contains(needed), "the postinst does not run {needed}");
    }
    // Installing must not start a service whose configuration is still the example.
    assert!(!postinst.contains("deb-systemd-invoke start") && !postinst.contains("_dh_action=start"));

    // The file list, with modes.
    let files = contents(&deb);
    let unit_path = "/usr/lib/systemd/system/labfeed.service";
    for (path, mode) in [
        ("/usr/bin/labfeed", "-rwxr-xr-x"),
        (unit_path, "-rw-r--r--"),
        ("/usr/lib/systemd/system/labfeed-web.service", "-rw-r--r--"),
        ("/usr/lib/sysusers.d/labfeed.conf", "-rw-r--r--"),
        ("/usr/lib/tmpfiles.d/labfeed.conf", "-rw-r--r--"),
        ("/etc/labfeed/labfeed.toml", "-rw-r--r--"),
        ("/usr/share/doc/labfeed/examples/labfeed.toml", "-rw-r--r--"),
        ("/usr/share/doc/labfeed/install.md", "-rw-r--r--"),
        ("/usr/share/doc/labfeed/copyright", "-rw-r--r--"),
        ("/usr/share/man/man1/labfeed.1.gz", "-rw-r--r--"),
        ("/usr/share/bash-completion/completions/labfeed", "-rw-r--r--"),
        ("/usr/share/zsh/vendor-completions/_labfeed", "-rw-r--r--"),
        ("/usr/share/fish/vendor_completions.d/labfeed.fish", "-rw-r--r--"),
    ] {
        assert_eq!(files.get(path).map(String::as_str), Some(mode), "{path} in the package");
    }
    for command in commands() {
        let page = format!("/usr/share/man/man1/labfeed-{command}.1.gz");
        assert!(files.contains_key(&page), "no {page} in the package");
    }

    // Unpacked into a throwaway root.
    let root_dir = tempfile::tempdir().unwrap();
    let root = root_dir.path();
    run(Command::new("dpkg-deb").arg("--extract").arg(&deb).arg(root));
    let at = |path: &str| root.join(path.trim_start_matches('/'));

    // The unit as in the repository, its program the packaged one, its config the shipped one.
    let unit = read(&at(unit_path));
    assert!(unit == read(&repo("config/labfeed.service")), "the packaged unit differs from config/labfeed.service");
    let keys = unit_keys(&unit);
    let exec_start: Vec<&str> = one(&keys, "ExecStart").split_whitespace().collect();
    let program = exec_start[0];
    assert_eq!(exec_start[1..], ["--config", "/etc/labfeed/labfeed.toml", "run"]);
    assert!(files.contains_key(program), "ExecStart runs {program}, which the package does not install");
    let mode = std::fs::metadata(at(program)).unwrap().permissions().mode();
    assert_eq!(mode & 0o111, 0o111, "{program} is not executable");
    let packaged = |args: &[&str]| run(Command::new(at(program)).args(args).env_remove("LABFEED_CONFIG"));
    assert_eq!(text(packaged(&["--version"])), format!("labfeed {version}\n"));
    for (packaged, source) in [
        ("/etc/labfeed/labfeed.toml", "config/labfeed.example.toml"),
        ("/usr/share/doc/labfeed/examples/labfeed.toml", "config/labfeed.example.toml"),
        ("/usr/share/doc/labfeed/install.md", "docs/install.md"),
        ("/usr/lib/sysusers.d/labfeed.conf", "packaging/sysusers.d/labfeed.conf"),
        ("/usr/lib/tmpfiles.d/labfeed.conf", "packaging/tmpfiles.d/labfeed.conf"),
    ] {
        assert!(read(&at(packaged)) == read(&repo(source)), "{packaged} differs from {source}: a stale package?");
    }
    // The console's unit beside it: same program, user and config, `serve`.
    let web = read(&at("/usr/lib/systemd/system/labfeed-web.service"));
    assert!(web == read(&repo("config/labfeed-web.service")), "the packaged console unit differs from config/");
    let web_keys = unit_keys(&web);
    let web_start: Vec<&str> = one(&web_keys, "ExecStart").split_whitespace().collect();
    assert_eq!(web_start, [program, "--config", "/etc/labfeed/labfeed.toml", "serve"]);
    assert_eq!(one(&web_keys, "User"), one(&keys, "User"));
    assert!(postinst.contains("labfeed-web.service"), "the postinst does not know the console's unit");
    assert!(!postinst.contains("deb-systemd-invoke start labfeed-web"), "installing starts no console");
    // .ci/run checks the unit with systemd-analyze by rewriting this very ExecStart.
    assert!(
        read(&repo(".ci/run")).contains(&format!("s|^ExecStart={program} |")),
        ".ci/run rewrites another ExecStart"
    );

    // The generated files are the ones this source makes (not a stale package).
    let man_page = gunzip(&at("/usr/share/man/man1/labfeed.1.gz"));
    assert!(man_page == labfeed(&["generate", "man"]), "the packaged labfeed.1 is not this source's");
    assert!(man_page == packaged(&["generate", "man"]), "the packaged labfeed.1 is not the packaged binary's");
    for (path, shell) in [
        ("/usr/share/bash-completion/completions/labfeed", "bash"),
        ("/usr/share/zsh/vendor-completions/_labfeed", "zsh"),
        ("/usr/share/fish/vendor_completions.d/labfeed.fish", "fish"),
    ] {
        assert!(std::fs::read(at(path)).unwrap() == labfeed(&["generate", "completions", shell]), "{path} is stale");
    }

    // The user: the unit's User= and Group=, made by systemd-sysusers as the postinst does.
    let user = one(&keys, "User");
    assert_eq!(one(&keys, "Group"), user);
    std::fs::create_dir_all(at("/etc")).unwrap();
    run(Command::new("systemd-sysusers").arg(format!("--root={}", root.display())).arg("labfeed.conf"));
    let passwd = read(&at("/etc/passwd"));
    let entry: Vec<&str> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&user))
        .unwrap_or_else(|| panic!("systemd-sysusers made no user {user}: {passwd}"));
    assert_eq!(entry[5..], ["/var/lib/labfeed", "/usr/sbin/nologin"]);
    let uid: u32 = entry[2].parse().unwrap();
    let gid: u32 = entry[3].parse().unwrap();
    assert!(uid < 1000, "{user} is not a system user (uid {uid})");

    // The folders: made by systemd-tmpfiles as the postinst does, owned by the user.
    run(Command::new("systemd-tmpfiles").arg("--create").arg(format!("--root={}", root.display())).arg("labfeed.conf"));
    let state = format!("/var/lib/{}", one(&keys, "StateDirectory"));
    assert_eq!(one(&keys, "ReadWritePaths"), state);
    assert_eq!(one(&keys, "StateDirectoryMode"), "0750");
    let config: toml::Table = read(&at("/etc/labfeed/labfeed.toml")).parse().unwrap();
    let setting = |section: &str, key: &str| {
        config[section][key].as_str().unwrap_or_else(|| panic!("[{section}] {key} is not a path")).to_owned()
    };
    let database = setting("storage", "database");
    let install_md = read(&repo("docs/install.md"));
    let expected = [
        (Path::new(&database).parent().unwrap().to_str().unwrap().to_owned(), 0o750),
        (setting("watch", "inbox"), 0o2770),
        (setting("watch", "archive"), 0o750),
        (setting("watch", "quarantine"), 0o750),
    ];
    assert_eq!(expected[0].0, state, "the database is not in the unit's StateDirectory");
    for (dir, mode) in &expected {
        assert!(dir.starts_with(&state), "{dir} (config) is outside the unit's ReadWritePaths {state}");
        let meta = std::fs::metadata(at(dir)).unwrap_or_else(|e| panic!("systemd-tmpfiles did not make {dir}: {e}"));
        assert!(meta.is_dir(), "{dir}");
        assert_eq!(meta.permissions().mode() & 0o7777, *mode, "{dir}: mode {:o}", meta.permissions().mode());
        use std::os::unix::fs::MetadataExt;
        assert_eq!((meta.uid(), meta.gid()), (uid, gid), "{dir} is not owned by {user}");
        // docs/install.md's table of what the package creates says the same.
        let row = format!("| `{dir}` | `{user}:{user}` | `{mode:04o}` |");
        assert!(install_md.contains(&row), "docs/install.md has no row {row}");
    }
    for row in [format!("| program | `{program}` |"), format!("| unit | `{unit_path}` |")] {
        assert!(install_md.contains(&row), "docs/install.md has no row {row}");
    }
}
