//! `labfeed generate`: shell completions and man pages, made from the same
//! clap definitions that parse the command line, so they never drift from it.
//! The Debian package ships their output (packaging/build-deb).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, CommandFactory, Subcommand};
use clap_complete::Shell;

use crate::cli::{Cli, Outcome};

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, Subcommand)]
enum What {
    /// The completion script for SHELL, on standard output (e.g. `labfeed generate completions bash > /etc/bash_completion.d/labfeed`).
    Completions {
        #[arg(value_name = "SHELL")]
        shell: Shell,
    },
    /// The man page labfeed(1) on standard output; with --out DIR, it and one page per command (labfeed-report.1, …) as files in DIR.
    Man {
        /// Write the pages into this existing directory instead.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

/// What clap cannot know: exit codes, environment, files (SPEC §1; docs/install.md).
const MAN_EXTRA: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
ok
.TP
\fB1\fR
the work ran, but some input was rejected (an unparseable file or message); for \fBstatus\fR and \fBverify\-audit\fR, a problem found
.TP
\fB2\fR
usage or configuration error (the message names the file, line and key), or an input that cannot be read
.SH ENVIRONMENT
.TP
\fBLABFEED_CONFIG\fR
the configuration file when \fB\-\-config\fR is not given
.TP
\fBLABFEED_USER\fR
the account that signs a change when \fB\-\-user\fR is not given
.TP
\fBRUST_LOG\fR
log filter; overrides \fBlogging.level\fR of the configuration
.SH FILES
.TP
\fI/etc/labfeed/labfeed.toml\fR
the configuration (the default)
.TP
\fI/var/lib/labfeed/labfeed.db\fR
the study database (SQLite), with \fIlabfeed.db\-wal\fR, \fIlabfeed.db\-shm\fR and \fIlabfeed.db.lock\fR beside it
.TP
\fI/var/lib/labfeed/inbox\fR, \fIarchive\fR, \fIquarantine\fR
the watch folder: files are dropped into the inbox and moved to the archive, or to the quarantine with a reason file
.TP
\fI/usr/share/doc/labfeed/\fR
the example configuration and the installation guide (install.md)
.SH "SEE ALSO"
\fBsystemctl\fR(1), \fBjournalctl\fR(1), \fBsystemd\-sysusers\fR(8), \fBsystemd\-tmpfiles\fR(8)
"#;

pub fn run(args: &GenerateArgs, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    match &args.what {
        What::Completions { shell } => {
            let mut cmd = Cli::command();
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "labfeed", &mut script);
            out.write_all(&script)?;
        }
        What::Man { out: None } => out.write_all(&main_page()?)?,
        What::Man { out: Some(dir) } => write_pages(dir)?,
    }
    Ok(Outcome::Ok)
}

/// The pages say which labfeed they describe (clap gives subcommands no version).
fn man(cmd: clap::Command) -> clap_mangen::Man {
    clap_mangen::Man::new(cmd).source(concat!("labfeed ", env!("CARGO_PKG_VERSION")))
}

/// labfeed(1): what clap_mangen renders, then the sections it cannot.
fn main_page() -> anyhow::Result<Vec<u8>> {
    let man = man(Cli::command().disable_help_subcommand(true));
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    man.render_subcommands_section(&mut page)?;
    page.extend_from_slice(MAN_EXTRA.as_bytes());
    man.render_version_section(&mut page)?;
    Ok(page)
}

/// labfeed(1) and labfeed-COMMAND(1) for every command and subcommand.
fn write_pages(dir: &Path) -> anyhow::Result<()> {
    fn sub_pages(cmd: &clap::Command, dir: &Path) -> std::io::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            sub_pages(sub, dir)?;
            man(sub.clone()).generate_to(dir)?;
        }
        Ok(())
    }
    let mut cmd = Cli::command().disable_help_subcommand(true);
    // Builds the subcommands' display names (labfeed-report-auc) the pages are named by.
    cmd.build();
    sub_pages(&cmd, dir).with_context(|| format!("cannot write man pages into {}", dir.display()))?;
    let main = dir.join("labfeed.1");
    std::fs::write(&main, main_page()?).with_context(|| format!("cannot write {}", main.display()))?;
    Ok(())
}
