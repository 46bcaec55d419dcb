//! `firedoor-server`: run the broker, manage users and tokens, check the audit log.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use firedoor_server::audit::cli_actor;
use firedoor_server::clock::{Clock, SystemClock};
use firedoor_server::connectors::Connectors;
use firedoor_server::store::DatabaseUrl;
use firedoor_server::{auth, db_path, Config, Tls};
use secrecy::ExposeSecret;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use zeroize::Zeroizing;

mod audit_cli;
mod report_cli;

#[global_allocator]
static ALLOCATOR: firedoor_server::ServerAllocator = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "firedoor-server",
    version,
    about = "The Firedoor access broker"
)]
struct Cli {
    /// Where the broker keeps its database and key.
    #[arg(
        long,
        global = true,
        env = "FIREDOOR_DATA_DIR",
        default_value = "firedoor-data"
    )]
    data_dir: PathBuf,
    /// The broker's key file (age identity and envelope signing key; created 0600
    /// on first start). Default: <data-dir>/broker.key.
    #[arg(long, global = true, env = "FIREDOOR_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// The audit anchor: an append-only file of signed audit heads, best on another
    /// disk than the database. Default: <data-dir>/audit-anchor.log.
    #[arg(long, global = true, env = "FIREDOOR_AUDIT_ANCHOR")]
    audit_anchor: Option<PathBuf>,
    /// The store: sqlite://PATH or postgres://USER@HOST/DB (several brokers share
    /// one PostgreSQL database). Default: the SQLite file <data-dir>/firedoor.db.
    /// (Checked after parsing, so an error never echoes a password.)
    #[arg(
        long = "database",
        global = true,
        env = "FIREDOOR_DATABASE_URL",
        hide_env_values = true
    )]
    database_url: Option<String>,
    #[arg(skip)]
    database: Option<DatabaseUrl>,
    /// Log lines on standard error: `text`, or `json` (one JSON object per line, for
    /// a log shipper). The level is set by FIREDOOR_LOG (e.g. `info,sqlx=warn`).
    #[arg(
        long,
        global = true,
        env = "FIREDOOR_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the broker with a policy file.
    Serve {
        #[arg(long, env = "FIREDOOR_POLICY")]
        policy: PathBuf,
        #[arg(long, default_value = "127.0.0.1:7878")]
        listen: SocketAddr,
        /// PEM certificate chain for TLS.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key for TLS.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Serve plain HTTP on a non-loopback address because a TLS proxy in front
        /// terminates TLS.
        #[arg(long, conflicts_with = "tls_cert")]
        behind_tls_proxy: bool,
        /// A file holding the bearer token Prometheus must send to `GET /metrics`
        /// (or the token itself in FIREDOOR_METRICS_TOKEN). Without either,
        /// /metrics is open: it shows counts and timings, no names or ids.
        #[arg(long, env = "FIREDOOR_METRICS_TOKEN_FILE")]
        metrics_token_file: Option<PathBuf>,
        /// On SIGTERM, answer /readyz with 503 and keep serving this many seconds
        /// before stopping, so a load balancer moves traffic away first (set it
        /// above the balancer's check interval × fall count).
        #[arg(long, env = "FIREDOOR_DRAIN_SECS", default_value_t = 0)]
        drain_secs: u64,
        /// How long live events are kept for event streams to resume from
        /// (`Last-Event-ID`); a stream resuming below what was pruned is told to
        /// resync. E.g. 7d, 36h.
        #[arg(long, env = "FIREDOOR_EVENT_RETENTION", default_value = "7d", value_parser = parse_retention)]
        event_retention: i64,
        /// Shift the broker's clock (expiry drills). Recorded in the audit log.
        #[arg(long, default_value_t = 0, hide = true, allow_hyphen_values = true)]
        clock_offset_secs: i64,
    },
    /// Run the broker with the built-in demo policy and demo users (no external
    /// system needed); prints the URL and a sign-in token for each user.
    Demo {
        #[arg(long, default_value = "127.0.0.1:7878")]
        listen: SocketAddr,
    },
    /// Check a policy file and exit.
    CheckPolicy { file: PathBuf },
    /// Manage users and their API tokens.
    User {
        #[command(subcommand)]
        cmd: UserCmd,
    },
    /// Move a store to another database.
    Store {
        #[command(subcommand)]
        cmd: StoreCmd,
    },
    /// Verify or export the audit log.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// Break-glass secrets: store, list, rotate. Values are never printed.
    Secret {
        #[command(subcommand)]
        cmd: SecretCmd,
    },
    /// Devices enrolled for offline break glass.
    Device {
        #[command(subcommand)]
        cmd: DeviceCmd,
    },
    /// On-call schedules of the policy: who is on call, overrides.
    Oncall {
        #[command(subcommand)]
        cmd: OncallCmd,
    },
    /// Notifications to chat and webhooks: deliveries, dead letters, sending again.
    Notifications {
        #[command(subcommand)]
        cmd: NotificationsCmd,
    },
    /// SSH integrations: what a host needs to trust the broker's certificates, CA
    /// rotation.
    Ssh {
        #[command(subcommand)]
        cmd: SshCmd,
    },
    // issue 14: drills
    /// Break-glass drills: every eligible device proves it opens its envelope,
    /// without showing the secret.
    Drill {
        #[command(subcommand)]
        cmd: DrillCmd,
    },
    /// Per secret: who could open it offline today (fresh envelope, last drill),
    /// and whether enough people are ready.
    Readiness {
        /// Print JSON (the same as `GET /api/v1/readiness`).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        policy: PolicyArg,
    },
    // issue 14: uses
    /// Break-glass uses: list them (open ones first) and classify them.
    Unlocks {
        #[command(subcommand)]
        cmd: UnlocksCmd,
    },
    // issue 14: report
    /// The record after an incident: the timeline of an incident, a grant or a
    /// break-glass unlock, each line tied to its audit record and hash; and the
    /// check of a report against the audit log.
    Report {
        #[command(subcommand)]
        cmd: ReportCmd,
    },
}

#[derive(Subcommand)]
enum DrillCmd {
    /// Start a drill of a secret (or of every secret with a value: `all`).
    Start {
        name: String,
        #[command(flatten)]
        policy: PolicyArg,
    },
    /// The latest drills and who passed.
    List {
        #[command(flatten)]
        policy: PolicyArg,
    },
}

// issue 14: report
#[derive(Subcommand)]
enum ReportCmd {
    /// An incident (its id inc_… or its source's id, e.g. INC-123): the requests
    /// and grants made for it and the break-glass unlocks whose reason names it.
    Incident {
        id: String,
        #[command(flatten)]
        out: ReportOut,
    },
    /// A grant: its request, approvals, provisioning, credential views,
    /// extensions, revocation.
    Grant {
        id: String,
        #[command(flatten)]
        out: ReportOut,
    },
    /// A break-glass unlock, named by the seq of its audit record (`audit export`
    /// shows it), and the rotation that followed.
    Unlock {
        id: String,
        #[command(flatten)]
        out: ReportOut,
    },
    /// Check a JSON report against the audit log (records, hashes, the chain,
    /// every line's words, nothing left out); exits 1 naming the first bad line.
    Verify {
        file: PathBuf,
        /// The broker's public key, base64 (default: from the key file).
        #[arg(long, value_name = "KEY")]
        public_key: Option<String>,
    },
}

#[derive(clap::Args)]
struct ReportOut {
    #[arg(long, value_enum, default_value = "md")]
    format: report_cli::Format,
    /// File to write (default: standard output).
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Subcommand)]
enum SshCmd {
    /// Prints a host's setup for an SSH integration: the CA keys, the sshd_config
    /// lines, the principals files, and a script and systemd timer that fetch the
    /// revocation list.
    HostSetup {
        integration: String,
        /// The broker's URL as hosts reach it (https in production).
        #[arg(long)]
        broker_url: String,
        #[command(flatten)]
        policy: PolicyArg,
    },
    /// Starts a CA rotation: a new key hosts trust at once and that signs after
    /// --overlap (hosts must have fetched it by then); recorded in the audit log.
    RotateCa {
        integration: String,
        #[arg(long, value_parser = parse_ttl, default_value = "1d")]
        overlap: i64,
        #[command(flatten)]
        policy: PolicyArg,
    },
}

#[derive(Subcommand)]
enum NotificationsCmd {
    /// Deliveries, newest first (state: pending, delivered, dead).
    List {
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[command(flatten)]
        policy: PolicyArg,
    },
    /// Sends a dead delivery (msg_…) again (recorded in the audit log).
    Retry {
        id: String,
        #[command(flatten)]
        policy: PolicyArg,
    },
}

#[derive(Subcommand)]
enum OncallCmd {
    /// Every schedule: who is on call now, until when, and the overrides to come.
    List {
        #[command(flatten)]
        policy: PolicyArg,
    },
    /// Someone covers a schedule for a while (recorded in the audit log).
    Override {
        /// The schedule (`[oncall.NAME]` in the policy).
        schedule: String,
        #[arg(long)]
        user: String,
        /// When it starts (RFC 3339, e.g. 2026-11-27T18:00:00Z; default: now).
        #[arg(long, value_parser = parse_time)]
        from: Option<chrono::DateTime<chrono::Utc>>,
        /// When it ends (RFC 3339).
        #[arg(long, value_parser = parse_time, required_unless_present = "for_")]
        until: Option<chrono::DateTime<chrono::Utc>>,
        /// How long it lasts from its start instead of --until (e.g. 4h, 2d).
        #[arg(long = "for", id = "for_", value_parser = parse_ttl, conflicts_with = "until")]
        for_: Option<i64>,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        policy: PolicyArg,
    },
    /// Take an override back by its id (ovr_…).
    RemoveOverride {
        schedule: String,
        id: String,
        #[command(flatten)]
        policy: PolicyArg,
    },
}

fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| format!("'{text}' is not an RFC 3339 time like 2026-11-27T18:00:00Z"))
}

#[derive(clap::Args)]
struct PolicyArg {
    /// The policy file the broker serves (it declares the secrets).
    #[arg(long, env = "FIREDOOR_POLICY")]
    policy: PathBuf,
}

#[derive(Subcommand)]
enum SecretCmd {
    /// Store a new value of a secret declared in the policy (version + 1) and seal it
    /// to every eligible device. The value is read from a file, or from standard
    /// input with `--from-file -`; one trailing newline is dropped.
    Put {
        name: String,
        #[arg(long, value_name = "FILE")]
        from_file: PathBuf,
        #[command(flatten)]
        policy: PolicyArg,
    },
    /// List the policy's secrets with version, rotation state and sealed devices.
    List {
        #[command(flatten)]
        policy: PolicyArg,
    },
    /// Rotate a secret now through its connector (a new random value).
    Rotate {
        name: String,
        #[command(flatten)]
        policy: PolicyArg,
    },
}

// issue 14: uses
#[derive(Subcommand)]
enum UnlocksCmd {
    /// Every break-glass use, open (unclassified) ones first, with the planned
    /// rotation of the value it opened.
    List {
        /// Only the open (unclassified) uses.
        #[arg(long)]
        open: bool,
        #[command(flatten)]
        policy: PolicyArg,
    },
    /// Classify a use (use_…): `--kind drill`, `--kind incident --incident INC-123`,
    /// or `--kind other --note "..."`. Changing a classification is audited.
    Classify {
        id: String,
        #[arg(long, value_parser = ["drill", "incident", "other"])]
        kind: String,
        #[arg(long)]
        incident: Option<String>,
        #[arg(long)]
        note: Option<String>,
        #[command(flatten)]
        policy: PolicyArg,
    },
}

#[derive(Subcommand)]
enum DeviceCmd {
    /// List enrolled devices (all users, or one).
    List {
        #[arg(long)]
        user: Option<String>,
    },
}

#[derive(Subcommand)]
enum UserCmd {
    /// Create a user; prints a new API token as the last line.
    Add {
        name: String,
        #[arg(long = "group")]
        groups: Vec<String>,
        #[arg(long)]
        admin: bool,
        /// How long the token works (e.g. 30d, 12h; default 90d, at most 366d).
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<i64>,
    },
    /// List users.
    List,
    /// Disable a user: revokes every token and device, revokes live grants (the
    /// running broker does it through the connectors), cancels pending requests and
    /// rotates every break-glass secret sealed to one of their devices.
    Disable { name: String },
    /// Replace a user's groups (repeat --group; none: no groups). Secrets they may
    /// no longer unlock are withdrawn from their devices and rotated.
    SetGroups {
        name: String,
        #[arg(long = "group")]
        groups: Vec<String>,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Issue another token for a user; prints it as the last line.
    Issue {
        name: String,
        /// How long the token works (e.g. 30d, 12h; default 90d, at most 366d).
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<i64>,
    },
    /// Revoke a token by its id (tok_…).
    Revoke { id: String },
    /// List a user's token ids.
    List { name: String },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Check the hash chain, every record's signature and the anchor file; exits
    /// non-zero naming the first bad record. With --export, checks an exported file
    /// with only the broker's public key (no database, no key file).
    Verify {
        /// An export (`audit export`) to check instead of the database.
        #[arg(long, value_name = "FILE", requires = "public_key")]
        export: Option<PathBuf>,
        /// The broker's public key, base64, as `audit public-key` and
        /// `GET /api/v1/broker` (signing_key) show it. Default: from the key file.
        #[arg(long, value_name = "KEY")]
        public_key: Option<String>,
    },
    /// Print the public key that verifies the audit log's signatures (base64
    /// ed25519, the `signing_key` of `GET /api/v1/broker`) and its fingerprint.
    PublicKey,
    /// Where the audit stream goes (the policy's [audit_sinks.*]): how far each
    /// receiver has taken it, the lag, the last failure. Exits 1 while a sink is
    /// failing.
    Sinks {
        #[command(flatten)]
        policy: PolicyArg,
    },
    /// Write the log as JSON lines.
    Export {
        /// File to write (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum StoreCmd {
    /// Copy a whole store into an empty one (e.g. a team's SQLite file into the
    /// PostgreSQL database several brokers will share). Stop the brokers first; the
    /// audit chain, signatures and event ids are kept, so `audit verify` passes on
    /// the copy with the same key file.
    Copy {
        /// The store to read: sqlite://PATH or postgres://…
        #[arg(long)]
        from: String,
        /// The empty store to fill (its schema is created).
        #[arg(long)]
        to: String,
    },
}

fn parse_database(text: &str) -> anyhow::Result<DatabaseUrl> {
    DatabaseUrl::parse(text).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Fails unless the store exists: a SQLite file must be there already (a typo in
/// --data-dir must not create an empty one); a PostgreSQL URL is checked on open.
fn require_store(data_dir: &Path, database: Option<&DatabaseUrl>) -> anyhow::Result<()> {
    let path = match database {
        None => db_path(data_dir),
        Some(DatabaseUrl::Sqlite(p)) => p.clone(),
        Some(DatabaseUrl::Postgres(_)) => return Ok(()),
    };
    if !path.exists() {
        bail!("no broker database at {}", path.display());
    }
    Ok(())
}

fn parse_retention(text: &str) -> Result<i64, String> {
    let secs = firedoor_core::duration::parse_duration(text)?;
    if !(3600..=366 * 86_400).contains(&secs) {
        return Err("keep live events between 1h and 366d".into());
    }
    Ok(secs)
}

fn parse_ttl(text: &str) -> Result<i64, String> {
    let secs = firedoor_core::duration::parse_duration(text)?;
    auth::check_ttl(secs).map_err(|e| e.to_string())?;
    Ok(secs)
}

/// The broker over the data directory, for user commands that change devices and
/// secrets' rotation state (no connectors: the running broker does that work).
async fn open_for_users(
    data_dir: &Path,
    database: Option<&DatabaseUrl>,
    key_file: Option<&Path>,
) -> anyhow::Result<firedoor_server::service::Broker> {
    require_store(data_dir, database)?;
    firedoor_server::open_broker(
        data_dir,
        database,
        key_file,
        firedoor_core::policy::parse_policy("empty", "")?,
        Connectors::new(),
        Arc::new(SystemClock::default()),
    )
    .await
}

/// Where the CLI's store and key are.
struct CliStore {
    data_dir: PathBuf,
    database: Option<DatabaseUrl>,
    key_file: Option<PathBuf>,
}

impl CliStore {
    fn of(cli: &Cli) -> CliStore {
        CliStore {
            data_dir: cli.data_dir.clone(),
            database: cli.database.clone(),
            key_file: cli.key_file.clone(),
        }
    }
}

/// The broker over the CLI's store, serving the policy at `policy`, on the system
/// clock (for commands that run one operation and exit).
async fn open_cli_broker(
    at: &CliStore,
    policy: PathBuf,
) -> anyhow::Result<firedoor_server::service::Broker> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::default());
    firedoor_server::open_broker(
        &at.data_dir,
        at.database.as_ref(),
        at.key_file.as_deref(),
        load_policy(&policy)?,
        Connectors::new(),
        clock,
    )
    .await
}

fn load_policy(path: &PathBuf) -> anyhow::Result<firedoor_core::policy::Policy> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading policy {}", path.display()))?;
    Ok(firedoor_core::policy::parse_policy(
        &path.display().to_string(),
        &text,
    )?)
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    firedoor_server::logging::init(matches!(cli.log_format, LogFormat::Json));
    match run(cli).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}

async fn run(mut cli: Cli) -> anyhow::Result<i32> {
    cli.database = cli
        .database_url
        .as_deref()
        .map(parse_database)
        .transpose()?;
    let now = || SystemClock::default().now();
    let at = CliStore::of(&cli);
    match cli.cmd {
        Cmd::CheckPolicy { file } => {
            let p = load_policy(&file)?;
            let schedules = if p.oncall.is_empty() {
                String::new()
            } else {
                format!(", {} on-call schedules", p.oncall.len())
            };
            println!(
                "{}: ok ({} integrations, {} bundles, {} flows{schedules})",
                file.display(),
                p.integrations.len(),
                p.bundles.len(),
                p.flows.len()
            );
            Ok(0)
        }
        Cmd::Serve {
            policy,
            listen,
            tls_cert,
            tls_key,
            behind_tls_proxy,
            metrics_token_file,
            drain_secs,
            event_retention,
            clock_offset_secs,
        } => {
            let pol = load_policy(&policy)?;
            let mut cfg = Config::new(&cli.data_dir, pol);
            cfg.database = cli.database.clone();
            cfg.event_retention = chrono::Duration::seconds(event_retention);
            cfg.metrics_token = firedoor_server::logging::metrics_token(
                metrics_token_file.as_deref(),
                std::env::var("FIREDOOR_METRICS_TOKEN").ok(),
            )?;
            cfg.key_file = cli.key_file.clone();
            cfg.audit_anchor = cli.audit_anchor.clone();
            cfg.listen = listen;
            cfg.tls = match (tls_cert, tls_key, behind_tls_proxy) {
                (Some(cert), Some(key), _) => Tls::Files { cert, key },
                (_, _, true) => Tls::BehindProxy,
                _ => Tls::None,
            };
            cfg.clock = Arc::new(SystemClock {
                offset_secs: clock_offset_secs,
            });
            cfg.start_details = serde_json::json!({ "policy": policy.display().to_string() });
            if clock_offset_secs != 0 {
                cfg.start_details["clock_offset_secs"] = clock_offset_secs.into();
                tracing::warn!(clock_offset_secs, "the broker's clock is shifted");
            }
            let running = firedoor_server::start(cfg).await?;
            println!("firedoor broker listening on {}", running.url());
            println!(
                "API: {}/api/v1 (OpenAPI: {}/api/v1/openapi.json)",
                running.url(),
                running.url()
            );
            std::io::stdout().flush()?;
            wait_for_signal().await;
            firedoor_server::logging::drain(&running.broker, drain_secs).await;
            running.stop().await;
            Ok(0)
        }
        Cmd::Demo { listen } => {
            let pol = firedoor_core::policy::parse_policy(
                "demo-policy.toml",
                firedoor_server::DEMO_POLICY,
            )?;
            let pool = firedoor_server::open_store(
                &cli.data_dir,
                cli.database.as_ref(),
                cli.key_file.as_deref(),
            )
            .await?;
            let actor = cli_actor();
            let mut tokens = Vec::new();
            for (name, groups, admin) in [
                ("alice", vec!["oncall"], false),
                ("bob", vec!["oncall", "sre-leads"], false),
                ("carol", vec!["security"], true),
            ] {
                let groups: Vec<String> = groups.into_iter().map(String::from).collect();
                let issued = if auth::get_user(&pool, name).await?.is_some() {
                    auth::issue_token(&pool, &actor, name, now()).await?
                } else {
                    auth::add_user(&pool, &actor, name, &groups, admin, now()).await?
                };
                tokens.push((name, groups, admin, issued));
            }
            pool.close().await;
            let mut cfg = Config::new(&cli.data_dir, pol);
            cfg.database = cli.database.clone();
            cfg.key_file = cli.key_file.clone();
            cfg.audit_anchor = cli.audit_anchor.clone();
            cfg.listen = listen;
            cfg.start_details = serde_json::json!({ "policy": "built-in demo policy" });
            let running = firedoor_server::start(cfg).await?;
            let seeded = running.broker.seed_missing_secrets(&actor).await?;
            println!("Firedoor demo broker (DEMO connector: nothing real is provisioned)");
            println!("URL: {}", running.url());
            println!("data: {}", cli.data_dir.display());
            for (name, version) in &seeded {
                println!("break-glass secret {name}: seeded version {version} (the value is only shown to whoever unlocks it)");
            }
            for (name, groups, admin, issued) in &tokens {
                println!(
                    "{name:<6} groups={}{}  token: {}",
                    groups.join(","),
                    if *admin { " admin" } else { "" },
                    issued.token.expose_secret()
                );
            }
            println!(
                "Try: curl -H \"Authorization: Bearer <alice's token>\" {}/api/v1/bundles",
                running.url()
            );
            std::io::stdout().flush()?;
            wait_for_signal().await;
            running.stop().await;
            Ok(0)
        }
        Cmd::User { cmd } => {
            let pool = firedoor_server::open_store(
                &cli.data_dir,
                cli.database.as_ref(),
                cli.key_file.as_deref(),
            )
            .await?;
            let actor = cli_actor();
            match cmd {
                UserCmd::Add {
                    name,
                    groups,
                    admin,
                    ttl,
                } => {
                    let issued = auth::add_user_with_ttl(
                        &pool,
                        &actor,
                        &name,
                        &groups,
                        admin,
                        now(),
                        ttl.unwrap_or(auth::DEFAULT_TOKEN_TTL_SECS),
                    )
                    .await?;
                    println!(
                        "created user {name} (groups: {}{})",
                        groups.join(", "),
                        if admin { "; admin" } else { "" }
                    );
                    println!("token id: {}", issued.id);
                    println!("expires: {}", day(issued.expires_at));
                    println!("{}", issued.token.expose_secret());
                }
                UserCmd::List => {
                    for u in auth::all_users(pool.users()).await? {
                        let disabled = firedoor_server::access::is_disabled(&pool, &u.name).await?;
                        println!(
                            "{}\tgroups={}{}{}",
                            u.name,
                            u.groups.join(","),
                            if u.admin { "\tadmin" } else { "" },
                            if disabled { "\tDISABLED" } else { "" }
                        );
                    }
                }
                UserCmd::Disable { name } => {
                    pool.close().await;
                    let b = open_for_users(
                        &cli.data_dir,
                        cli.database.as_ref(),
                        cli.key_file.as_deref(),
                    )
                    .await?;
                    let d = b.disable_user(&actor, &name, false).await?;
                    println!(
                        "disabled {name}: {} tokens and {} devices revoked, {} live grants being revoked by the broker, {} pending requests cancelled",
                        d.tokens_revoked, d.devices_revoked, d.grants_revoked, d.requests_cancelled
                    );
                    if !d.rotating.is_empty() {
                        println!(
                            "rotating (held by their devices): {}",
                            d.rotating.join(", ")
                        );
                    }
                }
                UserCmd::SetGroups { name, groups } => {
                    pool.close().await;
                    let b = open_for_users(
                        &cli.data_dir,
                        cli.database.as_ref(),
                        cli.key_file.as_deref(),
                    )
                    .await?;
                    let g = b.set_groups(&actor, &name, &groups, false).await?;
                    println!(
                        "{name} is now in groups: {} (the broker withdraws and rotates secrets they may no longer unlock)",
                        if g.is_empty() { "(none)".to_string() } else { g.join(", ") }
                    );
                }
                UserCmd::Token { cmd } => match cmd {
                    TokenCmd::Issue { name, ttl } => {
                        let issued = auth::issue_token_with_ttl(
                            &pool,
                            &actor,
                            &name,
                            now(),
                            ttl.unwrap_or(auth::DEFAULT_TOKEN_TTL_SECS),
                        )
                        .await?;
                        println!("token id: {}", issued.id);
                        println!("expires: {}", day(issued.expires_at));
                        println!("{}", issued.token.expose_secret());
                    }
                    TokenCmd::Revoke { id } => {
                        let tid = id.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
                        let user = auth::revoke_token(&pool, &actor, &tid, now()).await?;
                        println!("revoked {id} (user {user})");
                    }
                    TokenCmd::List { name } => {
                        let now_s = firedoor_server::clock::ts(now());
                        for (id, created, expires, revoked) in
                            auth::list_tokens(&pool, &name).await?
                        {
                            let created = created.text();
                            let revoked = revoked.map(|r| r.text());
                            let expires = expires.map(|e| e.text()).unwrap_or_default();
                            let state = match revoked {
                                Some(r) => format!("revoked {r}"),
                                None if expires <= now_s => "expired".into(),
                                None => "active".into(),
                            };
                            println!("{id}\tcreated {created}\texpires {expires}\t{state}");
                        }
                    }
                },
            }
            Ok(0)
        }
        Cmd::Secret { cmd } => {
            let actor = cli_actor();
            let clock: Arc<dyn Clock> = Arc::new(SystemClock::default());
            let open = |policy: firedoor_core::policy::Policy, connectors: Connectors| {
                firedoor_server::open_broker(
                    &cli.data_dir,
                    cli.database.as_ref(),
                    cli.key_file.as_deref(),
                    policy,
                    connectors,
                    clock.clone(),
                )
            };
            match cmd {
                SecretCmd::Put {
                    name,
                    from_file,
                    policy,
                } => {
                    let pol = load_policy(&policy.policy)?;
                    let value = read_value(&from_file)?;
                    let b = open(pol, Connectors::new()).await?;
                    let v = b.put_secret(&actor, &name, &value).await?;
                    println!(
                        "stored {} version {} (sealed for {} devices)",
                        v.name, v.version, v.sealed_devices
                    );
                }
                SecretCmd::List { policy } => {
                    let pol = load_policy(&policy.policy)?;
                    let b = open(pol, Connectors::new()).await?;
                    for s in b.all_secrets(&actor).await? {
                        println!("{}", secret_line(&s));
                    }
                }
                SecretCmd::Rotate { name, policy } => {
                    let pol = load_policy(&policy.policy)?;
                    let connectors = firedoor_server::connectors::from_policy(&pol)
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    let b = open(pol, connectors).await?;
                    let v = b.rotate_secret_now(&actor, &name).await?;
                    if let Some(e) = &v.last_rotation_error {
                        println!("rotating {name} failed (the broker retries it): {e}");
                        return Ok(1);
                    }
                    println!(
                        "rotated {} to version {} (sealed for {} devices)",
                        v.name, v.version, v.sealed_devices
                    );
                }
            }
            Ok(0)
        }
        // issue 14: drills
        Cmd::Drill { cmd } => {
            require_store(&cli.data_dir, cli.database.as_ref())?;
            let actor = cli_actor();
            let clock: Arc<dyn Clock> = Arc::new(SystemClock::default());
            let policy = match &cmd {
                DrillCmd::Start { policy, .. } | DrillCmd::List { policy } => &policy.policy,
            };
            let pol = load_policy(policy)?;
            let b = firedoor_server::open_broker(
                &cli.data_dir,
                cli.database.as_ref(),
                cli.key_file.as_deref(),
                pol,
                Connectors::new(),
                clock,
            )
            .await?;
            let drills = match &cmd {
                DrillCmd::Start { name, .. } => b.start_drill(&actor, name).await?,
                DrillCmd::List { .. } => b.list_drills(&actor).await?,
            };
            for d in &drills {
                let passed = d.devices.iter().filter(|x| x.passed_at.is_some()).count();
                println!(
                    "{}\t{}\tv{}\t{}\t{} → {}\tpassed {}/{}",
                    d.id,
                    d.secret,
                    d.version,
                    d.state,
                    d.started_at.format("%Y-%m-%dT%H:%M:%SZ"),
                    d.deadline.format("%Y-%m-%dT%H:%M:%SZ"),
                    passed,
                    d.devices.len()
                );
                if matches!(cmd, DrillCmd::Start { .. }) {
                    continue;
                }
                for x in &d.devices {
                    let state = match (x.passed_at, x.failures) {
                        (Some(t), _) => format!("passed {}", t.format("%Y-%m-%dT%H:%M:%SZ")),
                        (None, 0) => "no answer".into(),
                        (None, n) => format!("{n} wrong answer(s)"),
                    };
                    println!("  {}\t{} ({})\t{state}", x.user, x.device_name, x.device_id);
                }
            }
            Ok(0)
        }
        Cmd::Readiness { json, policy } => {
            require_store(&cli.data_dir, cli.database.as_ref())?;
            let clock: Arc<dyn Clock> = Arc::new(SystemClock::default());
            let b = firedoor_server::open_broker(
                &cli.data_dir,
                cli.database.as_ref(),
                cli.key_file.as_deref(),
                load_policy(&policy.policy)?,
                Connectors::new(),
                clock,
            )
            .await?;
            let r = b.readiness(&cli_actor()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", readiness_table(&r));
            }
            // Exit status 3 when a secret with a value has too few ready people.
            Ok(if r.secrets.iter().any(|s| s.below) {
                3
            } else {
                0
            })
        }
        Cmd::Ssh { cmd } => {
            require_store(&cli.data_dir, cli.database.as_ref())?;
            let actor = cli_actor();
            match cmd {
                SshCmd::HostSetup {
                    integration,
                    broker_url,
                    policy,
                } => {
                    let pol = load_policy(&policy.policy)?;
                    let Some(firedoor_core::policy::IntegrationKind::Ssh { host_sets }) =
                        pol.integrations.get(&integration).map(|i| &i.kind)
                    else {
                        bail!("'{integration}' is not an SSH integration of the policy");
                    };
                    let b = open_cli_broker(&at, policy.policy.clone()).await?;
                    let ca = b.ssh_ca_keys(&integration).await?;
                    print!(
                        "{}",
                        firedoor_server::ssh_setup::host_setup(
                            &integration,
                            &broker_url,
                            &ca,
                            host_sets
                        )
                    );
                }
                SshCmd::RotateCa {
                    integration,
                    overlap,
                    policy,
                } => {
                    let b = open_cli_broker(&at, policy.policy.clone()).await?;
                    let id = b.rotate_ssh_ca(&actor, &integration, overlap).await?;
                    println!(
                        "{id}: hosts trust it from their next fetch of {integration}'s CA keys; it signs in {}",
                        firedoor_core::duration::format_duration(overlap)
                    );
                }
            }
            Ok(0)
        }
        Cmd::Notifications { cmd } => {
            require_store(&cli.data_dir, cli.database.as_ref())?;
            let actor = cli_actor();
            let open = |policy: &PathBuf| open_cli_broker(&at, policy.clone());
            match cmd {
                NotificationsCmd::List {
                    state,
                    limit,
                    policy,
                } => {
                    let b = open(&policy.policy).await?;
                    for d in b.deliveries(&actor, state.as_deref(), limit).await? {
                        println!(
                            "{}\t{}\t{}\t{}\tattempts {}\t{}\t{}",
                            d.id,
                            d.channel,
                            d.kind,
                            d.state,
                            d.attempts,
                            d.last_error.as_deref().unwrap_or("-"),
                            d.message
                        );
                    }
                }
                NotificationsCmd::Retry { id, policy } => {
                    let b = open(&policy.policy).await?;
                    let d = b.retry_delivery(&actor, &id).await?;
                    println!("{}: {} again (to {})", d.id, d.state, d.channel);
                }
            }
            Ok(0)
        }
        Cmd::Oncall { cmd } => {
            require_store(&cli.data_dir, cli.database.as_ref())?;
            let actor = cli_actor();
            let open = |policy: &PathBuf| open_cli_broker(&at, policy.clone());
            let when = |t: Option<chrono::DateTime<chrono::Utc>>| {
                t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_else(|| "-".into())
            };
            match cmd {
                OncallCmd::List { policy } => {
                    let b = open(&policy.policy).await?;
                    for s in b.schedules().await? {
                        match &s.on_call {
                            Some(oc) => println!(
                                "{}\t{}\tuntil {}{}",
                                s.name,
                                oc.user,
                                when(oc.until),
                                if oc.by_override { "\t(override)" } else { "" }
                            ),
                            None => println!("{}\t(nobody on call)", s.name),
                        }
                        for oc in &s.also_on_call {
                            println!("{}\t{}\tuntil {}", s.name, oc.user, when(oc.until));
                        }
                        if let Some(sync) = &s.sync {
                            println!(
                                "  synced from {}: {}{}",
                                sync.provider,
                                match s.as_of {
                                    Some(t) => format!("as of {}", when(Some(t))),
                                    None => "never read yet".to_string(),
                                },
                                if s.stale { " (stale)" } else { "" }
                            );
                            if let Some(e) = &sync.last_error {
                                println!("  last attempt failed: {e}");
                            }
                            if !sync.unmapped.is_empty() {
                                println!("  mapped to nobody: {}", sync.unmapped.join(", "));
                            }
                        }
                        for o in &s.overrides {
                            println!(
                                "  {}\t{}\t{} .. {}",
                                o.id,
                                o.user,
                                when(Some(o.starts_at)),
                                when(Some(o.ends_at))
                            );
                        }
                    }
                }
                OncallCmd::Override {
                    schedule,
                    user,
                    from,
                    until,
                    for_,
                    reason,
                    policy,
                } => {
                    let b = open(&policy.policy).await?;
                    let start = from.unwrap_or_else(|| b.now());
                    let ends_at = match (until, for_) {
                        (Some(u), _) => u,
                        (None, Some(secs)) => start + chrono::Duration::seconds(secs),
                        (None, None) => bail!("say when the override ends: --until or --for"),
                    };
                    let o = b
                        .add_override(
                            &actor,
                            &schedule,
                            firedoor_core::api::NewOverride {
                                user,
                                starts_at: Some(start),
                                ends_at,
                                reason,
                            },
                        )
                        .await?;
                    println!(
                        "{}: {} covers {} from {} until {}",
                        o.id,
                        o.user,
                        o.schedule,
                        when(Some(o.starts_at)),
                        when(Some(o.ends_at))
                    );
                }
                OncallCmd::RemoveOverride {
                    schedule,
                    id,
                    policy,
                } => {
                    let b = open(&policy.policy).await?;
                    let o = b.remove_override(&actor, &schedule, &id).await?;
                    println!(
                        "removed {}: {} no longer covers {}",
                        o.id, o.user, o.schedule
                    );
                }
            }
            Ok(0)
        }
        Cmd::Device { cmd } => {
            require_store(&cli.data_dir, cli.database.as_ref())?;
            match cmd {
                DeviceCmd::List { user } => {
                    let b = firedoor_server::open_broker(
                        &cli.data_dir,
                        cli.database.as_ref(),
                        cli.key_file.as_deref(),
                        firedoor_core::policy::parse_policy("empty", "")?,
                        Connectors::new(),
                        Arc::new(SystemClock::default()),
                    )
                    .await?;
                    for (d, revoked) in b.all_devices(&cli_actor()).await? {
                        if user.as_ref().is_some_and(|u| u != &d.user) {
                            continue;
                        }
                        println!(
                            "{}\t{}\t{}\t{}\tenrolled {}\tunlocks {}\t{}",
                            d.id,
                            d.user,
                            d.name,
                            d.fingerprint,
                            d.created_at.format("%Y-%m-%dT%H:%M:%SZ"),
                            d.head.seq,
                            revoked
                                .map(|r| format!("revoked {}", r.format("%Y-%m-%dT%H:%M:%SZ")))
                                .unwrap_or_else(|| "active".into())
                        );
                    }
                }
            }
            Ok(0)
        }
        Cmd::Store {
            cmd: StoreCmd::Copy { from, to },
        } => {
            let (from, to) = (parse_database(&from)?, parse_database(&to)?);
            if let DatabaseUrl::Sqlite(p) = &from {
                if !p.exists() {
                    bail!("no broker database at {}", p.display());
                }
            }
            let src = firedoor_server::store::Store::open(&from).await?;
            let dst = firedoor_server::store::Store::open(&to).await?;
            let copied = firedoor_server::store::copy::copy(&src, &dst).await?;
            src.close().await;
            dst.close().await;
            for (table, n) in &copied.tables {
                println!("{table}: {n} rows");
            }
            println!(
                "copied {} to {}; check the copy with `firedoor-server --database <target URL> --key-file <the broker key> audit verify`",
                firedoor_server::store::describe(&from),
                firedoor_server::store::describe(&to),
            );
            Ok(0)
        }
        Cmd::Audit { cmd } => {
            if let AuditCmd::Verify {
                export: Some(file),
                public_key: Some(key),
            } = &cmd
            {
                return audit_cli::verify_export(file, key, cli.audit_anchor.as_deref());
            }
            let key_path = firedoor_server::key_path(&cli.data_dir, cli.key_file.as_deref());
            if let AuditCmd::PublicKey = &cmd {
                return audit_cli::print_public_key(&key_path);
            }
            require_store(&cli.data_dir, cli.database.as_ref())?;
            if let AuditCmd::Sinks { policy } = &cmd {
                let b = firedoor_server::open_broker(
                    &cli.data_dir,
                    cli.database.as_ref(),
                    cli.key_file.as_deref(),
                    load_policy(&policy.policy)?,
                    Connectors::new(),
                    Arc::new(SystemClock::default()),
                )
                .await?;
                return audit_cli::print_sinks(&b).await;
            }
            let pool = firedoor_server::open_db(&cli.data_dir, cli.database.as_ref()).await?;
            match cmd {
                AuditCmd::PublicKey | AuditCmd::Sinks { .. } => Ok(0),
                AuditCmd::Verify { public_key, .. } => {
                    let anchor =
                        firedoor_server::anchor::path(&cli.data_dir, cli.audit_anchor.as_deref());
                    audit_cli::verify_db(&pool, &key_path, public_key.as_deref(), &anchor).await
                }
                AuditCmd::Export { out } => {
                    let mut w: Box<dyn Write> = match &out {
                        Some(p) => Box::new(std::io::BufWriter::new(std::fs::File::create(p)?)),
                        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
                    };
                    let mut after = 0;
                    let mut n = 0;
                    loop {
                        let batch = firedoor_server::audit::records(&pool, after, 1000).await?;
                        if batch.is_empty() {
                            break;
                        }
                        for r in &batch {
                            serde_json::to_writer(&mut w, r)?;
                            w.write_all(b"\n")?;
                            after = r.seq;
                            n += 1;
                        }
                    }
                    w.flush()?;
                    if let Some(p) = out {
                        eprintln!("exported {n} records to {}", p.display());
                    }
                    Ok(0)
                }
            }
        }
        // issue 14: uses
        Cmd::Unlocks { cmd } => {
            require_store(&cli.data_dir, cli.database.as_ref())?;
            let actor = cli_actor();
            let (UnlocksCmd::List { policy, .. } | UnlocksCmd::Classify { policy, .. }) = &cmd;
            let b = firedoor_server::open_broker(
                &cli.data_dir,
                cli.database.as_ref(),
                cli.key_file.as_deref(),
                load_policy(&policy.policy)?,
                Connectors::new(),
                Arc::new(SystemClock::default()),
            )
            .await?;
            match cmd {
                UnlocksCmd::List { open, .. } => {
                    let list = b.all_uses(&actor, open).await?;
                    if list.is_empty() {
                        println!(
                            "{}",
                            if open {
                                "no open break-glass uses"
                            } else {
                                "no break-glass uses"
                            }
                        );
                    }
                    for u in &list {
                        println!("{}", use_line(u));
                    }
                }
                UnlocksCmd::Classify {
                    id,
                    kind,
                    incident,
                    note,
                    ..
                } => {
                    let kind = match kind.as_str() {
                        "drill" => firedoor_core::uses::UseKind::Drill,
                        "incident" => firedoor_core::uses::UseKind::Incident,
                        _ => firedoor_core::uses::UseKind::Other,
                    };
                    let u = b
                        .classify_use(
                            &actor,
                            &id,
                            firedoor_core::uses::ClassifyUse {
                                kind,
                                incident,
                                note,
                            },
                        )
                        .await?;
                    println!("{}", use_line(&u));
                }
            }
            Ok(0)
        }
        // issue 14: report
        Cmd::Report { cmd } => {
            require_store(&cli.data_dir, cli.database.as_ref())?;
            let pool = firedoor_server::open_db(&cli.data_dir, cli.database.as_ref()).await?;
            use firedoor_core::report::ReportKind;
            let (kind, id, out) = match cmd {
                ReportCmd::Verify { file, public_key } => {
                    let key_path =
                        firedoor_server::key_path(&cli.data_dir, cli.key_file.as_deref());
                    return report_cli::verify(&pool, &key_path, public_key.as_deref(), &file)
                        .await;
                }
                ReportCmd::Incident { id, out } => (ReportKind::Incident, id, out),
                ReportCmd::Grant { id, out } => (ReportKind::Grant, id, out),
                ReportCmd::Unlock { id, out } => (ReportKind::Unlock, id, out),
            };
            report_cli::write(&pool, kind, &id, out.format, out.out.as_deref()).await
        }
    }
}

fn day(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Reads a secret value from a file or standard input (`-`), dropping one trailing
/// newline.
fn read_value(path: &Path) -> anyhow::Result<Zeroizing<String>> {
    let mut text = Zeroizing::new(String::new());
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the value from standard input")?;
    } else {
        let mut f = std::fs::File::open(path)
            .with_context(|| format!("reading the value from {}", path.display()))?;
        f.read_to_string(&mut text).with_context(|| {
            format!(
                "reading the value from {} (it must be UTF-8 text)",
                path.display()
            )
        })?;
    }
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

// issue 14: drills
fn readiness_table(r: &firedoor_core::drill::Readiness) -> String {
    let t = |d: chrono::DateTime<chrono::Utc>| d.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut out = String::new();
    for s in &r.secrets {
        out.push_str(&format!(
            "{}\tversion={}\tready={}/{}{}\n",
            s.name,
            s.version,
            s.ready,
            s.required,
            if s.below { "\tBELOW REQUIRED" } else { "" }
        ));
        match &s.last_drill {
            Some(d) => out.push_str(&format!(
                "  last drill {} ({}, started {}): passed {}/{}, failed {}\n",
                d.id,
                d.state,
                t(d.started_at),
                d.passed,
                d.asked,
                d.failed
            )),
            None => out.push_str("  no drill yet\n"),
        }
        if let Some(n) = s.next_drill_at {
            out.push_str(&format!("  next scheduled drill {}\n", t(n)));
        }
        out.push_str("  USER\tDEVICE\tENVELOPE\tEXPIRES\tDRILL\tREADY\n");
        for h in &s.holders {
            if h.devices.is_empty() {
                out.push_str(&format!(
                    "  {}{}\t(no device)\t-\t-\t-\tno\n",
                    h.user,
                    if h.on_call { " (on call)" } else { "" }
                ));
            }
            for d in &h.devices {
                let env = match (d.version, d.fresh, d.expiring_soon) {
                    (None, ..) => "none".to_string(),
                    (Some(v), true, _) => format!("v{v} fresh"),
                    (Some(v), false, true) => format!("v{v} EXPIRING SOON"),
                    (Some(v), false, false) => format!("v{v} stale"),
                };
                let drill = match d.passed_at {
                    Some(p) => format!("{} {}", d.drill, t(p)),
                    None => d.drill.clone(),
                };
                out.push_str(&format!(
                    "  {}{}\t{}\t{}\t{}\t{}\t{}\n",
                    h.user,
                    if h.on_call { " (on call)" } else { "" },
                    d.device_name,
                    env,
                    d.not_after.map(t).unwrap_or_else(|| "-".into()),
                    drill,
                    if d.ready { "yes" } else { "no" }
                ));
            }
        }
        for u in &s.open_uses {
            out.push_str(&format!(
                "  OPEN USE (not classified yet): {} by {} v{} {}\n",
                u.id,
                u.user,
                u.version,
                t(u.unlocked_at)
            ));
        }
        for g in &s.on_call_without_envelope {
            out.push_str(&format!(
                "  ON CALL WITHOUT A FRESH ENVELOPE: {}{}\n",
                g.user,
                if g.eligible {
                    ""
                } else {
                    " (not allowed to unlock it)"
                }
            ));
        }
    }
    out
}

// issue 14: uses
fn use_line(u: &firedoor_core::uses::UseView) -> String {
    let mut line = format!(
        "{}\t{}\t{} v{}\t{} {}\tby {}",
        u.id,
        match u.kind {
            None => "OPEN".to_string(),
            Some(k) => k.as_str().to_string(),
        },
        u.secret,
        u.version,
        u.mode,
        day(u.unlocked_at),
        u.user
    );
    if let Some(i) = &u.incident {
        line.push_str(&format!("\tincident={i}"));
        if let Some(s) = &u.incident_state {
            line.push_str(&format!(" ({s})"));
        }
    }
    if let Some(n) = &u.note {
        line.push_str(&format!("\tnote={}", n.replace(['\n', '\t'], " ")));
    }
    if let Some(by) = &u.classified_by {
        line.push_str(&format!("\tclassified_by={by}"));
    }
    line.push_str(&format!("\trotation={}", u.rotation));
    if u.rotated {
        line.push_str("\trotated");
    } else if let Some(t) = u.rotates_at {
        line.push_str(&format!(
            "\trotates_at={}{}",
            day(t),
            if u.rotation_waits {
                " (or when the incident is resolved)"
            } else {
                ""
            }
        ));
    }
    line
}

fn secret_line(s: &firedoor_core::breakglass::SecretView) -> String {
    let mut line = format!(
        "{}\tversion={}\tsealed_devices={}\tvalidity={}",
        s.name,
        s.version,
        s.sealed_devices,
        firedoor_core::duration::format_duration(s.validity_secs)
    );
    if let Some(u) = s.updated_at {
        line.push_str(&format!("\tupdated={}", u.format("%Y-%m-%dT%H:%M:%SZ")));
    }
    line.push_str(&format!(
        "\trotated_by={}",
        s.rotated_by.as_deref().unwrap_or("(manual)")
    ));
    if let Some(d) = s.rotation_due_at {
        line.push_str(&format!(
            "\tROTATION DUE {}",
            d.format("%Y-%m-%dT%H:%M:%SZ")
        ));
    }
    if let Some(e) = &s.last_rotation_error {
        line.push_str(&format!("\terror: {e}"));
    }
    line
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
