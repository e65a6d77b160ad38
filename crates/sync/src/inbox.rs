//! The inbox: one durable pull consumer per node, filtered to its own address.
//! Messages are verified and stored in batches (one flush per batch) and
//! acknowledged only after their event is durably in the log — or durably in
//! quarantine. An event beyond a gap is held, unacknowledged, until the
//! missing positions arrive (from the stream or re-sent by the author); if the
//! node stops meanwhile, JetStream redelivers it.

use std::collections::{BTreeMap, HashMap};
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
use crate::{outbox, subjects, Error, Result, SyncConfig};

/// Events held beyond a gap: author → channel position → (bytes, message to ack).
type Held = HashMap<u32, BTreeMap<u64, (Bytes, Message)>>;

/// Runs the consumer until `stop`, reconnecting after failures.
pub(crate) async fn run<B: Backend>(
    log: Arc<Log<B>>,
    js: jetstream::Context,
    cfg: SyncConfig,
    metrics: Arc<SyncMetrics>,
    repair: Arc<RepairState>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match consume(&log, &js, &cfg, &metrics, &repair, &mut stop).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(locality = %log.locality(), error = %e, "inbox consumer failed; restarting");
                if crate::sleep_or_stop(backoff, &mut stop).await {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn consume<B: Backend>(
    log: &Arc<Log<B>>,
    js: &jetstream::Context,
    cfg: &SyncConfig,
    metrics: &Arc<SyncMetrics>,
    repair: &Arc<RepairState>,
    stop: &mut watch::Receiver<bool>,
) -> Result<()> {
    let me = log.locality();
    let stream = outbox::ensure_stream(js, me.province(), cfg).await?;
    let name = subjects::consumer(me);
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            &name,
            pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: subjects::inbox_filter(me),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                max_ack_pending: 50_000,
                num_replicas: cfg.consumer_replicas,
                ..Default::default()
            },
        )
        .await
        .map_err(Error::nats)?;
    // Messages in memory per consumer are bounded by `fetch_batch`: up to two
    // batches pulled ahead and two queued. A host runs thousands of consumers,
    // so what one holds ahead is multiplied by thousands (before: up to 12 ×
    // 512 per tenant, ~9 GB at ~1.5 KB a message for 2,854 tenants with a
    // backlog), and every delivered, unacknowledged message is also state the
    // server keeps per consumer.
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
    let mut held: Held = HashMap::new();
    tracing::info!(locality = %me, consumer = %name, "inbox consuming");
    loop {
        let first = tokio::select! {
            _ = stop.changed() => return Ok(()),
            m = rx.recv() => m,
        };
        let Some(first) = first else { return Err(Error::Nats("consumer stream ended".into())) };
        let mut msgs = vec![first?];
        while msgs.len() < cfg.fetch_batch {
            match rx.try_recv() {
                Ok(m) => msgs.push(m?),
                Err(_) => break,
            }
        }
        SyncMetrics::add(&metrics.inbox_batches, 1);
        process(log, metrics, repair, &mut held, msgs, &js.client()).await?;
    }
}

/// Aborts the receiver task when the consumer loop ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Verifies and stores a batch, acks what is durable, holds gaps.
async fn process<B: Backend>(
    log: &Arc<Log<B>>,
    metrics: &SyncMetrics,
    repair: &RepairState,
    held: &mut Held,
    msgs: Vec<Message>,
    client: &async_nats::Client,
) -> Result<()> {
    // Sealed tiers opened with their authors' data keys (dropped where erased).
    let mut keys = HashMap::new();
    let raw: Vec<Bytes> = msgs.iter().map(|m| m.payload.clone()).collect();
    crate::seal::prefetch(client, log.locality(), &raw, &mut keys).await?;
    let mut payloads = Vec::with_capacity(msgs.len());
    for m in &msgs {
        payloads.push(crate::seal::open(client, log.locality(), m.payload.clone(), &mut keys).await?);
    }
    let outcomes = ingest(log, payloads.clone()).await?;
    for ((msg, outcome), payload) in msgs.into_iter().zip(outcomes).zip(payloads) {
        match outcome {
            Ingested::Gap { author, got, .. } => {
                SyncMetrics::add(&metrics.gaps, 1);
                repair.want(author.as_u32(), got.saturating_sub(1));
                held.entry(author.as_u32()).or_default().insert(got, (payload, msg));
            }
            other => settle(log, metrics, msg, other).await?,
        }
    }
    release_held(log, metrics, held).await
}

/// Stores held events whose predecessors have arrived, and acks them.
async fn release_held<B: Backend>(log: &Arc<Log<B>>, metrics: &SyncMetrics, held: &mut Held) -> Result<()> {
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
                        settle(log, metrics, msg, other).await?;
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

/// How long an event whose author's key is not known yet waits before redelivery.
pub const PENDING_DELAY: Duration = Duration::from_secs(5);
/// Deliveries after which such an event is quarantined (about 5 minutes).
pub const PENDING_DELIVERIES: i64 = 60;

/// Acks a processed message, or asks for a later redelivery of one whose
/// author's key has not arrived; after [`PENDING_DELIVERIES`] it is set
/// aside in quarantine (its channel is then repaired from the author once
/// the key is known).
async fn settle<B: Backend>(log: &Arc<Log<B>>, metrics: &SyncMetrics, msg: Message, outcome: Ingested) -> Result<()> {
    if let Ingested::Pending { author, reason } = &outcome {
        // Waiting is for the author's own messages only: one that claims another
        // author than its subject names is set aside at once (no redelivery to abuse).
        if subjects::last_token(&msg.subject) != author.to_string() {
            let l = log.clone();
            let (payload, who) = (msg.payload.clone(), author.to_string());
            let reason =
                format!("claims author {author} but came on the subject of {}", subjects::last_token(&msg.subject));
            tokio::task::spawn_blocking(move || l.set_aside(&payload, Some(who), yipan_log::Code::Author, reason))
                .await
                .map_err(|e| Error::Nats(format!("quarantine task failed: {e}")))??;
            SyncMetrics::add(&metrics.quarantined, 1);
            return msg.ack().await.map_err(Error::nats);
        }
        let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
        if delivered < PENDING_DELIVERIES {
            SyncMetrics::add(&metrics.pending, 1);
            tracing::debug!(%author, %reason, delivered, "event waits for its author's key");
            return msg.ack_with(jetstream::AckKind::Nak(Some(PENDING_DELAY))).await.map_err(Error::nats);
        }
        let reason = format!("key.unknown: {reason} (after {delivered} deliveries)");
        let l = log.clone();
        let (payload, who) = (msg.payload.clone(), author.to_string());
        let code = yipan_log::Code::Trust("key.unknown");
        tokio::task::spawn_blocking(move || l.set_aside(&payload, Some(who), code, reason))
            .await
            .map_err(|e| Error::Nats(format!("quarantine task failed: {e}")))??;
        SyncMetrics::add(&metrics.quarantined, 1);
        return msg.ack().await.map_err(Error::nats);
    }
    account(metrics, &outcome);
    msg.ack().await.map_err(Error::nats)
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
    let log = log.clone();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&[u8]> = payloads.iter().map(|b| b.as_ref()).collect();
        log.ingest_batch(&refs)
    })
    .await
    .map_err(|e| Error::Nats(format!("ingest task failed: {e}")))?
    .map_err(Error::from)
}
