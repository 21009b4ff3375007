//! Date/times as analyzers send them (ASTM E1394 §5.6.2, HL7 DTM), kept at the
//! precision they were sent with.
//!
//! No time zone is assumed here: a time without an offset stays without one,
//! and the study layer applies the site's zone.

use std::fmt;

use nom::bytes::complete::{tag, take_while_m_n};
use nom::character::complete::{digit1, one_of};
use nom::combinator::{all_consuming, opt};
use nom::sequence::preceded;
use nom::{IResult, Parser};
use serde::{Serialize, Serializer};

/// A calendar date/time at the precision given, with the UTC offset only if
/// the source carried one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    pub year: u16,
    pub month: Option<u8>,
    pub day: Option<u8>,
    pub hour: Option<u8>,
    pub minute: Option<u8>,
    pub second: Option<u8>,
    /// Fraction of a second as sent: (digits as an integer, number of digits).
    pub fraction: Option<(u16, u8)>,
    /// Offset from UTC in minutes, when the source carried `+HHMM`/`-HHMM`.
    pub offset_minutes: Option<i16>,
}

/// Why a date/time text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a date/time YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ], found {found:?}")]
pub struct TimestampError {
    pub found: String,
}

type Parts<'a> = (&'a [u8], Option<&'a [u8]>, Option<(char, &'a [u8])>);

// dtm    = 4*14DIGIT ["." 1*4DIGIT] [offset]   ; 4, 6, 8, 10, 12 or 14 digits: Y, M, D, h, m, s
// offset = ("+" / "-") 4DIGIT
fn dtm(i: &[u8]) -> IResult<&[u8], Parts<'_>> {
    (digit1, opt(preceded(tag("."), digit1)), opt((one_of("+-"), take_while_m_n(4, 4, |b: u8| b.is_ascii_digit()))))
        .parse(i)
}

/// The parts of the shape nearly every analyzer sends, `YYYYMMDDHHMMSS`
/// with or without `+HHMM`, found without the general grammar (which costs
/// several times more); `None` for any other text, which [`dtm`] then reads.
/// A property test holds the two to the same parts.
fn common_shape(b: &[u8]) -> Option<Parts<'_>> {
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let (stamp, rest) = b.split_at_checked(14)?;
    if !digits(stamp) {
        return None;
    }
    match rest {
        [] => Some((stamp, None, None)),
        [sign @ (b'+' | b'-'), hhmm @ ..] if hhmm.len() == 4 && digits(hhmm) => {
            Some((stamp, None, Some((char::from(*sign), hhmm))))
        }
        _ => None,
    }
}

/// The number in `digits[at..at + n]` (ASCII digits already checked).
fn number(digits: &[u8], at: usize, n: usize) -> Option<u16> {
    digits.get(at..at + n).map(|d| d.iter().fold(0u16, |acc, &b| acc * 10 + u16::from(b - b'0')))
}

impl Timestamp {
    /// Parse `YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]`, surrounding
    /// spaces allowed. Empty text gives `Ok(None)`. Impossible dates
    /// (`20230230`, hour 24) are errors, never silently moved.
    pub fn parse(text: &str) -> Result<Option<Timestamp>, TimestampError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Ok(None);
        }
        let err = || TimestampError { found: text.to_owned() };
        let (digits, fraction, offset) = match common_shape(trimmed.as_bytes()) {
            Some(parts) => parts,
            None => all_consuming(dtm).parse(trimmed.as_bytes()).map_err(|_| err())?.1,
        };
        if !matches!(digits.len(), 4 | 6 | 8 | 10 | 12 | 14) {
            return Err(err());
        }
        let part = |at: usize| if digits.len() > at { number(digits, at, 2).map(|v| v as u8) } else { None };
        let fraction = match fraction {
            None => None,
            Some(f) if digits.len() == 14 && f.len() <= 4 => number(f, 0, f.len()).map(|v| (v, f.len() as u8)),
            Some(_) => return Err(err()),
        };
        let offset_minutes = match offset {
            None => None,
            Some((sign, hhmm)) => {
                let (hours, minutes) = (number(hhmm, 0, 2).ok_or_else(err)?, number(hhmm, 2, 2).ok_or_else(err)?);
                if minutes > 59 {
                    return Err(err());
                }
                let total = (hours * 60 + minutes) as i16;
                Some(if sign == '-' { -total } else { total })
            }
        };
        let ts = Timestamp {
            year: number(digits, 0, 4).ok_or_else(err)?,
            month: part(4),
            day: part(6),
            hour: part(8),
            minute: part(10),
            second: part(12),
            fraction,
            offset_minutes,
        };
        if ts.is_valid() { Ok(Some(ts)) } else { Err(err()) }
    }

    fn is_valid(&self) -> bool {
        let month_ok = self.month.is_none_or(|m| (1..=12).contains(&m));
        let day_ok = match (self.month, self.day) {
            (Some(m), Some(d)) => d >= 1 && d <= days_in_month(self.year, m),
            _ => true,
        };
        let offset_ok = self.offset_minutes.is_none_or(|o| o.abs() <= 14 * 60);
        month_ok
            && day_ok
            && self.hour.is_none_or(|h| h <= 23)
            && self.minute.is_none_or(|m| m <= 59)
            && self.second.is_none_or(|s| s <= 59)
            && offset_ok
    }

    /// ISO 8601 at the precision given: `2026-03-02`, `2026-03-02T08:45`,
    /// `2026-03-02T08:45:00.12+01:00`.
    pub fn to_iso(&self) -> String {
        self.to_string()
    }
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => 29,
        2 => 28,
        _ => 0,
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}", self.year)?;
        if let Some(m) = self.month {
            write!(f, "-{m:02}")?;
        }
        if let Some(d) = self.day {
            write!(f, "-{d:02}")?;
        }
        if let Some(h) = self.hour {
            write!(f, "T{h:02}")?;
        }
        if let Some(m) = self.minute {
            write!(f, ":{m:02}")?;
        }
        if let Some(s) = self.second {
            write!(f, ":{s:02}")?;
        }
        if let Some((value, width)) = self.fraction {
            write!(f, ".{value:0width$}", width = usize::from(width))?;
        }
        if let Some(o) = self.offset_minutes {
            let sign = if o < 0 { '-' } else { '+' };
            write!(f, "{sign}{:02}:{:02}", o.abs() / 60, o.abs() % 60)?;
        }
        Ok(())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iso(s: &str) -> Result<Option<String>, TimestampError> {
        Timestamp::parse(s).map(|t| t.map(|t| t.to_iso()))
    }

    #[test]
    fn precision_is_kept() {
        assert_eq!(iso("2026").unwrap().as_deref(), Some("2026"));
        assert_eq!(iso("202603").unwrap().as_deref(), Some("2026-03"));
        assert_eq!(iso("20260302").unwrap().as_deref(), Some("2026-03-02"));
        assert_eq!(iso("2026030208").unwrap().as_deref(), Some("2026-03-02T08"));
        assert_eq!(iso("202603020845").unwrap().as_deref(), Some("2026-03-02T08:45"));
        assert_eq!(iso("20260302084500").unwrap().as_deref(), Some("2026-03-02T08:45:00"));
        assert_eq!(iso("20260311081200.1234").unwrap().as_deref(), Some("2026-03-11T08:12:00.1234"));
        assert_eq!(iso("20260311081200.05").unwrap().as_deref(), Some("2026-03-11T08:12:00.05"));
    }

    #[test]
    fn offsets_only_when_sent() {
        assert_eq!(iso("20260311081200-0800").unwrap().as_deref(), Some("2026-03-11T08:12:00-08:00"));
        assert_eq!(iso("201410231322-0600").unwrap().as_deref(), Some("2014-10-23T13:22-06:00"));
        assert_eq!(iso("20260311081200+0530").unwrap().as_deref(), Some("2026-03-11T08:12:00+05:30"));
        assert_eq!(iso("20260311081200+0000").unwrap().as_deref(), Some("2026-03-11T08:12:00+00:00"));
    }

    #[test]
    fn empty_is_none_and_impossible_dates_are_errors() {
        assert_eq!(iso("").unwrap(), None);
        assert_eq!(iso("  ").unwrap(), None);
        for bad in [
            "20230230",
            "196203520",
            "2026131",
            "20261301",
            "2026030224",
            "202603020860",
            "2026-03-02",
            "x",
            "20240229000000+2400",
        ] {
            assert!(iso(bad).is_err(), "{bad}");
        }
        assert_eq!(iso("20240229").unwrap().as_deref(), Some("2024-02-29"));
        assert!(iso("20230229").is_err());
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Every valid compact date/time prints as ISO 8601 whose digits are
        /// exactly the ones sent, in order.
        #[test]
        fn iso_output_keeps_every_digit(year in 1900u16..2100, month in 1u8..=12, day in 1u8..=28, hour in 0u8..24, minute in 0u8..60, second in 0u8..60, cut in 0usize..6, offset in proptest::option::of(-720i16..=840)) {
            let full = format!("{year:04}{month:02}{day:02}{hour:02}{minute:02}{second:02}");
            let len = [4, 6, 8, 10, 12, 14][cut];
            let mut text = full[..len].to_owned();
            if let Some(o) = offset {
                text.push_str(&format!("{}{:02}{:02}", if o < 0 { '-' } else { '+' }, o.abs() / 60, o.abs() % 60));
            }
            let ts = Timestamp::parse(&text).expect("valid").expect("not empty");
            let digits: String = ts.to_iso().chars().filter(char::is_ascii_digit).collect();
            let sent: String = text.chars().filter(char::is_ascii_digit).collect();
            prop_assert_eq!(digits, sent);
            prop_assert_eq!(ts.offset_minutes, offset);
        }

        /// The shortcut for the common shape finds exactly the parts the
        /// grammar finds, and declines what is not that shape.
        #[test]
        fn common_shape_reads_as_the_grammar_does(text in "[0-9]{12,16}([-+.][0-9]{0,5})?|[0-9+\\-. a]{0,22}") {
            let bytes = text.as_bytes();
            if let Some(parts) = common_shape(bytes) {
                prop_assert_eq!(Some(parts), all_consuming(dtm).parse(bytes).ok().map(|(_, parts)| parts));
            } else {
                let matches_shape = bytes.len() == 14 && bytes.iter().all(u8::is_ascii_digit)
                    || bytes.len() == 19 && bytes.iter().enumerate().all(|(i, b)| if i == 14 { matches!(b, b'+' | b'-') } else { b.is_ascii_digit() });
                prop_assert!(!matches_shape, "{text:?} declined");
            }
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,30}") {
            let _ = Timestamp::parse(&text);
        }
    }
}

impl Timestamp {
    /// Read back the ISO 8601 text this type prints (`2026-03-02T08:45`,
    /// `2026-03-11T08:12:00-08:00`), e.g. from the database.
    pub fn from_iso(text: &str) -> Option<Timestamp> {
        // `Display` writes an offset as the last six characters (`+05:30`),
        // after a date-only value too (`2026-03-02-05:00`); no offset-free
        // text has that shape.
        let offset_at = text.len().checked_sub(6).filter(|&at| {
            let b = text.as_bytes();
            matches!(b.get(at), Some(b'+' | b'-')) && b.get(at + 3) == Some(&b':')
        });
        let (body, offset) = match offset_at {
            Some(at) => (text.get(..at)?, text.get(at..)?),
            None => (text, ""),
        };
        let compact: String = body.chars().filter(|c| !matches!(c, '-' | ':' | 'T')).collect();
        let offset: String = offset.chars().filter(|&c| c != ':').collect();
        Timestamp::parse(&format!("{compact}{offset}")).ok().flatten()
    }

    /// Whether the time of day is known at least to the minute.
    pub fn has_minutes(&self) -> bool {
        self.minute.is_some()
    }

    /// The instant this time denotes: with its own offset when it carried one,
    /// else read as civil time in `zone`. `None` when coarser than minutes
    /// (a date alone says nothing about an MMTT draw) or not representable.
    pub fn to_instant(&self, zone: &jiff::tz::TimeZone) -> Option<jiff::Timestamp> {
        let civil = self.to_civil()?;
        match self.offset_minutes {
            Some(minutes) => jiff::tz::Offset::from_seconds(i32::from(minutes) * 60).ok()?.to_timestamp(civil).ok(),
            None => zone.to_timestamp(civil).ok(),
        }
    }

    /// The wall-clock reading, ignoring any offset. `None` when coarser than
    /// minutes or not representable.
    pub fn to_civil(&self) -> Option<jiff::civil::DateTime> {
        jiff::civil::DateTime::new(
            i16::try_from(self.year).ok()?,
            i8::try_from(self.month?).ok()?,
            i8::try_from(self.day?).ok()?,
            i8::try_from(self.hour?).ok()?,
            i8::try_from(self.minute?).ok()?,
            i8::try_from(self.second.unwrap_or(0)).ok()?,
            0,
        )
        .ok()
    }
}

#[cfg(test)]
mod instant_tests {
    use super::*;

    #[test]
    fn local_times_use_the_study_zone_and_offsets_win() {
        let zone = jiff::tz::TimeZone::get("Europe/Stockholm").unwrap();
        let local = Timestamp::parse("20260302084500").unwrap().unwrap();
        assert_eq!(local.to_instant(&zone).unwrap().to_string(), "2026-03-02T07:45:00Z");
        let summer = Timestamp::parse("202607020845").unwrap().unwrap();
        assert_eq!(summer.to_instant(&zone).unwrap().to_string(), "2026-07-02T06:45:00Z");
        let offset = Timestamp::parse("20260311081200-0800").unwrap().unwrap();
        assert_eq!(offset.to_instant(&zone).unwrap().to_string(), "2026-03-11T16:12:00Z");
        assert_eq!(Timestamp::parse("20260302").unwrap().unwrap().to_instant(&zone), None);
    }

    #[test]
    fn iso_text_reads_back() {
        for compact in [
            "2026",
            "202603",
            "20260302",
            "2026030208",
            "202603020845",
            "20260302084500",
            "20260311081200.12-0800",
            "201410231322+0530",
            "20260302-0500",
            "2026030208+0100",
        ] {
            let ts = Timestamp::parse(compact).unwrap().unwrap();
            assert_eq!(Timestamp::from_iso(&ts.to_iso()), Some(ts), "{compact}");
        }
        assert_eq!(Timestamp::from_iso("not a time"), None);
    }
}
