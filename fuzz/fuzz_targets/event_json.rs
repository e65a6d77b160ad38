//! `json::draft_from_value` (the HTTP API's and CLI's event JSON), then
//! `validate_draft` as an append does.
//!
//! Checks: errors never repeat more than a short prefix of any long input
//! string (an input that quotes the error's own words is told apart by
//! re-running with that string replaced); parsing is deterministic (same draft, same content id, with or
//! without a person-key secret); a draft survives a protobuf round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yipan_core::json::draft_from_value;
use yipan_fuzz::*;
use yipan_proto::v1::EventDraft;
use yipan_proto::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let long = long_strings(&value);
    for secret in [Some(&b"fuzz-secret"[..]), None] {
        match draft_from_value(value.clone(), secret) {
            Err(e) => {
                let msg = e.to_string();
                assert_no_echo_rerun("draft_from_value error", &msg, &long, |s| {
                    draft_from_value(neutralised(&value, s), secret).err().map(|e| e.to_string())
                });
                assert_eq!(draft_from_value(value.clone(), secret).unwrap_err(), e, "not deterministic");
            }
            Ok(d) => {
                assert_eq!(draft_from_value(value.clone(), secret).as_ref(), Ok(&d), "not deterministic");
                let back = EventDraft::decode(d.encode_to_vec().as_slice()).expect("draft round trip");
                assert_eq!(back, d);
                for author in [ME, AUTHOR] {
                    if let Err(e) = yipan_core::validate_draft(loc(author), &d) {
                        assert_no_echo_rerun("validate_draft error", &e.to_string(), &long, |s| {
                            let d = draft_from_value(neutralised(&value, s), secret).ok()?;
                            yipan_core::validate_draft(loc(author), &d).err().map(|e| e.to_string())
                        });
                    }
                }
            }
        }
    }
});
