//! Locking and unlocking a visit, a participant or the study (SPEC §8),
//! as `labfeed lock|unlock` and the console's lock forms both do it: what is
//! to be locked must exist and not be locked already; what is to be unlocked
//! must be locked itself (not only covered by a wider lock).

use crate::store::{LockScope, Signature, Store, StoreError};

/// Why a lock or unlock changes nothing, in words a person can act on
/// (without the closing "nothing changed", which the caller adds).
pub fn refusal(store: &Store, scope: &LockScope, lock: bool) -> Result<Option<String>, StoreError> {
    let known = store.read(|r| match scope {
        LockScope::Study => Ok(true),
        LockScope::Participant(p) => r.participant_exists(p),
        LockScope::Visit { participant, visit } => Ok(r.visit(participant, visit)?.is_some()),
    })?;
    if !known {
        return Ok(Some(format!("there is no {scope} in the study database")));
    }
    let current = store.read(|r| r.lock_of(scope))?;
    Ok(match (&current, lock) {
        (Some(l), true) => Some(l.to_string()),
        (None, false) => {
            let covering = store.read(|r| match scope {
                LockScope::Visit { participant, visit } => r.lock_on(participant, visit),
                LockScope::Participant(p) => r.lock_on_participant(p),
                LockScope::Study => Ok(None),
            })?;
            Some(match covering {
                Some(l) => format!(
                    "{scope} has no lock of its own: it is covered by the lock on {} (unlock that instead)",
                    l.scope
                ),
                None => format!("{scope} is not locked"),
            })
        }
        _ => None,
    })
}

/// Lock (`lock`) or unlock `scope`, signed, in one audited transaction.
pub fn set_lock(
    store: &mut Store,
    signature: &Signature,
    scope: &LockScope,
    lock: bool,
    reason: &str,
) -> Result<(), StoreError> {
    store.write_signed(signature, |tx| tx.set_lock(scope, lock, reason))
}

/// A reason a person typed: one line of plain text, not empty.
pub fn plain_reason(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("a reason is needed".to_owned());
    }
    if let Some(c) = super::control_character(text) {
        return Err(format!(
            "the reason must not contain control characters (found U+{:04X}): it is one line of plain text",
            u32::from(c)
        ));
    }
    Ok(text.to_owned())
}
