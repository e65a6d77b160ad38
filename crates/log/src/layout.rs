//! Key layout. Everything lives in one ordered keyspace so that one atomic
//! batch covers an event and all its index entries. Localities are stored as
//! their numeric code (big-endian u32), sequences as big-endian u64, so keys
//! sort by author, then sequence.
//!
//! | prefix | key                                        | value                                  |
//! |--------|--------------------------------------------|----------------------------------------|
//! | `e`    | author, author_seq                         | encoded `SignedEvent`                  |
//! | `i`    | event id (16)                              | author, author_seq, [draft digest (32)] |
//! | `p`    | person key (16), author, author_seq        | empty                                  |
//! | `c`    | author, recipient, channel_seq             | author, author_seq                     |
//! | `r`    | locality                                   | ed25519 public key (32)                |
//! | `q`    | quarantine id (UUIDv7, 16)                 | JSON quarantine record                 |
//! | `m`    | name                                       | metadata (locality, head)              |

/// Events by author and sequence.
pub const EVENT: u8 = b'e';
/// Event id index.
pub const ID: u8 = b'i';
/// Person index.
pub const PERSON: u8 = b'p';
/// Channel index (author→recipient positions).
pub const CHANNEL: u8 = b'c';
/// Roster of locality public keys.
pub const ROSTER: u8 = b'r';
/// Quarantine of rejected foreign events.
pub const QUARANTINE: u8 = b'q';
/// Metadata.
pub const META: u8 = b'm';

/// Metadata key: the locality that owns the store.
pub const META_LOCALITY: &[u8] = b"mlocality";
/// Metadata key: the own chain's head (seq u64 BE + hash 32), written with every append batch.
pub const META_HEAD: &[u8] = b"mhead";

/// Key of an event.
pub fn event_key(author: u32, seq: u64) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[0] = EVENT;
    k[1..5].copy_from_slice(&author.to_be_bytes());
    k[5..13].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Prefix of all events of an author.
pub fn author_prefix(author: u32) -> [u8; 5] {
    let mut k = [0u8; 5];
    k[0] = EVENT;
    k[1..5].copy_from_slice(&author.to_be_bytes());
    k
}

/// Splits an event key into author and sequence.
pub fn parse_event_key(k: &[u8]) -> Option<(u32, u64)> {
    if k.len() != 13 || k[0] != EVENT {
        return None;
    }
    Some((u32::from_be_bytes(k[1..5].try_into().ok()?), u64::from_be_bytes(k[5..13].try_into().ok()?)))
}

/// Key of an event id.
pub fn id_key(id: &[u8; 16]) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = ID;
    k[1..].copy_from_slice(id);
    k
}

/// Value of an id entry: where the event is, and the digest of the draft it came from (own events).
pub fn id_value(author: u32, seq: u64, draft_digest: Option<&[u8; 32]>) -> Vec<u8> {
    let mut v = Vec::with_capacity(44);
    v.extend_from_slice(&author.to_be_bytes());
    v.extend_from_slice(&seq.to_be_bytes());
    if let Some(d) = draft_digest {
        v.extend_from_slice(d);
    }
    v
}

/// Parses an id entry's value.
pub fn parse_id_value(v: &[u8]) -> Option<(u32, u64, Option<[u8; 32]>)> {
    if v.len() != 12 && v.len() != 44 {
        return None;
    }
    let author = u32::from_be_bytes(v[0..4].try_into().ok()?);
    let seq = u64::from_be_bytes(v[4..12].try_into().ok()?);
    let digest = if v.len() == 44 { v[12..44].try_into().ok() } else { None };
    Some((author, seq, digest))
}

/// Key of a person index entry.
pub fn person_key(person: &[u8; 16], author: u32, seq: u64) -> [u8; 29] {
    let mut k = [0u8; 29];
    k[0] = PERSON;
    k[1..17].copy_from_slice(person);
    k[17..21].copy_from_slice(&author.to_be_bytes());
    k[21..29].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Key of a channel index entry.
pub fn channel_key(author: u32, recipient: u32, channel_seq: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = CHANNEL;
    k[1..5].copy_from_slice(&author.to_be_bytes());
    k[5..9].copy_from_slice(&recipient.to_be_bytes());
    k[9..17].copy_from_slice(&channel_seq.to_be_bytes());
    k
}

/// Prefix of one author→recipient channel.
pub fn channel_prefix(author: u32, recipient: u32) -> [u8; 9] {
    let mut k = [0u8; 9];
    k.copy_from_slice(&channel_key(author, recipient, 0)[..9]);
    k
}

/// Channel sequence of a channel key.
pub fn channel_seq_of(k: &[u8]) -> Option<u64> {
    (k.len() == 17).then(|| u64::from_be_bytes(k[9..17].try_into().unwrap_or_default()))
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
