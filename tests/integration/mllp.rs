//! HL7 acknowledgements and the sans-IO MLLP receiving session: ACK
//! construction from the original's MSH, AE/AR with escaped ERR text,
//! framing edge cases under any chunking, in-order acknowledgement.

use labfeed::hl7::ack::{AckCode, AckError, AckMode, ErrorCode, ErrorLocation, ack, ack_mode, decide};
use labfeed::hl7::mllp_session::{MllpSession, SessionError, SessionEvent};
use labfeed::hl7::{mllp, parse_file};
use labfeed::model::{MessageOutcome, ParseOptions};
use proptest::prelude::*;

/// The synthetic MMTT result (hl7.md §7.12) with control ID `CL-1`, with
/// `enc` as MSH-2 and CR segment ends.
fn mmtt(enc: &str) -> Vec<u8> {
    let c = enc.as_bytes()[0] as char;
    let s = enc.as_bytes()[3] as char;
    [
        format!("MSH|{enc}|CENTRALLAB|CLAB{c}2.16.840.1.113883.3.9999.1{c}ISO|STUDYDB|T1D-TRIAL|20260312154500-0800||ORU{c}R01{c}ORU_R01|CL-1|P|2.5.1|||NE|NE||UNICODE UTF-8"),
        format!("PID|1||TN-04-0173{c}{c}{c}TRIAL{s}2.16.840.1.113883.3.9999.2{s}ISO{c}PI||{c}{c}{c}{c}{c}{c}S||2009|M"),
        format!("ORC|RE|V06-MMTT-T0{c}STUDY|A2603120017{c}CENTRALLAB"),
        format!("OBR|1|V06-MMTT-T0{c}STUDY|A2603120017{c}CENTRALLAB|MMTT-0{c}MMTT 0 min{c}L|||20260311081200-0800|||||||20260312090100-0800||||||||20260312154400-0800|||F"),
        format!("OBX|1|SN|1986-9{c}C peptide [Mass/volume] in Serum or Plasma{c}LN{c}CPEP{c}C-Peptide{c}L||<{c}0.02|ng/mL{c}{c}UCUM|0.8-3.5|L|||F|||20260311081200-0800|||ECLIA|E801-1{c}CENTRALLAB|20260312120500-0800"),
        format!("OBX|2|NM|2345-7{c}Glucose [Mass/volume] in Serum or Plasma{c}LN{c}GLU{c}Glucose{c}L||142|mg/dL{c}{c}UCUM|70-99|H|||F|||20260311081200-0800||||E801-1{c}CENTRALLAB|20260312121000-0800"),
        "NTE|1|L|Slight hemolysis (H-index 45); glucose may be underestimated.".to_owned(),
        format!("SPM|1|T0-173-0311{s}STUDY{c}A2603120017-01{s}CENTRALLAB||SER{c}Serum{c}HL70487|||||||P{c}Patient{c}HL70369||||||20260311081200-0800|20260312090100-0800"),
    ]
    .iter()
    .map(|seg| format!("{seg}\r"))
    .collect::<String>()
    .into_bytes()
}

fn now() -> jiff::Timestamp {
    "2026-03-12T23:45:00Z".parse().unwrap()
}

/// An ACK's segments, split at CR (the only terminator an ACK uses).
fn segments(ack: &[u8]) -> Vec<String> {
    assert!(ack.ends_with(b"\r"), "ACK must end with CR");
    assert!(!ack.contains(&b'\n'), "ACK must not use LF");
    String::from_utf8(ack.to_vec()).unwrap().split_terminator('\r').map(str::to_owned).collect()
}

fn fields(segment: &str, sep: char) -> Vec<&str> {
    segment.split(sep).collect()
}

fn outcomes(payload: &[u8]) -> Vec<MessageOutcome> {
    let mut all = Vec::new();
    parse_file(payload, &ParseOptions::default(), &mut |o| all.push(o));
    all
}

#[test]
fn mmtt_ack_swaps_sender_and_receiver_and_echoes_the_header() {
    let original = mmtt("^~\\&");
    let decision = decide(&original, &outcomes(&original));
    assert_eq!(decision.code, AckCode::Accept);
    assert_eq!(decision.error, None);
    let seg = segments(&decision.ack(&original, now(), "LF-000001"));
    assert_eq!(seg.len(), 2, "{seg:?}");
    let msh = fields(&seg[0], '|');
    assert_eq!(msh[0], "MSH");
    assert_eq!(msh[1], "^~\\&");
    assert_eq!(msh[2], "STUDYDB", "MSH-3 = original MSH-5");
    assert_eq!(msh[3], "T1D-TRIAL", "MSH-4 = original MSH-6");
    assert_eq!(msh[4], "CENTRALLAB", "MSH-5 = original MSH-3");
    assert_eq!(msh[5], "CLAB^2.16.840.1.113883.3.9999.1^ISO", "MSH-6 = original MSH-4");
    assert_eq!(msh[6], "20260312234500+0000");
    assert_eq!(msh[8], "ACK^R01^ACK");
    assert_eq!(msh[9], "LF-000001");
    assert_eq!(msh[10], "P");
    assert_eq!(msh[11], "2.5.1");
    assert_eq!(msh[17], "UNICODE UTF-8");
    assert_eq!(seg[1], "MSA|AA|CL-1");
    assert_eq!(ack_mode(&original), Some(AckMode::Enhanced), "MSH-15/16 = NE");
}

#[test]
fn ack_uses_the_originals_delimiters() {
    let original = mmtt("^!\\&");
    assert_eq!(decide(&original, &outcomes(&original)).code, AckCode::Accept);
    let error = AckError::new(ErrorCode::DataType, "bad value a|b^c&d~e!f\\g").at(ErrorLocation {
        segment: "OBX".into(),
        sequence: Some(2),
        field: Some(5),
    });
    let seg = segments(&ack(&original, AckCode::Error, Some(&error), now(), "A-2"));
    assert!(seg[0].starts_with("MSH|^!\\&|STUDYDB|T1D-TRIAL|CENTRALLAB|CLAB^2.16.840.1.113883.3.9999.1^ISO|"));
    assert_eq!(fields(&seg[0], '|')[11], "2.5.1");
    // '~' is plain text under this set; its repetition character '!' is not.
    let escaped = "bad value a\\F\\b\\S\\c\\T\\d~e\\R\\f\\E\\g";
    assert_eq!(seg[1], format!("MSA|AE|CL-1|{escaped}"));
    assert_eq!(seg[2], format!("ERR||OBX^2^5|102^Data type error^HL70357|E||||{escaped}"));

    // Another field separator too.
    let hash = String::from_utf8(mmtt("^~\\&")).unwrap().replace('|', "#").into_bytes();
    let seg = segments(&ack(&hash, AckCode::Accept, None, now(), "A-3"));
    assert!(seg[0].starts_with("MSH#^~\\&#STUDYDB#T1D-TRIAL#CENTRALLAB#"), "{}", seg[0]);
    assert_eq!(seg[1], "MSA#AA#CL-1");
}

#[test]
fn ae_escapes_every_delimiter_in_err_and_msa3() {
    let original = mmtt("^~\\&");
    let error = AckError::new(ErrorCode::RequiredFieldMissing, "OBX-3 |^&~\\ empty");
    let seg = segments(&ack(&original, AckCode::Error, Some(&error), now(), "A-4"));
    assert_eq!(seg.len(), 3);
    assert_eq!(seg[1], "MSA|AE|CL-1|OBX-3 \\F\\\\S\\\\T\\\\R\\\\E\\ empty");
    let err = fields(&seg[2], '|');
    assert_eq!(err[0], "ERR");
    assert_eq!(err[3], "101^Required field missing^HL70357");
    assert_eq!(err[4], "E");
    assert_eq!(err[8], "OBX-3 \\F\\\\S\\\\T\\\\R\\\\E\\ empty");
    // No raw delimiter survives in the text: the ERR has exactly 8 fields.
    assert_eq!(err.len(), 9);
}

#[test]
fn parse_error_gives_ae_with_location() {
    let original = String::from_utf8(mmtt("^~\\&")).unwrap().replace("||142|", "||142~143|").into_bytes();
    let decision = decide(&original, &outcomes(&original));
    assert_eq!(decision.code, AckCode::Error);
    let error = decision.error.clone().unwrap();
    assert!(error.text.starts_with("OBX-5"), "{}", error.text);
    assert_eq!(error.code, ErrorCode::DataType);
    assert_eq!(error.location, Some(ErrorLocation { segment: "OBX".into(), sequence: Some(2), field: Some(5) }));
    let seg = segments(&decision.ack(&original, now(), "A-5"));
    assert!(seg[1].starts_with("MSA|AE|CL-1|OBX-5"), "{}", seg[1]);
    assert!(seg[2].starts_with("ERR||OBX^2^5|102^"), "{}", seg[2]);
}

#[test]
fn non_hl7_payload_gets_ar_with_empty_msa2() {
    for payload in [&b"hello, this is not HL7\r\n"[..], b"", b"\x05", b"H|\\^&|||cobas\r"] {
        let decision = decide(payload, &outcomes(payload));
        assert_eq!(decision.code, AckCode::Reject, "{payload:?}");
        // Even asked for AA, a payload without an MSH gets AR.
        for code in [decision.code, AckCode::Accept] {
            let seg = segments(&ack(payload, code, decision.error.as_ref(), now(), "A-6"));
            assert_eq!(seg.len(), 3, "{seg:?}");
            assert_eq!(seg[0], "MSH|^~\\&|labfeed|labfeed|||20260312234500+0000||ACK^^ACK|A-6|P|2.5.1");
            let msa = fields(&seg[1], '|');
            assert_eq!(&msa[..3], ["MSA", "AR", ""]);
            assert!(msa[3].starts_with("not an HL7 message"), "{}", msa[3]);
            assert!(seg[2].starts_with("ERR|||100^Segment sequence error^HL70357|E||||not an HL7 message"));
        }
    }
}

#[test]
fn ack_of_an_ack_round_trips() {
    let original = mmtt("^!\\&");
    let built = ack(&original, AckCode::Accept, None, now(), "A-7");
    let again = ack(&built, AckCode::Accept, None, now(), "A-8");
    let seg = segments(&again);
    assert!(seg[0].starts_with("MSH|^!\\&|CENTRALLAB|CLAB^2.16.840.1.113883.3.9999.1^ISO|STUDYDB|T1D-TRIAL|"));
    assert_eq!(seg[1], "MSA|AA|A-7");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn ack_never_panics_and_stays_framable(bytes in proptest::collection::vec(any::<u8>(), 0..200), header in any::<bool>()) {
        let mut input = if header { b"MSH|^~\\&|".to_vec() } else { Vec::new() };
        input.extend_from_slice(&bytes);
        let decision = decide(&input, &outcomes(&input));
        let built = decision.ack(&input, now(), "X");
        prop_assert!(built.starts_with(b"MSH"));
        prop_assert!(built.ends_with(b"\r"));
        prop_assert!(!built.contains(&mllp::START_BLOCK) && !built.contains(&mllp::END_BLOCK));
        prop_assert!(!built.contains(&b'\n'));
        for seg in built.split(|&b| b == b'\r').filter(|s| !s.is_empty()) {
            prop_assert!(seg.starts_with(b"MSH") || seg.starts_with(b"MSA") || seg.starts_with(b"ERR"));
        }
        for code in [AckCode::Accept, AckCode::Error, AckCode::Reject] {
            let error = AckError::new(ErrorCode::ApplicationInternal, String::from_utf8_lossy(&bytes));
            let built = ack(&input, code, Some(&error), now(), &String::from_utf8_lossy(&bytes));
            prop_assert!(!built.contains(&mllp::START_BLOCK) && !built.contains(&mllp::END_BLOCK));
            prop_assert_eq!(built.iter().filter(|&&b| b == b'\r').count(), if code == AckCode::Accept && ack_mode(&input).is_some() { 2 } else { 3 });
        }
    }
}

// ---------------------------------------------------------------- session

fn framed(payload: &[u8]) -> Vec<u8> {
    mllp::encode(payload)
}

fn feed_all(session: &mut MllpSession, chunks: &[&[u8]]) -> Vec<SessionEvent> {
    let mut events: Vec<SessionEvent> = chunks.iter().flat_map(|c| session.feed(c)).collect();
    events.extend(session.finish());
    events
}

fn payloads(events: &[SessionEvent]) -> Vec<Vec<u8>> {
    events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Payload { payload, .. } => Some(payload.clone()),
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

/// A stream with every edge case: junk and a BOM before the start block, a
/// BOM after it, two frames back to back, a frame missing its CR, an
/// abandoned frame, line ends between frames.
fn awkward_stream() -> Vec<u8> {
    let mut s = b"garbage\xEF\xBB\xBF".to_vec();
    s.extend(framed(&mmtt("^~\\&")));
    s.extend(b"\r\n");
    s.push(mllp::START_BLOCK);
    s.extend(b"\xEF\xBB\xBFMSH|^~\\&|B||||||ORU^R01|CL-2|P|2.5.1\r");
    s.push(mllp::END_BLOCK); // no CR
    s.extend(b"\x0bMSH|^~\\&|abandoned");
    s.extend(framed(b"MSH|^~\\&|C||||||ORU^R01|CL-3|P|2.5.1\r"));
    s
}

#[test]
fn byte_by_byte_and_coalesced_reads_give_the_same_events() {
    let stream = awkward_stream();
    let whole = feed_all(&mut MllpSession::default(), &[&stream]);
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    let single = feed_all(&mut MllpSession::default(), &bytes);
    assert_eq!(whole, single);
    let got = payloads(&whole);
    assert_eq!(got.len(), 3);
    assert_eq!(got[0], mmtt("^~\\&"));
    assert!(got[1].starts_with(b"\xEF\xBB\xBFMSH|"), "BOM after VT kept in the payload");
    assert!(got[2].starts_with(b"MSH|^~\\&|C|"));
    let w = warnings(&whole);
    assert_eq!(w.len(), 4, "{w:?}");
    assert_eq!(w[0], "10 bytes outside any MLLP frame discarded");
    assert_eq!(w[1], "MLLP end block 0x1C not followed by CR (tolerated)");
    assert!(w[2].starts_with("MLLP frame not closed (no 0x1C) before the next start block: 18 bytes dropped"));
    assert_eq!(w[3], "connection ended with 3 message(s) not acknowledged");
    // The BOM-prefixed payload is still acknowledged against its MSH.
    let seg = segments(&ack(&got[1], AckCode::Accept, None, now(), "A"));
    assert_eq!(seg[1], "MSA|AA|CL-2");
    // Ids are consecutive in arrival order; raw is the frame VT..FS.
    let ids: Vec<u64> = whole
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Payload { id, raw, payload } => {
                assert_eq!(raw.first(), Some(&mllp::START_BLOCK));
                assert_eq!(raw.last(), Some(&mllp::END_BLOCK));
                assert_eq!(&raw[1..raw.len() - 1], &payload[..]);
                Some(*id)
            }
            _ => None,
        })
        .collect();
    assert_eq!(ids, [1, 2, 3]);
}

#[test]
fn two_frames_in_one_read() {
    let mut stream = framed(b"MSH|^~\\&|A||||||ORU^R01|1|P|2.5.1\r");
    stream.extend(framed(b"MSH|^~\\&|B||||||ORU^R01|2|P|2.5.1\r"));
    let mut s = MllpSession::default();
    let events = s.feed(&stream);
    assert_eq!(payloads(&events).len(), 2);
    assert!(warnings(&events).is_empty());
    assert_eq!(s.outstanding(), 2);
}

#[test]
fn frame_missing_its_final_cr_is_delivered_without_waiting() {
    let mut s = MllpSession::default();
    let events = s.feed(b"\x0bMSH|^~\\&|A||||||ORU^R01|1|P|2.5.1\r\x1c");
    assert_eq!(payloads(&events).len(), 1, "a sender that omits the CR and waits must get its ACK");
    let out = s.acknowledge(1, b"MSA|AA|1\r".to_vec()).unwrap();
    assert_eq!(out, b"\x0bMSA|AA|1\r\x1c\r");
}

#[test]
fn oversize_frame_is_refused_and_the_next_frame_still_received() {
    let mut s = MllpSession::new(1024);
    let mut big = b"MSH|^~\\&|BIG||||||ORU^R01|BIG-1|P|2.5.1\rOBX|1|ED|PDF||".to_vec();
    big.extend(std::iter::repeat_n(b'A', 200_000));
    big.push(b'\r');
    let mut stream = framed(&big);
    stream.extend(framed(&mmtt("^~\\&")));
    let mut events = Vec::new();
    for chunk in stream.chunks(4096) {
        events.extend(s.feed(chunk));
    }
    let (id, head, size, error) = events
        .iter()
        .find_map(|e| match e {
            SessionEvent::Refused { id, head, size, error } => Some((*id, head.clone(), *size, error.clone())),
            _ => None,
        })
        .expect("refused");
    assert_eq!(id, 1);
    assert_eq!(size, big.len() as u64);
    assert!(head.len() <= 8 * 1024, "the oversize payload is not buffered");
    assert_eq!(payloads(&events), [mmtt("^~\\&")]);
    // The AR echoes the refused message's control ID and goes out first.
    let ar = ack(&head, AckCode::Reject, Some(&error), now(), "A-9");
    let seg = segments(&ar);
    assert!(seg[1].starts_with("MSA|AR|BIG-1|message of 200055 bytes exceeds the 1024-byte limit"), "{}", seg[1]);
    assert_eq!(s.acknowledge(2, b"MSA|AA|CL-1\r".to_vec()), Ok(Vec::new()));
    let out = s.acknowledge(id, ar.clone()).unwrap();
    let mut expected = mllp::encode(&ar);
    expected.extend(mllp::encode(b"MSA|AA|CL-1\r"));
    assert_eq!(out, expected);
}

#[test]
fn pipelined_payloads_are_acknowledged_in_order() {
    let mut stream = Vec::new();
    for n in 1..=3 {
        stream.extend(framed(format!("MSH|^~\\&|A||||||ORU^R01|M{n}|P|2.5.1\r").as_bytes()));
    }
    let mut s = MllpSession::default();
    let events = s.feed(&stream);
    let got = payloads(&events);
    assert_eq!(got.len(), 3);
    let acks: Vec<Vec<u8>> =
        got.iter().enumerate().map(|(i, p)| ack(p, AckCode::Accept, None, now(), &format!("A{i}"))).collect();
    // Commits finish out of order: 3, then 1, then 2.
    assert_eq!(s.acknowledge(3, acks[2].clone()), Ok(Vec::new()));
    let first = s.acknowledge(1, acks[0].clone()).unwrap();
    assert_eq!(first, mllp::encode(&acks[0]));
    let rest = s.acknowledge(2, acks[1].clone()).unwrap();
    let mut expected = mllp::encode(&acks[1]);
    expected.extend(mllp::encode(&acks[2]));
    assert_eq!(rest, expected);
    assert_eq!(s.outstanding(), 0);
    assert_eq!(s.acknowledge(2, acks[1].clone()), Err(SessionError::AlreadyAcknowledged(2)));
    assert_eq!(s.acknowledge(9, acks[1].clone()), Err(SessionError::UnknownId(9)));
    // What went out reads back as three frames, each MSA naming its message.
    let mut wire = first;
    wire.extend(rest);
    let msas: Vec<String> = mllp::frames(&wire)
        .map(|f| {
            assert_eq!(f.end, mllp::FrameEnd::Complete);
            segments(&wire[f.payload])[1].clone()
        })
        .collect();
    assert_eq!(msas, ["MSA|AA|M1", "MSA|AA|M2", "MSA|AA|M3"]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_chunking_gives_the_same_events(cuts in proptest::collection::vec(0usize..2000, 0..20)) {
        let stream = awkward_stream();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut from = 0;
        for c in cuts {
            chunks.push(&stream[from..c]);
            from = c;
        }
        chunks.push(&stream[from..]);
        let expected = feed_all(&mut MllpSession::default(), &[&stream]);
        prop_assert_eq!(feed_all(&mut MllpSession::default(), &chunks), expected);
    }

    #[test]
    fn session_never_panics_and_stays_bounded(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut s = MllpSession::new(64);
        for chunk in bytes.chunks(7) {
            for event in s.feed(chunk) {
                match event {
                    SessionEvent::Payload { payload, .. } => prop_assert!(payload.len() <= 64),
                    SessionEvent::Refused { head, .. } => prop_assert!(head.len() <= 8 * 1024),
                    SessionEvent::Warning { .. } => {}
                }
            }
        }
        s.finish();
    }
}
