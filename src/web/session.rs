//! Who is signed in: sessions kept in memory, named by a random cookie,
//! each with its own CSRF token (SPEC §11).
//!
//! A session ends 15 minutes after its last request, or at logout. Nothing
//! of it is written down: a restart of `serve` signs everyone out, which
//! is what a console of study data should do.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::store::Role;

/// How long a session lives without a request.
pub const IDLE: Duration = Duration::from_secs(15 * 60);

/// The session cookie's name.
pub const COOKIE: &str = "labfeed_session";

/// A signed-in account, as a request sees it.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub account: String,
    pub full_name: String,
    pub role: Role,
    /// The token every state-changing request must carry.
    pub csrf: String,
}

struct Entry {
    who: SignedIn,
    last_seen: Instant,
}

#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Entry>>,
}

/// 32 random bytes as hex: a session name or a CSRF token.
pub fn random_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(crate::store::hex(&bytes))
}

/// Equal without telling how much is equal by the time it takes.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Sessions {
    /// Start a session for `who`; its cookie value.
    pub fn start(&self, who: SignedIn, now: Instant) -> std::io::Result<String> {
        let token = random_token()?;
        if let Ok(mut map) = self.map.lock() {
            map.retain(|_, e| now.saturating_duration_since(e.last_seen) < IDLE);
            map.insert(token.clone(), Entry { who, last_seen: now });
        }
        Ok(token)
    }

    /// The session `token` names, if it is alive; it is touched.
    pub fn find(&self, token: &str, now: Instant) -> Option<SignedIn> {
        let mut map = self.map.lock().ok()?;
        let entry = map.get_mut(token)?;
        if now.saturating_duration_since(entry.last_seen) >= IDLE {
            map.remove(token);
            return None;
        }
        entry.last_seen = now;
        Some(entry.who.clone())
    }

    pub fn end(&self, token: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(token);
        }
    }
}

/// Login attempts per client address: at most [`LoginLimit::PER_MINUTE`]
/// a minute, whatever the account (the §8 lockout counts per account).
#[derive(Default)]
pub struct LoginLimit {
    seen: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl LoginLimit {
    pub const PER_MINUTE: u32 = 10;

    /// Count an attempt from `ip`; false when it is one too many.
    pub fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        let Ok(mut seen) = self.seen.lock() else { return false };
        if seen.len() > 10_000 {
            seen.retain(|_, (start, _)| now.saturating_duration_since(*start) < Duration::from_secs(60));
        }
        let entry = seen.entry(ip).or_insert((now, 0));
        if now.saturating_duration_since(entry.0) >= Duration::from_secs(60) {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1 <= Self::PER_MINUTE
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'h>(header: &'h str, name: &str) -> Option<&'h str> {
    header.split(';').filter_map(|pair| pair.trim().split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who() -> SignedIn {
        SignedIn { account: "dm".into(), full_name: "D M".into(), role: Role::DataManager, csrf: "c".into() }
    }

    #[test]
    fn a_session_lives_until_15_idle_minutes_or_logout() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let token = sessions.start(who(), t0).unwrap();
        assert_eq!(token.len(), 64);
        assert!(sessions.find(&token, t0 + Duration::from_secs(14 * 60)).is_some());
        // Touched at 14 min: alive at 28.
        assert!(sessions.find(&token, t0 + Duration::from_secs(28 * 60)).is_some());
        assert!(sessions.find(&token, t0 + Duration::from_secs(44 * 60)).is_none(), "15 idle minutes end it");
        let token = sessions.start(who(), t0).unwrap();
        sessions.end(&token);
        assert!(sessions.find(&token, t0).is_none());
        assert!(sessions.find("forged", t0).is_none());
    }

    #[test]
    fn eleven_logins_a_minute_from_one_address_are_too_many() {
        let limit = LoginLimit::default();
        let (ip, other): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        assert!((0..10).all(|_| limit.allow(ip, t0)));
        assert!(!limit.allow(ip, t0));
        assert!(limit.allow(other, t0));
        assert!(limit.allow(ip, t0 + Duration::from_secs(61)));
    }

    #[test]
    fn cookies_and_tokens() {
        assert_eq!(cookie("a=1; labfeed_session=xyz; b=2", COOKIE), Some("xyz"));
        assert_eq!(cookie("a=1", COOKIE), None);
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
