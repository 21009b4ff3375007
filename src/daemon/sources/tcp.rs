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
//! byte is read; connections are capped per peer and in all; one silent for
//! `idle_seconds` is closed.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::{debug, error, info, warn};

use crate::astm::receiver::{self, Event, Receiver};
use crate::daemon::backoff::Backoff;
use crate::daemon::work::{LinkMessage, Work};
use crate::hl7::ack::{AckCode, AckError, ErrorCode, ack, decide};
use crate::hl7::mllp_session::{MllpSession, SessionEvent};
use crate::model::ParseOptions;
use crate::store::Source;
use crate::study::config::{LinkProtocol, Listener};

/// Connections served at once per listener.
pub const MAX_CONNECTIONS: usize = 16;
/// Connections served at once per peer address, so one misbehaving host
/// cannot take every slot from the analyzers.
pub const MAX_PER_PEER: usize = 4;
/// A refused peer is logged at most this often.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);
/// The ASTM end-of-transmission byte, sent before closing an idle link.
const EOT: u8 = 0x04;
/// The largest MLLP message accepted (larger ones get AR without being buffered).
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// Serve one `[[listen]]` entry until `stop` turns true.
pub async fn serve(
    listen: Listener,
    settings: receiver::Config,
    tx: mpsc::Sender<Work>,
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
    accept_loop(listener, listen, settings, tx, stop).await;
}

/// Accept connections on an already bound listener (tests bind 127.0.0.1:0).
pub async fn accept_loop(
    listener: TcpListener,
    listen: Listener,
    settings: receiver::Config,
    tx: mpsc::Sender<Work>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let per_peer: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    let mut refused = RefusalLog::default();
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
            if refused.should_log(ip, tokio::time::Instant::now()) {
                warn!(%peer, address = %listen.address, "refused a peer not in allow (logged once a minute per address)");
            }
            continue;
        }
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            warn!(%peer, "too many connections ({MAX_CONNECTIONS}); closing this one");
            continue;
        };
        let Some(peer_slot) = PeerSlot::take(&per_peer, ip) else {
            warn!(%peer, "too many connections from this address ({MAX_PER_PEER}); closing this one");
            continue;
        };
        let (listen, settings, tx, stop) = (listen.clone(), settings.clone(), tx.clone(), stop.clone());
        tokio::spawn(async move {
            match listen.protocol {
                LinkProtocol::Mllp => mllp_connection(stream, peer, listen.instrument, listen.idle, tx, stop).await,
                LinkProtocol::Astm => {
                    astm_connection(stream, peer, listen.instrument, listen.idle, settings, tx, stop).await
                }
            }
            drop((slot, peer_slot));
        });
    }
}

/// When each refused address was last logged; entries older than a minute
/// are dropped once the map grows, so a scan cannot grow it without bound.
#[derive(Default)]
struct RefusalLog(HashMap<IpAddr, tokio::time::Instant>);

impl RefusalLog {
    fn should_log(&mut self, ip: IpAddr, now: tokio::time::Instant) -> bool {
        if self.0.len() >= 1024 {
            self.0.retain(|_, at| now.duration_since(*at) < REFUSAL_LOG_EVERY);
        }
        match self.0.get(&ip) {
            Some(at) if now.duration_since(*at) < REFUSAL_LOG_EVERY => false,
            _ => {
                self.0.insert(ip, now);
                true
            }
        }
    }
}

/// One of a peer address's [`MAX_PER_PEER`] connections, given back on drop.
struct PeerSlot {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl PeerSlot {
    fn take(counts: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr) -> Option<PeerSlot> {
        let mut map = counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = map.entry(ip).or_insert(0);
        if *n >= MAX_PER_PEER {
            return None;
        }
        *n += 1;
        Some(PeerSlot { counts: Arc::clone(counts), ip })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut map = self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
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
    idle: Duration,
    tx: mpsc::Sender<Work>,
    mut stop: watch::Receiver<bool>,
) {
    info!(%peer, %instrument, "MLLP connection opened");
    let mut session = MllpSession::new(MAX_MESSAGE_BYTES);
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
        for event in session.feed(buf.get(..n).unwrap_or_default()) {
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
            match session.acknowledge(id, reply) {
                Ok(bytes) => {
                    if let Err(e) = writer.write_all(&bytes).await {
                        warn!(%peer, error = %e, "could not send the acknowledgement");
                        return;
                    }
                }
                Err(e) => warn!(%peer, error = %e, "acknowledgement not sent"),
            }
        }
    }
    info!(%peer, "MLLP connection closed");
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
    idle: Duration,
    settings: receiver::Config,
    tx: mpsc::Sender<Work>,
    mut stop: watch::Receiver<bool>,
) {
    info!(%peer, %instrument, "ASTM connection opened");
    let (reader, writer) = stream.into_split();
    let origin = peer.to_string();
    let end =
        astm_session(reader, writer, settings, Source::Tcp, &origin, &instrument, Some(idle), &tx, &mut stop).await;
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
}

/// Drive the E1381 receiver over any byte stream (a TCP connection or a
/// serial port) until it closes, fails, or labfeed stops, or (with `idle`)
/// nothing has come for that long while no session is open: a message in
/// progress is left to the receiver's own timeout, which keeps what came.
#[allow(clippy::too_many_arguments)]
pub async fn astm_session<R, W>(
    mut reader: R,
    mut writer: W,
    settings: receiver::Config,
    source: Source,
    origin: &str,
    instrument: &str,
    idle: Option<Duration>,
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
    loop {
        let deadline = link.next_deadline().map(tokio::time::Instant::from_std);
        let idle_at = match (deadline, idle) {
            (None, Some(idle)) => Some(last_read + idle),
            _ => None,
        };
        let events = tokio::select! {
            read = reader.read(&mut buf) => match read {
                Ok(0) => return SessionEnd::HangUp,
                Ok(n) => {
                    last_read = tokio::time::Instant::now();
                    link.feed(buf.get(..n).unwrap_or_default(), std::time::Instant::now())
                }
                Err(e) => {
                    warn!(%origin, error = %e, "the ASTM line broke");
                    return SessionEnd::Broken;
                }
            },
            _ = sleep_until(deadline) => link.tick(std::time::Instant::now()),
            _ = sleep_until(idle_at) => {
                info!(%origin, "ASTM link silent for {} s; sending EOT and closing", idle.unwrap_or_default().as_secs());
                let _ = writer.write_all(&[EOT]).await;
                let _ = writer.flush().await;
                return SessionEnd::Idle;
            }
            _ = stopped(stop) => return SessionEnd::Stopped,
        };
        if !handle_astm_events(events, &mut link, &mut writer, source, origin, instrument, tx).await {
            return SessionEnd::Broken;
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
