//! The chain and channel rules, sans IO: the one place that decides what an
//! author sequence or a channel position means given what came before it.
//!
//! Three readers apply them to different inputs:
//! - ingest ([`crate::Log::ingest_batch`]) places each received event against
//!   the store's channel head with [`place`];
//! - `verify` ([`crate::verify::run`]) feeds a whole store in (author,
//!   sequence) order to [`Chains`] and [`Channels`];
//! - the auditor (`yipan-audit`) feeds its sorted spills — every version of
//!   every event it read, in any order on the wire — to the same two.
//!
//! Nothing here reads storage, the network or a clock; each finding carries a
//! stable code ([`Finding::code`]) so callers and operators match codes, never
//! message text.

use std::collections::HashMap;
use std::fmt;

/// Where a channel position (or sequence) falls, given the highest one held
/// before it (`head`, 0 when none is held).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// At or below the head: already held (the same event again, or a fork).
    Held,
    /// The next one.
    Next,
    /// Beyond the next: positions `head + 1 ..= got - 1` are missing.
    Beyond,
}

/// Places `got` after `head`.
pub fn place(head: u64, got: u64) -> Place {
    if got <= head {
        Place::Held
    } else if got == head + 1 {
        Place::Next
    } else {
        Place::Beyond
    }
}

/// What one fed version was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The first version at its position.
    New,
    /// The same content again.
    Duplicate,
    /// Different content at a position already held (a fork).
    Fork,
}

/// A problem with a chain or a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// A chain that must be whole from #1 (a node's own) lacks `from ..= to`.
    ChainMissing { author: u32, from: u64, to: u64 },
    /// The first event of a whole chain does not start from the zero hash.
    ChainStart { author: u32 },
    /// `#seq`'s `prev_hash` is not the hash of any version held at `#seq - 1`.
    ChainLink { author: u32, seq: u64 },
    /// Two different events at one author sequence.
    ForkSequence { author: u32, seq: u64 },
    /// Two different events at one channel position (`seq`: the author
    /// sequence of the later one, 0 when not known).
    ForkChannel { author: u32, seq: u64, recipient: u32, position: u64 },
    /// Positions `from ..= to` of a channel are missing below a held one
    /// (`seq`: the author sequence of the event after the gap, 0 when not known).
    ChannelGap { author: u32, seq: u64, recipient: u32, from: u64, to: u64 },
    /// A channel position lower than one already held (out of order).
    ChannelOrder { author: u32, seq: u64, recipient: u32, after: u64, got: u64 },
    /// More gaps in one channel than are listed one by one.
    ChannelGaps { author: u32, recipient: u32, more: u64 },
}

impl Finding {
    /// The stable code (documented in docs/formats.md).
    pub fn code(&self) -> &'static str {
        match self {
            Finding::ChainMissing { .. } => "chain.missing",
            Finding::ChainStart { .. } => "chain.start",
            Finding::ChainLink { .. } => "chain.link",
            Finding::ForkSequence { .. } => crate::Code::ForkSequence.as_str(),
            Finding::ForkChannel { .. } => crate::Code::ForkChannel.as_str(),
            Finding::ChannelGap { .. } | Finding::ChannelGaps { .. } => "channel.gap",
            Finding::ChannelOrder { .. } => "channel.order",
        }
    }

    /// The author concerned.
    pub fn author(&self) -> u32 {
        match *self {
            Finding::ChainMissing { author, .. }
            | Finding::ChainStart { author }
            | Finding::ChainLink { author, .. }
            | Finding::ForkSequence { author, .. }
            | Finding::ForkChannel { author, .. }
            | Finding::ChannelGap { author, .. }
            | Finding::ChannelOrder { author, .. }
            | Finding::ChannelGaps { author, .. } => author,
        }
    }

    /// The author sequence it names (0: the whole chain or channel).
    pub fn seq(&self) -> u64 {
        match *self {
            Finding::ChainMissing { to, .. } => to + 1,
            Finding::ChainStart { .. } => 1,
            Finding::ChainLink { seq, .. }
            | Finding::ForkSequence { seq, .. }
            | Finding::ForkChannel { seq, .. }
            | Finding::ChannelGap { seq, .. }
            | Finding::ChannelOrder { seq, .. } => seq,
            Finding::ChannelGaps { .. } => 0,
        }
    }

    /// Whether it proves two different events signed at one position.
    pub fn is_fork(&self) -> bool {
        matches!(self, Finding::ForkSequence { .. } | Finding::ForkChannel { .. })
    }
}

impl fmt::Display for Finding {
    /// The problem, without the `author#seq` it is named by.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::ChainMissing { from, to, .. } => write!(f, "events {from}..{to} are missing from the own chain"),
            Finding::ChainStart { .. } => f.write_str("first event's prev_hash is not zero"),
            Finding::ChainLink { seq, .. } => write!(f, "prev_hash does not match the hash of #{}", seq - 1),
            Finding::ForkSequence { seq, .. } => write!(f, "fork: two different events at author sequence {seq}"),
            Finding::ForkChannel { recipient, position, .. } => {
                write!(f, "fork: two different events at channel position {position} to {recipient:06}")
            }
            Finding::ChannelGap { recipient, from, to, .. } => {
                write!(f, "channel to {recipient:06}: positions {from}..{to} are missing")
            }
            Finding::ChannelOrder { recipient, after, got, .. } => {
                write!(f, "channel to {recipient:06}: position {got} comes after {after}")
            }
            Finding::ChannelGaps { recipient, more, .. } => {
                write!(f, "channel to {recipient:06}: {more} more gaps than listed")
            }
        }
    }
}

/// One author sequence and the hashes of the versions held there (empty:
/// held but unreadable, so nothing links to it).
#[derive(Debug)]
struct Held {
    author: u32,
    seq: u64,
    versions: Vec<[u8; 32]>,
}

/// Author chains, fed in (author, sequence) order; several versions of one
/// sequence (a fork, or the same event twice) are fed one after the other.
/// Memory: two sequences' versions.
#[derive(Debug, Default)]
pub struct Chains {
    before: Option<Held>,
    here: Option<Held>,
}

impl Chains {
    /// Feeds one version of `author#seq` (hash `hash`, linking to `prev`).
    /// `whole`: this author's chain must be held whole from #1 (a node's own).
    pub fn push(
        &mut self,
        author: u32,
        seq: u64,
        hash: [u8; 32],
        prev: [u8; 32],
        whole: bool,
        out: &mut Vec<Finding>,
    ) -> Seen {
        let seen = match &mut self.here {
            Some(h) if h.author == author && h.seq == seq => {
                if h.versions.contains(&hash) {
                    return Seen::Duplicate;
                }
                out.push(Finding::ForkSequence { author, seq });
                h.versions.push(hash);
                Seen::Fork
            }
            _ => {
                self.advance(author, seq, whole, out);
                if let Some(h) = self.here.as_mut() {
                    h.versions.push(hash);
                }
                if whole && seq == 1 && prev != [0u8; 32] {
                    out.push(Finding::ChainStart { author });
                }
                Seen::New
            }
        };
        if let Some(b) = &self.before {
            if b.author == author
                && b.seq.checked_add(1) == Some(seq)
                && !b.versions.is_empty()
                && !b.versions.contains(&prev)
            {
                out.push(Finding::ChainLink { author, seq });
            }
        }
        seen
    }

    /// Feeds a sequence that is held but cannot be read: it counts as present
    /// for a whole chain, and the next sequence's link is not checked.
    pub fn unreadable(&mut self, author: u32, seq: u64, whole: bool, out: &mut Vec<Finding>) {
        if self.here.as_ref().is_some_and(|h| h.author == author && h.seq == seq) {
            return;
        }
        self.advance(author, seq, whole, out);
    }

    fn advance(&mut self, author: u32, seq: u64, whole: bool, out: &mut Vec<Finding>) {
        if whole {
            let expected = match &self.here {
                Some(h) if h.author == author => h.seq.saturating_add(1),
                _ => 1,
            };
            if seq > expected {
                out.push(Finding::ChainMissing { author, from: expected, to: seq - 1 });
            }
        }
        self.before = self.here.take();
        self.here = Some(Held { author, seq, versions: Vec::new() });
    }
}

/// Gap runs listed one by one per channel; beyond them only counted.
pub const GAPS_LISTED: u64 = 5;

/// One channel as fed so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelState {
    /// Highest position fed.
    pub head: u64,
    /// Distinct positions fed.
    pub positions: u64,
    /// Gap runs found.
    pub gaps: u64,
    /// Hash of the event at `head`.
    at_head: [u8; 32],
}

/// Channels (author → recipient), each fed in ascending position order;
/// channels may be interleaved. Memory: one small entry per channel.
#[derive(Debug, Default)]
pub struct Channels {
    channels: HashMap<(u32, u32), ChannelState>,
}

impl Channels {
    /// Feeds the event `hash` (author sequence `seq`, 0 if not known) at
    /// `position` of the channel `author → recipient`.
    pub fn push(
        &mut self,
        author: u32,
        recipient: u32,
        position: u64,
        seq: u64,
        hash: [u8; 32],
        out: &mut Vec<Finding>,
    ) -> Seen {
        let c = self.channels.entry((author, recipient)).or_default();
        match place(c.head, position) {
            Place::Held if position == c.head && c.positions > 0 => {
                if c.at_head == hash {
                    return Seen::Duplicate;
                }
                out.push(Finding::ForkChannel { author, seq, recipient, position });
                Seen::Fork
            }
            Place::Held => {
                out.push(Finding::ChannelOrder { author, seq, recipient, after: c.head, got: position });
                Seen::Fork
            }
            place => {
                if place == Place::Beyond {
                    c.gaps += 1;
                    if c.gaps <= GAPS_LISTED {
                        out.push(Finding::ChannelGap { author, seq, recipient, from: c.head + 1, to: position - 1 });
                    }
                }
                c.head = position;
                c.at_head = hash;
                c.positions += 1;
                Seen::New
            }
        }
    }

    /// Every channel fed, sorted by (author, recipient), with a
    /// [`Finding::ChannelGaps`] for each that had more gaps than were listed.
    pub fn finish(self, out: &mut Vec<Finding>) -> Vec<((u32, u32), ChannelState)> {
        let mut all: Vec<_> = self.channels.into_iter().collect();
        all.sort_unstable_by_key(|(k, _)| *k);
        for ((author, recipient), c) in &all {
            if c.gaps > GAPS_LISTED {
                out.push(Finding::ChannelGaps { author: *author, recipient: *recipient, more: c.gaps - GAPS_LISTED });
            }
        }
        all
    }

    /// The head of a channel fed so far (0: none).
    pub fn head(&self, author: u32, recipient: u32) -> u64 {
        self.channels.get(&(author, recipient)).map_or(0, |c| c.head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn place_names_held_next_and_beyond() {
        assert_eq!(place(0, 1), Place::Next);
        assert_eq!(place(0, 0), Place::Held);
        assert_eq!(place(5, 3), Place::Held);
        assert_eq!(place(5, 5), Place::Held);
        assert_eq!(place(5, 6), Place::Next);
        assert_eq!(place(5, 9), Place::Beyond);
        assert_eq!(place(u64::MAX - 1, u64::MAX), Place::Next);
        assert_eq!(place(u64::MAX, u64::MAX), Place::Held);
    }

    #[test]
    fn a_whole_chain_links_and_starts_from_zero() {
        let (mut c, mut out) = (Chains::default(), Vec::new());
        assert_eq!(c.push(7, 1, h(1), [0; 32], true, &mut out), Seen::New);
        assert_eq!(c.push(7, 2, h(2), h(1), true, &mut out), Seen::New);
        assert_eq!(c.push(7, 2, h(2), h(1), true, &mut out), Seen::Duplicate);
        assert_eq!(c.push(7, 3, h(3), h(2), true, &mut out), Seen::New);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn chain_faults_are_named_with_their_codes() {
        let (mut c, mut out) = (Chains::default(), Vec::new());
        c.push(7, 1, h(1), h(9), true, &mut out); // not from zero
        c.push(7, 2, h(2), h(8), true, &mut out); // broken link
        c.push(7, 5, h(5), h(4), true, &mut out); // 3..4 missing
        assert_eq!(c.push(7, 5, h(6), h(4), true, &mut out), Seen::Fork);
        c.push(7, 6, h(7), h(6), true, &mut out); // links to the second version: fine
        let codes: Vec<_> = out.iter().map(|f| (f.code(), f.seq())).collect();
        assert_eq!(
            codes,
            [("chain.start", 1), ("chain.link", 2), ("chain.missing", 5), ("fork.sequence", 5)],
            "{out:?}"
        );
        assert_eq!(out[2].to_string(), "events 3..4 are missing from the own chain");
        assert!(out[3].is_fork());
    }

    #[test]
    fn partial_chains_and_unreadable_events_are_not_faults_of_their_neighbours() {
        let (mut c, mut out) = (Chains::default(), Vec::new());
        // A foreign chain holds only what was addressed here.
        c.push(8, 3, h(3), h(2), false, &mut out);
        c.push(8, 9, h(9), h(8), false, &mut out);
        // A new author restarts the checks.
        c.push(9, 1, h(1), [0; 32], true, &mut out);
        c.unreadable(9, 2, true, &mut out);
        c.push(9, 3, h(3), h(0xee), true, &mut out); // after an unreadable one: not checked
        assert!(out.is_empty(), "{out:?}");
        c.push(9, 4, h(4), h(0xee), true, &mut out);
        assert_eq!(out, [Finding::ChainLink { author: 9, seq: 4 }]);
    }

    #[test]
    fn signed_extreme_sequences_never_overflow() {
        let (mut c, mut out) = (Chains::default(), Vec::new());
        c.push(7, u64::MAX - 1, h(1), h(0), true, &mut out);
        c.push(7, u64::MAX, h(2), h(9), true, &mut out);
        c.push(7, u64::MAX, h(3), h(9), true, &mut out);
        c.push(8, u64::MAX, h(4), h(9), false, &mut out);
        let codes: Vec<_> = out.iter().map(|f| f.code()).collect();
        assert_eq!(codes, ["chain.missing", "chain.link", "fork.sequence", "chain.link"], "{out:?}");
        let (mut ch, mut out) = (Channels::default(), Vec::new());
        ch.push(1, 2, u64::MAX, 5, h(1), &mut out);
        ch.push(1, 2, u64::MAX, 6, h(2), &mut out);
        assert_eq!(out.iter().map(|f| f.code()).collect::<Vec<_>>(), ["channel.gap", "fork.channel"]);
    }

    #[test]
    fn channels_find_gaps_forks_and_disorder() {
        let (mut c, mut out) = (Channels::default(), Vec::new());
        assert_eq!(c.push(1, 2, 1, 10, h(1), &mut out), Seen::New);
        assert_eq!(c.push(1, 3, 1, 10, h(1), &mut out), Seen::New); // another channel, interleaved
        assert_eq!(c.push(1, 2, 1, 10, h(1), &mut out), Seen::Duplicate);
        assert_eq!(c.push(1, 2, 1, 11, h(2), &mut out), Seen::Fork);
        assert_eq!(c.push(1, 2, 4, 12, h(4), &mut out), Seen::New);
        assert_eq!(c.push(1, 2, 3, 13, h(3), &mut out), Seen::Fork);
        let codes: Vec<_> = out.iter().map(|f| (f.code(), f.seq())).collect();
        assert_eq!(codes, [("fork.channel", 11), ("channel.gap", 12), ("channel.order", 13)]);
        assert_eq!(out[1].to_string(), "channel to 000002: positions 2..3 are missing");
        let all = c.finish(&mut out);
        assert_eq!(all.len(), 2);
        assert_eq!((all[0].1.head, all[0].1.positions, all[0].1.gaps), (4, 2, 1));
    }

    #[test]
    fn gaps_beyond_the_listed_ones_are_counted_not_listed() {
        let (mut c, mut out) = (Channels::default(), Vec::new());
        for i in 0..1000u64 {
            c.push(1, 2, 2 * i + 2, 0, h(1), &mut out);
        }
        assert_eq!(out.len() as u64, GAPS_LISTED);
        c.finish(&mut out);
        assert_eq!(out.last(), Some(&Finding::ChannelGaps { author: 1, recipient: 2, more: 1000 - GAPS_LISTED }));
    }
}
