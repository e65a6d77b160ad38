//! Yipan's wire schema: prost types generated from `proto/yipan/v1/` at build
//! time, with serde impls following the canonical proto3 JSON mapping.
//!
//! - [`v1`]: the envelope ([`v1::SignedEvent`], [`v1::Envelope`]), the event
//!   catalogue ([`v1::EventBody`] and its variants) and the personal tiers.
//! - [`DESCRIPTOR_SET`]: the encoded `FileDescriptorSet`, for tools that need
//!   reflection (e.g. generating classes in another language).

/// Schema version written by this build.
pub const SCHEMA_VERSION: u32 = 1;

/// Encoded `google.protobuf.FileDescriptorSet` of `proto/yipan/v1`.
pub const DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/yipan_descriptor.bin"));

/// Generated types of package `yipan.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/yipan.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/yipan.v1.serde.rs"));
}

pub use pbjson_types::Timestamp;
pub use prost::Message;
