//! Yipan's sans-IO domain core: no tokio, no sled, no NATS.
//!
//! - [`audience`]: downstream roles and the personal tiers each may receive.
//! - [`locality`]: GB/T 2260 division codes ([`Locality`]) and their provinces.
//! - [`person`]: pseudonymous person keys and the resident-ID check digit.
//! - [`kind`]: the event catalogue ([`EventKind`]) with who may author each
//!   kind, which personal tiers it may carry, and its JSON body mapping.
//! - [`validate`]: checks a draft event before a node signs it.
//! - [`json`]: the JSON form of events for the CLI and API (input drafts,
//!   output of stored events with personal fields masked).
//! - [`time`]: conversions between protobuf timestamps and chrono.

pub mod audience;
pub mod division;
pub mod error;
pub mod json;
pub mod kind;
pub mod locality;
pub mod person;
pub mod time;
pub mod validate;

pub use error::{Error, Result};
pub use kind::{EventKind, Role};
pub use locality::Locality;
pub use person::PersonKey;
pub use validate::{validate_draft, Checked, Warning};

/// A caller's value as it may be echoed in a message: at most 40 characters,
/// so a huge or hostile input is never reflected back whole.
pub fn clip(s: &str) -> String {
    const MAX: usize = 40;
    if may_be_personal(s) {
        return format!("(a value of {} characters, not shown: it may be personal)", s.chars().count());
    }
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head}… ({} bytes)", s.len())
    }
}

/// Whether an input string might be a name, an ID number or a phone number,
/// and so must never be echoed in an error, a log line or a metric: any
/// non-ASCII text (names are Chinese), or a run of 11 or more digits (phone
/// numbers are 11, resident ID numbers 15 or 18; division codes are 6 or 9
/// and stay visible).
pub fn may_be_personal(s: &str) -> bool {
    let mut run = 0usize;
    for c in s.chars() {
        if !c.is_ascii() {
            return true;
        }
        run = if c.is_ascii_digit() { run + 1 } else { 0 };
        if run >= 11 {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod clip_tests {
    use super::*;

    #[test]
    fn personal_looking_values_are_never_echoed() {
        for v in ["41152219920315002X", "13912345678", "李秀英", "name 李", "tel13912345678x"] {
            let c = clip(v);
            assert!(!c.contains(v) && c.contains("not shown"), "{v} → {c}");
        }
        for v in ["610112", "610112001", "ArrivalRegistered", "2026-10-08"] {
            assert_eq!(clip(v), v);
        }
    }
}
