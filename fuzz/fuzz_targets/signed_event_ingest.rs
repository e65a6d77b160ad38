//! `Log::ingest_batch` (and so `StoredEvent::decode`) on untrusted bytes.
//!
//! Input: one mode byte, then events framed by `yipan_fuzz::frame`. Mode bit
//! 0 set: each event that decodes as a `SignedEvent` is re-signed with the
//! roster author's key first, so the checks after the signature (schema,
//! tiers, recipient, channel positions, forks, gaps) are reached too.
//!
//! Checks: one outcome per input; quarantine holds exactly the quarantined
//! ones; stored + duplicates + gaps + quarantined + pending (an author with
//! no known key) == inputs; everything stored
//! is one of the inputs, from the roster author, and verifies (signature,
//! tiers); as received (not re-signed) the whole store verifies; ingesting
//! the stored events again gives only duplicates.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yipan_fuzz::*;
use yipan_log::Ingested;
use yipan_proto::v1::SignedEvent;
use yipan_proto::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let resign = mode & 1 == 1;
    let framed = unframe(rest);
    let owned: Vec<Vec<u8>> = framed
        .iter()
        .map(|b| {
            if !resign {
                return b.to_vec();
            }
            match SignedEvent::decode(*b) {
                Ok(mut s) => {
                    use ed25519_dalek::Signer;
                    // Re-signed in the per-event form (still valid), so that mutated
                    // envelopes reach the checks after the signature.
                    s.batch = None;
                    s.signature = key(AUTHOR_KEY).sign(&s.envelope).to_bytes().to_vec();
                    s.encode_to_vec()
                }
                Err(_) => b.to_vec(),
            }
        })
        .collect();
    let items: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();

    let log = receiving_log();
    let out = log.ingest_batch(&items).expect("a memory log never fails to write");
    assert_eq!(out.len(), items.len());
    let (mut stored, mut dup, mut gap, mut quarantined, mut pending) = (0, 0, 0, 0, 0);
    for o in &out {
        match o {
            Ingested::Stored { .. } => stored += 1,
            Ingested::Duplicate { .. } => dup += 1,
            Ingested::Gap { .. } => gap += 1,
            Ingested::Quarantined { .. } => quarantined += 1,
            Ingested::Pending { author, .. } => {
                assert_ne!(author.to_string(), AUTHOR, "the roster author's key is known");
                pending += 1
            }
        }
    }
    assert_eq!(stored + dup + gap + quarantined + pending, items.len());
    assert_eq!(log.quarantine().expect("quarantine readable").len(), quarantined, "{out:?}");
    assert_eq!(log.len(), stored, "{out:?}");

    let author_key = key(AUTHOR_KEY).verifying_key();
    let held = log.read_all(None, usize::MAX).expect("stored events readable");
    assert_eq!(held.len(), stored);
    let mut again = Vec::new();
    for ev in &held {
        ev.verify_signature(&author_key).expect("stored event's signature verifies");
        ev.verify_tiers(false).expect("stored event's tiers match their digests");
        assert_eq!(ev.envelope.author, AUTHOR);
        let bytes = ev.signed.encode_to_vec();
        assert!(items.contains(&bytes.as_slice()), "stored bytes are not one of the inputs");
        again.push(bytes);
    }
    for o in &out {
        if let Ingested::Stored { id, .. } = o {
            assert!(log.get(*id).expect("readable").is_some(), "stored {id} not found by id");
        }
    }
    if !resign {
        let report = log.verify().expect("verify runs");
        assert!(report.ok(), "store does not verify after ingest: {report:?}");
    }
    let again: Vec<&[u8]> = again.iter().map(Vec::as_slice).collect();
    for o in log.ingest_batch(&again).expect("second ingest") {
        assert!(matches!(o, Ingested::Duplicate { .. }), "re-ingest of a stored event gave {o:?}");
    }
});
