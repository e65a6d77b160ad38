//! The operator console: a web page served by the node itself for county
//! and township staff (overview, case queue, person, record work, flows,
//! health, export), and the few API endpoints only it needed.
//!
//! The page is static (HTML, JS, CSS and the vendored Apache ECharts,
//! embedded in the binary: no CDN, no build step, works on an offline
//! network). It holds no data: everything it shows comes from the same API,
//! with the same token and role, so the console can never show what the
//! role may not see. The static files are served without a credential;
//! every response carries a strict Content-Security-Policy (scripts and
//! styles only from the node, no inline script, no framing).
//!
//! Sign-in: the viewer pastes an API token (or opens a link carrying it in
//! the URL fragment, which browsers never send to a server); the page keeps
//! it in the tab's `sessionStorage` and sends it as a bearer token. No
//! cookie is used, so no other site can make the browser act for the viewer
//! (no CSRF), and writes still need `Content-Type: application/json`.

use std::sync::{Arc, Mutex};

use axum::extract::{Extension, Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use serde_json::{json, Value};
use yipan_access::{Caller, Permission};
use yipan_core::PersonKey;

use crate::api::{error, AppState};

/// An embedded file of the console.
struct Asset {
    path: &'static str,
    mime: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $mime:literal) => {
        Asset { path: $path, mime: $mime, bytes: include_bytes!(concat!("../console/", $path)) }
    };
}

const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("console.js", "text/javascript; charset=utf-8"),
    asset!("console.css", "text/css; charset=utf-8"),
    asset!("vendor/echarts.min.js", "text/javascript; charset=utf-8"),
    asset!("vendor/ECHARTS-LICENSE", "text/plain; charset=utf-8"),
    asset!("vendor/ECHARTS-LICENSE-d3", "text/plain; charset=utf-8"),
    asset!("vendor/ECHARTS-NOTICE", "text/plain; charset=utf-8"),
    asset!("vendor/VERSION", "text/plain; charset=utf-8"),
];

/// The policy every console response carries.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
                       connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Developers only: serve the console's files from this directory (re-read
/// on every request) instead of the copies embedded at build time.
pub const DEV_DIR_ENV: &str = "YIPAN_CONSOLE_DIR";

/// Whether a path is one of the console's static files (served without a credential).
pub fn is_static(path: &str) -> bool {
    path == "/" || path == "/console" || path.starts_with("/console/")
}

/// `/` and `/console` lead to the console. Relative, so that a host's tenant
/// (`/t/<code>/`, `/t/<code>/console`) leads to its own console.
pub async fn to_console() -> Redirect {
    Redirect::permanent("console/")
}

/// `/console/{*file}`.
pub async fn file(Path(file): Path<String>, headers: axum::http::HeaderMap) -> Response {
    serve_encoded(&file, accepts_gzip(&headers))
}

/// `/console/` with the request's headers.
pub async fn index_with(headers: axum::http::HeaderMap) -> Response {
    serve_encoded("index.html", accepts_gzip(&headers))
}

fn accepts_gzip(headers: &axum::http::HeaderMap) -> bool {
    headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(',').any(|e| e.split(';').next().is_some_and(|n| n.trim().eq_ignore_ascii_case("gzip")))
    })
}

/// The embedded files gzip-compressed, made once on first use (ECharts
/// shrinks to about a third: offices on slow links load the page faster).
fn gzipped(i: usize) -> &'static [u8] {
    static GZ: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    let all = GZ.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                use std::io::Write;
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                let _ = e.write_all(a.bytes);
                e.finish().unwrap_or_default()
            })
            .collect()
    });
    all.get(i).map(|v| v.as_slice()).unwrap_or_default()
}

fn serve_encoded(name: &str, gzip: bool) -> Response {
    // The development override serves files as they are on disk, uncompressed.
    if gzip && std::env::var_os(DEV_DIR_ENV).is_none() {
        if let Some(i) = ASSETS.iter().position(|a| a.path == name) {
            let mut r = (StatusCode::OK, gzipped(i)).into_response();
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ASSETS[i].mime));
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
            secure_headers(h);
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            return r;
        }
    }
    serve(name)
}

fn serve(name: &str) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.path == name) else {
        return error(StatusCode::NOT_FOUND, format!("no console file `{}`", yipan_core::clip(name)));
    };
    // Only the names listed above, so the override cannot reach other files.
    let bytes: Vec<u8> = match std::env::var_os(DEV_DIR_ENV) {
        Some(dir) => match std::fs::read(std::path::Path::new(&dir).join(asset.path)) {
            Ok(b) => b,
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("{DEV_DIR_ENV}: {}: {e}", asset.path)),
        },
        None => asset.bytes.to_vec(),
    };
    let mut r = (StatusCode::OK, bytes).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.mime));
    secure_headers(h);
    // Small files, revalidated each time so an upgraded node serves its own page.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// Headers that keep the page from being framed, sniffed or leaking its URL.
pub fn secure_headers(h: &mut axum::http::HeaderMap) {
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

/// The permissions a role has, by their API names.
fn permissions(caller: &Caller) -> Vec<&'static str> {
    Permission::ALL.iter().filter(|(p, _)| caller.role.allows(*p)).map(|(_, n)| *n).collect()
}

/// `GET /v1/whoami`: the caller's locality, role, what it may do, which
/// personal tiers it receives, and the localities this node shares
/// relationships with. Any valid credential may ask.
pub async fn whoami(State(s): State<AppState>, Extension(caller): Extension<Caller>) -> Response {
    use yipan_core::audience::Audience;
    let me = s.log().locality();
    let tiers: &[&str] = match caller.role.audience() {
        Audience::Full => &["identity", "contact", "health"],
        Audience::Health => &["identity", "health"],
        Audience::PublicSecurity => &["identity", "contact"],
        _ => &[],
    };
    let counterparts: Vec<String> = if caller.role.allows(Permission::ReadViews) {
        let v = s.read_views();
        let mut set = std::collections::BTreeSet::new();
        for r in v.relationships() {
            if r.origin == me {
                set.insert(r.residence);
            } else if r.residence == me {
                set.insert(r.origin);
            }
        }
        set.into_iter().map(|l| l.to_string()).collect()
    } else {
        Vec::new()
    };
    let now = chrono::Utc::now();
    let today = yipan_projections::calendar::date_of(now);
    let close = s.read_views().closes_on(me, now);
    Json(json!({
        "locality": me,
        "role": caller.role.name(),
        "may": permissions(&caller),
        "tiers": tiers,
        "counterparts": counterparts,
        "today": today.to_string(),
        // Statistics months close on this day (the catalogue's rule); today's month.
        "month_closes_on_day": close,
        "statistics_month": yipan_projections::Period::month_of_at(today, close).to_string(),
    }))
    .into_response()
}

/// `POST /v1/person-key` `{"id_number": …}` → `{"person": KEY}`: the
/// person key of a resident-ID number, derived with the deployment's secret
/// on the server, so the number never travels in a URL. The number is not
/// kept, logged or echoed (a refusal names only the field). Only roles that
/// receive the identity tier may ask (clerk, health, public security).
pub async fn person_key(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Response {
    // A role that never sees identities must not be able to test an ID number
    // against the person keys it sees (re-identification of pseudonymous data).
    if !caller.role.audience().tiers().contains(&yipan_proto::v1::Tier::Identity) {
        s.auth().forbidden.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return error(
            StatusCode::FORBIDDEN,
            format!(
                "role `{}` never sees identities, so it may not turn ID numbers into person keys; look up by person key",
                caller.role
            ),
        );
    }
    let field_error =
        |msg: &str| crate::api::field_error(StatusCode::BAD_REQUEST, format!("field `id_number`: {msg}"), "id_number");
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return error(StatusCode::BAD_REQUEST, "malformed JSON: expected {\"id_number\": \"…\"}"),
    };
    let Some(id) = value.get("id_number").and_then(Value::as_str) else {
        return field_error("missing; give the 18-character resident-ID number");
    };
    let Some(secret) = s.person_secret() else {
        return error(
            StatusCode::CONFLICT,
            "this node has no person-key secret, so it cannot turn ID numbers into person keys; look up by person key",
        );
    };
    let id = id.trim();
    let warnings: Vec<&str> = match yipan_core::person::check_id_number(id) {
        yipan_core::person::IdCheck::Valid => Vec::new(),
        yipan_core::person::IdCheck::BadShape => {
            return field_error("not 17 digits followed by a digit or X");
        }
        yipan_core::person::IdCheck::BadCheckDigit => {
            vec!["id_number: the check digit is wrong (GB 11643); a typo here finds no one or another person"]
        }
    };
    let key = PersonKey::derive(id, secret);
    Json(json!({"person": key.to_string(), "warnings": warnings})).into_response()
}

/// The last run of `verify` over the node's own store.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct AuditRecord {
    /// When it finished (None: never run since start).
    pub at: Option<chrono::DateTime<chrono::Utc>>,
    /// A run is going on now.
    pub running: bool,
    /// Events checked.
    pub events: u64,
    /// Entries in quarantine at the time.
    pub quarantined: u64,
    /// Every fault found.
    pub faults: Vec<String>,
    /// No fault.
    pub ok: bool,
    /// How long it took.
    pub millis: u64,
    /// Why it could not run, if it could not.
    pub error: Option<String>,
}

/// The node's audit record, shared by the console endpoint and the daily run.
pub type Audits = Arc<Mutex<AuditRecord>>;

/// A run asked for within this long of the last one answers the last one
/// (a full verify reads every event: a credential must not keep a core busy).
const AUDIT_MIN_INTERVAL: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// Runs `verify` unless a run is going on or one finished less than ten
/// minutes ago; returns the record after it (or that one). The run is its
/// own task: a caller that goes away does not leave the audit half-marked
/// as running.
pub async fn run_audit(log: Arc<yipan_log::SledStore>, audits: Audits) -> AuditRecord {
    {
        let mut a = audits.lock().unwrap_or_else(|p| p.into_inner());
        let recent = a.at.is_some_and(|t| chrono::Utc::now() - t < AUDIT_MIN_INTERVAL);
        if a.running || recent {
            return a.clone();
        }
        a.running = true;
    }
    let shared = audits.clone();
    let task = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let report = tokio::task::spawn_blocking(move || log.verify()).await;
        let record = match report {
            Ok(Ok(r)) => AuditRecord {
                at: Some(chrono::Utc::now()),
                running: false,
                events: r.events,
                quarantined: r.quarantined,
                ok: r.ok(),
                faults: r.faults.iter().map(|f| f.to_string()).collect(),
                millis: started.elapsed().as_millis() as u64,
                error: None,
            },
            Ok(Err(e)) => {
                AuditRecord { at: Some(chrono::Utc::now()), error: Some(e.to_string()), ..Default::default() }
            }
            Err(e) => AuditRecord { at: Some(chrono::Utc::now()), error: Some(e.to_string()), ..Default::default() },
        };
        if !record.ok {
            tracing::warn!(faults = record.faults.len(), error = ?record.error, "the audit of the own store found problems");
        }
        *shared.lock().unwrap_or_else(|p| p.into_inner()) = record.clone();
        record
    });
    match task.await {
        Ok(r) => r,
        Err(_) => {
            let mut a = audits.lock().unwrap_or_else(|p| p.into_inner());
            a.running = false;
            a.clone()
        }
    }
}

/// `GET /v1/audit`: the last audit of the node's store.
pub async fn last_audit(State(s): State<AppState>) -> Response {
    let a = s.audits().lock().unwrap_or_else(|p| p.into_inner()).clone();
    Json(a).into_response()
}

/// `POST /v1/audit`: audits the store now (waits for it; a run going on or
/// finished within the last ten minutes is answered instead of starting another).
pub async fn audit_now(State(s): State<AppState>) -> Response {
    Json(run_audit(s.log().clone(), s.audits().clone()).await).into_response()
}

/// Audits the store an hour after start and then daily, until `stop`.
pub async fn audit_daily(log: Arc<yipan_log::SledStore>, audits: Audits, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut wait = std::time::Duration::from_secs(3600);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        run_audit(log.clone(), audits.clone()).await;
        wait = std::time::Duration::from_secs(24 * 3600);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_files_unpack_to_the_embedded_ones_and_only_when_asked_for() {
        use std::io::Read;
        for (i, a) in ASSETS.iter().enumerate() {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(gzipped(i)).read_to_end(&mut out).unwrap();
            assert_eq!(out, a.bytes, "{}", a.path);
        }
        let echarts = ASSETS.iter().position(|a| a.path == "vendor/echarts.min.js").unwrap();
        assert!(gzipped(echarts).len() * 2 < ASSETS[echarts].bytes.len(), "ECharts compresses to less than half");
        let with = |v: &str| {
            let mut h = axum::http::HeaderMap::new();
            h.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            accepts_gzip(&h)
        };
        assert!(with("gzip, deflate, br, zstd"));
        assert!(with("br;q=1.0, GZIP;q=0.5"));
        assert!(!with("br, deflate"));
        assert!(!accepts_gzip(&axum::http::HeaderMap::new()));
    }
}
