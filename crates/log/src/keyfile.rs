//! The locality's ed25519 signing key on disk: `keys/ed25519.secret` (hex,
//! readable by its owner only) and `keys/ed25519.pub` (hex).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::error::{Error, Result};

/// Path of the secret key file under a data directory.
pub fn secret_path(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("ed25519.secret")
}

/// Path of the public key file under a data directory.
pub fn public_path(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("ed25519.pub")
}

/// A fresh random signing key.
pub fn generate() -> Result<SigningKey> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed)
        .map_err(|e| Error::KeyFile { path: "(random source)".into(), problem: e.to_string() })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Writes a new key pair; refuses to overwrite an existing secret.
pub fn create(data_dir: &Path, key: &SigningKey) -> Result<()> {
    write_secret(&secret_path(data_dir), key, "already exists; this data directory is initialised")?;
    fs::write(public_path(data_dir), hex::encode(key.verifying_key().to_bytes()))
        .map_err(|e| Error::KeyFile { path: public_path(data_dir).display().to_string(), problem: e.to_string() })?;
    Ok(())
}

/// Writes a secret key file (mode 0600); refuses to overwrite one.
pub fn write_secret(path: &Path, key: &SigningKey, exists: &str) -> Result<()> {
    let err = |problem: String| Error::KeyFile { path: path.display().to_string(), problem };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| err(e.to_string()))?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            err(exists.into())
        } else {
            err(e.to_string())
        }
    })?;
    f.write_all(hex::encode(key.to_bytes()).as_bytes()).and_then(|_| f.sync_all()).map_err(|e| err(e.to_string()))
}

/// Loads the signing key of a data directory.
pub fn load(data_dir: &Path) -> Result<SigningKey> {
    load_from(&secret_path(data_dir)).map_err(|e| match e {
        Error::KeyFile { path, problem } if problem.starts_with("No such file") => {
            Error::KeyFile { path, problem: format!("{problem}; run `yipan init` first") }
        }
        other => other,
    })
}

/// Loads a secret key file (refused if readable by others).
pub fn load_from(path: &Path) -> Result<SigningKey> {
    let err = |problem: String| Error::KeyFile { path: path.display().to_string(), problem };
    #[cfg(unix)]
    if let Ok(meta) = fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(err(format!("holds a signing key but has mode {mode:o}: run `chmod 600` on it")));
        }
    }
    let text = fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let bytes = hex::decode(text.trim()).map_err(|_| err("is not hex".into()))?;
    let seed: [u8; 32] = bytes.try_into().map_err(|_| err("is not a 32-byte ed25519 secret".into()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Path of the next key (made by `yipan key next`, waiting for its certificate and handover).
pub fn next_secret_path(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("ed25519.next.secret")
}

/// The next key, if one is waiting.
pub fn load_next(data_dir: &Path) -> Result<Option<SigningKey>> {
    let path = next_secret_path(data_dir);
    if !path.exists() {
        return Ok(None);
    }
    load_from(&path).map(Some)
}

/// Makes the next key the data directory's key (after its handover event is
/// durable): an atomic rename over the old secret, which is thereby destroyed.
pub fn promote_next(data_dir: &Path) -> Result<()> {
    let next = next_secret_path(data_dir);
    let key = load_from(&next)?;
    fs::rename(&next, secret_path(data_dir))
        .map_err(|e| Error::KeyFile { path: next.display().to_string(), problem: e.to_string() })?;
    fs::write(public_path(data_dir), hex::encode(key.verifying_key().to_bytes()))
        .map_err(|e| Error::KeyFile { path: public_path(data_dir).display().to_string(), problem: e.to_string() })
}

/// Parses a hex public key (roster input).
pub fn parse_public(hex_key: &str) -> std::result::Result<VerifyingKey, String> {
    let bytes = hex::decode(hex_key.trim()).map_err(|_| "is not hex".to_string())?;
    let arr: [u8; 32] = bytes.try_into().map_err(|_| "is not 32 bytes".to_string())?;
    VerifyingKey::from_bytes(&arr).map_err(|_| "is not a valid ed25519 public key".to_string())
}
