//! PostgreSQL connector: each grant gets its own login role, `VALID UNTIL` its expiry
//! as a backstop, member of the database roles its permission level maps to. On
//! revoke or expiry the role loses LOGIN, its sessions are terminated, what it owns is
//! handed back, and the role is dropped.
//!
//! The password is generated here and sent to the server only as a SCRAM-SHA-256
//! verifier, so it never appears in the server's statement log.

use super::{Connector, ConnectorError, Target};
use base64::Engine;
use firedoor_core::api::CredentialItem;
use firedoor_core::policy::IntegrationKind;
use futures::future::BoxFuture;
use futures::FutureExt;
use hmac::{Hmac, Mac};
use rand::distributions::{Alphanumeric, DistString};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

pub struct PostgresConnector {
    name: String,
    opts: PgConnectOptions,
    pool: PgPool,
    permissions: BTreeMap<String, Vec<String>>,
    connect_host: String,
    connect_port: u16,
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
        let IntegrationKind::Postgres { permissions, .. } = kind else {
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
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
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
        })
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

    async fn drop_role(&self, role: &str, database: &str) -> Result<(), ConnectorError> {
        let mut conn = self.pool.acquire().await.map_err(|e| err("connect", e))?;
        let exists: Option<(String,)> =
            sqlx::query_as("SELECT rolname::text FROM pg_roles WHERE rolname = $1")
                .bind(role)
                .fetch_optional(&mut *conn)
                .await
                .map_err(|e| err("look up role", e))?;
        if exists.is_none() {
            return Ok(());
        }
        let q = quote_ident(role);
        sqlx::query(AssertSqlSafe(format!("ALTER ROLE {q} NOLOGIN")))
            .execute(&mut *conn)
            .await
            .map_err(|e| err("disable login", e))?;
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1")
            .bind(role)
            .execute(&mut *conn)
            .await
            .map_err(|e| err("terminate sessions", e))?;
        // Objects the role created in the granted database go back to the admin.
        let mut db = self
            .opts
            .clone()
            .database(database)
            .connect()
            .await
            .map_err(|e| err(&format!("connect to database {database}"), e))?;
        for stmt in [
            format!("REASSIGN OWNED BY {q} TO CURRENT_USER"),
            format!("DROP OWNED BY {q}"),
        ] {
            sqlx::query(AssertSqlSafe(stmt))
                .execute(&mut db)
                .await
                .map_err(|e| err("hand back owned objects", e))?;
        }
        let _ = db.close().await;
        sqlx::query(AssertSqlSafe(format!("DROP ROLE IF EXISTS {q}")))
            .execute(&mut *conn)
            .await
            .map_err(|e| err("drop role", e))?;
        Ok(())
    }
}

impl Connector for PostgresConnector {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn provision<'a>(
        &'a self,
        t: &'a Target<'a>,
    ) -> BoxFuture<'a, Result<CredentialItem, ConnectorError>> {
        async move {
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
            // A retry after a crash may find the role of an earlier attempt.
            self.drop_role(&role, &t.resource.resource).await?;
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
            let mut tx = self.pool.begin().await.map_err(|e| err("connect", e))?;
            sqlx::query(AssertSqlSafe(stmt))
                .execute(&mut *tx)
                .await
                .map_err(|e| err(&format!("create role {role}"), e))?;
            sqlx::query(AssertSqlSafe(format!(
                "GRANT CONNECT ON DATABASE {} TO {}",
                quote_ident(&t.resource.resource),
                quote_ident(&role)
            )))
            .execute(&mut *tx)
            .await
            .map_err(|e| err(&format!("grant connect on {}", t.resource.resource), e))?;
            tx.commit().await.map_err(|e| err("commit", e))?;
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
        .boxed()
    }

    fn deprovision<'a>(&'a self, t: &'a Target<'a>) -> BoxFuture<'a, Result<(), ConnectorError>> {
        async move {
            self.drop_role(&Self::role_name(t), &t.resource.resource)
                .await
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
            .execute(&self.pool)
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
            let mut conn = self.pool.acquire().await.map_err(|e| err("connect", e))?;
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
}
