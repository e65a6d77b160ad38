//! A Yipan locality node: the log, replication over NATS JetStream, the HTTP
//! API and metrics wired into one service.
//!
//! - [`datadir`]: a locality's data directory (`yipan.toml`, keys, log).
//! - [`config`]: [`NodeConfig`], the `node.toml` of `yipan node run`.
//! - [`api`]: the HTTP API (append, read, views, health, metrics).
//! - [`auth`]: who is calling (token or client certificate) and what its role allows.
//! - [`http`]: the TLS listener and graceful stop.
//! - [`provision`]: a whole secured deployment (CA, certificates, NATS users,
//!   tokens, node configurations) for the main job, tests and benchmarks.
//! - [`views`]: projections kept current as events land.
//! - [`Node::start`] / [`run`]: the service; [`run`] takes an already bound
//!   listener and a shutdown future, so tests bind port 0.

pub mod api;
pub mod auth;
pub mod authority;
pub mod config;
pub mod console;
pub mod datadir;
pub mod erasure;
pub mod error;
pub mod export;
pub mod http;
pub mod provision;
pub mod views;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

pub use error::{Error, Result};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use yipan_core::Locality;
use yipan_log::SledStore;
use yipan_sync::{Replication, SyncMetrics};

pub use config::NodeConfig;

/// A running node.
pub struct Node {
    /// Its locality.
    pub locality: Locality,
    /// Where its HTTP API listens.
    pub addr: SocketAddr,
    /// Its log (shared with the API and replication).
    pub log: Arc<SledStore>,
    /// Replication metrics.
    pub metrics: Arc<SyncMetrics>,
    /// Projections (cards, exchanges, scorecards, flows), kept current.
    pub views: views::Views,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<()>>,
}

impl Node {
    /// Opens the data directory, starts replication and serves the API on `listener`.
    pub async fn start(cfg: NodeConfig, listener: TcpListener) -> Result<Node> {
        cfg.check()?;
        if cfg.insecure {
            tracing::warn!(
                "INSECURE MODE: plain HTTP and anonymous, unencrypted NATS (`insecure = true`). \
                 Local experiments only; never with real data."
            );
        }
        let tls = match &cfg.http.tls {
            Some(t) => Some(yipan_access::tls::server_config(&t.cert, &t.key, t.client_ca.as_deref())?),
            None => None,
        };
        let certificates =
            cfg.http.tls.iter().flat_map(|t| t.clients.iter()).map(|c| (c.name.clone(), c.role)).collect();
        let auth = Arc::new(auth::Auth::new(&cfg.tokens_path(), certificates)?);
        let calendar = views::load_calendar(cfg.calendar.as_deref())?;
        let work_calendar = calendar.clone();
        let dir = cfg.data_dir.clone();
        let anchor = cfg.trust.anchor_key()?;
        if anchor.is_none() {
            tracing::warn!(
                "no [trust] anchor: only hand-added keys (`yipan roster add`) are trusted; certificates are refused"
            );
        }
        let opened = tokio::task::spawn_blocking(move || datadir::open_with(&dir, anchor))
            .await
            .map_err(|source| Error::Task { what: "opening the data directory", source })??;
        let locality = opened.locality;
        let log = Arc::new(opened.log);
        log.set_occurred_bounds(cfg.validation.bounds().map_err(|e| Error::Config(format!("[validation] {e}")))?);
        let client = yipan_sync::connect(
            &cfg.sync,
            &format!("yipan-node-{locality}"),
            yipan_access::nats::Principal::Locality(locality),
        )
        .await?;
        let sync = Replication::start(log.clone(), client.clone(), cfg.sync.clone());
        let metrics = sync.metrics();
        let addr =
            listener.local_addr().map_err(|e| Error::Config(format!("the HTTP listener has no address: {e}")))?;
        let views: views::Views = Default::default();
        let (views_stop, views_stopped) = tokio::sync::watch::channel(false);
        let projector = {
            let (log, views, rx) = (log.clone(), views.clone(), views_stopped.clone());
            tokio::spawn(yipan_sync::supervise("projections", views_stopped.clone(), metrics.clone(), move || {
                views::run(log.clone(), views.clone(), calendar.clone(), rx.clone())
            }))
        };
        let changes = (!cfg.sync.downstream.is_empty()).then(|| {
            let (log, views, client, sync_cfg, rx) =
                (log.clone(), views.clone(), client.clone(), cfg.sync.clone(), views_stopped.clone());
            let every = std::time::Duration::from_secs(cfg.views_interval_s.max(1));
            tokio::spawn(yipan_sync::supervise("projection changes", views_stopped, metrics.clone(), move || {
                views::publish_changes(log.clone(), views.clone(), client.clone(), sync_cfg.clone(), every, rx.clone())
            }))
        });
        let (stop, stopped) = watch::channel(false);
        let state = api::AppState::new(
            log.clone(),
            opened.person_secret,
            metrics.clone(),
            views.clone(),
            auth,
            cfg.insecure,
            stopped.clone(),
        )
        .with_privacy(work_calendar.clone(), cfg.privacy.clone());
        let audits = tokio::spawn(console::audit_daily(log.clone(), state.audits().clone(), stopped.clone()));
        let erasures = {
            let (log, registry, calendar, privacy, rx) =
                (log.clone(), state.erasures().clone(), work_calendar, cfg.privacy.clone(), stopped.clone());
            tokio::spawn(yipan_sync::supervise("erasures", stopped.clone(), metrics.clone(), move || {
                erasure::run(log.clone(), registry.clone(), calendar.clone(), privacy.clone(), rx.clone())
            }))
        };
        if std::env::var_os(console::DEV_DIR_ENV).is_some() {
            tracing::warn!(
                "{} is set: the console's files are read from that directory, not the ones built in (development only)",
                console::DEV_DIR_ENV
            );
        }
        let task = tokio::spawn(async move {
            let mut stopped = stopped;
            http::serve(listener, tls, api::router(state), async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await;
            sync.stop().await;
            let _ = views_stop.send(true);
            let _ = projector.await;
            let _ = audits.await;
            let _ = erasures.await;
            if let Some(c) = changes {
                let _ = c.await;
            }
            // Bounded: with NATS unreachable a flush would wait for the reconnect.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), client.flush()).await;
            Ok(())
        });
        let scheme = if cfg.http.tls.is_some() { "https" } else { "http" };
        tracing::info!(%locality, url = %format!("{scheme}://{addr}"), nats = %yipan_access::secret::redact_url(&cfg.sync.nats_url), "node started");
        Ok(Node { locality, addr, log, metrics, views, stop, task })
    }

    /// Resolves if the node can no longer work without a restart (its log
    /// failed a write, e.g. disk full): the only safe recovery is reopening
    /// the store, so the caller stops the node and its supervisor (systemd
    /// `Restart=on-failure`) starts it again.
    pub async fn failed(&self) -> String {
        loop {
            if self.log.is_poisoned() {
                return "a write to the log failed (disk full?); stopping so the store is reopened".into();
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }

    /// Stops serving and replicating, and waits until everything is flushed.
    pub async fn stop(self) -> Result<()> {
        let _ = self.stop.send(true);
        let result = self.task.await.map_err(|source| Error::Task { what: "node task", source })?;
        // The log closes (and flushes) when its last reference goes.
        drop(self.log);
        result
    }
}

/// Runs a node until `shutdown` resolves.
pub async fn run(cfg: NodeConfig, listener: TcpListener, shutdown: impl Future<Output = ()>) -> Result<()> {
    let node = Node::start(cfg, listener).await?;
    let failure = tokio::select! {
        _ = shutdown => None,
        why = node.failed() => Some(why),
    };
    match failure {
        None => {
            tracing::info!(locality = %node.locality, "shutting down");
            node.stop().await
        }
        Some(why) => {
            tracing::error!(locality = %node.locality, problem = %why, "stopping: the node cannot go on");
            node.stop().await?;
            Err(Error::Config(why))
        }
    }
}
