//! The engineer's command line: `firedoor login`, `request`, `approve`, `creds`,
//! `breakglass unlock`, … on the same console engine ([`crate::console`]) as the
//! desktop app, with the same data dir, cache and keyring entries
//! ([`crate::paths`]): signing in with one signs the other in, and both can run at
//! once (the cache is SQLite in WAL mode with a busy timeout; the token is in the OS
//! keyring, which serialises its own calls).
//!
//! **One binary.** The desktop app's binary is already `firedoor`; when its first
//! argument is a CLI subcommand (or `--help`, `--version`, `help`) `main` runs
//! [`main`] here and never initialises GTK/WebKit or opens a window; with no
//! arguments, `--demo`, `--minimized` or a `firedoor://…` URL it starts the app
//! ([`wants_cli`] decides, in one place). Why: one name on the PATH, and the CLI and
//! the app share exactly the same data dir, keyring and session code. The cost: the
//! binary links WebKitGTK, so even as a CLI it needs those libraries installed (the
//! `.deb` depends on them anyway).
//!
//! Every command takes `--json` for scripts; otherwise the output is short text.
//! Secrets (credentials, a break-glass secret) go to stdout only, never to a log.
//! Exit codes: see [`exit`].

mod creds;

use crate::console::{ActionResult, Change, Console, ConsoleError, ConsoleOptions, Snapshot};
use crate::secrets::{KeyringStore, SecretStore};
use chrono::{DateTime, Utc};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use firedoor_core::api::{ClientChannel, CreateRequest, GrantView, RequestView};
use firedoor_core::lifecycle::{GrantState, RequestState};
use firedoor_core::{ConsoleErrorCode, ErrorCode, GrantId, RequestId};
use secrecy::SecretString;
use serde::Serialize;
use std::ffi::{OsStr, OsString};
use std::io::{IsTerminal, Read, Write};
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

/// Exit codes (also in `firedoor --help` and the README).
pub mod exit {
    /// Done.
    pub const OK: i32 = 0;
    /// Any other error (the message says what).
    pub const ERROR: i32 = 1;
    /// Bad command line: unknown command or option, a malformed id or duration.
    pub const USAGE: i32 = 2;
    /// Refused by policy: not allowed, not eligible, approving your own request,
    /// break glass locked out.
    pub const REFUSED: i32 = 3;
    /// No such bundle, request, grant or secret.
    pub const NOT_FOUND: i32 = 4;
    /// The broker cannot be reached. A request, a revoke or a sign-out's token
    /// revocation was queued and is sent when it is back (the app or any later
    /// `firedoor` command sends it); anything else was not done.
    pub const OFFLINE: i32 = 5;
    /// `request --wait` ended without a grant: denied, timed out, cancelled, or the
    /// wait's own `--timeout`.
    pub const NOT_GRANTED: i32 = 6;
    /// Not signed in, or the broker no longer accepts the token.
    pub const SIGNED_OUT: i32 = 7;
}

const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  ok
  1  error (the message says what)
  2  usage: unknown command or option, malformed id or duration
  3  refused by policy: forbidden, not eligible, self-approval, locked out
  4  not found: no such bundle, request, grant or secret
  5  broker unreachable: a request, revoke or sign-out was queued and is sent
     when the broker is back; anything else was not done
  6  request --wait ended without a grant (denied, timed out, --timeout)
  7  not signed in, or the token is no longer accepted

Errors go to stderr as `error [code]: message`, or with --json as
{\"error\":{\"code\":…,\"message\":…},\"exit\":N}.
The CLI shares the desktop app's session, cache and keyring: signing in with one
signs the other in. Data dir: $FIREDOOR_DATA_DIR, else
$XDG_DATA_HOME/dev.firedoor.console (~/.local/share/dev.firedoor.console).";

/// The words that make `firedoor` a command line rather than the app.
pub const SUBCOMMANDS: &[&str] = &[
    "login",
    "logout",
    "status",
    "bundles",
    "request",
    "requests",
    "approve",
    "deny",
    "grants",
    "revoke",
    "creds",
    "breakglass",
    "drill",
    "shortcut",
    "completions",
    "help",
];

/// Whether `firedoor` started with this first argument is the command line (true)
/// or the desktop app (false: no argument, `--demo`, `--minimized`, a
/// `firedoor://…` URL, or any other option the app takes). Any other bare word is
/// taken as a mistyped command, so it gets a usage error rather than a window.
pub fn wants_cli(first: Option<&OsStr>) -> bool {
    let Some(first) = first else {
        return false;
    };
    let Some(a) = first.to_str() else {
        return true; // not UTF-8: not an app option nor a URL; clap reports it
    };
    if matches!(a, "--help" | "-h" | "--version" | "-V") || SUBCOMMANDS.contains(&a) {
        return true;
    }
    !a.is_empty() && !a.starts_with('-') && !a.contains("://")
}

#[derive(Debug, Parser)]
#[command(
    name = "firedoor",
    version,
    about = "Firedoor: emergency access from the terminal (the desktop app without arguments).",
    long_about = "Firedoor: emergency access from the terminal. Request a bundle, approve, \
                  get credentials, unlock a break-glass secret offline.\n\
                  Run without arguments (or with --demo) for the desktop app.",
    after_help = EXIT_CODES_HELP,
    propagate_version = true
)]
pub struct Cli {
    /// Machine-readable output: JSON on stdout, errors as JSON on stderr.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sign in to a broker (the desktop app is signed in too).
    Login(LoginArgs),
    /// Sign out: revokes the token at the broker and forgets the cache.
    Logout,
    /// Who is signed in, to which broker, online or offline since when, queued actions.
    Status,
    /// The bundles you may request.
    Bundles,
    /// Request a bundle.
    Request(RequestArgs),
    /// Your requests, and those waiting for your approval.
    Requests,
    /// Approve a request waiting for you.
    Approve {
        /// The request (`req_…`).
        id: String,
        /// A comment for the audit trail.
        #[arg(long)]
        comment: Option<String>,
    },
    /// Deny a request waiting for you.
    Deny {
        /// The request (`req_…`).
        id: String,
        /// Why, for the requester and the audit trail.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Your grants: live ones and those ended recently.
    Grants,
    /// End a grant now.
    Revoke {
        /// The grant (`grt_…`).
        grant: String,
    },
    /// A grant's credentials on stdout; for an SSH grant, its key and certificate
    /// into your ssh-agent ($SSH_AUTH_SOCK).
    Creds(CredsArgs),
    /// Offline break glass: sealed secrets on this device.
    #[command(subcommand)]
    Breakglass(BreakglassCommand),
    /// Break-glass drills: prove this device can still open its sealed copies,
    /// without showing any secret.
    #[command(subcommand)]
    Drill(DrillCommand),
    /// The desktop app's global shortcut that opens its quick switcher from any
    /// application: shows it, or sets it (e.g. `Ctrl+Alt+K`, `Super+Space`), or
    /// `off`, or `default`. The running app applies a change within seconds.
    Shortcut {
        /// The new key combination, `off` or `default`; none: show the current one.
        combination: Option<String>,
    },
    /// Shell completions on stdout, e.g. `firedoor completions bash > /etc/bash_completion.d/firedoor`.
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The broker URL; repeat for replicas of one broker, in the order to try them.
    #[arg(long = "url", required = true, value_name = "URL")]
    pub urls: Vec<String>,
    #[command(flatten)]
    pub method: LoginMethod,
}

/// How to sign in: single sign-on in the browser, or an admin-issued token.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct LoginMethod {
    /// Sign in with the company's single sign-on: opens the browser (`xdg-open`,
    /// which honours `$BROWSER`) at the identity provider and waits up to 5 minutes
    /// for the sign-in to come back to this machine.
    #[arg(long)]
    pub sso: bool,
    /// Read an admin-issued API token from stdin (the emergency sign-in); it is
    /// never taken from the command line nor echoed.
    #[arg(long)]
    pub token_stdin: bool,
}

#[derive(Debug, Args)]
pub struct RequestArgs {
    /// The bundle's name (see `firedoor bundles`).
    pub bundle: String,
    /// How long, e.g. 30m, 1h30m (default: the flow's).
    #[arg(long = "for", value_name = "DURATION")]
    pub duration: Option<String>,
    /// Why (the justification, required by most flows).
    #[arg(long)]
    pub reason: Option<String>,
    #[arg(long)]
    pub ticket: Option<String>,
    /// The open incident this is for (`inc_…`).
    #[arg(long)]
    pub incident: Option<String>,
    /// Wait until the request is granted, denied or times out, and say which
    /// (exit 0 granted, 6 not).
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long (default: when the broker would time
    /// the request out).
    #[arg(long, value_name = "DURATION", requires = "wait")]
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CredsFormat {
    /// `export PGHOST=… PGUSER=… PGPASSWORD=…` lines, shell-quoted (PostgreSQL).
    Env,
    /// The credentials as JSON.
    Json,
    /// Lines for a PostgreSQL password file (~/.pgpass), escaped.
    Pgpass,
}

#[derive(Debug, Args)]
pub struct CredsArgs {
    /// The grant (`grt_…`).
    pub grant: String,
    #[arg(long, value_enum, default_value = "env")]
    pub format: CredsFormat,
    /// Only the credential for this resource (when a bundle has several).
    #[arg(long)]
    pub resource: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum BreakglassCommand {
    /// The sealed secrets this device holds and whether they can be opened.
    List,
    /// Enrol this device for offline break glass (needs the broker), with a local
    /// unlock passphrase.
    Enrol {
        /// Read the passphrase from stdin instead of the terminal.
        #[arg(long)]
        passphrase_stdin: bool,
    },
    /// Open a sealed secret: through the broker, or offline from this device's sealed
    /// copy (recorded on the signed local chain first). The secret goes to stdout.
    Unlock {
        name: String,
        /// Why: goes to the audit trail and to security.
        #[arg(long)]
        reason: String,
        /// Read the passphrase from stdin instead of the terminal.
        #[arg(long)]
        passphrase_stdin: bool,
    },
    // issue 14: uses
    /// Your break-glass uses (admins and security: everyone's), open ones first,
    /// with the planned rotation. Needs the broker.
    Uses {
        /// Only the open (unclassified) uses.
        #[arg(long)]
        open: bool,
    },
    /// Classify a use (`use_…`): `--kind drill`, `--kind incident --incident INC-123`
    /// or `--kind other --note "..."`.
    Classify {
        id: String,
        #[arg(long)]
        kind: String,
        #[arg(long)]
        incident: Option<String>,
        #[arg(long)]
        note: Option<String>,
    },
    // issue 14: quorum
    /// Two-person break glass, step 1 (the requester): sign an unlock request for a
    /// secret that needs several people. Prints the request as text (paste it to the
    /// other person) and, with --out, saves it to a file; --qr saves a QR code (SVG).
    Request {
        name: String,
        /// Why: goes to the audit trail and to security.
        #[arg(long)]
        reason: String,
        /// Also write the request to this file.
        #[arg(long, value_name = "FILE")]
        out: Option<std::path::PathBuf>,
        /// Also write the request as a QR code (SVG) to this file.
        #[arg(long, value_name = "FILE")]
        qr: Option<std::path::PathBuf>,
        /// Read the passphrase from stdin instead of the terminal.
        #[arg(long)]
        passphrase_stdin: bool,
    },
    /// Two-person break glass, step 2 (another eligible person): show who asks for
    /// what and why. REQUEST: the text, or a file holding it.
    Inspect { request: String },
    /// Two-person break glass, step 2 (another eligible person): release your share
    /// to the request, encrypted to the requester's device. Prints the release as
    /// text; --out saves it to a file, --qr as a QR code (SVG).
    Release {
        /// The request's text, or a file holding it.
        request: String,
        #[arg(long, value_name = "FILE")]
        out: Option<std::path::PathBuf>,
        #[arg(long, value_name = "FILE")]
        qr: Option<std::path::PathBuf>,
        /// Read the passphrase from stdin instead of the terminal.
        #[arg(long)]
        passphrase_stdin: bool,
    },
    /// Two-person break glass, step 3 (the requester): add the releases and, once
    /// enough people took part, show the secret (recorded on the signed local chain
    /// first). The secret goes to stdout.
    Complete {
        /// The request id printed by `firedoor breakglass request`.
        request_id: String,
        /// Each release's text, or a file holding it.
        releases: Vec<String>,
        /// Read the passphrase from stdin instead of the terminal.
        #[arg(long)]
        passphrase_stdin: bool,
    },
    /// Two-person break glass: this device's requests of the last day.
    Pending,
}

// issue 14: drills
#[derive(Debug, Subcommand)]
pub enum DrillCommand {
    /// The drills waiting on this device.
    List,
    /// Answer a drill: the passphrase opens this device's sealed copy in memory and
    /// a signed proof goes to the broker. No secret is shown and no unlock recorded.
    Answer {
        /// The drill (`drl_…`); see `firedoor drill list`.
        id: String,
        /// Read the passphrase from stdin instead of the terminal.
        #[arg(long)]
        passphrase_stdin: bool,
    },
}

/// A blob given on the command line: the text itself, or a file holding it.
fn blob_arg(arg: &str) -> Res<String> {
    let t = arg.trim();
    if t.starts_with("firedoor-") {
        return Ok(t.to_string());
    }
    std::fs::read_to_string(t)
        .map(|s| s.trim().to_string())
        .map_err(|e| {
            Failure::from(ConsoleError::new(
                ConsoleErrorCode::Io,
                format!("{t}: not a firedoor-… text, and not a readable file ({e})"),
            ))
        })
}

fn write_file(path: &std::path::Path, text: &str) -> Res<()> {
    std::fs::write(path, text).map_err(|e| {
        Failure::from(ConsoleError::new(
            ConsoleErrorCode::Io,
            format!("cannot write {}: {e}", path.display()),
        ))
    })
}

/// A failed command: what to print and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub exit: i32,
    pub error: ConsoleError,
}

impl From<ConsoleError> for Failure {
    fn from(error: ConsoleError) -> Self {
        Failure {
            exit: exit_code(error.code),
            error,
        }
    }
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        exit: exit::USAGE,
        error: ConsoleError::new(ConsoleErrorCode::Usage, message),
    }
}

/// The exit code for a console error code.
pub fn exit_code(code: ConsoleErrorCode) -> i32 {
    use ConsoleErrorCode as C;
    match code {
        C::SignedOut | C::Broker(ErrorCode::Unauthenticated | ErrorCode::SessionExpired) => {
            exit::SIGNED_OUT
        }
        C::LockedOut
        | C::QuorumRefused
        | C::QuorumIncomplete
        | C::Broker(ErrorCode::Forbidden | ErrorCode::SelfApproval | ErrorCode::NotEligible) => {
            exit::REFUSED
        }
        C::Broker(ErrorCode::NotFound | ErrorCode::NoCredentials) => exit::NOT_FOUND,
        C::Offline => exit::OFFLINE,
        C::Usage => exit::USAGE,
        _ => exit::ERROR,
    }
}

type Res<T> = std::result::Result<T, Failure>;

/// What a command prints on success, and its exit code (`queued` actions exit 5).
struct Done {
    json: serde_json::Value,
    text: String,
    exit: i32,
}

impl Done {
    fn ok(json: impl Serialize, text: impl Into<String>) -> Res<Done> {
        Ok(Done {
            json: serde_json::to_value(json).map_err(|e| {
                Failure::from(ConsoleError::new(ErrorCode::Internal, e.to_string()))
            })?,
            text: text.into(),
            exit: exit::OK,
        })
    }
}

/// Runs the command line with these arguments (the first is the program name) and
/// returns the exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    exit::OK
                }
                // Including a missing subcommand (`firedoor breakglass`): help, exit 2.
                _ => exit::USAGE,
            };
        }
    };
    let json = cli.json;
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return report(
                json,
                Err(ConsoleError::new(ErrorCode::Internal, format!("cannot start: {e}")).into()),
            )
        }
    };
    let result = rt.block_on(run(cli));
    // Whatever the console left running (an event stream) ends with the process.
    rt.shutdown_timeout(Duration::from_millis(200));
    report(json, result)
}

/// Prints the outcome; returns the exit code.
fn report(json: bool, result: Res<Done>) -> i32 {
    match result {
        Ok(done) => {
            let mut out = std::io::stdout().lock();
            if done.json == silent() {
                // The command printed its own output (a secret, from a zeroized buffer).
            } else if json {
                let _ = writeln!(out, "{}", done.json);
            } else if !done.text.is_empty() {
                let _ = write!(out, "{}", done.text);
                if !done.text.ends_with('\n') {
                    let _ = writeln!(out);
                }
            }
            let _ = out.flush();
            done.exit
        }
        Err(f) => {
            let mut err = std::io::stderr().lock();
            if json {
                let _ = writeln!(
                    err,
                    "{}",
                    serde_json::json!({ "error": f.error, "exit": f.exit })
                );
            } else {
                let _ = writeln!(err, "error [{}]: {}", f.error.code, f.error.message);
            }
            f.exit
        }
    }
}

/// The console on the app's data dir and keyring.
async fn open_console() -> Res<Arc<Console>> {
    let dir = crate::paths::data_dir(false)
        .map_err(|m| ConsoleError::new(ConsoleErrorCode::DataDir, m))?;
    let secrets: Arc<dyn SecretStore> = Arc::new(KeyringStore::new(crate::paths::KEYRING_SERVICE));
    let c = Console::open_with(&dir, secrets, false, ConsoleOptions::default())
        .await
        .map_err(|e| {
            ConsoleError::new(
                e.code,
                format!(
                    "opening the local cache in {}: {}",
                    dir.display(),
                    e.message
                ),
            )
        })?;
    // An SSO sign-in's access token lasts minutes; the app renews it while it runs,
    // and so does a command that finds it due (under the data dir's lock, so the
    // two never spend one refresh token twice). Unreachable: the cache answers.
    if c.sso_refresh_due().await {
        match c.refresh_sso_now().await {
            Ok(()) => {}
            Err(e) if e.code == "offline" => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(c)
}

fn not_signed_in() -> Failure {
    ConsoleError::new(
        ConsoleErrorCode::SignedOut,
        "Not signed in: run `firedoor login --url URL --sso` (or --token-stdin, or sign in in the app).",
    )
    .into()
}

async fn require_session(c: &Console) -> Res<()> {
    if c.status().await?.signed_in {
        Ok(())
    } else {
        Err(not_signed_in())
    }
}

/// Brings the cache up to date with the broker, and sends what waits in the outbox
/// (told on stderr). Unreachable: keeps the cache (the caller says "offline").
async fn refresh(c: &Console, json: bool) -> Res<()> {
    let mut rx = c.subscribe();
    let _ = c.send_pending_revocations().await;
    let mut synced = c.sync().await;
    if matches!(&synced, Err(e) if e.code == "unauthenticated") && c.status().await?.sso {
        // The access token ended before this machine's clock said so: renew the SSO
        // sign-in (or learn that it is over) and try once more.
        c.refresh_sso_now().await?;
        synced = c.sync().await;
    }
    match synced {
        Ok(()) => {
            let _ = c.replay_outbox().await;
        }
        Err(e) if e.code == "offline" => {}
        Err(e) if e.code == "unauthenticated" => {
            return Err(ConsoleError::new(
                ErrorCode::Unauthenticated,
                "The broker no longer accepts this sign-in's token: run `firedoor login` again.",
            )
            .into())
        }
        Err(e) => return Err(e.into()),
    }
    if !json {
        while let Ok(change) = rx.try_recv() {
            if let Change::OutboxReplayed { summary, outcome } = change {
                eprintln!("queued action sent: {summary} — {outcome}");
            }
        }
    }
    Ok(())
}

/// A note for list output read from the cache while the broker is unreachable.
fn offline_note(s: &Snapshot) -> String {
    if s.status.online {
        return String::new();
    }
    let since = s
        .status
        .offline_since
        .map(|t| format!(" since {}", fmt_time(t)))
        .unwrap_or_default();
    let synced = s
        .status
        .last_synced_at
        .map(|t| format!(", last synced {}", fmt_time(t)))
        .unwrap_or_default();
    format!("(offline{since}: from the local cache{synced})\n")
}

fn fmt_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn fmt_secs(secs: i64) -> String {
    let s = secs.max(0);
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

fn parse_duration(flag: &str, text: &str) -> Res<i64> {
    firedoor_core::duration::parse_duration(text).map_err(|m| usage(format!("{flag}: {m}")))
}

fn parse_id<T: std::str::FromStr>(what: &str, text: &str) -> Res<T>
where
    T::Err: std::fmt::Display,
{
    text.trim()
        .parse()
        .map_err(|e: T::Err| usage(format!("{what} id: {e}")))
}

/// Left-aligned columns.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<w$}  ", w = width[i]));
            }
        }
        l.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push_str(&line(r.clone()));
    }
    out
}

async fn run(cli: Cli) -> Res<Done> {
    let json = cli.json;
    match cli.command {
        Command::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "firedoor", &mut buf);
            let text = String::from_utf8_lossy(&buf).into_owned();
            Done::ok(
                serde_json::json!({ "shell": shell.to_string(), "script": text }),
                text,
            )
        }
        Command::Login(a) => login(a).await,
        Command::Logout => logout().await,
        Command::Status => status(json).await,
        Command::Bundles => bundles(json).await,
        Command::Request(a) => request(a, json).await,
        Command::Requests => requests(json).await,
        Command::Approve { id, comment } => {
            let id: RequestId = parse_id("request", &id)?;
            let c = open_console().await?;
            require_session(&c).await?;
            action(
                c.approve_via(&id, comment.as_deref(), ClientChannel::Cli)
                    .await?,
            )
        }
        Command::Deny { id, reason } => {
            let id: RequestId = parse_id("request", &id)?;
            let c = open_console().await?;
            require_session(&c).await?;
            action(
                c.deny_via(&id, reason.as_deref(), ClientChannel::Cli)
                    .await?,
            )
        }
        Command::Grants => grants(json).await,
        Command::Revoke { grant } => {
            let id: GrantId = parse_id("grant", &grant)?;
            let c = open_console().await?;
            require_session(&c).await?;
            action(c.revoke(&id).await?)
        }
        Command::Creds(a) => creds(a, json).await,
        Command::Breakglass(b) => breakglass(b, json).await,
        Command::Drill(d) => drill(d).await,
        Command::Shortcut { combination } => shortcut(combination).await,
    }
}

/// `firedoor shortcut [COMBINATION|off|default]`.
async fn shortcut(combination: Option<String>) -> Res<Done> {
    let c = open_console().await?;
    if let Some(new) = combination {
        let stored = c.set_global_shortcut(&new).await?;
        let text = match crate::shortcut::effective(Some(&stored)) {
            Some(k) => format!("Global shortcut: {k} (the running app picks it up within seconds)"),
            None => "Global shortcut: off".to_string(),
        };
        return Done::ok(serde_json::json!({ "shortcut": stored }), text);
    }
    let (setting, status) = c.global_shortcut_setting().await?;
    let effective = crate::shortcut::effective(setting.as_deref());
    let mut text = match &effective {
        Some(k) if setting.is_none() => format!("Global shortcut: {k} (the default)"),
        Some(k) => format!("Global shortcut: {k}"),
        None => "Global shortcut: off".to_string(),
    };
    if let Some(s) = &status {
        text.push_str(&format!("\nIn the app: {s}"));
    }
    Done::ok(
        serde_json::json!({ "shortcut": effective, "default": setting.is_none(), "app": status }),
        text,
    )
}

/// An action's result: exit 5 when it was queued for the broker's return.
fn action(r: ActionResult) -> Res<Done> {
    let mut d = Done::ok(&r, r.message.clone())?;
    if r.queued {
        d.exit = exit::OFFLINE;
    }
    Ok(d)
}

/// A secret read from stdin (all of it, trimmed), or from the terminal without echo.
fn read_secret(prompt: &str, from_stdin: bool) -> Res<Zeroizing<String>> {
    let stdin = std::io::stdin();
    let text = if from_stdin && !stdin.is_terminal() {
        let mut buf = Zeroizing::new(String::new());
        stdin.lock().read_to_string(&mut buf).map_err(|e| {
            ConsoleError::new(ConsoleErrorCode::Io, format!("cannot read stdin: {e}"))
        })?;
        buf
    } else {
        Zeroizing::new(rpassword::prompt_password(prompt).map_err(|e| {
            ConsoleError::new(
                ConsoleErrorCode::Io,
                format!(
                    "cannot read from the terminal ({e}); with no terminal, pipe it in \
                     (--token-stdin, --passphrase-stdin)"
                ),
            )
        })?)
    };
    let trimmed = Zeroizing::new(text.trim_end_matches(['\n', '\r']).to_string());
    Ok(trimmed)
}

async fn login(a: LoginArgs) -> Res<Done> {
    let urls: Vec<&str> = a.urls.iter().map(String::as_str).collect();
    let st = match a.method {
        LoginMethod { sso: true, .. } => {
            let c = open_console().await?;
            c.sign_in_sso(&urls, |url| {
                // The URL carries no secret (PKCE keeps the verifier here): shown so
                // that a person whose browser did not open can paste it.
                eprintln!("Opening the browser to sign in. If it does not open, go to:\n  {url}");
                if let Err(e) = crate::sso::open_in_browser(url) {
                    eprintln!("(the browser did not start: {e})");
                }
                Ok(())
            })
            .await?
        }
        LoginMethod {
            token_stdin: true, ..
        } => {
            let token = read_secret("API token (not shown): ", true)?;
            let token = Zeroizing::new(token.trim().to_string());
            if token.is_empty() {
                return Err(usage("no token on stdin"));
            }
            let c = open_console().await?;
            c.sign_in_urls(&urls, &token).await?
        }
        _ => return Err(usage("give --sso or --token-stdin")),
    };
    let user = st.user.clone().unwrap_or_default();
    let groups = if st.groups.is_empty() {
        String::new()
    } else {
        format!(" (groups: {})", st.groups.join(", "))
    };
    let text = format!(
        "Signed in to {} as {user}{groups}.",
        st.broker_url.clone().unwrap_or_default()
    );
    Done::ok(&st, text)
}

async fn logout() -> Res<Done> {
    let c = open_console().await?;
    let was = c.status().await?;
    let st = c.sign_out().await?;
    let queued = c
        .snapshot()
        .await?
        .outbox
        .iter()
        .any(|i| i.kind == crate::console::REVOKE_TOKEN);
    let text = match (&was.user, queued) {
        (None, _) => "Not signed in.".to_string(),
        (Some(u), false) => format!("Signed out {u}; the token was revoked at the broker."),
        (Some(u), true) => format!(
            "Signed out {u}. The broker cannot be reached: the token's revocation is queued and \
             sent when it is back (by the app or the next firedoor command)."
        ),
    };
    let mut d = Done::ok(
        serde_json::json!({ "status": st, "revocation_queued": queued }),
        text,
    )?;
    if queued && was.signed_in {
        d.exit = exit::OFFLINE;
    }
    Ok(d)
}

async fn status(json: bool) -> Res<Done> {
    let c = open_console().await?;
    let signed_in = c.status().await?.signed_in;
    if signed_in {
        refresh(&c, json).await?;
    }
    let s = c.snapshot().await?;
    let st = &s.status;
    if !st.signed_in {
        let mut d = Done::ok(
            serde_json::json!({ "status": st, "outbox": s.outbox }),
            "Not signed in.",
        )?;
        d.exit = exit::SIGNED_OUT;
        return Ok(d);
    }
    let mut t = format!(
        "Signed in as {}{} to {}\n",
        st.user.clone().unwrap_or_default(),
        if st.groups.is_empty() {
            String::new()
        } else {
            format!(" ({})", st.groups.join(", "))
        },
        st.broker_url.clone().unwrap_or_default()
    );
    if st.broker_urls.len() > 1 {
        t.push_str(&format!(
            "Broker URLs: {} (in use: {})\n",
            st.broker_urls.join(", "),
            st.broker_url_in_use.clone().unwrap_or_default()
        ));
    }
    let synced = st
        .last_synced_at
        .map(|t| format!("last synced {}", fmt_time(t)))
        .unwrap_or_else(|| "never synced".into());
    if st.online {
        t.push_str(&format!("Broker: online, {synced}\n"));
    } else {
        t.push_str(&format!(
            "Broker: OFFLINE{}, {synced}{}\n",
            st.offline_since
                .map(|t| format!(" since {}", fmt_time(t)))
                .unwrap_or_default(),
            st.last_error
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ));
    }
    if let Some(alert) = &st.audit_alert {
        t.push_str(&format!("SECURITY ALERT: {alert}\n"));
    }
    let live = s.grants.iter().filter(|g| g.state.is_live()).count();
    t.push_str(&format!(
        "{live} live grant{}, {} request{} waiting for your approval\n",
        if live == 1 { "" } else { "s" },
        s.approvals.len(),
        if s.approvals.len() == 1 { "" } else { "s" }
    ));
    if s.outbox.is_empty() {
        t.push_str("Outbox: empty\n");
    } else {
        t.push_str(&format!(
            "Outbox: {} queued, sent when the broker is back:\n",
            s.outbox.len()
        ));
        for i in &s.outbox {
            t.push_str(&format!(
                "  {} (queued {}{})\n",
                i.summary,
                fmt_time(i.created_at),
                i.last_error
                    .as_ref()
                    .map(|e| format!("; last try: {e}"))
                    .unwrap_or_default()
            ));
        }
    }
    Done::ok(serde_json::json!({ "status": st, "outbox": s.outbox }), t)
}

/// Opens the console, checks the session and refreshes: for the list commands.
async fn listing(json: bool) -> Res<(Arc<Console>, Snapshot)> {
    let c = open_console().await?;
    require_session(&c).await?;
    refresh(&c, json).await?;
    let s = c.snapshot().await?;
    Ok((c, s))
}

async fn bundles(json: bool) -> Res<Done> {
    let (_c, s) = listing(json).await?;
    let rows: Vec<Vec<String>> = s
        .bundles
        .iter()
        .map(|b| {
            let t = &b.terms;
            let mut needs = Vec::new();
            if t.justification_required {
                needs.push("reason");
            }
            if t.ticket_required {
                needs.push("ticket");
            }
            vec![
                b.name.clone(),
                b.title.clone(),
                if t.approvals == 0 {
                    if t.break_glass {
                        "auto (break glass)".into()
                    } else {
                        "auto".into()
                    }
                } else {
                    t.approvals.to_string()
                },
                fmt_secs(t.default_duration_secs),
                fmt_secs(t.max_duration_secs),
                needs.join("+"),
            ]
        })
        .collect();
    let mut text = offline_note(&s);
    text.push_str(&table(
        &["NAME", "TITLE", "APPROVALS", "DEFAULT", "MAX", "NEEDS"],
        &rows,
    ));
    Done::ok(&s.bundles, text)
}

fn request_row(r: &RequestView, with_requester: bool) -> Vec<String> {
    let mut row = vec![
        r.id.to_string(),
        r.bundle.clone(),
        r.state.as_str().to_string(),
        fmt_secs(r.duration_secs),
    ];
    if with_requester {
        row.push(r.requester.clone());
    }
    row.push(r.justification.clone().unwrap_or_default());
    row
}

async fn requests(json: bool) -> Res<Done> {
    let (_c, s) = listing(json).await?;
    let mut text = offline_note(&s);
    text.push_str("My requests:\n");
    if s.my_requests.is_empty() {
        text.push_str("  none\n");
    } else {
        let rows: Vec<_> = s
            .my_requests
            .iter()
            .map(|r| request_row(r, false))
            .collect();
        text.push_str(&table(&["ID", "BUNDLE", "STATE", "FOR", "REASON"], &rows));
    }
    text.push_str("Waiting for my approval:\n");
    if s.approvals.is_empty() {
        text.push_str("  none\n");
    } else {
        let rows: Vec<_> = s.approvals.iter().map(|r| request_row(r, true)).collect();
        text.push_str(&table(
            &["ID", "BUNDLE", "STATE", "FOR", "REQUESTER", "REASON"],
            &rows,
        ));
    }
    if !s.outbox.is_empty() {
        text.push_str(&format!(
            "Queued until the broker is back: {}\n",
            s.outbox
                .iter()
                .map(|i| i.summary.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    Done::ok(
        serde_json::json!({ "mine": s.my_requests, "awaiting_me": s.approvals, "outbox": s.outbox }),
        text,
    )
}

fn grant_row(g: &GrantView, now: DateTime<Utc>) -> Vec<String> {
    let ends = if g.state.is_live() {
        format!(
            "{} (in {})",
            g.expires_at.format("%H:%M UTC"),
            fmt_secs((g.expires_at - now).num_seconds())
        )
    } else {
        g.ended_at
            .map(|t| format!("ended {}", t.format("%H:%M UTC")))
            .unwrap_or_default()
    };
    vec![
        g.id.to_string(),
        g.bundle.clone(),
        g.state.as_str().to_string(),
        ends,
        if g.ssh { "ssh".into() } else { String::new() },
    ]
}

async fn grants(json: bool) -> Res<Done> {
    let (_c, s) = listing(json).await?;
    let now = Utc::now() + chrono::Duration::milliseconds(s.status.clock_offset_ms);
    let mut text = offline_note(&s);
    if s.grants.is_empty() {
        text.push_str("No grants.\n");
    } else {
        let rows: Vec<_> = s.grants.iter().map(|g| grant_row(g, now)).collect();
        text.push_str(&table(&["ID", "BUNDLE", "STATE", "ENDS", ""], &rows));
    }
    Done::ok(&s.grants, text)
}

async fn request(a: RequestArgs, json: bool) -> Res<Done> {
    let duration_secs = a
        .duration
        .as_deref()
        .map(|d| parse_duration("--for", d))
        .transpose()?;
    let timeout = a
        .timeout
        .as_deref()
        .map(|d| parse_duration("--timeout", d))
        .transpose()?;
    let c = open_console().await?;
    require_session(&c).await?;
    let bundle = a.bundle.trim().to_string();
    let r = c
        .request_bundle(CreateRequest {
            bundle,
            duration_secs,
            justification: a.reason,
            ticket: a.ticket,
            incident: a.incident,
            on_behalf_of: None,
        })
        .await?;
    if r.queued || !a.wait {
        let id = r.request.as_ref().map(|q| q.id.to_string());
        let mut d = action(r)?;
        if let Some(id) = id {
            d.text = format!("{} ({id})", d.text);
        }
        return Ok(d);
    }
    let Some(req) = r.request.clone() else {
        return action(r);
    };
    if !json {
        eprintln!("{}; waiting for a decision…", r.message);
    }
    wait_for(c, req, timeout).await
}

/// What `--wait` saw last.
#[derive(Serialize)]
struct WaitOutcome {
    granted: bool,
    request: RequestView,
    grant: Option<GrantView>,
    message: String,
}

/// Blocks until the request is granted (its grant active), ends without a grant,
/// or the wait times out, following the console's event stream and syncs.
async fn wait_for(c: Arc<Console>, first: RequestView, timeout: Option<i64>) -> Res<Done> {
    let mut rx = c.subscribe();
    let runner = tokio::spawn(c.clone().run(Duration::from_secs(5)));
    let offset = c.status().await?.clock_offset_ms;
    // The broker times a pending request out at `pending_until` (its clock); a little
    // after that its answer is in.
    let broker_limit = (first.pending_until
        - (Utc::now() + chrono::Duration::milliseconds(offset)))
    .num_seconds()
    .max(0)
        + 30;
    let limit = timeout.map_or(broker_limit, |t| t.min(broker_limit));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(limit.max(0) as u64);
    let id = first.id;
    let mut last = first;
    let outcome = loop {
        let s = c.snapshot().await?;
        if let Some(r) = s.my_requests.iter().find(|r| r.id == id) {
            last = r.clone();
        }
        let grant = last
            .grant_id
            .as_ref()
            .and_then(|g| s.grants.iter().find(|x| &x.id == g))
            .cloned();
        match last.state {
            RequestState::Active | RequestState::Approved
                if grant
                    .as_ref()
                    .is_some_and(|g| g.state == GrantState::Active) =>
            {
                let g = grant.clone();
                let until = g
                    .as_ref()
                    .map(|g| format!(" until {}", fmt_time(g.expires_at)))
                    .unwrap_or_default();
                let gid = g.as_ref().map(|g| g.id.to_string()).unwrap_or_default();
                break Ok(WaitOutcome {
                    granted: true,
                    message: format!("Granted: {}{until} (grant {gid})", last.bundle_title),
                    request: last.clone(),
                    grant: g,
                });
            }
            RequestState::Failed => {
                break Err(ConsoleError::new(
                    ConsoleErrorCode::BrokerError,
                    format!(
                        "Approved, but the access could not be set up: {}",
                        last.error.clone().unwrap_or_default()
                    ),
                ))
            }
            RequestState::Denied
            | RequestState::Cancelled
            | RequestState::TimedOut
            | RequestState::Expired
            | RequestState::Revoked => {
                let by = last
                    .decisions
                    .iter()
                    .rev()
                    .find(|d| d.decision == "deny")
                    .map(|d| {
                        format!(
                            " by {}{}",
                            d.by,
                            d.comment
                                .as_ref()
                                .map(|c| format!(": {c}"))
                                .unwrap_or_default()
                        )
                    })
                    .unwrap_or_default();
                break Ok(WaitOutcome {
                    granted: false,
                    message: format!(
                        "Not granted: the request for {} was {}{by}",
                        last.bundle_title,
                        last.state.as_str().replace('_', " ")
                    ),
                    request: last.clone(),
                    grant,
                });
            }
            _ => {}
        }
        tokio::select! {
            _ = rx.recv() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = tokio::time::sleep_until(deadline) => {
                break Ok(WaitOutcome {
                    granted: false,
                    message: format!(
                        "Gave up waiting after {}: the request for {} is still {} ({})",
                        fmt_secs(limit),
                        last.bundle_title,
                        last.state.as_str().replace('_', " "),
                        last.id
                    ),
                    request: last.clone(),
                    grant,
                });
            }
        }
    };
    runner.abort();
    let o = outcome?;
    let mut d = Done::ok(&o, o.message.clone())?;
    if !o.granted {
        d.exit = exit::NOT_GRANTED;
    }
    Ok(d)
}

async fn creds(a: CredsArgs, json: bool) -> Res<Done> {
    let id: GrantId = parse_id("grant", &a.grant)?;
    let c = open_console().await?;
    require_session(&c).await?;
    // The sync also puts active SSH grants' keys into the agent, as the app does.
    refresh(&c, json).await?;
    let s = c.snapshot().await?;
    if let Some(g) = s.grants.iter().find(|g| g.id == id && g.ssh) {
        return ssh_creds(&c, g).await;
    }
    let creds = c.credentials(&id).await?;
    let creds = scrub::Scrubbed(creds);
    let items = creds::select(&creds.0, a.resource.as_deref());
    if items.is_empty() {
        return Err(ConsoleError::new(
            ErrorCode::NoCredentials,
            match &a.resource {
                Some(r) => format!("This grant has no credential for resource '{r}'."),
                None => "This grant has no credentials.".into(),
            },
        )
        .into());
    }
    let fail = |m: String| Failure::from(ConsoleError::new(ConsoleErrorCode::Format, m));
    // Printed here, not through `report`, so the secret lives in zeroized buffers only.
    let text: Zeroizing<String> = match (a.format, json) {
        (CredsFormat::Json, _) | (_, true) => {
            let view = firedoor_core::api::Credentials {
                grant_id: creds.0.grant_id,
                expires_at: creds.0.expires_at,
                items: items.into_iter().cloned().collect(),
            };
            let v = scrub::Scrubbed(view);
            Zeroizing::new(
                serde_json::to_string(&v.0)
                    .map_err(|e| ConsoleError::new(ErrorCode::Internal, e.to_string()))?
                    + "\n",
            )
        }
        (CredsFormat::Env, false) => creds::env_lines(&items).map_err(fail)?,
        (CredsFormat::Pgpass, false) => creds::pgpass_lines(&items).map_err(fail)?,
    };
    print_raw(&text)
}

/// Writes `text` to stdout exactly as it is (credentials, a secret: nothing else on
/// stdout); the command prints nothing more.
fn print_raw(text: &str) -> Res<Done> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| ConsoleError::new(ConsoleErrorCode::Io, e.to_string()))?;
    Ok(Done {
        json: silent(),
        text: String::new(),
        exit: exit::OK,
    })
}

/// A JSON value `report` does not print (the command printed its own output).
fn silent() -> serde_json::Value {
    serde_json::Value::String(SILENT.into())
}
const SILENT: &str = "\u{0}firedoor-printed";

async fn ssh_creds(c: &Console, g: &GrantView) -> Res<Done> {
    if g.state != GrantState::Active {
        return Err(ConsoleError::new(
            ConsoleErrorCode::NotActive,
            format!("The grant is {}, not active.", g.state.as_str()),
        )
        .into());
    }
    if crate::ssh_agent::agent_socket().is_err() {
        return Err(ConsoleError::new(
            ConsoleErrorCode::NoSshAgent,
            "No ssh-agent: SSH_AUTH_SOCK is not set. Start one (eval \"$(ssh-agent)\") and run this again.",
        )
        .into());
    }
    match c.ssh_into_agent(g).await? {
        s if s.in_agent => {
            let sock = std::env::var("SSH_AUTH_SOCK").unwrap_or_default();
            let text = format!(
                "The key and certificate of {} ({}) are in your ssh-agent ({sock}) until {}{}.{}",
                g.bundle_title,
                g.id,
                s.until.map(fmt_time).unwrap_or_default(),
                if s.principals.is_empty() {
                    String::new()
                } else {
                    format!(", as {}", s.principals.join(", "))
                },
                s.command
                    .as_ref()
                    .map(|c| format!("\nConnect: {c}"))
                    .unwrap_or_default()
            );
            Done::ok(&s, text)
        }
        s => Err(ConsoleError::new(
            ConsoleErrorCode::SshAgent,
            s.problem
                .unwrap_or_else(|| "The key is not in the ssh-agent.".into()),
        )
        .into()),
    }
}

/// Credentials zeroized when dropped.
mod scrub {
    use zeroize::Zeroize;
    pub struct Scrubbed(pub firedoor_core::api::Credentials);
    impl Drop for Scrubbed {
        fn drop(&mut self) {
            for i in &mut self.0.items {
                i.secret.zeroize();
            }
        }
    }
}

// issue 14: drills
/// `firedoor drill list | answer ID`.
async fn drill(d: DrillCommand) -> Res<Done> {
    let c = open_console().await?;
    require_session(&c).await?;
    match d {
        DrillCommand::List => {
            let drills = c.pending_drills().await?;
            let text = if drills.is_empty() {
                "No drill waits on this device.\n".to_string()
            } else {
                let rows: Vec<Vec<String>> = drills
                    .iter()
                    .map(|d| {
                        vec![
                            d.id.clone(),
                            d.secret.clone(),
                            d.title.clone(),
                            format!("v{}", d.version),
                            d.deadline.format("%Y-%m-%d %H:%M UTC").to_string(),
                        ]
                    })
                    .collect();
                let mut t = table(
                    &["DRILL", "SECRET", "TITLE", "VERSION", "ANSWER BEFORE"],
                    &rows,
                );
                t.push_str("Answer with `firedoor drill answer ID` (no secret is shown).\n");
                t
            };
            Done::ok(&drills, text)
        }
        DrillCommand::Answer {
            id,
            passphrase_stdin,
        } => {
            let p = read_secret("Unlock passphrase (not shown): ", passphrase_stdin)?;
            let p = SecretString::from(p.as_str());
            let o = c.answer_drill(&id, &p, Utc::now()).await?;
            let text = format!("{}\n", o.message);
            Done::ok(&o, text)
        }
    }
}

async fn breakglass(b: BreakglassCommand, json: bool) -> Res<Done> {
    let c = open_console().await?;
    require_session(&c).await?;
    match b {
        BreakglassCommand::List => {
            // Fresh envelopes (and pending records uploaded) when the broker answers.
            refresh(&c, json).await?;
            let s = c.snapshot().await?;
            let bg = &s.break_glass;
            let mut text = offline_note(&s);
            let d = &bg.device;
            if d.enrolled {
                text.push_str(&format!(
                    "Device {} enrolled; {} unlock record{} waiting for the broker{}\n",
                    d.device_name.clone().unwrap_or_default(),
                    d.pending_records,
                    if d.pending_records == 1 { "" } else { "s" },
                    if d.chain_ok {
                        ""
                    } else {
                        " (LOCAL CHAIN BROKEN)"
                    }
                ));
            } else {
                text.push_str(
                    "This device is not enrolled: `firedoor breakglass enrol` (broker needed).\n",
                );
            }
            if let Some(until) = d.locked_until {
                text.push_str(&format!("Locked out until {}\n", fmt_time(until)));
            }
            if let Some(ch) = &d.broker_key_change {
                text.push_str(&format!(
                    "BROKER KEY CHANGED: pinned {}, presented {} — confirm it in the app.\n",
                    ch.pinned_fingerprint, ch.new_fingerprint
                ));
            }
            let rows: Vec<Vec<String>> = bg
                .credentials
                .iter()
                .map(|s| {
                    vec![
                        s.name.clone(),
                        s.title.clone(),
                        format!("{:?}", s.state).to_lowercase(),
                        format!("v{}", s.version),
                        fmt_time(s.not_after),
                        s.problem.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            if rows.is_empty() {
                text.push_str("No sealed secrets on this device.\n");
            } else {
                text.push_str(&table(
                    &[
                        "NAME",
                        "TITLE",
                        "STATE",
                        "VERSION",
                        "VALID UNTIL",
                        "PROBLEM",
                    ],
                    &rows,
                ));
            }
            Done::ok(bg, text)
        }
        BreakglassCommand::Enrol { passphrase_stdin } => {
            let p = read_secret("New unlock passphrase (not shown): ", passphrase_stdin)?;
            if !passphrase_stdin {
                let again = read_secret("Again: ", false)?;
                if again != p {
                    return Err(usage("the passphrases differ"));
                }
            }
            let p = SecretString::from(p.as_str());
            let s = c.enrol_device(&p, Utc::now()).await?;
            let d = &s.break_glass.device;
            let text = format!(
                "Device {} enrolled: {} sealed secret{} on it.",
                d.device_name.clone().unwrap_or_default(),
                s.break_glass.credentials.len(),
                if s.break_glass.credentials.len() == 1 {
                    ""
                } else {
                    "s"
                }
            );
            Done::ok(&s.break_glass, text)
        }
        BreakglassCommand::Unlock {
            name,
            reason,
            passphrase_stdin,
        } => {
            let p = read_secret("Unlock passphrase (not shown): ", passphrase_stdin)?;
            let p = SecretString::from(p.as_str());
            let u = c.unlock_secret(&name, &reason, &p, Utc::now()).await?;
            // The secret alone on stdout (or the JSON with it); the rest on stderr.
            let text: Zeroizing<String> = if json {
                Zeroizing::new(
                    serde_json::to_string(&u)
                        .map_err(|e| ConsoleError::new(ErrorCode::Internal, e.to_string()))?
                        + "\n",
                )
            } else {
                eprintln!("{} (version {}): {}", u.title, u.version, u.message);
                Zeroizing::new(format!("{}\n", u.secret.as_str()))
            };
            print_raw(&text)
        }
        // issue 14: quorum
        BreakglassCommand::Request {
            name,
            reason,
            out,
            qr,
            passphrase_stdin,
        } => {
            let p = read_secret("Unlock passphrase (not shown): ", passphrase_stdin)?;
            let p = SecretString::from(p.as_str());
            let r = c.quorum_request(&name, &reason, &p, Utc::now()).await?;
            if let Some(f) = &out {
                write_file(f, &format!("{}\n", r.text))?;
            }
            if let (Some(f), Some(svg)) = (&qr, &r.qr_svg) {
                write_file(f, svg)?;
            }
            let text = format!(
                "{}\n\nTwo-person unlock of {} (v{}): {} people needed. Give the text above to one of: {}.\n\
                 They run `firedoor breakglass release <text>`; then run\n  firedoor breakglass complete {} <their release>\n\
                 The request expires at {}.",
                r.text,
                r.title,
                r.version,
                r.need,
                r.co_holders.join(", "),
                r.request_id,
                fmt_time(r.expires_at)
            );
            Done::ok(&r, text)
        }
        BreakglassCommand::Inspect { request } => {
            let v = c.quorum_inspect(&blob_arg(&request)?, Utc::now()).await?;
            let text = format!(
                "{} asks to unlock {} ({}, v{}) from device {}\nReason: {}\nMade {}, expires {}. {} people needed.",
                v.requester,
                v.title,
                v.name,
                v.version,
                v.requester_device,
                v.reason,
                fmt_time(v.created_at),
                fmt_time(v.expires_at),
                v.need
            );
            Done::ok(&v, text)
        }
        BreakglassCommand::Release {
            request,
            out,
            qr,
            passphrase_stdin,
        } => {
            let blob = blob_arg(&request)?;
            let p = read_secret("Unlock passphrase (not shown): ", passphrase_stdin)?;
            let p = SecretString::from(p.as_str());
            let r = c.quorum_release(&blob, &p, Utc::now()).await?;
            if let Some(f) = &out {
                write_file(f, &format!("{}\n", r.text))?;
            }
            if let (Some(f), Some(svg)) = (&qr, &r.qr_svg) {
                write_file(f, svg)?;
            }
            let text = format!(
                "{}\n\nYour share of {} is released to {} (recorded as record {} on this device). \
                 Give them the text above; it expires at {}.",
                r.text,
                r.name,
                r.requester,
                r.record_seq,
                fmt_time(r.expires_at)
            );
            Done::ok(&r, text)
        }
        BreakglassCommand::Complete {
            request_id,
            releases,
            passphrase_stdin,
        } => {
            let releases = releases
                .iter()
                .map(|r| blob_arg(r))
                .collect::<Res<Vec<String>>>()?;
            let p = read_secret("Unlock passphrase (not shown): ", passphrase_stdin)?;
            let p = SecretString::from(p.as_str());
            let u = c
                .quorum_complete(&request_id, &releases, &p, Utc::now())
                .await?;
            let text: Zeroizing<String> = if json {
                Zeroizing::new(
                    serde_json::to_string(&u)
                        .map_err(|e| ConsoleError::new(ErrorCode::Internal, e.to_string()))?
                        + "\n",
                )
            } else {
                eprintln!("{} (version {}): {}", u.title, u.version, u.message);
                Zeroizing::new(format!("{}\n", u.secret.as_str()))
            };
            print_raw(&text)
        }
        BreakglassCommand::Pending => {
            let list = c.quorum_pending(Utc::now()).await?;
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|p| {
                    vec![
                        p.request_id.clone(),
                        p.name.clone(),
                        format!("{}/{}", p.have, p.need),
                        if p.completed {
                            "completed".into()
                        } else {
                            fmt_time(p.expires_at)
                        },
                    ]
                })
                .collect();
            let text = if rows.is_empty() {
                "No two-person requests on this device.".to_string()
            } else {
                table(&["REQUEST", "SECRET", "SHARES", "EXPIRES"], &rows)
            };
            Done::ok(&list, text)
        }
        // issue 14: uses
        BreakglassCommand::Uses { open } => {
            let list = c.break_glass_uses(open).await?;
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|u| {
                    vec![
                        u.id.clone(),
                        match u.kind {
                            None => "OPEN".into(),
                            Some(k) => k.as_str().into(),
                        },
                        format!("{} v{}", u.secret, u.version),
                        u.user.clone(),
                        format!("{} {}", u.mode, fmt_time(u.unlocked_at)),
                        u.incident.clone().unwrap_or_default(),
                        if u.rotated {
                            "rotated".into()
                        } else {
                            u.rotates_at
                                .map(|t| {
                                    format!(
                                        "{}{}",
                                        fmt_time(t),
                                        if u.rotation_waits {
                                            " or at incident end"
                                        } else {
                                            ""
                                        }
                                    )
                                })
                                .unwrap_or_default()
                        },
                    ]
                })
                .collect();
            let text = if rows.is_empty() {
                if open {
                    "No open break-glass uses.\n".to_string()
                } else {
                    "No break-glass uses.\n".to_string()
                }
            } else {
                table(
                    &[
                        "ID", "CLASS", "SECRET", "BY", "UNLOCKED", "INCIDENT", "ROTATES",
                    ],
                    &rows,
                )
            };
            Done::ok(&list, text)
        }
        BreakglassCommand::Classify {
            id,
            kind,
            incident,
            note,
        } => {
            let kind = crate::uses::parse_kind(&kind).map_err(usage)?;
            let u = c
                .classify_use(&id, kind, incident.as_deref(), note.as_deref())
                .await?;
            let text = format!(
                "{} classified as {}{}",
                u.id,
                kind.as_str(),
                u.incident
                    .as_deref()
                    .map(|i| format!(" ({i})"))
                    .unwrap_or_default()
            );
            Done::ok(&u, text)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> bool {
        wants_cli(args.first().map(OsStr::new))
    }

    #[test]
    fn the_app_starts_for_no_argument_its_options_and_deep_links() {
        assert!(!cli(&[]));
        assert!(!cli(&["--demo"]));
        assert!(!cli(&["--minimized"]));
        assert!(!cli(&["firedoor://request/prod-db-read"]));
    }

    #[test]
    fn subcommands_help_version_and_typos_are_the_cli() {
        for s in SUBCOMMANDS {
            assert!(cli(&[s]), "{s} is a CLI command");
        }
        for s in ["--help", "-h", "--version", "-V", "statsu"] {
            assert!(cli(&[s]), "{s} goes to the CLI");
        }
    }

    #[test]
    fn every_subcommand_in_the_list_is_one_clap_knows_and_back() {
        let cmd = Cli::command();
        let known: Vec<String> = cmd
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .collect();
        for k in &known {
            assert!(
                SUBCOMMANDS.contains(&k.as_str()),
                "{k} missing from SUBCOMMANDS"
            );
        }
        for s in SUBCOMMANDS.iter().filter(|s| **s != "help") {
            assert!(known.iter().any(|k| k == s), "{s} is not a clap subcommand");
        }
        Cli::command().debug_assert();
    }

    fn code(s: &str) -> ConsoleErrorCode {
        ConsoleErrorCode::parse(s).expect("a known code")
    }

    #[test]
    fn exit_codes_follow_the_console_codes() {
        assert_eq!(exit_code(code("signed_out")), exit::SIGNED_OUT);
        assert_eq!(exit_code(code("unauthenticated")), exit::SIGNED_OUT);
        assert_eq!(exit_code(code("forbidden")), exit::REFUSED);
        assert_eq!(exit_code(code("self_approval")), exit::REFUSED);
        assert_eq!(exit_code(code("not_found")), exit::NOT_FOUND);
        assert_eq!(exit_code(code("offline")), exit::OFFLINE);
        assert_eq!(exit_code(code("invalid_duration")), exit::ERROR);
    }

    #[test]
    fn a_token_is_never_an_argument() {
        let e = Cli::try_parse_from(["firedoor", "login", "--url", "http://x", "--token", "t"])
            .unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument);
        let e = Cli::try_parse_from(["firedoor", "login", "--url", "http://x"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn durations_read_like_the_policy() {
        assert_eq!(parse_duration("--for", "1h30m").unwrap(), 5400);
        assert_eq!(parse_duration("--for", "x").unwrap_err().exit, exit::USAGE);
        assert_eq!(fmt_secs(5400), "1h30m");
        assert_eq!(fmt_secs(90), "1m30s");
    }
}
