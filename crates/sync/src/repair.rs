//! Gap repair, so nothing depends on the stream never losing data:
//!
//! - every author announces, per recipient, the channel head it has
//!   published (`yipan.v1.head.…`, core NATS) once that channel is published
//!   to its head — within `head_interval_ms` of a change, otherwise every
//!   `head_refresh_ms` — so a recipient notices even the loss of the *last* events;
//! - a recipient that is behind an announced head, or holds events beyond a
//!   gap, waits `repair_grace_ms` for stragglers, then asks the author
//!   (`yipan.v1.repair.<author>.<recipient>`, request/reply) to re-send the
//!   range; NATS permissions let a locality publish only requests whose last
//!   token is itself, so the recipient of a request is authenticated; the
//!   author answers on `yipan.v1.repaired.<pp>.<recipient>.<author>`;
//! - the author answers from its own log by re-publishing those events to the
//!   recipient's own subject (with fresh message ids, past the duplicate
//!   window). Re-sent events go only where the recipient's consumer reads, so
//!   a request reveals nothing to whoever sends it. Each request re-sends at
//!   most [`MAX_RESEND`] events, never beyond the channel's head, and each
//!   recipient is served at most once per [`MIN_REPAIR_INTERVAL`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use yipan_core::Locality;
use yipan_log::{Backend, Log};

use crate::budget::{PublishBudget, Window};
use crate::metrics::SyncMetrics;
use crate::{outbox, subjects, Error, SyncConfig};

/// Most events re-sent per request (a recipient asks again for the rest).
pub const MAX_RESEND: usize = 2048;

/// Least time between two served requests of one recipient.
pub const MIN_REPAIR_INTERVAL: Duration = Duration::from_millis(500);
/// Most events re-sent to one recipient per minute, whatever it asks.
pub const RESEND_BUDGET_PER_MINUTE: u64 = 4 * MAX_RESEND as u64;

/// A re-send request: channel positions `from..=to` of author→recipient (the
/// recipient is the last token of the request's subject).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairRequest {
    /// First position.
    pub from: u64,
    /// Last position.
    pub to: u64,
}

/// The author's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairReply {
    /// Events re-published.
    pub resent: u64,
    /// Why nothing was re-sent, if so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl RepairRequest {
    /// How many events answer this request when `budget` more may be
    /// re-sent: the range `from..=to`, capped at [`MAX_RESEND`] and `budget`.
    /// An empty or reversed range (or one starting at 0) is an error.
    pub fn count(&self, budget: u64) -> Result<usize, String> {
        if self.from == 0 || self.to < self.from {
            return Err(format!("bad range {}..={}", self.from, self.to));
        }
        Ok(((self.to - self.from).saturating_add(1)).min(MAX_RESEND as u64).min(budget) as usize)
    }
}

/// Parses a repair request's payload (JSON `{"from": …, "to": …}`). The
/// error, sent back to the requester, never repeats a long input value.
pub fn parse_request(payload: &[u8]) -> Result<RepairRequest, String> {
    parse_json(payload)
}

/// Parses an author's answer to a repair request.
pub fn parse_reply(payload: &[u8]) -> Result<RepairReply, String> {
    parse_json(payload)
}

fn parse_json<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, String> {
    // Syntax errors name a position only; data errors may quote a value, so
    // they are clipped against the parsed input.
    let value: serde_json::Value = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    T::deserialize(&value).map_err(|e| yipan_core::json::clip_echoes(&e.to_string(), &value))
}

/// Parses a channel-head announcement: the decimal text of a channel position.
pub fn parse_head(payload: &[u8]) -> Option<u64> {
    std::str::from_utf8(payload).ok().and_then(|s| s.trim().parse::<u64>().ok())
}

#[derive(Debug, Default)]
struct Want {
    /// Highest channel position known to exist.
    target: u64,
    /// Local head when last seen, and since when it has not moved.
    seen_head: u64,
    since: Option<Instant>,
    /// When the last request went out.
    asked: Option<Instant>,
}

/// When an inbox consumer last reported messages waiting behind those it
/// delivered. While it does, a channel whose head does not move is behind
/// the backlog, not missing anything: asking its author to re-send would add
/// copies to the very backlog it waits for (measured with a province's shared
/// consumer: a third more messages in the streams, re-sends of events still
/// queued, and half the throughput).
#[derive(Debug, Default)]
pub struct Backlog {
    /// Milliseconds since the Unix epoch of the last report (0: never).
    at_ms: AtomicU64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Backlog {
    /// The consumer has more messages waiting.
    pub fn mark(&self) {
        self.at_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Whether it reported a backlog within `d`.
    pub fn within(&self, d: Duration) -> bool {
        let at = self.at_ms.load(Ordering::Relaxed);
        at > 0 && now_ms().saturating_sub(at) < d.as_millis() as u64
    }
}

/// What this node is missing, per author.
#[derive(Debug, Default)]
pub struct RepairState {
    wants: Mutex<HashMap<u32, Want>>,
    /// The backlog of the consumer that delivers to this node (its own, or its province's).
    pub(crate) backlog: Arc<Backlog>,
}

impl RepairState {
    /// A state whose inbox is the consumer reporting to `backlog` (a province's, shared by its tenants).
    pub fn sharing(backlog: Arc<Backlog>) -> Self {
        RepairState { wants: Default::default(), backlog }
    }

    /// Notes that `author`'s channel to this node reaches at least `position`.
    pub fn want(&self, author: u32, position: u64) {
        let mut w = self.wants.lock().unwrap_or_else(|p| p.into_inner());
        let e = w.entry(author).or_default();
        e.target = e.target.max(position);
    }
}

/// Announces this node's published channel heads.
pub(crate) async fn announce<B: Backend>(
    log: Arc<Log<B>>,
    client: async_nats::Client,
    cfg: SyncConfig,
    metrics: Arc<SyncMetrics>,
    published: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) {
    let me = log.locality();
    let refresh = Duration::from_millis(cfg.head_refresh_ms.max(cfg.head_interval_ms));
    // What each recipient was last told, and when.
    let mut told: HashMap<Locality, (u64, Instant)> = HashMap::new();
    loop {
        if crate::sleep_or_stop(Duration::from_millis(cfg.head_interval_ms), &mut stop).await {
            return;
        }
        if client.connection_state() != async_nats::connection::State::Connected {
            // Whatever was said before the break may not have arrived: say it all again.
            told.clear();
            continue;
        }
        // Only channels published to their head: from memory (this loop runs on the
        // async runtime, thousands of times per tick in a host), and a channel still
        // being published is delivering through the stream; it is announced once settled.
        let now = Instant::now();
        for (recipient, head) in log.settled_heads(published.load(Ordering::Relaxed)) {
            if !announcement_due(told.get(&recipient), head, now, refresh) {
                continue;
            }
            if client.publish(subjects::head(recipient, me), head.to_string().into()).await.is_ok() {
                told.insert(recipient, (head, now));
                SyncMetrics::add(&metrics.heads_announced, 1);
            }
        }
    }
}

/// Whether a channel's head is announced now: when it changed since it was
/// last told (or never was), or when it was last told `refresh` ago.
fn announcement_due(told: Option<&(u64, Instant)>, head: u64, now: Instant, refresh: Duration) -> bool {
    match told {
        None => true,
        Some((last, at)) => *last != head || now.saturating_duration_since(*at) >= refresh,
    }
}

/// Answers re-send requests from this node's own log.
pub(crate) async fn serve<B: Backend>(
    log: Arc<Log<B>>,
    client: async_nats::Client,
    js: jetstream::Context,
    metrics: Arc<SyncMetrics>,
    publish_budget: Option<Arc<PublishBudget>>,
    mut stop: watch::Receiver<bool>,
) {
    let me = log.locality();
    let mut sub = None;
    // Per recipient: when it was last served, and the events re-sent in the current minute.
    let mut last_served: HashMap<Locality, Instant> = HashMap::new();
    let mut budget: HashMap<Locality, (Instant, u64)> = HashMap::new();
    while let Some(msg) = next_message(&client, &subjects::repair_filter(me), &mut sub, &mut stop).await {
        let recipient = Locality::parse(subjects::last_token(&msg.subject));
        let request = parse_request(&msg.payload);
        let answer_to = recipient.as_ref().ok().map(|r| subjects::repaired(*r, me));
        let reply = match (recipient, request) {
            (Err(p), _) => RepairReply { resent: 0, error: Some(format!("recipient token: {p}")) },
            (_, Err(e)) => RepairReply { resent: 0, error: Some(format!("malformed repair request: {e}")) },
            (Ok(recipient), Ok(req)) => {
                let now = Instant::now();
                match last_served.get(&recipient) {
                    Some(t) if now.duration_since(*t) < MIN_REPAIR_INTERVAL => {
                        SyncMetrics::add(&metrics.repair_refused, 1);
                        RepairReply {
                            resent: 0,
                            error: Some(format!(
                                "rate limited: one request per {} ms",
                                MIN_REPAIR_INTERVAL.as_millis()
                            )),
                        }
                    }
                    _ => {
                        last_served.insert(recipient, now);
                        let (since, spent) = budget.entry(recipient).or_insert((now, 0));
                        if now.duration_since(*since) >= Duration::from_secs(60) {
                            (*since, *spent) = (now, 0);
                        }
                        let left = RESEND_BUDGET_PER_MINUTE.saturating_sub(*spent);
                        if left == 0 {
                            SyncMetrics::add(&metrics.repair_refused, 1);
                            RepairReply {
                                resent: 0,
                                error: Some(format!("budget spent: {RESEND_BUDGET_PER_MINUTE} events a minute")),
                            }
                        } else {
                            let reply = resend(&log, &js, recipient, &req, left, publish_budget.clone()).await;
                            *spent += reply.resent;
                            reply
                        }
                    }
                }
            }
        };
        SyncMetrics::add(&metrics.repair_served, 1);
        SyncMetrics::add(&metrics.resent, reply.resent);
        if let Some(to) = answer_to {
            let body = serde_json::to_vec(&reply).unwrap_or_default();
            let _ = client.publish(to, body.into()).await;
        }
    }
}

/// Logs authors' answers to this node's repair requests.
pub(crate) async fn listen_answers<B: Backend>(
    log: Arc<Log<B>>,
    client: async_nats::Client,
    mut stop: watch::Receiver<bool>,
) {
    let me = log.locality();
    let mut sub = None;
    while let Some(msg) = next_message(&client, &subjects::repaired_filter(me), &mut sub, &mut stop).await {
        let author = subjects::last_token(&msg.subject).to_string();
        match parse_reply(&msg.payload) {
            Ok(r) => tracing::info!(locality = %me, %author, resent = r.resent, error = ?r.error, "repair answered"),
            Err(e) => tracing::warn!(locality = %me, %author, error = %e, "unreadable repair answer"),
        }
    }
}

/// The next message on `subject` (a filter ending in `.*`), (re)subscribing
/// as needed; `None` once `stop` fires. A message whose own subject is not
/// under the filter (a JetStream delivery some consumer was pointed at) is
/// dropped: every listener reads its author or recipient from the last token.
async fn next_message(
    client: &async_nats::Client,
    subject: &str,
    sub: &mut Option<async_nats::Subscriber>,
    stop: &mut watch::Receiver<bool>,
) -> Option<async_nats::Message> {
    loop {
        if sub.is_none() {
            match client.subscribe(subject.to_string()).await {
                Ok(s) => *sub = Some(s),
                Err(e) => {
                    tracing::warn!(%subject, error = %e, "cannot subscribe; retrying");
                    if crate::sleep_or_stop(Duration::from_secs(1), stop).await {
                        return None;
                    }
                    continue;
                }
            }
        }
        let s = sub.as_mut()?;
        let msg = tokio::select! {
            _ = stop.changed() => return None,
            m = s.next() => m,
        };
        match msg {
            Some(m) if m.subject.starts_with(subject.trim_end_matches('*')) => return Some(m),
            Some(m) => tracing::debug!(subject = %m.subject, filter = %subject, "dropped: not under the filter"),
            None => *sub = None,
        }
    }
}

async fn resend<B: Backend>(
    log: &Arc<Log<B>>,
    js: &jetstream::Context,
    recipient: Locality,
    req: &RepairRequest,
    budget: u64,
    publish_budget: Option<Arc<PublishBudget>>,
) -> RepairReply {
    let fail = |e: String| RepairReply { resent: 0, error: Some(e) };
    let count = match req.count(budget) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let (reader, me, from) = (log.clone(), log.locality(), req.from);
    let epoch = log.erasure_count();
    let events = match tokio::task::spawn_blocking(move || reader.read_channel(me, recipient, from, count)).await {
        Ok(Ok(e)) => e,
        Ok(Err(e)) => return fail(e.to_string()),
        Err(e) => return fail(e.to_string()),
    };
    // A new suffix per duplicate window (2 min): the original ids may still be
    // in the window of a stream that lost them, while repeated requests within
    // one window are deduplicated by the server instead of filling the stream.
    let suffix = format!(".r{}", chrono::Utc::now().timestamp() / 120);
    let keys = match crate::seal::prepare(log, js, &events, publish_budget.as_ref()).await {
        Ok(k) => k,
        Err(e) => return fail(e.to_string()),
    };
    if log.erasure_count() != epoch {
        return fail("an erasure happened while re-sending; ask again".into());
    }
    let mut window = Window::new(publish_budget, usize::MAX);
    for ev in &events {
        let permit = match window.room(1).await {
            Ok(p) => p,
            Err(e) => return RepairReply { resent: window.acked(), error: Some(e.to_string()) },
        };
        match outbox::publish_event(js, ev, &suffix, Some(recipient), &keys).await {
            Ok((a, dead)) if dead.is_empty() => window.push(a, permit),
            Ok(_) => {
                return fail(format!("event {} is too large for this server's max_payload (a dead letter)", ev.seq()))
            }
            Err(e) => return fail(e.to_string()),
        }
    }
    let resent = match window.settle().await {
        Ok(n) => n,
        Err(e) => return RepairReply { resent: window.acked(), error: Some(e.to_string()) },
    };
    tracing::info!(author = %me, %recipient, from = req.from, resent, "re-sent on request");
    RepairReply { resent, error: None }
}

/// Listens to channel-head announcements addressed to this node.
pub(crate) async fn listen_heads<B: Backend>(
    log: Arc<Log<B>>,
    client: async_nats::Client,
    repair: Arc<RepairState>,
    mut stop: watch::Receiver<bool>,
) {
    let me = log.locality();
    let mut sub = None;
    while let Some(msg) = next_message(&client, &subjects::head_filter(me), &mut sub, &mut stop).await {
        let Ok(author) = Locality::parse(subjects::last_token(&msg.subject)) else { continue };
        // Only authors this node trusts can make it ask for repairs.
        if author == me || !log.trusts(author) {
            continue;
        }
        let Some(head) = parse_head(&msg.payload) else { continue };
        repair.want(author.as_u32(), head);
    }
}

/// Asks authors to re-send what this node is missing, after a grace period.
pub(crate) async fn request_loop<B: Backend>(
    log: Arc<Log<B>>,
    client: async_nats::Client,
    cfg: SyncConfig,
    metrics: Arc<SyncMetrics>,
    repair: Arc<RepairState>,
    mut stop: watch::Receiver<bool>,
) {
    let me = log.locality();
    let grace = Duration::from_millis(cfg.repair_grace_ms);
    loop {
        if crate::sleep_or_stop(Duration::from_millis(200), &mut stop).await {
            return;
        }
        let mut due: Vec<(Locality, u64, u64)> = Vec::new();
        {
            // Behind a backlog of the inbox, a head that does not move is not stalled.
            let backlog = repair.backlog.within(grace);
            let mut wants = repair.wants.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            wants.retain(|author, w| {
                let Ok(a) = Locality::from_u32(*author) else { return false };
                let head = log.channel_head(a, me).unwrap_or(0);
                if head >= w.target {
                    return false;
                }
                if head != w.seen_head || w.since.is_none() || backlog {
                    w.seen_head = head;
                    w.since = Some(now);
                }
                let stalled = w.since.is_some_and(|t| now - t >= grace);
                let not_recently = w.asked.is_none_or(|t| now - t >= grace * 2);
                if stalled && not_recently {
                    w.asked = Some(now);
                    // Never more than one request's worth, whatever a head claims.
                    due.push((a, head + 1, w.target.min(head + MAX_RESEND as u64)));
                }
                true
            });
        }
        for (author, from, to) in due {
            SyncMetrics::add(&metrics.repair_requests, 1);
            let req = RepairRequest { from, to };
            let body = serde_json::to_vec(&req).unwrap_or_default();
            // Answered on `yipan.v1.repaired.…` (see `listen_answers`), not by
            // request/reply: no NATS user needs `allow_responses`.
            match client.publish(subjects::repair(author, me), body.into()).await {
                Ok(()) => tracing::debug!(locality = %me, %author, from, to, "repair requested"),
                Err(e) => tracing::warn!(locality = %me, %author, error = %Error::nats(e), "repair request failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backlog_holds_repairs_back_only_while_it_is_recent() {
        let b = Backlog::default();
        assert!(!b.within(Duration::from_secs(5)), "never reported: repairs go ahead");
        b.mark();
        assert!(b.within(Duration::from_secs(5)));
        assert!(!b.within(Duration::ZERO), "older than the grace: repairs go ahead");
        let shared = Arc::new(Backlog::default());
        let (a, c) = (RepairState::sharing(shared.clone()), RepairState::sharing(shared.clone()));
        shared.mark();
        assert!(a.backlog.within(Duration::from_secs(1)) && c.backlog.within(Duration::from_secs(1)));
    }

    #[test]
    fn payloads_parse_and_errors_do_not_echo() {
        assert_eq!(parse_request(br#"{"from":1,"to":9}"#), Ok(RepairRequest { from: 1, to: 9 }));
        assert_eq!(parse_reply(br#"{"resent":2}"#), Ok(RepairReply { resent: 2, error: None }));
        let long = "Q".repeat(200);
        for bad in [format!(r#"{{"from":"{long}","to":1}}"#), format!(r#"{{"resent":"{long}"}}"#)] {
            let e = parse_request(bad.as_bytes()).unwrap_err();
            assert!(!e.contains(&"Q".repeat(41)), "{e}");
            let e = parse_reply(bad.as_bytes()).unwrap_err();
            assert!(!e.contains(&"Q".repeat(41)), "{e}");
        }
        let e = parse_request(format!(r#"{{"from":"{long}","to":1}}"#).as_bytes()).unwrap_err();
        assert!(e.starts_with("invalid type: string \"QQQ") && e.contains("… (200 bytes)"), "{e}");
        // Found by the repair_request fuzz target: a value of backslashes is
        // quoted escaped (doubled), and the raw value occurs inside that.
        let slashes = format!(r#"["{}yyyyyy#"]"#, "\\\\".repeat(44));
        let e = parse_request(slashes.as_bytes()).unwrap_err();
        assert!(!e.contains(&"\\".repeat(41)), "{e}");
        assert!(parse_request(b"{").is_err());
        assert_eq!(parse_head(b" 42\n"), Some(42));
        assert_eq!(parse_head(b"18446744073709551616"), None);
        assert_eq!(parse_head(b"-1"), None);
    }

    #[test]
    fn a_head_is_announced_when_new_changed_or_due_for_refresh() {
        let t0 = Instant::now();
        let refresh = Duration::from_secs(60);
        assert!(announcement_due(None, 0, t0, refresh), "never told");
        assert!(!announcement_due(Some(&(7, t0)), 7, t0 + Duration::from_secs(59), refresh), "unchanged, not yet due");
        assert!(announcement_due(Some(&(7, t0)), 8, t0 + Duration::from_millis(1), refresh), "changed");
        assert!(announcement_due(Some(&(7, t0)), 7, t0 + refresh, refresh), "refresh due");
    }

    #[test]
    fn counts_stay_within_range_cap_and_budget() {
        let r = |from, to| RepairRequest { from, to };
        assert_eq!(r(1, 10).count(100), Ok(10));
        assert_eq!(r(1, u64::MAX).count(u64::MAX), Ok(MAX_RESEND));
        assert_eq!(r(5, 9).count(2), Ok(2));
        assert!(r(0, 3).count(10).is_err());
        assert!(r(5, 4).count(10).is_err());
    }
}
