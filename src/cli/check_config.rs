//! `labfeed check-config`: say exactly what is wrong, or what the study is.

use std::io::Write;
use std::path::Path;

use crate::cli::Outcome;
use crate::study::config::{Config, FlowControl, Parity};

pub fn run(path: &Path, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Outcome> {
    match Config::load(path) {
        Ok(config) => {
            print_summary(&config, out)?;
            Ok(Outcome::Ok)
        }
        Err(e) => {
            writeln!(err, "{e}")?;
            let n = e.problems.len();
            writeln!(err, "{}: {n} problem{} found", path.display(), if n == 1 { "" } else { "s" })?;
            Ok(Outcome::Usage)
        }
    }
}

fn print_summary(c: &Config, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "{}: OK", c.path.display())?;
    writeln!(out, "study {} (times without an offset are read in {})", c.study.id, c.study.timezone)?;
    writeln!(out, "database {}", c.storage.database.display())?;
    if let Some(w) = &c.watch {
        writeln!(
            out,
            "watch folder {} (archive {}, quarantine {})",
            w.inbox.display(),
            w.archive.display(),
            w.quarantine.display()
        )?;
    }
    writeln!(out, "analytes:")?;
    for (name, a) in &c.analytes {
        let mut line = format!("  {name} in {}", a.unit);
        if let Some(lloq) = a.lloq {
            line.push_str(&format!(", LLOQ {lloq}"));
        }
        if let Some([low, high]) = a.plausible {
            line.push_str(&format!(", plausible {low} to {high}"));
        }
        writeln!(out, "{line}")?;
    }
    writeln!(out, "instruments:")?;
    for i in &c.instruments {
        let tests: Vec<String> = i.tests.iter().map(|(code, analyte)| format!("{code} → {analyte}")).collect();
        let mut line = format!("  {} (sender {:?}): {}", i.name, i.sender, tests.join(", "));
        if i.decimal_comma {
            line.push_str("; decimal comma");
        }
        if !i.trust_collection_time {
            line.push_str("; collection times not trusted (no window check)");
        }
        writeln!(out, "{line}")?;
    }
    for s in &c.serial {
        let parity = match s.parity {
            Parity::None => 'N',
            Parity::Even => 'E',
            Parity::Odd => 'O',
        };
        let flow = match s.flow_control {
            FlowControl::None => "no flow control",
            FlowControl::Software => "XON/XOFF",
            FlowControl::Hardware => "RTS/CTS",
        };
        writeln!(
            out,
            "serial {} for {}: {} baud {}{}{}, {flow}",
            s.path.display(),
            s.instrument,
            s.baud,
            s.data_bits,
            parity,
            s.stop_bits
        )?;
    }
    for l in &c.listen {
        writeln!(out, "listen {} ({}) for {}", l.address, l.protocol, l.instrument)?;
    }
    let m = &c.mmtt;
    let points: Vec<String> = m.timepoints.iter().map(|&t| format!("{t} (±{})", m.window(t))).collect();
    writeln!(out, "MMTT timepoints (min): {}", points.join(", "))?;
    writeln!(
        out,
        "AUC {} to {} min, baseline sample {}, BLQ as {}, missing points {}",
        m.auc_from, m.auc_to, m.baseline, m.blq, m.missing
    )?;
    let visits: Vec<String> = c
        .visits
        .iter()
        .map(|v| format!("{} {}{}", v.code, v.name, if v.baseline { " (baseline)" } else { "" }))
        .collect();
    writeln!(out, "visits: {}", if visits.is_empty() { "none".to_owned() } else { visits.join(", ") })?;
    match &c.sample_id_pattern {
        Some(re) => writeln!(out, "sample IDs: the sample manifest, then the pattern {}", re.as_str())?,
        None => writeln!(out, "sample IDs: the sample manifest only")?,
    }
    Ok(())
}
