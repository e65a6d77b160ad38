//! Downstream feeds: every event this node stores, published for the
//! downstream systems configured (statistics, health, public security, …),
//! each receiving only the personal tiers its role allows, plus projection
//! change events (case overdue, early warning raised, scorecard updated).
//!
//! | what | subject |
//! | --- | --- |
//! | an event for a role | `yipan.v1.down.<province>.<locality>.<role>.<kind>` |
//! | a projection change | `yipan.v1.down.<province>.<locality>.views.<case_overdue\|early_warning\|scorecard>` |
//!
//! Streams `YIPAN_DOWN_<province>` keep them (file storage). Event payloads
//! are the role-filtered `SignedEvent` protobuf (header `Yipan-Encoding:
//! protobuf`, `Yipan-Type: yipan.v1.SignedEvent`), or its JSON form when the
//! role is configured with `encoding = "json"` (header `Yipan-Encoding:
//! json`). Filtered events still verify: only tier digests are signed.
//! Delivery resumes from per-author positions kept beside the log, so
//! nothing is skipped across restarts and NATS outages.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use tokio::sync::watch;
use yipan_core::audience::Audience;
use yipan_core::Locality;
use yipan_log::{Backend, Log, StoredEvent};
use yipan_proto::Message;

use crate::{Error, Result, SyncConfig};

/// One configured downstream role.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownstreamRole {
    /// The role.
    pub role: Audience,
    /// `protobuf` (default) or `json`.
    #[serde(default = "default_encoding")]
    pub encoding: String,
}

fn default_encoding() -> String {
    "protobuf".into()
}

/// Name of the positions record in the log's metadata.
pub const POSITIONS: &str = "downstream.positions";

/// Subject of an event for a role.
pub fn event_subject(me: Locality, role: Audience, kind: &str) -> String {
    format!("yipan.v1.down.{:02}.{me}.{role}.{kind}", me.province())
}

/// Subject of a projection change.
pub fn views_subject(me: Locality, what: &str) -> String {
    format!("yipan.v1.down.{:02}.{me}.views.{what}", me.province())
}

/// Creates (or finds) the downstream stream of a province.
pub async fn ensure_stream(js: &jetstream::Context, province: u8, cfg: &SyncConfig) -> Result<()> {
    let cfg = SyncConfig { stream_max_age_days: cfg.downstream_max_age_days.max(1), ..cfg.clone() };
    crate::ensure_stream(js, format!("YIPAN_DOWN_{province:02}"), format!("yipan.v1.down.{province:02}.>"), &cfg)
        .await
        .map(|_| ())
}

fn message(ev: &StoredEvent, role: &DownstreamRole) -> Option<(String, PublishMessage)> {
    let shown = ev.for_audience(role.role);
    let id = ev.id()?;
    let (payload, encoding) = if role.encoding == "json" {
        (shown.to_json(true).to_string().into_bytes(), "json")
    } else {
        (shown.signed.encode_to_vec(), "protobuf")
    };
    let msg = PublishMessage::build()
        .payload(payload.into())
        .message_id(format!("{id}.{}", role.role))
        .header("Yipan-Encoding", encoding)
        .header("Yipan-Type", "yipan.v1.SignedEvent");
    Some((ev.kind()?.snake().to_string(), msg))
}

/// Publishes every stored event to every configured role until `stop`.
pub(crate) async fn run<B: Backend>(
    log: Arc<Log<B>>,
    js: jetstream::Context,
    cfg: SyncConfig,
    roles: Vec<DownstreamRole>,
    mut stop: watch::Receiver<bool>,
) {
    if roles.is_empty() {
        // Nothing to publish; idle until stop (returning early would read as a crash to `supervise`).
        let _ = stop.wait_for(|s| *s).await;
        return;
    }
    let me = log.locality();
    let mut positions: BTreeMap<String, u64> =
        log.meta_get(POSITIONS).ok().flatten().and_then(|v| serde_json::from_slice(&v).ok()).unwrap_or_default();
    let mut feed = log.subscribe_events();
    let mut backoff = Duration::from_millis(200);
    loop {
        if *stop.borrow() {
            return;
        }
        // Catch up from the positions (also after a feed overflow or a NATS failure).
        let reader = log.clone();
        let since = positions.clone();
        let backlog = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let r = reader.for_each_raw(None, usize::MAX, |a, seq, bytes| {
                if seq > since.get(&a.to_string()).copied().unwrap_or(0) {
                    if let Ok(ev) = StoredEvent::decode(bytes) {
                        out.push(ev);
                    }
                }
            });
            r.map(|_| out)
        })
        .await;
        let Ok(Ok(backlog)) = backlog else { return };
        let result = async {
            ensure_stream(&js, me.province(), &cfg).await?;
            for chunk in backlog.chunks(1024) {
                publish_all(&js, me, &roles, chunk.iter()).await?;
                disclose(&log, &roles, chunk).await?;
                for ev in chunk {
                    positions.insert(ev.envelope.author.clone(), ev.seq());
                }
                save(&log, &positions).await;
            }
            loop {
                let first = tokio::select! {
                    _ = stop.changed() => return Ok::<bool, Error>(true),
                    got = feed.recv() => got,
                };
                // Take whatever else is already queued: one round of acks and
                // one positions write per batch, not per event.
                let mut batch = vec![first];
                while batch.len() < 1024 {
                    match feed.try_recv() {
                        Ok(env) => batch.push(Ok(env)),
                        Err(_) => break,
                    }
                }
                let mut wanted = Vec::with_capacity(batch.len());
                for got in batch {
                    let Ok(env) = got else { return Ok(false) };
                    let Ok(a) = Locality::parse(&env.author) else { continue };
                    if env.author_seq <= positions.get(&env.author).copied().unwrap_or(0) {
                        continue;
                    }
                    wanted.push((a, env.author_seq));
                }
                // Storage reads off the async runtime.
                let reader = log.clone();
                let events = tokio::task::spawn_blocking(move || -> Result<Vec<StoredEvent>> {
                    let mut out = Vec::with_capacity(wanted.len());
                    for (a, seq) in wanted {
                        if let Some(ev) = reader.event_at(a, seq)? {
                            out.push(ev);
                        }
                    }
                    Ok(out)
                })
                .await
                .map_err(|e| Error::Nats(format!("read task failed: {e}")))??;
                if !events.is_empty() {
                    // Positions advance only once the whole batch is acknowledged,
                    // so a failed round is retried from where it started.
                    publish_all(&js, me, &roles, events.iter()).await?;
                    disclose(&log, &roles, &events).await?;
                    for ev in &events {
                        positions.insert(ev.envelope.author.clone(), ev.seq());
                    }
                    save(&log, &positions).await;
                }
            }
        }
        .await;
        match result {
            Ok(true) => return,
            Ok(false) => feed = feed.resubscribe(),
            Err(e) => {
                tracing::warn!(locality = %me, error = %e, "downstream publish failed; resuming from positions");
                if crate::sleep_or_stop(backoff, &mut stop).await {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Publishes events to every role, then waits for all acknowledgements.
async fn publish_all<'a>(
    js: &jetstream::Context,
    me: Locality,
    roles: &[DownstreamRole],
    events: impl Iterator<Item = &'a StoredEvent>,
) -> Result<()> {
    let mut acks = Vec::new();
    for ev in events {
        for role in roles {
            if let Some((kind, msg)) = message(ev, role) {
                acks.push(js.send_publish(event_subject(me, role.role, &kind), msg).await.map_err(Error::nats)?);
            }
        }
    }
    for ack in acks {
        ack.await.map_err(Error::nats)?;
    }
    Ok(())
}

/// Records in the disclosure log what each role received of personal tiers
/// (after the acknowledgements: a retried round is recorded again, never
/// lost). A failed record fails the round, which is retried from the positions.
async fn disclose<B: Backend>(log: &Arc<Log<B>>, roles: &[DownstreamRole], events: &[StoredEvent]) -> Result<()> {
    let released: Vec<yipan_log::disclosure::Disclosure> = events
        .iter()
        .flat_map(|ev| {
            roles.iter().filter_map(move |r| {
                let basis = format!("downstream role `{}` configured for this node ([[sync.downstream]])", r.role);
                yipan_log::disclosure::Disclosure::of(
                    &ev.for_audience(r.role),
                    "downstream",
                    &format!("downstream:{}", r.role),
                    &r.role.to_string(),
                    false,
                    &basis,
                )
            })
        })
        .collect();
    if released.is_empty() {
        return Ok(());
    }
    let log = log.clone();
    match tokio::task::spawn_blocking(move || log.disclose(&released)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(Error::Nats("cannot record disclosures of the downstream feed; the round is retried".into())),
    }
}

async fn save<B: Backend>(log: &Arc<Log<B>>, positions: &BTreeMap<String, u64>) {
    let (log, bytes) = (log.clone(), serde_json::to_vec(positions).unwrap_or_default());
    let _ = tokio::task::spawn_blocking(move || log.meta_put(POSITIONS, &bytes)).await;
}
