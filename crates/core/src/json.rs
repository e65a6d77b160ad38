//! The JSON form of events, for the CLI and the HTTP API.
//!
//! Input (one draft):
//! ```json
//! {"kind": "ArrivalRegistered", "id": "0193…", "occurred_at": "2026-10-03T09:00:00+08:00",
//!  "person": "9f2c…", "origin": "411522", "residence": "610112",
//!  "recipients": ["411522"], "causation": "0193…",
//!  "body": {"channel": "REGISTRATION_CHANNEL_RENTAL_HOUSING"},
//!  "identity": {"name": "…", "idNumber": "…"}, "contact": {…}, "health": {…}}
//! ```
//! `kind` and `body` are required (an empty body `{}` is fine for kinds with
//! no fields); `body` and the tiers use the proto3 JSON mapping of
//! `proto/yipan/v1` (camelCase fields, enum names as strings). `person` may
//! be left out when `person_id_number` (used for the key only, never stored)
//! or `identity.idNumber` is given and the node has a person-key secret. Output adds the author-assigned fields and masks
//! personal values unless asked to reveal them.

use serde_json::{Map, Value};
use uuid::Uuid;
use yipan_proto::v1::{ContactTier, Envelope, EventBody, EventDraft, HealthTier, IdentityTier, Tier, TierPayload};
use yipan_proto::Message;

use crate::error::{Error, Result};
use crate::kind::{tier_name, EventKind};
use crate::person::{mask_id_number, mask_name, mask_phone, PersonKey};
use crate::time::{parse_rfc3339, to_ts, ts_text};

const FIELDS: &[&str] = &[
    "kind",
    "id",
    "occurred_at",
    "person",
    "person_id_number",
    "origin",
    "residence",
    "recipients",
    "causation",
    "body",
    "identity",
    "contact",
    "health",
];

/// Parses one JSON draft. `person_secret` is the deployment's person-key
/// secret, used to derive `person` from `identity.idNumber`.
pub fn draft_from_json(text: &str, person_secret: Option<&[u8]>) -> Result<EventDraft> {
    let value: Value = serde_json::from_str(text).map_err(|e| Error::Json(e.to_string()))?;
    draft_from_value(value, person_secret)
}

/// Like [`draft_from_json`], from an already parsed value.
pub fn draft_from_value(value: Value, person_secret: Option<&[u8]>) -> Result<EventDraft> {
    draft_and_warnings(value, person_secret).map(|(d, _)| d)
}

/// Like [`draft_from_value`], with the oddities accepted on the way (a
/// wrong check digit in `person_id_number`, which is used for the key and
/// not kept, so validation never sees it).
pub fn draft_and_warnings(
    value: Value,
    person_secret: Option<&[u8]>,
) -> Result<(EventDraft, Vec<crate::validate::Warning>)> {
    let mut warnings = Vec::new();
    let draft = draft_inner(value, person_secret, &mut warnings)?;
    Ok((draft, warnings))
}

fn draft_inner(
    value: Value,
    person_secret: Option<&[u8]>,
    warnings: &mut Vec<crate::validate::Warning>,
) -> Result<EventDraft> {
    let Value::Object(mut obj) = value else {
        return Err(Error::Json("an event must be a JSON object".into()));
    };
    if let Some(unknown) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(Error::field(crate::clip(unknown), format!("unknown field (known fields: {})", FIELDS.join(", "))));
    }
    let kind_name =
        take_str(&mut obj, "kind")?.ok_or_else(|| Error::field("kind", "missing; e.g. \"ArrivalRegistered\""))?;
    let kind = EventKind::parse(&kind_name)
        .ok_or_else(|| Error::UnknownKind { kind: crate::clip(&kind_name), known: EventKind::known_list() })?;
    if matches!(kind, EventKind::ErasureRequested | EventKind::ErasureConfirmed) {
        // Recorded with the erasure itself (which a role with the `erase` permission
        // executes), never as a bare event: a request alone would make the recipients
        // erase while this side kept everything.
        return Err(Error::field(
            "kind",
            format!("{kind} is recorded only by POST /v1/erasures or `yipan erase` (which erase here too); receipts only by the node"),
        ));
    }
    let body_json = obj.remove("body").unwrap_or(Value::Object(Map::new()));
    if !body_json.is_object() {
        return Err(Error::field("body", "must be a JSON object"));
    }
    let body = kind.body_from_json(body_json).map_err(|(path, problem)| {
        let field = if path == "." || path.is_empty() { "body".to_string() } else { format!("body.{path}") };
        Error::field(field, problem)
    })?;

    let mut draft = EventDraft { body: Some(EventBody { kind: Some(body) }), ..Default::default() };
    if let Some(id) = take_str(&mut obj, "id")? {
        draft.event_id = parse_uuid("id", &id)?.as_bytes().to_vec();
    }
    if let Some(c) = take_str(&mut obj, "causation")? {
        draft.causation_id = parse_uuid("causation", &c)?.as_bytes().to_vec();
    }
    if let Some(t) = take_str(&mut obj, "occurred_at")? {
        draft.occurred_at = Some(to_ts(parse_rfc3339(&t).map_err(|p| Error::field("occurred_at", p))?));
    }
    draft.origin = take_str(&mut obj, "origin")?.unwrap_or_default();
    draft.residence = take_str(&mut obj, "residence")?.unwrap_or_default();
    draft.person_key = take_str(&mut obj, "person")?.unwrap_or_default();
    if let Some(r) = obj.remove("recipients") {
        let Value::Array(items) = r else {
            return Err(Error::field("recipients", "must be an array of division codes"));
        };
        for (i, item) in items.into_iter().enumerate() {
            match item {
                Value::String(s) => draft.recipients.push(s),
                _ => return Err(Error::field(format!("recipients[{i}]"), "must be a division code string")),
            }
        }
    }
    draft.identity = take_tier::<IdentityTier>(&mut obj, "identity")?;
    draft.contact = take_tier::<ContactTier>(&mut obj, "contact")?;
    draft.health = take_tier::<HealthTier>(&mut obj, "health")?;

    // An ID number given only to find the person: used for the key, never stored.
    let key_source = match take_str(&mut obj, "person_id_number")? {
        Some(id) => Some(("person_id_number", id)),
        None => draft
            .identity
            .as_ref()
            .filter(|i| !i.id_number.is_empty())
            .map(|i| ("identity.idNumber", i.id_number.clone())),
    };
    if let Some((field, id_number)) = key_source {
        let Some(secret) = person_secret else {
            if draft.person_key.is_empty() {
                return Err(Error::field(
                    field,
                    "cannot derive a person key: no person-key secret is configured (yipan init --person-key-secret)",
                ));
            }
            return Ok(with_content_id(draft));
        };
        match crate::person::check_id_number(&id_number) {
            crate::person::IdCheck::BadShape => {
                return Err(Error::field(field, "is not 17 digits followed by a digit or X (value not shown)"))
            }
            // identity.idNumber is warned about by validation; the key-only field here.
            crate::person::IdCheck::BadCheckDigit if field == "person_id_number" => {
                warnings.push(crate::validate::Warning::PersonIdCheckDigit)
            }
            _ => {}
        }
        let derived = PersonKey::derive(&id_number, secret).to_string();
        if draft.person_key.is_empty() {
            draft.person_key = derived;
        } else if draft.person_key != derived {
            return Err(Error::field("person", format!("does not match the key derived from {field}")));
        }
    }
    Ok(with_content_id(draft))
}

fn take_str(obj: &mut Map<String, Value>, field: &str) -> Result<Option<String>> {
    match obj.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(Error::field(field, format!("must be a string, not {}", json_type(&other)))),
    }
}

fn take_tier<T: serde::de::DeserializeOwned>(obj: &mut Map<String, Value>, field: &str) -> Result<Option<T>> {
    match obj.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => serde_path_to_error::deserialize::<_, T>(&v).map(Some).map_err(|e| {
            // Personal data: name the path, never the value.
            let path = clip_echoes(&e.path().to_string(), &v);
            let what = if e.inner().to_string().starts_with("unknown field") {
                "unknown field"
            } else {
                "wrong type or value (value not shown)"
            };
            Error::field(format!("{field}.{path}"), what)
        }),
        Some(other) => Err(Error::field(field, format!("must be an object, not {}", json_type(&other)))),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn parse_uuid(field: &str, s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|_| Error::field(field, format!("`{}` is not a UUID", crate::clip(s))))
}

/// A parser's message about `input` (e.g. serde's "unknown variant `…`" or
/// "invalid type: string \"…\"") with every string of `input`, key or value,
/// longer than 40 characters or possibly personal ([`crate::may_be_personal`])
/// that it repeats (as given or escaped) replaced as by [`crate::clip`]: no
/// long or personal input value is echoed back.
pub fn clip_echoes(msg: &str, input: &Value) -> String {
    fn long<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::String(s) if s.chars().nth(40).is_some() || crate::may_be_personal(s) => out.push(s),
            Value::Array(items) => items.iter().for_each(|i| long(i, out)),
            Value::Object(map) => {
                for (k, v) in map {
                    if k.chars().nth(40).is_some() || crate::may_be_personal(k) {
                        out.push(k);
                    }
                    long(v, out);
                }
            }
            _ => {}
        }
    }
    let mut strings = Vec::new();
    long(input, &mut strings);
    strings.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let escaped: Vec<(&str, String)> = strings
        .into_iter()
        .map(|s| {
            let e = format!("{s:?}");
            (s, e[1..e.len() - 1].to_string())
        })
        .collect();
    let mut out = msg.to_string();
    // The escaped form first: the raw text may occur inside it (e.g. `\\`).
    for (s, e) in &escaped {
        for form in [e.as_str(), s] {
            if out.contains(form) {
                out = out.replace(form, &crate::clip(form));
            }
        }
    }
    // Whatever still repeats more than 40 characters of a value is not shown.
    let repeats = |form: &str| {
        let head: String = form.chars().take(41).collect();
        head.chars().count() == 41 && out.contains(&head)
    };
    if escaped.iter().any(|(s, e)| repeats(s) || repeats(e)) {
        return "a value is wrong (not shown: the message would repeat it)".into();
    }
    out
}

/// A deterministic UUIDv7 for a draft without an id: its time bits are the
/// occurred-at instant and its other bits a SHA-256 of the draft, so
/// submitting the same JSON twice names the same event and stores it once.
/// Drafts without `occurred_at` get no content id (the node assigns one).
pub fn content_id(draft: &EventDraft) -> Option<Uuid> {
    use sha2::Digest;
    let ts = draft.occurred_at.as_ref()?;
    let millis =
        u64::try_from(ts.seconds).ok()?.checked_mul(1000)?.checked_add(u64::try_from(ts.nanos / 1_000_000).ok()?)?;
    let digest = sha2::Sha256::digest(draft.encode_to_vec());
    let mut bits = [0u8; 10];
    bits.copy_from_slice(&digest[..10]);
    Some(uuid::Builder::from_unix_timestamp_millis(millis, &bits).into_uuid())
}

fn with_content_id(mut draft: EventDraft) -> EventDraft {
    if draft.event_id.is_empty() {
        if let Some(id) = content_id(&draft) {
            draft.event_id = id.as_bytes().to_vec();
        }
    }
    draft
}

/// Encodes a draft's tiers as payloads, in tier order.
pub fn draft_tiers(draft: &EventDraft) -> Vec<TierPayload> {
    let mut out = Vec::new();
    if let Some(t) = &draft.identity {
        out.push(TierPayload { tier: Tier::Identity as i32, content: t.encode_to_vec() });
    }
    if let Some(t) = &draft.contact {
        out.push(TierPayload { tier: Tier::Contact as i32, content: t.encode_to_vec() });
    }
    if let Some(t) = &draft.health {
        out.push(TierPayload { tier: Tier::ReproductiveHealth as i32, content: t.encode_to_vec() });
    }
    out
}

fn uuid_text(b: &[u8]) -> Value {
    Uuid::from_slice(b).map(|u| Value::String(u.to_string())).unwrap_or(Value::Null)
}

/// The JSON of a stored event. `hash` is the event's chain hash. Tier
/// payloads present are shown masked unless `reveal` is set; withheld tiers
/// are listed under `tiers_withheld`.
pub fn event_to_json(env: &Envelope, hash: &[u8], tiers: &[TierPayload], reveal: bool) -> Value {
    let kind = env.body.as_ref().and_then(|b| b.kind.as_ref());
    let mut o = Map::new();
    o.insert("id".into(), uuid_text(&env.event_id));
    o.insert("kind".into(), kind.map(|k| EventKind::of(k).name()).unwrap_or("").into());
    o.insert("author".into(), env.author.clone().into());
    o.insert("seq".into(), env.author_seq.into());
    o.insert("recorded_at".into(), ts_text(env.recorded_at.as_ref()).into());
    o.insert("occurred_at".into(), ts_text(env.occurred_at.as_ref()).into());
    if !env.person_key.is_empty() {
        o.insert("person".into(), env.person_key.clone().into());
        o.insert("origin".into(), env.origin.clone().into());
        o.insert("residence".into(), env.residence.clone().into());
    }
    let recipients: Vec<Value> = env
        .recipients
        .iter()
        .map(|r| serde_json::json!({"locality": r.locality, "channel_seq": r.channel_seq}))
        .collect();
    o.insert("recipients".into(), recipients.into());
    if !env.causation_id.is_empty() {
        o.insert("causation".into(), uuid_text(&env.causation_id));
    }
    o.insert("body".into(), kind.map(EventKind::body_to_json).unwrap_or(Value::Null));
    let mut withheld = Vec::new();
    for d in &env.tier_digests {
        let tier = d.tier();
        match tiers.iter().find(|t| t.tier == d.tier) {
            Some(p) => {
                o.insert(tier_name(tier).into(), tier_json(tier, &p.content, reveal));
            }
            None => withheld.push(Value::from(tier_name(tier))),
        }
    }
    if !withheld.is_empty() {
        o.insert("tiers_withheld".into(), withheld.into());
    }
    o.insert("prev_hash".into(), hex::encode(&env.prev_hash).into());
    o.insert("hash".into(), hex::encode(hash).into());
    Value::Object(o)
}

fn tier_json(tier: Tier, content: &[u8], reveal: bool) -> Value {
    let v = match tier {
        Tier::Identity => IdentityTier::decode(content).map(|mut t| {
            if !reveal {
                t.name = mask_name(&t.name);
                t.id_number = mask_id_number(&t.id_number);
                t.birth_date = t.birth_date.get(..4).map(|y| format!("{y}-**-**")).unwrap_or_default();
            }
            serde_json::to_value(t)
        }),
        Tier::Contact => ContactTier::decode(content).map(|mut t| {
            if !reveal {
                t.phone = mask_phone(&t.phone);
                t.address = if t.address.is_empty() { String::new() } else { "***".into() };
                t.channel = if t.channel.is_empty() { String::new() } else { "***".into() };
            }
            serde_json::to_value(t)
        }),
        Tier::ReproductiveHealth => HealthTier::decode(content).map(|t| {
            if reveal {
                serde_json::to_value(t)
            } else {
                Ok(Value::String("*** (reproductive-health tier present)".into()))
            }
        }),
        Tier::Unspecified => return Value::Null,
    };
    match v {
        Ok(Ok(v)) => v,
        _ => Value::String("(undecodable tier payload)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        draft_from_json(text, Some(b"s")).unwrap_err().to_string()
    }

    #[test]
    fn parses_a_full_draft() {
        let d = draft_from_json(
            r#"{"kind":"ServiceRendered","origin":"411522","residence":"610112",
                "identity":{"idNumber":"11010519491231002X"},
                "occurred_at":"2026-10-03T09:00:00+08:00",
                "body":{"service":"SERVICE_KIND_PRE_PREGNANCY_CHECK"},"health":{"pregnant":true}}"#,
            Some(b"secret"),
        )
        .unwrap();
        assert_eq!(d.person_key, PersonKey::derive("11010519491231002X", b"secret").to_string());
        assert_eq!(d.occurred_at.unwrap().seconds, 1_790_989_200);
        assert!(d.health.unwrap().pregnant);
    }

    #[test]
    fn errors_name_the_field() {
        assert!(err("{").starts_with("malformed JSON"));
        assert!(err(r#"{"kind":"Nope"}"#).starts_with("unknown event kind `Nope`"));
        assert!(err(r#"{"kind":"ArrivalRegistered","bogus":1}"#).starts_with("field `bogus`: unknown field"));
        assert!(err(r#"{"kind":"ArrivalRegistered","origin":411522}"#).starts_with("field `origin`: must be a string"));
        assert!(err(r#"{"kind":"ServiceRendered","body":{"service":"X"}}"#).starts_with("field `body.service`"));
        assert!(err(r#"{"kind":"ServiceRendered","occurred_at":"yesterday"}"#).starts_with("field `occurred_at`"));
        let e = err(r#"{"kind":"ArrivalRegistered","identity":{"idNumber":110105194912310021}}"#);
        assert!(e.starts_with("field `identity.idNumber`"), "{e}");
        assert!(!e.contains("110105194912310021"), "personal value echoed: {e}");
    }

    /// No error repeats a long input value (found while writing the
    /// event_json fuzz target's no-echo property).
    #[test]
    fn errors_never_echo_long_values() {
        let long = "Q".repeat(300);
        let esc = format!("{}\\u0001{}", "Q".repeat(50), "Q".repeat(50));
        for text in [
            format!(r#"{{"kind":"ArrivalRegistered","{long}":1}}"#),
            format!(r#"{{"kind":"{long}"}}"#),
            format!(r#"{{"kind":"ArrivalRegistered","id":"{long}"}}"#),
            format!(r#"{{"kind":"ArrivalRegistered","occurred_at":"{long}"}}"#),
            format!(r#"{{"kind":"ServiceRendered","body":{{"service":"{long}"}}}}"#),
            format!(r#"{{"kind":"ServiceRendered","body":{{"service":"{esc}"}}}}"#),
            format!(r#"{{"kind":"ServiceRendered","body":{{"{long}":1}}}}"#),
            format!(r#"{{"kind":"ArrivalRegistered","body":{{"expectedStayMonths":"{long}"}}}}"#),
        ] {
            let e = err(&text);
            assert!(!e.contains(&"Q".repeat(41)), "long value echoed: {e}");
            assert!(e.len() < 1500, "{e}");
        }
        let slashes = format!(r#"{{"kind":"ServiceRendered","body":{{"service":"{}yyyyyy"}}}}"#, "\\\\".repeat(44));
        let e = err(&slashes);
        assert!(!e.contains(&"\\".repeat(41)), "long value echoed: {e}");
        let e = crate::Locality::parse(&long).unwrap_err();
        assert!(!e.contains(&"Q".repeat(41)), "{e}");
    }
}

#[cfg(test)]
mod semantic_tests {
    use super::*;
    use crate::validate::{validate_draft, Warning};

    #[test]
    fn a_wrong_check_digit_in_person_id_number_is_a_warning_on_every_path() {
        let secret = b"s".as_slice();
        let event = |id: &str| {
            serde_json::json!({"kind": "ServiceRendered", "origin": "411522", "residence": "610112",
                "person_id_number": id, "body": {"service": "SERVICE_KIND_CARE_VISIT"}})
        };
        let (_, w) = draft_and_warnings(event("11010519491231002X"), Some(secret)).unwrap();
        assert!(w.is_empty(), "{w:?}");
        let (_, w) = draft_and_warnings(event("110105194912310023"), Some(secret)).unwrap();
        assert_eq!(w, vec![Warning::PersonIdCheckDigit]);
        assert!(w[0].to_string().contains("person_id_number") && !w[0].to_string().contains("1101051949"));
    }

    #[test]
    fn personal_tiers_go_only_to_the_parties() {
        let d = draft_from_value(
            serde_json::json!({"kind": "ArrivalRegistered", "origin": "411522", "residence": "610112",
                "person": "00112233445566778899aabbccddeeff", "recipients": ["411522", "610113"],
                "identity": {"name": "张三"}, "body": {"channel": "REGISTRATION_CHANNEL_SERVICE_DESK"}}),
            None,
        )
        .unwrap();
        let e = validate_draft(crate::Locality::parse("610112").unwrap(), &d).unwrap_err().to_string();
        assert!(e.contains("recipients[1]") && e.contains("610113") && e.contains("no party"), "{e}");
        // Without personal tiers a third locality may be told.
        let mut plain = d.clone();
        plain.identity = None;
        validate_draft(crate::Locality::parse("610112").unwrap(), &plain).unwrap();
    }
}
