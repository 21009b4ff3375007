//! Who is signing (SPEC §8): password rules, argon2id hashes, and the login
//! check every person's change goes through. How a password is read
//! (terminal or stdin) is the caller's business; this module never sees a
//! terminal and never logs a password.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::store::{Account, Role, SYSTEM_ACTOR, Signature, Store, StoreError};

/// Failed logins in a row after which an account is refused for a while.
pub const MAX_FAILED_LOGINS: u32 = 5;
/// How long an account is refused after [`MAX_FAILED_LOGINS`].
pub const REFUSAL: jiff::SignedDuration = jiff::SignedDuration::from_mins(15);
/// Why a login failed, as audited; only this one counts towards a refusal.
const WRONG_PASSWORD: &str = "wrong password";
/// The shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("no login given: this command needs --user NAME (or $LABFEED_USER) and that account's password")]
    NoUser,
    #[error(
        "the study database has no accounts yet: an admin creates the first one with `labfeed user add NAME --role admin`"
    )]
    NoAccounts,
    /// Unknown account and wrong password read alike, so names cannot be probed.
    #[error("login refused for {0}: unknown account or wrong password")]
    Refused(String),
    #[error("login refused for {name}: {failures} failed logins in a row; the account is refused until {until} UTC")]
    RefusedForNow { name: String, failures: u32, until: String },
    #[error("login refused for {0}: the account is disabled")]
    Disabled(String),
    #[error("{name} is a {role} account; {what} needs the {needs} role or higher")]
    NoRight { name: String, role: Role, what: String, needs: Role },
    #[error("{0}")]
    Password(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The argon2id PHC string of `password`, with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, LoginError> {
    let hash = Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|e| LoginError::Password(format!("the password could not be hashed: {e}")))?;
    Ok(hash.to_string())
}

/// Whether `password` matches the stored PHC string. A string that does not
/// parse matches nothing.
pub fn password_matches(phc: &str, password: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(hash) => Argon2::default().verify_password(password.as_bytes(), &hash).is_ok(),
        Err(_) => false,
    }
}

/// The rules for a new password (SPEC §8), in words a person can act on.
pub fn check_new_password(account: &str, password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!("the password is too short: it needs at least {MIN_PASSWORD_CHARS} characters"));
    }
    if password.trim().to_lowercase() == account.trim().to_lowercase() {
        return Err("the password must not be the account name".to_owned());
    }
    if password.chars().any(char::is_control) {
        return Err("the password must not hold control characters".to_owned());
    }
    Ok(())
}

/// The rules for an account name: short, plain, and never the system's own.
pub fn check_account_name(name: &str) -> Result<(), String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > 64 || !name.chars().all(plain) {
        return Err(format!(
            "{name:?} is not an account name: use 1 to 64 letters, digits, '.', '_' or '-' (e.g. anna.berg)"
        ));
    }
    if name.eq_ignore_ascii_case(SYSTEM_ACTOR) || name.eq_ignore_ascii_case("system") {
        return Err(format!("{name:?} is reserved for labfeed's own changes"));
    }
    Ok(())
}

/// The operating-system account this process runs as (from the process's
/// uid, never from `$USER`, which anyone can set).
pub fn os_account() -> String {
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) if !user.name.trim().is_empty() => format!("{} (uid {uid})", user.name),
        _ => format!("uid {uid}"),
    }
}

/// Check a login for `what` (e.g. `resolve`), which needs `needs`. A refusal
/// is audited in its own transaction (it must survive the refused command);
/// the fifth in a row refuses the account for [`REFUSAL`].
pub fn authenticate(
    store: &mut Store,
    name: &str,
    password: &str,
    needs: Role,
    what: &str,
) -> Result<Account, LoginError> {
    // No account has such a name; refused before the audit trail keeps it.
    if name.chars().any(char::is_control) {
        return Err(LoginError::Refused(crate::model::printable(name).into_owned()));
    }
    let now = jiff::Timestamp::now();
    let account = store.read(|r| r.account(name))?;
    let refuse = |store: &mut Store, why: &str, refuse_until: Option<jiff::Timestamp>| -> Result<(), LoginError> {
        let os = os_account();
        let counted = why == WRONG_PASSWORD;
        store.write(|tx| tx.record_failed_login(name, why, &os, counted, refuse_until))?;
        tracing::warn!(account = name, why, "login refused");
        Ok(())
    };
    let Some(account) = account else {
        if store.read(|r| r.accounts())?.is_empty() {
            return Err(LoginError::NoAccounts);
        }
        refuse(store, "unknown account", None)?;
        return Err(LoginError::Refused(name.to_owned()));
    };
    if let Some(until) = account.refused_until.filter(|until| *until > now) {
        refuse(store, "refused after failed logins", None)?;
        return Err(LoginError::RefusedForNow {
            name: name.to_owned(),
            failures: account.failed_logins,
            until: until.strftime("%Y-%m-%d %H:%M").to_string(),
        });
    }
    if !password_matches(&account.password_hash, password) {
        let failures = account.failed_logins.saturating_add(1);
        let until = (failures >= MAX_FAILED_LOGINS).then(|| now.checked_add(REFUSAL).ok()).flatten();
        refuse(store, WRONG_PASSWORD, until)?;
        return Err(match until {
            Some(until) => LoginError::RefusedForNow {
                name: name.to_owned(),
                failures,
                until: until.strftime("%Y-%m-%d %H:%M").to_string(),
            },
            None => LoginError::Refused(name.to_owned()),
        });
    }
    if !account.enabled {
        refuse(store, "account disabled", None)?;
        return Err(LoginError::Disabled(name.to_owned()));
    }
    if account.role < needs {
        refuse(store, "role without the right", None)?;
        return Err(LoginError::NoRight { name: name.to_owned(), role: account.role, what: what.to_owned(), needs });
    }
    if account.failed_logins > 0 {
        let os = os_account();
        store.write(|tx| tx.clear_failed_logins(name, &os))?;
    }
    Ok(account)
}

/// Why `name` cannot be disabled, if it cannot (`user disable` and the
/// console say the same): it must exist, be enabled, and not be the last
/// enabled admin.
pub fn disable_refusal(store: &Store, name: &str) -> Result<Option<String>, StoreError> {
    let Some(target) = store.read(|r| r.account(name))? else {
        return Ok(Some(format!("there is no account {name}")));
    };
    if !target.enabled {
        return Ok(Some(format!("{name} is disabled already")));
    }
    if target.role == Role::Admin {
        let admins = store.read(|r| r.accounts())?.iter().filter(|a| a.enabled && a.role == Role::Admin).count();
        if admins <= 1 {
            return Ok(Some(format!("{name} is the last enabled admin; add another admin before disabling it")));
        }
    }
    Ok(None)
}

/// Why an account `name` cannot be added, if it cannot: a plain name not
/// taken yet (accounts are never deleted or renamed).
pub fn add_refusal(store: &Store, name: &str) -> Result<Option<String>, StoreError> {
    if let Err(why) = check_account_name(name) {
        return Ok(Some(why));
    }
    if store.read(|r| r.account(name))?.is_some() {
        return Ok(Some(format!(
            "{name} exists already (accounts are never deleted or renamed; `user passwd {name}` sets a new password)"
        )));
    }
    Ok(None)
}

/// A signature by a logged-in account.
pub fn signature(account: &Account, meaning: &str, reason: Option<&str>, on_behalf_of: Option<&str>) -> Signature {
    Signature {
        account: account.name.clone(),
        full_name: account.full_name.clone(),
        role: account.role,
        os_account: os_account(),
        meaning: meaning.to_owned(),
        reason: reason.map(str::to_owned),
        on_behalf_of: on_behalf_of.map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_matches_its_password_only() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(password_matches(&hash, "correct horse battery"));
        assert!(!password_matches(&hash, "correct horse battery "));
        assert!(!password_matches("not a hash", "correct horse battery"));
        assert_ne!(hash, hash_password("correct horse battery").unwrap(), "salted");
    }

    #[test]
    fn password_rules_are_said_plainly() {
        assert!(check_new_password("anna", "short").unwrap_err().contains("at least 12 characters"));
        assert!(check_new_password("anna.berg.lab1", "Anna.Berg.Lab1").unwrap_err().contains("account name"));
        assert!(check_new_password("anna", "line\nbreak in it").is_err());
        assert!(check_new_password("anna", "twelve chars").is_ok());
    }

    #[test]
    fn account_names_are_plain_and_not_the_system() {
        assert!(check_account_name("anna.berg").is_ok());
        assert!(check_account_name("Dr. Chief").is_err());
        assert!(check_account_name("").is_err());
        assert!(check_account_name("labfeed").unwrap_err().contains("reserved"));
    }
}
