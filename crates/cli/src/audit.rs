//! `yipan audit`: from a node's data directory, through a running node's
//! API, or independently from the JetStream streams; optionally compares the
//! rebuilt projection digests with what running nodes report.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use base64::Engine;
use ed25519_dalek::VerifyingKey;
use yipan_audit::{print_human, AuditReport, Auditor, Channels};
use yipan_core::Locality;
use yipan_testkit::http;

use crate::access::get;

/// Where to audit from.
pub enum Source<'a> {
    DataDir(&'a Path),
    /// A node's API (client with the auditor's token) and its URL.
    Api(http::Client, &'a str),
    /// The JetStream streams, connecting as the auditor user.
    Nats {
        cfg: yipan_sync::SyncConfig,
        /// Hand-added keys (air-gapped sites).
        roster: Option<&'a Path>,
    },
}

fn progress(show: bool) -> impl FnMut(u64) {
    move |n| {
        if show {
            eprint!("\r  read {n} messages");
        }
    }
}

pub fn run(
    source: Source<'_>,
    calendar: Option<&Path>,
    anchor: Option<VerifyingKey>,
    compare: &[http::Client],
    as_of: Option<&str>,
    json: bool,
    show_progress: bool,
) -> Result<ExitCode> {
    let as_of = audit_instant(as_of)?;
    let show = show_progress || std::io::stderr().is_terminal();
    // The nodes' calendar: digests count working days, so a holiday calendar changes them.
    let calendar = yipan_node::views::load_calendar(calendar)?;
    // Every source yields the trust records it holds; trust is rebuilt from
    // them up to the anchor (the auditor's own, or the node's recorded one)
    // before the events are read, which are checked as they come.
    let (label, auditor, mut store_faults, quarantined): (String, Auditor, Vec<yipan_audit::Finding>, u64) =
        match source {
            Source::DataDir(dir) => {
                let d = yipan_node::datadir::open(dir)?;
                let me = d.locality;
                let recorded = d.log.trust().anchor();
                let anchor = check_anchor(anchor, recorded)?;
                let (trust, findings) =
                    yipan_audit::trust_from(anchor, &d.log.trust_records()?, &hand_added(&d.log.trust()));
                let mut auditor = Auditor::new(trust).with_calendar(calendar);
                let mut tick = progress(show);
                let mut n = 0u64;
                d.log.for_each_raw(None, usize::MAX, |author, _, bytes| {
                    auditor.add(bytes.to_vec(), if author == me { Channels::All } else { Channels::Only(me) });
                    n += 1;
                    if n.is_multiple_of(10_000) {
                        tick(n);
                    }
                })?;
                // The store's own checks: segments, recorded head, own chain from 1, tier payloads kept.
                let v = d.log.verify()?;
                let faults = v.faults.into_iter().map(yipan_audit::Finding::from).collect();
                let mut faults: Vec<yipan_audit::Finding> = faults;
                faults.extend(findings);
                (format!("data directory {} ({me})", dir.display()), auditor, faults, v.quarantined)
            }
            Source::Api(addr, url) => {
                let addr = &addr;
                let health: serde_json::Value = serde_json::from_str(&get(addr, "/healthz")?)?;
                let me = Locality::parse(health["locality"].as_str().unwrap_or_default())
                    .map_err(|e| anyhow!("node locality: {e}"))?;
                let roster: serde_json::Value = serde_json::from_str(&get(addr, "/v1/roster")?)?;
                let recorded = roster["anchor"]
                    .as_str()
                    .map(|a| yipan_log::keyfile::parse_public(a).map_err(|p| anyhow!("node's anchor {p}")))
                    .transpose()?;
                let anchor = check_anchor(anchor, recorded)?;
                let mut records = Vec::new();
                for r in roster["records"].as_array().into_iter().flatten() {
                    let at = chrono::DateTime::parse_from_rfc3339(r["at"].as_str().unwrap_or_default())
                        .map_err(|e| anyhow!("trust record time: {e}"))?
                        .with_timezone(&chrono::Utc);
                    records.push((
                        at,
                        base64::engine::general_purpose::STANDARD.decode(r["b64"].as_str().unwrap_or_default())?,
                    ));
                }
                let mut bootstrap = HashMap::new();
                for l in roster["localities"].as_array().into_iter().flatten().filter(|l| l["status"] == "bootstrap") {
                    let code =
                        Locality::parse(l["locality"].as_str().unwrap_or_default()).map_err(anyhow::Error::msg)?;
                    let key = yipan_log::keyfile::parse_public(l["public_key"].as_str().unwrap_or_default())
                        .map_err(anyhow::Error::msg)?;
                    bootstrap.insert(code, key);
                }
                let (trust, findings) = yipan_audit::trust_from(anchor, &records, &bootstrap);
                let mut auditor = Auditor::new(trust).with_calendar(calendar);
                let mut after: Option<String> = None;
                let mut tick = progress(show);
                loop {
                    let path = match &after {
                        Some(a) => format!("/v1/raw?limit=10000&after={a}"),
                        None => "/v1/raw?limit=10000".to_string(),
                    };
                    let body = get(addr, &path)?;
                    let mut last = None;
                    for line in body.lines().filter(|l| !l.trim().is_empty()) {
                        let v: serde_json::Value = serde_json::from_str(line)?;
                        let bytes =
                            base64::engine::general_purpose::STANDARD.decode(v["b64"].as_str().unwrap_or_default())?;
                        let author =
                            Locality::parse(v["author"].as_str().unwrap_or_default()).map_err(anyhow::Error::msg)?;
                        auditor.add(bytes, if author == me { Channels::All } else { Channels::Only(me) });
                        last = Some(format!("{}:{}", author, v["seq"]));
                    }
                    tick(auditor.len() as u64);
                    match last {
                        Some(l) => after = Some(l),
                        None => break,
                    }
                }
                (format!("node API {url} ({me})"), auditor, findings, 0)
            }
            Source::Nats { cfg, roster } => {
                let keys = match roster {
                    Some(roster) => {
                        let text = std::fs::read_to_string(roster)
                            .with_context(|| format!("reading roster {}", roster.display()))?;
                        yipan_audit::roster::parse(&text).map_err(anyhow::Error::msg)?
                    }
                    None => HashMap::new(),
                };
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                let url = yipan_access::secret::redact_url(&cfg.nats_url);
                let (streams, records, findings, auditor) = rt.block_on(async {
                    let client = yipan_sync::connect_options(&cfg, yipan_access::nats::Principal::Auditor)?
                        .connect(yipan_sync::servers(&cfg.nats_url).as_slice())
                        .await
                        .with_context(|| format!("connecting to {url} as the auditor"))?;
                    let records = match anchor {
                        Some(_) => yipan_audit::stream::read_trust(client.clone()).await.map_err(anyhow::Error::msg)?,
                        None => Vec::new(),
                    };
                    let (trust, findings) = yipan_audit::trust_from(anchor, &records, &keys);
                    let mut auditor = Auditor::new(trust).with_calendar(calendar);
                    let streams = yipan_audit::stream::read_all(client, &mut auditor, progress(show))
                        .await
                        .map_err(anyhow::Error::msg)?;
                    anyhow::Ok((streams, records, findings, auditor))
                })?;
                (
                    format!("JetStream {url} (streams {}, YIPAN_TRUST: {} records)", streams.join(", "), records.len()),
                    auditor,
                    findings,
                    0,
                )
            }
        };
    if show {
        eprintln!();
    }
    let (mut report, _) = auditor.finish(&label, as_of);
    report.faults.append(&mut store_faults);
    report.quarantined = quarantined;
    compare_digests(&mut report, compare, as_of)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_human(&report);
    }
    Ok(if report.ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The instant the digests are computed as of: the one given, or now
/// rounded *up* to a whole second. Up, not down: an event recorded earlier in
/// the current second is one this audit has read, and an instant truncated
/// to the second would leave it out of the digests (the audit of a node
/// that had just taken a batch compared digests of half the batch). Whole
/// seconds keep the printed instant short and a re-run with `--as-of` exact.
fn audit_instant(given: Option<&str>) -> Result<chrono::DateTime<chrono::Utc>> {
    if given.is_some() {
        return yipan_node::views::parse_as_of(given).map_err(anyhow::Error::msg);
    }
    let now = chrono::Utc::now();
    let whole = chrono::SubsecRound::trunc_subsecs(now, 0);
    Ok(if whole == now { whole } else { whole + chrono::TimeDelta::seconds(1) })
}

fn compare_digests(
    report: &mut AuditReport,
    nodes: &[http::Client],
    as_of: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    let t = as_of.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    for addr in nodes {
        let health: serde_json::Value = serde_json::from_str(&get(addr, "/healthz")?)?;
        let me = health["locality"].as_str().unwrap_or_default().to_string();
        for (pair, digest) in report.pair_digests.clone() {
            if !pair.split(',').any(|l| l == me) {
                continue;
            }
            let body: serde_json::Value =
                serde_json::from_str(&get(addr, &format!("/v1/digests?pair={pair}&as_of={t}"))?)?;
            let theirs = body["digest"].as_str().unwrap_or_default();
            let result = if theirs == digest {
                "match".to_string()
            } else {
                format!("node reports {}…, audit computes {}…", &theirs[..16.min(theirs.len())], &digest[..16])
            };
            report.comparisons.insert(format!("{pair} @ {me}"), result);
        }
    }
    Ok(())
}

/// The anchor to verify with: the auditor's if given (it must equal the
/// node's recorded one, else every certificate would be judged by another
/// root), otherwise the node's.
fn check_anchor(given: Option<VerifyingKey>, recorded: Option<VerifyingKey>) -> Result<Option<VerifyingKey>> {
    match (given, recorded) {
        (Some(g), Some(r)) if g != r => Err(anyhow!(
            "the node's trust anchor {}… is not the anchor given ({}…): this node trusts another root",
            hex::encode(&r.to_bytes()[..6]),
            hex::encode(&g.to_bytes()[..6])
        )),
        (Some(g), _) => Ok(Some(g)),
        (None, r) => Ok(r),
    }
}

/// The hand-added keys of a store (status `bootstrap`).
fn hand_added(trust: &yipan_audit::TrustState) -> HashMap<Locality, VerifyingKey> {
    trust
        .view(chrono::Utc::now())
        .into_iter()
        .filter(|l| l.status == "bootstrap")
        .filter_map(|l| {
            Some((Locality::parse(&l.locality).ok()?, yipan_log::keyfile::parse_public(&l.public_key).ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::audit_instant;

    #[test]
    fn the_default_instant_is_a_whole_second_not_before_now() {
        for _ in 0..50 {
            let before = chrono::Utc::now();
            let t = audit_instant(None).unwrap();
            assert!(t >= before, "{t} is before {before}: events recorded just now would be left out");
            assert_eq!(chrono::Timelike::nanosecond(&t), 0, "{t}");
            assert!(t - before <= chrono::TimeDelta::seconds(1), "{t} vs {before}");
        }
        let given = "2026-11-30T16:07:18.250Z";
        assert_eq!(audit_instant(Some(given)).unwrap().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true), given);
    }
}
