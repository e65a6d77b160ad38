//! One locality's running work, whether it is a whole node ([`crate::Node`])
//! or one tenant of a host ([`crate::host::Host`]): replication over its own
//! NATS connection and credentials, projections kept current, the daily
//! audit, erasures, and the API state its router serves.

use std::sync::Arc;

use axum::Router;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use yipan_core::Locality;
use yipan_log::SledStore;
use yipan_sync::{Replication, SyncMetrics};

use crate::config::NodeConfig;
use crate::datadir::DataDir;
use crate::error::{Error, Result};
use crate::{api, auth, console, erasure, views};

/// A locality's services, started over its opened data directory.
pub struct Service {
    /// Its locality.
    pub locality: Locality,
    /// Its log (shared with the API and replication).
    pub log: Arc<SledStore>,
    /// Replication metrics.
    pub metrics: Arc<SyncMetrics>,
    /// Projections (cards, exchanges, scorecards, flows), kept current.
    pub views: views::Views,
    state: api::AppState,
    client: async_nats::Client,
    sync: Replication,
    stop: watch::Sender<bool>,
    views_stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Service {
    /// Starts the services of `opened` with the settings of `cfg` (its
    /// `[sync]` credentials, token file and client certificates are this
    /// locality's own). `cfg` must have passed [`NodeConfig::check`].
    pub async fn start(cfg: &NodeConfig, opened: DataDir) -> Result<Service> {
        Self::start_with(cfg, opened, Default::default()).await
    }

    /// [`Service::start`] with what a host shares between its tenants
    /// (trust records, its province's inbox consumer).
    pub async fn start_with(
        cfg: &NodeConfig,
        opened: DataDir,
        shared: yipan_sync::Shared<yipan_log::SledBackend>,
    ) -> Result<Service> {
        let auth = Arc::new(auth::Auth::new(&cfg.tokens_path(), cfg.http.certificate_roles())?);
        let calendar = views::load_calendar(cfg.calendar.as_deref())?;
        let locality = opened.locality;
        let log = Arc::new(opened.log);
        log.set_occurred_bounds(cfg.validation.bounds().map_err(|e| Error::Config(format!("[validation] {e}")))?);
        let client = yipan_sync::connect(
            &cfg.sync,
            &format!("yipan-node-{locality}"),
            yipan_access::nats::Principal::Locality(locality),
        )
        .await?;
        let sync = Replication::start_with(log.clone(), client.clone(), cfg.sync.clone(), shared);
        let metrics = sync.metrics();
        let views: views::Views = Default::default();
        let (views_stop, views_stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        {
            let (log, views, calendar, rx) = (log.clone(), views.clone(), calendar.clone(), views_stopped.clone());
            tasks.push(tokio::spawn(yipan_sync::supervise(
                "projections",
                views_stopped.clone(),
                metrics.clone(),
                move || views::run(log.clone(), views.clone(), calendar.clone(), rx.clone()),
            )));
        }
        if !cfg.sync.downstream.is_empty() {
            let (log, views, client, sync_cfg, rx) =
                (log.clone(), views.clone(), client.clone(), cfg.sync.clone(), views_stopped.clone());
            let every = std::time::Duration::from_secs(cfg.views_interval_s.max(1));
            tasks.push(tokio::spawn(yipan_sync::supervise(
                "projection changes",
                views_stopped,
                metrics.clone(),
                move || {
                    views::publish_changes(
                        log.clone(),
                        views.clone(),
                        client.clone(),
                        sync_cfg.clone(),
                        every,
                        rx.clone(),
                    )
                },
            )));
        }
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
        .with_privacy(calendar.clone(), cfg.privacy.clone());
        tasks.push(tokio::spawn(console::audit_daily(log.clone(), state.audits().clone(), stopped.clone())));
        {
            let (log, registry, privacy, rx) =
                (log.clone(), state.erasures().clone(), cfg.privacy.clone(), stopped.clone());
            tasks.push(tokio::spawn(yipan_sync::supervise("erasures", stopped, metrics.clone(), move || {
                erasure::run(log.clone(), registry.clone(), calendar.clone(), privacy.clone(), rx.clone())
            })));
        }
        Ok(Service { locality, log, metrics, views, state, client, sync, stop, views_stop, tasks })
    }

    /// Its NATS connection.
    pub fn client(&self) -> async_nats::Client {
        self.client.clone()
    }

    /// The locality's HTTP API.
    pub fn router(&self) -> Router {
        api::router(self.state.clone())
    }

    /// Stops replicating and working, and waits until everything is flushed.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.sync.stop().await;
        let _ = self.views_stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        // Bounded: with NATS unreachable a flush would wait for the reconnect.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), self.client.flush()).await;
    }
}
