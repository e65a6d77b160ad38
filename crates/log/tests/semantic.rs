//! Semantic checks at append: what a node holds decides what it may write
//! next (corrections, retractions, answers, arrivals, departures). Each
//! refusal names the field and writes nothing.

mod common;

use common::*;
use uuid::Uuid;
use yipan_log::Error;
use yipan_proto::v1::{self, event_body::Kind, EventBody, EventDraft};
use yipan_proto::Message;

fn body(k: Kind) -> Option<EventBody> {
    Some(EventBody { kind: Some(k) })
}

fn about(n: u64, kind: Kind) -> EventDraft {
    EventDraft { body: body(kind), identity: None, ..arrival(n) }
}

fn correction(target: Uuid, replacement: Kind) -> EventDraft {
    EventDraft {
        causation_id: target.as_bytes().to_vec(),
        ..about(
            1,
            Kind::EventCorrected(Box::new(v1::EventCorrected {
                replacement: body(replacement).map(Box::new),
                reason: "typo".into(),
            })),
        )
    }
}

fn notification() -> Kind {
    Kind::NotificationSent(v1::NotificationSent { topic: 1, about_events: vec![] })
}

fn refused(r: Result<Vec<yipan_log::Appended>, Error>, field: &str, says: &str) {
    match r {
        Err(Error::Invalid(e)) | Err(Error::InvalidInBatch { source: e, .. }) => {
            let text = e.to_string();
            assert!(text.contains(&format!("`{field}`")) && text.contains(says), "{text}");
        }
        other => panic!("expected a refusal of {field} ({says}), got {other:?}"),
    }
}

#[test]
fn corrections_and_retractions_name_own_events_and_keep_the_kind() {
    let store = mem("610112", 1);
    let sent = store.append(about(1, notification())).unwrap();
    let before = store.head().unwrap().0;
    // A notification cannot become a departure by correction.
    let departure = Kind::DepartureRegistered(v1::DepartureRegistered { destination: String::new() });
    refused(store.append_batch(vec![correction(sent.id, departure)]), "body.replacement", "keeps the kind");
    // Correcting or retracting an event that is not held.
    refused(store.append_batch(vec![correction(Uuid::now_v7(), notification())]), "causation", "not held here");
    // Another locality's event, received and held: only its author corrects it.
    let origin = mem("411522", 2);
    store.roster_add(loc("411522"), origin.public_key()).unwrap();
    let theirs = origin.append(certificate(1)).unwrap();
    let bytes = origin.get(theirs.id).unwrap().unwrap().signed.encode_to_vec();
    assert!(matches!(store.ingest(&bytes).unwrap(), yipan_log::Ingested::Stored { .. }));
    let retraction = EventDraft {
        causation_id: theirs.id.as_bytes().to_vec(),
        ..about(1, Kind::EventRetracted(v1::EventRetracted { reason: "x".into() }))
    };
    refused(store.append_batch(vec![retraction]), "causation", "only its author");
    assert_eq!(store.head().unwrap().0, before, "nothing written");
    // A correction that keeps the kind is fine.
    store.append(correction(sent.id, notification())).unwrap();
}

#[test]
fn an_answer_names_a_request_of_its_kind_addressed_here() {
    let store = mem("610112", 1);
    let arrived = store.append(arrival(1)).unwrap();
    let receipt = |cause: Uuid| EventDraft {
        causation_id: cause.as_bytes().to_vec(),
        ..about(1, Kind::NotificationReceived(v1::NotificationReceived {}))
    };
    refused(store.append_batch(vec![receipt(arrived.id)]), "causation", "answers a NotificationSent");
    // A request that has not arrived yet may still be on its way: accepted.
    store.append(receipt(Uuid::now_v7())).unwrap();
}

#[test]
fn one_active_arrival_per_relationship_and_no_phantom_departures() {
    let store = mem("610112", 1);
    refused(store.append_batch(vec![departure(7)]), "person", "no relationship with this person");
    let id = Uuid::now_v7();
    let first = store.append(with_id(arrival(1), id)).unwrap();
    // The same append again is idempotent, not a second arrival.
    assert!(store.append(with_id(arrival(1), id)).unwrap().duplicate);
    refused(store.append_batch(vec![arrival(1)]), "person", &format!("already registered here by event {}", first.id));
    // Within one batch too.
    refused(store.append_batch(vec![arrival(2), arrival(2)]), "person", "earlier in this batch");
    // After the departure the person may arrive again; a retracted arrival does not count.
    store.append(departure(1)).unwrap();
    let again = store.append(arrival(1)).unwrap();
    let retract = EventDraft {
        causation_id: again.id.as_bytes().to_vec(),
        ..about(1, Kind::EventRetracted(v1::EventRetracted { reason: "wrong person".into() }))
    };
    store.append(retract).unwrap();
    store.append(arrival(1)).unwrap();
    assert!(store.verify().unwrap().ok());
}

/// A node configured for a late import of older records writes them; a recipient with
/// the default setting still accepts them (it judges received events by the fixed, wider
/// range); nothing before 1949-10-01 or more than a week ahead is ever written.
#[test]
fn configured_date_bounds_apply_to_own_events_and_never_refuse_another_nodes() {
    use yipan_core::validate::OccurredBounds;
    let at = |y: i32| {
        let t = chrono::NaiveDate::from_ymd_opt(y, 5, 1).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc();
        Some(yipan_core::time::to_ts(t))
    };
    let (residence, origin) = (mem("610112", 1), mem("411522", 2));
    let mut old = arrival(1);
    old.occurred_at = at(1995);
    refused(residence.append_batch(vec![old.clone()]), "occurred_at", "is before 2000-01-01");
    let bounds = OccurredBounds::configured(chrono::NaiveDate::from_ymd_opt(1990, 1, 1), Some(48)).unwrap();
    residence.set_occurred_bounds(bounds);
    residence.append(old).unwrap();
    let mut older = arrival(2);
    older.occurred_at = at(1985);
    refused(residence.append_batch(vec![older]), "occurred_at", "is before 1990-01-01");
    // The origin keeps the default and receives the 1995 record.
    origin.roster_add(loc("610112"), residence.public_key()).unwrap();
    let bytes = residence.event_at(loc("610112"), 1).unwrap().unwrap().signed.encode_to_vec();
    let outcome = origin.ingest(&bytes).unwrap();
    assert!(matches!(outcome, yipan_log::Ingested::Stored { .. }), "{outcome:?}");
    // Settings outside what every node accepts are refused, naming the setting.
    let e = OccurredBounds::configured(chrono::NaiveDate::from_ymd_opt(1900, 1, 1), None).unwrap_err();
    assert!(e.starts_with("earliest_occurred: 1900-01-01 is before 1949-10-01"), "{e}");
    let e = OccurredBounds::configured(None, Some(24 * 30)).unwrap_err();
    assert!(e.starts_with("max_future_skew_hours: 720 is more than 168"), "{e}");
}

/// A first-child request cannot say the person applied after the request was made.
#[test]
fn a_first_child_application_comes_before_its_request() {
    let residence = mem("610112", 1);
    residence.append(arrival(1)).unwrap();
    let day = |d: u32| {
        let t = chrono::NaiveDate::from_ymd_opt(2026, 10, d).unwrap().and_hms_opt(2, 0, 0).unwrap().and_utc();
        Some(yipan_core::time::to_ts(t))
    };
    let request = |applied: u32| {
        let mut d = about(
            1,
            Kind::FirstChildRegistrationRequested(v1::FirstChildRegistrationRequested { applied_at: day(applied) }),
        );
        d.occurred_at = day(12);
        d
    };
    refused(residence.append_batch(vec![request(14)]), "body.appliedAt", "is after the request itself");
    residence.append(request(8)).unwrap();
}

/// The seed's place-level events and the new body fields: every refusal names
/// its field, nothing is written, and the accepted forms are written.
#[test]
fn place_level_events_and_coarse_attributes_are_checked_at_append() {
    let residence = mem("610112", 1);
    let place = |kind: Kind| EventDraft { body: body(kind), ..Default::default() };
    let arrival_with = |f: &dyn Fn(&mut v1::ArrivalRegistered)| {
        let mut b = v1::ArrivalRegistered { channel: 2, ..Default::default() };
        f(&mut b);
        EventDraft { body: body(Kind::ArrivalRegistered(b)), ..arrival(1) }
    };
    let outreach = |township: &str, activity: i32| {
        place(Kind::OutreachActivityHeld(v1::OutreachActivityHeld {
            activity,
            township: township.into(),
            ..Default::default()
        }))
    };
    let point = |r: &str, township: &str, mode: i32| {
        place(Kind::DistributionPointReported(v1::DistributionPointReported {
            point_ref: r.into(),
            mode,
            township: township.into(),
            active: true,
            ..Default::default()
        }))
    };
    let survey = |respondents, satisfied| {
        place(Kind::SatisfactionSurveyed(v1::SatisfactionSurveyed {
            survey_ref: "S1".into(),
            respondents,
            satisfied,
            ..Default::default()
        }))
    };
    let roster = |workers, units: &[(&str, u32, u32)]| {
        place(Kind::StaffRosterUpdated(v1::StaffRosterUpdated {
            service_workers: workers,
            units: units
                .iter()
                .map(|(c, f, p)| v1::StaffUnit { community: (*c).into(), full_time: *f, part_time: *p })
                .collect(),
        }))
    };
    let employer = |workplace: &str| EventDraft {
        body: body(Kind::EmployerRegistered(v1::EmployerRegistered {
            employer_ref: "E1".into(),
            workplace: workplace.into(),
        })),
        identity: None,
        ..arrival(1)
    };
    let cases: Vec<(EventDraft, &str, &str)> = vec![
        (outreach("610113004", 1), "body.township", "is a township of `610113` (雁塔区), not of `610112` (未央区)"),
        (outreach("610112", 1), "body.township", "is a county code"),
        (outreach("610112004", 0), "body.activity", "missing"),
        (outreach("", 1), "body.township", "missing"),
        (point("", "610112004", 2), "body.pointRef", "missing"),
        (point("P1", "610112004", 0), "body.mode", "missing"),
        (point("P1", "610112999", 2), "body.township", "no township-level division"),
        (survey(0, 0), "body.respondents", "missing"),
        (survey(10, 11), "body.satisfied", "is 11 but only 10 answered"),
        (roster(0, &[("61011200400", 1, 0)]), "body.units[0].community", "not a 12-digit"),
        (roster(0, &[("610112004001", 1, 0), ("610112004001", 0, 1)]), "body.units[1].community", "listed twice"),
        (roster(0, &[("610113004001", 1, 0)]), "body.units[0].community", "is a township of `610113`"),
        (roster(5, &[("610112004001", 1, 1)]), "body.serviceWorkers", "is 5 but the units' workers add up to 2"),
        (
            roster(0, &[("610112004001", u32::MAX, 0), ("610112004002", 1, 0)]),
            "body.units",
            "more than any roster holds",
        ),
        (
            arrival_with(&|b| {
                b.sex = v1::Sex::Male as i32;
                b.birth_year = 1990;
            }),
            "body.birthYear",
            "for women only",
        ),
        (
            arrival_with(&|b| {
                b.sex = v1::Sex::Male as i32;
                b.marital_status = v1::MaritalStatus::Married as i32;
            }),
            "body.maritalStatus",
            "for women only",
        ),
        (arrival_with(&|b| b.birth_year = 1800), "body.birthYear", "is not the year of birth"),
        (
            EventDraft {
                recipients: vec!["411522".into(), "610113".into()],
                identity: None,
                ..arrival_with(&|b| b.sex = v1::Sex::Female as i32)
            },
            "recipients[1]",
            "a person's sex, year of birth or marital status goes only to the origin and the residence",
        ),
        (
            EventDraft {
                recipients: vec!["610113".into()],
                identity: None,
                ..arrival_with(&|b| b.community = "610112004001".into())
            },
            "recipients[0]",
            "a person's village or community",
        ),
        (
            arrival_with(&|b| {
                b.township = "610112004".into();
                b.community = "610112005001".into();
            }),
            "body.community",
            "does not lie in body.township",
        ),
        (arrival_with(&|b| b.community = "610113004001".into()), "body.community", "is a township of `610113`"),
        (employer("610112"), "body.workplace", "is a party already"),
        (employer("610112004"), "body.workplace", "is a township code"),
        (employer("610199"), "body.workplace", "no county-level division"),
        (
            EventDraft { contact: Some(v1::ContactTier::default()), ..employer("610113") },
            "contact",
            "carries no personal tier",
        ),
    ];
    let before = residence.head().unwrap();
    for (draft, field, says) in cases {
        refused(residence.append_batch(vec![draft]), field, says);
    }
    assert_eq!(residence.head().unwrap(), before, "nothing written");

    // The accepted forms.
    residence
        .append(arrival_with(&|b| {
            b.township = "610112004".into();
            b.community = "610112004001".into();
            b.sex = v1::Sex::Female as i32;
            b.birth_year = 1990;
            b.marital_status = v1::MaritalStatus::Married as i32;
        }))
        .unwrap();
    residence.append(outreach("610112004", v1::OutreachKind::Lecture as i32)).unwrap();
    residence.append(point("P1", "610112004", v1::DistributionMode::SelfService as i32)).unwrap();
    residence.append(survey(10, 9)).unwrap();
    residence.append(roster(0, &[("610112004001", 1, 1)])).unwrap();
    // An employer registration naming a third county as the workplace goes to it as well.
    let appended = residence.append(employer("610113")).unwrap();
    let recipients: Vec<String> = appended.recipients.iter().map(|(l, _)| l.to_string()).collect();
    assert_eq!(recipients, ["411522", "610113"]);
    // The workplace, no party to the relationship, stores it (it carries no tier).
    let workplace = mem("610113", 3);
    workplace.roster_add(loc("610112"), residence.public_key()).unwrap();
    let bytes = residence.get(appended.id).unwrap().unwrap().signed.encode_to_vec();
    let outcome = workplace.ingest(&bytes).unwrap();
    assert!(matches!(outcome, yipan_log::Ingested::Stored { .. }), "{outcome:?}");
    let to = |a: &yipan_log::Appended| a.recipients.iter().map(|(l, _)| l.to_string()).collect::<Vec<_>>();
    // A new job in 610114: the new workplace and the one left both hear of it.
    let moved = residence.append(employer("610114")).unwrap();
    assert_eq!(to(&moved), ["411522", "610114", "610113"]);
    // A correction naming a party as the workplace is refused like the registration itself.
    let fix = |workplace: &str| EventDraft {
        causation_id: moved.id.as_bytes().to_vec(),
        ..about(
            1,
            Kind::EventCorrected(Box::new(v1::EventCorrected {
                replacement: body(Kind::EmployerRegistered(v1::EmployerRegistered {
                    employer_ref: "E2".into(),
                    workplace: workplace.into(),
                }))
                .map(Box::new),
                reason: "wrong county".into(),
            })),
        )
    };
    refused(residence.append_batch(vec![fix("411522")]), "body.workplace", "is a party already");
    // Corrected to 610115: the correction reaches the workplace it names and the one it replaces.
    let corrected = residence.append(fix("610115")).unwrap();
    assert_eq!(to(&corrected), ["411522", "610115", "610114"]);
    // Retracted: the workplace hears it; the person's departure then goes to no workplace.
    let retract = EventDraft {
        causation_id: moved.id.as_bytes().to_vec(),
        ..about(1, Kind::EventRetracted(v1::EventRetracted { reason: "entered in error".into() }))
    };
    assert_eq!(to(&residence.append(retract).unwrap()), ["411522", "610115"]);
    // The person's departure goes to the workplace still current (610113's registration is
    // the latest standing one), so it learns the person left.
    let gone = residence.append(departure(1)).unwrap();
    assert_eq!(to(&gone), ["411522", "610113"]);
}
