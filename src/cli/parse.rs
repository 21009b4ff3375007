//! `labfeed parse`: what is in this file, and why was it rejected?
//!
//! Lab staff point it at a dropped file; scripts read its JSON Lines (SPEC §2).
//! Parsing only: no configuration, no database.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::cli::Outcome;
use crate::model::{
    Format, LabResult, LineCounter, MessageError, MessageOutcome, MessageView, ParseOptions, ParsedMessage,
    ViewOutcome, Warning,
};
use crate::parse::parse_bytes_views;
use crate::timestamp::Timestamp;
use crate::value::{Comparator, Number};

#[derive(Debug, Args)]
pub struct ParseArgs {
    /// Output: one JSON object per result (json), a readable listing (text), or one line per file (summary).
    #[arg(long, value_enum, default_value_t = OutputFormat::Json)]
    pub format: OutputFormat,

    /// Read `7,41` as 7.41 (for instruments set up with a decimal comma).
    #[arg(long)]
    pub decimal_comma: bool,

    /// ASTM or HL7 files (framing, batches, BOM and any line ends are handled).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Json,
    Text,
    Summary,
}

/// One result line of `parse --format json`; field order is the contract.
#[derive(Serialize)]
struct JsonResult<'a> {
    file: &'a str,
    message: usize,
    format: Format,
    sender: Option<&'a str>,
    sample_id: Option<&'a str>,
    patient_id: Option<&'a str>,
    test_code: Option<&'a str>,
    value: Option<&'a str>,
    comparator: Option<Comparator>,
    numeric: Option<&'a Number>,
    unit: Option<&'a str>,
    flags: Option<&'a str>,
    status: Option<&'a str>,
    collected_at: Option<Timestamp>,
    resulted_at: Option<Timestamp>,
    qc: bool,
}

/// One broken message of `parse --format json`.
#[derive(Serialize)]
struct JsonError<'a> {
    file: &'a str,
    message: usize,
    error: &'a str,
    offset: usize,
    line: usize,
}

/// Counts for one file, for the summary line and the exit code.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FileCounts {
    pub messages: usize,
    pub results: usize,
    pub errors: usize,
}

pub fn run(args: &ParseArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Outcome> {
    let opts = ParseOptions { decimal_comma: args.decimal_comma, threads: crate::parallel::cores() };
    let mut out = BufWriter::new(out);
    let mut outcome = Outcome::Ok;
    // Buffers kept for all the files (a Vec for small ones, an anonymous
    // map for large ones): their pages are faulted in once.
    let mut buffer = ReadBuffer::default();
    for path in &args.files {
        let name = path.display().to_string();
        let file = match buffer.read(path, opts.threads) {
            Ok(file) => file,
            Err(e) => {
                out.flush()?;
                writeln!(err, "labfeed: {name}: cannot read: {e}")?;
                outcome = outcome.max(Outcome::Usage);
                continue;
            }
        };
        let counts = print_file(&name, file, &opts, args.format, &mut out, err)
            .with_context(|| format!("writing the output for {name}"))?;
        if counts.errors > 0 {
            outcome = outcome.max(Outcome::Rejected);
        }
    }
    out.flush()?;
    Ok(outcome)
}

/// Parse one file's bytes and print them in `format`.
pub fn print_file(
    name: &str,
    bytes: &[u8],
    opts: &ParseOptions,
    format: OutputFormat,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<FileCounts> {
    let mut counts = FileCounts::default();
    let mut lines = LineCounter::new(bytes);
    let mut io_result = Ok(());
    if format == OutputFormat::Text {
        io_result = writeln!(out, "{name}");
    }
    let detected = parse_bytes_views(bytes, opts, &mut |outcome: ViewOutcome<'_>| {
        if io_result.is_err() {
            return;
        }
        counts.messages += 1;
        match &outcome {
            Ok(message) => counts.results += message.results.len(),
            Err(_) => counts.errors += 1,
        }
        // The summary reads the same views without copying their text out.
        io_result = match format {
            OutputFormat::Summary => print_diagnostics(name, &mut lines, &outcome, err),
            _ => print_outcome(name, &mut lines, &outcome.map(MessageView::into_owned), format, out, err),
        };
    });
    io_result?;
    match format {
        OutputFormat::Summary => {
            let kind = detected.map_or("unknown format", Format::as_str);
            writeln!(
                out,
                "{name}: {}, {}, {} ({kind})",
                plural(counts.messages, "message"),
                plural(counts.results, "result"),
                plural(counts.errors, "error"),
            )?;
        }
        OutputFormat::Text => {
            writeln!(
                out,
                "  {}, {}, {}\n",
                plural(counts.messages, "message"),
                plural(counts.results, "result"),
                plural(counts.errors, "error"),
            )?;
        }
        OutputFormat::Json => {}
    }
    Ok(counts)
}

/// Where the files named on the command line are read to, one at a time;
/// memory is kept for the next file.
#[derive(Default)]
struct ReadBuffer {
    small: Vec<u8>,
    /// Fresh anonymous memory for large files, advised to use huge pages:
    /// faulting in a 64 MiB buffer 4 KiB at a time costs about as much as
    /// copying the file into it.
    large: Option<memmap2::MmapMut>,
}

impl ReadBuffer {
    /// The whole file. A large file is read by `threads` threads at once,
    /// each into its own stretch (the kernel's copy out of the page cache is
    /// most of reading it). A file that shrinks or grows meanwhile is read
    /// again, whole, as it is then.
    fn read(&mut self, path: &std::path::Path, threads: usize) -> std::io::Result<&[u8]> {
        use std::io::Read;
        let mut file = std::fs::File::open(path)?;
        let size = file.metadata().map_or(0, |m| usize::try_from(m.len()).unwrap_or(0));
        if threads > 1 && size >= PARALLEL_READ_FROM && self.read_large(&file, size, threads)? {
            return Ok(self.large.as_deref().and_then(|map| map.get(..size)).unwrap_or_default());
        }
        self.small.clear();
        // As `std::fs::read`: a size that cannot be allocated is an error, not an abort.
        self.small.try_reserve_exact(size.saturating_add(1))?;
        // Positioned reads left the file's offset at its start.
        file.read_to_end(&mut self.small)?;
        Ok(&self.small)
    }

    /// `size` bytes of `file` into the large buffer, by several threads;
    /// `false` when the file was not `size` bytes long throughout.
    fn read_large(&mut self, file: &std::fs::File, size: usize, threads: usize) -> std::io::Result<bool> {
        use std::os::unix::fs::FileExt;
        if self.large.as_ref().is_none_or(|map| map.len() < size) {
            self.large = None;
            let map = memmap2::MmapOptions::new().len(size).map_anon()?;
            // A hint: without transparent huge pages the read works the same.
            let _ = map.advise(memmap2::Advice::HugePage);
            self.large = Some(map);
        }
        let Some(whole) = self.large.as_deref_mut().and_then(|map| map.get_mut(..size)) else { return Ok(false) };
        let stretch = size.div_ceil(threads);
        let read_whole = std::thread::scope(|scope| {
            let readers: Vec<_> = whole
                .chunks_mut(stretch)
                .enumerate()
                .map(|(i, piece)| {
                    let at = (i * stretch) as u64;
                    std::thread::Builder::new().spawn_scoped(scope, move || file.read_exact_at(piece, at))
                })
                .collect();
            // Every reader is joined before the answer is taken.
            let done: Vec<bool> = readers
                .into_iter()
                .map(|reader| reader.is_ok_and(|r| r.join().is_ok_and(|read| read.is_ok())))
                .collect();
            done.iter().all(|&ok| ok)
        });
        let grown = file.read_at(&mut [0], size as u64).map_or(true, |n| n > 0);
        Ok(read_whole && !grown)
    }
}

/// Smaller files are read by one thread.
const PARALLEL_READ_FROM: usize = 1024 * 1024;

fn plural(n: usize, word: &str) -> String {
    if n == 1 { format!("1 {word}") } else { format!("{n} {word}s") }
}

/// Warnings and the error line of one message, as every format but text prints them.
fn print_diagnostics(
    name: &str,
    lines: &mut LineCounter<'_>,
    outcome: &ViewOutcome<'_>,
    err: &mut dyn Write,
) -> std::io::Result<()> {
    match outcome {
        Ok(message) => print_warnings(name, lines, message.number, &message.warnings, err),
        Err(error) => writeln!(err, "{}", error_line(name, lines.line_at(error.offset), error)),
    }
}

fn print_warnings(
    name: &str,
    lines: &mut LineCounter<'_>,
    number: usize,
    warnings: &[Warning],
    err: &mut dyn Write,
) -> std::io::Result<()> {
    for warning in warnings {
        writeln!(
            err,
            "warning: {name}: message {number}: byte {} (line {}): {}",
            warning.offset,
            lines.line_at(warning.offset),
            warning.text
        )?;
    }
    Ok(())
}

fn print_outcome(
    name: &str,
    lines: &mut LineCounter<'_>,
    outcome: &MessageOutcome,
    format: OutputFormat,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<()> {
    match outcome {
        Ok(message) => {
            if format != OutputFormat::Text {
                print_warnings(name, lines, message.number, &message.warnings, err)?;
            }
            match format {
                OutputFormat::Json => {
                    for result in &message.results {
                        serde_json::to_writer(&mut *out, &json_result(name, message, result))?;
                        out.write_all(b"\n")?;
                    }
                }
                OutputFormat::Text => print_message_text(lines, message, out)?,
                OutputFormat::Summary => {}
            }
        }
        Err(error) => {
            let line = lines.line_at(error.offset);
            match format {
                OutputFormat::Json => {
                    let json =
                        JsonError { file: name, message: error.number, error: &error.text, offset: error.offset, line };
                    serde_json::to_writer(&mut *out, &json)?;
                    out.write_all(b"\n")?;
                }
                OutputFormat::Text => {
                    writeln!(
                        out,
                        "  message {}: REJECTED at byte {} (line {}): {}",
                        error.number, error.offset, line, error.text
                    )?;
                }
                OutputFormat::Summary => {}
            }
            if format != OutputFormat::Text {
                writeln!(err, "{}", error_line(name, line, error))?;
            }
        }
    }
    Ok(())
}

/// The one-line diagnosis for a rejected message: file, message, byte, line, what was expected.
pub fn error_line(name: &str, line: usize, error: &MessageError) -> String {
    format!("error: {name}: message {}: byte {} (line {line}): {}", error.number, error.offset, error.text)
}

fn json_result<'a>(file: &'a str, message: &ParsedMessage, result: &'a LabResult) -> JsonResult<'a> {
    JsonResult {
        file,
        message: message.number,
        format: message.format,
        sender: result.sender.as_deref(),
        sample_id: result.sample_id.as_deref(),
        patient_id: result.patient_id(),
        test_code: result.test_code.as_deref(),
        value: result.value.as_deref(),
        comparator: result.comparator,
        numeric: result.numeric.as_ref(),
        unit: result.unit.as_deref(),
        flags: result.flags.as_deref(),
        status: result.status.as_deref(),
        collected_at: result.collected_at,
        resulted_at: result.resulted_at,
        qc: result.qc,
    }
}

fn print_message_text(
    lines: &mut LineCounter<'_>,
    message: &ParsedMessage,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let sender = message.sender.as_deref().unwrap_or("unknown sender");
    writeln!(
        out,
        "  message {} ({}, from {sender}): {}",
        message.number,
        message.format,
        plural(message.results.len(), "result")
    )?;
    for result in &message.results {
        let dash = |s: Option<&str>| s.unwrap_or("-").to_owned();
        let mut line = format!(
            "    sample {}  test {}  value {}",
            dash(result.sample_id.as_deref()),
            dash(result.test_code.as_deref()),
            dash(result.value.as_deref()),
        );
        if let Some(unit) = &result.unit {
            line.push(' ');
            line.push_str(unit);
        }
        if result.value.is_some() && result.numeric.is_none() {
            line.push_str(" (not a number)");
        }
        if let Some(flags) = &result.flags {
            line.push_str(&format!("  flags {flags}"));
        }
        line.push_str(&format!("  status {}", dash(result.status.as_deref())));
        if let Some(t) = &result.collected_at {
            line.push_str(&format!("  collected {t}"));
        }
        if let Some(patient) = result.patient_id() {
            line.push_str(&format!("  patient {patient}"));
        }
        if result.qc {
            line.push_str("  QC");
        }
        writeln!(out, "{line}")?;
        for comment in &result.comments {
            writeln!(out, "      comment: {comment}")?;
        }
    }
    for warning in &message.warnings {
        writeln!(
            out,
            "    warning at byte {} (line {}): {}",
            warning.offset,
            lines.line_at(warning.offset),
            warning.text
        )?;
    }
    Ok(())
}
