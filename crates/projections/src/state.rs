//! [`Projections`]: the facts of every event applied, and the views computed
//! from them at query time, `as_of` an instant (invariant 7). State is keyed
//! by event id and indexed in ordered maps, so it depends on the *set* of
//! events, not on the order they arrived in.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;
use yipan_core::{EventKind, Locality};
use yipan_proto::v1::{self, Envelope};

use crate::calendar::{date_of, WorkCalendar};
use crate::catalogue::{Catalogue, ExchangeRules, Side};
use crate::fact::{Detail, Fact, Rel};

/// Ordered key of a fact: when it happened, then its id.
/// A fact's position in [`Projections::facts`]. Lists of positions are kept
/// sorted by the facts' (occurred, id): memory per tracked person is the
/// facts themselves plus four bytes per event per list (a B-tree set of
/// (time, id) keys per relationship cost ~400 bytes per person).
type Pos = u32;

/// All projections of one node.
#[derive(Debug, Default)]
pub struct Projections {
    /// Every fact, in the order applied.
    facts: Vec<Fact>,
    /// Event id → position: a table of positions hashed by their fact's id
    /// (5 bytes a slot; a map from id to position would store the id twice).
    index: hashbrown::HashTable<Pos>,
    hasher: std::hash::RandomState,
    by_rel: BTreeMap<Rel, Vec<Pos>>,
    /// Target event → corrections and retractions naming it.
    amendments: HashMap<Uuid, Vec<Pos>>,
    /// Locality-level events (staff roster, catalogues, outreach, …) by author.
    by_locality: BTreeMap<Locality, Vec<Pos>>,
    /// Of them, the published catalogues (read for every card and exchange:
    /// not found by scanning a county's thousands of outreach records).
    catalogues: BTreeMap<Locality, Vec<Pos>>,
    calendar: WorkCalendar,
}

/// Inserts `pos` into `list`, kept sorted by the facts' (occurred, id).
fn insert_sorted(facts: &[Fact], list: &mut Vec<Pos>, pos: Pos) {
    let key = |p: &Pos| {
        let f = &facts[*p as usize];
        (f.occurred, f.id)
    };
    let k = key(&pos);
    // Events mostly come in order: the common case is a push.
    if list.last().is_none_or(|last| key(last) < k) {
        list.push(pos);
    } else {
        let at = list.partition_point(|p| key(p) < k);
        list.insert(at, pos);
    }
}

/// A fact as in force at some instant: corrected kind and detail applied.
#[derive(Debug, Clone, Copy)]
pub struct Eff<'a> {
    /// The event.
    pub fact: &'a Fact,
    /// Its kind (a correction's replacement kind if corrected).
    pub kind: EventKind,
    /// Its detail (corrected if so).
    pub detail: &'a Detail,
}

/// The state of one duty item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ItemState {
    /// Fulfilled by `by` at `at`.
    Done {
        /// The fulfilling event.
        by: Uuid,
        /// When it happened.
        at: DateTime<Utc>,
        /// Whether by the due date.
        on_time: bool,
    },
    /// Not yet done, not yet due.
    Pending,
    /// Not done and past due.
    Overdue {
        /// Whole days past the due date.
        days: i64,
    },
}

/// One line of a responsibility card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CardItem {
    /// Item id.
    pub id: String,
    /// Who must do it.
    pub side: Side,
    /// Names.
    pub name_en: String,
    /// 中文名.
    pub name_zh: String,
    /// Due date (CST).
    pub due: NaiveDate,
    /// State as of the card's instant.
    #[serde(flatten)]
    pub state: ItemState,
}

/// A person's responsibility card for one relationship.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Card {
    /// The relationship.
    pub rel: Rel,
    /// The instant it describes.
    pub as_of: DateTime<Utc>,
    /// Anchor of the deadlines: the arrival registration, else the first event.
    pub anchor: Option<DateTime<Utc>>,
    /// Catalogue versions in force for the origin's and the residence's items.
    pub catalogue_origin: String,
    /// See `catalogue_origin`.
    pub catalogue_residence: String,
    /// Every item.
    pub items: Vec<CardItem>,
}

/// Which workflow an exchange is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExchangeKind {
    /// 通报 → 接收.
    Notification,
    /// 协查 → 协查反馈.
    CaseAssist,
    /// 一孩登记 → 确认.
    FirstChild,
    /// 证明不符 → 重新出具.
    CertificateMismatch,
}

impl ExchangeKind {
    /// Chinese name.
    pub fn zh(self) -> &'static str {
        match self {
            ExchangeKind::Notification => "通报→接收",
            ExchangeKind::CaseAssist => "协查→反馈",
            ExchangeKind::FirstChild => "一孩登记→确认",
            ExchangeKind::CertificateMismatch => "证明不符→重新出具",
        }
    }
}

/// The state of an exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ExchangeState {
    /// Answered.
    Closed {
        /// The answering event.
        by: Uuid,
        /// When.
        at: DateTime<Utc>,
        /// Whether by the due date.
        on_time: bool,
    },
    /// Awaiting an answer, not yet due.
    Open,
    /// Awaiting an answer past its due date.
    Overdue {
        /// Whole days past due.
        days: i64,
    },
}

/// One request awaiting (or having had) its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exchange {
    /// Workflow.
    pub kind: ExchangeKind,
    /// Urgent (15-day) case-assist.
    pub urgent: bool,
    /// The request event.
    pub request: Uuid,
    /// The relationship.
    pub rel: Rel,
    /// Who asked.
    pub from: Locality,
    /// Who must answer.
    pub to: Locality,
    /// When asked.
    pub opened: DateTime<Utc>,
    /// Due date (CST).
    pub due: NaiveDate,
    /// State as of the query.
    #[serde(flatten)]
    pub state: ExchangeState,
    /// First-child registration: the residence's own leg, from the person's
    /// application to the request (absent when the request gives no application date).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_leg: Option<RequestLeg>,
    /// The requester's own leg after the request: a first-child registration's
    /// notice to the origin (due 15 working days after the confirmation; absent
    /// until confirmed), a certificate mismatch told to the origin (due 20
    /// working days after it was found).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub follow_up: Option<FollowUp>,
}

/// A leg the requester owes after its request (see [`Exchange::follow_up`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FollowUp {
    /// What is owed: `notify_origin`.
    pub duty: &'static str,
    /// Counted from (CST date).
    pub from: NaiveDate,
    /// Due by (CST date).
    pub due: NaiveDate,
    /// State as of the query (closed by the notification that did it).
    #[serde(flatten)]
    pub state: ExchangeState,
}

/// The leg before a request: the requester had to ask within a deadline of an earlier date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RequestLeg {
    /// When the person applied (CST date).
    pub applied: NaiveDate,
    /// The request was due by (CST date).
    pub due: NaiveDate,
    /// Whether the request was made by then.
    pub on_time: bool,
    /// Working days from the application to the request.
    pub working_days: i64,
}

impl Exchange {
    /// Whether it is open past due.
    pub fn overdue(&self) -> bool {
        matches!(self.state, ExchangeState::Overdue { .. })
    }
}

/// The state of a leg due on `due`, done by `done` if any.
fn leg_state(done: Option<&Eff<'_>>, due: NaiveDate, as_of: DateTime<Utc>) -> ExchangeState {
    match done {
        Some(a) => {
            ExchangeState::Closed { by: a.fact.id, at: a.fact.occurred, on_time: date_of(a.fact.occurred) <= due }
        }
        None if date_of(as_of) > due => ExchangeState::Overdue { days: days_past(due, as_of) },
        None => ExchangeState::Open,
    }
}

fn days_past(due: NaiveDate, as_of: DateTime<Utc>) -> i64 {
    (date_of(as_of) - due).num_days()
}

impl Projections {
    /// Empty projections with a working-day calendar.
    pub fn new(calendar: WorkCalendar) -> Projections {
        Projections { calendar, ..Default::default() }
    }

    /// The working-day calendar.
    pub fn calendar(&self) -> &WorkCalendar {
        &self.calendar
    }

    /// Applies an event; false if it was already applied or lacks required fields.
    pub fn apply(&mut self, env: &Envelope) -> bool {
        match Fact::from_envelope(env) {
            Some(f) => self.apply_fact(f),
            None => false,
        }
    }

    /// The position of an event id.
    fn position(&self, id: &Uuid) -> Option<Pos> {
        use std::hash::BuildHasher;
        let facts = &self.facts;
        self.index.find(self.hasher.hash_one(id), |p| facts[*p as usize].id == *id).copied()
    }

    /// Applies a decoded fact; false if already applied.
    pub fn apply_fact(&mut self, d: crate::fact::Decoded) -> bool {
        use std::hash::BuildHasher;
        let crate::fact::Decoded { fact: f, rel } = d;
        if self.position(&f.id).is_some() {
            return false;
        }
        let Ok(pos) = Pos::try_from(self.facts.len()) else { return false };
        let (facts, hasher) = (&self.facts, &self.hasher);
        self.index.insert_unique(hasher.hash_one(f.id), pos, |p| hasher.hash_one(facts[*p as usize].id));
        let (kind, causation, author) = (f.kind, f.causation, f.author);
        self.facts.push(f);
        let list = if matches!(kind, EventKind::EventCorrected | EventKind::EventRetracted) {
            match causation {
                Some(target) => self.amendments.entry(target).or_default(),
                None => return true,
            }
        } else if let Some(rel) = rel {
            self.by_rel.entry(rel).or_default()
        } else {
            if kind == EventKind::DutyCatalogPublished {
                insert_sorted(&self.facts, self.catalogues.entry(author).or_default(), pos);
            }
            self.by_locality.entry(author).or_default()
        };
        insert_sorted(&self.facts, list, pos);
        true
    }

    /// Gives back the spare capacity of its tables (after a rebuild).
    pub fn shrink_to_fit(&mut self) {
        self.facts.shrink_to_fit();
        let (facts, hasher) = (&self.facts, &self.hasher);
        self.index.shrink_to_fit(|p| std::hash::BuildHasher::hash_one(hasher, facts[*p as usize].id));
        for list in self.by_rel.values_mut() {
            list.shrink_to_fit();
        }
    }

    /// Events applied.
    pub fn len(&self) -> usize {
        self.facts.len()
    }

    /// True when nothing is applied.
    pub fn is_empty(&self) -> bool {
        self.facts.is_empty()
    }

    /// Relationships tracked.
    pub fn relationships(&self) -> impl Iterator<Item = &Rel> {
        self.by_rel.keys()
    }

    /// Relationships of one person.
    pub fn relationships_of_person(&self, person: &yipan_core::PersonKey) -> Vec<Rel> {
        self.by_rel.keys().filter(|r| r.person == *person).copied().collect()
    }

    /// The fact as in force `as_of`: known (recorded) by then, not retracted by
    /// then, with the latest correction recorded by then applied. An amendment
    /// counts only when made by the author of the event it amends.
    pub fn effective(&self, id: &Uuid, as_of: DateTime<Utc>) -> Option<Eff<'_>> {
        self.effective_at(self.position(id)?, as_of)
    }

    /// [`Projections::effective`] of the fact at a position.
    fn effective_at(&self, pos: Pos, as_of: DateTime<Utc>) -> Option<Eff<'_>> {
        let fact = self.facts.get(pos as usize)?;
        // Known (recorded) and happened (occurred) by `as_of`: an event dated a little
        // ahead of its recording (clock skew) counts in no view before its date.
        if fact.recorded > as_of || fact.occurred > as_of {
            return None;
        }
        let mut eff = Eff { fact, kind: fact.kind, detail: &fact.detail };
        if let Some(ams) = self.amendments.get(&fact.id) {
            for aid in ams {
                let Some(a) = self.facts.get(*aid as usize) else { continue };
                if a.recorded > as_of || a.occurred > as_of || a.author != fact.author {
                    continue;
                }
                match (&a.kind, &a.detail) {
                    (EventKind::EventRetracted, _) => return None,
                    (EventKind::EventCorrected, Detail::Correction(kind, detail)) => {
                        eff.kind = *kind;
                        eff.detail = detail;
                    }
                    _ => {}
                }
            }
        }
        Some(eff)
    }

    /// Effective facts of a relationship as of an instant, by (occurred, id).
    pub fn rel_facts(&self, rel: &Rel, as_of: DateTime<Utc>) -> Vec<Eff<'_>> {
        self.by_rel
            .get(rel)
            .map(|list| list.iter().filter_map(|p| self.effective_at(*p, as_of)).collect())
            .unwrap_or_default()
    }

    /// Effective locality-level facts of `l` as of an instant.
    pub fn locality_facts(&self, l: Locality, as_of: DateTime<Utc>) -> Vec<Eff<'_>> {
        self.by_locality
            .get(&l)
            .map(|list| list.iter().filter_map(|p| self.effective_at(*p, as_of)).collect())
            .unwrap_or_default()
    }

    /// The catalogue `l` had in force at `at`, as known (recorded) by `as_of`:
    /// its latest valid published one, else the default.
    pub fn catalogue(&self, l: Locality, at: DateTime<Utc>, as_of: DateTime<Utc>) -> std::sync::Arc<Catalogue> {
        let Some(list) = self.catalogues.get(&l) else { return Catalogue::default_shared() };
        list.iter()
            .rev()
            .filter_map(|p| self.effective_at(*p, as_of))
            .filter(|e| e.kind == EventKind::DutyCatalogPublished && e.fact.occurred <= at)
            .find_map(|e| match e.detail {
                Detail::Catalogue(doc) => Catalogue::from_json(doc).ok().map(std::sync::Arc::new),
                _ => None,
            })
            .unwrap_or_else(Catalogue::default_shared)
    }

    /// Anchor of a relationship's deadlines.
    fn anchor(rel: &Rel, facts: &[Eff<'_>]) -> Option<DateTime<Utc>> {
        facts
            .iter()
            .find(|e| e.kind == EventKind::ArrivalRegistered && e.fact.author == rel.residence)
            .or_else(|| facts.first())
            .map(|e| e.fact.occurred)
    }

    /// The responsibility card of a relationship as of an instant.
    pub fn card(&self, rel: &Rel, as_of: DateTime<Utc>) -> Card {
        let facts = self.rel_facts(rel, as_of);
        let anchor = Self::anchor(rel, &facts);
        let at = anchor.unwrap_or(as_of);
        let cat_o = self.catalogue(rel.origin, at, as_of);
        let cat_r = self.catalogue(rel.residence, at, as_of);
        let anchor_date = date_of(at);
        let mut items = Vec::new();
        for (cat, side) in [(&*cat_o, Side::Origin), (&*cat_r, Side::Residence)] {
            let author = if side == Side::Origin { rel.origin } else { rel.residence };
            for item in cat.items.iter().filter(|i| i.side == side) {
                let due = item.due.due_date(anchor_date, &self.calendar);
                let done = facts.iter().find(|e| {
                    e.fact.author == author && e.fact.occurred <= as_of && Catalogue::fulfils(item, e.kind, e.detail)
                });
                let state = match done {
                    Some(e) => {
                        ItemState::Done { by: e.fact.id, at: e.fact.occurred, on_time: date_of(e.fact.occurred) <= due }
                    }
                    None if date_of(as_of) > due => ItemState::Overdue { days: days_past(due, as_of) },
                    None => ItemState::Pending,
                };
                items.push(CardItem {
                    id: item.id.clone(),
                    side,
                    name_en: item.name_en.clone(),
                    name_zh: item.name_zh.clone(),
                    due,
                    state,
                });
            }
        }
        Card {
            rel: *rel,
            as_of,
            anchor,
            catalogue_origin: cat_o.version.clone(),
            catalogue_residence: cat_r.version.clone(),
            items,
        }
    }

    fn rules(&self, rel: &Rel, at: DateTime<Utc>, as_of: DateTime<Utc>) -> ExchangeRules {
        self.catalogue(rel.residence, at, as_of).exchanges
    }

    /// The exchanges of a relationship as of an instant, by opening time.
    pub fn exchanges(&self, rel: &Rel, as_of: DateTime<Utc>) -> Vec<Exchange> {
        self.exchanges_of(rel, &self.rel_facts(rel, as_of), as_of)
    }

    /// [`Projections::exchanges`] from the relationship's facts already read.
    pub(crate) fn exchanges_of(&self, rel: &Rel, facts: &[Eff<'_>], as_of: DateTime<Utc>) -> Vec<Exchange> {
        let mut out = Vec::new();
        let other = |l: Locality| if l == rel.origin { rel.residence } else { rel.origin };
        for req in facts {
            if !matches!(
                req.kind,
                EventKind::NotificationSent
                    | EventKind::CaseAssistRequested
                    | EventKind::FirstChildRegistrationRequested
                    | EventKind::CertificateMismatchFound
            ) {
                continue;
            }
            let opened = req.fact.occurred;
            let from = req.fact.author;
            let to = other(from);
            let rules = self.rules(rel, opened, as_of);
            let day = date_of(opened);
            let plus = |d: u32| day.checked_add_days(Days::new(d.into())).unwrap_or(day);
            let answered_by = |kind: EventKind| {
                facts.iter().find(|a| a.kind == kind && a.fact.author == to && a.fact.causation == Some(req.fact.id))
            };
            let mut request_leg = None;
            // The requester's notification of `topic` to the other side, on or after `from`.
            let notice = |topic: v1::NotificationTopic, from: DateTime<Utc>| {
                facts.iter().find(|a| {
                    a.kind == EventKind::NotificationSent
                        && a.fact.author == req.fact.author
                        && *a.detail == Detail::Notification(topic)
                        && a.fact.occurred >= from
                })
            };
            let mut follow_up = None;
            let (kind, urgent, due, answer) = match (req.kind, req.detail) {
                (EventKind::NotificationSent, _) => (
                    ExchangeKind::Notification,
                    false,
                    plus(rules.receipt_days),
                    answered_by(EventKind::NotificationReceived),
                ),
                (EventKind::CaseAssistRequested, d) => {
                    let urgent = matches!(d, Detail::CaseAssist(v1::Urgency::Urgent));
                    let days = if urgent { rules.case_assist_urgent_days } else { rules.case_assist_normal_days };
                    (ExchangeKind::CaseAssist, urgent, plus(days), answered_by(EventKind::CaseAssistAnswered))
                }
                (EventKind::FirstChildRegistrationRequested, d) => {
                    if let Detail::Applied(Some(applied)) = d {
                        let applied = date_of(*applied);
                        let due = self.calendar.add_working_days(applied, rules.first_child_request_working_days);
                        request_leg = Some(RequestLeg {
                            applied,
                            due,
                            on_time: day <= due,
                            working_days: self.calendar.working_days_between(applied, day),
                        });
                    }
                    let answer = answered_by(EventKind::FirstChildRegistrationConfirmed);
                    // Only an approved registration is registered and so notified.
                    if let Some(a) = answer.filter(|a| *a.detail == Detail::Approved(true)) {
                        let from = date_of(a.fact.occurred);
                        let due = self.calendar.add_working_days(from, rules.first_child_notify_working_days);
                        let done = notice(v1::NotificationTopic::FirstChild, a.fact.occurred);
                        follow_up =
                            Some(FollowUp { duty: "notify_origin", from, due, state: leg_state(done, due, as_of) });
                    }
                    (
                        ExchangeKind::FirstChild,
                        false,
                        self.calendar.add_working_days(day, rules.first_child_answer_working_days),
                        answer,
                    )
                }
                (EventKind::CertificateMismatchFound, _) => {
                    let due = self.calendar.add_working_days(day, rules.mismatch_notify_working_days);
                    let done = notice(v1::NotificationTopic::Certificate, opened);
                    follow_up =
                        Some(FollowUp { duty: "notify_origin", from: day, due, state: leg_state(done, due, as_of) });
                    (
                        ExchangeKind::CertificateMismatch,
                        false,
                        plus(rules.mismatch_reissue_days),
                        facts.iter().find(|a| {
                            (a.kind == EventKind::CertificateIssued && a.fact.author == rel.origin
                                || a.kind == EventKind::CertificateSubmitted && a.fact.author == rel.residence)
                                && a.fact.occurred > opened
                        }),
                    )
                }
                _ => continue,
            };
            let state = leg_state(answer, due, as_of);
            out.push(Exchange {
                kind,
                urgent,
                request: req.fact.id,
                rel: *rel,
                from,
                to,
                opened,
                due,
                state,
                request_leg,
                follow_up,
            });
        }
        out
    }

    /// Every exchange involving `locality` (or all), as of an instant.
    pub fn all_exchanges(&self, locality: Option<Locality>, as_of: DateTime<Utc>) -> Vec<Exchange> {
        self.by_rel
            .keys()
            .filter(|r| locality.is_none_or(|l| r.origin == l || r.residence == l))
            .flat_map(|r| self.exchanges(r, as_of))
            .collect()
    }

    /// Digest of one relationship's card and exchanges as of an instant.
    pub fn rel_digest(&self, rel: &Rel, as_of: DateTime<Utc>) -> [u8; 32] {
        let card = self.card(rel, as_of);
        let ex = self.exchanges(rel, as_of);
        let bytes = serde_json::to_vec(&(card, ex)).unwrap_or_default();
        Sha256::digest(bytes).into()
    }

    /// Digest over every relationship between `a` and `b` (either way round):
    /// what both sides of a pair compute from the events they share.
    pub fn pair_digest(&self, a: Locality, b: Locality, as_of: DateTime<Utc>) -> [u8; 32] {
        let mut h = Sha256::new();
        for rel in
            self.by_rel.keys().filter(|r| (r.origin == a && r.residence == b) || (r.origin == b && r.residence == a))
        {
            h.update(self.rel_digest(rel, as_of));
        }
        h.finalize().into()
    }

    /// [`Projections::pair_digest`] of every pair `l` is party to, in one
    /// pass (a national simulation compares each pair's digest at both
    /// sides; asking pair by pair would read every relationship per pair).
    /// Keys are `(lower code, higher code)`.
    pub fn pair_digests(&self, l: Locality, as_of: DateTime<Utc>) -> BTreeMap<(Locality, Locality), [u8; 32]> {
        let mut hashers: BTreeMap<(Locality, Locality), Sha256> = BTreeMap::new();
        for rel in self.by_rel.keys().filter(|r| r.origin == l || r.residence == l) {
            let key = (rel.origin.min(rel.residence), rel.origin.max(rel.residence));
            hashers.entry(key).or_default().update(self.rel_digest(rel, as_of));
        }
        hashers.into_iter().map(|(k, h)| (k, h.finalize().into())).collect()
    }

    /// Digest over every relationship `l` is party to and its locality-level events.
    pub fn locality_digest(&self, l: Locality, as_of: DateTime<Utc>) -> [u8; 32] {
        let mut h = Sha256::new();
        for rel in self.by_rel.keys().filter(|r| r.origin == l || r.residence == l) {
            h.update(self.rel_digest(rel, as_of));
        }
        for e in self.locality_facts(l, as_of) {
            h.update(e.fact.id.as_bytes());
        }
        h.finalize().into()
    }
}
