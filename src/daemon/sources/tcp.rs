//! TCP listeners (`[[listen]]`): analyzers and middleware connect and send
//! results; each message is acknowledged only after it is committed.
//!
//! - `mllp`: HL7 over MLLP. The AA/AE/AR acknowledgement (MSA-2 = the received
//!   MSH-10) goes out after the commit; a payload that is not HL7 gets AR with
//!   an ERR segment; the connection stays open either way.
//! - `astm`: ASTM E1381 framing over TCP, driven by the sans-IO
//!   [`Receiver`](crate::astm::receiver::Receiver): every ACK/NAK goes out at
//!   once, except the final frame's ACK, which waits for the commit.
//!
//! The listener is a task that rebinds with a back-off when it fails and
//! stops when told. A peer outside `allow` is closed at accept, before a
//! byte is read; the limits of [`peers`](super::peers) apply: connection
//! caps (ASTM EOT or MLLP AR, then close), idle and trickle cuts, and the
//! hourly byte budget (ASTM NAK or EOT, MLLP AR for the message, then close).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

use super::peers::{Budget, Connections, Refusal, Refusals, Trickle};
use crate::astm::receiver::{self, Event, Receiver};
use crate::daemon::backoff::Backoff;
use crate::daemon::work::{LinkMessage, Work};
use crate::hl7::ack::{AckCode, AckError, ErrorCode, ack, decide};
use crate::hl7::mllp::encode;
use crate::hl7::mllp_session::{MllpSession, SessionEvent};
use crate::model::ParseOptions;
use crate::store::Source;
use crate::study::config::{LinkProtocol, Listener};

/// The ASTM end-of-transmission byte, sent before closing a link.
const EOT: u8 = 0x04;
/// The ASTM negative acknowledgement, for a frame refused over the budget.
const NAK: u8 = 0x15;
/// The largest MLLP message accepted (larger ones get AR without being buffered).
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// Serve one `[[listen]]` entry until `stop` turns true.
pub async fn serve(
    listen: Listener,
    settings: receiver::Config,
    tx: mpsc::Sender<Work>,
    refusals: Arc<Refusals>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::default();
    let listener = loop {
        match TcpListener::bind(listen.address).await {
            Ok(listener) => break listener,
            Err(e) => {
                error!(address = %listen.address, error = %e, retry_in = ?backoff.delay(), "cannot listen for {}", listen.instrument);
                if !backoff.wait(&mut stop).await {
                    return;
                }
            }
        }
    };
    info!(address = %listen.address, protocol = %listen.protocol, instrument = %listen.instrument, "listening");
    accept_loop(listener, listen, settings, tx, refusals, stop).await;
}

/// What a TCP connection is held to beyond its protocol (serial lines have
/// none of it): the idle time and trickle floor, its address's byte budget,
/// and where refusals are counted.
pub struct Guard {
    pub idle: Duration,
    pub ip: IpAddr,
    pub listener: SocketAddr,
    pub budget: Arc<Budget>,
    pub refusals: Arc<Refusals>,
}

impl Guard {
    /// Count and log (at most once a minute) that `peer` went over its budget.
    fn over_budget(&self, peer: &dyn std::fmt::Display) {
        if self.refusals.refused(self.listener, self.ip, Refusal::OverBudget) {
            warn!(peer = %peer, address = %self.listener, limit = self.budget.limit, "a peer went over its byte budget for the hour; closing its connection (logged once a minute per address)");
        }
    }

    fn budget_text(&self) -> String {
        format!("over this address's byte budget ({} bytes an hour); send again later", self.budget.limit)
    }
}

/// Accept connections on an already bound listener.
async fn accept_loop(
    listener: TcpListener,
    listen: Listener,
    settings: receiver::Config,
    tx: mpsc::Sender<Work>,
    refusals: Arc<Refusals>,
    mut stop: watch::Receiver<bool>,
) {
    let connections = Connections::default();
    let budget = Arc::new(Budget::new(listen.max_bytes_per_hour));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => return,
        };
        let ip = peer.ip().to_canonical();
        if !listen.allow.iter().any(|block| block.contains(ip)) {
            // Dropping the stream closes it before anything is read.
            if refusals.refused(listen.address, ip, Refusal::NotAllowed) {
                warn!(%peer, address = %listen.address, "refused a peer not in allow (logged once a minute per address)");
            }
            continue;
        }
        let slot = if budget.exhausted(ip, tokio::time::Instant::now()) {
            Err((Refusal::OverBudget, format!("over this address's byte budget ({} bytes an hour)", budget.limit)))
        } else {
            connections.take(ip).map_err(|why| (Refusal::OverCap, why))
        };
        let slot = match slot {
            Ok(slot) => slot,
            Err((kind, why)) => {
                turn_away(&stream, listen.protocol, &why);
                if refusals.refused(listen.address, ip, kind) {
                    warn!(%peer, address = %listen.address, "refused a connection: {why} (logged once a minute per address)");
                }
                continue;
            }
        };
        let guard = Guard {
            idle: listen.idle,
            ip,
            listener: listen.address,
            budget: Arc::clone(&budget),
            refusals: Arc::clone(&refusals),
        };
        let (instrument, settings, tx, stop) = (listen.instrument.clone(), settings.clone(), tx.clone(), stop.clone());
        let protocol = listen.protocol;
        tokio::spawn(async move {
            match protocol {
                LinkProtocol::Mllp => mllp_connection(stream, peer, instrument, guard, tx, stop).await,
                LinkProtocol::Astm => astm_connection(stream, peer, instrument, guard, settings, tx, stop).await,
            }
            drop(slot);
        });
    }
}

/// The one reply a refused connection gets before it is closed: ASTM EOT
/// (nothing will be received), MLLP an AR with an ERR saying why (the
/// sender reads it as the answer to its first message). A fresh socket's
/// buffer takes it at once, so the accept loop never waits.
fn turn_away(stream: &TcpStream, protocol: LinkProtocol, why: &str) {
    let reply = match protocol {
        LinkProtocol::Astm => vec![EOT],
        LinkProtocol::Mllp => encode(&refusal_ack(b"", why)),
    };
    let _ = stream.try_write(&reply);
}

/// An AR for `head` (the start of the refused payload, or nothing) saying why.
fn refusal_ack(head: &[u8], why: &str) -> Vec<u8> {
    let now = jiff::Timestamp::now();
    let error = AckError::new(ErrorCode::ApplicationInternal, why);
    ack(head, AckCode::Reject, Some(&error), now, &next_control_id(now))
}

/// Resolves once `stop` turns true (the guard `wait_for` returns is not held
/// across an await, so the futures stay `Send`).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

static ACK_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A control ID for our own ACK messages (MSH-10): unique within this process.
fn next_control_id(now: jiff::Timestamp) -> String {
    format!("LF{}-{}", now.as_second(), ACK_COUNTER.fetch_add(1, Ordering::Relaxed))
}

async fn mllp_connection(
    stream: TcpStream,
    peer: SocketAddr,
    instrument: String,
    guard: Guard,
    tx: mpsc::Sender<Work>,
    mut stop: watch::Receiver<bool>,
) {
    info!(%peer, %instrument, "MLLP connection opened");
    let idle = guard.idle;
    let mut session = MllpSession::new(MAX_MESSAGE_BYTES);
    let mut trickle = Trickle::new(idle);
    let (mut reader, mut writer) = stream.into_split();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            read = tokio::time::timeout(idle, reader.read(&mut buf)) => match read {
                Err(_) => {
                    info!(%peer, "MLLP connection silent for {} s; closing it", idle.as_secs());
                    break;
                }
                Ok(Ok(0)) => break,
                Ok(Ok(n)) => n,
                Ok(Err(e)) => {
                    warn!(%peer, error = %e, "MLLP connection broke");
                    break;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let read_at = tokio::time::Instant::now();
        let fits = guard.budget.charge(guard.ip, n, read_at);
        let events = session.feed(buf.get(..fits).unwrap_or_default());
        for event in events {
            let (id, reply) = match event {
                SessionEvent::Payload { id, payload, raw } => {
                    (id, commit_and_acknowledge(&payload, raw, peer, &instrument, &tx).await)
                }
                SessionEvent::Refused { id, head, size, error } => {
                    warn!(%peer, size, "MLLP message refused: {}", error.text);
                    let now = jiff::Timestamp::now();
                    (id, ack(&head, AckCode::Reject, Some(&error), now, &next_control_id(now)))
                }
                SessionEvent::Warning { offset, text } => {
                    debug!(%peer, offset, "{text}");
                    continue;
                }
            };
            if !send_ack(&mut session, &mut writer, id, reply, peer).await {
                return;
            }
        }
        if fits < n {
            // The message under way (or the one the extra bytes begin) gets
            // an AR; nothing beyond the budget is kept.
            guard.over_budget(&peer);
            let why = guard.budget_text();
            match session.cut() {
                Some((id, head)) => {
                    send_ack(&mut session, &mut writer, id, refusal_ack(&head, &why), peer).await;
                }
                None => {
                    let extra = buf.get(fits..n).unwrap_or_default();
                    let head = extra.iter().position(|&b| b == 0x0B).and_then(|i| extra.get(i + 1..));
                    let _ = writer.write_all(&encode(&refusal_ack(head.unwrap_or_default(), &why))).await;
                }
            }
            close_gently(&mut reader, &mut writer).await;
            break;
        }
        trickle.excuse(read_at.elapsed());
        if trickle.after_read(fits, session.mid_frame(), tokio::time::Instant::now()) {
            info!(%peer, "MLLP message trickling in slower than the floor for {} s; closing the connection", idle.as_secs());
            break;
        }
    }
    info!(%peer, "MLLP connection closed");
}

/// How long a connection cut after a last reply is drained, and how much.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1 << 20;

/// Close after a last reply: send FIN, then read and drop (never keep) what
/// the peer still sends for a moment, because closing with unread bytes
/// resets the connection and can lose the reply.
async fn close_gently<R, W>(reader: &mut R, writer: &mut W)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let _ = writer.flush().await;
    let _ = writer.shutdown().await;
    let mut sink = [0u8; 4096];
    let drain = async {
        let mut total = 0;
        while total < LINGER_BYTES {
            match reader.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// Give the session its ACK and write what it releases; false when the
/// connection broke.
async fn send_ack<W: tokio::io::AsyncWrite + Unpin>(
    session: &mut MllpSession,
    writer: &mut W,
    id: u64,
    reply: Vec<u8>,
    peer: SocketAddr,
) -> bool {
    match session.acknowledge(id, reply) {
        Ok(bytes) => {
            if let Err(e) = writer.write_all(&bytes).await {
                warn!(%peer, error = %e, "could not send the acknowledgement");
                return false;
            }
        }
        Err(e) => warn!(%peer, error = %e, "acknowledgement not sent"),
    }
    true
}

/// Hand one HL7 message to the writer, wait for its commit, and build the
/// acknowledgement: AA when stored and parsed, AE/AR with the reason otherwise.
async fn commit_and_acknowledge(
    payload: &[u8],
    raw: Vec<u8>,
    peer: SocketAddr,
    instrument: &str,
    tx: &mpsc::Sender<Work>,
) -> Vec<u8> {
    let stored = LinkMessage::commit(tx, raw, Source::Tcp, peer.to_string(), instrument.to_owned()).await;
    let now = jiff::Timestamp::now();
    let control_id = next_control_id(now);
    match stored {
        Ok(_) => {
            let mut outcomes = Vec::new();
            crate::hl7::parse_file(payload, &ParseOptions::default(), &mut |o| outcomes.push(o));
            decide(payload, &outcomes).ack(payload, now, &control_id)
        }
        Err(why) => {
            let error = AckError::new(ErrorCode::ApplicationInternal, format!("{why}; send the message again"));
            ack(payload, AckCode::Reject, Some(&error), now, &control_id)
        }
    }
}

/// One analyzer connection speaking ASTM E1381 over TCP.
async fn astm_connection(
    stream: TcpStream,
    peer: SocketAddr,
    instrument: String,
    guard: Guard,
    settings: receiver::Config,
    tx: mpsc::Sender<Work>,
    mut stop: watch::Receiver<bool>,
) {
    info!(%peer, %instrument, "ASTM connection opened");
    let (reader, writer) = stream.into_split();
    let origin = peer.to_string();
    let end =
        astm_session(reader, writer, settings, Source::Tcp, &origin, &instrument, Some(&guard), &tx, &mut stop).await;
    info!(%peer, "ASTM connection closed ({end:?})");
}

/// Why an ASTM session loop returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The other side closed or hung up (a serial read of 0 bytes).
    HangUp,
    /// The line failed (read or write error).
    Broken,
    /// labfeed is stopping.
    Stopped,
    /// Nothing came for the idle time; EOT was sent.
    Idle,
    /// A session trickled in below the floor; EOT was sent.
    Trickle,
    /// The peer went over its byte budget; NAK (a session was open) or EOT was sent.
    OverBudget,
}

/// Drive the E1381 receiver over any byte stream (a TCP connection or a
/// serial port) until it closes, fails, or labfeed stops. With a TCP
/// `guard`, also until nothing has come for its idle time while no session
/// is open (a message in progress is left to the receiver's own timeout,
/// which keeps what came), a session trickles in below the floor, or the
/// peer's byte budget runs out.
#[allow(clippy::too_many_arguments)]
pub async fn astm_session<R, W>(
    mut reader: R,
    mut writer: W,
    settings: receiver::Config,
    source: Source,
    origin: &str,
    instrument: &str,
    guard: Option<&Guard>,
    tx: &mpsc::Sender<Work>,
    stop: &mut watch::Receiver<bool>,
) -> SessionEnd
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut link = Receiver::new(settings);
    let mut buf = vec![0u8; 16 * 1024];
    let mut last_read = tokio::time::Instant::now();
    let mut trickle = guard.map(|g| Trickle::new(g.idle));
    loop {
        let deadline = link.next_deadline().map(tokio::time::Instant::from_std);
        let idle_at = match (deadline, guard) {
            (None, Some(g)) => Some(last_read + g.idle),
            _ => None,
        };
        let (events, fits, over) = tokio::select! {
            read = reader.read(&mut buf) => match read {
                Ok(0) => return SessionEnd::HangUp,
                Ok(n) => {
                    last_read = tokio::time::Instant::now();
                    let fits = guard.map_or(n, |g| g.budget.charge(g.ip, n, last_read));
                    (link.feed(buf.get(..fits).unwrap_or_default(), std::time::Instant::now()), fits, fits < n)
                }
                Err(e) => {
                    warn!(%origin, error = %e, "the ASTM line broke");
                    return SessionEnd::Broken;
                }
            },
            _ = sleep_until(deadline) => (link.tick(std::time::Instant::now()), 0, false),
            _ = sleep_until(idle_at) => {
                info!(%origin, "ASTM link silent for {} s; sending EOT and closing", guard.map_or(0, |g| g.idle.as_secs()));
                let _ = writer.write_all(&[EOT]).await;
                let _ = writer.flush().await;
                return SessionEnd::Idle;
            }
            _ = stopped(stop) => return SessionEnd::Stopped,
        };
        let handling = tokio::time::Instant::now();
        if !handle_astm_events(events, &mut link, &mut writer, source, origin, instrument, tx).await {
            return SessionEnd::Broken;
        }
        if over {
            if let Some(g) = guard {
                g.over_budget(&origin);
            }
            // A frame under way is refused; otherwise the link is released.
            let _ = writer.write_all(&[if link.is_idle() { EOT } else { NAK }]).await;
            close_gently(&mut reader, &mut writer).await;
            return SessionEnd::OverBudget;
        }
        if let Some(trickle) = &mut trickle {
            trickle.excuse(handling.elapsed());
            if fits > 0 && trickle.after_read(fits, !link.is_idle(), tokio::time::Instant::now()) {
                info!(%origin, "ASTM session trickling in slower than the floor; sending EOT and closing");
                let _ = writer.write_all(&[EOT]).await;
                let _ = writer.flush().await;
                return SessionEnd::Trickle;
            }
        }
    }
}

/// What to store for a message the receiver completed: the bytes as they came
/// over the line (framing included, so every value traces back to the wire),
/// as long as they read to the same results as the verified text the
/// receiver joined; otherwise that text (a line quirk the file parser reads
/// differently must never cost a result the link accepted).
fn bytes_to_store(text: Vec<u8>, raw: Vec<u8>, origin: &str) -> Vec<u8> {
    let read = |bytes: &[u8]| {
        let mut results = Vec::new();
        let mut errors = 0;
        crate::astm::parse_file(bytes, &ParseOptions::default(), &mut |o| match o {
            Ok(m) => results.extend(m.results.into_iter().map(|mut r| {
                r.offset = 0;
                r
            })),
            Err(_) => errors += 1,
        });
        (results, errors)
    };
    let (from_wire, wire_errors) = read(&raw);
    let (from_text, _) = read(&text);
    if wire_errors == 0 && from_wire == from_text {
        raw
    } else {
        warn!(%origin, "the line bytes read differently from the link's joined text; storing the text");
        text
    }
}

/// Sleep until `deadline`, or forever when there is none.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Carry out the receiver's events: replies go out, complete messages are
/// committed and only then acknowledged, aborted sessions are kept raw.
/// Returns false when the connection should close.
async fn handle_astm_events<W: tokio::io::AsyncWrite + Unpin>(
    events: Vec<Event>,
    link: &mut Receiver,
    writer: &mut W,
    source: Source,
    origin: &str,
    instrument: &str,
    tx: &mpsc::Sender<Work>,
) -> bool {
    let mut queue: std::collections::VecDeque<Event> = events.into();
    while let Some(event) = queue.pop_front() {
        match event {
            Event::Send(bytes) => {
                if let Err(e) = writer.write_all(&bytes).await {
                    warn!(%origin, error = %e, "could not answer the analyzer");
                    return false;
                }
                let _ = writer.flush().await;
            }
            Event::Message { id, text, raw } => {
                let bytes = bytes_to_store(text, raw, origin);
                let stored = LinkMessage::commit(tx, bytes, source, origin.to_owned(), instrument.to_owned()).await;
                let now = std::time::Instant::now();
                match stored {
                    Ok(_) => queue.extend(link.committed(id, now)),
                    Err(why) => {
                        warn!(%origin, "not stored, NAK so the analyzer sends it again: {why}");
                        queue.extend(link.rejected(id, now));
                    }
                }
            }
            Event::Aborted { raw, reason } => {
                let work = Work::Aborted {
                    bytes: raw,
                    source,
                    origin: origin.to_owned(),
                    instrument: instrument.to_owned(),
                    reason,
                };
                let _ = tx.send(work).await;
            }
            Event::Warning(text) => debug!(%origin, "{text}"),
        }
    }
    true
}
