//! Checks a draft event before the author's node sequences and signs it.
//!
//! Every rule names the field it is about. Personal values are never echoed.

use std::fmt;

use uuid::Uuid;
use yipan_proto::v1::{self, event_body::Kind as Body, EventDraft, Tier};

use crate::error::{Error, Result};
use crate::kind::{tier_name, EventKind, Role};
use crate::locality::Locality;
use crate::person::{check_id_number, IdCheck, PersonKey};

/// A draft that passed validation, with what validation worked out.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// The event's kind.
    pub kind: EventKind,
    /// The person, for person events.
    pub person: Option<PersonKey>,
    /// The origin of the relationship, for person events.
    pub origin: Option<Locality>,
    /// The residence of the relationship, for person events.
    pub residence: Option<Locality>,
    /// Recipients in the order given (or the other party by default).
    pub recipients: Vec<Locality>,
    /// Accepted oddities worth telling the operator about.
    pub warnings: Vec<Warning>,
}

/// Something accepted but worth a word to the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// The ID number's 18th character is not its check digit (accepted, as
    /// the national platform did).
    IdCheckDigit,
    /// The same for an ID number given only to find the person: a typo
    /// there silently makes a new person key.
    PersonIdCheckDigit,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::IdCheckDigit => f.write_str(
                "field `identity.idNumber`: check digit does not match (accepted; please re-check the document)",
            ),
            Warning::PersonIdCheckDigit => f.write_str(
                "field `person_id_number`: check digit does not match (accepted; a typo here finds no one and \
                 starts a new person: please re-check the document)",
            ),
        }
    }
}

/// Parses an optional 16-byte UUID field.
pub fn uuid_field(field: &str, bytes: &[u8]) -> Result<Option<Uuid>> {
    if bytes.is_empty() {
        return Ok(None);
    }
    Uuid::from_slice(bytes)
        .map(Some)
        .map_err(|_| Error::field(field, format!("is {} bytes; a UUID is 16", bytes.len())))
}

/// The earliest `occurred_at` accepted by default: older dates are typing
/// errors (1900, 0000-01-01), not late data entry.
pub const EARLIEST_OCCURRED: chrono::DateTime<chrono::Utc> =
    chrono::DateTime::from_timestamp_nanos(946_684_800_000_000_000);
/// How far after its recording an event may say it occurred, by default (clocks and time zones).
pub const MAX_FUTURE_SKEW: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// The plausible range of `occurred_at` relative to the recording instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OccurredBounds {
    /// The earliest date accepted.
    pub earliest: chrono::DateTime<chrono::Utc>,
    /// How far after its recording an event may say it occurred.
    pub max_future_skew: chrono::TimeDelta,
}

impl Default for OccurredBounds {
    /// 2000-01-01 and one day: what a node writes unless configured otherwise.
    fn default() -> Self {
        OccurredBounds { earliest: EARLIEST_OCCURRED, max_future_skew: MAX_FUTURE_SKEW }
    }
}

impl OccurredBounds {
    /// What every node accepts from others, whatever an author configured
    /// within it (1949-10-01, seven days): configuration that differs between
    /// nodes must never make a recipient refuse an honest author's events.
    pub const RECEIVED: OccurredBounds = OccurredBounds {
        earliest: chrono::DateTime::from_timestamp_nanos(-639_100_800_000_000_000),
        max_future_skew: chrono::TimeDelta::days(7),
    };

    /// Bounds a deployment configured: an earliest date (a late import of
    /// older records) and a skew in hours, refused outside [`Self::RECEIVED`].
    pub fn configured(
        earliest: Option<chrono::NaiveDate>,
        skew_hours: Option<u32>,
    ) -> std::result::Result<OccurredBounds, String> {
        let mut b = OccurredBounds::default();
        if let Some(d) = earliest {
            let t = d.and_hms_opt(0, 0, 0).map(|t| t.and_utc()).ok_or("earliest_occurred: not a date")?;
            if t < Self::RECEIVED.earliest {
                return Err(format!("earliest_occurred: {d} is before 1949-10-01, the earliest any node accepts"));
            }
            if t > chrono::Utc::now() {
                return Err(format!("earliest_occurred: {d} is in the future"));
            }
            b.earliest = t;
        }
        if let Some(h) = skew_hours {
            let skew = chrono::TimeDelta::hours(h.into());
            if skew > Self::RECEIVED.max_future_skew {
                return Err(format!(
                    "max_future_skew_hours: {h} is more than 168 (seven days), the most any node accepts"
                ));
            }
            b.max_future_skew = skew;
        }
        Ok(b)
    }
}

/// Checks that `occurred_at` lies between [`EARLIEST_OCCURRED`] and
/// `recorded_at` + [`MAX_FUTURE_SKEW`]: nothing is recorded before it
/// happens. Deterministic (the recording instant is signed), so author and
/// recipients agree.
pub fn check_occurred(
    occurred: Option<&yipan_proto::Timestamp>,
    recorded: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    check_occurred_within(occurred, recorded, &OccurredBounds::default())
}

/// [`check_occurred`] with other bounds.
pub fn check_occurred_within(
    occurred: Option<&yipan_proto::Timestamp>,
    recorded: chrono::DateTime<chrono::Utc>,
    bounds: &OccurredBounds,
) -> Result<()> {
    let Some(t) = occurred.and_then(crate::time::from_ts) else { return Ok(()) };
    let fmt = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    if t < bounds.earliest {
        return Err(Error::field(
            "occurred_at",
            format!("{} is before {}: not a plausible date for this work", fmt(t), fmt(bounds.earliest)),
        ));
    }
    if t > recorded + bounds.max_future_skew {
        return Err(Error::field(
            "occurred_at",
            format!("{} is in the future (recorded {}): an event is recorded after it happens", fmt(t), fmt(recorded)),
        ));
    }
    Ok(())
}

/// Validates `draft` as authored by `author`.
pub fn validate_draft(author: Locality, draft: &EventDraft) -> Result<Checked> {
    let body = draft
        .body
        .as_ref()
        .and_then(|b| b.kind.as_ref())
        .ok_or_else(|| Error::field("kind", "missing; every event needs a kind and a body"))?;
    let kind = EventKind::of(body);

    if let Some(id) = uuid_field("id", &draft.event_id)? {
        if id.get_version_num() != 7 {
            return Err(Error::field(
                "id",
                format!("`{id}` is a version {} UUID; event ids are UUIDv7", id.get_version_num()),
            ));
        }
    }
    if let Some(ts) = &draft.occurred_at {
        if !(0..1_000_000_000).contains(&ts.nanos) || crate::time::from_ts(ts).is_none() {
            return Err(Error::field("occurred_at", "is not a valid instant"));
        }
    }
    let causation = uuid_field("causation", &draft.causation_id)?;
    if kind.needs_causation() && causation.is_none() {
        return Err(Error::field(
            "causation",
            format!("missing; a {kind} event must name the event it answers or corrects"),
        ));
    }

    let mut warnings = Vec::new();
    let (person, origin, residence, default_recipients) = if kind.role() == Role::Locality {
        for (field, empty) in [
            ("person", draft.person_key.is_empty()),
            ("origin", draft.origin.is_empty()),
            ("residence", draft.residence.is_empty()),
        ] {
            if !empty {
                return Err(Error::field(
                    field,
                    format!("a {kind} event is about the locality, not a person; leave it out"),
                ));
            }
        }
        (None, None, None, Vec::new())
    } else {
        if draft.person_key.is_empty() {
            return Err(Error::field(
                "person",
                "missing; give the person key, or an identity.idNumber with a person-key secret configured",
            ));
        }
        let person = PersonKey::parse(&draft.person_key).map_err(|p| Error::field("person", p))?;
        let origin = Locality::parse_field("origin", &draft.origin)?;
        let residence = Locality::parse_field("residence", &draft.residence)?;
        if origin == residence {
            return Err(Error::field(
                "residence",
                format!("equals the origin `{origin}`; a migrant's residence is another locality"),
            ));
        }
        let role = match body {
            Body::EventCorrected(c) => match c.replacement.as_ref().and_then(|b| b.kind.as_ref()) {
                Some(r) => role_of(r),
                None => Role::Either,
            },
            other => role_of(other),
        };
        let allowed = match role {
            Role::Origin => author == origin,
            Role::Residence => author == residence,
            _ => author == origin || author == residence,
        };
        if !allowed {
            let who = match role {
                Role::Origin => format!("only the origin `{origin}`"),
                Role::Residence => format!("only the residence `{residence}`"),
                _ => format!("only the origin `{origin}` or the residence `{residence}`"),
            };
            return Err(Error::field("author", format!("`{author}` may not author this {kind} event: {who} may")));
        }
        let other = if author == origin { residence } else { origin };
        let mut to = vec![other];
        // The workplace (经营地) is the third party of an employer registration.
        if let Some(w) = workplace_of(body)? {
            if w == origin || w == residence {
                return Err(Error::field(
                    "body.workplace",
                    format!("`{w}` is a party already; name the workplace only when it is a third locality"),
                ));
            }
            if draft.contact.is_some() {
                return Err(Error::field(
                    "contact",
                    format!(
                        "an {kind} naming a workplace goes to `{w}` too, which is no party to the relationship: \
                         it carries no personal tier (record the contact channel in its own event)"
                    ),
                ));
            }
            to.push(w);
        }
        (Some(person), Some(origin), Some(residence), to)
    };

    let recipients = if draft.recipients.is_empty() {
        default_recipients
    } else {
        let mut out: Vec<Locality> = Vec::with_capacity(draft.recipients.len());
        for (i, code) in draft.recipients.iter().enumerate() {
            let field = format!("recipients[{i}]");
            let l = Locality::parse_field(&field, code)?;
            if l == author {
                return Err(Error::field(field, format!("`{l}` is the author itself")));
            }
            if out.contains(&l) {
                return Err(Error::field(field, format!("`{l}` is listed twice")));
            }
            out.push(l);
        }
        out
    };

    check_tiers(kind, draft)?;
    // Personal tiers, and the body's coarse cohort attributes, go only to the
    // parties of the relationship.
    let cohort = personal_body(body);
    if draft.identity.is_some() || draft.contact.is_some() || draft.health.is_some() || cohort.is_some() {
        if let (Some(o), Some(r)) = (origin, residence) {
            if let Some((i, l)) = recipients.iter().enumerate().find(|(_, l)| **l != o && **l != r) {
                let what = cohort.map(|f| format!("a person's {f}")).unwrap_or_else(|| "personal tiers".into());
                return Err(Error::field(
                    format!("recipients[{i}]"),
                    format!(
                        "`{l}` is no party to this relationship (origin {o}, residence {r}): an event carrying \
                         {what} goes only to the origin and the residence"
                    ),
                ));
            }
        }
    }
    if let Some(identity) = &draft.identity {
        if !identity.id_number.is_empty() {
            match check_id_number(&identity.id_number) {
                IdCheck::Valid => {}
                IdCheck::BadCheckDigit => warnings.push(Warning::IdCheckDigit),
                IdCheck::BadShape => {
                    return Err(Error::field(
                        "identity.idNumber",
                        "is not 17 digits followed by a digit or X (value not shown)",
                    ))
                }
            }
        }
    }
    check_body(body)?;
    if let Body::FirstChildRegistrationRequested(b) = body {
        let applied = b.applied_at.as_ref().and_then(crate::time::from_ts);
        let asked = draft.occurred_at.as_ref().and_then(crate::time::from_ts);
        if let (Some(applied), Some(asked)) = (applied, asked) {
            if applied > asked {
                return Err(Error::field(
                    "body.appliedAt",
                    "is after the request itself: the person applies first, then the residence asks",
                ));
            }
        }
    }

    Ok(Checked { kind, person, origin, residence, recipients, warnings })
}

fn role_of(body: &Body) -> Role {
    match body {
        Body::AgreementSigned(a) => match a.agreement() {
            v1::AgreementKind::Pledge => Role::Origin,
            v1::AgreementKind::ServiceAgreement => Role::Residence,
            v1::AgreementKind::Unspecified => Role::Either,
        },
        other => EventKind::of(other).role(),
    }
}

fn check_tiers(kind: EventKind, draft: &EventDraft) -> Result<()> {
    let present = [
        (Tier::Identity, "identity", draft.identity.is_some()),
        (Tier::Contact, "contact", draft.contact.is_some()),
        (Tier::ReproductiveHealth, "health", draft.health.is_some()),
    ];
    for (tier, field, is_present) in present {
        if is_present && !kind.tiers().contains(&tier) {
            let allowed: Vec<&str> = kind.tiers().iter().map(|t| tier_name(*t)).collect();
            let allowed = if allowed.is_empty() { "none".to_string() } else { allowed.join(", ") };
            return Err(Error::field(
                field,
                format!("a {kind} event may not carry {} data (allowed tiers: {allowed})", tier_name(tier)),
            ));
        }
    }
    Ok(())
}

fn required<T: PartialEq + Default>(value: T, field: &str, what: &str) -> Result<()> {
    if value == T::default() {
        return Err(Error::field(field, format!("missing; {what}")));
    }
    Ok(())
}

/// The body field holding a person's coarse cohort attributes or place of
/// residence (sex, year of birth, marital status, village), if any: personal
/// like a tier, though in the body (projections must read them).
fn personal_body(body: &Body) -> Option<&'static str> {
    match body {
        Body::ArrivalRegistered(b) => {
            if b.sex != 0 || b.birth_year != 0 || b.marital_status != 0 {
                Some("sex, year of birth or marital status")
            } else if !b.community.is_empty() {
                Some("village or community")
            } else {
                None
            }
        }
        Body::CertificateVerified(b) if b.marital_status != 0 => Some("marital status"),
        Body::EventCorrected(c) => c.replacement.as_ref().and_then(|r| r.kind.as_ref()).and_then(personal_body),
        _ => None,
    }
}

/// The workplace an employer registration (or a correction to one) names, if any.
pub fn workplace_of(body: &Body) -> Result<Option<Locality>> {
    let w = match body {
        Body::EmployerRegistered(b) if !b.workplace.is_empty() => &b.workplace,
        Body::EventCorrected(c) => match c.replacement.as_ref().and_then(|r| r.kind.as_ref()) {
            Some(Body::EmployerRegistered(b)) if !b.workplace.is_empty() => &b.workplace,
            _ => return Ok(None),
        },
        _ => return Ok(None),
    };
    let l = Locality::parse_field("body.workplace", w)?;
    if l.county() != l {
        return Err(Error::field("body.workplace", format!("`{l}` is a township code; give the county-level code")));
    }
    Ok(Some(l))
}

/// A township code (9 digits) in `field`.
pub(crate) fn township_field(field: &str, code: &str) -> Result<Locality> {
    let t = Locality::parse_field(field, code)?;
    if t.county() == t {
        return Err(Error::field(field, format!("`{t}` is a county code; a township code has 9 digits")));
    }
    Ok(t)
}

/// A village- or community-level statistical code (12 digits) in `field`:
/// its first nine digits are its township.
pub(crate) fn community_field(field: &str, code: &str) -> Result<Locality> {
    if code.len() != 12 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::field(
            field,
            format!("`{}` is not a 12-digit village or community code", crate::clip(code)),
        ));
    }
    if &code[9..] == "000" {
        return Err(Error::field(field, format!("`{code}` has village part `000`")));
    }
    township_field(field, &code[..9])
}

fn check_body(body: &Body) -> Result<()> {
    match body {
        Body::ArrivalRegistered(b) => {
            if !b.township.is_empty() {
                township_field("body.township", &b.township)?;
            }
            if !b.community.is_empty() {
                let t = community_field("body.community", &b.community)?;
                if !b.township.is_empty() && t.to_string() != b.township {
                    return Err(Error::field(
                        "body.community",
                        format!("`{}` does not lie in body.township `{}`", b.community, b.township),
                    ));
                }
            }
            if b.sex() == v1::Sex::Male && (b.birth_year != 0 || b.marital_status != 0) {
                return Err(Error::field(
                    if b.birth_year != 0 { "body.birthYear" } else { "body.maritalStatus" },
                    "is recorded for women only (it serves the women-of-childbearing-age denominators); \
                     leave it out for SEX_MALE",
                ));
            }
        }
        Body::DepartureRegistered(b) if !b.destination.is_empty() => {
            crate::division::check_county(
                "body.destination",
                Locality::parse_field("body.destination", &b.destination)?,
            )?;
        }
        Body::CertificateMismatchFound(b) => {
            required(b.reason, "body.reason", "say why the certificate does not match")?
        }
        Body::AgreementSigned(b) => {
            required(b.agreement, "body.agreement", "AGREEMENT_KIND_PLEDGE or AGREEMENT_KIND_SERVICE_AGREEMENT")?
        }
        Body::ServiceRendered(b) => {
            required(b.service, "body.service", "which service, e.g. SERVICE_KIND_PRE_PREGNANCY_CHECK")?
        }
        Body::BenefitGranted(b) => required(b.benefit, "body.benefit", "BENEFIT_KIND_LEAVE or BENEFIT_KIND_REWARD")?,
        Body::NotificationSent(b) => {
            required(b.topic, "body.topic", "what the notification is about, e.g. NOTIFICATION_TOPIC_REGISTRATION")?;
            for (i, id) in b.about_events.iter().enumerate() {
                uuid_field(&format!("body.aboutEvents[{i}]"), id)?;
            }
        }
        Body::CaseAssistRequested(b) => {
            required(b.urgency, "body.urgency", "URGENCY_NORMAL (30 days) or URGENCY_URGENT (15 days)")?
        }
        Body::CaseAssistAnswered(b) => {
            required(b.result, "body.result", "the verification result, e.g. VERIFICATION_RESULT_CONFIRMED")?
        }
        Body::EventCorrected(b) => match b.replacement.as_ref().and_then(|r| r.kind.as_ref()) {
            None => return Err(Error::field("body.replacement", "missing; a correction carries the corrected body")),
            Some(Body::EventCorrected(_) | Body::EventRetracted(_)) => {
                return Err(Error::field(
                    "body.replacement",
                    "a correction cannot replace a body with another correction or retraction",
                ))
            }
            Some(inner) => check_body(inner)?,
        },
        Body::StaffRosterUpdated(b) => {
            let mut seen = std::collections::BTreeSet::new();
            let mut sum = 0u64;
            for (i, u) in b.units.iter().enumerate() {
                let field = format!("body.units[{i}].community");
                community_field(&field, &u.community)?;
                if !seen.insert(u.community.as_str()) {
                    return Err(Error::field(field, format!("`{}` is listed twice", u.community)));
                }
                sum += u64::from(u.full_time) + u64::from(u.part_time);
            }
            if sum > u64::from(u32::MAX) {
                return Err(Error::field("body.units", format!("add up to {sum} workers, more than any roster holds")));
            }
            if !b.units.is_empty() && b.service_workers != 0 && u64::from(b.service_workers) != sum {
                return Err(Error::field(
                    "body.serviceWorkers",
                    format!("is {} but the units' workers add up to {sum}; give 0 or their sum", b.service_workers),
                ));
            }
        }
        Body::OutreachActivityHeld(b) => {
            required(b.activity, "body.activity", "what was held, e.g. OUTREACH_KIND_LECTURE")?;
            required(b.township.as_str(), "body.township", "the township (9 digits) where it was held")?;
            township_field("body.township", &b.township)?;
        }
        Body::DistributionPointReported(b) => {
            required(b.point_ref.as_str(), "body.pointRef", "the point's own id")?;
            required(b.mode, "body.mode", "how it hands out, e.g. DISTRIBUTION_MODE_SELF_SERVICE")?;
            required(b.township.as_str(), "body.township", "the township (9 digits) where it is")?;
            township_field("body.township", &b.township)?;
        }
        Body::SatisfactionSurveyed(b) => {
            required(b.survey_ref.as_str(), "body.surveyRef", "the survey round's reference")?;
            required(b.respondents, "body.respondents", "how many answered")?;
            if b.satisfied > b.respondents {
                return Err(Error::field(
                    "body.satisfied",
                    format!("is {} but only {} answered", b.satisfied, b.respondents),
                ));
            }
            if !b.township.is_empty() {
                township_field("body.township", &b.township)?;
            }
        }
        Body::DutyCatalogPublished(b) => {
            required(b.version.as_str(), "body.version", "the catalogue version")?;
            if !b.sha256.is_empty() {
                use sha2::Digest;
                if sha2::Sha256::digest(b.document.as_bytes()).as_slice() != b.sha256.as_slice() {
                    return Err(Error::field("body.sha256", "does not match the SHA-256 of body.document"));
                }
            }
        }
        _ => {}
    }
    Ok(())
}
