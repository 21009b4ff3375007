//! The receiving side of one MLLP connection, without I/O (hl7.md §5.2).
//!
//! The TCP listener reads bytes and hands them to [`MllpSession::feed`],
//! which returns what arrived: complete payloads, frames refused for their
//! size, and warnings. Once a payload is committed (or refused) the listener
//! builds its ACK ([`ack`](super::ack::ack)) and passes it to
//! [`MllpSession::acknowledge`], which returns the framed bytes to write —
//! possibly none yet, because acknowledgements go out in the order the
//! payloads came in. MLLP Release 1 allows one outstanding message; a sender
//! that pipelines anyway has its messages queued and answered in order.
//!
//! Framing (`<VT> payload <FS><CR>`), whatever the chunking of the reads:
//!
//! - bytes before a start block are discarded; white space silently (line
//!   ends between frames), anything else with a warning (a BOM before the
//!   VT included);
//! - a frame ends at its FS: it is delivered at once, without waiting for
//!   the CR (a sender that omits the CR and waits for the ACK would
//!   otherwise stall); a missing CR gets a warning when the next byte (or
//!   the end of the connection) shows it;
//! - a start block inside a frame means the sender abandoned that frame: it
//!   is dropped with a warning and not acknowledged (the sender still has
//!   it, and an ACK for it would be taken as the answer to the next one);
//! - a payload longer than the configured bound is not buffered: its first
//!   bytes are kept (enough for the MSH, so the AR can echo MSH-10), the
//!   rest is counted and dropped up to its FS, and it is reported as
//!   [`SessionEvent::Refused`] to be answered with an AR in its turn; an
//!   oversize frame abandoned by a start block is only warned about;
//! - the payload is the bytes between the blocks exactly as sent (a BOM
//!   after the VT included: [`parse_file`](super::parse_file) and
//!   [`ack`](super::ack::ack) skip it).
//!
//! The scan never goes back over bytes already seen, so feeding one byte at
//! a time costs the same as feeding everything at once.

use std::collections::VecDeque;

use memchr::{memchr, memchr2};

use super::ack::{AckError, ErrorCode};
use super::mllp::{CARRIAGE_RETURN, END_BLOCK, START_BLOCK, encode_into};

/// Default bound on one payload: 16 MiB (C-peptide results are a few KiB;
/// this leaves room for embedded reports).
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

/// Bytes of an oversize payload kept for its AR (the MSH is at the start).
const HEAD_KEPT: usize = 8 * 1024;

/// What one [`MllpSession::feed`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// A complete frame. `payload` is the bytes between the blocks; `raw` is
    /// the frame as received from the VT through the FS (the CR after it is
    /// not included, so `raw` does not depend on how reads were cut).
    Payload { id: u64, payload: Vec<u8>, raw: Vec<u8> },
    /// A complete frame whose payload exceeded the bound: answer it with an
    /// AR built from `head` (the first bytes of the payload) and `error`.
    Refused { id: u64, head: Vec<u8>, size: u64, error: AckError },
    /// Something was discarded or tolerated; `offset` counts bytes from the
    /// start of the connection.
    Warning { offset: u64, text: String },
}

/// A misuse of [`MllpSession::acknowledge`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("no payload {0} has been received on this connection")]
    UnknownId(u64),
    #[error("payload {0} is already acknowledged")]
    AlreadyAcknowledged(u64),
    #[error("the acknowledgement for payload {0} holds an MLLP block byte (0x0B or 0x1C)")]
    NotFramable(u64),
}

/// Bytes skipped between frames, reported once the next frame starts.
#[derive(Debug, Clone, Copy)]
struct Junk {
    at: u64,
    len: u64,
    visible: bool,
}

#[derive(Debug)]
enum State {
    /// Waiting for a start block.
    Between(Option<Junk>),
    /// Inside a frame that started at `start`; `buf` holds the payload.
    Frame { start: u64, buf: Vec<u8> },
    /// Inside a frame too large to keep.
    Oversize { start: u64, head: Vec<u8>, size: u64 },
}

/// One MLLP connection's receiving state.
#[derive(Debug)]
pub struct MllpSession {
    max_frame: usize,
    state: State,
    /// The last byte was an end block: a CR should follow.
    after_end: bool,
    /// Bytes fed so far.
    offset: u64,
    next_id: u64,
    /// Payloads awaiting their turn, with their ACK once given.
    queue: VecDeque<(u64, Option<Vec<u8>>)>,
}

impl Default for MllpSession {
    fn default() -> Self {
        MllpSession::new(DEFAULT_MAX_FRAME)
    }
}

impl MllpSession {
    /// A session refusing payloads longer than `max_frame` bytes.
    pub fn new(max_frame: usize) -> MllpSession {
        MllpSession {
            max_frame,
            state: State::Between(None),
            after_end: false,
            offset: 0,
            next_id: 1,
            queue: VecDeque::new(),
        }
    }

    /// Take the next bytes read from the connection.
    pub fn feed(&mut self, mut input: &[u8]) -> Vec<SessionEvent> {
        let mut events = Vec::new();
        while let Some(&first) = input.first() {
            if self.after_end {
                self.after_end = false;
                if first == CARRIAGE_RETURN {
                    input = self.consume(input, 1);
                    continue;
                }
                events.push(self.missing_cr());
            }
            let state = std::mem::replace(&mut self.state, State::Between(None));
            input = match state {
                State::Between(junk) => self.between(input, junk, &mut events),
                State::Frame { start, buf } => self.in_frame(input, start, buf, &mut events),
                State::Oversize { start, head, size } => self.oversize(input, start, head, size, &mut events),
            };
        }
        events
    }

    /// The connection has closed: report what was left unfinished. The
    /// session is then back at its start state (ids keep counting).
    pub fn finish(&mut self) -> Vec<SessionEvent> {
        let mut events = Vec::new();
        if std::mem::take(&mut self.after_end) {
            events.push(self.missing_cr());
        }
        match std::mem::replace(&mut self.state, State::Between(None)) {
            State::Between(junk) => self.report_junk(junk, &mut events),
            State::Frame { start, buf } => events.push(SessionEvent::Warning {
                offset: start,
                text: format!(
                    "MLLP frame not closed when the connection ended: {} bytes dropped, not acknowledged",
                    buf.len()
                ),
            }),
            State::Oversize { start, size, .. } => events.push(SessionEvent::Warning {
                offset: start,
                text: format!(
                    "MLLP frame of at least {size} bytes (over the {}-byte limit) not closed when the \
                     connection ended: dropped, not acknowledged",
                    self.max_frame
                ),
            }),
        }
        let unsent = self.queue.len();
        if unsent > 0 {
            events.push(SessionEvent::Warning {
                offset: self.offset,
                text: format!("connection ended with {unsent} message(s) not acknowledged"),
            });
        }
        self.queue.clear();
        events
    }

    /// Give the ACK (unframed ER7 bytes) for payload `id`, and get the
    /// framed bytes to write now: this ACK and any held behind it, or
    /// nothing while an earlier payload is still unacknowledged.
    pub fn acknowledge(&mut self, id: u64, ack: Vec<u8>) -> Result<Vec<u8>, SessionError> {
        if memchr2(START_BLOCK, END_BLOCK, &ack).is_some() {
            return Err(SessionError::NotFramable(id));
        }
        let Some(slot) = self.queue.iter_mut().find(|(queued, _)| *queued == id) else {
            return Err(if id == 0 || id >= self.next_id {
                SessionError::UnknownId(id)
            } else {
                SessionError::AlreadyAcknowledged(id)
            });
        };
        if slot.1.is_some() {
            return Err(SessionError::AlreadyAcknowledged(id));
        }
        slot.1 = Some(ack);
        let mut out = Vec::new();
        while self.queue.front().is_some_and(|(_, ack)| ack.is_some()) {
            if let Some((_, Some(ack))) = self.queue.pop_front() {
                encode_into(&ack, &mut out);
            }
        }
        Ok(out)
    }

    /// A frame has started and not ended.
    pub fn mid_frame(&self) -> bool {
        !matches!(self.state, State::Between(_))
    }

    /// The connection is being cut (the sender went over a limit): the frame
    /// in progress, if any, is dropped and given an id, with its first bytes
    /// (for the AR's MSA-2), to be answered with [`acknowledge`](Self::acknowledge).
    pub fn cut(&mut self) -> Option<(u64, Vec<u8>)> {
        let head = match std::mem::replace(&mut self.state, State::Between(None)) {
            State::Between(junk) => {
                self.state = State::Between(junk);
                return None;
            }
            State::Frame { mut buf, .. } => {
                buf.truncate(HEAD_KEPT);
                buf
            }
            State::Oversize { head, .. } => head,
        };
        Some((self.issue(), head))
    }

    /// Payloads received and not yet acknowledged on the wire.
    pub fn outstanding(&self) -> usize {
        self.queue.len()
    }

    fn consume<'a>(&mut self, input: &'a [u8], n: usize) -> &'a [u8] {
        let n = n.min(input.len());
        self.offset += n as u64;
        input.get(n..).unwrap_or_default()
    }

    fn issue(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.queue.push_back((id, None));
        id
    }

    fn missing_cr(&self) -> SessionEvent {
        SessionEvent::Warning {
            offset: self.offset,
            text: "MLLP end block 0x1C not followed by CR (tolerated)".to_owned(),
        }
    }

    fn report_junk(&self, junk: Option<Junk>, events: &mut Vec<SessionEvent>) {
        if let Some(junk) = junk.filter(|j| j.visible) {
            events.push(SessionEvent::Warning {
                offset: junk.at,
                text: format!("{} bytes outside any MLLP frame discarded", junk.len),
            });
        }
    }

    fn between<'a>(&mut self, input: &'a [u8], junk: Option<Junk>, events: &mut Vec<SessionEvent>) -> &'a [u8] {
        let found = memchr(START_BLOCK, input);
        let skipped = input.get(..found.unwrap_or(input.len())).unwrap_or_default();
        let junk = if skipped.is_empty() {
            junk
        } else {
            let visible = skipped.iter().any(|b| !b.is_ascii_whitespace());
            Some(match junk {
                Some(j) => Junk { len: j.len + skipped.len() as u64, visible: j.visible || visible, ..j },
                None => Junk { at: self.offset, len: skipped.len() as u64, visible },
            })
        };
        match found {
            Some(i) => {
                self.report_junk(junk, events);
                let start = self.offset + i as u64;
                self.state = State::Frame { start, buf: Vec::new() };
                self.consume(input, i + 1)
            }
            None => {
                self.state = State::Between(junk);
                self.consume(input, input.len())
            }
        }
    }

    fn in_frame<'a>(
        &mut self,
        input: &'a [u8],
        start: u64,
        mut buf: Vec<u8>,
        events: &mut Vec<SessionEvent>,
    ) -> &'a [u8] {
        let found = memchr2(START_BLOCK, END_BLOCK, input);
        let chunk = input.get(..found.unwrap_or(input.len())).unwrap_or_default();
        if buf.len().saturating_add(chunk.len()) > self.max_frame {
            let size = (buf.len() + chunk.len()) as u64;
            buf.extend_from_slice(chunk.get(..HEAD_KEPT.saturating_sub(buf.len())).unwrap_or(chunk));
            buf.truncate(HEAD_KEPT);
            buf.shrink_to_fit();
            self.state = State::Oversize { start, head: buf, size };
            let rest = self.consume(input, chunk.len());
            // The block byte (if any) is handled in the oversize state.
            return rest;
        }
        buf.extend_from_slice(chunk);
        let rest = self.consume(input, chunk.len());
        match rest.first() {
            Some(&END_BLOCK) => {
                let mut raw = Vec::with_capacity(buf.len() + 2);
                raw.push(START_BLOCK);
                raw.extend_from_slice(&buf);
                raw.push(END_BLOCK);
                let id = self.issue();
                events.push(SessionEvent::Payload { id, payload: buf, raw });
                self.after_end = true;
                self.state = State::Between(None);
                self.consume(rest, 1)
            }
            Some(_) => {
                events.push(SessionEvent::Warning {
                    offset: start,
                    text: format!(
                        "MLLP frame not closed (no 0x1C) before the next start block: {} bytes dropped, \
                         not acknowledged",
                        buf.len()
                    ),
                });
                self.state = State::Frame { start: self.offset, buf: Vec::new() };
                self.consume(rest, 1)
            }
            None => {
                self.state = State::Frame { start, buf };
                rest
            }
        }
    }

    fn oversize<'a>(
        &mut self,
        input: &'a [u8],
        start: u64,
        mut head: Vec<u8>,
        size: u64,
        events: &mut Vec<SessionEvent>,
    ) -> &'a [u8] {
        let found = memchr2(START_BLOCK, END_BLOCK, input);
        let skipped = found.unwrap_or(input.len());
        let room = HEAD_KEPT.saturating_sub(head.len()).min(skipped);
        head.extend_from_slice(input.get(..room).unwrap_or_default());
        let size = size + skipped as u64;
        let rest = self.consume(input, skipped);
        match rest.first() {
            Some(&END_BLOCK) => {
                let id = self.issue();
                let error = AckError::new(
                    ErrorCode::ApplicationInternal,
                    format!(
                        "message of {size} bytes exceeds the {}-byte limit for one MLLP frame: not stored",
                        self.max_frame
                    ),
                );
                events.push(SessionEvent::Warning {
                    offset: start,
                    text: format!("MLLP frame of {size} bytes refused (limit {} bytes)", self.max_frame),
                });
                events.push(SessionEvent::Refused { id, head, size, error });
                self.after_end = true;
                self.state = State::Between(None);
                self.consume(rest, 1)
            }
            Some(_) => {
                events.push(SessionEvent::Warning {
                    offset: start,
                    text: format!(
                        "MLLP frame of at least {size} bytes (over the {}-byte limit) not closed before the \
                         next start block: dropped, not acknowledged",
                        self.max_frame
                    ),
                });
                self.state = State::Frame { start: self.offset, buf: Vec::new() };
                self.consume(rest, 1)
            }
            None => {
                self.state = State::Oversize { start, head, size };
                rest
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads(events: &[SessionEvent]) -> Vec<(u64, Vec<u8>)> {
        events
            .iter()
            .filter_map(|e| match e {
                SessionEvent::Payload { id, payload, .. } => Some((*id, payload.clone())),
                _ => None,
            })
            .collect()
    }

    fn warnings(events: &[SessionEvent]) -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match e {
                SessionEvent::Warning { text, .. } => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn frame_is_delivered_at_its_end_block() {
        let mut s = MllpSession::default();
        assert!(s.feed(b"\x0bMSH|a").is_empty());
        let events = s.feed(b"\r\x1c");
        assert_eq!(payloads(&events), [(1, b"MSH|a\r".to_vec())]);
        match &events[0] {
            SessionEvent::Payload { raw, .. } => assert_eq!(raw, b"\x0bMSH|a\r\x1c"),
            other => panic!("{other:?}"),
        }
        // The CR arrives later: no warning.
        assert!(s.feed(b"\r").is_empty());
        assert!(s.finish().iter().all(|e| !matches!(e, SessionEvent::Warning { text, .. } if text.contains("CR"))));
    }

    #[test]
    fn whitespace_between_frames_is_silent_and_junk_is_not() {
        let mut s = MllpSession::default();
        let events = s.feed(b"\x0bA\x1c\r\r\n\x0bB\x1c\r");
        assert_eq!(payloads(&events).len(), 2);
        assert!(warnings(&events).is_empty());
        let events = s.feed(b"hello\x0bC\x1c\r");
        assert_eq!(warnings(&events), ["5 bytes outside any MLLP frame discarded"]);
        assert!(matches!(events[0], SessionEvent::Warning { offset: 10, .. }));
    }

    #[test]
    fn abandoned_frame_is_dropped_and_the_next_read() {
        let mut s = MllpSession::default();
        let events = s.feed(b"\x0bhalf\x0bwhole\x1c\r");
        assert_eq!(payloads(&events), [(1, b"whole".to_vec())]);
        assert_eq!(warnings(&events).len(), 1);
        assert_eq!(s.outstanding(), 1);
    }

    #[test]
    fn oversize_head_is_kept_and_bounded() {
        let mut s = MllpSession::new(10);
        let mut events = s.feed(b"\x0bMSH|0123456789");
        assert!(events.is_empty());
        for _ in 0..1000 {
            events.extend(s.feed(&[b'x'; 100]));
        }
        events.extend(s.feed(b"\x1c\r\x0bok\x1c\r"));
        let refused: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                SessionEvent::Refused { id, head, size, .. } => Some((*id, head.clone(), *size)),
                _ => None,
            })
            .collect();
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].0, 1);
        assert!(refused[0].1.starts_with(b"MSH|0123456789xx"));
        assert!(refused[0].1.len() <= HEAD_KEPT);
        assert_eq!(refused[0].2, 14 + 100_000);
        assert_eq!(payloads(&events), [(2, b"ok".to_vec())]);
    }

    #[test]
    fn head_of_a_large_frame_is_cut_to_the_kept_size() {
        let mut s = MllpSession::new(4 * HEAD_KEPT);
        let mut events = s.feed(b"\x0b");
        for _ in 0..1000 {
            events.extend(s.feed(&[b'y'; 100]));
        }
        events.extend(s.feed(b"\x1c\r"));
        match events.as_slice() {
            [SessionEvent::Warning { .. }, SessionEvent::Refused { head, size, .. }] => {
                assert_eq!(head.len(), HEAD_KEPT);
                assert_eq!(*size, 100_000);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn acknowledge_errors() {
        let mut s = MllpSession::default();
        s.feed(b"\x0bA\x1c\r");
        assert_eq!(s.acknowledge(2, b"x".to_vec()), Err(SessionError::UnknownId(2)));
        assert_eq!(s.acknowledge(1, b"x\x1c".to_vec()), Err(SessionError::NotFramable(1)));
        assert_eq!(s.acknowledge(1, b"MSA".to_vec()), Ok(b"\x0bMSA\x1c\r".to_vec()));
        assert_eq!(s.acknowledge(1, b"MSA".to_vec()), Err(SessionError::AlreadyAcknowledged(1)));
    }

    #[test]
    fn finish_reports_leftovers() {
        let mut s = MllpSession::default();
        s.feed(b"\x0bA\x1c\x0bpartial");
        let w = warnings(&s.finish());
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("not closed when the connection ended: 7 bytes"));
        assert!(w[1].contains("1 message(s) not acknowledged"));
        let mut s = MllpSession::default();
        s.feed(b"\x0bA\x1c");
        assert_eq!(warnings(&s.finish())[0], "MLLP end block 0x1C not followed by CR (tolerated)");
    }

    #[test]
    fn cut_gives_the_frame_in_progress_an_id_to_answer() {
        let mut s = MllpSession::default();
        assert!(!s.mid_frame());
        assert_eq!(s.cut(), None, "nothing in progress");
        s.feed(b"\x0bMSH|A\x1c\r\x0bMSH|B");
        assert!(s.mid_frame());
        assert_eq!(s.cut(), Some((2, b"MSH|B".to_vec())));
        assert!(!s.mid_frame());
        // In order: payload 1 first, then the cut frame's answer.
        assert_eq!(s.acknowledge(2, b"AR".to_vec()), Ok(Vec::new()));
        assert_eq!(s.acknowledge(1, b"AA".to_vec()), Ok(b"\x0bAA\x1c\r\x0bAR\x1c\r".to_vec()));
    }
}
