//! Replication of a locality's events over NATS JetStream (DESIGN.md
//! invariants 4–8).
//!
//! - [`subjects`]: subject and stream names (recipient province as a token,
//!   recipient, author).
//! - [`outbox`]: publishes the node's own events to each recipient's subject
//!   from a durable cursor; appends never wait for NATS.
//! - [`inbox`]: one durable consumer per node; verifies and stores received
//!   events, acks only once durable, holds gaps until repaired.
//! - [`budget`]: the publishes in flight for all tenants of a host together.
//! - [`province`]: for a host serving a whole province, one consumer for
//!   all of its tenants, each message handed to the tenant it is for.
//! - [`repair`]: channel-head announcements, the re-send service each author
//!   answers from its own log, and the repair requests of recipients.
//! - [`downstream`]: role-filtered feeds for downstream systems.
//! - [`trust`]: follows the trust stream (certificates, revocations, key
//!   handovers) into the log and publishes the node's own handovers.
//! - [`metrics`]: counters and lag samples of all of the above.
//!
//! [`Replication::start`] runs all of it on a tokio runtime and [`Replication::stop`] ends it.

pub mod budget;
pub mod downstream;
pub mod inbox;
pub mod metrics;
pub mod outbox;
pub mod province;
pub mod repair;
pub mod seal;
pub mod subjects;
pub mod trust;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use yipan_log::{Backend, Log};

pub use metrics::SyncMetrics;

/// Replication settings.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncConfig {
    /// NATS server URL(s), comma-separated (`tls://` when the server requires TLS).
    pub nats_url: String,
    /// NKey seed file of this node's NATS user (`0600`; made by `yipan nats users`).
    pub nats_nkey_file: Option<std::path::PathBuf>,
    /// CA certificate (PEM) that the NATS server's certificate chains to; TLS is required when set.
    pub nats_ca_file: Option<std::path::PathBuf>,
    /// Whether this node creates the streams it needs. Off in a secured
    /// deployment: streams are created by the admin (`yipan nats provision`)
    /// and localities have no right to administer them.
    pub manage_streams: bool,
    /// Publishes in flight before the outbox waits for acknowledgements.
    pub publish_window: usize,
    /// Own events read from the log per outbox round.
    pub publish_chunk: usize,
    /// Messages the inbox verifies and stores per batch (one flush each).
    pub fetch_batch: usize,
    /// How often changed channel heads are announced, in milliseconds.
    pub head_interval_ms: u64,
    /// How often an unchanged channel head is announced again, ms (a
    /// recipient that was offline, or lost an announcement, learns it then).
    /// Announcing every head every interval costs one message per channel
    /// per interval: at national scale (hundreds of thousands of channels)
    /// more messages than events.
    pub head_refresh_ms: u64,
    /// How long a recipient waits for missing events before asking the author to re-send, ms.
    pub repair_grace_ms: u64,
    /// A tenant of a province's shared inbox (`inbox_provinces`) whose shares
    /// have failed three times in a row for at least this long, with its own
    /// NATS connection down, loses that
    /// inbox's coverage and reads its own address through its own consumer
    /// until it caught up (docs/scale.md), ms. What it cannot take would
    /// otherwise stay unacknowledged and hold up its whole province.
    pub uncover_after_ms: u64,
    /// How long the event streams keep messages, in days (audit retention).
    pub stream_max_age_days: u64,
    /// How long the downstream streams keep messages, in days: a delivery
    /// buffer whose tiers are in the clear for the subscribers, so an erased
    /// tier is gone from it at most this long after its release.
    pub downstream_max_age_days: u64,
    /// JetStream publish acknowledgement timeout, ms.
    pub ack_timeout_ms: u64,
    /// Downstream roles to publish every stored event for (tier-filtered).
    pub downstream: Vec<downstream::DownstreamRole>,
    /// How often the trust stream is read for new records, in milliseconds.
    pub trust_poll_ms: u64,
    /// Replicas of the streams the admin creates (3 on a province's JetStream
    /// cluster; 1 on a single server).
    pub stream_replicas: usize,
    /// In a supercluster: the streams of province `pp` are placed in the
    /// cluster named this prefix followed by `pp` (e.g. `province-` →
    /// `province-61`), so a province's events live in its own cluster.
    pub stream_cluster_prefix: Option<String>,
    /// In a supercluster where clusters serve groups of provinces: the
    /// cluster of each province's streams by its two-digit code
    /// (`{"61" = "northwest", "41" = "central"}`); takes precedence over
    /// `stream_cluster_prefix`.
    pub stream_clusters: std::collections::BTreeMap<String, String>,
    /// Replicas of each locality's inbox consumer; 0 takes the stream's.
    /// An R3 consumer is one Raft group: thousands of them cost about a core
    /// per cluster while idle (docs/scale.md), an R1 consumer nothing until
    /// its server is lost, and then only a pause until that server is back.
    pub consumer_replicas: usize,
    /// Where the server keeps each inbox consumer's state: `file` (the
    /// default, as JetStream does) or `memory`. The node's own cursor
    /// (`inbox.cursor`, written with each batch) is the record either way; a
    /// clustered consumer whose server lost its state is re-created from it.
    /// On file, every active consumer rewrites a state file up to ten times a
    /// second — at thousands of consumers the largest part of a server's work
    /// (measured: docs/scale.md) — so hosts on a JetStream cluster take
    /// `memory`. On a single server, a restart drops memory consumers
    /// altogether and each node then reads its inbox again from the start of
    /// the stream (duplicates only): keep `file` there.
    pub consumer_state: ConsumerState,
}

/// Where the server keeps an inbox consumer's state ([`SyncConfig::consumer_state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsumerState {
    /// In a file on the server (as JetStream does by default).
    #[default]
    File,
    /// In the server's memory; re-created from the node's cursor when lost.
    Memory,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            nats_url: "nats://127.0.0.1:4222".into(),
            nats_nkey_file: None,
            nats_ca_file: None,
            manage_streams: false,
            publish_window: 2048,
            publish_chunk: 2048,
            fetch_batch: 512,
            head_interval_ms: 2000,
            head_refresh_ms: 60_000,
            repair_grace_ms: 1000,
            uncover_after_ms: 120_000,
            stream_max_age_days: 400,
            downstream_max_age_days: 30,
            ack_timeout_ms: 5000,
            downstream: Vec::new(),
            trust_poll_ms: 2000,
            stream_replicas: 1,
            stream_cluster_prefix: None,
            stream_clusters: Default::default(),
            consumer_replicas: 0,
            consumer_state: ConsumerState::File,
        }
    }
}

/// Errors of the replication tasks (logged and retried, never fatal to the node).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// NATS or JetStream failed.
    #[error("nats: {0}")]
    Nats(String),
    /// The local log failed.
    #[error(transparent)]
    Log(#[from] yipan_log::Error),
    /// A credential or certificate could not be used.
    #[error(transparent)]
    Access(#[from] yipan_access::Error),
}

impl Error {
    pub(crate) fn nats(e: impl std::fmt::Display) -> Self {
        Error::Nats(e.to_string())
    }
}

/// Result with the sync [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Connects to NATS as `principal` without waiting: the client keeps
/// (re)connecting in the background, so a node starts and serves while NATS
/// is down. Uses the NKey and CA of `cfg` when set, and the principal's
/// private inbox prefix (its permissions allow no other).
pub async fn connect(
    cfg: &SyncConfig,
    name: &str,
    principal: yipan_access::nats::Principal,
) -> Result<async_nats::Client> {
    connect_options(cfg, principal)?
        .event_callback(|event| async move {
            match event {
                // Permission violations, authorization failures: an operator must see them.
                async_nats::Event::ServerError(e) => tracing::warn!(error = %e, "NATS server error"),
                // Mostly failed reconnection attempts while the server is away (retried forever).
                async_nats::Event::ClientError(e) => tracing::debug!(error = %e, "NATS client error"),
                other => tracing::debug!(event = %other, "NATS connection event"),
            }
        })
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .connect(servers(&cfg.nats_url).as_slice())
        .await
        .map_err(Error::nats)
}

/// Where a province's stream goes in a supercluster: the cluster of the
/// province its name ends with (`YIPAN_EV_61` → `province-61`).
pub(crate) fn placement(cfg: &SyncConfig, stream: &str) -> Option<jetstream::stream::Placement> {
    let province = stream.rsplit('_').next().filter(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()))?;
    let cluster = match cfg.stream_clusters.get(province) {
        Some(c) => c.clone(),
        None => format!("{}{province}", cfg.stream_cluster_prefix.as_ref()?),
    };
    Some(jetstream::stream::Placement { cluster: Some(cluster), tags: Vec::new() })
}

/// The server URLs of a comma-separated `nats_url` (every server of the
/// province's cluster: the client connects to any and fails over to the others).
pub fn servers(url: &str) -> Vec<String> {
    url.split(',').map(str::trim).filter(|u| !u.is_empty()).map(String::from).collect()
}

/// Connection options with the credentials, TLS and inbox prefix of `cfg`
/// for `principal`; also used by tools (audit, provisioning) that connect once.
pub fn connect_options(
    cfg: &SyncConfig,
    principal: yipan_access::nats::Principal,
) -> Result<async_nats::ConnectOptions> {
    let mut o = async_nats::ConnectOptions::new().custom_inbox_prefix(principal.inbox_prefix());
    if let Some(seed) = &cfg.nats_nkey_file {
        o = o.nkey(yipan_access::nats::read_seed(seed)?);
    }
    if let Some(ca) = &cfg.nats_ca_file {
        o = o.add_root_certificates(ca.clone()).require_tls(true);
    }
    Ok(o)
}

/// Creates the trust stream and the event and downstream streams of
/// `provinces` (the admin's step: localities may not administer streams).
/// Idempotent.
pub async fn provision(js: &jetstream::Context, provinces: &[u8], cfg: &SyncConfig) -> Result<()> {
    trust::ensure_stream(js, cfg).await?;
    for p in provinces {
        ensure_stream(js, subjects::stream(*p), subjects::stream_subjects(*p), cfg).await?;
        downstream::ensure_stream(js, *p, cfg).await?;
        seal::ensure_key_stream(js, *p, cfg).await?;
    }
    Ok(())
}

/// The running replication tasks of one node.
pub struct Replication {
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
    metrics: Arc<SyncMetrics>,
}

/// What a host shares between the replication of its tenants ([`Replication::start_with`]).
pub struct Shared<B: Backend> {
    /// Trust records, read once for every tenant.
    pub feed: Option<Arc<trust::TrustFeed>>,
    /// The consumer of the tenant's province, if the host serves all of it.
    pub inbox: Option<Arc<province::ProvinceInbox<B>>>,
    /// The host's publish budget, shared by every tenant's outbox and re-sends.
    pub publish_budget: Option<Arc<budget::PublishBudget>>,
}

impl<B: Backend> Default for Shared<B> {
    fn default() -> Self {
        Shared { feed: None, inbox: None, publish_budget: None }
    }
}

/// How long [`Replication::stop`] waits for its tasks before aborting them (a task
/// blocked on an unreachable NATS server must not hold the node).
pub const STOP_GRACE: Duration = Duration::from_secs(3);

impl Replication {
    /// Starts the outbox, inbox, announcer, repair service and repair client.
    pub fn start<B: Backend>(log: Arc<Log<B>>, client: async_nats::Client, cfg: SyncConfig) -> Replication {
        Self::start_with(log, client, cfg, Shared::default())
    }

    /// [`Replication::start`] with what a host shares between its tenants:
    /// trust records from its [`trust::TrustFeed`] instead of reading the
    /// trust stream itself, and messages from its province's consumer
    /// ([`province::ProvinceInbox`]) instead of a consumer of its own.
    pub fn start_with<B: Backend>(
        log: Arc<Log<B>>,
        client: async_nats::Client,
        cfg: SyncConfig,
        shared: Shared<B>,
    ) -> Replication {
        let Shared { feed, inbox: province, publish_budget } = shared;
        let metrics = Arc::new(SyncMetrics::default());
        let js = jetstream::ContextBuilder::new()
            .ack_timeout(Duration::from_millis(cfg.ack_timeout_ms))
            .timeout(Duration::from_millis(cfg.ack_timeout_ms))
            .build(client.clone());
        let (stop, stop_rx) = watch::channel(false);
        let repair = Arc::new(match &province {
            Some(p) => repair::RepairState::sharing(p.backlog()),
            None => repair::RepairState::default(),
        });
        let published = Arc::new(std::sync::atomic::AtomicU64::new(0));
        // Each task runs under `supervise`: one that ends or panics before
        // `stop` is logged, counted and restarted with backoff.
        macro_rules! supervised {
            ($name:literal, [$($v:ident),*], $call:expr) => {{
                $(let $v = $v.clone();)*
                ($name, tokio::spawn(supervise($name, stop.subscribe(), metrics.clone(), move || {
                    $(let $v = $v.clone();)*
                    $call
                })))
            }};
        }
        let downstream_roles = cfg.downstream.clone();
        let tasks = vec![
            supervised!(
                "outbox",
                [log, js, cfg, metrics, published, publish_budget, stop_rx],
                outbox::run(log, js, cfg, metrics, published, publish_budget, stop_rx)
            ),
            match &province {
                None => supervised!(
                    "inbox",
                    [log, js, cfg, metrics, repair, stop_rx],
                    inbox::run(log, js, cfg, metrics, repair, stop_rx)
                ),
                Some(province) => {
                    // Joined here, not in the task: the tenants running at a
                    // host's start have joined before its consumer starts.
                    let member = province.join(inbox::Recipient::new(
                        log.clone(),
                        metrics.clone(),
                        repair.clone(),
                        client.clone(),
                    ));
                    supervised!(
                        "inbox",
                        [province, member, log, js, cfg, metrics, repair, stop_rx],
                        province::take_part(province, member, log, js, cfg, metrics, repair, stop_rx)
                    )
                }
            },
            supervised!(
                "head announcer",
                [log, client, cfg, metrics, published, stop_rx],
                repair::announce(log, client, cfg, metrics, published, stop_rx)
            ),
            supervised!(
                "repair service",
                [log, client, js, metrics, publish_budget, stop_rx],
                repair::serve(log, client, js, metrics, publish_budget, stop_rx)
            ),
            supervised!("payload limit", [log, client, stop_rx], follow_max_payload(log, client, stop_rx)),
            supervised!("repair answers", [log, client, stop_rx], repair::listen_answers(log, client, stop_rx)),
            supervised!(
                "head listener",
                [log, client, repair, stop_rx],
                repair::listen_heads(log, client, repair, stop_rx)
            ),
            supervised!(
                "repair requests",
                [log, client, cfg, metrics, repair, stop_rx],
                repair::request_loop(log, client, cfg, metrics, repair, stop_rx)
            ),
            supervised!(
                "downstream",
                [log, js, cfg, downstream_roles, stop_rx],
                downstream::run(log, js, cfg, downstream_roles, stop_rx)
            ),
            supervised!(
                "trust",
                [log, js, cfg, metrics, feed, stop_rx],
                trust::follow(log, js, cfg, metrics, feed, stop_rx)
            ),
            supervised!(
                "connection watch",
                [client, metrics, stop_rx],
                metrics::watch_connection(client, metrics, stop_rx)
            ),
        ];
        Replication { stop, tasks, metrics }
    }

    /// The replication metrics.
    pub fn metrics(&self) -> Arc<SyncMetrics> {
        self.metrics.clone()
    }

    /// Stops every task and waits for them, at most [`STOP_GRACE`] in all;
    /// a task still running then is aborted and named in the log. Nothing
    /// durable depends on it: the outbox cursor is persisted after each
    /// acknowledged chunk, and un-acked inbox messages are redelivered.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        for (name, mut t) in self.tasks {
            if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
                tracing::warn!(task = name, "replication task did not stop in time; aborted");
                t.abort();
            }
        }
    }
}

/// Creates (or finds) a file-backed stream with the retention and dedup window
/// of `cfg`. Safe when several nodes do it at once: a lost creation race falls
/// back to reading the stream.
pub async fn ensure_stream(
    js: &jetstream::Context,
    name: String,
    subjects: String,
    cfg: &SyncConfig,
) -> Result<jetstream::stream::Stream<()>> {
    let config = jetstream::stream::Config {
        name: name.clone(),
        subjects: vec![subjects],
        storage: jetstream::stream::StorageType::File,
        max_age: Duration::from_secs(cfg.stream_max_age_days * 86_400),
        duplicate_window: Duration::from_secs(120),
        num_replicas: cfg.stream_replicas.max(1),
        placement: placement(cfg, &name),
        ..Default::default()
    };
    if !cfg.manage_streams {
        // Provisioned by the admin; a missing stream shows up as a failed
        // publish or consumer lookup, retried with backoff and logged.
        return js.get_stream_no_info(&name).await.map_err(Error::nats);
    }
    if let Err(first) = js.get_or_create_stream(config).await {
        // A lost creation race: the stream exists if another node made it.
        js.get_stream(&name).await.map_err(|_| Error::nats(first))?;
    }
    js.get_stream_no_info(&name).await.map_err(Error::nats)
}

/// Runs the task `make` makes until `stop` fires. A task that ends or
/// panics before then never vanishes: it is logged at ERROR, counted in
/// `yipan_task_restarts_total`, and started again after a backoff (100 ms
/// doubling to 30 s).
pub async fn supervise<F, Fut>(
    name: &'static str,
    mut stop: watch::Receiver<bool>,
    metrics: Arc<SyncMetrics>,
    mut make: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    /// Aborts the running task when the supervisor itself is aborted or dropped.
    struct AbortOnDrop(JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut task = AbortOnDrop(tokio::spawn(make()));
        let ended = (&mut task.0).await;
        if *stop.borrow() {
            return;
        }
        match ended {
            Err(e) if e.is_panic() => tracing::error!(task = name, "task panicked; restarting"),
            _ => tracing::error!(task = name, "task ended unexpectedly; restarting"),
        }
        SyncMetrics::add(&metrics.task_restarts, 1);
        if sleep_or_stop(backoff, &mut stop).await {
            return;
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Room kept for headers (`Nats-Msg-Id`, …) below the server's `max_payload`.
const HEADER_ROOM: usize = 4096;

/// Keeps the log's event size limit at the server's `max_payload` (less
/// header room), so an event that could never be published is refused at
/// append instead of blocking the outbox.
async fn follow_max_payload<B: Backend>(log: Arc<Log<B>>, client: async_nats::Client, mut stop: watch::Receiver<bool>) {
    let mut known = 0usize;
    loop {
        if client.connection_state() == async_nats::connection::State::Connected {
            let max = client.server_info().max_payload;
            if max > HEADER_ROOM && max != known {
                known = max;
                log.set_max_event_bytes(max - HEADER_ROOM);
                tracing::info!(
                    max_payload = max,
                    limit = max - HEADER_ROOM,
                    "event size limit follows the NATS server"
                );
            }
        }
        if sleep_or_stop(Duration::from_secs(2), &mut stop).await {
            return;
        }
    }
}

/// Sleeps `d`, returning early (true) if `stop` fires.
pub(crate) async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[tokio::test]
    async fn a_task_that_panics_or_ends_is_restarted_and_counted_until_stop() {
        let metrics = Arc::new(SyncMetrics::default());
        let (stop, rx) = watch::channel(false);
        let runs = Arc::new(AtomicU64::new(0));
        let r = runs.clone();
        let waiter = rx.clone();
        let supervisor = tokio::spawn(supervise("test", rx, metrics.clone(), move || {
            let (r, mut waiter) = (r.clone(), waiter.clone());
            async move {
                match r.fetch_add(1, Ordering::SeqCst) {
                    0 => panic!("first run fails"),
                    1 => {} // second run ends early
                    _ => {
                        let _ = waiter.wait_for(|s| *s).await;
                    }
                }
            }
        }));
        while runs.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(metrics.task_restarts.load(Ordering::Relaxed), 2);
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(2), supervisor).await.unwrap().unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 3, "not restarted after stop");
    }
}
