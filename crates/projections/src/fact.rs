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
    /// Service workers on the roster (with units: their sum when not given)
    /// and the units: (community code, full-time, part-time). Boxed: rare,
    /// and a detail stays 24 bytes (one per event held).
    Staff(Box<Roster>),
    /// An arrival: where (township, community; 0 unknown) and the coarse
    /// attributes of the indicators' denominators.
    Arrival(Place, Cohort),
    /// A certificate check: the marital status it states, if given.
    Verified(Option<bool>),
    /// An employer registration naming a third-party workplace.
    Workplace(Locality),
    /// An outreach activity: township, attendance, materials.
    Outreach(u32, u32, u32),
    /// A distribution point's report: point, township, active, units handed out.
    Distribution(Box<(Box<str>, u32, bool, u32)>),
    /// A satisfaction survey round: respondents, satisfied.
    Survey(u32, u32),
    /// A published catalogue document.
    Catalogue(Box<str>),
    /// A correction: the replacement's kind and detail.
    Correction(EventKind, Box<Detail>),
}

/// A staff roster: workers in all, and per village or community (code,
/// full-time, part-time).
pub type Roster = (u32, Box<[(u64, u32, u32)]>);

/// Where an arrival lives, coarse: township (9 digits) and the village or
/// community's own three digits (its 12-digit code is the township's and
/// these), 0 when not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Place {
    /// Township code.
    pub township: u32,
    /// Village or community part (1–999).
    pub village: u16,
}

impl Place {
    /// The 12-digit village or community code, 0 when not given.
    pub fn community(&self) -> u64 {
        if self.village == 0 {
            0
        } else {
            u64::from(self.township) * 1000 + u64::from(self.village)
        }
    }
}

/// The coarse attributes of an arrival (DOMAIN.md "Indicators" denominators).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Cohort {
    /// `Some(true)` female, `Some(false)` male, `None` unknown.
    pub female: Option<bool>,
    /// Year of birth (women), 0 unknown.
    pub birth_year: u16,
    /// Married now, if known.
    pub married: Option<bool>,
}

impl Cohort {
    /// Whether the person may be a woman aged 15–49 in `year` (unknown
    /// attributes count in, so data without them counts as before).
    pub fn woman_15_49(&self, year: i32) -> bool {
        self.female != Some(false) && (self.birth_year == 0 || (15..=49).contains(&(year - i32::from(self.birth_year))))
    }

    /// Whether the person may be a married woman aged 15–49 in `year`, with
    /// `married` the latest known marital status.
    pub fn married_woman_15_49(&self, year: i32, married: Option<bool>) -> bool {
        self.woman_15_49(year) && married != Some(false)
    }
}

fn married(m: v1::MaritalStatus) -> Option<bool> {
    match m {
        v1::MaritalStatus::Married => Some(true),
        v1::MaritalStatus::NotMarried => Some(false),
        v1::MaritalStatus::Unspecified => None,
    }
}

fn code<T: std::str::FromStr + Default>(s: &str) -> T {
    s.parse().unwrap_or_default()
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
        Body::StaffRosterUpdated(b) => {
            let units: Box<[(u64, u32, u32)]> =
                b.units.iter().map(|u| (code(&u.community), u.full_time, u.part_time)).collect();
            let sum = units.iter().map(|u| u.1.saturating_add(u.2)).fold(0u32, u32::saturating_add);
            Detail::Staff(Box::new((if b.service_workers == 0 { sum } else { b.service_workers }, units)))
        }
        Body::ArrivalRegistered(b) => {
            let community: u64 = code(&b.community);
            let township = if b.township.is_empty() { (community / 1000) as u32 } else { code(&b.township) };
            let female = match b.sex() {
                v1::Sex::Female => Some(true),
                v1::Sex::Male => Some(false),
                v1::Sex::Unspecified => None,
            };
            let birth_year = u16::try_from(b.birth_year).unwrap_or(0);
            Detail::Arrival(
                Place { township, village: (community % 1000) as u16 },
                Cohort { female, birth_year, married: married(b.marital_status()) },
            )
        }
        Body::CertificateVerified(b) => match married(b.marital_status()) {
            None => Detail::None,
            m => Detail::Verified(m),
        },
        Body::EmployerRegistered(b) => match Locality::parse(&b.workplace) {
            Ok(w) => Detail::Workplace(w),
            Err(_) => Detail::None,
        },
        Body::OutreachActivityHeld(b) => Detail::Outreach(code(&b.township), b.attendance, b.materials),
        Body::DistributionPointReported(b) => Detail::Distribution(Box::new((
            b.point_ref.as_str().into(),
            code(&b.township),
            b.active,
            b.units_distributed,
        ))),
        Body::SatisfactionSurveyed(b) => Detail::Survey(b.respondents, b.satisfied),
        Body::DutyCatalogPublished(b) => Detail::Catalogue(b.document.as_str().into()),
        Body::EventCorrected(b) => match b.replacement.as_ref().and_then(|r| r.kind.as_ref()) {
            Some(r) => Detail::Correction(EventKind::of(r), Box::new(detail_of(r))),
            None => Detail::None,
        },
        _ => Detail::None,
    }
}

/// A fact as decoded from an envelope, with the relationship it is filed
/// under (kept beside the fact, not in it: the projections index facts by
/// relationship, so a stored fact need not repeat it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The fact.
    pub fact: Fact,
    /// The relationship, for person events.
    pub rel: Option<Rel>,
}

impl Fact {
    /// The fact of an envelope; `None` if it lacks what every stored event has.
    pub fn from_envelope(env: &Envelope) -> Option<Decoded> {
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
        let fact = Fact {
            id: Uuid::from_slice(&env.event_id).ok()?,
            author: Locality::parse(&env.author).ok()?,
            seq: env.author_seq,
            kind: EventKind::of(body),
            occurred: env.occurred_at.as_ref().and_then(yipan_core::time::from_ts)?,
            recorded: env.recorded_at.as_ref().and_then(yipan_core::time::from_ts)?,
            causation: Uuid::from_slice(&env.causation_id).ok(),
            detail: detail_of(body),
        };
        Some(Decoded { fact, rel })
    }
}

#[cfg(test)]
mod tests {
    /// Projections hold one fact per event: their size is the memory per
    /// tracked person (docs/benchmarks.md, `yipan bench projections`).
    #[test]
    fn a_fact_stays_small() {
        assert_eq!(std::mem::size_of::<super::Detail>(), 24);
        assert!(std::mem::size_of::<super::Fact>() <= 104, "{}", std::mem::size_of::<super::Fact>());
    }
}
