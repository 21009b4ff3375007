//! Where results come from: the watch folder, TCP listeners and serial
//! ports, each a task the daemon supervises.
//!
//! - [`inbox`]: the watch folder on disk: temporary names, what an entry is,
//!   archiving and quarantining without losing or overwriting anything, and
//!   creating the folders.
//! - [`watch`]: watching the inbox and deciding when a dropped file is
//!   complete; hands [`Arrival`]s to the daemon.
//! - [`tcp`]: the `[[listen]]` listeners; [`peers`]: what their peers are
//!   held to (caps, budget, trickle floor) and the refusal counts.

pub mod inbox;
pub mod peers;
pub mod serial;
pub mod tcp;
pub mod watch;

pub use watch::{Arrival, WatchError};
