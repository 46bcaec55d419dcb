//! Policy as code: a TOML file that declares integrations, bundles and access flows.
//!
//! Parsing is strict (unknown keys are errors) and every error names the file, the
//! line and the problem, so a broker with a bad policy refuses to start with a message
//! an operator can act on.

use crate::duration::parse_duration;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use toml::Spanned;

/// Who is acting: a signed-in user with their groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub name: String,
    pub groups: Vec<String>,
    pub admin: bool,
    /// The on-call schedules they are on call for at the time of the check (the
    /// broker fills it in from the policy's schedules and the stored overrides;
    /// see [`crate::oncall`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub oncall: Vec<String>,
}

impl Principal {
    pub fn in_group(&self, g: &str) -> bool {
        self.groups.iter().any(|x| x == g)
    }
    pub fn on_call_for(&self, schedule: &str) -> bool {
        self.oncall.iter().any(|x| x == schedule)
    }
}

/// A set of users and groups, as written in a flow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Audience {
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Whoever is on call for these schedules at the time of the check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub oncall: Vec<String>,
}

impl Audience {
    pub fn contains(&self, p: &Principal) -> bool {
        self.users.iter().any(|u| u == &p.name)
            || self.groups.iter().any(|g| p.in_group(g))
            || self.oncall.iter().any(|s| p.on_call_for(s))
    }
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty() && self.oncall.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum IntegrationKind {
    /// Provisions nothing real: issues a labelled demo credential. For trying
    /// Firedoor without any external system.
    Demo,
    /// A PostgreSQL server: each grant is a login role with `VALID UNTIL`, granted
    /// the database roles that the permission level maps to.
    Postgres {
        /// Name of the environment variable holding the admin connection URL (the
        /// URL holds a password, so it never lives in the policy file).
        url_env: String,
        /// Host and port the issued credentials should connect to, shown to the
        /// requester (defaults to the admin URL's host and port).
        #[serde(default)]
        connect_host: Option<String>,
        /// Permission level -> database roles granted to the issued login role.
        permissions: BTreeMap<String, Vec<String>>,
        /// The dedicated `NOLOGIN` role, with no privileges and no memberships, that
        /// receives the objects a grant role leaves behind (never the broker's admin).
        #[serde(default = "default_orphan_role")]
        orphan_role: String,
        /// What happens to those objects when the grant ends.
        #[serde(default)]
        on_revoke: OnRevoke,
    },
    /// Hosts that trust the broker's SSH user certificate authority: each grant's
    /// device key gets a certificate for the principals of its permission levels,
    /// valid until the grant's expiry (see [`crate::ssh`]).
    Ssh {
        /// Host set name (a bundle resource) -> its hosts and permission levels.
        host_sets: BTreeMap<String, crate::ssh::SshHostSet>,
    },
    /// The team's own endpoint provisions, deprovisions, extends and rotates:
    /// signed JSON calls (Standard Webhooks).
    Webhook {
        /// https (plain http only to the loopback interface).
        url: String,
        /// The environment variable holding the `whsec_…` signing secret.
        secret_env: String,
        /// During a rotation: the variable holding the previous secret; calls are
        /// signed with both.
        #[serde(default)]
        previous_secret_env: Option<String>,
    },
    /// A MySQL or MariaDB server: each grant is an account `'fd_…'@'%'` holding the
    /// privileges its permission level lists on the bundle's database (`db`.*).
    Mysql {
        /// Name of the environment variable holding the admin connection URL
        /// (`mysql://user:password@host:port`).
        url_env: String,
        /// Host the issued credentials should connect to (defaults to the admin
        /// URL's host).
        #[serde(default)]
        connect_host: Option<String>,
        /// Permission level -> database-level privileges granted on the resource
        /// database, e.g. `read = ["SELECT"]`. Normalised to upper case.
        permissions: BTreeMap<String, Vec<String>>,
        /// What happens to the views, routines, triggers and events the account
        /// defined. Only `drop` (the default here): MySQL cannot hand an object to
        /// another definer without SET USER / SET_USER_ID, which the broker refuses
        /// to hold (see the README).
        #[serde(default = "mysql_on_revoke")]
        on_revoke: OnRevoke,
    },
}

fn mysql_on_revoke() -> OnRevoke {
    OnRevoke::Drop
}

/// The database-level privileges a MySQL/MariaDB permission level may list. Not
/// `ALL` (it includes GRANT OPTION on some servers' reading and is never what an
/// emergency needs), never `GRANT OPTION` (a grantee must not pass access on), and no
/// global privilege (those are not database-level).
pub const MYSQL_DB_PRIVILEGES: &[&str] = &[
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "CREATE",
    "DROP",
    "REFERENCES",
    "INDEX",
    "ALTER",
    "CREATE TEMPORARY TABLES",
    "LOCK TABLES",
    "EXECUTE",
    "CREATE VIEW",
    "SHOW VIEW",
    "CREATE ROUTINE",
    "ALTER ROUTINE",
    "EVENT",
    "TRIGGER",
    "DELETE HISTORY",
];

/// Databases a MySQL bundle may never name: granting on them is a way to the
/// server's accounts and passwords.
const MYSQL_SYSTEM_SCHEMAS: &[&str] = &["mysql", "information_schema", "performance_schema", "sys"];

/// A MySQL privilege as the policy wrote it, normalised (`select` -> `SELECT`,
/// `create   view` -> `CREATE VIEW`), if it is one a permission level may list.
pub fn mysql_privilege(p: &str) -> Option<String> {
    let norm = p
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_uppercase();
    MYSQL_DB_PRIVILEGES.contains(&norm.as_str()).then_some(norm)
}

/// A plain MySQL database name (letters, digits, `_`; up to 64) that is not a
/// system schema.
pub fn valid_mysql_database(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !MYSQL_SYSTEM_SCHEMAS.contains(&s.to_ascii_lowercase().as_str())
}

/// A plain MySQL account name (a-z, 0-9, `_`, up to 32: MySQL 8's limit).
pub fn valid_mysql_user(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The orphan role when the policy names none.
pub const DEFAULT_ORPHAN_ROLE: &str = "firedoor_orphans";

fn default_orphan_role() -> String {
    DEFAULT_ORPHAN_ROLE.to_string()
}

/// What the PostgreSQL connector does with the objects a grant role created, once
/// the grant ends. Either way its functions and procedures are first made
/// `SECURITY INVOKER` and lose every EXECUTE grant, and the privileges others were
/// given on its relations are revoked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnRevoke {
    /// Kept, owned by the orphan role (`REASSIGN OWNED` + `DROP OWNED`).
    #[default]
    Reassign,
    /// Dropped (`DROP OWNED`, no CASCADE: an object of someone else that depends on
    /// one of them makes the revoke fail, visibly, until it is resolved).
    Drop,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Integration {
    pub name: String,
    #[serde(flatten)]
    pub kind: IntegrationKind,
}

/// One target inside an integration with the permission level a bundle gives on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct ResourceGrant {
    pub integration: String,
    /// The target inside the integration, e.g. a database name.
    pub resource: String,
    pub permission: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    pub name: String,
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    pub resources: Vec<ResourceGrant>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    pub name: String,
    pub bundles: Vec<String>,
    pub requesters: Audience,
    pub approvers: Audience,
    /// Distinct approvals needed; 0 means the request is approved automatically.
    pub approvals: u32,
    pub default_duration_secs: i64,
    pub max_duration_secs: i64,
    pub justification_required: bool,
    pub ticket_required: bool,
    pub pending_ttl_secs: i64,
    pub break_glass: bool,
    /// `auto_approve = "requester_on_call"`: a request by someone on call right now
    /// for one of the schedules in `requesters.oncall` needs no approval.
    #[serde(default)]
    pub auto_approve_on_call: bool,
    /// `auto_approve = "incident_responder"`: a request made for an open incident by
    /// one of its responders needs no approval.
    #[serde(default)]
    pub auto_approve_incident: bool,
    /// `incident_end_grace`: once the incident a grant was made for is resolved,
    /// the grant ends this long after (never later than it would have anyway).
    /// `None`: it runs its course.
    #[serde(default)]
    pub incident_end_grace_secs: Option<i64>,
    /// `on_behalf = { groups = ["incident-commanders"] }`: who may request this
    /// flow's bundles for someone else (who must be a requester themselves).
    #[serde(default)]
    pub on_behalf: Audience,
    /// `remind_after`: the current approvers are reminded once per stage after
    /// this long without a decision (see [`crate::approval`]).
    #[serde(default)]
    pub remind_after_secs: Option<i64>,
    /// `approvers_window`: when `approvers` are asked; outside it the request goes
    /// to the first escalation at once.
    #[serde(default)]
    pub approvers_window: Option<crate::approval::ApprovalWindow>,
    /// `escalate = [{ after, approvers, window }]`: later approval stages.
    #[serde(default)]
    pub escalation: Vec<crate::approval::Escalation>,
}

impl Flow {
    pub fn is_automatic(&self) -> bool {
        self.approvals == 0
    }
    /// Whether a request by `p` (as they are now) is approved without anyone
    /// deciding: the flow needs no approval, or it approves those on call and `p`
    /// is on call for one of its requesters' schedules.
    pub fn approves_automatically(&self, p: &Principal) -> bool {
        self.is_automatic()
            || (self.auto_approve_on_call
                && self.requesters.oncall.iter().any(|s| p.on_call_for(s)))
    }
    pub fn may_request(&self, p: &Principal) -> bool {
        self.requesters.contains(p)
    }
    /// Whether `p` is one of the flow's approvers at any stage (see
    /// [`crate::approval`]; who may decide a given request depends on the stage
    /// it reached: [`Flow::may_decide_at`]).
    pub fn may_approve(&self, p: &Principal) -> bool {
        self.approvers.contains(p) || self.escalation.iter().any(|e| e.approvers.contains(p))
    }
}

/// How a break-glass secret is rotated: the integration whose connector sets a new
/// value on `role`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRotation {
    pub integration: String,
    /// The account in the target system whose password is the secret.
    pub role: String,
    /// When an unlock's rotation runs (default: right after the unlock).
    #[serde(default)]
    pub when: RotateWhen,
    /// With `when = "after_incident"`: the longest wait for the linked incident
    /// to be resolved (unlinked uses rotate then).
    #[serde(default)]
    pub max_delay_secs: i64,
    /// Whether the rotation also ends the target's open sessions of `role` (made
    /// with the old password). PostgreSQL only.
    #[serde(default)]
    pub end_sessions: bool,
}

/// When an unlock's rotation runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RotateWhen {
    /// As soon as the unlock is known (an online unlock: `rotate_after_online`
    /// later). The default.
    #[default]
    Immediate,
    /// When the incident the use is linked to is resolved in the broker, or
    /// `max_delay` after the unlock, whichever comes first.
    AfterIncident,
}

impl RotateWhen {
    pub fn as_str(self) -> &'static str {
        match self {
            RotateWhen::Immediate => "immediate",
            RotateWhen::AfterIncident => "after_incident",
        }
    }
}

/// `rotate = { ... }` as written in the policy.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRotation {
    integration: String,
    role: String,
    #[serde(default)]
    when: Option<String>,
    #[serde(default)]
    max_delay: Option<String>,
    #[serde(default)]
    end_sessions: bool,
}

/// `max_delay` when the policy does not say (with `when = "after_incident"`).
pub const DEFAULT_ROTATE_MAX_DELAY_SECS: i64 = 24 * 3600;
/// Shortest and longest `max_delay`.
pub const ROTATE_MAX_DELAY_RANGE: (i64, i64) = (600, 7 * 86_400);

/// A break-glass secret: held by the broker, sealed to the devices of the people who
/// may unlock it, rotated after every unlock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretPolicy {
    pub name: String,
    pub title: String,
    pub description: String,
    /// Who may unlock it (offline from an envelope, or online from the broker).
    pub unlock: Audience,
    /// Who is alerted on every unlock besides the admins.
    pub alert: Audience,
    /// How long a sealed envelope stays valid.
    pub validity_secs: i64,
    pub rotate: Option<SecretRotation>,
    /// An online unlock rotates the secret this long after the value was released.
    pub rotate_after_online_secs: i64,
    /// The broker rotates the secret at least this often, so an envelope copied off a
    /// device opens nothing that still works for long (default: `validity_secs`).
    pub max_age_secs: i64,
    /// issue 14: drills. The broker starts a drill of this secret this long after
    /// the last one started (`drill_every = "30d"`); `None`: drills are started by
    /// hand only (`firedoor-server drill start`).
    #[serde(default)]
    pub drill_every_secs: Option<i64>,
    /// How long the devices of a drill have to prove they open their envelope
    /// (`drill_window`, default 3 days).
    #[serde(default = "default_drill_window")]
    pub drill_window_secs: i64,
    /// The fewest people who must be ready to open this secret (`min_ready`);
    /// when it is set, fewer raises an alert. See [`SecretPolicy::required_ready`].
    #[serde(default)]
    pub min_ready: Option<u32>,
    /// How many different people must act together to open it offline (issue 14:
    /// quorum; `unlock = { groups = [...], quorum = 2 }`). 1 (the default) is the
    /// single-holder envelope; above 1 the broker seals one Shamir share per person.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub quorum: u8,
}

fn default_drill_window() -> i64 {
    DEFAULT_DRILL_WINDOW_SECS
}

fn one() -> u8 {
    1
}

fn is_one(q: &u8) -> bool {
    *q == 1
}

/// The largest quorum a policy may ask for: the shares live in GF(256), so at most
/// 255 people can hold one, and a quorum above a dozen people is no break glass.
pub const MAX_QUORUM: u8 = 16;

/// `unlock = { users, groups, oncall, quorum }` as written in the policy.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUnlock {
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    oncall: Vec<String>,
    #[serde(default)]
    quorum: Option<i64>,
}

impl SecretPolicy {
    pub fn may_unlock(&self, p: &Principal) -> bool {
        self.unlock.contains(p)
    }

    /// How many people must be ready to open the secret: the larger of its unlock
    /// quorum (1 until m-of-n unlock exists: one person opens it) and `min_ready`
    /// (1 when not set).
    pub fn required_ready(&self) -> u32 {
        let quorum = self.unlock_quorum();
        self.min_ready.unwrap_or(1).max(quorum)
    }

    /// How many people it takes to open the secret (`unlock = { quorum = m }`).
    pub fn unlock_quorum(&self) -> u32 {
        u32::from(self.quorum)
    }

    /// Whether readiness alerts are raised for this secret: the policy says how
    /// many must be ready (`min_ready`), or it takes more than one person to open.
    pub fn readiness_alerts(&self) -> bool {
        self.min_ready.is_some() || self.unlock_quorum() > 1
    }
}

/// How long a drill's devices have to answer when the policy does not say.
pub const DEFAULT_DRILL_WINDOW_SECS: i64 = 3 * 86_400;
/// Shortest and longest time a drill's devices have to answer.
pub const DRILL_WINDOW_RANGE: (i64, i64) = (600, 30 * 86_400);
/// Shortest and longest time between scheduled drills.
pub const DRILL_EVERY_RANGE: (i64, i64) = (3600, 366 * 86_400);
/// The largest `min_ready`.
pub const MAX_MIN_READY: u32 = 1000;

/// Envelope validity when the policy does not say.
pub const DEFAULT_SECRET_VALIDITY_SECS: i64 = 7 * 86_400;
/// Shortest and longest envelope validity.
pub const SECRET_VALIDITY_RANGE: (i64, i64) = (3600, 90 * 86_400);
/// Delay before an online unlock's rotation when the policy does not say.
pub const DEFAULT_ROTATE_AFTER_ONLINE_SECS: i64 = 3600;
/// Shortest and longest delay before an online unlock's rotation.
pub const ROTATE_AFTER_ONLINE_RANGE: (i64, i64) = (60, 30 * 86_400);

/// A validated policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub integrations: BTreeMap<String, Integration>,
    pub bundles: BTreeMap<String, Bundle>,
    pub flows: BTreeMap<String, Flow>,
    /// bundle name -> the one flow that governs it.
    pub bundle_flow: BTreeMap<String, String>,
    /// Break-glass secrets by name.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretPolicy>,
    /// On-call schedules by name.
    #[serde(default)]
    pub oncall: BTreeMap<String, crate::oncall::Schedule>,
    /// Where incidents come from, by name.
    #[serde(default)]
    pub incident_sources: BTreeMap<String, crate::incident::IncidentSource>,
    /// Which incidents open which bundles to whom, by name.
    #[serde(default)]
    pub incidents: BTreeMap<String, crate::incident::IncidentRule>,
    /// Where events go outside the app (chat, webhooks), by name.
    #[serde(default)]
    pub notifications: BTreeMap<String, crate::outbound::Channel>,
    /// Where the audit stream is delivered (SIEM), by name.
    #[serde(default)]
    pub audit_sinks: BTreeMap<String, crate::siem::AuditSink>,
    /// Single sign-on through an OpenID Provider (`[sso]`), if configured.
    #[serde(default)]
    pub sso: Option<crate::sso::SsoConfig>,
}

impl Policy {
    pub fn bundle(&self, name: &str) -> Option<&Bundle> {
        self.bundles.get(name)
    }
    pub fn flow_for_bundle(&self, bundle: &str) -> Option<&Flow> {
        self.bundle_flow.get(bundle).and_then(|f| self.flows.get(f))
    }
    pub fn integration(&self, name: &str) -> Option<&Integration> {
        self.integrations.get(name)
    }
    pub fn secret(&self, name: &str) -> Option<&SecretPolicy> {
        self.secrets.get(name)
    }
    /// The secrets a principal may unlock.
    pub fn unlockable_by<'a>(
        &'a self,
        p: &'a Principal,
    ) -> impl Iterator<Item = &'a SecretPolicy> + 'a {
        self.secrets.values().filter(move |s| s.may_unlock(p))
    }
    /// The bundles a principal may request, with their flow.
    pub fn requestable_by<'a>(
        &'a self,
        p: &'a Principal,
    ) -> impl Iterator<Item = (&'a Bundle, &'a Flow)> + 'a {
        self.bundles.values().filter_map(move |b| {
            let f = self.flow_for_bundle(&b.name)?;
            f.may_request(p).then_some((b, f))
        })
    }
}

/// The policy file is wrong; says where and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct PolicyError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

// ---- raw (as written) ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    integrations: BTreeMap<Spanned<String>, Spanned<IntegrationKind>>,
    #[serde(default)]
    bundles: BTreeMap<Spanned<String>, Spanned<RawBundle>>,
    #[serde(default)]
    flows: BTreeMap<Spanned<String>, Spanned<RawFlow>>,
    #[serde(default)]
    secrets: BTreeMap<Spanned<String>, Spanned<RawSecret>>,
    #[serde(default)]
    oncall: BTreeMap<Spanned<String>, Spanned<RawSchedule>>,
    #[serde(default)]
    incident_sources: BTreeMap<Spanned<String>, Spanned<RawSource>>,
    #[serde(default)]
    incidents: BTreeMap<Spanned<String>, Spanned<RawIncidentRule>>,
    #[serde(default)]
    notifications: BTreeMap<Spanned<String>, Spanned<RawChannel>>,
    #[serde(default)]
    audit_sinks: BTreeMap<Spanned<String>, Spanned<crate::siem::RawAuditSink>>,
    #[serde(default)]
    sso: Option<Spanned<crate::sso::RawSso>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChannel {
    kind: Spanned<String>,
    #[serde(default)]
    url: Option<Spanned<String>>,
    #[serde(default)]
    url_env: Option<Spanned<String>>,
    #[serde(default)]
    secret_env: Option<Spanned<String>>,
    events: Spanned<Vec<String>>,
    #[serde(default)]
    link_base: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    kind: crate::incident::SourceKind,
    secret_env: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIncidentRule {
    source: Spanned<String>,
    #[serde(default, rename = "match")]
    matches: BTreeMap<String, String>,
    bundles: Vec<Spanned<String>>,
    responders: Spanned<Audience>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    time_zone: Option<Spanned<String>>,
    #[serde(default)]
    layers: Option<Vec<Spanned<RawLayer>>>,
    // A synced schedule (see crate::oncall::SyncSpec).
    #[serde(default)]
    provider: Option<Spanned<String>>,
    #[serde(default)]
    schedule_id: Option<Spanned<String>>,
    #[serde(default)]
    schedule_name: Option<Spanned<String>>,
    #[serde(default)]
    token_env: Option<Spanned<String>>,
    #[serde(default)]
    api_url: Option<Spanned<String>>,
    #[serde(default)]
    refresh: Option<Spanned<String>>,
    #[serde(default)]
    users: Option<Spanned<BTreeMap<String, String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLayer {
    users: Vec<Spanned<String>>,
    start: Spanned<String>,
    shift: Spanned<String>,
    #[serde(default)]
    days: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    hours: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    description: String,
    unlock: Option<Spanned<RawUnlock>>,
    #[serde(default)]
    alert: Audience,
    #[serde(default)]
    validity: Option<Spanned<String>>,
    #[serde(default)]
    rotate: Option<Spanned<RawRotation>>,
    #[serde(default)]
    rotate_after_online: Option<Spanned<String>>,
    #[serde(default)]
    max_age: Option<Spanned<String>>,
    #[serde(default)]
    drill_every: Option<Spanned<String>>,
    #[serde(default)]
    drill_window: Option<Spanned<String>>,
    #[serde(default)]
    min_ready: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBundle {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    tags: Vec<String>,
    resources: Vec<Spanned<ResourceGrant>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlow {
    bundles: Vec<Spanned<String>>,
    requesters: Spanned<Audience>,
    #[serde(default)]
    approvers: Audience,
    approvals: Spanned<u32>,
    default_duration: Spanned<String>,
    max_duration: Spanned<String>,
    #[serde(default)]
    justification_required: bool,
    #[serde(default)]
    ticket_required: bool,
    #[serde(default)]
    pending_ttl: Option<Spanned<String>>,
    #[serde(default)]
    break_glass: bool,
    #[serde(default)]
    auto_approve: Option<Spanned<OneOrMany>>,
    #[serde(default)]
    incident_end_grace: Option<Spanned<String>>,
    #[serde(default)]
    on_behalf: Option<Spanned<Audience>>,
    #[serde(default)]
    remind_after: Option<Spanned<String>>,
    #[serde(default)]
    approvers_window: Option<Spanned<RawWindow>>,
    #[serde(default)]
    escalate: Vec<Spanned<RawEscalation>>,
}

/// `{ days = [...], hours = "08:00-20:00", time_zone = "Europe/Berlin" }`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    #[serde(default)]
    days: Option<Vec<String>>,
    #[serde(default)]
    hours: Option<String>,
    time_zone: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEscalation {
    after: Spanned<String>,
    approvers: Spanned<Audience>,
    #[serde(default)]
    window: Option<Spanned<RawWindow>>,
}

/// An approval window as the policy writes it.
fn approval_window(
    ctx: &Ctx<'_>,
    w: &Spanned<RawWindow>,
    what: &str,
) -> Result<crate::approval::ApprovalWindow, PolicyError> {
    let span = w.span();
    let raw = w.get_ref();
    let tz: chrono_tz::Tz = raw.time_zone.parse().map_err(|_| {
        ctx.err(
            span.clone(),
            format!(
                "{what}: time_zone '{}' is not an IANA time zone (e.g. \"Europe/Berlin\", \"UTC\")",
                raw.time_zone
            ),
        )
    })?;
    let mut days = BTreeSet::new();
    match &raw.days {
        None => days.extend(0..7),
        Some(d) => {
            for x in d {
                let n = crate::oncall::parse_day(x).ok_or_else(|| {
                    ctx.err(
                        span.clone(),
                        format!("{what}: days: '{x}' is not a day (use mon, tue, wed, thu, fri, sat, sun)"),
                    )
                })?;
                days.insert(n);
            }
        }
    }
    if days.is_empty() {
        return Err(ctx.err(span, format!("{what}: days: name at least one day")));
    }
    let (from, to) = match &raw.hours {
        None => (chrono::NaiveTime::MIN, chrono::NaiveTime::MIN),
        Some(h) => crate::oncall::parse_hours(h).ok_or_else(|| {
            ctx.err(
                span.clone(),
                format!("{what}: hours: '{h}' is not a range of local times like \"08:00-20:00\""),
            )
        })?,
    };
    Ok(crate::approval::ApprovalWindow {
        tz,
        window: crate::oncall::Window { days, from, to },
    })
}

struct Ctx<'a> {
    file: &'a str,
    src: &'a str,
}

impl Ctx<'_> {
    fn err(&self, span: Range<usize>, message: impl Into<String>) -> PolicyError {
        let start = span.start.min(self.src.len());
        let before = &self.src[..start];
        let line = before.matches('\n').count() + 1;
        let column = start - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
        PolicyError {
            file: self.file.to_string(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// Names of integrations, bundles, flows and users: short, lowercase, shell-safe.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric()
}

const NAME_RULE: &str = "use 1-64 of a-z, 0-9, '-' and '_', starting with a letter or digit";

/// Parses and validates a policy. `file` is only used in error messages.
pub fn parse_policy(file: &str, src: &str) -> Result<Policy, PolicyError> {
    let ctx = Ctx { file, src };
    let raw: RawPolicy = toml::from_str(src).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        ctx.err(span, e.message().trim().to_string())
    })?;

    let mut integrations = BTreeMap::new();
    for (name, kind) in raw.integrations {
        if !valid_name(name.get_ref()) {
            return Err(ctx.err(
                name.span(),
                format!("integration name '{}': {NAME_RULE}", name.get_ref()),
            ));
        }
        if let IntegrationKind::Ssh { host_sets } = kind.get_ref() {
            check_ssh_host_sets(&ctx, name.get_ref(), kind.span(), host_sets)?;
        }
        if let IntegrationKind::Webhook {
            url,
            secret_env,
            previous_secret_env,
        } = kind.get_ref()
        {
            let iname = name.get_ref();
            let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
                .iter()
                .any(|p| url.starts_with(p) && url[p.len()..].starts_with([':', '/']));
            if !(url.starts_with("https://") || loopback) || url.len() > 2000 {
                return Err(ctx.err(
                    kind.span(),
                    format!("webhook integration '{iname}': url must be https (plain http only to 127.0.0.1, localhost or [::1])"),
                ));
            }
            for env in std::iter::once(secret_env).chain(previous_secret_env) {
                if !valid_env_name(env) {
                    return Err(ctx.err(
                        kind.span(),
                        format!("webhook integration '{iname}': '{env}' must name an environment variable (A-Z, 0-9, _) holding a whsec_… secret, never the secret itself"),
                    ));
                }
            }
        }
        if let IntegrationKind::Postgres {
            url_env,
            permissions,
            orphan_role,
            ..
        } = kind.get_ref()
        {
            if url_env.trim().is_empty() {
                return Err(ctx.err(kind.span(), "postgres integration needs url_env"));
            }
            if !valid_pg_ident(orphan_role) {
                return Err(ctx.err(
                    kind.span(),
                    format!(
                        "orphan_role '{orphan_role}' is not a plain PostgreSQL role name (a-z, 0-9, _, not starting with a digit)"
                    ),
                ));
            }
            if permissions.values().flatten().any(|r| r == orphan_role) {
                return Err(ctx.err(
                    kind.span(),
                    format!(
                        "orphan_role '{orphan_role}' is also a role that permission levels grant; it must be a dedicated role"
                    ),
                ));
            }
            if permissions.is_empty() {
                return Err(ctx.err(
                    kind.span(),
                    format!(
                        "postgres integration '{}' maps no permission levels to roles \
                         (add [integrations.{}.permissions] read = [\"some_role\"])",
                        name.get_ref(),
                        name.get_ref()
                    ),
                ));
            }
            for (level, roles) in permissions {
                for r in roles {
                    if !valid_pg_ident(r) {
                        return Err(ctx.err(
                            kind.span(),
                            format!("permission '{level}': '{r}' is not a plain PostgreSQL role name (a-z, 0-9, _)"),
                        ));
                    }
                }
            }
        }
        let span = kind.span();
        let mut kind = kind.into_inner();
        if let IntegrationKind::Mysql {
            url_env,
            permissions,
            on_revoke,
            ..
        } = &mut kind
        {
            if url_env.trim().is_empty() {
                return Err(ctx.err(span.clone(), "mysql integration needs url_env"));
            }
            if *on_revoke == OnRevoke::Reassign {
                return Err(ctx.err(
                    span.clone(),
                    "mysql integration: on_revoke = \"reassign\" is not possible: MySQL and \
                     MariaDB can only give a view, routine, trigger or event another definer \
                     with SET USER (SET_USER_ID), a privilege that lets its holder run anything \
                     as any account, so the broker refuses to hold it. Use on_revoke = \"drop\" \
                     (the default): what the grant's account defined is dropped; tables have no \
                     owner in MySQL and are kept",
                ));
            }
            if permissions.is_empty() {
                return Err(ctx.err(
                    span.clone(),
                    format!(
                        "mysql integration '{}' maps no permission levels to privileges \
                         (add [integrations.{}.permissions] read = [\"SELECT\"])",
                        name.get_ref(),
                        name.get_ref()
                    ),
                ));
            }
            for (level, privs) in permissions.iter_mut() {
                if privs.is_empty() {
                    return Err(ctx.err(
                        span.clone(),
                        format!("permission '{level}' lists no privileges"),
                    ));
                }
                for p in privs.iter_mut() {
                    let Some(norm) = mysql_privilege(p) else {
                        return Err(ctx.err(
                            span.clone(),
                            format!(
                                "permission '{level}': '{p}' is not a database-level MySQL privilege \
                                 a grant may hold (one of: {}; never ALL or GRANT OPTION)",
                                MYSQL_DB_PRIVILEGES.join(", ")
                            ),
                        ));
                    };
                    *p = norm;
                }
                privs.sort();
                privs.dedup();
            }
        }
        let name = name.into_inner();
        integrations.insert(name.clone(), Integration { name, kind });
    }

    let mut bundles = BTreeMap::new();
    for (name, raw_b) in raw.bundles {
        if !valid_name(name.get_ref()) {
            return Err(ctx.err(
                name.span(),
                format!("bundle name '{}': {NAME_RULE}", name.get_ref()),
            ));
        }
        let span = raw_b.span();
        let b = raw_b.into_inner();
        if b.resources.is_empty() {
            return Err(ctx.err(
                span,
                format!("bundle '{}' has no resources", name.get_ref()),
            ));
        }
        // A database integration's level must be one its permissions map.
        let check_level = |permissions: &BTreeMap<String, Vec<String>>,
                           r: &ResourceGrant,
                           rspan: Range<usize>|
         -> Result<(), PolicyError> {
            if permissions.contains_key(&r.permission) {
                return Ok(());
            }
            let known: Vec<_> = permissions.keys().cloned().collect();
            Err(ctx.err(
                rspan,
                format!(
                    "permission '{}' is not defined for integration '{}' (defined: {})",
                    r.permission,
                    r.integration,
                    known.join(", ")
                ),
            ))
        };
        let mut resources = Vec::new();
        for r in b.resources {
            let rspan = r.span();
            let r = r.into_inner();
            let Some(integ) = integrations.get(&r.integration) else {
                return Err(ctx.err(
                    rspan,
                    format!(
                        "bundle '{}' uses integration '{}', which is not declared",
                        name.get_ref(),
                        r.integration
                    ),
                ));
            };
            if let IntegrationKind::Ssh { host_sets } = &integ.kind {
                let Some(set) = host_sets.get(&r.resource) else {
                    let known: Vec<_> = host_sets.keys().cloned().collect();
                    return Err(ctx.err(
                        rspan,
                        format!(
                            "resource '{}' is not a host set of SSH integration '{}' (host sets: {})",
                            r.resource,
                            r.integration,
                            known.join(", ")
                        ),
                    ));
                };
                if !set.permissions.contains_key(&r.permission) {
                    let known: Vec<_> = set.permissions.keys().cloned().collect();
                    return Err(ctx.err(
                        rspan,
                        format!(
                            "permission '{}' is not defined for host set '{}' (defined: {})",
                            r.permission,
                            r.resource,
                            known.join(", ")
                        ),
                    ));
                }
            }
            if let IntegrationKind::Postgres { permissions, .. } = &integ.kind {
                check_level(permissions, &r, rspan.clone())?;
                if !valid_pg_ident(&r.resource) {
                    return Err(ctx.err(
                        rspan,
                        format!(
                            "resource '{}' is not a plain PostgreSQL database name",
                            r.resource
                        ),
                    ));
                }
            }
            if let IntegrationKind::Mysql { permissions, .. } = &integ.kind {
                check_level(permissions, &r, rspan.clone())?;
                if !valid_mysql_database(&r.resource) {
                    return Err(ctx.err(
                        rspan,
                        format!(
                            "resource '{}' is not a plain MySQL database name (letters, digits, _), \
                             or is a system schema (mysql, information_schema, performance_schema, sys)",
                            r.resource
                        ),
                    ));
                }
            }
            resources.push(r);
        }
        let name = name.into_inner();
        bundles.insert(
            name.clone(),
            Bundle {
                title: b.title.unwrap_or_else(|| name.clone()),
                name,
                description: b.description,
                tags: b.tags,
                resources,
            },
        );
    }

    let mut oncall = BTreeMap::new();
    for (name, raw_s) in raw.oncall {
        let sname = name.get_ref().clone();
        if !valid_name(&sname) {
            return Err(ctx.err(name.span(), format!("schedule name '{sname}': {NAME_RULE}")));
        }
        let span = raw_s.span();
        let mut s = raw_s.into_inner();
        let tz: chrono_tz::Tz = match &s.time_zone {
            Some(z) => z.get_ref().parse().map_err(|_| {
                ctx.err(
                    z.span(),
                    format!(
                        "schedule '{sname}': time_zone '{}' is not an IANA time zone (e.g. \"Europe/Berlin\", \"UTC\")",
                        z.get_ref()
                    ),
                )
            })?,
            None if s.provider.is_some() => chrono_tz::UTC,
            None => {
                return Err(ctx.err(
                    span,
                    format!("schedule '{sname}' needs a time_zone and layers (or a provider = \"pagerduty\" or \"opsgenie\" to sync it from)"),
                ))
            }
        };
        let sync = parse_sync(&ctx, &sname, span.clone(), &mut s)?;
        if sync.is_some() {
            oncall.insert(
                sname.clone(),
                crate::oncall::Schedule {
                    title: s.title.unwrap_or_else(|| sname.clone()),
                    name: sname,
                    tz,
                    layers: Vec::new(),
                    sync,
                    synced: None,
                },
            );
            continue;
        }
        let raw_layers = s.layers.unwrap_or_default();
        if raw_layers.is_empty() {
            return Err(ctx.err(span, format!("schedule '{sname}' has no layers")));
        }
        let mut layers = Vec::new();
        for l in raw_layers {
            let lspan = l.span();
            let l = l.into_inner();
            if l.users.is_empty() {
                return Err(ctx.err(lspan, format!("schedule '{sname}': a layer names no users")));
            }
            for u in &l.users {
                if !valid_name(u.get_ref()) {
                    return Err(ctx.err(
                        u.span(),
                        format!("user name '{}': {NAME_RULE}", u.get_ref()),
                    ));
                }
            }
            let start = chrono::NaiveDateTime::parse_from_str(l.start.get_ref(), "%Y-%m-%dT%H:%M")
                .map_err(|_| {
                    ctx.err(
                        l.start.span(),
                        format!(
                            "schedule '{sname}': start '{}' is not a local date and time like \"2026-01-05T09:00\" (in the schedule's time zone)",
                            l.start.get_ref()
                        ),
                    )
                })?;
            let shift_secs = parse_duration(l.shift.get_ref())
                .map_err(|e| ctx.err(l.shift.span(), format!("shift: {e}")))?;
            if shift_secs < 3600 {
                return Err(ctx.err(l.shift.span(), "shift: at least 1h"));
            }
            let window = match (&l.days, &l.hours) {
                (None, None) => None,
                (days, hours) => {
                    let days = match days {
                        None => (0..7).collect(),
                        Some(d) => {
                            let mut set = BTreeSet::new();
                            for x in d.get_ref() {
                                let Some(n) = crate::oncall::parse_day(x) else {
                                    return Err(ctx.err(
                                        d.span(),
                                        format!("days: '{x}' is not a day (use mon, tue, wed, thu, fri, sat, sun)"),
                                    ));
                                };
                                set.insert(n);
                            }
                            if set.is_empty() {
                                return Err(ctx.err(d.span(), "days: name at least one day"));
                            }
                            set
                        }
                    };
                    let (from, to) = match hours {
                        None => (chrono::NaiveTime::MIN, chrono::NaiveTime::MIN),
                        Some(h) => crate::oncall::parse_hours(h.get_ref()).ok_or_else(|| {
                            ctx.err(
                                h.span(),
                                format!(
                                    "hours: '{}' is not a range of local times like \"08:00-20:00\"",
                                    h.get_ref()
                                ),
                            )
                        })?,
                    };
                    Some(crate::oncall::Window { days, from, to })
                }
            };
            layers.push(crate::oncall::Layer {
                users: l.users.into_iter().map(Spanned::into_inner).collect(),
                start,
                shift_secs,
                window,
            });
        }
        oncall.insert(
            sname.clone(),
            crate::oncall::Schedule {
                title: s.title.unwrap_or_else(|| sname.clone()),
                name: sname,
                tz,
                layers,
                sync: None,
                synced: None,
            },
        );
    }
    let check_schedules = |a: &Audience, span: Range<usize>, what: &str| {
        for sched in &a.oncall {
            if !oncall.contains_key(sched) {
                return Err(ctx.err(
                    span.clone(),
                    format!("{what} names on-call schedule '{sched}', which is not declared (add [oncall.{sched}])"),
                ));
            }
        }
        Ok(())
    };

    let mut flows = BTreeMap::new();
    let mut bundle_flow: BTreeMap<String, String> = BTreeMap::new();
    for (name, raw_f) in raw.flows {
        if !valid_name(name.get_ref()) {
            return Err(ctx.err(
                name.span(),
                format!("flow name '{}': {NAME_RULE}", name.get_ref()),
            ));
        }
        let f = raw_f.into_inner();
        let dur = |s: &Spanned<String>, what: &str| {
            parse_duration(s.get_ref()).map_err(|e| ctx.err(s.span(), format!("{what}: {e}")))
        };
        let default_d = dur(&f.default_duration, "default_duration")?;
        let max_d = dur(&f.max_duration, "max_duration")?;
        if default_d > max_d {
            return Err(ctx.err(
                f.default_duration.span(),
                format!(
                    "default_duration ({}) is longer than max_duration ({})",
                    f.default_duration.get_ref(),
                    f.max_duration.get_ref()
                ),
            ));
        }
        let ttl = match &f.pending_ttl {
            Some(s) => dur(s, "pending_ttl")?,
            None => 3600,
        };
        if f.requesters.get_ref().is_empty() {
            return Err(ctx.err(
                f.requesters.span(),
                format!("flow '{}' names no requesters", name.get_ref()),
            ));
        }
        check_schedules(
            f.requesters.get_ref(),
            f.requesters.span(),
            &format!("flow '{}': requesters", name.get_ref()),
        )?;
        check_schedules(
            &f.approvers,
            f.approvals.span(),
            &format!("flow '{}': approvers", name.get_ref()),
        )?;
        let rules: Vec<String> = match f.auto_approve.as_ref().map(Spanned::get_ref) {
            None => vec![],
            Some(OneOrMany::One(r)) => vec![r.clone()],
            Some(OneOrMany::Many(v)) => v.clone(),
        };
        let (mut auto_approve_on_call, mut auto_approve_incident) = (false, false);
        for r in &rules {
            let span = f.auto_approve.as_ref().map(Spanned::span).unwrap_or(0..0);
            match r.as_str() {
                "requester_on_call" => {
                    if f.requesters.get_ref().oncall.is_empty() {
                        return Err(ctx.err(
                            span,
                            format!(
                                "flow '{}': auto_approve = \"requester_on_call\" needs requesters = {{ oncall = [\"SCHEDULE\"] }}: whose on-call approves",
                                name.get_ref()
                            ),
                        ));
                    }
                    auto_approve_on_call = true;
                }
                "incident_responder" => auto_approve_incident = true,
                other => {
                    let m = format!(
                        "auto_approve: '{other}' is not a rule (the rules are \"requester_on_call\" and \"incident_responder\")"
                    );
                    return Err(ctx.err(span, m));
                }
            }
        }
        let incident_end_grace_secs = match &f.incident_end_grace {
            None => None,
            Some(g) => Some(dur(g, "incident_end_grace")?),
        };
        let approvals = *f.approvals.get_ref();
        if approvals > 0 && f.approvers.is_empty() {
            return Err(ctx.err(
                f.approvals.span(),
                format!(
                    "flow '{}' needs {approvals} approval(s) but names no approvers",
                    name.get_ref()
                ),
            ));
        }
        if approvals > 0 && f.approvers.groups.is_empty() && f.approvers.oncall.is_empty() {
            let distinct: BTreeSet<_> = f.approvers.users.iter().collect();
            if (distinct.len() as u32) < approvals {
                return Err(ctx.err(
                    f.approvals.span(),
                    format!(
                        "flow '{}' needs {approvals} approvals but names only {} approver(s)",
                        name.get_ref(),
                        distinct.len()
                    ),
                ));
            }
        }
        if approvals > 20 {
            return Err(ctx.err(f.approvals.span(), "approvals: at most 20"));
        }
        let mut bnames = Vec::new();
        for b in &f.bundles {
            if !bundles.contains_key(b.get_ref()) {
                return Err(ctx.err(
                    b.span(),
                    format!(
                        "flow '{}' lists unknown bundle '{}'",
                        name.get_ref(),
                        b.get_ref()
                    ),
                ));
            }
            if let Some(other) = bundle_flow.get(b.get_ref()) {
                return Err(ctx.err(
                    b.span(),
                    format!(
                        "bundle '{}' is already governed by flow '{other}'; a bundle belongs to one flow",
                        b.get_ref()
                    ),
                ));
            }
            bundle_flow.insert(b.get_ref().clone(), name.get_ref().clone());
            bnames.push(b.get_ref().clone());
        }
        let fname = name.get_ref().clone();
        let on_behalf = match f.on_behalf {
            None => Audience::default(),
            Some(a) => {
                check_schedules(a.get_ref(), a.span(), &format!("flow '{fname}': on_behalf"))?;
                a.into_inner()
            }
        };
        let remind_after_secs = match &f.remind_after {
            None => None,
            Some(r) => Some(dur(r, "remind_after")?),
        };
        let approvers_window = match &f.approvers_window {
            None => None,
            Some(w) => Some(approval_window(
                &ctx,
                w,
                &format!("flow '{fname}': approvers_window"),
            )?),
        };
        let mut escalation: Vec<crate::approval::Escalation> = Vec::new();
        for e in &f.escalate {
            let ge = e.get_ref();
            let after_secs = dur(&ge.after, "escalate: after")?;
            if after_secs >= ttl {
                return Err(ctx.err(
                    ge.after.span(),
                    format!(
                        "flow '{fname}': escalate after {} is not before the request times out (pending_ttl {}s)",
                        ge.after.get_ref(),
                        ttl
                    ),
                ));
            }
            if escalation
                .last()
                .is_some_and(|prev| prev.after_secs >= after_secs)
            {
                return Err(ctx.err(
                    ge.after.span(),
                    format!("flow '{fname}': each escalation comes after the one before it"),
                ));
            }
            if ge.approvers.get_ref().is_empty() {
                return Err(ctx.err(
                    ge.approvers.span(),
                    format!("flow '{fname}': an escalation names no approvers"),
                ));
            }
            check_schedules(
                ge.approvers.get_ref(),
                ge.approvers.span(),
                &format!("flow '{fname}': escalate approvers"),
            )?;
            let window = match &ge.window {
                None => None,
                Some(w) => Some(approval_window(
                    &ctx,
                    w,
                    &format!("flow '{fname}': escalate window"),
                )?),
            };
            escalation.push(crate::approval::Escalation {
                after_secs,
                approvers: ge.approvers.get_ref().clone(),
                window,
            });
        }
        if (remind_after_secs.is_some() || approvers_window.is_some() || !escalation.is_empty())
            && approvals == 0
        {
            return Err(ctx.err(
                f.approvals.span(),
                format!("flow '{fname}' approves automatically (approvals = 0): remind_after, approvers_window and escalate have nobody to ask"),
            ));
        }
        if approvers_window.is_some() && escalation.is_empty() {
            let span = f
                .approvers_window
                .as_ref()
                .map(Spanned::span)
                .unwrap_or(0..0);
            return Err(ctx.err(
                span,
                format!("flow '{fname}': approvers_window needs an escalate stage to ask outside the window"),
            ));
        }
        let name = name.into_inner();
        flows.insert(
            name.clone(),
            Flow {
                on_behalf,
                remind_after_secs,
                approvers_window,
                escalation,
                name,
                bundles: bnames,
                requesters: f.requesters.into_inner(),
                approvers: f.approvers,
                approvals,
                default_duration_secs: default_d,
                max_duration_secs: max_d,
                justification_required: f.justification_required,
                ticket_required: f.ticket_required,
                pending_ttl_secs: ttl,
                break_glass: f.break_glass,
                auto_approve_on_call,
                auto_approve_incident,
                incident_end_grace_secs,
            },
        );
    }

    let mut secrets = BTreeMap::new();
    for (name, raw_s) in raw.secrets {
        let sname = name.get_ref().clone();
        if !valid_name(&sname) {
            return Err(ctx.err(name.span(), format!("secret name '{sname}': {NAME_RULE}")));
        }
        let span = raw_s.span();
        let s = raw_s.into_inner();
        let (unlock, quorum) = match s.unlock {
            Some(u) => {
                let uspan = u.span();
                let u = u.into_inner();
                let audience = Audience {
                    users: u.users,
                    groups: u.groups,
                    oncall: u.oncall,
                };
                if audience.is_empty() {
                    return Err(ctx.err(
                        uspan,
                        format!("secret '{sname}': unlock names nobody; say who may unlock it, e.g. unlock = {{ groups = [\"oncall\"] }}"),
                    ));
                }
                let quorum = match u.quorum {
                    None => 1,
                    Some(q) if (1..=MAX_QUORUM as i64).contains(&q) => q as u8,
                    Some(q) => {
                        return Err(ctx.err(
                            uspan,
                            format!(
                                "secret '{sname}': quorum = {q} is out of range: use 1 (one person opens it) to {MAX_QUORUM} \
                                 (that many different people must release their share offline)"
                            ),
                        ))
                    }
                };
                if quorum > 1 && audience.groups.is_empty() && audience.users.len() < quorum as usize {
                    return Err(ctx.err(
                        uspan,
                        format!(
                            "secret '{sname}': quorum = {quorum} needs at least {quorum} different people, but unlock names only {} users and no group",
                            audience.users.len()
                        ),
                    ));
                }
                (audience, quorum)
            }
            None => {
                return Err(ctx.err(
                    span,
                    format!("secret '{sname}' needs unlock = {{ users = [...], groups = [...] }}: who may unlock it"),
                ))
            }
        };
        if !unlock.oncall.is_empty() || !s.alert.oncall.is_empty() {
            return Err(ctx.err(
                span,
                format!(
                    "secret '{sname}': on-call schedules cannot say who may unlock or hears of a \
                     break-glass secret: envelopes are sealed to devices ahead of time, so those \
                     people must be named as users or groups"
                ),
            ));
        }
        let bounded = |v: &Option<Spanned<String>>,
                       what: &str,
                       default: i64,
                       (lo, hi): (i64, i64)|
         -> Result<i64, PolicyError> {
            let Some(v) = v else { return Ok(default) };
            let secs = parse_duration(v.get_ref())
                .map_err(|e| ctx.err(v.span(), format!("{what}: {e}")))?;
            if secs < lo || secs > hi {
                return Err(ctx.err(
                    v.span(),
                    format!(
                        "{what} '{}' is out of range: use {} to {}",
                        v.get_ref(),
                        crate::duration::format_duration(lo),
                        crate::duration::format_duration(hi)
                    ),
                ));
            }
            Ok(secs)
        };
        let validity_secs = bounded(
            &s.validity,
            "validity",
            DEFAULT_SECRET_VALIDITY_SECS,
            SECRET_VALIDITY_RANGE,
        )?;
        let rotate_after_online_secs = bounded(
            &s.rotate_after_online,
            "rotate_after_online",
            DEFAULT_ROTATE_AFTER_ONLINE_SECS,
            ROTATE_AFTER_ONLINE_RANGE,
        )?;
        let max_age_secs = bounded(&s.max_age, "max_age", validity_secs, SECRET_VALIDITY_RANGE)?;
        let drill_every_secs = match &s.drill_every {
            None => None,
            some => Some(bounded(some, "drill_every", 0, DRILL_EVERY_RANGE)?),
        };
        let drill_window_secs = bounded(
            &s.drill_window,
            "drill_window",
            DEFAULT_DRILL_WINDOW_SECS,
            DRILL_WINDOW_RANGE,
        )?;
        if let (Some(every), Some(w)) = (drill_every_secs, &s.drill_window) {
            if drill_window_secs > every {
                return Err(ctx.err(
                    w.span(),
                    format!("secret '{sname}': drill_window is longer than drill_every; a drill must end before the next one starts"),
                ));
            }
        }
        let min_ready = match &s.min_ready {
            None => None,
            Some(n) => {
                let v = *n.get_ref();
                if v < 1 || v > MAX_MIN_READY as i64 {
                    return Err(ctx.err(
                        n.span(),
                        format!("secret '{sname}': min_ready {v} is out of range: use 1 to {MAX_MIN_READY}"),
                    ));
                }
                Some(v as u32)
            }
        };
        let rotate = match s.rotate {
            None => None,
            Some(r) => {
                let rspan = r.span();
                let r = r.into_inner();
                let Some(integ) = integrations.get(&r.integration) else {
                    return Err(ctx.err(
                        rspan,
                        format!(
                            "secret '{sname}' is rotated through integration '{}', which is not declared",
                            r.integration
                        ),
                    ));
                };
                let ok = match integ.kind {
                    IntegrationKind::Postgres { .. } => valid_pg_ident(&r.role),
                    IntegrationKind::Mysql { .. } => valid_mysql_user(&r.role),
                    IntegrationKind::Demo | IntegrationKind::Webhook { .. } => valid_name(&r.role),
                    IntegrationKind::Ssh { .. } => {
                        return Err(ctx.err(
                            rspan,
                            format!("secret '{sname}': SSH integrations hold no passwords to rotate; rotate it through a database integration"),
                        ))
                    }
                };
                if !ok {
                    return Err(ctx.err(
                        rspan,
                        match integ.kind {
                            IntegrationKind::Postgres { .. } => format!(
                                "secret '{sname}': role '{}' is not a plain PostgreSQL role name (a-z, 0-9, _)",
                                r.role
                            ),
                            IntegrationKind::Mysql { .. } => format!(
                                "secret '{sname}': role '{}' is not a plain MySQL account name (a-z, 0-9, _, up to 32; the account is '{}'@'%')",
                                r.role, r.role
                            ),
                            IntegrationKind::Demo
                            | IntegrationKind::Ssh { .. }
                            | IntegrationKind::Webhook { .. } => {
                                format!("secret '{sname}': role '{}': {NAME_RULE}", r.role)
                            }
                        },
                    ));
                }
                let when = match r.when.as_deref() {
                    None | Some("immediate") => RotateWhen::Immediate,
                    Some("after_incident") => RotateWhen::AfterIncident,
                    Some(other) => {
                        return Err(ctx.err(
                            rspan,
                            format!(
                                "secret '{sname}': rotate.when '{other}' is unknown: use \"immediate\" (the default: rotate as soon as the unlock is known) or \"after_incident\" (wait until the linked incident is resolved, at most max_delay)"
                            ),
                        ))
                    }
                };
                let max_delay_secs = match (&r.max_delay, when) {
                    (Some(_), RotateWhen::Immediate) => {
                        return Err(ctx.err(
                            rspan,
                            format!(
                                "secret '{sname}': rotate.max_delay applies only with when = \"after_incident\"; remove it or add when = \"after_incident\""
                            ),
                        ))
                    }
                    (None, RotateWhen::Immediate) => 0,
                    (None, RotateWhen::AfterIncident) => DEFAULT_ROTATE_MAX_DELAY_SECS,
                    (Some(d), RotateWhen::AfterIncident) => {
                        let secs = parse_duration(d).map_err(|e| {
                            ctx.err(rspan.clone(), format!("secret '{sname}': rotate.max_delay: {e}"))
                        })?;
                        let (lo, hi) = ROTATE_MAX_DELAY_RANGE;
                        if secs < lo || secs > hi {
                            return Err(ctx.err(
                                rspan,
                                format!(
                                    "secret '{sname}': rotate.max_delay '{d}' is out of range: use {} to {}",
                                    crate::duration::format_duration(lo),
                                    crate::duration::format_duration(hi)
                                ),
                            ));
                        }
                        secs
                    }
                };
                if r.end_sessions && !matches!(integ.kind, IntegrationKind::Postgres { .. }) {
                    return Err(ctx.err(
                        rspan,
                        format!(
                            "secret '{sname}': rotate.end_sessions is supported for PostgreSQL integrations only ('{}' is not one); remove it",
                            r.integration
                        ),
                    ));
                }
                Some(SecretRotation {
                    integration: r.integration,
                    role: r.role,
                    when,
                    max_delay_secs,
                    end_sessions: r.end_sessions,
                })
            }
        };
        secrets.insert(
            sname.clone(),
            SecretPolicy {
                title: s.title.unwrap_or_else(|| sname.clone()),
                name: sname,
                description: s.description,
                unlock,
                alert: s.alert,
                validity_secs,
                rotate,
                rotate_after_online_secs,
                max_age_secs,
                drill_every_secs,
                drill_window_secs: drill_window_secs.min(drill_every_secs.unwrap_or(i64::MAX)),
                min_ready,
                quorum,
            },
        );
    }

    let mut incident_sources = BTreeMap::new();
    for (name, raw_s) in raw.incident_sources {
        let sname = name.get_ref().clone();
        if !valid_name(&sname) {
            return Err(ctx.err(
                name.span(),
                format!("incident source name '{sname}': {NAME_RULE}"),
            ));
        }
        let r = raw_s.into_inner();
        let env = r.secret_env.get_ref();
        if !valid_env_name(env) {
            return Err(ctx.err(
                r.secret_env.span(),
                format!("incident source '{sname}': secret_env names an environment variable (A-Z, 0-9, _) holding the secret, never the secret itself"),
            ));
        }
        incident_sources.insert(
            sname.clone(),
            crate::incident::IncidentSource {
                name: sname,
                kind: r.kind,
                secret_env: env.clone(),
            },
        );
    }
    let mut incidents = BTreeMap::new();
    for (name, raw_r) in raw.incidents {
        let rname = name.get_ref().clone();
        if !valid_name(&rname) {
            return Err(ctx.err(
                name.span(),
                format!("incident rule name '{rname}': {NAME_RULE}"),
            ));
        }
        let span = raw_r.span();
        let r = raw_r.into_inner();
        if !incident_sources.contains_key(r.source.get_ref()) {
            return Err(ctx.err(
                r.source.span(),
                format!(
                    "incident rule '{rname}' names source '{}', which is not declared (add [incident_sources.{}])",
                    r.source.get_ref(),
                    r.source.get_ref()
                ),
            ));
        }
        if r.bundles.is_empty() {
            return Err(ctx.err(span, format!("incident rule '{rname}' opens no bundles")));
        }
        for b in &r.bundles {
            if !bundle_flow.contains_key(b.get_ref()) {
                return Err(ctx.err(
                    b.span(),
                    format!(
                        "incident rule '{rname}' opens bundle '{}', which is not a bundle governed by a flow",
                        b.get_ref()
                    ),
                ));
            }
        }
        if r.responders.get_ref().is_empty() {
            return Err(ctx.err(
                r.responders.span(),
                format!("incident rule '{rname}' names no responders"),
            ));
        }
        for sched in &r.responders.get_ref().oncall {
            if !oncall.contains_key(sched) {
                return Err(ctx.err(
                    r.responders.span(),
                    format!("incident rule '{rname}': responders name on-call schedule '{sched}', which is not declared"),
                ));
            }
        }
        incidents.insert(
            rname.clone(),
            crate::incident::IncidentRule {
                name: rname,
                source: r.source.into_inner(),
                matches: r.matches,
                bundles: r.bundles.into_iter().map(Spanned::into_inner).collect(),
                responders: r.responders.into_inner(),
            },
        );
    }

    let mut notifications = BTreeMap::new();
    for (name, raw_c) in raw.notifications {
        let c = notification_channel(&ctx, &name, raw_c)?;
        notifications.insert(c.name.clone(), c);
    }
    let audit_sinks =
        crate::siem::parse_audit_sinks(raw.audit_sinks, &|span, msg| ctx.err(span, msg))?;

    let sso = match raw.sso {
        Some(s) => {
            let span = s.span();
            Some(s.into_inner().check().map_err(|m| ctx.err(span, m))?)
        }
        None => None,
    };

    Ok(Policy {
        integrations,
        bundles,
        flows,
        bundle_flow,
        secrets,
        oncall,
        incident_sources,
        incidents,
        notifications,
        audit_sinks,
        sso,
    })
}

/// `[notifications.NAME]`: a chat or webhook channel and the events it gets.
fn notification_channel(
    ctx: &Ctx<'_>,
    name: &Spanned<String>,
    raw: Spanned<RawChannel>,
) -> Result<crate::outbound::Channel, PolicyError> {
    use crate::outbound::{Channel, ChannelKind};
    let cname = name.get_ref().clone();
    if !valid_name(&cname) {
        return Err(ctx.err(
            name.span(),
            format!("notification channel name '{cname}': {NAME_RULE}"),
        ));
    }
    let span = raw.span();
    let c = raw.into_inner();
    let kind = match c.kind.get_ref().as_str() {
        "slack" => ChannelKind::Slack,
        "webhook" => ChannelKind::Webhook,
        other => {
            return Err(ctx.err(
                c.kind.span(),
                format!("notifications.{cname}: kind '{other}' is not \"slack\" (a Slack-compatible incoming webhook) or \"webhook\" (Standard Webhooks)"),
            ))
        }
    };
    let env_name = |v: &Option<Spanned<String>>,
                    what: &str|
     -> Result<Option<String>, PolicyError> {
        match v {
            None => Ok(None),
            Some(e) if valid_env_name(e.get_ref()) => Ok(Some(e.get_ref().clone())),
            Some(e) => Err(ctx.err(
                e.span(),
                format!("notifications.{cname}: {what} must name an environment variable (A-Z, 0-9, _), never hold the value"),
            )),
        }
    };
    let url_env = env_name(&c.url_env, "url_env")?;
    let secret_env = env_name(&c.secret_env, "secret_env")?;
    let url = match &c.url {
        None => None,
        Some(u) => {
            let v = u.get_ref();
            if !(v.starts_with("https://") || v.starts_with("http://")) || v.len() > 2000 {
                return Err(ctx.err(
                    u.span(),
                    format!("notifications.{cname}: url must be an http(s) URL"),
                ));
            }
            if kind == ChannelKind::Slack {
                return Err(ctx.err(
                    u.span(),
                    format!("notifications.{cname}: a Slack webhook URL is a secret; put it in an environment variable and name it with url_env"),
                ));
            }
            Some(v.clone())
        }
    };
    if url.is_some() == url_env.is_some() {
        return Err(ctx.err(
            span,
            format!("notifications.{cname}: give exactly one of url or url_env (the environment variable holding the URL)"),
        ));
    }
    if kind == ChannelKind::Webhook && secret_env.is_none() {
        return Err(ctx.err(
            span,
            format!("notifications.{cname}: a webhook is signed; name the environment variable holding its whsec_… secret with secret_env"),
        ));
    }
    if kind == ChannelKind::Slack && secret_env.is_some() {
        return Err(ctx.err(span, format!("notifications.{cname}: Slack incoming webhooks are not signed; leave out secret_env")));
    }
    let known: Vec<&str> = crate::outbound::channel_event_kinds()
        .map(|k| k.as_str())
        .collect();
    let mut events = Vec::new();
    for e in c.events.get_ref() {
        if !known.contains(&e.as_str()) {
            return Err(ctx.err(
                c.events.span(),
                format!(
                    "notifications.{cname}: '{e}' is not an event kind (one of {})",
                    known.join(", ")
                ),
            ));
        }
        if !events.contains(e) {
            events.push(e.clone());
        }
    }
    if events.is_empty() {
        return Err(ctx.err(
            c.events.span(),
            format!("notifications.{cname}: events names none"),
        ));
    }
    let link_base = match &c.link_base {
        None => crate::outbound::DEFAULT_LINK_BASE.to_string(),
        Some(l) => l.get_ref().trim_end_matches('/').to_string(),
    };
    Ok(Channel {
        name: cname,
        kind,
        url,
        url_env,
        secret_env,
        events,
        link_base,
    })
}

/// An SSH integration's host sets: names, levels, principals, extensions and
/// critical options OpenSSH knows (an unknown critical option would lock everyone
/// out; an empty principal list would be valid for every account).
fn check_ssh_host_sets(
    ctx: &Ctx<'_>,
    integration: &str,
    span: Range<usize>,
    host_sets: &BTreeMap<String, crate::ssh::SshHostSet>,
) -> Result<(), PolicyError> {
    let err = |m: String| {
        Err(ctx.err(
            span.clone(),
            format!("ssh integration '{integration}': {m}"),
        ))
    };
    if host_sets.is_empty() {
        return err("declares no host sets (add [integrations.NAME.host_sets.SET])".into());
    }
    for (set, hs) in host_sets {
        if !valid_name(set) {
            return err(format!("host set name '{set}': {NAME_RULE}"));
        }
        if hs.permissions.is_empty() {
            return err(format!("host set '{set}' has no permission levels"));
        }
        for (level, a) in &hs.permissions {
            if a.principals.is_empty() {
                return err(format!(
                    "host set '{set}', level '{level}': name at least one principal (a certificate without principals is valid for every account)"
                ));
            }
            for p in &a.principals {
                if p.is_empty()
                    || p.len() > 64
                    || !p
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
                {
                    return err(format!(
                        "host set '{set}', level '{level}': principal '{p}' must be 1-64 of a-z, A-Z, 0-9, '-', '_', '.', '@'"
                    ));
                }
            }
            for e in &a.extensions {
                if !crate::ssh::KNOWN_EXTENSIONS.contains(&e.as_str()) {
                    return err(format!(
                        "host set '{set}', level '{level}': '{e}' is not an OpenSSH extension ({})",
                        crate::ssh::KNOWN_EXTENSIONS.join(", ")
                    ));
                }
            }
            for o in a.critical_options.keys() {
                if !crate::ssh::KNOWN_CRITICAL_OPTIONS.contains(&o.as_str()) {
                    return err(format!(
                        "host set '{set}', level '{level}': '{o}' is not a critical option OpenSSH knows ({}); hosts would refuse the certificate",
                        crate::ssh::KNOWN_CRITICAL_OPTIONS.join(", ")
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The name of an environment variable holding a secret: A-Z, 0-9 and `_`.
pub fn valid_env_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// A synced schedule's settings (`provider = …`), checked; `None` for a declared one
/// (which then must not carry any of them). Takes what it reads out of `s`.
fn parse_sync(
    ctx: &Ctx<'_>,
    sname: &str,
    span: Range<usize>,
    s: &mut RawSchedule,
) -> Result<Option<crate::oncall::SyncSpec>, PolicyError> {
    use crate::oncall::{ProviderKind, SyncSpec, DEFAULT_SYNC_REFRESH_SECS, SYNC_REFRESH_RANGE};
    let synced_only: [(&str, Option<Range<usize>>); 6] = [
        ("schedule_id", s.schedule_id.as_ref().map(Spanned::span)),
        ("schedule_name", s.schedule_name.as_ref().map(Spanned::span)),
        ("token_env", s.token_env.as_ref().map(Spanned::span)),
        ("api_url", s.api_url.as_ref().map(Spanned::span)),
        ("refresh", s.refresh.as_ref().map(Spanned::span)),
        ("users", s.users.as_ref().map(Spanned::span)),
    ];
    let Some(provider) = s.provider.take() else {
        if let Some((key, Some(at))) = synced_only.into_iter().find(|(_, sp)| sp.is_some()) {
            return Err(ctx.err(
                at,
                format!("schedule '{sname}': {key} is for a schedule synced from a provider; add provider = \"pagerduty\" or \"opsgenie\" (and no layers), or remove it"),
            ));
        }
        return Ok(None);
    };
    let kind = match provider.get_ref().as_str() {
        "pagerduty" => ProviderKind::Pagerduty,
        "opsgenie" => ProviderKind::Opsgenie,
        other => {
            return Err(ctx.err(
                provider.span(),
                format!("schedule '{sname}': provider '{other}' is not one Firedoor syncs from (use \"pagerduty\" or \"opsgenie\")"),
            ))
        }
    };
    let who = match kind {
        ProviderKind::Pagerduty => "PagerDuty",
        ProviderKind::Opsgenie => "Opsgenie",
    };
    if let Some(layers) = &s.layers {
        let at = layers.first().map(Spanned::span).unwrap_or(span.clone());
        return Err(ctx.err(
            at,
            format!("schedule '{sname}' is synced from {who}, so it takes no layers: a schedule is either declared (time_zone and layers) or synced (provider), not both"),
        ));
    }
    let (schedule, by_name) = match (kind, s.schedule_id.take(), s.schedule_name.take()) {
        (_, Some(id), None) => {
            let ok = match kind {
                ProviderKind::Pagerduty => {
                    !id.get_ref().is_empty()
                        && id.get_ref().len() <= 64
                        && id.get_ref().chars().all(|c| c.is_ascii_alphanumeric())
                }
                ProviderKind::Opsgenie => {
                    !id.get_ref().is_empty()
                        && id.get_ref().len() <= 64
                        && id.get_ref().chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                }
            };
            if !ok {
                return Err(ctx.err(
                    id.span(),
                    format!("schedule '{sname}': schedule_id '{}' is not a {who} schedule id (letters, digits{})", id.get_ref(), if kind == ProviderKind::Opsgenie { " and '-'" } else { "" }),
                ));
            }
            (id.into_inner(), false)
        }
        (ProviderKind::Opsgenie, None, Some(name)) => {
            let n = name.get_ref();
            if n.trim().is_empty() || n.len() > 200 || n.chars().any(char::is_control) {
                return Err(ctx.err(
                    name.span(),
                    format!("schedule '{sname}': schedule_name must be an Opsgenie schedule's name (1-200 characters)"),
                ));
            }
            (name.into_inner(), true)
        }
        (ProviderKind::Pagerduty, None, Some(name)) => {
            return Err(ctx.err(
                name.span(),
                format!("schedule '{sname}': PagerDuty schedules are named by schedule_id (e.g. \"PI7DH85\"), not schedule_name"),
            ))
        }
        (_, Some(_), Some(name)) => {
            return Err(ctx.err(
                name.span(),
                format!("schedule '{sname}': give schedule_id or schedule_name, not both"),
            ))
        }
        (_, None, None) => {
            return Err(ctx.err(
                span,
                format!("schedule '{sname}' is synced from {who} but names no schedule: add schedule_id = \"…\""),
            ))
        }
    };
    let Some(token_env) = s.token_env.take() else {
        return Err(ctx.err(
            span,
            format!("schedule '{sname}' is synced from {who} but has no token_env: name the environment variable that holds the API token (the token itself never goes in the policy)"),
        ));
    };
    let te = token_env.get_ref();
    if te.is_empty()
        || te.len() > 128
        || te.starts_with(|c: char| c.is_ascii_digit())
        || !te.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(ctx.err(
            token_env.span(),
            format!("schedule '{sname}': token_env must be the name of an environment variable (letters, digits and '_', e.g. \"PAGERDUTY_TOKEN\"), not the token"),
        ));
    }
    let api_url = match s.api_url.take() {
        None => kind.default_api_url().to_string(),
        Some(u) => {
            let url = u.get_ref().trim().trim_end_matches('/').to_string();
            if !api_url_allowed(&url) {
                return Err(ctx.err(
                    u.span(),
                    format!("schedule '{sname}': api_url '{}' must be an https:// URL (plain http only to this machine: 127.0.0.1, [::1] or localhost), since the API token is sent to it", u.get_ref()),
                ));
            }
            url
        }
    };
    let refresh_secs = match s.refresh.take() {
        None => DEFAULT_SYNC_REFRESH_SECS,
        Some(r) => {
            let secs = parse_duration(r.get_ref())
                .map_err(|e| ctx.err(r.span(), format!("refresh: {e}")))?;
            if secs < SYNC_REFRESH_RANGE.0 || secs > SYNC_REFRESH_RANGE.1 {
                return Err(ctx.err(r.span(), "refresh: between 1m and 1d"));
            }
            secs
        }
    };
    let Some(raw_users) = s.users.take() else {
        return Err(ctx.err(
            span,
            format!("schedule '{sname}' is synced from {who} but has no users table: map the provider's people to Firedoor users by email, e.g. users = {{ \"alice@example.com\" = \"alice\" }}"),
        ));
    };
    let uspan = raw_users.span();
    let raw_users = raw_users.into_inner();
    if raw_users.is_empty() {
        return Err(ctx.err(uspan, format!("schedule '{sname}': users maps nobody")));
    }
    let mut users = BTreeMap::new();
    for (email, user) in raw_users {
        let key = email.trim().to_ascii_lowercase();
        if !key.contains('@')
            || key.len() > 254
            || key.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ctx.err(
                uspan.clone(),
                format!("schedule '{sname}': users: '{email}' is not an email address (the provider's people are matched by email)"),
            ));
        }
        if !valid_name(&user) {
            return Err(ctx.err(
                uspan.clone(),
                format!("schedule '{sname}': users: user name '{user}': {NAME_RULE}"),
            ));
        }
        if users.insert(key, user).is_some() {
            return Err(ctx.err(
                uspan.clone(),
                format!("schedule '{sname}': users: '{email}' is mapped twice"),
            ));
        }
    }
    Ok(Some(SyncSpec {
        provider: kind,
        schedule,
        by_name,
        api_url,
        token_env: token_env.into_inner(),
        refresh_secs,
        users,
    }))
}

/// An API base URL a token may be sent to: https, or plain http to this machine.
fn api_url_allowed(url: &str) -> bool {
    let host_ok = |rest: &str| {
        !rest.is_empty()
            && !rest.contains('@')
            && !rest.chars().any(|c| c.is_whitespace() || c.is_control())
    };
    if let Some(rest) = url.strip_prefix("https://") {
        return host_ok(rest);
    }
    if let Some(rest) = url.strip_prefix("http://") {
        let host = rest.split('/').next().unwrap_or_default();
        let name = match host.rsplit_once(':') {
            Some((h, port)) if !h.ends_with(']') || host.starts_with('[') => {
                if port.chars().all(|c| c.is_ascii_digit()) && !port.is_empty() {
                    h
                } else {
                    host
                }
            }
            _ => host,
        };
        return host_ok(rest) && matches!(name, "127.0.0.1" | "localhost" | "[::1]");
    }
    false
}

/// A plain lowercase PostgreSQL identifier that needs no quoting.
pub fn valid_pg_ident(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[integrations.demo]
kind = "demo"

[bundles.prod-read]
title = "Prod read"
tags = ["env=prod"]
resources = [{ integration = "demo", resource = "app", permission = "read" }]

[flows.oncall]
bundles = ["prod-read"]
requesters = { groups = ["oncall"] }
approvers = { users = ["bob"] }
approvals = 1
default_duration = "1h"
max_duration = "4h"
justification_required = true
"#;

    #[test]
    fn parses_a_good_policy() {
        let p = parse_policy("p.toml", GOOD).expect("valid");
        let f = p.flow_for_bundle("prod-read").expect("governed");
        assert_eq!(f.default_duration_secs, 3600);
        assert_eq!(f.max_duration_secs, 4 * 3600);
        assert_eq!(f.pending_ttl_secs, 3600, "default pending TTL is one hour");
        let alice = Principal {
            name: "alice".into(),
            groups: vec!["oncall".into()],
            admin: false,
            oncall: Vec::new(),
        };
        assert!(f.may_request(&alice));
        assert!(!f.may_approve(&alice));
    }

    fn err_of(src: &str) -> PolicyError {
        parse_policy("policy.toml", src).expect_err("must be refused")
    }

    #[test]
    fn names_file_line_and_problem() {
        let bad = GOOD.replace("max_duration = \"4h\"", "max_duration = \"30m\"");
        let e = err_of(&bad);
        assert_eq!(e.file, "policy.toml");
        assert_eq!(e.line, 15, "points at default_duration: {e}");
        assert!(e.message.contains("longer than max_duration"), "{e}");

        let e = err_of(&GOOD.replace("\"1h\"", "\"1 hour\""));
        assert!(e.message.contains("default_duration"), "{e}");
        assert_eq!(e.line, 15);

        let e = err_of(&GOOD.replace("approvals = 1", "approvals = 1\nauto = true"));
        assert!(e.message.contains("auto"), "unknown keys are named: {e}");

        let e = err_of(&GOOD.replace("integration = \"demo\"", "integration = \"nope\""));
        assert!(e.message.contains("'nope'"), "{e}");
        assert_eq!(e.line, 8);

        let e = err_of(&GOOD.replace("approvals = 1", "approvals = 2"));
        assert!(e.message.contains("only 1 approver"), "{e}");

        let e = err_of(&GOOD.replace("bundles = [\"prod-read\"]", "bundles = [\"ghost\"]"));
        assert!(e.message.contains("unknown bundle 'ghost'"), "{e}");

        let e = err_of("this is = not toml [");
        assert_eq!(e.line, 1);
    }

    const SECRETS: &str = r#"
[integrations.pg]
kind = "postgres"
url_env = "PG_URL"
permissions = { read = ["app_read"] }

[secrets.payments-db-breakglass]
title = "Payments DB break-glass login"
description = "Password of the PostgreSQL role fd_breakglass."
unlock = { groups = ["oncall"] }
alert = { groups = ["security"] }
validity = "7d"
rotate = { integration = "pg", role = "fd_breakglass" }
rotate_after_online = "1h"

[secrets.manual]
unlock = { users = ["alice"] }
"#;

    // issue 14: drills
    #[test]
    fn drill_settings_parse_with_defaults_and_bounds() {
        let p = parse_policy("s.toml", SECRETS).expect("valid");
        let m = p.secret("manual").unwrap();
        assert_eq!(
            (m.drill_every_secs, m.drill_window_secs, m.min_ready),
            (None, DEFAULT_DRILL_WINDOW_SECS, None)
        );
        assert_eq!(m.required_ready(), 1);
        assert!(
            !m.readiness_alerts(),
            "no alert unless the policy asks for one"
        );
        let src = SECRETS.replace(
            "unlock = { users = [\"alice\"] }",
            "unlock = { users = [\"alice\"] }\ndrill_every = \"30d\"\ndrill_window = \"1d\"\nmin_ready = 3",
        );
        let m = parse_policy("s.toml", &src)
            .unwrap()
            .secret("manual")
            .unwrap()
            .clone();
        assert_eq!(
            (m.drill_every_secs, m.drill_window_secs, m.min_ready),
            (Some(30 * 86_400), 86_400, Some(3))
        );
        assert_eq!(m.required_ready(), 3);
        assert!(m.readiness_alerts());
        for (bad, says) in [
            ("min_ready = 0", "min_ready 0 is out of range"),
            ("drill_every = \"1m\"", "drill_every '1m' is out of range"),
            ("drill_window = \"1m\"", "drill_window '1m' is out of range"),
            (
                "drill_every = \"1d\"\ndrill_window = \"2d\"",
                "drill_window is longer than drill_every",
            ),
        ] {
            let src = SECRETS.replace(
                "unlock = { users = [\"alice\"] }",
                &format!("unlock = {{ users = [\"alice\"] }}\n{bad}"),
            );
            let e = err_of(&src);
            assert!(e.message.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn rotation_timing_and_ending_sessions() {
        let src = SECRETS.replace(
            "rotate = { integration = \"pg\", role = \"fd_breakglass\" }",
            "rotate = { integration = \"pg\", role = \"fd_breakglass\", when = \"after_incident\", max_delay = \"12h\", end_sessions = true }",
        );
        let p = parse_policy("s.toml", &src).expect("valid");
        let r = p
            .secret("payments-db-breakglass")
            .unwrap()
            .rotate
            .clone()
            .unwrap();
        assert_eq!(r.when, RotateWhen::AfterIncident);
        assert_eq!(r.max_delay_secs, 12 * 3600);
        assert!(r.end_sessions);
        // after_incident without max_delay: the default wait.
        let p = parse_policy(
            "s.toml",
            &SECRETS.replace(
                "role = \"fd_breakglass\" }",
                "role = \"fd_breakglass\", when = \"after_incident\" }",
            ),
        )
        .expect("valid");
        let r = p
            .secret("payments-db-breakglass")
            .unwrap()
            .rotate
            .clone()
            .unwrap();
        assert_eq!(r.max_delay_secs, DEFAULT_ROTATE_MAX_DELAY_SECS);
        assert!(!r.end_sessions);
        for (rotate, expect) in [
            ("when = \"later\"", "rotate.when 'later' is unknown"),
            (
                "max_delay = \"12h\"",
                "max_delay applies only with when = \"after_incident\"",
            ),
            (
                "when = \"after_incident\", max_delay = \"1m\"",
                "rotate.max_delay '1m' is out of range",
            ),
            (
                "when = \"after_incident\", max_delay = \"30d\"",
                "rotate.max_delay '30d' is out of range",
            ),
            (
                "when = \"after_incident\", max_delay = \"soon\"",
                "rotate.max_delay:",
            ),
            ("end_session = true", "end_session"),
        ] {
            let e = err_of(&SECRETS.replace(
                "role = \"fd_breakglass\" }",
                &format!("role = \"fd_breakglass\", {rotate} }}"),
            ));
            assert!(e.message.contains(expect), "{rotate}: {e}");
        }
    }

    #[test]
    fn ending_sessions_needs_postgres() {
        let e = err_of(
            r#"
[integrations.demo]
kind = "demo"

[secrets.s]
unlock = { users = ["alice"] }
rotate = { integration = "demo", role = "bg", end_sessions = true }
"#,
        );
        assert!(
            e.message
                .contains("end_sessions is supported for PostgreSQL integrations only"),
            "{e}"
        );
    }

    #[test]
    fn parses_secrets_with_defaults() {
        let p = parse_policy("s.toml", SECRETS).expect("valid");
        let s = p.secret("payments-db-breakglass").expect("declared");
        assert_eq!(s.title, "Payments DB break-glass login");
        assert_eq!(s.validity_secs, 7 * 86_400);
        assert_eq!(s.rotate_after_online_secs, 3600);
        assert_eq!(
            s.rotate,
            Some(SecretRotation {
                integration: "pg".into(),
                role: "fd_breakglass".into(),
                when: RotateWhen::Immediate,
                max_delay_secs: 0,
                end_sessions: false,
            })
        );
        assert_eq!(s.alert.groups, vec!["security".to_string()]);
        let m = p.secret("manual").expect("declared");
        assert_eq!(m.title, "manual", "the title defaults to the name");
        assert_eq!(m.validity_secs, DEFAULT_SECRET_VALIDITY_SECS);
        assert_eq!(m.rotate_after_online_secs, DEFAULT_ROTATE_AFTER_ONLINE_SECS);
        assert_eq!(
            m.max_age_secs, m.validity_secs,
            "a secret is rotated at least as often as its envelopes expire"
        );
        assert!(m.rotate.is_none() && m.alert.is_empty());
        let alice = Principal {
            name: "alice".into(),
            groups: vec!["oncall".into()],
            admin: false,
            oncall: Vec::new(),
        };
        let carol = Principal {
            name: "carol".into(),
            groups: vec!["security".into()],
            admin: true,
            oncall: Vec::new(),
        };
        let names: Vec<_> = p.unlockable_by(&alice).map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["manual", "payments-db-breakglass"]);
        assert_eq!(
            p.unlockable_by(&carol).count(),
            0,
            "being an admin or in the alert audience does not let you unlock"
        );
        // A policy without secrets still parses (and has none).
        assert!(parse_policy("g", GOOD).unwrap().secrets.is_empty());
    }

    #[test]
    fn secret_errors_name_the_line() {
        let e = err_of(&SECRETS.replace("unlock = { users = [\"alice\"] }", "title = \"x\""));
        assert!(e.message.contains("needs unlock"), "{e}");
        assert_eq!(e.line, 16, "points at the secret: {e}");

        let e = err_of(&SECRETS.replace("unlock = { users = [\"alice\"] }", "unlock = {}"));
        assert!(e.message.contains("unlock names nobody"), "{e}");
        assert_eq!(e.line, 17);

        // max_age: how often the broker rotates at the latest (an envelope copied off
        // a laptop stops opening anything that works).
        let p = parse_policy(
            "s.toml",
            &SECRETS.replace("validity = \"7d\"", "validity = \"7d\"\nmax_age = \"2d\""),
        )
        .expect("max_age parses");
        assert_eq!(
            p.secret("payments-db-breakglass").unwrap().max_age_secs,
            2 * 86_400
        );
        let e =
            err_of(&SECRETS.replace("validity = \"7d\"", "validity = \"7d\"\nmax_age = \"1m\""));
        assert!(e.message.contains("max_age '1m' is out of range"), "{e}");
        let e = err_of(&SECRETS.replace("validity = \"7d\"", "validity = \"30m\""));
        assert!(e.message.contains("validity '30m' is out of range"), "{e}");
        assert_eq!(e.line, 12);
        let e = err_of(&SECRETS.replace("validity = \"7d\"", "validity = \"91d\""));
        assert!(e.message.contains("out of range: use 1h to 90d"), "{e}");
        let e = err_of(&SECRETS.replace("validity = \"7d\"", "validity = \"week\""));
        assert!(e.message.starts_with("validity:"), "{e}");

        let e = err_of(&SECRETS.replace(
            "rotate_after_online = \"1h\"",
            "rotate_after_online = \"10s\"",
        ));
        assert!(e.message.contains("rotate_after_online"), "{e}");
        assert_eq!(e.line, 14);

        let e =
            err_of(&SECRETS.replace("integration = \"pg\", role", "integration = \"nope\", role"));
        assert!(
            e.message
                .contains("integration 'nope', which is not declared"),
            "{e}"
        );
        assert_eq!(e.line, 13);

        let e = err_of(&SECRETS.replace("role = \"fd_breakglass\"", "role = \"x; drop role y\""));
        assert!(
            e.message.contains("not a plain PostgreSQL role name"),
            "{e}"
        );

        let e = err_of(&SECRETS.replace("rotate_after_online", "rotate_after_onlin"));
        assert!(
            e.message.contains("rotate_after_onlin"),
            "unknown keys are named: {e}"
        );

        let e = err_of(&SECRETS.replace("[secrets.manual]", "[secrets.Manual]"));
        assert!(e.message.contains("secret name 'Manual'"), "{e}");
    }

    #[test]
    fn postgres_permissions_must_exist() {
        let src = r#"
[integrations.pg]
kind = "postgres"
url_env = "PG_URL"
permissions = { read = ["app_read"] }

[bundles.b]
resources = [{ integration = "pg", resource = "app", permission = "write" }]
"#;
        let e = err_of(src);
        assert!(e.message.contains("permission 'write'"), "{e}");
        let ok = src.replace("\"write\"", "\"read\"");
        parse_policy("x", &ok).expect("valid");
        let inj = ok.replace("[\"app_read\"]", "[\"x; drop table y\"]");
        assert!(err_of(&inj).message.contains("not a plain PostgreSQL role"));
    }

    #[test]
    fn postgres_orphan_role_and_on_revoke() {
        let src = r#"
[integrations.pg]
kind = "postgres"
url_env = "PG_URL"
permissions = { read = ["app_read"] }
"#;
        let p = parse_policy("x", src).expect("valid");
        let IntegrationKind::Postgres {
            orphan_role,
            on_revoke,
            ..
        } = &p.integrations["pg"].kind
        else {
            panic!("postgres")
        };
        assert_eq!(orphan_role, DEFAULT_ORPHAN_ROLE);
        assert_eq!(*on_revoke, OnRevoke::Reassign, "the default keeps the data");

        let with = |extra: &str| src.replace("permissions =", &format!("{extra}\npermissions ="));
        let p = parse_policy(
            "x",
            &with("orphan_role = \"left_behind\"\non_revoke = \"drop\""),
        )
        .expect("valid");
        let IntegrationKind::Postgres {
            orphan_role,
            on_revoke,
            ..
        } = &p.integrations["pg"].kind
        else {
            panic!("postgres")
        };
        assert_eq!(orphan_role, "left_behind");
        assert_eq!(*on_revoke, OnRevoke::Drop);

        let e = err_of(&with("on_revoke = \"cascade\""));
        assert_eq!(e.file, "policy.toml");
        assert!(e.line >= 2, "points into the integration: {e}");
        assert!(e.message.contains("cascade"), "{e}");
        assert!(e.message.contains("reassign"), "names the choices: {e}");

        let e = err_of(&with("orphan_role = \"Orphans; DROP ROLE x\""));
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("orphan_role"), "{e}");
        let e = err_of(&with("orphan_role = \"app_read\""));
        assert!(e.message.contains("dedicated"), "{e}");
    }

    #[test]
    fn mysql_integration_privileges_resources_and_on_revoke() {
        let src = r#"
[integrations.my]
kind = "mysql"
url_env = "MY_URL"
permissions = { read = ["select"], write = ["SELECT", "insert", "Create  View", "INSERT"] }

[bundles.b]
resources = [{ integration = "my", resource = "app", permission = "write" }]
"#;
        let p = parse_policy("x", src).expect("valid");
        let IntegrationKind::Mysql {
            permissions,
            on_revoke,
            ..
        } = &p.integrations["my"].kind
        else {
            panic!("mysql")
        };
        assert_eq!(permissions["read"], vec!["SELECT"]);
        assert_eq!(
            permissions["write"],
            vec!["CREATE VIEW", "INSERT", "SELECT"],
            "normalised, sorted, once each"
        );
        assert_eq!(*on_revoke, OnRevoke::Drop, "drop is the mysql default");

        for bad in [
            "ALL",
            "ALL PRIVILEGES",
            "GRANT OPTION",
            "SUPER",
            "FILE",
            "SELECT; DROP USER x",
        ] {
            let e = err_of(&src.replace("\"select\"", &format!("{bad:?}")));
            assert!(
                e.message.contains("not a database-level MySQL privilege"),
                "{bad}: {e}"
            );
        }
        let e = err_of(&src.replace(
            "url_env = \"MY_URL\"",
            "url_env = \"MY_URL\"\non_revoke = \"reassign\"",
        ));
        assert!(
            e.message.contains("SET USER") && e.message.contains("drop"),
            "{e}"
        );
        parse_policy(
            "x",
            &src.replace(
                "url_env = \"MY_URL\"",
                "url_env = \"MY_URL\"\non_revoke = \"drop\"",
            ),
        )
        .expect("drop is fine");
        for db in [
            "mysql",
            "MySQL",
            "sys",
            "performance_schema",
            "a`b",
            "app.*",
        ] {
            let e = err_of(&src.replace("resource = \"app\"", &format!("resource = {db:?}")));
            assert!(
                e.message.contains("not a plain MySQL database name"),
                "{db}: {e}"
            );
        }
        let e = err_of(&src.replace("permission = \"write\"", "permission = \"admin\""));
        assert!(e.message.contains("permission 'admin'"), "{e}");
    }

    const ONCALL: &str = r#"
[integrations.demo]
kind = "demo"

[bundles.kit]
resources = [{ integration = "demo", resource = "app", permission = "write" }]

[oncall.primary]
title = "Primary"
time_zone = "Europe/Berlin"

[[oncall.primary.layers]]
users = ["alice", "bob"]
start = "2026-01-05T09:00"
shift = "1w"

[[oncall.primary.layers]]
users = ["nightowl"]
start = "2026-01-05T00:00"
shift = "1d"
days = ["mon", "tue", "wed", "thu", "fri"]
hours = "20:00-08:00"

[flows.kit]
bundles = ["kit"]
requesters = { oncall = ["primary"] }
approvers = { oncall = ["primary"], groups = ["leads"] }
approvals = 1
auto_approve = "requester_on_call"
default_duration = "1h"
max_duration = "4h"
"#;

    #[test]
    fn parses_on_call_schedules_and_flows_that_use_them() {
        let p = parse_policy("p.toml", ONCALL).expect("valid");
        let s = &p.oncall["primary"];
        assert_eq!(s.title, "Primary");
        assert_eq!(s.tz, chrono_tz::Europe::Berlin);
        assert_eq!(s.layers.len(), 2);
        assert_eq!(s.layers[0].shift_secs, 7 * 86_400);
        let w = s.layers[1].window.as_ref().expect("a window");
        assert_eq!(w.days.len(), 5);
        let f = p.flow_for_bundle("kit").expect("governed");
        assert!(f.auto_approve_on_call);
        let mut alice = Principal {
            name: "alice".into(),
            groups: vec![],
            admin: false,
            oncall: Vec::new(),
        };
        assert!(!f.may_request(&alice), "not on call: not a requester");
        assert!(!f.approves_automatically(&alice));
        alice.oncall = vec!["primary".into()];
        assert!(f.may_request(&alice));
        assert!(f.approves_automatically(&alice));
    }

    #[test]
    fn on_call_mistakes_are_named() {
        let cases = [
            (
                ONCALL.replace(
                    "time_zone = \"Europe/Berlin\"",
                    "time_zone = \"Mars/Olympus\"",
                ),
                "not an IANA time zone",
            ),
            (
                ONCALL.replace(
                    "requesters = { oncall = [\"primary\"] }",
                    "requesters = { oncall = [\"secondary\"] }",
                ),
                "'secondary', which is not declared",
            ),
            (
                ONCALL.replace(
                    "requesters = { oncall = [\"primary\"] }",
                    "requesters = { groups = [\"eng\"] }",
                ),
                "needs requesters = { oncall",
            ),
            (
                ONCALL.replace(
                    "auto_approve = \"requester_on_call\"",
                    "auto_approve = \"always\"",
                ),
                "not a rule",
            ),
            (
                ONCALL.replace("start = \"2026-01-05T09:00\"", "start = \"next monday\""),
                "not a local date and time",
            ),
            (
                ONCALL.replace("shift = \"1w\"", "shift = \"30m\""),
                "at least 1h",
            ),
            (
                ONCALL.replace("hours = \"20:00-08:00\"", "hours = \"8pm-8am\""),
                "not a range of local times",
            ),
            (
                ONCALL.replace("\"thu\", \"fri\"]", "\"thu\", \"friyay\"]"),
                "'friyay' is not a day",
            ),
            (
                ONCALL.replace("users = [\"alice\", \"bob\"]", "users = []"),
                "names no users",
            ),
            (
                ONCALL.replace(
                    "[[oncall.primary.layers]]\nusers = [\"nightowl\"]",
                    "[[oncall.primary.layers]]\nusers = [\"nightowl\"]\ncolour = \"red\"",
                ),
                "unknown field",
            ),
        ];
        for (src, want) in cases {
            assert_ne!(src, ONCALL, "the case changes the policy ({want})");
            let e = err_of(&src);
            assert!(e.message.contains(want), "want '{want}', got: {e}");
        }
    }

    const SYNCED: &str = r#"
[integrations.demo]
kind = "demo"

[bundles.kit]
resources = [{ integration = "demo", resource = "payments", permission = "write" }]

[oncall.pd]
title = "Payments primary"
provider = "pagerduty"
schedule_id = "PI7DH85"
token_env = "PAGERDUTY_TOKEN"
refresh = "10m"
users = { "Alice@Example.com" = "alice", "bob@example.com" = "bob" }

[oncall.og]
provider = "opsgenie"
schedule_name = "Payments Primary"
token_env = "OPSGENIE_KEY"
api_url = "http://127.0.0.1:8080/"
users = { "alice@example.com" = "alice" }

[flows.kit]
bundles = ["kit"]
requesters = { oncall = ["pd"] }
approvers = { oncall = ["og"] }
approvals = 1
auto_approve = "requester_on_call"
default_duration = "1h"
max_duration = "4h"
"#;

    #[test]
    fn parses_synced_schedules() {
        use crate::oncall::ProviderKind;
        let p = parse_policy("p.toml", SYNCED).expect("valid");
        let pd = p.oncall["pd"].sync.as_ref().expect("synced");
        assert_eq!(pd.provider, ProviderKind::Pagerduty);
        assert_eq!(pd.schedule, "PI7DH85");
        assert_eq!(pd.api_url, "https://api.pagerduty.com");
        assert_eq!(pd.refresh_secs, 600);
        assert_eq!(
            pd.users["alice@example.com"], "alice",
            "emails match in any case"
        );
        assert!(p.oncall["pd"].layers.is_empty());
        let og = p.oncall["og"].sync.as_ref().expect("synced");
        assert_eq!(
            (og.schedule.as_str(), og.by_name),
            ("Payments Primary", true)
        );
        assert_eq!(og.api_url, "http://127.0.0.1:8080");
        assert_eq!(og.refresh_secs, 300);
    }

    #[test]
    fn synced_schedule_mistakes_are_named() {
        let layers = "\n[[oncall.pd.layers]]\nusers = [\"alice\"]\nstart = \"2026-01-05T09:00\"\nshift = \"1w\"\n";
        let cases: Vec<(String, &str)> = vec![
            (format!("{SYNCED}{layers}"), "takes no layers"),
            (
                SYNCED.replace("provider = \"pagerduty\"", "provider = \"victorops\""),
                "not one Firedoor syncs from",
            ),
            (
                SYNCED.replace(
                    "token_env = \"PAGERDUTY_TOKEN\"",
                    "token_env = \"u+abc-123\"",
                ),
                "not the token",
            ),
            (
                SYNCED.replace("token_env = \"PAGERDUTY_TOKEN\"\n", ""),
                "has no token_env",
            ),
            (
                SYNCED.replace("schedule_id = \"PI7DH85\"", "schedule_name = \"Payments\""),
                "not schedule_name",
            ),
            (
                SYNCED.replace("schedule_id = \"PI7DH85\"\n", ""),
                "names no schedule",
            ),
            (
                SYNCED.replace("http://127.0.0.1:8080/", "http://pager.example.com"),
                "must be an https:// URL",
            ),
            (
                SYNCED.replace("refresh = \"10m\"", "refresh = \"10s\""),
                "between 1m and 1d",
            ),
            (
                SYNCED.replace("\"bob@example.com\" = \"bob\"", "\"bob\" = \"bob\""),
                "is not an email address",
            ),
            (
                SYNCED.replace(
                    "\"bob@example.com\" = \"bob\"",
                    "\"bob@example.com\" = \"Bob B\"",
                ),
                "user name 'Bob B'",
            ),
            (
                SYNCED.replace("users = { \"alice@example.com\" = \"alice\" }\n", ""),
                "has no users table",
            ),
            (
                ONCALL.replace(
                    "time_zone = \"Europe/Berlin\"",
                    "time_zone = \"Europe/Berlin\"\ntoken_env = \"X\"",
                ),
                "token_env is for a schedule synced",
            ),
        ];
        for (src, want) in cases {
            assert!(
                src != SYNCED && src != ONCALL,
                "the case changes the policy ({want})"
            );
            let e = err_of(&src);
            assert!(e.message.contains(want), "want '{want}', got: {e}");
        }
    }

    #[test]
    fn a_secret_cannot_be_unlocked_by_whoever_is_on_call() {
        let src = format!("{ONCALL}\n[secrets.db]\nunlock = {{ oncall = [\"primary\"] }}\n");
        let e = err_of(&src);
        assert!(e.message.contains("sealed to devices ahead of time"), "{e}");
    }

    #[test]
    fn incident_sources_and_rules_are_checked() {
        let base = format!(
            "{ONCALL}\n[incident_sources.monitoring]\nkind = \"alertmanager\"\nsecret_env = \"FD_AM_TOKEN\"\n\n\
             [incidents.kit-down]\nsource = \"monitoring\"\nmatch = {{ service = \"kit\" }}\nbundles = [\"kit\"]\n\
             responders = {{ oncall = [\"primary\"] }}\n"
        );
        let p = parse_policy("p.toml", &base).expect("valid");
        let r = &p.incidents["kit-down"];
        assert_eq!(r.matches["service"], "kit");
        assert_eq!(p.incident_sources["monitoring"].secret_env, "FD_AM_TOKEN");
        let with_auto = base.replace(
            "auto_approve = \"requester_on_call\"",
            "auto_approve = [\"requester_on_call\", \"incident_responder\"]\nincident_end_grace = \"15m\"",
        );
        let f = parse_policy("p.toml", &with_auto).expect("valid");
        let flow = &f.flows["kit"];
        assert!(flow.auto_approve_on_call && flow.auto_approve_incident);
        assert_eq!(flow.incident_end_grace_secs, Some(900));
        let cases = [
            (
                base.replace(
                    "secret_env = \"FD_AM_TOKEN\"",
                    "secret_env = \"hunter2 secret\"",
                ),
                "names an environment variable",
            ),
            (
                base.replace("kind = \"alertmanager\"", "kind = \"nagios\""),
                "unknown variant",
            ),
            (
                base.replace("source = \"monitoring\"", "source = \"pager\""),
                "source 'pager', which is not declared",
            ),
            (
                base.replace(
                    "bundles = [\"kit\"]\nresponders",
                    "bundles = [\"nope\"]\nresponders",
                ),
                "bundle 'nope'",
            ),
            (
                base.replace(
                    "responders = { oncall = [\"primary\"] }\n",
                    "responders = { oncall = [\"tertiary\"] }\n",
                ),
                "'tertiary', which is not declared",
            ),
            (
                base.replace(
                    "responders = { oncall = [\"primary\"] }\n",
                    "responders = {}\n",
                ),
                "names no responders",
            ),
        ];
        for (src, want) in cases {
            assert_ne!(src, base, "the case changes the policy ({want})");
            let e = err_of(&src);
            assert!(e.message.contains(want), "want '{want}', got: {e}");
        }
    }

    // issue 14: quorum
    #[test]
    fn quorum_defaults_to_one_and_is_bounded() {
        let p = parse_policy("s.toml", SECRETS).expect("valid");
        assert_eq!(p.secret("manual").unwrap().quorum, 1);
        let two = SECRETS.replace(
            "unlock = { groups = [\"oncall\"] }",
            "unlock = { groups = [\"oncall\"], quorum = 2 }",
        );
        let p = parse_policy("s.toml", &two).expect("valid");
        assert_eq!(p.secret("payments-db-breakglass").unwrap().quorum, 2);
        for bad in ["0", "-1", "17", "300"] {
            let src = SECRETS.replace(
                "unlock = { groups = [\"oncall\"] }",
                &format!("unlock = {{ groups = [\"oncall\"], quorum = {bad} }}"),
            );
            let e = err_of(&src);
            assert!(e.message.contains("out of range"), "{bad}: {e}");
            assert_eq!(e.line, 10, "{e}");
        }
        let e = err_of(&SECRETS.replace(
            "unlock = { users = [\"alice\"] }",
            "unlock = { users = [\"alice\"], quorum = 2 }",
        ));
        assert!(
            e.message.contains("needs at least 2 different people"),
            "{e}"
        );
        let e = err_of(&SECRETS.replace(
            "unlock = { users = [\"alice\"] }",
            "unlock = { users = [\"alice\"], quorom = 2 }",
        ));
        assert!(e.message.contains("quorom"), "unknown keys are named: {e}");
        let ok = SECRETS.replace(
            "unlock = { users = [\"alice\"] }",
            "unlock = { users = [\"alice\", \"bob\"], quorum = 2 }",
        );
        assert_eq!(
            parse_policy("s.toml", &ok)
                .unwrap()
                .secret("manual")
                .unwrap()
                .quorum,
            2
        );
    }
}
