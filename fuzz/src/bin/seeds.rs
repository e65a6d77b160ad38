//! Writes the committed seed corpora, `fuzz/seeds/<target>/`. Built with
//! the targets (`RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=fuzz/target cargo fuzz build`);
//! run `fuzz/target/x86_64-unknown-linux-gnu/release/seeds` from the
//! repository root. Deterministic apart from event ids and times (new
//! UUIDv7s each run).

use std::path::{Path, PathBuf};

use yipan_fuzz::*;
use yipan_log::segment::{self, Entry};
use yipan_log::{Ingested, MemBackend, MemStore};
use yipan_proto::Message;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = PathBuf::from("fuzz/seeds").join(target);
    std::fs::create_dir_all(&dir).expect("create seed dir");
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

fn with_mode(mode: u8, items: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![mode];
    out.extend(frame(items));
    out
}

fn main() {
    assert!(Path::new("fuzz/Cargo.toml").exists(), "run from the repository root");

    // Real events of AUTHOR addressed to ME.
    let origin = MemStore::open(MemBackend::new(), loc(AUTHOR), key(AUTHOR_KEY)).expect("open");
    let drafts = vec![certificate(1), notification(2), certificate(3), notification(4)];
    let appended = origin.append_batch(drafts).expect("append");
    let events: Vec<Vec<u8>> =
        appended.iter().map(|a| origin.get(a.id).expect("read").expect("held").signed.encode_to_vec()).collect();
    let ev: Vec<&[u8]> = events.iter().map(Vec::as_slice).collect();
    // They ingest as intended.
    let check = receiving_log();
    let out = check.ingest_batch(&ev).expect("ingest");
    assert!(out.iter().all(|o| matches!(o, Ingested::Stored { .. })), "{out:?}");

    let t = "signed_event_ingest";
    write(t, "one", &with_mode(0, &ev[..1]));
    write(t, "batch", &with_mode(0, &ev));
    write(t, "out_of_order", &with_mode(0, &[ev[2], ev[0], ev[1]]));
    write(t, "duplicate", &with_mode(0, &[ev[0], ev[0]]));
    write(t, "gap", &with_mode(0, &[ev[1], ev[3]]));
    write(t, "garbage", &with_mode(0, &[b"not an event"]));
    write(t, "resigned_batch", &with_mode(1, &ev));
    write(t, "resigned_one", &with_mode(1, &ev[1..2]));

    let t = "segment";
    let zero = [0u8; 32];
    let entries: Vec<Entry<'_>> =
        ev.iter().enumerate().map(|(i, b)| Entry { seq: i as u64 + 1, digest: zero, bytes: b }).collect();
    write(t, "four_events", &segment::encode(&entries));
    write(t, "one_event", &segment::encode(&entries[..1]));
    write(t, "empty", &segment::encode(&[]));
    write(t, "small", &segment::encode(&[Entry { seq: 7, digest: [7; 32], bytes: b"abc" }]));

    let t = "head_announcement";
    for (i, s) in ["0", "1", "42", "2048", "18446744073709551615", " 7\n", "+5", "18446744073709551616", "-1", ""]
        .iter()
        .enumerate()
    {
        write(t, &format!("head{i}"), s.as_bytes());
    }

    let t = "repair_request";
    for (i, s) in [
        r#"{"from":1,"to":10}"#,
        r#"{"from":0,"to":0}"#,
        r#"{"from":5,"to":3}"#,
        r#"{"from":1,"to":18446744073709551615}"#,
        r#"{"from":"1","to":2}"#,
        r#"{"resent":3}"#,
        r#"{"resent":0,"error":"rate limited: one request per 500 ms"}"#,
    ]
    .iter()
    .enumerate()
    {
        write(t, &format!("json{i}"), s.as_bytes());
    }

    let t = "event_json";
    let mut n = 0;
    for file in ["deploy/scenarios/residence-610112.jsonl", "deploy/scenarios/xian-henan.jsonl"] {
        let text = std::fs::read_to_string(file).expect("scenario file");
        for line in text.lines().filter(|l| l.trim_start().starts_with('{')) {
            write(t, &format!("scenario{n:02}"), line.as_bytes());
            n += 1;
        }
    }
    write(
        t,
        "bad_values",
        br#"{"kind":"ServiceRendered","id":"not-a-uuid","occurred_at":"yesterday","origin":"41152","body":{"service":"SERVICE_KIND_NOPE"}}"#,
    );

    let t = "node_toml";
    write(t, "deployed", &std::fs::read("deploy/node/node.toml").expect("deploy/node/node.toml"));
    write(t, "insecure", b"data_dir = \"/tmp/x\"\ninsecure = true\n[sync]\nnats_url = \"nats://127.0.0.1:4222\"\n");

    let t = "catalogue_json";
    let c = yipan_projections::Catalogue::default();
    write(t, "default_pretty", serde_json::to_string_pretty(&c).expect("json").as_bytes());
    write(t, "default", serde_json::to_string(&c).expect("json").as_bytes());
    trust_seeds();
    println!("seeds written to fuzz/seeds/");
}

/// Trust records that apply to [`trust_world`], and some that do not.
fn trust_seeds() {
    use yipan_trust::statement::{self, LocalityCert};
    let t = "trust_record";
    let at = trust_time();
    let year = chrono::TimeDelta::days(365);
    let cert = |code: &str, k: u8, serial: u64, replaces: u64, first_seq: u64| LocalityCert {
        locality: loc(code),
        name: "县".into(),
        key: key(k).verifying_key(),
        serial,
        valid_from: at - year,
        valid_until: at + year,
        replaces_serial: replaces,
        first_seq,
    };
    let by_authority = |c: &LocalityCert| {
        statement::record_of_statement(statement::sign(&key(AUTHORITY_KEY), statement::locality_certificate(c), at))
    };
    let rotation_cert =
        statement::sign(&key(AUTHORITY_KEY), statement::locality_certificate(&cert(AUTHOR, 30, 200, 100, 0)), at);
    let authority = statement::authority_certificate(61, "陕西", &key(31).verifying_key(), 61, at - year, at + year);
    let seeds: Vec<(&str, u8, Vec<u8>)> = vec![
        ("authority", 0, statement::record_of_statement(statement::sign(&key(ROOT_KEY), authority.clone(), at))),
        ("authority_resign", 1, statement::record_of_statement(statement::sign(&key(99), authority, at))),
        ("locality", 0, by_authority(&cert("411523", 20, 101, 0, 0))),
        ("locality_resign", 3, by_authority(&cert("411524", 21, 102, 0, 0))),
        ("wrong_province", 0, by_authority(&cert("610112", 22, 103, 0, 0))),
        ("conflict", 0, by_authority(&cert(AUTHOR, 23, 104, 0, 0))),
        ("rotation_certificate", 0, statement::record_of_statement(rotation_cert.clone())),
        ("recovery", 3, by_authority(&cert(AUTHOR, 24, 105, 100, 9))),
        (
            "revocation",
            0,
            statement::record_of_statement(statement::sign(
                &key(AUTHORITY_KEY),
                statement::revocation(100, 7, "lost"),
                at,
            )),
        ),
        ("rotation_event", 0, statement::record_of_rotation(rotation_event(rotation_cert))),
        ("garbage", 0, b"\x0a\x03abc".to_vec()),
    ];
    let mut check = trust_world();
    for (name, mode, bytes) in seeds {
        if name == "locality" || name == "revocation" {
            assert!(check.clone().apply_record(&bytes, at).is_ok(), "seed {name} applies");
        }
        let mut out = vec![mode];
        out.extend(bytes);
        write(t, name, &out);
    }
    check.apply_record(b"", at).expect_err("empty record refused");
}

/// A `KeyRotated` event of [`AUTHOR`] at #5 signed with its key, naming `certificate`.
fn rotation_event(certificate: Vec<u8>) -> Vec<u8> {
    use ed25519_dalek::Signer;
    use yipan_proto::v1::{event_body, Envelope, EventBody, KeyRotated, SignedEvent};
    let env = Envelope {
        schema_version: 1,
        event_id: uuid_v7_bytes(),
        author: AUTHOR.into(),
        author_seq: 5,
        prev_hash: vec![0; 32],
        recorded_at: Some(yipan_core::time::to_ts(trust_time())),
        body: Some(EventBody { kind: Some(event_body::Kind::KeyRotated(KeyRotated { certificate })) }),
        ..Default::default()
    };
    let bytes = env.encode_to_vec();
    let signature = key(AUTHOR_KEY).sign(&bytes).to_bytes().to_vec();
    SignedEvent { envelope: bytes, signature, ..Default::default() }.encode_to_vec()
}

fn uuid_v7_bytes() -> Vec<u8> {
    let mut b = [7u8; 16];
    b[6] = 0x70;
    b.to_vec()
}
