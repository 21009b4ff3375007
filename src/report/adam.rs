//! `export adam`: an ADaM BDS dataset of the MMTT outcomes (SPEC §12,
//! ADaMIG 1.3), one record per participant, visit and parameter, from the
//! same AUC rows as `report auc`, so the numbers are the same ones.
//!
//! Units are in PARAM (ADaMIG 1.3 has no AVALU). BASE is the AVAL of the
//! subject's baseline-visit record of the parameter (ABLFL `Y`); CHG and
//! PCHG are filled on the other visits only (the producer's choice the IG
//! leaves open). DTYPE is `INTERP` for an AUC computed with interpolated
//! points. Records are ordered by participant code, visit and parameter:
//! nothing that could reveal allocation.

use std::collections::BTreeMap;
use std::io::Write;

use crate::report::auc::number;
use crate::report::sdtm::{LbRecord, lb_timepoint};
use crate::report::xpt::{self, Dataset, Variable};
use crate::study::auc::AucRow;
use crate::study::config::{BaselineSample, Config};
use crate::study::units::KnownAnalyte;

const fn text(name: &'static str, label: &'static str) -> Variable {
    Variable { name, label, numeric: false }
}

const fn num(name: &'static str, label: &'static str) -> Variable {
    Variable { name, label, numeric: true }
}

/// The variables written, in order, with their ADaMIG 1.3 labels.
pub const ADAM_VARIABLES: [Variable; 17] = [
    text("STUDYID", "Study Identifier"),
    text("USUBJID", "Unique Subject Identifier"),
    num("ASEQ", "Analysis Sequence Number"),
    text("PARAMCD", "Parameter Code"),
    text("PARAM", "Parameter"),
    text("AVISIT", "Analysis Visit"),
    num("AVISITN", "Analysis Visit (N)"),
    num("AVAL", "Analysis Value"),
    num("BASE", "Baseline Value"),
    num("CHG", "Change from Baseline"),
    num("PCHG", "Percent Change from Baseline"),
    text("ABLFL", "Baseline Record Flag"),
    text("DTYPE", "Derivation Type"),
    // Sponsor-defined: ADaMIG has no variable saying that an AVAL derived
    // from many records used an imputed one.
    text("BLQIMPFL", "BLQ Value Imputed in AVAL Flag"),
    text("SRCDOM", "Source Data"),
    // Null: it holds one record's sequence number and an AUC has several.
    num("SRCSEQ", "Source Sequence Number"),
    // Sponsor-defined: the LBSEQ of every LB record AVAL was computed from.
    text("SRCSEQS", "Source Sequence Numbers (LBSEQ) of AVAL"),
];

/// The dataset's name (and file `admmtt.xpt`) and label.
pub const ADAM_DATASET: &str = "ADMMTT";
pub const ADAM_LABEL: &str = "MMTT Outcomes Analysis Dataset";

/// Which number of an [`AucRow`] a parameter is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Measure {
    Auc,
    AucMean,
    LnAucMeanPlus1,
}

/// The parameters of an analyte (SPEC §12): code, measure. Analytes other
/// than C-peptide and glucose have none.
fn parameters(analyte: &str) -> &'static [(&'static str, Measure)] {
    match KnownAnalyte::from_name(analyte) {
        Some(KnownAnalyte::CPeptide) => {
            &[("CPAUC", Measure::Auc), ("CPAUCM", Measure::AucMean), ("CPLAUCM", Measure::LnAucMeanPlus1)]
        }
        Some(KnownAnalyte::Glucose) => &[("GLAUC", Measure::Auc), ("GLAUCM", Measure::AucMean)],
        None => &[],
    }
}

/// PARAM: the test name, what and over which minutes, and the unit.
fn parameter_name(config: &Config, analyte: &str, measure: Measure) -> String {
    let test = config.lb_test(analyte).1;
    let unit = config.analytes.get(analyte).map(|a| a.unit.as_str()).unwrap_or_default();
    let (from, to) = (config.mmtt.auc_from, config.mmtt.auc_to);
    match measure {
        Measure::Auc => format!("{test} AUC {from}-{to} min (min*{unit})"),
        Measure::AucMean => format!("{test} AUC mean {from}-{to} min ({unit})"),
        Measure::LnAucMeanPlus1 => format!("Log({test} AUC mean {from}-{to} min + 1)"),
    }
}

/// PARAMCD and PARAM of every parameter the configured analytes have, in
/// analyte then parameter order (define.xml's PARAMCD codelist).
pub fn parameter_list(config: &Config) -> Vec<(&'static str, String)> {
    config
        .analytes
        .keys()
        .flat_map(|analyte| {
            parameters(analyte).iter().map(move |&(code, m)| (code, parameter_name(config, analyte, m)))
        })
        .collect()
}

/// One ADaM record, every field as written (absent numbers empty).
#[derive(Debug, Clone, PartialEq)]
pub struct AdamRecord {
    pub studyid: String,
    pub usubjid: String,
    pub aseq: u32,
    pub paramcd: &'static str,
    pub param: String,
    pub avisit: String,
    pub avisitn: Option<usize>,
    pub aval: Option<f64>,
    pub base: Option<f64>,
    pub chg: Option<f64>,
    pub pchg: Option<f64>,
    pub ablfl: bool,
    pub dtype: &'static str,
    /// The AUC used a BLQ result replaced by the `mmtt.blq` rule.
    pub blq_imputed: bool,
    /// LBSEQ of the LB records AVAL was computed from, ascending; empty
    /// when there is no AVAL.
    pub source_sequences: Vec<u32>,
}

impl AdamRecord {
    /// The fields in [`ADAM_VARIABLES`] order.
    pub fn fields(&self) -> [String; 17] {
        [
            self.studyid.clone(),
            self.usubjid.clone(),
            self.aseq.to_string(),
            self.paramcd.to_owned(),
            self.param.clone(),
            self.avisit.clone(),
            self.avisitn.map(|n| n.to_string()).unwrap_or_default(),
            number(self.aval),
            number(self.base),
            number(self.chg),
            number(self.pchg),
            if self.ablfl { "Y" } else { "" }.to_owned(),
            self.dtype.to_owned(),
            if self.blq_imputed { "Y" } else { "" }.to_owned(),
            if self.source_sequences.is_empty() { "" } else { "LB" }.to_owned(),
            String::new(),
            self.source_sequences.iter().map(u32::to_string).collect::<Vec<_>>().join(" "),
        ]
    }
}

/// The records of the AUC rows (as [`auc_rows`](crate::report::auc::auc_rows)
/// gives them), in participant, visit, parameter order, ASEQ numbered per
/// subject. `lb`: the LB records of the same results, whose LBSEQ each
/// AUC names (SRCSEQS).
pub fn adam_records(config: &Config, rows: &[AucRow], lb: &[LbRecord]) -> Vec<AdamRecord> {
    let studyid = config.study.id.clone();
    let lbseq: BTreeMap<(&str, &str, &str, &str), u32> = lb
        .iter()
        .filter(|r| r.lbstat.is_empty())
        .map(|r| ((r.usubjid.as_str(), r.visit.as_str(), r.lbtestcd.as_str(), r.lbtpt.as_str()), r.lbseq))
        .collect();
    let baseline = config.baseline_visit().map(|v| v.code.as_str());
    let mut records = Vec::new();
    for row in rows {
        let visit = config.visit_index(&row.visit);
        for &(paramcd, measure) in parameters(&row.analyte) {
            let aval = match measure {
                Measure::Auc => row.auc,
                Measure::AucMean => row.auc_mean,
                Measure::LnAucMeanPlus1 => row.ln_auc_mean_plus_1,
            };
            let usubjid = format!("{studyid}-{}", row.participant);
            let avisit = visit.and_then(|i| config.visits.get(i)).map_or_else(|| row.visit.clone(), |v| v.name.clone());
            let testcd = config.lb_test(&row.analyte).0;
            let source_sequences = match aval {
                Some(_) => {
                    let mut seqs: Vec<u32> = used_minutes(config, row)
                        .into_iter()
                        .filter_map(|m| {
                            lbseq.get(&(usubjid.as_str(), avisit.as_str(), testcd.as_str(), &*lb_timepoint(m))).copied()
                        })
                        .collect();
                    seqs.sort_unstable();
                    seqs
                }
                None => Vec::new(),
            };
            records.push(AdamRecord {
                studyid: studyid.clone(),
                usubjid,
                aseq: 0,
                paramcd,
                param: parameter_name(config, &row.analyte, measure),
                avisit,
                avisitn: visit.map(|i| i + 1),
                aval,
                base: None,
                chg: None,
                pchg: None,
                ablfl: aval.is_some() && baseline == Some(row.visit.as_str()),
                dtype: if row.interpolated() { "INTERP" } else { "" },
                blq_imputed: aval.is_some() && !row.blq_minutes.is_empty(),
                source_sequences,
            });
        }
    }
    let bases: BTreeMap<(String, &str), f64> =
        records.iter().filter(|r| r.ablfl).filter_map(|r| Some(((r.usubjid.clone(), r.paramcd), r.aval?))).collect();
    let mut seq = 0;
    let mut subject = String::new();
    for record in &mut records {
        if record.usubjid != subject {
            subject.clone_from(&record.usubjid);
            seq = 0;
        }
        seq += 1;
        record.aseq = seq;
        record.base = bases.get(&(record.usubjid.clone(), record.paramcd)).copied();
        if !record.ablfl
            && let (Some(aval), Some(base)) = (record.aval, record.base)
        {
            record.chg = Some(aval - base);
            record.pchg = (base != 0.0).then(|| (aval - base) / base * 100.0);
        }
    }
    records
}

/// The minutes whose results an AUC was computed from: the measured ones
/// in range (interpolated ones are not results), and −10 when minute 0 is
/// the mean of −10 and 0.
fn used_minutes(config: &Config, row: &AucRow) -> Vec<i64> {
    let m = &config.mmtt;
    let mut minutes: Vec<i64> = m
        .timepoints
        .iter()
        .filter(|&&t| t >= m.auc_from && t <= m.auc_to && !row.missing_minutes.contains(&t))
        .map(|&t| i64::from(t))
        .collect();
    if m.baseline == BaselineSample::Mean && minutes.contains(&0) {
        minutes.push(-10);
    }
    minutes
}

/// Write the header row, then one row per record.
pub fn write_adam_csv(out: impl Write, records: &[AdamRecord]) -> csv::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(ADAM_VARIABLES.iter().map(|v| v.name))?;
    for record in records {
        w.write_record(record.fields())?;
    }
    w.flush()?;
    Ok(())
}

/// `admmtt.xpt`: the records as SAS XPORT v5 dataset ADMMTT; a value v5
/// cannot hold is refused naming the variable and the record.
pub fn adam_xpt(records: &[AdamRecord], created: jiff::civil::DateTime) -> Result<Vec<u8>, String> {
    let rows = adam_rows(records);
    xpt::write(&adam_dataset(&rows), created).map_err(|e| adam_error(records, &e))
}

/// The variable lengths `admmtt.xpt` has for these records (define.xml
/// states them), refused as [`adam_xpt`] refuses.
pub fn adam_lengths(records: &[AdamRecord]) -> Result<Vec<usize>, String> {
    let rows = adam_rows(records);
    xpt::lengths(&adam_dataset(&rows)).map_err(|e| adam_error(records, &e))
}

fn adam_rows(records: &[AdamRecord]) -> Vec<Vec<String>> {
    records.iter().map(|r| r.fields().to_vec()).collect()
}

fn adam_dataset(rows: &[Vec<String>]) -> Dataset<'_> {
    Dataset { name: ADAM_DATASET, label: ADAM_LABEL, variables: &ADAM_VARIABLES, rows }
}

fn adam_error(records: &[AdamRecord], e: &xpt::ValueError) -> String {
    match e.row.and_then(|r| records.get(r)) {
        Some(r) => format!("{} of the record USUBJID {} ASEQ {}: {}", e.variable, r.usubjid, r.aseq, e.problem),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config() -> Config {
        Config::from_toml(include_str!("../../config/labfeed.example.toml"), Path::new("test.toml")).unwrap()
    }

    fn row(participant: &str, visit: &str, analyte: &str, auc: Option<f64>, complete: bool) -> AucRow {
        AucRow {
            participant: participant.into(),
            visit: visit.into(),
            analyte: analyte.into(),
            auc,
            auc_mean: auc.map(|a| a / 120.0),
            ln_auc_mean_plus_1: auc.map(|a| (a / 120.0 + 1.0).ln()),
            points: 6,
            complete,
            missing_minutes: Vec::new(),
            delta_auc_mean: None,
            blq_minutes: Vec::new(),
        }
    }

    #[test]
    fn parameters_base_change_and_flags_are_derived_per_subject() {
        let config = config();
        let rows = [
            row("U01", "V0", "c_peptide", Some(60.0), true),
            row("U01", "V0", "glucose", Some(720.0), true),
            row("U01", "V4", "c_peptide", Some(30.0), false),
            row("U02", "V4", "c_peptide", Some(12.0), true),
        ];
        let records = adam_records(&config, &rows, &[]);
        let got: Vec<String> = records.iter().map(|r| r.fields().join("|")).collect();
        // 60/120 = 0.5, ln 1.5 = 0.405465108108; 30/120 = 0.25, ln 1.25 = 0.223143551314;
        // PCHG of the log: (0.223143551314 - 0.405465108108) / 0.405465108108 × 100 = -44.9660286787.
        assert_eq!(
            got,
            [
                "NCT02057211|NCT02057211-U01|1|CPAUC|C-peptide AUC 0-120 min (min*nmol/L)|Baseline|1|60|60|||Y|||||",
                "NCT02057211|NCT02057211-U01|2|CPAUCM|C-peptide AUC mean 0-120 min (nmol/L)|Baseline|1|0.5|0.5|||Y|||||",
                "NCT02057211|NCT02057211-U01|3|CPLAUCM|Log(C-peptide AUC mean 0-120 min + 1)|Baseline|1|0.405465108108|0.405465108108|||Y|||||",
                "NCT02057211|NCT02057211-U01|4|GLAUC|Glucose AUC 0-120 min (min*mmol/L)|Baseline|1|720|720|||Y|||||",
                "NCT02057211|NCT02057211-U01|5|GLAUCM|Glucose AUC mean 0-120 min (mmol/L)|Baseline|1|6|6|||Y|||||",
                "NCT02057211|NCT02057211-U01|6|CPAUC|C-peptide AUC 0-120 min (min*nmol/L)|2 years|5|30|60|-30|-50||INTERP||||",
                "NCT02057211|NCT02057211-U01|7|CPAUCM|C-peptide AUC mean 0-120 min (nmol/L)|2 years|5|0.25|0.5|-0.25|-50||INTERP||||",
                "NCT02057211|NCT02057211-U01|8|CPLAUCM|Log(C-peptide AUC mean 0-120 min + 1)|2 years|5|0.223143551314|0.405465108108|-0.182321556794|-44.9660286787||INTERP||||",
                "NCT02057211|NCT02057211-U02|1|CPAUC|C-peptide AUC 0-120 min (min*nmol/L)|2 years|5|12|||||||||",
                "NCT02057211|NCT02057211-U02|2|CPAUCM|C-peptide AUC mean 0-120 min (nmol/L)|2 years|5|0.1|||||||||",
                "NCT02057211|NCT02057211-U02|3|CPLAUCM|Log(C-peptide AUC mean 0-120 min + 1)|2 years|5|0.0953101798043|||||||||",
            ]
        );
    }

    #[test]
    fn an_auc_that_used_an_imputed_blq_value_is_flagged() {
        let config = config();
        let mut blq = row("U01", "V0", "c_peptide", Some(60.0), true);
        blq.blq_minutes = vec![120];
        let records = adam_records(&config, &[blq, row("U01", "V0", "glucose", Some(720.0), true)], &[]);
        let flags: Vec<(&str, &str)> =
            records.iter().map(|r| (r.paramcd, if r.blq_imputed { "Y" } else { "" })).collect();
        assert_eq!(flags, [("CPAUC", "Y"), ("CPAUCM", "Y"), ("CPLAUCM", "Y"), ("GLAUC", ""), ("GLAUCM", "")]);
        assert_eq!(records[0].fields()[13], "Y");
    }

    #[test]
    fn a_baseline_without_an_auc_is_no_baseline_record_and_gives_no_change() {
        let config = config();
        let rows = [row("U01", "V0", "c_peptide", None, false), row("U01", "V4", "c_peptide", Some(30.0), true)];
        let records = adam_records(&config, &rows, &[]);
        assert!(records.iter().all(|r| !r.ablfl && r.base.is_none() && r.chg.is_none()), "{records:?}");
        assert_eq!(records[0].aval, None);
        assert_eq!(records[0].dtype, "", "no AUC is not an interpolated one");
    }

    #[test]
    fn a_zero_baseline_gives_a_change_but_no_percent_change() {
        let config = config();
        let rows = [row("U01", "V0", "c_peptide", Some(0.0), true), row("U01", "V4", "c_peptide", Some(30.0), true)];
        let records = adam_records(&config, &rows, &[]);
        type Numbers<'a> = (&'a str, Option<f64>, Option<f64>, Option<f64>, Option<f64>);
        let got: Vec<Numbers<'_>> = records.iter().map(|r| (r.paramcd, r.aval, r.base, r.chg, r.pchg)).collect();
        // ln(0 + 1) = 0 too: the log scale has a zero baseline as well.
        assert_eq!(
            got,
            [
                ("CPAUC", Some(0.0), Some(0.0), None, None),
                ("CPAUCM", Some(0.0), Some(0.0), None, None),
                ("CPLAUCM", Some(0.0), Some(0.0), None, None),
                ("CPAUC", Some(30.0), Some(0.0), Some(30.0), None),
                ("CPAUCM", Some(0.25), Some(0.0), Some(0.25), None),
                ("CPLAUCM", Some(1.25f64.ln()), Some(0.0), Some(1.25f64.ln()), None),
            ]
        );
        assert_eq!(records[3].fields()[8..11], ["0", "30", ""], "PCHG empty, never inf or NaN");
        assert!(records[0].ablfl);
    }

    #[test]
    fn without_a_baseline_visit_there_is_no_baseline_flag_base_or_change() {
        let mut config = config();
        config.visits.iter_mut().for_each(|v| v.baseline = false);
        let rows = [row("U01", "V0", "c_peptide", Some(60.0), true), row("U01", "V4", "c_peptide", Some(30.0), true)];
        let records = adam_records(&config, &rows, &[]);
        assert_eq!(records.len(), 6);
        for r in &records {
            assert!(!r.ablfl && r.base.is_none() && r.chg.is_none() && r.pchg.is_none(), "{r:?}");
            assert!(r.aval.is_some());
        }
    }

    fn lb(usubjid: &str, seq: u32, visit: &str, testcd: &str, minute: i64, stat: &str) -> LbRecord {
        LbRecord {
            usubjid: usubjid.into(),
            lbseq: seq,
            visit: visit.into(),
            lbtestcd: testcd.into(),
            lbtpt: lb_timepoint(minute),
            lbstat: stat.into(),
            ..LbRecord::default()
        }
    }

    #[test]
    fn each_auc_names_the_lbseq_of_the_results_it_was_computed_from() {
        let mut config = config();
        let u01 = "NCT02057211-U01";
        let mut records = vec![lb(u01, 1, "Baseline", "CPEPTIDE", -10, ""), lb(u01, 2, "Baseline", "CPEPTIDE", 0, "")];
        // 15 min was not done (no result), 30..120 are results; 240 is out of range.
        records.push(lb(u01, 3, "Baseline", "CPEPTIDE", 15, "NOT DONE"));
        for (seq, minute) in [(4, 30), (5, 60), (6, 90), (7, 120), (8, 240)] {
            records.push(lb(u01, seq, "Baseline", "CPEPTIDE", minute, ""));
        }
        records.push(lb(u01, 9, "Baseline", "GLUC", 0, ""));
        records.push(lb(u01, 10, "2 years", "CPEPTIDE", 0, ""));
        let mut interpolated = row("U01", "V0", "c_peptide", Some(60.0), false);
        interpolated.missing_minutes = vec![15];
        let no_auc = row("U01", "V4", "c_peptide", None, false);
        let adam = adam_records(&config, &[interpolated.clone(), no_auc.clone()], &records);
        let fields = adam[0].fields();
        assert_eq!((fields[14].as_str(), fields[15].as_str(), fields[16].as_str()), ("LB", "", "2 4 5 6 7"));
        assert_eq!(adam[2].fields()[16], "2 4 5 6 7", "every parameter of the AUC");
        assert_eq!(adam[3].fields()[14..], ["", "", ""], "no AVAL, no source");
        config.mmtt.baseline = BaselineSample::Mean;
        let adam = adam_records(&config, &[interpolated, no_auc], &records);
        assert_eq!(adam[0].fields()[16], "1 2 4 5 6 7", "-10 and 0 make minute 0");
    }

    #[test]
    fn a_value_xpt_cannot_hold_is_refused_naming_the_variable_and_record() {
        let mut config = config();
        config.visits.iter_mut().find(|v| v.code == "V4").unwrap().name = "Återbesök".into();
        let rows = [row("U01", "V0", "glucose", Some(720.0), true), row("U01", "V4", "glucose", Some(600.0), true)];
        let records = adam_records(&config, &rows, &[]);
        let at = "2026-12-07T19:27:32".parse().unwrap();
        let e = adam_xpt(&records, at).unwrap_err();
        assert_eq!(
            e,
            "AVISIT of the record USUBJID NCT02057211-U01 ASEQ 3: \"Återbesök\" holds 'Å': SAS XPORT v5 takes \
             printable ASCII only"
        );
        assert_eq!(adam_lengths(&records).unwrap_err(), e, "define.xml is refused the same way");
        let mut csv = Vec::new();
        write_adam_csv(&mut csv, &records).unwrap();
        assert!(String::from_utf8(csv).unwrap().contains("Återbesök"), "the CSV has no such limit");
    }

    #[test]
    fn labels_and_names_fit_sas_v5() {
        for v in ADAM_VARIABLES {
            assert!(v.name.len() <= 8 && v.label.len() <= 40, "{v:?}");
        }
        assert!(ADAM_DATASET.len() <= 8 && ADAM_LABEL.len() <= 40);
    }
}
