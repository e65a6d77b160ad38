//! The append benchmark: durable signed appends/s under group commit, beside
//! raw baselines measured in the same run (raw sled insert+flush, raw ed25519
//! signing), and the latency of one append under a steady offered load.
//!
//! No thresholds: the figures and ratios are printed, never asserted.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::Signer;
use prost::Message;
use rayon::prelude::*;
use yipan_core::{Locality, PersonKey};
use yipan_proto::v1::{self, event_body::Kind, EventBody, EventDraft};

use crate::backend::SledBackend;
use crate::error::Result;
use crate::keyfile;
use crate::log::Log;

/// Benchmark settings.
#[derive(Debug, Clone)]
pub struct AppendBenchConfig {
    /// Events appended in the throughput phase.
    pub events: u64,
    /// Concurrent appending clients (each waits for its append to be durable).
    pub clients: usize,
    /// Offered rate of the latency phase, appends/s.
    pub steady_rate: u64,
    /// Length of the latency phase.
    pub steady_duration: Duration,
    /// Records per flush in the raw sled baseline.
    pub raw_flush_every: u64,
}

impl Default for AppendBenchConfig {
    fn default() -> Self {
        AppendBenchConfig {
            events: 200_000,
            clients: 128,
            steady_rate: 1_000,
            steady_duration: Duration::from_secs(5),
            raw_flush_every: 1_000,
        }
    }
}

/// What the benchmark measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AppendBenchReport {
    /// Durable signed appends/s with group commit.
    pub appends_per_s: f64,
    /// Mean events per flush during the throughput phase.
    pub mean_group: f64,
    /// Mean stored record size, bytes.
    pub record_bytes: usize,
    /// Raw sled inserts/s, flushing every `raw_flush_every` records.
    pub raw_sled_per_s: f64,
    /// Records per flush of the raw sled baseline.
    pub raw_flush_every: u64,
    /// Raw ed25519 signatures/s on one thread.
    pub raw_sign_1_per_s: f64,
    /// Raw ed25519 signatures/s on all cores.
    pub raw_sign_all_per_s: f64,
    /// Threads used for the all-cores signing figure.
    pub cores: usize,
    /// Offered rate in the latency phase.
    pub steady_rate: u64,
    /// p50 latency of one append in the latency phase, µs.
    pub p50_us: u64,
    /// p99 latency of one append in the latency phase, µs.
    pub p99_us: u64,
    /// Appends completed in the latency phase.
    pub steady_appends: u64,
}

impl std::fmt::Display for AppendBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "durable signed appends (group commit): {:>10.0} events/s  (mean {:.0} events/flush, {} B/record)",
            self.appends_per_s, self.mean_group, self.record_bytes
        )?;
        writeln!(
            f,
            "raw sled insert+flush (every {:>5}):  {:>10.0} records/s  ratio {:.2}",
            self.raw_flush_every,
            self.raw_sled_per_s,
            self.appends_per_s / self.raw_sled_per_s
        )?;
        writeln!(
            f,
            "raw ed25519 sign, 1 thread:            {:>10.0} signs/s    ratio {:.2}",
            self.raw_sign_1_per_s,
            self.appends_per_s / self.raw_sign_1_per_s
        )?;
        writeln!(
            f,
            "raw ed25519 sign, {} threads:           {:>10.0} signs/s    ratio {:.2}",
            self.cores,
            self.raw_sign_all_per_s,
            self.appends_per_s / self.raw_sign_all_per_s
        )?;
        write!(
            f,
            "latency at a steady {}/s: p50 {} µs, p99 {} µs over {} appends",
            self.steady_rate, self.p50_us, self.p99_us, self.steady_appends
        )
    }
}

/// A realistic draft: an arrival registered at 610112 for a person from 411522,
/// with identity and contact tiers.
pub fn sample_draft(i: u64) -> EventDraft {
    let person = PersonKey::derive(&format!("4115221990{i:08}"), b"bench");
    EventDraft {
        person_key: person.to_string(),
        origin: "411522".into(),
        residence: "610112".into(),
        body: Some(EventBody {
            kind: Some(Kind::ArrivalRegistered(v1::ArrivalRegistered {
                channel: v1::RegistrationChannel::RentalHousing as i32,
                township: "610112004".into(),
                expected_stay_months: 12,
                ..Default::default()
            })),
        }),
        identity: Some(v1::IdentityTier {
            name: "测试人员".into(),
            id_number: "11010519491231002X".into(),
            birth_date: "1990-01-01".into(),
            sex: "F".into(),
            married: true,
        }),
        contact: Some(v1::ContactTier {
            phone: "13800001234".into(),
            address: "未央区某街道某号".into(),
            channel: String::new(),
        }),
        ..Default::default()
    }
}

/// Runs the benchmark in a fresh store under `dir`.
pub fn run_append_bench(dir: &Path, cfg: &AppendBenchConfig) -> Result<AppendBenchReport> {
    let cores = rayon::current_num_threads();
    let key = keyfile::generate()?;
    let me = Locality::parse("610112").map_err(crate::Error::Storage)?;

    // Raw ed25519 signing, same message size as an envelope.
    let msg = vec![7u8; 300];
    let n_sign = 20_000u64;
    let t = Instant::now();
    for _ in 0..n_sign {
        std::hint::black_box(key.sign(&msg));
    }
    let raw_sign_1_per_s = n_sign as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    (0..n_sign * 2).into_par_iter().for_each(|_| {
        std::hint::black_box(key.sign(&msg));
    });
    let raw_sign_all_per_s = (n_sign * 2) as f64 / t.elapsed().as_secs_f64();

    // Throughput with many concurrent clients.
    let log = Arc::new(Log::open(SledBackend::open(&dir.join("log"))?, me, key.clone())?);
    // Clients are tasks on a one-thread runtime, as in a node's API server:
    // each appends one event and waits until it is durable, then the next.
    let next = Arc::new(AtomicU64::new(0));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| crate::Error::Storage(format!("runtime: {e}")))?;
    let t = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..cfg.clients)
            .map(|_| {
                let log = log.clone();
                let next = next.clone();
                let total = cfg.events;
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= total {
                            return Ok::<(), crate::Error>(());
                        }
                        log.append_async(sample_draft(i)).await?;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.map_err(|_| crate::Error::Storage("bench client panicked".into()))??;
        }
        Ok::<(), crate::Error>(())
    })?;
    let appends_per_s = cfg.events as f64 / t.elapsed().as_secs_f64();
    let (commits, events) = log.commit_stats();
    let mean_group = events as f64 / commits.max(1) as f64;
    let record_bytes = log.read_author(me, 1, 1)?.first().map(|e| e.signed.encoded_len()).unwrap_or(400);

    // Latency under a steady offered load.
    let interval = Duration::from_secs_f64(1.0 / cfg.steady_rate.max(1) as f64);
    let (tx, rx) =
        std::sync::mpsc::channel::<(Instant, tokio::sync::oneshot::Receiver<Result<Vec<crate::Appended>>>)>();
    let collector = std::thread::spawn(move || -> Result<Vec<u64>> {
        let mut lat = Vec::new();
        for (start, r) in rx {
            r.blocking_recv().map_err(|_| crate::Error::Closed)??;
            lat.push(start.elapsed().as_micros() as u64);
        }
        Ok(lat)
    });
    let start = Instant::now();
    let mut k = 0u64;
    while start.elapsed() < cfg.steady_duration {
        let due = start + interval * k as u32;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let submitted = Instant::now();
        let r = log.submit_for_bench(sample_draft(cfg.events + k))?;
        let _ = tx.send((submitted, r));
        k += 1;
    }
    drop(tx);
    let mut lat = collector.join().map_err(|_| crate::Error::Storage("collector panicked".into()))??;
    lat.sort_unstable();
    let pct =
        |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0);
    let (p50_us, p99_us) = (pct(0.50), pct(0.99));
    let steady_appends = lat.len() as u64;
    drop(log);

    // Raw sled: same record size, sequential keys, a flush every N records.
    let raw = SledBackend::open(&dir.join("raw"))?;
    let db = raw.db();
    let value = vec![0x5au8; record_bytes];
    let t = Instant::now();
    for i in 0..cfg.events {
        db.insert(crate::layout::segment_key(1, i), value.as_slice())?;
        if (i + 1) % cfg.raw_flush_every == 0 {
            db.flush()?;
        }
    }
    db.flush()?;
    let raw_sled_per_s = cfg.events as f64 / t.elapsed().as_secs_f64();

    Ok(AppendBenchReport {
        appends_per_s,
        mean_group,
        record_bytes,
        raw_sled_per_s,
        raw_flush_every: cfg.raw_flush_every,
        raw_sign_1_per_s,
        raw_sign_all_per_s,
        cores,
        steady_rate: cfg.steady_rate,
        p50_us,
        p99_us,
        steady_appends,
    })
}

/// Appends `events` drafts made by `draft(i)` in atomic batches of 10,000
/// (how the benchmarks build large logs).
pub fn fill<B: crate::backend::Backend>(log: &Log<B>, events: u64, draft: impl Fn(u64) -> EventDraft) -> Result<()> {
    let mut i = 0;
    while i < events {
        let n = 10_000.min(events - i);
        log.append_batch((i..i + n).map(&draft).collect())?;
        i += n;
    }
    Ok(())
}

/// Raw ed25519 verification rates of 300-byte messages: one by one, and in
/// batches of 64 — on all cores if `all_cores`, else on this thread.
pub fn raw_verify(n: usize, all_cores: bool) -> Result<(f64, f64)> {
    use ed25519_dalek::Verifier;
    let key = keyfile::generate()?;
    let public = key.verifying_key();
    let msgs: Vec<Vec<u8>> = (0..64u32).map(|i| [i.to_be_bytes().to_vec(), vec![7u8; 296]].concat()).collect();
    let sigs: Vec<ed25519_dalek::Signature> = msgs.iter().map(|m| key.sign(m)).collect();
    let refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
    let keys = vec![public; 64];
    let single = |i: usize| std::hint::black_box(public.verify(&msgs[i % 64], &sigs[i % 64]).is_ok());
    let batch = |_| std::hint::black_box(ed25519_dalek::verify_batch(&refs, &sigs, &keys).is_ok());
    let t = Instant::now();
    let good = if all_cores {
        (0..n).into_par_iter().map(single).filter(|ok| *ok).count()
    } else {
        (0..n).map(single).filter(|ok| *ok).count()
    };
    let single_per_s = n as f64 / t.elapsed().as_secs_f64();
    let rounds = n / 64;
    let t = Instant::now();
    let good_batches = if all_cores {
        (0..rounds).into_par_iter().map(batch).filter(|ok| *ok).count()
    } else {
        (0..rounds).map(batch).filter(|ok| *ok).count()
    };
    let batch_per_s = (rounds * 64) as f64 / t.elapsed().as_secs_f64();
    if good != n || good_batches != rounds {
        return Err(crate::Error::Storage("raw verification baseline failed to verify its own signatures".into()));
    }
    Ok((single_per_s, batch_per_s))
}
