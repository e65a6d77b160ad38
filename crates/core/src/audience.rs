//! Who a downstream subscriber is, and which personal tiers it may receive
//! (DOMAIN.md "Privacy": only the minimum a task needs, to those whose duty
//! requires it). The node strips every other tier before sending; the event
//! still verifies, because only tier digests are signed (invariant 9).

use std::fmt;
use std::str::FromStr;

use yipan_proto::v1::Tier;

/// A downstream role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// Statistics offices: no personal tier at all.
    Statistics,
    /// Health and family-planning services: identity and reproductive health.
    Health,
    /// Public-security residence registration: identity and contact.
    PublicSecurity,
    /// A counterpart locality's own systems: every tier the event carries.
    Full,
}

impl Audience {
    /// Every role.
    pub const ALL: [Audience; 4] = [Audience::Statistics, Audience::Health, Audience::PublicSecurity, Audience::Full];

    /// The tiers this role may receive.
    pub fn tiers(self) -> &'static [Tier] {
        match self {
            Audience::Statistics => &[],
            Audience::Health => &[Tier::Identity, Tier::ReproductiveHealth],
            Audience::PublicSecurity => &[Tier::Identity, Tier::Contact],
            Audience::Full => &[Tier::Identity, Tier::Contact, Tier::ReproductiveHealth],
        }
    }

    /// The subject token.
    pub fn name(self) -> &'static str {
        match self {
            Audience::Statistics => "statistics",
            Audience::Health => "health",
            Audience::PublicSecurity => "public_security",
            Audience::Full => "full",
        }
    }
}

impl fmt::Display for Audience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Audience {
    type Err = String;
    fn from_str(s: &str) -> Result<Audience, String> {
        Audience::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| format!("`{}` is not a role (statistics, health, public_security, full)", crate::clip(s)))
    }
}

/// Keeps only the tier payloads `audience` may receive.
pub fn filter_tiers(signed: &mut yipan_proto::v1::SignedEvent, audience: Audience) {
    let allowed = audience.tiers();
    signed.tiers.retain(|t| allowed.iter().any(|a| *a as i32 == t.tier));
}
