//! Finding the personal data in a received file, so the stored copy can be
//! masked: names, identifiers other than study codes, addresses, phone
//! numbers and dates of birth (ASTM P, HL7 PID/NK1), comment free text
//! (HL7 NTE, ASTM C, non-numeric OBX of unmapped tests) unless the
//! instrument keeps comments, and lines that are no record at all (a PID
//! wrapped onto a new line, a patient list dropped by mistake).
//!
//! Works on the raw bytes, framing included: spans are byte ranges of the
//! file, so the masked copy keeps every offset. The parsers are not used
//! here on purpose: masking must also cover messages that fail to parse.

use std::ops::Range;

use crate::model::UTF8_BOM;
use crate::store::PersonalField;
use crate::study::config::Config;
use crate::study::matching::resolve_instrument;

/// What is kept of a patient record; every other field is masked (names,
/// dates of birth, addresses, phone numbers, and any identifier that is not a
/// study code). Masking by what is kept, not by what is known to be personal,
/// also covers vendors who put data in unexpected fields.
///
/// ASTM P (type letter = field 1): P.1 record type, P.2 sequence, P.9 sex;
/// of P.3–P.5 (patient IDs) only the first component of the first
/// repetition, and only when it is a study participant code.
const ASTM_P_KEPT: &[usize] = &[1, 2, 9];
const ASTM_P_IDS: &[usize] = &[3, 4, 5];
/// HL7 PID (segment ID = field 0): PID-1 set ID, PID-8 sex; of PID-2–PID-4
/// only the leading study code. NK1 (next of kin): only NK1-1.
const HL7_PID_KEPT: &[usize] = &[0, 1, 8];
const HL7_PID_IDS: &[usize] = &[2, 3, 4];
const HL7_NK1_KEPT: &[usize] = &[0, 1];
/// Comments: ASTM C.1 type, C.2 sequence, C.3 source, C.5 comment type;
/// HL7 NTE-1 set ID, NTE-2 source. The text (C.4, NTE-3…) is masked.
const ASTM_C_KEPT: &[usize] = &[1, 2, 3, 5];
const HL7_NTE_KEPT: &[usize] = &[0, 1, 2];
/// OBX value types whose value is a number; any other (ST, TX, FT, CWE,
/// DT, empty…) can carry free text.
const NUMERIC_VALUE_TYPES: &[&[u8]] = &[b"NM", b"SN", b"NR", b"NA", b"CQ"];

const STX: u8 = 0x02;

/// What masking needs to know about the study.
pub trait Policy {
    /// Whether `id` is one of the study's participant codes (kept).
    fn is_study_code(&self, id: &str) -> bool;
    /// Whether comment free text from `sender` is kept (`keep_comments`);
    /// an unknown sender's is masked.
    fn keeps_comments(&self, sender: Option<&str>) -> bool;
    /// Whether `test` is mapped to an analyte for `sender`'s instrument.
    fn maps_test(&self, sender: Option<&str>, test: &str) -> bool;
}

/// The policy of a configured study. `instrument` is the link's instrument
/// (authoritative), `None` for files, whose sender field decides.
pub struct StudyPolicy<'a> {
    pub config: &'a Config,
    pub instrument: Option<&'a str>,
    pub is_study_code: &'a dyn Fn(&str) -> bool,
}

impl Policy for StudyPolicy<'_> {
    fn is_study_code(&self, id: &str) -> bool {
        (self.is_study_code)(id)
    }

    fn keeps_comments(&self, sender: Option<&str>) -> bool {
        resolve_instrument(self.config, self.instrument, sender).is_some_and(|i| i.keep_comments)
    }

    fn maps_test(&self, sender: Option<&str>, test: &str) -> bool {
        resolve_instrument(self.config, self.instrument, sender).is_some_and(|i| i.tests.contains_key(test))
    }
}

/// Whether the result whose segment starts at `offset` of `bytes` is an HL7
/// OBX whose value type (OBX-2) may carry free text rather than a number.
/// ASTM results are never comments: those are C records.
pub fn is_free_text(bytes: &[u8], offset: usize) -> bool {
    let Some(line) = bytes.get(offset..) else { return false };
    let line =
        line.get(..line.iter().position(|&b| matches!(b, b'\r' | b'\n')).unwrap_or(line.len())).unwrap_or_default();
    let [b'O', b'B', b'X', sep, ..] = line else { return false };
    let value_type = field(line, *sep, 0, 2).unwrap_or_default();
    let value_type = value_type.get(..first_part_len(value_type)).unwrap_or_default().trim_ascii();
    !NUMERIC_VALUE_TYPES.iter().any(|t| value_type.eq_ignore_ascii_case(t))
}

/// The personal-data fields of `bytes` under `policy`.
pub fn personal_fields(bytes: &[u8], policy: &dyn Policy) -> Vec<PersonalField> {
    let mut found = Vec::new();
    if is_framed(bytes) {
        let (text, map) = crate::astm::frame::joined_texts(bytes);
        for (name, span) in scan(&text, policy) {
            for piece in map_span(&map, span) {
                found.push(PersonalField { field: name.clone(), span: piece });
            }
        }
        for span in outside_frames(bytes, &map) {
            found.push(PersonalField { field: "outside frames".to_owned(), span });
        }
    } else {
        for (name, span) in scan(bytes, policy) {
            found.push(PersonalField { field: name, span });
        }
    }
    found
}

/// Captured E1381 link bytes: link control first (after a BOM and white
/// space). Anything else is read as plain records, where a stray STX is
/// just part of a line (and cannot hide the lines before it).
fn is_framed(bytes: &[u8]) -> bool {
    let body = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    matches!(body.iter().find(|b| !b.is_ascii_whitespace()), Some(&(STX | 0x04 | 0x05 | 0x06 | 0x15)))
}

/// Text between frames (not framing: a run longer than a frame number or
/// a two-digit checksum), e.g. records sent without framing in between.
fn outside_frames(bytes: &[u8], map: &[(usize, usize, usize)]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut from = 0;
    let gaps = map.iter().map(|&(_, start, len)| (start, start + len)).chain([(bytes.len(), bytes.len())]);
    for (start, end) in gaps {
        let mut run = from;
        for at in from..start.max(from) {
            let printable = bytes.get(at).is_some_and(|&b| b >= 0x20 && b != 0x7F);
            if !printable {
                if at - run > 2 {
                    out.push(run..at);
                }
                run = at + 1;
            }
        }
        if start.max(from) - run > 2 {
            out.push(run..start.max(from));
        }
        from = end.max(from);
    }
    out
}

/// Map a range of the joined text back to file ranges (one per frame it touches).
fn map_span(map: &[(usize, usize, usize)], span: Range<usize>) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    for &(text_start, file_start, len) in map {
        let lo = span.start.max(text_start);
        let hi = span.end.min(text_start + len);
        if lo < hi {
            out.push(file_start + (lo - text_start)..file_start + (hi - text_start));
        }
    }
    out
}

/// Lines (records/segments) of `text` with their start offsets; CR, LF and
/// also HL7's MLLP block bytes end them.
fn lines(text: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut start = 0;
    text.split(|&b| matches!(b, b'\r' | b'\n' | 0x0B | 0x1C)).map(move |line| {
        let here = start;
        start += line.len() + 1;
        (here, line)
    })
}

/// The fields of a record split on `sep`, numbered from `first`, with
/// their ranges in the record.
fn fields(line: &[u8], sep: u8, first: usize) -> impl Iterator<Item = (usize, Range<usize>)> + '_ {
    let mut start = 0;
    line.split(move |&b| b == sep).enumerate().map(move |(i, piece)| {
        let span = start..start + piece.len();
        start += piece.len() + 1;
        (i + first, span)
    })
}

/// Any delimiter either standard uses inside a field.
fn is_inner_delimiter(b: u8) -> bool {
    matches!(b, b'^' | b'~' | b'&' | b'\\' | b'!' | b'@')
}

/// Length of the first component of the first repetition of `field`.
fn first_part_len(field: &[u8]) -> usize {
    field.iter().position(|&b| is_inner_delimiter(b)).unwrap_or(field.len())
}

fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_owned()
}

/// Field `n` (numbered from `first`) of a record, if present.
fn field(line: &[u8], sep: u8, first: usize, n: usize) -> Option<&[u8]> {
    line.split(|&b| b == sep).nth(n.checked_sub(first)?)
}

/// Which fields of one kind of record are kept.
struct Rule<'r> {
    prefix: &'static str,
    sep: u8,
    /// Number of the record's first field (ASTM type letter 1, HL7 segment ID 0).
    first: usize,
    kept: &'r [usize],
    /// Identifier fields: their leading study code is kept, the rest masked.
    ids: &'r [usize],
}

/// Mask every non-empty field of `line` except the kept ones and the
/// leading study code of identifier fields.
fn mask_record(
    rule: &Rule<'_>,
    line: &[u8],
    offset: usize,
    policy: &dyn Policy,
    found: &mut Vec<(String, Range<usize>)>,
) {
    for (n, span) in fields(line, rule.sep, rule.first) {
        if span.is_empty() || rule.kept.contains(&n) {
            continue;
        }
        let value = line.get(span.clone()).unwrap_or_default();
        let mut from = span.start;
        if rule.ids.contains(&n) {
            let lead = first_part_len(value);
            if policy.is_study_code(&text_of(value.get(..lead).unwrap_or_default())) {
                // The delimiter after the code stays, so the stored copy
                // still reads back with the same patient ID.
                from += (lead + 1).min(value.len());
            }
        }
        if from < span.end {
            found.push((format!("{}{n}", rule.prefix), offset + from..offset + span.end));
        }
    }
}

/// Whether `line` starts like a record or segment: an ASTM type letter or an
/// HL7 segment ID, then a field separator or the end of the line.
fn looks_like_record(line: &[u8]) -> bool {
    match line {
        [a] => a.is_ascii_alphabetic(),
        [a, sep, ..] if a.is_ascii_alphabetic() && !sep.is_ascii_alphanumeric() && !sep.is_ascii_whitespace() => true,
        [a, b, c] => [a, b, c].iter().all(|x| x.is_ascii_alphanumeric()),
        [a, b, c, sep, ..] => {
            [a, b, c].iter().all(|x| x.is_ascii_alphanumeric())
                && !sep.is_ascii_alphanumeric()
                && !sep.is_ascii_whitespace()
        }
        _ => false,
    }
}

/// The sender (component 1 of ASTM H.5 or HL7 MSH-3) of a header line.
fn header_sender(field: Option<&[u8]>) -> Option<String> {
    let field = field?;
    let sender = text_of(field.get(..first_part_len(field)).unwrap_or_default());
    (!sender.is_empty()).then_some(sender)
}

fn scan(text: &[u8], policy: &dyn Policy) -> Vec<(String, Range<usize>)> {
    let mut found = Vec::new();
    let mut astm_sep = b'|';
    let mut sender: Option<String> = None;
    for (offset, line) in lines(text) {
        // A BOM or padding before the first record is not part of it.
        let lead = line.len() - line.strip_prefix(UTF8_BOM).unwrap_or(line).trim_ascii_start().len();
        let (offset, line) = (offset + lead, line.get(lead..).unwrap_or_default());
        let keeps = |sender: &Option<String>| policy.keeps_comments(sender.as_deref());
        match line {
            [] => {}
            [b'H' | b'h', sep, ..] if !sep.is_ascii_alphanumeric() => {
                astm_sep = *sep;
                sender = header_sender(field(line, *sep, 1, 5));
            }
            [b'M', b'S', b'H', sep, ..] if !sep.is_ascii_alphanumeric() => {
                sender = header_sender(field(line, *sep, 1, 3));
            }
            [b'P' | b'p', sep, ..] if *sep == astm_sep => {
                let rule = Rule { prefix: "P.", sep: astm_sep, first: 1, kept: ASTM_P_KEPT, ids: ASTM_P_IDS };
                mask_record(&rule, line, offset, policy, &mut found);
            }
            [b'C' | b'c', sep, ..] if *sep == astm_sep && !keeps(&sender) => {
                let rule = Rule { prefix: "C.", sep: astm_sep, first: 1, kept: ASTM_C_KEPT, ids: &[] };
                mask_record(&rule, line, offset, policy, &mut found);
            }
            [b'P', b'I', b'D', sep, ..] if !sep.is_ascii_alphanumeric() => {
                let rule = Rule { prefix: "PID.", sep: *sep, first: 0, kept: HL7_PID_KEPT, ids: HL7_PID_IDS };
                mask_record(&rule, line, offset, policy, &mut found);
            }
            [b'N', b'K', b'1', sep, ..] if !sep.is_ascii_alphanumeric() => {
                let rule = Rule { prefix: "NK1.", sep: *sep, first: 0, kept: HL7_NK1_KEPT, ids: &[] };
                mask_record(&rule, line, offset, policy, &mut found);
            }
            [b'N', b'T', b'E', sep, ..] if !sep.is_ascii_alphanumeric() && !keeps(&sender) => {
                let rule = Rule { prefix: "NTE.", sep: *sep, first: 0, kept: HL7_NTE_KEPT, ids: &[] };
                mask_record(&rule, line, offset, policy, &mut found);
            }
            [b'O', b'B', b'X', sep, ..] if !sep.is_ascii_alphanumeric() && !keeps(&sender) => {
                mask_text_result(line, offset, *sep, sender.as_deref(), policy, &mut found);
            }
            _ if !looks_like_record(line) => found.push(("line".to_owned(), offset..offset + line.len())),
            _ => {}
        }
    }
    found
}

/// OBX-5 of a result that maps to no test and is not numeric: free text.
fn mask_text_result(
    line: &[u8],
    offset: usize,
    sep: u8,
    sender: Option<&str>,
    policy: &dyn Policy,
    found: &mut Vec<(String, Range<usize>)>,
) {
    let first = |n| field(line, sep, 0, n).map(|f| f.get(..first_part_len(f)).unwrap_or_default());
    let value_type = first(2).map(<[u8]>::trim_ascii).unwrap_or_default();
    if NUMERIC_VALUE_TYPES.iter().any(|t| value_type.eq_ignore_ascii_case(t)) {
        return;
    }
    let test = text_of(first(3).unwrap_or_default());
    if !test.is_empty() && policy.maps_test(sender, &test) {
        return;
    }
    if let Some((_, span)) = fields(line, sep, 0).find(|(n, _)| *n == 5).filter(|(_, s)| !s.is_empty()) {
        found.push(("OBX.5".to_owned(), offset + span.start..offset + span.end));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::mask;

    /// Study codes U01–U09; tests CPEP and GLUC mapped for sender "lab";
    /// comments kept only when `keep` is set.
    struct Study {
        keep: bool,
    }

    impl Policy for Study {
        fn is_study_code(&self, id: &str) -> bool {
            id.len() == 3 && id.starts_with("U0")
        }
        fn keeps_comments(&self, sender: Option<&str>) -> bool {
            self.keep && sender == Some("lab")
        }
        fn maps_test(&self, sender: Option<&str>, test: &str) -> bool {
            sender == Some("lab") && matches!(test, "CPEP" | "GLUC")
        }
    }

    /// No study codes, nothing mapped, comments masked.
    struct Nobody;

    impl Policy for Nobody {
        fn is_study_code(&self, _: &str) -> bool {
            false
        }
        fn keeps_comments(&self, _: Option<&str>) -> bool {
            false
        }
        fn maps_test(&self, _: Option<&str>, _: &str) -> bool {
            false
        }
    }

    const STUDY: Study = Study { keep: false };

    fn names(fields: &[PersonalField]) -> Vec<&str> {
        fields.iter().map(|f| f.field.as_str()).collect()
    }

    fn masked(bytes: &[u8], policy: &dyn Policy) -> String {
        let fields = personal_fields(bytes, policy);
        let spans: Vec<Range<usize>> = fields.iter().map(|f| f.span.clone()).collect();
        String::from_utf8_lossy(&mask(bytes, &spans)).into_owned()
    }

    #[test]
    fn astm_names_birth_dates_and_foreign_ids_are_masked_study_codes_kept() {
        let text = b"H|\\^&|||x\rP|1|U07|HOSP-1234||Brown^Bobby^B|White|19650102|M||12 Elm St||555-0101\rO|1|S1\rL|1\r";
        let fields = personal_fields(text, &STUDY);
        assert_eq!(names(&fields), ["P.4", "P.6", "P.7", "P.8", "P.11", "P.13"]);
        let out = masked(text, &STUDY);
        assert_eq!(out.len(), text.len());
        assert!(out.contains("P|1|U07|*********||*************|*****|********|M||*********||********\r"), "{out}");
        assert!(out.contains("O|1|S1"));
    }

    #[test]
    fn every_repetition_and_component_after_the_study_code_is_masked() {
        let text = b"H|\\^&\rP|1|U04\\196503151234|U04^19650315|U05~1234\rL|1\r";
        let out = masked(text, &STUDY);
        assert!(out.contains("P|1|U04\\************|U04^********|U05~****\r"), "{out}");
        let hl7 = b"MSH|^~\\&|LAB\rPID|1|U04~X1|U04~196503151234^^^SKV^NNSWE|U04^^^H\rOBX|1|NM|CPEP||0.4\r";
        let out = masked(hl7, &STUDY);
        assert!(!out.contains("1965") && !out.contains("SKV") && !out.contains("X1"), "{out}");
        assert!(out.contains("PID|1|U04~**|U04~************************|U04^***\r"), "{out}");
        // A national ID first is masked whole, even with a study code after it.
        let out = masked(b"MSH|^~\\&|LAB\rPID|1||196503151234~U04\r", &STUDY);
        assert!(out.contains("PID|1||****************\r"), "{out}");
    }

    #[test]
    fn hl7_pid_and_nk1_are_masked() {
        let text = b"MSH|^~\\&|LAB\rPID|1||U07^^^TRIAL^PI~19650102-1234^^^SKV^NI||Doe^Jane||19650102|F|||Main St 1^^Uppsala||018-123\rNK1|1|Doe^John|SPO|Main St 1\rOBX|1|NM|CPEP||0.4\r";
        let fields = personal_fields(text, &STUDY);
        assert_eq!(names(&fields), ["PID.3", "PID.5", "PID.7", "PID.11", "PID.13", "NK1.2", "NK1.3", "NK1.4"]);
        let out = masked(text, &STUDY);
        assert!(!out.contains("Doe") && !out.contains("19650102") && !out.contains("Main St"), "{out}");
        assert!(out.contains("OBX|1|NM|CPEP||0.4"));
        // A hospital number in PID-3 (not a study code) is masked too.
        let fields = personal_fields(b"MSH|^~\\&|X\rPID|1||H123^^^HOSP||X^Y\r", &Nobody);
        assert_eq!(names(&fields), ["PID.3", "PID.5"]);
    }

    #[test]
    fn comments_and_text_results_of_unmapped_tests_are_masked_unless_kept() {
        let hl7 = b"MSH|^~\\&|lab\rOBX|1|NM|CPEP||0.4\rNTE|1|L|Call Birgitta 070-1234567|RE\rOBX|2|ST|NOTE||Birgitta Johansson\rOBX|3|ST|GLUC||high\rOBX|4|NM|XYZ||5\r";
        let out = masked(hl7, &STUDY);
        assert!(out.contains("NTE|1|L|*************************|**\r"), "{out}");
        assert!(out.contains("OBX|2|ST|NOTE||******************\r"), "{out}");
        assert!(out.contains("OBX|3|ST|GLUC||high\r") && out.contains("OBX|4|NM|XYZ||5\r"), "{out}");
        assert_eq!(masked(hl7, &Study { keep: true }), String::from_utf8_lossy(hl7));
        let astm = b"H|\\^&|||lab\rP|1|U04\rC|1|I|Birgitta 070-1234567|G\rL|1\r";
        assert!(masked(astm, &STUDY).contains("C|1|I|********************|G\r"));
        assert_eq!(masked(astm, &Study { keep: true }), String::from_utf8_lossy(astm));
        // An unknown sender's comments are masked, whatever is kept elsewhere.
        let other = b"H|\\^&|||other\rC|1|I|Birgitta|G\rL|1\r";
        assert!(masked(other, &Study { keep: true }).contains("C|1|I|********|G"));
    }

    #[test]
    fn a_line_that_is_no_record_is_masked_whole() {
        let text = b"\xEF\xBB\xBFMSH|^~\\&|lab\rPID|1||U04||Johansson\rBirgitta Johansson 19800315-1234|F\rOBX|1|NM|CPEP||0.4\r";
        let out = masked(text, &STUDY);
        assert!(out.contains("MSH|^~\\&|lab\r"), "{out}");
        assert!(out.contains("\r**********************************\r"), "{out}");
        assert!(!out.contains("Johansson") && !out.contains("1980"), "{out}");
        assert!(out.contains("OBX|1|NM|CPEP||0.4"), "{out}");
    }

    #[test]
    fn framed_astm_is_masked_across_a_frame_boundary() {
        // The name field is split between two frames.
        let frames = b"\x05\x021H|\\^&\rP|1||X9||Bro\x17AA\r\n\x022wn^Bob\rL|1\r\x03BB\r\n\x04";
        let fields = personal_fields(frames, &Nobody);
        assert_eq!(names(&fields), ["P.4", "P.6", "P.6"]);
        let out = masked(frames, &Nobody);
        assert!(out.contains("||***\x17AA") && out.contains("\x022******\rL|1"), "{out:?}");
    }

    #[test]
    fn a_stray_stx_does_not_hide_the_lines_before_it() {
        let text = b"MSH|^~\\&|lab\rPID|1||U04||Johansson^Birgitta\rOBX|1|NM|CPEP||0.4\x02\r";
        let out = masked(text, &STUDY);
        assert!(!out.contains("Johansson"), "{out:?}");
    }

    #[test]
    fn text_between_frames_is_masked_framing_is_not() {
        let frames = b"\x05\x021H|\\^&\r\x03AA\r\nP|1||Johansson^Birgitta\r\x022L|1\r\x03BB\r\n\x04";
        let fields = personal_fields(frames, &Nobody);
        assert_eq!(names(&fields), ["outside frames"]);
        let out = masked(frames, &Nobody);
        assert!(out.contains("\x03AA\r\n***********************\r\x022L|1\r\x03BB\r\n\x04"), "{out:?}");
    }

    #[test]
    fn a_record_per_etx_frame_without_a_cr_is_masked_too() {
        // Each record in its own ETX frame with no CR before the ETX, as some analyzers send.
        let frames = b"\x05\x021H|\\^&\x03AA\r\n\x022P|1||X9||Brown^Bob\x03BB\r\n\x023L|1\x03CC\r\n\x04";
        let fields = personal_fields(frames, &Nobody);
        assert_eq!(names(&fields), ["P.4", "P.6"]);
        let out = masked(frames, &Nobody);
        assert!(out.contains("\x022P|1||**||*********\x03BB"), "{out:?}");
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_spans_stay_inside(picks in proptest::collection::vec(0usize..64, 0..200)) {
            // Bytes that make records, delimiters and frames likely.
            const ALPHABET: &[u8] = b"HPCOLRMSIDNTEXBK1|^~\\&!@\r\n\x02\x03\x17\x0b\x1c U04-9 \xef\xbb\xbf\x00";
            let bytes: Vec<u8> = picks.iter().map(|&i| ALPHABET[i % ALPHABET.len()]).collect();
            for field in personal_fields(&bytes, &STUDY) {
                proptest::prop_assert!(field.span.start <= field.span.end && field.span.end <= bytes.len());
            }
        }
    }

    #[test]
    fn files_without_personal_data_have_none() {
        assert!(personal_fields(b"H|\\^&\rP|1\rO|1|S1\rR|1|^^^G|5\rL|1\r", &Nobody).is_empty());
        assert!(personal_fields(b"", &Nobody).is_empty());
        assert!(personal_fields(b"\x02", &Nobody).is_empty());
    }
}
