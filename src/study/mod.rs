//! The study: its configuration, and (later) matching, checks and AUC.

pub mod config;
pub mod matching;
pub mod units;
