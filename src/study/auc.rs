//! MMTT area under the curve (SPEC §3; reference notes `mmtt.md` §2).
//!
//! Per participant, visit and analyte, from the current accepted results:
//!
//! * **Linear trapezoid on the nominal minutes** of `mmtt.timepoints` that lie
//!   in `auc_from..=auc_to`. For 0, 15, 30, 60, 90, 120 this is the weighted
//!   sum `7.5·C0 + 15·C15 + 22.5·C30 + 30·C60 + 30·C90 + 15·C120`.
//!   `auc` is in unit·min, `auc_mean = auc / (auc_to − auc_from)` in the
//!   analyte's unit, and `ln(auc_mean + 1)` is the TrialNet analysis scale.
//! * **Minute 0** (`mmtt.baseline`): `zero` takes the 0-min value; `mean`
//!   takes the mean of the −10 and 0 min values. With `mean`, if either of the
//!   two is missing, minute 0 is **missing** (we never fall back silently to
//!   the other sample; the missing rule below then applies).
//! * **BLQ** (`blq = true`): `half_lloq` → LLOQ/2, `lloq` → LLOQ, `zero` → 0,
//!   with the LLOQ of `analytes.<name>.lloq`. An analyte without a configured
//!   LLOQ has no number to substitute, so its BLQ values are **missing**.
//! * **Other censored values**: a `<`/`<=` value that is not BLQ (censored
//!   above the LLOQ) and any `>`/`>=` value are **missing**: no number is
//!   invented for them.
//! * **Missing points** (`mmtt.missing`): `none` → no AUC if any timepoint in
//!   range is missing. `interpolate` → a missing interior point takes the value
//!   on the straight line, by time, between the nearest measured points before
//!   and after it: `v0 + (v1 − v0)·(t − t0)/(t1 − t0)` (the nearer neighbour
//!   weighs more; CpeptideTools swaps these weights). Consecutive missing
//!   interior points lie on the same line. A missing first or last point
//!   gives no AUC.
//! * `complete` is true only when no timepoint in range was missing;
//!   `missing_minutes` lists the missing ones (interpolated or not); `points`
//!   counts the timepoints in range that had a usable measured value.
//! * `delta_auc_mean` = this visit's `auc_mean` − the baseline visit's
//!   (`visits[].baseline = true`) for the same participant and analyte; none on
//!   the baseline visit itself or when either `auc_mean` is missing.
//!
//! Rows come in a neutral order: participant code, visit (configuration
//! order; visits not configured after, by code), analyte name.

use std::collections::BTreeMap;

use crate::model::ResultRow;
use crate::study::config::{BaselineSample, BlqRule, Config, MissingRule, Mmtt};
use crate::value::Comparator;

/// The AUC of one participant, visit and analyte.
#[derive(Debug, Clone, PartialEq)]
pub struct AucRow {
    pub participant: String,
    pub visit: String,
    pub analyte: String,
    /// unit·min; `None` when no AUC can be computed.
    pub auc: Option<f64>,
    /// `auc / (auc_to − auc_from)`, in the analyte's unit.
    pub auc_mean: Option<f64>,
    /// `ln(auc_mean + 1)`.
    pub ln_auc_mean_plus_1: Option<f64>,
    /// Timepoints in range with a usable measured value.
    pub points: usize,
    /// No timepoint in range was missing.
    pub complete: bool,
    /// Timepoints in range without a usable value (interpolated or not).
    pub missing_minutes: Vec<i32>,
    /// `auc_mean` − the baseline visit's `auc_mean`.
    pub delta_auc_mean: Option<f64>,
    /// Minutes whose value in the AUC was a BLQ result replaced by the
    /// `mmtt.blq` rule (empty when there is no AUC).
    pub blq_minutes: Vec<i32>,
}

impl AucRow {
    /// An AUC computed with interpolated points (`mmtt.missing = "interpolate"`):
    /// it has a value although a timepoint was missing.
    pub fn interpolated(&self) -> bool {
        self.auc.is_some() && !self.complete
    }
}

/// The AUC of one series of values by nominal minute.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesAuc {
    pub auc: Option<f64>,
    pub auc_mean: Option<f64>,
    pub points: usize,
    pub complete: bool,
    pub missing_minutes: Vec<i32>,
}

/// The number a stored result contributes to the AUC, or `None` when it must
/// count as missing (see the module notes).
pub fn usable_value(row: &ResultRow, blq: BlqRule, lloq: Option<f64>) -> Option<f64> {
    if row.blq {
        let lloq = lloq?;
        return Some(match blq {
            BlqRule::HalfLloq => lloq / 2.0,
            BlqRule::Lloq => lloq,
            BlqRule::Zero => 0.0,
        });
    }
    match row.comparator {
        None => Some(row.value),
        Some(Comparator::Lt | Comparator::Le | Comparator::Gt | Comparator::Ge) => None,
    }
}

/// Which of `minutes` an AUC over the configured range uses: those in the
/// range, and −10 when the 0-min value is the mean of −10 and 0.
fn used_minutes(mmtt: &Mmtt, minutes: &[i32]) -> Vec<i32> {
    let mean_baseline = mmtt.baseline == BaselineSample::Mean && mmtt.auc_from <= 0 && 0 <= mmtt.auc_to;
    let mut used: Vec<i32> = minutes
        .iter()
        .copied()
        .filter(|&m| (m >= mmtt.auc_from && m <= mmtt.auc_to) || (m == -10 && mean_baseline))
        .collect();
    used.sort_unstable();
    used
}

/// The AUC over the configured range from usable values by nominal minute
/// (−10 included when `baseline = mean`).
pub fn series_auc(mmtt: &Mmtt, values: &BTreeMap<i32, f64>) -> SeriesAuc {
    let minutes: Vec<i32> =
        mmtt.timepoints.iter().copied().filter(|&t| t >= mmtt.auc_from && t <= mmtt.auc_to).collect();
    let value_at = |t: i32| -> Option<f64> {
        if t == 0 && mmtt.baseline == BaselineSample::Mean {
            Some((values.get(&-10)? + values.get(&0)?) / 2.0)
        } else {
            values.get(&t).copied()
        }
    };
    let measured: Vec<Option<f64>> = minutes.iter().map(|&t| value_at(t)).collect();
    let missing_minutes: Vec<i32> =
        minutes.iter().zip(&measured).filter(|(_, v)| v.is_none()).map(|(&t, _)| t).collect();
    let points = measured.iter().filter(|v| v.is_some()).count();
    let complete = missing_minutes.is_empty();
    let span = f64::from(mmtt.auc_to) - f64::from(mmtt.auc_from);
    let none = |missing_minutes| SeriesAuc { auc: None, auc_mean: None, points, complete, missing_minutes };
    if minutes.len() < 2 || span <= 0.0 {
        return none(missing_minutes);
    }
    let filled: Vec<f64> = match (complete, mmtt.missing) {
        (true, _) => measured.iter().map(|v| v.unwrap_or_default()).collect(),
        (false, MissingRule::None) => return none(missing_minutes),
        (false, MissingRule::Interpolate) => match interpolate(&minutes, &measured) {
            Some(f) => f,
            None => return none(missing_minutes),
        },
    };
    let auc: f64 = minutes
        .windows(2)
        .zip(filled.windows(2))
        .map(|(t, v)| (v[0] + v[1]) / 2.0 * (f64::from(t[1]) - f64::from(t[0])))
        .sum();
    SeriesAuc { auc: Some(auc), auc_mean: Some(auc / span), points, complete, missing_minutes }
}

/// Fill missing interior values on the line, by time, between the nearest
/// measured neighbours; `None` if the first or last value is missing.
fn interpolate(minutes: &[i32], measured: &[Option<f64>]) -> Option<Vec<f64>> {
    measured.first().copied().flatten()?;
    measured.last().copied().flatten()?;
    let mut filled = Vec::with_capacity(measured.len());
    for (i, v) in measured.iter().enumerate() {
        if let Some(v) = v {
            filled.push(*v);
            continue;
        }
        let before = (0..i).rev().find(|&j| measured[j].is_some())?;
        let after = (i + 1..measured.len()).find(|&j| measured[j].is_some())?;
        let (t0, v0) = (f64::from(minutes[before]), measured[before]?);
        let (t1, v1) = (f64::from(minutes[after]), measured[after]?);
        let t = f64::from(minutes[i]);
        filled.push(v0 + (v1 - v0) * (t - t0) / (t1 - t0));
    }
    Some(filled)
}

/// One row per participant, visit and analyte that has any current result,
/// in the neutral order described in the module notes.
pub fn compute(config: &Config, results: &[ResultRow]) -> Vec<AucRow> {
    compute_with_visits(config, results, std::iter::empty::<(&str, &str)>())
}

/// [`compute`], plus a row for every configured analyte of each visit in
/// `started` (participant, visit: those whose meal has started), results or
/// not: a visit with nothing received yet has its rows, with no AUC and every
/// minute missing, so an analysis sees every visit that took place.
pub fn compute_with_visits<'a>(
    config: &Config,
    results: &[ResultRow],
    started: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<AucRow> {
    let mmtt = &config.mmtt;
    // (participant, visit, analyte) → usable values by minute.
    let mut series: BTreeMap<(String, String, String), BTreeMap<i32, f64>> = BTreeMap::new();
    let mut imputed: BTreeMap<(String, String, String), Vec<i32>> = BTreeMap::new();
    for (participant, visit) in started {
        for analyte in config.analytes.keys() {
            series.entry((participant.to_owned(), visit.to_owned(), analyte.clone())).or_default();
        }
    }
    for row in results {
        let slot = &row.slot;
        let values = series.entry((slot.participant.clone(), slot.visit.clone(), slot.analyte.clone())).or_default();
        let Ok(minute) = i32::try_from(slot.minute) else { continue };
        let lloq = config.analytes.get(&slot.analyte).and_then(|a| a.lloq);
        if let Some(v) = usable_value(row, mmtt.blq, lloq) {
            values.insert(minute, v);
            if row.blq {
                let key = (slot.participant.clone(), slot.visit.clone(), slot.analyte.clone());
                imputed.entry(key).or_default().push(minute);
            }
        }
    }
    let visit_rank = |code: &str| config.visit_index(code).unwrap_or(usize::MAX);
    let baseline_visit = config.baseline_visit().map(|v| v.code.as_str());
    let aucs: BTreeMap<&(String, String, String), SeriesAuc> =
        series.iter().map(|(key, values)| (key, series_auc(mmtt, values))).collect();
    let mut keys: Vec<&(String, String, String)> = aucs.keys().copied().collect();
    keys.sort_by(|a, b| (&a.0, visit_rank(&a.1), &a.1, &a.2).cmp(&(&b.0, visit_rank(&b.1), &b.1, &b.2)));
    keys.into_iter()
        .map(|key| {
            let (participant, visit, analyte) = key;
            let s = &aucs[key];
            let delta_auc_mean = match baseline_visit {
                Some(base) if base != visit => {
                    let base_key = (participant.clone(), base.to_owned(), analyte.clone());
                    let base_mean = aucs.get(&base_key).and_then(|b| b.auc_mean);
                    s.auc_mean.zip(base_mean).map(|(m, b)| m - b)
                }
                _ => None,
            };
            AucRow {
                participant: participant.clone(),
                visit: visit.clone(),
                analyte: analyte.clone(),
                auc: s.auc,
                auc_mean: s.auc_mean,
                ln_auc_mean_plus_1: s.auc_mean.map(|m| (m + 1.0).ln()),
                points: s.points,
                complete: s.complete,
                missing_minutes: s.missing_minutes.clone(),
                delta_auc_mean,
                blq_minutes: match s.auc {
                    Some(_) => imputed.get(key).map(|m| used_minutes(mmtt, m)).unwrap_or_default(),
                    None => Vec::new(),
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::model::{ObservationId, ResultId, Slot};

    const EXAMPLE: &str = include_str!("../../config/labfeed.example.toml");
    const MINUTES: [i32; 6] = [0, 15, 30, 60, 90, 120];
    /// 0.30, 0.55, 0.80, 1.00, 0.90, 0.70 at 0…120 min. By the weights
    /// 7.5·0.30 + 15·0.55 + 22.5·0.80 + 30·1.00 + 30·0.90 + 15·0.70
    /// = 2.25 + 8.25 + 18 + 30 + 27 + 10.5 = 96 nmol/L·min; by segments
    /// 6.375 + 10.125 + 27 + 28.5 + 24 = 96; AUC mean 96/120 = 0.8.
    const REALISTIC: [f64; 6] = [0.30, 0.55, 0.80, 1.00, 0.90, 0.70];

    fn config(edits: &[(&str, &str)]) -> Config {
        let mut text = EXAMPLE.to_owned();
        for (from, to) in edits {
            assert!(text.contains(from), "{from:?}");
            text = text.replace(from, to);
        }
        Config::from_toml(&text, Path::new("test.toml")).unwrap()
    }

    fn row(participant: &str, visit: &str, minute: i64, analyte: &str, value: f64) -> ResultRow {
        ResultRow {
            id: ResultId(1),
            observation_id: ObservationId(1),
            slot: Slot::new(participant, visit, minute, analyte),
            value,
            unit: "nmol/L".into(),
            comparator: None,
            blq: false,
            version: 1,
            supersedes: None,
            accepted_at: "2026-03-02T08:00:00Z".parse().unwrap(),
            accepted_by: "test".into(),
            reason: String::new(),
            withdrawn: false,
        }
    }

    fn blq(mut r: ResultRow) -> ResultRow {
        r.comparator = Some(Comparator::Lt);
        r.blq = true;
        r
    }

    fn series(minutes: &[i32], values: &[f64]) -> BTreeMap<i32, f64> {
        minutes.iter().copied().zip(values.iter().copied()).collect()
    }

    fn without(minutes: &[i32], values: &[f64], gone: &[i32]) -> BTreeMap<i32, f64> {
        let mut s = series(minutes, values);
        for m in gone {
            s.remove(m);
        }
        s
    }

    fn close(actual: Option<f64>, expected: f64) {
        let a = actual.unwrap_or_else(|| panic!("no value, expected {expected}"));
        assert!((a - expected).abs() < 1e-9, "{a} != {expected}");
    }

    fn visit_rows(p: &str, v: &str, values: &[f64]) -> Vec<ResultRow> {
        MINUTES.iter().zip(values).map(|(&m, &x)| row(p, v, m.into(), "c_peptide", x)).collect()
    }

    #[test]
    fn ones_everywhere_give_the_sum_of_the_weights() {
        let mmtt = config(&[]).mmtt;
        let s = series_auc(&mmtt, &series(&MINUTES, &[1.0; 6]));
        close(s.auc, 120.0);
        close(s.auc_mean, 1.0);
        assert_eq!((s.points, s.complete, s.missing_minutes.len()), (6, true, 0));
        // Each weight on its own: 7.5, 15, 22.5, 30, 30, 15.
        for (i, w) in [7.5, 15.0, 22.5, 30.0, 30.0, 15.0].into_iter().enumerate() {
            let mut v = [0.0; 6];
            v[i] = 1.0;
            close(series_auc(&mmtt, &series(&MINUTES, &v)).auc, w);
        }
    }

    #[test]
    fn a_realistic_series_and_the_reference_example() {
        let mmtt = config(&[]).mmtt;
        let s = series_auc(&mmtt, &series(&MINUTES, &REALISTIC));
        close(s.auc, 96.0);
        close(s.auc_mean, 0.8);
        // Reference example A: 0.32, 0.45, 0.70, 0.95, 0.90, 0.80 →
        // 5.775 + 8.625 + 24.75 + 27.75 + 25.5 = 92.4; mean 0.77.
        let a = series_auc(&mmtt, &series(&MINUTES, &[0.32, 0.45, 0.70, 0.95, 0.90, 0.80]));
        close(a.auc, 92.4);
        close(a.auc_mean, 0.77);
        // The −10 value is not used with baseline = zero.
        let mut with_basal = series(&MINUTES, &REALISTIC);
        with_basal.insert(-10, 5.0);
        close(series_auc(&mmtt, &with_basal).auc, 96.0);
    }

    #[test]
    fn blq_values_follow_the_configured_rule_and_other_censored_values_are_missing() {
        // 0-min value BLQ with LLOQ 0.017 (example config): the 2.25 of 7.5·0.30 is replaced by
        // half_lloq 7.5·0.0085 = 0.06375 → 93.81375; lloq 7.5·0.017 = 0.1275 → 93.8775; zero → 93.75.
        for (rule, expected) in [("half_lloq", 93.81375), ("lloq", 93.8775), ("zero", 93.75)] {
            let c = config(&[(r#"blq = "half_lloq""#, &format!("blq = \"{rule}\""))]);
            let mut rows = visit_rows("U01", "V0", &REALISTIC);
            rows[0] = blq(row("U01", "V0", 0, "c_peptide", 0.010));
            let out = compute(&c, &rows);
            assert_eq!(out.len(), 1);
            close(out[0].auc, expected);
            assert!(out[0].complete, "{rule}");
            assert_eq!(out[0].blq_minutes, [0], "{rule}");
            assert_eq!(out[0].points, 6);
        }
        let c = config(&[]);
        // Glucose has no LLOQ configured: a BLQ glucose value is missing.
        let mut g = row("U01", "V0", 0, "glucose", 0.5);
        g.blq = true;
        assert_eq!(usable_value(&g, BlqRule::HalfLloq, None), None);
        // "<0.5" above the LLOQ but not BLQ, and ">20": missing, never a number.
        let mut lt = row("U01", "V0", 30, "c_peptide", 0.5);
        lt.comparator = Some(Comparator::Lt);
        assert_eq!(usable_value(&lt, BlqRule::HalfLloq, Some(0.017)), None);
        let mut gt = row("U01", "V0", 30, "c_peptide", 20.0);
        gt.comparator = Some(Comparator::Gt);
        assert_eq!(usable_value(&gt, BlqRule::HalfLloq, Some(0.017)), None);
        let mut rows = visit_rows("U01", "V0", &REALISTIC);
        rows[2] = gt;
        let out = compute(&c, &rows);
        assert_eq!((out[0].auc, out[0].complete, out[0].missing_minutes.clone()), (None, false, vec![30]));
    }

    #[test]
    fn baseline_mean_averages_minus_10_and_0_and_is_missing_without_both() {
        let mut mmtt = config(&[]).mmtt;
        mmtt.baseline = BaselineSample::Mean;
        // −10: 0.20, 0: 0.30 → 0.25 at minute 0: 96 − 7.5·0.05 = 95.625.
        let mut s = series(&MINUTES, &REALISTIC);
        s.insert(-10, 0.20);
        let a = series_auc(&mmtt, &s);
        close(a.auc, 95.625);
        close(a.auc_mean, 0.796875);
        // Reference: averaged baseline 0.31 on example A → 92.325.
        let mut ex = series(&MINUTES, &[0.32, 0.45, 0.70, 0.95, 0.90, 0.80]);
        ex.insert(-10, 0.30);
        close(series_auc(&mmtt, &ex).auc, 92.325);
        // Without −10 minute 0 is missing, not silently the 0-min value.
        let b = series_auc(&mmtt, &series(&MINUTES, &REALISTIC));
        assert_eq!((b.auc, b.complete, b.missing_minutes), (None, false, vec![0]));
    }

    #[test]
    fn a_missing_point_gives_no_auc_or_is_interpolated_by_time() {
        let mut mmtt = config(&[]).mmtt;
        let s = without(&MINUTES, &REALISTIC, &[30]);
        let none = series_auc(&mmtt, &s);
        assert_eq!((none.auc, none.auc_mean), (None, None));
        assert_eq!((none.points, none.complete, none.missing_minutes), (5, false, vec![30]));

        mmtt.missing = MissingRule::Interpolate;
        // 30 between 15 (0.55) and 60 (1.00): 0.55 + 0.45·15/45 = 0.70 (the nearer neighbour
        // weighs more; swapped weights would give 0.85 and 97.125).
        // 96 − 22.5·0.80 + 22.5·0.70 = 93.75.
        let i = series_auc(&mmtt, &s);
        close(i.auc, 93.75);
        close(i.auc_mean, 0.78125);
        assert_eq!((i.points, i.complete, i.missing_minutes), (5, false, vec![30]));
        // Reference table: example A without 30 → 0.754375.
        let ex = without(&MINUTES, &[0.32, 0.45, 0.70, 0.95, 0.90, 0.80], &[30]);
        close(series_auc(&mmtt, &ex).auc_mean, 0.754375);
        // 30 and 60 both missing: the line from 15 (0.55) to 90 (0.90):
        // 6.375 + (0.55 + 0.90)/2·75 + 24 = 6.375 + 54.375 + 24 = 84.75.
        close(series_auc(&mmtt, &without(&MINUTES, &REALISTIC, &[30, 60])).auc, 84.75);
        // First or last point missing: no AUC.
        assert_eq!(series_auc(&mmtt, &without(&MINUTES, &REALISTIC, &[0])).auc, None);
        assert_eq!(series_auc(&mmtt, &without(&MINUTES, &REALISTIC, &[120])).auc, None);
    }

    #[test]
    fn a_four_hour_test() {
        let mut mmtt = config(&[]).mmtt;
        mmtt.timepoints = vec![-10, 0, 15, 30, 60, 90, 120, 150, 180, 210, 240];
        mmtt.auc_to = 240;
        // Reference example A with 150–240: 0.70, 0.55, 0.45, 0.38: 92.4 + 22.5 + 18.75 + 15
        // + 12.45 = 161.1; mean 161.1/240 = 0.67125.
        let minutes = [0, 15, 30, 60, 90, 120, 150, 180, 210, 240];
        let values = [0.32, 0.45, 0.70, 0.95, 0.90, 0.80, 0.70, 0.55, 0.45, 0.38];
        let s = series_auc(&mmtt, &series(&minutes, &values));
        close(s.auc, 161.1);
        close(s.auc_mean, 0.67125);
        assert_eq!(s.points, 10);
        // Without the 240-min value: no AUC (missing = none).
        assert_eq!(series_auc(&mmtt, &without(&minutes, &values, &[240])).auc, None);
    }

    #[test]
    fn delta_from_the_baseline_visit_in_neutral_order() {
        let c = config(&[]);
        let mut rows = visit_rows("U02", "V4", &[0.32, 0.45, 0.70, 0.95, 0.90, 0.80]); // 0.77
        rows.extend(visit_rows("U02", "V0", &REALISTIC)); // 0.8
        rows.extend(visit_rows("U01", "V4", &REALISTIC)); // no baseline visit
        rows.extend(visit_rows("U02", "V1", &REALISTIC[..5])); // no 120 → no AUC
        let out = compute(&c, &rows);
        let keys: Vec<String> = out.iter().map(|r| format!("{} {}", r.participant, r.visit)).collect();
        assert_eq!(keys, ["U01 V4", "U02 V0", "U02 V1", "U02 V4"]);
        assert_eq!(out[0].delta_auc_mean, None, "no baseline AUC");
        assert_eq!(out[1].delta_auc_mean, None, "the baseline visit itself");
        assert_eq!(out[2].delta_auc_mean, None, "no AUC at this visit");
        close(out[3].delta_auc_mean, 0.77 - 0.8);
        close(out[3].ln_auc_mean_plus_1, 1.77f64.ln());
        close(out[1].ln_auc_mean_plus_1, 0.5877866649021191);
    }

    #[test]
    fn a_started_visit_with_nothing_received_has_a_row_per_analyte_without_an_auc() {
        let config = config(&[]);
        let results: Vec<ResultRow> =
            MINUTES.iter().zip(REALISTIC).map(|(&m, v)| row("U01", "V0", i64::from(m), "c_peptide", v)).collect();
        let out = compute_with_visits(&config, &results, [("U01", "V0"), ("U01", "V4")]);
        let keys: Vec<(&str, &str)> = out.iter().map(|r| (r.visit.as_str(), r.analyte.as_str())).collect();
        assert_eq!(keys, [("V0", "c_peptide"), ("V0", "glucose"), ("V4", "c_peptide"), ("V4", "glucose")]);
        let v4 = &out[2];
        assert_eq!((v4.auc, v4.points, v4.complete, v4.delta_auc_mean), (None, 0, false, None));
        assert_eq!(v4.missing_minutes, MINUTES);
        assert_eq!(out[0].auc, Some(96.0), "the received visit as before");
        assert_eq!(compute(&config, &results).len(), 1, "without visits: only what has results");
    }
}
