//! `TrustState::apply_record` on untrusted bytes (the trust stream).
//!
//! Input: one mode byte, then a `TrustRecord`. Mode bit 0 set: a record that
//! decodes as a signed statement is re-signed first, by the root (bit 1
//! clear) or by the Henan authority (bit 1 set), so the checks after the
//! signature (kinds, provinces, validity, serials, replacements,
//! revocations) are reached too.
//!
//! Checks: never panics; a refused record changes nothing (same current
//! keys, same answers for the known author); applying the same record again
//! is a duplicate or the same refusal; the known author's key for a
//! sequence is either its certified key or a key the record certified.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yipan_fuzz::*;
use yipan_proto::v1::{trust_record, SignedStatement, TrustRecord};
use yipan_proto::Message;
use yipan_trust::Applied;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut bytes = rest.to_vec();
    if mode & 1 == 1 {
        if let Ok(TrustRecord { record: Some(trust_record::Record::Statement(s)) }) = TrustRecord::decode(rest) {
            use ed25519_dalek::Signer;
            let signer = if mode & 2 == 0 { key(ROOT_KEY) } else { key(AUTHORITY_KEY) };
            let signature = signer.sign(&s.statement).to_bytes().to_vec();
            let s = SignedStatement { statement: s.statement, signature };
            bytes = TrustRecord { record: Some(trust_record::Record::Statement(s)) }.encode_to_vec();
        }
    }
    let at = trust_time();
    let mut t = trust_world();
    let before = t.current_keys();
    let author = loc(AUTHOR);
    match t.apply_record(&bytes, at) {
        Err(fault) => {
            assert!(!fault.code().is_empty() && fault.code().starts_with("trust."));
            assert_eq!(t.current_keys(), before, "a refused record changed the keys: {fault}");
            let again = t.apply_record(&bytes, at).expect_err("refused twice");
            assert_eq!(again.code(), fault.code());
        }
        Ok(applied) => {
            assert_eq!(t.apply_record(&bytes, at), Ok(Applied::Duplicate), "{applied:?} applied twice");
            for seq in [1u64, 2, 1000] {
                if let Ok(k) = t.key_for(author, seq, None) {
                    let known = k == key(AUTHOR_KEY).verifying_key()
                        || t.view(at).iter().any(|v| v.spans.iter().any(|s| s.public_key == hex_of(&k)));
                    assert!(known, "key of {AUTHOR}#{seq} comes from nowhere");
                }
            }
        }
    }
});

fn hex_of(k: &ed25519_dalek::VerifyingKey) -> String {
    k.to_bytes().iter().map(|b| format!("{b:02x}")).collect()
}
