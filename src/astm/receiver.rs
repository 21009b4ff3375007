//! The receiving side of an E1381 / CLSI LIS01-A2 link, as a sans-IO state
//! machine: bytes and the time go in, bytes to write and complete messages
//! come out. Serial and TCP drivers are loops around it: read, [`feed`], write
//! every [`Event::Send`] at once, commit every [`Event::Message`] and say so
//! with [`committed`] (or [`rejected`]), call [`tick`] at [`next_deadline`].
//!
//! [`feed`]: Receiver::feed
//! [`tick`]: Receiver::tick
//! [`committed`]: Receiver::committed
//! [`rejected`]: Receiver::rejected
//! [`next_deadline`]: Receiver::next_deadline
//!
//! Behaviour (astm.md §1, SPEC §7), and the choices made where the standard
//! leaves room:
//!
//! * **Chunking never matters.** Bytes may come one at a time or many
//!   sessions at once; the events are the same. Exactly one reply goes out per
//!   frame that reached its trailer (none for a frame cut short by STX, ENQ or
//!   EOT: its sender has moved on), so replies never get out of step.
//! * **Establishment.** ENQ while idle is answered ACK, or NAK while
//!   [`set_busy`](Receiver::set_busy) is on (backpressure: the sender waits
//!   10 s and bids again). Anything else while idle is ignored (a warning
//!   at the start of each run of ignored bytes, never a NAK storm). ENQ
//!   inside a session is ignored: answering it could put our replies out of
//!   step with the sender's frames; a sender that really restarted times out,
//!   sends EOT and bids again.
//! * **Frames.** Checksum (either hex case, lowercase with a warning), frame
//!   number, restricted characters (LF…) and trailer are checked; a bad frame
//!   is NAKed and its retransmission (same FN) used once. The first frame of a
//!   session must be FN 1 (FN 0 or other first frames are NAKed); then
//!   last+1 mod 8, across messages too; FN 1 after an ETX frame (a reset) is
//!   accepted; `7 → 1` is accepted with a warning when
//!   [`Config::lenient_wrap`] is on (Immulite). A byte-identical copy of the
//!   last accepted frame (our ACK was lost) is ACKed again and not used twice.
//!   The reply goes out once `C1 C2 CR` are in: the LF that should follow is
//!   swallowed when it comes, and a sender that never sends it still works.
//! * **Messages.** Frame texts are joined. At an ETX frame (a CR is added when
//!   the text does not end with one, with a warning), everything through the
//!   last complete L record is one [`Event::Message`]: it may hold several
//!   H…L messages, and with one-record-per-ETX-frame senders (Architect,
//!   Immulite) it spans many ETX frames. Text after that L record (a next
//!   message begun in the same frame) is kept for the next one. An ETX frame
//!   that completes no L record is ACKed at once, like an ETB frame.
//! * **The final ACK waits for the commit.** The frame that completes a
//!   message is not answered until [`committed`](Receiver::committed) (ACK)
//!   or [`rejected`](Receiver::rejected) (NAK: the sender retransmits that
//!   frame and the message comes again under a new id). While waiting, a
//!   retransmission of that same frame is not answered (the ACK after the
//!   commit answers it); EOT ends the session and the ACK is then never sent
//!   (the sender timed out and will resend: the store must be idempotent); any
//!   other frame means the sender did not wait, so the session is abandoned
//!   without that ACK. A [`Event::Message`] is final: the driver must store
//!   or reject it whatever happens on the line afterwards.
//! * **Aborts.** EOT mid-message, 30 s without a byte in a session (the timer
//!   restarts on every byte, so a multi-kB frame on a slow line is not cut),
//!   or the sender giving up after NAKs: an [`Event::Aborted`] with the raw
//!   bytes received since the last message, for the audit, no text; back to
//!   idle, the next ENQ starts afresh expecting FN 1. There is no timer while
//!   idle (analyzers keep TCP connections open for minutes between sessions)
//!   nor while a commit is pending.
//! * **Bounds.** A frame text longer than [`Config::max_frame_text`] is not
//!   buffered and is NAKed when its trailer comes; a message longer than
//!   [`Config::max_message_bytes`] gets its frames NAKed. The raw bytes kept
//!   per message are bounded too.
//! * **Receiver interrupt** (EOT instead of ACK) is never sent.
//! * [`Style::Simplified`] (Maglumi, "Enable Checksum" off): `ENQ STX text
//!   ETX EOT` without frame number, checksum or CR LF; ACK after ENQ, after
//!   ETX (after the commit if the text completes a message) and after EOT
//!   (after that commit too, if EOT came first). [`Style::Unframed`]: plain
//!   records (`H|…<CR>…L|1|N<CR>`, CR or LF ends a record), nothing is ever
//!   sent, each message ends with its L record; a message left incomplete for
//!   the receive timeout is aborted.

use std::time::{Duration, Instant};

use super::frame::{self, ACK, CR, ENQ, EOT, ETB, ETX, FrameEnd, LF, NAK, STX};

/// Frame text bytes accepted by default: the LIS01-A frame size of 64 000
/// bytes less its 7 overhead bytes (astm.md §1.3).
pub const DEFAULT_MAX_FRAME_TEXT: usize = 64_000 - 7;
/// Message text bytes accepted by default (16 MiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// How long a session waits for the sender's next byte.
pub const DEFAULT_RECEIVE_TIMEOUT: Duration = Duration::from_secs(30);
/// Retransmissions a sender makes before giving up (6 tries).
const SENDER_TRIES: u32 = 6;

/// How the instrument frames its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Style {
    /// E1381 / LIS01-A2: ENQ, numbered frames with checksums, EOT.
    #[default]
    Framed,
    /// Maglumi "simplified envelope": `ENQ STX text ETX EOT`, no frame
    /// number, no checksum, no CR LF trailer.
    Simplified,
    /// Plain records with no link protocol at all.
    Unframed,
}

/// Receiver settings, per instrument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub style: Style,
    /// Longest frame text accepted (the whole text for [`Style::Simplified`]).
    pub max_frame_text: usize,
    /// Longest message text accepted.
    pub max_message_bytes: usize,
    /// Silence after which a session (or an unframed message) is aborted.
    pub receive_timeout: Duration,
    /// Accept a `7 → 1` frame number wrap (Immulite) with a warning.
    pub lenient_wrap: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            style: Style::Framed,
            max_frame_text: DEFAULT_MAX_FRAME_TEXT,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            receive_timeout: DEFAULT_RECEIVE_TIMEOUT,
            lenient_wrap: true,
        }
    }
}

/// Names one emitted message for [`Receiver::committed`] / [`Receiver::rejected`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub u64);

/// What the receiver asks of its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Bytes to write to the line now (ACK or NAK).
    Send(Vec<u8>),
    /// A complete message text (frame texts joined, through an L record) and
    /// the raw bytes received since the previous message (ENQ, frames,
    /// rejected attempts, through the final frame's CR: its LF is not waited
    /// for and begins the next raw), to commit, then to report with
    /// [`Receiver::committed`] or [`Receiver::rejected`] quickly: SPEC §7
    /// wants every ACK out within 2 s, and a sender gives up after 15 s.
    Message { id: MessageId, text: Vec<u8>, raw: Vec<u8> },
    /// A session or message that ended incomplete: no results, but the raw
    /// bytes are kept for the audit.
    Aborted { raw: Vec<u8>, reason: String },
    /// Something tolerated or ignored, worth a log line.
    Warning(String),
}

/// The E1381 receiver. See the module documentation.
#[derive(Debug)]
pub struct Receiver {
    config: Config,
    lexer: Lexer,
    session: Option<Session>,
    unframed: Option<Unit>,
    busy: bool,
    next_id: u64,
    /// Emitted messages not yet committed or rejected.
    outstanding: Vec<MessageId>,
    /// The previous token was ignored (one warning per run).
    ignoring: bool,
}

/// One ENQ … EOT session.
#[derive(Debug)]
struct Session {
    /// `None` while a commit is pending.
    deadline: Option<Instant>,
    /// Joined frame texts not yet emitted (or emitted but not yet committed).
    text: Vec<u8>,
    /// Start of the first record of `text` not yet looked at.
    scan: usize,
    /// End (after its CR) of the last complete L record in `text`.
    last_l_end: Option<usize>,
    /// Bytes received since the last message was emitted.
    raw: Vec<u8>,
    raw_full: bool,
    last: Option<Accepted>,
    /// Frames refused (or cut short) since the last message.
    refused: usize,
    naks_in_row: u32,
    withheld: Option<Withheld>,
    /// The last frame was cut short by an STX: the frame that STX began is
    /// line noise until proven otherwise (see `on_token`).
    after_cut: bool,
    /// Simplified style: EOT came while a commit was pending.
    eot_deferred: bool,
}

/// The frame accepted last: for frame numbers and duplicates.
#[derive(Debug, Clone)]
struct Accepted {
    number: u8,
    end: FrameEnd,
    /// The frame as received, STX through CR.
    bytes: Vec<u8>,
}

/// Where the text stood before a frame was appended, to undo it.
#[derive(Debug, Clone, Copy)]
struct Mark {
    text_len: usize,
    scan: usize,
    last_l_end: Option<usize>,
}

/// A message emitted whose final frame's ACK waits for the commit.
#[derive(Debug)]
struct Withheld {
    id: MessageId,
    /// `text[..upto]` is the message.
    upto: usize,
    before: Mark,
    last_before: Option<Accepted>,
    raw: Vec<u8>,
}

/// An unframed message being received.
#[derive(Debug, Default)]
struct Unit {
    text: Vec<u8>,
    deadline: Option<Instant>,
    /// The first bytes (at most 2) of the record being received.
    head: Vec<u8>,
    /// Too long: dropping bytes until the next L record ends.
    discarding: bool,
}

impl Default for Receiver {
    fn default() -> Self {
        Receiver::new(Config::default())
    }
}

impl Receiver {
    pub fn new(config: Config) -> Self {
        let lexer = Lexer::new(config.style == Style::Simplified, config.max_frame_text);
        Receiver {
            config,
            lexer,
            session: None,
            unframed: None,
            busy: false,
            next_id: 1,
            outstanding: Vec::new(),
            ignoring: false,
        }
    }

    /// Backpressure: while busy, an ENQ from idle is answered NAK (the
    /// sender waits at least 10 s and bids again). Sessions under way go on.
    pub fn set_busy(&mut self, busy: bool) {
        self.busy = busy;
    }

    /// No session (or unframed message) under way.
    pub fn is_idle(&self) -> bool {
        self.session.is_none() && self.unframed.is_none()
    }

    /// When [`tick`](Self::tick) must be called, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        match (&self.session, &self.unframed) {
            (Some(s), _) => s.deadline,
            (None, Some(u)) => u.deadline,
            (None, None) => None,
        }
    }

    /// Timers: a session silent for the receive timeout is aborted.
    pub fn tick(&mut self, now: Instant) -> Vec<Event> {
        let mut ev = Vec::new();
        self.expire(now, &mut ev);
        ev
    }

    /// Bytes from the line, in any chunking.
    pub fn feed(&mut self, bytes: &[u8], now: Instant) -> Vec<Event> {
        let mut ev = Vec::new();
        self.expire(now, &mut ev);
        if self.config.style == Style::Unframed {
            self.feed_unframed(bytes, now, &mut ev);
            return ev;
        }
        let mut rest = bytes;
        while !rest.is_empty() {
            let (used, token) = self.lexer.next(rest);
            let (taken, after) = rest.split_at(used.min(rest.len()));
            self.keep_raw(taken);
            rest = after;
            if let Some(token) = token {
                self.on_token(token, now, &mut ev);
            }
        }
        if let Some(s) = &mut self.session
            && s.withheld.is_none()
            && !bytes.is_empty()
        {
            s.deadline = Some(now + self.config.receive_timeout);
        }
        ev
    }

    /// The driver has durably stored message `id`: the withheld ACK goes out.
    pub fn committed(&mut self, id: MessageId, now: Instant) -> Vec<Event> {
        let mut ev = Vec::new();
        if !self.resolve(id, &mut ev) {
            return ev;
        }
        let timeout = self.config.receive_timeout;
        let Some(s) = self.session.as_mut() else { return ev };
        let Some(w) = s.withheld.take_if(|w| w.id == id) else { return ev };
        s.text.drain(..w.upto.min(s.text.len()));
        s.scan = s.scan.saturating_sub(w.upto);
        s.last_l_end = None;
        if !s.text.is_empty() {
            // The start of the next message came in the frame just committed.
            let mut raw = s.last.as_ref().map(|l| l.bytes.clone()).unwrap_or_default();
            raw.append(&mut s.raw);
            s.raw = raw;
        }
        s.refused = 0;
        s.deadline = Some(now + timeout);
        ev.push(Event::Send(vec![ACK]));
        if s.eot_deferred {
            ev.push(Event::Send(vec![ACK]));
            self.end_session("EOT", &mut ev);
        }
        ev
    }

    /// Message `id` could not be stored: its final frame is NAKed, so the
    /// sender retransmits it and the message is emitted again.
    pub fn rejected(&mut self, id: MessageId, now: Instant) -> Vec<Event> {
        let mut ev = Vec::new();
        if self.config.style == Style::Unframed {
            ev.push(Event::Warning(format!(
                "message {}: not stored, and an unframed sender cannot be asked to resend",
                id.0
            )));
        }
        if !self.resolve(id, &mut ev) {
            return ev;
        }
        let timeout = self.config.receive_timeout;
        let Some(s) = self.session.as_mut() else { return ev };
        let Some(w) = s.withheld.take_if(|w| w.id == id) else { return ev };
        s.text.truncate(w.before.text_len);
        s.scan = w.before.scan;
        s.last_l_end = w.before.last_l_end;
        s.last = w.last_before;
        let mut raw = w.raw;
        raw.append(&mut s.raw);
        s.raw = raw;
        s.refused += 1;
        s.naks_in_row += 1;
        s.deadline = Some(now + timeout);
        ev.push(Event::Send(vec![NAK]));
        if s.eot_deferred {
            self.end_session("EOT after a message that could not be stored", &mut ev);
        }
        ev
    }

    /// Takes `id` off the outstanding list; `true` when it may concern the
    /// current session.
    fn resolve(&mut self, id: MessageId, ev: &mut Vec<Event>) -> bool {
        let Some(pos) = self.outstanding.iter().position(|&o| o == id) else {
            ev.push(Event::Warning(format!("message {} is not awaiting a commit", id.0)));
            return false;
        };
        self.outstanding.remove(pos);
        let current = self.session.as_ref().and_then(|s| s.withheld.as_ref()).is_some_and(|w| w.id == id);
        if !current && self.config.style != Style::Unframed {
            ev.push(Event::Warning(format!(
                "message {}: its session ended before the commit, so no ACK was sent; the sender should resend it",
                id.0
            )));
        }
        current
    }

    fn expire(&mut self, now: Instant, ev: &mut Vec<Event>) {
        let secs = self.config.receive_timeout.as_secs();
        if self.session.as_ref().and_then(|s| s.deadline).is_some_and(|d| now >= d) {
            // A frame half received is dropped with its session.
            self.lexer.reset();
            self.end_session(&format!("no byte from the sender for {secs} s"), ev);
        }
        if self.unframed.as_ref().and_then(|u| u.deadline).is_some_and(|d| now >= d)
            && let Some(u) = self.unframed.take()
            && !u.discarding
        {
            ev.push(Event::Aborted { raw: u.text, reason: format!("message without its L record for {secs} s") });
        }
    }

    fn raw_cap(&self) -> usize {
        self.config.max_message_bytes.saturating_mul(2).saturating_add(self.config.max_frame_text.saturating_mul(8))
    }

    fn keep_raw(&mut self, bytes: &[u8]) {
        let cap = self.raw_cap();
        if let Some(s) = &mut self.session {
            if s.raw.len().saturating_add(bytes.len()) > cap {
                s.raw_full = true;
            } else {
                s.raw.extend_from_slice(bytes);
            }
        }
    }

    fn ignored(&mut self, what: &str, ev: &mut Vec<Event>) {
        if !self.ignoring {
            ev.push(Event::Warning(format!("ignored {what}")));
        }
        self.ignoring = true;
    }

    fn on_token(&mut self, token: Token, now: Instant, ev: &mut Vec<Event>) {
        let in_session = self.session.is_some();
        match token {
            Token::Enq if !in_session => {
                self.ignoring = false;
                if self.busy {
                    ev.push(Event::Warning("busy: ENQ answered NAK".into()));
                    ev.push(Event::Send(vec![NAK]));
                } else {
                    ev.push(Event::Send(vec![ACK]));
                    self.session = Some(Session::new(now + self.config.receive_timeout));
                }
            }
            Token::Enq => self.ignored("ENQ inside a session (not answered, to keep replies in step)", ev),
            Token::Eot if in_session => {
                self.ignoring = false;
                self.on_eot(ev);
            }
            _ if !in_session => self.ignored("bytes while idle (waiting for ENQ)", ev),
            Token::Noise => self.ignored("bytes outside frames", ev),
            Token::Cut => {
                self.ignoring = false;
                if let Some(s) = &mut self.session {
                    s.refused += 1;
                    s.after_cut = true;
                }
                ev.push(Event::Warning("frame cut short by STX, ENQ or EOT: dropped, not answered".into()));
            }
            // A sender waits for the reply to a frame before it sends another,
            // so an STX inside a frame is a corrupted byte, and what follows it
            // is the rest of that frame: its checksum may even verify by chance
            // (1 in 256), so it is refused; the sender then sends the whole
            // frame again.
            Token::Frame(_) | Token::Oversize | Token::Plain { .. }
                if self.session.as_mut().is_some_and(|s| std::mem::take(&mut s.after_cut)) =>
            {
                self.ignoring = false;
                self.refuse("frame began inside the previous one (line noise)", ev);
            }
            Token::Oversize => {
                self.ignoring = false;
                let limit = self.config.max_frame_text;
                self.refuse(&format!("frame text longer than {limit} bytes"), ev);
            }
            Token::Frame(bytes) => {
                self.ignoring = false;
                self.on_frame(bytes, ev);
            }
            Token::Plain { text, end } => {
                self.ignoring = false;
                self.on_plain(text, end, ev);
            }
            Token::Eot => {}
        }
    }

    fn on_eot(&mut self, ev: &mut Vec<Event>) {
        let simplified = self.config.style == Style::Simplified;
        let Some(s) = &mut self.session else { return };
        if s.withheld.is_some() {
            if simplified {
                s.eot_deferred = true;
                return;
            }
            ev.push(Event::Warning(
                "EOT while a commit was pending (the sender timed out): the final ACK will not be sent".into(),
            ));
        } else if simplified {
            ev.push(Event::Send(vec![ACK]));
        }
        let reason = if s.naks_in_row >= SENDER_TRIES {
            format!("EOT after {} refused tries (the sender gave up)", s.naks_in_row)
        } else {
            "EOT before the message was complete".to_string()
        };
        self.end_session(&reason, ev);
    }

    /// Ends the session; what was received of an incomplete message is
    /// reported as aborted.
    fn end_session(&mut self, reason: &str, ev: &mut Vec<Event>) {
        let Some(mut s) = self.session.take() else { return };
        let (pending, mut raw) = match s.withheld.take() {
            Some(w) => {
                let rest = s.text.get(w.upto..).unwrap_or_default();
                let mut raw = if rest.is_empty() { Vec::new() } else { s.last.map(|l| l.bytes).unwrap_or_default() };
                raw.append(&mut s.raw);
                (!rest.is_empty(), raw)
            }
            None => (!s.text.is_empty() || s.refused > 0, s.raw),
        };
        if pending {
            let mut reason = reason.to_string();
            if s.raw_full {
                reason.push_str(" (raw bytes truncated)");
            }
            raw.shrink_to_fit();
            ev.push(Event::Aborted { raw, reason });
        }
    }

    /// NAKs a frame (or abandons the session if a commit is pending).
    fn refuse(&mut self, why: &str, ev: &mut Vec<Event>) {
        let Some(s) = &mut self.session else { return };
        if s.withheld.is_some() {
            self.abandon(ev);
            return;
        }
        s.refused += 1;
        s.naks_in_row += 1;
        ev.push(Event::Warning(format!("NAK: {why}")));
        ev.push(Event::Send(vec![NAK]));
    }

    /// A new frame while the final frame's ACK waits for a commit: the
    /// sender did not wait for it. The ACK is never sent, the session ends.
    fn abandon(&mut self, ev: &mut Vec<Event>) {
        ev.push(Event::Warning(
            "a new frame came while the final frame's ACK waited for the commit: session abandoned without that ACK"
                .into(),
        ));
        self.end_session("frame sent without waiting for the final ACK", ev);
    }

    fn on_frame(&mut self, mut bytes: Vec<u8>, ev: &mut Vec<Event>) {
        let lenient_wrap = self.config.lenient_wrap;
        let max_message = self.config.max_message_bytes;
        let Some(s) = &mut self.session else { return };
        if s.withheld.is_some() {
            if s.last.as_ref().is_some_and(|l| l.bytes == bytes) {
                ev.push(Event::Warning(
                    "final frame sent again while its commit is pending: the ACK follows the commit".into(),
                ));
            } else {
                self.abandon(ev);
            }
            return;
        }
        if s.raw_full {
            self.refuse("too many bytes in this session", ev);
            return;
        }
        // The reply is decided at the CR; `frame` wants the LF too.
        let had_cr = bytes.last() == Some(&CR);
        if had_cr {
            bytes.push(LF);
        }
        let parsed = match frame::frame(&bytes) {
            Ok((&[], f)) => Ok((f.number, f.end, f.verifies(), f.lowercase_checksum, f.text.len())),
            _ => Err(frame_problem(&bytes)),
        };
        if had_cr {
            bytes.pop();
        }
        let (number, end, verifies, lowercase, text_len) = match parsed {
            Ok(p) => p,
            Err(why) => return self.refuse(why, ev),
        };
        if !verifies {
            return self.refuse(&format!("bad checksum in frame {number}"), ev);
        }
        if lowercase {
            ev.push(Event::Warning(format!("frame {number}: lowercase checksum accepted")));
        }
        if s.last.as_ref().is_some_and(|l| l.number == number && l.bytes == bytes) {
            ev.push(Event::Warning(format!("frame {number} received again (ACK lost?): ACKed, not used twice")));
            s.naks_in_row = 0;
            ev.push(Event::Send(vec![ACK]));
            return;
        }
        let expected = s.last.as_ref().map_or(1, |l| (l.number + 1) % 8);
        let reset = s.last.as_ref().is_some_and(|l| l.end == FrameEnd::Last) && number == 1;
        let wrap = lenient_wrap && s.last.as_ref().is_some_and(|l| l.number == 7) && number == 1;
        if number != expected && !reset {
            if !wrap {
                return self.refuse(&format!("frame number {number}, expected {expected}"), ev);
            }
            ev.push(Event::Warning("frame number 7 followed by 1 (not 0): accepted".into()));
        }
        if s.text.len().saturating_add(text_len) > max_message {
            return self.refuse(&format!("message longer than {max_message} bytes"), ev);
        }
        let text = bytes.get(2..2 + text_len).unwrap_or_default();
        let mark = s.mark();
        s.text.extend_from_slice(text);
        let last_before = s.last.replace(Accepted { number, end, bytes });
        self.accepted(end, mark, last_before, ev);
    }

    fn on_plain(&mut self, text: Vec<u8>, end: FrameEnd, ev: &mut Vec<Event>) {
        let max_message = self.config.max_message_bytes;
        let Some(s) = &mut self.session else { return };
        if s.withheld.is_some() {
            return self.abandon(ev);
        }
        if s.text.len().saturating_add(text.len()) > max_message {
            return self.refuse(&format!("message longer than {max_message} bytes"), ev);
        }
        let mark = s.mark();
        s.text.extend_from_slice(&text);
        let last_before = s.last.take();
        self.accepted(end, mark, last_before, ev);
    }

    /// A frame's text was appended: ACK it, or emit the message it completes.
    fn accepted(&mut self, end: FrameEnd, mark: Mark, last_before: Option<Accepted>, ev: &mut Vec<Event>) {
        let Some(s) = &mut self.session else { return };
        s.naks_in_row = 0;
        if end == FrameEnd::Last && s.text.last().is_some_and(|&b| b != CR) {
            ev.push(Event::Warning("no CR before ETX: the record is ended there".into()));
            s.text.push(CR);
        }
        s.scan_records();
        let upto = match (end, s.last_l_end) {
            (FrameEnd::Last, Some(upto)) => upto,
            _ => {
                ev.push(Event::Send(vec![ACK]));
                return;
            }
        };
        let id = MessageId(self.next_id);
        self.next_id += 1;
        self.outstanding.push(id);
        let raw = std::mem::take(&mut s.raw);
        let text = s.text.get(..upto).unwrap_or_default().to_vec();
        if upto < s.text.len() {
            ev.push(Event::Warning("text after the L record in the same ETX frame: kept for the next message".into()));
        }
        s.deadline = None;
        s.withheld = Some(Withheld { id, upto, before: mark, last_before, raw: raw.clone() });
        ev.push(Event::Message { id, text, raw });
    }

    fn feed_unframed(&mut self, bytes: &[u8], now: Instant, ev: &mut Vec<Event>) {
        let max = self.config.max_message_bytes;
        for &b in bytes {
            if self.unframed.is_none() {
                if b.is_ascii_whitespace() || b.is_ascii_control() {
                    continue;
                }
                self.unframed = Some(Unit::default());
            }
            let Some(u) = &mut self.unframed else { continue };
            if !u.discarding {
                if u.text.len() >= max {
                    ev.push(Event::Aborted {
                        raw: std::mem::take(&mut u.text),
                        reason: format!("message longer than {max} bytes"),
                    });
                    u.discarding = true;
                } else {
                    u.text.push(b);
                }
            }
            if b == CR || b == LF {
                let l_record = is_l_record(&u.head);
                u.head.clear();
                if l_record {
                    if let Some(u) = self.unframed.take()
                        && !u.discarding
                    {
                        let id = MessageId(self.next_id);
                        self.next_id += 1;
                        self.outstanding.push(id);
                        ev.push(Event::Message { id, raw: u.text.clone(), text: u.text });
                    }
                    continue;
                }
            } else if u.head.len() < 2 {
                u.head.push(b);
            }
        }
        if let Some(u) = &mut self.unframed
            && !bytes.is_empty()
        {
            u.deadline = Some(now + self.config.receive_timeout);
        }
    }
}

impl Session {
    fn new(deadline: Instant) -> Self {
        Session {
            deadline: Some(deadline),
            text: Vec::new(),
            scan: 0,
            last_l_end: None,
            raw: vec![ENQ],
            raw_full: false,
            last: None,
            refused: 0,
            naks_in_row: 0,
            withheld: None,
            after_cut: false,
            eot_deferred: false,
        }
    }

    fn mark(&self) -> Mark {
        Mark { text_len: self.text.len(), scan: self.scan, last_l_end: self.last_l_end }
    }

    /// Looks at the records completed since the last call.
    fn scan_records(&mut self) {
        let from = self.scan.min(self.text.len());
        let tail = self.text.get(from..).unwrap_or_default();
        let mut start = from;
        for (i, &b) in tail.iter().enumerate() {
            if b == CR {
                let record = self.text.get(start..from + i).unwrap_or_default();
                if is_l_record(record) {
                    self.last_l_end = Some(from + i + 1);
                }
                start = from + i + 1;
            }
        }
        self.scan = start;
    }
}

/// An L (message terminator) record: `L` or `l`, then a delimiter or nothing.
fn is_l_record(record: &[u8]) -> bool {
    match record {
        [b'L' | b'l'] => true,
        [b'L' | b'l', d, ..] => !d.is_ascii_alphanumeric() && *d != b' ',
        _ => false,
    }
}

/// Why `frame::frame` refused a frame that reached its trailer.
fn frame_problem(bytes: &[u8]) -> &'static str {
    if !bytes.get(1).is_some_and(|b| (b'0'..=b'7').contains(b)) {
        return "frame number not 0-7";
    }
    let text_end = bytes.iter().position(|&b| b == ETX || b == ETB).unwrap_or(bytes.len());
    if bytes.get(2..text_end).unwrap_or_default().iter().any(|&b| frame::is_restricted(b)) {
        return "restricted character (LF, control byte) in the frame text";
    }
    "bad checksum digits or trailer (expected 2 hex digits, CR, LF)"
}

/// What the lexer found in the byte stream.
#[derive(Debug, PartialEq, Eq)]
enum Token {
    Enq,
    Eot,
    /// Bytes outside frames.
    Noise,
    /// A frame that reached its trailer: STX through the byte after the
    /// checksum digits (CR when well formed).
    Frame(Vec<u8>),
    /// A frame whose text exceeded the bound (not buffered), now ended.
    Oversize,
    /// A frame cut short by STX, ENQ or EOT (which is not consumed).
    Cut,
    /// Simplified style: the text between STX and ETX (or ETB).
    Plain {
        text: Vec<u8>,
        end: FrameEnd,
    },
}

#[derive(Debug)]
enum LexState {
    /// Between frames; `after_frame`: a LF now is the last frame's.
    Outside { after_frame: bool },
    /// After STX, until ETB/ETX.
    Text,
    /// After ETB/ETX: `got` trailer bytes so far.
    Trailer { got: u8 },
}

/// Cuts the byte stream into tokens, holding at most one bounded frame.
#[derive(Debug)]
struct Lexer {
    simplified: bool,
    /// Bytes kept of the frame in progress: STX, FN, text.
    limit: usize,
    state: LexState,
    buf: Vec<u8>,
    oversize: bool,
}

impl Lexer {
    fn new(simplified: bool, max_text: usize) -> Self {
        let overhead = if simplified { 1 } else { 2 };
        Lexer {
            simplified,
            limit: max_text.saturating_add(overhead),
            state: LexState::Outside { after_frame: false },
            buf: Vec::new(),
            oversize: false,
        }
    }

    fn reset(&mut self) {
        self.state = LexState::Outside { after_frame: false };
        self.buf = Vec::new();
        self.oversize = false;
    }

    /// Consumes bytes of `input` up to the end of the next token (or all of
    /// it): how many, and the token if one ended.
    fn next(&mut self, input: &[u8]) -> (usize, Option<Token>) {
        let mut i = 0;
        while let Some(&b) = input.get(i) {
            match self.state {
                LexState::Outside { after_frame } => {
                    self.state = LexState::Outside { after_frame: false };
                    match b {
                        ENQ => return (i + 1, Some(Token::Enq)),
                        EOT => return (i + 1, Some(Token::Eot)),
                        STX => {
                            self.buf = vec![STX];
                            self.oversize = false;
                            self.state = LexState::Text;
                            i += 1;
                        }
                        LF if after_frame => i += 1,
                        _ => {
                            let rest = input.get(i..).unwrap_or_default();
                            let n = rest.iter().position(|&c| matches!(c, ENQ | EOT | STX)).unwrap_or(rest.len());
                            return (i + n, Some(Token::Noise));
                        }
                    }
                }
                LexState::Text => {
                    let rest = input.get(i..).unwrap_or_default();
                    let stop = rest.iter().position(|&c| matches!(c, ETX | ETB | STX | ENQ | EOT));
                    let n = stop.unwrap_or(rest.len());
                    let text = rest.get(..n).unwrap_or_default();
                    if !self.oversize {
                        if self.buf.len().saturating_add(text.len()) > self.limit {
                            self.oversize = true;
                            self.buf = Vec::new();
                        } else {
                            self.buf.extend_from_slice(text);
                        }
                    }
                    i += n;
                    match rest.get(n).copied() {
                        None => return (i, None),
                        Some(end @ (ETX | ETB)) => {
                            i += 1;
                            if self.simplified {
                                self.state = LexState::Outside { after_frame: false };
                                return (i, Some(self.simplified_token(end)));
                            }
                            self.buf.push(end);
                            self.state = LexState::Trailer { got: 0 };
                        }
                        Some(_) => return (i, Some(self.cut())),
                    }
                }
                LexState::Trailer { got } => {
                    if matches!(b, STX | ENQ | EOT) {
                        return (i, Some(self.cut()));
                    }
                    i += 1;
                    if !self.oversize {
                        self.buf.push(b);
                    }
                    if got < 2 {
                        self.state = LexState::Trailer { got: got + 1 };
                        continue;
                    }
                    self.state = LexState::Outside { after_frame: b == CR };
                    let token =
                        if self.oversize { Token::Oversize } else { Token::Frame(std::mem::take(&mut self.buf)) };
                    self.oversize = false;
                    return (i, Some(token));
                }
            }
        }
        (i, None)
    }

    fn cut(&mut self) -> Token {
        self.state = LexState::Outside { after_frame: false };
        self.buf = Vec::new();
        self.oversize = false;
        Token::Cut
    }

    fn simplified_token(&mut self, end: u8) -> Token {
        let end = if end == ETX { FrameEnd::Last } else { FrameEnd::Intermediate };
        if std::mem::take(&mut self.oversize) {
            return Token::Oversize;
        }
        let mut text = std::mem::take(&mut self.buf);
        if !text.is_empty() {
            text.remove(0);
        }
        Token::Plain { text, end }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::astm::frame::encode_frame;

    fn sent(ev: &[Event]) -> Vec<u8> {
        ev.iter()
            .filter_map(|e| match e {
                Event::Send(b) => Some(b.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    fn lex_all(lexer: &mut Lexer, input: &[u8]) -> Vec<Token> {
        let mut rest = input;
        let mut out = Vec::new();
        while !rest.is_empty() {
            let (n, t) = lexer.next(rest);
            assert!(n > 0 || t.is_some(), "progress");
            rest = rest.get(n..).unwrap_or_default();
            out.extend(t);
        }
        out
    }

    #[test]
    fn lexer_tokens() {
        let f = encode_frame(1, b"H|\\^&\r", FrameEnd::Last);
        let mut input = vec![0, 0xFF, ENQ];
        input.extend_from_slice(&f);
        input.extend_from_slice(b"\x02\x31ab\x04");
        let mut lx = Lexer::new(false, 100);
        let tokens = lex_all(&mut lx, &input);
        let frame_without_lf = f.get(..f.len() - 1).unwrap_or_default().to_vec();
        assert_eq!(tokens, vec![Token::Noise, Token::Enq, Token::Frame(frame_without_lf), Token::Cut, Token::Eot]);
    }

    #[test]
    fn lexer_bounds_a_huge_frame() {
        let f = encode_frame(1, &[b'x'; 1000], FrameEnd::Last);
        let mut lx = Lexer::new(false, 100);
        let mut tokens = Vec::new();
        for b in &f {
            tokens.extend(lex_all(&mut lx, &[*b]));
            assert!(lx.buf.len() <= 102);
        }
        assert_eq!(tokens, vec![Token::Oversize]);
        let mut lx = Lexer::new(true, 3);
        assert_eq!(
            lex_all(&mut lx, b"\x02abc\x03\x02abcd\x03"),
            vec![Token::Plain { text: b"abc".to_vec(), end: FrameEnd::Last }, Token::Oversize]
        );
    }

    #[test]
    fn l_records() {
        assert!(is_l_record(b"L|1|N"));
        assert!(is_l_record(b"l|1"));
        assert!(is_l_record(b"L"));
        assert!(!is_l_record(b"LOT|1"));
        assert!(!is_l_record(b"R|1|L"));
        assert!(!is_l_record(b""));
    }

    #[test]
    fn final_ack_waits_for_commit_and_reject_naks() {
        let t0 = Instant::now();
        let mut r = Receiver::default();
        assert_eq!(sent(&r.feed(&[ENQ], t0)), vec![ACK]);
        let f = encode_frame(1, b"H|\\^&\rL|1|N\r", FrameEnd::Last);
        let ev = r.feed(&f, t0);
        assert_eq!(sent(&ev), Vec::<u8>::new());
        let Some(Event::Message { id, .. }) = ev.first().cloned() else { panic!("{ev:?}") };
        assert_eq!(r.next_deadline(), None, "no timer while the commit is pending");
        assert_eq!(sent(&r.rejected(id, t0)), vec![NAK]);
        let ev = r.feed(&f, t0);
        let Some(Event::Message { id: again, .. }) = ev.first().cloned() else { panic!("{ev:?}") };
        assert_ne!(id, again);
        assert_eq!(sent(&r.committed(again, t0)), vec![ACK]);
        assert!(matches!(r.committed(again, t0).as_slice(), [Event::Warning(_)]), "resolved once");
        assert_eq!(sent(&r.feed(&[EOT], t0)), Vec::<u8>::new());
        assert!(r.is_idle());
    }
}
