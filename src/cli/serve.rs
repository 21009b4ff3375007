//! `labfeed serve`: the web console (SPEC §11, see `crate::web`).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use crate::cli::{Outcome, load_config, open_store, require_database};
use crate::store::Store;
use crate::web::{Access, Opener};

pub fn run(config_path: &Path, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    let config = load_config(config_path)?;
    crate::logging::init(&config.logging.level)?;
    require_database(&config, config_path)?;
    let config = Arc::new(config);
    let for_opener = Arc::clone(&config);
    let open: Opener = Arc::new(move |access| match access {
        Access::Read => Store::open_read_only(&for_opener.storage.database)
            .with_context(|| format!("opening the study database (storage.database in {})", for_opener.path.display())),
        Access::Write => open_store(&for_opener, &for_opener.path),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let scheme = if config.web.tls().is_some() { "https" } else { "http" };
    let mut announced = None;
    let served = runtime.block_on(crate::web::serve(Arc::clone(&config), open, stopped(), |address| {
        // Scripts and tests read the bound port here (`address = "127.0.0.1:0"`).
        let _ = writeln!(std::io::stderr(), "labfeed console listening on {scheme}://{address}/");
        announced = Some(address);
    }));
    if let Err(e) = served {
        // Refused at start (address, TLS): a configuration problem, exit 2.
        anyhow::bail!("{e}");
    }
    if let Some(address) = announced {
        writeln!(out, "labfeed console stopped ({scheme}://{address})")?;
    }
    Ok(Outcome::Ok)
}

/// SIGTERM or SIGINT.
async fn stopped() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        }
        _ => std::future::pending().await,
    }
}
