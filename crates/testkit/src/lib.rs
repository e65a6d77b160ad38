//! Real `nats-server` processes for tests, the demo and benchmarks (never a
//! mock): each on a random loopback port with JetStream and its own store
//! directory, killed on drop, restartable on the same port, and able to wipe
//! its store (to simulate a server that lost its data).
//!
//! The binary is `$NATS_SERVER_BIN` if set, else `nats-server` on `PATH`
//! (`scripts/test` installs Debian's package when missing).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `deploy/nats/nats-server.conf`, the server configuration these servers use.
pub const SERVER_CONF: &str = include_str!("../../../deploy/nats/nats-server.conf");

/// A running (or stopped) `nats-server` owned by the caller.
pub struct NatsServer {
    bin: PathBuf,
    port: u16,
    store: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    child: Option<Child>,
}

/// The `nats-server` binary to use.
pub fn nats_server_bin() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("NATS_SERVER_BIN") {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("nats-server");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err("nats-server not found: set NATS_SERVER_BIN or install it (scripts/test installs Debian's nats-server)".into())
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

impl NatsServer {
    /// Starts a server with JetStream on a random port and a fresh store.
    pub fn start() -> Result<NatsServer, String> {
        let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
        let store = tmp.path().join("jetstream");
        let mut s = NatsServer { bin: nats_server_bin()?, port: free_port()?, store, _tmp: Some(tmp), child: None };
        s.spawn()?;
        Ok(s)
    }

    /// Starts a server whose store lives in `store` (kept after drop).
    pub fn start_in(store: &Path) -> Result<NatsServer, String> {
        let mut s = NatsServer {
            bin: nats_server_bin()?,
            port: free_port()?,
            store: store.to_path_buf(),
            _tmp: None,
            child: None,
        };
        s.spawn()?;
        Ok(s)
    }

    fn spawn(&mut self) -> Result<(), String> {
        std::fs::create_dir_all(&self.store).map_err(|e| e.to_string())?;
        // The deployed server config, with its store directory replaced and
        // the address and port overridden on the command line.
        let conf = self.store.with_extension("conf");
        let text: String = SERVER_CONF
            .lines()
            .map(|l| {
                if l.trim_start().starts_with("store_dir:") {
                    format!("  store_dir: {:?}", self.store.display().to_string())
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&conf, text).map_err(|e| e.to_string())?;
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&conf)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.bin.display()))?;
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    return Err(format!("nats-server exited at start ({status}); port {} taken?", self.port));
                }
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("nats-server did not listen on port {} within 20 s", self.port))
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store directory.
    pub fn store_dir(&self) -> &Path {
        &self.store
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Kills the server (its store stays).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with the same store.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        self.spawn()
    }

    /// Stops the server, deletes its whole store, and starts it empty on the same port.
    pub fn restart_wiped(&mut self) -> Result<(), String> {
        self.stop();
        if self.store.exists() {
            std::fs::remove_dir_all(&self.store).map_err(|e| e.to_string())?;
        }
        self.spawn()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_restarts_and_wipes() {
        let mut s = NatsServer::start().expect("nats-server");
        assert!(s.is_running());
        let port = s.port();
        std::fs::write(s.store_dir().join("marker"), b"x").unwrap();
        s.restart().unwrap();
        assert_eq!(s.port(), port);
        assert!(s.store_dir().join("marker").exists());
        s.restart_wiped().unwrap();
        assert!(!s.store_dir().join("marker").exists());
        s.stop();
        assert!(!s.is_running());
    }
}

/// A minimal blocking HTTP/1.1 JSON client for tests and the demo (one
/// request per connection).
pub mod http {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::time::Duration;

    /// Sends `method path` with an optional JSON body; returns (status, body text).
    pub fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), String> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
        let body = body.unwrap_or("");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, rest) = text.split_once("\r\n\r\n").ok_or("no HTTP header end")?;
        let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or("no HTTP status")?;
        let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
        Ok((status, if chunked { dechunk(rest) } else { rest.to_string() }))
    }

    fn dechunk(mut s: &str) -> String {
        let mut out = String::new();
        while let Some((size, rest)) = s.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || rest.len() < n {
                break;
            }
            out.push_str(&rest[..n]);
            s = rest[n..].trim_start_matches("\r\n");
        }
        out
    }
}
