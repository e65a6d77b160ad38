//! Trust as signed data (DESIGN.md invariant 10; docs/trust.md).
//!
//! A deployment has one trust anchor: the national root's public key. The
//! root certifies province authorities; an authority certifies the
//! localities of its own province. Certificates and revocations are signed
//! statements ([`statement`], `proto/yipan/v1/trust.proto`) that travel on
//! the trust stream; a locality hands its chain to a new key with a
//! `KeyRotated` event signed by the old key. [`TrustState`] is sans-IO: it
//! verifies records up to the anchor in the order given and answers which
//! key signs an author's event at a given sequence ([`TrustState::key_for`]);
//! the log, the audit and the node feed it from sled, from events and from
//! NATS.

pub mod batch;
mod fault;
pub mod state;
pub mod statement;

pub use fault::{Fault, KeyFault};
pub use state::{Applied, AuthorityEntry, CertEntry, LocalityView, Span, TrustState};

#[cfg(test)]
mod tests;
