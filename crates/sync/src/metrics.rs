//! Replication metrics, each declared once (field, name, kind, help) in the
//! `metrics!` table below; labels never carry personal data.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

/// Declares every metric once: its field, Prometheus name, kind and help.
macro_rules! metrics {
    ($($field:ident: $name:literal, $kind:literal, $help:literal;)*) => {
        /// (name, help, kind) of every metric this crate exports.
        pub const DEFINITIONS: &[(&str, &str, &str)] = &[$(($name, $help, $kind)),*];

        /// Counters of one node's replication.
        #[derive(Debug, Default)]
        pub struct SyncMetrics {
            $(
                #[doc = $help]
                pub $field: AtomicU64,
            )*
            /// Recent replication lags (append at the author → stored here), µs; bounded.
            lags: Mutex<Vec<u64>>,
        }

        impl SyncMetrics {
            /// Prometheus text exposition of every metric.
            pub fn render(&self, out: &mut String) {
                use std::fmt::Write;
                $(
                    let _ = writeln!(
                        out,
                        "# HELP {} {}\n# TYPE {} {}\n{} {}",
                        $name, $help, $name, $kind, $name, self.$field.load(Ordering::Relaxed)
                    );
                )*
            }
        }
    };
}

metrics! {
    published: "yipan_events_published_total", "counter", "Event messages published to JetStream and acknowledged (one per recipient).";
    publish_errors: "yipan_publish_errors_total", "counter", "Failed outbox rounds (NATS down or slow); retried from the durable cursor.";
    outbox_pending: "yipan_outbox_pending_events", "gauge", "Own events appended but not yet published.";
    stored: "yipan_received_stored_total", "counter", "Received events verified and stored.";
    duplicates: "yipan_received_duplicate_total", "counter", "Received events already held (redeliveries, re-sends).";
    gaps: "yipan_received_gap_total", "counter", "Received events held because earlier channel positions were missing.";
    quarantined: "yipan_quarantined_total", "counter", "Received events rejected and quarantined (forged, wrong recipient, unknown author, malformed, fork).";
    forks: "yipan_forks_total", "counter", "ALERT: two different events signed at one channel position (or an author sequence going back); quarantined.";
    repair_requests: "yipan_repair_requests_total", "counter", "Re-send requests this node sent to authors.";
    repair_served: "yipan_repair_served_total", "counter", "Re-send requests this node answered as an author.";
    repair_refused: "yipan_repair_refused_total", "counter", "Re-send requests refused by the per-recipient rate limit.";
    resent: "yipan_events_resent_total", "counter", "Event messages re-published on request.";
    nats_connected: "yipan_nats_connected", "gauge", "1 while the NATS connection is up.";
    inbox_batches: "yipan_inbox_batches_total", "counter", "Batches the inbox verified and stored (one flush each).";
}

/// Most lag samples kept.
const MAX_LAGS: usize = 1 << 20;

impl SyncMetrics {
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
