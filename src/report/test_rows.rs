//! Stored rows for the report writers' unit tests, built one way so every
//! writer is tested against the same shape of data.

use crate::store::{ObservationId, ResolutionAction, ResolutionId, ResolutionRow, ResultId, ResultRow, Slot};

/// A decision by `dm` that names no place.
pub fn decided(id: i64, action: ResolutionAction, reason: &str, at: jiff::Timestamp) -> ResolutionRow {
    ResolutionRow {
        id: ResolutionId(id),
        action,
        participant: None,
        visit: None,
        minute: None,
        result_id: None,
        reason: reason.into(),
        resolved_by: "dm".into(),
        resolved_at: at,
    }
}

/// A first version of `slot` in nmol/L, accepted by labfeed.
pub fn accepted(slot: Slot, observation: i64, value: f64, reason: &str, at: jiff::Timestamp) -> ResultRow {
    ResultRow {
        id: ResultId(1),
        observation_id: ObservationId(observation),
        slot,
        value,
        unit: "nmol/L".into(),
        comparator: None,
        blq: false,
        version: 1,
        supersedes: None,
        accepted_at: at,
        accepted_by: "labfeed".into(),
        reason: reason.into(),
        withdrawn: false,
    }
}
