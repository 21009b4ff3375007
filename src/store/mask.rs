//! Masking personal data in the stored copy of received content.
//!
//! The copy keeps its length, so every byte offset recorded elsewhere
//! (messages, observations, parse errors) still points at the same place.

use std::ops::Range;

/// The byte that replaces personal data.
pub const MASK_BYTE: u8 = b'*';

/// `bytes` with every byte inside any of `spans` replaced by `*`.
///
/// The result has the same length as `bytes`. Spans may overlap, come in any
/// order, be empty or reversed, or reach past the end: they are clipped to
/// the content, never a panic. In captured ASTM link framing, the checksum
/// of each frame masking changed is recomputed, so the copy still parses
/// (and a moved sample's patient ID reads back).
pub fn mask(bytes: &[u8], spans: &[Range<usize>]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for span in spans {
        let end = span.end.min(out.len());
        let start = span.start.min(end);
        if let Some(part) = out.get_mut(start..end) {
            part.fill(MASK_BYTE);
        }
    }
    crate::astm::frame::reseal(bytes, &mut out);
    out
}

/// The `raw.masked` text: field names in first-seen order, each once,
/// joined with `,` (`P.6,P.8`). Fields whose span masks nothing are left out.
pub(crate) fn masked_label<'a>(fields: impl IntoIterator<Item = (&'a str, &'a Range<usize>)>, len: usize) -> String {
    let mut names: Vec<&str> = Vec::new();
    for (name, span) in fields {
        let end = span.end.min(len);
        if span.start < end && !names.contains(&name) {
            names.push(name);
        }
    }
    names.join(",")
}

/// Below this many bytes a copy is kept as is: DEFLATE has nothing to win.
const PACK_FROM: usize = 128;

/// The form a masked copy is stored in: DEFLATE when that saves at least a
/// tenth, else as is (`None`).
pub(crate) fn pack(content: Vec<u8>) -> (Vec<u8>, Option<&'static str>) {
    if content.len() < PACK_FROM {
        return (content, None);
    }
    let packed = miniz_oxide::deflate::compress_to_vec(&content, 1);
    if packed.len() * 10 <= content.len() * 9 { (packed, Some("deflate")) } else { (content, None) }
}

/// The masked copy back from its stored form; `size` is its length.
pub(crate) fn unpack(stored: Vec<u8>, encoding: Option<&str>, size: i64) -> Result<Vec<u8>, String> {
    match encoding {
        None => Ok(stored),
        Some("deflate") => {
            let limit = usize::try_from(size).map_err(|_| format!("size {size}"))?;
            let content = miniz_oxide::inflate::decompress_to_vec_with_limit(&stored, limit)
                .map_err(|e| format!("cannot be inflated: {e:?}"))?;
            if content.len() == limit {
                Ok(content)
            } else {
                Err(format!("inflates to {} bytes, not {size}", content.len()))
            }
        }
        Some(other) => Err(format!("unknown encoding {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn masks_only_inside_the_spans_and_keeps_length() {
        let text = b"P|1||PAT-7||Doe^Jane||19800101|F\r";
        // "Doe^Jane" is bytes 12..20, the birth date 22..30.
        let masked = mask(text, &[12..20, 22..30]);
        assert_eq!(masked, b"P|1||PAT-7||********||********|F\r".to_vec());
        assert_eq!(masked.len(), text.len());
    }

    #[test]
    #[allow(clippy::single_range_in_vec_init)] // one span is a list of one span here
    fn out_of_range_reversed_and_empty_spans_are_clipped() {
        let text = b"abcdef";
        assert_eq!(mask(text, &[4..100]), b"abcd**".to_vec());
        assert_eq!(mask(text, &[50..60]), text.to_vec());
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = 5..2;
        assert_eq!(mask(text, &[reversed, 3..3]), text.to_vec());
        assert_eq!(mask(b"", &[0..10]), Vec::<u8>::new());
        assert_eq!(mask(text, &[0..2, 1..3]), b"***def".to_vec());
    }

    #[test]
    fn label_lists_each_field_once_in_order() {
        let spans = [0..2, 3..4, 5..6, 9..9, 100..200];
        let names = ["P.6", "P.8", "P.6", "P.13", "P.11"];
        let label = masked_label(names.iter().copied().zip(spans.iter()), 10);
        assert_eq!(label, "P.6,P.8");
    }

    proptest! {
        #[test]
        fn mask_never_panics_keeps_length_and_touches_only_spans(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            spans in proptest::collection::vec((0usize..80, 0usize..80), 0..6),
        ) {
            let ranges: Vec<Range<usize>> = spans.iter().map(|&(a, b)| a..b).collect();
            let masked = mask(&bytes, &ranges);
            prop_assert_eq!(masked.len(), bytes.len());
            // Link framing also gets new checksums: covered in astm::frame.
            if crate::astm::frame::is_link_capture(&bytes) {
                return Ok(());
            }
            for (i, (&before, &after)) in bytes.iter().zip(&masked).enumerate() {
                let inside = ranges.iter().any(|r| r.contains(&i));
                if inside {
                    prop_assert_eq!(after, MASK_BYTE);
                } else {
                    prop_assert_eq!(after, before);
                }
            }
        }
    }

    #[test]
    fn a_copy_is_deflated_only_when_it_pays_and_always_comes_back() {
        let short = b"H|\\^&|||e411\rL|1|N\r".to_vec();
        assert_eq!(pack(short.clone()), (short.clone(), None));
        let long: Vec<u8> = b"R|1|^^^CPEP|0.25|nmol/L||N||F||ADMIN|20260302100000\r".repeat(8);
        let (packed, encoding) = pack(long.clone());
        assert_eq!(encoding, Some("deflate"));
        assert!(packed.len() < long.len() / 2, "{} of {}", packed.len(), long.len());
        assert_eq!(unpack(packed.clone(), encoding, long.len() as i64).unwrap(), long);
        assert!(unpack(packed.clone(), encoding, 10).is_err(), "more than its size");
        assert!(unpack(b"not deflate".to_vec(), encoding, 100).is_err());
        assert!(unpack(packed, Some("zstd"), long.len() as i64).is_err());
    }
}
