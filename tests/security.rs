//! Nothing anonymous (DESIGN.md invariant 11), tried as an attacker would:
//! on the HTTP API every credential failure, every role boundary and every
//! tier boundary; on NATS, with one locality's stolen credentials, every
//! subject, inbox, stream operation and repair it must not reach. Real
//! nats-server with the shipped configuration, real TLS.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use yipan_access::nats::Principal;
use yipan_access::{Role, TokenStore};
use yipan_core::audience::Audience;
use yipan_core::Locality;
use yipan_node::provision::{issue_token, Deployment};
use yipan_node::{Node, NodeConfig};
use yipan_testkit::{http, NatsServer};

const SECRET: &[u8] = b"security-test-secret";
const NAME: &str = "李秀英";
const ID_NUMBER: &str = "41152219920315002X";
const PHONE: &str = "13912345678";
const NOTES: &str = "孕早期随访";

fn loc(code: &str) -> Locality {
    Locality::parse(code).unwrap()
}

struct Env {
    base: tempfile::TempDir,
    deployment: Deployment,
    nats: NatsServer,
    nodes: HashMap<&'static str, Node>,
}

impl Env {
    async fn start(codes: &[&'static str], running: &[&'static str]) -> Env {
        let base = tempfile::tempdir().unwrap();
        let localities: Vec<Locality> = codes.iter().map(|c| loc(c)).collect();
        let downstream = [(loc("610112"), Audience::Statistics)];
        let deployment = Deployment::create(&base.path().join("secrets"), &localities, &downstream).unwrap();
        let secure = deployment.nats_server();
        let nats = tokio::task::spawn_blocking(move || NatsServer::start_secure(secure)).await.unwrap().unwrap();
        deployment.provision(&nats.url(), &[61, 41]).await.unwrap();
        let mut keys = Vec::new();
        for code in codes {
            keys.push((*code, yipan_node::datadir::init(&base.path().join(code), loc(code), Some(SECRET)).unwrap()));
        }
        for code in codes {
            let d = yipan_node::datadir::open(&base.path().join(code)).unwrap();
            for (other, key) in &keys {
                if other != code {
                    d.log.roster_add(loc(other), *key).unwrap();
                }
            }
        }
        let mut env = Env { base, deployment, nats, nodes: HashMap::new() };
        for code in running {
            env.start_node(code, |_| {}).await;
        }
        env
    }

    async fn start_node(&mut self, code: &'static str, f: impl FnOnce(&mut NodeConfig)) {
        if let Some(n) = self.nodes.remove(code) {
            n.stop().await.unwrap();
        }
        let mut cfg = self.deployment.node_config(loc(code), self.base.path().join(code), &self.nats.url()).unwrap();
        cfg.sync.head_interval_ms = 300;
        cfg.sync.head_refresh_ms = 1_500;
        cfg.sync.repair_grace_ms = 300;
        f(&mut cfg);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.nodes.insert(code, Node::start(cfg, listener).await.unwrap());
    }

    fn token(&self, code: &str, role: Role) -> String {
        issue_token(&self.base.path().join(code), role, &format!("test {role}")).unwrap()
    }

    fn client(&self, code: &str, role: Role) -> http::Client {
        let token = self.token(code, role);
        http::Client::new(self.nodes[code].addr, Some(self.deployment.client_tls().unwrap()), Some(token))
    }

    /// A NATS connection as `principal`, recording every server error it receives.
    async fn nats_as(&self, principal: Principal) -> (async_nats::Client, Arc<Mutex<Vec<String>>>) {
        let cfg = self.deployment.sync_config(principal, &self.nats.url()).unwrap();
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        let client = yipan_sync::connect_options(&cfg, principal)
            .unwrap()
            .event_callback(move |e| {
                let sink = sink.clone();
                async move {
                    if let async_nats::Event::ServerError(e) = e {
                        sink.lock().unwrap().push(e.to_string());
                    }
                }
            })
            .connect(self.nats.url())
            .await
            .unwrap();
        (client, errors)
    }
}

/// Sends a request in a blocking task (the test client is blocking).
async fn call(c: &http::Client, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let (c, method, path, body) = (c.clone(), method.to_string(), path.to_string(), body.map(str::to_string));
    tokio::task::spawn_blocking(move || c.request(&method, &path, body.as_deref())).await.unwrap().unwrap()
}

async fn call_as(c: &http::Client, content_type: &str, body: &str) -> (u16, String) {
    let (c, ct, body) = (c.clone(), content_type.to_string(), body.to_string());
    tokio::task::spawn_blocking(move || c.request_with("POST", "/v1/events", Some(&body), &ct)).await.unwrap().unwrap()
}

fn error_of(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not a JSON error: {body}"));
    v["error"].as_str().unwrap_or_else(|| panic!("no error field: {body}")).to_string()
}

const ARRIVAL: &str = r#"{"kind":"ArrivalRegistered","origin":"411522","residence":"610112","person_id_number":"41152219920315002X","body":{"channel":"REGISTRATION_CHANNEL_EMPLOYER"},"identity":{"name":"李秀英","idNumber":"41152219920315002X"},"contact":{"phone":"13912345678"}}"#;
const CHECK: &str = r#"{"kind":"ServiceRendered","origin":"411522","residence":"610112","person_id_number":"41152219920315002X","body":{"service":"SERVICE_KIND_PREGNANCY_CHECK"},"health":{"pregnant":true,"notes":"孕早期随访"}}"#;

fn shows(text: &str) -> [bool; 4] {
    [text.contains(NAME), text.contains(ID_NUMBER), text.contains(PHONE), text.contains(NOTES)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_refuses_bad_credentials_and_wrong_roles_and_releases_tiers_by_role_only() {
    let env = Env::start(&["610112", "411522"], &["610112"]).await;
    let node = &env.nodes["610112"];
    let clerk = env.client("610112", Role::Clerk);
    for ev in [ARRIVAL, CHECK] {
        let (status, body) = call(&clerk, "POST", "/v1/events", Some(ev)).await;
        assert_eq!(status, 200, "{body}");
    }
    let held = node.log.len();

    // Credentials: missing, malformed, unknown, expired, revoked → 401 with a JSON reason.
    let anonymous = clerk.with_token(None);
    let (status, body) = call(&anonymous, "GET", "/v1/events", None).await;
    assert_eq!((status, error_of(&body).contains("no credential")), (401, true), "{body}");
    let (status, body) = call(&clerk.with_token(Some("abc")), "GET", "/v1/events", None).await;
    assert_eq!((status, error_of(&body).contains("malformed")), (401, true), "{body}");
    let forged = format!("yipan_deadbeef_{}", "0".repeat(64));
    let (status, body) = call(&clerk.with_token(Some(&forged)), "GET", "/v1/events", None).await;
    assert_eq!((status, error_of(&body).contains("not valid")), (401, true), "{body}");
    let mut tokens = TokenStore::open(&TokenStore::default_path(&env.base.path().join("610112"))).unwrap();
    let now = chrono::Utc::now();
    let (_, short) = tokens.create(Role::Clerk, "short-lived", Some(now + chrono::Duration::seconds(1)), now).unwrap();
    let (revoked_rec, revoked) = tokens.create(Role::Clerk, "to revoke", None, now).unwrap();
    let (status, _) = call(&clerk.with_token(Some(&revoked)), "GET", "/v1/events", None).await;
    assert_eq!(status, 200, "valid before revocation");
    tokens.revoke(&revoked_rec.id, chrono::Utc::now()).unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (status, body) = call(&clerk.with_token(Some(&short)), "GET", "/v1/events", None).await;
    assert_eq!((status, error_of(&body).contains("has expired")), (401, true), "{body}");
    let (status, body) = call(&clerk.with_token(Some(&revoked)), "GET", "/v1/events", None).await;
    assert_eq!((status, error_of(&body).contains("has been revoked")), (401, true), "revoked without restart: {body}");
    // No token value ever appears in an answer.
    assert!(!body.contains(&revoked[14..]), "{body}");
    // Authentication comes before routing: an unknown path tells an anonymous caller nothing.
    let (status, _) = call(&anonymous, "GET", "/v1/nowhere", None).await;
    assert_eq!(status, 401);
    let (status, body) = call(&clerk, "GET", "/v1/nowhere", None).await;
    assert_eq!((status, error_of(&body).contains("no such path")), (404, true), "{body}");
    let (status, body) = call(&clerk, "DELETE", "/v1/events", None).await;
    assert_eq!((status, error_of(&body).contains("not allowed")), (405, true), "{body}");
    // Liveness alone is open.
    let (status, body) = call(&anonymous, "GET", "/healthz", None).await;
    assert_eq!(status, 200, "{body}");

    // Roles: each may do only its part.
    let supervisor = env.client("610112", Role::Supervisor);
    let statistics = env.client("610112", Role::Statistics);
    let monitor = env.client("610112", Role::Monitor);
    let admin = env.client("610112", Role::Admin);
    let auditor = env.client("610112", Role::Auditor);
    let health = env.client("610112", Role::Health);
    let police = env.client("610112", Role::PublicSecurity);
    for (who, method, path, body) in [
        (&supervisor, "POST", "/v1/events", Some(ARRIVAL)),
        (&statistics, "POST", "/v1/events", Some(ARRIVAL)),
        (&admin, "POST", "/v1/events", Some(ARRIVAL)),
        (&clerk, "GET", "/v1/raw", None),
        (&statistics, "GET", "/v1/raw", None),
        (&clerk, "GET", "/v1/roster", None),
        (&monitor, "GET", "/v1/events", None),
        (&health, "GET", "/v1/scorecard", None),
        (&supervisor, "GET", "/v1/stream", None),
        (&clerk, "GET", "/metrics", None),
        // Roles that never see identities cannot test ID numbers against the keys they see.
        (&supervisor, "POST", "/v1/person-key", Some(r#"{"id_number":"41152219920315002X"}"#)),
        (&statistics, "POST", "/v1/person-key", Some(r#"{"id_number":"41152219920315002X"}"#)),
        (&monitor, "GET", "/v1/disclosures", None),
        (&statistics, "GET", "/v1/export?table=quarantine&format=csv", None),
    ] {
        let (status, answer) = call(who, method, path, body).await;
        assert_eq!(status, 403, "{method} {path}: {answer}");
        assert!(error_of(&answer).contains("may not"), "{answer}");
    }
    // Publishing a duty catalogue is the admin's, not the clerk's.
    let catalogue = serde_json::json!({
        "kind": "DutyCatalogPublished",
        "recipients": ["411522"],
        "occurred_at": "2026-11-01T00:00:00Z",
        "body": {"version": "test", "document": "{}", "sha256": ""}
    })
    .to_string();
    let (status, body) = call(&clerk, "POST", "/v1/events", Some(&catalogue)).await;
    assert_eq!(status, 403, "{body}");
    assert!(error_of(&body).contains("DutyCatalogPublished"), "{body}");
    // A web page's "simple request" (no preflight) cannot write.
    for ct in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
        let (status, body) = call_as(&clerk, ct, ARRIVAL).await;
        assert_eq!(status, 415, "{ct}: {body}");
    }
    assert_eq!(node.log.len(), held, "nothing refused was written");
    for who in [&clerk, &health, &police] {
        let (status, body) = call(who, "POST", "/v1/person-key", Some(r#"{"id_number":"41152219920315002X"}"#)).await;
        assert_eq!(status, 200, "a role that sees identities may: {body}");
        assert!(!body.contains("41152219920315002X"), "the number is not echoed: {body}");
    }

    // Tiers follow the role of the credential, on every read path.
    let reveal = |c: &http::Client| {
        let c = c.clone();
        async move {
            let (status, body) = call(&c, "GET", "/v1/events?reveal=true", None).await;
            assert_eq!(status, 200, "{body}");
            shows(&body)
        }
    };
    assert_eq!(reveal(&clerk).await, [true, true, true, true], "clerk sees every tier");
    assert_eq!(reveal(&health).await, [true, true, false, true], "health: identity and reproductive health");
    assert_eq!(reveal(&police).await, [true, true, true, false], "public security: identity and contact");
    for (who, c) in [("statistics", &statistics), ("supervisor", &supervisor), ("auditor", &auditor), ("admin", &admin)]
    {
        assert_eq!(reveal(c).await, [false; 4], "{who} sees no tier");
    }
    // Raw signed events for the auditor: tiers stripped, signatures still verify.
    let (status, raw) = call(&auditor, "GET", "/v1/raw", None).await;
    assert_eq!(status, 200, "{raw}");
    let key = node.log.public_key();
    let mut n = 0;
    for line in raw.lines() {
        use base64::Engine;
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let bytes = base64::engine::general_purpose::STANDARD.decode(v["b64"].as_str().unwrap()).unwrap();
        let ev = yipan_log::StoredEvent::decode(&bytes).unwrap();
        assert!(ev.signed.tiers.is_empty(), "the auditor received a personal tier");
        ev.verify_signature(&key).unwrap();
        n += 1;
    }
    assert_eq!(n, 2);
    // The event stream: role from the credential, never from a parameter.
    let (status, body) = call(&health, "GET", "/v1/stream?role=full", None).await;
    assert_eq!((status, error_of(&body).contains("comes from your credential")), (403, true), "{body}");
    let sse = {
        let h = health.clone();
        tokio::task::spawn_blocking(move || {
            use std::io::{BufRead, Write};
            let mut s = h.connect().unwrap();
            write!(s, "GET /v1/stream HTTP/1.1\r\nHost: x\r\n{}Accept: text/event-stream\r\n\r\n", h.auth_header())
                .unwrap();
            let mut text = String::new();
            let mut r = std::io::BufReader::new(s);
            while text.matches("\ndata:").count() < 2 {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap() == 0 {
                    break;
                }
                text.push_str(&line);
            }
            text
        })
        .await
        .unwrap()
    };
    assert!(sse.starts_with("HTTP/1.1 200"), "{sse}");
    // The JSON view is masked; the verifiable protobuf carries exactly the role's tiers.
    assert_eq!(shows(&sse), [false; 4], "SSE JSON is masked: {sse}");
    let mut tiers = std::collections::BTreeSet::new();
    for data in sse.lines().filter_map(|l| l.strip_prefix("data: ")) {
        use base64::Engine;
        let v: serde_json::Value = serde_json::from_str(data).unwrap();
        let bytes = base64::engine::general_purpose::STANDARD.decode(v["signed_b64"].as_str().unwrap()).unwrap();
        let ev = yipan_log::StoredEvent::decode(&bytes).unwrap();
        ev.verify_signature(&key).unwrap();
        tiers.extend(ev.signed.tiers.iter().map(|t| t.tier));
    }
    use yipan_proto::v1::Tier;
    assert_eq!(
        tiers.into_iter().collect::<Vec<_>>(),
        vec![Tier::Identity as i32, Tier::ReproductiveHealth as i32],
        "SSE for health: identity and reproductive health, never contact"
    );

    // Every refusal is counted.
    let (_, metrics) = call(&monitor, "GET", "/metrics", None).await;
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    assert_eq!(value("yipan_http_unauthenticated_total"), 6);
    assert_eq!(value("yipan_http_forbidden_total"), 16);
    assert_eq!(value("yipan_http_unsupported_media_total"), 3);
    env.nodes.into_values().next().unwrap().stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_is_a_credential_mapped_to_a_role() {
    let mut env = Env::start(&["610112", "411522"], &[]).await;
    env.start_node("610112", |cfg| {
        let tls = cfg.http.tls.as_mut().unwrap();
        tls.clients = vec![yipan_node::config::ClientCertificate {
            name: "shaanxi-platform".into(),
            role: Role::Statistics,
            tenant: None,
        }];
    })
    .await;
    let clerk = env.client("610112", Role::Clerk);
    assert_eq!(call(&clerk, "POST", "/v1/events", Some(ARRIVAL)).await.0, 200);
    let addr = env.nodes["610112"].addr;
    let ca = env.deployment.ca();
    let with_cert = |cn: &str| {
        let issued = env.deployment.client_certificate(cn).unwrap();
        let tls = yipan_access::tls::client_config(&ca, Some((&issued.cert, &issued.key))).unwrap();
        http::Client::new(addr, Some(tls), None)
    };
    let platform = with_cert("shaanxi-platform");
    let (status, body) = call(&platform, "GET", "/v1/events?reveal=true", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(shows(&body), [false; 4], "statistics role: no tier");
    let (status, body) = call(&platform, "POST", "/v1/events", Some(ARRIVAL)).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = call(&with_cert("someone-else"), "GET", "/v1/events", None).await;
    assert_eq!((status, error_of(&body).contains("not mapped to a role")), (401, true), "{body}");
    // A certificate from another CA does not even complete the handshake.
    let other = tempfile::tempdir().unwrap();
    let rogue_ca = yipan_access::pki::DevCa::create(other.path(), "rogue").unwrap();
    let rogue = rogue_ca.client("rogue", "shaanxi-platform").unwrap();
    let tls = yipan_access::tls::client_config(&ca, Some((&rogue.cert, &rogue.key))).unwrap();
    let c = http::Client::new(addr, Some(tls), None);
    let refused = tokio::task::spawn_blocking(move || c.request("GET", "/v1/events", None)).await.unwrap();
    assert!(refused.is_err(), "{refused:?}");
    // Plain HTTP to a TLS listener gets no answer.
    let plain = http::Client::new(addr, None, Some(env.token("610112", Role::Clerk)));
    let refused = tokio::task::spawn_blocking(move || plain.request("GET", "/v1/events", None)).await.unwrap();
    assert!(refused.map(|(s, _)| s != 200).unwrap_or(true));
    for (_, n) in env.nodes.drain() {
        n.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_to_run_insecure_unless_told_and_secret_files_must_be_private() {
    let env = Env::start(&["610112"], &[]).await;
    let dir = env.base.path().join("610112");
    let mut cfg = env.deployment.node_config(loc("610112"), dir.clone(), &env.nats.url()).unwrap();
    cfg.http.tls = None;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = Node::start(cfg.clone(), listener).await.err().unwrap().to_string();
    assert!(err.contains("refusing to run without [http.tls]") && err.contains("insecure = true"), "{err}");
    // A token file others can read is refused.
    issue_token(&dir, Role::Clerk, "x").unwrap();
    use std::os::unix::fs::PermissionsExt;
    let tokens = TokenStore::default_path(&dir);
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg = env.deployment.node_config(loc("610112"), dir.clone(), &env.nats.url()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = Node::start(cfg, listener).await.err().unwrap().to_string();
    assert!(err.contains("mode 644") && err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600)).unwrap();
    // So is a signing key others can read.
    let key = dir.join("keys/ed25519.secret");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let err = yipan_node::datadir::open(&dir).err().unwrap().to_string();
    assert!(err.contains("mode 640"), "{err}");
}

/// Waits until `errors` holds a permission violation mentioning `what`.
async fn violation(errors: &Arc<Mutex<Vec<String>>>, what: &str) {
    let start = Instant::now();
    loop {
        {
            let e = errors.lock().unwrap();
            if e.iter().any(|m| m.to_lowercase().contains("permissions violation") && m.contains(what)) {
                return;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(5), "no permission violation for {what}: {errors:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_stolen_locality_credential_reaches_only_that_locality() {
    let env = Env::start(&["610112", "610113", "411522"], &["610112", "411522"]).await;
    let ca = env.deployment.ca();
    let url = env.nats.url();

    // Anonymous, unknown-key and plain-text connections are refused.
    let anonymous = async_nats::ConnectOptions::new().add_root_certificates(ca.clone()).require_tls(true);
    assert!(anonymous.connect(url.as_str()).await.is_err(), "anonymous connection accepted");
    let stranger = nkeys::KeyPair::new_user().seed().unwrap();
    let unknown = async_nats::ConnectOptions::new().add_root_certificates(ca.clone()).nkey(stranger);
    assert!(unknown.connect(url.as_str()).await.is_err(), "unknown NKey accepted");
    let seed = yipan_access::nats::read_seed(env.deployment.seed(Principal::Locality(loc("610112"))).unwrap()).unwrap();
    let plain = async_nats::ConnectOptions::new().nkey(seed);
    assert!(plain.connect(url.replace("tls://", "nats://")).await.is_err(), "plain-text connection accepted");

    let (thief, errors) = env.nats_as(Principal::Locality(loc("610112"))).await;
    // Publish as another author.
    thief.publish("yipan.v1.ev.41.411522.610113", "x".into()).await.unwrap();
    thief.flush().await.unwrap();
    violation(&errors, "yipan.v1.ev.41.411522.610113").await;
    // Read another locality's address, heads, inbox, or everything.
    for subject in ["yipan.v1.ev.41.411522.*", "yipan.v1.head.41.411522.*", "_INBOX_locality_411522.>", ">"] {
        let _sub = thief.subscribe(subject).await.unwrap();
        thief.flush().await.unwrap();
        violation(&errors, subject).await;
    }
    // JetStream: no stream info, history, purge or deletion; no consumer on another address.
    let api = [
        "$JS.API.STREAM.INFO.YIPAN_EV_41",
        "$JS.API.STREAM.MSG.GET.YIPAN_EV_41",
        "$JS.API.STREAM.PURGE.YIPAN_EV_61",
        "$JS.API.STREAM.DELETE.YIPAN_EV_61",
        "$JS.API.STREAM.CREATE.MINE",
        "$JS.API.CONSUMER.CREATE.YIPAN_EV_41.node-411522.yipan.v1.ev.41.411522.*",
        "$JS.API.CONSUMER.CREATE.YIPAN_EV_61.node-610112.yipan.v1.ev.61.>",
        "$JS.API.CONSUMER.DELETE.YIPAN_EV_41.node-411522",
        "$JS.API.CONSUMER.DURABLE.CREATE.YIPAN_EV_61.node-610112",
        // The shared inbox of a host serving the whole province is not a locality's.
        "$JS.API.CONSUMER.CREATE.YIPAN_EV_61.inbox-61.yipan.v1.ev.61.>",
        "$JS.API.CONSUMER.MSG.NEXT.YIPAN_EV_61.inbox-61",
    ];
    // All at once: a denied request is never answered, so each waits out its timeout.
    let answers =
        futures::future::join_all(api.iter().map(|subject| {
            tokio::time::timeout(Duration::from_secs(3), thief.request(subject.to_string(), "{}".into()))
        }))
        .await;
    for (subject, answer) in api.iter().zip(answers) {
        assert!(!matches!(answer, Ok(Ok(_))), "{subject} answered");
        violation(&errors, subject).await;
    }
    // Its own consumer's create subject with a wider filter in the body is refused by JetStream.
    let (other, _) = env.nats_as(Principal::Locality(loc("610113"))).await;
    let wide = serde_json::json!({
        "stream_name": "YIPAN_EV_61",
        "config": {"durable_name": "node-610113", "name": "node-610113", "filter_subject": "yipan.v1.ev.61.>", "ack_policy": "explicit"}
    });
    let reply = other
        .request("$JS.API.CONSUMER.CREATE.YIPAN_EV_61.node-610113.yipan.v1.ev.61.610113.*", wide.to_string().into())
        .await
        .unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert!(reply.get("error").is_some(), "a widened filter was accepted: {reply}");
    // The streams are still there, untouched (seen by the auditor).
    let (auditor, _) = env.nats_as(Principal::Auditor).await;
    let js = async_nats::jetstream::new(auditor);
    assert!(js.get_stream("YIPAN_EV_61").await.is_ok());

    // Repairs: only of its own channels, rate-limited.
    let origin = &env.nodes["411522"];
    env.nodes["411522"]
        .log
        .append_batch_async(vec![yipan_proto::v1::EventDraft {
            person_key: yipan_core::PersonKey::derive(ID_NUMBER, SECRET).to_string(),
            origin: "411522".into(),
            residence: "610112".into(),
            body: Some(yipan_proto::v1::EventBody {
                kind: Some(yipan_proto::v1::event_body::Kind::CertificateIssued(yipan_proto::v1::CertificateIssued {
                    certificate_ref: "C1".into(),
                    valid_until: None,
                })),
            }),
            ..Default::default()
        }])
        .await
        .unwrap();
    let served = || origin.metrics.repair_served.load(std::sync::atomic::Ordering::Relaxed);
    let before = served();
    // A request whose reply subject is a JetStream API call makes the author publish nothing there.
    thief
        .publish_with_reply("yipan.v1.repair.411522.610112", "$JS.API.STREAM.PURGE.YIPAN_EV_61", "{}".into())
        .await
        .unwrap();
    thief.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ev61 = js.get_stream("YIPAN_EV_61").await.unwrap();
    let messages = ev61.info().await.unwrap().state.messages;
    thief.publish("yipan.v1.repair.411522.610113", r#"{"from":1,"to":2048}"#.into()).await.unwrap();
    thief.flush().await.unwrap();
    violation(&errors, "yipan.v1.repair.411522.610113").await;
    use futures::StreamExt;
    let mut answers = thief.subscribe("yipan.v1.repaired.61.610112.411522").await.unwrap();
    thief.flush().await.unwrap();
    let mut answers_seen = Vec::new();
    for _ in 0..2 {
        thief.publish("yipan.v1.repair.411522.610112", r#"{"from":1,"to":99999999}"#.into()).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), answers.next()).await.unwrap().unwrap();
        answers_seen.push(serde_json::from_slice::<serde_json::Value>(&reply.payload).unwrap());
    }
    let (first, second) = (&answers_seen[0], &answers_seen[1]);
    assert_eq!(first["resent"], 1, "bounded by the channel's head: {first}");
    assert!(second["error"].as_str().unwrap_or_default().contains("rate limited"), "{second}");
    assert_eq!(served() - before, 3, "the forbidden request never reached the author");
    assert!(ev61.info().await.unwrap().state.messages >= messages, "nothing purged");

    // A downstream user reads only its own locality and role.
    let (down, down_errors) = env.nats_as(Principal::Downstream(loc("610112"), Audience::Statistics)).await;
    for subject in
        ["yipan.v1.down.61.610112.health.>", "yipan.v1.down.61.610113.statistics.>", "yipan.v1.ev.61.610112.*"]
    {
        let _sub = down.subscribe(subject).await.unwrap();
        down.flush().await.unwrap();
        violation(&down_errors, subject).await;
    }

    // A stolen province inbox credential (a host's shared consumer) reads its
    // province through its one consumer, and does nothing else.
    let (inbox, inbox_errors) = env.nats_as(Principal::Inbox(61)).await;
    let ok = serde_json::json!({
        "stream_name": "YIPAN_EV_61",
        "config": {"durable_name": "inbox-61", "name": "inbox-61", "filter_subject": "yipan.v1.ev.61.>", "ack_policy": "explicit"}
    });
    let reply = inbox
        .request("$JS.API.CONSUMER.CREATE.YIPAN_EV_61.inbox-61.yipan.v1.ev.61.>", ok.to_string().into())
        .await
        .unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert!(reply.get("error").is_none(), "its own consumer: {reply}");
    inbox.publish("yipan.v1.ev.61.610112.411522", "x".into()).await.unwrap();
    inbox.flush().await.unwrap();
    violation(&inbox_errors, "yipan.v1.ev.61.610112.411522").await;
    for subject in ["yipan.v1.ev.61.>", "yipan.v1.head.61.610112.*", "_INBOX_locality_610112.>"] {
        let _sub = inbox.subscribe(subject).await.unwrap();
        inbox.flush().await.unwrap();
        violation(&inbox_errors, subject).await;
    }
    let api = [
        "$JS.API.CONSUMER.CREATE.YIPAN_EV_41.inbox-61.yipan.v1.ev.41.>",
        "$JS.API.CONSUMER.CREATE.YIPAN_EV_61.node-610112.yipan.v1.ev.61.610112.*",
        "$JS.API.CONSUMER.CREATE.YIPAN_EV_61.inbox-62.yipan.v1.ev.61.>",
        "$JS.API.CONSUMER.DELETE.YIPAN_EV_61.node-610112",
        "$JS.API.STREAM.MSG.GET.YIPAN_EV_61",
        "$JS.API.DIRECT.GET.YIPAN_KEY_61.yipan.v1.key.61.610112.411522.k",
        "$JS.API.STREAM.PURGE.YIPAN_EV_61",
    ];
    let answers =
        futures::future::join_all(api.iter().map(|subject| {
            tokio::time::timeout(Duration::from_secs(3), inbox.request(subject.to_string(), "{}".into()))
        }))
        .await;
    for (subject, answer) in api.iter().zip(answers) {
        assert!(!matches!(answer, Ok(Ok(_))), "{subject} answered");
        violation(&inbox_errors, subject).await;
    }
    for (_, n) in env.nodes {
        n.stop().await.unwrap();
    }
}

/// A node whose log failed a write (disk full) says so in /healthz (503),
/// refuses appends with 503, and reports itself failed so `run` stops it for
/// its supervisor to restart it and reopen the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_stops_the_node_for_a_reopen_and_healthz_says_why() {
    let mut env = Env::start(&["610112", "411522"], &[]).await;
    env.start_node("610112", |_| {}).await;
    let clerk = env.client("610112", Role::Clerk);
    assert_eq!(call(&clerk, "POST", "/v1/events", Some(ARRIVAL)).await.0, 200);
    let node = env.nodes.remove("610112").unwrap();
    node.log.poison_for_test();
    let (status, body) = call(&clerk.with_token(None), "GET", "/healthz", None).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("disk full"), "{body}");
    let (status, body) = call(&clerk, "POST", "/v1/events", Some(CHECK)).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("nothing was written"), "{body}");
    let why =
        tokio::time::timeout(Duration::from_secs(5), node.failed()).await.expect("the node reports itself failed");
    assert!(why.contains("reopened"), "{why}");
    assert_eq!(node.log.len(), 1);
    node.stop().await.unwrap();
}
