//! labfeed: gets C-peptide and glucose results from lab analyzers into a
//! study database, correctly.
//!
//! The path of a result: bytes (file, serial, TCP) → [`astm`] or [`hl7`]
//! parser → [`model::LabResult`] → study matching and checks → SQLite.
//! This crate is the library; `src/main.rs` is a thin command line on top.

#![forbid(unsafe_code)]

pub mod astm;
pub mod cli;
pub mod daemon;
pub mod hl7;
pub mod ingest;
pub mod local_time;
pub mod logging;
pub mod login;
pub mod model;
pub mod parallel;
pub mod parse;
pub mod report;
pub mod scan;
pub mod store;
pub mod study;
pub mod timestamp;
pub mod value;
pub mod web;
