//! Placeholder until the hl7 parser lands.

use crate::model::{MessageError, MessageOutcome, ParseOptions};

/// Parse a whole file's bytes, reporting each message in file order.
pub fn parse_file(input: &[u8], _opts: &ParseOptions, on_message: &mut dyn FnMut(MessageOutcome)) {
    on_message(Err(MessageError {
        number: 1,
        offset: 0,
        span: 0..input.len(),
        text: "the hl7 parser is not built yet".into(),
    }));
}
