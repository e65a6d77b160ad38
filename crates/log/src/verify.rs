//! The audit of a whole store: every chain, signature, sequence gap, channel
//! position and index entry, with each fault named by author and sequence.

use std::collections::BTreeMap;
use std::fmt;

use yipan_core::Locality;
use yipan_trust::TrustState;

use crate::backend::Backend;
use crate::check;
use crate::error::Result;
use crate::event::StoredEvent;
use crate::layout;
use crate::reason::Code;

/// One problem found by [`run`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Fault {
    /// Author locality of the faulty event (or chain).
    pub author: String,
    /// Author sequence of the faulty event (0 when about the whole chain).
    pub seq: u64,
    /// Stable code of the problem (`chain.link`, `fork.channel`, `event.forged`, …:
    /// docs/formats.md), for matching; `problem` is for people.
    pub code: &'static str,
    /// What is wrong.
    pub problem: String,
}

impl From<check::Finding> for Fault {
    fn from(f: check::Finding) -> Fault {
        let author = Locality::from_u32(f.author()).map(|l| l.to_string()).unwrap_or_else(|_| f.author().to_string());
        Fault { author, seq: f.seq(), code: f.code(), problem: f.to_string() }
    }
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

/// Verifies every event of `backend` as the store of `me`, each signature
/// with the key `trust` names for its author and sequence.
pub fn run<B: Backend>(backend: &B, me: Locality, trust: &TrustState) -> Result<VerifyReport> {
    let mut report = VerifyReport { locality: me.to_string(), ..Default::default() };
    let mut faults: Vec<Fault> = Vec::new();
    // Chain links, the own chain's completeness and channel positions: the
    // rules every reader shares (`crate::check`).
    let mut chains = check::Chains::default();
    let mut channels = check::Channels::default();
    let mut found: Vec<check::Finding> = Vec::new();
    let me_text = me.to_string();
    let mut own_last: Option<(u64, [u8; 32])> = None;
    let mut index_errors: Vec<Fault> = Vec::new();
    // Own tiers dropped by an erasure (an own event keeps every other tier).
    let erased = crate::erase::erased_of(backend, me.as_u32())?;

    let mut ids: std::collections::HashSet<[u8; 16]> = std::collections::HashSet::new();
    let mut heads = crate::event::HeadCache::default();
    let mut visit = |author: u32, seq: u64, v: &[u8]| -> bool {
        let author_text = author.to_string();
        let fault = |faults: &mut Vec<Fault>, code: &'static str, problem: String| {
            faults.push(Fault { author: author_text.clone(), seq, code, problem })
        };
        let own = author == me.as_u32();
        report.events += 1;
        let summary = report.authors.entry(author_text.clone()).or_default();
        summary.events += 1;
        if summary.first_seq == 0 {
            summary.first_seq = seq;
        }
        summary.last_seq = seq;

        let ev = match StoredEvent::decode(v) {
            Ok(ev) => ev,
            Err(problem) => {
                fault(&mut faults, Code::Malformed.as_str(), problem);
                chains.unreadable(author, seq, own, &mut found);
                return true;
            }
        };
        let env = &ev.envelope;
        if env.author != author_text || env.author_seq != seq {
            fault(
                &mut faults,
                "store.moved",
                format!(
                    "stored under {author_text}#{seq} but says {}#{} (moved or reordered)",
                    env.author, env.author_seq
                ),
            );
        }
        let recorded = env.recorded_at.as_ref().and_then(yipan_core::time::from_ts);
        let key = Locality::from_u32(author).map_err(|_| ()).and_then(|a| {
            trust.key_for(a, seq, recorded).map_err(|e| fault(&mut faults, e.code(), format!("{}: {e}", e.code())))
        });
        if let Ok(key) = key {
            if let Err(p) = ev.verify_signature_cached(&key, &mut heads) {
                fault(&mut faults, Code::Forged.as_str(), format!("{p} (with the key certified for #{seq})"));
            }
        }
        if let Err(p) = ev.verify_tiers(false) {
            fault(&mut faults, "event.tiers", p);
        }
        if own {
            let gone = erased.get(&seq).map_or(0, |(m, _)| *m);
            for d in &env.tier_digests {
                let held = ev.signed.tiers.iter().any(|p| p.tier == d.tier);
                if !held && (d.tier < 1 || d.tier > 7 || gone & (1 << d.tier) == 0) {
                    let name =
                        yipan_proto::v1::Tier::try_from(d.tier).map(yipan_core::kind::tier_name).unwrap_or("unknown");
                    fault(&mut faults, "event.tiers", format!("{name} tier payload is missing and was not erased"));
                }
            }
        }
        if !ev.signed.sealed.is_empty() {
            fault(&mut faults, "event.tiers", "holds sealed tiers (only the wire form may)".into());
        }
        let prev: [u8; 32] = env.prev_hash.as_slice().try_into().unwrap_or([0xff; 32]);
        chains.push(author, seq, ev.hash, prev, own, &mut found);
        if own {
            for r in &env.recipients {
                match r.locality.parse::<u32>() {
                    Ok(to) => {
                        channels.push(author, to, r.channel_seq, seq, ev.hash, &mut found);
                    }
                    Err(_) => {
                        fault(&mut faults, Code::Schema.as_str(), format!("recipient {:?} is not a code", r.locality))
                    }
                }
            }
            own_last = Some((seq, ev.hash));
        } else {
            match env.recipients.iter().find(|r| r.locality == me_text) {
                None => fault(
                    &mut faults,
                    Code::WrongRecipient.as_str(),
                    format!("held here but not addressed to {me_text}"),
                ),
                Some(r) => {
                    channels.push(author, me.as_u32(), r.channel_seq, seq, ev.hash, &mut found);
                }
            }
        }
        match <[u8; 16]>::try_from(env.event_id.as_slice()) {
            Ok(id) if !ids.insert(id) => index_errors.push(Fault {
                author: author_text.clone(),
                seq,
                code: Code::IdConflict.as_str(),
                problem: "event id is used by another stored event".into(),
            }),
            Ok(_) => {}
            Err(_) => index_errors.push(Fault {
                author: author_text.clone(),
                seq,
                code: Code::Schema.as_str(),
                problem: "event id is not 16 bytes".into(),
            }),
        }
        faults.extend(found.drain(..).map(Fault::from));
        true
    };
    let mut segment_faults: Vec<Fault> = Vec::new();
    crate::log::each_segment(backend, &[layout::SEGMENT], &[layout::SEGMENT + 1], |k, at, entries| {
        let Some((author, last)) = at else {
            segment_faults.push(Fault {
                author: "?".into(),
                seq: 0,
                code: "store.segment",
                problem: format!("unreadable segment key {}", hex::encode(k)),
            });
            return true;
        };
        match entries {
            Err(problem) => segment_faults.push(Fault {
                author: author.to_string(),
                seq: last,
                code: "store.segment",
                problem: format!("segment ending at #{last}: {problem}"),
            }),
            Ok(entries) => {
                if entries.last().map(|e| e.seq) != Some(last) {
                    segment_faults.push(Fault {
                        author: author.to_string(),
                        seq: last,
                        code: "store.segment",
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
                    code: "store.head",
                    problem: format!("recorded head is #{seq} but the own chain ends at #{s}"),
                }),
                Some(_) => faults.push(Fault {
                    author: me_text.clone(),
                    seq,
                    code: "store.head",
                    problem: "hash of the last event differs from the recorded head".into(),
                }),
                None => faults.push(Fault {
                    author: me_text.clone(),
                    seq,
                    code: "store.head",
                    problem: format!("recorded head is #{seq} but the own chain is empty"),
                }),
            }
        } else {
            faults.push(Fault {
                author: me_text.clone(),
                seq: 0,
                code: "store.head",
                problem: "recorded head is malformed".into(),
            });
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
