//! The HTTP API (JSON).
//!
//! | method, path | what |
//! | --- | --- |
//! | `POST /v1/events` | append one event (object) or a batch (array), atomically; 200 with positions, 400 naming the field, 409 on an id reused with other content |
//! | `GET /v1/events?author=&from_seq=&person=&kind=&limit=` | stored events (personal fields masked) |
//! | `GET /v1/events/{id}` | one event |
//! | `GET /v1/cards/{person}?as_of=` | the person's responsibility cards (one per relationship) |
//! | `GET /v1/scorecard?locality=\|pair=A,B\|direction=A,B&period=&as_of=` | indicators with targets and pass/fail |
//! | `GET /v1/cases?locality=&overdue=&open=&kind=&counterpart=&from=&to=&order=&as_of=` | exchanges (notification, case-assist, first-child, mismatch) with due dates and working days left or over |
//! | `GET /v1/flows?locality=&as_of=` | arrivals/departures per month with early warnings |
//! | `GET /v1/digests?pair=A,B&as_of=` | projection digests (identical on both sides of a pair) |
//! | `GET /v1/raw?after=AUTHOR:SEQ&limit=` | stored signed events, JSON lines `{author, seq, b64}` (for auditors) |
//! | `GET /v1/roster` | trust: anchor, authorities, every locality's certificate chain, key schedule and status, and the raw trust records |
//! | `GET /v1/stream?role=&from=A:S,B:T` | server-sent events: every stored event after the given per-author positions, then live; personal tiers filtered by role |
//! | `GET /v1/status` | locality, own head, channel heads, counts |
//! | `GET /v1/quarantine?after=&limit=` | rejected received events with reasons, paged |
//! | `GET /v1/dead-letters` | own messages set aside because they can never be published |
//! | `GET /v1/whoami` | the caller's locality, role, permissions, personal tiers and counterparts |
//! | `POST /v1/person-key` | `{"id_number"}` → `{"person"}`: the person key, derived on the node (the number never goes in a URL) |
//! | `GET /v1/scorecard/trend?months=&locality=\|pair=\|direction=` | the scorecards of the last months |
//! | `GET /v1/scorecard/overview?period=MONTH&months=` | the console's overview in one pass: own month/quarter/year, trend, both directions with every counterpart |
//! | `GET /v1/scorecard/counterparts?period=` | both directions with every counterpart, in one pass, worst first |
//! | `GET /v1/export?table=&format=csv\|xlsx&…` | a console table as a CSV or Excel file (no personal tiers) |
//! | `GET /v1/quality?locality=&as_of=` | data-quality flags: accepted events not to take at face value (also on each card, counted in the overview) |
//! | `GET /v1/divisions?codes=` | the current Chinese names of division codes (the registry) |
//! | `GET /v1/disclosures?person=\|after=&limit=` | the disclosure log: who received which person's tiers, when, on what basis (no personal value) |
//! | `GET /v1/disclosures/report?from=&to=` | releases per recipient, channel and role in a period |
//! | `GET /v1/audit`, `POST /v1/audit` | the last audit of the own store; audit now |
//! | `GET /console/…` | the operator console (static files, no credential; [`crate::console`]) |
//! | `GET /healthz` | liveness and NATS connection (with the console's files, the only paths without a credential) |
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
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;
use yipan_access::{Caller, Permission};
use yipan_core::{EventKind, Locality, PersonKey};
use yipan_log::SledStore;
use yipan_sync::SyncMetrics;

use crate::auth::Auth;
use crate::console;
use crate::export::{self, Cell, Table};
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
    /// The last audit of the own store (console health page).
    audits: crate::console::Audits,
    /// Views that read every relationship run off the async workers, two at a time.
    heavy: Arc<tokio::sync::Semaphore>,
    /// The working-day calendar (erasure deadlines).
    calendar: yipan_projections::calendar::WorkCalendar,
    /// Erasure deadline and retention.
    privacy: crate::erasure::PrivacyConfig,
    /// Erasure requests and receipts held here.
    erasures: crate::erasure::Registry,
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
            audits: Default::default(),
            heavy: Arc::new(tokio::sync::Semaphore::new(HEAVY_VIEWS)),
            calendar: Default::default(),
            privacy: Default::default(),
            erasures: Default::default(),
        }
    }

    /// The calendar and `[privacy]` settings erasure requests use.
    pub fn with_privacy(
        mut self,
        calendar: yipan_projections::calendar::WorkCalendar,
        privacy: crate::erasure::PrivacyConfig,
    ) -> AppState {
        self.calendar = calendar;
        self.privacy = privacy;
        self
    }

    /// Erasure requests and receipts held here.
    pub fn erasures(&self) -> &crate::erasure::Registry {
        &self.erasures
    }

    /// The node's log.
    pub fn log(&self) -> &Arc<SledStore> {
        &self.log
    }

    /// The deployment's person-key secret, if this node has one.
    pub fn person_secret(&self) -> Option<&[u8]> {
        self.person_secret.as_deref().map(|v| v.as_slice())
    }

    /// The last audit of the own store.
    pub fn audits(&self) -> &crate::console::Audits {
        &self.audits
    }

    /// The node's credentials.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }
}

/// Views over every relationship computed at once (more wait their turn).
const HEAVY_VIEWS: usize = 2;

/// Runs a view computation that reads every relationship off the async
/// workers, at most [`HEAVY_VIEWS`] at a time: a credential asking for many
/// overviews at once cannot occupy the runtime.
async fn heavy(s: &AppState, f: impl FnOnce() -> Response + Send + 'static) -> Response {
    let Ok(_permit) = s.heavy.clone().acquire_owned().await else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the node is stopping");
    };
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
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
        .route("/v1/whoami", get(console::whoami))
        .route("/v1/person-key", post(console::person_key))
        .route("/v1/scorecard/trend", get(trend))
        .route("/v1/scorecard/counterparts", get(counterparts))
        .route("/v1/scorecard/overview", get(overview))
        .route("/v1/export", get(export))
        .route("/v1/audit", get(console::last_audit).post(console::audit_now))
        .route("/v1/divisions", get(divisions))
        .route("/v1/quality", get(quality))
        .route("/v1/disclosures", get(disclosures))
        .route("/v1/disclosures/report", get(disclosure_report))
        .route("/v1/erasures", get(erasures).post(erase))
        .route("/", get(console::to_console))
        .route("/console", get(console::to_console))
        .route("/console/", get(console::index_with))
        .route("/console/{*file}", get(console::file))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::auth::layer))
        .with_state(state)
}

/// A JSON error answer.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    ApiError::new(status, message).into_response()
}

/// A JSON error answer about one input field: `{"error": …, "field": "body.township"}`,
/// so a form can show it beside the field.
pub fn field_error(status: StatusCode, message: impl Into<String>, field: &str) -> Response {
    ApiError { field: Some(field.to_string()), ..ApiError::new(status, message) }.into_response()
}

/// The field a validation error names, if it names one.
fn field_of(e: &yipan_core::Error) -> Option<String> {
    match e {
        yipan_core::Error::Field { field, .. } => Some(field.clone()),
        yipan_core::Error::UnknownKind { .. } => Some("kind".into()),
        yipan_core::Error::Json(_) => None,
    }
}

/// An error answer: status, message and, when the caller should come back,
/// `Retry-After`. Library errors are mapped to a status in one place.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    retry_after_s: Option<u64>,
    /// The input field at fault, for forms.
    field: Option<String>,
}

impl ApiError {
    /// An answer with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), retry_after_s: None, field: None }
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
        let field = match &e {
            E::Invalid(source) | E::InvalidInBatch { source, .. } => field_of(source),
            _ => None,
        };
        let message = match e {
            E::InvalidInBatch { index, source } => format!("event [{index}]: {source}"),
            other => other.to_string(),
        };
        ApiError { status, message, retry_after_s: retry, field }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.field {
            Some(f) => json!({ "error": self.message, "field": f }),
            None => json!({ "error": self.message }),
        };
        let mut r = (self.status, Json(body)).into_response();
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
                let message = format!("{at}{e}; nothing was written");
                return match field_of(&e) {
                    Some(f) => field_error(StatusCode::BAD_REQUEST, message, &f),
                    None => error(StatusCode::BAD_REQUEST, message),
                };
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

/// Records in the disclosure log the personal tiers `events` carry for
/// `caller`'s role (nothing for a role without tiers). A release that cannot
/// be recorded is not made: the answer is 503.
async fn disclose_to(
    s: &AppState,
    caller: &Caller,
    channel: &str,
    masked: bool,
    events: &[yipan_log::StoredEvent],
) -> Result<(), Response> {
    let audience = caller.role.audience();
    if audience.tiers().is_empty() {
        return Ok(());
    }
    let (who, role) = (caller.label(), caller.role.name());
    let basis = format!("role `{role}` of the caller's credential");
    let released: Vec<yipan_log::disclosure::Disclosure> = events
        .iter()
        .filter_map(|e| {
            yipan_log::disclosure::Disclosure::of(&e.for_audience(audience), channel, &who, role, masked, &basis)
        })
        .collect();
    if released.is_empty() {
        return Ok(());
    }
    let log = s.log.clone();
    match tokio::task::spawn_blocking(move || log.disclose(&released)).await {
        Ok(Ok(())) => Ok(()),
        _ => {
            tracing::error!("cannot record disclosures of an HTTP answer; withholding it");
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the release of personal data cannot be recorded in the disclosure log; try again",
            );
            r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(5));
            Err(r)
        }
    }
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
            let events: Vec<_> =
                events.into_iter().filter(|e| kind.is_none() || e.kind() == kind).take(limit).collect();
            if let Err(r) = disclose_to(&s, &caller, "http", !reveal, &events).await {
                return r;
            }
            let out: Vec<Value> = events.iter().map(|e| shown(e, &caller, reveal)).collect();
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
        Ok(Some(ev)) => {
            if let Err(r) = disclose_to(&s, &caller, "http", !q.reveal, std::slice::from_ref(&ev)).await {
                return r;
            }
            Json(shown(&ev, &caller, q.reveal)).into_response()
        }
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no event {id}")),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn status(State(s): State<AppState>) -> Response {
    let me = s.log.locality();
    let (seq, hash) = s.log.head().unwrap_or((0, [0; 32]));
    let outbound: Vec<Value> = match s.log.outbound_heads(u64::MAX) {
        Ok(heads) => heads.into_iter().map(|(r, h)| json!({"recipient": r, "head": h})).collect(),
        Err(e) => return ApiError::from(e).into_response(),
    };
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
        // Append at the author → stored here, over the node's life.
        "lag_ms": {
            "p50": s.sync.lag.quantile_ms(0.5),
            "p99": s.sync.lag.quantile_ms(0.99),
            "samples": s.sync.lag.count(),
        },
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
    /// `/v1/cases`: only this workflow (`notification`, `case_assist`, `first_child`, `certificate_mismatch`).
    kind: Option<String>,
    /// `/v1/cases`: only exchanges with this locality on the other side.
    counterpart: Option<String>,
    /// `/v1/cases`: only exchanges asked by this locality.
    from: Option<String>,
    /// `/v1/cases`: only exchanges this locality must answer.
    to: Option<String>,
    /// `/v1/cases`: only exchanges not answered yet (open or overdue).
    open: Option<bool>,
    /// `/v1/cases`: `overdue_first` (most overdue first, then by due date); default by opening time.
    order: Option<String>,
    /// `/v1/scorecard/trend`: how many months back (default 12, at most 36).
    months: Option<u32>,
    /// `/v1/export`: which table.
    table: Option<String>,
    /// `/v1/export`: `csv` or `xlsx`.
    format: Option<String>,
    /// `/v1/export?table=card|timeline`: the person key.
    person: Option<String>,
    /// `/v1/export`: header language, `zh` (default) or `en`.
    lang: Option<String>,
}

impl AppState {
    pub(crate) fn read_views(&self) -> std::sync::RwLockReadGuard<'_, yipan_projections::Projections> {
        self.views.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The day this locality's statistics months close on (its catalogue in force now).
    fn closes_now(&self) -> u32 {
        self.read_views().closes_on(self.log.locality(), chrono::Utc::now())
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
    let rels = v.relationships_of_person(&person);
    let flags = v.quality_of(&rels, as_of);
    let cards: Vec<Value> = rels
        .iter()
        .map(|r| {
            let mut card = serde_json::to_value(v.card(r, as_of)).unwrap_or(Value::Null);
            // The relationship's data-quality flags, beside the duties they may distort.
            card["quality"] = json!(flags.iter().filter(|f| f.rel == *r).collect::<Vec<_>>());
            card
        })
        .collect();
    Json(cards).into_response()
}

async fn scorecard(State(s): State<AppState>, Query(q): Query<ViewQuery>) -> Response {
    let scope = views::parse_scope(q.locality.as_deref(), q.pair.as_deref(), q.direction.as_deref(), s.log.locality());
    let (scope, as_of) = match (scope, views::parse_as_of(q.as_of.as_deref())) {
        (Ok(a), Ok(c)) => (a, c),
        (Err(e), _) | (_, Err(e)) => return bad(e),
    };
    let v = s.read_views();
    // No period given: the statistics month holding today, by the assessed locality's close day.
    let period = match views::parse_period(q.period.as_deref(), v.closes_on(scope.assessed(), chrono::Utc::now())) {
        Ok(p) => p,
        Err(e) => return bad(e),
    };
    Json(v.scorecard(scope, period, as_of)).into_response()
}

/// The exchanges a `/v1/cases` query selects, each with its working days
/// left (positive) or over (negative) for those not answered yet.
fn select_cases(
    v: &yipan_projections::Projections,
    me: Locality,
    q: &ViewQuery,
) -> Result<Vec<(yipan_projections::state::Exchange, Option<i64>)>, String> {
    use yipan_projections::state::ExchangeKind;
    let (as_of, locality) = as_of_and_locality(q)?;
    let code = |field: &str, v: &Option<String>| {
        v.as_deref().map(Locality::parse).transpose().map_err(|e| format!("{field}: {e}"))
    };
    let (counterpart, from, to) = (code("counterpart", &q.counterpart)?, code("from", &q.from)?, code("to", &q.to)?);
    let kind = match q.kind.as_deref() {
        None => None,
        Some("notification") => Some(ExchangeKind::Notification),
        Some("case_assist") => Some(ExchangeKind::CaseAssist),
        Some("first_child") => Some(ExchangeKind::FirstChild),
        Some("certificate_mismatch") => Some(ExchangeKind::CertificateMismatch),
        Some(k) => {
            return Err(format!(
                "kind: `{}` is not notification, case_assist, first_child or certificate_mismatch",
                yipan_core::clip(k)
            ))
        }
    };
    let overdue_first = match q.order.as_deref() {
        None | Some("opened") => false,
        Some("overdue_first") => true,
        Some(o) => return Err(format!("order: `{}` is not opened or overdue_first", yipan_core::clip(o))),
    };
    let today = yipan_projections::calendar::date_of(as_of);
    let mut ex = v.all_exchanges(locality, as_of);
    ex.retain(|e| {
        (q.overdue != Some(true) || e.overdue())
            && (q.open != Some(true) || !matches!(e.state, yipan_projections::state::ExchangeState::Closed { .. }))
            && kind.is_none_or(|k| e.kind == k)
            && from.is_none_or(|f| e.from == f)
            && to.is_none_or(|t| e.to == t)
            && counterpart.is_none_or(|c| {
                let mine = locality.unwrap_or(me);
                (e.from == c || e.to == c) && (e.from == mine || e.to == mine)
            })
    });
    let mut out: Vec<_> = ex
        .into_iter()
        .map(|e| {
            let days = match e.state {
                yipan_projections::state::ExchangeState::Closed { .. } => None,
                _ => Some(v.calendar().working_days_between(today, e.due)),
            };
            (e, days)
        })
        .collect();
    if overdue_first {
        // Most days over first; then what falls due soonest; answered ones last.
        out.sort_by_key(|(e, days)| (days.is_none(), days.unwrap_or(0), e.due, e.opened));
    }
    Ok(out)
}

async fn cases(State(s): State<AppState>, Query(q): Query<ViewQuery>) -> Response {
    let selected = {
        let v = s.read_views();
        select_cases(&v, s.log.locality(), &q)
    };
    let ex = match selected {
        Ok(x) => x,
        Err(e) => return bad(e),
    };
    // Paged: the total goes in `X-Total-Count`, the page is `offset`..`offset + limit`.
    let total = ex.len();
    let (offset, limit) = (q.offset.unwrap_or(0), q.limit.unwrap_or(1000).clamp(1, 10_000));
    let page: Vec<Value> = ex
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|(e, days)| {
            let mut v = serde_json::to_value(&e).unwrap_or(Value::Null);
            v["working_days"] = json!(days);
            v
        })
        .collect();
    let mut r = Json(page).into_response();
    r.headers_mut().insert("x-total-count", header::HeaderValue::from(total));
    r
}

/// The scorecards of the `months` months up to this one (oldest first), as
/// known now, in one pass over the scope's relationships.
fn trend_of(
    v: &yipan_projections::Projections,
    scope: yipan_projections::scorecard::Scope,
    months: u32,
    as_of: chrono::DateTime<chrono::Utc>,
) -> Vec<yipan_projections::scorecard::Scorecard> {
    let last = yipan_projections::Period::month_of_at(
        yipan_projections::calendar::date_of(as_of),
        v.closes_on(scope.assessed(), as_of),
    );
    v.scorecards(scope, &months_back(last, months), as_of)
}

/// The `n` months ending with `last`, oldest first.
fn months_back(last: yipan_projections::Period, n: u32) -> Vec<yipan_projections::Period> {
    let mut period = last;
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        out.push(period);
        period = period.prev_month();
    }
    out.reverse();
    out
}

/// `GET /v1/scorecard/overview?period=MONTH&months=12`: what the console's
/// overview shows, from one pass over this locality's relationships: its
/// scorecard for the month, its quarter and its year; the `months` months up
/// to it (trend); and both directions with every counterpart for the
/// month, quarter and year, worst first (most indicators missed in the month).
async fn overview(State(s): State<AppState>, Query(q): Query<ViewQuery>) -> Response {
    let state = s.clone();
    heavy(&s, move || overview_now(state, q)).await
}

fn overview_now(s: AppState, q: ViewQuery) -> Response {
    use yipan_projections::Period;
    let as_of = match views::parse_as_of(q.as_of.as_deref()) {
        Ok(a) => a,
        Err(e) => return bad(e),
    };
    let month = match views::parse_period(q.period.as_deref(), s.closes_now()) {
        Ok(p @ Period::Month(..)) => p,
        Ok(p) => return bad(format!("period: `{p}` is not a month such as 2026-11")),
        Err(e) => return bad(e),
    };
    let months = q.months.unwrap_or(12);
    if !(1..=36).contains(&months) {
        return bad(format!("months: {months} is not between 1 and 36"));
    }
    let Period::Month(y, m) = month else { return bad("period: not a month".into()) };
    let (quarter, year) = (Period::Quarter(y, (m - 1) / 3 + 1), Period::Year(y));
    let mut periods = vec![month, quarter, year];
    let trend = months_back(month, months);
    periods.extend(trend.iter().filter(|p| **p != month));
    let me = s.log.locality();
    let (o, quality_counts) = {
        let v = s.read_views();
        let mut counts: std::collections::BTreeMap<&str, u64> = Default::default();
        for f in v.quality(Some(me), as_of) {
            *counts.entry(f.code).or_default() += 1;
        }
        (v.overview(me, &periods, 3, as_of), counts)
    };
    let cards = |cs: &[yipan_projections::scorecard::Scorecard]| json!({"month": cs[0].indicators, "quarter": cs[1].indicators, "year": cs[2].indicators});
    // Counterparts' indicators without the names and targets the own ones carry
    // (hundreds of counterparts: the answer stays a few hundred kilobytes).
    let compact = |cs: &[yipan_projections::scorecard::Scorecard]| {
        let one = |c: &yipan_projections::scorecard::Scorecard| -> Vec<Value> {
            c.indicators
                .iter()
                .map(|i| json!({"id": i.id, "value": i.value, "pass": i.pass, "numerator": i.numerator, "denominator": i.denominator}))
                .collect()
        };
        json!({"month": one(&cs[0]), "quarter": one(&cs[1]), "year": one(&cs[2])})
    };
    let trend: Vec<Value> = trend
        .iter()
        .filter_map(|p| periods.iter().position(|q| q == p))
        .map(|i| json!({"period": o.own[i].period, "indicators": o.own[i].indicators}))
        .collect();
    let failed =
        |c: &yipan_projections::scorecard::Scorecard| c.indicators.iter().filter(|i| i.pass == Some(false)).count();
    let mut rows: Vec<(usize, Value)> = o
        .counterparts
        .iter()
        .map(|(other, out, back)| {
            (
                failed(&out[0]) + failed(&back[0]),
                json!({"counterpart": other, "outbound": compact(out), "inbound": compact(back)}),
            )
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    Json(json!({
        "locality": me,
        "as_of": as_of,
        "periods": {"month": month, "quarter": quarter, "year": year},
        // Each period's first and last day (statistics months close on the catalogue's day).
        "bounds": {
            "month": [o.own[0].from, o.own[0].to],
            "quarter": [o.own[1].from, o.own[1].to],
            "year": [o.own[2].from, o.own[2].to],
        },
        "own": cards(&o.own),
        "trend": trend,
        "counterparts": rows.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
        "quality": quality_counts,
    }))
    .into_response()
}

/// The scope, months and instant of a trend query.
fn trend_query(
    s: &AppState,
    q: &ViewQuery,
) -> Result<(yipan_projections::scorecard::Scope, u32, chrono::DateTime<chrono::Utc>), String> {
    let scope = views::parse_scope(q.locality.as_deref(), q.pair.as_deref(), q.direction.as_deref(), s.log.locality())?;
    let months = q.months.unwrap_or(12);
    if !(1..=36).contains(&months) {
        return Err(format!("months: {months} is not between 1 and 36"));
    }
    Ok((scope, months, views::parse_as_of(q.as_of.as_deref())?))
}

/// `GET /v1/scorecard/trend?months=12&locality=|pair=|direction=`.
async fn trend(State(s): State<AppState>, Query(q): Query<ViewQuery>) -> Response {
    let state = s.clone();
    heavy(&s, move || trend_now(state, q)).await
}

fn trend_now(s: AppState, q: ViewQuery) -> Response {
    let (scope, months, as_of) = match trend_query(&s, &q) {
        Ok(x) => x,
        Err(e) => return bad(e),
    };
    let cards = trend_of(&s.read_views(), scope, months, as_of);
    let periods: Vec<Value> = cards
        .iter()
        .map(|c| {
            let indicators: Vec<Value> = c
                .indicators
                .iter()
                .map(|i| json!({"id": i.id, "value": i.value, "pass": i.pass, "target": i.target, "numerator": i.numerator, "denominator": i.denominator}))
                .collect();
            json!({"period": c.period, "indicators": indicators})
        })
        .collect();
    Json(json!({"scope": scope, "as_of": as_of, "months": months, "periods": periods})).into_response()
}

/// `GET /v1/scorecard/counterparts?period=`: both directions with every
/// counterpart of this locality, worst first (most failed indicators).
async fn counterparts(State(s): State<AppState>, Query(q): Query<ViewQuery>) -> Response {
    let state = s.clone();
    heavy(&s, move || counterparts_now(state, q)).await
}

fn counterparts_now(s: AppState, q: ViewQuery) -> Response {
    let (period, as_of) =
        match (views::parse_period(q.period.as_deref(), s.closes_now()), views::parse_as_of(q.as_of.as_deref())) {
            (Ok(p), Ok(a)) => (p, a),
            (Err(e), _) | (_, Err(e)) => return bad(e),
        };
    let me = s.log.locality();
    let all = s.read_views().counterpart_scorecards(me, period, as_of);
    let failed =
        |c: &yipan_projections::scorecard::Scorecard| c.indicators.iter().filter(|i| i.pass == Some(false)).count();
    let mut rows: Vec<(usize, Value)> = all
        .iter()
        .map(|(other, out, back)| {
            (
                failed(out) + failed(back),
                json!({"counterpart": other, "outbound": out.indicators, "inbound": back.indicators}),
            )
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    let rows: Vec<Value> = rows.into_iter().map(|(_, v)| v).collect();
    Json(json!({"locality": me, "period": period, "as_of": as_of, "counterparts": rows})).into_response()
}

/// `GET /v1/quality?locality=&as_of=`: data-quality flags — accepted events a
/// reader must not take at face value (time not given, an answer to a request
/// not held, dated before the arrival), the same on both sides.
async fn quality(State(s): State<AppState>, Query(q): Query<ViewQuery>) -> Response {
    let (as_of, locality) = match as_of_and_locality(&q) {
        Ok(x) => x,
        Err(e) => return bad(e),
    };
    let flags = s.read_views().quality(Some(locality.unwrap_or(s.log.locality())), as_of);
    Json(json!({"as_of": as_of, "flags": flags})).into_response()
}

/// Query of `GET /v1/divisions`.
#[derive(Debug, Deserialize)]
pub struct DivisionQuery {
    /// Comma-separated codes (at most 1,000).
    codes: Option<String>,
}

/// `GET /v1/divisions?codes=610112,411522`: the current Chinese name of each
/// county- or township-level code (`null` for a code not in the registry).
async fn divisions(Query(q): Query<DivisionQuery>) -> Response {
    let mut out = serde_json::Map::new();
    for code in q.codes.as_deref().unwrap_or("").split(',').map(str::trim).filter(|c| !c.is_empty()).take(1000) {
        let name = Locality::parse(code).ok().and_then(yipan_core::division::name);
        out.insert(yipan_core::clip(code), json!(name));
    }
    Json(Value::Object(out)).into_response()
}

/// Query of `GET /v1/disclosures` and its report.
#[derive(Debug, Deserialize)]
pub struct DisclosureQuery {
    /// One person's releases (person key).
    person: Option<String>,
    /// Paging through all: the last entry number seen.
    after: Option<u64>,
    /// Entries per page (default 1,000, at most 10,000).
    limit: Option<usize>,
    /// Report: first day (China time, inclusive).
    from: Option<String>,
    /// Report: last day (China time, inclusive).
    to: Option<String>,
}

/// `GET /v1/disclosures?person=KEY` (who received this person's data) or
/// `?after=N&limit=M` (the whole log, paged). Entries carry no personal value.
async fn disclosures(State(s): State<AppState>, Query(q): Query<DisclosureQuery>) -> Response {
    let log = s.log.clone();
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let person = match q.person.as_deref().map(PersonKey::parse).transpose() {
        Ok(p) => p,
        Err(e) => return bad(format!("person: {e}")),
    };
    let read = tokio::task::spawn_blocking(move || match person {
        Some(p) => log.disclosures_of(&p).map(|e| (e, false)),
        None => log.disclosures_page(q.after.unwrap_or(0), limit + 1).map(|mut e| {
            let more = e.len() > limit;
            e.truncate(limit);
            (e, more)
        }),
    })
    .await;
    match read {
        Ok(Ok((entries, more))) => {
            let next = more.then(|| entries.last().map(|e| e.n)).flatten();
            Json(json!({"person": q.person, "entries": entries, "next": next})).into_response()
        }
        Ok(Err(e)) => ApiError::from(e).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Deserialize)]
struct ErasureQuery {
    person: Option<String>,
    as_of: Option<String>,
}

/// `GET /v1/erasures?person=&as_of=`: erasure requests sent and received,
/// each recipient's answer (confirmed with its receipt, open, or overdue).
async fn erasures(State(s): State<AppState>, Query(q): Query<ErasureQuery>) -> Response {
    let person = match q.person.as_deref().map(PersonKey::parse).transpose() {
        Ok(p) => p,
        Err(e) => return field_error(StatusCode::BAD_REQUEST, format!("person: {e}"), "person"),
    };
    let as_of = match views::parse_as_of(q.as_of.as_deref()) {
        Ok(t) => t,
        Err(e) => return field_error(StatusCode::BAD_REQUEST, e, "as_of"),
    };
    let list = crate::erasure::views(&s.erasures, s.log.locality(), person.as_ref(), as_of);
    Json(json!({"as_of": as_of.to_rfc3339(), "erasures": list})).into_response()
}

/// `POST /v1/erasures` `{"person"|"id_number", "tiers": ["health",…], "basis": "person_request", "reference": "…"}`:
/// erases the person's tiers here and asks every recipient to do the same.
async fn erase(State(s): State<AppState>, body: axum::body::Bytes) -> Response {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[serde(default)]
        person: Option<String>,
        #[serde(default)]
        id_number: Option<String>,
        #[serde(default)]
        tiers: Vec<String>,
        #[serde(default)]
        basis: String,
        #[serde(default)]
        reference: String,
    }
    let b: Body = match serde_json::from_slice(&body) {
        Ok(b) => b,
        // serde's message may quote a value: say only where it failed.
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("malformed erasure request (line {} column {}): expected {{\"person\" or \"id_number\", \"tiers\", \"basis\", \"reference\"}}", e.line(), e.column()),
            )
        }
    };
    let mut bad_check_digit = false;
    let person = match (&b.person, &b.id_number, s.person_secret()) {
        (Some(p), None, _) => match PersonKey::parse(p) {
            Ok(p) => p,
            Err(e) => return field_error(StatusCode::BAD_REQUEST, format!("person: {e}"), "person"),
        },
        (None, Some(id), Some(secret)) => match PersonKey::of_id_number(id, secret) {
            Ok((key, check)) => {
                bad_check_digit = check == yipan_core::person::IdCheck::BadCheckDigit;
                key
            }
            Err(e) => return field_error(StatusCode::BAD_REQUEST, format!("id_number: {e}"), "id_number"),
        },
        (None, Some(_), None) => {
            return field_error(
                StatusCode::CONFLICT,
                "id_number: this node has no person-key secret; give the person key",
                "id_number",
            )
        }
        _ => {
            return field_error(
                StatusCode::BAD_REQUEST,
                "person: give exactly one of `person` and `id_number`",
                "person",
            )
        }
    };
    let mut tiers = Vec::new();
    for (i, t) in b.tiers.iter().enumerate() {
        match yipan_core::kind::tier_from_name(t) {
            Some(t) => tiers.push(t),
            None => {
                return field_error(
                    StatusCode::BAD_REQUEST,
                    format!("tiers[{i}]: `{}` is not a tier (identity, contact, health)", yipan_core::clip(t)),
                    "tiers",
                )
            }
        }
    }
    let basis = match yipan_proto::v1::ErasureBasis::from_str_name(&format!("ERASURE_BASIS_{}", b.basis.to_uppercase())) {
        Some(v) if !b.basis.is_empty() => v,
        _ => {
            return field_error(
                StatusCode::BAD_REQUEST,
                format!(
                    "basis: `{}` is not one of person_request, retention_expired, purpose_fulfilled, consent_withdrawn, unlawful_processing",
                    yipan_core::clip(&b.basis)
                ),
                "basis",
            )
        }
    };
    let req = crate::erasure::Request { person, tiers, basis, reference: b.reference };
    let (log, calendar, days) = (s.log.clone(), s.calendar.clone(), s.privacy.erasure_answer_working_days);
    let done =
        tokio::task::spawn_blocking(move || crate::erasure::request(&log, &calendar, days, &req, chrono::Utc::now()))
            .await;
    match done {
        Ok(Ok(outcome)) => {
            let mut v = json!(outcome);
            // As the event API warns: the key exists either way, but was the number typed right?
            let warnings: Vec<&str> =
                if bad_check_digit { vec!["id_number: the check digit is wrong"] } else { vec![] };
            v["warnings"] = json!(warnings);
            (StatusCode::CREATED, Json(v)).into_response()
        }
        Ok(Err(r)) => field_error(StatusCode::UNPROCESSABLE_ENTITY, format!("{}: {}", r.field, r.message), r.field),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /v1/disclosures/report?from=DAY&to=DAY`: per recipient, channel and
/// role, the releases, distinct persons and releases of each tier in the
/// period (China-time days, inclusive; default the current month).
async fn disclosure_report(State(s): State<AppState>, Query(q): Query<DisclosureQuery>) -> Response {
    use chrono::Datelike;
    let day = |field: &str, v: &Option<String>| -> Result<Option<chrono::NaiveDate>, String> {
        v.as_deref()
            .map(|d| {
                chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                    .map_err(|_| format!("{field}: `{}` is not a date such as 2026-11-01", yipan_core::clip(d)))
            })
            .transpose()
    };
    let today = yipan_projections::calendar::date_of(chrono::Utc::now());
    let (from, to) = match (day("from", &q.from), day("to", &q.to)) {
        (Ok(f), Ok(t)) => (f.unwrap_or(today.with_day(1).unwrap_or(today)), t.unwrap_or(today)),
        (Err(e), _) | (_, Err(e)) => return bad(e),
    };
    if from > to {
        return bad(format!("from: {from} is after to: {to}"));
    }
    let log = s.log.clone();
    let read = tokio::task::spawn_blocking(move || {
        #[derive(Default)]
        struct Row {
            releases: u64,
            persons: std::collections::HashSet<String>,
            tiers: std::collections::BTreeMap<String, u64>,
            masked: u64,
        }
        let mut rows: std::collections::BTreeMap<(String, String, String), Row> = Default::default();
        let mut after = 0;
        loop {
            let page = log.disclosures_page(after, 10_000)?;
            let Some(last) = page.last().map(|e| e.n) else { break };
            for e in page {
                let d = e.disclosure;
                let Ok(at) = yipan_core::time::parse_rfc3339(&d.at) else { continue };
                let date = yipan_projections::calendar::date_of(at);
                if date < from || date > to {
                    continue;
                }
                let row = rows.entry((d.recipient, d.channel, d.role)).or_default();
                row.releases += 1;
                row.masked += u64::from(d.masked);
                row.persons.insert(d.person);
                for t in d.tiers {
                    *row.tiers.entry(t).or_default() += 1;
                }
            }
            after = last;
        }
        let out: Vec<Value> = rows
            .into_iter()
            .map(|((recipient, channel, role), r)| {
                json!({"recipient": recipient, "channel": channel, "role": role, "releases": r.releases,
                       "persons": r.persons.len(), "masked": r.masked, "tiers": r.tiers})
            })
            .collect();
        Ok::<_, yipan_log::Error>(out)
    })
    .await;
    match read {
        Ok(Ok(rows)) => Json(json!({"from": from, "to": to, "recipients": rows})).into_response(),
        Ok(Err(e)) => ApiError::from(e).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /v1/export?table=&format=csv|xlsx&…`: a table of the console as a file.
async fn export(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ViewQuery>,
) -> Response {
    let table = q.table.clone().unwrap_or_default();
    if let Some(r) = export::check(&table, &caller) {
        if r.status() == StatusCode::FORBIDDEN {
            s.auth.forbidden.fetch_add(1, Ordering::Relaxed);
        }
        return r;
    }
    let format = q.format.clone().unwrap_or_else(|| "xlsx".into());
    let en = match q.lang.as_deref() {
        None | Some("zh") => false,
        Some("en") => true,
        Some(l) => return bad(format!("lang: `{}` is not zh or en", yipan_core::clip(l))),
    };
    let me = s.log.locality();
    let built = match table.as_str() {
        "timeline" => timeline_table(&s, &q, en).await,
        "quarantine" => quarantine_table(&s, en).await,
        _ => {
            let state = s.clone();
            return heavy(&s, move || match view_table(&state, &table, &q, en) {
                Ok(t) => export::respond(&t, &format, me),
                Err(e) => bad(e),
            })
            .await;
        }
    };
    match built {
        Ok(t) => heavy(&s, move || export::respond(&t, &format, me)).await,
        Err(e) => bad(e),
    }
}

/// Chooses the header language.
fn h<'a>(en: bool, zh: &'a [&'a str], english: &'a [&'a str]) -> &'a [&'a str] {
    if en {
        english
    } else {
        zh
    }
}

fn pass_text(pass: Option<bool>, en: bool) -> Cell {
    match (pass, en) {
        (None, _) => Cell::Empty,
        (Some(true), false) => "达标".into(),
        (Some(false), false) => "未达标".into(),
        (Some(true), true) => "pass".into(),
        (Some(false), true) => "fail".into(),
    }
}

fn instant(t: chrono::DateTime<chrono::Utc>) -> String {
    t.with_timezone(&yipan_projections::calendar::cst()).format("%Y-%m-%d %H:%M").to_string()
}

/// The tables built from the projections.
fn view_table(s: &AppState, table: &str, q: &ViewQuery, en: bool) -> Result<Table, String> {
    use yipan_projections::state::{ExchangeState, ItemState};
    let v = s.read_views();
    let close = v.closes_on(s.log.locality(), chrono::Utc::now());
    match table {
        "scorecard" => {
            let scope =
                views::parse_scope(q.locality.as_deref(), q.pair.as_deref(), q.direction.as_deref(), s.log.locality())?;
            let card = v.scorecard(
                scope,
                views::parse_period(q.period.as_deref(), close)?,
                views::parse_as_of(q.as_of.as_deref())?,
            );
            let mut t = Table::new(
                "scorecard",
                h(
                    en,
                    &["期间", "指标", "目标", "比较", "分子", "分母", "值", "是否达标"],
                    &["period", "indicator", "target", "comparison", "numerator", "denominator", "value", "pass"],
                ),
            );
            for i in &card.indicators {
                t.row(vec![
                    card.period.to_string().into(),
                    (if en { i.name_en } else { i.name_zh }).into(),
                    i.target.into(),
                    (if en {
                        i.comparison
                    } else if i.comparison == "at_most" {
                        "不高于"
                    } else {
                        "不低于"
                    })
                    .into(),
                    i.numerator.into(),
                    i.denominator.into(),
                    i.value.into(),
                    pass_text(i.pass, en),
                ]);
            }
            Ok(t)
        }
        "trend" => {
            let (scope, months, as_of) = trend_query(s, q)?;
            let cards = trend_of(&v, scope, months, as_of);
            let mut headers: Vec<&str> = vec![if en { "period" } else { "期间" }];
            if let Some(first) = cards.first() {
                headers.extend(first.indicators.iter().map(|i| if en { i.name_en } else { i.name_zh }));
            }
            let mut t = Table::new("trend", &headers);
            for c in &cards {
                let mut row: Vec<Cell> = vec![c.period.to_string().into()];
                row.extend(c.indicators.iter().map(|i| Cell::from(i.value)));
                t.row(row);
            }
            Ok(t)
        }
        "counterparts" => {
            let me = s.log.locality();
            let (period, as_of) =
                (views::parse_period(q.period.as_deref(), close)?, views::parse_as_of(q.as_of.as_deref())?);
            let all = v.counterpart_scorecards(me, period, as_of);
            let mut headers: Vec<&str> =
                if en { vec!["period", "assessed", "toward"] } else { vec!["期间", "被考核方", "对方"] };
            if let Some((_, out, _)) = all.first() {
                headers.extend(out.indicators.iter().map(|i| if en { i.name_en } else { i.name_zh }));
            }
            let mut t = Table::new("counterparts", &headers);
            for (other, out, back) in &all {
                for (assessed, toward, card) in [(me, *other, out), (*other, me, back)] {
                    let mut row: Vec<Cell> =
                        vec![period.to_string().into(), assessed.to_string().into(), toward.to_string().into()];
                    row.extend(card.indicators.iter().map(|i| Cell::from(i.value)));
                    t.row(row);
                }
            }
            Ok(t)
        }
        "cases" => {
            let mut t = Table::new(
                "cases",
                h(
                    en,
                    &[
                        "类型",
                        "紧急",
                        "发起方",
                        "应答方",
                        "人员编号",
                        "户籍地",
                        "现居住地",
                        "发起时间",
                        "截止日期",
                        "状态",
                        "超期天数",
                        "剩余/超期工作日",
                        "应答事件",
                        "应答时间",
                        "是否按时",
                        "请求事件",
                    ],
                    &[
                        "kind",
                        "urgent",
                        "from",
                        "to",
                        "person",
                        "origin",
                        "residence",
                        "opened",
                        "due",
                        "state",
                        "days overdue",
                        "working days left (+) / over (-)",
                        "answered by",
                        "answered at",
                        "on time",
                        "request",
                    ],
                ),
            );
            for (e, days) in select_cases(&v, s.log.locality(), q)? {
                let (state, overdue, by, at, on_time): (
                    &str,
                    Option<i64>,
                    Option<String>,
                    Option<String>,
                    Option<&str>,
                ) = match &e.state {
                    ExchangeState::Closed { by, at, on_time } => (
                        if en { "answered" } else { "已应答" },
                        None,
                        Some(by.to_string()),
                        Some(instant(*at)),
                        Some(match (on_time, en) {
                            (true, false) => "按时",
                            (false, false) => "逾期",
                            (true, true) => "yes",
                            (false, true) => "no",
                        }),
                    ),
                    ExchangeState::Open => (if en { "open" } else { "办理中" }, None, None, None, None),
                    ExchangeState::Overdue { days } => {
                        (if en { "overdue" } else { "已超期" }, Some(*days), None, None, None)
                    }
                };
                t.row(vec![
                    (if en { format!("{:?}", e.kind) } else { e.kind.zh().to_string() }).into(),
                    (if e.urgent {
                        if en {
                            "yes"
                        } else {
                            "是"
                        }
                    } else {
                        ""
                    })
                    .into(),
                    e.from.to_string().into(),
                    e.to.to_string().into(),
                    e.rel.person.to_string().into(),
                    e.rel.origin.to_string().into(),
                    e.rel.residence.to_string().into(),
                    instant(e.opened).into(),
                    e.due.to_string().into(),
                    state.into(),
                    overdue.into(),
                    days.into(),
                    by.into(),
                    at.into(),
                    on_time.map(Cell::from).unwrap_or(Cell::Empty),
                    e.request.to_string().into(),
                ]);
            }
            Ok(t)
        }
        "flows" => {
            let (as_of, locality) = as_of_and_locality(q)?;
            let flows = v.flows(locality, as_of);
            let mut t = Table::new(
                "flows",
                h(
                    en,
                    &["月份", "现居住地", "户籍地", "流入", "流出", "预警"],
                    &["month", "residence", "origin", "arrivals", "departures", "warning"],
                ),
            );
            for r in &flows.rows {
                let warned = flows
                    .warnings
                    .iter()
                    .find(|w| w.period == r.period && w.residence == r.residence && w.origin == Some(r.origin));
                t.row(vec![
                    r.period.to_string().into(),
                    r.residence.to_string().into(),
                    r.origin.to_string().into(),
                    r.arrivals.into(),
                    r.departures.into(),
                    warned.map(|w| Cell::from(w.direction)).unwrap_or(Cell::Empty),
                ]);
            }
            Ok(t)
        }
        "card" => {
            let person = PersonKey::parse(q.person.as_deref().ok_or("person: required for the card table")?)
                .map_err(|e| format!("person: {e}"))?;
            let as_of = views::parse_as_of(q.as_of.as_deref())?;
            let mut t = Table::new(
                "card",
                h(
                    en,
                    &[
                        "户籍地",
                        "现居住地",
                        "事项",
                        "责任方",
                        "截止日期",
                        "状态",
                        "完成事件",
                        "完成时间",
                        "是否按时",
                        "超期天数",
                    ],
                    &[
                        "origin",
                        "residence",
                        "item",
                        "side",
                        "due",
                        "state",
                        "done by",
                        "done at",
                        "on time",
                        "days overdue",
                    ],
                ),
            );
            for r in v.relationships_of_person(&person) {
                let card = v.card(&r, as_of);
                for i in &card.items {
                    let side = match (i.side, en) {
                        (yipan_projections::catalogue::Side::Origin, false) => "户籍地",
                        (yipan_projections::catalogue::Side::Residence, false) => "现居住地",
                        (yipan_projections::catalogue::Side::Origin, true) => "origin",
                        (yipan_projections::catalogue::Side::Residence, true) => "residence",
                    };
                    let (state, by, at, on_time, days): (&str, Option<String>, Option<String>, Cell, Option<i64>) =
                        match &i.state {
                            ItemState::Done { by, at, on_time } => (
                                if en { "done" } else { "已完成" },
                                Some(by.to_string()),
                                Some(instant(*at)),
                                pass_text(Some(*on_time), en),
                                None,
                            ),
                            ItemState::Pending => (if en { "pending" } else { "待办" }, None, None, Cell::Empty, None),
                            ItemState::Overdue { days } => {
                                (if en { "overdue" } else { "已超期" }, None, None, Cell::Empty, Some(*days))
                            }
                        };
                    t.row(vec![
                        r.origin.to_string().into(),
                        r.residence.to_string().into(),
                        (if en { i.name_en.clone() } else { i.name_zh.clone() }).into(),
                        side.into(),
                        i.due.to_string().into(),
                        state.into(),
                        by.into(),
                        at.into(),
                        on_time,
                        days.into(),
                    ]);
                }
            }
            Ok(t)
        }
        other => Err(format!("table: `{}` is not exported", yipan_core::clip(other))),
    }
}

/// A person's events: who did what when; no personal tier.
async fn timeline_table(s: &AppState, q: &ViewQuery, en: bool) -> Result<Table, String> {
    let person = PersonKey::parse(q.person.as_deref().ok_or("person: required for the timeline table")?)
        .map_err(|e| format!("person: {e}"))?;
    let log = s.log.clone();
    let events = tokio::task::spawn_blocking(move || log.read_person(person))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let mut t = Table::new(
        "timeline",
        h(
            en,
            &["记录方", "序号", "事件", "发生时间", "记录时间", "户籍地", "现居住地", "事件编号"],
            &["author", "seq", "event", "occurred", "recorded", "origin", "residence", "event id"],
        ),
    );
    for e in &events {
        let env = &e.envelope;
        let kind = e.kind().map(|k| if en { k.name().to_string() } else { k.zh().to_string() }).unwrap_or_default();
        let at = |ts: &Option<yipan_proto::Timestamp>| {
            ts.as_ref().and_then(yipan_core::time::from_ts).map(instant).unwrap_or_default()
        };
        t.row(vec![
            e.author().map(|a| a.to_string()).unwrap_or_default().into(),
            e.seq().into(),
            kind.into(),
            at(&env.occurred_at).into(),
            at(&env.recorded_at).into(),
            env.origin.clone().into(),
            env.residence.clone().into(),
            Uuid::from_slice(&env.event_id).map(|u| u.to_string()).unwrap_or_default().into(),
        ]);
    }
    Ok(t)
}

/// The quarantine's entries (up to 10,000): when, claimed author, code, reason.
async fn quarantine_table(s: &AppState, en: bool) -> Result<Table, String> {
    let log = s.log.clone();
    let entries = tokio::task::spawn_blocking(move || log.quarantine_page(None, 10_000))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let mut t = Table::new(
        "quarantine",
        h(
            en,
            &["接收时间", "来源", "代码", "原因", "大小(字节)", "SHA-256"],
            &["received", "author", "code", "reason", "size (bytes)", "sha256"],
        ),
    );
    for e in entries {
        t.row(vec![
            e.received_at.into(),
            e.author.into(),
            e.code.into(),
            e.reason.into(),
            e.size.into(),
            e.sha256.into(),
        ]);
    }
    Ok(t)
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
    if let Err(r) = disclose_to(&s, &caller, "stream", false, &backlog).await {
        return r;
    }
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
    let (state, caller) = (s.clone(), caller.clone());
    let live = futures::stream::unfold((feed, sent, log, stop), move |(mut feed, mut sent, log, mut stop)| {
        let (state, caller) = (state.clone(), caller.clone());
        async move {
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
                            // Not recordable: end the stream (the subscriber resumes from its positions).
                            disclose_to(&state, &caller, "stream", false, std::slice::from_ref(&ev)).await.ok()?;
                            return Some((Ok(sse_event(&ev, role)), (feed, sent, log, stop)));
                        }
                    }
                    // A subscriber too slow for the feed reconnects with its positions.
                    Err(_) => return None,
                }
            }
        }
    });
    Sse::new(head.chain(live)).keep_alive(KeepAlive::default()).into_response()
}
