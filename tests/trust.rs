//! Trust as signed data over a real, secured `nats-server` (docs/trust.md):
//! nodes configured with the trust anchor only learn every locality from
//! the trust stream; a locality certified after the nodes started is learned
//! and replicates; a key handover mid-stream across a restart; revocation
//! bounding a stolen key (and its NATS credential); bad statements on the
//! stream quarantined with their codes; an audit from NATS alone across a
//! handover.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use yipan_access::nats::Principal;
use yipan_core::{Locality, PersonKey};
use yipan_log::keyfile;
use yipan_node::authority::LocalityRequest;
use yipan_node::provision::Deployment;
use yipan_node::{Node, NodeConfig};
use yipan_proto::v1::{self, event_body::Kind, EventBody, EventDraft};
use yipan_proto::Message;
use yipan_testkit::NatsServer;

const SECRET: &[u8] = b"trust-test-secret";

fn loc(code: &str) -> Locality {
    Locality::parse(code).unwrap()
}

struct World {
    nats: NatsServer,
    base: tempfile::TempDir,
    deployment: Deployment,
    nodes: HashMap<&'static str, Node>,
    serials: HashMap<&'static str, u64>,
}

impl World {
    /// A secured NATS with NKey users for 610112, 610113 and 411522 (and the
    /// authorities), streams made by the admin, and data directories of
    /// `certified` with their keys certified and published. No key is
    /// copied between nodes.
    async fn new(certified: &[&'static str]) -> World {
        let base = tempfile::tempdir().unwrap();
        let all = [loc("610112"), loc("610113"), loc("411522")];
        let deployment = Deployment::create(&base.path().join("secrets"), &all, &[]).unwrap();
        let secure = deployment.nats_server();
        let nats = tokio::task::spawn_blocking(move || NatsServer::start_secure(secure)).await.unwrap().unwrap();
        deployment.provision(&nats.url(), &[61, 41]).await.unwrap();
        let mut w = World { nats, base, deployment, nodes: HashMap::new(), serials: HashMap::new() };
        for code in certified {
            w.certify(code).await;
        }
        w
    }

    fn dir(&self, code: &str) -> PathBuf {
        self.base.path().join(code)
    }

    async fn certify(&mut self, code: &'static str) {
        yipan_node::datadir::init(&self.dir(code), loc(code), Some(SECRET)).unwrap();
        let serial = self.deployment.certify(loc(code), code, &self.dir(code)).unwrap();
        self.serials.insert(code, serial);
        self.deployment.publish_trust(&self.nats.url()).await.unwrap();
    }

    fn config(&self, code: &str) -> NodeConfig {
        let mut cfg = self.deployment.node_config(loc(code), self.dir(code), &self.nats.url()).unwrap();
        cfg.sync.head_interval_ms = 300;
        cfg.sync.head_refresh_ms = 1_500;
        cfg.sync.repair_grace_ms = 300;
        cfg.sync.trust_poll_ms = 200;
        cfg
    }

    async fn start(&mut self, code: &'static str) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.nodes.insert(code, Node::start(self.config(code), listener).await.unwrap());
    }

    async fn stop(&mut self, code: &str) {
        self.nodes.remove(code).unwrap().stop().await.unwrap();
    }

    fn node(&self, code: &str) -> &Node {
        &self.nodes[code]
    }

    async fn nats_as(&self, principal: Principal) -> async_nats::Client {
        let cfg = self.deployment.sync_config(principal, &self.nats.url()).unwrap();
        yipan_sync::connect_options(&cfg, principal).unwrap().connect(self.nats.url()).await.unwrap()
    }

    /// Waits until `check` holds, at most 20 s.
    async fn until(&self, what: &str, check: impl Fn(&World) -> bool) {
        let start = Instant::now();
        while !check(self) {
            assert!(start.elapsed() < Duration::from_secs(20), "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn held_from(&self, at: &str, author: &str) -> u64 {
        self.node(at).log.channel_head(loc(author), loc(at)).unwrap()
    }

    /// Everything the event streams and the trust stream hold, audited with the anchor alone.
    async fn audit_from_nats(&self) -> yipan_audit::AuditReport {
        let records = yipan_audit::stream::read_trust(self.nats_as(Principal::Auditor).await).await.unwrap();
        let anchor = self.deployment.authority.anchor().unwrap();
        let (trust, findings) = yipan_audit::trust_from(Some(anchor), &records, &HashMap::new());
        let mut auditor = yipan_audit::Auditor::new(trust);
        yipan_audit::stream::read_all(self.nats_as(Principal::Auditor).await, &mut auditor, |_| {}).await.unwrap();
        let (mut report, _) = auditor.finish("nats", chrono::Utc::now());
        report.faults.extend(findings);
        report
    }
}

fn draft(residence: &str, n: u64) -> EventDraft {
    EventDraft {
        person_key: PersonKey::derive(&format!("41152219900101{n:04}"), SECRET).to_string(),
        origin: "411522".into(),
        residence: residence.into(),
        body: Some(EventBody {
            kind: Some(Kind::CertificateIssued(v1::CertificateIssued {
                certificate_ref: format!("C{n}"),
                valid_until: None,
            })),
        }),
        ..Default::default()
    }
}

fn metric(node: &Node, name: &str) -> u64 {
    let mut text = String::new();
    node.metrics.render(&mut text);
    text.lines().find_map(|l| l.strip_prefix(&format!("{name} "))?.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locality_certified_after_the_nodes_started_is_learned_by_all_and_replicates() {
    let mut w = World::new(&["610112", "411522"]).await;
    w.start("610112").await;
    w.start("411522").await;
    w.until("both know both", |w| {
        ["610112", "411522"].iter().all(|n| w.node(n).log.trust().is_certified(loc("610112")))
            && ["610112", "411522"].iter().all(|n| w.node(n).log.trust().is_certified(loc("411522")))
    })
    .await;
    // 411522 writes to 610113 before anyone has heard of it: the events wait in the stream.
    w.node("411522").log.append_batch_async(vec![draft("610113", 1), draft("610113", 2)]).await.unwrap();
    // The new county is set up and certified by Shaanxi's authority; nobody copies a key.
    w.certify("610113").await;
    w.start("610113").await;
    w.until("every node learned 610113", |w| w.nodes.values().all(|n| n.log.trust().is_certified(loc("610113")))).await;
    w.until("610113 received 411522's events", |w| w.held_from("610113", "411522") == 2).await;
    let verified = EventDraft {
        body: Some(EventBody {
            kind: Some(Kind::CertificateVerified(v1::CertificateVerified {
                certificate_ref: "C1".into(),
                ..Default::default()
            })),
        }),
        ..draft("610113", 1)
    };
    w.node("610113").log.append_async(verified).await.unwrap();
    w.until("411522 received 610113's event", |w| w.held_from("411522", "610113") == 1).await;
    // Nothing about the newcomer was quarantined anywhere.
    for (code, n) in &w.nodes {
        assert!(n.log.quarantine().unwrap().is_empty(), "{code}: {:?}", n.log.quarantine().unwrap());
        let view = n.log.trust().view(chrono::Utc::now());
        let newcomer = view.iter().find(|v| v.locality == "610113").unwrap();
        assert_eq!(newcomer.status, "active");
        assert!(newcomer.chain[1].starts_with("authority 61"), "{:?}", newcomer.chain);
    }
    let report = w.audit_from_nats().await;
    assert!(report.faults.is_empty(), "{:?}", report.faults);
    for code in ["610112", "610113", "411522"] {
        w.stop(code).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_handover_mid_stream_across_a_restart_replicates_and_audits_from_nats() {
    let mut w = World::new(&["610112", "610113", "411522"]).await;
    for code in ["610112", "610113", "411522"] {
        w.start(code).await;
    }
    w.node("411522").log.append_batch_async((1..=3).map(|n| draft("610112", n)).collect()).await.unwrap();
    w.until("before: 3 events", |w| w.held_from("610112", "411522") == 3).await;

    // Rotation, as the operator does it: next key, certificate replacing the current serial,
    // handover with the node stopped, restart.
    w.stop("411522").await;
    let dir = w.dir("411522");
    let next = keyfile::generate().unwrap();
    keyfile::write_secret(&keyfile::next_secret_path(&dir), &next, "exists").unwrap();
    let (cert, _) = w
        .deployment
        .authority
        .certify_locality(&LocalityRequest {
            locality: loc("411522"),
            name: "光山县".into(),
            key: next.verifying_key(),
            days: 365,
            replaces: w.serials["411522"],
            first_seq: 0,
        })
        .unwrap();
    w.deployment.publish_trust(&w.nats.url()).await.unwrap();
    tokio::task::block_in_place(|| {
        let d = yipan_node::datadir::open(&dir).unwrap();
        let a = d.log.rotate_key(next.clone(), std::fs::read(&cert).unwrap()).unwrap();
        assert_eq!(a.seq, 4);
    });
    keyfile::promote_next(&dir).unwrap();
    w.start("411522").await;
    assert_eq!(w.node("411522").log.public_key(), next.verifying_key());
    w.node("411522").log.append_batch_async((4..=6).map(|n| draft("610112", n)).collect()).await.unwrap();
    w.until("across and after: 3 + handover + 3", |w| w.held_from("610112", "411522") == 7).await;
    // 610113 has no channel from 411522 yet: it learns the handover from the trust stream.
    w.until("610113 learned the handover", |w| {
        w.node("610113")
            .log
            .trust()
            .view(chrono::Utc::now())
            .iter()
            .any(|v| v.locality == "411522" && v.spans.len() == 2 && v.spans[1].from_seq == 5)
    })
    .await;
    w.node("411522").log.append_async(draft("610113", 7)).await.unwrap();
    w.until("610113 received a new-key event", |w| w.held_from("610113", "411522") == 1).await;
    for code in ["610112", "610113", "411522"] {
        let v = w.node(code).log.verify().unwrap();
        assert!(v.ok(), "{code}: {:?}", v.faults);
        assert!(w.node(code).log.quarantine().unwrap().is_empty(), "{code}");
    }
    // The audit from NATS alone (anchor + streams) verifies both keys' events.
    let report = w.audit_from_nats().await;
    assert!(report.faults.is_empty(), "{:?}", report.faults);
    assert_eq!(report.authors["411522"], 7 + 1);
    for code in ["610112", "610113", "411522"] {
        w.stop(code).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_stops_a_stolen_key_and_bad_statements_are_quarantined_with_codes() {
    let mut w = World::new(&["610112", "411522"]).await;
    w.start("610112").await;
    w.start("411522").await;
    w.node("411522").log.append_batch_async((1..=2).map(|n| draft("610112", n)).collect()).await.unwrap();
    w.until("2 events", |w| w.held_from("610112", "411522") == 2).await;

    // The key and the NATS credential of 411522 are stolen. Henan's authority revokes the key
    // through the highest sequence the streams witness.
    let bound = yipan_audit::stream::highest_seq(w.nats_as(Principal::Auditor).await, loc("411522")).await.unwrap();
    assert_eq!(bound, 2);
    w.deployment.authority.revoke(41, w.serials["411522"], bound, "key stolen").unwrap();
    w.deployment.publish_trust(&w.nats.url()).await.unwrap();
    w.until("610112 knows the revocation", |w| {
        w.node("610112")
            .log
            .trust()
            .view(chrono::Utc::now())
            .iter()
            .any(|v| v.locality == "411522" && v.status == "revoked")
    })
    .await;

    // The thief signs new events with the stolen key and publishes them with the stolen NKey.
    let stolen = keyfile::load(&w.dir("411522")).unwrap();
    let thief = yipan_log::MemStore::open(yipan_log::MemBackend::new(), loc("411522"), stolen).unwrap();
    thief.append_batch_async((1..=3).map(|n| draft("610112", 100 + n)).collect()).await.unwrap();
    let js = async_nats::jetstream::new(w.nats_as(Principal::Locality(loc("411522"))).await);
    for ev in thief.read_author(loc("411522"), 1, 10).unwrap() {
        let msg = async_nats::jetstream::message::PublishMessage::build()
            .payload(ev.signed.encode_to_vec().into())
            .message_id(format!("thief-{}", ev.seq()));
        js.send_publish(yipan_sync::subjects::event(loc("610112"), loc("411522")), msg).await.unwrap().await.unwrap();
    }
    w.until("the forgeries were judged", |w| w.node("610112").log.quarantine().unwrap().len() >= 3).await;
    let reasons: Vec<String> = w.node("610112").log.quarantine().unwrap().into_iter().map(|q| q.reason).collect();
    assert!(reasons.iter().any(|r| r.contains("key.revoked")), "{reasons:?}");
    assert!(
        reasons.iter().filter(|r| r.starts_with("fork")).count() >= 2,
        "back-dated rewrites are forks: {reasons:?}"
    );
    assert_eq!(w.held_from("610112", "411522"), 2, "nothing forged applied");
    // The real node cannot sign past the bound either until it recovers with a new key.
    w.until("411522 knows its own revocation", |w| {
        w.node("411522")
            .log
            .trust()
            .view(chrono::Utc::now())
            .iter()
            .any(|v| v.locality == "411522" && v.status == "revoked")
    })
    .await;
    let e = w.node("411522").log.append_async(draft("610112", 9)).await.unwrap_err();
    assert!(e.to_string().contains("revoked"), "{e}");

    // Bad statements on the trust stream: another province's authority certifying a Henan
    // county, and a statement signed by a root nobody configured.
    let wrong = w
        .deployment
        .authority
        .issuer(61)
        .map(|k| {
            yipan_trust::statement::sign(
                &k,
                yipan_trust::statement::locality_certificate(&yipan_trust::statement::LocalityCert {
                    locality: loc("411523"),
                    name: "x".into(),
                    key: keyfile::generate().unwrap().verifying_key(),
                    serial: 77,
                    valid_from: chrono::Utc::now(),
                    valid_until: chrono::Utc::now() + chrono::TimeDelta::days(9),
                    replaces_serial: 0,
                    first_seq: 0,
                }),
                chrono::Utc::now(),
            )
        })
        .unwrap();
    let stranger = keyfile::generate().unwrap();
    let unknown_root = yipan_trust::statement::sign(
        &stranger,
        yipan_trust::statement::authority_certificate(
            61,
            "x",
            &stranger.verifying_key(),
            78,
            chrono::Utc::now(),
            chrono::Utc::now() + chrono::TimeDelta::days(9),
        ),
        chrono::Utc::now(),
    );
    // Expired, not yet valid, a second key for a certified locality, a revocation of an
    // unknown serial, and bytes that are no record at all.
    let shaanxi = w.deployment.authority.issuer(61).unwrap();
    let now = chrono::Utc::now();
    let day = chrono::TimeDelta::days(1);
    let cert = |code: &str, serial: u64, from: chrono::DateTime<chrono::Utc>, until: chrono::DateTime<chrono::Utc>| {
        yipan_trust::statement::sign(
            &shaanxi,
            yipan_trust::statement::locality_certificate(&yipan_trust::statement::LocalityCert {
                locality: loc(code),
                name: "x".into(),
                key: keyfile::generate().unwrap().verifying_key(),
                serial,
                valid_from: from,
                valid_until: until,
                replaces_serial: 0,
                first_seq: 0,
            }),
            now,
        )
    };
    let expired = cert("610114", 79, now - day * 30, now - day);
    let early = cert("610115", 80, now + day * 30, now + day * 60);
    let conflict = cert("610112", 81, now - day, now + day * 300);
    let unknown_serial =
        yipan_trust::statement::sign(&shaanxi, yipan_trust::statement::revocation(424242, 0, "x"), now);
    let js = async_nats::jetstream::new(w.nats_as(Principal::Authority(61)).await);
    let mut records: Vec<Vec<u8>> = [wrong, unknown_root, expired, early, conflict, unknown_serial]
        .into_iter()
        .map(yipan_trust::statement::record_of_statement)
        .collect();
    // A record that is a statement in form but garbage inside (plain junk on an authority's
    // subject is dropped and counted without a quarantine entry).
    records.push(yipan_trust::statement::record_of_statement(b"\x0a\x03abc".to_vec()));
    records.push(b"\x0a\xff\xffnot a record".to_vec());
    for (i, record) in records.into_iter().enumerate() {
        let msg = async_nats::jetstream::message::PublishMessage::build()
            .payload(record.into())
            .message_id(format!("bad-{i}"));
        js.send_publish(yipan_sync::subjects::trust_statement(61), msg).await.unwrap().await.unwrap();
    }
    w.until("every bad statement refused", |w| metric(w.node("610112"), "yipan_trust_records_refused_total") >= 8)
        .await;
    let reasons: Vec<String> = w.node("610112").log.quarantine().unwrap().into_iter().map(|q| q.reason).collect();
    for code in [
        "trust.wrong_province",
        "trust.unknown_issuer",
        "trust.expired",
        "trust.not_yet_valid",
        "trust.key_conflict",
        "trust.unknown_serial",
        "trust.malformed",
    ] {
        assert!(reasons.iter().any(|r| r.starts_with(code)), "{code} missing from {reasons:?}");
    }
    assert_eq!(
        w.node("610112").log.roster().iter().find(|(l, _)| *l == loc("610112")).map(|(_, k)| *k),
        Some(keyfile::load(&w.dir("610112")).unwrap().verifying_key()),
        "the conflicting certificate changed nothing"
    );
    assert!(!w.node("610112").log.trusts(loc("411523")));
    // An authority's NATS user may publish only its own province's subject.
    let e = js.publish(yipan_sync::subjects::trust_statement(41), "x".into()).await.unwrap().await;
    assert!(e.is_err(), "authority 61 published as 41");

    // The audit from NATS names the forged events by author and sequence.
    let report = w.audit_from_nats().await;
    assert!(
        report.faults.iter().any(|f| f.author == "411522" && f.seq == 3 && f.problem.contains("key.revoked")),
        "{:?}",
        report.faults
    );
    assert!(
        report.faults.iter().any(|f| f.author == "trust" && f.problem.contains("trust.wrong_province")),
        "{:?}",
        report.faults
    );
    w.stop("610112").await;
    w.stop("411522").await;
}
