//! The node's projections, kept current as events land (own appends and
//! received events alike), and rebuilt from the log at start or whenever the
//! event feed overflows.

use std::path::Path;
use std::sync::{Arc, RwLock};

use crate::error::{Error, Result};
use tokio::sync::{broadcast::error::RecvError, watch};
use yipan_log::{Backend, Log};
use yipan_projections::{Projections, WorkCalendar};

/// Shared projections of one node.
pub type Views = Arc<RwLock<Projections>>;

/// Loads a working-day calendar file (JSON), or the plain Monday–Friday calendar.
pub fn load_calendar(path: Option<&Path>) -> Result<WorkCalendar> {
    match path {
        None => Ok(WorkCalendar::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| Error::file(p, e))?;
            WorkCalendar::from_json(&text).map_err(|e| Error::file(p, e))
        }
    }
}

/// Builds projections from every event in the log (decoding in parallel, applying in order).
pub fn build<B: Backend>(log: &Log<B>, calendar: WorkCalendar) -> Result<Projections> {
    use rayon::prelude::*;
    let mut p = Projections::new(calendar);
    log.scan_envelopes(|envs| {
        let facts: Vec<Option<yipan_projections::fact::Decoded>> =
            envs.par_iter().map(yipan_projections::Fact::from_envelope).collect();
        for f in facts.into_iter().flatten() {
            p.apply_fact(f);
        }
    })?;
    p.shrink_to_fit();
    Ok(p)
}

/// Keeps `views` current until `stop`.
pub async fn run<B: Backend>(log: Arc<Log<B>>, views: Views, calendar: WorkCalendar, mut stop: watch::Receiver<bool>) {
    loop {
        // Subscribe first, then read the log: nothing stored in between is missed
        // (applying an event twice is a no-op).
        let mut feed = log.subscribe_events();
        let (reader, cal) = (log.clone(), calendar.clone());
        match tokio::task::spawn_blocking(move || build(&reader, cal)).await {
            Ok(Ok(fresh)) => *views.write().unwrap_or_else(|p| p.into_inner()) = fresh,
            Ok(Err(e)) => tracing::error!(error = %e, "cannot rebuild projections from the log"),
            Err(_) => return,
        }
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                ev = feed.recv() => match ev {
                    Ok(env) => {
                        views.write().unwrap_or_else(|p| p.into_inner()).apply(&env);
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "projection feed overflowed; rebuilding from the log");
                        break;
                    }
                    Err(RecvError::Closed) => return,
                },
            }
        }
    }
}

/// Parses an optional RFC 3339 instant (default: now).
pub fn parse_as_of(s: Option<&str>) -> Result<chrono::DateTime<chrono::Utc>, String> {
    match s {
        None => Ok(chrono::Utc::now()),
        Some(t) => yipan_core::time::parse_rfc3339(t).map_err(|e| format!("as_of: {e}")),
    }
}

/// Parses the `as_of` (default now) and optional `locality` of a view query.
pub fn parse_as_of_and_locality(
    as_of: Option<&str>,
    locality: Option<&str>,
) -> Result<(chrono::DateTime<chrono::Utc>, Option<yipan_core::Locality>), String> {
    let as_of = parse_as_of(as_of)?;
    let locality = locality.map(yipan_core::Locality::parse).transpose().map_err(|e| format!("locality: {e}"))?;
    Ok((as_of, locality))
}

/// Parses `A,B` into two localities.
pub fn parse_pair(field: &str, s: &str) -> Result<(yipan_core::Locality, yipan_core::Locality), String> {
    let (a, b) = s.split_once(',').ok_or_else(|| format!("{field}: `{s}` is not two codes separated by a comma"))?;
    let a = yipan_core::Locality::parse(a.trim()).map_err(|p| format!("{field}: {p}"))?;
    let b = yipan_core::Locality::parse(b.trim()).map_err(|p| format!("{field}: {p}"))?;
    if a == b {
        return Err(format!("{field}: `{a},{b}` names one locality twice; a pair is two different localities"));
    }
    Ok((a, b))
}

/// The scorecard scope from `locality`, `pair=A,B` or `direction=A,B` (A assessed toward B).
pub fn parse_scope(
    locality: Option<&str>,
    pair: Option<&str>,
    direction: Option<&str>,
    default: yipan_core::Locality,
) -> Result<yipan_projections::scorecard::Scope, String> {
    use yipan_projections::scorecard::Scope;
    match (locality, pair, direction) {
        (None, None, None) => Ok(Scope::Locality { locality: default }),
        (Some(l), None, None) => {
            Ok(Scope::Locality { locality: yipan_core::Locality::parse(l).map_err(|p| format!("locality: {p}"))? })
        }
        (None, Some(p), None) => parse_pair("pair", p).map(|(a, b)| Scope::Pair { a, b }),
        (None, None, Some(d)) => {
            parse_pair("direction", d).map(|(assessed, counterpart)| Scope::Direction { assessed, counterpart })
        }
        _ => Err("give one of locality, pair or direction".into()),
    }
}

/// Parses a period (default: the statistics month holding today, for months
/// that close on day `close`).
pub fn parse_period(s: Option<&str>, close: u32) -> Result<yipan_projections::Period, String> {
    match s {
        None => {
            Ok(yipan_projections::Period::month_of_at(yipan_projections::calendar::date_of(chrono::Utc::now()), close))
        }
        Some(p) => p.parse().map_err(|e| format!("period: {e}")),
    }
}

/// Publishes projection changes for downstream systems every `interval`:
/// cases that became overdue, early warnings raised, and this locality's
/// current-month scorecard whenever it changes. Each carries a stable
/// `Nats-Msg-Id`, so a restart does not announce the same change twice
/// within the stream's duplicate window.
pub async fn publish_changes<B: Backend>(
    log: Arc<Log<B>>,
    views: Views,
    client: async_nats::Client,
    cfg: yipan_sync::SyncConfig,
    interval: std::time::Duration,
    mut stop: watch::Receiver<bool>,
) {
    use std::collections::HashSet;

    use async_nats::jetstream::message::PublishMessage;
    use sha2::Digest;
    use yipan_sync::downstream::views_subject;

    let me = log.locality();
    let js = async_nats::jetstream::new(client);
    let mut announced: HashSet<String> = HashSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        if yipan_sync::downstream::ensure_stream(&js, me.province(), &cfg).await.is_err() {
            continue;
        }
        let now = chrono::Utc::now();
        let mut out: Vec<(String, String, serde_json::Value)> = Vec::new();
        {
            let v = views.read().unwrap_or_else(|p| p.into_inner());
            for ex in v.all_exchanges(Some(me), now) {
                // A leg the requester owes after its request (a first-child notice,
                // a mismatch told to the origin) falls overdue on its own.
                let leg_overdue = ex
                    .follow_up
                    .as_ref()
                    .is_some_and(|f| matches!(f.state, yipan_projections::state::ExchangeState::Overdue { .. }));
                for (overdue, id) in [
                    (ex.overdue(), format!("{}.overdue", ex.request)),
                    (leg_overdue, format!("{}.follow_up.overdue", ex.request)),
                ] {
                    if overdue {
                        out.push((id, "case_overdue".into(), serde_json::to_value(&ex).unwrap_or_default()));
                    }
                }
            }
            for w in v.flows(Some(me), now).warnings {
                let id = format!(
                    "{}.{}.{}.warning",
                    w.period,
                    w.residence,
                    w.origin.map(|o| o.to_string()).unwrap_or_else(|| "all".into())
                );
                out.push((id, "early_warning".into(), serde_json::to_value(&w).unwrap_or_default()));
            }
            let period =
                yipan_projections::Period::month_of_at(yipan_projections::calendar::date_of(now), v.closes_on(me, now));
            let card = v.scorecard(yipan_projections::scorecard::Scope::Locality { locality: me }, period, now);
            let mut body = serde_json::to_value(&card).unwrap_or_default();
            let stable = {
                let mut b = body.clone();
                b["as_of"] = serde_json::Value::Null;
                hex::encode(sha2::Sha256::digest(b.to_string().as_bytes()))
            };
            body["digest"] = serde_json::Value::String(stable.clone());
            out.push((format!("scorecard.{stable}"), "scorecard".into(), body));
        }
        for (id, what, body) in out {
            if announced.contains(&id) {
                continue;
            }
            let msg = PublishMessage::build()
                .payload(body.to_string().into())
                .message_id(&id)
                .header("Yipan-Encoding", "json");
            let acked = match js.send_publish(views_subject(me, &what), msg).await {
                Ok(ack) => ack.await.is_ok(),
                Err(_) => false,
            };
            if !acked {
                break;
            }
            announced.insert(id);
        }
    }
}
