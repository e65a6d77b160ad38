//! The DOMAIN.md indicators, per locality, per locality pair and per
//! direction, for any period, as of an instant.
//!
//! Cohorts are relationships whose anchor (arrival registration, else first
//! event) falls in the period; exchanges count by the date they were opened.
//! A direction `A→B` assesses A's duties toward B; a pair sums both
//! directions; a locality assesses all its relationships and adds staffing.

use chrono::{DateTime, Utc};
use serde::Serialize;
use yipan_core::{EventKind, Locality};
use yipan_proto::v1;

use crate::calendar::date_of;
use crate::fact::{Detail, Rel};
use crate::period::Period;
use crate::state::{Eff, ExchangeKind, ExchangeState, Projections};

/// What a scorecard assesses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "scope", rename_all = "snake_case")]
pub enum Scope {
    /// One locality in all its relationships.
    Locality {
        /// The locality.
        locality: Locality,
    },
    /// Both directions between two localities.
    Pair {
        /// One side.
        a: Locality,
        /// The other.
        b: Locality,
    },
    /// `assessed`'s duties toward `counterpart`.
    Direction {
        /// Who is assessed.
        assessed: Locality,
        /// Toward whom.
        counterpart: Locality,
    },
}

impl Scope {
    /// The locality whose rules (statistics close day) the scope is counted by:
    /// the locality, the assessed side, or a pair's first locality.
    pub fn assessed(&self) -> Locality {
        match *self {
            Scope::Locality { locality } => locality,
            Scope::Direction { assessed, .. } => assessed,
            Scope::Pair { a, .. } => a,
        }
    }
}

/// One indicator.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Indicator {
    /// Stable id.
    pub id: &'static str,
    /// English name.
    pub name_en: &'static str,
    /// 中文名.
    pub name_zh: &'static str,
    /// Numerator.
    pub numerator: u64,
    /// Denominator.
    pub denominator: u64,
    /// numerator ÷ denominator (None when the denominator is 0).
    pub value: Option<f64>,
    /// Target.
    pub target: f64,
    /// `at_least` (rates) or `at_most` (staffing).
    pub comparison: &'static str,
    /// Whether the target is met (None without data).
    pub pass: Option<bool>,
}

/// A scorecard.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scorecard {
    /// What is assessed.
    #[serde(flatten)]
    pub scope: Scope,
    /// The period.
    pub period: Period,
    /// Its first day (statistics months close on the assessed locality's
    /// `statistics.month_closes_on_day`; a pair: the first locality's).
    pub from: chrono::NaiveDate,
    /// Its last day.
    pub to: chrono::NaiveDate,
    /// As of.
    pub as_of: DateTime<Utc>,
    /// Every indicator.
    pub indicators: Vec<Indicator>,
    /// The cohort's denominators: persons registered (by the assessed side as
    /// the residence) whose relationship is anchored in the period, and of
    /// them the women aged 15–49 and the married women aged 15–49 in the
    /// period's year (an unknown attribute counts a person in).
    pub population: Population,
    /// A locality scope: the activity figures behind its locality-level indicators.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activity: Option<crate::locality::Activity>,
}

/// See [`Scorecard::population`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Population {
    /// Registered persons of the cohort.
    pub registered: u64,
    /// Of them, women aged 15–49.
    pub women_15_49: u64,
    /// Of them, married women aged 15–49 (育龄已婚妇女).
    pub married_women_15_49: u64,
}

/// Raw counts for one assessed locality.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    registered: u64,
    women_15_49: u64,
    married_women: u64,
    informed: u64,
    served: u64,
    pre_pregnancy: u64,
    known_pregnant: u64,
    pregnancy_checked: u64,
    contracepting: u64,
    contraceptives: u64,
    notifications_due: u64,
    notifications_sent: u64,
    received_notifications: u64,
    acknowledged: u64,
    assists_received: u64,
    assists_answered: u64,
    answered_on_time: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        let f = |a: &mut u64, b: u64| *a += b;
        f(&mut self.registered, o.registered);
        f(&mut self.women_15_49, o.women_15_49);
        f(&mut self.married_women, o.married_women);
        f(&mut self.informed, o.informed);
        f(&mut self.served, o.served);
        f(&mut self.pre_pregnancy, o.pre_pregnancy);
        f(&mut self.known_pregnant, o.known_pregnant);
        f(&mut self.pregnancy_checked, o.pregnancy_checked);
        f(&mut self.contracepting, o.contracepting);
        f(&mut self.contraceptives, o.contraceptives);
        f(&mut self.notifications_due, o.notifications_due);
        f(&mut self.notifications_sent, o.notifications_sent);
        f(&mut self.received_notifications, o.received_notifications);
        f(&mut self.acknowledged, o.acknowledged);
        f(&mut self.assists_received, o.assists_received);
        f(&mut self.assists_answered, o.assists_answered);
        f(&mut self.answered_on_time, o.answered_on_time);
    }
}

fn service(e: &Eff<'_>, s: v1::ServiceKind) -> bool {
    e.kind == EventKind::ServiceRendered && *e.detail == Detail::Service(s)
}

const FREE: [v1::ServiceKind; 4] = [
    v1::ServiceKind::Contraceptives,
    v1::ServiceKind::PrePregnancyCheck,
    v1::ServiceKind::PregnancyCheck,
    v1::ServiceKind::ReproductiveHealthCheck,
];

fn indicator(id: &'static str, en: &'static str, zh: &'static str, n: u64, d: u64, target: f64) -> Indicator {
    let value = (d > 0).then(|| n as f64 / d as f64);
    Indicator {
        id,
        name_en: en,
        name_zh: zh,
        numerator: n,
        denominator: d,
        value,
        target,
        comparison: "at_least",
        pass: value.map(|v| v >= target),
    }
}

/// A locality's scorecards for many periods and both directions with each
/// counterpart, from [`Projections::overview`].
#[derive(Debug, Clone, PartialEq)]
pub struct Overview {
    /// The locality's own scorecard of each period asked for.
    pub own: Vec<Scorecard>,
    /// `(counterpart, me toward it, it toward me)` for the first periods asked for.
    pub counterparts: Vec<(Locality, Vec<Scorecard>, Vec<Scorecard>)>,
}

/// What one relationship says about an assessed locality, whatever the period.
struct RelFlags {
    /// The date the cohort is counted from (arrival registration, else the first event).
    anchor: Option<chrono::NaiveDate>,
    notified: bool,
    /// Registered by the assessed locality as the residence, with what followed.
    registered: Option<Registered>,
}

struct Registered {
    cohort: crate::fact::Cohort,
    /// Latest known marital status (a certificate check overrides the arrival's).
    married: Option<bool>,
    informed: bool,
    served: bool,
    pre_pregnancy: bool,
    /// Known pregnant; then whether checked.
    pregnant: Option<bool>,
    /// Contracepting; then whether supplied.
    contracepting: Option<bool>,
}

impl Projections {
    fn counts(&self, a: Locality, b: Option<Locality>, period: Period, as_of: DateTime<Utc>) -> Counts {
        let mut c = [Counts::default()];
        let close = self.closes_on(a, as_of);
        for rel in self.relationships().filter(|r| {
            (r.residence == a && b.is_none_or(|b| r.origin == b))
                || (r.origin == a && b.is_none_or(|b| r.residence == b))
        }) {
            let facts = self.rel_facts(rel, as_of);
            let exchanges = self.exchanges_of(rel, &facts, as_of);
            Self::count_rel(&mut c, &[period], &self.rel_flags(rel, a, &facts), a, &exchanges, close);
        }
        c[0]
    }

    /// The period-independent part of what `rel` contributes to `a`'s counts.
    fn rel_flags(&self, rel: &Rel, a: Locality, facts: &[Eff<'_>]) -> RelFlags {
        let anchor = facts
            .iter()
            .find(|e| e.kind == EventKind::ArrivalRegistered && e.fact.author == rel.residence)
            .or_else(|| facts.first())
            .map(|e| date_of(e.fact.occurred));
        let by = || facts.iter().filter(move |e| e.fact.author == a);
        let registered = (rel.residence == a && by().any(|e| e.kind == EventKind::ArrivalRegistered)).then(|| {
            let pregnant = facts.iter().any(|e| {
                e.kind == EventKind::FirstChildRegistrationRequested
                    || (e.kind == EventKind::CaseAssistRequested
                        && *e.detail == Detail::CaseAssist(v1::Urgency::Urgent))
            });
            let contracepting = facts.iter().any(|e| e.kind == EventKind::ContraceptionStatusRecorded);
            let cohort = by()
                .find_map(|e| match e.detail {
                    Detail::Arrival(_, c) if e.kind == EventKind::ArrivalRegistered => Some(*c),
                    _ => None,
                })
                .unwrap_or_default();
            let married = facts
                .iter()
                .rev()
                .filter(|e| e.fact.author == a)
                .find_map(|e| match e.detail {
                    Detail::Verified(m) if e.kind == EventKind::CertificateVerified => *m,
                    _ => None,
                })
                .or(cohort.married);
            Registered {
                cohort,
                married,
                informed: by().any(|e| service(e, v1::ServiceKind::PersonInformed)),
                served: by().any(|e| FREE.iter().any(|s| service(e, *s))),
                pre_pregnancy: by().any(|e| service(e, v1::ServiceKind::PrePregnancyCheck)),
                pregnant: pregnant.then(|| by().any(|e| service(e, v1::ServiceKind::PregnancyCheck))),
                contracepting: contracepting.then(|| by().any(|e| service(e, v1::ServiceKind::Contraceptives))),
            }
        });
        RelFlags { anchor, notified: by().any(|e| e.kind == EventKind::NotificationSent), registered }
    }

    /// Adds what one relationship contributes to `a`'s counts of each period.
    fn count_rel(
        out: &mut [Counts],
        periods: &[Period],
        f: &RelFlags,
        a: Locality,
        exchanges: &[crate::Exchange],
        close: u32,
    ) {
        for (c, period) in out.iter_mut().zip(periods) {
            if f.anchor.is_some_and(|d| period.contains_at(d, close)) {
                c.notifications_due += 1;
                c.notifications_sent += u64::from(f.notified);
                if let Some(r) = &f.registered {
                    use chrono::Datelike;
                    let year = period.bounds_at(close).1.year();
                    let eligible = r.cohort.married_woman_15_49(year, r.married);
                    c.registered += 1;
                    c.women_15_49 += u64::from(r.cohort.woman_15_49(year));
                    c.married_women += u64::from(eligible);
                    c.informed += u64::from(r.informed);
                    c.served += u64::from(r.served);
                    c.pre_pregnancy += u64::from(eligible && r.pre_pregnancy);
                    if let Some(checked) = r.pregnant {
                        c.known_pregnant += 1;
                        c.pregnancy_checked += u64::from(checked);
                    }
                    if let Some(supplied) = r.contracepting {
                        c.contracepting += 1;
                        c.contraceptives += u64::from(supplied);
                    }
                }
            }
            for ex in exchanges {
                if ex.to != a || !period.contains_at(date_of(ex.opened), close) {
                    continue;
                }
                let closed = matches!(ex.state, ExchangeState::Closed { .. });
                match ex.kind {
                    ExchangeKind::Notification => {
                        c.received_notifications += 1;
                        c.acknowledged += u64::from(closed);
                    }
                    ExchangeKind::CaseAssist => {
                        c.assists_received += 1;
                        if let ExchangeState::Closed { on_time, .. } = ex.state {
                            c.assists_answered += 1;
                            c.answered_on_time += u64::from(on_time);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// The scorecards of `me` for many periods at once, and of both directions
    /// with each counterpart for the first `counterpart_periods` of them, in
    /// one pass over `me`'s relationships (each relationship's facts and
    /// exchanges are read once, whatever the number of periods and
    /// counterparts). Counterparts are in code order.
    pub fn overview(
        &self,
        me: Locality,
        periods: &[Period],
        counterpart_periods: usize,
        as_of: DateTime<Utc>,
    ) -> Overview {
        let k = counterpart_periods.min(periods.len());
        let mut own = vec![Counts::default(); periods.len()];
        let mut by: std::collections::BTreeMap<Locality, (Vec<Counts>, Vec<Counts>)> = Default::default();
        let close = self.closes_on(me, as_of);
        let mut closes: std::collections::BTreeMap<Locality, u32> = Default::default();
        let mut residents = Vec::new();
        for rel in self.relationships() {
            if rel.residence != me && rel.origin != me {
                continue;
            }
            let other = if rel.residence == me { rel.origin } else { rel.residence };
            let facts = self.rel_facts(rel, as_of);
            if rel.residence == me {
                residents.extend(crate::locality::Resident::of(me, &facts));
            }
            let exchanges = self.exchanges_of(rel, &facts, as_of);
            let mine = self.rel_flags(rel, me, &facts);
            Self::count_rel(&mut own, periods, &mine, me, &exchanges, close);
            if k > 0 && other != me {
                let (out, back) =
                    by.entry(other).or_insert_with(|| (vec![Counts::default(); k], vec![Counts::default(); k]));
                let other_close = *closes.entry(other).or_insert_with(|| self.closes_on(other, as_of));
                Self::count_rel(out, &periods[..k], &mine, me, &exchanges, close);
                let theirs = self.rel_flags(rel, other, &facts);
                Self::count_rel(back, &periods[..k], &theirs, other, &exchanges, other_close);
            }
        }
        let staffing = self.staffing_of(me, &residents, as_of);
        let figures = self.locality_figures(me, &residents, periods, close, as_of);
        let own = periods
            .iter()
            .zip(&own)
            .zip(figures)
            .map(|((p, c), f)| self.card_of(Scope::Locality { locality: me }, *p, as_of, c, Some((staffing, f))))
            .collect();
        let counterparts = by
            .into_iter()
            .map(|(other, (out, back))| {
                let card = |assessed, counterpart, counts: &[Counts]| -> Vec<Scorecard> {
                    periods[..k]
                        .iter()
                        .zip(counts)
                        .map(|(p, c)| self.card_of(Scope::Direction { assessed, counterpart }, *p, as_of, c, None))
                        .collect()
                };
                (other, card(me, other, &out), card(other, me, &back))
            })
            .collect();
        Overview { own, counterparts }
    }

    /// Both directions with every counterpart of `me` for one period:
    /// `(counterpart, me assessed toward it, it assessed toward me)`, by
    /// counterpart code. The same numbers as [`Projections::scorecard`] with
    /// `Scope::Direction` for each, in one pass (a city node has hundreds of
    /// origins).
    pub fn counterpart_scorecards(
        &self,
        me: Locality,
        period: Period,
        as_of: DateTime<Utc>,
    ) -> Vec<(Locality, Scorecard, Scorecard)> {
        let o = self.overview(me, &[period], 1, as_of);
        o.counterparts.into_iter().filter_map(|(l, mut out, mut back)| Some((l, out.pop()?, back.pop()?))).collect()
    }

    /// The scorecards of one scope for many periods, in one pass.
    pub fn scorecards(&self, scope: Scope, periods: &[Period], as_of: DateTime<Utc>) -> Vec<Scorecard> {
        let (a, b) = match scope {
            Scope::Locality { locality } => (locality, None),
            Scope::Direction { assessed, counterpart } => (assessed, Some(counterpart)),
            Scope::Pair { .. } => return periods.iter().map(|p| self.scorecard(scope, *p, as_of)).collect(),
        };
        let mut counts = vec![Counts::default(); periods.len()];
        let close = self.closes_on(a, as_of);
        let mut residents = Vec::new();
        for rel in self.relationships().filter(|r| {
            (r.residence == a && b.is_none_or(|b| r.origin == b))
                || (r.origin == a && b.is_none_or(|b| r.residence == b))
        }) {
            let facts = self.rel_facts(rel, as_of);
            if rel.residence == a && b.is_none() {
                residents.extend(crate::locality::Resident::of(a, &facts));
            }
            let exchanges = self.exchanges_of(rel, &facts, as_of);
            Self::count_rel(&mut counts, periods, &self.rel_flags(rel, a, &facts), a, &exchanges, close);
        }
        let mut figures = match scope {
            Scope::Locality { .. } => self.locality_figures(a, &residents, periods, close, as_of),
            _ => Vec::new(),
        }
        .into_iter();
        let staffing = self.staffing_of(a, &residents, as_of);
        periods
            .iter()
            .zip(&counts)
            .map(|(p, c)| self.card_of(scope, *p, as_of, c, figures.next().map(|f| (staffing, f))))
            .collect()
    }

    /// The day `l`'s statistics months close on, by its catalogue in force at `as_of`.
    pub fn closes_on(&self, l: Locality, as_of: DateTime<Utc>) -> u32 {
        self.catalogue(l, as_of, as_of).statistics.month_closes_on_day
    }

    /// The scorecard of a scope for a period, as of an instant.
    pub fn scorecard(&self, scope: Scope, period: Period, as_of: DateTime<Utc>) -> Scorecard {
        if let Scope::Locality { .. } = scope {
            // One pass over the relationships for the counts, the residents and staffing.
            if let Some(card) = self.scorecards(scope, &[period], as_of).pop() {
                return card;
            }
        }
        let c = match scope {
            Scope::Locality { locality } => self.counts(locality, None, period, as_of),
            Scope::Direction { assessed, counterpart } => self.counts(assessed, Some(counterpart), period, as_of),
            Scope::Pair { a, b } => {
                let mut c = self.counts(a, Some(b), period, as_of);
                c.add(&self.counts(b, Some(a), period, as_of));
                c
            }
        };
        self.card_of(scope, period, as_of, &c, None)
    }

    /// The scorecard of `scope` from its counts (`known`: the locality's
    /// staffing and figures if already known, else read here for a locality scope).
    fn card_of(
        &self,
        scope: Scope,
        period: Period,
        as_of: DateTime<Utc>,
        c: &Counts,
        known: Option<((u64, Option<u32>), crate::locality::Figures)>,
    ) -> Scorecard {
        let (from, to) = period.bounds_at(self.closes_on(scope.assessed(), as_of));
        let mut indicators = vec![
            indicator("policy_awareness", "policy awareness", "政策知晓率", c.informed, c.registered, 0.90),
            indicator("free_services", "free services at residence", "免费服务落实率", c.served, c.registered, 0.95),
            indicator(
                "pre_pregnancy",
                "free pre-pregnancy consultation",
                "孕前优生咨询率",
                c.pre_pregnancy,
                c.married_women,
                0.80,
            ),
            indicator(
                "pregnancy_check",
                "free pregnancy check",
                "孕期检查率",
                c.pregnancy_checked,
                c.known_pregnant,
                0.90,
            ),
            indicator(
                "contraceptive_access",
                "free contraceptive access",
                "免费避孕药具获得率",
                c.contraceptives,
                c.contracepting,
                0.90,
            ),
            indicator(
                "notification_rate",
                "notification rate",
                "通报率",
                c.notifications_sent,
                c.notifications_due,
                0.80,
            ),
            indicator("receipt_rate", "receipt rate", "接收率", c.acknowledged, c.received_notifications, 0.80),
            indicator("feedback_rate", "feedback rate", "反馈率", c.assists_answered, c.assists_received, 0.90),
            indicator("timeliness", "timeliness", "及时率", c.answered_on_time, c.assists_answered, 0.90),
        ];
        let mut activity = None;
        if let Scope::Locality { locality } = scope {
            let ((active, staff), f) = known.unwrap_or_else(|| {
                let close = self.closes_on(locality, as_of);
                let residents = self.residents(locality, as_of);
                let f = self.locality_figures(locality, &residents, &[period], close, as_of).pop().unwrap_or_default();
                (self.staffing_of(locality, &residents, as_of), f)
            });
            let value = staff.filter(|s| *s > 0).map(|s| active as f64 / f64::from(s));
            indicators.push(Indicator {
                id: "staffing",
                name_en: "migrants per service worker",
                name_zh: "人员配备(每名服务人员服务流动人口数)",
                numerator: active,
                denominator: u64::from(staff.unwrap_or(0)),
                value,
                target: 500.0,
                comparison: "at_most",
                pass: value.map(|v| v <= 500.0),
            });
            let rules = self.catalogue(locality, as_of, as_of).statistics;
            let a = &f.activity;
            indicators.extend([
                indicator(
                    "full_time_staffing",
                    "villages and communities with many migrants that have a full-time worker",
                    "流入人口较多的村(社区)配备专职人员率",
                    f.full_time_covered,
                    a.communities_needing_full_time,
                    1.0,
                ),
                indicator(
                    "outreach_coverage",
                    "townships with migrants reached by publicity",
                    "宣传活动覆盖率",
                    f.outreach_covered,
                    a.townships_with_migrants,
                    1.0,
                ),
                indicator(
                    "distribution_coverage",
                    "townships with migrants covered by a contraceptive distribution point",
                    "药具发放点覆盖率",
                    f.distribution_covered,
                    a.townships_with_migrants,
                    1.0,
                ),
                indicator(
                    "satisfaction",
                    "satisfaction of migrants with family-planning services",
                    "流动人口满意率",
                    f.satisfied,
                    f.respondents,
                    f64::from(rules.satisfaction_target_percent) / 100.0,
                ),
            ]);
            activity = Some(f.activity);
        }
        let population =
            Population { registered: c.registered, women_15_49: c.women_15_49, married_women_15_49: c.married_women };
        Scorecard { scope, period, from, to, as_of, indicators, population, activity }
    }
}
