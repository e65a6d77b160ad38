//! Erasure (docs/privacy.md "Erasure"): dropping the tier payloads of a
//! person's events from this store, and the author's per-person data keys
//! that seal those tiers on their way through the JetStream streams.
//!
//! Only tier payloads go: envelopes, signatures, chains and channel
//! positions stay, so every event still verifies and every projection
//! digest is unchanged (the signature covers the tiers' digests only,
//! DESIGN.md invariant 9). Each dropped payload is recorded in the erasure
//! index (`e` + author + seq → tier mask + the erasure request's id), which
//! is how `verify` tells an erased own tier from a lost one.
//!
//! Data keys (`k` + person key): one random key id per person and one
//! ChaCha20-Poly1305 key per tier and version, kept only here and published
//! to each recipient on its key subject. Erasing a tier destroys its key
//! (the next event of that tier gets a new version) and marks every
//! recipient's published key message stale (`K` + person), so the outbox
//! replaces it with one that lacks the key — after which no copy sealed
//! with it, in any stream or stream backup, can be read.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use yipan_core::{Locality, PersonKey};
use yipan_proto::v1::Tier;
use yipan_proto::Message;

use crate::backend::{Backend, Op};
use crate::error::{Error, Result};
use crate::event::StoredEvent;
use crate::layout;
use crate::log::Log;
use crate::segment::{self, Entry};

/// Key prefix of the erasure index.
pub const ERASED: u8 = b'e';
/// Key prefix of the data keys.
pub const DATA_KEYS: u8 = b'k';
/// Key prefix of persons whose published key messages are out of date.
pub const STALE_KEYS: u8 = b'K';

/// Which payloads to drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The person.
    pub person: PersonKey,
    /// The tiers to drop.
    pub tiers: Vec<Tier>,
    /// Only this author's events (a recipient answering a request); `None`: every event held.
    pub author: Option<Locality>,
    /// Only events with an author sequence below this (those before the request).
    pub before_seq: Option<u64>,
    /// Only events recorded (by their author) at or before this instant, µs
    /// since 1970 (re-applying an erasure after a restore from backup).
    pub recorded_until_us: Option<i64>,
    /// The erasure request this is done under.
    pub by: Uuid,
}

/// What an erasure did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Erased {
    /// Events in scope held here (with or without tiers).
    pub events_held: usize,
    /// Events whose payloads were dropped now.
    pub events: usize,
    /// Tier payloads dropped now.
    pub payloads: usize,
    /// Data keys destroyed (tiers of this node's own key record).
    pub keys_destroyed: usize,
}

/// One data key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataKey {
    /// Tier number.
    pub tier: i32,
    /// Version (a new one after each erasure of the tier).
    pub version: u32,
    /// The key (hex of 32 bytes).
    pub key: String,
}

/// The author's data keys for one person.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataKeys {
    /// Key id (hex of 16 random bytes): the last token of the key subjects.
    pub key_id: String,
    /// The live keys, at most one per tier.
    pub keys: Vec<DataKey>,
    /// Last version used per tier.
    #[serde(default)]
    pub versions: BTreeMap<i32, u32>,
    /// Changes so far; a recipient whose published message is of an older generation is stale.
    pub generation: u64,
    /// Recipient → (generation, unix day) of the last key message published to it.
    #[serde(default)]
    pub published: BTreeMap<String, (u64, i64)>,
}

impl DataKeys {
    /// The key message for recipients: every live key.
    pub fn message(&self) -> yipan_proto::v1::TierKeys {
        yipan_proto::v1::TierKeys {
            key_id: hex::decode(&self.key_id).unwrap_or_default(),
            keys: self
                .keys
                .iter()
                .map(|k| yipan_proto::v1::TierKey {
                    tier: k.tier,
                    version: k.version,
                    key: hex::decode(&k.key).unwrap_or_default(),
                })
                .collect(),
        }
    }

    /// The live key of a tier.
    pub fn key(&self, tier: i32) -> Option<(u32, [u8; 32])> {
        let k = self.keys.iter().find(|k| k.tier == tier)?;
        Some((k.version, hex::decode(&k.key).ok()?.try_into().ok()?))
    }

    /// Some recipient holds a key message older than these keys (an erasure's tombstone is due).
    pub fn is_stale(&self) -> bool {
        self.published.values().any(|(g, _)| *g != 0 && *g != self.generation)
    }

    /// Recipients whose key message must be (re)published on `day`: never
    /// sent, of an older generation, or sent `refresh_days` or more ago (so
    /// that it outlives, in a stream with the events' age limit, the events sealed with it).
    pub fn due(&self, day: i64, refresh_days: i64) -> Vec<String> {
        self.published
            .iter()
            .filter(|(_, (g, d))| *g != self.generation || day - d >= refresh_days)
            .map(|(r, _)| r.clone())
            .collect()
    }
}

fn erased_key(author: u32, seq: u64) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[0] = ERASED;
    k[1..5].copy_from_slice(&author.to_be_bytes());
    k[5..13].copy_from_slice(&seq.to_be_bytes());
    k
}

fn person_key(prefix: u8, person: &PersonKey) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = prefix;
    k[1..].copy_from_slice(person.as_bytes());
    k
}

fn mask(tiers: &[i32]) -> u8 {
    tiers.iter().filter(|t| (1..8).contains(*t)).fold(0u8, |m, t| m | (1 << *t))
}

/// The tiers of a mask.
pub fn tiers_of(mask: u8) -> Vec<Tier> {
    (1..8).filter(|t| mask & (1 << t) != 0).filter_map(|t| Tier::try_from(t).ok()).collect()
}

/// Reads the erasure index of `author`: seq → (tier mask, request id).
pub(crate) fn erased_of<B: Backend>(backend: &B, author: u32) -> Result<BTreeMap<u64, (u8, Uuid)>> {
    let mut start = vec![ERASED];
    start.extend_from_slice(&author.to_be_bytes());
    let end = layout::prefix_end(&start);
    let mut out = BTreeMap::new();
    backend.for_each(&start, &end, &mut |k, v| {
        if k.len() == 13 && v.len() == 17 {
            let seq = u64::from_be_bytes(k[5..13].try_into().unwrap_or_default());
            out.insert(seq, (v[0], Uuid::from_slice(&v[1..]).unwrap_or_default()));
        }
        true
    })?;
    Ok(out)
}

impl<B: Backend> Log<B> {
    /// Drops the tier payloads in `scope` from this store, records them in
    /// the erasure index and, for an erasure of this node's own data,
    /// destroys its data keys of those tiers — all in one atomic batch.
    /// Idempotent: payloads already gone are not counted again.
    pub fn erase(&self, scope: &Scope) -> Result<Erased> {
        let me = self.locality();
        let _guard = self.ingest_guard();
        let _keys = self.data_keys_guard();
        let tiers: Vec<i32> = scope.tiers.iter().map(|t| *t as i32).collect();
        let mut out = Erased::default();
        // Segment key → (events rewritten there, by seq).
        let mut segments: BTreeMap<Vec<u8>, Vec<(u64, Vec<u8>)>> = BTreeMap::new();
        let mut ops: Vec<Op> = Vec::new();
        for (author, seq) in self.person_positions(&scope.person)? {
            if scope.author.is_some_and(|a| a.as_u32() != author) || scope.before_seq.is_some_and(|b| seq >= b) {
                continue;
            }
            let Some((key, ev)) = self.segment_event(author, seq)? else { continue };
            if let Some(until) = scope.recorded_until_us {
                let at = ev.envelope.recorded_at.as_ref().map(|t| t.seconds * 1_000_000 + i64::from(t.nanos) / 1000);
                if at.is_none_or(|at| at > until) {
                    continue;
                }
            }
            out.events_held += 1;
            let mut signed = ev.signed.clone();
            let before = signed.tiers.len();
            signed.tiers.retain(|p| !tiers.contains(&p.tier));
            let dropped: Vec<i32> = ev.signed.tiers.iter().map(|p| p.tier).filter(|t| tiers.contains(t)).collect();
            if signed.tiers.len() == before {
                continue;
            }
            out.events += 1;
            out.payloads += before - signed.tiers.len();
            let prior = self.backend().get(&erased_key(author, seq))?.and_then(|v| v.first().copied()).unwrap_or(0);
            let mut v = vec![prior | mask(&dropped)];
            v.extend_from_slice(scope.by.as_bytes());
            ops.push((erased_key(author, seq).to_vec(), Some(v)));
            segments.entry(key).or_default().push((seq, signed.encode_to_vec()));
        }
        for (key, edits) in segments {
            let value = self.backend().get(&key)?.ok_or_else(|| Error::Storage("segment vanished".into()))?;
            let entries = segment::decode(&value).map_err(Error::Storage)?;
            let rewritten: Vec<Entry<'_>> = entries
                .iter()
                .map(|e| match edits.iter().find(|(s, _)| *s == e.seq) {
                    Some((_, bytes)) => Entry { seq: e.seq, digest: e.digest, bytes },
                    None => *e,
                })
                .collect();
            ops.push((key, Some(segment::encode(&rewritten))));
        }
        if scope.author.is_none() || scope.author == Some(me) {
            if let Some(mut keys) = self.data_keys(&scope.person)? {
                let (n, before) = (keys.keys.len(), keys.is_stale());
                keys.keys.retain(|k| !tiers.contains(&k.tier));
                out.keys_destroyed = n - keys.keys.len();
                if out.keys_destroyed > 0 {
                    keys.generation += 1;
                    self.put_data_keys(&mut ops, &scope.person, &keys, before);
                }
            }
        }
        if !ops.is_empty() {
            self.commit(ops)?;
        }
        self.erasure_epoch().fetch_add(1, Ordering::AcqRel);
        Ok(out)
    }

    /// The tiers erased from `author#seq` and the request they were erased under.
    pub fn erased(&self, author: Locality, seq: u64) -> Result<Option<(Vec<Tier>, Uuid)>> {
        Ok(self
            .backend()
            .get(&erased_key(author.as_u32(), seq))?
            .filter(|v| v.len() == 17)
            .map(|v| (tiers_of(v[0]), Uuid::from_slice(&v[1..]).unwrap_or_default())))
    }

    /// Counts erasures so far in this process: a publisher that read events
    /// before an erasure and sealed them after it sees the count change and
    /// reads again (so it never creates a new key for an erased tier's old payload).
    pub fn erasure_count(&self) -> u64 {
        self.erasure_epoch().load(Ordering::Acquire)
    }

    /// This node's data keys for `person`.
    pub fn data_keys(&self, person: &PersonKey) -> Result<Option<DataKeys>> {
        self.backend()
            .get(&person_key(DATA_KEYS, person))?
            .map(|v| serde_json::from_slice(&v))
            .transpose()
            .map_err(|e| Error::Storage(format!("data keys do not decode: {e}")))
    }

    /// This node's data keys for `person` with a live key for each of `tiers`
    /// (created now if missing) and `recipients` registered as holders of
    /// the key message (so an erasure reaches them).
    pub fn data_keys_for(&self, person: &PersonKey, tiers: &[i32], recipients: &[String]) -> Result<DataKeys> {
        let mut out = self.data_keys_for_many(&[(*person, tiers.to_vec(), recipients.to_vec())])?;
        out.pop().ok_or_else(|| Error::Storage("no data keys".into()))
    }

    /// [`Log::data_keys_for`] for many persons, in one write.
    pub fn data_keys_for_many(&self, wanted: &[(PersonKey, Vec<i32>, Vec<String>)]) -> Result<Vec<DataKeys>> {
        let _guard = self.data_keys_guard();
        let mut ops = Vec::new();
        let mut out = Vec::with_capacity(wanted.len());
        for (person, tiers, recipients) in wanted {
            let mut keys = self.data_keys(person)?.unwrap_or_default();
            let before = keys.is_stale();
            let mut changed = false;
            if keys.key_id.is_empty() {
                keys.key_id = hex::encode(random::<16>()?);
                changed = true;
            }
            for t in tiers {
                if keys.keys.iter().all(|k| k.tier != *t) {
                    let version = keys.versions.get(t).map_or(1, |v| v + 1);
                    keys.versions.insert(*t, version);
                    keys.keys.push(DataKey { tier: *t, version, key: hex::encode(random::<32>()?) });
                    keys.generation += 1;
                    changed = true;
                }
            }
            for r in recipients {
                if !keys.published.contains_key(r) {
                    keys.published.insert(r.clone(), (0, i64::MIN / 2));
                    changed = true;
                }
            }
            if changed {
                self.put_data_keys(&mut ops, person, &keys, before);
            }
            out.push(keys);
        }
        if !ops.is_empty() {
            self.commit(ops)?;
        }
        Ok(out)
    }

    /// Records that `recipient` was sent the key message of `generation` on `day`.
    pub fn data_keys_published(&self, person: &PersonKey, recipient: &str, generation: u64, day: i64) -> Result<()> {
        self.data_keys_published_many(&[(*person, recipient.to_string(), generation)], day)
    }

    /// [`Log::data_keys_published`] for many, in one write.
    pub fn data_keys_published_many(&self, sent: &[(PersonKey, String, u64)], day: i64) -> Result<()> {
        let _guard = self.data_keys_guard();
        let mut changed: BTreeMap<[u8; 16], (PersonKey, DataKeys, bool)> = BTreeMap::new();
        for (person, recipient, generation) in sent {
            let entry = match changed.entry(*person.as_bytes()) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(v) => match self.data_keys(person)? {
                    Some(k) => {
                        let before = k.is_stale();
                        v.insert((*person, k, before))
                    }
                    None => continue,
                },
            };
            entry.1.published.insert(recipient.clone(), (*generation, day));
        }
        let mut ops = Vec::new();
        for (person, keys, before) in changed.values() {
            self.put_data_keys(&mut ops, person, keys, *before);
        }
        if ops.is_empty() {
            return Ok(());
        }
        // Lost in a crash, the mark only makes the outbox send the key message again.
        self.backend().apply(ops)
    }

    /// Persons with a key message out of date at some recipient (after an erasure), up to `limit`.
    pub fn data_keys_stale(&self, limit: usize) -> Result<Vec<(PersonKey, DataKeys)>> {
        let start = [STALE_KEYS];
        let mut out = Vec::new();
        for (k, _) in self.backend().range(&start, &layout::prefix_end(&start), limit)? {
            let Some(person) = PersonKey::from_slice(&k[1..]) else { continue };
            if let Some(keys) = self.data_keys(&person)? {
                out.push((person, keys));
            }
        }
        Ok(out)
    }

    /// Writes `keys` and keeps the stale index: a person is in it while a key
    /// message published before (generation ≠ 0) is older than the keys. A
    /// recipient never sent one is not stale: the outbox sends it with the
    /// first event for it. `before`: whether it was stale.
    fn put_data_keys(&self, ops: &mut Vec<Op>, person: &PersonKey, keys: &DataKeys, before: bool) {
        ops.push((person_key(DATA_KEYS, person).to_vec(), Some(serde_json::to_vec(keys).unwrap_or_default())));
        let stale = keys.is_stale();
        if stale != before {
            ops.push((person_key(STALE_KEYS, person).to_vec(), stale.then(Vec::new)));
        }
    }

    /// The segment holding `author#seq` and the event.
    fn segment_event(&self, author: u32, seq: u64) -> Result<Option<(Vec<u8>, StoredEvent)>> {
        let Some((key, value)) = self
            .backend()
            .range(&layout::segment_key(author, seq), &layout::prefix_end(&layout::author_prefix(author)), 1)?
            .pop()
        else {
            return Ok(None);
        };
        let entries = segment::decode(&value).map_err(Error::Storage)?;
        let Some(e) = entries.iter().find(|e| e.seq == seq) else { return Ok(None) };
        let ev = StoredEvent::decode(e.bytes).map_err(|problem| Error::Corrupt {
            author: author.to_string(),
            seq,
            problem,
        })?;
        Ok(Some((key, ev)))
    }
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).map_err(|e| Error::Storage(format!("no randomness for a data key: {e}")))?;
    Ok(b)
}
