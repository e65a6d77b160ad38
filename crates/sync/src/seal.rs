//! Sealed tiers (crypto-shredding, docs/privacy.md "Erasure"): personal tier
//! payloads cross the JetStream streams encrypted with the author's
//! per-person data keys, and the keys travel on subjects of their own,
//! `yipan.v1.key.<pp>.<recipient>.<author>.<key id>`, in the streams
//! `YIPAN_KEY_<pp>` that keep one message per subject. An erasure destroys
//! the key at the author and replaces the key message with one that lacks
//! it: every copy of the payload in the event streams — and in their
//! backups — is unreadable from then on, without any right to delete
//! stream messages (no locality has one).
//!
//! Envelopes are not sealed: anyone holding a message still verifies its
//! signature and chain; a holder without the key sees the tier as withheld.

use std::collections::HashMap;

use async_nats::jetstream;
use bytes::Bytes;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use yipan_core::{Locality, PersonKey};
use yipan_log::erase::DataKeys;
use yipan_log::{Backend, Log, StoredEvent};
use yipan_proto::v1::{SealedTier, SignedEvent, TierKeys, TierPayload};
use yipan_proto::Message;

use crate::{Error, Result};

/// Days after which a key message is published again, so that it outlives
/// (in a stream whose age limit is the events' plus [`KEY_STREAM_EXTRA_DAYS`])
/// every event sealed with it.
pub const REFRESH_DAYS: i64 = 30;
/// Extra days the key streams keep messages beyond the event streams.
pub const KEY_STREAM_EXTRA_DAYS: u64 = 31;

/// The key stream of a recipient province.
pub fn key_stream(province: u8) -> String {
    format!("YIPAN_KEY_{province:02}")
}

/// Subjects of a province's key stream.
pub fn key_stream_subjects(province: u8) -> String {
    format!("yipan.v1.key.{province:02}.>")
}

/// Subject of `author`'s data keys `key_id` (hex) for `recipient`.
pub fn key_subject(recipient: Locality, author: Locality, key_id: &str) -> String {
    format!("yipan.v1.key.{:02}.{recipient}.{author}.{key_id}", recipient.province())
}

/// An author and one of its key ids (the key messages of a batch, cached by it).
pub type KeySlot = (String, Vec<u8>);

/// Today as days since 1970-01-01.
pub fn today() -> i64 {
    chrono::Utc::now().timestamp().div_euclid(86_400)
}

fn aad(envelope_hash: &[u8; 32], tier: i32) -> Vec<u8> {
    let mut a = b"yipan sealed tier v1\0".to_vec();
    a.extend_from_slice(envelope_hash);
    a.extend_from_slice(&(tier as u32).to_be_bytes());
    a
}

fn cipher(key: &[u8]) -> Result<LessSafeKey> {
    UnboundKey::new(&CHACHA20_POLY1305, key)
        .map(LessSafeKey::new)
        .map_err(|_| Error::Nats("a data key is not 32 bytes".into()))
}

/// The wire form of `ev`: its tier payloads moved into sealed tiers with `keys`.
pub fn seal(ev: &StoredEvent, keys: &DataKeys) -> Result<SignedEvent> {
    let mut signed = ev.signed.clone();
    let key_id = hex::decode(&keys.key_id).unwrap_or_default();
    for p in std::mem::take(&mut signed.tiers) {
        let (version, key) =
            keys.key(p.tier).ok_or_else(|| Error::Nats(format!("no data key for tier {} to seal with", p.tier)))?;
        let mut nonce = [0u8; 12];
        getrandom::getrandom(&mut nonce).map_err(|e| Error::Nats(format!("no randomness for a nonce: {e}")))?;
        let mut data = p.content.clone();
        cipher(&key)?
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad(&ev.hash, p.tier)), &mut data)
            .map_err(|_| Error::Nats("sealing failed".into()))?;
        signed.sealed.push(SealedTier {
            tier: p.tier,
            key_id: key_id.clone(),
            version,
            nonce: nonce.to_vec(),
            ciphertext: data,
        });
    }
    Ok(signed)
}

/// Opens what it can of a received message's sealed tiers, fetching the
/// author's key messages (once per author and key id in a batch, cached in
/// `cache`); a tier whose key is gone (erased) or whose ciphertext does not
/// open is dropped, as if withheld. Messages that are not decodable or
/// carry nothing sealed are returned unchanged (ingest judges them).
pub async fn open(
    client: &async_nats::Client,
    me: Locality,
    payload: Bytes,
    cache: &mut HashMap<KeySlot, Option<TierKeys>>,
) -> Result<Bytes> {
    let Ok(mut signed) = SignedEvent::decode(payload.as_ref()) else { return Ok(payload) };
    if signed.sealed.is_empty() {
        return Ok(payload);
    }
    let Ok(ev) = StoredEvent::from_signed(SignedEvent { sealed: vec![], ..signed.clone() }) else {
        return Ok(payload);
    };
    let Some(author) = ev.author() else { return Ok(payload) };
    for s in openable(std::mem::take(&mut signed.sealed), &ev.envelope) {
        let slot = (author.to_string(), s.key_id.clone());
        if !cache.contains_key(&slot) {
            let keys = fetch_keys(client, me, author, &s.key_id).await?;
            cache.insert(slot.clone(), keys);
        }
        let key = cache
            .get(&slot)
            .and_then(|k| k.as_ref())
            .and_then(|k| k.keys.iter().find(|k| k.tier == s.tier && k.version == s.version))
            .map(|k| k.key.clone());
        let Some(key) = key else {
            tracing::debug!(%author, seq = ev.seq(), tier = s.tier, "sealed tier without a live key (erased): dropped");
            continue;
        };
        let Ok(nonce) = <[u8; 12]>::try_from(s.nonce.as_slice()) else { continue };
        let mut data = s.ciphertext.clone();
        let opened = cipher(&key)?
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad(&ev.hash, s.tier)), &mut data)
            .map(|plain| plain.to_vec());
        match opened {
            Ok(content) => signed.tiers.push(TierPayload { tier: s.tier, content }),
            Err(_) => tracing::warn!(%author, seq = ev.seq(), tier = s.tier, "sealed tier does not open: dropped"),
        }
    }
    signed.tiers.sort_by_key(|t| t.tier);
    Ok(Bytes::from(signed.encode_to_vec()))
}

/// Fetches, 64 at a time, the key messages the sealed tiers of `payloads`
/// need and that `cache` does not hold yet (one round trip per author and key
/// id instead of one after the other).
pub async fn prefetch(
    client: &async_nats::Client,
    me: Locality,
    payloads: &[Bytes],
    cache: &mut HashMap<KeySlot, Option<TierKeys>>,
) -> Result<()> {
    use futures::StreamExt;
    let mut wanted: Vec<(Locality, Vec<u8>)> = Vec::new();
    for p in payloads {
        let Ok(signed) = SignedEvent::decode(p.as_ref()) else { continue };
        if signed.sealed.is_empty() {
            continue;
        }
        let Ok(envelope) = yipan_proto::v1::Envelope::decode(signed.envelope.as_slice()) else { continue };
        let Ok(author) = Locality::parse(&envelope.author) else { continue };
        for s in &openable(signed.sealed.clone(), &envelope) {
            let slot = (author.to_string(), s.key_id.clone());
            if !cache.contains_key(&slot) && !wanted.iter().any(|(a, k)| *a == author && *k == s.key_id) {
                wanted.push((author, s.key_id.clone()));
            }
        }
    }
    let fetched: Vec<Result<(KeySlot, Option<TierKeys>)>> = futures::stream::iter(wanted)
        .map(|(author, key_id)| async move {
            let keys = fetch_keys(client, me, author, &key_id).await?;
            Ok(((author.to_string(), key_id), keys))
        })
        .buffer_unordered(64)
        .collect()
        .await;
    for f in fetched {
        let (slot, keys) = f?;
        cache.insert(slot, keys);
    }
    Ok(())
}

/// The sealed tiers worth opening: at most one per tier the envelope has a
/// digest for (the signature does not cover `sealed`, so anything else — a
/// thousand entries, tiers the event cannot carry — is dropped unread rather
/// than costing a key lookup each).
fn openable(sealed: Vec<SealedTier>, envelope: &yipan_proto::v1::Envelope) -> Vec<SealedTier> {
    let mut out: Vec<SealedTier> = Vec::new();
    for s in sealed {
        if envelope.tier_digests.iter().any(|d| d.tier == s.tier) && out.iter().all(|o| o.tier != s.tier) {
            out.push(s);
        }
    }
    out
}

/// The live key message of `author` for `me` (`None`: none, or a tombstone).
async fn fetch_keys(
    client: &async_nats::Client,
    me: Locality,
    author: Locality,
    key_id: &[u8],
) -> Result<Option<TierKeys>> {
    let subject =
        format!("$JS.API.DIRECT.GET.{}.{}", key_stream(me.province()), key_subject(me, author, &hex::encode(key_id)));
    let reply = client.request(subject, Bytes::new()).await.map_err(Error::nats)?;
    if reply.status.is_some_and(|s| s != async_nats::StatusCode::OK) {
        // 404: no key message (never published, or expired with the events).
        return Ok(None);
    }
    Ok(TierKeys::decode(reply.payload.as_ref()).ok().filter(|k| !k.keys.is_empty()))
}

/// Publishes the key messages that are due for every recipient of `events`
/// (creating keys for tiers that have none) and returns each person's keys
/// for sealing. The caller re-reads its events if an erasure happened meanwhile.
pub async fn prepare<B: Backend>(
    log: &std::sync::Arc<Log<B>>,
    js: &jetstream::Context,
    events: &[StoredEvent],
    budget: Option<&std::sync::Arc<crate::budget::PublishBudget>>,
) -> Result<HashMap<PersonKey, DataKeys>> {
    let mut need: HashMap<PersonKey, (Vec<i32>, Vec<String>)> = HashMap::new();
    for ev in events {
        if ev.signed.tiers.is_empty() {
            continue;
        }
        let Ok(person) = PersonKey::parse(&ev.envelope.person_key) else { continue };
        let e = need.entry(person).or_default();
        for t in &ev.signed.tiers {
            if !e.0.contains(&t.tier) {
                e.0.push(t.tier);
            }
        }
        for r in &ev.envelope.recipients {
            if !e.1.contains(&r.locality) {
                e.1.push(r.locality.clone());
            }
        }
    }
    let wanted: Vec<(PersonKey, Vec<i32>, Vec<String>)> = need.into_iter().map(|(p, (t, r))| (p, t, r)).collect();
    let l = log.clone();
    let persons: Vec<PersonKey> = wanted.iter().map(|w| w.0).collect();
    let keys = tokio::task::spawn_blocking(move || l.data_keys_for_many(&wanted))
        .await
        .map_err(|e| Error::Nats(format!("data key task failed: {e}")))??;
    let all: Vec<(PersonKey, DataKeys)> = persons.into_iter().zip(keys).collect();
    publish_due(log, js, &all, budget).await?;
    Ok(all.into_iter().collect())
}

/// Publishes each person's key message to every recipient it is due for
/// (pipelined, within the host's publish `budget` if it has one: all sent,
/// then every acknowledgement awaited) and records them.
pub async fn publish_due<B: Backend>(
    log: &std::sync::Arc<Log<B>>,
    js: &jetstream::Context,
    keys: &[(PersonKey, DataKeys)],
    budget: Option<&std::sync::Arc<crate::budget::PublishBudget>>,
) -> Result<()> {
    let me = log.locality();
    let day = today();
    let mut window = crate::budget::Window::new(budget.cloned(), usize::MAX);
    let mut sent = Vec::new();
    for (person, k) in keys {
        let due = k.due(day, REFRESH_DAYS);
        if due.is_empty() {
            continue;
        }
        let payload = Bytes::from(k.message().encode_to_vec());
        for r in due {
            let Ok(recipient) = Locality::parse(&r) else { continue };
            let permit = window.room(1).await?;
            let ack = js.publish(key_subject(recipient, me, &k.key_id), payload.clone()).await.map_err(Error::nats)?;
            window.push(vec![ack], permit);
            sent.push((*person, r, k.generation));
        }
    }
    if sent.is_empty() {
        return Ok(());
    }
    window.settle().await?;
    let l = log.clone();
    tokio::task::spawn_blocking(move || l.data_keys_published_many(&sent, day))
        .await
        .map_err(|e| Error::Nats(format!("data key task failed: {e}")))??;
    Ok(())
}

/// Replaces every out-of-date key message (after erasures): the tombstones.
pub async fn publish_stale<B: Backend>(
    log: &std::sync::Arc<Log<B>>,
    js: &jetstream::Context,
    budget: Option<&std::sync::Arc<crate::budget::PublishBudget>>,
) -> Result<usize> {
    let l = log.clone();
    let stale = tokio::task::spawn_blocking(move || l.data_keys_stale(256))
        .await
        .map_err(|e| Error::Nats(format!("data key task failed: {e}")))??;
    let n = stale.len();
    publish_due(log, js, &stale, budget).await?;
    Ok(n)
}

/// Creates (or, without `manage_streams`, leaves to the admin) the key
/// stream of a province: one message per subject (a newer key message or a
/// tombstone replaces the older), kept [`KEY_STREAM_EXTRA_DAYS`] longer than
/// events, readable by subject (direct get, which permissions can scope to a
/// recipient's own keys).
pub async fn ensure_key_stream(js: &jetstream::Context, province: u8, cfg: &crate::SyncConfig) -> Result<()> {
    if !cfg.manage_streams {
        return Ok(());
    }
    let name = key_stream(province);
    let config = jetstream::stream::Config {
        name: name.clone(),
        subjects: vec![key_stream_subjects(province)],
        storage: jetstream::stream::StorageType::File,
        max_age: std::time::Duration::from_secs((cfg.stream_max_age_days + KEY_STREAM_EXTRA_DAYS) * 86_400),
        max_messages_per_subject: 1,
        allow_direct: true,
        duplicate_window: std::time::Duration::from_secs(120),
        num_replicas: cfg.stream_replicas.max(1),
        placement: crate::placement(cfg, &name),
        ..Default::default()
    };
    if let Err(first) = js.get_or_create_stream(config).await {
        js.get_stream(&name).await.map_err(|_| Error::nats(first))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use yipan_proto::v1::{Envelope, TierDigest};

    /// Unsigned `sealed` entries cost a key lookup each: only one per tier the signed
    /// envelope names is ever looked at, however many a message carries.
    #[test]
    fn only_one_sealed_entry_per_signed_tier_is_opened() {
        let envelope = Envelope {
            tier_digests: vec![
                TierDigest { tier: 1, sha256: vec![0; 32] },
                TierDigest { tier: 3, sha256: vec![0; 32] },
            ],
            ..Default::default()
        };
        let flood: Vec<SealedTier> =
            (0..1000).map(|i| SealedTier { tier: i % 4, key_id: vec![i as u8; 16], ..Default::default() }).collect();
        let kept = openable(flood, &envelope);
        assert_eq!(kept.iter().map(|s| s.tier).collect::<Vec<_>>(), [1, 3]);
    }

    #[test]
    fn a_sealed_tier_opens_only_with_its_key_and_event() {
        let keys = DataKeys {
            key_id: "00".repeat(16),
            keys: vec![yipan_log::erase::DataKey { tier: 1, version: 1, key: "11".repeat(32) }],
            ..Default::default()
        };
        let ev = StoredEvent {
            signed: SignedEvent {
                envelope: vec![1, 2, 3],
                signature: vec![0; 64],
                tiers: vec![TierPayload { tier: 1, content: b"secret".to_vec() }],
                sealed: vec![],
                batch: None,
            },
            envelope: Default::default(),
            hash: [7; 32],
        };
        let sealed = seal(&ev, &keys).unwrap();
        assert!(sealed.tiers.is_empty() && sealed.sealed.len() == 1);
        let s = &sealed.sealed[0];
        assert!(!s.ciphertext.windows(6).any(|w| w == b"secret"), "the payload is not in the clear");
        let open_with = |key: &[u8], hash: &[u8; 32]| {
            let mut data = s.ciphertext.clone();
            let nonce = Nonce::assume_unique_for_key(s.nonce.clone().try_into().unwrap());
            cipher(key).unwrap().open_in_place(nonce, Aad::from(aad(hash, s.tier)), &mut data).map(|p| p.to_vec())
        };
        assert_eq!(open_with(&[0x11; 32], &[7; 32]).unwrap(), b"secret");
        assert!(open_with(&[0x12; 32], &[7; 32]).is_err(), "another key");
        assert!(open_with(&[0x11; 32], &[8; 32]).is_err(), "moved to another event");
        // Without a key for the tier, nothing is published in the clear.
        assert!(seal(&ev, &DataKeys::default()).is_err());
    }
}
