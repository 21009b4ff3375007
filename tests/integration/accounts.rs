//! Accounts and logins (SPEC §8) through the real binary: the first admin,
//! roles, password rules, refused and counted logins, disabled accounts,
//! and no password anywhere in the database files.

use std::process::Output;

use super::support::{ADMIN, DATA_MANAGER, TempStudy, text};

fn study() -> TempStudy {
    TempStudy::new(&[])
}

/// `labfeed --user USER --password-stdin ARGS` with `input` on stdin.
fn as_user(t: &TempStudy, user: &str, args: &[&str], input: &str) -> Output {
    t.run_with_stdin(&[&["--user", user, "--password-stdin"][..], args].concat(), input)
}

fn admin(t: &TempStudy, args: &[&str], input: &str) -> Output {
    as_user(t, ADMIN.0, args, &format!("{}\n{input}", ADMIN.1))
}

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

fn audit_count(t: &TempStudy, action: &str) -> i64 {
    let conn = rusqlite::Connection::open(t.lib("labfeed.db")).unwrap();
    conn.query_row("SELECT count(*) FROM audit_log WHERE action = ?1", [action], |r| r.get(0)).unwrap()
}

#[test]
fn the_first_admin_needs_no_login_and_every_later_user_command_an_admins() {
    let t = study();
    // No admin yet: the first account must be one.
    let out =
        t.run_with_stdin(&["user", "add", "lab.lars", "--role", "lab", "--new-password-stdin"], "lab-password-01\n");
    assert_eq!(code(&out), Some(2), "{}", text(&out));
    assert!(text(&out).contains("first account must be an admin"), "{}", text(&out));

    let out = t.run_with_stdin(
        &["user", "add", ADMIN.0, "--role", "admin", "--full-name", "Ada Admin", "--new-password-stdin"],
        &format!("{}\n", ADMIN.1),
    );
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert!(text(&out).contains("account admin.ada (Ada Admin, admin) added"), "{}", text(&out));

    // Now a second admin needs a login, and an admin's.
    let out =
        t.run_with_stdin(&["user", "add", "eve", "--role", "admin", "--new-password-stdin"], "eve-password-0001\n");
    assert_eq!(code(&out), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--user"), "{}", text(&out));
    let out = admin(
        &t,
        &["user", "add", DATA_MANAGER.0, "--role", "data-manager", "--new-password-stdin"],
        "dm-password-0001\n",
    );
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    let out = as_user(
        &t,
        DATA_MANAGER.0,
        &["user", "add", "eve", "--role", "admin", "--new-password-stdin"],
        &format!("{}\neve-password-0001\n", DATA_MANAGER.1),
    );
    assert_eq!(code(&out), Some(2), "{}", text(&out));
    assert!(text(&out).contains("dm.anna is a data-manager account; user add needs the admin role"), "{}", text(&out));

    let out = admin(&t, &["user", "list"], "");
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    let listed = text(&out);
    assert!(listed.contains("admin.ada\tAda Admin\tadmin\tenabled"), "{listed}");
    assert!(listed.contains("dm.anna\tdm.anna\tdata-manager\tenabled"), "{listed}");
    assert!(!listed.contains("eve") && !listed.contains("argon2"), "{listed}");
}

#[test]
fn passwords_follow_the_rules_and_are_never_stored_in_clear() {
    let t = study();
    t.create_accounts();
    for (password, why) in [("short-pw", "at least 12 characters"), ("lab.lars.1234", "not be the account name")] {
        let out = admin(
            &t,
            &["user", "add", "lab.lars.1234", "--role", "lab", "--new-password-stdin"],
            &format!("{password}\n"),
        );
        assert_eq!(code(&out), Some(2), "{}", text(&out));
        assert!(text(&out).contains(why), "{}", text(&out));
    }
    let out = admin(&t, &["user", "add", "Dr Lars", "--role", "lab", "--new-password-stdin"], "lab-password-0001\n");
    assert_eq!(code(&out), Some(2), "{}", text(&out));
    assert!(text(&out).contains("not an account name"), "{}", text(&out));
    let out = admin(&t, &["user", "add", "lars", "--role", "chief", "--new-password-stdin"], "lab-password-0001\n");
    assert_eq!(code(&out), Some(2), "{}", text(&out));
    assert!(text(&out).contains("viewer, lab, data-manager or admin"), "{}", text(&out));
    let out = admin(&t, &["user", "add", "lars", "--role", "lab", "--new-password-stdin"], "a lab password!\n");
    assert_eq!(code(&out), Some(0), "{}", text(&out));

    // Neither the database nor its WAL holds a password in clear.
    for file in ["labfeed.db", "labfeed.db-wal"] {
        let Ok(bytes) = std::fs::read(t.lib(file)) else { continue };
        for secret in [ADMIN.1, DATA_MANAGER.1, "a lab password!"] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{file} holds the password {secret:?} in clear"
            );
        }
    }
    let conn = rusqlite::Connection::open(t.lib("labfeed.db")).unwrap();
    let hash: String =
        conn.query_row("SELECT password_hash FROM account WHERE name = 'lars'", [], |r| r.get(0)).unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let audited: String = conn
        .query_row("SELECT detail FROM audit_log WHERE action = 'user add' AND entity_id = 'lars'", [], |r| r.get(0))
        .unwrap();
    assert!(!audited.contains("argon2"), "the audit keeps a digest of the hash, not the hash: {audited}");
}

#[test]
fn five_failed_logins_in_a_row_refuse_the_account_and_every_failure_is_audited() {
    let t = study();
    t.create_accounts();
    let participants = t.file("p.csv", "participant\nU01\n");
    let import = ["import", "participants", participants.to_str().unwrap()];
    for attempt in 1..=5 {
        let out = as_user(&t, DATA_MANAGER.0, &import, "not-my-password\n");
        assert_eq!(code(&out), Some(2), "attempt {attempt}: {}", text(&out));
        assert!(!text(&out).contains("not-my-password"), "the password is never echoed: {}", text(&out));
    }
    assert_eq!(audit_count(&t, "login failed"), 5);
    // The right password is refused too, for 15 minutes.
    let out = as_user(&t, DATA_MANAGER.0, &import, &format!("{}\n", DATA_MANAGER.1));
    assert_eq!(code(&out), Some(2), "{}", text(&out));
    assert!(text(&out).contains("5 failed logins in a row; the account is refused until"), "{}", text(&out));
    assert_eq!(audit_count(&t, "login failed"), 6);
    assert_eq!(audit_count(&t, "import"), 0, "nothing was imported");
    // An unknown account reads like a wrong password, and is audited too.
    let out = as_user(&t, "nobody.here", &import, "whatever-password\n");
    assert_eq!(code(&out), Some(2), "{}", text(&out));
    assert!(text(&out).contains("unknown account or wrong password"), "{}", text(&out));
    assert_eq!(audit_count(&t, "login failed"), 7);
    // An admin's new password lifts the refusal.
    let out = admin(&t, &["user", "passwd", DATA_MANAGER.0, "--new-password-stdin"], "a fresh password\n");
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    let out = as_user(&t, DATA_MANAGER.0, &import, "a fresh password\n");
    assert_eq!(code(&out), Some(0), "{}", text(&out));
}

#[test]
fn a_disabled_account_keeps_its_name_but_cannot_log_in() {
    let t = study();
    t.create_accounts();
    let participants = t.file("p.csv", "participant\nU01\n");
    let import = ["import", "participants", participants.to_str().unwrap()];
    let out = as_user(&t, DATA_MANAGER.0, &import, &format!("{}\n", DATA_MANAGER.1));
    assert_eq!(code(&out), Some(0), "{}", text(&out));

    // The last admin cannot be disabled: nobody could manage accounts again.
    let out = admin(&t, &["user", "disable", ADMIN.0], "");
    assert_eq!(code(&out), Some(2), "{}", text(&out));
    assert!(text(&out).contains("last enabled admin"), "{}", text(&out));

    let out = admin(&t, &["user", "disable", DATA_MANAGER.0, "--reason", "left the study"], "");
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    let out = as_user(&t, DATA_MANAGER.0, &import, &format!("{}\n", DATA_MANAGER.1));
    assert_eq!(code(&out), Some(2), "{}", text(&out));
    assert!(text(&out).contains("disabled"), "{}", text(&out));
    let out = admin(&t, &["user", "list"], "");
    assert!(text(&out).contains("dm.anna\tAnna Data\tdata-manager\tdisabled"), "{}", text(&out));

    // Accounts are never deleted, even behind labfeed's back.
    let conn = rusqlite::Connection::open(t.lib("labfeed.db")).unwrap();
    let err = conn.execute("DELETE FROM account WHERE name = 'dm.anna'", []).unwrap_err();
    assert!(err.to_string().contains("never deleted"), "{err}");
    let signer: String = conn
        .query_row("SELECT actor FROM audit_log WHERE action = 'import' AND entity = 'participant'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(signer, DATA_MANAGER.0);
}

#[test]
fn roles_grant_what_spec_says() {
    let t = study();
    t.create_accounts();
    let out = admin(&t, &["user", "add", "lab.lars", "--role", "lab", "--new-password-stdin"], "lab-password-0001\n");
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    let participants = t.file("p.csv", "participant\nU01\n");
    let out = t.run(&["import", "participants", participants.to_str().unwrap()]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    let visits = t.file("v.csv", "participant,visit,meal_start\nU01,V0,2026-03-02T08:00\n");
    let samples = t.file("s.csv", "sample_id,participant,visit,minute\nS-1,U01,V0,0\n");
    let lab = |args: &[&str]| as_user(&t, "lab.lars", args, "lab-password-0001\n");
    let out = lab(&["import", "visits", visits.to_str().unwrap()]);
    assert_eq!(code(&out), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("lab.lars is a lab account; import visits needs the data-manager role"),
        "{}",
        text(&out)
    );
    let out = t.run(&["import", "visits", visits.to_str().unwrap()]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    let out = lab(&["import", "samples", samples.to_str().unwrap()]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    let conn = rusqlite::Connection::open(t.lib("labfeed.db")).unwrap();
    let signer: String = conn
        .query_row("SELECT actor FROM audit_log WHERE entity = 'sample' AND entity_id = 'S-1'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(signer, "lab.lars");
    let out = lab(&["resolve", "1", "--not-done", "--reason", "no sample"]);
    assert_eq!(code(&out), Some(2), "{}", text(&out));
    assert!(text(&out).contains("resolve needs the data-manager role"), "{}", text(&out));
    // Reading needs no login.
    let out = t.run(&["report", "mismatches"]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
}

#[test]
fn anyone_may_change_their_own_password_and_only_an_admin_anyone_elses() {
    let t = study();
    t.create_accounts();
    let out = as_user(
        &t,
        DATA_MANAGER.0,
        &["user", "passwd", ADMIN.0, "--new-password-stdin"],
        &format!("{}\ntaken over now!!\n", DATA_MANAGER.1),
    );
    assert_eq!(code(&out), Some(2), "{}", text(&out));
    let out = as_user(
        &t,
        DATA_MANAGER.0,
        &["user", "passwd", DATA_MANAGER.0, "--new-password-stdin"],
        &format!("{}\nmy own new password\n", DATA_MANAGER.1),
    );
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    let out = as_user(
        &t,
        DATA_MANAGER.0,
        &["user", "passwd", DATA_MANAGER.0, "--new-password-stdin"],
        &format!("{}\nx\n", DATA_MANAGER.1),
    );
    assert_eq!(code(&out), Some(2), "the old password no longer logs in: {}", text(&out));
    assert_eq!(audit_count(&t, "user passwd"), 1);
}

#[test]
fn a_terminal_is_needed_for_a_password_unless_stdin_is_named() {
    let t = study();
    t.create_accounts();
    let participants = t.file("p.csv", "participant\nU01\n");
    let mut cmd = t.command(&["--user", DATA_MANAGER.0, "import", "participants", participants.to_str().unwrap()]);
    // A session of its own: no controlling terminal to ask on, even when the tests run in one.
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            nix::unistd::setsid().map(drop).map_err(std::io::Error::from)
        });
    }
    let out = cmd.stdin(std::process::Stdio::null()).output().unwrap();
    assert_eq!(code(&out), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--password-stdin"), "{}", text(&out));
    // $LABFEED_USER names the account when --user does not.
    let mut cmd = t.command(&["--password-stdin", "import", "participants", participants.to_str().unwrap()]);
    cmd.env("LABFEED_USER", DATA_MANAGER.0);
    let out = super::support::with_stdin(cmd, &format!("{}\n", DATA_MANAGER.1));
    assert_eq!(code(&out), Some(0), "{}", text(&out));
}

#[test]
fn refusals_for_a_role_are_audited_but_do_not_lock_the_account_out() {
    let t = study();
    t.create_accounts();
    let out = admin(&t, &["user", "add", "lab.lars", "--role", "lab", "--new-password-stdin"], "lab-password-0001\n");
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    for _ in 0..6 {
        let out = as_user(&t, "lab.lars", &["lock", "--study", "--reason", "x"], "lab-password-0001\n");
        assert_eq!(code(&out), Some(2), "{}", text(&out));
        assert!(text(&out).contains("needs the data-manager role"), "{}", text(&out));
    }
    assert_eq!(audit_count(&t, "login failed"), 6);
    let out = admin(&t, &["user", "list"], "");
    assert!(text(&out).contains("lab.lars\tlab.lars\tlab\tenabled"), "not refused: {}", text(&out));
}
