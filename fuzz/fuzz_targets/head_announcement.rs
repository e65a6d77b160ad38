//! `repair::parse_head`: a channel-head announcement's payload (decimal text).
//!
//! Checks: a head is read exactly when the payload is UTF-8 whose trimmed
//! text is an optional `+` and decimal digits worth at most `u64::MAX`; it
//! is that number; the announcer's encoding (`to_string`) reads back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yipan_sync::repair::parse_head;

fuzz_target!(|data: &[u8]| {
    let got = parse_head(data);
    let expected = std::str::from_utf8(data).ok().and_then(|s| {
        let t = s.trim();
        let digits = t.strip_prefix('+').unwrap_or(t);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // Accumulate by hand (not `str::parse`) as an independent oracle.
        digits.bytes().try_fold(0u64, |n, b| n.checked_mul(10)?.checked_add(u64::from(b - b'0')))
    });
    assert_eq!(got, expected, "payload {:?}", String::from_utf8_lossy(data));
    if let Some(n) = got {
        assert_eq!(parse_head(n.to_string().as_bytes()), Some(n));
    }
});
