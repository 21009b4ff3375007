//! ASTM E1394 / CLSI LIS02-A2 records, as analyzers upload them, including
//! E1381 / LIS01-A2 link framing captured in files.
//!
//! Two independent layers (astm.md §0):
//!
//! * [`frame`] and `link`: the link layer. Frames are checked (checksum,
//!   frame number, ETB/ETX) and the texts of one session joined, because a
//!   record may be split anywhere across frames. Files without framing skip
//!   this layer and are parsed in place, without copying.
//! * [`record`] and `message`: the record layer. The text is cut into records
//!   on CR (or LF, CR LF), records are grouped into H…L messages, and each R
//!   record becomes a [`LabResult`](crate::model::LabResult).
//!
//! Errors are per message: a broken message (bad checksum in a frame that
//! carried it, no L record, unknown record type, invalid date…) is reported
//! with what was expected, and the rest of the file is still parsed.
//!
//! Choices where the standard leaves room:
//!
//! * Values: components are joined with `^` and repeats with `\`, the
//!   standard delimiters, even when the message declared others (so a value
//!   means the same whatever the instrument's delimiters); trailing empty
//!   components and repeats are dropped (`3.216365^^^^` → `3.216365`).
//! * Comments: the C.4 text of each C record after an R (or after another C
//!   following an R), joined the same way; blank comments are not kept.
//! * Escapes: `&F& &S& &R& &E&` are decoded; others (`&X..&`, `&H&`…) and an
//!   unterminated one are kept as sent, with a warning.
//! * Character set: a message that is valid UTF-8 is read as UTF-8, any
//!   other as Windows-1252 (a superset of Latin-1), with a warning.
//! * Identifiers, unit, flags and status are trimmed of ASCII white space;
//!   values are kept as sent. Blank is `None`, never `Some("")`.
//! * Hierarchy: a P (or Q, S) record ends the current order, so an R after
//!   it without its own O is an error rather than a result filed under the
//!   previous patient's sample. Sequence numbers are not checked (Mindray).
//! * QC: first component of H.12 or O.12 equal to `Q` (either case).
//! * Dates: O.8 and R.13 only are read (through `Timestamp::parse`); any
//!   other date field is never looked at, so it cannot break a message.
//! * A frame with a problem makes every message whose text it carried an
//!   error; its text is still joined so that message boundaries stay right.
//!   Problems: bad checksum, no ETB/ETX, no checksum digits, a frame number
//!   gap (a lost frame), a session ending after an ETB frame.
//! * Tolerated with a warning: lowercase checksum hex, no CR LF after the
//!   checksum, first frame number other than 1, `7 → 1` wrap, a NAKed frame
//!   replaced by its retransmission, a duplicate frame (lost ACK, skipped),
//!   frames without number and checksum (Maglumi), bytes outside frames. A
//!   reset to FN 1 after an ETX frame is normal (SPEC §7). A session of
//!   nothing but stray bytes is reported as an error.

pub mod frame;
mod link;
mod message;
pub mod receiver;
pub mod record;
pub mod sender;

pub use frame::{Frame, FrameEnd, checksum, encode_frames};
pub use record::{Delimiters, escape, unescape};

use crate::model::{MessageOutcome, MessageView, ParseOptions, UTF8_BOM, ViewOutcome, renumber};
use crate::parallel::for_each_part;
use message::{Engine, Framed, LinkFindings, StampCache, Unframed};
use std::ops::Range;

/// Parse a whole dropped file, reporting one outcome per H…L message (and
/// one error per stretch of records outside a message) in file order.
///
/// The file may hold plain records (`H|\^&…<CR>…L|1|N<CR>`), or link bytes
/// captured from the wire (ENQ, frames with checksums, EOT), including the
/// Maglumi simplified envelope (`ENQ STX records ETX EOT`). Offsets and spans
/// are always in `input`, framing included.
pub fn parse_file(input: &[u8], opts: &ParseOptions, on_message: &mut dyn FnMut(MessageOutcome)) {
    parse_file_views(input, opts, &mut |outcome| on_message(outcome.map(MessageView::into_owned)));
}

/// [`parse_file`] with results that borrow from the input (or from a
/// session's joined frame text): the same checks, warnings and errors,
/// without copying the text out.
pub fn parse_file_views(input: &[u8], opts: &ParseOptions, on_message: &mut dyn FnMut(ViewOutcome<'_>)) {
    let start = if input.starts_with(UTF8_BOM) { UTF8_BOM.len() } else { 0 };
    let body = input.get(start..).unwrap_or_default();
    if is_framed(body) {
        read_sessions(input, start, opts, on_message);
    } else if opts.threads > 1 {
        read_in_parts(input, start, opts, on_message);
    } else {
        read_part(input, &(start..input.len()), opts, on_message);
    }
}

/// Sessions handed over at once from the link reader to the record parser.
const SESSIONS_PER_BATCH: usize = 64;

/// Captured link bytes. Sessions are read in file order (frame checks carry
/// from one to the next); with several threads a helper reads them ahead,
/// a batch at a time, while this thread parses their records, so the
/// results are made and dropped where they are used. Batches go back to the
/// helper to be filled again, and at most a few are in flight.
fn read_sessions(input: &[u8], start: usize, opts: &ParseOptions, on_message: &mut dyn FnMut(ViewOutcome<'_>)) {
    let mut stamps = StampCache::default();
    let mut number = 0;
    let mut send_on = |mut outcome: ViewOutcome<'_>| {
        number += 1;
        renumber(&mut outcome, number);
        on_message(outcome);
    };
    // One thread: each session read and parsed in turn, in one reused buffer.
    let mut read_here = |send_on: &mut dyn FnMut(ViewOutcome<'_>)| {
        let mut reader = link::LinkReader::new(input, start);
        let mut session = link::Session::default();
        while reader.next_session(&mut session) {
            read_session(input, &session, opts, &mut stamps, send_on);
        }
    };
    if opts.threads <= 1 {
        read_here(&mut send_on);
        return;
    }
    let mut reader = link::LinkReader::new(input, start);
    std::thread::scope(|scope| {
        let (filled, batches) = std::sync::mpsc::sync_channel::<Vec<link::Session>>(2);
        let (done, returned) = std::sync::mpsc::channel::<Vec<link::Session>>();
        let link_reader = std::thread::Builder::new().spawn_scoped(scope, move || {
            let mut more = true;
            while more {
                let mut batch = returned.try_recv().unwrap_or_default();
                let mut count = 0;
                while count < SESSIONS_PER_BATCH {
                    if batch.len() == count {
                        batch.push(link::Session::default());
                    }
                    more = batch.get_mut(count).is_some_and(|session| reader.next_session(session));
                    if !more {
                        break;
                    }
                    count += 1;
                }
                batch.truncate(count);
                if filled.send(batch).is_err() {
                    return;
                }
            }
        });
        if link_reader.is_err() {
            read_here(&mut send_on);
            return;
        }
        let mut stamps = StampCache::default();
        for batch in batches {
            for session in &batch {
                read_session(input, session, opts, &mut stamps, &mut send_on);
            }
            // A helper that has finished takes no more batches; this one is dropped.
            let _ = done.send(batch);
        }
    });
}

/// The records of one session, numbered from 1.
fn read_session<'t>(
    input: &'t [u8],
    session: &'t link::Session,
    opts: &ParseOptions,
    stamps: &mut StampCache,
    sink: &mut dyn FnMut(ViewOutcome<'t>),
) {
    let findings = LinkFindings {
        frames: &session.frames,
        problems: &session.problems,
        warnings: &session.warnings,
        junk: session.junk.clone(),
        end: Some(session.end),
    };
    let locate = Framed::new(&session.frames);
    Engine::new(&session.text, locate, findings, (input.len(), 0), opts, (sink, stamps)).run(0);
}

/// The largest piece of plain records parsed on one thread at once: enough
/// that handing it over costs little, small enough that its results stay in
/// cache while they wait their turn.
const MOST_PER_PART: usize = 64 * 1024;

/// Plain records cut into pieces that parse alone ([`message::cut_points`]),
/// shared out among `opts.threads` threads, the outcomes sent on in file
/// order and numbered as one engine would number them.
fn read_in_parts(input: &[u8], start: usize, opts: &ParseOptions, on_message: &mut dyn FnMut(ViewOutcome<'_>)) {
    // Two pieces per thread even for a small file, so that the pieces of one
    // turn take about as long as each other.
    let every = (input.len() / opts.threads.saturating_mul(2)).clamp(1, MOST_PER_PART);
    let cuts = message::cut_points(input, start, every);
    let bounds: Vec<usize> = std::iter::once(start).chain(cuts).chain(std::iter::once(input.len())).collect();
    let parts: Vec<Range<usize>> = bounds.iter().zip(bounds.iter().skip(1)).map(|(&a, &b)| a..b).collect();
    let mut number = 0;
    let mut send_on = |mut outcome: ViewOutcome<'_>| {
        number += 1;
        renumber(&mut outcome, number);
        on_message(outcome);
    };
    let read_ahead = |part: &Range<usize>| {
        let mut found = Vec::new();
        read_part(input, part, opts, &mut |outcome| found.push(outcome));
        found
    };
    for_each_part(&parts, opts.threads, read_ahead, |part, ahead| match ahead {
        Some(found) => found.into_iter().for_each(&mut send_on),
        None => read_part(input, part, opts, &mut send_on),
    });
}

/// The records of one piece, numbered from 1.
fn read_part<'t>(input: &'t [u8], part: &Range<usize>, opts: &ParseOptions, sink: &mut dyn FnMut(ViewOutcome<'t>)) {
    let mut stamps = StampCache::default();
    let sinks = (sink, &mut stamps);
    Engine::new(input, Unframed, LinkFindings::default(), (input.len(), 0), opts, sinks).run_part(part.clone());
}

/// Link bytes first (after white space) mean captured framing; anything else
/// is read as plain records.
fn is_framed(body: &[u8]) -> bool {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    matches!(first, Some(&(frame::STX | frame::ENQ | frame::EOT | frame::ACK | frame::NAK)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_bytes_first_mean_framing() {
        assert!(is_framed(b"\x05\x021H|"));
        assert!(is_framed(b"\r\n\x021H|"));
        assert!(is_framed(b"\x06\x04"));
        assert!(!is_framed(b"H|\\^&"));
        assert!(!is_framed(b""));
        assert!(!is_framed(b"junk\x02"));
    }
}
