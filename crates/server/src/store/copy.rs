//! `firedoor-server store copy`: moves a whole store to another (a team's SQLite
//! file to the PostgreSQL database several replicas will share, or back). Every
//! table is copied row for row inside one write transaction on each side: the
//! source is read under its write lock (a consistent snapshot that no broker writes
//! into meanwhile), the target must be empty, and it commits all or nothing. Audit
//! records keep their seq, text and signatures, so `audit verify` passes on the
//! copy with the same broker key; event ids are kept, so clients resume their
//! streams where they were.

use super::{Store, Ts};
use crate::error::{Error, Result};

/// Declares a row type for one table and a function copying the table: the column
/// list is written once and gives the SELECT, the INSERT and the binds.
macro_rules! table {
    ($fn_name:ident, $row:ident, $table:literal, $order:literal, { $($col:ident : $ty:ty),+ $(,)? }) => {
        super::lite::row_struct! {
            struct $row { $($col: $ty),+ }
        }

        async fn $fn_name(from: &mut super::Tx, to: &mut super::Tx) -> Result<u64> {
            let rows = fetch!(
                from.db(),
                fetch_all,
                $row,
                sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM {} ORDER BY {}",
                    [$(stringify!($col)),+].join(", "),
                    $table,
                    $order
                ))
            )?;
            let cols = [$(stringify!($col)),+];
            let insert = format!(
                "INSERT INTO {} ({}) VALUES ({})",
                $table,
                cols.join(", "),
                (1..=cols.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
            );
            let mut n = 0;
            for r in rows {
                exec!(to.db(), sqlx::AssertSqlSafe(insert.clone()), $(r.$col),+)?;
                n += 1;
            }
            Ok(n)
        }
    };
}

table!(copy_users, UserRow, "users", "name", {
    name: String, groups_json: String, admin: i64, created_at: Ts, disabled_at: Option<Ts>,
});
table!(copy_tokens, TokenRow, "tokens", "id", {
    id: String, user_name: String, hash: String, created_at: Ts, revoked_at: Option<Ts>,
    expires_at: Option<Ts>, session_id: Option<String>,
});
table!(copy_sso_sessions, SsoSessionRow, "sso_sessions", "id", {
    id: String, user_name: String, session_key: String, refresh_hash: String, created_at: Ts,
    expires_at: Ts, refreshed_at: Option<Ts>, revoked_at: Option<Ts>,
    revoked_reason: Option<String>,
});
table!(copy_sso_used_refresh, SsoUsedRefreshRow, "sso_used_refresh", "hash", {
    hash: String, session_id: String, used_at: Ts,
});
table!(copy_sso_nonces, SsoNonceRow, "sso_nonces", "hash", {
    hash: String, created_at: Ts, expires_at: Ts, used_at: Option<Ts>,
});
table!(copy_requests, RequestRow, "requests", "id", {
    id: String, kind: String, bundle: String, flow: String, requester: String, state: String,
    duration_secs: i64, justification: Option<String>, ticket: Option<String>, created_at: Ts,
    pending_until: Ts, approvals_needed: i64, grant_id: Option<String>, error: Option<String>,
    idempotency_key: Option<String>, body_hash: Option<String>, updated_at: Ts,
    incident_id: Option<String>, requested_by: Option<String>, stage: i64,
    stage_since: Option<Ts>, reminded_stage: Option<i64>,
});
table!(copy_decisions, DecisionRow, "decisions", "request_id, by_user", {
    request_id: String, by_user: String, decision: String, comment: Option<String>, at: Ts,
});
table!(copy_grants, GrantRow, "grants", "id", {
    id: String, request_id: String, bundle: String, flow: String, holder: String, state: String,
    duration_secs: i64, activated_at: Option<Ts>, expires_at: Ts, ended_at: Option<Ts>,
    end_reason: Option<String>, ended_by: Option<String>, last_error: Option<String>,
    attempts: i64, next_attempt_at: Option<Ts>, expiring_notified: i64,
    credentials: Option<Vec<u8>>,
});
table!(copy_events, EventRow, "events", "id", {
    id: i64, recipient: String, kind: String, at: Ts, body: String,
});
table!(copy_audit, AuditRow, "audit", "seq", {
    seq: i64, at: String, actor: String, action: String, subject: String, details: String,
    prev_hash: String, hash: String, signature: Option<String>,
});
table!(copy_devices, DeviceRow, "devices", "id", {
    id: String, user_name: String, name: String, recipient: String, signing_key: String,
    created_at: Ts, revoked_at: Option<Ts>, head_seq: i64, head_hash: String,
});
table!(copy_secrets, SecretRow, "secrets", "name", {
    name: String, version: i64, value: Option<Vec<u8>>, pending_value: Option<Vec<u8>>,
    updated_at: Option<Ts>, rotation_due_at: Option<Ts>, rotation_attempts: i64,
    next_rotation_at: Option<Ts>, last_rotation_error: Option<String>,
    rotating_until: Option<Ts>, rotation_reason: Option<String>,
});
table!(copy_envelopes, EnvelopeRow, "envelopes", "device_id, secret", {
    device_id: String, secret: String, version: i64, meta_json: String, signature: String,
    ciphertext: String, sealed_at: Ts, not_after: Ts,
});
table!(copy_overrides, OverrideRow, "oncall_overrides", "id", {
    id: String, schedule: String, user_name: String, starts_at: Ts, ends_at: Ts,
    reason: Option<String>, created_by: String, created_at: Ts, removed_at: Option<Ts>,
});
table!(copy_incidents, IncidentRow, "incidents", "id", {
    id: String, source: String, external_id: String, rule: String, title: String,
    url: Option<String>, state: String, opened_at: Ts, resolved_at: Option<Ts>,
});
table!(copy_deliveries, DeliveryRow, "webhook_deliveries", "source, delivery_id", {
    source: String, delivery_id: String, received_at: Ts,
});
table!(copy_outbound, OutboundRow, "outbound", "id", {
    id: String, channel: String, kind: String, payload: String, state: String, attempts: i64,
    next_attempt_at: Ts, last_error: Option<String>, last_status: Option<i64>, created_at: Ts,
    updated_at: Ts,
});
table!(copy_oncall_sync, SyncRow, "oncall_sync", "schedule", {
    schedule: String, source: String, fetched_json: Option<String>, fetched_at: Option<Ts>, last_attempt: Option<Ts>, last_error: Option<String>, failures: i64,
    next_attempt_at: Ts,
});
table!(copy_audit_sinks, AuditSinkRow, "audit_sinks", "name", {
    name: String, delivered_seq: i64, delivered_at: Option<Ts>, lease_token: Option<String>,
    lease_until: Option<Ts>, next_attempt_at: Ts, failures: i64, last_error: Option<String>,
    last_error_at: Option<Ts>,
});
// issue 14: uses
table!(copy_uses, UseRow, "breakglass_uses", "id", {
    id: String, secret: String, version: i64, user_name: String, mode: String,
    device_id: Option<String>, seq: Option<i64>, reason: String, unlocked_at: Ts,
    recorded_at: Ts, incident_ref: Option<String>, incident_id: Option<String>,
    kind: Option<String>, note: Option<String>, classified_by: Option<String>,
    classified_at: Option<Ts>, rotation_waits: i64,
});
table!(copy_unlocks, UnlockRow, "device_unlocks", "device_id, seq", {
    device_id: String, seq: i64, hash: String, body: String, signature: String, received_at: Ts,
});
// issue 14: drills
table!(copy_drills, DrillCopyRow, "drills", "id", {
    id: String, secret: String, version: i64, nonce: String, kind: String, started_by: String,
    started_at: Ts, deadline: Ts, closed_at: Option<Ts>,
});
table!(copy_drill_devices, DrillDeviceCopyRow, "drill_devices", "drill_id, device_id", {
    drill_id: String, device_id: String, user_name: String, passed_at: Option<Ts>, failures: i64,
    last_failure_at: Option<Ts>,
});
table!(copy_readiness, ReadinessCopyRow, "readiness_state", "secret", {
    secret: String, below: i64, since: Ts, ready: i64,
});

/// What a copy moved: rows per table, in copy order.
#[derive(Debug, Default)]
pub struct Copied {
    pub tables: Vec<(&'static str, u64)>,
}

/// Copies every table of `from` into the empty store `to`.
pub async fn copy(from: &Store, to: &Store) -> Result<Copied> {
    let waiting = from.records_awaiting_chain().await?;
    if waiting > 0 {
        return Err(Error::Config(format!(
            "{waiting} audit records in {} are committed but not yet chained: start a broker on it (its worker chains them) and copy again",
            from.display()
        )));
    }
    let mut src = from.begin().await?;
    let mut dst = to.begin().await?;
    let used = scalar!(
        dst.db(),
        fetch_optional,
        i64,
        "SELECT CAST(1 AS BIGINT) WHERE EXISTS (SELECT 1 FROM users) OR EXISTS (SELECT 1 FROM audit)
            OR EXISTS (SELECT 1 FROM requests) OR EXISTS (SELECT 1 FROM devices)"
    )?;
    if used.is_some() {
        return Err(Error::Config(format!(
            "the target store {} is not empty: copy only into a fresh database",
            to.display()
        )));
    }
    let mut out = Copied::default();
    // Parents before children (foreign keys).
    out.tables
        .push(("users", copy_users(&mut src, &mut dst).await?));
    out.tables
        .push(("tokens", copy_tokens(&mut src, &mut dst).await?));
    // SSO: signed-in people stay signed in on the copy; used refresh tokens and
    // nonces stay used.
    out.tables
        .push(("sso_sessions", copy_sso_sessions(&mut src, &mut dst).await?));
    out.tables.push((
        "sso_used_refresh",
        copy_sso_used_refresh(&mut src, &mut dst).await?,
    ));
    out.tables
        .push(("sso_nonces", copy_sso_nonces(&mut src, &mut dst).await?));
    out.tables
        .push(("incidents", copy_incidents(&mut src, &mut dst).await?));
    out.tables
        .push(("requests", copy_requests(&mut src, &mut dst).await?));
    out.tables
        .push(("decisions", copy_decisions(&mut src, &mut dst).await?));
    out.tables
        .push(("grants", copy_grants(&mut src, &mut dst).await?));
    out.tables
        .push(("events", copy_events(&mut src, &mut dst).await?));
    out.tables
        .push(("audit", copy_audit(&mut src, &mut dst).await?));
    out.tables
        .push(("devices", copy_devices(&mut src, &mut dst).await?));
    out.tables
        .push(("secrets", copy_secrets(&mut src, &mut dst).await?));
    out.tables
        .push(("envelopes", copy_envelopes(&mut src, &mut dst).await?));
    out.tables
        .push(("device_unlocks", copy_unlocks(&mut src, &mut dst).await?));
    out.tables
        .push(("breakglass_uses", copy_uses(&mut src, &mut dst).await?));
    out.tables.push((
        "oncall_overrides",
        copy_overrides(&mut src, &mut dst).await?,
    ));
    out.tables
        .push(("oncall_sync", copy_oncall_sync(&mut src, &mut dst).await?));
    out.tables.push((
        "webhook_deliveries",
        copy_deliveries(&mut src, &mut dst).await?,
    ));
    out.tables
        .push(("outbound", copy_outbound(&mut src, &mut dst).await?));
    // The SIEM sinks' cursors: the copy goes on delivering where the source was.
    out.tables
        .push(("audit_sinks", copy_audit_sinks(&mut src, &mut dst).await?));
    // issue 14: drills (who passed when) and the readiness alert state.
    out.tables
        .push(("drills", copy_drills(&mut src, &mut dst).await?));
    out.tables.push((
        "drill_devices",
        copy_drill_devices(&mut src, &mut dst).await?,
    ));
    out.tables
        .push(("readiness_state", copy_readiness(&mut src, &mut dst).await?));
    // Counters that follow explicit ids: new events continue after the copied ones;
    // the audit high-water mark is the source's (it may be above the last record if
    // the source's end was cut, which `audit verify` must still report).
    let high = src.audit().high_water().await?;
    if dst.db().is_postgres() {
        exec!(
            dst.db(),
            "SELECT setval(pg_get_serial_sequence('events', 'id'), COALESCE((SELECT MAX(id) FROM events), 0) + 1, false)"
        )?;
        if let Some(h) = high {
            exec!(
                dst.db(),
                // Above the last record, the mark names no record: no hash (an
                // append then reads the head from the records).
                "INSERT INTO audit_high (one, seq) VALUES (TRUE, $1)
                 ON CONFLICT (one) DO UPDATE SET seq = GREATEST(audit_high.seq, EXCLUDED.seq),
                     hash = CASE WHEN EXCLUDED.seq > audit_high.seq THEN NULL ELSE audit_high.hash END",
                h
            )?;
        }
    } else if let Some(h) = high {
        exec!(
            dst.db(),
            "UPDATE sqlite_sequence SET seq = MAX(seq, $1) WHERE name = 'audit'",
            h
        )?;
    }
    dst.commit().await?;
    src.commit().await?;
    Ok(out)
}
