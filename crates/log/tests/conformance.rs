//! The conformance suite: every `EventStore` implementation must pass it.
//! Each test runs against the in-memory store and the sled store on disk.

mod common;

use std::sync::Arc;

use common::*;
use uuid::Uuid;
use yipan_log::{Error, EventStore, Ingested};
use yipan_proto::Message;

/// Runs `$body` with `$store` bound to each implementation, as `610112`.
macro_rules! conformance {
    ($($name:ident($store:ident) $body:block)*) => {
        mod mem_store {
            use super::*;
            $(#[test] fn $name() { let $store: Arc<dyn EventStore> = Arc::new(mem("610112", 1)); $body })*
        }
        mod sled_store {
            use super::*;
            $(#[test] fn $name() {
                let dir = tempfile::tempdir().unwrap();
                let $store: Arc<dyn EventStore> = Arc::new(sled_at(dir.path(), "610112", 1));
                $body
            })*
        }
    };
}

/// An origin store (411522) that has authored `n` certificates addressed to 610112,
/// and knows 610112's key.
fn origin_with(n: u64) -> (yipan_log::MemStore, Vec<Vec<u8>>) {
    let origin = mem("411522", 2);
    let appended = origin.append_batch((0..n).map(certificate).collect()).unwrap();
    let bytes = appended.iter().map(|a| origin.get(a.id).unwrap().unwrap().signed.encode_to_vec()).collect();
    (origin, bytes)
}

conformance! {
    appends_are_gapless_chained_and_positioned(store) {
        let out = store.append_batch((0..5).map(arrival).collect()).unwrap();
        assert_eq!(out.iter().map(|a| a.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
        for (i, a) in out.iter().enumerate() {
            assert_eq!(a.recipients, vec![(loc("411522"), i as u64 + 1)], "default recipient is the origin");
            assert!(!a.duplicate);
        }
        let events = store.read_author(loc("610112"), 1, 100).unwrap();
        assert_eq!(events.len(), 5);
        assert_eq!(events[0].envelope.prev_hash, vec![0u8; 32]);
        for w in events.windows(2) {
            assert_eq!(w[1].envelope.prev_hash, w[0].hash.to_vec());
        }
        assert!(store.verify().unwrap().ok());
    }

    idempotent_append(store) {
        let id = Uuid::now_v7();
        let first = store.append_batch(vec![with_id(arrival(1), id)]).unwrap().remove(0);
        let again = store.append_batch(vec![with_id(arrival(1), id)]).unwrap().remove(0);
        assert!(again.duplicate);
        assert_eq!((again.seq, again.hash), (first.seq, first.hash));
        assert_eq!(store.read_author(loc("610112"), 1, 100).unwrap().len(), 1, "one event stored");
        let err = store.append_batch(vec![with_id(arrival(2), id)]).unwrap_err();
        assert!(matches!(err, Error::IdConflict { .. }), "{err}");
        assert_eq!(store.read_author(loc("610112"), 1, 100).unwrap().len(), 1);
        // The same id twice inside one batch is one event.
        let id2 = Uuid::now_v7();
        let out = store.append_batch(vec![with_id(arrival(3), id2), with_id(arrival(3), id2)]).unwrap();
        assert!(!out[0].duplicate && out[1].duplicate && out[0].seq == out[1].seq);
    }

    rejected_batch_writes_nothing(store) {
        store.append_batch(vec![arrival(1)]).unwrap();
        let mut bad = arrival(2);
        bad.origin = "61011".into();
        let err = store.append_batch(vec![arrival(3), bad, arrival(4)]).unwrap_err();
        assert_eq!(err.to_string(), "event 1 of the batch: field `origin`: `61011` is not a 6-digit (county) or 9-digit (township) division code");
        let id = Uuid::now_v7();
        store.append_batch(vec![with_id(arrival(5), id)]).unwrap();
        let err = store.append_batch(vec![arrival(6), with_id(arrival(7), id)]).unwrap_err();
        assert!(matches!(err, Error::IdConflict { .. }));
        let events = store.read_author(loc("610112"), 1, 100).unwrap();
        assert_eq!(events.len(), 2, "only the two good single appends are stored");
        // The next append continues the chain without a hole.
        assert_eq!(store.append_batch(vec![arrival(8)]).unwrap()[0].seq, 3);
        assert!(store.verify().unwrap().ok());
    }

    reads_by_id_person_and_channel(store) {
        let out = store.append_batch(vec![arrival(1), arrival(2), departure(1)]).unwrap();
        let ev = store.get(out[1].id).unwrap().unwrap();
        assert_eq!(ev.seq(), 2);
        assert!(store.get(Uuid::now_v7()).unwrap().is_none());
        let p1 = store.read_person(person(1)).unwrap();
        assert_eq!(p1.iter().map(|e| e.seq()).collect::<Vec<_>>(), vec![1, 3]);
        let ch = store.read_channel(loc("610112"), loc("411522"), 2, 10).unwrap();
        assert_eq!(ch.iter().map(|e| e.seq()).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(store.read_author(loc("610112"), 2, 1).unwrap()[0].seq(), 2);
    }

    ingest_verifies_orders_and_quarantines(store) {
        let (origin, bytes) = origin_with(4);
        // Unknown author first: not stored, not quarantined, to be delivered again once its key is known.
        let r = store.ingest_batch(&[&bytes[0]]).unwrap();
        assert!(matches!(&r[0], Ingested::Pending { author, reason } if *author == loc("411522") && reason.contains("unknown author 411522")), "{r:?}");
        assert!(store.quarantine().unwrap().is_empty());
        store.roster_add(loc("411522"), origin.public_key()).unwrap();
        // In order: stored; again: duplicate; skipping one: gap.
        assert!(matches!(store.ingest_batch(&[&bytes[0]]).unwrap()[0], Ingested::Stored { channel_seq: 1, .. }));
        assert!(matches!(store.ingest_batch(&[&bytes[0]]).unwrap()[0], Ingested::Duplicate { .. }));
        assert_eq!(store.ingest_batch(&[&bytes[2]]).unwrap()[0], Ingested::Gap { author: loc("411522"), expected: 2, got: 3 });
        // Out of order inside one batch still applies.
        let r = store.ingest_batch(&[&bytes[3], &bytes[1], &bytes[2]]).unwrap();
        assert!(r.iter().all(|o| matches!(o, Ingested::Stored { .. })), "{r:?}");
        assert_eq!(store.read_channel(loc("411522"), loc("610112"), 1, 10).unwrap().len(), 4);
        assert!(store.verify().unwrap().ok(), "{:?}", store.verify().unwrap().faults);
        assert!(store.quarantine().unwrap().is_empty(), "a pending event is never quarantined");
    }

    ingest_rejects_bad_input_with_reasons(store) {
        let (origin, bytes) = origin_with(2);
        store.roster_add(loc("411522"), origin.public_key()).unwrap();
        let mut forged = yipan_proto::v1::SignedEvent::decode(bytes[0].as_slice()).unwrap();
        signature_mut(&mut forged)[0] ^= 1;
        let mut altered = yipan_proto::v1::SignedEvent::decode(bytes[0].as_slice()).unwrap();
        let last = altered.envelope.len() - 1;
        altered.envelope[last] ^= 1;
        // Signed by an impostor key claiming to be 411522.
        let impostor = mem("411522", 9);
        let fake = impostor.append_batch(vec![certificate(1)]).unwrap();
        let fake = impostor.get(fake[0].id).unwrap().unwrap().signed.encode_to_vec();
        // Addressed elsewhere: a 411522 event for a person living in 610113.
        let mut other = certificate(1);
        other.residence = "610113".into();
        let other = origin.append_batch(vec![other]).unwrap();
        let other = origin.get(other[0].id).unwrap().unwrap().signed.encode_to_vec();
        // The batch proof of the first event, bent every way: a path hash
        // flipped, a hash dropped or added, the second event's proof under
        // the first envelope, a root that is not the signed one, a head of
        // another author or range, a per-event signature beside the proof.
        let first = yipan_proto::v1::SignedEvent::decode(bytes[0].as_slice()).unwrap();
        let second = yipan_proto::v1::SignedEvent::decode(bytes[1].as_slice()).unwrap();
        let proof = first.batch.clone().expect("written in the batch form");
        let with = |f: &dyn Fn(&mut yipan_proto::v1::BatchProof)| {
            let mut s = first.clone();
            f(s.batch.as_mut().unwrap());
            s.encode_to_vec()
        };
        let rehead = |f: &dyn Fn(&mut yipan_proto::v1::BatchHead)| {
            with(&|p| {
                let mut h = yipan_proto::v1::BatchHead::decode(p.head.as_slice()).unwrap();
                f(&mut h);
                p.head = h.encode_to_vec();
            })
        };
        let path_flipped = with(&|p| p.path[0][3] ^= 1);
        let path_short = with(&|p| { p.path.pop(); });
        let path_long = with(&|p| p.path.push(vec![0; 32]));
        let path_bad_hash = with(&|p| p.path[0].push(0));
        let other_leaf = {
            let mut s = first.clone();
            s.batch = second.batch.clone();
            s.encode_to_vec()
        };
        let root_forged = rehead(&|h| h.root[0] ^= 1);
        // A consistent forged tree: an altered envelope as the only leaf of a
        // head whose root is its hash, under the genuine head's signature.
        let tree_forged = {
            let mut s = first.clone();
            let last = s.envelope.len() - 1;
            s.envelope[last] ^= 1;
            let p = s.batch.as_mut().unwrap();
            let mut h = yipan_proto::v1::BatchHead::decode(p.head.as_slice()).unwrap();
            (h.last_seq, h.root) = (1, yipan_trust::batch::leaf_hash(&s.envelope).to_vec());
            p.head = h.encode_to_vec();
            p.path.clear();
            s.encode_to_vec()
        };
        let head_other_author = rehead(&|h| h.author = "610113".into());
        let head_other_range = rehead(&|h| h.first_seq += 1);
        let both = {
            let mut s = first.clone();
            s.signature = vec![0; 64];
            s.encode_to_vec()
        };
        assert_eq!(proof.path.len(), 1, "two events: one sibling hash");
        // Own event replayed back to us.
        let own = store.append_batch(vec![arrival(1)]).unwrap();
        let own = store.get(own[0].id).unwrap().unwrap().signed.encode_to_vec();
        let cases: Vec<(Vec<u8>, &str, &str)> = vec![
            (b"not protobuf at all \xff\xff".to_vec(), "malformed", "event.malformed"),
            (forged.encode_to_vec(), "forged or altered", "event.forged"),
            (altered.encode_to_vec(), "forged or altered", "event.forged"),
            (fake, "forged or altered", "event.forged"),
            (path_flipped, "does not lead to the signed batch root", "event.forged"),
            (path_short, "inclusion proof is too short", "event.forged"),
            (path_long, "inclusion proof is too long", "event.forged"),
            (path_bad_hash, "hash of 33 bytes", "event.forged"),
            (other_leaf, "does not lead to the signed batch root", "event.forged"),
            (root_forged, "does not lead to the signed batch root", "event.forged"),
            (tree_forged, "batch head signature does not verify", "event.forged"),
            (head_other_author, "batch head is 610113's", "event.forged"),
            (head_other_range, "covers #2..#2, not #1", "event.forged"),
            (both, "both a per-event signature and a batch proof", "event.forged"),
            (other, "wrong recipient", "event.wrong_recipient"),
            (own, "names this node as its author", "event.author"),
        ];
        for (b, want, want_code) in &cases {
            let r = store.ingest_batch(&[b]).unwrap();
            match &r[0] {
                Ingested::Quarantined { code, reason } => {
                    assert!(reason.contains(want), "want {want}, got {reason}");
                    assert_eq!(code.as_str(), *want_code, "{reason}");
                }
                other => panic!("want quarantine for {want}, got {other:?}"),
            }
        }
        let codes: Vec<String> = store.quarantine().unwrap().into_iter().map(|q| q.code).collect();
        assert_eq!(codes, cases.iter().map(|c| c.2.to_string()).collect::<Vec<_>>(), "codes are kept with the entries");
        assert_eq!(store.read_author(loc("411522"), 1, 10).unwrap().len(), 0, "nothing failed was applied");
        let q = store.quarantine().unwrap();
        assert_eq!(q.len(), cases.len());
        assert_eq!(hex::decode(&q[0].bytes_hex).unwrap(), cases[0].0, "bytes kept as received");
        assert!(store.verify().unwrap().ok());
    }

    batch_ingest_verifies_in_batches_and_names_the_forged(store) {
        let (origin, bytes) = origin_with(150);
        store.roster_add(loc("411522"), origin.public_key()).unwrap();
        let mut items = bytes.clone();
        // Position 70 is altered in flight; everything after it waits behind the gap.
        let mut bad = yipan_proto::v1::SignedEvent::decode(items[69].as_slice()).unwrap();
        signature_mut(&mut bad)[10] ^= 0x08;
        items[69] = bad.encode_to_vec();
        let refs: Vec<&[u8]> = items.iter().map(|b| b.as_slice()).collect();
        let out = store.ingest_batch(&refs).unwrap();
        assert!(out[..69].iter().all(|o| matches!(o, Ingested::Stored { .. })));
        assert!(matches!(&out[69], Ingested::Quarantined { reason, .. } if reason.starts_with("forged or altered")), "{:?}", out[69]);
        assert!(out[70..].iter().all(|o| matches!(o, Ingested::Gap { expected: 70, .. })), "{:?}", &out[70]);
        // The genuine event repairs the gap; the rest then apply in one batch.
        let rest: Vec<&[u8]> = bytes[69..].iter().map(|b| b.as_slice()).collect();
        let out = store.ingest_batch(&rest).unwrap();
        assert!(out.iter().all(|o| matches!(o, Ingested::Stored { .. })), "{out:?}");
        assert_eq!(store.read_channel(loc("411522"), loc("610112"), 1, 1000).unwrap().len(), 150);
        assert!(store.verify().unwrap().ok());
    }

    ingest_detects_forks(store) {
        let (origin, bytes) = origin_with(1);
        store.roster_add(loc("411522"), origin.public_key()).unwrap();
        store.ingest_batch(&[&bytes[0]]).unwrap();
        // A second store with the same key signs a different event at channel position 1.
        let twin = mem("411522", 2);
        let t = twin.append_batch(vec![certificate(7)]).unwrap();
        let t = twin.get(t[0].id).unwrap().unwrap().signed.encode_to_vec();
        let r = store.ingest_batch(&[&t]).unwrap();
        assert!(matches!(&r[0], Ingested::Quarantined { code, reason } if code.is_fork() && reason.starts_with("fork")), "{r:?}");
    }

    roster_refuses_a_changed_key(store) {
        let k1 = key(5).verifying_key();
        assert!(store.roster_add(loc("411522"), k1).unwrap());
        assert!(!store.roster_add(loc("411522"), k1).unwrap());
        assert!(matches!(store.roster_add(loc("411522"), key(6).verifying_key()), Err(Error::RosterConflict { .. })));
        assert_eq!(store.roster().len(), 2);
    }

    concurrent_appends_stay_gapless(store) {
                let threads: Vec<_> = (0..8).map(|t| {
            let s = store.clone();
            std::thread::spawn(move || (0..50).map(|i| s.append_batch(vec![arrival(t * 100 + i)]).unwrap()[0].seq).collect::<Vec<_>>())
        }).collect();
        let mut seqs: Vec<u64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=400).collect::<Vec<_>>());
        assert!(store.verify().unwrap().ok());
    }

    invalid_drafts_name_the_field(store) {
        let mut d = certificate(1);
        let err = store.append_batch(vec![d.clone()]).unwrap_err();
        assert_eq!(err.to_string(), "field `author`: `610112` may not author this CertificateIssued event: only the origin `411522` may");
        d = arrival(1);
        d.health = Some(Default::default());
        d.body = Some(yipan_proto::v1::EventBody { kind: Some(yipan_proto::v1::event_body::Kind::CertificateVerified(Default::default())) });
        let err = store.append_batch(vec![d]).unwrap_err();
        assert!(err.to_string().starts_with("field `health`: a CertificateVerified event may not carry health data"), "{err}");
        assert!(store.read_author(loc("610112"), 1, 10).unwrap().is_empty());
    }
}
