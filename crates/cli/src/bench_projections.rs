//! `yipan bench projections`: rebuilds every projection from a large log and
//! prints events/s beside the raw sled scan rate of the same data, and the
//! memory per tracked person.

use std::time::Instant;

use anyhow::Result;
use serde::Serialize;
use yipan_core::{Locality, PersonKey};
use yipan_log::{SledBackend, SledStore};
use yipan_projections::WorkCalendar;
use yipan_proto::v1::{self, event_body::Kind, EventBody, EventDraft};

/// What the benchmark measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub events: u64,
    pub persons: u64,
    pub generate_s: f64,
    pub raw_scan_per_s: f64,
    pub log_open_s: f64,
    /// Heap of the log's in-memory indexes after opening (channel heads and
    /// authors' highest sequences; the indexes themselves are on disk), bytes.
    pub index_heap_bytes: usize,
    /// Resident-memory growth of opening the log (its in-memory indexes), per event.
    pub log_bytes_per_event: f64,
    pub rebuild_per_s: f64,
    pub rebuild_s: f64,
    pub bytes_per_person: f64,
    pub scorecard_ms: f64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "log of {} events about {} persons (generated and signed in {:.1} s)",
            self.events, self.persons, self.generate_s
        )?;
        writeln!(f, "raw sled scan of the same store:        {:>10.0} events/s", self.raw_scan_per_s)?;
        writeln!(
            f,
            "rebuild every projection from the log:  {:>10.0} events/s  ratio {:.2}  ({:.2} s)",
            self.rebuild_per_s,
            self.rebuild_per_s / self.raw_scan_per_s,
            self.rebuild_s
        )?;
        writeln!(f, "log open (index rebuild):               {:>10.2} s", self.log_open_s)?;
        writeln!(
            f,
            "in-memory log indexes (channel heads, authors' highest seqs; the rest on disk): {} bytes ({:.3} per event)",
            self.index_heap_bytes,
            self.index_heap_bytes as f64 / self.events.max(1) as f64
        )?;
        writeln!(
            f,
            "memory per event opening the log (indexes + sled page cache, capped at 256 MB): {:.0} bytes",
            self.log_bytes_per_event
        )?;
        writeln!(f, "memory per tracked person (projections): {:>9.0} bytes", self.bytes_per_person)?;
        write!(f, "one locality scorecard (this month) over all persons: {:.1} ms", self.scorecard_ms)
    }
}

fn draft(p: u64, k: u64) -> EventDraft {
    let person = PersonKey::derive(&format!("{p:018}"), b"bench").to_string();
    let (origin, residence) = ("411522", "610112");
    // Spread over the year before the run (never in the future: the node refuses that).
    let day0 = chrono::Utc::now() - chrono::Duration::days(2 + (p % 360) as i64);
    let body = match k {
        0 => Kind::ArrivalRegistered(v1::ArrivalRegistered { channel: 2, ..Default::default() }),
        1 => Kind::ServiceRendered(v1::ServiceRendered {
            service: v1::ServiceKind::PersonInformed as i32,
            provider_ref: String::new(),
        }),
        2 => Kind::CertificateVerified(v1::CertificateVerified::default()),
        3 => Kind::NotificationSent(v1::NotificationSent { topic: 1, about_events: vec![] }),
        _ => Kind::CaseAssistRequested(v1::CaseAssistRequested { urgency: 1 + (p % 2) as i32, subject: String::new() }),
    };
    EventDraft {
        person_key: person,
        origin: origin.into(),
        residence: residence.into(),
        occurred_at: Some(yipan_core::time::to_ts(day0 + chrono::Duration::hours(k as i64))),
        body: Some(EventBody { kind: Some(body) }),
        ..Default::default()
    }
}

/// Resident memory, after handing freed heap back to the system (else memory
/// freed by an earlier stage of the run is reused and a stage's growth reads as ~0).
pub(crate) fn rss_bytes() -> u64 {
    // SAFETY: malloc_trim only releases free heap pages; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

/// Resets the process's peak resident memory (Linux `clear_refs` 5), so that
/// [`peak_rss_bytes`] reports the peak of what runs after.
pub(crate) fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident memory since the last [`reset_peak_rss`] (`VmHWM`).
pub(crate) fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

pub fn run(events: u64) -> Result<Report> {
    let tmp = tempfile::tempdir()?;
    let me = Locality::parse("610112").map_err(anyhow::Error::msg)?;
    let key = yipan_log::keyfile::generate()?;
    let persons = events.div_ceil(5);
    let t = Instant::now();
    {
        let log = SledStore::open(SledBackend::open(tmp.path())?, me, key.clone())?;
        yipan_log::bench::fill(&log, events, |j| draft(j / 5, j % 5))?;
    }
    let generate_s = t.elapsed().as_secs_f64();

    // Raw baseline: scan every key and value of the segments (the events) of the same sled store.
    let scanned = {
        let backend = SledBackend::open(tmp.path())?;
        let t = Instant::now();
        let mut bytes = 0usize;
        for item in backend.db().range(&[yipan_log::layout::SEGMENT][..]..&[yipan_log::layout::SEGMENT + 1][..]) {
            let (k, v) = item?;
            bytes += k.len() + v.len();
        }
        std::hint::black_box(bytes);
        t.elapsed().as_secs_f64()
    };
    let raw_scan_per_s = events as f64 / scanned;

    let opened = rss_bytes();
    let t = Instant::now();
    let log = SledStore::open(SledBackend::open(tmp.path())?, me, key)?;
    let log_open_s = t.elapsed().as_secs_f64();
    let log_bytes_per_event = rss_bytes().saturating_sub(opened) as f64 / events.max(1) as f64;
    let index_heap_bytes = log.index_heap_bytes();
    let before = rss_bytes();
    let t = Instant::now();
    let p = yipan_node::views::build(&log, WorkCalendar::default())?;
    let rebuild_s = t.elapsed().as_secs_f64();
    let after = rss_bytes();
    let tracked = p.relationships().count() as u64;
    let t = Instant::now();
    let now = chrono::Utc::now();
    let card = p.scorecard(
        yipan_projections::scorecard::Scope::Locality { locality: me },
        yipan_projections::Period::month_of(yipan_projections::calendar::date_of(now)),
        now,
    );
    std::hint::black_box(card);
    let scorecard_ms = t.elapsed().as_secs_f64() * 1000.0;
    Ok(Report {
        events,
        persons: tracked.max(persons.min(tracked)),
        generate_s,
        raw_scan_per_s,
        log_open_s,
        log_bytes_per_event,
        index_heap_bytes,
        rebuild_per_s: events as f64 / rebuild_s,
        rebuild_s,
        bytes_per_person: after.saturating_sub(before) as f64 / tracked.max(1) as f64,
        scorecard_ms,
    })
}
