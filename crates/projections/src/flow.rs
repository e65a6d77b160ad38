//! Flow monitoring (流动人口动态监测): arrivals and departures per residence
//! and origin per statistics month (the residence's close day), with an early
//! warning when a month departs from its trailing baseline.
//!
//! Rule: for each residence (all origins together) and each residence–origin
//! pair, month M is compared with the mean of the three months before it.
//! A warning is raised when `max(count, mean) >= 10` and
//! `|count - mean| > max(0.5 * mean, 3 * sqrt(mean))` — a change of more than
//! half the baseline that is also beyond Poisson noise.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;
use yipan_core::{EventKind, Locality};

use crate::calendar::date_of;
use crate::period::Period;
use crate::state::Projections;

/// Arrivals and departures of one residence–origin pair in one month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowRow {
    /// Month.
    pub period: Period,
    /// Residence.
    pub residence: Locality,
    /// Origin.
    pub origin: Locality,
    /// Arrival registrations.
    pub arrivals: u64,
    /// Departure registrations.
    pub departures: u64,
}

/// An early warning.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowWarning {
    /// Month.
    pub period: Period,
    /// Residence.
    pub residence: Locality,
    /// Origin (None: all origins together).
    pub origin: Option<Locality>,
    /// Arrivals that month.
    pub arrivals: u64,
    /// Mean of the three months before.
    pub baseline: f64,
    /// `surge` or `drop`.
    pub direction: &'static str,
}

/// Flows and warnings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flows {
    /// Rows by month, residence, origin.
    pub rows: Vec<FlowRow>,
    /// Warnings.
    pub warnings: Vec<FlowWarning>,
    /// The warning rule, in words.
    pub rule: &'static str,
    /// Migrants working in a third locality (户籍地、居住地、经营地三方互动): by
    /// workplace, residence and origin, those whose latest employer
    /// registration names the workplace and who have not departed, as of the instant.
    pub workplaces: Vec<WorkplaceRow>,
}

/// Migrants living at `residence`, registered at `origin`, working at `workplace`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkplaceRow {
    /// Where they work (经营地).
    pub workplace: Locality,
    /// Where they live.
    pub residence: Locality,
    /// Where they are registered.
    pub origin: Locality,
    /// How many.
    pub working: u64,
}

/// The warning rule in words.
pub const RULE: &str = "month vs mean of the 3 months before: warn if max(count, mean) >= 10 and |count - mean| > max(0.5 * mean, 3 * sqrt(mean))";

fn warn(count: u64, baseline: f64) -> Option<&'static str> {
    let c = count as f64;
    let big = c.max(baseline) >= 10.0;
    let beyond = (c - baseline).abs() > (0.5 * baseline).max(3.0 * baseline.sqrt());
    (big && beyond).then_some(if c > baseline { "surge" } else { "drop" })
}

impl Projections {
    /// Monthly flows (of `locality` as residence or origin, or all) and warnings, as of an instant.
    pub fn flows(&self, locality: Option<Locality>, as_of: DateTime<Utc>) -> Flows {
        let mut counts: BTreeMap<(Period, Locality, Locality), (u64, u64)> = BTreeMap::new();
        let mut closes: BTreeMap<Locality, u32> = BTreeMap::new();
        let mut working: BTreeMap<(Locality, Locality, Locality), u64> = BTreeMap::new();
        for rel in self.relationships() {
            let facts = self.rel_facts(rel, as_of);
            // Gone from the residence (its own departure record); the residence's latest employer registration.
            let by_residence = |e: &&crate::state::Eff<'_>| e.fact.author == rel.residence;
            let departed = facts.iter().filter(by_residence).any(|e| e.kind == EventKind::DepartureRegistered);
            let workplace =
                facts.iter().rev().filter(by_residence).find(|e| e.kind == EventKind::EmployerRegistered).and_then(
                    |e| match e.detail {
                        crate::fact::Detail::Workplace(w) => Some(*w),
                        _ => None,
                    },
                );
            if let (Some(w), false) = (workplace, departed) {
                if locality.is_none_or(|l| l == w || l == rel.residence || l == rel.origin) {
                    *working.entry((w, rel.residence, rel.origin)).or_default() += 1;
                }
            }
            if locality.is_some_and(|l| rel.residence != l && rel.origin != l) {
                continue;
            }
            // Months are the residence's statistics months.
            let close = *closes.entry(rel.residence).or_insert_with(|| self.closes_on(rel.residence, as_of));
            for e in facts {
                let m = Period::month_of_at(date_of(e.fact.occurred), close);
                match e.kind {
                    EventKind::ArrivalRegistered => counts.entry((m, rel.residence, rel.origin)).or_default().0 += 1,
                    EventKind::DepartureRegistered => counts.entry((m, rel.residence, rel.origin)).or_default().1 += 1,
                    _ => {}
                }
            }
        }
        let rows: Vec<FlowRow> = counts
            .iter()
            .map(|((period, residence, origin), (a, d))| FlowRow {
                period: *period,
                residence: *residence,
                origin: *origin,
                arrivals: *a,
                departures: *d,
            })
            .collect();
        // Series of arrivals: per residence (origin None) and per pair.
        let mut series: BTreeMap<(Locality, Option<Locality>), BTreeMap<Period, u64>> = BTreeMap::new();
        for r in &rows {
            *series.entry((r.residence, None)).or_default().entry(r.period).or_default() += r.arrivals;
            *series.entry((r.residence, Some(r.origin))).or_default().entry(r.period).or_default() += r.arrivals;
        }
        let mut warnings = Vec::new();
        for ((residence, origin), s) in &series {
            let last = Period::month_of_at(date_of(as_of), closes.get(residence).copied().unwrap_or(31));
            let Some(first) = s.keys().next().copied() else { continue };
            let months: BTreeSet<Period> = {
                let mut m = last;
                let mut all = BTreeSet::new();
                while m >= first {
                    all.insert(m);
                    m = m.prev_month();
                }
                all
            };
            for m in months {
                let back = [m.prev_month(), m.prev_month().prev_month(), m.prev_month().prev_month().prev_month()];
                if back[2] < first {
                    continue;
                }
                let baseline = back.iter().map(|p| s.get(p).copied().unwrap_or(0) as f64).sum::<f64>() / 3.0;
                let count = s.get(&m).copied().unwrap_or(0);
                if let Some(direction) = warn(count, baseline) {
                    warnings.push(FlowWarning {
                        period: m,
                        residence: *residence,
                        origin: *origin,
                        arrivals: count,
                        baseline,
                        direction,
                    });
                }
            }
        }
        let workplaces = working
            .into_iter()
            .map(|((workplace, residence, origin), working)| WorkplaceRow { workplace, residence, origin, working })
            .collect();
        Flows { rows, warnings, rule: RULE, workplaces }
    }
}
