//! The `labfeed` command line: a thin layer over the library that prints the
//! error chain and picks the exit code (SPEC §1: 0 ok, 1 input rejected,
//! 2 usage or configuration error).

#![forbid(unsafe_code)]

use std::io::{self, Write};
use std::process::ExitCode;

use labfeed::cli::Outcome;

fn main() -> ExitCode {
    match labfeed::cli::run(std::env::args_os()) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Rejected) => ExitCode::from(1),
        Ok(Outcome::Usage) => ExitCode::from(2),
        Err(err) => {
            // A closed pipe (`labfeed parse … | head`) is not a failure.
            if err
                .chain()
                .any(|cause| cause.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe))
            {
                return ExitCode::SUCCESS;
            }
            let _ = writeln!(io::stderr(), "labfeed: {err:#}");
            ExitCode::from(2)
        }
    }
}
