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
    /// segments: a `P` key per event about a person, and one `C` run per
    /// channel the batch continues. [`Index::add`] of the same events after
    /// the write indexes exactly these positions.
    pub fn keys<'a>(&self, events: impl IntoIterator<Item = (u32, u64, &'a Envelope)>) -> Vec<Op> {
        let mut runs: HashMap<(u32, u32), Run> = HashMap::new();
        let mut ops = Vec::new();
        for (author, seq, env) in events {
            if let Ok(p) = PersonKey::parse(&env.person_key) {
                ops.push((layout::person_key(p.as_bytes(), author, seq).to_vec(), Some(Vec::new())));
            }
            for (r, pos) in kept_positions(self.me, author, env) {
                let run = runs.entry((author, r)).or_insert_with(|| Run::after(self.channel_head(author, r)));
                run.push(pos, seq);
            }
        }
        ops.extend(runs.into_iter().filter_map(|((a, r), run)| run.op(a, r)));
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

    /// Heap held by the in-memory part, bytes (hash tables at capacity:
    /// key, value and one control byte per bucket).
    pub fn heap_bytes(&self) -> usize {
        self.channels.capacity() * (8 + 16 + 1) + self.max_seq.capacity() * (4 + 8 + 1)
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

/// Consecutive positions of one channel written together: one `C` key
/// (author, recipient, first position) whose value is their author
/// sequences (u64 BE each). One key per channel per group commit, not per
/// event: sled costs ~8 µs per key inserted (~18 µs for keys that only grow),
/// more than signing an event.
#[derive(Debug)]
pub(crate) struct Run {
    first: u64,
    seqs: Vec<u8>,
}

impl Run {
    /// An empty run continuing a channel whose head is `head`.
    pub(crate) fn after(head: u64) -> Run {
        Run { first: head + 1, seqs: Vec::new() }
    }

    /// Adds position `pos` (its event `seq`) if it continues the run.
    pub(crate) fn push(&mut self, pos: u64, seq: u64) -> bool {
        if pos != self.first + self.len() {
            return false;
        }
        self.seqs.extend_from_slice(&seq.to_be_bytes());
        true
    }

    fn len(&self) -> u64 {
        (self.seqs.len() / 8) as u64
    }

    /// The key and value to write (none when empty).
    pub(crate) fn op(self, author: u32, recipient: u32) -> Option<Op> {
        (!self.seqs.is_empty()).then(|| (layout::channel_key(author, recipient, self.first).to_vec(), Some(self.seqs)))
    }

    /// Starts a new run after this one, returning this one's key and value
    /// when it has reached `max` positions.
    pub(crate) fn cut(&mut self, author: u32, recipient: u32, max: u64) -> Option<Op> {
        if self.len() < max {
            return None;
        }
        let next = Run::after(self.first + self.len() - 1);
        std::mem::replace(self, next).op(author, recipient)
    }
}

/// Decodes a `C` entry: its first position and sequences.
fn parse_run<'v>(k: &[u8], v: &'v [u8]) -> Option<(u64, impl Iterator<Item = u64> + 'v)> {
    let first = u64::from_be_bytes(k.get(9..17)?.try_into().ok()?);
    Some((first, v.chunks_exact(8).map(|c| u64::from_be_bytes(c.try_into().unwrap_or_default()))))
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
    let from = from.max(1);
    if limit == 0 {
        return Ok(Vec::new());
    }
    let prefix = layout::channel_prefix(author, recipient);
    let end = layout::prefix_end(&prefix);
    // Start at the run holding `from` (the last one starting at or before it).
    let start = match backend.last_in(
        &layout::channel_key(author, recipient, 0),
        &layout::channel_key(author, recipient, from.saturating_add(1)),
    )? {
        Some((k, _)) => k,
        None => prefix.to_vec(),
    };
    let mut out = Vec::with_capacity(limit.min(4096));
    backend.for_each(&start, &end, &mut |k, v| {
        let Some((first, seqs)) = parse_run(k, v) else { return true };
        for (i, seq) in seqs.enumerate() {
            let pos = first + i as u64;
            if pos >= from {
                out.push((pos, seq));
                if out.len() >= limit {
                    return false;
                }
            }
        }
        true
    })?;
    Ok(out)
}

/// The seq at one channel position, if indexed.
fn seq_at<B: Backend + ?Sized>(backend: &B, author: u32, recipient: u32, position: u64) -> Result<Option<u64>> {
    let run = backend.last_in(
        &layout::channel_key(author, recipient, 0),
        &layout::channel_key(author, recipient, position.saturating_add(1)),
    )?;
    Ok(run.and_then(|(k, v)| {
        let (first, mut seqs) = parse_run(&k, &v)?;
        seqs.nth(usize::try_from(position.checked_sub(first)?).ok()?)
    }))
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
