//! Decoders of untrusted bytes never panic and never apply anything they
//! could not verify: arbitrary bytes (and mutations of real events) into
//! `StoredEvent::decode`, `segment::decode`, `Log::ingest_batch` and the JSON
//! draft parser. (A stable-toolchain stand-in for a fuzz target, run in CI.)

mod common;

use common::*;
use proptest::prelude::*;
use yipan_log::{segment, Ingested, StoredEvent};
use yipan_proto::Message;

fn real_event() -> Vec<u8> {
    let origin = mem("411522", 2);
    let a = origin.append_batch(vec![certificate(1)]).unwrap();
    origin.get(a[0].id).unwrap().unwrap().signed.encode_to_vec()
}

/// A roster author's signed event with an absurd `recorded_at` (the receiver
/// computes replication lag from it) is handled, not an arithmetic overflow:
/// it is not a valid instant, so the event is quarantined with that reason.
/// Found by the signed_event_ingest fuzz target's property review.
#[test]
fn absurd_recorded_at_does_not_overflow() {
    use ed25519_dalek::Signer;
    use yipan_proto::v1::{Envelope, SignedEvent};
    let mut signed = SignedEvent::decode(real_event().as_slice()).unwrap();
    let mut env = Envelope::decode(signed.envelope.as_slice()).unwrap();
    env.recorded_at = Some(yipan_proto::Timestamp { seconds: i64::MAX, nanos: 999_999_999 });
    signed.envelope = env.encode_to_vec();
    signed.batch = None; // re-signed in the per-event form, which stays valid
    signed.signature = key(2).sign(&signed.envelope).to_bytes().to_vec();
    let store = mem("610112", 1);
    store.roster_add(loc("411522"), key(2).verifying_key()).unwrap();
    let out = store.ingest(&signed.encode_to_vec()).unwrap();
    assert!(
        matches!(&out, Ingested::Quarantined { reason, .. } if reason.contains("recorded_at is missing or not a valid instant")),
        "{out:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic_and_are_quarantined(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = StoredEvent::decode(&bytes);
        let _ = segment::decode(&bytes);
        let store = mem("610112", 1);
        let out = store.ingest_batch(&[&bytes]).unwrap();
        prop_assert!(matches!(out[0], Ingested::Quarantined { .. }), "{:?}", out[0]);
        prop_assert_eq!(store.read_author(loc("411522"), 1, 10).unwrap().len(), 0);
    }

    #[test]
    fn mutated_real_events_are_never_applied(cuts in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4), truncate in any::<Option<prop::sample::Index>>()) {
        let good = real_event();
        let mut bad = good.clone();
        for (at, x) in &cuts {
            let i = at.index(bad.len());
            bad[i] ^= x | 1;
        }
        if let Some(t) = truncate {
            bad.truncate(t.index(bad.len()));
        }
        prop_assume!(bad != good);
        let store = mem("610112", 1);
        store.roster_add(loc("411522"), key(2).verifying_key()).unwrap();
        let out = store.ingest_batch(&[&bad]).unwrap();
        // Never applied: quarantined, or (a mutated author code) waiting for a key that does not exist.
        prop_assert!(matches!(out[0], Ingested::Quarantined { .. } | Ingested::Pending { .. }), "{:?}", out[0]);
        prop_assert!(store.is_empty());
        prop_assert!(store.verify().unwrap().ok());
    }

    #[test]
    fn arbitrary_json_never_panics(text in ".{0,300}") {
        let _ = yipan_core::json::draft_from_json(&text, Some(b"s"));
    }

    #[test]
    fn arbitrary_json_objects_are_judged_field_by_field(
        kind in prop::sample::select(vec!["ArrivalRegistered", "ServiceRendered", "CaseAssistAnswered", "StaffRosterUpdated", "bogus"]),
        origin in "[0-9]{0,7}",
        body in prop::sample::select(vec!["{}", "{\"service\":3}", "{\"service\":\"X\"}", "[]", "1", "{\"channel\":\"REGISTRATION_CHANNEL_EMPLOYER\"}"]),
    ) {
        let text = format!(r#"{{"kind":"{kind}","origin":"{origin}","residence":"610112","person":"00112233445566778899aabbccddeeff","body":{body}}}"#);
        match yipan_core::json::draft_from_json(&text, None) {
            Err(e) if kind == "bogus" => prop_assert!(e.to_string().starts_with("unknown event kind `bogus`"), "{}", e),
            Err(e) if body == "[]" || body == "1" => prop_assert_eq!(e.to_string(), "field `body`: must be a JSON object"),
            Err(e) => prop_assert!(e.to_string().starts_with("field `body."), "{}", e),
            Ok(d) => {
                prop_assert!(kind != "bogus" && body != "[]" && body != "1");
                let checked = yipan_core::validate_draft(loc("610112"), &d);
                if kind == "CaseAssistAnswered" {
                    // Checked before the relationship: an answer must name its request.
                    let e = checked.unwrap_err().to_string();
                    prop_assert!(e.starts_with("field `causation`"), "{}", e);
                } else if kind != "StaffRosterUpdated" && yipan_core::Locality::parse(&origin).is_err() {
                    let e = checked.unwrap_err().to_string();
                    prop_assert!(e.starts_with("field `origin`"), "{}", e);
                }
            }
        }
    }
}

/// A peer sending garbage cannot fill the disk: records keep at most
/// `KEEP_BYTES` of each message, at most `PER_AUTHOR` records per claimed
/// author are held, the oldest are evicted first, and what was evicted stays
/// counted and hashed — across a reopen.
#[test]
fn quarantine_is_bounded_and_evictions_are_summarised() {
    use sha2::Digest;
    use yipan_log::quarantine::{KEEP_BYTES, PER_AUTHOR};
    let dir = tempfile::tempdir().unwrap();
    let n = PER_AUTHOR + 40;
    let messages: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let mut m = vec![0xffu8; if i == n - 1 { 100_000 } else { 64 }];
            m[..8].copy_from_slice(&(i as u64).to_be_bytes());
            m
        })
        .collect();
    {
        let store = sled_at(dir.path(), "610112", 1);
        for chunk in messages.chunks(100) {
            let refs: Vec<&[u8]> = chunk.iter().map(|m| m.as_slice()).collect();
            store.ingest_batch(&refs).unwrap();
        }
        let (held, evicted) = store.quarantine_summary();
        assert_eq!(held, PER_AUTHOR);
        assert_eq!(evicted.count, 40);
        assert_eq!(evicted.bytes, 40 * 64);
        let mut chain = Vec::new();
        for m in &messages[..40] {
            let mut h = sha2::Sha256::new();
            h.update(&chain);
            h.update(sha2::Sha256::digest(m));
            chain = h.finalize().to_vec();
        }
        assert_eq!(evicted.digest, hex::encode(&chain), "the oldest 40 were evicted, in order");
        let q = store.quarantine().unwrap();
        assert_eq!(q.len(), PER_AUTHOR);
        let big = q.last().unwrap();
        assert_eq!(big.size, 100_000);
        assert_eq!(big.bytes_hex.len(), 2 * KEEP_BYTES, "only the head of a large message is kept");
        assert_eq!(big.sha256, hex::encode(sha2::Sha256::digest(&messages[n - 1])));
        // Paging walks the records in order.
        let first = store.quarantine_page(None, 10).unwrap();
        let second = store.quarantine_page(Some(first[9].id), 10).unwrap();
        assert_eq!(second[0].id, q[10].id);
    }
    let store = sled_at(dir.path(), "610112", 1);
    let (held, evicted) = store.quarantine_summary();
    assert_eq!((held, evicted.count), (PER_AUTHOR, 40), "bounds and summary survive a reopen");
}
