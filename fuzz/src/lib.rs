//! Shared helpers of the fuzz targets and of the seed generator.

use ed25519_dalek::SigningKey;
use yipan_core::Locality;
use yipan_log::{MemBackend, MemStore};
use yipan_proto::v1::{self, event_body::Kind, EventBody, EventDraft};

/// The receiving node of the ingest target.
pub const ME: &str = "610112";
/// The one foreign author in its roster.
pub const AUTHOR: &str = "411522";
/// Seed of the receiving node's key.
pub const ME_KEY: u8 = 1;
/// Seed of the foreign author's key.
pub const AUTHOR_KEY: u8 = 2;
/// Most events per ingest batch.
pub const MAX_ITEMS: usize = 16;
/// An error may repeat at most this many characters of one input string
/// (`yipan_core::clip` keeps 40 and appends "… (N bytes)").
pub const MAX_ECHO: usize = 47;

/// A division code known to be valid.
pub fn loc(code: &str) -> Locality {
    Locality::parse(code).expect("valid division code")
}

/// A deterministic signing key.
pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// A fresh in-memory log of [`ME`] whose roster knows [`AUTHOR`].
pub fn receiving_log() -> MemStore {
    let log = MemStore::open(MemBackend::new(), loc(ME), key(ME_KEY)).expect("open memory log");
    log.roster_add(loc(AUTHOR), key(AUTHOR_KEY).verifying_key()).expect("roster");
    log
}

/// Frames items for the ingest target: each is a big-endian u16 length and the bytes.
pub fn frame(items: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for i in items {
        let len = u16::try_from(i.len()).expect("item under 64 KiB");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(i);
    }
    out
}

/// The inverse of [`frame`], total: a length running past the end takes the
/// rest; at most [`MAX_ITEMS`] items.
pub fn unframe(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while data.len() >= 2 && out.len() < MAX_ITEMS {
        let len = usize::from(u16::from_be_bytes([data[0], data[1]]));
        let rest = &data[2..];
        let n = len.min(rest.len());
        out.push(&rest[..n]);
        data = &rest[n..];
    }
    if out.is_empty() {
        out.push(data);
    }
    out
}

/// Every string of a JSON value (keys and values) longer than 40 characters.
pub fn long_strings(v: &serde_json::Value) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) if s.chars().count() > 40 => out.push(s.clone()),
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    if k.chars().count() > 40 {
                        out.push(k.clone());
                    }
                    walk(x, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut out);
    out
}

/// Panics if `msg` repeats more than [`MAX_ECHO`] leading characters of any
/// of `long` (as given, or escaped as `{:?}` does).
pub fn assert_no_echo(what: &str, msg: &str, long: &[String]) {
    if let Some(s) = echoed(msg, long).first() {
        panic!("{what} echoes a long input value ({} chars): {msg}", s.chars().count());
    }
}

/// The strings of `long` whose first [`MAX_ECHO`] + 1 characters (as given,
/// or escaped as `{:?}` does) appear in `msg`.
pub fn echoed(msg: &str, long: &[String]) -> Vec<String> {
    long.iter()
        .filter(|s| {
            let escaped = format!("{s:?}");
            [s.as_str(), &escaped[1..escaped.len() - 1]].iter().any(|form| {
                let prefix: String = form.chars().take(MAX_ECHO + 1).collect();
                prefix.chars().count() > MAX_ECHO && msg.contains(&prefix)
            })
        })
        .cloned()
        .collect()
}

/// `value` with every string (key or value) equal to one of `strings` replaced
/// by as many `q`s.
pub fn neutralised(value: &serde_json::Value, strings: &[String]) -> serde_json::Value {
    use serde_json::Value;
    let swap = |x: &str| strings.iter().any(|s| s == x).then(|| "q".repeat(x.chars().count()));
    match value {
        Value::String(x) => Value::String(swap(x).unwrap_or_else(|| x.clone())),
        Value::Array(a) => Value::Array(a.iter().map(|x| neutralised(x, strings)).collect()),
        Value::Object(m) => Value::Object(
            m.iter().map(|(k, x)| (swap(k).unwrap_or_else(|| k.clone()), neutralised(x, strings))).collect(),
        ),
        other => other.clone(),
    }
}

/// Like [`assert_no_echo`], but an input string that merely quotes the
/// message's own words is not an echo: `rerun` gives the message for the
/// input with every suspect string replaced by `q`s at once (see
/// [`neutralised`]). A suspect is excused only when that message still holds
/// the same words (they are the message's) and repeats no long run of `q`s
/// (nothing of the input is echoed after the quoted words either).
pub fn assert_no_echo_rerun(what: &str, msg: &str, long: &[String], rerun: impl Fn(&[String]) -> Option<String>) {
    let suspects = echoed(msg, long);
    if suspects.is_empty() {
        return;
    }
    let again = rerun(&suspects);
    let echoes_qs = again.as_deref().is_some_and(|m| m.contains(&"q".repeat(MAX_ECHO + 1)));
    for s in &suspects {
        let prefix: String = s.chars().take(MAX_ECHO + 1).collect();
        let own_words = !echoes_qs && again.as_deref().is_some_and(|m| m.contains(&prefix));
        assert!(own_words, "{what} echoes a long input value ({} chars): {msg}", s.chars().count());
    }
}

/// A certificate issued by [`AUTHOR`] for a person living at [`ME`], with an identity tier.
pub fn certificate(n: u64) -> EventDraft {
    EventDraft {
        person_key: yipan_core::PersonKey::derive(&format!("41152219900101{n:04}"), b"fuzz").to_string(),
        origin: AUTHOR.into(),
        residence: ME.into(),
        body: Some(EventBody {
            kind: Some(Kind::CertificateIssued(v1::CertificateIssued {
                certificate_ref: format!("C{n}"),
                valid_until: None,
            })),
        }),
        identity: Some(v1::IdentityTier {
            name: "张三".into(),
            id_number: "11010519491231002X".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A notification from [`AUTHOR`] to [`ME`] with a contact tier.
pub fn notification(n: u64) -> EventDraft {
    EventDraft {
        person_key: yipan_core::PersonKey::derive(&format!("41152219900101{n:04}"), b"fuzz").to_string(),
        origin: AUTHOR.into(),
        residence: ME.into(),
        body: Some(EventBody {
            kind: Some(Kind::NotificationSent(v1::NotificationSent { topic: 1, about_events: Vec::new() })),
        }),
        contact: Some(v1::ContactTier { phone: "13800000000".into(), ..Default::default() }),
        ..Default::default()
    }
}

/// Seed of the trust root's key (trust target).
pub const ROOT_KEY: u8 = 11;
/// Seed of the Henan authority's key (province 41, authority of [`AUTHOR`]).
pub const AUTHORITY_KEY: u8 = 12;

/// The instant trust records are judged at in the trust target.
pub fn trust_time() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_790_000_000, 0).expect("valid instant")
}

/// A trust state with [`ROOT_KEY`] as anchor, authority 41 and [`AUTHOR`] certified (serial 100).
pub fn trust_world() -> yipan_trust::TrustState {
    use yipan_trust::statement;
    let at = trust_time();
    let year = chrono::TimeDelta::days(365);
    let mut t = yipan_trust::TrustState::new(Some(key(ROOT_KEY).verifying_key()));
    let a = statement::authority_certificate(41, "河南", &key(AUTHORITY_KEY).verifying_key(), 41, at - year, at + year);
    t.apply_statement(&statement::sign(&key(ROOT_KEY), a, at), at).expect("authority");
    let c = statement::LocalityCert {
        locality: loc(AUTHOR),
        name: "光山县".into(),
        key: key(AUTHOR_KEY).verifying_key(),
        serial: 100,
        valid_from: at - year,
        valid_until: at + year,
        replaces_serial: 0,
        first_seq: 0,
    };
    t.apply_statement(&statement::sign(&key(AUTHORITY_KEY), statement::locality_certificate(&c), at), at)
        .expect("locality");
    t
}
