//! The operator console in a real headless Chromium (Debian's `chromium`
//! and `chromedriver`, installed by scripts/test), driven over WebDriver
//! against real nodes on a real, secured `nats-server`:
//! sign in; the same responsibility card on the residence's and the
//! origin's console after replication; an overdue case-assist request
//! answered from the origin's queue leaves the overdue list on both sides; a
//! form with a bad field shows the error beside it and writes nothing; a
//! role without tiers never has a name, ID number or phone in any page's
//! HTML; an export downloads a workbook with the rows the page shows.
//!
//! A screenshot of the page is saved under `target/console-screenshots/`
//! when a step fails. `YIPAN_SCREENSHOTS=DIR` also saves one of every page
//! (how `docs/console/` is made: `YIPAN_SCREENSHOTS=docs/console cargo test
//! -p yipan-node --test console`).

use std::collections::BTreeMap;
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{Duration as Days, Utc};
use fantoccini::{Client, ClientBuilder, Locator};
use futures::FutureExt;
use serde_json::{json, Value};
use yipan_access::Role;
use yipan_core::Locality;
use yipan_node::provision::{issue_token, Deployment};
use yipan_node::Node;
use yipan_testkit::{http, NatsServer};

const SECRET: &[u8] = b"console-test-secret";
const NAME: &str = "李秀英";
const ID_NUMBER: &str = "41152219920315002X";
const PHONE: &str = "13912345678";

fn loc(code: &str) -> Locality {
    Locality::parse(code).unwrap()
}

/// A chromedriver on a free port, stopped on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Driver {
        let bin = std::env::var("CHROMEDRIVER_BIN").unwrap_or_else(|_| "chromedriver".into());
        let port = StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(&bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin} (run scripts/test, which installs chromium-driver): {e}"));
        let url = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "chromedriver did not listen within 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver { child, url }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session with a download directory and a screenshot directory.
struct Browser {
    client: Client,
    downloads: PathBuf,
    shots: PathBuf,
    /// Also save a screenshot of every page (docs/console).
    every_page: bool,
}

impl Browser {
    async fn open(driver: &Driver, downloads: &Path) -> Browser {
        let mut caps = serde_json::Map::new();
        caps.insert("acceptInsecureCerts".into(), json!(true));
        let mut options = json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1440,1000", "--lang=zh-CN", "--force-device-scale-factor=1"],
            "prefs": {"download.default_directory": downloads.to_str().unwrap(), "download.prompt_for_download": false},
        });
        if let Ok(bin) = std::env::var("CHROME_BIN") {
            options["binary"] = json!(bin);
        }
        caps.insert("goog:chromeOptions".into(), options);
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&driver.url)
            .await
            .expect("a WebDriver session with headless chromium");
        std::fs::create_dir_all(downloads).unwrap();
        let every = std::env::var_os("YIPAN_SCREENSHOTS");
        // Relative to the workspace (tests run in the crate's directory).
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let shots = root.join(every.clone().map(PathBuf::from).unwrap_or_else(|| "target/console-screenshots".into()));
        std::fs::create_dir_all(&shots).unwrap();
        Browser { client, downloads: downloads.to_path_buf(), shots, every_page: every.is_some() }
    }

    async fn shot(&self, name: &str) {
        if let Ok(png) = self.client.screenshot().await {
            let _ = std::fs::write(self.shots.join(format!("{name}.png")), png);
        }
    }

    /// A screenshot for the docs, when asked for.
    async fn page_shot(&self, name: &str) {
        if self.every_page {
            self.shot(name).await;
        }
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Goes to a page of the console (hash route) and waits until it has rendered.
    async fn page(&self, page: &str) {
        self.client.execute("location.hash = '#/' + arguments[0];", vec![json!(page)]).await.unwrap();
        self.ready(page).await;
    }

    /// Waits until the console says `page` is rendered.
    async fn ready(&self, page: &str) -> Duration {
        let start = Instant::now();
        loop {
            let v = self.js("return document.body.dataset.ready || '';").await;
            if v == page {
                return start.elapsed();
            }
            let err = self
                .js("var e = document.getElementById('page-error'); return e && e.offsetParent ? e.textContent : '';")
                .await;
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "page `{page}` did not render within 20 s (ready = {v:?}, error box = {err:?})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    async fn js_with(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.unwrap()
    }

    async fn click(&self, css: &str) {
        self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no `{css}`: {e}")).click().await.unwrap();
    }

    async fn fill(&self, css: &str, text: &str) {
        let e = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no `{css}`: {e}"));
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    async fn select(&self, css: &str, value: &str) {
        let e = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no `{css}`: {e}"));
        e.select_by_value(value).await.unwrap_or_else(|e| panic!("`{css}` has no option `{value}`: {e}"));
    }

    /// Waits until `script` returns something truthy; returns it.
    async fn until(&self, what: &str, script: &str) -> Value {
        let start = Instant::now();
        loop {
            let v = self.js(script).await;
            if !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0)) {
                return v;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn html(&self) -> String {
        self.client.source().await.unwrap()
    }
}

/// Two nodes (residence 610112, origin 411522) on a secured nats-server, with tokens.
struct World {
    _nats: NatsServer,
    base: tempfile::TempDir,
    nodes: BTreeMap<&'static str, Node>,
    clerks: BTreeMap<&'static str, String>,
    supervisor: String,
    tls: std::sync::Arc<rustls::ClientConfig>,
}

impl World {
    async fn new() -> World {
        let base = tempfile::tempdir().unwrap();
        let codes = ["610112", "411522"];
        let localities: Vec<Locality> = codes.iter().map(|c| loc(c)).collect();
        let deployment = Deployment::create(&base.path().join("secrets"), &localities, &[]).unwrap();
        let secure = deployment.nats_server();
        let nats = tokio::task::spawn_blocking(move || NatsServer::start_secure(secure)).await.unwrap().unwrap();
        deployment.provision(&nats.url(), &[61, 41]).await.unwrap();
        for code in codes {
            let dir = base.path().join(code);
            yipan_node::datadir::init(&dir, loc(code), Some(SECRET)).unwrap();
            deployment.certify(loc(code), code, &dir).unwrap();
        }
        deployment.publish_trust(&nats.url()).await.unwrap();
        let (mut nodes, mut clerks) = (BTreeMap::new(), BTreeMap::new());
        for code in codes {
            let dir = base.path().join(code);
            let mut cfg = deployment.node_config(loc(code), dir.clone(), &nats.url()).unwrap();
            cfg.sync.head_interval_ms = 300;
            cfg.sync.head_refresh_ms = 1_500;
            cfg.sync.repair_grace_ms = 300;
            cfg.sync.trust_poll_ms = 200;
            clerks.insert(code, issue_token(&dir, Role::Clerk, "console test clerk").unwrap());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            nodes.insert(code, Node::start(cfg, listener).await.unwrap());
        }
        let supervisor = issue_token(&base.path().join("610112"), Role::Supervisor, "console test supervisor").unwrap();
        let tls = deployment.client_tls().unwrap();
        let w = World { _nats: nats, base, nodes, clerks, supervisor, tls };
        w.until("both nodes know both certificates", |w| {
            w.nodes.values().all(|n| localities.iter().all(|l| n.log.trust().is_certified(*l)))
        })
        .await;
        w
    }

    fn node(&self, code: &str) -> &Node {
        &self.nodes[code]
    }

    fn url(&self, code: &str) -> String {
        format!("https://{}/console/", self.node(code).addr)
    }

    fn api(&self, code: &str) -> http::Client {
        http::Client::new(self.node(code).addr, Some(self.tls.clone()), Some(self.clerks[code].clone()))
    }

    async fn post(&self, code: &str, event: Value) -> Value {
        let c = self.api(code);
        let (status, body) =
            tokio::task::spawn_blocking(move || c.request("POST", "/v1/events", Some(&event.to_string())))
                .await
                .unwrap()
                .unwrap();
        assert_eq!(status, 200, "{code} refused a seed event: {body}");
        serde_json::from_str(&body).unwrap()
    }

    async fn get(&self, code: &str, path: &str) -> Value {
        let (c, path) = (self.api(code), path.to_string());
        let (status, body) = tokio::task::spawn_blocking(move || c.request("GET", &path, None)).await.unwrap().unwrap();
        assert_eq!(status, 200, "GET {body}");
        serde_json::from_str(&body).unwrap()
    }

    async fn until(&self, what: &str, check: impl Fn(&World) -> bool) {
        let start = Instant::now();
        while !check(self) {
            assert!(start.elapsed() < Duration::from_secs(20), "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every event each node sent has reached the other and its views.
    async fn converged(&self) {
        self.until("both nodes hold every event sent to them and their views caught up", |w| {
            let (a, b) = (w.node("610112"), w.node("411522"));
            let sent = |from: &Node, to: &Node| {
                from.log
                    .outbound_heads(u64::MAX)
                    .unwrap()
                    .into_iter()
                    .find(|(r, _)| *r == to.locality)
                    .map(|(_, h)| h)
                    .unwrap_or(0)
            };
            let held = |from: &Node, to: &Node| to.log.channel_head(from.locality, to.locality).unwrap();
            held(a, b) == sent(a, b)
                && held(b, a) == sent(b, a)
                && w.nodes.values().all(|n| n.views.read().unwrap().len() == n.log.len())
        })
        .await;
    }
}

fn at(days_ago: i64) -> String {
    (Utc::now() - Days::days(days_ago)).with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap()).to_rfc3339()
}

/// An 18-character ID number with the right check digit.
fn id_number(first17: &str) -> String {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = first17.bytes().zip(WEIGHTS).map(|(d, w)| u32::from(d - b'0') * w).sum();
    format!("{first17}{}", b"10X98765432"[(sum % 11) as usize] as char)
}

/// The seed: the origin issued a certificate, the residence registered the
/// arrival and asked the origin for case assistance 45 days ago (due in 30:
/// overdue at the origin).
async fn seed(w: &World) -> String {
    w.post(
        "411522",
        json!({"kind": "CertificateIssued", "occurred_at": at(70), "origin": "411522", "residence": "610112",
               "identity": {"name": NAME, "idNumber": ID_NUMBER, "married": true},
               "body": {"certificateRef": "HN-GS-2026-1123", "validUntil": "2027-09-28T00:00:00Z"}}),
    )
    .await;
    w.post(
        "610112",
        json!({"kind": "ArrivalRegistered", "occurred_at": at(60), "origin": "411522", "residence": "610112",
               "identity": {"name": NAME, "idNumber": ID_NUMBER}, "contact": {"phone": PHONE},
               "body": {"channel": "REGISTRATION_CHANNEL_RENTAL_HOUSING", "township": "610112004"}}),
    )
    .await;
    let request = w
        .post(
            "610112",
            json!({"kind": "CaseAssistRequested", "occurred_at": at(45), "origin": "411522", "residence": "610112",
                   "person_id_number": ID_NUMBER,
                   "body": {"urgency": "URGENCY_NORMAL", "subject": "核实婚育情况"}}),
        )
        .await;
    w.converged().await;
    request["id"].as_str().unwrap().to_string()
}

/// `(item id, state)` of every card row the person page shows.
async fn card_rows(b: &Browser) -> Vec<(String, String)> {
    let v = b
        .js("return Array.from(document.querySelectorAll('.card tr[data-item]')).map(r => [r.dataset.item, r.dataset.state]);")
        .await;
    serde_json::from_value(v).unwrap()
}

async fn look_up(b: &Browser, id_number: &str) {
    b.page("person").await;
    b.fill("#person-id-number", id_number).await;
    b.body_ready_reset().await;
    b.click("#person-lookup").await;
    b.ready("person").await;
    b.until("a card is shown", "return document.querySelectorAll('.card tr[data-item]').length;").await;
}

impl Browser {
    async fn body_ready_reset(&self) {
        self.js("document.body.dataset.ready = '';").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_in_a_real_browser() {
    let w = World::new().await;
    let request = seed(&w).await;
    let driver = tokio::task::spawn_blocking(Driver::start).await.unwrap();
    let downloads = w.base.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let b = Browser::open(&driver, &downloads).await;
    let origin = Browser::open(&driver, &w.base.path().join("downloads-origin")).await;
    let outcome = std::panic::AssertUnwindSafe(scenario(&w, &b, &origin, &request)).catch_unwind().await;
    if let Err(panic) = outcome {
        b.shot("failure-residence").await;
        origin.shot("failure-origin").await;
        let _ = b.client.clone().close().await;
        let _ = origin.client.clone().close().await;
        std::panic::resume_unwind(panic);
    }
    b.client.clone().close().await.unwrap();
    origin.client.clone().close().await.unwrap();
    for node in w.nodes.into_values() {
        node.stop().await.unwrap();
    }
}

async fn scenario(w: &World, b: &Browser, origin: &Browser, request: &str) {
    // Sign in: a wrong token is refused on the page, the clerk's token is taken.
    b.goto(&w.url("610112")).await;
    b.until("the sign-in form", "return !!document.getElementById('signin-token');").await;
    b.page_shot("signin").await;
    b.fill("#signin-token", "yipan_00000000_0000000000000000000000000000000000000000000000000000000000000000").await;
    b.click("#signin-submit").await;
    b.until(
        "the refusal is shown",
        "var e = document.getElementById('signin-error'); return e && e.textContent.trim();",
    )
    .await;
    b.fill("#signin-token", &w.clerks["610112"]).await;
    b.click("#signin-submit").await;
    b.ready("overview").await;
    let indicators = b.js("return document.querySelectorAll('#overview-table tr[data-indicator]').length;").await;
    assert!(indicators.as_u64().unwrap() >= 10, "the overview lists every indicator ({indicators})");
    let header = b.js("return document.body.innerText;").await;
    assert!(header.as_str().unwrap().contains("610112"), "the header names the locality");
    b.page_shot("overview").await;

    // The origin's console: signed in by a link carrying the token in its fragment.
    origin.goto(&format!("{}#token={}", w.url("411522"), w.clerks["411522"])).await;
    origin.ready("overview").await;
    let url = origin.client.current_url().await.unwrap();
    assert!(!url.as_str().contains("token"), "the token is taken out of the address bar: {url}");

    // The same card on both sides after replication.
    look_up(b, ID_NUMBER).await;
    let residence_card = card_rows(b).await;
    assert_eq!(residence_card.len(), 10, "every duty of both sides: {residence_card:?}");
    assert!(residence_card.contains(&("residence.registration".into(), "done".into())), "{residence_card:?}");
    assert!(residence_card.contains(&("origin.certificate".into(), "done".into())), "{residence_card:?}");
    let field = b.js("return document.getElementById('person-id-number').value;").await;
    assert_eq!(field, json!(""), "the ID number is cleared after the lookup");
    assert!(!b.client.current_url().await.unwrap().as_str().contains(ID_NUMBER), "the ID number never goes in a URL");
    b.page_shot("person").await;
    b.click("button.export[data-table='card'][data-format='xlsx']").await;
    let rows = workbook_rows(&wait_for_download(&b.downloads, "xlsx").await);
    assert_eq!(rows.len(), 11, "a header and the ten duties: {rows:?}");
    assert!(rows.iter().any(|r| r.iter().any(|c| c == "流入登记建档")), "Chinese duty names: {rows:?}");
    let html = b.html().await;
    assert!(!html.contains(ID_NUMBER) && !html.contains(NAME), "a clerk's page shows personal values only masked");
    // Who received this person's data: the residence sent the arrival's tiers to the origin.
    let released = b
        .until(
            "the disclosure log is shown",
            "return Array.from(document.querySelectorAll('#disclosures-table tr[data-n]')).map(r => [r.dataset.channel, r.dataset.recipient]);",
        )
        .await;
    assert!(
        released.as_array().unwrap().iter().any(|r| r == &json!(["replication", "411522"])),
        "the replication to the origin is listed: {released}"
    );
    look_up(origin, ID_NUMBER).await;
    assert_eq!(card_rows(origin).await, residence_card, "the origin's console shows the same card");

    // The overdue case-assist request, answered from the origin's queue.
    origin.page("cases").await;
    let row = format!("#cases-table tr[data-request='{request}']");
    let state = origin
        .js_with("var r = document.querySelector(arguments[0]); return r && r.dataset.state;", vec![json!(row)])
        .await;
    assert_eq!(state, json!("overdue"), "the request is overdue at the origin");
    let first = origin
        .js("var r = document.querySelector('#cases-table tr[data-request]'); return r && r.dataset.state;")
        .await;
    assert_eq!(first, json!("overdue"), "overdue cases come first");
    origin.page_shot("cases").await;
    // Export: the workbook holds the rows the page shows.
    let shown: Vec<String> = serde_json::from_value(
        origin.js("return Array.from(document.querySelectorAll('#cases-table tr[data-request]')).map(r => r.dataset.request);").await,
    )
    .unwrap();
    origin.click("button.export[data-table='cases'][data-format='xlsx']").await;
    let file = wait_for_download(&origin.downloads, "xlsx").await;
    let rows = workbook_rows(&file);
    assert_eq!(rows.len(), shown.len() + 1, "a header and one row per case shown: {rows:?}");
    let request_column = rows[0].iter().position(|h| h == "请求事件").expect("a request column");
    let exported: Vec<String> = rows[1..].iter().map(|r| r[request_column].clone()).collect();
    assert_eq!(exported, shown, "the same cases in the same order");
    assert!(rows[1..].iter().any(|r| r.iter().any(|c| c == "协查→反馈")), "Chinese kind names: {rows:?}");

    origin.click(&format!("button.answer[data-request='{request}']")).await;
    origin.until("the answer form", "return !!document.querySelector('#answer-form [name=\"body.result\"]');").await;
    origin.select("#answer-form [name='body.result']", "VERIFICATION_RESULT_CONFIRMED").await;
    if origin.js("return !!document.querySelector('#answer-form [name=\"body.remarks\"]');").await == json!(true) {
        origin.fill("#answer-form [name='body.remarks']", "已核实").await;
    }
    origin.page_shot("answer").await;
    let before = w.node("411522").log.len();
    origin.click("#answer-submit").await;
    origin
        .until(
            "the answer is recorded",
            "var e = document.getElementById('answer-result'); return e && e.textContent.trim();",
        )
        .await;
    assert_eq!(w.node("411522").log.len(), before + 1, "one answer event written");
    origin.ready("cases").await;
    let still = origin
        .js_with("var r = document.querySelector(arguments[0]); return r ? r.dataset.state : 'gone';", vec![json!(row)])
        .await;
    assert_ne!(still, json!("overdue"), "the answered request left the origin's overdue list");
    w.converged().await;
    let overdue = w.get("610112", "/v1/cases?overdue=true").await;
    assert_eq!(overdue, json!([]), "nothing is overdue at the residence either");
    b.page("cases").await;
    let at_residence = b
        .js_with("var r = document.querySelector(arguments[0]); return r ? r.dataset.state : 'gone';", vec![json!(row)])
        .await;
    assert_ne!(at_residence, json!("overdue"), "the residence's console no longer shows it overdue");

    // A form with a bad field: the error beside the field, nothing written.
    b.page("record").await;
    b.select("#record-kind", "ArrivalRegistered").await;
    let before = w.node("610112").log.len();
    let newcomer = id_number("61011219950704123");
    fill_arrival(b, "王芳", &newcomer, "610113004").await;
    b.click("#record-submit").await;
    let beside = b
        .until(
            "the township error is shown beside the field",
            "var e = document.querySelector('.field-error[data-for=\"body.township\"]'); return e && e.textContent.trim();",
        )
        .await;
    assert!(beside.as_str().unwrap().chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)), "in Chinese: {beside}");
    b.page_shot("record-error").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(w.node("610112").log.len(), before, "nothing written");
    // Refused by the node itself (a second active arrival of a registered person): shown, nothing written.
    fill_arrival(b, NAME, ID_NUMBER, "610112004").await;
    b.click("#record-submit").await;
    let refused = b
        .until(
            "the node's refusal is shown",
            "var e = Array.from(document.querySelectorAll('.field-error, #record-error')).map(e => e.textContent.trim()).filter(t => t); return e.join(' | ');",
        )
        .await;
    assert!(refused.as_str().unwrap().contains("nothing was written"), "the node's reason is shown: {refused}");
    assert_eq!(w.node("610112").log.len(), before, "nothing written");
    // Corrected: recorded once, with the coarse attributes of the indicators' denominators.
    fill_arrival(b, "王芳", &newcomer, "610112004").await;
    b.fill("#record-form [name='body.community']", "610112004001").await;
    b.select("#record-form [name='body.sex']", "SEX_FEMALE").await;
    b.fill("#record-form [name='body.birthYear']", "1995").await;
    b.select("#record-form [name='body.maritalStatus']", "MARITAL_STATUS_MARRIED").await;
    submit_record(b, "the arrival is recorded").await;
    assert_eq!(w.node("610112").log.len(), before + 1, "one event written");
    b.page_shot("record").await;

    // A locality-level record (a lecture): no person, no origin or residence to give.
    b.select("#record-kind", "OutreachActivityHeld").await;
    b.until("the locality form", "return !!document.getElementById('rf-locality-note');").await;
    let parties = b.js("return !!document.querySelector('#record-form [name=\"origin\"]');").await;
    assert_eq!(parties, json!(false), "a locality record asks for no origin");
    b.select("#record-form [name='body.activity']", "OUTREACH_KIND_LECTURE").await;
    b.select("#record-form [name='body.venue']", "VENUE_CONSTRUCTION_SITE").await;
    b.fill("#record-form [name='body.township']", "610112004").await;
    b.fill("#record-form [name='body.attendance']", "35").await;
    submit_record(b, "the lecture is recorded").await;
    assert_eq!(w.node("610112").log.len(), before + 2, "one more event written");
    b.page_shot("record-outreach").await;
    b.page("overview").await;
    let coverage = b
        .until(
            "the outreach coverage row",
            "var r = document.querySelector('#overview-table tr[data-indicator=\"outreach_coverage\"]'); return r && r.innerText;",
        )
        .await;
    assert!(coverage.as_str().unwrap().contains("宣传活动覆盖率"), "{coverage}");
    b.page_shot("overview-outreach").await;
    b.page("cases").await;

    // Accepted but doubtful data is shown, never silent: a service without a time.
    w.post(
        "610112",
        json!({"kind": "ServiceRendered", "origin": "411522", "residence": "610112", "person_id_number": ID_NUMBER,
               "body": {"service": "SERVICE_KIND_CONTRACEPTIVES"}}),
    )
    .await;
    w.converged().await;
    b.page("overview").await;
    let noted =
        b.js("var q = document.getElementById('quality-summary'); return q ? Number(q.dataset.count) : 0;").await;
    assert!(noted.as_u64().unwrap() >= 1, "the overview notes the flagged event: {noted}");
    look_up(b, ID_NUMBER).await;
    let flagged = b
        .js("return Array.from(document.querySelectorAll('.card-quality li[data-code]')).map(l => l.dataset.code);")
        .await;
    assert!(flagged.as_array().unwrap().contains(&json!("time.defaulted")), "the card shows the flag: {flagged}");
    b.page_shot("person-quality").await;

    for page in ["flows", "health"] {
        b.page(page).await;
        b.page_shot(page).await;
    }

    // A role without tiers: no name, ID number or phone anywhere, masked or not.
    let supervisor = format!("{}#token={}", w.url("610112"), w.supervisor);
    b.js("sessionStorage.clear();").await;
    b.goto(&supervisor).await;
    b.ready("overview").await;
    let forbidden = [NAME, "秀英", "李**", ID_NUMBER, "********002X", PHONE, "****5678", "王芳", &newcomer];
    let mut seen = String::new();
    for page in ["overview", "cases", "flows", "health"] {
        b.page(page).await;
        seen.push_str(&b.html().await);
    }
    // A supervisor never sees identities: no lookup by ID number (it would re-identify), by key instead.
    b.page("person").await;
    let by_id = b.js("return !!document.getElementById('person-id-number') && !!document.getElementById('person-id-number').offsetParent;").await;
    assert_eq!(by_id, json!(false), "a supervisor is not offered a lookup by ID number");
    let key = yipan_core::PersonKey::derive(ID_NUMBER, SECRET).to_string();
    b.fill("#person-key", &key).await;
    b.body_ready_reset().await;
    b.click("#person-lookup").await;
    b.ready("person").await;
    b.until("a card is shown", "return document.querySelectorAll('.card tr[data-item]').length;").await;
    assert_eq!(card_rows(b).await.len(), 10, "a supervisor sees the card");
    seen.push_str(&b.html().await);
    b.page_shot("person-supervisor").await;
    for value in forbidden {
        if let Some(i) = seen.find(value) {
            let context: String = seen[i..].chars().take(80).collect();
            panic!("a supervisor's page shows `{value}`: {context}…");
        }
    }
    let record_link =
        b.js("var a = document.querySelector('a[data-page=\"record\"]'); return !!(a && a.offsetParent);").await;
    assert_eq!(record_link, json!(false), "a supervisor is not offered the record page");

    // The supervisor executes the person's request to erase her health data: the form asks
    // before it acts; the origin confirms with its receipt, shown on the same panel.
    b.until("the erasure form", "return !!document.getElementById('erase-form');").await;
    let none = b.js("return document.querySelectorAll('#erasures-table tr[data-id]').length;").await;
    assert_eq!(none, json!(0));
    for tier in ["identity", "contact"] {
        b.click(&format!("#erase-tier-{tier}")).await;
    }
    b.select("#erase-basis", "person_request").await;
    b.fill("#erase-reference", "610112-DPO-2026-003").await;
    b.click("#erase-submit").await;
    b.client.accept_alert().await.expect("the form asks before erasing");
    let answers = b
        .until(
            "the origin's receipt",
            "var a = document.querySelector('#erasures-table tr[data-direction=\"sent\"] .er-answer[data-locality=\"411522\"]'); \
             return a && a.dataset.state === 'confirmed' ? a.dataset.state : null;",
        )
        .await;
    assert_eq!(answers, json!("confirmed"));
    b.page_shot("person-erasure").await;
    let key = yipan_core::PersonKey::parse(&key).unwrap();
    let held = w.nodes["610112"].log.read_person(key).unwrap();
    assert!(
        held.iter().all(|e| e.signed.tiers.iter().all(|t| t.tier != yipan_proto::v1::Tier::ReproductiveHealth as i32)),
        "no health tier of hers is left at 610112"
    );
}

/// Submits the record form and waits for the node's answer to be shown.
async fn submit_record(b: &Browser, what: &str) {
    b.click("#record-submit").await;
    b.until(what, "var e = document.getElementById('record-result'); return e && e.textContent.trim();").await;
}

async fn fill_arrival(b: &Browser, name: &str, id: &str, township: &str) {
    if b.js("return !!document.querySelector('#record-form [name=\"side\"][value=\"residence\"]');").await
        == json!(true)
    {
        b.click("#record-form [name='side'][value='residence']").await;
    }
    b.fill("#record-form [name='origin']", "411522").await;
    b.fill("#record-form [name='identity.name']", name).await;
    b.fill("#record-form [name='identity.idNumber']", id).await;
    b.select("#record-form [name='body.channel']", "REGISTRATION_CHANNEL_SERVICE_DESK").await;
    b.fill("#record-form [name='body.township']", township).await;
}

async fn wait_for_download(dir: &Path, ext: &str) -> PathBuf {
    let start = Instant::now();
    loop {
        let done = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|e| e == ext));
        if let Some(p) = done {
            return p;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no .{ext} file downloaded into {}", dir.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn workbook_rows(path: &Path) -> Vec<Vec<String>> {
    use calamine::{Reader, Xlsx};
    let mut book: Xlsx<_> = calamine::open_workbook(path).unwrap();
    let sheet = book.sheet_names()[0].clone();
    let range = book.worksheet_range(&sheet).unwrap();
    let rows = range.rows().map(|r| r.iter().map(|c| c.to_string()).collect()).collect();
    // The next download is then the only file of its kind.
    std::fs::remove_file(path).unwrap();
    rows
}

/// The figures of docs/benchmarks.md "Console": time to first render of the
/// overview and of a person page on a node holding many events (default
/// 1,000,000: 200,000 persons from the 107 real county-level units of
/// Shaanxi and Henan's 光山县 living in 610112, five events each, spread over
/// the last year), and the page weight. Prints the figures; no thresholds.
///
/// `cargo test --release -p yipan-node --test console -- --ignored --nocapture first_render`
/// (`YIPAN_CONSOLE_EVENTS=N` for another size).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "long: builds a log of a million events; run by hand for docs/benchmarks.md"]
async fn first_render_at_scale() {
    use yipan_proto::v1::{self, event_body::Kind, EventBody, EventDraft};
    let events: u64 = std::env::var("YIPAN_CONSOLE_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let csv = include_str!("data/shaanxi_county_units_2020.csv");
    let mut origins: Vec<String> =
        csv.lines().skip(1).filter_map(|l| l.split(',').next()).filter(|c| *c != "610112").map(String::from).collect();
    origins.push("411522".into());
    let w = World::new().await;
    let node = w.node("610112");
    let now = Utc::now();
    let draft = move |j: u64| -> EventDraft {
        let (p, k) = (j / 5, j % 5);
        let origin = &origins[(p % origins.len() as u64) as usize];
        let day0 = now - Days::days(12 + (p % 330) as i64);
        let (offset, body) = match k {
            0 => (0, Kind::ArrivalRegistered(v1::ArrivalRegistered { channel: 2, ..Default::default() })),
            1 => (
                1,
                Kind::ServiceRendered(v1::ServiceRendered {
                    service: v1::ServiceKind::PersonInformed as i32,
                    provider_ref: String::new(),
                }),
            ),
            2 => (5, Kind::CertificateVerified(v1::CertificateVerified::default())),
            3 => (7, Kind::NotificationSent(v1::NotificationSent { topic: 1, about_events: vec![] })),
            _ => (
                10,
                Kind::CaseAssistRequested(v1::CaseAssistRequested {
                    urgency: 1 + (p % 2) as i32,
                    subject: String::new(),
                }),
            ),
        };
        EventDraft {
            person_key: yipan_core::PersonKey::derive(&format!("{p:018}"), SECRET).to_string(),
            origin: origin.clone(),
            residence: "610112".into(),
            occurred_at: Some(yipan_core::time::to_ts(day0 + Days::days(offset))),
            body: Some(EventBody { kind: Some(body) }),
            ..Default::default()
        }
    };
    let started = Instant::now();
    {
        let log = node.log.clone();
        tokio::task::spawn_blocking(move || yipan_log::bench::fill(&log, events, draft)).await.unwrap().unwrap();
    }
    println!("generated and signed {events} events in {:.1} s", started.elapsed().as_secs_f64());
    // Steady state: everything published, projections current.
    w.until_long("the outbox is drained and the views caught up", |w| {
        let n = w.node("610112");
        n.views.read().unwrap().len() == n.log.len() && w.status_pending("610112") == 0
    })
    .await;
    println!("published and projected after {:.1} s", started.elapsed().as_secs_f64());

    let driver = tokio::task::spawn_blocking(Driver::start).await.unwrap();
    let b = Browser::open(&driver, &w.base.path().join("downloads-scale")).await;
    let ready_ms = |page: &str| {
        format!(
            "var m = performance.getEntriesByName('ready:{page}'); return m.length ? m[m.length - 1].startTime : null;"
        )
    };
    for round in 0..3 {
        b.goto("about:blank").await;
        b.goto(&format!("{}#token={}", w.url("610112"), w.clerks["610112"])).await;
        b.ready("overview").await;
        let overview = b.js(&ready_ms("overview")).await;
        let slowest = b
            .js("return performance.getEntriesByType('resource').filter(r => r.name.indexOf('/v1/') >= 0)
                   .map(r => [r.name.replace(location.origin, ''), Math.round(r.duration)])
                   .sort((a, b) => b[1] - a[1]).slice(0, 4);")
            .await;
        let weight = b
            .js("var n = performance.getEntriesByType('navigation')[0]; var all = [n].concat(performance.getEntriesByType('resource'));
                 return [all.reduce((s, r) => s + (r.transferSize || 0), 0), all.reduce((s, r) => s + (r.decodedBodySize || 0), 0)];")
            .await;
        let biggest = b
            .js("return performance.getEntriesByType('resource').map(r => [r.name.replace(location.origin, ''), r.decodedBodySize])
                   .sort((a, b) => b[1] - a[1]).slice(0, 4);")
            .await;
        println!("round {round}: overview first render {overview} ms after navigation start; slowest API calls {slowest}; page weight (transferred, decoded bytes) {weight}; largest {biggest}");
        b.page("person").await;
        let key = yipan_core::PersonKey::derive(&format!("{:018}", 4242 + round), SECRET).to_string();
        b.fill("#person-key", &key).await;
        b.body_ready_reset().await;
        b.js("window.__lookup = performance.now();").await;
        b.click("#person-lookup").await;
        b.ready("person").await;
        let person = b
            .js("var m = performance.getEntriesByName('ready:person'); return m.length ? m[m.length - 1].startTime - window.__lookup : null;")
            .await;
        println!("round {round}: person page (card + timeline) rendered {person} ms after the lookup click");
    }
    b.shot("scale-overview").await;
    b.client.clone().close().await.unwrap();
}

impl World {
    async fn until_long(&self, what: &str, check: impl Fn(&World) -> bool) {
        let start = Instant::now();
        while !check(self) {
            assert!(start.elapsed() < Duration::from_secs(1800), "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn status_pending(&self, code: &str) -> u64 {
        let c = self.api(code);
        let (_, body) = c.request("GET", "/v1/status", None).unwrap();
        serde_json::from_str::<Value>(&body).unwrap()["outbox_pending"].as_u64().unwrap_or(u64::MAX)
    }
}

/// A host's tenant has its console under `/t/<code>/console/`: it signs in
/// with the tenant's own token, talks to the tenant's API only (the header
/// names that locality and the card it finds is the tenant's), and the other
/// tenant's console on the same host refuses that token.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hosted_tenants_console_in_a_real_browser() {
    let base = tempfile::tempdir().unwrap();
    let codes = ["610112", "610113"];
    let localities: Vec<Locality> = codes.iter().map(|c| loc(c)).collect();
    let deployment = Deployment::create(&base.path().join("secrets"), &localities, &[]).unwrap();
    let secure = deployment.nats_server();
    let nats = tokio::task::spawn_blocking(move || NatsServer::start_secure(secure)).await.unwrap().unwrap();
    deployment.provision(&nats.url(), &[61]).await.unwrap();
    let host_dir = base.path().join("host");
    yipan_node::host::init(&host_dir).unwrap();
    let mut tokens = BTreeMap::new();
    for code in codes {
        yipan_node::host::add_tenant(&host_dir, loc(code), Some(SECRET)).unwrap();
        let dir = yipan_node::host::tenants_dir(&host_dir).join(code);
        deployment.certify(loc(code), code, &dir).unwrap();
        tokens.insert(code, issue_token(&dir, Role::Clerk, "hosted console clerk").unwrap());
    }
    deployment.publish_trust(&nats.url()).await.unwrap();
    let cfg = deployment.host_config(host_dir, &nats.url()).unwrap();
    let host =
        yipan_node::host::Host::start(cfg, tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).await.unwrap();
    // A person of 610112 living in 610113: the arrival is written at 610113.
    let clerk = http::Client::new(host.addr, Some(deployment.client_tls().unwrap()), Some(tokens["610113"].clone()));
    let arrival = json!({"kind": "ArrivalRegistered", "occurred_at": at(3), "origin": "610112", "residence": "610113",
        "person_id_number": ID_NUMBER, "identity": {"name": NAME, "idNumber": ID_NUMBER},
        "body": {"channel": "REGISTRATION_CHANNEL_EMPLOYER"}});
    let (status, body) =
        tokio::task::spawn_blocking(move || clerk.request("POST", "/t/610113/v1/events", Some(&arrival.to_string())))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(status, 200, "{body}");
    let t12 = host.log(loc("610112")).unwrap();
    let start = Instant::now();
    while t12.channel_head(loc("610113"), loc("610112")).unwrap() < 1 {
        assert!(start.elapsed() < Duration::from_secs(20), "the arrival did not reach 610112");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(t12);

    let driver = tokio::task::spawn_blocking(Driver::start).await.unwrap();
    let b = Browser::open(&driver, &base.path().join("downloads")).await;
    let console = |code: &str| format!("https://{}/t/{code}/console/", host.addr);
    let outcome = std::panic::AssertUnwindSafe(async {
        // The bare tenant address leads to its console.
        b.goto(&format!("https://{}/t/610113", host.addr)).await;
        b.until("the sign-in form", "return !!document.getElementById('signin-token');").await;
        let url = b.client.current_url().await.unwrap();
        assert_eq!(url.path(), "/t/610113/console/");
        b.fill("#signin-token", &tokens["610113"]).await;
        b.click("#signin-submit").await;
        b.ready("overview").await;
        let text = b.js("return document.body.innerText;").await;
        assert!(text.as_str().unwrap().contains("610113"), "the header names the tenant");
        b.page_shot("hosted-overview").await;
        b.shot("hosted-tenant-overview").await;
        // The card of the person, as the residence tenant holds it.
        look_up(&b, ID_NUMBER).await;
        let card = card_rows(&b).await;
        assert!(card.contains(&("residence.registration".into(), "done".into())), "{card:?}");
        b.shot("hosted-tenant-card").await;
        // The other tenant's console on the same host: this token means nothing there.
        b.goto(&format!("{}#token={}", console("610112"), tokens["610113"])).await;
        b.until(
            "the refusal is shown",
            "var e = document.getElementById('signin-error'); return e && e.offsetParent && e.textContent.trim();",
        )
        .await;
        // Its own token opens it, and it holds the same person from 610113's event.
        b.fill("#signin-token", &tokens["610112"]).await;
        b.click("#signin-submit").await;
        b.ready("overview").await;
        let text = b.js("return document.body.innerText;").await;
        assert!(text.as_str().unwrap().contains("610112"), "the header names the other tenant");
        look_up(&b, ID_NUMBER).await;
        let card = card_rows(&b).await;
        assert!(card.contains(&("residence.registration".into(), "done".into())), "{card:?}");
        b.shot("hosted-other-tenant-card").await;
    })
    .catch_unwind()
    .await;
    if let Err(panic) = outcome {
        b.shot("failure-hosted").await;
        let _ = b.client.clone().close().await;
        std::panic::resume_unwind(panic);
    }
    b.client.clone().close().await.unwrap();
    host.stop().await.unwrap();
}
