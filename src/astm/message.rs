//! From records to messages: the H…L hierarchy, and each R record mapped to a
//! [`LabResult`] (SPEC §2).
//!
//! One pass over the record text. Records are borrowed slices; a result is
//! kept as slices of its R, O, P and H records until the message's L record,
//! because only then is the message's character set known (UTF-8, else
//! Windows-1252). Only the strings that go into a `LabResult` are allocated.

use std::borrow::Cow;
use std::ops::Range;

use encoding_rs::WINDOWS_1252;
use memchr::memchr2;

use super::link::{FrameProblem, FrameSpan, LinkWarning, SessionEnd};
use super::record::{Delimiters, Fields, KeptEscape, component, first_repeat, read_header, unescape};
use crate::model::{Format, MessageError, MessageView, ParseOptions, ResultView, ViewOutcome, Warning};
use crate::timestamp::Timestamp;
use crate::value;

/// Maps positions in the record text to byte offsets in the file. Queries
/// come in non-decreasing order, so a framed lookup is a forward cursor.
pub(crate) trait Locate {
    /// File offset of the record starting at `text_pos`.
    fn start(&mut self, text_pos: usize) -> usize;
    /// File offset just past the record ending at `text_end` (exclusive).
    fn end(&mut self, text_end: usize) -> usize;
}

/// Records read straight from the file: positions are file offsets.
pub(crate) struct Unframed;

impl Locate for Unframed {
    fn start(&mut self, text_pos: usize) -> usize {
        text_pos
    }
    fn end(&mut self, text_end: usize) -> usize {
        text_end
    }
}

/// Records joined from frames: a position maps to the frame that carried it
/// (its STX for a start, the end of its trailer for an end).
pub(crate) struct Framed<'r> {
    frames: &'r [FrameSpan],
    cursor: usize,
}

impl<'r> Framed<'r> {
    pub(crate) fn new(frames: &'r [FrameSpan]) -> Self {
        Framed { frames, cursor: 0 }
    }

    fn seek(&mut self, pos: usize) -> Option<&'r FrameSpan> {
        while self.cursor + 1 < self.frames.len() && self.frames.get(self.cursor).is_some_and(|f| f.text_end <= pos) {
            self.cursor += 1;
        }
        self.frames.get(self.cursor)
    }
}

impl Locate for Framed<'_> {
    fn start(&mut self, text_pos: usize) -> usize {
        self.seek(text_pos).map_or(0, |f| f.file_start)
    }
    fn end(&mut self, text_end: usize) -> usize {
        self.seek(text_end.saturating_sub(1)).map_or(0, |f| f.file_end)
    }
}

/// What the link layer found, when the records came from frames.
#[derive(Clone, Default)]
pub(crate) struct LinkFindings<'r> {
    pub frames: &'r [FrameSpan],
    pub problems: &'r [FrameProblem],
    pub warnings: &'r [LinkWarning],
    /// Bytes outside frames that were not link control bytes.
    pub junk: Option<Range<usize>>,
    /// Where the text's session ended.
    pub end: Option<SessionEnd>,
}

/// Something wrong, and where in the file.
#[derive(Debug, Clone)]
struct Problem {
    offset: usize,
    text: String,
}

/// The current order (O record): what its results inherit.
#[derive(Clone, Copy)]
struct Order<'t> {
    sample: &'t [u8],
    collected: Option<Timestamp>,
    qc: bool,
}

/// An R record waiting for its message's L record.
struct Pending<'t> {
    offset: usize,
    sample: &'t [u8],
    patient: &'t [u8],
    test_id: &'t [u8],
    value: &'t [u8],
    unit: &'t [u8],
    range: &'t [u8],
    flags: &'t [u8],
    status: &'t [u8],
    collected: Option<Timestamp>,
    resulted: Option<Timestamp>,
    qc: bool,
    /// Range into `Engine::comments`.
    comments: Range<usize>,
}

/// A C record's C.4, attached to the R before it.
struct Comment<'t> {
    offset: usize,
    text: &'t [u8],
}

/// An open H…L message.
struct Message<'t> {
    text_start: usize,
    span_start: usize,
    span_end: usize,
    /// `None` when the header's delimiter definition was refused.
    delimiters: Option<Delimiters>,
    header_offset: usize,
    sender: &'t [u8],
    control_id: &'t [u8],
    header_qc: bool,
    patient: &'t [u8],
    order: Option<Order<'t>>,
    /// The last record that a C record would attach to was an R record.
    after_result: bool,
    /// Type of the last good record, named when the next line is no record.
    last_kind: u8,
    /// First problem in the records.
    error: Option<Problem>,
    /// First problem with a frame that carried this message's text; it wins
    /// over `error`, which corrupt bytes may have caused.
    link_error: Option<Problem>,
    warnings: Vec<Warning>,
    warned_line_ends: bool,
}

/// Records outside any message (before the first H, or after an L).
struct Stray {
    offset: usize,
    span: Range<usize>,
    found: u8,
    link_error: Option<Problem>,
}

enum Unit<'t> {
    Idle,
    Stray(Stray),
    Message(Message<'t>),
}

/// How a record ended in the text.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RecordEnd {
    Cr,
    /// LF, CR LF or LF CR.
    OtherLineEnd,
    /// The text ended.
    EndOfText,
}

pub(crate) struct Engine<'t, 'c, L: Locate, O: FnMut(ViewOutcome<'t>) + ?Sized> {
    text: &'t [u8],
    opts: ParseOptions,
    on_message: &'c mut O,
    locate: L,
    link: LinkFindings<'t>,
    file_len: usize,
    number: usize,
    unit: Unit<'t>,
    pending: Vec<Pending<'t>>,
    comments: Vec<Comment<'t>>,
    /// Problems before this index have been passed.
    problem_cursor: usize,
    /// Problems before this index have been given to a message.
    problems_given: usize,
    warning_cursor: usize,
    stamps: &'c mut StampCache,
}

/// The last date/times read, kept across the sessions of a file: uploads
/// repeat the same few (one run, one registration time), and reading one is
/// the costliest step of a record.
#[derive(Default)]
pub(crate) struct StampCache {
    entries: [(u8, [u8; STAMP_KEY], Option<Timestamp>); 4],
    next: usize,
}

/// Longest date/time text cached (`YYYYMMDDHHMMSS.SSSS+HHMM` is 24).
const STAMP_KEY: usize = 24;

impl StampCache {
    /// A date/time field; `Err` holds the text found.
    fn read(&mut self, field: &[u8]) -> Result<Option<Timestamp>, String> {
        if field.is_empty() {
            return Ok(None);
        }
        let hit = self.entries.iter().find(|(len, key, _)| key.get(..usize::from(*len)) == Some(field));
        if let Some((_, _, t)) = hit {
            return Ok(*t);
        }
        let t = timestamp(field)?;
        if let (Ok(len), Some(slot)) = (u8::try_from(field.len()), self.entries.get_mut(self.next))
            && field.len() <= STAMP_KEY
        {
            let mut key = [0; STAMP_KEY];
            key.iter_mut().zip(field).for_each(|(k, &b)| *k = b);
            *slot = (len, key, t);
            self.next = (self.next + 1) % 4;
        }
        Ok(t)
    }
}

const EXPECTED_TYPES: &str = "expected a record type H, P, O, R, C, Q, M, S or L";

impl<'t, 'c, L: Locate, O: FnMut(ViewOutcome<'t>) + ?Sized> Engine<'t, 'c, L, O> {
    /// `number`: outcomes reported so far in the file.
    pub(crate) fn new(
        text: &'t [u8],
        locate: L,
        link: LinkFindings<'t>,
        (file_len, number): (usize, usize),
        opts: &ParseOptions,
        (on_message, stamps): (&'c mut O, &'c mut StampCache),
    ) -> Self {
        Engine {
            text,
            opts: *opts,
            on_message,
            locate,
            link,
            file_len,
            number,
            unit: Unit::Idle,
            pending: Vec::new(),
            comments: Vec::new(),
            problem_cursor: 0,
            problems_given: 0,
            warning_cursor: 0,
            stamps,
        }
    }

    /// Split the text into records (CR, LF, CR LF or LF CR) and feed them.
    /// Returns the number of outcomes reported so far in the file.
    pub(crate) fn run(self, start: usize) -> usize {
        let end = self.text.len();
        self.run_part(start..end)
    }

    /// The records of `part` of the text, which ends the text or ends where
    /// [`cut_points`] cut it.
    pub(crate) fn run_part(mut self, part: Range<usize>) -> usize {
        let text = self.text;
        let before = self.number;
        let mut pos = part.start;
        while pos < part.end.min(text.len()) {
            let rest = text.get(pos..).unwrap_or_default();
            let (record, next, end) = match memchr2(b'\r', b'\n', rest) {
                Some(len) => {
                    let first = rest.get(len).copied();
                    let second = rest.get(len + 1).copied();
                    let pair = matches!((first, second), (Some(b'\r'), Some(b'\n')) | (Some(b'\n'), Some(b'\r')));
                    let end = if first == Some(b'\r') && !pair { RecordEnd::Cr } else { RecordEnd::OtherLineEnd };
                    (rest.get(..len).unwrap_or_default(), pos + len + if pair { 2 } else { 1 }, end)
                }
                None => (rest, text.len(), RecordEnd::EndOfText),
            };
            self.record(record, pos, next, end);
            pos = next;
        }
        self.end_of_text();
        if self.number == before
            && let Some(junk) = self.link.junk.clone()
        {
            // A session of nothing but stray bytes: say so rather than pass silently.
            let number = self.next_number();
            let text = format!("expected frames (STX … ETX) or ENQ/EOT, found {} bytes of other data", junk.len());
            self.emit(Err(MessageError { number, offset: junk.start, span: junk, text }));
        }
        self.number
    }

    fn emit(&mut self, outcome: ViewOutcome<'t>) {
        (self.on_message)(outcome);
    }

    fn next_number(&mut self) -> usize {
        self.number += 1;
        self.number
    }

    /// The end of the text: the end of a session (EOT/ENQ) or of the file.
    fn end_of_text(&mut self) {
        self.orphan_problems(usize::MAX);
        self.link_warnings_into_message(usize::MAX);
        let (offset, text) = match self.link.end {
            Some(SessionEnd::Eot(at)) => (at, "session ended (EOT) before the message's L record"),
            Some(SessionEnd::Enq(at)) => (at, "a new session (ENQ) started before the message's L record"),
            _ => (self.file_len, "message has no L record: expected L|1 before the end of the file"),
        };
        self.close_unit(Problem { offset, text: text.into() });
    }

    /// Close whatever is open: a message without its L is an error.
    fn close_unit(&mut self, missing_l: Problem) {
        match std::mem::replace(&mut self.unit, Unit::Idle) {
            Unit::Idle => {}
            Unit::Stray(stray) => self.emit_stray(stray),
            Unit::Message(m) => self.emit_broken(m, missing_l),
        }
    }

    fn emit_stray(&mut self, stray: Stray) {
        let number = self.next_number();
        let text = stray.link_error.map(|p| p.text).unwrap_or_else(|| {
            format!("expected a header record H before any other record, found {:?}", char::from(stray.found))
        });
        let offset = stray.offset;
        self.emit(Err(MessageError { number, offset, span: stray.span, text }));
    }

    fn emit_broken(&mut self, m: Message<'t>, fallback: Problem) {
        self.pending.clear();
        self.comments.clear();
        let number = self.next_number();
        let problem = m.link_error.or(m.error).unwrap_or(fallback);
        let span = m.span_start..m.span_end;
        self.emit(Err(MessageError { number, offset: problem.offset, span, text: problem.text }));
    }

    /// Frame problems before `pos` that no record has claimed (their frames
    /// carried only blank text): the open message or stretch gets them, else
    /// each is reported on its own. Never dropped.
    fn orphan_problems(&mut self, pos: usize) {
        while let Some(p) = self.link.problems.get(self.problems_given) {
            let start = self.link.frames.get(p.frame).map_or(0, |f| f.text_start);
            if start >= pos {
                break;
            }
            self.problems_given += 1;
            let problem = Problem { offset: p.file_offset, text: p.text.clone() };
            match &mut self.unit {
                Unit::Message(m) => {
                    m.link_error.get_or_insert(problem);
                }
                Unit::Stray(s) => {
                    s.link_error.get_or_insert(problem);
                }
                Unit::Idle => {
                    let span = self
                        .link
                        .frames
                        .get(p.frame)
                        .map_or(p.file_offset..p.file_offset, |f| f.file_start..f.file_end);
                    let number = self.next_number();
                    self.emit(Err(MessageError { number, offset: problem.offset, span, text: problem.text }));
                }
            }
        }
        self.problem_cursor = self.problem_cursor.max(self.problems_given);
    }

    /// The first frame problem of the frames that carried `rs..re`, including
    /// unclaimed ones before it.
    fn problem_for(&mut self, rs: usize, re: usize) -> Option<Problem> {
        let mut found: Option<Problem> = None;
        let frames = self.link.frames;
        let range =
            |p: &FrameProblem| frames.get(p.frame).map_or((0, 0), |f| (f.text_start, f.text_end.max(f.text_start + 1)));
        while let Some(p) = self.link.problems.get(self.problem_cursor) {
            let (_, end) = range(p);
            if end > rs {
                break;
            }
            if self.problem_cursor >= self.problems_given && found.is_none() {
                found = Some(Problem { offset: p.file_offset, text: p.text.clone() });
            }
            self.problem_cursor += 1;
        }
        self.problems_given = self.problems_given.max(self.problem_cursor);
        let mut i = self.problem_cursor;
        while let Some(p) = self.link.problems.get(i) {
            let (start, _) = range(p);
            if start >= re {
                break;
            }
            if found.is_none() {
                found = Some(Problem { offset: p.file_offset, text: p.text.clone() });
            }
            i += 1;
        }
        self.problems_given = self.problems_given.max(i);
        found
    }

    /// Link warnings about text before `pos` go to the open message.
    fn link_warnings_into_message(&mut self, pos: usize) {
        let Unit::Message(m) = &mut self.unit else { return };
        while let Some(w) = self.link.warnings.get(self.warning_cursor).filter(|w| w.text_pos < pos) {
            m.warnings.push(Warning { offset: w.file_offset, text: w.text.clone() });
            self.warning_cursor += 1;
        }
    }

    /// One record `text[rs..re]` (`re` past its line end).
    fn record(&mut self, record: &'t [u8], rs: usize, re: usize, end: RecordEnd) {
        if record.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let problem = if self.link.problems.is_empty() { None } else { self.problem_for(rs, re) };
        let offset = self.locate.start(rs);
        let file_end = self.locate.end(re);
        let kind = record.first().copied().unwrap_or_default().to_ascii_uppercase();
        if kind == b'H' {
            self.header(record, rs, offset, file_end, problem);
            self.link_warnings_into_message(re);
            self.line_end(offset, end);
            return;
        }
        self.link_warnings_into_message(re);
        match &mut self.unit {
            Unit::Message(m) => {
                m.span_end = file_end;
                if let Some(p) = problem {
                    m.link_error.get_or_insert(p);
                }
            }
            Unit::Stray(s) => {
                s.span.end = file_end;
                if let Some(p) = problem {
                    s.link_error.get_or_insert(p);
                }
                return;
            }
            Unit::Idle => {
                self.unit = Unit::Stray(Stray { offset, span: offset..file_end, found: kind, link_error: problem });
                return;
            }
        }
        self.line_end(offset, end);
        if kind == b'L' {
            self.finish(re);
        } else {
            self.body_record(record, kind, offset);
        }
    }

    fn line_end(&mut self, offset: usize, end: RecordEnd) {
        let Unit::Message(m) = &mut self.unit else { return };
        let text = match end {
            RecordEnd::Cr => return,
            RecordEnd::OtherLineEnd if m.warned_line_ends => return,
            RecordEnd::OtherLineEnd => {
                m.warned_line_ends = true;
                "records end with LF or CR LF instead of CR, accepted"
            }
            RecordEnd::EndOfText => "the last record has no CR at the end of the file, accepted",
        };
        m.warnings.push(Warning { offset, text: text.into() });
    }

    /// An H record: the open message (if any) lacked its L; a new one starts.
    fn header(&mut self, record: &'t [u8], rs: usize, offset: usize, file_end: usize, problem: Option<Problem>) {
        self.close_unit(Problem {
            offset,
            text: "message has no L record: expected L|1 before the next H record".into(),
        });
        let mut m = Message {
            text_start: rs,
            span_start: offset,
            span_end: file_end,
            delimiters: None,
            header_offset: offset,
            sender: &[],
            control_id: &[],
            header_qc: false,
            patient: &[],
            order: None,
            after_result: false,
            last_kind: b'H',
            error: None,
            link_error: problem,
            warnings: Vec::new(),
            warned_line_ends: false,
        };
        match read_header(record) {
            Ok(h) => {
                let d = h.delimiters;
                // H.3 … H.12, counted from the type letter.
                let f = Fields::<10>::split(h.fields_from_h3, d.field, 3);
                m.delimiters = Some(d);
                m.control_id = f.get(3);
                m.sender = component(first_repeat(f.get(5), &d), &d, 1);
                m.header_qc = is_q(f.get(12), &d);
            }
            Err(text) => m.error = Some(Problem { offset, text }),
        }
        self.unit = Unit::Message(m);
    }

    /// P, O, R, C, Q, M or S inside a message.
    fn body_record(&mut self, record: &'t [u8], kind: u8, offset: usize) {
        let Unit::Message(m) = &mut self.unit else { return };
        let Some(d) = m.delimiters else { return };
        if m.error.is_some() {
            return;
        }
        if record.get(1).is_some_and(|&b| b != d.field)
            || !matches!(kind, b'P' | b'O' | b'R' | b'C' | b'Q' | b'M' | b'S')
        {
            let field = record.split(|&b| b == d.field).next().unwrap_or_default();
            let text = match field {
                [kind] if kind.is_ascii_alphabetic() => format!("{EXPECTED_TYPES}, found {:?}", char::from(*kind)),
                _ => format!(
                    "{EXPECTED_TYPES}, found a line that is not a record (the {} record before it may have been wrapped onto a new line)",
                    char::from(m.last_kind)
                ),
            };
            m.error = Some(Problem { offset, text });
            return;
        }
        m.last_kind = kind;
        match kind {
            b'P' => {
                let f = Fields::<4>::split(record, d.field, 1);
                m.patient = id_field(f.get(3), f.get(4), &d);
                m.order = None;
                m.after_result = false;
            }
            b'O' => {
                let f = Fields::<12>::split(record, d.field, 1);
                match self.stamps.read(f.get(8)) {
                    Ok(collected) => {
                        let sample = id_component(f.get(3), f.get(4), &d);
                        m.order = Some(Order { sample, collected, qc: is_q(f.get(12), &d) });
                    }
                    Err(found) => {
                        m.error = Some(Problem {
                            offset,
                            text: format!("O.8 collection time: expected YYYYMMDD[HHMMSS][+HHMM], found {found}"),
                        });
                    }
                }
                m.after_result = false;
            }
            b'R' => {
                let Some(order) = m.order else {
                    m.error = Some(Problem { offset, text: "result record before any order record".into() });
                    return;
                };
                let f = Fields::<13>::split(record, d.field, 1);
                let resulted = match self.stamps.read(f.get(13)) {
                    Ok(t) => t,
                    Err(found) => {
                        m.error = Some(Problem {
                            offset,
                            text: format!("R.13 result time: expected YYYYMMDD[HHMMSS][+HHMM], found {found}"),
                        });
                        return;
                    }
                };
                let at = self.comments.len();
                self.pending.push(Pending {
                    offset,
                    sample: order.sample,
                    patient: m.patient,
                    test_id: first_repeat(f.get(3), &d),
                    value: f.get(4),
                    unit: f.get(5),
                    range: f.get(6),
                    flags: f.get(7),
                    status: f.get(9),
                    collected: order.collected,
                    resulted,
                    qc: m.header_qc || order.qc,
                    comments: at..at,
                });
                m.after_result = true;
            }
            b'C' => {
                if m.after_result {
                    let f = Fields::<4>::split(record, d.field, 1);
                    self.comments.push(Comment { offset, text: f.get(4) });
                    if let Some(p) = self.pending.last_mut() {
                        p.comments.end = self.comments.len();
                    }
                }
            }
            b'Q' | b'S' => {
                m.order = None;
                m.after_result = false;
            }
            _ => m.after_result = false,
        }
    }

    /// The L record: the message is complete.
    fn finish(&mut self, re: usize) {
        let Unit::Message(m) = std::mem::replace(&mut self.unit, Unit::Idle) else { return };
        let Some(d) = m.delimiters.filter(|_| m.error.is_none() && m.link_error.is_none()) else {
            let fallback = Problem { offset: m.span_start, text: "broken message".into() };
            self.emit_broken(m, fallback);
            return;
        };
        let number = self.next_number();
        let mut warnings = m.warnings;
        let bytes = self.text.get(m.text_start..re).unwrap_or_default();
        // Validated once here, so that leaves are sliced from it without
        // validating each again.
        let utf8 = std::str::from_utf8(bytes).ok();
        if utf8.is_none() {
            warnings.push(Warning {
                offset: m.span_start,
                text: "message is not valid UTF-8: decoded as Windows-1252".into(),
            });
        }
        let nul_in_text = memchr::memchr(0, bytes).is_some();
        let mut leaves = Leaves { d, utf8, nul_in_text, warnings, kept: Vec::new() };
        let sender = leaves.id(m.sender, m.header_offset);
        let control_id = leaves.joined(m.control_id, m.header_offset, true);
        let mut results = Vec::with_capacity(self.pending.len());
        for p in self.pending.drain(..) {
            let test_code = match component(p.test_id, &d, 1) {
                first if !first.trim_ascii().is_empty() => leaves.id(first, p.offset),
                _ => leaves.id(component(p.test_id, &d, 4), p.offset),
            };
            let value = leaves.joined(p.value, p.offset, false);
            let (comparator, numeric) = match &value {
                Some(v) => value::interpret(v, self.opts.decimal_comma),
                None => (None, None),
            };
            let attached = self.comments.get(p.comments.clone()).unwrap_or_default();
            let mut comments = Vec::new();
            if !attached.is_empty() {
                comments.reserve_exact(attached.len());
                comments.extend(attached.iter().filter_map(|c| leaves.joined(c.text, c.offset, true)));
            }
            results.push(ResultView {
                sender: sender.clone(),
                sample_id: leaves.id(p.sample, p.offset),
                patient_ids: p
                    .patient
                    .split(|&b| b == d.repeat)
                    .filter_map(|repeat| leaves.id(component(repeat, &d, 1), p.offset))
                    .collect(),
                test_code,
                value,
                comparator,
                numeric,
                unit: leaves.joined(p.unit, p.offset, true),
                reference_range: leaves.joined(p.range, p.offset, true),
                flags: leaves.joined(p.flags, p.offset, true),
                status: leaves.joined(p.status, p.offset, true),
                collected_at: p.collected,
                resulted_at: p.resulted,
                qc: p.qc,
                specimen_type: None,
                comments,
                offset: p.offset,
            });
        }
        self.comments.clear();
        let span = m.span_start..m.span_end;
        let warnings = leaves.warnings;
        self.emit(Ok(MessageView { number, format: Format::Astm, span, sender, control_id, results, warnings }));
    }
}

/// Component 1 of the first field, else of the second (O.3/O.4, P.3/P.4):
/// the first one that is not blank.
/// Where plain records may be cut so that each piece, read by an engine of
/// its own, gives exactly the outcomes of the whole: before an H record (at
/// a line start) whose record just before it is an L record. After an L no
/// message is open (the L closed one, or the L was itself a stray record,
/// which an H closes the same way as the end of a piece does), so nothing
/// carries across the cut but the message count. At most one cut per
/// `every` bytes after `start`.
pub(crate) fn cut_points(text: &[u8], start: usize, every: usize) -> Vec<usize> {
    let every = every.max(1);
    let mut cuts = Vec::new();
    let mut from = start.saturating_add(every);
    while from < text.len() {
        let limit = from.saturating_add(every);
        match cut_in(text, from, limit) {
            Some(cut) => {
                cuts.push(cut);
                from = cut.saturating_add(every);
            }
            None => from = limit,
        }
    }
    cuts
}

/// The first cut whose line end lies in `from..limit`.
fn cut_in(text: &[u8], from: usize, limit: usize) -> Option<usize> {
    let mut pos = from;
    loop {
        let line_end = pos + memchr2(b'\r', b'\n', text.get(pos..limit.min(text.len()))?)?;
        // Line ends are read as the engine reads them: CR LF and LF CR are one.
        let pair = matches!(
            (text.get(line_end), text.get(line_end + 1)),
            (Some(b'\r'), Some(b'\n')) | (Some(b'\n'), Some(b'\r'))
        );
        let cut = line_end + if pair { 2 } else { 1 };
        let header_next = text.get(cut).is_some_and(|b| b.eq_ignore_ascii_case(&b'H'));
        let record_start =
            text.get(..line_end).and_then(|before| memchr::memrchr2(b'\r', b'\n', before)).map(|q| q + 1);
        let after_l = record_start.and_then(|i| text.get(i)).is_some_and(|b| b.eq_ignore_ascii_case(&b'L'));
        if header_next && after_l {
            return Some(cut);
        }
        pos = line_end + 1;
    }
}

fn id_component<'a>(first: &'a [u8], second: &'a [u8], d: &Delimiters) -> &'a [u8] {
    let a = component(first_repeat(first, d), d, 1);
    if a.trim_ascii().is_empty() { component(first_repeat(second, d), d, 1) } else { a }
}

/// P.3, else P.4 when no repeat of P.3 has a first component: the field
/// whose repeats are the patient IDs (the study code may be any of them).
fn id_field<'a>(first: &'a [u8], second: &'a [u8], d: &Delimiters) -> &'a [u8] {
    let blank = first.split(|&b| b == d.repeat).all(|r| component(r, d, 1).trim_ascii().is_empty());
    if blank { second } else { first }
}

/// H.12 / O.12 says QC: first component `Q`.
fn is_q(field: &[u8], d: &Delimiters) -> bool {
    component(first_repeat(field, d), d, 1).trim_ascii().eq_ignore_ascii_case(b"Q")
}

/// A date/time field; `Err` says what was found without quoting it.
fn timestamp(field: &[u8]) -> Result<Option<Timestamp>, String> {
    let shown = || format!("{} that are not a date", crate::model::shown_safely(field.trim_ascii()));
    if field.trim_ascii().is_empty() {
        return Ok(None);
    }
    let text = std::str::from_utf8(field).map_err(|_| shown())?;
    Timestamp::parse(text).map_err(|_| shown())
}

/// Turns raw leaf bytes into strings for one message: escapes decoded per
/// component, then the message's character set.
struct Leaves<'t> {
    d: Delimiters,
    /// The message's text, when it is valid UTF-8 (else: Windows-1252).
    utf8: Option<&'t str>,
    /// Whether the message holds a NUL byte: looked for once, so that text
    /// taken from a clean message needs no search of its own.
    nul_in_text: bool,
    warnings: Vec<Warning>,
    kept: Vec<KeptEscape>,
}

impl<'t> Leaves<'t> {
    /// An identifier: one component, trimmed; `None` when blank.
    fn id(&mut self, raw: &[u8], offset: usize) -> Option<Cow<'t, str>> {
        let raw = raw.trim_ascii();
        if raw.is_empty() {
            return None;
        }
        let bytes = unescape(raw, &self.d, &mut self.kept);
        self.report_kept(offset);
        let bytes = bytes.trim_ascii();
        if bytes.is_empty() { None } else { Some(self.decode(bytes, offset)) }
    }

    /// A whole field: components joined with `^` and repeats with `\` (the
    /// standard delimiters, whatever the message used), trailing empty
    /// components and repeats dropped, escapes decoded per component.
    /// `None` when nothing but blanks remains.
    fn joined(&mut self, field: &[u8], offset: usize, trim: bool) -> Option<Cow<'t, str>> {
        if field.is_empty() {
            return None;
        }
        let d = self.d;
        let simple = !field.iter().any(|&b| b == d.repeat || b == d.component || Some(b) == d.escape);
        let mut out = Vec::new();
        let bytes = if simple {
            field
        } else {
            out.reserve(field.len());
            let mut repeat_gap = 0;
            for (ri, repeat) in field.split(|&b| b == d.repeat).enumerate() {
                if ri > 0 {
                    repeat_gap += 1;
                }
                let mark = out.len();
                out.extend(std::iter::repeat_n(b'\\', repeat_gap));
                let before = out.len();
                let mut component_gap = 0;
                for (ci, comp) in repeat.split(|&b| b == d.component).enumerate() {
                    if ci > 0 {
                        component_gap += 1;
                    }
                    if !comp.is_empty() {
                        out.extend(std::iter::repeat_n(b'^', component_gap));
                        component_gap = 0;
                        out.extend_from_slice(&unescape(comp, &d, &mut self.kept));
                    }
                }
                if out.len() == before {
                    out.truncate(mark);
                } else {
                    repeat_gap = 0;
                }
            }
            self.report_kept(offset);
            &out
        };
        let bytes = if trim { bytes.trim_ascii() } else { bytes };
        if bytes.trim_ascii().is_empty() { None } else { Some(self.decode(bytes, offset)) }
    }

    fn report_kept(&mut self, offset: usize) {
        for k in self.kept.drain(..) {
            self.warnings.push(Warning { offset, text: k.describe() });
        }
    }

    /// A NUL byte is never text (and no database column takes it): it
    /// becomes U+FFFD, so a value holding one reads as no number at all
    /// rather than as the digits around it, and a warning says where.
    fn decode(&mut self, bytes: &[u8], offset: usize) -> Cow<'t, str> {
        // Text of a clean message: no NUL to look for.
        if !self.nul_in_text
            && let Some(text) = self.utf8.and_then(|text| sub_str(text, bytes))
        {
            return Cow::Borrowed(text);
        }
        if memchr::memchr(0, bytes).is_some() {
            self.warnings.push(Warning { offset, text: "NUL byte in a field, shown as U+FFFD".to_owned() });
            let text = self.text_of(bytes);
            return Cow::Owned(text.replace('\0', "\u{FFFD}"));
        }
        self.text_of(bytes)
    }

    /// Borrowed when `bytes` lie in the validated message text.
    fn text_of(&self, bytes: &[u8]) -> Cow<'t, str> {
        if let Some(text) = self.utf8 {
            if let Some(s) = sub_str(text, bytes) {
                return Cow::Borrowed(s);
            }
            if let Ok(s) = std::str::from_utf8(bytes) {
                return Cow::Owned(s.to_owned());
            }
        }
        Cow::Owned(WINDOWS_1252.decode_without_bom_handling(bytes).0.into_owned())
    }
}

/// `part` as text when it is a slice of `whole` (already validated), so it
/// needs no second UTF-8 check; `None` for bytes from elsewhere (decoded
/// escapes) or not on character boundaries.
fn sub_str<'a>(whole: &'a str, part: &[u8]) -> Option<&'a str> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    whole.get(start..start.checked_add(part.len())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(d: Delimiters) -> Leaves<'static> {
        Leaves { d, utf8: Some(""), nul_in_text: false, warnings: Vec::new(), kept: Vec::new() }
    }

    #[test]
    fn joined_drops_trailing_empty_components_and_repeats_only() {
        let mut l = leaves(Delimiters::STANDARD);
        assert_eq!(l.joined(b"3.216365^^^^", 0, false).as_deref(), Some("3.216365"));
        assert_eq!(l.joined(b"-1^0.750", 0, false).as_deref(), Some("-1^0.750"));
        assert_eq!(l.joined(b"^^^CODE", 0, false).as_deref(), Some("^^^CODE"));
        assert_eq!(l.joined(b"a^^b", 0, false).as_deref(), Some("a^^b"));
        assert_eq!(l.joined(b"1\\2^^\\\\", 0, false).as_deref(), Some("1\\2"));
        assert_eq!(l.joined(b"\\x", 0, false).as_deref(), Some("\\x"));
        assert_eq!(l.joined(b"^^\\^", 0, false), None);
        assert_eq!(l.joined(b"", 0, false), None);
        assert_eq!(l.joined(b"  ", 0, false), None);
        assert_eq!(l.joined(b" > 5 ", 0, false).as_deref(), Some(" > 5 "), "values are not trimmed");
        assert_eq!(l.joined(b" mg/dL ", 0, true).as_deref(), Some("mg/dL"));
    }

    #[test]
    fn joined_uses_standard_separators_whatever_the_message_declared() {
        let mut l = leaves(Delimiters::SELECTRA);
        assert_eq!(l.joined(b"a!b\\c!!", 0, false).as_deref(), Some("a^b\\c"));
        assert_eq!(l.joined(b"x~S~y", 0, false).as_deref(), Some("x!y"), "an escaped delimiter is the message's own");
    }

    #[test]
    fn ids_are_trimmed_and_blank_is_none() {
        let mut l = leaves(Delimiters::STANDARD);
        assert_eq!(l.id(b"            P110055695", 0).as_deref(), Some("P110055695"));
        assert_eq!(l.id(b"   ", 0), None);
        assert_eq!(l.id(b"a&S&b", 0).as_deref(), Some("a^b"));
        assert_eq!(l.id(b"a&Q&", 7).as_deref(), Some("a&Q&"));
        assert_eq!(l.warnings.len(), 1);
        assert_eq!(l.warnings.first().map(|w| w.offset), Some(7));
    }

    #[test]
    fn windows_1252_when_the_message_is_not_utf8() {
        let mut l =
            Leaves { d: Delimiters::STANDARD, utf8: None, nul_in_text: false, warnings: Vec::new(), kept: Vec::new() };
        assert_eq!(l.decode(b"\xb5mol/L", 0), "µmol/L");
        assert_eq!(l.decode(b"\x80", 0), "€");
        assert!(l.warnings.is_empty());
    }

    #[test]
    fn a_nul_byte_is_never_text_and_is_warned_about() {
        let mut l =
            Leaves { d: Delimiters::STANDARD, utf8: None, nul_in_text: false, warnings: Vec::new(), kept: Vec::new() };
        assert_eq!(l.decode(b"0.2\x005", 40), "0.2\u{FFFD}5");
        assert_eq!(l.warnings.first().map(|w| w.offset), Some(40));
        // Text taken from a message that holds a NUL is searched too.
        let text = "R|1|0.2\u{0}5|";
        let mut l = Leaves {
            d: Delimiters::STANDARD,
            utf8: Some(text),
            nul_in_text: true,
            warnings: Vec::new(),
            kept: Vec::new(),
        };
        let value = text.as_bytes().get(4..9).unwrap_or_default();
        assert_eq!(l.decode(value, 4), "0.2\u{FFFD}5");
        assert_eq!(l.warnings.len(), 1);
    }

    #[test]
    fn sub_str_only_for_slices_of_the_validated_text() {
        let whole = "abc µ def";
        let bytes = whole.as_bytes();
        assert_eq!(sub_str(whole, bytes.get(4..6).unwrap_or_default()), Some("µ"));
        assert_eq!(sub_str(whole, bytes.get(5..6).unwrap_or_default()), None, "not on a char boundary");
        assert_eq!(sub_str(whole, b"abc"), None, "bytes from elsewhere");
    }

    #[test]
    fn id_field_is_the_second_when_no_repeat_of_the_first_has_an_id() {
        let d = Delimiters::STANDARD;
        assert_eq!(id_field(b"", b"B", &d), b"B");
        assert_eq!(id_field(b" ^x\\^y", b"B", &d), b"B");
        assert_eq!(id_field(b"^x\\U04", b"B", &d), b"^x\\U04");
    }

    #[test]
    fn id_component_falls_back_to_the_second_field_when_the_first_is_blank() {
        let d = Delimiters::STANDARD;
        assert_eq!(id_component(b"", b"T20 10134GA D28^^6", &d), b"T20 10134GA D28");
        assert_eq!(id_component(b"  ^x", b"B", &d), b"B");
        assert_eq!(id_component(b"11625^CL-PL", b"B", &d), b"11625");
        assert_eq!(id_component(b"A\\B", b"", &d), b"A");
    }

    #[test]
    fn stamp_cache_returns_what_timestamp_parse_returns() {
        let mut cache = StampCache::default();
        for _ in 0..3 {
            for text in
                [&b"20260302084500"[..], b"20260302", b"", b"20260302084500+0100", b"202603020845001234567890123"]
            {
                let expected = timestamp(text);
                assert_eq!(cache.read(text), expected, "{text:?}");
            }
            assert!(cache.read(b"20230230").is_err(), "errors are never cached as successes");
        }
    }
}
