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

/// The encoded `SignedEvent` in `bytes` as `audience` may receive it: every
/// other tier payload removed (it still verifies: only tier digests are
/// signed); borrowed when nothing was withheld. Bytes that do not decode may
/// hold anything, so only a role that sees every tier gets them (others get
/// nothing).
pub fn shown_to(bytes: &[u8], audience: Audience) -> std::borrow::Cow<'_, [u8]> {
    use std::borrow::Cow;
    use yipan_proto::Message;
    match yipan_proto::v1::SignedEvent::decode(bytes) {
        Ok(mut signed) => {
            let before = signed.tiers.len();
            filter_tiers(&mut signed, audience);
            if signed.tiers.len() == before {
                Cow::Borrowed(bytes)
            } else {
                Cow::Owned(signed.encode_to_vec())
            }
        }
        Err(_) if audience == Audience::Full => Cow::Borrowed(bytes),
        Err(_) => Cow::Borrowed(&[]),
    }
}

/// Keeps only the tier payloads `audience` may receive.
pub fn filter_tiers(signed: &mut yipan_proto::v1::SignedEvent, audience: Audience) {
    let allowed = audience.tiers();
    signed.tiers.retain(|t| allowed.iter().any(|a| *a as i32 == t.tier));
    signed.sealed.clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use yipan_proto::v1::{SignedEvent, Tier, TierPayload};
    use yipan_proto::Message;

    #[test]
    fn shown_to_strips_what_the_role_may_not_see_and_hides_undecodable_bytes() {
        let tier = |t: Tier| TierPayload { tier: t as i32, content: vec![1, 2, 3] };
        let signed = SignedEvent {
            envelope: vec![9; 8],
            signature: vec![7; 64],
            tiers: vec![tier(Tier::Identity), tier(Tier::Contact), tier(Tier::ReproductiveHealth)],
            sealed: vec![],
            batch: None,
        };
        let bytes = signed.encode_to_vec();
        let shown = SignedEvent::decode(shown_to(&bytes, Audience::Health).as_ref()).unwrap();
        let kept: Vec<i32> = shown.tiers.iter().map(|t| t.tier).collect();
        assert_eq!(kept, vec![Tier::Identity as i32, Tier::ReproductiveHealth as i32]);
        assert_eq!(shown.envelope, signed.envelope, "the signed part is untouched");
        assert!(matches!(shown_to(&bytes, Audience::Full), std::borrow::Cow::Borrowed(_)));
        let garbage = [0xff, 0xff, 0x0a];
        assert!(shown_to(&garbage, Audience::Statistics).is_empty());
        assert_eq!(shown_to(&garbage, Audience::Full).as_ref(), &garbage);
    }
}
