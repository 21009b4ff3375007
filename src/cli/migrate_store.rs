//! `labfeed migrate-store --to URL` (issue 13): copy the configuration's
//! SQLite study into an empty PostgreSQL database with its audit chain as it
//! is, then verify the copy as `verify-audit` would. The source is opened
//! read-only: nothing in it is changed or deleted. Exit 0 when the copy
//! verifies, 1 when it (or the source before it) does not, 2 on usage and
//! connection errors.

use std::io::Write;
use std::path::Path;

use clap::Args;

use crate::cli::{Outcome, audit_settings, load_config, require_database};
use crate::store::{Location, Progress, Store, head, postgres, verify_copy};

#[derive(Debug, Args)]
pub struct MigrateStoreArgs {
    /// The empty PostgreSQL database: postgresql://USER[:PASSWORD]@HOST[:PORT]/DB (the password is never shown).
    #[arg(long, value_name = "URL")]
    pub to: String,
}

pub fn run(
    config_path: &Path,
    args: &MigrateStoreArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<Outcome> {
    let usage = |err: &mut dyn Write, text: String| -> anyhow::Result<Outcome> {
        writeln!(err, "labfeed: migrate-store: {text}")?;
        Ok(Outcome::Usage)
    };
    let target = Location::of(Path::new(&args.to));
    if !matches!(target, Location::Postgres(_)) {
        return usage(err, "--to must be a postgresql:// URL (postgresql://USER@HOST:PORT/DB)".to_owned());
    }
    let target_shown = match postgres::parse_url(&args.to) {
        Ok(parsed) => postgres::target(&parsed),
        Err(e) => return usage(err, format!("--to: {e}")),
    };
    let has_password = postgres::parse_url(&args.to).is_ok_and(|c| c.get_password().is_some());
    let config = load_config(config_path)?;
    let database = &config.storage.database;
    if let source @ Location::Postgres(_) = Location::of(database) {
        return usage(
            err,
            format!(
                "[storage] database in {} is already a PostgreSQL database ({}); migrate-store copies an SQLite study",
                config_path.display(),
                source.display()
            ),
        );
    }
    require_database(&config, config_path)?;
    // What a running daemon commits after the copy would stay behind in the
    // SQLite file once the configuration points at the copy: stop it first.
    if matches!(crate::daemon::health::daemon_state(database), crate::daemon::health::DaemonState::Running) {
        return usage(
            err,
            format!(
                "labfeed run is using {} (it holds {}); stop it first (systemctl stop labfeed), then copy",
                database.display(),
                crate::daemon::health::lock_path(database).display()
            ),
        );
    }
    let audit = audit_settings(&config)?;
    let head_file = audit.head_file.clone().unwrap_or_else(|| head::default_path(database));

    // A copy of a record that does not verify would prove nothing: check first.
    let source = Store::open_read_only(database)?;
    let found = source.verify_integrity(audit.key.as_ref(), &head_file)?;
    drop(source);
    if let Some(problem) = &found.problem {
        writeln!(out, "source NOT verified: {problem}")?;
        writeln!(out, "nothing was copied; run labfeed verify-audit on {} and clear this first", database.display())?;
        return Ok(Outcome::Rejected);
    }

    writeln!(err, "copying {} into {target_shown}", database.display())?;
    let copied = Store::copy_to_postgres(database, &args.to, &mut |p: Progress| {
        // Progress is a courtesy: a closed stderr does not stop the copy.
        let _ = if p.done {
            writeln!(err, "  {}: {} rows", p.table, p.rows)
        } else {
            writeln!(err, "  {}: {} of {} rows", p.table, p.rows, p.total)
        };
    })?;
    let total: u64 = copied.tables.iter().map(|t| t.rows).sum();
    let per_table: Vec<String> = copied.tables.iter().map(|t| format!("{} {}", t.table, t.rows)).collect();
    writeln!(out, "copied {total} rows from {} into {}: {}", copied.source, copied.target, per_table.join(", "))?;

    let check = verify_copy(&copied, &args.to, audit.key.as_ref(), &head_file)?;
    if let Some(problem) = &check.problem {
        writeln!(out, "copy NOT verified: {problem}")?;
        writeln!(
            out,
            "the source {} is unchanged; keep using it, and empty {} before trying again",
            database.display(),
            copied.target
        )?;
        return Ok(Outcome::Rejected);
    }
    match &check.integrity.chain.head {
        Some((seq, hash)) => writeln!(
            out,
            "copy verified: audit chain intact ({} rows), head seq {seq}, hash {hash}, the same as the source's",
            check.integrity.chain.rows_checked
        )?,
        None => writeln!(out, "copy verified: the audit log is empty, as the source's")?,
    }
    writeln!(
        out,
        "{} rows of the study tables match what the chain vouches for; every table has as many rows as the source",
        check.integrity.rows_checked
    )?;
    writeln!(out, "the source {} was opened read-only and is unchanged", database.display())?;
    writeln!(out, "next: in {} set", config_path.display())?;
    writeln!(out, "  [storage] database = \"{}\"", copied.target)?;
    if has_password {
        writeln!(out, "  (with the password you gave in --to, which is not shown here)")?;
    }
    if config.audit.head_file.is_none() && head_file.exists() {
        writeln!(
            out,
            "  [audit] head_file = \"{}\"   (the head recorded so far, which the copy reaches)",
            head_file.display()
        )?;
    }
    Ok(Outcome::Ok)
}
