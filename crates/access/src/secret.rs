//! Secret files and redaction. A secret file (signing key, token hashes,
//! NKey seed, TLS private key) is created `0600` and refused when group or
//! others may read it; URLs are logged without their user information.

use std::io::Write;
use std::path::Path;

use crate::{Error, Result};

/// Refuses `path` if group or others have any access to it (Unix).
pub fn check_private(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Error::TooOpen { path: path.to_path_buf(), mode });
        }
    }
    Ok(())
}

/// Reads a secret file after [`check_private`].
pub fn read_private(path: &Path) -> Result<String> {
    check_private(path)?;
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

/// Writes `bytes` to `path` with mode `0600`, atomically (a temporary file of
/// its own, fsync, rename), replacing any previous content and keeping the
/// previous file's owner where the caller may (so `sudo yipan token revoke`
/// does not leave a file the service user cannot read).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let unique = format!(
        "tmp.{}.{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
    );
    let tmp = path.with_extension(unique);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(&tmp).map_err(|e| Error::io(&tmp, e))?;
    #[cfg(unix)]
    {
        // A pre-existing temporary file keeps its old mode; force 0600.
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(|e| Error::io(&tmp, e))?;
    }
    #[cfg(unix)]
    if let Ok(old) = std::fs::metadata(path) {
        use std::os::unix::fs::MetadataExt;
        // Only root may give a file away; anyone else keeps its own, which is then the same owner.
        let _ = std::os::unix::fs::chown(&tmp, Some(old.uid()), Some(old.gid()));
    }
    let written = f.write_all(bytes).and_then(|_| f.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// `url` with any `user:password@` removed, and every URL of a
/// comma-separated list treated alike: safe to log.
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|u| {
            let u = u.trim();
            let (scheme, rest) = u.split_once("://").unwrap_or(("", u));
            let rest = match rest.rsplit_once('@') {
                Some((_, host)) => format!("***@{host}"),
                None => rest.to_string(),
            };
            if scheme.is_empty() {
                rest
            } else {
                format!("{scheme}://{rest}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `n` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).map_err(|e| Error::Invalid(format!("no randomness from the OS: {e}")))?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_user_info() {
        assert_eq!(redact_url("nats://u:p4ss@h:4222"), "nats://***@h:4222");
        assert_eq!(redact_url("tls://a:1, nats://tok@b:2"), "tls://a:1,nats://***@b:2");
        assert_eq!(redact_url("nats://h:4222"), "nats://h:4222");
    }

    #[test]
    fn private_files_are_0600_and_wider_ones_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s");
        write_private(&p, b"x").unwrap();
        assert_eq!(read_private(&p).unwrap(), "x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = read_private(&p).unwrap_err().to_string();
            assert!(e.contains("mode 644") && e.contains("chmod 600"), "{e}");
        }
    }
}
