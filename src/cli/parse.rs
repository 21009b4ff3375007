//! `labfeed parse` (to be written).
