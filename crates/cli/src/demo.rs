//! `yipan demo`, the main job: a local `nats-server`, three locality nodes
//! (residences 610112 未央区 and 610113 雁塔区 in Xi'an, origin 411522 光山县 in
//! Henan), the scripted scenario `deploy/scenarios/xian-henan.jsonl` driven
//! through each node's HTTP API, and what each side received from the others.
//!
//! Secure by default, as a deployment runs: a throw-away CA issues the TLS
//! certificates of nats-server and the nodes, every locality connects to NATS
//! as its own NKey user with least-privilege permissions, the admin creates
//! the streams, and every HTTP call carries a token of the least role.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use yipan_access::Role;
use yipan_core::Locality;
use yipan_node::provision::{issue_token, Deployment};
use yipan_node::Node;
use yipan_testkit::{http, NatsServer};

const LOCALITIES: [(&str, &str); 3] = [
    ("610112", "未央区 (Xi'an), residence"),
    ("610113", "雁塔区 (Xi'an), residence"),
    ("411522", "光山县 (Henan), origin"),
];
const SCENARIO: &str = include_str!("../../../deploy/scenarios/xian-henan.jsonl");

pub async fn run(keep: Option<PathBuf>, serve: bool) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let base = keep.unwrap_or_else(|| tmp.path().to_path_buf());
    let localities =
        LOCALITIES.iter().map(|(c, _)| Locality::parse(c).map_err(anyhow::Error::msg)).collect::<Result<Vec<_>>>()?;
    let deployment = Deployment::create(&base.join("secrets"), &localities, &[])?;
    let secure = deployment.nats_server();
    let nats = tokio::task::spawn_blocking(move || NatsServer::start_secure(secure))
        .await?
        .map_err(anyhow::Error::msg)
        .context("starting nats-server")?;
    println!("== nats-server with JetStream at {} (TLS; NKey users, anonymous refused)", nats.url());
    let mut provinces: Vec<u8> = localities.iter().map(|l| l.province()).collect();
    provinces.dedup();
    deployment.provision(&nats.url(), &provinces).await?;
    println!("   streams created by the admin user; localities may not administer streams");

    let mut secret = [0u8; 16];
    secret.iter_mut().enumerate().for_each(|(i, b)| *b = (i as u8).wrapping_mul(37) ^ 0x5a);
    for (code, _) in LOCALITIES {
        let dir = base.join(code);
        let l = Locality::parse(code).map_err(anyhow::Error::msg)?;
        yipan_node::datadir::init(&dir, l, Some(&secret))?;
        // Its province's authority certifies the new locality's key (no key is copied by hand),
        // naming it as the division registry does.
        let serial = deployment.certify(l, yipan_core::division::name(l).unwrap_or(code), &dir)?;
        let place = yipan_core::division::name(l).unwrap_or("?");
        println!("   {code} {place}: key certified by the authority of province {:02} (serial {serial})", l.province());
    }
    let published = deployment.publish_trust(&nats.url()).await?;
    println!(
        "   trust: one root (anchor {}…), authorities of provinces {}, {published} statements on YIPAN_TRUST",
        &hex::encode(deployment.authority.anchor()?.to_bytes())[..12],
        provinces.iter().map(|p| format!("{p:02}")).collect::<Vec<_>>().join(" and ")
    );

    let tls = deployment.client_tls()?;
    let mut nodes = Vec::new();
    let mut clients = Vec::new();
    for ((code, name), locality) in LOCALITIES.iter().zip(&localities) {
        let mut cfg = deployment.node_config(*locality, base.join(code), &nats.url())?;
        cfg.sync.head_interval_ms = 500;
        cfg.sync.head_refresh_ms = 5_000;
        let token = issue_token(&base.join(code), Role::Clerk, "demo clerk")?;
        // Kept beside the data (0600) so `--keep DIR` leaves a usable credential.
        yipan_access::secret::write_private(&base.join(code).join("clerk.token"), token.as_bytes())?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let node = Node::start(cfg, listener).await?;
        let registry = yipan_core::division::name(*locality).unwrap_or("?");
        let role = name.split_once(' ').map(|(_, r)| r).unwrap_or("");
        println!(
            "== node {code} {registry} {role}: https://{} (clerk token issued; only its hash is stored)",
            node.addr
        );
        clients.push((code.to_string(), http::Client::new(node.addr, Some(tls.clone()), Some(token))));
        nodes.push(node);
    }
    // Each node learns the others from the trust stream alone, verified up to the anchor.
    let started = Instant::now();
    while !nodes.iter().all(|n: &Node| localities.iter().all(|l| n.log.trust().is_certified(*l))) {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the nodes did not learn every certificate from the trust stream within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "   every node learned the {} certified localities from the trust stream alone in {} ms",
        localities.len(),
        started.elapsed().as_millis()
    );
    let client_of = |code: &str| clients.iter().find(|(c, _)| c == code).map(|(_, c)| c.clone());
    if let Some(c) = client_of("610112") {
        let anonymous = c.with_token(None);
        let (status, _) = tokio::task::spawn_blocking(move || anonymous.request("GET", "/v1/status", None))
            .await?
            .map_err(anyhow::Error::msg)?;
        println!("   a request without a token is refused: HTTP {status}");
        if status != 401 {
            bail!("an anonymous request was not refused ({status})");
        }
    }

    println!("\n== scenario: {} events posted to the nodes' HTTP APIs", SCENARIO.lines().count());
    for line in SCENARIO.lines().filter(|l| !l.trim().is_empty()) {
        let step: Value = serde_json::from_str(line)?;
        let at = step["at"].as_str().context("scenario step without `at`")?.to_string();
        let body = step["event"].to_string();
        let client = client_of(&at).with_context(|| format!("no node {at}"))?;
        let (status, reply) = tokio::task::spawn_blocking(move || client.request("POST", "/v1/events", Some(&body)))
            .await?
            .map_err(anyhow::Error::msg)?;
        if status != 200 {
            bail!("{at} refused a scenario event ({status}): {reply}");
        }
        let reply: Value = serde_json::from_str(&reply)?;
        let to: Vec<String> = reply["recipients"]
            .as_array()
            .map(|a| {
                a.iter().map(|r| format!("{}@{}", r["locality"].as_str().unwrap_or("?"), r["channel_seq"])).collect()
            })
            .unwrap_or_default();
        println!(
            "  {at}#{:<3} {:<34} → {}",
            reply["seq"],
            step["event"]["kind"].as_str().unwrap_or("?"),
            to.join(", ")
        );
    }

    println!("\n== waiting for every channel to converge");
    let started = Instant::now();
    loop {
        let mut behind = 0u64;
        for author in &nodes {
            for (recipient, head) in author.log.outbound_heads(u64::MAX)? {
                if let Some(r) = nodes.iter().find(|n| n.locality == recipient) {
                    behind += head.saturating_sub(r.log.channel_head(author.locality, recipient)?);
                }
            }
        }
        if behind == 0 {
            println!("  converged in {} ms", started.elapsed().as_millis());
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("{behind} events still not delivered after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    for node in &nodes {
        let me = node.locality;
        println!("\n== {me}: received from the other localities");
        let mut any = false;
        for (author, _) in node.log.roster() {
            if author == me {
                continue;
            }
            for ev in node.log.read_channel(author, me, 1, 10_000)? {
                any = true;
                let kind = ev.kind().map(|k| format!("{} {}", k.name(), k.zh())).unwrap_or_default();
                let person = ev.envelope.person_key.get(..8).unwrap_or("-");
                let place = |code: &str| {
                    Locality::parse(code).ok().and_then(yipan_core::division::name).unwrap_or("?").to_string()
                };
                println!(
                    "  from {author}#{:<3} {:<44} person {person}  ({} {}→{} {})",
                    ev.seq(),
                    kind,
                    ev.envelope.origin,
                    place(&ev.envelope.origin),
                    ev.envelope.residence,
                    place(&ev.envelope.residence)
                );
            }
        }
        if !any {
            println!("  (nothing)");
        }
        let report = node.log.verify()?;
        println!(
            "  verify: {} events, {} faults, {} quarantined",
            report.events,
            report.faults.len(),
            report.quarantined
        );
        if !report.ok() {
            bail!("{me}: verify found faults: {:?}", report.faults);
        }
    }

    println!("\n== the same responsibility cards and digests on both sides of each relationship");
    let start = Instant::now();
    while nodes.iter().any(|n| n.views.read().map(|v| v.len()).unwrap_or(0) != n.log.len()) {
        if start.elapsed() > Duration::from_secs(30) {
            bail!("projections did not catch up");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // As of now: everything the scenario recorded is known (a fixed instant would
    // precede the recording once the real date passes it).
    let as_of = chrono::Utc::now();
    let origin = nodes.iter().find(|n| n.locality.to_string() == "411522").context("origin node")?;
    for residence in nodes.iter().filter(|n| n.locality.to_string() != "411522") {
        let (r, o) = (
            residence.views.read().map_err(|_| anyhow::anyhow!("views lock"))?,
            origin.views.read().map_err(|_| anyhow::anyhow!("views lock"))?,
        );
        let same = r.pair_digest(residence.locality, origin.locality, as_of)
            == o.pair_digest(residence.locality, origin.locality, as_of);
        println!(
            "  {} ↔ {}: pair digest {} on both sides: {}",
            residence.locality,
            origin.locality,
            hex::encode(&r.pair_digest(residence.locality, origin.locality, as_of)[..8]),
            if same { "identical" } else { "DIFFERENT" }
        );
        if !same {
            bail!("{} and {} disagree", residence.locality, origin.locality);
        }
        for rel in r.relationships() {
            let card = r.card(rel, as_of);
            println!(
                "  card of person {} ({}→{}) as of {}:",
                &rel.person.to_string()[..8],
                rel.origin,
                rel.residence,
                yipan_projections::calendar::date_of(as_of)
            );
            for item in &card.items {
                let state = match &item.state {
                    yipan_projections::state::ItemState::Done { on_time, .. } => {
                        if *on_time {
                            "done".to_string()
                        } else {
                            "done late".to_string()
                        }
                    }
                    yipan_projections::state::ItemState::Pending => "pending".into(),
                    yipan_projections::state::ItemState::Overdue { days } => format!("overdue {days} d"),
                };
                println!(
                    "    {:<28} due {}  {state}",
                    format!("{} {}", item.name_zh, item.id.split('.').next().unwrap_or("")),
                    item.due
                );
            }
            for ex in r.exchanges(rel, as_of) {
                let state = match &ex.state {
                    yipan_projections::state::ExchangeState::Closed { at, on_time, .. } => format!(
                        "answered {}{}",
                        yipan_projections::calendar::date_of(*at),
                        if *on_time { " on time" } else { " late" }
                    ),
                    yipan_projections::state::ExchangeState::Open => "open".into(),
                    yipan_projections::state::ExchangeState::Overdue { days } => format!("overdue {days} d"),
                };
                println!("    exchange {} {}→{} due {}: {state}", ex.kind.zh(), ex.from, ex.to, ex.due);
                if let Some(up) = &ex.follow_up {
                    let state = match &up.state {
                        yipan_projections::state::ExchangeState::Closed { on_time, .. } => {
                            if *on_time { "done on time" } else { "done late" }.to_string()
                        }
                        yipan_projections::state::ExchangeState::Open => "open".into(),
                        yipan_projections::state::ExchangeState::Overdue { days } => format!("overdue {days} d"),
                    };
                    println!("      then {} tells {} (from {}, due {}): {state}", ex.from, ex.to, up.from, up.due);
                }
            }
        }
    }

    scorecard_of_610112(&nodes, as_of)?;

    println!("\n== need-to-know: 610113 holds nothing about persons living in 610112, and vice versa");
    for (a, b) in [("610112", "610113"), ("610113", "610112")] {
        let node = nodes.iter().find(|n| n.locality.to_string() == a).context("node")?;
        let other = Locality::parse(b).map_err(anyhow::Error::msg)?;
        let leaked = node
            .log
            .read_all(None, 100_000)?
            .iter()
            .filter(|e| e.envelope.residence == b || e.author() == Some(other))
            .count();
        println!("  {a} holds {leaked} events of {b}'s relationships");
        if leaked > 0 {
            bail!("{a} received events meant for {b}");
        }
    }

    println!("\n== who received 李秀英's personal data: each node's disclosure log (no personal value in it)");
    for node in &nodes {
        let person = yipan_core::PersonKey::derive("41152219920315002X", &secret);
        let entries = node.log.disclosures_of(&person)?;
        println!("  {}: {} releases", node.locality, entries.len());
        for e in &entries {
            println!("    {e}");
        }
    }

    erasure(&base, &tls, &nodes, &secret).await?;

    if serve {
        serve_consoles(&base, &deployment, &nodes)?;
        tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    }

    println!("\n== stopping nodes and nats-server");
    for node in nodes {
        node.stop().await?;
    }
    drop(nats);
    println!("done");
    Ok(())
}

/// 610112's own scorecard for the statistics quarter 2026-Q4 (21 September –
/// 20 December, months closing on the 20th): every indicator with its target, the cohort's denominators and
/// the place-level work (a lecture, a distribution point, a survey, staff by community).
fn scorecard_of_610112(nodes: &[Node], as_of: chrono::DateTime<chrono::Utc>) -> Result<()> {
    let n = node(nodes, "610112")?;
    let v = n.views.read().map_err(|_| anyhow::anyhow!("views lock"))?;
    let scope = yipan_projections::scorecard::Scope::Locality { locality: n.locality };
    let card = v.scorecard(scope, yipan_projections::Period::Quarter(2026, 4), as_of);
    println!(
        "\n== 610112 {} scorecard for the statistics quarter {} ({} – {}), as of {}",
        yipan_core::division::name(n.locality).unwrap_or("?"),
        card.period,
        card.from,
        card.to,
        yipan_projections::calendar::date_of(as_of)
    );
    for i in &card.indicators {
        let value = match (i.value, i.comparison) {
            (None, _) => "-".to_string(),
            (Some(v), "at_most") => format!("{v:.1}"),
            (Some(v), _) => format!("{:.0}%", v * 100.0),
        };
        let target =
            if i.comparison == "at_most" { format!("≤{}", i.target) } else { format!("≥{:.0}%", i.target * 100.0) };
        let pass = match i.pass {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "no data",
        };
        println!(
            "  {:<22} {:>3}/{:<3} {:>6}  target {:<6} {:<8} {}",
            i.id, i.numerator, i.denominator, value, target, pass, i.name_zh
        );
    }
    let p = card.population;
    println!(
        "  cohort: {} registered, {} women 15–49, {} married women 15–49",
        p.registered, p.women_15_49, p.married_women_15_49
    );
    if let Some(a) = &card.activity {
        println!(
            "  place-level work: {} outreach activities reaching {} people, {} distribution points handing out {} units, \
             {} survey rounds; {} townships with migrants",
            a.outreach_activities,
            a.outreach_attendance,
            a.distribution_points,
            a.units_distributed,
            a.survey_rounds,
            a.townships_with_migrants
        );
    }
    Ok(())
}

/// 李秀英 asks the residence 610112 to erase her personal data: it drops every
/// tier of hers it holds, asks the origin to do the same for what it sent
/// there, and shows the origin's signed receipt; chains and digests hold.
async fn erasure(
    base: &std::path::Path,
    tls: &std::sync::Arc<rustls::ClientConfig>,
    nodes: &[Node],
    secret: &[u8],
) -> Result<()> {
    let person = yipan_core::PersonKey::derive("41152219920315002X", secret);
    let (residence, origin) = (node(nodes, "610112")?, node(nodes, "411522")?);
    let tiers_held = |n: &Node| -> Result<(usize, usize)> {
        let events = n.log.read_person(person)?;
        Ok((events.iter().filter(|e| !e.signed.tiers.is_empty()).count(), events.len()))
    };
    println!("\n== 李秀英 asks 610112 to erase her personal data (PIPL art. 47); a supervisor executes it");
    for n in [residence, origin] {
        let (with, all) = tiers_held(n)?;
        println!("  before: {} holds {all} events about her, {with} with personal tiers", n.locality);
    }
    let as_of = chrono::Utc::now();
    let digest = |n: &Node| n.views.read().ok().map(|v| v.pair_digest(origin.locality, residence.locality, as_of));
    let before = (digest(residence), digest(origin));
    let token = issue_token(&base.join("610112"), Role::Supervisor, "demo supervisor")?;
    let supervisor = http::Client::new(residence.addr, Some(tls.clone()), Some(token));
    let body = format!(r#"{{"person":"{person}","basis":"person_request","reference":"610112-DPO-2026-001"}}"#);
    let (status, reply) = tokio::task::spawn_blocking(move || supervisor.request("POST", "/v1/erasures", Some(&body)))
        .await?
        .map_err(anyhow::Error::msg)?;
    if status != 201 {
        bail!("the erasure was refused ({status}): {reply}");
    }
    let reply: Value = serde_json::from_str(&reply)?;
    println!(
        "  610112 dropped {} tier payloads of {} events and destroyed {} data keys (the sealed copies in the streams are unreadable)",
        reply["erased"]["payloads"], reply["erased"]["events"], reply["erased"]["keys_destroyed"]
    );
    for r in reply["requests"].as_array().into_iter().flatten() {
        println!(
            "  request {} sent to {} — answer by {}",
            r["id"].as_str().unwrap_or("?"),
            r["recipients"],
            r["answer_by"].as_str().unwrap_or("?")
        );
    }
    let registry_of = |n: &Node| {
        let registry = yipan_node::erasure::Registry::default();
        registry.load(&n.log)?;
        Ok::<_, anyhow::Error>(yipan_node::erasure::views(&registry, n.locality, Some(&person), chrono::Utc::now()))
    };
    let started = Instant::now();
    loop {
        let sent = registry_of(residence)?;
        if sent.iter().all(|v| v.complete) && !sent.is_empty() {
            for v in &sent {
                for a in &v.answers {
                    println!(
                        "  {} confirmed in {} ms with its signed receipt {}: dropped {} payloads of {} events it held",
                        a.locality,
                        started.elapsed().as_millis(),
                        a.receipt.as_deref().unwrap_or("?"),
                        a.payloads_dropped.unwrap_or(0),
                        a.events_held.unwrap_or(0)
                    );
                }
            }
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the origin did not confirm the erasure within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for v in registry_of(origin)? {
        println!("  411522 sees the same request ({}, complete: {})", v.direction, v.complete);
    }
    for n in [residence, origin] {
        let (with, all) = tiers_held(n)?;
        let report = n.log.verify()?;
        println!(
            "  after: {} holds {all} events about her, {with} with personal tiers ({}); verify: {}",
            n.locality,
            if n.locality == residence.locality {
                "none of hers is left here"
            } else {
                "the origin's own records, which she may ask 411522 to erase; 610112's copies are gone"
            },
            if report.ok() { "ok" } else { "FAULTS" }
        );
        if !report.ok() {
            bail!("{} does not verify after the erasure: {:?}", n.locality, report.faults);
        }
    }
    let after = (digest(residence), digest(origin));
    let same = before.0.is_some() && before.0 == before.1 && before == after;
    println!("  the relationship's digest is unchanged on both sides: {}", if same { "yes" } else { "NO" });
    if !same {
        bail!("an erasure changed a projection digest");
    }
    Ok(())
}

fn node<'a>(nodes: &'a [Node], code: &str) -> Result<&'a Node> {
    nodes.iter().find(|n| n.locality.to_string() == code).with_context(|| format!("node {code}"))
}

/// `--serve`: tells each locality's console address with a clerk's and a
/// supervisor's sign-in link, then the caller waits for Ctrl-C.
fn serve_consoles(base: &std::path::Path, deployment: &Deployment, nodes: &[Node]) -> Result<()> {
    println!("\n== serving until Ctrl-C: the operator consoles (sign in by opening a link)");
    println!(
        "   the nodes' TLS certificate is issued by a throw-away CA: {}\n   (import it into the browser, or accept the warning once per address)",
        deployment.ca().display()
    );
    for node in nodes {
        let dir = base.join(node.locality.to_string());
        let clerk = std::fs::read_to_string(dir.join("clerk.token"))?;
        let supervisor = issue_token(&dir, Role::Supervisor, "demo supervisor")?;
        let name = LOCALITIES.iter().find(|(c, _)| *c == node.locality.to_string()).map(|(_, n)| *n).unwrap_or("");
        println!("\n   {} {name}", node.locality);
        println!("     console     https://{}/console/", node.addr);
        println!("     clerk       https://{}/console/#token={}", node.addr, clerk.trim());
        println!("     supervisor  https://{}/console/#token={supervisor}", node.addr);
    }
    println!("\n   (the token travels in the link's #fragment, which the browser never sends to a server;\n    the console keeps it for this tab only. Ctrl-C stops everything.)");
    Ok(())
}
