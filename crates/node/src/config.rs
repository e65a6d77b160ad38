//! `node.toml`: what `yipan node run --config node.toml` reads.
//!
//! ```toml
//! data_dir = "/var/lib/yipan/610112"   # made by `yipan init`
//! listen = "0.0.0.0:8610"              # HTTPS API
//!
//! [http.tls]
//! cert = "/etc/yipan/tls/node.pem"
//! key = "/etc/yipan/tls/node.key"      # mode 0600
//! client_ca = "/etc/yipan/tls/clients-ca.pem"   # optional: mTLS
//! clients = [{ name = "shaanxi-platform", role = "statistics" }]
//!
//! [trust]
//! anchor = "3b6a27bc…"                 # the national root's public key (hex)
//!
//! [sync]
//! nats_url = "tls://nats.example:4222"
//! nats_nkey_file = "/etc/yipan/nats/locality-610112.nk"   # mode 0600
//! nats_ca_file = "/etc/yipan/tls/ca.pem"
//! ```
//! Every `[sync]` key is optional; see [`yipan_sync::SyncConfig`]. A node
//! refuses to start without HTTP TLS, a NATS NKey, a NATS CA and a trust
//! anchor unless `insecure = true` (local experiments only; logged loudly);
//! an air-gapped site that trusts only hand-added keys says
//! `[trust] hand_added_keys_only = true` instead of an anchor.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use yipan_sync::SyncConfig;

/// A node's configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The locality's data directory.
    pub data_dir: PathBuf,
    /// Address of the HTTP API.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Working-day calendar (JSON: holidays and make-up working days); Monday–Friday if absent.
    #[serde(default)]
    pub calendar: Option<PathBuf>,
    /// How often projection changes are published downstream, seconds.
    #[serde(default = "default_views_interval")]
    pub views_interval_s: u64,
    /// Plain HTTP and anonymous, unencrypted NATS: for local experiments
    /// only, logged loudly at start and shown in `/healthz`.
    #[serde(default)]
    pub insecure: bool,
    /// The HTTP API's TLS and credentials.
    #[serde(default)]
    pub http: HttpConfig,
    /// Whom to trust: the anchor every certificate chains to.
    #[serde(default)]
    pub trust: TrustConfig,
    /// Replication settings (including `downstream` roles).
    #[serde(default)]
    pub sync: SyncConfig,
    /// Erasure deadline and retention periods (docs/privacy.md).
    #[serde(default)]
    pub privacy: crate::erasure::PrivacyConfig,
    /// Bounds of what this node accepts at append.
    #[serde(default)]
    pub validation: ValidationConfig,
}

/// `[validation]`: the plausible range of `occurred_at` for events this node
/// writes (received events are judged by the wider fixed range 1949-10-01 …
/// recorded + 7 days, so differing settings never make one node refuse another's).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationConfig {
    /// Earliest `occurred_at` accepted, e.g. `"1995-01-01"` for a late import of
    /// older records (default 2000-01-01; not before 1949-10-01).
    #[serde(default)]
    pub earliest_occurred: Option<chrono::NaiveDate>,
    /// How many hours after its recording an event may say it occurred (default 24, at most 168).
    #[serde(default)]
    pub max_future_skew_hours: Option<u32>,
}

impl ValidationConfig {
    /// The bounds, or what is wrong with the settings.
    pub fn bounds(&self) -> std::result::Result<yipan_core::validate::OccurredBounds, String> {
        yipan_core::validate::OccurredBounds::configured(self.earliest_occurred, self.max_future_skew_hours)
    }
}

/// `[trust]` (docs/trust.md).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustConfig {
    /// The national root's public key (hex, 64 digits): `yipan authority init-root` prints it.
    #[serde(default)]
    pub anchor: Option<String>,
    /// An air-gapped site without an authority: trust only keys added with
    /// `yipan roster add` (the exception; logged at start).
    #[serde(default)]
    pub hand_added_keys_only: bool,
}

impl TrustConfig {
    /// The anchor as a key.
    pub fn anchor_key(&self) -> Result<Option<ed25519_dalek::VerifyingKey>> {
        self.anchor
            .as_deref()
            .map(|a| {
                yipan_log::keyfile::parse_public(a)
                    .map_err(|p| Error::Config(format!("[trust] anchor {p} (64 hex digits of the root's public key)")))
            })
            .transpose()
    }
}

/// `[http]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Token file (hashes only); default `<data_dir>/tokens.json`.
    #[serde(default)]
    pub tokens: Option<PathBuf>,
    /// TLS of the listener; required unless `insecure`.
    #[serde(default)]
    pub tls: Option<HttpTls>,
}

impl HttpConfig {
    /// The roles of the client certificates that name no tenant (a node's
    /// own; on a host, those for the host's endpoints), by common name.
    pub fn certificate_roles(&self) -> std::collections::HashMap<String, yipan_access::Role> {
        self.tls
            .iter()
            .flat_map(|t| t.clients.iter())
            .filter(|c| c.tenant.is_none())
            .map(|c| (c.name.clone(), c.role))
            .collect()
    }
}

/// `[http.tls]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTls {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM, mode 0600).
    pub key: PathBuf,
    /// CA of client certificates accepted as credentials (mTLS).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Client certificates (by subject common name) and their roles.
    #[serde(default)]
    pub clients: Vec<ClientCertificate>,
}

/// A client certificate mapped to a role.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCertificate {
    /// Subject common name.
    pub name: String,
    /// Its role.
    pub role: yipan_access::Role,
    /// In a host's configuration: the tenant (locality code) whose API the
    /// certificate may call; absent, it may call only the host's own
    /// endpoints (`/host/…`). Never set in a node's configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

fn default_views_interval() -> u64 {
    60
}

fn default_listen() -> String {
    "127.0.0.1:8610".into()
}

impl NodeConfig {
    /// Reads a `node.toml`.
    pub fn load(path: &Path) -> Result<NodeConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?;
        toml::from_str(&text).map_err(|e| Error::file(path, e))
    }

    /// An **insecure** configuration for `data_dir` (plain HTTP, anonymous
    /// NATS, streams created by the node): for benchmarks' baselines and
    /// local experiments only. Secure configurations come from `node.toml`
    /// or [`crate::provision::Deployment::node_config`].
    pub fn insecure(data_dir: PathBuf, nats_url: &str) -> NodeConfig {
        NodeConfig {
            data_dir,
            listen: default_listen(),
            calendar: None,
            views_interval_s: default_views_interval(),
            insecure: true,
            http: HttpConfig::default(),
            trust: TrustConfig::default(),
            sync: SyncConfig { nats_url: nats_url.into(), manage_streams: true, ..Default::default() },
            privacy: Default::default(),
            validation: Default::default(),
        }
    }

    /// Refuses a configuration that would run without authentication or TLS
    /// unless it says `insecure = true`.
    pub fn check(&self) -> Result<()> {
        self.validation.bounds().map_err(|e| Error::Config(format!("[validation] {e}")))?;
        if self.sync.nats_url.split(',').any(|u| u.contains('@')) {
            return Err(Error::Config(
                "[sync] nats_url carries credentials (user@host): the NATS client logs URLs at debug level; \
                 use nats_nkey_file instead"
                    .into(),
            ));
        }
        if let Some(t) = &self.http.tls {
            if !t.clients.is_empty() && t.client_ca.is_none() {
                return Err(Error::Config(
                    "[http.tls] clients are listed but no client_ca: client certificates cannot be verified".into(),
                ));
            }
        }
        self.trust.anchor_key()?;
        if self.insecure {
            return Ok(());
        }
        let mut missing = Vec::new();
        if self.trust.anchor.is_none() && !self.trust.hand_added_keys_only {
            missing.push("[trust] anchor");
        }
        if self.http.tls.is_none() {
            missing.push("[http.tls] cert and key");
        }
        if self.sync.nats_nkey_file.is_none() {
            missing.push("[sync] nats_nkey_file");
        }
        if self.sync.nats_ca_file.is_none() {
            missing.push("[sync] nats_ca_file");
        }
        if !missing.is_empty() {
            return Err(Error::Config(format!(
                "refusing to run without {}: see deploy/node/node.toml and docs/security.md \
                 (for a local experiment only, set `insecure = true`)",
                missing.join(", ")
            )));
        }
        Ok(())
    }

    /// The token file.
    pub fn tokens_path(&self) -> PathBuf {
        self.http.tokens.clone().unwrap_or_else(|| yipan_access::TokenStore::default_path(&self.data_dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deployed_example_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/node/node.toml");
        let cfg = NodeConfig::load(&path).unwrap();
        assert!(cfg.sync.nats_url.starts_with("tls://"));
        assert_eq!(cfg.sync.repair_grace_ms, 1000);
        cfg.check().expect("the shipped example is secure");
        assert!(!cfg.insecure && !cfg.sync.manage_streams);
        let mut open = cfg.clone();
        open.http.tls = None;
        assert!(open.check().unwrap_err().to_string().contains("[http.tls]"));
        let mut untrusting = cfg.clone();
        untrusting.trust.anchor = None;
        assert!(untrusting.check().unwrap_err().to_string().contains("[trust] anchor"));
        untrusting.trust.hand_added_keys_only = true;
        untrusting.check().expect("the air-gapped exception is explicit");
        let mut bad = cfg.clone();
        bad.trust.anchor = Some("12zz".into());
        assert!(bad.check().unwrap_err().to_string().contains("[trust] anchor"));
        let mut userinfo = cfg.clone();
        userinfo.sync.nats_url = "tls://u:secret@h:4222".into();
        let e = userinfo.check().unwrap_err().to_string();
        assert!(e.contains("carries credentials") && !e.contains("secret"), "{e}");
        assert_eq!(cfg.http.tls.as_ref().unwrap().clients[0].role, yipan_access::Role::Statistics);
        let err = toml::from_str::<NodeConfig>("data_dir = \"x\"\nlisten_on = \"y\"").unwrap_err().to_string();
        assert!(err.contains("unknown field `listen_on`"), "{err}");
        // [validation] bounds: the example's, and settings outside what any node accepts.
        assert_eq!(cfg.validation.bounds().unwrap().earliest.date_naive().to_string(), "2000-01-01");
        let mut early = cfg.clone();
        early.validation.earliest_occurred = chrono::NaiveDate::from_ymd_opt(1930, 1, 1);
        let e = early.check().unwrap_err().to_string();
        assert!(e.contains("[validation] earliest_occurred: 1930-01-01 is before 1949-10-01"), "{e}");
        let retention: NodeConfig = toml::from_str(
            "data_dir = \"x\"\n[privacy.retention]\nhealth_years = 5\n[validation]\nearliest_occurred = \"1995-01-01\"",
        )
        .unwrap();
        assert_eq!(retention.privacy.retention.health_years, 5);
        assert_eq!(retention.validation.bounds().unwrap().earliest.date_naive().to_string(), "1995-01-01");
    }
}
