//! Checks of a draft against what this node already holds, before it is
//! signed (only true data: `../shared/DOMAIN.md`; docs/design.md
//! "Validation"). Each refusal names the field and writes nothing.
//!
//! - A correction or retraction names an event this locality wrote; a
//!   correction keeps that event's kind.
//! - An answer names a request of the kind it answers, addressed to this
//!   locality (an answer whose request has not arrived yet is accepted: the
//!   request may still be replicating).
//! - A residence registers a person's arrival once while it is active (until
//!   its departure or retraction); a departure needs a relationship this
//!   node holds.
//!
//! A retried append of an event id already held is left to the sequencer
//! (duplicate or conflict), never refused here.

use uuid::Uuid;
use yipan_core::validate::Checked;
use yipan_core::{Error, EventKind, Locality};
use yipan_proto::v1::event_body::Kind as Body;
use yipan_proto::v1::EventDraft;

use crate::backend::Backend;
use crate::event::StoredEvent;
use crate::log::Log;

type Result<T> = std::result::Result<T, Error>;

/// The request kind an answer kind answers.
fn answers(kind: EventKind) -> Option<EventKind> {
    Some(match kind {
        EventKind::CaseAssistAnswered => EventKind::CaseAssistRequested,
        EventKind::NotificationReceived => EventKind::NotificationSent,
        EventKind::FirstChildRegistrationConfirmed => EventKind::FirstChildRegistrationRequested,
        EventKind::ComplaintResolved => EventKind::ComplaintFiled,
        _ => return None,
    })
}

/// The drafts before this one in the same batch, indexed, so that a batch
/// of n drafts is checked in O(n) lookups (an import of 10,000 drafts in one
/// batch compared every draft with every earlier one).
pub(crate) struct Earlier<'a> {
    drafts: &'a [crate::log::Prepared],
    index: &'a BatchIndex,
}

/// What [`Earlier`] looks up, kept up to date as drafts are prepared.
#[derive(Default)]
pub(crate) struct BatchIndex {
    /// Event id → the last draft carrying it.
    by_id: std::collections::HashMap<[u8; 16], usize>,
    /// (person key, origin, residence) → the drafts of that relationship, in order.
    by_relationship: std::collections::HashMap<(String, String, String), Vec<usize>>,
    /// Events retracted by drafts of the batch.
    retracted: std::collections::HashSet<Uuid>,
}

impl BatchIndex {
    /// Records `draft`, the batch's draft number `at`.
    pub(crate) fn add(&mut self, at: usize, draft: &EventDraft) {
        if let Ok(id) = <[u8; 16]>::try_from(draft.event_id.as_slice()) {
            self.by_id.insert(id, at);
        }
        self.by_relationship
            .entry((draft.person_key.clone(), draft.origin.clone(), draft.residence.clone()))
            .or_default()
            .push(at);
        if matches!(draft.body.as_ref().and_then(|b| b.kind.as_ref()), Some(Body::EventRetracted(_))) {
            self.retracted.extend(Uuid::from_slice(&draft.causation_id).ok());
        }
    }
}

impl<'a> Earlier<'a> {
    /// The drafts before the one being checked (`drafts`), indexed by `index`.
    pub(crate) fn new(drafts: &'a [crate::log::Prepared], index: &'a BatchIndex) -> Self {
        Earlier { drafts, index }
    }

    /// The last earlier draft with this event id.
    fn by_id(&self, id: &[u8]) -> Option<&'a EventDraft> {
        let id: [u8; 16] = id.try_into().ok()?;
        self.index.by_id.get(&id).map(|&i| &self.drafts[i].draft)
    }

    /// The earlier drafts of one relationship, in batch order.
    fn relationship(&self, person: &str, origin: &str, residence: &str) -> impl Iterator<Item = &'a EventDraft> + '_ {
        let key = (person.to_string(), origin.to_string(), residence.to_string());
        let drafts = self.drafts;
        self.index.by_relationship.get(&key).into_iter().flatten().map(move |&i| &drafts[i].draft)
    }
}

/// An event a draft may refer to: held in the log, or earlier in the same batch.
enum Known<'a> {
    Held(Box<StoredEvent>),
    Draft(&'a EventDraft),
}

impl Known<'_> {
    fn body(&self) -> Option<&Body> {
        match self {
            Known::Held(ev) => ev.envelope.body.as_ref().and_then(|b| b.kind.as_ref()),
            Known::Draft(d) => d.body.as_ref().and_then(|b| b.kind.as_ref()),
        }
    }

    fn kind(&self) -> Option<EventKind> {
        self.body().map(EventKind::of)
    }

    /// The kind it stands for: a correction stands for its replacement.
    fn effective_kind(&self) -> Option<EventKind> {
        match self.body() {
            Some(Body::EventCorrected(c)) => c.replacement.as_ref().and_then(|r| r.kind.as_ref()).map(EventKind::of),
            other => other.map(EventKind::of),
        }
    }

    fn author(&self, me: Locality) -> String {
        match self {
            Known::Held(ev) => ev.envelope.author.clone(),
            Known::Draft(_) => me.to_string(),
        }
    }

    fn addressed_to(&self, me: Locality) -> bool {
        match self {
            Known::Held(ev) => ev.envelope.recipients.iter().any(|r| r.locality == me.to_string()),
            Known::Draft(_) => false,
        }
    }
}

/// Checks `draft` (already validated as `checked`) against the log of `me`
/// and the drafts before it in the same batch (`earlier`).
/// The division-registry checks of a draft about to be written (see
/// [`yipan_core::division::check_draft`]): origin and residence only for a
/// relationship not held here yet (nor begun earlier in this batch).
pub(crate) fn divisions<B: Backend>(
    log: &Log<B>,
    draft: &EventDraft,
    checked: &Checked,
    earlier: &Earlier<'_>,
) -> Result<()> {
    let new_relationship = match checked.person {
        None => false,
        Some(person) => {
            let same = |o: &str, r: &str| o == draft.origin && r == draft.residence;
            let in_batch = earlier.relationship(&draft.person_key, &draft.origin, &draft.residence).next().is_some();
            let held = || -> Result<bool> {
                let storage =
                    |e: crate::Error| Error::field("event", format!("cannot be checked against the log: {e}"));
                Ok(log
                    .read_person(person)
                    .map_err(storage)?
                    .iter()
                    .any(|e| same(&e.envelope.origin, &e.envelope.residence)))
            };
            !in_batch && !held()?
        }
    };
    yipan_core::division::check_draft(log.locality(), draft, checked, new_relationship)
}

/// The workplace (经营地) of 户籍地、居住地、经营地三方互动 hears what concerns it,
/// when the residence leaves recipients to the node: a departure of the
/// person goes to the person's current workplace (the latest employer
/// registration's, corrections and retractions applied); a new employer
/// registration, or a correction or retraction of one, goes to the workplace
/// it takes the person away from. Such an event may then carry no personal
/// tier (the workplace is no party).
pub(crate) fn with_workplace<B: Backend>(
    log: &Log<B>,
    draft: &EventDraft,
    mut checked: Checked,
    earlier: &Earlier<'_>,
) -> Result<Checked> {
    let (Some(person), Some(residence)) = (checked.person, checked.residence) else { return Ok(checked) };
    let body = draft.body.as_ref().and_then(|b| b.kind.as_ref());
    let concerns = matches!(
        body,
        Some(
            Body::DepartureRegistered(_)
                | Body::EmployerRegistered(_)
                | Body::EventCorrected(_)
                | Body::EventRetracted(_)
        )
    );
    if !concerns || !draft.recipients.is_empty() || log.locality() != residence {
        return Ok(checked);
    }
    let storage = |e: crate::Error| Error::field("event", format!("cannot be checked against the log: {e}"));
    // A correction or retraction concerns a workplace only if it amends an employer
    // registration: say so from the one event it names before reading the person's history.
    if matches!(body, Some(Body::EventCorrected(_) | Body::EventRetracted(_))) {
        let Ok(target) = Uuid::from_slice(&draft.causation_id) else { return Ok(checked) };
        let amends_employer = log.get(target).map_err(storage)?.is_some_and(|e| {
            matches!(e.envelope.body.as_ref().and_then(|b| b.kind.as_ref()), Some(Body::EmployerRegistered(_)))
        });
        if !amends_employer {
            return Ok(checked);
        }
    }
    let same = |o: &str, r: &str| o == draft.origin && r == draft.residence;
    // The residence's employer registrations of this relationship, in log order, with
    // corrections and retractions applied: (event id, workplace).
    let mut current: Vec<(Option<Uuid>, String)> = Vec::new();
    for e in log.read_person(person).map_err(storage)? {
        let env = &e.envelope;
        if env.author != residence.to_string() || !same(&env.origin, &env.residence) {
            continue;
        }
        let id = Uuid::from_slice(&env.event_id).ok();
        let target = Uuid::from_slice(&env.causation_id).ok();
        match env.body.as_ref().and_then(|b| b.kind.as_ref()) {
            Some(Body::EmployerRegistered(b)) => current.push((id, b.workplace.clone())),
            Some(Body::EventRetracted(_)) => current.retain(|(i, _)| *i != target || target.is_none()),
            Some(Body::EventCorrected(c)) => {
                if let Some(slot) = current.iter_mut().find(|(i, _)| target.is_some() && *i == target) {
                    match c.replacement.as_ref().and_then(|r| r.kind.as_ref()) {
                        Some(Body::EmployerRegistered(b)) => slot.1 = b.workplace.clone(),
                        _ => slot.1.clear(),
                    }
                }
            }
            _ => {}
        }
    }
    for d in earlier.relationship(&draft.person_key, &draft.origin, &draft.residence) {
        if let Some(Body::EmployerRegistered(b)) = d.body.as_ref().and_then(|b| b.kind.as_ref()) {
            current.push((Uuid::from_slice(&d.event_id).ok(), b.workplace.clone()));
        }
    }
    let workplace_of_event = |id: Option<Uuid>| -> Option<String> {
        current.iter().find(|(i, _)| id.is_some() && *i == id).map(|(_, w)| w.clone())
    };
    let latest = current.last().map(|(_, w)| w.clone());
    let target = Uuid::from_slice(&draft.causation_id).ok();
    let to = match body {
        Some(Body::DepartureRegistered(_)) => latest,
        Some(Body::EmployerRegistered(b)) => latest.filter(|w| *w != b.workplace),
        Some(Body::EventCorrected(_) | Body::EventRetracted(_)) => workplace_of_event(target),
        _ => None,
    };
    let Some(w) = to.and_then(|w| Locality::parse(&w).ok()) else { return Ok(checked) };
    if checked.recipients.contains(&w) || Some(w) == checked.origin || w == residence {
        return Ok(checked);
    }
    if draft.identity.is_some() || draft.contact.is_some() || draft.health.is_some() {
        let tier = if draft.identity.is_some() {
            "identity"
        } else if draft.contact.is_some() {
            "contact"
        } else {
            "health"
        };
        return Err(Error::field(
            tier,
            format!(
                "this event goes to the person's workplace `{w}` too, which is no party to the relationship: \
                 it carries no personal tier (record the personal data in its own event)"
            ),
        ));
    }
    checked.recipients.push(w);
    Ok(checked)
}

pub(crate) fn check<B: Backend>(
    log: &Log<B>,
    me: Locality,
    draft: &EventDraft,
    checked: &Checked,
    earlier: &Earlier<'_>,
) -> Result<()> {
    let storage = |e: crate::Error| Error::field("event", format!("cannot be checked against the log: {e}"));
    if let Ok(id) = Uuid::from_slice(&draft.event_id) {
        let repeated = earlier.by_id(&draft.event_id).is_some();
        if repeated || log.get(id).map_err(storage)?.is_some() {
            return Ok(());
        }
    }
    let causation = Uuid::from_slice(&draft.causation_id).ok();
    let find = |id: Uuid| -> Result<Option<Known<'_>>> {
        if let Some(d) = earlier.by_id(id.as_bytes()) {
            return Ok(Some(Known::Draft(d)));
        }
        Ok(log.get(id).map_err(storage)?.map(|e| Known::Held(Box::new(e))))
    };
    let body = draft.body.as_ref().and_then(|b| b.kind.as_ref());
    match (checked.kind, body) {
        (EventKind::EventCorrected | EventKind::EventRetracted, Some(body)) => {
            let Some(id) = causation else { return Ok(()) };
            let what = if checked.kind == EventKind::EventCorrected { "correction" } else { "retraction" };
            let target = find(id)?.ok_or_else(|| {
                Error::field(
                    "causation",
                    format!("`{id}` is not held here: a {what} names an event this locality wrote"),
                )
            })?;
            let author = target.author(me);
            if author != me.to_string() {
                return Err(Error::field(
                    "causation",
                    format!("`{id}` is an event of {author}: only its author corrects or retracts it"),
                ));
            }
            if let Body::EventCorrected(c) = body {
                let new = c.replacement.as_ref().and_then(|r| r.kind.as_ref()).map(EventKind::of);
                if let (Some(new), Some(old)) = (new, target.effective_kind()) {
                    if new != old {
                        return Err(Error::field(
                            "body.replacement",
                            format!(
                                "a correction keeps the kind: this {old} cannot become a {new} \
                                 (retract it and record the {new})"
                            ),
                        ));
                    }
                }
            }
        }
        (kind, _) if answers(kind).is_some() => {
            let (Some(id), Some(expected)) = (causation, answers(kind)) else { return Ok(()) };
            // Not held yet: the request may still be on its way.
            let Some(request) = find(id)? else { return Ok(()) };
            if request.kind() != Some(expected) {
                let got = request.kind().map(|k| k.name()).unwrap_or("event");
                return Err(Error::field("causation", format!("`{id}` is a {got}; a {kind} answers a {expected}")));
            }
            if !request.addressed_to(me) && request.author(me) != me.to_string() {
                return Err(Error::field(
                    "causation",
                    format!("`{id}` was not addressed to {me}: a locality answers the requests it received"),
                ));
            }
        }
        (EventKind::ArrivalRegistered | EventKind::DepartureRegistered, _) => {
            let (Some(person), Some(origin), Some(residence)) = (checked.person, checked.origin, checked.residence)
            else {
                return Ok(());
            };
            let (origin, residence) = (origin.to_string(), residence.to_string());
            let held = log.read_person(person).map_err(storage)?;
            let person_text = person.to_string();
            // In order: what is held, then the earlier drafts of this batch.
            // (which event, kind, own): an earlier draft of this batch may have no id yet.
            let mut rel: Vec<(Option<Uuid>, Option<EventKind>, bool)> = Vec::new();
            let mut retracted: std::collections::HashSet<Uuid> = Default::default();
            for ev in &held {
                if ev.kind() == Some(EventKind::EventRetracted) {
                    retracted.extend(Uuid::from_slice(&ev.envelope.causation_id).ok());
                }
                if ev.envelope.origin == origin && ev.envelope.residence == residence {
                    rel.push((ev.id(), ev.kind(), ev.author() == Some(me)));
                }
            }
            retracted.extend(earlier.index.retracted.iter().copied());
            for d in earlier.relationship(&person_text, &origin, &residence) {
                let kind = d.body.as_ref().and_then(|b| b.kind.as_ref()).map(EventKind::of);
                rel.push((Uuid::from_slice(&d.event_id).ok(), kind, true));
            }
            rel.retain(|(id, _, _)| !id.is_some_and(|id| retracted.contains(&id)));
            if checked.kind == EventKind::DepartureRegistered {
                if rel.is_empty() {
                    return Err(Error::field(
                        "person",
                        format!(
                            "no relationship with this person (origin {origin}, residence {residence}) is held here: \
                             a departure follows the arrival or the other side's record"
                        ),
                    ));
                }
                return Ok(());
            }
            // Arrival: the last own arrival or departure of this relationship decides.
            let last = rel.iter().rev().find(|(_, k, own)| {
                *own && matches!(k, Some(EventKind::ArrivalRegistered | EventKind::DepartureRegistered))
            });
            if let Some((id, _, _)) = last.filter(|(_, k, _)| *k == Some(EventKind::ArrivalRegistered)) {
                let by = match id {
                    Some(id) => format!("by event {id}"),
                    None => "earlier in this batch".into(),
                };
                return Err(Error::field(
                    "person",
                    format!(
                        "already registered here {by} and not departed: record the departure first, \
                         or correct that arrival"
                    ),
                ));
            }
        }
        _ => {}
    }
    Ok(())
}
