//! `yipan`: the command line of a Yipan locality node. Thin: it parses
//! arguments and calls the library crates.

mod access;
mod append;
mod audit;
mod bench_audit;
mod bench_http;
mod bench_projections;
mod bench_replicate;
mod bench_trust;
mod demo;
mod output;
mod sim;
mod tail;
mod trust;
mod views;

use yipan_node::datadir as config;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use yipan_core::{EventKind, Locality, PersonKey};

#[derive(Parser)]
#[command(name = "yipan", version, about = "Yipan (一盘棋): origin ↔ residence event-sourced data sharing")]
struct Cli {
    /// Data directory of the locality node.
    #[arg(long, global = true, env = "YIPAN_DATA_DIR", default_value = "./yipan-data")]
    data_dir: PathBuf,
    /// Working-day calendar (JSON holidays and make-up days) for deadlines in working days.
    #[arg(long, global = true, env = "YIPAN_CALENDAR")]
    calendar: Option<PathBuf>,
    /// API token for commands that call a running node (`yipan token create` prints one).
    #[arg(long, global = true, env = "YIPAN_TOKEN", hide_env_values = true, conflicts_with = "token_file")]
    token: Option<String>,
    /// Read the API token from this file (mode 0600) instead: not visible in `ps`.
    #[arg(long, global = true, env = "YIPAN_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Allow calling a node over plain http:// (a node in the explicit insecure mode).
    #[arg(long, global = true)]
    insecure: bool,
    /// CA certificate (PEM) to trust a node's https:// address or a tls:// NATS server.
    #[arg(long, global = true, env = "YIPAN_CA_CERT")]
    ca_cert: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a locality's data directory: signing key, config, roster entry.
    Init {
        /// GB/T 2260 division code of this locality, e.g. 610112.
        #[arg(long)]
        locality: String,
        /// Deployment-wide secret (hex) for deriving person keys from ID numbers.
        #[arg(long, env = "YIPAN_PERSON_KEY_SECRET", hide_env_values = true)]
        person_key_secret: Option<String>,
    },
    /// Append events: one JSON object, a JSON array, or JSON lines, from FILE or stdin.
    Append {
        /// Input file; `-` or nothing reads stdin.
        file: Option<PathBuf>,
        /// One event given inline as JSON.
        #[arg(long, conflicts_with = "file")]
        event: Option<String>,
    },
    /// Show stored events.
    Log {
        /// Only events by this author locality.
        #[arg(long)]
        author: Option<String>,
        /// Only events about this person key.
        #[arg(long)]
        person: Option<String>,
        /// Only events of this kind (e.g. ArrivalRegistered).
        #[arg(long)]
        kind: Option<String>,
        /// With --author: start at this sequence.
        #[arg(long, default_value_t = 1)]
        from_seq: u64,
        /// At most this many events.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
        /// Show personal fields unmasked (JSON only).
        #[arg(long)]
        reveal: bool,
    },
    /// Verify every chain, signature, sequence and channel; non-zero exit on any fault.
    Verify {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// A person's responsibility cards (four-one / six-one items with their states).
    Card {
        /// Person key (32 hex digits).
        person: String,
        /// Instant to answer for (RFC 3339); default now.
        #[arg(long)]
        as_of: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Assessment indicators of a locality, a pair or a direction for a period.
    Scorecard {
        #[arg(long, conflicts_with_all = ["pair", "direction"])]
        locality: Option<String>,
        /// Both directions between two localities: `A,B`.
        #[arg(long, conflicts_with = "direction")]
        pair: Option<String>,
        /// A's duties toward B: `A,B`.
        #[arg(long)]
        direction: Option<String>,
        /// 2026-10, 2026-Q4 or 2026; default this month.
        #[arg(long)]
        period: Option<String>,
        #[arg(long)]
        as_of: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Exchanges (notification, case-assist, first-child, certificate mismatch) with due dates.
    Cases {
        #[arg(long)]
        locality: Option<String>,
        /// Only those past due.
        #[arg(long)]
        overdue: bool,
        #[arg(long)]
        as_of: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Arrivals and departures per month with early warnings.
    Flows {
        #[arg(long)]
        locality: Option<String>,
        #[arg(long)]
        as_of: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// The duty catalogue: print the default, or publish one from a file as an event.
    Catalogue {
        #[command(subcommand)]
        action: CatalogueAction,
    },
    /// Audit: verify every signature, chain, channel and fork, and rebuild the projection
    /// digests — from this data directory (default), a running node's API, or the JetStream
    /// streams with no node involved. Non-zero exit on any fault or digest mismatch.
    Audit {
        /// Audit through a running node's API instead (https://IP:PORT; needs --token with the
        /// auditor role and --ca-cert).
        #[arg(long, conflicts_with = "nats")]
        api: Option<String>,
        /// Audit the JetStream streams directly (tls://…), trust from the trust stream; needs
        /// --anchor (or, on an air-gapped site, --roster) and the auditor's --nkey.
        #[arg(long)]
        nats: Option<String>,
        /// The trust anchor (hex public key of the national root) to verify certificates
        /// against; for a data directory or API it must equal the node's recorded anchor.
        #[arg(long, env = "YIPAN_TRUST_ANCHOR")]
        anchor: Option<String>,
        /// NKey seed file of the NATS auditor user (`yipan nats users` writes nkeys/auditor.nk).
        #[arg(long, env = "YIPAN_NATS_NKEY")]
        nkey: Option<PathBuf>,
        /// Hand-added keys (`CODE HEXKEY` lines) for --nats, for an air-gapped site without authority.
        #[arg(long)]
        roster: Option<PathBuf>,
        /// Compare the rebuilt digests with these running nodes (https://IP:PORT), repeatable.
        #[arg(long)]
        compare: Vec<String>,
        #[arg(long)]
        as_of: Option<String>,
        /// Show progress even when stderr is not a terminal.
        #[arg(long)]
        progress: bool,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Export events as JSON lines (personal fields masked), filtered by author, kind and period.
    Export {
        #[arg(long)]
        author: Option<String>,
        /// Repeatable.
        #[arg(long)]
        kind: Vec<String>,
        /// Only events that occurred in this period (2026-10, 2026-Q4, 2026; CST).
        #[arg(long)]
        period: Option<String>,
    },
    /// Follow a running node's events live (server-sent events), resuming after breaks.
    Tail {
        /// The node's API (https://IP:PORT). The token's role decides which personal tiers
        /// are included (statistics, health, public_security).
        #[arg(long)]
        api: String,
        /// Start after these per-author positions: `610112:10,411522:4`.
        #[arg(long)]
        from: Option<String>,
        /// Exit after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Time travel: any view as it stood at a past instant.
    Replay {
        /// The instant (RFC 3339).
        #[arg(long)]
        as_of: String,
        #[arg(long, value_enum)]
        view: ReplayView,
        /// Person key, for --view card.
        #[arg(long)]
        person: Option<String>,
        #[arg(long)]
        locality: Option<String>,
        #[arg(long)]
        pair: Option<String>,
        #[arg(long)]
        period: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Trust authorities: the national root, province authorities, locality certificates,
    /// revocations, published to the trust stream (docs/trust.md).
    Authority {
        /// The authority's working directory (root.key, authorities/, statements/).
        #[arg(long, env = "YIPAN_AUTHORITY_DIR")]
        dir: PathBuf,
        #[command(subcommand)]
        action: trust::AuthorityAction,
    },
    /// This node's signing key: prepare the next one, hand the chain over to it.
    Key {
        #[command(subcommand)]
        action: trust::KeyAction,
    },
    /// Show the trusted localities (certificate chains, key schedules, status), or add a key
    /// by hand (the air-gapped exception).
    Roster {
        #[command(subcommand)]
        action: RosterAction,
    },
    /// The disclosure log: who received a person's personal tiers (by replication, a
    /// downstream feed, an HTTP answer or the event stream), when and on what basis.
    /// No personal value is in it; `verify` checks its hash chain.
    Disclosures {
        /// The person key (32 hex).
        #[arg(long, conflicts_with = "id_number")]
        person: Option<String>,
        /// The person's resident-ID number (turned into the key with the data
        /// directory's secret; prefer reading it from YIPAN_ID_NUMBER so it stays
        /// out of shell history).
        #[arg(long, env = "YIPAN_ID_NUMBER", hide_env_values = true)]
        id_number: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Erase a person's personal tiers here and ask every locality that received them
    /// to do the same (the node must be stopped; run it through `POST /v1/erasures`
    /// otherwise). The requests replicate when the node runs; `GET /v1/erasures` or
    /// `yipan erasures` shows which recipients have confirmed.
    Erase {
        /// The person key (32 hex).
        #[arg(long, conflicts_with = "id_number", required_unless_present_any = ["id_number", "reapply"])]
        person: Option<String>,
        /// The person's resident-ID number (prefer YIPAN_ID_NUMBER: out of shell history).
        #[arg(long, env = "YIPAN_ID_NUMBER", hide_env_values = true)]
        id_number: Option<String>,
        /// A tier to erase (identity, contact, health); repeat; all if none.
        #[arg(long = "tier")]
        tiers: Vec<String>,
        /// Why: person_request, retention_expired, purpose_fulfilled, consent_withdrawn, unlawful_processing.
        #[arg(long, required_unless_present = "reapply")]
        basis: Option<String>,
        /// A case or file number (never a name).
        #[arg(long, default_value = "")]
        reference: String,
        /// Working days the recipients have to confirm.
        #[arg(long, default_value_t = 15)]
        answer_days: u32,
        /// Re-apply every erasure on record (after restoring this data directory from a backup).
        #[arg(long, conflicts_with_all = ["person", "id_number", "basis"])]
        reapply: bool,
    },
    /// Erasure requests sent and received, and each recipient's answer.
    Erasures {
        /// Only this person key.
        #[arg(long)]
        person: Option<String>,
        /// As of this instant (RFC 3339; default now).
        #[arg(long)]
        as_of: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show rejected foreign events and why they were rejected.
    Quarantine {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Own messages the outbox set aside because they can never be published: list them,
    /// retry them (after raising the server's max_payload), or drop them from the list.
    DeadLetters {
        #[command(subcommand)]
        action: Option<DeadLetterAction>,
    },
    /// Run a locality node (HTTP API + replication over NATS).
    Node {
        #[command(subcommand)]
        action: NodeAction,
    },
    /// Host many localities (tenants) in one process, as a provincial or municipal
    /// government cloud does: one HTTP listener (`/t/<code>/…` per tenant), one
    /// storage engine, each tenant with its own key, log, NATS NKey and tokens.
    Host {
        #[command(subcommand)]
        action: HostAction,
    },
    /// The national simulation (docs/scale.md): every county-level locality hosted
    /// in a few processes over a supercluster, a census-weighted population,
    /// a server killed in each cluster, convergence, an audit, plots.
    Sim {
        #[command(subcommand)]
        action: SimAction,
    },
    /// The main job: a local NATS and three locality nodes (residences 610112 and
    /// 610113 in Xi'an, origin 411522 in Henan) running a scripted scenario.
    Demo {
        /// Keep the data directories here instead of a temporary directory.
        #[arg(long)]
        keep: Option<PathBuf>,
        /// After the scenario, keep the nodes serving their consoles and APIs
        /// until Ctrl-C (prints each console's address and sign-in links).
        #[arg(long)]
        serve: bool,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
    /// API tokens of this node: create (printed once), list, revoke.
    Token {
        /// Token file instead of `<data-dir>/tokens.json`.
        #[arg(long, global = true)]
        tokens: Option<PathBuf>,
        #[command(subcommand)]
        action: TokenAction,
    },
    /// NATS users and streams: NKey users with least-privilege permissions, stream provisioning.
    Nats {
        #[command(subcommand)]
        action: NatsAction,
    },
    /// TLS: a throw-away CA and certificates for a local setup (not for production).
    Tls {
        #[command(subcommand)]
        action: TlsAction,
    },
}

#[derive(Subcommand)]
enum DeadLetterAction {
    /// Every dead letter (default).
    List,
    /// Publish them again: the outbox rewinds to the earliest one (others it re-sends are
    /// deduplicated). Run with the node stopped.
    Retry,
    /// Forget them (the events stay in the log; their recipients stay behind a gap).
    Drop,
}

#[derive(Subcommand)]
enum TokenAction {
    /// Issue a token; it is printed once and only its hash is stored.
    Create {
        /// clerk, supervisor, auditor, statistics, health, public_security, monitor, admin.
        #[arg(long)]
        role: String,
        /// Whom it is for (a person or a system).
        #[arg(long)]
        name: String,
        /// Last valid day (YYYY-MM-DD, China time).
        #[arg(long)]
        expires: Option<String>,
    },
    /// Every issued token with its role and status (never the token).
    List {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Revoke a token by its id (a running node refuses it within a second).
    Revoke { id: String },
}

#[derive(Subcommand)]
enum NatsAction {
    /// Write NKey seeds (`OUT/nkeys/*.nk`, mode 0600; existing ones kept) and the server's
    /// `OUT/auth.conf` for these localities, downstream roles, an auditor and an admin.
    Users {
        /// Comma-separated locality codes.
        #[arg(long)]
        localities: String,
        /// Downstream users, `LOCALITY:ROLE` (statistics, health, public_security, full), repeatable.
        #[arg(long)]
        downstream: Vec<String>,
        /// Provinces (two-digit codes, comma-separated) whose every locality one
        /// host serves: a user `inbox-<pp>` each, for that host's shared
        /// inbox (`inbox_provinces` in host.toml).
        #[arg(long, default_value = "")]
        inbox_provinces: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Create the event and downstream streams as the admin user.
    Provision {
        /// tls://HOST:PORT (several, comma-separated: the servers of a province's cluster)
        #[arg(long)]
        nats: String,
        /// Stream replicas: 3 on a province's JetStream cluster, 1 on a single server.
        #[arg(long, default_value_t = 1)]
        replicas: usize,
        /// In a supercluster: place province PP's streams in the cluster named this prefix + PP
        /// (e.g. `province-` → `province-61`).
        #[arg(long)]
        cluster_prefix: Option<String>,
        /// The admin's NKey seed file.
        #[arg(long)]
        nkey: PathBuf,
        /// Province codes, e.g. 61,41.
        #[arg(long, default_value = "")]
        provinces: String,
        /// Or the localities whose provinces need streams.
        #[arg(long, default_value = "")]
        localities: String,
    },
}

#[derive(Subcommand)]
enum TlsAction {
    /// Write ca.pem, nats.pem/.key, node.pem/.key (and client-NAME.pem/.key) to OUT.
    Dev {
        #[arg(long)]
        out: PathBuf,
        /// Host names or IP addresses of the server certificates (default 127.0.0.1, localhost).
        #[arg(long)]
        host: Vec<String>,
        /// Client certificates with this common name, repeatable.
        #[arg(long)]
        client: Vec<String>,
    },
}

#[derive(Subcommand)]
enum RosterAction {
    /// Every trusted locality: key, status, certificate chain, key schedule.
    Show {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// EXCEPTION for an air-gapped site or a test: trust a locality's public key (hex, or
    /// the key of another data directory) copied by hand, without a certificate.
    Add {
        #[arg(long)]
        locality: String,
        /// Hex ed25519 public key.
        #[arg(long, required_unless_present = "from_data_dir")]
        public_key: Option<String>,
        /// Read the key from another locality's data directory.
        #[arg(long)]
        from_data_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum CatalogueAction {
    /// Print the default catalogue (DOMAIN.md four-one / six-one) as JSON, a starting point for edits.
    Default,
    /// Publish a catalogue file (JSON) as a DutyCatalogPublished event, in force from --from,
    /// sent to every locality in the roster.
    Publish {
        file: PathBuf,
        /// When it comes into force (RFC 3339); default now.
        #[arg(long)]
        from: Option<String>,
    },
}

#[derive(Subcommand)]
enum NodeAction {
    /// Run until SIGINT or SIGTERM.
    Run {
        /// node.toml (data_dir, listen, [sync] nats_url, …).
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum SimAction {
    /// Runs the whole simulation; writes summary.json, summary.md, series.csv and
    /// events.svg, lag.svg, memory.svg into --out. Exit 1 if anything was lost,
    /// doubled, differs between the two sides of a pair, or fails the audit.
    National {
        /// Persons drawn (about five events each).
        #[arg(long, default_value_t = 1_000_000)]
        persons: u64,
        /// Localities per province; 0 hosts every county-level unit.
        #[arg(long, default_value_t = 0)]
        per_province: usize,
        /// Hosting processes (each serves a group of provinces).
        #[arg(long, default_value_t = 4)]
        workers: usize,
        /// JetStream clusters joined by gateways.
        #[arg(long, default_value_t = 2)]
        clusters: usize,
        /// Servers per cluster (streams are R3 from 3).
        #[arg(long, default_value_t = 3)]
        servers: usize,
        /// Do not kill a server of each cluster mid-run.
        #[arg(long)]
        no_kill: bool,
        /// One inbox consumer per tenant instead of one per province and
        /// hosting process (to compare the two).
        #[arg(long)]
        tenant_consumers: bool,
        /// Share of arrivals carrying the identity tier (each a sealed tier with a data key).
        #[arg(long, default_value_t = 0.1)]
        tiers: f64,
        /// Seed of the population.
        #[arg(long, default_value_t = 2020)]
        seed: u64,
        /// Events per append batch of one locality.
        #[arg(long, default_value_t = 256)]
        batch: usize,
        /// Page cache of each hosting process's shared store, MiB (`cache_mib`;
        /// sled holds ~2–3× this in memory, docs/scale.md).
        #[arg(long, default_value_t = 64)]
        cache_mib: u64,
        /// Publishes in flight per hosting process, all of its tenants together
        /// (`publish_budget`; 0: none beyond each tenant's window).
        #[arg(long, default_value_t = 4096)]
        publish_budget: usize,
        /// Output directory.
        #[arg(long, default_value = "target/sim-national")]
        out: PathBuf,
    },
    /// One hosting process of the simulation (started by `sim national`).
    Worker {
        /// The worker's spec (JSON), written by `sim national`.
        #[arg(long)]
        spec: PathBuf,
    },
}

#[derive(Subcommand)]
enum HostAction {
    /// Create a host directory: the shared store and `tenants/`.
    Init {
        /// The host directory.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Prepare a tenant (key pair, yipan.toml); prints its public key for the
    /// province authority. A running host starts it on `POST /host/tenants`;
    /// its API tokens: `yipan token create --data-dir <dir>/tenants/<code>`.
    AddTenant {
        /// The host directory.
        #[arg(long)]
        dir: PathBuf,
        /// GB/T 2260 code of the county-level locality, e.g. 610112.
        #[arg(long)]
        locality: String,
        /// Deployment-wide secret (hex) for deriving person keys from ID numbers.
        #[arg(long, env = "YIPAN_PERSON_KEY_SECRET", hide_env_values = true)]
        person_key_secret: Option<String>,
    },
    /// Serve every tenant of the host until SIGINT or SIGTERM.
    Run {
        /// host.toml (host_dir, listen, nats_nkey_dir, [sync] nats_url, …).
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum BenchWhat {
    /// Audit throughput with full signature verification vs raw ed25519 verification.
    Audit {
        #[arg(long, default_value_t = 200_000)]
        events: u64,
        /// Also audit this many events generated and signed on the fly, never stored
        /// (the auditor's memory for a stream of any length; 0: skip).
        #[arg(long, default_value_t = 1_000_000)]
        stream: u64,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Rebuild every projection from a large log vs the raw sled scan rate; memory per person.
    Projections {
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// End-to-end replicated events/s and lag over a local nats-server, vs raw JetStream publish.
    Replicate {
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// Seconds of the steady 1,000/s lag phase.
        #[arg(long, default_value_t = 5)]
        steady_secs: u64,
        /// Events per person: 1 (every event a new person, the worst case for the
        /// per-person data keys: one key message per event) or more.
        #[arg(long, default_value_t = 1)]
        per_person: u64,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// The national trust stream (root, 31 authorities, 2,844 localities) verified and
    /// applied, in memory and kept in sled, vs raw ed25519 verification on one core.
    Trust {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Appends over HTTPS with a bearer token vs plain HTTP, keep-alive clients, same run.
    Http {
        /// Events per round and mode.
        #[arg(long, default_value_t = 20_000)]
        events: u64,
        #[arg(long, default_value_t = 32)]
        clients: usize,
        /// Alternating rounds (plain, TLS, plain, …); the best of each is reported.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Durable signed appends/s with group commit vs raw sled and raw ed25519.
    Append {
        #[arg(long, default_value_t = 200_000)]
        events: u64,
        #[arg(long, default_value_t = 1024)]
        clients: usize,
        /// Seconds of the steady 1,000/s latency phase.
        #[arg(long, default_value_t = 5)]
        steady_secs: u64,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ReplayView {
    Card,
    Scorecard,
    Cases,
    Flows,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Json,
    Table,
}

/// jemalloc instead of glibc's allocator (`--features jemalloc`): glibc's
/// `_int_malloc` was ~12% of the machine's CPU hosting the whole country
/// (docs/scale.md).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    tracing_subscriber::fmt().with_env_filter(log_filter()).with_writer(std::io::stderr).init();
    let cli = Cli::parse();
    if !matches!(
        cli.command,
        Command::Node { .. }
            | Command::Host { .. }
            | Command::Sim { .. }
            | Command::Demo { .. }
            | Command::Bench { .. }
    ) {
        restore_sigpipe();
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `YIPAN_LOG` (default `warn`). When it asks for more than INFO anywhere,
/// the libraries that print message bodies at DEBUG and TRACE (NATS messages
/// and JetStream API answers, HTTP payloads: personal tiers) are held at
/// INFO whatever it says (docs/operations.md; the leak scan in tests/cli.rs
/// checks it).
fn log_filter() -> tracing_subscriber::EnvFilter {
    use tracing_subscriber::filter::LevelFilter;
    let mut filter = tracing_subscriber::EnvFilter::try_from_env("YIPAN_LOG").unwrap_or_else(|_| "warn".into());
    if filter.max_level_hint().is_none_or(|most| most > LevelFilter::INFO) {
        for capped in ["async_nats=info", "hyper=info", "hyper_util=info", "rustls=info", "h2=info"] {
            if let Ok(d) = capped.parse() {
                filter = filter.add_directive(d);
            }
        }
    }
    filter
}

/// Rust starts programs with SIGPIPE ignored, so printing to a closed pipe
/// (`yipan log | head`) is an error that `println!` turns into a panic. A
/// command-line tool should end quietly instead, as `cat` does: the default
/// action. Not for commands that serve or run nodes in-process, whose
/// sockets must not kill the process when a peer goes away.
fn restore_sigpipe() {
    // SAFETY: called once at start, before any thread is spawned; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let dir = cli.data_dir;
    let cal = cli.calendar.as_deref();
    let token = match (&cli.token, &cli.token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(f)) => Some(yipan_access::secret::read_private(f)?.trim().to_string()),
        (None, None) => None,
    };
    let (token, ca, insecure) = (token.as_deref(), cli.ca_cert.as_deref(), cli.insecure);
    match cli.command {
        Command::Token { tokens, action } => match action {
            TokenAction::Create { role, name, expires } => {
                access::token_create(&dir, tokens.as_deref(), &role, &name, expires.as_deref())
            }
            TokenAction::List { format } => access::token_list(&dir, tokens.as_deref(), format == Format::Json),
            TokenAction::Revoke { id } => access::token_revoke(&dir, tokens.as_deref(), &id),
        },
        Command::Nats { action: NatsAction::Users { localities, downstream, inbox_provinces, out } } => {
            access::nats_users(&localities, &downstream, &inbox_provinces, &out)
        }
        Command::Nats {
            action: NatsAction::Provision { nats, nkey, replicas, cluster_prefix, provinces, localities },
        } => access::nats_provision(&nats, &nkey, ca, (replicas, cluster_prefix), &provinces, &localities),
        Command::Tls { action: TlsAction::Dev { out, host, client } } => access::tls_dev(&out, &host, &client),
        Command::DeadLetters { action } => {
            let node = config::open(&dir)?;
            let letters = yipan_sync::outbox::dead_letters(&node.log)?;
            match action.unwrap_or(DeadLetterAction::List) {
                DeadLetterAction::List => {
                    println!("{} dead letters", letters.len());
                    for d in &letters {
                        println!("{}  #{:<8} to {}  {} bytes  {}", d.at, d.seq, d.recipient, d.size, d.reason);
                    }
                }
                DeadLetterAction::Retry => {
                    let Some(first) = letters.iter().map(|d| d.seq).min() else {
                        println!("no dead letters");
                        return Ok(ExitCode::SUCCESS);
                    };
                    let cursor = node
                        .log
                        .meta_get(yipan_sync::outbox::CURSOR)?
                        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
                        .map(u64::from_be_bytes)
                        .unwrap_or(0);
                    let rewound = cursor.min(first - 1);
                    node.log.meta_put(yipan_sync::outbox::CURSOR, &rewound.to_be_bytes())?;
                    node.log.meta_put(yipan_sync::outbox::DEAD_LETTERS, b"[]")?;
                    println!("outbox rewound from {cursor} to {rewound}; {} dead letters will be tried again when the node runs", letters.len());
                }
                DeadLetterAction::Drop => {
                    node.log.meta_put(yipan_sync::outbox::DEAD_LETTERS, b"[]")?;
                    println!("dropped {} dead letters from the list", letters.len());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Card { person, as_of, format } => {
            views::card(&dir, cal, &person, as_of.as_deref(), format == Format::Json)
        }
        Command::Scorecard { locality, pair, direction, period, as_of, format } => views::scorecard(
            &dir,
            cal,
            locality.as_deref(),
            pair.as_deref(),
            direction.as_deref(),
            period.as_deref(),
            as_of.as_deref(),
            format == Format::Json,
        ),
        Command::Cases { locality, overdue, as_of, format } => {
            views::cases(&dir, cal, locality.as_deref(), overdue, as_of.as_deref(), format == Format::Json)
        }
        Command::Flows { locality, as_of, format } => {
            views::flows(&dir, cal, locality.as_deref(), as_of.as_deref(), format == Format::Json)
        }
        Command::Init { locality, person_key_secret } => {
            let (locality, secret) = new_locality(&locality, person_key_secret.as_deref())?;
            let public = config::init(&dir, locality, secret.as_deref())?;
            let name = yipan_core::division::name(locality).unwrap_or("");
            println!("initialised locality {locality} {name} in {}", dir.display());
            println!("public key: {}", hex::encode(public.to_bytes()));
            Ok(ExitCode::SUCCESS)
        }
        Command::Append { file, event } => append::run(&dir, file, event),
        Command::Log { author, person, kind, from_seq, limit, format, reveal } => {
            let node = config::open(&dir)?;
            let kind = kind
                .map(|k| {
                    EventKind::parse(&k).with_context(|| {
                        format!("--kind: unknown event kind `{k}` (known: {})", EventKind::known_list())
                    })
                })
                .transpose()?;
            // The kind filter applies while reading, so --limit counts matching events.
            let wanted = |e: &yipan_log::StoredEvent| kind.is_none() || e.kind() == kind;
            let events = match (author, person) {
                (Some(a), None) => {
                    let a = Locality::parse(&a).map_err(|p| anyhow::anyhow!("--author: {p}"))?;
                    node.log.read_author_where(a, from_seq, limit, wanted)?
                }
                (None, Some(p)) => {
                    let p = PersonKey::parse(&p).map_err(|e| anyhow::anyhow!("--person: {e}"))?;
                    node.log.read_person(p)?
                }
                (None, None) => node.log.read_all_where(None, limit, wanted)?,
                (Some(_), Some(_)) => bail!("give --author or --person, not both"),
            };
            let events: Vec<_> =
                events.into_iter().filter(|e| kind.is_none() || e.kind() == kind).take(limit).collect();
            // Shown to whoever runs this on the node's machine: recorded like every release
            // (and not shown if it cannot be recorded).
            let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
            let released: Vec<_> = events
                .iter()
                .filter_map(|e| {
                    yipan_log::disclosure::Disclosure::of(
                        e,
                        "cli",
                        &format!("cli:{}", yipan_core::clip(&user)),
                        "operator",
                        !reveal,
                        "operator with access to the node's data directory (yipan log)",
                    )
                })
                .collect();
            node.log.disclose(&released).context("cannot record the release in the disclosure log; nothing shown")?;
            output::events(&events, format == Format::Json, reveal);
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { format } => {
            let node = config::open(&dir)?;
            let report = node.log.verify()?;
            if format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                output::verify_report(&report);
            }
            Ok(if report.ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Catalogue { action: CatalogueAction::Default } => {
            println!("{}", serde_json::to_string_pretty(&yipan_projections::Catalogue::default())?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Catalogue { action: CatalogueAction::Publish { file, from } } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let catalogue = yipan_projections::Catalogue::from_json(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let node = config::open(&dir)?;
            let occurred = match from {
                Some(t) => yipan_core::time::parse_rfc3339(&t).map_err(|e| anyhow::anyhow!("--from: {e}"))?,
                None => chrono::Utc::now(),
            };
            use sha2::Digest;
            let draft = yipan_proto::v1::EventDraft {
                occurred_at: Some(yipan_core::time::to_ts(occurred)),
                recipients: node
                    .log
                    .roster()
                    .into_iter()
                    .filter(|(l, _)| *l != node.locality)
                    .map(|(l, _)| l.to_string())
                    .collect(),
                body: Some(yipan_proto::v1::EventBody {
                    kind: Some(yipan_proto::v1::event_body::Kind::DutyCatalogPublished(
                        yipan_proto::v1::DutyCatalogPublished {
                            version: catalogue.version.clone(),
                            sha256: sha2::Sha256::digest(text.as_bytes()).to_vec(),
                            document: text,
                        },
                    )),
                }),
                ..Default::default()
            };
            let a = node.log.append(draft)?;
            println!(
                "published catalogue {} as {}#{} (event {}), in force from {}",
                catalogue.version,
                node.locality,
                a.seq,
                a.id,
                occurred.to_rfc3339()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { api, nats, anchor, nkey, roster, compare, as_of, progress, format } => {
            let anchor = anchor
                .map(|a| yipan_log::keyfile::parse_public(&a).map_err(|p| anyhow::anyhow!("--anchor {p}")))
                .transpose()?;
            let source = match (&api, &nats) {
                (Some(url), _) => audit::Source::Api(access::api_client(url, token, ca, insecure)?, url),
                (None, Some(url)) => {
                    if anchor.is_none() && roster.is_none() {
                        bail!("--nats needs --anchor (the root's public key) or, for hand-added keys, --roster");
                    }
                    audit::Source::Nats {
                        cfg: yipan_sync::SyncConfig {
                            nats_url: url.clone(),
                            nats_nkey_file: nkey.clone(),
                            nats_ca_file: ca.map(PathBuf::from),
                            ..Default::default()
                        },
                        roster: roster.as_deref(),
                    }
                }
                _ => audit::Source::DataDir(&dir),
            };
            let compare =
                compare.iter().map(|u| access::api_client(u, token, ca, insecure)).collect::<Result<Vec<_>>>()?;
            audit::run(source, cal, anchor, &compare, as_of.as_deref(), format == Format::Json, progress)
        }
        Command::Tail { api, from, count } => {
            tail::run(access::api_client(&api, token, ca, insecure)?, from.as_deref(), count)
        }
        Command::Export { author, kind, period } => {
            let node = config::open(&dir)?;
            let author =
                author.map(|a| Locality::parse(&a)).transpose().map_err(|e| anyhow::anyhow!("--author: {e}"))?;
            let kinds = kind
                .iter()
                .map(|k| {
                    EventKind::parse(k).with_context(|| {
                        format!("--kind: unknown event kind `{k}` (known: {})", EventKind::known_list())
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let period: Option<yipan_projections::Period> =
                period.map(|p| p.parse()).transpose().map_err(|e| anyhow::anyhow!("--period: {e}"))?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let mut failure = None;
            node.log.for_each_raw(None, usize::MAX, |a, seq, bytes| {
                if failure.is_some() || author.is_some_and(|x| x != a) {
                    return;
                }
                let ev = match yipan_log::StoredEvent::decode(bytes) {
                    Ok(ev) => ev,
                    Err(problem) => {
                        failure = Some(anyhow::anyhow!("stored event {a}#{seq} is damaged: {problem}"));
                        return;
                    }
                };
                if !kinds.is_empty() && !ev.kind().is_some_and(|k| kinds.contains(&k)) {
                    return;
                }
                if let Some(p) = period {
                    let occurred = ev.envelope.occurred_at.as_ref().and_then(yipan_core::time::from_ts);
                    if !occurred.is_some_and(|t| p.contains(yipan_projections::calendar::date_of(t))) {
                        return;
                    }
                }
                use std::io::Write;
                if let Err(e) = writeln!(out, "{}", ev.to_json(false)) {
                    failure = Some(e.into());
                }
            })?;
            if let Some(e) = failure {
                return Err(e);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay { as_of, view, person, locality, pair, period, format } => {
            let json = format == Format::Json;
            let t = Some(as_of.as_str());
            match view {
                ReplayView::Card => {
                    let person = person.context("--view card needs --person KEY")?;
                    views::card(&dir, cal, &person, t, json)
                }
                ReplayView::Scorecard => {
                    views::scorecard(&dir, cal, locality.as_deref(), pair.as_deref(), None, period.as_deref(), t, json)
                }
                ReplayView::Cases => views::cases(&dir, cal, locality.as_deref(), false, t, json),
                ReplayView::Flows => views::flows(&dir, cal, locality.as_deref(), t, json),
            }
        }
        Command::Authority { dir: adir, action } => trust::authority(&adir, action, ca),
        Command::Key { action } => trust::key(&dir, action),
        Command::Roster { action: RosterAction::Show { format } } => trust::roster_show(&dir, format == Format::Json),
        Command::Roster { action } => {
            let node = config::open(&dir)?;
            match action {
                RosterAction::Show { .. } => unreachable!("handled above"),
                RosterAction::Add { locality, public_key, from_data_dir } => {
                    eprintln!("hand-adding a key without a certificate: the air-gapped exception (docs/trust.md)");
                    let l = Locality::parse(&locality).map_err(|p| anyhow::anyhow!("--locality: {p}"))?;
                    let text = match (public_key, from_data_dir) {
                        (Some(k), _) => k,
                        (None, Some(d)) => std::fs::read_to_string(yipan_log::keyfile::public_path(&d))
                            .with_context(|| format!("reading the public key of {}", d.display()))?,
                        (None, None) => bail!("give --public-key or --from-data-dir"),
                    };
                    let key =
                        yipan_log::keyfile::parse_public(&text).map_err(|p| anyhow::anyhow!("--public-key {p}"))?;
                    let added = node.log.roster_add(l, key)?;
                    println!("{}", if added { format!("added {l}") } else { format!("{l} already has this key") });
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Disclosures { person, id_number, format } => {
            let node = config::open(&dir)?;
            let person = match (person, id_number) {
                (Some(p), _) => Some(yipan_core::PersonKey::parse(&p).map_err(|e| anyhow::anyhow!("--person: {e}"))?),
                (None, Some(id)) => Some(person_of_id_number(&id, node.person_secret.as_deref())?),
                (None, None) => None,
            };
            let entries = match person {
                Some(p) => node.log.disclosures_of(&p)?,
                None => node.log.disclosures_page(0, usize::MAX)?,
            };
            if format == Format::Json {
                for e in &entries {
                    println!("{}", serde_json::to_string(e)?);
                }
            } else {
                let whom = person.map(|p| format!(" of person {p}")).unwrap_or_default();
                println!("{} releases of personal tiers{whom}", entries.len());
                for e in &entries {
                    println!("  {e}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Erase { person, id_number, tiers, basis, reference, answer_days, reapply } => {
            let node = config::open(&dir)?;
            if reapply {
                let done = yipan_node::erasure::reapply(&node.log)?;
                println!("re-applied every erasure on record: {} tier payloads dropped again", done.payloads);
                return Ok(ExitCode::SUCCESS);
            }
            let person = match (person, id_number) {
                (Some(p), _) => yipan_core::PersonKey::parse(&p).map_err(|e| anyhow::anyhow!("--person: {e}"))?,
                (None, Some(id)) => person_of_id_number(&id, node.person_secret.as_deref())?,
                (None, None) => bail!("--person or --id-number: whose data to erase"),
            };
            let tiers = tiers
                .iter()
                .map(|t| {
                    yipan_core::kind::tier_from_name(t).with_context(|| {
                        format!("--tier: `{}` is not identity, contact or health", yipan_core::clip(t))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let basis_name = basis.unwrap_or_default();
            let basis = yipan_proto::v1::ErasureBasis::from_str_name(&format!("ERASURE_BASIS_{}", basis_name.to_uppercase()))
                .filter(|_| !basis_name.is_empty())
                .with_context(|| {
                    format!(
                        "--basis: `{}` is not person_request, retention_expired, purpose_fulfilled, consent_withdrawn or unlawful_processing",
                        yipan_core::clip(&basis_name)
                    )
                })?;
            let calendar = yipan_node::views::load_calendar(cal)?;
            let req = yipan_node::erasure::Request { person, tiers, basis, reference };
            let outcome = yipan_node::erasure::request(&node.log, &calendar, answer_days, &req, chrono::Utc::now())
                .map_err(|r| anyhow::anyhow!("{}: {}", r.field, r.message))?;
            println!(
                "erased here: {} tier payloads of {} events; {} data keys destroyed",
                outcome.erased.payloads, outcome.erased.events, outcome.erased.keys_destroyed
            );
            for r in &outcome.requests {
                println!(
                    "request {} (origin {}, residence {}) to {} — answer by {}",
                    r.id,
                    r.origin,
                    r.residence,
                    r.recipients.join(", "),
                    r.answer_by.with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap()).format("%Y-%m-%d")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Erasures { person, as_of, format } => {
            let node = config::open(&dir)?;
            let person = person
                .map(|p| yipan_core::PersonKey::parse(&p).map_err(|e| anyhow::anyhow!("--person: {e}")))
                .transpose()?;
            let as_of =
                yipan_node::views::parse_as_of(as_of.as_deref()).map_err(|e| anyhow::anyhow!("--as-of: {e}"))?;
            let registry = yipan_node::erasure::Registry::default();
            registry.load(&node.log)?;
            let views = yipan_node::erasure::views(&registry, node.log.locality(), person.as_ref(), as_of);
            if format == Format::Json {
                for v in &views {
                    println!("{}", serde_json::to_string(v)?);
                }
            } else {
                println!("{} erasure requests", views.len());
                for v in &views {
                    println!(
                        "  {} {} by {} person {} tiers {} ({}) answer by {}",
                        v.direction,
                        v.id,
                        v.author,
                        v.person,
                        v.tiers.join("+"),
                        v.basis.trim_start_matches("ERASURE_BASIS_").to_lowercase(),
                        &v.answer_by[..10]
                    );
                    for a in &v.answers {
                        let days = a.overdue_days.map(|d| format!(" by {d} days")).unwrap_or_default();
                        println!("      {} {}{days}", a.locality, a.state);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Quarantine { format } => {
            let node = config::open(&dir)?;
            let q = node.log.quarantine()?;
            if format == Format::Json {
                for e in &q {
                    println!("{}", serde_json::to_string(e)?);
                }
            } else {
                println!("{} quarantined", q.len());
                for e in &q {
                    println!("{}  {:<8} {}", e.received_at, e.author.as_deref().unwrap_or("?"), e.reason);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Node { action: NodeAction::Run { config } } => {
            let cfg = yipan_node::NodeConfig::load(&config)?;
            let (listen, tls) = (cfg.listen.clone(), cfg.http.tls.is_some());
            serve_until_signal("node", &listen, tls, |l| yipan_node::run(cfg, l, shutdown_signal()))
        }
        Command::Sim {
            action:
                SimAction::National {
                    persons,
                    per_province,
                    workers,
                    clusters,
                    servers,
                    no_kill,
                    tenant_consumers,
                    tiers,
                    seed,
                    batch,
                    cache_mib,
                    publish_budget,
                    out,
                },
        } => {
            let opts = sim::Options {
                persons,
                per_province,
                workers: workers.max(1),
                clusters: clusters.max(1),
                servers: servers.max(1),
                kill: !no_kill,
                shared_inbox: !tenant_consumers,
                tiers: tiers.clamp(0.0, 1.0),
                seed,
                batch: batch.max(1),
                cache_mib,
                publish_budget,
                out: out.clone(),
            };
            let summary = runtime()?.block_on(sim::run(opts))?;
            print!("{}", sim::markdown(&summary));
            println!(
                "
written to {}",
                out.display()
            );
            Ok(if sim::passed(&summary) { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Sim { action: SimAction::Worker { spec } } => {
            runtime()?.block_on(sim::worker::run(spec))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Host { action: HostAction::Init { dir } } => {
            yipan_node::host::init(&dir)?;
            println!("initialised host directory {}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Host { action: HostAction::AddTenant { dir, locality, person_key_secret } } => {
            let (locality, secret) = new_locality(&locality, person_key_secret.as_deref())?;
            let public = yipan_node::host::add_tenant(&dir, locality, secret.as_deref())?;
            let name = yipan_core::division::name(locality).unwrap_or("");
            println!(
                "prepared tenant {locality} {name} in {}",
                yipan_node::host::tenants_dir(&dir).join(locality.to_string()).display()
            );
            println!("public key: {}", hex::encode(public.to_bytes()));
            println!("next: certify the key, add NATS user locality-{locality}, then POST /host/tenants {{\"locality\": \"{locality}\"}}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Host { action: HostAction::Run { config } } => {
            let cfg = yipan_node::host::HostConfig::load(&config)?;
            let (listen, tls) = (cfg.listen.clone(), cfg.http.tls.is_some());
            serve_until_signal("host", &listen, tls, |l| yipan_node::host::run(cfg, l, shutdown_signal()))
        }
        Command::Demo { keep, serve } => {
            runtime()?.block_on(demo::run(keep, serve))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { what: BenchWhat::Audit { events, stream, format } } => {
            let report = bench_audit::run(events, stream)?;
            print_report(&report, format)
        }
        Command::Bench { what: BenchWhat::Trust { format } } => {
            let report = bench_trust::run()?;
            print_report(&report, format)
        }
        Command::Bench { what: BenchWhat::Projections { events, format } } => {
            let report = bench_projections::run(events)?;
            print_report(&report, format)
        }
        Command::Bench { what: BenchWhat::Http { events, clients, rounds, format } } => {
            let report = runtime()?.block_on(bench_http::run(events, clients.max(1), rounds.max(1)))?;
            print_report(&report, format)
        }
        Command::Bench { what: BenchWhat::Replicate { events, steady_secs, per_person, format } } => {
            let report = runtime()?.block_on(bench_replicate::run(events, steady_secs, per_person.max(1)))?;
            print_report(&report, format)
        }
        Command::Bench { what: BenchWhat::Append { events, clients, steady_secs, format } } => {
            let tmp = tempfile::tempdir_in(std::env::temp_dir())?;
            let cfg = yipan_log::bench::AppendBenchConfig {
                events,
                clients,
                steady_duration: std::time::Duration::from_secs(steady_secs),
                ..Default::default()
            };
            let report = yipan_log::bench::run_append_bench(tmp.path(), &cfg)?;
            print_report(&report, format)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Prints a benchmark report as JSON or as its table.
fn print_report<R: serde::Serialize + std::fmt::Display>(report: &R, format: Format) -> Result<ExitCode> {
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        println!("{report}");
    }
    Ok(ExitCode::SUCCESS)
}

/// A locality about to get a data directory or a host's tenant directory:
/// a current county-level unit (the registry names it), with the
/// deployment's person-key secret if given.
fn new_locality(code: &str, secret: Option<&str>) -> Result<(Locality, Option<Vec<u8>>)> {
    let locality = Locality::parse(code).map_err(|p| anyhow::anyhow!("--locality: {p}"))?;
    yipan_core::division::check_county("--locality", locality).map_err(|e| anyhow::anyhow!("{e}"))?;
    let secret = secret.map(|s| hex::decode(s.trim()).context("--person-key-secret must be hex")).transpose()?;
    Ok((locality, secret))
}

/// Binds `listen`, says where `what` listens, and serves until SIGINT or SIGTERM.
fn serve_until_signal<F>(
    what: &str,
    listen: &str,
    tls: bool,
    serve: impl FnOnce(tokio::net::TcpListener) -> F,
) -> Result<ExitCode>
where
    F: std::future::Future<Output = yipan_node::Result<()>>,
{
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
        let scheme = if tls { "https" } else { "http" };
        println!("{what} listening on {scheme}://{}", listener.local_addr()?);
        serve(listener).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The person key of an `--id-number` under the data directory's secret; a wrong
/// check digit is a warning on stderr (such records exist), a wrong shape an error.
fn person_of_id_number(id: &str, secret: Option<&[u8]>) -> Result<yipan_core::PersonKey> {
    let secret =
        secret.context("this data directory has no person-key secret; give --person KEY instead of an ID number")?;
    let (key, check) =
        yipan_core::PersonKey::of_id_number(id, secret).map_err(|e| anyhow::anyhow!("--id-number: {e}"))?;
    if check == yipan_core::person::IdCheck::BadCheckDigit {
        eprintln!("warning: --id-number: the check digit is wrong (value not shown); is it typed right?");
    }
    Ok(key)
}
