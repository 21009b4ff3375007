//! hl7 integration tests.
