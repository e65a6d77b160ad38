//! `repair::parse_request` / `parse_reply` and `RepairRequest::count`: the
//! payloads of repair requests (from any recipient) and of their answers.
//!
//! Checks: errors never repeat a long input value (they are sent back);
//! what parses re-encodes and parses to the same; the re-send count of a
//! request is within the range asked, `MAX_RESEND` and the budget, and a
//! request is refused exactly when its range is empty or starts at 0.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yipan_fuzz::*;
use yipan_sync::repair::{parse_reply, parse_request, MAX_RESEND, RESEND_BUDGET_PER_MINUTE};

fuzz_target!(|data: &[u8]| {
    let long = serde_json::from_slice::<serde_json::Value>(data).map(|v| long_strings(&v)).unwrap_or_default();
    match parse_request(data) {
        Err(e) => {
            assert_no_echo("repair request error", &e, &long);
            assert!(e.len() < 512, "overlong error: {e}");
        }
        Ok(req) => {
            let text = serde_json::to_vec(&req).expect("encodes");
            assert_eq!(parse_request(&text), Ok(req.clone()));
            for budget in [0, 1, 7, MAX_RESEND as u64 + 1, RESEND_BUDGET_PER_MINUTE, u64::MAX] {
                match req.count(budget) {
                    Ok(n) => {
                        assert!(req.from >= 1 && req.to >= req.from);
                        let n = n as u64;
                        assert!(n <= MAX_RESEND as u64 && n <= budget && n <= req.to - req.from + 1);
                        assert!(budget == 0 || n >= 1);
                    }
                    Err(e) => {
                        assert!(req.from == 0 || req.to < req.from, "refused {req:?}: {e}");
                        assert!(e.len() < 100);
                    }
                }
            }
        }
    }
    match parse_reply(data) {
        Err(e) => assert_no_echo("repair reply error", &e, &long),
        Ok(r) => {
            let text = serde_json::to_vec(&r).expect("encodes");
            assert_eq!(parse_reply(&text), Ok(r));
        }
    }
});
