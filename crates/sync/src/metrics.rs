//! Replication metrics. Names, help and units are defined once in
//! [`DEFINITIONS`]; labels never carry personal data.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

/// (name, help, kind) of every metric this crate exports.
pub const DEFINITIONS: &[(&str, &str, &str)] = &[
    (
        "yipan_events_published_total",
        "Event messages published to JetStream and acknowledged (one per recipient).",
        "counter",
    ),
    (
        "yipan_publish_errors_total",
        "Failed outbox rounds (NATS down or slow); retried from the durable cursor.",
        "counter",
    ),
    ("yipan_outbox_pending_events", "Own events appended but not yet published.", "gauge"),
    ("yipan_received_stored_total", "Received events verified and stored.", "counter"),
    ("yipan_received_duplicate_total", "Received events already held (redeliveries, re-sends).", "counter"),
    ("yipan_received_gap_total", "Received events held because earlier channel positions were missing.", "counter"),
    (
        "yipan_quarantined_total",
        "Received events rejected and quarantined (forged, wrong recipient, unknown author, malformed, fork).",
        "counter",
    ),
    ("yipan_repair_requests_total", "Re-send requests this node sent to authors.", "counter"),
    ("yipan_repair_served_total", "Re-send requests this node answered as an author.", "counter"),
    ("yipan_events_resent_total", "Event messages re-published on request.", "counter"),
    ("yipan_nats_connected", "1 while the NATS connection is up.", "gauge"),
    ("yipan_inbox_batches_total", "Batches the inbox verified and stored (one flush each).", "counter"),
    (
        "yipan_forks_total",
        "ALERT: two different events signed at one channel position (or an author sequence going back); quarantined.",
        "counter",
    ),
];

/// Counters of one node's replication.
#[derive(Debug, Default)]
pub struct SyncMetrics {
    /// yipan_events_published_total
    pub published: AtomicU64,
    /// yipan_publish_errors_total
    pub publish_errors: AtomicU64,
    /// yipan_outbox_pending_events
    pub outbox_pending: AtomicU64,
    /// yipan_received_stored_total
    pub stored: AtomicU64,
    /// yipan_received_duplicate_total
    pub duplicates: AtomicU64,
    /// yipan_received_gap_total
    pub gaps: AtomicU64,
    /// yipan_quarantined_total
    pub quarantined: AtomicU64,
    /// yipan_repair_requests_total
    pub repair_requests: AtomicU64,
    /// yipan_repair_served_total
    pub repair_served: AtomicU64,
    /// yipan_events_resent_total
    pub resent: AtomicU64,
    /// yipan_nats_connected
    pub nats_connected: AtomicU64,
    /// yipan_inbox_batches_total
    pub inbox_batches: AtomicU64,
    /// yipan_forks_total
    pub forks: AtomicU64,
    /// Recent replication lags (append at the author → stored here), µs; bounded.
    lags: Mutex<Vec<u64>>,
}

/// Most lag samples kept.
const MAX_LAGS: usize = 1 << 20;

impl SyncMetrics {
    fn values(&self) -> [u64; 13] {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        [
            g(&self.published),
            g(&self.publish_errors),
            g(&self.outbox_pending),
            g(&self.stored),
            g(&self.duplicates),
            g(&self.gaps),
            g(&self.quarantined),
            g(&self.repair_requests),
            g(&self.repair_served),
            g(&self.resent),
            g(&self.nats_connected),
            g(&self.inbox_batches),
            g(&self.forks),
        ]
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        for ((name, help, kind), v) in DEFINITIONS.iter().zip(self.values()) {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
    }

    /// Records one replication lag.
    pub fn record_lag(&self, lag: Duration) {
        let mut l = self.lags.lock().unwrap_or_else(|p| p.into_inner());
        if l.len() < MAX_LAGS {
            l.push(lag.as_micros() as u64);
        }
    }

    /// Takes the recorded lags (µs), leaving none.
    pub fn take_lags(&self) -> Vec<u64> {
        std::mem::take(&mut *self.lags.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Keeps `yipan_nats_connected` current.
pub(crate) async fn watch_connection(
    client: async_nats::Client,
    metrics: std::sync::Arc<SyncMetrics>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let up = client.connection_state() == async_nats::connection::State::Connected;
        metrics.nats_connected.store(u64::from(up), Ordering::Relaxed);
        if crate::sleep_or_stop(Duration::from_millis(250), &mut stop).await {
            return;
        }
    }
}
