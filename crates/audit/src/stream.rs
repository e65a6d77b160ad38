//! Reads every message of the `YIPAN_EV_*` JetStream streams — what an
//! auditor with read-only NATS access sees, with no node involved.

use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use yipan_core::Locality;

use crate::{Auditor, Channels};

/// Reads all event streams into `auditor` through `client` (connected as an
/// auditor: stream names, info and message reads only); `progress` is called
/// with the count so far.
pub async fn read_all(
    client: async_nats::Client,
    auditor: &mut Auditor,
    progress: impl FnMut(u64),
) -> Result<Vec<String>, String> {
    for_each(client, |payload, channels| auditor.add(payload, channels), progress).await
}

/// The highest author sequence of `author` among all event messages (the
/// witness bound for revoking its key), without checking anything else.
pub async fn highest_seq(client: async_nats::Client, author: Locality) -> Result<u64, String> {
    let code = author.to_string();
    let mut highest = 0;
    for_each(
        client,
        |payload, _| {
            if let Ok(ev) = yipan_log::StoredEvent::decode(&payload) {
                if ev.envelope.author == code {
                    highest = highest.max(ev.seq());
                }
            }
        },
        |_| {},
    )
    .await?;
    Ok(highest)
}

/// Calls `each` with every message of every event stream and the channel
/// its subject vouches for; returns the stream names.
pub async fn for_each(
    client: async_nats::Client,
    mut each: impl FnMut(Vec<u8>, Channels),
    mut progress: impl FnMut(u64),
) -> Result<Vec<String>, String> {
    let js = jetstream::new(client);
    let mut names: Vec<String> = Vec::new();
    let mut list = js.stream_names();
    while let Some(n) = list.next().await {
        let n = n.map_err(|e| format!("listing streams: {e}"))?;
        if n.starts_with("YIPAN_EV_") {
            names.push(n);
        }
    }
    names.sort();
    let mut read = 0u64;
    for name in &names {
        let mut stream = js.get_stream(name).await.map_err(|e| format!("{name}: {e}"))?;
        let info = stream.info().await.map_err(|e| format!("{name}: {e}"))?;
        let (first, last) = (info.state.first_sequence, info.state.last_sequence);
        if info.state.messages == 0 {
            continue;
        }
        // Direct reads by stream sequence: no consumer is created, nothing is
        // acked. Up to 64 in flight, handed on in stream order.
        let stream = &stream;
        let mut reads = futures::stream::iter(first..=last)
            .map(|seq| async move {
                (seq, tokio::time::timeout(Duration::from_secs(10), stream.get_raw_message(seq)).await)
            })
            .buffered(64);
        while let Some((seq, got)) = reads.next().await {
            let msg = match got {
                Ok(Ok(m)) => m,
                Ok(Err(_)) => continue, // deleted or expired
                Err(_) => return Err(format!("{name}: timed out reading message {seq}")),
            };
            let recipient = msg.subject.split('.').nth(4).and_then(|r| Locality::parse(r).ok());
            let channels = recipient.map(Channels::Only).unwrap_or(Channels::All);
            each(msg.payload.to_vec(), channels);
            read += 1;
            if read.is_multiple_of(10_000) {
                progress(read);
            }
        }
    }
    progress(read);
    Ok(names)
}

/// Reads every record of the trust stream `YIPAN_TRUST`, in stream order,
/// with the server's timestamp of each (the instant it is judged at).
pub async fn read_trust(client: async_nats::Client) -> Result<Vec<(chrono::DateTime<chrono::Utc>, Vec<u8>)>, String> {
    let js = jetstream::new(client);
    let stream = js.get_stream("YIPAN_TRUST").await.map_err(|e| format!("YIPAN_TRUST: {e}"))?;
    let (first, last) = (stream.cached_info().state.first_sequence, stream.cached_info().state.last_sequence);
    let mut out = Vec::new();
    if stream.cached_info().state.messages == 0 {
        return Ok(out);
    }
    for seq in first..=last {
        let msg = match tokio::time::timeout(Duration::from_secs(10), stream.get_raw_message(seq)).await {
            Ok(Ok(m)) => m,
            Ok(Err(_)) => continue,
            Err(_) => return Err(format!("YIPAN_TRUST: timed out reading message {seq}")),
        };
        let nanos = msg.time.unix_timestamp_nanos().clamp(0, i64::MAX as i128) as i64;
        out.push((chrono::DateTime::from_timestamp_nanos(nanos), msg.payload.to_vec()));
    }
    Ok(out)
}
