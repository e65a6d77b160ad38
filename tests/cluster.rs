//! A province's JetStream cluster (deploy/nats/cluster/): three secured
//! nats-servers joined by routes, every stream replicated three times, nodes
//! given every server's URL. Events replicate; one server is killed while
//! events are appended and replicated, and nothing acknowledged is lost or
//! applied twice; the server comes back and catches up.

use std::time::{Duration, Instant};

use yipan_access::nats::Principal;
use yipan_core::{Locality, PersonKey};
use yipan_node::provision::Deployment;
use yipan_node::Node;
use yipan_proto::v1::{self, event_body::Kind, EventBody, EventDraft};
use yipan_testkit::NatsCluster;

const SECRET: &[u8] = b"cluster-test-secret";

fn loc(code: &str) -> Locality {
    Locality::parse(code).unwrap()
}

fn service(n: u64) -> EventDraft {
    EventDraft {
        person_key: PersonKey::derive(&format!("41152219900101{n:04}"), SECRET).to_string(),
        origin: "411522".into(),
        residence: "610112".into(),
        body: Some(EventBody {
            kind: Some(Kind::ServiceRendered(v1::ServiceRendered {
                service: v1::ServiceKind::PersonInformed as i32,
                provider_ref: String::new(),
            })),
        }),
        ..Default::default()
    }
}

/// Creates the streams once the JetStream meta group has its leader (it needs
/// a moment); if it never does, fails with the tail of every server's log.
async fn provision<'a>(
    deployment: &Deployment,
    urls: &str,
    prefix: Option<&str>,
    servers: impl Iterator<Item = &'a yipan_testkit::NatsServer> + Clone,
) {
    let start = Instant::now();
    loop {
        match deployment.provision_placed(urls, &[61, 41], 3, prefix).await {
            Ok(()) => return,
            Err(e) => {
                if start.elapsed() >= Duration::from_secs(90) {
                    let logs: Vec<String> = servers.clone().map(|s| s.log_tail(30)).collect();
                    panic!("streams not created: {e}\n{}", logs.join("\n"));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// JetStream as the admin, through any of `urls`.
async fn admin(deployment: &Deployment, urls: &str) -> async_nats::jetstream::Context {
    let cfg = deployment.sync_config(Principal::Admin, urls).unwrap();
    let client = yipan_sync::connect_options(&cfg, Principal::Admin)
        .unwrap()
        .connect(yipan_sync::servers(urls).as_slice())
        .await
        .unwrap();
    async_nats::jetstream::new(client)
}

/// Certifies 610112 and 411522, publishes the trust records, and starts
/// their nodes, each connected to the servers given for it.
async fn start_nodes(deployment: &Deployment, base: &std::path::Path, urls: [&str; 2]) -> Vec<Node> {
    let codes = ["610112", "411522"];
    for code in codes {
        yipan_node::datadir::init(&base.join(code), loc(code), Some(SECRET)).unwrap();
        deployment.certify(loc(code), code, &base.join(code)).unwrap();
    }
    deployment.publish_trust(urls[0]).await.unwrap();
    let mut nodes = Vec::new();
    for (code, urls) in codes.into_iter().zip(urls) {
        let mut cfg = deployment.node_config(loc(code), base.join(code), urls).unwrap();
        cfg.sync.head_interval_ms = 300;
        cfg.sync.head_refresh_ms = 1_500;
        cfg.sync.repair_grace_ms = 300;
        cfg.sync.trust_poll_ms = 200;
        // Consumer state in the servers' memory (deploy/host/host.toml), replicated like the
        // stream (R3), the node's cursor the record. (With R1 consumers a node whose consumer
        // sits on the killed server receives nothing until that server is back — the
        // documented price of R1 — so this test, which expects progress during the loss,
        // keeps R3.)
        cfg.sync.consumer_state = yipan_sync::ConsumerState::Memory;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        nodes.push(Node::start(cfg, listener).await.unwrap());
    }
    let localities = [loc("610112"), loc("411522")];
    until("both nodes know both keys", Duration::from_secs(60), || {
        nodes.iter().all(|n| localities.iter().all(|l| n.log.trust().is_certified(*l)))
    })
    .await;
    nodes
}

async fn until(what: &str, within: Duration, check: impl Fn() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < within, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_province_cluster_replicates_with_r3_streams_through_a_server_loss() {
    let base = tempfile::tempdir().unwrap();
    let localities = [loc("610112"), loc("411522")];
    let deployment = Deployment::create(&base.path().join("secrets"), &localities, &[]).unwrap();
    let secure = deployment.nats_server();
    let mut cluster = tokio::task::spawn_blocking(move || NatsCluster::start_secure(secure, "province-61", 3))
        .await
        .unwrap()
        .unwrap();
    let urls = cluster.urls();
    provision(&deployment, &urls, None, cluster.servers.iter()).await;
    // Every stream has three replicas on three different servers.
    let js = admin(&deployment, &urls).await;
    let mut stream = js.get_stream(yipan_sync::subjects::stream(41)).await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.config.num_replicas, 3);
    let c = info.cluster.clone().unwrap();
    assert_eq!(c.name.as_deref(), Some("province-61"));
    assert_eq!(c.replicas.len() + 1, 3, "a leader and two replicas: {c:?}");

    let nodes = start_nodes(&deployment, base.path(), [&urls, &urls]).await;
    let (residence, origin) = (&nodes[0], &nodes[1]);
    let held = || origin.log.channel_head(loc("610112"), loc("411522")).unwrap();

    residence.log.append_batch_async((0..50).map(service).collect()).await.unwrap();
    until("the first 50 reach the origin", Duration::from_secs(30), || held() == 50).await;

    // One server dies while events are appended and replicated: the nodes fail over.
    cluster.servers[0].stop();
    for round in 0..5u64 {
        residence.log.append_batch_async((0..20).map(|i| service(100 + round * 20 + i)).collect()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    until("the 100 appended during the loss reach the origin", Duration::from_secs(60), || held() == 150).await;

    // It comes back and catches up; more events still flow.
    cluster.servers[0].restart().unwrap();
    residence.log.append_batch_async((200..230).map(service).collect()).await.unwrap();
    until("everything reaches the origin", Duration::from_secs(60), || held() == 180).await;
    // The stream may hold re-sends asked for during the loss (repair); the store holds each event once.
    let info = stream.info().await.unwrap();
    assert!(info.state.messages >= 180, "{info:?}");
    assert_eq!(origin.log.quarantine().unwrap().len(), 0, "nothing refused");
    for n in &nodes {
        let report = n.log.verify().unwrap();
        assert!(report.ok(), "{}: {:?}", n.locality, report.faults);
    }
    assert_eq!(origin.log.read_channel(loc("610112"), loc("411522"), 1, 1000).unwrap().len(), 180);
    for n in nodes {
        n.stop().await.unwrap();
    }
}

/// Two province clusters (Shaanxi 61, Henan 41) of three servers each,
/// joined by gateways into one JetStream supercluster (a current nats-server:
/// Debian's 2.9.10 does not form one meta group across gateways). Each
/// province's streams live in its own cluster (R3); each node connects to its
/// own province's servers; events cross the gateway both ways; one server in
/// each cluster is killed mid-run and restarted; everything converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_province_clusters_joined_by_gateways_replicate_through_server_losses() {
    use yipan_testkit::NatsSupercluster;
    let base = tempfile::tempdir().unwrap();
    let localities = [loc("610112"), loc("411522")];
    let deployment = Deployment::create(&base.path().join("secrets"), &localities, &[]).unwrap();
    let secure = deployment.nats_server();
    let mut sc =
        tokio::task::spawn_blocking(move || NatsSupercluster::start_secure(secure, &["province-61", "province-41"], 3))
            .await
            .unwrap()
            .unwrap();
    let (urls61, urls41) = (sc.cluster("province-61").urls(), sc.cluster("province-41").urls());
    provision(&deployment, &urls61, Some("province-"), sc.clusters.iter().flat_map(|(_, c)| c.servers.iter())).await;
    let js = admin(&deployment, &urls41).await;
    for (p, cluster) in [(61, "province-61"), (41, "province-41")] {
        let info = js.get_stream(yipan_sync::subjects::stream(p)).await.unwrap().info().await.unwrap().clone();
        assert_eq!(
            info.cluster.and_then(|c| c.name).as_deref(),
            Some(cluster),
            "province {p}'s events live in its cluster"
        );
        assert_eq!(info.config.num_replicas, 3);
    }

    let nodes = start_nodes(&deployment, base.path(), [&urls61, &urls41]).await;
    let (residence, origin) = (&nodes[0], &nodes[1]);
    let at_origin = || origin.log.channel_head(loc("610112"), loc("411522")).unwrap();
    let at_residence = || residence.log.channel_head(loc("411522"), loc("610112")).unwrap();
    let certificate = |n: u64| EventDraft {
        body: Some(EventBody {
            kind: Some(Kind::CertificateIssued(v1::CertificateIssued {
                certificate_ref: format!("C{n}"),
                valid_until: None,
            })),
        }),
        ..service(n)
    };
    residence.log.append_batch_async((0..30).map(service).collect()).await.unwrap();
    origin.log.append_batch_async((0..30).map(certificate).collect()).await.unwrap();
    until("30 each way across the gateway", Duration::from_secs(60), || at_origin() == 30 && at_residence() == 30)
        .await;

    sc.cluster("province-61").servers[1].stop();
    sc.cluster("province-41").servers[2].stop();
    for round in 0..3u64 {
        residence.log.append_batch_async((0..10).map(|i| service(100 + round * 10 + i)).collect()).await.unwrap();
        origin.log.append_batch_async((0..10).map(|i| certificate(100 + round * 10 + i)).collect()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    until("60 each way through the losses", Duration::from_secs(90), || at_origin() == 60 && at_residence() == 60)
        .await;
    sc.cluster("province-61").servers[1].restart().unwrap();
    sc.cluster("province-41").servers[2].restart().unwrap();
    residence.log.append_batch_async((200..210).map(service).collect()).await.unwrap();
    until("everything after the restarts", Duration::from_secs(90), || at_origin() == 70).await;
    for n in &nodes {
        let report = n.log.verify().unwrap();
        assert!(report.ok(), "{}: {:?}", n.locality, report.faults);
        assert_eq!(n.log.quarantine().unwrap().len(), 0, "{}: nothing refused", n.locality);
    }
    for n in nodes {
        n.stop().await.unwrap();
    }
}
