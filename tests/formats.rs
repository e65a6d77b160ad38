//! Formats that never break: data written by an earlier release — three
//! localities' data directories (sled stores, keys, rosters) and every
//! message that release left in the JetStream streams — checked into git,
//! then read, verified, ingested, replicated and audited by this release,
//! mixed with events this release writes.
//!
//! The fixture `tests/data/v1-release/` was written by release `f1c172e`
//! (per-event signatures, schema version 1): 610112 and 411522 ran and
//! replicated; 610113 was never started, so the events addressed to it are
//! only in the stream dump (`stream.jsonl`) and reach its store for the first
//! time here. Regenerate it only when deliberately starting a new fixture:
//! `YIPAN_WRITE_FIXTURES=1 cargo test -p yipan-node --test formats`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use yipan_access::nats::Principal;
use yipan_core::{Locality, PersonKey};
use yipan_node::provision::Deployment;
use yipan_node::{Node, NodeConfig};
use yipan_proto::v1::{self, event_body::Kind, EventBody, EventDraft};
use yipan_testkit::NatsServer;

const CODES: [&str; 3] = ["610112", "610113", "411522"];
const SECRET: &[u8] = b"format-fixture-secret";

fn loc(code: &str) -> Locality {
    Locality::parse(code).unwrap()
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/v1-release")
}

fn person(n: u64) -> String {
    PersonKey::derive(&format!("41152219900101{n:04}"), SECRET).to_string()
}

fn body(kind: Kind) -> Option<EventBody> {
    Some(EventBody { kind: Some(kind) })
}

/// An event about person `n` (from origin 411522) living at `residence`.
fn draft(residence: &str, n: u64, kind: Kind) -> EventDraft {
    EventDraft {
        person_key: person(n),
        origin: "411522".into(),
        residence: residence.into(),
        body: body(kind),
        ..Default::default()
    }
}

/// An arrival of person `n` at `residence`, with identity and contact tiers.
fn arrival(residence: &str, n: u64) -> EventDraft {
    EventDraft {
        identity: Some(v1::IdentityTier {
            name: "张三".into(),
            id_number: "11010519491231002X".into(),
            ..Default::default()
        }),
        contact: Some(v1::ContactTier { phone: "13800001234".into(), ..Default::default() }),
        ..draft(
            residence,
            n,
            Kind::ArrivalRegistered(v1::ArrivalRegistered {
                channel: 2,
                expected_stay_months: 6,
                ..Default::default()
            }),
        )
    }
}

/// A service the residence rendered to person `n`.
fn service(residence: &str, n: u64) -> EventDraft {
    let kind = v1::ServiceRendered { service: v1::ServiceKind::PersonInformed as i32, provider_ref: String::new() };
    draft(residence, n, Kind::ServiceRendered(kind))
}

/// A certificate the origin issued to person `n` living at `residence`.
fn certificate(residence: &str, n: u64) -> EventDraft {
    let kind = v1::CertificateIssued { certificate_ref: format!("C{n}"), valid_until: None };
    draft(residence, n, Kind::CertificateIssued(kind))
}

/// Every file under `from`, relative path → bytes.
fn files(from: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(p.strip_prefix(root).unwrap().to_path_buf(), std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(from, from, &mut out);
    out
}

/// Copies a data directory with the owner-only modes a node insists on (git keeps no modes).
fn copy_tree(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for (rel, bytes) in files(from) {
        let dst = to.join(rel);
        let mut dir = dst.parent().unwrap().to_path_buf();
        std::fs::create_dir_all(&dir).unwrap();
        while dir.starts_with(to) {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
            dir.pop();
        }
        std::fs::write(&dst, bytes).unwrap();
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// One digest over every fixture file (its path and bytes): regenerating it
/// by accident, or any change to it, fails the test.
fn fixture_digest() -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for (rel, bytes) in files(&fixture()) {
        if rel.file_name().is_some_and(|n| n == "SHA256") {
            continue;
        }
        h.update(rel.to_string_lossy().as_bytes());
        h.update([0]);
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(&bytes);
    }
    hex::encode(h.finalize())
}

/// A message as the stream held it.
#[derive(serde::Serialize, serde::Deserialize)]
struct Dumped {
    stream: String,
    subject: String,
    headers: Vec<(String, String)>,
    payload: String,
}

struct Net {
    nats: NatsServer,
    deployment: Deployment,
    base: tempfile::TempDir,
}

impl Net {
    async fn start(base: tempfile::TempDir) -> Net {
        let localities: Vec<Locality> = CODES.iter().map(|c| loc(c)).collect();
        let deployment = Deployment::create(&base.path().join("secrets"), &localities, &[]).unwrap();
        let secure = deployment.nats_server();
        let nats = tokio::task::spawn_blocking(move || NatsServer::start_secure(secure)).await.unwrap().unwrap();
        deployment.provision(&nats.url(), &[61, 41]).await.unwrap();
        Net { nats, deployment, base }
    }

    fn config(&self, code: &str) -> NodeConfig {
        let mut cfg = self.deployment.node_config(loc(code), self.base.path().join(code), &self.nats.url()).unwrap();
        cfg.sync.head_interval_ms = 300;
        cfg.sync.head_refresh_ms = 1_500;
        cfg.sync.repair_grace_ms = 300;
        cfg.sync.ack_timeout_ms = 2000;
        cfg
    }

    async fn node(&self, code: &str) -> Node {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Node::start(self.config(code), listener).await.unwrap()
    }

    async fn nats_as(&self, principal: Principal) -> async_nats::Client {
        let cfg = self.deployment.sync_config(principal, &self.nats.url()).unwrap();
        yipan_sync::connect_options(&cfg, principal).unwrap().connect(self.nats.url()).await.unwrap()
    }
}

/// Waits until every author's events addressed to every running recipient are held there.
async fn converge(nodes: &HashMap<&str, Node>, within: Duration) {
    let start = Instant::now();
    loop {
        let mut behind = 0;
        for (a, an) in nodes {
            for (r, rn) in nodes {
                if a != r {
                    let sent = an
                        .log
                        .outbound_heads(u64::MAX)
                        .unwrap()
                        .into_iter()
                        .find(|(x, _)| *x == loc(r))
                        .map_or(0, |(_, h)| h);
                    behind += sent - rn.log.channel_head(loc(a), loc(r)).unwrap();
                }
            }
        }
        if behind == 0 {
            return;
        }
        assert!(start.elapsed() < within, "{behind} events not delivered within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Audits every event stream and expects `events` events and no fault.
async fn audit(
    net: &Net,
    roster: &yipan_trust::TrustState,
    events: u64,
    as_of: chrono::DateTime<chrono::Utc>,
) -> yipan_audit::AuditReport {
    let mut auditor = yipan_audit::Auditor::new(roster.clone());
    yipan_audit::stream::read_all(net.nats_as(Principal::Auditor).await, &mut auditor, |_| {}).await.unwrap();
    let (report, _) = auditor.finish("stream", as_of);
    assert!(report.ok(), "{:?}", report.faults);
    assert_eq!(report.events, events);
    report
}

/// Writes the fixture with this release (see the module documentation).
async fn write_fixture() {
    let net = Net::start(tempfile::tempdir().unwrap()).await;
    let mut keys = Vec::new();
    for code in CODES {
        keys.push((code, yipan_node::datadir::init(&net.base.path().join(code), loc(code), Some(SECRET)).unwrap()));
    }
    for code in CODES {
        let d = yipan_node::datadir::open(&net.base.path().join(code)).unwrap();
        for (other, key) in &keys {
            if *other != code {
                d.log.roster_add(loc(other), *key).unwrap();
            }
        }
    }
    let mut nodes = HashMap::new();
    for code in ["610112", "411522"] {
        nodes.insert(code, net.node(code).await);
    }
    let batches: [(&str, Vec<EventDraft>); 3] = [
        ("610112", (0..3).map(|n| arrival("610112", n)).chain((0..3).map(|n| service("610112", n))).collect()),
        (
            "411522",
            (0..3).map(|n| certificate("610112", n)).chain((10..14).map(|n| certificate("610113", n))).collect(),
        ),
        ("610112", (3..5).map(|n| service("610112", n)).collect()),
    ];
    for (code, drafts) in batches {
        nodes[code].log.append_batch_async(drafts).await.unwrap();
    }
    converge(&nodes, Duration::from_secs(30)).await;
    for (_, n) in nodes.drain() {
        n.stop().await.unwrap();
    }
    // Every message of every stream, as stored.
    let js = async_nats::jetstream::new(net.nats_as(Principal::Auditor).await);
    let mut dump = Vec::new();
    for name in ["YIPAN_EV_41", "YIPAN_EV_61", "YIPAN_KEY_41", "YIPAN_KEY_61"] {
        let Ok(stream) = js.get_stream(name).await else { continue };
        let mut stream = stream;
        let info = stream.info().await.unwrap();
        if info.state.messages == 0 {
            continue;
        }
        for seq in info.state.first_sequence..=info.state.last_sequence {
            let Ok(m) = stream.get_raw_message(seq).await else { continue };
            let headers =
                m.headers.iter().flat_map(|(k, vs)| vs.iter().map(move |v| (k.to_string(), v.to_string()))).collect();
            dump.push(Dumped {
                stream: name.into(),
                subject: m.subject.to_string(),
                headers,
                payload: hex::encode(&m.payload),
            });
        }
    }
    let out = fixture();
    let _ = std::fs::remove_dir_all(&out);
    for code in CODES {
        copy_tree(&net.base.path().join(code), &out.join(code));
    }
    let lines: Vec<String> = dump.iter().map(|d| serde_json::to_string(d).unwrap()).collect();
    std::fs::write(out.join("stream.jsonl"), lines.join("\n") + "\n").unwrap();
    std::fs::write(out.join("SHA256"), fixture_digest() + "\n").unwrap();
    panic!("fixture written to {} ({} stream messages); review and commit it", out.display(), dump.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_release_s_stores_and_streams_are_read_verified_ingested_and_audited() {
    if std::env::var_os("YIPAN_WRITE_FIXTURES").is_some() {
        write_fixture().await;
    }
    let recorded = std::fs::read_to_string(fixture().join("SHA256")).unwrap();
    assert_eq!(recorded.trim(), fixture_digest(), "the checked-in fixture changed; old data must never be rewritten");

    let base = tempfile::tempdir().unwrap();
    for code in CODES {
        copy_tree(&fixture().join(code), &base.path().join(code));
    }
    let net = Net::start(base).await;
    // The earlier release's messages, put back into fresh streams by their authors.
    let dump: Vec<Dumped> = std::fs::read_to_string(fixture().join("stream.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dump.len(), 15);
    for d in &dump {
        let author = loc(d.subject.split('.').nth(5).unwrap());
        let js = async_nats::jetstream::new(net.nats_as(Principal::Locality(author)).await);
        let mut headers = async_nats::HeaderMap::new();
        for (k, v) in &d.headers {
            headers.append(k.as_str(), v.as_str());
        }
        let msg = async_nats::jetstream::message::PublishMessage::build()
            .payload(hex::decode(&d.payload).unwrap().into())
            .headers(headers);
        js.send_publish(d.subject.clone(), msg).await.unwrap().await.unwrap();
    }
    // The old stream alone audits clean.
    let roster = yipan_node::datadir::open(&net.base.path().join("610113")).unwrap().log.trust();
    audit(&net, &roster, 15, chrono::Utc::now()).await;

    // The stores open and verify; 610113 ingests what waited for it in the stream.
    let mut nodes = HashMap::new();
    for code in CODES {
        nodes.insert(code, net.node(code).await);
    }
    converge(&nodes, Duration::from_secs(30)).await;
    let held = |code: &str| nodes[code].log.read_all(None, usize::MAX).unwrap();
    assert_eq!(held("610113").len(), 4, "the earlier release's events for 610113, from the stream");
    assert_eq!(held("610112").len(), 8 + 3);
    assert_eq!(held("411522").len(), 7 + 8);

    // This release writes on top of them; everything replicates and verifies, old and new.
    let batches: [(&str, Vec<EventDraft>); 3] = [
        ("610112", (20..23).map(|n| arrival("610112", n)).chain((0..2).map(|n| service("610112", n))).collect()),
        ("610113", (10..12).map(|n| arrival("610113", n)).collect()),
        (
            "411522",
            (20..23).map(|n| certificate("610112", n)).chain((10..12).map(|n| certificate("610113", n))).collect(),
        ),
    ];
    for (code, drafts) in batches {
        nodes[code].log.append_batch_async(drafts).await.unwrap();
    }
    converge(&nodes, Duration::from_secs(30)).await;
    for code in CODES {
        let report = nodes[code].log.verify().unwrap();
        assert!(report.ok(), "{code}: {:?}", report.faults);
    }
    let own: Vec<_> = held("610112").into_iter().filter(|e| e.envelope.author == "610112").collect();
    assert_eq!(own.iter().map(|e| e.seq()).collect::<Vec<_>>(), (1..=13).collect::<Vec<_>>());
    // One chain, two signature forms: the earlier release's per event, this one's per batch.
    assert!(own[..8].iter().all(|e| !e.batch_signed() && e.signed.signature.len() == 64));
    assert!(own[8..].iter().all(|e| e.batch_signed() && e.signed.signature.is_empty()));
    // 610113 received both forms from 411522 and checks each event alone.
    let key = nodes["411522"].log.public_key();
    let from_origin: Vec<_> = held("610113").into_iter().filter(|e| e.envelope.author == "411522").collect();
    assert_eq!(from_origin.len(), 4 + 2);
    for e in &from_origin {
        e.verify_signature(&key).unwrap();
    }
    assert_eq!(from_origin.iter().filter(|e| e.batch_signed()).count(), 2);
    // Both sides of each pair derive the same digest, and the auditor agrees.
    let as_of = chrono::Utc::now();
    let report = audit(&net, &roster, 15 + 5 + 2 + 5, as_of).await;
    for residence in ["610112", "610113"] {
        let digest = |code: &str| {
            hex::encode(nodes[code].views.read().unwrap().pair_digest(loc("411522"), loc(residence), as_of))
        };
        let start = Instant::now();
        while digest(residence) != digest("411522") {
            assert!(start.elapsed() < Duration::from_secs(10), "pair 411522,{residence} did not converge");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(report.pair_digests[&format!("411522,{residence}")], digest("411522"));
    }
    for (_, n) in nodes.drain() {
        n.stop().await.unwrap();
    }
}
