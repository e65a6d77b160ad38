//! Erasure on real sled: tier payloads go, envelopes, signatures and chains
//! stay; `verify` accepts an erased own tier and names one that vanished
//! without an erasure; received copies can be erased per author and up to a
//! sequence; data keys of erased tiers are destroyed and their key messages
//! marked stale; everything survives a reopen.

mod common;

use common::*;
use uuid::Uuid;
use yipan_log::erase::Scope;
use yipan_log::{SledBackend, SledStore};
use yipan_proto::v1::{self, Tier};
use yipan_proto::Message;

fn open(dir: &std::path::Path, code: &str, seed: u8) -> SledStore {
    SledStore::open(SledBackend::open(dir).unwrap(), loc(code), key(seed)).unwrap()
}

fn with_health(mut d: v1::EventDraft) -> v1::EventDraft {
    d.body = Some(v1::EventBody {
        kind: Some(v1::event_body::Kind::ServiceRendered(v1::ServiceRendered {
            service: v1::ServiceKind::PregnancyCheck as i32,
            provider_ref: String::new(),
        })),
    });
    d.health = Some(v1::HealthTier { pregnant: true, contraception_method: "IUD".into(), ..Default::default() });
    d
}

fn tiers_of(log: &SledStore, id: Uuid) -> Vec<i32> {
    log.get(id).unwrap().unwrap().signed.tiers.iter().map(|t| t.tier).collect()
}

#[test]
fn erasing_drops_payloads_keeps_chains_and_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let by = Uuid::now_v7();
    let (arrival_id, service_id, other_id);
    {
        let log = open(dir.path(), "610112", 1);
        let a = log.append(arrival(1)).unwrap();
        let s = log.append(with_health(arrival_with_person(2, 1))).unwrap();
        let o = log.append(arrival(2)).unwrap();
        (arrival_id, service_id, other_id) = (a.id, s.id, o.id);
        // A data key for the person's identity tier, as the outbox would make it.
        let keys = log.data_keys_for(&person(1), &[Tier::Identity as i32], &["411522".into()]).unwrap();
        assert_eq!(keys.keys.len(), 1);
        log.data_keys_published(&person(1), "411522", keys.generation, 20_000).unwrap();
        assert!(log.data_keys_stale(10).unwrap().is_empty());

        let done = log
            .erase(&Scope {
                person: person(1),
                tiers: vec![Tier::Identity],
                author: None,
                before_seq: None,
                recorded_until_us: None,
                by,
            })
            .unwrap();
        assert_eq!((done.events_held, done.events, done.payloads, done.keys_destroyed), (2, 1, 1, 1));
        assert_eq!(tiers_of(&log, arrival_id), Vec::<i32>::new());
        assert_eq!(tiers_of(&log, service_id), [Tier::ReproductiveHealth as i32], "only the identity tier was asked");
        assert_eq!(tiers_of(&log, other_id), [Tier::Identity as i32], "another person is untouched");
        assert_eq!(log.erased(loc("610112"), 1).unwrap(), Some((vec![Tier::Identity], by)));
        // The key is gone and the recipient's key message is out of date (its tombstone is due).
        let stale = log.data_keys_stale(10).unwrap();
        assert_eq!(stale.len(), 1);
        assert!(stale[0].1.keys.is_empty());
        assert_eq!(stale[0].1.due(20_000, 30), ["411522"]);
        // Idempotent.
        let again = log
            .erase(&Scope {
                person: person(1),
                tiers: vec![Tier::Identity],
                author: None,
                before_seq: None,
                recorded_until_us: None,
                by,
            })
            .unwrap();
        assert_eq!((again.events, again.payloads), (0, 0));
        let report = log.verify().unwrap();
        assert!(report.ok(), "{:?}", report.faults);
    }
    let log = open(dir.path(), "610112", 1);
    assert_eq!(tiers_of(&log, arrival_id), Vec::<i32>::new());
    let report = log.verify().unwrap();
    assert!(report.ok(), "{:?}", report.faults);
    // A new key for the tier after the erasure is a new version.
    let keys = log.data_keys_for(&person(1), &[Tier::Identity as i32], &[]).unwrap();
    assert_eq!(keys.key(Tier::Identity as i32).map(|(v, _)| v), Some(2));
}

/// The same person's second event at 610112 (a pregnancy check carrying health).
fn arrival_with_person(n: u64, _of: u64) -> v1::EventDraft {
    let mut d = arrival(n);
    d.identity = None;
    d.person_key = person(1).to_string();
    d
}

#[test]
fn an_own_tier_that_vanished_without_an_erasure_is_a_fault() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), "610112", 1);
    log.append(arrival(1)).unwrap();
    log.append(arrival(2)).unwrap();
    log.raw_edit_event(loc("610112"), 2, |bytes| {
        let mut signed = v1::SignedEvent::decode(bytes.as_deref().unwrap()).unwrap();
        signed.tiers.clear();
        *bytes = Some(signed.encode_to_vec());
    })
    .unwrap();
    let report = log.verify().unwrap();
    assert_eq!(report.faults.len(), 1, "{:?}", report.faults);
    assert_eq!((report.faults[0].author.as_str(), report.faults[0].seq), ("610112", 2));
    assert!(report.faults[0].problem.contains("identity tier payload is missing and was not erased"));
    // An erasure index entry for #1 does not excuse #2.
    log.erase(&Scope {
        person: person(1),
        tiers: vec![Tier::Identity],
        author: None,
        before_seq: None,
        recorded_until_us: None,
        by: Uuid::now_v7(),
    })
    .unwrap();
    assert_eq!(log.verify().unwrap().faults.len(), 1);
}

#[test]
fn a_recipient_erases_only_the_requesters_events_before_the_request() {
    let (origin, residence) = (mem("411522", 2), mem("610112", 1));
    let mut cert = certificate(1);
    cert.identity = Some(v1::IdentityTier { name: "张三".into(), ..Default::default() });
    let first = origin.append(cert.clone()).unwrap();
    let second = origin.append(cert).unwrap();
    let own = residence.append(arrival(1)).unwrap();
    residence.roster_add(loc("411522"), origin.public_key()).unwrap();
    for seq in 1..=2 {
        let bytes = origin.event_at(loc("411522"), seq).unwrap().unwrap().signed.encode_to_vec();
        residence.ingest(&bytes).unwrap();
    }
    let done = residence
        .erase(&Scope {
            person: person(1),
            tiers: vec![Tier::Identity],
            author: Some(loc("411522")),
            before_seq: Some(2),
            recorded_until_us: None,
            by: Uuid::now_v7(),
        })
        .unwrap();
    assert_eq!((done.events_held, done.payloads, done.keys_destroyed), (1, 1, 0));
    let held = |id| residence.get(id).unwrap().unwrap().signed.tiers.len();
    assert_eq!((held(first.id), held(second.id), held(own.id)), (0, 1, 1));
    let report = residence.verify().unwrap();
    assert!(report.ok(), "{:?}", report.faults);
}

#[test]
fn a_received_event_with_sealed_tiers_is_refused_at_ingest() {
    let (origin, residence) = (mem("411522", 2), mem("610112", 1));
    residence.roster_add(loc("411522"), origin.public_key()).unwrap();
    origin.append(certificate(1)).unwrap();
    let mut signed = origin.event_at(loc("411522"), 1).unwrap().unwrap().signed;
    signed.sealed.push(v1::SealedTier { tier: Tier::Identity as i32, ..Default::default() });
    let outcome = residence.ingest(&signed.encode_to_vec()).unwrap();
    assert!(format!("{outcome:?}").contains("sealed tiers must be opened"), "{outcome:?}");
}
