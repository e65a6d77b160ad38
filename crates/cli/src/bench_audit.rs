//! `yipan bench audit`: audit throughput with full signature verification
//! (decode, batch-verify, chains, channels, projections) beside the raw sled
//! scan of the same store and raw ed25519 verification of the same run, one
//! by one and in batches, on all cores. The same events re-signed one by one
//! (the per-event form every earlier release wrote) are audited too, so the
//! cost of each form shows side by side.

use std::time::Instant;

use anyhow::Result;
use serde::Serialize;
use yipan_audit::{Auditor, Channels};
use yipan_core::Locality;
use yipan_log::{SledBackend, SledStore};

/// What the benchmark measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub events: u64,
    pub audit_per_s: f64,
    pub verify_1_per_s: f64,
    pub verify_batch64_per_s: f64,
    pub cores: usize,
    pub two_core_limit_per_s: f64,
    pub faults: usize,
    pub with_digests_per_s: f64,
    /// Reading every stored record once, nothing decoded (the same store).
    pub raw_scan_per_s: f64,
    /// Auditing from memory: batch-signed events (as written) and the same
    /// events re-signed per event.
    pub memory_batch_per_s: f64,
    pub memory_per_event_per_s: f64,
    pub per_event_faults: usize,
    /// Events audited from memory in each form (at most [`MEMORY_SAMPLE`]).
    pub memory_events: u64,
    /// Resident memory when the store audit began, and its peak during it
    /// (process-wide: sled's page cache included), bytes.
    pub rss_before_audit: u64,
    pub rss_peak_audit: u64,
    /// The same for the raw scan of the store.
    pub rss_before_scan: u64,
    pub rss_peak_scan: u64,
    /// The stream measurement: events generated on the fly and audited.
    pub stream_events: u64,
    pub stream_per_s: f64,
    pub stream_rss_before: u64,
    pub stream_rss_peak: u64,
    pub stream_runs_on_disk: usize,
    pub stream_faults: usize,
}

/// Events audited from memory in each signature form (both forms held at once).
pub const MEMORY_SAMPLE: u64 = 500_000;

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "audit with full signature verification: {:>9.0} events/s over {} events ({} faults)",
            self.audit_per_s, self.events, self.faults
        )?;
        writeln!(
            f,
            "  … plus rebuilding projection digests:  {:>9.0} events/s (over {} events)",
            self.with_digests_per_s, self.memory_events
        )?;
        writeln!(f, "raw ed25519 verify, one by one, {} threads: {:>9.0} /s", self.cores, self.verify_1_per_s)?;
        writeln!(
            f,
            "raw ed25519 verify, batches of 64, {} threads: {:>7.0} /s  (the {}-core verification limit)",
            self.cores, self.verify_batch64_per_s, self.cores
        )?;
        writeln!(f, "raw sled scan of the same store:            {:>9.0} records/s", self.raw_scan_per_s)?;
        writeln!(
            f,
            "from memory ({} events): batch-signed {:>9.0} events/s, per-event signed {:>9.0} events/s ({} faults)",
            self.memory_events, self.memory_batch_per_s, self.memory_per_event_per_s, self.per_event_faults
        )?;
        let mb = |b: u64| b as f64 / 1048576.0;
        writeln!(
            f,
            "resident memory, store opened afresh: audit {:.0} MB at start, peak {:.0} MB (+{:.0} MB); raw scan {:.0} MB, peak {:.0} MB (+{:.0} MB)",
            mb(self.rss_before_audit),
            mb(self.rss_peak_audit),
            mb(self.rss_peak_audit.saturating_sub(self.rss_before_audit)),
            mb(self.rss_before_scan),
            mb(self.rss_peak_scan),
            mb(self.rss_peak_scan.saturating_sub(self.rss_before_scan)),
        )?;
        if self.stream_events > 0 {
            writeln!(
                f,
                "stream of {} events generated, signed and audited on the fly: {:>9.0} events/s, {} faults, {} sorted runs on disk; resident memory {:.0} MB at start, peak {:.0} MB (+{:.0} MB)",
                self.stream_events,
                self.stream_per_s,
                self.stream_faults,
                self.stream_runs_on_disk,
                mb(self.stream_rss_before),
                mb(self.stream_rss_peak),
                mb(self.stream_rss_peak.saturating_sub(self.stream_rss_before)),
            )?;
        }
        writeln!(f, "audit / raw sled scan: {:.3}", self.audit_per_s / self.raw_scan_per_s)?;
        writeln!(
            f,
            "per-event audit / verification limit: {:.2}",
            self.memory_per_event_per_s / self.two_core_limit_per_s
        )?;
        write!(f, "audit / per-event verification limit: {:.2}", self.audit_per_s / self.two_core_limit_per_s)
    }
}

/// Calls `f` with every stored event of the sled store in `dir`, in key
/// order, straight from its segments: what an audit of a data directory
/// reads, without opening the log (whose indexes would be measured too).
fn each_stored(dir: &std::path::Path, limit: u64, mut f: impl FnMut(&[u8])) -> Result<()> {
    use yipan_log::layout::SEGMENT;
    let backend = SledBackend::open(dir)?;
    let mut n = 0;
    for item in backend.db().range(&[SEGMENT][..]..&[SEGMENT + 1][..]) {
        let (_, v) = item?;
        for e in yipan_log::segment::decode(&v).map_err(anyhow::Error::msg)? {
            if n == limit {
                return Ok(());
            }
            f(e.bytes);
            n += 1;
        }
    }
    Ok(())
}

/// Runs `f` and returns its result with the resident memory before it and at its peak.
fn with_peak<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, u64, u64)> {
    let before = crate::bench_projections::rss_bytes();
    crate::bench_projections::reset_peak_rss();
    let out = f()?;
    Ok((out, before, crate::bench_projections::peak_rss_bytes().max(before)))
}

/// Audits `n` batch-signed events of one author (610112, to 411522), made,
/// signed and fed on the fly and never held: what the auditor itself needs
/// for a stream of any length. Returns (events/s including generation,
/// memory before, peak memory, runs on disk, faults).
fn stream_audit(
    n: u64,
    key: &ed25519_dalek::SigningKey,
    roster: &yipan_audit::TrustState,
) -> Result<(f64, u64, u64, usize, usize)> {
    use sha2::{Digest, Sha256};
    use yipan_proto::v1::{Envelope, Recipient, SignedEvent};
    use yipan_proto::Message;
    let recorded = yipan_core::time::to_ts(chrono::Utc::now());
    let ((rate, runs, faults), before, peak) = with_peak(|| {
        let t = Instant::now();
        let mut auditor = Auditor::without_digests(roster.clone());
        let (mut seq, mut prev) = (0u64, [0u8; 32]);
        let mut runs = 0;
        while seq < n {
            let m = (yipan_trust::batch::MAX_LEAVES as u64).min(n - seq);
            let envelopes: Vec<Vec<u8>> = (seq + 1..=seq + m)
                .map(|s| {
                    let draft = yipan_log::bench::sample_draft(s);
                    // A UUIDv7-shaped id, unique per sequence.
                    let mut id = [0u8; 16];
                    id[6] = 0x70;
                    id[8..].copy_from_slice(&s.to_be_bytes());
                    let bytes = Envelope {
                        schema_version: yipan_proto::SCHEMA_VERSION,
                        event_id: id.to_vec(),
                        author: "610112".into(),
                        author_seq: s,
                        prev_hash: prev.to_vec(),
                        recorded_at: Some(recorded),
                        occurred_at: Some(recorded),
                        person_key: draft.person_key,
                        origin: draft.origin,
                        residence: draft.residence,
                        recipients: vec![Recipient { locality: "411522".into(), channel_seq: s }],
                        body: draft.body,
                        ..Default::default()
                    }
                    .encode_to_vec();
                    prev = Sha256::digest(&bytes).into();
                    bytes
                })
                .collect();
            let refs: Vec<&[u8]> = envelopes.iter().map(|e| e.as_slice()).collect();
            let proofs = yipan_trust::batch::sign(key, "610112", seq + 1, &refs);
            for (envelope, proof) in envelopes.into_iter().zip(proofs) {
                auditor.add(
                    SignedEvent { envelope, batch: Some(proof), ..Default::default() }.encode_to_vec(),
                    Channels::All,
                );
            }
            seq += m;
            runs = auditor.runs_on_disk();
        }
        let (report, _) = auditor.finish("stream", chrono::Utc::now());
        Ok((n as f64 / t.elapsed().as_secs_f64(), runs, report.faults.len()))
    })?;
    Ok((rate, before, peak, runs, faults))
}

pub fn run(events: u64, stream_events: u64) -> Result<Report> {
    let tmp = tempfile::tempdir()?;
    let me = Locality::parse("610112").map_err(anyhow::Error::msg)?;
    let key = yipan_log::keyfile::generate()?;
    let roster = {
        let log = SledStore::open(SledBackend::open(tmp.path())?, me, key.clone())?;
        yipan_log::bench::fill(&log, events, yipan_log::bench::sample_draft)?;
        log.trust()
    };
    let (verify_1_per_s, verify_batch64_per_s) = yipan_log::bench::raw_verify(40_000, true)?;
    // The raw baseline: every stored event read once from a freshly opened store, nothing decoded.
    let ((raw_scan_per_s, _), rss_before_scan, rss_peak_scan) = with_peak(|| {
        let t = Instant::now();
        let mut bytes = 0usize;
        each_stored(tmp.path(), u64::MAX, |b| bytes += b.len())?;
        Ok((events as f64 / t.elapsed().as_secs_f64(), std::hint::black_box(bytes)))
    })?;
    // The audit of the same store, from a freshly opened store: the growth beyond the
    // raw scan's is the auditor's.
    let ((audit_per_s, faults), rss_before_audit, rss_peak_audit) = with_peak(|| {
        let t = Instant::now();
        let mut auditor = Auditor::without_digests(roster.clone());
        each_stored(tmp.path(), u64::MAX, |b| auditor.add(b.to_vec(), Channels::All))?;
        let (report, _) = auditor.finish("bench", chrono::Utc::now());
        Ok((events as f64 / t.elapsed().as_secs_f64(), report.faults.len()))
    })?;
    // With the projections rebuilt (they grow with persons: every event here is
    // another person), over at most the sample.
    let memory_events = events.min(MEMORY_SAMPLE);
    let t = Instant::now();
    let mut auditor = Auditor::new(roster.clone());
    each_stored(tmp.path(), memory_events, |b| auditor.add(b.to_vec(), Channels::All))?;
    let _ = auditor.finish("bench", chrono::Utc::now());
    let with_digests_per_s = memory_events as f64 / t.elapsed().as_secs_f64();
    // Some of the same events in memory, as written and re-signed one by one.
    let mut batch_form = Vec::with_capacity(memory_events as usize);
    each_stored(tmp.path(), memory_events, |b| batch_form.push(b.to_vec()))?;
    let per_event_form: Vec<Vec<u8>> = {
        use ed25519_dalek::Signer;
        use rayon::prelude::*;
        use yipan_proto::Message;
        batch_form
            .par_iter()
            .map(|b| {
                let mut s = yipan_proto::v1::SignedEvent::decode(b.as_slice()).expect("stored event decodes");
                s.batch = None;
                s.signature = key.sign(&s.envelope).to_bytes().to_vec();
                s.encode_to_vec()
            })
            .collect()
    };
    let audit_memory = |raw: Vec<Vec<u8>>| {
        let t = Instant::now();
        let mut auditor = Auditor::without_digests(roster.clone());
        for b in raw {
            auditor.add(b, Channels::All);
        }
        let (report, _) = auditor.finish("bench", chrono::Utc::now());
        (memory_events as f64 / t.elapsed().as_secs_f64(), report.faults.len())
    };
    let (memory_batch_per_s, _) = audit_memory(batch_form);
    let (memory_per_event_per_s, per_event_faults) = audit_memory(per_event_form);
    let (stream_per_s, stream_rss_before, stream_rss_peak, stream_runs_on_disk, stream_faults) =
        if stream_events > 0 { stream_audit(stream_events, &key, &roster)? } else { (0.0, 0, 0, 0, 0) };
    Ok(Report {
        events,
        audit_per_s,
        verify_1_per_s,
        verify_batch64_per_s,
        cores: rayon::current_num_threads(),
        two_core_limit_per_s: verify_batch64_per_s,
        faults,
        with_digests_per_s,
        raw_scan_per_s,
        memory_batch_per_s,
        memory_per_event_per_s,
        per_event_faults,
        memory_events,
        rss_before_audit,
        rss_peak_audit,
        rss_before_scan,
        rss_peak_scan,
        stream_events,
        stream_per_s,
        stream_rss_before,
        stream_rss_peak,
        stream_runs_on_disk,
        stream_faults,
    })
}
