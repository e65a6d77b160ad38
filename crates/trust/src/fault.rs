//! Why a trust statement or a key lookup was refused: typed, with stable codes.

use std::fmt;

/// Why a trust record was refused. Each has a stable [`Fault::code`]
/// (documented in docs/trust.md) for quarantine entries, metrics and alerts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    /// Not a decodable record, or a required field is missing or out of range.
    #[error("malformed trust record: {0}")]
    Malformed(String),
    /// This holder has no trust anchor configured.
    #[error("no trust anchor is configured; statements cannot be verified")]
    NoAnchor,
    /// Signed by a key that is neither the anchor nor a certified authority.
    #[error(
        "signed by key {key}…, which is neither the trust anchor nor a certified province authority (unknown root?)"
    )]
    UnknownIssuer {
        /// First hex digits of the issuer key.
        key: String,
    },
    /// The signature does not verify with the issuer key.
    #[error("forged or altered: the signature does not verify with the issuer key {key}…")]
    BadSignature {
        /// First hex digits of the issuer key.
        key: String,
    },
    /// Only the root may issue this (authority certificates, their revocation).
    #[error("{0}")]
    NotRoot(String),
    /// A province authority certified a locality of another province.
    #[error("authority of province {authority} may not certify {locality} (province {province})")]
    WrongProvince {
        /// Issuer's province.
        authority: String,
        /// The certified locality.
        locality: String,
        /// Its province.
        province: String,
    },
    /// The certificate's validity ended before it was received.
    #[error("certificate serial {serial} expired at {until} (received {at})")]
    Expired {
        /// Serial.
        serial: u64,
        /// End of validity.
        until: String,
        /// When it was received.
        at: String,
    },
    /// The certificate's validity starts after it was received.
    #[error("certificate serial {serial} is not valid before {from} (received {at})")]
    NotYetValid {
        /// Serial.
        serial: u64,
        /// Start of validity.
        from: String,
        /// When it was received.
        at: String,
    },
    /// The issuing authority was revoked, or its own certificate is not valid now.
    #[error("issuer authority of province {province} (serial {serial}) {problem}")]
    IssuerInvalid {
        /// Its province.
        province: String,
        /// Its serial.
        serial: u64,
        /// Revoked or expired.
        problem: String,
    },
    /// Two valid certificates for one locality with different keys: possible compromise.
    #[error("two valid certificates for {locality} with different keys (serials {held} and {new}): possible key compromise; the new one is refused")]
    KeyConflict {
        /// The locality.
        locality: String,
        /// Serial of the certificate held (0: a hand-added bootstrap key).
        held: u64,
        /// Serial of the refused certificate.
        new: u64,
    },
    /// A serial already names another certificate.
    #[error("serial {0} already names another certificate")]
    SerialReused(u64),
    /// A revocation names a serial nobody certified.
    #[error("revocation of unknown serial {0}")]
    UnknownSerial(u64),
    /// A revocation by an authority that did not issue the certificate.
    #[error("revocation of serial {serial} by an authority that did not issue it (only its issuer or the root may revoke it)")]
    NotIssuer {
        /// The serial.
        serial: u64,
    },
    /// `replaces_serial` / `first_seq` do not fit the locality's history.
    #[error("{0}")]
    BadReplacement(String),
    /// A key-rotation event that cannot be applied.
    #[error("key rotation {0}")]
    BadRotation(String),
    /// The rotation's author has no key known yet (may arrive later).
    #[error("key rotation by {0}, which has no certified key yet")]
    UnknownAuthor(String),
}

impl Fault {
    /// Stable code (docs/trust.md).
    pub fn code(&self) -> &'static str {
        match self {
            Fault::Malformed(_) => "trust.malformed",
            Fault::NoAnchor => "trust.no_anchor",
            Fault::UnknownIssuer { .. } => "trust.unknown_issuer",
            Fault::BadSignature { .. } => "trust.bad_signature",
            Fault::NotRoot(_) => "trust.not_root",
            Fault::WrongProvince { .. } => "trust.wrong_province",
            Fault::Expired { .. } => "trust.expired",
            Fault::NotYetValid { .. } => "trust.not_yet_valid",
            Fault::IssuerInvalid { .. } => "trust.issuer_invalid",
            Fault::KeyConflict { .. } => "trust.key_conflict",
            Fault::SerialReused(_) => "trust.serial_reused",
            Fault::UnknownSerial(_) => "trust.unknown_serial",
            Fault::NotIssuer { .. } => "trust.not_issuer",
            Fault::BadReplacement(_) => "trust.bad_replacement",
            Fault::BadRotation(_) => "trust.bad_rotation",
            Fault::UnknownAuthor(_) => "trust.unknown_author",
        }
    }

    /// Whether an operator must be alerted (possible compromise), not just told.
    pub fn is_alert(&self) -> bool {
        matches!(self, Fault::KeyConflict { .. } | Fault::BadSignature { .. } | Fault::UnknownIssuer { .. })
    }
}

/// Why no key could be found for an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyFault {
    /// Nothing is known about this author (or this sequence) yet.
    Unknown {
        /// The author.
        author: String,
    },
    /// The key was revoked and the event lies past the revocation's bound.
    Revoked {
        /// Serial of the revoked certificate.
        serial: u64,
        /// Last author sequence still valid for that key.
        through: u64,
        /// The event's sequence.
        seq: u64,
    },
    /// The event's recorded_at lies outside every certificate of its key.
    OutsideValidity {
        /// Serial of the key's newest certificate.
        serial: u64,
        /// The event's recorded_at.
        recorded: String,
    },
}

impl KeyFault {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            KeyFault::Unknown { .. } => "key.unknown",
            KeyFault::Revoked { .. } => "key.revoked",
            KeyFault::OutsideValidity { .. } => "key.outside_validity",
        }
    }
}

impl fmt::Display for KeyFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyFault::Unknown { author } => write!(f, "unknown author {author}: no certified key for it is known"),
            KeyFault::Revoked { serial, through, seq } => write!(
                f,
                "signed by a revoked key: certificate serial {serial} is valid through author sequence {through}, this is {seq}"
            ),
            KeyFault::OutsideValidity { serial, recorded } => {
                write!(f, "recorded at {recorded}, outside the validity of its key's certificates (serial {serial})")
            }
        }
    }
}
