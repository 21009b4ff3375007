//! The study: its configuration, and (later) matching, checks and AUC.

pub mod auc;
pub mod cdisc;
pub mod config;
pub mod config_schema;
pub mod csv_dialect;
pub mod import;
pub mod matching;
pub mod missing;
pub mod units;
