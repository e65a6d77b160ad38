//! The outbox: the node's own log *is* the outbox. A cursor (the highest own
//! sequence whose messages JetStream has acknowledged) is kept durably beside
//! the log; the publisher reads on from it, publishes each event once per
//! recipient with a `Nats-Msg-Id` of `<event id>.<recipient>` (so re-sends
//! inside the stream's duplicate window are dropped by the server), keeps a
//! bounded window of acknowledgements in flight (on a host, also within the
//! host's [`crate::budget::PublishBudget`]), and advances the cursor only
//! when a whole chunk is acknowledged. Appends never wait for any of this.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use bytes::Bytes;
use tokio::sync::watch;
use yipan_core::Locality;
use yipan_log::{Backend, Log, StoredEvent};
use yipan_proto::Message;

use crate::budget::{PublishBudget, Window};
use crate::metrics::SyncMetrics;
use crate::{subjects, Error, Result, SyncConfig};

/// Name of the cursor in the log's metadata.
pub const CURSOR: &str = "outbox.cursor";

/// Creates (or finds) the event stream of a province.
pub async fn ensure_stream(
    js: &jetstream::Context,
    province: u8,
    cfg: &SyncConfig,
) -> Result<jetstream::stream::Stream<()>> {
    crate::ensure_stream(js, subjects::stream(province), subjects::stream_subjects(province), cfg).await
}

/// Name of the dead-letter list in the log's metadata.
pub const DEAD_LETTERS: &str = "outbox.dead_letters";
/// Most dead letters kept (the oldest are dropped, the count keeps going).
const MAX_DEAD_LETTERS: usize = 1000;

/// A message the outbox could not publish and set aside, so that it does not
/// block the messages behind it (to this and every other recipient).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeadLetter {
    /// The event's author sequence.
    pub seq: u64,
    /// Its id.
    pub id: String,
    /// The recipient it could not be sent to.
    pub recipient: String,
    /// Encoded size, bytes.
    pub size: usize,
    /// Why.
    pub reason: String,
    /// When it was set aside (RFC 3339).
    pub at: String,
}

/// The dead letters recorded in `log`.
pub fn dead_letters<B: Backend>(log: &Log<B>) -> Result<Vec<DeadLetter>> {
    Ok(log.meta_get(DEAD_LETTERS)?.and_then(|v| serde_json::from_slice(&v).ok()).unwrap_or_default())
}

/// Records `letters` (keeping the newest [`MAX_DEAD_LETTERS`]).
pub fn record_dead_letters<B: Backend>(log: &Log<B>, letters: &[DeadLetter]) -> Result<()> {
    let mut all = dead_letters(log)?;
    all.extend_from_slice(letters);
    let excess = all.len().saturating_sub(MAX_DEAD_LETTERS);
    all.drain(..excess);
    log.meta_put(DEAD_LETTERS, &serde_json::to_vec(&all).unwrap_or_default())?;
    Ok(())
}

/// Publishes one event to each of its recipients; returns the ack futures
/// and the recipients it could never be published to (too large for the
/// server's `max_payload`: a permanent failure, set aside, never retried in a loop).
/// Tier payloads are sealed with the person's data keys from `keys`
/// ([`crate::seal`]); an event with tiers and no keys is an error, never
/// published in the clear.
pub(crate) async fn publish_event(
    js: &jetstream::Context,
    ev: &StoredEvent,
    msg_id_suffix: &str,
    only: Option<Locality>,
    keys: &std::collections::HashMap<yipan_core::PersonKey, yipan_log::erase::DataKeys>,
) -> Result<(Vec<PublishAckFuture>, Vec<DeadLetter>)> {
    let Some(author) = ev.author() else { return Ok((Vec::new(), Vec::new())) };
    let id = ev.id().map(|u| u.to_string()).unwrap_or_default();
    let payload = if ev.signed.tiers.is_empty() {
        Bytes::from(ev.signed.encode_to_vec())
    } else {
        let person = yipan_core::PersonKey::parse(&ev.envelope.person_key)
            .map_err(|_| Error::Nats(format!("{author}#{} has tiers but no person key", ev.seq())))?;
        let k = keys.get(&person).ok_or_else(|| Error::Nats(format!("no data keys to seal {author}#{}", ev.seq())))?;
        Bytes::from(crate::seal::seal(ev, k)?.encode_to_vec())
    };
    let mut acks = Vec::with_capacity(ev.envelope.recipients.len());
    let mut dead = Vec::new();
    for r in &ev.envelope.recipients {
        let Ok(recipient) = Locality::parse(&r.locality) else { continue };
        if only.is_some_and(|o| o != recipient) {
            continue;
        }
        let msg =
            PublishMessage::build().payload(payload.clone()).message_id(format!("{id}.{recipient}{msg_id_suffix}"));
        match js.send_publish(subjects::event(recipient, author), msg).await {
            Ok(ack) => acks.push(ack),
            Err(e) if e.kind() == jetstream::context::PublishErrorKind::MaxPayloadExceeded => dead.push(DeadLetter {
                seq: ev.seq(),
                id: id.clone(),
                recipient: recipient.to_string(),
                size: payload.len(),
                reason: e.to_string(),
                at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            }),
            Err(e) => return Err(Error::nats(e)),
        }
    }
    Ok((acks, dead))
}

/// Runs the publisher until `stop`.
pub(crate) async fn run<B: Backend>(
    log: Arc<Log<B>>,
    js: jetstream::Context,
    cfg: SyncConfig,
    metrics: Arc<SyncMetrics>,
    published: Arc<AtomicU64>,
    budget: Option<Arc<PublishBudget>>,
    mut stop: watch::Receiver<bool>,
) {
    let me = log.locality();
    let mut cursor = match log.meta_get(CURSOR) {
        Ok(Some(v)) if v.len() == 8 => u64::from_be_bytes(v.try_into().unwrap_or_default()),
        _ => 0,
    };
    published.store(cursor, Ordering::Relaxed);
    let mut head_rx = log.subscribe_head();
    let mut ensured: HashSet<u8> = HashSet::new();
    let mut backoff = Duration::from_millis(100);
    loop {
        if *stop.borrow() {
            return;
        }
        // Key messages made stale by erasures first (their tombstones), also when
        // idle; an erasure while a chunk is sealed makes it read again.
        if let Err(e) = crate::seal::publish_stale(&log, &js, budget.as_ref()).await {
            SyncMetrics::add(&metrics.publish_errors, 1);
            tracing::warn!(locality = %me, error = %e, "cannot publish updated data keys; will retry");
            if crate::sleep_or_stop(backoff, &mut stop).await {
                return;
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
            continue;
        }
        let head = *head_rx.borrow_and_update();
        metrics.outbox_pending.store(head.saturating_sub(cursor), Ordering::Relaxed);
        if cursor >= head {
            tokio::select! {
                _ = head_rx.changed() => {}
                _ = stop.changed() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        }
        let epoch = log.erasure_count();
        let reader = log.clone();
        let (from, chunk) = (cursor + 1, cfg.publish_chunk);
        let events = match tokio::task::spawn_blocking(move || reader.read_author(me, from, chunk)).await {
            Ok(Ok(e)) => e,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "outbox cannot read the own log");
                if crate::sleep_or_stop(Duration::from_secs(1), &mut stop).await {
                    return;
                }
                continue;
            }
            Err(_) => return,
        };
        let Some(last) = events.last().map(|e| e.seq()) else { continue };
        match publish_chunk(&log, &js, &cfg, &events, &mut ensured, epoch, budget.as_ref()).await {
            Ok(None) => continue,
            Ok(Some((n, dead))) => {
                if !dead.is_empty() {
                    SyncMetrics::add(&metrics.dead_letters, dead.len() as u64);
                    for d in &dead {
                        tracing::error!(
                            alert = "dead_letter",
                            seq = d.seq,
                            recipient = %d.recipient,
                            size = d.size,
                            reason = %d.reason,
                            "message set aside: it can never be published to this server; see `yipan dead-letters`"
                        );
                    }
                    let (store, letters) = (log.clone(), dead.clone());
                    let recorded = tokio::task::spawn_blocking(move || record_dead_letters(&store, &letters)).await;
                    if !matches!(recorded, Ok(Ok(()))) {
                        tracing::error!("cannot record dead letters");
                    }
                }
                // Every personal tier that reached a counterpart, in the disclosure log
                // (before the cursor: after a crash here they are recorded again, never lost).
                let released: Vec<yipan_log::disclosure::Disclosure> = events
                    .iter()
                    .flat_map(|ev| {
                        ev.envelope
                            .recipients
                            .iter()
                            .filter(|r| !dead.iter().any(|d| d.seq == ev.seq() && d.recipient == r.locality))
                            .filter_map(move |r| {
                                let basis = yipan_log::disclosure::replication_basis(ev, &r.locality);
                                yipan_log::disclosure::Disclosure::of(ev, "replication", &r.locality, "", false, basis)
                            })
                    })
                    .collect();
                if !released.is_empty() {
                    let store = log.clone();
                    let kept = tokio::task::spawn_blocking(move || store.disclose(&released)).await;
                    if !matches!(kept, Ok(Ok(()))) {
                        // The cursor stays: the chunk is published again (deduplicated by
                        // Nats-Msg-Id) and its releases recorded then.
                        tracing::error!("cannot record disclosures of published events; retrying the chunk");
                        if crate::sleep_or_stop(backoff, &mut stop).await {
                            return;
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                }
                cursor = last;
                SyncMetrics::add(&metrics.published, n);
                let store = log.clone();
                let persisted = tokio::task::spawn_blocking(move || store.meta_put(CURSOR, &last.to_be_bytes())).await;
                if !matches!(persisted, Ok(Ok(()))) {
                    tracing::error!(
                        "outbox cannot persist its cursor; it will re-publish (deduplicated) after a restart"
                    );
                }
                published.store(cursor, Ordering::Relaxed);
                backoff = Duration::from_millis(100);
                tracing::debug!(locality = %me, cursor, messages = n, "published");
            }
            Err(e) => {
                SyncMetrics::add(&metrics.publish_errors, 1);
                tracing::warn!(locality = %me, error = %e, retry_in_ms = backoff.as_millis() as u64, "outbox publish failed; will retry from the cursor");
                ensured.clear();
                if crate::sleep_or_stop(backoff, &mut stop).await {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Publishes a chunk with a bounded window of acknowledgements in flight.
/// `None`: an erasure happened after the chunk was read (read it again).
async fn publish_chunk<B: Backend>(
    log: &Arc<Log<B>>,
    js: &jetstream::Context,
    cfg: &SyncConfig,
    events: &[StoredEvent],
    ensured: &mut HashSet<u8>,
    epoch: u64,
    budget: Option<&Arc<PublishBudget>>,
) -> Result<Option<(u64, Vec<DeadLetter>)>> {
    for ev in events {
        for r in &ev.envelope.recipients {
            if let Ok(l) = Locality::parse(&r.locality) {
                if ensured.insert(l.province()) {
                    ensure_stream(js, l.province(), cfg).await?;
                    crate::seal::ensure_key_stream(js, l.province(), cfg).await?;
                }
            }
        }
    }
    let keys = crate::seal::prepare(log, js, events, budget).await?;
    if log.erasure_count() != epoch {
        return Ok(None);
    }
    let mut window = Window::new(budget.cloned(), cfg.publish_window);
    let mut dead_letters = Vec::new();
    for ev in events {
        let permit = window.room(ev.envelope.recipients.len()).await?;
        let (acks, dead) = publish_event(js, ev, "", None, &keys).await?;
        dead_letters.extend(dead);
        window.push(acks, permit);
    }
    let n = window.settle().await?;
    Ok(Some((n, dead_letters)))
}
