//! Errors of the log.

use uuid::Uuid;

/// What can go wrong with the log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A draft failed domain validation; nothing was written.
    #[error(transparent)]
    Invalid(#[from] yipan_core::Error),
    /// Draft number `index` of a batch failed validation; nothing of the batch was written.
    #[error("event {index} of the batch: {source}")]
    InvalidInBatch {
        /// Zero-based position in the batch.
        index: usize,
        /// Why.
        source: yipan_core::Error,
    },
    /// An event with this id exists with different content.
    #[error("event id {id} is already used by a different event; choose a new id or resend the original content")]
    IdConflict {
        /// The id.
        id: Uuid,
    },
    /// The storage engine failed.
    #[error("storage: {0}")]
    Storage(String),
    /// A stored record could not be read back.
    #[error("stored event {author}#{seq} is damaged: {problem}")]
    Corrupt {
        /// Author locality of the damaged record.
        author: String,
        /// Author sequence of the damaged record.
        seq: u64,
        /// What is wrong.
        problem: String,
    },
    /// The store could not be opened because its files are damaged.
    #[error("the store at {path} cannot be opened: {problem}")]
    Damaged {
        /// Store directory.
        path: String,
        /// What the engine reported.
        problem: String,
    },
    /// An earlier write failed after events were sequenced; the store must be reopened.
    #[error("an earlier write failed; reopen the store (nothing unacknowledged was kept)")]
    Poisoned,
    /// The store is shutting down.
    #[error("the store is closed")]
    Closed,
    /// The write queue is full: back off and retry (HTTP 503 with Retry-After).
    #[error("the log is saturated ({queued} batches queued); retry in a moment")]
    Busy {
        /// Batches waiting to be sequenced.
        queued: usize,
    },
    /// An event larger than the deployment can carry (NATS `max_payload`).
    #[error("field `{field}`: the event would be about {size} bytes; this deployment carries at most {limit} (NATS max_payload); shorten or split it")]
    TooLarge {
        /// The field, or `event` for the whole event.
        field: String,
        /// Estimated encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The roster already holds another key for this locality.
    #[error("roster already holds a different key for {locality}; keys are not replaced silently")]
    RosterConflict {
        /// The locality.
        locality: String,
    },
    /// The signing key is not the key the trust schedule names for the next own event.
    #[error("this node's signing key {given}… is not the key certified for its next event #{seq} ({expected}…){hint}")]
    KeyMismatch {
        /// The next own sequence.
        seq: u64,
        /// Short hex of the key the schedule names.
        expected: String,
        /// Short hex of the key given.
        given: String,
        /// What to do.
        hint: String,
    },
    /// The own key cannot sign the next event (revoked, or outside its certificate).
    #[error("cannot sign event #{seq}: {problem}")]
    OwnKey {
        /// The next own sequence.
        seq: u64,
        /// Why.
        problem: String,
    },
    /// A trust record was refused.
    #[error("trust record refused ({code}): {0}", code = .0.code())]
    Trust(#[from] yipan_trust::Fault),
    /// The store belongs to another locality.
    #[error("this store belongs to locality {stored}, not {given}")]
    LocalityMismatch {
        /// Locality recorded in the store.
        stored: String,
        /// Locality asked for.
        given: String,
    },
    /// A key file is missing or malformed.
    #[error("key file {path}: {problem}")]
    KeyFile {
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        Error::Storage(e.to_string())
    }
}

/// Result with the log [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
