//! The commands that set up and use access control: `yipan token …`,
//! `yipan nats users|provision`, `yipan tls dev`, and the client every
//! command that talks to a running node uses (`--token`, `--ca-cert`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use yipan_access::nats::{ensure_user, render_authorization, Principal};
use yipan_access::{Role, TokenStore};
use yipan_core::audience::Audience;
use yipan_core::Locality;
use yipan_testkit::http;

/// How to reach a node: `https://IP:PORT` (needs the CA) or, only with
/// `--insecure` for a node in the explicit insecure mode, `http://IP:PORT`;
/// always with a token.
pub fn api_client(url: &str, token: Option<&str>, ca: Option<&Path>, insecure: bool) -> Result<http::Client> {
    let (tls, rest) = match url.split_once("://") {
        Some(("https", rest)) => (true, rest),
        Some(("http", rest)) => (false, rest),
        _ => bail!("`{url}` is not https://IP:PORT"),
    };
    let addr: SocketAddr =
        rest.trim_end_matches('/').parse().with_context(|| format!("`{url}` is not https://IP:PORT"))?;
    let token = token.context("a token is needed to call a node: --token or YIPAN_TOKEN (see `yipan token create`)")?;
    let tls = if tls {
        let ca = ca.with_context(|| {
            format!("--ca-cert FILE (or YIPAN_CA_CERT) is needed to trust the certificate of {url}")
        })?;
        Some(yipan_access::tls::client_config(ca, None)?)
    } else {
        if !insecure {
            bail!("{url} is plain HTTP: the token would travel unencrypted; use https:// (or --insecure for a local experiment)");
        }
        eprintln!("warning: {url} is plain HTTP: the token travels unencrypted (--insecure)");
        None
    };
    Ok(http::Client::new(addr, tls, Some(token.to_string())))
}

/// `GET path`, failing unless 200.
pub fn get(client: &http::Client, path: &str) -> Result<String> {
    let addr = client.addr;
    let (status, body) = client.request("GET", path, None).map_err(|e| anyhow!("GET {path} from {addr}: {e}"))?;
    if status != 200 {
        bail!("GET {path} from {addr}: HTTP {status}: {body}");
    }
    Ok(body)
}

fn store(data_dir: &Path, file: Option<&Path>) -> Result<TokenStore> {
    let path = file.map(Path::to_path_buf).unwrap_or_else(|| TokenStore::default_path(data_dir));
    Ok(TokenStore::open(&path)?)
}

/// `yipan token create`.
pub fn token_create(
    data_dir: &Path,
    file: Option<&Path>,
    role: &str,
    name: &str,
    expires: Option<&str>,
) -> Result<ExitCode> {
    let role: Role = role.parse().map_err(|e| anyhow!("--role: {e}"))?;
    let expires = expires
        .map(|d| {
            let date = chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map_err(|_| anyhow!("--expires: `{}` is not YYYY-MM-DD", yipan_core::clip(d)))?;
            // The end of that day, China time.
            let end = date.and_hms_opt(23, 59, 59).context("--expires")? - chrono::Duration::hours(8);
            Ok::<_, anyhow::Error>(end.and_utc())
        })
        .transpose()?;
    let mut s = store(data_dir, file)?;
    let (record, token) = s.create(role, name, expires, chrono::Utc::now())?;
    eprintln!(
        "created token {} for {} with role {}{}; it is shown only now:",
        record.id,
        record.name,
        record.role,
        record.expires_at.map(|e| format!(", expiring {}", e.to_rfc3339())).unwrap_or_default()
    );
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

/// `yipan token list`.
pub fn token_list(data_dir: &Path, file: Option<&Path>, json: bool) -> Result<ExitCode> {
    let s = store(data_dir, file)?;
    let now = chrono::Utc::now();
    for t in s.list() {
        if json {
            println!(
                "{}",
                serde_json::json!({"id": t.id, "name": t.name, "role": t.role, "created_at": t.created_at,
                    "expires_at": t.expires_at, "revoked_at": t.revoked_at, "status": t.status(now)})
            );
        } else {
            println!(
                "{}  {:<16} {:<8} {:<24} created {}{}",
                t.id,
                t.role.name(),
                t.status(now),
                t.name,
                t.created_at.format("%Y-%m-%d"),
                t.expires_at.map(|e| format!(", expires {}", e.format("%Y-%m-%d"))).unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `yipan token revoke`.
pub fn token_revoke(data_dir: &Path, file: Option<&Path>, id: &str) -> Result<ExitCode> {
    let mut s = store(data_dir, file)?;
    let t = s.revoke(id, chrono::Utc::now())?;
    println!("revoked token {} ({}, {}); a running node refuses it within a second", t.id, t.name, t.role);
    Ok(ExitCode::SUCCESS)
}

fn localities(list: &str) -> Result<Vec<Locality>> {
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| Locality::parse(s.trim()).map_err(|p| anyhow!("--localities: {p}")))
        .collect()
}

/// `yipan nats users`: NKey seeds and the server's authorization block.
pub fn nats_users(list: &str, downstream: &[String], inbox_provinces: &str, out: &Path) -> Result<ExitCode> {
    let mut principals: Vec<Principal> = localities(list)?.into_iter().map(Principal::Locality).collect();
    let mut seen = std::collections::HashSet::new();
    for d in downstream {
        let (l, role) = d.split_once(':').with_context(|| format!("--downstream: `{d}` is not LOCALITY:ROLE"))?;
        let l = Locality::parse(l).map_err(|p| anyhow!("--downstream: {p}"))?;
        let role: Audience = role.parse().map_err(|e| anyhow!("--downstream: {e}"))?;
        principals.push(Principal::Downstream(l, role));
    }
    principals.extend([Principal::Auditor, Principal::Admin, Principal::Authority(0)]);
    // The publisher of each province's trust authority (docs/trust.md).
    let provinces: std::collections::BTreeSet<u8> = localities(list)?.iter().map(|l| l.province()).collect();
    principals.extend(provinces.into_iter().map(Principal::Authority));
    principals.extend(province_codes(inbox_provinces, "--inbox-provinces")?.into_iter().map(Principal::Inbox));
    // nats-server refuses a config that lists one key twice.
    principals.retain(|p| seen.insert(*p));
    let keys = out.join("nkeys");
    let users = principals.into_iter().map(|p| ensure_user(&keys, p)).collect::<Result<Vec<_>, _>>()?;
    let conf = out.join("auth.conf");
    std::fs::write(&conf, render_authorization(&users)).with_context(|| format!("writing {}", conf.display()))?;
    for u in &users {
        println!("{:<28} {}  seed {}", u.principal.name(), u.public_key, u.seed_file.display());
    }
    println!("wrote {} (include it from nats-server.conf and reload the server)", conf.display());
    Ok(ExitCode::SUCCESS)
}

/// Province codes of a comma-separated list (`61,41`): each one of the 31
/// provinces (or `00`, never a province here).
fn province_codes(list: &str, flag: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for p in list.split(',').filter(|s| !s.trim().is_empty()) {
        let n: u8 = p
            .trim()
            .parse()
            .ok()
            .filter(|n| yipan_core::locality::PROVINCES.iter().any(|(c, _)| c == n))
            .ok_or_else(|| anyhow!("{flag}: `{}` is not the 2-digit code of a province", yipan_core::clip(p)))?;
        out.push(n);
    }
    Ok(out)
}

/// `yipan nats provision`: the admin creates the event and downstream streams.
pub fn nats_provision(
    url: &str,
    nkey: &Path,
    ca: Option<&Path>,
    (replicas, cluster_prefix): (usize, Option<String>),
    provinces: &str,
    localities_list: &str,
) -> Result<ExitCode> {
    let mut list = province_codes(provinces, "--provinces")?;
    list.extend(localities(localities_list)?.iter().map(|l| l.province()));
    list.sort();
    list.dedup();
    if list.is_empty() {
        bail!("give --provinces 61,41 or --localities 610112,411522");
    }
    let cfg = yipan_sync::SyncConfig {
        nats_url: url.into(),
        nats_nkey_file: Some(nkey.to_path_buf()),
        nats_ca_file: ca.map(Path::to_path_buf),
        manage_streams: true,
        stream_replicas: replicas,
        stream_cluster_prefix: cluster_prefix,
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let client = yipan_sync::connect_options(&cfg, Principal::Admin)?
            .connect(yipan_sync::servers(url).as_slice())
            .await
            .with_context(|| format!("connecting to {} as admin", yipan_access::secret::redact_url(url)))?;
        yipan_sync::provision(&async_nats::jetstream::new(client), &list, &cfg).await?;
        anyhow::Ok(())
    })?;
    let names: Vec<String> = list.iter().map(|p| format!("YIPAN_EV_{p:02}, YIPAN_DOWN_{p:02}")).collect();
    println!("streams ready: {}", names.join(", "));
    Ok(ExitCode::SUCCESS)
}

/// `yipan tls dev`: a throw-away CA and certificates for a local setup.
pub fn tls_dev(out: &Path, hosts: &[String], clients: &[String]) -> Result<ExitCode> {
    let ca = yipan_access::pki::DevCa::create(out, "Yipan local CA (throw-away)")?;
    let hosts: Vec<&str> =
        if hosts.is_empty() { vec!["127.0.0.1", "localhost"] } else { hosts.iter().map(String::as_str).collect() };
    let mut written: Vec<PathBuf> = vec![ca.ca_path()];
    for name in ["nats", "node"] {
        let i = ca.server(name, &hosts)?;
        written.extend([i.cert, i.key]);
    }
    for c in clients {
        let i = ca.client(&format!("client-{c}"), c)?;
        written.extend([i.cert, i.key]);
    }
    eprintln!("THROW-AWAY certificates for local use only; production uses the deployment's own CA.");
    for w in written {
        println!("{}", w.display());
    }
    Ok(ExitCode::SUCCESS)
}
