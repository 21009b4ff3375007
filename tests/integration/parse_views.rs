//! `parse --format summary` reads borrowed views of the results; the other
//! formats copy them out. Both must see the same messages, results, warnings
//! and errors on any input (issue 16: no shortcut in the summary).

use labfeed::cli::parse::{FileCounts, OutputFormat, print_file};
use labfeed::model::{MessageOutcome, ParseOptions};
use proptest::prelude::*;

/// Lines that make up HL7 messages, good and broken: escapes, repetitions,
/// censored values, bad dates, wrapped lines, other character sets.
const HL7_LINES: &[&str] = &[
    "MSH|^~\\&|LAB^1.2^ISO|FAC|DB|T|20260312154500||ORU^R01|C-1|P|2.5.1",
    "MSH|^~\\&#|LAB|FAC|||20260312||ORU^R01|C-2|T|2.7|||||8859/1",
    "MSH|^~\\&|LAB|FAC|||20260312||ADT^A01|C-3|P|2.5",
    "MSH|^~\\&|LAB",
    "PID|1||U101^^^TRIAL^PI~NAT9^^^X||^^^^^^S",
    "PID|1||\"\"",
    "OBR|1|U101-V1-T000^STUDY|A1^LAB|MMTT|||20260311081200-0800||||||||||||||20260312154400",
    "OBR|2|P2||MMTT|||2026031",
    "OBX|1|SN|CPEP^C-peptide^LN||<^0.02|ng/mL^^UCUM|0.8-3.5|L~H|||F|||20260311081200|||||20260312120500",
    "OBX|2|NM|GLU^Glucose||5.4|mmol/L||N|||F",
    "OBX|3|NM|GLU||5,4~6|mmol/L",
    "OBX|4|ST|X\\T\\Y||a \\F\\ b \\X41\\ \\Zqq\\ \\.br\\ c#|u\\S\\v|||||C",
    "OBX|5|XX|CODE||  7.1 |mg/dL| |\"\"|||P|||notadate",
    "OBX|6|SN|C||>=^12^:^3|%",
    "NTE|1|L|comment one~second part",
    "NTE|2||\\E\\escaped",
    "SPM|1|S1&STUDY^F1&LAB||SER^Serum|||||||Q^QC||||||20260311081200",
    "ZXY|1|anything",
    "M|||wrapped",
    "obx|lower",
    "OBX|7|TX|T||caf\u{e9} \u{b5}mol",
    "BHS|^~\\&",
    "BTS|3",
    "FHS|^~\\&",
    "FTS|x",
];

/// Records that make up ASTM messages, good and broken.
const ASTM_LINES: &[&str] = &[
    "H|\\^&|||cobas^1|||||host|RSUPL^BATCH|P|1|20260302101500",
    "H|@^\\|C-9||GeneXpert|||||||Q",
    "H|\\^|||IMMULITE",
    "H|||",
    "P|1||U101\\U102||x",
    "P|1",
    "O|1|U101-V1-T000|7^12^2^^S1|^^^CPEP|R||20260302084500||||N||||1",
    "O|2||X^1||R||2026023",
    "R|1|^^^CPEP/1/not|<0.010|nmol/L||N||F||ADMIN||20260302100000|20260302101000|E1",
    "R|2|^^^GLUC/1|5.4^^^|mmol/L|3.9-6.1|H\\L||F||||20260302101100",
    "R|3|^^^X|1&S&2 &X41& |u&F&v||||C||||notadate",
    "R|4|^^^Y|7,41|  mg/dL  |",
    "C|1|I|first^comment|I",
    "C|2|I|  |I",
    "Q|1|^U101",
    "X|1",
    "wrapped text",
    "L|1|N",
    "L|1",
    "h|\\^&|||lower",
    "l|1",
];

fn assemble(pool: &[&str], picks: &[(usize, u8)], framed_prefix: bool) -> Vec<u8> {
    let mut out = Vec::new();
    if framed_prefix {
        out.extend_from_slice(b"\xEF\xBB\xBF");
    }
    for &(i, how) in picks {
        let line = pool.get(i % pool.len()).copied().unwrap_or_default();
        out.extend_from_slice(line.as_bytes());
        match how % 8 {
            0 => out.extend_from_slice(b"\r\n"),
            1 => out.push(b'\n'),
            2 => out.extend_from_slice(b"\xb5\r"),
            3 => out.extend_from_slice(b"\0\r"),
            _ => out.push(b'\r'),
        }
    }
    out
}

fn run(bytes: &[u8], format: OutputFormat, opts: &ParseOptions) -> (FileCounts, Vec<u8>, Vec<u8>) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let counts = print_file("f", bytes, opts, format, &mut out, &mut err).unwrap_or_default();
    (counts, out, err)
}

/// The summary's counts and diagnostics are exactly those of the JSON output.
/// (Owned results are the views made owned, `parse_bytes` being
/// `parse_bytes_views` and `into_owned`: nothing to compare there.)
fn same_everywhere(bytes: &[u8], decimal_comma: bool) -> Result<(), TestCaseError> {
    let opts = ParseOptions { decimal_comma, ..ParseOptions::default() };
    let (summary_counts, summary_out, summary_err) = run(bytes, OutputFormat::Summary, &opts);
    let (json_counts, json_out, json_err) = run(bytes, OutputFormat::Json, &opts);
    prop_assert_eq!(summary_counts, json_counts);
    prop_assert_eq!(&summary_err, &json_err, "same warnings and errors, same texts");
    let json_lines = json_out.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count();
    prop_assert_eq!(json_lines, json_counts.results + json_counts.errors);
    prop_assert!(summary_out.starts_with(b"f: "));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    #[test]
    fn hl7_summary_and_json_agree(picks in proptest::collection::vec((0usize..64, any::<u8>()), 0..40), bom in any::<bool>(), comma in any::<bool>()) {
        same_everywhere(&assemble(HL7_LINES, &picks, bom), comma)?;
    }

    #[test]
    fn astm_summary_and_json_agree(picks in proptest::collection::vec((0usize..64, any::<u8>()), 0..40), bom in any::<bool>(), comma in any::<bool>()) {
        same_everywhere(&assemble(ASTM_LINES, &picks, bom), comma)?;
    }

    #[test]
    fn framed_astm_summary_and_json_agree(picks in proptest::collection::vec((0usize..64, any::<u8>()), 0..30), size in 8usize..300, corrupt in any::<Option<usize>>()) {
        let text = assemble(ASTM_LINES, &picks, false);
        let mut bytes = vec![0x05];
        for frame in labfeed::astm::frame::encode_frames(&text, size) {
            bytes.extend_from_slice(&frame);
        }
        bytes.push(0x04);
        if let Some(at) = corrupt {
            let at = at % bytes.len();
            if let Some(b) = bytes.get_mut(at) {
                *b ^= 0x20;
            }
        }
        same_everywhere(&bytes, false)?;
    }

    #[test]
    fn any_bytes_summary_and_json_agree(bytes in proptest::collection::vec(any::<u8>(), 0..400), head in 0usize..3) {
        let mut input = [&b""[..], b"MSH|^~\\&|", b"H|\\^&|"].get(head).copied().unwrap_or_default().to_vec();
        input.extend_from_slice(&bytes);
        same_everywhere(&input, false)?;
    }
}

#[test]
fn the_summary_reports_the_same_error_texts_as_json() {
    let bytes = b"MSH|^~\\&|LAB|F|||20260312||ORU^R01|C1|P|2.5.1\rOBR|1|S||X|||notadate\rOBX|1|NM|G||5|u\r\
MSH|^~\\&|LAB|F|||20260312||ORU^R01|C2|P|2.5.1\rOBR|1|S\rOBX|1|NM|G||5|u\r";
    let (summary, out, summary_err) = run(bytes, OutputFormat::Summary, &ParseOptions::default());
    let (json, _, json_err) = run(bytes, OutputFormat::Json, &ParseOptions::default());
    assert_eq!(summary, FileCounts { messages: 2, results: 1, errors: 1 });
    assert_eq!(summary, json);
    assert_eq!(String::from_utf8_lossy(&out), "f: 2 messages, 1 result, 1 error (hl7)\n");
    let err = String::from_utf8_lossy(&summary_err);
    assert!(err.contains("error: f: message 1: byte") && err.contains("OBR-7: expected a date/time"), "{err}");
    assert_eq!(summary_err, json_err);
}

// Parsing on several threads (issue 16): the file is cut where a piece
// parses alone, pieces go to helper threads, and the outcomes come back in
// order. Whatever the threads, the outcomes must be those of one thread:
// same messages, numbers, spans, results, warnings and errors, in order.

fn outcomes(bytes: &[u8], threads: usize, decimal_comma: bool) -> Vec<MessageOutcome> {
    let mut all = Vec::new();
    let opts = ParseOptions { decimal_comma, threads };
    labfeed::parse::parse_bytes(bytes, &opts, &mut |outcome| all.push(outcome));
    all
}

fn same_on_any_threads(bytes: &[u8], decimal_comma: bool) -> Result<(), TestCaseError> {
    let one = outcomes(bytes, 1, decimal_comma);
    // Many threads on a small file cut it into pieces of a few bytes or units.
    for threads in [2, 3, 16] {
        let many = outcomes(bytes, threads, decimal_comma);
        prop_assert_eq!(&many, &one, "{} threads", threads);
    }
    Ok(())
}

/// ASTM sessions as captured link bytes: ENQ, frames, EOT for each group of
/// records, with receiver replies or stray bytes between sessions.
fn sessions(groups: &[Vec<(usize, u8)>], size: usize, between: u8) -> Vec<u8> {
    let mut bytes = Vec::new();
    for group in groups {
        bytes.push(0x05);
        for frame in labfeed::astm::frame::encode_frames(&assemble(ASTM_LINES, group, false), size) {
            bytes.extend_from_slice(&frame);
            bytes.push(0x06);
        }
        match between % 4 {
            0 => bytes.push(0x04),
            1 => bytes.extend_from_slice(b"\x04\r\n"),
            2 => bytes.extend_from_slice(b"junk"),
            _ => {}
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn hl7_outcomes_do_not_depend_on_threads(picks in proptest::collection::vec((0usize..64, any::<u8>()), 0..160), bom in any::<bool>(), comma in any::<bool>()) {
        same_on_any_threads(&assemble(HL7_LINES, &picks, bom), comma)?;
    }

    #[test]
    fn astm_outcomes_do_not_depend_on_threads(picks in proptest::collection::vec((0usize..64, any::<u8>()), 0..160), bom in any::<bool>(), comma in any::<bool>()) {
        same_on_any_threads(&assemble(ASTM_LINES, &picks, bom), comma)?;
    }

    #[test]
    fn framed_astm_outcomes_do_not_depend_on_threads(
        groups in proptest::collection::vec(proptest::collection::vec((0usize..64, any::<u8>()), 0..12), 0..12),
        size in 8usize..120,
        between in any::<u8>(),
        corrupt in any::<Option<usize>>(),
    ) {
        let mut bytes = sessions(&groups, size, between);
        let len = bytes.len();
        if let Some(b) = corrupt.filter(|_| len > 0).and_then(|at| bytes.get_mut(at % len)) {
            *b ^= 0x20;
        }
        same_on_any_threads(&bytes, false)?;
    }

    #[test]
    fn any_bytes_outcomes_do_not_depend_on_threads(bytes in proptest::collection::vec(any::<u8>(), 0..600), head in 0usize..4) {
        let mut input = [&b""[..], b"MSH|^~\\&|", b"H|\\^&|", b"\x05\x021H|\\^&|"].get(head).copied().unwrap_or_default().to_vec();
        input.extend_from_slice(&bytes);
        same_on_any_threads(&input, false)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Files large enough for the pieces the command line uses on two cores
    /// (64 KiB of records, 128 HL7 messages, 2,048 sessions per batch).
    #[test]
    fn large_files_parse_the_same_on_two_threads(picks in proptest::collection::vec((0usize..64, any::<u8>()), 6000..9000), size in 30usize..240) {
        for bytes in [assemble(HL7_LINES, &picks, false), assemble(ASTM_LINES, &picks, false)] {
            prop_assert_eq!(outcomes(&bytes, 2, false), outcomes(&bytes, 1, false));
        }
        let groups: Vec<Vec<(usize, u8)>> = picks.chunks(3).map(<[(usize, u8)]>::to_vec).collect();
        let framed = sessions(&groups, size, 0);
        prop_assert_eq!(outcomes(&framed, 2, false), outcomes(&framed, 1, false));
    }
}

/// The command line reads a large file on several threads and parses it on
/// them; its output is that of one thread, byte for byte.
#[test]
fn the_command_reads_and_parses_a_large_file_as_one_thread_would() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = 7u64;
    let mut picks = Vec::new();
    for _ in 0..100_000 {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let bits = state >> 33;
        picks.push(((bits % 64) as usize, (bits >> 8) as u8));
    }
    for (name, pool) in [("big.hl7", HL7_LINES), ("big.astm", ASTM_LINES)] {
        let bytes = assemble(pool, &picks, false);
        assert!(bytes.len() > 2 * 1024 * 1024, "large enough to be read on several threads");
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let file = path.display().to_string();
        for format in [OutputFormat::Summary, OutputFormat::Json] {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let one = ParseOptions { threads: 1, ..ParseOptions::default() };
            print_file(&file, &bytes, &one, format, &mut out, &mut err).unwrap();
            let flag = if format == OutputFormat::Summary { "summary" } else { "json" };
            let run = std::process::Command::new(env!("CARGO_BIN_EXE_labfeed"))
                .args(["parse", "--format", flag, &file])
                .output()
                .unwrap();
            assert!(out.len() > 40, "{name}: something was parsed");
            assert_eq!(run.stdout, out, "{name} {flag}: stdout");
            assert_eq!(run.stderr, err, "{name} {flag}: stderr");
        }
    }
}
