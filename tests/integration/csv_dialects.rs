//! Study data CSVs in every dialect a spreadsheet saves (SPEC §4) through the
//! real binary: each gives the same database and exports as the comma UTF-8
//! original, `import` says how it read the file, and an unreadable file is
//! refused whole with the reason (exit 2).

use labfeed::store::Store;

use super::support::{TempStudy as Study, csv_rows, path, text};

const PARTICIPANTS: &str = "participant,site\nU07,Örebro\nU08,\"Växjö, Centrallasarettet\"\nU09,\n";
const VISITS: &str = "participant,visit,meal_start\nU07,V0,2026-03-02T08:30\nU08,V0,2026-03-03 08:00\nU09,V0,\n";
const SAMPLES: &str = "sample_id,participant,visit,minute\nLAB-1,U07,V0,30\nLAB-2,U08,V0,0\nLAB-3,U08,V0,-10\n";

/// How a spreadsheet might save the same table.
#[derive(Clone, Copy, Debug)]
struct Dialect {
    semicolon: bool,
    windows_1252: bool,
    crlf: bool,
    bom: bool,
    /// What `import` should say.
    shown: &'static str,
}

const DIALECTS: [Dialect; 4] = [
    Dialect { semicolon: false, windows_1252: false, crlf: false, bom: false, shown: "comma-separated, UTF-8, LF" },
    Dialect {
        semicolon: true,
        windows_1252: true,
        crlf: true,
        bom: false,
        shown: "semicolon-separated, Windows-1252, CRLF",
    },
    Dialect {
        semicolon: true,
        windows_1252: false,
        crlf: true,
        bom: true,
        shown: "semicolon-separated, UTF-8 with BOM, CRLF",
    },
    Dialect {
        semicolon: false,
        windows_1252: true,
        crlf: false,
        bom: false,
        shown: "comma-separated, Windows-1252, LF",
    },
];

/// The comma UTF-8 LF `text` rewritten in `d`: fields re-quoted by a CSV
/// writer, so a comma inside a site name stays inside it.
fn in_dialect(text: &str, d: Dialect) -> Vec<u8> {
    let mut writer = csv::WriterBuilder::new()
        .delimiter(if d.semicolon { b';' } else { b',' })
        .terminator(if d.crlf { csv::Terminator::CRLF } else { csv::Terminator::Any(b'\n') })
        .flexible(true)
        .from_writer(Vec::new());
    for row in csv_rows(text) {
        writer.write_record(&row).unwrap();
    }
    let written = String::from_utf8(writer.into_inner().unwrap()).unwrap();
    let mut bytes = if d.bom { vec![0xEF, 0xBB, 0xBF] } else { Vec::new() };
    if d.windows_1252 {
        bytes.extend_from_slice(&encoding_rs::WINDOWS_1252.encode(&written).0);
    } else {
        bytes.extend_from_slice(written.as_bytes());
    }
    bytes
}

/// An e411 batch with results for the three manifest samples.
const RESULTS: &str = "H|\\^&|||cobas-e411^1|||||host|RSUPL^BATCH|P|1|20260302120000\r\
P|1|\r\
O|1|LAB-1||^^^CPEP|R||20260302090000||||N||||1|||||||20260302100000|||F\r\
R|1|^^^CPEP|0.52|nmol/L||N||F||ADMIN|20260302100000|20260302101500|E1\r\
O|2|LAB-2||^^^GLUC|R||20260303080000||||N||||1|||||||20260303100000|||F\r\
R|1|^^^GLUC|6.1|mmol/L||N||F||ADMIN|20260303100000|20260303101500|E1\r\
O|3|LAB-3||^^^CPEP|R||20260303075000||||N||||1|||||||20260303100000|||F\r\
R|1|^^^CPEP|0.20|nmol/L||N||F||ADMIN|20260303100000|20260303101500|E1\r\
L|1|N\r";

/// What `import` said, the stored study data, the results export, the mismatch report.
type Outcome = (Vec<String>, String, Vec<Vec<String>>, Vec<Vec<String>>);

/// Everything the study holds after importing the three files in `d` and
/// ingesting the same results: what `import` printed, the stored study
/// data, and the exports without the columns that name the arrival.
fn study_in(d: Dialect) -> Outcome {
    let s = Study::new(&[]);
    let mut said = Vec::new();
    for (kind, table) in [("participants", PARTICIPANTS), ("visits", VISITS), ("samples", SAMPLES)] {
        let file = s.dir.path().join(format!("{kind}.csv"));
        std::fs::write(&file, in_dialect(table, d)).unwrap();
        let out = s.run(&["import", kind, path(&file)]);
        assert_eq!(out.status.code(), Some(0), "{d:?} {kind}: {}", text(&out));
        said.push(String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").to_owned());
    }
    let results = s.file("e411.astm", RESULTS);
    let out = s.run(&["ingest", path(&results)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let store = Store::open(s.lib("labfeed.db")).unwrap();
    let stored = store
        .read(|r| {
            let mut shown = String::new();
            for code in ["U07", "U08", "U09"] {
                shown.push_str(&format!("{:?}\n", r.participant(code)?));
            }
            shown.push_str(&format!("{:?}\n", r.visits()?));
            for id in ["LAB-1", "LAB-2", "LAB-3"] {
                shown.push_str(&format!("{:?}\n", r.sample(id)?));
            }
            Ok(shown)
        })
        .unwrap();
    let without_arrival = |rows: Vec<Vec<String>>| -> Vec<Vec<String>> {
        let header = rows.first().cloned().unwrap_or_default();
        let keep: Vec<usize> =
            (0..header.len()).filter(|&i| !matches!(header[i].as_str(), "source" | "received_at")).collect();
        rows.into_iter().map(|row| keep.iter().map(|&i| row[i].clone()).collect()).collect()
    };
    let out = s.run(&["export", "results"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let results = without_arrival(csv_rows(&String::from_utf8_lossy(&out.stdout)));
    let out = s.run(&["report", "mismatches", "--format", "csv", "--all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mismatches = without_arrival(csv_rows(&String::from_utf8_lossy(&out.stdout)));
    (said, stored, results, mismatches)
}

#[test]
fn every_dialect_gives_the_same_study_as_comma_utf8() {
    let (said, stored, results, mismatches) = study_in(DIALECTS[0]);
    assert!(stored.contains("\"Örebro\"") && stored.contains("\"Växjö, Centrallasarettet\""), "{stored}");
    assert_eq!(results.len(), 4, "header and three results: {results:?}");
    assert!(mismatches.len() > 1, "the visits' missing minutes are reported: {mismatches:?}");
    for d in DIALECTS {
        let (said_d, stored_d, results_d, mismatches_d) = study_in(d);
        for (line, (kind, table)) in
            said_d.iter().zip([("participants", PARTICIPANTS), ("visits", VISITS), ("samples", SAMPLES)])
        {
            // ASCII saved as Windows-1252 is byte for byte UTF-8, and said so.
            let shown = if table.is_ascii() { d.shown.replace("Windows-1252", "UTF-8") } else { d.shown.to_owned() };
            assert!(line.ends_with(&format!("/{kind}.csv: {shown}")), "{d:?}: import said {line:?}");
        }
        assert_eq!(stored_d, stored, "{d:?}");
        assert_eq!(results_d, results, "{d:?}");
        assert_eq!(mismatches_d, mismatches, "{d:?}");
    }
    assert_eq!(said.len(), 3);
}

#[test]
fn a_file_in_no_known_dialect_is_refused_whole_with_the_reason_and_exit_2() {
    let s = Study::new(&[]);
    let participants = s.file("participants.csv", "participant\nU07\n");
    assert_eq!(s.run(&["import", "participants", path(&participants)]).status.code(), Some(0));

    let tabs = s.file("visits.csv", "participant\tvisit\tmeal_start\nU07\tV0\t2026-03-02T08:30\n");
    let out = s.run(&["import", "visits", path(&tabs)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.lines().collect::<Vec<_>>(),
        [
            format!(
                "{}: neither comma- nor semicolon-separated columns match participant,visit,meal_start",
                tabs.display()
            ),
            format!("{}: nothing imported; the whole file is refused", tabs.display()),
        ]
    );

    let utf16 = s.dir.path().join("samples.csv");
    let mut bytes = vec![0xFF, 0xFE];
    for unit in "sample_id,participant,visit,minute\n".encode_utf16() {
        bytes.extend_from_slice(&unit.to_le_bytes());
    }
    std::fs::write(&utf16, bytes).unwrap();
    let out = s.run(&["import", "samples", path(&utf16)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("samples.csv: is UTF-16 text"), "{}", text(&out));

    let out = s.run(&["export", "results"]);
    assert_eq!(csv_rows(&String::from_utf8_lossy(&out.stdout)).len(), 1, "nothing was imported");
}

/// README: "rows are named by the same line numbers either way": the line
/// a text editor shows, blank lines counted.
#[test]
fn a_bad_row_after_blank_lines_is_named_by_its_physical_line() {
    let study = Study::new(&[]);
    let participants = study.file("participants.csv", "participant;site\r\nU01;UPP\r\nU02;UPP\r\n");
    let out = study.run(&["import", "participants", path(&participants)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let visits = study.file(
        "visits.csv",
        "participant;visit;meal_start\r\n\r\nU01;V0;2026-03-02T08:30\r\n\r\nU02;V0;2026-02-30T08:30\r\n",
    );
    let out = study.run(&["import", "visits", path(&visits)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // Line 5 holds 2026-02-30 (1 header, 2 blank, 3 U01, 4 blank, 5 U02).
    assert!(text(&out).contains("visits.csv:5: column meal_start"), "{}", text(&out));

    // A quoted field over two lines moves the next row's line on by one.
    let samples =
        study.file("samples.csv", "sample_id,participant,visit,minute\n\"LAB\n1\",U01,V0,30\n\nLAB-2,U01,V0,soon\n");
    let out = study.run(&["import", "samples", path(&samples)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("samples.csv:5: column minute"), "{}", text(&out));
}

/// A header as a spreadsheet user types it ("Participant ; Site") names the
/// same columns as SPEC's lower-case one.
#[test]
fn a_capitalised_spaced_header_is_read_like_the_lower_case_one() {
    let study = Study::new(&[]);
    let participants = study.file("participants.csv", "Participant ; Site\r\nU01;UPP\r\n");
    let out = study.run(&["import", "participants", path(&participants)]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("participants.csv: semicolon-separated, UTF-8, CRLF"), "{said}");
    let store = Store::open(study.lib("labfeed.db")).unwrap();
    let stored = store.read(|r| Ok(format!("{:?}", r.participant("U01")?))).unwrap();
    assert!(stored.contains("UPP"), "{stored}");
}

/// A row with the wrong number of fields is explained in the file's terms,
/// not quoted from the CSV reader ("found record with 1 fields, but the
/// previous record has 2 fields").
#[test]
fn a_row_with_too_few_columns_is_explained_in_plain_words() {
    let study = Study::new(&[]);
    let participants = study.file("participants.csv", "participant,site\nU01,UPP\n");
    let out = study.run(&["import", "participants", path(&participants)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let visits = study.file("visits.csv", "participant,visit,meal_start\nU01;V0;2026-03-02T08:30\n");
    let out = study.run(&["import", "visits", path(&visits)]);
    let said = text(&out);
    assert_ne!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains(
            "visits.csv:2: this row has 1 column, the header has 3 (is it separated by ';' while the header uses ','?)"
        ),
        "{said}"
    );
    assert!(!said.contains("CSV error") && !said.contains("byte"), "{said}");
}
