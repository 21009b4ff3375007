//! `labfeed simulate --to HOST:PORT [--protocol astm|mllp] FILE`: send a file
//! as an analyzer would, and say what the receiver answered. For lab staff
//! and engineers checking a port or a cable before the instrument is plugged in.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::astm::sender::{Action, Outcome as SendOutcome, Report as SendReport, Sender, SenderConfig};
use crate::cli::Outcome;
use crate::model::Format;

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Where to send: a serial device (`/dev/ttyUSB0`, `/dev/serial/by-id/…`) or HOST:PORT (TCP).
    #[arg(long, value_name = "SERIAL_PATH|HOST:PORT")]
    pub to: String,
    /// Baud rate for a serial device (8 data bits, no parity, 1 stop bit).
    #[arg(long, default_value_t = 9600)]
    pub baud: u32,
    /// `astm` (E1381 framing, ENQ/ACK, retries) or `mllp` (HL7); default: from the file's content.
    #[arg(long, value_enum)]
    pub protocol: Option<Protocol>,
    /// The ASTM or HL7 file to send.
    pub file: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    Astm,
    Mllp,
}

/// How long to wait for an MLLP acknowledgement.
const MLLP_REPLY_TIMEOUT: Duration = Duration::from_secs(30);

pub fn run(args: &SimulateArgs, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    let bytes = std::fs::read(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    let protocol = match (args.protocol, crate::parse::detect(&bytes)) {
        (Some(p), _) => p,
        (None, Some(Format::Hl7)) => Protocol::Mllp,
        (None, Some(Format::Astm)) => Protocol::Astm,
        (None, None) => anyhow::bail!("{}: neither ASTM nor HL7; say --protocol", args.file.display()),
    };
    let mut line: Box<dyn Line> = if args.to.starts_with('/') {
        let port = tokio_serial::new(args.to.as_str(), args.baud)
            .timeout(Duration::from_millis(100))
            .open()
            .with_context(|| format!("cannot open the serial port {}", args.to))?;
        Box::new(SerialLine(port))
    } else {
        let stream = TcpStream::connect(&args.to).with_context(|| format!("cannot connect to {}", args.to))?;
        stream.set_nodelay(true).ok();
        Box::new(stream)
    };
    match protocol {
        Protocol::Astm => send_astm(line.as_mut(), &record_text(&bytes), &args.to, &args.file, out),
        Protocol::Mllp => send_mllp(line.as_mut(), &bytes, &args.to, out),
    }
}

/// A byte line to an analyzer's peer: TCP, a serial port, the demo's pty.
pub trait Line: Read + Write {
    /// How long the next read may wait.
    fn set_wait(&mut self, wait: Duration);
}

impl Line for TcpStream {
    fn set_wait(&mut self, wait: Duration) {
        self.set_read_timeout(Some(wait.max(Duration::from_millis(1)))).ok();
    }
}

struct SerialLine(Box<dyn tokio_serial::SerialPort>);

impl Read for SerialLine {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for SerialLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl Line for SerialLine {
    fn set_wait(&mut self, wait: Duration) {
        self.0.set_timeout(wait.max(Duration::from_millis(1))).ok();
    }
}

/// The record text of an ASTM file: link framing captured in it is removed
/// (frame texts joined), so it can be framed afresh.
fn record_text(bytes: &[u8]) -> Vec<u8> {
    if bytes.contains(&0x02) { crate::astm::frame::joined_texts(bytes).0 } else { bytes.to_vec() }
}

fn send_astm(
    stream: &mut dyn Line,
    text: &[u8],
    to: &str,
    file: &Path,
    out: &mut dyn Write,
) -> anyhow::Result<Outcome> {
    let report = drive_sender(stream, text, to, &mut || Ok(()))?;
    let verdict = match &report.outcome {
        SendOutcome::Delivered => "delivered".to_owned(),
        SendOutcome::Aborted(why) => format!("aborted: {why}"),
        SendOutcome::NoAnswer => "no answer to ENQ".to_owned(),
        SendOutcome::ReceiverBusy => "receiver busy (NAK to every ENQ)".to_owned(),
        SendOutcome::Contention => "line contention (the receiver kept bidding)".to_owned(),
        SendOutcome::Interrupted => "interrupted by the receiver (EOT)".to_owned(),
    };
    writeln!(
        out,
        "{} → {to} (ASTM E1381): {verdict}; {} frames sent, {} ACKed, {} NAKs, {} retransmissions",
        file.display(),
        report.frames_sent,
        report.frames_acked,
        report.naks,
        report.retransmissions
    )?;
    Ok(if report.outcome == SendOutcome::Delivered { Outcome::Ok } else { Outcome::Rejected })
}

/// Send `text` (ASTM records) as one E1381 session over `line`, driving the
/// sans-IO [`Sender`] with the line's bytes and the clock, and return its
/// report. `idle` runs between reads (the demo checks on its daemon there).
pub fn drive_sender(
    line: &mut dyn Line,
    text: &[u8],
    to: &str,
    idle: &mut dyn FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<SendReport> {
    let mut sender = Sender::new(&[text], SenderConfig::default());
    let mut pending = sender.start(Instant::now());
    let mut buf = [0u8; 4096];
    loop {
        for action in pending.drain(..) {
            match action {
                Action::Send(bytes) => line.write_all(&bytes).context("sending")?,
                Action::Done(report) => return Ok(report),
            }
        }
        idle()?;
        let wait =
            sender.next_deadline().map_or(Duration::from_secs(1), |d| d.saturating_duration_since(Instant::now()));
        line.set_wait(wait);
        match line.read(&mut buf) {
            Ok(0) => anyhow::bail!("{to} closed the connection"),
            Ok(n) => pending = sender.feed(buf.get(..n).unwrap_or_default(), Instant::now()),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                pending = sender.tick(Instant::now());
            }
            Err(e) => return Err(e).context("reading the receiver's answer"),
        }
    }
}

/// Send each HL7 message (each `MSH` segment starts one) in its own MLLP
/// frame and wait for its acknowledgement.
fn send_mllp(stream: &mut dyn Line, bytes: &[u8], to: &str, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    stream.set_wait(MLLP_REPLY_TIMEOUT);
    let mut outcome = Outcome::Ok;
    for (i, message) in hl7_messages(bytes).iter().enumerate() {
        stream.write_all(&crate::hl7::mllp::encode(message)).context("sending")?;
        let reply = read_frame(stream).with_context(|| format!("waiting for {to}'s acknowledgement"))?;
        let text = String::from_utf8_lossy(&reply);
        let msa = text.split(['\r', '\n']).find(|s| s.starts_with("MSA")).unwrap_or("(no MSA segment)");
        let code = msa.get(4..6).unwrap_or("");
        if code != "AA" && code != "CA" {
            outcome = Outcome::Rejected;
        }
        writeln!(out, "message {} → {to} (MLLP): {msa}", i + 1)?;
    }
    Ok(outcome)
}

fn hl7_messages(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut messages: Vec<Vec<u8>> = Vec::new();
    for segment in bytes.split(|&b| b == b'\r' || b == b'\n').filter(|s| !s.is_empty()) {
        if segment.starts_with(b"MSH") || messages.is_empty() {
            messages.push(Vec::new());
        }
        if let Some(message) = messages.last_mut() {
            message.extend_from_slice(segment);
            message.push(b'\r');
        }
    }
    messages
}

fn read_frame(stream: &mut dyn Line) -> anyhow::Result<Vec<u8>> {
    let mut frame = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        stream.read_exact(&mut byte)?;
        frame.push(byte[0]);
        if frame.ends_with(&[0x1C, 0x0D]) {
            let start = frame.iter().position(|&b| b == 0x0B).map_or(0, |p| p + 1);
            return Ok(frame.get(start..frame.len() - 2).unwrap_or_default().to_vec());
        }
        anyhow::ensure!(frame.len() <= 1 << 20, "the answer is not an MLLP frame");
    }
}
