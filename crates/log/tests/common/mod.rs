//! Shared helpers of the log's tests.
#![allow(dead_code)]

use ed25519_dalek::SigningKey;
use uuid::Uuid;
use yipan_core::{Locality, PersonKey};
use yipan_log::{MemBackend, MemStore, SledBackend, SledStore};
use yipan_proto::v1::{self, event_body::Kind, EventBody, EventDraft};

pub fn loc(code: &str) -> Locality {
    Locality::parse(code).unwrap()
}

pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub fn person(n: u64) -> PersonKey {
    PersonKey::derive(&format!("41152219900101{n:04}"), b"test-secret")
}

/// A residence-authored arrival at 610112 for a person from 411522.
pub fn arrival(n: u64) -> EventDraft {
    EventDraft {
        person_key: person(n).to_string(),
        origin: "411522".into(),
        residence: "610112".into(),
        body: Some(EventBody {
            kind: Some(Kind::ArrivalRegistered(v1::ArrivalRegistered {
                channel: 2,
                township: String::new(),
                expected_stay_months: 6,
                ..Default::default()
            })),
        }),
        identity: Some(v1::IdentityTier {
            name: "张三".into(),
            id_number: "11010519491231002X".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The residence 610112 records the departure of person `n` (registered by [`arrival`]).
pub fn departure(n: u64) -> EventDraft {
    EventDraft {
        person_key: person(n).to_string(),
        origin: "411522".into(),
        residence: "610112".into(),
        body: Some(EventBody {
            kind: Some(Kind::DepartureRegistered(v1::DepartureRegistered { destination: String::new() })),
        }),
        ..Default::default()
    }
}

/// An origin-authored certificate for a person living at 610112.
pub fn certificate(n: u64) -> EventDraft {
    EventDraft {
        person_key: person(n).to_string(),
        origin: "411522".into(),
        residence: "610112".into(),
        body: Some(EventBody {
            kind: Some(Kind::CertificateIssued(v1::CertificateIssued {
                certificate_ref: format!("C{n}"),
                valid_until: None,
            })),
        }),
        ..Default::default()
    }
}

pub fn with_id(mut d: EventDraft, id: Uuid) -> EventDraft {
    d.event_id = id.as_bytes().to_vec();
    d
}

pub fn mem(code: &str, seed: u8) -> MemStore {
    MemStore::open(MemBackend::new(), loc(code), key(seed)).unwrap()
}

/// Opens (or reopens) a sled store. sled releases its file lock from a
/// background thread after the last handle is dropped, so a reopen right
/// after a drop may find the lock still held for a moment: retried then.
pub fn sled_at(dir: &std::path::Path, code: &str, seed: u8) -> SledStore {
    let start = std::time::Instant::now();
    let backend = loop {
        match SledBackend::open(dir) {
            Ok(b) => break b,
            Err(e) if e.to_string().contains("could not acquire lock") && start.elapsed().as_secs() < 10 => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    };
    SledStore::open(backend, loc(code), key(seed)).unwrap()
}

/// The bytes of `signed`'s signature, in whichever form it is signed: the
/// per-event signature, or the batch head's.
pub fn signature_mut(signed: &mut v1::SignedEvent) -> &mut Vec<u8> {
    match &mut signed.batch {
        Some(b) => &mut b.signature,
        None => &mut signed.signature,
    }
}
