//! The one integration-test binary (one link step on 2 cores).

mod astm;
mod auc;
mod cli;
mod config;
mod daemon;
mod demo;
mod e2e;
mod hl7;
mod html;
mod html_props;
mod ingest;
mod link;
mod listen;
mod mllp;
mod reopen;
mod report;
mod resolve;
mod sdtm;
mod serial;
mod sources;
mod status;
mod store;
mod support;
