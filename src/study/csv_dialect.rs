//! How a study data CSV was saved (SPEC §4): comma or semicolon, UTF-8 (with
//! or without a BOM) or Windows-1252, LF or CRLF.
//!
//! Spreadsheets in many European locales save semicolon-separated
//! Windows-1252 with CRLF, so the dialect is detected rather than assumed.
//! Pure: bytes in, text and dialect out; nothing here touches a file.

use std::borrow::Cow;
use std::fmt;

use crate::model::UTF8_BOM;

/// The field separator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delimiter {
    Comma,
    Semicolon,
}

impl Delimiter {
    pub fn byte(self) -> u8 {
        match self {
            Delimiter::Comma => b',',
            Delimiter::Semicolon => b';',
        }
    }
}

/// The character encoding the bytes were read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    /// UTF-8 starting with a byte-order mark (as Excel's "CSV UTF-8" saves it).
    Utf8Bom,
    Windows1252,
}

/// How lines end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnd {
    Lf,
    Crlf,
    /// Old Mac style: CR alone.
    Cr,
    /// More than one kind; still readable.
    Mixed,
    /// One line without a line end.
    None,
}

/// Everything detected about one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    pub delimiter: Delimiter,
    pub encoding: Encoding,
    pub line_end: LineEnd,
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let delimiter = match self.delimiter {
            Delimiter::Comma => "comma-separated",
            Delimiter::Semicolon => "semicolon-separated",
        };
        let encoding = match self.encoding {
            Encoding::Utf8 => "UTF-8",
            Encoding::Utf8Bom => "UTF-8 with BOM",
            Encoding::Windows1252 => "Windows-1252",
        };
        let line_end = match self.line_end {
            LineEnd::Lf => "LF",
            LineEnd::Crlf => "CRLF",
            LineEnd::Cr => "CR",
            LineEnd::Mixed => "mixed line ends",
            LineEnd::None => "a single line",
        };
        write!(f, "{delimiter}, {encoding}, {line_end}")
    }
}

/// Why a file cannot be read as a study data CSV.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialectError {
    #[error("is UTF-16 text; save it as \"CSV UTF-8\" or plain CSV (comma or semicolon)")]
    Utf16,
    #[error("starts with a UTF-8 byte-order mark but is not valid UTF-8 (byte {offset})")]
    BadUtf8AfterBom { offset: usize },
    #[error("is not text: line {line} holds control character U+{code:04X} (neither UTF-8 nor Windows-1252 text)")]
    NotText { line: usize, code: u32 },
    #[error("neither comma- nor semicolon-separated columns match {expected}")]
    NoColumns { expected: String },
}

/// A file's text, decoded and with LF line ends, with its dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded<'a> {
    pub text: Cow<'a, str>,
    pub dialect: Dialect,
}

impl Decoded<'_> {
    /// A CSV reader over the text in this dialect: header row, fields trimmed.
    pub fn reader(&self) -> csv::Reader<&[u8]> {
        csv::ReaderBuilder::new()
            .has_headers(true)
            .delimiter(self.dialect.delimiter.byte())
            .trim(csv::Trim::All)
            .from_reader(self.text.as_bytes())
    }
}

/// Decode `bytes` and find the delimiter whose header row names `columns`
/// (the format's column names, in the order messages list them).
pub fn detect<'a>(bytes: &'a [u8], columns: &[&str]) -> Result<Decoded<'a>, DialectError> {
    let (text, encoding) = decode(bytes)?;
    let delimiter = delimiter(&text, columns)?;
    let line_end = line_end(&text);
    // The csv reader ends records at CR too but counts lines by LF only, so
    // rows of a CRLF file would be named one line early: read LF only.
    let text = if text.contains('\r') { Cow::Owned(text.replace("\r\n", "\n").replace('\r', "\n")) } else { text };
    Ok(Decoded { text, dialect: Dialect { delimiter, encoding, line_end } })
}

/// Valid UTF-8 is UTF-8 (a BOM is dropped); anything else is Windows-1252,
/// the one single-byte encoding Western spreadsheets save in. (A
/// Windows-1252 file whose bytes happen to be valid UTF-8, such as "Ä°",
/// is read as UTF-8: no detector can tell them apart.)
pub fn decode(bytes: &[u8]) -> Result<(Cow<'_, str>, Encoding), DialectError> {
    if bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF") {
        return Err(DialectError::Utf16);
    }
    let (text, encoding) = match bytes.strip_prefix(UTF8_BOM) {
        Some(rest) => match std::str::from_utf8(rest) {
            Ok(text) => (Cow::Borrowed(text), Encoding::Utf8Bom),
            Err(e) => return Err(DialectError::BadUtf8AfterBom { offset: UTF8_BOM.len() + e.valid_up_to() }),
        },
        None => match std::str::from_utf8(bytes) {
            Ok(text) => (Cow::Borrowed(text), Encoding::Utf8),
            Err(_) => (encoding_rs::WINDOWS_1252.decode_without_bom_handling(bytes).0, Encoding::Windows1252),
        },
    };
    // NUL bytes (UTF-16 without a BOM, binary files) and the five bytes
    // Windows-1252 leaves undefined decode to control characters.
    if let Some((at, c)) = text.char_indices().find(|(_, c)| c.is_control() && !matches!(c, '\t' | '\r' | '\n')) {
        let line = 1 + text.get(..at).map_or(0, |head| head.matches('\n').count());
        return Err(DialectError::NotText { line, code: u32::from(c) });
    }
    Ok((text, encoding))
}

/// The delimiter under which the header row holds more known column names;
/// a header with one column is split as the rest of the file suggests.
pub fn delimiter(text: &str, columns: &[&str]) -> Result<Delimiter, DialectError> {
    let header = |d: Delimiter| -> Vec<String> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(d.byte())
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        match reader.records().next() {
            Some(Ok(record)) => record.iter().map(str::to_owned).collect(),
            _ => Vec::new(),
        }
    };
    let (comma, semicolon) = (header(Delimiter::Comma), header(Delimiter::Semicolon));
    // Spreadsheet users type `Participant`; SPEC's names are lower-case.
    let known = |fields: &[String]| fields.iter().filter(|f| columns.contains(&f.to_lowercase().as_str())).count();
    let (by_comma, by_semicolon) = (known(&comma), known(&semicolon));
    if comma.iter().all(String::is_empty) {
        // No header at all: the reader says so, in the format's words.
        return Ok(Delimiter::Comma);
    }
    if by_comma == 0 && by_semicolon == 0 {
        return Err(DialectError::NoColumns { expected: columns.join(",") });
    }
    Ok(match by_comma.cmp(&by_semicolon) {
        std::cmp::Ordering::Greater => Delimiter::Comma,
        std::cmp::Ordering::Less => Delimiter::Semicolon,
        std::cmp::Ordering::Equal if comma == semicolon && text.contains(';') && !text.contains(',') => {
            Delimiter::Semicolon
        }
        std::cmp::Ordering::Equal => Delimiter::Comma,
    })
}

fn line_end(text: &str) -> LineEnd {
    let crlf = text.matches("\r\n").count();
    let lf = text.matches('\n').count() - crlf;
    let cr = text.matches('\r').count() - crlf;
    match (crlf > 0, lf > 0, cr > 0) {
        (false, false, false) => LineEnd::None,
        (true, false, false) => LineEnd::Crlf,
        (false, true, false) => LineEnd::Lf,
        (false, false, true) => LineEnd::Cr,
        _ => LineEnd::Mixed,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SAMPLES: &[&str] = &["sample_id", "participant", "visit", "minute"];
    const PARTICIPANTS: &[&str] = &["participant", "site"];

    fn dialect(bytes: &[u8], columns: &[&str]) -> Result<Dialect, DialectError> {
        detect(bytes, columns).map(|d| d.dialect)
    }

    #[test]
    fn a_swedish_spreadsheet_file_is_read_with_its_o_umlaut() {
        // "Örebro" and "Växjö" in Windows-1252, semicolons, CRLF.
        let bytes = b"participant;site\r\nU07;\xD6rebro\r\nU08;V\xE4xj\xF6\r\n";
        let decoded = detect(bytes, PARTICIPANTS).unwrap();
        assert_eq!(decoded.dialect.to_string(), "semicolon-separated, Windows-1252, CRLF");
        let rows: Vec<Vec<String>> =
            decoded.reader().records().map(|r| r.unwrap().iter().map(str::to_owned).collect()).collect();
        assert_eq!(rows, [["U07", "Örebro"], ["U08", "Växjö"]]);
    }

    #[test]
    fn each_dialect_is_named() {
        let d = dialect(b"\xEF\xBB\xBFsample_id,participant,visit,minute\nA,U07,V0,30\n", SAMPLES).unwrap();
        assert_eq!(d.to_string(), "comma-separated, UTF-8 with BOM, LF");
        let d = dialect("participant;site\nU07;Växjö\n".as_bytes(), PARTICIPANTS).unwrap();
        assert_eq!(d.to_string(), "semicolon-separated, UTF-8, LF");
        assert_eq!(dialect(b"participant", PARTICIPANTS).unwrap().line_end, LineEnd::None);
        assert_eq!(dialect(b"participant\r\nU1\nU2\n", PARTICIPANTS).unwrap().line_end, LineEnd::Mixed);
    }

    #[test]
    fn a_decimal_comma_or_a_comma_in_a_quoted_field_does_not_confuse_the_delimiter() {
        let text = "sample_id;participant;visit;minute\n\"A,1\";U07;V0;30\nB;U07;V0;0,0\n";
        assert_eq!(dialect(text.as_bytes(), SAMPLES).unwrap().delimiter, Delimiter::Semicolon);
        let text = "\"participant\",\"site\"\nU07,\"Uppsala; Akademiska\"\n";
        assert_eq!(dialect(text.as_bytes(), PARTICIPANTS).unwrap().delimiter, Delimiter::Comma);
        // One column: the data rows decide, so "U07;Uppsala" is not read as one code.
        assert_eq!(dialect(b"participant\nU07;Uppsala\n", PARTICIPANTS).unwrap().delimiter, Delimiter::Semicolon);
        assert_eq!(dialect(b"participant\nU07\n", PARTICIPANTS).unwrap().delimiter, Delimiter::Comma);
        // Header names are matched whatever their case.
        assert_eq!(dialect(b"Participant ; SITE\nU07;x\n", PARTICIPANTS).unwrap().delimiter, Delimiter::Semicolon);
        // An unknown column beside a known one is the reader's to refuse, by name.
        assert_eq!(dialect(b"participant,name\nU07,x\n", PARTICIPANTS).unwrap().delimiter, Delimiter::Comma);
    }

    #[test]
    fn unreadable_files_say_why() {
        let e = dialect(b"participant\tvisit\tmeal_start\n", &["participant", "visit", "meal_start"]).unwrap_err();
        assert_eq!(e.to_string(), "neither comma- nor semicolon-separated columns match participant,visit,meal_start");
        let e = dialect(b"\xFF\xFEp\x00a\x00", PARTICIPANTS).unwrap_err();
        assert_eq!(e, DialectError::Utf16);
        let e = dialect(b"participant\nU0\x007\n", PARTICIPANTS).unwrap_err();
        assert_eq!(e, DialectError::NotText { line: 2, code: 0 });
        let e = dialect(b"participant\nU\x8107\n", PARTICIPANTS).unwrap_err();
        assert_eq!(
            e.to_string(),
            "is not text: line 2 holds control character U+0081 (neither UTF-8 nor Windows-1252 text)"
        );
        let e = dialect(b"\xEF\xBB\xBFparticipant\n\xD6\n", PARTICIPANTS).unwrap_err();
        assert_eq!(e, DialectError::BadUtf8AfterBom { offset: 15 });
        // No header at all is left to the reader ("the header row is missing").
        assert_eq!(dialect(b"", PARTICIPANTS).unwrap().delimiter, Delimiter::Comma);
    }

    /// Text every one of the dialects can carry: Windows-1252 letters,
    /// separators, quotes; no leading or trailing space (fields are trimmed).
    /// Not bytes 0x80–0xBF (€, °, …): after a letter such as å they can form
    /// valid UTF-8, and such a Windows-1252 file is then read as UTF-8.
    fn field() -> impl Strategy<Value = String> {
        "[A-Za-z0-9åäöÅÄÖéü ,;\"'.-]{0,12}".prop_map(|s| s.trim().to_owned())
    }

    fn encode(text: &str, encoding: Encoding) -> Vec<u8> {
        match encoding {
            Encoding::Utf8 => text.as_bytes().to_vec(),
            Encoding::Utf8Bom => [UTF8_BOM, text.as_bytes()].concat(),
            Encoding::Windows1252 => encoding_rs::WINDOWS_1252.encode(text).0.into_owned(),
        }
    }

    proptest! {
        #[test]
        fn any_table_written_in_any_dialect_reads_back_the_same(
            rows in prop::collection::vec(prop::collection::vec(field(), 4), 0..6),
            semicolon in any::<bool>(),
            encoding in prop::sample::select(vec![Encoding::Utf8, Encoding::Utf8Bom, Encoding::Windows1252]),
            crlf in any::<bool>(),
        ) {
            let delimiter = if semicolon { Delimiter::Semicolon } else { Delimiter::Comma };
            let mut writer = csv::WriterBuilder::new()
                .delimiter(delimiter.byte())
                .terminator(if crlf { csv::Terminator::CRLF } else { csv::Terminator::Any(b'\n') })
                .from_writer(Vec::new());
            writer.write_record(SAMPLES).unwrap();
            for row in &rows {
                writer.write_record(row).unwrap();
            }
            let text = String::from_utf8(writer.into_inner().unwrap()).unwrap();
            let bytes = encode(&text, encoding);

            let decoded = detect(&bytes, SAMPLES).unwrap();
            prop_assert_eq!(decoded.dialect.delimiter, delimiter);
            // Pure ASCII Windows-1252 is also valid UTF-8, and read as such.
            let ascii = text.is_ascii();
            let expected_encoding = if encoding == Encoding::Windows1252 && ascii { Encoding::Utf8 } else { encoding };
            prop_assert_eq!(decoded.dialect.encoding, expected_encoding);
            prop_assert_eq!(decoded.dialect.line_end, if crlf { LineEnd::Crlf } else { LineEnd::Lf });
            let mut reader = decoded.reader();
            let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
            prop_assert_eq!(header, SAMPLES);
            let back: Vec<Vec<String>> =
                reader.records().map(|r| r.unwrap().iter().map(str::to_owned).collect()).collect();
            prop_assert_eq!(back, rows);
        }
    }
}
