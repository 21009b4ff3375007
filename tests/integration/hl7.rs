//! HL7 v2 parser: conformance cases (hl7.md §9), every corpus sample, synthetic
//! fixtures, property tests. Reads only `fixtures/hl7/`.

use labfeed::hl7::{Delimiters, escape, parse_file, unescape};
use labfeed::model::{LabResult, MessageError, MessageOutcome, ParseOptions, ParsedMessage};
use labfeed::value::Comparator;
use proptest::prelude::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/fixtures/hl7/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn parse_with(input: &[u8], opts: ParseOptions) -> Vec<MessageOutcome> {
    let mut all = Vec::new();
    parse_file(input, &opts, &mut |o| all.push(o));
    all
}

fn parse(input: &[u8]) -> Vec<MessageOutcome> {
    parse_with(input, ParseOptions::default())
}

/// The messages of a file that must parse without errors.
fn messages(input: &[u8]) -> Vec<ParsedMessage> {
    parse(input).into_iter().map(|o| o.unwrap_or_else(|e| panic!("unexpected error: {e:?}"))).collect()
}

/// The only message of a file.
fn single(input: &[u8]) -> ParsedMessage {
    let mut all = messages(input);
    assert_eq!(all.len(), 1, "expected one message");
    all.remove(0)
}

/// The only outcome of a file, which must be an error.
fn error(input: &[u8]) -> MessageError {
    let mut all = parse(input);
    assert_eq!(all.len(), 1, "expected one outcome: {all:?}");
    all.remove(0).expect_err("expected an error")
}

fn results(input: &[u8]) -> Vec<LabResult> {
    messages(input).into_iter().flat_map(|m| m.results).collect()
}

fn iso(ts: Option<labfeed::timestamp::Timestamp>) -> Option<String> {
    ts.map(|t| t.to_iso())
}

fn num(r: &LabResult) -> Option<String> {
    r.numeric.as_ref().map(|n| n.to_string())
}

fn has_warning(m: &ParsedMessage, part: &str) -> bool {
    m.warnings.iter().any(|w| w.text.contains(part))
}

/// Results without their byte offsets (for comparing the same content laid
/// out differently).
fn without_offsets(mut all: Vec<LabResult>) -> Vec<LabResult> {
    for r in &mut all {
        r.offset = 0;
    }
    all
}

/// A minimal ORU header, patient and order for fragments that have none.
const HEAD: &str = "MSH|^~\\&|TESTLAB|FAC|STUDYDB|T1D|20260312||ORU^R01|T-1|P|2.5.1\rPID|1||P-001\rOBR|1||S-001\r";

fn with_head(body: &str) -> Vec<u8> {
    format!("{HEAD}{body}").into_bytes()
}

fn with_head_bytes(body: &[u8]) -> Vec<u8> {
    let mut all = HEAD.as_bytes().to_vec();
    all.extend_from_slice(body);
    all
}

/// Byte offset of the first `needle` in `hay`.
fn position(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).expect("needle present")
}

// ---------------------------------------------------------------------------
// Corpus samples

#[test]
fn synthetic_mmtt_sample_maps_every_field() {
    let data = fixture("synthetic-mmtt-oru-r01.hl7");
    let m = single(&data);
    assert_eq!(m.number, 1);
    assert_eq!(m.span, 0..data.len());
    assert_eq!(m.sender.as_deref(), Some("CENTRALLAB"));
    assert_eq!(m.control_id.as_deref(), Some("CL20260312-000187"));
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    let [cpep, gluc] = m.results.as_slice() else { panic!("two results expected") };
    assert_eq!(cpep.sender.as_deref(), Some("CENTRALLAB"));
    assert_eq!(cpep.sample_id.as_deref(), Some("A2603120017-01"));
    assert_eq!(cpep.patient_id(), Some("TN-04-0173"));
    assert_eq!(cpep.test_code.as_deref(), Some("1986-9"));
    assert_eq!(cpep.value.as_deref(), Some("<^0.02"));
    assert_eq!(cpep.comparator, Some(Comparator::Lt));
    assert_eq!(num(cpep).as_deref(), Some("0.02"));
    assert_eq!(cpep.unit.as_deref(), Some("ng/mL"));
    assert_eq!(cpep.flags.as_deref(), Some("L"));
    assert_eq!(cpep.reference_range.as_deref(), Some("0.8-3.5"));
    assert_eq!(cpep.specimen_type.as_deref(), Some("SER^Serum^HL70487"), "SPM-4, after the OBX");
    assert_eq!(cpep.status.as_deref(), Some("F"));
    assert_eq!(iso(cpep.collected_at).as_deref(), Some("2026-03-11T08:12:00-08:00"));
    assert_eq!(iso(cpep.resulted_at).as_deref(), Some("2026-03-12T12:05:00-08:00"));
    assert!(!cpep.qc);
    assert!(cpep.comments.is_empty());
    assert_eq!(cpep.offset, position(&data, b"OBX|1|SN"));
    assert_eq!(gluc.test_code.as_deref(), Some("2345-7"));
    assert_eq!(gluc.value.as_deref(), Some("142"));
    assert_eq!(gluc.comparator, None);
    assert_eq!(num(gluc).as_deref(), Some("142"));
    assert_eq!(gluc.unit.as_deref(), Some("mg/dL"));
    assert_eq!(gluc.flags.as_deref(), Some("H"));
    assert_eq!(gluc.reference_range.as_deref(), Some("70-99"));
    assert_eq!(gluc.specimen_type.as_deref(), Some("SER^Serum^HL70487"));
    assert_eq!(iso(gluc.resulted_at).as_deref(), Some("2026-03-12T12:10:00-08:00"));
    assert_eq!(gluc.comments, ["Slight hemolysis (H-index 45); glucose may be underestimated."]);
    assert_eq!(gluc.offset, position(&data, b"OBX|2|NM"));
}

#[test]
fn nist_original_and_correction_keep_status_value_and_unit_as_sent() {
    let original = single(&fixture("nist-elr-251-case1-original.hl7"));
    let corrected = single(&fixture("nist-elr-251-case3-correction.hl7"));
    assert_eq!(original.sender.as_deref(), Some("EHR Application"));
    assert_eq!(original.control_id.as_deref(), Some("NIST-100929110701660"));
    let (a, b) = (&original.results[0], &corrected.results[0]);
    assert_eq!((original.results.len(), corrected.results.len()), (1, 1));
    assert_eq!((a.status.as_deref(), a.value.as_deref(), a.unit.as_deref()), (Some("F"), Some("50"), Some("ug/dL")));
    assert_eq!((b.status.as_deref(), b.value.as_deref(), b.unit.as_deref()), (Some("C"), Some("25"), Some("ug/dl")));
    assert_eq!(num(b).as_deref(), Some("25"));
    // No SPM-2: the filler order number (OBR-3) is the sample.
    assert_eq!(a.sample_id.as_deref(), Some("9700123"));
    assert_eq!(a.patient_id(), Some("9817566735"));
    assert_eq!(a.test_code.as_deref(), Some("10368-9"));
    assert_eq!(iso(a.collected_at).as_deref(), Some("2008-08-15T10:30-07:00"));
    assert_eq!(iso(a.resulted_at).as_deref(), Some("2008-08-18T18:00-07:00"));
    assert_eq!(a.flags.as_deref(), Some("H"));
    assert_eq!(a.reference_range.as_deref(), Some("<9 mcg/dL:  Acceptable background lead exposure"));
    assert_eq!(
        a.specimen_type.as_deref(),
        Some("122554006^Capillary blood specimen^SCT^BLDC^Blood capillary^HL70070^20080131^2.5.1")
    );
}

#[test]
fn hamaluik_cbc_gives_14_results_with_escaped_units() {
    let m = single(&fixture("hamaluik-oru-r01-cbc.hl7"));
    assert_eq!(m.results.len(), 14);
    assert!(has_warning(&m, "MSH-11 processing ID D"));
    let wbc = &m.results[0];
    assert_eq!(wbc.test_code.as_deref(), Some("301.0500"));
    assert_eq!(wbc.unit.as_deref(), Some("10^9/L"));
    assert_eq!(m.results[1].unit.as_deref(), Some("10^12/L"));
    assert_eq!(wbc.sample_id.as_deref(), Some("PT1311:H00001R"));
    assert_eq!(wbc.patient_id(), Some("AND234DA_PID3"));
    assert_eq!(num(wbc).as_deref(), Some("10.1"));
    assert_eq!(wbc.flags.as_deref(), Some("H"));
    assert_eq!(iso(wbc.collected_at).as_deref(), Some("2014-11-13T09:14"));
    assert_eq!(iso(wbc.resulted_at).as_deref(), Some("2014-11-13T09:15"));
    let units: Vec<&str> = m.results.iter().filter_map(|r| r.unit.as_deref()).collect();
    assert_eq!(units.iter().filter(|u| **u == "10^9/L").count(), 7);
}

#[test]
fn athena_lf_only_file_finds_every_segment_and_has_no_results() {
    let data = fixture("athena-oru-lf-only.hl7");
    let m = single(&data);
    assert!(m.results.is_empty());
    assert_eq!(m.control_id.as_deref(), Some("20087.3"));
    assert!(has_warning(&m, "segments end with LF, not CR"));
    // A misread (one giant MSH) would report MSH-12 as "2.5.1\nPID".
    assert!(!has_warning(&m, "MSH-12"), "{:?}", m.warnings);
    // The same bytes with CR give the same message, without the LF warning.
    let cr: Vec<u8> = data.iter().map(|&b| if b == b'\n' { b'\r' } else { b }).collect();
    let with_cr = single(&cr);
    assert_eq!(with_cr.results, m.results);
    assert!(!has_warning(&with_cr, "LF"));
}

#[test]
fn wrapped_pid_line_is_an_error_naming_the_line() {
    let data = fixture("openlis-labcorp-wrapped-pid-lf.hl7");
    let e = error(&data);
    assert_eq!(e.number, 1);
    assert_eq!(e.offset, position(&data, b"\nM|||") + 1);
    assert_eq!(e.span, 0..data.len());
    // The wrapped line is personal data: said where, never quoted.
    assert!(!e.text.contains("00000-0000"), "{}", e.text);
    assert_eq!(labfeed::model::line_at(&data, e.offset), 3);
    assert!(e.text.contains("is not a segment: expected a segment ID such as PID or OBX"), "{}", e.text);
    assert!(e.text.ends_with("(the PID segment before it may have been wrapped onto a new line)"), "{}", e.text);
}

#[test]
fn fhs_bhs_file_gives_two_batches_three_messages_no_results() {
    // ADT in the corpus; the envelope is what matters, so read as ORU (same length, same offsets).
    let adt = fixture("python-hl7-fhs-bhs-two-batches.hl7");
    assert!(parse(&adt).iter().all(|o| o.as_ref().is_err_and(|e| e.text.contains("ADT^A04"))));
    let data = String::from_utf8(adt).unwrap().replace("ADT^A04^ADT_A01", "ORU^R01^ORU_R01").into_bytes();
    let all = messages(&data);
    assert_eq!(all.iter().map(|m| m.number).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(
        all.iter().map(|m| m.control_id.as_deref()).collect::<Vec<_>>(),
        [Some("12334456778890"), Some("12334456778891"), Some("12334456778890")]
    );
    assert!(all.iter().all(|m| m.results.is_empty()));
    // Counts are right (BTS|2, BTS|1, FTS|2): no envelope warning.
    assert!(all.iter().flat_map(|m| &m.warnings).all(|w| !w.text.contains("BTS") && !w.text.contains("FTS")));
    // Message spans start at their MSH, not at the envelope.
    assert_eq!(all[0].span.start, position(&data, b"MSH|"));
}

#[test]
fn belgian_latin1_unit_falls_back_to_windows_1252_with_a_warning() {
    let raw = fixture("hl7r-4-belgian-latin1-obx.hl7");
    let m = single(&with_head_bytes(&raw));
    assert!(has_warning(&m, "not valid UTF-8"), "{:?}", m.warnings);
    let [rbc, plt] = m.results.as_slice() else { panic!("two results") };
    assert_eq!(rbc.unit.as_deref(), Some("10^6/µl"));
    assert_eq!(plt.unit.as_deref(), Some("10^3/µl"));
    assert_eq!(rbc.test_code.as_deref(), Some("RBC"));
    assert_eq!(num(rbc).as_deref(), Some("4.97"));
    assert_eq!(rbc.flags, None, "OBX-8 \"\" is null");
    assert_eq!(iso(rbc.collected_at).as_deref(), Some("2020-03-23T15:36:00"));
    assert_eq!(iso(rbc.resulted_at).as_deref(), Some("2020-03-23T15:56:25"));
}

#[test]
fn philips_status_x_has_no_value() {
    let r = results(&with_head_bytes(&fixture("philips-efficia-obx-status-x.hl7")));
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status.as_deref(), Some("X"));
    assert_eq!((r[0].value.as_deref(), r[0].numeric.as_ref()), (None, None));
    assert_eq!(r[0].test_code.as_deref(), Some("0002-4182"));
    assert_eq!(r[0].unit.as_deref(), Some("0004-0aa0"));
}

#[test]
fn linuxforhealth_sn_comparator_is_read() {
    let r = results(&with_head_bytes(&fixture("linuxforhealth-obx-sn-comparator.hl7")));
    assert_eq!(
        (r[0].value.as_deref(), r[0].comparator, num(&r[0]).as_deref()),
        (Some("<^0.06"), Some(Comparator::Lt), Some("0.06"))
    );
    assert_eq!(r[0].unit.as_deref(), Some("ug/mL"));
}

#[test]
fn device_glucose_without_value_type_is_read_as_text_with_a_warning() {
    let m = single(&with_head_bytes(&fixture("hapi-list-device-glucose-obx-no-type.hl7")));
    assert!(has_warning(&m, "OBX-2 value type is empty"));
    let r = &m.results[0];
    assert_eq!(
        (r.test_code.as_deref(), r.value.as_deref(), num(r).as_deref()),
        (Some("2345-7"), Some("99"), Some("99"))
    );
    assert_eq!((r.unit.as_deref(), r.flags.as_deref()), (Some("mg/dL"), Some("N")));
}

#[test]
fn fragments_without_msh_are_reported_not_guessed() {
    let data = fixture("philips-efficia-obx-status-x.hl7");
    let e = error(&data);
    assert!(e.text.contains("outside any message: expected MSH"), "{}", e.text);
    assert_eq!((e.offset, e.span.clone()), (0, 0..data.len()));
}

#[test]
fn protogen_ack_escapes_decode_and_ack_carries_no_results() {
    let data = fixture("protogen-ack-msa-escapes.hl7");
    let msa3 = std::str::from_utf8(&data).unwrap().trim_end().split('|').nth(3).unwrap();
    assert_eq!(unescape(msa3, &Delimiters::default()), "Hello World: this is \\S\\: `^' \u{1}\u{2}\u{3}\r\n0123");
    let mut ack = b"MSH|^~\\&|LIS|LAB|||20260312||ACK^R01^ACK|A-1|P|2.5.1\r".to_vec();
    ack.extend_from_slice(&data);
    let e = error(&ack);
    assert!(e.text.starts_with("MSH-9 message type ACK^R01 is not one labfeed reads"), "{}", e.text);
}

#[test]
fn bulgarian_utf8_cyrillic_and_hex_escapes() {
    let data = fixture("efferent-53-bulgarian-utf8-excerpt.hl7");
    let m = single(&data);
    assert_eq!(m.sender.as_deref(), Some("iLab"));
    assert!(m.results.is_empty());
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    let text = std::str::from_utf8(&data).unwrap();
    let nte3 = text.split('\r').find(|s| s.starts_with("NTE")).unwrap().split('|').nth(3).unwrap();
    let decoded = unescape(nte3, &Delimiters::default());
    assert!(
        decoded.starts_with("--- Footnotes ---\r\n   * 1. (LH ( Лутеинизиращ Хормон )): \r\nРеферентни"),
        "{decoded}"
    );
}

#[test]
fn msh18_8859_1_adt_is_refused_by_type_and_its_header_decodes() {
    let adt = fixture("efferent-v2-3-msh-8859-1.hl7");
    assert!(error(&adt).text.contains("message type ADT^A01 is not one labfeed reads"));
    // Read as an ORU (same length), the 8859/1 header still decodes.
    let pos = position(&adt, b"ADT^A01");
    let mut data = adt.clone();
    data.splice(pos..pos + 7, b"ORU^R01".iter().copied());
    let m = single(&data);
    assert_eq!(m.control_id.as_deref(), Some("HL7Gtw018FFE7D23AC00"));
}

#[test]
fn hl7apy_v27_lf_message_reads_msh_fields_correctly() {
    let m = single(&fixture("hl7apy-109-oru-27-lf.hl7"));
    assert_eq!((m.sender.as_deref(), m.control_id.as_deref()), (Some("SendApp"), Some("3-1")));
    assert!(has_warning(&m, "segments end with LF"));
    assert!(!has_warning(&m, "MSH-12"), "version 2.7 read as 2.7: {:?}", m.warnings);
    assert!(m.results.is_empty());
}

#[test]
fn python_hl7_glucose_sn_and_invalid_value_type() {
    let m = single(&fixture("python-hl7-glucose-sn-standard-example.hl7"));
    let [sn, fn_type] = m.results.as_slice() else { panic!("two results") };
    assert_eq!((sn.value.as_deref(), sn.comparator, num(sn).as_deref()), (Some("^182"), None, Some("182")));
    assert_eq!((sn.unit.as_deref(), sn.sample_id.as_deref()), (Some("mg/dl"), Some("1045813")));
    assert_eq!(iso(sn.collected_at).as_deref(), Some("2002-02-15T07:30"));
    // OBX-2 FN is not a value type: text, no number invented from "^182".
    assert_eq!((fn_type.value.as_deref(), fn_type.numeric.as_ref()), (Some("^182"), None));
    assert!(has_warning(&m, "OBX-2 value type \"FN\""));
}

#[test]
fn cdc_elr_specimen_id_and_collection_time_come_from_spm() {
    let r = results(&fixture("cdc-ny-elr-covid-251.hl7"));
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].sample_id.as_deref(), Some("1133623101"));
    assert_eq!(iso(r[0].collected_at).as_deref(), Some("2021-01-11T16:04:00"));
    assert_eq!(iso(r[0].resulted_at).as_deref(), Some("2021-01-12T10:28:00"));
    assert_eq!((r[0].value.as_deref(), r[0].numeric.as_ref()), (Some("Negative"), None));
    assert_eq!(r[0].patient_id(), Some("REDACTED"));
}

// ---------------------------------------------------------------------------
// Synthetic fixtures

#[test]
fn seven_timepoint_mmtt_oru_gives_cpeptide_and_glucose_per_draw() {
    let all = results(&fixture("synthetic-mmtt-7tp-oru-r01.hl7"));
    assert_eq!(all.len(), 14);
    let samples: Vec<&str> = all.iter().step_by(2).filter_map(|r| r.sample_id.as_deref()).collect();
    assert_eq!(
        samples,
        [
            "A2603120020-01",
            "A2603120021-01",
            "A2603120022-01",
            "A2603120023-01",
            "A2603120024-01",
            "A2603120025-01",
            "A2603120026-01"
        ]
    );
    let times: Vec<String> = all.iter().step_by(2).filter_map(|r| iso(r.collected_at)).collect();
    assert_eq!(times.first().map(String::as_str), Some("2026-03-11T08:02:00-08:00"));
    assert_eq!(times.last().map(String::as_str), Some("2026-03-11T10:12:00-08:00"));
    assert!(all.iter().step_by(2).all(|r| r.test_code.as_deref() == Some("1986-9")));
    assert!(all.iter().skip(1).step_by(2).all(|r| r.test_code.as_deref() == Some("2345-7")));
    assert_eq!((all[0].comparator, num(&all[0]).as_deref()), (Some(Comparator::Lt), Some("0.02")));
    assert_eq!((all[2].comparator, num(&all[2]).as_deref()), (None, Some("0.19")));
    let commented: Vec<usize> = (0..14).filter(|&i| !all[i].comments.is_empty()).collect();
    assert_eq!(commented, [7], "only the 30-min glucose has the hemolysis note");
}

#[test]
fn oul_r22_gives_the_same_results_as_the_oru() {
    let oru = results(&fixture("synthetic-mmtt-7tp-oru-r01.hl7"));
    let oul = results(&fixture("synthetic-mmtt-7tp-oul-r22.hl7"));
    assert_eq!(oul.len(), 14);
    assert_eq!(without_offsets(oul), without_offsets(oru));
}

#[test]
fn crlf_lf_and_lfcr_files_give_the_same_results_as_cr() {
    let cr = single(&fixture("synthetic-mmtt-7tp-oru-r01.hl7"));
    assert!(cr.warnings.is_empty(), "{:?}", cr.warnings);
    for (name, warning) in [
        ("synthetic-mmtt-7tp-oru-r01-crlf.hl7", "CRLF"),
        ("synthetic-mmtt-7tp-oru-r01-lf.hl7", "segments end with LF, not CR"),
        ("synthetic-mmtt-7tp-oru-r01-lfcr.hl7", "CRLF (or LFCR)"),
    ] {
        let data = fixture(name);
        let m = single(&data);
        assert_eq!(without_offsets(m.results.clone()), without_offsets(cr.results.clone()), "{name}");
        assert_eq!(m.warnings.len(), 1, "{name}: {:?}", m.warnings);
        assert!(has_warning(&m, warning), "{name}: {:?}", m.warnings);
        assert!(m.results.iter().all(|r| data.get(r.offset..r.offset + 4) == Some(b"OBX|")), "{name}");
    }
}

#[test]
fn mllp_file_with_two_frames_strips_the_framing() {
    let data = fixture("synthetic-mllp-two-frames.hl7");
    let all = messages(&data);
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].control_id.as_deref(), Some("CL20260312-000210"));
    assert_eq!(all[1].control_id.as_deref(), Some("CL20260312-000211"));
    let second_start = position(&data, b"\x1c\r\n\x0b") + 3;
    assert_eq!(all[0].span, 0..second_start - 1, "span covers VT … FS CR");
    assert_eq!(all[1].span, second_start..data.len(), "last frame has no final CR");
    assert_eq!(all.iter().map(|m| m.results.len()).sum::<usize>(), 4);
    assert!(all.iter().flat_map(|m| &m.results).all(|r| data.get(r.offset..r.offset + 4) == Some(b"OBX|")));
    assert!(all.iter().all(|m| m.warnings.is_empty()), "{:?}", all[1].warnings);
}

#[test]
fn wrong_bts_count_warns_and_keeps_the_data() {
    let all = messages(&fixture("synthetic-fhs-bhs-wrong-bts-count.hl7"));
    assert_eq!(all.len(), 2);
    assert_eq!(all.iter().map(|m| m.results.len()).sum::<usize>(), 4);
    assert!(has_warning(&all[1], "BTS-1 says 3 messages, the batch holds 2"), "{:?}", all[1].warnings);
    assert!(!has_warning(&all[1], "FTS"));
}

#[test]
fn correction_keeps_status_c() {
    let all = results(&fixture("synthetic-correction-c.hl7"));
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|r| r.status.as_deref() == Some("C")));
    assert_eq!((all[0].value.as_deref(), num(&all[0]).as_deref()), (Some("^0.23"), Some("0.23")));
    assert_eq!(all[0].sample_id.as_deref(), Some("A2603120021-01"));
}

#[test]
fn custom_delimiters_are_read_per_message() {
    let all = messages(&fixture("synthetic-custom-delimiters.hl7"));
    assert_eq!(all.len(), 2);
    let first = &all[0].results[0];
    assert_eq!(first.flags.as_deref(), Some("H~A"), "repetition separator ! in message 1");
    assert_eq!(first.comments, ["first line\nsecond ! line"], "\\R\\ is that message's ! ");
    assert_eq!(first.sample_id.as_deref(), Some("A2603120040"));
    let [cpep, wbc] = all[1].results.as_slice() else { panic!("two results in message 2") };
    assert_eq!(all[1].sender.as_deref(), Some("CUSTOMLAB"));
    assert_eq!(
        (cpep.value.as_deref(), cpep.comparator, num(cpep).as_deref()),
        (Some("<^0.02"), Some(Comparator::Lt), Some("0.02"))
    );
    assert_eq!(cpep.test_code.as_deref(), Some("1986-9"));
    assert_eq!(cpep.flags.as_deref(), Some("L~A"));
    assert_eq!(wbc.unit.as_deref(), Some("10%9/L"), "$S$ is message 2's component separator %");
    assert_eq!(cpep.sample_id.as_deref(), Some("A2603120041"));
}

#[test]
fn latin1_declared_in_msh18_is_decoded_without_warnings() {
    let m = single(&fixture("synthetic-latin1-8859-1.hl7"));
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    assert_eq!(m.results[0].unit.as_deref(), Some("µg/L"));
    assert_eq!(m.results[0].comments, ["Hémolyse légère"]);
}

#[test]
fn bad_msh2_fails_only_its_own_message() {
    let data = fixture("synthetic-bad-msh2-between-good.hl7");
    let all = parse(&data);
    assert_eq!(all.len(), 3);
    let good: Vec<&ParsedMessage> = all.iter().filter_map(|o| o.as_ref().ok()).collect();
    assert_eq!(good.iter().map(|m| m.number).collect::<Vec<_>>(), [1, 3]);
    assert_eq!(good.iter().map(|m| m.results.len()).sum::<usize>(), 4);
    let bad = all[1].as_ref().expect_err("message 2 is broken");
    assert_eq!(bad.number, 2);
    assert_eq!(bad.text, "MSH-2 encoding characters: expected 4 or 5 distinct characters (^~\\&), found \"^~\"");
    let second = position(&data, b"MSH|^~|");
    assert_eq!(bad.offset, second);
    assert_eq!(bad.span, second..good[1].span.start);
}

// ---------------------------------------------------------------------------
// Conformance cases (hl7.md §9)

const OBX_CPEP: &str = "OBX|1|SN|1986-9^C peptide^LN||<^0.02|ng/mL|0.8-3.5|L|||F\r";

#[test]
fn case01_cr_with_trailing_blank_lines_is_the_same_message() {
    let base = results(&with_head(OBX_CPEP));
    for tail in ["\r\r\n", "\n\n", "\r\n\r\n  \r\n"] {
        let data = with_head(&format!("{OBX_CPEP}{tail}"));
        assert_eq!(results(&data), base, "{tail:?}");
    }
}

#[test]
fn case02_raw_lf_inside_a_cr_message_is_data() {
    let data = with_head("OBX|1|NM|2345-7||142|mg/dL|||||F\rNTE|1|L|line one\nline two\rNTE|2|L|PID|not a segment\r");
    let all = parse(&data);
    assert_eq!(all.len(), 1, "{all:?}");
    let m = all[0].as_ref().unwrap();
    assert_eq!(m.results.len(), 1);
    assert_eq!(m.results[0].comments, ["line one\nline two", "PID"]);
    let warning = m.warnings.iter().find(|w| w.text.starts_with("raw control character")).expect("raw LF warning");
    assert_eq!(warning.offset, position(&data, b"one\nline") + 3);
}

#[test]
fn case04_bom_blank_lines_dos_eof_are_stripped_with_warnings() {
    let plain = fixture("synthetic-mmtt-oru-r01.hl7");
    let base = results(&plain);
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend_from_slice(&plain);
    let m = single(&bom);
    assert!(has_warning(&m, "byte order mark"));
    assert_eq!(m.results[0].offset, base[0].offset + 3, "offsets stay file offsets");
    let mut padded = b"\r\n\r\n   ".to_vec();
    padded.extend_from_slice(&plain);
    padded.extend_from_slice(b"   \r\n\x1a");
    let m = single(&padded);
    assert!(has_warning(&m, "leading blank lines"));
    assert!(has_warning(&m, "0x1A"));
    assert_eq!(without_offsets(m.results), without_offsets(base));
}

#[test]
fn case04_utf16_and_nul_bytes_are_errors() {
    let mut utf16 = vec![0xFF, 0xFE];
    for b in b"MSH|^~\\&|\r" {
        utf16.extend_from_slice(&[*b, 0]);
    }
    assert_eq!(error(&utf16).text, "file is UTF-16; expected UTF-8 or 8-bit text");
    let mut nul = with_head(OBX_CPEP);
    nul.extend_from_slice(b"\0\0\0\0");
    let e = error(&nul);
    assert!(e.text.starts_with("NUL byte"), "{}", e.text);
    assert_eq!(e.offset, nul.len() - 4);
}

#[test]
fn case05_swapped_and_custom_delimiters() {
    let data =
        b"MSH|~^\\&|LAB|F|||20260312||ORU~R01|C-1|P|2.5.1\rOBR|1||S~X\rOBX|1|SN|CP~C peptide||<~0.02|ng/mL|||||F\r";
    let r = results(data);
    assert_eq!((r[0].sample_id.as_deref(), r[0].test_code.as_deref()), (Some("S"), Some("CP")));
    assert_eq!((r[0].value.as_deref(), r[0].comparator), (Some("<^0.02"), Some(Comparator::Lt)));
    let star = b"MSH*^~\\&*LAB*F***20260312**ORU^R01*C-2*P*2.5.1\rOBR*1**S2\rOBX*1*NM*GLU**5.5*mmol/L*****F\r";
    assert_eq!(results(star)[0].value.as_deref(), Some("5.5"));
}

#[test]
fn case06_invalid_encoding_characters_are_errors_never_panics() {
    for header in [
        "MSH|^~\\|A|",
        "MSH|^~\\&#!|A|",
        "MSH|^^\\&|A|",
        "MSH^^~\\&^A^",
        "MSH|^",
        "MSH|^~\\&",
        "MSH",
        "MSH|^~\\&A|X|",
        "MSH ^~\\& A",
    ] {
        let data = format!("{header}\rOBX|1|NM|X||1\r");
        let e = error(data.as_bytes());
        assert!(e.text.starts_with("MSH"), "{header}: {}", e.text);
        assert_eq!(e.offset, 0);
    }
}

#[test]
fn case07_truncation_character_shifts_nothing() {
    let data = b"MSH|^~\\&#|APP^1|FAC|||20260312||ORU^R01|CTRL-7|P|2.7\rOBR|1||S7\rOBX|1|ST|T1||ABC#|||||F\rOBX|2|ST|T2||#1 mid|||||F\rOBX|3|NM|T3||12.5#|||||F\r";
    let m = single(data);
    assert_eq!((m.sender.as_deref(), m.control_id.as_deref()), (Some("APP"), Some("CTRL-7")));
    assert!(!has_warning(&m, "MSH-12"), "MSH-12 is 2.7: {:?}", m.warnings);
    let truncated: Vec<usize> = m.warnings.iter().filter(|w| w.text.contains("truncated")).map(|w| w.offset).collect();
    assert_eq!(truncated, [position(data, b"ABC#") + 3, position(data, b"12.5#") + 4]);
    assert_eq!(m.results[0].value.as_deref(), Some("ABC#"));
    assert_eq!(m.results[1].value.as_deref(), Some("#1 mid"));
    assert_eq!(
        (m.results[2].value.as_deref(), m.results[2].numeric.as_ref()),
        (Some("12.5#"), None),
        "a truncated number is not a number"
    );
}

#[test]
fn case08_trailing_separators_and_empty_structure_parse_the_same() {
    let forms = [
        "OBX|1|NM|GLU||5.5|mmol/L|||||F\r",
        "OBX|1|NM|GLU||5.5|mmol/L|||||F||||||||\r",
        "OBX|1|NM|GLU||5.5|mmol/L|||||F|\r",
    ];
    let all: Vec<Vec<LabResult>> = forms.iter().map(|f| without_offsets(results(&with_head(f)))).collect();
    assert_eq!(all[0], all[1]);
    assert_eq!(all[0], all[2]);
    let data = b"MSH|^~\\&|L|F|||20260312||ORU^R01|C|P|2.5.1\rPID|1||^^^&&ISO^MR||~^^^^^^S\rOBR|1||S\rOBX|1|NM|GLU||5.5|mmol/L|||||F\rNTE\r";
    let r = results(data);
    assert_eq!((r[0].patient_id(), r[0].comments.len()), (None, 0));
}

#[test]
fn case09_null_fields_are_none() {
    let data = with_head("OBX|1|NM|GLU||\"\"|\"\"||\"\"|||X\rOBX|2|NM|\"\"^Glucose||1|u|||||F\r");
    let r = results(&data);
    assert_eq!((r[0].value.as_deref(), r[0].unit.as_deref(), r[0].flags.as_deref()), (None, None, None));
    assert_eq!(r[0].status.as_deref(), Some("X"));
    assert_eq!(r[1].test_code.as_deref(), Some("\"\""), "component-level \"\" is kept as sent");
    let pid_null = b"MSH|^~\\&|L|F|||20260312||ORU^R01|C|P|2.5.1\rPID|1||\"\"\rOBR|1||S\rOBX|1|NM|GLU||1\r";
    assert_eq!(results(pid_null)[0].patient_id(), None);
}

#[test]
fn case10_escapes_decode_once_and_keep_unknown_sequences() {
    let data = with_head(
        "OBX|1|ST|T||a\\F\\b\\E\\T\\E\\c\\E\\|10\\S\\9/L|||||F\rNTE|1|L|\\H\\bold\\N\\ line\\.br\\next \\Q\\ 4\\5 re\\X0D0A\\end\\XZZ\\\r",
    );
    let m = single(&data);
    let r = &m.results[0];
    assert_eq!(r.value.as_deref(), Some("a|b\\T\\c\\"));
    assert_eq!(r.unit.as_deref(), Some("10^9/L"));
    assert_eq!(r.comments, ["\\H\\bold\\N\\ line\nnext \\Q\\ 4\\5 re\r\nend\\XZZ\\"]);
    let kept: Vec<usize> = m.warnings.iter().filter(|w| w.text.contains("kept literally")).map(|w| w.offset).collect();
    assert_eq!(kept, [position(&data, b"\\Q\\"), position(&data, b"\\5 re"), position(&data, b"\\XZZ")]);
}

#[test]
fn case11_character_sets() {
    let cyrillic = "OBX|1|ST|T||Лутеин \\T\\ x|||||F\r";
    let declared = format!("MSH|^~\\&|L|F|||20260312||ORU^R01|C|P|2.5.1||||||UNICODE UTF-8\rOBR|1||S\r{cyrillic}");
    let m = single(declared.as_bytes());
    assert_eq!(m.results[0].value.as_deref(), Some("Лутеин & x"));
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    let undeclared = single(&with_head(cyrillic));
    assert_eq!(undeclared.results[0].value.as_deref(), Some("Лутеин & x"));
    let mismatch = format!("MSH|^~\\&|L|F|||20260312||ORU^R01|C|P|2.5||||||8859/1\rOBR|1||S\r{cyrillic}");
    let m = single(mismatch.as_bytes());
    assert_eq!(m.results[0].value.as_deref(), Some("Лутеин & x"));
    assert!(has_warning(&m, "MSH-18 says 8859/1 but the bytes are valid UTF-8"));
    let switching = b"MSH|^~\\&|L|F|||20260312||ORU^R01|C|P|2.5|||||JPN|ASCII~ISO IR87||ISO 2022-1994\rOBR|1||S\r";
    let e = error(switching);
    assert!(e.text.contains("MSH-18/MSH-20"), "{}", e.text);
    assert_eq!(e.offset, position(switching, b"ASCII~"));
    // A bad byte in a comment never costs the value.
    let m = single(&with_head_bytes(b"OBX|1|NM|GLU||5.5|mmol/L|||||F\rNTE|1|L|caf\xe9\r"));
    assert_eq!(
        (num(&m.results[0]).as_deref(), m.results[0].comments.as_slice()),
        (Some("5.5"), &["café".to_owned()][..])
    );
}

#[test]
fn case12_nm_numbers_keep_precision_and_never_guess() {
    let cases = [
        ("1.23", Some("1.23"), false),
        ("+1.23", Some("1.23"), false),
        ("-0.5", Some("-0.5"), false),
        (".5", Some("0.5"), false),
        ("5.", Some("5"), false),
        ("0001.20", Some("1.20"), false),
        (" 1.23 ", Some("1.23"), false),
        ("1,23", None, true),
        ("1.2E3", None, true),
        ("1.2.3", None, true),
    ];
    for (value, expected, warns) in cases {
        let m = single(&with_head(&format!("OBX|1|NM|GLU||{value}|mmol/L|||||F\r")));
        assert_eq!(num(&m.results[0]).as_deref(), expected, "{value}");
        assert_eq!(has_warning(&m, "is not a number"), warns, "{value}");
    }
    let comma = parse_with(
        &with_head("OBX|1|NM|GLU||7,41|mmol/L|||||F\r"),
        ParseOptions { decimal_comma: true, ..ParseOptions::default() },
    );
    assert_eq!(comma[0].as_ref().map(|m| num(&m.results[0])).ok().flatten().as_deref(), Some("7.41"));
}

#[test]
fn case13_comparators_and_censored_values() {
    let sn = [
        ("<^0.02", Some(Comparator::Lt), Some("0.02")),
        ("<=^0.02", Some(Comparator::Le), Some("0.02")),
        (">^30", Some(Comparator::Gt), Some("30")),
        (">=^200", Some(Comparator::Ge), Some("200")),
        ("=^5", None, Some("5")),
        ("<>^5", None, None),
        ("^182", None, Some("182")),
        ("^10^-^20", None, None),
        ("^1^:^128", None, None),
        ("^2^+", None, None),
        ("<^0.02^", Some(Comparator::Lt), Some("0.02")),
    ];
    for (value, comparator, number) in sn {
        let r = results(&with_head(&format!("OBX|1|SN|CPEP||{value}|ng/mL|||||F\r")));
        assert_eq!((r[0].comparator, num(&r[0]).as_deref()), (comparator, number), "SN {value}");
    }
    let r = results(&with_head("OBX|1|SN|CPEP||<^0.02^|ng/mL|||||F\r"));
    assert_eq!(r[0].value.as_deref(), Some("<^0.02"), "trailing empty component dropped");
    let st = [
        ("<0.02", Some(Comparator::Lt), Some("0.02")),
        ("< 0.02", Some(Comparator::Lt), Some("0.02")),
        ("<LLOQ", Some(Comparator::Lt), None),
        (">30.0", Some(Comparator::Gt), Some("30.0")),
        ("TNP", None, None),
        ("QNS", None, None),
        ("see comment", None, None),
    ];
    for (value, comparator, number) in st {
        let r = results(&with_head(&format!("OBX|1|ST|CPEP||{value}|ng/mL|||||F\r")));
        assert_eq!((r[0].comparator, num(&r[0]).as_deref()), (comparator, number), "ST {value}");
    }
    let m = single(&with_head("OBX|1|NM|CPEP||<0.02|ng/mL|||||F\r"));
    assert_eq!((m.results[0].comparator, num(&m.results[0]).as_deref()), (Some(Comparator::Lt), Some("0.02")));
    assert!(has_warning(&m, "has a comparator"));
}

#[test]
fn case14_value_type_anomalies() {
    let e = error(&with_head("OBX|1|NM|GLU||5.5~6.1|mmol/L|||||F\r"));
    assert!(e.text.starts_with("OBX-5: expected one value for OBX-2 NM"), "{}", e.text);
    let m = single(&with_head("OBX|1|TX|REPORT||first~second|||||F\r"));
    assert_eq!(m.results[0].value.as_deref(), Some("first"));
    assert!(has_warning(&m, "only the first repetition"));
    let m = single(&with_head("OBX|1|FN|GLU||5.5|mmol/L|||||F\r"));
    assert_eq!(num(&m.results[0]).as_deref(), Some("5.5"));
    assert!(has_warning(&m, "OBX-2 value type \"FN\""));
}

#[test]
fn case17_grouping_context_decides_what_is_a_result() {
    let data = b"MSH|^~\\&|L|F|||20260312||ORU^R01|C|P|2.5.1\r\
PID|1||P-A\rNTE|1||about the patient\r\
OBR|1||ORD-A||||20260311080000\rNTE|1||about the order\r\
OBX|1|NM|GLU||5.5|mmol/L|||||F\rZXY|custom\rNTE|1||about the glucose\r\
OBX|1|NM|CPEP||0.5|nmol/L|||||F\r\
SPM|1|^SPEC-A||SER|||||||P||||||20260311081500\rOBX|1|NM|TEMP||4|Cel|||||F\rNTE|1||specimen note\r\
PID|2||P-B\r\
OBR|1||ORD-B||||20260311090000\rOBX|1|NM|GLU||6.1|mmol/L|||||F\r";
    let r = results(data);
    assert_eq!(r.len(), 3, "the OBX after SPM is a specimen observation");
    assert_eq!(r.iter().map(|r| r.test_code.as_deref().unwrap_or("")).collect::<Vec<_>>(), ["GLU", "CPEP", "GLU"]);
    assert_eq!(r[0].comments, ["about the glucose"], "Z-segment between OBX and NTE is skipped");
    assert!(r[1].comments.is_empty() && r[2].comments.is_empty());
    assert_eq!((r[0].sample_id.as_deref(), r[1].sample_id.as_deref()), (Some("SPEC-A"), Some("SPEC-A")));
    assert_eq!(iso(r[0].collected_at).as_deref(), Some("2026-03-11T08:15:00"), "SPM-17 wins over OBR-7");
    assert_eq!((r[2].sample_id.as_deref(), r[2].patient_id()), (Some("ORD-B"), Some("P-B")));
    assert_eq!(iso(r[2].collected_at).as_deref(), Some("2026-03-11T09:00:00"));
    assert_eq!(r[0].patient_id(), Some("P-A"));
}

#[test]
fn case17_qc_specimens_are_marked() {
    let data = with_head("OBX|1|NM|GLU||5.5|mmol/L|||||F\rSPM|1|QC-LOT-7||SER|||||||Q^Control^HL70369\r");
    let r = results(&data);
    assert!(r[0].qc);
    assert_eq!(r[0].sample_id.as_deref(), Some("QC-LOT-7"), "placer part when there is no filler part");
}

#[test]
fn case19_patient_id_is_pid3_first_repetition_component_one() {
    let pid = |field: &str| {
        let data =
            format!("MSH|^~\\&|L|F|||20260312||ORU^R01|C|P|2.5.1\rPID|1|ALT|{field}\rOBR|1||S\rOBX|1|NM|GLU||1\r");
        results(data.as_bytes())[0].patient_id().map(str::to_owned)
    };
    assert_eq!(pid("0000000000^^^GRAO^NI~5948556^^^Laboratory^MR").as_deref(), Some("0000000000"));
    assert_eq!(pid("  000123  ^^^TRIAL^PI").as_deref(), Some("000123"), "trimmed, leading zeros kept");
    // Every repetition is a patient ID (the study code may be any of them).
    let data = "MSH|^~\\&|L|F|||20260312||ORU^R01|C|P|2.5.1\rPID|1||0000000000^^^GRAO^NI~~\"\"~U04^^^STUDY\rOBR|1||S\rOBX|1|NM|GLU||1\r";
    assert_eq!(results(data.as_bytes())[0].patient_ids, ["0000000000", "U04"]);
    assert_eq!(pid("^^^&&ISO^MR"), None);
    assert_eq!(pid(""), None, "PID-2 is not used");
    let no_pid = results(b"MSH|^~\\&|L|F|||20260312||ORU^R01|C|P|2.5.1\rOBR|1||S\rOBX|1|NM|GLU||1\r");
    assert_eq!(no_pid[0].patient_id(), None);
}

#[test]
fn case21_timestamps_precision_offsets_and_invalid_dates() {
    let collected = |obr7: &str| {
        let data = format!("MSH|^~\\&|L|F|||20260312||ORU^R01|C|P|2.5.1\rOBR|1||S||||{obr7}\rOBX|1|NM|GLU||1\r");
        iso(results(data.as_bytes())[0].collected_at)
    };
    assert_eq!(collected("20260311").as_deref(), Some("2026-03-11"));
    assert_eq!(collected("202603110812").as_deref(), Some("2026-03-11T08:12"));
    assert_eq!(collected("20260311081200.1234+0530").as_deref(), Some("2026-03-11T08:12:00.1234+05:30"));
    assert_eq!(collected("200808151030-0700^M").as_deref(), Some("2008-08-15T10:30-07:00"));
    assert_eq!(collected("1991").as_deref(), Some("1991"));
    // OBX-14 is the fallback when neither SPM-17 nor OBR-7 is sent.
    let r = results(&with_head("OBX|1|NM|GLU||1|u|||||F|||20260311081200-0800\r"));
    assert_eq!(iso(r[0].collected_at).as_deref(), Some("2026-03-11T08:12:00-08:00"));
    let data = with_head("OBX|1|NM|GLU||1|u|||||F|||20230230\r");
    let e = error(&data);
    assert!(e.text.starts_with("OBX-14: expected a date/time YYYY[MM[DD"), "{}", e.text);
    assert!(e.text.ends_with("found a value that is not one"), "{}", e.text);
    assert_eq!(e.offset, position(&data, b"20230230"));
    let e = error(&with_head("OBX|1|NM|GLU||1\rSPM|1|X||SER|||||||||||||196203520\r"));
    assert!(e.text.starts_with("SPM-17: expected a date/time"), "{}", e.text);
    let e = error(&with_head("OBX|1|NM|GLU||1|u|||||F||||||||20261301\r"));
    assert!(e.text.starts_with("OBX-19:"), "{}", e.text);
}

#[test]
fn case23_several_messages_blank_lines_and_an_ack() {
    let oru = |id: &str| format!("MSH|^~\\&|L|F|||20260312||ORU^R01|{id}|P|2.5.1\rOBR|1||S-{id}\rOBX|1|NM|GLU||1\r");
    let file = format!(
        "{}\r\n\r\n{}MSH|^~\\&|L|F|||20260312||ACK^R01^ACK|A|P|2.5.1\rMSA|AA|X\r\n{}",
        oru("1"),
        oru("2"),
        oru("3")
    );
    // The ACK is an error of its own; the messages around it are read.
    let all = parse(file.as_bytes());
    let counts: Vec<_> = all.iter().map(|o| o.as_ref().map(|m| (m.number, m.results.len())).ok()).collect();
    assert_eq!(counts, [Some((1, 1)), Some((2, 1)), None, Some((4, 1))]);
    assert!(all[2].as_ref().is_err_and(|e| e.number == 3 && e.text.contains("ACK^R01")));
    assert_eq!(all[3].as_ref().unwrap().results[0].sample_id.as_deref(), Some("S-3"));
}

#[test]
fn case23_batch_structure_problems_affect_only_their_part() {
    let msg = "MSH|^~\\&|L|F|||20260312||ORU^R01|M|P|2.5.1\rOBR|1||S\rOBX|1|NM|GLU||1\r";
    // BHS with no MSH: its segments are an error of their own.
    let file = format!("BHS|^~\\&\rPID|1||X\rOBX|1|NM|GLU||1\rBTS|0\r{msg}");
    let all = parse(file.as_bytes());
    assert_eq!(all.len(), 2);
    let e = all[0].as_ref().expect_err("stray segments after BHS");
    assert!(e.text.contains("a line of 8 bytes (not shown) follows BHS outside any message"), "{}", e.text);
    assert_eq!(all[1].as_ref().map(|m| m.results.len()).ok(), Some(1));
    // BHS inside a message ends it; the nested batch is reported.
    let file = format!("BHS|^~\\&\r{msg}BHS|^~\\&\r{msg}BTS|1\rBTS|1\r");
    let all = parse(file.as_bytes());
    let ok: Vec<&ParsedMessage> = all.iter().filter_map(|o| o.as_ref().ok()).collect();
    assert_eq!(ok.len(), 2);
    assert!(has_warning(ok[0], "batch not closed: expected BTS before BHS"));
    assert!(has_warning(ok[1], "BTS without a BHS"));
    // FHS without FTS.
    let file = format!("FHS|^~\\&\rBHS|^~\\&\r{msg}BTS|1\r");
    assert!(has_warning(&single(file.as_bytes()), "expected FTS at the end of the file"));
}

#[test]
fn case24_mllp_junk_missing_end_and_bom_in_frame() {
    let msg = fixture("synthetic-mmtt-oru-r01.hl7");
    let frame = |payload: &[u8]| labfeed::hl7::mllp::encode(payload);
    let mut file = b"garbage".to_vec();
    file.extend_from_slice(&frame(&msg));
    file.extend_from_slice(b"more junk");
    let mut with_bom = b"\xEF\xBB\xBF".to_vec();
    with_bom.extend_from_slice(&msg);
    file.extend_from_slice(&frame(&with_bom));
    let all = messages(&file);
    assert_eq!(all.len(), 2);
    assert!(has_warning(&all[0], "7 bytes before the MLLP start block discarded"));
    assert!(has_warning(&all[1], "9 bytes before the MLLP start block discarded"));
    assert!(has_warning(&all[1], "byte order mark inside the MLLP frame"));
    assert_eq!(without_offsets(all[0].results.clone()), without_offsets(all[1].results.clone()));
    // A frame cut short (file still being written) is an error.
    let mut cut = frame(&msg);
    cut.extend_from_slice(b"\x0bMSH|^~\\&|L|F|||20260312||ORU^R01|C|P|2.5.1\rOBX|1|NM|GL");
    let all = parse(&cut);
    assert_eq!(all.len(), 2);
    assert!(all[0].is_ok());
    let e = all[1].as_ref().expect_err("unclosed frame");
    assert!(e.text.starts_with("MLLP frame not closed"), "{}", e.text);
    assert_eq!(e.span.end, cut.len());
}

#[test]
fn case25_versions_types_and_segment_ids() {
    let msg = |msh9: &str, msh12: &str, body: &str| {
        format!("MSH|^~\\&|L|F|||20260312||{msh9}|C|P|{msh12}\rOBR|1||S\r{body}").into_bytes()
    };
    for version in ["2.3", "2.3.1", "2.4", "2.5.1", "2.7", "2.5.1^USA"] {
        assert!(!has_warning(&single(&msg("ORU^R01", version, "OBX|1|NM|G||1\r")), "MSH-12"), "{version}");
    }
    assert!(has_warning(&single(&msg("ORU^R01", "2.2", "")), "MSH-12 version 2.2"));
    for msh9 in ["ORU^R01", "ORU^R01^ORU_R01", "ORU", "OUL^R21", "oru^r01"] {
        assert_eq!(results(&msg(msh9, "2.5.1", "OBX|1|NM|G||1\r")).len(), 1, "{msh9}");
    }
    let adt = error(&msg("ADT^A04", "2.5", "OBX|1|NM|G||1\r"));
    assert!(adt.text.starts_with("MSH-9 message type ADT^A04 is not one labfeed reads"), "{}", adt.text);
    assert_eq!(results(&msg("ORU^R01", "2.5.1", "ZA1|x\rOBX|1|NM|G||1\r")).len(), 1);
    for bad in ["obx|1|NM|G||1\r", "OB|1\r", "OBXX|1\r", "1AB|x\r"] {
        let data = msg("ORU^R01", "2.5.1", bad);
        let e = error(&data);
        assert!(e.text.contains("is not a segment: expected a segment ID such as PID or OBX"), "{bad}: {}", e.text);
        assert_eq!(e.offset, position(&data, bad.as_bytes()));
        assert_eq!(labfeed::model::line_at(&data, e.offset), 3, "{}", e.text);
    }
}

#[test]
fn case25_huge_value_and_many_segments_parse_in_linear_time() {
    let big = "QUJD".repeat(5 << 20 >> 2);
    let data = with_head(&format!("OBX|1|ED|PDF||^application^pdf^Base64^{big}|||||F\r"));
    let started = std::time::Instant::now();
    let r = results(&data);
    assert!(r[0].value.as_ref().is_some_and(|v| v.len() > 5 << 20));
    let mut many = HEAD.to_owned();
    for i in 0..10_000 {
        many.push_str(&format!("OBX|{i}|NM|GLU||{i}|mmol/L|||||F\r"));
    }
    assert_eq!(results(many.as_bytes()).len(), 10_000);
    assert!(started.elapsed().as_secs() < 20, "took {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------
// Property tests

fn delimiter_set() -> impl Strategy<Value = Delimiters> {
    let punctuation: Vec<u8> = (0x21u8..0x7f).filter(u8::is_ascii_punctuation).collect();
    (proptest::sample::subsequence(punctuation, 6), any::<bool>(), any::<u64>()).prop_map(
        |(mut chars, truncation, seed)| {
            // Shuffle so that any character can take any role.
            let len = chars.len();
            for i in (1..len).rev() {
                chars.swap(i, (seed as usize).wrapping_mul(i + 7) % (i + 1));
            }
            let encoding: Vec<u8> = chars.iter().skip(1).take(if truncation { 5 } else { 4 }).copied().collect();
            Delimiters::new(chars[0], &encoding).expect("distinct punctuation is a valid set")
        },
    )
}

proptest! {
    #[test]
    fn escape_then_unescape_round_trips(text in any::<String>(), d in delimiter_set()) {
        let escaped = escape(&text, &d);
        for b in [d.field, d.component, d.repetition, d.subcomponent, b'\r', b'\n'] {
            prop_assert!(!escaped.as_bytes().contains(&b));
        }
        prop_assert_eq!(unescape(&escaped, &d), text);
    }

    #[test]
    fn escaped_values_survive_a_whole_message(value in "[ -~µЛ]{0,24}", d in delimiter_set()) {
        let (f, c) = (char::from(d.field), char::from(d.component));
        let enc: String = [d.component, d.repetition, d.escape, d.subcomponent].iter().chain(d.truncation.iter()).map(|&b| char::from(b)).collect();
        let data = format!("MSH{f}{enc}{f}L{f}F{f}{f}{f}20260312{f}{f}ORU{c}R01{f}C{f}P{f}2.5.1\rOBR{f}1{f}{f}S\rOBX{f}1{f}ST{f}T{f}{f}{}{f}u\r", escape(&value, &d));
        let all = results(data.as_bytes());
        let expected = if value.is_empty() { None } else { Some(value.clone()) };
        prop_assert_eq!(all[0].value.clone(), expected);
    }

    #[test]
    fn cr_crlf_and_lf_give_identical_results(
        values in proptest::collection::vec("[A-Za-z0-9 .<>=+-]{0,10}", 1..6),
        units in proptest::collection::vec("[a-zA-Z/%]{0,6}", 6),
        with_spm in any::<bool>(),
    ) {
        let mut segments = vec![
            "MSH|^~\\&|LAB|F|||20260312||ORU^R01|C|P|2.5.1".to_owned(),
            "PID|1||P-1".to_owned(),
            "OBR|1||ORD|||20260311081200".to_owned(),
        ];
        for (i, value) in values.iter().enumerate() {
            segments.push(format!("OBX|{i}|ST|T{i}||{value}|{}|||||F", units[i]));
            segments.push(format!("NTE|1||note {i}"));
        }
        if with_spm {
            segments.push("SPM|1|^SPEC||SER|||||||P||||||20260311081000".to_owned());
        }
        let cr = segments.join("\r");
        let crlf = segments.join("\r\n");
        let lf = segments.join("\n");
        let base = without_offsets(results(cr.as_bytes()));
        prop_assert_eq!(base.len(), values.len());
        prop_assert_eq!(without_offsets(results(crlf.as_bytes())), base.clone());
        prop_assert_eq!(without_offsets(results(lf.as_bytes())), base);
    }

    #[test]
    fn parse_file_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        check_invariants(&bytes);
    }

    #[test]
    fn parse_file_never_panics_on_mutated_fixtures(
        index in 0usize..1000,
        edits in proptest::collection::vec((any::<u16>(), any::<u8>(), 0u8..3), 1..12),
    ) {
        let names = fixture_names();
        let mut data = fixture(&names[index % names.len()]);
        for (at, byte, kind) in edits {
            let at = usize::from(at) % (data.len() + 1);
            match kind {
                0 => data.insert(at, byte),
                1 if at < data.len() => { data.remove(at); }
                _ if at < data.len() => data[at] = byte,
                _ => data.push(byte),
            }
        }
        check_invariants(&data);
    }
}

fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("{}/fixtures/hl7", env!("CARGO_MANIFEST_DIR")))
        .expect("fixtures")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".hl7"))
        .collect();
    names.sort();
    names
}

/// Whatever the input: numbers count up from 1, spans and offsets stay in
/// the file, and every result points at an OBX segment.
fn check_invariants(bytes: &[u8]) {
    let all = parse(bytes);
    for (i, outcome) in all.iter().enumerate() {
        match outcome {
            Ok(m) => {
                assert_eq!(m.number, i + 1);
                assert!(m.span.start <= m.span.end && m.span.end <= bytes.len());
                for r in &m.results {
                    assert_eq!(bytes.get(r.offset..r.offset + 3), Some(&b"OBX"[..]));
                    assert!(r.value.as_deref() != Some("") && r.sample_id.as_deref() != Some(""));
                }
                assert!(m.warnings.iter().all(|w| w.offset <= bytes.len()));
            }
            Err(e) => {
                assert_eq!(e.number, i + 1);
                assert!(e.offset <= bytes.len() && e.span.end <= bytes.len() && !e.text.is_empty());
            }
        }
    }
}

#[test]
fn every_fixture_satisfies_the_invariants() {
    let names = fixture_names();
    assert!(names.len() >= 28, "{names:?}");
    for name in names {
        check_invariants(&fixture(&name));
    }
}

#[test]
fn an_obx_before_any_obr_is_still_a_result_and_a_specimen_obx_is_named_not_dropped_silently() {
    let data = b"MSH|^~\\&|DEV|F|||20260302||ORU^R01|X1|P|2.5.1\rOBX|1|NM|2345-7^Glucose^LN||5.4|mmol/L|||||F\r\
OBR|1||S-1\rOBX|1|NM|CPEP||0.4|nmol/L|||||F\rSPM|1|^S-1||SER\rOBX|1|NM|TEMP^Specimen temperature||4|Cel|||||F\r";
    let m = single(data);
    let codes: Vec<Option<&str>> = m.results.iter().map(|r| r.test_code.as_deref()).collect();
    assert_eq!(codes, [Some("2345-7"), Some("CPEP")], "the orphan OBX is a result; the specimen OBX is not");
    assert_eq!(m.results[0].sample_id, None);
    assert!(m.warnings.iter().any(|w| w.text.contains("OBX before any OBR")), "{:?}", m.warnings);
    assert!(m.warnings.iter().any(|w| w.text.contains("describes the specimen")), "{:?}", m.warnings);
}

#[test]
fn oru_r30_to_r32_results_are_read_like_r01() {
    // ORU_R30 (point-of-care, R30/R31/R32): PID, optional OBX, then ORC, OBR, OBX.
    for event in ["R30", "R31", "R32", "R30^ORU_R30"] {
        let data = format!(
            "MSH|^~\\&|POC|F|||20260312||ORU^{event}|C|P|2.5.1\rPID|1||P-1\rORC|NW\rOBR|1||S-1|||20260312081200\rOBX|1|NM|GLU||5.4|mmol/L|||||F\r"
        );
        let m = single(data.as_bytes());
        assert_eq!(m.results.len(), 1, "{event}");
        assert_eq!(m.results[0].sample_id.as_deref(), Some("S-1"), "{event}");
        assert!(!has_warning(&m, "message type"), "{event}: {:?}", m.warnings);
    }
}

#[test]
fn a_message_type_that_is_not_read_is_an_error_naming_it_and_where() {
    for msh9 in ["ADT^A04", "OUL^R23", "ORU^W01", "OML^O21", "ACK^R01"] {
        let data = format!("MSH|^~\\&|L|F|||20260312||{msh9}|C|P|2.5.1\rPID|1||Lindqvist\rOBR|1||S\rOBX|1|NM|G||1\r");
        let e = error(data.as_bytes());
        assert_eq!(e.offset, position(data.as_bytes(), msh9.as_bytes()), "{msh9}");
        assert!(e.text.starts_with(&format!("MSH-9 message type {msh9} ")), "{msh9}: {}", e.text);
        assert!(e.text.contains("ORU^R01"), "names what is read: {}", e.text);
        assert!(!e.text.contains("Lindqvist"), "{}", e.text);
    }
    // The other messages of the file are still read.
    let file = format!(
        "{}MSH|^~\\&|L|F|||20260312||ADT^A08|A|P|2.5\rPID|1||X\r{}",
        String::from_utf8(with_head("OBX|1|NM|G||1\r")).unwrap(),
        String::from_utf8(with_head("OBX|1|NM|G||2\r")).unwrap()
    );
    let all = parse(file.as_bytes());
    assert_eq!(all.len(), 3);
    assert!(all[0].is_ok() && all[2].is_ok());
    assert!(all[1].as_ref().unwrap_err().text.contains("ADT^A08"));
}

#[test]
fn an_explicitly_null_reference_range_is_no_range() {
    let r = results(&with_head("OBX|1|NM|GLU||5.4|mmol/L|\"\"|N|||F\rOBX|2|NM|GLU||5.5|mmol/L| 3.9-6.1 |N|||F\r"));
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].reference_range, None);
    assert_eq!(r[1].reference_range.as_deref(), Some("3.9-6.1"));
}
