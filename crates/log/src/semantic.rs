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
    earlier: &[&EventDraft],
) -> Result<()> {
    let new_relationship = match checked.person {
        None => false,
        Some(person) => {
            let same = |o: &str, r: &str| o == draft.origin && r == draft.residence;
            let in_batch = earlier.iter().any(|d| d.person_key == draft.person_key && same(&d.origin, &d.residence));
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

/// A residence's departure of a person, with its recipients left to the
/// node, also goes to the workplace (经营地) the person's latest employer
/// registration named: the third party learns the person is gone.
pub(crate) fn with_workplace<B: Backend>(
    log: &Log<B>,
    draft: &EventDraft,
    mut checked: Checked,
    earlier: &[&EventDraft],
) -> Result<Checked> {
    let is_departure = matches!(draft.body.as_ref().and_then(|b| b.kind.as_ref()), Some(Body::DepartureRegistered(_)));
    let (Some(person), Some(residence)) = (checked.person, checked.residence) else { return Ok(checked) };
    if !is_departure || !draft.recipients.is_empty() || log.locality() != residence {
        return Ok(checked);
    }
    let same =
        |d: &EventDraft| d.person_key == draft.person_key && d.origin == draft.origin && d.residence == draft.residence;
    let workplace = |d: &EventDraft| match d.body.as_ref().and_then(|b| b.kind.as_ref()) {
        Some(Body::EmployerRegistered(e)) => Some(e.workplace.clone()),
        _ => None,
    };
    let latest = match earlier.iter().rev().filter(|d| same(d)).find_map(|d| workplace(d)) {
        Some(w) => Some(w),
        None => {
            let storage = |e: crate::Error| Error::field("event", format!("cannot be checked against the log: {e}"));
            let held = log.read_person(person).map_err(storage)?;
            held.iter()
                .rev()
                .filter(|e| {
                    e.envelope.author == residence.to_string()
                        && e.envelope.origin == draft.origin
                        && e.envelope.residence == draft.residence
                })
                .find_map(|e| match e.envelope.body.as_ref().and_then(|b| b.kind.as_ref()) {
                    Some(Body::EmployerRegistered(b)) => Some(b.workplace.clone()),
                    _ => None,
                })
        }
    };
    if let Some(w) = latest.and_then(|w| Locality::parse(&w).ok()) {
        if !checked.recipients.contains(&w) && Some(w) != checked.origin && w != residence {
            checked.recipients.push(w);
        }
    }
    Ok(checked)
}

pub(crate) fn check<B: Backend>(
    log: &Log<B>,
    me: Locality,
    draft: &EventDraft,
    checked: &Checked,
    earlier: &[&EventDraft],
) -> Result<()> {
    let storage = |e: crate::Error| Error::field("event", format!("cannot be checked against the log: {e}"));
    if let Ok(id) = Uuid::from_slice(&draft.event_id) {
        let repeated = earlier.iter().any(|d| d.event_id == draft.event_id);
        if repeated || log.get(id).map_err(storage)?.is_some() {
            return Ok(());
        }
    }
    let causation = Uuid::from_slice(&draft.causation_id).ok();
    let find = |id: Uuid| -> Result<Option<Known<'_>>> {
        if let Some(d) = earlier.iter().rev().find(|d| d.event_id == id.as_bytes()) {
            let d: &EventDraft = d;
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
            for d in earlier {
                let kind = d.body.as_ref().and_then(|b| b.kind.as_ref()).map(EventKind::of);
                if kind == Some(EventKind::EventRetracted) {
                    retracted.extend(Uuid::from_slice(&d.causation_id).ok());
                }
                if d.person_key == person_text && d.origin == origin && d.residence == residence {
                    rel.push((Uuid::from_slice(&d.event_id).ok(), kind, true));
                }
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
