//! E1381 / CLSI LIS01-A2 link framing: the grammar of one frame, its
//! checksum, and the encoder that cuts a message text into frames.
//!
//! A frame carries part of a message text, never a record as such: records
//! may be split anywhere across frames, so the record layer only ever sees
//! the concatenated texts. Reading captured files (with their tolerances) is
//! done in `link.rs`; this module is the strict wire grammar, shared with the
//! serial/TCP receiver and `simulate`.

use nom::branch::alt;
use nom::bytes::streaming::{tag, take, take_till};
use nom::character::streaming::one_of;
use nom::combinator::{map_opt, value};
use nom::{IResult, Parser};

/// Start of text: first byte of a frame.
pub const STX: u8 = 0x02;
/// End of text: ends the last frame of a message.
pub const ETX: u8 = 0x03;
/// End of transmission: ends a session.
pub const EOT: u8 = 0x04;
/// Enquiry: bids for the line, starts a session.
pub const ENQ: u8 = 0x05;
/// Positive acknowledgement (receiver to sender).
pub const ACK: u8 = 0x06;
/// Negative acknowledgement (receiver to sender).
pub const NAK: u8 = 0x15;
/// End of transmission block: ends an intermediate frame.
pub const ETB: u8 = 0x17;
pub const CR: u8 = b'\r';
pub const LF: u8 = b'\n';

/// Text bytes per frame allowed by E1381-95 (a frame is then at most 247
/// bytes). Receivers accept longer frames: analyzers send multi-kB ones.
pub const MAX_TEXT_LEN: usize = 240;

/// How a frame's text ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameEnd {
    /// `ETB`: the message text continues in the next frame.
    Intermediate,
    /// `ETX`: the last frame of the message text.
    Last,
}

impl FrameEnd {
    /// The control byte that ends the text.
    pub fn byte(self) -> u8 {
        match self {
            FrameEnd::Intermediate => ETB,
            FrameEnd::Last => ETX,
        }
    }
}

/// One frame as read from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Frame number 0–7 (the sender counts 1, 2, …, 7, 0, 1, …).
    pub number: u8,
    /// The text between the frame number and ETB/ETX.
    pub text: &'a [u8],
    pub end: FrameEnd,
    /// The checksum the sender wrote.
    pub sent_checksum: u8,
    /// The checksum of the bytes received (FN through ETB/ETX).
    pub computed_checksum: u8,
    /// The sender wrote its checksum in lowercase hex (accepted, worth a warning).
    pub lowercase_checksum: bool,
}

impl Frame<'_> {
    /// Whether the sent checksum matches the bytes: only then may the text be used.
    pub fn verifies(&self) -> bool {
        self.sent_checksum == self.computed_checksum
    }
}

/// The E1381 checksum: the sum of the bytes, modulo 256. Computed on raw
/// bytes (8-bit and multi-byte text included) from the frame number through
/// ETB/ETX inclusive.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |sum, &b| sum.wrapping_add(b))
}

/// The checksum of a frame's FN, text and end byte.
pub fn frame_checksum(number_digit: u8, text: &[u8], end: FrameEnd) -> u8 {
    checksum(text).wrapping_add(number_digit).wrapping_add(end.byte())
}

/// Bytes that may not appear in frame text on the wire (E1381 §6.6).
pub fn is_restricted(b: u8) -> bool {
    matches!(b, 0x01..=0x06 | 0x10..=0x17 | LF)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// The two checksum digits as a byte, and whether lowercase hex was used.
///
/// `checksum-digits = 2HEXDIG` (either case). Streaming: fewer than two bytes
/// is `Incomplete`.
// checksum-digits = HEXDIG HEXDIG
pub fn checksum_digits(input: &[u8]) -> IResult<&[u8], (u8, bool)> {
    map_opt(take(2usize), |d: &[u8]| {
        let (&hi, &lo) = (d.first()?, d.get(1)?);
        let value = hex_value(hi)? * 16 + hex_value(lo)?;
        Some((value, hi.is_ascii_lowercase() || lo.is_ascii_lowercase()))
    })
    .parse(input)
}

// end = ETB / ETX
fn frame_end(input: &[u8]) -> IResult<&[u8], FrameEnd> {
    alt((value(FrameEnd::Intermediate, tag(&[ETB][..])), value(FrameEnd::Last, tag(&[ETX][..])))).parse(input)
}

// FN = "0" / "1" / "2" / "3" / "4" / "5" / "6" / "7"
fn frame_number(input: &[u8]) -> IResult<&[u8], u8> {
    one_of("01234567").map(|c: char| c as u8 - b'0').parse(input)
}

/// One frame, strictly as E1381 defines it. Streaming: a frame cut short by
/// the end of the input is `Incomplete`, so a link reader can wait for more
/// bytes. Restricted characters in the text (LF, STX, EOT…) are an error.
// frame = STX FN text (ETB / ETX) C1 C2 CR LF
// text  = *(any byte except restricted characters)
pub fn frame(input: &[u8]) -> IResult<&[u8], Frame<'_>> {
    let (rest, (_, number, text, end, (sent, lowercase), _)) =
        (tag(&[STX][..]), frame_number, take_till(is_restricted), frame_end, checksum_digits, tag(&b"\r\n"[..]))
            .parse(input)?;
    let computed = frame_checksum(b'0' + number, text, end);
    Ok((
        rest,
        Frame { number, text, end, sent_checksum: sent, computed_checksum: computed, lowercase_checksum: lowercase },
    ))
}

/// One frame's bytes: `STX FN text end C1 C2 CR LF`, checksum in uppercase hex.
/// `number` is taken modulo 8.
pub fn encode_frame(number: u8, text: &[u8], end: FrameEnd) -> Vec<u8> {
    let digit = b'0' + number % 8;
    let sum = frame_checksum(digit, text, end);
    let mut out = Vec::with_capacity(text.len() + 7);
    out.push(STX);
    out.push(digit);
    out.extend_from_slice(text);
    out.push(end.byte());
    out.extend_from_slice(format!("{sum:02X}").as_bytes());
    out.extend_from_slice(b"\r\n");
    out
}

/// Cut a message text into frames of at most `max_text_len` text bytes
/// (at least 1; [`MAX_TEXT_LEN`] on a standard link), numbered 1…7, 0, 1…,
/// ETB on every frame but the last, which ends with ETX. An empty text gives
/// one empty ETX frame. One `Vec` per frame, so a sender can wait for the ACK
/// of each.
pub fn encode_frames(text: &[u8], max_text_len: usize) -> Vec<Vec<u8>> {
    encode_frames_from(text, max_text_len, 1)
}

/// [`encode_frames`] with the first frame numbered `first_number` (frame
/// numbers continue across the messages of one session).
pub fn encode_frames_from(text: &[u8], max_text_len: usize, first_number: u8) -> Vec<Vec<u8>> {
    let chunks: Vec<&[u8]> = if text.is_empty() { vec![&[][..]] } else { text.chunks(max_text_len.max(1)).collect() };
    let count = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| {
            let end = if i + 1 == count { FrameEnd::Last } else { FrameEnd::Intermediate };
            encode_frame(((usize::from(first_number) + i) % 8) as u8, chunk, end)
        })
        .collect()
}

/// The texts of the E1381 frames in captured link bytes, joined, with where
/// each piece sits in the input: `(text_start, input_start, len)`. An ETX
/// frame whose text lacks a final CR still ends its record. No checks:
/// for masking and re-framing, not for reading results (see `link`).
pub fn joined_texts(bytes: &[u8]) -> (Vec<u8>, Vec<(usize, usize, usize)>) {
    let mut text = Vec::new();
    let mut map = Vec::new(); // (text_start, file_start, len)
    let mut at = 0;
    while let Some(stx) = bytes.get(at..).and_then(|rest| rest.iter().position(|&b| b == STX)).map(|p| at + p) {
        let mut start = stx + 1;
        if bytes.get(start).is_some_and(u8::is_ascii_digit) {
            start += 1;
        }
        let rest = bytes.get(start..).unwrap_or_default();
        let len = rest.iter().position(|&b| b == ETX || b == ETB || b == STX).unwrap_or(rest.len());
        map.push((text.len(), start, len));
        text.extend_from_slice(rest.get(..len).unwrap_or_default());
        // An ETX frame ends its record even without a CR (as `link` reads it):
        // the CR added here maps to no input byte.
        if rest.get(len) == Some(&ETX) && !matches!(text.last(), None | Some(b'\r' | b'\n')) {
            text.push(b'\r');
        }
        at = start + len;
    }
    (text, map)
}

/// Captured link bytes: link control first (after a BOM and white space).
pub fn is_link_capture(bytes: &[u8]) -> bool {
    let body = bytes.strip_prefix(crate::model::UTF8_BOM).unwrap_or(bytes);
    matches!(body.iter().find(|b| !b.is_ascii_whitespace()), Some(&(STX | EOT | ENQ | ACK | NAK)))
}

/// After masking: give every frame whose text `masked` changed, and whose
/// checksum was right in `original`, the checksum of its new text, so the
/// masked copy still reads as the original did. Same length; frames that
/// were broken stay broken. Does nothing unless `original` is a link capture.
pub fn reseal(original: &[u8], masked: &mut [u8]) {
    if original.len() != masked.len() || !is_link_capture(original) {
        return;
    }
    let mut at = 0;
    while let Some(stx) = original.get(at..).and_then(|rest| rest.iter().position(|&b| b == STX)).map(|p| at + p) {
        at = stx + 1;
        let Some(&digit) = original.get(stx + 1).filter(|d| d.is_ascii_digit()) else { continue };
        let start = stx + 2;
        let rest = original.get(start..).unwrap_or_default();
        let Some(len) = rest.iter().position(|&b| matches!(b, ETX | ETB | STX)) else { break };
        let end = match rest.get(len) {
            Some(&ETX) => FrameEnd::Last,
            Some(&ETB) => FrameEnd::Intermediate,
            _ => continue,
        };
        let sum_at = start + len + 1;
        let (Some(text), Some(new_text), Some(digits)) =
            (original.get(start..start + len), masked.get(start..start + len), original.get(sum_at..sum_at + 2))
        else {
            break;
        };
        at = sum_at;
        let Ok((_, (sent, lowercase))) = checksum_digits(digits) else { continue };
        if text == new_text
            || sent != frame_checksum(digit, text, end)
            || masked.get(sum_at..sum_at + 2) != Some(digits)
        {
            continue;
        }
        let sum = frame_checksum(digit, new_text, end);
        let hex = if lowercase { format!("{sum:02x}") } else { format!("{sum:02X}") };
        if let Some(slot) = masked.get_mut(sum_at..sum_at + 2) {
            slot.copy_from_slice(hex.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reseal_fixes_only_frames_that_masking_changed_and_that_were_right() {
        let good = encode_frame(1, b"P|1||Doe", FrameEnd::Last);
        let mut original = vec![ENQ];
        original.extend_from_slice(&good);
        // A text whose checksum has a hex letter, written in lower case.
        let mut lower = (b'0'..=b'9')
            .map(|n| encode_frame(2, &[b'P', b'|', n, b'|', b'|', b'D', b'o', b'e'], FrameEnd::Intermediate))
            .find(|f| f[f.len() - 4..f.len() - 2].iter().any(u8::is_ascii_uppercase))
            .unwrap();
        let digits = lower.len() - 4..lower.len() - 2;
        lower[digits].make_ascii_lowercase();
        original.extend_from_slice(&lower);
        let mut bad = encode_frame(3, b"P|1||Doe", FrameEnd::Last);
        let at = bad.len() - 4;
        bad[at] = if bad[at] == b'0' { b'1' } else { b'0' };
        original.extend_from_slice(&bad);
        original.push(EOT);
        let mut masked = original.clone();
        for (i, b) in original.iter().enumerate() {
            if *b == b'D' || *b == b'd' {
                masked[i..i + 3].copy_from_slice(b"***");
            }
        }
        reseal(&original, &mut masked);
        assert_eq!(masked.len(), original.len());
        let mut frames = Vec::new();
        let mut rest = &masked[1..];
        while let Ok((more, f)) = frame(rest) {
            frames.push((f.verifies(), f.lowercase_checksum, f.text.to_vec()));
            rest = more;
        }
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0], (true, false, b"P|1||***".to_vec()));
        assert!(frames[1].0 && frames[1].1, "lower case kept");
        assert!(!frames[2].0, "a frame that was broken stays broken");
        // Not a link capture: untouched.
        let plain = b"P|1||Doe\x03AA\r\n".to_vec();
        let mut copy = plain.clone();
        reseal(&plain, &mut copy);
        assert_eq!(copy, plain);
    }

    #[test]
    fn checksum_matches_published_vectors() {
        // twgenaux "Calculating the checksum of a UTF8 encoded LIS01 frame"; levinalex/lis.
        assert_eq!(frame_checksum(b'1', b"H|\\^&|||Mini LIS||||||||LIS2-A|20210309142633\r", FrameEnd::Last), 0x96);
        assert_eq!(frame_checksum(b'4', b"L|1|N\r", FrameEnd::Last), 0x07);
        assert_eq!(frame_checksum(b'3', b"L|1\r", FrameEnd::Last), 0x3C);
        assert_eq!(frame_checksum(b'1', b"O|1|130000911||^^^E2\r", FrameEnd::Last), 0x01);
        // The same text with ETB instead of ETX sums differently (UniversaLIS bug).
        assert_eq!(frame_checksum(b'1', b"H|\\^&|||c111\r", FrameEnd::Intermediate), 0x63);
        assert_eq!(frame_checksum(b'1', b"H|\\^&|||c111\r", FrameEnd::Last), 0x4F);
    }

    #[test]
    fn reads_one_frame_and_leaves_the_rest() {
        let bytes = b"\x024L|1|N\r\x0307\r\n\x04";
        let (rest, f) = frame(bytes).expect("a frame");
        assert_eq!(rest, b"\x04");
        assert_eq!((f.number, f.text, f.end), (4, &b"L|1|N\r"[..], FrameEnd::Last));
        assert_eq!((f.sent_checksum, f.computed_checksum), (0x07, 0x07));
        assert!(f.verifies() && !f.lowercase_checksum);
    }

    #[test]
    fn lowercase_checksum_is_accepted_and_noticed() {
        let (_, f) = frame(b"\x021R|x\r\x17aB\r\n").expect("a frame");
        assert_eq!(f.sent_checksum, 0xAB);
        assert!(f.lowercase_checksum);
        assert_eq!(f.end, FrameEnd::Intermediate);
    }

    #[test]
    fn bad_checksum_parses_but_does_not_verify() {
        let (_, f) = frame(b"\x021R|INVALID\x0355\r\n").expect("a frame");
        assert_eq!((f.sent_checksum, f.computed_checksum), (0x55, 0x09));
        assert!(!f.verifies());
    }

    #[test]
    fn a_frame_cut_short_is_incomplete_not_an_error() {
        let whole = b"\x021H|\\^&\r\x03AB\r\n";
        for cut in 0..whole.len() {
            let part = whole.get(..cut).unwrap_or_default();
            assert!(matches!(frame(part), Err(nom::Err::Incomplete(_))), "cut at {cut}");
        }
    }

    #[test]
    fn malformed_frames_are_errors() {
        for bad in [
            &b"x1H\x03AB\r\n"[..],    // no STX
            b"\x028H\x03AB\r\n",      // FN out of range
            b"\x021H\r\n\x02",        // LF in text, no ETX
            b"\x021H\x03ZZ\r\n",      // checksum not hex
            b"\x021H\x03AB\n\r",      // trailer not CR LF
            b"\x021H|\x02\x03AB\r\n", // STX inside text
        ] {
            assert!(matches!(frame(bad), Err(nom::Err::Error(_))), "{bad:?}");
        }
    }

    #[test]
    fn encoder_numbers_wrap_and_only_the_last_frame_has_etx() {
        let text: Vec<u8> = (0..20).map(|i| b'a' + i).collect();
        let frames = encode_frames(&text, 2);
        assert_eq!(frames.len(), 10);
        let numbers: Vec<u8> = frames.iter().filter_map(|f| f.get(1).copied()).collect();
        assert_eq!(numbers, b"1234567012");
        let mut joined = Vec::new();
        for (i, bytes) in frames.iter().enumerate() {
            let (rest, f) = frame(bytes).expect("encoded frames parse");
            assert!(rest.is_empty() && f.verifies());
            assert_eq!(f.end == FrameEnd::Last, i == 9);
            joined.extend_from_slice(f.text);
        }
        assert_eq!(joined, text);
        assert_eq!(encode_frames(b"", 240), vec![b"\x021\x03\x33\x34\r\n".to_vec()]);
    }
}
