//! The one integration-test binary (one link step on 2 cores).

mod astm;
mod auc;
mod cli;
mod config;
mod correction;
mod corrections_with_decisions;
mod csv_dialects;
mod daemon;
mod demo;
mod e2e;
mod hl7;
mod html;
mod html_props;
mod ingest;
mod link;
mod listen;
mod local_time;
mod mllp;
mod privacy;
mod reopen;
mod report;
mod resolve;

mod sdtm;
mod serial;
mod sources;
mod status;
mod store;
mod support;
