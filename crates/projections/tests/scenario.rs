//! Given / when / then: a hand-worked October 2026 between residence 610112
//! (未央区) and origin 411522 (光山县). Every expected number is worked out in
//! the comments from the events listed.

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use uuid::Uuid;
use yipan_core::{Locality, PersonKey};
use yipan_projections::scorecard::Scope;
use yipan_projections::state::{ExchangeState, ItemState};
use yipan_projections::{Period, Projections, Rel, WorkCalendar};
use yipan_proto::v1::{self, event_body::Kind, Envelope, EventBody, Recipient};

const RES: &str = "610112";
const ORI: &str = "411522";

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&format!("{s}T10:00:00+08:00")).unwrap().with_timezone(&Utc)
}

fn person(n: u8) -> PersonKey {
    PersonKey::derive(&format!("p{n}"), b"s")
}

fn rel(n: u8) -> Rel {
    Rel { person: person(n), origin: Locality::parse(ORI).unwrap(), residence: Locality::parse(RES).unwrap() }
}

fn id(n: u16) -> Uuid {
    Uuid::from_u128(0x0199_0000_0000_7000_8000_0000_0000_0000 | u128::from(n))
}

/// Builds the envelopes of a script; sequences per author in script order.
struct Script {
    events: Vec<Envelope>,
    seqs: std::collections::HashMap<&'static str, u64>,
}

impl Script {
    fn new() -> Script {
        Script { events: Vec::new(), seqs: Default::default() }
    }

    #[allow(clippy::too_many_arguments)]
    fn add(&mut self, n: u16, author: &'static str, who: Option<u8>, day: &str, kind: Kind, causation: Option<u16>) {
        let seq = self.seqs.entry(author).or_insert(0);
        *seq += 1;
        let other = if author == RES { ORI } else { RES };
        self.events.push(Envelope {
            schema_version: 1,
            event_id: id(n).as_bytes().to_vec(),
            author: author.into(),
            author_seq: *seq,
            occurred_at: Some(yipan_core::time::to_ts(t(day))),
            recorded_at: Some(yipan_core::time::to_ts(t(day))),
            person_key: who.map(|p| person(p).to_string()).unwrap_or_default(),
            origin: if who.is_some() { ORI.into() } else { String::new() },
            residence: if who.is_some() { RES.into() } else { String::new() },
            recipients: vec![Recipient { locality: other.into(), channel_seq: *seq }],
            causation_id: causation.map(|c| id(c).as_bytes().to_vec()).unwrap_or_default(),
            body: Some(EventBody { kind: Some(kind) }),
            ..Default::default()
        });
    }
}

fn arrival() -> Kind {
    Kind::ArrivalRegistered(v1::ArrivalRegistered::default())
}
fn service(s: v1::ServiceKind) -> Kind {
    Kind::ServiceRendered(v1::ServiceRendered { service: s as i32, provider_ref: String::new() })
}
fn notify() -> Kind {
    Kind::NotificationSent(v1::NotificationSent {
        topic: v1::NotificationTopic::Registration as i32,
        about_events: vec![],
    })
}
fn assist(u: v1::Urgency) -> Kind {
    Kind::CaseAssistRequested(v1::CaseAssistRequested { urgency: u as i32, subject: String::new() })
}
fn answer() -> Kind {
    Kind::CaseAssistAnswered(v1::CaseAssistAnswered {
        result: v1::VerificationResult::Confirmed as i32,
        remarks: String::new(),
    })
}

/// The October scenario.
fn october() -> Vec<Envelope> {
    use v1::ServiceKind::*;
    let mut s = Script::new();
    // Origin side.
    s.add(1, ORI, Some(1), "2026-10-01", Kind::ContraceptionStatusRecorded(v1::ContraceptionStatusRecorded {}), None);
    s.add(2, ORI, Some(1), "2026-10-02", notify(), None);
    // P1: arrives 8 Oct; everything done.
    s.add(10, RES, Some(1), "2026-10-08", arrival(), None);
    s.add(11, RES, Some(1), "2026-10-08", Kind::NotificationReceived(v1::NotificationReceived {}), Some(2));
    s.add(12, RES, Some(1), "2026-10-19", Kind::CertificateVerified(v1::CertificateVerified::default()), None);
    s.add(
        13,
        RES,
        Some(1),
        "2026-10-19",
        Kind::AgreementSigned(v1::AgreementSigned {
            agreement: v1::AgreementKind::ServiceAgreement as i32,
            agreement_ref: String::new(),
        }),
        None,
    );
    s.add(14, RES, Some(1), "2026-10-19", service(PersonInformed), None);
    s.add(15, RES, Some(1), "2026-10-22", service(Contraceptives), None);
    s.add(16, RES, Some(1), "2026-10-20", notify(), None);
    // P2: arrives 12 Oct, pregnant; informed late (20 Nov, due 11 Nov).
    s.add(20, RES, Some(2), "2026-10-12", arrival(), None);
    s.add(21, RES, Some(2), "2026-10-20", assist(v1::Urgency::Urgent), None);
    s.add(22, RES, Some(2), "2026-10-21", service(PregnancyCheck), None);
    s.add(23, RES, Some(2), "2026-11-20", service(PersonInformed), None);
    // P3: arrives 5 Oct; a normal case-assist on 6 Oct (due 5 Nov).
    s.add(30, RES, Some(3), "2026-10-05", arrival(), None);
    s.add(31, RES, Some(3), "2026-10-06", assist(v1::Urgency::Normal), None);
    // P4 arrives in November (another period).
    s.add(40, RES, Some(4), "2026-11-03", arrival(), None);
    // Origin answers: P2 on 27 Oct (due 4 Nov: on time), P3 on 10 Nov (due 5 Nov: late).
    s.add(3, ORI, Some(2), "2026-10-27", answer(), Some(21));
    s.add(4, ORI, Some(3), "2026-11-10", answer(), Some(31));
    // Staff roster of the residence.
    s.add(
        50,
        RES,
        None,
        "2026-10-01",
        Kind::StaffRosterUpdated(v1::StaffRosterUpdated { service_workers: 2, ..Default::default() }),
        None,
    );
    s.events
}

fn apply_all(events: &[Envelope]) -> Projections {
    let mut p = Projections::new(WorkCalendar::default());
    for e in events {
        assert!(p.apply(e));
    }
    p
}

fn value(card: &yipan_projections::scorecard::Scorecard, id: &str) -> (u64, u64, Option<bool>) {
    let i = card.indicators.iter().find(|i| i.id == id).unwrap();
    (i.numerator, i.denominator, i.pass)
}

#[test]
fn residence_scorecard_for_october_matches_the_hand_count() {
    // Given the October events, when 610112's October scorecard is asked for as of 30 Nov:
    let p = apply_all(&october());
    let res = Locality::parse(RES).unwrap();
    let card = p.scorecard(Scope::Locality { locality: res }, Period::Month(2026, 10), t("2026-11-30"));
    // Cohort: P1, P2, P3 arrived in October (P4 in November).
    assert_eq!(value(&card, "policy_awareness"), (2, 3, Some(false))); // P1, P2 informed
    assert_eq!(value(&card, "free_services"), (2, 3, Some(false))); // P1 contraceptives, P2 pregnancy check
    assert_eq!(value(&card, "pre_pregnancy"), (0, 3, Some(false)));
    assert_eq!(value(&card, "pregnancy_check"), (1, 1, Some(true))); // P2 known pregnant (urgent assist), checked
    assert_eq!(value(&card, "contraceptive_access"), (1, 1, Some(true))); // P1 recorded at origin, supplied
    assert_eq!(value(&card, "notification_rate"), (1, 3, Some(false))); // only P1 notified to the origin
    assert_eq!(value(&card, "receipt_rate"), (1, 1, Some(true))); // origin's 2 Oct notification acknowledged
    assert_eq!(value(&card, "feedback_rate"), (0, 0, None)); // no case-assist asked of 610112
    assert_eq!(value(&card, "staffing"), (4, 2, Some(true))); // 4 living there as of 30 Nov, 2 workers

    // The origin answered both case-assists in October's requests, one late.
    let ori = Locality::parse(ORI).unwrap();
    let card =
        p.scorecard(Scope::Direction { assessed: ori, counterpart: res }, Period::Month(2026, 10), t("2026-11-30"));
    assert_eq!(value(&card, "feedback_rate"), (2, 2, Some(true)));
    assert_eq!(value(&card, "timeliness"), (1, 2, Some(false)));
    assert_eq!(value(&card, "notification_rate"), (1, 3, Some(false))); // origin notified for P1 only
                                                                        // A pair sums both directions.
    let pair = p.scorecard(Scope::Pair { a: res, b: ori }, Period::Month(2026, 10), t("2026-11-30"));
    assert_eq!(value(&pair, "notification_rate"), (2, 6, Some(false)));
    assert_eq!(value(&pair, "feedback_rate"), (2, 2, Some(true)));
}

#[test]
fn every_counterpart_in_one_pass_matches_the_direction_scorecards() {
    // The console's overview asks for both directions with every counterpart at once.
    let p = apply_all(&october());
    let (res, ori) = (Locality::parse(RES).unwrap(), Locality::parse(ORI).unwrap());
    for (me, other) in [(res, ori), (ori, res)] {
        for period in [Period::Month(2026, 10), Period::Quarter(2026, 4), Period::Year(2026)] {
            let all = p.counterpart_scorecards(me, period, t("2026-11-30"));
            assert_eq!(all.len(), 1, "one counterpart");
            let (counterpart, out, back) = &all[0];
            assert_eq!(*counterpart, other);
            let direction = |assessed, counterpart| {
                p.scorecard(Scope::Direction { assessed, counterpart }, period, t("2026-11-30"))
            };
            assert_eq!(*out, direction(me, other));
            assert_eq!(*back, direction(other, me));
        }
    }
    // Many periods in one pass: the same scorecards as one period at a time.
    let periods = [Period::Month(2026, 10), Period::Month(2026, 11), Period::Quarter(2026, 4), Period::Year(2026)];
    for me in [res, ori] {
        let o = p.overview(me, &periods, 3, t("2026-11-30"));
        let one = |scope, period| p.scorecard(scope, period, t("2026-11-30"));
        for (i, period) in periods.iter().enumerate() {
            assert_eq!(o.own[i], one(Scope::Locality { locality: me }, *period), "{me} {period}");
        }
        let many = p.scorecards(Scope::Locality { locality: me }, &periods, t("2026-11-30"));
        assert_eq!(many, o.own);
        for (other, out, back) in &o.counterparts {
            assert_eq!(out.len(), 3);
            for (i, period) in periods[..3].iter().enumerate() {
                assert_eq!(out[i], one(Scope::Direction { assessed: me, counterpart: *other }, *period));
                assert_eq!(back[i], one(Scope::Direction { assessed: *other, counterpart: me }, *period));
            }
        }
        let dir = Scope::Direction { assessed: me, counterpart: if me == res { ori } else { res } };
        let many = p.scorecards(dir, &periods, t("2026-11-30"));
        for (i, period) in periods.iter().enumerate() {
            assert_eq!(many[i], one(dir, *period));
        }
    }
    // A locality with no relationship has no counterpart.
    assert!(p
        .counterpart_scorecards(Locality::parse("110101").unwrap(), Period::Year(2026), t("2026-11-30"))
        .is_empty());
}

#[test]
fn cards_show_done_pending_and_overdue_items() {
    let p = apply_all(&october());
    // P3 arrived Mon 5 Oct and nothing else was done.
    let card = p.card(&rel(3), t("2026-11-30"));
    let item = |id: &str| card.items.iter().find(|i| i.id == id).unwrap();
    assert!(matches!(item("residence.registration").state, ItemState::Done { on_time: true, .. }));
    // Certificate check: 5 Oct + 30 days = 4 Nov, + 5 working days = Wed 11 Nov; 19 days overdue on 30 Nov.
    assert_eq!(item("residence.certificate_check").due.to_string(), "2026-11-11");
    assert_eq!(item("residence.certificate_check").state, ItemState::Overdue { days: 19 });
    assert_eq!(item("origin.certificate").state, ItemState::Overdue { days: 26 });
    assert_eq!(card.items.len(), 10);
    // As of 20 Oct nothing was overdue yet.
    let early = p.card(&rel(3), t("2026-10-20"));
    assert!(early.items.iter().all(|i| !matches!(i.state, ItemState::Overdue { .. })));
    // P2 was informed, but late.
    let card = p.card(&rel(2), t("2026-11-30"));
    let informed = card.items.iter().find(|i| i.id == "residence.informed").unwrap();
    assert!(matches!(informed.state, ItemState::Done { on_time: false, .. }), "{informed:?}");
    // P1's contraception item is done by the origin's event.
    let card = p.card(&rel(1), t("2026-11-30"));
    assert!(matches!(
        card.items.iter().find(|i| i.id == "origin.contraception").unwrap().state,
        ItemState::Done { .. }
    ));
}

#[test]
fn exchanges_have_deadlines_and_states() {
    let p = apply_all(&october());
    let ex = p.all_exchanges(None, t("2026-11-30"));
    let find = |n: u16| ex.iter().find(|e| e.request == id(n)).unwrap();
    assert!(matches!(find(21).state, ExchangeState::Closed { on_time: true, .. }));
    assert_eq!(find(21).due.to_string(), "2026-11-04"); // urgent: 20 Oct + 15
    assert!(matches!(find(31).state, ExchangeState::Closed { on_time: false, .. }));
    assert_eq!(find(31).due.to_string(), "2026-11-05"); // normal: 6 Oct + 30
                                                        // P1's notification to the origin (20 Oct) was never acknowledged: due 19 Nov, 11 days overdue.
    assert_eq!(find(16).state, ExchangeState::Overdue { days: 11 });
    // As of 1 Nov, P3's case-assist was still open, not overdue.
    let before = p.all_exchanges(None, t("2026-11-01"));
    assert_eq!(before.iter().find(|e| e.request == id(31)).unwrap().state, ExchangeState::Open);
}

#[test]
fn corrections_and_retractions_change_the_answers() {
    let mut events = october();
    let mut s = Script { events: Vec::new(), seqs: [(RES, 17u64), (ORI, 4u64)].into_iter().collect() };
    // 610112 retracts P2's late "informed" record and corrects P1's service into a pre-pregnancy check.
    s.add(
        60,
        RES,
        Some(2),
        "2026-11-25",
        Kind::EventRetracted(v1::EventRetracted { reason: "entered twice".into() }),
        Some(23),
    );
    s.add(
        61,
        RES,
        Some(1),
        "2026-11-25",
        Kind::EventCorrected(Box::new(v1::EventCorrected {
            replacement: Some(Box::new(EventBody { kind: Some(service(v1::ServiceKind::PrePregnancyCheck)) })),
            reason: "wrong service".into(),
        })),
        Some(15),
    );
    events.extend(s.events);
    let p = apply_all(&events);
    let res = Locality::parse(RES).unwrap();
    let after = p.scorecard(Scope::Locality { locality: res }, Period::Month(2026, 10), t("2026-11-30"));
    assert_eq!(value(&after, "policy_awareness"), (1, 3, Some(false)));
    assert_eq!(value(&after, "pre_pregnancy"), (1, 3, Some(false)));
    assert_eq!(value(&after, "contraceptive_access"), (0, 1, Some(false)));
    // Time travel: as of 24 Nov the amendments were not yet recorded.
    let before = p.scorecard(Scope::Locality { locality: res }, Period::Month(2026, 10), t("2026-11-24"));
    assert_eq!(value(&before, "policy_awareness"), (2, 3, Some(false)));
    assert_eq!(value(&before, "contraceptive_access"), (1, 1, Some(true)));
    let card = p.card(&rel(2), t("2026-11-30"));
    assert_eq!(
        card.items.iter().find(|i| i.id == "residence.informed").unwrap().state,
        ItemState::Overdue { days: 19 }
    );
}

#[test]
fn a_published_catalogue_governs_relationships_anchored_after_it() {
    let mut cat = yipan_projections::Catalogue { version: "610112-2026.2".into(), ..Default::default() };
    for i in cat.items.iter_mut().filter(|i| i.id == "residence.informed") {
        i.due.days = 10;
    }
    let doc = serde_json::to_string(&cat).unwrap();
    let mut events = october();
    let mut s = Script { events: Vec::new(), seqs: [(RES, 17u64)].into_iter().collect() };
    s.add(
        70,
        RES,
        None,
        "2026-10-10",
        Kind::DutyCatalogPublished(v1::DutyCatalogPublished {
            version: cat.version.clone(),
            sha256: vec![],
            document: doc,
        }),
        None,
    );
    // Recorded on 20 Nov, in force from 10 Oct: a replay before 20 Nov must not know it yet.
    s.events[0].recorded_at = Some(yipan_core::time::to_ts(t("2026-11-20")));
    events.extend(s.events);
    let p = apply_all(&events);
    let before = p.card(&rel(2), t("2026-11-15"));
    assert_eq!(before.catalogue_residence, "default-2026.1");
    // P2 arrived 12 Oct, after the new catalogue: informed due 22 Oct. P3 (5 Oct) keeps the default (4 Nov).
    let c2 = p.card(&rel(2), t("2026-11-30"));
    assert_eq!(c2.catalogue_residence, "610112-2026.2");
    assert_eq!(c2.items.iter().find(|i| i.id == "residence.informed").unwrap().due.to_string(), "2026-10-22");
    let c3 = p.card(&rel(3), t("2026-11-30"));
    assert_eq!(c3.catalogue_residence, "default-2026.1");
    assert_eq!(c3.items.iter().find(|i| i.id == "residence.informed").unwrap().due.to_string(), "2026-11-04");
}

/// Every interleaving of the two authors' events (each author's own order
/// kept) — choices[i] picks which author's next event comes next.
fn interleave(events: &[Envelope], choices: &[bool]) -> Vec<Envelope> {
    let (mut a, mut b): (Vec<_>, Vec<_>) = events.iter().cloned().partition(|e| e.author == RES);
    a.reverse();
    b.reverse();
    let mut out = Vec::new();
    let mut i = 0;
    while !a.is_empty() || !b.is_empty() {
        let take_a = if a.is_empty() {
            false
        } else if b.is_empty() {
            true
        } else {
            choices.get(i).copied().unwrap_or(true)
        };
        i += 1;
        out.push(if take_a { a.pop().unwrap() } else { b.pop().unwrap() });
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_interleaving_gives_the_same_digests(choices in prop::collection::vec(any::<bool>(), 40), split in 0usize..24) {
        let mut events = october();
        let mut s = Script { events: Vec::new(), seqs: [(RES, 17u64), (ORI, 4u64)].into_iter().collect() };
        s.add(60, RES, Some(2), "2026-11-25", Kind::EventRetracted(v1::EventRetracted { reason: "x".into() }), Some(23));
        events.extend(s.events);
        let reference = apply_all(&events);
        let shuffled = interleave(&events, &choices);
        // Incremental: apply part, query, apply the rest.
        let mut p = Projections::new(WorkCalendar::default());
        for e in &shuffled[..split.min(shuffled.len())] {
            p.apply(e);
        }
        let _ = p.scorecard(Scope::Locality { locality: Locality::parse(RES).unwrap() }, Period::Month(2026, 10), t("2026-11-30"));
        for e in &shuffled[split.min(shuffled.len())..] {
            p.apply(e);
        }
        let (res, ori) = (Locality::parse(RES).unwrap(), Locality::parse(ORI).unwrap());
        for as_of in [t("2026-10-15"), t("2026-11-30")] {
            prop_assert_eq!(p.pair_digest(res, ori, as_of), reference.pair_digest(res, ori, as_of));
            // All pairs at once, from either side, give the same digest as one pair asked for.
            let key = (res.min(ori), res.max(ori));
            for side in [res, ori] {
                let all = p.pair_digests(side, as_of);
                prop_assert_eq!(all.get(&key), Some(&reference.pair_digest(ori, res, as_of)));
                prop_assert!(all.keys().all(|(a, b)| a < b && (*a == side || *b == side)));
            }
            prop_assert_eq!(p.locality_digest(res, as_of), reference.locality_digest(res, as_of));
            for n in 1..=4 {
                prop_assert_eq!(p.rel_digest(&rel(n), as_of), reference.rel_digest(&rel(n), as_of));
            }
            let a = serde_json::to_string(&p.scorecard(Scope::Pair { a: res, b: ori }, Period::Year(2026), as_of)).unwrap();
            let b = serde_json::to_string(&reference.scorecard(Scope::Pair { a: res, b: ori }, Period::Year(2026), as_of)).unwrap();
            prop_assert_eq!(a, b);
        }
    }
}

#[test]
fn flows_warn_when_a_month_departs_from_its_baseline() {
    let mut s = Script::new();
    let mut n = 1000u16;
    // 12 arrivals a month from 411522 for July–September, then 40 in October.
    for (month, count) in [("07", 12), ("08", 12), ("09", 12), ("10", 40)] {
        for k in 0..count {
            s.add(n, RES, Some((n % 250) as u8), &format!("2026-{month}-{:02}", 1 + k % 28), arrival(), None);
            n += 1;
        }
    }
    let p = apply_all(&s.events);
    let flows = p.flows(Some(Locality::parse(RES).unwrap()), t("2026-10-31"));
    assert_eq!(flows.rows.iter().map(|r| r.arrivals).sum::<u64>(), 76);
    let oct: Vec<_> = flows.warnings.iter().filter(|w| w.period == Period::Month(2026, 10)).collect();
    assert_eq!(oct.len(), 2, "{:?}", flows.warnings); // all origins, and the 411522 pair
    assert!(oct.iter().all(|w| w.direction == "surge" && (w.baseline - 12.0).abs() < 1e-9));
    assert!(flows.warnings.iter().all(|w| w.period == Period::Month(2026, 10)), "no warning for steady months");
}

// ---------------------------------------------------------------------------
// The seed's place-level duties and the statistics month, hand-worked for
// 610112 (未央区) in the statistics month 2026-11, which runs from 21 October
// to 20 November (months close on the 20th, DOMAIN.md "monthly cycle").

fn arrival_at(township: &str, community: &str, sex: v1::Sex, birth_year: u32, marital: v1::MaritalStatus) -> Kind {
    Kind::ArrivalRegistered(v1::ArrivalRegistered {
        township: township.into(),
        community: community.into(),
        sex: sex as i32,
        birth_year,
        marital_status: marital as i32,
        ..Default::default()
    })
}

fn outreach(activity: v1::OutreachKind, township: &str, attendance: u32, materials: u32) -> Kind {
    Kind::OutreachActivityHeld(v1::OutreachActivityHeld {
        activity: activity as i32,
        venue: v1::Venue::Community as i32,
        township: township.into(),
        attendance,
        materials,
    })
}

fn point(id: &str, township: &str, active: bool, units: u32) -> Kind {
    Kind::DistributionPointReported(v1::DistributionPointReported {
        point_ref: id.into(),
        mode: v1::DistributionMode::SelfService as i32,
        venue: v1::Venue::Community as i32,
        township: township.into(),
        active,
        units_distributed: units,
    })
}

fn survey(respondents: u32, satisfied: u32) -> Kind {
    Kind::SatisfactionSurveyed(v1::SatisfactionSurveyed {
        survey_ref: "评计生-2026".into(),
        township: String::new(),
        respondents,
        satisfied,
    })
}

fn notify_about(topic: v1::NotificationTopic) -> Kind {
    Kind::NotificationSent(v1::NotificationSent { topic: topic as i32, about_events: vec![] })
}

fn catalogue_event(close: u32, full_time_from: u32) -> Kind {
    let mut cat = yipan_projections::Catalogue { version: format!("610112-close{close}"), ..Default::default() };
    cat.statistics.month_closes_on_day = close;
    cat.statistics.full_time_worker_from_migrants = full_time_from;
    Kind::DutyCatalogPublished(v1::DutyCatalogPublished {
        version: cat.version.clone(),
        sha256: vec![],
        document: serde_json::to_string(&cat).unwrap(),
    })
}

/// The November scenario (persons 11–16).
fn november() -> Vec<Envelope> {
    use v1::MaritalStatus::{Married, NotMarried, Unspecified as M0};
    use v1::Sex::{Female, Male, Unspecified as S0};
    let (t1, t2, t3, t4) = ("610112001", "610112002", "610112003", "610112004");
    let (c1, c2) = ("610112001001", "610112002003");
    let mut s = Script::new();
    // A catalogue that needs a full-time worker from 2 migrants (default 500), months closing on the 20th.
    s.add(200, RES, None, "2026-09-01", catalogue_event(20, 2), None);
    // P11: woman born 1990, married; arrives Wed 21 Oct — the first day of statistics month 2026-11.
    s.add(110, RES, Some(11), "2026-10-21", arrival_at(t1, c1, Female, 1990, Married), None);
    s.add(111, RES, Some(11), "2026-10-25", service(v1::ServiceKind::PrePregnancyCheck), None);
    // P12: woman born 1970 (56 in 2026: not of childbearing age), married; consulted all the same.
    s.add(120, RES, Some(12), "2026-11-02", arrival_at(t1, c1, Female, 1970, Married), None);
    s.add(121, RES, Some(12), "2026-11-03", service(v1::ServiceKind::PrePregnancyCheck), None);
    // P13: a man; his certificate does not match on Fri 6 Nov and the origin is never told.
    s.add(130, RES, Some(13), "2026-11-05", arrival_at(t2, c2, Male, 0, M0), None);
    s.add(
        131,
        RES,
        Some(13),
        "2026-11-06",
        Kind::CertificateMismatchFound(v1::CertificateMismatchFound {
            certificate_ref: String::new(),
            reason: v1::MismatchReason::Expired as i32,
        }),
        None,
    );
    // P14: woman born 2000, unmarried at arrival; her certificate, checked 12 Nov, says married.
    s.add(140, RES, Some(14), "2026-11-10", arrival_at(t2, c2, Female, 2000, NotMarried), None);
    s.add(
        141,
        RES,
        Some(14),
        "2026-11-12",
        Kind::CertificateVerified(v1::CertificateVerified {
            certificate_ref: String::new(),
            marital_status: Married as i32,
        }),
        None,
    );
    // Her first child: applied 11 Nov, asked 12 Nov, confirmed by the origin Mon 16 Nov, told back 20 Nov.
    s.add(
        142,
        RES,
        Some(14),
        "2026-11-12",
        Kind::FirstChildRegistrationRequested(v1::FirstChildRegistrationRequested {
            applied_at: Some(yipan_core::time::to_ts(t("2026-11-11"))),
        }),
        None,
    );
    s.add(
        143,
        ORI,
        Some(14),
        "2026-11-16",
        Kind::FirstChildRegistrationConfirmed(v1::FirstChildRegistrationConfirmed { approved: true }),
        Some(142),
    );
    s.add(144, RES, Some(14), "2026-11-20", notify_about(v1::NotificationTopic::FirstChild), None);
    // P15 arrives 21 Nov: statistics month 2026-12.
    s.add(150, RES, Some(15), "2026-11-21", arrival_at(t1, c1, Female, 1995, Married), None);
    // P16: nothing known of sex, age or marriage (counts in every denominator), no community.
    s.add(160, RES, Some(16), "2026-11-15", arrival_at(t3, "", S0, 0, M0), None);

    // Publicity: a lecture in 610112001 (in the month), posters in 610112004
    // (no migrants there), a campaign in 610112002 on 21 Nov (next month).
    s.add(201, RES, None, "2026-10-25", outreach(v1::OutreachKind::Lecture, t1, 40, 100), None);
    s.add(202, RES, None, "2026-11-03", outreach(v1::OutreachKind::Posters, t4, 0, 0), None);
    s.add(203, RES, None, "2026-11-21", outreach(v1::OutreachKind::Campaign, t2, 80, 300), None);
    // Distribution points: A (610112001) open since 1 Oct, reports 300 units on 10 Nov;
    // B (610112002) opened 30 Oct with 50 units, closed 18 Nov after 20 more; C (610112003) opens 25 Nov.
    s.add(204, RES, None, "2026-10-01", point("A", t1, true, 0), None);
    s.add(205, RES, None, "2026-11-10", point("A", t1, true, 300), None);
    s.add(206, RES, None, "2026-10-30", point("B", t2, true, 50), None);
    s.add(207, RES, None, "2026-11-18", point("B", t2, false, 20), None);
    s.add(208, RES, None, "2026-11-25", point("C", t3, true, 0), None);
    // Satisfaction surveys: 46 of 50 on 15 Nov; 5 of 10 on 25 Nov (next month).
    s.add(209, RES, None, "2026-11-15", survey(50, 46), None);
    s.add(210, RES, None, "2026-11-25", survey(10, 5), None);
    // Staff roster on 1 Nov: community c1 has one full-time worker, c2 two part-time.
    s.add(
        211,
        RES,
        None,
        "2026-11-01",
        Kind::StaffRosterUpdated(v1::StaffRosterUpdated {
            service_workers: 0,
            units: vec![
                v1::StaffUnit { community: c1.into(), full_time: 1, part_time: 0 },
                v1::StaffUnit { community: c2.into(), full_time: 0, part_time: 2 },
            ],
        }),
        None,
    );
    s.events
}

#[test]
fn the_seed_duties_of_statistics_month_november_match_the_hand_count() {
    let p = apply_all(&november());
    let res = Locality::parse(RES).unwrap();
    let card = p.scorecard(Scope::Locality { locality: res }, Period::Month(2026, 11), t("2026-11-30"));
    assert_eq!((card.from.to_string(), card.to.to_string()), ("2026-10-21".into(), "2026-11-20".into()));
    // Cohort (anchors 21 Oct – 20 Nov): P11, P12, P13, P14, P16 — not P15 (21 Nov).
    // Women 15–49 in 2026: P11 (36), P14 (26), P16 (unknown counts in) = 3; P12 is 56, P13 a man.
    // Married women 15–49: P11, P14 (married by her certificate, which overrides the arrival), P16 = 3.
    assert_eq!(
        (card.population.registered, card.population.women_15_49, card.population.married_women_15_49),
        (5, 3, 3)
    );
    // Pre-pregnancy consultation: P11 of the 3 (P12's does not count: she is not of childbearing age).
    assert_eq!(value(&card, "pre_pregnancy"), (1, 3, Some(false)));
    // Townships with migrants on 20 Nov: 001 (P11, P12), 002 (P13, P14), 003 (P16) = 3.
    // Outreach in the month: the lecture (001) and the posters (004, no migrants): 1 of 3 reached.
    assert_eq!(value(&card, "outreach_coverage"), (1, 3, Some(false)));
    let a = card.activity.clone().unwrap();
    assert_eq!((a.outreach_activities, a.outreach_attendance, a.outreach_materials), (2, 40, 100));
    // Points active on 20 Nov: A only (B closed 18 Nov, C opens 25 Nov): 1 of 3 townships.
    assert_eq!(value(&card, "distribution_coverage"), (1, 3, Some(false)));
    // Units handed out 21 Oct – 20 Nov: A 300 + B 50 + B 20 = 370.
    assert_eq!((a.distribution_points, a.units_distributed, a.townships_with_migrants), (1, 370, 3));
    // Satisfaction: 46 of 50 (the 25 Nov round is December's) = 92% ≥ 90%.
    assert_eq!(value(&card, "satisfaction"), (46, 50, Some(true)));
    assert_eq!(a.survey_rounds, 1);
    // Staffing as of 30 Nov: 6 living there (P15 too), workers 1 + 2 = 3 → 2 per worker.
    assert_eq!(value(&card, "staffing"), (6, 3, Some(true)));
    // Communities with ≥ 2 migrants: c1 (P11, P12, P15) and c2 (P13, P14); only c1 has a full-time worker.
    assert_eq!(value(&card, "full_time_staffing"), (1, 2, Some(false)));
    assert_eq!(a.communities_needing_full_time, 2);

    // December (21 Nov – 20 Dec) as of 30 Nov: cohort P15 only. Migrants live in 001 (P11, P12,
    // P15), 002 (P13, P14) and 003 (P16); the campaign (21 Nov) reached 002; points A and C are open.
    let dec = p.scorecard(Scope::Locality { locality: res }, Period::Month(2026, 12), t("2026-11-30"));
    assert_eq!(dec.population.registered, 1);
    assert_eq!(value(&dec, "outreach_coverage"), (1, 3, Some(false)));
    assert_eq!(value(&dec, "distribution_coverage"), (2, 3, Some(false)));
    assert_eq!(value(&dec, "satisfaction"), (5, 10, Some(false)));

    // The same events with calendar months (a catalogue closing on 31, recorded before them):
    // P11's arrival (21 Oct) is October's, P15's (21 Nov) November's.
    let mut events = november();
    events[0].body = Some(EventBody { kind: Some(catalogue_event(31, 2)) });
    let cal = apply_all(&events);
    let card = cal.scorecard(Scope::Locality { locality: res }, Period::Month(2026, 11), t("2026-11-30"));
    assert_eq!((card.from.to_string(), card.to.to_string()), ("2026-11-01".into(), "2026-11-30".into()));
    assert_eq!(card.population.registered, 5); // P12, P13, P14, P15, P16
                                               // Married women 15–49: P14, P15 (31), P16; the only consultation in November was P12's.
    assert_eq!(value(&card, "pre_pregnancy"), (0, 3, Some(false)));
    let oct = cal.scorecard(Scope::Locality { locality: res }, Period::Month(2026, 10), t("2026-11-30"));
    assert_eq!(oct.population.registered, 1); // P11
    assert_eq!(value(&oct, "pre_pregnancy"), (1, 1, Some(true)));
}

#[test]
fn the_first_child_and_mismatch_legs_after_the_request() {
    let p = apply_all(&november());
    let ex = p.all_exchanges(None, t("2026-11-30"));
    let find = |n: u16| ex.iter().find(|e| e.request == id(n)).unwrap();
    // First child: asked 12 Nov (applied 11 Nov: 1 working day, due 20 Nov), confirmed Mon 16 Nov;
    // the residence tells the origin within 15 working days of that: Mon 7 Dec. Told 20 Nov: on time.
    let fc = find(142);
    let leg = fc.request_leg.unwrap();
    assert_eq!((leg.working_days, leg.on_time, leg.due.to_string()), (1, true, "2026-11-20".into()));
    let up = fc.follow_up.clone().unwrap();
    assert_eq!((up.from.to_string(), up.due.to_string()), ("2026-11-16".into(), "2026-12-07".into()));
    assert!(matches!(up.state, ExchangeState::Closed { on_time: true, by, .. } if by == id(144)));
    // Mismatch found Fri 6 Nov: the origin is told within 20 working days, by Fri 4 Dec. Never told:
    // open on 30 Nov, 6 days overdue on 10 Dec.
    let mm = find(131);
    assert_eq!(mm.follow_up.as_ref().unwrap().due.to_string(), "2026-12-04");
    assert_eq!(mm.follow_up.as_ref().unwrap().state, ExchangeState::Open);
    let later = p.all_exchanges(None, t("2026-12-10"));
    let mm = later.iter().find(|e| e.request == id(131)).unwrap();
    assert_eq!(mm.follow_up.as_ref().unwrap().state, ExchangeState::Overdue { days: 6 });
    // Before the confirmation there is no notice leg yet.
    let early = p.all_exchanges(None, t("2026-11-13"));
    assert!(early.iter().find(|e| e.request == id(142)).unwrap().follow_up.is_none());
}

#[test]
fn the_workplace_sees_who_works_there_until_they_leave() {
    let mut events = november();
    let mut s = Script { events: Vec::new(), seqs: [(RES, 30u64)].into_iter().collect() };
    let employer =
        |w: &str| Kind::EmployerRegistered(v1::EmployerRegistered { employer_ref: "E1".into(), workplace: w.into() });
    // P13 and P14 work in 610113 (雁塔区); P14 then changes job to one inside 610112; P11 works in 610113 and leaves.
    s.add(300, RES, Some(13), "2026-11-06", employer("610113"), None);
    s.add(301, RES, Some(14), "2026-11-11", employer("610113"), None);
    s.add(302, RES, Some(14), "2026-11-19", employer(""), None);
    s.add(303, RES, Some(11), "2026-11-02", employer("610113"), None);
    s.add(304, RES, Some(11), "2026-11-25", Kind::DepartureRegistered(v1::DepartureRegistered::default()), None);
    events.extend(s.events);
    let p = apply_all(&events);
    let rows = |l: &str, at: &str| -> Vec<(String, u64)> {
        p.flows(Some(Locality::parse(l).unwrap()), t(at))
            .workplaces
            .iter()
            .map(|r| (format!("{}<{}<{}", r.workplace, r.residence, r.origin), r.working))
            .collect()
    };
    assert_eq!(rows("610113", "2026-11-12"), [("610113<610112<411522".to_string(), 3)]);
    assert_eq!(rows("610113", "2026-11-30"), [("610113<610112<411522".to_string(), 1)]);
    assert_eq!(rows("411522", "2026-11-30"), rows("610113", "2026-11-30"), "the origin sees the same row");
    assert!(rows("110101", "2026-11-30").is_empty());
}

#[test]
fn only_the_residence_ends_a_residence_and_a_return_counts_again() {
    let res = Locality::parse(RES).unwrap();
    let staffing = |events: &[Envelope]| {
        let p = apply_all(events);
        let card = p.scorecard(Scope::Locality { locality: res }, Period::Month(2026, 12), t("2026-12-10"));
        value(&card, "staffing").0
    };
    let base = november();
    assert_eq!(staffing(&base), 6);
    // The origin records P13 as gone out (from the origin): still living at 610112.
    let mut events = base.clone();
    let mut s = Script { events: Vec::new(), seqs: [(ORI, 1u64), (RES, 30u64)].into_iter().collect() };
    let gone = || Kind::DepartureRegistered(v1::DepartureRegistered::default());
    s.add(400, ORI, Some(13), "2026-11-25", gone(), None);
    events.extend(s.events.clone());
    assert_eq!(staffing(&events), 6);
    // The residence records P13's departure on 1 Dec: 5; P13 returns on 5 Dec: 6 again.
    s.events.clear();
    s.add(401, RES, Some(13), "2026-12-01", gone(), None);
    events.extend(s.events.clone());
    assert_eq!(staffing(&events), 5);
    s.events.clear();
    s.add(
        402,
        RES,
        Some(13),
        "2026-12-05",
        arrival_at("610112002", "", v1::Sex::Male, 0, v1::MaritalStatus::Unspecified),
        None,
    );
    events.extend(s.events);
    assert_eq!(staffing(&events), 6);
}
