//! Delimiters (MSH-1, MSH-2), escape sequences and character sets.
//!
//! Everything here works on raw bytes. HL7 delimiters are ASCII, and in every
//! character set we accept (UTF-8, the ISO 8859 family, Windows-1252) an ASCII
//! byte always means that ASCII character, so splitting and unescaping bytes
//! first and decoding characters last is exact. Multi-byte sets where that is
//! not true (ISO 2022, Shift-JIS, Big5, UTF-16) are refused instead of
//! tokenised wrongly.

use std::borrow::Cow;

use encoding_rs::{Encoding, WINDOWS_1252};
use memchr::memchr;
use nom::bytes::complete::{tag, take_till, take_while};
use nom::combinator::verify;
use nom::number::complete::u8 as any_byte;
use nom::{IResult, Parser};

type NomError<'a> = nom::error::Error<&'a [u8]>;

/// The delimiters one message declares in MSH-1 and MSH-2.
///
/// Every message carries its own set; receivers must honour whatever the
/// header says, so nothing else in the parser hard-codes `|^~\&`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiters {
    /// MSH-1, the 4th byte of the message (normally `|`).
    pub field: u8,
    /// MSH-2 position 1 (normally `^`).
    pub component: u8,
    /// MSH-2 position 2 (normally `~`).
    pub repetition: u8,
    /// MSH-2 position 3 (normally `\`).
    pub escape: u8,
    /// MSH-2 position 4 (normally `&`).
    pub subcomponent: u8,
    /// MSH-2 position 5, the v2.7 truncation character (normally `#`), only
    /// when the sender declared one.
    pub truncation: Option<u8>,
}

impl Default for Delimiters {
    fn default() -> Self {
        Delimiters {
            field: b'|',
            component: b'^',
            repetition: b'~',
            escape: b'\\',
            subcomponent: b'&',
            truncation: None,
        }
    }
}

impl Delimiters {
    /// Build a set from MSH-1 and the MSH-2 text, with the same checks as a
    /// received header: 4 or 5 distinct punctuation characters, none equal
    /// to the field separator.
    pub fn new(field: u8, encoding_chars: &[u8]) -> Result<Delimiters, String> {
        if !field.is_ascii_punctuation() {
            return Err(format!(
                "MSH-1 field separator: expected a punctuation character such as |, found {}",
                crate::model::shown_safely(&[field])
            ));
        }
        let bad = || {
            format!(
                "MSH-2 encoding characters: expected 4 or 5 distinct characters (^~\\&), found {}",
                crate::model::shown_safely(encoding_chars)
            )
        };
        let distinct = encoding_chars.iter().enumerate().all(|(i, b)| {
            b.is_ascii_punctuation() && *b != field && !encoding_chars.get(..i).unwrap_or_default().contains(b)
        });
        match (encoding_chars, distinct) {
            (&[component, repetition, escape, subcomponent], true) => {
                Ok(Delimiters { field, component, repetition, escape, subcomponent, truncation: None })
            }
            (&[component, repetition, escape, subcomponent, truncation], true) => {
                Ok(Delimiters { field, component, repetition, escape, subcomponent, truncation: Some(truncation) })
            }
            _ => Err(bad()),
        }
    }

    /// A byte that structures the message: it can never appear inside an
    /// escape sequence.
    fn is_structural(&self, b: u8) -> bool {
        b == self.field || b == self.component || b == self.repetition || b == self.subcomponent
    }
}

/// Printable form of raw bytes for error texts, cut short when long.
pub(crate) fn show(bytes: &[u8]) -> String {
    const MAX: usize = 24;
    let head = bytes.get(..MAX).unwrap_or(bytes);
    let mut text: String = String::from_utf8_lossy(head)
        .chars()
        .map(|c| if c.is_control() { char::REPLACEMENT_CHARACTER } else { c })
        .collect();
    if bytes.len() > MAX {
        text.push('…');
    }
    text
}

// msh-start      = "MSH" field-sep encoding-chars field-sep
// field-sep      = punctuation
// encoding-chars = *(any byte except field-sep)      ; 4 or 5, checked after
fn msh_start(i: &[u8]) -> IResult<&[u8], (u8, &[u8]), NomError<'_>> {
    let (i, _) = tag(&b"MSH"[..]).parse(i)?;
    let (i, sep) = verify(any_byte, |b: &u8| b.is_ascii_punctuation()).parse(i)?;
    let (i, enc) = take_till(|b| b == sep).parse(i)?;
    let (i, _) = tag(&[sep][..]).parse(i)?;
    Ok((i, (sep, enc)))
}

/// Read MSH-1 and MSH-2 from the start of an MSH segment.
///
/// MSH-2 runs from the 5th byte to the next field separator, so a v2.7
/// truncation character (`^~\&#`) is part of it and MSH-3 is always the
/// first value after it. Too short, too long, duplicated or alphanumeric
/// characters are errors: guessing would misread every field.
pub(crate) fn read_msh_delimiters(segment: &[u8]) -> Result<Delimiters, String> {
    match msh_start(segment) {
        Ok((_, (sep, enc))) => Delimiters::new(sep, enc),
        Err(_) => {
            let after_id = segment.get(3..).unwrap_or_default();
            match after_id.first() {
                None => Err("MSH: expected MSH-1 and MSH-2 (MSH|^~\\&|…), found end of segment".to_owned()),
                Some(b) if !b.is_ascii_punctuation() => Err(format!(
                    "MSH-1 field separator: expected a punctuation character such as |, found {}",
                    crate::model::shown_safely(&[*b])
                )),
                Some(_) => Err(format!(
                    "MSH-2 encoding characters: expected 4 or 5 distinct characters (^~\\&) and a field separator, \
                     found {}",
                    crate::model::shown_safely(segment.get(3..).unwrap_or_default())
                )),
            }
        }
    }
}

/// Something an escape decoder tolerated, at a byte position in its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EscapeIssue {
    pub at: usize,
    pub text: String,
}

/// What one escape sequence stands for.
enum Decoded<'a> {
    /// A delimiter or a line break.
    Byte(u8),
    /// `\Xhh…\`: bytes in the message's character set.
    Hex(&'a [u8]),
    /// A valid sequence we pass through unchanged (highlighting, formatting
    /// other than `.br`).
    Keep,
    /// A sequence we do not interpret (`\Zxx\`, `\Cxxyy\`, unknown codes).
    Unsupported,
}

// escape-body = code *data ESC      ; the opening ESC is already consumed
// code        = ALPHA / "."
// data        = any byte except ESC and the delimiters
fn escape_body<'a>(d: &Delimiters) -> impl Parser<&'a [u8], Output = &'a [u8], Error = NomError<'a>> {
    let esc = d.escape;
    let d = *d;
    move |i: &'a [u8]| -> IResult<&'a [u8], &'a [u8], NomError<'a>> {
        let start = i;
        let (i, _) = verify(any_byte, |b: &u8| b.is_ascii_alphabetic() || *b == b'.').parse(i)?;
        let (i, _) = take_while(|b| b != esc && !d.is_structural(b)).parse(i)?;
        let body_len = start.len() - i.len();
        let (i, _) = tag(&[esc][..]).parse(i)?;
        Ok((i, start.get(..body_len).unwrap_or_default()))
    }
}

// hex-data = "X" 1*(2HEXDIG)
fn hex_data(body: &[u8]) -> Option<&[u8]> {
    let digits = body.strip_prefix(b"X")?;
    (!digits.is_empty() && digits.len().is_multiple_of(2) && digits.iter().all(u8::is_ascii_hexdigit)).then_some(digits)
}

fn classify<'a>(body: &'a [u8], d: &Delimiters) -> Decoded<'a> {
    match body {
        b"F" => Decoded::Byte(d.field),
        b"S" => Decoded::Byte(d.component),
        b"T" => Decoded::Byte(d.subcomponent),
        b"R" => Decoded::Byte(d.repetition),
        b"E" => Decoded::Byte(d.escape),
        b".br" => Decoded::Byte(b'\n'),
        b"H" | b"N" | b".fi" | b".nf" | b".ce" => Decoded::Keep,
        [b'.', b's', b'p' | b'k', ..] | [b'.', b'i', b'n', ..] | [b'.', b't', b'i', ..] => Decoded::Keep,
        [b'X', ..] => hex_data(body).map_or(Decoded::Unsupported, Decoded::Hex),
        _ => Decoded::Unsupported,
    }
}

fn hex_value(d: u8) -> u8 {
    match d {
        b'0'..=b'9' => d - b'0',
        b'a'..=b'f' => d - b'a' + 10,
        b'A'..=b'F' => d - b'A' + 10,
        _ => 0,
    }
}

/// Decode the escape sequences in `raw` into `out`, once, left to right.
///
/// `raw` is one leaf, or (for OBX-5) one repetition whose component and
/// sub-component separators are written out as `^` and `&` when `join` is
/// set. Sequences never nest: `\E\T\E\` is the literal text `\T\`. Anything
/// malformed, unknown or unterminated is copied literally and reported, so
/// no character is ever dropped. `\.br\` becomes a line feed; the other
/// formatting and highlighting sequences are kept as sent.
pub(crate) fn unescape_into(
    raw: &[u8],
    d: &Delimiters,
    join: bool,
    out: &mut Vec<u8>,
    issues: &mut dyn FnMut(EscapeIssue),
) {
    let copy = |out: &mut Vec<u8>, run: &[u8]| {
        if join && (d.component != b'^' || d.subcomponent != b'&') {
            out.extend(run.iter().map(|&b| match b {
                b if b == d.component => b'^',
                b if b == d.subcomponent => b'&',
                b => b,
            }));
        } else {
            out.extend_from_slice(run);
        }
    };
    let mut pos = 0;
    while let Some(found) = raw.get(pos..).and_then(|rest| memchr(d.escape, rest)) {
        let at = pos + found;
        copy(out, raw.get(pos..at).unwrap_or_default());
        let after = raw.get(at + 1..).unwrap_or_default();
        let Ok((rest, body)) = escape_body(d).parse(after) else {
            // Not an escape sequence: the escape character is data.
            out.push(d.escape);
            issues(EscapeIssue {
                at,
                text: format!("lone escape character \"{}\" kept literally", char::from(d.escape)),
            });
            pos = at + 1;
            continue;
        };
        let next = raw.len() - rest.len();
        match classify(body, d) {
            Decoded::Byte(b) => out.push(b),
            Decoded::Hex(digits) => {
                let before = out.len();
                out.extend(digits.chunks_exact(2).filter_map(|pair| match pair {
                    &[hi, lo] => Some(hex_value(hi) << 4 | hex_value(lo)),
                    _ => None,
                }));
                // `\X000d\` (HAPI) and `\X00E0\` mean UTF-16 code units; the
                // NUL half is never text.
                if out.get(before..).is_some_and(|new| new.contains(&0)) {
                    strip_nuls_from(out, before);
                    issues(EscapeIssue { at, text: format!("NUL bytes in \"{}\" dropped", show_seq(body, d)) });
                }
            }
            Decoded::Keep => out.extend_from_slice(raw.get(at..next).unwrap_or_default()),
            Decoded::Unsupported => {
                out.extend_from_slice(raw.get(at..next).unwrap_or_default());
                issues(EscapeIssue { at, text: format!("escape sequence \"{}\" kept literally", show_seq(body, d)) });
            }
        }
        pos = next;
    }
    copy(out, raw.get(pos..).unwrap_or_default());
}

/// Remove the NUL bytes written at or after `from`.
fn strip_nuls_from(out: &mut Vec<u8>, from: usize) {
    let mut index = 0;
    out.retain(|&b| {
        index += 1;
        index <= from || b != 0
    });
}

fn show_seq(body: &[u8], d: &Delimiters) -> String {
    let e = char::from(d.escape);
    format!("{e}{}{e}", show(body))
}

/// Escape `text` for use as one leaf value under `d`: each delimiter becomes
/// its escape sequence (`|` → `\F\`, `^` → `\S\`, `&` → `\T\`, `~` → `\R\`,
/// `\` → `\E\`), CR and LF become `\X0D\`/`\X0A\`, and a declared truncation
/// character becomes a hex escape so it can never read as "truncated".
pub fn escape(text: &str, d: &Delimiters) -> String {
    let e = char::from(d.escape);
    let mut out = String::with_capacity(text.len() + 8);
    // A value that is exactly `""` would be read back as the HL7 null: write
    // its first quote as hex so the text survives.
    let mut chars = text.chars();
    if text == "\"\"" {
        out.push(e);
        out.push_str("X22");
        out.push(e);
        chars.next();
    }
    for c in chars {
        let b = u8::try_from(c).ok().filter(u8::is_ascii);
        match b {
            Some(b) if b == d.escape => out.extend([e, 'E', e]),
            Some(b) if b == d.field => out.extend([e, 'F', e]),
            Some(b) if b == d.component => out.extend([e, 'S', e]),
            Some(b) if b == d.subcomponent => out.extend([e, 'T', e]),
            Some(b) if b == d.repetition => out.extend([e, 'R', e]),
            Some(b) if Some(b) == d.truncation || b == b'\r' || b == b'\n' => {
                out.push(e);
                out.push_str(&format!("X{b:02X}"));
                out.push(e);
            }
            _ => out.push(c),
        }
    }
    out
}

/// Decode the escape sequences in one leaf value under `d` (the inverse of
/// [`escape`]). Malformed or unknown sequences are kept literally; bytes
/// from `\Xhh\` that are not UTF-8 are read as Windows-1252.
pub fn unescape(text: &str, d: &Delimiters) -> String {
    if memchr(d.escape, text.as_bytes()).is_none() {
        return text.to_owned();
    }
    let mut out = Vec::with_capacity(text.len());
    unescape_into(text.as_bytes(), d, false, &mut out, &mut |_| {});
    Charset::Utf8 { valid: true }.decode(&out).0.into_owned()
}

/// How the bytes of one message become characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Charset {
    /// UTF-8 (also ASCII). `valid` is false when some bytes of the message are
    /// not UTF-8; values holding such bytes are read as Windows-1252.
    Utf8 { valid: bool },
    /// A single-byte set declared in MSH-18 (8859/n).
    Single(&'static Encoding),
}

impl Charset {
    /// Decode value bytes. The flag says the bytes were not valid UTF-8 and
    /// were read as Windows-1252 instead.
    pub(crate) fn decode<'b>(self, bytes: &'b [u8]) -> (Cow<'b, str>, bool) {
        match self {
            Charset::Utf8 { .. } => match std::str::from_utf8(bytes) {
                Ok(text) => (Cow::Borrowed(text), false),
                Err(_) => (WINDOWS_1252.decode_without_bom_handling(bytes).0, true),
            },
            Charset::Single(encoding) => (encoding.decode_without_bom_handling(bytes).0, false),
        }
    }
}

/// The character set a message declares, and what to warn about.
pub(crate) struct CharsetChoice {
    pub charset: Charset,
    /// Warnings, each with the offset (within the message) of the first byte
    /// that is not UTF-8 when that is what it is about, else `None`.
    pub warnings: Vec<(Option<usize>, String)>,
}

/// Choose the character set from MSH-18 (`first` repetition; `alternates`
/// when more are listed) and MSH-20, checking it against the message bytes
/// (`utf8_error`: where the bytes stop being UTF-8, `None` when they are).
///
/// Absent, `ASCII`, `UNICODE UTF-8`: UTF-8, falling back per value to
/// Windows-1252 when bytes are not UTF-8 (labs send raw Latin-1 with no
/// MSH-18). `8859/n`: that set, unless the bytes are valid multi-byte UTF-8,
/// which no Latin text is by accident, so the declaration is wrong and UTF-8
/// is used (with a warning). Sets where an ASCII byte can be half of a
/// character, and ISO 2022 switching, are errors.
pub(crate) fn choose_charset(
    first: &str,
    alternates: bool,
    msh20: &str,
    message: &[u8],
    utf8_error: Option<usize>,
) -> Result<CharsetChoice, String> {
    let mut warnings = Vec::new();
    if alternates {
        if !msh20.is_empty() {
            return Err(
                "MSH-18/MSH-20: character set switching is not supported: expected one character set".to_owned()
            );
        }
        warnings
            .push((None, "MSH-18 lists alternate character sets without MSH-20; only the first is used".to_owned()));
    }
    let is = |name: &str| first.eq_ignore_ascii_case(name);
    let declared: Option<&'static Encoding> =
        if ["", "ASCII", "ISO IR6", "UNICODE UTF-8", "UTF-8", "UNICODE"].into_iter().any(is) {
            None
        } else if is("8859/1") || is("ISO IR100") {
            Some(WINDOWS_1252)
        } else if let Some(part) = first.strip_prefix("8859/") {
            let label = format!("iso-8859-{part}");
            match Encoding::for_label(label.as_bytes()) {
                Some(enc) => Some(enc),
                None => {
                    let shown = crate::model::shown_safely(part.as_bytes());
                    return Err(format!("MSH-18 character set 8859/ followed by {shown} is not supported"));
                }
            }
        } else if ["ISO IR14", "ISO IR87", "ISO IR159", "GB 18030-2000", "KS X 1001", "CNS 11643-1992", "BIG-5"]
            .into_iter()
            .chain(["UNICODE UTF-16", "UNICODE UTF-32"])
            .any(is)
        {
            return Err(format!(
                "MSH-18 character set \"{first}\" is not supported: expected ASCII, 8859/n or UNICODE UTF-8"
            ));
        } else {
            warnings.push((None, format!("MSH-18 character set \"{first}\" is unknown; read as UTF-8")));
            None
        };
    let utf8 = Charset::Utf8 { valid: true };
    match (declared, utf8_error) {
        (None, None) => {
            if is("ASCII") && !message.is_ascii() {
                warnings
                    .push((None, "MSH-18 says ASCII but the message has non-ASCII bytes; read as UTF-8".to_owned()));
            }
            Ok(CharsetChoice { charset: utf8, warnings })
        }
        (None, Some(at)) => {
            let text = "bytes are not valid UTF-8; values holding them are read as Windows-1252".to_owned();
            warnings.push((Some(at), text));
            Ok(CharsetChoice { charset: Charset::Utf8 { valid: false }, warnings })
        }
        (Some(_), None) => {
            if !message.is_ascii() {
                warnings.push((None, format!("MSH-18 says {first} but the bytes are valid UTF-8; read as UTF-8")));
            }
            Ok(CharsetChoice { charset: utf8, warnings })
        }
        (Some(enc), Some(_)) => Ok(CharsetChoice { charset: Charset::Single(enc), warnings }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(raw: &str) -> (String, Vec<String>) {
        dec_with(raw, &Delimiters::default())
    }

    fn dec_with(raw: &str, d: &Delimiters) -> (String, Vec<String>) {
        let mut out = Vec::new();
        let mut issues = Vec::new();
        unescape_into(raw.as_bytes(), d, false, &mut out, &mut |i| issues.push(i.text));
        (Charset::Utf8 { valid: true }.decode(&out).0.into_owned(), issues)
    }

    #[test]
    fn delimiter_escapes_decode_to_the_messages_own_characters() {
        assert_eq!(dec(r"a\F\b\S\c\T\d\R\e\E\f").0, r"a|b^c&d~e\f");
        let custom = Delimiters::new(b'|', b"^!\\&").unwrap();
        assert_eq!(dec_with(r"x\R\y", &custom).0, "x!y");
        let hash_escape = Delimiters::new(b'*', b"^~#&").unwrap();
        assert_eq!(dec_with("a#S#b#E#c\\d", &hash_escape).0, "a^b#c\\d");
    }

    #[test]
    fn escapes_decode_once_never_recursively() {
        assert_eq!(dec(r"\E\T\E\").0, r"\T\");
        assert_eq!(dec(r"ends with \E\").0, r"ends with \");
        assert_eq!(dec(r"Лутеин \T\ x").0, "Лутеин & x");
        assert_eq!(dec(r"é\F\cd").0, "é|cd");
    }

    #[test]
    fn hex_escapes_are_bytes_in_the_message_charset() {
        assert_eq!(dec(r"a\X0D0A\b").0, "a\r\nb");
        assert_eq!(dec(r"\X41\").0, "A");
        let (text, issues) = dec(r"x\X000d\\X0A\y");
        assert_eq!(text, "x\r\ny");
        assert_eq!(issues.len(), 1, "{issues:?}");
        // Latin-1 byte in a UTF-8 message falls back to Windows-1252.
        assert_eq!(dec(r"\X00E0\").0, "à");
    }

    #[test]
    fn malformed_and_unknown_sequences_are_kept_with_a_warning() {
        for raw in [r"\XZZ\", r"\X0\", r"\Q\", r"\Zlocal\", r"\Cxxyy\", r"abc\", r"4\5 re", r"\\"] {
            let (text, issues) = dec(raw);
            assert_eq!(text, raw, "{raw}");
            assert!(!issues.is_empty(), "{raw}");
        }
        assert_eq!(dec(r"\Q\ then \F\").0, r"\Q\ then |");
    }

    #[test]
    fn formatting_sequences_br_is_a_line_break_others_kept() {
        assert_eq!(dec(r"a\.br\b").0, "a\nb");
        let (text, issues) = dec(r"\H\bold\N\ \.sp 2\");
        assert_eq!(text, r"\H\bold\N\ \.sp 2\");
        assert!(issues.is_empty());
    }

    #[test]
    fn protogen_ack_sample_decodes() {
        let (text, _) = dec(r"Hello World: this is \E\S\E\: `\S\' \X0102030D0A30313233\");
        assert_eq!(text, "Hello World: this is \\S\\: `^' \u{1}\u{2}\u{3}\r\n0123");
    }

    #[test]
    fn join_writes_custom_separators_as_caret_and_ampersand() {
        let d = Delimiters::new(b'|', b"!~\\$").unwrap();
        let mut out = Vec::new();
        unescape_into(b"<!0.02$x\\S\\", &d, true, &mut out, &mut |_| {});
        assert_eq!(out, b"<^0.02&x!");
    }

    #[test]
    fn escape_round_trips() {
        let d = Delimiters { truncation: Some(b'#'), ..Delimiters::default() };
        let text = "a|b^c&d~e\\f#g\r\nh µ";
        let escaped = escape(text, &d);
        assert!(!escaped.contains(['|', '^', '&', '~', '#', '\r', '\n']));
        assert_eq!(unescape(&escaped, &d), text);
    }

    #[test]
    fn a_value_of_two_quotes_is_escaped_so_it_is_not_read_as_null() {
        let d = Delimiters::default();
        assert_eq!(escape("\"\"", &d), "\\X22\\\"");
        assert_eq!(unescape(&escape("\"\"", &d), &d), "\"\"");
        assert_eq!(escape("\"\"x", &d), "\"\"x");
    }

    #[test]
    fn header_delimiters_are_validated() {
        let ok = |s: &str| read_msh_delimiters(s.as_bytes());
        assert_eq!(ok("MSH|^~\\&|X").unwrap(), Delimiters::default());
        assert_eq!(ok("MSH|^~\\&#|X").unwrap().truncation, Some(b'#'));
        assert_eq!(ok("MSH*^~\\&*X").unwrap().field, b'*');
        for bad in ["MSH|^~\\|", "MSH|^~\\&#!|", "MSH|^^\\&|", "MSH^^~\\&^", "MSH|^", "MSH|^~\\&", "MSH", "MSHA^~\\&A"]
        {
            let err = ok(bad).unwrap_err();
            assert!(err.starts_with("MSH"), "{bad}: {err}");
        }
        assert_eq!(
            ok("MSH|^~|").unwrap_err(),
            "MSH-2 encoding characters: expected 4 or 5 distinct characters (^~\\&), found \"^~\""
        );
    }

    #[test]
    fn charset_choice_follows_msh18_and_the_bytes() {
        let c = |first: &str, bytes: &[u8]| {
            let error = std::str::from_utf8(bytes).err().map(|e| e.valid_up_to());
            choose_charset(first, false, "", bytes, error).unwrap()
        };
        assert_eq!(c("", b"abc").charset, Charset::Utf8 { valid: true });
        assert!(c("", b"abc").warnings.is_empty());
        let latin = c("", b"10^6/\xB5l");
        assert_eq!(latin.charset, Charset::Utf8 { valid: false });
        assert_eq!(latin.warnings.first().and_then(|w| w.0), Some(5));
        assert_eq!(latin.charset.decode(b"\xB5l").0, "µl");
        assert_eq!(c("8859/1", b"\xB5").charset, Charset::Single(WINDOWS_1252));
        assert!(c("8859/1", b"plain").warnings.is_empty());
        let mismatch = c("8859/1", "µ".as_bytes());
        assert_eq!(mismatch.charset, Charset::Utf8 { valid: true });
        assert_eq!(mismatch.warnings.len(), 1);
        assert_eq!(c("ASCII", "µ".as_bytes()).warnings.len(), 1);
        assert!(choose_charset("ASCII", true, "ISO 2022-1994", b"x", None).is_err());
        assert_eq!(choose_charset("ASCII", true, "", b"x", None).map(|c| c.warnings.len()), Ok(1));
        assert!(choose_charset("UNICODE UTF-16", false, "", b"x", None).is_err());
        assert!(c("8859/2", b"\xB5").charset != Charset::Single(WINDOWS_1252));
        assert_eq!(c("unicode utf-8", b"x").charset, Charset::Utf8 { valid: true });
    }
}
