//! `labfeed parse` driven through the real binary: the JSON Lines contract
//! (SPEC §2), the text and summary formats, and the exit codes (SPEC §1).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn labfeed(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_labfeed"))
        .args(args)
        .env_remove("LABFEED_CONFIG")
        .output()
        .expect("run the labfeed binary")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json_lines(out: &Output) -> Vec<Value> {
    stdout(out)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write test file");
    path
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// E1381 frame around `text` (checksum from FN through ETB/ETX).
fn frame(number: u8, text: &str, last: bool) -> Vec<u8> {
    let fn_digit = b'0' + number % 8;
    let end = if last { 0x03u8 } else { 0x17 };
    let sum = text.bytes().fold(u32::from(fn_digit) + u32::from(end), |acc, b| acc + u32::from(b)) % 256;
    let mut out = vec![0x02, fn_digit];
    out.extend_from_slice(text.as_bytes());
    out.push(end);
    out.extend_from_slice(format!("{sum:02X}\r\n").as_bytes());
    out
}

const ASTM_MMTT: &str = "H|\\^&|||cobas-e411^1|||||host|RSUPL^BATCH|P|1|20260302101500\r\
P|1|U07\r\
O|1|U07-V4-T030|12^0012^2^^S1^SC|^^^CPEP^1|R||20260302084500||||N||||1|||||||20260302101200|||F\r\
R|1|^^^CPEP|<0.010|nmol/L||L||F||ADMIN|20260302100000|20260302101000|E1\r\
C|1|I|0|I\r\
R|2|^^^GLUC|5.4|mmol/L||N||F||ADMIN|20260302100000|20260302101100|E1\r\
L|1|N\r";

const SPEC_KEYS: [&str; 16] = [
    "file",
    "message",
    "format",
    "sender",
    "sample_id",
    "patient_id",
    "test_code",
    "value",
    "comparator",
    "numeric",
    "unit",
    "flags",
    "status",
    "collected_at",
    "resulted_at",
    "qc",
];

#[test]
fn json_lines_carry_the_spec_keys_in_order_with_nulls_not_empty_strings() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "a.astm", ASTM_MMTT.as_bytes());
    let out = labfeed(&["parse", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2);
    for line in &lines {
        let keys: Vec<&str> = line.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, SPEC_KEYS, "key order is part of the contract");
    }
    let cpep = &lines[0];
    assert_eq!(cpep["file"], path.to_str().unwrap());
    assert_eq!(cpep["message"], 1);
    assert_eq!(cpep["format"], "astm");
    assert_eq!(cpep["sender"], "cobas-e411");
    assert_eq!(cpep["sample_id"], "U07-V4-T030");
    assert_eq!(cpep["patient_id"], "U07");
    assert_eq!(cpep["test_code"], "CPEP");
    assert_eq!(cpep["value"], "<0.010");
    assert_eq!(cpep["comparator"], "<");
    assert_eq!(cpep["numeric"].as_f64(), Some(0.01));
    assert_eq!(cpep["unit"], "nmol/L");
    assert_eq!(cpep["flags"], "L");
    assert_eq!(cpep["status"], "F");
    assert_eq!(cpep["collected_at"], "2026-03-02T08:45:00");
    assert_eq!(cpep["resulted_at"], "2026-03-02T10:10:00");
    assert_eq!(cpep["qc"], false);
    let gluc = &lines[1];
    assert_eq!(gluc["test_code"], "GLUC");
    assert_eq!(gluc["comparator"], Value::Null);
    assert_eq!(gluc["numeric"].as_f64(), Some(5.4));
}

#[test]
fn numeric_keeps_the_reported_precision_in_the_json_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "a.astm", ASTM_MMTT.as_bytes());
    let out = labfeed(&["parse", path.to_str().unwrap()]);
    assert!(stdout(&out).contains("\"numeric\":0.010,"), "{}", stdout(&out));
}

#[test]
fn framed_capture_gives_the_same_results_as_the_plain_records() {
    let dir = tempfile::tempdir().unwrap();
    let plain = write(dir.path(), "plain.astm", ASTM_MMTT.as_bytes());
    let mut framed = vec![0x05];
    let chunks: Vec<String> =
        ASTM_MMTT.as_bytes().chunks(100).map(|c| String::from_utf8(c.to_vec()).unwrap()).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        framed.extend(frame((i + 1) as u8, chunk, i + 1 == chunks.len()));
    }
    framed.push(0x04);
    let framed = write(dir.path(), "framed.frames", &framed);
    let strip_file = |mut v: Value| {
        v.as_object_mut().unwrap().remove("file");
        v
    };
    let a: Vec<Value> = json_lines(&labfeed(&["parse", plain.to_str().unwrap()])).into_iter().map(strip_file).collect();
    let b: Vec<Value> =
        json_lines(&labfeed(&["parse", framed.to_str().unwrap()])).into_iter().map(strip_file).collect();
    assert_eq!(a.len(), 2);
    assert_eq!(a, b);
}

#[test]
fn a_bad_checksum_rejects_its_message_and_the_rest_of_the_file_is_still_parsed() {
    let dir = tempfile::tempdir().unwrap();
    let message = |sample: &str| ASTM_MMTT.replace("U07-V4-T030", sample);
    let mut bytes = Vec::new();
    for (i, sample) in ["S1", "S2", "S3"].iter().enumerate() {
        bytes.push(0x05);
        let mut f = frame(1, &message(sample), true);
        if i == 1 {
            // Corrupt one text byte; the checksum no longer matches.
            let at = f.iter().position(|&b| b == b'U').unwrap();
            f[at] = b'V';
        }
        bytes.extend(f);
        bytes.push(0x04);
    }
    let path = write(dir.path(), "three.frames", &bytes);
    let out = labfeed(&["parse", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "a rejected message gives exit code 1");
    let lines = json_lines(&out);
    let samples: Vec<&str> = lines.iter().filter_map(|l| l["sample_id"].as_str()).collect();
    assert_eq!(samples, ["S1", "S1", "S3", "S3"]);
    let errors: Vec<&Value> = lines.iter().filter(|l| l.get("error").is_some()).collect();
    assert_eq!(errors.len(), 1);
    let error = errors[0];
    assert_eq!(error["file"], path.to_str().unwrap());
    assert_eq!(error["message"], 2);
    assert!(error["error"].as_str().unwrap().contains("checksum"), "{error}");
    let offset = error["offset"].as_u64().unwrap() as usize;
    let second_session = bytes.iter().enumerate().filter(|&(_, &b)| b == 0x05).nth(1).unwrap().0;
    let third_session = bytes.iter().enumerate().filter(|&(_, &b)| b == 0x05).nth(2).unwrap().0;
    assert!((second_session..third_session).contains(&offset), "offset {offset} points into the broken message");
    assert!(stderr(&out).contains("message 2"), "stderr names the message: {}", stderr(&out));
}

const HL7_MMTT: &str = "MSH|^~\\&|CENTRALLAB|CLAB|STUDYDB|T1D|20260312154500-0800||ORU^R01^ORU_R01|CL-1|P|2.5.1\r\
PID|1||U07^^^TRIAL^PI\r\
OBR|1|U07-V4-T030^STUDY|A2603120017^CENTRALLAB|MMTT-30^MMTT 30 min^L|||20260302084500\r\
OBX|1|SN|CPEP^C-Peptide^L||<^0.02|ng/mL^^UCUM|0.8-3.5|L|||F|||20260302084500||||E801-1|20260302120500\r\
OBX|2|NM|GLUC^Glucose^L||7,2|mmol/L|||||F\r";

#[test]
fn hl7_results_follow_the_spec_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "a.hl7", HL7_MMTT.as_bytes());
    let out = labfeed(&["parse", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2);
    let cpep = &lines[0];
    assert_eq!(cpep["format"], "hl7");
    assert_eq!(cpep["sender"], "CENTRALLAB");
    assert_eq!(cpep["sample_id"], "A2603120017");
    assert_eq!(cpep["patient_id"], "U07");
    assert_eq!(cpep["test_code"], "CPEP");
    assert_eq!(cpep["value"], "<^0.02");
    assert_eq!(cpep["comparator"], "<");
    assert_eq!(cpep["numeric"].as_f64(), Some(0.02));
    assert_eq!(cpep["unit"], "ng/mL");
    assert_eq!(cpep["collected_at"], "2026-03-02T08:45:00");
    assert_eq!(cpep["resulted_at"], "2026-03-02T12:05:00");
    // Without --decimal-comma a comma value is not a number; with it, it is.
    assert_eq!(lines[1]["numeric"], Value::Null);
    assert_eq!(lines[1]["value"], "7,2");
    let comma = json_lines(&labfeed(&["parse", "--decimal-comma", path.to_str().unwrap()]));
    assert_eq!(comma[1]["numeric"].as_f64(), Some(7.2));
}

#[test]
fn summary_prints_one_line_per_file_with_messages_results_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.astm", ASTM_MMTT.as_bytes());
    let hl7 = write(dir.path(), "b.hl7", format!("{HL7_MMTT}{HL7_MMTT}").as_bytes());
    let bad = write(dir.path(), "notes.txt", b"this is not a lab file\n");
    let out = labfeed(&[
        "parse",
        "--format",
        "summary",
        good.to_str().unwrap(),
        hl7.to_str().unwrap(),
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with(good.to_str().unwrap()) && lines[0].contains("1 message, 2 results, 0 errors"),
        "{text}"
    );
    assert!(lines[1].contains("2 messages, 4 results, 0 errors"), "{text}");
    assert!(lines[2].contains("1 message, 0 results, 1 error"), "{text}");
}

#[test]
fn text_format_shows_results_and_says_why_a_message_was_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let broken = "MSH|^~|BAD\rPID|1\r";
    let path = write(dir.path(), "mixed.hl7", format!("{HL7_MMTT}{broken}{HL7_MMTT}").as_bytes());
    let out = labfeed(&["parse", "--format", "text", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("A2603120017") && text.contains("CPEP"), "{text}");
    assert!(text.contains("message 2: REJECTED at byte"), "{text}");
    assert!(text.contains("MSH-2"), "the reason names the field: {text}");
    assert!(text.contains("3 messages, 4 results, 1 error"), "{text}");
}

#[test]
fn unreadable_and_unknown_files_are_reported_and_other_files_still_parsed() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.astm", ASTM_MMTT.as_bytes());
    let missing = dir.path().join("missing.astm");
    let out = labfeed(&["parse", missing.to_str().unwrap(), good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "a file that cannot be read is a usage error");
    assert!(stderr(&out).contains("missing.astm"), "{}", stderr(&out));
    assert_eq!(json_lines(&out).len(), 2, "the readable file is still parsed");

    let empty = write(dir.path(), "empty.hl7", b"");
    let out = labfeed(&["parse", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1);
    assert!(lines[0]["error"].as_str().unwrap().contains("empty"), "{}", lines[0]);
    assert_eq!(lines[0]["offset"], 0);
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(labfeed(&["parse"]).status.code(), Some(2));
    assert_eq!(labfeed(&["parse", "--format", "xml", "x"]).status.code(), Some(2));
    assert_eq!(labfeed(&["no-such-command"]).status.code(), Some(2));
    assert_eq!(labfeed(&["--help"]).status.code(), Some(0));
}

/// Every fixture, through the real binary: valid JSON Lines, SPEC keys, and
/// never an empty string (empty fields are null).
#[test]
fn every_fixture_prints_valid_json_lines_without_empty_strings() {
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in ["astm", "hl7"] {
        for entry in std::fs::read_dir(fixtures().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e != "md") {
                files.push(path);
            }
        }
    }
    assert!(files.len() >= 40, "the corpus samples are in fixtures/: {}", files.len());
    for path in files {
        let out = labfeed(&["parse", path.to_str().unwrap()]);
        assert!(matches!(out.status.code(), Some(0 | 1)), "{}: {}", path.display(), stderr(&out));
        for line in json_lines(&out) {
            let object = line.as_object().unwrap();
            if object.contains_key("error") {
                assert_eq!(object.keys().take(4).collect::<Vec<_>>(), ["file", "message", "error", "offset"]);
                continue;
            }
            let keys: Vec<&str> = object.keys().map(String::as_str).collect();
            assert_eq!(keys, SPEC_KEYS, "{}", path.display());
            for (key, value) in object {
                assert_ne!(value, &Value::String(String::new()), "{}: {key} is \"\"", path.display());
            }
            assert!(line["numeric"].is_null() || line["numeric"].is_number());
        }
    }
}

/// One read buffer serves every file of a command line: a short file after a
/// long one must not see the long one's bytes, in any format.
#[test]
fn many_files_in_one_command_read_as_each_alone() {
    let mut files: Vec<PathBuf> = ["fixtures/hl7", "fixtures/astm"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)).unwrap())
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e != "md"))
        .collect();
    files.sort_by_key(|p| std::cmp::Reverse(std::fs::metadata(p).unwrap().len()));
    let names: Vec<&str> = files.iter().map(|p| p.to_str().unwrap()).collect();
    for format in ["json", "summary", "text"] {
        let mut args = vec!["parse", "--format", format];
        args.extend(&names);
        let together = labfeed(&args);
        let (mut out, mut err) = (String::new(), String::new());
        for name in &names {
            let alone = labfeed(&["parse", "--format", format, name]);
            out.push_str(&stdout(&alone));
            err.push_str(&stderr(&alone));
        }
        assert_eq!(stdout(&together), out, "{format}");
        assert_eq!(stderr(&together), err, "{format}");
    }
}
