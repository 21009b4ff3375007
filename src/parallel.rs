//! Parts of one input worked on by several threads and taken back in order,
//! so that a large file is parsed on every core. The formats cut the parts
//! where a piece parses alone exactly as within the whole; this module only
//! shares them out and keeps their order.

use std::sync::mpsc;

/// Visits every part in order. Part `i` goes to the caller's thread when
/// `i` is a multiple of `threads` (`visit` gets `None` and does the work
/// itself, as it would with one thread); the others are worked on ahead by
/// helper threads and `visit` gets their results. Parts are small, so that
/// what a helper holds stays in cache and its memory is reused; a helper
/// that cannot be started leaves its parts to the caller, so the outcome
/// never depends on the threads there are.
pub fn for_each_part<P: Sync, R: Send>(
    parts: &[P],
    threads: usize,
    work: impl Fn(&P) -> R + Sync,
    mut visit: impl FnMut(&P, Option<R>),
) {
    let helpers = threads.saturating_sub(1).min(parts.len().saturating_sub(1));
    if helpers == 0 {
        parts.iter().for_each(|part| visit(part, None));
        return;
    }
    let work = &work;
    std::thread::scope(|scope| {
        let mut lanes = Vec::new();
        for _ in 0..helpers {
            let (jobs, jobs_in) = mpsc::channel::<&P>();
            let (results_out, results) = mpsc::channel::<R>();
            let helper = std::thread::Builder::new().spawn_scoped(scope, move || {
                for job in jobs_in {
                    if results_out.send(work(job)).is_err() {
                        return;
                    }
                }
            });
            if helper.is_ok() {
                lanes.push((jobs, results));
            }
        }
        let turn = lanes.len() + 1;
        let lane_of = |i: usize| (i % turn).checked_sub(1);
        let mut sent = 0;
        for (i, part) in parts.iter().enumerate() {
            // Two turns ahead, so that no helper waits while the caller visits.
            while sent < parts.len() && sent <= i + 2 * turn {
                if let (Some(lane), Some(ahead)) = (lane_of(sent).and_then(|l| lanes.get(l)), parts.get(sent)) {
                    // A helper that has stopped answers nothing; its part is done below instead.
                    let _ = lane.0.send(ahead);
                }
                sent += 1;
            }
            let result = lane_of(i).and_then(|l| lanes.get(l)).and_then(|lane| lane.1.recv().ok());
            visit(part, result);
        }
        // Closing the job channels ends the helpers; the scope joins them.
        drop(lanes);
    });
}

/// The threads a command that parses large files should use: the cores the
/// operating system lets this process run on.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_visited_in_order_each_once_whatever_the_threads() {
        let parts: Vec<u32> = (0..103).collect();
        for threads in [0, 1, 2, 3, 8, 200] {
            let mut seen = Vec::new();
            let mut inline = 0;
            let workers = std::sync::Mutex::new(std::collections::HashSet::new());
            for_each_part(
                &parts,
                threads,
                |&p| {
                    if let Ok(mut w) = workers.lock() {
                        w.insert(std::thread::current().id());
                    }
                    u64::from(p) * 3
                },
                |&p, ahead| {
                    let value = ahead.unwrap_or_else(|| {
                        inline += 1;
                        u64::from(p) * 3
                    });
                    seen.push((p, value));
                },
            );
            let expected: Vec<(u32, u64)> = parts.iter().map(|&p| (p, u64::from(p) * 3)).collect();
            assert_eq!(seen, expected, "{threads} threads");
            let turn = threads.clamp(1, parts.len());
            assert_eq!(inline, parts.len().div_ceil(turn), "{threads} threads: the caller's share");
            let helpers = workers.lock().map(|w| w.len()).unwrap_or_default();
            assert_eq!(helpers, turn - 1, "{threads} threads");
        }
    }
}
