//! The commands behind `labfeed COMMAND`.

pub mod parse;
