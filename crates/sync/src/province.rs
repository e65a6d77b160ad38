//! One inbox consumer per province for a host that serves every locality of
//! that province (`inbox_provinces` in `host.toml`, docs/scale.md).
//!
//! A per-locality consumer costs the server its own delivery loop, pull
//! requests and acknowledgements, and a host of thousands of tenants its own
//! batch per tenant — at national scale a tenant receives a message every
//! few seconds, so every batch holds one message and every message pays
//! for a whole round. The province's consumer `inbox-<pp>` reads the
//! province's stream (filter `yipan.v1.ev.<pp>.>`) with the province's own
//! NATS user `inbox-<pp>`, and hands each message to the tenant its subject
//! names; the tenant verifies, stores and acknowledges it exactly as its own
//! consumer would ([`Recipient`]), so its log, its quarantine and its checks
//! (an event not addressed to it is quarantined) are unchanged.
//!
//! **Coverage.** The consumer keeps its own cursor in the host's store
//! (`inbox/<pp>/cursor`), and a record per tenant that it *covers*
//! (`inbox/<pp>/member/<code>`): every message addressed to a member at or
//! below the cursor is settled in the member's log. A tenant that joins
//! while the consumer already runs (added without a restart, or one that
//! failed to start before) is not a member: the consumer acknowledges the
//! messages addressed to a locality it does not serve (counted, never read
//! by anyone here), so the joining tenant first reads its own address through
//! its own consumer `node-<code>` from its own cursor until nothing is
//! pending ("catching up"; duplicates with what the province's consumer
//! hands it meanwhile are dropped by the log), then becomes a member and
//! its own consumer is deleted. Before the consumer starts, the records of
//! tenants not running are removed, so a record never outlives a gap in
//! coverage. Should a count of pending messages be wrong (seen right after a
//! failover), the channel heads and re-send requests of [`crate::repair`]
//! still fill what catching up missed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, Message};
use tokio::sync::watch;
use yipan_core::Locality;
use yipan_log::{Backend, Log};

use crate::inbox::{self, blocking, Backoff, ConsumerSpec, CursorStore, Ended, Recipient, Sink};
use crate::metrics::SyncMetrics;
use crate::repair::RepairState;
use crate::{subjects, Error, Result, SyncConfig};

/// How often one unserved locality is named in the log.
const UNROUTED_WARN_EVERY: Duration = Duration::from_secs(600);

/// A tenant as the province's consumer sees it.
pub(crate) struct Member<B: Backend> {
    recipient: tokio::sync::Mutex<Recipient<B>>,
    /// Holds everything addressed to it up to the consumer's cursor (else catching up).
    covered: AtomicBool,
    /// Counts its losses of coverage, under the lock that record changes
    /// take: a catch-up that began before the last loss does not admit it.
    losses: tokio::sync::Mutex<u64>,
    /// Wakes its part ([`take_part`]) when it lost coverage.
    lost: tokio::sync::Notify,
    /// It lost coverage for failing to take its shares, and its own consumer
    /// has not read its address to the end since: what is addressed to it is
    /// passed by (that consumer reads it).
    passing_by: AtomicBool,
}

impl<B: Backend> Member<B> {
    /// Losses of coverage so far (read before catching up; [`ProvinceInbox::admit`] checks it).
    async fn losses(&self) -> u64 {
        *self.losses.lock().await
    }
}

/// The province's consumer and the tenants it serves.
pub struct ProvinceInbox<B: Backend> {
    province: u8,
    /// The host's own tree of the shared store (cursor, member records).
    state: Arc<dyn Backend>,
    members: RwLock<HashMap<Locality, Arc<Member<B>>>>,
    /// Set once the consumer hands out messages: a tenant joining after it must catch up.
    dispatching: AtomicBool,
    metrics: Arc<SyncMetrics>,
    /// The cursor as last written (for status).
    cursor: AtomicU64,
    /// Its consumer's backlog, which its tenants' repairs wait for.
    backlog: Arc<crate::repair::Backlog>,
    warned: Mutex<HashMap<String, Instant>>,
}

/// The consumer's cursor in the host's tree.
struct HostCursor {
    state: Arc<dyn Backend>,
    key: Vec<u8>,
    seen: Arc<dyn Fn(u64) + Send + Sync>,
}

impl CursorStore for HostCursor {
    fn get(&self) -> Result<u64> {
        let c = self
            .state
            .get(&self.key)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map_or(0, u64::from_be_bytes);
        (self.seen)(c);
        Ok(c)
    }
    fn put(&self, c: u64) -> Result<()> {
        self.state.commit(vec![(self.key.clone(), Some(c.to_be_bytes().to_vec()))])?;
        (self.seen)(c);
        Ok(())
    }
    fn put_lazy(&self, c: u64) -> Result<()> {
        self.state.apply(vec![(self.key.clone(), Some(c.to_be_bytes().to_vec()))])?;
        (self.seen)(c);
        Ok(())
    }
}

/// What `GET /host/tenants` shows of a province's consumer.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct ProvinceStatus {
    /// Two-digit province code.
    pub province: String,
    /// Its durable consumer.
    pub consumer: String,
    /// The cursor as last written.
    pub cursor: u64,
    /// Tenants it covers.
    pub members: usize,
    /// Tenants still reading their own address before it covers them.
    pub catching_up: usize,
    /// Messages addressed to localities this host does not run (acknowledged unread).
    pub unrouted: u64,
    /// Times a tenant lost coverage for failing to take its messages.
    #[serde(default)]
    pub coverage_lost: u64,
    /// Messages acknowledged unread for tenants that lost coverage (they read them again).
    #[serde(default)]
    pub passed_by: u64,
}

impl<B: Backend> ProvinceInbox<B> {
    /// The inbox of `province`, keeping its state in `state` (the host's own tree).
    pub fn new(province: u8, state: Arc<dyn Backend>) -> Arc<Self> {
        Arc::new(ProvinceInbox {
            province,
            state,
            members: Default::default(),
            dispatching: AtomicBool::new(false),
            metrics: Default::default(),
            cursor: AtomicU64::new(0),
            backlog: Default::default(),
            warned: Default::default(),
        })
    }

    /// Its province.
    pub fn province(&self) -> u8 {
        self.province
    }

    /// Its consumer's backlog (its tenants' repair requests wait while there is one).
    pub fn backlog(&self) -> Arc<crate::repair::Backlog> {
        self.backlog.clone()
    }

    /// Its counters (batches, unrouted messages, re-created consumers).
    pub fn metrics(&self) -> Arc<SyncMetrics> {
        self.metrics.clone()
    }

    /// How it stands.
    pub fn status(&self) -> ProvinceStatus {
        let members = self.members.read().unwrap_or_else(|p| p.into_inner());
        let covered = members.values().filter(|m| m.covered.load(Ordering::Acquire)).count();
        ProvinceStatus {
            province: format!("{:02}", self.province),
            consumer: subjects::province_consumer(self.province),
            cursor: self.cursor.load(Ordering::Relaxed),
            members: covered,
            catching_up: members.len() - covered,
            unrouted: self.metrics.unrouted.load(Ordering::Relaxed),
            coverage_lost: self.metrics.coverage_lost.load(Ordering::Relaxed),
            passed_by: self.metrics.passed_by.load(Ordering::Relaxed),
        }
    }

    fn key(&self, rest: &str) -> Vec<u8> {
        format!("inbox/{:02}/{rest}", self.province).into_bytes()
    }

    fn member_key(&self, l: Locality) -> Vec<u8> {
        self.key(&format!("member/{l}"))
    }

    /// Registers a tenant (as its replication starts, so that the tenants
    /// running at start have joined before the consumer starts). It is
    /// covered already if its record is there and the consumer has not
    /// started handing out messages. A record that cannot be read counts as
    /// absent (the tenant catches up: duplicates, never a gap).
    pub(crate) fn join(&self, recipient: Recipient<B>) -> Arc<Member<B>> {
        let l = recipient.log.locality();
        // Under the lock that starting the consumer takes: a tenant joins
        // wholly before the first message is handed out, or wholly after.
        let mut members = self.members.write().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = members.get(&l) {
            return m.clone();
        }
        let covered =
            !self.dispatching.load(Ordering::Acquire) && matches!(self.state.get(&self.member_key(l)), Ok(Some(_)));
        let m = Arc::new(Member {
            recipient: tokio::sync::Mutex::new(recipient),
            covered: AtomicBool::new(covered),
            losses: Default::default(),
            lost: Default::default(),
            passing_by: AtomicBool::new(false),
        });
        members.insert(l, m.clone());
        m
    }

    /// Records that the consumer covers `l` from now on: it caught up, and
    /// has not lost coverage since `losses` was read before it began (else false:
    /// what it was passed by meanwhile may be newer than what it caught up to).
    async fn admit(&self, l: Locality, member: &Member<B>, losses: u64) -> Result<bool> {
        let now = member.losses.lock().await;
        if *now != losses {
            return Ok(false);
        }
        let (state, key) = (self.state.clone(), self.member_key(l));
        blocking("member record", move || Ok(state.commit(vec![(key, Some(Vec::new()))])?)).await?;
        member.covered.store(true, Ordering::Release);
        Ok(true)
    }

    /// Takes coverage from `l` (it keeps failing to take its share): its
    /// record goes first — were it kept, a restart would take the tenant as
    /// covered — then it reads its own address again through its own
    /// consumer ([`take_part`]), and what it failed to take may be passed by.
    async fn uncover(&self, l: Locality, member: &Member<B>) -> Result<()> {
        let mut losses = member.losses.lock().await;
        let (state, key) = (self.state.clone(), self.member_key(l));
        blocking("member record", move || Ok(state.commit(vec![(key, None)])?)).await?;
        member.covered.store(false, Ordering::Release);
        member.passing_by.store(true, Ordering::Release);
        crate::metrics::SyncMetrics::add(&self.metrics.coverage_lost, 1);
        *losses += 1;
        member.lost.notify_one();
        Ok(())
    }

    /// Before the consumer starts: removes the records of localities not
    /// running here (they lose coverage from now on and catch up when they
    /// join), and from then on a tenant that joins is not covered.
    fn start_dispatching(&self) -> Result<usize> {
        let members = self.members.write().unwrap_or_else(|p| p.into_inner());
        let (start, end) = (self.key("member/"), self.key("member0"));
        let mut stale = Vec::new();
        self.state.for_each(&start, &end, &mut |k, _| {
            let code = std::str::from_utf8(&k[start.len()..]).ok().and_then(|c| Locality::parse(c).ok());
            if !code.is_some_and(|c| members.contains_key(&c)) {
                stale.push((k.to_vec(), None));
            }
            true
        })?;
        let n = stale.len();
        if n > 0 {
            self.state.commit(stale)?;
        }
        self.dispatching.store(true, Ordering::Release);
        Ok(n)
    }

    /// Runs the province's consumer until `stop` (with `client`, connected as
    /// the province's NATS user `inbox-<pp>`), reconnecting after failures.
    /// Start it once the tenants running at start have joined.
    pub async fn run(self: Arc<Self>, client: async_nats::Client, cfg: SyncConfig, mut stop: watch::Receiver<bool>) {
        let mut backoff = Backoff::default();
        // Until the records are right nothing is handed out: a record could claim coverage that a gap broke.
        loop {
            let this = self.clone();
            match blocking("member records", move || this.start_dispatching()).await {
                Ok(0) => break,
                Ok(n) => {
                    tracing::info!(province = self.province, tenants = n, "no longer covered (not running here)");
                    break;
                }
                Err(e) => {
                    tracing::error!(province = self.province, error = %e, "cannot update the member records; retrying");
                    if backoff.failed(&e, &mut stop).await {
                        return;
                    }
                }
            }
        }
        let js = jetstream::ContextBuilder::new()
            .ack_timeout(Duration::from_millis(cfg.ack_timeout_ms))
            .timeout(Duration::from_millis(cfg.ack_timeout_ms))
            .build(client);
        let spec = ConsumerSpec {
            province: self.province,
            name: subjects::province_consumer(self.province),
            filter: subjects::stream_subjects(self.province),
            max_ack_pending: PROVINCE_MAX_ACK_PENDING,
            backlog: self.backlog.clone(),
            replicas: cfg.consumer_replicas,
        };
        let seen = {
            let this = self.clone();
            Arc::new(move |c: u64| this.cursor.store(c, Ordering::Relaxed))
        };
        let store: Arc<dyn CursorStore> =
            Arc::new(HostCursor { state: self.state.clone(), key: self.key("cursor"), seen });
        loop {
            let mut router = Router::new(self.clone(), Duration::from_millis(cfg.uncover_after_ms));
            let ended = inbox::consume(&js, &cfg, &spec, &store, &self.metrics, &mut stop, &mut router, false).await;
            router.finish().await;
            match ended {
                Ok(_) => return,
                Err(e) => {
                    if backoff.failed(&e, &mut stop).await {
                        return;
                    }
                }
            }
        }
    }

    fn count_passed_by(&self, n: usize) {
        crate::metrics::SyncMetrics::add(&self.metrics.passed_by, n as u64);
    }

    fn unrouted(&self, to: &str, n: usize) {
        crate::metrics::SyncMetrics::add(&self.metrics.unrouted, n as u64);
        // Named only if it is a locality code: a subject token is whatever its
        // author wrote, and nothing but codes goes into the log (nor into this map).
        let named = Locality::parse(to).ok().map(|l| l.to_string());
        let key = named.clone().unwrap_or_default();
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if warned.get(&key).is_some_and(|t| now.duration_since(*t) < UNROUTED_WARN_EVERY) {
            return;
        }
        warned.insert(key, now);
        match named {
            Some(code) => tracing::warn!(
                province = self.province,
                recipient = %code,
                messages = n,
                "events addressed to a locality this host does not run: acknowledged unread (a tenant started \
                 here later reads them with its own consumer first)"
            ),
            None => tracing::warn!(
                province = self.province,
                messages = n,
                "events on a subject that names no locality: acknowledged unread"
            ),
        }
    }
}

/// Messages per province consumer delivered and not yet settled: the
/// tenants' queues and the events they hold beyond gaps (~1.5 KB each).
const PROVINCE_MAX_ACK_PENDING: i64 = 16_384;

/// Messages one tenant takes per round from its queue.
const TENANT_ROUND: usize = 1_024;

/// A tenant whose shares fail this many times in a row while its own NATS
/// connection is down (sealed tiers are opened with its own credentials), for
/// at least `uncover_after_ms` ([`SyncConfig`]), loses coverage: what it fails
/// to take stays unacknowledged and counts against the province's
/// [`PROVINCE_MAX_ACK_PENDING`], so one tenant failing for long would slow
/// every tenant of its province. A failover's reconnections stay below it (at
/// 30 s a whole-country run with server kills took 24 tenants' coverage while
/// their reconnections queued; the default is 120 s), and failures while its
/// connection is up (timeouts of overloaded servers,
/// which every tenant sees) do not count: measured, counting them took the
/// coverage of 181 tenants in the 1 M-person run and added their consumers to
/// the overload.
const UNCOVER_AFTER_FAILURES: u32 = 3;

/// How a tenant's shares have been failing: since when, and how many times in a row.
#[derive(Debug, Default)]
struct Failing(Option<(Instant, u32)>);

impl Failing {
    /// Records a failed share; true when the tenant is to lose coverage
    /// ([`UNCOVER_AFTER_FAILURES`] in a row spanning at least `after`).
    /// Slow servers fail every tenant alike (requests time out under
    /// overload): taking coverage then would add a consumer per tenant to what
    /// overloads them. Only a tenant whose own connection is down — the
    /// failure that is its own — is counted; one failing while connected
    /// starts the count again.
    fn failed(&mut self, connected: bool, now: Instant, after: Duration) -> bool {
        if connected {
            self.0 = None;
            return false;
        }
        let (since, times) = self.0.get_or_insert((now, 0));
        *times += 1;
        *times >= UNCOVER_AFTER_FAILURES && now.saturating_duration_since(*since) >= after
    }

    /// A share was taken (or coverage lost): the count starts again.
    fn reset(&mut self) {
        self.0 = None;
    }
}

/// A share of a batch for one tenant, with the province's cursor to write.
type Share = (Vec<Message>, Option<u64>);

/// The province's consumer handing each batch out by recipient. Each tenant
/// takes its share in a task of its own, in order, while the consumer reads
/// on: waiting for every tenant of a batch before reading the next made a
/// batch as slow as its slowest tenant (measured: ~200 ms per batch of ~60
/// messages for ~8 tenants, 3× fewer events a second than a consumer each).
struct Router<B: Backend> {
    inbox: Arc<ProvinceInbox<B>>,
    /// See [`UNCOVER_AFTER_FAILURES`].
    uncover_after: Duration,
    queues: HashMap<Locality, tokio::sync::mpsc::UnboundedSender<Share>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    settled_tx: tokio::sync::mpsc::UnboundedSender<Vec<u64>>,
    settled_rx: tokio::sync::mpsc::UnboundedReceiver<Vec<u64>>,
}

impl<B: Backend> Router<B> {
    fn new(inbox: Arc<ProvinceInbox<B>>, uncover_after: Duration) -> Self {
        let (settled_tx, settled_rx) = tokio::sync::mpsc::unbounded_channel();
        Router { inbox, uncover_after, queues: HashMap::new(), tasks: Vec::new(), settled_tx, settled_rx }
    }

    /// The queue of tenant `l`, its task started on first use.
    fn queue(&mut self, l: Locality, member: Arc<Member<B>>) -> &tokio::sync::mpsc::UnboundedSender<Share> {
        let (settled, tasks, inbox, after) = (&self.settled_tx, &mut self.tasks, &self.inbox, self.uncover_after);
        self.queues.entry(l).or_insert_with(|| {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let tenant = Tenant { inbox: inbox.clone(), l, member, uncover_after: after };
            tasks.push(tokio::spawn(tenant.serve(rx, settled.clone())));
            tx
        })
    }

    /// Closes the queues and waits until every tenant has taken what it was
    /// handed: before the host stops its tenants, and before a new attempt
    /// hands out messages again (so a tenant never takes two shares at once).
    async fn finish(self) {
        drop(self.queues);
        futures::future::join_all(self.tasks).await;
    }
}

/// Takes a tenant's shares in order, everything queued at once; takes its
/// coverage when it keeps failing ([`UNCOVER_AFTER_FAILURES`]).
struct Tenant<B: Backend> {
    inbox: Arc<ProvinceInbox<B>>,
    l: Locality,
    member: Arc<Member<B>>,
    uncover_after: Duration,
}

impl<B: Backend> Tenant<B> {
    async fn serve(
        self,
        mut queue: tokio::sync::mpsc::UnboundedReceiver<Share>,
        settled: tokio::sync::mpsc::UnboundedSender<Vec<u64>>,
    ) {
        let Tenant { inbox, l, member, uncover_after } = self;
        let mut failing = Failing::default();
        while let Some((mut msgs, mut cursor)) = queue.recv().await {
            while msgs.len() < TENANT_ROUND {
                match queue.try_recv() {
                    Ok((more, c)) => {
                        msgs.extend(more);
                        cursor = cursor.max(c);
                    }
                    Err(_) => break,
                }
            }
            // It lost coverage after these were queued: passed by as well.
            if member.passing_by.load(Ordering::Acquire) {
                let n = msgs.len();
                match ack_unread(msgs).await {
                    Ok(done) => {
                        inbox.count_passed_by(n);
                        let _ = settled.send(done);
                    }
                    Err(e) => tracing::warn!(locality = %l, error = %e, "not passed by; redelivered later"),
                }
                continue;
            }
            let mut r = member.recipient.lock().await;
            // A member's own cursor moves with the province's (it is covered up to it).
            let own = cursor.filter(|_| member.covered.load(Ordering::Acquire));
            match r.process(msgs, own).await {
                Ok(done) => {
                    failing.reset();
                    let _ = settled.send(done);
                }
                // Its messages stay unacknowledged: redelivered after the ack wait; the others go on.
                Err(e) => {
                    if !failing.failed(r.connected(), Instant::now(), uncover_after) {
                        tracing::warn!(locality = %l, error = %e, "tenant could not take its messages; redelivered later");
                        continue;
                    }
                    match inbox.uncover(l, &member).await {
                        Ok(()) => {
                            failing.reset();
                            tracing::warn!(
                                locality = %l,
                                error = %e,
                                "tenant keeps failing to take its messages: no longer covered; what is addressed to \
                                 it is passed by until it has read its own address again through its own consumer"
                            );
                            // What it holds beyond gaps is passed by too (read again the same way).
                            match r.pass_by_held().await {
                                Ok(done) => {
                                    inbox.count_passed_by(done.len());
                                    let _ = settled.send(done);
                                }
                                Err(e) => tracing::warn!(locality = %l, error = %e, "held events not passed by"),
                            }
                        }
                        Err(e) => {
                            tracing::warn!(locality = %l, error = %e, "cannot take its coverage; redelivered later")
                        }
                    }
                }
            }
        }
    }
}

/// Acknowledges messages no tenant here reads now; returns their stream sequences.
async fn ack_unread(msgs: Vec<Message>) -> Result<Vec<u64>> {
    let mut done = Vec::with_capacity(msgs.len());
    for m in msgs {
        m.ack().await.map_err(Error::nats)?;
        done.extend(m.info().ok().map(|i| i.stream_sequence));
    }
    Ok(done)
}

impl<B: Backend> Sink for Router<B> {
    async fn batch(&mut self, msgs: Vec<Message>, cursor: Option<u64>) -> Result<Vec<u64>> {
        let inbox = self.inbox.clone();
        let mut settled = Vec::new();
        let mut passed = Vec::new();
        let mut by: HashMap<Locality, (Arc<Member<B>>, Vec<Message>)> = HashMap::new();
        let mut unrouted: HashMap<String, Vec<Message>> = HashMap::new();
        {
            let members = inbox.members.read().unwrap_or_else(|p| p.into_inner());
            for m in msgs {
                // yipan.v1.ev.<pp>.<recipient>.<author>
                let to = m.subject.split('.').nth(4).unwrap_or("");
                match Locality::parse(to).ok().and_then(|l| Some((l, members.get(&l)?))) {
                    Some((_, member)) if member.passing_by.load(Ordering::Acquire) => passed.push(m),
                    Some((l, member)) => by.entry(l).or_insert_with(|| (member.clone(), Vec::new())).1.push(m),
                    None => unrouted.entry(to.to_string()).or_default().push(m),
                }
            }
        }
        if !passed.is_empty() {
            inbox.count_passed_by(passed.len());
            settled.extend(ack_unread(passed).await?);
        }
        for (to, msgs) in unrouted {
            inbox.unrouted(&to, msgs.len());
            settled.extend(ack_unread(msgs).await?);
        }
        for (l, (member, msgs)) in by {
            if self.queue(l, member).send((msgs, cursor)).is_err() {
                // Cannot happen while the router lives; the messages would be redelivered.
                tracing::warn!(locality = %l, "tenant queue closed");
            }
        }
        Ok(settled)
    }

    async fn later(&mut self) -> Vec<u64> {
        match self.settled_rx.recv().await {
            Some(done) => done,
            None => std::future::pending().await,
        }
    }
}

/// A tenant's part of the province's inbox, run as its replication's inbox
/// task after it joined ([`ProvinceInbox::join`]): whenever it is not covered
/// (at first, or after it lost coverage), it reads its own address through
/// its own consumer until nothing is pending, then becomes a member and
/// deletes that consumer; in between it waits for `stop`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn take_part<B: Backend>(
    inbox: Arc<ProvinceInbox<B>>,
    member: Arc<Member<B>>,
    log: Arc<Log<B>>,
    js: jetstream::Context,
    cfg: SyncConfig,
    metrics: Arc<SyncMetrics>,
    repair: Arc<RepairState>,
    mut stop: watch::Receiver<bool>,
) {
    let me = log.locality();
    let mut backoff = Backoff::default();
    loop {
        // Read again each time: a restarted task finds the member covered once it caught up.
        if !member.covered.load(Ordering::Acquire) {
            let losses = member.losses().await;
            tracing::info!(locality = %me, "catching up through its own consumer before the province's covers it");
            let mut own = Recipient::new(log.clone(), metrics.clone(), repair.clone(), js.client());
            if inbox::own_until(&js, &cfg, &mut own, &mut stop, true).await != Some(Ended::Drained) {
                return;
            }
            // It lost coverage before: from now on the province's consumer hands it its
            // messages again, and what it passed by between the end of that catch-up and
            // now is read by a second one (short: the same consumer, drained a moment ago).
            if member.passing_by.swap(false, Ordering::AcqRel)
                && inbox::own_until(&js, &cfg, &mut own, &mut stop, true).await != Some(Ended::Drained)
            {
                return;
            }
            match inbox.admit(me, &member, losses).await {
                // Lost again while catching up: what was passed by meanwhile may be newer.
                Ok(false) => continue,
                Ok(true) => {}
                Err(e) => {
                    if backoff.failed(&e, &mut stop).await {
                        return;
                    }
                    continue;
                }
            }
            let stream = subjects::stream(me.province());
            if let Err(e) = js.delete_consumer_from_stream(subjects::consumer(me), &stream).await {
                tracing::debug!(locality = %me, error = %e, "own consumer not deleted");
            }
            tracing::info!(locality = %me, "caught up; the province's consumer covers it from now on");
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = member.lost.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AFTER: Duration = Duration::from_secs(120);

    #[test]
    fn failures_while_the_tenants_own_connection_is_up_never_take_its_coverage() {
        let mut f = Failing::default();
        let t0 = Instant::now();
        for i in 0..100u64 {
            assert!(!f.failed(true, t0 + Duration::from_secs(i * 10), AFTER), "failure {i} while connected");
        }
    }

    #[test]
    fn three_failures_in_a_row_with_its_connection_down_over_the_period_take_it() {
        let mut f = Failing::default();
        let t0 = Instant::now();
        assert!(!f.failed(false, t0, AFTER));
        assert!(!f.failed(false, t0 + Duration::from_secs(60), AFTER));
        // Three, but not yet over the period.
        assert!(!f.failed(false, t0 + Duration::from_secs(119), AFTER));
        assert!(f.failed(false, t0 + Duration::from_secs(120), AFTER));
        // Over the period, but only two failures.
        let mut f = Failing::default();
        assert!(!f.failed(false, t0, AFTER));
        assert!(!f.failed(false, t0 + Duration::from_secs(500), AFTER));
        assert!(f.failed(false, t0 + Duration::from_secs(501), AFTER));
    }

    #[test]
    fn a_share_taken_or_a_failure_while_connected_starts_the_count_again() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut f = Failing::default();
        assert!(!f.failed(false, at(0), AFTER));
        assert!(!f.failed(false, at(100), AFTER));
        f.reset();
        assert!(!f.failed(false, at(200), AFTER));
        assert!(!f.failed(false, at(300), AFTER));
        assert!(!f.failed(true, at(310), AFTER));
        assert!(!f.failed(false, at(400), AFTER));
        assert!(!f.failed(false, at(500), AFTER));
        assert!(f.failed(false, at(520), AFTER), "three in a row over 120 s since the failure at 400 s");
    }
}
