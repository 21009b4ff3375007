//! `labfeed new-audit-key PATH`: a new key for `[audit] key_file` (SPEC §9).
//!
//! 32 random bytes, written as 64 hex digits and a line break, to a new file
//! that only its owner may read (mode 0400). An existing file is never
//! overwritten: replacing the key of a running study would leave its chain
//! unverifiable.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::cli::Outcome;

#[derive(Debug, Args)]
pub struct NewAuditKeyArgs {
    /// Where to write the key (e.g. /etc/labfeed/audit.key); must not exist yet.
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
}

pub fn run(args: &NewAuditKeyArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Outcome> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness for the key: {e}"))?;
    let text = format!("{}\n", crate::store::hex(&secret));
    let file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o400).open(&args.path);
    let mut file = match file {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            writeln!(
                err,
                "labfeed: new-audit-key: {} exists already; a key is never overwritten",
                args.path.display()
            )?;
            return Ok(Outcome::Usage);
        }
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", args.path.display())),
    };
    file.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", args.path.display()))?;
    file.sync_all().with_context(|| format!("cannot write {}", args.path.display()))?;
    writeln!(out, "wrote a new audit key to {} (mode 0400)", args.path.display())?;
    writeln!(
        out,
        "set [audit] key_file = \"{}\", make the file the service account's (chown labfeed:), and back it up \
         apart from the database",
        args.path.display()
    )?;
    Ok(Outcome::Ok)
}
