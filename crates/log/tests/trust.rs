//! Trust in the log: certified keys, a key handover across a restart,
//! revocation bounding a stolen key, handovers learned early or late.

mod common;

use chrono::{TimeDelta, Utc};
use common::*;
use ed25519_dalek::SigningKey;
use prost::Message;
use yipan_log::{Error, Ingested, Log, MemBackend, MemStore, SledBackend, SledStore};
use yipan_trust::statement::{self, LocalityCert};

const ROOT: u8 = 1;
const HENAN: u8 = 2;
const SHAANXI: u8 = 3;

/// The records every node learns from the trust stream: the two authorities
/// and certificates of 411522 (key 10) and 610112 (key 20).
fn world() -> Vec<Vec<u8>> {
    let now = Utc::now();
    let year = TimeDelta::days(365);
    let mut out = Vec::new();
    for (p, k, serial) in [(41u8, HENAN, 41u64), (61, SHAANXI, 61)] {
        let c = statement::authority_certificate(p, "卫健委", &key(k).verifying_key(), serial, now - year, now + year);
        out.push(statement::record_of_statement(statement::sign(&key(ROOT), c, now)));
    }
    out.push(locality(&cert("411522", 10, 4100, 0)));
    out.push(locality(&cert("610112", 20, 6100, 0)));
    out
}

fn cert(code: &str, seed: u8, serial: u64, replaces: u64) -> LocalityCert {
    LocalityCert {
        locality: loc(code),
        name: "县".into(),
        key: key(seed).verifying_key(),
        serial,
        valid_from: Utc::now() - TimeDelta::days(1),
        valid_until: Utc::now() + TimeDelta::days(365),
        replaces_serial: replaces,
        first_seq: 0,
    }
}

fn signed(c: &LocalityCert) -> Vec<u8> {
    let by = if c.locality.province() == 41 { HENAN } else { SHAANXI };
    statement::sign(&key(by), statement::locality_certificate(c), Utc::now())
}

fn locality(c: &LocalityCert) -> Vec<u8> {
    statement::record_of_statement(signed(c))
}

fn learn<B: yipan_log::Backend>(log: &Log<B>, records: &[Vec<u8>]) {
    for r in records {
        log.apply_trust_record(r, Utc::now()).unwrap().unwrap();
    }
}

fn node(code: &str, seed: u8) -> MemStore {
    let s =
        MemStore::open_with_anchor(MemBackend::new(), loc(code), key(seed), Some(key(ROOT).verifying_key())).unwrap();
    learn(&s, &world());
    s
}

fn sled_node(dir: &std::path::Path, seed: u8) -> Result<SledStore, Error> {
    SledStore::open_with_anchor(
        SledBackend::open(dir).unwrap(),
        loc("411522"),
        SigningKey::from_bytes(&[seed; 32]),
        Some(key(ROOT).verifying_key()),
    )
}

fn bytes_of<B: yipan_log::Backend>(log: &Log<B>, from: u64) -> Vec<Vec<u8>> {
    log.read_author(log.locality(), from, usize::MAX).unwrap().into_iter().map(|e| e.signed.encode_to_vec()).collect()
}

#[test]
fn a_key_handover_across_a_restart_verifies_before_across_and_after_forever() {
    let dir = tempfile::tempdir().unwrap();
    let origin = sled_node(dir.path(), 10).unwrap();
    learn(&origin, &world());
    origin.append_batch((1..=3).map(certificate).collect()).unwrap();
    let next = cert("411522", 11, 4101, 4100);
    // The province authority certifies the new key; the node hands over.
    let a = origin.rotate_key(key(11), signed(&next)).unwrap();
    assert_eq!(a.seq, 4);
    assert_eq!(a.recipients, vec![(loc("610112"), 4)], "the handover reaches every channel");
    assert_eq!(origin.public_key(), key(11).verifying_key());
    origin.append(certificate(4)).unwrap();
    drop(origin);

    // Restart: the old key is refused, the new one signs #6 on.
    let e = sled_node(dir.path(), 10).err().expect("old key refused");
    assert!(e.to_string().contains("not the key certified for its next event #6"), "{e}");
    let origin = sled_node(dir.path(), 11).unwrap();
    origin.append_batch((5..=6).map(certificate).collect()).unwrap();
    assert!(origin.verify().unwrap().ok(), "{:?}", origin.verify().unwrap().faults);
    let all = bytes_of(&origin, 1);
    assert_eq!(all.len(), 7);

    // A recipient taking the events one batch at a time: before, across, after.
    let residence = node("610112", 20);
    for chunk in [&all[..3], &all[3..5], &all[5..]] {
        let refs: Vec<&[u8]> = chunk.iter().map(|b| b.as_slice()).collect();
        let out = residence.ingest_batch(&refs).unwrap();
        assert!(out.iter().all(|o| matches!(o, Ingested::Stored { .. })), "{out:?}");
    }
    assert!(residence.verify().unwrap().ok(), "{:?}", residence.verify().unwrap().faults);
    // One batch holding all of them.
    let other = node("610112", 20);
    let refs: Vec<&[u8]> = all.iter().map(|b| b.as_slice()).collect();
    assert!(other.ingest_batch(&refs).unwrap().iter().all(|o| matches!(o, Ingested::Stored { .. })));
    // Years later a reopened store still verifies both keys' events.
    drop(origin);
    let origin = sled_node(dir.path(), 11).unwrap();
    assert!(origin.verify().unwrap().ok());
    let v = origin.trust().view(Utc::now());
    let me = v.iter().find(|l| l.locality == "411522").unwrap();
    assert_eq!(me.spans.len(), 2, "{:?}", me.spans);
    assert_eq!(me.spans[1].from_seq, 5);
    assert_eq!(me.spans[1].how, "rotation at #4");
}

#[test]
fn a_node_without_a_channel_learns_the_handover_from_the_trust_stream_or_waits_for_it() {
    let origin = node("411522", 10);
    origin.append(certificate(1)).unwrap();
    let next = signed(&cert("411522", 11, 4101, 4100));
    origin.rotate_key(key(11), next.clone()).unwrap();
    let handover = origin.event_at(loc("411522"), 2).unwrap().unwrap().signed.encode_to_vec();
    // An event to 610113, whose first channel position comes after the handover.
    let mut d = certificate(2);
    d.residence = "610113".into();
    origin.append(d).unwrap();
    let late = origin.event_at(loc("411522"), 3).unwrap().unwrap().signed.encode_to_vec();

    let third = node("610113", 30);
    // Knows the next key's certificate but not the handover: waits.
    learn(&third, &[statement::record_of_statement(next)]);
    let out = third.ingest(&late).unwrap();
    assert!(matches!(&out, Ingested::Pending { reason, .. } if reason.contains("next key")), "{out:?}");
    assert!(third.quarantine().unwrap().is_empty());
    // The handover arrives on the trust stream: the event verifies.
    learn(&third, &[statement::record_of_rotation(handover)]);
    assert!(matches!(third.ingest(&late).unwrap(), Ingested::Stored { .. }));
}

#[test]
fn a_revoked_key_cannot_extend_the_chain_and_cannot_rewrite_it() {
    let origin = node("411522", 10);
    let residence = node("610112", 20);
    origin.append_batch((1..=2).map(certificate).collect()).unwrap();
    for b in bytes_of(&origin, 1) {
        assert!(matches!(residence.ingest(&b).unwrap(), Ingested::Stored { .. }));
    }
    // The key is stolen; the authority revokes it through the last sequence the streams hold.
    let rev = statement::sign(&key(HENAN), statement::revocation(4100, 2, "key stolen"), Utc::now());
    learn(&residence, &[statement::record_of_statement(rev)]);
    // The thief holds the key (a copy of the node) and signs new and back-dated events.
    let thief = node("411522", 10);
    thief.append_batch((1..=3).map(certificate).collect()).unwrap();
    let forged = bytes_of(&thief, 1);
    let out = residence.ingest(&forged[2]).unwrap();
    assert!(matches!(&out, Ingested::Quarantined { reason, .. } if reason.contains("key.revoked")), "{out:?}");
    let out = residence.ingest(&forged[0]).unwrap();
    assert!(matches!(&out, Ingested::Quarantined { reason, .. } if reason.starts_with("fork")), "{out:?}");
    assert_eq!(residence.read_author(loc("411522"), 1, 10).unwrap().len(), 2, "nothing applied");
    // The real node cannot sign past the bound either until it recovers with a new key.
    let rev = statement::sign(&key(HENAN), statement::revocation(4100, 2, "key stolen"), Utc::now());
    learn(&origin, &[statement::record_of_statement(rev)]);
    let e = origin.append(certificate(9)).unwrap_err();
    assert!(e.to_string().contains("revoked"), "{e}");
}

#[test]
fn bad_trust_input_is_quarantined_with_its_code_and_key_rotated_is_not_an_api_event() {
    let store = node("610112", 20);
    // Another province's authority certifying a Henan locality.
    let wrong = statement::record_of_statement(statement::sign(
        &key(SHAANXI),
        statement::locality_certificate(&cert("411523", 40, 9999, 0)),
        Utc::now(),
    ));
    let fault = store.apply_trust_record(&wrong, Utc::now()).unwrap().unwrap_err();
    assert_eq!(fault.code(), "trust.wrong_province");
    // A second key for a certified locality: possible compromise.
    let conflict = locality(&cert("411522", 99, 9998, 0));
    let fault = store.apply_trust_record(&conflict, Utc::now()).unwrap().unwrap_err();
    assert_eq!(fault.code(), "trust.key_conflict");
    assert_eq!(store.apply_trust_record(b"junk", Utc::now()).unwrap().unwrap_err().code(), "trust.malformed");
    let q = store.quarantine().unwrap();
    assert_eq!(q.len(), 3);
    assert!(q[0].reason.starts_with("trust.wrong_province"), "{:?}", q[0].reason);
    assert!(q[1].reason.starts_with("trust.key_conflict"), "{:?}", q[1].reason);
    assert_eq!(
        store.roster().iter().find(|(l, _)| *l == loc("411522")).map(|(_, k)| *k),
        Some(key(10).verifying_key())
    );

    // KeyRotated through append is refused; a rotation to a certificate of another locality too.
    let mut d = certificate(1);
    d.person_key.clear();
    d.origin.clear();
    d.residence.clear();
    d.body = Some(yipan_proto::v1::EventBody {
        kind: Some(yipan_proto::v1::event_body::Kind::KeyRotated(yipan_proto::v1::KeyRotated { certificate: vec![] })),
    });
    let e = store.append(d).unwrap_err();
    assert!(e.to_string().contains("yipan key rotate"), "{e}");
    let e = store.rotate_key(key(21), signed(&cert("610113", 21, 6101, 6100))).unwrap_err();
    assert!(e.to_string().contains("not this node"), "{e}");
    let e = store.rotate_key(key(21), signed(&cert("610112", 21, 6102, 0))).unwrap_err();
    assert!(e.to_string().contains("key_conflict") || e.to_string().contains("possible key compromise"), "{e}");
    assert_eq!(store.head().unwrap().0, 0, "nothing appended");
}

#[test]
fn recovery_after_revocation_continues_the_chain_with_a_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let origin = sled_node(dir.path(), 10).unwrap();
    learn(&origin, &world());
    origin.append_batch((1..=2).map(certificate).collect()).unwrap();
    let rev = statement::sign(&key(HENAN), statement::revocation(4100, 2, "key lost"), Utc::now());
    learn(&origin, &[statement::record_of_statement(rev.clone())]);
    assert!(origin.append(certificate(3)).unwrap_err().to_string().contains("revoked"));
    // The authority certifies a new key from #3 on.
    let mut recovery = cert("411522", 12, 4102, 4100);
    recovery.first_seq = 3;
    learn(&origin, &[locality(&recovery)]);
    let e = origin.append(certificate(3)).unwrap_err();
    assert!(e.to_string().contains("restart the node"), "{e}");
    drop(origin);
    // Reopened with the new key, the chain continues at #3.
    let origin = sled_node(dir.path(), 12).unwrap();
    assert_eq!(origin.append(certificate(3)).unwrap().seq, 3);
    assert!(origin.verify().unwrap().ok(), "{:?}", origin.verify().unwrap().faults);
    let residence = node("610112", 20);
    learn(&residence, &[statement::record_of_statement(rev), locality(&recovery)]);
    for b in bytes_of(&origin, 1) {
        assert!(matches!(residence.ingest(&b).unwrap(), Ingested::Stored { .. }));
    }
}

fn sled_residence(dir: &std::path::Path) -> SledStore {
    SledStore::open_with_anchor(
        SledBackend::open(dir).unwrap(),
        loc("610112"),
        key(20),
        Some(key(ROOT).verifying_key()),
    )
    .unwrap()
}

#[test]
fn handovers_learned_from_channels_are_kept_and_replayed_in_order_at_restart() {
    let dir = tempfile::tempdir().unwrap();
    let residence = sled_residence(dir.path());
    learn(&residence, &world());
    let origin = node("411522", 10);
    origin.append(certificate(1)).unwrap();
    let next = signed(&cert("411522", 11, 4101, 4100));
    origin.rotate_key(key(11), next.clone()).unwrap();
    origin.append(certificate(3)).unwrap();
    for b in bytes_of(&origin, 1) {
        assert!(matches!(residence.ingest(&b).unwrap(), Ingested::Stored { .. }));
    }
    // K2 is lost: revoked through #3, recovered with K3 from #4.
    let rev = statement::sign(&key(HENAN), statement::revocation(4101, 3, "lost"), Utc::now());
    let mut recovery = cert("411522", 12, 4102, 4101);
    recovery.first_seq = 4;
    learn(&residence, &[statement::record_of_statement(rev), locality(&recovery)]);
    assert_eq!(residence.trust().key_for(loc("411522"), 4, None), Ok(key(12).verifying_key()));
    drop(residence);
    // After a restart the same schedule: the handover was kept in the order it was learned.
    let residence = sled_residence(dir.path());
    let t = residence.trust();
    assert_eq!(t.key_for(loc("411522"), 1, None), Ok(key(10).verifying_key()));
    assert_eq!(t.key_for(loc("411522"), 3, None), Ok(key(11).verifying_key()));
    assert_eq!(t.key_for(loc("411522"), 4, None), Ok(key(12).verifying_key()));
    assert!(residence.verify().unwrap().ok(), "{:?}", residence.verify().unwrap().faults);
}

#[test]
fn a_stolen_old_key_cannot_hand_the_chain_over_in_the_past() {
    let residence = node("610112", 20);
    let origin = node("411522", 10);
    origin.append_batch((1..=3).map(certificate).collect()).unwrap();
    for b in bytes_of(&origin, 1) {
        assert!(matches!(residence.ingest(&b).unwrap(), Ingested::Stored { .. }));
    }
    // An honest rotation is certified and pending; the thief (holding K1) hands over at #2.
    let next = signed(&cert("411522", 11, 4101, 4100));
    learn(&residence, &[statement::record_of_statement(next.clone())]);
    let thief = node("411522", 10);
    thief.append(certificate(9)).unwrap();
    let forged = thief.rotate_key(key(11), next).unwrap();
    let bytes = thief.event_at(loc("411522"), forged.seq).unwrap().unwrap().signed.encode_to_vec();
    let fault = residence.apply_trust_record(&statement::record_of_rotation(bytes), Utc::now()).unwrap().unwrap_err();
    assert_eq!(fault.code(), "trust.bad_rotation");
    assert!(fault.to_string().contains("holds another event"), "{fault}");
    assert_eq!(residence.trust().key_for(loc("411522"), 3, None), Ok(key(10).verifying_key()), "history intact");
}

#[test]
fn a_thief_cannot_hand_over_this_nodes_own_chain() {
    let me = node("411522", 10);
    me.append(certificate(1)).unwrap();
    // The authority certified the next key (pending); a thief with the old key hands over
    // this node's chain at a sequence it has not reached, and publishes it on the stream.
    let next = signed(&cert("411522", 11, 4101, 4100));
    learn(&me, &[statement::record_of_statement(next.clone())]);
    let thief = node("411522", 10);
    thief.append_batch((1..=4).map(certificate).collect()).unwrap();
    let forged = thief.rotate_key(key(11), next).unwrap();
    let bytes = thief.event_at(loc("411522"), forged.seq).unwrap().unwrap().signed.encode_to_vec();
    let fault = me.apply_trust_record(&statement::record_of_rotation(bytes), Utc::now()).unwrap().unwrap_err();
    assert_eq!(fault.code(), "trust.bad_rotation", "{fault}");
    assert_eq!(me.append(certificate(2)).unwrap().seq, 2, "the node keeps signing its own chain");
}

#[test]
fn a_node_behind_its_recovery_bound_refuses_to_fork_its_own_chain() {
    let dir = tempfile::tempdir().unwrap();
    let origin = sled_node(dir.path(), 10).unwrap();
    learn(&origin, &world());
    origin.append_batch((1..=2).map(certificate).collect()).unwrap();
    // The thief published #3..#5 with the stolen key; the bound is the streams' #5.
    let rev = statement::sign(&key(HENAN), statement::revocation(4100, 5, "stolen"), Utc::now());
    let mut recovery = cert("411522", 12, 4102, 4100);
    recovery.first_seq = 6;
    learn(&origin, &[statement::record_of_statement(rev), locality(&recovery)]);
    drop(origin);
    let e = sled_node(dir.path(), 10).err().expect("refused");
    assert!(e.to_string().contains("events #3..#5 are not this node's"), "{e}");
}
