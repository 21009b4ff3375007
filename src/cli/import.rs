//! `labfeed import participants|visits|samples CSV`: load study data.
//!
//! The whole file is checked first ([`import::read`]), then every row is
//! applied in one write transaction, so a file is imported entirely or not at
//! all. Each change is audited with old and new values under the `--by`
//! actor; a row that is already as in the file writes nothing, so importing
//! the same file again changes nothing.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use crate::cli::{Outcome, load_config, open_store};
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
    let rows = match import::read(Kind::from(args.kind), &args.file, &config) {
        Ok(rows) => rows,
        Err(e) => return refuse(&e, err),
    };
    let mut store = open_store(&config, config_path)?;
    let file = args.file.as_path();
    let result = store.write_with(&actor, |tx| {
        let mut counts = Counts::default();
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
                    counts.add(tx.upsert_visit(&visit).map_err(|e| located(e, file, *line))?);
                }
            }
            Rows::Samples(list) => {
                for (line, row) in list {
                    let sample = Sample {
                        sample_id: row.sample_id.clone(),
                        participant: row.participant.clone(),
                        visit: row.visit.clone(),
                        minute: i64::from(row.minute),
                    };
                    counts.add(tx.upsert_sample(&sample).map_err(|e| located(e, file, *line))?);
                }
            }
        }
        // New visits (and meal starts) get their MISSING_RESULT ids in the same transaction.
        crate::ingest::allocate_missing_slot_ids(tx, &config)?;
        Ok::<_, Failure>(counts)
    });
    match result {
        Ok(counts) => {
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
