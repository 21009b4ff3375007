//! Splitting bytes into messages, envelope segments, segments and fields.
//!
//! # Segment terminators
//!
//! HL7 ends segments with CR only, but files arrive with LF or CRLF, and a
//! literal LF also turns up inside NTE text. The policy (hl7.md §0 item 1):
//! when a message contains any CR, CR ends segments (with LFs right next to
//! it, so CRLF and LFCR work) and any other LF is data; when it contains no
//! CR at all, LF ends segments. Every segment must then start with a segment
//! ID, so a wrapped line (`M|||…` continuing a PID) is reported, never read
//! as a segment called `M||`.
//!
//! # Units
//!
//! A file is cut into units at line starts that begin `MSH`, `FHS`, `BHS`,
//! `BTS` or `FTS`: each MSH starts a message that runs to the next unit, and
//! the envelope segments stand alone. Anything before the first unit is a
//! stray part, reported as broken. Line starts are found with `memchr2`, so
//! this costs one scan of the file.

use std::ops::Range;

use memchr::{memchr, memchr2};

use crate::scan::{find, for_each_byte};

pub(crate) const CR: u8 = b'\r';
pub(crate) const LF: u8 = b'\n';

/// What a unit of a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnitKind {
    Message,
    FileHeader,
    BatchHeader,
    BatchTrailer,
    FileTrailer,
    /// Lines before the first MSH/FHS/BHS that belong to no message.
    Stray,
}

impl UnitKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            UnitKind::Message => "MSH",
            UnitKind::FileHeader => "FHS",
            UnitKind::BatchHeader => "BHS",
            UnitKind::BatchTrailer => "BTS",
            UnitKind::FileTrailer => "FTS",
            UnitKind::Stray => "",
        }
    }
}

/// One message, envelope segment or stray part, with what its line ends
/// look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unit {
    pub kind: UnitKind,
    /// Byte range in the file, including the terminators and blank lines
    /// after it.
    pub range: Range<usize>,
    pub has_cr: bool,
    pub has_lf: bool,
    /// An LF with no CR next to it (data, when the unit has CRs).
    pub bare_lf: bool,
    /// An LF right before or after a CR (CRLF or LFCR line ends).
    pub lf_at_cr: bool,
}

// unit-start = ("MSH" / "FHS" / "BHS" / "BTS" / "FTS") (non-alphanumeric / end)
fn unit_kind_at(rest: &[u8]) -> Option<UnitKind> {
    let (id, after) = rest.split_at_checked(3)?;
    let kind = match id {
        b"MSH" => UnitKind::Message,
        b"FHS" => UnitKind::FileHeader,
        b"BHS" => UnitKind::BatchHeader,
        b"BTS" => UnitKind::BatchTrailer,
        b"FTS" => UnitKind::FileTrailer,
        _ => return None,
    };
    match after.first() {
        Some(b) if b.is_ascii_alphanumeric() => None,
        _ => Some(kind),
    }
}

/// Cut `input[range]` into units. Leading white space is skipped.
pub(crate) fn units(input: &[u8], range: Range<usize>) -> Vec<Unit> {
    let mut found = Vec::new();
    let Some(bytes) = input.get(range.clone()) else { return found };
    let Some(first) = bytes.iter().position(|b| !b.is_ascii_whitespace()) else { return found };
    let base = range.start;
    let mut current = Unit {
        kind: unit_kind_at(bytes.get(first..).unwrap_or_default()).unwrap_or(UnitKind::Stray),
        range: base + first..range.end,
        has_cr: false,
        has_lf: false,
        bare_lf: false,
        lf_at_cr: false,
    };
    let mut pos = first;
    while let Some(found_at) = bytes.get(pos..).and_then(|rest| memchr2(CR, LF, rest)) {
        let end = pos + found_at;
        let next = end + 1;
        if bytes.get(end) == Some(&CR) {
            current.has_cr = true;
        } else {
            current.has_lf = true;
            let before = end.checked_sub(1).and_then(|i| bytes.get(i));
            if before != Some(&CR) && bytes.get(next) != Some(&CR) {
                current.bare_lf = true;
            } else {
                current.lf_at_cr = true;
            }
        }
        if let Some(kind) = bytes.get(next..).and_then(unit_kind_at) {
            current.range.end = base + next;
            let done = std::mem::replace(
                &mut current,
                Unit {
                    kind,
                    range: base + next..range.end,
                    has_cr: false,
                    has_lf: false,
                    bare_lf: false,
                    lf_at_cr: false,
                },
            );
            found.push(done);
        }
        pos = next;
    }
    found.push(current);
    found
}

/// Which byte ends segments in one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// CR (with adjacent LFs) ends segments; other LFs are data.
    Cr,
    /// The message has no CR: LF ends segments.
    Lf,
}

/// One segment's bytes (terminator excluded) and where they start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Piece<'a> {
    pub bytes: &'a [u8],
    pub offset: usize,
}

/// The non-blank segments of one message, in order.
pub(crate) struct Segments<'a> {
    input: &'a [u8],
    pos: usize,
    end: usize,
    mode: Mode,
}

impl<'a> Segments<'a> {
    pub(crate) fn new(input: &'a [u8], range: Range<usize>, mode: Mode) -> Segments<'a> {
        Segments { input, pos: range.start, end: range.end.min(input.len()), mode }
    }
}

impl<'a> Iterator for Segments<'a> {
    type Item = Piece<'a>;

    fn next(&mut self) -> Option<Piece<'a>> {
        let terminator = match self.mode {
            Mode::Cr => CR,
            Mode::Lf => LF,
        };
        while self.pos < self.end {
            let rest = self.input.get(self.pos..self.end)?;
            let len = memchr(terminator, rest).unwrap_or(rest.len());
            let mut start = self.pos;
            let mut line = rest.get(..len).unwrap_or_default();
            self.pos += len + 1;
            if self.mode == Mode::Cr {
                // LFs next to the CR belong to the terminator (CRLF, LFCR).
                let lead = line.iter().take_while(|&&b| b == LF).count();
                start += lead;
                line = line.get(lead..).unwrap_or_default();
                let trail = line.iter().rev().take_while(|&&b| b == LF).count();
                line = line.get(..line.len() - trail).unwrap_or_default();
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Some(Piece { bytes: line, offset: start });
        }
        None
    }
}

/// The segment ID when `segment` starts with one followed by the field
/// separator or the end of the segment; lowercase and two-letter IDs are
/// not segments. Three bytes, checked directly (every line of every message
/// goes through here).
// segment-id = UPPER 2(UPPER / DIGIT)
pub(crate) fn valid_id(segment: &[u8], field_sep: u8) -> Option<&[u8]> {
    let upper_or_digit = |b: &u8| b.is_ascii_uppercase() || b.is_ascii_digit();
    let (id, rest) = segment.split_at_checked(3)?;
    let ok = matches!(id, [first, second, third] if first.is_ascii_uppercase() && upper_or_digit(second) && upper_or_digit(third));
    let ended = rest.first().is_none_or(|&b| b == field_sep);
    (ok && ended).then_some(id)
}

/// Highest field number kept when a segment is split (OBR-25 is the highest
/// we read).
pub(crate) const MAX_FIELD: usize = 25;

/// A segment's fields 0..=MAX_FIELD as borrowed slices; no allocation.
/// Absent fields are empty slices at the end of the segment, so offsets
/// computed from them stay inside the file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields<'a> {
    items: [&'a [u8]; MAX_FIELD + 1],
}

impl<'a> Fields<'a> {
    /// Split a segment: field 0 is the segment ID, field n the n-th value.
    #[cfg(test)]
    pub(crate) fn split(segment: &'a [u8], sep: u8) -> Fields<'a> {
        Fields::split_upto(segment, sep, MAX_FIELD)
    }

    /// Split a segment up to field `last` (the fields after it are not
    /// needed, so their bytes are not scanned).
    #[inline]
    pub(crate) fn split_upto(segment: &'a [u8], sep: u8, last: usize) -> Fields<'a> {
        Fields::split_shifted(segment, sep, 0, last)
    }

    /// Split MSH, whose numbering is special: MSH-1 is the separator itself,
    /// MSH-2 the encoding characters, MSH-3 the first value after them.
    #[inline]
    pub(crate) fn split_msh(segment: &'a [u8], sep: u8) -> Fields<'a> {
        let mut fields = Fields::split_shifted(segment, sep, 1, MAX_FIELD);
        if let Some(slot) = fields.items.get_mut(1) {
            *slot = segment.get(3..4).unwrap_or_default();
        }
        fields
    }

    #[inline]
    fn split_shifted(segment: &'a [u8], sep: u8, shift: usize, last: usize) -> Fields<'a> {
        let end = segment.get(segment.len()..).unwrap_or_default();
        let mut items = [end; MAX_FIELD + 1];
        let last = last.min(MAX_FIELD);
        let mut index = shift;
        let mut start = 0;
        for_each_byte(segment, sep, |at| {
            if let Some(slot) = items.get_mut(index) {
                *slot = segment.get(start..at).unwrap_or_default();
            }
            index += 1;
            start = at + 1;
            index <= last
        });
        if index <= last
            && let Some(slot) = items.get_mut(index)
        {
            *slot = segment.get(start..).unwrap_or_default();
        }
        Fields { items }
    }

    /// Field `n` (empty when absent or beyond MAX_FIELD).
    pub(crate) fn get(&self, n: usize) -> &'a [u8] {
        self.items.get(n).copied().unwrap_or_default()
    }
}

/// The `n`-th (0-based) piece of `s` split on `sep`; an empty slice at the
/// end of `s` when there are fewer pieces.
#[inline]
pub(crate) fn piece(s: &[u8], sep: u8, n: usize) -> &[u8] {
    let mut rest = s;
    for _ in 0..n {
        match find(sep, rest) {
            Some(i) => rest = rest.get(i + 1..).unwrap_or_default(),
            None => return rest.get(rest.len()..).unwrap_or_default(),
        }
    }
    match find(sep, rest) {
        Some(i) => rest.get(..i).unwrap_or_default(),
        None => rest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(text: &[u8], mode: Mode) -> Vec<&[u8]> {
        Segments::new(text, 0..text.len(), mode).map(|p| p.bytes).collect()
    }

    #[test]
    fn cr_crlf_lfcr_give_the_same_segments() {
        let expected: Vec<&[u8]> = vec![b"MSH|x", b"PID|1", b"OBX|2"];
        assert_eq!(segs(b"MSH|x\rPID|1\rOBX|2\r", Mode::Cr), expected);
        assert_eq!(segs(b"MSH|x\r\nPID|1\r\nOBX|2\r\n", Mode::Cr), expected);
        assert_eq!(segs(b"MSH|x\n\rPID|1\n\rOBX|2\n\r", Mode::Cr), expected);
        assert_eq!(segs(b"MSH|x\rPID|1\r\r\nOBX|2\r\n\n", Mode::Cr), expected);
        assert_eq!(segs(b"MSH|x\nPID|1\n\nOBX|2", Mode::Lf), expected);
    }

    #[test]
    fn bare_lf_is_data_in_cr_mode() {
        assert_eq!(segs(b"NTE|1||a\nb\rOBX|1\r", Mode::Cr), vec![&b"NTE|1||a\nb"[..], b"OBX|1"]);
    }

    #[test]
    fn units_split_at_msh_and_envelopes_only_at_line_starts() {
        let text = b"\r\nFHS|^~\\&\rBHS|^~\\&\rMSH|1\rPID|MSH|\rMSH|2\nBTS|2\rFTS|1";
        let found = units(text, 0..text.len());
        let kinds: Vec<UnitKind> = found.iter().map(|u| u.kind).collect();
        assert_eq!(
            kinds,
            [
                UnitKind::FileHeader,
                UnitKind::BatchHeader,
                UnitKind::Message,
                UnitKind::Message,
                UnitKind::BatchTrailer,
                UnitKind::FileTrailer
            ]
        );
        assert_eq!(found[0].range.start, 2);
        assert_eq!(&text[found[2].range.clone()], b"MSH|1\rPID|MSH|\r");
        assert!(found[3].has_lf && !found[3].has_cr && found[3].bare_lf);
    }

    #[test]
    fn text_before_the_first_message_is_a_stray_unit() {
        let text = b"OBX|1\rMSH|^~\\&|\r";
        let found = units(text, 0..text.len());
        assert_eq!(found[0].kind, UnitKind::Stray);
        assert_eq!(found[1].kind, UnitKind::Message);
        assert!(units(b" \r\n ", 0..4).is_empty());
    }

    #[test]
    fn segment_ids_are_three_upper_case_or_digits() {
        assert_eq!(valid_id(b"OBX|1", b'|'), Some(&b"OBX"[..]));
        assert_eq!(valid_id(b"ZA1|", b'|'), Some(&b"ZA1"[..]));
        assert_eq!(valid_id(b"NTE", b'|'), Some(&b"NTE"[..]));
        for bad in [&b"obx|1"[..], b"OB|1", b"M|||", b"1BX|", b"OBXX|", b"OBX^1", b""] {
            assert_eq!(valid_id(bad, b'|'), None, "{bad:?}");
        }
    }

    #[test]
    fn fields_are_numbered_like_the_standard() {
        let msh = b"MSH|^~\\&#|APP|FAC|||||ORU^R01|CTRL|P|2.7";
        let f = Fields::split_msh(msh, b'|');
        assert_eq!(f.get(1), b"|");
        assert_eq!(f.get(2), b"^~\\&#");
        assert_eq!(f.get(3), b"APP");
        assert_eq!(f.get(10), b"CTRL");
        assert_eq!(f.get(12), b"2.7");
        assert_eq!(f.get(13), b"");
        let obx = Fields::split(b"OBX|1|SN|CODE||<^0.02", b'|');
        assert_eq!(obx.get(0), b"OBX");
        assert_eq!(obx.get(5), b"<^0.02");
        assert_eq!(obx.get(99), b"");
        let upto = Fields::split_upto(b"PID|1||ID^^^A|X|Y", b'|', 3);
        assert_eq!((upto.get(3), upto.get(4)), (&b"ID^^^A"[..], &b""[..]));
        let long = Fields::split(b"OBR|1|2|3|4|5|6|7|8|9|10|11|12|13|14|15|16|17|18|19|20|21|22|23|24|25|26|27", b'|');
        assert_eq!((long.get(22), long.get(25), long.get(26)), (&b"22"[..], &b"25"[..], &b""[..]));
    }

    #[test]
    fn pieces() {
        assert_eq!(piece(b"a^b^c", b'^', 0), b"a");
        assert_eq!(piece(b"a^b^c", b'^', 2), b"c");
        assert_eq!(piece(b"a^b^c", b'^', 3), b"");
        assert_eq!(piece(b"", b'^', 0), b"");
    }
}
