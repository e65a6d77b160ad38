//! Segments: the unit of storage. One sled value holds a run of one author's
//! events in increasing sequence — a group commit of own events, or one
//! author's share of an ingest batch — so a durable append costs one sled
//! insert per group instead of several per event.
//!
//! Format: `YSG1`, u32 count, then per entry: u64 seq, 32-byte draft digest
//! (zeros for received events), u32 length, the encoded `SignedEvent`. All
//! integers big-endian. The key is `s` + author + the last entry's seq, so a
//! range lookup from (author, seq) finds the segment holding seq.

/// Most entries per segment (bounds the cost of reading one event).
pub const MAX_ENTRIES: usize = 32;

const MAGIC: &[u8; 4] = b"YSG1";

/// One stored event inside a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Author sequence.
    pub seq: u64,
    /// SHA-256 of the draft an own event came from (idempotency); zeros for received events.
    pub digest: [u8; 32],
    /// The encoded `SignedEvent`.
    pub bytes: &'a [u8],
}

/// Encodes entries (already in increasing seq order).
pub fn encode(entries: &[Entry<'_>]) -> Vec<u8> {
    let size = 8 + entries.iter().map(|e| 44 + e.bytes.len()).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for e in entries {
        out.extend_from_slice(&e.seq.to_be_bytes());
        out.extend_from_slice(&e.digest);
        out.extend_from_slice(&(e.bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(e.bytes);
    }
    out
}

/// Decodes a segment; the error says what is wrong with its framing.
pub fn decode(v: &[u8]) -> Result<Vec<Entry<'_>>, String> {
    if v.len() < 8 || &v[..4] != MAGIC {
        return Err("segment header is damaged".into());
    }
    let count = u32::from_be_bytes([v[4], v[5], v[6], v[7]]) as usize;
    let mut out = Vec::with_capacity(count.min(MAX_ENTRIES * 4));
    let mut at = 8;
    for i in 0..count {
        let head = v.get(at..at + 44).ok_or_else(|| format!("segment entry {i} is cut short"))?;
        let seq = u64::from_be_bytes(head[..8].try_into().unwrap_or_default());
        let digest: [u8; 32] = head[8..40].try_into().unwrap_or_default();
        let len = u32::from_be_bytes(head[40..44].try_into().unwrap_or_default()) as usize;
        at += 44;
        let bytes = v.get(at..at + len).ok_or_else(|| format!("segment entry {i} (seq {seq}) is cut short"))?;
        at += len;
        if let Some(prev) = out.last().map(|e: &Entry<'_>| e.seq) {
            if seq <= prev {
                return Err(format!("segment entry {i} has seq {seq} after {prev}"));
            }
        }
        out.push(Entry { seq, digest, bytes });
    }
    if at != v.len() {
        return Err(format!("segment has {} trailing bytes", v.len() - at));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let a = [1u8, 2, 3];
        let b = [9u8; 40];
        let entries = vec![Entry { seq: 3, digest: [7; 32], bytes: &a }, Entry { seq: 8, digest: [0; 32], bytes: &b }];
        let enc = encode(&entries);
        assert_eq!(decode(&enc).unwrap(), entries);
        assert!(decode(&enc[..enc.len() - 1]).is_err());
        let mut extra = enc.clone();
        extra.push(0);
        assert!(decode(&extra).is_err());
        assert!(decode(b"nope").is_err());
    }
}
