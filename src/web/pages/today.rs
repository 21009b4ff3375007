//! Today: "did it arrive, and if not, why?" The configured sources (watch
//! folder, serial ports, listeners) with their last arrival, commit health,
//! and every file and link message received since midnight in the study's
//! zone with what became of it.

use axum::Extension;
use axum::extract::State;
use maud::{Markup, html};

use super::{PageError, layout};
use crate::model::printable;
use crate::report::wording::zoned_time;
use crate::store::{Arrival, LastArrival, ProcessingOutcome, Source};
use crate::study::config::{Config, LinkProtocol};
use crate::web::session::SignedIn;
use crate::web::{Access, Shared};

/// Today's list is cut here; the newest come first.
const TODAY_LIMIT: u32 = 500;

pub async fn page(State(console): State<Shared>, Extension(who): Extension<SignedIn>) -> Result<Markup, PageError> {
    let zone = jiff::tz::TimeZone::get(&console.config.study.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
    let now = jiff::Timestamp::now();
    // Midnight where the study is (the start of the day should midnight not exist there).
    let midnight = now.to_zoned_datetime(zone.clone()).start_of_day().map(|z| z.timestamp()).unwrap_or(now);
    let (last, today, open) = console
        .with_store(Access::Read, move |store, _| {
            Ok(store.read(|r| {
                Ok((r.last_arrival_per_source()?, r.arrivals_since(midnight, TODAY_LIMIT)?, r.open_mismatch_count()?))
            })?)
        })
        .await?;
    let config = &console.config;
    let health = crate::daemon::health::cannot_commit(&crate::daemon::health::local_base(config));
    let study_zone = config.study.timezone.as_str();
    let body = html! {
        section aria-labelledby="health" {
            h2 id="health" { "Commit health" }
            @match &health {
                Some(line) => p role="alert" { "The daemon " (printable(line)) },
                None => p.ok { "No commit failure reported." },
            }
        }
        section aria-labelledby="sources" {
            h2 id="sources" { "Sources" }
            (sources_table(config, &last, study_zone))
        }
        section aria-labelledby="today" {
            h2 id="today" { "Received today" }
            p { "Since " (zoned_time(midnight, study_zone)) ": " (plural(today.len() as u64, "arrival", "arrivals"))
                @if today.len() as u64 >= u64::from(TODAY_LIMIT) { " (the latest " (TODAY_LIMIT) " shown)" } "." }
            @if !today.is_empty() { (today_table(&today, &zone, config.storage.is_postgres())) }
        }
        section aria-labelledby="queue" {
            h2 id="queue" { "Review" }
            p { a href="/mismatches" { (plural(open, "open mismatch", "open mismatches")) } }
        }
    };
    Ok(layout(&who, &config.study.id, study_zone, "Today", "/", body))
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A configured source: what it is called, where it listens, and which
/// receipts are its own.
struct Configured<'c> {
    kind: &'static str,
    name: String,
    place: String,
    matches: Box<dyn Fn(&LastArrival) -> bool + 'c>,
}

fn configured(config: &Config) -> Vec<Configured<'_>> {
    let mut all = Vec::new();
    if let Some(w) = &config.watch {
        all.push(Configured {
            kind: "Watch folder",
            name: String::new(),
            place: w.inbox.display().to_string(),
            matches: Box::new(|a| a.source == Source::File),
        });
    }
    for port in &config.serial {
        let device = port.path.display().to_string();
        all.push(Configured {
            kind: "Serial port",
            name: port.instrument.clone(),
            place: format!("{device} ({} baud)", port.baud),
            matches: Box::new(move |a| a.source == Source::Serial && a.origin == device),
        });
    }
    for listener in &config.listen {
        let instrument = listener.instrument.clone();
        all.push(Configured {
            kind: "Listener",
            name: listener.instrument.clone(),
            place: format!(
                "{} ({})",
                listener.address,
                match listener.protocol {
                    LinkProtocol::Astm => "ASTM",
                    LinkProtocol::Mllp => "HL7 over MLLP",
                }
            ),
            matches: Box::new(move |a| a.source == Source::Tcp && a.instrument.as_deref() == Some(instrument.as_str())),
        });
    }
    all
}

/// Each configured source with its latest arrival (over all instances),
/// then arrivals from elsewhere (`labfeed ingest`, sources configured no more).
fn sources_table(config: &Config, last: &[LastArrival], zone: &str) -> Markup {
    let sources = configured(config);
    let latest = |of: &dyn Fn(&LastArrival) -> bool| {
        last.iter().filter(|a| of(a)).max_by(|a, b| a.received_at.cmp(&b.received_at))
    };
    let others: Vec<&LastArrival> = last.iter().filter(|a| !sources.iter().any(|s| (s.matches)(a))).collect();
    html! {
        @if sources.is_empty() { p { "No watch folder, serial port or listener is configured." } }
        table {
            caption { "Each source and its last arrival" }
            thead { tr {
                th scope="col" { "Source" } th scope="col" { "Instrument" } th scope="col" { "Where" }
                th scope="col" { "Last arrival" } th scope="col" { "What became of it" }
            } }
            tbody {
                @for s in &sources {
                    tr {
                        th scope="row" { (s.kind) }
                        td { (s.name) }
                        td { (printable(&s.place)) }
                        @match latest(&*s.matches) {
                            Some(a) => { td { (shown_time(&a.received_at, zone)) } td { (fate(a)) } }
                            None => { td { "nothing yet" } td {} }
                        }
                    }
                }
                @for a in &others {
                    tr {
                        th scope="row" { (source_name(a.source)) }
                        td { (a.instrument.as_deref().unwrap_or("")) }
                        td { (printable(&a.origin)) }
                        td { (shown_time(&a.received_at, zone)) }
                        td { (fate(a)) }
                    }
                }
            }
        }
    }
}

/// `sites`: several instances may write the study (PostgreSQL); each row names its receiver.
fn today_table(today: &[Arrival], zone: &jiff::tz::TimeZone, sites: bool) -> Markup {
    html! {
        table {
            caption { "Files and link messages received today, newest first" }
            thead { tr {
                th scope="col" { "Received" } th scope="col" { "Source" } th scope="col" { "File or sender" }
                th scope="col" { "Instrument" } th scope="col" { "What became of it" }
                th scope="col" { "Results accepted" } th scope="col" { "Results held" }
            } }
            tbody {
                @for t in today {
                    @let a = &t.arrival;
                    tr {
                        td { (clock(&a.received_at, zone)) }
                        td { (source_name(a.source)) @if let (true, Some(i)) = (sites, &a.instance) { " (" (i) ")" } }
                        td { (printable(&a.origin)) }
                        td { (a.instrument.as_deref().unwrap_or("")) }
                        td { (fate(a)) }
                        td.num { (a.accepted) }
                        td.num { (a.mismatches) }
                    }
                }
            }
        }
    }
}

fn source_name(source: Source) -> &'static str {
    match source {
        Source::File => "watch folder",
        Source::Ingest => "labfeed ingest",
        Source::Serial => "serial port",
        Source::Tcp => "listener",
    }
}

/// A stored UTC time in the study's zone, or as stored if it cannot be read.
fn shown_time(received_at: &str, zone: &str) -> String {
    received_at.parse::<jiff::Timestamp>().map_or_else(|_| received_at.to_owned(), |t| zoned_time(t, zone))
}

/// Today's time of day in the study's zone (the zone is named in the footer).
fn clock(received_at: &str, zone: &jiff::tz::TimeZone) -> String {
    received_at
        .parse::<jiff::Timestamp>()
        .map_or_else(|_| received_at.to_owned(), |t| zone.to_datetime(t).strftime("%H:%M:%S").to_string())
}

/// What became of an arrival, in the words of the people asking: a dropped
/// file is archived or quarantined (with the reason); a link message or an
/// `ingest`ed file is stored or rejected.
fn fate(a: &LastArrival) -> String {
    let file = a.source == Source::File;
    let reason = a.detail.as_deref().map(str::trim).filter(|d| !d.is_empty()).map(|d| {
        let mut lines = d.lines();
        let first = printable(lines.next().unwrap_or_default()).into_owned();
        match lines.count() {
            0 => first,
            more => format!("{first} (and {more} more)"),
        }
    });
    let with_reason = |what: &str| match &reason {
        Some(r) => format!("{what}: {r}"),
        None => what.to_owned(),
    };
    match a.outcome {
        None => "not processed yet".to_owned(),
        Some(ProcessingOutcome::Duplicate) => "duplicate of an earlier delivery".to_owned(),
        Some(ProcessingOutcome::Rejected) if file => with_reason("quarantined"),
        Some(ProcessingOutcome::Rejected) => with_reason("rejected"),
        Some(ProcessingOutcome::Aborted) => with_reason("broken off"),
        Some(ProcessingOutcome::Processed) => {
            let mut parts = vec![format!(
                "{}, {} accepted",
                if file { "archived" } else { "stored" },
                plural(a.accepted, "result", "results")
            )];
            if a.mismatches > 0 {
                parts.push(format!("{} held", plural(a.mismatches, "result", "results")));
            }
            if a.duplicates > 0 {
                parts.push(plural(a.duplicates, "duplicate", "duplicates"));
            }
            if a.qc > 0 {
                parts.push(format!("{} QC", a.qc));
            }
            if a.errors > 0 {
                parts.push(plural(a.errors, "error", "errors"));
            }
            parts.join(", ")
        }
    }
}
