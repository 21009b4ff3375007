//! The one retry rhythm of the daemon: a source that fails (an inbox that
//! vanished, a port that cannot be bound or opened), or a database server
//! that is away, is retried after 1 s, then 2, 4 … up to 30 s, and at once
//! again after it worked.

use std::time::Duration;

use tokio::sync::watch;

const FIRST: Duration = Duration::from_secs(1);
const LONGEST: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff { next: FIRST }
    }
}

impl Backoff {
    /// How long the next [`Backoff::wait`] sleeps (for the log line).
    pub fn delay(&self) -> Duration {
        self.next
    }

    /// The source worked: the next failure is retried soon again.
    pub fn reset(&mut self) {
        self.next = FIRST;
    }

    /// The current delay, lengthening the next one (for a caller that
    /// cannot sleep, such as the writer thread, which keeps answering).
    pub fn step(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(LONGEST);
        delay
    }

    /// Sleep the current delay, then lengthen it. `false` when `stop` turned
    /// true first: the caller returns instead of retrying.
    pub async fn wait(&mut self, stop: &mut watch::Receiver<bool>) -> bool {
        let delay = self.step();
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = stop.wait_for(|s| *s) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn doubles_to_thirty_seconds_resets_and_yields_to_stop() {
        let (stop_tx, mut stop) = watch::channel(false);
        let mut backoff = Backoff::default();
        let mut slept = Vec::new();
        for _ in 0..7 {
            let before = tokio::time::Instant::now();
            assert!(backoff.wait(&mut stop).await);
            slept.push(before.elapsed().as_secs());
        }
        assert_eq!(slept, [1, 2, 4, 8, 16, 30, 30]);
        backoff.reset();
        assert_eq!(backoff.delay(), FIRST);
        stop_tx.send(true).unwrap();
        assert!(!backoff.wait(&mut stop).await, "a stop ends the wait");
    }
}
