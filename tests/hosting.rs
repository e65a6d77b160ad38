//! Many localities in one process (crates/node/src/host.rs): a host serves
//! two tenants beside a node of its own, on a secured nats-server, real TLS
//! and tokens. Events replicate between tenants of one host and with the
//! other node as between separate processes; each tenant's tokens open only
//! its own API, the host's only the host's; a tenant holds only what is
//! addressed to it; a third tenant is prepared and started while the host
//! runs; and a restart brings every tenant back from the host directory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use yipan_access::Role;
use yipan_core::Locality;
use yipan_node::host::{self, Host};
use yipan_node::provision::{issue_token, Deployment};
use yipan_node::Node;
use yipan_testkit::{http, NatsServer};

const SECRET: &[u8] = b"hosting-test-secret";

fn loc(code: &str) -> Locality {
    Locality::parse(code).unwrap()
}

fn event(kind: &str, origin: &str, residence: &str, n: u32, body: &str) -> String {
    format!(
        r#"{{"kind":"{kind}","origin":"{origin}","residence":"{residence}","person_id_number":"{origin}19900101{n:03}X","body":{body}}}"#
    )
}

fn arrival(origin: &str, residence: &str, n: u32) -> String {
    event("ArrivalRegistered", origin, residence, n, r#"{"channel":"REGISTRATION_CHANNEL_EMPLOYER"}"#)
}

async fn call(c: &http::Client, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let (c, method, path, body) = (c.clone(), method.to_string(), path.to_string(), body.map(str::to_string));
    tokio::task::spawn_blocking(move || c.request(&method, &path, body.as_deref())).await.unwrap().unwrap()
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

async fn until(what: &str, within: Duration, check: impl Fn() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < within, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts a host on a free port.
async fn start(cfg: host::HostConfig) -> Host {
    Host::start(cfg, tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).await.unwrap()
}

struct Env {
    base: tempfile::TempDir,
    deployment: Deployment,
    nats: NatsServer,
}

impl Env {
    /// A secured nats-server with the province streams of 61 and 41, and the
    /// credentials of 610112, 610113, 610115 and 411522.
    async fn create() -> Env {
        let base = tempfile::tempdir().unwrap();
        let codes = ["610112", "610113", "610115", "411522"];
        let localities: Vec<Locality> = codes.iter().map(|c| loc(c)).collect();
        let deployment = Deployment::create(&base.path().join("secrets"), &localities, &[]).unwrap();
        let secure = deployment.nats_server();
        let nats = tokio::task::spawn_blocking(move || NatsServer::start_secure(secure)).await.unwrap().unwrap();
        deployment.provision(&nats.url(), &[61, 41]).await.unwrap();
        Env { base, deployment, nats }
    }

    /// Starts `code` as a node of its own, certified; returns it and its data directory.
    async fn start_node(&self, code: &str) -> (Node, PathBuf) {
        let dir = self.base.path().join(code);
        yipan_node::datadir::init(&dir, loc(code), Some(SECRET)).unwrap();
        self.deployment.certify(loc(code), code, &dir).unwrap();
        self.deployment.publish_trust(&self.nats.url()).await.unwrap();
        let mut cfg = self.deployment.node_config(loc(code), dir.clone(), &self.nats.url()).unwrap();
        cfg.sync.head_interval_ms = 300;
        cfg.sync.head_refresh_ms = 1_500;
        cfg.sync.repair_grace_ms = 300;
        cfg.sync.trust_poll_ms = 200;
        (Node::start(cfg, tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).await.unwrap(), dir)
    }

    fn host_dir(&self) -> PathBuf {
        self.base.path().join("host")
    }

    fn tenant_dir(&self, code: &str) -> PathBuf {
        host::tenants_dir(&self.host_dir()).join(code)
    }

    /// The host's configuration with short intervals for tests (unchanged heads
    /// are announced again at the default refresh: a test that checks a catch-up
    /// came from the stream, not from repairs, relies on that).
    fn host_config(&self) -> host::HostConfig {
        let mut cfg = self.deployment.host_config(self.host_dir(), &self.nats.url()).unwrap();
        cfg.sync.head_interval_ms = 300;
        cfg.sync.repair_grace_ms = 300;
        cfg.sync.trust_poll_ms = 200;
        cfg
    }

    async fn start_host(&self) -> Host {
        let mut cfg = self.host_config();
        cfg.sync.head_refresh_ms = 1_500;
        start(cfg).await
    }

    /// Prepares tenant `code` in the host directory and has its key certified.
    async fn prepare_tenant(&self, code: &str) {
        host::add_tenant(&self.host_dir(), loc(code), Some(SECRET)).unwrap();
        self.deployment.certify(loc(code), code, &self.tenant_dir(code)).unwrap();
        self.deployment.publish_trust(&self.nats.url()).await.unwrap();
    }

    fn client(&self, addr: std::net::SocketAddr, dir: &Path, role: Role) -> http::Client {
        let token = issue_token(dir, role, &format!("test {role}")).unwrap();
        http::Client::new(addr, Some(self.deployment.client_tls().unwrap()), Some(token))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_serves_many_localities_each_isolated_and_adds_one_while_running() {
    let env = Env::create().await;

    // A host with two tenants, and 411522 as a node of its own.
    host::init(&env.host_dir()).unwrap();
    assert!(host::init(&env.host_dir()).unwrap_err().to_string().contains("already a host directory"));
    env.prepare_tenant("610112").await;
    env.prepare_tenant("610113").await;
    let (node, node_dir) = env.start_node("411522").await;
    let host = env.start_host().await;
    assert_eq!(host.tenants(), vec![loc("610112"), loc("610113")]);
    let (t12, t13) = (host.log(loc("610112")).unwrap(), host.log(loc("610113")).unwrap());
    until("every tenant and the node know every key", Duration::from_secs(60), || {
        [&t12, &t13, &node.log]
            .iter()
            .all(|log| ["610112", "610113", "411522"].iter().all(|c| log.trust().is_certified(loc(c))))
    })
    .await;

    let clerk12 = env.client(host.addr, &env.tenant_dir("610112"), Role::Clerk);
    let clerk13 = env.client(host.addr, &env.tenant_dir("610113"), Role::Clerk);
    let admin = env.client(host.addr, &env.host_dir(), Role::Admin);
    let monitor = env.client(host.addr, &env.host_dir(), Role::Monitor);
    let node_clerk = env.client(node.addr, &node_dir, Role::Clerk);

    // Each tenant appends through its own address, with its own token.
    let (status, reply) = call(&clerk12, "POST", "/t/610112/v1/events", Some(&arrival("411522", "610112", 1))).await;
    assert_eq!(status, 200, "{reply}");
    let to_node = json(&reply)["id"].as_str().unwrap().to_string();
    // A pair inside the host: a person of 610112 living in 610113.
    let (status, reply) = call(&clerk13, "POST", "/t/610113/v1/events", Some(&arrival("610112", "610113", 2))).await;
    assert_eq!(status, 200, "{reply}");
    let inside = json(&reply)["id"].as_str().unwrap().to_string();
    // And the node writes to a tenant.
    let certificate = event("CertificateIssued", "411522", "610113", 3, r#"{"certificateRef":"HN-GS-2026-0001"}"#);
    let (status, reply) = call(&node_clerk, "POST", "/v1/events", Some(&certificate)).await;
    assert_eq!(status, 200, "{reply}");

    until("each event reaches its recipient", Duration::from_secs(30), || {
        node.log.channel_head(loc("610112"), loc("411522")).unwrap() == 1
            && t12.channel_head(loc("610113"), loc("610112")).unwrap() == 1
            && t13.channel_head(loc("411522"), loc("610113")).unwrap() == 1
    })
    .await;
    let (status, reply) = call(&clerk12, "GET", &format!("/t/610112/v1/events/{inside}"), None).await;
    assert_eq!(status, 200, "the origin tenant reads the event the other tenant sent it: {reply}");

    // One storage engine for all tenants; none has a store of its own.
    assert!(host::store_dir(&env.host_dir()).join("conf").exists());
    assert!(!env.tenant_dir("610112").join("log").exists());
    // Isolation: a tenant holds only its own events and what is addressed to it.
    assert_eq!(t12.len(), 2, "610112: its arrival and the one 610113 sent it");
    assert_eq!(t13.len(), 2, "610113: its arrival and the one 411522 sent it");
    assert_eq!(t13.channel_head(loc("610112"), loc("610113")).unwrap(), 0);
    let clerk13_reads = call(&clerk13, "GET", &format!("/t/610113/v1/events/{to_node}"), None).await;
    assert_eq!(clerk13_reads.0, 404, "610113 never received 610112's event for 411522: {}", clerk13_reads.1);

    // Each credential opens only what it was issued for.
    for (who, client, path) in [
        ("610112's clerk at 610113", &clerk12, "/t/610113/v1/events"),
        ("610113's clerk at 610112", &clerk13, "/t/610112/v1/status"),
        ("the host admin at a tenant", &admin, "/t/610112/v1/status"),
        ("a tenant's clerk at the host", &clerk12, "/host/tenants"),
    ] {
        let (status, body) = call(client, "GET", path, None).await;
        assert_eq!(status, 401, "{who}: {body}");
    }
    let node_token_at_host = env.client(host.addr, &node_dir, Role::Clerk);
    assert_eq!(call(&node_token_at_host, "GET", "/t/610112/v1/status", None).await.0, 401);
    // A tenant cannot write for a pair it is not part of.
    let (status, body) = call(&clerk12, "POST", "/t/610112/v1/events", Some(&arrival("411522", "610113", 4))).await;
    assert!((400..500).contains(&status), "610112 wrote for the pair 411522–610113: {status} {body}");
    let (status, body) = call(&monitor, "POST", "/host/tenants", Some(r#"{"locality":"610115"}"#)).await;
    assert_eq!(status, 403, "only an admin starts tenants: {body}");
    for (path, want) in [("/t/999999/v1/status", 404), ("/t/610115/v1/status", 404), ("/t/abc/v1/status", 404)] {
        let (status, body) = call(&clerk12, "GET", path, None).await;
        assert_eq!(status, want, "{path}: {body}");
        assert!(json(&body)["error"].as_str().unwrap().contains("no tenant"), "{body}");
    }

    // A third tenant, prepared and started while the host runs.
    let (status, body) = call(&admin, "POST", "/host/tenants", Some(r#"{"locality":"610115"}"#)).await;
    assert_eq!(status, 404, "not prepared yet: {body}");
    assert!(json(&body)["error"].as_str().unwrap().contains("yipan host add-tenant"), "{body}");
    env.prepare_tenant("610115").await;
    let (status, body) = call(&admin, "POST", "/host/tenants", Some(r#"{"locality":"610115"}"#)).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = call(&admin, "POST", "/host/tenants", Some(r#"{"locality":"610115"}"#)).await;
    assert_eq!(status, 409, "{body}");
    for bad in [r#"{"locality":"61011"}"#, r#"{"code":"610115"}"#, "not json"] {
        let (status, body) = call(&admin, "POST", "/host/tenants", Some(bad)).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let t15 = host.log(loc("610115")).unwrap();
    until("the new tenant knows every key", Duration::from_secs(30), || {
        ["610112", "610113", "411522"].iter().all(|c| t15.trust().is_certified(loc(c)))
            && [&node.log, &t12].iter().all(|log| log.trust().is_certified(loc("610115")))
    })
    .await;
    let clerk15 = env.client(host.addr, &env.tenant_dir("610115"), Role::Clerk);
    let (status, reply) = call(&clerk15, "POST", "/t/610115/v1/events", Some(&arrival("411522", "610115", 5))).await;
    assert_eq!(status, 200, "{reply}");
    let (status, reply) = call(&clerk15, "POST", "/t/610115/v1/events", Some(&arrival("610112", "610115", 6))).await;
    assert_eq!(status, 200, "{reply}");
    until("the new tenant's events arrive", Duration::from_secs(30), || {
        node.log.channel_head(loc("610115"), loc("411522")).unwrap() == 1
            && t12.channel_head(loc("610115"), loc("610112")).unwrap() == 1
    })
    .await;
    let (status, body) = call(&monitor, "GET", "/host/tenants", None).await;
    assert_eq!(status, 200, "{body}");
    let listed = json(&body);
    let listed: Vec<(&str, u64, bool)> = listed["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (t["locality"].as_str().unwrap(), t["events"].as_u64().unwrap(), t["nats_connected"].as_bool().unwrap())
        })
        .collect();
    assert_eq!(listed, vec![("610112", 3, true), ("610113", 2, true), ("610115", 2, true)]);

    // The console of each tenant is under its own address.
    assert_eq!(call(&clerk12, "GET", "/t/610112", None).await.0, 308);
    let (status, page) = call(&clerk12, "GET", "/t/610112/console/", None).await;
    assert!(status == 200 && page.contains("console.js"), "{status}");
    let (status, who) = call(&clerk12, "GET", "/t/610112/v1/whoami", None).await;
    assert_eq!(status, 200, "{who}");
    let (status, health) = call(&clerk12, "GET", "/healthz", None).await;
    assert_eq!((status, json(&health)["tenants"].as_u64()), (200, Some(3)), "{health}");

    // A restart brings every tenant back from the host directory, its log intact and verifying.
    drop((t12, t13, t15));
    host.stop().await.unwrap();
    let host = env.start_host().await;
    assert_eq!(host.tenants(), vec![loc("610112"), loc("610113"), loc("610115")]);
    for (code, events) in [("610112", 3), ("610113", 2), ("610115", 2)] {
        let log = host.log(loc(code)).unwrap();
        assert_eq!(log.len(), events, "{code}");
        let report = log.verify().unwrap();
        assert!(report.ok(), "{code}: {:?}", report.faults);
    }
    let clerk13 = env.client(host.addr, &env.tenant_dir("610113"), Role::Clerk);
    let (status, reply) = call(&clerk13, "POST", "/t/610113/v1/events", Some(&arrival("411522", "610113", 7))).await;
    assert_eq!(status, 200, "{reply}");
    until("events flow after the restart", Duration::from_secs(30), || {
        node.log.channel_head(loc("610113"), loc("411522")).unwrap() == 1
    })
    .await;
    host.stop().await.unwrap();
    node.stop().await.unwrap();
}

#[test]
fn a_host_configuration_is_secure_or_says_why_not() {
    let base = tempfile::tempdir().unwrap();
    let deployment = Deployment::create(base.path(), &[loc("610112")], &[]).unwrap();
    let cfg = deployment.host_config(base.path().join("host"), "tls://127.0.0.1:4222").unwrap();
    cfg.check().expect("a provisioned host is secure");
    let tenant = cfg.tenant(loc("610112"));
    assert!(tenant.sync.nats_nkey_file.unwrap().ends_with("locality-610112.nk"));
    assert_eq!(tenant.data_dir, base.path().join("host/tenants/610112"));
    assert_eq!(tenant.http.tokens, None, "a tenant's tokens are its own, never the host's");

    let mut keyed = cfg.clone();
    keyed.sync.nats_nkey_file = Some("x.nk".into());
    assert!(keyed.check().unwrap_err().to_string().contains("each connect with their own NKey"));
    let mut keyless = cfg.clone();
    keyless.nats_nkey_dir = None;
    let e = keyless.check().unwrap_err().to_string();
    assert!(e.contains("nats_nkey_dir"), "{e}");
    let mut open = cfg.clone();
    open.http.tls = None;
    assert!(open.check().unwrap_err().to_string().contains("[http.tls]"));
    let mut wrong = cfg.clone();
    if let Some(t) = &mut wrong.http.tls {
        t.clients.push(yipan_node::config::ClientCertificate {
            name: "stats".into(),
            role: Role::Statistics,
            tenant: Some("6101".into()),
        });
    }
    assert!(wrong.check().unwrap_err().to_string().contains("client `stats`: tenant"));
    // Certificates name their tenant; each tenant sees only its own, the host only those without one.
    let mut mapped = cfg.clone();
    if let Some(t) = &mut mapped.http.tls {
        t.clients = vec![
            yipan_node::config::ClientCertificate {
                name: "a".into(),
                role: Role::Statistics,
                tenant: Some("610112".into()),
            },
            yipan_node::config::ClientCertificate {
                name: "b".into(),
                role: Role::Health,
                tenant: Some("610113".into()),
            },
            yipan_node::config::ClientCertificate { name: "ops".into(), role: Role::Monitor, tenant: None },
        ];
    }
    mapped.check().expect("distinct names");
    let mut twice = mapped.clone();
    if let Some(t) = &mut twice.http.tls {
        t.clients.push(yipan_node::config::ClientCertificate {
            name: "a".into(),
            role: Role::Clerk,
            tenant: Some("610113".into()),
        });
    }
    let e = twice.check().unwrap_err().to_string();
    assert!(e.contains("client `a` is listed twice"), "{e}");
    let mine = mapped.tenant(loc("610112")).http.tls.unwrap().clients;
    assert_eq!(mine.iter().map(|c| (c.name.as_str(), c.tenant.clone())).collect::<Vec<_>>(), vec![("a", None)]);

    let mut flood = cfg.clone();
    flood.publish_budget = usize::MAX;
    let e = flood.check().unwrap_err().to_string();
    assert!(e.contains("publish_budget") && e.contains("0 turns the budget off"), "{e}");
    flood.publish_budget = 0;
    flood.check().expect("0: no budget beyond each tenant's window");

    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/host/host.toml");
    let shipped = host::HostConfig::load(&shipped).unwrap();
    shipped.check().expect("the shipped example is secure");
    assert!(shipped.sync.nats_url.contains(','), "the example connects to its province cluster");
}

/// The consumers of the event stream of `province`, by name (read as the admin).
async fn consumers(env: &Env, province: u8) -> Vec<String> {
    use futures::StreamExt;
    let principal = yipan_access::nats::Principal::Admin;
    let cfg = env.deployment.sync_config(principal, &env.nats.url()).unwrap();
    let client = yipan_sync::connect_options(&cfg, principal).unwrap().connect(env.nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream(format!("YIPAN_EV_{province:02}")).await.unwrap();
    let mut names: Vec<String> = stream.consumer_names().map(|n| n.unwrap()).collect().await;
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_serving_a_whole_province_reads_it_through_one_consumer() {
    let env = Env::create().await;
    host::init(&env.host_dir()).unwrap();
    env.prepare_tenant("610112").await;
    env.prepare_tenant("610113").await;
    let (node, node_dir) = env.start_node("411522").await;
    let node_clerk = env.client(node.addr, &node_dir, Role::Clerk);
    let send = |residence: &'static str, n: u32| {
        let c = node_clerk.clone();
        async move {
            let certificate =
                event("CertificateIssued", "411522", residence, n, r#"{"certificateRef":"HN-GS-2026-0001"}"#);
            let (status, reply) = call(&c, "POST", "/v1/events", Some(&certificate)).await;
            assert_eq!(status, 200, "{reply}");
        }
    };
    // Sent before anyone in 61 reads: to a tenant, to one prepared later, to one never hosted here.
    send("610112", 1).await;
    for n in 2..5 {
        send("610115", n).await;
    }
    send("610116", 5).await;
    until("the node published them", Duration::from_secs(30), || {
        node.metrics.outbox_pending.load(std::sync::atomic::Ordering::Relaxed) == 0
            && node.log.channel_head(loc("411522"), loc("610115")).unwrap() == 3
    })
    .await;

    let start = |env: &Env| {
        let mut cfg = env.host_config();
        cfg.inbox_provinces = vec!["61".into()];
        start(cfg)
    };
    let host = start(&env).await;
    let inbox = |host: &Host| host.inboxes().into_iter().next().unwrap();
    // First start: no tenant is covered yet; each reads its own address once, then the province's consumer covers it.
    until("both tenants are covered", Duration::from_secs(30), || inbox(&host).members == 2).await;
    let t12 = host.log(loc("610112")).unwrap();
    until("610112 holds what was sent before", Duration::from_secs(30), || {
        t12.channel_head(loc("411522"), loc("610112")).unwrap() == 1
    })
    .await;
    send("610113", 6).await;
    send("610112", 7).await;
    let t13 = host.log(loc("610113")).unwrap();
    until("new events arrive through the province's consumer", Duration::from_secs(30), || {
        t12.channel_head(loc("411522"), loc("610112")).unwrap() == 2
            && t13.channel_head(loc("411522"), loc("610113")).unwrap() == 1
    })
    .await;
    until("what no tenant here is for is counted", Duration::from_secs(30), || inbox(&host).unrouted == 4).await;
    let status = inbox(&host);
    assert_eq!((status.consumer.as_str(), status.catching_up), ("inbox-61", 0), "{status:?}");
    assert_eq!(consumers(&env, 61).await, vec!["inbox-61".to_string()], "the tenants' own consumers are gone");

    // A tenant added while the host runs reads what was sent to it before, then joins.
    env.prepare_tenant("610115").await;
    host.start_tenant(loc("610115")).await.unwrap();
    let t15 = host.log(loc("610115")).unwrap();
    until("the new tenant caught up and is covered", Duration::from_secs(30), || {
        t15.channel_head(loc("411522"), loc("610115")).unwrap() == 3 && inbox(&host).members == 3
    })
    .await;
    send("610115", 8).await;
    until("and receives through the province's consumer", Duration::from_secs(30), || {
        t15.channel_head(loc("411522"), loc("610115")).unwrap() == 4
    })
    .await;
    assert_eq!(consumers(&env, 61).await, vec!["inbox-61".to_string()]);
    assert_eq!((t12.len(), t13.len(), t15.len()), (2, 1, 4), "each holds its own, once");

    // A restart: every tenant is covered at once (no catching up), and events go on.
    drop((t12, t13, t15));
    host.stop().await.unwrap();
    send("610113", 9).await;
    let host = start(&env).await;
    let status = inbox(&host);
    assert_eq!((status.members, status.catching_up), (3, 0), "{status:?}");
    let t13 = host.log(loc("610113")).unwrap();
    until("what was sent while the host was down arrives", Duration::from_secs(30), || {
        t13.channel_head(loc("411522"), loc("610113")).unwrap() == 2
    })
    .await;
    assert_eq!(consumers(&env, 61).await, vec!["inbox-61".to_string()]);
    for (code, events) in [("610112", 2), ("610113", 2), ("610115", 4)] {
        let log = host.log(loc(code)).unwrap();
        assert_eq!(log.len(), events, "{code}");
        assert!(log.verify().unwrap().ok(), "{code}");
        assert!(log.quarantine().unwrap().is_empty(), "{code}");
    }
    drop(t13);

    // A tenant that cannot start (its NKey gone) is no longer covered: what is sent to it
    // meanwhile is acknowledged unread, and it reads that with its own consumer once back.
    host.stop().await.unwrap();
    let seed = env.deployment.seed(yipan_access::nats::Principal::Locality(loc("610115"))).unwrap().to_path_buf();
    let aside = seed.with_extension("away");
    std::fs::rename(&seed, &aside).unwrap();
    let host = start(&env).await;
    assert_eq!(host.tenants(), vec![loc("610112"), loc("610113")]);
    assert_eq!(inbox(&host).members, 2);
    send("610115", 10).await;
    until("the consumer passes it by", Duration::from_secs(30), || inbox(&host).unrouted == 1).await;
    // Back at the next start: its record went when it failed, so it catches up first
    // (not the author's re-sends: those would come only after a head announcement).
    host.stop().await.unwrap();
    std::fs::rename(&aside, &seed).unwrap();
    let served = || node.metrics.repair_served.load(std::sync::atomic::Ordering::Relaxed);
    let served_before = served();
    let host = start(&env).await;
    assert_eq!(inbox(&host).catching_up, 1, "{:?}", inbox(&host));
    let t15 = host.log(loc("610115")).unwrap();
    until("back, it reads what it missed and is covered again", Duration::from_secs(30), || {
        t15.channel_head(loc("411522"), loc("610115")).unwrap() == 5 && inbox(&host).members == 3
    })
    .await;
    assert_eq!(served(), served_before, "caught up from the stream, not repaired");
    assert_eq!(t15.len(), 5);
    assert_eq!(consumers(&env, 61).await, vec!["inbox-61".to_string()]);
    drop(t15);
    host.stop().await.unwrap();
    node.stop().await.unwrap();
}

/// Messages the consumer `name` of province 61 has delivered and not yet had acknowledged.
async fn ack_pending(env: &Env, name: &str) -> u64 {
    let principal = yipan_access::nats::Principal::Admin;
    let cfg = env.deployment.sync_config(principal, &env.nats.url()).unwrap();
    let client = yipan_sync::connect_options(&cfg, principal).unwrap().connect(env.nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut consumer: async_nats::jetstream::consumer::PullConsumer =
        js.get_stream("YIPAN_EV_61").await.unwrap().get_consumer(name).await.unwrap();
    consumer.info().await.unwrap().num_ack_pending as u64
}

/// A certificate carrying the identity tier: sealed for its recipient, which
/// opens it with its own NATS credentials (the data key's subject is its own).
fn sealed_certificate(residence: &str, n: u32) -> String {
    format!(
        r#"{{"kind":"CertificateIssued","origin":"411522","residence":"{residence}","person_id_number":"41152219900101{n:03}X","identity":{{"name":"测试{n}"}},"body":{{"certificateRef":"HN-GS-2026-{n:04}"}}}}"#
    )
}

/// A certificate without sealed tiers.
fn certificate(residence: &str, n: u32) -> String {
    event("CertificateIssued", "411522", residence, n, r#"{"certificateRef":"HN-GS-2026-0001"}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_that_keeps_failing_its_share_loses_coverage_instead_of_holding_up_its_province() {
    let mut env = Env::create().await;
    host::init(&env.host_dir()).unwrap();
    env.prepare_tenant("610112").await;
    env.prepare_tenant("610113").await;
    let (node, node_dir) = env.start_node("411522").await;
    let node_clerk = env.client(node.addr, &node_dir, Role::Clerk);
    let send = |body: String| {
        let c = node_clerk.clone();
        async move {
            let (status, reply) = call(&c, "POST", "/v1/events", Some(&body)).await;
            assert_eq!(status, 200, "{reply}");
        }
    };
    let mut cfg = env.host_config();
    cfg.inbox_provinces = vec!["61".into()];
    // Three failed shares in a row are enough here (two minutes by default).
    cfg.sync.uncover_after_ms = 0;
    let host = start(cfg).await;
    let inbox = |host: &Host| host.inboxes().into_iter().next().unwrap();
    until("both tenants are covered", Duration::from_secs(30), || inbox(&host).members == 2).await;
    let (t12, t13) = (host.log(loc("610112")).unwrap(), host.log(loc("610113")).unwrap());
    let head = |log: &yipan_log::Log<_>, to: &str| log.channel_head(loc("411522"), loc(to)).unwrap() as u32;
    send(sealed_certificate("610113", 1)).await;
    until("a sealed arrival is opened and stored", Duration::from_secs(30), || head(&t13, "610113") == 1).await;

    // 610113's NATS user is revoked: the server closes its connection, so it can no longer
    // open sealed tiers (their keys are read with its own credentials) and fails its shares.
    let t13_user = yipan_access::nats::Principal::Locality(loc("610113"));
    env.nats.reload_authorization(env.deployment.authorization_without(&[t13_user])).unwrap();
    let (mut to13, mut to12) = (1, 0);
    let start = Instant::now();
    while inbox(&host).coverage_lost == 0 {
        assert!(start.elapsed() < Duration::from_secs(120), "never lost coverage: {:?}", inbox(&host));
        to13 += 1;
        send(sealed_certificate("610113", to13)).await;
        to12 += 1;
        send(certificate("610112", 100 + to12)).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    // Meanwhile its neighbour went on receiving through the same consumer.
    until("610112 received all the while", Duration::from_secs(30), || head(&t12, "610112") == to12).await;
    let status = inbox(&host);
    assert_eq!((status.members, status.catching_up, status.coverage_lost), (1, 1, 1), "{status:?}");
    // What is addressed to it now is passed by, and what it failed is passed by at its
    // redelivery: nothing of the province's consumer stays unacknowledged on its account.
    send(sealed_certificate("610113", to13 + 1)).await;
    send(certificate("610113", 200)).await;
    to13 += 1;
    let plain13 = 1;
    until("what is addressed to it is passed by", Duration::from_secs(90), || inbox(&host).passed_by >= 2).await;
    let start = Instant::now();
    while ack_pending(&env, "inbox-61").await > 0 {
        assert!(start.elapsed() < Duration::from_secs(90), "inbox-61 keeps messages unacknowledged");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    send(certificate("610112", 300)).await;
    until("610112 still receives", Duration::from_secs(30), || head(&t12, "610112") == to12 + 1).await;

    // Its user restored: it reconnects, reads what it was passed by through its own
    // consumer, and is covered again.
    env.nats.reload_authorization(env.deployment.authorization()).unwrap();
    until("610113 caught up and is covered again", Duration::from_secs(90), || {
        head(&t13, "610113") == to13 + plain13 && inbox(&host).members == 2
    })
    .await;
    send(certificate("610113", 400)).await;
    until("and receives through the province's consumer", Duration::from_secs(30), || {
        head(&t13, "610113") == to13 + plain13 + 1
    })
    .await;
    assert_eq!(consumers(&env, 61).await, vec!["inbox-61".to_string()], "its own consumer is gone again");
    assert_eq!(t13.len(), (to13 + plain13 + 1) as usize, "each event once");
    assert_eq!(t12.len(), (to12 + 1) as usize);
    for log in [&t12, &t13] {
        assert!(log.verify().unwrap().ok());
        assert!(log.quarantine().unwrap().is_empty());
    }
    drop((t12, t13));
    host.stop().await.unwrap();
    node.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hosts_tenants_publish_within_one_budget_that_halves_when_the_server_stalls() {
    let env = Env::create().await;
    host::init(&env.host_dir()).unwrap();
    env.prepare_tenant("610112").await;
    env.prepare_tenant("610113").await;
    let (node, _node_dir) = env.start_node("411522").await;
    let mut cfg = env.host_config();
    cfg.publish_budget = 256;
    cfg.sync.ack_timeout_ms = 1_000;
    let host = start(cfg).await;
    let clerks: Vec<(&str, http::Client)> = ["610112", "610113"]
        .into_iter()
        .map(|code| (code, env.client(host.addr, &env.tenant_dir(code), Role::Clerk)))
        .collect();
    let budget = || host.publish_budget().expect("a host has a publish budget by default");
    const EACH: u32 = 300;
    let append = |from: u32, to: u32| {
        let clerks = clerks.clone();
        async move {
            for n in from..=to {
                for (code, clerk) in &clerks {
                    let (status, reply) =
                        call(clerk, "POST", &format!("/t/{code}/v1/events"), Some(&arrival("411522", code, n))).await;
                    assert_eq!(status, 200, "{reply}");
                }
            }
        }
    };
    append(1, 20).await;
    let at_node = |code: &str| node.log.channel_head(loc(code), loc("411522")).unwrap();
    until("the first events arrive", Duration::from_secs(60), || at_node("610112") == 20 && at_node("610113") == 20)
        .await;
    assert_eq!(budget().shrunk, 0, "{:?}", budget());

    // The server stalls (suspended) while both tenants append: their publishes wait
    // longer than the acknowledgement timeout, and the host's budget is halved once.
    env.nats.freeze().unwrap();
    let stalled = Instant::now();
    append(21, EACH).await;
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(stalled.elapsed())).await;
    env.nats.thaw().unwrap();
    until("every event arrives after the stall", Duration::from_secs(120), || {
        at_node("610112") == EACH as u64 && at_node("610113") == EACH as u64
    })
    .await;
    let status = budget();
    assert!(status.shrunk >= 1, "acknowledgements timed out and the budget never shrank: {status:?}");
    assert!(status.peak_in_flight > 0, "the tenants' publishes never took from the budget: {status:?}");
    assert!(status.peak_in_flight <= 256, "more publishes in flight than the budget: {status:?}");
    assert!(status.limit >= host::MIN_PUBLISH_BUDGET as u64 && status.limit < 256, "{status:?}");
    until("every permit is given back", Duration::from_secs(30), || budget().in_flight == 0).await;
    assert_eq!(node.log.len(), 2 * EACH as usize, "each event once");
    assert!(node.log.verify().unwrap().ok());
    assert!(node.log.quarantine().unwrap().is_empty());
    // The host's status shows the budget.
    let admin = env.client(host.addr, &env.host_dir(), Role::Admin);
    let (code, body) = call(&admin, "GET", "/host/tenants", None).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["publish_budget"]["max"], 256, "{body}");
    host.stop().await.unwrap();
    node.stop().await.unwrap();
}
