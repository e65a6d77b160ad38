//! The log's indexes. Events about a person (`P` keys) and each
//! author→recipient channel's positions (`C` keys) live on disk beside the
//! event-id index (`x` keys), written in the same atomic batch as the
//! segments they point into, so a node's memory does not grow with its
//! history. In memory stay only what is bounded by localities and channels,
//! not events: each channel's head and each author's highest sequence,
//! rebuilt from the segments on open and updated after every durable write
//! and before its reply, so reads see one's own writes.
//!
//! A store keeps the channels it takes part in: every channel of its own
//! events, and the channel toward itself of a received event (a received
//! envelope lists its other recipients too; their channels are the author's
//! business). A position that does not continue its channel is not indexed
//! (only a damaged store has one; `verify` reports it).

use std::collections::HashMap;

use yipan_core::{Locality, PersonKey};
use yipan_proto::v1::Envelope;

use crate::backend::{Backend, Op};
use crate::error::Result;
use crate::layout;

/// The in-memory part of the indexes.
#[derive(Debug, Default)]
pub struct Index {
    /// The store's locality.
    me: u32,
    /// Events indexed.
    count: usize,
    /// (author, recipient) → last position and its author seq.
    channels: HashMap<(u32, u32), (u64, u64)>,
    /// Highest sequence held per author.
    max_seq: HashMap<u32, u64>,
}

impl Index {
    /// An empty index of the store of `me`.
    pub fn new(me: u32) -> Index {
        Index { me, ..Default::default() }
    }

    /// Adds one durable event to the heads. Returns the channel positions it
    /// indexed (recipient, position).
    pub fn add(&mut self, author: u32, seq: u64, env: &Envelope) -> Vec<(u32, u64)> {
        self.count += 1;
        let m = self.max_seq.entry(author).or_insert(0);
        *m = (*m).max(seq);
        let mut indexed = Vec::new();
        for (r, pos) in kept_positions(self.me, author, env) {
            let head = self.channels.entry((author, r)).or_insert((0, 0));
            if pos == head.0 + 1 {
                *head = (pos, seq);
                indexed.push((r, pos));
            }
        }
        indexed
    }

    /// The `P` and `C` keys of events about to be stored (in this order,
    /// after everything indexed so far), to write in the same batch as their
    /// segments. [`Index::add`] of the same events after the write indexes
    /// exactly these positions.
    pub fn keys<'a>(&self, events: impl IntoIterator<Item = (u32, u64, &'a Envelope)>) -> Vec<Op> {
        let mut heads: HashMap<(u32, u32), u64> = HashMap::new();
        let mut ops = Vec::new();
        for (author, seq, env) in events {
            if let Ok(p) = PersonKey::parse(&env.person_key) {
                ops.push((layout::person_key(p.as_bytes(), author, seq).to_vec(), Some(Vec::new())));
            }
            for (r, pos) in kept_positions(self.me, author, env) {
                let head = heads.entry((author, r)).or_insert_with(|| self.channel_head(author, r));
                if pos == *head + 1 {
                    *head = pos;
                    ops.push((layout::channel_key(author, r, pos).to_vec(), Some(seq.to_be_bytes().to_vec())));
                }
            }
        }
        ops
    }

    /// Last position of a channel (0 if none).
    pub fn channel_head(&self, author: u32, recipient: u32) -> u64 {
        self.channels.get(&(author, recipient)).map(|h| h.0).unwrap_or(0)
    }

    /// Every channel of `author` with its head: (recipient, head position,
    /// head's author seq), by recipient.
    pub fn channels_of(&self, author: u32) -> Vec<(u32, u64, u64)> {
        let mut out: Vec<(u32, u64, u64)> =
            self.channels.iter().filter(|((a, _), _)| *a == author).map(|((_, r), h)| (*r, h.0, h.1)).collect();
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

/// The channel positions of an event that the store of `me` keeps.
fn kept_positions(me: u32, author: u32, env: &Envelope) -> impl Iterator<Item = (u32, u64)> + '_ {
    env.recipients.iter().filter_map(move |r| {
        let l = Locality::parse(&r.locality).ok()?.as_u32();
        (author == me || l == me).then_some((l, r.channel_seq))
    })
}

/// Positions (author, seq) of every event about `person`, by author and sequence.
pub fn person<B: Backend + ?Sized>(backend: &B, person: &PersonKey) -> Result<Vec<(u32, u64)>> {
    let prefix = layout::person_prefix(person.as_bytes());
    let mut out = Vec::new();
    backend.for_each(&prefix, &layout::prefix_end(&prefix), &mut |k, _| {
        if let Some((_, a, s)) = layout::parse_person_key(k) {
            out.push((a, s));
        }
        true
    })?;
    Ok(out)
}

/// Every person with events held: one seek per person, not a read per event.
pub fn persons<B: Backend + ?Sized>(backend: &B) -> Result<Vec<PersonKey>> {
    let end = [layout::PERSON + 1];
    let mut start = vec![layout::PERSON];
    let mut out = Vec::new();
    while let Some((k, _)) = backend.range(&start, &end, 1)?.pop() {
        let Some((p, _, _)) = layout::parse_person_key(&k) else {
            // Not a person key (a damaged store): step over it.
            start = k;
            start.push(0);
            continue;
        };
        out.extend(PersonKey::from_slice(&p));
        start = layout::prefix_end(&layout::person_prefix(&p));
    }
    Ok(out)
}

/// Author sequences of channel positions `from..` (1-based), at most `limit`:
/// (position, seq).
pub fn channel<B: Backend + ?Sized>(
    backend: &B,
    author: u32,
    recipient: u32,
    from: u64,
    limit: usize,
) -> Result<Vec<(u64, u64)>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let start = layout::channel_key(author, recipient, from.max(1));
    let end = layout::prefix_end(&layout::channel_prefix(author, recipient));
    let mut out = Vec::with_capacity(limit.min(4096));
    backend.for_each(&start, &end, &mut |k, v| {
        if let (Ok(pos), Ok(seq)) = (<[u8; 8]>::try_from(&k[9..]), <[u8; 8]>::try_from(v)) {
            out.push((u64::from_be_bytes(pos), u64::from_be_bytes(seq)));
        }
        out.len() < limit
    })?;
    Ok(out)
}

/// The seq at one channel position, if indexed.
fn seq_at<B: Backend + ?Sized>(backend: &B, author: u32, recipient: u32, position: u64) -> Result<Option<u64>> {
    Ok(backend
        .get(&layout::channel_key(author, recipient, position))?
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map(u64::from_be_bytes))
}

/// The last position of a channel whose event has a sequence ≤ `max_seq`
/// (positions rise with sequences): the head when it qualifies (the usual
/// case, no read), else a binary search over the positions on disk.
pub fn last_position_through<B: Backend + ?Sized>(
    backend: &B,
    author: u32,
    recipient: u32,
    (head, head_seq): (u64, u64),
    max_seq: u64,
) -> Result<u64> {
    if head == 0 || head_seq <= max_seq {
        return Ok(head);
    }
    // Invariant: positions ≤ lo qualify, positions ≥ hi do not.
    let (mut lo, mut hi) = (0u64, head);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if seq_at(backend, author, recipient, mid)?.is_some_and(|s| s <= max_seq) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}
