//! Quarantine bounds. Rejected foreign events are kept as evidence, but a
//! hostile or broken peer must not be able to fill the disk: each record
//! keeps at most [`KEEP_BYTES`] of the message (with the SHA-256 and size of
//! all of it), at most [`PER_AUTHOR`] records per claimed author and
//! [`TOTAL`] in all are held, and the oldest are evicted first. Evicted
//! records are summarised, never forgotten: their number, their bytes, and a
//! running SHA-256 over their hashes (`quarantine.evicted` in the log's
//! metadata), so what was dropped can still be matched against a copy.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::backend::{Backend, Op};
use crate::{layout, Result};

/// Bytes of a rejected message kept in its record.
pub const KEEP_BYTES: usize = 8 * 1024;
/// Records held per claimed author (unreadable author counts as one).
pub const PER_AUTHOR: usize = 512;
/// Records held in all.
pub const TOTAL: usize = 4096;
/// Metadata name of the eviction summary.
pub const EVICTED: &str = "quarantine.evicted";

/// What eviction has dropped so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evicted {
    /// Records evicted.
    pub count: u64,
    /// Their original message bytes.
    pub bytes: u64,
    /// SHA-256 chained over the evicted messages' SHA-256, hex (`""` when none).
    pub digest: String,
}

/// The fields of a record the bounds need.
#[derive(Debug, Deserialize)]
struct Head {
    author: Option<String>,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    sha256: String,
}

#[derive(Clone)]
struct Held {
    key: Vec<u8>,
    author: Option<String>,
    size: u64,
    sha256: String,
}

/// The held records in arrival order, and the eviction summary.
#[derive(Default, Clone)]
pub struct Bounds {
    order: VecDeque<Held>,
    per_author: HashMap<Option<String>, usize>,
    evicted: Evicted,
}

fn head_of(key: &[u8], value: &[u8]) -> Held {
    let h: Head = serde_json::from_slice(value).unwrap_or(Head { author: None, size: 0, sha256: String::new() });
    Held { key: key.to_vec(), author: h.author, size: h.size, sha256: h.sha256 }
}

impl Bounds {
    /// Reads the held records and the summary.
    pub fn load<B: Backend>(backend: &B, meta_key: &[u8]) -> Result<Bounds> {
        let mut b = Bounds::default();
        for (k, v) in backend.range(&[layout::QUARANTINE], &[layout::QUARANTINE + 1], usize::MAX)? {
            let held = head_of(&k, &v);
            *b.per_author.entry(held.author.clone()).or_default() += 1;
            b.order.push_back(held);
        }
        if let Some(v) = backend.get(meta_key)? {
            b.evicted = serde_json::from_slice(&v).unwrap_or_default();
        }
        Ok(b)
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The eviction summary.
    pub fn evicted(&self) -> &Evicted {
        &self.evicted
    }

    /// Takes in the new records of `ops` and appends the deletions (and the
    /// new summary) that keep the bounds, oldest first.
    pub fn admit(&mut self, ops: &mut Vec<Op>, meta_key: &[u8]) {
        let added: Vec<Held> = ops
            .iter()
            .filter(|(k, v)| k.first() == Some(&layout::QUARANTINE) && v.is_some())
            .map(|(k, v)| head_of(k, v.as_deref().unwrap_or_default()))
            .collect();
        if added.is_empty() {
            return;
        }
        let mut evicted_any = false;
        for held in added {
            let author = held.author.clone();
            *self.per_author.entry(author.clone()).or_default() += 1;
            self.order.push_back(held);
            while self.per_author.get(&author).copied().unwrap_or(0) > PER_AUTHOR {
                let Some(pos) = self.order.iter().position(|h| h.author == author) else { break };
                self.evict(pos, ops);
                evicted_any = true;
            }
            while self.order.len() > TOTAL {
                self.evict(0, ops);
                evicted_any = true;
            }
        }
        if evicted_any {
            if let Ok(v) = serde_json::to_vec(&self.evicted) {
                ops.push((meta_key.to_vec(), Some(v)));
            }
        }
    }

    fn evict(&mut self, pos: usize, ops: &mut Vec<Op>) {
        let Some(held) = self.order.remove(pos) else { return };
        if let Some(n) = self.per_author.get_mut(&held.author) {
            *n -= 1;
        }
        // A record added in this same batch is simply not written.
        match ops.iter().position(|(k, v)| *k == held.key && v.is_some()) {
            Some(i) => {
                ops.remove(i);
            }
            None => ops.push((held.key.clone(), None)),
        }
        let mut h = Sha256::new();
        h.update(hex::decode(&self.evicted.digest).unwrap_or_default());
        h.update(hex::decode(&held.sha256).unwrap_or_default());
        self.evicted.digest = hex::encode(h.finalize());
        self.evicted.count += 1;
        self.evicted.bytes += held.size;
    }
}
