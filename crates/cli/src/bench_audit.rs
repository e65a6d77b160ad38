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
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "audit with full signature verification: {:>9.0} events/s over {} events ({} faults)",
            self.audit_per_s, self.events, self.faults
        )?;
        writeln!(f, "  … plus rebuilding projection digests:  {:>9.0} events/s", self.with_digests_per_s)?;
        writeln!(f, "raw ed25519 verify, one by one, {} threads: {:>9.0} /s", self.cores, self.verify_1_per_s)?;
        writeln!(
            f,
            "raw ed25519 verify, batches of 64, {} threads: {:>7.0} /s  (the {}-core verification limit)",
            self.cores, self.verify_batch64_per_s, self.cores
        )?;
        writeln!(f, "raw sled scan of the same store:            {:>9.0} records/s", self.raw_scan_per_s)?;
        writeln!(
            f,
            "from memory: batch-signed {:>9.0} events/s, per-event signed {:>9.0} events/s ({} faults)",
            self.memory_batch_per_s, self.memory_per_event_per_s, self.per_event_faults
        )?;
        writeln!(f, "audit / raw sled scan: {:.3}", self.audit_per_s / self.raw_scan_per_s)?;
        writeln!(
            f,
            "per-event audit / verification limit: {:.2}",
            self.memory_per_event_per_s / self.two_core_limit_per_s
        )?;
        write!(f, "audit / per-event verification limit: {:.2}", self.audit_per_s / self.two_core_limit_per_s)
    }
}

pub fn run(events: u64) -> Result<Report> {
    let tmp = tempfile::tempdir()?;
    let me = Locality::parse("610112").map_err(anyhow::Error::msg)?;
    let key = yipan_log::keyfile::generate()?;
    let log = SledStore::open(SledBackend::open(tmp.path())?, me, key.clone())?;
    yipan_log::bench::fill(&log, events, yipan_log::bench::sample_draft)?;
    let roster = log.trust();
    let (verify_1_per_s, verify_batch64_per_s) = yipan_log::bench::raw_verify(40_000, true)?;
    let t = Instant::now();
    let mut auditor = Auditor::without_digests(roster.clone());
    log.for_each_raw(None, usize::MAX, |_, _, b| auditor.add(b.to_vec(), Channels::All))?;
    let (report, _) = auditor.finish("bench", chrono::Utc::now());
    let audit_per_s = events as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut auditor = Auditor::new(roster.clone());
    log.for_each_raw(None, usize::MAX, |_, _, b| auditor.add(b.to_vec(), Channels::All))?;
    let _ = auditor.finish("bench", chrono::Utc::now());
    let with_digests_per_s = events as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut bytes = 0usize;
    log.for_each_raw(None, usize::MAX, |_, _, b| bytes += b.len())?;
    let raw_scan_per_s = events as f64 / t.elapsed().as_secs_f64();
    std::hint::black_box(bytes);
    // The same events in memory, as written and re-signed one by one.
    let mut batch_form = Vec::with_capacity(events as usize);
    log.for_each_raw(None, usize::MAX, |_, _, b| batch_form.push(b.to_vec()))?;
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
        (events as f64 / t.elapsed().as_secs_f64(), report.faults.len())
    };
    let (memory_batch_per_s, _) = audit_memory(batch_form);
    let (memory_per_event_per_s, per_event_faults) = audit_memory(per_event_form);
    Ok(Report {
        events,
        audit_per_s,
        verify_1_per_s,
        verify_batch64_per_s,
        cores: rayon::current_num_threads(),
        two_core_limit_per_s: verify_batch64_per_s,
        faults: report.faults.len(),
        with_digests_per_s,
        raw_scan_per_s,
        memory_batch_per_s,
        memory_per_event_per_s,
        per_event_faults,
    })
}
