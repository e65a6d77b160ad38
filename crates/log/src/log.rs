//! [`Log`]: the append-only log over a [`Backend`].
//!
//! Appends flow through a two-stage pipeline so that many concurrent appends
//! share one flush (group commit) and signing overlaps with flushing:
//!
//! ```text
//! callers ──validate──► sequencer thread ──────────────► writer thread
//!                       idempotency check                 merge queued groups
//!                       author_seq, channel positions     one atomic batch
//!                       prev_hash chain                   one flush (durable)
//!                       sign (rayon, both cores)          update indexes, reply
//! ```
//!
//! A group is stored as segments (runs of up to 256 events in one sled value,
//! [`crate::segment`]), so a durable append costs one sled insert per group,
//! not several per event; the id, person and channel indexes live in memory
//! ([`crate::index`]) and are rebuilt from the segments on open.
//!
//! A caller's reply is sent only after its events are flushed (invariant 2).
//! A batch of drafts is atomic: validated as a whole before sequencing, and
//! written in one backend batch. If a write fails after later events were
//! sequenced on top of it, the log refuses further appends ([`Error::Poisoned`])
//! until reopened, so nothing acknowledged ever depends on something lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::thread::JoinHandle;

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

/// Most events one sequencing group takes (bounds latency and batch size).
const MAX_GROUP: usize = 4096;
/// Groups signed (and received batches verified) in parallel from this size on.
const PARALLEL_SIGN_FROM: usize = 8;
/// Newly stored events buffered for slow subscribers before they must rebuild.
const EVENT_FEED: usize = 1 << 16;

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
    /// Id, person and channel indexes over everything stored.
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
}

/// Node setting: the last trust-stream sequence applied (kept by the trust follower).
pub const TRUST_CURSOR: &str = "trust_cursor";

/// Batches that may wait for the sequencer before appends are refused as busy.
pub const JOB_QUEUE: usize = 1024;
/// Default largest event: NATS's default `max_payload` (1 MiB) less room for headers.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1024 * 1024 - 4096;
/// What signing adds to a draft's encoded size, at most: envelope fields
/// (ids, times, hashes, channel positions, tier digests) and the signature
/// (a batch head, its signature and an inclusion proof of at most 8 hashes).
const ENVELOPE_OVERHEAD: usize = 1024 + 512;

/// The append-only log of one locality.
pub struct Log<B: Backend> {
    shared: Arc<Shared<B>>,
    tx: Option<mpsc::SyncSender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

/// Own-chain state kept by the sequencer thread.
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

        // Rebuild the indexes; damaged records are skipped here and reported by `verify`.
        // A store written before the event-id index lived on disk gets its `x` keys now.
        let mut index = Index::default();
        let me = locality.as_u32();
        let mut head = (0u64, [0u8; 32]);
        let mut rotations: Vec<(Vec<u8>, chrono::DateTime<chrono::Utc>)> = Vec::new();
        let migrate = backend.get(layout::META_IDS)?.is_none();
        let mut id_ops: Vec<Op> = Vec::new();
        let mut id_err: Option<Error> = None;
        backend.for_each(&[layout::SEGMENT], &[layout::SEGMENT + 1], &mut |k, v| {
            let (Some((author, _)), Ok(entries)) = (layout::parse_segment_key(k), segment::decode(v)) else {
                return true;
            };
            for e in entries {
                if let Ok(ev) = StoredEvent::decode(e.bytes) {
                    index.add(author, e.seq, &ev.envelope);
                    if let (true, Ok(id)) = (migrate, <[u8; 16]>::try_from(ev.envelope.event_id.as_slice())) {
                        id_ops.push((
                            layout::id_key(&id).to_vec(),
                            Some(layout::id_value(author, e.seq, &e.digest).to_vec()),
                        ));
                        if id_ops.len() >= 8192 {
                            if let Err(e) = backend.apply(std::mem::take(&mut id_ops)) {
                                id_err = Some(e);
                                return false;
                            }
                        }
                    }
                    if author == me {
                        head = (e.seq, ev.hash);
                    }
                    if let Some(at) = rotation_time(&ev) {
                        rotations.push((e.bytes.to_vec(), at));
                    }
                }
            }
            true
        })?;
        if let Some(e) = id_err {
            return Err(e);
        }
        if migrate {
            id_ops.push((layout::META_IDS.to_vec(), Some(b"1".to_vec())));
            backend.commit(id_ops)?;
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
        let shared = Arc::new(Shared {
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
            events_tx: tokio::sync::broadcast::channel(EVENT_FEED).0,
            commits: AtomicU64::new(0),
            committed_events: AtomicU64::new(0),
            disclosures: Mutex::new(None),
        });
        let (tx, rx) = mpsc::sync_channel::<Job>(JOB_QUEUE);
        let (wtx, wrx) = mpsc::sync_channel::<WriteGroup>(4);
        let state = SeqState { signing: Arc::new(signing), seq: head.0, hash: head.1, channels: HashMap::new() };
        let s1 = shared.clone();
        let s2 = shared.clone();
        let sequencer = std::thread::Builder::new()
            .name(format!("yipan-seq-{locality}"))
            .spawn(move || sequencer(s1, rx, wtx, state))
            .map_err(|e| Error::Storage(format!("cannot start sequencer thread: {e}")))?;
        let writer = std::thread::Builder::new()
            .name(format!("yipan-wr-{locality}"))
            .spawn(move || writer(s2, wrx))
            .map_err(|e| Error::Storage(format!("cannot start writer thread: {e}")))?;
        Ok(Log { shared, tx: Some(tx), threads: vec![sequencer, writer] })
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
    pub(crate) fn person_positions(&self, person: &PersonKey) -> Vec<(u32, u64)> {
        read(&self.shared.index).person(person)
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

    fn prepare(&self, drafts: Vec<EventDraft>, rotation: bool) -> Result<Vec<Prepared>> {
        let single = drafts.len() == 1;
        for (index, d) in drafts.iter().enumerate() {
            let is_rotation = matches!(
                d.body.as_ref().and_then(|b| b.kind.as_ref()),
                Some(yipan_proto::v1::event_body::Kind::KeyRotated(_))
            );
            if is_rotation != rotation {
                let source = yipan_core::Error::field(
                    "kind",
                    "KeyRotated is appended only by `yipan key rotate` (docs/trust.md), never through the event API",
                );
                return Err(if single { Error::Invalid(source) } else { Error::InvalidInBatch { index, source } });
            }
        }
        let limit = self.max_event_bytes();
        for (index, d) in drafts.iter().enumerate() {
            let size = d.encoded_len() + d.recipients.len() * 16 + ENVELOPE_OVERHEAD;
            if size > limit {
                let field = if single { "event".to_string() } else { format!("[{index}]") };
                return Err(Error::TooLarge { field, size, limit });
            }
        }
        let mut prepared: Vec<Prepared> = Vec::with_capacity(drafts.len());
        let mut earlier = crate::semantic::BatchIndex::default();
        for (index, draft) in drafts.into_iter().enumerate() {
            let p = {
                let checked =
                    validate_draft(self.shared.locality, &draft)
                        .and_then(|c| {
                            let bounds = *read(&self.shared.occurred_bounds);
                            yipan_core::validate::check_occurred_within(
                                draft.occurred_at.as_ref(),
                                chrono::Utc::now(),
                                &bounds,
                            )
                            .map(|_| c)
                        })
                        .and_then(|c| {
                            let before = crate::semantic::Earlier::new(&prepared, &earlier);
                            crate::semantic::check(self, self.shared.locality, &draft, &c, &before)
                                .and_then(|_| crate::semantic::divisions(self, &draft, &c, &before))
                                .and_then(|_| crate::semantic::with_workplace(self, &draft, c, &before))
                        })
                        .map_err(|source| {
                            if single {
                                Error::Invalid(source)
                            } else {
                                Error::InvalidInBatch { index, source }
                            }
                        })?;
                let digest: [u8; 32] = Sha256::digest(draft.encode_to_vec()).into();
                let id = if draft.event_id.is_empty() {
                    Uuid::now_v7()
                } else {
                    Uuid::from_slice(&draft.event_id)
                        .map_err(|_| Error::Invalid(yipan_core::Error::field("id", "is not a UUID")))?
                };
                Prepared { draft, checked, id, digest }
            };
            earlier.add(prepared.len(), &p.draft);
            prepared.push(p);
        }
        Ok(prepared)
    }

    /// Sets the plausible range of `occurred_at` for own events (`[validation]`
    /// in node.toml); received events are judged by the wider
    /// [`yipan_core::validate::OccurredBounds::RECEIVED`].
    pub fn set_occurred_bounds(&self, bounds: yipan_core::validate::OccurredBounds) {
        *write(&self.shared.occurred_bounds) = bounds;
    }

    /// Sets the largest encoded event accepted (the deployment's NATS
    /// `max_payload` less room for headers): larger events are refused at
    /// append, so nothing enters the log that could never be published.
    pub fn set_max_event_bytes(&self, limit: usize) {
        self.shared.max_event_bytes.store(limit.max(ENVELOPE_OVERHEAD * 2), Ordering::Relaxed);
    }

    /// The largest encoded event accepted.
    pub fn max_event_bytes(&self) -> usize {
        self.shared.max_event_bytes.load(Ordering::Relaxed)
    }

    /// Queues drafts for sequencing. `wait`: block while the queue is full
    /// (CLI, imports); otherwise refuse with [`Error::Busy`] (the API answers 503).
    fn submit(&self, drafts: Vec<EventDraft>, wait: bool) -> Result<oneshot::Receiver<Result<Vec<Appended>>>> {
        self.submit_job(drafts, wait, None)
    }

    fn submit_job(
        &self,
        drafts: Vec<EventDraft>,
        wait: bool,
        rotate: Option<SigningKey>,
    ) -> Result<oneshot::Receiver<Result<Vec<Appended>>>> {
        if self.shared.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned);
        }
        let next = lock(&self.shared.head).0 + 1;
        match read(&self.shared.trust).key_for(self.shared.locality, next, None) {
            Ok(k) if k != *read(&self.shared.public) && rotate.is_none() => {
                return Err(Error::OwnKey {
                    seq: next,
                    problem: format!(
                        "the key certified for it is {}…, not this node's key; restart the node so that it \
                         opens with the certified key waiting in keys/ed25519.next.secret (docs/trust.md)",
                        hex::encode(&k.to_bytes()[..6])
                    ),
                })
            }
            Err(e) if !matches!(e, KeyFault::Unknown { .. }) => {
                return Err(Error::OwnKey { seq: next, problem: e.to_string() })
            }
            _ => {}
        }
        let drafts = self.prepare(drafts, rotate.is_some())?;
        let (reply, rx) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or(Error::Closed)?;
        let job = Job { drafts, reply, rotate };
        self.shared.queued.fetch_add(1, Ordering::Relaxed);
        let sent = if wait {
            tx.send(job).map_err(|_| Error::Closed)
        } else {
            tx.try_send(job).map_err(|e| match e {
                mpsc::TrySendError::Full(_) => Error::Busy { queued: JOB_QUEUE },
                mpsc::TrySendError::Disconnected(_) => Error::Closed,
            })
        };
        if sent.is_err() {
            self.shared.queued.fetch_sub(1, Ordering::Relaxed);
        }
        sent.map(|_| rx)
    }

    /// Submits without waiting (the benchmark's open-loop load generator).
    #[doc(hidden)]
    pub fn submit_for_bench(&self, draft: EventDraft) -> Result<oneshot::Receiver<Result<Vec<Appended>>>> {
        self.submit(vec![draft], true)
    }

    /// Appends drafts atomically (all or none), blocking until durable.
    /// Must not be called from inside an async runtime; use
    /// [`Log::append_batch_async`] there.
    pub fn append_batch(&self, drafts: Vec<EventDraft>) -> Result<Vec<Appended>> {
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        self.submit(drafts, true)?.blocking_recv().map_err(|_| Error::Closed)?
    }

    /// Appends one draft, blocking until durable.
    pub fn append(&self, draft: EventDraft) -> Result<Appended> {
        let mut v = self.append_batch(vec![draft])?;
        v.pop().ok_or(Error::Closed)
    }

    /// Appends drafts atomically, resolving once durable.
    pub async fn append_batch_async(&self, drafts: Vec<EventDraft>) -> Result<Vec<Appended>> {
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        self.submit(drafts, false)?.await.map_err(|_| Error::Closed)?
    }

    /// Appends one draft, resolving once durable.
    pub async fn append_async(&self, draft: EventDraft) -> Result<Appended> {
        let mut v = self.append_batch_async(vec![draft]).await?;
        v.pop().ok_or(Error::Closed)
    }

    /// The event of `author` at `seq`, if held.
    pub fn event_at(&self, author: Locality, seq: u64) -> Result<Option<StoredEvent>> {
        event_at(&self.shared.backend, author.as_u32(), seq)
    }

    /// The event with this id.
    pub fn get(&self, id: Uuid) -> Result<Option<StoredEvent>> {
        match id_entry(&self.shared.backend, id.as_bytes())? {
            Some((author, seq, _)) => event_at(&self.shared.backend, author, seq),
            None => Ok(None),
        }
    }

    /// Up to `limit` events of `author` from sequence `from_seq` on.
    pub fn read_author(&self, author: Locality, from_seq: u64, limit: usize) -> Result<Vec<StoredEvent>> {
        self.read_author_where(author, from_seq, limit, |_| true)
    }

    /// Up to `limit` events of `author` from `from_seq` on that `matches` accepts
    /// (the limit counts matches, not events read).
    pub fn read_author_where(
        &self,
        author: Locality,
        from_seq: u64,
        limit: usize,
        matches: impl Fn(&StoredEvent) -> bool,
    ) -> Result<Vec<StoredEvent>> {
        let a = author.as_u32();
        let start = layout::segment_key(a, from_seq).to_vec();
        let end = layout::prefix_end(&layout::author_prefix(a));
        self.scan(&start, &end, |_, seq| seq >= from_seq, matches, limit)
    }

    /// Up to `limit` events of any author, in (author, seq) order, after `after`.
    pub fn read_all(&self, after: Option<(Locality, u64)>, limit: usize) -> Result<Vec<StoredEvent>> {
        self.read_all_where(after, limit, |_| true)
    }

    /// Up to `limit` events after `after` that `matches` accepts (the limit
    /// counts matches, not events read).
    pub fn read_all_where(
        &self,
        after: Option<(Locality, u64)>,
        limit: usize,
        matches: impl Fn(&StoredEvent) -> bool,
    ) -> Result<Vec<StoredEvent>> {
        let (start, skip) = match after {
            Some((a, s)) => (layout::segment_key(a.as_u32(), s.saturating_add(1)).to_vec(), Some((a.as_u32(), s))),
            None => (vec![layout::SEGMENT], None),
        };
        let keep = move |author: u32, seq: u64| match skip {
            Some((a, s)) => author > a || (author == a && seq > s),
            None => true,
        };
        self.scan(&start, &[layout::SEGMENT + 1], keep, matches, limit)
    }

    /// Decodes events of the segments in `start..end` that `keep` accepts by
    /// position, keeping those `matches` accepts, until `limit` are kept.
    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        keep: impl Fn(u32, u64) -> bool,
        matches: impl Fn(&StoredEvent) -> bool,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        let mut out = Vec::new();
        let mut failure = None;
        self.shared.backend.for_each(start, end, &mut |k, v| {
            let Some((author, last)) = layout::parse_segment_key(k) else { return true };
            let entries = match segment::decode(v) {
                Ok(e) => e,
                Err(problem) => {
                    failure = Some(Error::Corrupt { author: author.to_string(), seq: last, problem });
                    return false;
                }
            };
            for e in entries {
                if out.len() >= limit {
                    return false;
                }
                if keep(author, e.seq) {
                    match decode_at(author, e.seq, e.bytes) {
                        Ok(ev) if matches(&ev) => out.push(ev),
                        Ok(_) => {}
                        Err(err) => {
                            failure = Some(err);
                            return false;
                        }
                    }
                }
            }
            out.len() < limit
        })?;
        match failure {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Decodes the envelope of every stored event, in (author, seq) order, in
    /// chunks decoded in parallel on all cores, calling `f` per chunk. For
    /// rebuilding views: it skips the canonical-form and hash checks of
    /// [`StoredEvent::decode`] (that is `verify`'s job) and fails on a
    /// segment or envelope it cannot decode.
    pub fn scan_envelopes(&self, mut f: impl FnMut(Vec<Envelope>)) -> Result<()> {
        const CHUNK: usize = 8192;
        let mut pending: Vec<(u32, u64, Vec<u8>)> = Vec::with_capacity(CHUNK);
        let mut failure = None;
        let decode = |batch: &mut Vec<(u32, u64, Vec<u8>)>| -> Result<Vec<Envelope>> {
            let out = batch
                .par_iter()
                .map(|(a, s, b)| {
                    SignedEvent::decode(b.as_slice())
                        .and_then(|signed| Envelope::decode(signed.envelope.as_slice()))
                        .map_err(|e| Error::Corrupt { author: a.to_string(), seq: *s, problem: e.to_string() })
                })
                .collect();
            batch.clear();
            out
        };
        self.shared.backend.for_each(&[layout::SEGMENT], &[layout::SEGMENT + 1], &mut |k, v| {
            let Some((author, last)) = layout::parse_segment_key(k) else { return true };
            match segment::decode(v) {
                Ok(entries) => pending.extend(entries.iter().map(|e| (author, e.seq, e.bytes.to_vec()))),
                Err(problem) => {
                    failure = Some(Error::Corrupt { author: author.to_string(), seq: last, problem });
                    return false;
                }
            }
            if pending.len() >= CHUNK {
                match decode(&mut pending) {
                    Ok(envs) => f(envs),
                    Err(e) => {
                        failure = Some(e);
                        return false;
                    }
                }
            }
            true
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        if !pending.is_empty() {
            f(decode(&mut pending)?);
        }
        Ok(())
    }

    /// Calls `f(author, seq, bytes)` with the stored bytes of every event, in
    /// (author, seq) order, after `after` if given, for at most `limit` events
    /// (for audits and for serving raw events; nothing is decoded here).
    pub fn for_each_raw(
        &self,
        after: Option<(Locality, u64)>,
        limit: usize,
        mut f: impl FnMut(Locality, u64, &[u8]),
    ) -> Result<()> {
        let start = match after {
            Some((a, s)) => layout::segment_key(a.as_u32(), s.saturating_add(1)).to_vec(),
            None => vec![layout::SEGMENT],
        };
        let mut failure = None;
        let mut n = 0usize;
        self.shared.backend.for_each(&start, &[layout::SEGMENT + 1], &mut |k, v| {
            let Some((author, last)) = layout::parse_segment_key(k) else { return true };
            let Ok(a) = Locality::from_u32(author) else { return true };
            match segment::decode(v) {
                Ok(entries) => {
                    for e in entries {
                        if after.is_some_and(|(aa, ss)| aa == a && e.seq <= ss) {
                            continue;
                        }
                        if n >= limit {
                            return false;
                        }
                        f(a, e.seq, e.bytes);
                        n += 1;
                    }
                    true
                }
                Err(problem) => {
                    failure = Some(Error::Corrupt { author: author.to_string(), seq: last, problem });
                    false
                }
            }
        })?;
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Every person with events held here.
    pub fn persons(&self) -> Vec<PersonKey> {
        read(&self.shared.index).persons()
    }

    /// Every event about `person`, in the order they were stored.
    pub fn read_person(&self, person: PersonKey) -> Result<Vec<StoredEvent>> {
        let positions = read(&self.shared.index).person(&person);
        self.at_positions(positions)
    }

    fn at_positions(&self, positions: Vec<(u32, u64)>) -> Result<Vec<StoredEvent>> {
        let mut out = Vec::with_capacity(positions.len());
        for (a, s) in positions {
            if let Some(ev) = event_at(&self.shared.backend, a, s)? {
                out.push(ev);
            }
        }
        Ok(out)
    }

    /// Up to `limit` events of the author→recipient channel from position `from` on.
    pub fn read_channel(
        &self,
        author: Locality,
        recipient: Locality,
        from: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        let seqs = read(&self.shared.index).channel(author.as_u32(), recipient.as_u32(), from, limit);
        self.at_positions(seqs.into_iter().map(|(_, s)| (author.as_u32(), s)).collect())
    }

    /// The last stored position of the author→recipient channel (0 if none).
    pub fn channel_head(&self, author: Locality, recipient: Locality) -> Result<u64> {
        Ok(read(&self.shared.index).channel_head(author.as_u32(), recipient.as_u32()))
    }

    /// The own chain's durable head: (seq, hash); (0, zeros) when empty.
    pub fn head(&self) -> Result<(u64, [u8; 32])> {
        Ok(*lock(&self.shared.head))
    }

    /// Every event stored from now on, own or received, after it is durable.
    /// A subscriber that falls more than 65,536 events behind gets
    /// `RecvError::Lagged` and must re-read the log.
    pub fn subscribe_events(&self) -> tokio::sync::broadcast::Receiver<Arc<Envelope>> {
        self.shared.events_tx.subscribe()
    }

    /// Watches the durable own head seq: changes after every group commit.
    pub fn subscribe_head(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.head_tx.subscribe()
    }

    /// For every outbound channel: the recipient and the last position whose
    /// event has a sequence ≤ `max_seq`.
    pub fn outbound_heads(&self, max_seq: u64) -> Vec<(Locality, u64)> {
        read(&self.shared.index)
            .outbound_heads(self.shared.locality.as_u32(), max_seq)
            .into_iter()
            .filter_map(|(r, h)| Locality::from_u32(r).ok().map(|l| (l, h)))
            .collect()
    }

    /// Reads a named node setting (e.g. the outbox cursor) stored beside the log.
    pub fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.shared.backend.get(&meta_key(name))
    }

    /// Durably stores a named node setting.
    pub fn meta_put(&self, name: &str, value: &[u8]) -> Result<()> {
        self.shared.backend.commit(vec![(meta_key(name), Some(value.to_vec()))])
    }

    /// Whether a key of `locality` is known (certified or hand-added).
    pub fn trusts(&self, locality: Locality) -> bool {
        read(&self.shared.trust).knows(locality)
    }

    /// Every known locality with the key that signs its next events.
    pub fn roster(&self) -> Vec<(Locality, VerifyingKey)> {
        read(&self.shared.trust).current_keys()
    }

    /// Every trust record kept, in arrival order, with the instant it was
    /// judged at (for audits that rebuild trust with their own anchor).
    pub fn trust_records(&self) -> Result<Vec<(chrono::DateTime<chrono::Utc>, Vec<u8>)>> {
        Ok(self
            .shared
            .backend
            .range(&[layout::TRUST], &[layout::TRUST + 1], usize::MAX)?
            .into_iter()
            .filter(|(_, v)| v.len() >= 8)
            .map(|(_, v)| {
                let micros = i64::from_be_bytes(v[..8].try_into().unwrap_or_default());
                (chrono::DateTime::from_timestamp_micros(micros).unwrap_or_default(), v[8..].to_vec())
            })
            .collect())
    }

    /// Author sequences of this node's own key handovers (`KeyRotated` events).
    pub fn own_handovers(&self) -> Vec<u64> {
        read(&self.shared.trust).handovers(self.shared.locality)
    }

    /// A copy of the verified trust state (views, audits).
    pub fn trust(&self) -> TrustState {
        read(&self.shared.trust).clone()
    }

    /// Adds a hand-copied locality key (`yipan roster add`: the air-gapped
    /// exception to certificates); returns false if it was already there.
    /// A different key for a known locality is refused.
    pub fn roster_add(&self, locality: Locality, key: VerifyingKey) -> Result<bool> {
        let mut t = write(&self.shared.trust);
        let mut probe = t.clone();
        match probe.add_bootstrap(locality, key) {
            Ok(false) => Ok(false),
            Ok(true) => {
                self.shared
                    .backend
                    .commit(vec![(layout::roster_key(locality.as_u32()).to_vec(), Some(key.to_bytes().to_vec()))])?;
                *t = probe;
                Ok(true)
            }
            Err(_) => Err(Error::RosterConflict { locality: locality.to_string() }),
        }
    }

    /// Verifies one trust record (received at `at`, the stream's timestamp)
    /// up to the anchor and keeps it. A refused record goes to quarantine
    /// with its reason (`trust.*` codes) and is returned as `Ok(Err(fault))`;
    /// `Err` is a storage failure.
    pub fn apply_trust_record(
        &self,
        record: &[u8],
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<std::result::Result<Applied, TrustFault>> {
        // A handover goes through the same checks as one met in a channel.
        if let Ok(yipan_trust::statement::Record::Rotation(ev_bytes)) = yipan_trust::statement::decode_record(record) {
            let outcome = match StoredEvent::decode(&ev_bytes) {
                Err(p) => Err(TrustFault::Malformed(format!("key rotation event: {p}"))),
                Ok(ev) => match self.keep_handover(&ev_bytes, &ev, at) {
                    Ok(applied) => Ok(applied),
                    Err(Error::Trust(f)) => Err(f),
                    Err(e) => return Err(e),
                },
            };
            return match outcome {
                Ok(applied) => Ok(Ok(applied)),
                Err(fault) => self.refuse_trust_record(record, fault),
            };
        }
        // Applied in place (a copy per record would cost O(localities) each: seconds for a
        // national trust stream at start). A refused record changes nothing that matters.
        let mut t = write(&self.shared.trust);
        match t.apply_record(record, at) {
            Ok(Applied::Duplicate) => Ok(Ok(Applied::Duplicate)),
            Ok(applied) => {
                self.keep_trust_record(record, at)?;
                drop(t);
                tracing::info!(?applied, "trust record applied");
                Ok(Ok(applied))
            }
            Err(fault) => {
                drop(t);
                self.refuse_trust_record(record, fault)
            }
        }
    }

    /// Quarantines a refused trust record with its code (and alerts when it
    /// may be a compromise).
    fn refuse_trust_record(
        &self,
        record: &[u8],
        fault: TrustFault,
    ) -> Result<std::result::Result<Applied, TrustFault>> {
        let who = match yipan_trust::statement::decode_record(record) {
            Ok(yipan_trust::statement::Record::Rotation(_)) => "trust:rotation",
            _ => "trust",
        };
        self.set_aside(record, Some(who.into()), Code::Trust(fault.code()), format!("{}: {fault}", fault.code()))?;
        if fault.is_alert() {
            tracing::error!(alert = "trust", code = fault.code(), %fault, "trust record refused");
        } else {
            tracing::warn!(code = fault.code(), %fault, "trust record refused");
        }
        Ok(Err(fault))
    }

    /// Applies a key handover (an encoded `KeyRotated` event, `ev` decoded)
    /// and keeps it as a trust record, so that a restart replays it in the
    /// order it was learned. A handover at or below a sequence this node
    /// already holds of that author must be the very event held there (for
    /// its own locality: always), so a stolen old key cannot rewrite a chain
    /// by handing it over in the past, nor hand this node's own chain over.
    fn keep_handover(&self, bytes: &[u8], ev: &StoredEvent, at: chrono::DateTime<chrono::Utc>) -> Result<Applied> {
        let author = ev.author().ok_or_else(|| TrustFault::BadRotation("author is not a division code".into()))?;
        // This node holds every event of its own chain: its own handovers must be among them.
        let own = author == self.shared.locality;
        if own || ev.seq() <= read(&self.shared.index).max_seq(author.as_u32()) {
            match self.event_at(author, ev.seq())? {
                Some(held) if held.hash == ev.hash => {}
                _ => {
                    return Err(TrustFault::BadRotation(format!(
                        "at {author}#{}: this node holds another event (or a later one) there",
                        ev.seq()
                    ))
                    .into())
                }
            }
        }
        let mut t = write(&self.shared.trust);
        match t.apply_rotation(bytes, at)? {
            Applied::Duplicate => Ok(Applied::Duplicate),
            applied => {
                self.keep_trust_record(&yipan_trust::statement::record_of_rotation(bytes.to_vec()), at)?;
                Ok(applied)
            }
        }
    }

    /// Stores an applied trust record after the others, with the instant it
    /// was judged at (call with the trust state's write lock held, so the
    /// stored order is the applied order). A failed write leaves memory ahead
    /// of the disk: like a failed append, the log stops until reopened (the
    /// stream cursor was not advanced, so the record is read again then).
    fn keep_trust_record(&self, record: &[u8], at: chrono::DateTime<chrono::Utc>) -> Result<()> {
        let n = self.shared.trust_next.fetch_add(1, Ordering::Relaxed);
        let mut value = at.timestamp_micros().to_be_bytes().to_vec();
        value.extend_from_slice(record);
        self.shared.backend.commit(vec![(layout::trust_key(n).to_vec(), Some(value))]).inspect_err(|e| {
            self.shared.poisoned.store(true, Ordering::Release);
            tracing::error!(error = %e, "trust record failed to write; log poisoned until reopened");
        })
    }

    /// Sets bytes aside in quarantine with `reason` (e.g. an event whose
    /// author's key never arrived), within the quarantine's bounds.
    pub fn set_aside(&self, bytes: &[u8], author: Option<String>, code: Code, reason: String) -> Result<()> {
        let mut ops = Vec::new();
        quarantine_op(&mut ops, bytes, author, code, reason)?;
        let mut bounds = lock(&self.shared.ingest_lock);
        let mut next = bounds.clone();
        next.admit(&mut ops, &meta_key(crate::quarantine::EVICTED));
        self.shared.backend.commit(ops)?;
        *bounds = next;
        Ok(())
    }

    /// Hands this log's chain over to `next`: appends a `KeyRotated` event
    /// signed by the current key naming `certificate` (the province
    /// authority's `LocalityCertificate` for `next`, replacing the current
    /// key's serial), addressed to every locality this node has a channel
    /// to; every later event is signed by `next`. Blocks until durable.
    pub fn rotate_key(&self, next: SigningKey, certificate: Vec<u8>) -> Result<Appended> {
        let me = self.shared.locality;
        let decoded = yipan_trust::statement::decode(&certificate)?;
        let Some(yipan_proto::v1::statement::Kind::Locality(c)) = &decoded.statement.kind else {
            return Err(TrustFault::BadRotation("the certificate is not a locality certificate".into()).into());
        };
        if c.locality != me.to_string() || c.public_key != next.verifying_key().to_bytes() {
            return Err(TrustFault::BadRotation(format!(
                "the certificate is for {} key {}…, not this node ({me}) and the new key",
                c.locality,
                hex::encode(c.public_key.get(..6).unwrap_or_default())
            ))
            .into());
        }
        {
            // The certificate must verify and be this locality's certified next key.
            let mut probe = read(&self.shared.trust).clone();
            match probe.apply_statement(&certificate, chrono::Utc::now()) {
                Ok(_) => {}
                Err(f) => return Err(f.into()),
            }
            if probe.pending_key(me) != Some(next.verifying_key()) {
                return Err(TrustFault::BadRotation(format!(
                    "certificate {} does not replace {me}'s current key (replaces_serial must name it)",
                    c.serial
                ))
                .into());
            }
        }
        let recipients: Vec<String> = self.outbound_heads(u64::MAX).into_iter().map(|(l, _)| l.to_string()).collect();
        let draft = EventDraft {
            recipients,
            body: Some(yipan_proto::v1::EventBody {
                kind: Some(yipan_proto::v1::event_body::Kind::KeyRotated(yipan_proto::v1::KeyRotated { certificate })),
            }),
            ..Default::default()
        };
        let appended = self.submit_job(vec![draft], true, Some(next))?.blocking_recv().map_err(|_| Error::Closed)??;
        let a = appended.into_iter().next().ok_or(Error::Closed)?;
        let ev = self.event_at(me, a.seq)?.ok_or(Error::Closed)?;
        let at = rotation_time(&ev).unwrap_or_else(chrono::Utc::now);
        if let Err(e) = self.keep_handover(&ev.signed.encode_to_vec(), &ev, at) {
            // Durable in the chain but not in the trust state: the sequencer already
            // signs with the new key, so stop until a reopen rebuilds the state.
            self.shared.poisoned.store(true, Ordering::Release);
            return Err(e);
        }
        Ok(a)
    }

    /// Ingests one foreign signed event (see [`Log::ingest_batch`]).
    pub fn ingest(&self, bytes: &[u8]) -> Result<Ingested> {
        let mut v = self.ingest_batch(&[bytes])?;
        v.pop().ok_or(Error::Closed)
    }

    /// Ingests foreign signed events with one flush. Each is verified
    /// (decoding, author, roster signature, schema, recipient) in parallel,
    /// then placed by channel position: the next position is stored, a known
    /// one is a duplicate, a later one is a gap (not stored), and a different
    /// event at a known position is a fork. Rejects go to quarantine with
    /// their bytes and reason; nothing that failed verification is stored.
    pub fn ingest_batch(&self, items: &[&[u8]]) -> Result<Vec<Ingested>> {
        let checked = self.check_foreign_batch(items);
        let mut bounds = lock(&self.shared.ingest_lock);
        let me = self.shared.locality.as_u32();
        let mut outcomes: Vec<Option<Ingested>> = vec![None; items.len()];
        let mut ops: Vec<Op> = Vec::new();
        let quarantine = |ops: &mut Vec<Op>, bytes: &[u8], author: Option<String>, code: Code, reason: String| {
            quarantine_op(ops, bytes, author, code, reason.clone())?;
            Ok::<_, Error>(Ingested::Quarantined { code, reason })
        };
        // Order by (author, channel position) so a batch that arrives out of order still applies.
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_by_key(|&i| match &checked[i] {
            Ok((ev, ch)) => (0, ev.author().map(|a| a.as_u32()).unwrap_or(0), *ch),
            Err(_) => (1, 0, 0),
        });
        // Channel heads and highest sequences as this batch advances them.
        let mut heads: HashMap<u32, (u64, u64)> = HashMap::new();
        let mut batch_ids: HashMap<[u8; 16], [u8; 32]> = HashMap::new();
        let mut stored: Vec<(u32, usize)> = Vec::new();
        {
            let index = read(&self.shared.index);
            for i in order {
                let outcome = match &checked[i] {
                    Err(Reject::Bad(author, code, reason)) => {
                        quarantine(&mut ops, items[i], author.clone(), *code, reason.clone())?
                    }
                    // Later channel positions of its author in this batch become gaps.
                    Err(Reject::Later(author, reason)) => Ingested::Pending { author: *author, reason: reason.clone() },
                    Ok((ev, ch)) => {
                        let author = ev.author().map(|a| a.as_u32()).unwrap_or(0);
                        let id: [u8; 16] = ev.envelope.event_id.as_slice().try_into().unwrap_or_default();
                        let uuid = Uuid::from_bytes(id);
                        let (head, max_seq) = *heads
                            .entry(author)
                            .or_insert_with(|| (index.channel_head(author, me), index.max_seq(author)));
                        let known = match batch_ids.get(&id) {
                            Some(h) => Some(*h),
                            None => match id_entry(&self.shared.backend, &id)? {
                                Some((a, s, _)) => event_at(&self.shared.backend, a, s)?.map(|x| x.hash),
                                None => None,
                            },
                        };
                        let author_text = Some(ev.envelope.author.clone());
                        match known {
                            Some(h) if h == ev.hash => Ingested::Duplicate { id: uuid },
                            Some(_) => quarantine(
                                &mut ops,
                                items[i],
                                author_text,
                                Code::IdConflict,
                                format!("event id {uuid} is already held with different content"),
                            )?,
                            None if *ch <= head => quarantine(
                                &mut ops,
                                items[i],
                                author_text,
                                Code::ForkChannel,
                                format!(
                                    "fork: channel position {ch} from {} to {} already holds another event",
                                    ev.envelope.author, self.shared.locality
                                ),
                            )?,
                            None if *ch > head + 1 => Ingested::Gap {
                                author: ev.author().unwrap_or(self.shared.locality),
                                expected: head + 1,
                                got: *ch,
                            },
                            None if ev.seq() <= max_seq => quarantine(
                                &mut ops,
                                items[i],
                                author_text,
                                Code::ForkSequence,
                                format!(
                                    "fork: author sequence {} is not after {max_seq}, already held from {}",
                                    ev.seq(),
                                    ev.envelope.author
                                ),
                            )?,
                            None => {
                                heads.insert(author, (*ch, ev.seq()));
                                batch_ids.insert(id, ev.hash);
                                stored.push((author, i));
                                Ingested::Stored {
                                    id: uuid,
                                    author: ev.author().unwrap_or(self.shared.locality),
                                    seq: ev.seq(),
                                    channel_seq: *ch,
                                    recorded_at_us: ev
                                        .envelope
                                        .recorded_at
                                        // Signed by the author but unchecked: saturate, never overflow.
                                        .map(|t| {
                                            t.seconds
                                                .saturating_mul(1_000_000)
                                                .saturating_add(i64::from(t.nanos / 1_000))
                                        })
                                        .unwrap_or(0),
                                }
                            }
                        }
                    }
                };
                outcomes[i] = Some(outcome);
            }
        }
        // One run of segments per author, in sequence order (the batch order above),
        // and each stored event's id key in the same batch.
        let zero = [0u8; 32];
        for (author, i) in &stored {
            if let Ok((ev, _)) = &checked[*i] {
                if let Ok(id) = <[u8; 16]>::try_from(ev.envelope.event_id.as_slice()) {
                    ops.push((layout::id_key(&id).to_vec(), Some(layout::id_value(*author, ev.seq(), &zero).to_vec())));
                }
            }
        }
        for run in stored.chunk_by(|a, b| a.0 == b.0) {
            for chunk in run.chunks(segment::MAX_ENTRIES) {
                let entries: Vec<Entry<'_>> = chunk
                    .iter()
                    .filter_map(|(_, i)| checked[*i].as_ref().ok().map(|(ev, _)| (ev.seq(), *i)))
                    .map(|(seq, i)| Entry { seq, digest: zero, bytes: items[i] })
                    .collect();
                if let Some(last) = entries.last() {
                    ops.push((layout::segment_key(chunk[0].0, last.seq).to_vec(), Some(segment::encode(&entries))));
                }
            }
        }
        // Evictions are computed on a copy, so a failed commit changes nothing
        // (and only when this batch quarantined something: not on the hot path).
        let quarantined = ops.iter().any(|(k, v)| k.first() == Some(&layout::QUARANTINE) && v.is_some());
        let next = quarantined.then(|| {
            let mut next = bounds.clone();
            next.admit(&mut ops, &meta_key(crate::quarantine::EVICTED));
            next
        });
        if !ops.is_empty() {
            self.shared.backend.commit(ops)?;
        }
        if let Some(next) = next {
            *bounds = next;
        }
        if !stored.is_empty() {
            let mut index = write(&self.shared.index);
            for (author, i) in &stored {
                if let Ok((ev, _)) = &checked[*i] {
                    index.add(*author, ev.seq(), &ev.envelope);
                }
            }
            drop(index);
            if self.shared.events_tx.receiver_count() > 0 {
                for (_, i) in &stored {
                    if let Ok((ev, _)) = &checked[*i] {
                        let _ = self.shared.events_tx.send(Arc::new(ev.envelope.clone()));
                    }
                }
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Ingested::Quarantined { code: Code::Malformed, reason: "not processed".into() }))
            .collect())
    }

    /// Verifies foreign events: decoding, author and the author's key for
    /// that sequence, then the signatures (in batches of 64 on all cores
    /// when there are many, falling back to one by one to name the bad
    /// ones), then schema and recipient.
    fn check_foreign_batch(&self, items: &[&[u8]]) -> Vec<std::result::Result<(StoredEvent, u64), Reject>> {
        let parallel = items.len() >= PARALLEL_SIGN_FROM;
        let decode = |b: &&[u8]| {
            StoredEvent::decode(b).map_err(|p| Reject::Bad(None, Code::Malformed, format!("malformed: {p}")))
        };
        let decoded: Vec<std::result::Result<StoredEvent, Reject>> =
            if parallel { items.par_iter().map(decode).collect() } else { items.iter().map(decode).collect() };
        // Key handovers (`KeyRotated` events) first, so that later events of the same
        // author in this batch verify with the new key. A handover is authentic on its
        // own (signed by the old key, naming a certificate that verifies up to the
        // anchor), whether or not its event is then stored; if refused here, the event
        // itself is judged (and quarantined) below.
        for (bytes, ev) in items.iter().zip(&decoded) {
            let Ok(ev) = ev else { continue };
            let Some(at) = rotation_time(ev) else { continue };
            if ev.author() != Some(self.shared.locality) {
                if let Err(e) = self.keep_handover(bytes, ev, at) {
                    tracing::debug!(error = %e, "key handover in a received event not applied");
                }
            }
        }
        let trust = read(&self.shared.trust);
        let heads: Vec<std::result::Result<(StoredEvent, VerifyingKey), Reject>> = if parallel {
            decoded.into_par_iter().map(|r| r.and_then(|ev| self.foreign_head(&trust, ev))).collect()
        } else {
            decoded.into_iter().map(|r| r.and_then(|ev| self.foreign_head(&trust, ev))).collect()
        };
        let forged = |ev: &StoredEvent, _: &(), p: String| {
            // Signed by the author's certified next key before its handover reached us: wait for it.
            if let Some(a) = ev.author() {
                if trust.pending_key(a).is_some_and(|k| ev.verify_signature(&k).is_ok()) {
                    return Reject::Later(
                        a,
                        format!("signed by {a}'s certified next key; its key handover has not arrived yet"),
                    );
                }
            }
            Reject::Bad(
                Some(ev.envelope.author.clone()),
                Code::Forged,
                format!("forged or altered: {p} with the certified key of {} for #{}", ev.envelope.author, ev.seq()),
            )
        };
        let heads = heads.into_iter().map(|r| r.map(|(ev, key)| (ev, key, ()))).collect();
        let signed: Vec<std::result::Result<StoredEvent, Reject>> =
            crate::event::verify_signatures(heads, forged).into_iter().map(|r| r.map(|(ev, ())| ev)).collect();
        drop(trust);
        let finish = |r: std::result::Result<StoredEvent, Reject>| {
            let ev = r?;
            let ch = self.foreign_body(&ev).map_err(|(a, code, reason)| Reject::Bad(a, code, reason))?;
            Ok((ev, ch))
        };
        if parallel {
            signed.into_par_iter().map(finish).collect()
        } else {
            signed.into_iter().map(finish).collect()
        }
    }

    /// First checks of a foreign event: decoding, author, the key for its sequence.
    fn foreign_head(
        &self,
        trust: &TrustState,
        ev: StoredEvent,
    ) -> std::result::Result<(StoredEvent, VerifyingKey), Reject> {
        let claimed = Some(ev.envelope.author.clone());
        let fail = |code: Code, reason: String| Reject::Bad(claimed.clone(), code, reason);
        let author = Locality::parse(&ev.envelope.author).map_err(|p| fail(Code::Author, format!("author {p}")))?;
        if author == self.shared.locality {
            return Err(fail(
                Code::Author,
                "names this node as its author; a node ingests only other localities' events".into(),
            ));
        }
        let recorded = ev.envelope.recorded_at.as_ref().and_then(yipan_core::time::from_ts);
        match trust.key_for(author, ev.seq(), recorded) {
            Ok(key) => Ok((ev, key)),
            Err(e @ KeyFault::Unknown { .. }) => Err(Reject::Later(author, e.to_string())),
            Err(e) => Err(fail(Code::Trust(e.code()), format!("{}: {e}", e.code()))),
        }
    }

    /// Checks after the signature: schema, domain validation, recipient.
    /// Ok gives this node's channel position.
    fn foreign_body(&self, ev: &StoredEvent) -> std::result::Result<u64, (Option<String>, Code, String)> {
        let claimed = Some(ev.envelope.author.clone());
        let fail = |reason: String| (claimed.clone(), Code::Schema, reason);
        let author =
            Locality::parse(&ev.envelope.author).map_err(|p| (claimed.clone(), Code::Author, format!("author {p}")))?;
        if ev.envelope.schema_version == 0 || ev.envelope.schema_version > yipan_proto::SCHEMA_VERSION {
            return Err(fail(format!(
                "schema version {} is not supported (this node reads 1..={})",
                ev.envelope.schema_version,
                yipan_proto::SCHEMA_VERSION
            )));
        }
        if ev.envelope.author_seq == 0 {
            return Err(fail("author_seq is 0; sequences start at 1".into()));
        }
        if ev.envelope.prev_hash.len() != 32 {
            return Err(fail("prev_hash is not 32 bytes".into()));
        }
        ev.id().filter(|u| u.get_version_num() == 7).ok_or_else(|| fail("event id is not a UUIDv7".into()))?;
        ev.verify_tiers(false).map_err(|p| fail(format!("schema: {p}")))?;
        if !ev.signed.sealed.is_empty() {
            return Err(fail("schema: sealed tiers must be opened before the event is stored".into()));
        }
        let draft = EventDraft {
            event_id: ev.envelope.event_id.clone(),
            occurred_at: ev.envelope.occurred_at,
            person_key: ev.envelope.person_key.clone(),
            origin: ev.envelope.origin.clone(),
            residence: ev.envelope.residence.clone(),
            recipients: ev.envelope.recipients.iter().map(|r| r.locality.clone()).collect(),
            causation_id: ev.envelope.causation_id.clone(),
            body: ev.envelope.body.clone(),
            ..Default::default()
        };
        let checked = validate_draft(author, &draft).map_err(|e| fail(format!("schema: {e}")))?;
        let recorded = ev.envelope.recorded_at.as_ref().and_then(yipan_core::time::from_ts);
        let recorded = recorded.ok_or_else(|| fail("schema: recorded_at is missing or not a valid instant".into()))?;
        let bounds = yipan_core::validate::OccurredBounds::RECEIVED;
        yipan_core::validate::check_occurred_within(ev.envelope.occurred_at.as_ref(), recorded, &bounds)
            .map_err(|e| fail(format!("schema: {e}")))?;
        for d in &ev.envelope.tier_digests {
            if !checked.kind.tiers().iter().any(|t| *t as i32 == d.tier) {
                return Err(fail(format!("schema: a {} event may not carry tier {}", checked.kind, d.tier)));
            }
        }
        let me = self.shared.locality.to_string();
        let ch = ev.envelope.recipients.iter().find(|r| r.locality == me).map(|r| r.channel_seq).ok_or_else(|| {
            (claimed.clone(), Code::WrongRecipient, format!("wrong recipient: not addressed to {me}"))
        })?;
        if ch == 0 {
            return Err((claimed.clone(), Code::WrongRecipient, "channel position 0; positions start at 1".into()));
        }
        Ok(ch)
    }

    /// Every quarantined event held, oldest first.
    pub fn quarantine(&self) -> Result<Vec<QuarantineEntry>> {
        self.quarantine_page(None, usize::MAX)
    }

    /// Up to `limit` quarantined events after the entry `after`, oldest first.
    pub fn quarantine_page(&self, after: Option<Uuid>, limit: usize) -> Result<Vec<QuarantineEntry>> {
        let start = match after {
            Some(id) => {
                let mut k = layout::quarantine_key(id.as_bytes()).to_vec();
                k.push(0);
                k
            }
            None => vec![layout::QUARANTINE],
        };
        self.shared
            .backend
            .range(&start, &[layout::QUARANTINE + 1], limit)?
            .into_iter()
            .map(|(_, v)| {
                serde_json::from_slice(&v).map_err(|e| Error::Storage(format!("quarantine record unreadable: {e}")))
            })
            .collect()
    }

    /// Records held in quarantine, and what its bounds have evicted.
    pub fn quarantine_summary(&self) -> (usize, crate::quarantine::Evicted) {
        let b = lock(&self.shared.ingest_lock);
        (b.len(), b.evicted().clone())
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

    /// Test hook: writes raw bytes under a raw key, bypassing every check.
    #[cfg(feature = "testing")]
    pub fn raw_put(&self, key: &[u8], value: Option<Vec<u8>>) -> Result<()> {
        self.shared.backend.commit(vec![(key.to_vec(), value)])
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
        self.shared.backend.commit(vec![(key, Some(segment::encode(&kept)))])
    }
}

impl<B: Backend> Drop for Log<B> {
    fn drop(&mut self) {
        // Closing the job channel lets the sequencer finish queued jobs and
        // exit, which closes the writer's channel; joining waits for the last flush.
        self.tx.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
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

fn decode_at(author: u32, seq: u64, bytes: &[u8]) -> Result<StoredEvent> {
    StoredEvent::decode(bytes).map_err(|problem| Error::Corrupt { author: author.to_string(), seq, problem })
}

/// Reads one event out of the segment that holds it.
fn event_at<B: Backend>(backend: &B, author: u32, seq: u64) -> Result<Option<StoredEvent>> {
    let Some((key, value)) =
        backend.range(&layout::segment_key(author, seq), &layout::prefix_end(&layout::author_prefix(author)), 1)?.pop()
    else {
        return Ok(None);
    };
    let last = layout::parse_segment_key(&key).map(|(_, l)| l).unwrap_or(seq);
    let entries =
        segment::decode(&value).map_err(|problem| Error::Corrupt { author: author.to_string(), seq: last, problem })?;
    match entries.iter().find(|e| e.seq == seq) {
        Some(e) => decode_at(author, seq, e.bytes).map(Some),
        None => Ok(None),
    }
}

/// Looks up an id among durable and in-flight events.
enum Existing {
    None,
    Same(Appended),
    Different,
}

/// Where the event with this id is (author, seq, short draft digest), from the on-disk id index.
fn id_entry<B: Backend>(backend: &B, id: &[u8; 16]) -> Result<Option<(u32, u64, [u8; 16])>> {
    Ok(backend.get(&layout::id_key(id))?.and_then(|v| layout::parse_id_value(&v)))
}

fn existing<B: Backend>(shared: &Shared<B>, id: &Uuid, digest: &[u8; 32]) -> Result<Existing> {
    if let Some((d, a)) = lock(&shared.in_flight).get(id.as_bytes()) {
        return Ok(if d == digest {
            Existing::Same(Appended { duplicate: true, warnings: Vec::new(), ..a.clone() })
        } else {
            Existing::Different
        });
    }
    let Some((author, seq, short)) = id_entry(&shared.backend, id.as_bytes())? else {
        return Ok(Existing::None);
    };
    if author != shared.locality.as_u32() || short != digest[..16] {
        return Ok(Existing::Different);
    }
    let ev = event_at(&shared.backend, author, seq)?.ok_or_else(|| Error::Corrupt {
        author: shared.locality.to_string(),
        seq,
        problem: "indexed by id but missing".into(),
    })?;
    Ok(Existing::Same(Appended {
        id: *id,
        seq,
        hash: ev.hash,
        recipients: ev
            .envelope
            .recipients
            .iter()
            .filter_map(|r| Locality::parse(&r.locality).ok().map(|l| (l, r.channel_seq)))
            .collect(),
        duplicate: true,
        warnings: Vec::new(),
    }))
}

/// An event sequenced and encoded, waiting for its signature.
struct Unsigned {
    envelope: Envelope,
    envelope_bytes: Vec<u8>,
    tiers: Vec<yipan_proto::v1::TierPayload>,
    digest: [u8; 32],
    seq: u64,
    key: Arc<SigningKey>,
}

fn sequencer<B: Backend>(
    shared: Arc<Shared<B>>,
    rx: mpsc::Receiver<Job>,
    wtx: mpsc::SyncSender<WriteGroup>,
    mut state: SeqState,
) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        let mut count = jobs[0].drafts.len();
        while count < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => {
                    count += j.drafts.len();
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
        shared.queued.fetch_sub(jobs.len(), Ordering::Relaxed);
        if shared.poisoned.load(Ordering::Acquire) {
            for j in jobs {
                let _ = j.reply.send(Err(Error::Poisoned));
            }
            continue;
        }
        let now = yipan_core::time::to_ts(chrono::Utc::now());
        let mut unsigned: Vec<Unsigned> = Vec::with_capacity(count);
        let mut replies = Vec::with_capacity(jobs.len());
        for job in jobs {
            let result = sequence_job(&shared, &mut state, job.drafts, &now, &mut unsigned);
            if let (Ok(_), Some(next)) = (&result, job.rotate) {
                // Everything sequenced after the handover event is signed with the new key.
                *write(&shared.public) = next.verifying_key();
                state.signing = Arc::new(next);
            }
            replies.push((job.reply, result));
        }
        let events = sign_batches(&shared.locality.to_string(), unsigned);
        if wtx.send(WriteGroup { events, head: (state.seq, state.hash), replies }).is_err() {
            return;
        }
    }
}

/// Signs sequenced events: each run of consecutive events under one key, in
/// trees of at most [`yipan_trust::batch::MAX_LEAVES`], gets one signed
/// batch head; every event carries the head and its inclusion proof.
fn sign_batches(author: &str, unsigned: Vec<Unsigned>) -> Vec<Signed> {
    let mut batches: Vec<Vec<Unsigned>> = Vec::new();
    for u in unsigned {
        match batches.last_mut() {
            Some(b)
                if b.len() < yipan_trust::batch::MAX_LEAVES
                    && Arc::ptr_eq(&b[0].key, &u.key)
                    && b[b.len() - 1].seq + 1 == u.seq =>
            {
                b.push(u)
            }
            _ => batches.push(vec![u]),
        }
    }
    let sign = |batch: Vec<Unsigned>| -> Vec<Signed> {
        let envelopes: Vec<&[u8]> = batch.iter().map(|u| u.envelope_bytes.as_slice()).collect();
        let proofs = yipan_trust::batch::sign(&batch[0].key, author, batch[0].seq, &envelopes);
        batch
            .into_iter()
            .zip(proofs)
            .map(|(u, proof)| {
                let bytes = SignedEvent {
                    envelope: u.envelope_bytes,
                    signature: Vec::new(),
                    tiers: u.tiers,
                    sealed: vec![],
                    batch: Some(proof),
                }
                .encode_to_vec();
                Signed { seq: u.seq, digest: u.digest, bytes, envelope: u.envelope }
            })
            .collect()
    };
    if batches.len() > 1 {
        batches.into_par_iter().flat_map_iter(sign).collect()
    } else {
        batches.into_iter().flat_map(sign).collect()
    }
}

/// Sequences one job's drafts onto the chain, or none of them.
fn sequence_job<B: Backend>(
    shared: &Shared<B>,
    state: &mut SeqState,
    drafts: Vec<Prepared>,
    now: &yipan_proto::Timestamp,
    out: &mut Vec<Unsigned>,
) -> Result<Vec<Appended>> {
    // Phase 1: everything that can fail, before any state changes.
    let mut seen: HashMap<Uuid, [u8; 32]> = HashMap::new();
    let mut plan: Vec<(Prepared, Option<Appended>)> = Vec::with_capacity(drafts.len());
    for p in drafts {
        if let Some(d) = seen.get(&p.id) {
            if *d != p.digest {
                return Err(Error::IdConflict { id: p.id });
            }
        }
        let dup = match existing(shared, &p.id, &p.digest)? {
            Existing::None => None,
            Existing::Same(a) => Some(a),
            Existing::Different => return Err(Error::IdConflict { id: p.id }),
        };
        seen.insert(p.id, p.digest);
        plan.push((p, dup));
    }
    // Phase 2: sequence; cannot fail.
    let me = shared.locality.as_u32();
    let mut appended = Vec::with_capacity(plan.len());
    let mut job_ids: HashMap<Uuid, Appended> = HashMap::new();
    for (p, dup) in plan {
        if let Some(a) =
            dup.or_else(|| job_ids.get(&p.id).map(|a| Appended { duplicate: true, warnings: Vec::new(), ..a.clone() }))
        {
            appended.push(a);
            continue;
        }
        let Prepared { draft, checked, id, digest } = p;
        let tiers = yipan_core::json::draft_tiers(&draft);
        let recipients: Vec<(Locality, u64)> = checked
            .recipients
            .iter()
            .map(|r| {
                let ch = state
                    .channels
                    .entry(r.as_u32())
                    .or_insert_with(|| read(&shared.index).channel_head(me, r.as_u32()));
                *ch += 1;
                (*r, *ch)
            })
            .collect();
        let seq = state.seq + 1;
        let envelope = Envelope {
            schema_version: yipan_proto::SCHEMA_VERSION,
            event_id: id.as_bytes().to_vec(),
            author: shared.locality.to_string(),
            author_seq: seq,
            prev_hash: state.hash.to_vec(),
            recorded_at: Some(*now),
            occurred_at: Some(draft.occurred_at.unwrap_or(*now)),
            person_key: draft.person_key,
            origin: draft.origin,
            residence: draft.residence,
            recipients: recipients
                .iter()
                .map(|(l, ch)| Recipient { locality: l.to_string(), channel_seq: *ch })
                .collect(),
            causation_id: draft.causation_id,
            tier_digests: tiers
                .iter()
                .map(|t| TierDigest { tier: t.tier, sha256: Sha256::digest(&t.content).to_vec() })
                .collect(),
            body: draft.body,
        };
        let envelope_bytes = envelope.encode_to_vec();
        let hash = hash_envelope(&envelope_bytes);
        state.seq = seq;
        state.hash = hash;
        let a = Appended { id, seq, hash, recipients, duplicate: false, warnings: checked.warnings };
        lock(&shared.in_flight).insert(*id.as_bytes(), (digest, a.clone()));
        job_ids.insert(id, a.clone());
        out.push(Unsigned { envelope, envelope_bytes, tiers, digest, seq, key: state.signing.clone() });
        appended.push(a);
    }
    Ok(appended)
}

fn writer<B: Backend>(shared: Arc<Shared<B>>, rx: mpsc::Receiver<WriteGroup>) {
    let me = shared.locality.as_u32();
    while let Ok(first) = rx.recv() {
        let mut groups = vec![first];
        while let Ok(g) = rx.try_recv() {
            groups.push(g);
        }
        let head = groups.last().map(|g| g.head).unwrap_or((0, [0u8; 32]));
        let mut events: Vec<Signed> = Vec::new();
        let mut replies = Vec::new();
        for g in groups {
            events.extend(g.events);
            replies.extend(g.replies);
        }
        let result = if shared.poisoned.load(Ordering::Acquire) {
            Err(Error::Poisoned)
        } else if events.is_empty() {
            Ok(())
        } else {
            let mut ops: Vec<Op> = Vec::with_capacity(events.len() / segment::MAX_ENTRIES + 2);
            for chunk in events.chunks(segment::MAX_ENTRIES) {
                let entries: Vec<Entry<'_>> =
                    chunk.iter().map(|e| Entry { seq: e.seq, digest: e.digest, bytes: &e.bytes }).collect();
                let last = chunk[chunk.len() - 1].seq;
                ops.push((layout::segment_key(me, last).to_vec(), Some(segment::encode(&entries))));
            }
            for e in &events {
                if let Ok(id) = <[u8; 16]>::try_from(e.envelope.event_id.as_slice()) {
                    ops.push((layout::id_key(&id).to_vec(), Some(layout::id_value(me, e.seq, &e.digest).to_vec())));
                }
            }
            let mut h = head.0.to_be_bytes().to_vec();
            h.extend_from_slice(&head.1);
            ops.push((layout::META_HEAD.to_vec(), Some(h)));
            shared.backend.commit(ops)
        };
        match result {
            Ok(()) => {
                if !events.is_empty() {
                    let mut index = write(&shared.index);
                    for e in &events {
                        index.add(me, e.seq, &e.envelope);
                    }
                    drop(index);
                    *lock(&shared.head) = head;
                    shared.head_tx.send_replace(head.0);
                }
                shared.commits.fetch_add(1, Ordering::Relaxed);
                shared.committed_events.fetch_add(events.len() as u64, Ordering::Relaxed);
                for (reply, r) in replies {
                    let _ = reply.send(r);
                }
            }
            Err(e) => {
                shared.poisoned.store(true, Ordering::Release);
                tracing::error!(error = %e, "append batch failed to write; log poisoned until reopened");
                let msg = e.to_string();
                for (reply, r) in replies {
                    let _ = reply.send(r.and(Err(Error::Storage(msg.clone()))));
                }
            }
        }
        let mut in_flight = lock(&shared.in_flight);
        for e in &events {
            if let Ok(id) = <[u8; 16]>::try_from(e.envelope.event_id.as_slice()) {
                in_flight.remove(&id);
            }
        }
        drop(in_flight);
        if !shared.poisoned.load(Ordering::Acquire) && shared.events_tx.receiver_count() > 0 {
            for e in events {
                let _ = shared.events_tx.send(Arc::new(e.envelope));
            }
        }
    }
}

/// A rejected foreign event or trust record as a quarantine write.
fn quarantine_op(ops: &mut Vec<Op>, bytes: &[u8], author: Option<String>, code: Code, reason: String) -> Result<()> {
    let id = Uuid::now_v7();
    // The bytes kept for inspection (and fork proofs) without personal tier
    // payloads: the envelope and signature prove what was sent, and staff who
    // read the quarantine (monitors too) must not see a name in hex. The
    // SHA-256 is of what was received.
    let kept = yipan_proto::v1::SignedEvent::decode(bytes)
        .ok()
        .filter(|s| !s.tiers.is_empty() || !s.sealed.is_empty())
        .map(|mut s| {
            s.tiers.clear();
            s.sealed.clear();
            s.encode_to_vec()
        });
    let shown = kept.as_deref().unwrap_or(bytes);
    let entry = QuarantineEntry {
        id,
        received_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        author,
        code: code.as_str().into(),
        reason,
        bytes_hex: hex::encode(&shown[..shown.len().min(crate::quarantine::KEEP_BYTES)]),
        size: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(bytes)),
    };
    let value = serde_json::to_vec(&entry).map_err(|e| Error::Storage(e.to_string()))?;
    ops.push((layout::quarantine_key(id.as_bytes()).to_vec(), Some(value)));
    tracing::warn!(author = entry.author.as_deref().unwrap_or("?"), code = %entry.code, reason = %entry.reason, "quarantined");
    Ok(())
}

/// The recorded-at of a `KeyRotated` event (`None` for any other event).
fn rotation_time(ev: &StoredEvent) -> Option<chrono::DateTime<chrono::Utc>> {
    match ev.envelope.body.as_ref().and_then(|b| b.kind.as_ref()) {
        Some(yipan_proto::v1::event_body::Kind::KeyRotated(_)) => {
            Some(ev.envelope.recorded_at.as_ref().and_then(yipan_core::time::from_ts).unwrap_or_default())
        }
        _ => None,
    }
}

/// Rebuilds the trust state: the anchor (given, or as recorded), hand-added
/// keys, stored trust records in arrival order, then the key handovers found
/// among stored events. Returns it with the next trust record number.
fn load_trust<B: Backend>(
    backend: &B,
    anchor: Option<VerifyingKey>,
    rotations: Vec<(Vec<u8>, chrono::DateTime<chrono::Utc>)>,
) -> Result<(TrustState, u64)> {
    let stored = match backend.get(layout::META_ANCHOR)? {
        Some(v) => Some(
            <[u8; 32]>::try_from(v.as_slice())
                .ok()
                .and_then(|b| VerifyingKey::from_bytes(&b).ok())
                .ok_or_else(|| Error::Storage("stored trust anchor is not a 32-byte ed25519 key".into()))?,
        ),
        None => None,
    };
    let anchor = match (anchor, stored) {
        (Some(a), Some(s)) if a == s => Some(a),
        (Some(a), s) => {
            let mut ops = vec![(layout::META_ANCHOR.to_vec(), Some(a.to_bytes().to_vec()))];
            if s.is_some() {
                // Records refused under the old anchor may verify now: read the stream again.
                tracing::warn!(
                    "trust anchor changed: stored trust records are verified again, the trust stream re-read"
                );
                ops.push((meta_key(TRUST_CURSOR), None));
            }
            backend.commit(ops)?;
            Some(a)
        }
        (None, s) => s,
    };
    let mut trust = TrustState::new(anchor);
    for (k, v) in backend.range(&[layout::ROSTER], &[layout::ROSTER + 1], usize::MAX)? {
        let code = u32::from_be_bytes(k[1..5].try_into().map_err(|_| Error::Storage("bad roster key".into()))?);
        let key: [u8; 32] =
            v.as_slice().try_into().map_err(|_| Error::Storage(format!("roster key of {code} is not 32 bytes")))?;
        let key =
            VerifyingKey::from_bytes(&key).map_err(|_| Error::Storage(format!("roster key of {code} is invalid")))?;
        let l = Locality::from_u32(code).map_err(|_| Error::Storage(format!("roster entry {code} is not a code")))?;
        if let Err(f) = trust.add_bootstrap(l, key) {
            tracing::warn!(%f, "hand-added key not loaded");
        }
    }
    let mut next = 0u64;
    for (k, v) in backend.range(&[layout::TRUST], &[layout::TRUST + 1], usize::MAX)? {
        let n = k.get(1..9).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).unwrap_or(0);
        next = next.max(n + 1);
        if v.len() < 8 {
            tracing::warn!(record = n, "stored trust record is truncated; skipped");
            continue;
        }
        let micros = i64::from_be_bytes(v[..8].try_into().unwrap_or_default());
        let at = chrono::DateTime::from_timestamp_micros(micros).unwrap_or_default();
        if let Err(f) = trust.apply_record(&v[8..], at) {
            tracing::warn!(record = n, code = f.code(), %f, "stored trust record no longer verifies; not applied");
        }
    }
    for (bytes, at) in rotations {
        if let Err(f) = trust.apply_rotation(&bytes, at) {
            tracing::warn!(code = f.code(), %f, "stored key handover not applied");
        }
    }
    Ok((trust, next))
}

/// Refuses to open with a key other than the one certified for the next own event.
fn check_own_key(trust: &TrustState, me: Locality, next: u64, own: &VerifyingKey) -> Result<()> {
    let short = |k: &VerifyingKey| hex::encode(&k.to_bytes()[..6]);
    // A later key certified from beyond this node's next sequence (a recovery after a
    // revocation whose bound lies past this chain's end): the sequences between were
    // signed by someone else with the old key. Writing there would fork the chain.
    if let Some(later) = trust.span_starts(me).into_iter().find(|f| *f > next) {
        return Err(Error::OwnKey {
            seq: next,
            problem: format!(
                "this chain ends at #{} but the certified schedule continues from #{later} with another key: \
                 events #{next}..#{} are not this node's (written with a stolen key?); see docs/trust.md, recovery",
                next - 1,
                later - 1
            ),
        });
    }
    match trust.key_for(me, next, None) {
        Ok(k) if k == *own => Ok(()),
        Ok(k) => Err(Error::KeyMismatch {
            seq: next,
            expected: short(&k),
            given: short(own),
            hint: if trust.pending_key(me) == Some(*own) {
                "; it is the certified next key: hand over with `yipan key rotate` first".into()
            } else {
                "; restore the key file of this data directory (docs/trust.md)".into()
            },
        }),
        Err(e) => {
            tracing::warn!(%e, "this node's key cannot sign its next event; appends are refused");
            Ok(())
        }
    }
}
