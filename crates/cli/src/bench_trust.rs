//! `yipan bench trust`: the national trust stream — a root, 31 province
//! authorities and every county-level locality (2,844 at the end of 2020,
//! per province as in `../shared/data/provinces.csv`) — verified up to the
//! anchor, beside raw ed25519 verification of the same run (one core, one
//! by one: each statement carries one signature).

use std::time::Instant;

use anyhow::Result;
use chrono::{TimeDelta, Utc};
use ed25519_dalek::SigningKey;
use serde::Serialize;
use yipan_core::Locality;
use yipan_log::{SledBackend, SledStore};
use yipan_trust::statement::{self, LocalityCert};
use yipan_trust::TrustState;

/// County-level units per province, end of 2020 (`../shared/data/provinces.csv`).
const COUNTY_UNITS: [(u8, usize); 31] = [
    (11, 16),
    (12, 16),
    (13, 167),
    (14, 117),
    (15, 103),
    (21, 100),
    (22, 60),
    (23, 121),
    (31, 16),
    (32, 95),
    (33, 90),
    (34, 104),
    (35, 85),
    (36, 100),
    (37, 136),
    (41, 158),
    (42, 103),
    (43, 122),
    (44, 122),
    (45, 111),
    (46, 25),
    (50, 38),
    (51, 183),
    (52, 88),
    (53, 129),
    (54, 74),
    (61, 107),
    (62, 86),
    (63, 44),
    (64, 22),
    (65, 106),
];

/// What the benchmark measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub records: usize,
    pub localities: usize,
    pub apply_per_s: f64,
    pub store_apply_per_s: f64,
    pub reopen_ms: f64,
    pub key_lookups_per_s: f64,
    pub raw_verify_per_s: f64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "national trust stream: {} records (root, 31 authorities, {} localities)",
            self.records, self.localities
        )?;
        writeln!(f, "verify + apply in memory:        {:>9.0} records/s", self.apply_per_s)?;
        writeln!(
            f,
            "verify + apply + keep in sled:   {:>9.0} records/s (one commit each, as from the stream)",
            self.store_apply_per_s
        )?;
        writeln!(f, "reopen (replay every record):    {:>9.1} ms", self.reopen_ms)?;
        writeln!(f, "key lookups (author, seq):       {:>9.0} /s", self.key_lookups_per_s)?;
        writeln!(f, "raw ed25519 verify, one core:    {:>9.0} /s", self.raw_verify_per_s)?;
        write!(f, "apply / raw verify: {:.2}", self.apply_per_s / self.raw_verify_per_s)
    }
}

fn key() -> Result<SigningKey> {
    Ok(yipan_log::keyfile::generate()?)
}

pub fn run() -> Result<Report> {
    let now = Utc::now();
    let (from, until) = (now - TimeDelta::days(1), now + TimeDelta::days(365));
    let root = key()?;
    let mut records = Vec::new();
    let mut codes = Vec::new();
    for (p, counties) in COUNTY_UNITS {
        let authority = key()?;
        let c = statement::authority_certificate(
            p,
            "卫健委",
            &authority.verifying_key(),
            statement::new_serial(),
            from,
            until,
        );
        records.push(statement::record_of_statement(statement::sign(&root, c, now)));
        for i in 0..counties {
            // Synthetic but well-formed county codes: pp, city 01.., county 01..30.
            let code = u32::from(p) * 10_000 + (i as u32 / 30 + 1) * 100 + (i as u32 % 30 + 1);
            let l = Locality::from_u32(code).map_err(anyhow::Error::msg)?;
            let c = LocalityCert {
                locality: l,
                name: String::new(),
                key: key()?.verifying_key(),
                serial: statement::new_serial(),
                valid_from: from,
                valid_until: until,
                replaces_serial: 0,
                first_seq: 0,
            };
            records.push(statement::record_of_statement(statement::sign(
                &authority,
                statement::locality_certificate(&c),
                now,
            )));
            codes.push(l);
        }
    }
    let (raw_verify_per_s, _) = yipan_log::bench::raw_verify(20_000, false)?;

    let t = Instant::now();
    let mut state = TrustState::new(Some(root.verifying_key()));
    for r in &records {
        state.apply_record(r, now).map_err(|f| anyhow::anyhow!("{f}"))?;
    }
    let apply_per_s = records.len() as f64 / t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut n = 0u64;
    for round in 0..100u64 {
        for l in &codes {
            state.key_for(*l, round + 1, Some(now)).map_err(|e| anyhow::anyhow!("{e}"))?;
            n += 1;
        }
    }
    let key_lookups_per_s = n as f64 / t.elapsed().as_secs_f64();

    let tmp = tempfile::tempdir()?;
    // A node outside the certified set (its own key is its hand-added bootstrap entry).
    let me = Locality::from_u32(659_901).map_err(anyhow::Error::msg)?;
    let signing = key()?;
    let store =
        SledStore::open_with_anchor(SledBackend::open(tmp.path())?, me, signing.clone(), Some(root.verifying_key()))?;
    let t = Instant::now();
    for r in &records {
        store.apply_trust_record(r, now)?.map_err(|f| anyhow::anyhow!("{f}"))?;
    }
    let store_apply_per_s = records.len() as f64 / t.elapsed().as_secs_f64();
    drop(store);
    let t = Instant::now();
    let store = SledStore::open(SledBackend::open(tmp.path())?, me, signing)?;
    let reopen_ms = t.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(store.roster().len() == codes.len() + 1, "reopened store lost certificates");
    Ok(Report {
        records: records.len(),
        localities: codes.len(),
        apply_per_s,
        store_apply_per_s,
        reopen_ms,
        key_lookups_per_s,
        raw_verify_per_s,
    })
}
