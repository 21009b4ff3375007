//! Accounts (SPEC §8): the people who may sign changes, and the signature
//! row that opens each of their transactions.
//!
//! Invariants, stated as absences:
//! - No account row is ever deleted, renamed or given another role
//!   (triggers refuse it), so an old signature always finds its name.
//! - No password is stored, audited or logged in clear: the table keeps an
//!   argon2id PHC string, and the audit a SHA-256 of that string.

use std::fmt;

use serde_json::json;

use crate::store::StoreError;
use crate::store::audit::sha256_hex;
use crate::store::read::{Reader, utc_text};
use crate::store::sql::{Row, params};
use crate::store::write::Tx;

/// What an account may do; each role has the rights of the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reports, exports, status.
    Viewer,
    /// Also: import samples.
    Lab,
    /// Also: import any study data, resolve, lock, unlock.
    DataManager,
    /// Also: accounts.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Lab, Role::DataManager, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Lab => "lab",
            Role::DataManager => "data-manager",
            Role::Admin => "admin",
        }
    }

    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One account, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub full_name: String,
    pub role: Role,
    /// argon2id PHC string.
    pub password_hash: String,
    pub enabled: bool,
    pub created_at: jiff::Timestamp,
    /// Failed logins in a row since the last good one.
    pub failed_logins: u32,
    /// Logins are refused until then (after too many failures).
    pub refused_until: Option<jiff::Timestamp>,
}

/// A person's signature on one transaction (21 CFR 11.50): who, in which
/// role, from which operating-system account, what it means and why. The
/// time is the transaction's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub account: String,
    pub full_name: String,
    pub role: Role,
    pub os_account: String,
    /// `resolve accept`, `lock`, `import samples`, …
    pub meaning: String,
    pub reason: Option<String>,
    /// Free text the person gave (`--by`): never the actor, only a note.
    pub on_behalf_of: Option<String>,
}

const ACCOUNT_COLUMNS: &str = "name, full_name, role, password_hash, enabled, created_at, failed_logins, refused_until";

fn account_row(row: &Row) -> Result<Account, StoreError> {
    let role: String = row.get(2)?;
    Ok(Account {
        name: row.get(0)?,
        full_name: row.get(1)?,
        role: Role::from_name(&role).ok_or_else(|| StoreError::Corrupt {
            table: "account",
            column: "role",
            value: role.clone(),
        })?,
        password_hash: row.get(3)?,
        enabled: row.get(4)?,
        created_at: row.get(5)?,
        failed_logins: row.get(6)?,
        refused_until: row.get(7)?,
    })
}

impl Reader<'_> {
    pub fn account(&self, name: &str) -> Result<Option<Account>, StoreError> {
        self.db().query_opt(
            &format!("SELECT {ACCOUNT_COLUMNS} FROM account WHERE name = ?1"),
            params![name],
            account_row,
        )
    }

    /// Every account, by name.
    pub fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.db().query_all(&format!("SELECT {ACCOUNT_COLUMNS} FROM account ORDER BY name"), params![], account_row)
    }

    /// Whether an enabled admin exists: without one, the first admin needs no login.
    pub fn has_admin(&self) -> Result<bool, StoreError> {
        self.db().query_row(
            "SELECT EXISTS (SELECT 1 FROM account WHERE role = 'admin' AND enabled = 1)",
            params![],
            |r| r.get(0),
        )
    }
}

/// The audited form of a signature (the time and account are the row's).
pub(super) fn signature_json(s: &Signature) -> serde_json::Value {
    json!({
        "full_name": s.full_name,
        "role": s.role.as_str(),
        "os_account": s.os_account,
        "meaning": s.meaning,
        "reason": s.reason,
        "on_behalf_of": s.on_behalf_of,
    })
}

fn account_json(a: &Account) -> serde_json::Value {
    json!({
        "name": a.name,
        "full_name": a.full_name,
        "role": a.role.as_str(),
        "enabled": a.enabled,
        "password_hash_sha256": sha256_hex(a.password_hash.as_bytes()),
    })
}

impl Tx<'_> {
    /// Add an account (enabled, no failed logins); refused if the name is taken.
    pub fn add_account(
        &mut self,
        name: &str,
        full_name: &str,
        role: Role,
        password_hash: &str,
    ) -> Result<(), StoreError> {
        if self.account(name)?.is_some() {
            return Err(StoreError::Invalid {
                what: "account",
                problem: format!("{name} exists already (accounts are never deleted or renamed)"),
            });
        }
        let account = Account {
            name: name.to_owned(),
            full_name: full_name.to_owned(),
            role,
            password_hash: password_hash.to_owned(),
            enabled: true,
            created_at: self.now(),
            failed_logins: 0,
            refused_until: None,
        };
        self.db().execute(
            "INSERT INTO account (name, full_name, role, password_hash, enabled, created_at)
             VALUES (?1, ?2, ?3, ?4, 1, ?5)",
            params![name, full_name, role.as_str(), password_hash, utc_text(account.created_at)],
        )?;
        self.audit("user add", "account", name, json!({ "new": account_json(&account) }))?;
        Ok(())
    }

    /// A new password hash; the account's failed logins and refusal are cleared.
    pub fn set_password(&mut self, name: &str, password_hash: &str) -> Result<(), StoreError> {
        let old = self.existing_account(name)?;
        self.db().execute(
            "UPDATE account SET password_hash = ?2, failed_logins = 0, refused_until = NULL WHERE name = ?1",
            params![name, password_hash],
        )?;
        let new = Account { password_hash: password_hash.to_owned(), ..old.clone() };
        self.audit("user passwd", "account", name, json!({ "old": account_json(&old), "new": account_json(&new) }))?;
        Ok(())
    }

    /// Disable an account for good: it keeps its name on old signatures.
    pub fn disable_account(&mut self, name: &str) -> Result<(), StoreError> {
        let old = self.existing_account(name)?;
        self.db().execute("UPDATE account SET enabled = 0 WHERE name = ?1", params![name])?;
        let new = Account { enabled: false, ..old.clone() };
        self.audit("user disable", "account", name, json!({ "old": account_json(&old), "new": account_json(&new) }))?;
        Ok(())
    }

    /// A refused login, audited. A wrong password of an existing account is
    /// `counted` as a failure in a row, and `refuse_until` (if given) starts
    /// a refusal; a right password refused (disabled, role, refusal in force)
    /// is only audited.
    pub fn record_failed_login(
        &mut self,
        name: &str,
        why: &str,
        os_account: &str,
        counted: bool,
        refuse_until: Option<jiff::Timestamp>,
    ) -> Result<(), StoreError> {
        let in_a_row = match self.account(name)?.filter(|_| counted) {
            Some(a) => {
                let in_a_row = a.failed_logins.saturating_add(1);
                self.db().execute(
                    "UPDATE account SET failed_logins = ?2, refused_until = COALESCE(?3, refused_until) WHERE name = ?1",
                    params![name, in_a_row, refuse_until.map(utc_text)],
                )?;
                Some(in_a_row)
            }
            None => None,
        };
        self.audit(
            "login failed",
            "account",
            name,
            json!({
                "why": why,
                "os_account": os_account,
                "failed_in_a_row": in_a_row,
                "refused_until": refuse_until.map(utc_text),
            }),
        )?;
        Ok(())
    }

    /// A good login after failures clears their count (audited, so the
    /// trail shows the failures ended in a login).
    pub fn clear_failed_logins(&mut self, name: &str, os_account: &str) -> Result<(), StoreError> {
        let Some(account) = self.account(name)? else { return Ok(()) };
        if account.failed_logins == 0 && account.refused_until.is_none() {
            return Ok(());
        }
        self.db()
            .execute("UPDATE account SET failed_logins = 0, refused_until = NULL WHERE name = ?1", params![name])?;
        self.audit(
            "login",
            "account",
            name,
            json!({ "os_account": os_account, "failed_logins_cleared": account.failed_logins }),
        )?;
        Ok(())
    }

    fn existing_account(&self, name: &str) -> Result<Account, StoreError> {
        self.account(name)?.ok_or_else(|| StoreError::NotFound { entity: "account", key: name.to_owned() })
    }
}
