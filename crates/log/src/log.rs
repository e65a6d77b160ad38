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
//!                       sign (rayon, both cores)          reply to callers
//! ```
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

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use prost::Message;
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use uuid::Uuid;
use yipan_core::validate::{validate_draft, Checked, Warning};
use yipan_core::{Locality, PersonKey};
use yipan_proto::v1::{Envelope, EventDraft, Recipient, SignedEvent, TierDigest};

use crate::backend::{Backend, Op};
use crate::error::{Error, Result};
use crate::event::{hash_envelope, StoredEvent};
use crate::layout;

/// Most events one sequencing group takes (bounds latency and batch size).
const MAX_GROUP: usize = 4096;
/// Groups signed in parallel from this size on; smaller ones are signed inline.
const PARALLEL_SIGN_FROM: usize = 8;

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
        /// Why.
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
    /// Why it was rejected.
    pub reason: String,
    /// The bytes as received, hex.
    pub bytes_hex: String,
}

/// A draft validated in the caller's thread, ready for sequencing.
struct Prepared {
    draft: EventDraft,
    checked: Checked,
    id: Uuid,
    digest: [u8; 32],
}

struct Job {
    drafts: Vec<Prepared>,
    reply: oneshot::Sender<Result<Vec<Appended>>>,
}

struct WriteGroup {
    ops: Vec<Op>,
    head: (u64, [u8; 32]),
    replies: Vec<(oneshot::Sender<Result<Vec<Appended>>>, Result<Vec<Appended>>)>,
    ids: Vec<[u8; 16]>,
    events: u64,
}

struct Shared<B> {
    backend: B,
    locality: Locality,
    signing: SigningKey,
    roster: RwLock<HashMap<u32, VerifyingKey>>,
    /// Sequenced but not yet durable: id → (draft digest, outcome), for idempotency.
    in_flight: Mutex<HashMap<[u8; 16], ([u8; 32], Appended)>>,
    poisoned: AtomicBool,
    /// Serialises ingest (channel positions are checked then written).
    ingest_lock: Mutex<()>,
    commits: AtomicU64,
    committed_events: AtomicU64,
}

/// The append-only log of one locality.
pub struct Log<B: Backend> {
    shared: Arc<Shared<B>>,
    tx: Option<mpsc::Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

/// Own-chain state kept by the sequencer thread.
struct SeqState {
    seq: u64,
    hash: [u8; 32],
    /// Last channel position per recipient, loaded lazily.
    channels: HashMap<u32, u64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded maps stay consistent across a panic (single inserts/removes).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<B: Backend> Log<B> {
    /// Opens the log of `locality` over `backend`, signing with `signing`.
    /// A new store records its locality and puts its own key in the roster.
    pub fn open(backend: B, locality: Locality, signing: SigningKey) -> Result<Self> {
        match backend.get(layout::META_LOCALITY)? {
            Some(stored) => {
                let stored = String::from_utf8_lossy(&stored).to_string();
                if stored != locality.to_string() {
                    return Err(Error::LocalityMismatch { stored, given: locality.to_string() });
                }
            }
            None => backend.commit(vec![(layout::META_LOCALITY.to_vec(), Some(locality.to_string().into_bytes()))])?,
        }
        let mut roster = HashMap::new();
        for (k, v) in backend.range(&[layout::ROSTER], &[layout::ROSTER + 1], usize::MAX)? {
            let code = u32::from_be_bytes(k[1..5].try_into().map_err(|_| Error::Storage("bad roster key".into()))?);
            let key: [u8; 32] =
                v.as_slice().try_into().map_err(|_| Error::Storage(format!("roster key of {code} is not 32 bytes")))?;
            let key = VerifyingKey::from_bytes(&key)
                .map_err(|_| Error::Storage(format!("roster key of {code} is invalid")))?;
            roster.insert(code, key);
        }
        let own = signing.verifying_key();
        match roster.get(&locality.as_u32()) {
            Some(k) if *k != own => return Err(Error::RosterConflict { locality: locality.to_string() }),
            Some(_) => {}
            None => {
                backend
                    .commit(vec![(layout::roster_key(locality.as_u32()).to_vec(), Some(own.to_bytes().to_vec()))])?;
                roster.insert(locality.as_u32(), own);
            }
        }

        let (seq, hash) = match backend.last_in(
            &layout::author_prefix(locality.as_u32()),
            &layout::prefix_end(&layout::author_prefix(locality.as_u32())),
        )? {
            Some((k, v)) => {
                let (_, seq) = layout::parse_event_key(&k).ok_or_else(|| Error::Storage("bad event key".into()))?;
                let ev = StoredEvent::decode(&v).map_err(|problem| Error::Corrupt {
                    author: locality.to_string(),
                    seq,
                    problem,
                })?;
                (seq, ev.hash)
            }
            None => (0, [0u8; 32]),
        };

        let shared = Arc::new(Shared {
            backend,
            locality,
            signing,
            roster: RwLock::new(roster),
            in_flight: Mutex::new(HashMap::new()),
            poisoned: AtomicBool::new(false),
            ingest_lock: Mutex::new(()),
            commits: AtomicU64::new(0),
            committed_events: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::channel::<Job>();
        let (wtx, wrx) = mpsc::sync_channel::<WriteGroup>(4);
        let state = SeqState { seq, hash, channels: HashMap::new() };
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

    /// This locality's public key.
    pub fn public_key(&self) -> VerifyingKey {
        self.shared.signing.verifying_key()
    }

    /// The backend (reads for tools and tests).
    pub fn backend(&self) -> &B {
        &self.shared.backend
    }

    /// Number of group commits and of events they wrote since open.
    pub fn commit_stats(&self) -> (u64, u64) {
        (self.shared.commits.load(Ordering::Relaxed), self.shared.committed_events.load(Ordering::Relaxed))
    }

    fn prepare(&self, drafts: Vec<EventDraft>) -> Result<Vec<Prepared>> {
        let single = drafts.len() == 1;
        drafts
            .into_iter()
            .enumerate()
            .map(|(index, draft)| {
                let checked = validate_draft(self.shared.locality, &draft).map_err(|source| {
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
                Ok(Prepared { draft, checked, id, digest })
            })
            .collect()
    }

    fn submit(&self, drafts: Vec<EventDraft>) -> Result<oneshot::Receiver<Result<Vec<Appended>>>> {
        if self.shared.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned);
        }
        let drafts = self.prepare(drafts)?;
        let (reply, rx) = oneshot::channel();
        self.tx.as_ref().ok_or(Error::Closed)?.send(Job { drafts, reply }).map_err(|_| Error::Closed)?;
        Ok(rx)
    }

    /// Submits without waiting (the benchmark's open-loop load generator).
    #[doc(hidden)]
    pub fn submit_for_bench(&self, draft: EventDraft) -> Result<oneshot::Receiver<Result<Vec<Appended>>>> {
        self.submit(vec![draft])
    }

    /// Appends drafts atomically (all or none), blocking until durable.
    /// Must not be called from inside an async runtime; use
    /// [`Log::append_batch_async`] there.
    pub fn append_batch(&self, drafts: Vec<EventDraft>) -> Result<Vec<Appended>> {
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        self.submit(drafts)?.blocking_recv().map_err(|_| Error::Closed)?
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
        self.submit(drafts)?.await.map_err(|_| Error::Closed)?
    }

    /// Appends one draft, resolving once durable.
    pub async fn append_async(&self, draft: EventDraft) -> Result<Appended> {
        let mut v = self.append_batch_async(vec![draft]).await?;
        v.pop().ok_or(Error::Closed)
    }

    fn decode_at(&self, author: u32, seq: u64, bytes: &[u8]) -> Result<StoredEvent> {
        StoredEvent::decode(bytes).map_err(|problem| Error::Corrupt { author: author.to_string(), seq, problem })
    }

    fn event_at(&self, author: u32, seq: u64) -> Result<Option<StoredEvent>> {
        match self.shared.backend.get(&layout::event_key(author, seq))? {
            Some(v) => self.decode_at(author, seq, &v).map(Some),
            None => Ok(None),
        }
    }

    /// The event with this id.
    pub fn get(&self, id: Uuid) -> Result<Option<StoredEvent>> {
        match self.shared.backend.get(&layout::id_key(id.as_bytes()))? {
            Some(v) => {
                let (author, seq, _) = layout::parse_id_value(&v)
                    .ok_or_else(|| Error::Storage(format!("id index entry of {id} is malformed")))?;
                self.event_at(author, seq)
            }
            None => Ok(None),
        }
    }

    /// Up to `limit` events of `author` from sequence `from_seq` on.
    pub fn read_author(&self, author: Locality, from_seq: u64, limit: usize) -> Result<Vec<StoredEvent>> {
        let a = author.as_u32();
        let end = layout::prefix_end(&layout::author_prefix(a));
        self.decode_all(self.shared.backend.range(&layout::event_key(a, from_seq), &end, limit)?)
    }

    /// Up to `limit` events of any author, in (author, seq) order, after `after`.
    pub fn read_all(&self, after: Option<(Locality, u64)>, limit: usize) -> Result<Vec<StoredEvent>> {
        let start = match after {
            Some((a, s)) => layout::event_key(a.as_u32(), s.saturating_add(1)).to_vec(),
            None => vec![layout::EVENT],
        };
        self.decode_all(self.shared.backend.range(&start, &[layout::EVENT + 1], limit)?)
    }

    fn decode_all(&self, entries: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Vec<StoredEvent>> {
        entries
            .into_iter()
            .map(|(k, v)| {
                let (a, s) = layout::parse_event_key(&k).unwrap_or((0, 0));
                self.decode_at(a, s, &v)
            })
            .collect()
    }

    /// Every event about `person`, by author then sequence.
    pub fn read_person(&self, person: PersonKey) -> Result<Vec<StoredEvent>> {
        let mut prefix = vec![layout::PERSON];
        prefix.extend_from_slice(person.as_bytes());
        let mut out = Vec::new();
        for (k, _) in self.shared.backend.range(&prefix, &layout::prefix_end(&prefix), usize::MAX)? {
            let author = u32::from_be_bytes(k[17..21].try_into().map_err(|_| Error::Storage("bad person key".into()))?);
            let seq = u64::from_be_bytes(k[21..29].try_into().map_err(|_| Error::Storage("bad person key".into()))?);
            if let Some(ev) = self.event_at(author, seq)? {
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
        let prefix = layout::channel_prefix(author.as_u32(), recipient.as_u32());
        let start = layout::channel_key(author.as_u32(), recipient.as_u32(), from);
        let mut out = Vec::new();
        for (_, v) in self.shared.backend.range(&start, &layout::prefix_end(&prefix), limit)? {
            let (a, s, _) =
                layout::parse_id_value(&v).ok_or_else(|| Error::Storage("bad channel index value".into()))?;
            if let Some(ev) = self.event_at(a, s)? {
                out.push(ev);
            }
        }
        Ok(out)
    }

    /// The last stored position of the author→recipient channel (0 if none).
    pub fn channel_head(&self, author: Locality, recipient: Locality) -> Result<u64> {
        channel_head(&self.shared.backend, author.as_u32(), recipient.as_u32())
    }

    /// The own chain's durable head: (seq, hash); (0, zeros) when empty.
    pub fn head(&self) -> Result<(u64, [u8; 32])> {
        let a = self.shared.locality.as_u32();
        match self.shared.backend.last_in(&layout::author_prefix(a), &layout::prefix_end(&layout::author_prefix(a)))? {
            Some((k, v)) => {
                let (_, seq) = layout::parse_event_key(&k).unwrap_or((a, 0));
                Ok((seq, self.decode_at(a, seq, &v)?.hash))
            }
            None => Ok((0, [0u8; 32])),
        }
    }

    /// The roster: every known locality key.
    pub fn roster(&self) -> Vec<(Locality, VerifyingKey)> {
        let r = self.shared.roster.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<_> = r.iter().filter_map(|(c, k)| Locality::from_u32(*c).ok().map(|l| (l, *k))).collect();
        out.sort_by_key(|(l, _)| *l);
        out
    }

    /// Adds a locality's public key; returns false if it was already there.
    /// A different key for a known locality is refused.
    pub fn roster_add(&self, locality: Locality, key: VerifyingKey) -> Result<bool> {
        let mut r = self.shared.roster.write().unwrap_or_else(|p| p.into_inner());
        match r.get(&locality.as_u32()) {
            Some(k) if *k == key => Ok(false),
            Some(_) => Err(Error::RosterConflict { locality: locality.to_string() }),
            None => {
                self.shared
                    .backend
                    .commit(vec![(layout::roster_key(locality.as_u32()).to_vec(), Some(key.to_bytes().to_vec()))])?;
                r.insert(locality.as_u32(), key);
                Ok(true)
            }
        }
    }

    fn roster_key(&self, locality: u32) -> Option<VerifyingKey> {
        self.shared.roster.read().unwrap_or_else(|p| p.into_inner()).get(&locality).copied()
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
        let checked: Vec<std::result::Result<(StoredEvent, u64), (Option<String>, String)>> =
            items.par_iter().map(|b| self.check_foreign(b)).collect();
        let _guard = lock(&self.shared.ingest_lock);
        let me = self.shared.locality.as_u32();
        let mut outcomes: Vec<Option<Ingested>> = vec![None; items.len()];
        let mut ops: Vec<Op> = Vec::new();
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let quarantine =
            |ops: &mut Vec<Op>, bytes: &[u8], author: Option<String>, reason: String| -> Result<Ingested> {
                let id = Uuid::now_v7();
                let entry = QuarantineEntry {
                    id,
                    received_at: now.clone(),
                    author,
                    reason: reason.clone(),
                    bytes_hex: hex::encode(bytes),
                };
                let value = serde_json::to_vec(&entry).map_err(|e| Error::Storage(e.to_string()))?;
                ops.push((layout::quarantine_key(id.as_bytes()).to_vec(), Some(value)));
                tracing::warn!(author = entry.author.as_deref().unwrap_or("?"), %reason, "foreign event quarantined");
                Ok(Ingested::Quarantined { reason })
            };
        // Order by (author, channel position) so a batch that arrives out of order still applies.
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_by_key(|&i| match &checked[i] {
            Ok((ev, ch)) => (0, ev.author().map(|a| a.as_u32()).unwrap_or(0), *ch),
            Err(_) => (1, 0, 0),
        });
        let mut heads: HashMap<u32, u64> = HashMap::new();
        let mut batch_ids: HashMap<[u8; 16], [u8; 32]> = HashMap::new();
        for i in order {
            let outcome = match &checked[i] {
                Err((author, reason)) => quarantine(&mut ops, items[i], author.clone(), reason.clone())?,
                Ok((ev, ch)) => {
                    let author = ev.author().map(|a| a.as_u32()).unwrap_or(0);
                    let id: [u8; 16] = ev.envelope.event_id.as_slice().try_into().unwrap_or_default();
                    let uuid = Uuid::from_bytes(id);
                    let head = match heads.get(&author) {
                        Some(h) => *h,
                        None => channel_head(&self.shared.backend, author, me)?,
                    };
                    let known = match batch_ids.get(&id) {
                        Some(h) => Some(*h),
                        None => match self.get(uuid)? {
                            Some(existing) => Some(existing.hash),
                            None => None,
                        },
                    };
                    match known {
                        Some(h) if h == ev.hash => Ingested::Duplicate { id: uuid },
                        Some(_) => quarantine(
                            &mut ops,
                            items[i],
                            Some(ev.envelope.author.clone()),
                            format!("event id {uuid} is already held with different content"),
                        )?,
                        None if *ch <= head => quarantine(
                            &mut ops,
                            items[i],
                            Some(ev.envelope.author.clone()),
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
                        None => {
                            heads.insert(author, *ch);
                            batch_ids.insert(id, ev.hash);
                            push_index_ops(&mut ops, ev, author, &id, None, items[i]);
                            Ingested::Stored {
                                id: uuid,
                                author: ev.author().unwrap_or(self.shared.locality),
                                seq: ev.seq(),
                                channel_seq: *ch,
                            }
                        }
                    }
                }
            };
            outcomes[i] = Some(outcome);
        }
        if !ops.is_empty() {
            self.shared.backend.commit(ops)?;
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Ingested::Quarantined { reason: "not processed".into() }))
            .collect())
    }

    /// Verifies one foreign event; Ok gives the event and this node's channel position.
    fn check_foreign(&self, bytes: &[u8]) -> std::result::Result<(StoredEvent, u64), (Option<String>, String)> {
        let ev = StoredEvent::decode(bytes).map_err(|p| (None, format!("malformed: {p}")))?;
        let claimed = Some(ev.envelope.author.clone());
        let fail = |reason: String| (claimed.clone(), reason);
        let author = Locality::parse(&ev.envelope.author).map_err(|p| fail(format!("author {p}")))?;
        if author == self.shared.locality {
            return Err(fail("names this node as its author; a node ingests only other localities' events".into()));
        }
        let key =
            self.roster_key(author.as_u32()).ok_or_else(|| fail(format!("unknown author {author}: no roster key")))?;
        ev.verify_signature(&key)
            .map_err(|p| fail(format!("forged or altered: {p} with the roster key of {author}")))?;
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
        for d in &ev.envelope.tier_digests {
            if !checked.kind.tiers().iter().any(|t| *t as i32 == d.tier) {
                return Err(fail(format!("schema: a {} event may not carry tier {}", checked.kind, d.tier)));
            }
        }
        let me = self.shared.locality.to_string();
        let ch = ev
            .envelope
            .recipients
            .iter()
            .find(|r| r.locality == me)
            .map(|r| r.channel_seq)
            .ok_or_else(|| fail(format!("wrong recipient: not addressed to {me}")))?;
        if ch == 0 {
            return Err(fail("channel position 0; positions start at 1".into()));
        }
        Ok((ev, ch))
    }

    /// Every quarantined event, oldest first.
    pub fn quarantine(&self) -> Result<Vec<QuarantineEntry>> {
        self.shared
            .backend
            .range(&[layout::QUARANTINE], &[layout::QUARANTINE + 1], usize::MAX)?
            .into_iter()
            .map(|(_, v)| {
                serde_json::from_slice(&v).map_err(|e| Error::Storage(format!("quarantine record unreadable: {e}")))
            })
            .collect()
    }

    /// Verifies the whole store: chains, signatures, gaps, channels, indexes.
    pub fn verify(&self) -> Result<crate::verify::VerifyReport> {
        let roster: HashMap<u32, VerifyingKey> = self.shared.roster.read().unwrap_or_else(|p| p.into_inner()).clone();
        crate::verify::run(&self.shared.backend, self.shared.locality, &roster)
    }

    /// Test hook: writes raw bytes under a raw key, bypassing every check.
    #[cfg(feature = "testing")]
    pub fn raw_put(&self, key: &[u8], value: Option<Vec<u8>>) -> Result<()> {
        self.shared.backend.commit(vec![(key.to_vec(), value)])
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

fn channel_head<B: Backend>(backend: &B, author: u32, recipient: u32) -> Result<u64> {
    let prefix = layout::channel_prefix(author, recipient);
    Ok(backend
        .last_in(&prefix, &layout::prefix_end(&prefix))?
        .and_then(|(k, _)| layout::channel_seq_of(&k))
        .unwrap_or(0))
}

/// The event, id, person and channel entries of one event.
fn push_index_ops(
    ops: &mut Vec<Op>,
    ev: &StoredEvent,
    author: u32,
    id: &[u8; 16],
    digest: Option<&[u8; 32]>,
    bytes: &[u8],
) {
    let seq = ev.envelope.author_seq;
    ops.push((layout::event_key(author, seq).to_vec(), Some(bytes.to_vec())));
    ops.push((layout::id_key(id).to_vec(), Some(layout::id_value(author, seq, digest))));
    if let Ok(p) = PersonKey::parse(&ev.envelope.person_key) {
        ops.push((layout::person_key(p.as_bytes(), author, seq).to_vec(), Some(Vec::new())));
    }
    for r in &ev.envelope.recipients {
        if let Ok(l) = Locality::parse(&r.locality) {
            ops.push((
                layout::channel_key(author, l.as_u32(), r.channel_seq).to_vec(),
                Some(layout::id_value(author, seq, None)),
            ));
        }
    }
}

/// Looks up an id among durable and in-flight events.
enum Existing {
    None,
    Same(Appended),
    Different,
}

fn existing<B: Backend>(shared: &Shared<B>, id: &Uuid, digest: &[u8; 32]) -> Result<Existing> {
    if let Some((d, a)) = lock(&shared.in_flight).get(id.as_bytes()) {
        return Ok(if d == digest {
            Existing::Same(Appended { duplicate: true, warnings: Vec::new(), ..a.clone() })
        } else {
            Existing::Different
        });
    }
    let Some(v) = shared.backend.get(&layout::id_key(id.as_bytes()))? else {
        return Ok(Existing::None);
    };
    let (author, seq, stored_digest) =
        layout::parse_id_value(&v).ok_or_else(|| Error::Storage(format!("id index entry of {id} is malformed")))?;
    if author != shared.locality.as_u32() || stored_digest.as_ref() != Some(digest) {
        return Ok(Existing::Different);
    }
    let bytes = shared.backend.get(&layout::event_key(author, seq))?.ok_or_else(|| Error::Corrupt {
        author: shared.locality.to_string(),
        seq,
        problem: "indexed by id but missing".into(),
    })?;
    let ev = StoredEvent::decode(&bytes).map_err(|problem| Error::Corrupt {
        author: shared.locality.to_string(),
        seq,
        problem,
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
    envelope: Vec<u8>,
    tiers: Vec<yipan_proto::v1::TierPayload>,
    id: [u8; 16],
    digest: [u8; 32],
    person: Option<PersonKey>,
    seq: u64,
    recipients: Vec<(Locality, u64)>,
}

fn sequencer<B: Backend>(
    shared: Arc<Shared<B>>,
    rx: mpsc::Receiver<Job>,
    wtx: mpsc::SyncSender<WriteGroup>,
    mut state: SeqState,
) {
    let me = shared.locality;
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
            replies.push((job.reply, result));
        }
        let sign = |u: &Unsigned| shared.signing.sign(&u.envelope).to_bytes();
        let signatures: Vec<[u8; 64]> = if unsigned.len() >= PARALLEL_SIGN_FROM {
            unsigned.par_iter().map(sign).collect()
        } else {
            unsigned.iter().map(sign).collect()
        };
        let mut ops: Vec<Op> = Vec::with_capacity(unsigned.len() * 4);
        let mut ids = Vec::with_capacity(unsigned.len());
        for (u, sig) in unsigned.into_iter().zip(signatures) {
            let a = me.as_u32();
            let signed = SignedEvent { envelope: u.envelope, signature: sig.to_vec(), tiers: u.tiers };
            ops.push((layout::event_key(a, u.seq).to_vec(), Some(signed.encode_to_vec())));
            ops.push((layout::id_key(&u.id).to_vec(), Some(layout::id_value(a, u.seq, Some(&u.digest)))));
            if let Some(p) = u.person {
                ops.push((layout::person_key(p.as_bytes(), a, u.seq).to_vec(), Some(Vec::new())));
            }
            for (r, ch) in &u.recipients {
                ops.push((layout::channel_key(a, r.as_u32(), *ch).to_vec(), Some(layout::id_value(a, u.seq, None))));
            }
            ids.push(u.id);
        }
        let events = ids.len() as u64;
        let group = WriteGroup { ops, head: (state.seq, state.hash), replies, ids, events };
        if wtx.send(group).is_err() {
            return;
        }
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
        for r in &p.checked.recipients {
            if !state.channels.contains_key(&r.as_u32()) {
                let h = channel_head(&shared.backend, shared.locality.as_u32(), r.as_u32())?;
                state.channels.insert(r.as_u32(), h);
            }
        }
        seen.insert(p.id, p.digest);
        plan.push((p, dup));
    }
    // Phase 2: sequence; cannot fail.
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
                let ch = state.channels.entry(r.as_u32()).or_insert(0);
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
        }
        .encode_to_vec();
        let hash = hash_envelope(&envelope);
        state.seq = seq;
        state.hash = hash;
        let a =
            Appended { id, seq, hash, recipients: recipients.clone(), duplicate: false, warnings: checked.warnings };
        lock(&shared.in_flight).insert(*id.as_bytes(), (digest, a.clone()));
        job_ids.insert(id, a.clone());
        out.push(Unsigned { envelope, tiers, id: *id.as_bytes(), digest, person: checked.person, seq, recipients });
        appended.push(a);
    }
    Ok(appended)
}

fn writer<B: Backend>(shared: Arc<Shared<B>>, rx: mpsc::Receiver<WriteGroup>) {
    while let Ok(first) = rx.recv() {
        let mut groups = vec![first];
        while let Ok(g) = rx.try_recv() {
            groups.push(g);
        }
        let head = groups.last().map(|g| g.head).unwrap_or((0, [0u8; 32]));
        let events: u64 = groups.iter().map(|g| g.events).sum();
        let mut ops: Vec<Op> = Vec::with_capacity(groups.iter().map(|g| g.ops.len()).sum::<usize>() + 1);
        let mut replies = Vec::new();
        let mut ids = Vec::new();
        for g in groups {
            ops.extend(g.ops);
            replies.extend(g.replies);
            ids.extend(g.ids);
        }
        let result = if shared.poisoned.load(Ordering::Acquire) {
            Err(Error::Poisoned)
        } else if events == 0 {
            Ok(())
        } else {
            let mut h = head.0.to_be_bytes().to_vec();
            h.extend_from_slice(&head.1);
            ops.push((layout::META_HEAD.to_vec(), Some(h)));
            shared.backend.commit(ops)
        };
        match result {
            Ok(()) => {
                shared.commits.fetch_add(1, Ordering::Relaxed);
                shared.committed_events.fetch_add(events, Ordering::Relaxed);
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
        for id in ids {
            in_flight.remove(&id);
        }
    }
}
