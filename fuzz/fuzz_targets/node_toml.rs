//! `node.toml`: `toml::from_str::<NodeConfig>` and `NodeConfig::check`.
//!
//! Checks: a configuration that passes `check` is secure unless it says
//! `insecure = true` (HTTP TLS, NATS NKey and CA all set), never has
//! credentials in `nats_url`, never lists client certificates without a
//! client CA; a parsed configuration serialises and parses back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yipan_node::NodeConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(cfg) = toml::from_str::<NodeConfig>(text) else { return };
    let as_json = serde_json::to_value(&cfg).expect("config as JSON");
    let again = toml::to_string(&cfg).expect("config serialises as TOML");
    let back: NodeConfig = toml::from_str(&again).unwrap_or_else(|e| panic!("re-parse: {e}\n{again}"));
    assert_eq!(serde_json::to_value(&back).expect("JSON"), as_json, "TOML round trip changed it:\n{again}");
    if cfg.check().is_ok() {
        assert!(!cfg.sync.nats_url.contains('@'), "credentials in nats_url accepted");
        if let Some(t) = &cfg.http.tls {
            assert!(t.clients.is_empty() || t.client_ca.is_some());
        }
        if !cfg.insecure {
            assert!(cfg.http.tls.is_some() && cfg.sync.nats_nkey_file.is_some() && cfg.sync.nats_ca_file.is_some());
            assert!(cfg.trust.anchor.is_some() || cfg.trust.hand_added_keys_only, "no trust anchor accepted");
        }
    }
});
