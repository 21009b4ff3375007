//! `export define`: define.xml (Define-XML 2.1 on ODM 1.3.2) describing the
//! datasets `export lb` and `export adam` write, and the same metadata as a
//! plain HTML page for people (`--format html`).
//!
//! Names, labels and types come from the variable tables the XPT writers
//! use ([`LB_VARIABLES`], [`ADAM_VARIABLES`]) and text lengths from the XPT
//! writer itself for the same records, so define.xml cannot disagree with
//! the transport files. What only define.xml says (core, key, origin, how a
//! value is derived, codelist) is in [`lb_meta`] and [`adam_meta`]; the
//! derivations are worded from the study's own `[mmtt]` settings.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::report::adam::{ADAM_DATASET, ADAM_LABEL, ADAM_VARIABLES, AdamRecord, adam_lengths, parameter_list};
use crate::report::format::format_value;
use crate::report::html::escape;
use crate::report::sdtm::{LB_DATASET, LB_LABEL, LB_TIMEPOINT_REFERENCE, NOT_DONE, lb_lengths};
use crate::report::xpt::Variable;
use crate::report::{LB_VARIABLES, LbRecord};
use crate::study::config::{BaselineSample, BlqRule, Config, MissingRule};

/// The namespaces and versions a Define-XML 2.1 file declares.
pub const ODM_NAMESPACE: &str = "http://www.cdisc.org/ns/odm/v1.3";
pub const DEFINE_NAMESPACE: &str = "http://www.cdisc.org/ns/def/v2.1";
const XLINK_NAMESPACE: &str = "http://www.w3.org/1999/xlink";
const DEFINE_VERSION: &str = "2.1.0";

/// A variable's core in its implementation guide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Core {
    Required,
    Expected,
    /// ADaMIG's Conditional: required when it applies.
    Conditional,
    Permissible,
}

/// Where a variable's values come from (Define-XML 2.1 `def:Origin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Collected, with its source (`Vendor`, `Investigator`, `Sponsor`).
    Collected(&'static str),
    /// Set by the sponsor (here: the study configuration).
    Assigned,
    /// Fixed by the protocol (the MMTT schedule).
    Protocol,
    /// Computed: the method says how.
    Derived,
    /// Copied from a variable of another dataset (`LB.USUBJID`).
    Predecessor(&'static str),
}

impl Origin {
    fn kind(self) -> &'static str {
        match self {
            Origin::Collected(_) => "Collected",
            Origin::Assigned => "Assigned",
            Origin::Protocol => "Protocol",
            Origin::Derived => "Derived",
            Origin::Predecessor(_) => "Predecessor",
        }
    }

    fn source(self) -> Option<&'static str> {
        match self {
            Origin::Collected(source) => Some(source),
            Origin::Assigned => Some("Sponsor"),
            _ => None,
        }
    }
}

/// What define.xml says about a variable beyond its name, label and type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub core: Core,
    /// Position in the dataset's key.
    pub key: Option<u32>,
    pub origin: Origin,
    pub integer: bool,
    /// OID suffix of the method (`MT.{method}`) of a derived variable.
    pub method: Option<&'static str>,
    /// OID suffix of the codelist (`CL.{codelist}`).
    pub codelist: Option<&'static str>,
    /// Said of the variable always (a comment).
    pub note: Option<&'static str>,
    /// Why an Expected or Conditional variable can be null in every record.
    pub when_null: &'static str,
}

const fn meta(core: Core, origin: Origin) -> Meta {
    Meta { core, key: None, origin, integer: false, method: None, codelist: None, note: None, when_null: "" }
}

impl Meta {
    const fn key(self, key: u32) -> Meta {
        Meta { key: Some(key), ..self }
    }
    const fn integer(self) -> Meta {
        Meta { integer: true, ..self }
    }
    const fn method(self, method: &'static str) -> Meta {
        Meta { method: Some(method), ..self }
    }
    const fn codelist(self, codelist: &'static str) -> Meta {
        Meta { codelist: Some(codelist), ..self }
    }
    const fn note(self, note: &'static str) -> Meta {
        Meta { note: Some(note), ..self }
    }
    const fn when_null(self, why: &'static str) -> Meta {
        Meta { when_null: why, ..self }
    }
}

const VENDOR: Origin = Origin::Collected("Vendor");

/// The define.xml metadata of an LB variable (SDTMIG 3.4 cores).
pub fn lb_meta(name: &str) -> Option<Meta> {
    use Core::{Expected as Exp, Permissible as Perm, Required as Req};
    Some(match name {
        "STUDYID" => meta(Req, Origin::Assigned).key(1),
        "DOMAIN" => meta(Req, Origin::Assigned),
        "USUBJID" => meta(Req, Origin::Derived).key(2).method("USUBJID"),
        "LBSEQ" => meta(Req, Origin::Derived).integer().method("LBSEQ"),
        "LBREFID" => meta(Perm, VENDOR),
        "LBTESTCD" => meta(Req, Origin::Assigned).key(3).codelist("LBTESTCD"),
        "LBTEST" => meta(Req, Origin::Assigned).codelist("LBTEST"),
        "LBCAT" => meta(Exp, Origin::Assigned),
        "LBORRES" => meta(Exp, VENDOR).when_null("No record has a result: every record is NOT DONE."),
        "LBORRESU" => meta(Exp, VENDOR).codelist("UNIT").when_null("No result came with a unit."),
        "LBORNRLO" | "LBORNRHI" => meta(Exp, VENDOR)
            .note(
                "The limit of the reference range the lab's message gave (HL7 OBX-7, ASTM R.6), as sent; a range \
                 stated in a unit other than LBORRESU is not used.",
            )
            .when_null("No result's message gave a numeric reference range with this limit."),
        "LBSTRESC" | "LBSTRESN" => meta(Exp, Origin::Derived)
            .method("LBSTRESC")
            .when_null("No record has a result in the standard unit, or every one is censored (LBSTRESN)."),
        "LBSTRESU" => meta(Exp, Origin::Assigned).codelist("UNIT").when_null("No record has a result."),
        "LBSTNRLO" | "LBSTNRHI" => meta(Exp, Origin::Derived)
            .method("LBSTNR")
            .when_null("No result's message gave a numeric reference range with this limit in a convertible unit."),
        "LBNRIND" => meta(Exp, Origin::Derived)
            .method("LBNRIND")
            .codelist("NRIND")
            .when_null("No result's message carried a normal/abnormal flag (HL7 OBX-8, ASTM R.7)."),
        "LBSTAT" => meta(Exp, Origin::Collected("Sponsor"))
            .codelist("ND")
            .note("NOT DONE only where a data manager recorded the test as not done (labfeed resolve --not-done).")
            .when_null("No test was recorded as not done."),
        "LBREASND" => {
            meta(Exp, Origin::Collected("Sponsor")).when_null("No test was recorded as not done, so no reason.")
        }
        "LBSPEC" => meta(Exp, VENDOR)
            .note(
                "The specimen type of the lab's message (HL7 SPM-4) when it names a common SPECTYPE term, \
                 else the one configured for the analyte.",
            )
            .when_null("No message named a specimen type and none is configured."),
        "LBLOBXFL" => meta(Exp, Origin::Derived)
            .method("LBLOBXFL")
            .codelist("NY")
            .when_null("No baseline visit is configured, or no baseline visit has a pre-meal result."),
        "LBLLOQ" => meta(Exp, Origin::Assigned)
            .note("The analyte's lower limit of quantitation in the standard unit, from the study configuration.")
            .when_null("No analyte has an LLOQ configured."),
        "VISITNUM" => meta(Exp, Origin::Assigned)
            .key(4)
            .integer()
            .note("The visit's position in the study's configured visits.")
            .when_null("No record is of a configured visit."),
        "VISIT" => meta(Perm, Origin::Assigned),
        "LBDTC" => meta(Exp, VENDOR)
            .note(
                "The collection time the lab sent; null for an instrument whose time is a registration time, \
                 not the draw time.",
            )
            .when_null("No trusted collection time was sent for any result."),
        "LBTPT" | "LBELTM" => meta(Perm, Origin::Protocol),
        "LBTPTNUM" => meta(Perm, Origin::Protocol).key(6).integer(),
        "LBTPTREF" => meta(Perm, Origin::Protocol).key(5),
        "LBRFTDTC" => meta(Perm, Origin::Collected("Investigator")),
        _ => return None,
    })
}

/// The define.xml metadata of an ADMMTT variable (ADaMIG 1.3 cores).
pub fn adam_meta(name: &str) -> Option<Meta> {
    use Core::{Conditional as Cond, Permissible as Perm, Required as Req};
    Some(match name {
        "STUDYID" => meta(Req, Origin::Predecessor("LB.STUDYID")).key(1),
        "USUBJID" => meta(Req, Origin::Predecessor("LB.USUBJID")).key(2),
        "ASEQ" => meta(Perm, Origin::Derived).integer().method("ASEQ"),
        "PARAMCD" => meta(Req, Origin::Assigned).key(3).codelist("PARAMCD"),
        "PARAM" => meta(Req, Origin::Assigned).codelist("PARAM"),
        "AVISIT" => meta(Cond, Origin::Predecessor("LB.VISIT")),
        "AVISITN" => meta(Cond, Origin::Predecessor("LB.VISITNUM")).key(4).integer(),
        "AVAL" => meta(Cond, Origin::Derived).method("AVAL").when_null("No visit has an AUC."),
        "BASE" => meta(Cond, Origin::Derived).method("BASE").when_null("No subject has an AUC at the baseline visit."),
        "CHG" => meta(Cond, Origin::Derived).method("CHG").when_null("No post-baseline AUC has a baseline to compare."),
        "PCHG" => meta(Cond, Origin::Derived).method("PCHG").when_null("No post-baseline AUC has a non-zero baseline."),
        "ABLFL" => meta(Cond, Origin::Derived)
            .method("ABLFL")
            .codelist("NY")
            .when_null("No subject has an AUC at the baseline visit."),
        "DTYPE" => meta(Cond, Origin::Derived)
            .method("DTYPE")
            .codelist("DTYPE")
            .when_null("No AUC was computed with an interpolated point."),
        "BLQIMPFL" => meta(Perm, Origin::Derived).method("BLQIMPFL").codelist("NY"),
        "SRCDOM" => {
            meta(Perm, Origin::Assigned).note("LB on every record with an AVAL: AVAL is computed from LB records.")
        }
        "SRCSEQ" => meta(Perm, Origin::Assigned).integer().note(
            "Null: SRCSEQ holds one record's sequence number and each AVAL is computed from several LB records; \
             SRCSEQS lists them all.",
        ),
        "SRCSEQS" => meta(Perm, Origin::Derived).method("SRCSEQS"),
        _ => return None,
    })
}

/// One variable as define.xml describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub variable: Variable,
    pub meta: Meta,
    /// Text: the XPT length in bytes. Numbers: the most digits a value has
    /// (Define-XML's length of a number; the XPT holds it in 8 bytes).
    pub length: usize,
    /// Floats: the most digits after the point.
    pub significant_digits: Option<usize>,
    /// Null in every record.
    pub empty: bool,
}

impl Item {
    fn data_type(&self) -> &'static str {
        match (self.variable.numeric, self.meta.integer) {
            (false, _) => "text",
            (true, true) => "integer",
            (true, false) => "float",
        }
    }

    /// The comment define.xml gives: the note, and why an Expected or
    /// Conditional variable is null when it is.
    pub fn comment(&self) -> Option<String> {
        let null = self.empty
            && matches!(self.meta.core, Core::Expected | Core::Conditional)
            && !self.meta.when_null.is_empty();
        match (self.meta.note, null) {
            (Some(note), true) => Some(format!("{note} Null in every record: {}", self.meta.when_null)),
            (Some(note), false) => Some(note.to_owned()),
            (None, true) => Some(format!("Null in every record: {}", self.meta.when_null)),
            (None, false) => None,
        }
    }
}

/// One dataset (ItemGroupDef).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetDef {
    pub name: &'static str,
    pub label: &'static str,
    /// `Tabulation` (SDTM) or `Analysis` (ADaM).
    pub purpose: &'static str,
    pub class: &'static str,
    pub structure: &'static str,
    pub standard: &'static str,
    pub file: &'static str,
    pub records: usize,
    pub items: Vec<Item>,
}

/// A codelist: its OID suffix, name, NCI code and terms with decodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeList {
    pub id: &'static str,
    pub name: &'static str,
    pub nci: Option<&'static str>,
    pub terms: Vec<(String, Option<String>)>,
}

/// A derivation (MethodDef).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Method {
    pub id: &'static str,
    pub name: &'static str,
    /// `Computation` or `Imputation`.
    pub kind: &'static str,
    pub description: String,
}

/// Everything define.xml says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Define {
    pub study: String,
    pub datasets: Vec<DatasetDef>,
    pub codelists: Vec<CodeList>,
    pub methods: Vec<Method>,
}

/// The most digits and decimals among the values of a numeric column.
fn digits<'a>(values: impl Iterator<Item = &'a str>) -> (usize, usize) {
    values.fold((1, 0), |(length, decimals), v| {
        let all = v.chars().filter(char::is_ascii_digit).count();
        let after = v.split_once('.').map_or(0, |(_, f)| f.chars().filter(char::is_ascii_digit).count());
        (length.max(all), decimals.max(after))
    })
}

fn items(
    variables: &[Variable],
    rows: &[Vec<String>],
    lengths: &[usize],
    meta: fn(&str) -> Option<Meta>,
) -> Result<Vec<Item>, String> {
    variables
        .iter()
        .zip(lengths)
        .enumerate()
        .map(|(i, (&variable, &xpt_length))| {
            let meta = meta(variable.name).ok_or_else(|| format!("no define.xml metadata for {}", variable.name))?;
            let values = || rows.iter().filter_map(move |r| r.get(i)).map(String::as_str);
            let empty = values().all(str::is_empty);
            let (length, significant_digits) = if variable.numeric {
                let (length, decimals) = digits(values());
                (length, (!meta.integer).then_some(decimals))
            } else {
                (xpt_length, None)
            };
            Ok(Item { variable, meta, length, significant_digits, empty })
        })
        .collect()
}

/// The metadata of the LB and ADMMTT datasets made of these records. A
/// value XPT cannot hold is refused as `export lb/adam --format xpt`
/// refuses it: define.xml describes those files.
pub fn define(config: &Config, lb: &[LbRecord], adam: &[AdamRecord]) -> Result<Define, String> {
    let lb_rows: Vec<Vec<String>> = lb.iter().map(|r| r.fields().to_vec()).collect();
    let adam_rows: Vec<Vec<String>> = adam.iter().map(|r| r.fields().to_vec()).collect();
    let datasets = vec![
        DatasetDef {
            name: LB_DATASET,
            label: LB_LABEL,
            purpose: "Tabulation",
            class: "FINDINGS",
            structure: "One record per lab test per time point per visit per subject",
            standard: "SDTMIG",
            file: "lb.xpt",
            records: lb.len(),
            items: items(&LB_VARIABLES, &lb_rows, &lb_lengths(lb)?, lb_meta)?,
        },
        DatasetDef {
            name: ADAM_DATASET,
            label: ADAM_LABEL,
            purpose: "Analysis",
            class: "BASIC DATA STRUCTURE",
            structure: "One record per subject per parameter per analysis visit",
            standard: "ADaMIG",
            file: "admmtt.xpt",
            records: adam.len(),
            items: items(&ADAM_VARIABLES, &adam_rows, &adam_lengths(adam)?, adam_meta)?,
        },
    ];
    Ok(Define { study: config.study.id.clone(), datasets, codelists: codelists(config, lb), methods: methods(config) })
}

fn codelists(config: &Config, lb: &[LbRecord]) -> Vec<CodeList> {
    let tests: Vec<(String, String)> = config.analytes.keys().map(|a| config.lb_test(a)).collect();
    let mut units: BTreeSet<String> = config.analytes.values().map(|a| a.unit.clone()).collect();
    units.extend(lb.iter().flat_map(|r| [r.lborresu.clone(), r.lbstresu.clone()]).filter(|u| !u.is_empty()));
    let terms = |values: &[&str]| values.iter().map(|v| ((*v).to_owned(), None)).collect();
    let parameters = parameter_list(config);
    vec![
        CodeList {
            id: "LBTESTCD",
            name: "Laboratory Test Code",
            nci: Some("C65047"),
            terms: tests.iter().map(|(code, name)| (code.clone(), Some(name.clone()))).collect(),
        },
        CodeList {
            id: "LBTEST",
            name: "Laboratory Test Name",
            nci: Some("C67154"),
            terms: tests.iter().map(|(_, name)| (name.clone(), None)).collect(),
        },
        CodeList {
            id: "UNIT",
            name: "Unit",
            nci: Some("C71620"),
            terms: units.into_iter().map(|u| (u, None)).collect(),
        },
        CodeList {
            id: "NRIND",
            name: "Reference Range Indicator",
            nci: Some("C78736"),
            terms: terms(&["NORMAL", "LOW", "HIGH", "ABNORMAL"]),
        },
        CodeList { id: "ND", name: "Not Done", nci: Some("C66789"), terms: terms(&[NOT_DONE]) },
        CodeList {
            id: "NY",
            name: "No Yes Response",
            nci: Some("C66742"),
            terms: vec![("Y".into(), Some("Yes".into()))],
        },
        CodeList {
            id: "PARAMCD",
            name: "Parameter Code",
            nci: None,
            terms: parameters.iter().map(|(code, name)| ((*code).to_owned(), Some(name.clone()))).collect(),
        },
        CodeList {
            id: "PARAM",
            name: "Parameter",
            nci: None,
            terms: parameters.into_iter().map(|(_, name)| (name, None)).collect(),
        },
        CodeList { id: "DTYPE", name: "Derivation Type", nci: None, terms: terms(&["INTERP"]) },
    ]
}

/// The derivations, worded from the study's settings.
fn methods(config: &Config) -> Vec<Method> {
    let m = &config.mmtt;
    let span = i64::from(m.auc_to) - i64::from(m.auc_from);
    let minutes: Vec<String> =
        m.timepoints.iter().filter(|&&t| t >= m.auc_from && t <= m.auc_to).map(i32::to_string).collect();
    let minute_zero = match m.baseline {
        BaselineSample::Zero => "The 0-min value is the 0-min result.",
        BaselineSample::Mean => {
            "The 0-min value is the mean of the -10 and 0 min results; if either is missing, minute 0 is missing."
        }
    };
    let lloqs: Vec<String> = config
        .analytes
        .iter()
        .filter_map(|(name, a)| Some(format!("{name} {} {}", format_value(a.lloq?), a.unit)))
        .collect();
    let blq = format!(
        "A result below the limit of quantitation (BLQ) enters as {} (LLOQ: {}; an analyte without an LLOQ has its \
         BLQ results missing). Other censored results (< above the LLOQ, any >) count as missing.",
        match m.blq {
            BlqRule::HalfLloq => "half the LLOQ",
            BlqRule::Lloq => "the LLOQ",
            BlqRule::Zero => "0",
        },
        if lloqs.is_empty() { "none configured".to_owned() } else { lloqs.join(", ") },
    );
    let missing = match m.missing {
        MissingRule::None => "A missing point gives no AUC (AVAL null).".to_owned(),
        MissingRule::Interpolate => "A missing interior point takes the value on the straight line, by time, between \
             the nearest measured points before and after it (DTYPE = INTERP); a missing first or last point gives no \
             AUC (AVAL null)."
            .to_owned(),
    };
    let baseline = config.baseline_visit().map_or_else(
        || "No baseline visit is configured.".to_owned(),
        |v| format!("The baseline visit is {} ({}).", v.name, v.code),
    );
    let method = |id, name, kind, description: String| Method { id, name, kind, description };
    vec![
        method(
            "USUBJID",
            "Unique subject identifier",
            "Computation",
            "STUDYID, a hyphen, the participant code.".into(),
        ),
        method(
            "LBSEQ",
            "LB sequence number",
            "Computation",
            "1, 2, ... within each USUBJID, with records ordered by visit, test code and time point.".into(),
        ),
        method(
            "LBSTRESC",
            "Standardised result",
            "Computation",
            "The result converted to the analyte's standard unit (LBSTRESU) by the unit factor for the unit the lab \
             sent (e.g. C-peptide ng/mL x 0.33109 = nmol/L; glucose mg/dL / 18.016 = mmol/L). A censored result \
             (<0.010) keeps its comparator with the converted bound in LBSTRESC and has LBSTRESN null: no number is \
             substituted."
                .into(),
        ),
        method(
            "LBSTNR",
            "Standardised reference range limit",
            "Computation",
            "LBORNRLO/LBORNRHI converted to the standard unit with the same factor as the result.".into(),
        ),
        method(
            "LBNRIND",
            "Reference range indicator",
            "Computation",
            "From the first abnormal flag the lab sent (HL7 OBX-8, ASTM R.7): N = NORMAL, L or LL = LOW, H or HH = \
             HIGH, A or AA = ABNORMAL; any other flag or none: null."
                .into(),
        ),
        method(
            "LBLOBXFL",
            "Last observation before exposure",
            "Computation",
            format!(
                "Y on the last result at or before minute 0 (the meal, {LB_TIMEPOINT_REFERENCE}) of the baseline \
                 visit, one per subject and test. {baseline}"
            ),
        ),
        method(
            "ASEQ",
            "Analysis sequence number",
            "Computation",
            "1, 2, ... within each USUBJID, in AVISITN, PARAMCD order.".into(),
        ),
        method(
            "AVAL",
            "MMTT area under the curve",
            "Computation",
            format!(
                "From the subject's LB results (LBSTRESN, or the BLQ rule) of the test at the visit. CPAUC, GLAUC: \
                 the linear trapezoidal AUC over the nominal minutes {} (LBTPT; not the actual collection times in \
                 LBDTC), in unit x min. CPAUCM, GLAUCM: AUC / {span} min, in the unit. CPLAUCM: ln(CPAUCM + 1), \
                 natural log. {minute_zero} {blq} {missing}",
                minutes.join(", ")
            ),
        ),
        method(
            "BASE",
            "Baseline value",
            "Computation",
            format!(
                "AVAL of the subject's record of the parameter with ABLFL = Y, on every record of that subject and parameter. {baseline}"
            ),
        ),
        method(
            "CHG",
            "Change from baseline",
            "Computation",
            "AVAL - BASE on the post-baseline records; null on the baseline record.".into(),
        ),
        method(
            "PCHG",
            "Percent change from baseline",
            "Computation",
            "(AVAL - BASE) / BASE x 100 on the post-baseline records; null when BASE is 0 and on the baseline record."
                .into(),
        ),
        method(
            "ABLFL",
            "Baseline record flag",
            "Computation",
            format!("Y on the baseline visit's record when it has an AVAL. {baseline}"),
        ),
        method(
            "DTYPE",
            "Interpolated AUC",
            "Imputation",
            format!("INTERP when AVAL was computed with an interpolated point. {missing}"),
        ),
        method(
            "BLQIMPFL",
            "BLQ imputation flag",
            "Imputation",
            format!("Y when AVAL used a BLQ result replaced by the BLQ rule. {blq}"),
        ),
        method(
            "SRCSEQS",
            "Source LB records",
            "Computation",
            "The LBSEQ values, ascending and separated by spaces, of the LB records (same USUBJID, VISIT = AVISIT, \
             LBTESTCD of the parameter) whose results AVAL was computed from: those at the measured minutes of the \
             AUC range (LBTPT), and at -10 min when minute 0 is the mean of -10 and 0. Interpolated minutes have \
             no record. Null when AVAL is null."
                .into(),
        ),
    ]
}

/// `<Description><TranslatedText xml:lang="en">…</TranslatedText></Description>`
fn description(out: &mut String, indent: &str, text: &str) {
    let _ = writeln!(
        out,
        "{indent}<Description><TranslatedText xml:lang=\"en\">{}</TranslatedText></Description>",
        escape(text)
    );
}

fn standard_oid(standard: &str) -> &'static str {
    if standard == "SDTMIG" { "STD.SDTMIG.3.4" } else { "STD.ADAMIG.1.3" }
}

fn comment_oid(dataset: &str, name: &str) -> String {
    format!("COM.{dataset}.{name}")
}

/// define.xml. `created` is the file's CreationDateTime.
pub fn define_xml(define: &Define, created: jiff::Timestamp) -> String {
    let e = escape;
    let study = e(&define.study);
    let mut x = String::new();
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<ODM xmlns=\"{ODM_NAMESPACE}\" xmlns:def=\"{DEFINE_NAMESPACE}\" xmlns:xlink=\"{XLINK_NAMESPACE}\" \
         ODMVersion=\"1.3.2\" FileType=\"Snapshot\" FileOID=\"DEF.{study}\" CreationDateTime=\"{}\" \
         Originator=\"labfeed\" SourceSystem=\"labfeed\" SourceSystemVersion=\"{}\" def:Context=\"Submission\">",
        crate::report::utc_time(created),
        env!("CARGO_PKG_VERSION"),
    );
    let _ = writeln!(x, "  <Study OID=\"ST.{study}\">");
    let _ = writeln!(
        x,
        "    <GlobalVariables>\n      <StudyName>{study}</StudyName>\n      <StudyDescription>MMTT laboratory data of \
         study {study}</StudyDescription>\n      <ProtocolName>{study}</ProtocolName>\n    </GlobalVariables>"
    );
    let _ = writeln!(
        x,
        "    <MetaDataVersion OID=\"MDV.{study}\" Name=\"{study} LB and ADMMTT\" \
         Description=\"Laboratory data and MMTT outcomes\" def:DefineVersion=\"{DEFINE_VERSION}\">"
    );
    x.push_str(
        "      <def:Standards>\n        <def:Standard OID=\"STD.SDTMIG.3.4\" Name=\"SDTMIG\" Type=\"IG\" Version=\"3.4\" \
         Status=\"Final\"/>\n        <def:Standard OID=\"STD.ADAMIG.1.3\" Name=\"ADaMIG\" Type=\"IG\" Version=\"1.3\" \
         Status=\"Final\"/>\n      </def:Standards>\n",
    );
    for d in &define.datasets {
        let domain = if d.purpose == "Tabulation" { format!(" Domain=\"{}\"", d.name) } else { String::new() };
        let _ = writeln!(
            x,
            "      <ItemGroupDef OID=\"IG.{n}\" Name=\"{n}\" SASDatasetName=\"{n}\"{domain} Repeating=\"Yes\" \
             IsReferenceData=\"No\" Purpose=\"{}\" def:Structure=\"{}\" def:StandardOID=\"{}\" \
             def:ArchiveLocationID=\"LF.{n}\">",
            d.purpose,
            e(d.structure),
            standard_oid(d.standard),
            n = d.name,
        );
        description(&mut x, "        ", d.label);
        for (i, item) in d.items.iter().enumerate() {
            let mut attributes = format!(
                "ItemOID=\"IT.{}.{}\" OrderNumber=\"{}\" Mandatory=\"{}\"",
                d.name,
                item.variable.name,
                i + 1,
                if item.meta.core == Core::Required { "Yes" } else { "No" }
            );
            if let Some(key) = item.meta.key {
                let _ = write!(attributes, " KeySequence=\"{key}\"");
            }
            if let Some(method) = item.meta.method {
                let _ = write!(attributes, " MethodOID=\"MT.{}.{method}\"", d.name);
            }
            let _ = writeln!(x, "        <ItemRef {attributes}/>");
        }
        let _ = writeln!(x, "        <def:Class Name=\"{}\"/>", d.class);
        let _ = writeln!(
            x,
            "        <def:leaf ID=\"LF.{}\" xlink:href=\"{f}\">\n          <def:title>{f}</def:title>\n        </def:leaf>",
            d.name,
            f = d.file,
        );
        x.push_str("      </ItemGroupDef>\n");
    }
    for d in &define.datasets {
        for item in &d.items {
            let v = item.variable;
            let mut attributes = format!(
                "OID=\"IT.{}.{n}\" Name=\"{n}\" SASFieldName=\"{n}\" DataType=\"{}\" Length=\"{}\"",
                d.name,
                item.data_type(),
                item.length,
                n = v.name,
            );
            if let Some(digits) = item.significant_digits {
                let _ = write!(attributes, " SignificantDigits=\"{digits}\"");
            }
            if item.comment().is_some() {
                let _ = write!(attributes, " def:CommentOID=\"{}\"", comment_oid(d.name, v.name));
            }
            let _ = writeln!(x, "      <ItemDef {attributes}>");
            description(&mut x, "        ", v.label);
            if let Some(codelist) = item.meta.codelist {
                let _ = writeln!(x, "        <CodeListRef CodeListOID=\"CL.{codelist}\"/>");
            }
            let origin = item.meta.origin;
            let source = origin.source().map(|s| format!(" Source=\"{s}\"")).unwrap_or_default();
            match origin {
                Origin::Predecessor(from) => {
                    let _ = writeln!(x, "        <def:Origin Type=\"{}\"{source}>", origin.kind());
                    description(&mut x, "          ", from);
                    x.push_str("        </def:Origin>\n");
                }
                _ => {
                    let _ = writeln!(x, "        <def:Origin Type=\"{}\"{source}/>", origin.kind());
                }
            }
            x.push_str("      </ItemDef>\n");
        }
    }
    for c in &define.codelists {
        let decoded = c.terms.iter().any(|(_, decode)| decode.is_some());
        let _ = writeln!(x, "      <CodeList OID=\"CL.{}\" Name=\"{}\" DataType=\"text\">", c.id, e(c.name));
        for (i, (term, decode)) in c.terms.iter().enumerate() {
            let order = i + 1;
            if decoded {
                let _ = writeln!(x, "        <CodeListItem CodedValue=\"{}\" OrderNumber=\"{order}\">", e(term));
                x.push_str("          <Decode>");
                let _ = write!(
                    x,
                    "<TranslatedText xml:lang=\"en\">{}</TranslatedText>",
                    e(decode.as_deref().unwrap_or(term))
                );
                x.push_str("</Decode>\n        </CodeListItem>\n");
            } else {
                let _ = writeln!(x, "        <EnumeratedItem CodedValue=\"{}\" OrderNumber=\"{order}\"/>", e(term));
            }
        }
        if let Some(nci) = c.nci {
            let _ = writeln!(x, "        <Alias Context=\"nci:ExtCodeID\" Name=\"{nci}\"/>");
        }
        x.push_str("      </CodeList>\n");
    }
    for d in &define.datasets {
        let used: BTreeSet<&str> = d.items.iter().filter_map(|i| i.meta.method).collect();
        for m in define.methods.iter().filter(|m| used.contains(m.id)) {
            let _ = writeln!(
                x,
                "      <MethodDef OID=\"MT.{}.{}\" Name=\"{}\" Type=\"{}\">",
                d.name,
                m.id,
                e(m.name),
                m.kind
            );
            description(&mut x, "        ", &m.description);
            x.push_str("      </MethodDef>\n");
        }
    }
    for d in &define.datasets {
        for item in &d.items {
            if let Some(comment) = item.comment() {
                let _ = writeln!(x, "      <def:CommentDef OID=\"{}\">", comment_oid(d.name, item.variable.name));
                description(&mut x, "        ", &comment);
                x.push_str("      </def:CommentDef>\n");
            }
        }
    }
    x.push_str("    </MetaDataVersion>\n  </Study>\n</ODM>\n");
    x
}

/// The same metadata as one self-contained HTML page (no stylesheet, no
/// script): what a reviewer reads when a browser will not render
/// define.xml without the CDISC stylesheet.
pub fn define_html(define: &Define, created: jiff::Timestamp) -> String {
    let e = escape;
    let mut h = String::new();
    let study = e(&define.study);
    let _ = writeln!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Define-XML {study}</title>\n\
         <style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse;margin-bottom:2em}}\
         th,td{{border:1px solid #999;padding:.2em .4em;text-align:left;vertical-align:top}}\
         th{{background:#eee}}</style>\n</head>\n<body>"
    );
    let _ = writeln!(
        h,
        "<h1>Data definitions, study {study}</h1>\n<p>The content of define.xml (Define-XML {DEFINE_VERSION}) as made \
         by labfeed at {}.</p>",
        crate::report::utc_time(created)
    );
    h.push_str("<h2>Datasets</h2>\n<table>\n<tr><th>Dataset</th><th>Label</th><th>Class</th><th>Structure</th><th>Standard</th><th>Records</th><th>File</th></tr>\n");
    for d in &define.datasets {
        let _ = writeln!(
            h,
            "<tr><td><a href=\"#{n}\">{n}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            e(d.label),
            e(d.class),
            e(d.structure),
            standard_oid(d.standard).trim_start_matches("STD."),
            d.records,
            e(d.file),
            n = d.name,
        );
    }
    h.push_str("</table>\n");
    for d in &define.datasets {
        let _ = writeln!(h, "<h2 id=\"{n}\">{n}: {}</h2>", e(d.label), n = d.name);
        h.push_str("<table>\n<tr><th>Variable</th><th>Label</th><th>Type</th><th>Length</th><th>Core</th><th>Key</th><th>Codelist</th><th>Origin</th><th>Derivation or comment</th></tr>\n");
        for item in &d.items {
            let origin = match item.meta.origin {
                Origin::Collected(source) => format!("Collected ({source})"),
                Origin::Predecessor(from) => format!("Predecessor: {from}"),
                o => o.kind().to_owned(),
            };
            let method = item.meta.method.and_then(|id| define.methods.iter().find(|m| m.id == id));
            let mut how = method.map(|m| e(&m.description)).unwrap_or_default();
            if let Some(comment) = item.comment() {
                if !how.is_empty() {
                    how.push_str("<br>");
                }
                how.push_str(&e(&comment));
            }
            let length = match item.significant_digits {
                Some(digits) => format!("{} ({digits} decimals)", item.length),
                None => item.length.to_string(),
            };
            let codelist = item.meta.codelist.map(|c| format!("<a href=\"#CL.{c}\">{c}</a>")).unwrap_or_default();
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{length}</td><td>{:?}</td><td>{}</td><td>{codelist}</td><td>{}</td><td>{how}</td></tr>",
                item.variable.name,
                e(item.variable.label),
                item.data_type(),
                item.meta.core,
                item.meta.key.map(|k| k.to_string()).unwrap_or_default(),
                e(&origin),
            );
        }
        h.push_str("</table>\n");
    }
    h.push_str("<h2>Codelists</h2>\n");
    for c in &define.codelists {
        let nci = c.nci.map(|n| format!(" (NCI {n})")).unwrap_or_default();
        let _ = writeln!(
            h,
            "<h3 id=\"CL.{}\">{}: {}{nci}</h3>\n<table>\n<tr><th>Term</th><th>Decode</th></tr>",
            c.id,
            c.id,
            e(c.name)
        );
        for (term, decode) in &c.terms {
            let _ = writeln!(h, "<tr><td>{}</td><td>{}</td></tr>", e(term), e(decode.as_deref().unwrap_or_default()));
        }
        h.push_str("</table>\n");
    }
    h.push_str("</body>\n</html>\n");
    h
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::report::adam::adam_records;
    use crate::study::auc::AucRow;

    fn config() -> Config {
        Config::from_toml(include_str!("../../config/labfeed.example.toml"), Path::new("test.toml")).unwrap()
    }

    fn auc(participant: &str, visit: &str, analyte: &str, auc: f64, complete: bool) -> AucRow {
        AucRow {
            participant: participant.into(),
            visit: visit.into(),
            analyte: analyte.into(),
            auc: Some(auc),
            auc_mean: Some(auc / 120.0),
            ln_auc_mean_plus_1: Some((auc / 120.0 + 1.0).ln()),
            points: 6,
            complete,
            missing_minutes: Vec::new(),
            delta_auc_mean: None,
            blq_minutes: Vec::new(),
        }
    }

    fn lb_record(seq: u32, visit: &str, orres: &str, unit: &str) -> LbRecord {
        LbRecord {
            studyid: "NCT02057211".into(),
            usubjid: "NCT02057211-U01".into(),
            lbseq: seq,
            lbrefid: String::new(),
            lbtestcd: "CPEPTIDE".into(),
            lbtest: "C-peptide".into(),
            lborres: orres.into(),
            lborresu: unit.into(),
            lbornrlo: String::new(),
            lbornrhi: String::new(),
            lbstresc: orres.into(),
            lbstresn: orres.into(),
            lbstresu: "nmol/L".into(),
            lbstnrlo: String::new(),
            lbstnrhi: String::new(),
            lbnrind: String::new(),
            lbstat: String::new(),
            lbreasnd: String::new(),
            lbspec: "SERUM".into(),
            lblobxfl: String::new(),
            lblloq: "0.017".into(),
            visitnum: "1".into(),
            visit: visit.into(),
            lbdtc: String::new(),
            lbtpt: "MMTT 0 MIN".into(),
            lbtptnum: "2".into(),
            lbeltm: "PT0M".into(),
            lbrftdtc: String::new(),
        }
    }

    #[test]
    fn every_exported_variable_has_metadata_and_every_method_named_exists() {
        let methods = methods(&config());
        let lb = LB_VARIABLES.iter().map(|v| (v.name, lb_meta(v.name)));
        for (name, meta) in lb.chain(ADAM_VARIABLES.iter().map(|v| (v.name, adam_meta(v.name)))) {
            let meta = meta.unwrap_or_else(|| panic!("{name}"));
            assert_eq!(meta.origin == Origin::Derived, meta.method.is_some(), "{name}");
            if let Some(id) = meta.method {
                assert!(methods.iter().any(|m| m.id == id), "{name}: {id}");
            }
        }
    }

    #[test]
    fn text_lengths_are_the_xpt_lengths_and_numbers_count_digits() {
        let config = config();
        let lb = [lb_record(1, "Baseline", "0.52", "nmol/L"), lb_record(2, "A much longer visit", "12.125", "ng/mL")];
        let adam = adam_records(&config, &[auc("U01", "V0", "c_peptide", 104.55, true)], &lb);
        let d = define(&config, &lb, &adam).unwrap();
        let item =
            |dataset: usize, name: &str| d.datasets[dataset].items.iter().find(|i| i.variable.name == name).unwrap();
        assert_eq!(item(0, "VISIT").length, "A much longer visit".len());
        assert_eq!(item(0, "LBORRESU").length, "nmol/L".len());
        assert_eq!((item(0, "LBSTRESN").length, item(0, "LBSTRESN").significant_digits), (5, Some(3)));
        assert_eq!((item(0, "LBSEQ").length, item(0, "LBSEQ").significant_digits), (1, None));
        assert_eq!(item(0, "LBSEQ").data_type(), "integer");
        assert_eq!(item(1, "AVAL").data_type(), "float");
        let lengths = lb_lengths(&lb).unwrap();
        for (i, v) in LB_VARIABLES.iter().enumerate().filter(|(_, v)| !v.numeric) {
            assert_eq!(item(0, v.name).length, lengths[i], "{}", v.name);
        }
    }

    #[test]
    fn a_null_expected_variable_gets_a_comment_saying_why_and_a_filled_one_none() {
        let config = config();
        let d = define(&config, &[lb_record(1, "Baseline", "0.52", "nmol/L")], &[]).unwrap();
        let item = |name: &str| d.datasets[0].items.iter().find(|i| i.variable.name == name).unwrap();
        assert_eq!(
            item("LBSTAT").comment().unwrap(),
            format!(
                "{} Null in every record: No test was recorded as not done.",
                lb_meta("LBSTAT").unwrap().note.unwrap()
            )
        );
        assert!(item("LBNRIND").comment().unwrap().starts_with("Null in every record: No result's message"));
        assert_eq!(item("LBORRES").comment(), None, "filled");
        assert_eq!(item("LBRFTDTC").comment(), None, "permissible and null: nothing to explain");
        let xml = define_xml(&d, jiff::Timestamp::UNIX_EPOCH);
        assert!(xml.contains("<ItemDef OID=\"IT.LB.LBNRIND\" Name=\"LBNRIND\" SASFieldName=\"LBNRIND\" DataType=\"text\" Length=\"1\" def:CommentOID=\"COM.LB.LBNRIND\">"), "{xml}");
    }

    #[test]
    fn methods_say_the_configured_rules() {
        let mut config = config();
        let aval = |config: &Config| methods(config).into_iter().find(|m| m.id == "AVAL").unwrap().description;
        let text = aval(&config);
        assert!(text.contains("nominal minutes 0, 15, 30, 60, 90, 120"), "{text}");
        assert!(text.contains("AUC / 120 min"), "{text}");
        assert!(text.contains("ln(CPAUCM + 1)"), "{text}");
        config.mmtt.blq = BlqRule::HalfLloq;
        config.mmtt.missing = MissingRule::Interpolate;
        let text = aval(&config);
        assert!(text.contains("enters as half the LLOQ (LLOQ: c_peptide 0.017 nmol/L"), "{text}");
        assert!(text.contains("straight line, by time"), "{text}");
        config.mmtt.missing = MissingRule::None;
        assert!(aval(&config).contains("A missing point gives no AUC"));
    }

    #[test]
    fn the_test_code_codelist_is_the_configured_analytes() {
        let mut config = config();
        config.analytes.get_mut("glucose").unwrap().test_code = Some("GLUCPL".into());
        let d = define(&config, &[], &[]).unwrap();
        let cl = d.codelists.iter().find(|c| c.id == "LBTESTCD").unwrap();
        assert_eq!(
            cl.terms,
            [("CPEPTIDE".to_owned(), Some("C-peptide".to_owned())), ("GLUCPL".to_owned(), Some("Glucose".to_owned()))]
        );
    }

    #[test]
    fn a_value_xpt_cannot_hold_is_refused_as_the_xpt_export_refuses_it() {
        let config = config();
        let err = define(&config, &[lb_record(1, "Baslinjebesök", "0.52", "nmol/L")], &[]).unwrap_err();
        assert!(err.starts_with("VISIT of the record USUBJID NCT02057211-U01 LBSEQ 1:"), "{err}");
    }
}
