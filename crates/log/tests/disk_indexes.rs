//! The person and channel indexes live on disk (`P` and `C` keys written in
//! the same batch as the segments); only channel heads and authors' highest
//! sequences stay in memory. Every answer equals one computed from the
//! events themselves, before and after a reopen, and a store written before
//! (no keys, no marker) gets them at its next open with the same answers.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use yipan_core::{Locality, PersonKey};
use yipan_log::{Backend, Ingested, SledStore};
use yipan_proto::v1::EventDraft;
use yipan_proto::Message;

/// Everything the indexes answer, read through them.
#[derive(Debug, PartialEq)]
struct Answers {
    persons: BTreeSet<String>,
    by_person: BTreeMap<String, Vec<(u32, u64)>>,
    channels: BTreeMap<(u32, u32), Vec<u64>>,
    heads: BTreeMap<(u32, u32), u64>,
    outbound: BTreeMap<u64, Vec<(Locality, u64)>>,
}

fn answers(store: &SledStore, people: &[PersonKey], pairs: &[(Locality, Locality)], own_head: u64) -> Answers {
    let persons = store.persons().unwrap().iter().map(|p| p.to_string()).collect();
    let by_person = people
        .iter()
        .map(|p| {
            let at = store.read_person(*p).unwrap().iter().map(|e| (e.author().unwrap().as_u32(), e.seq())).collect();
            (p.to_string(), at)
        })
        .collect();
    let mut channels = BTreeMap::new();
    let mut heads = BTreeMap::new();
    for (a, r) in pairs {
        // Read in pages of 7 from each position, to exercise `from` and `limit`
        // (starting inside runs and across their ends).
        let mut seqs = Vec::new();
        loop {
            let page = store.read_channel(*a, *r, seqs.len() as u64 + 1, 7).unwrap();
            if page.is_empty() {
                break;
            }
            seqs.extend(page.iter().map(|e| e.seq()));
        }
        let whole: Vec<u64> = store.read_channel(*a, *r, 1, usize::MAX).unwrap().iter().map(|e| e.seq()).collect();
        assert_eq!(whole, seqs);
        // Positions from the network (a repair request's `from`) may be anything.
        assert!(store.read_channel(*a, *r, u64::MAX, 10).unwrap().is_empty());
        channels.insert((a.as_u32(), r.as_u32()), seqs);
        heads.insert((a.as_u32(), r.as_u32()), store.channel_head(*a, *r).unwrap());
    }
    let outbound: BTreeMap<u64, Vec<(Locality, u64)>> =
        (0..=own_head + 1).map(|m| (m, store.outbound_heads(m).unwrap())).collect();
    // Settled heads (memory only) are the outbound heads that reached the channel's head.
    for (m, heads) in &outbound {
        let settled: Vec<(Locality, u64)> =
            heads.iter().copied().filter(|(r, h)| *h == store.channel_head(store.locality(), *r).unwrap()).collect();
        assert_eq!(store.settled_heads(*m), settled, "max_seq {m}");
    }
    Answers { persons, by_person, channels, heads, outbound }
}

/// The same answers computed from the events alone (no index).
fn expected(store: &SledStore, people: &[PersonKey], pairs: &[(Locality, Locality)], own_head: u64) -> Answers {
    let me = store.locality();
    let all = store.read_all(None, usize::MAX).unwrap();
    let mut by_person: BTreeMap<String, Vec<(u32, u64)>> = people.iter().map(|p| (p.to_string(), Vec::new())).collect();
    let mut persons = BTreeSet::new();
    let mut channels: BTreeMap<(u32, u32), Vec<(u64, u64)>> =
        pairs.iter().map(|(a, r)| ((a.as_u32(), r.as_u32()), Vec::new())).collect();
    for e in &all {
        persons.insert(e.envelope.person_key.clone());
        if let Some(v) = by_person.get_mut(&e.envelope.person_key) {
            v.push((e.author().unwrap().as_u32(), e.seq()));
        }
        for r in &e.envelope.recipients {
            let r_code = Locality::parse(&r.locality).unwrap();
            if e.author() != Some(me) && r_code != me {
                continue; // another recipient's channel: not this store's business
            }
            if let Some(c) = channels.get_mut(&(e.author().unwrap().as_u32(), r_code.as_u32())) {
                c.push((r.channel_seq, e.seq()));
            }
        }
    }
    persons.remove("");
    for v in by_person.values_mut() {
        v.sort_unstable();
    }
    let heads = channels.iter().map(|(k, v)| (*k, v.len() as u64)).collect();
    let outbound = (0..=own_head + 1)
        .map(|m| {
            let mut out: Vec<(Locality, u64)> = channels
                .iter()
                .filter(|((a, _), _)| *a == me.as_u32())
                .map(|((_, r), v)| (Locality::from_u32(*r).unwrap(), v.iter().filter(|(_, s)| *s <= m).count() as u64))
                .filter(|(_, h)| *h > 0)
                .collect();
            out.sort_unstable();
            (m, out)
        })
        .collect();
    let channels = channels.into_iter().map(|(k, v)| (k, v.into_iter().map(|(_, s)| s).collect())).collect();
    Answers { persons, by_person, channels, heads, outbound }
}

#[test]
fn person_and_channel_answers_come_from_disk_and_survive_reopen_and_migration() {
    let dir = tempfile::tempdir().unwrap();
    let (henan, hebei) = (mem("411522", 2), mem("130102", 3));
    let me = loc("610112");
    let people: Vec<PersonKey> = (1..=25).chain([100, 350, 699]).map(person).collect();
    let pairs = [
        (me, loc("411522")),
        (me, loc("130102")),
        (loc("411522"), me),
        (loc("130102"), me),
        (loc("411522"), loc("130102")),
    ];
    let own_head = {
        let store = sled_at(dir.path(), "610112", 1);
        store.roster_add(loc("411522"), henan.public_key()).unwrap();
        store.roster_add(loc("130102"), hebei.public_key()).unwrap();
        // Own events to two origins, interleaved with received ones.
        for n in 1..=25u64 {
            let origin = if n % 3 == 0 { "130102" } else { "411522" };
            store.append(EventDraft { origin: origin.into(), ..arrival(n) }).unwrap();
            if n % 4 == 0 {
                store.append(EventDraft { origin: origin.into(), ..departure(n) }).unwrap();
            }
            if n % 5 == 0 {
                let from = if n % 2 == 0 { &hebei } else { &henan };
                let mut c = certificate(n);
                c.origin = from.locality().to_string();
                let theirs = from.append(c).unwrap();
                let bytes = from.get(theirs.id).unwrap().unwrap().signed.encode_to_vec();
                assert!(matches!(store.ingest(&bytes).unwrap(), Ingested::Stored { .. }));
            }
        }
        // One batch of 600 arrivals to one origin: one channel run of 600 positions
        // (cut into runs of 512 when a store from before is migrated).
        let batch: Vec<EventDraft> = (100..700).map(arrival).collect();
        assert_eq!(store.append_batch(batch).unwrap().len(), 600);
        let head = store.head().unwrap().0;
        let want = expected(&store, &people, &pairs, head);
        // Every channel this store takes part in holds events; another pair's is not its business.
        for (a, r) in &pairs[..4] {
            assert!(!want.channels[&(a.as_u32(), r.as_u32())].is_empty(), "{a}→{r}");
        }
        assert!(want.channels[&(411522, 130102)].is_empty());
        assert_eq!(answers(&store, &people, &pairs, head), want, "while running");
        head
    };
    let store = sled_at(dir.path(), "610112", 1);
    let want = expected(&store, &people, &pairs, own_head);
    assert_eq!(answers(&store, &people, &pairs, own_head), want, "after reopening");
    // As an older release wrote it: no person or channel keys, no marker.
    let b = store.backend();
    let mut ops: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
    for prefix in [b"P", b"C"] {
        let end = [prefix[0] + 1];
        ops.extend(b.range(prefix, &end, usize::MAX).unwrap().into_iter().map(|(k, _)| (k, None)));
    }
    let (own_events, received) = (store.head().unwrap().0 as usize, store.len() - store.head().unwrap().0 as usize);
    assert_eq!(
        ops.iter().filter(|(k, _)| k[0] == b'P').count(),
        own_events + received,
        "a person key per event about a person"
    );
    ops.push((b"mpc".to_vec(), None));
    b.commit(ops).unwrap();
    drop(store);
    let store = sled_at(dir.path(), "610112", 1);
    assert_eq!(answers(&store, &people, &pairs, own_head), want, "after the migration at open");
    assert!(store.verify().unwrap().ok());
}
