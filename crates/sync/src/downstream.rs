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
use yipan_core::audience::{filter_tiers, Audience};
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
    let name = format!("YIPAN_DOWN_{province:02}");
    let config = jetstream::stream::Config {
        name: name.clone(),
        subjects: vec![format!("yipan.v1.down.{province:02}.>")],
        storage: jetstream::stream::StorageType::File,
        max_age: Duration::from_secs(cfg.stream_max_age_days * 86_400),
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    };
    match js.get_or_create_stream(config).await {
        Ok(_) => Ok(()),
        Err(first) => js.get_stream(&name).await.map(|_| ()).map_err(|_| Error::nats(first)),
    }
}

fn message(ev: &StoredEvent, role: &DownstreamRole) -> Option<(String, PublishMessage)> {
    let mut signed = ev.signed.clone();
    filter_tiers(&mut signed, role.role);
    let id = ev.id()?;
    let (payload, encoding) = if role.encoding == "json" {
        let shown = StoredEvent { signed, envelope: ev.envelope.clone(), hash: ev.hash };
        (shown.to_json(true).to_string().into_bytes(), "json")
    } else {
        (signed.encode_to_vec(), "protobuf")
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
            for ev in &backlog {
                publish(&js, me, &roles, ev).await?;
                positions.insert(ev.envelope.author.clone(), ev.seq());
            }
            save(&log, &positions).await;
            loop {
                tokio::select! {
                    _ = stop.changed() => return Ok::<bool, Error>(true),
                    got = feed.recv() => match got {
                        Ok(env) => {
                            let Ok(a) = Locality::parse(&env.author) else { continue };
                            if env.author_seq <= positions.get(&env.author).copied().unwrap_or(0) {
                                continue;
                            }
                            if let Some(ev) = log.event_at(a, env.author_seq)? {
                                publish(&js, me, &roles, &ev).await?;
                                positions.insert(env.author.clone(), env.author_seq);
                                save(&log, &positions).await;
                            }
                        }
                        Err(_) => return Ok(false),
                    },
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

async fn publish(js: &jetstream::Context, me: Locality, roles: &[DownstreamRole], ev: &StoredEvent) -> Result<()> {
    for role in roles {
        if let Some((kind, msg)) = message(ev, role) {
            js.send_publish(event_subject(me, role.role, &kind), msg)
                .await
                .map_err(Error::nats)?
                .await
                .map_err(Error::nats)?;
        }
    }
    Ok(())
}

async fn save<B: Backend>(log: &Arc<Log<B>>, positions: &BTreeMap<String, u64>) {
    let (log, bytes) = (log.clone(), serde_json::to_vec(positions).unwrap_or_default());
    let _ = tokio::task::spawn_blocking(move || log.meta_put(POSITIONS, &bytes)).await;
}
