//! The disclosure log: every release of a personal tier by this node — to a
//! counterpart by replication, to a downstream system (NATS feed), to an
//! HTTP caller or event-stream subscriber — recorded at the releasing node:
//! when, to whom, which person key and event, which tiers, masked or not,
//! on what basis. It never holds the personal values themselves.
//!
//! Append-only and tamper-evident: entry `n` is stored under `d` + n (u64
//! BE) with the SHA-256 of the entry before it; its own hash is
//! `SHA-256("yipan disclosure v1\0" ‖ prev ‖ canonical JSON of the entry)`.
//! The head (count, last hash) is kept in the metadata and written in the
//! same atomic batch, so an entry removed, altered, reordered or added
//! without its chain fails [`Log::verify_disclosures`] (run by `verify`).
//! A person index (`i` + person key + n) answers "who received my data"
//! without a scan.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::layout;
use crate::log::Log;

/// Key prefix of the entries.
pub const ENTRY: u8 = b'd';
/// Key prefix of the person index.
pub const BY_PERSON: u8 = b'i';
/// Metadata: number of entries (u64 BE) and the last entry's hash (32).
pub const HEAD: &[u8] = b"mdisclosures";

/// One release, as the caller describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disclosure {
    /// When it was released (RFC 3339, UTC).
    pub at: String,
    /// How: `replication`, `downstream`, `http`, `stream` or `cli` (`yipan log` on the node machine).
    pub channel: String,
    /// To whom: a locality code, a downstream role (`downstream:health`), or
    /// an HTTP caller (`token:<id>` / `certificate:<name>`).
    pub recipient: String,
    /// The recipient's role (HTTP callers and downstream systems); empty for localities.
    #[serde(default)]
    pub role: String,
    /// The person key (hex), never the ID number.
    pub person: String,
    /// The event released.
    pub event: String,
    /// Its author and author sequence.
    pub author: String,
    /// Author sequence.
    pub seq: u64,
    /// The tiers released (`identity`, `contact`, `health`).
    pub tiers: Vec<String>,
    /// Released masked (`李**`) rather than in full.
    #[serde(default)]
    pub masked: bool,
    /// Why this recipient may receive them (the duty or the role).
    pub basis: String,
}

/// A stored entry: its number, the release, and its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the log, from 1.
    pub n: u64,
    /// The release.
    #[serde(flatten)]
    pub disclosure: Disclosure,
    /// Hash of the entry before (hex; zeros for the first).
    pub prev: String,
    /// This entry's hash (hex).
    pub hash: String,
}

impl Disclosure {
    /// The release of `ev` as it is sent (its tier payloads as they stand:
    /// filter them for the recipient first), or `None` when it carries no
    /// personal tier or names no person.
    pub fn of(
        ev: &crate::StoredEvent,
        channel: &str,
        recipient: &str,
        role: &str,
        masked: bool,
        basis: &str,
    ) -> Option<Disclosure> {
        if ev.signed.tiers.is_empty() || yipan_core::PersonKey::parse(&ev.envelope.person_key).is_err() {
            return None;
        }
        let tiers = ev
            .signed
            .tiers
            .iter()
            .filter_map(|t| yipan_proto::v1::Tier::try_from(t.tier).ok())
            .map(|t| yipan_core::kind::tier_name(t).to_string())
            .collect();
        Some(Disclosure {
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            channel: channel.into(),
            recipient: recipient.into(),
            role: role.into(),
            person: ev.envelope.person_key.clone(),
            event: ev.id().map(|u| u.to_string()).unwrap_or_default(),
            author: ev.envelope.author.clone(),
            seq: ev.seq(),
            tiers,
            masked,
            basis: basis.into(),
        })
    }
}

/// The basis of replicating an event to `recipient`: the relationship's other party.
pub fn replication_basis(ev: &crate::StoredEvent, recipient: &str) -> &'static str {
    if recipient == ev.envelope.origin {
        "exchange with the relationship's origin (户籍地): its four-one duties and the residence's notifications"
    } else if recipient == ev.envelope.residence {
        "exchange with the relationship's residence (现居住地): its six-one duties and the origin's notifications"
    } else {
        "recipient named by the author"
    }
}

impl std::fmt::Display for Entry {
    /// One line: number, time, channel, recipient, role, event, tiers, basis.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = &self.disclosure;
        write!(
            f,
            "#{:<5} {}  {:<11} to {:<22} {:<16} {}#{} {}{}  ({})",
            self.n,
            d.at,
            d.channel,
            d.recipient,
            if d.role.is_empty() { "-" } else { &d.role },
            d.author,
            d.seq,
            d.tiers.join("+"),
            if d.masked { " masked" } else { "" },
            d.basis
        )
    }
}

fn entry_key(n: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = ENTRY;
    k[1..].copy_from_slice(&n.to_be_bytes());
    k
}

fn person_key(person: &[u8; 16], n: u64) -> [u8; 25] {
    let mut k = [0u8; 25];
    k[0] = BY_PERSON;
    k[1..17].copy_from_slice(person);
    k[17..].copy_from_slice(&n.to_be_bytes());
    k
}

fn hash_of(prev: &[u8; 32], d: &Disclosure) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"yipan disclosure v1\0");
    h.update(prev);
    // Field order is the struct's: the JSON is canonical for this version.
    h.update(serde_json::to_vec(d).unwrap_or_default());
    h.finalize().into()
}

fn parse_head(v: &[u8]) -> Option<(u64, [u8; 32])> {
    (v.len() == 40)
        .then(|| (u64::from_be_bytes(v[..8].try_into().unwrap_or_default()), v[8..].try_into().unwrap_or([0; 32])))
}

fn person_bytes(hex_key: &str) -> Result<[u8; 16]> {
    let p = yipan_core::PersonKey::parse(hex_key).map_err(|e| Error::Storage(format!("disclosure person: {e}")))?;
    Ok(*p.as_bytes())
}

/// What [`Log::verify_disclosures`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DisclosureCheck {
    /// Entries checked.
    pub entries: u64,
    /// Everything wrong.
    pub problems: Vec<String>,
}

impl<B: Backend> Log<B> {
    /// Records releases, in one atomic write (entries, person index, head).
    pub fn disclose(&self, items: &[Disclosure]) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let backend = self.backend();
        let mut head = self.disclosure_lock();
        let (mut n, mut prev) = match *head {
            Some(h) => h,
            None => backend.get(HEAD)?.as_deref().and_then(parse_head).unwrap_or((0, [0; 32])),
        };
        let mut ops = Vec::with_capacity(items.len() * 2 + 1);
        for d in items {
            n += 1;
            let hash = hash_of(&prev, d);
            let entry = Entry { n, disclosure: d.clone(), prev: hex::encode(prev), hash: hex::encode(hash) };
            let value = serde_json::to_vec(&entry).map_err(|e| Error::Storage(e.to_string()))?;
            ops.push((entry_key(n).to_vec(), Some(value)));
            ops.push((person_key(&person_bytes(&d.person)?, n).to_vec(), Some(Vec::new())));
            prev = hash;
        }
        let mut h = n.to_be_bytes().to_vec();
        h.extend_from_slice(&prev);
        ops.push((HEAD.to_vec(), Some(h)));
        if let Err(e) = self.commit(ops) {
            // The batch may or may not be on disk: read the head again next time.
            *head = None;
            return Err(e);
        }
        *head = Some((n, prev));
        Ok(())
    }

    /// Every release of a person's data, oldest first.
    pub fn disclosures_of(&self, person: &yipan_core::PersonKey) -> Result<Vec<Entry>> {
        let mut start = vec![BY_PERSON];
        start.extend_from_slice(person.as_bytes());
        let end = layout::prefix_end(&start);
        let backend = self.backend();
        let mut out = Vec::new();
        for (k, _) in backend.range(&start, &end, usize::MAX)? {
            let n =
                u64::from_be_bytes(k[17..25].try_into().map_err(|_| Error::Storage("disclosure index key".into()))?);
            out.push(self.disclosure_entry(n)?);
        }
        Ok(out)
    }

    /// Up to `limit` entries after entry `after` (0: from the start).
    pub fn disclosures_page(&self, after: u64, limit: usize) -> Result<Vec<Entry>> {
        let backend = self.backend();
        backend
            .range(&entry_key(after.saturating_add(1)), &[ENTRY + 1], limit)?
            .into_iter()
            .map(|(_, v)| {
                serde_json::from_slice(&v).map_err(|e| Error::Storage(format!("disclosure entry unreadable: {e}")))
            })
            .collect()
    }

    fn disclosure_entry(&self, n: u64) -> Result<Entry> {
        let v = self
            .backend()
            .get(&entry_key(n))?
            .ok_or_else(|| Error::Storage(format!("disclosure entry {n} missing")))?;
        serde_json::from_slice(&v).map_err(|e| Error::Storage(format!("disclosure entry {n} unreadable: {e}")))
    }

    /// Checks the whole disclosure log: numbering, every hash, the chain, the
    /// head, and that the person index names exactly the entries.
    pub fn verify_disclosures(&self) -> Result<DisclosureCheck> {
        let backend = self.backend();
        let mut check = DisclosureCheck::default();
        let mut prev = [0u8; 32];
        let mut expected = 1u64;
        let mut persons: Vec<([u8; 16], u64)> = Vec::new();
        backend.for_each(&[ENTRY], &[ENTRY + 1], &mut |k, v| {
            check.entries += 1;
            let n = k.get(1..9).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).unwrap_or(0);
            if n != expected {
                check.problems.push(format!("entry {expected} is missing (next is {n})"));
                expected = n;
            }
            expected += 1;
            match serde_json::from_slice::<Entry>(v) {
                Err(e) => check.problems.push(format!("entry {n} unreadable: {e}")),
                Ok(e) => {
                    if e.n != n {
                        check.problems.push(format!("entry {n} says it is entry {}", e.n));
                    }
                    if e.prev != hex::encode(prev) {
                        check.problems.push(format!("entry {n} does not follow entry {} (chain broken)", n - 1));
                    }
                    let h = hash_of(&prev, &e.disclosure);
                    if e.hash != hex::encode(h) {
                        check.problems.push(format!("entry {n} was altered (its hash does not match)"));
                    }
                    prev = h;
                    match person_bytes(&e.disclosure.person) {
                        Ok(p) => persons.push((p, n)),
                        Err(_) => check.problems.push(format!("entry {n} names no valid person key")),
                    }
                }
            }
            true
        })?;
        match backend.get(HEAD)?.as_deref().and_then(parse_head) {
            Some((count, last)) if count == check.entries && last == prev => {}
            None if check.entries == 0 => {}
            Some((count, _)) if count != check.entries => check.problems.push(format!(
                "the head counts {count} entries but {} are stored (entries removed or added)",
                check.entries
            )),
            _ => check.problems.push("the head does not match the last entry (entries altered)".into()),
        }
        let mut indexed: Vec<([u8; 16], u64)> = Vec::new();
        backend.for_each(&[BY_PERSON], &[BY_PERSON + 1], &mut |k, _| {
            if let (Some(p), Some(n)) = (
                k.get(1..17).and_then(|b| <[u8; 16]>::try_from(b).ok()),
                k.get(17..25).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes),
            ) {
                indexed.push((p, n));
            }
            true
        })?;
        persons.sort_unstable();
        indexed.sort_unstable();
        if persons != indexed {
            check.problems.push("the person index does not match the entries".into());
        }
        Ok(check)
    }
}
