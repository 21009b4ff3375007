//! HL7 acknowledgements (ACK) for received payloads (hl7.md §5.3).
//!
//! [`ack`] builds the ER7 ACK for one received payload from the original's
//! MSH: the original's delimiters (MSH-1, MSH-2 copied as sent), sender and
//! receiver swapped (ACK MSH-3/4 = original MSH-5/6 and the other way round),
//! MSH-7 now, MSH-9 `ACK^<trigger>^ACK`, a new MSH-10, MSH-11 and MSH-12
//! echoed (MSH-18 too, so the ACK declares the character set its echoed
//! bytes are in), then `MSA|<code>|<original MSH-10>` and, for AE/AR, an ERR
//! segment. Segments end with CR. Field values copied from the original are
//! copied as sent (they are already encoded in the same delimiters); text we
//! add is escaped.
//!
//! Decisions where the standard leaves room:
//!
//! - **Original-mode codes only.** MSA-1 is always AA/AE/AR, never CA/CE/CR,
//!   even when MSH-15/16 are valued (enhanced mode, reported by
//!   [`AckMode`]). labfeed sends one acknowledgement per message, after the
//!   commit, on the same connection: it is both the "taken responsibility"
//!   and the application outcome, and table 0008 defines AA/AE/AR for the
//!   enhanced-mode application acknowledgement too. Senders that asked for
//!   no acknowledgement (`NE`) still get one: a synchronous MLLP sender that
//!   waits for an ACK it will never get stalls the link, while an unexpected
//!   ACK is harmless. The SPEC (§7 "MLLP") fixes AA/AE/AR.
//! - **No usable MSH, no echo.** When the payload has no line starting with
//!   `MSH` followed by valid delimiters, nothing in it can be trusted: the
//!   ACK uses the default delimiters, MSA-1 is AR whatever code was asked
//!   for, MSA-2 is empty, and an ERR says why (SPEC §7). Its MSH is still a
//!   complete v2.5.1 header, every required field valued: MSH-3/MSH-4
//!   `labfeed` (we are the sender; the receiver is unknown, MSH-5/6 empty,
//!   both optional), MSH-9 `ACK^^ACK` (no trigger to echo, but the message
//!   structure is required), MSH-11 `P`, MSH-12 `2.5.1`.
//! - **ERR layout by version.** v2.5 and later (and unreadable versions):
//!   ERR-2 location `SEG^seq^field`, ERR-3 `code^text^HL70357`, ERR-4 `E`,
//!   ERR-8 the text (HAPI puts it there too). Before v2.5: ERR-1 as ELD
//!   `SEG^seq^field^code&text&HL70357`. MSA-3 carries the text for versions
//!   before v2.7 (withdrawn there), cut to 80 characters; ERR-8 to 250.
//! - **Character set.** Our text is ASCII unless the original declares
//!   UTF-8 in MSH-18 (`UNICODE UTF-8`); otherwise other characters become
//!   `?`, so the ACK never mixes encodings. Control characters in echoed
//!   values become `\Xhh\` escapes, so an ACK can never hold a CR, LF or an
//!   MLLP block byte inside a field.

use std::fmt::Write as _;

use memchr::memchr2;

use super::encoding::{Delimiters, escape, read_msh_delimiters};
use super::segment::piece;
use crate::model::{MessageOutcome, UTF8_BOM};

const CR: u8 = b'\r';
const LF: u8 = b'\n';
/// MSH-12 of a generic ACK (no usable MSH in the original).
const DEFAULT_VERSION: &str = "2.5.1";
/// MSH-3 and MSH-4 of a generic ACK: labfeed is both the sending
/// application and, lacking anything better at this layer, its facility.
const OWN_APPLICATION: &str = "labfeed";
const OWN_FACILITY: &str = "labfeed";
const MSA3_MAX: usize = 80;
const ERR_TEXT_MAX: usize = 250;

/// The outcome reported in MSA-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckCode {
    /// AA: committed.
    Accept,
    /// AE: the message has an error (content or format); see ERR.
    Error,
    /// AR: refused for a reason unrelated to content (not HL7, too large,
    /// our own failure); the sender decides whether to send it again.
    Reject,
}

impl AckCode {
    /// The original-mode MSA-1 value (table 0008).
    pub fn as_str(self) -> &'static str {
        match self {
            AckCode::Accept => "AA",
            AckCode::Error => "AE",
            AckCode::Reject => "AR",
        }
    }
}

/// Acknowledgement mode the sender asked for (MSH-15/16, hl7.md §5.3).
/// Reported for logging only: see the module docs for why the codes are
/// original-mode either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// MSH-15 and MSH-16 both empty.
    Original,
    /// MSH-15 or MSH-16 valued (table 0155: AL, NE, ER, SU).
    Enhanced,
}

/// HL7 error codes (table 0357) used in ERR-3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    SegmentSequence,
    RequiredFieldMissing,
    DataType,
    TableValueNotFound,
    UnsupportedMessageType,
    UnsupportedEventCode,
    UnsupportedProcessingId,
    UnsupportedVersionId,
    UnknownKey,
    DuplicateKey,
    RecordLocked,
    ApplicationInternal,
}

impl ErrorCode {
    /// The table 0357 code.
    pub fn code(self) -> u16 {
        match self {
            ErrorCode::SegmentSequence => 100,
            ErrorCode::RequiredFieldMissing => 101,
            ErrorCode::DataType => 102,
            ErrorCode::TableValueNotFound => 103,
            ErrorCode::UnsupportedMessageType => 200,
            ErrorCode::UnsupportedEventCode => 201,
            ErrorCode::UnsupportedProcessingId => 202,
            ErrorCode::UnsupportedVersionId => 203,
            ErrorCode::UnknownKey => 204,
            ErrorCode::DuplicateKey => 205,
            ErrorCode::RecordLocked => 206,
            ErrorCode::ApplicationInternal => 207,
        }
    }

    /// The table 0357 display text.
    pub fn description(self) -> &'static str {
        match self {
            ErrorCode::SegmentSequence => "Segment sequence error",
            ErrorCode::RequiredFieldMissing => "Required field missing",
            ErrorCode::DataType => "Data type error",
            ErrorCode::TableValueNotFound => "Table value not found",
            ErrorCode::UnsupportedMessageType => "Unsupported message type",
            ErrorCode::UnsupportedEventCode => "Unsupported event code",
            ErrorCode::UnsupportedProcessingId => "Unsupported processing id",
            ErrorCode::UnsupportedVersionId => "Unsupported version id",
            ErrorCode::UnknownKey => "Unknown key identifier",
            ErrorCode::DuplicateKey => "Duplicate key identifier",
            ErrorCode::RecordLocked => "Application record locked",
            ErrorCode::ApplicationInternal => "Application internal error",
        }
    }
}

/// Where in the original message an error is (ERR-2, ERL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorLocation {
    /// Segment ID, e.g. `OBX`.
    pub segment: String,
    /// 1-based occurrence of that segment ID in the message.
    pub sequence: Option<usize>,
    /// 1-based field position (MSH-1 is the field separator).
    pub field: Option<usize>,
}

/// What went wrong, for the ERR segment (and MSA-3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckError {
    /// Plain text (not escaped; [`ack`] escapes it).
    pub text: String,
    pub code: ErrorCode,
    pub location: Option<ErrorLocation>,
}

impl AckError {
    pub fn new(code: ErrorCode, text: impl Into<String>) -> AckError {
        AckError { text: text.into(), code, location: None }
    }

    pub fn at(mut self, location: ErrorLocation) -> AckError {
        self.location = Some(location);
        self
    }
}

/// The code and error to acknowledge one payload with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckDecision {
    pub code: AckCode,
    pub error: Option<AckError>,
}

impl AckDecision {
    /// Build the ACK for `original` with this decision (see [`ack`]).
    pub fn ack(&self, original: &[u8], now: jiff::Timestamp, control_id: &str) -> Vec<u8> {
        ack(original, self.code, self.error.as_ref(), now, control_id)
    }
}

/// The MSH fields an ACK needs, as raw bytes of the original.
#[derive(Debug, Clone)]
struct Header<'a> {
    d: Delimiters,
    encoding_chars: &'a [u8],
    /// The MSH segment, without its terminator.
    segment: &'a [u8],
}

impl<'a> Header<'a> {
    /// MSH-n (n ≥ 2), raw.
    fn field(&self, n: usize) -> &'a [u8] {
        if n < 2 {
            return &[];
        }
        piece(self.segment, self.d.field, n - 1)
    }

    /// Component `c` (0-based) of the first repetition of MSH-n, raw.
    fn component(&self, n: usize, c: usize) -> &'a [u8] {
        let first = piece(self.field(n), self.d.repetition, 0);
        piece(first, self.d.component, c)
    }

    /// MSH-12 as (major, minor, patch), when it reads as a version.
    fn version(&self) -> Option<(u32, u32, u32)> {
        parse_version(self.component(12, 0))
    }

    fn utf8(&self) -> bool {
        let first = piece(self.field(18), self.d.repetition, 0).trim_ascii();
        first.eq_ignore_ascii_case(b"UNICODE UTF-8") || first.eq_ignore_ascii_case(b"UTF-8")
    }

    fn mode(&self) -> AckMode {
        if self.field(15).trim_ascii().is_empty() && self.field(16).trim_ascii().is_empty() {
            AckMode::Original
        } else {
            AckMode::Enhanced
        }
    }
}

fn parse_version(raw: &[u8]) -> Option<(u32, u32, u32)> {
    let text = std::str::from_utf8(raw.trim_ascii()).ok()?;
    let mut parts = text.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().map_or(Some(0), |p| p.parse().ok())?;
    let patch = parts.next().map_or(Some(0), |p| p.parse().ok())?;
    parts.next().is_none().then_some((major, minor, patch))
}

/// Why a payload has no usable MSH.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NoHeader {
    /// No line starts with `MSH`.
    NotHl7(String),
    /// An MSH whose MSH-1/MSH-2 cannot be read.
    BadDelimiters(String),
}

impl NoHeader {
    fn into_error(self) -> AckError {
        match self {
            NoHeader::NotHl7(text) => AckError::new(ErrorCode::SegmentSequence, text),
            NoHeader::BadDelimiters(text) => AckError::new(ErrorCode::DataType, text).at(ErrorLocation {
                segment: "MSH".to_owned(),
                sequence: Some(1),
                field: Some(2),
            }),
        }
    }
}

/// The first line of `payload` that starts with `MSH` (after a UTF-8 BOM and
/// leading white space), or why there is none.
fn find_header(payload: &[u8]) -> Result<Header<'_>, NoHeader> {
    let body = payload.strip_prefix(UTF8_BOM).unwrap_or(payload);
    let mut rest = body;
    loop {
        let trimmed = rest.trim_ascii_start();
        let end = memchr2(CR, LF, trimmed).unwrap_or(trimmed.len());
        let line = trimmed.get(..end).unwrap_or_default();
        if line.starts_with(b"MSH") {
            let d = read_msh_delimiters(line).map_err(NoHeader::BadDelimiters)?;
            let encoding_chars = piece(line, d.field, 1);
            return Ok(Header { d, encoding_chars, segment: line });
        }
        match trimmed.get(end..) {
            Some(next) if !next.is_empty() => rest = next,
            _ => break,
        }
    }
    let first = body.trim_ascii_start();
    let first = first.get(..memchr2(CR, LF, first).unwrap_or(first.len())).unwrap_or_default();
    Err(NoHeader::NotHl7(if first.is_empty() {
        "not an HL7 message: the payload is empty".to_owned()
    } else {
        format!(
            "not an HL7 message: expected a segment MSH|^~\\&|…, found a line of {}",
            crate::model::shown_safely(first)
        )
    }))
}

/// The acknowledgement mode `original` asks for, when it has a usable MSH.
pub fn ack_mode(original: &[u8]) -> Option<AckMode> {
    find_header(original).ok().map(|h| h.mode())
}

/// Build the ER7 ACK for one received payload (see the module docs).
///
/// `control_id` is the ACK's own MSH-10; `now` goes into MSH-7 (UTC). Never
/// panics, whatever `original` holds. When `original` has no usable MSH the
/// ACK is a generic AR with an empty MSA-2 whatever `code` says, and `error`
/// defaults to the reason the MSH could not be read. Otherwise `error` is
/// written (MSA-3, ERR) for AE and AR only, and AE/AR without an error get
/// no ERR segment.
pub fn ack(
    original: &[u8],
    code: AckCode,
    error: Option<&AckError>,
    now: jiff::Timestamp,
    control_id: &str,
) -> Vec<u8> {
    let stamp = hl7_time(now);
    match find_header(original) {
        Ok(h) => with_header(&h, code, error, &stamp, control_id),
        Err(why) => match error {
            Some(error) => generic(error, &stamp, control_id),
            None => generic(&why.into_error(), &stamp, control_id),
        },
    }
}

fn with_header(h: &Header<'_>, code: AckCode, error: Option<&AckError>, stamp: &str, control_id: &str) -> Vec<u8> {
    let d = &h.d;
    let utf8 = h.utf8();
    let version = h.version();
    let sep = d.field;
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"MSH");
    out.push(sep);
    out.extend_from_slice(h.encoding_chars);
    for n in [5, 6, 3, 4] {
        out.push(sep);
        echo(&mut out, h.field(n), d);
    }
    out.push(sep);
    out.extend_from_slice(stamp.as_bytes());
    out.push(sep); // MSH-8
    out.push(sep);
    out.extend_from_slice(b"ACK");
    let trigger = h.component(9, 1);
    let with_structure = version.is_none_or(|v| v >= (2, 3, 1));
    if !trigger.is_empty() || with_structure {
        out.push(d.component);
        echo(&mut out, trigger, d);
    }
    if with_structure {
        out.push(d.component);
        out.extend_from_slice(b"ACK");
    }
    out.push(sep);
    out.extend_from_slice(text(control_id, d, utf8, usize::MAX).as_bytes());
    for n in [11, 12] {
        out.push(sep);
        echo(&mut out, h.field(n), d);
    }
    let charset = h.field(18);
    if !charset.is_empty() {
        out.extend_from_slice(&[sep; 6]);
        echo(&mut out, charset, d);
    }
    out.push(CR);

    let layout = match version {
        Some(v) if v < (2, 5, 0) => ErrLayout::Eld,
        _ => ErrLayout::Erl,
    };
    let msa3 = version.is_none_or(|v| v < (2, 7, 0));
    let error = if code == AckCode::Accept { None } else { error };
    msa(&mut out, code, h.field(10), error, d, utf8, msa3);
    if let Some(error) = error {
        err(&mut out, error, d, utf8, layout);
    }
    out
}

/// The ACK for a payload with no usable MSH: default delimiters, AR, empty
/// MSA-2, labfeed as sender (see the module docs).
fn generic(error: &AckError, stamp: &str, control_id: &str) -> Vec<u8> {
    let d = Delimiters::default();
    let mut out = Vec::with_capacity(256);
    let control = text(control_id, &d, false, usize::MAX);
    let _ = write!(
        Bytes(&mut out),
        "MSH|^~\\&|{OWN_APPLICATION}|{OWN_FACILITY}|||{stamp}||ACK^^ACK|{control}|P|{DEFAULT_VERSION}\r"
    );
    msa(&mut out, AckCode::Reject, b"", Some(error), &d, false, true);
    err(&mut out, error, &d, false, ErrLayout::Erl);
    out
}

fn msa(
    out: &mut Vec<u8>,
    code: AckCode,
    original_id: &[u8],
    error: Option<&AckError>,
    d: &Delimiters,
    utf8: bool,
    with_text: bool,
) {
    out.extend_from_slice(b"MSA");
    out.push(d.field);
    out.extend_from_slice(code.as_str().as_bytes());
    out.push(d.field);
    echo(out, original_id, d);
    if with_text && let Some(error) = error {
        out.push(d.field);
        out.extend_from_slice(text(&error.text, d, utf8, MSA3_MAX).as_bytes());
    }
    out.push(CR);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrLayout {
    /// v2.1–2.4: ERR-1 error code and location (ELD).
    Eld,
    /// v2.5+: ERR-2 location (ERL), ERR-3 code, ERR-4 severity, ERR-8 text.
    Erl,
}

fn err(out: &mut Vec<u8>, error: &AckError, d: &Delimiters, utf8: bool, layout: ErrLayout) {
    let f = char::from(d.field);
    let c = char::from(d.component);
    let s = char::from(d.subcomponent);
    let location = error.location.as_ref().map(|l| {
        let number = |n: Option<usize>| n.map(|n| n.to_string()).unwrap_or_default();
        let segment = text(&l.segment, d, utf8, 3);
        format!("{segment}{c}{}{c}{}", number(l.sequence), number(l.field))
    });
    let code = error.code.code();
    let description = text(error.code.description(), d, utf8, usize::MAX);
    let message = text(&error.text, d, utf8, ERR_TEXT_MAX);
    let mut line = String::from("ERR");
    match layout {
        ErrLayout::Eld => {
            // ELD: segment^sequence^field^code (CE, so its parts are
            // sub-components).
            let location = location.unwrap_or_else(|| format!("{c}{c}"));
            let _ = write!(line, "{f}{location}{c}{code}{s}{description}{s}HL70357");
        }
        ErrLayout::Erl => {
            let location = location.unwrap_or_default();
            let _ = write!(line, "{f}{f}{location}{f}{code}{c}{description}{c}HL70357{f}E{f}{f}{f}{f}{message}");
        }
    }
    out.extend_from_slice(line.as_bytes());
    out.push(CR);
}

/// Copy a raw field of the original, with control bytes as `\Xhh\` so the
/// ACK stays one line per segment and never holds an MLLP block byte.
fn echo(out: &mut Vec<u8>, raw: &[u8], d: &Delimiters) {
    for &b in raw {
        if b.is_ascii_control() {
            let e = char::from(d.escape);
            let _ = write!(Bytes(out), "{e}X{b:02X}{e}");
        } else {
            out.push(b);
        }
    }
}

/// Our own text as one escaped leaf value: at most `max` characters, tabs
/// and other controls as spaces (CR and LF are hex-escaped by [`escape`]),
/// non-ASCII as `?` unless the message is UTF-8.
fn text(raw: &str, d: &Delimiters, utf8: bool, max: usize) -> String {
    let mut plain: String = raw
        .chars()
        .take(max)
        .map(|ch| match ch {
            '\r' | '\n' => ch,
            ch if ch.is_control() => ' ',
            ch if !ch.is_ascii() && !utf8 => '?',
            ch => ch,
        })
        .collect();
    if raw.chars().nth(max).is_some() {
        // Cut short: mark it, without relying on the truncation character.
        let keep = plain.chars().count().saturating_sub(3);
        plain = plain.chars().take(keep).collect();
        plain.push_str("...");
    }
    escape(&plain, d)
}

/// MSH-7: `YYYYMMDDHHMMSS+0000`.
fn hl7_time(now: jiff::Timestamp) -> String {
    let t = jiff::tz::TimeZone::UTC.to_datetime(now);
    format!("{:04}{:02}{:02}{:02}{:02}{:02}+0000", t.year(), t.month(), t.day(), t.hour(), t.minute(), t.second())
}

/// `fmt::Write` into a byte vector.
struct Bytes<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Decide how to acknowledge one payload from the outcomes of
/// [`parse_file`](super::parse_file) run on that same payload (so error
/// offsets point into it).
///
/// - no usable MSH (not HL7, empty, unreadable MSH-1/MSH-2) → AR;
/// - every message parsed → AA;
/// - otherwise AE with the first error: its text, its location (segment,
///   occurrence, field, from the error offset) and code 102 (data type
///   error) when the text starts by naming a field such as `OBX-5`, else
///   100 (segment sequence error). The parser's errors are texts, so the
///   code is a best guess; the text and location are exact.
///
/// Storing only the messages that parsed, and AA for an exact duplicate
/// (SPEC §7), are the caller's business: this only reads the parse.
pub fn decide(payload: &[u8], outcomes: &[MessageOutcome]) -> AckDecision {
    if let Err(why) = find_header(payload) {
        return AckDecision { code: AckCode::Reject, error: Some(why.into_error()) };
    }
    let first_error = outcomes.iter().find_map(|o| o.as_ref().err());
    match (first_error, outcomes.is_empty()) {
        (Some(e), _) => {
            let code = if e.text.ends_with(super::message::NOT_READ) {
                ErrorCode::UnsupportedMessageType
            } else if names_field(&e.text) {
                ErrorCode::DataType
            } else {
                ErrorCode::SegmentSequence
            };
            let error = AckError { text: e.text.clone(), code, location: locate(payload, e.offset) };
            AckDecision { code: AckCode::Error, error: Some(error) }
        }
        (None, true) => AckDecision {
            code: AckCode::Reject,
            error: Some(AckError::new(ErrorCode::SegmentSequence, "no HL7 message found in the payload")),
        },
        (None, false) => AckDecision { code: AckCode::Accept, error: None },
    }
}

/// Text that starts with a field reference like `OBX-5` or `MSH-12`.
fn names_field(text: &str) -> bool {
    let b = text.as_bytes();
    matches!(b.get(..4), Some([a, b2, c, b'-']) if a.is_ascii_uppercase()
        && b2.is_ascii_alphanumeric() && c.is_ascii_alphanumeric())
        && b.get(4).is_some_and(u8::is_ascii_digit)
}

/// The segment, its occurrence within its message and the field holding
/// byte `offset` of `payload`.
pub fn locate(payload: &[u8], offset: usize) -> Option<ErrorLocation> {
    let head = payload.get(..offset)?;
    let lf_ends = memchr::memchr(CR, payload).is_none();
    let is_end = |b: &u8| *b == CR || (lf_ends && *b == LF);
    let start = head.iter().rposition(is_end).map_or(0, |i| i + 1);
    let line_end = payload.get(start..)?.iter().position(is_end).map_or(payload.len(), |i| start + i);
    let line = payload.get(start..line_end)?;
    let id = line.get(..3).filter(|id| id.iter().all(u8::is_ascii_alphanumeric))?;
    let segment = std::str::from_utf8(id).ok()?.to_owned();
    // Occurrence of this ID since the last MSH before it.
    let before = payload.get(..start)?;
    let mut sequence = 1;
    if id != b"MSH" {
        for seg in before.split(is_end).rev() {
            let seg = seg.trim_ascii_start();
            if seg.starts_with(b"MSH") {
                break;
            }
            if seg.starts_with(id) {
                sequence += 1;
            }
        }
    }
    let sep = *line.get(3)?;
    let within = offset.saturating_sub(start);
    let seps = line.get(..within.min(line.len()))?.iter().filter(|&&b| b == sep).count();
    let field = match (id == b"MSH", seps) {
        (_, 0) => None,
        (true, n) => Some(n + 1),
        (false, n) => Some(n),
    };
    Some(ErrorLocation { segment, sequence: Some(sequence), field })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_773_330_300).unwrap()
    }

    fn lines(ack: &[u8]) -> Vec<String> {
        String::from_utf8(ack.to_vec()).unwrap().split('\r').filter(|l| !l.is_empty()).map(str::to_owned).collect()
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version(b"2.5.1"), Some((2, 5, 1)));
        assert_eq!(parse_version(b"2.4"), Some((2, 4, 0)));
        assert_eq!(parse_version(b"x"), None);
        assert_eq!(parse_version(b""), None);
    }

    #[test]
    fn time_is_utc() {
        assert_eq!(hl7_time(now()), "20260312154500+0000");
    }

    #[test]
    fn old_versions_get_eld_and_no_structure() {
        let msg = b"MSH|^~\\&|LAB|F|US|G|20260101||ORU^R01|X9|P|2.3\rPID|1\r";
        let error = AckError::new(ErrorCode::RequiredFieldMissing, "PID-3 missing").at(ErrorLocation {
            segment: "PID".into(),
            sequence: Some(1),
            field: Some(3),
        });
        let l = lines(&ack(msg, AckCode::Error, Some(&error), now(), "A1"));
        assert_eq!(l[0], "MSH|^~\\&|US|G|LAB|F|20260312154500+0000||ACK^R01|A1|P|2.3");
        assert_eq!(l[1], "MSA|AE|X9|PID-3 missing");
        assert_eq!(l[2], "ERR|PID^1^3^101&Required field missing&HL70357");
    }

    #[test]
    fn msa3_withdrawn_in_2_7() {
        let msg = b"MSH|^~\\&#|LAB|F|US|G|20260101||ORU^R01^ORU_R01|X9|P|2.7\r";
        let error = AckError::new(ErrorCode::DataType, "bad # value");
        let l = lines(&ack(msg, AckCode::Error, Some(&error), now(), "A1"));
        assert!(l[0].starts_with("MSH|^~\\&#|US|G|LAB|F|"), "{}", l[0]);
        assert_eq!(l[1], "MSA|AE|X9");
        assert_eq!(l[2], "ERR|||102^Data type error^HL70357|E||||bad \\X23\\ value");
    }

    #[test]
    fn accept_drops_the_error() {
        let msg = b"MSH|^~\\&|LAB||||||ORU^R01|X9|P|2.5.1\r";
        let error = AckError::new(ErrorCode::DataType, "ignored");
        let l = lines(&ack(msg, AckCode::Accept, Some(&error), now(), "A1"));
        assert_eq!(l, ["MSH|^~\\&|||LAB||20260312154500+0000||ACK^R01^ACK|A1|P|2.5.1", "MSA|AA|X9"]);
    }

    #[test]
    fn control_bytes_in_echoed_fields_are_hex_escaped() {
        let msg = b"MSH|^~\\&|LAB||||||ORU^R01|X\x1c9\x0b|P|2.5.1\r";
        let l = lines(&ack(msg, AckCode::Accept, None, now(), "A1"));
        assert_eq!(l[1], "MSA|AA|X\\X1C\\9\\X0B\\");
    }

    #[test]
    fn long_texts_are_cut() {
        let msg = b"MSH|^~\\&|LAB||||||ORU^R01|X9|P|2.5.1\r";
        let error = AckError::new(ErrorCode::DataType, "x".repeat(500));
        let l = lines(&ack(msg, AckCode::Error, Some(&error), now(), "A1"));
        let msa3 = l[1].rsplit('|').next().unwrap();
        assert_eq!(msa3.len(), 80);
        assert!(msa3.ends_with("..."));
        assert_eq!(l[2].rsplit('|').next().unwrap().len(), 250);
    }

    #[test]
    fn non_ascii_text_only_in_utf8_messages() {
        let latin = b"MSH|^~\\&|LAB||||||ORU^R01|X9|P|2.5.1||||||8859/1\r";
        let utf8 = b"MSH|^~\\&|LAB||||||ORU^R01|X9|P|2.5.1||||||UNICODE UTF-8\r";
        let error = AckError::new(ErrorCode::DataType, "µg/L…");
        let a = lines(&ack(latin, AckCode::Error, Some(&error), now(), "A1"));
        assert!(a[0].ends_with("|P|2.5.1||||||8859/1"), "{}", a[0]);
        assert!(a[1].ends_with("|?g/L?"));
        let b = lines(&ack(utf8, AckCode::Error, Some(&error), now(), "A1"));
        assert!(b[1].ends_with("|µg/L…"));
    }

    #[test]
    fn header_after_bom_and_blank_lines() {
        let msg = b"\xEF\xBB\xBF\r\n  MSH|^~\\&|LAB||||||ORU^R01|X9|P|2.5.1\r";
        assert_eq!(lines(&ack(msg, AckCode::Accept, None, now(), "A1"))[1], "MSA|AA|X9");
    }

    #[test]
    fn bad_delimiters_give_a_generic_reject() {
        let msg = b"MSH|^~|LAB||||||ORU^R01|X9|P|2.5.1\r";
        let l = lines(&ack(msg, AckCode::Accept, None, now(), "A1"));
        assert_eq!(l[0], "MSH|^~\\&|labfeed|labfeed|||20260312154500+0000||ACK^^ACK|A1|P|2.5.1");
        assert!(l[1].starts_with("MSA|AR||MSH-2 encoding characters"), "{}", l[1]);
        let d = decide(msg, &[]);
        assert_eq!(d.code, AckCode::Reject);
        assert_eq!(d.error.unwrap().code, ErrorCode::DataType);
    }

    #[test]
    fn not_hl7_gets_a_complete_2_5_1_header() {
        let l = lines(&ack(b"hello, this is not HL7", AckCode::Accept, None, now(), "A1"));
        assert_eq!(l.len(), 3, "{l:?}");
        let msh: Vec<&str> = l[0].split('|').collect();
        // msh[n] is MSH-(n+1): the segment ID takes index 0, MSH-1 is the separator.
        assert_eq!(msh[0], "MSH");
        assert_eq!(msh[1], "^~\\&", "MSH-2");
        assert_eq!(msh[2], "labfeed", "MSH-3 sending application");
        assert_eq!(msh[3], "labfeed", "MSH-4 sending facility");
        assert_eq!(msh[4..6], ["", ""], "MSH-5/6: receiver unknown");
        assert_eq!(msh[6], "20260312154500+0000", "MSH-7");
        assert_eq!(msh[8], "ACK^^ACK", "MSH-9 type, no trigger, structure");
        assert_eq!(msh[9], "A1", "MSH-10");
        assert_eq!(msh[10], "P", "MSH-11");
        assert_eq!(msh[11], "2.5.1", "MSH-12");
        assert_eq!(msh.len(), 12);
        let msa: Vec<&str> = l[1].split('|').collect();
        assert_eq!(msa[..3], ["MSA", "AR", ""], "MSA-1 AR, MSA-2 empty");
        assert!(l[2].starts_with("ERR|||100^Segment sequence error^HL70357|E|"), "{}", l[2]);
    }

    #[test]
    fn structure_is_sent_from_2_3_1_even_without_a_trigger() {
        let no_trigger = b"MSH|^~\\&|LAB||||||ORU|X9|P|2.5.1\r";
        assert!(lines(&ack(no_trigger, AckCode::Accept, None, now(), "A1"))[0].contains("||ACK^^ACK|A1|"));
        let old = b"MSH|^~\\&|LAB||||||ORU|X9|P|2.3\r";
        assert!(lines(&ack(old, AckCode::Accept, None, now(), "A1"))[0].contains("||ACK|A1|"));
    }

    #[test]
    fn locations() {
        let msg = b"MSH|^~\\&|A|B\rPID|1\rOBX|1|NM\rOBX|2|NM|x\rMSH|^~\\&|C\rOBX|1\r";
        let at = |needle: &[u8]| msg.windows(needle.len()).position(|w| w == needle).unwrap();
        let loc = |o| locate(msg, o).unwrap();
        assert_eq!(loc(at(b"B")), ErrorLocation { segment: "MSH".into(), sequence: Some(1), field: Some(4) });
        assert_eq!(loc(at(b"^~")).field, Some(2));
        assert_eq!(loc(at(b"PID")).field, None);
        assert_eq!(loc(at(b"x")), ErrorLocation { segment: "OBX".into(), sequence: Some(2), field: Some(3) });
        let last = msg.len() - 2;
        assert_eq!(loc(last), ErrorLocation { segment: "OBX".into(), sequence: Some(1), field: Some(1) });
        assert_eq!(locate(msg, msg.len() + 1), None);
    }

    #[test]
    fn field_names() {
        assert!(names_field("OBX-5: bad"));
        assert!(names_field("MSH-12 version"));
        assert!(!names_field("NUL byte"));
        assert!(!names_field("\"xx\" is not a segment"));
    }
}
