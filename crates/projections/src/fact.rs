//! Facts: what the projections keep of an event — the envelope's routing and
//! times plus the few body fields the duty and exchange rules read. Never a
//! personal value: tiers are not read at all.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;
use yipan_core::{EventKind, Locality, PersonKey};
use yipan_proto::v1::{self, event_body::Kind as Body, Envelope};

/// An origin/residence relationship about one person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Rel {
    /// The person.
    #[serde(serialize_with = "ser_display")]
    pub person: PersonKey,
    /// Hukou locality.
    pub origin: Locality,
    /// Residence locality.
    pub residence: Locality,
}

fn ser_display<S: serde::Serializer, T: std::fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// Body fields the rules read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Detail {
    /// Nothing beyond the kind.
    None,
    /// Which agreement.
    Agreement(#[serde(serialize_with = "ser_enum")] v1::AgreementKind),
    /// Which service.
    Service(#[serde(serialize_with = "ser_enum")] v1::ServiceKind),
    /// Notification topic.
    Notification(#[serde(serialize_with = "ser_enum")] v1::NotificationTopic),
    /// Case-assist urgency.
    CaseAssist(#[serde(serialize_with = "ser_enum")] v1::Urgency),
    /// Case-assist answer.
    Answer(#[serde(serialize_with = "ser_enum")] v1::VerificationResult),
    /// First-child confirmation.
    Approved(bool),
    /// First-child request: when the person applied at the residence.
    Applied(Option<DateTime<Utc>>),
    /// Service workers on the roster.
    Staff(u32),
    /// A published catalogue document.
    Catalogue(String),
    /// A correction: the replacement's kind and detail.
    Correction(EventKind, Box<Detail>),
}

fn ser_enum<S: serde::Serializer, T: AsStrName>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.name())
}

/// Proto enums by name.
trait AsStrName {
    fn name(&self) -> &'static str;
}

macro_rules! as_str_name {
    ($($t:ty),*) => {$(impl AsStrName for $t { fn name(&self) -> &'static str { self.as_str_name() } })*};
}
as_str_name!(v1::AgreementKind, v1::ServiceKind, v1::NotificationTopic, v1::Urgency, v1::VerificationResult);

/// One event as the projections see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fact {
    /// Event id.
    pub id: Uuid,
    /// Author.
    pub author: Locality,
    /// Author sequence.
    pub seq: u64,
    /// Kind (of the event itself; a correction's replacement is in `detail`).
    pub kind: EventKind,
    /// When it happened.
    pub occurred: DateTime<Utc>,
    /// When the author recorded it (what was known as of a time).
    pub recorded: DateTime<Utc>,
    /// The relationship, for person events.
    pub rel: Option<Rel>,
    /// Recipients.
    pub recipients: Vec<Locality>,
    /// The event answered or corrected.
    pub causation: Option<Uuid>,
    /// Body fields the rules read.
    pub detail: Detail,
}

fn detail_of(body: &Body) -> Detail {
    match body {
        Body::AgreementSigned(b) => Detail::Agreement(b.agreement()),
        Body::ServiceRendered(b) => Detail::Service(b.service()),
        Body::NotificationSent(b) => Detail::Notification(b.topic()),
        Body::CaseAssistRequested(b) => Detail::CaseAssist(b.urgency()),
        Body::CaseAssistAnswered(b) => Detail::Answer(b.result()),
        Body::FirstChildRegistrationConfirmed(b) => Detail::Approved(b.approved),
        Body::FirstChildRegistrationRequested(b) => {
            Detail::Applied(b.applied_at.as_ref().and_then(yipan_core::time::from_ts))
        }
        Body::StaffRosterUpdated(b) => Detail::Staff(b.service_workers),
        Body::DutyCatalogPublished(b) => Detail::Catalogue(b.document.clone()),
        Body::EventCorrected(b) => match b.replacement.as_ref().and_then(|r| r.kind.as_ref()) {
            Some(r) => Detail::Correction(EventKind::of(r), Box::new(detail_of(r))),
            None => Detail::None,
        },
        _ => Detail::None,
    }
}

impl Fact {
    /// The fact of an envelope; `None` if it lacks what every stored event has.
    pub fn from_envelope(env: &Envelope) -> Option<Fact> {
        let body = env.body.as_ref()?.kind.as_ref()?;
        // Erasure requests and receipts administer privacy, not duties: they are
        // not facts, so erasing changes no card, exchange, scorecard or digest.
        if matches!(body, Body::ErasureRequested(_) | Body::ErasureConfirmed(_)) {
            return None;
        }
        let rel = if env.person_key.is_empty() {
            None
        } else {
            Some(Rel {
                person: PersonKey::parse(&env.person_key).ok()?,
                origin: Locality::parse(&env.origin).ok()?,
                residence: Locality::parse(&env.residence).ok()?,
            })
        };
        Some(Fact {
            id: Uuid::from_slice(&env.event_id).ok()?,
            author: Locality::parse(&env.author).ok()?,
            seq: env.author_seq,
            kind: EventKind::of(body),
            occurred: env.occurred_at.as_ref().and_then(yipan_core::time::from_ts)?,
            recorded: env.recorded_at.as_ref().and_then(yipan_core::time::from_ts)?,
            rel,
            recipients: env.recipients.iter().filter_map(|r| Locality::parse(&r.locality).ok()).collect(),
            causation: Uuid::from_slice(&env.causation_id).ok(),
            detail: detail_of(body),
        })
    }
}
