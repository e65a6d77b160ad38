//! `yipan bench http`: appends over the HTTP API as deployed (TLS, bearer
//! token checked on every request) beside the same node setup over plain HTTP
//! (insecure mode; the token is still checked, so the raw cost of the token
//! check is measured on its own and printed too), in the same run, with
//! keep-alive clients as a service desk or an integration would hold them.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use yipan_access::Role;
use yipan_core::Locality;
use yipan_node::provision::{issue_token, Deployment};
use yipan_node::{Node, NodeConfig};

/// What the benchmark measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub events: u64,
    pub clients: usize,
    pub rounds: usize,
    pub tls_token_per_s: f64,
    pub plain_per_s: f64,
    pub ratio: f64,
    pub token_check_us: f64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "HTTPS + bearer token appends ({} keep-alive clients, one event per request): {:>8.0} events/s",
            self.clients, self.tls_token_per_s
        )?;
        writeln!(
            f,
            "plain HTTP appends, same node setup, same run:                        {:>8.0} events/s   ratio {:.2}",
            self.plain_per_s, self.ratio
        )?;
        write!(
            f,
            "raw token check (SHA-256 + lookup), one thread: {:.2} µs per request; best of {} alternating rounds of {} events each",
            self.token_check_us, self.rounds, self.events
        )
    }
}

fn body(i: u64) -> Bytes {
    Bytes::from(format!(
        r#"{{"kind":"ServiceRendered","origin":"411522","residence":"610112","person":"{i:032x}","body":{{"service":"SERVICE_KIND_PERSON_INFORMED"}}}}"#
    ))
}

async fn client<IO>(io: IO, token: Arc<String>, from: u64, n: u64) -> Result<()>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(conn);
    for i in from..from + n {
        let req = hyper::Request::post("/v1/events")
            .header(hyper::header::HOST, "127.0.0.1")
            .header(hyper::header::AUTHORIZATION, format!("Bearer {token}"))
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body(i)))?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        if status != 200 {
            bail!("HTTP {status}: {}", String::from_utf8_lossy(&bytes));
        }
    }
    Ok(())
}

/// Appends `events` with `clients` connections; returns events/s.
async fn drive(
    addr: std::net::SocketAddr,
    tls: Option<tokio_rustls::TlsConnector>,
    token: &str,
    events: u64,
    clients: usize,
    offset: u64,
) -> Result<f64> {
    let token = Arc::new(token.to_string());
    let per = events / clients as u64;
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients as u64 {
        let (tls, token) = (tls.clone(), token.clone());
        let from = offset + c * per;
        tasks.spawn(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            match tls {
                Some(connector) => {
                    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
                    client(connector.connect(name, tcp).await?, token, from, per).await
                }
                None => client(tcp, token, from, per).await,
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.context("client task")??;
    }
    Ok((per * clients as u64) as f64 / start.elapsed().as_secs_f64())
}

async fn start(cfg: NodeConfig) -> Result<Node> {
    Ok(Node::start(cfg, tokio::net::TcpListener::bind("127.0.0.1:0").await?).await?)
}

pub async fn run(events: u64, clients: usize, rounds: usize) -> Result<Report> {
    let tmp = tempfile::tempdir()?;
    let me = Locality::parse("610112").map_err(anyhow::Error::msg)?;
    let deployment = Deployment::create(&tmp.path().join("secrets"), &[me], &[])?;
    // No NATS server: both nodes work offline (appends never wait for NATS),
    // so the comparison is the HTTP path alone.
    let nats_url = "tls://127.0.0.1:9";
    let (secure_dir, plain_dir) = (tmp.path().join("secure"), tmp.path().join("plain"));
    for d in [&secure_dir, &plain_dir] {
        yipan_node::datadir::init(d, me, Some(b"bench"))?;
    }
    let secure = start(deployment.node_config(me, secure_dir.clone(), nats_url)?).await?;
    let plain = start(NodeConfig::insecure(plain_dir.clone(), "nats://127.0.0.1:9")).await?;
    let secure_token = issue_token(&secure_dir, Role::Clerk, "bench")?;
    let plain_token = issue_token(&plain_dir, Role::Clerk, "bench")?;
    let connector = tokio_rustls::TlsConnector::from(deployment.client_tls()?);

    let (mut best_tls, mut best_plain) = (0f64, 0f64);
    for round in 0..rounds as u64 {
        let offset = round * events;
        best_plain = best_plain.max(drive(plain.addr, None, &plain_token, events, clients, offset).await?);
        best_tls =
            best_tls.max(drive(secure.addr, Some(connector.clone()), &secure_token, events, clients, offset).await?);
    }
    secure.stop().await?;
    plain.stop().await?;

    // The token check alone, as the node does it per request.
    let store = yipan_access::TokenStore::open(&yipan_access::TokenStore::default_path(&secure_dir))?;
    let n = 200_000;
    let t = Instant::now();
    let now = chrono::Utc::now();
    for _ in 0..n {
        std::hint::black_box(store.verify(std::hint::black_box(&secure_token), now).map_err(anyhow::Error::msg)?);
    }
    let token_check_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    Ok(Report {
        events,
        clients,
        rounds,
        tls_token_per_s: best_tls,
        plain_per_s: best_plain,
        ratio: best_tls / best_plain,
        token_check_us,
    })
}
