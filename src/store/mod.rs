//! The study database (to be written).
