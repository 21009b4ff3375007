//! Finding the personal data in a received file, so the stored copy can be
//! masked: names, identifiers other than study codes, addresses, phone
//! numbers and dates of birth (ASTM P and Q, HL7 PID and every segment
//! labfeed does not read, ASTM M and S records), comment free text (HL7 NTE,
//! ASTM C) and the values of results that map to no test, unless the
//! instrument keeps comments, lines that the parser would not take as a
//! record or segment (a PID wrapped onto a new line, a patient list dropped
//! by mistake), and all but the structure of a message that failed to parse.
//!
//! Works on the raw bytes, framing included: spans are byte ranges of the
//! file, so the masked copy keeps every offset. The parsers are not used
//! here on purpose: masking must also cover messages that fail to parse.

use std::ops::Range;

use crate::model::{Format, UTF8_BOM};
use crate::store::PersonalField;
use crate::study::config::Config;
use crate::study::matching::resolve_instrument;

/// What is kept of a patient record; every other field is masked (names,
/// dates of birth, addresses, phone numbers, and any identifier that is not a
/// study code). Masking by what is kept, not by what is known to be personal,
/// also covers vendors who put data in unexpected fields.
///
/// ASTM P (type letter = field 1): P.1 record type, P.2 sequence, P.9 sex;
/// of P.3–P.5 (patient IDs) only the first component of the first
/// repetition that is a study participant code (the parsers give every
/// repetition, and matching takes the participant among them).
const ASTM_P_KEPT: &[usize] = &[1, 2, 9];
const ASTM_P_IDS: &[usize] = &[3, 4, 5];
/// HL7 PID (segment ID = field 0): PID-1 set ID, PID-8 sex; of PID-2–PID-4
/// only the study code, as in P.3.
const HL7_PID_KEPT: &[usize] = &[0, 1, 8];
const HL7_PID_IDS: &[usize] = &[2, 3, 4];
/// ASTM Q (query): Q.1 type, Q.2 sequence, Q.5 test, Q.6–Q.8 time limits and
/// dates, Q.13 status; of Q.3–Q.4 (patient ID ^ specimen ID ranges) only a
/// leading study code, as in P.3. Physician, phone and user fields are masked.
const ASTM_Q_KEPT: &[usize] = &[1, 2, 5, 6, 7, 8, 13];
const ASTM_Q_IDS: &[usize] = &[3, 4];
/// People and free text in the records and segments that are otherwise
/// kept (labfeed reads none of these fields): ASTM O.11 collector, O.14
/// clinical information, O.17–O.18 ordering physician and phone, R.11
/// operator, H.4 password; HL7 ORC-10–12, 14, 19, 24 (staff, call-back phone, provider
/// address), OBR-10, 13, 16, 17, 28, 32–35 (collector, clinical information,
/// ordering provider, phone, copies to, interpreters, technician,
/// transcriptionist), SPM-14 (description).
const ASTM_O_PERSONAL: &[usize] = &[11, 14, 17, 18];
const ASTM_R_PERSONAL: &[usize] = &[11];
const HL7_ORC_PERSONAL: &[usize] = &[10, 11, 12, 14, 19, 24];
const HL7_OBR_PERSONAL: &[usize] = &[10, 13, 16, 17, 28, 32, 33, 34, 35];
/// OBX keeps what labfeed reads and what describes the measurement (set
/// ID, type, test, sub-ID, value (see `Scan::hl7`), units, range, flags,
/// probability, status, dates, method, equipment, site, instance, mood);
/// every other field is masked: OBX-10 nature of abnormal test, OBX-13
/// access checks, OBX-15 producer, OBX-16 observer, OBX-23–25 performing
/// organisation, address and director, and any field after them.
const HL7_OBX_KEPT: &[usize] = &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 14, 17, 18, 19, 20, 21, 22];
const HL7_SPM_PERSONAL: &[usize] = &[14];
/// HL7 segments kept (but for the fields above; MSH, FHS, BHS, PID, NTE and
/// OBX have their own rules): the ones labfeed reads or that carry orders,
/// specimens and acknowledgements. Every other segment (NK1, PV1, PV2, PD1,
/// GT1, IN1, IN2, MRG, AL1, DG1, Z segments…) is masked but for its ID and
/// a set ID: a whitelist, so a segment nobody foresaw is masked too.
const HL7_READ: &[&[u8]] =
    &[b"ORC", b"OBR", b"SPM", b"TQ1", b"TQ2", b"TCD", b"SID", b"SAC", b"MSA", b"ERR", b"BTS", b"FTS"];
/// Comments: ASTM C.1 type, C.2 sequence, C.3 source, C.5 comment type;
/// HL7 NTE-1 set ID, NTE-2 source. The text (C.4, NTE-3…) is masked.
const ASTM_C_KEPT: &[usize] = &[1, 2, 3, 5];
const HL7_NTE_KEPT: &[usize] = &[0, 1, 2];

/// What masking needs to know about the study.
pub trait Policy {
    /// Whether `id` is one of the study's participant codes (kept).
    fn is_study_code(&self, id: &str) -> bool;
    /// Whether comment free text and values of unmapped tests from `sender`
    /// are kept (`keep_comments`); an unknown sender's are masked.
    fn keeps_comments(&self, sender: Option<&str>) -> bool;
    /// Whether `test` is mapped to an analyte for `sender`'s instrument.
    fn maps_test(&self, sender: Option<&str>, test: &str) -> bool;
}

/// The policy of a configured study. `instrument` is the link's instrument
/// (authoritative), `None` for files, whose sender field decides.
pub struct StudyPolicy<'a> {
    pub config: &'a Config,
    pub instrument: Option<&'a str>,
    pub is_study_code: &'a dyn Fn(&str) -> bool,
}

impl Policy for StudyPolicy<'_> {
    fn is_study_code(&self, id: &str) -> bool {
        (self.is_study_code)(id)
    }

    fn keeps_comments(&self, sender: Option<&str>) -> bool {
        resolve_instrument(self.config, self.instrument, sender).is_some_and(|i| i.keep_comments)
    }

    fn maps_test(&self, sender: Option<&str>, test: &str) -> bool {
        resolve_instrument(self.config, self.instrument, sender).is_some_and(|i| i.tests.contains_key(test))
    }
}

/// The personal-data fields of `bytes` under `policy`. `failed` are the
/// byte ranges of the messages that failed to parse: those keep only their
/// structure (segment IDs, record types, delimiters), since what broke them
/// may have moved anything into any field.
pub fn personal_fields(bytes: &[u8], policy: &dyn Policy, failed: &[Range<usize>]) -> Vec<PersonalField> {
    let mut found = Vec::new();
    let in_failed = |at: usize| failed.iter().any(|span| span.contains(&at));
    if is_framed(bytes) {
        let (text, map) = crate::astm::frame::joined_texts(bytes);
        let file_offset = |at: usize| {
            map.iter()
                .find(|&&(start, _, len)| (start..start + len).contains(&at))
                .map(|&(start, file, _)| file + at - start)
        };
        for (name, span) in scan(&text, policy, &|at| file_offset(at).is_some_and(in_failed)) {
            for piece in map_span(&map, span) {
                found.push(PersonalField { field: name.clone(), span: piece });
            }
        }
        for span in outside_frames(bytes, &map) {
            found.push(PersonalField { field: "outside frames".to_owned(), span });
        }
    } else {
        for (name, span) in scan(bytes, policy, &in_failed) {
            found.push(PersonalField { field: name, span });
        }
    }
    found
}

/// Captured E1381 link bytes: link control first (after a BOM and white
/// space). Anything else is read as plain records, where a stray STX is
/// just part of a line (and cannot hide the lines before it).
fn is_framed(bytes: &[u8]) -> bool {
    crate::astm::frame::is_link_capture(bytes)
}

/// Text between frames (not framing: a run longer than a frame number or
/// a two-digit checksum), e.g. records sent without framing in between.
fn outside_frames(bytes: &[u8], map: &[(usize, usize, usize)]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut from = 0;
    let gaps = map.iter().map(|&(_, start, len)| (start, start + len)).chain([(bytes.len(), bytes.len())]);
    for (start, end) in gaps {
        let mut run = from;
        for at in from..start.max(from) {
            let printable = bytes.get(at).is_some_and(|&b| b >= 0x20 && b != 0x7F);
            if !printable {
                if at - run > 2 {
                    out.push(run..at);
                }
                run = at + 1;
            }
        }
        if start.max(from) - run > 2 {
            out.push(run..start.max(from));
        }
        from = end.max(from);
    }
    out
}

/// Map a range of the joined text back to file ranges (one per frame it touches).
fn map_span(map: &[(usize, usize, usize)], span: Range<usize>) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    for &(text_start, file_start, len) in map {
        let lo = span.start.max(text_start);
        let hi = span.end.min(text_start + len);
        if lo < hi {
            out.push(file_start + (lo - text_start)..file_start + (hi - text_start));
        }
    }
    out
}

/// Lines (records/segments) of `text` with their start offsets; CR, LF and
/// also HL7's MLLP block bytes end them.
fn lines(text: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut start = 0;
    text.split(|&b| matches!(b, b'\r' | b'\n' | 0x0B | 0x1C)).map(move |line| {
        let here = start;
        start += line.len() + 1;
        (here, line)
    })
}

/// The fields of a record split on `sep`, numbered from `first`, with
/// their ranges in the record.
fn fields(line: &[u8], sep: u8, first: usize) -> impl Iterator<Item = (usize, Range<usize>)> + '_ {
    let mut start = 0;
    line.split(move |&b| b == sep).enumerate().map(move |(i, piece)| {
        let span = start..start + piece.len();
        start += piece.len() + 1;
        (i + first, span)
    })
}

/// Delimiters used inside a field when a message declares none we can read.
const STANDARD_INNER: &[u8] = b"^~&\\!@";

/// The delimiters the current message declares (ASTM H.1–H.2, HL7
/// MSH-1–MSH-2), so the study code part is found as the parsers find it.
struct Syntax {
    field: u8,
    repetition: u8,
    component: u8,
    /// Every delimiter used inside a field: repetition, component, escape
    /// (and HL7 sub-component, truncation).
    inner: Vec<u8>,
    /// The header's delimiter field was read as delimiters (else the
    /// standard ones are assumed, and that field may be anything).
    declared: bool,
}

impl Syntax {
    /// From a header line whose field separator is `line[at]` and whose
    /// encoding characters follow it up to the next field separator (ASTM:
    /// repeat, component…; HL7: component, repetition…).
    fn declared(line: &[u8], at: usize, format: Format) -> Option<Syntax> {
        let (repetition, component, standard) = match format {
            Format::Astm => (0, 1, b'\\'),
            Format::Hl7 => (1, 0, b'~'),
        };
        let field = *line.get(at)?;
        let rest = line.get(at + 1..).unwrap_or_default();
        let declared = rest.get(..rest.iter().position(|&b| b == field).unwrap_or(rest.len())).unwrap_or_default();
        if declared.len() > component.max(repetition)
            && !declared.iter().any(|&b| b.is_ascii_alphanumeric() || b == b' ')
        {
            let pick = |i: usize, or: u8| declared.get(i).copied().unwrap_or(or);
            let (repetition, component) = (pick(repetition, standard), pick(component, b'^'));
            return Some(Syntax { field, repetition, component, inner: declared.to_vec(), declared: true });
        }
        Some(Syntax { field, repetition: standard, component: b'^', inner: STANDARD_INNER.to_vec(), declared: false })
    }

    /// The fields a header of a message that failed to parse keeps (numbered
    /// from 1): its ID and the delimiters it declares (H.2, MSH-2), when
    /// they were read as such; else only its ID.
    fn header_kept(&self) -> usize {
        if self.declared { 3 } else { 2 }
    }

    /// Where in identifier `field` the study code is: the first component
    /// of the first repetition that is one (as the parsers read each one).
    fn study_code(&self, field: &[u8], policy: &dyn Policy) -> Option<Range<usize>> {
        let mut start = 0;
        for repetition in field.split(|&b| b == self.repetition) {
            let lead = self.first_part_len(repetition);
            if policy.is_study_code(&text_of(repetition.get(..lead).unwrap_or_default())) {
                return Some(start..start + lead);
            }
            start += repetition.len() + 1;
        }
        None
    }

    /// Length of the first component of the first repetition of `field`.
    fn first_part_len(&self, field: &[u8]) -> usize {
        field.iter().position(|b| self.inner.contains(b)).unwrap_or(field.len())
    }

    /// The first component of the first repetition of `field`, trimmed.
    fn first_part<'a>(&self, field: &'a [u8]) -> &'a [u8] {
        field.get(..self.first_part_len(field)).unwrap_or_default().trim_ascii()
    }

    /// Component `n` (from 1) of the first repetition of `field`.
    fn component<'a>(&self, field: &'a [u8], n: usize) -> &'a [u8] {
        let end = field.iter().position(|b| *b != self.component && self.inner.contains(b)).unwrap_or(field.len());
        let first = field.get(..end).unwrap_or_default();
        first.split(|&b| b == self.component).nth(n.saturating_sub(1)).unwrap_or_default().trim_ascii()
    }
}

fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_owned()
}

/// Field `n` (numbered from `first`) of a record, if present.
fn field(line: &[u8], sep: u8, first: usize, n: usize) -> Option<&[u8]> {
    line.split(|&b| b == sep).nth(n.checked_sub(first)?)
}

/// Which fields of one kind of record are kept.
struct Rule<'r> {
    prefix: &'r str,
    /// Number of the record's first field (ASTM type letter 1, HL7 segment ID 0).
    first: usize,
    kept: &'r [usize],
    /// Identifier fields: their study code is kept, the rest masked.
    ids: &'r [usize],
}

/// Mask every non-empty field of `line` except the kept ones and the
/// study code of identifier fields.
fn mask_record(
    rule: &Rule<'_>,
    syntax: &Syntax,
    line: &[u8],
    offset: usize,
    policy: &dyn Policy,
    found: &mut Vec<(String, Range<usize>)>,
) {
    for (n, span) in fields(line, syntax.field, rule.first) {
        if span.is_empty() || rule.kept.contains(&n) {
            continue;
        }
        let value = line.get(span.clone()).unwrap_or_default();
        let name = || format!("{}{n}", rule.prefix);
        let code = rule.ids.contains(&n).then(|| syntax.study_code(value, policy)).flatten();
        let Some(code) = code else {
            found.push((name(), offset + span.start..offset + span.end));
            continue;
        };
        // The delimiters either side of the code stay, so the stored copy
        // still reads back with the same patient ID.
        let before = span.start..span.start + code.start.saturating_sub(1);
        let after = (span.start + code.end + 1).min(span.end)..span.end;
        for part in [before, after].into_iter().filter(|p| !p.is_empty()) {
            found.push((name(), offset + part.start..offset + part.end));
        }
    }
}

/// Every field of `line` from field `keep` on (numbered from `first`),
/// but the delimiters: a record of a kind labfeed does not read, or of a
/// message that failed to parse, keeps its ID and its structure only.
fn mask_structure(
    prefix: &str,
    syntax: &Syntax,
    line: &[u8],
    (first, keep): (usize, usize),
    offset: usize,
    found: &mut Vec<(String, Range<usize>)>,
) {
    for (n, span) in fields(line, syntax.field, first).filter(|(n, _)| *n >= keep) {
        let value = line.get(span.clone()).unwrap_or_default();
        let mut from = 0;
        for part in value.split(|b| syntax.inner.contains(b)) {
            if !part.is_empty() {
                found.push((
                    format!("{prefix}{n}"),
                    offset + span.start + from..offset + span.start + from + part.len(),
                ));
            }
            from += part.len() + 1;
        }
    }
}

/// The sender (component 1 of ASTM H.5 or HL7 MSH-3) of a header line.
fn header_sender(syntax: &Syntax, field: Option<&[u8]>) -> Option<String> {
    let sender = text_of(syntax.first_part(field?));
    (!sender.is_empty()).then_some(sender)
}

/// Where the scan is: the current message's delimiters and sender once its
/// header has been seen, and what was found so far.
struct Scan<'p> {
    policy: &'p dyn Policy,
    syntax: Option<Syntax>,
    sender: Option<String>,
    /// The current line belongs to a message that failed to parse.
    failed: bool,
    found: Vec<(String, Range<usize>)>,
}

impl Scan<'_> {
    fn keeps_comments(&self) -> bool {
        self.policy.keeps_comments(self.sender.as_deref())
    }

    /// Whether `test` maps to a configured test. The value of a test that
    /// maps to nothing is not kept: it cannot be told from an identifier
    /// (`198003151234` is a number too).
    fn maps(&self, test: &[u8]) -> bool {
        let test = text_of(test);
        !test.is_empty() && self.policy.maps_test(self.sender.as_deref(), &test)
    }

    fn whole(&mut self, offset: usize, line: &[u8]) {
        self.found.push(("line".to_owned(), offset..offset + line.len()));
    }

    /// One ASTM line: a record only when its type letter is one the parser
    /// reads and the message's field separator follows; else masked whole.
    fn astm(&mut self, offset: usize, line: &[u8]) {
        if is_header(Some(Format::Astm), line) {
            let syntax = Syntax::declared(line, 1, Format::Astm);
            if let Some(syntax) = &syntax {
                self.sender = header_sender(syntax, field(line, syntax.field, 1, 5));
                if self.failed {
                    mask_structure("H.", syntax, line, (1, syntax.header_kept()), offset, &mut self.found);
                } else {
                    // H.4: the access password.
                    self.fields_of(line, syntax, 1, "H.", &[4], offset);
                }
            }
            self.syntax = syntax;
            return;
        }
        let Some(syntax) = self.syntax.take() else { return self.whole(offset, line) };
        let kind = match line {
            [kind] => kind.to_ascii_uppercase(),
            [kind, sep, ..] if *sep == syntax.field => kind.to_ascii_uppercase(),
            _ => 0,
        };
        if self.failed && kind.is_ascii_alphabetic() {
            let prefix = format!("{}.", char::from(kind));
            mask_structure(&prefix, &syntax, line, (1, 2), offset, &mut self.found);
            self.syntax = Some(syntax);
            return;
        }
        let rule = |prefix, kept, ids| Rule { prefix, first: 1, kept, ids };
        match kind {
            b'P' => {
                mask_record(&rule("P.", ASTM_P_KEPT, ASTM_P_IDS), &syntax, line, offset, self.policy, &mut self.found)
            }
            b'Q' => {
                mask_record(&rule("Q.", ASTM_Q_KEPT, ASTM_Q_IDS), &syntax, line, offset, self.policy, &mut self.found)
            }
            b'C' if !self.keeps_comments() => {
                mask_record(&rule("C.", ASTM_C_KEPT, &[]), &syntax, line, offset, self.policy, &mut self.found)
            }
            b'R' => {
                // The parser's test code: R.3 component 1, else component 4.
                let id = field(line, syntax.field, 1, 3).unwrap_or_default();
                let first = syntax.component(id, 1);
                let test = if first.is_empty() { syntax.component(id, 4) } else { first };
                if !self.keeps_comments() && !self.maps(test) {
                    self.value(line, &syntax, 1, 4, "R.4", offset);
                }
                self.fields_of(line, &syntax, 1, "R.", ASTM_R_PERSONAL, offset);
            }
            b'O' => self.fields_of(line, &syntax, 1, "O.", ASTM_O_PERSONAL, offset),
            b'C' | b'L' => {}
            // Manufacturer (M), scientific (S) and unknown records: labfeed
            // reads none of them and their layout is anyone's.
            kind if kind.is_ascii_alphabetic() => {
                let prefix = format!("{}.", char::from(kind));
                mask_structure(&prefix, &syntax, line, (1, 2), offset, &mut self.found);
            }
            _ => self.whole(offset, line),
        }
        self.syntax = Some(syntax);
    }

    /// One HL7 line: a segment only when the parser would take it as one
    /// (`[A-Z][A-Z0-9]{2}` and the message's field separator); else masked
    /// whole. Segments labfeed does not read are masked but for a set ID.
    fn hl7(&mut self, offset: usize, line: &[u8]) {
        if is_header(Some(Format::Hl7), line) {
            let syntax = Syntax::declared(line, 3, Format::Hl7);
            if let Some(syntax) = &syntax {
                let prefix = format!("{}.", String::from_utf8_lossy(line.get(..3).unwrap_or_default()));
                if self.failed {
                    mask_structure(&prefix, syntax, line, (1, syntax.header_kept()), offset, &mut self.found);
                }
                if line.starts_with(b"MSH") {
                    self.sender = header_sender(syntax, field(line, syntax.field, 1, 3));
                } else if !self.failed {
                    // FHS-10 / BHS-10: the file's or batch's comment.
                    self.fields_of(line, syntax, 1, &prefix, &[10], offset);
                }
            }
            self.syntax = syntax;
            return;
        }
        let Some(syntax) = self.syntax.take() else { return self.whole(offset, line) };
        let Some(id) = crate::hl7::segment::valid_id(line, syntax.field) else {
            self.whole(offset, line);
            self.syntax = Some(syntax);
            return;
        };
        let prefix = format!("{}.", String::from_utf8_lossy(id));
        if self.failed {
            mask_structure(&prefix, &syntax, line, (0, 1), offset, &mut self.found);
            self.syntax = Some(syntax);
            return;
        }
        let rule = |kept, ids| Rule { prefix: &prefix, first: 0, kept, ids };
        match id {
            b"PID" => {
                mask_record(&rule(HL7_PID_KEPT, HL7_PID_IDS), &syntax, line, offset, self.policy, &mut self.found)
            }
            b"NTE" if self.keeps_comments() => {}
            b"NTE" => mask_record(&rule(HL7_NTE_KEPT, &[]), &syntax, line, offset, self.policy, &mut self.found),
            b"OBX" => {
                let test = syntax.first_part(field(line, syntax.field, 0, 3).unwrap_or_default());
                if !self.keeps_comments() && !self.maps(test) {
                    self.value(line, &syntax, 0, 5, "OBX.5", offset);
                }
                mask_record(&rule(HL7_OBX_KEPT, &[]), &syntax, line, offset, self.policy, &mut self.found);
            }
            b"ORC" => self.fields_of(line, &syntax, 0, "ORC.", HL7_ORC_PERSONAL, offset),
            b"OBR" => self.fields_of(line, &syntax, 0, "OBR.", HL7_OBR_PERSONAL, offset),
            b"SPM" => self.fields_of(line, &syntax, 0, "SPM.", HL7_SPM_PERSONAL, offset),
            // BTS-2 / FTS-2: the batch's or file's comment.
            b"BTS" | b"FTS" => self.fields_of(line, &syntax, 0, &prefix, &[2], offset),
            id if HL7_READ.contains(&id) => {}
            _ => {
                // A set ID (a few digits in field 1) says nothing about anyone.
                let set_id = field(line, syntax.field, 0, 1)
                    .is_some_and(|f| (1..=4).contains(&f.len()) && f.iter().all(u8::is_ascii_digit));
                let kept: &[usize] = if set_id { &[0, 1] } else { &[0] };
                mask_record(&rule(kept, &[]), &syntax, line, offset, self.policy, &mut self.found)
            }
        }
        self.syntax = Some(syntax);
    }

    /// The non-empty fields `which` (numbered from `first`) of `line`.
    fn fields_of(&mut self, line: &[u8], syntax: &Syntax, first: usize, prefix: &str, which: &[usize], offset: usize) {
        for (n, span) in fields(line, syntax.field, first) {
            if which.contains(&n) && !span.is_empty() {
                self.found.push((format!("{prefix}{n}"), offset + span.start..offset + span.end));
            }
        }
    }

    /// Field `n` (numbered from `first`) of `line`: a result value not kept.
    fn value(&mut self, line: &[u8], syntax: &Syntax, first: usize, n: usize, name: &str, offset: usize) {
        if let Some((_, span)) = fields(line, syntax.field, first).find(|(i, _)| *i == n).filter(|(_, s)| !s.is_empty())
        {
            self.found.push((name.to_owned(), offset + span.start..offset + span.end));
        }
    }
}

/// Whether `line` starts an HL7 unit: a message, or a batch or file header
/// or trailer (the parser starts one there even after a bare LF).
fn starts_unit(line: &[u8]) -> bool {
    matches!(line.get(..3), Some(b"MSH" | b"FHS" | b"BHS" | b"BTS" | b"FTS"))
        && !line.get(3).is_some_and(u8::is_ascii_alphanumeric)
}

/// Whether the HL7 unit starting at `from` has a CR before the next unit or
/// MLLP block byte.
fn unit_has_cr(text: &[u8], from: usize) -> bool {
    let rest = text.get(from..).unwrap_or_default();
    for (i, &b) in rest.iter().enumerate() {
        match b {
            b'\r' => return true,
            0x0B | 0x1C => return false,
            b'\n' if i > 0 && starts_unit(rest.get(i + 1..).unwrap_or_default()) => return false,
            _ => {}
        }
    }
    false
}

/// Whether the line at `start` follows an LF that is not part of a CR line
/// end (CRLF, LFCR) or MLLP framing.
fn after_bare_lf(text: &[u8], start: usize) -> bool {
    let before = text.get(..start).unwrap_or_default();
    let lfs = before.iter().rev().take_while(|&&b| b == b'\n').count();
    let previous = before.len().checked_sub(lfs + 1).and_then(|i| before.get(i));
    lfs > 0 && !matches!(previous, None | Some(b'\r' | 0x0B | 0x1C))
}

/// Whether `line` starts a message (ASTM H, HL7 MSH) or an HL7 batch (FHS, BHS).
fn is_header(format: Option<Format>, line: &[u8]) -> bool {
    let separator = |at: usize| line.get(at).is_some_and(|b| !b.is_ascii_alphanumeric() && !b.is_ascii_whitespace());
    match format {
        Some(Format::Astm) => matches!(line.first(), Some(b'H' | b'h')) && separator(1),
        Some(Format::Hl7) => matches!(line.get(..3), Some(b"MSH" | b"FHS" | b"BHS")) && separator(3),
        None => false,
    }
}

/// `failed` says whether an offset of `text` is in a message that failed to parse.
fn scan(text: &[u8], policy: &dyn Policy, failed: &dyn Fn(usize) -> bool) -> Vec<(String, Range<usize>)> {
    let format = crate::parse::detect(text);
    let mut scan = Scan { policy, syntax: None, sender: None, failed: false, found: Vec::new() };
    // Whether the current HL7 unit has CRs: then a bare LF is data, as the
    // parser reads it, and the text after one belongs to the segment before.
    let mut cr_mode = false;
    for (offset, line) in lines(text) {
        // A BOM or padding before a header is not part of it (the parsers
        // skip it); before any other line it makes the line no record.
        let lead = line.len() - line.strip_prefix(UTF8_BOM).unwrap_or(line).trim_ascii_start().len();
        let trimmed = line.get(lead..).unwrap_or_default();
        if lead > 0 && !trimmed.is_empty() && !is_header(format, trimmed) {
            scan.whole(offset, line);
            continue;
        }
        let (start, offset, line) = (offset, offset + lead, trimmed);
        scan.failed = failed(offset);
        match (format, line) {
            (_, []) => {}
            (Some(Format::Astm), _) => scan.astm(offset, line),
            (Some(Format::Hl7), _) if starts_unit(line) => {
                cr_mode = unit_has_cr(text, offset);
                scan.hl7(offset, line);
            }
            (Some(Format::Hl7), _) if cr_mode && after_bare_lf(text, start) => scan.whole(offset, line),
            (Some(Format::Hl7), _) => scan.hl7(offset, line),
            (None, _) => scan.whole(offset, line),
        }
    }
    scan.found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::mask;

    /// Study codes U01–U09; tests CPEP and GLUC mapped for sender "lab";
    /// comments kept only when `keep` is set.
    struct Study {
        keep: bool,
    }

    impl Policy for Study {
        fn is_study_code(&self, id: &str) -> bool {
            id.len() == 3 && id.starts_with("U0")
        }
        fn keeps_comments(&self, sender: Option<&str>) -> bool {
            self.keep && sender == Some("lab")
        }
        fn maps_test(&self, sender: Option<&str>, test: &str) -> bool {
            sender == Some("lab") && matches!(test, "CPEP" | "GLUC")
        }
    }

    /// No study codes, nothing mapped, comments masked.
    struct Nobody;

    impl Policy for Nobody {
        fn is_study_code(&self, _: &str) -> bool {
            false
        }
        fn keeps_comments(&self, _: Option<&str>) -> bool {
            false
        }
        fn maps_test(&self, _: Option<&str>, _: &str) -> bool {
            false
        }
    }

    const STUDY: Study = Study { keep: false };

    /// Of a file whose messages all parse.
    fn personal_fields(bytes: &[u8], policy: &dyn Policy) -> Vec<PersonalField> {
        super::personal_fields(bytes, policy, &[])
    }

    fn names(fields: &[PersonalField]) -> Vec<&str> {
        fields.iter().map(|f| f.field.as_str()).collect()
    }

    fn masked(bytes: &[u8], policy: &dyn Policy) -> String {
        let fields = personal_fields(bytes, policy);
        let spans: Vec<Range<usize>> = fields.iter().map(|f| f.span.clone()).collect();
        String::from_utf8_lossy(&mask(bytes, &spans)).into_owned()
    }

    #[test]
    fn astm_names_birth_dates_and_foreign_ids_are_masked_study_codes_kept() {
        let text = b"H|\\^&|||x\rP|1|U07|HOSP-1234||Brown^Bobby^B|White|19650102|M||12 Elm St||555-0101\rO|1|S1\rL|1\r";
        let fields = personal_fields(text, &STUDY);
        assert_eq!(names(&fields), ["P.4", "P.6", "P.7", "P.8", "P.11", "P.13"]);
        let out = masked(text, &STUDY);
        assert_eq!(out.len(), text.len());
        assert!(out.contains("P|1|U07|*********||*************|*****|********|M||*********||********\r"), "{out}");
        assert!(out.contains("O|1|S1"));
    }

    #[test]
    fn every_repetition_and_component_after_the_study_code_is_masked() {
        let text = b"H|\\^&\rP|1|U04\\196503151234|U04^19650315|U05~1234\rL|1\r";
        let out = masked(text, &STUDY);
        // `~` is no ASTM delimiter (H.2 declares `\^&`): "U05~1234" is no study code.
        assert!(out.contains("P|1|U04\\************|U04^********|********\r"), "{out}");
        let hl7 = b"MSH|^~\\&|LAB\rPID|1|U04~X1|U04~196503151234^^^SKV^NNSWE|U04^^^H\rOBX|1|NM|CPEP||0.4\r";
        let out = masked(hl7, &STUDY);
        assert!(!out.contains("1965") && !out.contains("SKV") && !out.contains("X1"), "{out}");
        assert!(out.contains("PID|1|U04~**|U04~************************|U04^***\r"), "{out}");
        // The study code may be any repetition: the others are masked, it is kept.
        let out = masked(b"MSH|^~\\&|LAB\rPID|1||196503151234^^^SKV^NNSWE~U04^^^STUDY~X9\r", &STUDY);
        assert!(out.contains("PID|1||************************~U04^**********\r"), "{out}");
        let out = masked(b"H|\\^&\rP|1|196503151234^X\\U04^Y\\U05|1965\rL|1\r", &STUDY);
        assert!(out.contains("P|1|**************\\U04^*****|****\r"), "{out}");
    }

    #[test]
    fn hl7_pid_and_nk1_are_masked() {
        let text = b"MSH|^~\\&|lab\rPID|1||U07^^^TRIAL^PI~19650102-1234^^^SKV^NI||Doe^Jane||19650102|F|||Main St 1^^Uppsala||018-123\rNK1|1|Doe^John|SPO|Main St 1\rOBX|1|NM|CPEP||0.4\r";
        let fields = personal_fields(text, &STUDY);
        assert_eq!(names(&fields), ["PID.3", "PID.5", "PID.7", "PID.11", "PID.13", "NK1.2", "NK1.3", "NK1.4"]);
        let out = masked(text, &STUDY);
        assert!(!out.contains("Doe") && !out.contains("19650102") && !out.contains("Main St"), "{out}");
        assert!(out.contains("OBX|1|NM|CPEP||0.4"));
        // A hospital number in PID-3 (not a study code) is masked too.
        let fields = personal_fields(b"MSH|^~\\&|X\rPID|1||H123^^^HOSP||X^Y\r", &Nobody);
        assert_eq!(names(&fields), ["PID.3", "PID.5"]);
    }

    #[test]
    fn comments_and_text_results_of_unmapped_tests_are_masked_unless_kept() {
        let hl7 = b"MSH|^~\\&|lab\rOBX|1|NM|CPEP||0.4\rNTE|1|L|Call Birgitta 070-1234567|RE\rOBX|2|ST|NOTE||Birgitta Johansson\rOBX|3|ST|GLUC||high\rOBX|4|NM|XYZ||5\r";
        // A number is masked too when its test maps to nothing: it may be a national ID.
        let out = masked(hl7, &STUDY);
        assert!(out.contains("NTE|1|L|*************************|**\r"), "{out}");
        assert!(out.contains("OBX|2|ST|NOTE||******************\r"), "{out}");
        assert!(out.contains("OBX|3|ST|GLUC||high\r") && out.contains("OBX|4|NM|XYZ||*\r"), "{out}");
        assert_eq!(masked(hl7, &Study { keep: true }), String::from_utf8_lossy(hl7));
        let astm = b"H|\\^&|||lab\rP|1|U04\rC|1|I|Birgitta 070-1234567|G\rL|1\r";
        assert!(masked(astm, &STUDY).contains("C|1|I|********************|G\r"));
        assert_eq!(masked(astm, &Study { keep: true }), String::from_utf8_lossy(astm));
        // An unknown sender's comments are masked, whatever is kept elsewhere.
        let other = b"H|\\^&|||other\rC|1|I|Birgitta|G\rL|1\r";
        assert!(masked(other, &Study { keep: true }).contains("C|1|I|********|G"));
    }

    #[test]
    fn a_line_that_is_no_record_is_masked_whole() {
        let text = b"\xEF\xBB\xBFMSH|^~\\&|lab\rPID|1||U04||Johansson\rBirgitta Johansson 19800315-1234|F\rOBX|1|NM|CPEP||0.4\r";
        let out = masked(text, &STUDY);
        assert!(out.contains("MSH|^~\\&|lab\r"), "{out}");
        assert!(out.contains("\r**********************************\r"), "{out}");
        assert!(!out.contains("Johansson") && !out.contains("1980"), "{out}");
        assert!(out.contains("OBX|1|NM|CPEP||0.4"), "{out}");
    }

    #[test]
    fn framed_astm_is_masked_across_a_frame_boundary() {
        // The name field is split between two frames.
        let frames = b"\x05\x021H|\\^&\rP|1||X9||Bro\x17AA\r\n\x022wn^Bob\rL|1\r\x03BB\r\n\x04";
        let fields = personal_fields(frames, &Nobody);
        assert_eq!(names(&fields), ["P.4", "P.6", "P.6"]);
        let out = masked(frames, &Nobody);
        assert!(out.contains("||***\x17AA") && out.contains("\x022******\rL|1"), "{out:?}");
    }

    #[test]
    fn a_stray_stx_does_not_hide_the_lines_before_it() {
        let text = b"MSH|^~\\&|lab\rPID|1||U04||Johansson^Birgitta\rOBX|1|NM|CPEP||0.4\x02\r";
        let out = masked(text, &STUDY);
        assert!(!out.contains("Johansson"), "{out:?}");
    }

    #[test]
    fn text_between_frames_is_masked_framing_is_not() {
        let frames = b"\x05\x021H|\\^&\r\x03AA\r\nP|1||Johansson^Birgitta\r\x022L|1\r\x03BB\r\n\x04";
        let fields = personal_fields(frames, &Nobody);
        assert_eq!(names(&fields), ["outside frames"]);
        let out = masked(frames, &Nobody);
        assert!(out.contains("\x03AA\r\n***********************\r\x022L|1\r\x03BB\r\n\x04"), "{out:?}");
    }

    #[test]
    fn a_record_per_etx_frame_without_a_cr_is_masked_too() {
        // Each record in its own ETX frame with no CR before the ETX, as some analyzers send.
        let frames = b"\x05\x021H|\\^&\x03AA\r\n\x022P|1||X9||Brown^Bob\x03BB\r\n\x023L|1\x03CC\r\n\x04";
        let fields = personal_fields(frames, &Nobody);
        assert_eq!(names(&fields), ["P.4", "P.6"]);
        let out = masked(frames, &Nobody);
        assert!(out.contains("\x022P|1||**||*********\x03BB"), "{out:?}");
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_spans_stay_inside(picks in proptest::collection::vec(0usize..64, 0..200)) {
            // Bytes that make records, delimiters and frames likely.
            const ALPHABET: &[u8] = b"HPCOLRMSIDNTEXBK1|^~\\&!@\r\n\x02\x03\x17\x0b\x1c U04-9 \xef\xbb\xbf\x00";
            let bytes: Vec<u8> = picks.iter().map(|&i| ALPHABET[i % ALPHABET.len()]).collect();
            for field in personal_fields(&bytes, &STUDY) {
                proptest::prop_assert!(field.span.start <= field.span.end && field.span.end <= bytes.len());
            }
        }
    }

    #[test]
    fn segments_labfeed_does_not_read_are_masked_but_for_a_set_id() {
        let hl7 = b"MSH|^~\\&|lab\rPID|1||U04\rPV1|1|O|Ward 7^^^Uppsala||||DOC1^Lind^Per\rGT1|1|U04|Johansson^Birgitta\rIN1|1|PLAN||Insco\rMRG|198003151234\rZPI|1|Johansson|198003151234\rOBR|1||U04-V0-T0\rOBX|1|NM|CPEP||0.4\r";
        let fields = personal_fields(hl7, &STUDY);
        assert_eq!(
            names(&fields),
            ["PV1.2", "PV1.3", "PV1.7", "GT1.2", "GT1.3", "IN1.2", "IN1.4", "MRG.1", "ZPI.2", "ZPI.3"]
        );
        let out = masked(hl7, &STUDY);
        assert!(out.contains("\rGT1|1|***|******************\r") && out.contains("\rMRG|************\r"), "{out}");
        assert!(out.contains("\rOBR|1||U04-V0-T0\rOBX|1|NM|CPEP||0.4\r"), "{out}");
    }

    #[test]
    fn people_and_free_text_in_kept_segments_and_records_are_masked() {
        let hl7 = b"MSH|^~\\&|lab\rORC|RE|||||||||||Lind^Per\rOBR|1||S1|CPEP|||20260302||||||Birgitta J|||Lind^Per\rOBX|1|NM|CPEP||0.4||||||F|||||Ek^Eva\rSPM|1|S1||||||||||||Birgitta\r";
        let fields = personal_fields(hl7, &STUDY);
        assert_eq!(names(&fields), ["ORC.12", "OBR.13", "OBR.16", "OBX.16", "SPM.14"]);
        let out = masked(hl7, &STUDY);
        assert!(out.contains("OBR|1||S1|CPEP|||20260302||||||**********|||********\r"), "{out}");
        assert!(out.contains("OBX|1|NM|CPEP||0.4||||||F|||||******\r"), "{out}");
        // Every OBX field labfeed does not read and that may name someone.
        let obx = b"MSH|^~\\&|lab\rOBX|1|NM|CPEP||0.4|nmol/L|0-1|N||Eva|F||Eva|20260302|Eva|Eva|M|E|20260302|S|I|RSLT|Eva|Eva|Eva|Eva\r";
        let fields = personal_fields(obx, &STUDY);
        assert_eq!(names(&fields), ["OBX.10", "OBX.13", "OBX.15", "OBX.16", "OBX.23", "OBX.24", "OBX.25", "OBX.26"]);
        assert!(!masked(obx, &STUDY).contains("Eva"));
        let batch = b"FHS|^~\\&||||||||Call Birgitta\rBHS|^~\\&\rMSH|^~\\&|lab\rBTS|1|Birgitta\rFTS|1|Birgitta\r";
        assert_eq!(names(&personal_fields(batch, &STUDY)), ["FHS.10", "BTS.2", "FTS.2"]);
        assert!(masked(batch, &STUDY).contains("FHS|^~\\&||||||||*************\r"));
        let astm = b"H|\\^&|||lab\rO|1|S1||^^^CPEP|||||||||Birgitta|||Lind^Per|070-1\rR|1|^^^CPEP|0.4|||||F||Ek\rL|1\r";
        assert_eq!(names(&personal_fields(astm, &STUDY)), ["O.14", "O.17", "O.18", "R.11"]);
    }

    #[test]
    fn a_line_is_a_segment_or_record_only_as_the_parser_reads_it() {
        for line in
            [&b"Lee^Annalisa||19800315|F"[..], b"Eva-Lotta Johansson 19800315|F", b"pid|1||U04~1980", b"PI|x", b"PID^1"]
        {
            let mut hl7 = b"MSH|^~\\&|lab\rPID|1||U04\r".to_vec();
            hl7.extend_from_slice(line);
            hl7.extend_from_slice(b"\rOBX|1|NM|CPEP||0.4\r");
            let fields = personal_fields(&hl7, &STUDY);
            assert_eq!(names(&fields), ["line"], "{}: {fields:?}", String::from_utf8_lossy(line));
            assert_eq!(fields.first().map(|f| f.span.len()), Some(line.len()));
        }
        // In a message with CRs a bare LF is data: what follows it belongs to the
        // segment before, so it is masked whole even when it looks like a segment.
        let lf = b"MSH|^~\\&|lab\rPID|1||U04||Johansson\nOBX|19800315\r\nOBX|1|NM|CPEP||0.4\r";
        assert_eq!(names(&personal_fields(lf, &STUDY)), ["PID.5", "line"]);
        // A message with no CR ends its segments with LF.
        let lf = b"MSH|^~\\&|lab\nPID|1||U04||Johansson\nOBX|1|NM|CPEP||0.4\n";
        assert_eq!(names(&personal_fields(lf, &STUDY)), ["PID.5"]);
        // Leading white space makes a line no segment (the parser does not skip it there).
        let padded = b"MSH|^~\\&|lab\r PID|1||U04\rOBX|1|NM|CPEP||0.4\r";
        assert_eq!(names(&personal_fields(padded, &STUDY)), ["line"]);
        // A file that does not start with a header is neither format: every line is masked.
        assert_eq!(names(&personal_fields(b"PID|1||X^Y\rMSH|^~\\&|lab\r", &STUDY)), ["line", "line"]);
        // An ASTM record needs the message's field separator after its type
        // letter; one of a type the parser does not read keeps only the letter.
        let astm = b"H|\\^&|||lab\rP|1|U04\rX|Johansson\rLee|19800315\rp|1|U04||Birgitta\rL|1\r";
        assert_eq!(names(&personal_fields(astm, &STUDY)), ["X.2", "line", "P.5"]);
    }

    #[test]
    fn a_segment_split_across_mllp_frames_is_masked_on_both_sides() {
        let hl7 = b"\x0bMSH|^~\\&|lab\rPID|1||U04||Johans\x1c\r\x0bson^Birgitta||19800315\rOBX|1|NM|CPEP||0.4\r\x1c\r";
        let out = masked(hl7, &STUDY);
        assert!(out.contains("PID|1||U04||******\x1c\r\x0b**********************\rOBX|1|NM|CPEP||0.4\r"), "{out:?}");
    }

    #[test]
    fn an_astm_query_is_masked_like_a_patient_record() {
        let astm = b"H|\\^&|||lab\rQ|1|198003151234^S1||ALL||||Lind^Per|070-1234567|||O\rQ|2|U04^S1|U04^S9|ALL\rL|1\r";
        let fields = personal_fields(astm, &STUDY);
        assert_eq!(names(&fields), ["Q.3", "Q.9", "Q.10", "Q.3", "Q.4"]);
        let out = masked(astm, &STUDY);
        assert!(out.contains("Q|1|***************||ALL||||********|***********|||O\r"), "{out}");
        assert!(out.contains("Q|2|U04^**|U04^**|ALL\r"), "{out}");
    }

    #[test]
    fn the_declared_delimiters_find_the_study_code() {
        let astm = b"H|\\%&|||lab%1\rP|1|U02%LAB|U03^X\rO|1|S1||%%%CPEP\rR|1|%%%CPEP|0.4\rL|1\r";
        let out = masked(astm, &STUDY);
        // `^` is data here: "U03^X" is no study code. The sender is read with `%`, so CPEP maps.
        assert!(out.contains("P|1|U02%***|*****\r") && out.contains("R|1|%%%CPEP|0.4\r"), "{out}");
        let hl7 = b"MSH#$~\\&#lab\rPID#1##U04$$$SKV~1980##Johansson\rOBX#1#NM#CPEP##0.4\rOBX#2#NM#PNR##1980\r";
        let out = masked(hl7, &STUDY);
        assert!(out.contains("PID#1##U04$**********##*********\r"), "{out}");
        assert!(out.contains("OBX#1#NM#CPEP##0.4\rOBX#2#NM#PNR##****\r"), "{out}");
    }

    #[test]
    fn unmapped_result_values_are_masked_whatever_their_type_unless_kept() {
        let hl7 = b"MSH|^~\\&|lab\rOBX|1|NM|CPEP||0.4\rOBX|2|NM|PNR||198003151234\rOBX|3|SN|X||^Birgitta\r";
        let out = masked(hl7, &STUDY);
        assert!(out.contains("OBX|1|NM|CPEP||0.4\rOBX|2|NM|PNR||************\rOBX|3|SN|X||*********\r"), "{out}");
        let astm = b"H|\\^&|||lab\rR|1|^^^CPEP|0.4\rR|2|^^^PNAME|Birgitta Johansson\rR|3|GLUC|5.1\rL|1\r";
        let out = masked(astm, &STUDY);
        assert!(out.contains("R|1|^^^CPEP|0.4\rR|2|^^^PNAME|******************\rR|3|GLUC|5.1\r"), "{out}");
        assert_eq!(masked(astm, &Study { keep: true }), String::from_utf8_lossy(astm));
        // An unknown sender maps nothing.
        assert!(masked(b"H|\\^&|||other\rR|1|^^^CPEP|0.4\rL|1\r", &STUDY).contains("R|1|^^^CPEP|***\r"));
    }

    #[test]
    fn a_masked_framed_capture_keeps_valid_checksums() {
        let text = b"H|\\^&|||lab\rP|1|U04||Johansson^Birgitta\rO|1|S1\rR|1|^^^CPEP|0.4\rL|1\r";
        let mut bytes = vec![0x05];
        for f in crate::astm::encode_frames(text, 20) {
            bytes.extend(f);
        }
        bytes.push(0x04);
        let out = masked(&bytes, &STUDY);
        assert!(!out.contains("Johansson") && out.contains("P|1|U04|"), "{out:?}");
        assert_eq!(out.len(), bytes.len());
        assert!(every_frame_verifies(out.as_bytes()), "{out:?}");
    }

    /// Whether every frame in `bytes` has a right checksum.
    fn every_frame_verifies(bytes: &[u8]) -> bool {
        let mut count = 0;
        for (at, _) in bytes.iter().enumerate().filter(|(_, b)| **b == 0x02) {
            match crate::astm::frame::frame(bytes.get(at..).unwrap_or_default()) {
                Ok((_, f)) if f.verifies() => count += 1,
                _ => return false,
            }
        }
        count > 0
    }

    /// A header for the property tests: the ways a message declares its syntax.
    const HEADERS: &[&[u8]] = &[
        b"H|\\^&|||lab\r",
        b"H|\\%&|||lab%1\r",
        b"h!@#$!!!lab\r",
        b"MSH|^~\\&|lab\r",
        b"MSH#$~\\&#lab\r",
        b"\x0bMSH|^~\\&|other\r",
        b"FHS|^~\\&\rBHS|^~\\&\rMSH|^~\\&|lab\r",
    ];

    proptest::proptest! {
        #[test]
        fn masking_any_message_keeps_its_length_and_never_panics(
            header in 0usize..HEADERS.len(),
            picks in proptest::collection::vec(0usize..80, 0..240),
        ) {
            // Segment IDs, record types, custom delimiters, MLLP and frame bytes.
            const ALPHABET: &[u8] = b"PIDQRCOLMSHGTZNXBVpq1|^~\\&%$#!@\r\n\x02\x03\x17\x0b\x1c U04-9 \xef\xbb\xbfAFE";
            let mut bytes = HEADERS.get(header).copied().unwrap_or_default().to_vec();
            bytes.extend(picks.iter().map(|&i| ALPHABET[i % ALPHABET.len()]));
            for policy in [&STUDY as &dyn Policy, &Study { keep: true }, &Nobody] {
                let fields = personal_fields(&bytes, policy);
                for field in &fields {
                    proptest::prop_assert!(field.span.start <= field.span.end && field.span.end <= bytes.len());
                }
                let spans: Vec<Range<usize>> = fields.iter().map(|f| f.span.clone()).collect();
                proptest::prop_assert_eq!(mask(&bytes, &spans).len(), bytes.len());
            }
        }

        #[test]
        fn a_masked_framed_capture_still_verifies(
            header in 0usize..3,
            picks in proptest::collection::vec(0usize..64, 0..300),
            frame_len in 1usize..60,
        ) {
            // Frame text may not hold link control bytes or LF.
            const ALPHABET: &[u8] = b"PQRCOLMSpq1|^\\&%!@\r U04-9 Birgitta\xc3\xa5";
            let mut text = HEADERS.get(header).copied().unwrap_or_default().to_vec();
            text.extend(picks.iter().map(|&i| ALPHABET[i % ALPHABET.len()]));
            let mut bytes = vec![0x05];
            for f in crate::astm::encode_frames(&text, frame_len) {
                bytes.extend(f);
            }
            bytes.push(0x04);
            let spans: Vec<Range<usize>> = personal_fields(&bytes, &STUDY).into_iter().map(|f| f.span).collect();
            let out = mask(&bytes, &spans);
            proptest::prop_assert_eq!(out.len(), bytes.len());
            proptest::prop_assert!(every_frame_verifies(&out));
        }
    }

    #[test]
    fn the_astm_password_and_manufacturer_and_scientific_records_are_masked() {
        let astm = b"H|\\^&||Birgitta|lab\rP|1|U04\rM|1|Johansson^Birgitta|1980\\1981\rS|1|Birgitta\rL|1\r";
        let fields = personal_fields(astm, &STUDY);
        assert_eq!(names(&fields), ["H.4", "M.2", "M.3", "M.3", "M.4", "M.4", "S.2", "S.3"]);
        let out = masked(astm, &STUDY);
        assert!(out.contains("H|\\^&||********|lab\r"), "{out}");
        assert!(out.contains("M|*|*********^********|****\\****\rS|*|********\r"), "{out}");
    }

    /// `bytes` masked, with the message at `failed` failing to parse.
    fn masked_failing(bytes: &[u8], failed: Range<usize>) -> Vec<u8> {
        let fields = super::personal_fields(bytes, &STUDY, std::slice::from_ref(&failed));
        mask(bytes, &fields.into_iter().map(|f| f.span).collect::<Vec<_>>())
    }

    #[test]
    fn a_message_that_failed_to_parse_keeps_only_its_structure() {
        // The second message fails (say, on OBX-14): every field is masked, kept or not.
        let first = b"MSH|^~\\&|lab|X|||1||ORU^R01|C1\rPID|1||U04\rOBR|1||U04-V0-T0\rOBX|1|NM|CPEP||0.4|nmol/L\r";
        let second = b"MSH|^~\\&|lab|X|||1||ORU^R01|C2\rPID|1||U04~Eva\rOBR|1||Eva-V0-T0\rOBX|1|NM|CPEP||0.4|Eva|||||F|||2026X\r";
        let hl7 = [&first[..], second].concat();
        let out = String::from_utf8_lossy(&masked_failing(&hl7, first.len()..hl7.len())).into_owned();
        assert!(out.starts_with(&*String::from_utf8_lossy(first)), "{out}");
        let expected =
            "MSH|^~\\&|***|*|||*||***^***|**\rPID|*||***~***\rOBR|*||*********\rOBX|*|**|****||***|***|||||*|||*****\r";
        assert!(out.ends_with(expected), "{out}");
        // ASTM, framed: the checksums still verify; record types and delimiters stay.
        let text = b"H|\\^&|||lab\rP|1|U04\rO|1|Eva||^^^CPEP\rR|1|^^^CPEP|0.4|Eva\rX|Eva\rL|1\r";
        let mut bytes = vec![0x05];
        for f in crate::astm::encode_frames(text, 20) {
            bytes.extend(f);
        }
        bytes.push(0x04);
        let out = masked_failing(&bytes, 0..bytes.len());
        assert!(every_frame_verifies(&out));
        let (joined, _) = crate::astm::frame::joined_texts(&out);
        let joined = String::from_utf8_lossy(&joined).into_owned();
        assert_eq!(joined, "H|\\^&|||***\rP|*|***\rO|*|***||^^^****\rR|*|^^^****|***|***\rX|***\rL|*\r");
        // A header whose delimiter field is no delimiters keeps only its ID.
        let astm = b"H|Eva Lind|||lab\rL|1\r";
        assert_eq!(masked_failing(astm, 0..astm.len()), b"H|********|||***\rL|*\r");
    }

    #[test]
    fn files_without_personal_data_have_none() {
        assert!(personal_fields(b"H|\\^&|||lab\rP|1\rO|1|S1\rR|1|^^^GLUC|5\rL|1\r", &STUDY).is_empty());
        assert!(personal_fields(b"", &Nobody).is_empty());
        assert!(personal_fields(b"\x02", &Nobody).is_empty());
    }
}
