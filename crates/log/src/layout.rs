//! Key layout. Everything lives in one ordered keyspace so that one atomic
//! batch covers a group of events and the head. The id, person and channel
//! indexes are keys written in the same batch as the segments they point
//! into; only channel heads and per-author highest sequences stay in memory
//! ([`crate::index`]). Localities are stored as
//! their numeric code (big-endian u32), sequences as big-endian u64, so keys
//! sort by author, then sequence.
//!
//! | prefix | key                                        | value                                  |
//! |--------|--------------------------------------------|----------------------------------------|
//! | `s`    | author, last author_seq of the segment     | segment of events (see [`crate::segment`]) |
//! | `r`    | locality                                   | ed25519 public key (32)                |
//! | `q`    | quarantine id (UUIDv7, 16)                 | JSON quarantine record                 |
//! | `t`    | arrival number (u64)                       | received-at µs (i64 BE) + `TrustRecord` |
//! | `d`    | disclosure number (u64)                    | JSON disclosure entry, hash-chained ([`crate::disclosure`]) |
//! | `i`    | person key (16), disclosure number         | empty (person index of the disclosures) |
//! | `e`    | author, seq                                | erased tiers (mask) + erasure request id ([`crate::erase`]) |
//! | `k`    | person key (16)                            | this node's data keys for the person (JSON) |
//! | `K`    | person key (16)                            | empty: a published key message is out of date |
//! | `x`    | event id (16)                              | author u32 BE, seq u64 BE, first 16 bytes of the draft's SHA-256 (zeros for received events) |
//! | `P`    | person key (16), author, seq               | empty (events about a person)          |
//! | `C`    | author, recipient, channel position (u64)  | author seq (u64 BE)                    |
//! | `m`    | name                                       | metadata (locality, head)              |

/// Segments of events by author and last sequence.
pub const SEGMENT: u8 = b's';
/// Roster of locality public keys.
pub const ROSTER: u8 = b'r';
/// Verified trust records (certificates, revocations, rotations), in arrival order.
pub const TRUST: u8 = b't';
/// Quarantine of rejected foreign events.
pub const QUARANTINE: u8 = b'q';
/// Metadata.
pub const META: u8 = b'm';
/// Event id → where the event is (written in the same batch as its segment).
pub const EVENT_ID: u8 = b'x';
/// Metadata key: present once every held event has its `x` key (a store
/// written before the id index lived on disk gets them at its next open).
pub const META_IDS: &[u8] = b"mids";

/// Person index: person key, author, seq (written with the segment).
pub const PERSON: u8 = b'P';
/// Channel index: author, recipient, position → author seq (written with the segment).
pub const CHANNEL: u8 = b'C';
/// Metadata key: present once every held event has its `P` and `C` keys (a
/// store written before those indexes lived on disk gets them at its next open).
pub const META_PERSON_CHANNEL: &[u8] = b"mpc";

/// Key of one event about a person.
pub fn person_key(person: &[u8; 16], author: u32, seq: u64) -> [u8; 29] {
    let mut k = [0u8; 29];
    k[..17].copy_from_slice(&person_prefix(person));
    k[17..21].copy_from_slice(&author.to_be_bytes());
    k[21..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Prefix of every event about a person.
pub fn person_prefix(person: &[u8; 16]) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = PERSON;
    k[1..].copy_from_slice(person);
    k
}

/// Splits a person key into person, author and seq.
pub fn parse_person_key(k: &[u8]) -> Option<([u8; 16], u32, u64)> {
    if k.len() != 29 || k[0] != PERSON {
        return None;
    }
    Some((
        k[1..17].try_into().ok()?,
        u32::from_be_bytes(k[17..21].try_into().ok()?),
        u64::from_be_bytes(k[21..].try_into().ok()?),
    ))
}

/// Key of one channel position.
pub fn channel_key(author: u32, recipient: u32, position: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[..9].copy_from_slice(&channel_prefix(author, recipient));
    k[9..].copy_from_slice(&position.to_be_bytes());
    k
}

/// Prefix of every position of one channel.
pub fn channel_prefix(author: u32, recipient: u32) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = CHANNEL;
    k[1..5].copy_from_slice(&author.to_be_bytes());
    k[5..9].copy_from_slice(&recipient.to_be_bytes());
    k
}

/// Key of an event id.
pub fn id_key(id: &[u8; 16]) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = EVENT_ID;
    k[1..].copy_from_slice(id);
    k
}

/// Value of an event id's key.
pub fn id_value(author: u32, seq: u64, digest: &[u8; 32]) -> [u8; 28] {
    let mut v = [0u8; 28];
    v[..4].copy_from_slice(&author.to_be_bytes());
    v[4..12].copy_from_slice(&seq.to_be_bytes());
    v[12..].copy_from_slice(&digest[..16]);
    v
}

/// Parses an id key's value: author, seq, short draft digest.
pub fn parse_id_value(v: &[u8]) -> Option<(u32, u64, [u8; 16])> {
    if v.len() != 28 {
        return None;
    }
    let author = u32::from_be_bytes(v[..4].try_into().ok()?);
    let seq = u64::from_be_bytes(v[4..12].try_into().ok()?);
    Some((author, seq, v[12..].try_into().ok()?))
}

/// Metadata key: the locality that owns the store.
pub const META_LOCALITY: &[u8] = b"mlocality";
/// Metadata key: the trust anchor (32-byte ed25519 public key of the national root).
pub const META_ANCHOR: &[u8] = b"manchor";
/// Metadata key: the own chain's head (seq u64 BE + hash 32), written with every append batch.
pub const META_HEAD: &[u8] = b"mhead";

/// Key of the segment of `author` whose last event is `last_seq`.
pub fn segment_key(author: u32, last_seq: u64) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[0] = SEGMENT;
    k[1..5].copy_from_slice(&author.to_be_bytes());
    k[5..13].copy_from_slice(&last_seq.to_be_bytes());
    k
}

/// Prefix of all segments of an author.
pub fn author_prefix(author: u32) -> [u8; 5] {
    let mut k = [0u8; 5];
    k[0] = SEGMENT;
    k[1..5].copy_from_slice(&author.to_be_bytes());
    k
}

/// Splits a segment key into author and last sequence.
pub fn parse_segment_key(k: &[u8]) -> Option<(u32, u64)> {
    if k.len() != 13 || k[0] != SEGMENT {
        return None;
    }
    Some((u32::from_be_bytes(k[1..5].try_into().ok()?), u64::from_be_bytes(k[5..13].try_into().ok()?)))
}

/// Key of a roster entry.
pub fn roster_key(locality: u32) -> [u8; 5] {
    let mut k = [0u8; 5];
    k[0] = ROSTER;
    k[1..5].copy_from_slice(&locality.to_be_bytes());
    k
}

/// Key of a quarantine entry.
pub fn quarantine_key(id: &[u8; 16]) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = QUARANTINE;
    k[1..].copy_from_slice(id);
    k
}

/// The exclusive upper bound of all keys starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xff; prefix.len() + 1]
}

/// Key of the `n`th trust record.
pub fn trust_key(n: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = TRUST;
    k[1..9].copy_from_slice(&n.to_be_bytes());
    k
}
