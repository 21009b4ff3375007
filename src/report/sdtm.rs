//! `export lb`: the CDISC SDTM LB domain (SDTMIG v3.4) as CSV, and the
//! records that `export lb --format xpt` writes.
//!
//! One record per current accepted result, plus one NOT DONE record per
//! scheduled slot a data manager marked not done (`resolve --not-done`),
//! with their reason in LBREASND. A slot that is merely empty, held for
//! review or rejected gets no record: the IG wants NOT DONE only where
//! "not done" was recorded, and a held result was done.
//!
//! Values stay as the lab reported them in LBORRES; the standardised fields
//! use the analyte's canonical unit, and a censored value (`<0.010`) keeps
//! its comparator in LBSTRESC with LBSTRESN empty: no number is ever
//! substituted for it.
//!
//! Records are ordered by participant code, visit (configuration order),
//! test code and timepoint: nothing that could reveal allocation.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use crate::local_time::LocalTime;
use crate::report::format::format_value;
use crate::report::xpt::{self, Dataset, Variable};
use crate::store::{CurrentResult, NotDoneMark, ObservationId, Visit};
use crate::study::cdisc::specimen_from_message;
use crate::study::config::Config;
use crate::study::missing::MissingResult;
use crate::study::units::normalize_unit;
use crate::value::Comparator;

const fn text(name: &'static str, label: &'static str) -> Variable {
    Variable { name, label, numeric: false }
}

const fn num(name: &'static str, label: &'static str) -> Variable {
    Variable { name, label, numeric: true }
}

/// The LB variables written, in SDTMIG 3.4 order: every Required and
/// Expected one, and the Permissible ones labfeed fills. LBLLOQ is the SDTM
/// v2.0 Findings qualifier, placed after the last LB qualifier it follows
/// in the model (before VISITNUM).
pub const LB_VARIABLES: [Variable; 31] = [
    text("STUDYID", "Study Identifier"),
    text("DOMAIN", "Domain Abbreviation"),
    text("USUBJID", "Unique Subject Identifier"),
    num("LBSEQ", "Sequence Number"),
    text("LBREFID", "Specimen ID"),
    text("LBTESTCD", "Lab Test or Examination Short Name"),
    text("LBTEST", "Lab Test or Examination Name"),
    text("LBCAT", "Category for Lab Test"),
    text("LBORRES", "Result or Finding in Original Units"),
    text("LBORRESU", "Original Units"),
    text("LBORNRLO", "Reference Range Lower Limit in Orig Unit"),
    text("LBORNRHI", "Reference Range Upper Limit in Orig Unit"),
    text("LBSTRESC", "Character Result/Finding in Std Format"),
    num("LBSTRESN", "Numeric Result/Finding in Standard Units"),
    text("LBSTRESU", "Standard Units"),
    num("LBSTNRLO", "Reference Range Lower Limit-Std Units"),
    num("LBSTNRHI", "Reference Range Upper Limit-Std Units"),
    text("LBNRIND", "Reference Range Indicator"),
    text("LBSTAT", "Completion Status"),
    text("LBREASND", "Reason Test Not Done"),
    text("LBSPEC", "Specimen Type"),
    text("LBLOBXFL", "Last Observation Before Exposure Flag"),
    num("LBLLOQ", "Lower Limit of Quantitation"),
    num("VISITNUM", "Visit Number"),
    text("VISIT", "Visit Name"),
    text("LBDTC", "Date/Time of Specimen Collection"),
    text("LBTPT", "Planned Time Point Name"),
    num("LBTPTNUM", "Planned Time Point Number"),
    text("LBELTM", "Planned Elapsed Time from Time Point Ref"),
    text("LBTPTREF", "Time Point Reference"),
    text("LBRFTDTC", "Date/Time of Reference Time Point"),
];

/// The LB variable names, in order (the CSV header).
pub const LB_COLUMNS: [&str; 31] = {
    let mut names = [""; 31];
    let mut i = 0;
    while i < names.len() {
        names[i] = LB_VARIABLES[i].name;
        i += 1;
    }
    names
};

/// LBCAT of every record.
pub const LB_CATEGORY: &str = "CHEMISTRY";
/// LBTPTREF: the MMTT's minute 0.
pub const LB_TIMEPOINT_REFERENCE: &str = "START OF MIXED MEAL";
/// LBSTAT of a slot marked not done.
pub const NOT_DONE: &str = "NOT DONE";
/// LBORRES: the value as sent, except that an HL7 SN value's component
/// separator between comparator and number (`<^0.017`) is dropped: `<0.017`.
pub fn original_result(reported: &str) -> Cow<'_, str> {
    for comparator in ["<=", ">=", "<", ">", ""] {
        if let Some(number) = reported.strip_prefix(comparator).and_then(|rest| rest.strip_prefix('^'))
            && !number.contains('^')
        {
            return Cow::Owned(format!("{comparator}{number}"));
        }
    }
    Cow::Borrowed(reported)
}

/// LBNRIND from the abnormal flag sent (HL7 OBX-8, ASTM R.7; the first of
/// several): `N` normal, `L`/`LL` low, `H`/`HH` high, `A`/`AA` abnormal.
/// Other flags (`<`, `>` off scale, delta and QC flags) say nothing about
/// the reference range: empty.
pub fn range_indicator(flags: Option<&str>) -> &'static str {
    let first = flags.and_then(|f| f.split('~').next()).map(str::trim).unwrap_or_default();
    match first.to_ascii_uppercase().as_str() {
        "N" => "NORMAL",
        "L" | "LL" => "LOW",
        "H" | "HH" => "HIGH",
        "A" | "AA" => "ABNORMAL",
        _ => "",
    }
}

/// What a result's message said that the store does not keep in its own
/// columns: read back from the stored copy of the message (which keeps
/// these fields; see `ingest::privacy`) when the export runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sent {
    /// HL7 OBX-7, ASTM R.6.
    pub reference_range: Option<String>,
    /// HL7 SPM-4.
    pub specimen_type: Option<String>,
}

/// [`Sent`] per observation.
pub type SentDetails = BTreeMap<ObservationId, Sent>;

/// A reference range as sent, split into its lower and upper limit as
/// text: `0.37-1.47`, `0.37 - 1.47`, `3.5 to 4.5` (ASTM's form, text after
/// `^` ignored), `0.270^4.20`, `<200` (upper only), `>5` and `3.0-` (lower
/// only). A unit after the limits (`70-99 mg/dL`) is dropped when it is the
/// result's own `unit`; another unit would put the limits in a unit that
/// is not LBORRESU, so that range is not used. `decimal_comma`: the
/// instrument writes `0,37`. Anything else (`Negative`, `70_105`) is not a
/// numeric range: `None`.
pub fn range_limits(range: &str, unit: Option<&str>, decimal_comma: bool) -> Option<(String, String)> {
    let number = |s: &str| {
        let s = s.trim();
        let dotted = if decimal_comma { s.replace(',', ".") } else { s.to_owned() };
        (!s.is_empty() && dotted.parse::<f64>().is_ok_and(f64::is_finite)).then_some(dotted)
    };
    let mut parts = range.split('^');
    let first = without_unit(parts.next().unwrap_or_default().trim(), unit);
    let lower_case = first.to_ascii_lowercase();
    if let Some(at) = lower_case.find(" to ") {
        return Some((number(first.get(..at)?)?, number(first.get(at + 4..)?)?));
    }
    for (comparator, upper) in [("<=", true), (">=", false), ("<", true), (">", false)] {
        if let Some(bound) = first.strip_prefix(comparator) {
            let bound = number(bound)?;
            return Some(if upper { (String::new(), bound) } else { (bound, String::new()) });
        }
    }
    // `lo-hi`: a `-` after the first character (the first may be a sign).
    if let Some(at) = first
        .char_indices()
        .skip(1)
        .find(|&(i, c)| c == '-' && first.get(..i).and_then(number).is_some())
        .map(|(i, _)| i)
    {
        let (low, high) = (first.get(..at)?, first.get(at + 1..)?);
        // `3.0-`: a lower limit with no upper one.
        let high = if high.trim().is_empty() { String::new() } else { number(high)? };
        return Some((number(low)?, high));
    }
    // `lo^hi` (two numeric components, as some ASTM senders write it).
    let second = parts.next()?;
    Some((number(first)?, number(second)?))
}

/// `range` without a trailing `unit` (spelled as [`normalize_unit`] allows),
/// when the unit follows a limit (a digit, or the `-` of `3.0-`).
fn without_unit<'a>(range: &'a str, unit: Option<&str>) -> &'a str {
    let Some(unit) = unit.map(normalize_unit).filter(|u| !u.is_empty()) else {
        return range;
    };
    range
        .char_indices()
        .map(|(i, _)| i)
        .find(|&i| {
            range.get(i..).is_some_and(|tail| normalize_unit(tail) == unit)
                && range
                    .get(..i)
                    .is_some_and(|head| head.trim_end().ends_with(|c: char| c.is_ascii_digit() || c == '-'))
        })
        .and_then(|i| range.get(..i))
        .map_or(range, str::trim_end)
}

/// One LB record, every field as written (absent ones empty). DOMAIN,
/// LBCAT and LBTPTREF are the same for all records and are not stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LbRecord {
    pub studyid: String,
    pub usubjid: String,
    /// 1, 2, … within each USUBJID, in output order.
    pub lbseq: u32,
    pub lbrefid: String,
    pub lbtestcd: String,
    pub lbtest: String,
    pub lborres: String,
    pub lborresu: String,
    pub lbornrlo: String,
    pub lbornrhi: String,
    pub lbstresc: String,
    pub lbstresn: String,
    pub lbstresu: String,
    pub lbstnrlo: String,
    pub lbstnrhi: String,
    pub lbnrind: String,
    pub lbstat: String,
    pub lbreasnd: String,
    pub lbspec: String,
    pub lblobxfl: String,
    pub lblloq: String,
    pub visitnum: String,
    pub visit: String,
    pub lbdtc: String,
    pub lbtpt: String,
    pub lbtptnum: String,
    pub lbeltm: String,
    pub lbrftdtc: String,
}

impl LbRecord {
    /// The fields in [`LB_VARIABLES`] order; numeric ones as decimal text,
    /// empty when missing.
    pub fn fields(&self) -> [String; 31] {
        let seq = self.lbseq.to_string();
        self.field_texts(&seq).map(str::to_owned)
    }

    /// [`LbRecord::fields`] borrowed, with LBSEQ as `seq` gives it.
    fn field_texts<'a>(&'a self, seq: &'a str) -> [&'a str; 31] {
        [
            &self.studyid,
            "LB",
            &self.usubjid,
            seq,
            &self.lbrefid,
            &self.lbtestcd,
            &self.lbtest,
            LB_CATEGORY,
            &self.lborres,
            &self.lborresu,
            &self.lbornrlo,
            &self.lbornrhi,
            &self.lbstresc,
            &self.lbstresn,
            &self.lbstresu,
            &self.lbstnrlo,
            &self.lbstnrhi,
            &self.lbnrind,
            &self.lbstat,
            &self.lbreasnd,
            &self.lbspec,
            &self.lblobxfl,
            &self.lblloq,
            &self.visitnum,
            &self.visit,
            &self.lbdtc,
            &self.lbtpt,
            &self.lbtptnum,
            &self.lbeltm,
            LB_TIMEPOINT_REFERENCE,
            &self.lbrftdtc,
        ]
    }
}

/// LBTPT of a nominal minute: `MMTT -10 MIN`.
pub fn lb_timepoint(minute: i64) -> String {
    format!("MMTT {minute} MIN")
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
/// order, then others by code), test code, minute, analyte. Borrowed from
/// the rows and from [`Shared`], so sorting moves no text.
type SortKey<'a> = (&'a str, (usize, &'a str), &'a str, i64, &'a str);

/// What a result and a missing result share: the slot's identification.
struct Planned<'a> {
    participant: &'a str,
    visit: &'a str,
    minute: i64,
    analyte: &'a str,
    /// LBRFTDTC.
    lbrftdtc: Cow<'a, str>,
    what: Entry<'a>,
    /// The shared fields of its analyte, visit and minute (looked up once).
    analyte_fields: Option<&'a AnalyteFields>,
    visit_fields: Option<&'a VisitFields>,
    minute_fields: Option<&'a MinuteFields>,
}

/// What a record is of.
enum Entry<'a> {
    Result(&'a CurrentResult),
    NotDone(&'a NotDoneMark),
}

/// A slot's analyte, visit and minute.
struct Slotted<'a> {
    analyte: &'a str,
    visit: &'a str,
    minute: i64,
}

/// The fields every record of one analyte shares.
struct AnalyteFields {
    lbtestcd: String,
    lbtest: String,
    lbspec: String,
    lblloq: String,
}

/// The fields every record of one visit shares.
struct VisitFields {
    configured: Option<usize>,
    visitnum: String,
    visit: String,
}

/// The fields every record of one nominal minute shares.
struct MinuteFields {
    lbtpt: String,
    lbtptnum: String,
    lbeltm: String,
}

/// Each analyte's, visit's and minute's fields made once, for every record
/// that has them; the same functions of the same configuration as making
/// them per record.
struct Shared<'a> {
    studyid: &'a str,
    analytes: BTreeMap<&'a str, AnalyteFields>,
    visits: BTreeMap<&'a str, VisitFields>,
    minutes: BTreeMap<i64, MinuteFields>,
}

impl<'a> Shared<'a> {
    /// The fields of the analytes, visits and minutes of `slots`.
    fn new(config: &'a Config, slots: impl Iterator<Item = Slotted<'a>>) -> Shared<'a> {
        let mut shared = Shared {
            studyid: &config.study.id,
            analytes: BTreeMap::new(),
            visits: BTreeMap::new(),
            minutes: BTreeMap::new(),
        };
        for p in slots {
            shared.analytes.entry(p.analyte).or_insert_with(|| {
                let analyte = config.analytes.get(p.analyte);
                let (lbtestcd, lbtest) = config.lb_test(p.analyte);
                AnalyteFields {
                    lbtestcd,
                    lbtest,
                    lbspec: analyte.and_then(|a| a.specimen.clone()).unwrap_or_default(),
                    lblloq: analyte.and_then(|a| a.lloq).map(format_value).unwrap_or_default(),
                }
            });
            shared.visits.entry(p.visit).or_insert_with(|| {
                let configured = config.visit_index(p.visit);
                let visit = configured.and_then(|i| config.visits.get(i));
                VisitFields {
                    configured,
                    visitnum: configured.map(|i| (i + 1).to_string()).unwrap_or_default(),
                    visit: visit.map_or_else(|| p.visit.to_owned(), |v| v.name.clone()),
                }
            });
            shared.minutes.entry(p.minute).or_insert_with(|| {
                let tptnum = config.mmtt.timepoints.iter().position(|&m| i64::from(m) == p.minute);
                MinuteFields {
                    lbtpt: lb_timepoint(p.minute),
                    lbtptnum: tptnum.map(|i| (i + 1).to_string()).unwrap_or_default(),
                    lbeltm: elapsed_time(p.minute),
                }
            });
        }
        shared
    }
}

/// One record's fields as written, LBSEQ and LBLOBXFL aside: borrowed from
/// the results, the marks and [`Shared`], so that only what is made for
/// each result (LBORRES with `^`, LBSTRESC, LBDTC) is text of its own.
#[derive(Default)]
struct LbRow<'a> {
    studyid: &'a str,
    usubjid: &'a str,
    lbrefid: &'a str,
    lbtestcd: &'a str,
    lbtest: &'a str,
    lborres: Cow<'a, str>,
    lborresu: &'a str,
    lbornrlo: &'a str,
    lbornrhi: &'a str,
    lbstresc: String,
    /// LBSTRESN is LBSTRESC (a value not censored), or else empty.
    numeric: bool,
    lbstresu: &'a str,
    lbstnrlo: &'a str,
    lbstnrhi: &'a str,
    lbnrind: &'a str,
    lbstat: &'a str,
    lbreasnd: &'a str,
    lbspec: &'a str,
    lblloq: &'a str,
    visitnum: &'a str,
    visit: &'a str,
    lbdtc: String,
    lbtpt: &'a str,
    lbtptnum: &'a str,
    lbeltm: &'a str,
    lbrftdtc: &'a str,
}

impl LbRow<'_> {
    /// The fields in [`LB_VARIABLES`] order, with LBSEQ as `seq` gives it.
    fn texts<'b>(&'b self, seq: &'b str, lblobxfl: bool) -> [&'b str; 31] {
        [
            self.studyid,
            "LB",
            self.usubjid,
            seq,
            self.lbrefid,
            self.lbtestcd,
            self.lbtest,
            LB_CATEGORY,
            &self.lborres,
            self.lborresu,
            self.lbornrlo,
            self.lbornrhi,
            &self.lbstresc,
            if self.numeric { &self.lbstresc } else { "" },
            self.lbstresu,
            self.lbstnrlo,
            self.lbstnrhi,
            self.lbnrind,
            self.lbstat,
            self.lbreasnd,
            self.lbspec,
            if lblobxfl { "Y" } else { "" },
            self.lblloq,
            self.visitnum,
            self.visit,
            &self.lbdtc,
            self.lbtpt,
            self.lbtptnum,
            self.lbeltm,
            LB_TIMEPOINT_REFERENCE,
            self.lbrftdtc,
        ]
    }

    fn to_record(&self, lbseq: u32, lblobxfl: bool) -> LbRecord {
        let [
            studyid,
            _,
            usubjid,
            _,
            lbrefid,
            lbtestcd,
            lbtest,
            _,
            lborres,
            lborresu,
            lbornrlo,
            lbornrhi,
            lbstresc,
            lbstresn,
            lbstresu,
            lbstnrlo,
            lbstnrhi,
            lbnrind,
            lbstat,
            lbreasnd,
            lbspec,
            lblobxfl,
            lblloq,
            visitnum,
            visit,
            lbdtc,
            lbtpt,
            lbtptnum,
            lbeltm,
            _,
            lbrftdtc,
        ] = self.texts("", lblobxfl).map(str::to_owned);
        LbRecord {
            studyid,
            usubjid,
            lbseq,
            lbrefid,
            lbtestcd,
            lbtest,
            lborres,
            lborresu,
            lbornrlo,
            lbornrhi,
            lbstresc,
            lbstresn,
            lbstresu,
            lbstnrlo,
            lbstnrhi,
            lbnrind,
            lbstat,
            lbreasnd,
            lbspec,
            lblobxfl,
            lblloq,
            visitnum,
            visit,
            lbdtc,
            lbtpt,
            lbtptnum,
            lbeltm,
            lbrftdtc,
        }
    }
}

impl<'a> Planned<'a> {
    fn key(&self) -> SortKey<'_> {
        let rank = match self.visit_fields.and_then(|v| v.configured) {
            Some(i) => (i, ""),
            None => (usize::MAX, self.visit),
        };
        let code = self.analyte_fields.map_or("", |a| a.lbtestcd.as_str());
        (self.participant, rank, code, self.minute, self.analyte)
    }

    /// A record with the identification and timing filled, results empty;
    /// `usubjid` the participant's (made once per participant).
    fn row<'s>(&'s self, studyid: &'s str, usubjid: &'s str) -> LbRow<'s> {
        let (analyte, visit, minute) = (self.analyte_fields, self.visit_fields, self.minute_fields);
        LbRow {
            studyid,
            usubjid,
            lbtestcd: analyte.map_or("", |a| &a.lbtestcd),
            lbtest: analyte.map_or("", |a| &a.lbtest),
            lbspec: analyte.map_or("", |a| &a.lbspec),
            visitnum: visit.map_or("", |v| &v.visitnum),
            visit: visit.map_or("", |v| &v.visit),
            lbtpt: minute.map_or("", |m| &m.lbtpt),
            lbtptnum: minute.map_or("", |m| &m.lbtptnum),
            lbeltm: minute.map_or("", |m| &m.lbeltm),
            lbrftdtc: &self.lbrftdtc,
            ..LbRow::default()
        }
    }
}

/// The reference limits of one range as sent, as written: LBORNRLO,
/// LBORNRHI, LBSTNRLO, LBSTNRHI.
type Limits = Option<(String, String, String, String)>;

/// The limits of a range sent with a result of `analyte` reported in
/// `reported_unit` and stored in `unit`: split as sent, then standardised
/// with the unit rule the result's value took.
fn limits(range: &str, reported_unit: Option<&str>, decimal_comma: bool, analyte: &str, unit: &str) -> Limits {
    let (low, high) = range_limits(range, reported_unit, decimal_comma)?;
    let factor = reported_unit.and_then(|from| crate::study::units::analyte_factor(analyte, from, unit));
    let standard = |limit: &str| match (limit.parse::<f64>(), factor) {
        (Ok(x), Some(f)) => format_value(x * f),
        _ => String::new(),
    };
    Some((standard(&low), standard(&high), low, high))
}

/// Ranges already split and standardised, by range, reported unit, decimal
/// comma, analyte and unit.
type LimitsMemo<'a> = BTreeMap<(&'a str, Option<&'a str>, bool, &'a str, &'a str), Limits>;

/// A current result's fields of its record.
fn fill_result<'r, 'k: 'r>(
    row: &mut LbRow<'r>,
    current: &'k CurrentResult,
    config: &Config,
    analyte: Option<&'r AnalyteFields>,
    sent: Option<&'k Sent>,
    limits_of: &'r mut LimitsMemo<'k>,
) {
    let (r, p) = (&current.result, &current.provenance);
    let slot = &r.slot;
    row.lbrefid = p.sample_id.as_deref().unwrap_or_default();
    row.lborres = p.reported_value.as_deref().map(original_result).unwrap_or_default();
    row.lborresu = p.reported_unit.as_deref().unwrap_or_default();
    // As `standard_result`, the number formatted once.
    row.lbstresc = match r.comparator {
        Some(c) => format!("{}{}", c.as_str(), format_value(r.value)),
        None => format_value(r.value),
    };
    row.numeric = r.comparator.is_none();
    row.lbstresu = &r.unit;
    row.lbnrind = range_indicator(p.flags.as_deref());
    let instrument = p.instrument.as_deref().and_then(|name| config.instrument(name));
    let decimal_comma = instrument.is_some_and(|i| i.decimal_comma);
    if let Some(range) = sent.and_then(|s| s.reference_range.as_deref()) {
        // A range sent once is split and standardised once: the same pure
        // functions of the same arguments.
        let key = (range, p.reported_unit.as_deref(), decimal_comma, slot.analyte.as_str(), r.unit.as_str());
        let found = limits_of
            .entry(key)
            .or_insert_with(|| limits(range, p.reported_unit.as_deref(), decimal_comma, &slot.analyte, &r.unit));
        if let Some((stlo, sthi, low, high)) = found {
            (row.lbstnrlo, row.lbstnrhi) = (stlo, sthi);
            (row.lbornrlo, row.lbornrhi) = (low, high);
        }
    }
    // The message's specimen when it names a common SPECTYPE term.
    if let Some(term) = sent.and_then(|s| s.specimen_type.as_deref()).and_then(specimen_from_message) {
        row.lbspec = term;
    }
    row.lblloq = analyte.map_or("", |a| &a.lblloq);
    // An instrument whose collection time is a registration time (see
    // `trust_collection_time`) gives no LBDTC rather than a wrong one.
    let trusted = instrument.is_none_or(|i| i.trust_collection_time);
    if trusted {
        row.lbdtc = p.collected_time().unwrap_or_default();
    }
}

/// The LB records of the current accepted results and of the slots a data
/// manager marked not done
/// ([`not_done_results`](crate::study::missing::not_done_results)), in
/// output order with LBSEQ numbered and LBLOBXFL set. `visits` gives the
/// meal starts (LBRFTDTC).
pub fn lb_records(
    config: &Config,
    results: &[CurrentResult],
    visits: &[Visit],
    not_done: &[(MissingResult, NotDoneMark)],
    sent: &SentDetails,
) -> Vec<LbRecord> {
    let mut records = Vec::with_capacity(results.len() + not_done.len());
    let made: Result<(), std::convert::Infallible> =
        each_lb_row(config, results, visits, not_done, sent, |row, seq, lblobxfl| {
            records.push(row.to_record(seq, lblobxfl));
            Ok(())
        });
    match made {
        Ok(()) => records,
    }
}

/// [`lb_records`] as CSV (the header row, then one row per record), each
/// record written as it is made; how many records were written.
pub fn write_lb_csv(
    out: impl Write,
    config: &Config,
    results: &[CurrentResult],
    visits: &[Visit],
    not_done: &[(MissingResult, NotDoneMark)],
    sent: &SentDetails,
) -> csv::Result<usize> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(LB_COLUMNS)?;
    let mut rows = 0;
    each_lb_row(config, results, visits, not_done, sent, |row, seq, lblobxfl| {
        rows += 1;
        w.write_record(row.texts(&seq.to_string(), lblobxfl))
    })?;
    w.flush()?;
    Ok(rows)
}

/// Hand each LB record, in output order, to `each` with its LBSEQ and
/// whether it is LBLOBXFL `Y`; made one at a time, so that some thirty
/// columns of text are never held for every record.
fn each_lb_row<E>(
    config: &Config,
    results: &[CurrentResult],
    visits: &[Visit],
    not_done: &[(MissingResult, NotDoneMark)],
    sent: &SentDetails,
    mut each: impl FnMut(&LbRow<'_>, u32, bool) -> Result<(), E>,
) -> Result<(), E> {
    // LBRFTDTC made once per visit.
    let meal_starts: BTreeMap<(&str, &str), String> = visits
        .iter()
        .filter_map(|v| Some(((v.participant.as_str(), v.visit.as_str()), reference_time(v.meal_start?))))
        .collect();
    let slotted = results
        .iter()
        .map(|c| &c.result.slot)
        .map(|s| Slotted { analyte: &s.analyte, visit: &s.visit, minute: s.minute })
        .chain(not_done.iter().map(|(m, _)| Slotted {
            analyte: &m.analyte,
            visit: &m.visit,
            minute: i64::from(m.minute),
        }));
    let shared = Shared::new(config, slotted);
    let planned = |participant, visit, minute, analyte, lbrftdtc, what| Planned {
        participant,
        visit,
        minute,
        analyte,
        lbrftdtc,
        what,
        analyte_fields: shared.analytes.get(analyte),
        visit_fields: shared.visits.get(visit),
        minute_fields: shared.minutes.get(&minute),
    };
    let of_result = results.iter().map(|current| {
        let slot = &current.result.slot;
        let meal_start = meal_starts.get(&(slot.participant.as_str(), slot.visit.as_str()));
        let lbrftdtc = Cow::Borrowed(meal_start.map_or("", String::as_str));
        planned(&slot.participant, &slot.visit, slot.minute, &slot.analyte, lbrftdtc, Entry::Result(current))
    });
    let of_not_done = not_done.iter().map(|(m, mark)| {
        let lbrftdtc = Cow::Owned(reference_time(m.meal_start));
        planned(&m.participant, &m.visit, i64::from(m.minute), &m.analyte, lbrftdtc, Entry::NotDone(mark))
    });
    let planned: Vec<Planned<'_>> = of_result.chain(of_not_done).collect();
    // Sorted by key (stable: equal keys keep their order).
    let mut order: Vec<(SortKey<'_>, &Planned<'_>)> = planned.iter().map(|p| (p.key(), p)).collect();
    order.sort_by(|a, b| a.0.cmp(&b.0));
    let flagged = last_before_exposure(config, &order);
    let mut limits_of = LimitsMemo::new();
    let mut seq = 0;
    let (mut subject, mut usubjid) = (None, String::new());
    for (at, (_, planned)) in order.iter().enumerate() {
        // A participant's records are together: USUBJID made once for them.
        if subject != Some(planned.participant) {
            subject = Some(planned.participant);
            usubjid = format!("{}-{}", shared.studyid, planned.participant);
            seq = 0;
        }
        seq += 1;
        let mut row = planned.row(shared.studyid, &usubjid);
        match planned.what {
            Entry::Result(current) => {
                let sent = sent.get(&current.result.observation_id);
                fill_result(&mut row, current, config, planned.analyte_fields, sent, &mut limits_of);
            }
            Entry::NotDone(mark) => {
                row.lbstat = NOT_DONE;
                row.lbreasnd = &mark.reason;
            }
        }
        each(&row, seq, flagged.contains(&at))?;
    }
    Ok(())
}

/// LBLOBXFL = `Y` on the last pre-meal result (minute ≤ 0) of the baseline
/// visit, one per subject and test: the value before the study's
/// intervention is judged against. No baseline visit configured: none.
/// The positions in `order` flagged.
fn last_before_exposure(config: &Config, order: &[(SortKey<'_>, &Planned<'_>)]) -> BTreeSet<usize> {
    let Some(baseline) = config.baseline_visit().and_then(|v| config.visit_index(&v.code)) else {
        return BTreeSet::new();
    };
    let mut last: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (at, ((participant, (visit, _), code, minute, _), planned)) in order.iter().enumerate() {
        // A result (its LBSTRESC is never empty), not a NOT DONE record.
        if *visit == baseline && *minute <= 0 && matches!(planned.what, Entry::Result(_)) {
            // Sorted by minute within a subject and test: the later one wins.
            last.insert((participant, code), at);
        }
    }
    last.into_values().collect()
}

/// `lb.xpt`: the records as SAS XPORT v5 dataset `LB`. A value v5 cannot
/// hold (non-ASCII, over 200 bytes) is refused naming the variable and the
/// record (USUBJID and LBSEQ): nothing is cut or transliterated.
pub fn lb_xpt(records: &[LbRecord], created: jiff::civil::DateTime) -> Result<Vec<u8>, String> {
    let rows = lb_rows(records);
    xpt::write(&lb_dataset(&rows), created).map_err(|e| lb_error(records, &e))
}

/// The variable lengths `lb.xpt` has for these records (define.xml states
/// them), refused as [`lb_xpt`] refuses.
pub fn lb_lengths(records: &[LbRecord]) -> Result<Vec<usize>, String> {
    let rows = lb_rows(records);
    xpt::lengths(&lb_dataset(&rows)).map_err(|e| lb_error(records, &e))
}

/// The dataset's name and label.
pub const LB_DATASET: &str = "LB";
pub const LB_LABEL: &str = "Laboratory Test Results";

fn lb_rows(records: &[LbRecord]) -> Vec<Vec<String>> {
    records.iter().map(|r| r.fields().to_vec()).collect()
}

fn lb_dataset(rows: &[Vec<String>]) -> Dataset<'_> {
    Dataset { name: LB_DATASET, label: LB_LABEL, variables: &LB_VARIABLES, rows }
}

fn lb_error(records: &[LbRecord], e: &xpt::ValueError) -> String {
    match e.row.and_then(|r| records.get(r)) {
        Some(record) => {
            format!("{} of the record USUBJID {} LBSEQ {}: {}", e.variable, record.usubjid, record.lbseq, e.problem)
        }
        None => e.to_string(),
    }
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
            absence: crate::study::missing::Absence::NotReceived,
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
    fn reference_ranges_split_into_limits_as_sent() {
        let both = |lo: &str, hi: &str| Some((lo.to_owned(), hi.to_owned()));
        let cases = [
            ("0.37-1.47", false, both("0.37", "1.47")),
            ("0.37 - 1.47", false, both("0.37", "1.47")),
            ("3.5 to 4.5", false, both("3.5", "4.5")),
            ("136 TO 145", false, both("136", "145")),
            ("222 to 1439^normal", false, both("222", "1439")),
            ("0.270^4.20", false, both("0.270", "4.20")),
            ("-2-2", false, both("-2", "2")),
            ("-3--1", false, both("-3", "-1")),
            ("<200", false, both("", "200")),
            ("<=5.5", false, both("", "5.5")),
            (">5", false, both("5", "")),
            ("0,37-1,47", true, both("0.37", "1.47")),
            ("0,37-1,47", false, None),
            ("Negative", false, None),
            ("70_105", false, None),
            ("^", false, None),
            ("3.0-", false, both("3.0", "")),
            ("3.0 - ", false, both("3.0", "")),
            ("< 0.5", false, both("", "0.5")),
            ("-", false, None),
            ("-3.0", false, None),
        ];
        for (range, comma, expected) in cases {
            assert_eq!(range_limits(range, None, comma), expected, "{range:?}");
        }
        // A unit after the limits: the result's own one is dropped, another
        // one (limits not in LBORRESU) makes it no usable range.
        let with_unit = [
            ("70-99 mg/dL", "mg/dL", both("70", "99")),
            ("70 - 99 MG/DL", "mg/dL", both("70", "99")),
            ("0.37-1.47nmol/L", "nmol/L", both("0.37", "1.47")),
            ("<0.5 ng/mL", "ng/mL", both("", "0.5")),
            (">3 ug/L", "µg/L", both("3", "")),
            ("3.0- mmol/L", "mmol/L", both("3.0", "")),
            ("1.1 to 4.4 ng/mL^normal", "ng/mL", both("1.1", "4.4")),
            ("0.37-1.47 nmol/L", "ng/mL", None),
            ("3.9-5.5 mmol/L", "mg/dL", None),
        ];
        for (range, unit, expected) in with_unit {
            assert_eq!(range_limits(range, Some(unit), false), expected, "{range:?} in {unit}");
        }
    }

    #[test]
    fn the_messages_range_is_converted_like_the_value_and_its_specimen_wins_when_it_is_a_term() {
        let config = config();
        let mut cpep = result(Slot::new("U01", "V0", 0, "c_peptide"), 0.9 * 0.33109, None, ("0.9", "ng/mL"));
        cpep.result.observation_id = crate::store::ObservationId(1);
        let mut gluc = result(Slot::new("U01", "V0", 0, "glucose"), 5.0, None, ("5.0", "mmol/L"));
        gluc.result.observation_id = crate::store::ObservationId(2);
        let sent = SentDetails::from([
            (
                crate::store::ObservationId(1),
                Sent { reference_range: Some("1.1-4.4".into()), specimen_type: Some("PLAS".into()) },
            ),
            (
                crate::store::ObservationId(2),
                Sent { reference_range: Some("Negative".into()), specimen_type: Some("UR".into()) },
            ),
        ]);
        let records = lb_records(&config, &[cpep, gluc], &[], &[], &sent);
        let r = &records[0];
        // 1.1 × 0.33109 = 0.364199, 4.4 × 0.33109 = 1.456796 nmol/L.
        let limits = (r.lbornrlo.as_str(), r.lbornrhi.as_str(), r.lbstnrlo.as_str(), r.lbstnrhi.as_str());
        assert_eq!(limits, ("1.1", "4.4", "0.364199", "1.456796"));
        assert_eq!(r.lbspec, "PLASMA", "SPM-4 PLAS over the configured SERUM");
        let r = &records[1];
        assert_eq!((r.lbornrlo.as_str(), r.lbstnrhi.as_str()), ("", ""), "not a numeric range");
        assert_eq!(r.lbspec, "PLASMA", "an SPM-4 that is no common term leaves the configured one");
    }

    #[test]
    fn range_indicators_come_from_the_first_flag() {
        let cases = [
            (Some("N"), "NORMAL"),
            (Some("L"), "LOW"),
            (Some("LL"), "LOW"),
            (Some("h"), "HIGH"),
            (Some("HH~D"), "HIGH"),
            (Some("A"), "ABNORMAL"),
            (Some("<"), ""),
            (Some("D~H"), ""),
            (None, ""),
        ];
        for (flags, expected) in cases {
            assert_eq!(range_indicator(flags), expected, "{flags:?}");
        }
    }

    #[test]
    fn the_variables_are_in_ig_order_with_labels_sas_can_hold() {
        let names: Vec<&str> = LB_VARIABLES.iter().map(|v| v.name).collect();
        assert_eq!(names, LB_COLUMNS);
        let at = |name: &str| names.iter().position(|n| *n == name).unwrap();
        // SDTMIG 3.4 LB: qualifiers in table order, LBLLOQ after them, then timing.
        let ig = [
            "LBSEQ", "LBREFID", "LBTESTCD", "LBTEST", "LBCAT", "LBORRES", "LBORRESU", "LBORNRLO", "LBORNRHI",
            "LBSTRESC", "LBSTRESN", "LBSTRESU", "LBSTNRLO", "LBSTNRHI", "LBNRIND", "LBSTAT", "LBREASND", "LBSPEC",
            "LBLOBXFL", "LBLLOQ", "VISITNUM", "VISIT", "LBDTC", "LBTPT", "LBTPTNUM", "LBELTM", "LBTPTREF", "LBRFTDTC",
        ];
        assert!(ig.windows(2).all(|w| at(w[0]) < at(w[1])), "{names:?}");
        for v in LB_VARIABLES {
            assert!(v.name.len() <= 8 && v.label.len() <= 40 && v.label.is_ascii(), "{v:?}");
        }
        assert_eq!(LB_VARIABLES.iter().filter(|v| v.label.len() == 40).count(), 4);
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
        let mut censored = censored;
        censored.provenance.sample_id = Some("U07-V4-T90".into());
        censored.provenance.flags = Some("L".into());
        let records = lb_records(&config, &[censored], &visits, &[], &SentDetails::new());
        assert_eq!(records.len(), 1);
        assert_eq!(
            records[0].fields(),
            [
                "NCT02057211",
                "LB",
                "NCT02057211-U07",
                "1",
                "U07-V4-T90",
                "CPEPTIDE",
                "C-peptide",
                "CHEMISTRY",
                "<0.010",
                "ng/mL",
                "",
                "",
                "<0.0033109",
                "",
                "nmol/L",
                "",
                "",
                "LOW",
                "",
                "",
                "SERUM",
                "",
                "0.017",
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

    fn mark(reason: &str) -> NotDoneMark {
        NotDoneMark {
            id: crate::store::MismatchId(9),
            reason: reason.into(),
            by: "dm".into(),
            at: "2026-03-05T09:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn only_a_slot_marked_not_done_is_a_not_done_record_with_the_reason_and_no_result() {
        let config = config();
        let marked = [(missing("U07", "V0", -10, "glucose"), mark("vein collapsed"))];
        let records = lb_records(&config, &[], &[], &marked, &SentDetails::new());
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!((r.lbstat.as_str(), r.lbreasnd.as_str(), r.lbseq), ("NOT DONE", "vein collapsed", 1));
        for field in [&r.lborres, &r.lborresu, &r.lbstresc, &r.lbstresn, &r.lbstresu, &r.lblloq, &r.lbdtc, &r.lbnrind] {
            assert_eq!(field, "");
        }
        assert_eq!((r.lbtestcd.as_str(), r.lbspec.as_str(), r.lblobxfl.as_str()), ("GLUC", "PLASMA", ""));
        assert_eq!((r.visitnum.as_str(), r.visit.as_str()), ("1", "Baseline"));
        assert_eq!((r.lbtpt.as_str(), r.lbtptnum.as_str(), r.lbeltm.as_str()), ("MMTT -10 MIN", "1", "-PT10M"));
        assert_eq!(r.lbrftdtc, "2026-03-02T08:30");
        assert!(
            lb_records(&config, &[], &[], &[], &SentDetails::new()).is_empty(),
            "an empty slot alone gives no record"
        );
    }

    #[test]
    fn the_last_pre_meal_result_of_the_baseline_visit_is_flagged_once_per_subject_and_test() {
        let config = config();
        let c = |p: &str, v: &str, m: i64, a: &str| result(Slot::new(p, v, m, a), 0.5, None, ("0.5", "nmol/L"));
        let results = [
            c("U01", "V0", -10, "c_peptide"),
            c("U01", "V0", 0, "c_peptide"),
            c("U01", "V0", 15, "c_peptide"),
            c("U01", "V0", -10, "glucose"),
            c("U01", "V1", 0, "c_peptide"),
            c("U02", "V0", 15, "c_peptide"),
            c("U03", "V0", -10, "c_peptide"),
        ];
        // U03's 0-min draw was not done: its -10 min result is the last one.
        let marked = [(missing("U03", "V0", 0, "c_peptide"), mark("not drawn"))];
        let records = lb_records(&config, &results, &[], &marked, &SentDetails::new());
        let flagged: Vec<String> = records
            .iter()
            .filter(|r| r.lblobxfl == "Y")
            .map(|r| format!("{} {} {} {}", r.usubjid, r.visit, r.lbtestcd, r.lbtpt))
            .collect();
        assert_eq!(
            flagged,
            [
                "NCT02057211-U01 Baseline CPEPTIDE MMTT 0 MIN",
                "NCT02057211-U01 Baseline GLUC MMTT -10 MIN",
                "NCT02057211-U03 Baseline CPEPTIDE MMTT -10 MIN",
            ]
        );
        let mut no_baseline = config.clone();
        no_baseline.visits.iter_mut().for_each(|v| v.baseline = false);
        assert!(
            lb_records(&no_baseline, &results, &[], &marked, &SentDetails::new()).iter().all(|r| r.lblobxfl.is_empty())
        );
    }

    #[test]
    fn configured_test_codes_names_and_specimens_are_used() {
        let mut config = config();
        let glucose = config.analytes.get_mut("glucose").unwrap();
        glucose.test_code = Some("GLUCPL".into());
        glucose.test_name = Some("Glucose, plasma".into());
        let records = lb_records(
            &config,
            &[result(Slot::new("U01", "V0", 0, "glucose"), 5.0, None, ("5", "mmol/L"))],
            &[],
            &[],
            &SentDetails::new(),
        );
        let r = &records[0];
        assert_eq!(
            (r.lbtestcd.as_str(), r.lbtest.as_str(), r.lbspec.as_str()),
            ("GLUCPL", "Glucose, plasma", "PLASMA")
        );
    }

    #[test]
    fn an_untrusted_collection_time_and_unconfigured_things_leave_fields_empty() {
        let mut config = config();
        config.analytes.get_mut("glucose").unwrap().specimen = None;
        let mut e411 = result(Slot::new("U07", "V9", 45, "glucose"), 5.4, None, ("5.4", "mmol/L"));
        e411.provenance.instrument = Some("cobas-e411".into());
        let records = lb_records(&config, &[e411], &[], &[], &SentDetails::new());
        let r = &records[0];
        assert_eq!((r.lbrefid.as_str(), r.lbnrind.as_str()), ("", ""));
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
        let gaps = [
            (missing("U01", "V0", -10, "c_peptide"), mark("not drawn")),
            (missing("U02", "V0", -10, "glucose"), mark("not drawn")),
        ];
        let records = lb_records(&config, &results, &[], &gaps, &SentDetails::new());
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
        let rows = write_lb_csv(&mut out, &config(), &[], &[], &[], &SentDetails::new()).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), format!("{}\n", LB_COLUMNS.join(",")));
        assert_eq!(rows, 0);
    }

    #[test]
    fn the_csv_written_as_records_are_made_is_the_records_fields() {
        let config = config();
        let visits = [Visit {
            participant: "U01".into(),
            visit: "V0".into(),
            meal_start: Some("2026-03-02T08:30".parse().unwrap()),
        }];
        let mut cpep = result(Slot::new("U01", "V0", 0, "c_peptide"), 0.9 * 0.33109, None, ("0.9", "ng/mL"));
        cpep.result.observation_id = crate::store::ObservationId(1);
        cpep.provenance.flags = Some("H".into());
        let censored =
            result(Slot::new("U01", "V0", -10, "c_peptide"), 0.01, Some(Comparator::Lt), ("<^0.01", "nmol/L"));
        let other = result(Slot::new("U02", "V9", 45, "glucose"), 5.0, None, ("5,0 \"x\"", "mmol/L"));
        let sent = SentDetails::from([(
            crate::store::ObservationId(1),
            Sent { reference_range: Some("1.1-4.4".into()), specimen_type: Some("PLAS".into()) },
        )]);
        let marked = [(missing("U01", "V0", 15, "glucose"), mark("clotted, \"twice\""))];
        let results = [other, cpep, censored];
        let records = lb_records(&config, &results, &visits, &marked, &sent);
        let mut expected = csv::Writer::from_writer(Vec::new());
        expected.write_record(LB_COLUMNS).unwrap();
        for r in &records {
            expected.write_record(r.fields()).unwrap();
        }
        let mut out = Vec::new();
        let rows = write_lb_csv(&mut out, &config, &results, &visits, &marked, &sent).unwrap();
        assert_eq!((rows, records.len()), (4, 4));
        assert_eq!(String::from_utf8(out).unwrap(), String::from_utf8(expected.into_inner().unwrap()).unwrap());
        assert_eq!(records.iter().filter(|r| r.lblobxfl == "Y").count(), 1);
    }
}
