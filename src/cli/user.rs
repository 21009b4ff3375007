//! `labfeed user add|list|disable|passwd`: accounts (SPEC §8).
//!
//! The first admin of a database needs no login (there is nobody to log in
//! as); every later `user` command needs an admin's, except that anyone
//! may change their own password. Each change is one signed transaction.

use std::io::Write;
use std::path::Path;

use clap::{Args, Subcommand};

use crate::cli::login::{Login, new_password, plain_text, refused};
use crate::cli::{Outcome, load_config, open_store};
use crate::login::{self, LoginError};
use crate::store::{Account, Role, Signature, Store};

#[derive(Debug, Args)]
pub struct UserArgs {
    #[command(subcommand)]
    pub command: UserCommand,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add an account (the first admin of a database needs no login).
    Add {
        /// Account name: letters, digits, '.', '_' or '-' (e.g. anna.berg).
        name: String,
        /// viewer, lab, data-manager or admin; each has the rights of the ones before it.
        #[arg(long, value_name = "ROLE")]
        role: String,
        /// The person's full name, shown on every signature (default: the account name).
        #[arg(long, value_name = "TEXT")]
        full_name: Option<String>,
        /// Read the new account's password from standard input (after your own line with --password-stdin).
        #[arg(long)]
        new_password_stdin: bool,
        /// Why, for the audit trail.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// List the accounts (never their passwords).
    List,
    /// Disable an account for good; it keeps its name on old signatures.
    Disable {
        name: String,
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Set a new password (an admin for anyone, anyone for themselves).
    Passwd {
        name: String,
        #[arg(long)]
        new_password_stdin: bool,
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
}

pub fn run(
    config_path: &Path,
    login: &Login,
    args: &UserArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<Outcome> {
    let config = load_config(config_path)?;
    let mut store = open_store(&config, config_path)?;
    let what = match &args.command {
        UserCommand::Add { .. } => "user add",
        UserCommand::List => "user list",
        UserCommand::Disable { .. } => "user disable",
        UserCommand::Passwd { .. } => "user passwd",
    };
    match change(&mut store, login, &args.command, out) {
        Ok(()) => Ok(Outcome::Ok),
        Err(LoginError::Store(e)) => Err(anyhow::Error::new(e).context(format!("{what}: the study database"))),
        Err(e) => {
            refused(err, what, &e)?;
            Ok(Outcome::Usage)
        }
    }
}

fn reason_text(reason: &Option<String>) -> Result<Option<String>, LoginError> {
    reason.as_deref().map(|r| plain_text("--reason", r)).transpose().map_err(LoginError::Password)
}

fn change(store: &mut Store, login: &Login, command: &UserCommand, out: &mut dyn Write) -> Result<(), LoginError> {
    let io = |e: std::io::Error| LoginError::Password(format!("cannot write the answer: {e}"));
    match command {
        UserCommand::Add { name, role, full_name, new_password_stdin, reason } => {
            login::check_account_name(name).map_err(LoginError::Password)?;
            let role = Role::from_name(role).ok_or_else(|| {
                LoginError::Password(format!("--role {role:?}: expected viewer, lab, data-manager or admin"))
            })?;
            let full_name = match full_name {
                Some(text) => plain_text("--full-name", text).map_err(LoginError::Password)?,
                None => name.clone(),
            };
            let reason = reason_text(reason)?;
            if let Some(why) = login::add_refusal(store, name)? {
                return Err(LoginError::Password(why));
            }
            let first_admin = !store.read(|r| r.has_admin())?;
            let signature = if first_admin {
                if role != Role::Admin {
                    return Err(LoginError::Password(
                        "the study database has no admin yet: the first account must be an admin (--role admin)"
                            .to_owned(),
                    ));
                }
                // Nobody to log in as: the new admin signs their own account.
                let password = new_password(name, *new_password_stdin)?;
                let me = Account {
                    name: name.clone(),
                    full_name: full_name.clone(),
                    role,
                    password_hash: login::hash_password(&password)?,
                    enabled: true,
                    created_at: jiff::Timestamp::now(),
                    failed_logins: 0,
                    refused_until: None,
                };
                let signature = login::signature(&me, "user add (first admin)", reason.as_deref(), None);
                store.write_signed(&signature, |tx| {
                    // Two first admins at once: the second finds the first and is refused.
                    if tx.has_admin()? {
                        return Err(crate::store::StoreError::Invalid {
                            what: "account",
                            problem: "an admin was created meanwhile; log in as that admin".to_owned(),
                        });
                    }
                    tx.add_account(name, &full_name, role, &me.password_hash)
                })?;
                signature
            } else {
                let admin = login.account(store, Role::Admin, "user add")?;
                let password = new_password(name, *new_password_stdin)?;
                let hash = login::hash_password(&password)?;
                let signature = login::signature(&admin, "user add", reason.as_deref(), None);
                store.write_signed(&signature, |tx| tx.add_account(name, &full_name, role, &hash))?;
                signature
            };
            writeln!(out, "account {name} ({full_name}, {role}) added, signed by {}", signed_by(&signature))
                .map_err(io)?;
        }
        UserCommand::List => {
            login.account(store, Role::Admin, "user list")?;
            let accounts = store.read(|r| r.accounts())?;
            writeln!(out, "name\tfull name\trole\tstate\tcreated (UTC)").map_err(io)?;
            let now = jiff::Timestamp::now();
            for a in accounts {
                let state = match (a.enabled, a.refused_until) {
                    (false, _) => "disabled".to_owned(),
                    (true, Some(until)) if until > now => {
                        format!("refused until {} UTC", until.strftime("%Y-%m-%d %H:%M"))
                    }
                    (true, _) => "enabled".to_owned(),
                };
                writeln!(
                    out,
                    "{}\t{}\t{}\t{state}\t{}",
                    a.name,
                    a.full_name,
                    a.role,
                    a.created_at.strftime("%Y-%m-%d %H:%M")
                )
                .map_err(io)?;
            }
        }
        UserCommand::Disable { name, reason } => {
            let reason = reason_text(reason)?;
            let admin = login.account(store, Role::Admin, "user disable")?;
            if let Some(why) = login::disable_refusal(store, name)? {
                return Err(LoginError::Password(why));
            }
            let signature = login::signature(&admin, "user disable", reason.as_deref(), None);
            store.write_signed(&signature, |tx| tx.disable_account(name))?;
            writeln!(out, "account {name} disabled, signed by {}", signed_by(&signature)).map_err(io)?;
        }
        UserCommand::Passwd { name, new_password_stdin, reason } => {
            let reason = reason_text(reason)?;
            let own = login.user.as_deref().map(str::trim) == Some(name.as_str());
            let needs = if own { Role::Viewer } else { Role::Admin };
            let signer = login.account(store, needs, "user passwd")?;
            if store.read(|r| r.account(name))?.is_none() {
                return Err(LoginError::Password(format!("there is no account {name}")));
            }
            let password = new_password(name, *new_password_stdin)?;
            let hash = login::hash_password(&password)?;
            let signature = login::signature(&signer, "user passwd", reason.as_deref(), None);
            store.write_signed(&signature, |tx| tx.set_password(name, &hash))?;
            writeln!(out, "password of {name} changed, signed by {}", signed_by(&signature)).map_err(io)?;
        }
    }
    Ok(())
}

/// `anna.berg (Anna Berg, data-manager)`: how a signature is named in answers.
pub fn signed_by(s: &Signature) -> String {
    format!("{} ({}, {})", s.account, s.full_name, s.role)
}
