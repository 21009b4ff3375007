//! The CSV files a statistician takes away, as bytes: `export results`,
//! `export lb`, `report mismatches --format csv` and `report auc --format
//! csv` write these, and the console offers the same bytes to download.
//! Each is read in one snapshot and made whole before anything is written.

use anyhow::Context;

use std::collections::BTreeMap;

use std::borrow::Cow;

use crate::model::ParseOptions;
use crate::parse::parse_bytes_views;
use crate::report::adam::AdamRecord;
use crate::report::review::Review;
use crate::report::{LbRecord, Sent, SentDetails};
use crate::report::{lb_records, write_lb_csv, write_mismatches_csv, write_results_csv};
use crate::store::{CurrentResult, NotDoneMark, RawId, Reader, ResultRow, Store, StoreError, Visit};
use crate::study::config::Config;
use crate::study::missing::{MissingResult, not_done_results};

/// A finished CSV file and how many rows it has (the header not counted).
pub struct Csv {
    pub bytes: Vec<u8>,
    pub rows: usize,
}

/// Accepted results, the latest version of each slot (SPEC §5).
pub fn results_csv(store: &Store) -> anyhow::Result<Csv> {
    let rows = store.read(|r| r.current_results()).context("reading the accepted results")?;
    let mut bytes = Vec::new();
    write_results_csv(&mut bytes, &rows)?;
    Ok(Csv { bytes, rows: rows.len() })
}

/// The SDTM LB records: accepted results and slots marked not done.
pub fn lb(config: &Config, store: &Store, now: jiff::Timestamp) -> anyhow::Result<Vec<LbRecord>> {
    let lb = store.read(|r| read_lb(r, config, now, true)).context("reading the accepted results and visits")?;
    Ok(lb.records(config))
}

/// What the LB records are made of: the current results, the visits, the
/// slots marked not done and what the messages sent.
struct LbSnapshot {
    results: Vec<CurrentResult>,
    visits: Vec<Visit>,
    not_done: Vec<(MissingResult, NotDoneMark)>,
    sent: SentDetails,
}

impl LbSnapshot {
    fn records(&self, config: &Config) -> Vec<LbRecord> {
        lb_records(config, &self.results, &self.visits, &self.not_done, &self.sent)
    }
}

/// Results, visits and the marked slots come from one snapshot, so a
/// result arriving meanwhile is never both a record and NOT DONE. Without
/// `sent`, the ranges and specimens the messages gave are left out (ADaM
/// takes none of them, and reading them parses every stored copy).
fn read_lb(r: &Reader<'_>, config: &Config, now: jiff::Timestamp, sent: bool) -> Result<LbSnapshot, StoreError> {
    let (results, copies) = r.current_results_from_copies()?;
    let visits = r.visits()?;
    // The slots filled are those of the current results just read.
    let filled = results.iter().map(|c| c.result.slot.clone()).collect();
    let states = r.slot_states_without_ids(&crate::store::Scope::Study, filled)?;
    let not_done = not_done_results(config, &visits, &states, now);
    let sent = if sent { sent_details(r, &results, &copies)? } else { SentDetails::new() };
    Ok(LbSnapshot { results, visits, not_done, sent })
}

/// What a stored copy gave for one result: its sample, its test and the
/// details `export lb` takes from it.
type Copied = (Option<String>, Option<String>, Sent);

/// The reference range and specimen type each current result's message
/// gave, read back from the stored copies (each parsed once). A result
/// whose copy no longer gives the same sample and test back gets none.
/// `copies`: each result's stored copy, message number and order in the
/// message.
fn sent_details(
    r: &Reader<'_>,
    results: &[CurrentResult],
    copies: &[(RawId, i64, i64)],
) -> Result<SentDetails, StoreError> {
    let mut by_raw: BTreeMap<RawId, Vec<(&CurrentResult, i64, i64)>> = BTreeMap::new();
    for (current, &(raw, message, seq)) in results.iter().zip(copies) {
        by_raw.entry(raw).or_default().push((current, message, seq));
    }
    let mut sent = SentDetails::new();
    for (raw_id, wanted) in by_raw {
        let Some(raw) = r.raw(raw_id)? else { continue };
        // Parsed as views: only the results asked for are copied out.
        let mut read: BTreeMap<(i64, i64), Copied> = BTreeMap::new();
        let asked: std::collections::BTreeSet<(i64, i64)> = wanted.iter().map(|&(_, m, s)| (m, s)).collect();
        parse_bytes_views(&raw.content, &ParseOptions::default(), &mut |outcome| {
            let Ok(message) = outcome else { return };
            let Ok(number) = i64::try_from(message.number) else { return };
            for (i, result) in message.results.into_iter().enumerate() {
                if let Ok(seq) = i64::try_from(i + 1)
                    && asked.contains(&(number, seq))
                {
                    let details = Sent {
                        reference_range: result.reference_range.map(Cow::into_owned),
                        specimen_type: result.specimen_type.map(Cow::into_owned),
                    };
                    let sample = result.sample_id.map(Cow::into_owned);
                    read.insert((number, seq), (sample, result.test_code.map(Cow::into_owned), details));
                }
            }
        });
        for (current, message, seq) in wanted {
            let Some((sample_id, test_code, details)) = read.remove(&(message, seq)) else { continue };
            let p = &current.provenance;
            if sample_id == p.sample_id && test_code == p.test_code {
                sent.insert(current.result.observation_id, details);
            }
        }
    }
    Ok(sent)
}

/// The SDTM LB domain as CSV.
pub fn lb_csv(config: &Config, store: &Store, now: jiff::Timestamp) -> anyhow::Result<Csv> {
    let lb = store.read(|r| read_lb(r, config, now, true)).context("reading the accepted results and visits")?;
    let mut bytes = Vec::new();
    let rows = write_lb_csv(&mut bytes, config, &lb.results, &lb.visits, &lb.not_done, &lb.sent)?;
    Ok(Csv { bytes, rows })
}

/// `report mismatches --format csv` (`include_resolved`: `--all`).
pub fn mismatches_csv(config: &Config, store: &Store, include_resolved: bool) -> anyhow::Result<Csv> {
    let review = Review::load(config, store, include_resolved, false)?;
    let rows = review.rows(config);
    let mut bytes = Vec::new();
    write_mismatches_csv(&mut bytes, &rows, &review.history)?;
    Ok(Csv { bytes, rows: rows.len() })
}

/// The AUC rows of `report auc`, from the current results.
fn auc_rows(config: &Config, store: &Store, now: jiff::Timestamp) -> anyhow::Result<Vec<crate::study::auc::AucRow>> {
    let (results, visits) = store
        .read(|r| {
            let results: Vec<ResultRow> = r.current_results_in(&crate::store::Scope::Study)?;
            Ok((results, r.visits()?))
        })
        .context("reading the current results")?;
    Ok(crate::report::auc::auc_rows(config, &results, &visits, now))
}

/// The ADaM BDS records of the MMTT outcomes: the AUC rows of `report auc`.
pub fn adam(config: &Config, store: &Store, now: jiff::Timestamp) -> anyhow::Result<Vec<AdamRecord>> {
    Ok(read_lb_and_adam(config, store, now, false)?.1)
}

/// The ADaM dataset as CSV (`export adam`).
pub fn adam_csv(config: &Config, store: &Store, now: jiff::Timestamp) -> anyhow::Result<Csv> {
    let records = adam(config, store, now)?;
    let mut bytes = Vec::new();
    crate::report::adam::write_adam_csv(&mut bytes, &records)?;
    Ok(Csv { bytes, rows: records.len() })
}

/// The LB records and the ADaM records, from one snapshot: each AUC names
/// the LBSEQ of the LB records it was computed from (SRCSEQS).
pub fn lb_and_adam(
    config: &Config,
    store: &Store,
    now: jiff::Timestamp,
) -> anyhow::Result<(Vec<LbRecord>, Vec<AdamRecord>)> {
    read_lb_and_adam(config, store, now, true)
}

/// [`lb_and_adam`], the LB records with the messages' ranges and specimens
/// only if `sent` (see [`read_lb`]).
fn read_lb_and_adam(
    config: &Config,
    store: &Store,
    now: jiff::Timestamp,
    sent: bool,
) -> anyhow::Result<(Vec<LbRecord>, Vec<AdamRecord>)> {
    let (lb, rows) = store
        .read(|r| {
            let lb = read_lb(r, config, now, sent)?;
            let records = lb.records(config);
            let results: Vec<ResultRow> = lb.results.into_iter().map(|c| c.result).collect();
            Ok((records, crate::report::auc::auc_rows(config, &results, &lb.visits, now)))
        })
        .context("reading the current results and visits")?;
    let adam = crate::report::adam::adam_records(config, &rows, &lb);
    Ok((lb, adam))
}

/// `export define`: define.xml, or with `html` the same as one HTML page;
/// the inner `Err` names a value the XPT files it describes cannot hold.
pub fn define(
    config: &Config,
    store: &Store,
    now: jiff::Timestamp,
    html: bool,
) -> anyhow::Result<Result<String, String>> {
    let (lb, adam) = lb_and_adam(config, store, now)?;
    Ok(crate::report::define::define(config, &lb, &adam).map(|define| match html {
        true => crate::report::define::define_html(&define, now),
        false => crate::report::define::define_xml(&define, now),
    }))
}

/// `report auc --format csv`.
pub fn auc_csv(config: &Config, store: &Store, now: jiff::Timestamp) -> anyhow::Result<Csv> {
    let rows = auc_rows(config, store, now)?;
    let mut bytes = Vec::new();
    crate::report::auc::write_auc_csv(&mut bytes, &rows)?;
    Ok(Csv { bytes, rows: rows.len() })
}
