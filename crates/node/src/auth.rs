//! Authentication and authorization of every HTTP request but `/healthz`
//! (DESIGN.md invariant 11). A caller is a bearer token (hashes in the
//! node's `tokens.json`, re-read within a second of a change) or a client
//! certificate whose common name `node.toml` maps to a role. The role alone
//! decides what a request may do and which personal tiers it receives.
//!
//! Missing, malformed, unknown, expired or revoked credential: 401. A role
//! that may not do this: 403. A write that is not `application/json`: 415
//! (a web page cannot send one without a CORS preflight, which the node
//! never grants). Each is a JSON `{"error": …}`, counted in `/metrics`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use yipan_access::token::{Refused, Via};
use yipan_access::{Caller, Permission, Role, TokenStore};

use crate::api::{error, AppState};
use crate::http::PeerCertificate;

/// How often the token file is checked for changes.
const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// The node's credentials.
pub struct Auth {
    /// The tokens and when the file was last checked.
    tokens: Mutex<(TokenStore, Instant)>,
    /// Client-certificate common name → role.
    certificates: HashMap<String, Role>,
    /// Requests refused with 401.
    pub unauthenticated: AtomicU64,
    /// Requests refused with 403.
    pub forbidden: AtomicU64,
    /// Writes refused with 415.
    pub unsupported_media: AtomicU64,
}

impl Auth {
    /// Credentials from the token file and the certificate mapping.
    pub fn new(tokens: &Path, certificates: HashMap<String, Role>) -> yipan_access::Result<Auth> {
        Ok(Auth {
            tokens: Mutex::new((TokenStore::open(tokens)?, Instant::now())),
            certificates,
            unauthenticated: AtomicU64::new(0),
            forbidden: AtomicU64::new(0),
            unsupported_media: AtomicU64::new(0),
        })
    }

    /// The 401 answer to a refused credential, counted.
    pub(crate) fn unauthenticated(&self, refused: &Refused) -> Response {
        self.unauthenticated.fetch_add(1, Ordering::Relaxed);
        let mut r = error(StatusCode::UNAUTHORIZED, refused.to_string());
        r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        r
    }

    /// The 403 answer to a caller whose role may not do `req`, counted.
    pub(crate) fn forbidden(&self, caller: &Caller, req: &Request) -> Response {
        self.forbidden.fetch_add(1, Ordering::Relaxed);
        error(
            StatusCode::FORBIDDEN,
            format!("role `{}` may not {} {}", caller.role, req.method(), yipan_core::clip(req.uri().path())),
        )
    }

    /// Who the request's credential stands for.
    pub fn authenticate(&self, authorization: Option<&str>, certificate: Option<&str>) -> Result<Caller, Refused> {
        if let Some(value) = authorization {
            let token = value.strip_prefix("Bearer ").ok_or(Refused::Malformed)?.trim();
            let mut guard = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
            let (store, checked) = &mut *guard;
            let reload = |store: &mut TokenStore| {
                if let Err(e) = store.reload_if_changed() {
                    tracing::error!(error = %e, "cannot re-read the token file; refusing every token until it is readable");
                }
            };
            if checked.elapsed() >= RELOAD_EVERY {
                *checked = Instant::now();
                reload(store);
            }
            let now = chrono::Utc::now();
            return match store.verify(token, now) {
                // A token created a moment ago: look at the file once more. It
                // is one stat (~1 µs) unless the file changed, so a flood of
                // unknown tokens costs about what the requests themselves do.
                Err(Refused::Unknown) => {
                    reload(store);
                    store.verify(token, now)
                }
                other => other,
            };
        }
        match certificate {
            Some(cn) => match self.certificates.get(cn) {
                Some(role) => Ok(Caller { role: *role, via: Via::Certificate(cn.to_string()) }),
                None => Err(Refused::UnknownCertificate(yipan_core::clip(cn))),
            },
            None => Err(Refused::Missing),
        }
    }
}

/// What a request needs: any one of the returned permissions; `None` for
/// paths no route serves. Every route must be listed here: an unlisted path
/// is answered 404 before it reaches the router (fail closed).
fn required(method: &Method, path: &str) -> Option<&'static [Permission]> {
    // Any one permission: every role has at least one.
    const ANY: [Permission; 11] = {
        let mut all = [Permission::Append; 11];
        let mut i = 0;
        while i < 11 {
            all[i] = Permission::ALL[i].0;
            i += 1;
        }
        all
    };
    use Permission::*;
    let p = match (method, path) {
        (&Method::POST, "/v1/events") => &[Append, PublishCatalogue][..],
        (_, "/v1/events") => &[ReadEvents],
        (_, p) if p.starts_with("/v1/events/") => &[ReadEvents],
        (_, p) if p.starts_with("/v1/cards/") => &[ReadViews],
        (_, "/v1/scorecard" | "/v1/cases" | "/v1/flows" | "/v1/digests" | "/v1/quality") => &[ReadViews],
        (_, "/v1/raw") => &[ReadRaw],
        (_, "/v1/roster") => &[ReadRoster],
        (_, "/v1/stream") => &[Stream],
        (_, "/v1/status" | "/v1/quarantine" | "/v1/dead-letters" | "/v1/audit") => &[ReadStatus],
        (_, "/v1/scorecard/trend" | "/v1/scorecard/counterparts" | "/v1/scorecard/overview") => &[ReadViews],
        // The handler also requires a role that receives identities.
        (_, "/v1/person-key") => &[ReadViews, ReadEvents],
        // The handler checks the permission of the table asked for.
        (_, "/v1/export") => &[ReadViews, ReadEvents, ReadStatus],
        // Anyone with a valid credential may ask who they are, and what a code is called.
        (_, "/v1/whoami" | "/v1/divisions") => &ANY,
        (_, "/metrics") => &[ReadMetrics],
        (_, "/v1/disclosures" | "/v1/disclosures/report") => &[ReadDisclosures],
        (&Method::POST, "/v1/erasures") => &[Erase],
        (_, "/v1/erasures") => &[ReadDisclosures],
        _ => return None,
    };
    Some(p)
}

/// Whether a write is sent as JSON (the only way in: a web page cannot send one
/// without a CORS preflight, which nothing here grants).
pub(crate) fn is_json(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// The middleware: authenticates, checks the role, and hands the [`Caller`]
/// to the handler as a request extension.
pub async fn layer(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    // Liveness and the console's static files carry no data.
    if req.uri().path() == "/healthz" || crate::console::is_static(req.uri().path()) {
        return next.run(req).await;
    }
    let auth = s.auth();
    let authorization = req.headers().get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or("?"));
    let certificate = req.extensions().get::<PeerCertificate>().and_then(|p| p.0.as_deref());
    let caller = match auth.authenticate(authorization, certificate) {
        Ok(c) => c,
        Err(refused) => return auth.unauthenticated(&refused),
    };
    let Some(needs) = required(req.method(), req.uri().path()) else {
        return error(StatusCode::NOT_FOUND, format!("no such path `{}`", yipan_core::clip(req.uri().path())));
    };
    if !needs.iter().any(|p| caller.role.allows(*p)) {
        return auth.forbidden(&caller, &req);
    }
    if matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH | Method::DELETE) && !is_json(&req) {
        auth.unsupported_media.fetch_add(1, Ordering::Relaxed);
        return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "writes must be sent as Content-Type: application/json")
            .into_response();
    }
    tracing::debug!(caller = %caller.label(), role = %caller.role, method = %req.method(), path = %req.uri().path(), "request");
    req.extensions_mut().insert(caller);
    next.run(req).await
}
