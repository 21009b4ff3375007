//! SAS XPORT version 5 transport files (SAS TS-140), the format FDA and
//! CDISC take datasets in: `export lb --format xpt`.
//!
//! A file is 80-byte records: a library header, one member (dataset) with
//! its descriptor, one 140-byte NAMESTR per variable, then the rows. Numbers
//! are IBM System/360 hexadecimal doubles, not IEEE; text is blank-padded
//! ASCII. Version 5 holds names of 8 characters, labels of 40 and text of
//! 200 bytes, and has no way to say which encoding text is in, so anything
//! else is refused with the variable and row named rather than cut.

use std::fmt;

/// One variable of a dataset: its name, label, and whether it is numeric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variable {
    pub name: &'static str,
    pub label: &'static str,
    pub numeric: bool,
}

/// A dataset as the exports hold it: every field as text, numeric ones as
/// decimal text or empty (missing), in variable order.
pub struct Dataset<'a> {
    /// Member name (`LB`): at most 8 characters.
    pub name: &'a str,
    /// Dataset label: at most 40 characters.
    pub label: &'a str,
    pub variables: &'a [Variable],
    pub rows: &'a [Vec<String>],
}

/// A value XPT v5 cannot hold: which row (0-based) and variable, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    /// `None` for the dataset's own name or label, or a variable's.
    pub row: Option<usize>,
    pub variable: String,
    pub problem: String,
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.row {
            Some(row) => write!(f, "{} of row {}: {}", self.variable, row + 1, self.problem),
            None => write!(f, "{}: {}", self.variable, self.problem),
        }
    }
}

/// The longest text value v5 holds, in bytes.
pub const MAX_TEXT: usize = 200;
/// SAS's ordinary missing numeric value `.`.
pub const MISSING: [u8; 8] = [0x2E, 0, 0, 0, 0, 0, 0, 0];
/// The release written in the headers: readers such as SAS's own XPORT
/// engine expect a SAS version there, and this layout is what 9.4 writes.
const SAS_VERSION: &str = "9.4";
const OS_NAME: &str = "LINUX";
const NAMESTR_LEN: usize = 140;

/// Why a number has no IBM double.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IbmError {
    NotFinite,
    /// Magnitude of 16^63 (about 7.2e75) or more.
    TooLarge,
    /// Non-zero but below 16^-65 (about 5.4e-79).
    TooSmall,
}

impl fmt::Display for IbmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IbmError::NotFinite => "is not a finite number",
            IbmError::TooLarge => "is too large for a SAS number (at most about 7.2e75)",
            IbmError::TooSmall => "is too close to zero for a SAS number (at least about 5.4e-79)",
        })
    }
}

/// An IEEE double as an IBM hexadecimal double: sign bit, 7-bit exponent
/// of 16 (excess 64), 56-bit fraction whose first hex digit is not 0. Every
/// normal double in range converts exactly: its 53-bit significand fits the
/// 56-bit fraction after the at most 3-bit shift hex normalising needs.
pub fn ibm_from_f64(x: f64) -> Result<[u8; 8], IbmError> {
    if !x.is_finite() {
        return Err(IbmError::NotFinite);
    }
    if x == 0.0 {
        return Ok([0; 8]);
    }
    let bits = x.to_bits();
    let sign = if x < 0.0 { 0x80u8 } else { 0 };
    let biased = i32::try_from((bits >> 52) & 0x7FF).unwrap_or(0);
    if biased == 0 {
        // Subnormal: far below the IBM range anyway.
        return Err(IbmError::TooSmall);
    }
    // x = f × 2^p with f = (significand << 3) / 2^56 in [1/2, 1).
    let fraction = ((bits & ((1u64 << 52) - 1)) | (1u64 << 52)) << 3;
    let p = biased - 1022;
    // 16^q with q = ceil(p / 4); shifting f right by 4q − p (0..=3) keeps
    // it in [1/16, 1), and the three low bits shifted out are zero.
    let q = (p + 3).div_euclid(4);
    let shift = 4 * q - p;
    let exponent = q + 64;
    if exponent > 127 {
        return Err(IbmError::TooLarge);
    }
    if exponent < 0 {
        return Err(IbmError::TooSmall);
    }
    let fraction = fraction >> shift;
    let mut out = [0u8; 8];
    out[0] = sign | u8::try_from(exponent).unwrap_or(0);
    out[1..].copy_from_slice(&fraction.to_be_bytes()[1..]);
    Ok(out)
}

/// Write `dataset` as a one-member XPT v5 file. `created` goes into the
/// headers (as SAS's `ddMMMyy:hh:mm:ss`, for created and modified).
pub fn write(dataset: &Dataset<'_>, created: jiff::civil::DateTime) -> Result<Vec<u8>, ValueError> {
    check_name("dataset name", dataset.name)?;
    check_header_text("dataset label", dataset.label, 40)?;
    let lengths = lengths(dataset)?;
    let stamp = sas_datetime(created);

    let mut out = Vec::new();
    record(&mut out, &header("LIBRARY", "000000000000000000000000000000"));
    record(
        &mut out,
        &format!("{:<8}{:<8}{:<8}{:<8}{:<8}{:24}{stamp}", "SAS", "SAS", "SASLIB", SAS_VERSION, OS_NAME, ""),
    );
    record(&mut out, &stamp);
    record(&mut out, &header("MEMBER  ", "000000000000000001600000000140"));
    record(&mut out, &header("DSCRPTR ", "000000000000000000000000000000"));
    let name = dataset.name;
    record(&mut out, &format!("{:<8}{name:<8}{:<8}{:<8}{:<8}{:24}{stamp}", "SAS", "SASDATA", SAS_VERSION, OS_NAME, ""));
    record(&mut out, &format!("{stamp}{:16}{:<40}{:8}", "", dataset.label, ""));
    let count = dataset.variables.len();
    record(&mut out, &header("NAMESTR ", &format!("000000{count:04}00000000000000000000")));

    let mut namestrs = Vec::with_capacity(count * NAMESTR_LEN);
    let mut position = 0usize;
    for (i, (variable, &length)) in dataset.variables.iter().zip(&lengths).enumerate() {
        namestrs.extend_from_slice(&namestr(variable, i + 1, length, position));
        position += length;
    }
    padded(&mut out, namestrs);

    record(&mut out, &header("OBS     ", "000000000000000000000000000000"));
    let mut data = Vec::with_capacity(dataset.rows.len() * position);
    for (r, row) in dataset.rows.iter().enumerate() {
        for ((variable, &length), value) in dataset.variables.iter().zip(&lengths).zip(row) {
            if variable.numeric {
                data.extend_from_slice(&number(value, r, variable)?);
            } else {
                data.extend_from_slice(value.as_bytes());
                data.resize(data.len() + length - value.len(), b' ');
            }
        }
    }
    padded(&mut out, data);
    Ok(out)
}

/// `HEADER RECORD*******{kind} HEADER RECORD!!!!!!!{numbers}` + 2 blanks.
fn header(kind: &str, numbers: &str) -> String {
    format!("HEADER RECORD*******{kind:<8}HEADER RECORD!!!!!!!{numbers}  ")
}

/// Append one 80-byte record (the text is ASCII and at most 80 long).
fn record(out: &mut Vec<u8>, text: &str) {
    let start = out.len();
    out.extend_from_slice(text.as_bytes());
    out.resize(start + 80, b' ');
}

/// Append bytes streamed across records, the last one blank-padded.
fn padded(out: &mut Vec<u8>, bytes: Vec<u8>) {
    let len = bytes.len();
    out.extend(bytes);
    out.resize(out.len() + (80 - len % 80) % 80, b' ');
}

fn namestr(variable: &Variable, number: usize, length: usize, position: usize) -> [u8; NAMESTR_LEN] {
    let mut n = [0u8; NAMESTR_LEN];
    let short = |v: usize| u16::try_from(v).unwrap_or(u16::MAX).to_be_bytes();
    n[0..2].copy_from_slice(&short(if variable.numeric { 1 } else { 2 }));
    n[4..6].copy_from_slice(&short(length));
    n[6..8].copy_from_slice(&short(number));
    n[8..16].copy_from_slice(format!("{:<8}", variable.name).as_bytes());
    n[16..56].copy_from_slice(format!("{:<40}", variable.label).as_bytes());
    n[56..64].fill(b' '); // no format
    n[72..80].fill(b' '); // no informat
    n[84..88].copy_from_slice(&u32::try_from(position).unwrap_or(u32::MAX).to_be_bytes());
    n
}

/// Each variable's length: 8 for numbers; for text the longest value in
/// bytes (at least 1), so no column is wider than its data. Checks names,
/// labels and every text value on the way. define.xml states these same
/// lengths, so it asks here rather than measuring again.
pub fn lengths(dataset: &Dataset<'_>) -> Result<Vec<usize>, ValueError> {
    let mut lengths = Vec::with_capacity(dataset.variables.len());
    for (i, variable) in dataset.variables.iter().enumerate() {
        check_name("variable name", variable.name)?;
        check_header_text(variable.name, variable.label, 40)?;
        if variable.numeric {
            lengths.push(8);
            continue;
        }
        let mut longest = 1;
        for (r, row) in dataset.rows.iter().enumerate() {
            let value = row.get(i).map_or("", String::as_str);
            check_text(value).map_err(|problem| ValueError {
                row: Some(r),
                variable: variable.name.to_owned(),
                problem,
            })?;
            longest = longest.max(value.len());
        }
        lengths.push(longest);
    }
    if let Some((r, row)) = dataset.rows.iter().enumerate().find(|(_, row)| row.len() != dataset.variables.len()) {
        return Err(ValueError {
            row: Some(r),
            variable: String::new(),
            problem: format!("has {} fields for {} variables", row.len(), dataset.variables.len()),
        });
    }
    Ok(lengths)
}

/// A text value: printable ASCII, at most [`MAX_TEXT`] bytes.
fn check_text(value: &str) -> Result<(), String> {
    if let Some(c) = value.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(format!("{value:?} holds {c:?}: SAS XPORT v5 takes printable ASCII only"));
    }
    if value.len() > MAX_TEXT {
        return Err(format!("{} characters: SAS XPORT v5 holds at most {MAX_TEXT}", value.len()));
    }
    Ok(())
}

fn check_header_text(what: &str, text: &str, max: usize) -> Result<(), ValueError> {
    let problem = match check_text(text) {
        Err(problem) => problem,
        Ok(()) if text.len() > max => format!("{text:?} has {} characters: at most {max}", text.len()),
        Ok(()) => return Ok(()),
    };
    Err(ValueError { row: None, variable: format!("label of {what}"), problem })
}

/// A SAS name: 1–8 upper-case letters, digits or `_`, not starting with a digit.
fn check_name(what: &str, name: &str) -> Result<(), ValueError> {
    let fine = (1..=8).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if fine {
        return Ok(());
    }
    Err(ValueError {
        row: None,
        variable: what.to_owned(),
        problem: format!("{name:?} is not a SAS v5 name (1-8 of A-Z, 0-9, _; not starting with a digit)"),
    })
}

/// A numeric field: empty is missing, else decimal text.
fn number(value: &str, row: usize, variable: &Variable) -> Result<[u8; 8], ValueError> {
    if value.is_empty() {
        return Ok(MISSING);
    }
    let problem = match value.parse::<f64>() {
        Ok(x) => match ibm_from_f64(x) {
            Ok(bytes) => return Ok(bytes),
            Err(e) => format!("{value} {e}"),
        },
        Err(_) => format!("{value:?} is not a number"),
    };
    Err(ValueError { row: Some(row), variable: variable.name.to_owned(), problem })
}

/// SAS's DATETIME16. form: `07DEC26:19:27:32`.
fn sas_datetime(t: jiff::civil::DateTime) -> String {
    t.strftime("%d%b%y:%H:%M:%S").to_string().to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// IBM double → f64 (for checking the writer only).
    fn f64_from_ibm(b: [u8; 8]) -> Option<f64> {
        if b == MISSING {
            return None;
        }
        let mut fraction = [0u8; 8];
        fraction[1..].copy_from_slice(&b[1..]);
        let fraction = u64::from_be_bytes(fraction) as f64;
        let exponent = i32::from(b[0] & 0x7F) - 64;
        let magnitude = fraction * 2f64.powi(4 * exponent - 56);
        Some(if b[0] & 0x80 != 0 { -magnitude } else { magnitude })
    }

    /// A variable as read back: name, label, numeric, length.
    type ReadVariable = (String, String, bool, usize);

    /// A minimal reader of what [`write`] writes: dataset name and label,
    /// the variables, and the rows (numbers as text, missing ones empty).
    fn read(bytes: &[u8]) -> (String, String, Vec<ReadVariable>, Vec<Vec<String>>) {
        assert_eq!(bytes.len() % 80, 0);
        let text = |a: usize, b: usize| String::from_utf8(bytes[a..b].to_vec()).unwrap();
        assert!(text(0, 48).starts_with("HEADER RECORD*******LIBRARY HEADER RECORD"));
        let name = text(5 * 80 + 8, 5 * 80 + 16).trim_end().to_owned();
        let label = text(6 * 80 + 32, 6 * 80 + 72).trim_end().to_owned();
        let count: usize = text(7 * 80 + 54, 7 * 80 + 58).parse().unwrap();
        let short = |at: usize| usize::from(u16::from_be_bytes([bytes[at], bytes[at + 1]]));
        let mut variables = Vec::new();
        for i in 0..count {
            let at = 8 * 80 + i * NAMESTR_LEN;
            let n = text(at + 8, at + 16).trim_end().to_owned();
            let l = text(at + 16, at + 56).trim_end().to_owned();
            variables.push((n, l, short(at) == 1, short(at + 4)));
            assert_eq!(short(at + 6), i + 1);
        }
        let obs = 8 * 80 + (count * NAMESTR_LEN).div_ceil(80) * 80;
        assert!(text(obs, obs + 48).starts_with("HEADER RECORD*******OBS     HEADER RECORD"));
        let width: usize = variables.iter().map(|v| v.3).sum();
        let data = &bytes[obs + 80..];
        let mut rows = Vec::new();
        let mut at = 0;
        while at + width <= data.len() && data[at..at + width].iter().any(|&b| b != b' ') {
            let mut row = Vec::new();
            for (_, _, numeric, length) in &variables {
                let field = &data[at..at + length];
                row.push(if *numeric {
                    f64_from_ibm(field.try_into().unwrap()).map(|x| x.to_string()).unwrap_or_default()
                } else {
                    String::from_utf8(field.to_vec()).unwrap().trim_end().to_owned()
                });
                at += length;
            }
            rows.push(row);
        }
        (name, label, variables, rows)
    }

    #[test]
    fn known_ibm_byte_patterns() {
        let cases: [(f64, [u8; 8]); 9] = [
            (1.0, [0x41, 0x10, 0, 0, 0, 0, 0, 0]),
            (-1.0, [0xC1, 0x10, 0, 0, 0, 0, 0, 0]),
            (0.0, [0; 8]),
            (2.0, [0x41, 0x20, 0, 0, 0, 0, 0, 0]),
            (100.0, [0x42, 0x64, 0, 0, 0, 0, 0, 0]),
            (5.5, [0x41, 0x58, 0, 0, 0, 0, 0, 0]),
            (0.017, [0x3F, 0x45, 0xA1, 0xCA, 0xC0, 0x83, 0x12, 0x70]),
            (0.33, [0x40, 0x54, 0x7A, 0xE1, 0x47, 0xAE, 0x14, 0x7C]),
            (0.0625, [0x40, 0x10, 0, 0, 0, 0, 0, 0]),
        ];
        for (x, bytes) in cases {
            assert_eq!(ibm_from_f64(x), Ok(bytes), "{x}");
        }
        assert_eq!(ibm_from_f64(-0.0), Ok([0; 8]));
        assert_eq!(ibm_from_f64(f64::NAN), Err(IbmError::NotFinite));
        assert_eq!(ibm_from_f64(f64::INFINITY), Err(IbmError::NotFinite));
        assert_eq!(ibm_from_f64(1e76), Err(IbmError::TooLarge));
        assert_eq!(ibm_from_f64(1e-79), Err(IbmError::TooSmall));
        assert_eq!(ibm_from_f64(f64::MIN_POSITIVE / 4.0), Err(IbmError::TooSmall));
        // The range's ends: 16^62 × (1 − 2^-53) and 16^-65.
        assert!(ibm_from_f64(16f64.powi(63) * (1.0 - f64::EPSILON / 2.0)).is_ok());
        assert_eq!(ibm_from_f64(16f64.powi(63)), Err(IbmError::TooLarge));
        assert_eq!(ibm_from_f64(16f64.powi(-65)), Ok([0x00, 0x10, 0, 0, 0, 0, 0, 0]));
    }

    proptest! {
        #[test]
        fn every_double_in_range_round_trips_exactly(x in prop::num::f64::NORMAL) {
            match ibm_from_f64(x) {
                Ok(bytes) => {
                    prop_assert_eq!(f64_from_ibm(bytes), Some(x));
                    prop_assert!(bytes[1] >> 4 != 0, "normalised: first hex digit not 0");
                }
                Err(IbmError::TooLarge) => prop_assert!(x.abs() >= 16f64.powi(63)),
                Err(IbmError::TooSmall) => prop_assert!(x.abs() < 16f64.powi(-65)),
                Err(IbmError::NotFinite) => prop_assert!(false),
            }
        }

        #[test]
        fn datasets_read_back_as_written(
            rows in prop::collection::vec(
                ("[ -~]{0,30}", prop::option::of(-1e9f64..1e9), "[A-Z]{0,3}"), 0..20),
        ) {
            let variables = [
                Variable { name: "TEXT", label: "Some text", numeric: false },
                Variable { name: "NUM", label: "A number", numeric: true },
                Variable { name: "CODE_2", label: "A code", numeric: false },
            ];
            // A row of blanks only is padding to a reader: the number keeps rows apart.
            let rows: Vec<Vec<String>> = rows
                .into_iter()
                .map(|(t, n, c)| vec![t, n.map(|n| n.to_string()).unwrap_or_else(|| "1".into()), c])
                .collect();
            let dataset = Dataset { name: "DS", label: "Test data", variables: &variables, rows: &rows };
            let bytes = write(&dataset, "2026-12-07T19:27:32".parse().unwrap()).unwrap();
            let (name, label, vars, back) = read(&bytes);
            prop_assert_eq!((name.as_str(), label.as_str()), ("DS", "Test data"));
            let names: Vec<&str> = vars.iter().map(|v| v.0.as_str()).collect();
            prop_assert_eq!(names, ["TEXT", "NUM", "CODE_2"]);
            let trimmed: Vec<Vec<String>> =
                rows.iter().map(|r| r.iter().map(|f| f.trim_end().to_owned()).collect()).collect();
            prop_assert_eq!(back, trimmed);
        }
    }

    #[test]
    fn the_headers_are_laid_out_as_ts_140_says() {
        let variables = [
            Variable { name: "STUDYID", label: "Study Identifier", numeric: false },
            Variable { name: "LBSEQ", label: "Sequence Number", numeric: true },
        ];
        let rows = vec![vec!["NCT1".to_owned(), "1".to_owned()], vec!["NCT12".to_owned(), String::new()]];
        let dataset = Dataset { name: "LB", label: "Laboratory Test Results", variables: &variables, rows: &rows };
        let bytes = write(&dataset, "2026-12-07T19:27:32".parse().unwrap()).unwrap();
        let rec = |n: usize| String::from_utf8_lossy(&bytes[n * 80..(n + 1) * 80]).into_owned();
        assert_eq!(rec(0), format!("HEADER RECORD*******LIBRARY HEADER RECORD!!!!!!!{}  ", "0".repeat(30)));
        assert_eq!(rec(1), format!("SAS     SAS     SASLIB  9.4     LINUX   {}07DEC26:19:27:32", " ".repeat(24)));
        assert_eq!(rec(2), format!("07DEC26:19:27:32{}", " ".repeat(64)));
        assert_eq!(rec(3), "HEADER RECORD*******MEMBER  HEADER RECORD!!!!!!!000000000000000001600000000140  ");
        assert_eq!(rec(5), format!("SAS     LB      SASDATA 9.4     LINUX   {}07DEC26:19:27:32", " ".repeat(24)));
        assert_eq!(&rec(6)[32..72], format!("{:<40}", "Laboratory Test Results"));
        assert_eq!(rec(7), format!("HEADER RECORD*******NAMESTR HEADER RECORD!!!!!!!0000000002{}  ", "0".repeat(20)));
        // NAMESTR 1: char, length 5 (the longest value), number 1, at 0; NAMESTR 2: numeric, 8, at 5.
        assert_eq!(&bytes[640..648], [0, 2, 0, 0, 0, 5, 0, 1]);
        assert_eq!(&bytes[640 + 84..640 + 88], [0, 0, 0, 0]);
        assert_eq!(&bytes[780..788], [0, 1, 0, 0, 0, 8, 0, 2]);
        assert_eq!(&bytes[780 + 84..780 + 88], [0, 0, 0, 5]);
        // Two NAMESTRs (280 bytes) take 4 records; then OBS; then 2 × 13 bytes padded to 80.
        assert!(rec(12).starts_with("HEADER RECORD*******OBS     HEADER RECORD!!!!!!!"));
        let data = &bytes[13 * 80..];
        assert_eq!(data.len(), 80);
        assert_eq!(&data[..13], b"NCT1 \x41\x10\0\0\0\0\0\0");
        assert_eq!(&data[13..26], b"NCT12\x2E\0\0\0\0\0\0\0");
        assert!(data[26..].iter().all(|&b| b == b' '));
    }

    #[test]
    fn values_v5_cannot_hold_are_refused_naming_the_row_and_variable() {
        let variables = [
            Variable { name: "VISIT", label: "Visit Name", numeric: false },
            Variable { name: "AVAL", label: "Analysis Value", numeric: true },
        ];
        let at = "2026-12-07T19:27:32".parse().unwrap();
        let attempt = |rows: Vec<Vec<String>>| {
            write(&Dataset { name: "X", label: "", variables: &variables, rows: &rows }, at).unwrap_err().to_string()
        };
        let row = |v: &str, n: &str| vec![v.to_owned(), n.to_owned()];
        assert_eq!(
            attempt(vec![row("Baseline", "1"), row("Återbesök", "2")]),
            "VISIT of row 2: \"Återbesök\" holds 'Å': SAS XPORT v5 takes printable ASCII only"
        );
        assert_eq!(
            attempt(vec![row(&"x".repeat(201), "1")]),
            "VISIT of row 1: 201 characters: SAS XPORT v5 holds at most 200"
        );
        assert_eq!(
            attempt(vec![row("a", "1e80")]),
            "AVAL of row 1: 1e80 is too large for a SAS number (at most about 7.2e75)"
        );
        assert_eq!(attempt(vec![row("a", "n/a")]), "AVAL of row 1: \"n/a\" is not a number");
        // 200 bytes is the most v5 holds, and then the variable's length.
        let rows = vec![row(&"x".repeat(200), "1"), row("", "")];
        let dataset = Dataset { name: "X", label: "", variables: &variables, rows: &rows };
        assert_eq!(lengths(&dataset), Ok(vec![200, 8]));
        let (_, _, vars, back) = read(&write(&dataset, at).unwrap());
        assert_eq!(vars[0].3, 200);
        assert_eq!(back[0][0], "x".repeat(200));
        assert_eq!(back[1], ["", ""], "an empty text and a missing number");
        let long_label = [Variable { name: "V", label: "A label that is forty-one characters long", numeric: true }];
        let e = write(&Dataset { name: "X", label: "", variables: &long_label, rows: &[] }, at).unwrap_err();
        assert!(e.to_string().starts_with("label of V: "), "{e}");
        let e =
            write(&Dataset { name: "X", label: &"L".repeat(41), variables: &variables, rows: &[] }, at).unwrap_err();
        assert!(e.to_string().starts_with("label of dataset label: "), "{e}");
        let long = [Variable { name: "LONGNAME1", label: "", numeric: true }];
        let e = write(&Dataset { name: "X", label: "", variables: &long, rows: &[] }, at).unwrap_err();
        assert!(e.to_string().starts_with("variable name: \"LONGNAME1\" is not a SAS v5 name"), "{e}");
    }
}
