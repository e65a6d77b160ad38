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

use yipan_proto::Message;

use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
use rayon::prelude::*;
use serde::Serialize;
use uuid::Uuid;
use yipan_core::Locality;
use yipan_log::check::Seen;
use yipan_log::{Code, StoredEvent};
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
    /// Stable code of the problem (`chain.link`, `fork.channel`, `event.forged`, …:
    /// docs/formats.md), for matching; `problem` is for people.
    pub code: &'static str,
    /// What is wrong.
    pub problem: String,
}

impl Finding {
    /// A finding about `author#seq`.
    pub fn new(author: impl Into<String>, seq: u64, code: &'static str, problem: impl Into<String>) -> Finding {
        Finding { author: author.into(), seq, code, problem: problem.into() }
    }
}

impl From<yipan_log::check::Finding> for Finding {
    fn from(f: yipan_log::check::Finding) -> Finding {
        let author = Locality::from_u32(f.author()).map(|l| l.to_string()).unwrap_or_else(|_| f.author().to_string());
        Finding { author, seq: f.seq(), code: f.code(), problem: f.to_string() }
    }
}

impl From<yipan_log::Fault> for Finding {
    fn from(f: yipan_log::Fault) -> Finding {
        Finding { author: f.author, seq: f.seq, code: f.code, problem: f.problem }
    }
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
/// Events whose signature or key failed are kept, in a temporary file, to be
/// checked again once every key handover has been read (a handover may come
/// later in the stream than the events its new key signs); beyond this many
/// bytes of them they are findings at once.
pub const DEFERRED_MAX_BYTES: u64 = 1 << 30;

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
    /// Messages to check again at the end (length-prefixed, with their channel).
    deferred: Option<std::io::BufWriter<std::fs::File>>,
    deferred_bytes: u64,
    /// Key handovers that did not apply when read (an earlier one not yet read).
    deferred_rotations: Vec<(Locality, u64, Vec<u8>, DateTime<Utc>)>,
    report: AuditReport,
    /// author, seq, hash, prev_hash.
    seqs: spill::Spill<76>,
    /// event id, hash, author, seq.
    ids: spill::Spill<60>,
    /// author, recipient, channel position, hash.
    positions: spill::Spill<48>,
    /// author, seq, the key that verified it, recorded_at (seconds, nanoseconds):
    /// checked again at the end if a key handover was applied after events were
    /// accepted (an event verified with a key that a later-read handover replaced).
    keys: spill::Spill<56>,
    /// A key handover changed the trust state after events were accepted.
    rekey: bool,
    /// Author sequences already applied to the projections, as ranges.
    applied: HashMap<u32, RangeSet>,
    projections: Option<Projections>,
    chunk: usize,
    io_error: Option<String>,
}

/// A decoded message on its way through a chunk.
type Decoded = Result<(StoredEvent, Vec<u8>, Channels), Finding>;

/// A decoded message with the key that must have signed it (and its bytes, to retry).
type Keyed = Result<(StoredEvent, VerifyingKey, (Channels, VerifyingKey)), Fail>;

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
            deferred: None,
            deferred_bytes: 0,
            deferred_rotations: Vec::new(),
            report: AuditReport::default(),
            seqs: spill::Spill::new(RUN),
            ids: spill::Spill::new(RUN),
            positions: spill::Spill::new(RUN),
            keys: spill::Spill::new(RUN),
            rekey: false,
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
        self.keys = spill::Spill::new(run);
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
        self.seqs.runs_on_disk() + self.ids.runs_on_disk() + self.positions.runs_on_disk() + self.keys.runs_on_disk()
    }

    fn finding(ev: &StoredEvent, code: &'static str, problem: String) -> Finding {
        Finding::new(ev.envelope.author.clone(), ev.seq(), code, problem)
    }

    /// A message whose key or signature failed, to be tried again at the end:
    /// kept without its tier payloads (checked against their digests now), so
    /// that no personal value goes to the temporary file and only the signed
    /// part, which is all the retry checks, is kept.
    fn retry(ev: &StoredEvent, code: &'static str, problem: String, ch: Channels) -> Fail {
        let f = Self::finding(ev, code, problem);
        if ev.verify_tiers(false).is_err() {
            return Fail::Final(f);
        }
        let mut signed = ev.signed.clone();
        signed.tiers.clear();
        signed.sealed.clear();
        Fail::Retry(f, signed.encode_to_vec(), ch)
    }

    /// Decodes, verifies and records one chunk. `last`: nothing more will
    /// come, so what fails now is a finding, not deferred.
    fn check(&mut self, chunk: Vec<(Vec<u8>, Channels)>, last: bool) {
        let decoded: Vec<Decoded> = chunk
            .into_par_iter()
            .map(|(b, ch)| {
                let ev = StoredEvent::decode(&b)
                    .map_err(|p| Finding::new("?", 0, Code::Malformed.as_str(), format!("undecodable message: {p}")))?;
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
            match self.trust.apply_rotation(bytes, at) {
                Ok(yipan_trust::Applied::Duplicate) => {}
                Ok(_) => self.rekey |= !self.keys.is_empty(),
                Err(_) => self.deferred_rotations.push((author, seq, bytes.to_vec(), at)),
            }
        }
        let trust = &self.trust;
        let keyed: Vec<Keyed> = decoded
            .into_par_iter()
            .map(|r| {
                let (ev, _, ch) = r.map_err(Fail::Final)?;
                let author = ev.author().ok_or_else(|| {
                    Fail::Final(Self::finding(&ev, Code::Author.as_str(), "author is not a division code".into()))
                })?;
                let recorded = ev.envelope.recorded_at.as_ref().and_then(yipan_core::time::from_ts);
                match trust.key_for(author, ev.seq(), recorded) {
                    Ok(key) => Ok((ev, key, (ch, key))),
                    Err(e) => Err(Self::retry(&ev, e.code(), format!("{}: {e}", e.code()), ch)),
                }
            })
            .collect();
        let checked = yipan_log::event::verify_signatures(keyed, |ev, (ch, _), p| {
            Self::retry(ev, Code::Forged.as_str(), format!("forged or altered: {p}"), *ch)
        });
        for r in checked {
            match r {
                Ok((ev, (ch, key))) => match ev.verify_tiers(false) {
                    Ok(()) => self.record(ev, ch, &key),
                    Err(p) => self.report.faults.push(Self::finding(&ev, "event.tiers", p)),
                },
                // Tried again once every key handover is read, unless this is that time.
                Err(Fail::Retry(f, b, ch)) if !last => {
                    if let Err(f) = self.defer(f, &b, ch) {
                        self.report.faults.push(f);
                    }
                }
                Err(Fail::Retry(f, _, _) | Fail::Final(f)) => self.report.faults.push(f),
            }
        }
    }

    /// Keeps a failed message on disk for the retry at the end; gives the
    /// finding back when it cannot be kept.
    fn defer(&mut self, f: Finding, bytes: &[u8], ch: Channels) -> Result<(), Finding> {
        use std::io::Write;
        if self.deferred_bytes + bytes.len() as u64 > DEFERRED_MAX_BYTES {
            let problem =
                format!("{} (not checked again: over {DEFERRED_MAX_BYTES} bytes of failing events)", f.problem);
            return Err(Finding { problem, ..f });
        }
        if self.deferred.is_none() {
            match tempfile::tempfile() {
                Ok(file) => self.deferred = Some(std::io::BufWriter::new(file)),
                Err(e) => {
                    self.io_error.get_or_insert(format!("keeping failed events for a retry: {e}"));
                    return Err(f);
                }
            }
        }
        let only = match ch {
            Channels::All => 0,
            Channels::Only(l) => l.as_u32(),
        };
        let w = self.deferred.as_mut().expect("opened above");
        let written = w
            .write_all(&(bytes.len() as u32).to_be_bytes())
            .and_then(|_| w.write_all(&only.to_be_bytes()))
            .and_then(|_| w.write_all(bytes));
        match written {
            Ok(()) => {
                self.deferred_bytes += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.io_error.get_or_insert(format!("keeping failed events for a retry: {e}"));
                Err(f)
            }
        }
    }

    /// Checks the deferred messages again, as the last input.
    fn retry_deferred(&mut self) -> std::io::Result<()> {
        use std::io::{Read, Seek};
        let Some(w) = self.deferred.take() else { return Ok(()) };
        let mut file = w.into_inner().map_err(|e| e.into_error())?;
        file.rewind()?;
        let mut r = std::io::BufReader::new(file);
        let mut chunk = Vec::new();
        loop {
            let mut head = [0u8; 8];
            match r.read_exact(&mut head) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e),
            }
            let len = u32::from_be_bytes(head[..4].try_into().expect("4 bytes")) as usize;
            let only = u32::from_be_bytes(head[4..].try_into().expect("4 bytes"));
            let mut bytes = vec![0u8; len];
            r.read_exact(&mut bytes)?;
            let ch = match only {
                0 => Channels::All,
                l => Locality::from_u32(l).map(Channels::Only).unwrap_or(Channels::All),
            };
            chunk.push((bytes, ch));
            if chunk.len() >= self.chunk {
                self.check(std::mem::take(&mut chunk), true);
            }
        }
        self.check(chunk, true);
        Ok(())
    }

    /// Records a verified event for the cross-checks and applies it to the projections once.
    fn record(&mut self, ev: StoredEvent, ch: Channels, key: &VerifyingKey) {
        let Some(author) = ev.author() else { return };
        let seq = ev.seq();
        let a = author.as_u32();
        let prev: [u8; 32] = match ev.envelope.prev_hash.as_slice().try_into() {
            Ok(p) => p,
            Err(_) => {
                self.report.faults.push(Self::finding(&ev, Code::Schema.as_str(), "prev_hash is not 32 bytes".into()));
                [0u8; 32]
            }
        };
        let mut rec = [0u8; 76];
        rec[..4].copy_from_slice(&a.to_be_bytes());
        rec[4..12].copy_from_slice(&seq.to_be_bytes());
        rec[12..44].copy_from_slice(&ev.hash);
        rec[44..76].copy_from_slice(&prev);
        let mut result = self.seqs.push(rec);
        if let Some(id) = ev.id() {
            let mut rec = [0u8; 60];
            rec[..16].copy_from_slice(id.as_bytes());
            rec[16..48].copy_from_slice(&ev.hash);
            rec[48..52].copy_from_slice(&a.to_be_bytes());
            rec[52..60].copy_from_slice(&seq.to_be_bytes());
            result = result.and(self.ids.push(rec));
        }
        for r in &ev.envelope.recipients {
            let Ok(rl) = Locality::parse(&r.locality) else { continue };
            if ch != Channels::All && ch != Channels::Only(rl) {
                continue;
            }
            let mut rec = [0u8; 48];
            rec[..4].copy_from_slice(&a.to_be_bytes());
            rec[4..8].copy_from_slice(&rl.as_u32().to_be_bytes());
            rec[8..16].copy_from_slice(&r.channel_seq.to_be_bytes());
            rec[16..48].copy_from_slice(&ev.hash);
            result = result.and(self.positions.push(rec));
        }
        // Without a recorded_at the nanoseconds are -1: no instant, as when it was keyed.
        let recorded = ev.envelope.recorded_at.unwrap_or(yipan_proto::Timestamp { seconds: 0, nanos: -1 });
        let mut rec = [0u8; 56];
        rec[..4].copy_from_slice(&a.to_be_bytes());
        rec[4..12].copy_from_slice(&seq.to_be_bytes());
        rec[12..44].copy_from_slice(key.as_bytes());
        rec[44..52].copy_from_slice(&recorded.seconds.to_be_bytes());
        rec[52..56].copy_from_slice(&recorded.nanos.to_be_bytes());
        result = result.and(self.keys.push(rec));
        if let Err(e) = result {
            self.io_error.get_or_insert(format!("spilling audit records to a temporary file: {e}"));
        }
        // Each author sequence is applied once (the first event seen there, as before).
        if self.applied.entry(a).or_default().insert(seq) && !self.no_digests {
            let calendar = &self.calendar;
            self.projections.get_or_insert_with(|| Projections::new(calendar.clone())).apply(&ev.envelope);
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
            match self.trust.apply_rotation(&bytes, at) {
                Ok(yipan_trust::Applied::Duplicate) => {}
                Ok(_) => self.rekey |= !self.keys.is_empty(),
                Err(f) => self.report.faults.push(Finding::new(
                    author.to_string(),
                    seq,
                    f.code(),
                    format!("{}: {f}", f.code()),
                )),
            }
        }
        // Events whose key or signature failed before every handover was read.
        if let Err(e) = self.retry_deferred() {
            self.io_error.get_or_insert(format!("reading back failed events for a retry: {e}"));
        }
        let mut report = std::mem::take(&mut self.report);
        report.source = source.into();
        report.as_of = Some(as_of);
        if let Err(e) = self.cross_check(&mut report) {
            self.io_error.get_or_insert(format!("reading back audit records: {e}"));
        }
        if let Some(e) = self.io_error.take() {
            report.faults.push(Finding::new("audit", 0, "audit.io", e));
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

    /// Forks, duplicates, chain links and channel gaps, from the sorted spills;
    /// and, if a key handover was applied after events were accepted, whether
    /// each event's key is still the one certified for its sequence.
    fn cross_check(&mut self, report: &mut AuditReport) -> std::io::Result<()> {
        let code = |a: u32| Locality::from_u32(a).map(|l| l.to_string()).unwrap_or_else(|_| a.to_string());
        let be32 = |b: &[u8]| u32::from_be_bytes(b.try_into().expect("4 bytes"));
        let be64 = |b: &[u8]| u64::from_be_bytes(b.try_into().expect("8 bytes"));
        // One id, two contents.
        let mut ids = std::mem::replace(&mut self.ids, spill::Spill::new(1)).sorted()?;
        let mut last: Option<[u8; 60]> = None;
        while let Some(r) = ids.next_record()? {
            if let Some(l) = last.filter(|l| l[..16] == r[..16]) {
                if l[16..48] != r[16..48] {
                    report.forks += 1;
                    let id = Uuid::from_slice(&r[..16]).unwrap_or_default();
                    report.faults.push(Finding {
                        author: code(be32(&r[48..52])),
                        seq: be64(&r[52..60]),
                        code: Code::IdConflict.as_str(),
                        problem: format!("fork: event id {id} signed with two different contents"),
                    });
                }
                continue;
            }
            last = Some(r);
        }
        // Author sequences (repeats, forks, chain links) and channels (gapless
        // from 1, one event per position): the rules every reader shares.
        let mut found = Vec::new();
        let mut chains = yipan_log::check::Chains::default();
        let mut seqs = std::mem::replace(&mut self.seqs, spill::Spill::new(1)).sorted()?;
        while let Some(r) = seqs.next_record()? {
            let (a, seq) = (be32(&r[..4]), be64(&r[4..12]));
            let hash: [u8; 32] = r[12..44].try_into().expect("32 bytes");
            let prev: [u8; 32] = r[44..76].try_into().expect("32 bytes");
            // Streams hold what was addressed to each recipient: chains are partial.
            match chains.push(a, seq, hash, prev, false, &mut found) {
                Seen::New => {
                    report.events += 1;
                    *report.authors.entry(code(a)).or_default() += 1;
                }
                Seen::Duplicate => report.duplicates += 1,
                Seen::Fork => report.forks += 1,
            }
        }
        let mut channels = yipan_log::check::Channels::default();
        let mut positions = std::mem::replace(&mut self.positions, spill::Spill::new(1)).sorted()?;
        while let Some(r) = positions.next_record()? {
            let (a, rl, pos) = (be32(&r[..4]), be32(&r[4..8]), be64(&r[8..16]));
            let hash: [u8; 32] = r[16..48].try_into().expect("32 bytes");
            if channels.push(a, rl, pos, 0, hash, &mut found) == Seen::Fork {
                report.forks += 1;
            }
        }
        for ((a, rl), c) in channels.finish(&mut found) {
            report.channels.push(ChannelSummary {
                author: code(a),
                recipient: code(rl),
                head: c.head,
                positions: c.positions,
            });
        }
        report.faults.extend(found.into_iter().map(Finding::from));
        // Keys: an event accepted before a handover read later must still be
        // signed by the key certified for its sequence once all are known.
        let keys = std::mem::replace(&mut self.keys, spill::Spill::new(1));
        if self.rekey {
            let mut keys = keys.sorted()?;
            while let Some(r) = keys.next_record()? {
                let (a, seq) = (be32(&r[..4]), be64(&r[4..12]));
                let Ok(author) = Locality::from_u32(a) else { continue };
                let ts = yipan_proto::Timestamp {
                    seconds: i64::from_be_bytes(r[44..52].try_into().expect("8 bytes")),
                    nanos: i32::from_be_bytes(r[52..56].try_into().expect("4 bytes")),
                };
                let certified = self.trust.key_for(author, seq, yipan_core::time::from_ts(&ts));
                if !certified.is_ok_and(|k| k.as_bytes()[..] == r[12..44]) {
                    report.faults.push(Finding {
                        author: author.to_string(),
                        seq,
                        code: Code::Forged.as_str(),
                        problem: "forged or altered: signed by a key that a key handover read later in the input \
                                  replaced before this sequence"
                            .into(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Sets of sequence numbers kept as ranges (`start → end`, inclusive): the
/// memory follows the number of gaps, not the largest number.
#[derive(Debug, Default)]
struct RangeSet(BTreeMap<u64, u64>);

impl RangeSet {
    /// Adds `n`; false if it was there already.
    fn insert(&mut self, n: u64) -> bool {
        let below = self.0.range(..=n).next_back().map(|(s, e)| (*s, *e));
        if below.is_some_and(|(_, e)| e >= n) {
            return false;
        }
        let mut start = n;
        if let Some((s, _)) = below.filter(|(_, e)| e.checked_add(1) == Some(n)) {
            start = s;
        }
        let mut end = n;
        if let Some(next) = n.checked_add(1) {
            if let Some(e) = self.0.remove(&next) {
                end = e;
            }
        }
        self.0.insert(start, end);
        true
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
            findings.push(Finding::new(l.to_string(), 0, f.code(), format!("{}: {f}", f.code())));
        }
    }
    for (i, (at, r)) in records.iter().enumerate() {
        if let Err(f) = t.apply_record(r, *at) {
            findings.push(Finding::new(
                "trust",
                i as u64 + 1,
                f.code(),
                format!("record {}: {}: {f}", i + 1, f.code()),
            ));
        }
    }
    (t, findings)
}

#[cfg(test)]
mod tests {
    use super::RangeSet;

    #[test]
    fn a_range_set_holds_each_number_once_in_few_ranges() {
        let mut r = RangeSet::default();
        for n in [5, 7, 6, 1, 3, 2, 4, u64::MAX, 1 << 62] {
            assert!(r.insert(n), "{n}");
        }
        for n in [1, 4, 7, u64::MAX] {
            assert!(!r.insert(n), "{n}");
        }
        assert_eq!(r.0.len(), 3, "{:?}", r.0);
        assert_eq!(r.0[&1], 7);
    }
}
