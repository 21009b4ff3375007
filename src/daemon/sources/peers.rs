//! What TCP peers are held to (SPEC §7 "Peers and limits"): connection caps
//! with slots kept for addresses that hold none, an hourly byte budget per
//! address, the trickle floor, and the refusal counts `labfeed status` shows.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::warn;

use crate::daemon::health::{clear_refused_peers, record_refused_peers};

/// Connections served at once per listener.
pub const MAX_CONNECTIONS: usize = 16;
/// Connections served at once per peer address.
pub const MAX_PER_PEER: usize = 4;
/// The last slots of a listener go only to addresses holding no connection,
/// so greedy peers (up to 4 of them at 4 connections) never keep out an
/// analyzer that has none.
pub const KEPT_FOR_NEW_PEERS: usize = 4;
/// While a message is in progress, each `idle_seconds` must bring at least
/// this many bytes a second on average. An analyzer at 9600 baud sends about
/// 960; a peer sending a byte a second is cut.
pub const MIN_BYTES_PER_SECOND: u64 = 20;
/// A refusal is logged at most this often per listener, address and kind.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);
/// The budget's period.
const HOUR: Duration = Duration::from_secs(3600);
/// The refusal file is rewritten at most this often.
const FILE_EVERY: Duration = Duration::from_secs(5);
/// Maps keyed by address are pruned of stale entries beyond this size, so a
/// scan from many addresses cannot grow them without bound.
const PRUNE_AT: usize = 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    NotAllowed,
    OverCap,
    OverBudget,
}

/// Connections held on one listener, in all and per address.
#[derive(Default)]
pub struct Connections(Arc<Mutex<Held>>);

#[derive(Debug, Default)]
struct Held {
    total: usize,
    per_peer: HashMap<IpAddr, usize>,
}

impl Connections {
    /// A slot for a connection from `ip`, or why there is none.
    pub fn take(&self, ip: IpAddr) -> Result<Slot, String> {
        let mut held = lock(&self.0);
        let mine = held.per_peer.get(&ip).copied().unwrap_or(0);
        if held.total >= MAX_CONNECTIONS {
            return Err(format!("all {MAX_CONNECTIONS} connections of this listener are in use"));
        }
        if mine >= MAX_PER_PEER {
            return Err(format!("this address holds its {MAX_PER_PEER} connections"));
        }
        if mine > 0 && held.total >= MAX_CONNECTIONS - KEPT_FOR_NEW_PEERS {
            return Err(format!(
                "the last {KEPT_FOR_NEW_PEERS} connections of this listener are kept for addresses holding none"
            ));
        }
        held.total += 1;
        *held.per_peer.entry(ip).or_insert(0) += 1;
        Ok(Slot { held: Arc::clone(&self.0), ip })
    }
}

/// One held connection, given back on drop.
#[derive(Debug)]
pub struct Slot {
    held: Arc<Mutex<Held>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = lock(&self.held);
        held.total = held.total.saturating_sub(1);
        if let Some(n) = held.per_peer.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.per_peer.remove(&self.ip);
            }
        }
    }
}

/// Bytes each address may send a listener per hour (counted from its first
/// byte of the hour). Bytes beyond it are never buffered.
pub struct Budget {
    pub limit: u64,
    used: Mutex<HashMap<IpAddr, (Instant, u64)>>,
}

impl Budget {
    pub fn new(limit: u64) -> Budget {
        Budget { limit, used: Mutex::default() }
    }

    /// Charge `n` bytes read from `ip`: how many of them fit in its budget.
    pub fn charge(&self, ip: IpAddr, n: usize, now: Instant) -> usize {
        let mut used = lock(&self.used);
        if used.len() >= PRUNE_AT {
            used.retain(|_, (since, _)| now.duration_since(*since) < HOUR);
        }
        let entry = used.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= HOUR {
            *entry = (now, 0);
        }
        let left = self.limit.saturating_sub(entry.1);
        let fits = usize::try_from(left).unwrap_or(usize::MAX).min(n);
        entry.1 += fits as u64;
        fits
    }

    /// Whether `ip` has used its whole budget this hour.
    pub fn exhausted(&self, ip: IpAddr, now: Instant) -> bool {
        lock(&self.used)
            .get(&ip)
            .is_some_and(|(since, bytes)| now.duration_since(*since) < HOUR && *bytes >= self.limit)
    }
}

/// The trickle floor for one connection: while a message is in progress,
/// each window of `idle` must bring `idle × MIN_BYTES_PER_SECOND` bytes.
/// Time labfeed spends on a message (its commit) does not count.
pub struct Trickle {
    idle: Duration,
    window: Option<(Instant, u64)>,
}

impl Trickle {
    pub fn new(idle: Duration) -> Trickle {
        Trickle { idle, window: None }
    }

    /// After a read of `n` bytes: true when the connection is to be cut.
    pub fn after_read(&mut self, n: usize, in_progress: bool, now: Instant) -> bool {
        if !in_progress {
            self.window = None;
            return false;
        }
        let (start, bytes) = self.window.get_or_insert((now, 0));
        *bytes += n as u64;
        if now.duration_since(*start) < self.idle {
            return false;
        }
        if *bytes < self.idle.as_secs().saturating_mul(MIN_BYTES_PER_SECOND) {
            return true;
        }
        self.window = Some((now, 0));
        false
    }

    /// labfeed was busy for `spent` (a commit): the peer is not to blame.
    pub fn excuse(&mut self, spent: Duration) {
        if let Some((start, _)) = &mut self.window {
            *start += spent;
        }
    }
}

/// Refusals since the daemon started, per listener, for `labfeed status`
/// (written to `<database>.peers`), and when each kind was last logged.
pub struct Refusals {
    database: PathBuf,
    started: jiff::Timestamp,
    state: Mutex<RefusalState>,
}

#[derive(Default)]
struct RefusalState {
    by_listener: BTreeMap<SocketAddr, Counts>,
    logged: HashMap<(SocketAddr, IpAddr, Refusal), Instant>,
    dirty: bool,
}

#[derive(Default)]
struct Counts {
    not_allowed: u64,
    over_cap: u64,
    over_budget: u64,
    last: Option<(IpAddr, jiff::Timestamp)>,
}

impl Refusals {
    /// Counting from zero; a file left by an earlier run is removed.
    pub fn new(database: PathBuf) -> Arc<Refusals> {
        if let Err(e) = clear_refused_peers(&database) {
            warn!(error = %e, "cannot remove the refused-peers file beside the database");
        }
        Arc::new(Refusals { database, started: jiff::Timestamp::now(), state: Mutex::default() })
    }

    /// Count a refusal; true when it is to be logged (once a minute per
    /// listener, address and kind).
    pub fn refused(&self, listener: SocketAddr, ip: IpAddr, why: Refusal) -> bool {
        let now = Instant::now();
        let mut state = lock(&self.state);
        let counts = state.by_listener.entry(listener).or_default();
        match why {
            Refusal::NotAllowed => counts.not_allowed += 1,
            Refusal::OverCap => counts.over_cap += 1,
            Refusal::OverBudget => counts.over_budget += 1,
        }
        counts.last = Some((ip, jiff::Timestamp::now()));
        state.dirty = true;
        if state.logged.len() >= PRUNE_AT {
            state.logged.retain(|_, at| now.duration_since(*at) < REFUSAL_LOG_EVERY);
        }
        match state.logged.get(&(listener, ip, why)) {
            Some(at) if now.duration_since(*at) < REFUSAL_LOG_EVERY => false,
            _ => {
                state.logged.insert((listener, ip, why), now);
                true
            }
        }
    }

    /// The lines of the refusal file (what `status` prints).
    fn lines(&self) -> Vec<String> {
        let state = lock(&self.state);
        let second = |t: jiff::Timestamp| t.round(jiff::Unit::Second).unwrap_or(t);
        let total: u64 = state.by_listener.values().map(|c| c.not_allowed + c.over_cap + c.over_budget).sum();
        let mut lines = vec![format!("refused connections since {}: {total}", second(self.started))];
        for (listener, c) in &state.by_listener {
            let mut line = format!(
                "  tcp:{listener}: {} not in allow, {} over a connection cap, {} over the byte budget",
                c.not_allowed, c.over_cap, c.over_budget
            );
            if let Some((ip, at)) = c.last {
                line.push_str(&format!("; last {ip} at {}", second(at)));
            }
            lines.push(line);
        }
        lines
    }

    /// Rewrite the refusal file when counts changed, at most every few
    /// seconds, until `stop`.
    pub async fn keep_file(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(FILE_EVERY) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            if !std::mem::take(&mut lock(&self.state).dirty) {
                continue;
            }
            if let Err(e) = record_refused_peers(&self.database, &self.lines()) {
                warn!(error = %e, "cannot write the refused-peers file beside the database");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn the_last_slots_go_to_addresses_holding_none() {
        let c = Connections::default();
        let mut held = Vec::new();
        for peer in 2..=5 {
            while let Ok(slot) = c.take(ip(peer)) {
                held.push(slot);
            }
        }
        // Three greedy peers at 4, the fourth at 1: 13 of 16.
        assert_eq!(held.len(), 13);
        assert!(c.take(ip(5)).unwrap_err().contains("kept for addresses holding none"));
        let analyzer = c.take(ip(1)).expect("an address holding none still gets in");
        held.extend([c.take(ip(6)).unwrap(), c.take(ip(7)).unwrap()]);
        assert!(c.take(ip(8)).unwrap_err().contains("all 16"));
        drop(analyzer);
        assert!(c.take(ip(8)).is_ok(), "a slot given back is free again");
    }

    #[test]
    fn the_budget_lets_through_what_fits_and_renews_each_hour() {
        let b = Budget::new(100);
        let t = Instant::now();
        assert_eq!(b.charge(ip(1), 60, t), 60);
        assert_eq!(b.charge(ip(1), 60, t), 40);
        assert!(b.exhausted(ip(1), t));
        assert_eq!(b.charge(ip(1), 1, t), 0);
        assert!(!b.exhausted(ip(2), t), "per address");
        assert_eq!(b.charge(ip(1), 60, t + HOUR), 60);
    }

    #[test]
    fn a_trickle_is_cut_and_a_9600_baud_sender_is_not() {
        let idle = Duration::from_secs(2);
        let t = Instant::now();
        let mut slow = Trickle::new(idle);
        let cut = (0..10).map(|s| slow.after_read(1, true, t + Duration::from_secs(s))).position(|cut| cut);
        assert_eq!(cut, Some(2), "a byte a second is cut after idle_seconds");
        let mut serial = Trickle::new(idle);
        assert!((0..600).all(|s| !serial.after_read(96, true, t + Duration::from_millis(100 * s))));
        // A commit of 10 s in the middle of a message is not the sender's fault.
        let mut fair = Trickle::new(idle);
        assert!(!fair.after_read(100, true, t));
        fair.excuse(Duration::from_secs(10));
        assert!(!fair.after_read(100, true, t + Duration::from_secs(11)));
        // Between messages there is no floor.
        assert!(!fair.after_read(0, false, t + Duration::from_secs(60)));
    }
}
