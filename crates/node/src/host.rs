//! Many localities in one process (DESIGN.md "Hosting"): a provincial or
//! municipal government cloud runs one `yipan host` for the counties it
//! serves instead of one node each.
//!
//! Each tenant keeps everything a node has of its own — key pair, log,
//! channels, outbox and inbox cursors, NATS connection and NKey, API tokens,
//! projections — and runs the same [`Service`] a node runs, so it is isolated
//! as if it were its own process: its log is its own tree of the shared sled
//! database (no other tenant's code path holds it), NATS enforces its NKey's
//! permissions (it cannot publish as another locality nor read what is not
//! addressed to it, whatever the process does), and its tokens open only its
//! own API. A host serving every locality of a province may read that
//! province through one shared consumer instead (`inbox_provinces`): then
//! each message goes to the tenant its subject names, whose ingest still
//! refuses what is not addressed to it (docs/design.md "Who reads an address"). What is shared is what makes thousands feasible: the process and
//! its runtime, one HTTP listener and TLS certificate, and one storage engine
//! (one page cache, one set of files, one fsync for every tenant's group
//! commit).
//!
//! The host directory:
//! ```text
//! host_dir/
//!   store/               the shared sled database: one tree `tenant/<code>` per tenant
//!   tokens.json          the host administrators' tokens (`/host/…` endpoints)
//!   tenants/<code>/      yipan.toml, keys/, tokens.json: a data directory without log/
//! ```
//! The API addresses a tenant explicitly: `/t/<code>/v1/…` is the tenant's
//! node API, `/t/<code>/console/` its console. `GET /host/tenants` lists the
//! tenants; `POST /host/tenants {"locality": …}` starts one whose directory
//! `yipan host add-tenant` prepared, without a restart.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::ServiceExt;
use yipan_access::{Caller, Role};
use yipan_core::Locality;
use yipan_log::{Backend, SharedSled, SledBackend, SledStore};
use yipan_sync::province::{ProvinceInbox, ProvinceStatus};
use yipan_sync::SyncConfig;

use crate::api::error;
use crate::auth::Auth;
use crate::config::{HttpConfig, NodeConfig, TrustConfig, ValidationConfig};
use crate::error::{Error, Result};
use crate::http::PeerCertificate;
use crate::service::Service;
use crate::{datadir, http};

/// `host.toml`: what `yipan host run --config host.toml` reads. The same
/// sections as a node's `node.toml`, for every tenant at once; a tenant's
/// NATS NKey is `<nats_nkey_dir>/locality-<code>.nk` (as `yipan nats users`
/// names it).
///
/// ```toml
/// host_dir = "/var/lib/yipan/host-61"       # made by `yipan host init`
/// listen = "0.0.0.0:8610"
/// nats_nkey_dir = "/etc/yipan/nats"          # locality-<code>.nk per tenant, mode 0600
///
/// [http.tls]
/// cert = "/etc/yipan/tls/host.pem"
/// key = "/etc/yipan/tls/host.key"
///
/// [trust]
/// anchor = "3b6a27bc…"
///
/// [sync]
/// nats_url = "tls://nats-61-a:4222,tls://nats-61-b:4222,tls://nats-61-c:4222"
/// nats_ca_file = "/etc/yipan/tls/ca.pem"
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// The host directory (`yipan host init`).
    pub host_dir: PathBuf,
    /// Address of the HTTP API of every tenant (`/t/<code>/…`) and of the host (`/host/…`).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Where each tenant's NATS NKey seed is: `locality-<code>.nk`.
    #[serde(default)]
    pub nats_nkey_dir: Option<PathBuf>,
    /// Page cache of the shared store for all tenants together, MiB.
    #[serde(default = "default_cache_mib")]
    pub cache_mib: u64,
    /// JetStream publishes all tenants together keep waiting for an
    /// acknowledgement (outboxes and re-sends); halved when acknowledgements
    /// time out, grown back as they arrive (docs/scale.md). 0: no bound
    /// beyond each tenant's `sync.publish_window`.
    #[serde(default = "default_publish_budget")]
    pub publish_budget: usize,
    /// Working-day calendar (JSON); Monday–Friday if absent.
    #[serde(default)]
    pub calendar: Option<PathBuf>,
    /// How often projection changes are published downstream, seconds.
    #[serde(default = "default_views_interval")]
    pub views_interval_s: u64,
    /// Plain HTTP and anonymous, unencrypted NATS: local experiments only.
    #[serde(default)]
    pub insecure: bool,
    /// TLS of the listener; `tokens` is the host administrators' token file
    /// (default `<host_dir>/tokens.json`); client certificates name their tenant.
    #[serde(default)]
    pub http: HttpConfig,
    /// Whom to trust.
    #[serde(default)]
    pub trust: TrustConfig,
    /// Provinces (two-digit codes) whose every locality this host serves:
    /// their tenants share one inbox consumer per province (`inbox-<pp>`,
    /// read with the NKey `<nats_nkey_dir>/inbox-<pp>.nk`) instead of one
    /// each — at thousands of tenants the servers' and the host's largest
    /// cost (docs/scale.md). Only the host that runs a province's localities
    /// may hold that user. Tenants of other provinces keep their own.
    #[serde(default)]
    pub inbox_provinces: Vec<String>,
    /// Replication settings shared by every tenant (`nats_nkey_file` stays
    /// unset: each tenant connects with its own NKey).
    #[serde(default)]
    pub sync: SyncConfig,
    /// Erasure deadline and retention periods.
    #[serde(default)]
    pub privacy: crate::erasure::PrivacyConfig,
    /// Bounds of what tenants accept at append.
    #[serde(default)]
    pub validation: ValidationConfig,
}

fn default_listen() -> String {
    "127.0.0.1:8610".into()
}

fn default_cache_mib() -> u64 {
    512
}

pub(crate) fn default_publish_budget() -> usize {
    4096
}

/// The smallest a host's publish budget shrinks to.
pub const MIN_PUBLISH_BUDGET: usize = 128;
/// The largest `publish_budget` a host accepts (a thousand times the default
/// window of one node's outbox is far beyond what a server acknowledges in
/// time; larger values are a typo).
pub const MAX_PUBLISH_BUDGET: usize = 2_048_000;

fn default_views_interval() -> u64 {
    60
}

/// The tenants' directory of a host directory.
pub fn tenants_dir(host_dir: &Path) -> PathBuf {
    host_dir.join("tenants")
}

/// The shared store of a host directory.
pub fn store_dir(host_dir: &Path) -> PathBuf {
    host_dir.join("store")
}

/// Creates a host directory; refuses an initialised one.
pub fn init(host_dir: &Path) -> Result<()> {
    if store_dir(host_dir).exists() {
        return Err(Error::file(host_dir, "is already a host directory (found store/)"));
    }
    std::fs::create_dir_all(tenants_dir(host_dir)).map_err(|e| Error::file(host_dir, e))?;
    SharedSled::open(&store_dir(host_dir), 16 << 20)?;
    Ok(())
}

/// Prepares the directory of tenant `locality` (key pair and `yipan.toml`,
/// with the deployment's person-key `secret`); the host starts it at its next
/// start or when asked (`POST /host/tenants`). Returns its public key, for the
/// province authority to certify.
pub fn add_tenant(host_dir: &Path, locality: Locality, secret: Option<&[u8]>) -> Result<ed25519_dalek::VerifyingKey> {
    if !store_dir(host_dir).exists() {
        return Err(Error::file(host_dir, "is not a host directory (no store/); run `yipan host init`"));
    }
    datadir::prepare(&tenants_dir(host_dir).join(locality.to_string()), locality, secret)
}

/// The tenants prepared in a host directory, in code order.
pub fn prepared(host_dir: &Path) -> Result<Vec<Locality>> {
    let dir = tenants_dir(host_dir);
    let entries = std::fs::read_dir(&dir).map_err(|e| Error::file(&dir, e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::file(&dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        match Locality::parse(name) {
            Ok(l) if entry.path().join("yipan.toml").exists() => out.push(l),
            _ => {
                tracing::warn!(entry = %yipan_core::clip(name), dir = %dir.display(), "not a tenant directory; ignored")
            }
        }
    }
    out.sort();
    Ok(out)
}

impl HostConfig {
    /// Reads a `host.toml`.
    pub fn load(path: &Path) -> Result<HostConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?;
        toml::from_str(&text).map_err(|e| Error::file(path, e))
    }

    /// The settings of tenant `locality`, as if it were a node of its own.
    pub fn tenant(&self, locality: Locality) -> NodeConfig {
        let code = locality.to_string();
        let mut http = self.http.clone();
        http.tokens = None;
        if let Some(tls) = &mut http.tls {
            tls.clients.retain(|c| c.tenant.as_deref() == Some(code.as_str()));
            for c in &mut tls.clients {
                c.tenant = None;
            }
        }
        let nats_nkey_file = self
            .nats_nkey_dir
            .as_ref()
            .map(|d| d.join(format!("{}.nk", yipan_access::nats::Principal::Locality(locality).name())));
        NodeConfig {
            data_dir: tenants_dir(&self.host_dir).join(&code),
            listen: self.listen.clone(),
            calendar: self.calendar.clone(),
            views_interval_s: self.views_interval_s,
            insecure: self.insecure,
            http,
            trust: self.trust.clone(),
            sync: SyncConfig { nats_nkey_file, ..self.sync.clone() },
            privacy: self.privacy.clone(),
            validation: self.validation.clone(),
        }
    }

    /// Refuses a configuration a host must not run with (the same rules as a
    /// node's, and each tenant's own credentials).
    pub fn check(&self) -> Result<()> {
        if self.sync.nats_nkey_file.is_some() {
            return Err(Error::Config(
                "[sync] nats_nkey_file is set: a host's tenants each connect with their own NKey \
                 (nats_nkey_dir/locality-<code>.nk); remove it"
                    .into(),
            ));
        }
        if let Some(t) = &self.http.tls {
            let mut names = std::collections::HashSet::new();
            for c in &t.clients {
                // A certificate is known by its common name alone: one name, one tenant and role.
                if !names.insert(c.name.as_str()) {
                    return Err(Error::Config(format!(
                        "[http.tls] client `{}` is listed twice: a certificate's name must map to one tenant and role",
                        yipan_core::clip(&c.name)
                    )));
                }
                if let Some(code) = &c.tenant {
                    Locality::parse(code).map_err(|p| {
                        Error::Config(format!("[http.tls] client `{}`: tenant {p}", yipan_core::clip(&c.name)))
                    })?;
                }
            }
        }
        if self.publish_budget > MAX_PUBLISH_BUDGET {
            return Err(Error::Config(format!(
                "publish_budget = {} is more than {MAX_PUBLISH_BUDGET} publishes in flight; 0 turns the budget off",
                self.publish_budget
            )));
        }
        self.inbox_provinces()?;
        // A tenant's settings with a placeholder locality: TLS, anchor, NATS CA, NKey directory.
        let probe = self.tenant(Locality::parse("110101").map_err(|p| Error::Config(p.to_string()))?);
        probe.check().map_err(|e| match e {
            Error::Config(m) => Error::Config(m.replace("[sync] nats_nkey_file", "nats_nkey_dir")),
            other => other,
        })
    }

    /// The provinces of [`HostConfig::inbox_provinces`], checked.
    pub fn inbox_provinces(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for p in &self.inbox_provinces {
            let n = p
                .parse::<u8>()
                .ok()
                .filter(|n| p.len() == 2 && yipan_core::locality::PROVINCES.iter().any(|(c, _)| c == n))
                .ok_or_else(|| {
                    Error::Config(format!("inbox_provinces: `{}` is not the code of a province", yipan_core::clip(p)))
                })?;
            if !out.contains(&n) {
                out.push(n);
            }
        }
        if !out.is_empty() && self.nats_nkey_dir.is_none() && !self.insecure {
            return Err(Error::Config(
                "inbox_provinces needs nats_nkey_dir (the province's NKey is <nats_nkey_dir>/inbox-<pp>.nk)".into(),
            ));
        }
        Ok(out)
    }

    /// Replication settings of the shared inbox of `province`: the host's, connecting as `inbox-<pp>`.
    fn inbox_sync(&self, province: u8) -> SyncConfig {
        let nats_nkey_file = self
            .nats_nkey_dir
            .as_ref()
            .map(|d| d.join(format!("{}.nk", yipan_access::nats::Principal::Inbox(province).name())));
        SyncConfig { nats_nkey_file, ..self.sync.clone() }
    }

    fn tokens_path(&self) -> PathBuf {
        self.http.tokens.clone().unwrap_or_else(|| yipan_access::TokenStore::default_path(&self.host_dir))
    }
}

/// A started tenant.
struct Tenant {
    service: Service,
    router: Router,
}

/// What the host's handlers share.
struct Inner {
    cfg: HostConfig,
    store: SharedSled,
    anchor: Option<ed25519_dalek::VerifyingKey>,
    tenants: RwLock<BTreeMap<Locality, Tenant>>,
    /// Serialises starting tenants (two requests for one tenant start it once).
    starting: tokio::sync::Mutex<()>,
    auth: Auth,
    /// The trust stream, read once for every tenant (started with the first tenant's connection).
    trust: Arc<yipan_sync::trust::TrustFeed>,
    trust_task: std::sync::Mutex<Option<JoinHandle<()>>>,
    trust_stop: watch::Sender<bool>,
    /// Tenants that did not start, with why.
    failed: std::sync::Mutex<BTreeMap<Locality, String>>,
    /// The shared inbox of each province whose localities this host serves.
    inboxes: BTreeMap<u8, Arc<ProvinceInbox<SledBackend>>>,
    /// Publishes in flight for all tenants together.
    publish_budget: Option<Arc<yipan_sync::budget::PublishBudget>>,
    inbox_tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
    inbox_stop: watch::Sender<bool>,
}

/// A running host.
pub struct Host {
    /// Where its HTTP API listens.
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// A tenant as `GET /host/tenants` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TenantStatus {
    /// Its code.
    pub locality: String,
    /// Whether its NATS connection is up.
    pub nats_connected: bool,
    /// Own events not yet acknowledged by JetStream.
    pub outbox_pending: u64,
    /// Events in its log (own and received).
    pub events: u64,
    /// Why it is not running, if it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Host {
    /// Opens the host directory, starts every prepared tenant and serves on `listener`.
    pub async fn start(cfg: HostConfig, listener: TcpListener) -> Result<Host> {
        cfg.check()?;
        let tls = match &cfg.http.tls {
            Some(t) => Some(yipan_access::tls::server_config(&t.cert, &t.key, t.client_ca.as_deref())?),
            None => None,
        };
        let anchor = cfg.trust.anchor_key()?;
        crate::announce(cfg.insecure, anchor.as_ref());
        let dir = store_dir(&cfg.host_dir);
        if !dir.exists() {
            return Err(Error::file(
                &cfg.host_dir,
                format!("is not a host directory (no store/); run `yipan host init --dir {}`", cfg.host_dir.display()),
            ));
        }
        let cache = cfg.cache_mib.max(16) << 20;
        let store = tokio::task::spawn_blocking(move || SharedSled::open(&dir, cache))
            .await
            .map_err(|source| Error::Task { what: "opening the host store", source })??;
        let auth = Auth::new(&cfg.tokens_path(), cfg.http.certificate_roles())?;
        let own: Arc<dyn Backend> = Arc::new(store.host()?);
        let inboxes = cfg.inbox_provinces()?.into_iter().map(|p| (p, ProvinceInbox::new(p, own.clone()))).collect();
        let publish_budget = (cfg.publish_budget > 0).then(|| {
            let hold_off = std::time::Duration::from_millis(cfg.sync.ack_timeout_ms.max(100));
            yipan_sync::budget::PublishBudget::new(cfg.publish_budget, MIN_PUBLISH_BUDGET, hold_off)
        });
        let addr =
            listener.local_addr().map_err(|e| Error::Config(format!("the HTTP listener has no address: {e}")))?;
        let inner = Arc::new(Inner {
            cfg,
            store,
            anchor,
            tenants: RwLock::new(BTreeMap::new()),
            starting: tokio::sync::Mutex::new(()),
            auth,
            trust: yipan_sync::trust::TrustFeed::new(),
            trust_task: std::sync::Mutex::new(None),
            trust_stop: watch::channel(false).0,
            failed: Default::default(),
            inboxes,
            publish_budget,
            inbox_tasks: Default::default(),
            inbox_stop: watch::channel(false).0,
        });
        // A tenant that cannot start (its NKey not there yet, say) is reported
        // in `/host/tenants` and started later on request; the others run.
        for locality in prepared(&inner.cfg.host_dir)? {
            if let Err(e) = inner.start_tenant(locality).await {
                tracing::error!(%locality, error = %e, "tenant not started");
                inner.failed.lock().unwrap_or_else(|p| p.into_inner()).insert(locality, e.to_string());
            }
        }
        // Every tenant running now has joined its province's inbox: start the consumers.
        for (p, inbox) in &inner.inboxes {
            let sync = inner.cfg.inbox_sync(*p);
            let principal = yipan_access::nats::Principal::Inbox(*p);
            let client = yipan_sync::connect(&sync, &format!("yipan-host-{}", principal.name()), principal).await?;
            let task = tokio::spawn(inbox.clone().run(client, sync, inner.inbox_stop.subscribe()));
            inner.inbox_tasks.lock().unwrap_or_else(|p| p.into_inner()).push(task);
        }
        let (stop, stopped) = watch::channel(false);
        let router = router(inner.clone());
        let task = {
            let inner = inner.clone();
            tokio::spawn(async move {
                let mut stopped = stopped;
                http::serve(listener, tls, router, async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await;
                // The shared inboxes first: a tenant stops after the last message handed to it.
                let _ = inner.inbox_stop.send(true);
                let tasks = std::mem::take(&mut *inner.inbox_tasks.lock().unwrap_or_else(|p| p.into_inner()));
                futures::future::join_all(tasks).await;
                let tenants = std::mem::take(&mut *inner.tenants.write().unwrap_or_else(|p| p.into_inner()));
                futures::future::join_all(tenants.into_values().map(|t| t.service.stop())).await;
                let _ = inner.trust_stop.send(true);
                let task = inner.trust_task.lock().ok().and_then(|mut t| t.take());
                if let Some(task) = task {
                    let _ = task.await;
                }
            })
        };
        let scheme = if inner.cfg.http.tls.is_some() { "https" } else { "http" };
        tracing::info!(
            tenants = inner.tenants().len(),
            url = %format!("{scheme}://{addr}"),
            nats = %yipan_access::secret::redact_url(&inner.cfg.sync.nats_url),
            "host started"
        );
        Ok(Host { addr, inner, stop, task })
    }

    /// Starts tenant `locality`, prepared with [`add_tenant`], while the host runs.
    pub async fn start_tenant(&self, locality: Locality) -> Result<()> {
        self.inner.start_tenant(locality).await
    }

    /// The tenants running, in code order.
    pub fn tenants(&self) -> Vec<Locality> {
        self.inner.tenants()
    }

    /// The shared inbox of each province this host serves whole.
    pub fn inboxes(&self) -> Vec<ProvinceStatus> {
        self.inner.inboxes.values().map(|i| i.status()).collect()
    }

    /// The publish budget of all tenants together, if it has one.
    pub fn publish_budget(&self) -> Option<yipan_sync::budget::BudgetStatus> {
        self.inner.publish_budget.as_ref().map(|b| b.status())
    }

    /// The log of tenant `locality`, if it runs here.
    pub fn log(&self, locality: Locality) -> Option<Arc<SledStore>> {
        self.inner.with_tenant(locality, |t| t.service.log.clone())
    }

    /// The projections of tenant `locality`, if it runs here.
    pub fn views(&self, locality: Locality) -> Option<crate::views::Views> {
        self.inner.with_tenant(locality, |t| t.service.views.clone())
    }

    /// The replication metrics of tenant `locality`, if it runs here.
    pub fn metrics(&self, locality: Locality) -> Option<Arc<yipan_sync::SyncMetrics>> {
        self.inner.with_tenant(locality, |t| t.service.metrics.clone())
    }

    /// Resolves if a tenant's log failed a write (the shared store is then
    /// reopened by restarting the host).
    pub async fn failed(&self) -> String {
        loop {
            let poisoned = self
                .inner
                .with_tenants(|t| t.values().find(|t| t.service.log.is_poisoned()).map(|t| t.service.locality));
            if let Some(l) = poisoned {
                return format!(
                    "a write to the log of tenant {l} failed (disk full?); stopping so the store is reopened"
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }

    /// Stops serving, stops every tenant and waits until everything is flushed.
    pub async fn stop(self) -> Result<()> {
        let _ = self.stop.send(true);
        self.task.await.map_err(|source| Error::Task { what: "host task", source })?;
        self.inner.store.flush()?;
        Ok(())
    }
}

impl Inner {
    fn with_tenants<T>(&self, f: impl FnOnce(&BTreeMap<Locality, Tenant>) -> T) -> T {
        f(&self.tenants.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn with_tenant<T>(&self, locality: Locality, f: impl FnOnce(&Tenant) -> T) -> Option<T> {
        self.with_tenants(|t| t.get(&locality).map(f))
    }

    fn tenants(&self) -> Vec<Locality> {
        self.with_tenants(|t| t.keys().copied().collect())
    }

    async fn start_tenant(&self, locality: Locality) -> Result<()> {
        let _one = self.starting.lock().await;
        if self.with_tenant(locality, |_| ()).is_some() {
            return Err(Error::Config(format!("tenant {locality} already runs on this host")));
        }
        let cfg = self.cfg.tenant(locality);
        if !cfg.data_dir.join("yipan.toml").exists() {
            return Err(Error::file(
                &cfg.data_dir,
                format!(
                    "is not a prepared tenant; run `yipan host add-tenant --dir {} --locality {locality}`",
                    self.cfg.host_dir.display()
                ),
            ));
        }
        let (dir, store, anchor) = (cfg.data_dir.clone(), self.store.clone(), self.anchor);
        let opened = tokio::task::spawn_blocking(move || {
            datadir::open_in(&dir, anchor, || Ok(store.tenant(&locality.to_string())?))
        })
        .await
        .map_err(|source| Error::Task { what: "opening a tenant", source })??;
        if opened.locality != locality {
            return Err(Error::file(
                &cfg.data_dir,
                format!("holds locality {} but is the directory of tenant {locality}", opened.locality),
            ));
        }
        let shared = yipan_sync::Shared {
            feed: Some(self.trust.clone()),
            inbox: self.inboxes.get(&locality.province()).cloned(),
            publish_budget: self.publish_budget.clone(),
        };
        let service = Service::start_with(&cfg, opened, shared).await?;
        // Every tenant's connection can read the trust stream (public to every
        // locality): the feed reads through the first that works.
        self.trust.add_source(async_nats::jetstream::new(service.client()));
        if let Ok(mut task) = self.trust_task.lock() {
            if task.is_none() {
                let every = std::time::Duration::from_millis(cfg.sync.trust_poll_ms.max(50));
                *task = Some(tokio::spawn(self.trust.clone().run(every, self.trust_stop.subscribe())));
            }
        }
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).remove(&locality);
        let router = service.router();
        self.tenants.write().unwrap_or_else(|p| p.into_inner()).insert(locality, Tenant { service, router });
        tracing::info!(%locality, "tenant started");
        Ok(())
    }

    fn status(&self) -> Vec<TenantStatus> {
        self.with_tenants(|t| {
            t.values()
                .map(|t| TenantStatus {
                    locality: t.service.locality.to_string(),
                    nats_connected: t.service.metrics.nats_connected.load(Ordering::Relaxed) == 1,
                    outbox_pending: t.service.metrics.outbox_pending.load(Ordering::Relaxed),
                    events: t.service.log.len() as u64,
                    error: None,
                })
                .collect::<Vec<_>>()
        })
        .into_iter()
        .chain(self.failed.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(l, e)| TenantStatus {
            locality: l.to_string(),
            nats_connected: false,
            outbox_pending: 0,
            events: 0,
            error: Some(e.clone()),
        }))
        .collect()
    }

    /// Authenticates a request to a `/host/…` endpoint and checks its role.
    fn admit(&self, req: &Request, roles: &[Role]) -> std::result::Result<Caller, Box<Response>> {
        let authorization = req.headers().get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or("?"));
        let certificate = req.extensions().get::<PeerCertificate>().and_then(|p| p.0.as_deref());
        let caller = self
            .auth
            .authenticate(authorization, certificate)
            .map_err(|refused| Box::new(self.auth.unauthenticated(&refused)))?;
        if !roles.contains(&caller.role) {
            return Err(Box::new(self.auth.forbidden(&caller, req)));
        }
        Ok(caller)
    }
}

fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/healthz", get(health))
        .route("/host/tenants", get(list).post(start))
        .route("/t/{code}", get(to_tenant_console))
        .route("/t/{code}/", axum::routing::any(forward_root))
        .route("/t/{code}/{*rest}", axum::routing::any(forward))
        .fallback(|req: Request| async move {
            error(StatusCode::NOT_FOUND, format!("no such path `{}` on this host", yipan_core::clip(req.uri().path())))
        })
        .with_state(inner)
}

async fn health(State(h): State<Arc<Inner>>) -> Response {
    let (tenants, failed) = h.with_tenants(|t| (t.len(), t.values().filter(|t| t.service.log.is_poisoned()).count()));
    let status = if failed > 0 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    let body = json!({
        "status": if failed > 0 { "failed" } else { "ok" },
        "insecure": h.cfg.insecure,
        "tenants": tenants,
        "tenants_failed": failed,
    });
    (status, Json(body)).into_response()
}

async fn list(State(h): State<Arc<Inner>>, req: Request) -> Response {
    if let Err(r) = h.admit(&req, &[Role::Admin, Role::Auditor, Role::Monitor]) {
        return *r;
    }
    let inboxes: Vec<ProvinceStatus> = h.inboxes.values().map(|i| i.status()).collect();
    let budget = h.publish_budget.as_ref().map(|b| b.status());
    Json(json!({ "tenants": h.status(), "inboxes": inboxes, "publish_budget": budget })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartTenant {
    locality: String,
}

async fn start(State(h): State<Arc<Inner>>, req: Request) -> Response {
    let caller = match h.admit(&req, &[Role::Admin]) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    if !crate::auth::is_json(&req) {
        return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "writes must be sent as Content-Type: application/json");
    }
    let body = match axum::body::to_bytes(req.into_body(), 4096).await {
        Ok(b) => b,
        Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "the body is over 4096 bytes"),
    };
    let asked: StartTenant = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("body: {e} (expected {{\"locality\": \"610112\"}})")),
    };
    let locality = match Locality::parse(&asked.locality) {
        Ok(l) => l,
        Err(p) => return error(StatusCode::BAD_REQUEST, format!("locality {p}")),
    };
    match h.start_tenant(locality).await {
        Ok(()) => {
            tracing::info!(%locality, caller = %caller.label(), "tenant started on request");
            let status = h.status().into_iter().find(|s| s.locality == locality.to_string());
            (StatusCode::CREATED, Json(json!({ "started": status }))).into_response()
        }
        Err(e @ Error::Config(_)) => error(StatusCode::CONFLICT, e.to_string()),
        Err(e @ Error::File { .. }) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn to_tenant_console(UrlPath(code): UrlPath<String>) -> Response {
    match Locality::parse(&code) {
        Ok(l) => Redirect::permanent(&format!("/t/{l}/console/")).into_response(),
        Err(p) => error(StatusCode::NOT_FOUND, format!("no tenant: {p}")),
    }
}

async fn forward_root(State(h): State<Arc<Inner>>, UrlPath(code): UrlPath<String>, req: Request) -> Response {
    dispatch(h, &code, req).await
}

async fn forward(State(h): State<Arc<Inner>>, UrlPath((code, _)): UrlPath<(String, String)>, req: Request) -> Response {
    dispatch(h, &code, req).await
}

/// Hands the request to the tenant's own API with the `/t/<code>` prefix
/// removed; its own authentication (its tokens, its certificates) decides.
/// The request is rebuilt with only the peer's certificate name as an
/// extension, so nothing of the host's routing reaches the tenant's.
async fn dispatch(h: Arc<Inner>, code: &str, req: Request) -> Response {
    let Some(router) = Locality::parse(code).ok().and_then(|l| h.with_tenant(l, |t| t.router.clone())) else {
        return error(StatusCode::NOT_FOUND, format!("no tenant `{}` on this host", yipan_core::clip(code)));
    };
    // The rest of the path exactly as sent (still percent-encoded): the
    // tenant's router decodes it once, as a node's would.
    let prefix = format!("/t/{code}");
    let Some(rest) = req.uri().path().strip_prefix(prefix.as_str()) else {
        return error(StatusCode::NOT_FOUND, "the tenant is named in the path as /t/<code>/…");
    };
    let rest = rest.trim_start_matches('/');
    let path = match req.uri().query() {
        Some(q) => format!("/{rest}?{q}"),
        None => format!("/{rest}"),
    };
    let Ok(uri) = path.parse::<Uri>() else {
        return error(StatusCode::BAD_REQUEST, "the path is not a valid URI");
    };
    if req.method() == Method::CONNECT {
        return error(StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not served");
    }
    let (parts, body) = req.into_parts();
    let mut forwarded = Request::new(body);
    *forwarded.method_mut() = parts.method;
    *forwarded.uri_mut() = uri;
    *forwarded.version_mut() = parts.version;
    *forwarded.headers_mut() = parts.headers;
    if let Some(peer) = parts.extensions.get::<PeerCertificate>() {
        forwarded.extensions_mut().insert(peer.clone());
    }
    match router.oneshot(forwarded).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

/// Runs a host until `shutdown` resolves (or a tenant's log fails).
pub async fn run(cfg: HostConfig, listener: TcpListener, shutdown: impl Future<Output = ()>) -> Result<()> {
    let host = Host::start(cfg, listener).await?;
    let failure = tokio::select! {
        _ = shutdown => None,
        why = host.failed() => Some(why),
    };
    match failure {
        None => {
            tracing::info!("shutting down the host");
            host.stop().await
        }
        Some(why) => {
            tracing::error!(problem = %why, "stopping: the host cannot go on");
            host.stop().await?;
            Err(Error::Config(why))
        }
    }
}
