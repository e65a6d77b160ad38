//! `yipan bench audit`: audit throughput with full signature verification
//! (decode, batch-verify, chains, channels, projections) beside raw ed25519
//! verification of the same run, one by one and in batches, on all cores.

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
        write!(f, "audit / limit: {:.2}", self.audit_per_s / self.two_core_limit_per_s)
    }
}

pub fn run(events: u64) -> Result<Report> {
    let tmp = tempfile::tempdir()?;
    let me = Locality::parse("610112").map_err(anyhow::Error::msg)?;
    let key = yipan_log::keyfile::generate()?;
    let log = SledStore::open(SledBackend::open(tmp.path())?, me, key)?;
    yipan_log::bench::fill(&log, events, yipan_log::bench::sample_draft)?;
    let roster = log.trust();
    let (verify_1_per_s, verify_batch64_per_s) = yipan_log::bench::raw_verify(40_000, true)?;
    let t = Instant::now();
    let mut auditor = Auditor::without_digests();
    log.for_each_raw(None, usize::MAX, |_, _, b| auditor.add(b.to_vec(), Channels::All))?;
    let (report, _) = auditor.finish("bench", &roster, chrono::Utc::now());
    let audit_per_s = events as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut auditor = Auditor::new();
    log.for_each_raw(None, usize::MAX, |_, _, b| auditor.add(b.to_vec(), Channels::All))?;
    let _ = auditor.finish("bench", &roster, chrono::Utc::now());
    let with_digests_per_s = events as f64 / t.elapsed().as_secs_f64();
    Ok(Report {
        events,
        audit_per_s,
        verify_1_per_s,
        verify_batch64_per_s,
        cores: rayon::current_num_threads(),
        two_core_limit_per_s: verify_batch64_per_s,
        faults: report.faults.len(),
        with_digests_per_s,
    })
}
