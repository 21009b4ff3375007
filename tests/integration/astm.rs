//! ASTM parser, end to end on the fixtures in `fixtures/astm/` (README there):
//! the corpus samples, the synthetic files, the conformance cases of astm.md §5
//! that apply to files, and property tests (framing never changes results,
//! escapes round-trip, no input panics).

use std::path::PathBuf;

use labfeed::astm::frame::{self, FrameEnd};
use labfeed::astm::record::{Delimiters, escape, read_header, unescape};
use labfeed::astm::{encode_frames, parse_file};
use labfeed::model::{Format, LabResult, MessageError, MessageOutcome, ParseOptions, ParsedMessage};
use labfeed::value::Comparator;
use proptest::prelude::*;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/astm")
}

fn fixture(name: &str) -> Vec<u8> {
    let path = fixture_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn all_fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixture_dir())
        .expect("fixtures/astm")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".astm") || n.ends_with(".frames"))
        .collect();
    names.sort();
    names
}

fn parse_with(bytes: &[u8], opts: ParseOptions) -> Vec<MessageOutcome> {
    let mut out = Vec::new();
    parse_file(bytes, &opts, &mut |m| out.push(m));
    out
}

fn parse(bytes: &[u8]) -> Vec<MessageOutcome> {
    parse_with(bytes, ParseOptions::default())
}

/// Every message of a fixture, which must all parse.
fn messages(name: &str) -> Vec<ParsedMessage> {
    parse(&fixture(name))
        .into_iter()
        .map(|m| m.unwrap_or_else(|e| panic!("{name}: message {} rejected: {}", e.number, e.text)))
        .collect()
}

fn results(name: &str) -> Vec<LabResult> {
    messages(name).into_iter().flat_map(|m| m.results).collect()
}

fn errors(outcomes: &[MessageOutcome]) -> Vec<&MessageError> {
    outcomes.iter().filter_map(|m| m.as_ref().err()).collect()
}

fn only_error(name: &str) -> MessageError {
    let outcomes = parse(&fixture(name));
    assert_eq!(outcomes.len(), 1, "{name}: {outcomes:?}");
    outcomes.into_iter().next().and_then(Result::err).unwrap_or_else(|| panic!("{name}: expected an error"))
}

/// Results without their offsets, which differ between a file and its framed twin.
fn content(results: &[LabResult]) -> Vec<LabResult> {
    results.iter().map(|r| LabResult { offset: 0, ..r.clone() }).collect()
}

fn num(r: &LabResult) -> Option<String> {
    r.numeric.as_ref().map(ToString::to_string)
}

fn iso(t: Option<labfeed::timestamp::Timestamp>) -> Option<String> {
    t.map(|t| t.to_iso())
}

/// Message text made into an E1381 session: ENQ, frames of `max` text bytes, EOT.
fn framed(text: &[u8], max: usize) -> Vec<u8> {
    let mut out = vec![frame::ENQ];
    for f in encode_frames(text, max) {
        out.extend(f);
    }
    out.push(frame::EOT);
    out
}

// ---------------------------------------------------------------- every fixture

#[test]
fn every_fixture_gives_numbered_outcomes_with_spans_and_offsets_inside_the_file() {
    for name in all_fixture_names() {
        let bytes = fixture(&name);
        let outcomes = parse(&bytes);
        assert!(!outcomes.is_empty(), "{name}: no outcome at all");
        let mut last_start = 0;
        for (i, o) in outcomes.iter().enumerate() {
            let (number, span) = match o {
                Ok(m) => (m.number, m.span.clone()),
                Err(e) => (e.number, e.span.clone()),
            };
            assert_eq!(number, i + 1, "{name}");
            assert!(span.start <= span.end && span.end <= bytes.len(), "{name}: span {span:?}");
            assert!(span.start >= last_start, "{name}: spans out of order");
            last_start = span.start;
            match o {
                Ok(m) => {
                    assert_eq!(m.format, Format::Astm);
                    for r in &m.results {
                        assert!(span.contains(&r.offset), "{name}: result offset {} outside {span:?}", r.offset);
                        assert!(r.patient_ids.iter().all(|p| !p.is_empty()), "{name}: an empty patient ID");
                        for text in [&r.sender, &r.sample_id, &r.test_code, &r.value, &r.unit]
                            .into_iter()
                            .chain([&r.flags, &r.status])
                        {
                            assert_ne!(text.as_deref(), Some(""), "{name}: Some(\"\") stored");
                        }
                        assert!(r.comments.iter().all(|c| !c.is_empty()), "{name}");
                    }
                    assert!(m.warnings.iter().all(|w| w.offset <= bytes.len()), "{name}");
                }
                Err(e) => {
                    assert!(e.offset <= bytes.len(), "{name}: offset {}", e.offset);
                    assert!(!e.text.is_empty() && !e.text.contains('\n'), "{name}: {:?}", e.text);
                }
            }
        }
    }
}

#[test]
fn result_offsets_point_at_the_r_record_or_at_the_frame_it_starts_in() {
    for name in ["roche-cobas-e411-upload-1.astm", "siemens-immulite-dpc-result.astm", "synthetic-mmtt-cobas-e411.astm"]
    {
        let bytes = fixture(name);
        for r in results(name) {
            assert_eq!(bytes.get(r.offset..r.offset + 2), Some(&b"R|"[..]), "{name} at {}", r.offset);
        }
    }
    for name in ["roche-cobas-e411-upload-1.frames", "siemens-immulite-dpc-result.frames", "synthetic-style-a.frames"] {
        let bytes = fixture(name);
        for r in results(name) {
            assert_eq!(bytes.get(r.offset), Some(&frame::STX), "{name} at {}", r.offset);
        }
    }
    // e411 upload-1: R|1 and R|2 start in frame 1 (R|2|^^ is split), R|3 and R|4 in frame 2 (offset 247).
    let offsets: Vec<usize> = results("roche-cobas-e411-upload-1.frames").iter().map(|r| r.offset).collect();
    assert_eq!(offsets, [0, 0, 247, 247]);
}

// ---------------------------------------------------------------- corpus samples

#[test]
fn cobas_e411_upload_1_maps_every_field() {
    let msgs = messages("roche-cobas-e411-upload-1.astm");
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert_eq!((m.sender.as_deref(), m.control_id.as_deref(), m.span.clone()), (Some("cobas-e411"), None, 0..384));
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    let r = &m.results;
    assert_eq!(r.len(), 4);
    let codes: Vec<_> = r.iter().map(|r| r.test_code.as_deref()).collect();
    assert_eq!(codes, [Some("117/1/not"), Some("900/1/not"), Some("880/1/not"), Some("136/1/not")]);
    let first = &r[0];
    assert_eq!(first.sender.as_deref(), Some("cobas-e411"));
    assert_eq!(first.sample_id.as_deref(), Some("801030-02-6026"));
    assert_eq!(first.patient_id(), None);
    assert_eq!((first.value.as_deref(), num(first), first.comparator), (Some("317.6"), Some("317.6".into()), None));
    assert_eq!(
        (first.unit.as_deref(), first.flags.as_deref(), first.status.as_deref()),
        (Some("IU/l"), Some("H"), Some("F"))
    );
    assert_eq!(first.comments, ["40"]);
    assert_eq!(iso(first.collected_at).as_deref(), Some("2018-07-30T14:38:55"));
    assert_eq!(first.resulted_at, None);
    assert!(!first.qc);
    assert_eq!(first.offset, 177);
    // Interpretation^cut-off index: kept whole, never a number.
    assert_eq!((r[1].value.as_deref(), num(&r[1]), r[1].comments.len()), (Some("-1^0.750"), None, 0));
}

#[test]
fn cobas_e411_upload_2_censored_value_keeps_comparator_and_bound() {
    let r = results("roche-cobas-e411-upload-2.astm");
    assert_eq!(r[0].value.as_deref(), Some("<2.00"));
    assert_eq!(r[0].comparator, Some(Comparator::Lt));
    assert_eq!(num(&r[0]).as_deref(), Some("2.00"));
    assert_eq!((r[0].flags.as_deref(), r[0].comments.clone()), (Some("LL"), vec!["27".to_owned()]));
    assert_eq!(r[0].sample_id.as_deref(), Some("880912-08-5309"));
}

#[test]
fn frames_files_give_the_same_results_as_their_astm_twins() {
    for stem in [
        "roche-cobas-e411-upload-1",
        "roche-cobas-e411-upload-2",
        "roche-cobas-c111",
        "roche-cobas-c311-senaite",
        "roche-h7600-qc",
        "abbott-architect-2012",
        "mindray-bs240",
        "snibe-maglumi-x3-simplified",
        "snibe-maglumi-2000-simplified",
        "siemens-immulite-dpc-result",
        "siemens-immulite-dpc-query",
        "twgenaux-lis01-example",
        "synthetic-mmtt-cobas-e411",
    ] {
        let plain = messages(&format!("{stem}.astm"));
        let framed = messages(&format!("{stem}.frames"));
        assert_eq!(plain.len(), framed.len(), "{stem}");
        for (a, b) in plain.iter().zip(&framed) {
            assert_eq!(content(&a.results), content(&b.results), "{stem}");
            assert_eq!((&a.sender, &a.control_id), (&b.sender, &b.control_id), "{stem}");
        }
    }
}

#[test]
fn architect_two_messages_in_one_file_are_reported_separately() {
    let msgs = messages("abbott-architect-i-two-messages.astm");
    assert_eq!(msgs.len(), 2);
    assert_eq!((msgs[0].number, msgs[1].number), (1, 2));
    assert_eq!((msgs[0].span.clone(), msgs[1].span.clone()), (0..510, 510..902));
    let samples: Vec<_> = msgs.iter().map(|m| m.results[0].sample_id.clone()).collect();
    assert_eq!(samples, [Some("276056250158121".into()), Some("AA5XVA2BT9".into())]);
    assert_eq!(msgs[0].results.len(), 3);
    assert_eq!(msgs[0].results[1].value.as_deref(), Some("Nonreactive"));
    assert_eq!(msgs[0].results[1].numeric, None);
    assert_eq!(msgs[0].results[0].status.as_deref(), Some("R"));
    assert_eq!(iso(msgs[1].results[0].resulted_at).as_deref(), Some("2025-06-13T11:01:14"));
}

#[test]
fn immulite_26_frames_with_7_to_1_wraps_six_patients_and_no_escape_character() {
    let msgs = messages("siemens-immulite-dpc-result.frames");
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    let wraps: Vec<_> = m.warnings.iter().filter(|w| w.text.contains("frame number 1 after 7")).collect();
    assert_eq!(wraps.len(), 3, "{:?}", m.warnings);
    let r = &m.results;
    assert_eq!(r.len(), 9);
    let mut patients: Vec<_> = r.iter().filter_map(|r| r.patient_id().map(str::to_owned)).collect();
    patients.dedup();
    assert_eq!(patients, ["119813;TGH", "325031;AH", "326829;AH", "124462;TGH", "556395;AH", "556357;MB"]);
    let fer = &r[2];
    assert_eq!((fer.sample_id.as_deref(), fer.test_code.as_deref()), (Some("130000617"), Some("FER")));
    assert_eq!((fer.value.as_deref(), num(fer).as_deref()), (Some("173."), Some("173")));
    assert_eq!(iso(fer.collected_at).as_deref(), Some("1995-01-18T10:30:00"));
    assert_eq!(iso(fer.resulted_at).as_deref(), Some("1995-01-19T09:28:58"));
    assert_eq!(m.sender.as_deref(), Some("DPC"));
}

#[test]
fn h7600_qc_is_flagged_and_the_etb_split_inside_r14_is_seamless() {
    let r = results("roche-h7600-qc.frames");
    assert_eq!(r.len(), 5);
    assert!(r.iter().all(|r| r.qc && r.sample_id.as_deref() == Some("PCCC2") && r.status.is_none()));
    assert_eq!(r[0].comments, ["101"], "the C record after R|1 follows the split frame");
    assert_eq!(content(&r), content(&results("roche-h7600-qc.astm")));
}

#[test]
fn yumizen_qc_is_flagged_by_the_header_processing_id() {
    let r = results("synthetic-yumizen-qc-complete.astm");
    assert_eq!(r.len(), 1);
    assert!(r[0].qc);
    assert_eq!(r[0].comments, ["CONTROL_FAILED^^PLT_ABOVE_TOLERANCE"]);
    // The corpus excerpt (H, O, C only) has no L record: broken, not an empty success.
    let e = only_error("horiba-yumizen-h500-qc-records.astm");
    assert_eq!(e.text, "message has no L record: expected L|1 before the end of the file");
    assert_eq!((e.offset, e.span.clone()), (188, 0..188));
}

#[test]
fn genexpert_and_selectra_headers_declare_their_own_delimiters() {
    let genexpert = fixture("cepheid-genexpert-header.astm");
    assert_eq!(read_header(&genexpert).map(|h| h.delimiters), Ok(Delimiters::GENEXPERT));
    let selectra = fixture("elitech-selectra-records.astm");
    assert_eq!(read_header(&selectra).map(|h| h.delimiters), Ok(Delimiters::SELECTRA));
    let immulite = fixture("siemens-immulite-dpc-result.astm");
    assert_eq!(read_header(&immulite).map(|h| h.delimiters), Ok(Delimiters::NO_ESCAPE));
    // The excerpts stop before L: reported as broken messages.
    for name in ["cepheid-genexpert-header.astm", "elitech-selectra-records.astm", "roche-cobas6000-header.astm"] {
        assert!(only_error(name).text.starts_with("message has no L record"), "{name}");
    }
}

#[test]
fn maglumi_simplified_envelope_is_accepted_with_a_warning() {
    for stem in ["snibe-maglumi-x3-simplified", "snibe-maglumi-2000-simplified"] {
        let msgs = messages(&format!("{stem}.frames"));
        assert_eq!(msgs.len(), 1);
        assert!(msgs[0].warnings.iter().any(|w| w.text.contains("without frame number or checksum")), "{stem}");
    }
    let r = results("snibe-maglumi-2000-simplified.frames");
    let codes: Vec<_> = r.iter().filter_map(|r| r.test_code.clone()).collect();
    assert_eq!(codes, ["TT3 II", "TT4 II", "TSH II"]);
    assert_eq!(r[0].sender.as_deref(), Some("Maglumi User"));
    assert_eq!(iso(r[2].resulted_at).as_deref(), Some("2025-06-30T15:20:21"));
    let x3 = results("snibe-maglumi-x3-simplified.frames");
    assert_eq!(x3[0].sample_id.as_deref(), Some("<sample-id>"));
}

#[test]
fn mindray_whole_message_in_one_frame_with_code_in_component_1() {
    let msgs = messages("mindray-bs240.frames");
    assert_eq!((msgs.len(), msgs[0].span.clone()), (1, 1..467));
    let r = &msgs[0].results;
    assert_eq!(r.len(), 2);
    assert_eq!((r[0].test_code.as_deref(), r[0].value.as_deref()), (Some("CREAS"), Some("3.216365")));
    assert_eq!(num(&r[0]).as_deref(), Some("3.216365"));
    // O.3 holds a position (`8^^`): component 1 is the sample ID as the SPEC maps it.
    assert_eq!(r[0].sample_id.as_deref(), Some("8"));
    assert_eq!(r[1].test_code.as_deref(), Some("UREA"));
    assert_eq!(r[0].sender.as_deref(), Some("Mindry"));
}

#[test]
fn bad_checksum_file_is_an_error_naming_both_checksums() {
    let e = only_error("pafirmin-go-astm-bad-checksum.frames");
    assert_eq!(e.text, "bad checksum in frame 1 (FN 1): sent 55, computed 09");
    assert_eq!((e.offset, e.span.clone()), (0, 0..16));
}

#[test]
fn malformed_query_frame_without_etx_or_checksum_is_an_error() {
    let e = only_error("roche-cobas-e411-query-malformed.frames");
    assert_eq!(
        e.text,
        "frame 1 has no end: expected ETB or ETX, a checksum and CR LF after the text, found the end of the file"
    );
    assert_eq!(e.offset, 0);
}

#[test]
fn utf8_and_shift_jis_patient_frames_verify_and_decode() {
    for name in ["twgenaux-patient-utf8.frames", "twgenaux-patient-shiftjis.frames"] {
        let bytes = fixture(name);
        let (rest, f) = frame::frame(&bytes).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert!(rest.is_empty() && f.verifies(), "{name}");
        assert_eq!(f.number, 2);
        // Alone, the P frame is outside any message.
        assert!(only_error(name).text.contains("expected a header record H"), "{name}");
        // Inside a message it parses: UTF-8 as is, Shift-JIS through the Windows-1252 fallback.
        let mut file = frame::encode_frame(1, b"H|\\^&|||Mini LIS\r", FrameEnd::Last);
        file.extend_from_slice(&bytes);
        file.extend(frame::encode_frame(3, b"O|1|SID1\rR|1|^^^GLU|5.0\rL|1|N\r", FrameEnd::Last));
        let outcomes = parse(&file);
        let m = outcomes[0].as_ref().unwrap_or_else(|e| panic!("{name}: {}", e.text));
        assert_eq!(m.results[0].patient_id(), Some("666"));
        let fallback = m.warnings.iter().any(|w| w.text.contains("Windows-1252"));
        assert_eq!(fallback, name.contains("shiftjis"), "{name}: {:?}", m.warnings);
    }
}

#[test]
fn pentra_dashes_are_a_value_but_never_a_number() {
    let e = only_error("horiba-pentra-xlr-result-record.astm");
    assert_eq!(e.text, "expected a header record H before any other record, found 'R'");
    let mut file = b"H|\\^&|||Pentra XLR\rP|1\rO|1|S-1\r".to_vec();
    file.extend(fixture("horiba-pentra-xlr-result-record.astm"));
    file.extend(b"L|1|N\r");
    let outcomes = parse(&file);
    let r = &outcomes[0].as_ref().expect("complete message").results[0];
    assert_eq!((r.value.as_deref(), r.numeric.as_ref(), r.comparator), (Some("-----"), None, None));
    assert_eq!(
        (r.test_code.as_deref(), r.status.as_deref(), r.flags.as_deref()),
        (Some("BAS#"), Some("X"), Some("HH"))
    );
}

#[test]
fn cobas_c111_and_c311_and_8000_sample_ids() {
    let c111 = results("roche-cobas-c111.frames");
    assert_eq!(c111.len(), 1);
    assert_eq!(c111[0].sample_id.as_deref(), Some("T20 10134GA D28"), "O.3 empty: O.4 component 1");
    assert!(c111[0].comments.is_empty(), "C|1|I||I carries no text");
    let c311 = results("roche-cobas-c311-senaite.astm");
    assert_eq!(c311.len(), 7);
    assert!(c311.iter().all(|r| r.sample_id.as_deref() == Some("11625")));
    assert_eq!(c311[0].comments, ["43"]);
    let mut file = fixture("roche-cobas8000-records.astm");
    file.extend(b"R|1|^^^250|12|U/l||N||F\rL|1|N\r");
    let outcomes = parse(&file);
    let r = &outcomes[0].as_ref().expect("completed message").results[0];
    assert_eq!(r.sample_id.as_deref(), Some("P110055695"), "left-padded O.3 is trimmed");
    assert_eq!(r.sender.as_deref(), Some("host"));
}

#[test]
fn queries_and_order_downloads_parse_without_results() {
    for name in [
        "roche-cobas-e411-query.astm",
        "siemens-immulite-dpc-query.frames",
        "roche-cobas-e411-order-reply-manual.astm",
        "twgenaux-lis01-example.frames",
    ] {
        let msgs = messages(name);
        assert_eq!(msgs.len(), 1, "{name}");
        assert!(msgs[0].results.is_empty(), "{name}");
    }
}

// ---------------------------------------------------------------- synthetic MMTT upload

#[test]
fn mmtt_upload_gives_c_peptide_and_glucose_per_timepoint() {
    let r = results("synthetic-mmtt-cobas-e411.frames");
    assert_eq!(r.len(), 4);
    let rows: Vec<_> = r
        .iter()
        .map(|r| (r.sample_id.as_deref(), r.test_code.as_deref(), r.value.as_deref(), num(r), r.comparator))
        .collect();
    assert_eq!(
        rows,
        [
            (Some("U07-V4-T000"), Some("CPEP/1/not"), Some("<0.010"), Some("0.010".into()), Some(Comparator::Lt)),
            (Some("U07-V4-T000"), Some("GLUC/1/not"), Some("5.4"), Some("5.4".into()), None),
            (Some("U07-V4-T030"), Some("CPEP/1/not"), Some("0.452"), Some("0.452".into()), None),
            (Some("U07-V4-T030"), Some("GLUC/1/not"), Some("9.8"), Some("9.8".into()), None),
        ]
    );
    assert!(r.iter().all(|r| r.patient_id() == Some("U07") && !r.qc));
    assert_eq!(iso(r[2].collected_at).as_deref(), Some("2026-03-02T09:15:00"));
    assert_eq!(iso(r[3].resulted_at).as_deref(), Some("2026-03-02T10:09:10"));
    assert_eq!(r[0].comments, ["27"]);
}

#[test]
fn parse_bytes_dispatches_astm_and_skips_a_bom() {
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend(fixture("erba-xl200-simulator-unframed.astm"));
    let mut out = Vec::new();
    let format = labfeed::parse::parse_bytes(&bytes, &ParseOptions::default(), &mut |m| out.push(m));
    assert_eq!(format, Some(Format::Astm));
    let m = out[0].as_ref().expect("erba parses");
    assert_eq!(m.span, 3..75);
    assert_eq!((m.results[0].value.as_deref(), m.results[0].unit.as_deref()), (Some("142"), Some("mg/dL")));
    assert_eq!(m.results[0].offset, 39);
}

// ---------------------------------------------------------------- astm.md §5 conformance cases

#[test]
fn case_09_etb_splits_mid_field_after_fn_and_inside_an_escape_change_nothing() {
    let whole = results("synthetic-style-d.frames");
    let split = results("synthetic-awkward-splits.frames");
    assert_eq!(content(&split), content(&whole));
    assert_eq!(whole.len(), 2);
    // e411: R.3 split as `R|2|^^` / `^900/1/not` and as `R|2|^` / `^^900/1/not`.
    assert_eq!(results("roche-cobas-e411-upload-1.frames")[1].test_code.as_deref(), Some("900/1/not"));
    assert_eq!(results("roche-cobas-e411-upload-2.frames")[1].test_code.as_deref(), Some("900/1/not"));
}

#[test]
fn case_10_framing_styles_a_c_and_d_give_the_same_results() {
    let a = results("synthetic-style-a.frames");
    let c = results("synthetic-style-c.frames");
    let d = results("synthetic-style-d.frames");
    assert_eq!(content(&a), content(&c));
    assert_eq!(content(&a), content(&d));
    assert_eq!(a[0].comments, ["0"]);
    assert_eq!(results("roche-cobas-c111.frames").len(), 1);
}

#[test]
fn case_11_missing_cr_before_etx_and_lf_or_crlf_record_ends() {
    assert_eq!(content(&results("synthetic-no-cr-before-etx.frames")), content(&results("synthetic-style-a.frames")));
    let cr = results("erba-xl200-simulator-unframed.astm");
    for name in ["synthetic-crlf.astm", "synthetic-lf.astm"] {
        let msgs = messages(name);
        assert_eq!(msgs[0].results.len(), 1, "{name}");
        assert_eq!(msgs[0].results[0].value.as_deref(), Some("5.1"));
        assert!(msgs[0].warnings.iter().any(|w| w.text.contains("LF")), "{name}");
    }
    assert!(!cr.is_empty());
    // LF CR is tolerated too.
    let lfcr = b"H|\\^&|||x\n\rP|1\n\rO|1|S\n\rR|1|^^^G|1\n\rL|1|N\n\r";
    let outcomes = parse(lfcr);
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].as_ref().map(|m| m.results.len()).ok(), Some(1));
}

#[test]
fn case_13_lowercase_checksum_is_accepted_with_a_warning() {
    let m = &messages("synthetic-link-quirks.frames")[0];
    assert!(m.warnings.iter().any(|w| w.text.contains("lowercase")), "{:?}", m.warnings);
    let mut lower = frame::encode_frame(1, b"H|\\^&\rL|1|N\r", FrameEnd::Last);
    let n = lower.len();
    let digits = lower.get_mut(n - 4..n - 2).expect("checksum digits");
    assert!(digits.iter().any(u8::is_ascii_alphabetic), "pick a text whose checksum has a hex letter");
    digits.make_ascii_lowercase();
    let outcomes = parse(&lower);
    assert!(outcomes[0].as_ref().is_ok_and(|m| m.warnings.iter().any(|w| w.text.contains("lowercase"))));
}

#[test]
fn case_14_eight_bit_text_latin1_falls_back_to_windows_1252() {
    let m = &messages("synthetic-latin1-unit.astm")[0];
    assert_eq!(m.results[0].unit.as_deref(), Some("µmol/L"));
    assert_eq!(m.results[0].comments, ["Prüfung ok"]);
    assert!(m.warnings.iter().any(|w| w.text == "message is not valid UTF-8: decoded as Windows-1252"));
    // The same message in UTF-8 needs no fallback.
    let utf8 = String::from_utf8_lossy(&fixture("synthetic-latin1-unit.astm")).replace('\u{FFFD}', "µ");
    let m = &parse(utf8.as_bytes())[0];
    assert!(m.as_ref().is_ok_and(|m| m.warnings.is_empty() && m.results[0].unit.as_deref() == Some("µmol/L")));
}

#[test]
fn case_15_each_message_uses_its_own_headers_delimiters() {
    let msgs = messages("synthetic-custom-delimiters.astm");
    assert_eq!(msgs.len(), 4);
    let genexpert = &msgs[0].results[0];
    assert_eq!((msgs[0].sender.as_deref(), msgs[0].control_id.as_deref()), (Some("GeneXpert"), Some("CTL-1")));
    assert_eq!((genexpert.sample_id.as_deref(), genexpert.test_code.as_deref()), (Some("U09-V2-T000"), Some("CPEP")));
    assert_eq!(genexpert.comments, ["lot^A12\\lot@B34"], "repeats joined with \\, \\S\\ and \\R\\ decoded");
    let selectra = &msgs[1].results[0];
    assert_eq!((selectra.test_code.as_deref(), selectra.patient_id()), (Some("GLUC"), Some("12345677")));
    assert_eq!(selectra.comments, ["see!note|two\\three~"]);
    assert_eq!(iso(selectra.collected_at).as_deref(), Some("2026-03-02T08:15:00"));
    let immulite = &msgs[2].results[0];
    assert_eq!(immulite.value.as_deref(), Some("0.88&F&"), "no escape character: & is text");
    assert_eq!(immulite.numeric, None);
    assert_eq!(msgs[3].results[0].sample_id.as_deref(), Some("U09-V2-T060"));
}

#[test]
fn case_16_escape_sequences_decoded_or_kept_with_a_warning() {
    let m = &messages("synthetic-escapes.astm")[0];
    assert_eq!(m.sender.as_deref(), Some("esc|test"));
    let r = &m.results;
    assert_eq!(r[0].sample_id.as_deref(), Some("SID^303"));
    assert_eq!(
        (r[0].test_code.as_deref(), r[0].value.as_deref(), r[0].unit.as_deref()),
        (Some("A&B"), Some("12|5"), Some("mg^dL"))
    );
    assert_eq!(r[0].comments, ["line1&X0D0A&line2 &Q& &H&bold&N& &Zvendor& tail&F"]);
    assert_eq!(r[1].flags.as_deref(), Some("&Q&"));
    let kept: Vec<&str> = m.warnings.iter().map(|w| w.text.as_str()).collect();
    for seq in ["&X0D0A&", "&Q&", "&H&", "&N&", "&Zvendor&"] {
        assert!(kept.iter().any(|w| w.contains(seq) && w.contains("kept as sent")), "{seq}: {kept:?}");
    }
    assert!(kept.iter().any(|w| w.starts_with("unterminated escape sequence \"&F\"")), "{kept:?}");
}

#[test]
fn case_17_empty_trailing_and_omitted_fields() {
    let text = b"H|\\^&\rP|1\rO|1|S-17\rR|1|^^^GLU|95|mg/dL|\rR|2|CPEP^C-Peptide^^F|\"\"\rR|3|^^^CPEP\rL|1\r";
    let outcomes = parse(text);
    let m = outcomes[0].as_ref().expect("parses");
    assert_eq!((m.sender.clone(), m.control_id.clone()), (None, None));
    let r = &m.results;
    assert_eq!(
        (r[0].test_code.as_deref(), r[0].value.as_deref(), r[0].unit.as_deref()),
        (Some("GLU"), Some("95"), Some("mg/dL"))
    );
    assert_eq!((r[0].flags.clone(), r[0].status.clone(), r[0].sample_id.as_deref()), (None, None, Some("S-17")));
    assert_eq!((r[1].test_code.as_deref(), r[1].value.as_deref()), (Some("CPEP"), Some("\"\"")), "\"\" kept as sent");
    assert_eq!((r[2].test_code.as_deref(), r[2].value.clone(), r[2].unit.clone()), (Some("CPEP"), None, None));
}

#[test]
fn case_18_repeats_and_components() {
    let text = b"H|\\^&\rP|1\rO|1|S-18\\ALT||^^^117^1\\^^^900^1\rR|1|^^^X|1\\2^^\\|u\\v|1.0 to 2\rM|1|CLEANER\\DILUENT\\LYSE\rL|1\r";
    let outcomes = parse(text);
    let r = &outcomes[0].as_ref().expect("parses").results[0];
    assert_eq!(r.sample_id.as_deref(), Some("S-18"), "first repeat of O.3");
    assert_eq!(r.value.as_deref(), Some("1\\2"), "repeats joined with \\, trailing empties dropped");
    assert_eq!((r.numeric.clone(), r.unit.as_deref()), (None, Some("u\\v")));
    // IMMULITE ranges with repeats inside components are in R.6, not mapped; the rest still parses.
    assert_eq!(results("siemens-immulite-dpc-result.astm")[0].unit.as_deref(), Some("ug/dL"));
}

#[test]
fn case_19_several_messages_and_patients_and_free_sequence_numbers() {
    assert_eq!(messages("abbott-architect-i-two-messages.astm").len(), 2);
    let samples: Vec<_> = results("siemens-immulite-dpc-result.astm").into_iter().filter_map(|r| r.sample_id).collect();
    assert_eq!(samples.len(), 9);
    assert_eq!(samples.iter().filter(|s| *s == "130000724").count(), 3);
    // Mindray: P|476, R|162, L|475 are accepted.
    assert_eq!(results("mindray-bs240.astm").len(), 2);
}

#[test]
fn case_20_value_zoo_never_invents_a_number() {
    let r = results("synthetic-value-zoo.astm");
    let rows: Vec<_> = r.iter().map(|r| (r.value.as_deref(), r.comparator.map(|c| c.as_str()), num(r))).collect();
    assert_eq!(
        rows,
        [
            (Some("<0.010"), Some("<"), Some("0.010".into())),
            (Some("<2.00"), Some("<"), Some("2.00".into())),
            (Some("> 15000.00"), Some(">"), Some("15000.00".into())),
            (Some(">8"), Some(">"), Some("8".into())),
            (Some("7,41"), None, None),
            (Some("173."), None, Some("173".into())),
            (Some("-----"), None, None),
            (Some("-1^0.750"), None, None),
            (Some("2.837141"), None, Some("2.837141".into())),
            (Some("Nonreactive"), None, None),
            (None, None, None),
            (None, None, None),
        ]
    );
    let comma = parse_with(
        &fixture("synthetic-decimal-comma.astm"),
        ParseOptions { decimal_comma: true, ..ParseOptions::default() },
    );
    let r = &comma[0].as_ref().expect("parses").results;
    let numbers: Vec<_> = r.iter().map(num).collect();
    assert_eq!(numbers, [Some("1.27".into()), Some("7.41".into()), Some("8".into())]);
    assert_eq!(r[1].value.as_deref(), Some("7,41"), "the value stays as sent");
    let without: Vec<_> = results("synthetic-decimal-comma.astm").iter().map(num).collect();
    assert_eq!(without, [None, None, Some("8".into())]);
}

#[test]
fn case_21_qc_by_order_action_code_or_header_processing_id() {
    let msgs = messages("synthetic-qc.astm");
    let qc: Vec<_> = msgs.iter().flat_map(|m| &m.results).map(|r| (r.sample_id.as_deref(), r.qc)).collect();
    assert_eq!(qc, [(Some("PCCC1"), true), (Some("U11-V1-T000"), false), (Some("PX440N"), true)]);
    assert!(results("roche-h7600-qc.astm").iter().all(|r| r.qc));
    assert!(results("synthetic-mmtt-cobas-e411.astm").iter().all(|r| !r.qc));
}

// ---------------------------------------------------------------- broken input

#[test]
fn each_broken_message_is_reported_and_the_rest_still_parses() {
    let outcomes = parse(&fixture("synthetic-broken-messages.astm"));
    let summary: Vec<(usize, Result<usize, String>)> = outcomes
        .iter()
        .map(|o| match o {
            Ok(m) => (m.number, Ok(m.results.len())),
            Err(e) => (e.number, Err(e.text.clone())),
        })
        .collect();
    let err = |t: &str| Err(t.to_owned());
    assert_eq!(
        summary,
        [
            (1, err("expected a header record H before any other record, found 'R'")),
            (2, Ok(1)),
            (3, err("result record before any order record")),
            (4, err("expected a record type H, P, O, R, C, Q, M, S or L, found 'X'")),
            (
                5,
                err(
                    "O.8 collection time: expected YYYYMMDD[HHMMSS][+HHMM], found 14 bytes (not shown) that are not a date"
                )
            ),
            (
                6,
                err(
                    "R.13 result time: expected YYYYMMDD[HHMMSS][+HHMM], found 10 bytes (not shown) that are not a date"
                )
            ),
            (7, err("message has no L record: expected L|1 before the next H record")),
            (8, err("H.2 delimiter definition: expected four different delimiters, found '^' twice")),
            (9, Ok(1)),
            (10, err("message has no L record: expected L|1 before the end of the file")),
        ]
    );
    let bytes = fixture("synthetic-broken-messages.astm");
    let e = errors(&outcomes);
    // Offsets point at the record that is wrong; spans cover the message.
    assert_eq!(bytes.get(e[1].offset), Some(&b'R'));
    assert_eq!(bytes.get(e[2].offset), Some(&b'X'));
    assert_eq!(bytes.get(e[3].span.start..e[3].span.start + 2), Some(&b"H|"[..]));
    assert_eq!(e[7].offset, bytes.len());
}

#[test]
fn bad_checksum_breaks_only_the_message_it_carried() {
    let bytes = fixture("synthetic-bad-checksum-between-good.frames");
    let outcomes = parse(&bytes);
    assert_eq!(outcomes.len(), 3);
    assert_eq!(outcomes[0].as_ref().map(|m| m.results[0].sample_id.clone()).ok(), Some(Some("U13-V1-T000".into())));
    assert_eq!(outcomes[2].as_ref().map(|m| m.results[0].sample_id.clone()).ok(), Some(Some("U13-V1-T030".into())));
    let e = outcomes[1].as_ref().expect_err("middle message broken");
    assert!(e.text.starts_with("bad checksum in frame 4 (FN 2): sent "), "{}", e.text);
    assert_eq!(bytes.get(e.offset), Some(&frame::STX));
    assert!(e.span.contains(&e.offset));
}

#[test]
fn a_bad_frame_shared_by_two_messages_breaks_both() {
    let one = b"H|\\^&\rP|1\rO|1|A\rR|1|^^^G|1\rL|1|N\r";
    let two = b"H|\\^&\rP|1\rO|1|B\rR|1|^^^G|2\rL|1|N\r";
    let three = b"H|\\^&\rP|1\rO|1|C\rR|1|^^^G|3\rL|1|N\r";
    let text = [&one[..], two, three].concat();
    let mut bytes = frame::encode_frame(1, text.get(..20).unwrap_or_default(), FrameEnd::Intermediate);
    let mut middle = frame::encode_frame(2, text.get(20..45).unwrap_or_default(), FrameEnd::Intermediate);
    if let Some(b) = middle.get_mut(5) {
        *b ^= 1;
    }
    bytes.extend(middle);
    bytes.extend(frame::encode_frame(3, text.get(45..).unwrap_or_default(), FrameEnd::Last));
    let outcomes = parse(&bytes);
    let ok: Vec<bool> = outcomes.iter().map(Result::is_ok).collect();
    assert_eq!(ok, [false, false, true], "frame 2 carried the end of message 1 and the start of message 2");
}

#[test]
fn session_cut_after_an_etb_frame_is_an_error_and_the_next_session_parses() {
    let outcomes = parse(&fixture("synthetic-eot-mid-message.frames"));
    assert_eq!(outcomes.len(), 2);
    let e = outcomes[0].as_ref().expect_err("cut session");
    assert_eq!(
        e.text,
        "session ended (EOT) after frame 1 (FN 1) ended with ETB: expected a last frame ending with ETX"
    );
    assert!(outcomes[1].is_ok());
    // EOT after a complete frame but before L.
    let mut bytes = vec![frame::ENQ];
    bytes.extend(frame::encode_frame(1, b"H|\\^&\rP|1\r", FrameEnd::Last));
    bytes.push(frame::EOT);
    let e = parse(&bytes).into_iter().next().and_then(Result::err).expect("error");
    assert_eq!((e.text.as_str(), e.offset), ("session ended (EOT) before the message's L record", bytes.len() - 1));
}

#[test]
fn link_quirks_nak_retransmission_duplicates_and_missing_trailer_are_tolerated() {
    let m = &messages("synthetic-link-quirks.frames")[0];
    let codes: Vec<_> = m.results.iter().filter_map(|r| r.test_code.clone()).collect();
    assert_eq!(codes, ["T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8", "T9"], "nothing lost, nothing doubled");
    let warnings: Vec<&str> = m.warnings.iter().map(|w| w.text.as_str()).collect();
    for expected in ["replaces frame", "repeats the frame before it (lost ACK), skipped", "lowercase", "expected CR LF"]
    {
        assert!(warnings.iter().any(|w| w.contains(expected)), "{expected}: {warnings:?}");
    }
    // A frame number gap is a lost frame: an error, not a warning.
    let mut bytes = frame::encode_frame(1, b"H|\\^&\rP|1\rO|1|A\r", FrameEnd::Last);
    bytes.extend(frame::encode_frame(3, b"R|1|^^^G|1\rL|1|N\r", FrameEnd::Last));
    let e = parse(&bytes).into_iter().next().and_then(Result::err).expect("gap");
    assert_eq!(e.text, "frame 2: frame number 3 out of sequence, expected 2 (a frame may be missing)");
}

#[test]
fn stray_bytes_alone_are_reported_not_ignored() {
    let outcomes = parse(b"\x05garbage\x04");
    assert_eq!(outcomes.len(), 1);
    assert!(outcomes[0].as_ref().is_err_and(|e| e.text.contains("found 7 bytes of other data")));
    assert!(parse(b"\x05\x04\x05\x04").is_empty(), "empty sessions (keepalives) are nothing");
}

// ---------------------------------------------------------------- properties

fn framed_equals_plain(text: &[u8], max: usize) {
    let plain = parse(text);
    let split = parse(&framed(text, max));
    assert_eq!(plain.len(), split.len(), "max {max}");
    for (a, b) in plain.iter().zip(&split) {
        match (a, b) {
            (Ok(a), Ok(b)) => assert_eq!(content(&a.results), content(&b.results), "max {max}"),
            (Err(a), Err(b)) => assert_eq!(a.text, b.text, "max {max}"),
            _ => panic!("max {max}: {a:?} vs {b:?}"),
        }
    }
}

#[test]
fn frames_of_every_size_from_1_to_240_reassemble_the_same_records() {
    for name in ["roche-cobas-e411-upload-1.astm", "synthetic-mmtt-cobas-e411.astm", "synthetic-escapes.astm"] {
        let text = fixture(name);
        for max in 1..=240 {
            framed_equals_plain(&text, max);
        }
    }
}

/// Text for one component: printable ASCII and some Latin-1/UTF-8, delimiters included
/// (they get escaped), never CR or LF.
fn leaf() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            0x20u8..0x7F,
            Just(0xB5),
            Just(b'|'),
            Just(b'^'),
            Just(b'&'),
            Just(b'\\'),
            Just(b'@'),
            Just(b'!'),
            Just(b'~')
        ],
        0..12,
    )
}

fn delimiter_sets() -> impl Strategy<Value = Delimiters> {
    prop_oneof![Just(Delimiters::STANDARD), Just(Delimiters::GENEXPERT), Just(Delimiters::SELECTRA)]
}

/// A message with escaped random leaves in the mapped fields (bytes, so Latin-1 stays Latin-1).
fn message_text(d: &Delimiters, leaves: &[Vec<u8>]) -> Vec<u8> {
    let [f, r, c] = [d.field, d.repeat, d.component];
    let e = d.escape.unwrap_or(b'&');
    let esc = |i: usize| escape(leaves.get(i).map_or(&[][..], Vec::as_slice), d).unwrap_or_default();
    let mut out = vec![b'H', f, r, c, e, f, f, f];
    out.extend(esc(0));
    out.extend([c, b'1', b'\r', b'P', f, b'1', f, f]);
    out.extend(esc(1));
    out.extend([b'\r', b'O', f, b'1', f]);
    out.extend(esc(2));
    out.extend([f, f, c, c, c, b'X', b'\r', b'R', f, b'1', f, c, c, c]);
    out.extend(esc(3));
    out.push(f);
    out.extend(esc(4));
    out.push(f);
    out.extend(esc(5));
    out.extend([b'\r', b'C', f, b'1', f, b'I', f]);
    out.extend(esc(6));
    out.extend([b'\r', b'L', f, b'1', b'\r']);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn random_messages_framed_at_any_size_give_the_same_results(
        d in delimiter_sets(),
        leaves in proptest::collection::vec(leaf(), 7),
        max in 1usize..=240,
    ) {
        framed_equals_plain(&message_text(&d, &leaves), max);
    }

    #[test]
    fn escaped_leaves_come_back_decoded(d in delimiter_sets(), leaves in proptest::collection::vec(leaf(), 7)) {
        let outcomes = parse(&message_text(&d, &leaves));
        let m = outcomes.first().and_then(|o| o.as_ref().ok());
        prop_assert!(m.is_some(), "{:?}", outcomes);
        let r = m.and_then(|m| m.results.first());
        // Latin-1 anywhere in the message switches all of it to Windows-1252.
        let latin1 = leaves.iter().any(|l| std::str::from_utf8(l).is_err());
        let text = |i: usize| {
            let raw = leaves.get(i).cloned().unwrap_or_default();
            if latin1 {
                encoding_rs::WINDOWS_1252.decode_without_bom_handling(&raw).0.into_owned()
            } else {
                String::from_utf8_lossy(&raw).into_owned()
            }
        };
        let blank = |t: &str| t.trim_matches(|c: char| c.is_ascii_whitespace()).is_empty();
        let expect = |i: usize| {
            let t = text(i).trim_matches(|c: char| c.is_ascii_whitespace()).to_owned();
            (!t.is_empty()).then_some(t)
        };
        let value = |i: usize| Some(text(i)).filter(|t| !blank(t));
        prop_assert_eq!(r.and_then(|r| r.patient_id().map(str::to_owned)), expect(1));
        prop_assert_eq!(r.and_then(|r| r.sample_id.clone()), expect(2));
        prop_assert_eq!(r.and_then(|r| r.value.clone()), value(4));
        prop_assert_eq!(r.and_then(|r| r.unit.clone()), expect(5));
        prop_assert_eq!(r.map(|r| r.comments.clone()).unwrap_or_default(), expect(6).into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn escape_then_unescape_is_the_identity(
        d in prop_oneof![Just(Delimiters::STANDARD), Just(Delimiters::GENEXPERT), Just(Delimiters::SELECTRA), Just(Delimiters::NO_ESCAPE)],
        text in proptest::collection::vec(any::<u8>().prop_filter("no record ends", |b| *b != b'\r' && *b != b'\n'), 0..64),
    ) {
        match escape(&text, &d) {
            Some(encoded) => {
                for delim in [d.field, d.repeat, d.component] {
                    prop_assert!(!encoded.contains(&delim));
                }
                let mut kept = Vec::new();
                prop_assert_eq!(unescape(&encoded, &d, &mut kept).into_owned(), text);
                prop_assert!(kept.is_empty());
            }
            None => prop_assert!(d.escape.is_none() && text.iter().any(|b| [d.field, d.repeat, d.component].contains(b))),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_outcomes_are_well_formed(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        check_well_formed(&bytes);
    }

    #[test]
    fn mutated_fixtures_never_panic(
        index in 0usize..1000,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let names = all_fixture_names();
        let name = names.get(index % names.len()).cloned().unwrap_or_default();
        let mut bytes = fixture(&name);
        for (at, byte, kind) in edits {
            let at = at % (bytes.len() + 1);
            match kind {
                0 => bytes.insert(at, byte),
                1 if at < bytes.len() => { bytes.remove(at); }
                _ => if let Some(b) = bytes.get_mut(at) { *b = byte; },
            }
        }
        check_well_formed(&bytes);
    }
}

/// Outcomes numbered 1, 2, … with spans and offsets inside the input.
fn check_well_formed(bytes: &[u8]) {
    for (i, o) in parse(bytes).iter().enumerate() {
        let (number, span, offset) = match o {
            Ok(m) => (m.number, m.span.clone(), m.results.first().map_or(m.span.start, |r| r.offset)),
            Err(e) => (e.number, e.span.clone(), e.offset),
        };
        assert_eq!(number, i + 1);
        assert!(span.start <= span.end && span.end <= bytes.len(), "{span:?} in {}", bytes.len());
        assert!(offset <= bytes.len());
    }
}

/// R.6 is kept as sent for `export lb` (LBORNRLO/LBORNRHI): the standard
/// `lower to upper` with text after `^` (Beckman Access 2).
#[test]
fn the_reference_range_is_read_from_r6_as_sent() {
    let r = results("beckman-access2.astm");
    assert_eq!(r[0].reference_range.as_deref(), Some("222 to 1439^normal"));
    assert_eq!(r[0].flags.as_deref(), Some("L"));
    assert_eq!(r[0].specimen_type, None, "ASTM has no SPM");
}
