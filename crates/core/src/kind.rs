//! The event catalogue: every kind of DOMAIN.md with its Chinese name, which
//! side of the relationship may author it, whether it must point at an
//! earlier event, and which personal tiers it may carry (a certificate check
//! carries no pregnancy data: DOMAIN.md "Privacy").

use yipan_proto::v1::{self, event_body::Kind as Body, Tier};

/// Which party of an origin/residence relationship may author a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Only the origin (户籍地).
    Origin,
    /// Only the residence (现居住地).
    Residence,
    /// Either party.
    Either,
    /// A locality-level event with no person and no relationship.
    Locality,
}

macro_rules! catalogue {
    ($( $variant:ident => $snake:literal, $zh:literal, $role:ident, causation: $cause:literal, tiers: [$($tier:ident),*];)*) => {
        /// The kind of an event: the variant of its body.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventKind { $(
            #[doc = $zh]
            $variant,
        )* }

        impl EventKind {
            /// Every kind, in schema order.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant),*];

            /// PascalCase name, e.g. `ArrivalRegistered`.
            pub fn name(self) -> &'static str {
                match self { $(EventKind::$variant => stringify!($variant)),* }
            }

            /// snake_case name, e.g. `arrival_registered` (NATS subjects, metrics).
            pub fn snake(self) -> &'static str {
                match self { $(EventKind::$variant => $snake),* }
            }

            /// Chinese name as used by the service desks.
            pub fn zh(self) -> &'static str {
                match self { $(EventKind::$variant => $zh),* }
            }

            /// Who may author it.
            pub fn role(self) -> Role {
                match self { $(EventKind::$variant => Role::$role),* }
            }

            /// Whether it must name the event it answers or corrects.
            pub fn needs_causation(self) -> bool {
                match self { $(EventKind::$variant => $cause),* }
            }

            /// The personal tiers it may carry.
            pub fn tiers(self) -> &'static [Tier] {
                match self { $(EventKind::$variant => &[$(Tier::$tier),*]),* }
            }

            /// The kind of a body.
            pub fn of(body: &Body) -> EventKind {
                match body { $(Body::$variant(_) => EventKind::$variant),* }
            }

            /// Builds a body of this kind from its JSON (proto3 JSON mapping).
            /// The error names the path inside the body.
            /// Neither part of the error repeats a long input value.
            pub fn body_from_json(self, value: serde_json::Value) -> Result<Body, (String, String)> {
                fn de<T: serde::de::DeserializeOwned>(v: &serde_json::Value) -> Result<T, (String, String)> {
                    use crate::json::clip_echoes;
                    serde_path_to_error::deserialize(v)
                        .map_err(|e| (clip_echoes(&e.path().to_string(), v), clip_echoes(&e.inner().to_string(), v)))
                }
                Ok(match self { $(EventKind::$variant => Body::$variant(de::<v1::$variant>(&value)?.into())),* })
            }

            /// The JSON of a body (proto3 JSON mapping).
            pub fn body_to_json(body: &Body) -> serde_json::Value {
                let v = match body { $(Body::$variant(m) => serde_json::to_value(m)),* };
                v.unwrap_or(serde_json::Value::Null)
            }
        }
    };
}

catalogue! {
    ArrivalRegistered => "arrival_registered", "流入登记建档", Residence, causation: false, tiers: [Identity, Contact];
    DepartureRegistered => "departure_registered", "流出登记", Either, causation: false, tiers: [];
    ResidencePermitIssued => "residence_permit_issued", "居住证办理", Residence, causation: false, tiers: [Identity];
    HousingRegistered => "housing_registered", "出租房屋登记", Residence, causation: false, tiers: [Contact];
    EmployerRegistered => "employer_registered", "用工单位登记", Residence, causation: false, tiers: [Contact];
    CertificateIssued => "certificate_issued", "出具婚育证明", Origin, causation: false, tiers: [Identity];
    CertificateSubmitted => "certificate_submitted", "交验婚育证明", Residence, causation: false, tiers: [Identity];
    CertificateVerified => "certificate_verified", "查验婚育证明", Residence, causation: false, tiers: [Identity];
    CertificateMismatchFound => "certificate_mismatch_found", "婚育证明不符", Residence, causation: false, tiers: [Identity];
    AgreementSigned => "agreement_signed", "签订承诺书/服务协议", Either, causation: false, tiers: [];
    ContraceptionStatusRecorded => "contraception_status_recorded", "落实避孕节育措施", Either, causation: false, tiers: [ReproductiveHealth];
    ServiceRendered => "service_rendered", "提供服务", Either, causation: false, tiers: [ReproductiveHealth];
    BenefitGranted => "benefit_granted", "落实奖励/假期", Either, causation: false, tiers: [Identity];
    NotificationSent => "notification_sent", "信息通报", Either, causation: false, tiers: [Contact];
    NotificationReceived => "notification_received", "通报接收", Either, causation: true, tiers: [];
    CaseAssistRequested => "case_assist_requested", "协查", Either, causation: false, tiers: [Identity, Contact, ReproductiveHealth];
    CaseAssistAnswered => "case_assist_answered", "协查反馈", Either, causation: true, tiers: [Identity, Contact, ReproductiveHealth];
    FirstChildRegistrationRequested => "first_child_registration_requested", "一孩登记协查", Residence, causation: false, tiers: [Identity, ReproductiveHealth];
    FirstChildRegistrationConfirmed => "first_child_registration_confirmed", "一孩登记确认", Origin, causation: true, tiers: [Identity];
    ComplaintFiled => "complaint_filed", "投诉受理", Either, causation: false, tiers: [Contact];
    ComplaintResolved => "complaint_resolved", "投诉办结", Either, causation: true, tiers: [];
    StaffRosterUpdated => "staff_roster_updated", "服务人员配备", Locality, causation: false, tiers: [];
    EventCorrected => "event_corrected", "更正", Either, causation: true, tiers: [Identity, Contact, ReproductiveHealth];
    EventRetracted => "event_retracted", "撤销", Either, causation: true, tiers: [];
    DutyCatalogPublished => "duty_catalog_published", "职责清单发布", Locality, causation: false, tiers: [];
    KeyRotated => "key_rotated", "签名密钥轮换", Locality, causation: false, tiers: [];
    ErasureRequested => "erasure_requested", "删除个人信息", Either, causation: false, tiers: [];
    ErasureConfirmed => "erasure_confirmed", "删除回执", Either, causation: true, tiers: [];
    OutreachActivityHeld => "outreach_activity_held", "宣传活动/讲座", Locality, causation: false, tiers: [];
    DistributionPointReported => "distribution_point_reported", "药具发放点", Locality, causation: false, tiers: [];
    SatisfactionSurveyed => "satisfaction_surveyed", "评计生满意度调查", Locality, causation: false, tiers: [];
}

impl EventKind {
    /// Looks a kind up by its PascalCase or snake_case name, ignoring case.
    pub fn parse(name: &str) -> Option<EventKind> {
        let folded: String = name.chars().filter(|c| *c != '_' && *c != '-').collect::<String>().to_ascii_lowercase();
        EventKind::ALL.iter().copied().find(|k| k.name().to_ascii_lowercase() == folded)
    }

    /// Comma-separated PascalCase names of every kind (for error messages).
    pub fn known_list() -> String {
        EventKind::ALL.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// JSON and display name of a tier.
pub fn tier_name(tier: Tier) -> &'static str {
    match tier {
        Tier::Unspecified => "unspecified",
        Tier::Identity => "identity",
        Tier::Contact => "contact",
        Tier::ReproductiveHealth => "health",
    }
}

/// A tier by its name (`identity`, `contact`, `health`).
pub fn tier_from_name(name: &str) -> Option<Tier> {
    [Tier::Identity, Tier::Contact, Tier::ReproductiveHealth].into_iter().find(|t| tier_name(*t) == name)
}

impl serde::Serialize for EventKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.name()), Some(*k));
            assert_eq!(EventKind::parse(k.snake()), Some(*k));
        }
        assert_eq!(EventKind::parse("NoSuchThing"), None);
        assert_eq!(EventKind::ALL.len(), 31);
    }

    #[test]
    fn certificate_checks_carry_no_health_data() {
        assert!(!EventKind::CertificateVerified.tiers().contains(&Tier::ReproductiveHealth));
        assert!(EventKind::ServiceRendered.tiers().contains(&Tier::ReproductiveHealth));
    }
}
