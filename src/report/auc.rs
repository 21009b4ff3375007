//! `report auc`: the MMTT AUC per participant, visit and analyte (SPEC §5),
//! as CSV or a readable table. Rows come in the order `study::auc::compute`
//! gives (participant code, visit in configuration order, analyte): never
//! grouped by anything that could reveal allocation.

use std::io::{self, Write};

use crate::report::format::{format_value, utc_time};
use crate::study::auc::AucRow;

/// SPEC §5, in order.
pub const AUC_COLUMNS: [&str; 10] = [
    "participant",
    "visit",
    "analyte",
    "auc",
    "auc_mean",
    "ln_auc_mean_plus_1",
    "points",
    "complete",
    "missing_minutes",
    "delta_auc_mean",
];

/// Derived numbers carry the rounding of their sums and differences
/// (`12.325 − 11.525` is `0.8000000000000007` in binary), so they are
/// printed to 12 significant digits: far beyond any assay's precision.
fn number(v: Option<f64>) -> String {
    v.map(|v| format_value(format!("{v:.11e}").parse().unwrap_or(v))).unwrap_or_default()
}

fn minutes(row: &AucRow) -> String {
    row.missing_minutes.iter().map(i32::to_string).collect::<Vec<_>>().join(";")
}

/// The fields of one row, in [`AUC_COLUMNS`] order; absent numbers empty.
pub fn auc_record(row: &AucRow) -> [String; 10] {
    [
        row.participant.clone(),
        row.visit.clone(),
        row.analyte.clone(),
        number(row.auc),
        number(row.auc_mean),
        number(row.ln_auc_mean_plus_1),
        row.points.to_string(),
        row.complete.to_string(),
        minutes(row),
        number(row.delta_auc_mean),
    ]
}

/// Write the header row, then one row per AUC, in the order given.
pub fn write_auc_csv(out: impl Write, rows: &[AucRow]) -> csv::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(AUC_COLUMNS)?;
    for row in rows {
        w.write_record(auc_record(row))?;
    }
    w.flush()?;
    Ok(())
}

/// A readable table with the same fields: a title line, a header, one line per
/// row with columns padded to their widest value (`-` for an empty field),
/// and a count.
pub fn write_auc_text(
    out: &mut dyn Write,
    rows: &[AucRow],
    study: &str,
    generated_at: jiff::Timestamp,
) -> io::Result<()> {
    writeln!(out, "MMTT AUC for study {study}, as of {}", utc_time(generated_at))?;
    writeln!(out)?;
    let table: Vec<[String; 10]> = std::iter::once(AUC_COLUMNS.map(str::to_owned))
        .chain(rows.iter().map(|r| {
            let mut fields = auc_record(r).map(|f| if f.is_empty() { "-".to_owned() } else { f });
            // Said in words here; in the CSV it is an AUC with `complete` false.
            if r.interpolated() {
                fields[7] = "interpolated".to_owned();
            }
            fields
        }))
        .collect();
    let mut widths = [0usize; 10];
    for line in &table {
        for (w, f) in widths.iter_mut().zip(line) {
            *w = (*w).max(f.chars().count());
        }
    }
    for line in &table {
        let fields: Vec<String> = line.iter().zip(widths).map(|(f, w)| format!("{f:<w$}")).collect();
        writeln!(out, "{}", fields.join("  ").trim_end())?;
    }
    writeln!(out)?;
    match rows.len() {
        0 => writeln!(out, "No AUC rows.")?,
        1 => writeln!(out, "1 AUC row")?,
        n => writeln!(out, "{n} AUC rows")?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_numbers_print_without_the_noise_of_their_arithmetic() {
        assert_eq!(number(Some(12.325 - 11.525)), "0.8");
        assert_eq!(number(Some(0.77)), "0.77");
        assert_eq!(number(Some(92.4)), "92.4");
        assert_eq!(number(Some(0.5709795465857378)), "0.570979546586");
        assert_eq!(number(None), "");
    }

    fn row(auc: Option<f64>, delta: Option<f64>, missing: Vec<i32>) -> AucRow {
        AucRow {
            participant: "U01".into(),
            visit: "V4".into(),
            analyte: "c_peptide".into(),
            auc,
            auc_mean: auc.map(|a| a / 120.0),
            ln_auc_mean_plus_1: auc.map(|a| (a / 120.0 + 1.0).ln()),
            points: 6 - missing.len(),
            complete: missing.is_empty(),
            missing_minutes: missing,
            delta_auc_mean: delta,
        }
    }

    fn csv_text(rows: &[AucRow]) -> String {
        let mut out = Vec::new();
        write_auc_csv(&mut out, rows).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn csv_has_the_header_plain_numbers_and_empty_absent_fields() {
        let header = "participant,visit,analyte,auc,auc_mean,ln_auc_mean_plus_1,points,complete,missing_minutes,delta_auc_mean\n";
        assert_eq!(csv_text(&[]), header);
        let t = csv_text(&[row(Some(92.4), Some(-0.03), vec![]), row(None, None, vec![30, 60])]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[1], "U01,V4,c_peptide,92.4,0.77,0.570979546586,6,true,,-0.03");
        assert_eq!(lines[2], "U01,V4,c_peptide,,,,4,false,30;60,");
        let tiny = csv_text(&[row(Some(0.000_001_2), None, vec![])]);
        let data = tiny.lines().nth(1).unwrap();
        assert!(data.starts_with("U01,V4,c_peptide,0.0000012,0.00000001,"), "{tiny}");
        assert!(data.split(',').skip(3).take(3).all(|f| !f.contains('e')), "{tiny}");
    }

    #[test]
    fn text_is_a_table_with_the_same_fields() {
        let mut out = Vec::new();
        let rows = [row(Some(92.4), Some(-0.03), vec![]), row(None, None, vec![30])];
        write_auc_text(&mut out, &rows, "S", "2026-03-02T09:00:00Z".parse().unwrap()).unwrap();
        let t = String::from_utf8(out).unwrap();
        assert!(t.starts_with("MMTT AUC for study S, as of 2026-03-02T09:00:00Z\n"), "{t}");
        assert!(t.contains("92.4"), "{t}");
        assert!(t.contains("30"), "{t}");
        assert!(t.ends_with("\n2 AUC rows\n"), "{t}");
    }

    #[test]
    fn an_interpolated_auc_is_said_so_in_the_text_and_is_incomplete_in_the_csv() {
        let rows = [row(Some(90.0), None, vec![30]), row(None, None, vec![60])];
        let mut out = Vec::new();
        write_auc_text(&mut out, &rows, "S", "2026-03-02T09:00:00Z".parse().unwrap()).unwrap();
        let t = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = t.lines().filter(|l| l.starts_with("U01")).collect();
        assert!(lines[0].contains(" interpolated ") && lines[0].contains(" 30 "), "{t}");
        assert!(lines[1].contains(" false ") && !lines[1].contains("interpolated"), "{t}");
        assert!(csv_text(&rows).contains("U01,V4,c_peptide,90,0.75,"), "{}", csv_text(&rows));
        assert!(csv_text(&rows).contains(",5,false,30,"), "{}", csv_text(&rows));
    }
}
