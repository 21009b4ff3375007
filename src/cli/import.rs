//! `labfeed import participants|visits|samples CSV`: load study data.
//!
//! The whole file is checked first ([`import::read_with_dialect`]), then every row is
//! applied in one write transaction, so a file is imported entirely or not at
//! all. Each change is audited with old and new values under the `--by`
//! actor; a row that is already as in the file writes nothing, so importing
//! the same file again changes nothing. A changed sample row or meal start
//! moves or re-checks the results it concerns in the same transaction
//! ([`Corrections`]), and the command prints what moved.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use crate::cli::{Outcome, load_config, open_store};
use crate::ingest::correction::Corrections;
use crate::store::{Change, Participant, Sample, StoreError, Visit};
use crate::study::import::{self, ImportError, Kind, Rows};

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Which study data file (SPEC §4).
    #[arg(value_enum)]
    pub kind: KindArg,

    /// The CSV file (header row required; study codes only).
    #[arg(value_name = "CSV")]
    pub file: PathBuf,

    /// Who is importing, for the audit log (default: $USER, else the account name).
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// participant[,site]
    Participants,
    /// participant,visit,meal_start
    Visits,
    /// sample_id,participant,visit,minute
    Samples,
}

impl From<KindArg> for Kind {
    fn from(k: KindArg) -> Kind {
        match k {
            KindArg::Participants => Kind::Participants,
            KindArg::Visits => Kind::Visits,
            KindArg::Samples => Kind::Samples,
        }
    }
}

/// What importing one file did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub new: usize,
    pub changed: usize,
    pub unchanged: usize,
}

impl Counts {
    fn add(&mut self, change: Change) {
        match change {
            Change::New => self.new += 1,
            Change::Changed => self.changed += 1,
            Change::Unchanged => self.unchanged += 1,
        }
    }

    pub fn rows(&self) -> usize {
        self.new + self.changed + self.unchanged
    }
}

/// Why the transaction was rolled back: a row the store refused (named by
/// its line), or the store itself.
enum Failure {
    Row(ImportError),
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        Failure::Store(e)
    }
}

/// The actor for the audit log: `--by`, else the login name.
fn actor(by: Option<&str>) -> Result<String, String> {
    match by {
        Some(name) if name.trim().is_empty() => Err("--by needs a name (who is importing)".to_owned()),
        Some(name) if let Some(found) = crate::ingest::control_character(name) => {
            Err(format!("--by must not contain control characters (found {found:?}): it is one line of plain text"))
        }
        Some(name) => Ok(name.trim().to_owned()),
        None => Ok(crate::cli::login_name()),
    }
}

pub fn run(config_path: &Path, args: &ImportArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Outcome> {
    let actor = match actor(args.by.as_deref()) {
        Ok(actor) => actor,
        Err(message) => {
            writeln!(err, "labfeed: {message}")?;
            return Ok(Outcome::Usage);
        }
    };
    // Check the file before touching the database: a refused file takes no lock.
    let config = load_config(config_path)?;
    let (rows, dialect) = match import::read_with_dialect(Kind::from(args.kind), &args.file, &config) {
        Ok(read) => read,
        Err(e) => return refuse(&e, err),
    };
    let mut store = open_store(&config, config_path)?;
    let file = args.file.as_path();
    let corrections = Corrections::new(&config, format!("import of {}", file.display()));
    let result = store.write_with(&actor, |tx| {
        let mut counts = Counts::default();
        // What the changed rows did to results, one line each.
        let mut effects: Vec<String> = Vec::new();
        match &rows {
            Rows::Participants(list) => {
                for (_, row) in list {
                    counts.add(
                        tx.upsert_participant(&Participant { code: row.participant.clone(), site: row.site.clone() })?,
                    );
                }
            }
            Rows::Visits(list) => {
                for (line, row) in list {
                    let visit = Visit {
                        participant: row.participant.clone(),
                        visit: row.visit.clone(),
                        meal_start: row.meal_start,
                    };
                    let old_start = tx.visit(&visit.participant, &visit.visit)?.and_then(|v| v.meal_start);
                    let change = tx.upsert_visit(&visit).map_err(|e| located(e, file, *line))?;
                    counts.add(change);
                    if change != Change::Unchanged && old_start != visit.meal_start {
                        let effect = corrections.meal_start_changed(tx, old_start, &visit)?;
                        if change == Change::Changed || effect.rechecked > 0 {
                            effects.push(effect.to_string());
                        }
                    }
                }
            }
            Rows::Samples(list) => {
                let mut moved = Vec::new();
                for (line, row) in list {
                    let sample = Sample {
                        sample_id: row.sample_id.clone(),
                        participant: row.participant.clone(),
                        visit: row.visit.clone(),
                        minute: i64::from(row.minute),
                    };
                    let old = tx.sample(&sample.sample_id)?;
                    let change = tx.upsert_sample(&sample).map_err(|e| located(e, file, *line))?;
                    counts.add(change);
                    if change != Change::Unchanged {
                        moved.push((change, old, sample));
                    }
                }
                // Every manifest row is in before any result moves, so a
                // result checked at its new slot sees the corrected manifest.
                let changes: Vec<_> = moved.iter().map(|(_, old, new)| (old.clone(), new.clone())).collect();
                for ((change, _, _), effect) in moved.iter().zip(corrections.samples_moved(tx, &changes)?) {
                    if *change == Change::Changed || effect.touched_results() {
                        effects.push(effect.to_string());
                    }
                }
            }
        }
        // New visits (and meal starts) get their MISSING_RESULT ids in the same
        // transaction; which slots are empty follows the moves above.
        crate::ingest::allocate_missing_slot_ids(tx, &config)?;
        Ok::<_, Failure>((counts, effects))
    });
    match result {
        Ok((counts, effects)) => {
            // How the file was read (SPEC §4): a spreadsheet's export settings, made visible.
            writeln!(out, "{}: {dialect}", file.display())?;
            writeln!(
                out,
                "{}: {} {}: {} new, {} changed, {} unchanged",
                file.display(),
                counts.rows(),
                if counts.rows() == 1 { "row" } else { "rows" },
                counts.new,
                counts.changed,
                counts.unchanged
            )?;
            for effect in effects {
                writeln!(out, "{}: {effect}", file.display())?;
            }
            Ok(Outcome::Ok)
        }
        Err(Failure::Row(e)) => refuse(&e, err),
        Err(Failure::Store(e)) => Err(anyhow::Error::new(e).context(format!(
            "importing {} into the study database (nothing from the file was imported)",
            file.display()
        ))),
    }
}

/// A store refusal of one row, named by the row's line: an unknown
/// participant is a fault of the file, not of the database.
fn located(e: StoreError, file: &Path, line: usize) -> Failure {
    match e {
        StoreError::NotFound { entity: "participant", key } => Failure::Row(ImportError {
            file: file.to_owned(),
            line,
            column: Some("participant".to_owned()),
            message: format!(
                "{key} is not a participant of the study database (import it in a participants file first)"
            ),
        }),
        other => Failure::Store(other),
    }
}

/// Print why the file was refused. A file that cannot be read is a usage
/// error (exit 2, like `parse`); a file with a bad row is rejected input (exit 1).
fn refuse(e: &ImportError, err: &mut dyn Write) -> anyhow::Result<Outcome> {
    writeln!(err, "{e}")?;
    writeln!(err, "{}: nothing imported; the whole file is refused", e.file.display())?;
    Ok(if e.line == 0 { Outcome::Usage } else { Outcome::Rejected })
}
