//! Number, comparator and date/time readers on arbitrary text: no panic,
//! and any number they return is valid JSON and a finite-or-huge decimal.
#![no_main]

use labfeed::timestamp::Timestamp;
use labfeed::value::{Number, interpret};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for decimal_comma in [false, true] {
        let (_, number) = interpret(text, decimal_comma);
        if let Some(n) = number.or_else(|| Number::parse(text, decimal_comma)) {
            let parsed: serde_json::Value = serde_json::from_str(n.as_str()).expect("canonical number is JSON");
            assert!(parsed.is_number());
        }
    }
    if let Ok(Some(ts)) = Timestamp::parse(text) {
        // What the database stores reads back as the same time.
        assert_eq!(Timestamp::from_iso(&ts.to_iso()), Some(ts), "{text:?}");
    }
});
