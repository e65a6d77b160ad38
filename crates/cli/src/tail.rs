//! `yipan tail`: follows a node's server-sent event stream, printing one JSON
//! event per line, and reconnects after a break resuming from the per-author
//! positions it has seen.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use yipan_testkit::http;

/// Reads a chunked HTTP body as a stream of bytes.
struct Chunked<R> {
    inner: BufReader<R>,
    left: usize,
    done: bool,
}

impl<R: Read> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        if self.left == 0 {
            let mut line = String::new();
            if self.inner.read_line(&mut line)? == 0 {
                return Ok(0);
            }
            if line.trim().is_empty() {
                line.clear();
                if self.inner.read_line(&mut line)? == 0 {
                    return Ok(0);
                }
            }
            self.left = usize::from_str_radix(line.trim(), 16).map_err(|_| std::io::Error::other("bad chunk size"))?;
            if self.left == 0 {
                self.done = true;
                return Ok(0);
            }
        }
        let n = buf.len().min(self.left);
        let got = self.inner.read(&mut buf[..n])?;
        self.left -= got;
        Ok(got)
    }
}

pub fn run(client: http::Client, from: Option<&str>, count: Option<u64>) -> Result<ExitCode> {
    let addr = client.addr;
    let mut positions: BTreeMap<String, u64> = BTreeMap::new();
    if let Some(f) = from {
        for part in f.split(',').filter(|p| !p.is_empty()) {
            let (a, n) = part.split_once(':').with_context(|| format!("--from: `{part}` is not AUTHOR:SEQ"))?;
            positions.insert(a.to_string(), n.parse().with_context(|| format!("--from: `{part}` is not AUTHOR:SEQ"))?);
        }
    }
    let mut printed = 0u64;
    let stdout = std::io::stdout();
    loop {
        let from: Vec<String> = positions.iter().map(|(a, n)| format!("{a}:{n}")).collect();
        let path = format!("/v1/stream?from={}", from.join(","));
        let mut s = match client.connect() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("tail: {addr}: {e}; retrying");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{}Accept: text/event-stream\r\n\r\n", client.auth_header())?;
        let mut head = BufReader::new(s);
        let mut line = String::new();
        head.read_line(&mut line)?;
        if !line.contains(" 200 ") {
            anyhow::bail!("tail: {addr} answered {}", line.trim());
        }
        loop {
            line.clear();
            if head.read_line(&mut line)? == 0 || line == "\r\n" {
                break;
            }
        }
        let body = BufReader::new(Chunked { inner: head, left: 0, done: false });
        let (mut id, mut data) = (String::new(), String::new());
        for l in body.lines() {
            let Ok(l) = l else { break };
            if let Some(v) = l.strip_prefix("id:") {
                id = v.trim().to_string();
            } else if let Some(v) = l.strip_prefix("data:") {
                data.push_str(v.trim_start());
            } else if l.is_empty() && !data.is_empty() {
                let mut out = stdout.lock();
                writeln!(out, "{data}")?;
                out.flush()?;
                if let Some((a, n)) = id.split_once(':') {
                    positions.insert(a.to_string(), n.parse().unwrap_or(0));
                }
                data.clear();
                printed += 1;
                if count.is_some_and(|c| printed >= c) {
                    return Ok(ExitCode::SUCCESS);
                }
            }
        }
        eprintln!(
            "tail: stream ended; reconnecting from {}",
            positions.iter().map(|(a, n)| format!("{a}:{n}")).collect::<Vec<_>>().join(",")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
