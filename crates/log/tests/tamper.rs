//! Tamper evidence: any single-byte change, deleted event or reordering in a
//! stored chain is caught by `verify`, which names the author and sequence.
//! Also: restart keeps everything; a damaged store file is an error, not a panic.

mod common;

use common::*;
use proptest::prelude::*;
use yipan_log::{layout, Backend, Error, MemStore};
use yipan_proto::Message;

const OWN: usize = 12;

/// 610112 with OWN own events (alternating kinds and tiers) and 3 verified events from 411522.
fn populated() -> (MemStore, Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let store = mem("610112", 1);
    let mut drafts = Vec::new();
    for i in 0..OWN as u64 {
        let mut d = arrival(i);
        if i % 3 == 0 {
            d.contact = Some(yipan_proto::v1::ContactTier { phone: "13800001234".into(), ..Default::default() });
        }
        drafts.push(d);
    }
    store.append_batch(drafts).unwrap();
    let origin = mem("411522", 2);
    store.roster_add(loc("411522"), origin.public_key()).unwrap();
    let out = origin.append_batch((0..3).map(certificate).collect()).unwrap();
    let foreign: Vec<Vec<u8>> = out.iter().map(|a| origin.get(a.id).unwrap().unwrap().signed.encode_to_vec()).collect();
    let refs: Vec<&[u8]> = foreign.iter().map(|b| b.as_slice()).collect();
    store.ingest_batch(&refs).unwrap();
    assert!(store.verify().unwrap().ok(), "{:?}", store.verify().unwrap().faults);
    let own = store.read_author(loc("610112"), 1, 100).unwrap().iter().map(|e| e.signed.encode_to_vec()).collect();
    (store, own, foreign)
}

fn faults_name(store: &MemStore, author: &str, seq: u64) -> bool {
    let report = store.verify().unwrap();
    report.faults.iter().any(|f| f.author == author && f.seq == seq)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn any_single_byte_change_is_named(own_event in any::<bool>(), pick in 0usize..OWN, pos in any::<prop::sample::Index>(), mask in 1u8..=255) {
        let (store, own, foreign) = populated();
        let (author, seq, bytes) = if own_event {
            ("610112", pick as u64 + 1, own[pick].clone())
        } else {
            ("411522", (pick % 3) as u64 + 1, foreign[pick % 3].clone())
        };
        let mut damaged = bytes.clone();
        let at = pos.index(damaged.len());
        damaged[at] ^= mask;
        store.raw_edit_event(loc(author), seq, |b| *b = Some(damaged)).unwrap();
        prop_assert!(faults_name(&store, author, seq), "byte {} of {}#{} changed unnoticed", at, author, seq);
    }

    #[test]
    fn deleting_any_own_event_is_caught(pick in 0usize..OWN) {
        let (store, _, _) = populated();
        let seq = pick as u64 + 1;
        store.raw_edit_event(loc("610112"), seq, |b| *b = None).unwrap();
        let report = store.verify().unwrap();
        prop_assert!(!report.ok());
        prop_assert!(report.faults.iter().any(|f| f.author == "610112"), "{:?}", report.faults);
    }

    #[test]
    fn swapping_two_own_events_is_caught(a in 0usize..OWN, b in 0usize..OWN) {
        prop_assume!(a != b);
        let (store, own, _) = populated();
        store.raw_edit_event(loc("610112"), a as u64 + 1, |x| *x = Some(own[b].clone())).unwrap();
        store.raw_edit_event(loc("610112"), b as u64 + 1, |x| *x = Some(own[a].clone())).unwrap();
        prop_assert!(faults_name(&store, "610112", a as u64 + 1));
        prop_assert!(faults_name(&store, "610112", b as u64 + 1));
    }
}

#[test]
fn deleting_the_last_event_is_caught_by_the_recorded_head() {
    let (store, _, _) = populated();
    store.raw_edit_event(loc("610112"), OWN as u64, |b| *b = None).unwrap();
    let report = store.verify().unwrap();
    assert!(
        report.faults.iter().any(|f| f.problem.contains("recorded head is #12 but the own chain ends at #11")),
        "{:?}",
        report.faults
    );
}

#[test]
fn deleting_a_middle_event_is_named_with_stable_codes() {
    let (store, _, _) = populated();
    store.raw_edit_event(loc("610112"), 5, |b| *b = None).unwrap();
    let report = store.verify().unwrap();
    let named =
        |code: &str, seq: u64| report.faults.iter().any(|f| f.code == code && f.seq == seq && f.author == "610112");
    // The own chain lacks #5, and each channel #5 was on jumps at #6 or later.
    assert!(named("chain.missing", 6), "{:?}", report.faults);
    assert!(report.faults.iter().any(|f| f.code == "channel.gap" && f.seq >= 6), "{:?}", report.faults);
    assert!(report.faults.iter().all(|f| f.author == "610112" && f.seq >= 6), "{:?}", report.faults);
}

#[test]
fn sled_tamper_is_named_by_author_and_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let store = sled_at(dir.path(), "610112", 1);
    store.append_batch((0..5).map(arrival).collect()).unwrap();
    store.raw_edit_event(loc("610112"), 3, |b| b.as_mut().unwrap()[40] ^= 0x01).unwrap();
    let report = store.verify().unwrap();
    // The changed event is named first; the next event's link to it breaks too.
    assert_eq!((report.faults[0].author.as_str(), report.faults[0].seq), ("610112", 3), "{:?}", report.faults);
    assert!(
        report.faults.iter().all(|f| f.seq == 3 || (f.seq == 4 && f.problem.contains("prev_hash"))),
        "{:?}",
        report.faults
    );
}

#[test]
fn damaged_segment_framing_is_named() {
    let (store, _, _) = populated();
    let me = loc("610112").as_u32();
    let (key, mut value) = store
        .backend()
        .range(&layout::segment_key(me, 0), &layout::prefix_end(&layout::author_prefix(me)), 1)
        .unwrap()
        .pop()
        .unwrap();
    value.truncate(value.len() - 5);
    store.raw_put(&key, Some(value)).unwrap();
    let report = store.verify().unwrap();
    assert!(
        report.faults.iter().any(|f| f.author == "610112" && f.problem.contains("cut short")),
        "{:?}",
        report.faults
    );
    assert!(store.read_author(loc("610112"), 1, 100).is_err(), "reading a damaged segment is an error");
}

#[test]
fn restart_keeps_everything_and_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let id = uuid::Uuid::now_v7();
    let (head, origin_key) = {
        let store = sled_at(dir.path(), "610112", 1);
        store.append_batch(vec![with_id(arrival(0), id)]).unwrap();
        store.append_batch((1..10).map(arrival).collect()).unwrap();
        let origin = mem("411522", 2);
        store.roster_add(loc("411522"), origin.public_key()).unwrap();
        let c = origin.append_batch(vec![certificate(1)]).unwrap();
        let c = origin.get(c[0].id).unwrap().unwrap().signed.encode_to_vec();
        store.ingest_batch(&[&c]).unwrap();
        (store.head().unwrap(), origin.public_key())
    };
    let store = sled_at(dir.path(), "610112", 1);
    assert_eq!(store.head().unwrap(), head);
    assert_eq!(store.roster().iter().find(|(l, _)| *l == loc("411522")).map(|(_, k)| *k), Some(origin_key));
    let again = store.append_batch(vec![with_id(arrival(0), id)]).unwrap();
    assert!(again[0].duplicate && again[0].seq == 1, "idempotency survives restart");
    let next = store.append_batch(vec![arrival(11)]).unwrap();
    assert_eq!(next[0].seq, 11);
    assert_eq!(next[0].recipients[0].1, 11, "channel positions continue");
    assert_eq!(store.read_author(loc("411522"), 1, 10).unwrap().len(), 1);
    assert!(store.verify().unwrap().ok());
    drop(store);
    // The store belongs to its locality.
    let other = yipan_log::SledStore::open(yipan_log::SledBackend::open(dir.path()).unwrap(), loc("610113"), key(1));
    assert!(matches!(other, Err(Error::LocalityMismatch { .. })));
}

#[test]
fn a_damaged_store_file_is_an_error_not_a_panic() {
    for damage in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = sled_at(dir.path(), "610112", 1);
            for i in 0..20 {
                store.append_batch(vec![arrival(i)]).unwrap();
            }
        }
        let db = dir.path().join("db");
        let mut bytes = std::fs::read(&db).unwrap();
        match damage {
            0 => bytes.iter_mut().skip(64).step_by(97).for_each(|b| *b ^= 0xa5),
            1 => bytes.truncate(bytes.len() / 3),
            _ => bytes.iter_mut().for_each(|b| *b = 0xff),
        }
        std::fs::write(&db, &bytes).unwrap();
        let outcome = std::panic::catch_unwind(|| {
            let backend = yipan_log::SledBackend::open(dir.path())?;
            let store = yipan_log::SledStore::open(backend, loc("610112"), key(1))?;
            store.verify()
        });
        let outcome = outcome.unwrap_or_else(|_| panic!("damage {damage}: panicked"));
        match outcome {
            // Refused at open: a storage-level error that says what is damaged.
            Err(e) => {
                assert!(
                    matches!(e, Error::Storage(_) | Error::Corrupt { .. } | Error::Damaged { .. }),
                    "damage {damage}: unexpected error kind {e:?}"
                );
                let msg = e.to_string();
                assert!(
                    ["damaged", "corrupt", "storage", "sled"].iter().any(|w| msg.to_lowercase().contains(w)),
                    "damage {damage}: the message does not say what is wrong: {msg}"
                );
            }
            // Opened: verify must name at least one fault as `author#seq: problem`
            // or lose events it cannot read, never report all 20 clean.
            Ok(report) => {
                assert!(
                    report.events < 20 || !report.faults.is_empty(),
                    "damage {damage}: damaged store verified clean with all events: {report:?}"
                );
                for f in &report.faults {
                    assert!(!f.problem.is_empty(), "damage {damage}: a fault without a problem: {f:?}");
                }
            }
        }
    }
}
