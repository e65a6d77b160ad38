//! Data-quality flags: accepted events a reader must not take at face value,
//! the same on both sides, as of any instant.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;
use yipan_core::{Locality, PersonKey};
use yipan_projections::{Projections, WorkCalendar};
use yipan_proto::v1::{self, event_body::Kind, Envelope, EventBody, Recipient};

const RES: &str = "610112";
const ORI: &str = "411522";

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&format!("{s}T10:00:00+08:00")).unwrap().with_timezone(&Utc)
}

fn id(n: u16) -> Uuid {
    Uuid::from_u128(0x0199_0000_0000_7000_8000_0000_0000_0000 | u128::from(n))
}

/// An event of person 1 by `author`, occurred `day`, recorded an hour later
/// (or at the same instant when `defaulted`: the node filled in the time).
fn ev(n: u16, author: &str, seq: u64, day: &str, defaulted: bool, kind: Kind, causation: Option<u16>) -> Envelope {
    let occurred = t(day);
    let recorded = if defaulted { occurred } else { occurred + Duration::hours(1) };
    Envelope {
        schema_version: 1,
        event_id: id(n).as_bytes().to_vec(),
        author: author.into(),
        author_seq: seq,
        occurred_at: Some(yipan_core::time::to_ts(occurred)),
        recorded_at: Some(yipan_core::time::to_ts(recorded)),
        person_key: PersonKey::derive("p1", b"s").to_string(),
        origin: ORI.into(),
        residence: RES.into(),
        recipients: vec![Recipient { locality: if author == RES { ORI } else { RES }.into(), channel_seq: seq }],
        causation_id: causation.map(|c| id(c).as_bytes().to_vec()).unwrap_or_default(),
        body: Some(EventBody { kind: Some(kind) }),
        ..Default::default()
    }
}

#[test]
fn accepted_but_doubtful_events_are_flagged_with_stable_codes() {
    let events = [
        ev(1, RES, 1, "2026-10-08", false, Kind::ArrivalRegistered(v1::ArrivalRegistered::default()), None),
        // A certificate check dated before the arrival it belongs to.
        ev(2, RES, 2, "2026-10-01", false, Kind::CertificateVerified(v1::CertificateVerified::default()), None),
        // A service whose time was not given (the node used the recording time).
        ev(
            3,
            RES,
            3,
            "2026-10-12",
            true,
            Kind::ServiceRendered(v1::ServiceRendered { service: 8, ..Default::default() }),
            None,
        ),
        // The origin answers a case-assist request that never reached it.
        ev(4, ORI, 1, "2026-10-13", false, Kind::CaseAssistAnswered(v1::CaseAssistAnswered::default()), Some(99)),
        // A receipt of a real notification: fine.
        ev(
            5,
            ORI,
            2,
            "2026-10-14",
            false,
            Kind::NotificationSent(v1::NotificationSent { topic: 1, about_events: vec![] }),
            None,
        ),
        ev(6, RES, 4, "2026-10-15", false, Kind::NotificationReceived(v1::NotificationReceived {}), Some(5)),
    ];
    let mut p = Projections::new(WorkCalendar::default());
    for e in &events {
        p.apply(e);
    }
    let flags = p.quality(Some(Locality::parse(RES).unwrap()), t("2026-11-30"));
    let got: Vec<(Uuid, &str)> = flags.iter().map(|f| (f.event, f.code)).collect();
    assert_eq!(got.len(), 3, "{flags:#?}");
    assert!(got.contains(&(id(2), "time.before_arrival")), "{got:?}");
    assert!(got.contains(&(id(3), "time.defaulted")), "{got:?}");
    assert!(got.contains(&(id(4), "answer.orphan")), "{got:?}");
    let orphan = flags.iter().find(|f| f.code == "answer.orphan").unwrap();
    assert!(orphan.message.contains("CaseAssistRequested") && orphan.message_zh.contains("协查"), "{orphan:?}");
    // The origin sees the same flags; before the answer was recorded there was no flag.
    assert_eq!(p.quality(Some(Locality::parse(ORI).unwrap()), t("2026-11-30")), flags);
    let earlier = p.quality(None, t("2026-10-13") - Duration::minutes(1));
    assert!(!earlier.iter().any(|f| f.code == "answer.orphan"), "{earlier:#?}");
    // Residence work for a person it never registered.
    let mut other = Envelope { person_key: PersonKey::derive("p2", b"s").to_string(), ..events[2].clone() };
    other.event_id = id(7).as_bytes().to_vec();
    other.author_seq = 5;
    other.recorded_at = Some(yipan_core::time::to_ts(t("2026-10-20")));
    p.apply(&other);
    let flags = p.quality(None, t("2026-11-30"));
    assert!(flags.iter().any(|f| f.event == id(7) && f.code == "arrival.missing"), "{flags:#?}");
    // A locality with no relationship has none.
    assert!(p.quality(Some(Locality::parse("110101").unwrap()), t("2026-11-30")).is_empty());
}

/// An event dated a little ahead of its recording (clock skew, within what append
/// allows) counts in no view before its date: the card and the digest as of an instant
/// between the recording and the date are those without it, on both sides.
#[test]
fn an_event_counts_only_once_it_has_occurred_and_been_recorded() {
    let arrival = ev(1, RES, 1, "2026-10-08", false, Kind::ArrivalRegistered(v1::ArrivalRegistered::default()), None);
    let mut service = ev(
        2,
        RES,
        2,
        "2026-10-12",
        false,
        Kind::ServiceRendered(v1::ServiceRendered { service: 8, ..Default::default() }),
        None,
    );
    // Recorded 20 hours before the time it says it happened.
    service.recorded_at = Some(yipan_core::time::to_ts(t("2026-10-12") - Duration::hours(20)));
    let mut p = Projections::new(WorkCalendar::default());
    p.apply(&arrival);
    p.apply(&service);
    let rel = p.relationships().next().copied().unwrap();
    let between = t("2026-10-12") - Duration::hours(2);
    let after = t("2026-10-12") + Duration::hours(1);
    assert_eq!(p.rel_facts(&rel, between).len(), 1, "not yet happened: not counted");
    assert_eq!(p.rel_facts(&rel, after).len(), 2);
    let mut without = Projections::new(WorkCalendar::default());
    without.apply(&arrival);
    let (r, o) = (Locality::parse(RES).unwrap(), Locality::parse(ORI).unwrap());
    assert_eq!(p.pair_digest(o, r, between), without.pair_digest(o, r, between));
    assert_ne!(p.pair_digest(o, r, after), without.pair_digest(o, r, after));
}

/// First-child registration: the residence asks the origin within 7 working days of the
/// person's application (DOMAIN.md); the exchange carries that leg when the request
/// gives the application date, and nothing changes for requests without one.
#[test]
fn the_first_child_request_leg_runs_from_the_application() {
    let applied = Some(yipan_core::time::to_ts(t("2026-10-08")));
    let request = |n: u16, seq: u64, day: &str, applied_at| {
        ev(
            n,
            RES,
            seq,
            day,
            false,
            Kind::FirstChildRegistrationRequested(v1::FirstChildRegistrationRequested { applied_at }),
            None,
        )
    };
    let mut p = Projections::new(WorkCalendar::default());
    p.apply(&ev(1, RES, 1, "2026-10-08", false, Kind::ArrivalRegistered(v1::ArrivalRegistered::default()), None));
    // Thursday 8 October + 7 working days = Monday 19 October (Monday–Friday calendar).
    p.apply(&request(2, 2, "2026-10-19", applied));
    p.apply(&request(3, 3, "2026-10-20", applied));
    p.apply(&request(4, 4, "2026-10-21", None));
    let rel = p.relationships().next().copied().unwrap();
    let legs: Vec<_> = p
        .exchanges(&rel, t("2026-11-30"))
        .into_iter()
        .filter(|e| e.kind == yipan_projections::ExchangeKind::FirstChild)
        .map(|e| e.request_leg.map(|l| (l.due.to_string(), l.on_time, l.working_days)))
        .collect();
    assert_eq!(legs, [Some(("2026-10-19".to_string(), true, 7)), Some(("2026-10-19".to_string(), false, 8)), None]);
    // A request without the date serializes exactly as before (no `request_leg` field).
    let json = serde_json::to_string(&p.exchanges(&rel, t("2026-11-30"))[2]).unwrap();
    assert!(!json.contains("request_leg"), "{json}");
}
