//! End-to-end tests of the `yipan` binary on real sled stores: init, the
//! DOMAIN.md scenario, verify, idempotent re-append, bad input, tampering and
//! a damaged store file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const SECRET: &str = "00112233445566778899aabbccddeeff";

fn scenario() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/scenarios/residence-610112.jsonl")
}

fn yipan(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_yipan"));
    cmd.arg("--data-dir").arg(dir).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run yipan");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.unwrap_or("").as_bytes()).expect("write stdin");
    drop(input);
    child.wait_with_output().expect("wait yipan")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn init(dir: &Path) {
    let out = yipan(dir, &["init", "--locality", "610112", "--person-key-secret", SECRET], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

fn event_count(dir: &Path) -> usize {
    let out = yipan(dir, &["log", "--limit", "100000"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).lines().count()
}

#[test]
fn init_append_scenario_verify_and_reappend() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("610112");
    init(&dir);
    let scenario = scenario();
    let out = yipan(&dir, &["append", scenario.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines = text(&out.stdout);
    assert_eq!(lines.lines().count(), 21);
    assert!(lines.lines().all(|l| l.contains("\"duplicate\":false")));
    let out = yipan(&dir, &["verify"], None);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("21 events checked"));

    // The same JSON again stores nothing new.
    let out = yipan(&dir, &["append", scenario.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).lines().all(|l| l.contains("\"duplicate\":true")));
    assert_eq!(event_count(&dir), 21);

    // Reads: by person, by kind, table with Chinese names; personal values masked.
    let out = yipan(&dir, &["log", "--kind", "CaseAssistRequested"], None);
    let json: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(json["body"]["urgency"], "URGENCY_URGENT");
    assert_eq!(json["health"], "*** (reproductive-health tier present)");
    let person = json["person"].as_str().unwrap().to_string();
    let out = yipan(&dir, &["log", "--person", &person], None);
    assert_eq!(text(&out.stdout).lines().count(), 5);
    let out = yipan(&dir, &["log", "--format", "table"], None);
    assert!(text(&out.stdout).contains("流入登记建档"));
    let all = text(&yipan(&dir, &["log"], None).stdout);
    for secret in ["41152219920315002X", "李秀英", "13912345678"] {
        assert!(!all.contains(secret), "personal value shown unmasked");
    }
    // What the operator was shown is in the disclosure log: masked, then revealed.
    let before =
        text(&yipan(&dir, &["disclosures", "--person", &person, "--format", "json"], None).stdout).lines().count();
    let revealed = text(&yipan(&dir, &["log", "--person", &person, "--reveal"], None).stdout);
    assert!(!revealed.contains("*** ("), "revealed in full: {revealed}");
    let after: Vec<serde_json::Value> =
        text(&yipan(&dir, &["disclosures", "--person", &person, "--format", "json"], None).stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    let cli: Vec<_> = after.iter().skip(before).filter(|e| e["channel"] == "cli").collect();
    assert!(!cli.is_empty() && cli.iter().all(|e| e["masked"] == false && e["role"] == "operator"), "{after:?}");
    // --limit counts events of the asked kind, not events read before filtering.
    let arrivals = text(&yipan(&dir, &["log", "--kind", "ServiceRendered", "--limit", "2"], None).stdout);
    let kinds: Vec<String> = arrivals
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].as_str().unwrap().to_string())
        .collect();
    let all_of_kind = all.lines().filter(|l| l.contains("\"kind\":\"ServiceRendered\"")).count();
    assert!(all_of_kind >= 2, "the scenario has several services");
    assert_eq!(kinds, vec!["ServiceRendered"; 2], "{arrivals}");
    // A listing piped into a reader that stops early ends quietly, without a panic.
    let mut child = Command::new(env!("CARGO_BIN_EXE_yipan"))
        .args(["--data-dir", dir.to_str().unwrap(), "log", "--format", "table"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader is gone before the first line
    let out = child.wait_with_output().unwrap();
    assert!(!text(&out.stderr).contains("panicked"), "{}", text(&out.stderr));
}

#[test]
fn bad_input_is_named_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("610112");
    init(&dir);
    let good = r#"{"kind":"StaffRosterUpdated","body":{"serviceWorkers":3}}"#;
    let arrival = |extra: &str| {
        format!(
            r#"{{"kind":"ArrivalRegistered","origin":"411522","residence":"610112","person":"00112233445566778899aabbccddeeff"{extra}}}"#
        )
    };
    let cases: Vec<(String, &str)> = vec![
        (format!("{good}\n{{\"kind\":"), "line 2: malformed JSON"),
        (format!("{good}\n{{\"kind\":\"Bogus\"}}"), "line 2: unknown event kind `Bogus`"),
        (arrival(r#","origin":"61011""#).replace(r#""origin":"411522","#, ""), "field `origin`: `61011` is not a 6-digit"),
        (arrival("").replace(r#""origin":"411522""#, r#""origin":"991234""#), "field `origin`: `991234` starts with `99`"),
        (arrival("").replace(r#""origin":"411522""#, r#""origin":"610199""#), "field `origin`: `610199` is no county-level division"),
        (
            arrival("").replace(r#""origin":"411522""#, r#""origin":"612426""#),
            "field `origin`: `612426` (岚皋县) was replaced: GB/T 2260 last lists it in 1999-12; the current code is `610925` (岚皋县)",
        ),
        (arrival("").replace(r#""origin":"411522""#, r#""origin":"622421""#), "field `origin`: `622421` (定西县) was withdrawn"),
        (arrival("").replace(r#""origin":"411522""#, r#""origin":"411522001""#), "field `origin`: `411522001` is the township"),
        (arrival(r#","recipients":["411522","612426"]"#), "field `recipients[1]`: `612426` (岚皋县) was replaced"),
        (
            arrival(r#","body":{"township":"610113004"}"#),
            "field `body.township`: `610113004` (电子城街道) is a township of `610113` (雁塔区), not of `610112` (未央区)",
        ),
        (arrival(r#","body":{"township":"610112999"}"#), "field `body.township`: `610112999` is no township-level division"),
        (arrival(r#","body":{"channel":7}"#), "field `body.channel`"),
        (arrival(r#","body":{"township":"610112"}"#), "field `body.township`: `610112` is a county code"),
        (arrival(r#","occurred_at":"last tuesday""#), "field `occurred_at`"),
        (arrival(r#","occurred_at":"0000-01-01T00:00:00Z""#), "field `occurred_at`: 0000-01-01T00:00:00Z is before 2000-01-01"),
        (arrival(r#","occurred_at":"1900-03-01T00:00:00Z""#), "field `occurred_at`: 1900-03-01T00:00:00Z is before 2000-01-01"),
        (arrival(r#","occurred_at":"9999-12-31T00:00:00Z""#), "field `occurred_at`: 9999-12-31T00:00:00Z is in the future"),
        (arrival(&format!(r#","id":"{}""#, "0".repeat(5000))), "field `id`"),
        (arrival(r#","recipients":["610112"]"#), "field `recipients[0]`: `610112` is the author itself"),
        (arrival(r#","health":{"pregnant":true}"#), "field `health`: a ArrivalRegistered event may not carry health data"),
        (arrival(r#","identity":{"idNumber":12345}"#), "field `identity.idNumber`: wrong type or value (value not shown)"),
        (arrival(r#","unknownField":1"#), "field `unknownField`: unknown field"),
        (r#"{"kind":"ServiceRendered","origin":"411522","residence":"610112","person":"00112233445566778899aabbccddeeff"}"#.into(), "field `body.service`: missing"),
        (r#"{"kind":"CertificateIssued","origin":"411522","residence":"610112","person":"00112233445566778899aabbccddeeff"}"#.into(), "field `author`: `610112` may not author this CertificateIssued event"),
        (r#"{"kind":"CaseAssistAnswered","origin":"411522","residence":"610112","person":"00112233445566778899aabbccddeeff","body":{"result":"VERIFICATION_RESULT_CONFIRMED"}}"#.into(), "field `causation`: missing"),
        (r#"{"kind":"ArrivalRegistered","origin":"411522","residence":"610112","person":"xyz"}"#.into(), "field `person`: is not a 32-hex-digit person key"),
        (format!("[{good}, 5]"), "event [1]: malformed JSON: an event must be a JSON object"),
        (String::new(), "no events in the input"),
    ];
    for (input, want) in &cases {
        let out = yipan(&dir, &["append"], Some(input));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "input {input}: {err}");
        assert!(err.contains(want), "input {input}\nwant: {want}\ngot:  {err}");
    }
    assert_eq!(event_count(&dir), 0, "no rejected batch wrote anything");
    // A long input value is never echoed whole.
    let out = yipan(&dir, &["append"], Some(&arrival(&format!(r#","id":"{}""#, "7".repeat(5000)))));
    assert!(text(&out.stderr).len() < 400, "{}", text(&out.stderr));
    // The ID number never appears in an error, even when malformed.
    let out = yipan(&dir, &["append"], Some(&arrival(r#","identity":{"idNumber":"4115221992031500"}"#)));
    assert!(text(&out.stderr).contains("identity.idNumber"));
    assert!(!text(&out.stderr).contains("4115221992031500"));
    // A bad check digit is a warning, not a rejection.
    let bad_digit = r#"{"kind":"ArrivalRegistered","origin":"411522","residence":"610112","identity":{"idNumber":"411522199203150021"}}"#;
    let out = yipan(&dir, &["append"], Some(bad_digit));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("warning: event: field `identity.idNumber`: check digit does not match"));
    assert!(!text(&out.stderr).contains("411522199203150021"));
}

#[test]
fn tampering_one_byte_fails_verify_naming_author_and_seq() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("610112");
    init(&dir);
    assert!(yipan(&dir, &["append", scenario().to_str().unwrap()], None).status.success());
    {
        // The test-only raw-write hook, on the same store files the CLI wrote.
        let key = yipan_log::keyfile::load(&dir).unwrap();
        let backend = yipan_log::SledBackend::open(&dir.join("log")).unwrap();
        let log = yipan_log::SledStore::open(backend, yipan_core::Locality::parse("610112").unwrap(), key).unwrap();
        let at = yipan_core::Locality::parse("610112").unwrap();
        log.raw_edit_event(at, 7, |b| {
            let b = b.as_mut().unwrap();
            let i = b.len() - 3;
            b[i] ^= 0x20;
        })
        .unwrap();
    }
    let out = yipan(&dir, &["verify"], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("610112#7:"), "{}", text(&out.stdout));
    let out = yipan(&dir, &["verify", "--format", "json"], None);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["faults"][0]["author"], "610112");
    assert_eq!(report["faults"][0]["seq"], 7);
}

#[test]
fn damaged_store_file_gives_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("610112");
    init(&dir);
    assert!(yipan(&dir, &["append", scenario().to_str().unwrap()], None).status.success());
    let db = dir.join("log").join("db");
    let len = std::fs::metadata(&db).unwrap().len() as usize;
    std::fs::write(&db, vec![0xffu8; len]).unwrap();
    let out = yipan(&dir, &["verify"], None);
    let err = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.starts_with("error: ") || out.status.code() == Some(1), "{err}");
}

#[test]
fn roster_add_and_show() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("610112");
    let b = tmp.path().join("411522");
    init(&a);
    assert!(yipan(&b, &["init", "--locality", "411522"], None).status.success());
    let out = yipan(&a, &["roster", "add", "--locality", "411522", "--from-data-dir", b.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = yipan(&a, &["roster", "show"], None);
    let shown = text(&out.stdout);
    assert!(shown.starts_with("no trust anchor: hand-added keys only"), "{shown}");
    assert_eq!(
        shown.lines().filter(|l| l.ends_with("bootstrap") || l.ends_with("bootstrap  (this node)")).count(),
        2,
        "{shown}"
    );
    assert!(text(&out.stderr).is_empty());
    let c = tmp.path().join("impostor");
    assert!(yipan(&c, &["init", "--locality", "411522"], None).status.success());
    let other = std::fs::read_to_string(c.join("keys/ed25519.pub")).unwrap();
    let out = yipan(&a, &["roster", "add", "--locality", "411522", "--public-key", &other], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("roster already holds a different key for 411522"));
    let out = yipan(&a, &["init", "--locality", "610112"], None);
    assert!(text(&out.stderr).contains("already initialised"));
    let out = yipan(&tmp.path().join("nowhere"), &["log"], None);
    assert!(text(&out.stderr).contains("is not a Yipan data directory"));
}

/// Waits until a running node is connected to NATS and has published every own event.
fn outbox_drained(api: &yipan_testkit::http::Client) {
    let start = std::time::Instant::now();
    let anonymous = api.with_token(None);
    loop {
        let (_, health) = anonymous.request("GET", "/healthz", None).unwrap();
        if health.contains("\"outbox_pending\":0") && health.contains("\"nats_connected\":true") {
            return;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(20), "{health}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Runs `yipan` and returns its stdout, failing the test on a non-zero exit.
fn yipan_ok(dir: &Path, args: &[&str]) -> String {
    let out = yipan(dir, args, None);
    assert!(out.status.success(), "yipan {args:?}: {}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// The operator's path, with the CLI alone: throw-away TLS, NATS users, the
/// shipped nats-server config, streams made by the admin, a node.toml with
/// TLS and its NKey, tokens per role.
#[test]
fn node_run_serves_replicates_and_stops_cleanly_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("610112");
    let nats = operator_nats(tmp.path(), "610112,411522");
    let secrets = tmp.path().join("secrets");
    let ca = secrets.join("tls/ca.pem");
    let ca_arg = ca.to_str().unwrap();
    let nkey = |user: &str| secrets.join(format!("nkeys/{user}.nk")).display().to_string();
    init(&dir);
    operator_certify(tmp.path(), "610112", &nats.url());
    let config = secured_config(tmp.path(), "610112", 0, &nats.url());
    // The node counts working days with a holiday calendar: a long closure (every day from
    // 2026-10-09 to the end of the year) moves every due date counted in working days.
    let calendar = tmp.path().join("holidays.json");
    let closed: Vec<String> = (0..84)
        .map(|d| (chrono::NaiveDate::from_ymd_opt(2026, 10, 9).unwrap() + chrono::Days::new(d)).to_string())
        .collect();
    std::fs::write(&calendar, serde_json::json!({ "holidays": closed, "workdays": [] }).to_string()).unwrap();
    let toml = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("calendar = {:?}\n{toml}", calendar.display().to_string())).unwrap();
    let token = |role: &str| {
        yipan_ok(&dir, &["token", "create", "--role", role, "--name", &format!("test {role}")]).trim().to_string()
    };
    let (clerk, auditor, health, statistics, monitor) =
        (token("clerk"), token("auditor"), token("health"), token("statistics"), token("monitor"));
    let listed = yipan_ok(&dir, &["token", "list"]);
    assert_eq!(listed.lines().count(), 5, "{listed}");
    assert!(!listed.contains(&clerk[15..]), "token list never shows a token");
    let (mut child, addr) = run_node(&config);
    let tls_client = yipan_access::tls::client_config(&ca, None).unwrap();
    let api = |token: &str| yipan_testkit::http::Client::new(addr, Some(tls_client.clone()), Some(token.to_string()));

    let events = std::fs::read_to_string(scenario()).unwrap();
    let batch = format!("[{}]", events.lines().filter(|l| !l.trim().is_empty()).collect::<Vec<_>>().join(","));
    let (status, reply) = api(&clerk).request("POST", "/v1/events", Some(&batch)).unwrap();
    assert_eq!(status, 200, "{reply}");
    // Wait until the outbox has published everything (20 of the 21 events have a recipient).
    outbox_drained(&api(&clerk));
    let (_, metrics) = api(&monitor).request("GET", "/metrics", None).unwrap();
    assert!(metrics.contains("yipan_events_published_total 20"), "{metrics}");

    // Audits while the node runs: through its API, and from the JetStream streams alone;
    // both rebuild the projection digests and compare them with what the node reports.
    let url = format!("https://{addr}");
    let out = yipan(
        &dir,
        &[
            "--token",
            &auditor,
            "--ca-cert",
            ca_arg,
            "--calendar",
            calendar.to_str().unwrap(),
            "audit",
            "--api",
            &url,
            "--compare",
            &url,
            "--format",
            "json",
        ],
        None,
    );
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    // Without the nodes' calendar the audit's digests differ, and it says so.
    let blind = yipan(
        &dir,
        &["--token", &auditor, "--ca-cert", ca_arg, "audit", "--api", &url, "--compare", &url, "--format", "json"],
        None,
    );
    assert_eq!(blind.status.code(), Some(1), "{}{}", text(&blind.stdout), text(&blind.stderr));
    let blind: serde_json::Value = serde_json::from_slice(&blind.stdout).unwrap();
    assert!(blind["comparisons"].as_object().unwrap().values().any(|v| v != "match"), "{blind}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["events"], 21);
    assert!(!report["comparisons"].as_object().unwrap().is_empty());
    assert!(report["comparisons"].as_object().unwrap().values().all(|v| v == "match"), "{report}");
    let (_, roster) = api(&auditor).request("GET", "/v1/roster", None).unwrap();
    let roster: serde_json::Value = serde_json::from_str(&roster).unwrap();
    assert_eq!(roster["anchor"], anchor(tmp.path()));
    let me = roster["localities"].as_array().unwrap().iter().find(|l| l["locality"] == "610112").unwrap();
    assert_eq!(me["status"], "active", "{me}");
    let out = yipan(
        &dir,
        &[
            "--token",
            &auditor,
            "--ca-cert",
            ca_arg,
            "--calendar",
            calendar.to_str().unwrap(),
            "audit",
            "--nats",
            &nats.url(),
            "--nkey",
            &nkey("auditor"),
            "--anchor",
            &anchor(tmp.path()),
            "--compare",
            &url,
            "--format",
            "json",
        ],
        None,
    );
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["events"], 20, "the stream holds every event that has a recipient");
    assert!(report["comparisons"].as_object().unwrap().values().all(|v| v == "match"), "{report}");

    // Downstream: the health role's stream carries identity and reproductive health, never contact.
    let out = yipan(&dir, &["--token", &health, "--ca-cert", ca_arg, "tail", "--api", &url, "--count", "21"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let events: Vec<serde_json::Value> = text(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events.len(), 21);
    let first = &events[0];
    assert_eq!(first["kind"], "ArrivalRegistered");
    assert!(first.get("identity").is_some() && first.get("contact").is_none());
    assert_eq!(first["tiers_withheld"], serde_json::json!(["contact"]));
    assert!(!text(&out.stdout).contains("13912345678"));
    // …and the filtered protobuf still verifies against the author's key.
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(first["signed_b64"].as_str().unwrap()).unwrap();
    let ev = yipan_log::StoredEvent::decode(&bytes).unwrap();
    let key =
        yipan_log::keyfile::parse_public(&std::fs::read_to_string(dir.join("keys/ed25519.pub")).unwrap()).unwrap();
    ev.verify_signature(&key).unwrap();
    ev.verify_tiers(false).unwrap();
    assert_eq!(ev.signed.tiers.len(), 1);
    // Statistics gets no personal tier at all; resuming from a position skips what was seen; live events follow.
    let live = Command::new(env!("CARGO_BIN_EXE_yipan"))
        .args([
            "--token",
            &statistics,
            "--ca-cert",
            ca_arg,
            "tail",
            "--api",
            &url,
            "--from",
            "610112:21",
            "--count",
            "1",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let one = r#"{"kind":"ServiceRendered","origin":"411522","residence":"610112","person_id_number":"41152219920315002X","body":{"service":"SERVICE_KIND_CARE_VISIT"},"health":{"notes":"home visit"}}"#;
    let (status, reply) = api(&clerk).request("POST", "/v1/events", Some(one)).unwrap();
    assert_eq!(status, 200, "{reply}");
    let out = live.wait_with_output().unwrap();
    let got: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!((got["kind"].as_str(), got["seq"].as_u64()), (Some("ServiceRendered"), Some(22)));
    assert!(got.get("health").is_none(), "statistics role received a health tier: {got}");
    outbox_drained(&api(&clerk));

    let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "node exited with {status}");

    // Everything is on disk, the chain verifies, and the outbox cursor was persisted.
    assert_eq!(event_count(&dir), 22);
    assert!(yipan(&dir, &["verify"], None).status.success());
    let opened = yipan_node::datadir::open(&dir).unwrap();
    assert_eq!(opened.log.meta_get("outbox.cursor").unwrap(), Some(22u64.to_be_bytes().to_vec()));
    drop(opened);
    // Offline audit of the data directory; then a tampered event is named.
    let out = yipan(&dir, &["audit"], None);
    assert!(out.status.success(), "{}", text(&out.stdout));
    // It audits against the anchor it recorded; another root is refused.
    let audit = yipan(&dir, &["audit", "--anchor", &anchor(tmp.path()), "--format", "json"], None);
    assert!(audit.status.success(), "{}{}", text(&audit.stdout), text(&audit.stderr));
    let other_root = "5866666666666666666666666666666666666666666666666666666666666666";
    let audit = yipan(&dir, &["audit", "--anchor", other_root], None);
    assert!(!audit.status.success() && text(&audit.stderr).contains("trusts another root"), "{}", text(&audit.stderr));
    let shown = yipan_ok(&dir, &["roster", "show"]);
    assert!(shown.contains("610112 县") && shown.contains("active  (this node)"), "{shown}");
    assert!(shown.contains("chain: locality 610112 serial"), "{shown}");
    {
        let key = yipan_log::keyfile::load(&dir).unwrap();
        let log = yipan_log::SledStore::open(
            yipan_log::SledBackend::open(&dir.join("log")).unwrap(),
            yipan_core::Locality::parse("610112").unwrap(),
            key,
        )
        .unwrap();
        log.raw_edit_event(yipan_core::Locality::parse("610112").unwrap(), 9, |b| {
            let b = b.as_mut().unwrap();
            let i = b.len() / 2;
            b[i] ^= 0x04;
        })
        .unwrap();
    }
    let out = yipan(&dir, &["audit"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("610112#9:"), "{}", text(&out.stdout));
}

/// An instant a minute from now, China time: views as of it know everything appended so far.
fn after_now() -> String {
    (chrono::Utc::now() + chrono::Duration::minutes(1))
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .to_rfc3339()
}

#[test]
fn views_from_the_scenario() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("610112");
    init(&dir);
    assert!(yipan(&dir, &["append", scenario().to_str().unwrap()], None).status.success());
    // Views as of after the appends (what is recorded later is not known yet at an earlier instant).
    let as_of = &after_now();
    let out = yipan(&dir, &["scorecard", "--period", "2026-10", "--as-of", as_of, "--format", "json"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let card: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ind = |id: &str| card["indicators"].as_array().unwrap().iter().find(|i| i["id"] == id).unwrap().clone();
    // Three arrivals in October (two from 411522, one from 411503); only the first was informed.
    assert_eq!(
        (ind("policy_awareness")["numerator"].as_u64(), ind("policy_awareness")["denominator"].as_u64()),
        (Some(1), Some(3))
    );
    assert_eq!(ind("staffing")["denominator"], 14);
    let out = yipan(&dir, &["cases", "--overdue", "--as-of", as_of, "--format", "json"], None);
    let cases: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let overdue: Vec<&str> = cases.as_array().unwrap().iter().filter_map(|c| c["kind"].as_str()).collect();
    for kind in ["case_assist", "first_child", "notification"] {
        assert!(
            overdue.contains(&kind),
            "urgent case-assist, first-child request and notification are overdue: {overdue:?}"
        );
    }
    let out = yipan(&dir, &["log", "--kind", "CaseAssistRequested"], None);
    let person = serde_json::from_str::<serde_json::Value>(text(&out.stdout).trim()).unwrap()["person"]
        .as_str()
        .unwrap()
        .to_string();
    let out = yipan(&dir, &["card", &person, "--as-of", as_of], None);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("查验婚育证明"));
    // The certificate check was due 2026-11-18 (12 days overdue on 30 November).
    let days = (chrono::Utc::now().with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap()).date_naive()
        - chrono::NaiveDate::from_ymd_opt(2026, 11, 18).unwrap())
    .num_days();
    assert!(text(&out.stdout).contains(&format!("OVERDUE {days} d")), "{}", text(&out.stdout));
    let out = yipan(&dir, &["flows", "--as-of", as_of, "--format", "json"], None);
    let flows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(flows["rows"].as_array().unwrap().len(), 2);
    // Export filters; replay before anything was recorded shows nothing known yet.
    let out = yipan(&dir, &["export", "--kind", "ServiceRendered", "--period", "2026-10"], None);
    assert_eq!(text(&out.stdout).lines().count(), 3);
    assert!(!text(&out.stdout).contains("41152219920315002X"));
    let out = yipan(&dir, &["export", "--kind", "ArrivalRegistered", "--kind", "ComplaintFiled"], None);
    assert_eq!(text(&out.stdout).lines().count(), 4);
    let out = yipan(
        &dir,
        &[
            "replay",
            "--as-of",
            "2020-01-01T00:00:00Z",
            "--view",
            "scorecard",
            "--period",
            "2026-10",
            "--format",
            "json",
        ],
        None,
    );
    let past: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(past["indicators"].as_array().unwrap().iter().all(|i| i["denominator"] == 0 || i["id"] == "staffing"));
    let out = yipan(&dir, &["replay", "--as-of", as_of, "--view", "card"], None);
    assert!(text(&out.stderr).contains("--view card needs --person"));
    let out = yipan(&dir, &["scorecard", "--pair", "610112"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("pair: `610112` is not two codes"), "{}", text(&out.stderr));
}

#[test]
fn a_published_catalogue_file_changes_later_deadlines() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("610112");
    init(&dir);
    let out = yipan(&dir, &["catalogue", "default"], None);
    let mut cat: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    cat["version"] = "610112-2026.2".into();
    for item in cat["items"].as_array_mut().unwrap() {
        if item["id"] == "residence.informed" {
            item["due"]["days"] = 10.into();
        }
    }
    let file = tmp.path().join("catalogue.json");
    std::fs::write(&file, serde_json::to_string_pretty(&cat).unwrap()).unwrap();
    let out =
        yipan(&dir, &["catalogue", "publish", file.to_str().unwrap(), "--from", "2026-10-01T00:00:00+08:00"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(yipan(&dir, &["append", scenario().to_str().unwrap()], None).status.success());
    let out = yipan(&dir, &["log", "--kind", "CaseAssistRequested"], None);
    let person = serde_json::from_str::<serde_json::Value>(text(&out.stdout).trim()).unwrap()["person"]
        .as_str()
        .unwrap()
        .to_string();
    let out = yipan(&dir, &["card", &person, "--as-of", &after_now(), "--format", "json"], None);
    let cards: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cards[0]["catalogue_residence"], "610112-2026.2");
    let informed = cards[0]["items"].as_array().unwrap().iter().find(|i| i["id"] == "residence.informed").unwrap();
    assert_eq!(informed["due"], "2026-10-22", "arrival 12 Oct + 10 days under the published catalogue");
    // A bad catalogue is refused with the item and kind named.
    std::fs::write(&file, serde_json::to_string(&cat).unwrap().replace("CertificateVerified", "Nope")).unwrap();
    let out = yipan(&dir, &["catalogue", "publish", file.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown event kind `Nope`"));
}

/// The main job runs secured and, even at `trace` level, no secret it made
/// (NKey seeds, TLS private keys, signing keys, the person-key secret, API
/// tokens) appears in anything it printed or logged.
#[test]
fn the_main_job_runs_secured_and_logs_no_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let keep = tmp.path().join("demo");
    let out = Command::new(env!("CARGO_BIN_EXE_yipan"))
        .args(["demo", "--keep"])
        .arg(&keep)
        .env("YIPAN_LOG", "trace")
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}{}", &stderr[stderr.len().saturating_sub(3000)..]);
    assert!(stdout.contains("a request without a token is refused: HTTP 401"), "{stdout}");
    assert!(stdout.contains("tls://"), "{stdout}");
    assert!(stderr.lines().count() > 100, "trace logging was on");
    let mut secrets: Vec<(String, String)> = Vec::new();
    let mut add = |what: String, value: &str| {
        let v = value.trim();
        if v.len() >= 16 {
            secrets.push((what, v.to_string()));
        }
    };
    for entry in std::fs::read_dir(keep.join("secrets/nkeys")).unwrap() {
        let p = entry.unwrap().path();
        add(p.display().to_string(), &std::fs::read_to_string(&p).unwrap());
    }
    for entry in std::fs::read_dir(keep.join("secrets/tls")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "key") {
            for line in std::fs::read_to_string(&p).unwrap().lines().filter(|l| !l.starts_with("-----")) {
                add(p.display().to_string(), line);
            }
        }
    }
    for code in ["610112", "610113", "411522"] {
        let dir = keep.join(code);
        add(format!("{code} signing key"), &std::fs::read_to_string(dir.join("keys/ed25519.secret")).unwrap());
        let token = std::fs::read_to_string(dir.join("clerk.token")).unwrap();
        add(format!("{code} token"), &token);
        add(format!("{code} token secret"), token.rsplit('_').next().unwrap());
        let config = std::fs::read_to_string(dir.join("yipan.toml")).unwrap();
        let secret = config.lines().find_map(|l| l.strip_prefix("person_key_secret = ")).unwrap().trim_matches('"');
        add(format!("{code} person-key secret"), secret);
    }
    assert!(secrets.len() >= 3 * 4 + 5, "{} secrets collected", secrets.len());
    for (what, value) in &secrets {
        assert!(!stdout.contains(value.as_str()), "{what} printed on stdout");
        assert!(!stderr.contains(value.as_str()), "{what} logged");
    }
}

/// The HTTP benchmark runs (a small size; its figures come from the long run in docs/benchmarks.md).
#[test]
fn the_http_benchmark_runs_and_prints_its_ratio() {
    let tmp = tempfile::tempdir().unwrap();
    let out = yipan(
        tmp.path(),
        &["bench", "http", "--events", "100", "--clients", "2", "--rounds", "1", "--format", "json"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["tls_token_per_s"].as_f64().unwrap() > 0.0 && report["plain_per_s"].as_f64().unwrap() > 0.0);
    assert!(report["ratio"].as_f64().unwrap() > 0.0, "{report}");
}

/// SIGTERM stops a node in a bounded time in the worst state: NATS
/// unreachable (outbox retrying, inbox reconnecting) and an SSE client
/// connected; everything acknowledged is on disk and verifies.
#[test]
fn sigterm_stops_a_node_with_nats_down_and_a_stream_client_connected() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("610112");
    operator_secrets(tmp.path(), "610112");
    let tls = tmp.path().join("secrets/tls");
    init(&dir);
    // Nothing listens on the NATS port.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nats_url = format!("tls://{}", dead.local_addr().unwrap());
    drop(dead);
    let config = secured_config(tmp.path(), "610112", 0, &nats_url);
    let clerk = yipan_ok(&dir, &["token", "create", "--role", "clerk", "--name", "t"]).trim().to_string();
    let statistics = yipan_ok(&dir, &["token", "create", "--role", "statistics", "--name", "s"]).trim().to_string();
    let (mut child, addr) = run_node(&config);
    let tls_client = yipan_access::tls::client_config(&tls.join("ca.pem"), None).unwrap();
    let api = yipan_testkit::http::Client::new(addr, Some(tls_client), Some(clerk));
    let events = std::fs::read_to_string(scenario()).unwrap();
    let batch = format!("[{}]", events.lines().filter(|l| !l.trim().is_empty()).collect::<Vec<_>>().join(","));
    let (status, reply) = api.request("POST", "/v1/events", Some(&batch)).unwrap();
    assert_eq!(status, 200, "{reply}");
    // An SSE client stays connected.
    let sse = api.with_token(Some(&statistics));
    let mut stream = sse.connect().unwrap();
    write!(stream, "GET /v1/stream HTTP/1.1\r\nHost: x\r\n{}Accept: text/event-stream\r\n\r\n", sse.auth_header())
        .unwrap();
    let mut buf = [0u8; 512];
    assert!(stream.read(&mut buf).unwrap() > 0);
    std::thread::sleep(std::time::Duration::from_millis(500));

    let asked = std::time::Instant::now();
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if asked.elapsed() > std::time::Duration::from_secs(20) {
            let _ = child.kill();
            panic!("the node ignored SIGTERM for 20 s with NATS down");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "node exited with {status}");
    drop(stream);
    assert_eq!(event_count(&dir), 21);
    assert!(yipan(&dir, &["verify"], None).status.success());
}

/// The operator's preparation with the CLI alone: `yipan tls dev` and `yipan
/// nats users` for `localities`, under `tmp/secrets`.
fn operator_secrets(tmp: &Path, localities: &str) {
    let secrets = tmp.join("secrets");
    yipan_ok(tmp, &["tls", "dev", "--out", secrets.join("tls").to_str().unwrap()]);
    yipan_ok(tmp, &["nats", "users", "--localities", localities, "--out", secrets.to_str().unwrap()]);
    // The trust hierarchy: a root and the authority of each province.
    let authority = secrets.join("authority");
    let anchor = yipan_ok(tmp, &["authority", "--dir", authority.to_str().unwrap(), "init-root"]);
    assert!(anchor.contains(&std::fs::read_to_string(authority.join("root.pub")).unwrap()), "{anchor}");
    let mut provinces: Vec<&str> = localities.split(',').map(|l| &l[..2]).collect();
    provinces.dedup();
    for p in provinces {
        yipan_ok(tmp, &["authority", "--dir", authority.to_str().unwrap(), "certify-province", "--province", p]);
    }
}

/// The province authority certifies `code`'s key (from its data directory) and
/// the root and that authority publish what they issued to the trust stream.
fn operator_certify(tmp: &Path, code: &str, nats_url: &str) {
    let secrets = tmp.join("secrets");
    let (authority, ca) = (secrets.join("authority"), secrets.join("tls/ca.pem"));
    let out = yipan_ok(
        tmp,
        &[
            "authority",
            "--dir",
            authority.to_str().unwrap(),
            "certify-locality",
            "--locality",
            code,
            "--name",
            "县",
            "--node-data-dir",
            tmp.join(code).to_str().unwrap(),
        ],
    );
    assert!(out.starts_with(&format!("certified {code} serial ")), "{out}");
    for p in ["0", &code[..2]] {
        let nkey = secrets.join(format!("nkeys/authority-{:02}.nk", p.parse::<u8>().unwrap()));
        yipan_ok(
            tmp,
            &[
                "--ca-cert",
                ca.to_str().unwrap(),
                "authority",
                "--dir",
                authority.to_str().unwrap(),
                "publish",
                "--province",
                p,
                "--nats",
                nats_url,
                "--nkey",
                nkey.to_str().unwrap(),
            ],
        );
    }
}

/// The deployment's trust anchor (hex).
fn anchor(tmp: &Path) -> String {
    std::fs::read_to_string(tmp.join("secrets/authority/root.pub")).unwrap().trim().to_string()
}

/// [`operator_secrets`], then the shipped nats-server config with those users
/// and TLS, and the streams made by the admin with `yipan nats provision`.
fn operator_nats(tmp: &Path, localities: &str) -> yipan_testkit::NatsServer {
    operator_nats_traced(tmp, localities, None)
}

/// [`operator_nats`], with the server's protocol trace in `trace` if given.
fn operator_nats_traced(tmp: &Path, localities: &str, trace: Option<&Path>) -> yipan_testkit::NatsServer {
    operator_secrets(tmp, localities);
    let secrets = tmp.join("secrets");
    let secure = yipan_testkit::Secure {
        cert: secrets.join("tls/nats.pem"),
        key: secrets.join("tls/nats.key"),
        authorization: std::fs::read_to_string(secrets.join("auth.conf")).unwrap(),
    };
    let nats = match trace {
        Some(log) => yipan_testkit::NatsServer::start_secure_traced(secure, log),
        None => yipan_testkit::NatsServer::start_secure(secure),
    }
    .expect("nats-server");
    let (ca, admin) = (secrets.join("tls/ca.pem"), secrets.join("nkeys/admin.nk"));
    let url = nats.url();
    yipan_ok(
        tmp,
        &[
            "--ca-cert",
            ca.to_str().unwrap(),
            "nats",
            "provision",
            "--nats",
            &url,
            "--nkey",
            admin.to_str().unwrap(),
            "--localities",
            localities,
        ],
    );
    nats
}

/// Writes a secured node.toml for `code` listening on `port`.
fn secured_config(tmp: &Path, code: &str, port: u16, nats_url: &str) -> PathBuf {
    let (secrets, tls) = (tmp.join("secrets"), tmp.join("secrets/tls"));
    let config = tmp.join(format!("{code}.toml"));
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nlisten = \"127.0.0.1:{port}\"\n[http.tls]\ncert = {:?}\nkey = {:?}\n[trust]\nanchor = {:?}\n[sync]\nnats_url = {:?}\nnats_nkey_file = {:?}\nnats_ca_file = {:?}\nhead_interval_ms = 300\nhead_refresh_ms = 1500\nrepair_grace_ms = 300\ntrust_poll_ms = 300\n",
            tmp.join(code).display().to_string(),
            tls.join("node.pem").display().to_string(),
            tls.join("node.key").display().to_string(),
            anchor(tmp),
            nats_url,
            secrets.join(format!("nkeys/locality-{code}.nk")).display().to_string(),
            tls.join("ca.pem").display().to_string(),
        ),
    )
    .unwrap();
    config
}

fn spawn_node(config: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_yipan"))
        .args(["node", "run", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Crash loop: `kill -9` of a node ten times under a steady append load over
/// HTTPS. Every acknowledged event is in its log exactly once (clients retry
/// with their own event ids, so a retry after a lost answer is idempotent),
/// the store verifies, and the counterpart converges.
#[test]
fn kill_9_in_a_loop_under_load_loses_nothing_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("610112");
    let b = tmp.path().join("411522");
    let nats = operator_nats(tmp.path(), "610112,411522");
    let ca = tmp.path().join("secrets/tls/ca.pem");
    for (dir, code) in [(&a, "610112"), (&b, "411522")] {
        let out = yipan(dir, &["init", "--locality", code, "--person-key-secret", SECRET], None);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    for code in ["610112", "411522"] {
        operator_certify(tmp.path(), code, &nats.url());
    }
    let free = |_: u8| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (port_a, port_b) = (free(0), free(1));
    let config_a = secured_config(tmp.path(), "610112", port_a, &nats.url());
    let config_b = secured_config(tmp.path(), "411522", port_b, &nats.url());
    let clerk = yipan_ok(&a, &["token", "create", "--role", "clerk", "--name", "load"]).trim().to_string();
    let mut counterpart = spawn_node(&config_b);

    let addr: std::net::SocketAddr = format!("127.0.0.1:{port_a}").parse().unwrap();
    let api =
        yipan_testkit::http::Client::new(addr, Some(yipan_access::tls::client_config(&ca, None).unwrap()), Some(clerk));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (api, stop) = (api.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut acked: Vec<String> = Vec::new();
            let mut unexpected: Vec<String> = Vec::new();
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let id = uuid::Uuid::now_v7().to_string();
                let ev = format!(
                    r#"{{"id":"{id}","kind":"ServiceRendered","origin":"411522","residence":"610112","person":"{n:032x}","body":{{"service":"SERVICE_KIND_PERSON_INFORMED"}}}}"#
                );
                // Retry the same event (same id) until it is acknowledged.
                loop {
                    match api.request("POST", "/v1/events", Some(&ev)) {
                        Ok((200, _)) => {
                            acked.push(id.clone());
                            break;
                        }
                        Ok((status, body)) if status != 503 => {
                            unexpected.push(format!("HTTP {status}: {body}"));
                            if unexpected.len() > 20 {
                                return (acked, unexpected);
                            }
                        }
                        _ => {
                            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                                return (acked, unexpected);
                            }
                            std::thread::sleep(std::time::Duration::from_millis(20));
                        }
                    }
                }
            }
            (acked, unexpected)
        })
    };
    for _ in 0..10 {
        let mut node = spawn_node(&config_a);
        std::thread::sleep(std::time::Duration::from_millis(700));
        node.kill().unwrap(); // SIGKILL
        node.wait().unwrap();
    }
    let mut node = spawn_node(&config_a);
    std::thread::sleep(std::time::Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acked, unexpected) = load.join().unwrap();
    assert!(unexpected.is_empty(), "answers other than 200 and 503 through the kills: {unexpected:?}");
    assert!(acked.len() > 20, "the load made progress through the kills: {}", acked.len());

    // The counterpart converges on everything 610112 holds.
    let start = std::time::Instant::now();
    let status = |port: u16, token: &str| -> serde_json::Value {
        let c = yipan_testkit::http::Client::new(
            format!("127.0.0.1:{port}").parse().unwrap(),
            Some(yipan_access::tls::client_config(&ca, None).unwrap()),
            Some(token.to_string()),
        );
        // The restarted node may still be starting on a loaded machine.
        let begun = std::time::Instant::now();
        loop {
            match c.request("GET", "/v1/status", None) {
                Ok((200, body)) => return serde_json::from_str(&body).unwrap(),
                other if begun.elapsed() > std::time::Duration::from_secs(30) => panic!("status of :{port}: {other:?}"),
                _ => std::thread::sleep(std::time::Duration::from_millis(100)),
            }
        }
    };
    let sup_a = yipan_ok(&a, &["token", "create", "--role", "supervisor", "--name", "s"]).trim().to_string();
    let sup_b = yipan_ok(&b, &["token", "create", "--role", "supervisor", "--name", "s"]).trim().to_string();
    loop {
        let sent = status(port_a, &sup_a)["outbound_channels"][0]["head"].as_u64().unwrap_or(0);
        let got = status(port_b, &sup_b)["inbound_channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["author"] == "610112")
            .and_then(|c| c["head"].as_u64())
            .unwrap_or(0);
        if sent > 0 && sent == got {
            break;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(60), "counterpart at {got} of {sent}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    for child in [&mut node, &mut counterpart] {
        assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
        assert!(child.wait().unwrap().success());
    }
    // Every acknowledged event exactly once; the store verifies.
    let out = yipan_ok(&a, &["log", "--author", "610112", "--limit", "1000000"]);
    let ids: Vec<String> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_string())
        .collect();
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "an event stored twice");
    for id in &acked {
        assert!(unique.contains(id), "acknowledged event {id} lost");
    }
    assert!(yipan(&a, &["verify"], None).status.success());
    assert!(yipan(&b, &["verify"], None).status.success());
    eprintln!("crash loop: 10 kill -9, {} events acknowledged, {} stored, 0 lost, 0 doubled", acked.len(), ids.len());
}

/// Starts `yipan node run` and reads the address it prints.
fn run_node(config: &Path) -> (std::process::Child, std::net::SocketAddr) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_yipan"))
        .args(["node", "run", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let addr = first.trim().rsplit("https://").next().unwrap().parse().expect(&first);
    (child, addr)
}

/// The leak scan (PIPL; engineering rule "no ID number or name in subjects,
/// logs, metrics or errors"): three nodes run the main job's scenario with
/// its names, ID numbers and phone numbers at `trace` log level over a NATS
/// server tracing its protocol; then every NATS subject and header, every log
/// line, `/metrics`, `/v1/status`, every error answer, the views of roles
/// without personal tiers and every stored byte outside tier payloads
/// (envelopes, quarantine, metadata, files beside the store) are searched
/// for those values. Any hit fails.
#[test]
fn no_personal_value_leaks_into_subjects_logs_metrics_errors_views_or_files() {
    use std::io::Read;
    let tmp = tempfile::tempdir().unwrap();
    let codes = ["610112", "610113", "411522"];
    let nats_trace = tmp.path().join("nats-trace.log");
    let nats = operator_nats_traced(tmp.path(), &codes.join(","), Some(&nats_trace));
    let ca = tmp.path().join("secrets/tls/ca.pem");
    let tls = yipan_access::tls::client_config(&ca, None).unwrap();
    let mut nodes = Vec::new();
    for code in codes {
        let dir = tmp.path().join(code);
        yipan_ok(&dir, &["init", "--locality", code, "--person-key-secret", SECRET]);
        operator_certify(tmp.path(), code, &nats.url());
        let config = secured_config(tmp.path(), code, 0, &nats.url());
        let log = std::fs::File::create(tmp.path().join(format!("{code}.log"))).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_yipan"))
            .args(["node", "run", "--config"])
            .arg(&config)
            .env("YIPAN_LOG", "trace")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut first = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut first).unwrap();
        let addr: std::net::SocketAddr = first.trim().rsplit("https://").next().unwrap().parse().expect(&first);
        let token =
            |role: &str| yipan_ok(&dir, &["token", "create", "--role", role, "--name", role]).trim().to_string();
        let client = |role: &str| yipan_testkit::http::Client::new(addr, Some(tls.clone()), Some(token(role)));
        nodes.push((code, child, client("clerk"), client("supervisor"), client("monitor"), client("auditor")));
    }

    // The scenario, through each node's API; its personal values are what must not leak.
    let scenario =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/scenarios/xian-henan.jsonl"))
            .unwrap();
    let mut values: std::collections::BTreeSet<String> = Default::default();
    for line in scenario.lines().filter(|l| !l.trim().is_empty()) {
        let step: serde_json::Value = serde_json::from_str(line).unwrap();
        let ev = &step["event"];
        for v in
            [&ev["identity"]["name"], &ev["identity"]["idNumber"], &ev["person_id_number"], &ev["contact"]["phone"]]
        {
            if let Some(s) = v.as_str() {
                values.insert(s.to_string());
            }
        }
        let (_, clerk, ..) = nodes.iter().find(|n| n.0 == step["at"]).map(|n| (n.0, &n.2)).unwrap();
        let (status, reply) = clerk.request("POST", "/v1/events", Some(&ev.to_string())).unwrap();
        assert_eq!(status, 200, "{reply}");
    }
    assert!(values.len() >= 5, "{values:?}");
    assert!(values.iter().any(|v| !v.is_ascii()), "names are among them: {values:?}");

    // Bad input carrying personal values: the errors name the field, never echo the value.
    let mut answers = String::new();
    let (clerk, supervisor, monitor, auditor) = (&nodes[0].2, &nodes[0].3, &nodes[0].4, &nodes[0].5);
    let id = values.iter().find(|v| v.len() == 18).unwrap().clone();
    let name = values.iter().find(|v| !v.is_ascii()).unwrap().clone();
    for bad in [
        serde_json::json!({"kind": "ArrivalRegistered", "origin": "411522", "residence": "610112", "identity": {"name": name, "idNumber": format!("{id}9")}, "body": {}}),
        serde_json::json!({"kind": "ArrivalRegistered", "origin": "411522", "residence": "610112", "person_id_number": name, "body": {}}),
        serde_json::json!({"kind": "ArrivalRegistered", "origin": id, "residence": "610112", "person_id_number": id, "body": {}}),
        serde_json::json!({"kind": "NoSuchKind", "identity": {"name": name}, "person_id_number": id}),
    ] {
        let (status, body) = clerk.request("POST", "/v1/events", Some(&bad.to_string())).unwrap();
        assert_eq!(status, 400, "{body}");
        answers.push_str(&body);
    }
    // Wait until every channel has converged.
    let start = std::time::Instant::now();
    loop {
        let mut behind = 0u64;
        for (_, _, _, _, monitor, _) in &nodes {
            let (_, status) = monitor.request("GET", "/v1/status", None).unwrap();
            let v: serde_json::Value = serde_json::from_str(&status).unwrap();
            behind += v["outbox_pending"].as_u64().unwrap_or(1);
        }
        let held: Vec<u64> = nodes
            .iter()
            .map(|n| {
                let (_, s) = n.4.request("GET", "/v1/status", None).unwrap();
                serde_json::from_str::<serde_json::Value>(&s).unwrap()["events_held"].as_u64().unwrap_or(0)
            })
            .collect();
        if behind == 0 && held[0] > 0 && held[2] > 0 && start.elapsed() > std::time::Duration::from_secs(2) {
            break;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "not converged: {held:?}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // What operators and roles without personal tiers see.
    for (_, _, clerk, supervisor_n, monitor_n, auditor_n) in &nodes {
        for (c, path) in [
            (monitor_n, "/metrics"),
            (monitor_n, "/v1/status"),
            (monitor_n, "/v1/quarantine"),
            (clerk, "/v1/events?limit=1000"),
            (clerk, "/v1/cases"),
            (clerk, "/v1/flows"),
            (supervisor_n, "/v1/events?limit=1000&reveal=true"),
            (supervisor_n, "/v1/scorecard"),
            (auditor_n, "/v1/raw?limit=1000"),
            (auditor_n, "/v1/roster"),
            (auditor_n, "/healthz"),
        ] {
            let (status, body) = c.request("GET", path, None).unwrap();
            assert!(status == 200, "{path}: {status} {body}");
            answers.push_str(&format!("\n== {path}\n{body}"));
        }
    }
    // The console's endpoints: the person key from an ID number (in the body),
    // and the exports of every table, which never carry a personal tier.
    for (code, _, clerk, supervisor_n, ..) in &nodes {
        let (status, body) =
            clerk.request("POST", "/v1/person-key", Some(&serde_json::json!({ "id_number": id }).to_string())).unwrap();
        assert_eq!(status, 200, "{body}");
        answers.push_str(&format!("\n== {code} person-key\n{body}"));
        let person = serde_json::from_str::<serde_json::Value>(&body).unwrap()["person"].as_str().unwrap().to_string();
        for (c, table) in [
            (clerk, "timeline"),
            (clerk, "card"),
            (clerk, "cases"),
            (clerk, "flows"),
            (clerk, "counterparts"),
            (clerk, "quarantine"),
            (supervisor_n, "timeline"),
        ] {
            // CSV: the same table as the (compressed) workbook, readable here.
            let path = format!("/v1/export?table={table}&format=csv&person={person}");
            let (status, body) = c.request("GET", &path, None).unwrap();
            assert_eq!(status, 200, "{path}: {body}");
            answers.push_str(&format!("\n== {code} {path}\n{body}"));
        }
        let (status, body) = clerk.request("GET", "/v1/whoami", None).unwrap();
        assert_eq!(status, 200, "{body}");
        answers.push_str(&body);
    }
    // Erasure: by ID number (in the body), a refused one carrying a wrong number, and the
    // requests and receipts as every side lists them (the counterparts answer meanwhile).
    let wrong = format!("{}0", &id[..17]);
    let mut erased = 0;
    for (code, _, _, supervisor_n, ..) in &nodes {
        for number in [wrong.as_str(), id.as_str()] {
            let body = serde_json::json!({ "id_number": number, "basis": "person_request", "reference": "DPO-7" });
            let (status, body) = supervisor_n.request("POST", "/v1/erasures", Some(&body.to_string())).unwrap();
            // 400: the wrong number; 422: no relationship with the person held there.
            assert!(matches!(status, 201 | 400 | 422), "{status} {body}");
            erased += usize::from(status == 201);
            answers.push_str(&format!("\n== {code} erase\n{body}"));
        }
    }
    assert!(erased >= 1, "the person was erased somewhere");
    std::thread::sleep(std::time::Duration::from_secs(2));
    for (.., auditor_n) in &nodes {
        let (status, body) = auditor_n.request("GET", "/v1/erasures", None).unwrap();
        assert_eq!(status, 200, "{body}");
        answers.push_str(&format!("\n== erasures\n{body}"));
    }
    let _ = (supervisor, monitor, auditor);
    for (_, child, ..) in &mut nodes {
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        child.wait().unwrap();
    }
    drop(nats);

    let mut haystacks: Vec<(String, Vec<u8>)> = vec![("HTTP answers".into(), answers.into_bytes())];
    for code in codes {
        let log = std::fs::read(tmp.path().join(format!("{code}.log"))).unwrap();
        // Libraries that print message bodies are held at INFO even at trace.
        let text = String::from_utf8_lossy(&log).to_string();
        let body_printing = text
            .lines()
            .filter(|l| l.contains("async_nats") || l.contains("hyper"))
            .filter(|l| l.contains("DEBUG") || l.contains("TRACE"))
            .count();
        assert_eq!(body_printing, 0, "{code}: payload-printing libraries logged below INFO");
        assert!(text.lines().filter(|l| l.contains("TRACE") || l.contains("DEBUG")).count() > 10, "trace was on");
        haystacks.push((format!("{code} log at trace"), log));
    }
    // NATS: subjects of every PUB/HPUB/MSG/HMSG, and the header block of every message.
    let trace = std::fs::read_to_string(&nats_trace).unwrap();
    let mut protocol = String::new();
    let mut ops = 0;
    for line in trace.lines() {
        if let Some(op) = ["[PUB ", "[HPUB ", "[MSG ", "[HMSG "].iter().find_map(|o| line.find(o).map(|i| &line[i..])) {
            protocol.push_str(op);
            protocol.push('\n');
            ops += 1;
        } else if let Some(i) = line.find("MSG_PAYLOAD: [\"NATS/1.0") {
            let payload = &line[i..];
            let end = payload.find("\\r\\n\\r\\n").unwrap_or(payload.len());
            protocol.push_str(&payload[..end]);
            protocol.push('\n');
        }
    }
    assert!(ops > 50, "the NATS trace has the protocol ({ops} operations)");
    assert!(protocol.contains("yipan.v1.ev.61.610112.411522"), "subjects traced");
    haystacks.push(("NATS subjects and headers".into(), protocol.into_bytes()));
    // Stored bytes outside tier payloads, and every file beside the store.
    for code in codes {
        let dir = tmp.path().join(code);
        let d = yipan_node::datadir::open(&dir).unwrap();
        let mut envelopes = Vec::new();
        d.log
            .for_each_raw(None, usize::MAX, |_, _, bytes| {
                envelopes.extend(yipan_log::StoredEvent::decode(bytes).unwrap().signed.envelope);
            })
            .unwrap();
        assert!(!envelopes.is_empty());
        haystacks.push((format!("{code} envelopes"), envelopes));
        haystacks.push((format!("{code} quarantine"), serde_json::to_vec(&d.log.quarantine().unwrap()).unwrap()));
        drop(d);
        let mut stack = vec![dir.clone()];
        while let Some(p) = stack.pop() {
            for entry in std::fs::read_dir(&p).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    if path.file_name() != Some(std::ffi::OsStr::new("log")) {
                        stack.push(path);
                    }
                } else {
                    let mut bytes = Vec::new();
                    std::fs::File::open(&path).unwrap().read_to_end(&mut bytes).unwrap();
                    haystacks.push((path.display().to_string(), bytes));
                }
            }
        }
    }
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    for (what, hay) in &haystacks {
        for v in &values {
            if let Some(at) = hay.windows(v.len()).position(|w| w == v.as_bytes()) {
                // Say where, without printing the value itself.
                let line_start = hay[..at].iter().rposition(|b| *b == b'\n').map(|i| i + 1).unwrap_or(0);
                let head = &hay[line_start..at.min(line_start + 200)];
                let before = String::from_utf8_lossy(head).to_string();
                panic!("a personal value ({} bytes) appears in {what}, after: …{before}", v.len());
            }
        }
    }
    // The scan can see: the same values are in the tier payloads a clerk may reveal.
    let d = yipan_node::datadir::open(&tmp.path().join("610112")).unwrap();
    let mut tiers = Vec::new();
    d.log
        .for_each_raw(None, usize::MAX, |_, _, bytes| {
            for t in yipan_log::StoredEvent::decode(bytes).unwrap().signed.tiers {
                tiers.extend(t.content);
            }
        })
        .unwrap();
    assert!(values.iter().any(|v| contains(&tiers, v.as_bytes())), "the values are there, in tier payloads only");
}

/// `yipan sim national` end to end at its smallest: one locality per
/// province (31) in two hosting processes over two two-server clusters
/// joined by gateways (R2 streams). It must converge, lose and double nothing, agree on
/// every pair's digest at both sides, audit clean from the streams, and
/// write its summary and plots. (The long runs are in docs/scale.md.)
#[test]
fn the_national_simulation_runs_end_to_end_at_its_smallest() {
    if yipan_testkit::nats_server_current_bin().is_err() {
        panic!("the simulation needs the current nats-server: run scripts/test, which installs it");
    }
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_yipan"))
        .args(["sim", "national", "--per-province", "1", "--persons", "400", "--workers", "2"])
        .args(["--clusters", "2", "--servers", "2", "--no-kill", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&run.stdout), text(&run.stderr));
    assert!(run.status.success(), "sim failed: {stdout}\n{stderr}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["localities"], 31);
    assert_eq!((summary["lost"].as_u64(), summary["applied_twice"].as_u64()), (Some(0), Some(0)), "{summary}");
    assert!(summary["pairs"].as_u64().unwrap() > 0 && summary["pairs_differing"] == 0, "{summary}");
    assert_eq!(summary["audit_faults"], 0);
    assert!(summary["events"].as_u64().unwrap() >= 2_000, "{summary}");
    assert_eq!(summary["refused"], 0, "{summary}");
    assert_eq!(summary["audited_events"], summary["events"]);
    for f in ["summary.md", "series.csv", "events.svg", "lag.svg", "memory.svg"] {
        assert!(out.path().join(f).exists(), "{f} written");
    }
    // No resident-ID number (the sim's persons have valid check digits) in its output or the workers' logs.
    let mut texts = vec![stdout, stderr];
    for w in 0..2 {
        texts.push(std::fs::read_to_string(out.path().join(format!("run/worker-{w}.log"))).unwrap());
    }
    for t in &texts {
        assert_eq!(id_number_in(t), None, "an ID number was printed");
    }
    assert!(id_number_in("x 11010519491231002X y").is_some(), "the scan finds one");
}

/// The first resident-ID number (18 characters, valid check digit) in `text`.
fn id_number_in(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.windows(18).map(|w| w.iter().collect::<String>()).find(|w| {
        w.chars().all(|c| c.is_ascii_digit() || c == 'X')
            && yipan_core::person::check_id_number(w) == yipan_core::person::IdCheck::Valid
    })
}
