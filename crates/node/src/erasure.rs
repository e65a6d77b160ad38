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
        .erase(&Scope { person: req.person, tiers: tiers.clone(), author: None, before_seq: None, by: sent[0].id })
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
    for person in log.persons() {
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
    let scanned = tokio::task::spawn_blocking(move || {
        l.scan_envelopes(|envs| {
            for e in envs {
                r.add(Arc::new(e));
            }
        })
    })
    .await;
    if !matches!(scanned, Ok(Ok(()))) {
        tracing::error!("cannot scan the log for erasure requests; retrying at the next restart");
    }
    let answer_all = |log: Arc<Log<B>>, registry: Registry| async move {
        let pending: Vec<Arc<Envelope>> = registry.all();
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
                    let _ = tokio::task::spawn_blocking(move || l.scan_envelopes(|envs| for e in envs { r.add(Arc::new(e)) })).await;
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
