//! Schema-version fixtures: events encoded by schema version 1 and checked
//! into git must keep decoding, verifying and ingesting as the schema grows
//! (old events are upcast on read, never rewritten).
//!
//! Regenerate (only when deliberately starting a new fixture):
//! `YIPAN_WRITE_FIXTURES=1 cargo test -p yipan-log --test fixtures`

mod common;

use std::path::PathBuf;

use common::*;
use yipan_log::{Ingested, StoredEvent};
use yipan_proto::Message;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-events.bin")
}

/// Length-prefixed (u32 BE) encoded `SignedEvent`s.
fn read_fixture() -> Vec<Vec<u8>> {
    let bytes = std::fs::read(fixture()).expect("fixture present");
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        out.push(bytes[at + 4..at + 4 + len].to_vec());
        at += 4 + len;
    }
    out
}

/// SHA-256 of the committed fixture: regenerating it by accident (or any
/// change to it) fails the test instead of silently checking new output.
const FIXTURE_SHA256: &str = "09a0963bec12eef6da93cecf1536280dce9ad8d90c40123088d8233eac8dd9fc";

#[test]
fn v1_events_still_decode_verify_and_ingest() {
    if std::env::var_os("YIPAN_WRITE_FIXTURES").is_some() {
        let store = mem("610112", 1);
        let mut drafts: Vec<_> = (0..4).map(arrival).collect();
        drafts[1].contact = Some(yipan_proto::v1::ContactTier { phone: "13800001234".into(), ..Default::default() });
        store.append_batch(drafts).unwrap();
        let mut out = Vec::new();
        for ev in store.read_author(loc("610112"), 1, 10).unwrap() {
            let b = ev.signed.encode_to_vec();
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(&b);
        }
        std::fs::write(fixture(), out).unwrap();
        // Checking what was just written would prove nothing: report and stop.
        use sha2::Digest;
        let digest = hex::encode(sha2::Sha256::digest(std::fs::read(fixture()).unwrap()));
        panic!(
            "fixture rewritten; review it, then set FIXTURE_SHA256 = \"{digest}\" and run without YIPAN_WRITE_FIXTURES"
        );
    }
    {
        use sha2::Digest;
        let digest = hex::encode(sha2::Sha256::digest(std::fs::read(fixture()).unwrap()));
        assert_eq!(digest, FIXTURE_SHA256, "the checked-in v1 fixture changed; old events must never be rewritten");
    }
    let events = read_fixture();
    assert_eq!(events.len(), 4);
    let author_key = key(1).verifying_key();
    let mut prev = [0u8; 32];
    for (i, b) in events.iter().enumerate() {
        let ev = StoredEvent::decode(b).unwrap();
        assert_eq!(ev.envelope.schema_version, 1);
        assert_eq!(ev.seq(), i as u64 + 1);
        assert_eq!(ev.envelope.prev_hash, prev.to_vec());
        ev.verify_signature(&author_key).unwrap();
        ev.verify_tiers(true).unwrap();
        prev = ev.hash;
    }
    // The origin ingests them as received events.
    let origin = mem("411522", 2);
    origin.roster_add(loc("610112"), author_key).unwrap();
    let refs: Vec<&[u8]> = events.iter().map(|b| b.as_slice()).collect();
    let out = origin.ingest_batch(&refs).unwrap();
    assert!(out.iter().all(|o| matches!(o, Ingested::Stored { .. })), "{out:?}");
    assert!(origin.verify().unwrap().ok());
}
