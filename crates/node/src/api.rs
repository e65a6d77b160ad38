//! The HTTP API (JSON).
//!
//! | method, path | what |
//! | --- | --- |
//! | `POST /v1/events` | append one event (object) or a batch (array), atomically; 200 with positions, 400 naming the field, 409 on an id reused with other content |
//! | `GET /v1/events?author=&from_seq=&person=&kind=&limit=` | stored events (personal fields masked) |
//! | `GET /v1/events/{id}` | one event |
//! | `GET /v1/cards/{person}?as_of=` | the person's responsibility cards (one per relationship) |
//! | `GET /v1/scorecard?locality=\|pair=A,B\|direction=A,B&period=&as_of=` | indicators with targets and pass/fail |
//! | `GET /v1/cases?locality=&overdue=&as_of=` | exchanges (notification, case-assist, first-child, mismatch) with due dates |
//! | `GET /v1/flows?locality=&as_of=` | arrivals/departures per month with early warnings |
//! | `GET /v1/digests?pair=A,B&as_of=` | projection digests (identical on both sides of a pair) |
//! | `GET /v1/raw?after=AUTHOR:SEQ&limit=` | stored signed events, JSON lines `{author, seq, b64}` (for auditors) |
//! | `GET /v1/roster` | trust: anchor, authorities, every locality's certificate chain, key schedule and status, and the raw trust records |
//! | `GET /v1/stream?role=&from=A:S,B:T` | server-sent events: every stored event after the given per-author positions, then live; personal tiers filtered by role |
//! | `GET /v1/status` | locality, own head, channel heads, counts |
//! | `GET /v1/quarantine?after=&limit=` | rejected received events with reasons, paged |
//! | `GET /v1/dead-letters` | own messages set aside because they can never be published |
//! | `GET /healthz` | liveness and NATS connection (the only path without a credential) |
//! | `GET /metrics` | Prometheus text |
//!
//! Every other request carries a credential (bearer token or client
//! certificate, see [`crate::auth`]); its role decides what it may do and
//! which personal tiers it sees on `/v1/events`, `/v1/raw` and `/v1/stream`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Extension, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;
use yipan_access::{Caller, Permission};
use yipan_core::{EventKind, Locality, PersonKey};
use yipan_log::SledStore;
use yipan_sync::SyncMetrics;

use crate::auth::Auth;
use crate::views::{self, Views};

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    log: Arc<SledStore>,
    person_secret: Option<Arc<Vec<u8>>>,
    sync: Arc<SyncMetrics>,
    appended: Arc<AtomicU64>,
    rejected: Arc<AtomicU64>,
    views: Views,
    auth: Arc<Auth>,
    insecure: bool,
    /// Fires when the node stops, so long-lived streams end.
    stop: tokio::sync::watch::Receiver<bool>,
}

impl AppState {
    /// State over a log.
    pub fn new(
        log: Arc<SledStore>,
        person_secret: Option<Vec<u8>>,
        sync: Arc<SyncMetrics>,
        views: Views,
        auth: Arc<Auth>,
        insecure: bool,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> AppState {
        AppState {
            log,
            person_secret: person_secret.map(Arc::new),
            sync,
            appended: Arc::new(AtomicU64::new(0)),
            rejected: Arc::new(AtomicU64::new(0)),
            views,
            auth,
            insecure,
            stop,
        }
    }

    /// The node's credentials.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }
}

/// The routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/events", get(list_events).post(append))
        .route("/v1/events/{id}", get(get_event))
        .route("/v1/cards/{person}", get(cards))
        .route("/v1/scorecard", get(scorecard))
        .route("/v1/cases", get(cases))
        .route("/v1/flows", get(flows))
        .route("/v1/digests", get(digests))
        .route("/v1/raw", get(raw))
        .route("/v1/stream", get(stream))
        .route("/v1/roster", get(roster))
        .route("/v1/status", get(status))
        .route("/v1/quarantine", get(quarantine))
        .route("/v1/dead-letters", get(dead_letters))
        .route("/healthz", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::auth::layer))
        .with_state(state)
}

/// A JSON error answer.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    ApiError::new(status, message).into_response()
}

/// An error answer: status, message and, when the caller should come back,
/// `Retry-After`. Library errors are mapped to a status in one place.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    retry_after_s: Option<u64>,
}

impl ApiError {
    /// An answer with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), retry_after_s: None }
    }

    /// Appends a note to the message (e.g. "nothing was written").
    pub fn note(mut self, note: &str) -> ApiError {
        self.message.push_str(note);
        self
    }
}

impl From<yipan_log::Error> for ApiError {
    fn from(e: yipan_log::Error) -> ApiError {
        use yipan_log::Error as E;
        let (status, retry) = match &e {
            E::Invalid(_) | E::InvalidInBatch { .. } => (StatusCode::BAD_REQUEST, None),
            E::IdConflict { .. } => (StatusCode::CONFLICT, None),
            E::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, None),
            E::Busy { .. } => (StatusCode::SERVICE_UNAVAILABLE, Some(1)),
            E::Poisoned | E::Closed => (StatusCode::SERVICE_UNAVAILABLE, Some(5)),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, None),
        };
        let message = match e {
            E::InvalidInBatch { index, source } => format!("event [{index}]: {source}"),
            other => other.to_string(),
        };
        ApiError { status, message, retry_after_s: retry }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(json!({ "error": self.message }))).into_response();
        if let Some(s) = self.retry_after_s {
            r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(s));
        }
        r
    }
}

async fn not_found(uri: axum::http::Uri) -> Response {
    error(StatusCode::NOT_FOUND, format!("no such path `{}`", yipan_core::clip(uri.path())))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    error(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed on `{}`", yipan_core::clip(uri.path())))
}

async fn append(State(s): State<AppState>, Extension(caller): Extension<Caller>, body: axum::body::Bytes) -> Response {
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")),
    };
    let (items, batch) = match value {
        Value::Array(items) => (items, true),
        v => (vec![v], false),
    };
    let secret = s.person_secret.as_deref().map(|v| v.as_slice());
    let mut drafts = Vec::with_capacity(items.len());
    let mut early_warnings = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        match yipan_core::json::draft_and_warnings(item, secret) {
            Ok((d, w)) => {
                early_warnings.push(w);
                let kind = d.body.as_ref().and_then(|b| b.kind.as_ref()).map(EventKind::of);
                let needs = if kind == Some(EventKind::DutyCatalogPublished) {
                    Permission::PublishCatalogue
                } else {
                    Permission::Append
                };
                if !caller.role.allows(needs) {
                    s.auth.forbidden.fetch_add(1, Ordering::Relaxed);
                    let what = kind.map(|k| k.name()).unwrap_or("this event");
                    let at = if batch { format!("event [{i}]: ") } else { String::new() };
                    return error(
                        StatusCode::FORBIDDEN,
                        format!("{at}role `{}` may not append {what}; nothing was written", caller.role),
                    );
                }
                drafts.push(d)
            }
            Err(e) => {
                s.rejected.fetch_add(1, Ordering::Relaxed);
                let at = if batch { format!("event [{i}]: ") } else { String::new() };
                return error(StatusCode::BAD_REQUEST, format!("{at}{e}; nothing was written"));
            }
        }
    }
    match s.log.append_batch_async(drafts).await {
        Ok(out) => {
            s.appended.fetch_add(out.iter().filter(|a| !a.duplicate).count() as u64, Ordering::Relaxed);
            let out: Vec<Value> = out
                .iter()
                .zip(early_warnings)
                .map(|(a, early)| {
                    json!({
                        "id": a.id.to_string(),
                        "seq": a.seq,
                        "hash": hex::encode(a.hash),
                        "recipients": a.recipients.iter().map(|(l, ch)| json!({"locality": l, "channel_seq": ch})).collect::<Vec<_>>(),
                        "duplicate": a.duplicate,
                        "warnings": early.iter().chain(&a.warnings).map(|w| w.to_string()).collect::<Vec<_>>(),
                    })
                })
                .collect();
            Json(if batch { Value::Array(out) } else { out.into_iter().next().unwrap_or(Value::Null) }).into_response()
        }
        Err(e) => {
            s.rejected.fetch_add(1, Ordering::Relaxed);
            ApiError::from(e).note("; nothing was written").into_response()
        }
    }
}

/// Query of `GET /v1/events`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// Page through all events: the last `AUTHOR:SEQ` already seen.
    after: Option<String>,
    author: Option<String>,
    from_seq: Option<u64>,
    person: Option<String>,
    kind: Option<String>,
    limit: Option<usize>,
    /// Show the personal tiers the caller's role may see unmasked.
    #[serde(default)]
    reveal: bool,
}

/// An event as `caller` may see it: only its role's tiers, masked unless `reveal`.
fn shown(ev: &yipan_log::StoredEvent, caller: &Caller, reveal: bool) -> Value {
    ev.for_audience(caller.role.audience()).to_json(reveal)
}

async fn list_events(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ListQuery>,
) -> Response {
    let reveal = q.reveal;
    let limit = q.limit.unwrap_or(1000).min(100_000);
    let kind = match q.kind.as_deref().map(|k| EventKind::parse(k).ok_or(k)) {
        Some(Err(k)) => return error(StatusCode::BAD_REQUEST, format!("kind: unknown event kind `{k}`")),
        Some(Ok(k)) => Some(k),
        None => None,
    };
    let log = s.log.clone();
    // The kind filter applies while reading, so `limit` counts matching events.
    let wanted = move |e: &yipan_log::StoredEvent| kind.is_none() || e.kind() == kind;
    let read = tokio::task::spawn_blocking(move || -> Result<Vec<yipan_log::StoredEvent>, String> {
        match (q.author, q.person) {
            (Some(a), None) => {
                let a = Locality::parse(&a).map_err(|p| format!("author: {p}"))?;
                log.read_author_where(a, q.from_seq.unwrap_or(1), limit, wanted).map_err(|e| e.to_string())
            }
            (None, Some(p)) => {
                let p = PersonKey::parse(&p).map_err(|e| format!("person: {e}"))?;
                log.read_person(p).map_err(|e| e.to_string())
            }
            (None, None) => {
                let after = match q.after.as_deref() {
                    None => None,
                    Some(a) => Some(
                        a.split_once(':')
                            .and_then(|(l, n)| Some((Locality::parse(l).ok()?, n.parse::<u64>().ok()?)))
                            .ok_or_else(|| format!("after: `{}` is not AUTHOR:SEQ", yipan_core::clip(a)))?,
                    ),
                };
                log.read_all_where(after, limit, wanted).map_err(|e| e.to_string())
            }
            (Some(_), Some(_)) => Err("give author or person, not both".into()),
        }
    })
    .await;
    match read {
        Ok(Ok(events)) => {
            let out: Vec<Value> = events
                .iter()
                .filter(|e| kind.is_none() || e.kind() == kind)
                .take(limit)
                .map(|e| shown(e, &caller, reveal))
                .collect();
            Json(out).into_response()
        }
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Query of `GET /v1/events/{id}`.
#[derive(Debug, Deserialize)]
pub struct RevealQuery {
    #[serde(default)]
    reveal: bool,
}

async fn get_event(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<RevealQuery>,
) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return error(StatusCode::BAD_REQUEST, format!("`{}` is not a UUID", yipan_core::clip(&id)));
    };
    let log = s.log.clone();
    let read = match tokio::task::spawn_blocking(move || log.get(id)).await {
        Ok(r) => r,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    match read {
        Ok(Some(ev)) => Json(shown(&ev, &caller, q.reveal)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no event {id}")),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn status(State(s): State<AppState>) -> Response {
    let me = s.log.locality();
    let (seq, hash) = s.log.head().unwrap_or((0, [0; 32]));
    let outbound: Vec<Value> =
        s.log.outbound_heads(u64::MAX).into_iter().map(|(r, h)| json!({"recipient": r, "head": h})).collect();
    // Only authors that have sent something: at national scale the roster lists thousands.
    let inbound: Vec<Value> = s
        .log
        .roster()
        .into_iter()
        .filter(|(l, _)| *l != me)
        .filter_map(|(a, _)| {
            let head = s.log.channel_head(a, me).unwrap_or(0);
            (head > 0).then(|| json!({"author": a, "head": head}))
        })
        .collect();
    Json(json!({
        "locality": me,
        "own_head": {"seq": seq, "hash": hex::encode(hash)},
        "events_held": s.log.len(),
        "outbound_channels": outbound,
        "inbound_channels": inbound,
        "outbox_pending": s.sync.outbox_pending.load(Ordering::Relaxed),
        "nats_connected": s.sync.nats_connected.load(Ordering::Relaxed) == 1,
    }))
    .into_response()
}

/// Query of `GET /v1/quarantine`.
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    /// The id of the last entry already seen.
    after: Option<String>,
    /// Entries per page (default 100, at most 1,000).
    limit: Option<usize>,
}

async fn quarantine(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<PageQuery>,
) -> Response {
    let audience = caller.role.audience();
    let after = match q.after.as_deref().map(Uuid::parse_str).transpose() {
        Ok(a) => a,
        Err(_) => {
            return bad(format!("after: `{}` is not an entry id", yipan_core::clip(q.after.as_deref().unwrap_or(""))))
        }
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let log = s.log.clone();
    // One more than asked tells whether another page exists.
    let page = tokio::task::spawn_blocking(move || log.quarantine_page(after, limit + 1)).await;
    let mut entries = match page {
        Ok(Ok(q)) => q,
        Ok(Err(e)) => return ApiError::from(e).into_response(),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let more = entries.len() > limit;
    entries.truncate(limit);
    // The received bytes may carry personal tiers: only the role's tiers
    // are shown; bytes that do not decode are shown only to a role with every tier.
    for e in &mut entries {
        let bytes = hex::decode(&e.bytes_hex).unwrap_or_default();
        e.bytes_hex = hex::encode(yipan_core::audience::shown_to(&bytes, audience));
    }
    let next = more.then(|| entries.last().map(|e| e.id.to_string())).flatten();
    let (held, evicted) = s.log.quarantine_summary();
    Json(json!({"held": held, "evicted": evicted, "entries": entries, "next": next})).into_response()
}

async fn dead_letters(State(s): State<AppState>) -> Response {
    let log = s.log.clone();
    match tokio::task::spawn_blocking(move || yipan_sync::outbox::dead_letters(&log)).await {
        Ok(Ok(d)) => Json(d).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn health(State(s): State<AppState>) -> Response {
    if s.log.is_poisoned() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "failed",
                "problem": "a write to the log failed (disk full?); the node is stopping to reopen it",
                "locality": s.log.locality(),
            })),
        )
            .into_response();
    }
    Json(json!({
        "status": "ok",
        "insecure": s.insecure,
        "locality": s.log.locality(),
        "nats_connected": s.sync.nats_connected.load(Ordering::Relaxed) == 1,
        "outbox_pending": s.sync.outbox_pending.load(Ordering::Relaxed),
    }))
    .into_response()
}

async fn metrics(State(s): State<AppState>) -> Response {
    let mut out = String::new();
    s.sync.render(&mut out);
    let node: [(&str, &str, &str, u64); 6] = [
        (
            "yipan_events_appended_total",
            "Own events appended through the API.",
            "counter",
            s.appended.load(Ordering::Relaxed),
        ),
        (
            "yipan_append_rejected_total",
            "API appends rejected (bad input or conflict).",
            "counter",
            s.rejected.load(Ordering::Relaxed),
        ),
        ("yipan_log_events", "Events held in the log (own and received).", "gauge", s.log.len() as u64),
        (
            "yipan_http_unauthenticated_total",
            "HTTP requests refused for a missing, invalid, expired or revoked credential (401).",
            "counter",
            s.auth.unauthenticated.load(Ordering::Relaxed),
        ),
        (
            "yipan_http_forbidden_total",
            "HTTP requests refused because the caller's role may not do them (403).",
            "counter",
            s.auth.forbidden.load(Ordering::Relaxed),
        ),
        (
            "yipan_http_unsupported_media_total",
            "HTTP writes refused for not being application/json (415).",
            "counter",
            s.auth.unsupported_media.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, kind, v) in node {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// Query of the view endpoints.
#[derive(Debug, Deserialize, Default)]
pub struct ViewQuery {
    as_of: Option<String>,
    locality: Option<String>,
    pair: Option<String>,
    direction: Option<String>,
    period: Option<String>,
    overdue: Option<bool>,
    /// Paging of `/v1/cases`: entries to skip.
    offset: Option<usize>,
    /// Paging of `/v1/cases`: entries per page (default 1,000, at most 10,000).
    limit: Option<usize>,
}

impl AppState {
    fn read_views(&self) -> std::sync::RwLockReadGuard<'_, yipan_projections::Projections> {
        self.views.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// The `as_of` (default now) and optional `locality` of a view query.
fn as_of_and_locality(q: &ViewQuery) -> Result<(chrono::DateTime<chrono::Utc>, Option<Locality>), String> {
    views::parse_as_of_and_locality(q.as_of.as_deref(), q.locality.as_deref())
}

fn bad(e: String) -> Response {
    error(StatusCode::BAD_REQUEST, e)
}

async fn cards(State(s): State<AppState>, Path(person): Path<String>, Query(q): Query<ViewQuery>) -> Response {
    let person = match PersonKey::parse(&person) {
        Ok(p) => p,
        Err(e) => return bad(format!("person: {e}")),
    };
    let as_of = match views::parse_as_of(q.as_of.as_deref()) {
        Ok(t) => t,
        Err(e) => return bad(e),
    };
    let v = s.read_views();
    let cards: Vec<_> = v.relationships_of_person(&person).iter().map(|r| v.card(r, as_of)).collect();
    Json(cards).into_response()
}

async fn scorecard(State(s): State<AppState>, Query(q): Query<ViewQuery>) -> Response {
    let scope = views::parse_scope(q.locality.as_deref(), q.pair.as_deref(), q.direction.as_deref(), s.log.locality());
    let (scope, period, as_of) =
        match (scope, views::parse_period(q.period.as_deref()), views::parse_as_of(q.as_of.as_deref())) {
            (Ok(a), Ok(b), Ok(c)) => (a, b, c),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return bad(e),
        };
    Json(s.read_views().scorecard(scope, period, as_of)).into_response()
}

async fn cases(State(s): State<AppState>, Query(q): Query<ViewQuery>) -> Response {
    let (as_of, locality) = match as_of_and_locality(&q) {
        Ok(x) => x,
        Err(e) => return bad(e),
    };
    let mut ex = s.read_views().all_exchanges(locality, as_of);
    if q.overdue == Some(true) {
        ex.retain(|e| e.overdue());
    }
    // Paged: the total goes in `X-Total-Count`, the page is `offset`..`offset + limit`.
    let total = ex.len();
    let (offset, limit) = (q.offset.unwrap_or(0), q.limit.unwrap_or(1000).clamp(1, 10_000));
    let page: Vec<_> = ex.into_iter().skip(offset).take(limit).collect();
    let mut r = Json(page).into_response();
    r.headers_mut().insert("x-total-count", header::HeaderValue::from(total));
    r
}

async fn flows(State(s): State<AppState>, Query(q): Query<ViewQuery>) -> Response {
    let (as_of, locality) = match as_of_and_locality(&q) {
        Ok(x) => x,
        Err(e) => return bad(e),
    };
    Json(s.read_views().flows(locality, as_of)).into_response()
}

async fn digests(State(s): State<AppState>, Query(q): Query<ViewQuery>) -> Response {
    let as_of = match views::parse_as_of(q.as_of.as_deref()) {
        Ok(t) => t,
        Err(e) => return bad(e),
    };
    let Some(pair) = q.pair.as_deref() else { return bad("pair: required, e.g. pair=610112,411522".into()) };
    let (a, b) = match views::parse_pair("pair", pair) {
        Ok(p) => p,
        Err(e) => return bad(e),
    };
    let v = s.read_views();
    let rels: Vec<Value> = v
        .relationships()
        .filter(|r| (r.origin == a && r.residence == b) || (r.origin == b && r.residence == a))
        .map(|r| json!({"person": r.person.to_string(), "origin": r.origin, "residence": r.residence, "digest": hex::encode(v.rel_digest(r, as_of))}))
        .collect();
    Json(json!({"as_of": as_of, "pair": [a, b], "digest": hex::encode(v.pair_digest(a, b, as_of)), "relationships": rels})).into_response()
}

/// Query of `GET /v1/raw`.
#[derive(Debug, Deserialize)]
pub struct RawQuery {
    after: Option<String>,
    limit: Option<usize>,
}

async fn raw(State(s): State<AppState>, Extension(caller): Extension<Caller>, Query(q): Query<RawQuery>) -> Response {
    use base64::Engine;
    let audience = caller.role.audience();
    let after = match q.after.as_deref() {
        None => None,
        Some(a) => {
            let parsed = a.split_once(':').and_then(|(l, n)| Some((Locality::parse(l).ok()?, n.parse::<u64>().ok()?)));
            match parsed {
                Some(p) => Some(p),
                None => return bad(format!("after: `{}` is not AUTHOR:SEQ", yipan_core::clip(a))),
            }
        }
    };
    let limit = q.limit.unwrap_or(10_000).min(100_000);
    let log = s.log.clone();
    let body = tokio::task::spawn_blocking(move || {
        let mut out = String::new();
        log.for_each_raw(after, limit, |a, seq, bytes| {
            // Tiers the role may not see are stripped; the event still verifies.
            let shown = yipan_core::audience::shown_to(bytes, audience);
            let bytes = shown.as_ref();
            out.push_str(
                &json!({"author": a, "seq": seq, "b64": base64::engine::general_purpose::STANDARD.encode(bytes)})
                    .to_string(),
            );
            out.push('\n');
        })
        .map(|_| out)
    })
    .await;
    match body {
        Ok(Ok(text)) => ([(header::CONTENT_TYPE, "application/x-ndjson")], text).into_response(),
        Ok(Err(e)) => ApiError::from(e).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn roster(State(s): State<AppState>) -> Response {
    let log = s.log.clone();
    let body = tokio::task::spawn_blocking(move || -> Result<Value, yipan_log::Error> {
        let trust = log.trust();
        let records: Vec<Value> = log
            .trust_records()?
            .into_iter()
            .map(|(at, r)| {
                json!({
                    "at": at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                    "b64": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, r),
                })
            })
            .collect();
        Ok(json!({
            "anchor": trust.anchor().map(|a| hex::encode(a.to_bytes())),
            "authorities": trust.authorities(),
            "localities": trust.view(chrono::Utc::now()),
            "records": records,
        }))
    })
    .await;
    match body {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => ApiError::from(e).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Query of `GET /v1/stream`.
#[derive(Debug, Deserialize)]
pub struct StreamQuery {
    /// Refused unless it names the caller's own role: tiers follow the credential.
    role: Option<String>,
    /// Per-author positions already seen: `610112:10,411522:4`.
    from: Option<String>,
}

/// Parses `A:S,B:T` positions.
pub fn parse_positions(s: &str) -> Result<std::collections::HashMap<Locality, u64>, String> {
    let mut out = std::collections::HashMap::new();
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let (a, n) = part.split_once(':').ok_or_else(|| format!("from: `{part}` is not AUTHOR:SEQ"))?;
        let a = Locality::parse(a.trim()).map_err(|e| format!("from: {e}"))?;
        let n = n.trim().parse::<u64>().map_err(|_| format!("from: `{part}` is not AUTHOR:SEQ"))?;
        out.insert(a, n);
    }
    Ok(out)
}

fn sse_event(ev: &yipan_log::StoredEvent, role: yipan_core::audience::Audience) -> axum::response::sse::Event {
    use base64::Engine;
    use yipan_proto::Message;
    let shown = ev.for_audience(role);
    let mut body = shown.to_json(false);
    body["signed_b64"] = Value::String(base64::engine::general_purpose::STANDARD.encode(shown.signed.encode_to_vec()));
    axum::response::sse::Event::default()
        .id(format!("{}:{}", ev.envelope.author, ev.seq()))
        .event(ev.kind().map(|k| k.name()).unwrap_or("Unknown"))
        .data(body.to_string())
}

async fn stream(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<StreamQuery>,
) -> Response {
    use axum::response::sse::{KeepAlive, Sse};
    use futures::StreamExt;
    if let Some(r) = q.role.as_deref().filter(|r| *r != caller.role.name()) {
        s.auth.forbidden.fetch_add(1, Ordering::Relaxed);
        return error(
            StatusCode::FORBIDDEN,
            format!(
                "role: `{}` was asked for, but the role comes from your credential (`{}`)",
                yipan_core::clip(r),
                caller.role
            ),
        );
    }
    let role = caller.role.audience();
    let from = match parse_positions(q.from.as_deref().unwrap_or("")) {
        Ok(f) => f,
        Err(e) => return bad(e),
    };
    // Subscribe before reading the backlog, so nothing falls between them.
    let feed = s.log.subscribe_events();
    let log = s.log.clone();
    let since = from.clone();
    let backlog = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        log.for_each_raw(None, usize::MAX, |a, seq, bytes| {
            if seq > since.get(&a).copied().unwrap_or(0) {
                if let Ok(ev) = yipan_log::StoredEvent::decode(bytes) {
                    out.push(ev);
                }
            }
        })
        .map(|_| out)
    })
    .await;
    let backlog = match backlog {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return ApiError::from(e).into_response(),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let mut sent = from;
    for ev in &backlog {
        if let Some(a) = ev.author() {
            let e = sent.entry(a).or_insert(0);
            *e = (*e).max(ev.seq());
        }
    }
    let head = futures::stream::iter(
        backlog.into_iter().map(move |ev| Ok::<_, std::convert::Infallible>(sse_event(&ev, role))),
    );
    let log = s.log.clone();
    let stop = s.stop.clone();
    let live =
        futures::stream::unfold((feed, sent, log, stop), move |(mut feed, mut sent, log, mut stop)| async move {
            loop {
                let next = tokio::select! {
                    // The node is stopping: end the stream (clients resume from their positions).
                    _ = stop.wait_for(|s| *s) => return None,
                    n = feed.recv() => n,
                };
                match next {
                    Ok(env) => {
                        let Ok(a) = Locality::parse(&env.author) else { continue };
                        if env.author_seq <= sent.get(&a).copied().unwrap_or(0) {
                            continue;
                        }
                        sent.insert(a, env.author_seq);
                        let (reader, seq) = (log.clone(), env.author_seq);
                        let read = tokio::task::spawn_blocking(move || reader.event_at(a, seq)).await;
                        if let Ok(Ok(Some(ev))) = read {
                            return Some((Ok(sse_event(&ev, role)), (feed, sent, log, stop)));
                        }
                    }
                    // A subscriber too slow for the feed reconnects with its positions.
                    Err(_) => return None,
                }
            }
        });
    Sse::new(head.chain(live)).keep_alive(KeepAlive::default()).into_response()
}
