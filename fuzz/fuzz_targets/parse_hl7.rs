//! The HL7 parser on arbitrary bytes: it must never panic, and every
//! message it reports must lie inside the input.
#![no_main]

use labfeed::model::ParseOptions;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for decimal_comma in [false, true] {
        let mut next = 1;
        labfeed::hl7::parse_file(data, &ParseOptions { decimal_comma, ..ParseOptions::default() }, &mut |outcome| {
            let (number, span) = match &outcome {
                Ok(m) => (m.number, m.span.clone()),
                Err(e) => (e.number, e.span.clone()),
            };
            assert_eq!(number, next, "messages are numbered in order");
            next += 1;
            assert!(span.start <= span.end && span.end <= data.len(), "span inside the input");
        });
    }
});
