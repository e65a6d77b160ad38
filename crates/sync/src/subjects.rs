//! Subject and stream names (documented in `docs/replication.md`).
//!
//! | what | subject |
//! | --- | --- |
//! | an event for a recipient | `yipan.v1.ev.<recipient province>.<recipient>.<author>` |
//! | a channel-head announcement | `yipan.v1.head.<recipient province>.<recipient>.<author>` |
//! | a recipient's re-send request to an author | `yipan.v1.repair.<author>.<recipient>` |
//! | the author's answer to it | `yipan.v1.repaired.<recipient province>.<recipient>.<author>` |
//! | a certificate or revocation by the root (`00`) or a province authority | `yipan.v1.trust.<issuer province>.statement` |
//! | a locality's key handover | `yipan.v1.trust.<province>.rotation.<locality>` |
//!
//! Trust records live in one small stream, `YIPAN_TRUST` (every node needs
//! all of it: thousands of certificates, not millions of events), sharded by
//! province in its subjects so that each authority may publish only its own.
//! Events live in one stream per recipient province, `YIPAN_EV_<province>`,
//! so streams shard by province at national scale. No subject carries a
//! person key or any personal value.

use yipan_core::Locality;

/// Subject of an event from `author` addressed to `recipient`.
pub fn event(recipient: Locality, author: Locality) -> String {
    format!("yipan.v1.ev.{:02}.{recipient}.{author}", recipient.province())
}

/// Filter of everything addressed to `me`.
pub fn inbox_filter(me: Locality) -> String {
    format!("yipan.v1.ev.{:02}.{me}.*", me.province())
}

/// Stream holding events for recipients in `province`.
pub fn stream(province: u8) -> String {
    format!("YIPAN_EV_{province:02}")
}

/// Subjects of the stream of `province`.
pub fn stream_subjects(province: u8) -> String {
    format!("yipan.v1.ev.{province:02}.>")
}

/// Durable consumer name of a node.
pub fn consumer(me: Locality) -> String {
    format!("node-{me}")
}

/// Durable consumer name of a host's shared inbox for every locality of
/// `province` (read by the NATS user of the same name).
pub fn province_consumer(province: u8) -> String {
    format!("inbox-{province:02}")
}

/// Subject of `author`'s channel-head announcement to `recipient`.
pub fn head(recipient: Locality, author: Locality) -> String {
    format!("yipan.v1.head.{:02}.{recipient}.{author}", recipient.province())
}

/// Filter of every head announcement to `me`.
pub fn head_filter(me: Locality) -> String {
    format!("yipan.v1.head.{:02}.{me}.*", me.province())
}

/// Subject of `recipient`'s re-send requests to `author`. The recipient is
/// a subject token so that NATS permissions bind it to the requesting user:
/// a locality can ask only for its own channels.
pub fn repair(author: Locality, recipient: Locality) -> String {
    format!("yipan.v1.repair.{author}.{recipient}")
}

/// Filter of every re-send request to `author`.
pub fn repair_filter(author: Locality) -> String {
    format!("yipan.v1.repair.{author}.*")
}

/// Subject of `author`'s answer to a re-send request of `recipient`.
pub fn repaired(recipient: Locality, author: Locality) -> String {
    format!("yipan.v1.repaired.{:02}.{recipient}.{author}", recipient.province())
}

/// Filter of every repair answer to `me`.
pub fn repaired_filter(me: Locality) -> String {
    format!("yipan.v1.repaired.{:02}.{me}.*", me.province())
}

/// The trust stream.
pub const TRUST_STREAM: &str = "YIPAN_TRUST";
/// Subjects of the trust stream.
pub const TRUST_SUBJECTS: &str = "yipan.v1.trust.>";

/// Subject of statements issued by the authority of `province` (`0`: the national root).
pub fn trust_statement(province: u8) -> String {
    format!("yipan.v1.trust.{province:02}.statement")
}

/// Subject of `author`'s key handovers.
pub fn trust_rotation(author: Locality) -> String {
    format!("yipan.v1.trust.{:02}.rotation.{author}", author.province())
}

/// The last token of a subject (the author of events and heads).
pub fn last_token(subject: &str) -> &str {
    subject.rsplit('.').next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_shard_by_recipient_province() {
        let r = Locality::parse("610112").unwrap();
        let a = Locality::parse("411522").unwrap();
        assert_eq!(event(r, a), "yipan.v1.ev.61.610112.411522");
        assert_eq!(event(a, r), "yipan.v1.ev.41.411522.610112");
        assert_eq!(inbox_filter(r), "yipan.v1.ev.61.610112.*");
        assert_eq!(stream(61), "YIPAN_EV_61");
        assert_eq!(head(r, a), "yipan.v1.head.61.610112.411522");
        assert_eq!(last_token(&event(r, a)), "411522");
    }
}
