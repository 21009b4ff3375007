//! Local times in the study zone across daylight-saving transitions (SPEC §7
//! "Local times").
//!
//! A local time can name no instant (the hour skipped when clocks go
//! forward) or two (the hour repeated when they go back). A meal start must
//! name exactly one, so a repeated one needs its offset; a collection time
//! without an offset in a repeated hour is read as the occurrence nearer to
//! its nominal minute.
//!
//! Pure: the zone and the nominal time come in; no clock, no database.

use std::fmt;
use std::str::FromStr;

use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, Offset, TimeZone};

/// A local date and time in the study zone, with the UTC offset when one was
/// given: the offset is what tells the two occurrences of a repeated hour apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalTime {
    civil: DateTime,
    offset: Option<Offset>,
}

/// Why a text is not a local date and time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{found:?} is not a local date and time like 2026-03-02T08:30 (optionally with its offset, 2026-10-25T02:30+01:00)"
)]
pub struct LocalTimeSyntaxError {
    pub found: String,
}

/// How often a local time occurs in a zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occurrence {
    Once(Offset),
    /// Skipped: the clocks jumped from `before` to `after` over it.
    Skipped {
        before: Offset,
        after: Offset,
    },
    /// Repeated: first at `first`, then again at `second`.
    Twice {
        first: Offset,
        second: Offset,
    },
}

impl Occurrence {
    /// The offsets the zone has at this local time, in the order they occur.
    pub fn offsets(self) -> Vec<Offset> {
        match self {
            Occurrence::Once(o) => vec![o],
            Occurrence::Skipped { .. } => Vec::new(),
            Occurrence::Twice { first, second } => vec![first, second],
        }
    }
}

/// How often `civil` occurs in `zone`.
pub fn occurrence(zone: &TimeZone, civil: DateTime) -> Occurrence {
    match zone.to_ambiguous_timestamp(civil).offset() {
        AmbiguousOffset::Unambiguous { offset } => Occurrence::Once(offset),
        AmbiguousOffset::Gap { before, after } => Occurrence::Skipped { before, after },
        AmbiguousOffset::Fold { before, after } => Occurrence::Twice { first: before, second: after },
    }
}

/// A meal start the study zone cannot place on one instant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalTimeError {
    #[error(
        "{} does not exist in {zone}: the clocks jump from {} to {} over it; check the time",
        minutes(*time),
        offset_text(*before),
        offset_text(*after)
    )]
    Skipped { time: DateTime, zone: String, before: Offset, after: Offset },
    #[error(
        "{} happens twice in {zone} (the clocks go back from {} to {}); add the offset to say which: {} (the first) or {} (the second), e.g. {}{}",
        minutes(*time),
        offset_text(*first),
        offset_text(*second),
        offset_text(*first),
        offset_text(*second),
        minutes(*time),
        offset_text(*second)
    )]
    Repeated { time: DateTime, zone: String, first: Offset, second: Offset },
    #[error("{}{} is not a time {zone} has: {}", minutes(*time), offset_text(*given), wrong_offset_reason(*time, *occurrence, *instead))]
    WrongOffset {
        time: DateTime,
        zone: String,
        given: Offset,
        occurrence: Occurrence,
        /// For a skipped local time: the zone's own reading of the instant given.
        instead: Option<Zoned>,
    },
}

/// A wall-clock reading with the zone's offset then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zoned {
    pub civil: DateTime,
    pub offset: Offset,
}

fn wrong_offset_reason(time: DateTime, occurrence: Occurrence, instead: Option<Zoned>) -> String {
    match occurrence {
        Occurrence::Once(o) => format!("at {} it is at {}", minutes(time), offset_text(o)),
        Occurrence::Twice { first, second } => format!(
            "at {} it is at {} (the first time) or {} (the second)",
            minutes(time),
            offset_text(first),
            offset_text(second)
        ),
        Occurrence::Skipped { before, after } => {
            let there = instead
                .map(|z| format!("; that instant is {}{} there", minutes(z.civil), offset_text(z.offset)))
                .unwrap_or_default();
            format!(
                "{} does not exist there (the clocks jump from {} to {}){there}",
                minutes(time),
                offset_text(before),
                offset_text(after)
            )
        }
    }
}

/// Check that a meal start names exactly one instant in `zone` (`zone_name`
/// is only for messages): a skipped local time is refused, a repeated one
/// needs its offset, and a given offset must be one the zone has then.
pub fn check_meal_start(tz: &TimeZone, zone_name: &str, time: LocalTime) -> Result<LocalTime, LocalTimeError> {
    let found = occurrence(tz, time.civil);
    let zone = zone_name.to_owned();
    match (time.offset, found) {
        (Some(given), found) if found.offsets().contains(&given) => Ok(time),
        (Some(given), occurrence) => {
            let instead = given
                .to_timestamp(time.civil)
                .ok()
                .map(|at| Zoned { civil: tz.to_datetime(at), offset: tz.to_offset(at) });
            Err(LocalTimeError::WrongOffset { time: time.civil, zone, given, occurrence, instead })
        }
        (None, Occurrence::Once(_)) => Ok(time),
        (None, Occurrence::Skipped { before, after }) => {
            Err(LocalTimeError::Skipped { time: time.civil, zone, before, after })
        }
        (None, Occurrence::Twice { first, second }) => {
            Err(LocalTimeError::Repeated { time: time.civil, zone, first, second })
        }
    }
}

/// Where an offset-less collection time lands, read near its nominal instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// The local time occurs once.
    At(jiff::Timestamp),
    /// It occurs twice; the occurrence nearer the nominal instant (the first
    /// on a tie) was taken, at `offset`.
    Chosen { at: jiff::Timestamp, offset: Offset },
    /// It does not exist in the zone: no instant is guessed.
    Skipped { before: Offset, after: Offset },
}

/// Read an offset-less local time near `nominal` (meal start + minute).
pub fn place_near(zone: &TimeZone, civil: DateTime, nominal: jiff::Timestamp) -> Option<Placed> {
    let at = |offset: Offset| offset.to_timestamp(civil).ok();
    Some(match occurrence(zone, civil) {
        Occurrence::Once(offset) => Placed::At(at(offset)?),
        Occurrence::Skipped { before, after } => Placed::Skipped { before, after },
        Occurrence::Twice { first, second } => {
            let (a, b) = (at(first)?, at(second)?);
            let distance = |t: jiff::Timestamp| t.as_second().abs_diff(nominal.as_second());
            if distance(b) < distance(a) {
                Placed::Chosen { at: b, offset: second }
            } else {
                Placed::Chosen { at: a, offset: first }
            }
        }
    })
}

/// `+01:00`, `-03:30`: always hours and minutes, as stored and shown.
pub fn offset_text(offset: Offset) -> String {
    let total = offset.seconds();
    let sign = if total < 0 { '-' } else { '+' };
    let minutes = total.unsigned_abs() / 60;
    format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60)
}

/// `2026-10-25T02:30`, with seconds only when there are some.
pub fn minutes(t: DateTime) -> String {
    if t.second() == 0 && t.subsec_nanosecond() == 0 {
        t.strftime("%Y-%m-%dT%H:%M").to_string()
    } else {
        t.strftime("%Y-%m-%dT%H:%M:%S").to_string()
    }
}

/// Read `+01:00`, `+0100`, `+01` or `Z`.
fn parse_offset(text: &str) -> Option<Offset> {
    if text == "Z" || text == "z" {
        return Some(Offset::UTC);
    }
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, text.get(1..)?),
        b'-' => (-1, text.get(1..)?),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|&c| c != ':').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !matches!(digits.len(), 2 | 4) || rest.matches(':').count() > 1 {
        return None;
    }
    let hours: i32 = digits.get(..2)?.parse().ok()?;
    let mins: i32 = if digits.len() == 4 { digits.get(2..4)?.parse().ok()? } else { 0 };
    if hours > 23 || mins > 59 {
        return None;
    }
    Offset::from_seconds(sign * (hours * 3600 + mins * 60)).ok()
}

impl LocalTime {
    /// A local time without an offset.
    pub fn new(civil: DateTime) -> LocalTime {
        LocalTime { civil, offset: None }
    }

    pub fn with_offset(civil: DateTime, offset: Offset) -> LocalTime {
        LocalTime { civil, offset: Some(offset) }
    }

    /// The wall-clock reading.
    pub fn civil(&self) -> DateTime {
        self.civil
    }

    pub fn offset(&self) -> Option<Offset> {
        self.offset
    }

    /// The instant: by its own offset when it has one, else in `zone` (a
    /// repeated hour read as its first occurrence, as before offsets were
    /// kept; imports refuse new ones). `None` for a skipped local time.
    pub fn to_instant(&self, zone: &TimeZone) -> Option<jiff::Timestamp> {
        match self.offset {
            Some(offset) => offset.to_timestamp(self.civil).ok(),
            None => match occurrence(zone, self.civil) {
                Occurrence::Once(o) | Occurrence::Twice { first: o, .. } => o.to_timestamp(self.civil).ok(),
                Occurrence::Skipped { .. } => None,
            },
        }
    }

    /// ISO 8601 to the minute (seconds when there are some), with the offset
    /// when there is one: `2026-10-25T02:30+01:00`.
    pub fn iso_minutes(&self) -> String {
        format!("{}{}", minutes(self.civil), self.offset.map(offset_text).unwrap_or_default())
    }

    /// For people: `2026-10-25 02:30`, or `2026-10-25 02:30 +01:00`.
    pub fn display_minutes(&self) -> String {
        let clock = self.civil.strftime("%Y-%m-%d %H:%M").to_string();
        match self.offset {
            Some(o) => format!("{clock} {}", offset_text(o)),
            None => clock,
        }
    }

    /// Read `2026-03-02T08:30`, `2026-03-02 08:30:00` or either with an
    /// offset (`+01:00`, `+0100`, `Z`).
    pub fn parse(text: &str) -> Result<LocalTime, LocalTimeSyntaxError> {
        let err = || LocalTimeSyntaxError { found: text.to_owned() };
        let normalized = text.trim().replacen(' ', "T", 1);
        let (date, time) = normalized.split_once('T').ok_or_else(err)?;
        let split = time.find(['+', '-', 'Z', 'z']);
        let (clock, offset) = match split {
            Some(at) => {
                (time.get(..at).ok_or_else(err)?, Some(parse_offset(time.get(at..).ok_or_else(err)?).ok_or_else(err)?))
            }
            None => (time, None),
        };
        // jiff reads second 60 (a leap second) as 59: no clock shows it.
        if clock.split(':').nth(2).is_some_and(|s| s.starts_with("60")) {
            return Err(err());
        }
        let civil: DateTime = format!("{date}T{clock}").parse().map_err(|_| err())?;
        Ok(LocalTime { civil, offset })
    }
}

impl From<DateTime> for LocalTime {
    fn from(civil: DateTime) -> LocalTime {
        LocalTime::new(civil)
    }
}

/// The stored form: `2026-03-02T08:30:00`, or `2026-10-25T02:30:00+01:00`.
impl fmt::Display for LocalTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.civil)?;
        if let Some(o) = self.offset {
            f.write_str(&offset_text(o))?;
        }
        Ok(())
    }
}

impl FromStr for LocalTime {
    type Err = LocalTimeSyntaxError;

    fn from_str(s: &str) -> Result<LocalTime, LocalTimeSyntaxError> {
        LocalTime::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stockholm() -> TimeZone {
        TimeZone::get("Europe/Stockholm").unwrap()
    }

    fn lt(text: &str) -> LocalTime {
        text.parse().unwrap()
    }

    fn off(hours: i8) -> Offset {
        Offset::constant(hours)
    }

    #[test]
    fn text_reads_back_and_offsets_are_kept() {
        for text in ["2026-03-02T08:30:00", "2026-10-25T02:30:00+01:00", "2026-10-25T02:30:00-03:30"] {
            assert_eq!(lt(text).to_string(), text);
        }
        assert_eq!(lt("2026-03-02 08:30"), lt("2026-03-02T08:30:00"));
        assert_eq!(lt("2026-10-25T02:30+0100"), lt("2026-10-25T02:30+01:00"));
        assert_eq!(lt("2026-10-25T02:30Z").offset(), Some(Offset::UTC));
        assert_eq!(lt("2026-10-25T02:30+01:00").iso_minutes(), "2026-10-25T02:30+01:00");
        assert_eq!(lt("2026-10-25T02:30:15").iso_minutes(), "2026-10-25T02:30:15");
        assert_eq!(lt("2026-10-25T02:30+01:00").display_minutes(), "2026-10-25 02:30 +01:00");
        for bad in ["2026-03-02", "2026-02-30T08:30", "08:30", "2026-03-02T08:30+25:00", "2026-03-02T08:30+1", "x"] {
            assert!(LocalTime::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stockholm_skips_the_spring_hour_and_repeats_the_autumn_one() {
        let z = stockholm();
        assert_eq!(
            occurrence(&z, "2026-03-29T02:30".parse().unwrap()),
            Occurrence::Skipped { before: off(1), after: off(2) }
        );
        assert_eq!(
            occurrence(&z, "2026-10-25T02:30".parse().unwrap()),
            Occurrence::Twice { first: off(2), second: off(1) }
        );
        assert_eq!(occurrence(&z, "2026-10-25T03:00".parse().unwrap()), Occurrence::Once(off(1)));
    }

    #[test]
    fn meal_starts_in_the_gap_or_the_fold_without_offset_are_refused() {
        let z = stockholm();
        let e = check_meal_start(&z, "Europe/Stockholm", lt("2026-03-29T02:30")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "2026-03-29T02:30 does not exist in Europe/Stockholm: the clocks jump from +01:00 to +02:00 over it; check the time"
        );
        let e = check_meal_start(&z, "Europe/Stockholm", lt("2026-10-25T02:30")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "2026-10-25T02:30 happens twice in Europe/Stockholm (the clocks go back from +02:00 to +01:00); add the offset to say which: +02:00 (the first) or +01:00 (the second), e.g. 2026-10-25T02:30+01:00"
        );
        for ok in ["2026-10-25T02:30+01:00", "2026-10-25T02:30+02:00", "2026-03-02T08:30", "2026-03-02T08:30+01:00"] {
            assert_eq!(check_meal_start(&z, "Europe/Stockholm", lt(ok)), Ok(lt(ok)), "{ok}");
        }
    }

    #[test]
    fn an_offset_the_zone_does_not_have_then_is_refused_with_the_one_it_has() {
        let z = stockholm();
        let msg = |t: &str| check_meal_start(&z, "Europe/Stockholm", lt(t)).unwrap_err().to_string();
        assert_eq!(
            msg("2026-03-02T08:30+02:00"),
            "2026-03-02T08:30+02:00 is not a time Europe/Stockholm has: at 2026-03-02T08:30 it is at +01:00"
        );
        assert_eq!(
            msg("2026-10-25T02:30+03:00"),
            "2026-10-25T02:30+03:00 is not a time Europe/Stockholm has: at 2026-10-25T02:30 it is at +02:00 (the first time) or +01:00 (the second)"
        );
        assert_eq!(
            msg("2026-03-29T02:30+01:00"),
            "2026-03-29T02:30+01:00 is not a time Europe/Stockholm has: 2026-03-29T02:30 does not exist there (the clocks jump from +01:00 to +02:00); that instant is 2026-03-29T03:30+02:00 there"
        );
    }

    #[test]
    fn instants_use_the_offset_when_there_is_one() {
        let z = stockholm();
        let at = |t: &str| lt(t).to_instant(&z).map(|i| i.to_string());
        assert_eq!(at("2026-10-25T02:30+02:00").as_deref(), Some("2026-10-25T00:30:00Z"));
        assert_eq!(at("2026-10-25T02:30+01:00").as_deref(), Some("2026-10-25T01:30:00Z"));
        assert_eq!(at("2026-10-25T02:30").as_deref(), Some("2026-10-25T00:30:00Z"), "the first, as before");
        assert_eq!(at("2026-03-02T08:30").as_deref(), Some("2026-03-02T07:30:00Z"));
        assert_eq!(at("2026-03-29T02:30"), None, "no instant is made up for a skipped time");
    }

    #[test]
    fn a_repeated_collection_time_is_the_occurrence_nearest_its_nominal_minute() {
        let z = stockholm();
        let meal = lt("2026-10-25T01:50").to_instant(&z).unwrap(); // +02:00
        let nominal = |minute: i64| meal.checked_add(jiff::SignedDuration::from_mins(minute)).unwrap();
        let civil: DateTime = "2026-10-25T02:20".parse().unwrap();
        let second = Placed::Chosen { at: "2026-10-25T01:20:00Z".parse().unwrap(), offset: off(1) };
        let first = Placed::Chosen { at: "2026-10-25T00:20:00Z".parse().unwrap(), offset: off(2) };
        assert_eq!(place_near(&z, civil, nominal(90)), Some(second));
        assert_eq!(place_near(&z, civil, nominal(30)), Some(first));
        // Exactly between the two: the first.
        let between = "2026-10-25T00:50:00Z".parse().unwrap();
        assert_eq!(place_near(&z, civil, between), Some(first));
        assert_eq!(
            place_near(&z, "2026-03-29T02:20".parse().unwrap(), nominal(0)),
            Some(Placed::Skipped { before: off(1), after: off(2) })
        );
        assert_eq!(
            place_near(&z, "2026-03-02T08:30".parse().unwrap(), nominal(0)),
            Some(Placed::At("2026-03-02T07:30:00Z".parse().unwrap()))
        );
    }

    #[test]
    fn a_leap_second_is_not_a_local_time() {
        for text in ["2026-03-01T08:00:60", "2026-03-01 08:00:60", "2026-03-01T08:00:60.5+01:00"] {
            assert!(LocalTime::parse(text).is_err(), "{text}");
        }
        assert_eq!(lt("2026-03-01T08:00:59").civil().second(), 59);
    }

    #[test]
    fn offsets_are_written_with_hours_and_minutes() {
        assert_eq!(offset_text(off(1)), "+01:00");
        assert_eq!(offset_text(Offset::UTC), "+00:00");
        assert_eq!(offset_text(Offset::from_seconds(-(3 * 3600 + 30 * 60)).unwrap()), "-03:30");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn zones() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            Just("Europe/Stockholm"),
            Just("America/New_York"),
            Just("Australia/Lord_Howe"),
            Just("Asia/Kolkata"),
            Just("UTC")
        ]
    }

    proptest! {
        /// Every local time across a year either names the instants that
        /// map back to it, or is skipped; a checked meal start names one
        /// instant, and that instant shows the same wall clock again.
        #[test]
        fn checked_meal_starts_name_one_instant_that_reads_back(name in zones(), day in 0i64..366, minute in 0i64..1440, with_offset in any::<bool>()) {
            let zone = TimeZone::get(name).unwrap();
            let civil = jiff::civil::date(2026, 1, 1).to_datetime(jiff::civil::Time::midnight())
                .checked_add(jiff::Span::new().days(day).minutes(minute)).unwrap();
            let found = occurrence(&zone, civil);
            for o in found.offsets() {
                let at = o.to_timestamp(civil).unwrap();
                prop_assert_eq!(zone.to_datetime(at), civil);
                prop_assert_eq!(zone.to_offset(at), o);
            }
            let time = match (with_offset, found.offsets().last()) {
                (true, Some(&o)) => LocalTime::with_offset(civil, o),
                _ => LocalTime::new(civil),
            };
            match check_meal_start(&zone, name, time) {
                Ok(t) => {
                    let at = t.to_instant(&zone).unwrap();
                    prop_assert_eq!(zone.to_datetime(at), civil);
                    prop_assert_eq!(t.to_string().parse::<LocalTime>().unwrap(), t);
                }
                Err(LocalTimeError::Skipped { .. }) => {
                    let skipped = matches!(found, Occurrence::Skipped { .. });
                    prop_assert!(skipped);
                }
                Err(LocalTimeError::Repeated { .. }) => {
                    let twice = matches!(found, Occurrence::Twice { .. });
                    prop_assert!(twice && !with_offset);
                }
                Err(e) => prop_assert!(false, "{e}"),
            }
        }

        /// Over the zone's transitions, the chosen occurrence is never
        /// farther from the nominal instant than the other one, and shows
        /// the wall clock that was sent.
        #[test]
        fn the_chosen_occurrence_is_the_nearer_one(name in zones(), transition in 0usize..4, before in -90i64..90, nominal_shift in -240i64..240) {
            let zone = TimeZone::get(name).unwrap();
            let start = jiff::Timestamp::from_second(1_767_225_600).unwrap(); // 2026-01-01
            let Some(t) = zone.following(start).nth(transition) else { return Ok(()) };
            let around = t.timestamp().checked_add(jiff::SignedDuration::from_mins(before)).unwrap();
            let civil = zone.to_datetime(around);
            let nominal = around.checked_add(jiff::SignedDuration::from_mins(nominal_shift)).unwrap();
            match place_near(&zone, civil, nominal).unwrap() {
                Placed::At(at) => prop_assert_eq!(at, around),
                Placed::Chosen { at, offset } => {
                    prop_assert_eq!(zone.to_datetime(at), civil);
                    prop_assert_eq!(zone.to_offset(at), offset);
                    let other = found_other(&zone, civil, offset);
                    prop_assert!(at.as_second().abs_diff(nominal.as_second()) <= other.as_second().abs_diff(nominal.as_second()));
                }
                Placed::Skipped { .. } => prop_assert!(false, "a wall clock read off an instant is never skipped"),
            }
        }

        /// Around each transition, wall-clock minute by minute: a meal start
        /// without offset is accepted exactly when the zone has it once, and
        /// with any offset the zone has then it is accepted and reads back.
        #[test]
        fn around_transitions_meal_starts_are_accepted_exactly_when_they_name_one_instant(name in zones(), transition in 0usize..4, shift in -120i64..120) {
            let zone = TimeZone::get(name).unwrap();
            let start = jiff::Timestamp::from_second(1_767_225_600).unwrap(); // 2026-01-01
            let Some(t) = zone.following(start).nth(transition) else { return Ok(()) };
            let wall = zone.to_datetime(t.timestamp()).checked_add(jiff::Span::new().minutes(shift)).unwrap();
            let found = occurrence(&zone, wall);
            let plain = check_meal_start(&zone, name, LocalTime::new(wall));
            prop_assert_eq!(plain.is_ok(), matches!(found, Occurrence::Once(_)));
            for o in found.offsets() {
                let with = LocalTime::with_offset(wall, o);
                prop_assert_eq!(check_meal_start(&zone, name, with), Ok(with));
                prop_assert_eq!(zone.to_datetime(with.to_instant(&zone).unwrap()), wall);
            }
            let foreign = Offset::from_seconds(found.offsets().iter().map(|o| o.seconds()).max().unwrap_or(0) + 3600).unwrap();
            let refused = matches!(check_meal_start(&zone, name, LocalTime::with_offset(wall, foreign)), Err(LocalTimeError::WrongOffset { .. }));
            prop_assert!(refused);
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,40}") {
            let _ = LocalTime::parse(&text);
        }
    }

    fn found_other(zone: &TimeZone, civil: DateTime, chosen: Offset) -> jiff::Timestamp {
        let other = occurrence(zone, civil).offsets().into_iter().find(|&o| o != chosen).unwrap();
        other.to_timestamp(civil).unwrap()
    }
}
