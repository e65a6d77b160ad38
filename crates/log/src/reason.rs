//! Why a received message was set aside: a typed code with a stable name
//! (documented in docs/replication.md and docs/trust.md), so that callers,
//! metrics and alerts match codes, never message text.

/// The stable code of a quarantine entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// Not a decodable signed event (or its canonical form is wrong).
    Malformed,
    /// The author is not a division code, or is this node.
    Author,
    /// The signature does not verify with the key certified for that author sequence.
    Forged,
    /// Fails the schema or domain validation (version, sequence, id, tiers, body, times).
    Schema,
    /// Not addressed to this node (or at channel position 0).
    WrongRecipient,
    /// An event id already held with different content.
    IdConflict,
    /// ALERT: another event already holds this channel position.
    ForkChannel,
    /// ALERT: the author sequence is not after what this author already sent.
    ForkSequence,
    /// A code of the trust layer: `key.*` for events, `trust.*` for trust records.
    Trust(&'static str),
}

impl Code {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Malformed => "event.malformed",
            Code::Author => "event.author",
            Code::Forged => "event.forged",
            Code::Schema => "event.schema",
            Code::WrongRecipient => "event.wrong_recipient",
            Code::IdConflict => "event.id_conflict",
            Code::ForkChannel => "fork.channel",
            Code::ForkSequence => "fork.sequence",
            Code::Trust(c) => c,
        }
    }

    /// Whether it proves two different events signed at one position (an alert).
    pub fn is_fork(self) -> bool {
        matches!(self, Code::ForkChannel | Code::ForkSequence)
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_names() {
        // Changing one of these breaks operators' alert rules: docs/replication.md lists them.
        let all = [
            (Code::Malformed, "event.malformed"),
            (Code::Author, "event.author"),
            (Code::Forged, "event.forged"),
            (Code::Schema, "event.schema"),
            (Code::WrongRecipient, "event.wrong_recipient"),
            (Code::IdConflict, "event.id_conflict"),
            (Code::ForkChannel, "fork.channel"),
            (Code::ForkSequence, "fork.sequence"),
            (Code::Trust("key.revoked"), "key.revoked"),
        ];
        for (c, s) in all {
            assert_eq!(c.as_str(), s);
        }
        assert!(Code::ForkChannel.is_fork() && !Code::Forged.is_fork());
    }
}
