//! Building and reading signed statements and trust records.

use chrono::{DateTime, Utc};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use prost::Message;
use yipan_core::time::{from_ts, to_ts};
use yipan_proto::v1::{
    statement, trust_record, AuthorityCertificate, LocalityCertificate, Revocation, SignedStatement, Statement,
    TrustRecord,
};

use crate::Fault;

/// Schema version of statements written by this build.
pub const STATEMENT_VERSION: u32 = 1;

/// A fresh random serial (never 0).
pub fn new_serial() -> u64 {
    let mut b = [0u8; 8];
    // A failed random source is fatal for a CA tool; fall back to time is not acceptable.
    getrandom::getrandom(&mut b).expect("the operating system's random source failed");
    u64::from_be_bytes(b).max(1)
}

/// Signs `kind` as `issuer`: the encoded `SignedStatement`.
pub fn sign(issuer: &SigningKey, kind: statement::Kind, issued_at: DateTime<Utc>) -> Vec<u8> {
    let st = Statement {
        schema_version: STATEMENT_VERSION,
        issuer_key: issuer.verifying_key().to_bytes().to_vec(),
        issued_at: Some(to_ts(issued_at)),
        kind: Some(kind),
    };
    let bytes = st.encode_to_vec();
    let signature = issuer.sign(&bytes).to_bytes().to_vec();
    SignedStatement { statement: bytes, signature }.encode_to_vec()
}

/// The root certifies a province authority.
pub fn authority_certificate(
    province: u8,
    name: &str,
    key: &VerifyingKey,
    serial: u64,
    valid_from: DateTime<Utc>,
    valid_until: DateTime<Utc>,
) -> statement::Kind {
    statement::Kind::Authority(AuthorityCertificate {
        province: format!("{province:02}"),
        name: name.into(),
        public_key: key.to_bytes().to_vec(),
        serial,
        valid_from: Some(to_ts(valid_from)),
        valid_until: Some(to_ts(valid_until)),
    })
}

/// What a locality certificate says.
#[derive(Debug, Clone)]
pub struct LocalityCert {
    /// Division code.
    pub locality: yipan_core::Locality,
    /// Its name.
    pub name: String,
    /// Its key.
    pub key: VerifyingKey,
    /// Serial.
    pub serial: u64,
    /// Validity start.
    pub valid_from: DateTime<Utc>,
    /// Validity end.
    pub valid_until: DateTime<Utc>,
    /// Serial of the certificate it follows (0: first).
    pub replaces_serial: u64,
    /// Recovery: first author sequence signed by this key (0 otherwise).
    pub first_seq: u64,
}

/// A province authority certifies a locality.
pub fn locality_certificate(c: &LocalityCert) -> statement::Kind {
    statement::Kind::Locality(LocalityCertificate {
        locality: c.locality.to_string(),
        name: c.name.clone(),
        public_key: c.key.to_bytes().to_vec(),
        serial: c.serial,
        valid_from: Some(to_ts(c.valid_from)),
        valid_until: Some(to_ts(c.valid_until)),
        replaces_serial: c.replaces_serial,
        first_seq: c.first_seq,
    })
}

/// A revocation of `serial`, valid through author sequence `through` (locality keys).
pub fn revocation(serial: u64, through: u64, reason: &str) -> statement::Kind {
    statement::Kind::Revocation(Revocation { serial, valid_through_seq: through, reason: reason.into() })
}

/// Wraps a signed statement for the trust stream.
pub fn record_of_statement(signed: Vec<u8>) -> Vec<u8> {
    // Decoding cannot fail for bytes this module produced; a caller passing
    // garbage gets a record that verifiers refuse as malformed.
    let s = SignedStatement::decode(signed.as_slice()).unwrap_or_default();
    TrustRecord { record: Some(trust_record::Record::Statement(s)) }.encode_to_vec()
}

/// Wraps a key-rotation event (encoded `SignedEvent`) for the trust stream.
pub fn record_of_rotation(event: Vec<u8>) -> Vec<u8> {
    TrustRecord { record: Some(trust_record::Record::KeyRotationEvent(event)) }.encode_to_vec()
}

/// A decoded, not yet verified, signed statement.
pub struct Decoded {
    /// The signed bytes.
    pub bytes: Vec<u8>,
    /// The signature.
    pub signature: [u8; 64],
    /// The statement.
    pub statement: Statement,
    /// The issuer key.
    pub issuer: VerifyingKey,
}

/// Decodes a `SignedStatement` (no signature check).
pub fn decode(signed: &[u8]) -> Result<Decoded, Fault> {
    let s = SignedStatement::decode(signed).map_err(|e| Fault::Malformed(format!("not a SignedStatement: {e}")))?;
    decode_parts(s)
}

pub(crate) fn decode_parts(s: SignedStatement) -> Result<Decoded, Fault> {
    let statement =
        Statement::decode(s.statement.as_slice()).map_err(|e| Fault::Malformed(format!("not a Statement: {e}")))?;
    if statement.schema_version != STATEMENT_VERSION {
        return Err(Fault::Malformed(format!(
            "statement schema version {} is not supported (this build reads {STATEMENT_VERSION})",
            statement.schema_version
        )));
    }
    let signature: [u8; 64] = s
        .signature
        .as_slice()
        .try_into()
        .map_err(|_| Fault::Malformed(format!("signature is {} bytes, not 64", s.signature.len())))?;
    let issuer = key(&statement.issuer_key, "issuer_key")?;
    Ok(Decoded { bytes: s.statement, signature, statement, issuer })
}

/// A 32-byte ed25519 public key field.
pub(crate) fn key(bytes: &[u8], field: &str) -> Result<VerifyingKey, Fault> {
    let b: [u8; 32] =
        bytes.try_into().map_err(|_| Fault::Malformed(format!("{field} is {} bytes, not 32", bytes.len())))?;
    VerifyingKey::from_bytes(&b).map_err(|_| Fault::Malformed(format!("{field} is not an ed25519 public key")))
}

/// A required timestamp field.
pub(crate) fn time(ts: Option<&yipan_proto::Timestamp>, field: &str) -> Result<DateTime<Utc>, Fault> {
    ts.and_then(from_ts).ok_or_else(|| Fault::Malformed(format!("{field} is missing or not a valid instant")))
}

/// Decodes a trust record into its part.
pub enum Record {
    /// A signed statement.
    Statement(SignedStatement),
    /// A key-rotation event.
    Rotation(Vec<u8>),
}

/// Decodes a `TrustRecord`.
pub fn decode_record(bytes: &[u8]) -> Result<Record, Fault> {
    let r = TrustRecord::decode(bytes).map_err(|e| Fault::Malformed(format!("not a TrustRecord: {e}")))?;
    match r.record {
        Some(trust_record::Record::Statement(s)) => Ok(Record::Statement(s)),
        Some(trust_record::Record::KeyRotationEvent(e)) => Ok(Record::Rotation(e)),
        None => Err(Fault::Malformed("empty TrustRecord".into())),
    }
}

/// Short hex of a key for messages (never a secret).
pub fn short(key: &VerifyingKey) -> String {
    hex::encode(&key.to_bytes()[..6])
}

/// RFC 3339 text.
pub(crate) fn text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
