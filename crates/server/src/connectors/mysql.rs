//! MySQL / MariaDB connector: each grant gets its own account `'fd_…'@'%'`, holding
//! the database-level privileges its permission level lists on the bundle's database
//! (`GRANT SELECT ON `app`.* TO …`). On revoke or expiry the account is locked
//! (`ACCOUNT LOCK`: no new logins), its open sessions are killed (an open session
//! keeps its database privileges after `DROP USER`), the views, routines, triggers and
//! events it defined are dropped (each is reported), and the account is dropped.
//!
//! The password is generated here and sent to the server only as its
//! `mysql_native_password` hash (`IDENTIFIED WITH mysql_native_password AS '*…'`):
//! MariaDB writes `CREATE USER … IDENTIFIED BY '<password>'` to its general log as is.
//!
//! There is no backstop expiry in the server: MySQL has nothing like PostgreSQL's
//! `VALID UNTIL` (`PASSWORD EXPIRE INTERVAL` counts whole days and still lets the
//! client in to set a new password; a scheduled `EVENT` would run with its definer's
//! rights and needs the event scheduler). The broker's durable expiry is the
//! authority: a broker killed and restarted revokes what fell due while it was down.
//!
//! The broker's admin account must not be able to act as another account: `SUPER`,
//! `SET USER` (MariaDB) / `SET_USER_ID`, `SET_ANY_DEFINER` (MySQL) let it create a
//! routine that runs as root; `FILE`, any global data privilege, any privilege on the
//! `mysql` schema or a global `WITH GRANT OPTION` are refused too. Checked at start
//! (with what it must have) and on every new pooled connection (MySQL applies global
//! privilege changes to new connections only).

use super::{Connector, ConnectorError, DeprovisionReport, Leftover, Target};
use firedoor_core::api::CredentialItem;
use firedoor_core::policy::IntegrationKind;
use futures::future::BoxFuture;
use futures::FutureExt;
use rand::distributions::{Alphanumeric, DistString};
use sha1::{Digest, Sha1};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlPool, MySqlPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};
use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct MysqlConnector {
    name: String,
    opts: MySqlConnectOptions,
    pool: MySqlPool,
    permissions: BTreeMap<String, Vec<String>>,
    /// Database -> the privileges bundles grant on it (checked at start).
    uses: BTreeMap<String, BTreeSet<String>>,
    connect_host: String,
    connect_port: u16,
    /// Why the pool's last new connection was refused, so an operation that then
    /// times out says why.
    refused: Arc<Mutex<Option<String>>>,
}

fn err(ctx: &str, e: impl std::fmt::Display) -> ConnectorError {
    ConnectorError(format!("mysql: {ctx}: {e}"))
}

/// MySQL's error number of a failed statement, if the server sent one.
fn error_number(e: &sqlx::Error) -> Option<u16> {
    e.as_database_error()?
        .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
        .map(|d| d.number())
}

/// ER_CANNOT_USER: `CREATE USER` of an account that exists, `ALTER USER` / `DROP
/// USER` of one that does not.
const ER_CANNOT_USER: u16 = 1396;
/// ER_NO_SUCH_THREAD: the session ended between listing and `KILL`.
const ER_NO_SUCH_THREAD: u16 = 1094;

/// Quotes an identifier for MySQL (backticks, doubled inside).
pub fn quote_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// A database name in a `GRANT … ON db.*`, where `_` and `%` are wildcards: escaped,
/// so `app_1` grants on `app_1` and not also on `appx1`.
pub fn quote_db_for_grant(db: &str) -> String {
    quote_ident(
        &db.replace('\\', "\\\\")
            .replace('_', "\\_")
            .replace('%', "\\%"),
    )
}

/// A string literal for MySQL (backslash escapes on, as by default).
fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// The account `'user'@'%'`.
fn account(user: &str) -> String {
    format!("{}@'%'", quote_literal(user))
}

/// The `mysql_native_password` hash the server stores for `password`:
/// `*` + upper-case hex of SHA1(SHA1(password)). Knowing it does not let one log in.
pub fn native_password_hash(password: &str) -> String {
    let inner = Sha1::digest(password.as_bytes());
    let outer = Sha1::digest(inner);
    format!("*{}", hex::encode_upper(outer))
}

/// Global privileges the broker's account may hold: what it needs (`CREATE USER`,
/// `PROCESS` and `CONNECTION ADMIN` to find and kill a revoked account's sessions) and
/// harmless monitoring. Anything else on `*.*` is refused.
const ALLOWED_GLOBAL: &[&str] = &[
    "USAGE",
    "CREATE USER",
    "PROCESS",
    "CONNECTION ADMIN",
    "CONNECTION_ADMIN",
    "SHOW DATABASES",
    "REPLICATION CLIENT",
    "BINLOG MONITOR",
    "SLAVE MONITOR",
    "REPLICA MONITOR",
];

/// The current account as information_schema writes grantees: `'user'@'host'`.
const CURRENT_GRANTEE: &str = "CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', \
                               SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')";

/// Refuses a connection whose account is too powerful for the broker to run with.
/// Returns the global privileges it holds.
async fn refuse_too_powerful(
    conn: &mut MySqlConnection,
    integration: &str,
) -> Result<BTreeSet<String>, ConnectorError> {
    let (who,): (String,) = sqlx::query_as("SELECT CURRENT_USER()")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| err("check the admin account", e))?;
    let globals: Vec<(String, String)> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT PRIVILEGE_TYPE, IS_GRANTABLE FROM information_schema.USER_PRIVILEGES \
         WHERE GRANTEE = {CURRENT_GRANTEE}"
    )))
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| err("read the admin account's global privileges", e))?;
    let mysql_schema: Vec<(String,)> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT DISTINCT PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES \
         WHERE GRANTEE = {CURRENT_GRANTEE} AND (TABLE_SCHEMA = 'mysql' OR TABLE_SCHEMA LIKE '%\\%%') \
         UNION SELECT DISTINCT PRIVILEGE_TYPE FROM information_schema.TABLE_PRIVILEGES \
         WHERE GRANTEE = {CURRENT_GRANTEE} AND TABLE_SCHEMA = 'mysql'"
    )))
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| err("read the admin account's database privileges", e))?;
    // APPLICABLE_ROLES exists on MariaDB 10.0+ and MySQL 8.0.19+; older servers
    // have no roles to find.
    let roles: Vec<(String,)> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT ROLE_NAME FROM information_schema.APPLICABLE_ROLES WHERE GRANTEE = {CURRENT_GRANTEE}"
    )))
    .fetch_all(&mut *conn)
    .await
    .unwrap_or_default();

    let mut bad: Vec<String> = Vec::new();
    let mut held = BTreeSet::new();
    for (p, grantable) in &globals {
        if !ALLOWED_GLOBAL.contains(&p.as_str()) {
            bad.push(format!("{p} on *.*"));
        }
        if grantable == "YES" && !bad.iter().any(|b| b.contains("WITH GRANT OPTION")) {
            bad.push("WITH GRANT OPTION on *.*".into());
        }
        held.insert(p.clone());
    }
    if !mysql_schema.is_empty() {
        bad.push(
            "privileges on the mysql schema (or on a wildcard database pattern that matches it)"
                .into(),
        );
    }
    if !roles.is_empty() {
        let names: Vec<_> = roles.into_iter().map(|r| r.0).collect();
        bad.push(format!(
            "roles ({}): the broker's privileges must be granted directly, so they can be checked",
            names.join(", ")
        ));
    }
    if !bad.is_empty() {
        return Err(ConnectorError(format!(
            "mysql: integration '{integration}': the admin connection logs in as {who}, which \
             holds {}. Firedoor refuses to act with it: SUPER, SET USER (SET_USER_ID) or write \
             access to the mysql schema let whoever holds the broker's password run anything as \
             any account, and what a grantee defines could end up running with those rights. \
             Create a dedicated account (GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.*, and \
             on each database the bundles name the privileges the permission levels grant WITH \
             GRANT OPTION; see the README, \"The broker's MySQL account\") and put its URL in the \
             integration's url_env variable",
            bad.join("; ")
        )));
    }
    Ok(held)
}

impl MysqlConnector {
    /// `databases`: each database the policy's bundles name with this integration and
    /// the permission level they grant on it (what `check` verifies the admin may
    /// pass on).
    pub fn new(
        name: &str,
        url: &str,
        connect_host: Option<String>,
        kind: IntegrationKind,
        databases: &[(String, String)],
    ) -> Result<Self, ConnectorError> {
        let IntegrationKind::Mysql { permissions, .. } = kind else {
            return Err(ConnectorError("not a mysql integration".into()));
        };
        // Never echo the URL: it carries the admin password.
        let opts = MySqlConnectOptions::from_str(url)
            .map_err(|_| {
                ConnectorError(format!(
                    "integration '{name}': the admin URL is not a valid mysql:// URL"
                ))
            })?
            .disable_statement_logging();
        let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (db, level) in databases {
            let privs = permissions.get(level).cloned().unwrap_or_default();
            uses.entry(db.clone()).or_default().extend(privs);
        }
        let refused: Arc<Mutex<Option<String>>> = Arc::default();
        let (hook_name, hook_refused) = (name.to_string(), refused.clone());
        let pool = MySqlPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            // Every new connection is checked: MySQL applies a change of global
            // privileges to new connections only, so a pooled one keeps what it had
            // when it was checked.
            .after_connect(move |conn, _meta| {
                let (name, refused) = (hook_name.clone(), hook_refused.clone());
                Box::pin(async move {
                    let r = refuse_too_powerful(conn, &name).await.map(|_| ());
                    *refused.lock().unwrap_or_else(|p| p.into_inner()) =
                        r.as_ref().err().map(|e| e.0.clone());
                    r.map_err(|e| sqlx::Error::Configuration(e.0.into()))
                })
            })
            .connect_lazy_with(opts.clone());
        let connect_port = opts.get_port();
        let connect_host = connect_host.unwrap_or_else(|| opts.get_host().to_string());
        Ok(MysqlConnector {
            name: name.to_string(),
            opts,
            pool,
            permissions,
            uses,
            connect_host,
            connect_port,
            refused,
        })
    }

    /// A pooled admin connection (checked when it was opened).
    async fn acquire(&self) -> Result<sqlx::pool::PoolConnection<sqlx::MySql>, ConnectorError> {
        self.pool.acquire().await.map_err(|e| {
            match self
                .refused
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
            {
                Some(why) => ConnectorError(why),
                None => err("connect", e),
            }
        })
    }

    /// The account (user part; host `%`) of one resource of one grant. At most 32
    /// characters (MySQL 8's limit): `fd_<holder, 8>_<grant, 16 hex>_<n>`.
    pub fn account_name(t: &Target<'_>) -> String {
        let holder: String = t
            .holder
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(8)
            .collect();
        format!(
            "fd_{holder}_{}_{}",
            &t.grant_id.uuid().simple().to_string()[..16],
            t.index
        )
    }

    async fn provision_once(&self, t: &Target<'_>) -> Result<CredentialItem, ConnectorError> {
        let privs = self
            .permissions
            .get(&t.resource.permission)
            .ok_or_else(|| {
                ConnectorError(format!(
                    "integration '{}' has no permission level '{}'",
                    self.name, t.resource.permission
                ))
            })?;
        let user = Self::account_name(t);
        let acct = account(&user);
        let password = Alphanumeric.sample_string(&mut rand::rngs::OsRng, 32);
        // Only the hash reaches the server (and its general log). PASSWORD EXPIRE
        // NEVER: a server-wide default_password_lifetime must not end it early.
        let create = format!(
            "CREATE USER {acct} IDENTIFIED WITH mysql_native_password AS {} PASSWORD EXPIRE NEVER",
            quote_literal(&native_password_hash(&password))
        );
        let grant = format!(
            "GRANT {} ON {}.* TO {acct}",
            privs.join(", "),
            quote_db_for_grant(&t.resource.resource)
        );
        // Both in one round trip, as text (a prepared statement per account would
        // cost a prepare, and the statement cache's close, per grant). The server
        // stops at the first statement that fails.
        let stmt = format!("{create}; {grant}");
        let mut admin = self.acquire().await?;
        let mut done = sqlx::raw_sql(AssertSqlSafe(stmt.clone()))
            .execute(&mut *admin)
            .await;
        if matches!(&done, Err(e) if error_number(e) == Some(ER_CANNOT_USER)) {
            // A retry after a crash between the target and the store finds the account
            // of the earlier attempt: remove it (and whatever it left), then again.
            drop(admin);
            self.drop_account(&user).await?;
            admin = self.acquire().await?;
            done = sqlx::raw_sql(AssertSqlSafe(stmt))
                .execute(&mut *admin)
                .await;
        }
        if let Err(e) = done {
            // Account DDL is not transactional: if the GRANT failed, the account goes.
            let _ = sqlx::raw_sql(AssertSqlSafe(format!("DROP USER IF EXISTS {acct}")))
                .execute(&mut *admin)
                .await;
            return Err(err(
                &format!(
                    "create account {user} with {} on {}",
                    privs.join(", "),
                    t.resource.resource
                ),
                e,
            ));
        }
        Ok(CredentialItem {
            integration: t.resource.integration.clone(),
            kind: "mysql".into(),
            resource: t.resource.resource.clone(),
            username: user,
            secret: password,
            host: Some(self.connect_host.clone()),
            port: Some(self.connect_port),
            note: Some(format!(
                "{} on database {} (privileges: {})",
                t.resource.permission,
                t.resource.resource,
                privs.join(", ")
            )),
        })
    }

    /// Locks the account, kills its sessions, drops what it defined, drops it. An
    /// account that is already gone (an earlier attempt, or a DBA) may still have
    /// sessions (they outlive `DROP USER`) and objects: those are handled all the same.
    async fn drop_account(&self, user: &str) -> Result<DeprovisionReport, ConnectorError> {
        let acct = account(user);
        let mut conn = self.acquire().await?;
        // 1. No new logins.
        match sqlx::raw_sql(AssertSqlSafe(format!("ALTER USER {acct} ACCOUNT LOCK")))
            .execute(&mut *conn)
            .await
        {
            Ok(_) => {}
            Err(e) if error_number(&e) == Some(ER_CANNOT_USER) => {}
            Err(e) => return Err(err(&format!("lock account {user}"), e)),
        }
        // 2. No open sessions: they keep their database privileges after DROP USER.
        // ID is signed on MariaDB, unsigned on MySQL.
        let sessions: Vec<(i64,)> = sqlx::query_as(
            "SELECT CAST(ID AS SIGNED) FROM information_schema.PROCESSLIST WHERE USER = ?",
        )
        .bind(user)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| err("list the account's sessions", e))?;
        for (id,) in sessions {
            match sqlx::raw_sql(AssertSqlSafe(format!("KILL CONNECTION {id}")))
                .execute(&mut *conn)
                .await
            {
                Ok(_) => {}
                Err(e) if error_number(&e) == Some(ER_NO_SUCH_THREAD) => {}
                Err(e) => return Err(err(&format!("kill session {id} of {user}"), e)),
            }
        }
        // 3. What it defined: each runs (or could be made to run) with its definer's
        //    rights. Triggers and events first: they run by themselves.
        let definer = format!("{user}@%");
        let found = leftovers(&mut conn, &definer).await?;
        let mut report = DeprovisionReport::default();
        for o in &found {
            let stmt = match o.kind.as_str() {
                "trigger" => "DROP TRIGGER IF EXISTS",
                "event" => "DROP EVENT IF EXISTS",
                "procedure" => "DROP PROCEDURE IF EXISTS",
                "function" => "DROP FUNCTION IF EXISTS",
                _ => "DROP VIEW IF EXISTS",
            };
            sqlx::raw_sql(AssertSqlSafe(format!(
                "{stmt} {}.{}",
                quote_ident(&o.schema),
                quote_ident(&o.name)
            )))
            .execute(&mut *conn)
            .await
            .map_err(|e| {
                ConnectorError(format!(
                    "mysql: could not drop the {} {}.{} that {user} defined: {e}. The account is \
                     locked and its sessions are gone; give the broker's account the privilege \
                     to drop it (DROP for views, ALTER ROUTINE for routines, TRIGGER, EVENT on \
                     that database); the broker retries",
                    o.kind, o.schema, o.name
                ))
            })?;
            report.leftovers.push(Leftover {
                integration: self.name.clone(),
                database: o.schema.clone(),
                kind: o.kind.clone(),
                identity: match &o.table {
                    Some(table) => format!("{}.{} on {}.{table}", o.schema, o.name, o.schema),
                    None => format!("{}.{}", o.schema, o.name),
                },
                created_by: user.to_string(),
                action: match (o.kind.as_str(), o.definer_security) {
                    ("trigger", _) => {
                        "dropped (a trigger runs with its definer's rights on every write)".into()
                    }
                    ("event", _) => {
                        "dropped (an event runs with its definer's rights on its schedule)".into()
                    }
                    (_, true) => {
                        "dropped (SQL SECURITY DEFINER: it ran with the account's rights)".into()
                    }
                    _ => "dropped".into(),
                },
            });
        }
        // 4. The account (and every privilege it held).
        sqlx::raw_sql(AssertSqlSafe(format!("DROP USER IF EXISTS {acct}")))
            .execute(&mut *conn)
            .await
            .map_err(|e| err(&format!("drop account {user}"), e))?;
        Ok(report)
    }

    /// Checks the admin account: not too powerful, and able to do its job.
    async fn check_admin(&self, conn: &mut MySqlConnection) -> Result<(), ConnectorError> {
        let globals = refuse_too_powerful(conn, &self.name).await?;
        let mut missing: Vec<String> = Vec::new();
        for (p, why) in [
            ("CREATE USER", "to create and drop the grants' accounts"),
            (
                "PROCESS",
                "to see a revoked account's open sessions (they keep its privileges until killed)",
            ),
        ] {
            if !globals.contains(p) {
                missing.push(format!("{p} on *.* ({why})"));
            }
        }
        if !globals.contains("CONNECTION ADMIN") && !globals.contains("CONNECTION_ADMIN") {
            missing.push(
                "CONNECTION ADMIN (MySQL: CONNECTION_ADMIN) on *.* (to kill a revoked account's \
                 sessions)"
                    .into(),
            );
        }
        let schema: Vec<(String, String, String)> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT REPLACE(TABLE_SCHEMA, '\\\\', ''), PRIVILEGE_TYPE, IS_GRANTABLE \
             FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = {CURRENT_GRANTEE}"
        )))
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| err("read the admin account's database privileges", e))?;
        for (db, privs) in &self.uses {
            let has = |p: &str, grantable: bool| {
                schema
                    .iter()
                    .any(|(d, q, g)| d == db && q == p && (!grantable || g == "YES"))
            };
            let lacking: Vec<&str> = privs
                .iter()
                .filter(|p| !has(p, true))
                .map(String::as_str)
                .collect();
            if !lacking.is_empty() {
                missing.push(format!(
                    "{} ON `{db}`.* WITH GRANT OPTION (the permission levels grant it)",
                    lacking.join(", ")
                ));
            }
            // To find and drop what a grantee defined, the admin needs the matching
            // privilege (information_schema shows it nothing else).
            for (creates, cleanup) in [
                ("CREATE VIEW", "DROP"),
                ("CREATE ROUTINE", "ALTER ROUTINE"),
                ("TRIGGER", "TRIGGER"),
                ("EVENT", "EVENT"),
            ] {
                if privs.contains(creates) && !has(cleanup, false) {
                    missing.push(format!(
                        "{cleanup} ON `{db}`.* (grantees get {creates}; the broker drops what they \
                         define when the grant ends)"
                    ));
                }
            }
        }
        if !missing.is_empty() {
            let (who,): (String,) = sqlx::query_as("SELECT CURRENT_USER()")
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| err("check the admin account", e))?;
            return Err(ConnectorError(format!(
                "mysql: integration '{}': the admin account {who} lacks {}; grant it (see the \
                 README, \"The broker's MySQL account\")",
                self.name,
                missing.join("; ")
            )));
        }
        Ok(())
    }
}

/// An object whose definer is a grant's account.
struct Defined {
    kind: String,
    schema: String,
    name: String,
    /// The table a trigger is on.
    table: Option<String>,
    /// SQL SECURITY DEFINER (views and routines).
    definer_security: bool,
}

/// Every trigger, event, routine and view whose definer is `definer` (`user@host`),
/// in every database the admin can see them in. Triggers and events first.
async fn leftovers(
    conn: &mut MySqlConnection,
    definer: &str,
) -> Result<Vec<Defined>, ConnectorError> {
    let rows: Vec<(String, String, String, Option<String>, String)> = sqlx::query_as(
        "SELECT 'trigger', TRIGGER_SCHEMA, TRIGGER_NAME, EVENT_OBJECT_TABLE, '' \
           FROM information_schema.TRIGGERS WHERE DEFINER = ? \
         UNION ALL SELECT 'event', EVENT_SCHEMA, EVENT_NAME, NULL, '' \
           FROM information_schema.EVENTS WHERE DEFINER = ? \
         UNION ALL SELECT LOWER(ROUTINE_TYPE), ROUTINE_SCHEMA, ROUTINE_NAME, NULL, SECURITY_TYPE \
           FROM information_schema.ROUTINES WHERE DEFINER = ? \
         UNION ALL SELECT 'view', TABLE_SCHEMA, TABLE_NAME, NULL, SECURITY_TYPE \
           FROM information_schema.VIEWS WHERE DEFINER = ?",
    )
    .bind(definer)
    .bind(definer)
    .bind(definer)
    .bind(definer)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| err("list what the account defined", e))?;
    Ok(rows
        .into_iter()
        .map(|(kind, schema, name, table, security)| Defined {
            kind,
            schema,
            name,
            table,
            definer_security: security == "DEFINER",
        })
        .collect())
}

impl Connector for MysqlConnector {
    fn kind(&self) -> &'static str {
        "mysql"
    }

    fn provision<'a>(
        &'a self,
        t: &'a Target<'a>,
    ) -> BoxFuture<'a, Result<CredentialItem, ConnectorError>> {
        self.provision_once(t).boxed()
    }

    fn deprovision<'a>(
        &'a self,
        t: &'a Target<'a>,
    ) -> BoxFuture<'a, Result<DeprovisionReport, ConnectorError>> {
        async move { self.drop_account(&Self::account_name(t)).await }.boxed()
    }

    /// At start: refuses an admin account that is too powerful or lacks what it
    /// needs. MySQL being down is not an error here; every new connection is checked
    /// again for too much power.
    fn check(&self) -> BoxFuture<'_, Result<(), ConnectorError>> {
        async move {
            match self.opts.connect().await {
                Ok(mut c) => {
                    let r = self.check_admin(&mut c).await;
                    let _ = c.close().await;
                    r
                }
                Err(e) => {
                    tracing::warn!(integration = %self.name, error = %e,
                        "MySQL cannot be reached at start; the admin account is checked on every new connection");
                    Ok(())
                }
            }
        }
        .boxed()
    }

    /// Nothing to move: MySQL has no per-account expiry time (see the module
    /// documentation); the broker's own expiry ends the grant.
    fn extend<'a>(&'a self, _t: &'a Target<'a>) -> BoxFuture<'a, Result<(), ConnectorError>> {
        Box::pin(async { Ok(()) })
    }

    /// `ALTER USER 'role'@'%' IDENTIFIED WITH mysql_native_password AS '<hash>'`: only
    /// the hash reaches the server. The account must exist: the broker rotates a
    /// standing break-glass account, it does not create one.
    fn rotate_secret<'a>(
        &'a self,
        role: &'a str,
        new_value: &'a str,
    ) -> BoxFuture<'a, Result<(), ConnectorError>> {
        async move {
            let mut conn = self.acquire().await?;
            match sqlx::raw_sql(AssertSqlSafe(format!(
                "ALTER USER {} IDENTIFIED WITH mysql_native_password AS {}",
                account(role),
                quote_literal(&native_password_hash(new_value))
            )))
            .execute(&mut *conn)
            .await
            {
                Ok(_) => Ok(()),
                Err(e) if error_number(&e) == Some(ER_CANNOT_USER) => Err(ConnectorError(format!(
                    "mysql: account '{role}'@'%' does not exist on integration '{}'; create it \
                     once (CREATE USER '{role}'@'%' IDENTIFIED BY '<a long random password>') \
                     and grant it what break glass needs; the broker then sets its password",
                    self.name
                ))),
                Err(e) => Err(err(&format!("set the password of account {role}"), e)),
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_hash_matches_the_servers_password_function() {
        // MariaDB: SELECT PASSWORD('userpw123')
        assert_eq!(
            native_password_hash("userpw123"),
            "*635B3D5E91B6B804F0A7BDC7D0379DA765C0AE53"
        );
    }

    #[test]
    fn grant_database_names_are_not_patterns() {
        assert_eq!(quote_db_for_grant("app_1"), "`app\\_1`");
        assert_eq!(quote_ident("a`b"), "`a``b`");
        assert_eq!(quote_literal("o'k\\"), "'o''k\\\\'");
    }
}
