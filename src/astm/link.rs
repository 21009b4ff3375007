//! Link framing captured in files: frames are checked, then their texts are
//! joined, one session (ENQ … EOT) at a time, with a map back to the frames.
//!
//! Frames and records are independent (astm.md §1.9): a record may be split
//! anywhere across ETB frames, a frame may hold many records, a whole message
//! may sit in one multi-kB frame. So texts are concatenated first and split
//! into records afterwards, by the record layer. What the link layer found
//! wrong with a frame (bad checksum, missing end, frame number gap) is kept
//! with the frame's place in the text, so that every message whose text the
//! frame carried is reported as broken, and only those. A message cannot
//! outlive its session (EOT ends it), so one session's text at a time is
//! enough: the buffer stays small and is reused.

use memchr::memchr3;

use super::frame::{self, CR, ENQ, EOT, ETB, ETX, FrameEnd, LF, STX};

/// Where one frame's text sits in the joined text and in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameSpan {
    pub text_start: usize,
    pub text_end: usize,
    /// Offset of the frame's STX in the file.
    pub file_start: usize,
    /// Offset just past the frame's trailer in the file.
    pub file_end: usize,
}

/// A frame whose text cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FrameProblem {
    /// Index into [`Session::frames`].
    pub frame: usize,
    pub file_offset: usize,
    pub text: String,
}

/// How a session's bytes ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionEnd {
    /// EOT at this offset.
    Eot(usize),
    /// ENQ at this offset, with frames since the last EOT: a new bid.
    Enq(usize),
    EndOfFile,
}

/// A tolerated link oddity, to be attached to the message whose text follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LinkWarning {
    pub text_pos: usize,
    pub file_offset: usize,
    pub text: String,
}

/// The joined frame texts of one session (ENQ … EOT) and what the link layer
/// found. Reused from session to session, so the buffer stays small and warm.
#[derive(Debug)]
pub(crate) struct Session {
    /// Frame texts in order, with a CR added where a frame's text ended a
    /// record without one (`…L|1|N<ETX>`) or the session ended mid-record.
    pub text: Vec<u8>,
    pub frames: Vec<FrameSpan>,
    /// In frame order.
    pub problems: Vec<FrameProblem>,
    pub warnings: Vec<LinkWarning>,
    pub end: SessionEnd,
    /// Bytes outside frames that were not link control bytes.
    pub junk: Option<std::ops::Range<usize>>,
}

impl Default for Session {
    fn default() -> Self {
        Session {
            text: Vec::new(),
            frames: Vec::new(),
            problems: Vec::new(),
            warnings: Vec::new(),
            end: SessionEnd::EndOfFile,
            junk: None,
        }
    }
}

impl Session {
    fn clear(&mut self) {
        self.text.clear();
        self.frames.clear();
        self.problems.clear();
        self.warnings.clear();
        self.end = SessionEnd::EndOfFile;
        self.junk = None;
    }
}

/// The frame accepted last in the current session, for number checks,
/// retransmissions and NAKed attempts.
#[derive(Debug, Clone, Copy)]
struct LastFrame {
    number: u8,
    end: Option<FrameEnd>,
    /// Index into the session's frames.
    index: usize,
    /// 1-based ordinal in the file, for messages.
    ordinal: usize,
    /// Length of the frame's own text (without an added CR).
    text_len: usize,
    bad_checksum: bool,
}

/// How one frame ended, as far as the bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// ETB/ETX at this offset.
    Marked(FrameEnd, usize),
    /// No ETB/ETX: the text ran into this byte (STX, EOT, ENQ) or the end of the file.
    Missing(usize),
}

/// Reads a captured file session by session.
pub(crate) struct LinkReader<'a> {
    input: &'a [u8],
    pos: usize,
    last: Option<LastFrame>,
    /// The frame accepted before `last`, restored when `last` is replaced.
    before_last: Option<LastFrame>,
    /// Frames read so far in the file (1-based ordinal for messages).
    frame_count: usize,
    warned_simplified: bool,
}

fn is_link_noise(b: u8) -> bool {
    matches!(b, frame::ACK | frame::NAK | CR | LF | b' ' | b'\t' | 0)
}

fn control_name(b: Option<u8>) -> &'static str {
    match b {
        Some(STX) => "the next frame's STX",
        Some(EOT) => "EOT",
        Some(ENQ) => "ENQ",
        _ => "the end of the file",
    }
}

impl<'a> LinkReader<'a> {
    /// Start reading `input` at `start` (after a BOM).
    pub(crate) fn new(input: &'a [u8], start: usize) -> Self {
        LinkReader { input, pos: start, last: None, before_last: None, frame_count: 0, warned_simplified: false }
    }

    /// Read the next session into `s` (cleared first). `false` when the file
    /// holds nothing more: no frames and no stray bytes.
    pub(crate) fn next_session(&mut self, s: &mut Session) -> bool {
        s.clear();
        let input = self.input;
        while self.pos < input.len() {
            let pos = self.pos;
            let rest = input.get(pos..).unwrap_or_default();
            let Some(found) = memchr3(STX, EOT, ENQ, rest) else {
                self.outside_frames(s, pos, input.len());
                self.pos = input.len();
                break;
            };
            let at = pos + found;
            self.outside_frames(s, pos, at);
            match input.get(at).copied() {
                Some(STX) => self.pos = self.frame(s, at),
                Some(kind) => {
                    self.pos = at + 1;
                    if !s.frames.is_empty() {
                        s.end = if kind == EOT { SessionEnd::Eot(at) } else { SessionEnd::Enq(at) };
                        self.end_of_session(s);
                        return true;
                    }
                    // ENQ or EOT with no frames since the last one changes nothing.
                    self.last = None;
                    self.before_last = None;
                }
                None => break,
            }
        }
        s.end = SessionEnd::EndOfFile;
        self.end_of_session(s);
        !s.frames.is_empty() || s.junk.is_some()
    }

    /// Bytes between frames: receiver replies and line ends are expected;
    /// anything else is ignored with a warning.
    fn outside_frames(&mut self, s: &mut Session, from: usize, to: usize) {
        let gap = self.input.get(from..to).unwrap_or_default();
        let noise = gap.iter().filter(|&&b| !is_link_noise(b)).count();
        if noise > 0 {
            let text = format!("ignored {noise} bytes outside frames: expected STX, ENQ or EOT");
            warn(s, from, text);
            s.junk = Some(s.junk.as_ref().map_or(from, |j| j.start)..to);
        }
    }

    /// A session that stops after an ETB frame lost the rest of its message.
    fn end_of_session(&mut self, s: &mut Session) {
        if let Some(last) = self.last.filter(|l| l.end == Some(FrameEnd::Intermediate)) {
            let file_offset = s.frames.get(last.index).map_or(0, |f| f.file_start);
            let ended = match s.end {
                SessionEnd::Eot(_) => "session ended (EOT)",
                SessionEnd::Enq(_) => "a new session (ENQ) started",
                SessionEnd::EndOfFile => "the file ended",
            };
            let text = format!(
                "{ended} after frame {} (FN {}) ended with ETB: expected a last frame ending with ETX",
                last.ordinal, last.number
            );
            s.problems.push(FrameProblem { frame: last.index, file_offset, text });
        }
        end_record(s);
        self.last = None;
        self.before_last = None;
    }

    /// One frame starting at the STX at `start`; returns where to continue.
    fn frame(&mut self, s: &mut Session, start: usize) -> usize {
        let input = self.input;
        self.frame_count += 1;
        let ordinal = self.frame_count;
        let digit = input.get(start + 1).copied().filter(u8::is_ascii_digit);
        let text_start = if digit.is_some() { start + 2 } else { start + 1 };
        let mut problem = None;
        let number = match digit {
            Some(d @ b'0'..=b'7') => Some(d - b'0'),
            Some(d) => {
                problem = Some(format!("frame {ordinal}: expected a frame number 0-7, found {:?}", char::from(d)));
                None
            }
            None => None,
        };
        let ending = find_text_end(input, text_start);
        let (text_end, mut next) = match ending {
            Ending::Marked(_, at) => (at, at + 1),
            Ending::Missing(at) => (at, at),
        };
        let text = input.get(text_start..text_end).unwrap_or_default();
        let mut bad_checksum = false;
        let end = match ending {
            Ending::Marked(end, at) => {
                match frame::checksum_digits(input.get(at + 1..).unwrap_or_default()) {
                    Ok((_, (sent, lowercase))) => {
                        next = at + 3;
                        let fn_digit = digit.unwrap_or_default();
                        let computed = frame::frame_checksum(fn_digit, text, end);
                        if digit.is_none() {
                            problem.get_or_insert(format!(
                                "frame {ordinal}: expected a frame number after STX (a checksum was sent)"
                            ));
                        } else if sent != computed {
                            bad_checksum = true;
                            problem.get_or_insert(format!(
                                "bad checksum in frame {ordinal} (FN {}): sent {sent:02X}, computed {computed:02X}",
                                char::from(fn_digit)
                            ));
                        } else if lowercase {
                            warn(s, start, format!("frame {ordinal}: checksum in lowercase hex, accepted"));
                        }
                        next = self.trailer(s, next, ordinal);
                    }
                    Err(_) if digit.is_none() => {
                        // Maglumi "simplified envelope": STX text ETX, nothing else.
                        if !self.warned_simplified {
                            self.warned_simplified = true;
                            let text = "frame without frame number or checksum (simplified envelope), accepted";
                            warn(s, start, text.into());
                        }
                        if input.get(next) == Some(&CR) && input.get(next + 1) == Some(&LF) {
                            next += 2;
                        }
                    }
                    Err(_) => {
                        problem.get_or_insert(format!(
                            "frame {ordinal}: expected two checksum digits after {}",
                            if end == FrameEnd::Last { "ETX" } else { "ETB" }
                        ));
                    }
                }
                Some(end)
            }
            Ending::Missing(at) => {
                problem.get_or_insert(format!(
                    "frame {ordinal} has no end: expected ETB or ETX, a checksum and CR LF after the text, found {}",
                    control_name(input.get(at).copied())
                ));
                None
            }
        };
        let frame = Accepted { file_start: start, file_end: next, number, text, end, bad_checksum, problem, ordinal };
        self.accept(s, frame);
        next
    }

    /// `trailer = CR LF`; tolerated when missing.
    fn trailer(&mut self, s: &mut Session, at: usize, ordinal: usize) -> usize {
        let input = self.input;
        match (input.get(at).copied(), input.get(at + 1).copied()) {
            (Some(CR), Some(LF)) => at + 2,
            (found, _) => {
                let at_end = if found == Some(CR) || found == Some(LF) { at + 1 } else { at };
                warn(s, at, format!("frame {ordinal}: expected CR LF after the checksum, tolerated"));
                at_end
            }
        }
    }

    /// Number checks, retransmissions and NAKed attempts; then append.
    fn accept(&mut self, s: &mut Session, f: Accepted<'_>) {
        let Accepted { ordinal, file_start, .. } = f;
        let mut problem = f.problem;
        if let (Some(n), Some(last)) = (f.number, self.last) {
            if n == last.number && last.bad_checksum {
                // The receiver NAKed the last frame; this is its new attempt.
                self.drop_last(s, last);
                warn(s, file_start, format!("frame {ordinal} (FN {n}) replaces frame {} (bad checksum)", last.ordinal));
            } else if n == last.number && !f.bad_checksum && problem.is_none() && last_text(s, last) == f.text {
                warn(
                    s,
                    file_start,
                    format!("frame {ordinal} (FN {n}) repeats the frame before it (lost ACK), skipped"),
                );
                return;
            }
        }
        if let Some(n) = f.number {
            match self.last {
                None if n != 1 => {
                    warn(
                        s,
                        file_start,
                        format!("frame {ordinal}: first frame number of the session is {n}, expected 1"),
                    );
                }
                None => {}
                Some(last) => {
                    let expected = (last.number + 1) % 8;
                    if n == expected {
                    } else if last.number == 7 && n == 1 {
                        warn(s, file_start, format!("frame {ordinal}: frame number 1 after 7 (expected 0), accepted"));
                    } else if n == 1 && last.end == Some(FrameEnd::Last) {
                        // A new message may restart at 1 (SPEC §7).
                    } else {
                        problem.get_or_insert(format!(
                            "frame {ordinal}: frame number {n} out of sequence, expected {expected} (a frame may be missing)"
                        ));
                    }
                }
            }
        }
        let text_start = s.text.len();
        s.text.extend_from_slice(f.text);
        let index = s.frames.len();
        s.frames.push(FrameSpan { text_start, text_end: s.text.len(), file_start, file_end: f.file_end });
        if let Some(text) = problem {
            s.problems.push(FrameProblem { frame: index, file_offset: file_start, text });
        }
        if f.end != Some(FrameEnd::Intermediate) {
            end_record(s);
        }
        // A frame without a number (simplified envelope) restarts the count.
        self.before_last = self.last;
        self.last = f.number.map(|number| LastFrame {
            number,
            end: f.end,
            index,
            ordinal,
            text_len: f.text.len(),
            bad_checksum: f.bad_checksum,
        });
    }

    /// Remove the last frame (its text, its problem); the one before it
    /// becomes the last again.
    fn drop_last(&mut self, s: &mut Session, last: LastFrame) {
        if let Some(f) = s.frames.get(last.index).copied() {
            s.text.truncate(f.text_start);
            s.frames.truncate(last.index);
            while s.problems.last().is_some_and(|p| p.frame >= last.index) {
                s.problems.pop();
            }
        }
        self.last = self.before_last.take();
    }
}

/// A frame read from the file, before the sequence checks.
struct Accepted<'a> {
    file_start: usize,
    file_end: usize,
    number: Option<u8>,
    text: &'a [u8],
    end: Option<FrameEnd>,
    bad_checksum: bool,
    problem: Option<String>,
    ordinal: usize,
}

fn warn(s: &mut Session, file_offset: usize, text: String) {
    let text_pos = s.text.len();
    s.warnings.push(LinkWarning { text_pos, file_offset, text });
}

fn last_text(s: &Session, last: LastFrame) -> &[u8] {
    let start = s.frames.get(last.index).map_or(0, |f| f.text_start);
    s.text.get(start..start + last.text_len).unwrap_or_default()
}

/// Make sure the joined text ends a record here.
fn end_record(s: &mut Session) {
    if s.text.last().is_some_and(|&b| b != CR && b != LF) {
        s.text.push(CR);
        if let Some(f) = s.frames.last_mut() {
            f.text_end = s.text.len();
        }
    }
}

/// The end of a frame's text: the first ETB/ETX, unless STX, EOT or ENQ (or
/// the end of the file) comes first, which means the end is missing.
fn find_text_end(input: &[u8], from: usize) -> Ending {
    let rest = input.get(from..).unwrap_or_default();
    let stop = memchr3(ETX, ETB, STX, rest).map(|i| from + i);
    let limit = stop.unwrap_or(input.len());
    let scanned = input.get(from..limit).unwrap_or_default();
    if let Some(i) = memchr::memchr2(EOT, ENQ, scanned) {
        return Ending::Missing(from + i);
    }
    match stop.and_then(|at| input.get(at).map(|&b| (at, b))) {
        Some((at, ETX)) => Ending::Marked(FrameEnd::Last, at),
        Some((at, ETB)) => Ending::Marked(FrameEnd::Intermediate, at),
        Some((at, _)) => Ending::Missing(at),
        None => Ending::Missing(input.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// All sessions of a file, joined.
    fn reassemble_all(input: &[u8]) -> Session {
        let mut reader = LinkReader::new(input, 0);
        let mut all = Session::default();
        let mut s = Session::default();
        while reader.next_session(&mut s) {
            let base = all.text.len();
            let frames = all.frames.len();
            all.text.extend_from_slice(&s.text);
            all.frames.extend(s.frames.iter().map(|f| FrameSpan {
                text_start: f.text_start + base,
                text_end: f.text_end + base,
                ..*f
            }));
            all.problems.extend(s.problems.iter().map(|p| FrameProblem { frame: p.frame + frames, ..p.clone() }));
            all.warnings.extend(s.warnings.iter().cloned());
            all.end = s.end;
        }
        all
    }

    fn texts(r: &Session) -> String {
        String::from_utf8_lossy(&r.text).into_owned()
    }

    #[test]
    fn frames_are_joined_and_mapped_back() {
        let mut bytes = Vec::new();
        bytes.push(ENQ);
        bytes.extend(frame::encode_frame(1, b"H|\\^&\rP|1", FrameEnd::Intermediate));
        bytes.extend(frame::encode_frame(2, b"\rL|1|N", FrameEnd::Last));
        bytes.push(EOT);
        let r = reassemble_all(&bytes);
        assert_eq!(texts(&r), "H|\\^&\rP|1\rL|1|N\r");
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.frames.len(), 2);
        assert_eq!(r.frames.first().map(|f| (f.file_start, f.text_start)), Some((1, 0)));
        assert_eq!(r.end, SessionEnd::Eot(bytes.len() - 1));
    }

    #[test]
    fn bad_checksum_is_a_problem_of_its_frame() {
        let r = reassemble_all(b"\x021R|INVALID\x0355\r\n");
        assert_eq!(r.problems.len(), 1);
        assert_eq!(
            r.problems.first().map(|p| p.text.as_str()),
            Some("bad checksum in frame 1 (FN 1): sent 55, computed 09")
        );
    }

    #[test]
    fn nak_then_good_retransmission_replaces_the_bad_frame() {
        let good = frame::encode_frame(1, b"H|\\^&\r", FrameEnd::Last);
        let mut bad = good.clone();
        if let Some(b) = bad.get_mut(3) {
            *b = b'X';
        }
        let r = reassemble_all(&[bad, vec![frame::NAK], good].concat());
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(texts(&r), "H|\\^&\r");
        assert_eq!(r.frames.len(), 1);
        assert_eq!(r.frames.first().map(|f| f.file_start), Some(good_offset(&r)));
        assert!(r.warnings.iter().any(|w| w.text.contains("replaces")));
    }

    fn good_offset(r: &Session) -> usize {
        r.frames.first().map_or(0, |f| f.file_start)
    }

    #[test]
    fn duplicate_frame_after_lost_ack_is_skipped() {
        let f1 = frame::encode_frame(1, b"H|\\^&\r", FrameEnd::Intermediate);
        let f2 = frame::encode_frame(2, b"L|1\r", FrameEnd::Last);
        let r = reassemble_all(&[f1.clone(), f1, f2].concat());
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(texts(&r), "H|\\^&\rL|1\r");
        assert!(r.warnings.iter().any(|w| w.text.contains("lost ACK")));
    }

    #[test]
    fn frame_number_gap_is_a_problem_and_wrap_7_to_1_a_warning() {
        let f1 = frame::encode_frame(1, b"A\r", FrameEnd::Last);
        let f3 = frame::encode_frame(3, b"B\r", FrameEnd::Last);
        let r = reassemble_all(&[f1, f3].concat());
        assert!(r.problems.first().is_some_and(|p| p.text.contains("out of sequence, expected 2")));
        let f7 = frame::encode_frame(7, b"A\r", FrameEnd::Last);
        let f1 = frame::encode_frame(1, b"B\r", FrameEnd::Last);
        let r = reassemble_all(&[f7, f1].concat());
        assert!(r.problems.is_empty());
        assert!(r.warnings.iter().any(|w| w.text.contains("1 after 7")));
    }

    #[test]
    fn missing_cr_before_etx_still_ends_the_record_and_eot_after_etb_is_a_problem() {
        let r = reassemble_all(&frame::encode_frame(1, b"L|1|N", FrameEnd::Last));
        assert_eq!(texts(&r), "L|1|N\r");
        let mut bytes = frame::encode_frame(1, b"H|\\^&\rP|", FrameEnd::Intermediate);
        bytes.push(EOT);
        let r = reassemble_all(&bytes);
        assert_eq!(texts(&r), "H|\\^&\rP|\r");
        assert!(r.problems.first().is_some_and(|p| p.text
            == "session ended (EOT) after frame 1 (FN 1) ended with ETB: expected a last frame ending with ETX"));
    }

    #[test]
    fn missing_end_names_what_was_expected() {
        let r = reassemble_all(b"\x021H|\\^&\rL|1|N\r\r\n");
        assert!(r.problems.first().is_some_and(|p| p.text
            == "frame 1 has no end: expected ETB or ETX, a checksum and CR LF after the text, found the end of the file"));
    }
}
