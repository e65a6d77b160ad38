//! `yipan sim worker --spec FILE`: one hosting process of the national
//! simulation. It runs a [`Host`] over its localities (a province group),
//! draws the whole population from the shared seed and appends, through each
//! tenant's own log, the events its tenants author, one batch at a time per
//! tenant (so each tenant's events keep their order). It reports progress as
//! one JSON line a second on stdout and answers the orchestrator's commands
//! on stdin: `go`, `channels FILE`, `digests UNIX_SECONDS FILE`, `stop`.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use yipan_core::Locality;
use yipan_node::host::{Host, HostConfig};
use yipan_proto::v1::EventDraft;
use yipan_sync::metrics::LagHistogram;

use super::country::{self, Country};

/// What the orchestrator tells a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    /// Its number.
    pub index: usize,
    /// Its `host.toml`.
    pub host_config: PathBuf,
    /// The localities it hosts.
    pub tenants: Vec<String>,
    /// Localities every tenant must hold a certificate of before the load starts.
    pub sentinels: Vec<String>,
    /// The population's seed and size.
    pub seed: u64,
    /// Persons drawn.
    pub persons: u64,
    /// Share of arrivals carrying the identity tier.
    pub tiers: f64,
    /// Localities per province (0: all).
    pub per_province: usize,
    /// The instant events are dated back from.
    pub now: DateTime<Utc>,
    /// The person-key secret (hex).
    pub secret_hex: String,
    /// Events per append batch.
    pub batch: usize,
}

/// One progress line.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// Worker number.
    pub worker: usize,
    /// `starting`, `trust` (waiting for every key), `ready`, `loading`, `loaded`, `stopped`.
    pub phase: String,
    /// Tenants hosted.
    pub tenants: usize,
    /// Tenants holding every sentinel's certificate.
    pub certified: usize,
    /// Tenants whose NATS connection is up.
    pub connected: usize,
    /// Own events appended by the load.
    pub appended: u64,
    /// Appends refused (a defect of the simulation or the node).
    pub refused: u64,
    /// The first refusal.
    pub first_refusal: Option<String>,
    /// Events sent, counted per recipient (sum of outbound channel heads).
    pub sent: u64,
    /// Events received and stored (log length less own events).
    pub received: u64,
    /// Own events not yet acknowledged by JetStream.
    pub outbox_pending: u64,
    /// Cumulative replication-lag histogram of all tenants (bucket counts).
    pub lag: Vec<u64>,
    /// Resident memory of this process, bytes.
    pub rss: u64,
    /// OS threads of this process.
    pub threads: u64,
    /// The host's publish budget.
    pub budget: Option<yipan_sync::budget::BudgetStatus>,
    /// Times a tenant lost its province inbox's coverage.
    pub coverage_lost: u64,
}

fn proc_status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
}

struct State {
    host: Host,
    tenants: Vec<Locality>,
    sentinels: Vec<Locality>,
    /// Every locality of the simulation.
    everyone: Vec<Locality>,
    appended: AtomicU64,
    refused: AtomicU64,
    first_refusal: Mutex<Option<String>>,
    phase: Mutex<String>,
}

impl State {
    fn report(&self, index: usize) -> Report {
        let mut r = Report {
            worker: index,
            phase: self.phase.lock().map(|p| p.clone()).unwrap_or_default(),
            tenants: self.tenants.len(),
            appended: self.appended.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            first_refusal: self.first_refusal.lock().ok().and_then(|f| f.clone()),
            rss: proc_status("VmRSS:") * 1024,
            threads: proc_status("Threads:"),
            budget: self.host.publish_budget(),
            coverage_lost: self.host.inboxes().iter().map(|i| i.coverage_lost).sum(),
            ..Default::default()
        };
        let mut lag = Vec::new();
        for l in &self.tenants {
            let (Some(log), Some(m)) = (self.host.log(*l), self.host.metrics(*l)) else { continue };
            if self.sentinels.iter().all(|s| log.trusts(*s)) {
                r.certified += 1;
            }
            r.connected += usize::from(m.nats_connected.load(Ordering::Relaxed) == 1);
            r.outbox_pending += m.outbox_pending.load(Ordering::Relaxed);
            r.sent += log.outbound_heads(u64::MAX).unwrap_or_default().iter().map(|(_, h)| *h).sum::<u64>();
            let own = log.head().map(|(seq, _)| seq).unwrap_or(0);
            r.received += (log.len() as u64).saturating_sub(own);
            let counts = m.lag.counts();
            if lag.len() < counts.len() {
                lag.resize(counts.len(), 0);
            }
            for (a, c) in lag.iter_mut().zip(counts) {
                *a += c;
            }
        }
        r.lag = lag;
        r
    }

    fn set_phase(&self, phase: &str) {
        if let Ok(mut p) = self.phase.lock() {
            *p = phase.into();
        }
    }
}

fn emit(line: &impl Serialize) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, line);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// Runs a worker until the orchestrator says `stop` (or closes stdin).
pub async fn run(spec_path: PathBuf) -> Result<()> {
    let spec: Spec =
        serde_json::from_slice(&std::fs::read(&spec_path).with_context(|| format!("{}", spec_path.display()))?)
            .context("the worker's spec")?;
    let cfg = HostConfig::load(&spec.host_config)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let host = Host::start(cfg, listener).await?;
    let parse = |codes: &[String]| -> Result<Vec<Locality>> {
        codes.iter().map(|c| Locality::parse(c).map_err(anyhow::Error::msg)).collect()
    };
    let state = Arc::new(State {
        host,
        tenants: parse(&spec.tenants)?,
        sentinels: parse(&spec.sentinels)?,
        everyone: Country::load(spec.per_province).map_err(anyhow::Error::msg)?.localities(),
        appended: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        first_refusal: Mutex::new(None),
        phase: Mutex::new("trust".into()),
    });
    let done = Arc::new(AtomicBool::new(false));
    let reporter = {
        let (state, done, index) = (state.clone(), done.clone(), spec.index);
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let s = state.clone();
                if let Ok(r) = tokio::task::spawn_blocking(move || s.report(index)).await {
                    emit(&r);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    // Commands arrive on stdin, read on a thread of its own.
    let (commands, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::stdin().lock().lines().map_while(std::result::Result::ok) {
            if commands.send(line).is_err() {
                return;
            }
        }
    });
    let mut load: Option<tokio::task::JoinHandle<()>> = None;
    while let Some(line) = lines.recv().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["go"] if load.is_none() => {
                state.set_phase("loading");
                load = Some(tokio::spawn(generate(state.clone(), spec.clone())));
            }
            ["channels", file] => {
                let s = state.clone();
                let file = PathBuf::from(file);
                tokio::task::spawn_blocking(move || channels(&s, &file)).await??;
                emit(&serde_json::json!({"worker": spec.index, "channels": true}));
            }
            ["digests", secs, file] => {
                let as_of = DateTime::from_timestamp(secs.parse()?, 0).context("digests: as_of")?;
                let s = state.clone();
                let file = PathBuf::from(file);
                let pairs = digests(s, as_of, &file).await?;
                emit(&serde_json::json!({"worker": spec.index, "digests": pairs}));
            }
            ["stop"] => break,
            _ => tracing::warn!(command = %line, "unknown worker command"),
        }
    }
    if let Some(l) = load {
        l.abort();
    }
    done.store(true, Ordering::Relaxed);
    let _ = reporter.await;
    let state = Arc::into_inner(state).context("the load still holds the host")?;
    state.host.stop().await?;
    emit(&serde_json::json!({"worker": spec.index, "stopped": true, "peak_rss": proc_status("VmHWM:") * 1024}));
    Ok(())
}

/// Draws the population and appends what this worker's tenants author.
async fn generate(state: Arc<State>, spec: Spec) {
    let country = match Country::load(spec.per_province) {
        Ok(c) => c,
        Err(e) => {
            refuse(&state, 1, e);
            return;
        }
    };
    let secret = hex::decode(&spec.secret_hex).unwrap_or_default();
    let mine: HashMap<Locality, usize> = state.tenants.iter().enumerate().map(|(i, l)| (*l, i)).collect();
    // One queue and one appending task per tenant: its batches go in order.
    let mut queues = Vec::new();
    let mut tasks = Vec::new();
    for l in &state.tenants {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<EventDraft>>(2);
        let log = state.host.log(*l);
        let state = state.clone();
        tasks.push(tokio::spawn(async move {
            let Some(log) = log else { return };
            while let Some(batch) = rx.recv().await {
                let n = batch.len() as u64;
                match log.append_batch_async(batch).await {
                    Ok(_) => {
                        state.appended.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(e) => refuse(&state, n, e.to_string()),
                }
            }
        }));
        queues.push(tx);
    }
    let mut buffers: Vec<Vec<EventDraft>> = vec![Vec::new(); state.tenants.len()];
    let chunk = 20_000u64;
    let mut next = 0u64;
    while next < spec.persons {
        let end = (next + chunk).min(spec.persons);
        // Drawing is pure: a blocking thread keeps the runtime free for replication.
        let (c, secret_c, mine_c) = (country.clone(), secret.clone(), mine.clone());
        let (seed, now, tiers) = (spec.seed, spec.now, spec.tiers);
        let drawn = tokio::task::spawn_blocking(move || {
            let mut out: Vec<(usize, EventDraft)> = Vec::new();
            for i in next..end {
                for (author, draft) in country::person(&c, seed, i, now, &secret_c, tiers).events {
                    if let Some(t) = mine_c.get(&author) {
                        out.push((*t, draft));
                    }
                }
            }
            out
        })
        .await;
        let Ok(drawn) = drawn else { return };
        for (t, draft) in drawn {
            buffers[t].push(draft);
            if buffers[t].len() >= spec.batch {
                let batch = std::mem::take(&mut buffers[t]);
                if queues[t].send(batch).await.is_err() {
                    return;
                }
            }
        }
        next = end;
    }
    for (t, batch) in buffers.into_iter().enumerate() {
        if !batch.is_empty() && queues[t].send(batch).await.is_err() {
            return;
        }
    }
    drop(queues);
    for t in tasks {
        let _ = t.await;
    }
    state.set_phase("loaded");
}

fn refuse(state: &State, n: u64, why: String) {
    state.refused.fetch_add(n, Ordering::Relaxed);
    if let Ok(mut f) = state.first_refusal.lock() {
        f.get_or_insert(why);
    }
}

/// Writes every channel's head as its author and as its recipient sees it,
/// and each tenant's events read back from its store with its own head and
/// the sum of its inbound heads: `out A R H`, `in A R H`, `len L STORED OWN IN`.
fn channels(state: &State, file: &std::path::Path) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(file)?);
    for l in &state.tenants {
        let Some(log) = state.host.log(*l) else { continue };
        for (r, h) in log.outbound_heads(u64::MAX)? {
            writeln!(out, "out {l} {r} {h}")?;
        }
        let mut inbound = 0u64;
        for a in &state.everyone {
            if a != l {
                let h = log.channel_head(*a, *l)?;
                if h > 0 {
                    writeln!(out, "in {a} {l} {h}")?;
                    inbound += h;
                }
            }
        }
        let own = log.head().map(|(s, _)| s).unwrap_or(0);
        // What is on disk, read back: one record per stored event.
        let mut stored = 0u64;
        log.for_each_raw(None, usize::MAX, |_, _, _| stored += 1)?;
        writeln!(out, "len {l} {stored} {own} {inbound}")?;
    }
    out.flush()?;
    Ok(())
}

/// Writes every pair digest each tenant computes (`holder a b digest`), once
/// its projections hold every event of its log; returns how many.
async fn digests(state: Arc<State>, as_of: DateTime<Utc>, file: &std::path::Path) -> Result<usize> {
    let start = Instant::now();
    let mut all: BTreeMap<(Locality, Locality, Locality), [u8; 32]> = BTreeMap::new();
    for l in state.tenants.clone() {
        let (Some(log), Some(views)) = (state.host.log(l), state.host.views(l)) else { continue };
        loop {
            let caught_up = views.read().map(|v| v.len() == log.len()).unwrap_or(false);
            if caught_up {
                break;
            }
            anyhow::ensure!(start.elapsed() < Duration::from_secs(600), "projections of {l} did not catch up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let pairs =
            tokio::task::spawn_blocking(move || views.read().map(|v| v.pair_digests(l, as_of)).unwrap_or_default())
                .await?;
        for ((a, b), d) in pairs {
            all.insert((l, a, b), d);
        }
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(file)?);
    for ((holder, a, b), d) in &all {
        writeln!(out, "{holder} {a} {b} {}", hex::encode(d))?;
    }
    out.flush()?;
    Ok(all.len())
}

/// The lag percentiles of a merged histogram.
pub fn lag_ms(counts: &[u64], q: f64) -> f64 {
    LagHistogram::quantile_of(counts, q)
}
