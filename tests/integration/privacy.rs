//! Personal data planted everywhere an analyzer or lab staff could put it
//! (P/PID/NK1 repetitions and components, comments, text results of unmapped
//! tests, a line wrapped into a parse error, a quarantined file) must not
//! reach any table, the database files, a report, an export, a reason file
//! or a log line. And a quarantined file dropped again goes to quarantine
//! again.

use std::path::{Path, PathBuf};
use std::process::Output;

use super::support::{MSH, TempStudy, four_participants as study, hl7_at, import_csv as import, ingest_bytes, text};

/// Spellings and pieces of the planted identifiers; none may appear anywhere.
const NEEDLES: &[&str] = &[
    "Johansson",
    "JOHANSSON",
    "johansson",
    "Birgitta",
    "BIRGITTA",
    "198003",
    "19800315",
    "0315-1234",
    "800315",
    "070-1234567",
    "1234567",
    "Storgatan",
    "Uppsalav",
    "Mamma",
];

/// HL7 from the central lab: identifiers in every PID-2–PID-4 repetition
/// after the study code, PID-5…, NK1, PV1, GT1, IN1, MRG, a Z segment, NTE,
/// and results of unmapped tests (text, and a national ID typed NM).
fn hl7_upload(p: &str, minute: i32, control: &str) -> String {
    format!(
        "MSH|^~\\&|CENTRALLAB|LAB|||20260302101500||ORU^R01|{control}|P|2.5.1\r\
         PID|1|{p}~19800315-1234|{p}^^^TRIAL^PI~198003151234^^^SKV^NNSWE~070-1234567|{p}^Storgatan 12~198003151234|Johansson^Birgitta||19800315|F|||Storgatan 12^^Uppsalavagen||070-1234567\r\
         NK1|1|Johansson^Mamma|MTH|Storgatan 12^^Uppsala|070-1234567\r\
         PV1|1|O|Storgatan 12^^Uppsala||||070-1234567^Johansson^Mamma\r\
         GT1|1|{p}|Johansson^Birgitta||Storgatan 12^^Uppsala||070-1234567||19800315\r\
         IN1|1|PLAN||Insco|||||||||||Johansson^Birgitta|SEL|19800315|Storgatan 12\r\
         MRG|198003151234\r\
         ZPI|1|Johansson^Birgitta|198003151234\r\
         OBR|1||{p}-V0-T{minute}||||||||||Birgitta Johansson 19800315\r\
         OBX|1|NM|1986-9||0.25|nmol/L|||||F|||20260302081000\r\
         NTE|1|L|Call Birgitta Johansson on 070-1234567\r\
         OBX|2|ST|NOTE||Birgitta Johansson 19800315-1234|||||F\r\
         OBX|3|TX|ADDR||Storgatan 12~070-1234567|||||F\r\
         OBX|4|FT|PNR||198003151234|||||F\r\
         OBX|5|NM|PNR2||198003151234|||||F\r\
         OBX|6|SN|NAME||Birgitta^Johansson|||||F\r\
         OBX|7|NM|NAME2||Birgitta Johansson|||||F\r\
         OBX|8|XX|NAME3||Birgitta~Johansson|||||F\r"
    )
}

/// HL7 whose PID was wrapped onto a new line: a parse error next to the name.
fn hl7_wrapped(p: &str, control: &str) -> String {
    format!(
        "MSH|^~\\&|CENTRALLAB|LAB|||20260302101500||ORU^R01|{control}|P|2.5.1\r\
         PID|1||{p}||Johansson^Birgitta\r\
         Birgitta Johansson 19800315-1234 070-1234567|||F\r\
         OBR|1||{p}-V0-T60\r\
         OBX|1|NM|1986-9||0.41|nmol/L|||||F\r"
    )
}

/// HL7 from a sender no instrument is configured for: comments masked.
fn hl7_unknown_sender(p: &str, control: &str) -> String {
    format!(
        "MSH|^~\\&|OTHERLAB|X|||20260302101500||ORU^R01|{control}|P|2.5.1\r\
         PID|1||{p}~198003151234||Johansson^Birgitta\r\
         OBR|1||{p}-V0-T90\r\
         OBX|1|ST|1986-9||Birgitta Johansson|||||F\r\
         OBX|2|NM|1986-9||198003151234|||||F\r\
         NTE|1|L|Storgatan 12, 070-1234567\r"
    )
}

/// ASTM from the e411: a national ID in a repeat of P.3, P.4, P.5…, C
/// comments on the patient and the result, results of unmapped tests, a query.
fn astm_upload(p: &str, minute: i32) -> String {
    format!(
        "H|\\^&|||cobas-e411^1|||||host|RSUPL^BATCH|P|1|20260302101500\r\
         P|1|{p}\\198003151234|19800315-1234|{p}^Storgatan 12|Johansson^Birgitta^B|Mamma|19800315|F||Storgatan 12^Uppsalavagen||070-1234567\r\
         C|1|I|Birgitta Johansson 070-1234567|G\r\
         O|1|{p}-V0-T{minute}||^^^CPEP|||||||||Birgitta Johansson\r\
         R|1|^^^CPEP|0.31|nmol/L||N||F||ADMIN||20260302101000\r\
         C|1|I|called Birgitta Johansson 19800315-1234|G\r\
         R|2|^^^PNAME|Birgitta Johansson|||N||F\r\
         R|3|^^^PNR|198003151234|||N||F\r\
         Q|1|198003151234^{p}-V0-T{minute}||ALL||||Johansson^Mamma|070-1234567|||O\r\
         L|1|N\r"
    )
}

/// ASTM with a patient line broken in two: the second half is no record.
fn astm_broken(p: &str, minute: i32) -> String {
    format!(
        "H|\\^&|||cobas-e411^1|||||host|RSUPL^BATCH|P|1|20260302101500\r\
         P|1|{p}||Johansson^Birgitta\r\
         Birgitta Johansson 198003151234\r\
         O|1|{p}-V0-T{minute}||^^^CPEP\r\
         R|1|^^^CPEP|0.52|nmol/L||N||F||ADMIN||20260302101000\r\
         L|1|N\r"
    )
}

/// ASTM with its own delimiters (`H|\%&`), framed as a serial link captures it.
fn astm_framed(p: &str, minute: i32) -> String {
    let text = format!(
        "H|\\%&|||cobas-e411%1|||||host|RSUPL%BATCH|P|1|20260302101500\r\
         P|1|{p}%198003151234||{p}^19800315|Johansson%Birgitta||19800315|F||Storgatan 12||070-1234567\r\
         O|1|{p}-V0-T{minute}||%%%CPEP\r\
         R|1|%%%CPEP|0.27|nmol/L||N||F||ADMIN||20260302101000\r\
         R|2|%%%PNR|198003151234|||N||F\r\
         L|1|N\r"
    );
    let mut out = String::from("\u{5}");
    for frame in labfeed::astm::encode_frames(text.as_bytes(), 40) {
        out.push_str(&String::from_utf8(frame).unwrap());
    }
    out.push('\u{4}');
    out
}

/// HL7 whose study code is the second repetition of PID-3 (a national ID
/// first), with people and free text in the OBX fields labfeed does not read:
/// OBX-10 nature of abnormal test, OBX-13 access checks, OBX-16 observer,
/// OBX-23–25 performing organisation, address and director.
fn hl7_code_second(p: &str, control: &str) -> String {
    format!(
        "MSH|^~\\&|CENTRALLAB|LAB|||20260302101500||ORU^R01|{control}|P|2.5.1\r\
         PID|1||198003151234^^^SKV^NNSWE~{p}^^^STUDY^PI~070-1234567||Johansson^Birgitta\r\
         OBR|1||{p}-V0-T15\r\
         OBX|1|NM|1986-9||0.22|nmol/L||||Birgitta|F||Birgitta|20260302081500||Johansson^Birgitta|||||||Storgatan 12 Lab|Storgatan 12^^Uppsala|Johansson^Mamma\r"
    )
}

/// ASTM whose study code is the second repetition of P.3, with a password
/// (H.4), and names in a manufacturer (M) and a scientific (S) record.
fn astm_code_second(p: &str) -> String {
    format!(
        "H|\\^&||Birgitta|cobas-e411^1|||||host|RSUPL^BATCH|P|1|20260302101500\r\
         P|1|198003151234\\{p}^Johansson|19800315\r\
         M|1|Johansson^Birgitta|198003151234\r\
         O|1|{p}-V1-T15||^^^CPEP\r\
         R|1|^^^CPEP|0.23|nmol/L||N||F||||20260302101000\r\
         S|1|Birgitta Johansson^070-1234567\r\
         L|1|N\r"
    )
}

/// Messages that fail to parse, with identifiers in fields that are kept
/// when a message parses (OBR-3, OBX-6, O.3, R.5, an unknown record type):
/// a message that does not parse is masked but for its structure.
fn hl7_failing(p: &str, control: &str) -> String {
    format!(
        "MSH|^~\\&|CENTRALLAB|LAB|||20260302101500||ORU^R01|{control}|P|2.5.1\r\
         PID|1||{p}\r\
         OBR|1||{p}-Johansson-T0\r\
         OBX|1|NM|1986-9||0.41|Birgitta|||||F|||2026030X\r"
    )
}

fn astm_failing(p: &str) -> String {
    format!(
        "H|\\^&|||cobas-e411^1|||||host|RSUPL^BATCH|P|1|20260302101500\r\
         P|1|{p}\r\
         O|1|{p}-Johansson||^^^CPEP\r\
         R|1|^^^CPEP|0.52|Birgitta||N||F||ADMIN||20260302101000\r\
         X|1|070-1234567^Storgatan 12\r\
         L|1|N\r"
    )
}

/// The planted files for one round (`p` the participant, so that the two
/// rounds are different content and neither is a duplicate of the other).
fn uploads(p: &str, round: &str) -> Vec<(String, String)> {
    vec![
        (format!("{round}-central.hl7"), hl7_upload(p, 0, &format!("{round}1"))),
        (format!("{round}-wrapped.hl7"), hl7_wrapped(p, &format!("{round}2"))),
        (format!("{round}-other.hl7"), hl7_unknown_sender(p, &format!("{round}3"))),
        (format!("{round}-e411.astm"), astm_upload(p, 30)),
        (format!("{round}-broken.astm"), astm_broken(p, 120)),
        (format!("{round}-framed.astm"), astm_framed(p, 60)),
        (format!("{round}-second.hl7"), hl7_code_second(p, &format!("{round}4"))),
        (format!("{round}-second.astm"), astm_code_second(p)),
        (format!("{round}-failing.hl7"), hl7_failing(p, &format!("{round}5"))),
        (format!("{round}-failing.astm"), astm_failing(p)),
    ]
}

/// `text` with every byte masked but the segment IDs or record types, the
/// declared delimiters and the line ends.
fn structure_only(text: &str) -> String {
    let hl7 = text.starts_with("MSH");
    let lines: Vec<String> = text
        .split('\r')
        .map(|line| {
            let id = if hl7 { 3 } else { 1 };
            let declared = if line.starts_with("MSH") {
                8
            } else if line.starts_with('H') {
                5
            } else {
                id
            };
            line.char_indices().map(|(i, c)| if i < declared || "|^~\\&".contains(c) { c } else { '*' }).collect()
        })
        .collect();
    lines.join("\r")
}

/// Every needle absent from `haystack`; `what` says where it was looked for.
fn assert_clean(what: &str, haystack: &[u8]) {
    for needle in NEEDLES {
        let found = haystack.windows(needle.len()).position(|w| w == needle.as_bytes());
        if let Some(at) = found {
            let from = at.saturating_sub(60);
            let context = String::from_utf8_lossy(haystack.get(from..(at + 60).min(haystack.len())).unwrap());
            panic!("{what} contains {needle:?}: …{context}…");
        }
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Every column of every row of every table, as text (blobs as bytes).
fn dump_tables(db: &Path) -> Vec<(String, Vec<u8>)> {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(tables.iter().any(|t| t == "audit_log") && tables.iter().any(|t| t == "raw"), "{tables:?}");
    let mut out = Vec::new();
    for table in tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
        let columns = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        let mut bytes = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            for i in 0..columns {
                match row.get_ref(i).unwrap() {
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                        bytes.extend_from_slice(t)
                    }
                    other => bytes.extend_from_slice(format!("{other:?}").as_bytes()),
                }
                bytes.push(b'|');
            }
            bytes.push(b'\n');
        }
        out.push((table, bytes));
    }
    out
}

fn stdout_of(t: &TempStudy, args: &[&str]) -> Vec<u8> {
    let out = t.run(args);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
    assert_clean(&format!("stderr of {args:?}"), &out.stderr);
    out.stdout
}

/// Every table, the database files, every report and export format.
fn assert_everything_clean(t: &TempStudy, outputs: &[(&str, &Output)]) {
    for (what, out) in outputs {
        assert_clean(&format!("stdout of {what}"), &out.stdout);
        assert_clean(&format!("stderr of {what}"), &out.stderr);
    }
    let db = t.lib("labfeed.db");
    for (table, bytes) in dump_tables(&db) {
        assert_clean(&format!("table {table}"), &bytes);
    }
    // Everything labfeed wrote beside the database (db, -wal, -shm, lock, audit head), and every
    // reason file; only the originals in archive and quarantine may hold the identifiers.
    let originals = [t.lib("archive"), t.lib("quarantine"), t.lib("inbox")];
    let mut checked = 0;
    for file in files_under(&t.lib("")) {
        let name = file.to_string_lossy().into_owned();
        if name.ends_with(".reason.txt") || !originals.iter().any(|dir| file.starts_with(dir)) {
            assert_clean(&name, &std::fs::read(&file).unwrap());
            checked += 1;
        }
    }
    assert!(checked >= 2, "the database files were found");
    for format in ["text", "csv", "html"] {
        let report = stdout_of(t, &["report", "mismatches", "--all", "--format", format]);
        assert!(!report.is_empty());
        assert_clean(&format!("report mismatches --all --format {format}"), &report);
        let report = stdout_of(t, &["report", "auc", "--format", format]);
        assert_clean(&format!("report auc --format {format}"), &report);
    }
    for what in ["results", "lb"] {
        let export = stdout_of(t, &["export", what]);
        assert_clean(&format!("export {what}"), &export);
    }
    let status = t.run(&["status"]);
    assert_clean("status", &status.stdout);
    assert_clean("status", &status.stderr);
}

#[test]
fn planted_identifiers_reach_no_table_file_report_reason_or_log() {
    let t = study();
    let db = t.lib("labfeed.db");
    // Held open so the daemon and `ingest` never remove the -wal file: its
    // bytes are read before any final checkpoint.
    let holder = rusqlite::Connection::open(&db).unwrap();
    let _: i64 = holder.query_row("SELECT count(*) FROM raw", [], |r| r.get(0)).unwrap();

    // Round 1: `labfeed ingest`.
    let mut paths = Vec::new();
    for (name, content) in uploads("U04", "a") {
        paths.push(t.file(&name, &content));
    }
    let mut args = vec!["ingest".to_owned()];
    args.extend(paths.iter().map(|p| p.to_string_lossy().into_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ingest = t.run(&args);
    assert_eq!(ingest.status.code(), Some(1), "broken files make ingest exit 1: {}", text(&ingest));
    let said = text(&ingest);
    assert!(said.contains("wrapped onto a new line"), "{said}");

    // Round 2: the watch folder (`run --once`), other content.
    let inbox = t.lib("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    for (name, content) in uploads("U03", "b") {
        std::fs::write(inbox.join(name), content).unwrap();
    }
    let run = t.run(&["run", "--once"]);
    assert_eq!(run.status.code(), Some(1), "quarantined files make run --once exit 1: {}", text(&run));

    // The -wal file as the writers left it, before any checkpoint.
    let wal = t.lib("labfeed.db-wal");
    let wal_bytes = std::fs::read(&wal).expect("the -wal file stays while a connection is open");
    assert!(!wal_bytes.is_empty());
    assert_clean("labfeed.db-wal", &wal_bytes);
    assert_clean("labfeed.db", &std::fs::read(&db).unwrap());

    // The broken files went to quarantine with reasons; those say where, not what.
    let quarantine = t.lib("quarantine");
    let reasons: Vec<PathBuf> =
        files_under(&quarantine).into_iter().filter(|p| p.to_string_lossy().ends_with(".reason.txt")).collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    for reason in &reasons {
        let body = std::fs::read(reason).unwrap();
        assert!(String::from_utf8_lossy(&body).contains("byte "), "{}", String::from_utf8_lossy(&body));
        assert_clean(&reason.display().to_string(), &body);
    }

    // The good results are in: identifiers were masked, data kept.
    let results = String::from_utf8(stdout_of(&t, &["export", "results"])).unwrap();
    assert!(results.contains("U04,V0,0,c_peptide,0.25"), "{results}");
    assert!(results.contains("U03,V0,30,c_peptide,0.31"), "{results}");
    assert!(results.contains("U04,V0,60,c_peptide,0.27"), "framed, own delimiters: {results}");
    // The study code in a later repetition is the message's patient: no PARTICIPANT_CONFLICT.
    for (p, value) in
        [("U04", "V0,15,c_peptide,0.22"), ("U04", "V1,15,c_peptide,0.23"), ("U03", "V0,15,c_peptide,0.22")]
    {
        assert!(results.contains(&format!("{p},{value}")), "{p},{value}: {results}");
    }

    // The stored copy keeps the study code and the values, masks the rest.
    let raw = raw_contents(&holder);
    let central = raw.iter().find(|c| c.windows(4).any(|w| w == b"a1|P")).expect("round 1 HL7 stored");
    let central = String::from_utf8_lossy(central);
    assert!(central.contains("PID|1|U04~*"), "{central}");
    assert!(central.contains("OBX|1|NM|1986-9||0.25|nmol/L"), "{central}");
    let second = raw.iter().find(|c| c.windows(4).any(|w| w == b"a4|P")).expect("round 1 second HL7 stored");
    let second = String::from_utf8_lossy(second);
    assert!(second.contains("PID|1||************************~U04^*"), "{second}");
    // A message that fails to parse keeps only its structure.
    for failing in [hl7_failing("U04", "a5"), astm_failing("U04")] {
        let structure = structure_only(&failing);
        assert!(raw.iter().any(|c| c == structure.as_bytes()), "{structure}");
    }

    // `parse` shows fields but its errors quote nothing.
    let parse = t.run(&["parse", "--format", "json", paths[1].to_str().unwrap(), paths[4].to_str().unwrap()]);
    assert_eq!(parse.status.code(), Some(1), "{}", text(&parse));
    let errors: Vec<&str> =
        std::str::from_utf8(&parse.stdout).unwrap().lines().filter(|l| l.contains("\"error\"")).collect();
    assert_eq!(errors.len(), 2, "{}", text(&parse));
    for line in errors {
        assert_clean("parse --format json error", line.as_bytes());
    }

    drop(holder);
    assert_everything_clean(&t, &[("ingest", &ingest), ("run --once", &run)]);
    // Masking and re-delivery keep the audit trail whole.
    let verify = t.run(&["verify-audit"]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    assert_clean("verify-audit", &verify.stdout);
}

#[test]
fn a_quarantined_file_dropped_again_is_quarantined_again_and_an_accepted_one_archived() {
    let t = study();
    let inbox = t.lib("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let broken = astm_broken("U02", 15);
    let good = astm_upload("U02", 60);
    std::fs::write(inbox.join("broken.astm"), &broken).unwrap();
    std::fs::write(inbox.join("good.astm"), &good).unwrap();
    let first = t.run(&["run", "--once"]);
    assert_eq!(first.status.code(), Some(1), "{}", text(&first));
    let quarantine = t.lib("quarantine");
    let first_reason = std::fs::read_to_string(quarantine.join("broken.astm.reason.txt")).unwrap();

    // The same bytes again, under the same name and another.
    std::fs::write(inbox.join("broken.astm"), &broken).unwrap();
    std::fs::write(inbox.join("broken-again.astm"), &broken).unwrap();
    std::fs::write(inbox.join("good.astm"), &good).unwrap();
    let again = t.run(&["run", "--once"]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(!files_under(&t.lib("archive")).iter().any(|p| p.to_string_lossy().contains("broken")));
    for name in ["broken-1.astm", "broken-again.astm"] {
        assert!(quarantine.join(name).is_file(), "{name} quarantined again: {:?}", files_under(&quarantine));
        let reason = std::fs::read_to_string(quarantine.join(format!("{name}.reason.txt"))).unwrap();
        assert!(reason.contains("identical to a file quarantined on 20"), "{reason}");
        assert!(reason.contains("(broken.astm)"), "{reason}");
        // The original reason is repeated.
        let original = first_reason.lines().nth(1).unwrap();
        assert!(reason.contains(original), "{reason}\n---\n{first_reason}");
        assert_clean(name, reason.as_bytes());
    }
    // The accepted file was archived both times (a duplicate the second time).
    let archived: Vec<PathBuf> =
        files_under(&t.lib("archive")).into_iter().filter(|p| p.to_string_lossy().contains("good")).collect();
    assert_eq!(archived.len(), 2, "{archived:?}");
    assert!(!quarantine.join("good.astm").exists());

    // `ingest` of the quarantined content exits 1 again and says why.
    let copy = t.file("copy.astm", &broken);
    let ingest = t.run(&["ingest", copy.to_str().unwrap()]);
    assert_eq!(ingest.status.code(), Some(1), "{}", text(&ingest));
    assert!(text(&ingest).contains("rejected again: identical to a file quarantined on"), "{}", text(&ingest));
    let good_copy = t.file("good-copy.astm", &good);
    let ingest = t.run(&["ingest", good_copy.to_str().unwrap()]);
    assert_eq!(ingest.status.code(), Some(0), "{}", text(&ingest));
    assert!(text(&ingest).contains("already received"), "{}", text(&ingest));
    let verify = t.run(&["verify-audit"]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
}

#[test]
fn ingest_of_a_rejected_file_twice_exits_1_both_times() {
    let t = study();
    let path = t.file("wrapped.hl7", &hl7_wrapped("U01", "W1"));
    for round in 0..2 {
        let out = t.run(&["ingest", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "round {round}: {}", text(&out));
        assert_clean("ingest", &out.stdout);
    }
    let out = t.run(&["ingest", path.to_str().unwrap()]);
    assert!(text(&out).contains("identical to a file rejected on"), "{}", text(&out));
}

#[test]
fn keep_comments_keeps_the_text_of_unmapped_results() {
    let t = TempStudy::new(&[(
        "sender = \"CENTRALLAB\"\nkeep_comments = false",
        "sender = \"CENTRALLAB\"\nkeep_comments = true",
    )]);
    let csv = t.file("participants.csv", "participant\nU04\n");
    assert_eq!(t.run(&["import", "participants", csv.to_str().unwrap()]).status.code(), Some(0));
    let file = t.file("c.hl7", &hl7_upload("U04", 0, "K1"));
    let out = t.run(&["ingest", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report = String::from_utf8(stdout_of(&t, &["report", "mismatches", "--format", "csv"])).unwrap();
    assert!(report.contains("Birgitta Johansson 19800315-1234"), "kept on request: {report}");
    let conn = rusqlite::Connection::open(t.lib("labfeed.db")).unwrap();
    let raw = raw_contents(&conn).concat();
    let raw = String::from_utf8_lossy(&raw);
    assert!(raw.contains("NTE|1|L|Call Birgitta Johansson on 070-1234567"), "{raw}");
    // Patient data is masked whatever keep_comments says.
    assert!(raw.contains("PID|1|U04~*"), "{raw}");
    assert!(!raw.contains("Johansson^Birgitta"), "{raw}");
}

// Review r2 (issue 10 point 4): personal data that reached the stored copy,
// the tables or the reports, and an OUT_OF_WINDOW detail that dropped the
// offset a collection time carried.

/// Every stored copy, inflated where it is kept deflated.
fn raw_contents(conn: &rusqlite::Connection) -> Vec<Vec<u8>> {
    super::support::raw_copies(conn)
}

/// Every stored copy, as lossy text.
fn raw_copies(t: &TempStudy) -> String {
    let rows = raw_contents(&rusqlite::Connection::open(t.lib("labfeed.db")).unwrap());
    rows.iter().map(|r| String::from_utf8_lossy(r).into_owned()).collect::<Vec<_>>().join("\n")
}

/// Every text column of every row of `table`.
fn table_text(t: &TempStudy, table: &str) -> String {
    let conn = rusqlite::Connection::open(t.lib("labfeed.db")).unwrap();
    let mut stmt = conn.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
    let n = stmt.column_count();
    let mut rows = stmt.query([]).unwrap();
    let mut out = String::new();
    while let Some(row) = rows.next().unwrap() {
        for i in 0..n {
            if let rusqlite::types::ValueRef::Text(s) = row.get_ref(i).unwrap() {
                out.push_str(&String::from_utf8_lossy(s));
                out.push('|');
            }
        }
        out.push('\n');
    }
    out
}

fn assert_absent(what: &str, haystack: &str, needles: &[&str]) {
    for needle in needles {
        assert!(!haystack.contains(needle), "{what} contains {needle:?}:\n{haystack}");
    }
}

/// SPEC §7 "Personal data": nothing that identifies a person (names, birth
/// dates, addresses, phone numbers, identifiers other than the study code)
/// reaches the stored copy. Guarantor (GT1), insurance (IN1), merge (MRG)
/// and site-specific Z segments carry exactly that.
#[test]
fn guarantor_insurance_merge_and_z_segments_are_masked_in_the_stored_copy() {
    let t = study();
    let msg = format!(
        "{MSH}G1|P|2.5.1\r\
         PID|1||U04||XX\r\
         GT1|1|U04|Johansson^Birgitta||Storgatan 12^^Uppsala||070-1234567||19800315\r\
         IN1|1|PLAN||Insco|||||||||||Johansson^Birgitta|SEL|19800315|Storgatan 12\r\
         MRG|198003151234\r\
         ZPI|1|Johansson^Birgitta|198003151234\r\
         OBR|1||U04-V0-T0\r\
         OBX|1|NM|1986-9||0.25|nmol/L|||||F|||20260302081000\r"
    );
    let said = ingest_bytes(&t, "gt1.hl7", msg.as_bytes());
    assert!(said.contains("1 accepted"), "{said}");
    assert_absent(
        "the stored copy",
        &raw_copies(&t),
        &["Johansson", "Birgitta", "19800315", "070-1234567", "Storgatan"],
    );
}

/// A wrapped PID continuation line is masked whole even when it looks like a
/// segment at a glance ("Lee^Anna…", "Eva-Lotta …", a lower-case "pid|"):
/// the masker's idea of a segment is no looser than the parser's.
#[test]
fn a_wrapped_pid_line_that_happens_to_look_like_a_segment_is_still_masked() {
    let t = study();
    let wrapped = [
        ("w1.hl7", format!("{MSH}W1|P|2.5.1\rPID|1||U04||\rLee^Annalisa||19800315|F\rOBR|1||U04-V0-T15\r")),
        ("w2.hl7", format!("{MSH}W2|P|2.5.1\rPID|1||U04||\rEva-Lotta Johansson 19800315|F\rOBR|1||U04-V0-T15\r")),
        ("w3.hl7", format!("{MSH}W3|P|2.5.1\rpid|1||U04~198003151234||Johansson^Birgitta\rOBR|1||U04-V0-T15\r")),
    ];
    for (name, content) in &wrapped {
        let said = ingest_bytes(&t, name, content.as_bytes());
        assert!(said.contains("not a segment"), "{said}");
    }
    assert_absent("the stored copy", &raw_copies(&t), &["Annalisa", "Eva-Lotta", "Johansson", "19800315"]);
}

/// A PID cut in two by an MLLP frame end (a capture of a sender that split
/// a segment): the second half ("son^Birgitta…") is masked too.
#[test]
fn a_pid_split_across_mllp_frames_is_masked() {
    let t = study();
    let mut bytes = b"\x0b".to_vec();
    bytes.extend_from_slice(format!("{MSH}M1|P|2.5.1\rPID|1||U04||Johans").as_bytes());
    bytes.extend_from_slice(b"\x1c\r\x0bson^Birgitta||19800315\rOBR|1||U04-V0-T90\r");
    bytes.extend_from_slice(b"OBX|1|NM|1986-9||0.32|nmol/L|||||F|||20260302093000\r\x1c\r");
    ingest_bytes(&t, "split.hl7", &bytes);
    assert_absent("the stored copy", &raw_copies(&t), &["Birgitta", "19800315"]);
}

/// Issue 10 point 4 / SPEC §7: the value of an OBX that maps to no test is
/// masked and not copied into tables, whatever OBX-2 declares: an NM or SN
/// typed OBX can hold a national ID or a name.
#[test]
fn an_unmapped_obx_typed_nm_holding_a_national_id_or_name_is_masked() {
    let t = study();
    let msg = format!(
        "{MSH}N1|P|2.5.1\r\
         PID|1||U04\r\
         OBR|1||U04-V0-T0\r\
         OBX|1|NM|1986-9||0.25|nmol/L|||||F|||20260302081000\r\
         OBX|2|NM|PNR||198003151234|||||F\r\
         OBX|3|NM|NOTE||Birgitta Johansson|||||F\r\
         OBX|4|SN|NOTE2||Birgitta^Johansson|||||F\r"
    );
    ingest_bytes(&t, "nm.hl7", msg.as_bytes());
    let needles = ["198003151234", "Birgitta", "Johansson"];
    assert_absent("the stored copy", &raw_copies(&t), &needles);
    assert_absent("table observation", &table_text(&t, "observation"), &needles);
    assert_absent("table audit_log", &table_text(&t, "audit_log"), &needles);
    for format in ["text", "csv", "html"] {
        let out = t.run(&["report", "mismatches", "--all", "--format", format]);
        assert_absent(&format!("report mismatches --format {format}"), &String::from_utf8_lossy(&out.stdout), &needles);
    }
}

/// An ASTM query record (Q.3 = patient ID ^ specimen ID, LIS2-A2 §11) with a
/// national ID: masked like P.3.
#[test]
fn an_astm_query_record_with_a_national_id_is_masked() {
    let t = study();
    let astm = "H|\\^&|||cobas-e411^1|||||host|TSREQ^REAL|P|1|20260302101500\r\
                Q|1|198003151234^U04-V0-T0||ALL||||||||O\r\
                L|1|N\r";
    ingest_bytes(&t, "query.astm", astm.as_bytes());
    assert_absent("the stored copy", &raw_copies(&t), &["198003151234"]);
}

fn framed(records: &[&str]) -> Vec<u8> {
    let mut out = vec![0x05];
    for (i, r) in records.iter().enumerate() {
        let mut body = format!("{}", (i + 1) % 8).into_bytes();
        body.extend_from_slice(r.as_bytes());
        body.extend_from_slice(b"\r\x03");
        let sum: u32 = body.iter().map(|&b| u32::from(b)).sum();
        out.push(0x02);
        out.extend_from_slice(&body);
        out.extend_from_slice(format!("{:02X}\r\n", sum % 256).as_bytes());
    }
    out.push(0x04);
    out
}

/// Ingest `bytes` with `sample` listed at U01/V0/30, then correct the
/// manifest to U02, the message's patient: no PARTICIPANT_CONFLICT stays
/// open. What ingest said.
#[track_caller]
fn ingest_then_move_to_u02(t: &TempStudy, sample: &str, name: &str, bytes: &[u8]) -> String {
    import(t, "samples", "s1.csv", &format!("sample_id,participant,visit,minute\n{sample},U01,V0,30\n"));
    let said = ingest_bytes(t, name, bytes);
    import(t, "samples", "s2.csv", &format!("sample_id,participant,visit,minute\n{sample},U02,V0,30\n"));
    let open = String::from_utf8_lossy(&t.run(&["report", "mismatches", "--format", "csv"]).stdout).into_owned();
    assert!(!open.contains("PARTICIPANT_CONFLICT"), "the message's patient ID is U02:\n{open}");
    said
}

/// A framed ASTM capture (E1381, as a serial link stores it) whose P record
/// holds a name: the masked copy must still parse (checksums recomputed), so
/// a manifest correction that moves the sample to the participant the
/// message names reads the patient ID back and raises no PARTICIPANT_CONFLICT.
#[test]
fn a_moved_sample_from_a_framed_astm_capture_reads_its_patient_id_back() {
    let t = study();
    let h = "H|\\^&|||cobas-e411^1|||||host|RSUPL^BATCH|P|1|20260302101500";
    let bytes =
        framed(&[h, "P|1|U02||||Johansson^Birgitta", "O|1|S1001||^^^CPEP", "R|1|^^^CPEP|0.46|nmol/L||N||F", "L|1|N"]);
    let said = ingest_then_move_to_u02(&t, "S1001", "framed.astm", &bytes);
    assert!(said.contains("1 mismatch,"), "PARTICIPANT_CONFLICT at U01: {said}");
    assert!(!raw_copies(&t).contains("Johansson"));
    let results = String::from_utf8_lossy(&t.run(&["export", "results"]).stdout).into_owned();
    assert!(results.contains("U02,V0,30,c_peptide,0.46"), "{results}");
}

/// An OUT_OF_WINDOW detail for a collection time that carried its own offset
/// shows it: "collected 02:30, 120 min after meal start" for a 01:30 meal
/// start reads as a contradiction in the repeated hour.
#[test]
fn out_of_window_detail_shows_the_offset_a_collection_time_carried() {
    let t = study();
    import(&t, "visits", "v.csv", "participant,visit,meal_start\nU02,V0,2026-10-25T01:30\n");
    ingest_bytes(&t, "b.hl7", hl7_at("T2", "U02-V0-T60", "20261025023000+0100").as_bytes());
    let report = String::from_utf8_lossy(&t.run(&["report", "mismatches", "--format", "csv"]).stdout).into_owned();
    let line = report.lines().find(|l| l.contains("OUT_OF_WINDOW")).expect(&report);
    assert!(line.contains("+01:00"), "{line}");
}

/// The ASTM counterpart: an R record of a test the instrument does not map,
/// whose value is a name or a national ID, reaches neither the stored copy,
/// the observation table nor the UNKNOWN_TEST rows of a report.
#[test]
fn an_unmapped_astm_result_holding_a_name_or_national_id_is_masked() {
    let t = study();
    let astm = "H|\\^&|||cobas-e411^1|||||host|RSUPL^BATCH|P|1|20260302101500\r\
                P|1|U04\r\
                O|1|U04-V1-T30||^^^CPEP\r\
                R|1|^^^CPEP|0.41|nmol/L||N||F||||20260302101000\r\
                R|2|^^^PNAME|Birgitta Johansson|||N||F\r\
                R|3|^^^PNR|198003151234|||N||F\r\
                L|1|N\r";
    let said = ingest_bytes(&t, "unmapped.astm", astm.as_bytes());
    assert!(said.contains("1 accepted"), "{said}");
    let needles = ["198003151234", "Birgitta", "Johansson"];
    assert_absent("the stored copy", &raw_copies(&t), &needles);
    assert_absent("table observation", &table_text(&t, "observation"), &needles);
    let out = t.run(&["report", "mismatches", "--format", "csv"]);
    assert_absent("report mismatches", &String::from_utf8_lossy(&out.stdout), &needles);
}

/// The masker uses the delimiters the message declares: with an ASTM
/// component delimiter `%` (H|\%&), the study code of P.3 `U02%LAB` is kept,
/// so after a manifest correction to U02 the stored copy reads back U02.
#[test]
fn a_moved_sample_with_a_custom_component_delimiter_reads_its_patient_id_back() {
    let t = study();
    let astm = "H|\\%&|||cobas-e411%1|||||host|RSUPL%BATCH|P|1|20260302101500\r\
                P|1|U02%LAB\r\
                O|1|S5001||%%%CPEP\r\
                R|1|%%%CPEP|0.44|nmol/L||N||F\r\
                L|1|N\r";
    ingest_then_move_to_u02(&t, "S5001", "percent.astm", astm.as_bytes());
    assert!(raw_copies(&t).contains("P|1|U02%"), "the study code is kept:\n{}", raw_copies(&t));
}

/// The HL7 counterpart: with a component delimiter `$` (MSH|$~\&), the study
/// code of PID-3 `U02$$$TRIAL~198003151234` is kept and the rest masked, so
/// after a manifest correction to U02 the stored copy reads back U02.
#[test]
fn a_moved_hl7_sample_with_a_custom_component_delimiter_reads_its_patient_id_back() {
    let t = study();
    let msg = "MSH|$~\\&|CENTRALLAB|LAB|||20260302101500||ORU$R01|D1|P|2.5.1\r\
               PID|1||U02$$$TRIAL~198003151234$$$SKV||Johansson$Birgitta\r\
               OBR|1||S6001\r\
               OBX|1|NM|1986-9||0.44|nmol/L|||||F|||20260302081000\r";
    let said = ingest_then_move_to_u02(&t, "S6001", "dollar.hl7", msg.as_bytes());
    assert!(said.contains("1 mismatch,"), "PARTICIPANT_CONFLICT at U01: {said}");
    let raw = raw_copies(&t);
    assert!(raw.contains("PID|1||U02$*"), "the study code is kept:\n{raw}");
    assert_absent("the stored copy", &raw, &["198003151234", "Johansson", "Birgitta"]);
}

/// The study code may be any repetition of PID-3: the message's patient is
/// that repetition (U02 here, after a national ID), at ingest and when the
/// masked copy is read back for a manifest correction.
#[test]
fn a_study_code_in_a_later_pid3_repetition_is_the_patient_and_is_read_back() {
    let t = study();
    let msg = "MSH|^~\\&|CENTRALLAB|LAB|||20260302101500||ORU^R01|R1|P|2.5.1\r\
               PID|1||198003151234^^^SKV^NNSWE~U02^^^STUDY\r\
               OBR|1||S7001\r\
               OBX|1|NM|1986-9||0.44|nmol/L|||||F|||20260302081000\r";
    let said = ingest_then_move_to_u02(&t, "S7001", "second.hl7", msg.as_bytes());
    assert!(said.contains("1 mismatch,"), "PARTICIPANT_CONFLICT at U01: {said}");
    let raw = raw_copies(&t);
    assert!(raw.contains("PID|1||************************~U02^*"), "{raw}");
    let results = String::from_utf8_lossy(&t.run(&["export", "results"]).stdout).into_owned();
    assert!(results.contains("U02,V0,30,c_peptide,0.44"), "{results}");
}

/// The ASTM counterpart: the study code in the second repetition of P.3.
#[test]
fn a_study_code_in_a_later_p3_repetition_is_the_patient_and_is_read_back() {
    let t = study();
    let astm = "H|\\^&|||cobas-e411^1|||||host|RSUPL^BATCH|P|1|20260302101500\r\
                P|1|198003151234^X\\U02^Y|19800315\r\
                O|1|S7002||^^^CPEP\r\
                R|1|^^^CPEP|0.45|nmol/L||N||F\r\
                L|1|N\r";
    let said = ingest_then_move_to_u02(&t, "S7002", "second.astm", astm.as_bytes());
    assert!(said.contains("1 mismatch,"), "PARTICIPANT_CONFLICT at U01: {said}");
    let raw = raw_copies(&t);
    assert!(raw.contains("P|1|**************\\U02^*|********\r"), "{raw}");
    let results = String::from_utf8_lossy(&t.run(&["export", "results"]).stdout).into_owned();
    assert!(results.contains("U02,V0,30,c_peptide,0.45"), "{results}");
}
