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
pub mod spill;
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

/// Messages decoded and verified together (on all cores).
pub const CHUNK: usize = 8192;
/// Records of each kind kept in memory before a sorted run goes to disk.
pub const RUN: usize = 1 << 18;
/// Events whose signature or key failed, kept to be checked again once every
/// key handover has been read (a handover may come later in the stream than
/// the events its new key signs); beyond this many they are findings at once.
pub const DEFERRED_MAX: usize = 100_000;

/// Checks events as they are fed, with memory bounded by the number of
/// authors and channels, not by the number of events: messages are decoded
/// and verified in chunks of [`CHUNK`], and what must be compared across the
/// whole input — events at one author sequence, one id, one channel position,
/// and consecutive sequences' chain links — goes to three sorted spills
/// ([`spill`]) merged at [`Auditor::finish`]. The projections rebuilt for
/// the digests grow with the number of persons (none without digests).
pub struct Auditor {
    trust: TrustState,
    /// Skip rebuilding projections (signature, chain and channel checks only).
    no_digests: bool,
    /// The working-day calendar the digests are computed with (nodes use theirs).
    calendar: WorkCalendar,
    pending: Vec<(Vec<u8>, Channels)>,
    deferred: Vec<(Vec<u8>, Channels)>,
    /// Key handovers that did not apply when read (an earlier one not yet read).
    deferred_rotations: Vec<(Locality, u64, Vec<u8>, DateTime<Utc>)>,
    report: AuditReport,
    /// author, seq, hash[..16], prev_hash[..16].
    seqs: spill::Spill<44>,
    /// event id, hash[..16], author, seq.
    ids: spill::Spill<44>,
    /// author, recipient, channel position, hash[..16].
    positions: spill::Spill<32>,
    /// Author sequences already applied to the projections, a bit each.
    applied: HashMap<u32, Vec<u64>>,
    projections: Option<Projections>,
    chunk: usize,
    io_error: Option<String>,
}

/// A decoded message on its way through a chunk.
type Decoded = Result<(StoredEvent, Vec<u8>, Channels), Finding>;

/// A decoded message with the key that must have signed it (and its bytes, to retry).
type Keyed = Result<(StoredEvent, VerifyingKey, (Vec<u8>, Channels)), Fail>;

/// Why a message failed: for good, or (key or signature) perhaps only until
/// a key handover later in the input is read.
enum Fail {
    Final(Finding),
    Retry(Finding, Vec<u8>, Channels),
}

impl Auditor {
    /// An auditor checking signatures with the keys `trust` names (key
    /// handovers found among the events are applied to it as they come).
    pub fn new(trust: TrustState) -> Auditor {
        Auditor {
            trust,
            no_digests: false,
            calendar: WorkCalendar::default(),
            pending: Vec::new(),
            deferred: Vec::new(),
            deferred_rotations: Vec::new(),
            report: AuditReport::default(),
            seqs: spill::Spill::new(RUN),
            ids: spill::Spill::new(RUN),
            positions: spill::Spill::new(RUN),
            applied: HashMap::new(),
            projections: None,
            chunk: CHUNK,
            io_error: None,
        }
    }

    /// An auditor that checks signatures, chains and channels but rebuilds no projections.
    pub fn without_digests(trust: TrustState) -> Auditor {
        Auditor { no_digests: true, ..Auditor::new(trust) }
    }

    /// Computes the digests with `calendar` (holidays and make-up days): it
    /// must be the nodes' calendar, or deadlines in working days differ.
    pub fn with_calendar(mut self, calendar: WorkCalendar) -> Auditor {
        self.calendar = calendar;
        self
    }

    /// Checks `chunk` messages at a time and keeps at most `run` records of
    /// each kind in memory before spilling a sorted run to disk (tests use
    /// small ones to cross every boundary).
    pub fn with_limits(mut self, chunk: usize, run: usize) -> Auditor {
        self.chunk = chunk.max(1);
        self.seqs = spill::Spill::new(run);
        self.ids = spill::Spill::new(run);
        self.positions = spill::Spill::new(run);
        self
    }

    /// Adds one message as read from a source; every [`CHUNK`] messages are checked.
    pub fn add(&mut self, bytes: Vec<u8>, channels: Channels) {
        self.report.messages += 1;
        self.pending.push((bytes, channels));
        if self.pending.len() >= self.chunk {
            let chunk = std::mem::take(&mut self.pending);
            self.check(chunk, false);
        }
    }

    /// Messages added so far.
    pub fn len(&self) -> usize {
        self.report.messages as usize
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.report.messages == 0
    }

    /// Sorted runs written to disk so far (all kinds).
    pub fn runs_on_disk(&self) -> usize {
        self.seqs.runs_on_disk() + self.ids.runs_on_disk() + self.positions.runs_on_disk()
    }

    fn finding(ev: &StoredEvent, problem: String) -> Finding {
        Finding { author: ev.envelope.author.clone(), seq: ev.seq(), problem }
    }

    /// Decodes, verifies and records one chunk. `last`: nothing more will
    /// come, so what fails now is a finding, not deferred.
    fn check(&mut self, chunk: Vec<(Vec<u8>, Channels)>, last: bool) {
        let decoded: Vec<Decoded> = chunk
            .into_par_iter()
            .map(|(b, ch)| {
                let ev = StoredEvent::decode(&b).map_err(|p| Finding {
                    author: "?".into(),
                    seq: 0,
                    problem: format!("undecodable message: {p}"),
                })?;
                Ok((ev, b, ch))
            })
            .collect();
        // Key handovers are in the chains themselves: apply this chunk's, in (author, seq) order.
        let mut handovers: Vec<(Locality, u64, &[u8], DateTime<Utc>)> = decoded
            .iter()
            .filter_map(|r| {
                let (ev, b, _) = r.as_ref().ok()?;
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
            if self.trust.apply_rotation(bytes, at).is_err() {
                self.deferred_rotations.push((author, seq, bytes.to_vec(), at));
            }
        }
        let trust = &self.trust;
        let keyed: Vec<Keyed> = decoded
            .into_par_iter()
            .map(|r| {
                let (ev, b, ch) = r.map_err(Fail::Final)?;
                let author = ev
                    .author()
                    .ok_or_else(|| Fail::Final(Self::finding(&ev, "author is not a division code".into())))?;
                let recorded = ev.envelope.recorded_at.as_ref().and_then(yipan_core::time::from_ts);
                match trust.key_for(author, ev.seq(), recorded) {
                    Ok(key) => Ok((ev, key, (b, ch))),
                    Err(e) => Err(Fail::Retry(Self::finding(&ev, format!("{}: {e}", e.code())), b, ch)),
                }
            })
            .collect();
        let checked = yipan_log::event::verify_signatures(keyed, |ev, (b, ch), p| {
            Fail::Retry(Self::finding(ev, format!("forged or altered: {p}")), b.clone(), *ch)
        });
        for r in checked {
            match r {
                Ok((ev, (_, ch))) => match ev.verify_tiers(false) {
                    Ok(()) => self.record(ev, ch),
                    Err(p) => self.report.faults.push(Self::finding(&ev, p)),
                },
                // Tried again once every key handover is read, unless this is that time.
                Err(Fail::Retry(_, b, ch)) if !last && self.deferred.len() < DEFERRED_MAX => {
                    self.deferred.push((b, ch))
                }
                Err(Fail::Retry(f, _, _) | Fail::Final(f)) => self.report.faults.push(f),
            }
        }
    }

    /// Records a verified event for the cross-checks and applies it to the projections once.
    fn record(&mut self, ev: StoredEvent, ch: Channels) {
        let Some(author) = ev.author() else { return };
        let seq = ev.seq();
        let a = author.as_u32();
        let h16: [u8; 16] = ev.hash[..16].try_into().expect("32-byte hash");
        let mut rec = [0u8; 44];
        rec[..4].copy_from_slice(&a.to_be_bytes());
        rec[4..12].copy_from_slice(&seq.to_be_bytes());
        rec[12..28].copy_from_slice(&h16);
        let prev = ev.envelope.prev_hash.get(..16).unwrap_or(&[0u8; 16]);
        rec[28..44].copy_from_slice(prev);
        let mut result = self.seqs.push(rec);
        if let Some(id) = ev.id() {
            let mut rec = [0u8; 44];
            rec[..16].copy_from_slice(id.as_bytes());
            rec[16..32].copy_from_slice(&h16);
            rec[32..36].copy_from_slice(&a.to_be_bytes());
            rec[36..44].copy_from_slice(&seq.to_be_bytes());
            result = result.and(self.ids.push(rec));
        }
        for r in &ev.envelope.recipients {
            let Ok(rl) = Locality::parse(&r.locality) else { continue };
            if ch != Channels::All && ch != Channels::Only(rl) {
                continue;
            }
            let mut rec = [0u8; 32];
            rec[..4].copy_from_slice(&a.to_be_bytes());
            rec[4..8].copy_from_slice(&rl.as_u32().to_be_bytes());
            rec[8..16].copy_from_slice(&r.channel_seq.to_be_bytes());
            rec[16..32].copy_from_slice(&h16);
            result = result.and(self.positions.push(rec));
        }
        if let Err(e) = result {
            self.io_error.get_or_insert(format!("spilling audit records to a temporary file: {e}"));
        }
        // Each author sequence is applied once (the first event seen there, as before).
        let bits = self.applied.entry(a).or_default();
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if bits.len() <= word {
            bits.resize(word + 1, 0);
        }
        if bits[word] & (1 << bit) == 0 {
            bits[word] |= 1 << bit;
            if !self.no_digests {
                let calendar = &self.calendar;
                self.projections.get_or_insert_with(|| Projections::new(calendar.clone())).apply(&ev.envelope);
            }
        }
    }

    /// Checks what remains, compares everything with everything, and
    /// computes the digests as of `as_of`.
    pub fn finish(mut self, source: &str, as_of: DateTime<Utc>) -> (AuditReport, Projections) {
        let chunk = std::mem::take(&mut self.pending);
        self.check(chunk, false);
        // Handovers that came before the one they follow, in order now.
        let mut rotations = std::mem::take(&mut self.deferred_rotations);
        rotations.sort_by_key(|(a, s, _, _)| (*a, *s));
        for (author, seq, bytes, at) in rotations {
            if let Err(f) = self.trust.apply_rotation(&bytes, at) {
                self.report.faults.push(Finding {
                    author: author.to_string(),
                    seq,
                    problem: format!("{}: {f}", f.code()),
                });
            }
        }
        // Events whose key or signature failed before every handover was read.
        let deferred = std::mem::take(&mut self.deferred);
        for chunk in deferred.chunks(self.chunk) {
            self.check(chunk.to_vec(), true);
        }
        let mut report = std::mem::take(&mut self.report);
        report.source = source.into();
        report.as_of = Some(as_of);
        if let Err(e) = self.cross_check(&mut report) {
            self.io_error.get_or_insert(format!("reading back audit records: {e}"));
        }
        if let Some(e) = self.io_error.take() {
            report.faults.push(Finding { author: "audit".into(), seq: 0, problem: e });
        }
        let mut p = self.projections.take().unwrap_or_else(|| Projections::new(self.calendar.clone()));
        if self.no_digests {
            return (report, p);
        }
        p.shrink_to_fit();
        let mut pairs: Vec<(Locality, Locality)> =
            p.relationships().map(|r| (r.origin.min(r.residence), r.origin.max(r.residence))).collect();
        pairs.sort_unstable();
        pairs.dedup();
        for (a, b) in pairs {
            report.pair_digests.insert(format!("{a},{b}"), hex::encode(p.pair_digest(a, b, as_of)));
        }
        (report, p)
    }

    /// Forks, duplicates, chain links and channel gaps, from the sorted spills.
    fn cross_check(&mut self, report: &mut AuditReport) -> std::io::Result<()> {
        let code = |a: u32| Locality::from_u32(a).map(|l| l.to_string()).unwrap_or_else(|_| a.to_string());
        let be32 = |b: &[u8]| u32::from_be_bytes(b.try_into().expect("4 bytes"));
        let be64 = |b: &[u8]| u64::from_be_bytes(b.try_into().expect("8 bytes"));
        // One id, two contents.
        let mut ids = std::mem::replace(&mut self.ids, spill::Spill::new(1)).sorted()?;
        let mut last: Option<[u8; 44]> = None;
        while let Some(r) = ids.next_record()? {
            if let Some(l) = last.filter(|l| l[..16] == r[..16]) {
                if l[16..32] != r[16..32] {
                    report.forks += 1;
                    let id = Uuid::from_slice(&r[..16]).unwrap_or_default();
                    report.faults.push(Finding {
                        author: code(be32(&r[32..36])),
                        seq: be64(&r[36..44]),
                        problem: format!("fork: event id {id} signed with two different contents"),
                    });
                }
                continue;
            }
            last = Some(r);
        }
        // Author sequences: duplicates, forks, chain links.
        let mut seqs = std::mem::replace(&mut self.seqs, spill::Spill::new(1)).sorted()?;
        let mut last: Option<[u8; 44]> = None;
        while let Some(r) = seqs.next_record()? {
            let (a, seq) = (be32(&r[..4]), be64(&r[4..12]));
            if let Some(l) = last.filter(|l| l[..12] == r[..12]) {
                if l[12..28] == r[12..28] {
                    report.duplicates += 1;
                } else {
                    report.forks += 1;
                    report.faults.push(Finding {
                        author: code(a),
                        seq,
                        problem: format!("fork: two different events at author sequence {seq}"),
                    });
                }
                continue;
            }
            if let Some(l) = last.filter(|l| l[..4] == r[..4] && be64(&l[4..12]) + 1 == seq) {
                if l[12..28] != r[28..44] {
                    report.faults.push(Finding {
                        author: code(a),
                        seq,
                        problem: format!("prev_hash does not match the hash of #{}", seq - 1),
                    });
                }
            }
            report.events += 1;
            *report.authors.entry(code(a)).or_default() += 1;
            last = Some(r);
        }
        // Channels: gapless from 1, one event per position.
        let mut positions = std::mem::replace(&mut self.positions, spill::Spill::new(1)).sorted()?;
        let mut current: Option<(u32, u32, u64, u64, Vec<u64>)> = None; // author, recipient, head, distinct, missing
        let mut last: Option<[u8; 32]> = None;
        let close = |c: Option<(u32, u32, u64, u64, Vec<u64>)>, report: &mut AuditReport| {
            if let Some((a, rl, head, positions, missing)) = c {
                if !missing.is_empty() {
                    report.faults.push(Finding {
                        author: code(a),
                        seq: 0,
                        problem: format!(
                            "channel to {}: positions missing (first: {missing:?}) below head {head}",
                            code(rl)
                        ),
                    });
                }
                report.channels.push(ChannelSummary { author: code(a), recipient: code(rl), head, positions });
            }
        };
        while let Some(r) = positions.next_record()? {
            let (a, rl, pos) = (be32(&r[..4]), be32(&r[4..8]), be64(&r[8..16]));
            if let Some(l) = last.filter(|l| l[..16] == r[..16]) {
                if l[16..32] != r[16..32] {
                    report.forks += 1;
                    report.faults.push(Finding {
                        author: code(a),
                        seq: 0,
                        problem: format!("fork: two different events at channel position {pos} to {}", code(rl)),
                    });
                }
                continue;
            }
            last = Some(r);
            if !current.as_ref().is_some_and(|c| c.0 == a && c.1 == rl) {
                close(current.take(), report);
                current = Some((a, rl, 0, 0, Vec::new()));
            }
            let c = current.as_mut().expect("set above");
            let mut expected = c.2 + 1;
            while expected < pos && c.4.len() < 5 {
                c.4.push(expected);
                expected += 1;
            }
            c.2 = pos;
            c.3 += 1;
        }
        close(current.take(), report);
        Ok(())
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
