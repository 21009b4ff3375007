//! Matching a reported result to its participant, visit and MMTT minute, and
//! the checks that decide whether it is accepted, flagged or held (SPEC §6).
//!
//! Pure decisions: no database, no clock. The study data a decision needs
//! (the sample manifest, meal start times) comes through [`StudyData`]; what
//! depends on earlier results (duplicates, conflicts, corrections) is decided
//! by the ingest pipeline, which knows the slot's history.

use crate::local_time::{LocalTime, Placed, offset_text, place_near};
use crate::model::LabResult;
use crate::study::config::{Config, Instrument};
use crate::study::units::KnownAnalyte;
use crate::value::Comparator;

pub use crate::model::MismatchCode;

/// A problem found with a result, said so a data manager needs no raw file.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub code: MismatchCode,
    pub detail: String,
}

/// Where a sample ID was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchSource {
    Manifest,
    Pattern,
    /// A data manager's `resolve --assign`.
    Assigned,
}

/// The slot a sample belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleSlot {
    pub participant: String,
    pub visit: String,
    pub minute: i32,
    pub source: MatchSource,
}

/// The study data matching reads (implemented by the store).
pub trait StudyData {
    /// The sample manifest row for `sample_id`.
    fn manifest_sample(&self, sample_id: &str) -> Option<SampleSlot>;
    fn participant_exists(&self, code: &str) -> bool;
    /// MMTT minute 0 of a visit, local time in the study zone (with its
    /// offset when it has one).
    fn meal_start(&self, participant: &str, visit: &str) -> Option<LocalTime>;
}

/// What matching and the per-result checks concluded.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// The configured instrument the result came from.
    pub instrument: Option<String>,
    pub analyte: Option<String>,
    pub slot: Option<SampleSlot>,
    /// Value in the analyte's canonical unit (the bound, for a censored value).
    pub value: Option<f64>,
    pub unit: Option<String>,
    pub comparator: Option<Comparator>,
    pub blq: bool,
    /// A QC result: kept apart, never a study result.
    pub qc: bool,
    /// The first problem that holds the result back, if any.
    pub hold: Option<Finding>,
    /// Holding problems after the first, in check order: what a data
    /// manager who accepts the first one has not seen yet.
    pub further_holds: Vec<Finding>,
    /// Problems that accept the value and flag it.
    pub flags: Vec<Finding>,
    /// The offset chosen for a collection time sent without one that the
    /// study zone has twice (the occurrence nearer the nominal minute), so
    /// the observation records which instant was read.
    pub collected_offset: Option<jiff::tz::Offset>,
}

/// Glucose at minute 0 outside this range (mmol/L) is a protocol-deviation candidate.
pub const PRETEST_GLUCOSE_MMOL_L: (f64, f64) = (3.9, 11.1);

/// The instrument a result came from: the link's own for serial/TCP (the
/// header's sender is only logged there), else the one whose `sender` matches.
pub fn resolve_instrument<'c>(config: &'c Config, link: Option<&str>, sender: Option<&str>) -> Option<&'c Instrument> {
    match link {
        Some(name) => config.instrument(name),
        None => sender.and_then(|s| config.instrument_by_sender(s)),
    }
}

/// Match `result` and run every check that does not depend on earlier results.
pub fn assess(
    config: &Config,
    instrument: Option<&Instrument>,
    sender: Option<&str>,
    result: &LabResult,
    study: &dyn StudyData,
) -> Assessment {
    assess_with(config, instrument, sender, result, study, || match_sample(config, result.sample_id.as_deref(), study))
}

/// Like [`assess`], for a result a data manager has assigned to `slot`: the
/// sample ID is not looked up, every other check runs.
pub fn assess_in_slot(
    config: &Config,
    instrument: Option<&Instrument>,
    sender: Option<&str>,
    result: &LabResult,
    slot: SampleSlot,
    study: &dyn StudyData,
) -> Assessment {
    assess_with(config, instrument, sender, result, study, || Ok(slot))
}

fn assess_with(
    config: &Config,
    instrument: Option<&Instrument>,
    sender: Option<&str>,
    result: &LabResult,
    study: &dyn StudyData,
    find_slot: impl FnOnce() -> Result<SampleSlot, String>,
) -> Assessment {
    let mut a = Assessment {
        instrument: instrument.map(|i| i.name.clone()),
        analyte: None,
        slot: None,
        value: None,
        unit: None,
        comparator: result.comparator,
        blq: false,
        qc: result.qc,
        hold: None,
        further_holds: Vec::new(),
        flags: Vec::new(),
        collected_offset: None,
    };
    let Some(instrument) = instrument else {
        a.hold = Some(Finding {
            code: MismatchCode::UnknownInstrument,
            detail: format!(
                "sender {} is not a configured instrument ([[instruments]] sender); value not kept: add the instrument \
                 to the configuration, then {REDELIVER}",
                quoted(sender.or(result.sender.as_deref()))
            ),
        });
        return a;
    };
    let test = result.test_code.as_deref();
    a.analyte = test.and_then(|t| instrument.tests.get(t)).cloned();
    if a.qc {
        return a;
    }
    let Some(analyte) = a.analyte.clone() else {
        a.hold = Some(Finding {
            code: MismatchCode::UnknownTest,
            detail: format!(
                "test code {} is not mapped for instrument {}{}; map it in [[instruments]] tests, then {REDELIVER}",
                quoted(test),
                instrument.name,
                if instrument.keep_comments { "" } else { "; value not kept: the test is not mapped" }
            ),
        });
        return a;
    };
    let slot = match find_slot() {
        Ok(slot) => slot,
        Err(detail) => {
            a.hold = Some(Finding { code: MismatchCode::UnknownSample, detail });
            return a;
        }
    };
    a.slot = Some(slot.clone());
    a.collected_offset = match read_collection_time(config, &slot, result, study) {
        Some(CollectionTime { placed: Placed::Chosen { offset, .. }, .. }) => Some(offset),
        _ => None,
    };
    let converted = convert(config, &analyte, result);
    if let Ok((value, unit)) = &converted {
        a.value = Some(*value);
        a.unit = Some(unit.clone());
        a.blq = is_blq(config, &analyte, *value, result.comparator);
    }
    let patient = message_patient(result, study);
    let mut holds = holding_problems(config, instrument, &analyte, &slot, result, patient, &converted).into_iter();
    a.hold = holds.next();
    a.further_holds = holds.collect();
    if a.hold.is_none() {
        a.flags = flag_checks(config, instrument, &analyte, &slot, result, a.value, study);
    }
    a
}

/// What to do after a configuration fix: an identical re-delivery is read
/// again with it and closes the mismatch (the ingest pipeline does that).
pub const REDELIVER: &str = "drop the file in the inbox again or `labfeed ingest` it (the same content is read again with the new configuration)";

fn quoted(s: Option<&str>) -> String {
    s.map_or_else(|| "(none)".to_owned(), |s| format!("{s:?}"))
}

/// The manifest first, then `samples.id_pattern`.
pub fn match_sample(config: &Config, sample_id: Option<&str>, study: &dyn StudyData) -> Result<SampleSlot, String> {
    let Some(id) = sample_id else {
        return Err("the result carries no sample ID (ASTM O.3/O.4, HL7 SPM-2/OBR-3/OBR-2)".to_owned());
    };
    if let Some(slot) = study.manifest_sample(id) {
        return Ok(slot);
    }
    let Some(pattern) = &config.sample_id_pattern else {
        return Err(format!("sample {id:?} is not in the sample manifest (and no samples.id_pattern is configured)"));
    };
    let Some(caps) = pattern.captures(id) else {
        return Err(format!("sample {id:?} is not in the sample manifest and does not match samples.id_pattern"));
    };
    let group = |name: &str| caps.name(name).map(|m| m.as_str().to_owned()).unwrap_or_default();
    let (participant, visit) = (group("participant"), group("visit"));
    let Ok(minute) = group("minute").parse::<i32>() else {
        return Err(format!("sample {id:?}: the minute in the sample ID is not a whole number"));
    };
    if !study.participant_exists(&participant) {
        return Err(format!("sample {id:?} names participant {participant}, who is not in the participant list"));
    }
    if !config.accepts_visit(&visit) {
        return Err(format!("sample {id:?} names visit {visit}, which is not a configured visit"));
    }
    Ok(SampleSlot { participant, visit, minute, source: MatchSource::Pattern })
}

/// The value in the analyte's canonical unit, or why it cannot be had.
fn convert(config: &Config, analyte: &str, result: &LabResult) -> Result<(f64, String), Finding> {
    let canonical = config.analytes.get(analyte).map(|a| a.unit.clone()).unwrap_or_default();
    let Some(reported_unit) = result.unit.as_deref() else {
        return Err(Finding {
            code: MismatchCode::UnknownUnit,
            detail: format!("no unit was reported; {analyte} needs a unit convertible to {canonical}"),
        });
    };
    let Some(factor) = crate::study::units::analyte_factor(analyte, reported_unit, &canonical) else {
        return Err(Finding {
            code: MismatchCode::UnknownUnit,
            detail: format!("unit {reported_unit:?} cannot be converted to {canonical} for {analyte}"),
        });
    };
    let Some(number) = result.numeric.as_ref().and_then(|n| n.to_f64()) else {
        return Err(Finding {
            code: MismatchCode::NonNumeric,
            detail: format!("value {} is not a number", quoted(result.value.as_deref())),
        });
    };
    let value = number * factor;
    if !value.is_finite() {
        // Held here, or the store would refuse it and roll back everything with it.
        return Err(Finding {
            code: MismatchCode::Implausible,
            detail: format!(
                "value {} {reported_unit} is too large to convert to {canonical}",
                quoted(result.value.as_deref())
            ),
        });
    }
    Ok((value, canonical))
}

/// Below the LLOQ: an exact value under it, or a `<`/`<=` bound at or under it
/// (a censored value is never turned into an exact one).
fn is_blq(config: &Config, analyte: &str, value: f64, comparator: Option<Comparator>) -> bool {
    let lloq = config.analytes.get(analyte).and_then(|a| a.lloq);
    let below_bound = matches!(comparator, Some(Comparator::Lt | Comparator::Le));
    match lloq {
        Some(lloq) => (comparator.is_none() && value < lloq) || (below_bound && value <= lloq),
        None => below_bound,
    }
}

/// The message's patient: the first patient ID that is a study participant
/// (the one repetition the stored copy keeps), else the first sent.
fn message_patient<'r>(result: &'r LabResult, study: &dyn StudyData) -> Option<&'r str> {
    let ids = &result.patient_ids;
    ids.iter().find(|id| study.participant_exists(id)).or(ids.first()).map(String::as_str)
}

/// Every problem that holds the result back, in check order.
fn holding_problems(
    config: &Config,
    instrument: &Instrument,
    analyte: &str,
    slot: &SampleSlot,
    result: &LabResult,
    patient: Option<&str>,
    converted: &Result<(f64, String), Finding>,
) -> Vec<Finding> {
    let mut found = Vec::new();
    if let Some(patient) = patient
        && patient != slot.participant
    {
        // The patient ID itself is not repeated: it may be a hospital number.
        found.push(Finding {
            code: MismatchCode::ParticipantConflict,
            detail: format!(
                "the message's patient ID differs from participant {} of sample {} ({})",
                slot.participant,
                result.sample_id.as_deref().unwrap_or(""),
                match slot.source {
                    MatchSource::Manifest => "sample manifest",
                    MatchSource::Pattern => "sample ID pattern",
                    MatchSource::Assigned => "assigned by a data manager",
                }
            ),
        });
    }
    if !config.mmtt.timepoints.contains(&slot.minute) {
        let schedule: Vec<String> = config.mmtt.timepoints.iter().map(i32::to_string).collect();
        found.push(Finding {
            code: MismatchCode::UnscheduledTimepoint,
            detail: format!("minute {} is not an MMTT timepoint ({})", slot.minute, schedule.join(", ")),
        });
    }
    match result.status.as_deref().map(str::trim) {
        Some("F" | "C") => {}
        status => {
            found.push(Finding {
                code: MismatchCode::NotFinal,
                detail: format!(
                    "result status {} from {}: only F (final) and C (correction) are accepted",
                    status_words(status),
                    instrument.name
                ),
            });
        }
    }
    let (value, unit) = match converted {
        Ok(ok) => ok,
        Err(finding) => {
            found.push(finding.clone());
            return found;
        }
    };
    if let Some([low, high]) = config.analytes.get(analyte).and_then(|a| a.plausible)
        && !(low..=high).contains(value)
    {
        found.push(Finding {
            code: MismatchCode::Implausible,
            detail: format!(
                "{analyte} {} {unit} (reported {} {}) is outside the plausible range {low}–{high} {unit}",
                round4(*value),
                result.value.as_deref().unwrap_or(""),
                result.unit.as_deref().unwrap_or("")
            ),
        });
    }
    found
}

fn status_words(status: Option<&str>) -> String {
    match status {
        None | Some("") => "(empty)".to_owned(),
        Some(s) => {
            let meaning = match s {
                "P" => " (preliminary)",
                "X" => " (cannot be done)",
                "I" => " (pending)",
                "R" => " (previously transmitted / not verified)",
                "D" => " (delete)",
                "W" => " (posted to the wrong patient)",
                "S" => " (partial)",
                "U" => " (changed to final without a value)",
                _ => "",
            };
            format!("{s}{meaning}")
        }
    }
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

/// The checks that accept a value and flag it (OUT_OF_WINDOW, PRETEST_GLUCOSE).
pub fn flag_checks(
    config: &Config,
    instrument: &Instrument,
    analyte: &str,
    slot: &SampleSlot,
    result: &LabResult,
    value: Option<f64>,
    study: &dyn StudyData,
) -> Vec<Finding> {
    let mut found = Vec::new();
    if instrument.trust_collection_time
        && let Some(finding) = window_check(config, slot, result, study)
    {
        found.push(finding);
    }
    if KnownAnalyte::from_name(analyte) == Some(KnownAnalyte::Glucose)
        && slot.minute == 0
        && let (Some(value), Some(unit)) = (value, config.analytes.get(analyte).map(|a| a.unit.as_str()))
        && let Some(mmol) = KnownAnalyte::Glucose.factor(unit, "mmol/L").map(|f| value * f)
    {
        let (low, high) = PRETEST_GLUCOSE_MMOL_L;
        if !(low..=high).contains(&mmol) {
            found.push(Finding {
                code: MismatchCode::PretestGlucose,
                detail: format!(
                    "glucose {} mmol/L at minute 0 is outside the pre-test range {low}–{high} mmol/L (the test should have been rescheduled)",
                    round4(mmol)
                ),
            });
        }
    }
    found
}

/// The offset a repeated local collection time is read with at `slot`, as
/// [`assess`] chooses it (`None` when there is no choice to make): read
/// again when the meal start or the minute changes.
pub fn chosen_offset(
    config: &Config,
    slot: &SampleSlot,
    result: &LabResult,
    study: &dyn StudyData,
) -> Option<jiff::tz::Offset> {
    match read_collection_time(config, slot, result, study)?.placed {
        Placed::Chosen { offset, .. } => Some(offset),
        _ => None,
    }
}

/// A collection time read against its slot's meal start.
struct CollectionTime {
    zone: jiff::tz::TimeZone,
    meal_at: jiff::Timestamp,
    placed: Placed,
}

/// Read the collection time: by its own offset when it has one, else in the
/// study zone, a repeated local time as the occurrence nearer the nominal
/// minute (SPEC §7 "Local times"). `None` without a meal start, a collection
/// time to the minute, or a zone.
fn read_collection_time(
    config: &Config,
    slot: &SampleSlot,
    result: &LabResult,
    study: &dyn StudyData,
) -> Option<CollectionTime> {
    let collected = result.collected_at?;
    let meal_start = study.meal_start(&slot.participant, &slot.visit)?;
    let zone = jiff::tz::TimeZone::get(&config.study.timezone).ok()?;
    let meal_at = meal_start.to_instant(&zone)?;
    let placed = if collected.offset_minutes.is_some() {
        Placed::At(collected.to_instant(&zone)?)
    } else {
        let nominal = meal_at.checked_add(jiff::SignedDuration::from_mins(i64::from(slot.minute))).ok()?;
        place_near(&zone, collected.to_civil()?, nominal)?
    };
    Some(CollectionTime { zone, meal_at, placed })
}

/// OUT_OF_WINDOW: |actual − nominal| beyond the timepoint's window, or a
/// collection time the study zone skips (no instant is guessed for it). Not
/// checked without a meal start, a collection time to the minute, or a zone.
fn window_check(config: &Config, slot: &SampleSlot, result: &LabResult, study: &dyn StudyData) -> Option<Finding> {
    let read = read_collection_time(config, slot, result, study)?;
    let window = config.mmtt.window(slot.minute);
    let (collected_at, chosen) = match read.placed {
        Placed::At(at) => (at, None),
        Placed::Chosen { at, offset } => (at, Some(offset)),
        Placed::Skipped { before, after } => {
            let civil = result.collected_at.and_then(|t| t.to_civil())?;
            return Some(Finding {
                code: MismatchCode::OutOfWindow,
                detail: format!(
                    "collected {} on {}, a local time that does not exist in {} (the clocks jump from {} to {} over it); the draw time cannot be checked against nominal {} ± {window} min",
                    civil.strftime("%H:%M"),
                    civil.strftime("%Y-%m-%d"),
                    config.study.timezone,
                    offset_text(before),
                    offset_text(after),
                    slot.minute,
                ),
            });
        }
    };
    let seconds = collected_at.duration_since(read.meal_at).as_secs();
    let actual = seconds as f64 / 60.0;
    if (actual - f64::from(slot.minute)).abs() <= f64::from(window) {
        return None;
    }
    let local = read.zone.to_datetime(collected_at);
    let mut clock = format!("{:02}:{:02}", local.hour(), local.minute());
    let carried = result.collected_at.is_some_and(|t| t.offset_minutes.is_some());
    if let Some(offset) = chosen {
        clock.push_str(&format!(" ({}, the occurrence nearer the nominal minute)", offset_text(offset)));
    } else if carried {
        // Shown (the study zone's offset at that instant), so a time in a
        // repeated hour reads unambiguously.
        clock.push_str(&format!(" ({})", offset_text(read.zone.to_offset(collected_at))));
    }
    let relation = if seconds >= 0 {
        format!("{} min after meal start", (actual).round() as i64)
    } else {
        format!("{} min before meal start", (-actual).round() as i64)
    };
    Some(Finding {
        code: MismatchCode::OutOfWindow,
        detail: format!("collected {clock}, {relation}; nominal {} ± {window} min", slot.minute),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;
    use crate::timestamp::Timestamp;
    use crate::value::{Number, interpret};

    const CONFIG: &str = include_str!("../../config/labfeed.example.toml");

    /// An in-memory manifest: the study data a test needs, nothing else.
    #[derive(Default)]
    struct Manifest {
        samples: BTreeMap<String, (String, String, i32)>,
        participants: Vec<String>,
        meals: BTreeMap<(String, String), LocalTime>,
    }

    impl StudyData for Manifest {
        fn manifest_sample(&self, id: &str) -> Option<SampleSlot> {
            self.samples.get(id).map(|(p, v, m)| SampleSlot {
                participant: p.clone(),
                visit: v.clone(),
                minute: *m,
                source: MatchSource::Manifest,
            })
        }
        fn participant_exists(&self, code: &str) -> bool {
            self.participants.iter().any(|p| p == code)
        }
        fn meal_start(&self, p: &str, v: &str) -> Option<LocalTime> {
            self.meals.get(&(p.to_owned(), v.to_owned())).copied()
        }
    }

    fn study() -> Manifest {
        let mut m = Manifest { participants: vec!["U07".into(), "U08".into()], ..Manifest::default() };
        m.samples.insert("LAB-1".into(), ("U08".into(), "V2".into(), 60));
        m.meals.insert(("U07".into(), "V4".into()), "2026-03-02T08:30:00".parse().unwrap());
        m
    }

    fn config() -> Config {
        // The example trusts the central lab's times and not the e411's.
        Config::from_toml(CONFIG, Path::new("example.toml")).unwrap()
    }

    fn result(sample: &str, test: &str, value: &str, unit: &str) -> LabResult {
        let (comparator, numeric) = interpret(value, false);
        LabResult {
            sender: Some("CENTRALLAB".into()),
            sample_id: Some(sample.into()),
            test_code: Some(test.into()),
            value: Some(value.into()),
            comparator,
            numeric,
            unit: Some(unit.into()),
            status: Some("F".into()),
            ..LabResult::default()
        }
    }

    fn run(config: &Config, r: &LabResult) -> Assessment {
        let instrument = resolve_instrument(config, None, r.sender.as_deref());
        assess(config, instrument, r.sender.as_deref(), r, &study())
    }

    fn hold_code(a: &Assessment) -> Option<&'static str> {
        a.hold.as_ref().map(|f| f.code.as_str())
    }

    #[test]
    fn a_value_that_overflows_in_conversion_is_held_not_stored_as_infinity() {
        let c = Config::from_toml(
            &CONFIG.replacen("unit = \"mmol/L\"", "unit = \"mg/dL\"", 1).replace("[0.5, 50.0]", "[9.0, 900.0]"),
            Path::new("example.toml"),
        )
        .unwrap();
        let huge = format!("1{}", "0".repeat(307));
        let a = run(&c, &result("U07-V4-T30", "2345-7", &huge, "mmol/L"));
        assert_eq!(hold_code(&a), Some("IMPLAUSIBLE"), "{a:?}");
        assert_eq!(a.value, None);
    }

    #[test]
    fn censored_c_peptide_is_accepted_as_blq_without_becoming_a_number() {
        let c = config();
        let a = run(&c, &result("U07-V4-T30", "1986-9", "<0.010", "nmol/L"));
        assert_eq!(a.hold, None);
        assert_eq!(
            a.slot.as_ref().map(|s| (s.participant.as_str(), s.visit.as_str(), s.minute)),
            Some(("U07", "V4", 30))
        );
        assert_eq!(a.slot.as_ref().map(|s| s.source), Some(MatchSource::Pattern));
        assert_eq!(a.analyte.as_deref(), Some("c_peptide"));
        assert_eq!(a.comparator, Some(Comparator::Lt));
        assert_eq!(a.value, Some(0.010));
        assert!(a.blq);
        // An exact value below the LLOQ is BLQ too; one above is not.
        assert!(run(&c, &result("U07-V4-T30", "1986-9", "0.012", "nmol/L")).blq);
        assert!(!run(&c, &result("U07-V4-T30", "1986-9", "0.5", "nmol/L")).blq);
        // A `<` bound above the LLOQ stays censored but is not BLQ.
        let high_bound = run(&c, &result("U07-V4-T30", "1986-9", "<0.5", "nmol/L"));
        assert!(!high_bound.blq && high_bound.comparator == Some(Comparator::Lt));
    }

    #[test]
    fn units_convert_to_the_canonical_unit() {
        let c = config();
        let a = run(&c, &result("U07-V4-T30", "1986-9", "1.00", "ng/mL"));
        assert_eq!(a.value, Some(0.33109));
        assert_eq!(a.unit.as_deref(), Some("nmol/L"));
        let g = run(&c, &result("U07-V4-T30", "2345-7", "90.08", "mg/dL"));
        assert!((g.value.unwrap() - 5.0).abs() < 1e-9);
        assert_eq!(run(&c, &result("U07-V4-T30", "1986-9", "330", "pmol/L")).value, Some(0.33));
    }

    #[test]
    fn the_manifest_comes_before_the_pattern() {
        let a = run(&config(), &result("LAB-1", "1986-9", "0.4", "nmol/L"));
        let slot = a.slot.unwrap();
        assert_eq!(
            (slot.participant.as_str(), slot.visit.as_str(), slot.minute, slot.source),
            ("U08", "V2", 60, MatchSource::Manifest)
        );
    }

    #[test]
    fn each_holding_check_has_its_code_and_a_plain_detail() {
        let c = config();
        let mut unknown_sender = result("U07-V4-T30", "1986-9", "0.4", "nmol/L");
        unknown_sender.sender = Some("OTHERLAB".into());
        let cases: Vec<(LabResult, &str, &str)> = vec![
            (unknown_sender, "UNKNOWN_INSTRUMENT", "\"OTHERLAB\""),
            (result("U07-V4-T30", "INS", "5", "mU/L"), "UNKNOWN_TEST", "\"INS\""),
            (result("X99", "1986-9", "0.4", "nmol/L"), "UNKNOWN_SAMPLE", "does not match samples.id_pattern"),
            (result("U99-V4-T30", "1986-9", "0.4", "nmol/L"), "UNKNOWN_SAMPLE", "not in the participant list"),
            (result("U07-V9-T30", "1986-9", "0.4", "nmol/L"), "UNKNOWN_SAMPLE", "not a configured visit"),
            (result("U07-V4-T45", "1986-9", "0.4", "nmol/L"), "UNSCHEDULED_TIMEPOINT", "minute 45"),
            (result("U07-V4-T30", "1986-9", "0.4", "mg/dL"), "UNKNOWN_UNIT", "\"mg/dL\""),
            (result("U07-V4-T30", "1986-9", "-----", "nmol/L"), "NON_NUMERIC", "\"-----\""),
            (result("U07-V4-T30", "1986-9", "25", "nmol/L"), "IMPLAUSIBLE", "outside the plausible range 0–20"),
        ];
        for (r, code, detail) in cases {
            let a = run(&c, &r);
            let hold = a.hold.unwrap_or_else(|| panic!("{code}: not held"));
            assert_eq!(hold.code.as_str(), code);
            assert!(hold.detail.contains(detail), "{code}: {}", hold.detail);
        }
        let mut no_sample = result("", "1986-9", "0.4", "nmol/L");
        no_sample.sample_id = None;
        assert_eq!(hold_code(&run(&c, &no_sample)), Some("UNKNOWN_SAMPLE"));
        let mut no_unit = result("U07-V4-T30", "1986-9", "0.4", "");
        no_unit.unit = None;
        assert_eq!(hold_code(&run(&c, &no_unit)), Some("UNKNOWN_UNIT"));
        for status in [Some("P"), Some("X"), None] {
            let mut r = result("U07-V4-T30", "1986-9", "0.4", "nmol/L");
            r.status = status.map(str::to_owned);
            assert_eq!(hold_code(&run(&c, &r)), Some("NOT_FINAL"), "{status:?}");
        }
        let mut corrected = result("U07-V4-T30", "1986-9", "0.4", "nmol/L");
        corrected.status = Some("C".into());
        assert_eq!(run(&c, &corrected).hold, None);
    }

    #[test]
    fn a_different_patient_id_is_a_conflict_and_is_not_repeated_in_the_detail() {
        let mut r = result("U07-V4-T30", "1986-9", "0.4", "nmol/L");
        r.patient_ids = vec!["19650102-1234".into()];
        let hold = run(&config(), &r).hold.unwrap();
        assert_eq!(hold.code, MismatchCode::ParticipantConflict);
        assert!(!hold.detail.contains("19650102"), "{}", hold.detail);
        r.patient_ids = vec!["U07".into()];
        assert_eq!(run(&config(), &r).hold, None);
        // The study code may follow a national ID: it is the message's patient.
        r.patient_ids = vec!["19650102-1234".into(), "U07".into()];
        assert_eq!(run(&config(), &r).hold, None);
        r.patient_ids = vec!["19650102-1234".into(), "U05".into()];
        assert_eq!(hold_code(&run(&config(), &r)), Some("PARTICIPANT_CONFLICT"));
    }

    #[test]
    fn out_of_window_is_flagged_with_the_clock_time_and_accepted() {
        let c = config();
        let mut r = result("U07-V4-T30", "1986-9", "0.4", "nmol/L");
        r.collected_at = Timestamp::parse("20260302085200").unwrap();
        let a = run(&c, &r);
        assert_eq!(a.hold, None);
        assert_eq!(a.flags.len(), 1);
        assert_eq!(a.flags[0].code, MismatchCode::OutOfWindow);
        assert_eq!(a.flags[0].detail, "collected 08:52, 22 min after meal start; nominal 30 ± 3 min");
        // Within ±3 min: no flag. With an explicit offset: read as that instant.
        r.collected_at = Timestamp::parse("20260302090200").unwrap();
        assert!(run(&c, &r).flags.is_empty());
        r.collected_at = Timestamp::parse("20260302080200+0000").unwrap(); // 09:02 Stockholm
        assert!(run(&c, &r).flags.is_empty());
        // A carried offset is shown, as the study zone reads that instant.
        r.collected_at = Timestamp::parse("20260302075200+0000").unwrap(); // 08:52 Stockholm
        assert_eq!(
            run(&c, &r).flags[0].detail,
            "collected 08:52 (+01:00), 22 min after meal start; nominal 30 ± 3 min"
        );
        // An instrument whose O.8 is a registration time is not window-checked.
        let mut e411 = r.clone();
        e411.sender = Some("cobas-e411".into());
        e411.test_code = Some("CPEP".into());
        e411.collected_at = Timestamp::parse("20260302120000").unwrap();
        assert!(run(&c, &e411).flags.is_empty());
    }

    fn at_meal(meal: &str, sample: &str, collected: &str) -> Assessment {
        let c = config();
        let mut m = study();
        m.meals.insert(("U07".into(), "V4".into()), meal.parse().unwrap());
        let mut r = result(sample, "1986-9", "0.4", "nmol/L");
        r.collected_at = Timestamp::parse(collected).unwrap();
        let instrument = resolve_instrument(&c, None, r.sender.as_deref());
        assess(&c, instrument, r.sender.as_deref(), &r, &m)
    }

    #[test]
    fn a_repeated_collection_time_is_read_near_its_nominal_minute_and_the_choice_kept() {
        let second = jiff::tz::Offset::constant(1);
        let first = jiff::tz::Offset::constant(2);
        // Meal at 01:50 (+02:00): the 90-minute draw at 02:20 is the second 02:20.
        let a = at_meal("2026-10-25T01:50", "U07-V4-T90", "20261025022000");
        assert_eq!((a.hold.as_ref(), a.flags.as_slice()), (None, &[][..]), "{a:?}");
        assert_eq!(a.collected_offset, Some(second));
        // The 30-minute draw at 02:20 is the first one.
        let a = at_meal("2026-10-25T01:50", "U07-V4-T30", "20261025022000");
        assert!(a.flags.is_empty(), "{a:?}");
        assert_eq!(a.collected_offset, Some(first));
        // A meal start with an offset is read as that instant: 02:30+01:00 is
        // the second 02:30, so the 30-minute draw at 03:00 is on time.
        let a = at_meal("2026-10-25T02:30+01:00", "U07-V4-T30", "20261025030000");
        assert!(a.flags.is_empty() && a.collected_offset.is_none(), "{a:?}");
        // A collection time with its own offset is never re-read.
        let a = at_meal("2026-10-25T01:50", "U07-V4-T90", "20261025022000+0200");
        assert_eq!(a.flags.len(), 1, "{a:?}");
        assert_eq!(a.collected_offset, None);
        // Off the window either way: flagged, saying which occurrence was read.
        let a = at_meal("2026-10-25T01:50", "U07-V4-T120", "20261025022000");
        assert_eq!(a.collected_offset, Some(second));
        assert_eq!(
            a.flags[0].detail,
            "collected 02:20 (+01:00, the occurrence nearer the nominal minute), 90 min after meal start; nominal 120 ± 5 min"
        );
    }

    #[test]
    fn a_collection_time_the_zone_skips_is_flagged_not_shifted() {
        let a = at_meal("2026-03-29T01:50", "U07-V4-T30", "20260329022000");
        assert_eq!(a.hold, None, "the value is accepted");
        assert_eq!(a.flags.len(), 1, "{a:?}");
        assert_eq!(a.flags[0].code, MismatchCode::OutOfWindow);
        assert_eq!(
            a.flags[0].detail,
            "collected 02:20 on 2026-03-29, a local time that does not exist in Europe/Stockholm (the clocks jump from +01:00 to +02:00 over it); the draw time cannot be checked against nominal 30 ± 3 min"
        );
        assert_eq!(a.collected_offset, None);
        // Sent with an offset, it is an instant like any other: 02:20+01:00 is 03:20 CEST.
        assert!(at_meal("2026-03-29T01:50", "U07-V4-T30", "20260329022000+0100").flags.is_empty());
    }

    #[test]
    fn pretest_glucose_is_flagged_only_at_minute_zero() {
        let c = config();
        let high = run(&c, &result("U07-V4-T0", "14749-6", "12.4", "mmol/L"));
        assert_eq!(high.hold, None);
        assert_eq!(high.flags.iter().map(|f| f.code).collect::<Vec<_>>(), [MismatchCode::PretestGlucose]);
        assert!(high.flags[0].detail.contains("12.4 mmol/L"), "{}", high.flags[0].detail);
        assert!(run(&c, &result("U07-V4-T0", "2345-7", "99", "mg/dL")).flags.is_empty());
        assert_eq!(run(&c, &result("U07-V4-T0", "2345-7", "60", "mg/dL")).flags.len(), 1);
        assert!(run(&c, &result("U07-V4-T30", "14749-6", "12.4", "mmol/L")).flags.is_empty());
    }

    #[test]
    fn qc_results_are_recognised_and_not_checked_as_study_results() {
        let mut r = result("PCCC2", "1986-9", "1.2", "nmol/L");
        r.qc = true;
        let a = run(&config(), &r);
        assert!(a.qc);
        assert_eq!(a.hold, None);
        assert_eq!(a.slot, None);
    }

    #[test]
    fn numbers_from_the_parser_are_used_as_is() {
        let mut r = result("U07-V4-T30", "1986-9", "0,40", "nmol/L");
        assert_eq!(hold_code(&run(&config(), &r)), Some("NON_NUMERIC"));
        r.numeric = Number::parse("0,40", true);
        assert_eq!(run(&config(), &r).value, Some(0.4));
    }
}
