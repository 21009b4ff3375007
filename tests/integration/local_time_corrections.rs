//! A collection time in the repeated autumn hour is read as the occurrence
//! nearest its nominal minute, and that choice follows the meal start: when
//! the meal start arrives after the result, or changes, the recorded offset
//! (and so `export results` and `export lb`) follows the check (issue 10,
//! point 3, with point 1).

use super::support::{four_participants as study, hl7_at, import_csv as import, ingest_bytes};

/// Issue 10 point 3: "a collection time without an offset in a repeated hour
/// is read as the occurrence nearest its nominal minute, and the observation
/// records that choice". When the meal start is imported after the result
/// (or changed), the check places the time (its detail says "+01:00, the
/// occurrence nearer the nominal minute") but the observation keeps no offset
/// (or the old one), so `export results` shows a different instant from the
/// one the check used.
#[test]
fn the_chosen_occurrence_is_recorded_when_the_meal_start_comes_later() {
    let t = study();
    // 02:00 on 2026-10-25 happens twice in Stockholm (+02:00, then +01:00).
    ingest_bytes(&t, "a.hl7", hl7_at("T1", "U02-V0-T90", "20261025020000").as_bytes());
    // Meal start 01:30 (+02:00) = 23:30Z; 90 min later is 01:00Z = 02:00+01:00, the second.
    import(&t, "visits", "v1.csv", "participant,visit,meal_start\nU02,V0,2026-10-25T01:30\n");
    let results = String::from_utf8_lossy(&t.run(&["export", "results"]).stdout).into_owned();
    assert!(results.contains("2026-10-25T02:00:00+01:00"), "the second occurrence, recorded:\n{results}");
}

/// The same when a meal start changes: the result was placed at +01:00 (the
/// second 02:00) at ingest; after the meal start moves to 00:30 the nearer
/// occurrence is the first (+02:00), the check uses it (no OUT_OF_WINDOW),
/// but the observation, `export results` and `export lb` (LBDTC) keep +01:00,
/// 150 minutes after the new meal start.
#[test]
fn the_chosen_occurrence_follows_a_changed_meal_start() {
    let t = study();
    import(&t, "visits", "v1.csv", "participant,visit,meal_start\nU02,V0,2026-10-25T01:30\n");
    ingest_bytes(&t, "a.hl7", hl7_at("T3", "U02-V0-T90", "20261025020000").as_bytes());
    let results = String::from_utf8_lossy(&t.run(&["export", "results"]).stdout).into_owned();
    assert!(results.contains("2026-10-25T02:00:00+01:00"), "{results}");
    // Meal start moved to 00:30 (+02:00) = 22:30Z; 90 min later is 00:00Z = 02:00+02:00, the first.
    import(&t, "visits", "v2.csv", "participant,visit,meal_start\nU02,V0,2026-10-25T00:30\n");
    let open = String::from_utf8_lossy(&t.run(&["report", "mismatches", "--format", "csv"]).stdout).into_owned();
    assert!(!open.contains("OUT_OF_WINDOW"), "{open}");
    let results = String::from_utf8_lossy(&t.run(&["export", "results"]).stdout).into_owned();
    assert!(results.contains("2026-10-25T02:00:00+02:00"), "now the first occurrence:\n{results}");
    let lb = String::from_utf8_lossy(&t.run(&["export", "lb"]).stdout).into_owned();
    assert!(!lb.contains("2026-10-25T02:00:00+01:00"), "{lb}");
}
