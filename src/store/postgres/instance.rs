//! One daemon per instance name on one database (SPEC §10).
//!
//! A session-scoped advisory lock, keyed by a hash of the name: the server
//! drops it when the session ends, however it ends (the process exits or is
//! killed, the connection is closed or lost). So a daemon must take it
//! again after it reconnects, and may then find another daemon of the same
//! name holding it.

use ::postgres::Client;
use sha2::{Digest, Sha256};

use super::{PgError, client_target};

/// The advisory lock that says "instance NAME runs on this database". It
/// owns the session that holds it: dropping it closes that session, which
/// releases the lock.
pub struct InstanceLock {
    client: Client,
    instance: String,
    key: i64,
}

impl std::fmt::Debug for InstanceLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceLock").field("instance", &self.instance).finish_non_exhaustive()
    }
}

/// The lock key of an instance name: the first 8 bytes of a SHA-256, so
/// that names, not their spelling in some hash of the server's, decide it.
pub fn instance_key(instance: &str) -> i64 {
    let digest = Sha256::new().chain_update(b"labfeed instance\0").chain_update(instance.as_bytes()).finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

impl InstanceLock {
    /// Take the lock of `instance` on `client`'s session, or say who holds it.
    pub fn acquire(mut client: Client, instance: &str) -> Result<InstanceLock, PgError> {
        let key = instance_key(instance);
        let taken: Result<bool, _> = client.query_one("SELECT pg_try_advisory_lock($1)", &[&key]).map(|row| row.get(0));
        match taken {
            Ok(true) => Ok(InstanceLock { client, instance: instance.to_owned(), key }),
            Ok(false) => {
                let holder = holder(&mut client, key);
                Err(PgError::InstanceHeld { instance: instance.to_owned(), target: client_target(&mut client), holder })
            }
            Err(error) => {
                Err(PgError::Query { target: client_target(&mut client), what: "taking the instance lock", error })
            }
        }
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Whether the session holding the lock has ended (the lock with it).
    pub fn is_lost(&self) -> bool {
        self.client.is_closed()
    }

    /// Whether the session is alive and still holds the lock (a daemon
    /// asks after a network failure: a lost session lost the lock).
    pub fn is_held(&mut self) -> bool {
        let (classid, objid) = split(self.key);
        self.client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
                   AND pid = pg_backend_pid() AND classid = $1 AND objid = $2 AND objsubid = 1)",
                &[&classid, &objid],
            )
            .is_ok_and(|row| row.get(0))
    }
}

/// The one-key form of an advisory lock as `pg_locks` shows it.
fn split(key: i64) -> (u32, u32) {
    let bits = key as u64;
    ((bits >> 32) as u32, bits as u32)
}

/// Who holds the lock, in words for the refusal: the server process, and
/// where it connected from and since when (when this role may see that).
fn holder(client: &mut Client, key: i64) -> String {
    let (classid, objid) = split(key);
    let row = client.query_opt(
        "SELECT l.pid, a.client_addr::text, to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
         FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 1
         LIMIT 1",
        &[&classid, &objid],
    );
    match row {
        Ok(Some(r)) => {
            let pid: i32 = r.get(0);
            let from: Option<String> = r.get(1);
            let since: Option<String> = r.get(2);
            let mut text = format!(" (held by server process {pid}");
            if let Some(from) = from {
                text.push_str(&format!(", connected from {}", from.split('/').next().unwrap_or(&from)));
            }
            if let Some(since) = since {
                text.push_str(&format!(" since {since}"));
            }
            text.push(')');
            text
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_name_and_are_stable() {
        assert_ne!(instance_key("site-a"), instance_key("site-b"));
        assert_eq!(instance_key("site-a"), instance_key("site-a"));
        let (c, o) = split(-2);
        assert_eq!((c, o), (u32::MAX, u32::MAX - 1));
    }
}
