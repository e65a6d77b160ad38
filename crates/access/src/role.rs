//! Roles and what they allow. A credential (API token or client
//! certificate) carries exactly one role; nothing takes a role from a request
//! parameter. Tiers are released by the role alone.
//!
//! | role | may |
//! | --- | --- |
//! | `clerk` | append events (not catalogues), read events with every tier, views, status, disclosure log |
//! | `supervisor` | views, cases, scorecards, events without tiers, status, disclosure log, erasure |
//! | `auditor` | raw signed events and roster (tiers stripped), events, views and digests, status, quarantine, metrics, disclosure log |
//! | `statistics` | events and the event stream without tiers, views |
//! | `health` | events and the event stream with identity and reproductive-health tiers |
//! | `public_security` | events and the event stream with identity and contact tiers |
//! | `monitor` | status, quarantine and metrics only (for Prometheus) |
//! | `admin` | publish duty catalogues, erasure, everything an auditor may; no tiers |

use std::fmt;
use std::str::FromStr;

use yipan_core::audience::Audience;

/// A role carried by a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// County / township staff recording their work.
    Clerk,
    /// Reads views and scorecards, no personal tiers.
    Supervisor,
    /// Verifies the log: raw signed events and roster, tiers stripped.
    Auditor,
    /// Downstream statistics office: no personal tier.
    Statistics,
    /// Downstream health services: identity and reproductive health.
    Health,
    /// Downstream public security: identity and contact.
    PublicSecurity,
    /// Monitoring (metrics scraping, status).
    Monitor,
    /// Node administration: catalogue publishing; no personal tier.
    Admin,
}

/// Something a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Append events other than duty catalogues.
    Append,
    /// Append a `DutyCatalogPublished` event.
    PublishCatalogue,
    /// Read stored events (`/v1/events`).
    ReadEvents,
    /// Read views: cards, scorecards, cases, flows, digests.
    ReadViews,
    /// Read raw signed events (`/v1/raw`).
    ReadRaw,
    /// Read the roster of trusted keys.
    ReadRoster,
    /// Follow the event stream (`/v1/stream`).
    Stream,
    /// Read status and quarantine.
    ReadStatus,
    /// Scrape metrics.
    ReadMetrics,
    /// Read the disclosure log (who received which person's tiers; no personal value).
    ReadDisclosures,
    /// Erase a person's tiers here and at every recipient (`POST /v1/erasures`).
    Erase,
}

impl Permission {
    /// Every permission with its API name (as `GET /v1/whoami` reports them).
    pub const ALL: [(Permission, &'static str); 11] = [
        (Permission::Append, "append"),
        (Permission::PublishCatalogue, "publish_catalogue"),
        (Permission::ReadEvents, "read_events"),
        (Permission::ReadViews, "read_views"),
        (Permission::ReadRaw, "read_raw"),
        (Permission::ReadRoster, "read_roster"),
        (Permission::Stream, "stream"),
        (Permission::ReadStatus, "read_status"),
        (Permission::ReadMetrics, "read_metrics"),
        (Permission::ReadDisclosures, "read_disclosures"),
        (Permission::Erase, "erase"),
    ];
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 8] = [
        Role::Clerk,
        Role::Supervisor,
        Role::Auditor,
        Role::Statistics,
        Role::Health,
        Role::PublicSecurity,
        Role::Monitor,
        Role::Admin,
    ];

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Role::Clerk => "clerk",
            Role::Supervisor => "supervisor",
            Role::Auditor => "auditor",
            Role::Statistics => "statistics",
            Role::Health => "health",
            Role::PublicSecurity => "public_security",
            Role::Monitor => "monitor",
            Role::Admin => "admin",
        }
    }

    /// Whether this role may do `p`.
    pub fn allows(self, p: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Clerk => matches!(p, Append | ReadEvents | ReadViews | ReadStatus | ReadDisclosures),
            // Erasure is irreversible: the supervisor (or the admin) executes what a clerk took in.
            Role::Supervisor => matches!(p, ReadEvents | ReadViews | ReadStatus | ReadDisclosures | Erase),
            Role::Auditor => {
                matches!(p, ReadEvents | ReadViews | ReadRaw | ReadRoster | ReadStatus | ReadMetrics | ReadDisclosures)
            }
            Role::Statistics => matches!(p, ReadEvents | ReadViews | Stream),
            Role::Health | Role::PublicSecurity => matches!(p, ReadEvents | Stream),
            Role::Monitor => matches!(p, ReadStatus | ReadMetrics),
            Role::Admin => !matches!(p, Append),
        }
    }

    /// The personal tiers this role receives, as the downstream audience that
    /// has exactly them (`Statistics` = none).
    pub fn audience(self) -> Audience {
        match self {
            Role::Clerk => Audience::Full,
            Role::Health => Audience::Health,
            Role::PublicSecurity => Audience::PublicSecurity,
            _ => Audience::Statistics,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL.into_iter().find(|r| r.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Role::ALL.iter().map(|r| r.name()).collect();
            format!("`{}` is not a role ({})", yipan_core::clip(s), names.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_privilege_matrix() {
        assert!(Role::Clerk.allows(Permission::Append));
        assert!(!Role::Clerk.allows(Permission::PublishCatalogue));
        assert!(!Role::Clerk.allows(Permission::ReadRaw));
        assert!(!Role::Admin.allows(Permission::Append));
        assert!(Role::Admin.allows(Permission::PublishCatalogue));
        assert!(!Role::Supervisor.allows(Permission::Stream));
        assert!(!Role::Monitor.allows(Permission::ReadEvents));
        for r in Role::ALL {
            assert_eq!(r.name().parse::<Role>(), Ok(r));
            if r != Role::Clerk && r != Role::Health && r != Role::PublicSecurity {
                assert_eq!(r.audience(), Audience::Statistics, "{r} must see no tier");
            }
        }
        assert!("root".parse::<Role>().unwrap_err().contains("not a role"));
    }
}
