//! A stored event decoded for reading, and the hash that chains events.

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use prost::Message;
use sha2::{Digest, Sha256};
use uuid::Uuid;
use yipan_core::{EventKind, Locality};
use yipan_proto::v1::{Envelope, SignedEvent, Tier};

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

    /// Checks the signature against `key`.
    pub fn verify_signature(&self, key: &VerifyingKey) -> Result<(), String> {
        let sig = Signature::from_slice(&self.signed.signature).map_err(|_| "signature is not 64 bytes".to_string())?;
        key.verify(&self.signed.envelope, &sig).map_err(|_| "signature does not verify".to_string())
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

/// Verifies the signature of every `Ok` item against its key. Many items are
/// checked in ed25519 batches of [`BATCH_VERIFY`] on all cores; a batch that
/// fails is re-checked one by one so the bad events are named. A bad
/// signature becomes the error `forged(event, problem)`; `Err` items pass
/// through untouched.
pub fn verify_signatures<T: Send, E: Send>(
    items: Vec<Result<(StoredEvent, VerifyingKey, T), E>>,
    forged: impl Fn(&StoredEvent, String) -> E + Sync,
) -> Vec<Result<(StoredEvent, T), E>> {
    use rayon::prelude::*;
    let one = |r: Result<(StoredEvent, VerifyingKey, T), E>, batch_ok: bool| {
        let (ev, key, extra) = r?;
        if !batch_ok {
            if let Err(p) = ev.verify_signature(&key) {
                return Err(forged(&ev, p));
            }
        }
        Ok((ev, extra))
    };
    if items.len() < PARALLEL_FROM {
        return items.into_iter().map(|r| one(r, false)).collect();
    }
    items
        .into_par_iter()
        .chunks(BATCH_VERIFY)
        .flat_map_iter(|chunk| {
            let ok: Vec<&(StoredEvent, VerifyingKey, T)> = chunk.iter().filter_map(|r| r.as_ref().ok()).collect();
            let batch_ok = ok.len() > 1 && {
                let msgs: Vec<&[u8]> = ok.iter().map(|(e, _, _)| e.signed.envelope.as_slice()).collect();
                let sigs: Option<Vec<Signature>> =
                    ok.iter().map(|(e, _, _)| Signature::from_slice(&e.signed.signature).ok()).collect();
                let keys: Vec<VerifyingKey> = ok.iter().map(|(_, k, _)| *k).collect();
                sigs.is_some_and(|sigs| ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok())
            };
            chunk.into_iter().map(move |r| one(r, batch_ok)).collect::<Vec<_>>()
        })
        .collect()
}
