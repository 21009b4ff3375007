//! The study's domain as every layer sees it: where a value belongs
//! ([`Slot`]), the row ids a data manager quotes, why a result is held
//! ([`MismatchCode`]), visits and result versions. Pure data: the store maps
//! them to columns, the study layer computes with them.

use std::fmt;

use crate::value::Comparator;

macro_rules! row_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub i64);

        impl $name {
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

row_id!(
    /// `raw.id`: one distinct content.
    RawId
);
row_id!(
    /// `receipt.id`: one arrival.
    ReceiptId
);
row_id!(
    /// `message.id`: one ASTM H…L or HL7 MSH message within a raw content.
    MessageId
);
row_id!(
    /// `observation.id`: one result as reported.
    ObservationId
);
row_id!(
    /// `result.id`: one version of an accepted value.
    ResultId
);
row_id!(
    /// `mismatch.id`: the number a data manager passes to `labfeed resolve`.
    MismatchId
);
row_id!(
    /// `resolution.id`.
    ResolutionId
);

/// A closed set of words stored as TEXT (the schema's `CHECK (x IN (…))`).
macro_rules! vocabulary {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            pub fn parse(text: &str) -> Option<$name> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use vocabulary;

vocabulary!(
    /// Why a result needs a data manager's look (SPEC §6). `MISSING_RESULT`
    /// is not one of these: see [`MISSING_RESULT_CODE`].
    MismatchCode {
        ParseError = "PARSE_ERROR",
        UnknownInstrument = "UNKNOWN_INSTRUMENT",
        UnknownTest = "UNKNOWN_TEST",
        UnknownSample = "UNKNOWN_SAMPLE",
        UnknownUnit = "UNKNOWN_UNIT",
        NonNumeric = "NON_NUMERIC",
        Implausible = "IMPLAUSIBLE",
        NotFinal = "NOT_FINAL",
        ParticipantConflict = "PARTICIPANT_CONFLICT",
        OutOfWindow = "OUT_OF_WINDOW",
        UnscheduledTimepoint = "UNSCHEDULED_TIMEPOINT",
        DuplicateConflict = "DUPLICATE_CONFLICT",
        CorrectionWithoutOriginal = "CORRECTION_WITHOUT_ORIGINAL",
        PretestGlucose = "PRETEST_GLUCOSE",
        Locked = "LOCKED",
    }
);

impl MismatchCode {
    /// SPEC §6: every code holds its result back except OUT_OF_WINDOW and
    /// PRETEST_GLUCOSE, which accept the value and flag it.
    pub fn holds_by_default(self) -> bool {
        !matches!(self, MismatchCode::OutOfWindow | MismatchCode::PretestGlucose)
    }

    /// A hold that the configuration or the study data decide, not the
    /// content alone: after a fix, a re-delivery of the same content is read
    /// again (the others stay duplicates).
    pub fn depends_on_setup(self) -> bool {
        matches!(
            self,
            MismatchCode::UnknownInstrument
                | MismatchCode::UnknownTest
                | MismatchCode::UnknownSample
                | MismatchCode::UnknownUnit
                | MismatchCode::NonNumeric
                | MismatchCode::Implausible
                | MismatchCode::UnscheduledTimepoint
        )
    }
}

/// `mismatch.code` of the rows that give MISSING_RESULT slots their ids.
/// Not a [`MismatchCode`]: such a row is no finding about a result, and
/// whether it is shown depends on the slot, the clock and the configuration.
pub const MISSING_RESULT_CODE: &str = "MISSING_RESULT";

/// Where one accepted value belongs: the key of result versioning.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot {
    pub participant: String,
    pub visit: String,
    /// Nominal MMTT minute (-10, 0, 15, …).
    pub minute: i64,
    /// `c_peptide`, `glucose`, …
    pub analyte: String,
}

impl Slot {
    pub fn new(
        participant: impl Into<String>,
        visit: impl Into<String>,
        minute: i64,
        analyte: impl Into<String>,
    ) -> Slot {
        Slot { participant: participant.into(), visit: visit.into(), minute, analyte: analyte.into() }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}/{}", self.participant, self.visit, self.minute, self.analyte)
    }
}

/// A visit with its MMTT meal start (local time, minute 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visit {
    pub participant: String,
    pub visit: String,
    /// With its UTC offset when the import gave one (a repeated local hour).
    pub meal_start: Option<crate::local_time::LocalTime>,
}

/// A stored result version.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRow {
    pub id: ResultId,
    pub observation_id: ObservationId,
    pub slot: Slot,
    pub value: f64,
    pub unit: String,
    pub comparator: Option<Comparator>,
    pub blq: bool,
    pub version: i64,
    pub supersedes: Option<ResultId>,
    pub accepted_at: jiff::Timestamp,
    pub accepted_by: String,
    pub reason: String,
    /// This version takes the value out of the slot (a data manager's
    /// rejection or reassignment); the slot has no current result.
    pub withdrawn: bool,
}

/// A slot a data manager marked not done (`resolve --not-done`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotDoneMark {
    /// The slot's MISSING_RESULT id.
    pub id: MismatchId,
    pub reason: String,
    pub by: String,
    pub at: jiff::Timestamp,
}

/// What the study tables say about slots, for MISSING_RESULT: which hold a
/// current value, which have a result held for review, which were emptied by
/// a data manager.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotStates {
    pub filled: std::collections::BTreeSet<Slot>,
    /// Slots with an open mismatch that holds a result back (its oldest id).
    pub held: std::collections::BTreeMap<Slot, MismatchId>,
    /// Slots whose latest version is a withdrawal.
    pub withdrawn: std::collections::BTreeSet<Slot>,
    /// The MISSING_RESULT id of every slot that has one.
    pub ids: std::collections::BTreeMap<Slot, MismatchId>,
    /// Slots a data manager marked not done (and did not reopen).
    pub not_done: std::collections::BTreeMap<Slot, NotDoneMark>,
}
