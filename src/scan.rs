//! Byte searches for the short fields of lab messages.

use memchr::memchr;

/// Position of `b` in `s`. Delimiters are usually a few bytes apart, where
/// a plain loop beats the set-up cost of a vectorised search; past the first
/// bytes (a long field, a 5 MB OBX-5) `memchr` takes over.
#[inline]
pub(crate) fn find(b: u8, s: &[u8]) -> Option<usize> {
    const NEAR: usize = 32;
    let (near, far) = s.split_at_checked(NEAR).unwrap_or((s, &[]));
    match near.iter().position(|&x| x == b) {
        Some(i) => Some(i),
        None if far.is_empty() => None,
        None => memchr(b, far).map(|i| i + NEAR),
    }
}

/// Call `found` with the position of every `b` in `s`, in order, until it
/// returns false. Eight bytes per step as a `u64` (SWAR: a byte equal to `b`
/// becomes a zero byte, and the zero-byte test marks it), so splitting a
/// segment into fields costs about a cycle per byte without `unsafe`.
#[inline]
pub(crate) fn for_each_byte(s: &[u8], b: u8, mut found: impl FnMut(usize) -> bool) {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    let pattern = ONES * u64::from(b);
    let mut chunks = s.chunks_exact(8);
    let mut base = 0;
    for chunk in chunks.by_ref() {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8])) ^ pattern;
        // Exact zero-byte mask: no false positives from borrows.
        let mut hits = !(((word & !HIGHS) + !HIGHS) | word | !HIGHS);
        while hits != 0 {
            let at = base + (hits.trailing_zeros() / 8) as usize;
            if !found(at) {
                return;
            }
            hits &= hits - 1;
        }
        base += 8;
    }
    for (i, &x) in chunks.remainder().iter().enumerate() {
        if x == b && !found(base + i) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swar_search_finds_every_byte_exactly() {
        for len in 0..40 {
            let text: Vec<u8> = (0..len).map(|i| if i % 3 == 0 { b'|' } else { 0x80 | (i as u8) }).collect();
            let mut seen = Vec::new();
            for_each_byte(&text, b'|', |at| {
                seen.push(at);
                true
            });
            let expected: Vec<usize> = (0..len).filter(|i| i % 3 == 0).collect();
            assert_eq!(seen, expected, "len {len}");
        }
        let mut first = None;
        for_each_byte(b"a|b|c", b'|', |at| {
            first = Some(at);
            false
        });
        assert_eq!(first, Some(1));
    }

    #[test]
    fn finds_the_first_byte_near_and_far() {
        for len in [0, 1, 31, 32, 33, 100] {
            let mut text = vec![b'a'; len];
            assert_eq!(find(b'|', &text), None, "len {len}");
            for at in [0, 5, 31, 32, 40, 99].into_iter().filter(|&at| at < len) {
                text[at] = b'|';
                let first = text.iter().position(|&b| b == b'|');
                assert_eq!(find(b'|', &text), first, "len {len}, at {at}");
            }
        }
    }
}
