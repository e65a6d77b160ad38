//! How an author's signature covers an event, in both forms
//! (`proto/yipan/v1/envelope.proto`, docs/design.md "Batch signatures"):
//!
//! - **per-event** (every event written before batch signatures): an ed25519
//!   signature over the envelope bytes;
//! - **batch**: one ed25519 signature per group commit over a [`BatchHead`]
//!   naming the author, the first and last sequence numbers and the root of
//!   an RFC 6962 Merkle tree over the envelopes in sequence order; each event
//!   carries the head, its signature and its audit path, so any holder checks
//!   one event alone: log2(batch) hashes and one signature, which a verifier
//!   checks once per head and remembers ([`HeadCache`]).
//!
//! Sans-IO: the log, the audit, the trust state (key handovers) and the
//! node all check signatures here.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use prost::Message;
use sha2::{Digest, Sha256};
use yipan_proto::v1::{BatchHead, BatchProof, Envelope, SignedEvent};

/// What a batch head signature covers before the encoded head. The leading
/// zero byte can never begin a protobuf message (field number 0 is
/// invalid), so no head signature passes as a per-event signature over some
/// envelope, and no per-event signature as a head signature.
pub const HEAD_CONTEXT: &[u8] = b"\0yipan batch head v2\0";

/// Leaves in one signed tree at most: a group commit larger than this is
/// signed as several heads, which keeps every proof at most
/// log2(MAX_LEAVES) = 8 hashes (256 bytes) long.
pub const MAX_LEAVES: usize = 256;

/// Largest tree a verifier accepts (a bound on work, not a format limit a
/// writer comes near: [`MAX_LEAVES`] is what this release writes).
pub const MAX_VERIFIED_LEAVES: u64 = 1 << 20;

/// RFC 6962 leaf hash of an envelope: SHA-256(0x00 || envelope bytes).
pub fn leaf_hash(envelope: &[u8]) -> [u8; 32] {
    Sha256::new().chain_update([0u8]).chain_update(envelope).finalize().into()
}

/// RFC 6962 interior node hash: SHA-256(0x01 || left || right).
pub fn node_hash(left: &[u8], right: &[u8]) -> [u8; 32] {
    Sha256::new().chain_update([1u8]).chain_update(left).chain_update(right).finalize().into()
}

/// The tree hash of `leaves` (at least one) and every leaf's audit path,
/// sibling first (RFC 9162 section 2.1.1 and 2.1.3.1).
pub fn tree(leaves: &[[u8; 32]]) -> ([u8; 32], Vec<Vec<[u8; 32]>>) {
    fn build(leaves: &[[u8; 32]], paths: &mut [Vec<[u8; 32]>]) -> [u8; 32] {
        if leaves.len() == 1 {
            return leaves[0];
        }
        // The largest power of two smaller than the number of leaves.
        let k = 1usize << (usize::BITS - 1 - (leaves.len() - 1).leading_zeros());
        let (lp, rp) = paths.split_at_mut(k);
        let left = build(&leaves[..k], lp);
        let right = build(&leaves[k..], rp);
        lp.iter_mut().for_each(|p| p.push(right));
        rp.iter_mut().for_each(|p| p.push(left));
        node_hash(&left, &right)
    }
    assert!(!leaves.is_empty(), "a tree needs a leaf");
    let mut paths = vec![Vec::new(); leaves.len()];
    let root = build(leaves, &mut paths);
    (root, paths)
}

/// The root that the audit path `path` of leaf `index` in a tree of `size`
/// leaves leads to (RFC 9162 section 2.1.3.2), or why the path cannot be one.
pub fn root_from_path(index: u64, size: u64, leaf: [u8; 32], path: &[Vec<u8>]) -> Result<[u8; 32], String> {
    if index >= size {
        return Err(format!("leaf {index} is outside a tree of {size}"));
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = leaf;
    for p in path {
        if snode == 0 {
            return Err(format!("inclusion proof is too long ({} hashes for leaf {index} of {size})", path.len()));
        }
        if p.len() != 32 {
            return Err(format!("inclusion proof holds a hash of {} bytes, not 32", p.len()));
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(format!("inclusion proof is too short ({} hashes for leaf {index} of {size})", path.len()));
    }
    Ok(r)
}

/// Signs the envelopes of `author`'s consecutive sequence numbers from
/// `first_seq` as one batch: one proof per envelope, in order.
pub fn sign(key: &SigningKey, author: &str, first_seq: u64, envelopes: &[&[u8]]) -> Vec<BatchProof> {
    let leaves: Vec<[u8; 32]> = envelopes.iter().map(|e| leaf_hash(e)).collect();
    let (root, paths) = tree(&leaves);
    let head = BatchHead {
        author: author.to_string(),
        first_seq,
        last_seq: first_seq + envelopes.len() as u64 - 1,
        root: root.to_vec(),
    }
    .encode_to_vec();
    let signature = key.sign(&signed_head(&head)).to_bytes().to_vec();
    paths
        .into_iter()
        .map(|p| BatchProof {
            head: head.clone(),
            signature: signature.clone(),
            path: p.into_iter().map(|h| h.to_vec()).collect(),
        })
        .collect()
}

/// The bytes a head signature covers.
pub fn signed_head(head: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(HEAD_CONTEXT.len() + head.len());
    m.extend_from_slice(HEAD_CONTEXT);
    m.extend_from_slice(head);
    m
}

/// What remains to check of an event's signature once its structure and
/// inclusion proof are checked: one ed25519 signature over `message`.
#[derive(Debug, Clone, Copy)]
pub struct Pending<'a> {
    /// The per-event envelope bytes, or the encoded batch head.
    pub signed: &'a [u8],
    /// The signature.
    pub signature: Signature,
    /// Whether `signed` is a batch head (checked with [`HEAD_CONTEXT`] before it).
    pub head: bool,
}

impl<'a> Pending<'a> {
    /// The exact bytes the signature covers.
    pub fn message(&self) -> std::borrow::Cow<'a, [u8]> {
        if self.head {
            std::borrow::Cow::Owned(signed_head(self.signed))
        } else {
            std::borrow::Cow::Borrowed(self.signed)
        }
    }

    /// Checks the signature with `key`.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), String> {
        key.verify(&self.message(), &self.signature).map_err(|_| {
            if self.head {
                "batch head signature does not verify".to_string()
            } else {
                "signature does not verify".to_string()
            }
        })
    }

    /// Identity of this signature check with `key`, for [`HeadCache`].
    fn id(&self, key: &VerifyingKey) -> [u8; 32] {
        Sha256::new()
            .chain_update(key.as_bytes())
            .chain_update(self.signature.to_bytes())
            .chain_update(self.signed)
            .finalize()
            .into()
    }
}

/// Checks everything of `signed`'s signature but the ed25519 operation: the
/// form, and in the batch form the head (canonical, this author, a range
/// holding this sequence) and the inclusion proof against the signed root.
/// `envelope` is `signed.envelope` decoded.
pub fn prepare<'a>(signed: &'a SignedEvent, envelope: &Envelope) -> Result<Pending<'a>, String> {
    let Some(proof) = &signed.batch else {
        let signature =
            Signature::from_slice(&signed.signature).map_err(|_| "signature is not 64 bytes".to_string())?;
        return Ok(Pending { signed: &signed.envelope, signature, head: false });
    };
    if !signed.signature.is_empty() {
        return Err("holds both a per-event signature and a batch proof".into());
    }
    let head = BatchHead::decode(proof.head.as_slice()).map_err(|e| format!("batch head does not decode ({e})"))?;
    if head.encode_to_vec() != proof.head {
        return Err("batch head is not in canonical form (altered or padded)".into());
    }
    if head.author != envelope.author {
        return Err(format!("batch head is {}'s, not the author's", head.author));
    }
    let seq = envelope.author_seq;
    if head.first_seq == 0 || head.last_seq < head.first_seq || !(head.first_seq..=head.last_seq).contains(&seq) {
        return Err(format!("batch head covers #{}..#{}, not #{seq}", head.first_seq, head.last_seq));
    }
    let size = head.last_seq - head.first_seq + 1;
    if size > MAX_VERIFIED_LEAVES {
        return Err(format!("batch head covers {size} events, more than {MAX_VERIFIED_LEAVES}"));
    }
    let root = root_from_path(seq - head.first_seq, size, leaf_hash(&signed.envelope), &proof.path)?;
    if head.root.as_slice() != root {
        return Err("inclusion proof does not lead to the signed batch root".into());
    }
    let signature =
        Signature::from_slice(&proof.signature).map_err(|_| "batch head signature is not 64 bytes".to_string())?;
    Ok(Pending { signed: &proof.head, signature, head: true })
}

/// Checks `signed`'s signature with `key`, in either form.
pub fn verify(signed: &SignedEvent, envelope: &Envelope, key: &VerifyingKey) -> Result<(), String> {
    prepare(signed, envelope)?.verify(key)
}

/// Batch heads whose signature a verifier has checked: the events of one
/// group commit cost one ed25519 verification, not one each. Bounded: it
/// forgets everything when full (heads arrive in runs, so recent ones matter).
#[derive(Debug, Default)]
pub struct HeadCache {
    verified: std::collections::HashSet<[u8; 32]>,
}

impl HeadCache {
    /// Heads remembered at most.
    pub const CAPACITY: usize = 4096;

    /// Checks `signed`'s signature with `key`, once per batch head.
    pub fn verify(&mut self, signed: &SignedEvent, envelope: &Envelope, key: &VerifyingKey) -> Result<(), String> {
        let pending = prepare(signed, envelope)?;
        if !pending.head {
            return pending.verify(key);
        }
        let id = pending.id(key);
        if self.verified.contains(&id) {
            return Ok(());
        }
        pending.verify(key)?;
        self.remember(id);
        Ok(())
    }

    fn remember(&mut self, id: [u8; 32]) {
        if self.verified.len() >= Self::CAPACITY {
            self.verified.clear();
        }
        self.verified.insert(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6962's definition, written the direct (recursive) way.
    fn mth(leaves: &[[u8; 32]]) -> [u8; 32] {
        if leaves.len() == 1 {
            return leaves[0];
        }
        let mut k = 1;
        while k * 2 < leaves.len() {
            k *= 2;
        }
        node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
    }

    fn leaves(n: usize) -> Vec<[u8; 32]> {
        (0..n).map(|i| leaf_hash(format!("envelope {i}").as_bytes())).collect()
    }

    #[test]
    fn every_path_of_every_tree_size_leads_to_the_root_and_no_other_does() {
        for n in 1..=70usize {
            let l = leaves(n);
            let (root, paths) = tree(&l);
            assert_eq!(root, mth(&l), "size {n}");
            for (i, p) in paths.iter().enumerate() {
                let path: Vec<Vec<u8>> = p.iter().map(|h| h.to_vec()).collect();
                assert_eq!(root_from_path(i as u64, n as u64, l[i], &path), Ok(root), "leaf {i} of {n}");
                assert!(path.len() <= 7);
                // Another leaf's hash, another index, a shorter or longer path: never the root.
                let other = l[(i + 1) % n];
                if n > 1 {
                    assert_ne!(root_from_path(i as u64, n as u64, other, &path), Ok(root));
                    let j = (i + 1) % n;
                    assert_ne!(root_from_path(j as u64, n as u64, l[i], &path), Ok(root), "leaf {i} as {j} of {n}");
                }
                if !path.is_empty() {
                    assert!(root_from_path(i as u64, n as u64, l[i], &path[..path.len() - 1]).is_err());
                }
                let mut longer = path.clone();
                longer.push(vec![0; 32]);
                assert!(root_from_path(i as u64, n as u64, l[i], &longer).is_err());
            }
        }
    }

    #[test]
    fn the_known_answer_of_rfc_6962_for_one_and_two_leaves() {
        // SHA-256 of the empty-string leaf (0x00 prefix only), from RFC 6962's test vectors.
        assert_eq!(hex::encode(leaf_hash(b"")), "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
        let a = leaf_hash(b"");
        let b = leaf_hash(&[0u8]);
        assert_eq!(tree(&[a, b]).0, node_hash(&a, &b));
    }

    #[test]
    fn a_head_signature_is_no_event_signature() {
        assert!(Envelope::decode(signed_head(b"anything").as_slice()).is_err());
    }
}

#[cfg(test)]
mod vectors {
    use super::*;

    /// The test vectors of docs/formats.md "Event signatures", so the page cannot drift.
    #[test]
    fn formats_md_test_vectors() {
        let envelopes: Vec<Vec<u8>> = (0..5).map(|i| format!("envelope {i}").into_bytes()).collect();
        let refs: Vec<&[u8]> = envelopes.iter().map(|e| e.as_slice()).collect();
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let proofs = sign(&key, "610112", 41, &refs);
        let p = &proofs[2];
        let head = BatchHead::decode(p.head.as_slice()).unwrap();
        let got = [
            hex::encode(leaf_hash(&envelopes[2])),
            hex::encode(&head.root),
            p.path.iter().map(hex::encode).collect::<Vec<_>>().join(" "),
            hex::encode(&p.head),
            hex::encode(&p.signature),
            hex::encode(key.verifying_key().as_bytes()),
        ];
        if std::env::var_os("PRINT_VECTORS").is_some() {
            for g in &got {
                println!("{g}");
            }
        }
        let env = Envelope { author: "610112".into(), author_seq: 43, ..Default::default() };
        let signed = SignedEvent { envelope: envelopes[2].clone(), batch: Some(p.clone()), ..Default::default() };
        verify(&signed, &env, &key.verifying_key()).unwrap();
        let doc = include_str!("../../../docs/formats.md");
        for g in got.iter().flat_map(|g| g.split(' ')) {
            assert!(doc.contains(g), "docs/formats.md lost {g}");
        }
    }
}
