//! The event-id index lives on disk (`x` keys written in the same batch as
//! the segments); a store written before that gets its keys at its next open.

mod common;

use common::*;
use yipan_log::{Backend, Ingested};
use yipan_proto::Message;

#[test]
fn a_store_without_id_keys_gets_them_at_open_and_ids_still_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let origin = mem("411522", 2);
    let (own, received) = {
        let store = sled_at(dir.path(), "610112", 1);
        store.roster_add(loc("411522"), origin.public_key()).unwrap();
        let own: Vec<_> = (1..=70).map(|n| store.append(with_id(n)).unwrap()).collect();
        let theirs = origin.append(certificate(1)).unwrap();
        let bytes = origin.get(theirs.id).unwrap().unwrap().signed.encode_to_vec();
        assert!(matches!(store.ingest(&bytes).unwrap(), Ingested::Stored { .. }));
        // As an older release wrote it: no id keys, no marker.
        let b = store.backend();
        let mut ops: Vec<(Vec<u8>, Option<Vec<u8>>)> =
            b.range(b"x", b"y", usize::MAX).unwrap().into_iter().map(|(k, _)| (k, None)).collect();
        assert_eq!(ops.len(), 71, "an id key per event, own and received");
        ops.push((b"mids".to_vec(), None));
        b.commit(ops).unwrap();
        assert!(store.get(own[0].id).unwrap().is_none(), "ids resolve through the keys alone");
        (own, (theirs.id, bytes))
    };
    let store = sled_at(dir.path(), "610112", 1);
    assert_eq!(store.len(), 71);
    for a in &own {
        assert_eq!(store.get(a.id).unwrap().unwrap().seq(), a.seq);
    }
    // Idempotency of own appends and duplicate detection of received events hold after the migration.
    let again = store.append(with_id(4)).unwrap();
    assert!(again.duplicate && again.seq == own[3].seq);
    assert!(matches!(store.ingest(&received.1).unwrap(), Ingested::Duplicate { .. }));
    assert!(store.get(received.0).unwrap().is_some());
    assert!(store.verify().unwrap().ok());
}

use yipan_proto::v1::EventDraft;

/// Arrival `n` with a fixed event id (a client's retry sends the same draft).
fn with_id(n: u64) -> EventDraft {
    let id = uuid::Uuid::from_u128(0x0199_0000_0000_7000_8000_0000_0000_0000 | u128::from(n));
    EventDraft { event_id: id.as_bytes().to_vec(), ..arrival(n) }
}
