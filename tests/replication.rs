//! Replication between three locality nodes — residences 610112 and 610113
//! (Xi'an), origin 411522 (Henan) — over a real `nats-server` started on a
//! random port with the shipped, secured configuration (TLS, one NKey user
//! per locality with least-privilege permissions, streams made by the
//! admin). Appends go through each node's log or its HTTPS API with a token.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use yipan_access::nats::Principal;
use yipan_access::Role;
use yipan_core::audience::Audience;
use yipan_core::{Locality, PersonKey};
use yipan_log::SledStore;
use yipan_node::provision::{issue_token, Deployment};
use yipan_node::{Node, NodeConfig};
use yipan_proto::v1::{self, event_body::Kind, EventBody, EventDraft};
use yipan_proto::Message;
use yipan_testkit::{http, NatsServer};

const CODES: [&str; 3] = ["610112", "610113", "411522"];
const SECRET: &[u8] = b"replication-test-secret";

fn loc(code: &str) -> Locality {
    Locality::parse(code).unwrap()
}

struct Cluster {
    nats: NatsServer,
    base: tempfile::TempDir,
    deployment: Deployment,
    nodes: HashMap<&'static str, Node>,
}

impl Cluster {
    async fn start() -> Cluster {
        let mut c = Cluster::prepare(None).await;
        for code in CODES {
            c.start_node(code).await;
        }
        c
    }

    /// Everything but the nodes: secrets, the secured nats-server (with
    /// another `max_payload` if given), streams, data directories and rosters.
    async fn prepare(max_payload: Option<&'static str>) -> Cluster {
        let base = tempfile::tempdir().unwrap();
        let localities: Vec<Locality> = CODES.iter().map(|c| loc(c)).collect();
        let downstream = [(loc("610112"), Audience::Statistics), (loc("610112"), Audience::Health)];
        let deployment = Deployment::create(&base.path().join("secrets"), &localities, &downstream).unwrap();
        let secure = deployment.nats_server();
        let nats = tokio::task::spawn_blocking(move || match max_payload {
            Some(m) => NatsServer::start_secure_with_max_payload(secure, m),
            None => NatsServer::start_secure(secure),
        })
        .await
        .unwrap()
        .expect("nats-server");
        deployment.provision(&nats.url(), &[61, 41]).await.unwrap();
        let mut keys = Vec::new();
        for code in CODES {
            keys.push((code, yipan_node::datadir::init(&base.path().join(code), loc(code), Some(SECRET)).unwrap()));
        }
        for code in CODES {
            let d = yipan_node::datadir::open(&base.path().join(code)).unwrap();
            for (other, key) in &keys {
                if *other != code {
                    d.log.roster_add(loc(other), *key).unwrap();
                }
            }
        }
        Cluster { nats, base, deployment, nodes: HashMap::new() }
    }

    fn dir(&self, code: &str) -> PathBuf {
        self.base.path().join(code)
    }

    fn config(&self, code: &str) -> NodeConfig {
        let mut cfg = self.deployment.node_config(loc(code), self.dir(code), &self.nats.url()).unwrap();
        cfg.sync.head_interval_ms = 300;
        cfg.sync.head_refresh_ms = 1_500;
        cfg.sync.repair_grace_ms = 300;
        cfg.sync.ack_timeout_ms = 2000;
        cfg
    }

    async fn start_node(&mut self, code: &'static str) {
        let cfg = self.config(code);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.nodes.insert(code, Node::start(cfg, listener).await.unwrap());
    }

    /// An HTTPS client of `code`'s API holding a fresh token of `role`.
    fn client(&self, code: &str, role: Role) -> http::Client {
        let token = issue_token(&self.dir(code), role, &format!("test {role}")).unwrap();
        http::Client::new(self.nodes[code].addr, Some(self.deployment.client_tls().unwrap()), Some(token))
    }

    /// A NATS connection as `principal`, over TLS.
    async fn nats_as(&self, principal: Principal) -> async_nats::Client {
        let cfg = self.deployment.sync_config(principal, &self.nats.url()).unwrap();
        yipan_sync::connect_options(&cfg, principal).unwrap().connect(self.nats.url()).await.unwrap()
    }

    async fn restart_node_with(&mut self, code: &'static str, f: impl FnOnce(&mut NodeConfig)) {
        self.stop_node(code).await;
        let mut cfg = self.config(code);
        f(&mut cfg);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.nodes.insert(code, Node::start(cfg, listener).await.unwrap());
    }

    async fn stop_node(&mut self, code: &str) {
        self.nodes.remove(code).unwrap().stop().await.unwrap();
    }

    fn log(&self, code: &str) -> &SledStore {
        &self.nodes[code].log
    }

    async fn append(&self, code: &str, drafts: Vec<EventDraft>) {
        self.nodes[code].log.append_batch_async(drafts).await.unwrap();
    }

    /// Events `author` has addressed to `recipient` that `recipient` does not hold yet.
    fn behind(&self, author: &str, recipient: &str) -> u64 {
        let sent = self
            .log(author)
            .outbound_heads(u64::MAX)
            .unwrap()
            .into_iter()
            .find(|(r, _)| *r == loc(recipient))
            .map(|(_, h)| h);
        sent.unwrap_or(0) - self.log(recipient).channel_head(loc(author), loc(recipient)).unwrap()
    }

    async fn converge(&self, within: Duration) {
        let start = Instant::now();
        loop {
            let mut behind = 0;
            for a in CODES {
                for r in CODES {
                    if a != r && self.nodes.contains_key(a) && self.nodes.contains_key(r) {
                        behind += self.behind(a, r);
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

    /// Waits until every running node's projections hold every event of its
    /// log (erasure requests and receipts are not facts of any view).
    async fn await_views(&self) {
        let facts = |n: &Node| {
            let all = n.log.read_all(None, usize::MAX).unwrap();
            let admin = all.iter().filter(|e| {
                matches!(
                    e.kind(),
                    Some(yipan_core::EventKind::ErasureRequested | yipan_core::EventKind::ErasureConfirmed)
                )
            });
            all.len() - admin.count()
        };
        let start = Instant::now();
        while self.nodes.values().any(|n| n.views.read().unwrap().len() != facts(n)) {
            assert!(start.elapsed() < Duration::from_secs(10), "projections did not catch up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(mut self) {
        for code in CODES {
            if self.nodes.contains_key(code) {
                self.stop_node(code).await;
            }
        }
    }
}

fn body(kind: Kind) -> Option<EventBody> {
    Some(EventBody { kind: Some(kind) })
}

/// A residence event about person `n` living at `residence`, from origin 411522.
fn at_residence(residence: &str, n: u64) -> EventDraft {
    EventDraft {
        person_key: PersonKey::derive(&format!("41152219900101{n:04}"), SECRET).to_string(),
        origin: "411522".into(),
        residence: residence.into(),
        body: body(Kind::ServiceRendered(v1::ServiceRendered {
            service: v1::ServiceKind::PersonInformed as i32,
            provider_ref: String::new(),
        })),
        ..Default::default()
    }
}

/// An origin event about person `n` living at `residence`.
fn at_origin(residence: &str, n: u64) -> EventDraft {
    EventDraft {
        person_key: PersonKey::derive(&format!("41152219900101{n:04}"), SECRET).to_string(),
        origin: "411522".into(),
        residence: residence.into(),
        body: body(Kind::CertificateIssued(v1::CertificateIssued {
            certificate_ref: format!("C{n}"),
            valid_until: None,
        })),
        ..Default::default()
    }
}

fn held_about(log: &SledStore, residence: &str) -> usize {
    log.read_all(None, 1_000_000).unwrap().iter().filter(|e| e.envelope.residence == residence).count()
}

fn metric(client: &http::Client, name: &str) -> u64 {
    let (_, text) = client.request("GET", "/metrics", None).unwrap();
    text.lines()
        .find(|l| l.starts_with(name) && l.as_bytes().get(name.len()) == Some(&b' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_exactly_their_recipients() {
    let c = Cluster::start().await;
    c.append("610112", (0..20).map(|n| at_residence("610112", n)).collect()).await;
    c.append("610113", (100..110).map(|n| at_residence("610113", n)).collect()).await;
    c.append(
        "411522",
        (0..5).map(|n| at_origin("610112", n)).chain((100..103).map(|n| at_origin("610113", n))).collect(),
    )
    .await;
    // One event through the HTTP API, as a service desk would.
    let clerk = c.client("610113", Role::Clerk);
    let api = clerk.clone();
    let ev = r#"{"kind":"ArrivalRegistered","origin":"411522","residence":"610113","person_id_number":"411522198807220047","body":{"channel":"REGISTRATION_CHANNEL_EMPLOYER"}}"#;
    let (status, reply) =
        tokio::task::spawn_blocking(move || api.request("POST", "/v1/events", Some(ev))).await.unwrap().unwrap();
    assert_eq!(status, 200, "{reply}");
    c.converge(Duration::from_secs(30)).await;

    assert_eq!(c.log("411522").channel_head(loc("610112"), loc("411522")).unwrap(), 20);
    assert_eq!(c.log("411522").channel_head(loc("610113"), loc("411522")).unwrap(), 11);
    assert_eq!(c.log("610112").channel_head(loc("411522"), loc("610112")).unwrap(), 5);
    assert_eq!(c.log("610113").channel_head(loc("411522"), loc("610113")).unwrap(), 3);
    // Need to know: neither residence holds anything of the other's relationships.
    assert_eq!(held_about(c.log("610112"), "610113"), 0);
    assert_eq!(held_about(c.log("610113"), "610112"), 0);
    assert_eq!(c.log("610112").len(), 25);
    assert_eq!(c.log("610113").len(), 14);
    assert_eq!(c.log("411522").len(), 8 + 31);
    for code in CODES {
        assert!(c.log(code).verify().unwrap().ok(), "{code}");
    }

    // Both sides of every relationship see the same cards, exchanges and digests.
    c.await_views().await;
    let as_of = chrono::Utc::now();
    for residence in ["610112", "610113"] {
        let r = c.nodes[residence].views.read().unwrap();
        let o = c.nodes["411522"].views.read().unwrap();
        assert_eq!(
            r.pair_digest(loc(residence), loc("411522"), as_of),
            o.pair_digest(loc(residence), loc("411522"), as_of)
        );
        let rels: Vec<_> = r.relationships().copied().collect();
        assert!(!rels.is_empty());
        for rel in rels {
            assert_eq!(
                serde_json::to_string(&r.card(&rel, as_of)).unwrap(),
                serde_json::to_string(&o.card(&rel, as_of)).unwrap()
            );
            assert_eq!(r.exchanges(&rel, as_of), o.exchanges(&rel, as_of));
        }
    }
    let origin_api = c.client("411522", Role::Supervisor);
    let (status, body) = tokio::task::spawn_blocking(move || {
        origin_api.request("GET", "/v1/digests?pair=610112,411522&as_of=2026-12-01T00:00:00Z", None)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let residence_api = c.client("610112", Role::Supervisor);
    let (_, body_r) = tokio::task::spawn_blocking(move || {
        residence_api.request("GET", "/v1/digests?pair=610112,411522&as_of=2026-12-01T00:00:00Z", None)
    })
    .await
    .unwrap()
    .unwrap();
    // Paging: all events of the origin in pages of 10, each once, in order.
    let pager = c.client("411522", Role::Supervisor);
    let pages = tokio::task::spawn_blocking(move || {
        let (mut after, mut seen, mut sizes) = (String::new(), std::collections::HashSet::new(), Vec::new());
        loop {
            let (status, body) = pager.request("GET", &format!("/v1/events?limit=10{after}"), None).unwrap();
            assert_eq!(status, 200, "{body}");
            let page: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
            if page.is_empty() {
                break;
            }
            sizes.push(page.len());
            for e in &page {
                assert!(seen.insert(e["id"].as_str().unwrap().to_string()), "an event on two pages");
            }
            let last = page.last().unwrap();
            after = format!("&after={}:{}", last["author"].as_str().unwrap(), last["seq"]);
        }
        (sizes, seen.len())
    })
    .await
    .unwrap();
    assert_eq!(pages, (vec![10, 10, 10, 9], 39));
    let api = c.client("610112", Role::Supervisor);
    let (status, same) =
        tokio::task::spawn_blocking(move || api.request("GET", "/v1/scorecard?pair=610112,610112", None))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(status, 400, "{same}");
    assert!(same.contains("names one locality twice"), "{same}");
    let (d_o, d_r): (serde_json::Value, serde_json::Value) =
        (serde_json::from_str(&body).unwrap(), serde_json::from_str(&body_r).unwrap());
    assert_eq!(d_o["relationships"].as_array().unwrap().len(), 20);
    assert_eq!(d_o["relationships"], d_r["relationships"]);

    // The API names bad input and reports health and metrics.
    let bad = r#"{"kind":"ArrivalRegistered","origin":"61011","residence":"610113","person":"00112233445566778899aabbccddeeff"}"#;
    let api = clerk.clone();
    let (status, reply) =
        tokio::task::spawn_blocking(move || api.request("POST", "/v1/events", Some(bad))).await.unwrap().unwrap();
    assert_eq!(status, 400);
    assert!(reply.contains("field `origin`: `61011` is not a 6-digit"), "{reply}");
    let start = Instant::now();
    loop {
        let anonymous = clerk.with_token(None);
        let (status, health) =
            tokio::task::spawn_blocking(move || anonymous.request("GET", "/healthz", None)).await.unwrap().unwrap();
        assert_eq!(status, 200);
        if health.contains("\"nats_connected\":true") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{health}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let monitor = c.client("411522", Role::Monitor);
    let stored = tokio::task::spawn_blocking(move || metric(&monitor, "yipan_received_stored_total")).await.unwrap();
    assert_eq!(stored, 31);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_catches_up() {
    let mut c = Cluster::start().await;
    c.append("610112", (0..10).map(|n| at_residence("610112", n)).collect()).await;
    c.converge(Duration::from_secs(30)).await;
    c.stop_node("411522").await;
    for round in 0..5 {
        c.append("610112", (0..20).map(|n| at_residence("610112", 100 + round * 20 + n)).collect()).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    c.start_node("411522").await;
    c.converge(Duration::from_secs(30)).await;
    let origin = c.log("411522");
    assert_eq!(origin.channel_head(loc("610112"), loc("411522")).unwrap(), 110);
    assert_eq!(origin.len(), 110, "no event lost or doubled");
    assert!(origin.verify().unwrap().ok());
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_continue_while_nats_is_down_and_all_converge() {
    let mut c = Cluster::start().await;
    c.append("610112", (0..5).map(|n| at_residence("610112", n)).collect()).await;
    c.converge(Duration::from_secs(30)).await;
    c.nats.stop();
    // Offline first: appends are durable without NATS; the outbox grows.
    for i in 0..4 {
        c.append("610112", (0..10).map(|n| at_residence("610112", 1000 + i * 10 + n)).collect()).await;
        c.append("411522", (0..5).map(|n| at_origin("610112", 2000 + i * 5 + n)).collect()).await;
    }
    let start = Instant::now();
    while c.nodes["610112"].metrics.outbox_pending.load(Ordering::Relaxed) == 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "outbox never showed pending events");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(c.log("610112").len(), 45);
    c.nats.restart().unwrap();
    c.converge(Duration::from_secs(60)).await;
    assert_eq!(c.log("411522").channel_head(loc("610112"), loc("411522")).unwrap(), 45);
    assert_eq!(c.log("610112").channel_head(loc("411522"), loc("610112")).unwrap(), 20);
    assert_eq!(c.log("411522").len(), 45 + 20, "no loss, no duplicate");
    assert_eq!(c.log("610112").len(), 45 + 20);
    for code in CODES {
        assert!(c.log(code).verify().unwrap().ok(), "{code}");
    }
    c.stop().await;
}

/// A channel head is announced when it changes, and an unchanged one only
/// every `head_refresh_ms`: at national scale (hundreds of thousands of
/// channels) announcing every head every interval sent more messages than events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_channel_is_not_announced_again_until_its_refresh() {
    let mut c = Cluster::start().await;
    c.restart_node_with("610112", |cfg| cfg.sync.head_refresh_ms = 600_000).await;
    let announced = |c: &Cluster| c.nodes["610112"].metrics.heads_announced.load(Ordering::Relaxed);
    async fn wait_for(c: &Cluster, n: u64) {
        let announced = || c.nodes["610112"].metrics.heads_announced.load(Ordering::Relaxed);
        let start = Instant::now();
        while announced() < n {
            assert!(start.elapsed() < Duration::from_secs(20), "{} of {n} heads announced", announced());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    c.append("610112", (0..5).map(|n| at_residence("610112", n)).collect()).await;
    c.converge(Duration::from_secs(30)).await;
    // One channel (610112 → 411522), announced once its events were published.
    wait_for(&c, 1).await;
    let first = announced(&c);
    // Ten intervals of quiet: nothing more is said.
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    assert_eq!(announced(&c), first, "an unchanged head was announced again before its refresh");
    // A new event moves the head: announced once more, and only once.
    c.append("610112", vec![at_residence("610112", 5)]).await;
    c.converge(Duration::from_secs(30)).await;
    wait_for(&c, first + 1).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(announced(&c), first + 1);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_stream_is_repaired_from_the_authors() {
    let mut c = Cluster::start().await;
    c.append("610112", (0..10).map(|n| at_residence("610112", n)).collect()).await;
    c.converge(Duration::from_secs(30)).await;
    // The origin is away while 610112 publishes 15 more and 411522 is told of them only by the stream…
    c.stop_node("411522").await;
    c.append("610112", (10..25).map(|n| at_residence("610112", n)).collect()).await;
    let start = Instant::now();
    while c.nodes["610112"].metrics.outbox_pending.load(Ordering::Relaxed) > 0
        || c.nodes["610112"].metrics.published.load(Ordering::Relaxed) < 25
    {
        assert!(start.elapsed() < Duration::from_secs(20), "610112 did not publish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // …and the stream loses everything; the admin re-creates the streams.
    c.nats.restart_wiped().unwrap();
    c.deployment.provision(&c.nats.url(), &[61, 41]).await.unwrap();
    c.start_node("411522").await;
    c.converge(Duration::from_secs(60)).await;
    let origin = c.log("411522");
    assert_eq!(origin.channel_head(loc("610112"), loc("411522")).unwrap(), 25);
    assert_eq!(origin.len(), 25);
    assert!(origin.verify().unwrap().ok());
    let served = c.nodes["610112"].metrics.repair_served.load(Ordering::Relaxed);
    assert!(served >= 1, "the author re-sent the lost events on request");
    c.stop().await;
}

/// With `consumer_state = "memory"` the node's own cursor is the record of
/// what it has settled. A consumer whose state went back below the cursor
/// (here: replaced by the admin with one that starts from the beginning, as a
/// clustered consumer restarts when its server lost its memory) resumes from
/// the cursor — not from the start of the stream, which would deliver every
/// event again. A consumer that is gone altogether (a single server restarted
/// under memory consumers) starts over from the stream: duplicates, no loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_lost_its_state_resumes_from_the_node_cursor() {
    use yipan_sync::{inbox, subjects, ConsumerState};
    let mut c = Cluster::start().await;
    c.restart_node_with("411522", |cfg| cfg.sync.consumer_state = ConsumerState::Memory).await;
    c.append("610112", (0..30).map(|n| at_residence("610112", n)).collect()).await;
    c.converge(Duration::from_secs(30)).await;
    let start = Instant::now();
    while inbox::cursor(c.log("411522")).unwrap() == 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "the idle inbox never wrote its cursor");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 1. The single server restarts: memory consumers are gone with it.
    c.nats.restart().unwrap();
    c.append("610112", (30..40).map(|n| at_residence("610112", n)).collect()).await;
    c.converge(Duration::from_secs(60)).await;
    let origin = c.log("411522");
    assert_eq!(origin.channel_head(loc("610112"), loc("411522")).unwrap(), 40);
    assert_eq!(origin.len(), 40, "no loss, no duplicate stored");
    let start = Instant::now();
    while inbox::cursor(c.log("411522")).unwrap() == 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "the cursor was not counted again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 2. The node is away while its consumer is replaced by one that starts
    //    from the beginning of the stream (ack floor 0, below the cursor).
    c.stop_node("411522").await;
    let admin = async_nats::jetstream::new(c.nats_as(Principal::Admin).await);
    let stream = admin.get_stream_no_info(subjects::stream(41)).await.unwrap();
    let name = subjects::consumer(loc("411522"));
    stream.delete_consumer(&name).await.unwrap();
    let reset = async_nats::jetstream::consumer::pull::Config {
        durable_name: Some(name.clone()),
        filter_subject: subjects::inbox_filter(loc("411522")),
        ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
        memory_storage: true,
        ..Default::default()
    };
    let _: async_nats::jetstream::consumer::PullConsumer = stream.create_consumer(reset).await.unwrap();
    c.append("610112", (40..45).map(|n| at_residence("610112", n)).collect()).await;
    let mut cfg = c.config("411522");
    cfg.sync.consumer_state = ConsumerState::Memory;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    c.nodes.insert("411522", Node::start(cfg, listener).await.unwrap());
    c.converge(Duration::from_secs(60)).await;
    let node = &c.nodes["411522"];
    assert!(node.metrics.consumers_recreated.load(Ordering::Relaxed) >= 1, "re-created from the cursor");
    // A re-send the node asked for may race the stream (a few duplicates); the
    // reset consumer alone would deliver all 45 again.
    let again = node.metrics.duplicates.load(Ordering::Relaxed);
    assert!(again < 40, "the events before the cursor were delivered again ({again} duplicates)");
    assert_eq!(c.log("411522").len(), 45);
    assert!(c.log("411522").verify().unwrap().ok());
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_misaddressed_replayed_and_unknown_messages_are_quarantined_never_applied() {
    let c = Cluster::start().await;
    c.append("411522", vec![at_origin("610112", 1), at_origin("610113", 2)]).await;
    c.converge(Duration::from_secs(30)).await;
    let origin = c.log("411522");
    let to_112 = origin.read_channel(loc("411522"), loc("610112"), 1, 1).unwrap().remove(0).signed.encode_to_vec();
    let to_113 = origin.read_channel(loc("411522"), loc("610113"), 1, 1).unwrap().remove(0).signed.encode_to_vec();
    let mut forged = v1::SignedEvent::decode(to_112.as_slice()).unwrap();
    forged.batch.as_mut().expect("batch-signed").signature[5] ^= 0x40;
    // An author nobody certified, sent on 411522's subject: not the subject's author, so
    // it is set aside at once instead of waiting for a certificate (no redelivery to abuse).
    let stranger =
        yipan_log::MemStore::open(yipan_log::MemBackend::new(), loc("440305"), yipan_log::keyfile::generate().unwrap())
            .unwrap();
    let mut d = at_residence("610112", 9);
    d.origin = "440305".into();
    d.body = body(Kind::CertificateIssued(v1::CertificateIssued { certificate_ref: "X".into(), valid_until: None }));
    let a = stranger.append_async(d).await.unwrap();
    let unknown = stranger.get(a.id).unwrap().unwrap().signed.encode_to_vec();

    // A fork: another event signed with 411522's own key at a position 610112 already holds.
    let twin = yipan_log::MemStore::open(
        yipan_log::MemBackend::new(),
        loc("411522"),
        yipan_log::keyfile::load(&c.dir("411522")).unwrap(),
    )
    .unwrap();
    let t = twin.append_async(at_origin("610112", 77)).await.unwrap();
    let fork = twin.get(t.id).unwrap().unwrap().signed.encode_to_vec();

    // Sent by a compromised origin, with its own NATS credentials: NATS lets
    // it publish as itself only; signatures and ingest checks do the rest.
    let client = c.nats_as(Principal::Locality(loc("411522"))).await;
    let js = async_nats::jetstream::new(client);
    let inbox_112 = yipan_sync::subjects::event(loc("610112"), loc("411522"));
    let sends: Vec<(&str, Vec<u8>)> = vec![
        ("forged", forged.encode_to_vec()),
        ("misaddressed", to_113),
        ("replayed", to_112.clone()),
        ("unknown", unknown),
        ("malformed", b"\x0a\xff\xff garbage".to_vec()),
        ("fork", fork),
    ];
    for (i, (_, bytes)) in sends.iter().enumerate() {
        let subject = inbox_112.clone();
        let msg = async_nats::jetstream::message::PublishMessage::build()
            .payload(bytes.clone().into())
            .message_id(format!("attack-{i}"));
        js.send_publish(subject, msg).await.unwrap().await.unwrap();
    }
    let node = &c.nodes["610112"];
    let start = Instant::now();
    while node.metrics.quarantined.load(Ordering::Relaxed) < 5 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "quarantine count stuck at {}",
            node.metrics.quarantined.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let q = node.log.quarantine().unwrap();
    let reasons: Vec<&str> = q.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(q.len(), 5, "{reasons:?}");
    assert!(reasons.iter().any(|r| r.starts_with("fork: channel position 1 from 411522 to 610112")), "{reasons:?}");
    assert_eq!(node.metrics.forks.load(Ordering::Relaxed), 1, "a fork raises the alert counter");
    assert!(reasons.iter().any(|r| r.contains("forged or altered")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("wrong recipient: not addressed to 610112")), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("claims author 440305 but came on the subject of 411522")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.starts_with("malformed")), "{reasons:?}");
    // The replay is recognised and applied once only.
    assert!(node.metrics.duplicates.load(Ordering::Relaxed) >= 1);
    assert_eq!(node.log.len(), 1, "only the one genuine event is held");
    assert_eq!(node.log.channel_head(loc("411522"), loc("610112")).unwrap(), 1);
    let monitor = c.client("610112", Role::Monitor);
    let pager = monitor.clone();
    let counted = tokio::task::spawn_blocking(move || metric(&monitor, "yipan_quarantined_total")).await.unwrap();
    assert_eq!(counted, 5);
    // The API pages through the quarantine (2 + 2 + 1), tiers filtered by role.
    let pages = tokio::task::spawn_blocking(move || {
        let mut after = String::new();
        let mut pages = Vec::new();
        loop {
            let path = format!("/v1/quarantine?limit=2{after}");
            let (status, body) = pager.request("GET", &path, None).unwrap();
            assert_eq!(status, 200, "{body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["held"], 5);
            pages.push(v["entries"].as_array().unwrap().len());
            match v["next"].as_str() {
                Some(n) => after = format!("&after={n}"),
                None => break,
            }
        }
        pages
    })
    .await
    .unwrap();
    // `next` only when another page exists.
    assert_eq!(pages, vec![2, 2, 1]);
    assert!(node.log.verify().unwrap().ok());
    // Quarantine reasons and metrics carry no personal data.
    for e in &q {
        assert!(!e.reason.contains("4115221990"), "{}", e.reason);
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_with_only_the_stream_verifies_everything_and_reproduces_the_digests() {
    let c = Cluster::start().await;
    c.append("610112", (0..12).map(|n| at_residence("610112", n)).collect()).await;
    c.append("610113", (100..105).map(|n| at_residence("610113", n)).collect()).await;
    c.append(
        "411522",
        (0..4).map(|n| at_origin("610112", n)).chain((100..102).map(|n| at_origin("610113", n))).collect(),
    )
    .await;
    c.converge(Duration::from_secs(30)).await;
    let roster = c.log("610112").trust();
    let as_of = chrono::Utc::now();

    let mut auditor = yipan_audit::Auditor::new(roster.clone());
    yipan_audit::stream::read_all(c.nats_as(Principal::Auditor).await, &mut auditor, |_| {}).await.unwrap();
    let (report, _) = auditor.finish("stream", as_of);
    assert!(report.ok(), "{:?}", report.faults);
    assert_eq!(report.events, 12 + 5 + 6);
    assert_eq!(report.channels.len(), 4, "{:?}", report.channels);
    // Every node's own digest of each pair equals the auditor's.
    c.await_views().await;
    for (residence, node) in [("610112", "610112"), ("610112", "411522"), ("610113", "610113"), ("610113", "411522")] {
        let ours = hex::encode(c.nodes[node].views.read().unwrap().pair_digest(loc("411522"), loc(residence), as_of));
        let key = format!("411522,{residence}");
        assert_eq!(report.pair_digests[&key], ours, "{key} at {node}");
    }

    // A forged message slipped into the stream is named by the audit, author and sequence.
    let genuine = c.log("411522").read_channel(loc("411522"), loc("610112"), 2, 1).unwrap().remove(0);
    let mut forged = genuine.signed.clone();
    let last = forged.envelope.len() - 1;
    forged.envelope[last] ^= 1;
    let js = async_nats::jetstream::new(c.nats_as(Principal::Locality(loc("411522"))).await);
    let msg = async_nats::jetstream::message::PublishMessage::build()
        .payload(forged.encode_to_vec().into())
        .message_id("forged-for-audit");
    js.send_publish(yipan_sync::subjects::event(loc("610112"), loc("411522")), msg).await.unwrap().await.unwrap();
    let mut auditor = yipan_audit::Auditor::new(roster.clone());
    yipan_audit::stream::read_all(c.nats_as(Principal::Auditor).await, &mut auditor, |_| {}).await.unwrap();
    let (report, _) = auditor.finish("stream", as_of);
    assert!(!report.ok());
    assert!(
        report
            .faults
            .iter()
            .any(|f| f.author == "411522" && f.seq == genuine.seq() && f.problem.starts_with("forged or altered")),
        "{:?}",
        report.faults
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downstream_roles_receive_only_their_tiers_and_projection_changes() {
    use futures::StreamExt;
    use yipan_sync::downstream::DownstreamRole;
    let mut c = Cluster::start().await;
    c.restart_node_with("610112", |cfg| {
        cfg.views_interval_s = 1;
        cfg.sync.downstream = vec![
            DownstreamRole { role: Audience::Statistics, encoding: "protobuf".into() },
            DownstreamRole { role: Audience::Health, encoding: "json".into() },
        ];
    })
    .await;
    // Each downstream system connects as its own user and may read its own role's subjects only.
    let stats_user = c.nats_as(Principal::Downstream(loc("610112"), Audience::Statistics)).await;
    let health_user = c.nats_as(Principal::Downstream(loc("610112"), Audience::Health)).await;
    let sub = futures::stream::select(
        stats_user.subscribe("yipan.v1.down.61.610112.statistics.>").await.unwrap(),
        stats_user.subscribe("yipan.v1.down.61.610112.views.>").await.unwrap(),
    );
    let mut sub =
        futures::stream::select(sub, health_user.subscribe("yipan.v1.down.61.610112.health.>").await.unwrap());
    let mut arrival = at_residence("610112", 1);
    arrival.body = body(Kind::ArrivalRegistered(v1::ArrivalRegistered::default()));
    arrival.identity =
        Some(v1::IdentityTier {
            name: "李秀英".into(), id_number: "41152219920315002X".into(), ..Default::default()
        });
    arrival.contact = Some(v1::ContactTier { phone: "13912345678".into(), ..Default::default() });
    let mut check = at_residence("610112", 1);
    check.health = Some(v1::HealthTier { pregnant: true, ..Default::default() });
    c.append("610112", vec![arrival, check]).await;
    // An urgent case-assist from the origin, asked long ago: overdue at once.
    let mut assist = at_origin("610112", 1);
    assist.occurred_at = Some(yipan_core::time::to_ts(chrono::Utc::now() - chrono::Duration::days(40)));
    assist.body = body(Kind::CaseAssistRequested(v1::CaseAssistRequested {
        urgency: v1::Urgency::Urgent as i32,
        subject: String::new(),
    }));
    c.append("411522", vec![assist]).await;
    // A certificate mismatch found 40 days ago and never told to the origin: its own leg
    // (20 working days) is overdue, though the re-issue (90 days) is not.
    let mut mismatch = at_residence("610112", 1);
    mismatch.occurred_at = Some(yipan_core::time::to_ts(chrono::Utc::now() - chrono::Duration::days(40)));
    mismatch.body = body(Kind::CertificateMismatchFound(v1::CertificateMismatchFound {
        certificate_ref: String::new(),
        reason: v1::MismatchReason::Expired as i32,
    }));
    c.append("610112", vec![mismatch]).await;

    let key = c.log("610112").public_key();
    let (mut stats, mut health, mut overdue, mut leg_overdue, mut scorecard) = (0, 0, 0, 0, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while (stats < 4 || health < 4 || overdue < 1 || leg_overdue < 1 || scorecard < 1) && Instant::now() < deadline {
        let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(5), sub.next()).await else { break };
        let subject = msg.subject.to_string();
        let encoding =
            msg.headers.as_ref().and_then(|h| h.get("Yipan-Encoding")).map(|v| v.to_string()).unwrap_or_default();
        if subject.contains(".statistics.") {
            assert_eq!(encoding, "protobuf");
            let ev = yipan_log::StoredEvent::decode(&msg.payload).unwrap();
            assert!(ev.signed.tiers.is_empty(), "statistics got a personal tier");
            if ev.author() == Some(loc("610112")) {
                ev.verify_signature(&key).unwrap();
            }
            stats += 1;
        } else if subject.contains(".health.") {
            assert_eq!(encoding, "json");
            let text = String::from_utf8(msg.payload.to_vec()).unwrap();
            assert!(!text.contains("13912345678"), "health got the contact tier");
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            if v["kind"] == "ArrivalRegistered" {
                assert_eq!(v["identity"]["idNumber"], "41152219920315002X");
                assert_eq!(v["tiers_withheld"], serde_json::json!(["contact"]));
            }
            health += 1;
        } else if subject.ends_with(".views.case_overdue") {
            let v: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
            if v["kind"] == "certificate_mismatch" {
                assert_eq!(v["state"], "open", "the re-issue is not due yet");
                assert_eq!(v["follow_up"]["state"], "overdue", "{v}");
                assert_eq!(v["follow_up"]["duty"], "notify_origin");
                leg_overdue += 1;
            } else {
                assert_eq!(v["kind"], "case_assist");
                assert_eq!(v["state"], "overdue");
                overdue += 1;
            }
        } else if subject.ends_with(".views.scorecard") {
            scorecard += 1;
        }
    }
    assert_eq!((stats, health), (4, 4), "every stored event once per role");
    assert!(
        overdue >= 1 && leg_overdue >= 1 && scorecard >= 1,
        "projection changes: overdue {overdue}, follow-up leg overdue {leg_overdue}, scorecard {scorecard}"
    );
    // Cases are paged.
    let api = c.client("610112", Role::Supervisor);
    let (all, one, none) = tokio::task::spawn_blocking(move || {
        let get =
            |p: &str| serde_json::from_str::<Vec<serde_json::Value>>(&api.request("GET", p, None).unwrap().1).unwrap();
        (get("/v1/cases"), get("/v1/cases?limit=1"), get("/v1/cases?offset=100000"))
    })
    .await
    .unwrap();
    assert!(!all.is_empty());
    assert_eq!((one.len(), none.len()), (1, 0));
    assert_eq!(one[0], all[0]);
    // Subjects carry no personal data.
    c.stop().await;
}

/// The OpenAPI document lists exactly the routes the node serves, and each answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_in_step_with_the_api() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("docs/openapi.json")).unwrap()).unwrap();
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.push((path.clone(), method.clone()));
        }
    }
    documented.sort();
    // What the code registers: every `.route("PATH", get(..).post(..))` in api.rs.
    let source = std::fs::read_to_string(root.join("crates/node/src/api.rs")).unwrap();
    let mut served: Vec<(String, String)> = Vec::new();
    for part in source.split(".route(\"").skip(1) {
        let (path, rest) = part.split_once('"').unwrap();
        let handlers = rest.split(')').take(3).collect::<Vec<_>>().join(")");
        for method in ["get", "post", "put", "delete"] {
            if handlers.contains(&format!("{method}(")) {
                served.push((path.to_string(), method.to_string()));
            }
        }
    }
    served.sort();
    assert_eq!(documented, served, "docs/openapi.json and crates/node/src/api.rs disagree");
    // Every documented GET answers (not 404) on a running node.
    let c = Cluster::start().await;
    let admin = c.client("610112", Role::Admin);
    for (path, method) in documented.iter().filter(|(p, m)| m == "get" && p != "/v1/stream") {
        let p = path
            .replace("{id}", "0199b000-0000-7000-8000-000000000001")
            .replace("{person}", "00112233445566778899aabbccddeeff");
        let p = match p.as_str() {
            "/v1/digests" => "/v1/digests?pair=610112,411522".to_string(),
            "/v1/export" => "/v1/export?table=cases&format=csv".to_string(),
            "/v1/divisions" => "/v1/divisions?codes=610112".to_string(),
            "/console/{*file}" => "/console/console.js".to_string(),
            _ => p,
        };
        let api = admin.clone();
        let (status, body) = tokio::task::spawn_blocking(move || api.request("GET", &p, None)).await.unwrap().unwrap();
        let redirect = matches!(path.as_str(), "/" | "/console");
        assert!(
            status == 200 || (status == 404 && path.contains("{id}")) || (redirect && status == 308),
            "{method} {path}: {status} {body}"
        );
    }
    c.stop().await;
}

/// An event larger than NATS can carry is refused at append (413, nothing
/// written) instead of being stored and then blocking the outbox forever;
/// the events after it replicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_too_large_to_publish_is_refused_and_replication_continues() {
    let c = Cluster::start().await;
    let clerk = c.client("610112", Role::Clerk);
    let huge = format!(
        r#"{{"kind":"ServiceRendered","origin":"411522","residence":"610112","person":"00112233445566778899aabbccddeeff","body":{{"service":"SERVICE_KIND_PERSON_INFORMED","providerRef":"{}"}}}}"#,
        "x".repeat(1_500_000)
    );
    let api = clerk.clone();
    let (status, body) =
        tokio::task::spawn_blocking(move || api.request("POST", "/v1/events", Some(&huge))).await.unwrap().unwrap();
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("max_payload") && body.contains("nothing was written"), "{body}");
    assert!(body.len() < 400, "the oversized value is not echoed");
    assert_eq!(c.log("610112").len(), 0);
    c.append("610112", (0..5).map(|n| at_residence("610112", n)).collect()).await;
    c.converge(Duration::from_secs(30)).await;
    assert_eq!(c.log("411522").channel_head(loc("610112"), loc("411522")).unwrap(), 5);
    c.stop().await;
}

/// A message that can never be published (stored before the server's
/// max_payload was lowered) is set aside as a dead letter with its reason and
/// an alert counter; it does not block the events behind it to other
/// recipients, and the operator sees it over the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_cannot_be_published_is_set_aside_and_blocks_nothing_else() {
    let mut c = Cluster::prepare(Some("256KB")).await;
    // Written while the node was offline with the default 1 MiB limit: one
    // 600 KB event to 411522, then three ordinary events to 610113.
    {
        let d = yipan_node::datadir::open(&c.dir("610112")).unwrap();
        let mut big = at_residence("610112", 1);
        big.body = body(Kind::ServiceRendered(v1::ServiceRendered {
            service: v1::ServiceKind::PersonInformed as i32,
            provider_ref: "x".repeat(600_000),
        }));
        let mut drafts = vec![big];
        for n in 0..3 {
            let mut d = at_residence("610112", 10 + n);
            d.origin = "610113".into();
            drafts.push(d);
        }
        d.log.append_batch_async(drafts).await.unwrap();
    }
    for code in CODES {
        c.start_node(code).await;
    }
    let start = Instant::now();
    while c.nodes["610113"].log.channel_head(loc("610112"), loc("610113")).unwrap() < 3 {
        assert!(start.elapsed() < Duration::from_secs(30), "events behind the dead letter were blocked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let author = &c.nodes["610112"];
    assert_eq!(author.metrics.dead_letters.load(Ordering::Relaxed), 1);
    let api = c.client("610112", Role::Monitor);
    let (status, listing) =
        tokio::task::spawn_blocking(move || api.request("GET", "/v1/dead-letters", None)).await.unwrap().unwrap();
    assert_eq!(status, 200, "{listing}");
    let letters: Vec<serde_json::Value> = serde_json::from_str(&listing).unwrap();
    assert_eq!(letters.len(), 1, "{listing}");
    assert_eq!((letters[0]["seq"].as_u64(), letters[0]["recipient"].as_str()), (Some(1), Some("411522")));
    assert!(letters[0]["reason"].as_str().unwrap().to_lowercase().contains("payload"), "{listing}");
    assert_eq!(c.nodes["411522"].log.len(), 0, "nothing half-delivered");
    // The append limit follows the server: new events that large are refused at the door now.
    let start = Instant::now();
    while c.nodes["610112"].log.max_event_bytes() != 256 * 1024 - 4096 {
        assert!(start.elapsed() < Duration::from_secs(10), "limit {}", c.nodes["610112"].log.max_event_bytes());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut again = at_residence("610112", 2);
    again.body = body(Kind::ServiceRendered(v1::ServiceRendered {
        service: v1::ServiceKind::PersonInformed as i32,
        provider_ref: "x".repeat(300_000),
    }));
    let refused = c.nodes["610112"].log.append_async(again).await.unwrap_err().to_string();
    assert!(refused.contains("max_payload"), "{refused}");
    c.stop().await;
}

/// Every release of a personal tier is in the releasing node's disclosure
/// log — replication to the counterpart, the downstream feed, an HTTP answer
/// (masked or revealed), the event stream — with its basis and no personal
/// value; a role without tiers leaves no entry; `verify` checks the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_release_of_a_personal_tier_is_in_the_disclosure_log() {
    use yipan_sync::downstream::DownstreamRole;
    let mut c = Cluster::start().await;
    c.restart_node_with("610112", |cfg| {
        cfg.sync.downstream = vec![
            DownstreamRole { role: Audience::Statistics, encoding: "protobuf".into() },
            DownstreamRole { role: Audience::Health, encoding: "json".into() },
        ];
    })
    .await;
    let mut arrival = at_residence("610112", 7);
    arrival.body = body(Kind::ArrivalRegistered(v1::ArrivalRegistered::default()));
    arrival.identity =
        Some(v1::IdentityTier {
            name: "李秀英".into(), id_number: "41152219920315002X".into(), ..Default::default()
        });
    arrival.contact = Some(v1::ContactTier { phone: "13912345678".into(), ..Default::default() });
    let person = arrival.person_key.clone();
    let service = at_residence("610112", 7); // no tier: never a disclosure
    c.append("610112", vec![arrival, service]).await;
    c.converge(Duration::from_secs(20)).await;
    let log = c.log("610112");
    let key = PersonKey::parse(&person).unwrap();
    let until = |what: &str, f: &dyn Fn(&[yipan_log::disclosure::Entry]) -> bool| {
        let start = Instant::now();
        loop {
            let entries = log.disclosures_of(&key).unwrap();
            if f(&entries) {
                return entries;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "no disclosure {what}: {entries:#?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let has = |e: &[yipan_log::disclosure::Entry], channel: &str, recipient: &str| {
        e.iter().any(|x| x.disclosure.channel == channel && x.disclosure.recipient == recipient)
    };
    // Replication: the arrival's identity and contact went to the origin, on the exchange's basis.
    let entries = until("of the replication to 411522", &|e| has(e, "replication", "411522"));
    let r = entries.iter().find(|x| x.disclosure.channel == "replication").unwrap();
    assert_eq!(r.disclosure.tiers, ["identity", "contact"]);
    assert!(r.disclosure.basis.contains("origin"), "{r:?}");
    assert_eq!(entries.iter().filter(|x| x.disclosure.channel == "replication").count(), 1, "one per recipient");
    // Downstream: health received the identity tier; statistics received nothing personal.
    let entries = until("of the health feed", &|e| has(e, "downstream", "downstream:health"));
    let h = entries.iter().find(|x| x.disclosure.recipient == "downstream:health").unwrap();
    assert_eq!(h.disclosure.tiers, ["identity"]);
    assert!(!has(&entries, "downstream", "downstream:statistics"));
    // HTTP: a clerk's masked and revealed answers; a supervisor's answer has no tier.
    let (clerk, supervisor) = (c.client("610112", Role::Clerk), c.client("610112", Role::Supervisor));
    for (client, path) in [
        (&clerk, format!("/v1/events?person={person}")),
        (&clerk, format!("/v1/events?person={person}&reveal=true")),
        (&supervisor, format!("/v1/events?person={person}&reveal=true")),
    ] {
        let client = client.clone();
        let (status, body) =
            tokio::task::spawn_blocking(move || client.request("GET", &path, None)).await.unwrap().unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let entries = log.disclosures_of(&key).unwrap();
    let http: Vec<_> = entries.iter().filter(|x| x.disclosure.channel == "http").collect();
    assert_eq!(http.len(), 2, "two clerk answers, none for the supervisor: {http:#?}");
    assert!(http.iter().all(|x| x.disclosure.role == "clerk" && x.disclosure.recipient.starts_with("token:")));
    assert_eq!(http.iter().map(|x| x.disclosure.masked).collect::<Vec<_>>(), [true, false]);
    // The event stream of a health credential.
    let health = c.client("610112", Role::Health);
    tokio::task::spawn_blocking(move || {
        use std::io::{BufRead, Write};
        let mut s = health.connect().unwrap();
        write!(s, "GET /v1/stream HTTP/1.1\r\nHost: x\r\n{}Accept: text/event-stream\r\n\r\n", health.auth_header())
            .unwrap();
        let mut r = std::io::BufReader::new(s);
        let mut text = String::new();
        while text.matches("\ndata:").count() < 2 {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap() == 0 {
                break;
            }
            text.push_str(&line);
        }
    })
    .await
    .unwrap();
    let entries = until("of the event stream", &|e| e.iter().any(|x| x.disclosure.channel == "stream"));
    let s = entries.iter().find(|x| x.disclosure.channel == "stream").unwrap();
    assert_eq!((s.disclosure.role.as_str(), s.disclosure.tiers.clone()), ("health", vec!["identity".to_string()]));
    // No personal value anywhere in the log; the chain verifies; the API answers the person's question.
    let all = serde_json::to_string(&log.disclosures_page(0, usize::MAX).unwrap()).unwrap();
    for value in ["李秀英", "41152219920315002X", "13912345678"] {
        assert!(!all.contains(value), "the disclosure log holds `{value}`");
    }
    let report = log.verify().unwrap();
    assert!(report.ok(), "{:?}", report.faults);
    assert!(report.disclosures >= 5, "{}", report.disclosures);
    let auditor = c.client("610112", Role::Auditor);
    let path = format!("/v1/disclosures?person={person}");
    let (status, body) =
        tokio::task::spawn_blocking(move || auditor.request("GET", &path, None)).await.unwrap().unwrap();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["entries"].as_array().unwrap().len(), log.disclosures_of(&key).unwrap().len());
    let clerk2 = clerk.clone();
    let (status, body) = tokio::task::spawn_blocking(move || clerk2.request("GET", "/v1/disclosures/report", None))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let to_origin = v["recipients"].as_array().unwrap().iter().find(|r| r["recipient"] == "411522").cloned().unwrap();
    assert_eq!((to_origin["channel"].as_str(), to_origin["persons"].as_u64()), (Some("replication"), Some(1)));
    // A monitor may not read it.
    let monitor = c.client("610112", Role::Monitor);
    let (status, _) =
        tokio::task::spawn_blocking(move || monitor.request("GET", "/v1/disclosures", None)).await.unwrap().unwrap();
    assert_eq!(status, 403);
    c.stop().await;
}

/// The last message the admin sees on `subject` in `stream`, decoded.
async fn last_on<M: Message + Default>(admin: &async_nats::Client, stream: &str, subject: &str) -> Option<M> {
    let js = async_nats::jetstream::new(admin.clone());
    let stream = js.get_stream(stream).await.unwrap();
    let msg = stream.get_last_raw_message_by_subject(subject).await.ok()?;
    M::decode(msg.payload.as_ref()).ok()
}

async fn api(
    client: &http::Client,
    method: &'static str,
    path: String,
    body: Option<String>,
) -> (u16, serde_json::Value) {
    let client = client.clone();
    let (status, text) =
        tokio::task::spawn_blocking(move || client.request(method, &path, body.as_deref())).await.unwrap().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_erasure_reaches_every_copy_and_an_offline_recipient_answers_when_back() {
    use yipan_sync::downstream::DownstreamRole;
    let (origin, r1, r2) = ("411522", "610112", "610113");
    let mut c = Cluster::start().await;
    c.restart_node_with(r1, |cfg| {
        cfg.sync.downstream = vec![DownstreamRole { role: Audience::Health, encoding: "json".into() }];
    })
    .await;
    let n = 21;
    let person = PersonKey::derive(&format!("41152219900101{n:04}"), SECRET);
    let identity = || Some(v1::IdentityTier { name: "王秀兰".into(), ..Default::default() });
    // The residence 610112 registers her; the origin certifies her identity to it and asks
    // 610113 (a second residence) about her pregnancy.
    let mut arrival = at_residence(r1, n);
    arrival.body = body(Kind::ArrivalRegistered(v1::ArrivalRegistered::default()));
    arrival.identity = identity();
    c.append(r1, vec![arrival]).await;
    let mut cert = at_origin(r1, n);
    cert.identity = identity();
    let mut ask = at_origin(r2, n);
    ask.body = body(Kind::CaseAssistRequested(v1::CaseAssistRequested { urgency: 1, subject: "核实".into() }));
    ask.health = Some(v1::HealthTier { pregnant: true, ..Default::default() });
    let appended = c.nodes[origin].log.append_batch_async(vec![cert, ask]).await.unwrap();
    let (cert_id, ask_id) = (appended[0].id, appended[1].id);
    c.converge(Duration::from_secs(20)).await;
    // Tiers crossed the stream sealed and were opened by their recipients.
    let held = |c: &Cluster, code: &str, id| {
        c.log(code).get(id).unwrap().unwrap().signed.tiers.iter().map(|t| t.tier).collect::<Vec<_>>()
    };
    assert_eq!(held(&c, r2, ask_id), [v1::Tier::ReproductiveHealth as i32]);
    assert_eq!(held(&c, r1, cert_id), [v1::Tier::Identity as i32]);
    let admin = c.nats_as(Principal::Admin).await;
    let wire: v1::SignedEvent = last_on(&admin, "YIPAN_EV_61", "yipan.v1.ev.61.610113.411522").await.unwrap();
    assert!(wire.tiers.is_empty() && wire.sealed.len() == 1, "the stream holds the health tier sealed: {wire:?}");
    let key_id = hex::encode(&wire.sealed[0].key_id);
    let key_subject = format!("yipan.v1.key.61.610113.411522.{key_id}");
    let keys: v1::TierKeys = last_on(&admin, "YIPAN_KEY_61", &key_subject).await.unwrap();
    assert!(
        keys.keys.iter().any(|k| k.tier == v1::Tier::ReproductiveHealth as i32),
        "610113 can read the key of the tier it was sent: {keys:?}"
    );

    // 610113 goes offline; the origin sends it one more identity while it is away.
    c.stop_node(r2).await;
    let mut late = at_origin(r2, n);
    late.identity = identity();
    let late_id = c.nodes[origin].log.append_async(late).await.unwrap().id;
    let start = Instant::now();
    while last_on::<v1::SignedEvent>(&admin, "YIPAN_EV_61", "yipan.v1.ev.61.610113.411522").await.map(|e| e.envelope)
        != c.log(origin).get(late_id).unwrap().map(|e| e.signed.envelope)
    {
        assert!(start.elapsed() < Duration::from_secs(20), "the late event was not published");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.await_views().await;
    let as_of = chrono::Utc::now();
    let digests = |c: &Cluster| {
        let d = |code: &str, a: &str, b: &str| c.nodes[code].views.read().unwrap().pair_digest(loc(a), loc(b), as_of);
        (d(origin, origin, r1), d(r1, origin, r1), d(origin, origin, r2))
    };
    let before = digests(&c);
    assert_eq!(before.0, before.1);

    // The downstream health system of 610112 listens for the erasure notice.
    let health_user = c.nats_as(Principal::Downstream(loc(r1), Audience::Health)).await;
    let mut notices = health_user.subscribe("yipan.v1.down.61.610112.health.erasure_requested").await.unwrap();

    // Bad requests name their field; a clerk may not erase.
    let supervisor = c.client(origin, Role::Supervisor);
    let (status, v) =
        api(&supervisor, "POST", "/v1/erasures".into(), Some(format!(r#"{{"person":"{person}"}}"#))).await;
    assert_eq!((status, v["field"].as_str()), (400, Some("basis")), "{v}");
    let (status, v) = api(
        &supervisor,
        "POST",
        "/v1/erasures".into(),
        Some(format!(r#"{{"person":"{person}","basis":"person_request","tiers":["dna"]}}"#)),
    )
    .await;
    assert_eq!((status, v["field"].as_str()), (400, Some("tiers")), "{v}");
    let clerk = c.client(origin, Role::Clerk);
    let (status, _) = api(
        &clerk,
        "POST",
        "/v1/erasures".into(),
        Some(format!(r#"{{"person":"{person}","basis":"person_request"}}"#)),
    )
    .await;
    assert_eq!(status, 403);
    // Nor can anyone record a bare request through the event API (it would make the
    // recipients erase while this side kept everything).
    let bare = serde_json::json!({"kind": "ErasureRequested", "origin": origin, "residence": r1, "person": person.to_string(), "body": {"basis": "ERASURE_BASIS_PERSON_REQUEST"}});
    let (status, v) = api(&clerk, "POST", "/v1/events".into(), Some(bare.to_string())).await;
    assert_eq!((status, v["field"].as_str()), (400, Some("kind")), "{v}");

    // The person asks the origin to erase everything.
    let (status, v) = api(
        &supervisor,
        "POST",
        "/v1/erasures".into(),
        Some(format!(r#"{{"person":"{person}","basis":"person_request","reference":"DPO-2026-017"}}"#)),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let requests = v["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 2, "one request per relationship: {v}");
    let mut asked: Vec<&str> =
        requests.iter().flat_map(|r| r["recipients"].as_array().unwrap()).filter_map(|r| r.as_str()).collect();
    asked.sort();
    assert_eq!(asked, [r1, r2]);
    // Nothing of hers keeps a tier at the origin (its own events and the copies it received).
    for ev in c.log(origin).read_person(person).unwrap() {
        assert!(ev.signed.tiers.is_empty(), "{}#{} keeps a tier", ev.envelope.author, ev.seq());
    }
    // 610112 answers; 610113 is offline: open now, overdue after the deadline.
    let erasures = |c: &Cluster, code: &'static str, as_of: Option<&str>| {
        let client = c.client(code, Role::Auditor);
        let path = match as_of {
            Some(t) => format!("/v1/erasures?person={person}&as_of={t}"),
            None => format!("/v1/erasures?person={person}"),
        };
        async move { api(&client, "GET", path, None).await.1 }
    };
    let state = |v: &serde_json::Value, who: &str| -> String {
        v["erasures"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["direction"] == "sent")
            .flat_map(|e| e["answers"].as_array().unwrap().clone())
            .find(|a| a["locality"] == who)
            .map(|a| a["state"].as_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let start = Instant::now();
    loop {
        let v = erasures(&c, origin, None).await;
        if state(&v, r1) == "confirmed" {
            assert_eq!(state(&v, r2), "open", "{v}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "610112 did not confirm: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let later = (chrono::Utc::now() + chrono::Duration::days(40)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let v = erasures(&c, origin, Some(&later)).await;
    assert_eq!(state(&v, r2), "overdue", "{v}");
    // 610112 dropped the origin's copy, kept its own record, and its health system got the notice.
    assert_eq!(held(&c, r1, cert_id), Vec::<i32>::new());
    let notice =
        tokio::time::timeout(Duration::from_secs(20), futures::StreamExt::next(&mut notices)).await.unwrap().unwrap();
    let notice: serde_json::Value = serde_json::from_slice(&notice.payload).unwrap();
    assert_eq!(notice["kind"], "ErasureRequested", "{notice}");
    // The stream's copies are unreadable: the key message is now a tombstone.
    let start = Instant::now();
    while last_on::<v1::TierKeys>(&admin, "YIPAN_KEY_61", &key_subject).await.is_none_or(|k| !k.keys.is_empty()) {
        assert!(start.elapsed() < Duration::from_secs(20), "the key message was not replaced");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 610113 comes back: the late event arrives without its tier, the earlier copy is erased,
    // and its receipt closes the request.
    c.start_node(r2).await;
    let start = Instant::now();
    loop {
        let v = erasures(&c, origin, None).await;
        if state(&v, r2) == "confirmed" {
            let sent: Vec<_> = v["erasures"].as_array().unwrap().iter().filter(|e| e["direction"] == "sent").collect();
            assert!(sent.iter().all(|e| e["complete"] == true), "{v}");
            let a = sent
                .iter()
                .flat_map(|e| e["answers"].as_array().unwrap().clone())
                .find(|a| a["locality"] == r2)
                .unwrap();
            assert_eq!((a["payloads_dropped"].as_u64(), a["events_held"].as_u64()), (Some(1), Some(2)), "{a}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "610113 did not confirm: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(held(&c, r2, ask_id), Vec::<i32>::new());
    assert_eq!(held(&c, r2, late_id), Vec::<i32>::new());
    // The requester sees the same receipts from 610113's side of the exchange.
    let v = erasures(&c, r2, None).await;
    assert!(
        v["erasures"].as_array().unwrap().iter().any(|e| e["direction"] == "received" && e["complete"] == true),
        "{v}"
    );

    // Chains, signatures and projection digests are unchanged by all of it.
    c.converge(Duration::from_secs(20)).await;
    c.await_views().await;
    assert_eq!(digests(&c), before);
    for code in CODES {
        let report = c.log(code).verify().unwrap();
        assert!(report.ok(), "{code}: {:?}", report.faults);
    }
    // An auditor with only the streams verifies every event (sealed copies included) and
    // reproduces the digests the nodes report.
    let mut auditor = yipan_audit::Auditor::new(c.log(origin).trust());
    yipan_audit::stream::read_all(c.nats_as(Principal::Auditor).await, &mut auditor, |_| {}).await.unwrap();
    let (report, _) = auditor.finish("stream", as_of);
    assert!(report.ok(), "{:?}", report.faults);
    for (key, d) in [(format!("{origin},{r1}"), before.0), (format!("{origin},{r2}"), before.2)] {
        assert_eq!(report.pair_digests[&key], hex::encode(d), "{key}");
    }
    c.stop().await;
}

/// `schema` with every `$ref` to `#/components/schemas/…` replaced by what it names.
fn resolve_refs(doc: &serde_json::Value, schema: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match schema {
        Value::Object(map) => {
            if let Some(r) = map.get("$ref").and_then(|r| r.as_str()) {
                let name = r.rsplit('/').next().unwrap();
                return resolve_refs(doc, &doc["components"]["schemas"][name]);
            }
            Value::Object(map.iter().map(|(k, v)| (k.clone(), resolve_refs(doc, v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| resolve_refs(doc, v)).collect()),
        other => other.clone(),
    }
}

/// Checks `value` against an OpenAPI 3.0 schema (the subset the document uses:
/// `type`, `nullable`, `properties`, `required`, `items`, `additionalProperties`,
/// `oneOf`, `enum`). A property the schema does not list is an error unless
/// `additionalProperties` allows it: the document must describe every field.
fn schema_problems(schema: &serde_json::Value, value: &serde_json::Value, at: &str, out: &mut Vec<String>) {
    use serde_json::Value;
    if value.is_null() {
        if schema["nullable"] != Value::Bool(true) && schema.get("type").is_some() {
            out.push(format!("{at}: null, but the schema is not nullable"));
        }
        return;
    }
    if let Some(alts) = schema["oneOf"].as_array() {
        let fits = alts.iter().any(|s| {
            let mut p = Vec::new();
            schema_problems(s, value, at, &mut p);
            p.is_empty()
        });
        if !fits {
            out.push(format!("{at}: fits none of oneOf"));
        }
        return;
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            out.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    let ty = schema["type"].as_str().unwrap_or("");
    let ok = match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "" => true,
        other => {
            out.push(format!("{at}: unknown schema type {other}"));
            true
        }
    };
    if !ok {
        out.push(format!(
            "{at}: {} is not {ty}",
            serde_json::to_string(value).unwrap().chars().take(60).collect::<String>()
        ));
        return;
    }
    match value {
        Value::Object(map) => {
            let props = schema["properties"].as_object();
            for r in schema["required"].as_array().into_iter().flatten().filter_map(|r| r.as_str()) {
                if !map.contains_key(r) {
                    out.push(format!("{at}.{r}: required, missing"));
                }
            }
            for (k, v) in map {
                match (props.and_then(|p| p.get(k)), &schema["additionalProperties"]) {
                    (Some(s), _) => schema_problems(s, v, &format!("{at}.{k}"), out),
                    (None, Value::Object(_)) => {
                        schema_problems(&schema["additionalProperties"], v, &format!("{at}.{k}"), out)
                    }
                    (None, Value::Bool(true)) => {}
                    (None, _) => out.push(format!("{at}.{k}: not in the schema")),
                }
            }
        }
        Value::Array(items) => {
            if schema.get("items").is_none() {
                out.push(format!("{at}: array without `items`"));
            }
            for (i, v) in items.iter().enumerate().take(50) {
                schema_problems(&schema["items"], v, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Every JSON answer of the API, for every role that reads it, matches the response schema
/// docs/openapi.json gives it (which must exist and name every field).
/// `YIPAN_OPENAPI_DUMP=DIR` writes the answers there (to draft a schema).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_json_answer_matches_its_documented_schema() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("docs/openapi.json")).unwrap()).unwrap();
    let c = Cluster::start().await;
    // Data for every view: arrivals with tiers, services, a case-assist and its answer, a notification.
    let mut arrival = at_residence("610112", 1);
    arrival.body = body(Kind::ArrivalRegistered(v1::ArrivalRegistered::default()));
    arrival.identity = Some(v1::IdentityTier { name: "周丽".into(), ..Default::default() });
    arrival.contact = Some(v1::ContactTier { phone: "13700000000".into(), ..Default::default() });
    c.append("610112", vec![arrival, at_residence("610112", 1)]).await;
    let mut ask = at_origin("610112", 1);
    ask.body = body(Kind::CaseAssistRequested(v1::CaseAssistRequested { urgency: 2, subject: "核实".into() }));
    ask.health = Some(v1::HealthTier { pregnant: true, ..Default::default() });
    let asked = c.nodes["411522"].log.append_async(ask).await.unwrap();
    c.append("411522", vec![at_origin("610112", 2), at_origin("610113", 3)]).await;
    c.converge(Duration::from_secs(20)).await;
    let mut answer = at_residence("610112", 1);
    answer.body = body(Kind::CaseAssistAnswered(v1::CaseAssistAnswered { result: 1, remarks: String::new() }));
    answer.causation_id = asked.id.as_bytes().to_vec();
    c.append("610112", vec![answer]).await;
    c.converge(Duration::from_secs(20)).await;
    c.await_views().await;
    let person = PersonKey::derive(&format!("41152219900101{:04}", 1), SECRET).to_string();
    let event = asked.id.to_string();
    let erase = format!(r#"{{"person":"{person}","tiers":["contact"],"basis":"person_request","reference":"T-1"}}"#);
    let (status, _) = api(&c.client("610112", Role::Supervisor), "POST", "/v1/erasures".into(), Some(erase)).await;
    assert_eq!(status, 201);
    c.converge(Duration::from_secs(20)).await;
    let new_event = serde_json::json!({"kind": "ServiceRendered", "origin": "411522", "residence": "610112", "person": person, "body": {"service": "SERVICE_KIND_CONTRACEPTIVES"}});
    // (role, method, documented path, request path, body)
    let calls: Vec<(Role, &str, &str, String, Option<String>)> = vec![
        (Role::Clerk, "get", "/v1/events", format!("/v1/events?person={person}"), None),
        (Role::Clerk, "get", "/v1/events", "/v1/events?limit=3&reveal=true".into(), None),
        (Role::Supervisor, "get", "/v1/events", "/v1/events?limit=3".into(), None),
        (Role::Clerk, "post", "/v1/events", "/v1/events".into(), Some(new_event.to_string())),
        (Role::Clerk, "get", "/v1/events/{id}", format!("/v1/events/{event}"), None),
        (Role::Clerk, "get", "/v1/cards/{person}", format!("/v1/cards/{person}"), None),
        (Role::Supervisor, "get", "/v1/scorecard", "/v1/scorecard".into(), None),
        (Role::Supervisor, "get", "/v1/scorecard", "/v1/scorecard?pair=610112,411522".into(), None),
        (Role::Supervisor, "get", "/v1/cases", "/v1/cases".into(), None),
        (Role::Supervisor, "get", "/v1/flows", "/v1/flows".into(), None),
        (Role::Auditor, "get", "/v1/digests", "/v1/digests?pair=610112,411522".into(), None),
        (Role::Auditor, "get", "/v1/raw", "/v1/raw?limit=5".into(), None),
        (Role::Auditor, "get", "/v1/roster", "/v1/roster".into(), None),
        (Role::Auditor, "get", "/v1/status", "/v1/status".into(), None),
        (Role::Monitor, "get", "/v1/quarantine", "/v1/quarantine".into(), None),
        (Role::Monitor, "get", "/v1/dead-letters", "/v1/dead-letters".into(), None),
        (Role::Monitor, "get", "/healthz", "/healthz".into(), None),
        (Role::Clerk, "get", "/v1/whoami", "/v1/whoami".into(), None),
        (
            Role::Clerk,
            "post",
            "/v1/person-key",
            "/v1/person-key".into(),
            Some(r#"{"id_number":"411522199001010001"}"#.into()),
        ),
        (Role::Supervisor, "get", "/v1/scorecard/trend", "/v1/scorecard/trend".into(), None),
        (Role::Supervisor, "get", "/v1/scorecard/counterparts", "/v1/scorecard/counterparts".into(), None),
        (Role::Supervisor, "get", "/v1/scorecard/overview", "/v1/scorecard/overview".into(), None),
        (Role::Supervisor, "get", "/v1/quality", "/v1/quality".into(), None),
        (Role::Clerk, "get", "/v1/divisions", "/v1/divisions?codes=610112,411522".into(), None),
        (Role::Auditor, "get", "/v1/disclosures", format!("/v1/disclosures?person={person}"), None),
        (Role::Auditor, "get", "/v1/disclosures/report", "/v1/disclosures/report".into(), None),
        (Role::Auditor, "get", "/v1/erasures", format!("/v1/erasures?person={person}"), None),
        (Role::Auditor, "get", "/v1/audit", "/v1/audit".into(), None),
    ];
    let dump = std::env::var_os("YIPAN_OPENAPI_DUMP").map(PathBuf::from);
    let mut problems = Vec::new();
    for (n, (role, method, documented, path, body)) in calls.into_iter().enumerate() {
        let client = c.client("610112", role);
        let (status, value) = api(&client, if method == "get" { "GET" } else { "POST" }, path.clone(), body).await;
        assert!(status == 200 || status == 201, "{method} {path} as {role}: {status} {value}");
        if let Some(dir) = &dump {
            std::fs::create_dir_all(dir).unwrap();
            let name =
                format!("{n:02}-{method}-{}.json", documented.trim_start_matches('/').replace(['/', '{', '}'], "_"));
            std::fs::write(dir.join(name), serde_json::to_vec_pretty(&value).unwrap()).unwrap();
        }
        let responses = &doc["paths"][documented][method]["responses"];
        if documented == "/v1/raw" {
            // JSON lines: each one against the x-ndjson schema.
            let schema = resolve_refs(&doc, &responses["200"]["content"]["application/x-ndjson"]["schema"]);
            let text = value.as_str().unwrap_or_default().to_string();
            assert!(text.lines().count() >= 1, "{text}");
            for (i, line) in text.lines().enumerate() {
                let line: serde_json::Value = serde_json::from_str(line).unwrap();
                schema_problems(&schema, &line, &format!("get /v1/raw line {i}"), &mut problems);
            }
            continue;
        }
        let schema = resolve_refs(&doc, &responses[status.to_string()]["content"]["application/json"]["schema"]);
        if schema.is_null() {
            problems.push(format!("{method} {documented}: no application/json schema for {status}"));
            continue;
        }
        let mut p = Vec::new();
        schema_problems(&schema, &value, &format!("{method} {documented}"), &mut p);
        problems.extend(p);
    }
    c.stop().await;
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
}
