//! HL7 v2 (ER7, "pipe-hat") results: ORU^R01, ORU^R30–R32, OUL^R21 and OUL^R22, v2.3–2.8;
//! any other message type is an error of that message.
//!
//! [`parse_file`] takes the bytes of a dropped file and reports one
//! [`MessageOutcome`] per MSH message, in file order. A broken message is an
//! error with its byte range, and the messages after it are still read.
//!
//! Layers (hl7.md §10), each in its own module:
//!
//! 1. file level (here): UTF-16 is refused, a UTF-8 BOM, leading blank lines
//!    and a trailing DOS EOF byte are stripped (with a warning), MLLP frames
//!    ([`mllp`]) are unwrapped, and FHS/BHS/BTS/FTS envelopes are checked;
//! 2. units and segments ([`segment`]): the CR/LF policy, message
//!    boundaries, segment IDs, field splitting;
//! 3. delimiters, escapes and character sets ([`encoding`]);
//! 4. the segment walk that maps OBX to [`LabResult`](crate::model::LabResult)
//!    ([`message`]).
//!
//! Everything is tokenised on raw bytes (delimiters are ASCII), so offsets
//! are exact byte offsets into the file whatever the character set; only
//! the values that are mapped get decoded. No tree is built and nothing is
//! allocated per segment or field: throughput is dominated by the strings
//! that go into the results.
//!
//! Decisions where the standard leaves room (see also the module docs):
//!
//! - escapes are decoded once, left to right; `\.br\` becomes a line feed;
//!   `\H\ \N\ \.sp\ \.in\ \.ti\ \.sk\ \.ce\ \.fi\ \.nf\` are kept as sent
//!   without a warning; `\Z…\`, `\C…\`, `\M…\`, unknown codes, bad hex and lone
//!   escape characters are kept literally with a warning; NUL bytes produced
//!   by `\X…\` (senders writing UTF-16 code units such as `\X000d\`) are
//!   dropped with a warning;
//! - a value ending with the truncation character keeps it (so a truncated
//!   number never parses as a number) and gets a warning;
//! - a stray part (segments before any MSH, or after a BHS with no MSH) is
//!   reported as a broken message and takes a message number;
//! - envelope warnings (BTS/FTS counts, missing trailers) are attached to the
//!   last message before them; file-level warnings (BOM, skipped bytes) to
//!   the next message.

pub mod ack;
pub mod encoding;
mod message;
pub mod mllp;
pub mod mllp_session;
pub mod segment;

use std::ops::Range;

use memchr::{memchr, memchr2};

pub use encoding::{Delimiters, escape, unescape};

use crate::model::{MessageError, MessageOutcome, MessageView, ParseOptions, UTF8_BOM, ViewOutcome, Warning, renumber};
use crate::parallel::for_each_part;
use segment::{CR, LF, Unit, UnitKind, piece};

const DOS_EOF: u8 = 0x1A;

/// The most units in a part parsed ahead on a helper thread: enough that
/// handing it over costs little, few enough that its results stay in cache.
const MOST_UNITS_PER_PART: usize = 128;

/// Parse a whole file's bytes, reporting each MSH message in file order.
///
/// Messages are numbered from 1 within the file. Envelope segments
/// (FHS/BHS/BTS/FTS) are not messages; problems with them are warnings on the
/// neighbouring message. Never panics, and runs in time linear in the input.
pub fn parse_file(input: &[u8], opts: &ParseOptions, on_message: &mut dyn FnMut(MessageOutcome)) {
    parse_file_views(input, opts, &mut |outcome| on_message(outcome.map(MessageView::into_owned)));
}

/// [`parse_file`] with results that borrow from `input`: the same checks,
/// warnings and errors, without copying the text out.
pub fn parse_file_views(input: &[u8], opts: &ParseOptions, on_message: &mut dyn FnMut(ViewOutcome<'_>)) {
    let mut out = Emitter { sink: on_message, held: None, pending: Vec::new(), count: 0 };
    if input.starts_with(&[0xFF, 0xFE]) || input.starts_with(&[0xFE, 0xFF]) {
        let number = out.next_number();
        out.error(MessageError {
            number,
            offset: 0,
            span: 0..input.len(),
            text: "file is UTF-16; expected UTF-8 or 8-bit text".to_owned(),
        });
        out.finish();
        return;
    }
    let mut start = 0;
    if input.starts_with(UTF8_BOM) {
        out.warn_ahead(0, "UTF-8 byte order mark stripped");
        start = UTF8_BOM.len();
    }
    let (end, eof_at) = trim_end(input, start);
    let body = input.get(start..end).unwrap_or_default();
    let first = body.iter().position(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|i| i > 0) {
        out.warn_ahead(start, "leading blank lines or spaces skipped");
    }
    let mut file =
        FileReader { input, opts: *opts, check_nul: memchr(0, input).is_some(), envelope: Envelope::default(), out };
    let framed = first.and_then(|i| body.get(i..)).is_some_and(|rest| {
        rest.first() == Some(&mllp::START_BLOCK)
            || (segment_start(rest).is_none() && memchr(mllp::START_BLOCK, rest).is_some())
    });
    if framed {
        file.read_frames(start, body);
    } else {
        file.read_chunk(start..end, None);
    }
    if let Some(at) = eof_at {
        file.out.warn_behind(at, "DOS end-of-file byte 0x1A stripped");
    }
    file.envelope.finish(end, &mut file.out);
    file.out.finish();
}

/// The end of the content: trailing white space and DOS EOF bytes removed.
fn trim_end(input: &[u8], start: usize) -> (usize, Option<usize>) {
    let mut end = input.len();
    let mut eof_at = None;
    while end > start {
        match input.get(end - 1) {
            Some(&DOS_EOF) => eof_at = Some(end - 1),
            Some(b) if b.is_ascii_whitespace() => {}
            _ => break,
        }
        end -= 1;
    }
    // Keep the terminator of the last segment inside the message.
    while end < input.len() && eof_at.is_none_or(|at| end < at) {
        match input.get(end) {
            Some(&CR) | Some(&LF) => end += 1,
            _ => break,
        }
    }
    (end, eof_at)
}

fn segment_start(rest: &[u8]) -> Option<()> {
    let id = rest.get(..3)?;
    matches!(id, b"MSH" | b"FHS" | b"BHS").then_some(())
}

/// The frame a chunk came in, for spans and the unclosed-frame check.
#[derive(Debug, Clone)]
struct FrameInfo {
    span: Range<usize>,
    end: mllp::FrameEnd,
}

struct FileReader<'a, 'f> {
    input: &'a [u8],
    opts: ParseOptions,
    check_nul: bool,
    envelope: Envelope,
    out: Emitter<'a, 'f>,
}

impl<'a> FileReader<'a, '_> {
    /// MLLP frames in `body` (which starts at `base` in the file).
    fn read_frames(&mut self, base: usize, body: &[u8]) {
        let mut frames = mllp::frames(body);
        for frame in frames.by_ref() {
            let skipped = body.get(frame.skipped.clone()).unwrap_or_default();
            if !skipped.iter().all(u8::is_ascii_whitespace) {
                let text = format!("{} bytes before the MLLP start block discarded", skipped.len());
                self.out.warn_ahead(base + frame.skipped.start, text);
            }
            let mut payload = base + frame.payload.start..base + frame.payload.end;
            if self.input.get(payload.clone()).is_some_and(|p| p.starts_with(UTF8_BOM)) {
                self.out.warn_ahead(payload.start, "UTF-8 byte order mark inside the MLLP frame stripped");
                payload.start += UTF8_BOM.len();
            }
            let info = FrameInfo { span: base + frame.span.start..base + frame.span.end, end: frame.end };
            self.read_chunk(payload, Some(info));
        }
        let trailing = frames.trailing();
        let rest = body.get(trailing.clone()).unwrap_or_default();
        if !rest.iter().all(u8::is_ascii_whitespace) {
            let text = format!("{} bytes after the last MLLP frame discarded", rest.len());
            self.out.warn_behind(base + trailing.start, text);
        }
    }

    /// Messages and envelope segments in one chunk (the file, or one frame).
    fn read_chunk(&mut self, range: Range<usize>, frame: Option<FrameInfo>) {
        let units = segment::units(self.input, range.clone());
        if units.is_empty()
            && let Some(frame) = &frame
        {
            self.out.warn_ahead(frame.span.start, "empty MLLP frame skipped");
        }
        // A file's messages may be parsed ahead on helper threads, a part at
        // a time; numbers, envelopes, strays and the emitter still go in file
        // order here, so the outcomes are those of one thread.
        let threads = if frame.is_none() { self.opts.threads } else { 1 };
        let per_part = if threads > 1 {
            (units.len() / threads.saturating_mul(2)).clamp(1, MOST_UNITS_PER_PART)
        } else {
            units.len().max(1)
        };
        let parts: Vec<(usize, &[Unit])> =
            units.chunks(per_part).enumerate().map(|(n, part)| (n * per_part, part)).collect();
        let (input, opts, check_nul) = (self.input, self.opts, self.check_nul);
        let parse_ahead = |(_, part): &(usize, &[Unit])| {
            // Outside MLLP frames a message's span is its unit's range.
            let parse = |unit: &Unit| message::parse_message(input, unit, unit.range.clone(), 0, &opts, check_nul);
            part.iter().map(|unit| (unit.kind == UnitKind::Message).then(|| parse(unit))).collect::<Vec<_>>()
        };
        let last = units.len().saturating_sub(1);
        for_each_part(&parts, threads, parse_ahead, |&(first, part), ahead| {
            let mut ahead = ahead.unwrap_or_default().into_iter();
            for (i, unit) in (first..).zip(part.iter()) {
                let early = ahead.next().flatten();
                self.read_unit(unit, i == 0, i == last, frame.as_ref(), early);
            }
        });
    }

    /// One unit of a chunk, in file order; `early` is its message's outcome
    /// when a helper thread parsed it ahead.
    fn read_unit(
        &mut self,
        unit: &Unit,
        first: bool,
        last: bool,
        frame: Option<&FrameInfo>,
        early: Option<ViewOutcome<'a>>,
    ) {
        let mut span = unit.range.clone();
        if let Some(frame) = frame {
            if first {
                span.start = frame.span.start;
            }
            if last {
                span.end = frame.span.end;
            }
        }
        match unit.kind {
            UnitKind::Message => {
                self.envelope.message();
                let number = self.out.next_number();
                let outcome = match early {
                    Some(mut outcome) => {
                        renumber(&mut outcome, number);
                        outcome
                    }
                    None => message::parse_message(self.input, unit, span.clone(), number, &self.opts, self.check_nul),
                };
                let unclosed = frame.is_some_and(|f| f.end == mllp::FrameEnd::Unclosed) && last;
                match outcome {
                    Ok(_) if unclosed => self.out.error(MessageError {
                        number,
                        offset: unit.range.end,
                        span,
                        text: "MLLP frame not closed: expected 0x1C 0x0D after the message (file cut short?)"
                            .to_owned(),
                    }),
                    Ok(message) => self.out.ok(message),
                    Err(error) => self.out.error(error),
                }
            }
            UnitKind::Stray => {
                self.stray(unit.range.clone(), span, "is outside any message: expected MSH first");
            }
            kind => {
                let line_end = self
                    .input
                    .get(unit.range.clone())
                    .and_then(|b| memchr2(CR, LF, b))
                    .map_or(unit.range.end, |i| unit.range.start + i);
                let line = self.input.get(unit.range.start..line_end).unwrap_or_default();
                self.envelope.segment(kind, line, unit.range.start, &mut self.out);
                let expected = format!("follows {} outside any message: expected MSH", kind.name());
                self.stray(line_end..unit.range.end, line_end..span.end, &expected);
            }
        }
    }

    /// Report non-blank bytes in `range` as a broken part of the file.
    fn stray(&mut self, range: Range<usize>, span: Range<usize>, expected: &str) {
        let bytes = self.input.get(range.clone()).unwrap_or_default();
        let Some(first) = bytes.iter().position(|b| !b.is_ascii_whitespace()) else { return };
        let offset = range.start + first;
        let line_bytes = bytes.get(first..).unwrap_or_default();
        let line_bytes = line_bytes.get(..memchr2(CR, LF, line_bytes).unwrap_or(line_bytes.len())).unwrap_or_default();
        let number = self.out.next_number();
        let text = format!("a line of {} {expected}", crate::model::shown_safely(line_bytes));
        self.out.error(MessageError { number, offset, span: offset.max(span.start)..span.end, text });
    }
}

/// Sends outcomes in order, holding the latest parsed message back until the
/// next one so that envelope warnings found after it (BTS, FTS) can still be
/// attached to it.
struct Emitter<'a, 'f> {
    sink: &'f mut dyn FnMut(ViewOutcome<'_>),
    held: Option<MessageView<'a>>,
    /// Warnings for the next parsed message.
    pending: Vec<Warning>,
    count: usize,
}

impl<'a> Emitter<'a, '_> {
    fn next_number(&mut self) -> usize {
        self.count += 1;
        self.count
    }

    fn flush(&mut self) {
        if let Some(message) = self.held.take() {
            (self.sink)(Ok(message));
        }
    }

    fn ok(&mut self, mut message: MessageView<'a>) {
        self.flush();
        if !self.pending.is_empty() {
            let mut warnings = std::mem::take(&mut self.pending);
            warnings.append(&mut message.warnings);
            message.warnings = warnings;
        }
        self.held = Some(message);
    }

    fn error(&mut self, error: MessageError) {
        self.flush();
        (self.sink)(Err(error));
    }

    /// A warning about what comes next (BOM, skipped bytes).
    fn warn_ahead(&mut self, offset: usize, text: impl Into<String>) {
        self.pending.push(Warning { offset, text: text.into() });
    }

    /// A warning about what came before (envelope trailers).
    fn warn_behind(&mut self, offset: usize, text: impl Into<String>) {
        let warning = Warning { offset, text: text.into() };
        match self.held.as_mut() {
            Some(message) => message.warnings.push(warning),
            None => self.pending.push(warning),
        }
    }

    fn finish(&mut self) {
        self.flush();
    }
}

/// FHS/BHS/BTS/FTS bookkeeping: counts are checked, never used to drop data.
#[derive(Debug, Default)]
struct Envelope {
    file_open: bool,
    batches: usize,
    batch: Option<usize>,
}

impl Envelope {
    fn message(&mut self) {
        if let Some(count) = self.batch.as_mut() {
            *count += 1;
        }
    }

    /// BTS-1 / FTS-1: field 1 of the trailer, when it holds a count.
    fn count(line: &[u8], out: &mut Emitter<'_, '_>, offset: usize, name: &str) -> Option<usize> {
        let sep = *line.get(3)?;
        let raw = piece(line.get(4..)?, sep, 0).trim_ascii();
        let text = std::str::from_utf8(raw).ok()?;
        if text.is_empty() {
            return None;
        }
        match text.parse() {
            Ok(n) => Some(n),
            Err(_) => {
                out.warn_behind(offset, format!("{name}-1 \"{}\" is not a count", encoding::show(raw)));
                None
            }
        }
    }

    fn segment(&mut self, kind: UnitKind, line: &[u8], offset: usize, out: &mut Emitter<'_, '_>) {
        match kind {
            UnitKind::FileHeader => {
                if self.file_open {
                    out.warn_behind(offset, "FHS before the previous file's FTS");
                }
                self.close_batch(offset, "FHS", out);
                self.file_open = true;
                self.batches = 0;
            }
            UnitKind::BatchHeader => {
                self.close_batch(offset, "BHS", out);
                self.batches += 1;
                self.batch = Some(0);
            }
            UnitKind::BatchTrailer => {
                let stated = Envelope::count(line, out, offset, "BTS");
                match self.batch.take() {
                    None => out.warn_behind(offset, "BTS without a BHS before it"),
                    Some(held) => {
                        if let Some(stated) = stated.filter(|&n| n != held) {
                            out.warn_behind(offset, format!("BTS-1 says {stated} messages, the batch holds {held}"));
                        }
                    }
                }
            }
            UnitKind::FileTrailer => {
                self.close_batch(offset, "FTS", out);
                let stated = Envelope::count(line, out, offset, "FTS");
                if !self.file_open {
                    out.warn_behind(offset, "FTS without an FHS before it");
                }
                if let Some(stated) = stated.filter(|&n| n != self.batches) {
                    out.warn_behind(offset, format!("FTS-1 says {stated} batches, the file holds {}", self.batches));
                }
                self.file_open = false;
                self.batches = 0;
            }
            UnitKind::Message | UnitKind::Stray => {}
        }
    }

    fn close_batch(&mut self, offset: usize, before: &str, out: &mut Emitter<'_, '_>) {
        if self.batch.take().is_some() {
            out.warn_behind(offset, format!("batch not closed: expected BTS before {before}"));
        }
    }

    fn finish(&mut self, end: usize, out: &mut Emitter<'_, '_>) {
        if self.batch.take().is_some() {
            out.warn_behind(end, "batch not closed: expected BTS at the end of the file");
        }
        if self.file_open {
            out.warn_behind(end, "file not closed: expected FTS at the end of the file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcomes(input: &[u8]) -> Vec<MessageOutcome> {
        let mut all = Vec::new();
        parse_file(input, &ParseOptions::default(), &mut |o| all.push(o));
        all
    }

    #[test]
    fn trailing_whitespace_and_dos_eof_are_trimmed_but_terminators_kept() {
        assert_eq!(trim_end(b"MSH|x\r\n\x1a", 0), (7, Some(7)));
        assert_eq!(trim_end(b"MSH|x\r  ", 0), (6, None));
        assert_eq!(trim_end(b"   ", 0), (0, None));
    }

    #[test]
    fn utf16_files_are_refused() {
        let all = outcomes(b"\xFF\xFEM\0S\0H\0");
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].as_ref().unwrap_err().text, "file is UTF-16; expected UTF-8 or 8-bit text");
    }

    #[test]
    fn envelope_counts_are_checked() {
        let file = b"BHS|^~\\&\rMSH|^~\\&|A||||||ORU^R01|1|P|2.5\rBTS|2\r";
        let all = outcomes(file);
        assert_eq!(all.len(), 1);
        let message = all[0].as_ref().unwrap();
        assert!(message.warnings.iter().any(|w| w.text == "BTS-1 says 2 messages, the batch holds 1"));
    }
}
