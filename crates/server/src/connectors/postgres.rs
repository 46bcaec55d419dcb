//! PostgreSQL connector: each grant gets its own login role, `VALID UNTIL` its expiry
//! as a backstop, member of the database roles its permission level maps to. On
//! revoke or expiry the role loses LOGIN, its sessions are terminated, what it left
//! behind is neutralised and handed to the orphan role (or dropped), and the role is
//! dropped.
//!
//! The broker's admin role must not be a superuser: anything it takes over (and
//! anything it could be tricked into running) would run with a superuser's rights.
//! The connector refuses to act through a superuser connection, at start and on
//! every new connection.
//!
//! The password is generated here and sent to the server only as a SCRAM-SHA-256
//! verifier, so it never appears in the server's statement log.

use super::{Connector, ConnectorError, DeprovisionReport, Leftover, Target};
use base64::Engine;
use firedoor_core::api::CredentialItem;
use firedoor_core::policy::{IntegrationKind, OnRevoke};
use futures::future::BoxFuture;
use futures::FutureExt;
use hmac::{Hmac, Mac};
use rand::distributions::{Alphanumeric, DistString};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct PostgresConnector {
    name: String,
    opts: PgConnectOptions,
    pool: PgPool,
    permissions: BTreeMap<String, Vec<String>>,
    connect_host: String,
    connect_port: u16,
    orphan_role: String,
    on_revoke: OnRevoke,
    /// Why the pool's last new connection was refused (admin is a superuser), so
    /// an operation that then times out says why.
    refused: Arc<Mutex<Option<String>>>,
}

fn err(ctx: &str, e: impl std::fmt::Display) -> ConnectorError {
    ConnectorError(format!("postgres: {ctx}: {e}"))
}

/// Quotes an identifier for PostgreSQL.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A string literal for PostgreSQL (standard_conforming_strings on).
fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802/7677).
pub fn scram_verifier(password: &str) -> String {
    const ITER: u32 = 4096;
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, ITER, &mut salted);
    let hmac = |key: &[u8], msg: &[u8]| {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
        m.update(msg);
        m.finalize().into_bytes()
    };
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac(&salted, b"Server Key");
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        "SCRAM-SHA-256${ITER}:{}${}:{}",
        b64.encode(salt),
        b64.encode(stored_key),
        b64.encode(server_key)
    )
}

impl PostgresConnector {
    pub fn new(
        name: &str,
        url: &str,
        connect_host: Option<String>,
        kind: IntegrationKind,
    ) -> Result<Self, ConnectorError> {
        let IntegrationKind::Postgres {
            permissions,
            orphan_role,
            on_revoke,
            ..
        } = kind
        else {
            return Err(ConnectorError("not a postgres integration".into()));
        };
        // Never echo the URL: it carries the admin password.
        let opts = PgConnectOptions::from_str(url)
            .map_err(|_| {
                ConnectorError(format!(
                    "integration '{name}': the admin URL is not a valid postgres:// URL"
                ))
            })?
            .disable_statement_logging();
        let refused: Arc<Mutex<Option<String>>> = Arc::default();
        let (hook_name, hook_refused) = (name.to_string(), refused.clone());
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            // Every new connection is checked, so the broker never acts as a
            // superuser even if the URL changed meaning after start (or PostgreSQL
            // was down then)...
            .after_connect(move |conn, _meta| {
                let (name, refused) = (hook_name.clone(), hook_refused.clone());
                Box::pin(async move {
                    let r = refuse_superuser(conn, &name).await;
                    *refused.lock().unwrap_or_else(|p| p.into_inner()) =
                        r.as_ref().err().map(|e| e.0.clone());
                    r.map_err(|e| sqlx::Error::Configuration(e.0.into()))
                })
            })
            // ...and an idle one again before reuse (a DBA may have made the role a
            // superuser meanwhile): one cheap query per operation.
            .before_acquire(|conn, _meta| {
                Box::pin(async move {
                    let (sup,): (bool,) = sqlx::query_as(
                        "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
                    )
                    .fetch_one(conn)
                    .await?;
                    Ok(!sup)
                })
            })
            .connect_lazy_with(opts.clone());
        let connect_port = opts.get_port();
        let connect_host = connect_host.unwrap_or_else(|| opts.get_host().to_string());
        Ok(PostgresConnector {
            name: name.to_string(),
            opts,
            pool,
            permissions,
            connect_host,
            connect_port,
            orphan_role,
            on_revoke,
            refused,
        })
    }

    /// A pooled admin connection (checked not to be a superuser).
    async fn acquire(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>, ConnectorError> {
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

    /// A fresh admin connection to `database` with `search_path=pg_catalog`, so no
    /// name a grantee created can stand in for a catalog function or operator.
    async fn connect_db(&self, database: &str) -> Result<PgConnection, ConnectorError> {
        let mut c = self
            .opts
            .clone()
            .database(database)
            .options([("search_path", "pg_catalog")])
            .connect()
            .await
            .map_err(|e| err(&format!("connect to database {database}"), e))?;
        refuse_superuser(&mut c, &self.name).await?;
        Ok(c)
    }

    /// The login role of one resource of one grant.
    pub fn role_name(t: &Target<'_>) -> String {
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
            .take(24)
            .collect();
        format!(
            "fd_{holder}_{}_{}",
            &t.grant_id.uuid().simple().to_string()[..16],
            t.index
        )
    }

    fn valid_until(t: &Target<'_>) -> String {
        t.expires_at.format("%Y-%m-%d %H:%M:%S+00").to_string()
    }

    /// Creates the grant's login role (dropping a leftover of an earlier attempt).
    async fn provision_once(&self, t: &Target<'_>) -> Result<CredentialItem, ConnectorError> {
        let roles = self
            .permissions
            .get(&t.resource.permission)
            .ok_or_else(|| {
                ConnectorError(format!(
                    "integration '{}' has no permission level '{}'",
                    self.name, t.resource.permission
                ))
            })?;
        let role = Self::role_name(t);
        let password = Alphanumeric.sample_string(&mut rand::rngs::OsRng, 32);
        // INHERIT so the member roles' privileges apply without SET ROLE.
        let mut stmt = format!(
            "CREATE ROLE {} LOGIN INHERIT PASSWORD {} VALID UNTIL {}",
            quote_ident(&role),
            quote_literal(&scram_verifier(&password)),
            quote_literal(&Self::valid_until(t))
        );
        if !roles.is_empty() {
            let list: Vec<String> = roles.iter().map(|r| quote_ident(r)).collect();
            stmt.push_str(&format!(" IN ROLE {}", list.join(", ")));
        }
        // The role and its CONNECT in one round trip: several statements in one
        // simple query run as one implicit transaction (both or neither).
        stmt.push_str(&format!(
            "; GRANT CONNECT ON DATABASE {} TO {}",
            quote_ident(&t.resource.resource),
            quote_ident(&role)
        ));
        let mut admin = self.acquire().await?;
        match sqlx::raw_sql(AssertSqlSafe(stmt.clone()))
            .execute(&mut *admin)
            .await
        {
            Ok(_) => {}
            // A retry after a crash between the target and the store finds the role
            // of the earlier attempt: remove it (and whatever it left), then again.
            Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42710") => {
                drop(admin);
                self.drop_role(&role).await?;
                let mut admin = self.acquire().await?;
                sqlx::raw_sql(AssertSqlSafe(stmt))
                    .execute(&mut *admin)
                    .await
                    .map_err(|e| {
                        err(
                            &format!("create role {role} with CONNECT on {}", t.resource.resource),
                            e,
                        )
                    })?;
            }
            Err(e) => {
                return Err(err(
                    &format!("create role {role} with CONNECT on {}", t.resource.resource),
                    e,
                ))
            }
        }
        Ok(CredentialItem {
            integration: t.resource.integration.clone(),
            kind: "postgres".into(),
            resource: t.resource.resource.clone(),
            username: role,
            secret: password,
            host: Some(self.connect_host.clone()),
            port: Some(self.connect_port),
            note: Some(format!(
                "{} on database {} (roles: {})",
                t.resource.permission,
                t.resource.resource,
                roles.join(", ")
            )),
        })
    }

    async fn drop_role(&self, role: &str) -> Result<DeprovisionReport, ConnectorError> {
        let mut conn = self.acquire().await?;
        let exists: Option<(String,)> =
            sqlx::query_as("SELECT rolname::text FROM pg_roles WHERE rolname = $1")
                .bind(role)
                .fetch_optional(&mut *conn)
                .await
                .map_err(|e| err("look up role", e))?;
        if exists.is_none() {
            return Ok(DeprovisionReport::default());
        }
        let q = quote_ident(role);
        sqlx::query(AssertSqlSafe(format!("ALTER ROLE {q} NOLOGIN")))
            .execute(&mut *conn)
            .await
            .map_err(|e| err("disable login", e))?;
        // The admin needs the grant role's privileges to end its sessions and act on
        // its objects (the admin is not a superuser).
        self.become_member(&mut conn, role).await?;
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1")
            .bind(role)
            .execute(&mut *conn)
            .await
            .map_err(|e| err("terminate sessions", e))?;
        if self.on_revoke == OnRevoke::Reassign {
            self.ensure_orphan_role(&mut conn).await?;
        }
        // Every database where the role owns something or holds a privilege; shared
        // objects (e.g. CONNECT on a database) are handled from the admin's own.
        let databases: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT CASE WHEN s.dbid = 0 THEN current_database() ELSE d.datname END::text
             FROM pg_shdepend s LEFT JOIN pg_database d ON d.oid = s.dbid
             WHERE s.refclassid = 'pg_authid'::regclass
               AND s.refobjid = (SELECT oid FROM pg_roles WHERE rolname = $1)
               AND (s.dbid = 0 OR d.datallowconn)
             ORDER BY 1",
        )
        .bind(role)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| err("find the databases the role has objects in", e))?;
        let mut report = DeprovisionReport::default();
        for (database,) in &databases {
            report
                .leftovers
                .extend(self.clean_database(role, database).await?);
        }
        sqlx::query(AssertSqlSafe(format!("DROP ROLE IF EXISTS {q}")))
            .execute(&mut *conn)
            .await
            .map_err(|e| err("drop role", e))?;
        Ok(report)
    }

    /// Makes the admin a member (with its privileges) of `role`, a role the broker
    /// created or the orphan role. This direction is safe: the admin gains what
    /// that role has; the role gains nothing of the admin's.
    async fn become_member(
        &self,
        conn: &mut PgConnection,
        role: &str,
    ) -> Result<(), ConnectorError> {
        let (has, version): (bool, i32) = sqlx::query_as(
            "SELECT pg_has_role(current_user, $1, 'USAGE'), current_setting('server_version_num')::int",
        )
        .bind(role)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| err(&format!("check membership in {role}"), e))?;
        if has {
            return Ok(());
        }
        // PostgreSQL 16+: the membership a CREATEROLE admin gets for the roles it
        // creates has ADMIN only; ask for the role's privileges explicitly.
        let with = if version >= 160000 {
            " WITH INHERIT TRUE"
        } else {
            ""
        };
        sqlx::query(AssertSqlSafe(format!(
            "GRANT {} TO CURRENT_USER{with}",
            quote_ident(role)
        )))
        .execute(&mut *conn)
        .await
        .map_err(|e| err(&format!("make the admin a member of {role}"), e))?;
        Ok(())
    }

    /// The orphan role exists, cannot log in, has no attributes that grant power and
    /// is a member of nothing; nobody but the admin is a member of it. Creates it if
    /// missing; refuses a role that fails any of this.
    async fn ensure_orphan_role(&self, conn: &mut PgConnection) -> Result<(), ConnectorError> {
        let orphan = &self.orphan_role;
        let look = || {
            sqlx::query_as::<_, (bool, bool, bool, bool, bool, bool, bool, bool, bool)>(
                "SELECT r.rolcanlogin, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication,
                        r.rolbypassrls,
                        EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.member = r.oid),
                        EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.roleid = r.oid
                                AND m.member <> (SELECT oid FROM pg_roles WHERE rolname = current_user)),
                        r.rolname = current_user
                 FROM pg_roles r WHERE r.rolname = $1",
            )
            .bind(orphan)
        };
        let mut found = look()
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| err("look up the orphan role", e))?;
        if found.is_none() {
            let created = sqlx::query(AssertSqlSafe(format!(
                "CREATE ROLE {} NOLOGIN",
                quote_ident(orphan)
            )))
            .execute(&mut *conn)
            .await;
            // Another deprovisioning may have created it meanwhile.
            found = look()
                .fetch_optional(&mut *conn)
                .await
                .map_err(|e| err("look up the orphan role", e))?;
            if let (Err(e), None) = (created, &found) {
                return Err(err(&format!("create the orphan role {orphan}"), e));
            }
        }
        let Some((
            login,
            sup,
            createrole,
            createdb,
            repl,
            bypassrls,
            member_of,
            has_members,
            is_admin,
        )) = found
        else {
            return Err(ConnectorError(format!(
                "postgres: the orphan role {orphan} could not be created"
            )));
        };
        let mut bad = Vec::new();
        for (flag, what) in [
            (is_admin, "is the broker's admin role itself"),
            (login, "can log in"),
            (sup, "is a superuser"),
            (createrole, "has CREATEROLE"),
            (createdb, "has CREATEDB"),
            (repl, "has REPLICATION"),
            (bypassrls, "has BYPASSRLS"),
            (member_of, "is a member of another role"),
            (has_members, "has members other than the broker's admin"),
        ] {
            if flag {
                bad.push(what);
            }
        }
        if !bad.is_empty() {
            return Err(ConnectorError(format!(
                "postgres: integration '{}': the orphan role {orphan} {}; it receives what \
                 grant roles leave behind, so it must be a dedicated NOLOGIN role with no \
                 attributes and no memberships (fix the role, or name another orphan_role \
                 in the policy: the broker creates it)",
                self.name,
                bad.join(", ")
            )));
        }
        self.become_member(conn, orphan).await
    }

    /// In one database: neutralises the routines `role` owns, revokes what others
    /// were given on its relations and schemas, then hands everything to the orphan
    /// role or drops it. Returns what was there and what was done.
    async fn clean_database(
        &self,
        role: &str,
        database: &str,
    ) -> Result<Vec<Leftover>, ConnectorError> {
        let ctx = |what: &str| format!("database {database}: {what}");
        let mut db = self.connect_db(database).await?;
        let owned: Vec<(String, String, bool)> = sqlx::query_as(
            "SELECT coalesce(o.type, 'object'), coalesce(o.identity, '?'),
                    s.classid IN ('pg_proc'::regclass, 'pg_class'::regclass, 'pg_namespace'::regclass)
             FROM pg_shdepend s, LATERAL pg_identify_object(s.classid, s.objid, s.objsubid) o
             WHERE s.deptype = 'o' AND s.refclassid = 'pg_authid'::regclass
               AND s.refobjid = (SELECT oid FROM pg_roles WHERE rolname = $1)
               AND s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
             ORDER BY 1, 2",
        )
        .bind(role)
        .fetch_all(&mut db)
        .await
        .map_err(|e| err(&ctx("list the objects the role owns"), e))?;

        // 1. Neutralise, whatever happens next, in its own transaction: if dropping
        //    fails below, nothing the role left can still run with its rights.
        let mut stmts: Vec<String> = Vec::new();
        let routines: Vec<(String, Vec<String>)> = sqlx::query_as(
            "SELECT p.oid::regprocedure::text,
                    array(SELECT DISTINCT a.grantee::regrole::text FROM aclexplode(p.proacl) a
                          WHERE a.grantee <> 0 AND a.grantee <> p.proowner)
             FROM pg_proc p
             WHERE p.proowner = (SELECT oid FROM pg_roles WHERE rolname = $1)
               AND p.prokind IN ('f', 'p')",
        )
        .bind(role)
        .fetch_all(&mut db)
        .await
        .map_err(|e| err(&ctx("list the routines the role owns"), e))?;
        for (sig, grantees) in &routines {
            stmts.push(format!("ALTER ROUTINE {sig} SECURITY INVOKER"));
            for g in grantees {
                stmts.push(format!("REVOKE ALL ON ROUTINE {sig} FROM {g} CASCADE"));
            }
            stmts.push(format!("REVOKE ALL ON ROUTINE {sig} FROM PUBLIC CASCADE"));
        }
        let relations: Vec<(String, String, Vec<String>)> = sqlx::query_as(
            "SELECT c.oid::regclass::text, CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,
                    array(SELECT DISTINCT CASE WHEN g = 0 THEN 'PUBLIC' ELSE g::regrole::text END
                          FROM (SELECT a.grantee AS g FROM aclexplode(c.relacl) a
                                UNION SELECT a.grantee FROM pg_attribute att, aclexplode(att.attacl) a
                                      WHERE att.attrelid = c.oid) x
                          WHERE g <> c.relowner)
             FROM pg_class c
             WHERE c.relowner = (SELECT oid FROM pg_roles WHERE rolname = $1)
               AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
             UNION ALL
             SELECT n.oid::regnamespace::text, 'SCHEMA',
                    array(SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END
                          FROM aclexplode(n.nspacl) a WHERE a.grantee <> n.nspowner)
             FROM pg_namespace n
             WHERE n.nspowner = (SELECT oid FROM pg_roles WHERE rolname = $1)",
        )
        .bind(role)
        .fetch_all(&mut db)
        .await
        .map_err(|e| err(&ctx("list the relations the role owns"), e))?;
        for (name, keyword, grantees) in &relations {
            for g in grantees {
                stmts.push(format!("REVOKE ALL ON {keyword} {name} FROM {g} CASCADE"));
            }
        }
        let mut tx = db.begin().await.map_err(|e| err(&ctx("begin"), e))?;
        for stmt in stmts {
            sqlx::query(AssertSqlSafe(stmt))
                .execute(&mut *tx)
                .await
                .map_err(|e| err(&ctx("neutralise what the role left"), e))?;
        }
        tx.commit().await.map_err(|e| err(&ctx("commit"), e))?;

        // 2. Hand over or drop.
        let q = quote_ident(role);
        let orphan = quote_ident(&self.orphan_role);
        let mut tx = db.begin().await.map_err(|e| err(&ctx("begin"), e))?;
        match self.on_revoke {
            OnRevoke::Reassign => {
                // The new owner of a routine must be able to create in its schema;
                // the grant role could. The orphan role borrows that for the
                // duration of this transaction only: nobody ever sees it committed.
                for stmt in [
                    format!("GRANT {q} TO {orphan}"),
                    format!("REASSIGN OWNED BY {q} TO {orphan}"),
                    format!("REVOKE {q} FROM {orphan}"),
                    format!("DROP OWNED BY {q}"),
                ] {
                    sqlx::query(AssertSqlSafe(stmt))
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| {
                            err(
                                &ctx(&format!(
                                    "hand what the role left to the orphan role {}",
                                    self.orphan_role
                                )),
                                e,
                            )
                        })?;
                }
            }
            OnRevoke::Drop => {
                sqlx::query(AssertSqlSafe(format!("DROP OWNED BY {q}")))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| {
                        ConnectorError(format!(
                            "postgres: database {database}: on_revoke = \"drop\" could not drop \
                             what {role} left behind: {e}. Objects of other roles depend on them: \
                             remove those dependencies (or switch the integration to \
                             on_revoke = \"reassign\"); login is already disabled and the broker \
                             retries"
                        ))
                    })?;
            }
        }
        tx.commit().await.map_err(|e| err(&ctx("commit"), e))?;
        let _ = db.close().await;

        Ok(owned
            .into_iter()
            .map(|(kind, identity, neutralised)| {
                let action = match (self.on_revoke, kind.as_str()) {
                    (OnRevoke::Drop, _) => "dropped".to_string(),
                    (OnRevoke::Reassign, "function" | "procedure") => format!(
                        "made SECURITY INVOKER, EXECUTE revoked from PUBLIC and every grantee, \
                         reassigned to {}",
                        self.orphan_role
                    ),
                    (OnRevoke::Reassign, _) if neutralised => format!(
                        "privileges of every other role revoked, reassigned to {}",
                        self.orphan_role
                    ),
                    (OnRevoke::Reassign, _) => format!("reassigned to {}", self.orphan_role),
                };
                Leftover {
                    integration: self.name.clone(),
                    database: database.to_string(),
                    kind,
                    identity,
                    created_by: role.to_string(),
                    action,
                }
            })
            .collect())
    }
}

/// Runs a provisioning or deprovisioning again when PostgreSQL refused it because
/// another session changed the same catalog row at the same moment ("tuple
/// concurrently updated": two `GRANT CONNECT ON DATABASE app` at once, as brokers
/// provisioning in parallel do). Both operations start by undoing what an earlier
/// attempt left, so running them again is safe; other errors are returned at once.
async fn retry_catalog_races<T, F, Fut>(mut op: F) -> Result<T, ConnectorError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ConnectorError>>,
{
    let mut attempt = 0u32;
    loop {
        match op().await {
            Err(e) if attempt < 8 && e.0.contains("tuple concurrently updated") => {
                attempt += 1;
                let jitter = rand::Rng::gen_range(&mut rand::thread_rng(), 5..25u64);
                tokio::time::sleep(std::time::Duration::from_millis(
                    jitter * u64::from(attempt),
                ))
                .await;
            }
            other => return other,
        }
    }
}

/// Refuses a connection whose role is a superuser.
async fn refuse_superuser(
    conn: &mut PgConnection,
    integration: &str,
) -> Result<(), ConnectorError> {
    let (sup, who): (bool, String) =
        sqlx::query_as("SELECT rolsuper, rolname::text FROM pg_roles WHERE rolname = current_user")
            .fetch_one(conn)
            .await
            .map_err(|e| err("check the admin role", e))?;
    if sup {
        return Err(ConnectorError(format!(
            "postgres: integration '{integration}': the admin connection logs in as {who}, a \
             superuser; Firedoor refuses to act as a superuser (what a grantee leaves behind \
             would end up with a superuser's rights). Create a non-superuser admin role \
             (CREATEROLE, ADMIN OPTION on the roles the permission levels grant, CONNECT on \
             the databases WITH GRANT OPTION; see scripts/dev-postgres.sh) and put its URL in \
             the integration's url_env variable"
        )));
    }
    Ok(())
}

impl Connector for PostgresConnector {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn provision<'a>(
        &'a self,
        t: &'a Target<'a>,
    ) -> BoxFuture<'a, Result<CredentialItem, ConnectorError>> {
        async move { retry_catalog_races(|| self.provision_once(t)).await }.boxed()
    }

    fn deprovision<'a>(
        &'a self,
        t: &'a Target<'a>,
    ) -> BoxFuture<'a, Result<DeprovisionReport, ConnectorError>> {
        async move {
            let role = Self::role_name(t);
            retry_catalog_races(|| self.drop_role(&role)).await
        }
        .boxed()
    }

    /// At start: refuses a superuser admin. PostgreSQL being down is not an error
    /// here; every new connection is checked again.
    fn check(&self) -> BoxFuture<'_, Result<(), ConnectorError>> {
        async move {
            match self.opts.connect().await {
                Ok(mut c) => {
                    let r = refuse_superuser(&mut c, &self.name).await;
                    let _ = c.close().await;
                    r
                }
                Err(e) => {
                    tracing::warn!(integration = %self.name, error = %e,
                        "PostgreSQL cannot be reached at start; the admin role is checked on every new connection");
                    Ok(())
                }
            }
        }
        .boxed()
    }

    fn extend<'a>(&'a self, t: &'a Target<'a>) -> BoxFuture<'a, Result<(), ConnectorError>> {
        async move {
            sqlx::query(AssertSqlSafe(format!(
                "ALTER ROLE {} VALID UNTIL {}",
                quote_ident(&Self::role_name(t)),
                quote_literal(&Self::valid_until(t))
            )))
            .execute(&mut *self.acquire().await?)
            .await
            .map_err(|e| err("extend role", e))?;
            Ok(())
        }
        .boxed()
    }

    /// `ALTER ROLE … WITH LOGIN PASSWORD '<SCRAM verifier>'`: only the verifier
    /// reaches the server (and its statement log). The role must already exist: the
    /// broker rotates a standing break-glass role, it does not create one.
    fn rotate_secret<'a>(
        &'a self,
        role: &'a str,
        new_value: &'a str,
    ) -> BoxFuture<'a, Result<(), ConnectorError>> {
        async move {
            let mut conn = self.acquire().await?;
            let exists: Option<(String,)> =
                sqlx::query_as("SELECT rolname::text FROM pg_roles WHERE rolname = $1")
                    .bind(role)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(|e| err("look up role", e))?;
            if exists.is_none() {
                return Err(ConnectorError(format!(
                    "postgres: role {role} does not exist on integration '{}'; create it once \
                     (CREATE ROLE {role} LOGIN) and grant it what break glass needs",
                    self.name
                )));
            }
            sqlx::query(AssertSqlSafe(format!(
                "ALTER ROLE {} WITH LOGIN PASSWORD {}",
                quote_ident(role),
                quote_literal(&scram_verifier(new_value))
            )))
            .execute(&mut *conn)
            .await
            .map_err(|e| err(&format!("set the password of role {role}"), e))?;
            Ok(())
        }
        .boxed()
    }

    /// `pg_terminate_backend` for every backend of `role` (waiting up to 5 s for
    /// each to exit), on every database of the server. The broker's admin role
    /// may signal the backends of roles it is a member of (it holds `role` WITH
    /// ADMIN OPTION to set its password).
    fn end_sessions<'a>(&'a self, role: &'a str) -> BoxFuture<'a, Result<u64, ConnectorError>> {
        async move {
            let mut conn = self.acquire().await?;
            let ended: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM (
                   SELECT pg_terminate_backend(pid, 5000) AS ended FROM pg_stat_activity
                   WHERE usename = $1 AND pid <> pg_backend_pid()
                 ) t WHERE ended",
            )
            .bind(role)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| err(&format!("end the sessions of role {role}"), e))?;
            Ok(ended.max(0) as u64)
        }
        .boxed()
    }
}
