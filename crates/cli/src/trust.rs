//! `yipan authority …`, `yipan key …` and `yipan roster show`: trust as
//! signed data (docs/trust.md).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use yipan_access::nats::Principal;
use yipan_core::Locality;
use yipan_node::authority::{AuthorityDir, LocalityRequest};

#[derive(Subcommand)]
pub enum AuthorityAction {
    /// Create the national root key (DIR/root.key: move it offline afterwards) and print the
    /// trust anchor every node.toml names in `[trust] anchor`.
    InitRoot,
    /// The root certifies a province authority (creates its key if needed). Needs root.key.
    CertifyProvince {
        /// Two-digit province code, e.g. 61.
        #[arg(long)]
        province: u8,
        /// Name of the authority (default: <province>卫生健康委员会).
        #[arg(long, default_value = "")]
        name: String,
        #[arg(long, default_value_t = 3650)]
        days: i64,
    },
    /// A province authority certifies a locality's key: from --public-key, --key-file or the
    /// locality's --node-data-dir. For a key rotation give --replaces (the current serial);
    /// for recovery after revocation also --first-seq (the revocation bound + 1).
    CertifyLocality {
        #[arg(long)]
        locality: String,
        #[arg(long, default_value = "")]
        name: String,
        /// Hex ed25519 public key.
        #[arg(long)]
        public_key: Option<String>,
        /// A public key file (hex), e.g. the `ed25519.next.pub` that `yipan key next` writes.
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// The locality's data directory (its current key).
        #[arg(long)]
        node_data_dir: Option<PathBuf>,
        #[arg(long, default_value_t = 0)]
        replaces: u64,
        #[arg(long, default_value_t = 0)]
        first_seq: u64,
        #[arg(long, default_value_t = 1095)]
        days: i64,
    },
    /// Revoke a certificate by serial, as the authority of --province (or --root). For a
    /// locality key, --through-seq is the last author sequence that stays valid: the highest
    /// sequence of that locality the streams hold (`yipan authority witness`).
    Revoke {
        #[arg(long)]
        serial: u64,
        #[arg(long, conflicts_with = "root")]
        province: Option<u8>,
        #[arg(long)]
        root: bool,
        #[arg(long, default_value_t = 0)]
        through_seq: u64,
        #[arg(long)]
        reason: String,
    },
    /// Highest author sequence of a locality held by the event streams (the revocation bound),
    /// read as the auditor.
    Witness {
        #[arg(long)]
        locality: String,
        /// tls://HOST:PORT
        #[arg(long)]
        nats: String,
        /// The auditor's NKey seed file.
        #[arg(long)]
        nkey: PathBuf,
    },
    /// Publish statements not yet on the trust stream, as the authority's NATS user.
    Publish {
        /// Issuer: a province code, or 0 for the root.
        #[arg(long)]
        province: u8,
        /// tls://HOST:PORT
        #[arg(long)]
        nats: String,
        /// That authority's NKey seed file (`yipan nats users --authorities` writes it).
        #[arg(long)]
        nkey: PathBuf,
    },
    /// Every statement issued from this directory.
    List,
}

#[derive(Subcommand)]
pub enum KeyAction {
    /// Create the next signing key of this data directory (keys/ed25519.next.secret) and
    /// print its public key for the province authority to certify.
    Next,
    /// Hand the chain over to the next key (node stopped): appends a KeyRotated event signed
    /// by the current key that names --certificate, then makes the next key the node's key.
    Rotate {
        /// The authority's certificate for the next key (a .stmt file).
        #[arg(long)]
        certificate: PathBuf,
    },
}

pub fn authority(dir: &Path, action: AuthorityAction, ca: Option<&Path>) -> Result<ExitCode> {
    let a = AuthorityDir::at(dir);
    match action {
        AuthorityAction::InitRoot => {
            let k = a.init_root()?;
            println!(
                "root key: {} (0600; keep it offline once the province authorities are certified)",
                dir.join("root.key").display()
            );
            println!("trust anchor (node.toml [trust] anchor):\n{}", hex::encode(k.to_bytes()));
        }
        AuthorityAction::CertifyProvince { province, name, days } => {
            let f = a.certify_province(province, &name, days)?;
            println!("{}", f.display());
        }
        AuthorityAction::CertifyLocality {
            locality,
            name,
            public_key,
            key_file,
            node_data_dir,
            replaces,
            first_seq,
            days,
        } => {
            let l = Locality::parse(&locality).map_err(|p| anyhow!("--locality: {p}"))?;
            let text = match (public_key, key_file, node_data_dir) {
                (Some(k), _, _) => k,
                (None, Some(f), _) => {
                    std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?
                }
                (None, None, Some(d)) => std::fs::read_to_string(yipan_log::keyfile::public_path(&d))
                    .with_context(|| format!("reading the public key of {}", d.display()))?,
                _ => bail!("give --public-key, --key-file or --node-data-dir"),
            };
            let key = yipan_log::keyfile::parse_public(&text).map_err(|p| anyhow!("public key {p}"))?;
            let (f, serial) =
                a.certify_locality(&LocalityRequest { locality: l, name, key, days, replaces, first_seq })?;
            println!("certified {l} serial {serial}: {}", f.display());
        }
        AuthorityAction::Revoke { serial, province, root, through_seq, reason } => {
            let p = match (province, root) {
                (_, true) => 0,
                (Some(p), false) => p,
                (None, false) => bail!("give --province PP (the issuing authority) or --root"),
            };
            let f = a.revoke(p, serial, through_seq, &reason)?;
            println!("revoked serial {serial} (valid through author sequence {through_seq}): {}", f.display());
        }
        AuthorityAction::Witness { locality, nats, nkey } => {
            let l = Locality::parse(&locality).map_err(|p| anyhow!("--locality: {p}"))?;
            let cfg = nats_cfg(&nats, nkey, ca);
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let highest = rt.block_on(async {
                let client = yipan_sync::connect_options(&cfg, Principal::Auditor)?
                    .connect(yipan_sync::servers(&nats).as_slice())
                    .await?;
                yipan_audit::stream::highest_seq(client, l).await.map_err(anyhow::Error::msg)
            })?;
            println!("{highest}");
        }
        AuthorityAction::Publish { province, nats, nkey } => {
            let cfg = nats_cfg(&nats, nkey, ca);
            let principal = Principal::Authority(province);
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let n = rt.block_on(async {
                let client = yipan_sync::connect_options(&cfg, principal)?
                    .connect(yipan_sync::servers(&nats).as_slice())
                    .await
                    .with_context(|| format!("connecting as {}", principal.name()))?;
                anyhow::Ok(a.publish(province, client).await?)
            })?;
            println!("published {n} statement(s) of issuer {province:02}");
        }
        AuthorityAction::List => {
            for p in a.issuers() {
                for f in a.statements(p)? {
                    println!("{p:02}  {}", f.display());
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn nats_cfg(url: &str, nkey: PathBuf, ca: Option<&Path>) -> yipan_sync::SyncConfig {
    yipan_sync::SyncConfig {
        nats_url: url.into(),
        nats_nkey_file: Some(nkey),
        nats_ca_file: ca.map(Path::to_path_buf),
        ..Default::default()
    }
}

pub fn key(dir: &Path, action: KeyAction) -> Result<ExitCode> {
    match action {
        KeyAction::Next => {
            let path = yipan_log::keyfile::next_secret_path(dir);
            let k = yipan_log::keyfile::generate()?;
            yipan_log::keyfile::write_secret(&path, &k, "already exists: a next key is waiting for its handover")?;
            let public = path.with_file_name("ed25519.next.pub");
            std::fs::write(&public, hex::encode(k.verifying_key().to_bytes()))?;
            println!("next key: {} (public key in {})", hex::encode(k.verifying_key().to_bytes()), public.display());
            println!(
                "have the province authority certify it with --replaces <current serial>, then `yipan key rotate`"
            );
        }
        KeyAction::Rotate { certificate } => {
            let cert = std::fs::read(&certificate).with_context(|| format!("reading {}", certificate.display()))?;
            let next = yipan_log::keyfile::load_next(dir)?
                .context("no next key here: run `yipan key next` and have it certified first")?;
            let node = yipan_node::datadir::open(dir)?;
            let a = node.log.rotate_key(next, cert)?;
            drop(node);
            yipan_log::keyfile::promote_next(dir)?;
            let to: Vec<String> = a.recipients.iter().map(|(l, _)| l.to_string()).collect();
            println!(
                "handed over at #{} (event {}); events from #{} on are signed with the new key; sent to {}",
                a.seq,
                a.id,
                a.seq + 1,
                if to.is_empty() { "no channel yet (the trust stream carries it)".into() } else { to.join(", ") }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `yipan roster show`: each locality's key, status and certificate chain.
pub fn roster_show(dir: &Path, json: bool) -> Result<ExitCode> {
    let node = yipan_node::datadir::open(dir)?;
    let trust = node.log.trust();
    let view = trust.view(chrono::Utc::now());
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "anchor": trust.anchor().map(|a| hex::encode(a.to_bytes())),
                "authorities": trust.authorities(),
                "localities": view,
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    match trust.anchor() {
        Some(a) => println!("trust anchor {}", hex::encode(a.to_bytes())),
        None => println!("no trust anchor: hand-added keys only"),
    }
    for a in trust.authorities() {
        let state = if a.revoked.is_some() { "REVOKED" } else { "active" };
        println!(
            "authority {} {} serial {} valid {} .. {} {state}",
            a.province, a.name, a.serial, a.valid_from, a.valid_until
        );
    }
    for l in view {
        let me = if l.locality == node.locality.to_string() { "  (this node)" } else { "" };
        println!("{} {}  {}  {}{me}", l.locality, l.name, l.public_key, l.status);
        println!("    chain: {}", l.chain.join(" ← "));
        for s in &l.spans {
            println!("    from #{:<8} {}…  {} (serial {})", s.from_seq, &s.public_key[..16], s.how, s.serial);
        }
        for c in &l.certificates {
            let revoked = match &c.revoked {
                Some(r) => format!(", REVOKED after #{} ({})", r.valid_through_seq, r.reason),
                None => String::new(),
            };
            println!(
                "    certificate {} by authority {}: {} .. {}{revoked}",
                c.serial, c.issuer_province, c.valid_from, c.valid_until
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
