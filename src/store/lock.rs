//! Data locks (SPEC §8): a locked visit, participant or study takes no
//! change. Each lock and unlock is a new `data_lock` row; a scope is locked
//! while its latest row says so.

use std::fmt;

use crate::store::sql::{Row, params};
use serde_json::json;

use crate::store::StoreError;
use crate::store::read::{Reader, utc_text};
use crate::store::write::Tx;

/// What a lock covers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LockScope {
    Study,
    Participant(String),
    Visit { participant: String, visit: String },
}

impl LockScope {
    fn columns(&self) -> (&'static str, Option<&str>, Option<&str>) {
        match self {
            LockScope::Study => ("study", None, None),
            LockScope::Participant(p) => ("participant", Some(p), None),
            LockScope::Visit { participant, visit } => ("visit", Some(participant), Some(visit)),
        }
    }

    /// The audit `entity_id`: `study`, `U01` or `U01/V0`.
    pub fn key(&self) -> String {
        match self {
            LockScope::Study => "study".to_owned(),
            LockScope::Participant(p) => p.clone(),
            LockScope::Visit { participant, visit } => format!("{participant}/{visit}"),
        }
    }
}

impl fmt::Display for LockScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockScope::Study => f.write_str("the whole study"),
            LockScope::Participant(p) => write!(f, "participant {p}"),
            LockScope::Visit { participant, visit } => write!(f, "visit {participant}/{visit}"),
        }
    }
}

/// A lock in force: what, since when, by whom and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    pub scope: LockScope,
    pub at: jiff::Timestamp,
    pub by: String,
    pub reason: String,
}

impl fmt::Display for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is locked since {} by {} ({})", self.scope, utc_text(self.at), self.by, self.reason)
    }
}

fn lock_row(row: &Row) -> Result<(Lock, bool), StoreError> {
    let scope: String = row.get(0)?;
    let participant: Option<String> = row.get(1)?;
    let visit: Option<String> = row.get(2)?;
    let scope = match (scope.as_str(), participant, visit) {
        ("study", None, None) => LockScope::Study,
        ("participant", Some(p), None) => LockScope::Participant(p),
        ("visit", Some(participant), Some(visit)) => LockScope::Visit { participant, visit },
        (other, ..) => {
            return Err(StoreError::Corrupt { table: "data_lock", column: "scope", value: other.to_owned() });
        }
    };
    Ok((Lock { scope, at: row.get(4)?, by: row.get(5)?, reason: row.get(6)? }, row.get(3)?))
}

/// The latest row of each scope.
const LATEST: &str = "SELECT scope, participant, visit, locked, at, by, reason FROM data_lock d
     WHERE id = (SELECT max(id) FROM data_lock e WHERE e.scope = d.scope
                 AND e.participant IS NOT DISTINCT FROM d.participant
                 AND e.visit IS NOT DISTINCT FROM d.visit)";

impl Reader<'_> {
    /// Every lock in force: the study first, then participants, then visits.
    pub fn locks(&self) -> Result<Vec<Lock>, StoreError> {
        if let Some(known) = self.db().memo().and_then(|m| m.borrow().locks()) {
            return Ok(known);
        }
        let sql = format!("{LATEST} ORDER BY scope <> 'study', scope, participant, visit");
        let rows: Vec<(Lock, bool)> = self.db().query_all(&sql, params![], lock_row)?;
        let locks: Vec<Lock> = rows.into_iter().filter_map(|(lock, locked)| locked.then_some(lock)).collect();
        if let Some(memo) = self.db().memo() {
            memo.borrow_mut().set_locks(locks.clone());
        }
        Ok(locks)
    }

    /// The lock on `scope` itself, if it is in force.
    pub fn lock_of(&self, scope: &LockScope) -> Result<Option<Lock>, StoreError> {
        Ok(self.locks()?.into_iter().find(|l| &l.scope == scope))
    }

    /// The lock that covers a visit, if any: the study's, the participant's
    /// or the visit's own (in that order).
    pub fn lock_on(&self, participant: &str, visit: &str) -> Result<Option<Lock>, StoreError> {
        Ok(self.locks()?.into_iter().find(|l| match &l.scope {
            LockScope::Study => true,
            LockScope::Participant(p) => p == participant,
            LockScope::Visit { participant: p, visit: v } => p == participant && v == visit,
        }))
    }

    /// The lock that covers anything of a participant (its own or the study's).
    pub fn lock_on_participant(&self, participant: &str) -> Result<Option<Lock>, StoreError> {
        Ok(self.locks()?.into_iter().find(|l| match &l.scope {
            LockScope::Study => true,
            LockScope::Participant(p) => p == participant,
            LockScope::Visit { .. } => false,
        }))
    }
}

impl Tx<'_> {
    /// Lock (`locked`) or unlock `scope`, by this transaction's actor, audited.
    pub fn set_lock(&mut self, scope: &LockScope, locked: bool, reason: &str) -> Result<(), StoreError> {
        let (kind, participant, visit) = scope.columns();
        let at = self.now();
        self.db().execute(
            "INSERT INTO data_lock (scope, participant, visit, locked, at, by, reason)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![kind, participant, visit, locked, utc_text(at), self.actor(), reason],
        )?;
        let action = if locked { "lock" } else { "unlock" };
        self.audit(action, "lock", scope.key(), json!({ "scope": kind, "locked": locked, "reason": reason }))?;
        Ok(())
    }
}
