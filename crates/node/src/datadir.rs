//! The data directory: `yipan.toml` (locality, person-key secret), `keys/`
//! (ed25519 key pair) and `log/` (the sled store).

use std::path::Path;

use anyhow::{bail, Context, Result};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use yipan_core::Locality;
use yipan_log::{keyfile, SledBackend, SledStore};

/// `yipan.toml`. No `Debug`: it holds the person-key secret.
#[derive(Serialize, Deserialize)]
pub struct Config {
    /// This node's division code.
    pub locality: String,
    /// Hex secret for deriving person keys from ID numbers (shared deployment-wide).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person_key_secret: Option<String>,
}

/// An opened data directory.
pub struct DataDir {
    /// This node's locality.
    pub locality: Locality,
    /// Secret for deriving person keys, if configured.
    pub person_secret: Option<Vec<u8>>,
    /// The log.
    pub log: SledStore,
}

fn config_path(dir: &Path) -> std::path::PathBuf {
    dir.join("yipan.toml")
}

/// Creates a data directory; refuses to touch an initialised one.
pub fn init(dir: &Path, locality: Locality, secret: Option<&[u8]>) -> Result<VerifyingKey> {
    if config_path(dir).exists() {
        bail!("{} is already initialised (found yipan.toml)", dir.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let key = keyfile::generate()?;
    keyfile::create(dir, &key)?;
    let config = Config { locality: locality.to_string(), person_key_secret: secret.map(hex::encode) };
    let text = toml::to_string(&config)?;
    write_private(&config_path(dir), text.as_bytes())?;
    // Opening the store records the locality and puts the key in the roster.
    SledStore::open(SledBackend::open(&dir.join("log"))?, locality, key.clone())?;
    Ok(key.verifying_key())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

/// Opens an initialised data directory.
pub fn open(dir: &Path) -> Result<DataDir> {
    let path = config_path(dir);
    if path.exists() {
        // It holds the person-key secret.
        yipan_access::secret::check_private(&path)?;
    }
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{} is not a Yipan data directory (no yipan.toml); run `yipan init --locality CODE --data-dir {}`",
            dir.display(),
            dir.display()
        )
    })?;
    // The parser's own message quotes the offending line, which may be the secret.
    let config: Config = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: not a valid yipan.toml ({})", path.display(), e.message()))?;
    let locality =
        Locality::parse(&config.locality).map_err(|p| anyhow::anyhow!("{}: locality {p}", path.display()))?;
    let person_secret = config
        .person_key_secret
        .map(|s| hex::decode(s).with_context(|| format!("{}: person_key_secret is not hex", path.display())))
        .transpose()?;
    let key = keyfile::load(dir)?;
    let log = SledStore::open(SledBackend::open(&dir.join("log"))?, locality, key)?;
    Ok(DataDir { locality, person_secret, log })
}
