//! The sending side of an E1381 / CLSI LIS01-A2 link, as a sans-IO state
//! machine, for `labfeed simulate` (testing a cable, a port or a receiver):
//! bytes from the line and the time go in, bytes to write and a final
//! [`Report`] come out.
//!
//! One session: ENQ; on ACK the frames of every message (at most
//! [`SenderConfig::max_text_len`] text bytes each, frame numbers 1…7, 0, 1…
//! across the whole session, or from 1 for each message), each waiting for
//! its ACK; EOT at the end. A NAKed frame is sent again, up to 6 tries in
//! all, then EOT (abort). No reply within 15 s → EOT. NAK to ENQ (receiver
//! busy) → wait 10 s and bid again; ENQ to our ENQ (contention: the other
//! side has priority) → yield, wait 20 s and bid again; at most 6 bids. EOT
//! instead of ACK (receiver interrupt) counts as the ACK and ends the
//! session early. Bytes that are not a reply are ignored.

use std::time::{Duration, Instant};

use super::frame::{ACK, ENQ, EOT, MAX_TEXT_LEN, NAK, encode_frames_from};

/// Sender settings; the defaults are E1381's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderConfig {
    /// Text bytes per frame (240 in E1381).
    pub max_text_len: usize,
    /// Wait for a reply to ENQ or to a frame.
    pub reply_timeout: Duration,
    /// Wait after a NAK to ENQ (receiver busy) before bidding again.
    pub busy_wait: Duration,
    /// Wait after line contention before bidding again.
    pub contention_wait: Duration,
    /// Tries per frame (the first sending included).
    pub max_tries: u32,
    /// ENQ bids per session.
    pub max_bids: u32,
    /// Number each message's frames from 1 (else numbers run on across the session).
    pub restart_numbering: bool,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            max_text_len: MAX_TEXT_LEN,
            reply_timeout: Duration::from_secs(15),
            busy_wait: Duration::from_secs(10),
            contention_wait: Duration::from_secs(20),
            max_tries: 6,
            max_bids: 6,
            restart_numbering: false,
        }
    }
}

/// What the sender asks of its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Bytes to write to the line now.
    Send(Vec<u8>),
    /// The session is over.
    Done(Report),
}

/// How the session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every frame was acknowledged.
    Delivered,
    /// A frame was refused too often, or went unanswered: EOT sent.
    Aborted(String),
    /// No reply to ENQ: EOT sent.
    NoAnswer,
    /// Every bid was answered NAK.
    ReceiverBusy,
    /// Every bid met the other side's ENQ.
    Contention,
    /// The receiver answered a frame with EOT before the end.
    Interrupted,
}

/// What the receiver answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub outcome: Outcome,
    /// Messages whose final frame was acknowledged.
    pub messages_delivered: usize,
    pub messages: usize,
    /// Frames written, retransmissions included.
    pub frames_sent: usize,
    pub frames_acked: usize,
    /// NAKs to frames.
    pub naks: usize,
    pub retransmissions: usize,
    /// ENQs written.
    pub bids: u32,
    /// NAKs to ENQ.
    pub busy_naks: usize,
    /// ENQs received in reply to our ENQ.
    pub contentions: usize,
    /// Received bytes that were not a reply awaited.
    pub ignored_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Ready,
    /// ENQ sent, waiting for the reply.
    Bidding {
        deadline: Instant,
    },
    /// Waiting before bidding again.
    Backoff {
        until: Instant,
    },
    /// Frame `index` sent (`tries` times), waiting for the reply.
    Frame {
        deadline: Instant,
        tries: u32,
    },
    Done,
}

/// One frame, and whether it ends a message.
#[derive(Debug, Clone)]
struct Outgoing {
    bytes: Vec<u8>,
    ends_message: bool,
}

/// The E1381 sender. See the module documentation.
#[derive(Debug)]
pub struct Sender {
    config: SenderConfig,
    frames: Vec<Outgoing>,
    index: usize,
    phase: Phase,
    report: Report,
}

impl Sender {
    /// A session carrying `messages` (texts with their record CRs).
    pub fn new<T: AsRef<[u8]>>(messages: &[T], config: SenderConfig) -> Self {
        let max = config.max_text_len.max(1);
        let mut frames = Vec::new();
        let mut number = 1u8;
        for message in messages {
            if config.restart_numbering {
                number = 1;
            }
            let encoded = encode_frames_from(message.as_ref(), max, number);
            let count = encoded.len();
            for (i, bytes) in encoded.into_iter().enumerate() {
                frames.push(Outgoing { bytes, ends_message: i + 1 == count });
            }
            number = ((usize::from(number) + count) % 8) as u8;
        }
        let report = Report {
            outcome: Outcome::Delivered,
            messages_delivered: 0,
            messages: messages.len(),
            frames_sent: 0,
            frames_acked: 0,
            naks: 0,
            retransmissions: 0,
            bids: 0,
            busy_naks: 0,
            contentions: 0,
            ignored_bytes: 0,
        };
        Sender { config, frames, index: 0, phase: Phase::Ready, report }
    }

    /// Bids for the line. Does nothing once started.
    pub fn start(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.phase == Phase::Ready {
            self.bid(now, &mut out);
        }
        out
    }

    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// When [`tick`](Self::tick) must be called, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Bidding { deadline } | Phase::Frame { deadline, .. } => Some(deadline),
            Phase::Backoff { until } => Some(until),
            Phase::Ready | Phase::Done => None,
        }
    }

    /// Timers: reply timeouts and back-offs.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        self.expire(now, &mut out);
        out
    }

    /// Bytes from the receiver, in any chunking.
    pub fn feed(&mut self, bytes: &[u8], now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        self.expire(now, &mut out);
        for &b in bytes {
            self.on_byte(b, now, &mut out);
        }
        out
    }

    fn expire(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.phase {
            Phase::Bidding { deadline } if now >= deadline => self.finish(Outcome::NoAnswer, true, out),
            Phase::Frame { deadline, .. } if now >= deadline => {
                let secs = self.config.reply_timeout.as_secs();
                let why = format!("no reply to frame {} within {secs} s", self.index + 1);
                self.finish(Outcome::Aborted(why), true, out);
            }
            Phase::Backoff { until } if now >= until => self.bid(now, out),
            _ => {}
        }
    }

    fn bid(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.report.bids += 1;
        self.phase = Phase::Bidding { deadline: now + self.config.reply_timeout };
        out.push(Action::Send(vec![ENQ]));
    }

    fn send_frame(&mut self, tries: u32, now: Instant, out: &mut Vec<Action>) {
        let Some(frame) = self.frames.get(self.index) else {
            self.finish(Outcome::Delivered, true, out);
            return;
        };
        self.report.frames_sent += 1;
        if tries > 1 {
            self.report.retransmissions += 1;
        }
        out.push(Action::Send(frame.bytes.clone()));
        self.phase = Phase::Frame { deadline: now + self.config.reply_timeout, tries };
    }

    fn finish(&mut self, outcome: Outcome, eot: bool, out: &mut Vec<Action>) {
        if eot {
            out.push(Action::Send(vec![EOT]));
        }
        self.report.outcome = outcome;
        self.phase = Phase::Done;
        out.push(Action::Done(self.report.clone()));
    }

    fn frame_acked(&mut self) {
        self.report.frames_acked += 1;
        if self.frames.get(self.index).is_some_and(|f| f.ends_message) {
            self.report.messages_delivered += 1;
        }
        self.index += 1;
    }

    fn on_byte(&mut self, b: u8, now: Instant, out: &mut Vec<Action>) {
        match (self.phase, b) {
            (Phase::Bidding { .. }, ACK) => self.send_frame(1, now, out),
            (Phase::Bidding { .. }, NAK) => {
                self.report.busy_naks += 1;
                self.back_off(self.config.busy_wait, Outcome::ReceiverBusy, now, out);
            }
            (Phase::Bidding { .. }, ENQ) => {
                self.report.contentions += 1;
                self.back_off(self.config.contention_wait, Outcome::Contention, now, out);
            }
            (Phase::Frame { .. }, ACK) => {
                self.frame_acked();
                self.send_frame(1, now, out);
            }
            (Phase::Frame { tries, .. }, NAK) => {
                self.report.naks += 1;
                if tries >= self.config.max_tries {
                    let why = format!("frame {} refused {tries} times", self.index + 1);
                    self.finish(Outcome::Aborted(why), true, out);
                } else {
                    self.send_frame(tries + 1, now, out);
                }
            }
            (Phase::Frame { .. }, EOT) => {
                // Receiver interrupt: the frame is accepted, the receiver asks us to stop.
                self.frame_acked();
                let outcome = if self.index >= self.frames.len() { Outcome::Delivered } else { Outcome::Interrupted };
                self.finish(outcome, true, out);
            }
            _ => self.report.ignored_bytes += 1,
        }
    }

    fn back_off(&mut self, wait: Duration, outcome: Outcome, now: Instant, out: &mut Vec<Action>) {
        if self.report.bids >= self.config.max_bids {
            self.finish(outcome, false, out);
        } else {
            self.phase = Phase::Backoff { until: now + wait };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::astm::frame::{ETB, ETX, STX};

    fn sends(actions: &[Action]) -> Vec<Vec<u8>> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(b) => Some(b.clone()),
                Action::Done(_) => None,
            })
            .collect()
    }

    fn report(actions: &[Action]) -> Option<Report> {
        actions.iter().find_map(|a| match a {
            Action::Done(r) => Some(r.clone()),
            Action::Send(_) => None,
        })
    }

    #[test]
    fn frames_run_on_across_messages_and_wrap() {
        let text = vec![b'x'; 240 * 8];
        let s = Sender::new(&[text.clone(), b"L|1|N\r".to_vec()], SenderConfig::default());
        let numbers: Vec<u8> = s.frames.iter().filter_map(|f| f.bytes.get(1).copied()).collect();
        assert_eq!(numbers, b"123456701");
        let ends: Vec<u8> = s.frames.iter().filter_map(|f| f.bytes.iter().rev().nth(4).copied()).collect();
        assert_eq!(ends, [ETB, ETB, ETB, ETB, ETB, ETB, ETB, ETX, ETX]);
        let restart = SenderConfig { restart_numbering: true, ..SenderConfig::default() };
        let s = Sender::new(&[text, b"L|1|N\r".to_vec()], restart);
        assert_eq!(s.frames.last().and_then(|f| f.bytes.get(1)), Some(&b'1'));
    }

    #[test]
    fn happy_path_nak_retry_and_eot() {
        let t0 = Instant::now();
        let mut s = Sender::new(&[b"H|\\^&\rL|1|N\r"], SenderConfig::default());
        assert_eq!(sends(&s.start(t0)), vec![vec![ENQ]]);
        let a = s.feed(&[ACK], t0);
        assert_eq!(sends(&a).len(), 1);
        assert_eq!(sends(&a)[0][0], STX);
        let again = s.feed(&[NAK], t0);
        assert_eq!(sends(&again), sends(&a), "NAK → same frame again");
        let end = s.feed(&[ACK], t0);
        assert_eq!(sends(&end), vec![vec![EOT]]);
        let r = report(&end).expect("done");
        assert_eq!(r.outcome, Outcome::Delivered);
        assert_eq!((r.frames_sent, r.frames_acked, r.naks, r.retransmissions, r.messages_delivered), (2, 1, 1, 1, 1));
        assert!(s.is_done() && s.next_deadline().is_none());
    }

    #[test]
    fn six_naks_abort_with_eot() {
        let t0 = Instant::now();
        let mut s = Sender::new(&[b"L|1\r"], SenderConfig::default());
        s.start(t0);
        let mut frames = sends(&s.feed(&[ACK], t0)).len();
        let mut last = Vec::new();
        for _ in 0..6 {
            last = s.feed(&[NAK], t0);
            frames += sends(&last).iter().filter(|b| b.first() == Some(&STX)).count();
        }
        assert_eq!(frames, 6, "six tries in all");
        assert_eq!(sends(&last).last(), Some(&vec![EOT]));
        assert!(matches!(report(&last).map(|r| r.outcome), Some(Outcome::Aborted(_))));
    }

    #[test]
    fn timeouts_busy_backoff_and_contention() {
        let t0 = Instant::now();
        let mut s = Sender::new(&[b"L|1\r"], SenderConfig::default());
        s.start(t0);
        assert_eq!(s.next_deadline(), Some(t0 + Duration::from_secs(15)));
        let a = s.tick(t0 + Duration::from_secs(15));
        assert_eq!(sends(&a), vec![vec![EOT]]);
        assert_eq!(report(&a).map(|r| r.outcome), Some(Outcome::NoAnswer));

        let mut s = Sender::new(&[b"L|1\r"], SenderConfig::default());
        s.start(t0);
        assert!(s.feed(&[NAK], t0).is_empty());
        assert!(s.tick(t0 + Duration::from_secs(9)).is_empty(), "waits 10 s");
        assert_eq!(sends(&s.tick(t0 + Duration::from_secs(10))), vec![vec![ENQ]]);
        assert!(s.feed(&[ENQ], t0 + Duration::from_secs(11)).is_empty(), "contention: yield");
        assert_eq!(s.next_deadline(), Some(t0 + Duration::from_secs(31)));
        let mut done = None;
        let mut now = t0 + Duration::from_secs(31);
        for _ in 0..10 {
            assert_eq!(sends(&s.tick(now)), vec![vec![ENQ]]);
            if let Some(r) = report(&s.feed(&[NAK], now)) {
                done = Some(r);
                break;
            }
            now += Duration::from_secs(10);
        }
        let r = done.expect("gives up");
        assert_eq!((r.outcome, r.bids, r.busy_naks, r.contentions), (Outcome::ReceiverBusy, 6, 5, 1));
    }

    #[test]
    fn frame_timeout_and_receiver_interrupt() {
        let t0 = Instant::now();
        let long = vec![b'x'; 500];
        let mut s = Sender::new(std::slice::from_ref(&long), SenderConfig::default());
        s.start(t0);
        s.feed(&[ACK], t0);
        let a = s.tick(t0 + Duration::from_secs(15));
        assert_eq!(sends(&a), vec![vec![EOT]]);
        assert!(matches!(report(&a).map(|r| r.outcome), Some(Outcome::Aborted(_))));

        let mut s = Sender::new(&[long], SenderConfig::default());
        s.start(t0);
        s.feed(&[ACK], t0);
        let a = s.feed(&[EOT, ACK, ACK], t0);
        assert_eq!(sends(&a), vec![vec![EOT]]);
        let r = report(&a).expect("done");
        assert_eq!((r.outcome, r.frames_acked, r.ignored_bytes), (Outcome::Interrupted, 1, 0));
    }
}
