//! A trust authority's working directory (`yipan authority …`,
//! docs/trust.md): the national root's key (meant to live offline), the
//! province authorities' keys and certificates, and every statement issued,
//! kept as files and published to the trust stream.
//!
//! ```text
//! <dir>/root.key                       root secret (0600; move it offline after use)
//! <dir>/root.pub                       the trust anchor (hex) for every node.toml
//! <dir>/authorities/<pp>.key           province authority secret (0600)
//! <dir>/authorities/<pp>.pub
//! <dir>/statements/<pp>/<n>-<what>.stmt  SignedStatement bytes, by issuer (`00`: root)
//! <dir>/statements/<pp>/published      how many of them are on the trust stream
//! ```

use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeDelta, Utc};
use ed25519_dalek::{SigningKey, VerifyingKey};
use yipan_core::Locality;
use yipan_log::keyfile;
use yipan_trust::statement::{self, LocalityCert};

use crate::error::{Error, Result};

/// An authority directory.
pub struct AuthorityDir {
    dir: PathBuf,
}

/// What `certify_locality` needs besides the authority.
#[derive(Debug, Clone)]
pub struct LocalityRequest {
    /// The locality.
    pub locality: Locality,
    /// Its name.
    pub name: String,
    /// Its public key.
    pub key: VerifyingKey,
    /// Validity in days from now.
    pub days: i64,
    /// Serial of the certificate this one follows (0: first).
    pub replaces: u64,
    /// Recovery after revocation: first author sequence of the new key.
    pub first_seq: u64,
}

impl AuthorityDir {
    /// Opens (or prepares) an authority directory.
    pub fn at(dir: &Path) -> AuthorityDir {
        AuthorityDir { dir: dir.to_path_buf() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Creates the national root key; refuses to replace one.
    pub fn init_root(&self) -> Result<VerifyingKey> {
        let key = keyfile::generate()?;
        keyfile::write_secret(
            &self.dir.join("root.key"),
            &key,
            "already exists: a deployment has exactly one root (docs/trust.md)",
        )?;
        std::fs::write(self.dir.join("root.pub"), hex::encode(key.verifying_key().to_bytes()))
            .map_err(|e| Error::file(&self.dir.join("root.pub"), e))?;
        Ok(key.verifying_key())
    }

    /// The trust anchor (the root's public key).
    pub fn anchor(&self) -> Result<VerifyingKey> {
        let path = self.dir.join("root.pub");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::file(&path, format!("{e}; run `yipan authority init-root` first")))?;
        keyfile::parse_public(&text).map_err(|p| Error::file(&path, p))
    }

    fn root(&self) -> Result<SigningKey> {
        let path = self.dir.join("root.key");
        if !path.exists() {
            return Err(Error::file(
                &path,
                "is not here: the root key is kept offline; bring it back to certify or revoke a province authority",
            ));
        }
        Ok(keyfile::load_from(&path)?)
    }

    fn authority_key_path(&self, province: u8) -> PathBuf {
        self.dir.join("authorities").join(format!("{province:02}.key"))
    }

    /// The signing key of the authority of `province` (`0`: the root).
    pub fn issuer(&self, province: u8) -> Result<SigningKey> {
        if province == 0 {
            return self.root();
        }
        let path = self.authority_key_path(province);
        if !path.exists() {
            return Err(Error::file(
                &path,
                format!("is missing: certify the authority first (`yipan authority certify-province --province {province:02}`)"),
            ));
        }
        Ok(keyfile::load_from(&path)?)
    }

    /// Creates the authority key of `province` (kept if it exists) and the
    /// root's certificate for it. Returns the statement file.
    pub fn certify_province(&self, province: u8, name: &str, days: i64) -> Result<PathBuf> {
        let pname = yipan_core::locality::province_name(province)
            .ok_or_else(|| Error::Config(format!("--province {province:02} is not a province code")))?;
        let root = self.root()?;
        let path = self.authority_key_path(province);
        let key = if path.exists() {
            keyfile::load_from(&path)?
        } else {
            let k = keyfile::generate()?;
            keyfile::write_secret(&path, &k, "exists")?;
            std::fs::write(path.with_extension("pub"), hex::encode(k.verifying_key().to_bytes()))
                .map_err(|e| Error::file(&path.with_extension("pub"), e))?;
            k
        };
        let name = if name.is_empty() { format!("{pname}卫生健康委员会") } else { name.to_string() };
        let (from, until) = window(days);
        let serial = statement::new_serial();
        let kind = statement::authority_certificate(province, &name, &key.verifying_key(), serial, from, until);
        self.keep(0, &format!("authority-{province:02}-{serial}"), statement::sign(&root, kind, Utc::now()))
    }

    /// The authority of the locality's province certifies its key. Returns
    /// the statement file and the serial.
    pub fn certify_locality(&self, r: &LocalityRequest) -> Result<(PathBuf, u64)> {
        let p = r.locality.province();
        let issuer = self.issuer(p)?;
        let (from, until) = window(r.days);
        let serial = statement::new_serial();
        let c = LocalityCert {
            locality: r.locality,
            name: r.name.clone(),
            key: r.key,
            serial,
            valid_from: from,
            valid_until: until,
            replaces_serial: r.replaces,
            first_seq: r.first_seq,
        };
        let signed = statement::sign(&issuer, statement::locality_certificate(&c), Utc::now());
        Ok((self.keep(p, &format!("locality-{}-{serial}", r.locality), signed)?, serial))
    }

    /// Revokes `serial` as the authority of `province` (`0`: the root).
    pub fn revoke(&self, province: u8, serial: u64, through_seq: u64, reason: &str) -> Result<PathBuf> {
        let issuer = self.issuer(province)?;
        let signed = statement::sign(&issuer, statement::revocation(serial, through_seq, reason), Utc::now());
        self.keep(province, &format!("revocation-{serial}"), signed)
    }

    fn statements_dir(&self, province: u8) -> PathBuf {
        self.dir.join("statements").join(format!("{province:02}"))
    }

    fn keep(&self, province: u8, what: &str, signed: Vec<u8>) -> Result<PathBuf> {
        let dir = self.statements_dir(province);
        std::fs::create_dir_all(&dir).map_err(|e| Error::file(&dir, e))?;
        let n = self.statements(province)?.len() + 1;
        let path = dir.join(format!("{n:06}-{what}.stmt"));
        std::fs::write(&path, signed).map_err(|e| Error::file(&path, e))?;
        Ok(path)
    }

    /// Statement files issued by `province` (`0`: root), in issue order.
    pub fn statements(&self, province: u8) -> Result<Vec<PathBuf>> {
        let dir = self.statements_dir(province);
        let mut out: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "stmt"))
                .collect(),
            Err(_) => Vec::new(),
        };
        out.sort();
        Ok(out)
    }

    /// Issuers with statements here (`0`: root).
    pub fn issuers(&self) -> Vec<u8> {
        let mut out: Vec<u8> = std::fs::read_dir(self.dir.join("statements"))
            .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
            .unwrap_or_default();
        out.sort_unstable();
        out
    }

    /// Publishes the statements of `province` not yet on the trust stream,
    /// connected as that authority's NATS user; returns how many.
    pub async fn publish(&self, province: u8, client: async_nats::Client) -> Result<usize> {
        let js = async_nats::jetstream::new(client);
        let marker = self.statements_dir(province).join("published");
        let done: usize = std::fs::read_to_string(&marker).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0);
        let files = self.statements(province)?;
        let mut n = 0;
        for f in files.iter().skip(done) {
            let signed = std::fs::read(f).map_err(|e| Error::file(f, e))?;
            let record = statement::record_of_statement(signed);
            let id = {
                use sha2::Digest;
                hex::encode(&sha2::Sha256::digest(&record)[..16])
            };
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", format!("trust-{id}").as_str());
            js.publish_with_headers(yipan_sync::subjects::trust_statement(province), headers, record.into())
                .await
                .map_err(|e| Error::Nats(format!("publishing {}: {e}", f.display())))?
                .await
                .map_err(|e| Error::Nats(format!("publishing {}: {e}", f.display())))?;
            n += 1;
            std::fs::write(&marker, (done + n).to_string()).map_err(|e| Error::file(&marker, e))?;
        }
        Ok(n)
    }
}

fn window(days: i64) -> (DateTime<Utc>, DateTime<Utc>) {
    // Back-dated a little so that clocks slightly behind still accept it.
    let now = Utc::now();
    (now - TimeDelta::minutes(1), now + TimeDelta::days(days.max(1)))
}
