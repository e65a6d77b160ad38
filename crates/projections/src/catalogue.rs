//! The duty catalogue as data (DOMAIN.md "Duty checklists"): the origin's
//! four-one and the residence's six-one items, each defined by the event kinds
//! that fulfil it and its deadline rule, plus the exchange deadlines.
//! Versioned; a locality replaces its catalogue by publishing a
//! `DutyCatalogPublished` event whose document is this JSON, so answers about
//! the past use the catalogue in force then.

use chrono::{Days, NaiveDate};
use serde::{Deserialize, Serialize};
use yipan_core::EventKind;

use crate::calendar::WorkCalendar;
use crate::fact::Detail;

/// Most calendar days, and most working days, a catalogue may give any
/// deadline (ten years). A catalogue comes from any locality's
/// `DutyCatalogPublished` event and every node computes its deadlines, day by
/// day for working days: an unbounded count would stall projections.
pub const MAX_DUE_DAYS: u32 = 3660;

/// Which party an item binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// 户籍地.
    Origin,
    /// 现居住地.
    Residence,
}

/// An event that fulfils an item: its kind and, for kinds with a sub-type,
/// one of the allowed sub-types (enum names as in the proto, e.g.
/// `SERVICE_KIND_PERSON_INFORMED`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fulfilment {
    /// Event kind, PascalCase.
    pub kind: String,
    /// Allowed sub-types; empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub any_of: Vec<String>,
}

/// When an item falls due, counted from the relationship's anchor (the
/// arrival registration, or the first event if there is none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DueRule {
    /// Calendar days after the anchor date.
    #[serde(default)]
    pub days: u32,
    /// Then this many working days more.
    #[serde(default)]
    pub working_days: u32,
}

impl DueRule {
    /// The due date of an item whose relationship is anchored on `anchor`.
    pub fn due_date(&self, anchor: NaiveDate, calendar: &WorkCalendar) -> NaiveDate {
        calendar
            .add_working_days(anchor.checked_add_days(Days::new(self.days.into())).unwrap_or(anchor), self.working_days)
    }
}

/// One duty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DutyItem {
    /// Stable id, e.g. `residence.certificate_check`.
    pub id: String,
    /// Who must do it.
    pub side: Side,
    /// English name.
    pub name_en: String,
    /// Chinese name.
    pub name_zh: String,
    /// Events that fulfil it (authored by `side`).
    pub fulfilled_by: Vec<Fulfilment>,
    /// Its deadline.
    pub due: DueRule,
}

/// Deadlines of the exchange workflows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeRules {
    /// Notification → receipt, calendar days.
    pub receipt_days: u32,
    /// Case-assist answer when urgent (pregnant), calendar days.
    pub case_assist_urgent_days: u32,
    /// Case-assist answer otherwise, calendar days.
    pub case_assist_normal_days: u32,
    /// First-child registration: the origin confirms within, working days.
    pub first_child_answer_working_days: u32,
    /// First-child registration: the residence asks the origin within, working days of the application.
    #[serde(default = "default_first_child_request")]
    pub first_child_request_working_days: u32,
    /// First-child registration: the residence registers and tells the origin
    /// within, working days of the origin's confirmation.
    #[serde(default = "default_first_child_notify")]
    pub first_child_notify_working_days: u32,
    /// Certificate mismatch: the person re-issues within, calendar days.
    pub mismatch_reissue_days: u32,
    /// Certificate mismatch: the residence tells the origin within, working days.
    #[serde(default = "default_mismatch_notify")]
    pub mismatch_notify_working_days: u32,
}

fn default_first_child_request() -> u32 {
    7
}
fn default_first_child_notify() -> u32 {
    15
}
fn default_mismatch_notify() -> u32 {
    20
}

/// Statistics rules: when a month closes, and the locality-level targets the
/// seed sets in words only (its figures are this catalogue's defaults, which
/// a locality replaces by publishing its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatisticsRules {
    /// The day a statistics month closes (1–28, or 31 for calendar months).
    /// DOMAIN.md: the 20th.
    #[serde(default = "default_close_day")]
    pub month_closes_on_day: u32,
    /// A village or community with at least this many resident migrants must
    /// have at least one full-time worker (seed: 流入人口较多的村、社区应至少配备1名以上专职人员;
    /// "many" is not a figure there: the default is the 1:500 ratio itself).
    #[serde(default = "default_full_time_from")]
    pub full_time_worker_from_migrants: u32,
    /// Target of the satisfaction rate of the "migrants rate family planning"
    /// surveys, percent (seed: 不断提高满意率 — no figure; default 90).
    #[serde(default = "default_satisfaction")]
    pub satisfaction_target_percent: u32,
}

fn default_close_day() -> u32 {
    20
}
fn default_full_time_from() -> u32 {
    500
}
fn default_satisfaction() -> u32 {
    90
}

impl Default for StatisticsRules {
    fn default() -> Self {
        StatisticsRules {
            month_closes_on_day: default_close_day(),
            full_time_worker_from_migrants: default_full_time_from(),
            satisfaction_target_percent: default_satisfaction(),
        }
    }
}

/// A versioned catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    /// Version label, e.g. `default-2026.1`.
    pub version: String,
    /// Every duty item of both sides.
    pub items: Vec<DutyItem>,
    /// Exchange deadlines.
    pub exchanges: ExchangeRules,
    /// Statistics period and locality-level targets (absent in a document: the defaults).
    #[serde(default)]
    pub statistics: StatisticsRules,
}

fn item(id: &str, side: Side, en: &str, zh: &str, by: &[(&str, &[&str])], days: u32, working_days: u32) -> DutyItem {
    DutyItem {
        id: id.into(),
        side,
        name_en: en.into(),
        name_zh: zh.into(),
        fulfilled_by: by
            .iter()
            .map(|(k, any)| Fulfilment { kind: (*k).into(), any_of: any.iter().map(|s| (*s).into()).collect() })
            .collect(),
        due: DueRule { days, working_days },
    }
}

impl Default for Catalogue {
    /// The default of DOMAIN.md.
    fn default() -> Self {
        use Side::*;
        Catalogue {
            version: "default-2026.1".into(),
            items: vec![
                item(
                    "origin.certificate",
                    Origin,
                    "issue the marriage-and-childbearing certificate",
                    "出具婚育证明",
                    &[("CertificateIssued", &[])],
                    30,
                    0,
                ),
                item(
                    "origin.pledge",
                    Origin,
                    "sign the family-planning pledge",
                    "签订承诺书",
                    &[("AgreementSigned", &["AGREEMENT_KIND_PLEDGE"])],
                    30,
                    0,
                ),
                item(
                    "origin.contraception",
                    Origin,
                    "record a contraceptive or service measure",
                    "落实避孕节育措施",
                    &[("ContraceptionStatusRecorded", &[])],
                    30,
                    0,
                ),
                item(
                    "origin.contact",
                    Origin,
                    "register a contact channel and notify the residence",
                    "登记联系方式并通报",
                    &[("NotificationSent", &[])],
                    30,
                    0,
                ),
                item(
                    "residence.registration",
                    Residence,
                    "register the arrival and open a file",
                    "流入登记建档",
                    &[("ArrivalRegistered", &[])],
                    0,
                    0,
                ),
                item(
                    "residence.certificate_check",
                    Residence,
                    "verify the certificate",
                    "查验婚育证明",
                    &[("CertificateVerified", &[]), ("CertificateMismatchFound", &[])],
                    30,
                    5,
                ),
                item(
                    "residence.service_agreement",
                    Residence,
                    "sign the service agreement",
                    "签订服务协议",
                    &[("AgreementSigned", &["AGREEMENT_KIND_SERVICE_AGREEMENT"])],
                    30,
                    0,
                ),
                item(
                    "residence.informed",
                    Residence,
                    "inform of free services, rewards and duties",
                    "告知/宣传",
                    &[("ServiceRendered", &["SERVICE_KIND_PERSON_INFORMED"])],
                    30,
                    0,
                ),
                item(
                    "residence.free_services",
                    Residence,
                    "deliver the free basic services",
                    "免费技术服务",
                    &[(
                        "ServiceRendered",
                        &[
                            "SERVICE_KIND_CONTRACEPTIVES",
                            "SERVICE_KIND_PRE_PREGNANCY_CHECK",
                            "SERVICE_KIND_PREGNANCY_CHECK",
                            "SERVICE_KIND_REPRODUCTIVE_HEALTH_CHECK",
                        ],
                    )],
                    90,
                    0,
                ),
                item(
                    "residence.notify_origin",
                    Residence,
                    "notify the origin",
                    "信息通报",
                    &[("NotificationSent", &[])],
                    30,
                    0,
                ),
            ],
            exchanges: ExchangeRules {
                receipt_days: 30,
                case_assist_urgent_days: 15,
                case_assist_normal_days: 30,
                first_child_answer_working_days: 15,
                first_child_request_working_days: 7,
                first_child_notify_working_days: 15,
                mismatch_reissue_days: 90,
                mismatch_notify_working_days: 20,
            },
            statistics: StatisticsRules::default(),
        }
    }
}

impl Catalogue {
    /// Parses and checks a catalogue document; the error names what is wrong.
    pub fn from_json(text: &str) -> Result<Catalogue, String> {
        let c: Catalogue = serde_json::from_str(text).map_err(|e| format!("catalogue: {e}"))?;
        c.check()?;
        Ok(c)
    }

    /// Checks that every item names known kinds and unique ids.
    pub fn check(&self) -> Result<(), String> {
        if self.version.trim().is_empty() {
            return Err("catalogue: version is empty".into());
        }
        let x = &self.exchanges;
        for (name, days) in [
            ("receipt_days", x.receipt_days),
            ("case_assist_urgent_days", x.case_assist_urgent_days),
            ("case_assist_normal_days", x.case_assist_normal_days),
            ("first_child_answer_working_days", x.first_child_answer_working_days),
            ("first_child_request_working_days", x.first_child_request_working_days),
            ("mismatch_reissue_days", x.mismatch_reissue_days),
            ("first_child_notify_working_days", x.first_child_notify_working_days),
            ("mismatch_notify_working_days", x.mismatch_notify_working_days),
        ] {
            if days > MAX_DUE_DAYS {
                return Err(format!("catalogue: exchanges.{name} is over {MAX_DUE_DAYS} days"));
            }
        }
        let st = &self.statistics;
        if !crate::period::valid_close_day(st.month_closes_on_day) {
            return Err(format!(
                "catalogue: statistics.month_closes_on_day is {}; give a day 1-28 (every month has it) or 31 for calendar months",
                st.month_closes_on_day
            ));
        }
        if st.satisfaction_target_percent > 100 {
            return Err("catalogue: statistics.satisfaction_target_percent is over 100".into());
        }
        let mut ids = std::collections::BTreeSet::new();
        for it in &self.items {
            if !ids.insert(it.id.as_str()) {
                return Err(format!("catalogue: item id `{}` is used twice", it.id));
            }
            if it.due.days > MAX_DUE_DAYS || it.due.working_days > MAX_DUE_DAYS {
                return Err(format!("catalogue: item `{}`: a deadline is over {MAX_DUE_DAYS} days", it.id));
            }
            if it.fulfilled_by.is_empty() {
                return Err(format!("catalogue: item `{}` has no fulfilling event", it.id));
            }
            for f in &it.fulfilled_by {
                if EventKind::parse(&f.kind).is_none() {
                    return Err(format!("catalogue: item `{}`: unknown event kind `{}`", it.id, f.kind));
                }
            }
        }
        Ok(())
    }

    /// Whether an event of `kind` with `detail` (authored by the item's side) fulfils `item`.
    pub fn fulfils(item: &DutyItem, kind: EventKind, detail: &Detail) -> bool {
        item.fulfilled_by.iter().any(|f| {
            EventKind::parse(&f.kind) == Some(kind)
                && (f.any_of.is_empty() || detail.sub_type().is_some_and(|s| f.any_of.iter().any(|a| a == s)))
        })
    }

    /// The default catalogue, built once.
    pub fn default_shared() -> std::sync::Arc<Catalogue> {
        static DEFAULT: std::sync::LazyLock<std::sync::Arc<Catalogue>> =
            std::sync::LazyLock::new(|| std::sync::Arc::new(Catalogue::default()));
        DEFAULT.clone()
    }
}

impl Detail {
    /// The sub-type name of a detail, as catalogue items name it.
    pub fn sub_type(&self) -> Option<&'static str> {
        match self {
            Detail::Agreement(a) => Some(a.as_str_name()),
            Detail::Service(s) => Some(s.as_str_name()),
            Detail::Notification(t) => Some(t.as_str_name()),
            Detail::CaseAssist(u) => Some(u.as_str_name()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_round_trips_and_checks() {
        let c = Catalogue::default();
        c.check().unwrap();
        assert_eq!(c.items.iter().filter(|i| i.side == Side::Origin).count(), 4);
        assert_eq!(c.items.iter().filter(|i| i.side == Side::Residence).count(), 6);
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(Catalogue::from_json(&text).unwrap(), c);
        // A published catalogue is applied by every node: a huge working-day
        // count used to stall projections (a hang of the catalogue_json fuzz target).
        let slow = text.replace("\"working_days\":5", "\"working_days\":4000000000");
        assert_ne!(slow, text);
        assert_eq!(
            Catalogue::from_json(&slow).unwrap_err(),
            "catalogue: item `residence.certificate_check`: a deadline is over 3660 days"
        );
        let slow = text.replace("\"receipt_days\":30", "\"receipt_days\":4000000000");
        assert!(Catalogue::from_json(&slow).unwrap_err().contains("exchanges.receipt_days"));
        let bad = text.replace("\"month_closes_on_day\":20", "\"month_closes_on_day\":30");
        assert!(Catalogue::from_json(&bad).unwrap_err().contains("statistics.month_closes_on_day is 30"));
        // A document from before the statistics rules gets their defaults.
        let old: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut old = old.as_object().unwrap().clone();
        old.remove("statistics");
        let old = Catalogue::from_json(&serde_json::Value::Object(old).to_string()).unwrap();
        assert_eq!(old.statistics.month_closes_on_day, 20);
        let bad = text.replace("CertificateVerified", "CertificateChecked");
        assert_eq!(
            Catalogue::from_json(&bad).unwrap_err(),
            "catalogue: item `residence.certificate_check`: unknown event kind `CertificateChecked`"
        );
    }
}
