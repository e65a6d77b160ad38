//! The audit of a whole store: every chain, signature, sequence gap, channel
//! position and index entry, with each fault named by author and sequence.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use yipan_core::Locality;
use yipan_trust::TrustState;

use crate::backend::Backend;
use crate::error::Result;
use crate::event::StoredEvent;
use crate::layout;
use crate::segment;

/// One problem found by [`run`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Fault {
    /// Author locality of the faulty event (or chain).
    pub author: String,
    /// Author sequence of the faulty event (0 when about the whole chain).
    pub seq: u64,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}: {}", self.author, self.seq, self.problem)
    }
}

/// Per-author summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AuthorSummary {
    /// Events held.
    pub events: u64,
    /// Lowest sequence held.
    pub first_seq: u64,
    /// Highest sequence held.
    pub last_seq: u64,
}

/// What [`run`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    /// The store's locality.
    pub locality: String,
    /// Events checked.
    pub events: u64,
    /// Per author.
    pub authors: BTreeMap<String, AuthorSummary>,
    /// Entries in quarantine (rejected foreign events; not faults of the store).
    pub quarantined: u64,
    /// Entries in the disclosure log (each verified in its chain).
    #[serde(default)]
    pub disclosures: u64,
    /// Everything wrong.
    pub faults: Vec<Fault>,
}

impl VerifyReport {
    /// True when no fault was found.
    pub fn ok(&self) -> bool {
        self.faults.is_empty()
    }
}

struct Chain {
    author: u32,
    own: bool,
    prev: Option<(u64, [u8; 32])>,
}

/// Verifies every event of `backend` as the store of `me`, each signature
/// with the key `trust` names for its author and sequence.
pub fn run<B: Backend>(backend: &B, me: Locality, trust: &TrustState) -> Result<VerifyReport> {
    let mut report = VerifyReport { locality: me.to_string(), ..Default::default() };
    let mut faults: Vec<Fault> = Vec::new();
    let mut chain: Option<Chain> = None;
    let mut out_channels: HashMap<String, u64> = HashMap::new();
    let mut in_channels: HashMap<u32, u64> = HashMap::new();
    let me_text = me.to_string();
    let mut own_last: Option<(u64, [u8; 32])> = None;
    let mut index_errors: Vec<Fault> = Vec::new();
    // Own tiers dropped by an erasure (an own event keeps every other tier).
    let erased = crate::erase::erased_of(backend, me.as_u32())?;

    let mut ids: std::collections::HashSet<[u8; 16]> = std::collections::HashSet::new();
    let mut heads = crate::event::HeadCache::default();
    let mut visit = |author: u32, seq: u64, v: &[u8]| -> bool {
        let author_text = author.to_string();
        let fault =
            |faults: &mut Vec<Fault>, problem: String| faults.push(Fault { author: author_text.clone(), seq, problem });
        if chain.as_ref().map(|c| c.author) != Some(author) {
            let own = author == me.as_u32();
            chain = Some(Chain { author, own, prev: None });
        }
        let Some(c) = chain.as_mut() else { return true };
        report.events += 1;
        let summary = report.authors.entry(author_text.clone()).or_default();
        summary.events += 1;
        if summary.first_seq == 0 {
            summary.first_seq = seq;
        }
        summary.last_seq = seq;

        // Sequence continuity of the own chain (foreign chains are partial by design).
        if c.own {
            let expected = c.prev.map(|(s, _)| s + 1).unwrap_or(1);
            if seq != expected {
                fault(
                    &mut faults,
                    format!("events {expected}..{} are missing from the own chain", seq.saturating_sub(1)),
                );
            }
        }
        let ev = match StoredEvent::decode(v) {
            Ok(ev) => ev,
            Err(problem) => {
                fault(&mut faults, problem);
                c.prev = None;
                return true;
            }
        };
        let env = &ev.envelope;
        if env.author != author_text || env.author_seq != seq {
            fault(
                &mut faults,
                format!(
                    "stored under {author_text}#{seq} but says {}#{} (moved or reordered)",
                    env.author, env.author_seq
                ),
            );
        }
        let recorded = env.recorded_at.as_ref().and_then(yipan_core::time::from_ts);
        let key = Locality::from_u32(author).map_err(|_| ()).and_then(|a| {
            trust.key_for(a, seq, recorded).map_err(|e| fault(&mut faults, format!("{}: {e}", e.code())))
        });
        if let Ok(key) = key {
            if let Err(p) = ev.verify_signature_cached(&key, &mut heads) {
                fault(&mut faults, format!("{p} (with the key certified for #{seq})"));
            }
        }
        if let Err(p) = ev.verify_tiers(false) {
            fault(&mut faults, p);
        }
        if c.own {
            let gone = erased.get(&seq).map_or(0, |(m, _)| *m);
            for d in &env.tier_digests {
                let held = ev.signed.tiers.iter().any(|p| p.tier == d.tier);
                if !held && (d.tier < 1 || d.tier > 7 || gone & (1 << d.tier) == 0) {
                    let name =
                        yipan_proto::v1::Tier::try_from(d.tier).map(yipan_core::kind::tier_name).unwrap_or("unknown");
                    fault(&mut faults, format!("{name} tier payload is missing and was not erased"));
                }
            }
        }
        if !ev.signed.sealed.is_empty() {
            fault(&mut faults, "holds sealed tiers (only the wire form may)".into());
        }
        if let Some((prev_seq, prev_hash)) = c.prev {
            if prev_seq + 1 == seq && env.prev_hash.as_slice() != prev_hash {
                fault(&mut faults, format!("prev_hash does not match the hash of #{prev_seq}"));
            }
        } else if c.own && seq == 1 && env.prev_hash.as_slice() != [0u8; 32] {
            fault(&mut faults, "first event's prev_hash is not zero".into());
        }
        if c.own {
            for r in &env.recipients {
                let last = out_channels.entry(r.locality.clone()).or_insert(0);
                if r.channel_seq != *last + 1 {
                    fault(&mut faults, format!("channel to {} jumps from {} to {}", r.locality, last, r.channel_seq));
                }
                *last = r.channel_seq;
            }
            own_last = Some((seq, ev.hash));
        } else {
            match env.recipients.iter().find(|r| r.locality == me_text) {
                None => fault(&mut faults, format!("held here but not addressed to {me_text}")),
                Some(r) => {
                    let last = in_channels.entry(author).or_insert(0);
                    if r.channel_seq != *last + 1 {
                        fault(
                            &mut faults,
                            format!("channel from {author_text} jumps from {} to {}", last, r.channel_seq),
                        );
                    }
                    *last = r.channel_seq;
                }
            }
        }
        match <[u8; 16]>::try_from(env.event_id.as_slice()) {
            Ok(id) if !ids.insert(id) => index_errors.push(Fault {
                author: author_text.clone(),
                seq,
                problem: "event id is used by another stored event".into(),
            }),
            Ok(_) => {}
            Err(_) => index_errors.push(Fault {
                author: author_text.clone(),
                seq,
                problem: "event id is not 16 bytes".into(),
            }),
        }
        c.prev = Some((seq, ev.hash));
        true
    };
    let mut segment_faults: Vec<Fault> = Vec::new();
    backend.for_each(&[layout::SEGMENT], &[layout::SEGMENT + 1], &mut |k, v| {
        let Some((author, last)) = layout::parse_segment_key(k) else {
            segment_faults.push(Fault {
                author: "?".into(),
                seq: 0,
                problem: format!("unreadable segment key {}", hex::encode(k)),
            });
            return true;
        };
        match segment::decode(v) {
            Err(problem) => segment_faults.push(Fault {
                author: author.to_string(),
                seq: last,
                problem: format!("segment ending at #{last}: {problem}"),
            }),
            Ok(entries) => {
                if entries.last().map(|e| e.seq) != Some(last) {
                    segment_faults.push(Fault {
                        author: author.to_string(),
                        seq: last,
                        problem: format!("segment keyed by #{last} does not end with it"),
                    });
                }
                for e in entries {
                    visit(author, e.seq, e.bytes);
                }
            }
        }
        true
    })?;
    faults.extend(segment_faults);
    faults.extend(index_errors);

    // The recorded head catches deletion of the last events.
    if let Some(h) = backend.get(layout::META_HEAD)? {
        if h.len() == 40 {
            let seq = u64::from_be_bytes(h[..8].try_into().unwrap_or_default());
            let hash: [u8; 32] = h[8..].try_into().unwrap_or_default();
            match own_last {
                Some((s, hh)) if s == seq && hh == hash => {}
                Some((s, _)) if s != seq => faults.push(Fault {
                    author: me_text.clone(),
                    seq,
                    problem: format!("recorded head is #{seq} but the own chain ends at #{s}"),
                }),
                Some(_) => faults.push(Fault {
                    author: me_text.clone(),
                    seq,
                    problem: "hash of the last event differs from the recorded head".into(),
                }),
                None => faults.push(Fault {
                    author: me_text.clone(),
                    seq,
                    problem: format!("recorded head is #{seq} but the own chain is empty"),
                }),
            }
        } else {
            faults.push(Fault { author: me_text.clone(), seq: 0, problem: "recorded head is malformed".into() });
        }
    }
    let mut quarantined = 0u64;
    backend.for_each(&[layout::QUARANTINE], &[layout::QUARANTINE + 1], &mut |_, _| {
        quarantined += 1;
        true
    })?;
    report.quarantined = quarantined;
    report.faults = faults;
    Ok(report)
}
