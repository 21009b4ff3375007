//! Reading the number out of a reported value, without inventing one.
//!
//! `<0.010` is a comparator and a bound, not 0.010; `-1^0.750` and
//! `Nonreactive` are not numbers at all. Only a value that is exactly an
//! optional comparator followed by one decimal number yields a [`Number`].

use std::fmt;

use nom::branch::alt;
use nom::bytes::complete::tag;
use nom::character::complete::{digit0, digit1, one_of, space0};
use nom::combinator::{all_consuming, opt};
use nom::{IResult, Parser};
use serde::{Serialize, Serializer};

/// A censoring comparator in front of a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparator {
    Lt,
    Le,
    Gt,
    Ge,
}

impl Comparator {
    pub fn as_str(self) -> &'static str {
        match self {
            Comparator::Lt => "<",
            Comparator::Le => "<=",
            Comparator::Gt => ">",
            Comparator::Ge => ">=",
        }
    }

    /// The comparator spelled exactly `s` (HL7 SN component 1). `=` and `<>`
    /// are not censoring comparators and give `None`.
    pub fn from_symbol(s: &str) -> Option<Comparator> {
        match s.trim() {
            "<" => Some(Comparator::Lt),
            "<=" => Some(Comparator::Le),
            ">" => Some(Comparator::Gt),
            ">=" => Some(Comparator::Ge),
            _ => None,
        }
    }
}

impl fmt::Display for Comparator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Comparator {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A decimal number as reported, in canonical form: optional `-`, integer
/// digits without leading zeros, and the fraction digits as sent (so `0.010`
/// keeps its precision). The text is always a valid JSON number.
#[derive(Clone, PartialEq, Eq)]
pub struct Number {
    text: NumberText,
}

/// Numbers are parsed by the million, and nearly all are a few digits:
/// those are kept inline, so reading one allocates nothing. Inline exactly
/// when the text fits, so equal texts are equal values.
#[derive(Clone, PartialEq, Eq)]
enum NumberText {
    Inline { len: u8, bytes: [u8; INLINE_DIGITS] },
    Heap(Box<str>),
}

const INLINE_DIGITS: usize = 22;

impl fmt::Debug for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Number").field("text", &self.as_str()).finish()
    }
}

impl Number {
    /// Parse a plain decimal number (`1.23`, `+1.23`, `-0.5`, `.5`, `173.`,
    /// `0001.20`; `7,41` only with `decimal_comma`). Surrounding spaces are
    /// allowed; exponents, thousands separators and anything else are not.
    pub fn parse(text: &str, decimal_comma: bool) -> Option<Number> {
        let (sign, int, frac) = match plain_decimal(text.as_bytes()) {
            Some(parts) => parts,
            None => all_consuming(padded_number(decimal_comma)).parse(text.as_bytes()).ok()?.1,
        };
        Number::from_parts(sign, int, frac).finite()
    }

    /// Only numbers a float can hold: a 400-digit "number" is not a lab
    /// value, and most JSON readers refuse it (found by fuzzing).
    fn finite(self) -> Option<Number> {
        match self.text {
            // At most 22 digits: far inside what a float holds.
            NumberText::Inline { .. } => Some(self),
            NumberText::Heap(_) => self.to_f64().map(|_| self),
        }
    }

    fn from_parts(negative: bool, int: &[u8], frac: &[u8]) -> Number {
        let int = trim_leading_zeros(int);
        let int: &[u8] = if int.is_empty() { b"0" } else { int };
        let sign: &[u8] = if negative { b"-" } else { b"" };
        let point: &[u8] = if frac.is_empty() { b"" } else { b"." };
        let parts = [sign, int, point, frac];
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let text = match u8::try_from(len) {
            Ok(short) if len <= INLINE_DIGITS => {
                let mut bytes = [0; INLINE_DIGITS];
                // A few bytes each: a loop, not a call to memcpy per part.
                for (slot, &b) in bytes.iter_mut().zip(parts.iter().flat_map(|p| p.iter())) {
                    *slot = b;
                }
                NumberText::Inline { len: short, bytes }
            }
            _ => NumberText::Heap(parts.iter().flat_map(|p| p.iter().map(|&b| char::from(b))).collect()),
        };
        Number { text }
    }

    pub fn as_str(&self) -> &str {
        match &self.text {
            // Only ASCII digits, sign and point are ever stored.
            NumberText::Inline { len, bytes } => {
                bytes.get(..usize::from(*len)).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or_default()
            }
            NumberText::Heap(text) => text,
        }
    }

    /// The value as a float, for arithmetic; `None` if it does not fit.
    pub fn to_f64(&self) -> Option<f64> {
        self.as_str().parse::<f64>().ok().filter(|v| v.is_finite())
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Number {
    /// Written as a JSON number with the precision that was sent.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match serde_json::value::RawValue::from_string(self.as_str().to_owned()) {
            Ok(raw) => raw.serialize(s),
            Err(_) => s.serialize_str(self.as_str()),
        }
    }
}

fn trim_leading_zeros(digits: &[u8]) -> &[u8] {
    let first_nonzero = digits.iter().position(|&d| d != b'0');
    match first_nonzero {
        Some(i) => digits.get(i..).unwrap_or_default(),
        None => &[],
    }
}

type Parts<'a> = (bool, &'a [u8], &'a [u8]);

/// The parts of the shape nearly every value has, digits with or without a
/// fraction (`142`, `0.010`), found without the general grammar, which
/// costs several times more; `None` for anything else (signs, spaces,
/// comparators, commas), which the grammar then reads. A property test
/// holds the two to the same parts.
fn plain_decimal(b: &[u8]) -> Option<Parts<'_>> {
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    let (int, frac) = match crate::scan::find(b'.', b) {
        Some(point) => (b.get(..point)?, b.get(point + 1..)?),
        None => (b, &b""[..]),
    };
    // With a point, digits must follow it (`173.` is for the grammar).
    let point = int.len() < b.len();
    (digits(int) && (!point || digits(frac))).then_some((false, int, frac))
}

// number = ["+" / "-"] (1*DIGIT [point *DIGIT] / point 1*DIGIT)
// point  = "." / "," (with --decimal-comma)
fn number<'a>(decimal_comma: bool) -> impl Parser<&'a [u8], Output = Parts<'a>, Error = nom::error::Error<&'a [u8]>> {
    move |i: &'a [u8]| -> IResult<&'a [u8], Parts<'a>> {
        let point = if decimal_comma { ",." } else { "." };
        let (i, sign) = opt(one_of("+-")).parse(i)?;
        let (i, (int, frac)) = alt((
            (digit1, opt((one_of(point), digit0)).map(|f| f.map_or(&b""[..], |(_, d)| d))),
            (digit0, (one_of(point), digit1).map(|(_, d)| d)),
        ))
        .parse(i)?;
        Ok((i, (sign == Some('-'), int, frac)))
    }
}

// padded = *SP number *SP
fn padded_number<'a>(
    decimal_comma: bool,
) -> impl Parser<&'a [u8], Output = Parts<'a>, Error = nom::error::Error<&'a [u8]>> {
    (space0, number(decimal_comma), space0).map(|(_, n, _)| n)
}

// comparator = "<=" / ">=" / "<" / ">"
fn comparator(i: &[u8]) -> IResult<&[u8], Comparator> {
    alt((
        tag("<=").map(|_| Comparator::Le),
        tag(">=").map(|_| Comparator::Ge),
        tag("<").map(|_| Comparator::Lt),
        tag(">").map(|_| Comparator::Gt),
    ))
    .parse(i)
}

/// The comparator and number in a reported text value.
///
/// `value = *SP [comparator *SP] number *SP`. A value that is not of this
/// shape gives `(comparator, None)` when it starts with a comparator
/// (`<LLOQ`) and `(None, None)` otherwise: the number is never guessed.
pub fn interpret(value: &str, decimal_comma: bool) -> (Option<Comparator>, Option<Number>) {
    let input = value.as_bytes();
    match plain_decimal(input) {
        Some((sign, int, frac)) => (None, Number::from_parts(sign, int, frac).finite()),
        None => interpret_by_grammar(value, decimal_comma),
    }
}

/// [`interpret`] without the shortcut for plain decimals.
fn interpret_by_grammar(value: &str, decimal_comma: bool) -> (Option<Comparator>, Option<Number>) {
    let input = value.as_bytes();
    let (rest, cmp) = match (space0::<_, nom::error::Error<&[u8]>>, opt(comparator)).map(|(_, c)| c).parse(input) {
        Ok(ok) => ok,
        Err(_) => (input, None),
    };
    // `<>5` or `<=>5` is not a censored value: no comparator, no number.
    if cmp.is_some() && matches!(rest.first(), Some(b'<' | b'>' | b'=')) {
        return (None, None);
    }
    let number = all_consuming(padded_number(decimal_comma))
        .parse(rest)
        .ok()
        .and_then(|(_, (sign, int, frac))| Number::from_parts(sign, int, frac).finite());
    (cmp, number)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(s: &str) -> Option<String> {
        Number::parse(s, false).map(|n| n.as_str().to_owned())
    }

    #[test]
    fn plain_numbers_keep_their_precision() {
        assert_eq!(num("1.23").as_deref(), Some("1.23"));
        assert_eq!(num("+1.23").as_deref(), Some("1.23"));
        assert_eq!(num("-0.5").as_deref(), Some("-0.5"));
        assert_eq!(num(".5").as_deref(), Some("0.5"));
        assert_eq!(num("173.").as_deref(), Some("173"));
        assert_eq!(num("0001.20").as_deref(), Some("1.20"));
        assert_eq!(num("0.010").as_deref(), Some("0.010"));
        assert_eq!(num(" 1.23 ").as_deref(), Some("1.23"));
        assert_eq!(num("0").as_deref(), Some("0"));
    }

    #[test]
    fn things_that_are_not_numbers_give_none() {
        let huge = "9".repeat(400);
        for s in ["", " ", "1.2E3", "1.2.3", "-----", "Nonreactive", "-1^0.750", "1,23", ".", "+", "1 2", "0x10", &huge]
        {
            assert_eq!(num(s), None, "{s:?}");
        }
    }

    #[test]
    fn decimal_comma_only_when_asked() {
        assert_eq!(Number::parse("7,41", true).map(|n| n.to_string()).as_deref(), Some("7.41"));
        assert_eq!(Number::parse("7.41", true).map(|n| n.to_string()).as_deref(), Some("7.41"));
        assert_eq!(Number::parse("7,41", false), None);
    }

    #[test]
    fn comparators_are_read_and_numbers_not_invented() {
        let f = |s: &str| {
            let (c, n) = interpret(s, false);
            (c.map(|c| c.as_str()), n.map(|n| n.to_string()))
        };
        assert_eq!(f("<0.010"), (Some("<"), Some("0.010".into())));
        assert_eq!(f("> 15000.00"), (Some(">"), Some("15000.00".into())));
        assert_eq!(f(">=200"), (Some(">="), Some("200".into())));
        assert_eq!(f("<= 0.02"), (Some("<="), Some("0.02".into())));
        assert_eq!(f("<LLOQ"), (Some("<"), None));
        assert_eq!(f("142"), (None, Some("142".into())));
        assert_eq!(f("-1^0.750"), (None, None));
        assert_eq!(f("TNP"), (None, None));
        assert_eq!(f("<>5"), (None, None));
        assert_eq!(f("=5"), (None, None));
    }

    #[test]
    fn numbers_serialize_as_json_numbers() {
        let n = Number::parse("0.010", false);
        assert_eq!(serde_json::to_string(&n).ok().as_deref(), Some("0.010"));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any well-formed decimal reads back as the same value, and its
        /// canonical text reads back unchanged.
        #[test]
        fn canonical_numbers_round_trip(neg in any::<bool>(), int in "[0-9]{0,20}", frac in "[0-9]{0,12}", pad in " {0,2}") {
            prop_assume!(!int.is_empty() || !frac.is_empty());
            let text = format!("{pad}{}{int}{}{frac}{pad}", if neg { "-" } else { "" }, if frac.is_empty() { "" } else { "." });
            let n = Number::parse(&text, false).expect("a decimal parses");
            // Short texts are kept inline, long ones on the heap: both spell it the same.
            let digits = int.trim_start_matches('0');
            let canonical = format!(
                "{}{}{}{frac}",
                if neg { "-" } else { "" },
                if digits.is_empty() { "0" } else { digits },
                if frac.is_empty() { "" } else { "." }
            );
            prop_assert_eq!(n.as_str(), canonical.as_str());
            let expected: f64 = text.trim().parse().expect("std parses it too");
            prop_assert_eq!(n.to_f64(), Some(expected));
            let again = Number::parse(n.as_str(), false);
            prop_assert_eq!(again.as_ref(), Some(&n));
            prop_assert!(serde_json::from_str::<serde_json::Value>(n.as_str()).is_ok_and(|v| v.is_number()));
        }

        /// The shortcut for plain decimals finds exactly the parts the
        /// grammar finds, with or without the decimal comma, and declines
        /// everything else.
        #[test]
        fn plain_decimals_read_as_the_grammar_does(text in "[0-9]{0,4}([.,][0-9]{0,3})?|[0-9 .,+<-]{0,8}", comma in any::<bool>()) {
            let bytes = text.as_bytes();
            let grammar = all_consuming(padded_number(comma)).parse(bytes).ok().map(|(_, parts)| parts);
            match plain_decimal(bytes) {
                Some(parts) => prop_assert_eq!(Some(parts), grammar),
                None => {
                    let plain = text.split_once('.').map_or((text.as_str(), None), |(i, f)| (i, Some(f)));
                    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
                    prop_assert!(!(digits(plain.0) && plain.1.is_none_or(digits)), "{text:?} declined");
                }
            }
            prop_assert_eq!(interpret(&text, comma), interpret_by_grammar(&text, comma));
        }

        /// No text makes the reader panic, and a number is only returned for
        /// text that holds exactly one decimal.
        #[test]
        fn interpret_never_invents_a_number(text in "\\PC{0,24}", comma in any::<bool>()) {
            let (_, n) = interpret(&text, comma);
            if let Some(n) = n {
                let digits = text.chars().filter(char::is_ascii_digit).count();
                prop_assert!(digits >= 1);
                prop_assert!(!text.chars().any(|c| c.is_alphabetic()), "{text:?} gave {n}");
            }
        }
    }
}
