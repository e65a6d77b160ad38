use chrono::{DateTime, TimeDelta, Utc};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use prost::Message;
use yipan_core::Locality;
use yipan_proto::v1::{event_body, Envelope, EventBody, KeyRotated, SignedEvent};

use crate::statement::{self, LocalityCert};
use crate::*;

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z").unwrap().with_timezone(&Utc)
}

fn year() -> TimeDelta {
    TimeDelta::days(365)
}

fn l(code: &str) -> Locality {
    Locality::parse(code).unwrap()
}

/// Root 1; authorities 61 (key 2) and 41 (key 3).
fn world() -> (TrustState, SigningKey, SigningKey, SigningKey) {
    let (root, shaanxi, henan) = (key(1), key(2), key(3));
    let mut t = TrustState::new(Some(root.verifying_key()));
    for (p, k, serial) in [(61, &shaanxi, 61), (41, &henan, 41)] {
        let c = statement::authority_certificate(p, "卫健委", &k.verifying_key(), serial, at() - year(), at() + year());
        assert!(matches!(t.apply_statement(&statement::sign(&root, c, at()), at()), Ok(Applied::Authority { .. })));
    }
    (t, root, shaanxi, henan)
}

fn cert(code: &str, k: &VerifyingKey, serial: u64, replaces: u64, first_seq: u64) -> LocalityCert {
    LocalityCert {
        locality: l(code),
        name: "未央区".into(),
        key: *k,
        serial,
        valid_from: at() - TimeDelta::days(1),
        valid_until: at() + year(),
        replaces_serial: replaces,
        first_seq,
    }
}

fn certify(t: &mut TrustState, by: &SigningKey, c: &LocalityCert) -> Result<Applied, Fault> {
    t.apply_statement(&statement::sign(by, statement::locality_certificate(c), at()), at())
}

fn rotation_event(author: &str, seq: u64, signer: &SigningKey, cert: Vec<u8>) -> Vec<u8> {
    let env = Envelope {
        schema_version: 1,
        event_id: uuid_v7(),
        author: author.into(),
        author_seq: seq,
        prev_hash: vec![0; 32],
        recorded_at: Some(yipan_core::time::to_ts(at())),
        body: Some(EventBody { kind: Some(event_body::Kind::KeyRotated(KeyRotated { certificate: cert })) }),
        ..Default::default()
    };
    let bytes = env.encode_to_vec();
    let signature = signer.sign(&bytes).to_bytes().to_vec();
    SignedEvent { envelope: bytes, signature, tiers: vec![], sealed: vec![], batch: None }.encode_to_vec()
}

fn uuid_v7() -> Vec<u8> {
    let mut b = [7u8; 16];
    b[6] = 0x70;
    b.to_vec()
}

#[test]
fn a_certified_locality_is_known_and_signs_from_seq_1() {
    let (mut t, _, shaanxi, _) = world();
    let k = key(10).verifying_key();
    assert!(matches!(certify(&mut t, &shaanxi, &cert("610112", &k, 100, 0, 0)), Ok(Applied::Locality { .. })));
    assert_eq!(t.key_for(l("610112"), 1, Some(at())), Ok(k));
    assert_eq!(t.key_for(l("610112"), 1_000_000, None), Ok(k));
    // The same statement again changes nothing.
    assert_eq!(certify(&mut t, &shaanxi, &cert("610112", &k, 100, 0, 0)), Ok(Applied::Duplicate));
    let v = t.view(at());
    assert_eq!(v[0].status, "active");
    assert_eq!(v[0].chain.len(), 3, "{:?}", v[0].chain);
}

#[test]
fn every_bad_statement_is_refused_with_its_code() {
    let (mut t, root, shaanxi, henan) = world();
    let k = key(10).verifying_key();
    // Signed by an unknown root.
    let stranger = key(99);
    let c = statement::authority_certificate(61, "x", &key(98).verifying_key(), 7, at(), at() + year());
    let e = t.apply_statement(&statement::sign(&stranger, c, at()), at()).unwrap_err();
    assert_eq!(e.code(), "trust.unknown_issuer", "{e}");
    // Another province's authority.
    let e = certify(&mut t, &henan, &cert("610112", &k, 100, 0, 0)).unwrap_err();
    assert_eq!(e.code(), "trust.wrong_province", "{e}");
    assert!(e.to_string().contains("41") && e.to_string().contains("610112"), "{e}");
    // The root certifies authorities only.
    assert_eq!(certify(&mut t, &root, &cert("610112", &k, 100, 0, 0)).unwrap_err().code(), "trust.not_root");
    // Expired and not-yet-valid.
    let mut c = cert("610112", &k, 101, 0, 0);
    c.valid_from = at() - year() - year();
    c.valid_until = at() - year();
    assert_eq!(certify(&mut t, &shaanxi, &c).unwrap_err().code(), "trust.expired");
    c.valid_from = at() + TimeDelta::days(2);
    c.valid_until = at() + year();
    assert_eq!(certify(&mut t, &shaanxi, &c).unwrap_err().code(), "trust.not_yet_valid");
    // Two valid certificates with different keys: the second is refused and alerted.
    certify(&mut t, &shaanxi, &cert("610112", &k, 102, 0, 0)).unwrap();
    let e = certify(&mut t, &shaanxi, &cert("610112", &key(11).verifying_key(), 103, 0, 0)).unwrap_err();
    assert_eq!(e.code(), "trust.key_conflict");
    assert!(e.is_alert() && e.to_string().contains("possible key compromise"), "{e}");
    assert_eq!(t.key_for(l("610112"), 5, None), Ok(k), "the held key stays");
    // Revocation of an unknown serial.
    let r = statement::sign(&shaanxi, statement::revocation(424242, 0, "lost"), at());
    assert_eq!(t.apply_statement(&r, at()).unwrap_err().code(), "trust.unknown_serial");
    // Revocation by an authority that did not issue it.
    let r = statement::sign(&henan, statement::revocation(102, 0, "x"), at());
    assert_eq!(t.apply_statement(&r, at()).unwrap_err().code(), "trust.not_issuer");
    // Malformed statements: garbage, a flipped byte, a reused serial.
    assert_eq!(t.apply_statement(b"\xff\xff garbage", at()).unwrap_err().code(), "trust.malformed");
    let mut signed = statement::sign(&shaanxi, statement::locality_certificate(&cert("610113", &k, 104, 0, 0)), at());
    let n = signed.len();
    signed[n / 2] ^= 1;
    let e = t.apply_statement(&signed, at()).unwrap_err();
    assert!(matches!(e.code(), "trust.bad_signature" | "trust.malformed" | "trust.unknown_issuer"), "{e}");
    assert_eq!(certify(&mut t, &shaanxi, &cert("610113", &k, 102, 0, 0)).unwrap_err().code(), "trust.serial_reused");
    // Without an anchor nothing verifies.
    let mut none = TrustState::new(None);
    assert_eq!(certify(&mut none, &shaanxi, &cert("610113", &k, 105, 0, 0)).unwrap_err(), Fault::NoAnchor);
}

#[test]
fn a_revoked_authority_certifies_nothing_more() {
    let (mut t, root, shaanxi, _) = world();
    t.apply_statement(&statement::sign(&root, statement::revocation(61, 0, "key lost"), at()), at()).unwrap();
    let e = certify(&mut t, &shaanxi, &cert("610112", &key(10).verifying_key(), 100, 0, 0)).unwrap_err();
    assert_eq!(e.code(), "trust.issuer_invalid", "{e}");
    // Only the root revokes authorities.
    let (mut t, _, shaanxi, _) = world();
    let e = t.apply_statement(&statement::sign(&shaanxi, statement::revocation(41, 0, "x"), at()), at()).unwrap_err();
    assert_eq!(e.code(), "trust.not_root");
}

#[test]
fn rotation_hands_the_chain_over_at_the_rotation_event_forever() {
    let (mut t, _, shaanxi, _) = world();
    let (old, new) = (key(10), key(11));
    certify(&mut t, &shaanxi, &cert("610112", &old.verifying_key(), 100, 0, 0)).unwrap();
    let next = statement::sign(
        &shaanxi,
        statement::locality_certificate(&cert("610112", &new.verifying_key(), 200, 100, 0)),
        at(),
    );
    // Certified but not in force until the chain says so.
    t.apply_statement(&next, at()).unwrap();
    assert_eq!(t.pending_key(l("610112")), Some(new.verifying_key()));
    assert_eq!(t.key_for(l("610112"), 50, None), Ok(old.verifying_key()));
    // A rotation signed by the new key (or anyone but the old key) is refused.
    let forged = rotation_event("610112", 42, &new, next.clone());
    assert_eq!(t.apply_rotation(&forged, at()).unwrap_err().code(), "trust.bad_rotation");
    let ev = rotation_event("610112", 42, &old, next.clone());
    assert_eq!(t.apply_rotation(&ev, at()), Ok(Applied::Rotated { locality: l("610112"), from_seq: 43 }));
    assert_eq!(t.apply_rotation(&ev, at()), Ok(Applied::Duplicate));
    assert_eq!(t.key_for(l("610112"), 42, None), Ok(old.verifying_key()));
    assert_eq!(t.key_for(l("610112"), 43, None), Ok(new.verifying_key()));
    assert_eq!(t.pending_key(l("610112")), None);
    // The same rotation again at another sequence is refused.
    let again = rotation_event("610112", 60, &new, next);
    assert_eq!(t.apply_rotation(&again, at()).unwrap_err().code(), "trust.bad_rotation");
    // A rotation whose certificate came only inside the event works too.
    let (mut t2, _, shaanxi2, _) = world();
    certify(&mut t2, &shaanxi2, &cert("610112", &old.verifying_key(), 100, 0, 0)).unwrap();
    let next2 = statement::sign(
        &shaanxi2,
        statement::locality_certificate(&cert("610112", &new.verifying_key(), 200, 100, 0)),
        at(),
    );
    assert!(matches!(
        t2.apply_record(&statement::record_of_rotation(rotation_event("610112", 42, &old, next2)), at()),
        Ok(Applied::Rotated { .. })
    ));
    // A rotation of an author nobody certified may simply be early.
    let (mut t3, _, _, _) = world();
    let e = t3.apply_rotation(&rotation_event("610199", 3, &old, vec![]), at()).unwrap_err();
    assert_eq!(e.code(), "trust.unknown_author");
}

#[test]
fn revocation_bounds_the_stolen_key_by_author_sequence_and_recovery_continues() {
    let (mut t, _, shaanxi, _) = world();
    let (stolen, fresh) = (key(10), key(12));
    certify(&mut t, &shaanxi, &cert("610112", &stolen.verifying_key(), 100, 0, 0)).unwrap();
    t.apply_statement(&statement::sign(&shaanxi, statement::revocation(100, 80, "stolen laptop"), at()), at()).unwrap();
    assert_eq!(t.key_for(l("610112"), 80, None), Ok(stolen.verifying_key()), "history stays valid");
    let e = t.key_for(l("610112"), 81, None).unwrap_err();
    assert_eq!(e, KeyFault::Revoked { serial: 100, through: 80, seq: 81 });
    assert!(e.to_string().contains("revoked"), "{e}");
    assert_eq!(t.view(at())[0].status, "revoked");
    // A rotation cannot be signed by a revoked key; recovery must start right after the bound.
    let bad = certify(&mut t, &shaanxi, &cert("610112", &fresh.verifying_key(), 300, 100, 0)).unwrap_err();
    assert_eq!(bad.code(), "trust.bad_replacement", "{bad}");
    let bad = certify(&mut t, &shaanxi, &cert("610112", &fresh.verifying_key(), 301, 100, 90)).unwrap_err();
    assert_eq!(bad.code(), "trust.bad_replacement", "{bad}");
    certify(&mut t, &shaanxi, &cert("610112", &fresh.verifying_key(), 302, 100, 81)).unwrap();
    assert_eq!(t.key_for(l("610112"), 81, None), Ok(fresh.verifying_key()));
    assert_eq!(t.key_for(l("610112"), 80, None), Ok(stolen.verifying_key()));
    assert_eq!(t.view(at())[0].status, "active");
}

#[test]
fn validity_is_checked_against_the_events_recorded_at() {
    let (mut t, _, shaanxi, _) = world();
    let k = key(10).verifying_key();
    certify(&mut t, &shaanxi, &cert("610112", &k, 100, 0, 0)).unwrap();
    let e = t.key_for(l("610112"), 1, Some(at() + year() + TimeDelta::days(1))).unwrap_err();
    assert_eq!(e.code(), "key.outside_validity");
    // A renewal of the same key extends it.
    let mut renewal = cert("610112", &k, 101, 100, 0);
    renewal.valid_until = at() + year() + year();
    certify(&mut t, &shaanxi, &renewal).unwrap();
    assert_eq!(t.key_for(l("610112"), 1, Some(at() + year() + TimeDelta::days(1))), Ok(k));
}

#[test]
fn bootstrap_keys_are_the_exception_and_yield_to_a_matching_certificate() {
    let (mut t, _, shaanxi, _) = world();
    let k = key(10).verifying_key();
    assert_eq!(t.add_bootstrap(l("610112"), k), Ok(true));
    assert_eq!(t.add_bootstrap(l("610112"), k), Ok(false));
    assert_eq!(t.add_bootstrap(l("610112"), key(11).verifying_key()).unwrap_err().code(), "trust.key_conflict");
    assert_eq!(t.view(at())[0].status, "bootstrap");
    certify(&mut t, &shaanxi, &cert("610112", &k, 100, 0, 0)).unwrap();
    assert_eq!(t.view(at())[0].status, "active");
    let e = certify(&mut t, &shaanxi, &cert("610112", &key(11).verifying_key(), 101, 0, 0)).unwrap_err();
    assert_eq!(e.code(), "trust.key_conflict");
}

#[test]
fn review_findings_revocations_tighten_and_handovers_cannot_be_forged_by_a_revoked_key() {
    let (mut t, root, shaanxi, _) = world();
    let (k1, k2, k3) = (key(10), key(11), key(12));
    certify(&mut t, &shaanxi, &cert("610112", &k1.verifying_key(), 100, 0, 0)).unwrap();
    let revoke = |t: &mut TrustState, by: &SigningKey, through: u64| {
        t.apply_statement(&statement::sign(by, statement::revocation(100, through, "stolen"), at()), at())
    };
    // A loose bound can be tightened (by the issuer or the root), never loosened; no unbounded bound.
    assert_eq!(revoke(&mut t, &shaanxi, u64::MAX).unwrap_err().code(), "trust.malformed");
    revoke(&mut t, &shaanxi, 500).unwrap();
    assert_eq!(revoke(&mut t, &shaanxi, 600).unwrap_err().code(), "trust.bad_replacement");
    revoke(&mut t, &root, 80).unwrap();
    assert_eq!(t.key_for(l("610112"), 81, None).unwrap_err().code(), "key.revoked");
    assert_eq!(t.key_for(l("610112"), 80, None), Ok(k1.verifying_key()));
    // A rotation certificate out of the revoked key cannot be used by the thief holding it.
    let next = statement::sign(
        &shaanxi,
        statement::locality_certificate(&cert("610112", &k2.verifying_key(), 200, 100, 0)),
        at(),
    );
    let e = t.apply_statement(&next, at()).unwrap_err();
    assert_eq!(e.code(), "trust.bad_replacement", "{e}");
    let e = t.apply_rotation(&rotation_event("610112", 50, &k1, next), at()).unwrap_err();
    assert_eq!(e.code(), "trust.bad_rotation", "{e}");
    assert_eq!(t.key_for(l("610112"), 60, None), Ok(k1.verifying_key()), "nothing changed");
    // Recovery may not reach back before the current key's first sequence.
    let (mut t2, _, shaanxi2, _) = world();
    certify(&mut t2, &shaanxi2, &cert("610112", &k1.verifying_key(), 100, 0, 0)).unwrap();
    let next = statement::sign(
        &shaanxi2,
        statement::locality_certificate(&cert("610112", &k2.verifying_key(), 200, 100, 0)),
        at(),
    );
    t2.apply_rotation(&rotation_event("610112", 100, &k1, next), at()).unwrap();
    t2.apply_statement(&statement::sign(&shaanxi2, statement::revocation(200, 50, "typo"), at()), at()).unwrap();
    let e = certify(&mut t2, &shaanxi2, &cert("610112", &k3.verifying_key(), 300, 200, 51)).unwrap_err();
    assert!(e.to_string().contains("earlier key"), "{e}");
    assert_eq!(t2.key_for(l("610112"), 60, None), Ok(k1.verifying_key()));
    // A handover at the last possible sequence is refused, not wrapped around.
    let (mut t3, _, shaanxi3, _) = world();
    certify(&mut t3, &shaanxi3, &cert("610112", &k1.verifying_key(), 100, 0, 0)).unwrap();
    let next = statement::sign(
        &shaanxi3,
        statement::locality_certificate(&cert("610112", &k2.verifying_key(), 200, 100, 0)),
        at(),
    );
    let e = t3.apply_rotation(&rotation_event("610112", u64::MAX, &k1, next), at()).unwrap_err();
    assert_eq!(e.code(), "trust.bad_rotation");
    assert_eq!(t3.pending_key(l("610112")), None, "a refused handover leaves no trace, not even its certificate");
}

#[test]
fn a_signature_verified_before_in_this_process_never_vouches_for_another() {
    // One tenant of a host verifies a certificate; another then receives the
    // same statement with a signature altered in each possible way.
    let (mut first, _, shaanxi, _) = world();
    let c = cert("610113", &key(11).verifying_key(), 101, 0, 0);
    let genuine = statement::sign(&shaanxi, statement::locality_certificate(&c), at());
    assert!(matches!(first.apply_statement(&genuine, at()), Ok(Applied::Locality { .. })));
    let s = yipan_proto::v1::SignedStatement::decode(genuine.as_slice()).unwrap();
    for i in 0..s.signature.len() {
        let mut bent = s.clone();
        bent.signature[i] ^= 0x01;
        let (mut other, _, _, _) = world();
        let e = other.apply_statement(&bent.encode_to_vec(), at()).unwrap_err();
        assert_eq!(e.code(), "trust.bad_signature", "signature byte {i}: {e}");
    }
    // The signature moved into the statement's bytes: never the same check.
    let mut shifted = s.clone();
    shifted.statement.extend_from_slice(&s.signature[..1]);
    shifted.signature = s.signature[1..].to_vec();
    let (mut other, _, _, _) = world();
    assert!(other.apply_statement(&shifted.encode_to_vec(), at()).is_err());
    // The genuine one is still accepted by a fresh state (from the cache or not).
    let (mut again, _, _, _) = world();
    assert!(matches!(again.apply_statement(&genuine, at()), Ok(Applied::Locality { .. })));
}

#[test]
fn states_of_one_process_share_equal_entries_and_never_each_others_changes() {
    let (mut a, _, shaanxi, henan) = world();
    let (mut b, _, _, _) = world();
    let certs = [("610112", 10u8, 100u64), ("610113", 11, 101), ("411522", 12, 102)];
    for (code, k, serial) in certs {
        let by = if code.starts_with("61") { &shaanxi } else { &henan };
        certify(&mut a, by, &cert(code, &key(k).verifying_key(), serial, 0, 0)).unwrap();
        certify(&mut b, by, &cert(code, &key(k).verifying_key(), serial, 0, 0)).unwrap();
    }
    assert_eq!(a.shared_entries(&b), 3, "equal entries are one allocation");
    // A hand-added key in one state is its own.
    assert!(b.add_bootstrap(l("610115"), key(20).verifying_key()).unwrap());
    assert_eq!(a.shared_entries(&b), 3);
    assert!(!a.knows(l("610115")));
    // A revocation applied to one state changes that state only.
    let revocation = statement::sign(&shaanxi, statement::revocation(100, 80, "stolen laptop"), at());
    a.apply_statement(&revocation, at()).unwrap();
    assert_eq!(a.shared_entries(&b), 2);
    assert!(a.key_for(l("610112"), 81, None).is_err());
    assert_eq!(b.key_for(l("610112"), 81, None), Ok(key(10).verifying_key()), "b never saw the revocation");
    // Once b applies it too, the two share the revoked entry again.
    b.apply_statement(&revocation, at()).unwrap();
    assert_eq!(a.shared_entries(&b), 3);
    assert!(b.key_for(l("610112"), 81, None).is_err());
    // A refused revocation (loosening the bound) leaves the entry shared, not copied.
    let looser = statement::sign(&shaanxi, statement::revocation(100, 90, "again"), at());
    assert_eq!(a.apply_statement(&looser, at()).unwrap_err().code(), "trust.bad_replacement");
    assert_eq!(a.shared_entries(&b), 3);
    // A rotation tried and refused on a copy leaves both as they were.
    let forged = rotation_event("610113", 5, &key(99), vec![]);
    assert!(a.apply_rotation(&forged, at()).is_err());
    assert_eq!(a.shared_entries(&b), 3);
}
