//! The data directory: `yipan.toml` (locality, person-key secret), `keys/`
//! (ed25519 key pair) and `log/` (the sled store).

use std::path::Path;

use crate::error::{Error, Result};
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
    let key = prepare(dir, locality, secret)?;
    // Opening the store records the locality and puts the key in the roster.
    let signing = keyfile::load(dir)?;
    SledStore::open(SledBackend::open(&dir.join("log"))?, locality, signing)?;
    Ok(key)
}

/// Creates `yipan.toml` and the key pair of a data directory whose log lives
/// elsewhere (a host's tenant: its log is a tree of the host's shared store,
/// recorded when the host first opens it). Refuses an initialised directory.
pub fn prepare(dir: &Path, locality: Locality, secret: Option<&[u8]>) -> Result<VerifyingKey> {
    if config_path(dir).exists() {
        return Err(Error::file(dir, "is already initialised (found yipan.toml)"));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
    let key = keyfile::generate()?;
    keyfile::create(dir, &key)?;
    let config = Config { locality: locality.to_string(), person_key_secret: secret.map(hex::encode) };
    let text = toml::to_string(&config).map_err(|e| Error::file(&config_path(dir), e))?;
    write_private(&config_path(dir), text.as_bytes())?;
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
    let mut f = options.open(path).map_err(|e| Error::file(path, e))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| Error::file(path, e))
}

/// Opens an initialised data directory with the trust anchor it recorded (if any).
pub fn open(dir: &Path) -> Result<DataDir> {
    open_with(dir, None)
}

/// Opens an initialised data directory verifying trust up to `anchor`
/// (recorded in the store; `None` keeps the recorded one).
pub fn open_with(dir: &Path, anchor: Option<VerifyingKey>) -> Result<DataDir> {
    let log = dir.join("log");
    open_in(dir, anchor, || Ok(SledBackend::open(&log)?))
}

/// Opens an initialised data directory whose log is the backend `store`
/// gives (called again if an interrupted key handover must be finished).
pub fn open_in(dir: &Path, anchor: Option<VerifyingKey>, store: impl Fn() -> Result<SledBackend>) -> Result<DataDir> {
    let path = config_path(dir);
    if path.exists() {
        // It holds the person-key secret.
        yipan_access::secret::check_private(&path)?;
    }
    let text = std::fs::read_to_string(&path).map_err(|_| {
        Error::file(
            dir,
            format!(
                "is not a Yipan data directory (no yipan.toml); run `yipan init --locality CODE --data-dir {}`",
                dir.display()
            ),
        )
    })?;
    // The parser's own message quotes the offending line, which may be the secret.
    let config: Config =
        toml::from_str(&text).map_err(|e| Error::file(&path, format!("not a valid yipan.toml ({})", e.message())))?;
    let locality = Locality::parse(&config.locality).map_err(|p| Error::file(&path, format!("locality {p}")))?;
    let person_secret = config
        .person_key_secret
        .map(|s| hex::decode(s).map_err(|_| Error::file(&path, "person_key_secret is not hex")))
        .transpose()?;
    let key = keyfile::load(dir)?;
    let log = match SledStore::open_with_anchor(store()?, locality, key, anchor) {
        // A handover that was made durable before the key file was swapped
        // (`yipan key rotate` interrupted): finish it with the waiting next key.
        Err(yipan_log::Error::KeyMismatch { .. }) if keyfile::load_next(dir)?.is_some() => {
            let next = keyfile::load_next(dir)?.ok_or_else(|| Error::file(dir, "next key vanished"))?;
            let log = SledStore::open_with_anchor(store()?, locality, next, anchor)?;
            keyfile::promote_next(dir)?;
            tracing::warn!(%locality, "finished an interrupted key handover: the next key is now this node's key");
            log
        }
        other => other?,
    };
    Ok(DataDir { locality, person_secret, log })
}
