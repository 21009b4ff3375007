//! `report auc`: the MMTT AUC per participant, visit and analyte (SPEC §5),
//! as CSV or a readable table. Rows come in the order `study::auc::compute`
//! gives (participant code, visit in configuration order, analyte): never
//! grouped by anything that could reveal allocation.

use std::io::{self, Write};

use crate::report::format::format_value;
use crate::report::wording::{plural, zoned_time};
use crate::study::auc::AucRow;
use crate::study::config::Config;

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
pub fn number(v: Option<f64>) -> String {
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
/// and a count. Each row's analyte unit is in a `unit` column and the
/// headings say which numbers are in it (`auc (unit·min)`); the baseline
/// visit reads `V0 (baseline)`. The data locks in force are listed under
/// the title: a statistician sees which numbers can no longer change.
pub fn write_auc_text(
    out: &mut dyn Write,
    rows: &[AucRow],
    config: &Config,
    generated_at: jiff::Timestamp,
    locks: &[crate::store::Lock],
) -> io::Result<()> {
    let zone = config.study.timezone.as_str();
    writeln!(out, "MMTT AUC for study {}, as of {}", config.study.id, zoned_time(generated_at, zone))?;
    for lock in locks {
        writeln!(out, "{}", crate::report::mismatches::lock_line(lock, zone))?;
    }
    let baseline = config.baseline_visit().map(|v| v.code.as_str());
    match baseline {
        Some(v) => writeln!(out, "Baseline visit {v}: delta_auc_mean is a visit's auc_mean minus {v}'s.")?,
        None => writeln!(out, "No baseline visit configured: no delta_auc_mean.")?,
    }
    writeln!(
        out,
        "auc in unit·min over minutes {} to {}; auc_mean and delta_auc_mean in the unit (the unit column).",
        config.mmtt.auc_from, config.mmtt.auc_to
    )?;
    writeln!(out)?;
    let (names, numbers) = AUC_COLUMNS.split_at(3);
    let head: Vec<String> = names.iter().chain(&["unit"]).chain(numbers).map(|c| auc_heading(c)).collect();
    let table: Vec<Vec<String>> = std::iter::once(head)
        .chain(rows.iter().map(|r| {
            let mut fields: Vec<String> =
                auc_record(r).into_iter().map(|f| if f.is_empty() { "-".to_owned() } else { f }).collect();
            // Said in words here; in the CSV it is an AUC with `complete` false.
            if r.interpolated()
                && let Some(f) = fields.get_mut(7)
            {
                *f = "interpolated".to_owned();
            }
            if baseline == Some(r.visit.as_str())
                && let Some(f) = fields.get_mut(1)
            {
                f.push_str(" (baseline)");
            }
            let unit = config.analytes.get(&r.analyte).map(|a| a.unit.clone()).unwrap_or_else(|| "-".to_owned());
            fields.insert(3, unit);
            fields
        }))
        .collect();
    let mut widths = vec![0usize; AUC_COLUMNS.len() + 1];
    for line in &table {
        for (w, f) in widths.iter_mut().zip(line) {
            *w = (*w).max(f.chars().count());
        }
    }
    for line in &table {
        let fields: Vec<String> = line.iter().zip(&widths).map(|(f, w)| format!("{f:<w$}")).collect();
        writeln!(out, "{}", fields.join("  ").trim_end())?;
    }
    writeln!(out)?;
    match rows.len() {
        0 => writeln!(out, "No AUC rows.")?,
        n => writeln!(out, "{}", plural(n, "AUC row", "AUC rows"))?,
    }
    Ok(())
}

/// The AUC rows of `report auc` (and the console's AUC table): every visit
/// whose meal has started by `now` has its rows, received or not.
pub fn auc_rows(
    config: &Config,
    results: &[crate::store::ResultRow],
    visits: &[crate::store::Visit],
    now: jiff::Timestamp,
) -> Vec<AucRow> {
    let started = visits
        .iter()
        .filter(|v| v.meal_start.is_some_and(|t| crate::study::missing::meal_started(config, t, now)))
        .map(|v| (v.participant.as_str(), v.visit.as_str()));
    crate::study::auc::compute_with_visits(config, results, started)
}

/// A heading with its unit, for the text and HTML tables: `auc (unit·min)`,
/// `auc_mean (unit)`; the unit itself is in the row's `unit` column.
pub fn auc_heading(column: &str) -> String {
    match column {
        "auc" => "auc (unit·min)".to_owned(),
        "auc_mean" | "delta_auc_mean" => format!("{column} (unit)"),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let text = include_str!("../../config/labfeed.example.toml");
        Config::from_toml(text, std::path::Path::new("test.toml")).unwrap()
    }

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
            blq_minutes: Vec::new(),
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
        write_auc_text(&mut out, &rows, &config(), "2026-03-02T09:00:00Z".parse().unwrap(), &[]).unwrap();
        let t = String::from_utf8(out).unwrap();
        let title = "MMTT AUC for study NCT02057211, as of 2026-03-02 10:00:00 Europe/Stockholm\n";
        assert!(t.starts_with(title), "{t}");
        assert!(t.contains("92.4"), "{t}");
        let header = t.lines().find(|l| l.starts_with("participant")).unwrap();
        let columns: Vec<&str> = header.split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
        assert_eq!(
            columns[..6],
            ["participant", "visit", "analyte", "unit", "auc (unit·min)", "auc_mean (unit)"],
            "{t}"
        );
        assert!(header.trim_end().ends_with("delta_auc_mean (unit)"), "{t}");
        let first = t.lines().find(|l| l.starts_with("U01")).unwrap();
        assert!(first.contains(" c_peptide  nmol/L "), "{t}");
        assert!(t.contains("30"), "{t}");
        assert!(t.ends_with("\n2 AUC rows\n"), "{t}");
    }

    #[test]
    fn an_interpolated_auc_is_said_so_in_the_text_and_is_incomplete_in_the_csv() {
        let rows = [row(Some(90.0), None, vec![30]), row(None, None, vec![60])];
        let mut out = Vec::new();
        write_auc_text(&mut out, &rows, &config(), "2026-03-02T09:00:00Z".parse().unwrap(), &[]).unwrap();
        let t = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = t.lines().filter(|l| l.starts_with("U01")).collect();
        assert!(lines[0].contains(" interpolated ") && lines[0].contains(" 30 "), "{t}");
        assert!(lines[1].contains(" false ") && !lines[1].contains("interpolated"), "{t}");
        assert!(csv_text(&rows).contains("U01,V4,c_peptide,90,0.75,"), "{}", csv_text(&rows));
        assert!(csv_text(&rows).contains(",5,false,30,"), "{}", csv_text(&rows));
    }
}
