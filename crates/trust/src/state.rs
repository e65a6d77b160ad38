//! [`TrustState`]: what a holder of the trust anchor has verified so far,
//! and which key signs which author sequence.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use chrono::{DateTime, TimeDelta, Utc};
use ed25519_dalek::VerifyingKey;
use prost::Message;
use serde::Serialize;
use sha2::{Digest, Sha256};
use yipan_core::Locality;
use yipan_proto::v1::{event_body, statement, Envelope, SignedEvent, SignedStatement};

use crate::statement::{decode_parts, key, short, text, time, Record};
use crate::{Fault, KeyFault};

/// Clock skew tolerated on `valid_from` and on events' `recorded_at`.
pub const SKEW: TimeDelta = TimeDelta::minutes(5);

/// What applying a record did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// A province authority was certified.
    Authority {
        /// Its province (two digits).
        province: String,
        /// Serial.
        serial: u64,
    },
    /// A locality certificate was accepted (first, renewal, rotation-in-waiting or recovery).
    Locality {
        /// The locality.
        locality: Locality,
        /// Serial.
        serial: u64,
    },
    /// A certificate was revoked.
    Revoked {
        /// Serial.
        serial: u64,
    },
    /// A locality handed its chain to a new key.
    Rotated {
        /// The locality.
        locality: Locality,
        /// First author sequence signed by the new key.
        from_seq: u64,
    },
    /// Already applied: nothing changed.
    Duplicate,
}

/// A certified province authority.
#[derive(Debug, Clone, Serialize)]
pub struct AuthorityEntry {
    /// Two-digit province code.
    pub province: String,
    /// Name.
    pub name: String,
    /// Public key, hex.
    pub public_key: String,
    /// Serial.
    pub serial: u64,
    /// Validity.
    pub valid_from: String,
    /// Validity.
    pub valid_until: String,
    /// Revocation reason, once revoked.
    pub revoked: Option<String>,
    #[serde(skip)]
    from: DateTime<Utc>,
    #[serde(skip)]
    until: DateTime<Utc>,
}

/// A locality certificate as accepted.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CertEntry {
    /// Serial.
    pub serial: u64,
    /// Name of the locality.
    pub name: String,
    /// Public key, hex.
    pub public_key: String,
    /// Issuer's province and the serial of the issuer's own certificate.
    pub issuer_province: String,
    /// Serial of the issuer authority's certificate.
    pub issuer_serial: u64,
    /// Validity.
    pub valid_from: String,
    /// Validity.
    pub valid_until: String,
    /// Serial this one follows (0: first).
    pub replaces_serial: u64,
    /// Recovery start (0: none).
    pub first_seq: u64,
    /// Revocation: last valid author sequence and reason.
    pub revoked: Option<RevokedEntry>,
    #[serde(skip)]
    key: VerifyingKey,
    #[serde(skip)]
    issuer: [u8; 32],
    #[serde(skip)]
    from: DateTime<Utc>,
    #[serde(skip)]
    until: DateTime<Utc>,
}

/// A revocation as applied.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RevokedEntry {
    /// Events of the key with a higher author sequence are refused.
    pub valid_through_seq: u64,
    /// Why.
    pub reason: String,
}

/// Which key signs an author's sequences from `from_seq` on.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Span {
    /// First author sequence.
    pub from_seq: u64,
    /// Public key, hex.
    pub public_key: String,
    /// How it came about: `certificate`, `rotation at #n`, `recovery`, `bootstrap`.
    pub how: String,
    /// Certificate serial (0 for a hand-added bootstrap key).
    pub serial: u64,
    #[serde(skip)]
    key: VerifyingKey,
    /// The handover event's sequence, for a key that took over by rotation.
    #[serde(skip)]
    rotation_at: Option<u64>,
}

/// Everything known about one locality.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LocalityEntry {
    /// Certificates in the order accepted.
    pub certificates: Vec<CertEntry>,
    /// Key schedule, by first sequence.
    pub spans: Vec<Span>,
    /// A certified next key waiting for the locality's `KeyRotated` event (serial).
    pub pending_rotation: Option<u64>,
}

/// One locality as shown by `GET /v1/roster` and `yipan roster show`.
#[derive(Debug, Clone, Serialize)]
pub struct LocalityView {
    /// Division code.
    pub locality: String,
    /// Name from its newest certificate (empty for bootstrap keys).
    pub name: String,
    /// The key that signs its next events, hex.
    pub public_key: String,
    /// `active`, `bootstrap`, `revoked`, `expired` or `rotation pending`.
    pub status: String,
    /// Province authority and root the current key chains to.
    pub chain: Vec<String>,
    /// Key schedule.
    pub spans: Vec<Span>,
    /// Every certificate accepted.
    pub certificates: Vec<CertEntry>,
}

/// Verified trust: authorities, locality certificates, key schedules.
#[derive(Debug, Clone, Default)]
pub struct TrustState {
    anchor: Option<VerifyingKey>,
    authorities: HashMap<[u8; 32], AuthorityEntry>,
    /// Entries are shared: an entry equal to one another state holds (the
    /// same certificates and schedule) is the same allocation, see [`intern`].
    localities: BTreeMap<u32, Arc<LocalityEntry>>,
    /// Serial → authority key or locality code.
    serials: HashMap<u64, SerialOf>,
    applied: HashSet<[u8; 32]>,
}

#[derive(Debug, Clone, Copy)]
enum SerialOf {
    Authority([u8; 32]),
    Locality(u32),
}

impl TrustState {
    /// A state verifying up to `anchor` (none: only bootstrap keys are known).
    pub fn new(anchor: Option<VerifyingKey>) -> TrustState {
        TrustState { anchor, ..Default::default() }
    }

    /// The trust anchor.
    pub fn anchor(&self) -> Option<VerifyingKey> {
        self.anchor
    }

    /// Applies one trust-stream record received (witnessed) at `at`.
    pub fn apply_record(&mut self, record: &[u8], at: DateTime<Utc>) -> Result<Applied, Fault> {
        match crate::statement::decode_record(record)? {
            Record::Statement(s) => self.apply_signed(s, at),
            Record::Rotation(ev) => self.apply_rotation(&ev, at),
        }
    }

    /// Applies one encoded `SignedStatement` received at `at`.
    pub fn apply_statement(&mut self, signed: &[u8], at: DateTime<Utc>) -> Result<Applied, Fault> {
        let s = SignedStatement::decode(signed).map_err(|e| Fault::Malformed(format!("not a SignedStatement: {e}")))?;
        self.apply_signed(s, at)
    }

    fn apply_signed(&mut self, s: SignedStatement, at: DateTime<Utc>) -> Result<Applied, Fault> {
        let id: [u8; 32] = Sha256::new().chain_update(&s.statement).chain_update(&s.signature).finalize().into();
        if self.applied.contains(&id) {
            return Ok(Applied::Duplicate);
        }
        let d = decode_parts(s)?;
        let anchor = self.anchor.ok_or(Fault::NoAnchor)?;
        let by_root = d.issuer == anchor;
        let issuer_entry = if by_root {
            None
        } else {
            let a = self
                .authorities
                .get(&d.issuer.to_bytes())
                .ok_or_else(|| Fault::UnknownIssuer { key: short(&d.issuer) })?;
            Some(a.clone())
        };
        // Unambiguous: the issuer, the statement's length, the statement, the signature.
        let checked: [u8; 32] = Sha256::new()
            .chain_update(d.issuer.as_bytes())
            .chain_update((d.bytes.len() as u64).to_be_bytes())
            .chain_update(&d.bytes)
            .chain_update(d.signature)
            .finalize()
            .into();
        if !verified_before(&checked) {
            d.issuer
                .verify_strict(&d.bytes, &ed25519_dalek::Signature::from_bytes(&d.signature))
                .map_err(|_| Fault::BadSignature { key: short(&d.issuer) })?;
            remember_verified(checked);
        }
        if let Some(a) = &issuer_entry {
            let problem = if a.revoked.is_some() {
                Some("was revoked".to_string())
            } else if at > a.until || at + SKEW < a.from {
                Some(format!("is not valid at {} ({} .. {})", text(at), a.valid_from, a.valid_until))
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(Fault::IssuerInvalid { province: a.province.clone(), serial: a.serial, problem });
            }
        }
        let applied = match d.statement.kind {
            None => return Err(Fault::Malformed("statement has no kind".into())),
            Some(statement::Kind::Authority(c)) => {
                if !by_root {
                    return Err(Fault::NotRoot("an authority certificate must be signed by the root".into()));
                }
                let p: u8 = c
                    .province
                    .parse()
                    .ok()
                    .filter(|p| yipan_core::locality::province_name(*p).is_some())
                    .ok_or_else(|| Fault::Malformed(format!("province `{}` is not a province code", c.province)))?;
                let k = key(&c.public_key, "public_key")?;
                let (from, until) = validity(c.serial, c.valid_from.as_ref(), c.valid_until.as_ref(), at)?;
                self.fresh_serial(c.serial)?;
                self.serials.insert(c.serial, SerialOf::Authority(k.to_bytes()));
                self.authorities.insert(
                    k.to_bytes(),
                    AuthorityEntry {
                        province: format!("{p:02}"),
                        name: c.name,
                        public_key: hex::encode(k.to_bytes()),
                        serial: c.serial,
                        valid_from: text(from),
                        valid_until: text(until),
                        revoked: None,
                        from,
                        until,
                    },
                );
                Applied::Authority { province: format!("{p:02}"), serial: c.serial }
            }
            Some(statement::Kind::Locality(c)) => {
                let Some(issuer) = issuer_entry else {
                    return Err(Fault::NotRoot(
                        "the root certifies province authorities only; a locality is certified by its province's authority"
                            .into(),
                    ));
                };
                let l = Locality::parse(&c.locality).map_err(|p| Fault::Malformed(format!("locality {p}")))?;
                if format!("{:02}", l.province()) != issuer.province {
                    return Err(Fault::WrongProvince {
                        authority: issuer.province.clone(),
                        locality: l.to_string(),
                        province: format!("{:02}", l.province()),
                    });
                }
                let k = key(&c.public_key, "public_key")?;
                let (from, until) = validity(c.serial, c.valid_from.as_ref(), c.valid_until.as_ref(), at)?;
                self.fresh_serial(c.serial)?;
                let cert = CertEntry {
                    serial: c.serial,
                    name: c.name,
                    public_key: hex::encode(k.to_bytes()),
                    issuer_province: issuer.province.clone(),
                    issuer_serial: issuer.serial,
                    valid_from: text(from),
                    valid_until: text(until),
                    replaces_serial: c.replaces_serial,
                    first_seq: c.first_seq,
                    revoked: None,
                    key: k,
                    issuer: d.issuer.to_bytes(),
                    from,
                    until,
                };
                self.accept_locality(l, cert)?;
                self.serials.insert(c.serial, SerialOf::Locality(l.as_u32()));
                Applied::Locality { locality: l, serial: c.serial }
            }
            Some(statement::Kind::Revocation(r)) => {
                match self.serials.get(&r.serial).copied() {
                    None => return Err(Fault::UnknownSerial(r.serial)),
                    Some(SerialOf::Authority(k)) => {
                        if !by_root {
                            return Err(Fault::NotRoot("only the root may revoke an authority".into()));
                        }
                        if let Some(a) = self.authorities.get_mut(&k) {
                            a.revoked = Some(r.reason.clone());
                        }
                    }
                    Some(SerialOf::Locality(code)) => {
                        if r.valid_through_seq == u64::MAX {
                            return Err(Fault::Malformed("valid_through_seq is the largest sequence: no bound".into()));
                        }
                        // Checked on the (possibly shared) entry first: a refused
                        // revocation leaves it shared, not copied.
                        let slot = self.localities.get_mut(&code).ok_or(Fault::UnknownSerial(r.serial))?;
                        let cert = slot
                            .certificates
                            .iter()
                            .find(|c| c.serial == r.serial)
                            .ok_or(Fault::UnknownSerial(r.serial))?;
                        if !by_root && cert.issuer != d.issuer.to_bytes() {
                            return Err(Fault::NotIssuer { serial: r.serial });
                        }
                        // A later revocation may only tighten the bound (a mistaken or
                        // hostile loose bound is corrected by revoking again, lower).
                        let through = match &cert.revoked {
                            Some(old) if old.valid_through_seq <= r.valid_through_seq => {
                                return Err(Fault::BadReplacement(format!(
                                    "serial {} is already revoked through #{}; a revocation may only lower the bound",
                                    r.serial, old.valid_through_seq
                                )))
                            }
                            _ => r.valid_through_seq,
                        };
                        let entry = Arc::make_mut(slot);
                        let Some(cert) = entry.certificates.iter_mut().find(|c| c.serial == r.serial) else {
                            return Err(Fault::UnknownSerial(r.serial));
                        };
                        let revoked_key = cert.key;
                        cert.revoked = Some(RevokedEntry { valid_through_seq: through, reason: r.reason.clone() });
                        // A pending rotation out of (or into) the revoked key is void.
                        if let Some(p) = entry.pending_rotation {
                            let pending = entry.certificates.iter().find(|c| c.serial == p);
                            let out_of = pending.is_some_and(|c| {
                                entry.certificates.iter().any(|o| o.serial == c.replaces_serial && o.key == revoked_key)
                            });
                            if p == r.serial || out_of {
                                entry.pending_rotation = None;
                            }
                        }
                        intern(code, slot);
                    }
                }
                Applied::Revoked { serial: r.serial }
            }
        };
        self.applied.insert(id);
        Ok(applied)
    }

    fn fresh_serial(&self, serial: u64) -> Result<(), Fault> {
        if serial == 0 {
            return Err(Fault::Malformed("serial is 0".into()));
        }
        if self.serials.contains_key(&serial) {
            return Err(Fault::SerialReused(serial));
        }
        Ok(())
    }

    fn accept_locality(&mut self, l: Locality, cert: CertEntry) -> Result<(), Fault> {
        let slot = self.localities.entry(l.as_u32()).or_default();
        let result = Self::accept_into(Arc::make_mut(slot), l, cert);
        intern(l.as_u32(), slot);
        result
    }

    fn accept_into(entry: &mut LocalityEntry, l: Locality, cert: CertEntry) -> Result<(), Fault> {
        let current = entry.spans.last().cloned();
        let Some(current) = current else {
            if cert.replaces_serial != 0 {
                return Err(Fault::BadReplacement(format!(
                    "certificate {} replaces serial {}, but {l} has no certificate yet",
                    cert.serial, cert.replaces_serial
                )));
            }
            if cert.first_seq > 1 {
                return Err(Fault::BadReplacement(format!(
                    "a first certificate starts at author sequence 1, not {}",
                    cert.first_seq
                )));
            }
            entry.spans.push(span(1, cert.key, "certificate".into(), cert.serial));
            entry.certificates.push(cert);
            return Ok(());
        };
        let conflict = |held: u64| Fault::KeyConflict { locality: l.to_string(), held, new: cert.serial };
        if cert.replaces_serial == 0 {
            if cert.key != current.key {
                return Err(conflict(current.serial));
            }
            // A hand-added key now certified (or renewed without naming the old serial).
            if current.serial == 0 {
                let last = entry.spans.len() - 1;
                entry.spans[last] = span(current.from_seq, cert.key, "certificate".into(), cert.serial);
            }
            entry.certificates.push(cert);
            return Ok(());
        }
        let Some(replaced) = entry.certificates.iter().find(|c| c.serial == cert.replaces_serial).cloned() else {
            return Err(Fault::BadReplacement(format!(
                "certificate {} replaces serial {}, which is not a certificate of {l}",
                cert.serial, cert.replaces_serial
            )));
        };
        if cert.key == replaced.key {
            // Renewal of the same key.
            entry.certificates.push(cert);
            return Ok(());
        }
        if replaced.key != current.key {
            return Err(Fault::BadReplacement(format!(
                "certificate {} replaces serial {}, which is not {l}'s current key",
                cert.serial, cert.replaces_serial
            )));
        }
        if cert.first_seq == 0 {
            // Rotation: waits for the locality's KeyRotated event.
            if replaced.revoked.is_some() {
                return Err(Fault::BadReplacement(format!(
                    "serial {} is revoked: a revoked key cannot sign a rotation; certify the new key with first_seq (recovery)",
                    replaced.serial
                )));
            }
            if let Some(p) = entry.pending_rotation {
                return Err(conflict(p));
            }
            entry.pending_rotation = Some(cert.serial);
            entry.certificates.push(cert);
            return Ok(());
        }
        // Recovery after revocation: the new key continues the chain after the bound.
        let Some(rev) = &replaced.revoked else {
            return Err(Fault::BadReplacement(format!(
                "recovery from serial {} needs that certificate revoked first",
                replaced.serial
            )));
        };
        if cert.first_seq < current.from_seq {
            return Err(Fault::BadReplacement(format!(
                "recovery from #{} would take over sequences of an earlier key (the current key signs from #{})",
                cert.first_seq, current.from_seq
            )));
        }
        if Some(cert.first_seq) != rev.valid_through_seq.checked_add(1) {
            return Err(Fault::BadReplacement(format!(
                "recovery must start at author sequence {} (the revocation's bound + 1), not {}",
                rev.valid_through_seq.saturating_add(1),
                cert.first_seq
            )));
        }
        entry.spans.push(span(cert.first_seq, cert.key, "recovery".into(), cert.serial));
        entry.pending_rotation = None;
        entry.certificates.push(cert);
        Ok(())
    }

    /// Applies a key-rotation event (an encoded `SignedEvent` with a
    /// `KeyRotated` body), received at `at`: signed by the author's key for
    /// its sequence, naming a certificate that replaces that key.
    pub fn apply_rotation(&mut self, event: &[u8], at: DateTime<Utc>) -> Result<Applied, Fault> {
        let id: [u8; 32] = Sha256::digest(event).into();
        if self.applied.contains(&id) {
            return Ok(Applied::Duplicate);
        }
        let signed = SignedEvent::decode(event).map_err(|e| Fault::Malformed(format!("not a SignedEvent: {e}")))?;
        let env = Envelope::decode(signed.envelope.as_slice())
            .map_err(|e| Fault::Malformed(format!("not an Envelope: {e}")))?;
        let Some(event_body::Kind::KeyRotated(body)) = env.body.as_ref().and_then(|b| b.kind.as_ref()) else {
            return Err(Fault::BadRotation("record is not a KeyRotated event".into()));
        };
        let author = Locality::parse(&env.author).map_err(|p| Fault::BadRotation(format!("author {p}")))?;
        let seq = env.author_seq;
        let Some(next_seq) = seq.checked_add(1).filter(|_| seq > 0) else {
            return Err(Fault::BadRotation(format!("at {author}#{seq}: no sequence follows it")));
        };
        let recorded = env.recorded_at.as_ref().and_then(yipan_core::time::from_ts);
        let old = match self.key_for(author, seq, recorded) {
            Ok(k) => k,
            Err(KeyFault::Unknown { .. }) => return Err(Fault::UnknownAuthor(author.to_string())),
            Err(e) => return Err(Fault::BadRotation(format!("at {author}#{seq}: {e}"))),
        };
        let pending =
            crate::batch::prepare(&signed, &env).map_err(|p| Fault::BadRotation(format!("at {author}#{seq}: {p}")))?;
        old.verify_strict(&pending.message(), &pending.signature).map_err(|_| {
            Fault::BadRotation(format!("at {author}#{seq}: not signed by {author}'s key for that sequence"))
        })?;
        let revoked = self
            .localities
            .get(&author.as_u32())
            .is_some_and(|e| e.certificates.iter().any(|c| c.key == old && c.revoked.is_some()));
        if revoked {
            return Err(Fault::BadRotation(format!(
                "at {author}#{seq}: a revoked key cannot sign a rotation (recovery goes through the authority)"
            )));
        }
        let cert = crate::statement::decode(&body.certificate)
            .map_err(|f| Fault::BadRotation(format!("at {author}#{seq}: certificate: {f}")))?;
        let Some(statement::Kind::Locality(c)) = &cert.statement.kind else {
            return Err(Fault::BadRotation(format!("at {author}#{seq}: names no locality certificate")));
        };
        let new = key(&c.public_key, "certificate public_key")?;
        if c.locality != author.to_string() {
            return Err(Fault::BadRotation(format!("at {author}#{seq}: certificate is for {}", c.locality)));
        }
        if c.first_seq != 0 || new == old {
            return Err(Fault::BadRotation(format!(
                "at {author}#{seq}: certificate {} is not a rotation certificate (new key, no first_seq)",
                c.serial
            )));
        }
        let serial = c.serial;
        // Everything on a copy (rotations are rare): a refused handover leaves no
        // trace, not even its embedded certificate.
        let mut probe = self.clone();
        match probe.apply_statement(&body.certificate, at) {
            Ok(_) => {}
            Err(f) => return Err(Fault::BadRotation(format!("at {author}#{seq}: certificate {serial}: {f}"))),
        }
        let slot = probe.localities.entry(author.as_u32()).or_default();
        let entry = Arc::make_mut(slot);
        if let Some(s) = entry.spans.iter().find(|s| s.serial == serial) {
            if s.from_seq == next_seq {
                self.applied.insert(id);
                return Ok(Applied::Duplicate);
            }
            return Err(Fault::BadRotation(format!(
                "at {author}#{seq}: key of certificate {serial} already took over at #{}",
                s.from_seq
            )));
        }
        if entry.pending_rotation != Some(serial) {
            return Err(Fault::BadRotation(format!(
                "at {author}#{seq}: certificate {serial} is not {author}'s certified next key"
            )));
        }
        if entry.spans.last().is_some_and(|s| s.from_seq > seq) {
            return Err(Fault::BadRotation(format!("at {author}#{seq}: the key schedule already continues past it")));
        }
        entry.spans.push(Span { rotation_at: Some(seq), ..span(next_seq, new, format!("rotation at #{seq}"), serial) });
        entry.pending_rotation = None;
        intern(author.as_u32(), slot);
        probe.applied.insert(id);
        *self = probe;
        Ok(Applied::Rotated { locality: author, from_seq: next_seq })
    }

    /// Adds a hand-copied key (`yipan roster add`, an air-gapped site's
    /// bootstrap). Returns false when it was already known.
    pub fn add_bootstrap(&mut self, l: Locality, k: VerifyingKey) -> Result<bool, Fault> {
        let slot = self.localities.entry(l.as_u32()).or_default();
        match slot.spans.last() {
            Some(s) if s.key == k => Ok(false),
            Some(s) => Err(Fault::KeyConflict { locality: l.to_string(), held: s.serial, new: 0 }),
            None => {
                Arc::make_mut(slot).spans.push(span(1, k, "bootstrap".into(), 0));
                intern(l.as_u32(), slot);
                Ok(true)
            }
        }
    }

    /// The key that signs `author`'s event at `seq` (recorded at `recorded`).
    pub fn key_for(
        &self,
        author: Locality,
        seq: u64,
        recorded: Option<DateTime<Utc>>,
    ) -> Result<VerifyingKey, KeyFault> {
        let unknown = || KeyFault::Unknown { author: author.to_string() };
        let entry = self.localities.get(&author.as_u32()).ok_or_else(unknown)?;
        let span = entry.spans.iter().rev().find(|s| s.from_seq <= seq).ok_or_else(unknown)?;
        if span.serial == 0 {
            return Ok(span.key);
        }
        // No allocation: this runs once per received and audited event.
        let certs = || entry.certificates.iter().filter(|c| c.key == span.key);
        // The tightest bound of any revoked certificate of this key.
        if let Some((c, r)) =
            certs().filter_map(|c| c.revoked.as_ref().map(|r| (c, r))).min_by_key(|(_, r)| r.valid_through_seq)
        {
            if seq > r.valid_through_seq {
                return Err(KeyFault::Revoked { serial: c.serial, through: r.valid_through_seq, seq });
            }
        }
        if let Some(t) = recorded {
            if !certs().any(|c| c.from - SKEW <= t && t <= c.until) {
                return Err(KeyFault::OutsideValidity {
                    serial: certs().next_back().map(|c| c.serial).unwrap_or(span.serial),
                    recorded: text(t),
                });
            }
        }
        Ok(span.key)
    }

    /// The first author sequence of each of `author`'s keys, in order.
    pub fn span_starts(&self, author: Locality) -> Vec<u64> {
        self.localities.get(&author.as_u32()).map(|e| e.spans.iter().map(|s| s.from_seq).collect()).unwrap_or_default()
    }

    /// Author sequences of `author`'s key handovers (its `KeyRotated` events).
    pub fn handovers(&self, author: Locality) -> Vec<u64> {
        self.localities
            .get(&author.as_u32())
            .map(|e| e.spans.iter().filter_map(|s| s.rotation_at).collect())
            .unwrap_or_default()
    }

    /// The certified next key of `author` waiting for its rotation event.
    pub fn pending_key(&self, author: Locality) -> Option<VerifyingKey> {
        let e = self.localities.get(&author.as_u32())?;
        let serial = e.pending_rotation?;
        e.certificates.iter().find(|c| c.serial == serial).map(|c| c.key)
    }

    /// Whether any key of `author` is known.
    pub fn knows(&self, author: Locality) -> bool {
        self.localities.get(&author.as_u32()).is_some_and(|e| !e.spans.is_empty())
    }

    /// Whether `author` has a certificate (not just a bootstrap key).
    pub fn is_certified(&self, author: Locality) -> bool {
        self.localities.get(&author.as_u32()).is_some_and(|e| !e.certificates.is_empty())
    }

    /// Every locality's newest key.
    pub fn current_keys(&self) -> Vec<(Locality, VerifyingKey)> {
        self.localities.iter().filter_map(|(c, e)| Some((Locality::from_u32(*c).ok()?, e.spans.last()?.key))).collect()
    }

    /// How many localities' entries this state shares (one allocation) with `other`.
    #[cfg(test)]
    pub(crate) fn shared_entries(&self, other: &TrustState) -> usize {
        self.localities.iter().filter(|(c, e)| other.localities.get(c).is_some_and(|o| Arc::ptr_eq(e, o))).count()
    }

    /// The certified authorities.
    pub fn authorities(&self) -> Vec<AuthorityEntry> {
        let mut v: Vec<AuthorityEntry> = self.authorities.values().cloned().collect();
        v.sort_by(|a, b| (&a.province, a.serial).cmp(&(&b.province, b.serial)));
        v
    }

    /// Every locality with its chain, schedule and status as of `now`.
    pub fn view(&self, now: DateTime<Utc>) -> Vec<LocalityView> {
        let anchor = self.anchor.map(|a| format!("root {}…", short(&a))).unwrap_or_default();
        self.localities
            .iter()
            .filter_map(|(code, e)| {
                let last = e.spans.last()?;
                let cert = e.certificates.iter().rev().find(|c| c.key == last.key);
                let status = match cert {
                    None => "bootstrap".to_string(),
                    Some(_) if e.pending_rotation.is_some() => "rotation pending".into(),
                    Some(_) if e.certificates.iter().any(|c| c.key == last.key && c.revoked.is_some()) => {
                        "revoked".into()
                    }
                    Some(_) if !e.certificates.iter().any(|c| c.key == last.key && now <= c.until) => "expired".into(),
                    Some(_) => "active".into(),
                };
                let chain = match cert {
                    Some(c) => {
                        let auth = self.authorities.get(&c.issuer);
                        vec![
                            format!("locality {} serial {}", Locality::from_u32(*code).ok()?, c.serial),
                            match auth {
                                Some(a) => format!("authority {} {} serial {}", a.province, a.name, a.serial),
                                None => "authority ?".into(),
                            },
                            anchor.clone(),
                        ]
                    }
                    None => vec!["hand-added key (no certificate)".into()],
                };
                Some(LocalityView {
                    locality: Locality::from_u32(*code).ok()?.to_string(),
                    name: e.certificates.last().map(|c| c.name.clone()).unwrap_or_default(),
                    public_key: hex::encode(last.key.to_bytes()),
                    status,
                    chain,
                    spans: e.spans.clone(),
                    certificates: e.certificates.clone(),
                })
            })
            .collect()
    }
}

/// Entries by locality, shared process-wide: the states of the many
/// localities one process hosts (each verifies the same national trust
/// stream, so each holds an entry for every locality, almost always equal to
/// the others') keep one allocation per distinct entry instead of one per
/// state — 2,854 tenants of 2,854 localities would otherwise hold 8 million
/// entries of ~1.4 KB. Equality is checked in full, so sharing never changes
/// what a state holds; a changed entry is copied first (`Arc::make_mut`).
fn interned() -> &'static Mutex<HashMap<u32, Vec<Weak<LocalityEntry>>>> {
    static INTERNED: OnceLock<Mutex<HashMap<u32, Vec<Weak<LocalityEntry>>>>> = OnceLock::new();
    INTERNED.get_or_init(Default::default)
}

/// Replaces `slot` by an equal entry already held elsewhere in the
/// process, or makes it the one others will share.
fn intern(code: u32, slot: &mut Arc<LocalityEntry>) {
    let mut table = interned().lock().unwrap_or_else(|p| p.into_inner());
    let known = table.entry(code).or_default();
    known.retain(|w| w.strong_count() > 0);
    for w in known.iter() {
        if let Some(e) = w.upgrade() {
            if Arc::ptr_eq(&e, slot) {
                return;
            }
            if *e == **slot {
                *slot = e;
                return;
            }
        }
    }
    known.push(Arc::downgrade(slot));
}

fn span(from_seq: u64, key: VerifyingKey, how: String, serial: u64) -> Span {
    Span { from_seq, public_key: hex::encode(key.to_bytes()), how, serial, key, rotation_at: None }
}

fn validity(
    serial: u64,
    from: Option<&yipan_proto::Timestamp>,
    until: Option<&yipan_proto::Timestamp>,
    at: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), Fault> {
    let from = time(from, "valid_from")?;
    let until = time(until, "valid_until")?;
    if until <= from {
        return Err(Fault::Malformed(format!("valid_until {} is not after valid_from {}", text(until), text(from))));
    }
    if until < at {
        return Err(Fault::Expired { serial, until: text(until), at: text(at) });
    }
    if from > at + SKEW {
        return Err(Fault::NotYetValid { serial, from: text(from), at: text(at) });
    }
    Ok((from, until))
}

/// Statements whose signature this process has verified, by the digest of
/// statement and signature (which names the issuer): every tenant of a host
/// reads the same national trust stream, so only the first pays the
/// ed25519 verification of each record. A signature that verified once
/// verifies again; validity, revocation and order are still judged by each
/// tenant's own state. Bounded: forgotten wholesale past a million.
fn verified_cache() -> &'static std::sync::Mutex<std::collections::HashSet<[u8; 32]>> {
    static CACHE: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<[u8; 32]>>> =
        std::sync::OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn verified_before(id: &[u8; 32]) -> bool {
    verified_cache().lock().map(|c| c.contains(id)).unwrap_or(false)
}

fn remember_verified(id: [u8; 32]) {
    if let Ok(mut c) = verified_cache().lock() {
        if c.len() >= 1 << 20 {
            c.clear();
        }
        c.insert(id);
    }
}
