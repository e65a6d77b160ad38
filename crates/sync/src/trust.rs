//! Follows the trust stream `YIPAN_TRUST` into the log (DESIGN.md invariant
//! 10, docs/trust.md) and publishes this node's own key handovers to it.
//!
//! Records are read by stream sequence with direct gets (no consumer: every
//! node reads the whole small stream, and a locality needs no consumer
//! rights on it), verified up to the trust anchor in stream order, and kept
//! in the log; the stream's own timestamp of each message is the instant a
//! certificate's validity is judged at, so every node and every later audit
//! judge a record alike. A cursor in the log's metadata resumes after a
//! restart; a stream that was recreated (its last sequence below the
//! cursor) is read again from the start (records already held are
//! duplicates).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::HeaderMap;
use futures::StreamExt;
use tokio::sync::watch;
use yipan_log::{Backend, Log};
use yipan_trust::Applied;

use crate::metrics::SyncMetrics;
use crate::{sleep_or_stop, subjects, Error, Result, SyncConfig};

/// Log metadata: the last trust-stream sequence applied.
pub const CURSOR: &str = yipan_log::log::TRUST_CURSOR;
/// Log metadata: the highest own handover sequence published to the trust stream.
pub const PUBLISHED: &str = "trust_rotations_published";

/// Creates (or finds) the trust stream: file storage, kept forever (old
/// certificates verify old events), duplicates dropped within two minutes.
pub async fn ensure_stream(js: &jetstream::Context, cfg: &SyncConfig) -> Result<()> {
    let config = jetstream::stream::Config {
        name: subjects::TRUST_STREAM.into(),
        subjects: vec![subjects::TRUST_SUBJECTS.into()],
        storage: jetstream::stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        // A certificate is a few hundred bytes, a handover a few KiB.
        max_message_size: 64 * 1024,
        num_replicas: cfg.stream_replicas.max(1),
        ..Default::default()
    };
    if !cfg.manage_streams {
        return Ok(());
    }
    if let Err(first) = js.get_or_create_stream(config).await {
        js.get_stream(subjects::TRUST_STREAM).await.map_err(|_| Error::nats(first))?;
    }
    Ok(())
}

/// The trust stream read once for many logs: a host's tenants all need every
/// record of the same public stream, and each reading it alone costs the
/// servers one direct get per record per tenant (8 million for a national
/// stream in one province group's host). One task keeps the records, in
/// stream order with the server's timestamps; each tenant applies them to
/// its own trust state and log exactly as if it had read them itself.
#[derive(Default)]
pub struct TrustFeed {
    records: std::sync::RwLock<Vec<FeedRecord>>,
    /// Connections to read through (each tenant's): the first that works.
    sources: std::sync::Mutex<Vec<jetstream::Context>>,
}

/// One record of the trust stream.
#[derive(Clone)]
struct FeedRecord {
    seq: u64,
    subject: String,
    payload: bytes::Bytes,
    when: chrono::DateTime<chrono::Utc>,
}

impl TrustFeed {
    /// An empty feed.
    pub fn new() -> Arc<TrustFeed> {
        Arc::new(TrustFeed::default())
    }

    fn last(&self) -> u64 {
        self.records.read().map(|r| r.last().map(|x| x.seq).unwrap_or(0)).unwrap_or(0)
    }

    fn after(&self, seq: u64) -> Vec<FeedRecord> {
        self.records
            .read()
            .map(|r| {
                let from = r.partition_point(|x| x.seq <= seq);
                r[from..].to_vec()
            })
            .unwrap_or_default()
    }

    /// Reads what the stream holds beyond the feed; returns how many records.
    pub async fn refresh(&self, js: &jetstream::Context) -> Result<usize> {
        let stream = js.get_stream(subjects::TRUST_STREAM).await.map_err(Error::nats)?;
        let state = &stream.cached_info().state;
        let (first, last) = (state.first_sequence, state.last_sequence);
        let mut have = self.last();
        if last < have {
            tracing::warn!(have, last, "trust stream is behind the host's feed (recreated?); reading it again");
            if let Ok(mut r) = self.records.write() {
                r.clear();
            }
            have = 0;
        }
        let mut got = Vec::new();
        let mut s = direct_gets(&stream, (have + 1).max(first), last);
        while let Some(r) = s.next().await {
            if let Some(r) = r? {
                got.push(r);
            }
        }
        let n = got.len();
        if let Ok(mut r) = self.records.write() {
            r.extend(got);
        }
        Ok(n)
    }

    /// Adds a connection the feed may read through.
    pub fn add_source(&self, js: jetstream::Context) {
        if let Ok(mut s) = self.sources.lock() {
            s.push(js);
        }
    }

    /// Keeps the feed current every `every` until `stop`, through the first
    /// source that works (one tenant's NATS user revoked or missing must not
    /// starve the others of trust records).
    pub async fn run(self: Arc<Self>, every: Duration, mut stop: watch::Receiver<bool>) {
        let mut failing = 0u32;
        loop {
            let sources: Vec<jetstream::Context> = self.sources.lock().map(|s| s.clone()).unwrap_or_default();
            let mut last_error = None;
            for js in &sources {
                match self.refresh(js).await {
                    Ok(_) => {
                        last_error = None;
                        break;
                    }
                    Err(e) => last_error = Some(e),
                }
            }
            match last_error {
                Some(e) => {
                    failing += 1;
                    // Loud once it lasts: no tenant learns new keys or revocations meanwhile.
                    if failing.is_multiple_of(30) {
                        tracing::warn!(error = %e, sources = sources.len(), "the host cannot read the trust stream");
                    } else {
                        tracing::debug!(error = %e, "trust stream not read for the host's feed; retrying");
                    }
                }
                None => failing = 0,
            }
            if sleep_or_stop(every, &mut stop).await {
                return;
            }
        }
    }
}

/// Direct gets of `from..=last`, 64 in flight, in stream order; `None` for
/// a position an operator deleted.
fn direct_gets<'a>(
    stream: &'a jetstream::stream::Stream,
    from: u64,
    last: u64,
) -> impl futures::Stream<Item = Result<Option<FeedRecord>>> + 'a {
    futures::stream::iter(from..=last)
        .map(move |seq| async move { (seq, stream.get_raw_message(seq).await) })
        .buffered(64)
        .map(|(seq, got)| match got {
            Ok(msg) => {
                let nanos = msg.time.unix_timestamp_nanos();
                let when = chrono::DateTime::from_timestamp_nanos(nanos.clamp(0, i64::MAX as i128) as i64);
                Ok(Some(FeedRecord { seq, subject: msg.subject.to_string(), payload: msg.payload, when }))
            }
            // Deleted by an operator: nothing to apply at this position.
            Err(e) if e.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(Error::nats(e)),
        })
}

/// Reads new trust records every `trust_poll_ms` until `stop` (from the
/// host's `feed` when there is one), and publishes own handovers not yet on
/// the stream.
pub(crate) async fn follow<B: Backend>(
    log: Arc<Log<B>>,
    js: jetstream::Context,
    cfg: SyncConfig,
    metrics: Arc<SyncMetrics>,
    feed: Option<Arc<TrustFeed>>,
    mut stop: watch::Receiver<bool>,
) {
    let interval = Duration::from_millis(cfg.trust_poll_ms.max(50));
    loop {
        if let Err(e) = publish_handovers(&log, &js).await {
            tracing::debug!(error = %e, "own key handovers not published yet; retrying");
        }
        let read = match &feed {
            Some(feed) => read_from_feed(&log, feed, &metrics).await,
            None => read_new(&log, &js, &metrics).await,
        };
        if let Err(e) = read {
            tracing::debug!(error = %e, "trust stream not read; retrying");
        }
        if sleep_or_stop(interval, &mut stop).await {
            return;
        }
    }
}

fn cursor<B: Backend>(log: &Log<B>, name: &str) -> u64 {
    log.meta_get(name).ok().flatten().and_then(|v| v.try_into().ok()).map(u64::from_be_bytes).unwrap_or(0)
}

/// Applies every record after the cursor; returns how many were read.
pub async fn read_new<B: Backend>(log: &Arc<Log<B>>, js: &jetstream::Context, metrics: &SyncMetrics) -> Result<u64> {
    let stream = js.get_stream(subjects::TRUST_STREAM).await.map_err(Error::nats)?;
    let state = &stream.cached_info().state;
    let (first, last) = (state.first_sequence, state.last_sequence);
    let mut at = cursor(log, CURSOR);
    if last < at {
        tracing::warn!(cursor = at, last, "trust stream is behind this node's cursor (recreated?); reading it again");
        at = 0;
    }
    let records = direct_gets(&stream, (at + 1).max(first), last);
    let read = apply_in_chunks(log, metrics, records).await?;
    if read > 0 && last > at {
        log.meta_put(CURSOR, &last.to_be_bytes())?;
    }
    Ok(read)
}

/// Applies the host feed's records after the cursor; returns how many.
async fn read_from_feed<B: Backend>(log: &Arc<Log<B>>, feed: &TrustFeed, metrics: &SyncMetrics) -> Result<u64> {
    let mut at = cursor(log, CURSOR);
    let last = feed.last();
    if last == 0 {
        return Ok(0);
    }
    if last < at {
        tracing::warn!(cursor = at, last, "trust stream is behind this node's cursor (recreated?); reading it again");
        at = 0;
    }
    let records = feed.after(at);
    let read = apply_in_chunks(log, metrics, futures::stream::iter(records.into_iter().map(|r| Ok(Some(r))))).await?;
    if read > 0 && last > at {
        log.meta_put(CURSOR, &last.to_be_bytes())?;
    }
    Ok(read)
}

/// Applies records 256 at a time, each chunk with one durable write, and
/// moves the cursor after each chunk (records read again after a crash are
/// duplicates: kept records are replayed at open).
async fn apply_in_chunks<B: Backend>(
    log: &Arc<Log<B>>,
    metrics: &SyncMetrics,
    records: impl futures::Stream<Item = Result<Option<FeedRecord>>>,
) -> Result<u64> {
    let mut records = std::pin::pin!(records);
    let mut read = 0u64;
    let mut chunk: Vec<(Vec<u8>, chrono::DateTime<chrono::Utc>)> = Vec::new();
    let mut chunk_last = 0;
    loop {
        let next = records.next().await;
        let finished = next.is_none();
        if let Some(r) = next {
            let Some(r) = r? else { continue };
            // What a subject may carry: a locality's rotation subject only its own
            // handovers, an authority's subject only statements. Anything else is
            // dropped and counted, neither quarantined nor alerted on (a locality's
            // NATS user may publish on its rotation subject: no flood of alerts from it).
            if let Some(problem) = misplaced(&r.subject, &r.payload) {
                tracing::warn!(subject = %r.subject, seq = r.seq, %problem, "trust-stream message dropped");
                SyncMetrics::add(&metrics.trust_refused, 1);
                read += 1;
                continue;
            }
            chunk.push((r.payload.to_vec(), r.when));
            chunk_last = r.seq;
            if chunk.len() < 256 {
                continue;
            }
        }
        if !chunk.is_empty() {
            let (l, records) = (log.clone(), std::mem::take(&mut chunk));
            let n = records.len() as u64;
            let outcomes = tokio::task::spawn_blocking(move || l.apply_trust_records(&records))
                .await
                .map_err(|e| Error::Nats(format!("trust task failed: {e}")))??;
            for outcome in outcomes {
                match outcome {
                    Ok(Applied::Duplicate) => {}
                    Ok(_) => SyncMetrics::add(&metrics.trust_applied, 1),
                    Err(_) => SyncMetrics::add(&metrics.trust_refused, 1),
                }
            }
            read += n;
            log.meta_put(CURSOR, &chunk_last.to_be_bytes())?;
        }
        if finished {
            return Ok(read);
        }
    }
}

/// Publishes this node's key handovers (from its own chain) that the trust
/// stream may not hold yet, so localities without a channel from it learn
/// them too. `Nats-Msg-Id` makes a repeat within the window a no-op, and a
/// later repeat is a duplicate record every reader ignores.
async fn publish_handovers<B: Backend>(log: &Arc<Log<B>>, js: &jetstream::Context) -> Result<()> {
    let me = log.locality();
    let done = cursor(log, PUBLISHED);
    let mut seqs: Vec<u64> = log.own_handovers().into_iter().filter(|n| *n > done).collect();
    seqs.sort_unstable();
    for seq in seqs {
        let Some(ev) = log.event_at(me, seq)? else { continue };
        let record = yipan_trust::statement::record_of_rotation(prost::Message::encode_to_vec(&ev.signed));
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("rotation-{me}-{seq}").as_str());
        js.publish_with_headers(subjects::trust_rotation(me), headers, record.into())
            .await
            .map_err(Error::nats)?
            .await
            .map_err(Error::nats)?;
        log.meta_put(PUBLISHED, &seq.to_be_bytes())?;
        tracing::info!(%me, seq, "key handover published to the trust stream");
    }
    Ok(())
}

/// Why a trust-stream message does not belong on its subject, if it does not.
fn misplaced(subject: &str, payload: &[u8]) -> Option<String> {
    use yipan_trust::statement::{decode_record, Record};
    let tokens: Vec<&str> = subject.split('.').collect();
    let record = decode_record(payload);
    match tokens.as_slice() {
        ["yipan", "v1", "trust", _, "statement"] => match record {
            Ok(Record::Statement(_)) => None,
            _ => Some("not a signed statement".into()),
        },
        ["yipan", "v1", "trust", _, "rotation", code] => match record {
            Ok(Record::Rotation(bytes)) => match yipan_log::StoredEvent::decode(&bytes) {
                Ok(ev) if ev.envelope.author == *code => None,
                Ok(ev) => {
                    Some(format!("a handover of {} on the subject of {code}", yipan_core::clip(&ev.envelope.author)))
                }
                Err(p) => Some(format!("not a signed event: {p}")),
            },
            _ => Some("not a key handover".into()),
        },
        _ => Some("not a trust subject".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_carry_only_what_they_are_for() {
        let statement = yipan_trust::statement::record_of_statement(yipan_trust::statement::sign(
            &ed25519_dalek::SigningKey::from_bytes(&[1; 32]),
            yipan_trust::statement::revocation(1, 0, "x"),
            chrono::Utc::now(),
        ));
        assert_eq!(misplaced("yipan.v1.trust.61.statement", &statement), None);
        assert!(misplaced("yipan.v1.trust.61.rotation.610112", &statement).is_some());
        assert!(misplaced("yipan.v1.trust.61.statement", b"junk").is_some());
        assert!(misplaced("yipan.v1.trust.61.rotation.610112", b"junk").is_some());
    }
}
