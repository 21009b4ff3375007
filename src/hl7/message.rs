//! One MSH message: header, character set, and the walk over its segments
//! that turns result OBX segments into [`LabResult`]s.
//!
//! There is no owned tree: segments are visited once, in order, and only the
//! fields that are mapped get split (into borrowed slices) and decoded. The
//! walk keeps the context the standard's groups imply:
//!
//! - an OBX is a result iff the most recent OBR/SPM before it is an OBR (an
//!   OBX after SPM describes the specimen);
//! - in ORU^R01 and OUL^R21 the specimen (SPM) of an order group follows the
//!   group, so results are held until the group ends (next OBR, PID or the
//!   end of the message); in OUL^R22 the SPM comes first and applies to the
//!   OBR groups after it;
//! - NTE right after a result OBX (Z-segments, TCD and SID may come between)
//!   are that result's comments;
//! - the patient is the latest PID before the OBX.

use std::borrow::Cow;
use std::ops::Range;

use memchr::memchr;

use super::encoding::{Charset, Delimiters, choose_charset, read_msh_delimiters, show, unescape_into};
use super::segment::{Fields, LF, Mode, Piece, Segments, Unit, piece, valid_id};
use crate::model::{Format, MessageError, MessageView, ParseOptions, ResultView, ViewOutcome, Warning};
use crate::scan::find;
use crate::timestamp::Timestamp;
use crate::value::{self, Comparator, Number};

/// A problem that makes the message unusable: where, and what was expected.
pub(crate) struct Fail {
    pub offset: usize,
    pub text: String,
}

type Step<T> = Result<T, Fail>;

/// Byte offset of `part` (a sub-slice of `input`) in `input`.
pub(crate) fn offset_in(input: &[u8], part: &[u8]) -> usize {
    part.as_ptr().addr().checked_sub(input.as_ptr().addr()).filter(|&o| o <= input.len()).unwrap_or(0)
}

/// The error for a line that does not start with a segment ID, naming the
/// segment before it (which was likely wrapped), never quoting the line.
/// (The line number is the caller's to add: counting lines here for every
/// error would make a file of many broken messages quadratic.)
pub(crate) fn not_a_segment(piece: Piece<'_>, before: &[u8]) -> Fail {
    let before = String::from_utf8_lossy(before);
    let text =
        format!("a line that {NOT_A_SEGMENT} (the {before} segment before it may have been wrapped onto a new line)");
    Fail { offset: piece.offset, text }
}

const NOT_A_SEGMENT: &str = "is not a segment: expected a segment ID such as PID or OBX";
const NOT_A_TIMESTAMP: &str =
    "expected a date/time YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ], found a value that is not one";

/// HL7 table 0125 (value types), for the OBX-2 check.
/// NM and SN, nearly every lab value, come first.
const VALUE_TYPES: &[&str] = &[
    "NM", "SN", "AD", "CE", "CF", "CK", "CN", "CNE", "CP", "CQ", "CWE", "CX", "DR", "DT", "DTM", "ED", "EI", "FT",
    "ID", "IS", "MA", "MO", "NA", "NR", "PN", "RP", "SI", "ST", "TM", "TN", "TS", "TX", "XAD", "XCN", "XON", "XPN",
    "XTN",
];

/// Why a message of another type fails: it may carry results in a structure
/// this parser does not know, so it is shown to a person, not skipped.
pub(crate) const NOT_READ: &str = "is not one labfeed reads results from (ORU^R01, ORU^R30, ORU^R31, ORU^R32, OUL^R21, OUL^R22): the message was not read";

/// HL7 versions this parser is written for.
const VERSIONS: &[&str] = &["2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2"];

/// Parse one message unit. `check_nul` is set when the file holds a NUL
/// byte somewhere (so clean files skip that scan).
pub(crate) fn parse_message<'a>(
    input: &'a [u8],
    unit: &Unit,
    span: Range<usize>,
    number: usize,
    opts: &ParseOptions,
    check_nul: bool,
) -> ViewOutcome<'a> {
    match read(input, unit, opts, check_nul) {
        Ok(read) => Ok(MessageView {
            number,
            format: Format::Hl7,
            span,
            sender: read.sender,
            control_id: read.control_id,
            results: read.results,
            warnings: read.warnings,
        }),
        Err(fail) => Err(MessageError { number, offset: fail.offset, span, text: fail.text }),
    }
}

struct Read<'a> {
    sender: Option<Cow<'a, str>>,
    control_id: Option<Cow<'a, str>>,
    results: Vec<ResultView<'a>>,
    warnings: Vec<Warning>,
}

/// Where the SPM of an order group sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// ORU^R01, OUL^R21: OBR, OBX…, then SPM.
    SpecimenAfter,
    /// OUL^R22: SPM, then OBR, OBX…
    SpecimenBefore,
}

fn read<'a>(input: &'a [u8], unit: &Unit, opts: &ParseOptions, check_nul: bool) -> Step<Read<'a>> {
    let bytes = input.get(unit.range.clone()).unwrap_or_default();
    if check_nul && let Some(at) = memchr(0, bytes) {
        return Err(Fail {
            offset: unit.range.start + at,
            text: "NUL byte: expected text (the file may be padded or binary)".to_owned(),
        });
    }
    let mode = if unit.has_cr { Mode::Cr } else { Mode::Lf };
    let mut segments = Segments::new(input, unit.range.clone(), mode);
    let Some(header) = segments.next() else {
        return Err(Fail { offset: unit.range.start, text: "expected an MSH segment".to_owned() });
    };
    let d = read_msh_delimiters(header.bytes).map_err(|text| Fail { offset: header.offset, text })?;
    let msh = Fields::split_msh(header.bytes, d.field);

    let msh18 = msh.get(18);
    let mut sets = msh18.split(|&b| b == d.repetition).map(trim_ascii).filter(|set| !set.is_empty());
    let first = sets.next().map_or("", |set| std::str::from_utf8(set).unwrap_or("?"));
    let alternates = sets.next().is_some();
    let msh20 = std::str::from_utf8(trim_ascii(msh.get(20))).unwrap_or("?");
    // One UTF-8 check per message; leaves then borrow from it.
    let text = std::str::from_utf8(bytes);
    let utf8_error = text.as_ref().err().map(|e| e.valid_up_to());
    let choice = choose_charset(first, alternates, msh20, bytes, utf8_error)
        .map_err(|text| Fail { offset: offset_in(input, msh18), text })?;

    let mut r = Reader {
        input,
        base: unit.range.start,
        text: text.ok(),
        d,
        charset: choice.charset,
        opts: *opts,
        warnings: Vec::new(),
        scratch: Vec::new(),
        stamps: [None; 4],
    };
    if mode == Mode::Lf && unit.has_lf {
        r.warn(header.offset, "segments end with LF, not CR");
    } else if unit.lf_at_cr {
        r.warn(header.offset, "segments end with CRLF (or LFCR), not CR");
    }
    for (at, text) in choice.warnings {
        let offset = at.map_or(offset_in(input, msh18), |at| unit.range.start + at);
        r.warn(offset, text);
    }

    let sender = r.ident(r.component(msh.get(3), 0));
    let control_id = r.ident(r.component(msh.get(10), 0));
    let layout = r.check_header(&msh)?;

    let mut walk = Walk {
        layout,
        sender: sender.clone(),
        patient: Vec::new(),
        last_parent: Parent::None,
        group: None,
        specimen: None,
        comments_open: false,
        observed: Vec::new(),
        results: Vec::new(),
    };
    let raw_lf_possible = mode == Mode::Cr && unit.bare_lf;
    let mut before: &[u8] = b"MSH";
    for seg in segments {
        let Some(id) = valid_id(seg.bytes, d.field) else {
            return Err(not_a_segment(seg, before));
        };
        before = id;
        if raw_lf_possible && let Some(at) = memchr(LF, seg.bytes) {
            r.warn(seg.offset + at, "raw control character in value (LF): CR ends segments in this message");
        }
        let id: [u8; 3] = id.try_into().unwrap_or([0; 3]);
        walk.segment(&mut r, id, seg)?;
    }
    walk.close_group();
    Ok(Read { sender, control_id, results: walk.results, warnings: r.warnings })
}

/// Decoding context for one message: its delimiters and character set.
struct Reader<'a> {
    input: &'a [u8],
    /// Offset of the message in `input`.
    base: usize,
    /// The message as text, when it is valid UTF-8 (values borrow from it).
    text: Option<&'a str>,
    d: Delimiters,
    charset: Charset,
    opts: ParseOptions,
    warnings: Vec<Warning>,
    scratch: Vec<u8>,
    /// The last date/times read (raw text and value): the same stamp is
    /// usually repeated in OBR-7, OBX-14 and SPM-17.
    stamps: [Option<(&'a [u8], Option<Timestamp>)>; 4],
}

/// `text` without surrounding white space; `None` when nothing is left.
/// Borrowed text stays borrowed.
pub(crate) fn trimmed(text: Cow<'_, str>) -> Option<Cow<'_, str>> {
    // Visible ASCII at both ends: nothing to trim (the common case, and
    // `str::trim` has to decode characters to know).
    let bytes = text.as_bytes();
    if bytes.first().is_some_and(u8::is_ascii_graphic) && bytes.last().is_some_and(u8::is_ascii_graphic) {
        return Some(text);
    }
    let kept = text.trim();
    if kept.is_empty() {
        return None;
    }
    Some(match text {
        Cow::Borrowed(all) => Cow::Borrowed(all.trim()),
        Cow::Owned(all) if all.len() == kept.len() => Cow::Owned(all),
        Cow::Owned(all) => Cow::Owned(all.trim().to_owned()),
    })
}

fn is_null(field: &[u8]) -> bool {
    field == b"\"\""
}

fn trim_ascii(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

impl<'a> Reader<'a> {
    fn warn(&mut self, offset: usize, text: impl Into<String>) {
        self.warnings.push(Warning { offset, text: text.into() });
    }

    fn at(&self, part: &[u8]) -> usize {
        offset_in(self.input, part)
    }

    /// Component `n` (0-based) of the first repetition of a field; nothing
    /// for a null field (`""`).
    fn component(&self, field: &'a [u8], n: usize) -> &'a [u8] {
        if is_null(field) {
            return field.get(field.len()..).unwrap_or_default();
        }
        piece(piece(field, self.d.repetition, 0), self.d.component, n)
    }

    /// Decode raw bytes: escapes (joining component and sub-component
    /// separators as `^`/`&` when `join`), then the character set. Borrows
    /// when there is nothing to decode.
    fn decode(&mut self, raw: &'a [u8], join: bool) -> Cow<'a, str> {
        let d = self.d;
        if let Some(t) = d.truncation
            && raw.last() == Some(&t)
        {
            let at = self.at(raw) + raw.len() - 1;
            self.warn(at, format!("value truncated by sender (ends with the truncation character {})", char::from(t)));
        }
        let plain_join = !join || (d.component == b'^' && d.subcomponent == b'&');
        if plain_join && find(d.escape, raw).is_none() {
            if let Some(text) = self.borrow(raw) {
                return Cow::Borrowed(text);
            }
            let (text, fell_back) = self.charset.decode(raw);
            if fell_back && self.charset == (Charset::Utf8 { valid: true }) {
                self.warn(self.at(raw), "value bytes are not valid UTF-8; read as Windows-1252");
            }
            return text;
        }
        let base = self.at(raw);
        let Reader { scratch, warnings, .. } = self;
        scratch.clear();
        unescape_into(raw, &d, join, scratch, &mut |issue| {
            warnings.push(Warning { offset: base + issue.at, text: issue.text });
        });
        let (text, fell_back) = self.charset.decode(&self.scratch);
        let text = Cow::Owned(text.into_owned());
        if fell_back && self.charset == (Charset::Utf8 { valid: true }) {
            self.warn(base, "decoded value is not valid UTF-8; read as Windows-1252");
        }
        text
    }

    /// `raw` as text without copying, when the message is valid UTF-8.
    fn borrow(&self, raw: &[u8]) -> Option<&'a str> {
        let start = self.at(raw).checked_sub(self.base)?;
        self.text?.get(start..start + raw.len())
    }

    /// A decoded text value as sent; `None` when empty.
    fn text(&mut self, raw: &'a [u8], join: bool) -> Option<Cow<'a, str>> {
        if raw.is_empty() {
            return None;
        }
        let text = self.decode(raw, join);
        (!text.is_empty()).then_some(text)
    }

    /// A decoded identifier or code, trimmed; `None` when empty. (A whole
    /// field `""` is null and never gets here; a component `""` is kept.)
    fn ident(&mut self, raw: &'a [u8]) -> Option<Cow<'a, str>> {
        let raw = trim_ascii(raw);
        if raw.is_empty() {
            return None;
        }
        trimmed(self.decode(raw, false))
    }

    /// A date/time leaf; an invalid one fails the message, naming the field.
    fn timestamp(&mut self, raw: &'a [u8], field: &str) -> Step<Option<Timestamp>> {
        if raw.is_empty() {
            return Ok(None);
        }
        if let Some((_, stamp)) = self.stamps.iter().flatten().find(|(seen, _)| *seen == raw) {
            return Ok(*stamp);
        }
        let text = self.decode(raw, false);
        let stamp = Timestamp::parse(&text)
            .map_err(|_| Fail { offset: self.at(raw), text: format!("{field}: {NOT_A_TIMESTAMP}") })?;
        self.stamps.rotate_right(1);
        if let Some(slot) = self.stamps.first_mut() {
            *slot = Some((raw, stamp));
        }
        Ok(stamp)
    }

    /// Header checks that warn; returns the result layout. A message type
    /// that is not read fails the message, so it is never dropped silently.
    fn check_header(&mut self, msh: &Fields<'a>) -> Step<Layout> {
        let msh9 = msh.get(9);
        let code = trim_ascii(self.component(msh9, 0));
        let event = trim_ascii(self.component(msh9, 1));
        let is = |s: &[u8], name: &str| s.eq_ignore_ascii_case(name.as_bytes());
        // ORU_R30 (R30–R32, point of care) has the results after OBR as R01 does.
        let oru = ["R01", "R30", "R31", "R32"];
        let layout = if is(code, "ORU") && (event.is_empty() || oru.iter().any(|e| is(event, e)))
            || is(code, "OUL") && is(event, "R21")
        {
            Layout::SpecimenAfter
        } else if is(code, "OUL") && is(event, "R22") {
            Layout::SpecimenBefore
        } else {
            let name = match (code.is_empty(), event.is_empty()) {
                (true, _) => "(empty)".to_owned(),
                (false, true) => show(code),
                (false, false) => format!("{}^{}", show(code), show(event)),
            };
            return Err(Fail { offset: self.at(msh9), text: format!("MSH-9 message type {name} {NOT_READ}") });
        };
        let processing = trim_ascii(self.component(msh.get(11), 0));
        match processing {
            b"T" => self.warn(self.at(processing), "MSH-11 processing ID T: training data, not production"),
            b"D" => self.warn(self.at(processing), "MSH-11 processing ID D: debugging data, not production"),
            _ => {}
        }
        let version = trim_ascii(self.component(msh.get(12), 0));
        if !VERSIONS.iter().any(|v| v.as_bytes() == version) {
            let text = if version.is_empty() {
                "MSH-12 version is empty; read with the v2.5.1 field layout".to_owned()
            } else {
                format!("MSH-12 version {} is outside 2.3–2.8; read with the v2.5.1 field layout", show(version))
            };
            self.warn(self.at(msh.get(12)), text);
        }
        Ok(layout)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parent {
    None,
    Order,
    Specimen,
}

/// What an OBR says about its results.
struct Order<'a> {
    sample_id: Option<Cow<'a, str>>,
    collected: Option<Timestamp>,
    resulted: Option<Timestamp>,
}

/// What an SPM says about the results it belongs to.
#[derive(Clone)]
struct Specimen<'a> {
    sample_id: Option<Cow<'a, str>>,
    collected: Option<Timestamp>,
    qc: bool,
    /// SPM-4, first repetition, components joined with `^`.
    kind: Option<Cow<'a, str>>,
}

/// The current order group; its results wait for their specimen at the end
/// of `Walk::results` (the last `Walk::observed.len()` of them).
struct Group<'a> {
    order: Order<'a>,
    specimen: Option<Specimen<'a>>,
}

/// The walk over one message's segments.
struct Walk<'a> {
    layout: Layout,
    sender: Option<Cow<'a, str>>,
    /// PID-3, component 1 of each repetition (the study code may be any).
    patient: Vec<Cow<'a, str>>,
    last_parent: Parent,
    group: Option<Group<'a>>,
    /// OUL^R22: the latest SPM, for the OBR groups after it.
    specimen: Option<Specimen<'a>>,
    /// The last result OBX can still take NTE comments.
    comments_open: bool,
    /// OBX-14 of each result of the current group, the last fallback for
    /// its collection time; the group's results are the last this many of
    /// `results`, finished in place when the group ends (moving results
    /// costs more than reading them).
    observed: Vec<Option<Timestamp>>,
    results: Vec<ResultView<'a>>,
}

impl<'a> Walk<'a> {
    fn segment(&mut self, r: &mut Reader<'a>, id: [u8; 3], seg: Piece<'a>) -> Step<()> {
        match &id {
            b"PID" => {
                self.close_group();
                self.specimen = None;
                self.last_parent = Parent::None;
                self.comments_open = false;
                let f = Fields::split_upto(seg.bytes, r.d.field, 3);
                let (repetition, component) = (r.d.repetition, r.d.component);
                self.patient = f
                    .get(3)
                    .split(|&b| b == repetition)
                    .filter(|rep| !is_null(rep))
                    .filter_map(|rep| r.ident(piece(rep, component, 0)))
                    .collect();
            }
            b"OBR" => {
                self.close_group();
                let order = read_order(r, seg)?;
                let specimen = match self.layout {
                    Layout::SpecimenBefore => self.specimen.clone(),
                    Layout::SpecimenAfter => None,
                };
                self.group = Some(Group { order, specimen });
                self.last_parent = Parent::Order;
                self.comments_open = false;
            }
            b"SPM" => {
                let specimen = read_specimen(r, seg)?;
                match self.layout {
                    Layout::SpecimenAfter => {
                        if let Some(group) = self.group.as_mut()
                            && group.specimen.is_none()
                        {
                            group.specimen = Some(specimen);
                        }
                    }
                    Layout::SpecimenBefore => {
                        self.close_group();
                        self.specimen = Some(specimen);
                    }
                }
                self.last_parent = Parent::Specimen;
                self.comments_open = false;
            }
            b"OBX" => {
                self.comments_open = false;
                match self.last_parent {
                    Parent::Order => {}
                    Parent::None => {
                        // A result with no OBR before it (minimal senders, device
                        // feeds): still a result, never dropped, with no order context.
                        r.warn(seg.offset, "OBX before any OBR: read as a result without order information");
                        self.group = Some(Group {
                            order: Order { sample_id: None, collected: None, resulted: None },
                            specimen: None,
                        });
                        self.last_parent = Parent::Order;
                    }
                    Parent::Specimen => {
                        r.warn(seg.offset, "OBX after SPM describes the specimen: not read as a result");
                    }
                }
                if self.last_parent == Parent::Order
                    && let Some(group) = self.group.as_mut()
                {
                    let (result, observed) = read_result(r, seg, &group.order, &self.sender, &self.patient)?;
                    self.results.push(result);
                    self.observed.push(observed);
                    self.comments_open = true;
                }
            }
            b"NTE" => {
                if self.comments_open
                    && let Some(last) = self.results.last_mut()
                {
                    let f = Fields::split_upto(seg.bytes, r.d.field, 3);
                    let comment = f.get(3);
                    if is_null(comment) {
                    } else if find(r.d.repetition, comment).is_none() {
                        if let Some(text) = r.text(comment, true) {
                            last.comments.push(text);
                        }
                    } else {
                        let mut text = String::new();
                        let repetition = r.d.repetition;
                        for rep in comment.split(|&b| b == repetition) {
                            if let Some(part) = r.text(rep, true) {
                                if !text.is_empty() {
                                    text.push('\n');
                                }
                                text.push_str(&part);
                            }
                        }
                        if !text.is_empty() {
                            last.comments.push(Cow::Owned(text));
                        }
                    }
                }
            }
            [b'Z', ..] | b"TCD" | b"SID" => {}
            _ => self.comments_open = false,
        }
        Ok(())
    }

    /// End the current order group: its results get their specimen.
    fn close_group(&mut self) {
        let Some(group) = self.group.take() else { return };
        let Group { order, specimen } = group;
        let start = self.results.len().saturating_sub(self.observed.len());
        let group = self.results.get_mut(start..).unwrap_or_default();
        for (result, observed) in group.iter_mut().zip(self.observed.drain(..)) {
            result.sample_id = specimen.as_ref().and_then(|s| s.sample_id.clone()).or_else(|| order.sample_id.clone());
            result.collected_at = specimen.as_ref().and_then(|s| s.collected).or(order.collected).or(observed);
            result.qc = specimen.as_ref().is_some_and(|s| s.qc);
            result.specimen_type = specimen.as_ref().and_then(|s| s.kind.clone());
        }
    }
}

fn read_order<'a>(r: &mut Reader<'a>, seg: Piece<'a>) -> Step<Order<'a>> {
    let f = Fields::split_upto(seg.bytes, r.d.field, 22);
    let filler = r.component(f.get(3), 0);
    let placer = r.component(f.get(2), 0);
    let sample_id = match r.ident(filler) {
        Some(id) => Some(id),
        None => r.ident(placer),
    };
    let collected = r.timestamp(r.component(f.get(7), 0), "OBR-7")?;
    let resulted = r.timestamp(r.component(f.get(22), 0), "OBR-22")?;
    Ok(Order { sample_id, collected, resulted })
}

fn read_specimen<'a>(r: &mut Reader<'a>, seg: Piece<'a>) -> Step<Specimen<'a>> {
    let f = Fields::split_upto(seg.bytes, r.d.field, 17);
    let sub = r.d.subcomponent;
    // SPM-2 is EIP: placer EI ^ filler EI, each EI in sub-components.
    let filler = piece(r.component(f.get(2), 1), sub, 0);
    let placer = piece(r.component(f.get(2), 0), sub, 0);
    let sample_id = match r.ident(filler) {
        Some(id) => Some(id),
        None => r.ident(placer),
    };
    // SPM-17 is DR: range start ^ range end; the start may carry a precision
    // sub-component.
    let collected = r.timestamp(piece(r.component(f.get(17), 0), sub, 0), "SPM-17")?;
    let role = f.get(11);
    let qc = !is_null(role)
        && role
            .split(|&b| b == r.d.repetition)
            .any(|rep| trim_ascii(piece(rep, r.d.component, 0)).eq_ignore_ascii_case(b"Q"));
    let kind = if is_null(f.get(4)) { None } else { r.text(piece(f.get(4), r.d.repetition, 0), true) };
    Ok(Specimen { sample_id, collected, qc, kind })
}

/// Remove trailing component and sub-component separators (empty trailing
/// components: `<^0.02^` is `<^0.02`).
fn trim_trailing_components<'a>(raw: &'a [u8], d: &Delimiters) -> &'a [u8] {
    let keep = raw.iter().rposition(|&b| b != d.component && b != d.subcomponent).map_or(0, |i| i + 1);
    raw.get(..keep).unwrap_or_default()
}

fn read_result<'a>(
    r: &mut Reader<'a>,
    seg: Piece<'a>,
    order: &Order<'a>,
    sender: &Option<Cow<'a, str>>,
    patient: &[Cow<'a, str>],
) -> Step<(ResultView<'a>, Option<Timestamp>)> {
    let d = r.d;
    let f = Fields::split_upto(seg.bytes, d.field, 19);
    let value_type = trim_ascii(r.component(f.get(2), 0));
    let is_type = |name: &str| value_type.eq_ignore_ascii_case(name.as_bytes());
    let obx5 = f.get(5);
    let mut result = ResultView {
        sender: sender.clone(),
        patient_ids: patient.to_vec(),
        test_code: r.ident(r.component(f.get(3), 0)),
        offset: seg.offset,
        ..ResultView::default()
    };

    if !obx5.is_empty() && !is_null(obx5) {
        if memchr(d.repetition, obx5).is_some() {
            if is_type("NM") {
                return Err(Fail {
                    offset: r.at(obx5),
                    text: format!(
                        "OBX-5: expected one value for OBX-2 NM, found repetitions separated by {}",
                        char::from(d.repetition)
                    ),
                });
            }
            r.warn(r.at(obx5), "OBX-5: only the first repetition is read");
        }
        if value_type.is_empty() {
            r.warn(r.at(f.get(2)), "OBX-2 value type is empty; OBX-5 read as text");
        } else if !VALUE_TYPES.iter().any(|&t| is_type(t)) {
            let text =
                format!("OBX-2 value type \"{}\" is not an HL7 value type; OBX-5 read as text", show(value_type));
            r.warn(r.at(f.get(2)), text);
        }
        let first = piece(obx5, d.repetition, 0);
        result.value = r.text(trim_trailing_components(first, &d), true);
        if is_type("SN") {
            let (comparator, numeric) = structured_numeric(r, first);
            result.comparator = comparator;
            result.numeric = numeric;
        } else if let Some(text) = result.value.as_deref() {
            let (comparator, numeric) = value::interpret(text, r.opts.decimal_comma);
            if is_type("NM") {
                if numeric.is_none() {
                    r.warn(r.at(obx5), format!("OBX-5: NM value \"{}\" is not a number", show(text.as_bytes())));
                } else if comparator.is_some() {
                    r.warn(
                        r.at(obx5),
                        format!("OBX-5: NM value \"{}\" has a comparator (SN expected)", show(text.as_bytes())),
                    );
                }
            }
            result.comparator = comparator;
            result.numeric = numeric;
        }
    }

    result.unit = r.ident(r.component(f.get(6), 0));
    // `""` is HL7's explicit null: no range, not the text `""`.
    result.reference_range = if is_null(f.get(7)) { None } else { r.ident(f.get(7)) };
    result.flags = read_flags(r, f.get(8));
    result.status = r.ident(r.component(f.get(11), 0));
    let observed = r.timestamp(r.component(f.get(14), 0), "OBX-14")?;
    let analysed = r.timestamp(r.component(f.get(19), 0), "OBX-19")?;
    result.resulted_at = analysed.or(order.resulted);
    Ok((result, observed))
}

/// SN: `comparator ^ num1 ^ separator/suffix ^ num2`. The number is num1,
/// and only when there is no separator and no num2 (a range, ratio or
/// categorical value has no single number).
fn structured_numeric<'a>(r: &mut Reader<'a>, first: &'a [u8]) -> (Option<Comparator>, Option<Number>) {
    let comp = r.d.component;
    let symbol_raw = piece(first, comp, 0);
    let number_raw = piece(first, comp, 1);
    let separator = trim_ascii(piece(first, comp, 2));
    let second = trim_ascii(piece(first, comp, 3));
    let symbol = r.decode(symbol_raw, false);
    let symbol = symbol.trim();
    let comparator = Comparator::from_symbol(symbol);
    // `<>` (not equal) and unknown symbols make the number not a value.
    let plain = symbol.is_empty() || symbol == "=" || comparator.is_some();
    if !plain {
        let text =
            format!("OBX-5: SN comparator \"{}\" is not one of > < >= <= =; no number read", show(symbol.as_bytes()));
        r.warn(r.at(symbol_raw), text);
    }
    let numeric = if plain && separator.is_empty() && second.is_empty() {
        let text = r.decode(number_raw, false);
        Number::parse(&text, r.opts.decimal_comma)
    } else {
        None
    };
    (comparator, numeric)
}

/// OBX-8: component 1 of each repetition, joined with `~`.
fn read_flags<'a>(r: &mut Reader<'a>, field: &'a [u8]) -> Option<Cow<'a, str>> {
    if field.is_empty() || is_null(field) {
        return None;
    }
    let Delimiters { repetition, component, .. } = r.d;
    if find(repetition, field).is_none() {
        return r.ident(piece(field, component, 0));
    }
    let mut flags = String::new();
    for rep in field.split(|&b| b == repetition) {
        if let Some(flag) = r.ident(piece(rep, component, 0)) {
            if !flags.is_empty() {
                flags.push('~');
            }
            flags.push_str(&flag);
        }
    }
    (!flags.is_empty()).then_some(Cow::Owned(flags))
}
