//! MLLP framing: `<VT 0x0B> message <FS 0x1C><CR 0x0D>`.
//!
//! Used for MLLP captures dropped into the watch folder and, later, by the
//! TCP listener. Framing is found with `memchr`, so a frame around a 5 MB
//! message costs one scan.

use std::ops::Range;

use memchr::{memchr, memchr2};
use nom::bytes::complete::tag;
use nom::combinator::opt;
use nom::{IResult, Parser};

/// Start block (VT).
pub const START_BLOCK: u8 = 0x0B;
/// End block (FS), followed by [`CARRIAGE_RETURN`].
pub const END_BLOCK: u8 = 0x1C;
/// The byte after the end block.
pub const CARRIAGE_RETURN: u8 = 0x0D;

/// How a frame ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameEnd {
    /// `FS CR`, as the protocol says.
    Complete,
    /// `FS` without the CR (tolerated: some senders and dumps drop it).
    MissingCr,
    /// No end block before the next start block or the end of the bytes: the
    /// message is probably cut short.
    Unclosed,
}

/// One frame found in a byte buffer. Ranges are byte offsets into the
/// buffer given to [`frames`] or [`complete_frame`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Bytes before the start block that belong to no frame (discarded).
    pub skipped: Range<usize>,
    /// The frame from start block to end block, plus the CR when present.
    pub span: Range<usize>,
    /// The message bytes between the blocks.
    pub payload: Range<usize>,
    pub end: FrameEnd,
}

// payload = *(any byte except VT and FS)        ; found with memchr2
fn payload(i: &[u8]) -> IResult<&[u8], &[u8]> {
    let n = memchr2(START_BLOCK, END_BLOCK, i).unwrap_or(i.len());
    let (body, rest) = i.split_at_checked(n).unwrap_or((i, &[]));
    Ok((rest, body))
}

// frame = VT payload [FS [CR]]
fn frame(i: &[u8]) -> IResult<&[u8], (&[u8], FrameEnd)> {
    let (i, _) = tag(&[START_BLOCK][..]).parse(i)?;
    let (i, body) = payload(i)?;
    let (i, end) = opt((tag(&[END_BLOCK][..]), opt(tag(&[CARRIAGE_RETURN][..])))).parse(i)?;
    let end = match end {
        Some((_, Some(_))) => FrameEnd::Complete,
        Some((_, None)) => FrameEnd::MissingCr,
        None => FrameEnd::Unclosed,
    };
    Ok((i, (body, end)))
}

/// The first frame starting at or after `from`, treating the end of `buf`
/// as the end of input.
fn frame_at(buf: &[u8], from: usize) -> Option<Frame> {
    let rest = buf.get(from..)?;
    let start = from + memchr(START_BLOCK, rest)?;
    let at_start = buf.get(start..)?;
    let (after, (body, end_kind)) = frame(at_start).ok()?;
    let payload_start = start + 1;
    Some(Frame {
        skipped: from..start,
        span: start..buf.len() - after.len(),
        payload: payload_start..payload_start + body.len(),
        end: end_kind,
    })
}

/// Every frame in `buf`, in order. The end of `buf` is the end of input, so
/// a last frame without an end block comes out as [`FrameEnd::Unclosed`].
/// Bytes after the last frame are reported by [`Frames::trailing`].
pub fn frames(buf: &[u8]) -> Frames<'_> {
    Frames { buf, pos: 0 }
}

/// Iterator returned by [`frames`].
#[derive(Debug, Clone)]
pub struct Frames<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Frames<'_> {
    /// Bytes after the last frame returned so far (call once the iterator
    /// is exhausted).
    pub fn trailing(&self) -> Range<usize> {
        self.pos.min(self.buf.len())..self.buf.len()
    }
}

impl Iterator for Frames<'_> {
    type Item = Frame;

    fn next(&mut self) -> Option<Frame> {
        let found = frame_at(self.buf, self.pos)?;
        self.pos = found.span.end;
        Some(found)
    }
}

/// The first complete frame in a receive buffer, or `None` when more bytes
/// are needed. A frame whose `FS` is the last byte so far is not complete
/// yet (its CR may still come); `FS` followed by anything but CR ends the
/// frame without the CR.
pub fn complete_frame(buf: &[u8]) -> Option<Frame> {
    let found = frame_at(buf, 0)?;
    match found.end {
        FrameEnd::Complete => Some(found),
        FrameEnd::MissingCr if found.span.end < buf.len() => Some(found),
        _ => None,
    }
}

/// Wrap a payload in MLLP framing.
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 3);
    encode_into(payload, &mut out);
    out
}

/// Append a framed payload to `out`.
pub fn encode_into(payload: &[u8], out: &mut Vec<u8>) {
    out.push(START_BLOCK);
    out.extend_from_slice(payload);
    out.extend_from_slice(&[END_BLOCK, CARRIAGE_RETURN]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_two_frames_and_skipped_bytes() {
        let buf = b"junk\x0bMSH|a\r\x1c\r\n\x0bMSH|b\r\x1c\r";
        let found: Vec<Frame> = frames(buf).collect();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].skipped, 0..4);
        assert_eq!(&buf[found[0].payload.clone()], b"MSH|a\r");
        assert_eq!(found[0].end, FrameEnd::Complete);
        assert_eq!(found[1].skipped, 13..14);
        assert_eq!(&buf[found[1].payload.clone()], b"MSH|b\r");
        assert_eq!(found[1].span.end, buf.len());
    }

    #[test]
    fn missing_cr_and_unclosed_frames() {
        let buf = b"\x0bA\x1c\x0bB\x1c\x0bC";
        let found: Vec<Frame> = frames(buf).collect();
        assert_eq!(
            found.iter().map(|f| f.end).collect::<Vec<_>>(),
            [FrameEnd::MissingCr, FrameEnd::MissingCr, FrameEnd::Unclosed]
        );
        assert_eq!(&buf[found[2].payload.clone()], b"C");
        // A start block inside a frame means the first one never ended.
        let nested: Vec<Frame> = frames(b"\x0bA\x0bB\x1c\r").collect();
        assert_eq!(nested[0].end, FrameEnd::Unclosed);
        assert_eq!(nested[1].end, FrameEnd::Complete);
    }

    #[test]
    fn complete_frame_waits_for_the_end() {
        assert_eq!(complete_frame(b"\x0bMSH"), None);
        assert_eq!(complete_frame(b"\x0bMSH\x1c"), None);
        let f = complete_frame(b"xx\x0bMSH\x1c\rrest").unwrap();
        assert_eq!(f.payload, 3..6);
        assert_eq!(f.span, 2..8);
    }

    #[test]
    fn encode_then_find_round_trips() {
        let framed = encode(b"MSH|^~\\&|\r");
        let f = complete_frame(&framed).unwrap();
        assert_eq!(&framed[f.payload], b"MSH|^~\\&|\r");
        assert_eq!(f.span, 0..framed.len());
    }
}
