//! Flow monitoring (流动人口动态监测): arrivals and departures per residence
//! and origin per month, with an early warning when a month departs from its
//! trailing baseline.
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
        for rel in self.relationships().filter(|r| locality.is_none_or(|l| r.residence == l || r.origin == l)) {
            for e in self.rel_facts(rel, as_of) {
                let m = Period::month_of(date_of(e.fact.occurred));
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
        let last = Period::month_of(date_of(as_of));
        let mut warnings = Vec::new();
        for ((residence, origin), s) in &series {
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
        Flows { rows, warnings, rule: RULE }
    }
}
