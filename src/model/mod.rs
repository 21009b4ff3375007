//! The typed result: what one analyzer result says, as reported.
//!
//! Nothing here is interpreted against the study (no units converted, no
//! participant matched). The parsers fill these types; later layers decide.

mod domain;

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::Serialize;

use crate::timestamp::Timestamp;
use crate::value::{Comparator, Number};

pub(crate) use domain::vocabulary;
pub use domain::{
    MISSING_RESULT_CODE, MessageId, MismatchCode, MismatchId, NotDoneMark, ObservationId, RawId, ReceiptId,
    ResolutionId, ResultId, ResultRow, Slot, SlotStates, Visit,
};

/// The UTF-8 byte order mark some tools write at the start of a file.
pub const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Which wire format a message came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// ASTM E1394 / CLSI LIS02-A2 records, optionally in E1381 link framing.
    Astm,
    /// HL7 v2 ER7 ("pipe-hat"), optionally in MLLP framing or batch envelopes.
    Hl7,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Astm => "astm",
            Format::Hl7 => "hl7",
        }
    }
}

impl LabResult {
    /// The first patient ID sent (what `parse` shows).
    pub fn patient_id(&self) -> Option<&str> {
        self.patient_ids.first().map(String::as_str)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One result (an ASTM R record or an HL7 OBX segment), with the fields the
/// study needs, exactly as the sender reported them.
///
/// Strings are escape-decoded and character-set decoded but otherwise as
/// sent; identifiers are trimmed of padding. `None` means the field was empty
/// or absent: an empty string is never stored, so "no value" has one spelling.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabResult {
    /// Sending application or instrument (ASTM H.5.1, HL7 MSH-3.1); chooses
    /// the instrument for dropped files.
    pub sender: Option<String>,
    /// Specimen ID, the key that ties a result to participant, visit and minute.
    pub sample_id: Option<String>,
    /// Patient IDs as sent, one per repetition (ASTM P.3, else P.4; HL7
    /// PID-3), first component each: a national ID may come before the study
    /// code. Only compared against the sample's participant, never stored.
    pub patient_ids: Vec<String>,
    /// The instrument's or lab's test code (e.g. `CPEP`).
    pub test_code: Option<String>,
    /// The value as reported (`<0.010`, `7,41`, `-1^0.750`).
    pub value: Option<String>,
    /// A censoring comparator in front of the number, if any.
    pub comparator: Option<Comparator>,
    /// The number in `value`, if there is exactly one; never invented.
    pub numeric: Option<Number>,
    pub unit: Option<String>,
    /// Reference range as sent (HL7 OBX-7, ASTM R.6), e.g. `0.37-1.47`.
    pub reference_range: Option<String>,
    pub flags: Option<String>,
    /// Result status as sent (ASTM R.9, HL7 OBX-11): `F`, `C`, `P`, `X`…
    pub status: Option<String>,
    pub collected_at: Option<Timestamp>,
    pub resulted_at: Option<Timestamp>,
    /// Quality-control result: kept apart, never a study result.
    pub qc: bool,
    /// Specimen type as sent (HL7 SPM-4, first repetition, components
    /// joined with `^`), e.g. `SER^Serum^HL70487`.
    pub specimen_type: Option<String>,
    /// Comments attached to this result (ASTM C records, HL7 NTE after OBX),
    /// kept because instruments put data flags there.
    pub comments: Vec<String>,
    /// Byte offset of the result's record or segment in the file.
    pub offset: usize,
}

/// One message (ASTM H…L, HL7 MSH…) that parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedMessage {
    /// 1-based number of the message within its file.
    pub number: usize,
    pub format: Format,
    /// Byte range of the message in the file (framing included), so the raw
    /// bytes can be stored and traced.
    pub span: Range<usize>,
    /// Sender as in the header (ASTM H.5.1, HL7 MSH-3.1), trimmed.
    pub sender: Option<String>,
    /// Message control ID (ASTM H.3, HL7 MSH-10), for de-duplication.
    pub control_id: Option<String>,
    pub results: Vec<LabResult>,
    /// Things that parsed but deserve a look (charset fallback, LF segment
    /// ends, unknown escapes kept literally).
    pub warnings: Vec<Warning>,
}

/// Something tolerated while parsing, with where it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Byte offset in the file.
    pub offset: usize,
    pub text: String,
}

/// Why one message could not be parsed. The rest of the file is still parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageError {
    /// 1-based number of the message within its file.
    pub number: usize,
    /// Byte offset in the file where the problem was found.
    pub offset: usize,
    /// Byte range of the broken message in the file, so it can be quarantined
    /// exactly.
    pub span: Range<usize>,
    /// What was wrong, said as what was expected ("expected ETX or ETB after
    /// frame text", "bad checksum in frame 2: sent 4C, computed 4B").
    pub text: String,
}

/// How an error text shows bytes it found: quoted only when they are a few
/// delimiter characters or one letter (a record type), which cannot
/// identify anyone; anything else only by its length, because error texts
/// reach mismatch details, the audit log, reason files and logs (SPEC §7).
pub fn shown_safely(bytes: &[u8]) -> String {
    let delimiters = bytes.len() <= 5 && bytes.iter().all(u8::is_ascii_punctuation);
    let letter = matches!(bytes, [b] if b.is_ascii_alphanumeric());
    if !bytes.is_empty() && (delimiters || letter) {
        format!("\"{}\"", String::from_utf8_lossy(bytes))
    } else {
        match bytes.len() {
            0 => "nothing".to_owned(),
            1 => "1 byte (not shown)".to_owned(),
            n => format!("{n} bytes (not shown)"),
        }
    }
}

/// `text` with control characters (newline, ESC, DEL, C1) and bidi
/// overrides escaped (`\n`, `\u{1b}`): a file name or origin shown in a log
/// line, a report or a terminal can then neither start a forged line nor
/// send an escape sequence. Everything else is kept as it is.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// What the parsers produce, one per message, in file order.
pub type MessageOutcome = Result<ParsedMessage, MessageError>;

/// A [`LabResult`] as the parsers read it: text borrowed from the input
/// unless escapes or the character set had to be decoded. Consumers that
/// only count or check (`parse --format summary`) take views and allocate
/// next to nothing; [`ResultView::into_owned`] gives the owned result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResultView<'a> {
    pub sender: Option<Cow<'a, str>>,
    pub sample_id: Option<Cow<'a, str>>,
    pub patient_ids: Vec<Cow<'a, str>>,
    pub test_code: Option<Cow<'a, str>>,
    pub value: Option<Cow<'a, str>>,
    pub comparator: Option<Comparator>,
    pub numeric: Option<Number>,
    pub unit: Option<Cow<'a, str>>,
    pub reference_range: Option<Cow<'a, str>>,
    pub flags: Option<Cow<'a, str>>,
    pub status: Option<Cow<'a, str>>,
    pub collected_at: Option<Timestamp>,
    pub resulted_at: Option<Timestamp>,
    pub qc: bool,
    pub specimen_type: Option<Cow<'a, str>>,
    pub comments: Vec<Cow<'a, str>>,
    pub offset: usize,
}

fn owned(text: Option<Cow<'_, str>>) -> Option<String> {
    text.map(Cow::into_owned)
}

impl ResultView<'_> {
    pub fn into_owned(self) -> LabResult {
        // Taken apart whole, so a field added to either struct fails to compile here.
        let ResultView {
            sender,
            sample_id,
            patient_ids,
            test_code,
            value,
            comparator,
            numeric,
            unit,
            reference_range,
            flags,
            status,
            collected_at,
            resulted_at,
            qc,
            specimen_type,
            comments,
            offset,
        } = self;
        LabResult {
            sender: owned(sender),
            sample_id: owned(sample_id),
            patient_ids: patient_ids.into_iter().map(Cow::into_owned).collect(),
            test_code: owned(test_code),
            value: owned(value),
            comparator,
            numeric,
            unit: owned(unit),
            reference_range: owned(reference_range),
            flags: owned(flags),
            status: owned(status),
            collected_at,
            resulted_at,
            qc,
            specimen_type: owned(specimen_type),
            comments: comments.into_iter().map(Cow::into_owned).collect(),
            offset,
        }
    }
}

/// A [`ParsedMessage`] whose results are [`ResultView`]s.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageView<'a> {
    pub number: usize,
    pub format: Format,
    pub span: Range<usize>,
    pub sender: Option<Cow<'a, str>>,
    pub control_id: Option<Cow<'a, str>>,
    pub results: Vec<ResultView<'a>>,
    pub warnings: Vec<Warning>,
}

impl MessageView<'_> {
    pub fn into_owned(self) -> ParsedMessage {
        let MessageView { number, format, span, sender, control_id, results, warnings } = self;
        ParsedMessage {
            number,
            format,
            span,
            sender: owned(sender),
            control_id: owned(control_id),
            results: results.into_iter().map(ResultView::into_owned).collect(),
            warnings,
        }
    }
}

/// What the parsers produce before anything is copied out of the input.
pub type ViewOutcome<'a> = Result<MessageView<'a>, MessageError>;

/// The number of a message parsed apart from the messages before it, once
/// they have been counted.
pub fn renumber(outcome: &mut ViewOutcome<'_>, number: usize) {
    match outcome {
        Ok(message) => message.number = number,
        Err(error) => error.number = number,
    }
}

/// Options that change how values are read, and how many threads may read them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParseOptions {
    /// Read `7,41` as 7.41 (instruments configured for a decimal comma).
    pub decimal_comma: bool,
    /// Threads that may parse one large file at once (0 or 1: the caller's
    /// alone). The outcomes, their order and their numbers never depend on it.
    pub threads: usize,
}

/// 1-based line number of `offset` in `bytes`, counting CR, LF and CRLF each
/// as one line end (ASTM files use CR alone).
pub fn line_at(bytes: &[u8], offset: usize) -> usize {
    LineCounter::new(bytes).line_at(offset)
}

/// Line numbers for increasing offsets in one file without rescanning from
/// the start each time (diagnostics come in file order; a file with many
/// warnings must not make reporting quadratic).
#[derive(Debug, Clone)]
pub struct LineCounter<'a> {
    bytes: &'a [u8],
    offset: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        LineCounter { bytes, offset: 0, line: 1 }
    }

    /// The 1-based line of `offset` (as [`line_at`]).
    pub fn line_at(&mut self, offset: usize) -> usize {
        let offset = offset.min(self.bytes.len());
        if offset < self.offset {
            self.offset = 0;
            self.line = 1;
        }
        let Some(stretch) = self.bytes.get(self.offset..offset) else { return self.line };
        // A CR just before the stretch pairs with an LF at its start.
        let before_stretch = self.offset.checked_sub(1).and_then(|i| self.bytes.get(i)).copied();
        for at in memchr::memchr2_iter(b'\r', b'\n', stretch) {
            let previous = at.checked_sub(1).map_or(before_stretch, |i| stretch.get(i).copied());
            match stretch.get(at) {
                Some(b'\r') => self.line += 1,
                Some(b'\n') if previous != Some(b'\r') => self.line += 1,
                _ => {}
            }
        }
        self.offset = offset;
        self.line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_control_characters_only() {
        assert_eq!(printable("e411 run.astm"), "e411 run.astm");
        assert_eq!(printable("a\nb\x1b[31mc\td\u{202E}é"), "a\\nb\\u{1b}[31mc\\td\\u{202e}é");
    }

    /// Line of `offset` counted byte by byte: CR, LF and CRLF end one line each.
    fn line_by_bytes(text: &[u8], offset: usize) -> usize {
        let upto = text.get(..offset.min(text.len())).unwrap_or_default();
        let ends =
            upto.iter().enumerate().filter(|&(i, &b)| b == b'\r' || b == b'\n' && (i == 0 || upto[i - 1] != b'\r'));
        1 + ends.count()
    }

    #[test]
    fn line_counter_agrees_with_counting_bytes_in_any_order() {
        let text = b"a\rb\nc\r\nd\r\n\ne\n\r\r";
        let mut counter = LineCounter::new(text);
        for offset in [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 4, 0, 13, 7, 8, 14, 15, 16, 99] {
            assert_eq!(counter.line_at(offset), line_by_bytes(text, offset), "offset {offset}");
        }
    }

    proptest::proptest! {
        #[test]
        fn line_counter_counts_as_bytes_do(text in proptest::collection::vec(proptest::sample::select(b"\r\nab".to_vec()), 0..200), offsets in proptest::collection::vec(0usize..220, 1..12)) {
            let mut counter = LineCounter::new(&text);
            for offset in offsets {
                proptest::prop_assert_eq!(counter.line_at(offset), line_by_bytes(&text, offset));
            }
        }
    }

    #[test]
    fn only_delimiters_and_single_letters_are_shown() {
        assert_eq!(shown_safely(b"^~"), "\"^~\"");
        assert_eq!(shown_safely(b"X"), "\"X\"");
        assert_eq!(shown_safely(b"Johansson"), "9 bytes (not shown)");
        assert_eq!(shown_safely(b"1"), "\"1\"");
        assert_eq!(shown_safely(b"\x02"), "1 byte (not shown)");
        assert_eq!(shown_safely(b"^~\\&#|"), "6 bytes (not shown)");
        assert_eq!(shown_safely(b""), "nothing");
    }

    #[test]
    fn line_counts_cr_lf_and_crlf_once_each() {
        let text = b"a\rb\nc\r\nd";
        assert_eq!(line_at(text, 0), 1);
        assert_eq!(line_at(text, 2), 2);
        assert_eq!(line_at(text, 4), 3);
        assert_eq!(line_at(text, 7), 4);
        assert_eq!(line_at(text, 999), 4);
    }
}
