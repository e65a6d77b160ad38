//! [`Log`]: the append-only log over a [`Backend`].
//!
//! Appends flow through a two-stage pipeline so that many concurrent appends
//! share one flush (group commit) and signing overlaps with flushing:
//!
//! ```text
//! callers ──validate──► sequencer ─────────────────────► writer
//!                       idempotency check                 merge queued groups
//!                       author_seq, channel positions     one atomic batch
//!                       prev_hash chain                   one flush (durable)
//!                       sign (rayon, both cores)          update indexes, reply
//! ```
//!
//! Sequencer and writer are strands run by two small thread pools shared by
//! every log of the process (`pool.rs`), not threads of each log: a host of
//! thousands of localities runs a handful of log threads, and one flush makes
//! every log's waiting group durable.
//!
//! A group is stored as segments (runs of up to 256 events in one sled value,
//! [`crate::segment`]), so a durable append costs one sled insert per group,
//! not several per event; the id, person and channel indexes live in memory
//! ([`crate::index`]) and are rebuilt from the segments on open.
//!
//! The code is split by responsibility: this file holds the shared state,
//! opening and the small accessors; `append.rs` the own write path (prepare,
//! sequencer with batch signatures, writer); `ingest.rs` foreign events and the
//! quarantine; `reads.rs` every read and the segment scan; `roster.rs` trust
//! records, key handovers and the trust state rebuilt at open.
//!
//! A caller's reply is sent only after its events are flushed (invariant 2).
//! A batch of drafts is atomic: validated as a whole before sequencing, and
//! written in one backend batch. If a write fails after later events were
//! sequenced on top of it, the log refuses further appends ([`Error::Poisoned`])
//! until reopened, so nothing acknowledged ever depends on something lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, RwLock, Weak};

use ed25519_dalek::{SigningKey, VerifyingKey};
use prost::Message;
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use uuid::Uuid;
use yipan_core::validate::{validate_draft, Checked, Warning};
use yipan_core::{Locality, PersonKey};
use yipan_proto::v1::{Envelope, EventDraft, Recipient, SignedEvent, TierDigest};
use yipan_trust::{Applied, Fault as TrustFault, KeyFault, TrustState};

use crate::backend::{Backend, Op};
use crate::error::{Error, Result};
use crate::event::{hash_envelope, StoredEvent};
use crate::index::Index;
use crate::layout;
use crate::reason::Code;
use crate::segment::{self, Entry};

mod append;
mod ingest;
mod pool;
mod reads;
mod roster;

use append::*;
pub(crate) use reads::each_segment;
use reads::*;
use roster::*;

/// Most events one sequencing group takes (bounds latency and batch size).
const MAX_GROUP: usize = 4096;
/// Groups signed (and received batches verified) in parallel from this size on.
const PARALLEL_SIGN_FROM: usize = 8;
/// Why a foreign event was not taken.
enum Reject {
    /// Rejected for good: claimed author (if readable), code and reason (quarantined).
    Bad(Option<String>, Code, String),
    /// Not verifiable yet (its author's key is not known here yet): redelivered later.
    Later(Locality, String),
}

/// The outcome of one appended draft.
#[derive(Debug, Clone, PartialEq)]
pub struct Appended {
    /// The event id.
    pub id: Uuid,
    /// Its author sequence.
    pub seq: u64,
    /// Its chain hash.
    pub hash: [u8; 32],
    /// Recipients with their channel positions.
    pub recipients: Vec<(Locality, u64)>,
    /// True when the id already existed with the same content: nothing new was stored.
    pub duplicate: bool,
    /// Accepted oddities (e.g. an ID check digit mismatch).
    pub warnings: Vec<Warning>,
}

/// The outcome of ingesting one foreign event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    /// Verified and stored.
    Stored {
        /// Its id.
        id: Uuid,
        /// Author locality.
        author: Locality,
        /// Author sequence.
        seq: u64,
        /// This node's channel position from that author.
        channel_seq: u64,
        /// When the author recorded it (Unix µs), for replication lag.
        recorded_at_us: i64,
    },
    /// Already held (same id, same envelope): nothing to do.
    Duplicate {
        /// Its id.
        id: Uuid,
    },
    /// Verified, but earlier channel positions are missing; not stored.
    Gap {
        /// Author locality.
        author: Locality,
        /// The next position this node can accept.
        expected: u64,
        /// The position of this event.
        got: u64,
    },
    /// Rejected and kept in quarantine.
    Quarantined {
        /// Stable code ([`Code::as_str`]).
        code: Code,
        /// Why, for people.
        reason: String,
    },
    /// Not verifiable yet: the author's certificate or key handover has not
    /// reached this node (the trust stream may be behind). Not stored, not
    /// quarantined; to be delivered again.
    Pending {
        /// Author locality.
        author: Locality,
        /// What is missing.
        reason: String,
    },
}

/// A rejected foreign event, kept with its bytes and the reason.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QuarantineEntry {
    /// Quarantine entry id (UUIDv7, so entries sort by time).
    pub id: Uuid,
    /// When it was rejected (RFC 3339).
    pub received_at: String,
    /// Claimed author, if it could be read.
    pub author: Option<String>,
    /// Stable code of the reason (`event.*`, `fork.*`, `key.*`, `trust.*`; empty in
    /// entries written before codes existed).
    #[serde(default)]
    pub code: String,
    /// Why it was rejected.
    pub reason: String,
    /// The bytes as received (at most `quarantine::KEEP_BYTES` of them), hex.
    pub bytes_hex: String,
    /// Size of the whole message as received.
    #[serde(default)]
    pub size: u64,
    /// SHA-256 of the whole message, hex.
    #[serde(default)]
    pub sha256: String,
}

/// A draft validated in the caller's thread, ready for sequencing.
pub(crate) struct Prepared {
    pub(crate) draft: EventDraft,
    checked: Checked,
    id: Uuid,
    digest: [u8; 32],
}

/// Where a job's outcome is sent.
type Reply = oneshot::Sender<Result<Vec<Appended>>>;
/// Sequenced but not yet durable: id → (draft digest, outcome).
type InFlight = HashMap<[u8; 16], ([u8; 32], Appended)>;

struct Job {
    drafts: Vec<Prepared>,
    reply: Reply,
    /// A key rotation: the key that signs every event after this job's one.
    rotate: Option<SigningKey>,
}

/// An own event signed and ready to store.
struct Signed {
    seq: u64,
    digest: [u8; 32],
    bytes: Vec<u8>,
    envelope: Envelope,
}

struct WriteGroup {
    events: Vec<Signed>,
    head: (u64, [u8; 32]),
    replies: Vec<(Reply, Result<Vec<Appended>>)>,
}

/// What the writer thread commits: the one write path of an open log.
enum Write {
    /// Own events from the sequencer.
    Own(WriteGroup),
    /// Any other records (received events, quarantine, roster and trust,
    /// metadata, disclosures, erasures), committed in the writer's next group
    /// commit with whatever else is waiting, then answered.
    Ops { ops: Vec<Op>, reply: mpsc::SyncSender<Result<()>> },
}

struct Shared<B> {
    backend: B,
    locality: Locality,
    /// The public key of the key that signs the next own event.
    public: RwLock<VerifyingKey>,
    /// Verified trust: certificates, revocations, key schedules, hand-added keys.
    trust: RwLock<TrustState>,
    /// Number of the next trust record stored.
    trust_next: AtomicU64,
    /// Sequenced but not yet durable: id → (draft digest, outcome), for idempotency.
    in_flight: Mutex<InFlight>,
    poisoned: AtomicBool,
    /// Serialises ingest (channel positions are checked then written) and
    /// holds the quarantine's bounds.
    ingest_lock: Mutex<crate::quarantine::Bounds>,
    /// Channel heads and authors' highest sequences (the id, person and
    /// channel indexes themselves are on disk).
    index: RwLock<Index>,
    /// The own chain's durable head (seq, hash).
    head: Mutex<(u64, [u8; 32])>,
    /// Announces the durable own head seq (wakes the outbox publisher).
    head_tx: tokio::sync::watch::Sender<u64>,
    /// Every newly stored event, own or received (keeps projections current).
    events_tx: tokio::sync::broadcast::Sender<Arc<Envelope>>,
    commits: AtomicU64,
    committed_events: AtomicU64,
    /// Largest encoded event accepted, bytes (set from NATS `max_payload`).
    max_event_bytes: std::sync::atomic::AtomicUsize,
    /// The plausible range of own events' `occurred_at` (configurable per node).
    occurred_bounds: RwLock<yipan_core::validate::OccurredBounds>,
    /// Jobs submitted and not yet taken by the sequencer.
    queued: std::sync::atomic::AtomicUsize,
    /// The disclosure log's head (count, last hash), read at first use.
    disclosures: Mutex<Option<(u64, [u8; 32])>>,
    /// Erasures done by this process ([`Log::erasure_count`]).
    erasure_epoch: AtomicU64,
    /// Serialises read-modify-writes of data-key records (taken after
    /// `ingest_lock` by an erasure; alone by the outbox, which so never stalls ingest).
    data_keys_lock: Mutex<()>,
    /// This log itself, to hand its strands to the pools.
    me: Weak<Shared<B>>,
    /// Jobs waiting for the sequencer (closed when the log closes).
    jobs: pool::Inbox<Box<Job>>,
    /// The sequencer's own chain state; only the strand's runner touches it.
    seq: Mutex<SeqState>,
    /// Everything waiting for the writer: own groups from the sequencer and
    /// any other records (closed by the sequencer once the log's jobs are done).
    writes: pool::Inbox<Write>,
}

impl<B: Backend> Shared<B> {
    /// Commits `ops` atomically and durably through the writer thread — the
    /// same group commit (one sled batch, one flush) as own events and every
    /// other writer's records waiting at that moment. Before the writer runs
    /// (opening, migrations) and after it stopped, directly.
    fn commit(&self, ops: Vec<Op>) -> Result<()> {
        let (reply, answer) = mpsc::sync_channel(1);
        match self.writes.push(Write::Ops { ops, reply }, true) {
            Ok(idle) => self.schedule_writer(idle),
            Err(pool::Refused::Closed(Write::Ops { ops, .. }) | pool::Refused::Full(Write::Ops { ops, .. })) => {
                return self.backend.commit(ops)
            }
            Err(_) => unreachable!("an Ops write is handed back as it was pushed"),
        }
        answer.recv().map_err(|_| Error::Storage("the log's writer has stopped".into()))?
    }

    /// Hands the writes strand to the writer pool if a push found it idle.
    fn schedule_writer(&self, idle: bool) {
        if let (true, Some(me)) = (idle, self.me.upgrade()) {
            pool::writers().schedule(me);
        }
    }

    /// Hands the jobs strand to the sequencer pool if a push found it idle.
    fn schedule_sequencer(&self, idle: bool) {
        if let (true, Some(me)) = (idle, self.me.upgrade()) {
            pool::sequencers().schedule(me);
        }
    }
}

/// Node setting: the last trust-stream sequence applied (kept by the trust follower).
pub const TRUST_CURSOR: &str = "trust_cursor";

/// Batches that may wait for the sequencer before appends are refused as busy.
pub const JOB_QUEUE: usize = 1024;
/// Groups and other writes that may wait for the writer before the sequencer
/// (and anyone committing other records) waits: bounds what is sequenced but
/// not yet durable.
const WRITE_QUEUE: usize = 16;
/// Default largest event: NATS's default `max_payload` (1 MiB) less room for headers.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1024 * 1024 - 4096;
/// What signing adds to a draft's encoded size, at most: envelope fields
/// (ids, times, hashes, channel positions, tier digests) and the signature
/// (a batch head, its signature and an inclusion proof of at most 8 hashes).
const ENVELOPE_OVERHEAD: usize = 1024 + 512;

/// The append-only log of one locality.
pub struct Log<B: Backend> {
    shared: Arc<Shared<B>>,
}

/// Own-chain state kept by the sequencer.
struct SeqState {
    /// The key that signs the next event.
    signing: Arc<SigningKey>,
    seq: u64,
    hash: [u8; 32],
    /// Last channel position per recipient, loaded lazily from the index.
    channels: HashMap<u32, u64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded maps stay consistent across a panic (single inserts/removes).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<B: Backend> Log<B> {
    /// Opens the log of `locality` over `backend`, signing with `signing`.
    /// A new store records its locality and puts its own key in the roster.
    /// The in-memory indexes are rebuilt from the stored segments.
    pub fn open(backend: B, locality: Locality, signing: SigningKey) -> Result<Self> {
        Self::open_with_anchor(backend, locality, signing, None)
    }

    /// Opens the log verifying trust records up to `anchor` (the national
    /// root's public key). `None` keeps the anchor recorded in the store (if
    /// any); a different anchor replaces it and every stored trust record is
    /// verified again against the new one.
    pub fn open_with_anchor(
        backend: B,
        locality: Locality,
        signing: SigningKey,
        anchor: Option<VerifyingKey>,
    ) -> Result<Self> {
        match backend.get(layout::META_LOCALITY)? {
            Some(stored) => {
                let stored = String::from_utf8_lossy(&stored).to_string();
                if stored != locality.to_string() {
                    return Err(Error::LocalityMismatch { stored, given: locality.to_string() });
                }
            }
            None => backend.commit(vec![(layout::META_LOCALITY.to_vec(), Some(locality.to_string().into_bytes()))])?,
        }

        // Rebuild the in-memory heads; damaged records are skipped here and reported by
        // `verify`. A store written before the id, person and channel indexes lived on
        // disk gets their keys now (in batches; the marker last, so an interrupted
        // migration is redone).
        let me = locality.as_u32();
        let mut index = Index::new(me);
        let mut head = (0u64, [0u8; 32]);
        let mut rotations: Vec<(Vec<u8>, chrono::DateTime<chrono::Utc>)> = Vec::new();
        let migrate_ids = backend.get(layout::META_IDS)?.is_none();
        let migrate_pc = backend.get(layout::META_PERSON_CHANNEL)?.is_none();
        let mut ops: Vec<Op> = Vec::new();
        let mut runs: HashMap<(u32, u32), crate::index::Run> = HashMap::new();
        let mut err: Option<Error> = None;
        each_stored(&backend, &[layout::SEGMENT], &[layout::SEGMENT + 1], Damaged::Skip, |author, e| {
            if let Ok(ev) = StoredEvent::decode(e.bytes) {
                let indexed = index.add(author, e.seq, &ev.envelope);
                if let (true, Ok(id)) = (migrate_ids, <[u8; 16]>::try_from(ev.envelope.event_id.as_slice())) {
                    ops.push((layout::id_key(&id).to_vec(), Some(layout::id_value(author, e.seq, &e.digest).to_vec())));
                }
                if migrate_pc {
                    if let Ok(p) = yipan_core::PersonKey::parse(&ev.envelope.person_key) {
                        ops.push((layout::person_key(p.as_bytes(), author, e.seq).to_vec(), Some(Vec::new())));
                    }
                    for (r, pos) in indexed {
                        let run = runs.entry((author, r)).or_insert_with(|| crate::index::Run::after(pos - 1));
                        run.push(pos, e.seq);
                        ops.extend(run.cut(author, r, 512));
                    }
                }
                if ops.len() >= 8192 {
                    if let Err(e) = backend.apply(std::mem::take(&mut ops)) {
                        err = Some(e);
                        return false;
                    }
                }
                if author == me {
                    head = (e.seq, ev.hash);
                }
                if let Some(at) = rotation_time(&ev) {
                    rotations.push((e.bytes.to_vec(), at));
                }
            }
            true
        })?;
        if let Some(e) = err {
            return Err(e);
        }
        if migrate_ids || migrate_pc {
            ops.extend(runs.into_iter().filter_map(|((a, r), run)| run.op(a, r)));
            ops.push((layout::META_IDS.to_vec(), Some(b"1".to_vec())));
            ops.push((layout::META_PERSON_CHANNEL.to_vec(), Some(b"1".to_vec())));
            backend.commit(ops)?;
        }

        let (trust, trust_next) = load_trust(&backend, anchor, rotations)?;
        let mut trust = trust;
        let own = signing.verifying_key();
        if !trust.knows(locality) {
            trust.add_bootstrap(locality, own)?;
            // Kept only for a new store: a store that already holds history (opened
            // with a wrong anchor, say) must not turn its current key into a
            // hand-added entry that would later conflict with its own certificates.
            if head.0 == 0 && trust_next == 0 {
                backend.commit(vec![(layout::roster_key(me).to_vec(), Some(own.to_bytes().to_vec()))])?;
            }
        }
        check_own_key(&trust, locality, head.0 + 1, &own)?;
        let bounds = crate::quarantine::Bounds::load(&backend, &meta_key(crate::quarantine::EVICTED))?;
        let feed = backend.event_feed_capacity().max((index.len() / 16).min(1 << 16));
        let state = SeqState { signing: Arc::new(signing), seq: head.0, hash: head.1, channels: HashMap::new() };
        let shared = Arc::new_cyclic(|me| Shared {
            backend,
            locality,
            public: RwLock::new(own),
            trust: RwLock::new(trust),
            trust_next: AtomicU64::new(trust_next),
            in_flight: Mutex::new(HashMap::new()),
            poisoned: AtomicBool::new(false),
            max_event_bytes: std::sync::atomic::AtomicUsize::new(DEFAULT_MAX_EVENT_BYTES),
            occurred_bounds: RwLock::new(Default::default()),
            queued: std::sync::atomic::AtomicUsize::new(0),
            ingest_lock: Mutex::new(bounds),
            erasure_epoch: AtomicU64::new(0),
            data_keys_lock: Mutex::new(()),
            index: RwLock::new(index),
            head: Mutex::new(head),
            head_tx: tokio::sync::watch::channel(head.0).0,
            events_tx: tokio::sync::broadcast::channel(feed).0,
            commits: AtomicU64::new(0),
            committed_events: AtomicU64::new(0),
            disclosures: Mutex::new(None),
            me: me.clone(),
            jobs: pool::Inbox::new(JOB_QUEUE),
            seq: Mutex::new(state),
            writes: pool::Inbox::new(WRITE_QUEUE),
        });
        Ok(Log { shared })
    }

    /// Heap held by the in-memory indexes (channel heads, authors' highest
    /// sequences), bytes: bounded by channels and authors, not by events.
    pub fn index_heap_bytes(&self) -> usize {
        read(&self.shared.index).heap_bytes()
    }

    /// The locality that owns this log.
    pub fn locality(&self) -> Locality {
        self.shared.locality
    }

    /// Serialises writers of the disclosure log; holds its head.
    pub(crate) fn disclosure_lock(&self) -> std::sync::MutexGuard<'_, Option<(u64, [u8; 32])>> {
        lock(&self.shared.disclosures)
    }

    /// Serialises a read-modify-write of stored values with ingest.
    pub(crate) fn ingest_guard(&self) -> std::sync::MutexGuard<'_, crate::quarantine::Bounds> {
        lock(&self.shared.ingest_lock)
    }

    /// Positions (author, seq) of every event about `person`.
    pub(crate) fn person_positions(&self, person: &PersonKey) -> Result<Vec<(u32, u64)>> {
        crate::index::person(&self.shared.backend, person)
    }

    /// Serialises data-key record updates (see `Shared::data_keys_lock`).
    pub(crate) fn data_keys_guard(&self) -> std::sync::MutexGuard<'_, ()> {
        lock(&self.shared.data_keys_lock)
    }

    pub(crate) fn erasure_epoch(&self) -> &AtomicU64 {
        &self.shared.erasure_epoch
    }

    /// This locality's public key.
    pub fn public_key(&self) -> VerifyingKey {
        *read(&self.shared.public)
    }

    /// The backend (reads for tools and tests).
    pub fn backend(&self) -> &B {
        &self.shared.backend
    }

    /// Number of group commits and of events they wrote since open.
    pub fn commit_stats(&self) -> (u64, u64) {
        (self.shared.commits.load(Ordering::Relaxed), self.shared.committed_events.load(Ordering::Relaxed))
    }

    /// Number of events held (own and received).
    pub fn len(&self) -> usize {
        read(&self.shared.index).len()
    }

    /// True when no event is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Verifies the whole store: chains, signatures, gaps, channels, indexes.
    pub fn verify(&self) -> Result<crate::verify::VerifyReport> {
        let trust = read(&self.shared.trust).clone();
        let mut report = crate::verify::run(&self.shared.backend, self.shared.locality, &trust)?;
        // The disclosure log's own chain (who received which person's data).
        let d = self.verify_disclosures()?;
        report.disclosures = d.entries;
        report.faults.extend(d.problems.into_iter().map(|problem| crate::verify::Fault {
            author: "disclosures".into(),
            seq: 0,
            code: "disclosure.chain",
            problem,
        }));
        Ok(report)
    }

    /// True once a write has failed (e.g. disk full): appends are refused
    /// until the store is reopened (the node then exits for its supervisor
    /// to restart it; see docs/operations.md).
    pub fn is_poisoned(&self) -> bool {
        self.shared.poisoned.load(Ordering::Acquire)
    }

    /// Test hook: marks the store as after a failed write.
    #[cfg(feature = "testing")]
    pub fn poison_for_test(&self) {
        self.shared.poisoned.store(true, Ordering::Release);
    }

    /// Commits `ops` atomically and durably through the writer thread (the
    /// one write path: see `Shared::commit`).
    pub(crate) fn commit(&self, ops: Vec<Op>) -> Result<()> {
        self.shared.commit(ops)
    }

    /// Test hook: writes raw bytes under a raw key, bypassing every check.
    #[cfg(feature = "testing")]
    pub fn raw_put(&self, key: &[u8], value: Option<Vec<u8>>) -> Result<()> {
        self.shared.commit(vec![(key.to_vec(), value)])
    }

    /// Test hook: rewrites the stored bytes of one event inside its segment
    /// (`None` removes it), bypassing every check.
    #[cfg(feature = "testing")]
    pub fn raw_edit_event(&self, author: Locality, seq: u64, f: impl FnOnce(&mut Option<Vec<u8>>)) -> Result<()> {
        let a = author.as_u32();
        let (key, value) = self
            .shared
            .backend
            .range(&layout::segment_key(a, seq), &layout::prefix_end(&layout::author_prefix(a)), 1)?
            .pop()
            .ok_or_else(|| Error::Storage(format!("no segment holds {author}#{seq}")))?;
        let entries = segment::decode(&value).map_err(Error::Storage)?;
        let mut owned: Vec<(u64, [u8; 32], Option<Vec<u8>>)> =
            entries.iter().map(|e| (e.seq, e.digest, Some(e.bytes.to_vec()))).collect();
        let slot =
            owned.iter_mut().find(|e| e.0 == seq).ok_or_else(|| Error::Storage(format!("{author}#{seq} not held")))?;
        f(&mut slot.2);
        let kept: Vec<Entry<'_>> =
            owned.iter().filter_map(|(s, d, b)| b.as_ref().map(|b| Entry { seq: *s, digest: *d, bytes: b })).collect();
        self.shared.commit(vec![(key, Some(segment::encode(&kept)))])
    }
}

impl<B: Backend> Drop for Log<B> {
    fn drop(&mut self) {
        // Closing the jobs lets the sequencer finish what is queued and then
        // close the writes; the writer drains those and finishes after the last flush.
        let idle = self.shared.jobs.close();
        self.shared.schedule_sequencer(idle);
        self.shared.writes.wait_finished();
        // The pool thread that ran the last write lets go of the log right
        // after: wait for it, so that the storage closes before `drop` returns
        // (as a test that damages the files, or a reopen, relies on).
        while Arc::strong_count(&self.shared) > 1 {
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
    }
}

/// Meta keys of node settings live under `mx`, apart from the log's own (`mhead`, `mlocality`).
fn meta_key(name: &str) -> Vec<u8> {
    let mut k = b"mx".to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}
