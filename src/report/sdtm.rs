//! `export lb`: the CDISC SDTM LB domain (SDTMIG v3.4) as CSV.
//!
//! One record per current accepted result, plus one NOT DONE record per
//! scheduled result that is missing (MISSING_RESULT) or that a data manager
//! marked not done (LBREASND: their reason). Values stay as the lab
//! reported them in LBORRES; the standardised fields use the analyte's
//! canonical unit, and a censored value (`<0.010`) keeps its comparator in
//! LBSTRESC with LBSTRESN empty: no number is ever substituted for it.
//!
//! Records are ordered by participant code, visit (configuration order),
//! test code and timepoint: nothing that could reveal allocation.

use std::collections::BTreeMap;
use std::io::Write;

use crate::local_time::LocalTime;
use crate::report::format::format_value;
use crate::store::{CurrentResult, NotDoneMark, Visit};
use crate::study::config::Config;
use crate::study::missing::{Absence, MissingResult};
use crate::study::units::KnownAnalyte;
use crate::value::Comparator;

/// The LB variables written, in order.
pub const LB_COLUMNS: [&str; 24] = [
    "STUDYID", "DOMAIN", "USUBJID", "LBSEQ", "LBTESTCD", "LBTEST", "LBCAT", "LBORRES", "LBORRESU", "LBSTRESC",
    "LBSTRESN", "LBSTRESU", "LBSPEC", "LBLLOQ", "LBSTAT", "LBREASND", "VISITNUM", "VISIT", "LBDTC", "LBTPT",
    "LBTPTNUM", "LBELTM", "LBTPTREF", "LBRFTDTC",
];

/// LBCAT of every record.
pub const LB_CATEGORY: &str = "CHEMISTRY";
/// LBTPTREF: the MMTT's minute 0.
pub const LB_TIMEPOINT_REFERENCE: &str = "START OF MIXED MEAL";
/// LBSTAT of a scheduled result that has not arrived.
pub const NOT_DONE: &str = "NOT DONE";
/// LBREASND of a scheduled result that has not arrived.
pub const RESULT_NOT_RECEIVED: &str = "RESULT NOT RECEIVED";
/// LBORRES: the value as sent, except that an HL7 SN value's component
/// separator between comparator and number (`<^0.017`) is dropped: `<0.017`.
pub fn original_result(reported: &str) -> String {
    for comparator in ["<=", ">=", "<", ">", ""] {
        if let Some(number) = reported.strip_prefix(comparator).and_then(|rest| rest.strip_prefix('^'))
            && !number.contains('^')
        {
            return format!("{comparator}{number}");
        }
    }
    reported.to_owned()
}

/// LBREASND when a received result is held back for a data manager's review.
pub const RESULT_UNDER_REVIEW: &str = "RESULT UNDER REVIEW";
/// LBREASND when a data manager withdrew the slot's value (rejected or moved).
pub const RESULT_REJECTED: &str = "RESULT REJECTED";

/// One LB record, every field as written (absent ones empty). DOMAIN,
/// LBCAT and LBTPTREF are the same for all records and are not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbRecord {
    pub studyid: String,
    pub usubjid: String,
    /// 1, 2, … within each USUBJID, in output order.
    pub lbseq: u32,
    pub lbtestcd: String,
    pub lbtest: String,
    pub lborres: String,
    pub lborresu: String,
    pub lbstresc: String,
    pub lbstresn: String,
    pub lbstresu: String,
    pub lbspec: String,
    pub lblloq: String,
    pub lbstat: String,
    pub lbreasnd: String,
    pub visitnum: String,
    pub visit: String,
    pub lbdtc: String,
    pub lbtpt: String,
    pub lbtptnum: String,
    pub lbeltm: String,
    pub lbrftdtc: String,
}

impl LbRecord {
    /// The fields in [`LB_COLUMNS`] order.
    pub fn fields(&self) -> [String; 24] {
        [
            self.studyid.clone(),
            "LB".to_owned(),
            self.usubjid.clone(),
            self.lbseq.to_string(),
            self.lbtestcd.clone(),
            self.lbtest.clone(),
            LB_CATEGORY.to_owned(),
            self.lborres.clone(),
            self.lborresu.clone(),
            self.lbstresc.clone(),
            self.lbstresn.clone(),
            self.lbstresu.clone(),
            self.lbspec.clone(),
            self.lblloq.clone(),
            self.lbstat.clone(),
            self.lbreasnd.clone(),
            self.visitnum.clone(),
            self.visit.clone(),
            self.lbdtc.clone(),
            self.lbtpt.clone(),
            self.lbtptnum.clone(),
            self.lbeltm.clone(),
            LB_TIMEPOINT_REFERENCE.to_owned(),
            self.lbrftdtc.clone(),
        ]
    }
}

/// LBTESTCD of an analyte: the CDISC code of the built-in ones, else the
/// name upper-cased without non-alphanumerics, at most 8 characters.
pub fn test_code(analyte: &str) -> String {
    match KnownAnalyte::from_name(analyte) {
        Some(KnownAnalyte::CPeptide) => "CPEPTIDE".to_owned(),
        Some(KnownAnalyte::Glucose) => "GLUC".to_owned(),
        None => analyte.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_uppercase()).take(8).collect(),
    }
}

/// LBTEST of an analyte: the CDISC name of the built-in ones, else the name.
pub fn test_name(analyte: &str) -> String {
    match KnownAnalyte::from_name(analyte) {
        Some(KnownAnalyte::CPeptide) => "C-peptide".to_owned(),
        Some(KnownAnalyte::Glucose) => "Glucose".to_owned(),
        None => analyte.to_owned(),
    }
}

/// LBELTM: a nominal minute as an ISO 8601 duration (`-PT10M`, `PT0M`,
/// `PT1H`, `PT1H30M`).
pub fn elapsed_time(minute: i64) -> String {
    let sign = if minute < 0 { "-" } else { "" };
    let total = minute.unsigned_abs();
    let (hours, minutes) = (total / 60, total % 60);
    match (hours, minutes) {
        (0, m) => format!("{sign}PT{m}M"),
        (h, 0) => format!("{sign}PT{h}H"),
        (h, m) => format!("{sign}PT{h}H{m}M"),
    }
}

/// LBSTRESC and LBSTRESN of a value in the canonical unit: a censored value
/// is its comparator and bound as text, with no number.
pub fn standard_result(value: f64, comparator: Option<Comparator>) -> (String, String) {
    match comparator {
        Some(c) => (format!("{}{}", c.as_str(), format_value(value)), String::new()),
        None => (format_value(value), format_value(value)),
    }
}

/// A meal start as LBRFTDTC: minutes, and seconds only when there are some;
/// its offset when the import gave one, so a repeated hour stays one instant.
fn reference_time(t: LocalTime) -> String {
    t.iso_minutes()
}

/// Where a record sorts: participant, visit (configured ones in their
/// order, then others by code), test code, minute, analyte.
type SortKey = (String, (usize, String), String, i64, String);

/// What a result and a missing result share: the slot's identification.
struct Planned<'a> {
    participant: &'a str,
    visit: &'a str,
    minute: i64,
    analyte: &'a str,
    meal_start: Option<LocalTime>,
}

impl Planned<'_> {
    fn key(&self, config: &Config) -> SortKey {
        let rank = match config.visit_index(self.visit) {
            Some(i) => (i, String::new()),
            None => (usize::MAX, self.visit.to_owned()),
        };
        (self.participant.to_owned(), rank, test_code(self.analyte), self.minute, self.analyte.to_owned())
    }

    /// A record with the identification and timing filled, results empty.
    fn record(&self, config: &Config) -> LbRecord {
        let studyid = config.study.id.clone();
        let configured = config.visit_index(self.visit);
        let visit = configured.and_then(|i| config.visits.get(i));
        let tptnum = config.mmtt.timepoints.iter().position(|&m| i64::from(m) == self.minute);
        let analyte = config.analytes.get(self.analyte);
        LbRecord {
            usubjid: format!("{studyid}-{}", self.participant),
            studyid,
            lbseq: 0,
            lbtestcd: test_code(self.analyte),
            lbtest: test_name(self.analyte),
            lborres: String::new(),
            lborresu: String::new(),
            lbstresc: String::new(),
            lbstresn: String::new(),
            lbstresu: String::new(),
            lbspec: analyte.and_then(|a| a.specimen.clone()).unwrap_or_default(),
            lblloq: String::new(),
            lbstat: String::new(),
            lbreasnd: String::new(),
            visitnum: configured.map(|i| (i + 1).to_string()).unwrap_or_default(),
            visit: visit.map_or_else(|| self.visit.to_owned(), |v| v.name.clone()),
            lbdtc: String::new(),
            lbtpt: format!("MMTT {} MIN", self.minute),
            lbtptnum: tptnum.map(|i| (i + 1).to_string()).unwrap_or_default(),
            lbeltm: elapsed_time(self.minute),
            lbrftdtc: self.meal_start.map(reference_time).unwrap_or_default(),
        }
    }
}

/// The LB records of the current accepted results and the missing ones, in
/// output order with LBSEQ numbered. `visits` gives the meal starts
/// (LBRFTDTC) of the results; `missing` is what
/// [`missing_results`](crate::study::missing::missing_results) lists.
pub fn lb_records(
    config: &Config,
    results: &[CurrentResult],
    visits: &[Visit],
    missing: &[MissingResult],
) -> Vec<LbRecord> {
    lb_records_with_not_done(config, results, visits, missing, &[])
}

/// [`lb_records`], plus the slots a data manager marked not done
/// ([`not_done_results`](crate::study::missing::not_done_results)): NOT DONE
/// with LBREASND the reason they gave.
pub fn lb_records_with_not_done(
    config: &Config,
    results: &[CurrentResult],
    visits: &[Visit],
    missing: &[MissingResult],
    not_done: &[(MissingResult, NotDoneMark)],
) -> Vec<LbRecord> {
    let meal_starts: BTreeMap<(&str, &str), Option<LocalTime>> =
        visits.iter().map(|v| ((v.participant.as_str(), v.visit.as_str()), v.meal_start)).collect();
    let mut keyed: Vec<(SortKey, LbRecord)> = Vec::with_capacity(results.len() + missing.len());

    for current in results {
        let (r, p) = (&current.result, &current.provenance);
        let slot = &r.slot;
        let planned = Planned {
            participant: &slot.participant,
            visit: &slot.visit,
            minute: slot.minute,
            analyte: &slot.analyte,
            meal_start: meal_starts.get(&(slot.participant.as_str(), slot.visit.as_str())).copied().flatten(),
        };
        let mut record = planned.record(config);
        record.lborres = p.reported_value.as_deref().map(original_result).unwrap_or_default();
        record.lborresu = p.reported_unit.clone().unwrap_or_default();
        (record.lbstresc, record.lbstresn) = standard_result(r.value, r.comparator);
        record.lbstresu = r.unit.clone();
        record.lblloq = config.analytes.get(&slot.analyte).and_then(|a| a.lloq).map(format_value).unwrap_or_default();
        // An instrument whose collection time is a registration time (see
        // `trust_collection_time`) gives no LBDTC rather than a wrong one.
        let trusted =
            p.instrument.as_deref().and_then(|name| config.instrument(name)).is_none_or(|i| i.trust_collection_time);
        if trusted {
            record.lbdtc = p.collected_time().unwrap_or_default();
        }
        keyed.push((planned.key(config), record));
    }

    let marked = not_done.iter().map(|(m, mark)| (m, Some(mark)));
    for (m, mark) in missing.iter().map(|m| (m, None)).chain(marked) {
        let planned = Planned {
            participant: &m.participant,
            visit: &m.visit,
            minute: i64::from(m.minute),
            analyte: &m.analyte,
            meal_start: Some(m.meal_start),
        };
        let mut record = planned.record(config);
        record.lbstat = NOT_DONE.to_owned();
        record.lbreasnd = match (mark, m.absence) {
            (Some(mark), _) => mark.reason.clone(),
            (None, Absence::NotReceived) => RESULT_NOT_RECEIVED.to_owned(),
            (None, Absence::Held(_)) => RESULT_UNDER_REVIEW.to_owned(),
            (None, Absence::Withdrawn) => RESULT_REJECTED.to_owned(),
        };
        keyed.push((planned.key(config), record));
    }

    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    let mut records: Vec<LbRecord> = keyed.into_iter().map(|(_, r)| r).collect();
    let mut seq = 0;
    let mut subject: Option<String> = None;
    for record in &mut records {
        if subject.as_deref() != Some(record.usubjid.as_str()) {
            subject = Some(record.usubjid.clone());
            seq = 0;
        }
        seq += 1;
        record.lbseq = seq;
    }
    records
}

/// Write the header row, then one row per record, in the order given.
pub fn write_lb_csv(out: impl Write, records: &[LbRecord]) -> csv::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(LB_COLUMNS)?;
    for record in records {
        w.write_record(record.fields())?;
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn an_hl7_structured_numeric_is_shown_as_one_value_in_lborres() {
        assert_eq!(original_result("<^0.017"), "<0.017");
        assert_eq!(original_result(">=^20"), ">=20");
        assert_eq!(original_result("^0.52"), "0.52");
        assert_eq!(original_result("<0.010"), "<0.010");
        assert_eq!(original_result("1^:^2"), "1^:^2");
        assert_eq!(original_result("-1^0.750"), "-1^0.750");
    }

    use super::*;
    use crate::report::test_rows::accepted;
    use crate::store::{Provenance, ResultRow, Slot};

    const EXAMPLE: &str = include_str!("../../config/labfeed.example.toml");

    fn config() -> Config {
        Config::from_toml(EXAMPLE, Path::new("test.toml")).unwrap()
    }

    fn result(slot: Slot, value: f64, comparator: Option<Comparator>, reported: (&str, &str)) -> CurrentResult {
        let unit = if slot.analyte == "glucose" { "mmol/L" } else { "nmol/L" };
        CurrentResult {
            result: ResultRow {
                unit: unit.into(),
                comparator,
                ..accepted(slot, 1, value, "ingest", "2026-03-02T10:00:00Z".parse().unwrap())
            },
            provenance: Provenance {
                reported_value: Some(reported.0.into()),
                reported_unit: Some(reported.1.into()),
                instrument: Some("central-lab".into()),
                collected_at: Some("2026-03-02T08:45".into()),
                ..Provenance::default()
            },
        }
    }

    fn missing(participant: &str, visit: &str, minute: i32, analyte: &str) -> MissingResult {
        MissingResult {
            participant: participant.into(),
            visit: visit.into(),
            minute,
            analyte: analyte.into(),
            meal_start: "2026-03-02T08:30".parse().unwrap(),
            absence: Absence::NotReceived,
            detail: String::new(),
        }
    }

    #[test]
    fn elapsed_times_are_iso_8601_durations_with_a_sign_for_before_the_meal() {
        let cases = [
            (-10, "-PT10M"),
            (0, "PT0M"),
            (15, "PT15M"),
            (30, "PT30M"),
            (60, "PT1H"),
            (90, "PT1H30M"),
            (120, "PT2H"),
            (240, "PT4H"),
            (-90, "-PT1H30M"),
            (-60, "-PT1H"),
            (1445, "PT24H5M"),
        ];
        for (minute, expected) in cases {
            assert_eq!(elapsed_time(minute), expected, "minute {minute}");
        }
        assert_eq!(elapsed_time(i64::MIN), format!("-PT{}H{}M", (1u64 << 63) / 60, (1u64 << 63) % 60));
    }

    #[test]
    fn a_censored_value_keeps_its_comparator_and_has_no_number() {
        assert_eq!(standard_result(0.010 * 0.33109, Some(Comparator::Lt)), ("<0.0033109".into(), String::new()));
        assert_eq!(standard_result(20.0, Some(Comparator::Ge)), (">=20".into(), String::new()));
        assert_eq!(standard_result(0.52, None), ("0.52".into(), "0.52".into()));
        assert_eq!(standard_result(0.3 * 3.0, None), ("0.9".into(), "0.9".into()));
    }

    #[test]
    fn test_codes_are_the_cdisc_ones_or_a_short_upper_case_name() {
        assert_eq!((test_code("c_peptide"), test_name("c_peptide")), ("CPEPTIDE".into(), "C-peptide".into()));
        assert_eq!((test_code("glucose"), test_name("glucose")), ("GLUC".into(), "Glucose".into()));
        assert_eq!(test_code("pro_insulin"), "PROINSUL");
        assert_eq!(test_name("pro_insulin"), "pro_insulin");
        assert_eq!(test_code("hba1c"), "HBA1C");
    }

    #[test]
    fn result_fields_map_reported_and_standard_values_and_the_timepoint() {
        let config = config();
        let visits = [Visit {
            participant: "U07".into(),
            visit: "V4".into(),
            meal_start: Some("2026-03-02T08:30".parse().unwrap()),
        }];
        let censored =
            result(Slot::new("U07", "V4", 90, "c_peptide"), 0.010 * 0.33109, Some(Comparator::Lt), ("<0.010", "ng/mL"));
        let records = lb_records(&config, &[censored], &visits, &[]);
        assert_eq!(records.len(), 1);
        assert_eq!(
            records[0].fields(),
            [
                "NCT02057211",
                "LB",
                "NCT02057211-U07",
                "1",
                "CPEPTIDE",
                "C-peptide",
                "CHEMISTRY",
                "<0.010",
                "ng/mL",
                "<0.0033109",
                "",
                "nmol/L",
                "SERUM",
                "0.017",
                "",
                "",
                "5",
                "2 years",
                "2026-03-02T08:45",
                "MMTT 90 MIN",
                "6",
                "PT1H30M",
                "START OF MIXED MEAL",
                "2026-03-02T08:30",
            ]
        );
    }

    #[test]
    fn missing_results_are_not_done_with_empty_result_fields() {
        let config = config();
        let records = lb_records(&config, &[], &[], &[missing("U07", "V0", -10, "glucose")]);
        let r = &records[0];
        assert_eq!((r.lbstat.as_str(), r.lbreasnd.as_str()), ("NOT DONE", "RESULT NOT RECEIVED"));
        for field in [&r.lborres, &r.lborresu, &r.lbstresc, &r.lbstresn, &r.lbstresu, &r.lblloq, &r.lbdtc] {
            assert_eq!(field, "");
        }
        assert_eq!((r.lbtestcd.as_str(), r.lbspec.as_str()), ("GLUC", "PLASMA"));
        assert_eq!((r.visitnum.as_str(), r.visit.as_str()), ("1", "Baseline"));
        assert_eq!((r.lbtpt.as_str(), r.lbtptnum.as_str(), r.lbeltm.as_str()), ("MMTT -10 MIN", "1", "-PT10M"));
        assert_eq!(r.lbrftdtc, "2026-03-02T08:30");
    }

    #[test]
    fn a_slot_marked_not_done_gives_the_data_managers_reason() {
        let config = config();
        let mark = crate::store::NotDoneMark {
            id: crate::store::MismatchId(9),
            reason: "vein collapsed".into(),
            by: "dm".into(),
            at: "2026-03-05T09:00:00Z".parse().unwrap(),
        };
        let gaps = [missing("U07", "V0", -10, "glucose")];
        let marked = [(missing("U07", "V0", 0, "glucose"), mark)];
        let records = lb_records_with_not_done(&config, &[], &[], &gaps, &marked);
        let reasons: Vec<(&str, &str, &str)> =
            records.iter().map(|r| (r.lbtpt.as_str(), r.lbstat.as_str(), r.lbreasnd.as_str())).collect();
        assert_eq!(
            reasons,
            [("MMTT -10 MIN", "NOT DONE", "RESULT NOT RECEIVED"), ("MMTT 0 MIN", "NOT DONE", "vein collapsed")]
        );
        assert_eq!(records.iter().map(|r| r.lbseq).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn an_untrusted_collection_time_and_unconfigured_things_leave_fields_empty() {
        let mut config = config();
        config.analytes.get_mut("glucose").unwrap().specimen = None;
        let mut e411 = result(Slot::new("U07", "V9", 45, "glucose"), 5.4, None, ("5.4", "mmol/L"));
        e411.provenance.instrument = Some("cobas-e411".into());
        let records = lb_records(&config, &[e411], &[], &[]);
        let r = &records[0];
        assert_eq!(r.lbdtc, "", "the e411's O.8 is a registration time, not the draw time");
        assert_eq!((r.visitnum.as_str(), r.visit.as_str()), ("", "V9"));
        assert_eq!((r.lbtptnum.as_str(), r.lbtpt.as_str(), r.lbeltm.as_str()), ("", "MMTT 45 MIN", "PT45M"));
        assert_eq!((r.lbspec.as_str(), r.lblloq.as_str(), r.lbrftdtc.as_str()), ("", "", ""));
        assert_eq!((r.lbstresc.as_str(), r.lbstresn.as_str()), ("5.4", "5.4"));
    }

    #[test]
    fn records_are_ordered_by_participant_visit_test_and_minute_and_numbered_per_subject() {
        let config = config();
        let results = [
            result(Slot::new("U02", "V0", 0, "glucose"), 5.0, None, ("5.0", "mmol/L")),
            result(Slot::new("U01", "V9", 0, "c_peptide"), 0.3, None, ("0.3", "nmol/L")),
            result(Slot::new("U01", "V1", 120, "c_peptide"), 0.4, None, ("0.4", "nmol/L")),
            result(Slot::new("U01", "V0", 30, "glucose"), 6.0, None, ("6.0", "mmol/L")),
            result(Slot::new("U01", "V0", 120, "c_peptide"), 0.5, None, ("0.5", "nmol/L")),
            result(Slot::new("U01", "V0", 15, "c_peptide"), 0.6, None, ("0.6", "nmol/L")),
            result(Slot::new("U01", "V10", 0, "c_peptide"), 0.7, None, ("0.7", "nmol/L")),
        ];
        let gaps = [missing("U01", "V0", -10, "c_peptide"), missing("U02", "V0", -10, "glucose")];
        let records = lb_records(&config, &results, &[], &gaps);
        let order: Vec<String> = records
            .iter()
            .map(|r| format!("{} {} {} {} {} {}", r.usubjid, r.lbseq, r.visit, r.lbtestcd, r.lbtpt, r.lbstat))
            .collect();
        assert_eq!(
            order,
            [
                "NCT02057211-U01 1 Baseline CPEPTIDE MMTT -10 MIN NOT DONE",
                "NCT02057211-U01 2 Baseline CPEPTIDE MMTT 15 MIN ",
                "NCT02057211-U01 3 Baseline CPEPTIDE MMTT 120 MIN ",
                "NCT02057211-U01 4 Baseline GLUC MMTT 30 MIN ",
                "NCT02057211-U01 5 3 months CPEPTIDE MMTT 120 MIN ",
                "NCT02057211-U01 6 V10 CPEPTIDE MMTT 0 MIN ",
                "NCT02057211-U01 7 V9 CPEPTIDE MMTT 0 MIN ",
                "NCT02057211-U02 1 Baseline GLUC MMTT -10 MIN NOT DONE",
                "NCT02057211-U02 2 Baseline GLUC MMTT 0 MIN ",
            ]
        );
    }

    #[test]
    fn the_csv_has_the_header_even_without_records() {
        let mut out = Vec::new();
        write_lb_csv(&mut out, &[]).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), format!("{}\n", LB_COLUMNS.join(",")));
    }
}
