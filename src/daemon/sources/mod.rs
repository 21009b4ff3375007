//! Where results come from: the watch folder, TCP listeners and serial
//! ports, each a task the daemon supervises.
//!
//! - [`inbox`]: the watch folder on disk: temporary names, what an entry is,
//!   archiving and quarantining without losing or overwriting anything, and
//!   creating the folders.
//! - [`watch`]: watching the inbox and deciding when a dropped file is
//!   complete; hands [`Arrival`]s to the daemon.

pub mod inbox;
pub mod serial;
pub mod tcp;
pub mod watch;

pub use watch::{Arrival, WatchError};
