//! Audit: proves what happened from signed events alone.
//!
//! - [`Auditor`]: fed raw `SignedEvent` bytes from any source — a node's
//!   log, a node's API, or the JetStream streams with no node involved — it
//!   verifies every signature with the key the trust state names for its
//!   author and sequence (certificates up to the anchor, key handovers found
//!   among the events, revocation bounds; ed25519 batches on all cores), every author chain where consecutive events are held, every
//!   author→recipient channel (gapless from 1, no two events at one
//!   position), flags forks, and rebuilds the projections to compute the
//!   digests nodes report.
//! - [`stream`]: reads every message of the `YIPAN_EV_*` streams.
//! - [`roster`]: the hand-added roster file format (air-gapped sites).
//! - [`trust_from`]: a trust state rebuilt from trust records and an anchor.

pub mod roster;
pub mod stream;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
use rayon::prelude::*;
use serde::Serialize;
use uuid::Uuid;
use yipan_core::Locality;
use yipan_log::StoredEvent;
use yipan_projections::{Projections, WorkCalendar};
pub use yipan_trust::TrustState;

/// Which channels of an event this source vouches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channels {
    /// Every recipient's channel (an author's own log).
    All,
    /// Only this recipient's (a recipient's log, or a stream subject).
    Only(Locality),
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Author of the event (or chain) concerned.
    pub author: String,
    /// Its author sequence (0: the whole chain or channel).
    pub seq: u64,
    /// What is wrong.
    pub problem: String,
}

/// Per author→recipient channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelSummary {
    /// Author.
    pub author: String,
    /// Recipient.
    pub recipient: String,
    /// Highest position seen.
    pub head: u64,
    /// Distinct positions seen.
    pub positions: u64,
}

/// What an audit found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditReport {
    /// Where the events came from.
    pub source: String,
    /// Messages read.
    pub messages: u64,
    /// Distinct events.
    pub events: u64,
    /// Messages that repeated an event already seen (redeliveries, re-sends).
    pub duplicates: u64,
    /// Events per author.
    pub authors: BTreeMap<String, u64>,
    /// Channels.
    pub channels: Vec<ChannelSummary>,
    /// Faults (bad signatures, broken chains, gaps, forks, undecodable messages).
    pub faults: Vec<Finding>,
    /// Forks among the faults.
    pub forks: u64,
    /// Quarantine entries of the audited node (data-directory source only).
    pub quarantined: u64,
    /// Digest of every locality pair's relationships, as of `as_of` (hex).
    pub pair_digests: BTreeMap<String, String>,
    /// Instant of the digests.
    pub as_of: Option<DateTime<Utc>>,
    /// Digest comparisons with nodes: "pair @ node" → "match" or the difference.
    pub comparisons: BTreeMap<String, String>,
}

impl AuditReport {
    /// True when nothing is wrong.
    pub fn ok(&self) -> bool {
        self.faults.is_empty() && self.comparisons.values().all(|v| v == "match")
    }
}

/// Collects events, then checks them all.
#[derive(Default)]
pub struct Auditor {
    raw: Vec<(Vec<u8>, Channels)>,
    /// Skip rebuilding projections (signature, chain and channel checks only).
    no_digests: bool,
    /// The working-day calendar the digests are computed with (nodes use theirs).
    calendar: WorkCalendar,
}

impl Auditor {
    /// A new auditor.
    pub fn new() -> Auditor {
        Auditor::default()
    }

    /// An auditor that checks signatures, chains and channels but rebuilds no projections.
    pub fn without_digests() -> Auditor {
        Auditor { no_digests: true, ..Default::default() }
    }

    /// Computes the digests with `calendar` (holidays and make-up days): it
    /// must be the nodes' calendar, or deadlines in working days differ.
    pub fn with_calendar(mut self, calendar: WorkCalendar) -> Auditor {
        self.calendar = calendar;
        self
    }

    /// Adds one message as read from a source.
    pub fn add(&mut self, bytes: Vec<u8>, channels: Channels) {
        self.raw.push((bytes, channels));
    }

    /// The highest author sequence of `author` among the messages added
    /// (the witness bound for revoking its key).
    pub fn highest_seq(&self, author: Locality) -> u64 {
        let code = author.to_string();
        self.raw
            .par_iter()
            .filter_map(|(b, _)| StoredEvent::decode(b).ok())
            .filter(|e| e.envelope.author == code)
            .map(|e| e.seq())
            .max()
            .unwrap_or(0)
    }

    /// Messages added so far.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Verifies everything against `trust` and rebuilds the projections as of `as_of`.
    pub fn finish(self, source: &str, trust: &TrustState, as_of: DateTime<Utc>) -> (AuditReport, Projections) {
        let mut report = AuditReport {
            source: source.into(),
            messages: self.raw.len() as u64,
            as_of: Some(as_of),
            ..Default::default()
        };
        // Key handovers are in the chains themselves: apply them in (author, seq) order first.
        let mut trust = trust.clone();
        let mut handovers: Vec<(Locality, u64, &[u8], DateTime<Utc>)> = self
            .raw
            .par_iter()
            .filter_map(|(b, _)| {
                let ev = StoredEvent::decode(b).ok()?;
                match ev.envelope.body.as_ref().and_then(|x| x.kind.as_ref()) {
                    Some(yipan_proto::v1::event_body::Kind::KeyRotated(_)) => Some((
                        ev.author()?,
                        ev.seq(),
                        b.as_slice(),
                        ev.envelope.recorded_at.as_ref().and_then(yipan_core::time::from_ts).unwrap_or_default(),
                    )),
                    _ => None,
                }
            })
            .collect();
        handovers.sort_by_key(|(a, s, _, _)| (*a, *s));
        for (author, seq, bytes, at) in handovers {
            if let Err(f) = trust.apply_rotation(bytes, at) {
                report.faults.push(Finding { author: author.to_string(), seq, problem: format!("{}: {f}", f.code()) });
            }
        }
        let trust = &trust;
        // Decode in parallel, then verify signatures in batches on all cores.
        let decoded: Vec<Result<(StoredEvent, VerifyingKey, Channels), Finding>> = self
            .raw
            .par_iter()
            .map(|(b, ch)| {
                let ev = StoredEvent::decode(b).map_err(|p| Finding {
                    author: "?".into(),
                    seq: 0,
                    problem: format!("undecodable message: {p}"),
                })?;
                let author = ev.author().ok_or_else(|| Finding {
                    author: ev.envelope.author.clone(),
                    seq: ev.seq(),
                    problem: "author is not a division code".into(),
                })?;
                let recorded = ev.envelope.recorded_at.as_ref().and_then(yipan_core::time::from_ts);
                let key = trust.key_for(author, ev.seq(), recorded).map_err(|e| Finding {
                    author: author.to_string(),
                    seq: ev.seq(),
                    problem: format!("{}: {e}", e.code()),
                })?;
                Ok((ev, key, *ch))
            })
            .collect();
        let finding =
            |ev: &StoredEvent, problem: String| Finding { author: ev.envelope.author.clone(), seq: ev.seq(), problem };
        let checked: Vec<Result<(StoredEvent, Channels), Finding>> =
            yipan_log::event::verify_signatures(decoded, |ev, p| finding(ev, format!("forged or altered: {p}")))
                .into_iter()
                .map(|r| {
                    let (ev, ch) = r?;
                    ev.verify_tiers(false).map_err(|p| finding(&ev, p))?;
                    Ok((ev, ch))
                })
                .collect();

        let mut by_id: HashMap<Uuid, [u8; 32]> = HashMap::new();
        let mut by_seq: HashMap<(Locality, u64), [u8; 32]> = HashMap::new();
        let mut channels: BTreeMap<(Locality, Locality), BTreeMap<u64, [u8; 32]>> = BTreeMap::new();
        let mut events: BTreeMap<(Locality, u64), StoredEvent> = BTreeMap::new();
        for r in checked {
            let (ev, ch) = match r {
                Ok(x) => x,
                Err(f) => {
                    report.faults.push(f);
                    continue;
                }
            };
            let (Some(author), Some(id)) = (ev.author(), ev.id()) else { continue };
            let fork = |problem: String| Finding { author: author.to_string(), seq: ev.seq(), problem };
            match by_id.get(&id) {
                Some(h) if *h == ev.hash => {
                    report.duplicates += 1;
                }
                Some(_) => {
                    report.forks += 1;
                    report.faults.push(fork(format!("fork: event id {id} signed with two different contents")));
                    continue;
                }
                None => {
                    by_id.insert(id, ev.hash);
                }
            }
            if let Some(h) = by_seq.insert((author, ev.seq()), ev.hash) {
                if h != ev.hash {
                    report.forks += 1;
                    report.faults.push(fork(format!("fork: two different events at author sequence {}", ev.seq())));
                }
            }
            for r in &ev.envelope.recipients {
                let Ok(rl) = Locality::parse(&r.locality) else { continue };
                if ch != Channels::All && ch != Channels::Only(rl) {
                    continue;
                }
                let slot = channels.entry((author, rl)).or_default();
                if let Some(h) = slot.insert(r.channel_seq, ev.hash) {
                    if h != ev.hash {
                        report.forks += 1;
                        report.faults.push(fork(format!(
                            "fork: two different events at channel position {} to {rl}",
                            r.channel_seq
                        )));
                    }
                }
            }
            events.entry((author, ev.seq())).or_insert(ev);
        }
        // Chains: where consecutive sequences are held, the links must hold.
        let mut prev: Option<(Locality, u64, [u8; 32])> = None;
        for ((author, seq), ev) in &events {
            *report.authors.entry(author.to_string()).or_default() += 1;
            if let Some((pa, ps, ph)) = prev {
                if pa == *author && ps + 1 == *seq && ev.envelope.prev_hash.as_slice() != ph {
                    report.faults.push(Finding {
                        author: author.to_string(),
                        seq: *seq,
                        problem: format!("prev_hash does not match the hash of #{ps}"),
                    });
                }
            }
            prev = Some((*author, *seq, ev.hash));
        }
        // Channels: gapless from 1.
        for ((author, recipient), slots) in &channels {
            let head = slots.keys().next_back().copied().unwrap_or(0);
            let missing: Vec<u64> = (1..=head).filter(|p| !slots.contains_key(p)).take(5).collect();
            if !missing.is_empty() {
                report.faults.push(Finding {
                    author: author.to_string(),
                    seq: 0,
                    problem: format!(
                        "channel to {recipient}: positions missing (first: {missing:?}) below head {head}"
                    ),
                });
            }
            report.channels.push(ChannelSummary {
                author: author.to_string(),
                recipient: recipient.to_string(),
                head,
                positions: slots.len() as u64,
            });
        }
        report.events = events.len() as u64;
        // Projections and their digests.
        let mut p = Projections::new(self.calendar.clone());
        if self.no_digests {
            return (report, p);
        }
        for ev in events.values() {
            p.apply(&ev.envelope);
        }
        let mut pairs: Vec<(Locality, Locality)> =
            p.relationships().map(|r| (r.origin.min(r.residence), r.origin.max(r.residence))).collect();
        pairs.sort_unstable();
        pairs.dedup();
        for (a, b) in pairs {
            report.pair_digests.insert(format!("{a},{b}"), hex::encode(p.pair_digest(a, b, as_of)));
        }
        (report, p)
    }
}

/// Prints a report for people.
pub fn print_human(r: &AuditReport) {
    println!("audit of {}: {} messages, {} distinct events, {} repeated", r.source, r.messages, r.events, r.duplicates);
    for (a, n) in &r.authors {
        println!("  author {a}: {n} events");
    }
    for c in &r.channels {
        println!("  channel {} → {}: head {}, {} positions held", c.author, c.recipient, c.head, c.positions);
    }
    if r.quarantined > 0 {
        println!("  quarantine: {} rejected messages kept with reasons", r.quarantined);
    }
    for (pair, d) in &r.pair_digests {
        println!("  digest {pair}: {}", &d[..16]);
    }
    for (what, result) in &r.comparisons {
        println!("  compare {what}: {result}");
    }
    if r.ok() {
        println!("OK: every signature, chain link and channel checks out; digests match");
    } else {
        println!("FAULTS: {} ({} forks)", r.faults.len(), r.forks);
        for f in &r.faults {
            println!("  {}#{}: {}", f.author, f.seq, f.problem);
        }
        for (what, result) in r.comparisons.iter().filter(|(_, v)| *v != "match") {
            println!("  digest mismatch {what}: {result}");
        }
    }
}

/// A trust state verifying up to `anchor`, fed `records` (trust-stream
/// records with the instant each was witnessed, in stream order) and
/// hand-added `bootstrap` keys. Records that do not verify become findings
/// named `trust` with their code.
pub fn trust_from(
    anchor: Option<VerifyingKey>,
    records: &[(DateTime<Utc>, Vec<u8>)],
    bootstrap: &HashMap<Locality, VerifyingKey>,
) -> (TrustState, Vec<Finding>) {
    let mut t = TrustState::new(anchor);
    let mut findings = Vec::new();
    let mut keys: Vec<_> = bootstrap.iter().collect();
    keys.sort_by_key(|(l, _)| **l);
    for (l, k) in keys {
        if let Err(f) = t.add_bootstrap(*l, *k) {
            findings.push(Finding { author: l.to_string(), seq: 0, problem: format!("{}: {f}", f.code()) });
        }
    }
    for (i, (at, r)) in records.iter().enumerate() {
        if let Err(f) = t.apply_record(r, *at) {
            findings.push(Finding {
                author: "trust".into(),
                seq: i as u64 + 1,
                problem: format!("record {}: {}: {f}", i + 1, f.code()),
            });
        }
    }
    (t, findings)
}
