//! The inbox: a durable pull consumer on the recipient province's stream.
//! Messages are verified and stored in batches (one flush per batch) and
//! acknowledged only after their event is durably in the log — or durably in
//! quarantine. An event beyond a gap is held, unacknowledged, until the
//! missing positions arrive (from the stream or re-sent by the author); if the
//! node stops meanwhile, JetStream redelivers it.
//!
//! Two shapes share this code ([`consume`] drives a consumer, a [`Sink`]
//! takes its batches):
//! - a node (and by default each tenant of a host) reads its own address
//!   through its own consumer `node-<code>` ([`run`], one [`Recipient`]);
//! - a host that serves every locality of a province reads the province's
//!   stream through one consumer `inbox-<pp>` and hands each message to the
//!   tenant its subject names ([`crate::province::ProvinceInbox`]): one
//!   consumer per province instead of one per locality (docs/scale.md).
//!
//! Each consumer keeps its own cursor: the stream sequence at or below which
//! every message delivered to it is settled (stored, a duplicate, or in
//! quarantine), written beside the log with each batch. The consumer's state
//! on the server is then only a cache: a consumer whose server lost it
//! (`consumer_state = "memory"`, a server restarted) is re-created from the
//! cursor, so its state need not be written to disk — at thousands of
//! consumers, each active one rewrites a state file ten times a second
//! (docs/scale.md).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, consumer::pull, Message};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::watch;
use yipan_core::Locality;
use yipan_log::{Backend, Ingested, Log};

use crate::metrics::SyncMetrics;
use crate::repair::RepairState;
use crate::{outbox, subjects, ConsumerState, Error, Result, SyncConfig};

/// Events held beyond a gap: author → channel position → (bytes, message to ack).
type Held = HashMap<u32, BTreeMap<u64, (Bytes, Message)>>;

/// Name of the inbox cursor in the log's metadata (8 bytes, big-endian).
pub const CURSOR: &str = "inbox.cursor";

/// The node's inbox cursor (0: none yet).
pub fn cursor<B: Backend>(log: &Log<B>) -> Result<u64> {
    Ok(log.meta_get(CURSOR)?.and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok()).map_or(0, u64::from_be_bytes))
}

/// Where a consumer's cursor is kept: a node's log, or a host's own tree.
pub(crate) trait CursorStore: Send + Sync + 'static {
    /// The cursor (0: none yet).
    fn get(&self) -> Result<u64>;
    /// Writes it durably now.
    fn put(&self, c: u64) -> Result<()>;
    /// Writes it, durable with the next commit of the same storage.
    fn put_lazy(&self, c: u64) -> Result<()>;
}

impl<B: Backend> CursorStore for Log<B> {
    fn get(&self) -> Result<u64> {
        cursor(self)
    }
    fn put(&self, c: u64) -> Result<()> {
        Ok(self.meta_put(CURSOR, &c.to_be_bytes())?)
    }
    fn put_lazy(&self, c: u64) -> Result<()> {
        Ok(self.meta_put_lazy(CURSOR, &c.to_be_bytes())?)
    }
}

/// Runs `f` on the blocking pool (sled writes wait for an fsync).
pub(crate) async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Nats(format!("{what} task failed: {e}")))?
}

/// Stream sequences delivered and not yet settled, and the highest delivered:
/// what the cursor is computed from.
#[derive(Debug)]
pub(crate) struct Settling {
    open: BTreeSet<u64>,
    highest: u64,
    /// The cursor as last written.
    written: u64,
}

impl Settling {
    fn new(cursor: u64) -> Self {
        Settling { open: BTreeSet::new(), highest: cursor, written: cursor }
    }

    fn delivered(&mut self, seq: u64) {
        self.open.insert(seq);
        self.highest = self.highest.max(seq);
    }

    fn settled_seq(&mut self, seq: u64) {
        self.open.remove(&seq);
    }

    /// Every delivered message at or below this is settled (never below what
    /// was written: those were settled before).
    fn current(&self) -> u64 {
        self.open.first().map_or(self.highest, |s| s - 1).max(self.written)
    }

    fn moved(&self) -> bool {
        self.current() > self.written
    }

    /// The cursor to write, if it moved.
    fn advance(&mut self) -> Option<u64> {
        let now = self.current();
        (now > self.written).then(|| {
            self.written = now;
            now
        })
    }
}

/// How long the inbox waits idle before writing a cursor that moved.
const CURSOR_IDLE: Duration = Duration::from_millis(500);

/// Durably writes the cursor if it moved (idle, or stopping). A failure only
/// means more redelivered duplicates after a restart: logged, not fatal.
async fn persist_cursor(store: &Arc<dyn CursorStore>, settling: &mut Settling, who: &str) {
    let Some(c) = settling.advance() else { return };
    let s = store.clone();
    if blocking("cursor", move || s.put(c)).await.is_err() {
        tracing::warn!(consumer = %who, cursor = c, "inbox cannot persist its cursor; more redeliveries after a restart");
    }
}

/// What takes a consumer's batches.
pub(crate) trait Sink: Send {
    /// Verifies and stores `msgs`, acks what is settled and returns the
    /// stream sequences settled (now, or earlier messages released by
    /// these). `cursor`, if set, is the consumer's cursor as of the previous
    /// batch, to be written with this one's flush.
    fn batch(&mut self, msgs: Vec<Message>, cursor: Option<u64>) -> impl Future<Output = Result<Vec<u64>>> + Send;
    /// Stream sequences settled later by work the sink runs on its own
    /// (a province's tenants storing their share side by side); never
    /// resolves for a sink that settles everything in `batch`.
    fn later(&mut self) -> impl Future<Output = Vec<u64>> + Send {
        std::future::pending()
    }
}

/// One durable consumer: its stream, name and filter.
pub(crate) struct ConsumerSpec {
    /// The province whose stream it reads.
    pub province: u8,
    /// Its durable name.
    pub name: String,
    /// Its filter subject.
    pub filter: String,
    /// Messages delivered and not yet acknowledged before the server waits:
    /// what one consumer may hold in memory (with events held beyond gaps).
    pub max_ack_pending: i64,
    /// Told when the consumer has more messages waiting (repairs wait for them).
    pub backlog: Arc<crate::repair::Backlog>,
    /// Its replicas (0: the stream's).
    pub replicas: usize,
}

/// Why [`consume`] returned.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// `stop` fired.
    Stopped,
    /// Asked to end once drained: nothing pending and everything settled.
    Drained,
}

/// Runs a node's own consumer until `stop`, reconnecting after failures.
pub(crate) async fn run<B: Backend>(
    log: Arc<Log<B>>,
    js: jetstream::Context,
    cfg: SyncConfig,
    metrics: Arc<SyncMetrics>,
    repair: Arc<RepairState>,
    mut stop: watch::Receiver<bool>,
) {
    let mut recipient = Recipient::new(log, metrics, repair, js.client());
    own_until(&js, &cfg, &mut recipient, &mut stop, false).await;
}

/// Runs a locality's own consumer until `stop` (None) or, with
/// `until_drained`, until it is drained, retrying failures with backoff.
pub(crate) async fn own_until<B: Backend>(
    js: &jetstream::Context,
    cfg: &SyncConfig,
    recipient: &mut Recipient<B>,
    stop: &mut watch::Receiver<bool>,
    until_drained: bool,
) -> Option<Ended> {
    let mut backoff = Backoff::default();
    loop {
        match own(js, cfg, recipient, stop, until_drained).await {
            Ok(Ended::Stopped) => return None,
            Ok(ended) => return Some(ended),
            Err(e) => {
                if backoff.failed(&e, stop).await {
                    return None;
                }
            }
        }
    }
}

/// Waits between a consumer's failed attempts: 100 ms doubling to 5 s.
pub(crate) struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(Duration::from_millis(100))
    }
}

impl Backoff {
    /// Logs the failure and waits; true if `stop` fired meanwhile.
    pub(crate) async fn failed(&mut self, e: &Error, stop: &mut watch::Receiver<bool>) -> bool {
        tracing::warn!(error = %e, "inbox consumer failed; restarting");
        let stopped = crate::sleep_or_stop(self.0, stop).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
        stopped
    }
}

/// One run of a locality's own consumer `node-<code>`.
async fn own<B: Backend>(
    js: &jetstream::Context,
    cfg: &SyncConfig,
    recipient: &mut Recipient<B>,
    stop: &mut watch::Receiver<bool>,
    until_drained: bool,
) -> Result<Ended> {
    let me = recipient.log.locality();
    let spec = ConsumerSpec {
        province: me.province(),
        name: subjects::consumer(me),
        filter: subjects::inbox_filter(me),
        max_ack_pending: 50_000,
        backlog: recipient.repair.backlog.clone(),
        // Catching up before a province's consumer covers it: a consumer for a
        // moment, not worth a Raft group of its own (thousands at a host's first start).
        replicas: if until_drained { 1 } else { cfg.consumer_replicas },
    };
    let store: Arc<dyn CursorStore> = recipient.log.clone();
    let metrics = recipient.metrics.clone();
    consume(js, cfg, &spec, &store, &metrics, stop, recipient, until_drained).await
}

/// Drives one consumer: opens it from its cursor, hands its batches to
/// `sink`, advances and writes the cursor. Returns when `stop` fires, or —
/// with `until_drained` — once the consumer has nothing pending and every
/// message it delivered is settled.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn consume<S: Sink>(
    js: &jetstream::Context,
    cfg: &SyncConfig,
    spec: &ConsumerSpec,
    store: &Arc<dyn CursorStore>,
    metrics: &SyncMetrics,
    stop: &mut watch::Receiver<bool>,
    sink: &mut S,
    until_drained: bool,
) -> Result<Ended> {
    let stream = outbox::ensure_stream(js, spec.province, cfg).await?;
    let stored_cursor = {
        let s = store.clone();
        blocking("cursor", move || s.get()).await?
    };
    let (consumer, cursor) = open_consumer(&stream, spec, cfg, metrics, store, stored_cursor).await?;
    let name = &spec.name;
    // Messages in memory per consumer are bounded by `fetch_batch`: up to two
    // batches pulled ahead and two queued. A host of per-locality consumers
    // runs thousands, so what one holds ahead is multiplied by thousands
    // (before: up to 12 × 512 per tenant, ~9 GB at ~1.5 KB a message for
    // 2,854 tenants with a backlog), and every delivered, unacknowledged
    // message is also state the server keeps per consumer.
    let mut messages =
        consumer.stream().max_messages_per_batch(cfg.fetch_batch * 2).messages().await.map_err(Error::nats)?;
    // A receiver task queues messages while the previous batch is being
    // verified and flushed, so batches grow with the load (group commit on
    // the receiving side) instead of one flush per message.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Message>>(cfg.fetch_batch * 2);
    let receiver = tokio::spawn(async move {
        while let Some(m) = messages.next().await {
            if tx.send(m.map_err(Error::nats)).await.is_err() {
                return;
            }
        }
        let _ = tx.send(Err(Error::Nats("consumer stream ended".into()))).await;
    });
    let _abort = AbortOnDrop(receiver);
    let mut settling = Settling::new(cursor);
    tracing::info!(consumer = %name, cursor, "inbox consuming");
    loop {
        let first = tokio::select! {
            _ = stop.changed() => {
                persist_cursor(store, &mut settling, name).await;
                return Ok(Ended::Stopped);
            }
            m = rx.recv() => m,
            done = sink.later() => {
                for seq in done {
                    settling.settled_seq(seq);
                }
                continue;
            }
            // Idle with a cursor that moved since it was written: write it now
            // (otherwise it would wait for the next batch). Catching up: see
            // whether everything is read.
            _ = tokio::time::sleep(CURSOR_IDLE), if settling.moved() || until_drained => {
                persist_cursor(store, &mut settling, name).await;
                if until_drained && settling.open.is_empty() {
                    let info = consumer.get_info().await.map_err(Error::nats)?;
                    if info.num_pending == 0 && info.num_ack_pending == 0 {
                        return Ok(Ended::Drained);
                    }
                }
                continue;
            }
        };
        let Some(first) = first else { return Err(Error::Nats("consumer stream ended".into())) };
        let mut msgs = vec![first?];
        while msgs.len() < cfg.fetch_batch {
            match rx.try_recv() {
                Ok(m) => msgs.push(m?),
                Err(_) => break,
            }
        }
        for m in &msgs {
            let Ok(info) = m.info() else { continue };
            // A first delivery at or below the cursor: the consumer started
            // again from an earlier position (its server lost its state).
            if info.delivered == 1 && info.stream_sequence <= settling.written {
                return Err(Error::Nats(format!(
                    "consumer {name} delivered stream sequence {} again below the cursor {}; re-creating it",
                    info.stream_sequence, settling.written
                )));
            }
            settling.delivered(info.stream_sequence);
        }
        if msgs.last().and_then(|m| m.info().ok()).is_some_and(|i| i.pending > 0) {
            spec.backlog.mark();
        }
        SyncMetrics::add(&metrics.inbox_batches, 1);
        // The cursor as of the previous batch is written with this one (durable with its flush).
        let cursor = settling.advance();
        for seq in sink.batch(msgs, cursor).await? {
            settling.settled_seq(seq);
        }
    }
}

/// Opens a consumer, deciding where it starts:
/// - none on the server (first start, a wiped JetStream store — which takes the
///   consumers with the streams — or a single server restarted with memory
///   state): created from the start of the stream, and the cursor starts
///   again from 0, since it may count sequences of a stream that is gone;
/// - one whose ack floor is behind the cursor (its server lost its state: a
///   clustered consumer outlives its state in the meta layer; or acks never
///   reached it), or kept in another storage than configured: deleted and
///   created again to start at cursor + 1 (from the start with no cursor yet);
/// - otherwise: used as it is.
///
/// Returns the consumer and the cursor to count from.
async fn open_consumer(
    stream: &jetstream::stream::Stream<()>,
    spec: &ConsumerSpec,
    cfg: &SyncConfig,
    metrics: &SyncMetrics,
    store: &Arc<dyn CursorStore>,
    cursor: u64,
) -> Result<(jetstream::consumer::PullConsumer, u64)> {
    let name = spec.name.as_str();
    let config = |cursor: u64| pull::Config {
        durable_name: Some(name.to_string()),
        filter_subject: spec.filter.clone(),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(30),
        max_ack_pending: spec.max_ack_pending,
        num_replicas: spec.replicas,
        memory_storage: cfg.consumer_state == ConsumerState::Memory,
        deliver_policy: match cursor {
            0 => jetstream::consumer::DeliverPolicy::All,
            c => jetstream::consumer::DeliverPolicy::ByStartSequence { start_sequence: c + 1 },
        },
        ..Default::default()
    };
    let info = match stream.consumer_info(name).await {
        Ok(info) => info,
        Err(e) if e.kind() == jetstream::context::ConsumerInfoErrorKind::NotFound => {
            if cursor > 0 {
                tracing::info!(consumer = %name, cursor, "inbox consumer missing; created from the start of the stream");
                let s = store.clone();
                blocking("cursor", move || s.put(0)).await?;
            }
            let consumer = stream.create_consumer(config(0)).await.map_err(Error::nats)?;
            return Ok((consumer, 0));
        }
        Err(e) => return Err(Error::nats(e)),
    };
    let memory = cfg.consumer_state == ConsumerState::Memory;
    let floor = info.ack_floor.stream_sequence;
    if floor < cursor || info.config.memory_storage != memory {
        tracing::info!(consumer = %name, floor, cursor, "inbox consumer re-created from the cursor");
        SyncMetrics::add(&metrics.consumers_recreated, 1);
        stream.delete_consumer(name).await.map_err(Error::nats)?;
        let consumer = stream.create_consumer(config(cursor)).await.map_err(Error::nats)?;
        return Ok((consumer, cursor));
    }
    let consumer = stream.get_consumer(name).await.map_err(Error::nats)?;
    Ok((consumer, cursor))
}

/// Aborts the receiver task when the consumer loop ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One locality receiving: its log, counters, repair wants and the events it
/// holds beyond gaps. A node's consumer feeds one; a province's feeds one per tenant.
pub(crate) struct Recipient<B: Backend> {
    pub(crate) log: Arc<Log<B>>,
    pub(crate) metrics: Arc<SyncMetrics>,
    repair: Arc<RepairState>,
    /// Its own NATS connection: sealed tiers are opened with the data keys
    /// its own credentials may read.
    client: async_nats::Client,
    held: Held,
}

impl<B: Backend> Sink for Recipient<B> {
    async fn batch(&mut self, msgs: Vec<Message>, cursor: Option<u64>) -> Result<Vec<u64>> {
        self.process(msgs, cursor).await
    }
}

impl<B: Backend> Recipient<B> {
    pub(crate) fn new(
        log: Arc<Log<B>>,
        metrics: Arc<SyncMetrics>,
        repair: Arc<RepairState>,
        client: async_nats::Client,
    ) -> Self {
        Recipient { log, metrics, repair, client, held: HashMap::new() }
    }

    /// Verifies and stores a batch addressed to this locality, acks what is
    /// durable, holds gaps; `cursor` (this locality's own) is written with
    /// the batch. Returns the stream sequences settled.
    pub(crate) async fn process(&mut self, msgs: Vec<Message>, cursor: Option<u64>) -> Result<Vec<u64>> {
        let mut settled = Vec::with_capacity(msgs.len());
        // Sealed tiers opened with their authors' data keys (dropped where erased).
        let mut keys = HashMap::new();
        let me = self.log.locality();
        let raw: Vec<Bytes> = msgs.iter().map(|m| m.payload.clone()).collect();
        crate::seal::prefetch(&self.client, me, &raw, &mut keys).await?;
        let mut payloads = Vec::with_capacity(msgs.len());
        for m in &msgs {
            payloads.push(crate::seal::open(&self.client, me, m.payload.clone(), &mut keys).await?);
        }
        let outcomes = ingest_with(&self.log, payloads.clone(), cursor).await?;
        for ((msg, outcome), payload) in msgs.into_iter().zip(outcomes).zip(payloads) {
            match outcome {
                Ingested::Gap { author, got, .. } => {
                    SyncMetrics::add(&self.metrics.gaps, 1);
                    self.repair.want(author.as_u32(), got.saturating_sub(1));
                    self.held.entry(author.as_u32()).or_default().insert(got, (payload, msg));
                }
                other => settled.extend(settle(&self.log, &self.metrics, msg, other).await?),
            }
        }
        self.release_held(&mut settled).await?;
        Ok(settled)
    }

    /// Whether its own NATS connection is up (sealed tiers are opened through it).
    pub(crate) fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Acknowledges, unread, every event it holds beyond a gap (it lost the
    /// coverage of its province's consumer and reads them again through its
    /// own); returns their stream sequences.
    pub(crate) async fn pass_by_held(&mut self) -> Result<Vec<u64>> {
        let mut done = Vec::new();
        for (_, queue) in std::mem::take(&mut self.held) {
            for (_, (_, msg)) in queue {
                msg.ack().await.map_err(Error::nats)?;
                done.extend(sequence(&msg));
            }
        }
        Ok(done)
    }

    /// Stores held events whose predecessors have arrived, and acks them.
    async fn release_held(&mut self, settled: &mut Vec<u64>) -> Result<()> {
        let (log, metrics, held) = (&self.log, &self.metrics, &mut self.held);
        let me = log.locality();
        let authors: Vec<u32> = held.keys().copied().collect();
        for author in authors {
            let Ok(a) = Locality::from_u32(author) else { continue };
            loop {
                let head = log.channel_head(a, me)?;
                let Some(queue) = held.get_mut(&author) else { break };
                // Anything at or below the head arrived another way: ack it as a duplicate.
                while let Some(entry) = queue.first_entry() {
                    if *entry.key() > head {
                        break;
                    }
                    let (_, (_, msg)) = entry.remove_entry();
                    SyncMetrics::add(&metrics.duplicates, 1);
                    msg.ack().await.map_err(Error::nats)?;
                    settled.extend(sequence(&msg));
                }
                let mut run: Vec<(Bytes, Message)> = Vec::new();
                let mut next = head + 1;
                while let Some(item) = queue.remove(&next) {
                    run.push(item);
                    next += 1;
                }
                if queue.is_empty() {
                    held.remove(&author);
                }
                if run.is_empty() {
                    break;
                }
                let outcomes = ingest(log, run.iter().map(|(b, _)| b.clone()).collect()).await?;
                let mut pending = false;
                for ((bytes, msg), outcome) in run.into_iter().zip(outcomes) {
                    match outcome {
                        // Behind one that was not stored: held again, not acked.
                        Ingested::Gap { got, .. } => {
                            held.entry(author).or_default().insert(got, (bytes, msg));
                        }
                        other => {
                            pending |= matches!(other, Ingested::Pending { .. });
                            settled.extend(settle(log, metrics, msg, other).await?);
                        }
                    }
                }
                if pending {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// The stream sequence of a delivered message.
fn sequence(msg: &Message) -> Option<u64> {
    msg.info().ok().map(|i| i.stream_sequence)
}

/// How long an event whose author's key is not known yet waits before redelivery.
pub const PENDING_DELAY: Duration = Duration::from_secs(5);
/// Deliveries after which such an event is quarantined (about 5 minutes).
pub const PENDING_DELIVERIES: i64 = 60;

/// Acks a processed message (returning its stream sequence: settled), or
/// asks for a later redelivery of one whose author's key has not arrived
/// (not settled); after [`PENDING_DELIVERIES`] it is set aside in quarantine
/// (its channel is then repaired from the author once the key is known).
async fn settle<B: Backend>(
    log: &Arc<Log<B>>,
    metrics: &SyncMetrics,
    msg: Message,
    outcome: Ingested,
) -> Result<Option<u64>> {
    if let Ingested::Pending { author, reason } = &outcome {
        // Waiting is for the author's own messages only: one that claims another
        // author than its subject names is set aside at once (no redelivery to abuse).
        if subjects::last_token(&msg.subject) != author.to_string() {
            let l = log.clone();
            let (payload, who) = (msg.payload.clone(), author.to_string());
            let reason =
                format!("claims author {author} but came on the subject of {}", subjects::last_token(&msg.subject));
            blocking("quarantine", move || Ok(l.set_aside(&payload, Some(who), yipan_log::Code::Author, reason)?))
                .await?;
            SyncMetrics::add(&metrics.quarantined, 1);
            msg.ack().await.map_err(Error::nats)?;
            return Ok(sequence(&msg));
        }
        let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
        if delivered < PENDING_DELIVERIES {
            SyncMetrics::add(&metrics.pending, 1);
            tracing::debug!(%author, %reason, delivered, "event waits for its author's key");
            msg.ack_with(jetstream::AckKind::Nak(Some(PENDING_DELAY))).await.map_err(Error::nats)?;
            return Ok(None);
        }
        let reason = format!("key.unknown: {reason} (after {delivered} deliveries)");
        let l = log.clone();
        let (payload, who) = (msg.payload.clone(), author.to_string());
        let code = yipan_log::Code::Trust("key.unknown");
        blocking("quarantine", move || Ok(l.set_aside(&payload, Some(who), code, reason)?)).await?;
        SyncMetrics::add(&metrics.quarantined, 1);
        msg.ack().await.map_err(Error::nats)?;
        return Ok(sequence(&msg));
    }
    account(metrics, &outcome);
    msg.ack().await.map_err(Error::nats)?;
    Ok(sequence(&msg))
}

/// Counts an outcome and records the lag of stored events.
fn account(metrics: &SyncMetrics, outcome: &Ingested) {
    match outcome {
        Ingested::Stored { recorded_at_us, .. } => {
            SyncMetrics::add(&metrics.stored, 1);
            let now_us =
                SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0);
            if *recorded_at_us > 0 && now_us >= *recorded_at_us {
                metrics.record_lag(Duration::from_micros((now_us - recorded_at_us) as u64));
            }
        }
        Ingested::Duplicate { .. } => SyncMetrics::add(&metrics.duplicates, 1),
        Ingested::Quarantined { code, reason } => {
            SyncMetrics::add(&metrics.quarantined, 1);
            if code.is_fork() {
                SyncMetrics::add(&metrics.forks, 1);
                tracing::error!(alert = "fork", %code, %reason, "two different events claim one channel position");
            }
        }
        Ingested::Gap { .. } => SyncMetrics::add(&metrics.gaps, 1),
        Ingested::Pending { .. } => SyncMetrics::add(&metrics.pending, 1),
    }
}

/// Runs `ingest_batch` on the blocking pool (it flushes and uses all cores).
pub(crate) async fn ingest<B: Backend>(log: &Arc<Log<B>>, payloads: Vec<Bytes>) -> Result<Vec<Ingested>> {
    ingest_with(log, payloads, None).await
}

/// [`ingest`], writing the inbox cursor first so that the batch's flush makes it durable.
async fn ingest_with<B: Backend>(
    log: &Arc<Log<B>>,
    payloads: Vec<Bytes>,
    cursor: Option<u64>,
) -> Result<Vec<Ingested>> {
    let log = log.clone();
    blocking("ingest", move || {
        if let Some(c) = cursor {
            log.put_lazy(c)?;
        }
        let refs: Vec<&[u8]> = payloads.iter().map(|b| b.as_ref()).collect();
        Ok(log.ingest_batch(&refs)?)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::Settling;

    #[test]
    fn the_cursor_stays_below_every_unsettled_message_and_never_goes_back() {
        let mut s = Settling::new(10);
        assert_eq!(s.advance(), None, "nothing delivered: the cursor read at start");
        for seq in [12, 15, 17] {
            s.delivered(seq);
        }
        assert_eq!(s.current(), 11, "12 is open");
        s.settled_seq(12);
        s.settled_seq(17);
        assert_eq!(s.advance(), Some(14), "15 is still open (held beyond a gap, or waiting for a key)");
        assert!(!s.moved());
        s.settled_seq(15);
        assert!(s.moved());
        assert_eq!(s.advance(), Some(17));
        // A redelivery of one settled before (its ack was lost) does not take it back.
        s.delivered(13);
        assert_eq!(s.current(), 17);
        s.settled_seq(13);
        assert_eq!(s.advance(), None);
    }
}
