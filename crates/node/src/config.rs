//! `node.toml`: what `yipan node run --config node.toml` reads.
//!
//! ```toml
//! data_dir = "/var/lib/yipan/610112"   # made by `yipan init`
//! listen = "127.0.0.1:8610"            # HTTP API
//!
//! [sync]
//! nats_url = "nats://127.0.0.1:4222"
//! head_interval_ms = 2000
//! repair_grace_ms = 1000
//! ```
//! Every `[sync]` key is optional; see [`yipan_sync::SyncConfig`].

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
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
    /// Replication settings (including `downstream` roles).
    #[serde(default)]
    pub sync: SyncConfig,
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
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("{}", path.display()))
    }

    /// A configuration for `data_dir` with defaults and the given NATS URL.
    pub fn new(data_dir: PathBuf, nats_url: &str) -> NodeConfig {
        NodeConfig {
            data_dir,
            listen: default_listen(),
            calendar: None,
            views_interval_s: default_views_interval(),
            sync: SyncConfig { nats_url: nats_url.into(), ..Default::default() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deployed_example_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/node/node.toml");
        let cfg = NodeConfig::load(&path).unwrap();
        assert_eq!(cfg.sync.nats_url, "nats://127.0.0.1:4222");
        assert_eq!(cfg.sync.repair_grace_ms, 1000);
        let err = toml::from_str::<NodeConfig>("data_dir = \"x\"\nlisten_on = \"y\"").unwrap_err().to_string();
        assert!(err.contains("unknown field `listen_on`"), "{err}");
    }
}
