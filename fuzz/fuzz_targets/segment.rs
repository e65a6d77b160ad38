//! `segment::decode` on untrusted bytes (a damaged or hostile store), and
//! `StoredEvent::decode` on every entry it yields.
//!
//! Checks: an error, or entries in strictly increasing seq whose bytes lie
//! inside the input and that encode back to exactly the input; an entry that
//! decodes as a `StoredEvent` re-encodes to its own bytes (canonical form).
#![no_main]

use libfuzzer_sys::fuzz_target;
use yipan_log::{segment, StoredEvent};
use yipan_proto::Message;

fuzz_target!(|data: &[u8]| {
    match segment::decode(data) {
        Err(e) => assert!(e.len() < 200, "overlong error: {e}"),
        Ok(entries) => {
            let range = data.as_ptr_range();
            let mut prev = None;
            for e in &entries {
                let inner = e.bytes.as_ptr_range();
                assert!(range.start <= inner.start && inner.end <= range.end, "entry bytes outside the input");
                if let Some(p) = prev {
                    assert!(e.seq > p, "seq {} after {p}", e.seq);
                }
                prev = Some(e.seq);
                if let Ok(ev) = StoredEvent::decode(e.bytes) {
                    assert_eq!(ev.signed.encode_to_vec(), e.bytes, "accepted a non-canonical SignedEvent");
                    assert_eq!(ev.hash, yipan_log::event::hash_envelope(&ev.signed.envelope));
                }
            }
            assert_eq!(segment::encode(&entries), data, "decode accepted a non-canonical segment");
        }
    }
});
