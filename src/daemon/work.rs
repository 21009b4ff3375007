//! The channel contract between the sources and the writer thread: what a
//! source hands over, and how a link learns that its message was committed
//! (the only moment it may acknowledge the analyzer).

use tokio::sync::{mpsc, oneshot};

use super::sources::Arrival;
use crate::ingest::Summary;
use crate::store::Source;

/// What the writer thread is handed: a file from the inbox, or a message from
/// an analyzer link that waits for the commit before it is acknowledged.
#[derive(Debug)]
pub enum Work {
    File(Arrival),
    Link(LinkMessage),
    /// The raw bytes of a link session that ended incomplete: kept and audited, no results.
    Aborted {
        bytes: Vec<u8>,
        source: Source,
        origin: String,
        instrument: String,
        reason: String,
    },
}

/// One complete message from a link (serial or TCP).
#[derive(Debug)]
pub struct LinkMessage {
    pub bytes: Vec<u8>,
    pub source: Source,
    /// The device path or peer address.
    pub origin: String,
    /// The instrument of the port or listener: authoritative for what arrives on it.
    pub instrument: String,
    /// Answered after the commit (Err: not stored, do not acknowledge as accepted).
    pub reply: oneshot::Sender<Result<Summary, String>>,
}

impl LinkMessage {
    /// Hand a link's message to the writer and wait for its commit: the
    /// answer an analyzer may be acknowledged on.
    pub async fn commit(
        work: &mpsc::Sender<Work>,
        bytes: Vec<u8>,
        source: Source,
        origin: String,
        instrument: String,
    ) -> Result<Summary, String> {
        let (reply, answer) = oneshot::channel();
        let message = LinkMessage { bytes, source, origin, instrument, reply };
        if work.send(Work::Link(message)).await.is_err() {
            return Err("labfeed is stopping".to_owned());
        }
        answer.await.unwrap_or_else(|_| Err("labfeed is stopping".to_owned()))
    }
}
