//! Erasure that reaches every copy, and retention (docs/privacy.md "Erasure").
//!
//! The requesting node drops the tiers of every event about the person it
//! holds, destroys its data keys of those tiers (the sealed copies in the
//! streams become unreadable) and records one `ErasureRequested` per
//! relationship it is a party to, addressed to every locality that was sent
//! its events about the person. Each recipient drops the tiers of the
//! requester's events about the person and answers with `ErasureConfirmed`,
//! its signed receipt. Requests and receipts are events: they replicate,
//! verify and audit like the others, reach downstream subscribers on their
//! feeds (the erasure notice), and survive a recipient being offline (it
//! answers when it comes back). They are not facts of any card or scorecard.
//!
//! Retention: `[privacy.retention]` gives per-tier periods in years after a
//! relationship ends (the last departure with no later arrival); a daily task
//! erases expired tiers through the same path with the basis
//! `RETENTION_EXPIRED`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use yipan_core::{EventKind, Locality, PersonKey};
use yipan_log::erase::Scope;
use yipan_log::{Backend, Log};
use yipan_projections::calendar::WorkCalendar;
use yipan_proto::v1::{self, event_body::Kind as Body, Envelope, EventBody, EventDraft, Tier};

/// `[privacy]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyConfig {
    /// Working days a recipient has to confirm an erasure (signed into each request).
    #[serde(default = "default_answer_days")]
    pub erasure_answer_working_days: u32,
    /// Retention periods.
    #[serde(default)]
    pub retention: Retention,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        PrivacyConfig { erasure_answer_working_days: default_answer_days(), retention: Retention::default() }
    }
}

fn default_answer_days() -> u32 {
    15
}

/// `[privacy.retention]`: years a tier is kept after the person's last
/// relationship here ended (0 or absent: kept).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Identity tier (name, ID number, …).
    #[serde(default)]
    pub identity_years: u32,
    /// Contact tier.
    #[serde(default)]
    pub contact_years: u32,
    /// Reproductive-health tier.
    #[serde(default)]
    pub health_years: u32,
}

impl Retention {
    fn periods(&self) -> Vec<(Tier, u32)> {
        [
            (Tier::Identity, self.identity_years),
            (Tier::Contact, self.contact_years),
            (Tier::ReproductiveHealth, self.health_years),
        ]
        .into_iter()
        .filter(|(_, y)| *y > 0)
        .collect()
    }
}

/// An erasure asked of this node.
#[derive(Debug, Clone)]
pub struct Request {
    /// The person.
    pub person: PersonKey,
    /// Tiers to erase (empty: all).
    pub tiers: Vec<Tier>,
    /// Why.
    pub basis: v1::ErasureBasis,
    /// Case or file number (no name or ID number).
    pub reference: String,
}

/// What an erasure request did here.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The requests recorded (one per relationship), with their recipients.
    pub requests: Vec<Sent>,
    /// What was dropped from this store.
    pub erased: yipan_log::erase::Erased,
}

/// One recorded request.
#[derive(Debug, Clone, Serialize)]
pub struct Sent {
    /// Its event id.
    pub id: Uuid,
    /// The relationship.
    pub origin: String,
    /// The relationship.
    pub residence: String,
    /// Who must confirm.
    pub recipients: Vec<String>,
    /// By when.
    pub answer_by: DateTime<Utc>,
}

/// Refusals of a request, naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The field at fault.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

fn tier_names(tiers: &[Tier]) -> Vec<&'static str> {
    tiers.iter().map(|t| yipan_core::kind::tier_name(*t)).collect()
}

/// Every tier.
pub const ALL_TIERS: [Tier; 3] = [Tier::Identity, Tier::Contact, Tier::ReproductiveHealth];

/// Records the requests and erases here. `now` is the request's time.
pub fn request<B: Backend>(
    log: &Log<B>,
    calendar: &WorkCalendar,
    answer_days: u32,
    req: &Request,
    now: DateTime<Utc>,
) -> Result<Outcome, Refused> {
    let me = log.locality();
    let storage = |e: yipan_log::Error| Refused { field: "person", message: format!("cannot read the log: {e}") };
    let tiers: Vec<Tier> = if req.tiers.is_empty() { ALL_TIERS.to_vec() } else { req.tiers.clone() };
    if req.basis == v1::ErasureBasis::Unspecified {
        return Err(Refused { field: "basis", message: "missing; say why (person_request, retention_expired, purpose_fulfilled, consent_withdrawn, unlawful_processing)".into() });
    }
    if req.reference.chars().count() > 64 {
        return Err(Refused {
            field: "reference",
            message: "is longer than 64 characters (a case number, never a name)".into(),
        });
    }
    let held = log.read_person(req.person).map_err(storage)?;
    // Relationships this node is a party to → the localities its events about the person went to.
    let mut rels: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for ev in &held {
        let env = &ev.envelope;
        let (o, r) = (env.origin.clone(), env.residence.clone());
        if o.is_empty() || (o != me.to_string() && r != me.to_string()) {
            continue;
        }
        let sent = rels.entry((o.clone(), r.clone())).or_default();
        let counterpart = if o == me.to_string() { r } else { o };
        sent.insert(counterpart);
        if ev.author() == Some(me) {
            sent.extend(env.recipients.iter().map(|x| x.locality.clone()));
        }
    }
    if rels.is_empty() {
        return Err(Refused {
            field: "person",
            message: format!("no relationship with this person is held at {me}: nothing to erase here"),
        });
    }
    let answer_by = calendar_deadline(calendar, now, answer_days);
    let mut drafts = Vec::new();
    let mut sent = Vec::new();
    for ((origin, residence), recipients) in rels {
        let id = Uuid::now_v7();
        let recipients: Vec<String> = recipients.into_iter().filter(|r| *r != me.to_string()).collect();
        drafts.push(EventDraft {
            event_id: id.as_bytes().to_vec(),
            occurred_at: Some(yipan_core::time::to_ts(now)),
            person_key: req.person.to_string(),
            origin: origin.clone(),
            residence: residence.clone(),
            recipients: recipients.clone(),
            body: Some(EventBody {
                kind: Some(Body::ErasureRequested(v1::ErasureRequested {
                    tiers: tiers.iter().map(|t| *t as i32).collect(),
                    basis: req.basis as i32,
                    reference: req.reference.clone(),
                    answer_by: Some(yipan_core::time::to_ts(answer_by)),
                })),
            }),
            ..Default::default()
        });
        sent.push(Sent { id, origin, residence, recipients, answer_by });
    }
    // The requests first: once they are durable, the erasure below can be
    // redone from them (`yipan erase --reapply`) whatever happens next.
    log.append_batch(drafts)
        .map_err(|e| Refused { field: "person", message: format!("cannot record the request: {e}") })?;
    let erased = log
        .erase(&Scope {
            person: req.person,
            tiers: tiers.clone(),
            author: None,
            before_seq: None,
            recorded_until_us: None,
            by: sent[0].id,
        })
        .map_err(storage)?;
    tracing::info!(
        requests = sent.len(),
        tiers = ?tier_names(&tiers),
        payloads = erased.payloads,
        keys = erased.keys_destroyed,
        "erasure recorded and done here"
    );
    Ok(Outcome { requests: sent, erased })
}

fn calendar_deadline(calendar: &WorkCalendar, now: DateTime<Utc>, days: u32) -> DateTime<Utc> {
    let day = calendar.add_working_days(yipan_projections::calendar::date_of(now), days);
    // The end of that day in China time.
    let end = day.and_hms_opt(23, 59, 59).unwrap_or_default() - chrono::Duration::hours(8);
    DateTime::from_naive_utc_and_offset(end, Utc)
}

fn request_body(env: &Envelope) -> Option<&v1::ErasureRequested> {
    match env.body.as_ref()?.kind.as_ref()? {
        Body::ErasureRequested(b) => Some(b),
        _ => None,
    }
}

/// Answers a received request addressed to this node, once: drops the tiers
/// of the requester's events about the person up to the request and records
/// the signed receipt. `None`: not for this node, or already answered.
pub fn respond<B: Backend>(log: &Log<B>, env: &Envelope) -> yipan_log::Result<Option<Uuid>> {
    let me = log.locality();
    let Some(body) = request_body(env) else { return Ok(None) };
    let (Ok(author), Ok(person), Ok(id)) =
        (Locality::parse(&env.author), PersonKey::parse(&env.person_key), Uuid::from_slice(&env.event_id))
    else {
        return Ok(None);
    };
    if author == me || !env.recipients.iter().any(|r| r.locality == me.to_string()) {
        return Ok(None);
    }
    let held = log.read_person(person)?;
    let answered = held.iter().any(|e| {
        e.author() == Some(me)
            && e.kind() == Some(EventKind::ErasureConfirmed)
            && e.envelope.causation_id == env.event_id
    });
    if answered {
        return Ok(None);
    }
    let tiers: Vec<Tier> = body.tiers.iter().filter_map(|t| Tier::try_from(*t).ok()).collect();
    let erased = log.erase(&Scope {
        person,
        tiers: tiers.clone(),
        author: Some(author),
        before_seq: Some(env.author_seq),
        recorded_until_us: None,
        by: id,
    })?;
    let receipt = Uuid::now_v7();
    let draft = EventDraft {
        event_id: receipt.as_bytes().to_vec(),
        occurred_at: Some(yipan_core::time::to_ts(Utc::now())),
        person_key: env.person_key.clone(),
        origin: env.origin.clone(),
        residence: env.residence.clone(),
        recipients: vec![author.to_string()],
        causation_id: env.event_id.clone(),
        body: Some(EventBody {
            kind: Some(Body::ErasureConfirmed(v1::ErasureConfirmed {
                tiers: body.tiers.clone(),
                payloads_dropped: erased.payloads as u32,
                events_held: erased.events_held as u32,
            })),
        }),
        ..Default::default()
    };
    log.append(draft)?;
    tracing::info!(requester = %author, payloads = erased.payloads, events = erased.events_held, "erasure request answered");
    Ok(Some(receipt))
}

/// Erasure requests and receipts held here (a handful per person, kept in memory).
#[derive(Clone, Default)]
pub struct Registry(Arc<Mutex<Vec<Arc<Envelope>>>>);

impl Registry {
    /// Adds an event if it is a request or receipt.
    pub fn add(&self, env: Arc<Envelope>) {
        let kind = env.body.as_ref().and_then(|b| b.kind.as_ref()).map(EventKind::of);
        if matches!(kind, Some(EventKind::ErasureRequested | EventKind::ErasureConfirmed)) {
            let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if !all.iter().any(|e| e.event_id == env.event_id) {
                all.push(env);
            }
        }
    }

    /// Every request and receipt.
    pub fn all(&self) -> Vec<Arc<Envelope>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Adds every request and receipt held in `log` (one scan).
    pub fn load<B: Backend>(&self, log: &Log<B>) -> yipan_log::Result<()> {
        log.scan_envelopes(|envs| {
            for e in envs {
                self.add(Arc::new(e));
            }
        })
    }

    /// Requests addressed to `me` that `me` has not answered (no receipt of its own held).
    pub fn unanswered(&self, me: Locality) -> Vec<Arc<Envelope>> {
        let all = self.all();
        let me = me.to_string();
        all.iter()
            .filter(|e| request_body(e).is_some() && e.author != me && e.recipients.iter().any(|r| r.locality == me))
            .filter(|req| {
                !all.iter().any(|c| c.author == me && c.causation_id == req.event_id && request_body(c).is_none())
            })
            .cloned()
            .collect()
    }
}

/// The state of one recipient's answer.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    /// The recipient.
    pub locality: String,
    /// `confirmed`, `open` or `overdue`.
    pub state: &'static str,
    /// Its receipt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
    /// When it confirmed (recorded at the recipient).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirmed_at: Option<String>,
    /// Payloads it dropped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payloads_dropped: Option<u32>,
    /// The requester's events about the person it held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_held: Option<u32>,
    /// Calendar days past the deadline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overdue_days: Option<i64>,
}

/// One request as both sides see it.
#[derive(Debug, Clone, Serialize)]
pub struct View {
    /// The request's event id.
    pub id: String,
    /// `sent` (by this node) or `received`.
    pub direction: &'static str,
    /// Requester.
    pub author: String,
    /// Person key.
    pub person: String,
    /// Relationship.
    pub origin: String,
    /// Relationship.
    pub residence: String,
    /// Tiers.
    pub tiers: Vec<&'static str>,
    /// Basis, e.g. `ERASURE_BASIS_PERSON_REQUEST`.
    pub basis: String,
    /// Case number.
    pub reference: String,
    /// When it was recorded.
    pub recorded_at: String,
    /// Deadline.
    pub answer_by: String,
    /// Each recipient's answer.
    pub answers: Vec<Answer>,
    /// Every recipient has confirmed.
    pub complete: bool,
}

/// The requests held here as of `as_of` (a receipt counts from when it was recorded), optionally for one person.
pub fn views(registry: &Registry, me: Locality, person: Option<&PersonKey>, as_of: DateTime<Utc>) -> Vec<View> {
    let all = registry.all();
    let ts = |t: &Option<yipan_proto::Timestamp>| t.as_ref().and_then(yipan_core::time::from_ts);
    let mut out = Vec::new();
    for req in &all {
        let Some(body) = request_body(req) else { continue };
        if person.is_some_and(|p| p.to_string() != req.person_key) {
            continue;
        }
        let recorded = ts(&req.recorded_at).unwrap_or_default();
        if recorded > as_of {
            continue;
        }
        let due = ts(&body.answer_by).unwrap_or(recorded);
        let answers: Vec<Answer> = req
            .recipients
            .iter()
            .map(|r| {
                let receipt = all.iter().find(|c| {
                    c.author == r.locality
                        && c.causation_id == req.event_id
                        && ts(&c.recorded_at).is_some_and(|t| t <= as_of)
                });
                match receipt {
                    Some(c) => {
                        let b = match c.body.as_ref().and_then(|b| b.kind.as_ref()) {
                            Some(Body::ErasureConfirmed(b)) => Some(b),
                            _ => None,
                        };
                        Answer {
                            locality: r.locality.clone(),
                            state: "confirmed",
                            receipt: Uuid::from_slice(&c.event_id).ok().map(|u| u.to_string()),
                            confirmed_at: ts(&c.recorded_at).map(|t| t.to_rfc3339()),
                            payloads_dropped: b.map(|b| b.payloads_dropped),
                            events_held: b.map(|b| b.events_held),
                            overdue_days: None,
                        }
                    }
                    None if as_of > due => Answer {
                        locality: r.locality.clone(),
                        state: "overdue",
                        receipt: None,
                        confirmed_at: None,
                        payloads_dropped: None,
                        events_held: None,
                        overdue_days: Some((as_of - due).num_days().max(0) + 1),
                    },
                    None => Answer {
                        locality: r.locality.clone(),
                        state: "open",
                        receipt: None,
                        confirmed_at: None,
                        payloads_dropped: None,
                        events_held: None,
                        overdue_days: None,
                    },
                }
            })
            .collect();
        let tiers: Vec<Tier> = body.tiers.iter().filter_map(|t| Tier::try_from(*t).ok()).collect();
        out.push(View {
            id: Uuid::from_slice(&req.event_id).map(|u| u.to_string()).unwrap_or_default(),
            direction: if req.author == me.to_string() { "sent" } else { "received" },
            author: req.author.clone(),
            person: req.person_key.clone(),
            origin: req.origin.clone(),
            residence: req.residence.clone(),
            tiers: tier_names(&tiers),
            basis: body.basis().as_str_name().to_string(),
            reference: body.reference.clone(),
            recorded_at: recorded.to_rfc3339(),
            answer_by: due.to_rfc3339(),
            complete: answers.iter().all(|a| a.state == "confirmed"),
            answers,
        });
    }
    out.sort_by(|a, b| a.recorded_at.cmp(&b.recorded_at).then(a.id.cmp(&b.id)));
    out
}

/// A relationship's last arrival and last departure.
type Span = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// Persons whose tiers are past retention at `now`: for each, the tiers to
/// erase. A relationship ends with a departure not followed by an arrival;
/// a person with any relationship still open here keeps everything.
pub fn expired<B: Backend>(
    log: &Log<B>,
    retention: &Retention,
    now: DateTime<Utc>,
) -> yipan_log::Result<Vec<(PersonKey, Vec<Tier>)>> {
    let periods = retention.periods();
    if periods.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for person in log.persons()? {
        let events = log.read_person(person)?;
        // Per relationship: the last arrival and the last departure.
        let mut rels: BTreeMap<(String, String), Span> = BTreeMap::new();
        let mut tiers_held: BTreeSet<i32> = BTreeSet::new();
        for ev in &events {
            tiers_held.extend(ev.signed.tiers.iter().map(|t| t.tier));
            let at = ev
                .envelope
                .occurred_at
                .as_ref()
                .or(ev.envelope.recorded_at.as_ref())
                .and_then(yipan_core::time::from_ts);
            let slot = rels.entry((ev.envelope.origin.clone(), ev.envelope.residence.clone())).or_default();
            match ev.kind() {
                Some(EventKind::ArrivalRegistered) => slot.0 = slot.0.max(at),
                Some(EventKind::DepartureRegistered) => slot.1 = slot.1.max(at),
                _ => {}
            }
        }
        if tiers_held.is_empty() || rels.is_empty() {
            continue;
        }
        let mut ended: Option<DateTime<Utc>> = None;
        let mut open = false;
        for (arrived, departed) in rels.values() {
            match departed {
                Some(d) if arrived.is_none_or(|a| a <= *d) => ended = ended.max(Some(*d)),
                _ => open = true,
            }
        }
        let (false, Some(ended)) = (open, ended) else { continue };
        let due: Vec<Tier> = periods
            .iter()
            .filter(|(t, years)| {
                tiers_held.contains(&(*t as i32))
                    && ended.checked_add_months(chrono::Months::new(12 * years)).is_some_and(|end| end <= now)
            })
            .map(|(t, _)| *t)
            .collect();
        if !due.is_empty() {
            out.push((person, due));
        }
    }
    Ok(out)
}

/// Erases everything past retention at `now`; returns the persons erased.
pub fn purge<B: Backend>(
    log: &Log<B>,
    calendar: &WorkCalendar,
    cfg: &PrivacyConfig,
    now: DateTime<Utc>,
) -> yipan_log::Result<usize> {
    let due = expired(log, &cfg.retention, now)?;
    let mut n = 0;
    for (person, tiers) in due {
        let req = Request {
            person,
            tiers,
            basis: v1::ErasureBasis::RetentionExpired,
            reference: format!("retention {}", yipan_projections::calendar::date_of(now)),
        };
        match request(log, calendar, cfg.erasure_answer_working_days, &req, now) {
            Ok(_) => n += 1,
            Err(r) => tracing::warn!(field = r.field, problem = %r.message, "retention purge of one person failed"),
        }
    }
    if n > 0 {
        tracing::info!(persons = n, "retention purge erased expired tiers");
    }
    Ok(n)
}

/// Keeps the registry current, answers requests addressed to this node (also
/// those that arrived while it was stopped), and runs the retention purge
/// once a day, until `stop`.
pub async fn run<B: Backend + 'static>(
    log: Arc<Log<B>>,
    registry: Registry,
    calendar: WorkCalendar,
    cfg: PrivacyConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut feed = log.subscribe_events();
    // Everything held so far (requests that arrived while stopped included).
    let (l, r) = (log.clone(), registry.clone());
    let scanned = tokio::task::spawn_blocking(move || r.load(&l)).await;
    if !matches!(scanned, Ok(Ok(()))) {
        tracing::error!("cannot scan the log for erasure requests; retrying at the next restart");
    }
    // Only requests without a receipt of this node are looked at (respond checks again).
    let answer_all = |log: Arc<Log<B>>, registry: Registry| async move {
        let pending = registry.unanswered(log.locality());
        if pending.is_empty() {
            return;
        }
        let _ = tokio::task::spawn_blocking(move || {
            for env in pending {
                if let Err(e) = respond(&log, &env) {
                    tracing::error!(error = %e, "cannot answer an erasure request; retrying");
                }
            }
        })
        .await;
    };
    answer_all(log.clone(), registry.clone()).await;
    let mut next_purge = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut retry = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            e = feed.recv() => match e {
                Ok(env) => {
                    registry.add(env.clone());
                    if request_body(&env).is_some() {
                        let l = log.clone();
                        let _ = tokio::task::spawn_blocking(move || {
                            if let Err(e) = respond(&l, &env) {
                                tracing::error!(error = %e, "cannot answer an erasure request; retrying");
                            }
                        }).await;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    // Missed some: read everything again (idempotent).
                    let (l, r) = (log.clone(), registry.clone());
                    let _ = tokio::task::spawn_blocking(move || r.load(&l)).await;
                    answer_all(log.clone(), registry.clone()).await;
                }
                Err(_) => return,
            },
            _ = retry.tick() => answer_all(log.clone(), registry.clone()).await,
            _ = tokio::time::sleep_until(next_purge) => {
                next_purge = tokio::time::Instant::now() + std::time::Duration::from_secs(86_400);
                let (l, c, p) = (log.clone(), calendar.clone(), cfg.clone());
                let _ = tokio::task::spawn_blocking(move || purge(&l, &c, &p, Utc::now())).await;
            }
        }
    }
}

/// Re-applies every erasure recorded in the log: after a restore from a
/// backup taken before some of them (docs/privacy.md "Backups"). An own
/// request drops what was recorded up to it; a received one, the
/// requester's events before it. Idempotent.
pub fn reapply<B: Backend>(log: &Log<B>) -> yipan_log::Result<yipan_log::erase::Erased> {
    let me = log.locality();
    let mut requests = Vec::new();
    log.scan_envelopes(|batch| requests.extend(batch.into_iter().filter(|e| request_body(e).is_some())))?;
    let mut total = yipan_log::erase::Erased::default();
    for env in requests {
        let Some(body) = request_body(&env) else { continue };
        let (Ok(author), Ok(person), Ok(by)) =
            (Locality::parse(&env.author), PersonKey::parse(&env.person_key), Uuid::from_slice(&env.event_id))
        else {
            continue;
        };
        let tiers: Vec<Tier> = body.tiers.iter().filter_map(|t| Tier::try_from(*t).ok()).collect();
        let scope = if author == me {
            let until = env.recorded_at.as_ref().map(|t| t.seconds * 1_000_000 + i64::from(t.nanos) / 1000);
            Scope { person, tiers, author: None, before_seq: None, recorded_until_us: until, by }
        } else if env.recipients.iter().any(|r| r.locality == me.to_string()) {
            Scope { person, tiers, author: Some(author), before_seq: Some(env.author_seq), recorded_until_us: None, by }
        } else {
            continue;
        };
        let e = log.erase(&scope)?;
        total.events += e.events;
        total.payloads += e.payloads;
        total.keys_destroyed += e.keys_destroyed;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use yipan_log::{SledBackend, SledStore};

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 2, 0, 0).unwrap()
    }

    fn person(n: u64) -> PersonKey {
        PersonKey::derive(&format!("41152219900101{n:04}"), b"retention-test")
    }

    fn draft(n: u64, when: DateTime<Utc>, body: Body) -> EventDraft {
        EventDraft {
            event_id: Uuid::now_v7().as_bytes().to_vec(),
            occurred_at: Some(yipan_core::time::to_ts(when)),
            person_key: person(n).to_string(),
            origin: "411522".into(),
            residence: "610112".into(),
            body: Some(EventBody { kind: Some(body) }),
            ..Default::default()
        }
    }

    fn tiers(log: &SledStore, n: u64) -> BTreeSet<i32> {
        log.read_person(person(n)).unwrap().iter().flat_map(|e| e.signed.tiers.iter().map(|t| t.tier)).collect()
    }

    /// Two persons at 610112 registered in 2011; the first left in June 2012.
    /// Health is kept 5 years after the relationship ends, identity 10, contact forever.
    #[test]
    fn retention_erases_each_tier_when_its_period_after_the_departure_ends() {
        let dir = tempfile::tempdir().unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let log =
            SledStore::open(SledBackend::open(dir.path()).unwrap(), Locality::parse("610112").unwrap(), key).unwrap();
        for n in [1, 2] {
            let mut arrival = draft(n, at(2011, 3, 1), Body::ArrivalRegistered(v1::ArrivalRegistered::default()));
            arrival.identity = Some(v1::IdentityTier { name: "赵桂芳".into(), ..Default::default() });
            arrival.contact = Some(v1::ContactTier { phone: "13800000000".into(), ..Default::default() });
            let mut service = draft(
                n,
                at(2011, 9, 1),
                Body::ServiceRendered(v1::ServiceRendered {
                    service: v1::ServiceKind::PregnancyCheck as i32,
                    provider_ref: String::new(),
                }),
            );
            service.health = Some(v1::HealthTier { pregnant: true, ..Default::default() });
            log.append_batch(vec![arrival, service]).unwrap();
        }
        log.append(draft(1, at(2012, 6, 1), Body::DepartureRegistered(v1::DepartureRegistered::default()))).unwrap();
        let cfg = PrivacyConfig {
            retention: Retention { identity_years: 10, contact_years: 0, health_years: 5 },
            ..Default::default()
        };
        let calendar = WorkCalendar::default();
        let all: BTreeSet<i32> = [1, 2, 3].into();
        // 2015: nothing has expired.
        assert_eq!(purge(&log, &calendar, &cfg, at(2015, 1, 1)).unwrap(), 0);
        assert_eq!(tiers(&log, 1), all);
        // 2017-06-01 is the end of health's five years.
        assert_eq!(purge(&log, &calendar, &cfg, at(2017, 5, 31)).unwrap(), 0);
        assert_eq!(purge(&log, &calendar, &cfg, at(2017, 6, 2)).unwrap(), 1);
        assert_eq!(tiers(&log, 1), [1, 2].into());
        // Identity after ten years; contact is kept (no period); the resident keeps everything.
        assert_eq!(purge(&log, &calendar, &cfg, at(2022, 6, 2)).unwrap(), 1);
        assert_eq!(tiers(&log, 1), [2].into());
        assert_eq!(tiers(&log, 2), all);
        // Nothing more to do, and each purge is an erasure request on record with its basis.
        assert_eq!(purge(&log, &calendar, &cfg, at(2023, 1, 1)).unwrap(), 0);
        let requests: Vec<v1::ErasureRequested> =
            log.read_person(person(1)).unwrap().iter().filter_map(|e| request_body(&e.envelope).cloned()).collect();
        assert_eq!(requests.len(), 2);
        assert!(requests.iter().all(|r| r.basis() == v1::ErasureBasis::RetentionExpired));
        let report = log.verify().unwrap();
        assert!(report.ok(), "{:?}", report.faults);
    }

    /// A store restored from a backup taken before an erasure gets it back
    /// from the requests recorded since (here: the request survives, the
    /// payloads are put back as a restore would).
    /// The background task looks only at requests addressed here without a receipt of
    /// this node (not at every request ever held, every minute).
    #[test]
    fn only_requests_addressed_here_and_unanswered_are_pending() {
        let env = |id: u8, author: &str, to: &[&str], body: Body, causation: Option<u8>| {
            Arc::new(Envelope {
                event_id: vec![id; 16],
                author: author.into(),
                recipients: to.iter().map(|l| v1::Recipient { locality: (*l).into(), channel_seq: 1 }).collect(),
                causation_id: causation.map(|c| vec![c; 16]).unwrap_or_default(),
                body: Some(EventBody { kind: Some(body) }),
                ..Default::default()
            })
        };
        let request = || Body::ErasureRequested(v1::ErasureRequested::default());
        let receipt = || Body::ErasureConfirmed(v1::ErasureConfirmed::default());
        let r = Registry::default();
        r.add(env(1, "411522", &["610112"], request(), None)); // answered below
        r.add(env(2, "411522", &["610112"], request(), None)); // pending
        r.add(env(3, "411522", &["610113"], request(), None)); // not addressed here
        r.add(env(4, "610112", &["411522"], request(), None)); // our own request
        r.add(env(5, "610112", &["411522"], receipt(), Some(1)));
        r.add(env(6, "610113", &["411522"], receipt(), Some(2))); // someone else's receipt
        let pending: Vec<u8> = r.unanswered(Locality::parse("610112").unwrap()).iter().map(|e| e.event_id[0]).collect();
        assert_eq!(pending, [2]);
    }

    #[test]
    fn reapply_erases_again_what_a_restore_brought_back() {
        let dir = tempfile::tempdir().unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let log =
            SledStore::open(SledBackend::open(dir.path()).unwrap(), Locality::parse("610112").unwrap(), key).unwrap();
        let mut arrival = draft(1, at(2024, 3, 1), Body::ArrivalRegistered(v1::ArrivalRegistered::default()));
        arrival.identity = Some(v1::IdentityTier { name: "赵桂芳".into(), ..Default::default() });
        let bytes = log.append(arrival).map(|a| log.event_at(log.locality(), a.seq).unwrap().unwrap()).unwrap();
        let req = Request {
            person: person(1),
            tiers: vec![],
            basis: v1::ErasureBasis::PersonRequest,
            reference: "F-1".into(),
        };
        request(&log, &WorkCalendar::default(), 15, &req, Utc::now()).unwrap();
        assert!(tiers(&log, 1).is_empty());
        // The restore: the old segment with its payload is back.
        log.raw_edit_event(log.locality(), 1, |b| *b = Some(yipan_proto::Message::encode_to_vec(&bytes.signed)))
            .unwrap();
        assert_eq!(tiers(&log, 1), [1].into());
        let again = reapply(&log).unwrap();
        assert_eq!(again.payloads, 1);
        assert!(tiers(&log, 1).is_empty());
        // Later data about the person is not touched by re-applying.
        let mut later = draft(1, Utc::now(), Body::ResidencePermitIssued(v1::ResidencePermitIssued::default()));
        later.identity = Some(v1::IdentityTier { name: "赵桂芳".into(), ..Default::default() });
        log.append(later).unwrap();
        assert_eq!(reapply(&log).unwrap().payloads, 0);
        assert_eq!(tiers(&log, 1), [1].into());
    }
}
