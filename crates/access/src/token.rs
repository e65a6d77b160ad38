//! Bearer API tokens. `yipan token create` prints a token once; the node
//! keeps only its SHA-256 in `tokens.json` (mode `0600`) beside the data
//! directory, with the role, the name of whom it was given to, an optional
//! expiry and a revocation time. A running node picks up changes to the file
//! within a second, so revocation needs no restart.
//!
//! A token reads `yipan_<id>_<secret>`: `id` is 8 hex digits (public, shown
//! by `token list`, used to revoke), `secret` 64 hex digits (256 random bits).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{secret, Error, Result, Role};

/// One issued token (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Public identifier (8 hex digits).
    pub id: String,
    /// Whom it was given to (a person or a system), for the operator.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// After this instant it is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked; refused from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    /// SHA-256 of the secret part, hex.
    pub sha256: String,
}

impl TokenRecord {
    /// `active`, `expired` or `revoked` at `now`.
    pub fn status(&self, now: DateTime<Utc>) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at.is_some_and(|e| e <= now) {
            "expired"
        } else {
            "active"
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    version: u32,
    tokens: Vec<TokenRecord>,
}

/// How a caller proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// A bearer token with this id.
    Token(String),
    /// A client certificate with this subject common name.
    Certificate(String),
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Its role.
    pub role: Role,
    /// How it authenticated (token id or certificate name; never the secret).
    pub via: Via,
}

impl Caller {
    /// A label for logs and disclosure records: `token:<id>` or `cert:<name>`.
    pub fn label(&self) -> String {
        match &self.via {
            Via::Token(id) => format!("token:{id}"),
            Via::Certificate(cn) => format!("cert:{cn}"),
        }
    }
}

/// Why a presented token was refused. Messages never include the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No credential at all.
    #[error("no credential: send `Authorization: Bearer <token>` (see `yipan token create`) or a client certificate")]
    Missing,
    /// Not of the token form.
    #[error("the bearer token is malformed (expected yipan_<id>_<secret>)")]
    Malformed,
    /// Unknown id or wrong secret.
    #[error("the bearer token is not valid for this node")]
    Unknown,
    /// Past its expiry.
    #[error("token {0} has expired")]
    Expired(String),
    /// Revoked by an operator.
    #[error("token {0} has been revoked")]
    Revoked(String),
    /// A client certificate this node does not map to a role.
    #[error("client certificate `{0}` is not mapped to a role on this node")]
    UnknownCertificate(String),
}

/// The token file of a node.
#[derive(Debug)]
pub struct TokenStore {
    path: PathBuf,
    tokens: BTreeMap<String, TokenRecord>,
    stamp: Option<(SystemTime, u64)>,
}

fn hash(secret: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"yipan-token-v1\0");
    h.update(secret.as_bytes());
    h.finalize().into()
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl TokenStore {
    /// The default file of a data directory.
    pub fn default_path(data_dir: &Path) -> PathBuf {
        data_dir.join("tokens.json")
    }

    /// Opens the token file at `path` (empty if it does not exist yet).
    pub fn open(path: &Path) -> Result<TokenStore> {
        let mut s = TokenStore { path: path.to_path_buf(), tokens: BTreeMap::new(), stamp: None };
        s.load()?;
        Ok(s)
    }

    fn load(&mut self) -> Result<()> {
        if !self.path.exists() {
            self.tokens.clear();
            self.stamp = None;
            return Ok(());
        }
        let text = secret::read_private(&self.path)?;
        let file: File = serde_json::from_str(&text).map_err(|e| Error::format(&self.path, e.to_string()))?;
        if file.version != 1 {
            return Err(Error::format(&self.path, format!("version {} is not supported (1 is)", file.version)));
        }
        self.tokens = file.tokens.into_iter().map(|t| (t.id.clone(), t)).collect();
        self.stamp = stamp(&self.path);
        Ok(())
    }

    /// Re-reads the file if it changed since it was read; returns whether it did.
    /// A file that cannot be read any more (wrong owner or mode, bad content)
    /// fails closed: every token is refused until it is readable again, so a
    /// revocation is never lost to an unreadable file.
    pub fn reload_if_changed(&mut self) -> Result<bool> {
        if stamp(&self.path) == self.stamp {
            return Ok(false);
        }
        match self.load() {
            Ok(()) => Ok(true),
            Err(e) => {
                self.tokens.clear();
                self.stamp = stamp(&self.path);
                Err(e)
            }
        }
    }

    /// Runs `change` on the current tokens under an exclusive lock of the
    /// file (so concurrent `yipan token` commands cannot undo each other),
    /// then saves.
    fn modify<T>(&mut self, change: impl FnOnce(&mut BTreeMap<String, TokenRecord>) -> Result<T>) -> Result<T> {
        let lock_path = self.path.with_extension("lock");
        let lock = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))?;
        lock.lock().map_err(|e| Error::io(&lock_path, e))?;
        self.load()?;
        let out = change(&mut self.tokens)?;
        self.save()?;
        Ok(out)
    }

    fn save(&mut self) -> Result<()> {
        let file = File { version: 1, tokens: self.tokens.values().cloned().collect() };
        let text = serde_json::to_string_pretty(&file).map_err(|e| Error::format(&self.path, e.to_string()))?;
        secret::write_private(&self.path, text.as_bytes())?;
        self.stamp = stamp(&self.path);
        Ok(())
    }

    /// Issues a token; returns its record and the token, which is shown only now.
    pub fn create(
        &mut self,
        role: Role,
        name: &str,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(TokenRecord, String)> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(Error::Invalid(
                "--name: give 1 to 64 printable characters saying whom the token is for".into(),
            ));
        }
        if expires_at.is_some_and(|e| e <= now) {
            return Err(Error::Invalid("--expires: the date is already past".into()));
        }
        let secret = hex::encode(secret::random_bytes::<32>()?);
        let name = name.to_string();
        self.modify(|tokens| {
            let id = loop {
                let id = hex::encode(secret::random_bytes::<4>()?);
                if !tokens.contains_key(&id) {
                    break id;
                }
            };
            let record = TokenRecord {
                id: id.clone(),
                name,
                role,
                created_at: now,
                expires_at,
                revoked_at: None,
                sha256: hex::encode(hash(&secret)),
            };
            tokens.insert(id.clone(), record.clone());
            Ok((record, format!("yipan_{id}_{secret}")))
        })
    }

    /// Revokes the token `id`.
    pub fn revoke(&mut self, id: &str, now: DateTime<Utc>) -> Result<TokenRecord> {
        self.modify(|tokens| {
            let Some(t) = tokens.get_mut(id) else {
                return Err(Error::Invalid(format!("no token `{}` (see `yipan token list`)", yipan_core::clip(id))));
            };
            if t.revoked_at.is_none() {
                t.revoked_at = Some(now);
            }
            Ok(t.clone())
        })
    }

    /// Every issued token.
    pub fn list(&self) -> impl Iterator<Item = &TokenRecord> {
        self.tokens.values()
    }

    /// The caller a presented token stands for, at `now`.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Caller, Refused> {
        let rest = token.strip_prefix("yipan_").ok_or(Refused::Malformed)?;
        let (id, secret) = rest.split_once('_').ok_or(Refused::Malformed)?;
        if id.len() != 8 || secret.len() != 64 {
            return Err(Refused::Malformed);
        }
        let record = self.tokens.get(id).ok_or(Refused::Unknown)?;
        let expected = hex::decode(&record.sha256).map_err(|_| Refused::Unknown)?;
        if !bool::from(hash(secret).ct_eq(expected.as_slice())) {
            return Err(Refused::Unknown);
        }
        match record.status(now) {
            "revoked" => Err(Refused::Revoked(record.id.clone())),
            "expired" => Err(Refused::Expired(record.id.clone())),
            _ => Ok(Caller { role: record.role, via: Via::Token(record.id.clone()) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_verify_expire_revoke_and_reload() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("tokens.json");
        let now = Utc::now();
        let mut s = TokenStore::open(&path).unwrap();
        let (rec, tok) = s.create(Role::Clerk, "王 clerk", None, now).unwrap();
        let (_, short) = s.create(Role::Auditor, "audit", Some(now + chrono::Duration::hours(1)), now).unwrap();
        assert!(!std::fs::read_to_string(&path).unwrap().contains(&tok[15..]), "the secret is never stored");
        assert_eq!(s.verify(&tok, now).unwrap().role, Role::Clerk);
        assert_eq!(s.verify(&short, now + chrono::Duration::hours(2)), Err(Refused::Expired(short[6..14].into())));
        let mut wrong = tok.clone();
        wrong.pop();
        wrong.push(if tok.ends_with('0') { '1' } else { '0' });
        assert_eq!(s.verify(&wrong, now), Err(Refused::Unknown));
        assert_eq!(s.verify("Bearer x", now), Err(Refused::Malformed));

        // Another process (the CLI) revokes it; the running node notices.
        let mut other = TokenStore::open(&path).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        other.revoke(&rec.id, now).unwrap();
        assert!(s.reload_if_changed().unwrap());
        assert_eq!(s.verify(&tok, now), Err(Refused::Revoked(rec.id.clone())));
        assert!(!s.reload_if_changed().unwrap());
        assert!(s.create(Role::Clerk, "", None, now).is_err());
        assert!(s.revoke("nope", now).unwrap_err().to_string().contains("no token"));

        // An unreadable file fails closed: no token is accepted any more.
        let (_, fresh) = s.create(Role::Clerk, "fresh", None, now).unwrap();
        assert!(s.verify(&fresh, now).is_ok());
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, "{ not json").unwrap();
        assert!(s.reload_if_changed().is_err());
        assert_eq!(s.verify(&fresh, now), Err(Refused::Unknown));
    }

    #[test]
    fn concurrent_commands_do_not_undo_each_other() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("tokens.json");
        let now = Utc::now();
        let (rec, _) = TokenStore::open(&path).unwrap().create(Role::Clerk, "x", None, now).unwrap();
        // Two stores opened before either writes, as two CLI processes would be.
        let mut a = TokenStore::open(&path).unwrap();
        let mut b = TokenStore::open(&path).unwrap();
        a.revoke(&rec.id, now).unwrap();
        b.create(Role::Auditor, "y", None, now).unwrap();
        let after = TokenStore::open(&path).unwrap();
        assert_eq!(after.list().count(), 2);
        assert!(after.list().any(|t| t.id == rec.id && t.revoked_at.is_some()), "the revocation survived");
    }
}
