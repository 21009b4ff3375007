//! MISSING_RESULT (SPEC §6): a scheduled (minute, analyte) of a visit that has
//! a meal start and no accepted result. Computed for reports: it closes by
//! itself when the result arrives (or is assigned there). Only the slot's id
//! is stored (one per slot, allocated by the writers, see
//! `Tx::allocate_missing_slot_ids`), and a data manager's "not done" on it.
//! A slot marked not done is not missing any more (it is listed by
//! [`not_done_results`] instead), until a result arrives: then it is filled
//! and neither.
//!
//! Pure: the caller passes the visits, what the store says about the slots
//! and the time "now" (a visit whose meal has not started yet lacks nothing).

/// Why a scheduled slot has no current result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Absence {
    /// Nothing usable has arrived for it.
    NotReceived,
    /// A result for it is held back, waiting for a data manager (this mismatch).
    Held(MismatchId),
    /// A data manager took its value out (rejected or moved elsewhere).
    Withdrawn,
}

use crate::local_time::LocalTime;
use crate::model::{MismatchId, NotDoneMark, Slot, SlotStates, Visit};
use crate::study::config::Config;

/// One scheduled result that is not there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MissingResult {
    pub participant: String,
    pub visit: String,
    pub minute: i32,
    pub analyte: String,
    /// MMTT minute 0, local time in the study zone (offset kept when given).
    pub meal_start: crate::local_time::LocalTime,
    pub absence: Absence,
    /// Plain words for the report's `detail` column.
    pub detail: String,
}

impl MissingResult {
    /// The slot the result would fill.
    pub fn slot(&self) -> Slot {
        Slot::new(&self.participant, &self.visit, i64::from(self.minute), &self.analyte)
    }
}

/// Every scheduled (minute, analyte) of `mmtt.timepoints` × the configured
/// analytes, for each visit whose meal started before `now`, that has no
/// current result. Ordered by participant, visit, minute, analyte (the report order).
pub fn missing_results(
    config: &Config,
    visits: &[Visit],
    states: &SlotStates,
    now: jiff::Timestamp,
) -> Vec<MissingResult> {
    let mut all = empty_slots(config, visits, states, now);
    all.retain(|m| !states.not_done.contains_key(&m.slot()));
    all
}

/// The empty scheduled slots (as [`missing_results`] finds them) that a
/// data manager marked not done, with that mark: `export lb` writes them
/// as NOT DONE with the reason given.
pub fn not_done_results(
    config: &Config,
    visits: &[Visit],
    states: &SlotStates,
    now: jiff::Timestamp,
) -> Vec<(MissingResult, NotDoneMark)> {
    empty_slots(config, visits, states, now)
        .into_iter()
        .filter_map(|m| {
            let mark = states.not_done.get(&m.slot())?.clone();
            Some((m, mark))
        })
        .collect()
}

/// Whether a meal start (local study time) is at or before `now`: only then
/// can a visit lack anything. A time the zone cannot place counts as started.
pub fn meal_started(config: &Config, meal_start: LocalTime, now: jiff::Timestamp) -> bool {
    let zone = jiff::tz::TimeZone::get(&config.study.timezone).ok();
    match zone.and_then(|z| meal_start.to_instant(&z)) {
        Some(at) => at <= now,
        None => true,
    }
}

fn empty_slots(config: &Config, visits: &[Visit], states: &SlotStates, now: jiff::Timestamp) -> Vec<MissingResult> {
    let mut missing = Vec::new();
    for visit in visits {
        let Some(meal_start) = visit.meal_start else { continue };
        if !meal_started(config, meal_start, now) {
            continue;
        }
        for &minute in &config.mmtt.timepoints {
            for analyte in config.analytes.keys() {
                let slot = Slot::new(&visit.participant, &visit.visit, i64::from(minute), analyte);
                if states.filled.contains(&slot) {
                    continue;
                }
                let absence = match states.held.get(&slot) {
                    Some(id) => Absence::Held(*id),
                    None if states.withdrawn.contains(&slot) => Absence::Withdrawn,
                    None => Absence::NotReceived,
                };
                let why = match absence {
                    Absence::NotReceived => String::new(),
                    Absence::Held(id) => format!("; a result for it is held for review (mismatch {id})"),
                    Absence::Withdrawn => "; its value was withdrawn by a data manager".to_owned(),
                };
                missing.push(MissingResult {
                    participant: visit.participant.clone(),
                    visit: visit.visit.clone(),
                    minute,
                    analyte: analyte.clone(),
                    meal_start,
                    absence,
                    detail: format!(
                        "no accepted {analyte} result at minute {minute} of visit {} (meal start {}){why}",
                        visit.visit,
                        meal_start.iso_minutes()
                    ),
                });
            }
        }
    }
    missing.sort();
    missing
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const EXAMPLE: &str = include_str!("../../config/labfeed.example.toml");

    fn config() -> Config {
        Config::from_toml(EXAMPLE, Path::new("test.toml")).unwrap()
    }

    fn visit(participant: &str, code: &str, meal_start: Option<&str>) -> Visit {
        Visit {
            participant: participant.into(),
            visit: code.into(),
            meal_start: meal_start.map(|t| t.parse().unwrap()),
        }
    }

    fn now() -> jiff::Timestamp {
        "2026-06-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn every_scheduled_minute_and_analyte_without_a_result_is_listed() {
        let config = config();
        let analytes: Vec<&String> = config.analytes.keys().collect();
        let mut states = SlotStates::default();
        for &minute in &config.mmtt.timepoints {
            for analyte in &analytes {
                states.filled.insert(Slot::new("U01", "V0", i64::from(minute), analyte.as_str()));
            }
        }
        for minute in [30, 60, 90] {
            states.filled.remove(&Slot::new("U01", "V0", minute, "c_peptide"));
        }
        states.held.insert(Slot::new("U01", "V0", 60, "c_peptide"), MismatchId(12));
        states.withdrawn.insert(Slot::new("U01", "V0", 90, "c_peptide"));
        let visits = [visit("U01", "V0", Some("2026-03-02T08:30"))];
        let missing = missing_results(&config, &visits, &states, now());
        assert_eq!(missing.len(), 3, "{missing:?}");
        assert_eq!(missing[0].slot(), Slot::new("U01", "V0", 30, "c_peptide"));
        assert_eq!(
            missing[0].detail,
            "no accepted c_peptide result at minute 30 of visit V0 (meal start 2026-03-02T08:30)"
        );
        assert_eq!(
            [missing[0].absence, missing[1].absence, missing[2].absence],
            [Absence::NotReceived, Absence::Held(MismatchId(12)), Absence::Withdrawn]
        );
        assert!(missing[1].detail.ends_with("; a result for it is held for review (mismatch 12)"));
    }

    #[test]
    fn visits_without_a_meal_start_or_in_the_future_lack_nothing() {
        let config = config();
        let visits = [visit("U01", "V0", None), visit("U02", "V0", Some("2026-07-01T08:30"))];
        let none = SlotStates::default();
        assert!(missing_results(&config, &visits, &none, now()).is_empty());
        let all = missing_results(&config, &visits[1..], &none, "2026-07-02T00:00:00Z".parse().unwrap());
        assert_eq!(all.len(), config.mmtt.timepoints.len() * config.analytes.len());
        let mut sorted = all.clone();
        sorted.sort_by(|a, b| (a.minute, &a.analyte).cmp(&(b.minute, &b.analyte)));
        assert_eq!(all, sorted, "ordered by minute, then analyte");
    }
}
