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

#[cfg(test)]
mod tests {
    use super::*;

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
