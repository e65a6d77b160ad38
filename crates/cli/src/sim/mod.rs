//! `yipan sim national` (docs/scale.md "The national simulation"): every
//! county-level locality of the 31 provinces hosted in a few `yipan sim
//! worker` processes (one per province group, each a [`yipan_node::host::Host`]),
//! over a supercluster of secured JetStream clusters on loopback (R3 streams
//! placed in the cluster serving the province, one R1 inbox consumer per
//! province and worker — or per tenant with `--tenant-consumers`), with a
//! population drawn from the 2020 census. One server of each cluster is
//! killed while the load runs and started again. The run ends when every
//! channel's recipient holds what its author sent; then it checks each
//! channel (nothing lost, nothing stored twice), each pair's digest at both
//! sides, and audits every stream as the auditor, and writes a summary and
//! plots.

pub mod country;
pub mod plot;
pub mod worker;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use yipan_access::nats::Principal;
use yipan_node::provision::Deployment;
use yipan_testkit::NatsSupercluster;

use country::Country;
use worker::{Report, Spec};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Options {
    /// Persons drawn (about five events each).
    pub persons: u64,
    /// Localities per province; 0: every county-level unit.
    pub per_province: usize,
    /// Hosting processes (province groups).
    pub workers: usize,
    /// JetStream clusters joined by gateways.
    pub clusters: usize,
    /// Servers per cluster.
    pub servers: usize,
    /// Kill one server of each cluster mid-run and start it again.
    pub kill: bool,
    /// One inbox consumer per province and hosting process (else one per tenant).
    pub shared_inbox: bool,
    /// Share of arrivals carrying the identity tier (sealed, with a data key).
    pub tiers: f64,
    /// The population's seed.
    pub seed: u64,
    /// Events per append batch of one locality.
    pub batch: usize,
    /// Page cache of each hosting process's shared store, MiB.
    pub cache_mib: u64,
    /// Publishes in flight per hosting process (`publish_budget`; 0: none).
    pub publish_budget: usize,
    /// Where the summary, the plots and the run's files go.
    pub out: PathBuf,
}

/// One second of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the load started.
    pub t: f64,
    /// Own events appended so far (all workers).
    pub appended: u64,
    /// Events stored by their recipients so far.
    pub received: u64,
    /// Events sent, counted per recipient.
    pub sent: u64,
    /// Appended per second over the last interval.
    pub appended_per_s: f64,
    /// Received per second over the last interval.
    pub received_per_s: f64,
    /// Replication lag of the events received in the last interval, ms.
    pub lag_p50_ms: f64,
    /// The same, 99th percentile.
    pub lag_p99_ms: f64,
    /// Resident memory of every worker together, bytes.
    pub workers_rss: u64,
    /// Resident memory of each nats-server (0 while it is down), bytes.
    pub servers_rss: Vec<u64>,
}

/// What the run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Localities hosted.
    pub localities: usize,
    /// Provinces.
    pub provinces: usize,
    /// Hosting processes.
    pub workers: usize,
    /// Clusters × servers.
    pub clusters: usize,
    /// Servers per cluster.
    pub servers_per_cluster: usize,
    /// Persons drawn.
    pub persons: u64,
    /// Events appended.
    pub events: u64,
    /// Seconds to set up: certificates, servers, streams, trust published, workers started.
    pub setup_s: f64,
    /// Time until every tenant knew every sentinel's key, after the workers started.
    pub trust_s: f64,
    /// Seconds from `go` to the last append.
    pub load_s: f64,
    /// Seconds from the last append until every recipient held everything.
    pub convergence_s: Option<f64>,
    /// Events replicated per second over the whole run (received ÷ (load + convergence)).
    pub replicated_per_s: f64,
    /// Appended per second during the load.
    pub appended_per_s: f64,
    /// Raw pipelined JetStream publishes per second to an R3 stream of the same supercluster.
    pub raw_publish_per_s: f64,
    /// `replicated_per_s` ÷ `raw_publish_per_s`.
    pub ratio: f64,
    /// Replication lag over the whole run.
    pub lag_p50_ms: f64,
    /// The same, 99th percentile.
    pub lag_p99_ms: f64,
    /// Channels compared (author → recipient).
    pub channels: usize,
    /// Events an author sent that its recipient does not hold.
    pub lost: u64,
    /// Events a recipient holds more than once (its log is longer than own + held channel heads).
    pub applied_twice: u64,
    /// Pairs whose digest was compared at both sides.
    pub pairs: usize,
    /// Pairs whose digests differ.
    pub pairs_differing: usize,
    /// Events the auditor read from the streams.
    pub audited_events: u64,
    /// Faults the audit found.
    pub audit_faults: usize,
    /// Seconds the audit took.
    pub audit_s: f64,
    /// Appends refused.
    pub refused: u64,
    /// The first refusal, if any.
    pub first_refusal: Option<String>,
    /// Peak resident memory of each worker, bytes.
    pub workers_peak_rss: Vec<u64>,
    /// Largest resident memory seen of each nats-server, bytes.
    pub servers_peak_rss: Vec<u64>,
    /// OS threads of the workers at the end of the load.
    pub workers_threads: u64,
    /// Each worker's publish budget at the end (limit, most in flight, times halved).
    pub workers_budget: Vec<Option<yipan_sync::budget::BudgetStatus>>,
    /// Times tenants lost their province inbox's coverage, all workers.
    pub coverage_lost: u64,
    /// Streams, consumers, messages, bytes and distinct subjects in JetStream at the end.
    pub jetstream: JetStreamFigures,
    /// Servers killed and started again, with when (seconds since `go`).
    pub kills: Vec<(String, f64, f64)>,
}

/// What JetStream held at the end.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JetStreamFigures {
    /// Streams.
    pub streams: usize,
    /// Consumers.
    pub consumers: usize,
    /// Messages.
    pub messages: u64,
    /// Bytes (one replica).
    pub bytes: u64,
    /// Distinct subjects.
    pub subjects: u64,
}

const SECRET: &[u8] = b"yipan national simulation secret";
/// How long the run waits for convergence with nothing more received before it checks
/// what is missing.
const STALL: Duration = Duration::from_secs(600);

fn say(msg: impl AsRef<str>) {
    eprintln!("[sim] {}", msg.as_ref());
}

/// Assigns provinces to `workers` groups with about the same number of
/// localities (largest first, each to the lightest group).
pub fn groups(country: &Country, workers: usize) -> Vec<Vec<u8>> {
    let mut order: Vec<&country::Province> = country.provinces.iter().collect();
    order.sort_by_key(|p| std::cmp::Reverse(p.counties.len()));
    let mut out: Vec<(usize, Vec<u8>)> = vec![(0, Vec::new()); workers.max(1)];
    for p in order {
        if let Some(g) = out.iter_mut().min_by_key(|g| g.0) {
            g.0 += p.counties.len();
            g.1.push(p.code);
        }
    }
    out.into_iter()
        .map(|(_, mut g)| {
            g.sort_unstable();
            g
        })
        .collect()
}

fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0u64)
        * 1024
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    last: Report,
}

impl Worker {
    fn send(&mut self, line: &str) -> Result<()> {
        writeln!(self.stdin, "{line}")?;
        self.stdin.flush()?;
        Ok(())
    }
}

/// Runs the simulation.
pub async fn run(opts: Options) -> Result<Summary> {
    if opts.servers < 2 {
        bail!(
            "--servers {}: a JetStream cluster here has at least 2 servers (3 for R3 streams and the server kill)",
            opts.servers
        );
    }
    let setup = Instant::now();
    let work = opts.out.join("run");
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("clearing {}", work.display()))?;
    }
    std::fs::create_dir_all(&work)?;
    let country = Country::load(opts.per_province).map_err(anyhow::Error::msg)?;
    let localities = country.localities();
    let groups = groups(&country, opts.workers);
    let clusters: Vec<String> = (0..opts.clusters.max(1)).map(|c| format!("sim-{c}")).collect();
    let cluster_of_worker = |w: usize| w % clusters.len();
    let mut placement = BTreeMap::new();
    for (w, g) in groups.iter().enumerate() {
        for p in g {
            placement.insert(format!("{p:02}"), clusters[cluster_of_worker(w)].clone());
        }
    }
    say(format!(
        "{} localities in {} provinces, {} workers, {} clusters × {} servers; {} persons",
        localities.len(),
        country.provinces.len(),
        groups.len(),
        clusters.len(),
        opts.servers,
        opts.persons
    ));
    let expected = {
        let (c, seed, persons, tiers) = (country.clone(), opts.seed, opts.persons, opts.tiers);
        tokio::task::spawn_blocking(move || {
            let now = chrono::Utc::now();
            (0..persons).map(|i| country::person(&c, seed, i, now, SECRET, tiers).events.len() as u64).sum::<u64>()
        })
    };

    // Secrets, authorities, NATS users; every locality certified by its province.
    let deployment = Deployment::create(&work.join("secrets"), &localities, &[])?;
    let mut host_dirs = Vec::new();
    for (w, g) in groups.iter().enumerate() {
        let dir = work.join(format!("worker-{w}"));
        yipan_node::host::init(&dir)?;
        for l in localities.iter().filter(|l| g.contains(&l.province())) {
            yipan_node::host::add_tenant(&dir, *l, Some(SECRET))?;
            let name = yipan_core::division::name(*l).unwrap_or("");
            deployment.certify(*l, name, &yipan_node::host::tenants_dir(&dir).join(l.to_string()))?;
        }
        host_dirs.push(dir);
    }
    say(format!("{} localities certified ({:.1} s)", localities.len(), setup.elapsed().as_secs_f64()));

    let secure = deployment.nats_server();
    let names: Vec<String> = clusters.clone();
    let servers = opts.servers;
    let mut supercluster = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        NatsSupercluster::start_secure(secure, &refs, servers)
    })
    .await?
    .map_err(anyhow::Error::msg)?;
    let urls: Vec<String> = clusters.iter().map(|c| supercluster.cluster(c).urls()).collect();
    let provinces: Vec<u8> = country.provinces.iter().map(|p| p.code).collect();
    let replicas = opts.servers.min(3);
    let started = Instant::now();
    loop {
        match deployment.provision_mapped(&urls[0], &provinces, replicas, placement.clone()).await {
            Ok(()) => break,
            Err(e) if started.elapsed() < Duration::from_secs(180) => {
                tracing::debug!(error = %e, "streams not created yet");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => bail!("creating the streams: {e}"),
        }
    }
    let published = deployment.publish_trust(&urls[0]).await?;
    say(format!(
        "supercluster up, {} provinces' streams placed (R{replicas}), {published} trust records published",
        provinces.len()
    ));

    // The raw baseline: pipelined publishes to an R3 stream of cluster 0.
    let probe = localities
        .iter()
        .copied()
        .find(|l| placement.get(&format!("{:02}", l.province())) == Some(&clusters[0]))
        .context("no locality in cluster 0")?;
    let raw_cfg = deployment.sync_config(Principal::Locality(probe), &urls[0])?;
    let raw_publish_per_s = crate::bench_replicate::raw_publish(&raw_cfg, probe, 50_000, 600).await?;
    say(format!("raw pipelined JetStream publish (R{replicas}, 600 B): {raw_publish_per_s:.0}/s"));

    // One host per province group.
    let sentinels: Vec<String> = country
        .provinces
        .iter()
        .flat_map(|p| [p.counties.first(), p.counties.last()])
        .flatten()
        .map(|l| l.to_string())
        .collect();
    let now = chrono::Utc::now();
    let (tx, rx) = mpsc::channel::<(usize, String)>();
    let mut workers = Vec::new();
    for (w, g) in groups.iter().enumerate() {
        let mut cfg = deployment.host_config(host_dirs[w].clone(), &urls[cluster_of_worker(w)])?;
        cfg.cache_mib = opts.cache_mib;
        cfg.publish_budget = opts.publish_budget;
        cfg.sync.stream_clusters = placement.clone();
        // R1 consumers: one per tenant, an R3 consumer each would be a Raft group (thousands
        // of them cost about a core per cluster idle). One per province, R3 (31 Raft groups)
        // was measured no faster through the server kills (docs/scale.md), so R1 here too:
        // a killed server pauses the provinces whose consumer it held until it is back.
        cfg.sync.consumer_replicas = 1;
        // Consumer state in the servers' memory, the tenants' cursors the record:
        // on file each active consumer rewrites a state file ten times a second.
        cfg.sync.consumer_state = yipan_sync::ConsumerState::Memory;
        // Each worker hosts whole provinces: one consumer per province reads for all of its tenants.
        if opts.shared_inbox {
            cfg.inbox_provinces = g.iter().map(|p| format!("{p:02}")).collect();
        }
        cfg.sync.head_interval_ms = 5_000;
        cfg.sync.repair_grace_ms = 5_000;
        // Per tenant at most 4 × 64 messages pulled ahead and 128 own events read per
        // outbox round: thousands of tenants multiply both (docs/scale.md).
        cfg.sync.fetch_batch = 64;
        cfg.sync.publish_chunk = 128;
        cfg.sync.trust_poll_ms = 1_000;
        cfg.views_interval_s = 3_600;
        let cfg_path = work.join(format!("host-{w}.toml"));
        std::fs::write(&cfg_path, toml::to_string(&cfg)?)?;
        let spec = Spec {
            index: w,
            host_config: cfg_path,
            tenants: localities.iter().filter(|l| g.contains(&l.province())).map(|l| l.to_string()).collect(),
            sentinels: sentinels.clone(),
            seed: opts.seed,
            persons: opts.persons,
            tiers: opts.tiers,
            per_province: opts.per_province,
            now,
            secret_hex: hex::encode(SECRET),
            batch: opts.batch,
        };
        let spec_path = work.join(format!("worker-{w}.json"));
        std::fs::write(&spec_path, serde_json::to_vec_pretty(&spec)?)?;
        let log = std::fs::File::create(work.join(format!("worker-{w}.log")))?;
        // `YIPAN_SIM_WRAPPER=heaptrack` (or `perf record -g --`) runs each worker under a profiler.
        let exe = std::env::current_exe()?;
        let wrapper: Vec<String> = std::env::var("YIPAN_SIM_WRAPPER")
            .map(|w| w.split_whitespace().map(String::from).collect())
            .unwrap_or_default();
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let mut child = command
            .args(["sim", "worker", "--spec"])
            .arg(&spec_path)
            .env("YIPAN_LOG", std::env::var("YIPAN_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("starting a worker")?;
        let stdin = child.stdin.take().context("worker stdin")?;
        let stdout = child.stdout.take().context("worker stdout")?;
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send((w, line)).is_err() {
                    return;
                }
            }
        });
        workers.push(Worker { child, stdin, last: Report::default() });
    }
    let setup_s = setup.elapsed().as_secs_f64();
    let expected = expected.await?;
    say(format!("{} workers started; {expected} events to append", workers.len()));

    // Messages from the workers: progress reports, and answers to commands.
    let mut answers: Vec<(usize, serde_json::Value)> = Vec::new();
    let mut pump = |workers: &mut Vec<Worker>, answers: &mut Vec<(usize, serde_json::Value)>, wait: Duration| {
        let deadline = Instant::now() + wait;
        while let Ok((w, line)) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            match serde_json::from_str::<Report>(&line) {
                Ok(r) if !r.phase.is_empty() => workers[w].last = r,
                _ => {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                        answers.push((w, v));
                    }
                }
            }
            if Instant::now() >= deadline {
                break;
            }
        }
    };
    let total = |workers: &[Worker], f: fn(&Report) -> u64| workers.iter().map(|w| f(&w.last)).sum::<u64>();
    let alive = |workers: &mut Vec<Worker>| -> Result<()> {
        for (i, w) in workers.iter_mut().enumerate() {
            if let Some(status) = w.child.try_wait()? {
                bail!("worker {i} exited ({status}); see {}", work.join(format!("worker-{i}.log")).display());
            }
        }
        Ok(())
    };

    // Every tenant must know the keys before the load: then no event waits for one.
    let trust_start = Instant::now();
    let mut told = Instant::now();
    loop {
        pump(&mut workers, &mut answers, Duration::from_secs(1));
        alive(&mut workers)?;
        let certified = total(&workers, |r| r.certified as u64);
        if certified == localities.len() as u64 && workers.iter().all(|w| w.last.connected == w.last.tenants) {
            break;
        }
        if told.elapsed() >= Duration::from_secs(10) {
            told = Instant::now();
            say(format!("waiting for trust: {certified}/{} tenants know every key", localities.len()));
        }
        if trust_start.elapsed() > Duration::from_secs(1800) {
            bail!("trust did not reach every tenant within 30 minutes ({certified}/{})", localities.len());
        }
    }
    let trust_s = trust_start.elapsed().as_secs_f64();
    say(format!("every tenant knows every key ({trust_s:.1} s); load starts"));
    for w in &mut workers {
        w.send("go")?;
    }
    let go = Instant::now();
    let pids = |s: &mut NatsSupercluster| -> Vec<u32> {
        s.clusters.iter().flat_map(|(_, c)| c.servers.iter().map(|s| s.pid().unwrap_or(0))).collect()
    };
    let mut samples: Vec<Sample> = Vec::new();
    let (mut prev_lag, mut prev_app, mut prev_rec, mut prev_t) = (Vec::<u64>::new(), 0u64, 0u64, 0.0f64);
    let mut kills: Vec<(String, f64, f64)> = Vec::new();
    let mut killed_at: Option<Instant> = None;
    let mut loaded_at: Option<Instant> = None;
    let mut converged_at: Option<Instant> = None;
    let mut stable = 0;
    // The last time anything more was received: the run waits for convergence as long as
    // events keep arriving (a 1 M-person run needs more than an hour on two cores).
    let mut progress = (0u64, Instant::now());
    let mut servers_peak = vec![0u64; opts.clusters * opts.servers];
    let mut last_print = Instant::now();
    let mut workers_threads = 0;
    loop {
        pump(&mut workers, &mut answers, Duration::from_secs(1));
        alive(&mut workers)?;
        let t = go.elapsed().as_secs_f64();
        let appended = total(&workers, |r| r.appended);
        let received = total(&workers, |r| r.received);
        let sent = total(&workers, |r| r.sent);
        let pending = total(&workers, |r| r.outbox_pending);
        let mut lag = vec![0u64; workers.iter().map(|w| w.last.lag.len()).max().unwrap_or(0)];
        for w in &workers {
            for (a, c) in lag.iter_mut().zip(&w.last.lag) {
                *a += c;
            }
        }
        let delta: Vec<u64> =
            lag.iter().enumerate().map(|(i, c)| c.saturating_sub(prev_lag.get(i).copied().unwrap_or(0))).collect();
        let servers_rss: Vec<u64> =
            pids(&mut supercluster).into_iter().map(|p| if p == 0 { 0 } else { rss_of(p) }).collect();
        for (peak, r) in servers_peak.iter_mut().zip(&servers_rss) {
            *peak = (*peak).max(*r);
        }
        let dt = (t - prev_t).max(1e-3);
        samples.push(Sample {
            t,
            appended,
            received,
            sent,
            appended_per_s: appended.saturating_sub(prev_app) as f64 / dt,
            received_per_s: received.saturating_sub(prev_rec) as f64 / dt,
            lag_p50_ms: worker::lag_ms(&delta, 0.5),
            lag_p99_ms: worker::lag_ms(&delta, 0.99),
            workers_rss: total(&workers, |r| r.rss),
            servers_rss,
        });
        (prev_lag, prev_app, prev_rec, prev_t) = (lag, appended, received, t);
        let refused = total(&workers, |r| r.refused);
        if refused > 0 {
            let why = workers.iter().find_map(|w| w.last.first_refusal.clone()).unwrap_or_default();
            say(format!("{refused} appends refused; the first: {why}"));
        }
        // One server of each cluster dies at 40% of the load and comes back 15 s later.
        if opts.kill && opts.servers >= 3 && killed_at.is_none() && appended * 10 >= expected * 4 {
            for (name, c) in supercluster.clusters.iter_mut() {
                c.servers[1].stop();
                kills.push((format!("{name}-1"), t, 0.0));
            }
            say(format!("killed one server in each cluster at {t:.0} s ({appended} appended)"));
            killed_at = Some(Instant::now());
        }
        if let Some(k) = killed_at {
            if k.elapsed() >= Duration::from_secs(15) && kills.iter().any(|(_, _, back)| *back == 0.0) {
                for (_, c) in supercluster.clusters.iter_mut() {
                    c.servers[1].restart().map_err(anyhow::Error::msg)?;
                }
                for k in &mut kills {
                    k.2 = t;
                }
                say(format!("started them again at {t:.0} s"));
            }
        }
        let loaded = workers.iter().all(|w| w.last.phase == "loaded");
        if loaded && loaded_at.is_none() {
            loaded_at = Some(Instant::now());
            workers_threads = total(&workers, |r| r.threads);
            say(format!("load done at {t:.0} s: {appended} events appended"));
        }
        let restarted = kills.iter().all(|(_, _, back)| *back > 0.0);
        if loaded && restarted && pending == 0 && received == sent {
            stable += 1;
            if stable >= 3 && converged_at.is_none() {
                converged_at = Some(Instant::now() - Duration::from_secs(2));
                say(format!("converged: every recipient holds all {sent} events sent to it"));
                break;
            }
        } else {
            stable = 0;
        }
        if last_print.elapsed() >= Duration::from_secs(5) {
            last_print = Instant::now();
            let s = samples.last().cloned();
            if let Some(s) = s {
                say(format!(
                    "{t:>5.0} s  appended {appended:>9} ({:>6.0}/s)  unpublished {pending:>9}  received {received:>9} ({:>6.0}/s) of {sent}  lag p99 {:>7.0} ms  workers {} MB",
                    s.appended_per_s,
                    s.received_per_s,
                    s.lag_p99_ms,
                    s.workers_rss >> 20
                ));
            }
        }
        if received > progress.0 {
            progress = (received, Instant::now());
        }
        if loaded_at.is_some() && progress.1.elapsed() > STALL {
            say(format!(
                "not converged: nothing received for {} minutes; checking what is missing",
                STALL.as_secs() / 60
            ));
            break;
        }
    }
    let end = go.elapsed().as_secs_f64();
    let load_s = loaded_at.map(|l| l.duration_since(go).as_secs_f64()).unwrap_or(end);
    let convergence_s = match (converged_at, loaded_at) {
        (Some(c), Some(l)) => Some(c.saturating_duration_since(l).as_secs_f64()),
        _ => None,
    };
    let appended = total(&workers, |r| r.appended);
    let received = total(&workers, |r| r.received);
    let refused = total(&workers, |r| r.refused);
    let first_refusal = workers.iter().find_map(|w| w.last.first_refusal.clone());
    let whole_lag = prev_lag.clone();

    // Each channel at both ends.
    for (w, worker) in workers.iter_mut().enumerate() {
        worker.send(&format!("channels {}", work.join(format!("channels-{w}.txt")).display()))?;
    }
    wait_answers(&mut pump, &mut workers, &mut answers, "channels", Duration::from_secs(600))?;
    let (channels, lost, applied_twice) = compare_channels(&work, workers.len())?;
    say(format!("{channels} channels: {lost} events lost, {applied_twice} stored twice"));

    // Each pair's digest at both sides.
    let as_of = chrono::Utc::now().timestamp();
    for (w, worker) in workers.iter_mut().enumerate() {
        worker.send(&format!("digests {as_of} {}", work.join(format!("digests-{w}.txt")).display()))?;
    }
    wait_answers(&mut pump, &mut workers, &mut answers, "digests", Duration::from_secs(1800))?;
    let (pairs, pairs_differing) = compare_digests(&work, workers.len())?;
    say(format!("{pairs} pairs compared at both sides: {pairs_differing} differ"));

    // The auditor, from the streams alone.
    let audit_start = Instant::now();
    let (audited_events, audit_faults) = audit(&deployment, &urls[0]).await?;
    let audit_s = audit_start.elapsed().as_secs_f64();
    say(format!("audit of the streams: {audited_events} events, {audit_faults} faults ({audit_s:.0} s)"));
    let jetstream = jetstream_figures(&deployment, &urls[0]).await.unwrap_or_default();

    for w in &mut workers {
        let _ = w.send("stop");
    }
    wait_answers(&mut pump, &mut workers, &mut answers, "stopped", Duration::from_secs(120))?;
    let workers_peak_rss: Vec<u64> = (0..workers.len())
        .map(|w| {
            answers
                .iter()
                .find(|(i, v)| *i == w && v.get("stopped").is_some())
                .and_then(|(_, v)| v["peak_rss"].as_u64())
                .unwrap_or(0)
        })
        .collect();
    for w in &mut workers {
        let _ = w.child.wait();
    }
    drop(supercluster);

    let workers_budget: Vec<_> = workers.iter().map(|w| w.last.budget).collect();
    let coverage_lost = total(&workers, |r| r.coverage_lost);
    let replicated_per_s = received as f64 / (load_s + convergence_s.unwrap_or(end - load_s)).max(1e-3);
    let summary = Summary {
        localities: localities.len(),
        provinces: country.provinces.len(),
        workers: workers.len(),
        clusters: clusters.len(),
        servers_per_cluster: opts.servers,
        persons: opts.persons,
        events: appended,
        setup_s,
        trust_s,
        load_s,
        convergence_s,
        replicated_per_s,
        appended_per_s: appended as f64 / load_s.max(1e-3),
        raw_publish_per_s,
        ratio: replicated_per_s / raw_publish_per_s.max(1e-3),
        lag_p50_ms: worker::lag_ms(&whole_lag, 0.5),
        lag_p99_ms: worker::lag_ms(&whole_lag, 0.99),
        channels,
        lost,
        applied_twice,
        pairs,
        pairs_differing,
        audited_events,
        audit_faults,
        audit_s,
        refused,
        first_refusal,
        workers_peak_rss,
        servers_peak_rss: servers_peak,
        workers_threads,
        workers_budget,
        coverage_lost,
        jetstream,
        kills,
    };
    write_outputs(&opts.out, &summary, &samples)?;
    Ok(summary)
}

fn wait_answers(
    pump: &mut impl FnMut(&mut Vec<Worker>, &mut Vec<(usize, serde_json::Value)>, Duration),
    workers: &mut Vec<Worker>,
    answers: &mut Vec<(usize, serde_json::Value)>,
    key: &str,
    within: Duration,
) -> Result<()> {
    let start = Instant::now();
    loop {
        let have = (0..workers.len()).filter(|w| answers.iter().any(|(i, v)| i == w && v.get(key).is_some())).count();
        if have == workers.len() {
            return Ok(());
        }
        if start.elapsed() > within {
            bail!("{} of {} workers answered `{key}` within {} s", have, workers.len(), within.as_secs());
        }
        pump(workers, answers, Duration::from_millis(500));
    }
}

/// Compares every channel as its author and its recipient see it; returns
/// (channels, events lost, events stored twice).
fn compare_channels(work: &Path, workers: usize) -> Result<(usize, u64, u64)> {
    let mut sent: HashMap<(String, String), u64> = HashMap::new();
    let mut held: HashMap<(String, String), u64> = HashMap::new();
    let mut twice = 0u64;
    let mut missing = 0u64;
    for w in 0..workers {
        let text = std::fs::read_to_string(work.join(format!("channels-{w}.txt")))?;
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            match f.as_slice() {
                ["out", a, r, h] => {
                    sent.insert((a.to_string(), r.to_string()), h.parse()?);
                }
                ["in", a, r, h] => {
                    held.insert((a.to_string(), r.to_string()), h.parse()?);
                }
                ["len", _, stored, own, inbound] => {
                    let (stored, own, inbound): (u64, u64, u64) = (stored.parse()?, own.parse()?, inbound.parse()?);
                    // More on disk than the heads account for: stored twice; fewer: lost.
                    twice += stored.saturating_sub(own + inbound);
                    missing += (own + inbound).saturating_sub(stored);
                }
                _ => bail!("channels-{w}.txt: unexpected line `{line}`"),
            }
        }
    }
    let lost = sent.iter().map(|(k, h)| h.saturating_sub(held.get(k).copied().unwrap_or(0))).sum::<u64>() + missing;
    Ok((sent.len(), lost, twice))
}

/// Compares each pair's digest as both of its localities compute it.
fn compare_digests(work: &Path, workers: usize) -> Result<(usize, usize)> {
    let mut by_pair: HashMap<(String, String), Vec<(String, String)>> = HashMap::new();
    for w in 0..workers {
        let text = std::fs::read_to_string(work.join(format!("digests-{w}.txt")))?;
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [holder, a, b, d] = f.as_slice() else { bail!("digests-{w}.txt: unexpected line `{line}`") };
            by_pair.entry((a.to_string(), b.to_string())).or_default().push((holder.to_string(), d.to_string()));
        }
    }
    let differing = by_pair.values().filter(|sides| sides.len() != 2 || sides[0].1 != sides[1].1).count();
    Ok((by_pair.len(), differing))
}

/// Audits every event stream as the auditor; returns (events, faults).
async fn audit(deployment: &Deployment, url: &str) -> Result<(u64, usize)> {
    let cfg = deployment.sync_config(Principal::Auditor, url)?;
    let client = yipan_sync::connect_options(&cfg, Principal::Auditor)?
        .connect(yipan_sync::servers(url).as_slice())
        .await
        .context("connecting as the auditor")?;
    let records = yipan_audit::stream::read_trust(client.clone()).await.map_err(anyhow::Error::msg)?;
    let anchor = deployment.authority.anchor()?;
    let (trust, findings) = yipan_audit::trust_from(Some(anchor), &records, &HashMap::new());
    let mut auditor = yipan_audit::Auditor::without_digests(trust);
    let mut last = Instant::now();
    yipan_audit::stream::read_all(client, &mut auditor, |n| {
        if last.elapsed() > Duration::from_secs(10) {
            last = Instant::now();
            say(format!("audit: {n} messages read"));
        }
    })
    .await
    .map_err(anyhow::Error::msg)?;
    let (report, _) = auditor.finish("the supercluster's streams", chrono::Utc::now());
    for f in report.faults.iter().take(5) {
        say(format!("audit fault: {}#{}: {}", f.author, f.seq, f.problem));
    }
    Ok((report.events, report.faults.len() + findings.len()))
}

async fn jetstream_figures(deployment: &Deployment, url: &str) -> Result<JetStreamFigures> {
    use futures::StreamExt;
    let cfg = deployment.sync_config(Principal::Admin, url)?;
    let client =
        yipan_sync::connect_options(&cfg, Principal::Admin)?.connect(yipan_sync::servers(url).as_slice()).await?;
    let js = async_nats::jetstream::new(client);
    let mut names = js.stream_names();
    let mut out = JetStreamFigures::default();
    let mut all = Vec::new();
    while let Some(n) = names.next().await {
        all.push(n?);
    }
    for name in all {
        let mut s = js.get_stream(&name).await?;
        let info = s.info().await?;
        out.streams += 1;
        out.consumers += info.state.consumer_count;
        out.messages += info.state.messages;
        out.bytes += info.state.bytes;
        out.subjects += info.state.subjects_count;
    }
    Ok(out)
}

fn write_outputs(out: &Path, summary: &Summary, samples: &[Sample]) -> Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("summary.json"), serde_json::to_vec_pretty(summary)?)?;
    let mut csv = String::from(
        "t_s,appended,received,sent,appended_per_s,received_per_s,lag_p50_ms,lag_p99_ms,workers_rss_mb,servers_rss_mb\n",
    );
    for s in samples {
        csv.push_str(&format!(
            "{:.1},{},{},{},{:.0},{:.0},{:.1},{:.1},{},{}\n",
            s.t,
            s.appended,
            s.received,
            s.sent,
            s.appended_per_s,
            s.received_per_s,
            s.lag_p50_ms,
            s.lag_p99_ms,
            s.workers_rss >> 20,
            s.servers_rss.iter().map(|r| (r >> 20).to_string()).collect::<Vec<_>>().join(";")
        ));
    }
    std::fs::write(out.join("series.csv"), csv)?;
    let marks: Vec<(f64, String)> = summary
        .kills
        .iter()
        .flat_map(|(name, down, up)| [(*down, format!("{name} killed")), (*up, format!("{name} back"))])
        .collect();
    let marks: Vec<(f64, &str)> = marks.iter().take(2).map(|(t, l)| (*t, l.as_str())).collect();
    let smooth = |f: fn(&Sample) -> f64| -> Vec<(f64, f64)> {
        samples
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let w = &samples[i.saturating_sub(4)..=i];
                (s.t, w.iter().map(f).sum::<f64>() / w.len() as f64)
            })
            .collect()
    };
    plot::chart(
        &out.join("events.svg"),
        "Events per second (5 s mean)",
        "events/s",
        &[
            plot::Line { label: "appended", points: smooth(|s| s.appended_per_s) },
            plot::Line { label: "received by their recipients", points: smooth(|s| s.received_per_s) },
        ],
        &marks,
    )?;
    plot::chart(
        &out.join("lag.svg"),
        "Replication lag of the events received each second",
        "ms",
        &[
            plot::Line { label: "p50", points: samples.iter().map(|s| (s.t, s.lag_p50_ms)).collect() },
            plot::Line { label: "p99", points: samples.iter().map(|s| (s.t, s.lag_p99_ms)).collect() },
        ],
        &marks,
    )?;
    let servers = samples.first().map(|s| s.servers_rss.len()).unwrap_or(0);
    let mut memory = vec![plot::Line {
        label: "all workers",
        points: samples.iter().map(|s| (s.t, (s.workers_rss >> 20) as f64)).collect(),
    }];
    let labels: Vec<String> = (0..servers).map(|i| format!("nats-server {i}")).collect();
    for (i, label) in labels.iter().enumerate() {
        memory.push(plot::Line {
            label,
            points: samples.iter().map(|s| (s.t, (s.servers_rss.get(i).copied().unwrap_or(0) >> 20) as f64)).collect(),
        });
    }
    plot::chart(&out.join("memory.svg"), "Resident memory", "MiB", &memory, &marks)?;
    std::fs::write(out.join("summary.md"), markdown(summary))?;
    Ok(())
}

/// The summary as a page.
pub fn markdown(s: &Summary) -> String {
    let mb = |b: u64| format!("{} MiB", b >> 20);
    let mut t = String::new();
    t.push_str("# National simulation\n\n");
    t.push_str(&format!(
        "{} localities in {} provinces hosted by {} processes; {} JetStream clusters × {} servers joined by gateways.\n\n",
        s.localities, s.provinces, s.workers, s.clusters, s.servers_per_cluster
    ));
    t.push_str("| figure | value |\n| --- | --- |\n");
    let rows: Vec<(String, String)> = vec![
        ("persons / events appended".into(), format!("{} / {}", s.persons, s.events)),
        (
            "setup (certificates, servers, streams) / trust to every tenant".into(),
            format!("{:.0} s / {:.0} s", s.setup_s, s.trust_s),
        ),
        ("load (go → last append)".into(), format!("{:.0} s, {:.0} appended/s", s.load_s, s.appended_per_s)),
        (
            "convergence after the last append".into(),
            s.convergence_s.map(|c| format!("{c:.1} s")).unwrap_or_else(|| "not reached".into()),
        ),
        (
            "replicated events/s vs raw pipelined publish (same supercluster, same run)".into(),
            format!("{:.0}/s vs {:.0}/s = {:.3}", s.replicated_per_s, s.raw_publish_per_s, s.ratio),
        ),
        ("replication lag p50 / p99".into(), format!("{:.0} ms / {:.0} ms", s.lag_p50_ms, s.lag_p99_ms)),
        ("channels compared: lost / stored twice".into(), format!("{}: {} / {}", s.channels, s.lost, s.applied_twice)),
        ("pairs compared at both sides: differing".into(), format!("{}: {}", s.pairs, s.pairs_differing)),
        (
            "audit from the streams".into(),
            format!("{} events, {} faults, {:.0} s", s.audited_events, s.audit_faults, s.audit_s),
        ),
        ("appends refused".into(), s.refused.to_string()),
        ("peak RSS per worker".into(), s.workers_peak_rss.iter().map(|b| mb(*b)).collect::<Vec<_>>().join(", ")),
        ("peak RSS per nats-server".into(), s.servers_peak_rss.iter().map(|b| mb(*b)).collect::<Vec<_>>().join(", ")),
        ("worker threads".into(), s.workers_threads.to_string()),
        (
            "publish budget per worker at the end: limit / most in flight / times halved".into(),
            s.workers_budget
                .iter()
                .map(|b| match b {
                    Some(b) => format!("{} / {} / {}", b.limit, b.peak_in_flight, b.shrunk),
                    None => "none".into(),
                })
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("tenants that lost their province inbox's coverage".into(), s.coverage_lost.to_string()),
        (
            "JetStream: streams / consumers / messages / subjects".into(),
            format!(
                "{} / {} / {} / {}",
                s.jetstream.streams, s.jetstream.consumers, s.jetstream.messages, s.jetstream.subjects
            ),
        ),
        (
            "servers killed (down, back at s)".into(),
            s.kills.iter().map(|(n, d, u)| format!("{n} {d:.0}–{u:.0}")).collect::<Vec<_>>().join(", "),
        ),
    ];
    for (k, v) in rows {
        t.push_str(&format!("| {k} | {v} |\n"));
    }
    t.push_str("\nPlots: `events.svg`, `lag.svg`, `memory.svg`; every second in `series.csv`.\n");
    t
}

/// Whether the run proved what it must: everything converged, nothing lost
/// or doubled, every pair equal, a clean audit, nothing refused.
pub fn passed(s: &Summary) -> bool {
    s.channels > 0
        && s.pairs > 0
        && s.convergence_s.is_some()
        && s.lost == 0
        && s.applied_twice == 0
        && s.pairs_differing == 0
        && s.audit_faults == 0
        && s.refused == 0
        && s.audited_events >= s.events
}
