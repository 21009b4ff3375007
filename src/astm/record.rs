//! E1394 / LIS02-A2 record syntax: the delimiters a header declares, splitting
//! a record into fields, repeats and components, and escape sequences.
//!
//! Everything works on borrowed bytes: a record is split only as far as the
//! fields the caller asks for, and nothing is allocated unless an escape
//! sequence has to be decoded.

use std::borrow::Cow;

use nom::bytes::complete::{tag, take, take_till};
use nom::combinator::{opt, rest};
use nom::{IResult, Parser};

/// The four delimiters of a message, declared by its header (`H|\^&|`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiters {
    pub field: u8,
    pub repeat: u8,
    pub component: u8,
    /// `None` when the header declares only three delimiters (IMMULITE
    /// `H|\^|`): then no byte starts an escape sequence.
    pub escape: Option<u8>,
}

impl Delimiters {
    /// `|` `\` `^` `&`, the set nearly every analyzer uses.
    pub const STANDARD: Delimiters = Delimiters { field: b'|', repeat: b'\\', component: b'^', escape: Some(b'&') };
    /// IMMULITE (DPC): `H|\^|`, no escape character.
    pub const NO_ESCAPE: Delimiters = Delimiters { field: b'|', repeat: b'\\', component: b'^', escape: None };
    /// Cepheid GeneXpert: `H|@^\|`.
    pub const GENEXPERT: Delimiters = Delimiters { field: b'|', repeat: b'@', component: b'^', escape: Some(b'\\') };
    /// ELITech Selectra: `H|\!~|`.
    pub const SELECTRA: Delimiters = Delimiters { field: b'|', repeat: b'\\', component: b'!', escape: Some(b'~') };
}

/// A header record read up to its delimiter definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub delimiters: Delimiters,
    /// The header after H.2 and its field delimiter, so that H.3 is its first
    /// field. H.2 itself must never be split: it contains the delimiters.
    pub fields_from_h3: &'a [u8],
}

/// Field delimiter, H.2 (the definition) and the header after H.2.
type HeaderParts<'a> = (u8, &'a [u8], &'a [u8]);

// header-start = ("H" / "h") field-delim definition [field-delim rest]
// definition   = repeat-delim component-delim [escape-delim]
fn header_start(input: &[u8]) -> IResult<&[u8], HeaderParts<'_>> {
    let (input, _) = nom::character::complete::one_of("Hh").parse(input)?;
    let (input, field) = take(1usize).parse(input)?;
    let field = field.first().copied().unwrap_or_default();
    let (input, definition) = take_till(|b| b == field).parse(input)?;
    let (input, _) = opt(tag(&[field][..])).parse(input)?;
    let (input, after) = rest(input)?;
    Ok((input, (field, definition, after)))
}

/// Read the delimiters from a header record (`H|\^&|…`, `H|\^|…`, `H|@^\|…`).
///
/// The field delimiter is the byte after `H`; the definition runs to the
/// next field delimiter and holds the repeat, component and (optionally)
/// escape delimiters. They must be distinct, not letters or digits, and not
/// CR or LF, or every later field would be split wrongly.
pub fn read_header(record: &[u8]) -> Result<Header<'_>, String> {
    let (_, (field, definition, after)) = header_start(record)
        .map_err(|_| "H.2 delimiter definition: expected H, a field delimiter and 2 or 3 delimiters".to_owned())?;
    let (repeat, component, escape) = match *definition {
        [r, c] => (r, c, None),
        [r, c, e] => (r, c, Some(e)),
        _ => {
            return Err(format!(
                "H.2 delimiter definition: expected repeat, component and escape delimiters (like \\^&), found {}",
                crate::model::shown_safely(definition)
            ));
        }
    };
    let delimiters = Delimiters { field, repeat, component, escape };
    delimiters.check().map(|()| Header { delimiters, fields_from_h3: after })
}

impl Delimiters {
    /// Distinct, not alphanumeric, not CR/LF.
    pub fn check(&self) -> Result<(), String> {
        let all = [Some(self.field), Some(self.repeat), Some(self.component), self.escape];
        for (i, d) in all.iter().enumerate() {
            let Some(d) = *d else { continue };
            if d.is_ascii_alphanumeric() || d == b'\r' || d == b'\n' {
                return Err(format!(
                    "H.2 delimiter definition: expected delimiters that are not letters, digits, CR or LF, found {:?}",
                    char::from(d)
                ));
            }
            if all.iter().skip(i + 1).any(|&other| other == Some(d)) {
                return Err(format!(
                    "H.2 delimiter definition: expected four different delimiters, found {:?} twice",
                    char::from(d)
                ));
            }
        }
        Ok(())
    }
}

/// The first `N` fields of a record, split on the field delimiter; fields
/// past the end of the record are empty (trailing empty fields may be
/// omitted). Scanning stops after field `N`, so the tail of a long record is
/// never looked at.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a, const N: usize> {
    fields: [&'a [u8]; N],
    /// The number of the first field held (1 for a whole record, 3 for the
    /// header part after H.2).
    first: usize,
}

impl<'a, const N: usize> Fields<'a, N> {
    /// Split `text`, whose first field has number `first` (LIS02 numbering:
    /// the record type letter is field 1).
    pub fn split(text: &'a [u8], field_delimiter: u8, first: usize) -> Self {
        let mut fields: [&'a [u8]; N] = [&[]; N];
        let mut index = 0;
        let mut start = 0;
        crate::scan::for_each_byte(text, field_delimiter, |at| {
            if let Some(slot) = fields.get_mut(index) {
                *slot = text.get(start..at).unwrap_or_default();
            }
            index += 1;
            start = at + 1;
            index < N
        });
        if let Some(slot) = fields.get_mut(index) {
            *slot = text.get(start..).unwrap_or_default();
        }
        Fields { fields, first }
    }

    /// Field `number` (LIS02 numbering), empty if absent or not held.
    pub fn get(&self, number: usize) -> &'a [u8] {
        number.checked_sub(self.first).and_then(|i| self.fields.get(i)).copied().unwrap_or_default()
    }
}

/// The first repeat of a field.
pub fn first_repeat<'a>(field: &'a [u8], delimiters: &Delimiters) -> &'a [u8] {
    field.split(|&b| b == delimiters.repeat).next().unwrap_or_default()
}

/// Component `number` (1-based) of one repeat; empty if absent.
pub fn component<'a>(repeat: &'a [u8], delimiters: &Delimiters, number: usize) -> &'a [u8] {
    number.checked_sub(1).and_then(|n| repeat.split(|&b| b == delimiters.component).nth(n)).unwrap_or_default()
}

/// An escape sequence that was kept as sent instead of being decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptEscape {
    /// The bytes kept, escape characters included (`&X0D0A&`, `&F`).
    pub sequence: Vec<u8>,
    /// No closing escape character before the end of the component.
    pub unterminated: bool,
}

impl KeptEscape {
    /// A short description for a warning.
    pub fn describe(&self) -> String {
        let seq = String::from_utf8_lossy(&self.sequence);
        if self.unterminated {
            format!("unterminated escape sequence {seq:?} kept as sent")
        } else {
            format!("escape sequence {seq:?} kept as sent (only F, S, R and E are decoded)")
        }
    }
}

// delimiter-escape = E ("F" / "S" / "R" / "E") E
fn delimiter_escape(escape: u8, d: Delimiters) -> impl Fn(&[u8]) -> IResult<&[u8], u8> {
    move |input| {
        let (input, (_, code, _)) =
            (tag(&[escape][..]), nom::character::complete::one_of("FSRE"), tag(&[escape][..])).parse(input)?;
        let byte = match code {
            'F' => d.field,
            'S' => d.component,
            'R' => d.repeat,
            _ => escape,
        };
        Ok((input, byte))
    }
}

// other-escape = E *(any byte except E) E   ; kept as sent
fn other_escape(escape: u8) -> impl Fn(&[u8]) -> IResult<&[u8], &[u8]> {
    move |input| {
        nom::combinator::recognize((tag(&[escape][..]), take_till(|b| b == escape), tag(&[escape][..]))).parse(input)
    }
}

/// Decode the escape sequences of one component (`&F& &S& &R& &E&` become the
/// message's field, component, repeat and escape delimiters). Any other
/// sequence (`&X0D0A&`, `&H&`, `&Zxyz&`) and an unterminated one (`&F` at the
/// end) are kept exactly as sent and reported in `kept`. Borrows when there is
/// nothing to decode.
pub fn unescape<'a>(text: &'a [u8], delimiters: &Delimiters, kept: &mut Vec<KeptEscape>) -> Cow<'a, [u8]> {
    let Some(escape) = delimiters.escape else {
        return Cow::Borrowed(text);
    };
    let Some(first) = crate::scan::find(escape, text) else {
        return Cow::Borrowed(text);
    };
    let mut out = Vec::with_capacity(text.len());
    out.extend_from_slice(text.get(..first).unwrap_or_default());
    let mut input = text.get(first..).unwrap_or_default();
    let decode = delimiter_escape(escape, *delimiters);
    let other = other_escape(escape);
    while !input.is_empty() {
        if let Ok((after, byte)) = decode(input) {
            out.push(byte);
            input = after;
        } else if let Ok((after, sequence)) = other(input) {
            out.extend_from_slice(sequence);
            kept.push(KeptEscape { sequence: sequence.to_vec(), unterminated: false });
            input = after;
        } else {
            // A lone escape character with no closing one: keep the rest.
            out.extend_from_slice(input);
            kept.push(KeptEscape { sequence: input.to_vec(), unterminated: true });
            break;
        }
        let next = memchr::memchr(escape, input).unwrap_or(input.len());
        out.extend_from_slice(input.get(..next).unwrap_or_default());
        input = input.get(next..).unwrap_or_default();
    }
    Cow::Owned(out)
}

/// Encode text for one component: each delimiter becomes its escape sequence
/// (`|` → `&F&`, `^` → `&S&`, `\` → `&R&`, `&` → `&E&`). `None` when the text
/// cannot be sent in a field: it holds CR or LF (record ends), or a delimiter
/// while the message has no escape character.
pub fn escape(text: &[u8], delimiters: &Delimiters) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    for &b in text {
        let code = if b == delimiters.field {
            b'F'
        } else if b == delimiters.component {
            b'S'
        } else if b == delimiters.repeat {
            b'R'
        } else if Some(b) == delimiters.escape {
            b'E'
        } else if b == b'\r' || b == b'\n' {
            return None;
        } else {
            out.push(b);
            continue;
        };
        let e = delimiters.escape?;
        out.extend_from_slice(&[e, code, e]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(text: &[u8], d: &Delimiters) -> (Vec<u8>, Vec<KeptEscape>) {
        let mut kept = Vec::new();
        let out = unescape(text, d, &mut kept).into_owned();
        (out, kept)
    }

    #[test]
    fn standard_and_short_and_custom_headers() {
        let h = read_header(b"H|\\^&|||cobas-e411^1").expect("standard");
        assert_eq!(h.delimiters, Delimiters::STANDARD);
        assert_eq!(h.fields_from_h3, b"||cobas-e411^1");
        assert_eq!(read_header(b"H|\\^||PASSWORD|DPC").map(|h| h.delimiters), Ok(Delimiters::NO_ESCAPE));
        assert_eq!(read_header(b"H|@^\\|URM").map(|h| h.delimiters), Ok(Delimiters::GENEXPERT));
        assert_eq!(read_header(b"h|\\!~|||LISHOST").map(|h| h.delimiters), Ok(Delimiters::SELECTRA));
        let bare = read_header(b"H|\\^&").expect("header with H.2 only");
        assert_eq!((bare.delimiters, bare.fields_from_h3), (Delimiters::STANDARD, &b""[..]));
    }

    #[test]
    fn bad_delimiter_definitions_say_what_was_expected() {
        for bad in [&b"H|\\^&&|"[..], b"H|\\|", b"H||", b"H|\\\\&|", b"H|a^&|", b"H|\\^\r|", b"H", b"H|\\^&~|"] {
            let err = read_header(bad).expect_err("must be refused");
            assert!(err.starts_with("H.2 delimiter definition: expected"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn fields_are_numbered_from_the_type_letter_and_missing_ones_are_empty() {
        let f = Fields::<6>::split(b"R|1|^^^GLU|95", b'|', 1);
        assert_eq!((f.get(1), f.get(2), f.get(3), f.get(4)), (&b"R"[..], &b"1"[..], &b"^^^GLU"[..], &b"95"[..]));
        assert_eq!((f.get(5), f.get(6), f.get(7), f.get(0)), (&b""[..], &b""[..], &b""[..], &b""[..]));
        let tail = Fields::<2>::split(b"P|1|2|3", b'|', 1);
        assert_eq!((tail.get(2), tail.get(3)), (&b"1"[..], &b""[..]));
        let h = Fields::<3>::split(b"CTL||sender^1", b'|', 3);
        assert_eq!((h.get(3), h.get(5), h.get(2)), (&b"CTL"[..], &b"sender^1"[..], &b""[..]));
    }

    #[test]
    fn fields_are_the_pieces_between_delimiters() {
        let text: Vec<u8> =
            (0..90u32).map(|i| if (i * 7 + i / 3) % 5 == 0 { b'|' } else { 0x80 | (i as u8) }).collect();
        for len in 0..text.len() {
            let part = text.get(..len).unwrap_or_default();
            let f = Fields::<9>::split(part, b'|', 1);
            let pieces: Vec<&[u8]> = part.split(|&b| b == b'|').chain(std::iter::repeat(&b""[..])).take(9).collect();
            for (n, piece) in (1..).zip(pieces) {
                assert_eq!(f.get(n), piece, "len {len}, field {n}");
            }
            assert_eq!(f.get(10), b"", "len {len}");
        }
    }

    #[test]
    fn repeats_then_components() {
        let d = Delimiters::STANDARD;
        let field = b"^^^117^1\\^^^900^1";
        assert_eq!(first_repeat(field, &d), b"^^^117^1");
        assert_eq!(component(first_repeat(field, &d), &d, 4), b"117");
        assert_eq!(component(b"CREAS^Creatinine", &d, 1), b"CREAS");
        assert_eq!(component(b"a^b", &d, 9), b"");
        assert_eq!(component(b"a^b", &d, 0), b"");
    }

    #[test]
    fn delimiter_escapes_decode_to_the_messages_own_delimiters() {
        let d = Delimiters::STANDARD;
        assert_eq!(decoded(b"Type&R&Screen", &d).0, b"Type\\Screen");
        assert_eq!(decoded(b"&F&&S&&R&&E&", &d).0, b"|^\\&");
        let (out, kept) = decoded(b"Type~R~Screen~S~x~E~", &Delimiters::SELECTRA);
        assert_eq!(out, b"Type\\Screen!x~");
        assert!(kept.is_empty());
        // No escape character: nothing is an escape.
        assert_eq!(decoded(b"a&F&b", &Delimiters::NO_ESCAPE).0, b"a&F&b");
    }

    #[test]
    fn other_escapes_are_kept_as_sent_and_reported() {
        let d = Delimiters::STANDARD;
        let (out, kept) = decoded(b"a&X0D0A&b&Q&c&H&d&F", &d);
        assert_eq!(out, b"a&X0D0A&b&Q&c&H&d&F");
        let seqs: Vec<&[u8]> = kept.iter().map(|k| k.sequence.as_slice()).collect();
        assert_eq!(seqs, [&b"&X0D0A&"[..], b"&Q&", b"&H&", b"&F"]);
        assert_eq!(kept.iter().map(|k| k.unterminated).collect::<Vec<_>>(), [false, false, false, true]);
        assert!(kept.first().is_some_and(|k| k.describe().contains("kept as sent")));
    }

    #[test]
    fn escape_round_trips_and_refuses_what_cannot_be_sent() {
        for d in [Delimiters::STANDARD, Delimiters::GENEXPERT, Delimiters::SELECTRA] {
            let text = b"a|b^c\\d&e@f!g~h";
            let encoded = escape(text, &d).expect("encodable");
            assert!(!encoded.contains(&d.field) && !encoded.contains(&d.component) && !encoded.contains(&d.repeat));
            assert_eq!(decoded(&encoded, &d), (text.to_vec(), vec![]));
        }
        assert_eq!(escape(b"a\rb", &Delimiters::STANDARD), None);
        assert_eq!(escape(b"a^b", &Delimiters::NO_ESCAPE), None);
        assert_eq!(escape(b"a&b", &Delimiters::NO_ESCAPE), Some(b"a&b".to_vec()));
    }
}
