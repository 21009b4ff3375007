//! `export results`: one row per accepted result, its latest version.

use std::io::Write;

use crate::report::format::{format_value, utc_time};
use crate::store::CurrentResult;

/// SPEC §5, in order.
pub const RESULT_COLUMNS: [&str; 18] = [
    "participant",
    "visit",
    "minute",
    "analyte",
    "value",
    "unit",
    "comparator",
    "blq",
    "reported_value",
    "reported_unit",
    "sample_id",
    "instrument",
    "test_code",
    "status",
    "collected_at",
    "resulted_at",
    "source",
    "received_at",
];

/// The fields of one result, in [`RESULT_COLUMNS`] order; absent ones empty.
pub fn result_record(row: &CurrentResult) -> [String; 18] {
    let r = &row.result;
    let p = &row.provenance;
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    [
        r.slot.participant.clone(),
        r.slot.visit.clone(),
        r.slot.minute.to_string(),
        r.slot.analyte.clone(),
        format_value(r.value),
        r.unit.clone(),
        r.comparator.map(|c| c.as_str().to_owned()).unwrap_or_default(),
        r.blq.to_string(),
        text(&p.reported_value),
        text(&p.reported_unit),
        text(&p.sample_id),
        text(&p.instrument),
        text(&p.test_code),
        text(&p.status),
        p.collected_time().unwrap_or_default(),
        text(&p.resulted_at),
        p.source_text(),
        p.received_at.map(utc_time).unwrap_or_default(),
    ]
}

/// Write the header row, then one row per result, in the order given.
pub fn write_results_csv(out: impl Write, rows: &[CurrentResult]) -> csv::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(RESULT_COLUMNS)?;
    for row in rows {
        w.write_record(result_record(row))?;
    }
    w.flush()?;
    Ok(())
}
