//! The global `--user` / `--password-stdin` options, and reading passwords
//! from the terminal (never echoed) or from standard input.

use std::io::Write;

use crate::login::{self, LoginError};
use crate::store::{Account, Role, Store};

/// Who the caller says they are; proven by [`Login::account`].
#[derive(Debug, Clone, Default)]
pub struct Login {
    pub user: Option<String>,
    /// The caller's password is the first line of standard input.
    pub password_stdin: bool,
}

impl Login {
    /// The caller's account, once the password is checked and the role has
    /// `needs` (for `what`, as the refusal names it).
    pub fn account(&self, store: &mut Store, needs: Role, what: &str) -> Result<Account, LoginError> {
        let name = self.user.as_deref().map(str::trim).filter(|n| !n.is_empty()).ok_or(LoginError::NoUser)?;
        // Say so before asking for a password nobody can have.
        if store.read(|r| r.accounts())?.is_empty() {
            return Err(LoginError::NoAccounts);
        }
        let password = if self.password_stdin {
            stdin_line("your password (--password-stdin)")?
        } else {
            ask(&format!("Password for {name}: "))?
        };
        login::authenticate(store, name, &password, needs, what)
    }
}

/// One line of standard input, without its line ending.
pub fn stdin_line(what: &str) -> Result<String, LoginError> {
    let mut line = String::new();
    let read = std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| LoginError::Password(format!("cannot read {what} from standard input: {e}")))?;
    if read == 0 {
        return Err(LoginError::Password(format!("standard input ended before {what}")));
    }
    let line = line.strip_suffix('\n').unwrap_or(&line);
    Ok(line.strip_suffix('\r').unwrap_or(line).to_owned())
}

/// Ask on the terminal without echo.
pub fn ask(prompt: &str) -> Result<String, LoginError> {
    rpassword::prompt_password(prompt).map_err(|e| {
        LoginError::Password(format!(
            "no terminal to ask the password on ({e}); give it on standard input with --password-stdin"
        ))
    })
}

/// A new password: from standard input, or asked twice on the terminal.
pub fn new_password(account: &str, from_stdin: bool) -> Result<String, LoginError> {
    let password = if from_stdin {
        stdin_line("the new password (--new-password-stdin)")?
    } else {
        let first = ask(&format!("New password for {account}: "))?;
        let again = ask("The same password again: ")?;
        if first != again {
            return Err(LoginError::Password("the two passwords differ; nothing changed".to_owned()));
        }
        first
    };
    login::check_new_password(account, &password).map_err(LoginError::Password)?;
    Ok(password)
}

/// Print a refused login as a usage error (exit 2).
pub fn refused(err: &mut dyn Write, command: &str, e: &LoginError) -> std::io::Result<()> {
    writeln!(err, "labfeed: {command}: {e}")?;
    writeln!(err, "labfeed: {command}: nothing changed")
}

/// Free text a person typed (`--reason`, `--by`, `--full-name`): one line,
/// no control characters, so it reads the same in every report and log.
pub fn plain_text(flag: &str, text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("{flag} needs a text"));
    }
    if let Some(c) = crate::ingest::control_character(text) {
        return Err(format!(
            "{flag} must not contain control characters (found U+{:04X}): it is one line of plain text",
            u32::from(c)
        ));
    }
    Ok(text.to_owned())
}
