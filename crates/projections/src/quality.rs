//! Data-quality flags: events that were accepted — refusing them would block
//! real work — but that a reader of the views must not take at face value.
//! Derived from the events alone, so both sides of a relationship see the
//! same flags as of any instant:
//!
//! | code | when |
//! | --- | --- |
//! | `time.defaulted` | the event gave no `occurred_at`; the recording time stands in for it (deadlines and cohorts use it) |
//! | `answer.orphan` | an answer or receipt names a request this node does not hold (still replicating, or wrong) |
//! | `time.before_arrival` | the residence recorded something about the person dated before it registered the arrival |
//! | `arrival.missing` | the residence recorded work for a person it never registered (no arrival registration held) |

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;
use yipan_core::{EventKind, Locality};

use crate::fact::Rel;
use crate::state::Projections;

/// One flagged event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QualityFlag {
    /// The event.
    pub event: Uuid,
    /// Its author and author sequence.
    pub author: Locality,
    /// Author sequence.
    pub seq: u64,
    /// Its kind.
    pub kind: EventKind,
    /// The relationship.
    pub rel: Rel,
    /// Stable code (`time.defaulted`, `answer.orphan`, `time.before_arrival`, `arrival.missing`).
    pub code: &'static str,
    /// What it means, in English.
    pub message: String,
    /// 中文说明.
    pub message_zh: String,
}

fn answered_request(kind: EventKind) -> Option<EventKind> {
    match kind {
        EventKind::NotificationReceived => Some(EventKind::NotificationSent),
        EventKind::CaseAssistAnswered => Some(EventKind::CaseAssistRequested),
        EventKind::FirstChildRegistrationConfirmed => Some(EventKind::FirstChildRegistrationRequested),
        _ => None,
    }
}

impl Projections {
    /// The flags of the events of `locality`'s relationships (or all), as of an instant.
    pub fn quality(&self, locality: Option<Locality>, as_of: DateTime<Utc>) -> Vec<QualityFlag> {
        let rels: Vec<Rel> = self
            .relationships()
            .filter(|rel| locality.is_none_or(|l| rel.origin == l || rel.residence == l))
            .copied()
            .collect();
        self.quality_of(&rels, as_of)
    }

    /// The flags of the events of these relationships, as of an instant.
    pub fn quality_of(&self, rels: &[Rel], as_of: DateTime<Utc>) -> Vec<QualityFlag> {
        let mut out = Vec::new();
        for rel in rels {
            let facts = self.rel_facts(rel, as_of);
            let arrival = facts
                .iter()
                .find(|e| e.kind == EventKind::ArrivalRegistered && e.fact.author == rel.residence)
                .map(|e| e.fact.occurred);
            for e in &facts {
                let f = e.fact;
                let mut flag = |code: &'static str, message: String, message_zh: String| {
                    out.push(QualityFlag {
                        event: f.id,
                        author: f.author,
                        seq: f.seq,
                        kind: e.kind,
                        rel: *rel,
                        code,
                        message,
                        message_zh,
                    })
                };
                if f.occurred == f.recorded {
                    flag(
                        "time.defaulted",
                        "no occurred_at was given: the recording time stands in for when it happened".into(),
                        "未填写发生时间：以录入时间代替".into(),
                    );
                }
                if let Some(request) = answered_request(e.kind) {
                    let held = f.causation.is_some_and(|c| {
                        facts.iter().any(|r| r.fact.id == c && r.kind == request && r.fact.author != f.author)
                    });
                    if !held {
                        flag(
                            "answer.orphan",
                            format!(
                                "answers a {} this node does not hold (still replicating, or the wrong request)",
                                request.name()
                            ),
                            format!("所答复的{}在本节点不存在（尚未同步到达，或引用有误）", request.zh()),
                        );
                    }
                }
                if arrival.is_none() && f.author == rel.residence && !matches!(e.kind, EventKind::DepartureRegistered) {
                    flag(
                        "arrival.missing",
                        "the residence recorded this for a person whose arrival it never registered".into(),
                        "现居住地未做流入登记即记录了此项工作".into(),
                    );
                }
                if let Some(a) = arrival {
                    if f.author == rel.residence && e.kind != EventKind::ArrivalRegistered && f.occurred < a {
                        flag(
                            "time.before_arrival",
                            format!(
                                "dated {}, before the residence registered the arrival ({})",
                                crate::calendar::date_of(f.occurred),
                                crate::calendar::date_of(a)
                            ),
                            format!(
                                "发生日期 {} 早于现居住地流入登记日期 {}",
                                crate::calendar::date_of(f.occurred),
                                crate::calendar::date_of(a)
                            ),
                        );
                    }
                }
            }
        }
        out
    }
}
