//! `yipan bench replicate`: end-to-end replication (append at the author →
//! verified and durably stored at the recipient) over a real local
//! `nats-server`, beside raw async-nats pipelined JetStream publishing and raw
//! ed25519 verification measured in the same run.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use async_nats::jetstream;
use serde::Serialize;
use yipan_access::nats::Principal;
use yipan_core::Locality;
use yipan_log::bench::sample_draft;
use yipan_node::provision::Deployment;
use yipan_node::Node;
use yipan_testkit::NatsServer;

/// What the benchmark measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub events: u64,
    pub replicated_per_s: f64,
    pub raw_publish_per_s: f64,
    pub raw_verify_1_per_s: f64,
    pub raw_verify_batch64_per_s: f64,
    pub steady_rate: u64,
    pub events_per_person: u64,
    pub lag_p50_ms: f64,
    pub lag_p99_ms: f64,
    pub lag_samples: usize,
    pub mean_inbox_batch: f64,
    pub appended_s: f64,
    pub published_s: f64,
    pub stored_s: f64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "end-to-end replicated (append → verified+stored at recipient): {:>8.0} events/s over {} events, {} per person (mean inbox batch {:.0})", self.replicated_per_s, self.events, self.events_per_person, self.mean_inbox_batch)?;
        writeln!(f, "  timeline: all appended at the author {:.2} s, all published {:.2} s, all stored at the recipient {:.2} s", self.appended_s, self.published_s, self.stored_s)?;
        writeln!(
            f,
            "raw async-nats pipelined JetStream publish:                    {:>8.0} msgs/s   ratio {:.2}",
            self.raw_publish_per_s,
            self.replicated_per_s / self.raw_publish_per_s
        )?;
        writeln!(
            f,
            "raw ed25519 verify, 1 thread, one by one:                      {:>8.0} /s",
            self.raw_verify_1_per_s
        )?;
        writeln!(
            f,
            "raw ed25519 verify, 1 thread, batches of 64:                   {:>8.0} /s",
            self.raw_verify_batch64_per_s
        )?;
        write!(
            f,
            "replication lag at a steady {}/s: p50 {:.2} ms, p99 {:.2} ms over {} events",
            self.steady_rate, self.lag_p50_ms, self.lag_p99_ms, self.lag_samples
        )
    }
}

/// Raw pipelined JetStream publishes over the same secured connection a node
/// uses (TLS, the author's NKey user), to a subject of the author's own
/// downstream stream: the same file-backed stream write, with no Yipan work.
pub(crate) async fn raw_publish(cfg: &yipan_sync::SyncConfig, author: Locality, n: u64, size: usize) -> Result<f64> {
    let client = yipan_sync::connect_options(cfg, Principal::Locality(author))?
        .connect(yipan_sync::servers(&cfg.nats_url).as_slice())
        .await?;
    let js = jetstream::new(client);
    let subject = format!("yipan.v1.down.{:02}.{author}.bench.raw", author.province());
    let payload = bytes::Bytes::from(vec![0x5au8; size]);
    let mut in_flight = VecDeque::new();
    let t = Instant::now();
    for i in 0..n {
        let msg = jetstream::message::PublishMessage::build().payload(payload.clone()).message_id(format!("raw-{i}"));
        in_flight.push_back(js.send_publish(subject.clone(), msg).await?);
        if in_flight.len() >= 2048 {
            if let Some(a) = in_flight.pop_front() {
                a.await?;
            }
        }
    }
    while let Some(a) = in_flight.pop_front() {
        a.await?;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

async fn start_node(deployment: &Deployment, l: Locality, dir: &std::path::Path, url: &str) -> Result<Node> {
    let mut cfg = deployment.node_config(l, dir.to_path_buf(), url)?;
    cfg.sync.head_interval_ms = 1000;
    Ok(Node::start(cfg, tokio::net::TcpListener::bind("127.0.0.1:0").await?).await?)
}

async fn wait_for(recipient: &Node, author: Locality, head: u64, within: Duration) -> Result<()> {
    let start = Instant::now();
    while recipient.log.channel_head(author, recipient.locality)? < head {
        if start.elapsed() > within {
            bail!("recipient stuck at {} of {head}", recipient.log.channel_head(author, recipient.locality)?);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

pub async fn run(events: u64, steady_secs: u64, per_person: u64) -> Result<Report> {
    // Event i is about person i / per_person (sealed tiers: one data key message per new person).
    let draft = move |i: u64| {
        let mut d = sample_draft(i);
        d.person_key = sample_draft(i / per_person).person_key;
        if !i.is_multiple_of(per_person) {
            // A later service carrying the health tier (identity and contact came with the arrival).
            d.body = service_body();
            d.identity = None;
            d.contact = None;
            d.health = Some(yipan_proto::v1::HealthTier { contraception_method: "IUD".into(), ..Default::default() });
        }
        d
    };
    let tmp = tempfile::tempdir()?;
    let (a_code, b_code) = (
        Locality::parse("610112").map_err(anyhow::Error::msg)?,
        Locality::parse("411522").map_err(anyhow::Error::msg)?,
    );
    // Secured as deployed: TLS and NKey users on NATS, TLS on HTTP.
    let deployment = Deployment::create(&tmp.path().join("secrets"), &[a_code, b_code], &[])?;
    let secure = deployment.nats_server();
    let nats = tokio::task::spawn_blocking(move || NatsServer::start_secure(secure))
        .await?
        .map_err(anyhow::Error::msg)
        .context("nats-server")?;
    deployment.provision(&nats.url(), &[a_code.province(), b_code.province()]).await?;
    let record_bytes = yipan_proto::Message::encoded_len(&sample_draft(0)) + 120;
    let raw_cfg = deployment.sync_config(Principal::Locality(a_code), &nats.url())?;
    let raw_publish_per_s = raw_publish(&raw_cfg, a_code, events, record_bytes).await?;
    let (raw_verify_1_per_s, raw_verify_batch64_per_s) =
        tokio::task::spawn_blocking(|| yipan_log::bench::raw_verify(10_000, false)).await??;

    let ka = yipan_node::datadir::init(&tmp.path().join("a"), a_code, None)?;
    let kb = yipan_node::datadir::init(&tmp.path().join("b"), b_code, None)?;
    for (dir, other, key) in [("a", b_code, kb), ("b", a_code, ka)] {
        yipan_node::datadir::open(&tmp.path().join(dir))?.log.roster_add(other, key)?;
    }
    let author = start_node(&deployment, a_code, &tmp.path().join("a"), &nats.url()).await?;
    let recipient = start_node(&deployment, b_code, &tmp.path().join("b"), &nats.url()).await?;

    // Throughput: appends in batches of 1,000 (as an import would), timed until all are at the recipient.
    let t = Instant::now();
    let mut i = 0;
    while i < events {
        let n = 1000.min(events - i);
        author.log.append_batch_async((i..i + n).map(draft).collect()).await?;
        i += n;
    }
    let appended_s = t.elapsed().as_secs_f64();
    let mut published_s = None;
    while recipient.log.channel_head(a_code, b_code)? < events {
        if published_s.is_none() && author.metrics.published.load(std::sync::atomic::Ordering::Relaxed) >= events {
            published_s = Some(t.elapsed().as_secs_f64());
        }
        if t.elapsed() > Duration::from_secs(600) {
            bail!("replication stalled");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let stored_s = t.elapsed().as_secs_f64();
    let replicated_per_s = events as f64 / stored_s;
    let batches = recipient.metrics.inbox_batches.load(std::sync::atomic::Ordering::Relaxed);
    let mean_batch = events as f64 / batches.max(1) as f64;
    // Let the last batch's bookkeeping finish before the lag phase starts counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    recipient.metrics.lag.reset();

    // Lag under a steady offered load of 1,000 events/s.
    let steady_rate = 1000u64;
    let total = steady_rate * steady_secs;
    let start = Instant::now();
    for k in 0..total {
        let due = start + Duration::from_micros(k * 1_000_000 / steady_rate);
        tokio::time::sleep_until(due.into()).await;
        let log = author.log.clone();
        let d = draft(events + k);
        tokio::spawn(async move { log.append_async(d).await });
    }
    wait_for(&recipient, a_code, events + total, Duration::from_secs(120)).await?;
    let lag = &recipient.metrics.lag;
    let pct = |p: f64| lag.quantile_ms(p);
    let report = Report {
        events,
        replicated_per_s,
        raw_publish_per_s,
        raw_verify_1_per_s,
        raw_verify_batch64_per_s,
        steady_rate,
        events_per_person: per_person,
        lag_p50_ms: pct(0.5),
        lag_p99_ms: pct(0.99),
        lag_samples: lag.count() as usize,
        mean_inbox_batch: mean_batch,
        appended_s,
        published_s: published_s.unwrap_or(stored_s),
        stored_s,
    };
    author.stop().await?;
    recipient.stop().await?;
    drop(nats);
    Ok(report)
}

/// A later event about the same person: a service, no second arrival (which validation refuses).
fn service_body() -> Option<yipan_proto::v1::EventBody> {
    Some(yipan_proto::v1::EventBody {
        kind: Some(yipan_proto::v1::event_body::Kind::ServiceRendered(yipan_proto::v1::ServiceRendered {
            service: yipan_proto::v1::ServiceKind::PersonInformed as i32,
            provider_ref: String::new(),
        })),
    })
}
