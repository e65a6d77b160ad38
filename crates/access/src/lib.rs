//! Who may do what (DESIGN.md invariant 11, "nothing is anonymous").
//!
//! - [`role`]: the roles a credential carries, what each may do, which
//!   personal tiers each may receive.
//! - [`token`]: bearer API tokens: created once, stored only as hashes in a
//!   `0600` file beside the node's data, listed, revoked, expired.
//! - [`secret`]: private files (`0600`, refused when wider), URL redaction so
//!   no password reaches a log line.
//! - [`tls`]: rustls server and client configurations from PEM files, with
//!   optional client certificates (mTLS) mapped to roles.
//! - [`pki`]: a throw-away certificate authority (rcgen) for the main job and
//!   tests; production uses the deployment's own CA.
//! - [`nats`]: NATS users (NKeys) with least-privilege permissions per
//!   locality, downstream role, auditor and admin, rendered as a
//!   `nats-server` authorization block.

pub mod error;
pub mod nats;
pub mod pki;
pub mod role;
pub mod secret;
pub mod tls;
pub mod token;

pub use error::{Error, Result};
pub use role::{Permission, Role};
pub use token::{Caller, TokenStore};
