//! Replication metrics, each declared once (field, name, kind, help) in the
//! `metrics!` table below; labels never carry personal data.

use std::sync::atomic::{AtomicU64, Ordering};
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
            /// Replication lag (append at the author → stored here): a fixed-size histogram.
            pub lag: LagHistogram,
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
                self.lag.render(out);
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
    pending: "yipan_received_pending_total", "counter", "Received events redelivered later because their author's key (certificate or handover) has not reached this node yet.";
    trust_applied: "yipan_trust_records_applied_total", "counter", "Trust records (certificates, revocations, key handovers) verified up to the anchor and applied.";
    trust_refused: "yipan_trust_records_refused_total", "counter", "Trust records refused and quarantined with a trust.* code (ALERT for trust.key_conflict, trust.bad_signature, trust.unknown_issuer).";
    forks: "yipan_forks_total", "counter", "ALERT: two different events signed at one channel position (or an author sequence going back); quarantined.";
    heads_announced: "yipan_heads_announced_total", "counter", "Channel heads announced to recipients (a changed head at once, an unchanged one every head_refresh_ms).";
    repair_requests: "yipan_repair_requests_total", "counter", "Re-send requests this node sent to authors.";
    repair_served: "yipan_repair_served_total", "counter", "Re-send requests this node answered as an author.";
    repair_refused: "yipan_repair_refused_total", "counter", "Re-send requests refused by the per-recipient rate limit.";
    resent: "yipan_events_resent_total", "counter", "Event messages re-published on request.";
    nats_connected: "yipan_nats_connected", "gauge", "1 while the NATS connection is up.";
    inbox_batches: "yipan_inbox_batches_total", "counter", "Batches the inbox verified and stored (one flush each).";
    consumers_recreated: "yipan_inbox_consumer_recreated_total", "counter", "Inbox consumers re-created from the node's cursor (their server lost their state, e.g. restarted with consumer_state = memory).";
    unrouted: "yipan_inbox_unrouted_total", "counter", "Messages a province's shared inbox consumer acknowledged unread because no tenant of this host is their recipient (a tenant started later reads them with its own consumer first).";
    coverage_lost: "yipan_inbox_coverage_lost_total", "counter", "Times a tenant lost the coverage of its province's shared inbox consumer because it kept failing to take its messages (it then reads its own address again through its own consumer).";
    passed_by: "yipan_inbox_passed_by_total", "counter", "Messages a province's shared inbox consumer acknowledged unread for a tenant that lost its coverage (the tenant reads them again through its own consumer).";
    dead_letters: "yipan_outbox_dead_letters_total", "counter", "ALERT: messages set aside because they can never be published (larger than the server's max_payload).";
    task_restarts: "yipan_task_restarts_total", "counter", "ALERT: background tasks that ended or panicked unexpectedly and were restarted.";
}

/// Buckets per decade of the lag histogram (bounds 10^(k/10) apart, ~26%).
const PER_DECADE: usize = 10;
/// Decades covered, from 10 µs to 10^(1+DECADES) µs (≈ 28 h).
const DECADES: usize = 10;
const BUCKETS: usize = PER_DECADE * DECADES + 1;

/// Upper bound of fine bucket `i`, µs.
fn bound_us(i: usize) -> f64 {
    10f64.powf(1.0 + i as f64 / PER_DECADE as f64)
}

/// Replication lag as a histogram of fixed size (no sample buffer): fine
/// log-spaced buckets internally (for percentiles within ~26%), exported to
/// Prometheus as `yipan_replication_lag_seconds` with 1-2-5 buckets.
#[derive(Debug)]
pub struct LagHistogram {
    buckets: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Default for LagHistogram {
    fn default() -> Self {
        LagHistogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

impl LagHistogram {
    /// Records one lag.
    pub fn record(&self, lag: Duration) {
        let us = lag.as_micros().min(u64::MAX as u128) as u64;
        let i = if us <= 10 {
            0
        } else {
            (((us as f64).log10() - 1.0) * PER_DECADE as f64).ceil().clamp(0.0, (BUCKETS - 1) as f64) as usize
        };
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Lags recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The `q` quantile in milliseconds, interpolated within its bucket; 0 when empty.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        Self::quantile_of(&self.counts(), q)
    }

    /// The bucket counts (to merge many nodes' histograms, or subtract an
    /// earlier snapshot for one interval's percentiles).
    pub fn counts(&self) -> Vec<u64> {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect()
    }

    /// The `q` quantile in milliseconds of bucket counts from [`LagHistogram::counts`].
    pub fn quantile_of(counts: &[u64], q: f64) -> f64 {
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut seen = 0u64;
        for (i, c) in counts.iter().enumerate() {
            if *c > 0 && (seen + c) as f64 >= rank {
                let lo = if i == 0 { 0.0 } else { bound_us(i - 1) };
                let frac = (rank - seen as f64) / *c as f64;
                return (lo + (bound_us(i) - lo) * frac) / 1000.0;
            }
            seen += c;
        }
        bound_us(counts.len().max(1) - 1) / 1000.0
    }

    /// Forgets everything recorded (benchmarks measure one phase at a time).
    pub fn reset(&self) {
        for b in &self.buckets {
            b.store(0, Ordering::Relaxed);
        }
        self.sum_us.store(0, Ordering::Relaxed);
        self.count.store(0, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String) {
        use std::fmt::Write;
        const NAME: &str = "yipan_replication_lag_seconds";
        let _ = writeln!(out, "# HELP {NAME} Time from the author recording an event to this node storing it.");
        let _ = writeln!(out, "# TYPE {NAME} histogram");
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let mut cumulative = 0u64;
        // Export at every 1-2-5 step: fine bounds 10^(k/10) with k ≡ 0, 3, 7 (mod 10).
        for (i, c) in counts.iter().enumerate() {
            cumulative += c;
            if matches!(i % PER_DECADE, 0 | 3 | 7) {
                let le = bound_us(i) / 1e6;
                let _ = writeln!(out, "{NAME}_bucket{{le=\"{le:.6}\"}} {cumulative}");
            }
        }
        let _ = writeln!(out, "{NAME}_bucket{{le=\"+Inf\"}} {}", self.count());
        let _ = writeln!(out, "{NAME}_sum {:.6}", self.sum_us.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{NAME}_count {}", self.count());
    }
}

impl SyncMetrics {
    /// Records one replication lag.
    pub fn record_lag(&self, lag: Duration) {
        self.lag.record(lag);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_quantiles_are_within_a_bucket_and_exported_as_a_histogram() {
        let h = LagHistogram::default();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.quantile_ms(0.5);
        let p99 = h.quantile_ms(0.99);
        assert!((40.0..=63.0).contains(&p50), "p50 {p50}");
        assert!((79.0..=126.0).contains(&p99), "p99 {p99}");
        let mut out = String::new();
        h.render(&mut out);
        assert!(out.contains("# TYPE yipan_replication_lag_seconds histogram"));
        assert!(out.contains("yipan_replication_lag_seconds_bucket{le=\"+Inf\"} 100"));
        assert!(out.contains("yipan_replication_lag_seconds_bucket{le=\"0.100000\"} 100"), "{out}");
        assert!(out.contains("yipan_replication_lag_seconds_bucket{le=\"0.010000\"} 10"), "{out}");
        h.reset();
        assert_eq!(h.count(), 0);
    }
}
