//! Locality-level figures of a scorecard: the seed's duties that are about a
//! place, not a person — publicity reaching every township where migrants
//! live, contraceptive distribution points covering them, the satisfaction
//! surveys of the "migrants rate family planning" activity, and full-time
//! workers in every village or community with many migrants.
//!
//! Where migrants live comes from the residence's arrival registrations
//! (`township`, `community`) of relationships active at the period's end (or
//! at the view's instant, if earlier); what was done comes from the
//! locality's own locality-level events of the period. Staffing units are
//! judged as of the view's instant, like the staffing ratio.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;
use yipan_core::{EventKind, Locality};

use crate::calendar::{date_of, end_of};
use crate::fact::Detail;
use crate::period::Period;
use crate::state::{Eff, Projections};

/// Counts behind the locality-level indicators, and the activity figures a
/// county reports (no target of their own).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Activity {
    /// Outreach activities held in the period (campaigns, lectures, materials, posters, consultations).
    pub outreach_activities: u64,
    /// People reached by them.
    pub outreach_attendance: u64,
    /// Items handed out at them.
    pub outreach_materials: u64,
    /// Distribution points active at the period's end.
    pub distribution_points: u64,
    /// Contraceptive units handed out by the points in the period.
    pub units_distributed: u64,
    /// Satisfaction survey rounds in the period.
    pub survey_rounds: u64,
    /// Townships where migrants live (at the period's end).
    pub townships_with_migrants: u64,
    /// Villages or communities with at least `full_time_worker_from_migrants` migrants (as of the view).
    pub communities_needing_full_time: u64,
}

/// The locality-level indicator counts of one period.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Figures {
    /// Townships with migrants that had an outreach activity in the period.
    pub outreach_covered: u64,
    /// Townships with migrants that had an active distribution point at the period's end.
    pub distribution_covered: u64,
    /// Survey respondents satisfied.
    pub satisfied: u64,
    /// All survey respondents.
    pub respondents: u64,
    /// Communities needing a full-time worker that have one.
    pub full_time_covered: u64,
    /// The figures shown beside the indicators.
    pub activity: Activity,
}

/// One relationship of the locality as a residence: when it began and
/// ended, and where the person lives.
pub(crate) struct Resident {
    arrived: DateTime<Utc>,
    left: Option<DateTime<Utc>>,
    township: u32,
    community: u64,
}

impl Resident {
    /// Whether the person lived there at `at`.
    pub(crate) fn here(&self, at: DateTime<Utc>) -> bool {
        self.arrived <= at && self.left.is_none_or(|d| d > at)
    }

    /// The resident of `l` a relationship's facts (as of an instant, in
    /// occurrence order) describe, if `l` registered the arrival: its latest
    /// arrival, ended by its own departure after it (an origin's "gone out"
    /// record is about leaving the origin, not `l`).
    pub(crate) fn of(l: Locality, facts: &[Eff<'_>]) -> Option<Resident> {
        let arrival = facts.iter().rev().find(|e| e.kind == EventKind::ArrivalRegistered && e.fact.author == l)?;
        let (township, community) = match arrival.detail {
            Detail::Arrival(p, _) => (p.township, p.community()),
            _ => (0, 0),
        };
        let left = facts
            .iter()
            .find(|e| {
                e.kind == EventKind::DepartureRegistered
                    && e.fact.author == l
                    && (e.fact.occurred, e.fact.id) > (arrival.fact.occurred, arrival.fact.id)
            })
            .map(|e| e.fact.occurred);
        Some(Resident { arrived: arrival.fact.occurred, left, township, community })
    }
}

impl Projections {
    /// Every resident of `l` as of an instant (one pass over its relationships).
    pub(crate) fn residents(&self, l: Locality, as_of: DateTime<Utc>) -> Vec<Resident> {
        self.relationships()
            .filter(|r| r.residence == l)
            .filter_map(|rel| Resident::of(l, &self.rel_facts(rel, as_of)))
            .collect()
    }

    /// The staffing ratio's counts: residents of `l` as of `as_of`, and the latest roster's workers.
    pub(crate) fn staffing_of(&self, l: Locality, residents: &[Resident], as_of: DateTime<Utc>) -> (u64, Option<u32>) {
        let active = residents.iter().filter(|r| r.here(as_of)).count() as u64;
        let staff = self
            .locality_facts(l, as_of)
            .iter()
            .rev()
            .filter(|e| e.kind == EventKind::StaffRosterUpdated && e.fact.occurred <= as_of)
            .find_map(|e| match e.detail {
                Detail::Staff(r) => Some(r.0),
                _ => None,
            });
        (active, staff)
    }

    /// The locality-level figures of `l` for each period (months closing on
    /// `close`), as of an instant, from its residents.
    pub(crate) fn locality_figures(
        &self,
        l: Locality,
        residents: &[Resident],
        periods: &[Period],
        close: u32,
        as_of: DateTime<Utc>,
    ) -> Vec<Figures> {
        let facts = self.locality_facts(l, as_of);
        let rules = self.catalogue(l, as_of, as_of).statistics;
        // Staffing units as of the view: migrants per community against the latest roster.
        let mut per_community: HashMap<u64, u64> = HashMap::new();
        for r in residents.iter().filter(|r| r.community != 0 && r.here(as_of)) {
            *per_community.entry(r.community).or_default() += 1;
        }
        let roster: HashMap<u64, u32> = facts
            .iter()
            .rev()
            .filter(|e| e.kind == EventKind::StaffRosterUpdated && e.fact.occurred <= as_of)
            .find_map(|e| match e.detail {
                Detail::Staff(r) => Some(r.1.iter().map(|u| (u.0, u.1)).collect()),
                _ => None,
            })
            .unwrap_or_default();
        let needing: Vec<u64> = per_community
            .iter()
            .filter(|(_, n)| **n >= u64::from(rules.full_time_worker_from_migrants.max(1)))
            .map(|(c, _)| *c)
            .collect();
        let full_time_covered = needing.iter().filter(|c| roster.get(c).is_some_and(|f| *f > 0)).count() as u64;

        periods
            .iter()
            .map(|p| {
                let (first, last) = p.bounds_at(close);
                let at = end_of(last).min(as_of);
                // The facts are as of `as_of` already: only the day matters here.
                let in_period = |t: DateTime<Utc>| (first..=last).contains(&date_of(t));
                let townships: BTreeSet<u32> =
                    residents.iter().filter(|r| r.township != 0 && r.here(at)).map(|r| r.township).collect();
                let mut f = Figures { full_time_covered, ..Figures::default() };
                let a = &mut f.activity;
                a.townships_with_migrants = townships.len() as u64;
                a.communities_needing_full_time = needing.len() as u64;
                let mut reached = BTreeSet::new();
                let mut points: BTreeMap<&str, (u32, bool)> = BTreeMap::new();
                for e in &facts {
                    match e.detail {
                        Detail::Outreach(t, attendance, materials)
                            if e.kind == EventKind::OutreachActivityHeld && in_period(e.fact.occurred) =>
                        {
                            a.outreach_activities += 1;
                            a.outreach_attendance += u64::from(*attendance);
                            a.outreach_materials += u64::from(*materials);
                            reached.insert(*t);
                        }
                        Detail::Distribution(d)
                            if e.kind == EventKind::DistributionPointReported && e.fact.occurred <= at =>
                        {
                            let (point, t, active, units) = &**d;
                            // Facts are in occurrence order: the last report of a point is its state.
                            points.insert(point, (*t, *active));
                            if in_period(e.fact.occurred) {
                                a.units_distributed += u64::from(*units);
                            }
                        }
                        Detail::Survey(respondents, satisfied)
                            if e.kind == EventKind::SatisfactionSurveyed && in_period(e.fact.occurred) =>
                        {
                            a.survey_rounds += 1;
                            f.respondents += u64::from(*respondents);
                            f.satisfied += u64::from(*satisfied);
                        }
                        _ => {}
                    }
                }
                let served: BTreeSet<u32> = points.values().filter(|(_, on)| *on).map(|(t, _)| *t).collect();
                a.distribution_points = points.values().filter(|(_, on)| *on).count() as u64;
                f.outreach_covered = townships.intersection(&reached).count() as u64;
                f.distribution_covered = townships.intersection(&served).count() as u64;
                f
            })
            .collect()
    }
}
