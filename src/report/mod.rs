//! Report and export writers (SPEC §5): the CSV and text forms of what the
//! store lists. Writers only format; the store decides which rows and in
//! which order (participant code, visit, minute, analyte: a neutral order
//! that cannot reveal allocation). Nothing here adds a field the store does
//! not hold, and the store holds no names or patient IDs: only study codes.
//!
//! CSV is RFC 4180 quoting through the `csv` crate, UTF-8 without a BOM,
//! `\n` line ends, and the header row is always written, even with no rows
//! (SPEC §7).
//!
//! `sdtm` (the LB domain) also merges in the slots marked not done, so it
//! sorts its records itself, in the same neutral order.

pub mod adam;
pub mod auc;
pub mod audit;
pub mod define;
pub mod exports;
pub mod format;
pub mod html;
pub mod mismatches;
pub mod now;
pub mod plot;
pub mod results;
pub mod review;
pub mod sdtm;
#[cfg(test)]
mod test_rows;
pub mod wording;
pub mod xpt;

pub use format::{format_value, utc_time};
pub use mismatches::{
    MISMATCH_COLUMNS, MISSING_RESULT, MismatchTextOptions, ReviewRow, review_rows, write_mismatches_csv,
    write_mismatches_text,
};
pub use results::{RESULT_COLUMNS, write_results_csv};
pub use sdtm::{LB_COLUMNS, LB_VARIABLES, LbRecord, Sent, SentDetails, lb_records, lb_xpt, write_lb_csv};
