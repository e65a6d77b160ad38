//! `yipan append`: reads one JSON event, a JSON array or JSON lines, and
//! appends them as one atomic batch. Any bad event rejects the whole input
//! with its line (or array index) named; nothing is written.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use yipan_proto::v1::EventDraft;

use yipan_node::datadir as config;

/// Where an event came from in the input, for error messages.
enum Origin {
    Whole,
    Line(usize),
    Index(usize),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Whole => f.write_str("event"),
            Origin::Line(n) => write!(f, "line {n}"),
            Origin::Index(i) => write!(f, "event [{i}]"),
        }
    }
}

/// Splits input text into events with their places.
fn split(text: &str) -> Result<Vec<(Origin, Value)>> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        bail!("no events in the input");
    }
    if let Ok(v) = serde_json::from_str::<Value>(trimmed) {
        return Ok(match v {
            Value::Array(items) => items.into_iter().enumerate().map(|(i, v)| (Origin::Index(i), v)).collect(),
            v => vec![(Origin::Whole, v)],
        });
    }
    if trimmed.starts_with('[') {
        let e = serde_json::from_str::<Value>(trimmed).err().map(|e| e.to_string()).unwrap_or_default();
        bail!("malformed JSON array: {e}");
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value =
            serde_json::from_str(line).map_err(|e| anyhow::anyhow!("line {}: malformed JSON: {e}", i + 1))?;
        out.push((Origin::Line(i + 1), v));
    }
    Ok(out)
}

/// Runs `yipan append`.
pub fn run(dir: &Path, file: Option<PathBuf>, inline: Option<String>) -> Result<ExitCode> {
    let text = match (inline, file) {
        (Some(t), _) => t,
        (None, Some(p)) if p.as_os_str() != "-" => {
            std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?
        }
        _ => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).context("reading stdin")?;
            s
        }
    };
    let items = split(&text)?;
    let node = config::open(dir)?;
    let mut places = Vec::with_capacity(items.len());
    let mut drafts: Vec<EventDraft> = Vec::with_capacity(items.len());
    let mut early = Vec::with_capacity(items.len());
    for (place, value) in items {
        let (d, w) = yipan_core::json::draft_and_warnings(value, node.person_secret.as_deref())
            .map_err(|e| anyhow::anyhow!("{place}: {e}"))?;
        drafts.push(d);
        early.push(w);
        places.push(place);
    }
    let appended = node.log.append_batch(drafts).map_err(|e| match e {
        yipan_log::Error::InvalidInBatch { index, source } => {
            anyhow::anyhow!("{}: {source}; nothing was written", places[index])
        }
        yipan_log::Error::Invalid(source) => anyhow::anyhow!("{}: {source}; nothing was written", places[0]),
        other => anyhow::anyhow!("{other}; nothing was written"),
    })?;
    for ((place, a), early) in places.iter().zip(&appended).zip(&early) {
        for w in early.iter().chain(&a.warnings) {
            eprintln!("warning: {place}: {w}");
        }
        let recipients: Vec<Value> =
            a.recipients.iter().map(|(l, ch)| serde_json::json!({"locality": l, "channel_seq": ch})).collect();
        println!(
            "{}",
            serde_json::json!({"id": a.id.to_string(), "seq": a.seq, "hash": hex::encode(a.hash), "recipients": recipients, "duplicate": a.duplicate})
        );
    }
    Ok(ExitCode::SUCCESS)
}
