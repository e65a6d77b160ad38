//! Roster files: one `CODE HEXKEY` per line (what `yipan roster show` prints;
//! anything after the key is ignored, `#` starts a comment).

use std::collections::HashMap;

use ed25519_dalek::VerifyingKey;
use yipan_core::Locality;

/// Parses a roster file; the error names the line.
pub fn parse(text: &str) -> Result<HashMap<Locality, VerifyingKey>, String> {
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(code), Some(key)) = (parts.next(), parts.next()) else {
            return Err(format!("roster line {}: expected `CODE HEXKEY`", i + 1));
        };
        let l = Locality::parse(code).map_err(|p| format!("roster line {}: {p}", i + 1))?;
        let k = yipan_log::keyfile::parse_public(key).map_err(|p| format!("roster line {}: key {p}", i + 1))?;
        out.insert(l, k);
    }
    Ok(out)
}
