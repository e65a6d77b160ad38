//! In-memory indexes over the segments: person → events, and each
//! author→recipient channel → author sequences. Rebuilt from the segments on
//! open, updated after every durable write and before its reply, so reads
//! see one's own writes. The event-id index lives on disk (`x` keys, written
//! in the same batch as the segments: [`crate::layout::id_key`]), so memory
//! does not grow by an id per event of history.

use std::collections::HashMap;

use yipan_core::{Locality, PersonKey};
use yipan_proto::v1::Envelope;

/// The indexes.
#[derive(Debug, Default)]
pub struct Index {
    /// Events indexed.
    count: usize,
    persons: HashMap<[u8; 16], Vec<(u32, u64)>>,
    /// (author, recipient) → author seq of channel position i+1.
    channels: HashMap<(u32, u32), Vec<u64>>,
    /// Highest sequence held per author.
    max_seq: HashMap<u32, u64>,
}

impl Index {
    /// Adds one event. Channel positions that do not continue their channel
    /// are not indexed (only a damaged store has them; `verify` reports them).
    pub fn add(&mut self, author: u32, seq: u64, env: &Envelope) {
        self.count += 1;
        if let Ok(p) = PersonKey::parse(&env.person_key) {
            self.persons.entry(*p.as_bytes()).or_default().push((author, seq));
        }
        for r in &env.recipients {
            if let Ok(l) = Locality::parse(&r.locality) {
                let ch = self.channels.entry((author, l.as_u32())).or_default();
                if r.channel_seq == ch.len() as u64 + 1 {
                    ch.push(seq);
                }
            }
        }
        let m = self.max_seq.entry(author).or_insert(0);
        *m = (*m).max(seq);
    }

    /// Every person with events held.
    pub fn persons(&self) -> Vec<PersonKey> {
        self.persons.keys().filter_map(|k| PersonKey::from_slice(k)).collect()
    }

    /// Events about a person, in the order they were stored.
    pub fn person(&self, person: &PersonKey) -> Vec<(u32, u64)> {
        self.persons.get(person.as_bytes()).cloned().unwrap_or_default()
    }

    /// Author sequences of channel positions `from..` (1-based), at most `limit`.
    pub fn channel(&self, author: u32, recipient: u32, from: u64, limit: usize) -> Vec<(u64, u64)> {
        let Some(ch) = self.channels.get(&(author, recipient)) else { return Vec::new() };
        let start = from.max(1) as usize - 1;
        ch.iter().enumerate().skip(start).take(limit).map(|(i, s)| (i as u64 + 1, *s)).collect()
    }

    /// Last position of a channel (0 if none).
    pub fn channel_head(&self, author: u32, recipient: u32) -> u64 {
        self.channels.get(&(author, recipient)).map(|c| c.len() as u64).unwrap_or(0)
    }

    /// For every channel of `author`: the recipient and the last position
    /// whose event has a sequence ≤ `max_seq` (what has been published).
    pub fn outbound_heads(&self, author: u32, max_seq: u64) -> Vec<(u32, u64)> {
        let mut out: Vec<(u32, u64)> = self
            .channels
            .iter()
            .filter(|((a, _), _)| *a == author)
            .map(|((_, r), seqs)| (*r, seqs.partition_point(|s| *s <= max_seq) as u64))
            .filter(|(_, head)| *head > 0)
            .collect();
        out.sort_unstable();
        out
    }

    /// Highest sequence held from an author (0 if none).
    pub fn max_seq(&self, author: u32) -> u64 {
        self.max_seq.get(&author).copied().unwrap_or(0)
    }

    /// Number of events indexed.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}
