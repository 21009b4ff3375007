//! The whole `parse` command path (format detection, both parsers, and the
//! JSON, text and summary printers) on arbitrary bytes: no panic, JSON output
//! is one valid object per line, and the summary (which reads borrowed
//! views) counts and reports exactly what JSON does, and parsing on several
//! threads gives exactly what one thread gives.
#![no_main]

use labfeed::cli::parse::{OutputFormat, print_file};
use labfeed::model::ParseOptions;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let opts = ParseOptions::default();
    let mut out = Vec::new();
    let mut err = Vec::new();
    let counts = print_file("fuzz", data, &opts, OutputFormat::Json, &mut out, &mut err).expect("writing to a Vec");
    assert!(counts.errors <= counts.messages);
    for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let value: serde_json::Value = serde_json::from_slice(line).expect("each line is JSON");
        assert!(value.is_object());
    }
    let mut summary_err = Vec::new();
    let summary = print_file("fuzz", data, &opts, OutputFormat::Summary, &mut Vec::new(), &mut summary_err)
        .expect("writing to a Vec");
    assert_eq!(summary, counts);
    assert_eq!(summary_err, err);
    let mut text = Vec::new();
    print_file("fuzz", data, &opts, OutputFormat::Text, &mut text, &mut err).expect("writing to a Vec");
    let mut one = Vec::new();
    labfeed::parse::parse_bytes(data, &opts, &mut |outcome| one.push(outcome));
    let many_threads = ParseOptions { threads: 5, ..opts };
    let mut many = Vec::new();
    labfeed::parse::parse_bytes(data, &many_threads, &mut |outcome| many.push(outcome));
    assert_eq!(many, one);
});
