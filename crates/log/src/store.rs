//! The [`EventStore`] trait: what every log implementation offers. The
//! conformance suite (`tests/conformance.rs`) runs against each of them.

use ed25519_dalek::VerifyingKey;
use uuid::Uuid;
use yipan_core::{Locality, PersonKey};
use yipan_proto::v1::EventDraft;

use crate::backend::Backend;
use crate::error::Result;
use crate::event::StoredEvent;
use crate::log::{Appended, Ingested, Log, QuarantineEntry};
use crate::verify::VerifyReport;

/// A locality's event log.
pub trait EventStore: Send + Sync {
    /// The owning locality.
    fn locality(&self) -> Locality;
    /// Appends drafts atomically; returns once durable.
    fn append_batch(&self, drafts: Vec<EventDraft>) -> Result<Vec<Appended>>;
    /// The event with this id.
    fn get(&self, id: Uuid) -> Result<Option<StoredEvent>>;
    /// Events of one author from a sequence on.
    fn read_author(&self, author: Locality, from_seq: u64, limit: usize) -> Result<Vec<StoredEvent>>;
    /// Events about one person.
    fn read_person(&self, person: PersonKey) -> Result<Vec<StoredEvent>>;
    /// Events of one author→recipient channel from a position on.
    fn read_channel(&self, author: Locality, recipient: Locality, from: u64, limit: usize) -> Result<Vec<StoredEvent>>;
    /// Ingests foreign signed events.
    fn ingest_batch(&self, items: &[&[u8]]) -> Result<Vec<Ingested>>;
    /// The quarantine.
    fn quarantine(&self) -> Result<Vec<QuarantineEntry>>;
    /// Adds a roster key.
    fn roster_add(&self, locality: Locality, key: VerifyingKey) -> Result<bool>;
    /// The roster.
    fn roster(&self) -> Vec<(Locality, VerifyingKey)>;
    /// Audits the store.
    fn verify(&self) -> Result<VerifyReport>;
}

impl<B: Backend> EventStore for Log<B> {
    fn locality(&self) -> Locality {
        Log::locality(self)
    }
    fn append_batch(&self, drafts: Vec<EventDraft>) -> Result<Vec<Appended>> {
        Log::append_batch(self, drafts)
    }
    fn get(&self, id: Uuid) -> Result<Option<StoredEvent>> {
        Log::get(self, id)
    }
    fn read_author(&self, author: Locality, from_seq: u64, limit: usize) -> Result<Vec<StoredEvent>> {
        Log::read_author(self, author, from_seq, limit)
    }
    fn read_person(&self, person: PersonKey) -> Result<Vec<StoredEvent>> {
        Log::read_person(self, person)
    }
    fn read_channel(&self, author: Locality, recipient: Locality, from: u64, limit: usize) -> Result<Vec<StoredEvent>> {
        Log::read_channel(self, author, recipient, from, limit)
    }
    fn ingest_batch(&self, items: &[&[u8]]) -> Result<Vec<Ingested>> {
        Log::ingest_batch(self, items)
    }
    fn quarantine(&self) -> Result<Vec<QuarantineEntry>> {
        Log::quarantine(self)
    }
    fn roster_add(&self, locality: Locality, key: VerifyingKey) -> Result<bool> {
        Log::roster_add(self, locality, key)
    }
    fn roster(&self) -> Vec<(Locality, VerifyingKey)> {
        Log::roster(self)
    }
    fn verify(&self) -> Result<VerifyReport> {
        Log::verify(self)
    }
}
