//! Yipan's append-only event log: each locality's own signed, hash-chained
//! events plus the verified events other localities addressed to it.
//!
//! - [`store`]: the [`EventStore`] trait every implementation offers.
//! - [`log`]: [`Log`], the implementation over a byte [`Backend`] (split into
//!   append, ingest, reads and roster files): validation,
//!   sequencing, chaining and signing, group commit, idempotent appends,
//!   ingest of foreign events with quarantine, reads.
//! - [`backend`]: the two backends, sled on disk ([`SledBackend`]) and memory
//!   ([`MemBackend`]).
//! - [`layout`]: how keys are laid out in the backend.
//! - [`check`]: the chain and channel rules every reader shares (sans IO).
//! - [`event`]: [`StoredEvent`], a decoded stored event, and hashing.
//! - [`keyfile`]: the locality's ed25519 key on disk.
//! - [`verify`]: the audit of a whole store ([`VerifyReport`]).
//! - [`bench`]: the append benchmark and its raw baselines.

pub mod backend;
pub mod bench;
pub mod check;
pub mod disclosure;
pub mod erase;
pub mod error;
pub mod event;
pub mod index;
pub mod keyfile;
pub mod layout;
pub mod log;
pub mod quarantine;
pub mod reason;
pub mod segment;
mod semantic;
pub mod store;
pub mod verify;

pub use backend::{Backend, MemBackend, SharedSled, SledBackend};
pub use error::{Error, Result};
pub use event::StoredEvent;
pub use log::{Appended, Ingested, Log, QuarantineEntry};
pub use reason::Code;
pub use store::EventStore;
pub use verify::{Fault, VerifyReport};

/// The log on sled.
pub type SledStore = Log<SledBackend>;
/// The log in memory (tests, tools).
pub type MemStore = Log<MemBackend>;
