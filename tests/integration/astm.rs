//! astm integration tests.
