//! A whole secured deployment on one machine — what an operator sets up by
//! hand with `yipan tls`, `yipan nats users`, `yipan nats provision` and
//! `yipan token create` — made in one step for the main job, the tests and
//! the benchmarks: a throw-away CA with certificates for nats-server and the
//! nodes, an NKey user per locality (and per downstream role, the auditor
//! and the admin) with least-privilege permissions, node configurations
//! that use all of it, and streams created by the admin.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use yipan_access::nats::{ensure_user, render_authorization, NatsUser, Principal};
use yipan_access::pki::{DevCa, Issued};
use yipan_access::{Role, TokenStore};
use yipan_core::audience::Audience;
use yipan_core::Locality;
use yipan_sync::SyncConfig;

use crate::config::{HttpConfig, HttpTls, NodeConfig};

/// The secrets and certificates of a local deployment.
pub struct Deployment {
    ca: DevCa,
    /// nats-server's certificate and key.
    pub nats_tls: Issued,
    /// The nodes' HTTPS certificate and key (valid for 127.0.0.1 and localhost).
    pub node_tls: Issued,
    users: HashMap<Principal, NatsUser>,
    /// The trust authorities: root and one authority per province.
    pub authority: crate::authority::AuthorityDir,
}

impl Deployment {
    /// Creates everything under `dir` for `localities`, their `downstream`
    /// roles, an auditor and an admin.
    pub fn create(dir: &Path, localities: &[Locality], downstream: &[(Locality, Audience)]) -> Result<Deployment> {
        let ca = DevCa::create(&dir.join("tls"), "Yipan local CA (throw-away)")?;
        let nats_tls = ca.server("nats", &["127.0.0.1", "localhost"])?;
        let node_tls = ca.server("node", &["127.0.0.1", "localhost"])?;
        let mut provinces: Vec<u8> = localities.iter().map(|l| l.province()).collect();
        provinces.sort_unstable();
        provinces.dedup();
        let mut principals: Vec<Principal> = localities.iter().map(|l| Principal::Locality(*l)).collect();
        principals.extend(downstream.iter().map(|(l, a)| Principal::Downstream(*l, *a)));
        principals.extend([Principal::Auditor, Principal::Admin, Principal::Authority(0)]);
        principals.extend(provinces.iter().map(|p| Principal::Authority(*p)));
        // A host serving a whole province reads it through one shared inbox.
        principals.extend(provinces.iter().map(|p| Principal::Inbox(*p)));
        let keys = dir.join("nkeys");
        let users = principals
            .into_iter()
            .map(|p| Ok((p, ensure_user(&keys, p)?)))
            .collect::<Result<HashMap<_, _>, yipan_access::Error>>()?;
        // The trust hierarchy: a root and the authorities of these provinces.
        let authority = crate::authority::AuthorityDir::at(&dir.join("authority"));
        authority.init_root()?;
        for p in provinces {
            authority.certify_province(p, "", 3650)?;
        }
        Ok(Deployment { ca, nats_tls, node_tls, users, authority })
    }

    /// The province authority certifies the key of `data_dir`'s locality;
    /// returns the serial. Published with [`Deployment::publish_trust`].
    pub fn certify(&self, locality: Locality, name: &str, data_dir: &Path) -> Result<u64> {
        let key = yipan_log::keyfile::load(data_dir)?.verifying_key();
        let request = crate::authority::LocalityRequest {
            locality,
            name: name.into(),
            key,
            days: 1095,
            replaces: 0,
            first_seq: 0,
        };
        Ok(self.authority.certify_locality(&request)?.1)
    }

    /// Publishes every statement not yet on the trust stream, each issuer
    /// as its own NATS user; returns how many.
    pub async fn publish_trust(&self, nats_url: &str) -> Result<usize> {
        let mut n = 0;
        for p in self.authority.issuers() {
            let principal = Principal::Authority(p);
            let cfg = self.sync_config(principal, nats_url)?;
            let client = yipan_sync::connect_options(&cfg, principal)?
                .connect(yipan_sync::servers(nats_url).as_slice())
                .await
                .map_err(|e| Error::Nats(format!("connecting to {nats_url} as {}: {e}", principal.name())))?;
            n += self.authority.publish(p, client).await?;
        }
        Ok(n)
    }

    /// The CA every certificate here chains to.
    pub fn ca(&self) -> PathBuf {
        self.ca.ca_path()
    }

    /// A client certificate with subject common name `cn` (for mTLS callers).
    pub fn client_certificate(&self, cn: &str) -> Result<Issued> {
        Ok(self.ca.client(&format!("client-{cn}"), cn)?)
    }

    /// The `authorization` block for nats-server.
    pub fn authorization(&self) -> String {
        self.authorization_without(&[])
    }

    /// The `authorization` block without the users of `revoked` (a server
    /// reloaded with it closes their connections and refuses them).
    pub fn authorization_without(&self, revoked: &[Principal]) -> String {
        let mut users: Vec<NatsUser> =
            self.users.values().filter(|u| !revoked.contains(&u.principal)).cloned().collect();
        users.sort_by_key(|u| u.principal.name());
        render_authorization(&users)
    }

    /// The testkit's description of the secured nats-server.
    pub fn nats_server(&self) -> yipan_testkit::Secure {
        yipan_testkit::Secure {
            cert: self.nats_tls.cert.clone(),
            key: self.nats_tls.key.clone(),
            authorization: self.authorization(),
        }
    }

    /// The NKey seed file of `principal`.
    pub fn seed(&self, principal: Principal) -> Result<&Path> {
        self.users
            .get(&principal)
            .map(|u| u.seed_file.as_path())
            .ok_or_else(|| Error::Config(format!("no NATS user {} in this deployment", principal.name())))
    }

    /// Replication settings connecting as `principal` over TLS.
    pub fn sync_config(&self, principal: Principal, nats_url: &str) -> Result<SyncConfig> {
        Ok(SyncConfig {
            nats_url: nats_url.into(),
            nats_nkey_file: Some(self.seed(principal)?.to_path_buf()),
            nats_ca_file: Some(self.ca()),
            ..Default::default()
        })
    }

    /// A secured node configuration for the locality of `data_dir`.
    pub fn node_config(&self, locality: Locality, data_dir: PathBuf, nats_url: &str) -> Result<NodeConfig> {
        Ok(NodeConfig {
            data_dir,
            listen: "127.0.0.1:0".into(),
            calendar: None,
            views_interval_s: 60,
            insecure: false,
            http: HttpConfig {
                tokens: None,
                tls: Some(HttpTls {
                    cert: self.node_tls.cert.clone(),
                    key: self.node_tls.key.clone(),
                    client_ca: Some(self.ca()),
                    clients: Vec::new(),
                }),
            },
            trust: crate::config::TrustConfig {
                anchor: Some(hex::encode(self.authority.anchor()?.to_bytes())),
                hand_added_keys_only: false,
            },
            sync: self.sync_config(Principal::Locality(locality), nats_url)?,
            privacy: Default::default(),
            validation: Default::default(),
        })
    }

    /// A secured host configuration for `host_dir` (each tenant's NKey is
    /// this deployment's `locality-<code>.nk`).
    pub fn host_config(&self, host_dir: PathBuf, nats_url: &str) -> Result<crate::host::HostConfig> {
        let any = self
            .users
            .keys()
            .find(|p| matches!(p, Principal::Locality(_)))
            .copied()
            .ok_or_else(|| Error::Config("this deployment has no locality".into()))?;
        let node = self.node_config(
            match any {
                Principal::Locality(l) => l,
                _ => unreachable!("found a locality"),
            },
            host_dir.clone(),
            nats_url,
        )?;
        Ok(crate::host::HostConfig {
            host_dir,
            listen: node.listen,
            nats_nkey_dir: self.seed(any)?.parent().map(Path::to_path_buf),
            cache_mib: 64,
            publish_budget: crate::host::default_publish_budget(),
            inbox_provinces: Vec::new(),
            calendar: None,
            views_interval_s: node.views_interval_s,
            insecure: false,
            http: node.http,
            trust: node.trust,
            sync: SyncConfig { nats_nkey_file: None, ..node.sync },
            privacy: Default::default(),
            validation: Default::default(),
        })
    }

    /// A TLS client configuration trusting this deployment's CA.
    pub fn client_tls(&self) -> Result<Arc<rustls::ClientConfig>> {
        Ok(yipan_access::tls::client_config(&self.ca(), None)?)
    }

    /// Creates the streams of `provinces` as the admin user.
    pub async fn provision(&self, nats_url: &str, provinces: &[u8]) -> Result<()> {
        self.provision_replicated(nats_url, provinces, 1).await
    }

    /// Like [`Deployment::provision`] with `replicas` copies of every stream
    /// (3 on a province's JetStream cluster).
    pub async fn provision_replicated(&self, nats_url: &str, provinces: &[u8], replicas: usize) -> Result<()> {
        self.provision_placed(nats_url, provinces, replicas, None).await
    }

    /// Like [`Deployment::provision_replicated`] on a supercluster: the streams
    /// of province `pp` placed in the cluster `{cluster_prefix}{pp}`.
    pub async fn provision_placed(
        &self,
        nats_url: &str,
        provinces: &[u8],
        replicas: usize,
        cluster_prefix: Option<&str>,
    ) -> Result<()> {
        let cfg = SyncConfig {
            stream_replicas: replicas,
            stream_cluster_prefix: cluster_prefix.map(String::from),
            ..self.sync_config(Principal::Admin, nats_url)?
        };
        self.provision_as_admin(nats_url, provinces, cfg).await
    }

    /// Like [`Deployment::provision_replicated`] on a supercluster whose
    /// clusters serve groups of provinces: province `pp`'s streams placed in
    /// `clusters["pp"]`.
    pub async fn provision_mapped(
        &self,
        nats_url: &str,
        provinces: &[u8],
        replicas: usize,
        clusters: std::collections::BTreeMap<String, String>,
    ) -> Result<()> {
        let cfg = SyncConfig {
            stream_replicas: replicas,
            stream_clusters: clusters,
            ..self.sync_config(Principal::Admin, nats_url)?
        };
        self.provision_as_admin(nats_url, provinces, cfg).await
    }

    async fn provision_as_admin(&self, nats_url: &str, provinces: &[u8], cfg: SyncConfig) -> Result<()> {
        let client = yipan_sync::connect_options(&cfg, Principal::Admin)?
            .connect(yipan_sync::servers(nats_url).as_slice())
            .await
            .map_err(|e| Error::Nats(format!("connecting to {nats_url} as admin: {e}")))?;
        let js = async_nats::jetstream::new(client);
        yipan_sync::provision(&js, provinces, &SyncConfig { manage_streams: true, ..cfg }).await?;
        Ok(())
    }
}

/// Issues a token of `role` for `name` in the token file of `data_dir`; returns the token.
pub fn issue_token(data_dir: &Path, role: Role, name: &str) -> Result<String> {
    let mut store = TokenStore::open(&TokenStore::default_path(data_dir))?;
    let (_, token) = store.create(role, name, None, chrono::Utc::now())?;
    Ok(token)
}
