//! A stored event decoded for reading, and the hash that chains events.

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use prost::Message;
use sha2::{Digest, Sha256};
use uuid::Uuid;
use yipan_core::{EventKind, Locality};
use yipan_proto::v1::{Envelope, SignedEvent, Tier};
pub use yipan_trust::batch::HeadCache;

/// SHA-256 of envelope bytes: the event's chain hash.
pub fn hash_envelope(envelope_bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(envelope_bytes).into()
}

/// A stored or received event, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// The signed form, exactly as stored and sent.
    pub signed: SignedEvent,
    /// The decoded envelope.
    pub envelope: Envelope,
    /// SHA-256 of the envelope bytes.
    pub hash: [u8; 32],
}

impl StoredEvent {
    /// Decodes an encoded `SignedEvent`. The outer encoding must be canonical
    /// (re-encoding gives the same bytes), so that no byte of a stored record
    /// can change unnoticed, e.g. by turning a tier into an unknown field.
    pub fn decode(bytes: &[u8]) -> Result<StoredEvent, String> {
        let signed = SignedEvent::decode(bytes).map_err(|e| format!("not a SignedEvent ({e})"))?;
        if signed.encoded_len() != bytes.len() || signed.encode_to_vec() != bytes {
            return Err("SignedEvent bytes are not in canonical form (altered or padded)".into());
        }
        Self::from_signed(signed)
    }

    /// Decodes the envelope of an already decoded `SignedEvent`.
    pub fn from_signed(signed: SignedEvent) -> Result<StoredEvent, String> {
        let envelope =
            Envelope::decode(signed.envelope.as_slice()).map_err(|e| format!("envelope does not decode ({e})"))?;
        let hash = hash_envelope(&signed.envelope);
        Ok(StoredEvent { signed, envelope, hash })
    }

    /// The event id.
    pub fn id(&self) -> Option<Uuid> {
        Uuid::from_slice(&self.envelope.event_id).ok()
    }

    /// The author locality, if its code is valid.
    pub fn author(&self) -> Option<Locality> {
        Locality::parse(&self.envelope.author).ok()
    }

    /// The author sequence.
    pub fn seq(&self) -> u64 {
        self.envelope.author_seq
    }

    /// The event kind, if the body is present.
    pub fn kind(&self) -> Option<EventKind> {
        self.envelope.body.as_ref().and_then(|b| b.kind.as_ref()).map(EventKind::of)
    }

    /// Checks the author's signature with `key`: per-event, or batch head
    /// and inclusion proof ([`yipan_trust::batch`]).
    pub fn verify_signature(&self, key: &VerifyingKey) -> Result<(), String> {
        yipan_trust::batch::verify(&self.signed, &self.envelope, key)
    }

    /// As [`StoredEvent::verify_signature`], checking each batch head's
    /// signature once per `cache`.
    pub fn verify_signature_cached(&self, key: &VerifyingKey, cache: &mut HeadCache) -> Result<(), String> {
        cache.verify(&self.signed, &self.envelope, key)
    }

    /// Whether the event is signed through a batch head (else per event).
    pub fn batch_signed(&self) -> bool {
        self.signed.batch.is_some()
    }

    /// Checks that every tier payload present matches its signed digest and
    /// that no payload is present without one. Absent payloads are fine
    /// (withheld or erased) unless `require_all`.
    pub fn verify_tiers(&self, require_all: bool) -> Result<(), String> {
        for p in &self.signed.tiers {
            let name = Tier::try_from(p.tier).map(yipan_core::kind::tier_name).unwrap_or("unknown");
            let digest = self
                .envelope
                .tier_digests
                .iter()
                .find(|d| d.tier == p.tier)
                .ok_or_else(|| format!("{name} tier payload has no signed digest"))?;
            if Sha256::digest(&p.content).as_slice() != digest.sha256.as_slice() {
                return Err(format!("{name} tier payload does not match its signed digest"));
            }
        }
        if require_all {
            for d in &self.envelope.tier_digests {
                if !self.signed.tiers.iter().any(|p| p.tier == d.tier) {
                    let name = Tier::try_from(d.tier).map(yipan_core::kind::tier_name).unwrap_or("unknown");
                    return Err(format!("{name} tier payload is missing"));
                }
            }
        }
        Ok(())
    }

    /// The event as a downstream `audience` may receive it: only its tiers
    /// are kept. It still verifies (only tier digests are signed).
    pub fn for_audience(&self, audience: yipan_core::audience::Audience) -> StoredEvent {
        let mut signed = self.signed.clone();
        yipan_core::audience::filter_tiers(&mut signed, audience);
        StoredEvent { signed, envelope: self.envelope.clone(), hash: self.hash }
    }

    /// The JSON form (personal values masked unless `reveal`).
    pub fn to_json(&self, reveal: bool) -> serde_json::Value {
        yipan_core::json::event_to_json(&self.envelope, &self.hash, &self.signed.tiers, reveal)
    }
}

/// Signatures verified together in one ed25519 batch verification.
pub const BATCH_VERIFY: usize = 64;
/// Below this many items signatures are checked one by one, without threads.
const PARALLEL_FROM: usize = 8;

/// Verifies the signature of every `Ok` item against its key. Structure and
/// inclusion proofs are checked first, on all cores; then each distinct
/// signature once — a batch head shared by many items is verified once —
/// in ed25519 batches of [`BATCH_VERIFY`]; a batch that fails is re-checked
/// one by one so the bad events are named. A bad signature becomes the error
/// `forged(event, extra, problem)`; `Err` items pass through untouched.
pub fn verify_signatures<T: Send + Sync, E: Send + Sync>(
    items: Vec<Result<(StoredEvent, VerifyingKey, T), E>>,
    forged: impl Fn(&StoredEvent, &T, String) -> E + Sync,
) -> Vec<Result<(StoredEvent, T), E>> {
    use rayon::prelude::*;
    use std::collections::HashMap;
    let parallel = items.len() >= PARALLEL_FROM;
    // 1. Everything but the ed25519 operations.
    type Prepared<'a> = Option<Result<(yipan_trust::batch::Pending<'a>, VerifyingKey), String>>;
    fn check<T, E>(r: &Result<(StoredEvent, VerifyingKey, T), E>) -> Prepared<'_> {
        let (ev, key, _) = r.as_ref().ok()?;
        Some(yipan_trust::batch::prepare(&ev.signed, &ev.envelope).map(|p| (p, *key)))
    }
    let prepared: Vec<Prepared<'_>> =
        if parallel { items.par_iter().map(check).collect() } else { items.iter().map(check).collect() };
    // 2. Each distinct signature check once (a batch head shared by many items).
    let mut unique: Vec<(std::borrow::Cow<'_, [u8]>, Signature, VerifyingKey)> = Vec::new();
    // (signed bytes, head form, signature, key) → index in `unique`.
    type Check<'a> = (&'a [u8], bool, [u8; 64], [u8; 32]);
    let mut slot: HashMap<Check<'_>, usize> = HashMap::new();
    let which: Vec<Option<usize>> = prepared
        .iter()
        .map(|p| {
            let (pending, key) = p.as_ref()?.as_ref().ok()?;
            if !pending.head {
                // A per-event signature is its own: nothing to share.
                unique.push((pending.message(), pending.signature, *key));
                return Some(unique.len() - 1);
            }
            let id = (pending.signed, pending.head, pending.signature.to_bytes(), key.to_bytes());
            Some(*slot.entry(id).or_insert_with(|| {
                unique.push((pending.message(), pending.signature, *key));
                unique.len() - 1
            }))
        })
        .collect();
    let verify_chunk = |chunk: &[(std::borrow::Cow<'_, [u8]>, Signature, VerifyingKey)]| -> Vec<bool> {
        if chunk.len() > 1 {
            let msgs: Vec<&[u8]> = chunk.iter().map(|c| c.0.as_ref()).collect();
            let sigs: Vec<Signature> = chunk.iter().map(|c| c.1).collect();
            let keys: Vec<VerifyingKey> = chunk.iter().map(|c| c.2).collect();
            if ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok() {
                return vec![true; chunk.len()];
            }
        }
        chunk.iter().map(|(m, s, k)| k.verify(m, s).is_ok()).collect()
    };
    let good: Vec<bool> = if unique.len() >= PARALLEL_FROM {
        unique.par_chunks(BATCH_VERIFY).flat_map_iter(verify_chunk).collect()
    } else {
        unique.chunks(BATCH_VERIFY).flat_map(verify_chunk).collect()
    };
    // 3. Each item's outcome.
    let outcome: Vec<Option<String>> = prepared
        .into_iter()
        .zip(&which)
        .map(|(p, w)| match p? {
            Err(problem) => Some(problem),
            Ok(_) if w.is_some_and(|w| good[w]) => None,
            Ok((pending, _)) if pending.head => Some("batch head signature does not verify".to_string()),
            Ok(_) => Some("signature does not verify".to_string()),
        })
        .collect();
    drop(unique);
    items
        .into_iter()
        .zip(outcome)
        .map(|(r, o)| {
            let (ev, _, extra) = r?;
            match o {
                Some(problem) => Err(forged(&ev, &extra, problem)),
                None => Ok((ev, extra)),
            }
        })
        .collect()
}
