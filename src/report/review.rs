//! What `report mismatches` lists and the console's mismatch pages show:
//! the stored mismatches, the computed MISSING_RESULT rows, their history
//! and what the curves are drawn from, all read from one snapshot.

use anyhow::Context;

use crate::report::mismatches::{History, ReviewRow, review_rows_with_ids};
use crate::report::now::Now;
use crate::store::{MismatchId, MismatchReport, NotDoneMark, ResultRow, Scope, Slot, Store, Visit};
use crate::study::config::Config;
use crate::study::missing::{Absence, MissingResult, missing_results, not_done_results};

/// What `report mismatches` lists: the stored mismatches (open, or all) and
/// the computed MISSING_RESULT rows, with the visits and (for the HTML
/// curves) the current results, all read from one snapshot.
pub struct Review {
    pub stored: Vec<MismatchReport>,
    pub missing: Vec<MissingResult>,
    /// Slots marked not done (listed with `include_resolved` only).
    pub not_done: Vec<(MissingResult, NotDoneMark)>,
    /// The MISSING_RESULT id of each slot that has one.
    pub ids: std::collections::BTreeMap<Slot, MismatchId>,
    /// Every row's decisions, reopens and not-done marks.
    pub history: History,
    /// Read only for the curves (`with_curves`): the costliest query.
    pub results: Vec<ResultRow>,
    pub visits: Vec<Visit>,
    /// The time the missing results were computed for (the report's "as of").
    pub now: jiff::Timestamp,
    /// Where each decided value is now, and the not-done slots of each visit.
    pub whereabouts: Now,
    /// The data locks in force.
    pub locks: Vec<crate::store::Lock>,
    /// Slots whose value a data manager withdrew (marked on the curves).
    pub withdrawn: std::collections::BTreeSet<Slot>,
}

impl Review {
    pub fn load(config: &Config, store: &Store, include_resolved: bool, with_curves: bool) -> anyhow::Result<Review> {
        Review::load_in(config, store, include_resolved, with_curves, &Scope::Study)
    }

    /// [`Review::load`] of the rows of `scope` only.
    pub fn load_in(
        config: &Config,
        store: &Store,
        include_resolved: bool,
        with_curves: bool,
        scope: &Scope,
    ) -> anyhow::Result<Review> {
        let now = jiff::Timestamp::now();
        store
            .read(|r| {
                let stored = r.mismatch_report_in(include_resolved, scope)?;
                // `--all` says where each decided value is now: from the current results.
                let results: Vec<ResultRow> =
                    if with_curves || include_resolved { r.current_results_in(scope)? } else { Vec::new() };
                let visits = r.visits_in(scope)?;
                // The slots filled are those of the current results, when read.
                let states = if with_curves || include_resolved {
                    r.slot_states_filled(scope, results.iter().map(|c| c.slot.clone()).collect())?
                } else {
                    r.slot_states_in(scope)?
                };
                let missing = missing_results(config, &visits, &states, now);
                let mut not_done = not_done_results(config, &visits, &states, now);
                let never_received =
                    not_done.iter().filter(|(m, _)| m.absence == Absence::NotReceived).map(|(m, _)| m.slot());
                let never_received: Vec<Slot> = never_received.collect();
                let whereabouts = Now::new(&results, &stored, &never_received);
                if !include_resolved {
                    not_done.clear();
                }
                let signers = crate::report::wording::Signers::new(r.accounts()?);
                let history = History { decisions: r.decision_history_in(scope)?, signers };
                let locks = r.locks()?;
                Ok(Review {
                    stored,
                    missing,
                    not_done,
                    ids: states.ids,
                    withdrawn: states.withdrawn,
                    history,
                    results,
                    visits,
                    now,
                    whereabouts,
                    locks,
                })
            })
            .context("reading the mismatches")
    }

    /// Both kinds merged in report order, visits in configuration order
    /// (V2 before V10), as in `report auc` and `export lb`.
    pub fn rows(&self, config: &Config) -> Vec<ReviewRow<'_>> {
        let mut rows = review_rows_with_ids(&self.stored, &self.missing, &self.not_done, &self.ids);
        let rank = |visit: Option<&str>| match visit {
            None => (0, None),
            Some(v) => match config.visit_index(v) {
                Some(i) => (1, Some(i)),
                None => (2, None),
            },
        };
        // Stable: within a participant and visit, the minute and analyte order stays.
        rows.sort_by(|a, b| (a.participant(), rank(a.visit())).cmp(&(b.participant(), rank(b.visit()))));
        rows
    }
}
