//! Conversions between protobuf timestamps and chrono instants.

use chrono::{DateTime, TimeZone, Utc};
use yipan_proto::Timestamp;

/// A chrono instant as a protobuf timestamp.
pub fn to_ts(t: DateTime<Utc>) -> Timestamp {
    Timestamp { seconds: t.timestamp(), nanos: t.timestamp_subsec_nanos() as i32 }
}

/// A protobuf timestamp as a chrono instant; `None` if out of range.
pub fn from_ts(ts: &Timestamp) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(ts.seconds, u32::try_from(ts.nanos).ok()?).single()
}

/// RFC 3339 text of a protobuf timestamp (UTC, millisecond precision).
pub fn ts_text(ts: Option<&Timestamp>) -> String {
    ts.and_then(from_ts).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)).unwrap_or_default()
}

/// Parses an RFC 3339 instant, e.g. `2026-10-03T09:00:00+08:00`.
pub fn parse_rfc3339(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("`{}` is not an RFC 3339 time such as `2026-10-03T09:00:00+08:00` ({e})", crate::clip(s)))
}
