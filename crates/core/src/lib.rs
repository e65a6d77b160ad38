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
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head}… ({} bytes)", s.len())
    }
}
