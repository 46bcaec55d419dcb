//! `firedoor-server`: run the broker, manage users and tokens, check the audit log.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use firedoor_server::audit::Actor;
use firedoor_server::clock::{Clock, SystemClock};
use firedoor_server::{auth, db_path, ensure_data_dir, store, Config, Tls};
use secrecy::ExposeSecret;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

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
    #[command(subcommand)]
    cmd: Cmd,
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
    /// Verify or export the audit log.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
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
    },
    /// List users.
    List,
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Issue another token for a user; prints it as the last line.
    Issue { name: String },
    /// Revoke a token by its id (tok_…).
    Revoke { id: String },
    /// List a user's token ids.
    List { name: String },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Check the hash chain; exits non-zero naming the first bad record.
    Verify,
    /// Write the log as JSON lines.
    Export {
        /// File to write (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FIREDOOR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    let now = || SystemClock::default().now();
    match cli.cmd {
        Cmd::CheckPolicy { file } => {
            let p = load_policy(&file)?;
            println!(
                "{}: ok ({} integrations, {} bundles, {} flows)",
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
            clock_offset_secs,
        } => {
            let pol = load_policy(&policy)?;
            let mut cfg = Config::new(&cli.data_dir, pol);
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
            running.stop().await;
            Ok(0)
        }
        Cmd::Demo { listen } => {
            let pol = firedoor_core::policy::parse_policy(
                "demo-policy.toml",
                firedoor_server::DEMO_POLICY,
            )?;
            ensure_data_dir(&cli.data_dir)?;
            let pool = store::open(&db_path(&cli.data_dir)).await?;
            let actor = Actor::cli();
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
            cfg.listen = listen;
            cfg.start_details = serde_json::json!({ "policy": "built-in demo policy" });
            let running = firedoor_server::start(cfg).await?;
            println!("Firedoor demo broker (DEMO connector: nothing real is provisioned)");
            println!("URL: {}", running.url());
            println!("data: {}", cli.data_dir.display());
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
            let pool = open_existing_or_new(&cli.data_dir).await?;
            let actor = Actor::cli();
            match cmd {
                UserCmd::Add {
                    name,
                    groups,
                    admin,
                } => {
                    let issued =
                        auth::add_user(&pool, &actor, &name, &groups, admin, now()).await?;
                    println!(
                        "created user {name} (groups: {}{})",
                        groups.join(", "),
                        if admin { "; admin" } else { "" }
                    );
                    println!("token id: {}", issued.id);
                    println!("{}", issued.token.expose_secret());
                }
                UserCmd::List => {
                    for u in auth::all_users(&pool).await? {
                        println!(
                            "{}\tgroups={}{}",
                            u.name,
                            u.groups.join(","),
                            if u.admin { "\tadmin" } else { "" }
                        );
                    }
                }
                UserCmd::Token { cmd } => match cmd {
                    TokenCmd::Issue { name } => {
                        let issued = auth::issue_token(&pool, &actor, &name, now()).await?;
                        println!("token id: {}", issued.id);
                        println!("{}", issued.token.expose_secret());
                    }
                    TokenCmd::Revoke { id } => {
                        let tid = id.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
                        let user = auth::revoke_token(&pool, &actor, &tid, now()).await?;
                        println!("revoked {id} (user {user})");
                    }
                    TokenCmd::List { name } => {
                        for (id, created, revoked) in auth::list_tokens(&pool, &name).await? {
                            println!(
                                "{id}\tcreated {created}\t{}",
                                revoked
                                    .map(|r| format!("revoked {r}"))
                                    .unwrap_or_else(|| "active".into())
                            );
                        }
                    }
                },
            }
            Ok(0)
        }
        Cmd::Audit { cmd } => {
            let path = db_path(&cli.data_dir);
            if !path.exists() {
                bail!("no broker database at {}", path.display());
            }
            let pool = store::open(&path).await?;
            match cmd {
                AuditCmd::Verify => match firedoor_server::audit::verify(&pool).await? {
                    Ok(v) => {
                        println!("audit log ok: {} records, head {}", v.records, v.head);
                        Ok(0)
                    }
                    Err(e) => {
                        println!("AUDIT LOG BROKEN at record {}: {}", e.seq, e.problem);
                        Ok(1)
                    }
                },
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
    }
}

async fn open_existing_or_new(dir: &std::path::Path) -> anyhow::Result<sqlx::SqlitePool> {
    ensure_data_dir(dir)?;
    Ok(store::open(&db_path(dir)).await?)
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
