//! A throw-away certificate authority for the main job and the tests (no
//! manual openssl steps). Production deployments use their own CA; the
//! files written here have the same shape (`ca.pem`, `<name>.pem`,
//! `<name>.key` with mode `0600`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

use crate::{secret, Error, Result};

fn tls(e: impl std::fmt::Display) -> Error {
    Error::Tls(e.to_string())
}

/// A certificate and its key, written as PEM files.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// The private key (PEM, `0600`).
    pub key: PathBuf,
}

/// A certificate authority held in memory, its certificate written to `ca.pem`.
pub struct DevCa {
    cert: rcgen::Certificate,
    key: KeyPair,
    dir: PathBuf,
}

fn validity(p: &mut CertificateParams) {
    let now = chrono::Utc::now();
    let (from, until) = (now - chrono::Duration::days(1), now + chrono::Duration::days(365));
    use chrono::Datelike;
    p.not_before = rcgen::date_time_ymd(from.year(), from.month() as u8, from.day() as u8);
    p.not_after = rcgen::date_time_ymd(until.year(), until.month() as u8, until.day() as u8);
}

impl DevCa {
    /// Creates a CA named `name` and writes its certificate to `dir/ca.pem`.
    pub fn create(dir: &Path, name: &str) -> Result<DevCa> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(tls)?;
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        validity(&mut p);
        let key = KeyPair::generate().map_err(tls)?;
        let cert = p.self_signed(&key).map_err(tls)?;
        let path = dir.join("ca.pem");
        std::fs::write(&path, cert.pem()).map_err(|e| Error::io(&path, e))?;
        Ok(DevCa { cert, key, dir: dir.to_path_buf() })
    }

    /// Path of the CA certificate.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn issue(&self, file: &str, cn: &str, hosts: &[&str], usage: ExtendedKeyUsagePurpose) -> Result<Issued> {
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(tls)?;
        p.distinguished_name.push(DnType::CommonName, cn);
        for h in hosts {
            p.subject_alt_names.push(match h.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*h).try_into().map_err(tls)?),
            });
        }
        p.extended_key_usages = vec![usage];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut p);
        let key = KeyPair::generate().map_err(tls)?;
        let cert = p.signed_by(&key, &self.cert, &self.key).map_err(tls)?;
        let issued = Issued { cert: self.dir.join(format!("{file}.pem")), key: self.dir.join(format!("{file}.key")) };
        std::fs::write(&issued.cert, cert.pem()).map_err(|e| Error::io(&issued.cert, e))?;
        secret::write_private(&issued.key, key.serialize_pem().as_bytes())?;
        Ok(issued)
    }

    /// A server certificate for `hosts` (DNS names or IP addresses).
    pub fn server(&self, file: &str, hosts: &[&str]) -> Result<Issued> {
        self.issue(file, hosts.first().copied().unwrap_or(file), hosts, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate whose subject common name is `cn`.
    pub fn client(&self, file: &str, cn: &str) -> Result<Issued> {
        self.issue(file, cn, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_certificates_that_load() {
        let d = tempfile::tempdir().unwrap();
        let ca = DevCa::create(d.path(), "test CA").unwrap();
        let s = ca.server("node", &["localhost", "127.0.0.1"]).unwrap();
        let c = ca.client("platform", "shaanxi-platform").unwrap();
        crate::tls::server_config(&s.cert, &s.key, Some(&ca.ca_path())).unwrap();
        crate::tls::client_config(&ca.ca_path(), Some((&c.cert, &c.key))).unwrap();
        let der = crate::tls::load_certs(&c.cert).unwrap();
        assert_eq!(crate::tls::common_name(&der[0]).as_deref(), Some("shaanxi-platform"));
    }
}
