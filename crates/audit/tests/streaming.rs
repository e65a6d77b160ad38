//! The streaming audit: messages checked as they are fed, in chunks, with
//! the cross-checks (forks, duplicates, chain links, channel gaps) done on
//! sorted spills. Chunks and runs are made tiny here so that every check
//! crosses chunk boundaries and runs on disk; each outcome is compared with
//! what the whole input says.

// The log's test helpers (keys, drafts), shared rather than copied.
#[path = "../../log/tests/common/mod.rs"]
mod common;

use chrono::{TimeDelta, Utc};
use common::{certificate, key, loc};
use prost::Message;
use yipan_audit::{AuditReport, Auditor, Channels, TrustState};
use yipan_log::{MemBackend, MemStore};
use yipan_proto::v1;
use yipan_trust::statement::{self, LocalityCert};

fn store(seed: u8) -> MemStore {
    MemStore::open(MemBackend::new(), loc("411522"), key(seed)).unwrap()
}

fn bytes(s: &MemStore) -> Vec<Vec<u8>> {
    s.read_author(loc("411522"), 1, usize::MAX).unwrap().into_iter().map(|e| e.signed.encode_to_vec()).collect()
}

fn roster(seed: u8) -> TrustState {
    let mut t = TrustState::new(None);
    t.add_bootstrap(loc("411522"), key(seed).verifying_key()).unwrap();
    t
}

/// Audits `messages` (as the recipient 610112's channel) with chunks of 3 and runs of 4.
fn audit(trust: TrustState, messages: &[Vec<u8>]) -> AuditReport {
    let mut a = Auditor::without_digests(trust).with_limits(3, 4);
    for m in messages {
        a.add(m.clone(), Channels::Only(loc("610112")));
    }
    a.finish("test", Utc::now()).0
}

fn problems(r: &AuditReport) -> Vec<String> {
    r.faults.iter().map(|f| format!("{}#{}: {}", f.author, f.seq, f.problem)).collect()
}

#[test]
fn a_clean_input_in_any_order_with_repeats_audits_clean_and_counts_each_event_once() {
    let s = store(2);
    for n in 0..5 {
        s.append_batch((0..7).map(|i| certificate(n * 10 + i)).collect()).unwrap();
    }
    let mut all = bytes(&s);
    assert_eq!(all.len(), 35);
    all.reverse();
    all.extend(all[..9].to_vec());
    let r = audit(roster(2), &all);
    assert!(r.ok(), "{:?}", problems(&r));
    assert_eq!((r.messages, r.events, r.duplicates), (44, 35, 9));
    assert_eq!(r.authors["411522"], 35);
    assert_eq!(r.channels.len(), 1);
    assert_eq!((r.channels[0].head, r.channels[0].positions), (35, 35));
}

#[test]
fn forks_broken_links_gaps_and_forgeries_are_named_across_chunks_and_runs() {
    let genuine = store(2);
    genuine.append_batch((0..6).map(certificate).collect()).unwrap();
    // The same key signing another history from #4 on (a restored backup, a stolen key).
    let forked = store(2);
    forked.append_batch((0..3).map(certificate).chain((100..103).map(certificate)).collect()).unwrap();
    let g = bytes(&genuine);
    let f = bytes(&forked);
    let mut forged = v1::SignedEvent::decode(g[1].as_slice()).unwrap();
    let last = forged.envelope.len() - 1;
    forged.envelope[last] ^= 1;
    // #2 forged, #3 missing (channel gap below 6), #4 and #5 in both histories,
    // #6 only in the fork: its prev_hash links to the fork's #5, not the genuine one.
    let input = vec![g[0].clone(), forged.encode_to_vec(), g[3].clone(), f[3].clone(), g[4].clone(), f[4].clone()]
        .into_iter()
        .chain([f[5].clone()])
        .collect::<Vec<_>>();
    let r = audit(roster(2), &input);
    let p = problems(&r);
    let has = |want: &str| p.iter().any(|x| x.contains(want));
    assert!(has("411522#2: forged or altered: "), "{p:?}");
    assert!(has("411522#4: fork: two different events at author sequence 4"), "{p:?}");
    assert!(has("411522#5: fork: two different events at author sequence 5"), "{p:?}");
    assert!(has("fork: two different events at channel position 4 to 610112"), "{p:?}");
    assert!(has("channel to 610112: positions 2..3 are missing"), "{p:?}");
    // Every finding carries its stable code.
    let codes: Vec<&str> = r.faults.iter().map(|f| f.code).collect();
    for want in ["event.forged", "fork.sequence", "fork.channel", "channel.gap"] {
        assert!(codes.contains(&want), "{want} in {codes:?}");
    }
    // #6 follows the fork's #5; whichever #5 sorts first, one link is named or both #5s fork.
    assert!(r.forks >= 4, "{p:?}");
    assert_eq!(r.events, 4, "distinct sequences 1, 4, 5 and 6 (the forged #2 is not counted)");
}

#[test]
fn events_signed_with_a_key_whose_handover_comes_later_in_the_input_verify() {
    const ROOT: u8 = 1;
    const HENAN: u8 = 3;
    let now = Utc::now();
    let year = TimeDelta::days(365);
    let cert = |seed: u8, serial: u64, replaces: u64| LocalityCert {
        locality: loc("411522"),
        name: "县".into(),
        key: key(seed).verifying_key(),
        serial,
        valid_from: now - TimeDelta::days(1),
        valid_until: now + year,
        replaces_serial: replaces,
        first_seq: 0,
    };
    let signed = |c: &LocalityCert| statement::sign(&key(HENAN), statement::locality_certificate(c), now);
    let authority = statement::record_of_statement(statement::sign(
        &key(ROOT),
        statement::authority_certificate(41, "卫健委", &key(HENAN).verifying_key(), 41, now - year, now + year),
        now,
    ));
    let first = statement::record_of_statement(signed(&cert(10, 4100, 0)));
    let origin =
        MemStore::open_with_anchor(MemBackend::new(), loc("411522"), key(10), Some(key(ROOT).verifying_key())).unwrap();
    for r in [&authority, &first] {
        origin.apply_trust_record(r, now).unwrap().unwrap();
    }
    origin.append_batch((0..3).map(certificate).collect()).unwrap();
    origin.rotate_key(key(11), signed(&cert(11, 4101, 4100))).unwrap();
    origin.append_batch((3..8).map(certificate).collect()).unwrap();
    let all = bytes(&origin);
    assert_eq!(all.len(), 9);
    let mut trust = TrustState::new(Some(key(ROOT).verifying_key()));
    for r in [&authority, &first] {
        trust.apply_record(r, now).unwrap();
    }
    // The new key's events first, the handover (#4) last, chunk after chunk.
    let mut input: Vec<Vec<u8>> = all[4..].to_vec();
    input.extend(all[..4].iter().cloned());
    let r = audit(trust.clone(), &input);
    assert!(r.ok(), "{:?}", problems(&r));
    assert_eq!(r.events, 9);
    // A thief with the old key signs #12 after the handover; read before the
    // handover, it verifies then — and is named once the handover is known.
    let thief =
        MemStore::open_with_anchor(MemBackend::new(), loc("411522"), key(10), Some(key(ROOT).verifying_key())).unwrap();
    for r in [&authority, &first] {
        thief.apply_trust_record(r, now).unwrap().unwrap();
    }
    thief.append_batch((100..112).map(certificate).collect()).unwrap();
    let stolen = bytes(&thief).pop().unwrap();
    let mut input = vec![stolen];
    input.extend(all.iter().cloned());
    let r = audit(trust.clone(), &input);
    let p = problems(&r);
    assert!(
        p.iter().any(|x| x.starts_with("411522#12: forged or altered: signed by a key that a key handover")),
        "{p:?}"
    );
    // Without the handover at all, the new key's events are forged.
    let r = audit(trust, &all[4..]);
    assert_eq!(r.faults.len(), 5, "{:?}", problems(&r));
    assert!(problems(&r).iter().all(|p| p.contains("forged or altered")), "{:?}", problems(&r));
}

#[test]
fn memory_does_not_grow_with_events_the_spills_do() {
    let s = store(2);
    for n in 0..10 {
        s.append_batch((0..100).map(|i| certificate(n * 1000 + i)).collect()).unwrap();
    }
    let all = bytes(&s);
    let mut a = Auditor::without_digests(roster(2)).with_limits(64, 100);
    for m in &all {
        a.add(m.clone(), Channels::All);
    }
    assert!(a.runs_on_disk() >= 3 * 9, "every kind spilled in runs: {}", a.runs_on_disk());
    let (r, _) = a.finish("test", Utc::now());
    assert!(r.ok(), "{:?}", problems(&r));
    assert_eq!(r.events, 1000);
}

#[test]
fn a_sequence_number_near_the_top_of_u64_costs_nothing_special() {
    use ed25519_dalek::Signer;
    let s = store(2);
    s.append_batch(vec![certificate(1)]).unwrap();
    let mut signed = v1::SignedEvent::decode(bytes(&s)[0].as_slice()).unwrap();
    let mut env = v1::Envelope::decode(signed.envelope.as_slice()).unwrap();
    for seq in [1u64 << 40, u64::MAX - 1] {
        env.author_seq = seq;
        signed.envelope = env.encode_to_vec();
        signed.batch = None;
        signed.signature = key(2).sign(&signed.envelope).to_bytes().to_vec();
        let r = audit(roster(2), &[signed.encode_to_vec()]);
        assert_eq!(r.events, 1, "{:?}", problems(&r));
        assert_eq!(r.authors["411522"], 1);
    }
}
