//! Which parser a file needs, decided from its first bytes.

use crate::model::{Format, MessageError, MessageOutcome, MessageView, ParseOptions, UTF8_BOM, ViewOutcome};
use crate::{astm, hl7};

/// Guess the format from the first meaningful bytes: after a UTF-8 BOM and
/// white space, `MSH`/`FHS`/`BHS` or an MLLP start block (0x0B) mean HL7;
/// an ASTM header `H` followed by a delimiter, or E1381 link bytes (ENQ, STX,
/// EOT), mean ASTM.
pub fn detect(input: &[u8]) -> Option<Format> {
    let body = input.strip_prefix(UTF8_BOM).unwrap_or(input);
    let start = body.iter().position(|b| !b.is_ascii_whitespace())?;
    let head = body.get(start..)?;
    match head {
        [0x0B, ..] => Some(Format::Hl7),
        [b'M', b'S', b'H', ..] | [b'F', b'H', b'S', ..] | [b'B', b'H', b'S', ..] => Some(Format::Hl7),
        [0x02 | 0x04 | 0x05, ..] => Some(Format::Astm),
        [b'H' | b'h', d, ..] if !d.is_ascii_alphanumeric() && !d.is_ascii_whitespace() => Some(Format::Astm),
        _ => None,
    }
}

/// Parse a whole file, whatever its format, reporting each message in order.
/// Returns the format, or `None` when the bytes are neither ASTM nor HL7.
/// A file in which no message was found reports one error for the whole file.
pub fn parse_bytes(input: &[u8], opts: &ParseOptions, on_message: &mut dyn FnMut(MessageOutcome)) -> Option<Format> {
    parse_bytes_views(input, opts, &mut |outcome| on_message(outcome.map(MessageView::into_owned)))
}

/// [`parse_bytes`] with results that borrow from the input: the same
/// grammar, checks, warnings and errors; nothing is copied out unless the
/// caller does.
pub fn parse_bytes_views(
    input: &[u8],
    opts: &ParseOptions,
    on_message: &mut dyn FnMut(ViewOutcome<'_>),
) -> Option<Format> {
    let format = detect(input);
    let mut seen = 0usize;
    let mut count = |o: ViewOutcome<'_>| {
        seen += 1;
        on_message(o);
    };
    match format {
        Some(Format::Astm) => astm::parse_file_views(input, opts, &mut count),
        Some(Format::Hl7) => hl7::parse_file_views(input, opts, &mut count),
        None => {}
    }
    // A file with nothing to read (link control bytes only, an empty MLLP
    // frame or batch, blank, empty) is an error, never a clean "0 results".
    if seen == 0 {
        let offset = input.strip_prefix(UTF8_BOM).map_or(0, |_| UTF8_BOM.len());
        let rest = input.get(offset..).unwrap_or_default();
        let why = if rest.is_empty() {
            "the file is empty"
        } else if rest.iter().all(u8::is_ascii_whitespace) {
            "the file holds only blank space"
        } else if format.is_some() {
            "the file holds framing or envelope bytes but no message"
        } else {
            "expected an ASTM header record (H|\\^&…), ASTM link framing (ENQ/STX) or an HL7 message (MSH|^~\\&…)"
        };
        let text = format!("no ASTM or HL7 message found: {why}");
        on_message(Err(MessageError { number: 1, offset, span: 0..input.len(), text }));
    }
    format
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_by_first_meaningful_bytes() {
        assert_eq!(detect(b"H|\\^&|||x\rL|1\r"), Some(Format::Astm));
        assert_eq!(detect(b"H|@^\\|x\r"), Some(Format::Astm));
        assert_eq!(detect(b"\x05\x021H|\\^&\r\x03"), Some(Format::Astm));
        assert_eq!(detect(b"\xEF\xBB\xBF\r\nMSH|^~\\&|"), Some(Format::Hl7));
        assert_eq!(detect(b"\x0bMSH|^~\\&|"), Some(Format::Hl7));
        assert_eq!(detect(b"FHS|^~\\&|"), Some(Format::Hl7));
        assert_eq!(detect(b"Hello world"), None);
        assert_eq!(detect(b""), None);
        assert_eq!(detect(b"PID|1"), None);
    }
}
