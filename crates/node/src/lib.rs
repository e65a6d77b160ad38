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
//! - [`service`]: one locality's running work (replication, projections,
//!   audits, erasures, API state), for a node or a host's tenant.
//! - [`host`]: many localities (tenants) in one process, one HTTP listener
//!   and one storage engine, each isolated as if it ran alone.
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
pub mod host;
pub mod http;
pub mod provision;
pub mod service;
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
use yipan_sync::SyncMetrics;

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

/// Warns about the settings a node and a host share.
pub(crate) fn announce(insecure: bool, anchor: Option<&ed25519_dalek::VerifyingKey>) {
    if insecure {
        tracing::warn!(
            "INSECURE MODE: plain HTTP and anonymous, unencrypted NATS (`insecure = true`). \
             Local experiments only; never with real data."
        );
    }
    if anchor.is_none() {
        tracing::warn!(
            "no [trust] anchor: only hand-added keys (`yipan roster add`) are trusted; certificates are refused"
        );
    }
    if std::env::var_os(console::DEV_DIR_ENV).is_some() {
        tracing::warn!(
            "{} is set: the console's files are read from that directory, not the ones built in (development only)",
            console::DEV_DIR_ENV
        );
    }
}

impl Node {
    /// Opens the data directory, starts replication and serves the API on `listener`.
    pub async fn start(cfg: NodeConfig, listener: TcpListener) -> Result<Node> {
        cfg.check()?;
        if cfg.http.tls.iter().flat_map(|t| t.clients.iter()).any(|c| c.tenant.is_some()) {
            return Err(Error::Config(
                "[http.tls] clients name a `tenant`: that is for a host's configuration (host.toml)".into(),
            ));
        }
        let tls = match &cfg.http.tls {
            Some(t) => Some(yipan_access::tls::server_config(&t.cert, &t.key, t.client_ca.as_deref())?),
            None => None,
        };
        let anchor = cfg.trust.anchor_key()?;
        announce(cfg.insecure, anchor.as_ref());
        let dir = cfg.data_dir.clone();
        let opened = tokio::task::spawn_blocking(move || datadir::open_with(&dir, anchor))
            .await
            .map_err(|source| Error::Task { what: "opening the data directory", source })??;
        let addr =
            listener.local_addr().map_err(|e| Error::Config(format!("the HTTP listener has no address: {e}")))?;
        let service = service::Service::start(&cfg, opened).await?;
        let (locality, log, metrics, views) =
            (service.locality, service.log.clone(), service.metrics.clone(), service.views.clone());
        let router = service.router();
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut stopped = stopped;
            http::serve(listener, tls, router, async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await;
            service.stop().await;
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
