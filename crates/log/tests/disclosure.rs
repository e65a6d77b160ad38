//! The disclosure log on real sled: entries are kept in order with the
//! person index, survive a reopen (the chain continues), and any entry
//! altered, removed, added or re-indexed behind the log's back is found by
//! `verify`.

mod common;

use common::*;
use yipan_log::disclosure::{Disclosure, BY_PERSON, ENTRY};
use yipan_log::{SledBackend, SledStore};

fn release(n: u64, recipient: &str) -> Disclosure {
    Disclosure {
        at: "2026-11-30T03:00:00.000Z".into(),
        channel: "replication".into(),
        recipient: recipient.into(),
        role: String::new(),
        person: person(n).to_string(),
        event: format!("0199b000-0000-7000-8000-{n:012}"),
        author: "610112".into(),
        seq: n,
        tiers: vec!["identity".into()],
        masked: false,
        basis: "exchange with the relationship's origin".into(),
    }
}

fn open(dir: &std::path::Path) -> SledStore {
    SledStore::open(SledBackend::open(dir).unwrap(), loc("610112"), key(1)).unwrap()
}

fn entry_key(n: u64) -> Vec<u8> {
    let mut k = vec![ENTRY];
    k.extend_from_slice(&n.to_be_bytes());
    k
}

fn problems(log: &SledStore) -> Vec<String> {
    log.verify_disclosures().unwrap().problems
}

#[test]
fn releases_are_kept_in_order_by_person_and_continue_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        log.disclose(&[release(1, "411522"), release(2, "411522")]).unwrap();
        log.disclose(&[release(1, "downstream:health")]).unwrap();
        let of_one = log.disclosures_of(&person(1)).unwrap();
        assert_eq!(
            of_one.iter().map(|e| (e.n, e.disclosure.recipient.as_str())).collect::<Vec<_>>(),
            [(1, "411522"), (3, "downstream:health")]
        );
        assert_eq!(log.disclosures_of(&person(2)).unwrap().len(), 1);
        assert!(log.disclosures_of(&person(3)).unwrap().is_empty());
    }
    let log = open(dir.path());
    log.disclose(&[release(2, "411522")]).unwrap();
    let all = log.disclosures_page(0, 100).unwrap();
    assert_eq!(all.iter().map(|e| e.n).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(all[3].prev, all[2].hash, "the chain continues across the reopen");
    assert_eq!(log.disclosures_page(2, 1).unwrap()[0].n, 3, "paged");
    let check = log.verify_disclosures().unwrap();
    assert_eq!((check.entries, check.problems.len()), (4, 0), "{:?}", check.problems);
    let report = log.verify().unwrap();
    assert!(report.ok() && report.disclosures == 4, "{report:?}");
}

#[test]
fn an_altered_removed_added_or_unindexed_entry_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.disclose(&[release(1, "411522"), release(2, "411522"), release(3, "411522")]).unwrap();
    assert!(problems(&log).is_empty());

    // Altered: the recipient of entry 2 rewritten (a release hidden from the person).
    let original = log.disclosures_page(1, 1).unwrap().remove(0);
    let mut forged = original.clone();
    forged.disclosure.recipient = "610113".into();
    log.raw_put(&entry_key(2), Some(serde_json::to_vec(&forged).unwrap())).unwrap();
    let p = problems(&log);
    assert!(p.iter().any(|x| x.contains("entry 2 was altered")), "{p:?}");
    assert!(!log.verify().unwrap().ok());
    log.raw_put(&entry_key(2), Some(serde_json::to_vec(&original).unwrap())).unwrap();
    assert!(problems(&log).is_empty());

    // Removed: entry 2 deleted with its index.
    let mut index = vec![BY_PERSON];
    index.extend_from_slice(person(2).as_bytes());
    index.extend_from_slice(&2u64.to_be_bytes());
    log.raw_put(&entry_key(2), None).unwrap();
    log.raw_put(&index, None).unwrap();
    let p = problems(&log);
    assert!(p.iter().any(|x| x.contains("entry 2 is missing")), "{p:?}");
    assert!(p.iter().any(|x| x.contains("head counts 3 entries but 2")), "{p:?}");
    log.raw_put(&entry_key(2), Some(serde_json::to_vec(&original).unwrap())).unwrap();
    log.raw_put(&index, Some(Vec::new())).unwrap();
    assert!(problems(&log).is_empty());

    // Added behind the log's back: a well-chained entry 4 without the head.
    let last = log.disclosures_page(2, 1).unwrap().remove(0);
    let mut extra = last.clone();
    extra.n = 4;
    extra.prev = last.hash.clone();
    log.raw_put(&entry_key(4), Some(serde_json::to_vec(&extra).unwrap())).unwrap();
    let p = problems(&log);
    assert!(p.iter().any(|x| x.contains("head counts 3 entries but 4")), "{p:?}");
    log.raw_put(&entry_key(4), None).unwrap();

    // Unindexed: the person index loses an entry (the person's question would miss it).
    let mut index = vec![BY_PERSON];
    index.extend_from_slice(person(3).as_bytes());
    index.extend_from_slice(&3u64.to_be_bytes());
    log.raw_put(&index, None).unwrap();
    let p = problems(&log);
    assert!(p.iter().any(|x| x.contains("person index")), "{p:?}");
}
