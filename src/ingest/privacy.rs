//! Finding the personal data in a received file, so the stored copy can be
//! masked (names, identifiers other than study codes, addresses, phone
//! numbers, dates of birth in ASTM P records and HL7 PID/NK1 segments).
//!
//! Works on the raw bytes, framing included: spans are byte ranges of the
//! file, so the masked copy keeps every offset. The parsers are not used
//! here on purpose: masking must also cover messages that fail to parse.

use std::ops::Range;

use crate::store::PersonalField;

/// What is kept of a patient record; every other field is masked (names,
/// dates of birth, addresses, phone numbers, and any identifier that is not a
/// study code). Masking by what is kept, not by what is known to be personal,
/// also covers vendors who put data in unexpected fields.
///
/// ASTM P (type letter = field 1): P.1 record type, P.2 sequence, P.9 sex;
/// P.3–P.5 (patient IDs) only when they hold a study participant code.
const ASTM_P_KEPT: &[usize] = &[1, 2, 9];
const ASTM_P_IDS: &[usize] = &[3, 4, 5];
/// HL7 PID (segment ID = field 0): PID-1 set ID, PID-8 sex; PID-2–PID-4
/// only when they hold a study code. NK1 (next of kin): only NK1-1.
const HL7_PID_KEPT: &[usize] = &[0, 1, 8];
const HL7_PID_IDS: &[usize] = &[2, 3, 4];
const HL7_NK1_KEPT: &[usize] = &[0, 1];

const STX: u8 = 0x02;

/// The personal-data fields of `bytes`. `is_study_code` says whether an
/// identifier is one of the study's participant codes (those are kept).
pub fn personal_fields(bytes: &[u8], is_study_code: &dyn Fn(&str) -> bool) -> Vec<PersonalField> {
    let mut found = Vec::new();
    if bytes.contains(&STX) {
        let (text, map) = crate::astm::frame::joined_texts(bytes);
        for (name, span) in scan(&text, is_study_code) {
            for piece in map_span(&map, span) {
                found.push(PersonalField { field: name.clone(), span: piece });
            }
        }
    } else {
        for (name, span) in scan(bytes, is_study_code) {
            found.push(PersonalField { field: name, span });
        }
    }
    found
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

/// The non-empty fields of a record split on `sep`, numbered from `first`,
/// with their ranges in the record.
fn fields(line: &[u8], sep: u8, first: usize) -> impl Iterator<Item = (usize, Range<usize>)> + '_ {
    let mut start = 0;
    line.split(move |&b| b == sep).enumerate().filter_map(move |(i, piece)| {
        let span = start..start + piece.len();
        start += piece.len() + 1;
        (!piece.is_empty()).then_some((i + first, span))
    })
}

fn first_value(field: &[u8]) -> String {
    let end = field.iter().position(|&b| matches!(b, b'^' | b'~' | b'&' | b'\\' | b'!' | b'@')).unwrap_or(field.len());
    String::from_utf8_lossy(field.get(..end).unwrap_or_default()).trim().to_owned()
}

/// Mask every field of `line` except the kept ones and study-code identifiers.
#[allow(clippy::too_many_arguments)]
fn mask_record(
    line: &[u8],
    offset: usize,
    sep: u8,
    first: usize,
    prefix: &str,
    kept: &[usize],
    ids: &[usize],
    is_study_code: &dyn Fn(&str) -> bool,
    found: &mut Vec<(String, Range<usize>)>,
) {
    for (n, span) in fields(line, sep, first) {
        if kept.contains(&n) {
            continue;
        }
        let value = line.get(span.clone()).unwrap_or_default();
        if ids.contains(&n) && is_study_code(&first_value(value)) {
            continue;
        }
        found.push((format!("{prefix}{n}"), offset + span.start..offset + span.end));
    }
}

fn scan(text: &[u8], is_study_code: &dyn Fn(&str) -> bool) -> Vec<(String, Range<usize>)> {
    let mut found = Vec::new();
    let mut astm_sep = b'|';
    for (offset, line) in lines(text) {
        match line {
            [b'H' | b'h', sep, ..] if !sep.is_ascii_alphanumeric() => astm_sep = *sep,
            [b'P' | b'p', sep, ..] if *sep == astm_sep => {
                mask_record(line, offset, astm_sep, 1, "P.", ASTM_P_KEPT, ASTM_P_IDS, is_study_code, &mut found);
            }
            [b'P', b'I', b'D', sep, ..] if !sep.is_ascii_alphanumeric() => {
                mask_record(line, offset, *sep, 0, "PID.", HL7_PID_KEPT, HL7_PID_IDS, is_study_code, &mut found);
            }
            [b'N', b'K', b'1', sep, ..] if !sep.is_ascii_alphanumeric() => {
                mask_record(line, offset, *sep, 0, "NK1.", HL7_NK1_KEPT, &[], is_study_code, &mut found);
            }
            _ => {}
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::mask;

    fn names(fields: &[PersonalField]) -> Vec<&str> {
        fields.iter().map(|f| f.field.as_str()).collect()
    }

    fn masked(bytes: &[u8], study: &dyn Fn(&str) -> bool) -> String {
        let fields = personal_fields(bytes, study);
        let spans: Vec<Range<usize>> = fields.iter().map(|f| f.span.clone()).collect();
        String::from_utf8_lossy(&mask(bytes, &spans)).into_owned()
    }

    #[test]
    fn astm_names_birth_dates_and_foreign_ids_are_masked_study_codes_kept() {
        let text = b"H|\\^&|||x\rP|1|U07|HOSP-1234||Brown^Bobby^B|White|19650102|M||12 Elm St||555-0101\rO|1|S1\rL|1\r";
        let study = |id: &str| id == "U07";
        let fields = personal_fields(text, &study);
        assert_eq!(names(&fields), ["P.4", "P.6", "P.7", "P.8", "P.11", "P.13"]);
        let out = masked(text, &study);
        assert_eq!(out.len(), text.len());
        assert!(out.contains("P|1|U07|*********||*************|*****|********|M||*********||********\r"), "{out}");
        assert!(out.contains("O|1|S1"));
    }

    #[test]
    fn hl7_pid_and_nk1_are_masked() {
        let text = b"MSH|^~\\&|LAB\rPID|1||U07^^^TRIAL^PI~19650102-1234^^^SKV^NI||Doe^Jane||19650102|F|||Main St 1^^Uppsala||018-123\rNK1|1|Doe^John|SPO|Main St 1\rOBX|1|NM|CPEP||0.4\r";
        let study = |id: &str| id == "U07";
        let fields = personal_fields(text, &study);
        assert_eq!(names(&fields), ["PID.5", "PID.7", "PID.11", "PID.13", "NK1.2", "NK1.3", "NK1.4"]);
        let out = masked(text, &study);
        assert!(!out.contains("Doe") && !out.contains("19650102|") && !out.contains("Main St"), "{out}");
        assert!(out.contains("OBX|1|NM|CPEP||0.4"));
        // A hospital number in PID-3 (not a study code) is masked too.
        let fields = personal_fields(b"MSH|^~\\&|X\rPID|1||H123^^^HOSP||X^Y\r", &|_| false);
        assert_eq!(names(&fields), ["PID.3", "PID.5"]);
    }

    #[test]
    fn framed_astm_is_masked_across_a_frame_boundary() {
        // The name field is split between two frames.
        let frames = b"\x05\x021H|\\^&\rP|1||X9||Bro\x17AA\r\n\x022wn^Bob\rL|1\r\x03BB\r\n\x04";
        let fields = personal_fields(frames, &|_| false);
        assert_eq!(names(&fields), ["P.4", "P.6", "P.6"]);
        let out = masked(frames, &|_| false);
        assert!(out.contains("||***\x17AA") && out.contains("\x022******\rL|1"), "{out:?}");
    }

    #[test]
    fn a_record_per_etx_frame_without_a_cr_is_masked_too() {
        // Each record in its own ETX frame with no CR before the ETX, as some analyzers send.
        let frames = b"\x05\x021H|\\^&\x03AA\r\n\x022P|1||X9||Brown^Bob\x03BB\r\n\x023L|1\x03CC\r\n\x04";
        let fields = personal_fields(frames, &|_| false);
        assert_eq!(names(&fields), ["P.4", "P.6"]);
        let out = masked(frames, &|_| false);
        assert!(out.contains("\x022P|1||**||*********\x03BB"), "{out:?}");
    }

    #[test]
    fn files_without_personal_data_have_none() {
        assert!(personal_fields(b"H|\\^&\rP|1\rO|1|S1\rR|1|^^^G|5\rL|1\r", &|_| false).is_empty());
        assert!(personal_fields(b"", &|_| false).is_empty());
        assert!(personal_fields(b"\x02", &|_| false).is_empty());
    }
}
