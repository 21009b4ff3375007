//! The E1381 link layer without ports: the receiver against the conformance
//! cases of astm.md §5 (one test per case, named after it), the sender, a
//! receiver ↔ sender loopback over a faulty line, and property tests.
//!
//! Sample texts are inline, verbatim from astm.md §3 (their published frame
//! checksums are checked first, so a typo here cannot go unnoticed).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use labfeed::astm::frame::{ACK, CR, ENQ, EOT, ETB, ETX, FrameEnd, LF, NAK, STX, checksum, encode_frame};
use labfeed::astm::receiver::{Config, Event, MessageId, Receiver, Style};
use labfeed::astm::sender::{Action, Outcome, Report, Sender, SenderConfig};
use labfeed::astm::{encode_frames, parse_file};
use labfeed::model::{LabResult, ParseOptions};
use proptest::prelude::*;

// ---------------------------------------------------------------- samples

/// Roche cobas e411 upload (astm.md §3.1): two frames, the split inside `^^^900`.
const E411: &str = "H|\\^&|||cobas-e411^1|||||host|RSUPL^BATCH|P|1\rP|1\rO|1|801030-02-6026|2596^0012^2^^S1^SC|\
^^^117^1\\^^^900^1\\^^^880^1\\^^^136^1|R||20180730143855||||N||||1|||||||20180730152212|||F\r\
R|1|^^^117/1/not|317.6|IU/l||H||F||ADMIN|||E1\rC|1|I|40|I\rR|2|^^^900/1/not|-1^0.750|COI||N||F||ADMIN|||E1\r\
R|3|^^^880/1/not|-1^0.288|COI||N||F||ADMIN|||E1\rR|4|^^^136/1/not|-1^0.128|COI||N||F||ADMIN|||E1\rL|1|N\r";

/// Roche cobas c111 (astm.md §3.3): one record per frame, all ETB but the last.
const C111: [&str; 7] = [
    "H|\\^&|||SENAITE^Roche^c111^4.2.2.1730^1^13147|||||host|RSUPL^REAL|P|1|20230803131713",
    "P|1||",
    "O|1||T20 10134GA D28^^6||S||||||N|||||||||||20230803131713|||F",
    "R|1|^^^413|40.13|g/L||N||F||$SYS$||20230803131700",
    "C|1|I||I",
    "M|1|RR^BM^c111^1|-21|-21\\-21\\1\\1\\1\\-1\\-33\\-37\\-38\\-38\\-42\\-42\\-42\\-41\\-42\\-43\\140\\141|0.018514",
    "L|1|N",
];

/// Mindray BS-240 (astm.md §3.8): the whole message in one frame, global sequence numbers.
const MINDRAY: &str = "H|\\^&|||Mindry^^|||||||PR|1394-97|20250701173105\rP|476||||^^||^^|U||||||||||||||||||||||||||\r\
O|476|8^^|2025105875|CREAS^Creatinine (Sarcosine Oxidase Method)^^\\UREA^Urea^^|R|20250701145215|20250701145140|||||||\
20250701145140|serum||||||||||F|||||\rR|162|CREAS^Creatinine (Sarcosine Oxidase Method)^^F|3.216365^^^^|mg/dL|^|N||F|\
3.216365^^^^|0|20250701154742||Mindry^\rR|163|UREA^Urea^^F|72.506096^^^^|mg/dL|^|N||F|72.506096^^^^|0|20250701154406||\
Mindry^\rL|475|N\r";

/// Roche/Hitachi H7600 QC upload (astm.md §3.5): the ETB split lands inside R.14.
const H7600: &str = "H|\\^&|||H7600^1|||||host|RSUPL^BATCH|P|1\rP|1|||||||U||||||^\rO|1|PCCC2                 |\
4030^30064^064^^QC^SC|^^^798^\\^^^435^\\^^^717^\\^^^552^\\^^^781^|||||||Q||||1|||||||20180702152234|||F\rC|1|I|^^^^|G\r\
R|1|^^^798/|4.60|mmol/l||A||||ADMIN |||P1\rC|1|I|101|I\rR|2|^^^435/|1.55|mmol/l||N||||ADMIN |||P1\rC|1|I|0|I\r\
R|3|^^^717/|13.12|mmol/l||N||||ADMIN |||P1\rC|1|I|0|I\rR|4|^^^552/|2.42|mmol/l||N||||ADMIN |||P1\rC|1|I|0|I\r\
R|5|^^^781/|2.35|mmol/l||N||||ADMIN |||P1\rC|1|I|0|I\rL|1|N\r";

/// Abbott Architect i-series (astm.md §3.6), two of the messages of one session.
const ARCHITECT: [&str; 2] = [
    "H|\\^&|||ARCHITECT^9.45^F3452430028^H1P1O1R1C1Q1L1|||||||P|1|20250613131519\rP|1|||||||U\r\
O|1|276056250158121|276056250158121^U265^1|^^^580^Anti-HBcII^UNDILUTED^P|R||||||||||||||||||||F\r\
R|1|^^^580^Anti-HBcII^UNDILUTED^P^73294BE00^02130^^F|0.15|S/CO||||R||ADMIN^ADMIN||20250613101844|i1SR52842\r\
R|2|^^^580^Anti-HBcII^UNDILUTED^P^73294BE00^02130^^I|Nonreactive|||||R||ADMIN^ADMIN||20250613101844|i1SR52842\r\
R|3|^^^580^Anti-HBcII^UNDILUTED^P^73294BE00^02130^^P|1277|RLU||||R||ADMIN^ADMIN||20250613101844|i1SR52842\rL|1\r",
    "H|\\^&|||ARCHITECT^9.45^F3452430028^H1P1O1R1C1Q1L1|||||||P|1|20250613131519\rP|1|||||||U\r\
O|1|AA5XVA2BT9|AA5XVA2BT9^Z226^1|^^^133^Anti-HBs 3^UNDILUTED^P|R||||||||||||||||||||F\r\
R|1|^^^133^Anti-HBs 3^UNDILUTED^P^71046FZ00^01526^^F|2.87|mIU/mL||||R||ADMIN^ADMIN||20250613110114|i1SR52842\r\
R|2|^^^133^Anti-HBs 3^UNDILUTED^P^71046FZ00^01526^^P|3685|RLU||||R||ADMIN^ADMIN||20250613110114|i1SR52842\rL|1\r",
];

/// Snibe Maglumi X3 simplified envelope text (astm.md §3.9).
const MAGLUMI: &str = "H|\\^&||PSWD|Maglumi X3|||||Lis||P|E1394-97|20260717\rP|1\rO|1|25059232||^^^FT4 II\r\
R|1|^^^FT4 II|1.58|ng/dL|0.9 - 1.75|N||||||20250320152944\rL|1|N\r";

/// Erba XL-200 simulator, unframed (astm.md §1.10).
const ERBA: &str = "H|\\^&|||Erba\rP|1\rO|1|BC1002||^^^GLU\rR|1|^^^GLU|142|mg/dL|70-110|H\rL|1|N\r";

/// A small MMTT message: C-peptide and glucose for one sample.
fn mmtt(sample: &str) -> Vec<u8> {
    format!(
        "H|\\^&|||LAB\rP|1\rO|1|{sample}||^^^CPEP\\^^^GLU\rR|1|^^^CPEP|1.23|ng/mL||N||F\rR|2|^^^GLU|95|mg/dL||N||F\rL|1|N\r"
    )
    .into_bytes()
}

// ---------------------------------------------------------------- helpers

fn t0() -> Instant {
    Instant::now()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A frame with any FN byte (even an invalid one) and a correct checksum.
fn raw_frame(fn_byte: u8, text: &[u8], end: u8) -> Vec<u8> {
    let sum = checksum(text).wrapping_add(fn_byte).wrapping_add(end);
    let mut out = vec![STX, fn_byte];
    out.extend_from_slice(text);
    out.push(end);
    out.extend_from_slice(format!("{sum:02X}\r\n").as_bytes());
    out
}

/// Frames cut at the given text offsets, numbered from `first`.
fn frames_at(text: &[u8], cuts: &[usize], first: u8) -> Vec<Vec<u8>> {
    let mut bounds = vec![0];
    bounds.extend_from_slice(cuts);
    bounds.push(text.len());
    let pieces = bounds.len() - 1;
    (0..pieces)
        .map(|i| {
            let end = if i + 1 == pieces { FrameEnd::Last } else { FrameEnd::Intermediate };
            encode_frame(first.wrapping_add(i as u8) % 8, &text[bounds[i]..bounds[i + 1]], end)
        })
        .collect()
}

fn session(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![ENQ];
    frames.iter().for_each(|f| out.extend_from_slice(f));
    out.push(EOT);
    out
}

/// Feeds `bytes` in chunks of `chunk`; with `commit`, every message is
/// committed as soon as it appears (a real driver), and a final EOT is fed on
/// its own, as a real sender sends it only after the final ACK.
fn run(r: &mut Receiver, bytes: &[u8], now: Instant, chunk: usize, commit: bool) -> Vec<Event> {
    let mut all = Vec::new();
    let (body, eot) = match bytes.split_last() {
        Some((&EOT, body)) if commit => (body, &bytes[bytes.len() - 1..]),
        _ => (bytes, &[][..]),
    };
    for piece in body.chunks(chunk.max(1)).chain([eot].into_iter().filter(|e| !e.is_empty())) {
        let ev = r.feed(piece, now);
        let ids: Vec<MessageId> = ev
            .iter()
            .filter_map(|e| match e {
                Event::Message { id, .. } => Some(*id),
                _ => None,
            })
            .collect();
        all.extend(ev);
        if commit {
            for id in ids {
                all.extend(r.committed(id, now));
            }
        }
    }
    all
}

fn sent(ev: &[Event]) -> Vec<u8> {
    ev.iter()
        .filter_map(|e| match e {
            Event::Send(b) => Some(b.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn texts(ev: &[Event]) -> Vec<Vec<u8>> {
    ev.iter()
        .filter_map(|e| match e {
            Event::Message { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

fn ids(ev: &[Event]) -> Vec<MessageId> {
    ev.iter()
        .filter_map(|e| match e {
            Event::Message { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

fn aborts(ev: &[Event]) -> Vec<(Vec<u8>, String)> {
    ev.iter()
        .filter_map(|e| match e {
            Event::Aborted { raw, reason } => Some((raw.clone(), reason.clone())),
            _ => None,
        })
        .collect()
}

fn warnings(ev: &[Event]) -> Vec<String> {
    ev.iter()
        .filter_map(|e| match e {
            Event::Warning(w) => Some(w.clone()),
            _ => None,
        })
        .collect()
}

/// A receiver in a session (ENQ answered).
fn in_session(config: Config, now: Instant) -> Receiver {
    let mut r = Receiver::new(config);
    assert_eq!(sent(&r.feed(&[ENQ], now)), [ACK]);
    r
}

/// Results of a message text, which must parse.
fn results(text: &[u8]) -> Vec<LabResult> {
    let mut out = Vec::new();
    parse_file(text, &ParseOptions::default(), &mut |m| match m {
        Ok(m) => out.extend(m.results),
        Err(e) => panic!("message rejected: {}", e.text),
    });
    out
}

fn codes_and_values(rs: &[LabResult]) -> Vec<(String, String)> {
    rs.iter().map(|r| (r.test_code.clone().unwrap_or_default(), r.value.clone().unwrap_or_default())).collect()
}

// ---------------------------------------------------------------- samples are verbatim

#[test]
fn sample_texts_match_their_published_checksums() {
    let e411 = encode_frames(E411.as_bytes(), 240);
    assert_eq!(e411.len(), 2);
    assert!(e411[0].ends_with(b"\x1744\r\n") && e411[1].ends_with(b"\x0339\r\n"));
    assert!(e411[0].ends_with(b"R|2|^^\x1744\r\n"), "split inside ^^^900");
    let c111: Vec<String> = C111
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let end = if i == 6 { FrameEnd::Last } else { FrameEnd::Intermediate };
            let f = encode_frame(i as u8 + 1, format!("{r}\r").as_bytes(), end);
            String::from_utf8_lossy(&f[f.len() - 4..f.len() - 2]).into_owned()
        })
        .collect();
    assert_eq!(c111, ["C6", "4B", "B3", "CE", "4F", "FD", "0A"]);
    assert!(encode_frame(1, MINDRAY.as_bytes(), FrameEnd::Last).ends_with(b"\x037F\r\n"));
    let h7600 = frames_at(H7600.as_bytes(), &[240], 1);
    assert!(h7600[0].ends_with(b"|||P\x17E0\r\n") && h7600[1].ends_with(b"\x03A5\r\n"));
}

// ---------------------------------------------------------------- conformance cases (astm.md §5)

#[test]
fn case_01_byte_at_a_time_and_coalesced_delivery() {
    let now = t0();
    let frames = encode_frames(E411.as_bytes(), 240);
    let wire = session(&frames);
    assert!(wire.len() > 390);
    // Identical events whatever the chunking (no commit in between).
    let whole = run(&mut Receiver::default(), &wire, now, wire.len(), false);
    for chunk in [1, 2, 3, 7, 100, 247, 248] {
        assert_eq!(run(&mut Receiver::default(), &wire, now, chunk, false), whole, "chunk {chunk}");
    }
    // ACK to ENQ and to frame 1; frame 2's ACK waits for the commit.
    assert_eq!(sent(&whole), [ACK, ACK]);
    assert_eq!(texts(&whole), [E411.as_bytes()]);
    // The raw bytes are exactly the wire bytes, ENQ through the final frame.
    let raw = whole.iter().find_map(|e| match e {
        Event::Message { raw, .. } => Some(raw.clone()),
        _ => None,
    });
    // (The final frame's LF is not waited for: it starts the next raw.)
    assert_eq!(raw.as_deref(), Some(&wire[..wire.len() - 2]));

    // A driver that commits at once: byte by byte and coalesced give the same
    // replies, one per ENQ/frame, never two for a coalesced read.
    let upto_eot = &wire[..wire.len() - 1];
    for chunk in [1, upto_eot.len()] {
        let mut r = Receiver::default();
        let ev = run(&mut r, upto_eot, now, chunk, true);
        assert_eq!(sent(&ev), [ACK, ACK, ACK], "chunk {chunk}");
        assert_eq!(texts(&ev).len(), 1);
        assert!(run(&mut r, &[EOT], now, 1, true).is_empty());
        assert!(r.is_idle());
    }
}

#[test]
fn case_02_noise_before_enq_and_between_sessions() {
    let now = t0();
    let mut r = Receiver::default();
    let ev = r.feed(&[0x00, 0xFF, 0x0A, ACK, NAK], now);
    assert!(sent(&ev).is_empty(), "no NAK storm");
    assert_eq!(warnings(&ev).len(), 1, "one warning for the run");
    // Byte by byte: still one warning, no reply.
    let ev = run(&mut Receiver::default(), &[0x00, 0xFF, 0x0A, ACK, NAK], now, 1, false);
    assert_eq!((sent(&ev).len(), warnings(&ev).len()), (0, 1));
    assert_eq!(sent(&r.feed(&[ENQ], now)), [ACK]);
    // A whole session, then noise, then another session.
    let mut wire = encode_frames(&mmtt("S1"), 240).concat();
    wire.extend_from_slice(&[EOT, b'x', ACK, NAK, 0, ENQ]);
    wire.extend(encode_frames(&mmtt("S2"), 240).concat());
    wire.push(EOT);
    let ev = run(&mut r, &wire, now, 1, true);
    assert_eq!(texts(&ev), [mmtt("S1"), mmtt("S2")]);
    assert_eq!(sent(&ev), [ACK, ACK, ACK], "frame, ENQ, frame: nothing for the noise");
    assert!(aborts(&ev).is_empty());
    assert!(r.is_idle());
}

#[test]
fn case_03_empty_session_and_duplicated_control_bytes() {
    let now = t0();
    // ENQ EOT (Yumizen keepalive): ACK, nothing else.
    let mut r = Receiver::default();
    let ev = r.feed(&[ENQ, EOT], now);
    assert_eq!(ev, [Event::Send(vec![ACK])]);
    assert!(r.is_idle());
    // EOT EOT while idle: ignored.
    assert!(sent(&r.feed(&[EOT, EOT], now)).is_empty());
    // ENQ ENQ: the second one is not answered and changes nothing.
    let ev = r.feed(&[ENQ, ENQ], now);
    assert_eq!(sent(&ev), [ACK]);
    assert_eq!(warnings(&ev).len(), 1);
    let ev = run(&mut r, &encode_frames(&mmtt("S1"), 240).concat(), now, 5, true);
    assert_eq!((texts(&ev).len(), sent(&ev)), (1, vec![ACK]), "FN 1 still expected");
    assert!(r.feed(&[EOT, EOT], now).iter().all(|e| matches!(e, Event::Warning(_))));
    assert!(r.is_idle());
}

#[test]
fn case_04_bad_checksum_nak_then_good_retransmission_ack() {
    let now = t0();
    let frames = encode_frames(E411.as_bytes(), 240);
    let mut bad = frames[1].clone();
    bad[40] ^= 0x01;
    let mut r = in_session(Config::default(), now);
    assert_eq!(sent(&r.feed(&frames[0], now)), [ACK]);
    let ev = r.feed(&bad, now);
    assert_eq!(sent(&ev), [NAK]);
    assert!(texts(&ev).is_empty());
    let ev = run(&mut r, &frames[1], now, 1, true);
    assert_eq!(sent(&ev), [ACK]);
    assert_eq!(texts(&ev), [E411.as_bytes()], "stored once, without the bad attempt");
    // The raw bytes keep the refused attempt, for the audit.
    let raw = ev.iter().find_map(|e| match e {
        Event::Message { raw, .. } => Some(raw.clone()),
        _ => None,
    });
    assert_eq!(raw.map(|r| r.len()), Some(1 + frames[0].len() + bad.len() + frames[1].len() - 1));
    // A bad checksum digit (not the text) is also NAKed; so is a lowercase mismatch.
    let mut r = in_session(Config::default(), now);
    let mut f = encode_frame(1, b"L|1\r", FrameEnd::Last);
    let n = f.len();
    f[n - 3] = b'0';
    assert_eq!(sent(&r.feed(&f, now)), [NAK]);
}

#[test]
fn case_05_six_consecutive_bad_frames_then_eot() {
    let now = t0();
    let frames = encode_frames(E411.as_bytes(), 240);
    let mut bad = frames[1].clone();
    bad[10] = b'#';
    let mut r = in_session(Config::default(), now);
    r.feed(&frames[0], now);
    let mut all = Vec::new();
    for _ in 0..6 {
        all.extend(r.feed(&bad, now));
    }
    assert_eq!(sent(&all), [NAK; 6]);
    let ev = r.feed(&[EOT], now);
    assert!(texts(&ev).is_empty() && sent(&ev).is_empty());
    let aborted = aborts(&ev);
    assert_eq!(aborted.len(), 1, "{ev:?}");
    let (raw, reason) = &aborted[0];
    assert!(reason.contains("6 refused tries"), "{reason}");
    let expected_len = 1 + frames[0].len() + 6 * bad.len() + 1;
    assert_eq!(raw.len(), expected_len, "every byte kept for the audit");
    assert!(r.is_idle());
    // Back to idle: a new session starts afresh at FN 1.
    let ev = run(&mut r, &session(&frames), now, 9, true);
    assert_eq!(texts(&ev), [E411.as_bytes()]);
    assert!(aborts(&ev).is_empty());
}

#[test]
fn case_06_duplicate_frame_after_a_lost_ack() {
    let now = t0();
    let frames = encode_frames(E411.as_bytes(), 150);
    assert_eq!(frames.len(), 3);
    let mut r = in_session(Config::default(), now);
    assert_eq!(sent(&r.feed(&frames[0], now)), [ACK]);
    assert_eq!(sent(&r.feed(&frames[1], now)), [ACK]);
    let ev = r.feed(&frames[1], now);
    assert_eq!(sent(&ev), [ACK], "the duplicate is acknowledged");
    assert_eq!(warnings(&ev).len(), 1);
    let ev = run(&mut r, &frames[2], now, 1000, true);
    assert_eq!(texts(&ev), [E411.as_bytes()], "not appended twice");
    // The final frame again after its commit's ACK was lost: ACKed, not emitted again.
    let ev = r.feed(&frames[2], now);
    assert_eq!((sent(&ev), texts(&ev).len()), (vec![ACK], 0));
    // Same FN but different text is not a duplicate.
    let mut r = in_session(Config::default(), now);
    r.feed(&frames[0], now);
    let other = encode_frame(1, b"P|1\r", FrameEnd::Intermediate);
    assert_eq!(sent(&r.feed(&other, now)), [NAK]);
}

#[test]
fn case_07_out_of_sequence_frame_numbers() {
    let now = t0();
    let text = mmtt("S7");
    let frames = frames_at(&text, &[10, 20], 1);
    let mut r = in_session(Config::default(), now);
    assert_eq!(sent(&r.feed(&frames[0], now)), [ACK]);
    let three = encode_frame(3, &text[10..20], FrameEnd::Intermediate);
    assert_eq!(sent(&r.feed(&three, now)), [NAK], "1 then 3");
    for fn_byte in [b'8', b'A'] {
        let f = raw_frame(fn_byte, &text[10..20], ETB);
        assert_eq!(sent(&r.feed(&f, now)), [NAK], "FN {}", fn_byte as char);
    }
    // No FN at all: the first text byte is read as FN.
    let mut missing = vec![STX];
    missing.extend_from_slice(&text[10..20]);
    missing.push(ETB);
    let sum = checksum(&text[10..20]).wrapping_add(ETB);
    missing.extend_from_slice(format!("{sum:02X}\r\n").as_bytes());
    assert_eq!(sent(&r.feed(&missing, now)), [NAK]);
    // The right frame still goes through.
    let ev = run(&mut r, &[frames[1].clone(), frames[2].clone()].concat(), now, 3, true);
    assert_eq!(texts(&ev), [text]);
    assert_eq!(sent(&ev), [ACK, ACK]);
}

#[test]
fn case_08_frame_number_wrap_and_first_frame_policy() {
    let now = t0();
    let text: Vec<u8> = [mmtt("WRAP"), b"C|1|I|padding padding\r".repeat(10)].concat();
    let mut text = text;
    text.extend_from_slice(b"L|1|N\r");
    // 12 frames numbered 1..7,0,1..4.
    let cuts: Vec<usize> = (1..12).map(|i| i * text.len() / 12).collect();
    let frames = frames_at(&text, &cuts, 1);
    assert_eq!(frames.len(), 12);
    let numbers: Vec<u8> = frames.iter().map(|f| f[1]).collect();
    assert_eq!(numbers, b"123456701234");
    let ev = run(&mut Receiver::default(), &session(&frames), now, 17, true);
    assert_eq!(texts(&ev), [text.clone()]);
    assert_eq!(sent(&ev), [ACK; 13]);

    // Policy: the first frame of a session must be FN 1; FN 0 is NAKed.
    let mut r = in_session(Config::default(), now);
    let zero = encode_frame(0, &mmtt("Z"), FrameEnd::Last);
    assert_eq!(sent(&r.feed(&zero, now)), [NAK]);

    // Immulite 7 → 1: accepted with a warning when lenient (default), NAKed otherwise.
    let immulite: Vec<Vec<u8>> = (0..9)
        .map(|i| {
            let number = [1, 2, 3, 4, 5, 6, 7, 1, 2][i];
            let end = if i == 8 { FrameEnd::Last } else { FrameEnd::Intermediate };
            encode_frame(number, &text[i * 10..if i == 8 { text.len() } else { i * 10 + 10 }], end)
        })
        .collect();
    let ev = run(&mut Receiver::default(), &session(&immulite), now, 64, true);
    assert_eq!(texts(&ev), [text.clone()]);
    assert!(warnings(&ev).iter().any(|w| w.contains("7 followed by 1")));
    let strict = Config { lenient_wrap: false, ..Config::default() };
    let mut r = in_session(strict, now);
    let ev = run(&mut r, &immulite[..8].concat(), now, 64, true);
    assert_eq!(sent(&ev), [ACK, ACK, ACK, ACK, ACK, ACK, ACK, NAK]);
}

#[test]
fn case_09_etb_splits_at_awkward_points() {
    let now = t0();
    let e411 = E411.as_bytes();
    let inside_900 = E411.find("^^^900/1").expect("split point") + 2;
    let after_cr = E411.find("\rP|1\r").expect("split point") + 1;
    for cuts in [vec![inside_900], vec![after_cr], vec![after_cr, after_cr], vec![0, 5, inside_900]] {
        let frames = frames_at(e411, &cuts, 1);
        let ev = run(&mut Receiver::default(), &session(&frames), now, 1, true);
        assert_eq!(texts(&ev), [e411], "cuts {cuts:?}");
        assert!(aborts(&ev).is_empty());
    }
    // Inside an escape sequence (`&R` | `&`): the joined text is the same,
    // and so is what the record layer makes of it.
    let text = b"H|\\^&|||LAB\rP|1\rO|1|S9||Type&R&Screen\rR|1|^^^GLU|95|mg/dL||N||F\rL|1|N\r".to_vec();
    let cut = text.windows(3).position(|w| w == b"&R&").expect("escape") + 2;
    let ev = run(&mut Receiver::default(), &session(&frames_at(&text, &[cut], 1)), now, 1, true);
    assert_eq!(texts(&ev), std::slice::from_ref(&text));
    assert_eq!(codes_and_values(&results(&texts(&ev)[0])), codes_and_values(&results(&text)));
}

#[test]
fn case_10_style_c_style_d_and_a_frame_too_large() {
    let now = t0();
    // Style C: c111, every record its own ETB frame, the L frame ETX.
    let frames: Vec<Vec<u8>> = C111
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let end = if i == 6 { FrameEnd::Last } else { FrameEnd::Intermediate };
            encode_frame(i as u8 + 1, format!("{r}\r").as_bytes(), end)
        })
        .collect();
    let ev = run(&mut Receiver::default(), &session(&frames), now, 1, true);
    let c111: String = C111.iter().map(|r| format!("{r}\r")).collect();
    assert_eq!(texts(&ev), [c111.as_bytes()]);
    assert_eq!(sent(&ev), [ACK; 8]);
    assert_eq!(codes_and_values(&results(c111.as_bytes())), [("413".into(), "40.13".into())]);

    // Style D: one frame of several kB (Mindray, padded with more results).
    let mut big = MINDRAY.replace("L|475|N\r", "");
    for i in 0..60 {
        big.push_str(&format!(
            "R|{}|GLU^Glucose^^F|{}.{i}^^^^|mg/dL|^|N||F||0|20250701154406||Mindry^\r",
            200 + i,
            90 + i
        ));
    }
    big.push_str("L|475|N\r");
    assert!(big.len() > 4000);
    let frame = encode_frame(1, big.as_bytes(), FrameEnd::Last);
    let ev = run(&mut Receiver::default(), &session(&[frame]), now, 1000, true);
    assert_eq!(texts(&ev), [big.as_bytes()]);
    let ev =
        run(&mut Receiver::default(), &session(&[encode_frame(1, MINDRAY.as_bytes(), FrameEnd::Last)]), now, 3, true);
    assert_eq!(texts(&ev), [MINDRAY.as_bytes()]);

    // A 70 000-byte frame: NAKed when its trailer comes, never buffered whole.
    let huge = encode_frame(1, &vec![b'x'; 70_000], FrameEnd::Last);
    let mut r = in_session(Config::default(), now);
    let ev = run(&mut r, &huge, now, 4096, true);
    assert_eq!(sent(&ev), [NAK]);
    // The session goes on: a good frame after it is accepted.
    let ev = run(&mut r, &encode_frame(1, &mmtt("AFTER"), FrameEnd::Last), now, 4096, true);
    assert_eq!(texts(&ev), [mmtt("AFTER")]);
    // A message longer than the bound: its frames are NAKed.
    let small = Config { max_message_bytes: 100, ..Config::default() };
    let mut r = in_session(small, now);
    let frames = encode_frames(E411.as_bytes(), 60);
    assert_eq!(sent(&r.feed(&frames[0], now)), [ACK]);
    assert_eq!(sent(&r.feed(&frames[1], now)), [NAK]);
}

#[test]
fn case_11_missing_cr_before_etx_and_lf_in_text() {
    let now = t0();
    let text = b"H|\\^&|||LAB\rP|1\rO|1|S11||^^^GLU\rR|1|^^^GLU|95|mg/dL||N||F\rL|1|N";
    let ev = run(&mut Receiver::default(), &session(&[encode_frame(1, text, FrameEnd::Last)]), now, 1, true);
    let mut expected = text.to_vec();
    expected.push(CR);
    assert_eq!(texts(&ev), [expected.clone()], "the last record is still ended");
    assert!(warnings(&ev).iter().any(|w| w.contains("no CR before ETX")));
    assert_eq!(codes_and_values(&results(&expected)), [("GLU".into(), "95".into())]);

    // LF inside the text on the wire: restricted, NAK. (CR LF record ends in
    // dropped files are the file reader's business: tests/integration/astm.rs.)
    let mut r = in_session(Config::default(), now);
    let lf = raw_frame(b'1', b"H|\\^&\r\nP|1\r", ETB);
    let ev = r.feed(&lf, now);
    assert_eq!(sent(&ev), [NAK]);
    assert!(warnings(&ev).iter().any(|w| w.contains("restricted")));
    // Other restricted bytes too (DC1).
    assert_eq!(sent(&r.feed(&raw_frame(b'1', b"H|\x11\r", ETB), now)), [NAK]);
    // A bad trailer (no CR after the checksum): NAK.
    let mut f = encode_frame(1, b"H|\\^&\r", FrameEnd::Intermediate);
    let n = f.len();
    f[n - 2] = b'X';
    assert_eq!(sent(&r.feed(&f, now)), [NAK]);
}

#[test]
fn case_12_eot_mid_message_and_receive_timeout() {
    let now = t0();
    let frames = encode_frames(E411.as_bytes(), 240);
    // EOT after an ETB frame: aborted, raw kept, no text.
    let mut r = Receiver::default();
    let mut wire = vec![ENQ];
    wire.extend_from_slice(&frames[0]);
    wire.push(EOT);
    let ev = run(&mut r, &wire, now, 1, true);
    assert!(texts(&ev).is_empty());
    assert_eq!(aborts(&ev).len(), 1);
    assert_eq!(aborts(&ev)[0].0, wire, "raw: ENQ, the frame, EOT");
    assert!(r.is_idle());

    // A complete message, then a partial one: the first is delivered, the
    // partial one aborted (SPEC §7: a message counts only when complete).
    let mut r = Receiver::default();
    let mut wire = vec![ENQ];
    wire.extend(encode_frame(1, &mmtt("DONE"), FrameEnd::Last));
    wire.extend(encode_frame(2, b"H|\\^&|||LAB\rP|1\rO|1|PARTIAL", FrameEnd::Intermediate));
    wire.push(EOT);
    let ev = run(&mut r, &wire, now, 1, true);
    assert_eq!(texts(&ev), [mmtt("DONE")]);
    assert_eq!(aborts(&ev).len(), 1);

    // 30 s with nothing after an ACK: aborted, back to idle.
    let mut r = in_session(Config::default(), now);
    assert_eq!(sent(&r.feed(&frames[0], now + secs(10))), [ACK]);
    assert_eq!(r.next_deadline(), Some(now + secs(40)));
    assert!(r.tick(now + secs(39)).is_empty());
    let ev = r.tick(now + secs(40));
    assert_eq!(aborts(&ev).len(), 1);
    assert!(aborts(&ev)[0].1.contains("30 s"));
    assert!(r.is_idle() && r.next_deadline().is_none());
    // The sender's next frame (FN 2) is ignored while idle; ENQ starts afresh at FN 1.
    assert!(sent(&r.feed(&frames[1], now + secs(41))).is_empty());
    assert_eq!(sent(&r.feed(&[ENQ], now + secs(42))), [ACK]);
    assert_eq!(sent(&r.feed(&frames[1], now + secs(42))), [NAK], "FN 2 is not the start");
    let ev = run(&mut r, &frames.concat(), now + secs(43), 50, true);
    assert_eq!(texts(&ev), [E411.as_bytes()]);

    // A frame trickling in slowly keeps the session alive (the timer restarts on bytes).
    let mut r = in_session(Config::default(), now);
    let mut t = now;
    let mut ev = Vec::new();
    for b in &frames[0] {
        t += secs(20);
        ev.extend(r.feed(&[*b], t));
    }
    assert_eq!(sent(&ev), [ACK]);
    assert!(aborts(&ev).is_empty());
    // The timeout applies even if the driver is late with tick: feed checks it first.
    let ev = r.feed(&frames[1], t + secs(31));
    assert_eq!((aborts(&ev).len(), sent(&ev).len()), (1, 0));
}

#[test]
fn case_13_lowercase_checksum_accepted_with_a_warning() {
    let now = t0();
    // The H7600 QC upload's first frame has checksum E0: sent as `e0`.
    let mut f = frames_at(H7600.as_bytes(), &[240], 1).remove(0);
    let n = f.len();
    assert_eq!(&f[n - 4..n - 2], b"E0");
    f[n - 4] = b'e';
    let mut r = in_session(Config::default(), now);
    let ev = r.feed(&f, now);
    assert_eq!(sent(&ev), [ACK]);
    assert!(warnings(&ev).iter().any(|w| w.contains("lowercase")));
}

#[test]
fn case_14_eight_bit_payload() {
    let now = t0();
    let utf8 = "P|1|666|||頭いい^素晴らしい|||U\r";
    let f = encode_frame(2, utf8.as_bytes(), FrameEnd::Last);
    assert!(f.ends_with(b"\x033D\r\n"));
    let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode(utf8);
    let f = encode_frame(2, &sjis, FrameEnd::Last);
    assert!(f.ends_with(b"\x0378\r\n"));
    for payload in
        [utf8.as_bytes().to_vec(), sjis.to_vec(), b"R|1|^^^K|5|\xB5mol/L\r".to_vec(), b"C|1|\xFF\x7F\r".to_vec()]
    {
        let mut text = b"H|\\^&|||LAB\r".to_vec();
        text.extend_from_slice(&payload);
        text.extend_from_slice(b"L|1|N\r");
        let ev = run(&mut Receiver::default(), &session(&encode_frames(&text, 7)), now, 1, true);
        assert_eq!(texts(&ev), [text], "raw bytes passed on unchanged; decoding is the record layer's");
    }
}

#[test]
fn case_15_custom_delimiters_per_message() {
    let now = t0();
    let messages: [&[u8]; 4] = [
        b"H|\\^&|||LAB\rP|1\rO|1|S15A||^^^GLU\rR|1|^^^GLU|95|mg/dL\rL|1|N\r",
        b"H|@^\\|||GeneXpert\rP|1\rO|1|S15B||^^^CPEP\rR|1|^^^CPEP|1.1|ng/mL\rL|1|N\r",
        b"H|\\!~|||Selectra\rP|1\rO|1|S15C||!!!GLU\rR|1|!!!GLU|101|mg/dL\rL|1|N\r",
        b"H|\\^|||Immulite\rP|1\rO|1|S15D||^^^CPEP\rR|1|^^^CPEP|2.2|ng/mL\rL|1\r",
    ];
    // Two delimiter sets in one ETX frame, then two more in their own frames.
    let first = [messages[0], messages[1]].concat();
    let mut frames = vec![encode_frame(1, &first, FrameEnd::Last)];
    frames.push(encode_frame(2, messages[2], FrameEnd::Last));
    frames.push(encode_frame(3, messages[3], FrameEnd::Last));
    let ev = run(&mut Receiver::default(), &session(&frames), now, 11, true);
    let got = texts(&ev);
    assert_eq!(got, [first, messages[2].to_vec(), messages[3].to_vec()]);
    let rs: Vec<LabResult> = got.iter().flat_map(|t| results(t)).collect();
    let ids: Vec<_> = rs.iter().map(|r| (r.sample_id.clone().unwrap_or_default(), r.test_code.clone())).collect();
    assert_eq!(
        ids,
        [
            ("S15A".into(), Some("GLU".into())),
            ("S15B".into(), Some("CPEP".into())),
            ("S15C".into(), Some("GLU".into())),
            ("S15D".into(), Some("CPEP".into()))
        ]
    );
}

#[test]
fn case_16_escape_sequences_pass_the_link_unchanged() {
    let now = t0();
    let text =
        b"H|\\^&|||LAB\rP|1\rO|1|S16||^^^GLU\rR|1|^^^GLU|Type&R&Screen|mg/dL\rC|1|I|&F& &S& &E& &X0D0A& &Zxyz& &Q& &F|G\rL|1|N\r";
    // Cut at every point of the escapes.
    let start = text.windows(3).position(|w| w == b"&R&").expect("escape");
    for cut in start..start + 3 {
        let ev = run(&mut Receiver::default(), &session(&frames_at(text, &[cut], 1)), now, 1, true);
        assert_eq!(texts(&ev), [text.to_vec()]);
    }
    let rs = results(text);
    assert_eq!(rs[0].value.as_deref(), Some("Type\\Screen"));
}

#[test]
fn case_17_empty_and_trailing_fields() {
    let now = t0();
    let text = b"H|\\^&\rP|1\rO|1|S17||^^^GLU\rR|1|^^^GLU|95|mg/dL|\rR|2|CPEP^C-Peptide^^F|\"\"|\rL|1\r";
    let ev = run(&mut Receiver::default(), &session(&encode_frames(text, 240)), now, 1, true);
    assert_eq!(texts(&ev), [text.to_vec()], "`L|1` ends the message");
    let rs = results(text);
    assert_eq!(rs[0].test_code.as_deref(), Some("GLU"));
    assert_eq!(rs[0].value.as_deref(), Some("95"));
    // A bare `L` record ends a message too; `LOT|…` is not an L record.
    let bare = b"H|\\^&\rP|1\rO|1|S17\rLOT|1\rL\r";
    let cut = bare.windows(3).position(|w| w == b"LOT").expect("LOT");
    let frames = [encode_frame(1, &bare[..cut], FrameEnd::Last), encode_frame(2, &bare[cut..], FrameEnd::Last)];
    let ev = run(&mut Receiver::default(), &session(&frames), now, 1, true);
    assert_eq!(texts(&ev), [bare.to_vec()]);
}

#[test]
fn case_18_repeats_pass_verbatim() {
    let now = t0();
    let text = b"H|\\^&\rP|1\rO|1|S18||^^^117^1\\^^^900^1\\^^^880^1\rR|1|^^^GLU|7.2|mmol/l|4.5\\.4^12.5\\24|N\rM|1|CLEANER\\DILUENT\\LYSE\rL|1|N\r";
    let ev = run(&mut Receiver::default(), &session(&encode_frames(text, 13)), now, 2, true);
    assert_eq!(texts(&ev), [text.to_vec()]);
    assert_eq!(codes_and_values(&results(text)), [("GLU".into(), "7.2".into())]);
}

#[test]
fn case_19_several_messages_per_session() {
    let now = t0();
    // Architect: one record per ETX frame, frame numbers running on.
    let mut frames = Vec::new();
    let mut number = 1u8;
    for message in ARCHITECT {
        for record in message.split_inclusive('\r') {
            frames.push(encode_frame(number, record.as_bytes(), FrameEnd::Last));
            number = (number + 1) % 8;
        }
    }
    let mut r = Receiver::default();
    let ev = run(&mut r, &session(&frames), now, 64, true);
    assert_eq!(texts(&ev), [ARCHITECT[0].as_bytes(), ARCHITECT[1].as_bytes()], "one event per H…L");
    assert_eq!(sent(&ev).len(), 1 + frames.len());
    // The ACK of each L frame waited for its own commit.
    let mut r = Receiver::default();
    let ev = run(&mut r, &session(&frames), now, 64, false);
    assert_eq!(ids(&ev).len(), 1, "stalled at the first L frame until committed");
    assert_eq!(sent(&ev).len(), 7, "ENQ and the first message's frames but its last");

    // Frame numbers reset to 1 at each message (Mindray: "frame always 1").
    let frames = vec![
        encode_frame(1, MINDRAY.as_bytes(), FrameEnd::Last),
        encode_frame(1, MINDRAY.replace("2025105875", "2025105876").as_bytes(), FrameEnd::Last),
    ];
    let ev = run(&mut Receiver::default(), &session(&frames), now, 100, true);
    assert_eq!(texts(&ev).len(), 2);
    let samples: Vec<Option<String>> = texts(&ev).iter().flat_map(|t| results(t)).map(|r| r.sample_id).collect();
    assert_eq!(samples.len(), 4);

    // A message and the start of the next in one ETX frame: the complete one
    // is emitted, the rest waits for its own L.
    let text = [mmtt("A"), b"H|\\^&|||LAB\rP|1\r".to_vec()].concat();
    let frames = vec![encode_frame(1, &text, FrameEnd::Last), encode_frame(2, b"O|1|B\rL|1|N\r", FrameEnd::Last)];
    let ev = run(&mut Receiver::default(), &session(&frames), now, 7, true);
    assert_eq!(texts(&ev), [mmtt("A"), b"H|\\^&|||LAB\rP|1\rO|1|B\rL|1|N\r".to_vec()]);
}

#[test]
fn case_20_result_values_pass_as_strings() {
    let now = t0();
    let values =
        ["<0.010", "<2.00", "> 15000.00", ">8", "7,41", "173.", "-----", "-1^0.750", "2.837141^^^^", "Nonreactive"];
    let mut text = String::from("H|\\^&\rP|1\rO|1|S20\r");
    for (i, v) in values.iter().enumerate() {
        text.push_str(&format!("R|{}|^^^T{i}|{v}|u\r", i + 1));
    }
    text.push_str("L|1|N\r");
    let ev = run(&mut Receiver::default(), &session(&encode_frames(text.as_bytes(), 30)), now, 1, true);
    assert_eq!(texts(&ev), [text.as_bytes()]);
    let rs = results(text.as_bytes());
    assert_eq!(rs.len(), values.len());
    assert!(rs.iter().all(|r| r.value.is_some()), "never dropped");
    assert!(rs.iter().filter(|r| r.numeric.as_ref().is_some_and(|n| n.to_string() == "0")).count() == 0, "never 0");
}

#[test]
fn case_21_qc_upload_arrives_intact() {
    let now = t0();
    let frames = frames_at(H7600.as_bytes(), &[240], 1);
    let ev = run(&mut Receiver::default(), &session(&frames), now, 1, true);
    assert_eq!(texts(&ev), [H7600.as_bytes()]);
    let rs = results(H7600.as_bytes());
    assert_eq!(rs.len(), 5);
    assert!(rs.iter().all(|r| r.qc), "the record layer routes it to QC");
}

#[test]
fn case_22_resends_are_whole_messages() {
    let now = t0();
    let frames = encode_frames(E411.as_bytes(), 240);
    let mut r = Receiver::default();
    // Aborted first try (EOT after frame 1), then a full resend, then the same again.
    let mut wire = vec![ENQ];
    wire.extend_from_slice(&frames[0]);
    wire.push(EOT);
    wire.extend(session(&frames));
    wire.extend(session(&frames));
    let ev = run(&mut r, &wire, now, 1, true);
    assert_eq!(aborts(&ev).len(), 1);
    assert_eq!(texts(&ev), [E411.as_bytes(), E411.as_bytes()], "two identical whole texts: the store keeps one");
    let id = ids(&ev);
    assert_ne!(id[0], id[1]);
}

#[test]
fn case_23a_unframed_sender() {
    let now = t0();
    let config = Config { style: Style::Unframed, ..Config::default() };
    let mut wire = ERBA.as_bytes().to_vec();
    wire.extend_from_slice(b"\r\n");
    wire.extend_from_slice(&ERBA.replace("BC1002", "BC1003").replace('\r', "\r\n").into_bytes());
    let mut r = Receiver::new(config.clone());
    let ev = run(&mut r, &wire, now, 1, true);
    assert!(sent(&ev).is_empty(), "nothing is ever sent");
    let got = texts(&ev);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0], ERBA.as_bytes());
    assert_eq!(results(&got[1])[0].sample_id.as_deref(), Some("BC1003"));
    assert!(r.is_idle() && r.next_deadline().is_none());
    // Same events coalesced.
    let mut coalesced = Receiver::new(config.clone());
    assert_eq!(texts(&run(&mut coalesced, &wire, now, wire.len(), true)), got);
    // A message without its L record is aborted after the timeout.
    let mut r = Receiver::new(config);
    assert!(r.feed(b"H|\\^&\rP|1\r", now).is_empty());
    assert_eq!(r.next_deadline(), Some(now + secs(30)));
    let ev = r.tick(now + secs(30));
    assert_eq!(aborts(&ev).len(), 1);
    assert!(r.is_idle());
}

#[test]
fn case_23b_maglumi_simplified_envelope() {
    let now = t0();
    let config = Config { style: Style::Simplified, ..Config::default() };
    let mut r = Receiver::new(config.clone());
    assert_eq!(sent(&r.feed(&[ENQ], now)), [ACK]);
    let mut body = vec![STX];
    body.extend_from_slice(MAGLUMI.as_bytes());
    body.push(ETX);
    let ev = r.feed(&body, now);
    assert!(sent(&ev).is_empty(), "the ETX's ACK waits for the commit");
    let id = ids(&ev)[0];
    assert_eq!(texts(&ev), [MAGLUMI.as_bytes()]);
    assert_eq!(sent(&r.committed(id, now)), [ACK]);
    assert_eq!(sent(&r.feed(&[EOT], now)), [ACK]);
    assert!(r.is_idle());
    // Coalesced (EOT before the commit): both ACKs after the commit.
    let mut r = Receiver::new(config);
    let wire = [vec![ENQ], body.clone(), vec![EOT]].concat();
    let ev = r.feed(&wire, now);
    assert_eq!(sent(&ev), [ACK]);
    let ev = r.committed(ids(&ev)[0], now);
    assert_eq!(sent(&ev), [ACK, ACK]);
    assert!(r.is_idle());
    let rs = results(MAGLUMI.as_bytes());
    assert_eq!((rs[0].sample_id.as_deref(), rs[0].value.as_deref()), (Some("25059232"), Some("1.58")));
}

#[test]
fn case_23c_long_lived_connection_with_idle_gaps() {
    let start = t0();
    let mut r = Receiver::default();
    let mut now = start;
    let mut got = Vec::new();
    for i in 0..5 {
        assert!(r.next_deadline().is_none(), "no idle timer between sessions");
        assert!(r.tick(now).is_empty());
        let ev = run(&mut r, &session(&encode_frames(&mmtt(&format!("S{i}")), 40)), now, 13, true);
        assert!(aborts(&ev).is_empty());
        got.extend(texts(&ev));
        now += secs(90);
    }
    assert_eq!(got, (0..5).map(|i| mmtt(&format!("S{i}"))).collect::<Vec<_>>());
}

#[test]
fn case_24_contention_the_instrument_has_priority() {
    let now = t0();
    // Receiving, the instrument's ENQ is answered (ACK) and its message taken.
    let mut r = Receiver::default();
    assert_eq!(sent(&r.feed(&[ENQ], now)), [ACK]);
    // Sending (`simulate`): our ENQ meets the other side's ENQ: we stop, and do
    // not bid again for 20 s.
    let mut s = Sender::new(&[mmtt("S24")], SenderConfig::default());
    assert_eq!(actions_sent(&s.start(now)), [ENQ]);
    assert!(s.feed(&[ENQ], now).is_empty(), "no reply, no bid");
    assert_eq!(s.next_deadline(), Some(now + secs(20)));
    assert!(s.tick(now + secs(19)).is_empty());
    assert_eq!(actions_sent(&s.tick(now + secs(20))), [ENQ]);
}

// ---------------------------------------------------------------- commit hand-shake

#[test]
fn final_ack_only_after_commit_and_reject_makes_the_sender_retry() {
    let now = t0();
    let frames = encode_frames(E411.as_bytes(), 240);
    let mut r = in_session(Config::default(), now);
    r.feed(&frames[0], now);
    let ev = r.feed(&frames[1], now);
    assert!(sent(&ev).is_empty());
    let first = ids(&ev)[0];
    // A retransmission of the final frame while the commit is pending: no reply.
    let ev = r.feed(&frames[1], now + secs(5));
    assert!(sent(&ev).is_empty() && texts(&ev).is_empty());
    // Rejected: NAK; the retransmission makes a new message.
    assert_eq!(sent(&r.rejected(first, now)), [NAK]);
    let ev = r.feed(&frames[1], now);
    assert_eq!(texts(&ev), [E411.as_bytes()]);
    let second = ids(&ev)[0];
    assert_ne!(first, second);
    assert_eq!(sent(&r.committed(second, now)), [ACK]);
    assert!(warnings(&r.committed(second, now)).len() == 1, "once only");

    // EOT while the commit is pending (the sender timed out): the ACK is never sent.
    let mut r = in_session(Config::default(), now);
    r.feed(&frames[0], now);
    let id = ids(&r.feed(&frames[1], now))[0];
    assert!(sent(&r.feed(&[EOT], now)).is_empty());
    assert!(r.is_idle());
    let ev = r.committed(id, now);
    assert!(sent(&ev).is_empty());
    assert_eq!(warnings(&ev).len(), 1);

    // Another frame while the commit is pending: the sender did not wait; the
    // session is abandoned without that ACK.
    let mut r = in_session(Config::default(), now);
    let id = ids(&r.feed(&encode_frame(1, &mmtt("P1"), FrameEnd::Last), now))[0];
    let ev = r.feed(&encode_frame(2, &mmtt("P2"), FrameEnd::Last), now);
    assert!(sent(&ev).is_empty());
    assert!(r.is_idle());
    assert!(sent(&r.committed(id, now)).is_empty());

    // Busy: ENQ answered NAK.
    let mut r = Receiver::default();
    r.set_busy(true);
    assert_eq!(sent(&r.feed(&[ENQ], now)), [NAK]);
    r.set_busy(false);
    assert_eq!(sent(&r.feed(&[ENQ], now)), [ACK]);
}

#[test]
fn an_stx_inside_a_frame_makes_the_next_frame_suspect() {
    let now = t0();
    // A text byte corrupted into STX: what follows could verify by chance.
    // Build exactly that: the tail after the STX is a valid frame on its own.
    let tail = encode_frame(2, b"R|1|^^^GLU|95\r", FrameEnd::Intermediate);
    let mut wire = vec![STX, b'1', b'H', b'|'];
    wire.extend_from_slice(&tail);
    let mut r = in_session(Config::default(), now);
    r.feed(&encode_frame(1, b"H|\\^&\r", FrameEnd::Intermediate), now);
    let ev = r.feed(&wire, now);
    assert_eq!(sent(&ev), [NAK], "one reply for the one frame the sender sent");
}

// ---------------------------------------------------------------- loopback

fn actions_sent(actions: &[Action]) -> Vec<u8> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(b) => Some(b.clone()),
            Action::Done(_) => None,
        })
        .flatten()
        .collect()
}

/// What the line between sender and receiver does wrong.
#[derive(Debug, Clone, Default)]
struct Line {
    /// XOR this mask into the sender's n-th byte.
    corrupt: Option<(usize, u8)>,
    /// Lose the receiver's n-th byte.
    drop_reply: Option<usize>,
    /// Turn the receiver's n-th byte ACK ↔ NAK.
    flip_reply: Option<usize>,
    /// Read sizes, cycled.
    chunks: Vec<usize>,
    /// Reject the first commit of these message ordinals (0-based).
    reject: Vec<usize>,
}

struct Loop {
    report: Option<Report>,
    delivered: Vec<Vec<u8>>,
    events: Vec<Event>,
}

fn loopback(messages: &[Vec<u8>], line: &Line, config: SenderConfig) -> Loop {
    let mut now = t0();
    let mut s = Sender::new(messages, config);
    let mut r = Receiver::default();
    let (mut s2r, mut r2s) = (VecDeque::new(), VecDeque::new());
    let (mut s_count, mut r_count, mut reads) = (0usize, 0usize, 0usize);
    let mut rejected = Vec::new();
    let mut out = Loop { report: None, delivered: Vec::new(), events: Vec::new() };
    let to_line = |bytes: Vec<u8>, q: &mut VecDeque<u8>, count: &mut usize| {
        for b in bytes {
            let b = match line.corrupt {
                Some((n, mask)) if n == *count => b ^ mask,
                _ => b,
            };
            *count += 1;
            q.push_back(b);
        }
    };
    let to_sender = |bytes: Vec<u8>, q: &mut VecDeque<u8>, count: &mut usize| {
        for b in bytes {
            let n = *count;
            *count += 1;
            if line.drop_reply == Some(n) {
                continue;
            }
            let b = match (line.flip_reply == Some(n), b) {
                (true, ACK) => NAK,
                (true, NAK) => ACK,
                _ => b,
            };
            q.push_back(b);
        }
    };
    let mut take = |q: &mut VecDeque<u8>| {
        let n = line.chunks.get(reads % line.chunks.len().max(1)).copied().unwrap_or(usize::MAX).max(1);
        reads += 1;
        q.drain(..n.min(q.len())).collect::<Vec<u8>>()
    };
    for a in s.start(now) {
        if let Action::Send(b) = a {
            to_line(b, &mut s2r, &mut s_count);
        }
    }
    for _ in 0..100_000 {
        if !s2r.is_empty() {
            let chunk = take(&mut s2r);
            let ev = r.feed(&chunk, now);
            for e in ev {
                match &e {
                    Event::Send(b) => to_sender(b.clone(), &mut r2s, &mut r_count),
                    Event::Message { id, text, .. } => {
                        let ordinal = out.delivered.len();
                        let reply = if line.reject.contains(&ordinal) && !rejected.contains(&ordinal) {
                            rejected.push(ordinal);
                            r.rejected(*id, now)
                        } else {
                            out.delivered.push(text.clone());
                            r.committed(*id, now)
                        };
                        for e in reply {
                            if let Event::Send(b) = &e {
                                to_sender(b.clone(), &mut r2s, &mut r_count);
                            }
                            out.events.push(e);
                        }
                    }
                    _ => {}
                }
                out.events.push(e);
            }
        } else if !r2s.is_empty() {
            let chunk = take(&mut r2s);
            for a in s.feed(&chunk, now) {
                match a {
                    Action::Send(b) => to_line(b, &mut s2r, &mut s_count),
                    Action::Done(rep) => out.report = Some(rep),
                }
            }
        } else {
            let next = [s.next_deadline(), r.next_deadline()].into_iter().flatten().min();
            let Some(next) = next else { break };
            now = now.max(next);
            out.events.extend(r.tick(now));
            for a in s.tick(now) {
                match a {
                    Action::Send(b) => to_line(b, &mut s2r, &mut s_count),
                    Action::Done(rep) => out.report = Some(rep),
                }
            }
        }
    }
    assert!(s.is_done() && r.is_idle(), "both sides end");
    out
}

#[test]
fn loopback_clean_line_delivers_everything_once() {
    let messages = vec![E411.as_bytes().to_vec(), MINDRAY.as_bytes().to_vec(), mmtt("LOOP"), H7600.as_bytes().to_vec()];
    let out = loopback(&messages, &Line { chunks: vec![1, 3, 500], ..Line::default() }, SenderConfig::default());
    assert_eq!(out.delivered, messages);
    let report = out.report.expect("report");
    assert_eq!(report.outcome, Outcome::Delivered);
    assert_eq!((report.messages_delivered, report.naks, report.retransmissions), (4, 0, 0));
    assert!(aborts(&out.events).is_empty());
}

#[test]
fn loopback_corruption_lost_ack_and_rejected_commit() {
    let messages = vec![E411.as_bytes().to_vec(), mmtt("X")];
    // A corrupted text byte: NAK, retransmission, delivered once.
    let out = loopback(&messages, &Line { corrupt: Some((100, 0x20)), ..Line::default() }, SenderConfig::default());
    assert_eq!(out.delivered, messages);
    let report = out.report.expect("report");
    assert_eq!((report.outcome, report.naks, report.retransmissions), (Outcome::Delivered, 1, 1));
    // An ACK read as NAK: the frame comes again, is ACKed, not used twice.
    let out = loopback(&messages, &Line { flip_reply: Some(1), ..Line::default() }, SenderConfig::default());
    assert_eq!(out.delivered, messages);
    assert!(warnings(&out.events).iter().any(|w| w.contains("not used twice")));
    // A lost ACK: the sender times out and ends; what was committed stays, once.
    let out = loopback(&messages, &Line { drop_reply: Some(2), ..Line::default() }, SenderConfig::default());
    let report = out.report.expect("report");
    assert!(matches!(report.outcome, Outcome::Aborted(_)));
    assert_eq!(out.delivered, messages[..report.messages_delivered + 1].to_vec());
    // A commit that fails: NAK, the sender retransmits, the second commit succeeds.
    let out = loopback(&messages, &Line { reject: vec![0], ..Line::default() }, SenderConfig::default());
    assert_eq!(out.delivered, messages);
    assert_eq!(out.report.map(|r| r.naks), Some(1));
}

fn record_text() -> impl Strategy<Value = Vec<u8>> {
    // Field text without restricted bytes or CR, 8-bit included.
    proptest::collection::vec(
        prop_oneof![Just(b'|'), Just(b'^'), b'0'..=b'9', b'A'..=b'Z', 0x20u8..=0x7E, 0x80u8..=0xFF],
        0..120,
    )
}

fn message() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(record_text(), 0..6).prop_map(|records| {
        let mut text = b"H|\\^&|||PROP\r".to_vec();
        for r in records {
            text.extend_from_slice(b"R|");
            text.extend(r.into_iter().filter(|b| !matches!(b, 0x0D)));
            text.push(CR);
        }
        text.extend_from_slice(b"L|1|N\r");
        text
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever one fault the line makes, messages arrive intact, in order,
    /// once, and everything the sender was told was delivered was delivered.
    #[test]
    fn loopback_with_one_fault(
        messages in proptest::collection::vec(message(), 1..4),
        max_text in prop_oneof![Just(240usize), 1usize..60],
        fault in 0u8..5,
        at in 0usize..2000,
        mask in 1u8..=255,
        chunks in proptest::collection::vec(1usize..300, 1..5),
    ) {
        // One fault at a time: two can defeat E1381 itself (a NAK read as
        // ACK loses the frame on any implementation).
        let mut line = Line { chunks, ..Line::default() };
        match fault {
            1 => line.corrupt = Some((at, mask)),
            2 => line.drop_reply = Some(at % 40),
            3 => line.flip_reply = Some(at % 40),
            4 => line.reject = vec![at % 4],
            _ => {}
        }
        let config = SenderConfig { max_text_len: max_text, ..SenderConfig::default() };
        let out = loopback(&messages, &line, config);
        let report = out.report.expect("the sender reports");
        let k = out.delivered.len();
        prop_assert!(k <= messages.len());
        prop_assert_eq!(&out.delivered[..], &messages[..k], "a prefix, intact, once");
        prop_assert!(k >= report.messages_delivered, "acknowledged means stored");
        if fault == 0 || fault == 4 {
            prop_assert_eq!(report.outcome, Outcome::Delivered);
            prop_assert_eq!(k, messages.len());
        }
    }

    /// Any bytes, any chunking: no panic, and the same events.
    #[test]
    fn any_bytes_any_chunking_same_events(
        bytes in proptest::collection::vec(prop_oneof![
            Just(STX), Just(ETX), Just(ETB), Just(ENQ), Just(EOT), Just(CR), Just(LF), Just(ACK), Just(NAK),
            b'0'..=b'9', b'A'..=b'F', any::<u8>()
        ], 0..600),
        cut in 1usize..50,
        style in 0u8..3,
    ) {
        let style = [Style::Framed, Style::Simplified, Style::Unframed][style as usize];
        let config = Config { style, max_frame_text: 64, max_message_bytes: 256, ..Config::default() };
        let now = t0();
        let whole = Receiver::new(config.clone()).feed(&bytes, now);
        let mut r = Receiver::new(config);
        let mut pieces = Vec::new();
        for piece in bytes.chunks(cut) {
            pieces.extend(r.feed(piece, now));
        }
        prop_assert_eq!(&pieces, &whole);
        // And commits, rejects and timers on top never panic.
        for id in ids(&pieces) {
            let _ = if id.0 % 2 == 0 { r.committed(id, now) } else { r.rejected(id, now) };
        }
        let _ = r.tick(now + secs(3600));
        prop_assert!(r.next_deadline().is_none() || !r.is_idle());
    }

    /// Framed sessions with random frame sizes and read sizes give the text back.
    #[test]
    fn framed_text_round_trips(text in message(), max in 1usize..300, cut in 1usize..400) {
        let now = t0();
        let ev = run(&mut Receiver::default(), &session(&encode_frames(&text, max)), now, cut, true);
        prop_assert_eq!(texts(&ev), vec![text]);
        prop_assert!(aborts(&ev).is_empty());
    }
}
