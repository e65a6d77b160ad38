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
    s.add(50, RES, None, "2026-10-01", Kind::StaffRosterUpdated(v1::StaffRosterUpdated { service_workers: 2 }), None);
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
