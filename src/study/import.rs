//! Reading the study data files (SPEC §4): participants, visits, samples.
//!
//! A whole file is checked before anything is stored, so a bad row never
//! leaves the file half-imported. Comma or semicolon, UTF-8 or
//! Windows-1252, LF or CRLF are all read ([`csv_dialect`]). Only study codes are accepted: a column
//! that is not in the format (a name, a date of birth, an arm) is refused.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::local_time::{LocalTime, check_meal_start};
use crate::study::config::Config;
use crate::study::csv_dialect::{self, Delimiter, Dialect};

/// Which study data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Participants,
    Visits,
    Samples,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Participants => "participants",
            Kind::Visits => "visits",
            Kind::Samples => "samples",
        }
    }

    /// The columns of the format, required first.
    fn columns(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            Kind::Participants => (&["participant"], &["site"]),
            Kind::Visits => (&["participant", "visit", "meal_start"], &[]),
            Kind::Samples => (&["sample_id", "participant", "visit", "minute"], &[]),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantRow {
    pub participant: String,
    pub site: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitRow {
    pub participant: String,
    pub visit: String,
    /// MMTT minute 0, local time (with its offset when one was given);
    /// `None` when the visit has no meal test yet.
    pub meal_start: Option<LocalTime>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleRow {
    pub sample_id: String,
    pub participant: String,
    pub visit: String,
    pub minute: i32,
}

/// The checked rows of one file, with the line each came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rows {
    Participants(Vec<(usize, ParticipantRow)>),
    Visits(Vec<(usize, VisitRow)>),
    Samples(Vec<(usize, SampleRow)>),
}

/// A refused file: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ImportError {
    pub file: PathBuf,
    /// 1-based line (1 is the header); 0 when the file could not be read.
    pub line: usize,
    pub column: Option<String>,
    pub message: String,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        match (self.line, &self.column) {
            (0, _) => write!(f, "{file}: {}", self.message),
            (line, Some(column)) => write!(f, "{file}:{line}: column {column}: {}", self.message),
            (line, None) => write!(f, "{file}:{line}: {}", self.message),
        }
    }
}

/// Read and check a study data file.
pub fn read(kind: Kind, path: &Path, config: &Config) -> Result<Rows, ImportError> {
    read_with_dialect(kind, path, config).map(|(rows, _)| rows)
}

/// Read and check a study data file, and say how it was saved.
pub fn read_with_dialect(kind: Kind, path: &Path, config: &Config) -> Result<(Rows, Dialect), ImportError> {
    let bytes = std::fs::read(path).map_err(|e| ImportError {
        file: path.to_owned(),
        line: 0,
        column: None,
        message: format!("cannot read: {e}"),
    })?;
    parse_with_dialect(kind, path, &bytes, config)
}

/// Check the bytes of a study data file; `path` is only used in messages.
pub fn parse(kind: Kind, path: &Path, bytes: &[u8], config: &Config) -> Result<Rows, ImportError> {
    parse_with_dialect(kind, path, bytes, config).map(|(rows, _)| rows)
}

/// [`parse`], and the dialect (separator, encoding, line ends) the bytes were read in.
pub fn parse_with_dialect(
    kind: Kind,
    path: &Path,
    bytes: &[u8],
    config: &Config,
) -> Result<(Rows, Dialect), ImportError> {
    let err = |line: usize, column: Option<&str>, message: String| ImportError {
        file: path.to_owned(),
        line,
        column: column.map(str::to_owned),
        message,
    };
    let (required, optional) = kind.columns();
    let columns: Vec<&str> = required.iter().chain(optional).copied().collect();
    // A file that cannot be read as a CSV of this kind is line 0: the whole file, exit 2.
    let decoded = csv_dialect::detect(bytes, &columns).map_err(|e| err(0, None, e.to_string()))?;
    let delimiter = decoded.dialect.delimiter;
    let text = decoded.text.as_ref();
    let mut reader = decoded.reader();
    // As written, for messages; matched below in lower case (`Participant`
    // as a spreadsheet user types it is SPEC's `participant`).
    let written: Vec<String> = reader
        .headers()
        .map_err(|e| err(1, None, format!("cannot read the header row: {}", row_problem(&e, text, delimiter))))?
        .iter()
        .map(str::to_owned)
        .collect();
    let headers: Vec<String> = written.iter().map(|h| h.to_lowercase()).collect();
    if headers.iter().all(String::is_empty) {
        return Err(err(1, None, format!("the header row is missing: expected {}", required.join(","))));
    }
    // Spreadsheets add empty columns after the last used one (`participant;site;;`):
    // allowed while they stay empty, as nothing can be said about their content.
    let unnamed: Vec<usize> = headers.iter().enumerate().filter(|(_, h)| h.is_empty()).map(|(i, _)| i).collect();
    for (h, shown) in headers.iter().zip(&written).filter(|(h, _)| !h.is_empty()) {
        if !required.contains(&h.as_str()) && !optional.contains(&h.as_str()) {
            return Err(err(
                1,
                Some(shown),
                format!(
                    "is not a column of a {} file (allowed: {}); study data hold study codes only, never names, dates of birth or allocation",
                    kind.as_str(),
                    required.iter().chain(optional).copied().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    let mut seen = BTreeSet::new();
    for (h, shown) in headers.iter().zip(&written).filter(|(h, _)| !h.is_empty()) {
        if !seen.insert(h.as_str()) {
            return Err(err(1, Some(shown), "appears twice in the header row".to_owned()));
        }
    }
    for r in required {
        if !headers.iter().any(|h| h == r) {
            return Err(err(1, Some(r), format!("is missing from the header row (needed: {})", required.join(","))));
        }
    }
    let index = |name: &str| headers.iter().position(|h| h == name);
    let mut rows = match kind {
        Kind::Participants => Rows::Participants(Vec::new()),
        Kind::Visits => Rows::Visits(Vec::new()),
        Kind::Samples => Rows::Samples(Vec::new()),
    };
    let mut keys = BTreeSet::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| physical_line(text, p.byte()));
            err(line, None, row_problem(&e, text, delimiter))
        })?;
        let line = record.position().map_or(0, |p| physical_line(text, p.byte()));
        if record.iter().all(str::is_empty) {
            continue;
        }
        if let Some(i) = unnamed.iter().find(|&&i| record.get(i).is_some_and(|v| !v.is_empty())) {
            return Err(err(line, None, format!("column {} has a value but no name in the header row", i + 1)));
        }
        let field = |name: &str| index(name).and_then(|i| record.get(i)).filter(|v| !v.is_empty());
        let required_field = |name: &str| -> Result<String, ImportError> {
            let value = field(name).ok_or_else(|| err(line, Some(name), "is empty".to_owned()))?;
            if value.chars().any(char::is_whitespace) || value.len() > 64 {
                return Err(err(
                    line,
                    Some(name),
                    format!("{value:?} is not a study code (no spaces, at most 64 characters)"),
                ));
            }
            Ok(value.to_owned())
        };
        let check_visit = |visit: &str| -> Result<(), ImportError> {
            if !config.accepts_visit(visit) {
                let codes: Vec<&str> = config.visits.iter().map(|v| v.code.as_str()).collect();
                return Err(err(
                    line,
                    Some("visit"),
                    format!("{visit:?} is not a configured visit ({})", codes.join(", ")),
                ));
            }
            Ok(())
        };
        match &mut rows {
            Rows::Participants(list) => {
                let participant = required_field("participant")?;
                if !keys.insert(participant.clone()) {
                    return Err(err(line, Some("participant"), format!("{participant} appears twice in this file")));
                }
                list.push((line, ParticipantRow { participant, site: field("site").map(str::to_owned) }));
            }
            Rows::Visits(list) => {
                let participant = required_field("participant")?;
                let visit = required_field("visit")?;
                check_visit(&visit)?;
                let meal_start = match field("meal_start") {
                    None => None,
                    Some(text) => Some(
                        parse_meal_start(text, &config.study.timezone).map_err(|m| err(line, Some("meal_start"), m))?,
                    ),
                };
                if !keys.insert(format!("{participant}\u{0}{visit}")) {
                    return Err(err(line, Some("visit"), format!("{participant} {visit} appears twice in this file")));
                }
                list.push((line, VisitRow { participant, visit, meal_start }));
            }
            Rows::Samples(list) => {
                let sample_id = field("sample_id")
                    .map(str::to_owned)
                    .ok_or_else(|| err(line, Some("sample_id"), "is empty".to_owned()))?;
                let participant = required_field("participant")?;
                let visit = required_field("visit")?;
                check_visit(&visit)?;
                let minute_text = field("minute").ok_or_else(|| err(line, Some("minute"), "is empty".to_owned()))?;
                let minute = minute_text.parse::<i32>().map_err(|_| {
                    err(
                        line,
                        Some("minute"),
                        format!("{minute_text:?} is not a whole number of minutes (e.g. -10, 0, 30)"),
                    )
                })?;
                if !keys.insert(sample_id.clone()) {
                    return Err(err(line, Some("sample_id"), format!("{sample_id} appears twice in this file")));
                }
                list.push((line, SampleRow { sample_id, participant, visit, minute }));
            }
        }
    }
    Ok((rows, decoded.dialect))
}

/// The 1-based line, as an editor shows it, of the record starting at
/// `byte` of `text` (LF line ends only). The csv reader's own line count
/// drifts over the blank lines it skips.
fn physical_line(text: &str, byte: u64) -> usize {
    let start = usize::try_from(byte).map_or(text.len(), |b| b.min(text.len()));
    let (head, rest) = text.as_bytes().split_at(start);
    // A record never starts with a line end: those are blank lines before it.
    let blank = rest.iter().take_while(|&&b| b == b'\n').count();
    1 + head.iter().filter(|&&b| b == b'\n').count() + blank
}

/// What is wrong with a row the csv reader refused, in the file's terms
/// rather than the reader's ("found record with 1 fields, but the previous
/// record has 3 fields").
fn row_problem(e: &csv::Error, text: &str, delimiter: Delimiter) -> String {
    let csv::ErrorKind::UnequalLengths { pos, expected_len, len } = e.kind() else {
        return "this row cannot be read as CSV".to_owned();
    };
    let columns = |n: u64| format!("{n} column{}", if n == 1 { "" } else { "s" });
    let (used, other) = match delimiter {
        Delimiter::Comma => (',', ';'),
        Delimiter::Semicolon => (';', ','),
    };
    let start = pos.as_ref().map_or(0, |p| usize::try_from(p.byte()).unwrap_or(usize::MAX));
    let row = text.get(start..).unwrap_or("").trim_start_matches('\n').lines().next().unwrap_or("");
    let hint = if len < expected_len && row.contains(other) {
        format!(" (is it separated by '{other}' while the header uses '{used}'?)")
    } else if len > expected_len {
        format!(" (a value holding '{used}' must be in double quotes)")
    } else {
        String::new()
    };
    format!("this row has {}, the header has {}{hint}", columns(*len), expected_len)
}

/// `2026-03-02T08:30`, `2026-03-02T08:30:00` or `2026-03-02 08:30` (local
/// time in `zone`), optionally with its offset (`2026-10-25T02:30+01:00`).
/// It must name exactly one instant in the zone (SPEC §7 "Local times").
pub fn parse_meal_start(text: &str, zone: &str) -> Result<LocalTime, String> {
    let time = LocalTime::parse(text).map_err(|e| e.to_string())?;
    let tz = jiff::tz::TimeZone::get(zone)
        .map_err(|e| format!("the study timezone {zone:?} is not a known time zone ({e})"))?;
    check_meal_start(&tz, zone, time).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::from_toml(include_str!("../../config/labfeed.example.toml"), Path::new("c.toml")).unwrap()
    }

    fn run(kind: Kind, text: &str) -> Result<Rows, ImportError> {
        parse(kind, Path::new("data.csv"), text.as_bytes(), &config())
    }

    #[test]
    fn well_formed_files_give_rows_with_their_lines() {
        let rows = run(Kind::Participants, "participant,site\nU07,Uppsala\nU08,\n").unwrap();
        assert_eq!(
            rows,
            Rows::Participants(vec![
                (2, ParticipantRow { participant: "U07".into(), site: Some("Uppsala".into()) }),
                (3, ParticipantRow { participant: "U08".into(), site: None }),
            ])
        );
        let Rows::Visits(v) =
            run(Kind::Visits, "participant,visit,meal_start\nU07,V0,2026-03-02 08:30\nU07,V1,\n").unwrap()
        else {
            panic!()
        };
        assert_eq!(v[0].1.meal_start, Some("2026-03-02T08:30".parse().unwrap()));
        assert_eq!(v[0].1.meal_start.map(|t| t.offset()), Some(None));
        assert_eq!(v[1].1.meal_start, None);
        let Rows::Samples(s) = run(Kind::Samples, "sample_id,participant,visit,minute\nA-1,U07,V0,-10\n").unwrap()
        else {
            panic!()
        };
        assert_eq!(s[0].1.minute, -10);
        // Column order is free, a BOM and CRLF are fine, and lines are still counted right.
        let Rows::Samples(s) =
            run(Kind::Samples, "\u{feff}minute,visit,participant,sample_id\r\n30,V0,U07,A-2\r\n0,V0,U07,A-3\r\n")
                .unwrap()
        else {
            panic!()
        };
        assert_eq!((s[0].0, s[1].0), (2, 3));
    }

    #[test]
    fn bad_rows_name_file_line_and_column() {
        let e = run(Kind::Samples, "sample_id,participant,visit,minute\nA-1,U07,V0,30\nA-2,U07,V0,half\n").unwrap_err();
        assert_eq!((e.line, e.column.as_deref()), (3, Some("minute")));
        assert_eq!(
            e.to_string(),
            "data.csv:3: column minute: \"half\" is not a whole number of minutes (e.g. -10, 0, 30)"
        );
        let e = run(Kind::Visits, "participant,visit,meal_start\nU07,V9,2026-03-02T08:30\n").unwrap_err();
        assert_eq!((e.line, e.column.as_deref()), (2, Some("visit")));
        let e = run(Kind::Visits, "participant,visit,meal_start\nU07,V0,2026-03-02T08:30+02:00\n").unwrap_err();
        assert_eq!(e.column.as_deref(), Some("meal_start"));
        let e = run(Kind::Visits, "participant,visit,meal_start\nU07,V0,2026-02-30T08:30\n").unwrap_err();
        assert_eq!(e.column.as_deref(), Some("meal_start"));
        let e = run(Kind::Participants, "participant\nU07\nU07\n").unwrap_err();
        assert_eq!(e.line, 3);
        let e = run(Kind::Participants, "participant\nU 07\n").unwrap_err();
        assert_eq!(e.column.as_deref(), Some("participant"));
    }

    #[test]
    fn lines_are_counted_as_an_editor_shows_them() {
        // Blank lines, CR line ends and a quoted line break all count.
        for text in ["participant,site\n\nU07,x\n\n\nU07,y\n", "participant,site\r\r\nU07,x\r\n\r\rU07,y\r\n"] {
            let e = run(Kind::Participants, text).unwrap_err();
            assert_eq!(e.line, 6, "{text:?}: {e}");
        }
        let e =
            run(Kind::Samples, "sample_id,participant,visit,minute\n\"A\n1\",U07,V0,30\n\nA-2,U07,V0,x\n").unwrap_err();
        assert_eq!((e.line, e.column.as_deref()), (5, Some("minute")), "{e}");
    }

    #[test]
    fn rows_of_the_wrong_width_are_explained_in_the_files_terms() {
        let e = run(Kind::Visits, "participant,visit,meal_start\nU07;V0;2026-03-02T08:30\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "data.csv:2: this row has 1 column, the header has 3 (is it separated by ';' while the header uses ','?)"
        );
        let e = run(Kind::Participants, "participant;site\nU07;Växjö; CLV\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "data.csv:2: this row has 3 columns, the header has 2 (a value holding ';' must be in double quotes)"
        );
    }

    #[test]
    fn header_names_are_matched_whatever_their_case_and_spacing() {
        let rows = run(Kind::Participants, "Participant ; Site\r\nU07;Örebro\r\n").unwrap();
        assert_eq!(rows, run(Kind::Participants, "participant,site\nU07,Örebro\n").unwrap());
        let e = run(Kind::Participants, "Participant,PARTICIPANT\nU07,U08\n").unwrap_err();
        assert_eq!(e.to_string(), "data.csv:1: column PARTICIPANT: appears twice in the header row");
        let e = run(Kind::Participants, "Participant,Name\nU07,x\n").unwrap_err();
        assert!(e.to_string().starts_with("data.csv:1: column Name: is not a column"), "{e}");
    }

    #[test]
    fn meal_starts_the_study_zone_skips_or_repeats_are_refused_where_they_are() {
        let visits = |meal: &str| {
            run(Kind::Visits, &format!("participant,visit,meal_start\nU07,V0,2026-03-02T08:30\nU07,V1,{meal}\n"))
        };
        let e = visits("2026-03-29T02:30").unwrap_err();
        assert_eq!((e.line, e.column.as_deref()), (3, Some("meal_start")));
        assert!(
            e.to_string()
                .starts_with("data.csv:3: column meal_start: 2026-03-29T02:30 does not exist in Europe/Stockholm"),
            "{e}"
        );
        let e = visits("2026-10-25T02:30").unwrap_err();
        assert_eq!((e.line, e.column.as_deref()), (3, Some("meal_start")));
        assert!(e.message.contains("+02:00 (the first) or +01:00 (the second)"), "{e}");
        let e = visits("2026-10-25T02:30+03:00").unwrap_err();
        assert!(e.message.contains("+02:00 (the first time) or +01:00"), "{e}");
        let Rows::Visits(v) = visits("2026-10-25T02:30+01:00").unwrap() else { panic!() };
        let meal = v[1].1.meal_start.unwrap();
        assert_eq!(meal.to_string(), "2026-10-25T02:30:00+01:00");
    }

    #[test]
    fn a_swedish_spreadsheet_file_reads_as_its_comma_utf8_original() {
        let original = run(Kind::Participants, "participant,site\nU07,Örebro\nU08,\"Växjö, CLV\"\n").unwrap();
        let saved = b"\xEF\xBB\xBFparticipant;site\r\nU07;\xC3\x96rebro\r\nU08;V\xC3\xA4xj\xC3\xB6, CLV\r\n";
        let (rows, dialect) = parse_with_dialect(Kind::Participants, Path::new("p.csv"), saved, &config()).unwrap();
        assert_eq!((rows, dialect.to_string()), (original.clone(), "semicolon-separated, UTF-8 with BOM, CRLF".into()));
        let saved = b"participant;site\r\nU07;\xD6rebro\r\nU08;V\xE4xj\xF6, CLV\r\n";
        let (rows, dialect) = parse_with_dialect(Kind::Participants, Path::new("p.csv"), saved, &config()).unwrap();
        assert_eq!((rows, dialect.to_string()), (original, "semicolon-separated, Windows-1252, CRLF".into()));
    }

    #[test]
    fn empty_columns_a_spreadsheet_adds_are_ignored_while_they_stay_empty() {
        let rows = run(Kind::Participants, "participant;site;;\r\nU07;Örebro;;\r\nU08;;;\r\n").unwrap();
        assert_eq!(rows, run(Kind::Participants, "participant,site\nU07,Örebro\nU08,\n").unwrap());
        let e = run(Kind::Participants, "participant;;\nU07;;\nU08;Anna Svensson;\n").unwrap_err();
        assert_eq!(e.to_string(), "data.csv:3: column 2 has a value but no name in the header row");
    }

    #[test]
    fn a_file_in_no_known_dialect_is_refused_as_a_whole() {
        let e = run(Kind::Visits, "participant|visit|meal_start\nU07|V0|2026-03-02T08:30\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "data.csv: neither comma- nor semicolon-separated columns match participant,visit,meal_start"
        );
        assert_eq!(e.line, 0, "the whole file: exit 2");
    }

    proptest::proptest! {
        #[test]
        fn samples_in_any_dialect_give_the_rows_of_the_comma_utf8_file(
            rows in proptest::collection::btree_map("[A-Z0-9-]{1,10}", ("U[0-9]{2}", "V[0-4]", -10i32..200), 0..8),
            semicolon: bool,
            crlf: bool,
            bom: bool,
        ) {
            let table = |sep: &str, end: &str| -> String {
                let mut text = ["sample_id", "participant", "visit", "minute"].join(sep) + end;
                for (id, (participant, visit, minute)) in &rows {
                    text += &[id.clone(), participant.clone(), visit.clone(), minute.to_string()].join(sep);
                    text += end;
                }
                text
            };
            let original = run(Kind::Samples, &table(",", "\n")).unwrap();
            let mut saved = if bom { crate::model::UTF8_BOM.to_vec() } else { Vec::new() };
            saved.extend(table(if semicolon { ";" } else { "," }, if crlf { "\r\n" } else { "\n" }).into_bytes());
            // Same rows, same line numbers.
            proptest::prop_assert_eq!(parse(Kind::Samples, Path::new("s.csv"), &saved, &config()).unwrap(), original);
        }
    }

    #[test]
    fn columns_outside_the_format_are_refused() {
        for header in ["participant,name", "participant,date_of_birth", "participant,arm", "participant,site,site"] {
            let e = run(Kind::Participants, &format!("{header}\nU07,x\n")).unwrap_err();
            assert_eq!(e.line, 1, "{header}");
        }
        let e = run(Kind::Samples, "sample_id,participant,visit\nA,U07,V0\n").unwrap_err();
        assert_eq!(e.column.as_deref(), Some("minute"));
        assert!(run(Kind::Participants, "").is_err());
    }
}
