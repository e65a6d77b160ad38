//! NATS users with least-privilege permissions (DESIGN.md invariant 11,
//! docs/security.md). Every user authenticates with an NKey (an ed25519 key
//! pair; the server holds only the public key, the seed stays in a `0600`
//! file on the client's machine). Anonymous connections are refused because
//! the authorization block lists users and no `no_auth_user`.
//!
//! | user | publishes | subscribes |
//! | --- | --- | --- |
//! | locality `L` (province `pp`) | its own events `yipan.v1.ev.*.*.L`, its data keys `yipan.v1.key.*.*.L.*` (and direct reads of the keys addressed to it, `$JS.API.DIRECT.GET.YIPAN_KEY_pp.yipan.v1.key.pp.L.>`), heads `yipan.v1.head.*.*.L`, repair answers `yipan.v1.repaired.*.*.L`, repair requests for its own channels `yipan.v1.repair.*.L`, its downstream feed `yipan.v1.down.pp.L.>`, its own consumer's JetStream API (create pinned to its own filter, info, next, ack), its key handovers `yipan.v1.trust.pp.rotation.L`, info and message reads of `YIPAN_TRUST` | heads and repair answers to it, repair requests to it, its private inbox `_INBOX_locality_L.>` |
//! | province inbox `pp` (`inbox-pp`: a host serving every locality of the province) | its own consumer's JetStream API on `YIPAN_EV_pp` (create pinned to the province's subjects, info, delete, next, ack) | its inbox |
//! | downstream `L`/role | its own consumer's JetStream API on `YIPAN_DOWN_pp` | `yipan.v1.down.pp.L.<role>.>`, `yipan.v1.down.pp.L.views.>`, its inbox |
//! | auditor | stream names, info and message reads of the event streams `YIPAN_EV_<pp>` and of `YIPAN_TRUST` | its inbox |
//! | authority `pp` (`00`: the root) | its statements `yipan.v1.trust.pp.statement` | its inbox |
//! | admin | the whole JetStream API (creating streams) | its inbox |
//!
//! No locality may create, delete or purge a stream, read another's address
//! or inbox, or read stream history directly. No user has `allow_responses`:
//! besides letting a user answer into another's inbox, it makes the server
//! track every delivered message's reply subject, which stalled a 2.9 server
//! at 100% CPU under a 100k-event replication (measured); repairs are
//! answered on subjects of their own instead.

use std::path::{Path, PathBuf};

use yipan_core::audience::Audience;
use yipan_core::Locality;

use crate::{secret, Error, Result};

/// Whom a NATS user stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Principal {
    /// A locality node.
    Locality(Locality),
    /// A downstream system of a locality, with its role.
    Downstream(Locality, Audience),
    /// The shared inbox of a host serving every locality of a province
    /// (two-digit code): reads what is addressed to any of them.
    Inbox(u8),
    /// An auditor reading the event streams.
    Auditor,
    /// The publisher of a trust authority: a province (two-digit code) or, as `0`, the national root.
    Authority(u8),
    /// The administrator who creates streams.
    Admin,
}

/// What a user may publish and subscribe to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    /// Subjects it may publish to.
    pub publish: Vec<String>,
    /// Subjects it may subscribe to.
    pub subscribe: Vec<String>,
    /// Whether it may answer requests it received (repair replies).
    pub allow_responses: bool,
}

impl Principal {
    /// The user's name (file name of its seed, comment in the config).
    pub fn name(self) -> String {
        match self {
            Principal::Locality(l) => format!("locality-{l}"),
            Principal::Downstream(l, a) => format!("down-{l}-{a}"),
            Principal::Inbox(p) => format!("inbox-{p:02}"),
            Principal::Auditor => "auditor".into(),
            Principal::Authority(p) => format!("authority-{p:02}"),
            Principal::Admin => "admin".into(),
        }
    }

    /// The private inbox prefix the client must use (`_INBOX_<name>`).
    pub fn inbox_prefix(self) -> String {
        format!("_INBOX_{}", self.name().replace('-', "_"))
    }

    /// Its permissions.
    pub fn permissions(self) -> Permissions {
        let inbox = format!("{}.>", self.inbox_prefix());
        match self {
            Principal::Locality(l) => {
                let pp = format!("{:02}", l.province());
                let (stream, consumer) = (format!("YIPAN_EV_{pp}"), format!("node-{l}"));
                Permissions {
                    publish: vec![
                        format!("yipan.v1.ev.*.*.{l}"),
                        format!("yipan.v1.head.*.*.{l}"),
                        format!("yipan.v1.repaired.*.*.{l}"),
                        format!("yipan.v1.repair.*.{l}"),
                        format!("yipan.v1.down.{pp}.{l}.>"),
                        // Data keys: publish its own (and their tombstones), read those for it.
                        format!("yipan.v1.key.*.*.{l}.*"),
                        format!("$JS.API.DIRECT.GET.YIPAN_KEY_{pp}.yipan.v1.key.{pp}.{l}.>"),
                        format!("$JS.API.CONSUMER.INFO.{stream}.{consumer}"),
                        format!("$JS.API.CONSUMER.CREATE.{stream}.{consumer}.yipan.v1.ev.{pp}.{l}.*"),
                        // Its own consumer only: re-created from the node's cursor when its server lost it.
                        format!("$JS.API.CONSUMER.DELETE.{stream}.{consumer}"),
                        format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
                        format!("$JS.ACK.{stream}.{consumer}.>"),
                        // Trust: publish its own key handovers, read every certificate.
                        format!("yipan.v1.trust.{pp}.rotation.{l}"),
                        "$JS.API.STREAM.INFO.YIPAN_TRUST".into(),
                        "$JS.API.STREAM.MSG.GET.YIPAN_TRUST".into(),
                    ],
                    subscribe: vec![
                        format!("yipan.v1.head.{pp}.{l}.*"),
                        format!("yipan.v1.repaired.{pp}.{l}.*"),
                        format!("yipan.v1.repair.{l}.*"),
                        inbox,
                    ],
                    allow_responses: false,
                }
            }
            Principal::Downstream(l, a) => {
                let pp = format!("{:02}", l.province());
                let (stream, consumer) = (format!("YIPAN_DOWN_{pp}"), format!("down-{l}-{a}"));
                Permissions {
                    publish: vec![
                        format!("$JS.API.CONSUMER.INFO.{stream}.{consumer}"),
                        format!("$JS.API.CONSUMER.CREATE.{stream}.{consumer}.yipan.v1.down.{pp}.{l}.{a}.>"),
                        format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
                        format!("$JS.ACK.{stream}.{consumer}.>"),
                    ],
                    subscribe: vec![
                        format!("yipan.v1.down.{pp}.{l}.{a}.>"),
                        format!("yipan.v1.down.{pp}.{l}.views.>"),
                        inbox,
                    ],
                    allow_responses: false,
                }
            }
            Principal::Inbox(p) => {
                // One consumer, named after the user, reading the province's
                // stream; it opens nothing else (sealed tiers are opened with
                // each tenant's own credentials).
                let (stream, consumer) = (format!("YIPAN_EV_{p:02}"), format!("inbox-{p:02}"));
                Permissions {
                    publish: vec![
                        format!("$JS.API.CONSUMER.INFO.{stream}.{consumer}"),
                        format!("$JS.API.CONSUMER.CREATE.{stream}.{consumer}.yipan.v1.ev.{p:02}.>"),
                        format!("$JS.API.CONSUMER.DELETE.{stream}.{consumer}"),
                        format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
                        format!("$JS.ACK.{stream}.{consumer}.>"),
                    ],
                    subscribe: vec![inbox],
                    allow_responses: false,
                }
            }
            Principal::Auditor => {
                // `*` matches whole tokens only, so each province's stream is named.
                let mut publish = vec![
                    "$JS.API.STREAM.NAMES".to_string(),
                    "$JS.API.STREAM.INFO.YIPAN_TRUST".into(),
                    "$JS.API.STREAM.MSG.GET.YIPAN_TRUST".into(),
                ];
                for (p, _) in yipan_core::locality::PROVINCES {
                    publish.push(format!("$JS.API.STREAM.INFO.YIPAN_EV_{p:02}"));
                    publish.push(format!("$JS.API.STREAM.MSG.GET.YIPAN_EV_{p:02}"));
                }
                Permissions { publish, subscribe: vec![inbox], allow_responses: false }
            }
            Principal::Authority(p) => Permissions {
                publish: vec![format!("yipan.v1.trust.{p:02}.statement")],
                subscribe: vec![inbox],
                allow_responses: false,
            },
            Principal::Admin => {
                Permissions { publish: vec!["$JS.API.>".into()], subscribe: vec![inbox], allow_responses: false }
            }
        }
    }
}

/// A user's NKey seed file and public key.
#[derive(Debug, Clone)]
pub struct NatsUser {
    /// Whom it stands for.
    pub principal: Principal,
    /// The seed file (`0600`), for the client's `nats_nkey_file`.
    pub seed_file: PathBuf,
    /// The public key (`U…`), for the server's authorization block.
    pub public_key: String,
}

/// Reads the user's seed from `dir/<name>.nk`, creating it if absent (an
/// existing seed is kept, so re-running for a new locality changes nothing
/// for the others).
pub fn ensure_user(dir: &Path, principal: Principal) -> Result<NatsUser> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let seed_file = dir.join(format!("{}.nk", principal.name()));
    let pair = if seed_file.exists() {
        let seed = secret::read_private(&seed_file)?;
        nkeys::KeyPair::from_seed(seed.trim())
            .map_err(|e| Error::format(&seed_file, format!("not an NKey seed: {e}")))?
    } else {
        let pair = nkeys::KeyPair::new_user();
        let seed = pair.seed().map_err(|e| Error::Invalid(format!("NKey: {e}")))?;
        secret::write_private(&seed_file, format!("{seed}\n").as_bytes())?;
        pair
    };
    Ok(NatsUser { principal, seed_file, public_key: pair.public_key() })
}

/// Reads an NKey seed file for a client connection (refused if not `0600`).
pub fn read_seed(path: &Path) -> Result<String> {
    let seed = secret::read_private(path)?;
    let seed = seed.trim().to_string();
    nkeys::KeyPair::from_seed(&seed).map_err(|e| Error::format(path, format!("not an NKey seed: {e}")))?;
    Ok(seed)
}

fn quoted(list: &[String]) -> String {
    list.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ")
}

/// The `authorization { users = [...] }` block for `users`, to be included
/// from `nats-server.conf`.
pub fn render_authorization(users: &[NatsUser]) -> String {
    let mut out = String::from(
        "# Generated by `yipan nats users`: one NKey user per locality, downstream role,\n\
         # auditor and admin, each with least-privilege permissions (docs/security.md).\n\
         # No user without a key: anonymous connections are refused.\n\
         authorization {\n  users = [\n",
    );
    for u in users {
        let p = u.principal.permissions();
        out.push_str(&format!(
            "    # {}\n    {{\n      nkey: \"{}\"\n      permissions: {{\n        publish: {{ allow: [{}] }}\n        subscribe: {{ allow: [{}] }}\n{}      }}\n    }}\n",
            u.principal.name(),
            u.public_key,
            quoted(&p.publish),
            quoted(&p.subscribe),
            if p.allow_responses { "        allow_responses: true\n" } else { "" },
        ));
    }
    out.push_str("  ]\n}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locality_permissions_pin_author_address_and_consumer() {
        let l = Locality::parse("610112").unwrap();
        let p = Principal::Locality(l).permissions();
        assert!(p.publish.contains(&"yipan.v1.ev.*.*.610112".to_string()));
        let stream_rights: Vec<&String> = p.publish.iter().filter(|s| s.contains("STREAM")).collect();
        assert!(
            stream_rights
                .iter()
                .all(|s| s.ends_with("STREAM.INFO.YIPAN_TRUST") || s.ends_with("STREAM.MSG.GET.YIPAN_TRUST")),
            "no stream administration, no reads but the trust stream: {stream_rights:?}"
        );
        assert!(p.publish.contains(&"yipan.v1.trust.61.rotation.610112".to_string()));
        let a = Principal::Authority(61).permissions();
        assert_eq!(a.publish, vec!["yipan.v1.trust.61.statement".to_string()]);
        assert!(p.subscribe.contains(&"_INBOX_locality_610112.>".to_string()));
        assert!(!p.subscribe.iter().any(|s| s.starts_with("yipan.v1.ev")), "reads its address only via its consumer");
    }

    #[test]
    fn seeds_are_kept_and_private() {
        let d = tempfile::tempdir().unwrap();
        let l = Locality::parse("411522").unwrap();
        let a = ensure_user(d.path(), Principal::Locality(l)).unwrap();
        let b = ensure_user(d.path(), Principal::Locality(l)).unwrap();
        assert_eq!(a.public_key, b.public_key);
        assert!(a.public_key.starts_with('U'));
        let seed = read_seed(&a.seed_file).unwrap();
        let conf = render_authorization(&[a]);
        assert!(conf.contains("nkey: \"U") && !conf.contains("allow_responses"), "{conf}");
        assert!(!conf.contains(&seed[2..]), "no seed in the server config");
    }
}
